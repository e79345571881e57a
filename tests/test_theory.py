"""Tests of the kernel-ridge and random-feature eigenframework risk estimates (theory.py)."""

import json
import math

import numpy as np
import pytest
from conftest import shared_path

from overparam_sklearn.theory import (
    _df1,
    _df2,
    krr_risk,
    optimal_ridge,
    power_law_task,
    rf_risk,
    task_eigenstructure,
)


def _spectrum(name, size=4000):
    a, b = (float(part[1:]) for part in name.split("_"))
    return power_law_task(size, a, b)


def test_power_law_task_matches_reference_convention():
    lam, v = power_law_task(5, 1.5, 2.0)
    i = np.arange(1, 6)
    np.testing.assert_allclose(lam, i**-1.5, rtol=1e-15)
    np.testing.assert_allclose(v**2, i**-2.0, rtol=1e-15)


def test_agrees_with_authors_reference():
    # values from the authors' own jax implementation; their inner bisection stops at
    # |residual| < 1e-5 (jaxopt's default tol), so agreement is ~1e-7, worst ~3e-6 at N = n
    path = shared_path("reference", "rf_theory_reference.json")
    rows = json.loads(path.read_text())["rows"]
    assert len(rows) >= 40
    spectra = {}
    checked = 0
    for row in rows:
        if row["spectrum"] not in spectra:
            spectra[row["spectrum"]] = _spectrum(row["spectrum"])
        lam, v = spectra[row["spectrum"]]
        est = rf_risk(lam, v, row["n"], row["n_features"], row["ridge"], row["noise"])
        for key in ("test_mse", "train_mse", "kappa", "gamma"):
            if key in row:
                np.testing.assert_allclose(
                    getattr(est, key), row[key], rtol=1e-5, atol=1e-14, err_msg=f"{key} {row}"
                )
                checked += 1
    assert checked >= 200


def test_rf_with_infinitely_many_features_is_kernel_ridge():
    lam, v = power_law_task(3000, 1.3, 1.7)
    for n, ridge, noise in [(50, 0.0, 0.0), (200, 1e-3, 0.3), (400, 0.5, 0.1)]:
        krr = krr_risk(lam, v, n, ridge, noise)
        assert krr.gamma == krr.kappa and krr.n_features is None
        same = rf_risk(lam, v, n, None, ridge, noise)
        assert same.test_mse == krr.test_mse
        big = rf_risk(lam, v, n, 1e12, ridge, noise)
        for key in ("test_mse", "train_mse", "kappa", "gamma"):
            np.testing.assert_allclose(getattr(big, key), getattr(krr, key), rtol=1e-6)
        # and the approach is monotone-ish: N = 1e4 is already close, N = 1e2 is not
        assert abs(rf_risk(lam, v, n, 1e4, ridge, noise).test_mse / krr.test_mse - 1) < 0.1


def test_krr_closed_forms():
    lam, v = power_law_task(2000, 1.5, 1.2)
    n, ridge, noise = 150, 0.02, 0.25
    r = krr_risk(lam, v, n, ridge, noise)
    L = lam / (lam + r.kappa)
    e0 = n / (n - np.sum(L**2))
    np.testing.assert_allclose(r.test_mse, e0 * (np.sum((1 - L) ** 2 * v**2) + noise), rtol=1e-13)
    np.testing.assert_allclose(r.train_mse, (ridge / (n * r.kappa)) ** 2 * r.test_mse, rtol=1e-9)
    # several targets: the mean of the single-target risks
    v2 = np.stack([v, 0.5 * v], axis=1)
    both = krr_risk(lam, v2, n, ridge, noise)
    single = [krr_risk(lam, v2[:, j], n, ridge, noise).test_mse for j in range(2)]
    np.testing.assert_allclose(both.test_mse, np.mean(single), rtol=1e-13)


@pytest.mark.parametrize("n_features", [20, 60, 99])
def test_ridgeless_underparameterized_limit(n_features):
    # N < n, ridge = 0: kappa = 0, df1(gamma) = N, noise factor n / (n - N)
    lam, v = power_law_task(3000, 1.4, 1.4)
    n, noise = 100, 0.3
    r = rf_risk(lam, v, n, n_features, 0.0, noise)
    assert r.kappa == 0.0
    np.testing.assert_allclose(_df1(lam, r.gamma), n_features, rtol=1e-12)
    np.testing.assert_allclose(r.overfitting_coefficient, n / (n - n_features), rtol=1e-12)
    # pure noise: the least-squares variance sigma^2 n / (n - N), train error sigma^2 (n - N)/n
    pure = rf_risk(lam, np.zeros_like(v), n, n_features, 0.0, noise)
    np.testing.assert_allclose(pure.test_mse, noise * n / (n - n_features), rtol=1e-12)
    np.testing.assert_allclose(pure.train_mse, noise * (n - n_features) / n, rtol=1e-12)
    # bias: the unlearned part sum (1 - L_i) v_i^2
    L = lam / (lam + r.gamma)
    np.testing.assert_allclose(r.bias, np.sum((1 - L) * v**2), rtol=1e-12)
    # continuity: a tiny ridge gives the same answer
    tiny = rf_risk(lam, v, n, n_features, 1e-13, noise)
    np.testing.assert_allclose(tiny.test_mse, r.test_mse, rtol=1e-5)
    np.testing.assert_allclose(tiny.gamma, r.gamma, rtol=1e-5)
    assert tiny.kappa < 1e-12


def test_ridgeless_overparameterized_limit_and_threshold():
    lam, v = power_law_task(3000, 1.4, 1.4)
    n, N = 100, 400
    r = rf_risk(lam, v, n, N, 0.0, 0.2)
    np.testing.assert_allclose(r.gamma, krr_risk(lam, v, n).kappa, rtol=1e-12)
    np.testing.assert_allclose(r.kappa, r.gamma * (1 - n / N), rtol=1e-12)
    q = _df2(lam, r.gamma)
    np.testing.assert_allclose(
        r.overfitting_coefficient, n * (N - q) / ((N - n) * (n - q)), rtol=1e-10
    )
    assert r.train_mse == 0.0
    # the interpolation threshold N = n diverges without ridge, and is finite with it
    assert math.isinf(rf_risk(lam, v, n, n, 0.0, 0.2).test_mse)
    assert math.isfinite(rf_risk(lam, v, n, n, 1e-3, 0.2).test_mse)


def test_finite_rank_spectrum():
    # M = 10 nonzero eigenvalues, more samples and features than that: ridgeless regression
    # in the span recovers the target; only the noise factor n / (n - M) remains
    lam = np.r_[np.linspace(1.0, 0.1, 10), np.zeros(5)]
    v = np.r_[np.ones(10), np.zeros(5)]
    r = rf_risk(lam, v, 50, 30, 0.0, 0.5)
    assert r.gamma == 0.0 and r.kappa == 0.0
    np.testing.assert_allclose(r.test_mse, 0.5 * 50 / 40, rtol=1e-12)
    r = krr_risk(lam, v, 50, 0.0, 0.5)
    np.testing.assert_allclose(r.test_mse, 0.5 * 50 / 40, rtol=1e-12)


@pytest.mark.parametrize("spectrum", ["a1.5_b1.5", "a1.1_b2.5", "a2.0_b1.2"])
def test_self_consistent_equations_hold(spectrum):
    lam, v = _spectrum(spectrum, 3000)
    for n in (30, 300):
        for N in (10, 29, 31, 300, 5000, None):
            for ridge in (1e-6, 1e-3, 0.1, 10.0):
                r = rf_risk(lam, v, n, N, ridge, 0.1)
                z = _df1(lam, r.gamma)
                assert abs(z + ridge / r.kappa - n) / n < 1e-10  # (A)
                if N is not None:
                    assert abs(z + N * r.kappa / r.gamma - N) / N < 1e-10  # (B)
                assert all(abs(res) < 1e-10 for res in r.residuals(lam))
                assert r.test_mse > 0 and 0 <= r.train_mse < r.test_mse


def test_optimal_ridge_risk_falls_with_features_and_samples():
    # "more is better" (Simon et al. 2024, Sec. 5): at the optimal ridge, monotone in N and n
    lam, v = power_law_task(3000, 1.5, 1.2)
    noise = 0.2
    by_n_features = [optimal_ridge(lam, v, 200, N, noise).test_mse for N in (25, 50, 100, 200,
                                                                          400, 1600)]
    kernel = optimal_ridge(lam, v, 200, None, noise).test_mse
    assert np.all(np.diff(by_n_features) < 0), by_n_features
    assert kernel < by_n_features[-1]
    by_n = [optimal_ridge(lam, v, n, 300, noise).test_mse for n in (25, 50, 100, 200, 400, 1600)]
    assert np.all(np.diff(by_n) < 0), by_n
    # and it really is the minimum
    best = optimal_ridge(lam, v, 200, 100, noise)
    for ridge in best.alpha * np.array([0.5, 0.9, 1.1, 2.0]):
        assert rf_risk(lam, v, 200, 100, ridge, noise).test_mse >= best.test_mse * (1 - 1e-9)


def test_optimal_ridge_is_zero_without_noise_on_easy_tasks():
    # noiseless, fast-decaying target: interpolation (ridge 0) is optimal (Simon et al. 2024,
    # Sec. 6: "fitting the training data is often obligatory")
    lam, v = power_law_task(3000, 1.5, 3.0)
    best = optimal_ridge(lam, v, 100, 1000, 0.0)
    assert best.alpha == 0.0 or best.train_mse < 1e-3 * best.test_mse


def _linear_gaussian_mc(lam, v, n, N, ridge, noise, trials, rng):
    """The linear-Gaussian RF model: x ~ N(0, I_M), phi(x) = G Lambda^(1/2) x / sqrt(N)."""
    M = lam.size
    test, train = [], []
    for _ in range(trials):
        X = rng.standard_normal((n, M))
        y = X @ v + math.sqrt(noise) * rng.standard_normal(n)
        F = rng.standard_normal((N, M)) * np.sqrt(lam) / math.sqrt(N)
        P = X @ F.T
        if N <= n:
            w = np.linalg.solve(P.T @ P + ridge * np.eye(N), P.T @ y)
        else:
            w = P.T @ np.linalg.solve(P @ P.T + ridge * np.eye(n), y)
        beta = F.T @ w  # the learned linear function of x
        test.append(np.sum((beta - v) ** 2) + noise)  # exact expectation over a noisy test point
        train.append(np.mean((y - P @ w) ** 2))
    return np.mean(test), np.mean(train)


@pytest.mark.parametrize("n,N,ridge", [(200, 50, 0.1), (200, 800, 0.1), (100, 400, 1e-3),
                                       (200, 200, 0.1)])
def test_monte_carlo_linear_gaussian_model(n, N, ridge):
    lam, v = power_law_task(400, 1.5, 1.5)
    noise = 0.1
    rng = np.random.default_rng(12345)
    test, train = _linear_gaussian_mc(lam, v, n, N, ridge, noise, 30, rng)
    theory = rf_risk(lam, v, n, N, ridge, noise)
    assert abs(test / theory.test_mse - 1) < 0.06, (test, theory.test_mse)
    assert abs(train / theory.train_mse - 1) < 0.12, (train, theory.train_mse)


def test_task_eigenstructure_linear_kernel():
    rng = np.random.default_rng(0)
    d = 3
    X = rng.normal(size=(3000, d))
    y = X[:, 0] + 0.5 * X[:, 1]
    lam, v = task_eigenstructure(X, y, activation="identity", n_samples=1500, random_state=0)
    assert lam.shape == (1500,) and v.shape == (1500,)
    assert np.all(np.diff(lam) <= 0) and np.all(lam >= 0)
    # K = x.x'/d has population eigenvalues 1/d (d times) and then 0
    np.testing.assert_allclose(lam[:d], 1 / d, rtol=0.15)
    assert lam[d] < 1e-10
    # Parseval on the centred sample, and all of y lives in the top-d eigenspace
    ys = y[np.random.RandomState(0).choice(3000, 1500, replace=False)]
    np.testing.assert_allclose(np.sum(v**2), np.mean((ys - ys.mean()) ** 2), rtol=1e-10)
    np.testing.assert_allclose(np.sum(v[:d] ** 2), np.sum(v**2), rtol=1e-8)
    # the estimated structure predicts kernel (linear) ridge regression's error
    r = krr_risk(lam, v, 100, 1e-3, 0.0)
    assert r.test_mse < 0.05 * np.sum(v**2)


def test_task_eigenstructure_custom_kernel_and_targets():
    rng = np.random.default_rng(1)
    X = rng.normal(size=(200, 2))
    Y = np.c_[np.sin(X[:, 0]), np.cos(X[:, 1])]
    lam, v = task_eigenstructure(X, Y, kernel=lambda A: np.exp(-((A[:, None] - A[None]) ** 2)
                                                                .sum(-1)), n_samples=500)
    assert lam.shape == (200,) and v.shape == (200, 2)
    np.testing.assert_allclose((v**2).sum(0), Y.var(0), rtol=1e-10)
    with pytest.raises(ValueError, match="matrix"):
        task_eigenstructure(X, Y[:, 0], kernel=lambda A: np.eye(3))


def test_bad_inputs():
    lam, v = power_law_task(10, 1.0, 1.0)
    with pytest.raises(ValueError, match="non-negative"):
        rf_risk(-lam, v, 10, 5)
    with pytest.raises(ValueError, match="coefficients"):
        rf_risk(lam, v[:5], 10, 5)
    with pytest.raises(ValueError, match="alpha"):
        rf_risk(lam, v, 10, 5, alpha=-1.0)
    with pytest.raises(ValueError, match="n must"):
        krr_risk(lam, v, 0)
    with pytest.raises(ValueError, match="finite"):
        krr_risk(np.r_[lam[:-1], np.nan], v, 5)
    with pytest.raises(ValueError, match="alphas"):
        optimal_ridge(lam, v, 10, 5, alphas=[0.0, 1.0])
