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

import torch

__all__ = [
    "cholesky",
    "cho_solve",
    "flow_filter",
    "flow_matrix_function",
    "eigh",
]


def cholesky(A, what="the kernel matrix", hint="try gradually increasing alpha"):
    """Lower Cholesky factor of a symmetric positive definite ``A``.

    Raises a ``ValueError`` naming the problem (not a torch ``LinAlgError``) when ``A`` is not
    numerically positive definite, for example a kernel with duplicated rows and no ridge.
    """
    if not torch.isfinite(A).all():
        raise ValueError(f"{what} contains NaN or inf values; check the inputs and parameters.")
    L, info = torch.linalg.cholesky_ex(A)
    if int(info.max() if info.ndim else info) != 0:
        raise ValueError(
            f"{what} is not positive definite (Cholesky failed at column "
            f"{int(info.max() if info.ndim else info)}); it is singular or nearly so, e.g. "
            f"because of duplicated samples. {hint[0].upper() + hint[1:]}."
        )
    return L


def cho_solve(L, B):
    """Solve ``(L L^T) X = B`` given the lower Cholesky factor ``L``."""
    return torch.cholesky_solve(B, L)


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
