"""scikit-learn's estimator checks on every public estimator, found automatically.

Every class exported in ``overparam_sklearn.__all__`` that derives from ``BaseEstimator`` runs
through ``parametrize_with_checks`` and ``check_param_validation``. ``CHECK_PARAMS`` gives fast
settings for the checks (small networks, few epochs); ``EXPECTED_FAILED_CHECKS`` lists the checks
an estimator cannot pass, each with the reason.
"""

import inspect

import pytest
from sklearn.base import BaseEstimator, clone
from sklearn.utils.estimator_checks import check_param_validation, parametrize_with_checks

import overparam_sklearn

# Fast settings for the checks, by class name.
CHECK_PARAMS = {
    "RandomFeatures": dict(n_components=20, device="cpu"),
    "RandomFeatureRegressor": dict(n_components=20, device="cpu"),
    "RandomFeatureClassifier": dict(n_components=20, device="cpu"),
    "PFNRegressor": dict(n_estimators=2, device="cpu"),
    "PFNClassifier": dict(n_estimators=2, device="cpu"),
    "EL2NScorer": dict(n_estimators=2, score_epoch=2, device="cpu",
                       module_params={"hidden_layer_sizes": (8,)}),
    "GraNdScorer": dict(n_estimators=2, score_epoch=2, device="cpu",
                        module_params={"hidden_layer_sizes": (8,)}),
    "ForgettingScorer": dict(n_estimators=2, score_epoch=3, device="cpu",
                             module_params={"hidden_layer_sizes": (8,)}),
    "SparseDKMRegressor": dict(n_hidden=2, n_inducing=10, max_iter=15, learning_rate=0.1),
    "SparseDKMClassifier": dict(n_hidden=2, n_inducing=10, max_iter=15, learning_rate=0.1,
                                n_mc_samples=4),
}

# {class name: {check name: reason}}; keep this short and every reason true.
EXPECTED_FAILED_CHECKS = {
}

# Meta-estimators need a base estimator to be constructed: {class name: callable -> instance}.
CHECK_FACTORIES = {
    "DataDietClassifier": lambda: _data_diet_factory("DataDietClassifier"),
    "DataDietSampler": lambda: _data_diet_factory("DataDietSampler"),
}


def _data_diet_factory(name):
    from overparam_sklearn import EL2NScorer

    scorer = EL2NScorer(n_estimators=1, score_epoch=2, device="cpu",
                        module_params={"hidden_layer_sizes": (8,)})
    return getattr(overparam_sklearn, name)(scorer=scorer, keep_fraction=0.7)


def _public_estimators():
    out = []
    for name in sorted(overparam_sklearn.__all__):
        obj = getattr(overparam_sklearn, name)
        if inspect.isclass(obj) and issubclass(obj, BaseEstimator) and not inspect.isabstract(obj):
            if obj.__module__.startswith("sklearn."):
                continue
            if "kernels" in obj.__module__:
                continue  # gaussian_process kernels are tested in test_kernels_sklearn.py
            out.append(obj)
    return out


def _instances():
    instances = []
    for cls in _public_estimators():
        name = cls.__name__
        if name in CHECK_FACTORIES:
            instances.append(CHECK_FACTORIES[name]())
        else:
            instances.append(cls(**CHECK_PARAMS.get(name, {})))
    return instances


def _expected_failed(estimator):
    return EXPECTED_FAILED_CHECKS.get(type(estimator).__name__, {})


ESTIMATORS = _instances()


def test_every_public_estimator_is_checked():
    # The discovery above filters __all__ by class; independently, every public name with a
    # ``fit`` is an estimator and must be checked here (exactly those, none twice).
    expected = sorted(name for name in overparam_sklearn.__all__
                      if callable(getattr(getattr(overparam_sklearn, name), "fit", None)))
    found = sorted(type(est).__name__ for est in ESTIMATORS)
    assert found == expected
    assert len(found) == len(expected) >= 14  # 14 public estimators on 2026-12-02


@parametrize_with_checks(ESTIMATORS, expected_failed_checks=_expected_failed)
def test_sklearn_compatible_estimator(estimator, check):
    check(estimator)


@pytest.mark.parametrize("estimator", ESTIMATORS, ids=lambda e: type(e).__name__)
def test_param_validation(estimator):
    check_param_validation(type(estimator).__name__, clone(estimator))
