"""Scale-out through joblib: n_jobs and a dask.distributed cluster give identical results."""

import warnings

import joblib
import numpy as np
import pytest
from sklearn.datasets import load_digits
from sklearn.model_selection import GridSearchCV

from overparam_sklearn import EL2NScorer, ForgettingScorer, GraNdScorer, NTKRegressor

SMALL = dict(n_estimators=3, score_epoch=2, batch_size=128, device="cpu", random_state=0)


@pytest.fixture(scope="module")
def digits():
    X, y = load_digits(return_X_y=True)
    return X[:400] / 16.0, y[:400]


@pytest.fixture(scope="module")
def cluster():
    distributed = pytest.importorskip("dask.distributed")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        # threads in this process: fast to start; the tasks still pickle nothing away
        # (processes=True is what the docs' speed-up figure uses)
        with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=False,
                                      dashboard_address=None) as lc:
            with distributed.Client(lc) as client:
                yield client


@pytest.mark.parametrize("cls", [EL2NScorer, GraNdScorer, ForgettingScorer])
def test_scorer_n_jobs_equals_sequential(cls, digits):
    X, y = digits
    one = cls(**SMALL).fit(X, y)
    two = cls(n_jobs=2, **SMALL).fit(X, y)
    np.testing.assert_array_equal(two.scores_per_model_, one.scores_per_model_)
    np.testing.assert_array_equal(two.score_samples(X[:50], y[:50]),
                                  one.score_samples(X[:50], y[:50]))
    # the models differ from each other (each got its own seed)
    assert not np.array_equal(one.scores_per_model_[0], one.scores_per_model_[1])


def test_scorer_on_a_dask_cluster_equals_sequential(digits, cluster):
    X, y = digits
    expected = GraNdScorer(**SMALL).fit(X, y)
    with joblib.parallel_backend("dask"):
        distributed = GraNdScorer(**SMALL).fit(X, y)
    np.testing.assert_array_equal(distributed.scores_per_model_, expected.scores_per_model_)
    assert len(distributed.estimators_) == SMALL["n_estimators"]


def test_grid_search_on_a_dask_cluster_equals_sequential(cluster):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(120, 3))
    y = np.sin(X[:, 0]) + 0.1 * rng.normal(size=120)
    grid = {"alpha": [1e-3, 1e-1], "n_hidden": [1, 2]}
    expected = GridSearchCV(NTKRegressor(device="cpu"), grid, cv=3).fit(X, y)
    with joblib.parallel_backend("dask"):
        distributed = GridSearchCV(NTKRegressor(device="cpu"), grid, cv=3, n_jobs=2).fit(X, y)
    assert distributed.best_params_ == expected.best_params_
    np.testing.assert_array_equal(distributed.cv_results_["mean_test_score"],
                                  expected.cv_results_["mean_test_score"])
