"""NNGPKernel / NTKKernel: the scikit-learn gaussian_process kernel adapters.

Values are compared with the torch functions and with neural-tangents' reference values,
gradients with central finite differences in log-hyperparameter space, and the kernels are run
through the scikit-learn estimators that take kernel objects.
"""

import pickle

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.gaussian_process import GaussianProcessRegressor
from sklearn.gaussian_process.kernels import RBF, ConstantKernel, WhiteKernel
from sklearn.kernel_approximation import Nystroem
from sklearn.kernel_ridge import KernelRidge
from sklearn.model_selection import GridSearchCV, KFold
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.svm import SVC

from overparam_sklearn import NNGPKernel, NTKKernel, nngp_kernel, ntk_kernel

KERNELS = [(NNGPKernel, nngp_kernel), (NTKKernel, ntk_kernel)]
KERNEL_IDS = ["nngp", "ntk"]


@pytest.fixture
def data():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(13, 4))
    Y = rng.normal(size=(7, 4))
    return X, Y


def _finite_difference_gradient(kernel, X, h=1e-5):
    """Central differences of k(X) with respect to theta (log-hyperparameters).

    On the diagonal, k(X)[i, i] goes through ``sqrt(k11 k22 - k12^2)`` at its kink: the argument
    is 0 exactly but evaluates to +-1e-16, so differencing it is noise of order
    ``sqrt(1e-16) / h``. There the differences are taken of ``kernel.diag``, whose recursion
    forms the same entries without the cancellation (the diagonal is checked against the full
    matrix separately).
    """
    theta = kernel.theta
    n = X.shape[0]
    out = np.empty((n, n, theta.size))
    for i in range(theta.size):
        step = np.zeros_like(theta)
        step[i] = h
        plus = kernel.clone_with_theta(theta + step)
        minus = kernel.clone_with_theta(theta - step)
        out[..., i] = (plus(X) - minus(X)) / (2 * h)
        out[np.arange(n), np.arange(n), i] = (plus.diag(X) - minus.diag(X)) / (2 * h)
    return out


@pytest.mark.parametrize("cls, fn", KERNELS, ids=KERNEL_IDS)
@pytest.mark.parametrize(
    "params",
    [
        dict(n_hidden=0, activation="relu", w_std=1.3, b_std=0.0),
        dict(n_hidden=2, activation="erf", w_std=1.5, b_std=0.05),
        dict(n_hidden=3, activation="gelu", w_std=0.9, b_std=0.4),
        dict(n_hidden=3, activation="relu", w_std=1.4, b_std=0.1),
        dict(n_hidden=2, activation="leaky_relu(0.1)", w_std=1.2, b_std=0.2,
             parameterization="standard", width=64),
    ],
)
def test_values_equal_torch_functions(cls, fn, params, data):
    X, Y = data
    kernel = cls(**params)
    K = kernel(X)
    assert isinstance(K, np.ndarray) and K.dtype == np.float64 and K.shape == (13, 13)
    np.testing.assert_allclose(K, fn(X, **params).numpy(), rtol=1e-14, atol=0)
    KXY = kernel(X, Y)
    assert KXY.shape == (13, 7)
    np.testing.assert_allclose(KXY, fn(X, Y, **params).numpy(), rtol=1e-14, atol=0)
    np.testing.assert_allclose(kernel.diag(X), np.diag(K), rtol=1e-13, atol=0)
    # eval_gradient returns the same K (its forward-mode pass takes another code path)
    K2, _ = kernel(X, eval_gradient=True)
    np.testing.assert_allclose(K2, K, rtol=1e-14, atol=0)
    # k(X, X) passed twice (as pairwise_kernels and SVC do) is the symmetric evaluation
    np.testing.assert_allclose(kernel(X, X), K, rtol=1e-14, atol=0)


def test_float32_and_integer_input_give_float64(data):
    X, _ = data
    kernel = NTKKernel(n_hidden=2, b_std=0.1)
    K32 = kernel(X.astype(np.float32))
    assert K32.dtype == np.float64
    np.testing.assert_allclose(K32, kernel(X.astype(np.float32).astype(np.float64)))
    assert kernel(np.arange(6).reshape(3, 2)).dtype == np.float64


@pytest.mark.parametrize("cls", [NNGPKernel, NTKKernel], ids=KERNEL_IDS)
@pytest.mark.parametrize(
    "params",
    [
        dict(n_hidden=1, activation="relu", w_std=1.4, b_std=0.3),
        dict(n_hidden=3, activation="relu", w_std=1.1, b_std=0.05),
        dict(n_hidden=2, activation="erf", w_std=1.5, b_std=0.05),
        dict(n_hidden=2, activation="gelu", w_std=0.8, b_std=0.5),
        dict(n_hidden=2, activation="abrelu(-0.5,2)", w_std=0.7, b_std=0.2),
        dict(n_hidden=1, activation="sin", w_std=1.2, b_std=0.3),
        dict(n_hidden=2, activation="rbf(0.5)", w_std=1.0, b_std=0.1),
        dict(n_hidden=2, activation="sigmoid_like", w_std=2.0, b_std=0.7),
        dict(n_hidden=0, activation="identity", w_std=1.7, b_std=0.6),
        dict(n_hidden=2, activation="relu", w_std=1.3, b_std=0.2,
             parameterization="standard", width=100),
    ],
)
def test_gradient_equals_finite_differences(cls, params, data):
    X, _ = data
    kernel = cls(**params)
    K, grad = kernel(X, eval_gradient=True)
    assert grad.shape == (13, 13, 2) and grad.dtype == np.float64
    fd = _finite_difference_gradient(kernel, X)
    scale = np.abs(fd).max(axis=(0, 1))
    assert np.all(scale > 0)
    err = np.abs(grad - fd).max(axis=(0, 1)) / scale
    assert np.all(err < 1e-6), err
    # the gradient is not trivially zero on the diagonal (where the NaN-safe sqrt acts)
    assert np.abs(np.diagonal(grad[..., 1])).max() > 1e-3


def test_gradient_order_follows_theta(data):
    X, _ = data
    kernel = NNGPKernel(n_hidden=2, activation="erf", w_std=1.5, b_std=0.3)
    names = [h.name for h in kernel.hyperparameters if not h.fixed]
    assert names == ["b_std", "w_std"]  # input_scales=None adds no free hyperparameter
    np.testing.assert_allclose(kernel.theta, np.log([0.3, 1.5]))
    # the input layer is w_std^2 x.x'/d + b_std^2: with n_hidden=0, d K / d log b = 2 b^2
    lin = NNGPKernel(n_hidden=0, w_std=1.5, b_std=0.3)
    K, grad = lin(X, eval_gradient=True)
    np.testing.assert_allclose(grad[..., 0], np.full_like(K, 2 * 0.3**2), rtol=1e-14)
    np.testing.assert_allclose(grad[..., 1], 2 * 1.5**2 * X @ X.T / X.shape[1], rtol=1e-12)


def test_zero_std_is_fixed_and_fixed_bounds(data):
    X, _ = data
    kernel = NTKKernel(n_hidden=2, b_std=0.0)
    assert kernel.hyperparameter_b_std.fixed
    assert not kernel.hyperparameter_w_std.fixed
    assert kernel.theta.shape == (1,) and kernel.bounds.shape == (1, 2)
    np.testing.assert_allclose(kernel.theta, [0.0])  # log(w_std=1)
    K, grad = kernel(X, eval_gradient=True)
    assert grad.shape == (13, 13, 1)
    np.testing.assert_allclose(grad, _finite_difference_gradient(kernel, X), rtol=1e-6,
                               atol=1e-8 * np.abs(K).max())
    frozen = NTKKernel(n_hidden=2, b_std=0.1, w_std_bounds="fixed", b_std_bounds="fixed")
    assert frozen.theta.shape == (0,) and frozen.n_dims == 0
    K, grad = frozen(X, eval_gradient=True)
    assert grad.shape == (13, 13, 0)
    bounded = NNGPKernel(b_std=0.1, w_std_bounds=(0.5, 2.0), b_std_bounds=(1e-3, 1.0))
    np.testing.assert_allclose(bounded.bounds, np.log([[1e-3, 1.0], [0.5, 2.0]]))


def test_theta_setter_and_clone_with_theta(data):
    X, _ = data
    kernel = NNGPKernel(n_hidden=2, activation="gelu", w_std=1.0, b_std=0.1)
    other = kernel.clone_with_theta(np.log([0.4, 2.0]))
    assert other.b_std == pytest.approx(0.4) and other.w_std == pytest.approx(2.0)
    assert kernel.b_std == 0.1  # the original is unchanged
    np.testing.assert_allclose(
        other(X), nngp_kernel(X, n_hidden=2, activation="gelu", w_std=2.0, b_std=0.4).numpy(),
        rtol=1e-13,
    )


def test_sum_and_product_with_sklearn_kernels(data):
    X, Y = data
    base = NTKKernel(n_hidden=2, activation="erf", w_std=1.2, b_std=0.1)
    kernel = ConstantKernel(2.0) * base + WhiteKernel(0.1) + RBF(1.5)
    assert kernel.theta.shape == (5,)
    np.testing.assert_allclose(kernel(X, Y), 2.0 * base(X, Y) + RBF(1.5)(X, Y), rtol=1e-14)
    K, grad = kernel(X, eval_gradient=True)
    fd = _finite_difference_gradient(kernel, X)
    np.testing.assert_allclose(grad, fd, rtol=1e-6, atol=1e-8 * np.abs(K).max())
    assert kernel.get_params()["k1__k1__k2__n_hidden"] == 2
    kernel.set_params(k1__k1__k2__n_hidden=3)
    assert base.n_hidden == 3


def test_gaussian_process_regressor_improves_marginal_likelihood():
    rng = np.random.default_rng(1)
    X = rng.normal(size=(40, 3))
    y = np.sin(2 * X[:, 0]) + 0.5 * X[:, 1] ** 2 + 1.0 + 0.2 * rng.normal(size=40)
    kernel = NNGPKernel(n_hidden=2, activation="relu", w_std=1.0, b_std=0.1) + WhiteKernel(0.5)
    gpr = GaussianProcessRegressor(kernel=kernel, n_restarts_optimizer=0, random_state=0)
    gpr.fit(X, y)
    lml_initial = gpr.log_marginal_likelihood(kernel.theta)
    assert gpr.log_marginal_likelihood_value_ > lml_initial + 1.0
    fitted = gpr.kernel_
    assert isinstance(fitted.k1, NNGPKernel)
    assert not np.allclose(fitted.theta, kernel.theta)
    assert np.isfinite(gpr.predict(X[:5])).all()
    # the log marginal likelihood gradient sklearn builds from our K_gradient is the true one
    theta = kernel.theta
    lml, grad = gpr.log_marginal_likelihood(theta, eval_gradient=True)
    h = 1e-5
    fd = np.array([
        (gpr.log_marginal_likelihood(theta + h * e) - gpr.log_marginal_likelihood(theta - h * e))
        / (2 * h)
        for e in np.eye(theta.size)
    ])
    np.testing.assert_allclose(grad, fd, rtol=1e-6, atol=1e-6)


def test_kernel_ridge_with_kernel_object(data):
    X, Y = data
    y = np.sin(X[:, 0])
    kernel = NTKKernel(n_hidden=2, activation="relu", b_std=0.1)
    K, Kt = kernel(X), kernel(Y, X)
    np.testing.assert_allclose(Kt, ntk_kernel(Y, X, n_hidden=2, b_std=0.1).numpy(), rtol=1e-13)
    expected = KernelRidge(alpha=1e-2, kernel="precomputed").fit(K, y).predict(Kt)
    # sklearn's pairwise_kernels evaluates a gaussian_process kernel object on whole matrices
    # (a plain callable would be called once per pair of rows, with 1-D vectors).
    pred = KernelRidge(alpha=1e-2, kernel=kernel).fit(X, y).predict(Y)
    np.testing.assert_allclose(pred, expected, rtol=1e-10, atol=1e-12)


def test_svc_with_kernel_object(data):
    rng = np.random.default_rng(3)
    X = rng.normal(size=(40, 4))
    y = (X[:, 0] * X[:, 1] > 0).astype(int)
    kernel = NNGPKernel(n_hidden=2, activation="erf", w_std=1.5, b_std=0.1)
    K = kernel(X)
    ref = SVC(kernel="precomputed", C=10.0).fit(K, y)
    clf = SVC(kernel=kernel, C=10.0).fit(X, y)
    np.testing.assert_allclose(clf.decision_function(X), ref.decision_function(K), rtol=1e-8,
                               atol=1e-10)
    # SVC calls a callable kernel on whole matrices, so a plain function works as well
    clf_fn = SVC(kernel=lambda A, B: kernel(A, B), C=10.0).fit(X, y)
    np.testing.assert_allclose(clf_fn.decision_function(X), ref.decision_function(K),
                               rtol=1e-8, atol=1e-10)
    assert clf.score(X, y) > 0.8
    # cloning the SVC clones the kernel object, which still works
    clf2 = clone(clf).fit(X, y)
    assert clf2.kernel is not kernel and clf2.kernel == kernel


def test_nystroem_with_kernel_object(data):
    X, Y = data
    kernel = NTKKernel(n_hidden=2, activation="gelu", b_std=0.2)
    # with as many components as samples, the Nystroem features reproduce the kernel exactly
    ny = Nystroem(kernel=kernel, n_components=X.shape[0], random_state=0).fit(X)
    Z = ny.transform(X)
    np.testing.assert_allclose(Z @ Z.T, kernel(X), rtol=1e-8, atol=1e-8)
    Zy = ny.transform(Y)
    np.testing.assert_allclose(Zy @ Z.T, kernel(Y, X), rtol=1e-8, atol=1e-8)


def test_pickle_clone_repr_and_equality(data):
    X, _ = data
    kernel = NTKKernel(n_hidden=3, activation="leaky_relu(0.1)", w_std=1.5, b_std=0.05,
                       parameterization="standard", width=256, b_std_bounds=(1e-3, 10.0))
    for copy in (pickle.loads(pickle.dumps(kernel)), clone(kernel)):
        assert copy is not kernel
        assert copy == kernel
        assert copy.get_params() == kernel.get_params()
        np.testing.assert_array_equal(copy(X), kernel(X))
        np.testing.assert_array_equal(copy.bounds, kernel.bounds)
    assert NNGPKernel().theta.shape == (2,)  # default b_std=0.1: both stds are free
    assert NNGPKernel(n_hidden=2) != NTKKernel(n_hidden=2)
    assert NNGPKernel(n_hidden=2) != NNGPKernel(n_hidden=3)
    assert repr(kernel) == (
        "NTKKernel(n_hidden=3, activation='leaky_relu(0.1)', w_std=1.5, b_std=0.05, "
        "parameterization='standard', width=256)"
    )
    assert repr(NNGPKernel()) == "NNGPKernel(n_hidden=1, activation='relu', w_std=1, b_std=0.1)"
    assert repr(NNGPKernel() + WhiteKernel(0.1)) == (
        "NNGPKernel(n_hidden=1, activation='relu', w_std=1, b_std=0.1) + "
        "WhiteKernel(noise_level=0.1)"
    )
    assert not kernel.is_stationary()
    assert kernel.requires_vector_input
    assert set(kernel.get_params()) == {
        "n_hidden", "activation", "w_std", "b_std", "parameterization", "width",
        "w_std_bounds", "b_std_bounds", "input_scales", "input_scales_bounds",
        "architecture", "input_shape",
    }


def test_grid_search_over_n_hidden_in_pipeline():
    rng = np.random.default_rng(2)
    X = rng.normal(size=(60, 3)) * [1.0, 3.0, 0.2]
    y = np.abs(X[:, 0]) + X[:, 1] ** 2 + 0.05 * rng.normal(size=60)
    pipe = Pipeline([
        ("scale", StandardScaler()),
        ("krr", KernelRidge(alpha=1e-2, kernel=NTKKernel(activation="relu", b_std=0.1))),
    ])
    grid = GridSearchCV(pipe, {"krr__kernel__n_hidden": [0, 1, 3]}, cv=KFold(3))
    grid.fit(X, y)
    scores = grid.cv_results_["mean_test_score"]
    # n_hidden=0 is a linear kernel, which cannot fit this target: the grid really varied it
    assert scores[0] < 0.2 and scores[1] > 0.6 and scores[2] > 0.6  # measured 0.006, 0.77, 0.75
    assert grid.best_params_["krr__kernel__n_hidden"] in (1, 3)
    assert grid.best_estimator_.named_steps["krr"].kernel.n_hidden in (1, 3)
    assert pipe.named_steps["krr"].kernel.n_hidden == 1  # the template is not modified


_REF_ACTIVATIONS = ["relu", "leaky_relu(0.1)", "abrelu(-0.5,2)", "abs", "erf", "gelu", "sin",
                    "rbf(0.5)", "identity", "sigmoid_like"]


@pytest.mark.parametrize("activation", _REF_ACTIVATIONS)
def test_reference_values_through_adapters(activation, reference_dir):
    ref = np.load(reference_dir / "ntk_reference.npz")
    x1, x2 = ref["x1"], ref["x2"]
    checked = 0
    for parameterization in ("ntk", "standard"):
        for n_hidden in (1, 3):
            for name, cls in (("nngp", NNGPKernel), ("ntk", NTKKernel)):
                kernel = cls(n_hidden=n_hidden, activation=activation, w_std=1.5, b_std=0.05,
                             parameterization=parameterization, width=512)
                prefix = f"kernel|{activation}|{parameterization}|n_hidden={n_hidden}|{name}"
                expected = ref[prefix + "|x1x2"]
                np.testing.assert_allclose(kernel(x1, x2), expected, rtol=1e-10,
                                           atol=1e-12 * np.abs(expected).max())
                expected = ref[prefix + "|x1x1"]
                # the diagonal included: the adapters take it from the exact diagonal
                # recursion (the matrix recursion is ~1e-8 off there for relu-family NTKs)
                np.testing.assert_allclose(kernel(x1), expected, rtol=1e-10,
                                           atol=1e-12 * np.abs(expected).max())
                np.testing.assert_allclose(kernel.diag(x1), np.diag(expected), rtol=1e-12)
                checked += 1
    assert checked == 8


@pytest.mark.parametrize(
    "params, error",
    [
        (dict(n_hidden=-1), ValueError),
        (dict(n_hidden=1.5), ValueError),
        (dict(activation="tanhh"), ValueError),
        (dict(w_std=-1.0), ValueError),
        (dict(parameterization="mup"), ValueError),
    ],
)
def test_invalid_parameters_raise(params, error, data):
    X, _ = data
    with pytest.raises(error):
        NTKKernel(**params)(X)


def test_invalid_input_raises(data):
    X, Y = data
    kernel = NNGPKernel(b_std=0.1)
    bad = X.copy()
    bad[0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        kernel(bad)
    with pytest.raises(ValueError, match="NaN"):
        kernel.diag(bad)
    with pytest.raises(ValueError, match="features"):
        kernel(X, Y[:, :3])
    with pytest.raises(ValueError, match="Gradient"):
        kernel(X, Y, eval_gradient=True)
    with pytest.raises(TypeError):
        kernel(np.array([["a", "b"]]))
    with pytest.raises(ValueError):
        kernel(np.zeros((2, 2, 2)))
