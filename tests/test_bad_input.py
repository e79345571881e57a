"""Every public estimator and kernel function against every kind of bad input (issue 14).

The matrix is ``ENTRIES`` (18 entry points: 14 estimators, 2 kernel functions, 2 kernel objects)
x ``CASES`` (14 kinds of bad input). Each applicable cell asserts one of two outcomes:

* ``"error"``: a ``ValueError`` / ``TypeError`` whose message names the problem (a regex), raised
  by our code or scikit-learn's validation, never a torch or numpy internal error;
* ``"result"``: a finite result that is also correct (a closed form, a scale invariance, or the
  constant a constant target must give).

A cell is not applicable when the input kind has no meaning for the entry point (a target case
for a kernel function or an unsupervised transformer, "single class" for a regressor,
"constant y" for a classifier); ``NOT_APPLICABLE`` lists them and
``test_matrix_covers_every_cell`` checks that nothing else is left out.
"""

import re

import numpy as np
import pytest
import scipy.sparse as sp
import torch
from sklearn.base import clone

import overparam_sklearn as ops
from overparam_sklearn import (
    DataDietClassifier,
    DataDietSampler,
    EL2NScorer,
    ForgettingScorer,
    GraNdScorer,
    NNGPKernel,
    NTKClassifier,
    NTKKernel,
    NTKRegressor,
    PFNClassifier,
    PFNRegressor,
    RandomFeatureClassifier,
    RandomFeatureRegressor,
    RandomFeatures,
    SparseDKMClassifier,
    SparseDKMRegressor,
    nngp_kernel,
    ntk_kernel,
)

RNG = np.random.RandomState(0)
X = RNG.normal(size=(24, 3))
Y_REG = X[:, 0] - 0.5 * X[:, 1] + 0.1 * RNG.normal(size=24)
Y_CLF = (X[:, 0] > 0).astype(int)

_SMALL_MLP = {"hidden_layer_sizes": (4,)}


def _scorer(cls=EL2NScorer, **kw):
    params = dict(device="cpu", random_state=0, module_params=dict(_SMALL_MLP), lr=1e-2,
                  batch_size=8)
    params.update(kw)
    est = cls(**params)
    return est.set_params(n_estimators=1, score_epoch=1)  # one network, one epoch


# name -> (factory, kind). kind: "regressor", "classifier", "transformer", "scorer",
# "sampler", "kernel_function", "kernel_object".
ENTRIES = {
    "NTKRegressor": (lambda: NTKRegressor(device="cpu"), "regressor"),
    "NTKClassifier": (lambda: NTKClassifier(device="cpu"), "classifier"),
    "RandomFeatures": (lambda: RandomFeatures(10, device="cpu", random_state=0), "transformer"),
    "RandomFeatureRegressor": (
        lambda: RandomFeatureRegressor(10, device="cpu", random_state=0), "regressor"),
    "RandomFeatureClassifier": (
        lambda: RandomFeatureClassifier(10, device="cpu", random_state=0), "classifier"),
    "PFNRegressor": (lambda: PFNRegressor(1, device="cpu", random_state=0), "regressor"),
    "PFNClassifier": (lambda: PFNClassifier(1, device="cpu", random_state=0), "classifier"),
    "EL2NScorer": (lambda: _scorer(EL2NScorer), "scorer"),
    "GraNdScorer": (lambda: _scorer(GraNdScorer), "scorer"),
    "ForgettingScorer": (lambda: _scorer(ForgettingScorer), "scorer"),
    "DataDietClassifier": (
        lambda: DataDietClassifier(scorer=_scorer(), keep_fraction=0.7, random_state=0),
        "classifier"),
    "DataDietSampler": (
        lambda: DataDietSampler(scorer=_scorer(), keep_fraction=0.7, random_state=0),
        "sampler"),
    "SparseDKMRegressor": (
        lambda: SparseDKMRegressor(n_inducing=5, max_iter=2, random_state=0, device="cpu"),
        "regressor"),
    "SparseDKMClassifier": (
        lambda: SparseDKMClassifier(n_inducing=5, max_iter=2, random_state=0, device="cpu"),
        "classifier"),
    "nngp_kernel": (lambda: nngp_kernel, "kernel_function"),
    "ntk_kernel": (lambda: ntk_kernel, "kernel_function"),
    "NNGPKernel": (lambda: NNGPKernel(), "kernel_object"),
    "NTKKernel": (lambda: NTKKernel(), "kernel_object"),
}

CASES = ["nan", "inf", "complex", "sparse", "object", "zero_rows", "zero_features", "one_d",
         "wrong_width", "beyond_float32", "beyond_float64_kernel", "single_class", "constant_y",
         "bad_hyperparameters"]

_SUPERVISED = {"regressor", "classifier", "scorer", "sampler"}


def _applicable(kind, case):
    if case == "single_class":
        return kind in {"classifier", "scorer", "sampler"}
    if case == "constant_y":
        return kind == "regressor"
    return True


NOT_APPLICABLE = [(name, case) for name, (_, kind) in ENTRIES.items() for case in CASES
                  if not _applicable(kind, case)]
CELLS = [(name, case) for name in ENTRIES for case in CASES if _applicable(ENTRIES[name][1], case)]


# -- helpers -------------------------------------------------------------------------------------
def _y_for(kind):
    return Y_REG if kind == "regressor" else Y_CLF


def _fit(est, kind, X_fit, y=None):
    if kind in _SUPERVISED:
        return est.fit(X_fit, _y_for(kind) if y is None else y)
    return est.fit(X_fit)


def _output(est, kind, X_new):
    """What the fitted entry point gives for new rows (the method a user calls)."""
    if kind == "regressor":
        return est.predict(X_new)
    if kind == "classifier":
        if hasattr(est, "predict_proba"):
            return est.predict_proba(X_new)
        return est.decision_function(X_new)
    if kind == "transformer":
        return est.transform(X_new)
    if kind == "scorer":
        return est.score_samples(X_new, Y_CLF[: len(X_new)])
    if kind == "sampler":
        return est.fit_resample(X_new, Y_CLF[: len(X_new)])[0]
    raise AssertionError(kind)


def _evaluate(fn, kind, X1, X2=None):
    if kind == "kernel_function":
        return fn(X1, X2)
    return fn(X1, X2)


def _expect_error(call, pattern, types=(ValueError, TypeError)):
    with pytest.raises(types) as info:
        call()
    message = str(info.value)
    assert re.search(pattern, message, re.IGNORECASE), message
    # never a torch internal error passed through
    assert "torch." not in message and "Traceback" not in message, message


def _finite(out):
    out = np.asarray(out.detach() if isinstance(out, torch.Tensor) else out, dtype=np.float64)
    assert np.isfinite(out).all()
    return out


# The message each input kind must produce (ours or scikit-learn's validation).
PATTERNS = {
    "nan": r"nan",
    "inf": r"infinity|inf",
    "complex": r"complex",
    "sparse": r"sparse",
    "object": r"convert|real numbers|numeric|dtype",
    "zero_rows": r"0 sample",
    "zero_features": r"0 feature",
    "one_d": r"2-?D|reshape",
    "wrong_width": r"features",
    "single_class": r"at least 2 classes in the data, but the data contain only one class",
}


def _bad_X(case):
    if case == "nan":
        Xb = X.copy()
        Xb[3, 1] = np.nan
        return Xb
    if case == "inf":
        Xb = X.copy()
        Xb[0, 0] = np.inf
        return Xb
    if case == "complex":
        return X + 1j
    if case == "sparse":
        return sp.csr_matrix(X)
    if case == "object":
        return np.array([["a", "b", "c"]] * len(X), dtype=object)
    if case == "zero_rows":
        return X[:0]
    if case == "zero_features":
        return X[:, :0]
    raise AssertionError(case)


# Invalid settings per entry point (each must be refused with a message naming the parameter).
BAD_HYPERPARAMETERS = {
    "NTKRegressor": [({"n_hidden": -1}, "n_hidden"), ({"alpha": -1.0}, "alpha"),
                     ({"activation": "nope"}, "activation")],
    "NTKClassifier": [({"w_std": 0.0}, "w_std"), ({"kernel": "rbf"}, "kernel")],
    "RandomFeatures": [({"n_components": 0}, "n_components"), ({"activation": "nope"},
                                                              "activation")],
    "RandomFeatureRegressor": [({"alpha": -1.0}, "alpha"), ({"alpha": []}, "alpha")],
    "RandomFeatureClassifier": [({"n_components": -3}, "n_components")],
    "PFNRegressor": [({"n_estimators": 0}, "n_estimators"), ({"weights": "/no/such.json"},
                                                            "does not exist")],
    "PFNClassifier": [({"input_transform": "log"}, "input_transform")],
    "EL2NScorer": [({"lr": -1.0}, "lr"),
                   ({"module_params": {"hidden_layer_sizes": (0,)}}, "hidden_layer_sizes"),
                   ({"module_params": {"hidden_layer_sizes": (-1,)}}, "hidden_layer_sizes")],
    "GraNdScorer": [({"batch_size": 0}, "batch_size"),
                    ({"module_params": {"hidden_layer_sizes": (3, 0)}}, "hidden_layer_sizes")],
    "ForgettingScorer": [({"score_epoch": -1}, "score_epoch"),
                         ({"module_params": {"hidden_layer_sizes": "wide"}},
                          "hidden_layer_sizes")],
    "DataDietClassifier": [({"keep_fraction": 1.5}, "keep_fraction")],
    "DataDietSampler": [({"keep": "middle"}, "keep"), ({"n_bins": 0}, "n_bins")],
    "SparseDKMRegressor": [({"learning_rate": -1.0}, "learning_rate"), ({"nu": -1.0}, "nu")],
    "SparseDKMClassifier": [({"max_iter": -1}, "max_iter")],
    "nngp_kernel": [({"n_hidden": -1}, "n_hidden"), ({"w_std": -1.0}, "w_std"),
                    ({"activation": "nope"}, "activation")],
    "ntk_kernel": [({"parameterization": "mean_field"}, "parameterization"),
                   ({"b_std": float("nan")}, "b_std")],
    "NNGPKernel": [({"n_hidden": -1}, "n_hidden"), ({"activation": "nope"}, "activation")],
    "NTKKernel": [({"w_std": -2.0}, "w_std")],
}


# -- the matrix ----------------------------------------------------------------------------------
@pytest.mark.parametrize(("name", "case"), CELLS, ids=[f"{n}-{c}" for n, c in CELLS])
def test_bad_input(name, case):
    factory, kind = ENTRIES[name]
    if kind in {"kernel_function", "kernel_object"}:
        _check_kernel_cell(name, factory(), kind, case)
    else:
        _check_estimator_cell(name, factory(), kind, case)


def _check_estimator_cell(name, est, kind, case):
    if case in {"nan", "inf", "complex", "sparse", "object", "zero_rows", "zero_features"}:
        Xb = _bad_X(case)
        y = _y_for(kind)[: Xb.shape[0]]
        _expect_error(lambda: _fit(clone(est), kind, Xb, y), PATTERNS[case])
        if case not in {"zero_rows", "zero_features"}:
            fitted = _fit(clone(est), kind, X)
            if kind != "sampler":  # a sampler has no method for new rows without fitting
                _expect_error(lambda: _output(fitted, kind, Xb), PATTERNS[case])
    elif case == "one_d":
        _expect_error(lambda: _fit(clone(est), kind, X[:, 0]), PATTERNS[case])
        if kind != "sampler":
            fitted = _fit(clone(est), kind, X)
            _expect_error(lambda: _output(fitted, kind, X[0]), PATTERNS[case])
    elif case == "wrong_width":
        if kind == "sampler":
            # a sampler's only method refits; refit on other data is legitimate
            out = _output(_fit(clone(est), kind, X), kind, X[:, :2])
            assert _finite(out).shape[1] == 2
            return
        fitted = _fit(clone(est), kind, X)
        _expect_error(lambda: _output(fitted, kind, X[:, :2]), r"2 features.*3 features")
    elif case == "beyond_float32":
        _check_beyond_float32(name, est, kind)
    elif case == "beyond_float64_kernel":
        if name == "RandomFeatures":
            # no kernel is formed: the relu features of 1e200 X are 1e200 times those of X
            out = _finite(_output(_fit(clone(est), kind, X * 1e200), kind, X * 1e200))
            ref = _output(_fit(clone(est), kind, X), kind, X)
            np.testing.assert_allclose(out, 1e200 * ref, rtol=1e-10)
            return
        _expect_error(lambda: _output(_fit(clone(est), kind, X * 1e200), kind, X * 1e200),
                      r"overflow|beyond the range|rescale")
    elif case == "single_class":
        y = np.full(len(X), 7)
        _expect_error(lambda: _fit(clone(est), kind, X, y), PATTERNS[case])
    elif case == "constant_y":
        _check_constant_y(name, est)
    elif case == "bad_hyperparameters":
        for params, pattern in BAD_HYPERPARAMETERS[name]:
            _expect_error(lambda p=params: _fit(clone(est).set_params(**p), kind, X), pattern)
    else:
        raise AssertionError(case)


# float32 computations (PFN, scorers) cannot represent 1e39; float64 ones can.
_FLOAT32_ENTRIES = {"EL2NScorer", "GraNdScorer", "ForgettingScorer", "DataDietClassifier",
                    "DataDietSampler"}


def _check_beyond_float32(name, est, kind):
    big = X * 1e39  # finite in float64, inf in float32
    if name in _FLOAT32_ENTRIES:
        _expect_error(lambda: _fit(clone(est), kind, big), r"beyond the range of float32")
        fitted = _fit(clone(est), kind, X)
        if name == "DataDietClassifier":
            # predictions come from the float64 estimator fitted on the kept rows
            _finite(_output(fitted, kind, big))
        elif kind != "sampler":
            _expect_error(lambda: _output(fitted, kind, big), r"beyond the range of float32")
        return
    if name.startswith("PFN"):
        # the PFN standardises with the training set's scale: 1e39 * X gives X's predictions
        out_big = _output(_fit(clone(est), kind, big), kind, big)
        out = _output(_fit(clone(est), kind, X), kind, X)
        np.testing.assert_allclose(_finite(out_big), out, rtol=1e-4, atol=1e-5)
        # queries beyond float32 range relative to the training set cannot be represented
        fitted = _fit(clone(est), kind, X)
        _expect_error(lambda: _output(fitted, kind, big), r"beyond the range of float32")
        return
    if name.startswith("SparseDKM"):
        est32 = clone(est).set_params(dtype="float32")
        _expect_error(lambda: _fit(est32, kind, big), r"beyond the range of float32")
        fitted32 = _fit(clone(est32), kind, X)
        _expect_error(lambda: _output(fitted32, kind, big), r"beyond the range of float32")
        # minibatch Adam on inputs of size 1e39 either converges or stops with a clear error
        try:
            out = _output(_fit(clone(est), kind, big), kind, big)
        except ValueError as exc:
            assert re.search(r"diverged|rescale|overflow", str(exc)), str(exc)
        else:
            _finite(out)
        return
    # the float64 estimators asked to compute in float32 cannot represent 1e39 either
    est32 = clone(est).set_params(dtype="float32")
    _expect_error(lambda: _output(_fit(clone(est32), kind, big), kind, big),
                  r"beyond the range of float32")
    fitted32 = _fit(clone(est32), kind, X)
    _expect_error(lambda: _output(fitted32, kind, big), r"beyond the range of float32")
    out = _finite(_output(_fit(clone(est), kind, big), kind, big))
    if name == "RandomFeatures":
        # relu features are positively homogeneous (b_std=0): phi(c x) = c phi(x)
        ref = _output(_fit(clone(est), kind, X), kind, X)
        np.testing.assert_allclose(out, 1e39 * ref, rtol=1e-10)
    elif kind == "classifier" and hasattr(est, "predict_proba"):
        np.testing.assert_allclose(out.sum(axis=1), 1.0, rtol=1e-6)


def _check_constant_y(name, est):
    c = 3.7
    y = np.full(len(X), c)
    fitted = clone(est).fit(X, y)
    X_new = RNG.normal(size=(5, 3))
    if name == "NTKRegressor":
        # without normalize_y the infinite network interpolates: the constant at the training
        # points (its prior mean 0 elsewhere); with normalize_y the constant everywhere
        np.testing.assert_allclose(fitted.predict(X), c, rtol=1e-4)
        fitted = clone(est).set_params(normalize_y=True).fit(X, y)
    mean = fitted.predict(X_new)
    np.testing.assert_allclose(_finite(mean), c, rtol=1e-9)
    if name in {"PFNRegressor", "NTKRegressor"}:
        _, std = fitted.predict(X_new, return_std=True)
        np.testing.assert_allclose(_finite(std), 0.0, atol=1e-4 if name == "NTKRegressor" else 0)


def _check_kernel_cell(name, fn, kind, case):
    if case in {"nan", "inf", "complex", "sparse", "object", "zero_rows", "zero_features"}:
        Xb = _bad_X(case)
        _expect_error(lambda: fn(Xb), PATTERNS[case])
        _expect_error(lambda: fn(X, Xb), PATTERNS[case] if case != "zero_features" else
                      r"0 feature|features")
        if case == "sparse":
            _expect_error(lambda: fn(torch.tensor(X).to_sparse()), PATTERNS[case])
    elif case == "one_d":
        _expect_error(lambda: fn(X[:, 0]), r"2-D.*reshape")
        _expect_error(lambda: fn(X, X[0]), r"2-D.*reshape")
    elif case == "wrong_width":
        _expect_error(lambda: fn(X, X[:, :2]), r"3 features but .* 2")
    elif case == "beyond_float32":
        # numpy input computes in float64: the relu NNGP without biases is homogeneous of
        # degree 2, K(cX) = c^2 K(X), with c^2 = 1e78 far beyond float32
        f = (fn if kind == "kernel_function" else None)
        if kind == "kernel_function":
            out = _finite(f(X * 1e39, b_std=0.0))
            ref = _finite(f(X, b_std=0.0))
        else:
            k = clone(fn).set_params(b_std=0.0)
            out, ref = _finite(k(X * 1e39)), _finite(k(X))
        np.testing.assert_allclose(out, 1e78 * ref, rtol=1e-10)
        # float32 tensors compute in float32: their kernel cannot hold 1e78
        Xt = torch.tensor(X * 1e20, dtype=torch.float32)
        if kind == "kernel_function":
            _expect_error(lambda: fn(Xt), r"overflows float32")
        else:  # the kernel objects compute in float64, like sklearn's kernels
            _finite(fn(Xt))
    elif case == "beyond_float64_kernel":
        for scale in (1e150, 1e200, 1e300):
            _expect_error(lambda s=scale: fn(X * s), r"overflows float64.*rescale")
            _expect_error(lambda s=scale: fn(X, X * s), r"overflows float64.*rescale")
        if kind == "kernel_object":
            _expect_error(lambda: fn(X * 1e200, eval_gradient=True), r"overflows float64")
            _expect_error(lambda: fn.diag(X * 1e200), r"overflows float64")
    elif case == "bad_hyperparameters":
        for params, pattern in BAD_HYPERPARAMETERS[name]:
            if kind == "kernel_function":
                _expect_error(lambda p=params: fn(X, **p), pattern)
            else:
                _expect_error(lambda p=params: clone(fn).set_params(**p)(X), pattern)
    else:
        raise AssertionError(case)


# Public names outside the matrix, each with the reason: they take no data matrix ``X`` of
# samples (or, for task_eigenstructure, validate it with scikit-learn's check_array).
NO_DATA_MATRIX = {
    "krr_risk": "takes a kernel spectrum; its bad input is tested in test_theory.py",
    "rf_risk": "takes a kernel spectrum; its bad input is tested in test_theory.py",
    "optimal_ridge": "takes a kernel spectrum; its bad input is tested in test_theory.py",
    "power_law_task": "takes three numbers",
    "task_eigenstructure": "a theory helper; X and y go through sklearn's check_array",
    "RiskEstimate": "a record returned by the theory functions",
    "PFNPredictiveDistribution": "a record returned by PFNRegressor.predict_distribution",
    "load_pfn": "takes a weights path, checked in test_pfn.py",
}


def test_matrix_covers_every_cell():
    public = {n for n in ops.__all__}
    assert public == set(ENTRIES) | set(NO_DATA_MATRIX), public ^ (set(ENTRIES)
                                                                   | set(NO_DATA_MATRIX))
    assert len(CELLS) + len(NOT_APPLICABLE) == len(ENTRIES) * len(CASES) == 18 * 14
    assert len(NOT_APPLICABLE) == 23  # target cases for kernels/transformer, y kinds by task
    for name in ENTRIES:
        assert name in BAD_HYPERPARAMETERS


# -- memory guards: refuse before allocating ------------------------------------------------------
@pytest.fixture
def eight_gib(monkeypatch):
    """Pretend the machine has 8 GiB free, so that the guards are tested deterministically."""
    from overparam_sklearn import _backend

    monkeypatch.setattr(_backend, "available_memory", lambda device: 8 * 2**30)


@pytest.mark.parametrize("call", [
    lambda X: NTKKernel()(X),
    lambda X: NNGPKernel()(X),
    lambda X: nngp_kernel(X),
    lambda X: ntk_kernel(X, X[:30000]),
])
def test_kernel_memory_guard_refuses_before_allocating(call, eight_gib):
    X_big = np.random.default_rng(0).normal(size=(40000, 3))
    with pytest.raises(ValueError, match=r"Not enough memory for the 40000 x \d+ N\w+ kernel.*"
                                         r"GiB.*fewer samples"):
        call(X_big)


def test_gaussian_process_memory_guard():
    # GaussianProcessRegressor(NNGPKernel()) at n=200000 needs the 200000^2 kernel and its two
    # gradient matrices (about 900 GiB): refused before anything is computed, whatever the machine
    from sklearn.gaussian_process import GaussianProcessRegressor

    X_big = np.random.default_rng(0).normal(size=(200_000, 3))
    gpr = GaussianProcessRegressor(NNGPKernel())
    with pytest.raises(ValueError, match=r"Not enough memory for the 200000 x 200000 NNGP kernel "
                                         r"and its 2 gradient matrices"):
        gpr.fit(X_big, X_big[:, 0])


def test_random_features_check_memory_before_drawing(eight_gib, monkeypatch):
    drawn = []
    original = torch.randn
    monkeypatch.setattr(torch, "randn", lambda *a, **k: drawn.append(a) or original(*a, **k))
    with pytest.raises(ValueError, match=r"Not enough memory for the 3 x 200000000 random"):
        RandomFeatures(n_components=int(2e8), device="cpu").fit(X)
    assert drawn == []  # refused before drawing
    RandomFeatures(n_components=10, device="cpu").fit(X)  # a small draw passes the guard
    assert drawn
