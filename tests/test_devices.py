"""The device policy: a model fitted on CUDA is pickled and used where there is no CUDA.

One rule for every estimator (``overparam_sklearn._backend``): ``__getstate__`` copies fitted
tensors and modules to the CPU and keeps ``device_`` as fitted; methods compute on
``usable_device(device_)``, the CPU where CUDA is absent.

* On any machine: every estimator is fitted on the CPU, its ``device_`` set to CUDA (what a GPU
  fit records), pickled, unpickled and used; where this process sees no CUDA that is exactly the
  "fitted on a GPU, used on a laptop" path, and the outputs must be those of the original.
* With a GPU (marked ``cuda``: run by ``benchmarks/gpu_check.py``, skipped otherwise): every
  estimator is fitted with ``device="cuda"``, pickled, and
  loaded and used in a subprocess with ``CUDA_VISIBLE_DEVICES=""``; its outputs must match those
  computed on the GPU. Random draws made on CPU generators (random-feature weights, DKM inducing
  points and minibatch order, scorer initialisations) must equal those of a CPU fit.
"""

import os
import pickle
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch

from overparam_sklearn import (
    DataDietClassifier,
    DataDietSampler,
    EL2NScorer,
    ForgettingScorer,
    GraNdScorer,
    NTKClassifier,
    NTKRegressor,
    PFNClassifier,
    PFNRegressor,
    RandomFeatureClassifier,
    RandomFeatureRegressor,
    RandomFeatures,
    SparseDKMClassifier,
    SparseDKMRegressor,
)
from overparam_sklearn._backend import usable_device

RNG = np.random.RandomState(2)
X = RNG.normal(size=(30, 3))
Y_REG = X[:, 0] - X[:, 2] + 0.1 * RNG.normal(size=30)
Y_CLF = (X[:, 0] > 0).astype(int)
HAS_CUDA = torch.cuda.is_available()


@pytest.fixture(scope="module")
def gpu():
    """The CUDA device; the CPU stands in under ``OVERPARAM_CUDA_DRY_RUN=1`` (set by
    ``benchmarks/gpu_check.py --dry-run``, so that the test code runs in the default suite)."""
    if HAS_CUDA:
        return "cuda"
    if os.environ.get("OVERPARAM_CUDA_DRY_RUN") == "1":
        return "cpu"
    pytest.skip("needs a CUDA device (run benchmarks/gpu_check.py on a machine with one)")


def _scorer(cls, device):
    est = cls(device=device, random_state=0, module_params={"hidden_layer_sizes": (4,)},
              score_epoch=2, batch_size=8)
    return est.set_params(n_estimators=2)


# name: (factory(device), kind)
ESTIMATORS = {
    "NTKRegressor": (lambda d: NTKRegressor(device=d), "regressor"),
    "NTKClassifier": (lambda d: NTKClassifier(device=d), "classifier"),
    "RandomFeatures": (lambda d: RandomFeatures(16, device=d, random_state=0), "transformer"),
    "RandomFeatureRegressor": (lambda d: RandomFeatureRegressor(16, device=d, random_state=0),
                               "regressor"),
    "RandomFeatureClassifier": (lambda d: RandomFeatureClassifier(16, device=d, random_state=0),
                                "classifier"),
    "PFNRegressor": (lambda d: PFNRegressor(2, device=d, random_state=0), "regressor"),
    "PFNClassifier": (lambda d: PFNClassifier(2, device=d, random_state=0), "classifier"),
    "EL2NScorer": (lambda d: _scorer(EL2NScorer, d), "scorer"),
    "GraNdScorer": (lambda d: _scorer(GraNdScorer, d), "scorer"),
    "ForgettingScorer": (lambda d: _scorer(ForgettingScorer, d), "scorer"),
    "DataDietClassifier": (lambda d: DataDietClassifier(scorer=_scorer(EL2NScorer, d),
                                                        keep_fraction=0.7, random_state=0),
                           "classifier"),
    "DataDietSampler": (lambda d: DataDietSampler(scorer=_scorer(GraNdScorer, d),
                                                  keep_fraction=0.7, random_state=0), "sampler"),
    "SparseDKMRegressor": (lambda d: SparseDKMRegressor(n_inducing=6, max_iter=3, device=d,
                                                        random_state=0), "regressor"),
    "SparseDKMClassifier": (lambda d: SparseDKMClassifier(n_inducing=6, max_iter=3, device=d,
                                                          random_state=0), "classifier"),
}


def fit(name, device):
    factory, kind = ESTIMATORS[name]
    est = factory(device)
    return est.fit(X) if kind == "transformer" else est.fit(
        X, Y_REG if kind == "regressor" else Y_CLF)


def outputs(est):
    """Everything the fitted estimator computes from new data, as float64 arrays."""
    name = type(est).__name__
    kind = ESTIMATORS[name][1]
    if kind == "regressor":
        out = [est.predict(X)]
        if name.startswith(("NTK", "PFN", "SparseDKM")):
            out += list(est.predict(X, return_std=True))
    elif kind == "classifier":
        out = [est.predict(X)]
        out.append(est.predict_proba(X) if hasattr(est, "predict_proba")
                   else est.decision_function(X))
    elif kind == "transformer":
        out = [est.transform(X)]
    elif kind == "scorer":
        out = [est.score_samples(X, Y_CLF), est.score_samples(X)]
    else:  # the sampler: its fitted scorer scores new data
        out = [est.scorer_.score_samples(X, Y_CLF)]
    if name.startswith("SparseDKM"):
        out.append(est.transform(X))
    return [np.asarray(o, dtype=np.float64) for o in out]


def _say_cuda(est):
    """Make a CPU-fitted estimator record what a GPU fit records."""
    for obj in (est, getattr(est, "scorer_", None)):
        if obj is not None and hasattr(obj, "device_"):
            obj.device_ = torch.device("cuda")


def test_usable_device():
    assert usable_device(None) == torch.device("cpu")
    assert usable_device("cpu") == torch.device("cpu")
    expected = "cuda" if HAS_CUDA else "cpu"
    assert usable_device(torch.device("cuda")).type == expected


@pytest.mark.parametrize("name", list(ESTIMATORS))
def test_fitted_on_cuda_used_without_cuda(name, monkeypatch):
    est = fit(name, "cpu")
    reference = outputs(est)
    _say_cuda(est)
    if HAS_CUDA:  # hide the GPU, as on a machine without one
        monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    loaded = pickle.loads(pickle.dumps(est))
    device_owner = loaded.scorer_ if hasattr(loaded, "scorer_") else loaded
    assert device_owner.device_.type == "cuda"  # pickled as fitted
    for got, want in zip(outputs(loaded), reference, strict=True):
        np.testing.assert_array_equal(got, want)
    # and the estimator itself (not only its pickle) works with device_ saying cuda
    for got, want in zip(outputs(est), reference, strict=True):
        np.testing.assert_array_equal(got, want)


def test_pickles_hold_no_cuda_tensor():
    # the rule itself: tensors and modules of any device are copied to the CPU
    from overparam_sklearn._backend import _to_cpu

    state = {"t": torch.ones(2), "m": torch.nn.Linear(2, 1), "nested": [{"t": torch.zeros(1)}]}
    out = _to_cpu(state)
    assert out["t"].device.type == "cpu" and out["nested"][0]["t"].device.type == "cpu"
    assert next(out["m"].parameters()).device.type == "cpu"


_LOAD_WITHOUT_CUDA = textwrap.dedent("""
    import pickle, sys
    import numpy as np
    import torch
    assert not torch.cuda.is_available()
    sys.path.insert(0, sys.argv[3])
    from test_devices import outputs
    with open(sys.argv[1], "rb") as fh:
        models = pickle.load(fh)
    np.savez(sys.argv[2], **{f"{name}__{i}": out for name, est in models.items()
                             for i, out in enumerate(outputs(est))})
""")


@pytest.mark.cuda
def test_cuda_round_trip(tmp_path, gpu):
    # every estimator fitted on the GPU, pickled, then loaded and used in one fresh interpreter
    # that sees no CUDA (one subprocess for all: each costs the imports, ~10 s)
    models = {name: fit(name, gpu) for name in ESTIMATORS}
    on_gpu = {name: outputs(est) for name, est in models.items()}
    path = tmp_path / "models.pkl"
    path.write_bytes(pickle.dumps(models))
    env = dict(os.environ, CUDA_VISIBLE_DEVICES="", OMP_NUM_THREADS="1")
    proc = subprocess.run(
        [sys.executable, "-c", _LOAD_WITHOUT_CUDA, str(path), str(tmp_path / "out.npz"),
         str(Path(__file__).parent)],
        env=env, cwd=Path(__file__).parents[1], timeout=600, capture_output=True, text=True,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    with np.load(tmp_path / "out.npz") as data:
        for name, expected in on_gpu.items():
            for i, want in enumerate(expected):
                # float32 networks (PFN, scorers) and TF32 matmuls: float32 round-off
                np.testing.assert_allclose(data[f"{name}__{i}"], want, rtol=2e-3, atol=2e-4,
                                           err_msg=name)


@pytest.mark.cuda
def test_cpu_and_cuda_fits_draw_the_same_randomness(gpu):
    # drawn on CPU generators: identical whatever the device
    a, b = fit("RandomFeatures", "cpu"), fit("RandomFeatures", gpu)
    np.testing.assert_array_equal(a.weights_, b.weights_)
    a, b = fit("SparseDKMRegressor", "cpu"), fit("SparseDKMRegressor", gpu)
    assert a.loss_curve_[0] == pytest.approx(b.loss_curve_[0], rel=1e-6)
    a, b = fit("PFNRegressor", "cpu"), fit("PFNRegressor", gpu)
    for ma, mb in zip(a.members_, b.members_, strict=True):
        np.testing.assert_array_equal(ma["context"], mb["context"])
        np.testing.assert_array_equal(ma["features"], mb["features"])
