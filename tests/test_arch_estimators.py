"""``architecture=`` and ``input_shape=`` in NTKRegressor, NTKClassifier, NNGPKernel, NTKKernel."""

import pickle

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.gaussian_process import GaussianProcessRegressor
from sklearn.gaussian_process.kernels import ConstantKernel
from sklearn.kernel_ridge import KernelRidge
from sklearn.utils.estimator_checks import parametrize_with_checks

from overparam_sklearn import NNGPKernel, NTKClassifier, NTKKernel, NTKRegressor
from overparam_sklearn.kernels.layers import (
    Activation,
    Conv,
    Dense,
    Flatten,
    GlobalAvgPool,
    layer_kernels,
    serial,
)


def dense_stack(n_hidden=2, activation="relu", w_std=1.3, b_std=0.1):
    layers = [Dense(w_std, b_std)]
    for _ in range(n_hidden):
        layers += [Activation(activation), Dense(w_std, b_std)]
    return serial(*layers)


CNN = serial(Conv((3, 3), w_std=1.4, b_std=0.1), Activation("relu"), GlobalAvgPool(),
             Dense(1.4, 0.1))


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(30, 5))
    return X, np.sin(X[:, 0]) + 0.1 * rng.normal(size=30), rng.normal(size=(7, 5))


@pytest.fixture(scope="module")
def images():
    rng = np.random.default_rng(1)
    X = rng.normal(size=(24, 4 * 4 * 2))  # rows of 4x4 images with 2 channels (NHWC)
    y = (X[:, ::2].sum(1) > 0).astype(int)
    return X, y


@pytest.mark.parametrize("kernel", ["ntk", "nngp"])
@pytest.mark.parametrize("t", [None, 5.0])
def test_dense_architecture_equals_fully_connected_estimator(data, kernel, t):
    X, y, Xt = data
    kw = dict(kernel=kernel, alpha=1e-3, t=t, device="cpu")
    ref = NTKRegressor(n_hidden=2, w_std=1.3, b_std=0.1, **kw).fit(X, y)
    ours = NTKRegressor(architecture=dense_stack(), **kw).fit(X, y)
    for a, b in zip(ref.predict(Xt, return_std=True), ours.predict(Xt, return_std=True),
                    strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(ref.predict(Xt, return_cov=True)[1],
                               ours.predict(Xt, return_cov=True)[1], rtol=1e-8, atol=1e-11)


def test_convolutional_regressor_is_kernel_ridge_on_the_cntk(images):
    X, y = images
    model = NTKRegressor(architecture=CNN, input_shape=(4, 4, 2), alpha=1e-2, device="cpu",
                         normalize_y=False)
    model.fit(X[:16], y[:16])
    _, K = layer_kernels(CNN, X.reshape(-1, 4, 4, 2))
    K = K.numpy()
    krr = KernelRidge(alpha=1e-2, kernel="precomputed").fit(K[:16, :16], y[:16])
    np.testing.assert_allclose(model.predict(X[16:]), krr.predict(K[16:, :16]), rtol=1e-8)
    clf = NTKClassifier(architecture=CNN, input_shape=[4, 4, 2], alpha=1e-2, device="cpu")
    proba = clf.fit(X[:16], y[:16]).predict_proba(X[16:])
    assert proba.shape == (8, 2) and np.allclose(proba.sum(1), 1)
    restored = pickle.loads(pickle.dumps(clf))
    np.testing.assert_allclose(restored.predict_proba(X[16:]), proba)


def test_sklearn_kernels_with_architecture(images):
    X, y = images
    shape = (4, 4, 2)
    ntk = NTKKernel(architecture=CNN, input_shape=shape)
    nngp = NNGPKernel(architecture=CNN, input_shape=shape)
    ref_nngp, ref_ntk = layer_kernels(CNN, X.reshape((-1,) + shape))
    np.testing.assert_allclose(ntk(X), ref_ntk.numpy(), rtol=1e-14)
    np.testing.assert_allclose(nngp(X), ref_nngp.numpy(), rtol=1e-14)
    np.testing.assert_allclose(ntk(X[:3], X[5:9]), ref_ntk.numpy()[:3, 5:9], rtol=1e-10)
    np.testing.assert_allclose(ntk.diag(X), np.diag(ref_ntk.numpy()), rtol=1e-14)
    assert ntk.theta.shape == (0,) and ntk(X, eval_gradient=True)[1].shape == (24, 24, 0)
    assert "architecture=serial(Conv" in repr(ntk)
    gpr = GaussianProcessRegressor(ConstantKernel(1.0) * nngp, alpha=1e-2).fit(X, y)
    assert gpr.kernel_.k1.constant_value != 1.0  # the amplitude was fitted
    np.testing.assert_allclose(clone(ntk)(X), ntk(X))
    np.testing.assert_allclose(pickle.loads(pickle.dumps(ntk))(X), ntk(X))


def test_bad_architecture_settings(images):
    X, y = images
    with pytest.raises(ValueError, match="holds 30 values"):
        NTKRegressor(architecture=CNN, input_shape=(5, 3, 2)).fit(X, y)
    with pytest.raises(ValueError, match="only used together with architecture"):
        NTKRegressor(input_shape=(4, 4, 2)).fit(X, y)
    with pytest.raises(ValueError, match="spatial axes"):
        NTKRegressor(architecture=CNN).fit(X, y)  # rows as vectors: Conv needs images
    with pytest.raises(ValueError, match="Flatten"):
        NTKRegressor(architecture=serial(Conv((3, 3))), input_shape=(4, 4, 2)).fit(X, y)
    with pytest.raises(ValueError, match="architecture"):
        NTKRegressor(architecture="cnn").fit(X, y)
    with pytest.raises(ValueError, match="holds 30 values"):
        NTKKernel(architecture=CNN, input_shape=(5, 3, 2))(X)
    with pytest.raises(ValueError, match="only used together"):
        NTKKernel(input_shape=(4, 4, 2))(X)
    with pytest.raises(TypeError, match="architecture must be"):
        NTKKernel(architecture="cnn")(X)


def test_flatten_readout_classifier_on_images(images):
    X, y = images
    arch = serial(Conv((3, 3), "VALID", w_std=1.4, b_std=0.1), Activation("erf"), Flatten(),
                  Dense(1.4, 0.1))
    clf = NTKClassifier(kernel="nngp", architecture=arch, input_shape=(4, 4, 2), alpha=1e-3)
    assert clf.fit(X, y).score(X, y) == 1.0


# The classifier's network is the default fully connected one (w_std=1, b_std=0.1): its
# ensemble-vote predict_proba ranks like decision_function only up to the per-query spread, and
# sklearn's check_decision_proba_consistency passes for the default network (test_common.py).
@parametrize_with_checks([
    NTKRegressor(architecture=dense_stack(1, "erf"), device="cpu"),
    NTKClassifier(architecture=dense_stack(1, "relu", 1.0, 0.1), device="cpu"),
])
def test_sklearn_checks_with_an_architecture(estimator, check):
    check(estimator)
