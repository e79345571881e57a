"""Tests of the sparse deep kernel machines against closed forms and limits.

* At initialisation every inducing Gram is the NNGP Gram: every KL is zero and the top-layer
  kernel is ``nngp_kernel(..., n_hidden=n_hidden)`` (or the same recursion for the other
  activations).
* Very large ``nu`` pins the layers at the NNGP: predictions equal the optimal sparse GP
  (Titsias 2009) with the NNGP kernel and the same inducing points; with every training point as
  an inducing point they equal exact NNGP regression.
* ``n_hidden=1`` is an SVGP: with the squared-exponential kernel it is the sparse GP with an RBF
  kernel of lengthscale ``sqrt(d) / w_std``.
"""

import math
import pickle

import numpy as np
import pytest
import torch
from conftest import shared_path
from sklearn.datasets import load_iris
from sklearn.linear_model import Ridge
from sklearn.model_selection import GridSearchCV
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from overparam_sklearn import NTKRegressor, SparseDKMClassifier, SparseDKMRegressor
from overparam_sklearn.kernels import nngp_kernel

W_RELU = math.sqrt(2.0)


def _data(n=40, d=3, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, d))
    y = np.sin(X[:, 0]) + 0.5 * X[:, 1] ** 2 + 0.1 * rng.normal(size=n)
    Xs = rng.normal(size=(12, d))
    return X, y, Xs


def _sparse_gp(K, X, y, Xs, Z, noise):
    """Optimal sparse GP (Titsias 2009) predictive mean and std (noise included), numpy."""
    Kzz, Kxz, Ksz = K(Z, Z), K(X, Z), K(Xs, Z)
    kss = np.diag(K(Xs, Xs))
    sigma = Kzz + Kxz.T @ Kxz / noise
    mean = Ksz @ np.linalg.solve(sigma, Kxz.T @ y) / noise
    var = (kss - np.sum(Ksz * np.linalg.solve(Kzz, Ksz.T).T, 1)
           + np.sum(Ksz * np.linalg.solve(sigma, Ksz.T).T, 1))
    return mean, np.sqrt(var + noise)


def _nngp(n_hidden, w_std=W_RELU, b_std=0.1, activation="relu"):
    def K(A, B):
        return nngp_kernel(A, B, n_hidden=n_hidden, activation=activation, w_std=w_std,
                           b_std=b_std).numpy()

    return K


def _pinned(Z, n_hidden, **kw):
    params = dict(n_hidden=n_hidden, nu=1e8, n_inducing=Z, learn_inducing=False, ard=False,
                  learn_noise=False, noise=0.05, normalize_y=False, max_iter=100,
                  learning_rate=0.01, random_state=0)
    params.update(kw)
    return SparseDKMRegressor(**params)


# --------------------------------------------------------------------------- initialisation
@pytest.mark.parametrize("n_hidden", [1, 2, 3])
@pytest.mark.parametrize(
    "dkm_activation, activation, w_std",
    [("relu", "relu", W_RELU), ("sqexp", "rbf(0.5)", 1.0)],
)
def test_init_is_the_nngp(n_hidden, dkm_activation, activation, w_std):
    X, y, Xs = _data()
    Z = X[:10]
    reg = SparseDKMRegressor(n_hidden=n_hidden, activation=dkm_activation, n_inducing=Z,
                             max_iter=0, b_std=0.2).fit(X, y)
    # every KL is exactly zero at initialisation
    assert reg.layer_kl_.shape == (n_hidden - 1,)
    np.testing.assert_allclose(reg.layer_kl_, 0.0, atol=1e-9)
    # each inducing Gram is the NNGP of that depth (up to the 1e-6 relative jitter)
    for layer, G in enumerate(reg.inducing_grams()):
        ref = nngp_kernel(Z, n_hidden=layer + 1, activation=activation, w_std=w_std, b_std=0.2)
        np.testing.assert_allclose(G, ref.numpy(), rtol=1e-5, atol=1e-5)
    # the top kernel between test points and inducing points is the NNGP of depth n_hidden:
    # transform gives K^ti chol(K^ii)^-T, so transform(Xs) transform(Z)^T = K^ti.
    top = reg.transform(Xs) @ reg.transform(Z).T
    ref = nngp_kernel(Xs, Z, n_hidden=n_hidden, activation=activation, w_std=w_std,
                      b_std=0.2)
    np.testing.assert_allclose(top, ref.numpy(), rtol=1e-4, atol=1e-5)


def test_normalized_gaussian_kernel_recursion():
    X, y, Xs = _data()
    Z = X[:8]
    reg = SparseDKMRegressor(n_hidden=2, activation="normalized_gaussian", n_inducing=Z,
                             max_iter=0, b_std=0.3, w_std=1.2).fit(X, y)

    def k(G12, g1, g2):
        norm = np.sqrt(np.outer(g1, g2))
        return 1.2**2 * norm * np.exp(G12 / norm - 1) + 0.3**2

    def gram(A, B):
        return 1.2**2 * A @ B.T / A.shape[1] + 0.3**2

    G_zz, G_sz = gram(Z, Z), gram(Xs, Z)
    g_z, g_s = np.diag(G_zz), np.sum(Xs**2, 1) * 1.2**2 / 3 + 0.3**2
    K1_zz, K1_sz = k(G_zz, g_z, g_z), k(G_sz, g_s, g_z)
    k1_s = 1.2**2 * g_s + 0.3**2  # k(g, g, g) = w^2 g + b^2
    K2_sz = k(K1_sz, k1_s, np.diag(K1_zz))
    top = reg.transform(Xs) @ reg.transform(Z).T
    np.testing.assert_allclose(top, K2_sz, rtol=1e-4)


# --------------------------------------------------------------------------------- limits
def test_large_nu_pins_layers_and_matches_sparse_nngp_regression():
    X, y, Xs = _data()
    Z = X[:15]
    reg = _pinned(Z, n_hidden=2).fit(X, y)
    assert reg.layer_kl_[0] < 1e-2
    mean, std = reg.predict(Xs, return_std=True)
    ref_mean, ref_std = _sparse_gp(_nngp(2), X, y, Xs, Z, 0.05)
    np.testing.assert_allclose(mean, ref_mean, atol=5e-3)
    np.testing.assert_allclose(std, ref_std, atol=5e-3)
    # the inducing Gram stays at the NNGP Gram ...
    G = reg.inducing_grams()[0]
    np.testing.assert_allclose(G, _nngp(1)(Z, Z), rtol=2e-2, atol=2e-2)
    # ... which a small nu does not: the test can tell the difference.
    free = _pinned(Z, n_hidden=2, nu=1e-3, learning_rate=0.05).fit(X, y)
    assert free.layer_kl_[0] > 100 * reg.layer_kl_[0]
    assert np.abs(free.predict(Xs) - ref_mean).max() > 5e-2


def test_every_point_inducing_and_large_nu_is_exact_nngp_regression():
    X, y, Xs = _data(n=30)
    reg = _pinned(X, n_hidden=2).fit(X, y)
    mean, std = reg.predict(Xs, return_std=True)
    K = _nngp(2)
    A = K(X, X) + 0.05 * np.eye(len(X))
    Ksx = K(Xs, X)
    ref_mean = Ksx @ np.linalg.solve(A, y)
    ref_var = np.diag(K(Xs, Xs)) - np.sum(Ksx * np.linalg.solve(A, Ksx.T).T, 1) + 0.05
    np.testing.assert_allclose(mean, ref_mean, atol=5e-3)
    np.testing.assert_allclose(std, np.sqrt(ref_var), atol=5e-3)


def test_one_hidden_layer_is_an_svgp_with_an_rbf_kernel():
    X, y, Xs = _data()
    Z = X[:12]
    d, w, b = X.shape[1], 1.3, 0.0
    reg = _pinned(Z, n_hidden=1, activation="sqexp", w_std=w, b_std=b).fit(X, y)
    ell2 = d / w**2

    def rbf(A, B):
        sq = ((A[:, None, :] - B[None, :, :]) ** 2).sum(-1)
        return w**2 * np.exp(-sq / (2 * ell2))

    mean, std = reg.predict(Xs, return_std=True)
    ref_mean, ref_std = _sparse_gp(rbf, X, y, Xs, Z, 0.05)
    # nothing but q(u) is learned here, and it is solved in closed form: agreement up to the
    # 1e-6 relative jitter on K^ii
    np.testing.assert_allclose(mean, ref_mean, atol=5e-5)
    np.testing.assert_allclose(std, ref_std, atol=5e-5)


def test_adam_alone_approaches_the_svgp_optimum():
    # without the closed-form output solve, minibatch Adam on the ELBO reaches the same q(u)
    X, y, Xs = _data()
    Z = X[:12]
    reg = _pinned(Z, n_hidden=1, activation="sqexp", w_std=1.0, b_std=0.0, solve_output=False,
                  max_iter=300, learning_rate=0.05, batch_size=20).fit(X, y)
    ref_mean, _ = _sparse_gp(_nngp(1, 1.0, 0.0, "rbf(0.5)"), X, y, Xs, Z, 0.05)
    assert np.abs(reg.predict(Xs) - ref_mean).max() < 5e-2


def test_per_layer_nu():
    X, y, _ = _data()
    reg = SparseDKMRegressor(n_hidden=3, nu=[1e8, 1e-3], n_inducing=10, max_iter=60,
                             learning_rate=0.05, random_state=0).fit(X, y)
    # the first layer is pinned, the second is free to move
    assert reg.layer_kl_[0] < 1e-2 * reg.layer_kl_[1]
    with pytest.raises(ValueError, match="one value per learned Gram layer"):
        SparseDKMRegressor(n_hidden=3, nu=[1.0, 2.0, 3.0], max_iter=1).fit(X, y)


# ------------------------------------------------------------------------------- learning
def test_representation_learning_beats_the_nngp_limit_on_train_objective():
    rng = np.random.default_rng(1)
    X = rng.normal(size=(200, 4))
    y = np.sign(X[:, 0]) * np.abs(X[:, 1]) ** 0.5
    common = dict(n_hidden=2, n_inducing=20, max_iter=60, learning_rate=0.05, random_state=0,
                  ard=False, learn_inducing=False)
    dkm = SparseDKMRegressor(nu=0.1, **common).fit(X, y)
    nngp = SparseDKMRegressor(nu=1e8, **common).fit(X, y)
    assert dkm.loss_curve_[-1] < nngp.loss_curve_[-1]
    assert dkm.score(X, y) > nngp.score(X, y)


def test_classifier_iris_and_string_labels():
    X, y = load_iris(return_X_y=True)
    X = StandardScaler().fit_transform(X)
    labels = np.array(["setosa", "versicolor", "virginica"])[y]
    clf = SparseDKMClassifier(n_hidden=2, n_inducing=20, max_iter=150, learning_rate=0.05,
                              random_state=0).fit(X, labels)
    assert clf.score(X, labels) > 0.9
    proba = clf.predict_proba(X)
    np.testing.assert_allclose(proba.sum(1), 1.0)
    assert set(clf.predict(X)) <= set(labels)
    # rows are predicted independently of the batch they come in
    np.testing.assert_allclose(clf.predict_proba(X[:5]), proba[:5])


def test_multioutput_regression_and_float32():
    X, y, Xs = _data()
    Y = np.c_[y, -2 * y + 1]
    reg = SparseDKMRegressor(n_hidden=2, n_inducing=10, max_iter=20, random_state=0,
                             dtype="float32").fit(X, Y)
    mean, std = reg.predict(Xs, return_std=True)
    assert mean.shape == std.shape == (len(Xs), 2)
    assert np.all(np.isfinite(mean)) and np.all(std > 0)
    assert reg.module_.Z.dtype == torch.float32


# ------------------------------------------------------------------- sklearn integration
def test_pipeline_gridsearch_and_transform_downstream():
    X, y, _ = _data(n=60)
    pipe = make_pipeline(StandardScaler(), SparseDKMRegressor(n_inducing=8, max_iter=10,
                                                              random_state=0))
    grid = GridSearchCV(pipe, {"sparsedkmregressor__nu": [0.1, 10.0],
                               "sparsedkmregressor__n_hidden": [1, 2]}, cv=2)
    grid.fit(X, y)
    assert set(grid.best_params_) == {"sparsedkmregressor__nu", "sparsedkmregressor__n_hidden"}
    # the learned representation feeds a downstream model
    feat = make_pipeline(SparseDKMRegressor(n_inducing=8, max_iter=10, random_state=0), Ridge())
    feat.fit(X, y)
    assert feat[0].transform(X).shape == (60, 8)
    assert feat.score(X, y) > 0.0


def test_pickle_roundtrip_and_determinism():
    X, y, Xs = _data()
    reg = SparseDKMRegressor(n_hidden=2, n_inducing=10, max_iter=10, random_state=3).fit(X, y)
    again = SparseDKMRegressor(n_hidden=2, n_inducing=10, max_iter=10, random_state=3).fit(X, y)
    np.testing.assert_array_equal(reg.predict(Xs), again.predict(Xs))
    loaded = pickle.loads(pickle.dumps(reg))
    np.testing.assert_array_equal(loaded.predict(Xs), reg.predict(Xs))
    assert next(loaded.module_.parameters()).device.type == "cpu"


def test_verbose_reports_progress(capsys):
    X, y, _ = _data()
    SparseDKMRegressor(n_hidden=2, n_inducing=5, max_iter=10, verbose=1).fit(X, y)
    out = capsys.readouterr().out
    assert "epoch 10/10" in out and "objective" in out


def test_bad_input():
    X, y, _ = _data()
    reg = SparseDKMRegressor(n_hidden=2, n_inducing=5, max_iter=2)
    X_nan = X.copy()
    X_nan[0, 0] = np.nan
    with pytest.raises(ValueError):
        reg.fit(X_nan, y)
    with pytest.raises(ValueError, match="inducing"):
        SparseDKMRegressor(n_inducing=np.zeros((4, 5)), max_iter=1).fit(X, y)
    reg.fit(X, y)
    with pytest.raises(ValueError):
        reg.predict(X[:, :2])
    with pytest.raises(ValueError):
        reg.predict(np.full((2, 3), np.inf))
    with pytest.raises(ValueError, match="2 classes"):
        SparseDKMClassifier(max_iter=1).fit(X, np.zeros(len(X)))


@pytest.mark.slow
def test_uci_yacht_dkm_beats_nngp_regression():
    folder = shared_path("data", "uci", "yacht")
    data = np.loadtxt(folder / "data.txt")
    feats = np.loadtxt(folder / "index_features.txt", dtype=int).ravel()
    target = int(np.loadtxt(folder / "index_target.txt"))
    tr = np.loadtxt(folder / "index_train_0.txt", dtype=int)
    te = np.loadtxt(folder / "index_test_0.txt", dtype=int)
    scaler = StandardScaler().fit(data[tr][:, feats])
    Xtr, Xte = scaler.transform(data[tr][:, feats]), scaler.transform(data[te][:, feats])
    ytr, yte = data[tr, target], data[te, target]
    dkm = SparseDKMRegressor(n_hidden=3, nu=0.1, n_inducing=50, max_iter=500,
                             learning_rate=0.02, random_state=0).fit(Xtr, ytr)
    nngps = [NTKRegressor(kernel="nngp", n_hidden=3, w_std=W_RELU, b_std=0.1, alpha=a,
                          normalize_y=True).fit(Xtr, ytr) for a in (1e-3, 1e-2, 1e-1)]
    nngp = max(nngps, key=lambda m: m.log_marginal_likelihood_value_)
    rmse_dkm = np.sqrt(np.mean((dkm.predict(Xte) - yte) ** 2))
    rmse_nngp = np.sqrt(np.mean((nngp.predict(Xte) - yte) ** 2))
    assert rmse_dkm < 0.5 * rmse_nngp


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_fit_solves_the_output_layer_on_the_device(monkeypatch):
    import overparam_sklearn.dkm._estimators as est

    devices = []
    real = est.cholesky

    def spy(A, *args, **kwargs):
        devices.append(A.device.type)
        return real(A, *args, **kwargs)

    monkeypatch.setattr(est, "cholesky", spy)
    X, y, Xs = _data()
    kw = dict(n_inducing=10, max_iter=0, random_state=0)  # same model: no device-drawn batches
    gpu = SparseDKMRegressor(device="cuda", **kw).fit(X, y)
    assert devices and set(devices) == {"cuda"}
    cpu = SparseDKMRegressor(device="cpu", **kw).fit(X, y)
    assert gpu.module_.Z.device.type == "cpu"  # fitted state lives on the CPU
    np.testing.assert_allclose(gpu.predict(Xs), cpu.predict(Xs), atol=1e-6)


def test_transform_feature_names_and_pandas_output():
    pd = pytest.importorskip("pandas")
    X, y, Xs = _data(n=40)
    reg = SparseDKMRegressor(n_inducing=6, max_iter=2, random_state=0)
    reg.set_output(transform="pandas").fit(X, y)
    names = reg.get_feature_names_out()
    np.testing.assert_array_equal(names, [f"sparsedkmregressor{i}" for i in range(6)])
    out = reg.transform(Xs)
    assert isinstance(out, pd.DataFrame)
    assert list(out.columns) == list(names)
    plain = reg.set_output(transform="default").transform(Xs)
    np.testing.assert_array_equal(out.to_numpy(), plain)
    clf = SparseDKMClassifier(n_inducing=5, max_iter=1, random_state=0).fit(X, y > 0)
    assert clf.get_feature_names_out()[0] == "sparsedkmclassifier0"
