"""Tests of RandomFeatures, RandomFeatureRegressor and RandomFeatureClassifier."""

import math
import pickle
import warnings

import numpy as np
import pytest
import torch
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LinearRegression, Ridge, RidgeClassifierCV, RidgeCV
from sklearn.model_selection import GridSearchCV
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from overparam_sklearn import (
    RandomFeatureClassifier,
    RandomFeatureRegressor,
    RandomFeatures,
    nngp_kernel,
)
from overparam_sklearn._linalg import ridge_decompose, ridge_path, ridge_solve
from overparam_sklearn.kernels import parse_activation


def _data(n=60, d=4, seed=0, targets=None):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, d))
    y = np.sin(X[:, 0]) + 0.5 * X[:, 1] ** 2 + 0.1 * rng.normal(size=n)
    if targets:
        y = np.c_[y, np.cos(X[:, 2])]
    return X, y


def _first_layer_limit(X, Y, activation, w_std, b_std):
    """E[g(u) g(v)] for the first layer's Gaussian pre-activations (exact, closed form)."""
    X, Y = torch.as_tensor(X), torch.as_tensor(Y)
    d = X.shape[1]
    k12 = w_std**2 * X @ Y.T / d + b_std**2
    k11 = w_std**2 * (X * X).sum(1) / d + b_std**2
    k22 = w_std**2 * (Y * Y).sum(1) / d + b_std**2
    return parse_activation(activation).maps(k12, k11[:, None], k22[None, :], False)[0].numpy()


# ------------------------------------------------------------------------------------------
# RandomFeatures


@pytest.mark.parametrize("activation,w_std,b_std", [("relu", 1.0, 0.0), ("erf", 1.5, 0.3),
                                                     ("gelu", 1.2, 0.5)])
def test_features_converge_to_first_layer_nngp_like_one_over_sqrt_n(activation, w_std, b_std):
    X, _ = _data(12, 3)
    Y = X[:5] + 0.3
    limit = _first_layer_limit(X, Y, activation, w_std, b_std)
    sizes = [250, 1000, 4000, 16000]
    errors = []
    for N in sizes:
        errs = []
        for seed in range(4):
            rf = RandomFeatures(N, activation=activation, w_std=w_std, b_std=b_std,
                                random_state=seed, device="cpu").fit(X)
            errs.append(np.sqrt(np.mean((rf.transform(X) @ rf.transform(Y).T - limit) ** 2)))
        errors.append(np.mean(errs))
    slope = np.polyfit(np.log(sizes), np.log(errors), 1)[0]
    assert -0.7 < slope < -0.3, (slope, errors)
    assert errors[-1] < 0.02 * np.abs(limit).max()


def test_relation_to_the_one_hidden_layer_nngp_kernel():
    # nngp_kernel includes the readout layer: K = w_std^2 E[g(u) g(v)] + b_std^2 (exact)
    X, _ = _data(10, 3)
    for activation, w_std, b_std in [("relu", 1.0, 0.0), ("erf", 1.7, 0.4), ("abs", 0.8, 1.1)]:
        pre = _first_layer_limit(X, X, activation, w_std, b_std)
        K = nngp_kernel(X, n_hidden=1, activation=activation, w_std=w_std, b_std=b_std).numpy()
        np.testing.assert_allclose(K, w_std**2 * pre + b_std**2, rtol=1e-12, atol=1e-14)
    # with the defaults the features' inner products converge to nngp_kernel itself
    rf = RandomFeatures(40000, random_state=0, device="cpu").fit(X)
    Phi = rf.transform(X)
    K = nngp_kernel(X, n_hidden=1).numpy()
    assert np.abs(Phi @ Phi.T - K).max() < 0.02 * K.max()


@pytest.mark.parametrize("N", [3000, 3001])
def test_fourier_features_converge_to_rbf(N):
    X, _ = _data(10, 3)
    w_std = 1.3
    sq = ((X[:, None] - X[None]) ** 2).sum(-1)
    K = np.exp(-(w_std**2) * sq / (2 * X.shape[1]))
    errs = []
    for seed in range(8):
        Phi = RandomFeatures(N, activation="fourier", w_std=w_std, random_state=seed,
                             device="cpu").fit_transform(X)
        assert Phi.shape == (10, N)
        errs.append(Phi @ Phi.T - K)
    # unbiased (the mean error shrinks like 1/sqrt(8 N)) and consistent
    assert np.abs(np.mean(errs, axis=0)).max() < 4 / math.sqrt(8 * N)
    assert np.abs(errs[0]).max() < 5 / math.sqrt(N)
    np.testing.assert_allclose(np.diag(errs[0]) + 1, 1.0, atol=5 / math.sqrt(N))


def test_transformer_basics():
    X, _ = _data(30, 4)
    rf = RandomFeatures(7, random_state=0, device="cpu").fit(X)
    assert list(rf.get_feature_names_out()) == [f"randomfeatures{i}" for i in range(7)]
    assert rf.weights_.shape == (4, 7) and rf.offsets_.shape == (7,)
    a = rf.transform(X)
    np.testing.assert_array_equal(a, RandomFeatures(7, random_state=0).fit(X).transform(X))
    assert not np.allclose(a, RandomFeatures(7, random_state=1).fit(X).transform(X))
    # float32 in -> float32 out with the same weights; explicit dtype wins
    a32 = rf.transform(X.astype(np.float32))
    assert a32.dtype == np.float32 and a.dtype == np.float64
    np.testing.assert_allclose(a32, a, rtol=1e-5, atol=1e-6)
    rf64 = RandomFeatures(7, random_state=0, dtype="float64").fit(X)
    assert rf64.transform(X.astype(np.float32)).dtype == np.float64
    # computed in row tiles: the tile size does not change the result
    tiled = rf._features(X, torch.float64, torch.device("cpu"), rows=4)
    np.testing.assert_array_equal(tiled.numpy(), a)
    # phi = relu(X W + b) / sqrt(N), by hand
    np.testing.assert_allclose(a, np.maximum(X @ rf.weights_ + rf.offsets_, 0) / np.sqrt(7),
                               rtol=1e-12)


def test_transformer_bad_input():
    X, _ = _data(20, 3)
    with pytest.raises(ValueError, match="Unknown activation"):
        RandomFeatures(5, activation="swishy").fit(X)
    rf = RandomFeatures(5).fit(X)
    with pytest.raises(ValueError, match="features"):
        rf.transform(X[:, :2])
    with pytest.raises(ValueError):
        rf.transform(np.where(X > 1, np.nan, X))


def test_cuda_request_without_a_gpu_is_a_clear_error(monkeypatch):
    # checked on every machine: torch is made to see no GPU (the GPU path itself is covered by
    # the cuda-marked tests in test_cuda.py, which benchmarks/gpu_check.py runs)
    X, _ = _data(20, 3)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ValueError, match="device='cuda' was requested but torch sees no CUDA"):
        RandomFeatures(5, device="cuda").fit(X)
    with pytest.raises(ValueError, match="CUDA"):
        RandomFeatureRegressor(5, device="cuda").fit(X, X[:, 0])
    assert RandomFeatures(5, device="auto").fit(X).device_.type == "cpu"


# ------------------------------------------------------------------------------------------
# RandomFeatureRegressor against scikit-learn on the same features


GRID = np.logspace(-4, 2, 9)


@pytest.mark.parametrize("n,N,activation,targets", [(80, 30, "relu", False),
                                                    (40, 120, "erf", True),
                                                    (60, 60, "fourier", False)])
def test_regressor_equals_random_features_ridgecv_pipeline(n, N, activation, targets):
    X, y = _data(n, 4, seed=n, targets=targets)
    Xt, _ = _data(25, 4, seed=99)
    params = dict(n_components=N, activation=activation, w_std=1.2, b_std=0.3, random_state=7,
                  device="cpu")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        ours = RandomFeatureRegressor(alpha=GRID, **params).fit(X, y)
    pipe = make_pipeline(RandomFeatures(**params), RidgeCV(alphas=GRID)).fit(X, y)
    assert ours.alpha_ == pipe[-1].alpha_
    np.testing.assert_allclose(ours.predict(Xt), pipe.predict(Xt), rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(ours.coef_, pipe[-1].coef_, rtol=1e-6, atol=1e-6)
    # the LOO errors per alpha are RidgeCV's
    ref = RidgeCV(alphas=GRID, store_cv_results=True).fit(pipe[0].transform(X), y)
    per_alpha = ref.cv_results_.reshape(n, -1, GRID.size).mean(axis=(0, 1))
    np.testing.assert_allclose(ours.cv_results_["mean_squared_error"], per_alpha, rtol=1e-6)
    np.testing.assert_array_equal(ours.cv_results_["alphas"], GRID)
    assert ours.cv_results_["rank"][GRID.tolist().index(ours.alpha_)] == 1
    np.testing.assert_allclose(ours.best_score_, ref.best_score_, rtol=1e-6)
    # a single alpha is Ridge on the same features
    single = RandomFeatureRegressor(alpha=0.05, **params).fit(X, y)
    ridge = make_pipeline(RandomFeatures(**params), Ridge(alpha=0.05)).fit(X, y)
    np.testing.assert_allclose(single.predict(Xt), ridge.predict(Xt), rtol=1e-8, atol=1e-8)
    assert single.alpha_ == 0.05 and not hasattr(single, "cv_results_")


@pytest.mark.parametrize("mode", ["primal", "dual"])
def test_gcv_and_loo_against_brute_force(mode):
    rng = np.random.default_rng(3)
    n, N = 30, 20
    Phi = rng.normal(size=(n, N)) + 0.3
    y = rng.normal(size=(n, 1)) + Phi[:, :1]
    alphas = [0.0, 0.01, 1.0]
    P, Y = torch.from_numpy(Phi), torch.from_numpy(y)
    dec = ridge_decompose(P, Y, True, mode)
    gcv = ridge_path(P, Y, dec, alphas, "gcv").numpy()
    loo = ridge_path(P, Y, dec, alphas, "loo").numpy()
    Z = np.c_[np.ones(n), Phi]
    for k, a in enumerate(alphas):
        pen = a * np.eye(N + 1)
        pen[0, 0] = 0
        H = Z @ np.linalg.pinv(Z.T @ Z + pen) @ Z.T
        r = y[:, 0] - H @ y[:, 0]
        np.testing.assert_allclose(gcv[k], np.mean(r**2) / (1 - np.trace(H) / n) ** 2, rtol=1e-8)
        errs = []
        for i in range(n):
            keep = np.arange(n) != i
            w = np.linalg.pinv(Z[keep].T @ Z[keep] + pen) @ Z[keep].T @ y[keep, 0]
            errs.append((y[i, 0] - Z[i] @ w) ** 2)
        np.testing.assert_allclose(loo[k], np.mean(errs), rtol=1e-7)
    with pytest.raises(ValueError, match="criterion"):
        ridge_path(P, Y, dec, alphas, "kfold")


def test_gcv_selection_option():
    X, y = _data(50, 3)
    reg = RandomFeatureRegressor(30, alpha=GRID, alpha_selection="gcv", random_state=0,
                                 device="cpu")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        reg.fit(X, y)
    scores = reg.cv_results_["mean_squared_error"]
    assert reg.alpha_ == GRID[np.argmin(scores)]
    loo = RandomFeatureRegressor(30, alpha=GRID, random_state=0, device="cpu")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        loo.fit(X, y)
    assert not np.allclose(scores, loo.cv_results_["mean_squared_error"])


def test_alpha_on_grid_edge_warns():
    X, y = _data(60, 3)
    with pytest.warns(ConvergenceWarning, match="edge of the grid") as record:
        RandomFeatureRegressor(40, alpha=[10.0, 100.0, 1000.0], random_state=0).fit(X, y)
    assert record[0].filename == __file__  # points at the caller's line
    with warnings.catch_warnings():  # the automatic grid spans the whole useful range
        warnings.simplefilter("error", ConvergenceWarning)
        auto = RandomFeatureRegressor(40, random_state=0).fit(X, y)
    assert auto.alpha_ > 0 and auto.score(X, y) > 0.5
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)
        reg = RandomFeatureRegressor(40, alpha=np.logspace(-6, 3, 10), random_state=0).fit(X, y)
    assert 1e-6 < reg.alpha_ < 1e3


def test_alpha_zero_is_the_minimum_norm_interpolant():
    X, y = _data(40, 3)
    params = dict(n_components=150, random_state=2, device="cpu")
    reg = RandomFeatureRegressor(alpha=0.0, **params).fit(X, y)
    np.testing.assert_allclose(reg.predict(X), y, atol=1e-8)  # interpolates
    Phi = RandomFeatures(**params).fit_transform(X)
    Pc = Phi - Phi.mean(0)
    w = np.linalg.pinv(Pc) @ (y - y.mean())  # minimum-norm solution
    np.testing.assert_allclose(reg.coef_, w, rtol=1e-6, atol=1e-9)
    # and the limit of ridge as alpha -> 0
    tiny = RandomFeatureRegressor(alpha=1e-12, **params).fit(X, y)
    np.testing.assert_allclose(tiny.coef_, w, rtol=1e-3, atol=1e-5)
    # N < n: ordinary least squares on the features
    few = RandomFeatureRegressor(alpha=0.0, n_components=10, random_state=2).fit(X, y)
    ls = make_pipeline(RandomFeatures(10, random_state=2), LinearRegression()).fit(X, y)
    np.testing.assert_allclose(few.predict(X), ls.predict(X), rtol=1e-8, atol=1e-8)
    # a grid may contain 0; interpolation has an undefined (inf) LOO error there
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        grid = RandomFeatureRegressor(alpha=[0.0, 1e-3, 1e-1], **params).fit(X, y)
    assert np.isinf(grid.cv_results_["mean_squared_error"][0]) and grid.alpha_ > 0


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_no_intercept_and_float32():
    X, y = _data(50, 3)
    reg = RandomFeatureRegressor(25, alpha=0.1, fit_intercept=False, random_state=0).fit(X, y)
    ridge = make_pipeline(RandomFeatures(25, random_state=0),
                          Ridge(alpha=0.1, fit_intercept=False)).fit(X, y)
    np.testing.assert_allclose(reg.predict(X), ridge.predict(X), rtol=1e-8, atol=1e-10)
    assert reg.intercept_ == 0.0
    r32 = RandomFeatureRegressor(25, alpha=[0.01, 0.1, 1.0], dtype="float32",
                                 random_state=0).fit(X.astype(np.float32), y)
    r64 = RandomFeatureRegressor(25, alpha=[0.01, 0.1, 1.0], random_state=0).fit(X, y)
    assert r32.predict(X).dtype == np.float32
    np.testing.assert_allclose(r32.predict(X), r64.predict(X), rtol=1e-3, atol=1e-3)


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_pickle_grid_search_and_pipeline():
    X, y = _data(60, 3)
    reg = RandomFeatureRegressor(30, alpha=[0.01, 0.1, 1.0], random_state=0).fit(X, y)
    assert isinstance(reg.coef_, np.ndarray) and isinstance(reg.random_features_.weights_,
                                                            np.ndarray)
    again = pickle.loads(pickle.dumps(reg))
    np.testing.assert_array_equal(again.predict(X), reg.predict(X))
    search = GridSearchCV(
        RandomFeatureRegressor(alpha=0.1, random_state=0),
        {"n_components": [10, 40], "activation": ["relu", "erf", "fourier"]}, cv=3,
    ).fit(X, y)
    assert search.best_params_["n_components"] in (10, 40)
    pipe = make_pipeline(StandardScaler(), RandomFeatureRegressor(30, random_state=0)).fit(X, y)
    assert pipe.score(X, y) > 0.5


def test_regressor_bad_input():
    X, y = _data(30, 3)
    with pytest.raises(ValueError, match="alpha"):
        RandomFeatureRegressor(10, alpha=[0.1, -1.0]).fit(X, y)
    with pytest.raises(ValueError, match="alpha"):
        RandomFeatureRegressor(10, alpha=[]).fit(X, y)
    reg = RandomFeatureRegressor(10).fit(X, y)
    with pytest.raises(ValueError, match="features"):
        reg.predict(X[:, :2])
    with pytest.raises(ValueError):
        reg.fit(np.where(X > 1, np.inf, X), y)
    with pytest.raises(ValueError):
        reg.fit(X, np.where(y > 1, np.nan, y))
    with pytest.raises(ValueError):
        reg.fit(X[:, 0], y)


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_verbose_reports_progress(capsys):
    X, y = _data(30, 3)
    RandomFeatureRegressor(10, alpha=[0.1, 1.0, 10.0], verbose=1).fit(X, y)
    out = capsys.readouterr().out
    assert "features" in out and "alpha" in out


# ------------------------------------------------------------------------------------------
# RandomFeatureClassifier


@pytest.mark.parametrize("n_classes", [2, 3])
def test_classifier_equals_ridge_classifier_cv_pipeline(n_classes):
    rng = np.random.default_rng(n_classes)
    X = rng.normal(size=(90, 4))
    y = np.digitize(X[:, 0] + 0.3 * X[:, 1], [-0.4, 0.4][: n_classes - 1])
    labels = np.array(["a", "b", "c"])[y]
    params = dict(n_components=50, random_state=1, device="cpu")
    grid = np.logspace(-3, 1, 6)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        ours = RandomFeatureClassifier(alpha=grid, **params).fit(X, labels)
    pipe = make_pipeline(RandomFeatures(**params), RidgeClassifierCV(alphas=grid)).fit(X, labels)
    assert ours.alpha_ == pipe[-1].alpha_
    np.testing.assert_array_equal(ours.classes_, np.unique(labels))
    np.testing.assert_allclose(ours.decision_function(X), pipe.decision_function(X), rtol=1e-6,
                               atol=1e-6)
    np.testing.assert_array_equal(ours.predict(X), pipe.predict(X))
    assert ours.score(X, labels) > 0.8


def test_classifier_rejects_continuous_targets():
    X, y = _data(30, 3)
    with pytest.raises(ValueError, match="Unknown label type|continuous"):
        RandomFeatureClassifier(10).fit(X, y)


@pytest.mark.parametrize("fit_intercept", [True, False])
def test_mixed_precision_single_alpha_solve_is_float64_accurate(fit_intercept):
    # float32 Gram + float64 preconditioned CG must reproduce the float64 ridge solution
    X, y = _data(400, 5, targets=True)
    Phi = RandomFeatures(120, b_std=1.0, random_state=0).fit_transform(X)
    P, Y = torch.from_numpy(Phi), torch.from_numpy(y)
    for alpha in (1e-6, 1e-2, 10.0):
        coef, intercept = ridge_solve(P, Y, alpha, fit_intercept, mixed=True)
        ref = Ridge(alpha=alpha, fit_intercept=fit_intercept).fit(Phi, y)
        np.testing.assert_allclose(Phi @ coef.numpy() + intercept.numpy(), ref.predict(Phi),
                                   rtol=1e-9, atol=1e-9)
        np.testing.assert_allclose(coef.numpy().T, ref.coef_, rtol=1e-7,
                                   atol=1e-9 * np.abs(ref.coef_).max())


def test_cuda_fitted_model_predicts_without_a_gpu(monkeypatch):
    # fitted state is numpy; a model whose device_ is CUDA falls back to the CPU when none
    X, y = _data(40, 3)
    reg = RandomFeatureRegressor(20, alpha=0.1, random_state=0, device="cpu").fit(X, y)
    expected = reg.predict(X)
    reg.device_ = reg.random_features_.device_ = torch.device("cuda")
    state = pickle.loads(pickle.dumps(reg))
    # checked on every machine: torch is made to see no GPU (test_cuda.py covers a real one)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    np.testing.assert_allclose(state.predict(X), expected, rtol=1e-12)
    np.testing.assert_allclose(state.random_features_.transform(X),
                               RandomFeatures(20, random_state=0).fit_transform(X))
