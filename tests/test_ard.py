"""Per-feature input scales (ARD) and marginal-likelihood tuning of the infinite-width kernels.

Closed forms: the input layer's Gram, and kernels with scales equal to the kernels of the scaled
inputs. Gradients: central finite differences in log space (sklearn kernels and the profiled
log marginal likelihood that ``optimize="ml"`` maximises). Limits: random features converge to
the ARD kernel. Real data (UCI concrete, from ../shared): tuning moves and improves the LML.
"""

import warnings

import numpy as np
import pytest
import torch
from conftest import shared_path
from sklearn.exceptions import ConvergenceWarning
from sklearn.gaussian_process import GaussianProcessRegressor
from sklearn.gaussian_process.kernels import WhiteKernel

from overparam_sklearn import (
    NNGPKernel,
    NTKClassifier,
    NTKKernel,
    NTKRegressor,
    RandomFeatures,
    nngp_kernel,
    ntk_kernel,
)
from overparam_sklearn._tuning import _kernel_matrix, profiled_log_marginal_likelihood
from overparam_sklearn.kernels import dense_input_gram

SCALES = np.array([0.3, 1.0, 2.5, 0.0])


@pytest.fixture
def data():
    rng = np.random.default_rng(0)
    return rng.normal(size=(11, 4)), rng.normal(size=(6, 4))


def test_dense_input_gram_closed_form(data):
    X, Y = data
    K = dense_input_gram(X, Y, w_std=1.7, b_std=0.3, input_scales=SCALES).numpy()
    expected = 1.7**2 * (X * SCALES**2) @ Y.T / 4 + 0.3**2
    np.testing.assert_allclose(K, expected, rtol=1e-14)
    iso = dense_input_gram(X, None, w_std=1.7, b_std=0.3).numpy()
    np.testing.assert_allclose(iso, 1.7**2 * X @ X.T / 4 + 0.09, rtol=1e-14)


@pytest.mark.parametrize("fn", [nngp_kernel, ntk_kernel])
@pytest.mark.parametrize("params", [
    dict(n_hidden=2, activation="relu", w_std=1.3, b_std=0.2),
    dict(n_hidden=1, activation="erf", w_std=0.8, b_std=0.5),
    dict(n_hidden=2, activation="gelu", w_std=1.1, b_std=0.1, parameterization="standard",
         width=32),
])
def test_input_scales_are_the_kernel_of_scaled_inputs(fn, params, data):
    X, Y = data
    scaled = fn(X, Y, input_scales=SCALES, **params).numpy()
    np.testing.assert_allclose(scaled, fn(X * SCALES, Y * SCALES, **params).numpy(),
                               rtol=1e-13, atol=1e-15)
    sym = fn(X, input_scales=SCALES, **params).numpy()
    np.testing.assert_allclose(sym, fn(X * SCALES, **params).numpy(), rtol=1e-12, atol=1e-14)
    ones = fn(X, Y, input_scales=np.ones(4), **params).numpy()
    np.testing.assert_allclose(ones, fn(X, Y, **params).numpy(), rtol=1e-14)


@pytest.mark.parametrize("bad, match", [
    ([1.0, 2.0], "one scale per feature"),
    ([1.0, -1.0, 1.0, 1.0], "non-negative"),
    ([1.0, np.nan, 1.0, 1.0], "finite"),
    ("abc", "input_scales"),
])
def test_input_scales_validation(bad, match, data):
    X, _ = data
    with pytest.raises((ValueError, TypeError), match=match):
        nngp_kernel(X, input_scales=bad)


@pytest.mark.parametrize("cls", [NNGPKernel, NTKKernel])
@pytest.mark.parametrize("activation", ["relu", "erf"])
def test_sklearn_ard_gradient_matches_finite_differences(cls, activation, data):
    X, _ = data
    kernel = cls(n_hidden=2, activation=activation, w_std=1.3, b_std=0.2,
                 input_scales=[0.5, 1.0, 2.0, 0.7])
    assert kernel.theta.shape == (6,)  # log b_std, 4 log scales, log w_std
    assert kernel.hyperparameter_input_scales.n_elements == 4
    K, G = kernel(X, eval_gradient=True)
    np.testing.assert_allclose(K, kernel.__class__(
        n_hidden=2, activation=activation, w_std=1.3, b_std=0.2)(X * [0.5, 1.0, 2.0, 0.7]),
        rtol=1e-12)
    theta, h = kernel.theta, 1e-5
    for i in range(theta.size):
        step = np.zeros_like(theta)
        step[i] = h
        plus, minus = kernel.clone_with_theta(theta + step), kernel.clone_with_theta(theta - step)
        fd = (plus(X) - minus(X)) / (2 * h)
        fd[np.diag_indices(len(X))] = (plus.diag(X) - minus.diag(X)) / (2 * h)
        np.testing.assert_allclose(G[..., i], fd, rtol=1e-6, atol=1e-8 * np.abs(fd).max())


def test_sklearn_isotropic_kernel_has_no_scale_hyperparameter(data):
    X, _ = data
    kernel = NNGPKernel()
    assert kernel.hyperparameter_input_scales.fixed and kernel.theta.shape == (2,)
    assert NNGPKernel(input_scales=SCALES).hyperparameter_input_scales.fixed  # a zero scale
    assert "input_scales=[0.3, 1, 2.5, 0]" in repr(NNGPKernel(input_scales=SCALES))
    with pytest.raises(ValueError, match="one scale per feature"):
        NNGPKernel(input_scales=[1.0, 2.0])(X)


def test_random_features_converge_to_the_ard_kernel(data):
    X, _ = data
    scales = [0.2, 1.0, 3.0, 0.5]
    K = nngp_kernel(X, n_hidden=1, activation="erf", w_std=1.5, b_std=0.5,
                    input_scales=scales).numpy()
    errors = []
    for n in (500, 50_000):
        phi = RandomFeatures(n, activation="erf", w_std=1.5, b_std=0.5, input_scales=scales,
                             random_state=0).fit_transform(X)
        errors.append(np.abs(1.5**2 * phi @ phi.T + 0.25 - K).max())
    assert errors[1] < 0.03 and errors[1] < errors[0] / 3
    # the same draws as without scales, multiplied row-wise by the scales
    plain = RandomFeatures(10, random_state=0).fit(X)
    ard = RandomFeatures(10, input_scales=scales, random_state=0).fit(X)
    np.testing.assert_allclose(ard.weights_, plain.weights_ * np.array(scales)[:, None])


@pytest.mark.parametrize("kind", ["nngp", "ntk"])
def test_profiled_lml_gradient_matches_finite_differences(kind, data):
    X = torch.from_numpy(data[0])
    Y = torch.from_numpy(np.sin(data[0][:, :1]) + 0.1 * data[0][:, 1:2])

    def lml(z):
        s, w, b, rho = torch.exp(z[:4]), torch.exp(z[4]), torch.exp(z[5]), torch.exp(z[6])
        K = _kernel_matrix(X, kind, 2, "relu", "ntk", 512, w, b, s)
        return profiled_log_marginal_likelihood(K, Y, rho)[0]

    z = torch.tensor([-0.3, 0.2, 0.5, -1.0, 0.1, -1.5, -2.0], dtype=torch.float64,
                     requires_grad=True)
    (grad,) = torch.autograd.grad(lml(z), z)
    h = 1e-6
    for i in range(z.numel()):
        e = torch.zeros_like(z)
        e[i] = h
        with torch.no_grad():
            fd = (lml(z + e) - lml(z - e)) / (2 * h)
        np.testing.assert_allclose(float(grad[i]), float(fd), rtol=1e-5, atol=1e-7)


def test_profiled_lml_is_the_gaussian_lml_at_the_fitted_scale(data):
    X = torch.from_numpy(data[0])
    Y = torch.from_numpy(data[0][:, :1] ** 2)
    K = _kernel_matrix(X, "nngp", 1, "erf", "ntk", 512, 1.2, 0.3, None)
    lml, sigma2, c = profiled_log_marginal_likelihood(K, Y, 0.05)
    from scipy.stats import multivariate_normal

    cov = (sigma2 * (K / c + 0.05 * torch.eye(len(X)))).numpy()
    expected = multivariate_normal(np.zeros(len(X)), cov).logpdf(Y.numpy()[:, 0])
    np.testing.assert_allclose(float(lml), expected, rtol=1e-10)


def _relevance_data(n=120, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 4))
    y = np.sin(2 * X[:, 0]) + 0.05 * rng.normal(size=n)  # only feature 0 matters
    return X, y


@pytest.mark.parametrize("kind", ["nngp", "ntk"])
def test_ml_tuning_finds_the_relevant_feature(kind):
    X, y = _relevance_data()
    iso = NTKRegressor(kernel=kind, n_hidden=2, optimize="ml", random_state=0).fit(X, y)
    ard = NTKRegressor(kernel=kind, n_hidden=2, optimize="ml", ard=True,
                       random_state=0).fit(X, y)
    s = ard.input_scales_
    assert s.shape == (4,) and s[0] > 5 * s[1:].max()
    assert np.allclose(iso.input_scales_, iso.input_scales_[0])
    assert ard.log_marginal_likelihood_value_ > iso.log_marginal_likelihood_value_
    Xt, yt = _relevance_data(200, seed=1)
    rmse = lambda m: np.sqrt(np.mean((m.predict(Xt) - yt) ** 2))  # noqa: E731
    assert rmse(ard) < rmse(iso) and rmse(ard) < 0.15
    # the fitted attributes define the fitted model: a plain fit with them predicts the same
    plain = NTKRegressor(kernel=kind, n_hidden=2, w_std=ard.w_std_, b_std=ard.b_std_,
                         alpha=ard.alpha_, input_scales=ard.input_scales_).fit(X, y)
    np.testing.assert_allclose(plain.predict(Xt), ard.predict(Xt), rtol=1e-8, atol=1e-10)


def test_ml_tuning_improves_on_the_start_and_restarts_are_seeded():
    X, y = _relevance_data(80)
    model = NTKRegressor(kernel="nngp", n_hidden=1, optimize="ml", ard=True, n_restarts=2,
                         random_state=3).fit(X, y)
    again = NTKRegressor(kernel="nngp", n_hidden=1, optimize="ml", ard=True, n_restarts=2,
                         random_state=3).fit(X, y)
    np.testing.assert_allclose(model.input_scales_, again.input_scales_)
    Xt = torch.from_numpy(X)
    K0 = _kernel_matrix(Xt, "nngp", 1, "relu", "ntk", 512, 1.0, 0.1, None)
    start = profiled_log_marginal_likelihood(K0, torch.from_numpy(y[:, None]), 1e-3)[0]
    assert model.log_marginal_likelihood_value_ > float(start) + 10
    # predictive std carries the fitted output scale
    _, std = model.predict(X[:5], return_std=True)
    assert np.all(std > 0) and model.kernel_scale_ > 0


def test_ml_tuning_classifier_and_student_t_refused():
    X, y = _relevance_data(60)
    clf = NTKClassifier(n_hidden=1, optimize="ml", ard=True).fit(X, y > 0)
    assert clf.input_scales_.shape == (4,) and clf.score(X, y > 0) > 0.8
    with pytest.raises(ValueError, match="student_t"):
        NTKRegressor(kernel="nngp", posterior="student_t", optimize="ml").fit(X, y)
    with pytest.raises(ValueError, match="one scale per feature"):
        NTKRegressor(input_scales=[1.0, 2.0]).fit(X, y)


def test_input_scales_without_tuning_are_used():
    X, y = _relevance_data(50)
    model = NTKRegressor(input_scales=[2.0, 0.5, 0.5, 0.5], alpha=1e-3).fit(X, y)
    ref = NTKRegressor(alpha=1e-3).fit(X * [2.0, 0.5, 0.5, 0.5], y)
    np.testing.assert_allclose(model.predict(X[:7]), ref.predict(X[:7] * [2.0, 0.5, 0.5, 0.5]),
                               rtol=1e-10)
    assert model.alpha_ == 1e-3 and model.kernel_scale_ == 1.0


def _concrete(n=200):
    folder = shared_path("data", "uci", "concrete")
    data = np.loadtxt(folder / "data.txt")
    feats = np.loadtxt(folder / "index_features.txt", dtype=int).ravel()
    target = int(np.loadtxt(folder / "index_target.txt"))
    X, y = data[:n, feats], data[:n, target]
    return (X - X.mean(0)) / X.std(0), (y - y.mean()) / y.std()


@pytest.mark.parametrize("cls", [NNGPKernel, NTKKernel])
def test_gpr_with_default_kernel_tunes_on_real_data(cls):
    """The reliability issue: with the old bounds the fit stopped at its start on concrete."""
    X, y = _concrete()
    gpr = GaussianProcessRegressor(cls(n_hidden=2) + WhiteKernel(), n_restarts_optimizer=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        gpr.fit(X, y)
    start = gpr.log_marginal_likelihood(gpr.kernel.theta)
    assert gpr.log_marginal_likelihood_value_ > start + 30
    assert np.abs(gpr.kernel_.theta - gpr.kernel.theta).max() > 0.3


@pytest.mark.parametrize("kind", ["nngp", "ntk"])
def test_ml_tuning_moves_on_real_data(kind):
    X, y = _concrete()
    model = NTKRegressor(kernel=kind, n_hidden=2, optimize="ml", ard=True).fit(X, y)
    Xt = torch.from_numpy(X)
    K0 = _kernel_matrix(Xt, kind, 2, "relu", "ntk", 512, 1.0, 0.1, None)
    start = profiled_log_marginal_likelihood(K0, torch.from_numpy(y[:, None]), 1e-3)[0]
    assert model.log_marginal_likelihood_value_ > float(start) + 30
    assert np.abs(np.log(model.input_scales_)).max() > 0.5
