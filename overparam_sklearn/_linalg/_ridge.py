"""Ridge on an explicit design (random features): paths over alpha, and the alpha grid."""

import math

import numpy as np
import torch

from ._dense import _eigh_psd, _pinv_cutoff, _tmatmul, cho_solve, cholesky, gram

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
    from .._backend import DEFAULT_TILE_BYTES, rows_per_tile, tile_slices

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
