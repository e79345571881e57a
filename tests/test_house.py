"""House rules that span the package: one vocabulary, numpy fitted state, one-way layering.

Conventions (doc/changes.rst, DESIGN.md): depth is ``n_hidden``, the nonlinearity
``activation``, the ensemble size ``n_estimators``; ``kernel`` is never a depth or nonlinearity;
``dtype`` defaults are spelled out, ``"float64"`` for kernel solves and ``"float32"`` for neural
networks.
"""

import inspect

import numpy as np
import pytest
from sklearn.base import BaseEstimator

import overparam_sklearn

# Estimators whose fit trains a neural network (dtype default float32); every other estimator
# with a dtype solves with a kernel (float64).
NEURAL = {"EL2NScorer", "GraNdScorer", "ForgettingScorer", "PFNRegressor", "PFNClassifier"}
# Transformers whose dtype=None means "as the input" (scikit-learn's preserves_dtype).
FOLLOW_INPUT = {"RandomFeatures"}
# Retired spellings of concepts that have one name (doc/changes.rst).
RETIRED = {"n_layers": "n_hidden", "n_models": "n_estimators", "depth": "n_hidden",
           "nonlinearity": "activation", "ridge": "alpha", "reg": "alpha"}


def _estimator_classes():
    out = []
    for name in overparam_sklearn.__all__:
        obj = getattr(overparam_sklearn, name)
        if inspect.isclass(obj) and issubclass(obj, BaseEstimator):
            out.append(obj)
    return out


@pytest.mark.parametrize("cls", _estimator_classes(), ids=lambda c: c.__name__)
def test_one_vocabulary(cls):
    params = inspect.signature(cls.__init__).parameters
    for old, new in RETIRED.items():
        assert old not in params, f"{cls.__name__} spells {new!r} as {old!r}"
    if "dtype" in params:
        default = params["dtype"].default
        if cls.__name__ in FOLLOW_INPUT:
            expected = None
        elif cls.__name__ in NEURAL:
            expected = "float32"
        else:
            expected = "float64"
        assert default == expected, f"{cls.__name__}(dtype={default!r}), expected {expected!r}"
    if "kernel" in params:
        # "kernel" is an sklearn Kernel object or NTK's "ntk" / "nngp" training mode, never a
        # nonlinearity (that is "activation").
        default = params["kernel"].default
        assert default in ("ntk", "nngp") or not isinstance(default, str), cls.__name__


def test_fitted_arrays_users_read_are_numpy():
    from overparam_sklearn import NTKClassifier, NTKRegressor, SparseDKMClassifier

    rng = np.random.default_rng(0)
    X = rng.normal(size=(30, 3))
    y = X[:, 0]
    labels = (X[:, 1] > 0).astype(int)
    for est in (NTKRegressor(device="cpu").fit(X, y), NTKClassifier(device="cpu").fit(X, labels)):
        assert isinstance(est.dual_coef_, np.ndarray)
        assert isinstance(est.X_fit_, np.ndarray)
        np.testing.assert_array_equal(est.X_fit_, X)
    dkm = SparseDKMClassifier(n_inducing=5, max_iter=1, device="cpu", random_state=0)
    dkm.fit(X, labels)
    assert isinstance(dkm.predict_draws_, np.ndarray)


def test_pfn_dtype_float64_agrees_with_float32():
    from overparam_sklearn import PFNRegressor

    rng = np.random.RandomState(0)
    X = rng.uniform(-2, 2, size=(40, 2))
    y = np.sin(X[:, 0]) + 0.1 * rng.randn(40)
    p32 = PFNRegressor(n_estimators=2, device="cpu", random_state=0).fit(X, y).predict(X[:5])
    p64 = PFNRegressor(n_estimators=2, device="cpu", dtype="float64",
                       random_state=0).fit(X, y).predict(X[:5])
    # the same network in double precision: float32 round-off apart (measured 4e-7)
    np.testing.assert_allclose(p64, p32, atol=1e-4)
    assert not np.array_equal(p64, p32)  # it really ran in another precision
