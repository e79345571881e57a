"""Nystrom + Falkon-preconditioned CG solver of the NTK / NNGP estimators (issue 11, item 3)."""

import pickle

import numpy as np
import pytest
import torch

from overparam_sklearn import NTKClassifier, NTKRegressor, _nystrom
from overparam_sklearn.kernels import fc_kernels
from overparam_sklearn.ntk import _base as ntk_module


def _data(n=240, d=4, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, d))
    y = np.sin(2 * X[:, 0]) + X[:, 1] * X[:, 2] + 0.1 * rng.normal(size=n)
    Xq = rng.normal(size=(60, d))
    return X, y, Xq


def _kernel(A, B):
    return fc_kernels(A, B, n_hidden=2, b_std=0.1, need_nngp=False)[1]


@pytest.mark.parametrize("kernel", ["ntk", "nngp"])
def test_all_centres_equal_the_exact_solve(kernel):
    # with C = X, (K^2 + alpha K) a = K y has the exact solution a = (K + alpha I)^{-1} y
    X, y, Xq = _data()
    kw = dict(kernel=kernel, n_hidden=2, alpha=1e-3, device="cpu")
    exact = NTKRegressor(solver="exact", **kw).fit(X, y)
    nys = NTKRegressor(solver="nystrom", n_centers=len(X), random_state=0, **kw).fit(X, y)
    assert nys.solver_ == "nystrom" and exact.solver_ == "exact"
    np.testing.assert_allclose(nys.predict(Xq), exact.predict(Xq), rtol=1e-7, atol=1e-8)
    assert nys.n_iter_ <= 3  # the preconditioner is exact when m = n


def test_classifier_all_centres_equal_exact():
    X, y, Xq = _data()
    labels = np.digitize(y, [-0.5, 0.5])
    exact = NTKClassifier(alpha=1e-2, solver="exact", device="cpu").fit(X, labels)
    nys = NTKClassifier(alpha=1e-2, solver="nystrom", n_centers=len(X), random_state=0,
                        device="cpu").fit(X, labels)
    np.testing.assert_allclose(nys.decision_function(Xq), exact.decision_function(Xq),
                               rtol=1e-7, atol=1e-8)
    np.testing.assert_array_equal(nys.predict(Xq), exact.predict(Xq))
    with pytest.raises(ValueError, match="not available with solver='nystrom'"):
        nys.predict_proba(Xq)


def test_more_centres_approach_the_exact_solve():
    X, y, Xq = _data(n=300)
    exact = NTKRegressor(n_hidden=2, alpha=1e-2, solver="exact", device="cpu").fit(X, y)
    ref = exact.predict(Xq)
    errors = []
    for m in (10, 60, 200, 300):
        pred = NTKRegressor(n_hidden=2, alpha=1e-2, solver="nystrom", n_centers=m,
                            random_state=0, device="cpu").fit(X, y).predict(Xq)
        errors.append(np.abs(pred - ref).max())
    assert errors[0] > errors[1] > errors[2] > errors[3]
    assert errors[3] < 1e-7 * np.abs(ref).max()


def test_falkon_cg_solves_the_nystrom_system():
    # against a direct float64 solve of (K_mn K_nm + alpha K_mm) a = K_mn y
    X, y, _ = _data(n=200)
    Xt = torch.from_numpy(X)
    Y = torch.from_numpy(y)[:, None]
    C = Xt[::5]
    Knm = _kernel(Xt, C)
    for alpha in (1e-4, 1e-1, 10.0):
        KtK, KtY = _nystrom.nystrom_gram(_kernel, Xt, Y, C)
        torch.testing.assert_close(KtK, Knm.T @ Knm, rtol=1e-12, atol=1e-10)
        coef, n_iter = _nystrom.falkon_solve(KtK, KtY, _kernel(C, C), alpha, len(X))
        H = (Knm.T @ Knm + alpha * _kernel(C, C)).numpy()
        direct = np.linalg.solve(H, (Knm.T @ Y).numpy())
        fitted, fitted_ref = (Knm @ coef).numpy(), Knm.numpy() @ direct
        np.testing.assert_allclose(fitted, fitted_ref, rtol=1e-6,
                                   atol=1e-7 * np.abs(fitted_ref).max())
        assert 0 < n_iter < 100


def test_kernel_tiles_never_hold_all_rows(monkeypatch):
    # the (n, m) kernel is evaluated in tiles of at most `tile` rows, in fit and in predict
    X, y, Xq = _data(n=500)
    shapes = []
    original = ntk_module.fc_kernels

    def recording(X1, X2=None, **kwargs):
        shapes.append((X1.shape[0], None if X2 is None else X2.shape[0]))
        return original(X1, X2, **kwargs)

    monkeypatch.setattr(ntk_module, "fc_kernels", recording)
    monkeypatch.setattr(_nystrom, "TILE_BYTES", 40 * 8 * 64)  # 64 rows of 40 float64
    model = NTKRegressor(solver="nystrom", n_centers=40, random_state=0, device="cpu")
    model.fit(X, y).predict(Xq)
    data_rows = [rows for rows, cols in shapes if cols == 40 and rows != 40]
    assert data_rows and max(data_rows) <= 64
    assert sum(r for r, c in shapes if c == 40) >= len(X) + len(Xq)


def test_auto_solver_switches_by_size(monkeypatch):
    X, y, Xq = _data(n=120)
    assert NTKRegressor(device="cpu").fit(X, y).solver_ == "exact"
    monkeypatch.setattr(ntk_module, "_AUTO_EXACT_MAX_SAMPLES", 100)
    model = NTKRegressor(device="cpu", n_centers=50, random_state=0).fit(X, y)
    assert model.solver_ == "nystrom" and model.X_fit_.shape == (50, 4)
    np.testing.assert_array_equal(model.X_fit_, X[model.centers_indices_])


def test_centres_follow_random_state_and_pickle():
    X, y, Xq = _data(n=150)
    a = NTKRegressor(solver="nystrom", n_centers=30, random_state=1, device="cpu").fit(X, y)
    b = NTKRegressor(solver="nystrom", n_centers=30, random_state=1, device="cpu").fit(X, y)
    c = NTKRegressor(solver="nystrom", n_centers=30, random_state=2, device="cpu").fit(X, y)
    np.testing.assert_array_equal(a.centers_indices_, b.centers_indices_)
    assert not np.array_equal(a.centers_indices_, c.centers_indices_)
    np.testing.assert_array_equal(a.predict(Xq), b.predict(Xq))
    restored = pickle.loads(pickle.dumps(a))
    np.testing.assert_array_equal(restored.predict(Xq), a.predict(Xq))


def test_nystrom_bad_requests_raise_clearly():
    X, y, Xq = _data(n=80)
    with pytest.raises(ValueError, match="t=None"):
        NTKRegressor(solver="nystrom", t=5.0, device="cpu").fit(X, y)
    with pytest.raises(ValueError, match="solver"):
        NTKRegressor(solver="nystrom", kernel="nngp", posterior="student_t",
                     device="cpu").fit(X, y)
    model = NTKRegressor(solver="nystrom", n_centers=20, random_state=0, device="cpu")
    model.fit(X, y)
    with pytest.raises(ValueError, match="not available with solver='nystrom'"):
        model.predict(Xq, return_std=True)
    with pytest.raises(ValueError, match="predict_trajectory"):
        model.predict_trajectory(Xq, [1.0])
    with pytest.raises(ValueError, match="solver"):
        NTKRegressor(solver="falkon").fit(X, y)
    with pytest.raises(ValueError, match="n_centers"):
        NTKRegressor(solver="nystrom", n_centers=0).fit(X, y)


def test_nystrom_memory_guard(monkeypatch):
    from overparam_sklearn import _backend

    monkeypatch.setattr(_backend, "available_memory", lambda device: 1000)
    X, y, _ = _data(n=50)
    with pytest.raises(ValueError, match="Not enough memory for the Nystrom solve"):
        NTKRegressor(solver="nystrom", device="cpu").fit(X, y)


def test_duplicated_centres_are_handled():
    # duplicated rows would make K_mm singular: centres are drawn among distinct rows, and
    # the distinct rows span what the exact solve uses
    X, y, Xq = _data(n=100)
    X2, y2 = np.vstack([X, X]), np.concatenate([y, y])
    model = NTKRegressor(solver="nystrom", n_centers=200, alpha=1e-2, device="cpu").fit(X2, y2)
    exact = NTKRegressor(solver="exact", alpha=1e-2, device="cpu").fit(X2, y2)
    assert len(model.centers_indices_) == 100
    np.testing.assert_allclose(model.predict(Xq), exact.predict(Xq), rtol=1e-7, atol=1e-8)
