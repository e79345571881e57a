"""Priors over datasets for training prior-data fitted networks (PFNs).

Every sampler is batched in torch and draws all of its randomness from the private
:class:`torch.Generator` it is given, so a batch is a pure function of the generator's seed
(Müller et al., "Transformers Can Do Bayesian Inference", ICLR 2022, Sec. 3: the PFN is trained on
datasets ``D ~ p(D)`` drawn from the prior).

A batch is a dict with

``x`` : (B, N, d_max) float32
    Inputs; features beyond a dataset's own number of features are zero.
``y`` : (B, N) float32
    Targets (standardised regression targets, or integer class labels stored as floats).
``n_ctx`` : (B,) int64
    Number of leading points of each dataset that form its context (training set); the remaining
    ``N - n_ctx`` points are queries.
``n_features`` : (B,) int64

and, where the prior has it in closed form, the query targets' distribution given the latent
function (the lower-variance training targets of ``pfn.train``, ``target="predictive"``):
``y_mu``, ``y_sd`` (B, N) for regression (a normal), ``y_prob`` (B, N, max_classes) for
classification (class probabilities).

Inputs are standardised with the mean and standard deviation of each dataset's *context* points,
exactly as :class:`~overparam_sklearn.PFNRegressor` standardises its training data, so the network
sees the same input distribution at training and at prediction time. Regression targets are
standardised the same way (except for the fixed-hyperparameter GP prior used to check the
machinery against the exact GP posterior, which keeps raw inputs and targets).

This module holds the GP, random-MLP and classification priors, the mixtures and the registry
(:func:`get_prior`); the building blocks are in ``_prior_sampling`` and the SCM, tree and linear
priors in ``_tabular_priors``, all importable from here.
"""

import math

import torch

from ._prior_sampling import (
    FIXED_GP,
    _classes_from_latents,
    _classification_batch,
    _draw_sizes,
    _finish_regression,
    _gp_hyperparameters,
    _mixture,
    _n_classes,
    _randint,
    _random_mlp,
    _relevant_features,
    _uniform,
    cut_masses,
    rbf_gp_predictive_sample,
    rbf_gp_sample,
    sample_inputs,
    standardize_context,
)
from ._tabular_priors import (
    linear_classification_prior,
    linear_gp_prior,
    scm_classification_prior,
    scm_prior,
    tree_classification_prior,
    tree_prior,
)

__all__ = [
    "sample_inputs",
    "standardize_context",
    "rbf_gp_sample",
    "rbf_gp_predictive_sample",
    "gp_hyper_prior",
    "gp_fixed_prior",
    "bnn_prior",
    "regression_prior",
    "classification_prior",
    "cut_masses",
    "get_prior",
    "FIXED_GP",
]


def gp_hyper_prior(gen, batch, n_points, n_ctx, d_max):
    """GP prior with hyperpriors over ARD lengthscales, output scale and noise (regression)."""
    n_features = _draw_sizes(gen, batch, n_points, d_max)
    x = standardize_context(sample_inputs(gen, batch, n_points, n_features, d_max), n_ctx)
    inv_l, s, noise = _gp_hyperparameters(gen, n_features, d_max)
    y, mu, sd = rbf_gp_predictive_sample(gen, x, inv_l, s, noise, n_ctx)
    return _finish_regression(x, y, n_ctx, n_features, mu=mu, sd=sd)


def gp_fixed_prior(gen, batch, n_points, n_ctx, d_max, max_features=None):
    """GP prior with fixed hyperparameters (:data:`FIXED_GP`), inputs uniform on [0, 1]^d.

    Inputs and targets are *not* standardised, so the PFN's posterior predictive can be compared
    directly with the exact GP posterior predictive.
    """
    d_hi = d_max if max_features is None else min(max_features, d_max)
    n_features = _randint(gen, 1, d_hi, (batch,))
    present = torch.arange(d_max)[None, None, :] < n_features[:, None, None]
    x = _uniform(gen, (batch, n_points, d_max))
    x = torch.where(present, x, torch.zeros_like(x))
    d = n_features.to(torch.float64)
    inv_l = (1.0 / (FIXED_GP["lengthscale_per_sqrt_d"] * d.sqrt()))[:, None] * present[:, 0, :].to(
        torch.float64
    )
    s = torch.full((batch,), FIXED_GP["outputscale"], dtype=torch.float64)
    noise = torch.full((batch,), FIXED_GP["noise_std"], dtype=torch.float64)
    y, mu, sd = rbf_gp_predictive_sample(gen, x, inv_l, s, noise, n_ctx)
    return _finish_regression(x, y, n_ctx, n_features, normalize=False, mu=mu, sd=sd)


def bnn_prior(gen, batch, n_points, n_ctx, d_max):
    """Random-MLP (Bayesian neural network) prior for regression, with Gaussian noise."""
    n_features = _draw_sizes(gen, batch, n_points, d_max)
    x = standardize_context(sample_inputs(gen, batch, n_points, n_features, d_max), n_ctx)
    relevant = _relevant_features(gen, n_features, d_max)
    f = _random_mlp(gen, x, 1, relevant)[..., 0]
    ratio = torch.exp(_uniform(gen, (batch,), math.log(0.01), math.log(1.0)))
    y = f + ratio[:, None] * torch.randn(f.shape, generator=gen, dtype=f.dtype)
    # given the latent function the noise is known: y ~ N(f, ratio^2) (not the full posterior
    # predictive, but still an unbiased, lower-variance target; see train._loss)
    sd = ratio[:, None].expand_as(f)
    return _finish_regression(x, y, n_ctx, n_features, mu=f, sd=sd)


def regression_prior(gen, batch, n_points, n_ctx, d_max, p_bnn=0.2):
    """Mixture prior for the shipped regressor: the hyperprior GP, and with probability
    ``p_bnn`` per batch the random-MLP prior."""
    if float(torch.rand((1,), generator=gen)) < p_bnn:
        return bnn_prior(gen, batch, n_points, n_ctx, d_max)
    return gp_hyper_prior(gen, batch, n_points, n_ctx, d_max)


def classification_prior(gen, batch, n_points, n_ctx, d_max, max_classes=10):
    """Classification datasets: labels from latent GP (70%) or random-MLP (30%) functions.

    The number of classes is 2 with probability 1/2 and uniform on 3..``max_classes`` otherwise.
    Half of the batches label each point with ``argmax_k f_k(x) + tau * Gumbel`` over ``K``
    independent latent functions (label noise through the temperature ``tau``, log-uniform on
    [0.01, 1]); the other half cut one noisy latent function at random quantiles into ``K`` ordered
    classes. Class ids are then randomly permuted per dataset, so the network learns a
    label-symmetric predictor.
    """
    B, N, D = batch, n_points, d_max
    n_features = _draw_sizes(gen, B, N, D)
    x = standardize_context(sample_inputs(gen, B, N, n_features, D), n_ctx)
    K = _n_classes(gen, max_classes)
    argmax_mode = float(torch.rand((1,), generator=gen)) < 0.5
    n_latent = K if argmax_mode else 1
    if float(torch.rand((1,), generator=gen)) < 0.7:
        inv_l, _, _ = _gp_hyperparameters(gen, n_features, D)
        f = torch.stack(
            [
                rbf_gp_sample(
                    gen, x, inv_l, torch.ones(B, dtype=x.dtype), torch.zeros(B, dtype=x.dtype)
                )[0]
                for _ in range(n_latent)
            ],
            -1,
        )
    else:
        relevant = _relevant_features(gen, n_features, D)
        f = _random_mlp(gen, x, n_latent, relevant)
    labels, probs = _classes_from_latents(gen, f, K, argmax_mode, max_classes)
    return _classification_batch(x, labels, n_ctx, n_features, probs)


def tabular_regression_prior(gen, batch, n_points, n_ctx, d_max):
    """Mixture per batch: hyperprior GP 40%, SCM 30%, trees 15%, random MLP 15%."""
    components = [(0.4, gp_hyper_prior), (0.7, scm_prior), (0.85, tree_prior), (1.0, bnn_prior)]
    return _mixture(gen, components, batch, n_points, n_ctx, d_max)


def tabular_classification_prior(gen, batch, n_points, n_ctx, d_max, max_classes=10):
    """Mixture per batch: the GP/MLP classification prior 40%, SCM 35%, trees 25%."""
    components = [
        (0.4, classification_prior),
        (0.75, scm_classification_prior),
        (1.0, tree_classification_prior),
    ]
    return _mixture(gen, components, batch, n_points, n_ctx, d_max, max_classes)


def tabular_linear_regression_prior(gen, batch, n_points, n_ctx, d_max):
    """Mixture per batch: hyperprior GP 25%, linear + GP with low signal-to-noise allowed 25%,
    SCM 25%, trees 15%, random MLP 10%."""
    components = [
        (0.25, gp_hyper_prior),
        (0.5, linear_gp_prior),
        (0.75, scm_prior),
        (0.9, tree_prior),
        (1.0, bnn_prior),
    ]
    return _mixture(gen, components, batch, n_points, n_ctx, d_max)


def tabular_linear_classification_prior(gen, batch, n_points, n_ctx, d_max, max_classes=10):
    """Mixture per batch: the GP/MLP classification prior 30%, mostly linear latents 25%, SCM
    25%, trees 20%."""
    components = [
        (0.3, classification_prior),
        (0.55, linear_classification_prior),
        (0.8, scm_classification_prior),
        (1.0, tree_classification_prior),
    ]
    return _mixture(gen, components, batch, n_points, n_ctx, d_max, max_classes)



_PRIORS = {
    "regression": regression_prior,
    "gp_hyper": gp_hyper_prior,
    "gp_fixed": gp_fixed_prior,
    "bnn": bnn_prior,
    "classification": classification_prior,
}


def get_prior(name):
    """The prior sampler called ``name``: ``regression``, ``gp_hyper``, ``gp_fixed``, ``bnn``,
    ``classification``, and the tabular priors below (``scm``, ``tree``, ``linear_gp``, their
    ``*_classification`` versions and the ``tabular_*`` mixtures)."""
    try:
        return _PRIORS[name]
    except KeyError:
        raise ValueError(f"unknown prior {name!r}; choose one of {sorted(_PRIORS)}") from None



_PRIORS.update(
    {
        "linear_gp": linear_gp_prior,
        "linear_classification": linear_classification_prior,
        "tabular_linear_regression": tabular_linear_regression_prior,
        "tabular_linear_classification": tabular_linear_classification_prior,
        "scm": scm_prior,
        "tree": tree_prior,
        "scm_classification": scm_classification_prior,
        "tree_classification": tree_classification_prior,
        "tabular_regression": tabular_regression_prior,
        "tabular_classification": tabular_classification_prior,
    }
)
__all__ += [
    "scm_prior",
    "tree_prior",
    "scm_classification_prior",
    "tree_classification_prior",
    "tabular_regression_prior",
    "tabular_classification_prior",
    "linear_gp_prior",
    "linear_classification_prior",
    "tabular_linear_regression_prior",
    "tabular_linear_classification_prior",
]
