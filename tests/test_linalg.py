"""Shared linear algebra: Cholesky variants, finiteness checks and the Krylov flow solver."""

import numpy as np
import pytest
import torch

from overparam_sklearn import _linalg


def _spd(n, seed=0, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    B = torch.randn(n, n, generator=g, dtype=dtype)
    return B @ B.T / n + 0.1 * torch.eye(n, dtype=dtype)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("overwrite", [False, True])
def test_cholesky_in_place_and_copy(dtype, overwrite):
    A = _spd(50, dtype=dtype)
    L = _linalg.cholesky(A.clone(), overwrite=overwrite)
    assert torch.equal(L, L.tril())
    tol = 1e-12 if dtype == torch.float64 else 1e-5
    torch.testing.assert_close(L @ L.T, A, rtol=tol, atol=tol)
    B = torch.randn(50, 3, dtype=dtype, generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(A @ _linalg.cho_solve(L, B), B, rtol=100 * tol, atol=100 * tol)


@pytest.mark.parametrize("overwrite", [False, True])
def test_cholesky_errors_name_the_problem(overwrite):
    A = torch.ones(4, 4, dtype=torch.float64)  # rank one
    with pytest.raises(ValueError, match="not positive definite.*increasing alpha"):
        _linalg.cholesky(A, overwrite=overwrite)
    A = _spd(4)
    A[1, 2] = np.nan
    with pytest.raises(ValueError, match="NaN or inf"):
        _linalg.cholesky(A, overwrite=overwrite)


def test_all_finite():
    A = _spd(10)
    assert _linalg.all_finite(A)
    A[3, 4] = np.inf
    assert not _linalg.all_finite(A)
    big = torch.full((4, 4), 1e308, dtype=torch.float64)  # finite, but its sum overflows
    assert _linalg.all_finite(big)


@pytest.mark.parametrize("tau", [1e-3, 0.5, 30.0])
def test_flow_matrix_function_matches_the_eigendecomposition(tau):
    A = _spd(120, seed=3)
    B = torch.randn(120, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    out, n_iter = _linalg.flow_matrix_function(A, B, tau)
    evals, evecs = torch.linalg.eigh(A)
    expected = evecs @ (_linalg.flow_filter(evals, tau)[:, None] * (evecs.T @ B))
    assert n_iter < 120
    torch.testing.assert_close(out, expected, rtol=1e-11, atol=1e-13)


def test_flow_filter_limits():
    lam = torch.tensor([0.0, 1e-12, 1.0, 50.0], dtype=torch.float64)
    f = _linalg.flow_filter(lam, 2.0)
    torch.testing.assert_close(f[:2], torch.tensor([2.0, 2.0], dtype=torch.float64))
    torch.testing.assert_close(f[2:], -torch.expm1(-2 * lam[2:]) / lam[2:])
    inf = _linalg.flow_filter(lam, float("inf"))
    torch.testing.assert_close(inf[2:], 1 / lam[2:])
