"""Building blocks of the PFN priors (:mod:`overparam_sklearn.pfn.priors`): input samplers,
standardisation, GP draws with their exact predictive, hyperpriors, and the labelling of
classification latents. Every function draws its randomness from the generator it is given.
"""

import math

import torch

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


def _n_classes(gen, max_classes):
    """2 classes with probability 1/2, else uniform on 3..``max_classes``."""
    if float(torch.rand((1,), generator=gen)) < 0.5:
        return int(_randint(gen, 3, max_classes, (1,)))
    return 2

def _classes_from_latents(gen, f, K, argmax_mode, max_classes, max_tau=1.0):
    """Labels (B, N) and their distributions given ``f`` (B, N, max_classes) from latent
    functions ``f`` (B, N, K) (``argmax_mode``: ``argmax_k f_k + tau * Gumbel``) or (B, N, 1)
    (``f + tau * noise`` cut at random quantiles, :func:`_labels_from_latent`), with temperature
    ``tau`` log-uniform on [0.01, ``max_tau``]; class ids randomly permuted per dataset."""
    B, N = f.shape[:2]
    tau = torch.exp(_uniform(gen, (B, 1, 1), math.log(0.01), math.log(max_tau)))
    if not argmax_mode:
        g = f[..., 0] + tau[..., 0] * torch.randn((B, N), generator=gen, dtype=f.dtype)
        return _labels_from_latent(gen, g, K, max_classes, f[..., 0], tau[..., 0].expand(B, N))
    gumbel = -torch.log(-torch.log(_uniform(gen, f.shape).clamp(1e-12, 1 - 1e-12)))
    labels = torch.argmax(f + tau * gumbel, -1)
    # Gumbel-max: P(argmax_k f_k + tau G_k = k | f) = softmax(f / tau)_k, exactly
    probs = torch.softmax(f / tau, -1)
    perm = torch.argsort(torch.rand((B, max_classes), generator=gen), 1)
    return torch.gather(perm, 1, labels), _permute_masses(probs, perm)

def _labels_from_latent(gen, g, K, max_classes, mu, sd):
    """Ordered classes from cutting a latent ``g`` (B, N) at ``K - 1`` random quantiles, then a
    random permutation of the class ids per dataset; with ``g ~ N(mu, sd^2)``, also the class
    masses (B, N, max_classes) of each point (:func:`cut_masses`)."""
    B = g.shape[0]
    cuts = torch.sort(_uniform(gen, (B, K - 1), 0.05, 0.95), 1).values
    # quantiles over all points of each dataset (torch.quantile is not batched over q rows)
    qs = torch.stack([torch.quantile(g[b], cuts[b]) for b in range(B)])
    labels = (g[:, :, None] > qs[:, None, :]).sum(-1)
    perm = torch.argsort(torch.rand((B, max_classes), generator=gen), 1)
    return torch.gather(perm, 1, labels), _permute_masses(cut_masses(mu, sd, qs), perm)

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


def _mixture(gen, components, *args):
    """Draw a batch from one of ``components``, ``(upper edge, sampler)`` pairs with increasing
    edges ending at 1, chosen by one uniform draw per batch."""
    u = float(torch.rand((1,), generator=gen))
    for edge, sampler in components[:-1]:
        if u < edge:
            return sampler(gen, *args)
    return components[-1][1](gen, *args)

