"""NTKRegressor / NTKClassifier against neural-tangents' ensemble predictions and closed forms."""

import pickle

import numpy as np
import pytest
import scipy.sparse as sp
import torch
from conftest import REFERENCE, shared_path
from sklearn.datasets import load_diabetes, load_iris
from sklearn.model_selection import GridSearchCV
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from overparam_sklearn import NTKClassifier, NTKRegressor, _backend, nngp_kernel, ntk_kernel

W_STD, B_STD = 1.5, 0.05


@pytest.fixture(scope="module")
def reference():
    return dict(np.load(shared_path("reference", "ntk_reference.npz")))


def _predict_keys():
    # Parameters are collected before any test runs: without ../shared, one placeholder whose
    # test skips (through the reference fixture) with the absent-file message.
    path = REFERENCE / "ntk_reference.npz"
    if not path.exists():
        return ["reference-absent"]
    with np.load(path) as data:
        return sorted(k for k in data.files if k.startswith("predict|") and k.endswith("|mean"))


def _model_for(key, reference):
    _, act, par, hidden, mode, t, diag_reg, _ = key.split("|")
    n_hidden = int(hidden.split("=")[1])
    t = t.split("=")[1]
    t = None if t == "None" else float(t)
    diag_reg = float(diag_reg.split("=")[1])
    # neural-tangents' diag_reg is relative: diag_reg * trace(K_train) / n is our absolute alpha.
    kernel_fn = ntk_kernel if mode == "ntk" else nngp_kernel
    K = kernel_fn(reference["x1"], n_hidden=n_hidden, activation=act, w_std=W_STD, b_std=B_STD,
                  parameterization=par)
    alpha = diag_reg * float(K.trace()) / K.shape[0]
    return NTKRegressor(normalize_y=False,
                        kernel=mode, n_hidden=n_hidden, activation=act, w_std=W_STD, b_std=B_STD,
                        parameterization=par, alpha=alpha, t=t, device="cpu")


@pytest.mark.parametrize("key", _predict_keys())
def test_ensemble_matches_neural_tangents(reference, key):
    model = _model_for(key, reference).fit(reference["x1"], reference["y1"])
    mean, cov = model.predict(reference["x2"], return_cov=True)
    _, std = model.predict(reference["x2"], return_std=True)
    ref_mean, ref_cov = reference[key], reference[key.replace("|mean", "|cov")]
    # The relu NTK entries inherit neural-tangents' ~1e-9 error on its train-kernel diagonal
    # (see tests/test_kernels.py); everything else agrees at round-off.
    tol = 1e-7 if ("|relu|" in key and "|ntk|t=" in key) else 1e-12
    assert mean.shape == ref_mean.shape and cov.shape == ref_cov.shape + (1,)
    assert np.abs(mean - ref_mean).max() <= tol * np.abs(ref_mean).max()
    assert np.abs(cov[:, :, 0] - ref_cov).max() <= tol * np.abs(ref_cov).max()
    np.testing.assert_allclose(std[:, 0] ** 2, np.diag(cov[:, :, 0]), rtol=1e-9,
                               atol=1e-14 * np.abs(ref_cov).max())


@pytest.fixture(scope="module")
def regression_data():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(60, 4))
    y = np.sin(X[:, 0]) + 0.3 * X[:, 1] ** 2 + 0.05 * rng.normal(size=60)
    return X, y, rng.normal(size=(25, 4))


@pytest.mark.parametrize("kernel", ["ntk", "nngp"])
@pytest.mark.parametrize("t", [0.3, 20.0, 1e3])
def test_krylov_matches_eigendecomposition(regression_data, kernel, t):
    X, y, Xq = regression_data
    model = NTKRegressor(normalize_y=False,
                         kernel=kernel, n_hidden=2, alpha=1e-4, t=t, device="cpu").fit(X, y)
    mean, cov = model.predict(Xq, return_cov=True)
    trajectory = model.predict_trajectory(Xq, [t])
    np.testing.assert_allclose(mean, trajectory[0], rtol=1e-10, atol=1e-12)
    # covariance from the eigendecomposition path: more than 64 columns forces it
    many = np.vstack([Xq] * 3)
    _, cov_eig = model.predict(many, return_cov=True)
    np.testing.assert_allclose(cov, cov_eig[:25, :25], rtol=1e-8, atol=1e-12)


def test_long_time_converges_to_kernel_ridge(regression_data):
    X, y, Xq = regression_data
    converged = NTKRegressor(normalize_y=False, n_hidden=2, alpha=1e-2, device="cpu").fit(X, y)
    late = NTKRegressor(normalize_y=False, n_hidden=2, alpha=1e-2, t=1e9, device="cpu").fit(X, y)
    np.testing.assert_allclose(late.predict(Xq), converged.predict(Xq), rtol=1e-8, atol=1e-10)
    traj = converged.predict_trajectory(Xq, [0.0, np.inf])
    np.testing.assert_allclose(traj[0], 0.0, atol=1e-14)  # nothing learned at t = 0
    np.testing.assert_allclose(traj[1], converged.predict(Xq), rtol=1e-8, atol=1e-10)


def test_nngp_posterior_is_the_exact_gp(regression_data):
    X, y, Xq = regression_data
    alpha = 0.05
    model = NTKRegressor(normalize_y=False,
                         kernel="nngp", n_hidden=3, activation="erf", w_std=1.2, b_std=0.1,
                         alpha=alpha, device="cpu").fit(X, y)
    kw = dict(n_hidden=3, activation="erf", w_std=1.2, b_std=0.1)
    K = nngp_kernel(X, **kw).numpy() + alpha * np.eye(len(X))
    Ks = nngp_kernel(Xq, X, **kw).numpy()
    Kss = nngp_kernel(Xq, **kw).numpy()
    mean = Ks @ np.linalg.solve(K, y)
    cov = Kss - Ks @ np.linalg.solve(K, Ks.T)
    m, c = model.predict(Xq, return_cov=True)
    np.testing.assert_allclose(m, mean, rtol=1e-9, atol=1e-11)
    np.testing.assert_allclose(c, cov, rtol=1e-8, atol=1e-11)
    sign, logdet = np.linalg.slogdet(K)
    lml = -0.5 * y @ np.linalg.solve(K, y) - 0.5 * logdet - 0.5 * len(y) * np.log(2 * np.pi)
    assert model.log_marginal_likelihood_value_ == pytest.approx(lml, rel=1e-10)


def test_multi_output_and_normalize_y(regression_data):
    X, y, Xq = regression_data
    Y = np.column_stack([y, 3 * y + 10])
    model = NTKRegressor(n_hidden=1, alpha=1e-3, normalize_y=True, device="cpu").fit(X, Y)
    mean, std = model.predict(Xq, return_std=True)
    assert mean.shape == (25, 2) and std.shape == (25, 2)
    single = NTKRegressor(n_hidden=1, alpha=1e-3, normalize_y=True, device="cpu").fit(X, y)
    m1, s1 = single.predict(Xq, return_std=True)
    np.testing.assert_allclose(mean[:, 0], m1, rtol=1e-10)
    np.testing.assert_allclose(mean[:, 1], 3 * m1 + 10, rtol=1e-10)
    np.testing.assert_allclose(std[:, 1], 3 * s1, rtol=1e-10)
    _, cov = model.predict(Xq, return_cov=True)
    assert cov.shape == (25, 25, 2)


def test_student_t_scale_mixture(regression_data):
    X, y, Xq = regression_data
    gauss = NTKRegressor(normalize_y=False,
                         kernel="nngp", n_hidden=2, alpha=0.1, device="cpu").fit(X, y)
    _, s_gauss = gauss.predict(Xq, return_std=True)
    # A very concentrated inverse-gamma prior at scale 1 recovers the Gaussian posterior.
    a = 1e7
    tight = NTKRegressor(normalize_y=False,
                         kernel="nngp", n_hidden=2, alpha=0.1, posterior="student_t",
                         prior_shape=a, prior_scale=a - 1, device="cpu").fit(X, y)
    np.testing.assert_allclose(tight.predict(Xq, return_std=True)[1], s_gauss,
                               rtol=1e-5)
    # Closed form: df = 2a + n, scale^2 = (2b + y'A^{-1}y)/(2a + n) * var,
    # std^2 = scale^2 df/(df-2)
    a, b = 2.0, 2.0
    model = NTKRegressor(normalize_y=False,
                         kernel="nngp", n_hidden=2, alpha=0.1, posterior="student_t",
                         prior_shape=a, prior_scale=b, device="cpu").fit(X, y)
    K = nngp_kernel(X, n_hidden=2, b_std=0.1).numpy() + 0.1 * np.eye(len(X))
    quad = y @ np.linalg.solve(K, y)
    df = 2 * a + len(y)
    expected = np.sqrt(s_gauss**2 * (2 * b + quad) / df * df / (df - 2))
    np.testing.assert_allclose(model.predict(Xq, return_std=True)[1], expected, rtol=1e-9)
    assert model.predictive_df_ == df
    # Heavy tails respond to the data's scale: 10x larger targets, ~10x larger std.
    big = NTKRegressor(normalize_y=False,
                       kernel="nngp", n_hidden=2, alpha=0.1, posterior="student_t",
                       device="cpu").fit(X, 100 * y)
    ratio = big.predict(Xq, return_std=True)[1] / model.predict(Xq, return_std=True)[1]
    assert np.all(ratio > 50)
    with pytest.raises(ValueError, match="student_t"):
        NTKRegressor(normalize_y=False, kernel="ntk", posterior="student_t").fit(X, y)


def test_classifier_iris_and_probabilities():
    X, y = load_iris(return_X_y=True)
    X = StandardScaler().fit_transform(X)
    clf = NTKClassifier(n_hidden=2, alpha=1e-2, device="cpu").fit(X[::2], y[::2])
    assert clf.score(X[1::2], y[1::2]) > 0.9
    proba = clf.predict_proba(X[1::2])
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, rtol=1e-12)
    np.testing.assert_array_equal(clf.classes_[proba.argmax(axis=1)], clf.predict(X[1::2]))
    assert clf.decision_function(X[:3]).shape == (3, 3)


def test_vote_probabilities_match_monte_carlo():
    from overparam_sklearn.ntk._classifier import _ensemble_vote_probabilities

    rng = np.random.default_rng(0)
    mean = rng.normal(size=(4, 3))
    std = np.array([0.3, 1.0, 2.0, 0.05])
    proba = _ensemble_vote_probabilities(mean, std)
    draws = mean[:, None, :] + std[:, None, None] * rng.normal(size=(4, 200_000, 3))
    votes = np.stack([(draws.argmax(axis=2) == c).mean(axis=1) for c in range(3)], axis=1)
    np.testing.assert_allclose(proba, votes, atol=5e-3)


def test_binary_classifier_decision_function():
    X, y = load_iris(return_X_y=True)
    mask = y < 2
    X, y = X[mask], np.where(y[mask] == 1, "b", "a")
    clf = NTKClassifier(alpha=1e-2, device="cpu").fit(X, y)
    scores = clf.decision_function(X)
    assert scores.shape == (len(y),)
    np.testing.assert_array_equal(np.where(scores > 0, "b", "a"), clf.predict(X))


def test_pipeline_grid_search_and_pickle():
    X, y = load_diabetes(return_X_y=True)
    X, y = X[:200], (y[:200] - y[:200].mean()) / y[:200].std()
    pipe = make_pipeline(StandardScaler(), NTKRegressor(normalize_y=False, device="cpu"))
    grid = GridSearchCV(pipe, {"ntkregressor__n_hidden": [1, 3],
                               "ntkregressor__alpha": [1e-2, 1.0, 10.0]}, cv=3)
    grid.fit(X, y)
    assert grid.best_params_["ntkregressor__alpha"] >= 1.0  # noisy data wants a ridge
    assert grid.best_score_ > 0.3
    restored = pickle.loads(pickle.dumps(grid.best_estimator_))
    np.testing.assert_array_equal(restored.predict(X[:10]), grid.predict(X[:10]))


def test_grid_search_on_dask_cluster():
    distributed = pytest.importorskip("distributed")
    from joblib import parallel_backend

    X, y = load_diabetes(return_X_y=True)
    X, y = X[:120], y[:120] / 100
    grid = GridSearchCV(make_pipeline(StandardScaler(), NTKRegressor(normalize_y=False,
                                                                     device="cpu")),
                        {"ntkregressor__alpha": [0.1, 10.0]}, cv=2)
    with distributed.LocalCluster(n_workers=1, threads_per_worker=1, processes=True,
                                  dashboard_address=":0") as cluster:  # any free port
        with distributed.Client(cluster):
            with parallel_backend("dask"):
                grid.fit(X, y)
    local = GridSearchCV(make_pipeline(StandardScaler(), NTKRegressor(normalize_y=False,
                                                                      device="cpu")),
                         {"ntkregressor__alpha": [0.1, 10.0]}, cv=2).fit(X, y)
    np.testing.assert_allclose(grid.cv_results_["mean_test_score"],
                               local.cv_results_["mean_test_score"], rtol=1e-10)


def _fitted():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(20, 3))
    return NTKRegressor(normalize_y=False, device="cpu").fit(X, X[:, 0]), X


@pytest.mark.parametrize(
    "X_bad, error, message",
    [
        (np.array([[1.0, np.nan, 0.0]] * 3), ValueError, "NaN"),
        (np.array([[1.0, np.inf, 0.0]] * 3), ValueError, "infinity"),
        (np.ones((3, 4)), ValueError, "features"),
        (np.ones(3), ValueError, "2D array"),
        (np.ones((0, 3)), ValueError, "0 sample"),
        (np.array([["a", "b", "c"]]), ValueError, "float"),
        (np.ones((2, 3)) * (1 + 1j), ValueError, "[Cc]omplex"),
        (sp.csr_matrix(np.ones((2, 3))), TypeError, "[Ss]parse"),
    ],
)
def test_bad_input_at_predict(X_bad, error, message):
    model, _ = _fitted()
    with pytest.raises(error, match=message):
        model.predict(X_bad)


def test_bad_input_at_fit():
    X = np.random.default_rng(0).normal(size=(10, 3))
    with pytest.raises(ValueError, match="NaN"):
        NTKRegressor().fit(X, np.r_[np.nan, np.ones(9)])
    with pytest.raises(ValueError):
        NTKRegressor().fit(X[:, 0], np.ones(10))
    with pytest.raises(ValueError, match="Unknown activation"):
        NTKRegressor(normalize_y=False, activation="swish").fit(X, np.ones(10))
    with pytest.raises(ValueError, match="only one class"):
        NTKClassifier().fit(X, np.zeros(10))


def test_singular_kernel_gives_a_clear_error():
    X = np.repeat(np.random.default_rng(0).normal(size=(5, 3)), 2, axis=0)  # duplicated rows
    y = np.arange(10.0)
    with pytest.raises(ValueError, match="increasing alpha"):
        NTKRegressor(normalize_y=False, alpha=0.0, device="cpu").fit(X, y)
    pred = NTKRegressor(normalize_y=False, alpha=1e-6, device="cpu").fit(X, y).predict(X)
    assert np.isfinite(pred).all()


def test_memory_guard(monkeypatch):
    monkeypatch.setattr(_backend, "available_memory", lambda device: 1000)
    X = np.random.default_rng(0).normal(size=(50, 3))
    with pytest.raises(ValueError, match="Not enough memory"):
        NTKRegressor(normalize_y=False, device="cpu").fit(X, X[:, 0])


def test_cuda_request_without_gpu(monkeypatch):
    # checked on every machine: torch is made to see no GPU (test_cuda.py covers a real one)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    X = np.ones((4, 2))
    with pytest.raises(ValueError, match="CUDA"):
        NTKRegressor(normalize_y=False, device="cuda").fit(X, np.arange(4.0))
    with pytest.raises(ValueError, match="CUDA"):
        NTKClassifier(device="cuda").fit(X, [0, 1, 0, 1])
    assert NTKRegressor(device="auto").fit(X, np.arange(4.0)).device_.type == "cpu"


def test_float32_fit_is_close_to_float64(regression_data):
    X, y, Xq = regression_data
    m64 = NTKRegressor(normalize_y=False, n_hidden=2, alpha=1e-2, device="cpu").fit(X, y)
    m32 = NTKRegressor(normalize_y=False,
                       n_hidden=2, alpha=1e-2, dtype="float32", device="cpu").fit(X, y)
    assert m32.dual_coef_.dtype == np.float32
    np.testing.assert_allclose(m32.predict(Xq), m64.predict(Xq), rtol=1e-3, atol=1e-3)


def test_global_torch_state_is_untouched(regression_data):
    X, y, Xq = regression_data
    threads = torch.get_num_threads()
    default_dtype = torch.get_default_dtype()
    rng_state = torch.get_rng_state().clone()
    model = NTKRegressor(normalize_y=False, n_hidden=2, t=5.0, device="auto").fit(X, y)
    model.predict(Xq, return_std=True)
    NTKClassifier().fit(X, y > 0).predict_proba(Xq)
    assert torch.get_num_threads() == threads
    assert torch.get_default_dtype() == default_dtype
    assert torch.equal(torch.get_rng_state(), rng_state)


def test_ntk_std_reuses_the_nngp_train_kernel(regression_data, monkeypatch):
    from overparam_sklearn.ntk import _base as ntk_module

    X, y, Xq = regression_data
    model = NTKRegressor(normalize_y=False, n_hidden=2, alpha=1e-3, device="cpu").fit(X, y)
    first = model.predict(Xq, return_std=True)
    calls = []
    original = ntk_module.fc_kernels

    def counting(X1, X2=None, **kwargs):
        calls.append((X1.shape[0], None if X2 is None else X2.shape[0]))
        return original(X1, X2, **kwargs)

    monkeypatch.setattr(ntk_module, "fc_kernels", counting)
    second = model.predict(Xq, return_std=True)
    np.testing.assert_array_equal(first[1], second[1])
    assert (len(X), None) not in calls  # the n x n NNGP train kernel came from the cache
    # predict_trajectory: the first call decomposes the train kernel, later ones reuse it
    model.predict_trajectory(Xq, [1.0])
    assert (len(X), None) in calls
    calls.clear()
    model.predict_trajectory(Xq, [2.0, 3.0])
    assert (len(X), None) not in calls
    restored = pickle.loads(pickle.dumps(model))
    assert "nngp_train" in model._cache and restored._cache == {}
    np.testing.assert_allclose(restored.predict(Xq, return_std=True)[1], first[1], rtol=1e-12)


# ------------------------------------------------------------------------------------------
# Defaults: alpha="auto", normalize_y=True


def test_auto_alpha_is_the_leave_one_out_choice(regression_data):
    from overparam_sklearn import _linalg

    X, y, _ = regression_data
    rng = np.random.default_rng(3)
    y = y + 0.5 * rng.normal(size=y.shape)  # noisy: the ridge matters
    model = NTKRegressor(n_hidden=2, device="cpu").fit(X, y)
    yn = (y - y.mean()) / y.std()
    K = ntk_kernel(X, n_hidden=2, b_std=0.1)
    s, U = _linalg._eigh_psd(K, "K")
    grid = _linalg.auto_alpha_grid(s, len(X), torch.float64)
    loo = _linalg.kernel_ridge_path(s, U, torch.as_tensor(yn)[:, None], grid, "loo")
    assert model.alpha_ == pytest.approx(grid[np.argmin(loo)])
    assert 1e-6 * float(s.max()) < model.alpha_ < float(s.max())  # an interior, real ridge
    fixed = NTKRegressor(n_hidden=2, alpha=model.alpha_, device="cpu").fit(X, y)
    np.testing.assert_allclose(model.predict(X), fixed.predict(X), rtol=1e-10)


def test_auto_alpha_at_finite_time_and_for_classifiers():
    X, y = load_iris(return_X_y=True)
    clf = NTKClassifier(device="cpu").fit(X, y)
    assert clf.alpha_ > 0 and clf.score(X, y) > 0.9
    reg = NTKRegressor(t=10.0, device="cpu").fit(X[:, :3], X[:, 3])
    assert reg.alpha_ > 0 and reg.score(X[:, :3], X[:, 3]) > 0.8


def test_defaults_score_like_ridgecv_on_diabetes():
    # The first-hour promise: NTKRegressor() in a StandardScaler pipeline is not worse than
    # RidgeCV on a small noisy data set (it interpolated with the former alpha=1e-6).
    from sklearn.linear_model import RidgeCV
    from sklearn.model_selection import train_test_split

    X, y = load_diabetes(return_X_y=True)
    ours, ridge = [], []
    for seed in range(3):
        Xtr, Xte, ytr, yte = train_test_split(X, y, test_size=0.25, random_state=seed)
        ours.append(make_pipeline(StandardScaler(), NTKRegressor(device="cpu"))
                    .fit(Xtr, ytr).score(Xte, yte))
        ridge.append(make_pipeline(StandardScaler(), RidgeCV(alphas=np.logspace(-3, 3, 13)))
                     .fit(Xtr, ytr).score(Xte, yte))
    assert np.mean(ours) >= np.mean(ridge) - 0.02
