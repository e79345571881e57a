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
"""

import math

import torch

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

# Hyperparameters of the fixed GP prior (machinery check): RBF kernel on inputs uniform on
# [0, 1]^d with lengthscale 0.3 * sqrt(d) (so the typical correlation between two inputs does not
# depend on d), unit output scale and noise standard deviation 0.1.
FIXED_GP = {"lengthscale_per_sqrt_d": 0.3, "outputscale": 1.0, "noise_std": 0.1}

_JITTER = 1e-6


def _uniform(gen, shape, low=0.0, high=1.0):
    return low + (high - low) * torch.rand(shape, generator=gen, dtype=torch.float64)


def _randint(gen, low, high, shape):
    """Integers uniform on ``[low, high]`` (inclusive)."""
    return torch.randint(low, high + 1, shape, generator=gen)


def _context_mask(n_ctx, n_points):
    """(B, N) boolean mask, True on each dataset's context points."""
    return torch.arange(n_points)[None, :] < n_ctx[:, None]


def standardize_context(values, n_ctx, zero_constant=True, eps=1e-8):
    """Standardise ``values`` (B, N, k) with the mean/std of each dataset's context points.

    Constant columns (zero standard deviation in the context) become zero when ``zero_constant``
    (input features), or are only centred (targets, as scikit-learn's ``_handle_zeros_in_scale``
    does). This matches ``PFNRegressor``'s preprocessing (population standard deviation).
    """
    mask = _context_mask(n_ctx, values.shape[1]).to(values.dtype)[..., None]
    count = mask.sum(1, keepdim=True).clamp_min(1.0)
    mean = (values * mask).sum(1, keepdim=True) / count
    var = (((values - mean) ** 2) * mask).sum(1, keepdim=True) / count
    std = var.sqrt()
    constant = std <= eps * (1.0 + mean.abs())
    out = (values - mean) / torch.where(constant, torch.ones_like(std), std)
    if zero_constant:
        out = torch.where(constant, torch.zeros_like(out), out)
    return out


def sample_inputs(gen, batch, n_points, n_features, d_max):
    """Raw inputs with varied marginal distributions and dependence, zero-padded to ``d_max``.

    Each feature's marginal is normal, uniform, log-normal (skewed), heavy-tailed (Student t with
    3 degrees of freedom), a two-component mixture, or discrete with 2 to 10 levels; a third of the
    datasets also mix their features linearly so that they are correlated.
    """
    B, N, D = batch, n_points, d_max
    kind = _randint(gen, 0, 5, (B, 1, D))
    z = torch.randn((B, N, D), generator=gen, dtype=torch.float64)
    u = _uniform(gen, (B, N, D))
    sigma = _uniform(gen, (B, 1, D), 0.3, 1.0)
    chi = torch.randn((B, N, D, 3), generator=gen, dtype=torch.float64).pow(2).sum(-1)
    t3 = z / torch.sqrt(chi / 3.0 + 1e-3)
    comp = torch.rand((B, N, D), generator=gen, dtype=torch.float64) < 0.5
    shift = _uniform(gen, (B, 1, D), 1.0, 4.0)
    mixture = z * 0.5 + comp.to(z.dtype) * shift
    levels = _randint(gen, 2, 10, (B, 1, D)).to(torch.float64)
    discrete = torch.floor(u * levels)
    x = torch.where(kind == 0, z, u)
    x = torch.where(kind == 2, torch.exp(sigma * 1.5 * z), x)
    x = torch.where(kind == 3, t3.clamp(-30, 30), x)
    x = torch.where(kind == 4, mixture, x)
    x = torch.where(kind == 5, discrete, x)
    mix = torch.rand((B, 1, 1), generator=gen, dtype=torch.float64) < 1.0 / 3.0
    A = torch.eye(D, dtype=torch.float64) + 0.7 * torch.randn(
        (B, D, D), generator=gen, dtype=torch.float64
    )
    x = torch.where(mix, x @ A.transpose(1, 2), x)
    present = torch.arange(D)[None, None, :] < n_features[:, None, None]
    return torch.where(present, x, torch.zeros_like(x))


def _gp_kernel(x, inv_lengthscale, outputscale, linear_sd=None):
    """``s^2 exp(-|(x - x') / l|^2 / 2)`` (ARD RBF), plus ``sum_j a_j^2 x_j x'_j`` (the kernel of
    a linear function ``x . w`` with ``w_j ~ N(0, a_j^2)``) where ``linear_sd`` (B, D) gives
    ``a``. (B, N, N)."""
    xs = x * inv_lengthscale[:, None, :]
    norms = xs.pow(2).sum(-1)
    sq = (norms[:, :, None] + norms[:, None, :] - 2.0 * xs @ xs.transpose(1, 2)).clamp_min(0.0)
    K = outputscale[:, None, None] ** 2 * torch.exp(-0.5 * sq)
    if linear_sd is not None:
        xa = x * linear_sd[:, None, :]
        K = K + xa @ xa.transpose(1, 2)
    return K


def _cholesky(K):
    L, info = torch.linalg.cholesky_ex(K)
    if bool((info != 0).any()):  # rare: fall back to a larger jitter
        L = torch.linalg.cholesky(K + 1e-4 * torch.eye(K.shape[-1], dtype=K.dtype))
    return L


def rbf_gp_sample(gen, x, inv_lengthscale, outputscale, noise_std, linear_sd=None):
    """Draw ``y = f(x) + eps`` with ``f ~ GP(0, s^2 exp(-|(x - x') / l|^2 / 2))`` (ARD RBF).

    Parameters: ``x`` (B, N, D) float64, ``inv_lengthscale`` (B, D) (zero for irrelevant or absent
    features), ``outputscale`` (B,) standard deviation ``s`` and ``noise_std`` (B,); optionally
    ``linear_sd`` (B, D), the prior standard deviations of the weights of a linear part added to
    ``f`` (:func:`_gp_kernel`). Returns ``(f, y)``, each (B, N) float64.
    """
    N = x.shape[1]
    K = _gp_kernel(x, inv_lengthscale, outputscale, linear_sd)
    L = _cholesky(K + _JITTER * torch.eye(N, dtype=x.dtype))
    f = (L @ torch.randn((x.shape[0], N, 1), generator=gen, dtype=x.dtype))[..., 0]
    y = f + noise_std[:, None] * torch.randn(f.shape, generator=gen, dtype=x.dtype)
    return f, y


def rbf_gp_predictive_sample(
    gen, x, inv_lengthscale, outputscale, noise_std, n_ctx, linear_sd=None
):
    """Draw noisy targets ``y`` of an ARD RBF GP together with the exact posterior predictive
    ``N(mu_i, sd_i^2)`` of every query point given the context points.

    With ``K_y = K + sigma_n^2 I = L L^T`` and ``y = L z`` (``z`` standard normal), the first
    ``n_ctx`` entries of ``z`` are determined by the context targets (``L`` is lower
    triangular), so for a query ``i`` the predictive given the context is normal with mean
    ``sum_{j < n_ctx} L_ij z_j`` and variance ``sum_{j >= n_ctx} L_ij^2`` (Rasmussen & Williams,
    "Gaussian Processes for Machine Learning", Eq. 2.23-2.24, read off the Cholesky factor). This
    costs one matrix-vector product beyond the draw. Entries at context positions are ``mu = y``,
    ``sd = 0``. ``linear_sd`` adds a linear part as in :func:`rbf_gp_sample`. Returns
    ``(y, mu, sd)``, each (B, N) in ``x``'s dtype.
    """
    N = x.shape[1]
    K = _gp_kernel(x, inv_lengthscale, outputscale, linear_sd)
    K = K + (noise_std[:, None, None] ** 2 + _JITTER) * torch.eye(N, dtype=x.dtype)
    L = _cholesky(K)
    z = torch.randn((x.shape[0], N), generator=gen, dtype=x.dtype)
    y = (L @ z[..., None])[..., 0]
    ctx = _context_mask(n_ctx, N).to(x.dtype)
    mu = (L @ (z * ctx)[..., None])[..., 0]
    sd = (L.pow(2) @ (1.0 - ctx)[..., None])[..., 0].sqrt()
    return y, mu, sd


def _draw_sizes(gen, batch, n_points, d_max, min_features=1):
    return _randint(gen, min_features, d_max, (batch,))


def _gp_hyperparameters(gen, n_features, d_max, max_noise_ratio=1.0):
    """ARD inverse lengthscales (zero for irrelevant/absent features), output scale, noise std.

    Hyperpriors: each present feature is relevant with probability 0.8 (at least one is);
    ``log l ~ N(log(0.8 sqrt(d_rel)), 0.7^2)`` on standardised inputs; ``log s ~ N(0, 0.5^2)``;
    noise-to-signal ratio ``sigma_n / s`` log-uniform on [0.01, ``max_noise_ratio``].
    """
    B = n_features.shape[0]
    present = torch.arange(d_max)[None, :] < n_features[:, None]
    relevant = (torch.rand((B, d_max), generator=gen) < 0.8) & present
    first = torch.nn.functional.one_hot(
        (torch.rand((B,), generator=gen) * n_features).long().clamp_max(d_max - 1), d_max
    ).bool()
    relevant = relevant | (first & ~relevant.any(1, keepdim=True))
    d_rel = relevant.sum(1).clamp_min(1).to(torch.float64)
    log_l = torch.log(0.8 * d_rel.sqrt())[:, None] + 0.7 * torch.randn(
        (B, d_max), generator=gen, dtype=torch.float64
    )
    inv_l = torch.where(relevant, torch.exp(-log_l), torch.zeros_like(log_l))
    outputscale = torch.exp(0.5 * torch.randn((B,), generator=gen, dtype=torch.float64))
    ratio = torch.exp(_uniform(gen, (B,), math.log(0.01), math.log(max_noise_ratio)))
    return inv_l, outputscale, ratio * outputscale


def _finish_regression(x, y, n_ctx, n_features, normalize=True, mu=None, sd=None):
    """The batch dict; ``mu``, ``sd`` (the query targets' exact predictive normal, or the noise
    distribution given the latent function) are standardised like ``y`` and stored as
    ``y_mu``, ``y_sd`` for the lower-variance training targets."""
    if normalize:
        # the affine map of standardize_context (constant context targets are only centred)
        mask = _context_mask(n_ctx, y.shape[1]).to(y.dtype)
        count = mask.sum(1, keepdim=True).clamp_min(1.0)
        loc = (y * mask).sum(1, keepdim=True) / count
        scale = ((((y - loc) ** 2) * mask).sum(1, keepdim=True) / count).sqrt()
        scale = torch.where(scale <= 1e-8 * (1.0 + loc.abs()), torch.ones_like(scale), scale)
        # clamp the rare huge standardised targets of tiny contexts (|z| > 50): a sane loss
        y = ((y - loc) / scale).clamp(-50.0, 50.0)
        if mu is not None:
            mu = ((mu - loc) / scale).clamp(-50.0, 50.0)
            sd = sd / scale
    out = {
        "x": x.float(),
        "y": y.float(),
        "n_ctx": n_ctx,
        "n_features": n_features,
    }
    if mu is not None:
        out["y_mu"] = mu.float()
        out["y_sd"] = sd.clamp_min(1e-6).float()
    return out


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


def _random_mlp(gen, x, n_out, relevant):
    """Latent functions of random MLPs: 1-3 hidden layers of width 16-64, tanh / relu / sin / erf
    style activations, weights ``N(0, w^2 / fan_in)`` with ``w ~ U(0.7, 2.5)``, inputs restricted
    to the ``relevant`` features. Returns (B, N, n_out) float64, columns scaled to unit variance
    (over the dataset)."""
    B, N, D = x.shape
    h = x * relevant[:, None, :].to(x.dtype)
    fan_in = relevant.sum(1).clamp_min(1).to(x.dtype)[:, None, None]
    depth = int(_randint(gen, 1, 3, (1,)))
    width = int(_randint(gen, 16, 64, (1,)))
    act = int(_randint(gen, 0, 3, (1,)))
    for layer in range(depth):
        w_std = _uniform(gen, (B, 1, 1), 0.7, 2.5)
        W = (
            torch.randn((B, h.shape[2], width), generator=gen, dtype=x.dtype)
            * w_std
            / (fan_in.sqrt() if layer == 0 else math.sqrt(h.shape[2]))
        )
        b = 0.5 * torch.randn((B, 1, width), generator=gen, dtype=x.dtype)
        h = h @ W + b
        if act == 0:
            h = torch.tanh(h)
        elif act == 1:
            h = torch.relu(h)
        elif act == 2:
            h = torch.sin(h)
        else:
            h = torch.tanh(h) + 0.3 * h
    W = torch.randn((B, h.shape[2], n_out), generator=gen, dtype=x.dtype) / math.sqrt(h.shape[2])
    f = h @ W
    f = f - f.mean(1, keepdim=True)
    return f / f.std(1, keepdim=True).clamp_min(1e-6)


def _relevant_features(gen, n_features, d_max, p=0.8):
    B = n_features.shape[0]
    present = torch.arange(d_max)[None, :] < n_features[:, None]
    relevant = (torch.rand((B, d_max), generator=gen) < p) & present
    relevant[:, 0] |= ~relevant.any(1)
    return relevant


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
    K = (
        int(_randint(gen, 3, max_classes, (1,)))
        if float(torch.rand((1,), generator=gen)) < 0.5
        else 2
    )
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


def _classes_from_latents(gen, f, K, argmax_mode, max_classes, max_tau=1.0):
    """Labels (B, N) and their distributions given ``f`` (B, N, max_classes) from latent
    functions ``f`` (B, N, K) (``argmax_mode``) or (B, N, 1) (cut mode), with temperature ``tau``
    log-uniform on [0.01, ``max_tau``]; class ids randomly permuted per dataset."""
    B, N = f.shape[:2]
    tau = torch.exp(_uniform(gen, (B, 1, 1), math.log(0.01), math.log(max_tau)))
    if argmax_mode:
        gumbel = -torch.log(-torch.log(_uniform(gen, f.shape).clamp(1e-12, 1 - 1e-12)))
        labels = torch.argmax(f + tau * gumbel, -1)
        # Gumbel-max: P(argmax_k f_k + tau G_k = k | f) = softmax(f / tau)_k, exactly
        probs = torch.softmax(f / tau, -1)
    else:
        g = f[..., 0] + tau[..., 0] * torch.randn((B, N), generator=gen, dtype=f.dtype)
        cuts = torch.sort(_uniform(gen, (B, K - 1), 0.05, 0.95), 1).values
        # quantiles over all points of each dataset (torch.quantile is not batched over q rows)
        qs = torch.stack([torch.quantile(g[b], cuts[b]) for b in range(B)])
        labels = (g[:, :, None] > qs[:, None, :]).sum(-1)
        probs = cut_masses(f[..., 0], tau[..., 0].expand(B, N), qs)
    perm = torch.argsort(torch.rand((B, max_classes), generator=gen), 1)
    return torch.gather(perm, 1, labels), _permute_masses(probs, perm)


def _classification_batch(x, labels, n_ctx, n_features, probs):
    return {
        "x": x.float(),
        "y": labels.float(),
        "n_ctx": n_ctx,
        "n_features": n_features,
        "y_prob": probs.float(),
    }


def cut_masses(mu, sd, cuts):
    """Class probabilities of ``(g > cuts).sum(-1)`` for ``g ~ N(mu, sd^2)``: (B, N, K).

    ``mu``, ``sd``: (B, N); ``cuts``: (B, K - 1), increasing. Class ``k`` is
    ``cuts[k - 1] < g <= cuts[k]``, so its mass is ``Phi((c_k - mu) / sd) - Phi((c_{k-1} - mu) /
    sd)`` with ``c_{-1} = -inf``, ``c_{K-1} = inf``. (The cuts are quantiles of the drawn
    ``g`` of the whole dataset and are treated as fixed given it.)
    """
    z = (cuts[:, None, :] - mu[..., None]) / sd[..., None].clamp_min(1e-12)
    cdf = torch.special.ndtr(z)
    zeros = torch.zeros_like(cdf[..., :1])
    ones = torch.ones_like(cdf[..., :1])
    return (torch.cat([cdf, ones], -1) - torch.cat([zeros, cdf], -1)).clamp_min(0.0)


def _permute_masses(probs, perm):
    """Masses (B, N, K) of classes ``0..K-1`` moved to the permuted ids ``perm[:, k]``, as
    (B, N, max_classes)."""
    B, N, K = probs.shape
    out = torch.zeros((B, N, perm.shape[1]), dtype=probs.dtype)
    return out.scatter(2, perm[:, None, :K].expand(B, N, K), probs)


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


# ------------------------------------------------------------------------------------------------
# tabular priors: structural causal models and random trees (Hollmann et al., "TabPFN", ICLR 2023,
# Sec. 4.3-4.4 and App. C: SCM prior; Hollmann et al., Nature 2025, "Accurate predictions on small
# data with a tabular foundation model", Methods: tree-based node functions)


def _discretize(gen, v, p_cat):
    """Turn each column of ``v`` (B, N, k) into a few-valued categorical-like feature with
    probability ``p_cat``: 2-10 levels cut at random quantiles of the column, coded as integers
    in a random order (categories carry no order)."""
    B, N, k = v.shape
    cat = torch.rand((B, 1, k), generator=gen) < p_cat
    levels = _randint(gen, 2, 10, (B, 1, k))
    # cut points at the values of random rows (random quantiles of the column's distribution)
    rows = torch.randint(0, N, (B, 9, k), generator=gen)
    cuts = torch.sort(torch.gather(v, 1, rows), 1).values  # (B, 9, k)
    use = torch.arange(9)[None, :, None] < (levels - 1)
    codes = ((v[:, :, None, :] > cuts[:, None, :, :]) & use[:, None]).sum(2)  # (B, N, k)
    perm = torch.argsort(torch.rand((B, 10, k), generator=gen), 1)
    codes = torch.gather(perm, 1, codes).to(v.dtype)
    return torch.where(cat, codes, v)


def _scm_nodes(gen, batch, n_points, n_nodes):
    """Values (B, N, M) of the nodes of random structural causal models, and the per-node noise
    standard deviations and noiseless values (for the target's noise-free latent).

    Nodes are topologically ordered; node ``j`` has each earlier node as a parent with probability
    ``p_edge ~ U(0.2, 0.7)`` (per dataset). A node is ``g_j(sum_i w_ij v_i + b_j) + e_j`` with
    weights ``N(0, 1 / n_parents)``, ``g_j`` drawn per node from {identity, tanh, relu, sin,
    square, step, abs} and Gaussian noise of standard deviation log-uniform on [0.01, 0.5]; root
    nodes draw normal, uniform, log-normal or Student-t values. Each node is standardised (over
    the dataset) before it feeds its children.
    """
    B, N, M = batch, n_points, n_nodes
    p_edge = _uniform(gen, (B, 1, 1), 0.2, 0.7)
    adj = (_uniform(gen, (B, M, M)) < p_edge) & torch.ones(M, M, dtype=torch.bool).triu(1)
    W = torch.randn((B, M, M), generator=gen, dtype=torch.float64)
    act = _randint(gen, 0, 6, (B, 1, M))
    bias = 0.5 * torch.randn((B, 1, M), generator=gen, dtype=torch.float64)
    noise_sd = torch.exp(_uniform(gen, (B, 1, M), math.log(0.01), math.log(0.5)))
    eps = torch.randn((B, N, M), generator=gen, dtype=torch.float64) * noise_sd
    root_kind = _randint(gen, 0, 3, (B, 1, M))
    z = torch.randn((B, N, M), generator=gen, dtype=torch.float64)
    chi = torch.randn((B, N, M, 3), generator=gen, dtype=torch.float64).pow(2).sum(-1)
    roots = torch.where(root_kind == 0, z, _uniform(gen, (B, N, M), -1.7, 1.7))
    roots = torch.where(root_kind == 2, torch.exp(0.8 * z), roots)
    roots = torch.where(root_kind == 3, (z / torch.sqrt(chi / 3.0 + 1e-3)).clamp(-20, 20), roots)
    vals = torch.zeros((B, N, M), dtype=torch.float64)
    latent = torch.zeros((B, N, M), dtype=torch.float64)
    sd = torch.zeros((B, 1, M), dtype=torch.float64)
    for j in range(M):
        par = adj[:, :, j]  # (B, M)
        n_par = par.sum(1, keepdim=True)
        w = torch.where(par, W[:, :, j], torch.zeros_like(W[:, :, j])) / n_par.clamp_min(1).sqrt()
        pre = (vals @ w[..., None])[..., 0] + bias[:, :, j]
        a = act[:, :, j]
        out = pre
        out = torch.where(a == 1, torch.tanh(pre), out)
        out = torch.where(a == 2, torch.relu(pre), out)
        out = torch.where(a == 3, torch.sin(2.0 * pre), out)
        out = torch.where(a == 4, pre**2 - 1.0, out)
        out = torch.where(a == 5, (pre > 0).to(pre.dtype) - 0.5, out)
        out = torch.where(a == 6, pre.abs(), out)
        is_root = n_par == 0
        f = torch.where(is_root, roots[:, :, j], out)
        # standardised with statistics of the noise-free f and the noise's known scale, so the
        # node's own noise enters its value only through e_j (keeps N(latent, sd^2) exact)
        mean = f.mean(1, keepdim=True)
        scale = (f.var(1, keepdim=True) + noise_sd[:, :, j] ** 2).sqrt().clamp_min(1e-6)
        vals[:, :, j] = (f + eps[:, :, j] - mean) / scale
        latent[:, :, j] = (f - mean) / scale
        sd[:, :, j] = noise_sd[:, :, j] / scale
    return vals, latent, sd[:, 0, :], adj


def _scm_dataset(gen, batch, n_points, n_ctx, d_max, p_cat=0.25):
    """Features and a continuous target from random SCMs: the target is a non-root node (one with
    parents, where there is one), the features are ``d`` other nodes (causes, effects or
    unrelated), ``d`` uniform on 1..``d_max``; some features are made categorical-like."""
    B = batch
    n_features = _draw_sizes(gen, B, n_points, d_max)
    M = d_max + 1 + int(_randint(gen, 0, d_max, (1,)))
    vals, latent, noise_sd, adj = _scm_nodes(gen, B, n_points, M)
    has_parent = adj.any(1)  # (B, M)
    score = torch.rand((B, M), generator=gen) + has_parent.to(torch.float32)
    target = score.argmax(1)  # a random node with parents (if any)
    # features: a random order of the other nodes, the first n_features of them
    key = torch.rand((B, M), generator=gen)
    key[torch.arange(B), target] = 2.0
    order = torch.argsort(key, 1)[:, :d_max]
    x = torch.gather(vals, 2, order[:, None, :].expand(B, n_points, d_max))
    x = _discretize(gen, x, p_cat)
    present = torch.arange(d_max)[None, None, :] < n_features[:, None, None]
    x = torch.where(present, x, torch.zeros_like(x))
    t = target[:, None, None].expand(B, n_points, 1)
    y = torch.gather(vals, 2, t)[..., 0]
    f = torch.gather(latent, 2, t)[..., 0]
    sd = torch.gather(noise_sd, 1, target[:, None]).expand_as(f)
    # the target's descendants may be features: then f is not its predictive mean given x, so
    # the noise-integrated target is offered only for datasets whose features are non-descendants
    reach = adj.clone()
    for _ in range(M):
        reach = reach | ((reach.to(torch.float32) @ adj.to(torch.float32)) > 0)
    desc = torch.gather(reach, 1, target[:, None, None].expand(B, 1, M))[:, 0, :]  # (B, M)
    feat_desc = torch.gather(desc, 1, order) & present[:, 0, :]
    clean = ~feat_desc.any(1)
    return x, y, f, sd, clean, n_features


def scm_prior(gen, batch, n_points, n_ctx, d_max):
    """Structural-causal-model prior for regression (random DAG, nonlinear node functions, noise;
    the target is a node, the features other nodes, some of them few-valued)."""
    x, y, f, sd, clean, n_features = _scm_dataset(gen, batch, n_points, n_ctx, d_max)
    x = standardize_context(x, n_ctx)
    out = _finish_regression(x, y, n_ctx, n_features, mu=f, sd=sd)
    # where an effect of the target is a feature, the noise-free latent is not the predictive
    # mean: fall back to the drawn target (mu = y, a point mass at the drawn value)
    out["y_mu"] = torch.where(clean[:, None], out["y_mu"], out["y"])
    out["y_sd"] = torch.where(clean[:, None], out["y_sd"], torch.full_like(out["y_sd"], 1e-6))
    return out


def _random_trees(gen, x, relevant, n_out):
    """Sum of ``T ~ U{1..8}`` random decision trees of depth ``U{1..6}`` (shared per batch) on the
    ``relevant`` features: each internal node splits a random relevant feature at a random
    quantile (in [0.1, 0.9]) of its values; the leaves hold ``N(0, 1)`` vectors of length
    ``n_out``. Returns (B, N, n_out), columns scaled to unit variance."""
    B, N, D = x.shape
    T = int(_randint(gen, 1, 8, (1,)))
    depth = int(_randint(gen, 1, 6, (1,)))
    n_int = 2**depth - 1
    total = torch.zeros((B, N, n_out), dtype=x.dtype)
    w = relevant.to(torch.float64) + 1e-12
    xs = torch.sort(x, 1).values  # per-feature order statistics of each dataset
    for _ in range(T):
        feat = torch.multinomial(w, n_int, replacement=True, generator=gen)  # (B, n_int)
        # threshold: the feature's quantile at a random level in [0.1, 0.9]; "x >= thr" goes right
        rows = (_uniform(gen, (B, n_int), 0.1, 0.9) * N).long().clamp(0, N - 1)
        thr = xs[torch.arange(B)[:, None], rows, feat]  # (B, n_int)
        leaves = torch.randn((B, 2**depth, n_out), generator=gen, dtype=x.dtype)
        node = torch.zeros((B, N), dtype=torch.long)
        for _level in range(depth):
            f = torch.gather(feat, 1, node)
            xv = torch.gather(x, 2, f[..., None])[..., 0]
            go = (xv >= torch.gather(thr, 1, node)).long()
            node = 2 * node + 1 + go
        leaf = node - n_int
        total = total + torch.gather(leaves, 1, leaf[..., None].expand(B, N, n_out))
    total = total - total.mean(1, keepdim=True)
    return total / total.std(1, keepdim=True).clamp_min(1e-6)


def tree_prior(gen, batch, n_points, n_ctx, d_max):
    """Random-forest-like prior for regression: a sum of random axis-aligned trees on the
    inputs of :func:`sample_inputs` (which include few-valued features), plus Gaussian noise."""
    n_features = _draw_sizes(gen, batch, n_points, d_max)
    x = standardize_context(sample_inputs(gen, batch, n_points, n_features, d_max), n_ctx)
    relevant = _relevant_features(gen, n_features, d_max)
    f = _random_trees(gen, x, relevant, 1)[..., 0]
    ratio = torch.exp(_uniform(gen, (batch,), math.log(0.01), math.log(1.0)))
    y = f + ratio[:, None] * torch.randn(f.shape, generator=gen, dtype=f.dtype)
    sd = ratio[:, None].expand_as(f)
    return _finish_regression(x, y, n_ctx, n_features, mu=f, sd=sd)


def _labels_from_latent(gen, g, K, max_classes, mu=None, sd=None):
    """Ordered classes from cutting a latent (B, N) at ``K - 1`` random quantiles, then a random
    permutation of the class ids per dataset. With ``g ~ N(mu, sd^2)`` given, also the class
    masses (B, N, max_classes) of each point (:func:`cut_masses`)."""
    B = g.shape[0]
    cuts = torch.sort(_uniform(gen, (B, K - 1), 0.05, 0.95), 1).values
    qs = torch.stack([torch.quantile(g[b], cuts[b]) for b in range(B)])
    labels = (g[:, :, None] > qs[:, None, :]).sum(-1)
    perm = torch.argsort(torch.rand((B, max_classes), generator=gen), 1)
    labels = torch.gather(perm, 1, labels)
    if mu is None:
        return labels
    return labels, _permute_masses(cut_masses(mu, sd, qs), perm)


def _n_classes(gen, max_classes):
    if float(torch.rand((1,), generator=gen)) < 0.5:
        return int(_randint(gen, 3, max_classes, (1,)))
    return 2


def scm_classification_prior(gen, batch, n_points, n_ctx, d_max, max_classes=10):
    """SCM prior for classification: the target node cut at random quantiles into 2 (half the
    batches) or 3..``max_classes`` classes, ids permuted per dataset."""
    x, y, f, sd, clean, n_features = _scm_dataset(gen, batch, n_points, n_ctx, d_max)
    x = standardize_context(x, n_ctx)
    K = _n_classes(gen, max_classes)
    labels, probs = _labels_from_latent(gen, y, K, max_classes, mu=f, sd=sd)
    # where an effect of the target is a feature, f is not the latent given x: the drawn label
    one_hot = torch.nn.functional.one_hot(labels, max_classes).to(probs.dtype)
    probs = torch.where(clean[:, None, None], probs, one_hot)
    return _classification_batch(x, labels, n_ctx, n_features, probs)


def tree_classification_prior(gen, batch, n_points, n_ctx, d_max, max_classes=10):
    """Tree prior for classification: ``argmax_k (F_k(x) + tau * Gumbel)`` over the class scores
    ``F_k`` of a sum of random trees (vector leaves), label noise ``tau`` log-uniform on
    [0.01, 1]; ids permuted per dataset."""
    n_features = _draw_sizes(gen, batch, n_points, d_max)
    x = standardize_context(sample_inputs(gen, batch, n_points, n_features, d_max), n_ctx)
    relevant = _relevant_features(gen, n_features, d_max)
    K = _n_classes(gen, max_classes)
    F_ = _random_trees(gen, x, relevant, K)
    labels, probs = _classes_from_latents(gen, F_, K, True, max_classes)
    return _classification_batch(x, labels, n_ctx, n_features, probs)


def _mixture(gen, components, *args):
    """Draw a batch from one of ``components``, ``(upper edge, sampler)`` pairs with increasing
    edges ending at 1, chosen by one uniform draw per batch."""
    u = float(torch.rand((1,), generator=gen))
    for edge, sampler in components[:-1]:
        if u < edge:
            return sampler(gen, *args)
    return components[-1][1](gen, *args)


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


# ------------------------------------------------------------------------------------------------
# near-linear and low signal-to-noise data: real tables are often mostly linear in their features
# (where RidgeCV / LogisticRegressionCV are hard to beat), and often noisy (R^2 well under 0.5)


def _linear_weight_sds(gen, n_features, d_max, scale):
    """Prior standard deviations (B, D) of the weights of a sparse linear function: relevant
    features as :func:`_relevant_features`, ``a_j = scale * exp(z_j / 2) / sqrt(d_rel)`` with
    ``z_j`` standard normal (so some features matter more than others), zero elsewhere."""
    relevant = _relevant_features(gen, n_features, d_max)
    d_rel = relevant.sum(1).clamp_min(1).to(torch.float64)
    z = torch.randn(relevant.shape, generator=gen, dtype=torch.float64)
    a = scale[:, None] * torch.exp(0.5 * z) / d_rel.sqrt()[:, None]
    return torch.where(relevant, a, torch.zeros_like(a))


def linear_gp_prior(gen, batch, n_points, n_ctx, d_max, max_noise_ratio=4.0):
    """A sparse linear function plus a smaller ARD RBF GP, with noise (regression).

    ``f(x) = x . w + g(x)``: ``w_j ~ N(0, a_j^2)`` (:func:`_linear_weight_sds` with scale
    ``s``), ``g ~ GP(0, (rho s)^2 k_RBF)`` with ``rho`` log-uniform on [0.05, 1] and the
    lengthscales and ``s`` of :func:`gp_hyper_prior`; noise-to-signal ratio ``sigma_n / s``
    log-uniform on [0.01, ``max_noise_ratio``] (down to R^2 of about 0.1). ``f`` is a GP with the
    sum kernel, so the query targets' exact posterior predictive comes with the batch.
    """
    n_features = _draw_sizes(gen, batch, n_points, d_max)
    x = standardize_context(sample_inputs(gen, batch, n_points, n_features, d_max), n_ctx)
    inv_l, s, noise = _gp_hyperparameters(gen, n_features, d_max, max_noise_ratio)
    rho = torch.exp(_uniform(gen, (batch,), math.log(0.05), 0.0))
    a = _linear_weight_sds(gen, n_features, d_max, s)
    y, mu, sd = rbf_gp_predictive_sample(gen, x, inv_l, rho * s, noise, n_ctx, linear_sd=a)
    return _finish_regression(x, y, n_ctx, n_features, mu=mu, sd=sd)


def linear_classification_prior(gen, batch, n_points, n_ctx, d_max, max_classes=10):
    """Classes from latent functions that are mostly linear (multinomial- and ordinal-logit-like
    data): each latent is ``x . w_k + g_k(x)`` as in :func:`linear_gp_prior` (unit scale), the
    labels as in :func:`classification_prior` with ``tau`` log-uniform on [0.01, 2]."""
    B, N, D = batch, n_points, d_max
    n_features = _draw_sizes(gen, B, N, D)
    x = standardize_context(sample_inputs(gen, B, N, n_features, D), n_ctx)
    K = _n_classes(gen, max_classes)
    argmax_mode = float(torch.rand((1,), generator=gen)) < 0.5
    inv_l, _, _ = _gp_hyperparameters(gen, n_features, D)
    rho = torch.exp(_uniform(gen, (B,), math.log(0.05), 0.0))
    a = _linear_weight_sds(gen, n_features, D, torch.ones(B, dtype=torch.float64))
    zero = torch.zeros(B, dtype=torch.float64)
    n_latent = K if argmax_mode else 1
    f = torch.stack(
        [rbf_gp_sample(gen, x, inv_l, rho, zero, linear_sd=a)[0] for _ in range(n_latent)], -1
    )
    labels, probs = _classes_from_latents(gen, f, K, argmax_mode, max_classes, max_tau=2.0)
    return _classification_batch(x, labels, n_ctx, n_features, probs)


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
