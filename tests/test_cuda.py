"""Every estimator on a CUDA device gives the same results as on the CPU.

(The round trip "fit on CUDA, pickle, load where no CUDA is visible, predict" is
``tests/test_devices.py::test_cuda_round_trip``, one subprocess for every estimator.)

These tests are marked ``cuda``. On a machine with a GPU, ``benchmarks/gpu_check.py`` runs them
(``pytest -m cuda``). Without a GPU they skip, except under ``OVERPARAM_CUDA_DRY_RUN=1`` (set by
``gpu_check.py --dry-run``, which the default suite runs), where the CPU stands in for the GPU so
that the test code itself never breaks unseen; the dry run checks the code paths, not a GPU.

Tolerances (CUDA vs CPU, stated per test): float64 kernel solves 1e-8 relative (different BLAS
summation orders on an ill-conditioned solve); float32 networks 1e-4 absolute on probabilities;
trained networks (Adam in float32) are compared by score rank correlation.
"""

import os
import pickle

import numpy as np
import pytest
import torch
from sklearn.datasets import load_digits, load_iris

import overparam_sklearn as osk

pytestmark = pytest.mark.cuda


@pytest.fixture(scope="module")
def device():
    if torch.cuda.is_available():
        return "cuda"
    if os.environ.get("OVERPARAM_CUDA_DRY_RUN") == "1":
        return "cpu"  # dry run: the CPU stands in for the GPU
    pytest.skip("needs a CUDA device (run benchmarks/gpu_check.py on a machine with one)")


@pytest.fixture(scope="module")
def regression():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(300, 5))
    y = np.sin(2 * X[:, 0]) + X[:, 1] * X[:, 2] + 0.1 * rng.normal(size=300)
    return X, y, rng.normal(size=(50, 5))


def _on_device(model, device):
    """The fitted state is on ``device`` during fit (``device_``) and usable after."""
    assert model.device_.type == device


@pytest.mark.parametrize("kernel", ["ntk", "nngp"])
@pytest.mark.parametrize("t", [None, 50.0])
def test_ntk_regressor_matches_cpu(device, regression, kernel, t):
    X, y, Xq = regression
    kw = dict(kernel=kernel, n_hidden=2, alpha=1e-3, t=t)
    gpu = osk.NTKRegressor(device=device, **kw).fit(X, y)
    cpu = osk.NTKRegressor(device="cpu", **kw).fit(X, y)
    _on_device(gpu, device)
    mean_g, std_g = gpu.predict(Xq, return_std=True)
    mean_c, std_c = cpu.predict(Xq, return_std=True)
    np.testing.assert_allclose(mean_g, mean_c, rtol=1e-8, atol=1e-8)
    np.testing.assert_allclose(std_g, std_c, rtol=1e-6, atol=1e-8)


def test_ntk_nystrom_and_classifier_match_cpu(device, regression):
    X, y, Xq = regression
    kw = dict(solver="nystrom", n_centers=100, alpha=1e-2, random_state=0)
    gpu = osk.NTKRegressor(device=device, **kw).fit(X, y)
    cpu = osk.NTKRegressor(device="cpu", **kw).fit(X, y)
    np.testing.assert_allclose(gpu.predict(Xq), cpu.predict(Xq), rtol=1e-8, atol=1e-8)
    Xi, yi = load_iris(return_X_y=True)
    clf_g = osk.NTKClassifier(alpha=1e-2, device=device).fit(Xi, yi)
    clf_c = osk.NTKClassifier(alpha=1e-2, device="cpu").fit(Xi, yi)
    np.testing.assert_allclose(clf_g.predict_proba(Xi), clf_c.predict_proba(Xi), atol=1e-8)


def test_random_features_match_cpu(device, regression):
    X, y, Xq = regression
    kw = dict(n_components=200, b_std=1.0, alpha=[1e-5, 1e-1, 10.0], random_state=0)
    gpu = osk.RandomFeatureRegressor(device=device, **kw).fit(X, y)
    cpu = osk.RandomFeatureRegressor(device="cpu", **kw).fit(X, y)
    _on_device(gpu, device)
    assert gpu.alpha_ == cpu.alpha_
    np.testing.assert_allclose(gpu.predict(Xq), cpu.predict(Xq), rtol=1e-8, atol=1e-8)
    phi = osk.RandomFeatures(50, random_state=0, device=device).fit_transform(X)
    np.testing.assert_allclose(phi, osk.RandomFeatures(50, random_state=0).fit_transform(X),
                               rtol=1e-12, atol=1e-12)


def test_dkm_matches_cpu(device, regression):
    X, y, Xq = regression
    kw = dict(n_inducing=20, max_iter=5, random_state=0, dtype="float64")
    gpu = osk.SparseDKMRegressor(device=device, **kw).fit(X, y)
    cpu = osk.SparseDKMRegressor(device="cpu", **kw).fit(X, y)
    _on_device(gpu, device)
    # float64 Adam from the same CPU-drawn batches: only summation order differs
    np.testing.assert_allclose(gpu.predict(Xq), cpu.predict(Xq), rtol=1e-6, atol=1e-6)


def test_pfn_matches_cpu(device):
    Xi, yi = load_iris(return_X_y=True)
    gpu = osk.PFNClassifier(n_estimators=2, random_state=0, device=device).fit(Xi, yi)
    cpu = osk.PFNClassifier(n_estimators=2, random_state=0, device="cpu").fit(Xi, yi)
    _on_device(gpu, device)
    np.testing.assert_allclose(gpu.predict_proba(Xi), cpu.predict_proba(Xi), atol=1e-4)
    rng = np.random.default_rng(0)
    X = rng.normal(size=(200, 3))
    y = X[:, 0] + 0.1 * rng.normal(size=200)
    reg_g = osk.PFNRegressor(n_estimators=2, random_state=0, device=device).fit(X, y)
    reg_c = osk.PFNRegressor(n_estimators=2, random_state=0, device="cpu").fit(X, y)
    np.testing.assert_allclose(reg_g.predict(X[:50]), reg_c.predict(X[:50]), atol=1e-3)


def test_scorers_match_cpu(device):
    from scipy.stats import spearmanr

    X, y = load_digits(return_X_y=True)
    X, y = X[:300] / 16.0, y[:300]
    for cls in (osk.EL2NScorer, osk.GraNdScorer, osk.ForgettingScorer):
        kw = dict(n_estimators=2, score_epoch=2, random_state=0)
        gpu = cls(device=device, **kw).fit(X, y)
        cpu = cls(device="cpu", **kw).fit(X, y)
        _on_device(gpu, device)
        # same seeds and batches; float32 training on another device drifts a little
        assert spearmanr(gpu.scores_, cpu.scores_).statistic > 0.95, cls.__name__
        np.testing.assert_allclose(gpu.score_samples(X, y), gpu.scores_, rtol=1e-4, atol=1e-5)
        loaded = pickle.loads(pickle.dumps(gpu))
        np.testing.assert_allclose(loaded.score_samples(X, y), gpu.scores_, rtol=1e-4,
                                   atol=1e-5)
