"""Nystrom kernel ridge regression with a Falkon-style preconditioned conjugate-gradient solve.

Kernel ridge regression on ``n`` samples restricted to the span of ``m`` centres ``C`` (a subset
of the training rows; Williams & Seeger 2001, Smola & Schoelkopf 2000) predicts
``f(x) = k(x, C) a`` with

    ``(K_mn K_nm + alpha K_mm) a = K_mn y``,                                   (1)

the minimiser of ``||K_nm a - y||^2 + alpha a' K_mm a``. With ``C = X`` (``m = n``) and ``K``
invertible, (1) is ``K (K + alpha I) a = K y``, i.e. the exact solve ``a = (K + alpha I)^{-1} y``,
so the Nystrom estimator tends to the exact one as ``m -> n`` (the tests check it).

The matrix of (1) has the squared condition number of ``K_nm``; Falkon (Rudi, Carratino &
Rosasco, NeurIPS 2017, Sec. 3 and Alg. 1) solves it by conjugate gradients preconditioned with
``P = (n / m) K_mm^2 + alpha K_mm``, the value of (1) when ``K_mn K_nm`` is replaced by its
estimate from the centres alone. With ``K_mm = T' T`` and ``(n / m) T T' + alpha I = A' A``
(both upper Cholesky factors), ``P = T' A' A T``, and CG runs on the well-conditioned system
``B' (K_mn K_nm + alpha K_mm) B beta = B' K_mn y`` with ``B = T^{-1} A^{-1}``, ``a = B beta``.
(Falkon's ridge is ``lambda n``; ours is the absolute ``alpha`` of the exact solver.)

``K_nm`` is never stored whole: it is evaluated in row tiles whose products are accumulated
into ``K_mn K_nm`` (``m x m``) and ``K_mn y`` in a single pass over the data. Falkon instead
recomputes the tiles in every CG iteration, which pays on a GPU where kernel evaluation is cheap;
on a CPU one NTK tile costs about as much as ``m`` flops per entry, so forming the ``m x m``
product once (``O(n m^2)`` BLAS work) and iterating on it (``O(m^2)`` per step) is much faster.
The ``m x m`` algebra is done in float64 whatever the kernel's dtype.
"""

import warnings

import numpy as np
import torch
from sklearn.exceptions import ConvergenceWarning

from ._backend import DEFAULT_TILE_BYTES, rows_per_tile, tile_slices
from ._linalg import all_finite, cholesky, gram

__all__ = ["nystrom_gram", "falkon_solve", "nystrom_fit", "kernel_apply", "nystrom_bytes"]

#: Bytes one ``(rows, m)`` kernel tile may take when ``tile_bytes`` is not given.
TILE_BYTES = DEFAULT_TILE_BYTES


def nystrom_bytes(n, m, n_features, n_targets, dtype, tile_bytes=None):
    """Peak bytes of :func:`nystrom_fit` (a documented estimate used by the memory guard).

    Five ``m x m`` float64 matrices (``K_mn K_nm``, ``K_mm``, the two factors and one
    temporary), the data and targets, one ``(rows, m)`` kernel tile with its float64 copy, and the
    kernel recursion's tile buffers (about ``8 * tile_bytes``).
    """
    item = torch.empty((), dtype=dtype).element_size()
    tile_bytes = tile_bytes or TILE_BYTES
    return int(5 * m * m * 8 + n * (n_features + n_targets) * item
               + 2 * tile_bytes + 8 * tile_bytes + m * n_targets * 8 * 4)


def nystrom_gram(kernel, X, Y, centers, tile_bytes=None, log=None):
    """``K_mn K_nm`` and ``K_mn Y`` in float64 from one pass over row tiles of ``X``.

    Parameters
    ----------
    kernel : callable
        ``kernel(X1, X2)`` returns the ``(len(X1), len(X2))`` kernel matrix as a tensor.
    X : tensor of shape (n, d)
    Y : tensor of shape (n, k)
    centers : tensor of shape (m, d)
    tile_bytes : int or None
        Bytes one ``(rows, m)`` kernel tile may take; ``None`` means :data:`TILE_BYTES`.
    log : callable or None
        Called with a progress message per tenth of the data.

    Returns
    -------
    KtK : tensor of shape (m, m), float64
    KtY : tensor of shape (m, k), float64
    """
    n, m = X.shape[0], centers.shape[0]
    f64 = torch.float64
    on_cpu = X.device.type == "cpu"
    if on_cpu:
        # BLAS syrk accumulating into one Fortran-ordered upper triangle: half the flops of
        # a general product (measured 15% faster than addmm at m = 4000 on one core)
        from scipy.linalg import blas

        KtK_np = np.zeros((m, m), order="F")
    else:
        KtK = torch.zeros((m, m), dtype=f64, device=X.device)
    KtY = torch.zeros((m, Y.shape[1]), dtype=f64, device=X.device)
    slices = tile_slices(n, rows_per_tile(m, X.dtype, 1, tile_bytes or TILE_BYTES))
    step = max(1, len(slices) // 10)
    for i, sl in enumerate(slices):
        block = kernel(X[sl], centers).to(f64)
        if not all_finite(block):
            raise ValueError("the kernel between the data and the Nystrom centres contains "
                             "NaN or inf; check the inputs and kernel parameters.")
        if on_cpu:
            # a C-ordered (rows, m) block is the Fortran-ordered (m, rows) array block.T
            blas.dsyrk(1.0, block.contiguous().numpy().T, beta=1.0, c=KtK_np, trans=0,
                       lower=0, overwrite_c=1)
        else:
            KtK.addmm_(block.T, block)
        KtY.addmm_(block.T, Y[sl].to(f64))
        if log is not None and (i + 1) % step == 0:
            log(f"Nystrom products: {sl.stop}/{n} rows")
    if on_cpu:
        upper = torch.from_numpy(np.triu(KtK_np))
        del KtK_np
        return upper + torch.triu(upper, 1).T, KtY
    return 0.5 * (KtK + KtK.T), KtY


def _jittered_cholesky(K, what):
    """Lower Cholesky factor of ``K + jitter I``; the jitter grows from ``m eps mean(diag)``.

    Centres may repeat (duplicated rows) or be nearly collinear, which makes ``K_mm`` singular;
    Falkon adds such a jitter too. Only the preconditioner and the ``alpha K_mm`` term's factor
    use it; the system (1) itself is left unchanged.
    """
    m = K.shape[0]
    scale = float(K.diagonal().abs().mean()) or 1.0
    jitter = m * torch.finfo(K.dtype).eps * scale
    for _ in range(6):
        L, info = torch.linalg.cholesky_ex(
            K + jitter * torch.eye(m, dtype=K.dtype, device=K.device))
        if int(info) == 0:
            return L
        jitter *= 100
    return cholesky(K, what, hint="use fewer Nystrom centres or check for constant features")


def falkon_solve(KtK, KtY, Kmm, alpha, n, tol=None, max_iter=100):
    """Solve ``(KtK + alpha Kmm) a = KtY`` by Falkon-preconditioned conjugate gradients.

    Parameters
    ----------
    KtK : tensor of shape (m, m)
        ``K_mn K_nm`` (float64).
    KtY : tensor of shape (m, k)
    Kmm : tensor of shape (m, m)
        Kernel between the centres.
    alpha : float
        Absolute ridge of the exact solver.
    n : int
        Number of training rows (scales the preconditioner).
    tol : float, default=None
        Relative residual ``||r|| / ||b||`` of the preconditioned system at which CG stops;
        ``1e-10`` by default.
    max_iter : int, default=100

    Returns
    -------
    coef : tensor of shape (m, k)
    n_iter : int
    """
    f64 = torch.float64
    KtK, KtY, Kmm = KtK.to(f64), KtY.to(f64), Kmm.to(f64)
    m = Kmm.shape[0]
    tol = 1e-10 if tol is None else tol
    L = _jittered_cholesky(Kmm, f"the {m} x {m} kernel between the Nystrom centres")
    # (n / m) T T' + alpha I with T = L': here T T' = L' L
    inner = gram(L).mul_(n / m)  # L' L (BLAS syrk on the CPU)
    inner.diagonal().add_(alpha)
    La = cholesky(inner, "the Nystrom preconditioner", hint="increase alpha")
    del inner
    solve = torch.linalg.solve_triangular

    def apply_B(v):  # B v = T^{-1} A^{-1} v with T = L', A = La'
        return solve(L.T, solve(La.T, v, upper=True), upper=True)

    def apply_Bt(w):  # B' w = A^{-T} T^{-T} w
        return solve(La, solve(L, w, upper=False), upper=False)

    H = KtK + alpha * Kmm

    def matvec(beta):
        return apply_Bt(H @ apply_B(beta))

    b = apply_Bt(KtY)
    tiny = torch.finfo(f64).tiny
    b_norm = torch.linalg.vector_norm(b, dim=0).clamp(min=tiny)
    beta = torch.zeros_like(b)
    r = b.clone()
    p = r.clone()
    rr = (r * r).sum(0)
    active = rr.sqrt() > tol * b_norm
    n_iter = 0
    while bool(active.any()) and n_iter < max_iter:
        Ap = matvec(p)
        pAp = (p * Ap).sum(0)
        # a direction the (preconditioned, ~identity-scaled) matrix maps to ~0 lies in its null
        # space (duplicated centres): the system is consistent, so that column is done
        ok = active & (pAp > 1e3 * torch.finfo(f64).eps * (p * p).sum(0))
        step = torch.where(ok, rr / torch.where(ok, pAp, 1.0), 0.0)
        beta += step * p
        r -= step * Ap
        rr_new = (r * r).sum(0)
        n_iter += 1
        active = ok & (rr_new.sqrt() > tol * b_norm)
        p = r + torch.where(ok, rr_new / rr.clamp(min=tiny), 0.0) * p
        rr = rr_new
    # the recursive residual drifts from the true one at round-off level: report the true one
    residual = float((torch.linalg.vector_norm(b - matvec(beta), dim=0) / b_norm).max())
    if residual > max(tol, 1e-6):
        warnings.warn(
            f"Nystrom conjugate gradients stopped at a relative residual of {residual:.2g} "
            f"after {n_iter} iterations (tolerance {tol:g}); the solution may be inaccurate. "
            "Try increasing alpha.",
            ConvergenceWarning,
            stacklevel=3,
        )
    return apply_B(beta), n_iter


def nystrom_fit(kernel, X, Y, centers, alpha, tol=None, max_iter=100,
                tile_bytes=None, log=None):
    """Nystrom kernel ridge coefficients ``a`` of (1) (see the module docstring).

    Returns ``(coef (m, k) float64, n_iter)``; predictions are ``kernel(X_new, centers) @ coef``
    (:func:`kernel_apply`).
    """
    KtK, KtY = nystrom_gram(kernel, X, Y, centers, tile_bytes, log)
    Kmm = kernel(centers, centers).to(torch.float64)
    if log is not None:
        log(f"Falkon-preconditioned CG on the {centers.shape[0]} x {centers.shape[0]} system")
    return falkon_solve(KtK, KtY, Kmm, alpha, X.shape[0], tol, max_iter)


def kernel_apply(kernel, X, centers, coef, tile_bytes=None):
    """``kernel(X, centers) @ coef`` in row tiles (the ``(len(X), m)`` kernel is never whole)."""
    out = torch.empty((X.shape[0], coef.shape[1]), dtype=coef.dtype, device=coef.device)
    tile = rows_per_tile(centers.shape[0], X.dtype, 1, tile_bytes or TILE_BYTES)
    for sl in tile_slices(X.shape[0], tile):
        out[sl] = kernel(X[sl], centers).to(coef.dtype) @ coef
    return out
