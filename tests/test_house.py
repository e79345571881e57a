"""House rules that span the package: one vocabulary, numpy fitted state, one-way layering.

Conventions (doc/changes.rst, DESIGN.md): depth is ``n_hidden``, the nonlinearity
``activation``, the ensemble size ``n_estimators``; ``kernel`` is never a depth or nonlinearity;
``dtype`` defaults are spelled out, ``"float64"`` for kernel solves and ``"float32"`` for neural
networks.
"""

import ast
import inspect
from pathlib import Path

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


# ------------------------------------------------------------------------------------ layering
# DESIGN.md: data flows one way. _validation (input checks) is the floor, then _backend, _linalg
# and kernels/, each may use the ones before it; each method (an estimator module or package) may
# use all four and its own files, never another method; other private top-level modules (shared
# helpers of several methods) sit between kernels/ and the methods; only the package's __init__ /
# __main__ see everything.
_PACKAGE = Path(overparam_sklearn.__file__).resolve().parent
_FLOOR = {"_validation": 0, "_backend": 1, "_linalg": 2, "kernels": 3}


def _module_name(path):
    parts = list(path.relative_to(_PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _package_imports():
    """{module: set of overparam_sklearn modules it imports (anywhere in the file)}."""
    modules = {_module_name(p): p for p in _PACKAGE.rglob("*.py")}
    graph = {}
    for name, path in modules.items():
        is_pkg = path.name == "__init__.py"
        base = name.split(".") if is_pkg else name.split(".")[:-1]
        deps = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom):
                if node.level:
                    root = ".".join(base[: len(base) - node.level + 1] + ([node.module]
                                    if node.module else []))
                else:
                    root = node.module or ""
                # "from pkg import sub" imports the submodule; "from pkg import name" the package
                targets = [f"{root}.{a.name}" if f"{root}.{a.name}" in modules else root
                           for a in node.names]
            elif isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            else:
                continue
            deps |= {t for t in targets if t in modules and t != name}
        graph[name] = deps
    return graph


def _group(module):
    """(rank, group): the layer a module belongs to and the unit it may import freely within."""
    parts = module.split(".")
    if len(parts) == 1 or parts[1] in ("__main__",):
        return 5, "top"
    head = parts[1]
    if head in _FLOOR:
        return _FLOOR[head], head
    if head.startswith("_"):
        return 3.5, head  # other shared private modules: above kernels/, below the methods
    return 4, head  # a method: ntk, random_features, theory, pfn, data_diet, dkm


def test_layering_is_one_way():
    bad = []
    for module, deps in _package_imports().items():
        rank, group = _group(module)
        for dep in deps:
            dep_rank, dep_group = _group(dep)
            if dep_group != group and dep_rank >= rank:
                bad.append(f"{module} imports {dep}")
    assert not bad, "imports against the layering (DESIGN.md):\n" + "\n".join(sorted(bad))


def test_no_import_cycles():
    graph = _package_imports()
    state, stack, cycles = {}, [], []

    def visit(node):
        state[node] = "open"
        stack.append(node)
        for dep in graph[node]:
            if state.get(dep) == "open":
                cycles.append(stack[stack.index(dep):] + [dep])
            elif dep not in state:
                visit(dep)
        stack.pop()
        state[node] = "done"

    for node in graph:
        if node not in state:
            visit(node)
    # a package importing its own submodules (its __init__) is not a cycle unless they import it
    real = [c for c in cycles if not all(c[0].startswith(m) or m.startswith(c[0]) for m in c)]
    assert not real, "import cycles: " + "; ".join(" -> ".join(c) for c in real)
