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


# ------------------------------------------------------------------------------------------
# alpha="auto": LOO / GCV paths of kernel ridge


def _kernel_problem(n=30, k=2, seed=0):
    g = torch.Generator().manual_seed(seed)
    X = torch.randn(n, 3, generator=g, dtype=torch.float64)
    K = torch.exp(-torch.cdist(X, X) ** 2 / 2)
    Y = torch.sin(X[:, :k]) + 0.3 * torch.randn(n, k, generator=g, dtype=torch.float64)
    return K, Y


def test_kernel_ridge_loo_equals_refitting_without_each_point():
    K, Y = _kernel_problem()
    n = K.shape[0]
    s, U = _linalg._eigh_psd(K, "K")
    alphas = np.array([1e-3, 0.1, 3.0])
    fast = _linalg.kernel_ridge_path(s, U, Y, alphas, "loo")
    for j, a in enumerate(alphas):
        sq = 0.0
        for i in range(n):
            keep = torch.arange(n) != i
            coef = torch.linalg.solve(K[keep][:, keep] + a * torch.eye(n - 1, dtype=K.dtype),
                                      Y[keep])
            sq += float(((Y[i] - K[i, keep] @ coef) ** 2).sum())
        assert fast[j] == pytest.approx(sq / Y.numel(), rel=1e-9)


@pytest.mark.parametrize("tau", [None, 0.7])
def test_kernel_ridge_gcv_is_the_smoother_formula(tau):
    K, Y = _kernel_problem(seed=1)
    n = K.shape[0]
    s, U = _linalg._eigh_psd(K, "K")
    for a in (1e-2, 1.0):
        A = K + a * torch.eye(n, dtype=K.dtype)
        if tau is None:
            H = K @ torch.linalg.inv(A)
        else:  # the flow's smoother K A^{-1} (I - exp(-tau A))
            eye = torch.eye(n, dtype=K.dtype)
            H = K @ torch.linalg.inv(A) @ (eye - torch.linalg.matrix_exp(-tau * A))
        resid = Y - H @ Y
        expected = float((resid ** 2).mean()) / (1 - float(H.trace()) / n) ** 2
        got = _linalg.kernel_ridge_path(s, U, Y, [a], "gcv", tau)[0]
        assert got == pytest.approx(expected, rel=1e-8)


def test_auto_grid_and_edge_warning():
    from sklearn.exceptions import ConvergenceWarning

    s = torch.tensor([1e-3, 0.5, 2.0, 10.0], dtype=torch.float64)
    grid = _linalg.auto_alpha_grid(s, 50, torch.float64)
    assert grid[0] == pytest.approx(1e-9) and grid[-1] == pytest.approx(1000.0)
    assert np.allclose(np.diff(np.log10(grid)), 0.25)
    # the top of the auto grid shrinks everything to the mean: no warning there
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        _linalg.warn_if_alpha_on_edge(grid, grid.size - 1, s, 50)
        _linalg.warn_if_alpha_on_edge(grid, 0, s, 50)  # far below the smallest eigenvalue
    with pytest.warns(ConvergenceWarning, match="upper edge"):
        _linalg.warn_if_alpha_on_edge([0.1, 1.0, 10.0], 2, s, 50)
    with pytest.warns(ConvergenceWarning, match="lower edge"):
        _linalg.warn_if_alpha_on_edge([0.1, 1.0, 10.0], 0, s, 50)
