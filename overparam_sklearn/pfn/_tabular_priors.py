"""Priors that look like tabular data (:mod:`overparam_sklearn.pfn.priors` registers them):
structural causal models, sums of random trees, and near-linear, noisy data."""

import math

import torch

from ._prior_sampling import (
    _classes_from_latents,
    _classification_batch,
    _draw_sizes,
    _finish_regression,
    _gp_hyperparameters,
    _labels_from_latent,
    _n_classes,
    _randint,
    _relevant_features,
    _uniform,
    rbf_gp_predictive_sample,
    rbf_gp_sample,
    sample_inputs,
    standardize_context,
)

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


def scm_classification_prior(gen, batch, n_points, n_ctx, d_max, max_classes=10):
    """SCM prior for classification: the target node cut at random quantiles into 2 (half the
    batches) or 3..``max_classes`` classes, ids permuted per dataset."""
    x, y, f, sd, clean, n_features = _scm_dataset(gen, batch, n_points, n_ctx, d_max)
    x = standardize_context(x, n_ctx)
    K = _n_classes(gen, max_classes)
    labels, probs = _labels_from_latent(gen, y, K, max_classes, f, sd)
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

