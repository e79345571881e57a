"""``fit`` is atomic: an exception or Ctrl-C inside training leaves the estimator as it was.

Every public estimator gets a failure injected deep inside its ``fit`` (in the training step of
the iterative ones: Adam's step for the sparse DKM, skorch's ``train_step`` for the data-diet
scorers; in the solve or the draws for the others). Then

* an interrupted first fit leaves the estimator unfitted (``check_is_fitted`` raises, the
  instance ``__dict__`` is what it was before the call);
* an interrupted refit leaves the previous fit whole (the same attribute objects, the same
  predictions);
* a ``KeyboardInterrupt`` propagates out of ``fit`` (skorch swallows it inside
  ``NeuralNet.fit``; the scorers raise it again).
"""

import numpy as np
import pytest
import torch
from sklearn.exceptions import NotFittedError
from sklearn.utils.validation import check_is_fitted
from skorch import NeuralNet

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
    _linalg,
)
from overparam_sklearn.pfn import estimator as pfn_estimator

RNG = np.random.RandomState(1)
X = RNG.normal(size=(30, 3))
Y_REG = X[:, 0] + 0.1 * RNG.normal(size=30)
Y_CLF = (X[:, 0] + X[:, 1] > 0).astype(int)
X2 = RNG.normal(size=(30, 3))  # the data of the interrupted refit
Y2_REG = -X2[:, 1]
Y2_CLF = (X2[:, 2] > 0).astype(int)


def _scorer(cls=EL2NScorer):
    est = cls(device="cpu", random_state=0, module_params={"hidden_layer_sizes": (4,)},
              score_epoch=3, batch_size=8)
    return est.set_params(n_estimators=2)


class _Fail:
    """Replace ``owner.name`` by a function that raises ``exc`` on call number ``at``."""

    def __init__(self, monkeypatch, owner, name, exc, at=1):
        self.calls = 0
        original = getattr(owner, name)

        def failing(*args, **kwargs):
            self.calls += 1
            if self.calls >= at:
                raise exc("injected inside fit")
            return original(*args, **kwargs)

        monkeypatch.setattr(owner, name, failing)


# name: (factory, kind, where to inject: (owner, attribute, call number), iterative)
CASES = {
    "SparseDKMRegressor": (
        lambda: SparseDKMRegressor(n_inducing=6, max_iter=5, random_state=0, device="cpu"),
        "regressor", (torch.optim.Adam, "step", 3)),
    "SparseDKMClassifier": (
        lambda: SparseDKMClassifier(n_inducing=6, max_iter=5, random_state=0, device="cpu"),
        "classifier", (torch.optim.Adam, "step", 3)),
    "EL2NScorer": (lambda: _scorer(EL2NScorer), "scorer", (NeuralNet, "train_step", 5)),
    "GraNdScorer": (lambda: _scorer(GraNdScorer), "scorer", (NeuralNet, "train_step", 5)),
    "ForgettingScorer": (lambda: _scorer(ForgettingScorer), "scorer",
                         (NeuralNet, "train_step", 5)),
    "DataDietClassifier": (
        lambda: DataDietClassifier(scorer=_scorer(), keep_fraction=0.7, random_state=0),
        "classifier", (NeuralNet, "train_step", 5)),
    "DataDietSampler": (
        lambda: DataDietSampler(scorer=_scorer(), keep_fraction=0.7, random_state=0),
        "sampler", (NeuralNet, "train_step", 5)),
    "NTKRegressor": (lambda: NTKRegressor(device="cpu"), "regressor",
                     (_linalg._kernel_ridge, "cho_solve", 1)),
    "NTKClassifier": (lambda: NTKClassifier(device="cpu"), "classifier",
                      (_linalg._kernel_ridge, "cho_solve", 1)),
    "RandomFeatures": (lambda: RandomFeatures(8, device="cpu", random_state=0), "transformer",
                       (torch, "randn", 1)),
    "RandomFeatureRegressor": (
        lambda: RandomFeatureRegressor(8, device="cpu", random_state=0), "regressor",
        (_linalg, "ridge_coef", 1)),  # alpha="auto": the grid path ends in ridge_coef
    "RandomFeatureClassifier": (
        lambda: RandomFeatureClassifier(8, device="cpu", random_state=0), "classifier",
        (_linalg, "ridge_coef", 1)),
    "PFNRegressor": (lambda: PFNRegressor(2, device="cpu", random_state=0), "regressor",
                     (pfn_estimator, "check_random_state", 1)),
    "PFNClassifier": (lambda: PFNClassifier(2, device="cpu", random_state=0), "classifier",
                      (pfn_estimator, "check_random_state", 1)),
}


def _fit(est, kind, second=False):
    Xf = X2 if second else X
    if kind == "transformer":
        return est.fit(Xf)
    y = (Y2_REG if second else Y_REG) if kind == "regressor" else (Y2_CLF if second else Y_CLF)
    return est.fit(Xf, y)


def _output(est, kind):
    if kind == "regressor":
        return est.predict(X)
    if kind == "classifier":
        return est.decision_function(X) if not hasattr(est, "predict_proba") \
            else est.predict_proba(X)
    if kind == "transformer":
        return est.transform(X)
    if kind == "scorer":
        return est.score_samples(X, Y_CLF)
    if kind == "sampler":
        return est.sample_indices_
    raise AssertionError(kind)


def _snapshot(est):
    return {k: id(v) for k, v in est.__dict__.items()}


@pytest.mark.parametrize("exc", [KeyboardInterrupt, RuntimeError])
@pytest.mark.parametrize("name", list(CASES))
def test_interrupted_fit_leaves_the_estimator_as_it_was(name, exc, monkeypatch):
    factory, kind, (owner, attr, at) = CASES[name]

    # an interrupted first fit: still unfitted, nothing added
    est = factory()
    before = _snapshot(est)
    with monkeypatch.context() as m:
        fail = _Fail(m, owner, attr, exc, at)
        with pytest.raises(exc, match="injected inside fit"):
            _fit(est, kind)
        assert fail.calls >= at  # the failure did happen inside training
    assert _snapshot(est) == before
    with pytest.raises(NotFittedError):
        check_is_fitted(est)

    # an interrupted refit: the previous fit whole (the very same fitted objects)
    _fit(est, kind)
    fitted = _snapshot(est)
    reference = np.array(_output(est, kind), copy=True)
    with monkeypatch.context() as m:
        _Fail(m, owner, attr, exc, at)
        with pytest.raises(exc, match="injected inside fit"):
            _fit(est, kind, second=True)
    assert _snapshot(est) == fitted
    np.testing.assert_array_equal(_output(est, kind), reference)


def test_every_public_estimator_is_covered():
    from test_common import ESTIMATORS

    assert {type(e).__name__ for e in ESTIMATORS} == set(CASES)


@pytest.mark.parametrize("cls", [EL2NScorer, GraNdScorer, ForgettingScorer])
def test_keyboard_interrupt_stops_the_whole_scoring(cls, monkeypatch):
    # skorch's NeuralNet.fit catches KeyboardInterrupt and returns as if training had ended:
    # without the re-raise the scorer would go on to train its next networks.
    calls = []
    original = NeuralNet.train_step

    def step(self, *args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return original(self, *args, **kwargs)

    monkeypatch.setattr(NeuralNet, "train_step", step)
    scorer = _scorer(cls)
    with pytest.raises(KeyboardInterrupt):
        scorer.fit(X, Y_CLF)
    assert len(calls) == 2  # no training step after the interrupt: no further network
    assert not hasattr(scorer, "scores_")
    assert not hasattr(scorer, "estimators_")
