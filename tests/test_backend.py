"""The shared torch backend, and the promise that no estimator touches global state."""

import numpy as np
import pytest
import torch
from sklearn.base import ClassifierMixin, RegressorMixin, clone
from test_common import ESTIMATORS

from overparam_sklearn import _backend
from overparam_sklearn._backend import (
    check_memory,
    make_generator,
    resolve_device,
    resolve_dtype,
    rows_per_tile,
    tile_slices,
    to_numpy,
    to_tensor,
)


def test_resolve_device():
    assert resolve_device("cpu") == torch.device("cpu")
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert resolve_device("auto").type == expected
    with pytest.raises(ValueError, match="device must be"):
        resolve_device("tpu")
    with pytest.raises(TypeError):
        resolve_device(3)
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="no CUDA device"):
            resolve_device("cuda")


def test_resolve_dtype():
    assert resolve_dtype(None) == torch.float64
    assert resolve_dtype(None, "float32") == torch.float32
    assert resolve_dtype("float32") == torch.float32
    assert resolve_dtype(np.float64) == torch.float64
    with pytest.raises(ValueError, match="float32"):
        resolve_dtype("float16")


def test_tensor_round_trip_and_read_only_input():
    X = np.arange(6.0).reshape(2, 3)
    X.setflags(write=False)
    t = to_tensor(X, torch.device("cpu"), torch.float32)
    assert t.dtype == torch.float32
    np.testing.assert_array_equal(to_numpy(t), X)


def test_generator_is_private_and_reproducible():
    state = torch.get_rng_state().clone()
    a = torch.randn(5, generator=make_generator(0))
    b = torch.randn(5, generator=make_generator(0))
    c = torch.randn(5, generator=make_generator(1))
    assert torch.equal(a, b) and not torch.equal(a, c)
    rs = np.random.RandomState(3)
    d = torch.randn(5, generator=make_generator(rs))
    e = torch.randn(5, generator=make_generator(rs))
    assert not torch.equal(d, e)  # a shared RandomState advances
    assert torch.equal(torch.get_rng_state(), state)


def test_memory_check_and_tiles(monkeypatch):
    monkeypatch.setattr(_backend, "available_memory", lambda device: 10 * 2**30)
    check_memory(2**30, "cpu", "a small thing")
    with pytest.raises(ValueError, match="Not enough memory for the big one.*reduce n"):
        check_memory(20 * 2**30, "cpu", "the big one", hint="reduce n")
    assert rows_per_tile(1000, torch.float64, 1, tile_bytes=8000 * 7) == 7
    slices = tile_slices(10, 4)
    assert [(s.start, s.stop) for s in slices] == [(0, 4), (4, 8), (8, 10)]


def _small_data(estimator):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(40, 4))
    if isinstance(estimator, ClassifierMixin) or "classifier" in type(estimator).__name__.lower():
        y = (X[:, 0] + 0.3 * rng.normal(size=40) > 0).astype(int)
    elif isinstance(estimator, RegressorMixin):
        y = np.sin(X[:, 0])
    else:
        y = (X[:, 0] > 0).astype(int)  # scorers and samplers take labels
    return X, y


@pytest.mark.parametrize("estimator", ESTIMATORS, ids=lambda e: type(e).__name__)
def test_fit_and_predict_leave_torch_global_state_untouched(estimator):
    X, y = _small_data(estimator)
    threads = torch.get_num_threads()
    dtype = torch.get_default_dtype()
    torch_rng = torch.get_rng_state().clone()
    np_rng = np.random.get_state()[1].copy()  # noqa: NPY002
    est = clone(estimator)
    # random_state=None means numpy's global RandomState (the scikit-learn convention), which
    # then legitimately advances; fix every seed so that any use of global state shows.
    est.set_params(**{k: 0 for k in est.get_params(deep=True) if k.endswith("random_state")})
    if hasattr(est, "fit_resample"):
        est.fit_resample(X, y)
    else:
        est.fit(X, y)
        for method in ("predict", "predict_proba", "transform", "decision_function"):
            if hasattr(est, method):
                getattr(est, method)(X[:5])
        if hasattr(est, "score_samples"):
            try:
                est.score_samples(X[:5], y[:5])
            except TypeError:
                est.score_samples(X[:5])
    assert torch.get_num_threads() == threads
    assert torch.get_default_dtype() == dtype
    assert torch.equal(torch.get_rng_state(), torch_rng)
    assert np.array_equal(np.random.get_state()[1], np_rng)  # noqa: NPY002


# ------------------------------------------------------------------------------------------
# Thread policy


@pytest.fixture
def three_threads():
    """torch set to 3 threads for the test (CI runs with one), restored afterwards."""
    saved = torch.get_num_threads()
    torch.set_num_threads(3)
    yield 3
    torch.set_num_threads(saved)


def test_thread_limit_sets_nests_and_restores(three_threads):
    with _backend.thread_limit(None) as n:
        assert n == 1 and torch.get_num_threads() == 1
        with _backend.thread_limit(2) as m:
            assert m == 2 and torch.get_num_threads() == 2
        assert torch.get_num_threads() == 1  # the inner context restores the outer's count
    assert torch.get_num_threads() == 3
    with pytest.raises(RuntimeError, match="boom"):
        with _backend.thread_limit(1):
            raise RuntimeError("boom")
    assert torch.get_num_threads() == 3
    with pytest.raises(ValueError, match="n_threads"):
        _backend.resolve_threads(0)


def test_large_work_uses_the_idle_cores(three_threads, monkeypatch):
    monkeypatch.setattr(_backend, "idle_cores", lambda: 8)
    assert _backend.resolve_threads(None, large=True) == 3  # torch's count, not more
    assert _backend.resolve_threads(None, large=False) == 1
    monkeypatch.setattr(_backend, "idle_cores", lambda: 2)
    assert _backend.resolve_threads(None, large=True) == 2
    monkeypatch.setattr(_backend, "idle_cores", lambda: -5)  # a loaded machine
    assert _backend.resolve_threads(None, large=True) == 1
    assert _backend.resolve_threads(4, large=True) == 4  # an explicit n_threads wins


def test_estimators_run_with_the_policy_threads(three_threads, monkeypatch):
    from overparam_sklearn import NTKRegressor
    from overparam_sklearn.ntk import _base as ntk

    seen = []
    original = ntk.fc_kernels

    def spy(*args, **kwargs):
        seen.append(torch.get_num_threads())
        return original(*args, **kwargs)

    monkeypatch.setattr(ntk, "fc_kernels", spy)
    X = np.random.default_rng(0).normal(size=(30, 3))
    y = X[:, 0]
    NTKRegressor(alpha=0.1, device="cpu").fit(X, y).predict(X)
    assert seen and set(seen) == {1}  # small kernels: one thread
    seen.clear()
    NTKRegressor(alpha=0.1, device="cpu", n_threads=2).fit(X, y).predict(X)
    assert set(seen) == {2}
    assert torch.get_num_threads() == 3


def test_import_does_not_import_skorch():
    # skorch is slow to import and only the data-diet scorers need it (inside fit).
    import subprocess
    import sys

    code = "import sys, overparam_sklearn; print('skorch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, cwd=str(__import__("pathlib").Path(__file__).parents[1]))
    assert out.stdout.strip() == "False"
