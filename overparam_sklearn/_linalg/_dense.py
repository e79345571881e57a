"""Dense building blocks: finiteness checks, Cholesky and triangular solves, eigendecompositions.

Every solver of the package factorises through these, so that a non-finite or singular matrix
gives the same clear ``ValueError`` wherever it comes from.
"""

import numpy as np
import torch


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
