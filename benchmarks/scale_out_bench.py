"""Scale-out speed-up: a data-diet scorer and a GridSearchCV, sequential vs a 2-worker cluster.

Times, with every process single-threaded (``OMP_NUM_THREADS=1`` and ``torch.set_num_threads(1)``
in the workers too):

* ``EL2NScorer(n_estimators=4, score_epoch=10)`` on the digits (1,797 x 64): ``n_jobs=1``,
  ``n_jobs=2`` (joblib's default process backend) and ``joblib.parallel_backend("dask")`` on a
  ``dask.distributed.LocalCluster(n_workers=2, threads_per_worker=1)`` (worker processes);
* ``GridSearchCV(NTKRegressor(...), 8 candidates, cv=3)`` on 1,500 rows, sequential and on the
  same cluster.

Results are checked to be identical to the sequential ones; the speed-up is sequential wall time
over parallel wall time (cluster start-up excluded, reported apart). The load average is printed:
on a shared machine the speed-up is bounded by the cores actually free.

Usage::

    OMP_NUM_THREADS=1 nice -n 10 python benchmarks/scale_out_bench.py
"""

import os
import sys
import time
import warnings
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def _timed(fn):
    start = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - start


def main():
    import joblib
    import torch
    from dask.distributed import Client, LocalCluster
    from sklearn.datasets import load_digits
    from sklearn.model_selection import GridSearchCV

    from overparam_sklearn import EL2NScorer, NTKRegressor

    torch.set_num_threads(1)
    print(f"load average at start: {os.getloadavg()}; cpus: {os.cpu_count()}; "
          f"OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS')}", flush=True)
    X, y = load_digits(return_X_y=True)
    X = X / 16.0
    kw = dict(n_estimators=4, score_epoch=10, device="cpu", random_state=0)
    rng = np.random.default_rng(0)
    Xr = rng.normal(size=(1500, 8))
    yr = np.sin(Xr[:, 0]) + Xr[:, 1] * Xr[:, 2] + 0.1 * rng.normal(size=1500)
    grid = {"alpha": [1e-3, 1e-2, 1e-1, 1.0], "n_hidden": [1, 3]}

    def search(n_jobs):
        return GridSearchCV(NTKRegressor(device="cpu"), grid, cv=3, n_jobs=n_jobs).fit(Xr, yr)

    ref, t_seq = _timed(lambda: EL2NScorer(**kw).fit(X, y))
    print(f"EL2N sequential: {t_seq:.1f} s", flush=True)
    two, t_two = _timed(lambda: EL2NScorer(n_jobs=2, **kw).fit(X, y))
    assert np.array_equal(two.scores_, ref.scores_)
    print(f"EL2N n_jobs=2 (loky, includes starting 2 processes): {t_two:.1f} s, "
          f"speed-up {t_seq / t_two:.2f}", flush=True)
    gs_ref, g_seq = _timed(lambda: search(None))
    print(f"GridSearchCV sequential: {g_seq:.1f} s", flush=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        start = time.perf_counter()
        with LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                          dashboard_address=None,
                          env={"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
                               "OPENBLAS_NUM_THREADS": "1"}) as cluster, Client(cluster):
            print(f"LocalCluster(2 workers) up in {time.perf_counter() - start:.1f} s",
                  flush=True)
            with joblib.parallel_backend("dask"):
                _timed(lambda: EL2NScorer(**dict(kw, n_estimators=2, score_epoch=1)).fit(X, y))
                dist, t_dask = _timed(lambda: EL2NScorer(**kw).fit(X, y))
                gs, g_dask = _timed(lambda: search(2))
    assert np.array_equal(dist.scores_, ref.scores_)
    assert gs.best_params_ == gs_ref.best_params_
    assert np.array_equal(gs.cv_results_["mean_test_score"], gs_ref.cv_results_["mean_test_score"])
    print(f"EL2N on the dask cluster: {t_dask:.1f} s, speed-up {t_seq / t_dask:.2f} "
          "(identical scores)")
    print(f"GridSearchCV on the dask cluster: {g_dask:.1f} s, speed-up {g_seq / g_dask:.2f} "
          "(identical cv_results_)")
    print(f"load average at end: {os.getloadavg()}")


if __name__ == "__main__":
    main()
