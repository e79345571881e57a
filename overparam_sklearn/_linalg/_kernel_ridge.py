"""Kernel ridge and gradient-flow ensembles: the solves of the NTK / NNGP regressors.

Gradient flow on the MSE loss ``||f(X) - y||^2 / (2 y.size)`` with a kernel ``A`` (learning rate
1, neural-tangents' time convention) gives, for the train-set residual, ``exp(-A t / y.size)``;
the test prediction then needs

    ``phi_tau(A) B = A^{-1} (I - exp(-tau A)) B``  with  ``tau = t / y.size``,

(Lee et al. 2019, Eq. 9-16). :func:`flow_matrix_function` evaluates it without an
eigendecomposition (block Lanczos with full reorthogonalisation, the Krylov method of Saad 1992 /
Hochbruck & Lubich 1997), falling back to the eigendecomposition only when Krylov does not
converge quickly; :func:`flow_filter` is the same function of eigenvalues for callers that
already hold an eigendecomposition (several times ``t`` reuse one).
"""

import math

import numpy as np
import torch

from ._dense import all_finite, cho_solve, cholesky, eigh


def flow_filter(eigenvalues, tau):
    """``(1 - exp(-tau * lam)) / lam`` elementwise, with its limit ``tau`` at ``lam = 0``.

    Negative eigenvalues (round-off on a PSD matrix) are clipped to zero, as neural-tangents
    does before the exponential. ``tau = inf`` gives ``1 / lam`` (the converged flow).
    """
    lam = torch.clamp(eigenvalues, min=0)
    if math.isinf(tau):
        return torch.where(lam > 0, 1 / torch.where(lam > 0, lam, 1.0), 0.0)
    x = lam * tau
    small = x < 1e-8
    safe = torch.where(small, torch.ones_like(lam), lam)
    out = -torch.expm1(-x) / safe
    # series tau (1 - x / 2 + x^2 / 6) for tiny x avoids 0 / 0
    return torch.where(small, tau * (1 - x / 2 + x * x / 6), out)


def _default_tol(dtype):
    return 1e-13 if dtype == torch.float64 else 1e-6


def flow_matrix_function(A, B, tau, tol=None, max_iter=None, check_every=8):
    """``A^{-1} (I - exp(-tau A)) B`` for symmetric PSD ``A`` without an eigendecomposition.

    Runs one Lanczos process per column of ``B`` (batched, one ``A @ Q`` product per step) with
    full reorthogonalisation; the function of the small tridiagonal matrix is applied exactly.
    Returns ``(result, n_iter)``; ``result`` is ``None`` if it did not converge within
    ``max_iter`` steps (the caller then falls back to :func:`eigh`).

    Parameters
    ----------
    A : tensor of shape (n, n)
    B : tensor of shape (n, k)
    tau : float
        ``t / y.size`` in neural-tangents' convention.
    tol : float, default=None
        Relative change of the iterate between checks that counts as converged; ``1e-13`` for
        float64 and ``1e-6`` for float32.
    max_iter : int, default=None
        ``min(n, 400)`` by default.
    """
    n, k = B.shape
    dtype = A.dtype
    tol = _default_tol(dtype) if tol is None else tol
    max_iter = min(n, 400) if max_iter is None else min(n, max_iter)
    norms = torch.linalg.vector_norm(B, dim=0)
    nonzero = norms > 0
    q = B / torch.where(nonzero, norms, 1.0)
    basis = torch.empty((max_iter, n, k), dtype=dtype, device=A.device)
    alphas = torch.zeros((max_iter, k), dtype=dtype, device=A.device)
    betas = torch.zeros((max_iter, k), dtype=dtype, device=A.device)
    previous = None
    done = torch.zeros(k, dtype=torch.bool, device=A.device)
    for j in range(max_iter):
        basis[j] = q
        w = A @ q
        alphas[j] = (q * w).sum(0)
        # full reorthogonalisation, twice ("twice is enough", Parlett)
        for _ in range(2):
            coeff = torch.einsum("jnk,nk->jk", basis[: j + 1], w)
            w = w - torch.einsum("jnk,jk->nk", basis[: j + 1], coeff)
        beta = torch.linalg.vector_norm(w, dim=0)
        scale = torch.clamp(alphas[: j + 1].abs().amax(0), min=torch.finfo(dtype).tiny)
        exhausted = beta <= 10 * torch.finfo(dtype).eps * scale
        done = done | exhausted
        last = j == max_iter - 1
        if (j + 1) % check_every == 0 or bool(done.all()) or last:
            current = _lanczos_apply(basis[: j + 1], alphas[: j + 1], betas[: j], tau, norms)
            if bool(done.all()) or j + 1 == n:
                return current, j + 1
            if previous is not None:
                change = torch.linalg.vector_norm(current - previous, dim=0)
                size = torch.linalg.vector_norm(current, dim=0)
                if bool((change <= tol * torch.clamp(size, min=torch.finfo(dtype).tiny)).all()):
                    return current, j + 1
            previous = current
        if last:
            break
        betas[j] = torch.where(done, 0.0, beta)
        q = torch.where(done, 0.0, w / torch.where(beta > 0, beta, 1.0))
    return None, max_iter


def _lanczos_apply(basis, alphas, betas, tau, norms):
    """``||b|| Q f(T) e_1`` for each column, ``T`` the Lanczos tridiagonal matrix."""
    m, n, k = basis.shape
    T = torch.diag_embed(alphas.T)  # (k, m, m)
    if m > 1:
        off = betas.T  # (k, m - 1)
        T = T + torch.diag_embed(off, offset=1) + torch.diag_embed(off, offset=-1)
    evals, evecs = torch.linalg.eigh(T)
    coef = evecs @ (flow_filter(evals, tau) * evecs[:, 0, :]).unsqueeze(-1)  # (k, m, 1)
    return torch.einsum("jnk,kj->nk", basis, coef[..., 0]) * norms


# ------------------------------------------------------------------------------------------
# Kernel ridge / gradient-flow ensembles: one small dispatcher over the solvers
#
# The NTK / NNGP ensemble needs ``phi_tau(A) B = A^{-1}(I - exp(-tau A)) B`` for the regularised
# train kernel ``A``: at ``tau = inf`` (converged) that is ``A^{-1} B`` by Cholesky; at a finite
# ``tau`` by Krylov for a few columns or the (cached) eigendecomposition for many. A "factor"
# is a dict ``{"solver": "cholesky", "L": L}`` or ``{"solver": "flow", "A": A}`` (the Nystrom
# solver lives in ``_nystrom``, which builds on this module).

# Above this many right-hand sides a finite-time apply uses the (cached) eigendecomposition.
_KRYLOV_MAX_COLUMNS = 64


def kernel_ridge_factor(A, tau=None, what="the regularised train kernel"):
    """Prepare the regularised train kernel ``A`` for :func:`kernel_ridge_apply`.

    ``tau=None`` (or ``inf``): the lower Cholesky factor, computed in ``A``'s memory (``A`` is
    destroyed). A finite ``tau`` keeps ``A`` itself (Krylov needs products with it).
    """
    if tau is None or math.isinf(tau):
        return {"solver": "cholesky", "L": cholesky(A, what=what, overwrite=True)}
    if not all_finite(A):
        raise ValueError(f"{what} contains NaN or inf; check the inputs and kernel parameters.")
    return {"solver": "flow", "A": A}


def _factor_eigh(factor, cache):
    if cache is not None and "eigh" in cache:
        return cache["eigh"]
    out = eigh(factor["A"])
    if cache is not None:
        cache["eigh"] = out
    return out


def kernel_ridge_apply(factor, B, tau=None, cache=None):
    """``phi_tau(A) B``: ``A^{-1} B`` (Cholesky) or ``A^{-1}(I - exp(-tau A)) B`` (flow).

    For the flow, Krylov (:func:`flow_matrix_function`) serves up to 64 columns unless an
    eigendecomposition is already in ``cache`` (a dict, key ``"eigh"``); otherwise the
    eigendecomposition is computed once and stored there.
    """
    if factor["solver"] == "cholesky":
        return cho_solve(factor["L"], B)
    if B.shape[1] <= _KRYLOV_MAX_COLUMNS and (cache is None or "eigh" not in cache):
        out, _ = flow_matrix_function(factor["A"], B, tau)
        if out is not None:
            return out
    evals, evecs = _factor_eigh(factor, cache)
    return evecs @ (flow_filter(evals, tau)[:, None] * (evecs.T @ B))


def ensemble_variance_reduction(factor, K_td, tau=None, nngp_td=None, nngp_train=None,
                                return_cov=False, cache=None):
    """How much training lowers the ensemble's prior (co)variance at the query points.

    The predictive covariance is ``K_tt - reduction`` (Lee et al. 2019, Eq. 16), with ``K`` the
    NNGP and ``Theta`` the trained kernel (``A = Theta_dd + alpha I``):

    * readout only (``nngp_td is None``, ``Theta = K``):
      ``reduction = K_td phi_{2 tau}(A) K_dt`` (at ``tau = inf``: ``K_td A^{-1} K_dt``);
    * NTK: with ``term = phi_tau(A) Theta_dt``,
      ``reduction = term' K_dt + K_td term - term' K_dd term``.

    Parameters
    ----------
    factor : dict
        From :func:`kernel_ridge_factor`.
    K_td : tensor of shape (q, n)
        The trained kernel between queries and training rows.
    tau : float or None
    nngp_td : tensor of shape (q, n) or None
        NNGP between queries and training rows (NTK mode); ``None`` in readout-only mode.
    nngp_train : callable or None
        Returns the NNGP train kernel ``K_dd`` (NTK mode; called once, the caller may cache).
    return_cov : bool
        The ``(q, q)`` matrix; otherwise its diagonal ``(q,)``.
    cache : dict or None
        Passed to :func:`kernel_ridge_apply`.
    """
    cholesky_mode = factor["solver"] == "cholesky"
    if nngp_td is None:
        if cholesky_mode:
            v = torch.linalg.solve_triangular(factor["L"], K_td.T, upper=False)
            return v.T @ v if return_cov else (v * v).sum(0)
        term = kernel_ridge_apply(factor, K_td.T.contiguous(), 2 * tau, cache)
        return K_td @ term if return_cov else (K_td * term.T).sum(1)
    term = kernel_ridge_apply(factor, K_td.T.contiguous(), tau, cache)
    KT = nngp_train() @ term
    if return_cov:
        cross = term.T @ nngp_td.T
        return cross + cross.T - term.T @ KT
    return 2 * (term * nngp_td.T).sum(0) - (term * KT).sum(0)

def kernel_ridge_path(s, U, Y, alphas, criterion="loo", tau=None):
    """Cross-validation error of kernel ridge (no intercept) for every alpha, from ``K = U s U'``.

    The fitted values are ``H(alpha) y`` with ``H = U diag(s f) U'``: ``f = 1 / (s + alpha)``
    for the converged ridge, ``f = (1 - exp(-tau (s + alpha))) / (s + alpha)`` for gradient flow
    stopped at ``tau`` (Lee et al. 2019, Eq. 9-16). The residual ``y - H y = U diag(1 - s f) U' y``
    is computed from ``1 - s f`` directly (for the ridge ``alpha / (s + alpha)``), without
    cancellation when the fit nearly interpolates. ``"loo"``: the exact leave-one-out residual
    ``(y_i - (H y)_i) / (1 - H_ii)`` of a ridge (Allen 1974); ``"gcv"``:
    ``mean((y - H y)^2) / (1 - tr(H) / n)^2`` (Golub, Heath & Wahba 1979), defined for any linear
    smoother, which is what a finite ``tau`` needs.

    Parameters
    ----------
    s, U : tensors of shape (n,), (n, n)
        Eigenpairs of the kernel matrix (without the ridge), eigenvalues clipped at zero.
    Y : tensor of shape (n, k)
    alphas : array-like of shape (n_alphas,), > 0
    criterion : {"loo", "gcv"}
    tau : float or None
        Finite training time of the flow (``t / y.size``); ``None`` is the converged ridge.

    Returns
    -------
    mse : ndarray of shape (n_alphas,)
        Mean over samples and outputs of the squared LOO (or GCV) residuals (``inf`` where
        undefined).
    """
    if criterion not in ("loo", "gcv"):
        raise ValueError(f"criterion must be 'loo' or 'gcv', got {criterion!r}")
    n, k = Y.shape
    a = torch.as_tensor(np.asarray(alphas, dtype=np.float64), dtype=s.dtype, device=s.device)
    denom = s[:, None] + a[None, :]  # (n, A)
    if tau is None:
        shrink = a[None, :] / denom  # 1 - s / (s + alpha)
    else:
        shrink = 1 - s[:, None] * flow_filter(denom, tau)
    Uty = U.T @ Y  # (n, k)
    A = a.numel()
    resid = (U @ (shrink[:, :, None] * Uty[:, None, :]).reshape(n, A * k)).reshape(n, A, k)
    if criterion == "loo":
        one_minus_h = (U * U) @ shrink  # (n, A)
        safe = one_minus_h > 1e-12
        scaled = resid / torch.where(safe, one_minus_h, 1.0)[:, :, None]
        loo = torch.where(safe[:, :, None], scaled, torch.inf)
        mse = (loo * loo).mean(dim=(0, 2))
    else:
        frac = shrink.sum(dim=0) / n  # 1 - tr(H) / n
        gcv = (resid * resid).mean(dim=(0, 2)) / frac.clamp(min=1e-12) ** 2
        mse = torch.where(frac > 1e-12, gcv, torch.inf)
    return mse.cpu().numpy()
