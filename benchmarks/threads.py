"""Where torch's intra-op threads help and where they hurt: the measurement behind the policy.

Times representative pieces of the package's work with one thread and with torch's default
thread count (the number of cores), on an otherwise idle machine and with a busy process beside
it (``python -c 'while True: pass'``, started and killed by this script), and prints, per
workload, ``default / one thread`` (> 1 means the default threads are slower). Every ratio
compares timings taken in the same run, interleaved. The workloads:

- small ops (what training does): SparseDKM epochs, one data-diet scorer network, PFN predict;
- large ops: an NTK kernel, a Cholesky solve and an eigendecomposition of a few thousand rows,
  a random-feature ridge fit.

The policy in :mod:`overparam_sklearn._backend` (``thread_limit``) follows these numbers.

Run (default environment: no thread variables; results are printed, nothing is written)::

    nice -n 10 python benchmarks/threads.py            # about 3 minutes on 2 cores
"""

import argparse
import os
import platform
import subprocess
import sys
import time

import numpy as np
import torch
from threadpoolctl import threadpool_limits


def _workloads(quick):
    from sklearn.datasets import load_diabetes, load_digits

    import overparam_sklearn as ops
    from overparam_sklearn import _linalg
    from overparam_sklearn.kernels import ntk_kernel

    rng = np.random.default_rng(0)
    Xd, yd = load_diabetes(return_X_y=True)
    Xd = (Xd - Xd.mean(0)) / Xd.std(0)
    Xg, yg = load_digits(return_X_y=True)
    Xg = Xg / 16.0
    n_big = 1500 if quick else 3000
    Xk = torch.as_tensor(rng.normal(size=(n_big, 32)))
    K = ntk_kernel(Xk, n_hidden=3)
    K.diagonal().add_(1e-3)
    Xr = rng.normal(size=(4000, 16))
    yr = np.sin(Xr[:, 0])
    pfn = ops.PFNRegressor(device="cpu", random_state=0).fit(Xd[:300], yd[:300])

    def dkm():
        ops.SparseDKMRegressor(max_iter=3, device="cpu", random_state=0,
                               n_threads=_current()).fit(Xd, yd)

    def scorer():
        ops.EL2NScorer(n_estimators=1, score_epoch=3, device="cpu", random_state=0,
                       n_threads=_current()).fit(Xg, yg)

    def pfn_predict():
        pfn.set_params(n_threads=_current()).predict(Xd[300:])

    def kernel():
        ntk_kernel(Xk, n_hidden=3)

    def cholesky():
        torch.linalg.cholesky(K)

    def eigh_scipy():
        _linalg._eigh_psd(K, "K")

    def rf_ridge():
        ops.RandomFeatureRegressor(n_components=1000, alpha=np.logspace(-3, 3, 7),
                                   random_state=0, device="cpu",
                                   n_threads=_current()).fit(Xr, yr)

    return [
        ("small: SparseDKM, 3 epochs on diabetes", dkm),
        ("small: EL2N scorer, 1 net x 3 epochs on digits", scorer),
        ("small: PFN predict, 142 queries", pfn_predict),
        (f"large: NTK kernel {n_big} x {n_big}, 3 hidden", kernel),
        (f"large: torch Cholesky {n_big}", cholesky),
        (f"large: scipy eigh {n_big} (OpenBLAS)", eigh_scipy),
        ("large: RF ridge n=4000, N=1000, 7 alphas", rf_ridge),
    ]


_THREADS = [None]


def _current():
    return _THREADS[0]


def _time(fn, threads, repeats):
    """Best of ``repeats`` with torch and BLAS limited to ``threads``."""
    saved = torch.get_num_threads()
    _THREADS[0] = threads
    best = np.inf
    try:
        torch.set_num_threads(threads)
        with threadpool_limits(limits=threads):
            for _ in range(repeats):
                start = time.perf_counter()
                fn()
                best = min(best, time.perf_counter() - start)
    finally:
        torch.set_num_threads(saved)
    return best


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--quick", action="store_true", help="smaller large-op sizes")
    args = parser.parse_args(argv)
    cores = os.cpu_count()
    default = torch.get_num_threads()
    print(f"python {platform.python_version()}, torch {torch.__version__}, cores {cores}, "
          f"torch default threads {default}, OMP_NUM_THREADS="
          f"{os.environ.get('OMP_NUM_THREADS')}, MKL_NUM_THREADS="
          f"{os.environ.get('MKL_NUM_THREADS')}, load average {os.getloadavg()[0]:.1f}")
    work = _workloads(args.quick)
    for _, fn in work:  # warm-up (first-call costs)
        _time(fn, 1, 1)
    rows = []
    print(f"load average before timing: {os.getloadavg()[0]:.1f}", flush=True)
    for busy in (False, True):
        proc = None
        if busy:
            proc = subprocess.Popen([sys.executable, "-c", "while True: pass"])
            time.sleep(0.5)
        try:
            for name, fn in work:
                one = _time(fn, 1, args.repeats)
                many = _time(fn, default, args.repeats)
                rows.append((name, busy, one, many))
                print(f"{'busy' if busy else 'idle'}  {name:<48} 1 thread {one:7.3f} s  "
                      f"{default} threads {many:7.3f} s  ratio {many / one:5.2f}", flush=True)
        finally:
            if proc is not None:
                proc.kill()
                proc.wait()
    print("\nratio = time with the default threads / time with one thread (> 1: threads hurt)")
    return rows


if __name__ == "__main__":
    main()
