"""Marginal-likelihood tuning of the infinite-width kernels' hyperparameters (ML-II).

The model is the Gaussian process ``y ~ N(0, sigma^2 (K_theta / c_theta + rho I))`` for each
output column, where ``K_theta`` is the NNGP or NTK of the network with input scales ``s``,
``w_std`` and ``b_std``, and ``c_theta`` is the mean of its diagonal on the training rows.
Dividing by ``c_theta`` separates the output scale from the shape of the kernel: ``w_std`` and
``b_std`` change the kernel's amplitude by orders of magnitude (``w_std^(2 (n_hidden + 1))`` for
ReLU), which is what makes a plain L-BFGS run on them jump to a point where the Cholesky factor
fails (see the reliability issue). Here the amplitude ``sigma^2`` is profiled out in closed form
(``sigma^2 = tr(Y' A^{-1} Y) / (n k)`` with ``A = K / c + rho I``), the noise ``rho`` is relative
to the kernel's scale and bounded below, so ``A`` has eigenvalues ``>= rho`` and its Cholesky
factor exists at every point L-BFGS visits. The remaining parameters (log input scales, log
``w_std``, log ``b_std``, log ``rho``) are optimised by L-BFGS-B with exact gradients (reverse-mode
autograd through the kernel recursion and the Cholesky factor).

The fitted model in the estimator's terms: the ridge ``alpha = rho c`` on the kernel ``K_theta``
(the mean prediction ``K_* (K + alpha I)^{-1} y`` does not depend on ``sigma^2``) and
``kernel_scale = sigma^2 / c``, which multiplies the predictive (co)variance.
"""

import math
import warnings

import numpy as np
import scipy.optimize
import torch
from sklearn.exceptions import ConvergenceWarning

from .kernels import fc_diagonals, fc_kernels

# Bounds in the original units, chosen by measurement on the UCI sets (doc/modules/ntk.rst):
# optima found with wider boxes stayed inside these on boston, concrete, energy, yacht, wine,
# kin8nm; the relative noise floor keeps A's condition number below n / 1e-6.
BOUNDS = {
    "input_scales": (1e-3, 1e3),
    "w_std": (5e-2, 2e1),
    "b_std": (1e-4, 1e2),
    "rho": (1e-6, 1e1),
}
# Where random restarts start (a sub-box of the bounds).
START_BOX = {
    "input_scales": (0.3, 3.0),
    "w_std": (0.5, 2.0),
    "b_std": (1e-2, 1.0),
    "rho": (1e-3, 0.3),
}


def _kernel_matrix(X, kind, n_hidden, activation, parameterization, width, w, b, s):
    """Train kernel with an exact, differentiable diagonal (as in the sklearn adapter)."""
    need_ntk = kind == "ntk"
    nngp, ntk = fc_kernels(X, None, n_hidden, activation, w, b, parameterization, width,
                           need_ntk=need_ntk, need_nngp=not need_ntk, input_scales=s)
    K = ntk if need_ntk else nngp
    variances, theta = fc_diagonals(X, n_hidden, activation, w, b, parameterization, width,
                                    need_ntk=need_ntk, input_scales=s)
    return torch.diagonal_scatter(K, theta if need_ntk else variances[-1])


def profiled_log_marginal_likelihood(K, Y, rho):
    """LML of ``Y`` (n, k) under ``N(0, sigma^2 (K / c + rho I))`` at the best ``sigma^2``.

    Returns ``(lml, sigma2, c)``; ``lml`` is differentiable, or ``None`` where the Cholesky
    factorisation fails.
    """
    n, k = Y.shape
    c = K.diagonal().mean()
    A = K / c + rho * torch.eye(n, dtype=K.dtype, device=K.device)
    L, info = torch.linalg.cholesky_ex(A)
    if int(info) != 0:
        return None, None, c
    alpha = torch.cholesky_solve(Y, L)
    sigma2 = (Y * alpha).sum() / (n * k)
    logdet = 2 * torch.log(L.diagonal()).sum()
    lml = -0.5 * n * k * (torch.log(sigma2) + 1.0 + math.log(2 * math.pi)) - 0.5 * k * logdet
    return lml, sigma2, c


def tune_marginal_likelihood(X, Y, *, kind, n_hidden, activation, parameterization, width,
                             w_std, b_std, input_scales, alpha, ard, n_restarts, random_state,
                             max_iter=200):
    """Maximise the profiled log marginal likelihood over the kernel's hyperparameters.

    Parameters
    ----------
    X : tensor of shape (n, d)
    Y : tensor of shape (n, k)
    kind : {"ntk", "nngp"}
        Which kernel is the GP covariance.
    w_std, b_std, input_scales, alpha : float, float, array or None, float
        The starting point. ``b_std == 0`` is held at 0 (the bias-free network).
    ard : bool
        One input scale per feature (True) or one shared scale. With True, the isotropic
        problem is solved first and its optimum is one more start.
    n_restarts : int
        Further starts drawn log-uniformly from :data:`START_BOX` with ``random_state``.
    random_state : numpy RandomState

    Returns
    -------
    dict with ``w_std``, ``b_std``, ``input_scales`` (ndarray of shape (d,)), ``alpha``,
    ``kernel_scale``, ``log_marginal_likelihood`` and ``n_evaluations``.
    """
    dtype, device = X.dtype, X.device
    n, d = X.shape
    iso = None
    if ard:
        # Also start the per-feature search from the isotropic optimum (a cheap search in 3-4
        # dimensions): measured on yacht and energy, it reaches higher likelihoods than ARD
        # started at the given point only (LML 470 vs 464 on yacht, 697 vs 677 on energy). The
        # given point stays a start: the isotropic optimum can be degenerate (a constant kernel
        # on a small classification set), where the scales' gradient vanishes.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            iso = tune_marginal_likelihood(
                X, Y, kind=kind, n_hidden=n_hidden, activation=activation,
                parameterization=parameterization, width=width, w_std=w_std, b_std=b_std,
                input_scales=input_scales, alpha=alpha, ard=False, n_restarts=0,
                random_state=random_state, max_iter=max_iter,
            )
    n_scales = d if ard else 1
    fit_bias = b_std > 0
    names = ["input_scales"] * n_scales + ["w_std"] + (["b_std"] if fit_bias else []) + ["rho"]
    bounds = [tuple(np.log(BOUNDS[name])) for name in names]

    def unpack(z):
        z = torch.as_tensor(z, dtype=dtype, device=device)
        log_s = z[:n_scales]
        s = torch.exp(log_s if ard else log_s.expand(d))
        w = torch.exp(z[n_scales])
        b = torch.exp(z[n_scales + 1]) if fit_bias else torch.zeros((), dtype=dtype)
        rho = torch.exp(z[-1])
        return s, w, b, rho

    def objective(z):
        z = torch.tensor(z, dtype=dtype, device=device, requires_grad=True)
        s, w, b, rho = unpack(z)
        K = _kernel_matrix(X, kind, n_hidden, activation, parameterization, width, w, b, s)
        lml, _, _ = profiled_log_marginal_likelihood(K, Y, rho)
        if lml is None or not torch.isfinite(lml):
            # Cannot happen for rho >= 1e-6 in float64 unless the kernel itself is not finite;
            # a huge value makes the line search step back.
            return 1e10, np.zeros(len(names))
        # Per-value scale: the LML's gradient is O(n), and L-BFGS-B's first step (identity
        # Hessian) would go to a corner of the box, where a constant kernel can trap it (seen
        # on wine: the isotropic search stopped at w_std = 0.05 and predicted the mean).
        loss = -lml / Y.numel()
        (grad,) = torch.autograd.grad(loss, z)
        return float(loss.detach()), grad.detach().cpu().numpy().astype(np.float64)

    def start_vector(w, b, scales, alpha, rho_range):
        scales = np.ones(d) if scales is None else np.asarray(scales, float)
        scales = np.clip(scales, *BOUNDS["input_scales"])
        with torch.no_grad():
            c = float(_kernel_matrix(X, kind, n_hidden, activation, parameterization, width,
                                     w, b, scales).diagonal().mean())
        z = list(np.log(scales if ard else [np.exp(np.log(scales).mean())]))
        z += [math.log(w)] + ([math.log(b)] if fit_bias else [])
        z += [math.log(np.clip(alpha / c, *rho_range))]
        return np.clip(np.array(z), *np.array(bounds).T)

    # a user's alpha (often a tiny default) is a poor start for the noise: clipped to
    # [0.1, 1] of the kernel's mean diagonal (measured: from 1e-3 the isotropic search on wine
    # stopped in a near-constant kernel, LML -717.8, RMSE 0.857; from 0.2, LML -627.9, RMSE
    # 0.633; the same optima on concrete, energy, yacht); the isotropic optimum's is kept
    starts = [start_vector(w_std, b_std, input_scales, alpha, (0.1, 1.0))]
    if iso is not None:
        starts.insert(0, start_vector(iso["w_std"], iso["b_std"], iso["input_scales"],
                                      iso["alpha"], BOUNDS["rho"]))
    for _ in range(n_restarts):
        z = [random_state.uniform(*np.log(START_BOX[name])) for name in names]
        starts.append(np.array(z))

    best, n_eval, moved = None, 0, False
    for z_start in starts:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=r".*torch\.jit\.script.* is deprecated",
                                    category=DeprecationWarning)
            result = scipy.optimize.minimize(objective, z_start, jac=True, method="L-BFGS-B",
                                             bounds=bounds, options={"maxiter": max_iter})
        n_eval += result.nfev
        moved = moved or not np.allclose(result.x, z_start)
        if best is None or result.fun < best.fun:
            best = result
    if not moved or best.fun >= 1e10:
        warnings.warn(
            "Marginal-likelihood tuning did not move from its starting point(s) "
            f"({best.message}); the hyperparameters are those given. Try other starting "
            "values (w_std, b_std, alpha) or n_restarts > 0.",
            ConvergenceWarning, stacklevel=3,
        )
    with torch.no_grad():
        s, w, b, rho = unpack(best.x)
        K = _kernel_matrix(X, kind, n_hidden, activation, parameterization, width, w, b, s)
        lml, sigma2, c = profiled_log_marginal_likelihood(K, Y, rho)
    return dict(
        w_std=float(w), b_std=float(b), input_scales=s.cpu().numpy().astype(np.float64),
        alpha=float(rho * c), kernel_scale=float(sigma2 / c),
        log_marginal_likelihood=float(lml), n_evaluations=int(n_eval),
        converged=bool(best.success),
    )
