"""Shared dense linear algebra in torch: Cholesky solves, gradient-flow matrix functions.

Numerics live here as private module-level solvers (in the spirit of scikit-learn's
``linear_model/_ridge.py``); estimators only orchestrate. Everything takes and returns torch
tensors on any device.

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

__all__ = [
    "cholesky",
    "cho_solve",
    "flow_filter",
    "flow_matrix_function",
    "eigh",
    "kernel_ridge_factor",
    "kernel_ridge_apply",
    "ensemble_variance_reduction",
    "ridge_decompose",
    "ridge_path",
    "ridge_coef",
    "ridge_solve",
    "kernel_ridge_path",
    "auto_alpha_grid",
    "warn_if_alpha_on_edge",
]


def all_finite(A, tile_rows=1024):
    """``torch.isfinite(A).all()`` without its temporaries.

    ``isfinite`` on an ``n x n`` float64 matrix allocates about 1.25 more ``n x n`` matrices. A
    NaN or inf makes the sum non-finite; a non-finite sum (which a huge finite matrix could
    also give) is confirmed row tile by row tile.
    """
    if bool(torch.isfinite(A.sum())):
        return True
    return all(bool(torch.isfinite(A[i:i + tile_rows]).all())
               for i in range(0, A.shape[0], tile_rows))


def cholesky(A, what="the kernel matrix", hint="try gradually increasing alpha", overwrite=False):
    """Lower Cholesky factor of a symmetric positive definite ``A``.

    Raises a ``ValueError`` naming the problem (not a torch ``LinAlgError``) when ``A`` is not
    numerically positive definite, for example a kernel with duplicated rows and no ridge.
    ``overwrite=True`` factorises a C-contiguous float CPU matrix in its own memory (LAPACK
    ``potrf`` on the Fortran view of the symmetric matrix): no second ``n x n`` matrix is
    allocated, and ``A`` is destroyed.
    """
    if not all_finite(A):
        raise ValueError(f"{what} contains NaN or inf values; check the inputs and parameters.")
    if (overwrite and A.device.type == "cpu" and A.ndim == 2 and A.is_contiguous()
            and A.dtype in (torch.float32, torch.float64)):
        from scipy.linalg import lapack

        potrf = lapack.dpotrf if A.dtype == torch.float64 else lapack.spotrf
        # A is symmetric, so its Fortran-ordered view is A itself; the upper factor U of that
        # view (A = U' U), read back in C order, is the lower factor L.
        view = A.numpy().T
        factor, info = potrf(view, lower=0, overwrite_a=1, clean=0)
        if info != 0:
            raise ValueError(
                f"{what} is not positive definite (Cholesky failed at column {info}); it is "
                f"singular or nearly so, e.g. because of duplicated samples. "
                f"{hint[0].upper() + hint[1:]}."
            )
        if not np.shares_memory(factor, view):  # the LAPACK wrapper made a copy after all
            return torch.from_numpy(np.ascontiguousarray(np.tril(factor.T)))
        return A.tril_()  # the factor lives in A's memory; clear the stale upper triangle
    L, info = torch.linalg.cholesky_ex(A)
    if int(info.max() if info.ndim else info) != 0:
        raise ValueError(
            f"{what} is not positive definite (Cholesky failed at column "
            f"{int(info.max() if info.ndim else info)}); it is singular or nearly so, e.g. "
            f"because of duplicated samples. {hint[0].upper() + hint[1:]}."
        )
    return L


def cho_solve(L, B):
    """Solve ``(L L^T) X = B`` given the lower Cholesky factor ``L``.

    Two triangular solves rather than ``torch.cholesky_solve``, which copies a row-major ``L``
    into column-major order (one more ``n x n`` matrix at peak).
    """
    return torch.linalg.solve_triangular(
        L.mT, torch.linalg.solve_triangular(L, B, upper=False), upper=True)


def eigh(A, what="the kernel matrix"):
    """Eigendecomposition of a symmetric matrix with a clear error on non-finite input."""
    if not torch.isfinite(A).all():
        raise ValueError(f"{what} contains NaN or inf values; check the inputs and parameters.")
    return torch.linalg.eigh(A)


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


# ------------------------------------------------------------------------------------------
# Ridge paths over an alpha grid
#
# Ridge regression on a design Phi (n, N) with an unpenalised intercept, for many alphas, from
# one eigendecomposition of the centred Gram matrix: ``Phi_c^T Phi_c = V diag(s) V^T`` (primal,
# n >= N) or ``Phi_c Phi_c^T = U diag(s) U^T`` (dual, N > n). With ``G = Phi_c V = U diag(sqrt s)``
# (n, r) and ``g = G^T y_c``, for every alpha (``D = 1 / (s + alpha)``, the pseudo-inverse at 0):
#
#   fitted values  y_hat = y_mean + G (D * g),  hat diagonal  h_i = 1/n + sum_j G_ij^2 D_j,
#   exact leave-one-out residual  (y_i - y_hat_i) / (1 - h_i)   (Allen 1974; Golub et al. 1979),
#   GCV  mean((y - y_hat)^2) / (1 - tr(H) / n)^2,  tr(H) = 1 + sum_j s_j D_j,
#
# which is O(n r) per alpha; the 1/n term is the unpenalised intercept exactly as in
# scikit-learn's RidgeCV (its centred design plus a column of ones). The coefficients are
# ``V (D * g)`` (primal) or ``Phi_c^T U (D * U^T y_c)`` (dual): at alpha = 0 the minimum-norm
# least-squares solution.


def _tmatmul(A, B):
    """``A^T B`` for a tall ``A`` and a thin ``B``, computed as ``(B^T A)^T``.

    On the CPU torch's ``A.T @ B`` with few columns in ``B`` was measured ~6x slower than this
    form (n = 6000, N = 800, two columns).
    """
    return (B.T @ A).T


def _pinv_cutoff(s, size):
    """Eigenvalues at or below this are treated as zero (numpy's ``pinv``/``lstsq`` rule)."""
    return s.max().clamp(min=0) * size * torch.finfo(s.dtype).eps


def gram(A, rows=False):
    """``A^T A`` (or ``A A^T`` with ``rows=True``) as a full symmetric matrix.

    On the CPU this calls BLAS ``syrk`` (half the flops of a general product); elsewhere a
    matmul.
    """
    if A.device.type == "cpu" and A.dtype in (torch.float32, torch.float64):
        from scipy.linalg import blas

        syrk = blas.dsyrk if A.dtype == torch.float64 else blas.ssyrk
        a = A.detach().numpy()
        # a C-ordered (n, N) array is the Fortran-ordered (N, n) array a.T, so no copy is made
        C = syrk(1.0, a.T, trans=0 if not rows else 1, lower=0)
        C = torch.from_numpy(C)  # only the upper triangle is filled
        return torch.triu(C) + torch.triu(C, 1).T
    return A @ A.T if rows else A.T @ A


def _eigh_psd(A, what):
    """Ascending eigenpairs of a symmetric PSD matrix, eigenvalues clipped at zero.

    On the CPU scipy's LAPACK ``syevr`` is used (measured about 2x faster than torch's ``eigh``
    at n = 2500 on one thread); elsewhere :func:`torch.linalg.eigh`.
    """
    if not torch.isfinite(A).all():
        raise ValueError(f"{what} contains NaN or inf values; check the inputs and parameters.")
    if A.device.type == "cpu":
        from scipy.linalg import eigh as scipy_eigh

        a = A.detach().numpy().copy(order="F")
        s, V = scipy_eigh(a, driver="evr", overwrite_a=True, check_finite=False)
        s, V = torch.from_numpy(s), torch.from_numpy(V)
    else:
        s, V = torch.linalg.eigh(A)
    return s.clamp(min=0), V


def _center(Phi, y, fit_intercept):
    n = Phi.shape[0]
    if fit_intercept:
        x_mean = Phi.mean(dim=0)
        y_mean = y.mean(dim=0)
    else:
        x_mean = torch.zeros(Phi.shape[1], dtype=Phi.dtype, device=Phi.device)
        y_mean = torch.zeros(y.shape[1], dtype=y.dtype, device=y.device)
    return x_mean, y_mean, y - y_mean, n


def ridge_decompose(Phi, y, fit_intercept=True, mode="auto"):
    """One eigendecomposition serving ridge fits for any number of alphas.

    Parameters
    ----------
    Phi : tensor of shape (n, N)
        Design matrix (not modified).
    y : tensor of shape (n, t)
    fit_intercept : bool
        Centre ``Phi`` and ``y`` (an unpenalised intercept, as scikit-learn's ``Ridge``).
    mode : {"auto", "primal", "dual"}
        ``"auto"``: primal (``N x N`` covariance) when ``n >= N``, else dual (``n x n`` Gram).

    Returns
    -------
    dict
        ``mode``, ``s`` (eigenvalues, ascending), ``vectors`` (``V`` or ``U``), ``g``
        (``G^T y_c``), ``x_mean``, ``y_mean``, ``n``, ``fit_intercept`` and, in dual mode,
        ``Uty`` (``U^T y_c``). Peak memory: one ``N x N`` (primal) or ``n x n`` (dual) matrix
        besides ``Phi``.
    """
    n, N = Phi.shape
    if mode == "auto":
        mode = "primal" if n >= N else "dual"
    x_mean, y_mean, yc, n = _center(Phi, y, fit_intercept)
    out = {"mode": mode, "x_mean": x_mean, "y_mean": y_mean, "n": n,
           "fit_intercept": fit_intercept}
    if mode == "primal":
        # Phi_c^T Phi_c = Phi^T Phi - n mean mean^T; Phi_c^T y_c = Phi^T y_c
        C = gram(Phi)
        if fit_intercept:
            C -= n * torch.outer(x_mean, x_mean)
        s, V = _eigh_psd(C, f"the {N} x {N} feature covariance")
        del C
        out.update(s=s, vectors=V, g=V.T @ _tmatmul(Phi, yc))
    elif mode == "dual":
        K = gram(Phi, rows=True)
        if fit_intercept:  # H K H with H the centring matrix
            r = K.mean(dim=1)
            K -= r[:, None] + r[None, :] - r.mean()
        s, U = _eigh_psd(K, f"the {n} x {n} feature Gram matrix")
        del K
        Uty = U.T @ yc
        out.update(s=s, vectors=U, Uty=Uty, g=torch.sqrt(s)[:, None] * Uty)
    else:
        raise ValueError(f"mode must be 'auto', 'primal' or 'dual', got {mode!r}")
    return out


def _ridge_filters(s, alphas, size):
    """``D[j, a] = 1 / (s_j + alpha_a)``, pseudo-inverse (0 below the cutoff) at alpha = 0."""
    alphas = torch.as_tensor(alphas, dtype=s.dtype, device=s.device).reshape(1, -1)
    keep = s > _pinv_cutoff(s, size)
    denom = s[:, None] + alphas
    zero = (alphas == 0) & ~keep[:, None]
    return torch.where(zero, 0.0, 1.0 / torch.where(zero, 1.0, denom))


def ridge_path(Phi, y, dec, alphas, criterion="loo", tile_bytes=None):
    """Cross-validation errors of ridge for every alpha, ``O(n r)`` per alpha after ``dec``.

    Parameters
    ----------
    Phi : tensor of shape (n, N)
        The design given to :func:`ridge_decompose` (read in row tiles in primal mode).
    y : tensor of shape (n, t)
    dec : dict
        From :func:`ridge_decompose`.
    alphas : sequence of float >= 0
    criterion : {"loo", "gcv"}
        Exact leave-one-out (the errors of scikit-learn's ``RidgeCV`` with ``cv=None``) or
        generalized cross-validation.

    Returns
    -------
    mse : tensor of shape (n_alphas,)
        Mean over samples and targets of the squared LOO (or GCV) residuals; ``inf`` where the
        fit interpolates (``1 - h_i = 0``).
    """
    if criterion not in ("loo", "gcv"):
        raise ValueError(f"criterion must be 'loo' or 'gcv', got {criterion!r}")
    from ._backend import DEFAULT_TILE_BYTES, rows_per_tile, tile_slices

    s, n = dec["s"], dec["n"]
    alphas = torch.as_tensor(alphas, dtype=s.dtype, device=s.device).reshape(-1)
    A = alphas.numel()
    D = _ridge_filters(s, alphas, max(Phi.shape))  # (r, A)
    g = dec["g"]  # (r, t)
    t = g.shape[1]
    B = (D[:, :, None] * g[:, None, :]).reshape(D.shape[0], A * t)  # (r, A t)
    yc = y - dec["y_mean"]
    base = 1.0 / n if dec["fit_intercept"] else 0.0
    sq_loo = torch.zeros(A, dtype=s.dtype, device=s.device)
    sq_res = torch.zeros(A, dtype=s.dtype, device=s.device)
    if dec["mode"] == "primal":
        V = dec["vectors"]
        mean_proj = dec["x_mean"] @ V
        tile = rows_per_tile(V.shape[1], Phi.dtype, 3, tile_bytes or DEFAULT_TILE_BYTES)
        blocks = ((Phi[sl] @ V - mean_proj, sl) for sl in tile_slices(n, tile))
    else:
        blocks = ((dec["vectors"] * torch.sqrt(s), slice(0, n)),)
    for G, sl in blocks:
        h = base + (G * G) @ D  # (rows, A)
        resid = yc[sl][:, None, :] - (G @ B).reshape(-1, A, t)  # (rows, A, t)
        if dec["mode"] == "dual" and bool((alphas > 0).any()):
            # for alpha > 0 use ``y_c - y_hat = alpha U (D * U^T y_c)`` and
            # ``1 - h = alpha (U * U) D - 1/n`` (the ones vector is an eigenvector of the
            # centred Gram with eigenvalue 0): no cancellation when the fit nearly interpolates
            U, pos = dec["vectors"], alphas > 0
            aD = D * alphas
            Ba = (aD[:, :, None] * dec["Uty"][:, None, :]).reshape(D.shape[0], A * t)
            resid[:, pos] = (U @ Ba).reshape(-1, A, t)[:, pos]
            h[:, pos] = (1.0 + base - (U * U) @ aD)[:, pos]
        sq_res += (resid * resid).sum(dim=(0, 2))
        if criterion == "loo":
            denom = (1.0 - h)[:, :, None]
            safe = denom > 1e-12
            loo = torch.where(safe, resid / torch.where(safe, denom, 1.0), torch.inf)
            sq_loo += (loo * loo).sum(dim=(0, 2))
        del G, h, resid
    if criterion == "gcv":
        trace = base * n + (s[:, None] * D).sum(dim=0)
        denom = (1.0 - trace / n) ** 2
        return torch.where(denom > 1e-12, sq_res / (n * t) / torch.where(denom > 1e-12, denom, 1),
                           torch.inf)
    return sq_loo / (n * t)


def ridge_coef(Phi, dec, alpha):
    """Coefficients ``(N, t)`` and intercept ``(t,)`` of ridge at ``alpha`` from ``dec``."""
    s, W = dec["s"], dec["vectors"]
    D = _ridge_filters(s, [float(alpha)], max(Phi.shape))[:, 0]
    if dec["mode"] == "primal":
        coef = W @ (D[:, None] * dec["g"])
    else:
        c = W @ (D[:, None] * dec["Uty"])  # dual coefficients, orthogonal to the ones vector
        coef = _tmatmul(Phi, c) - torch.outer(dec["x_mean"], c.sum(dim=0))
    intercept = dec["y_mean"] - dec["x_mean"] @ coef
    return coef, intercept


def _pcg_mixed_primal(Phi, yc, x_mean, alpha, max_iter=100):
    """Ridge ``(Phi_c^T Phi_c + alpha I) w = Phi_c^T y_c`` in float64 from a float32 Gram.

    The Gram matrix is formed in float32 (half the time of float64 ``syrk``), factorised in
    float64 and used as the preconditioner of conjugate gradients whose matrix-vector products
    use the float64 ``Phi`` (``O(n N)`` each): the mixed-precision iterative refinement of
    Higham (2002, ch. 12). CG runs until the relative residual stops improving (round-off
    level); returns ``None`` (the caller then solves directly in float64) if the float32 Gram
    is not positive definite or CG does not reach 1e-10.
    """
    n = Phi.shape[0]
    C = gram(Phi.to(torch.float32))
    C -= n * torch.outer(x_mean, x_mean).to(torch.float32)
    C.diagonal().add_(alpha)
    # factorise in float32 too (half the time); the factor, upcast, is an exact float64 SPD
    # preconditioner L L^T. Fall back to a float64 factorisation if float32 breaks down.
    L, info = torch.linalg.cholesky_ex(C)
    if int(info) != 0:
        L, info = torch.linalg.cholesky_ex(C.to(torch.float64))
        if int(info) != 0:
            return None
    L = L.to(torch.float64)
    del C

    def matvec(w):
        u = Phi @ w - x_mean @ w  # Phi_c w
        return _tmatmul(Phi, u) - torch.outer(x_mean, u.sum(dim=0)) + alpha * w

    b = _tmatmul(Phi, yc)
    b_norm = torch.linalg.vector_norm(b, dim=0).clamp(min=torch.finfo(b.dtype).tiny)
    w = torch.cholesky_solve(b, L)
    r = b - matvec(w)
    z = torch.cholesky_solve(r, L)
    p = z.clone()
    rz = (r * z).sum(dim=0)
    best_w, best_res = w.clone(), torch.linalg.vector_norm(r, dim=0) / b_norm
    stall = 0
    for _ in range(max_iter):
        if float(best_res.max()) <= 1e-15:
            break
        Ap = matvec(p)
        step = rz / (p * Ap).sum(dim=0).clamp(min=torch.finfo(b.dtype).tiny)
        w = w + step * p
        r = r - step * Ap
        res = torch.linalg.vector_norm(r, dim=0) / b_norm
        improved = res < 0.5 * best_res
        if bool(improved.any()):
            stall = 0
        else:
            stall += 1
        better = res < best_res
        best_w[:, better] = w[:, better]
        best_res = torch.minimum(res, best_res)
        if stall >= 3:
            break
        z = torch.cholesky_solve(r, L)
        rz_new = (r * z).sum(dim=0)
        p = z + (rz_new / rz.clamp(min=torch.finfo(b.dtype).tiny)) * p
        rz = rz_new
    # the recursive residual drifts from the true one at round-off level: check the true one
    true_res = torch.linalg.vector_norm(b - matvec(best_w), dim=0) / b_norm
    if float(true_res.max()) > 1e-10:
        return None
    return best_w


def ridge_solve(Phi, y, alpha, fit_intercept=True, mixed="auto"):
    """Ridge (or, at ``alpha=0``, minimum-norm least squares) for a single alpha.

    The primal form (``N x N`` Cholesky) when ``n >= N``, else the dual (``n x n``); ``alpha=0``
    goes through the eigendecomposition (pseudo-inverse). Returns ``(coef (N, t), intercept
    (t,))``. ``mixed``: for float64 in the primal form, form the Gram in float32 and refine to
    float64 accuracy by preconditioned CG (:func:`_pcg_mixed_primal`); ``"auto"`` does so when
    ``N >= 512``, ``True`` always, ``False`` never.
    """
    if alpha == 0:
        return ridge_coef(Phi, ridge_decompose(Phi, y, fit_intercept), 0.0)
    n, N = Phi.shape
    x_mean, y_mean, yc, n = _center(Phi, y, fit_intercept)
    hint = "increase alpha"
    if n >= N:
        if Phi.dtype == torch.float64 and (mixed is True or (mixed == "auto" and N >= 512)):
            coef = _pcg_mixed_primal(Phi, yc, x_mean, float(alpha))
            if coef is not None:
                return coef, y_mean - x_mean @ coef
        C = gram(Phi)
        if fit_intercept:
            C -= n * torch.outer(x_mean, x_mean)
        C.diagonal().add_(alpha)
        L = cholesky(C, f"the {N} x {N} regularised feature covariance", hint)
        del C
        coef = cho_solve(L, _tmatmul(Phi, yc))
    else:
        K = gram(Phi, rows=True)
        if fit_intercept:
            r = K.mean(dim=1)
            K -= r[:, None] + r[None, :] - r.mean()
        K.diagonal().add_(alpha)
        L = cholesky(K, f"the {n} x {n} regularised feature Gram matrix", hint)
        del K
        c = cho_solve(L, yc)
        coef = _tmatmul(Phi, c) - torch.outer(x_mean, c.sum(dim=0))
    return coef, y_mean - x_mean @ coef


# ------------------------------------------------------------------------------------------
# Choosing the ridge: alpha="auto"
#
# A grid relative to the spectrum of the (centred) Gram or kernel matrix, scored by exact
# leave-one-out or GCV from one eigendecomposition (as scikit-learn's RidgeCV). The grid runs
# from ``max(1e-10, 10 n eps) * s_max`` (the fit interpolates up to round-off) to ``100 s_max``
# (every direction shrunk by at least 99%, the prediction is the mean), four points a decade.

#: Upper end of the automatic grid, in units of the largest eigenvalue.
AUTO_ALPHA_HIGH = 100.0
#: Points per decade of the automatic grid.
AUTO_ALPHA_PER_DECADE = 4


def _auto_alpha_floor(n, dtype):
    """Lowest alpha of the automatic grid, relative to the largest eigenvalue."""
    return max(1e-10, 10 * n * torch.finfo(dtype).eps)


def auto_alpha_grid(s, n, dtype):
    """The ``alpha="auto"`` grid (ascending numpy array) for eigenvalues ``s`` of ``n`` rows."""
    s_max = float(torch.as_tensor(s).max()) if torch.as_tensor(s).numel() else 0.0
    if not s_max > 0:
        return np.array([1.0])
    low = _auto_alpha_floor(n, dtype)
    decades = math.log10(AUTO_ALPHA_HIGH / low)
    num = int(round(decades * AUTO_ALPHA_PER_DECADE)) + 1
    return s_max * np.logspace(math.log10(low), math.log10(AUTO_ALPHA_HIGH), num)


def warn_if_alpha_on_edge(alphas, best, s, size, hint="Extend the grid.", stacklevel=3):
    """Warn (``ConvergenceWarning``) when ``alphas[best]`` is on an edge of the grid and going
    beyond that edge could still change the fit.

    Past ``99 s_max`` every direction is shrunk by more than 99% (the fit is the mean), and below
    ``0.01 s_min`` (the smallest eigenvalue above the pseudo-inverse cutoff), or below the
    round-off floor of the automatic grid, the fit interpolates: an edge beyond those points is
    not a sign of a too-narrow grid, so it stays silent (leave-one-out picks the floor when the
    data have duplicated rows, for example).
    """
    import warnings

    from sklearn.exceptions import ConvergenceWarning

    alphas = np.asarray(alphas, dtype=np.float64)
    if alphas.size < 2 or alphas.min() == alphas.max():
        return
    alpha = float(alphas[best])
    s = torch.as_tensor(s)
    s_max = float(s.max().clamp(min=0))
    positive = s[s > _pinv_cutoff(s, size)]
    s_min = float(positive.min()) if positive.numel() else 0.0
    floor = _auto_alpha_floor(size, s.dtype) * s_max  # round-off: the fit interpolates
    lo, hi = float(alphas.min()), float(alphas.max())
    upper = alpha == hi and alpha < 99 * s_max
    lower = alpha == lo and alpha > 0.01 * s_min and alpha > floor * (1 + 1e-9)
    if upper or lower:
        side = "upper" if upper else "lower"
        warnings.warn(
            f"The selected alpha={alpha:g} is on the {side} edge of the grid [{lo:g}, {hi:g}], "
            f"and a {'larger' if upper else 'smaller'} alpha would still change the fit; the "
            f"optimum may lie outside it. {hint}",
            ConvergenceWarning, stacklevel=stacklevel,
        )


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
