"""NTK kernel and gradient-descent-ensemble timings: overparam_sklearn against neural-tangents.

What is timed, for each training-set size ``n`` (``d = 32`` features, a fully connected network
with 3 hidden ReLU layers, ``W_std = 1.5``, ``b_std = 0.1``, NTK parameterization, float64):

* ``kernel``: the ``n x n`` NNGP and NTK train kernels together
  (``fc_kernels(X, need_ntk=True)`` / neural-tangents' ``jax.jit(kernel_fn)(X, None,
  ("nngp", "ntk"))``, timed after a warm-up call, ``block_until_ready``);
* ``exact``: fit + predict of the converged ensemble mean (``t=None``) on ``n_test`` points
  (``NTKRegressor(t=None).fit(X, y).predict(X_test)`` / ``gradient_descent_mse_ensemble(...)``
  then ``predict_fn(t=None, x_test, get="ntk")``, Cholesky on both sides);
* ``finite_t``: the same at a finite training time ``t`` (ours: Krylov / Lanczos; neural-tangents:
  an eigendecomposition of the train kernel).

Each timing is the best of ``--repeats`` runs (the finite-t ones of ``--finite-repeats``), in
CPU seconds of the worker process (``time.process_time``, all its threads) and in wall seconds.
On a shared machine the CPU time of a single-threaded run is the fairer comparison, as it does
not count the time spent waiting for a core; both tables are printed, with the ratios
``neural-tangents / ours`` (> 1: ours is faster) and the targets checked.

Both libraries get the same absolute ridge ``alpha`` (neural-tangents with
``diag_reg_absolute_scale=True``), the same data, and the same thread settings; the predictions
are compared (``max|diff|``) so that both sides demonstrably compute the same thing. They agree
to about 2e-9 relative, not 1e-16: off the diagonal the kernels agree to 2e-16, but on the
diagonal neural-tangents takes the arccos of a cosine that round-off puts just below 1, an angle
of about sqrt(eps) = 1e-8 instead of the exact 0 we use, so its NTK diagonal is off by ~7e-9.

neural-tangents lives in its own virtual environment (it pins jax); its side runs as a
subprocess of that interpreter (``--nt-python``, or ``$NT_PYTHON``, or ``<repo>/.venv-nt``).
Our side also runs in a subprocess so that thread settings take effect before torch starts.
When no neural-tangents interpreter is found, the NT columns are skipped with a message.

Thread settings: ``--threads 1`` (default) exports ``OMP_NUM_THREADS = MKL_NUM_THREADS =
OPENBLAS_NUM_THREADS = 1`` and ``XLA_FLAGS="--xla_cpu_multi_thread_eigen=false
intra_op_parallelism_threads=1"`` to both workers (and our worker calls
``torch.set_num_threads``); each worker reports what it saw.

``--memory-sizes 20000`` runs, per size, a fresh subprocess doing our exact fit + predict and
reports its peak resident memory (``VmHWM`` from ``/proc/self/status``).

Past the exact solve (``solver="nystrom"``, issue 11), each run in a fresh subprocess that
reports wall and CPU seconds, peak resident memory and test RMSE:

* ``--protein``: the full UCI protein train split (``../shared/data/uci/protein``, split 0,
  41,157 rows, 9 features) with ``solver="nystrom"`` and ``--centers`` centres, against the exact
  solver on a ``--exact-subsample`` (20,000) row subsample of the same split, same kernel and
  alpha (3 hidden ReLU layers, ``w_std=1.5``, ``b_std=0.1``, ``alpha=0.1`` on standardised
  targets: the best of 0.01 / 0.1 / 0.3 / 1 for the exact NTK on a 4,000-row subsample). Inputs
  and target are standardised with the training split's statistics; RMSE is on the original
  scale. Targets: Nystrom under 300 s and test RMSE at most the exact one.
* ``--synthetic N [N ...]``: ``N`` rows of a 9-feature teacher task (``y = sin(x w) + x_1 x_2 / 2
  + 0.1 noise``, 10,000 test rows) with ``solver="nystrom"``; target for ``N = 10**6``: under
  1800 s and 8 GiB. Where 10**6 is too long for the session, smaller ``N`` give the scaling
  (time is linear in ``N`` at fixed centres: one pass of kernel tiles and ``O(N m^2)`` products).

Usage::

    nice python benchmarks/ntk_bench.py                       # n = 1000 4000 8000, 1 thread
    nice python benchmarks/ntk_bench.py --threads 2 --sizes 1000 4000
    nice python benchmarks/ntk_bench.py --sizes --memory-sizes 20000
    nice -n 10 python benchmarks/ntk_bench.py --sizes --protein --centers 4000
    nice -n 10 python benchmarks/ntk_bench.py --sizes --synthetic 200000 --centers 1000
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
D = 32
N_HIDDEN = 3
W_STD = 1.5
B_STD = 0.1
ALPHA = 1e-4

TARGET_KERNEL_SPEEDUP = 1.5
TARGET_FINITE_T_SPEEDUP = 5.0
TARGET_FINITE_T_N = 4000
TARGET_MEMORY_GIB = 24.0
TARGET_PROTEIN_SECONDS = 300.0
TARGET_MILLION_SECONDS = 1800.0
TARGET_MILLION_GIB = 8.0
PROTEIN = REPO.parent / "shared" / "data" / "uci" / "protein"
NYSTROM_ALPHA = 0.1


# -- shared helpers (imported by every worker: numpy only) ------------------------------------
def _peak_rss_gib():
    """``VmHWM`` (peak resident set size) of this process in GiB."""
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 2**20
    except OSError:
        pass
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def _thread_env():
    keys = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "XLA_FLAGS")
    return {k: os.environ.get(k) for k in keys}


def _make_data(n, n_test, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n + n_test, D))
    w = rng.standard_normal(D)
    y = np.sin(X @ w / np.sqrt(D)) + 0.1 * rng.standard_normal(n + n_test)
    return X[:n], y[:n], X[n:]


def _timed(fn):
    """``(out, wall seconds, CPU seconds of this process)``."""
    wall, cpu = time.perf_counter(), time.process_time()
    out = fn()
    return out, time.perf_counter() - wall, time.process_time() - cpu


def _best(fn, repeats, res, key):
    """Run ``fn`` ``repeats`` times; store the smallest wall and CPU times under ``key``.

    On a shared machine the CPU time of a single-threaded run is the fairer measure (it does not
    count time spent waiting for a core); both are recorded.
    """
    walls, cpus = [], []
    for _ in range(max(1, repeats)):
        out, wall, cpu = _timed(fn)
        walls.append(wall)
        cpus.append(cpu)
    res[key], res[key + "_cpu"] = min(walls), min(cpus)
    return out


# -- our worker ------------------------------------------------------------------------------
def _worker_ours(args):
    import torch

    sys.path.insert(0, str(REPO))
    from overparam_sklearn import NTKRegressor, _linalg
    from overparam_sklearn.kernels import fc_kernels

    threads = int(os.environ.get("OMP_NUM_THREADS", "1"))
    torch.set_num_threads(threads)  # a benchmark script may; the library never does
    data = np.load(args.data)
    X, y, X_test = data["X"], data["y"], data["X_test"]
    n = len(X)
    kw = dict(n_hidden=N_HIDDEN, activation="relu", w_std=W_STD, b_std=B_STD,
              parameterization="ntk")
    Xt = torch.as_tensor(X, dtype=torch.float64)
    res = {"threads_env": _thread_env(), "torch_threads": torch.get_num_threads(),
           "torch": torch.__version__}

    # kernel: warm-up, then timed
    fc_kernels(Xt, None, need_ntk=True, **kw)
    nngp, ntk = _best(lambda: fc_kernels(Xt, None, need_ntk=True, **kw), args.repeats, res,
                      "kernel")
    res["kernel_nngp_trace"] = float(nngp.diagonal().sum())
    res["kernel_ntk_trace"] = float(ntk.diagonal().sum())
    del nngp, ntk

    def fit_predict(t):
        model = NTKRegressor(alpha=ALPHA, t=t, device="cpu", **kw)
        return model.fit(X, y).predict(X_test)

    fit_predict(None)  # warm-up (allocator, lazy imports), as on the NT side
    pred_exact = _best(lambda: fit_predict(None), args.repeats, res, "exact")
    np.save(args.out_prefix + "ours_exact.npy", pred_exact)
    if n <= args.finite_max:
        pred_t = _best(lambda: fit_predict(args.t), args.finite_repeats, res, "finite_t")
        np.save(args.out_prefix + "ours_finite_t.npy", pred_t)

    if args.profile:
        # where the time of a fit + predict goes: train kernel recursion (its input matmul
        # separately), Cholesky + solve, Krylov flow, test kernel + matvec.
        # CPU seconds of each part
        prof = {}
        prof["input_matmul"] = _timed(lambda: Xt @ Xt.T / D)[2]
        (_, A), _, prof["train_kernel"] = _timed(
            lambda: fc_kernels(Xt, None, need_ntk=True, **kw))
        A.diagonal().add_(ALPHA)
        Y = torch.as_tensor(y, dtype=torch.float64)[:, None]
        L, _, prof["cholesky"] = _timed(lambda: _linalg.cholesky(A))
        prof["cho_solve"] = _timed(lambda: _linalg.cho_solve(L, Y))[2]
        del L
        if n <= args.finite_max:
            (out, n_iter), _, prof["krylov_flow"] = _timed(
                lambda: _linalg.flow_matrix_function(A, Y, args.t / Y.numel()))
            prof["krylov_iterations"] = n_iter
            prof["krylov_converged"] = out is not None
        Xq = torch.as_tensor(X_test, dtype=torch.float64)
        prof["test_kernel"] = _timed(lambda: fc_kernels(Xq, Xt, need_ntk=True, **kw))[2]
        res["profile"] = prof
    res["peak_rss_gib"] = _peak_rss_gib()
    print("RESULT " + json.dumps(res), flush=True)


# -- neural-tangents worker ------------------------------------------------------------------
def _worker_nt(args):
    os.environ.setdefault("JAX_ENABLE_X64", "1")
    os.environ.setdefault("JAX_PLATFORMS", "cpu")
    import jax

    jax.config.update("jax_enable_x64", True)
    import jax.numpy as jnp
    import neural_tangents as nt
    from neural_tangents import stax

    data = np.load(args.data)
    X = jnp.asarray(data["X"], dtype=jnp.float64)
    y = jnp.asarray(data["y"], dtype=jnp.float64)[:, None]
    X_test = jnp.asarray(data["X_test"], dtype=jnp.float64)
    n = X.shape[0]
    layers = []
    for _ in range(N_HIDDEN):
        layers += [stax.Dense(512, W_std=W_STD, b_std=B_STD, parameterization="ntk"), stax.Relu()]
    layers.append(stax.Dense(1, W_std=W_STD, b_std=B_STD, parameterization="ntk"))
    _, _, kernel_fn = stax.serial(*layers)
    kernel_fn = jax.jit(kernel_fn, static_argnames="get")
    res = {"threads_env": _thread_env(), "jax": jax.__version__,
           "neural_tangents": getattr(nt, "__version__", "?"),
           "jax_devices": [str(dv) for dv in jax.devices()]}

    def kernels():
        k = kernel_fn(X, None, ("nngp", "ntk"))
        return jax.block_until_ready(k)

    kernels()  # warm-up: compiles
    k = _best(kernels, args.repeats, res, "kernel")
    res["kernel_nngp_trace"] = float(jnp.trace(k[0]))
    res["kernel_ntk_trace"] = float(jnp.trace(k[1]))
    del k

    def fit_predict(t):
        predict_fn = nt.predict.gradient_descent_mse_ensemble(
            kernel_fn, X, y, diag_reg=ALPHA, diag_reg_absolute_scale=True)
        return np.asarray(jax.block_until_ready(predict_fn(t=t, x_test=X_test, get="ntk")))

    fit_predict(None)  # warm-up: compiles the kernel shapes and the solver ops
    pred_exact = _best(lambda: fit_predict(None), args.repeats, res, "exact")
    np.save(args.out_prefix + "nt_exact.npy", pred_exact[:, 0])
    if n <= args.nt_finite_max:
        pred_t = _best(lambda: fit_predict(args.t), args.finite_repeats, res, "finite_t")
        np.save(args.out_prefix + "nt_finite_t.npy", pred_t[:, 0])
    res["peak_rss_gib"] = _peak_rss_gib()
    print("RESULT " + json.dumps(res), flush=True)


# -- memory worker ---------------------------------------------------------------------------
def _worker_memory(args):
    import torch

    sys.path.insert(0, str(REPO))
    from overparam_sklearn import NTKRegressor

    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    X, y, X_test = _make_data(args.n, args.n_test)
    base = _peak_rss_gib()
    model = NTKRegressor(n_hidden=N_HIDDEN, w_std=W_STD, b_std=B_STD, alpha=ALPHA, t=None,
                         device="cpu", verbose=1)
    pred, elapsed, cpu = _timed(lambda: model.fit(X, y).predict(X_test))
    res = {"n": args.n, "seconds": elapsed, "cpu_seconds": cpu, "peak_rss_gib": _peak_rss_gib(),
           "baseline_rss_gib": base, "finite": bool(np.isfinite(pred).all()),
           "torch_threads": torch.get_num_threads(), "threads_env": _thread_env()}
    print("RESULT " + json.dumps(res), flush=True)


def _protein(split=0):
    data = np.loadtxt(PROTEIN / "data.txt")
    features = np.loadtxt(PROTEIN / "index_features.txt", dtype=int)
    target = int(np.loadtxt(PROTEIN / "index_target.txt"))
    train = np.loadtxt(PROTEIN / f"index_train_{split}.txt", dtype=int)
    test = np.loadtxt(PROTEIN / f"index_test_{split}.txt", dtype=int)
    X, y = data[:, features], data[:, target]
    mx, sx = X[train].mean(0), X[train].std(0)
    sx[sx == 0] = 1.0
    my, sy = y[train].mean(), y[train].std()
    return (X[train] - mx) / sx, (y[train] - my) / sy, (X[test] - mx) / sx, y[test], my, sy


def _synthetic(n, n_test=10_000, d=9, seed=0):
    rng = np.random.default_rng(seed)
    w = rng.standard_normal(d) / np.sqrt(d)
    X = rng.standard_normal((n + n_test, d))
    f = np.sin(X @ w * 2) + 0.5 * X[:, 0] * X[:, 1]
    y = f + 0.1 * rng.standard_normal(n + n_test)
    return X[:n], y[:n], X[n:], y[n:], 0.0, 1.0


def _worker_nystrom(args):
    import torch

    sys.path.insert(0, str(REPO))
    from overparam_sklearn import NTKRegressor

    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    if args.dataset == "protein":
        X, y, X_test, y_test, my, sy = _protein()
    else:
        X, y, X_test, y_test, my, sy = _synthetic(args.n)
    if args.subsample:
        rows = np.random.default_rng(0).choice(len(X), args.subsample, replace=False)
        X, y = X[rows], y[rows]
    base = _peak_rss_gib()
    model = NTKRegressor(n_hidden=N_HIDDEN, w_std=W_STD, b_std=B_STD, alpha=NYSTROM_ALPHA,
                         solver=args.solver, n_centers=args.centers, random_state=0,
                         device="cpu", verbose=1)
    pred, elapsed, cpu = _timed(lambda: model.fit(X, y).predict(X_test))
    rmse = float(np.sqrt(np.mean((pred * sy + my - y_test) ** 2)))
    res = {"dataset": args.dataset, "solver": args.solver, "n": len(X),
           "centers": args.centers if args.solver == "nystrom" else None,
           "n_iter": model.n_iter_, "seconds": elapsed, "cpu_seconds": cpu, "rmse": rmse,
           "peak_rss_gib": _peak_rss_gib(), "baseline_rss_gib": base,
           "torch_threads": torch.get_num_threads(), "threads_env": _thread_env()}
    print("RESULT " + json.dumps(res), flush=True)


def _print_nystrom(res):
    print(f"  {res['dataset']:>9} {res['solver']:>8} n={res['n']:>8} "
          f"centres={res['centers'] or '-':>5}: {res['seconds']:.1f} s wall, "
          f"{res['cpu_seconds']:.1f} s CPU, peak RSS {res['peak_rss_gib']:.2f} GiB, "
          f"test RMSE {res['rmse']:.4f}, CG iterations {res['n_iter']}", flush=True)


def _run_nystrom(args, log):
    env = _env_for(args.threads)
    if args.protein:
        if not PROTEIN.exists():
            print(f"{PROTEIN} is absent: the protein comparison is skipped.")
        else:
            from concurrent.futures import ThreadPoolExecutor

            print(f"protein (split 0), {args.threads} thread(s) per worker; the two workers run "
                  "side by side (each single-threaded: compare CPU seconds on a busy "
                  "machine)", flush=True)
            with ThreadPoolExecutor(2) as pool:
                nys = pool.submit(_run_worker, sys.executable, "nystrom",
                                  ["--dataset", "protein", "--solver", "nystrom",
                                   "--centers", str(args.centers)], env, log)
                exact = pool.submit(_run_worker, sys.executable, "nystrom",
                                    ["--dataset", "protein", "--solver", "exact",
                                     "--subsample", str(args.exact_subsample)], env, log)
                nys, exact = nys.result(), exact.result()
            for res in (nys, exact):
                if res:
                    _print_nystrom(res)
            if nys and exact:
                ok = (nys["cpu_seconds"] < TARGET_PROTEIN_SECONDS
                      and nys["rmse"] <= exact["rmse"])
                print(f"  Nystrom / exact-on-{args.exact_subsample}: CPU-time ratio "
                      f"{nys['cpu_seconds'] / exact['cpu_seconds']:.2f}, RMSE ratio "
                      f"{nys['rmse'] / exact['rmse']:.4f}; target (< {TARGET_PROTEIN_SECONDS:.0f}"
                      f" s of one core and RMSE <= exact): {'met' if ok else 'MISSED'}")
    for n in args.synthetic:
        print(f"synthetic n={n}, {args.threads} thread(s):", flush=True)
        res = _run_worker(sys.executable, "nystrom",
                          ["--dataset", "synthetic", "--n", str(n), "--solver", "nystrom",
                           "--centers", str(args.centers)], env, log)
        if res:
            _print_nystrom(res)
            per_million = res["cpu_seconds"] * 1e6 / n
            print(f"  CPU time scaled linearly to 10^6 rows: {per_million:.0f} s (target < "
                  f"{TARGET_MILLION_SECONDS:.0f} s{'' if n == 10**6 else ', extrapolated'}); "
                  f"peak RSS {res['peak_rss_gib']:.2f} GiB (target < {TARGET_MILLION_GIB} GiB "
                  f"at 10^6)")


# -- driver ----------------------------------------------------------------------------------
def _env_for(threads):
    env = dict(os.environ)
    for key in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        env[key] = str(threads)
    eigen = "true" if threads > 1 else "false"
    env["XLA_FLAGS"] = (f"--xla_cpu_multi_thread_eigen={eigen} "
                        f"intra_op_parallelism_threads={threads}")
    env["JAX_ENABLE_X64"] = "1"
    env["JAX_PLATFORMS"] = "cpu"
    env["TF_CPP_MIN_LOG_LEVEL"] = "3"
    return env


def _run_worker(python, worker, extra, env, log):
    cmd = [python, str(Path(__file__).resolve()), "--worker", worker, *extra]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if log:
        log.write(f"$ {' '.join(cmd)}\n{proc.stdout}\n{proc.stderr}\n")
        log.flush()
    for line in proc.stdout.splitlines():
        if line.startswith("RESULT "):
            return json.loads(line[len("RESULT "):])
    tail = (proc.stderr or proc.stdout).strip().splitlines()[-5:]
    print(f"  ! {worker} worker failed (exit {proc.returncode}): " + " | ".join(tail))
    return None


def _find_nt_python(flag):
    candidates = [flag, os.environ.get("NT_PYTHON"), str(REPO / ".venv-nt" / "bin" / "python")]
    for cand in candidates:
        if cand and Path(cand).exists():
            check = subprocess.run([cand, "-c", "import neural_tangents, jax"],
                                   capture_output=True, text=True, env=_env_for(1))
            if check.returncode == 0:
                return cand
            print(f"neural-tangents is not importable with {cand}: "
                  f"{check.stderr.strip().splitlines()[-1:]}")
    return None


def _fmt(x, spec=".2f"):
    return "-" if x is None else format(x, spec)


def _ratio(nt_s, ours_s):
    return None if (nt_s is None or ours_s is None) else nt_s / ours_s


def _bench(args, nt_python, log):
    rows = []
    env = _env_for(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        for n in args.sizes:
            X, y, X_test = _make_data(n, args.n_test)
            data = os.path.join(tmp, f"data_{n}.npz")
            np.savez(data, X=X, y=y, X_test=X_test)
            prefix = os.path.join(tmp, f"pred_{n}_")
            common = ["--data", data, "--out-prefix", prefix, "--t", str(args.t),
                      "--repeats", str(args.repeats), "--finite-repeats", str(args.finite_repeats),
                      "--finite-max", str(args.finite_max),
                      "--nt-finite-max", str(args.nt_finite_max)]
            print(f"n = {n}: ours ...", flush=True)
            ours = _run_worker(sys.executable, "ours",
                               common + (["--profile"] if args.profile else []), env, log)
            nt = None
            if nt_python:
                print(f"n = {n}: neural-tangents ...", flush=True)
                nt = _run_worker(nt_python, "nt", common, env, log)
            diffs = {}
            for key in ("exact", "finite_t"):
                a, b = prefix + f"ours_{key}.npy", prefix + f"nt_{key}.npy"
                if os.path.exists(a) and os.path.exists(b):
                    pa, pb = np.load(a), np.load(b)
                    diffs[key] = float(np.abs(pa - pb).max() / max(np.abs(pb).max(), 1e-300))
            rows.append({"n": n, "ours": ours, "nt": nt, "diffs": diffs})
            print(json.dumps(rows[-1]), flush=True)
    return rows


def _print_table(rows, args):
    print()
    print(f"threads={args.threads}, d={D}, {N_HIDDEN} hidden ReLU layers, float64, "
          f"n_test={args.n_test}, t={args.t}, alpha={ALPHA}; best of {args.repeats} "
          f"(finite-t: {args.finite_repeats}); ratio = neural-tangents / ours (> 1: ours faster)")
    for clock, suffix in (("CPU seconds (process_time)", "_cpu"), ("wall seconds", "")):
        print(f"\n{clock}:")
        head = (f"{'n':>6} | {'kernel ours':>11} {'NT':>8} {'ratio':>6} | {'exact ours':>10} "
                f"{'NT':>8} {'ratio':>6} | {'finite-t ours':>13} {'NT':>8} {'ratio':>6}")
        print(head)
        print("-" * len(head))
        for row in rows:
            o, t = row["ours"] or {}, row["nt"] or {}
            cells = []
            for key in ("kernel", "exact", "finite_t"):
                a, b = o.get(key + suffix), t.get(key + suffix)
                cells += [a, b, _ratio(b, a)]
            widths = (11, 8, 6, 10, 8, 6, 13, 8, 6)
            text = [f"{_fmt(c):>{w}}" for c, w in zip(cells, widths, strict=True)]
            print(f"{row['n']:>6} | {' '.join(text[0:3])} | {' '.join(text[3:6])} | "
                  f"{' '.join(text[6:9])}")
    print("\nmax |ours - NT| / max |NT| of the predictions:")
    for row in rows:
        d = row["diffs"]
        print(f"  n={row['n']}: exact {_fmt(d.get('exact'), '.1e')}, "
              f"finite-t {_fmt(d.get('finite_t'), '.1e')}")
    print()
    for row in rows:
        o, t = row["ours"] or {}, row["nt"] or {}
        print(f"n={row['n']}: ours torch_threads={o.get('torch_threads')} "
              f"env={o.get('threads_env')}; peak RSS ours {_fmt(o.get('peak_rss_gib'))} GiB, "
              f"NT {_fmt(t.get('peak_rss_gib'))} GiB")
        if t:
            print(f"        NT jax={t.get('jax')} neural-tangents={t.get('neural_tangents')} "
                  f"env={t.get('threads_env')}")
        if o.get("profile"):
            prof = {k: (round(v, 3) if isinstance(v, float) else v)
                    for k, v in o["profile"].items() if v is not None}
            print(f"        our profile (CPU s): {prof}")
    print()
    for row in rows:
        o, t = row["ours"] or {}, row["nt"] or {}
        for suffix, clock in (("_cpu", "CPU"), ("", "wall")):
            r = _ratio(t.get("kernel" + suffix), o.get("kernel" + suffix))
            if r is not None:
                verdict = "met" if r >= TARGET_KERNEL_SPEEDUP else "MISSED"
                print(f"target kernel speedup >= {TARGET_KERNEL_SPEEDUP} at n={row['n']} "
                      f"({clock}): {r:.2f} ({verdict})")
            r = _ratio(t.get("finite_t" + suffix), o.get("finite_t" + suffix))
            if r is not None and row["n"] == TARGET_FINITE_T_N:
                verdict = "met" if r >= TARGET_FINITE_T_SPEEDUP else "MISSED"
                print(f"target finite-t speedup >= {TARGET_FINITE_T_SPEEDUP} at n={row['n']} "
                      f"({clock}): {r:.2f} ({verdict})")


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sizes", type=int, nargs="*", default=[1000, 4000, 8000])
    p.add_argument("--n-test", type=int, default=1000)
    p.add_argument("--t", type=float, default=1000.0,
                   help="finite training time (neural-tangents' convention)")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--nt-python", default=None,
                   help="python of a venv with neural-tangents (default: $NT_PYTHON, "
                        "then <repo>/.venv-nt/bin/python)")
    p.add_argument("--finite-max", type=int, default=10**9,
                   help="largest n for our finite-t timing")
    p.add_argument("--nt-finite-max", type=int, default=4000,
                   help="largest n for neural-tangents' finite-t timing (an n x n eigh)")
    p.add_argument("--repeats", type=int, default=3,
                   help="repeats of the kernel and exact timings (the minimum is reported)")
    p.add_argument("--finite-repeats", type=int, default=1,
                   help="repeats of the finite-t timings")
    p.add_argument("--memory-sizes", type=int, nargs="*", default=[])
    p.add_argument("--profile", action="store_true", help="time our pipeline's parts")
    p.add_argument("--log", default=None, help="append worker output to this file")
    p.add_argument("--protein", action="store_true",
                   help="Nystrom on the full protein train split vs exact on a subsample")
    p.add_argument("--exact-subsample", type=int, default=20_000)
    p.add_argument("--synthetic", type=int, nargs="*", default=[],
                   help="Nystrom on this many synthetic rows")
    p.add_argument("--centers", type=int, default=4000, help="Nystrom centres")
    # worker-only arguments
    p.add_argument("--worker", choices=["ours", "nt", "memory", "nystrom"], default=None,
                   help=argparse.SUPPRESS)
    p.add_argument("--dataset", help=argparse.SUPPRESS)
    p.add_argument("--solver", help=argparse.SUPPRESS)
    p.add_argument("--subsample", type=int, default=None, help=argparse.SUPPRESS)
    p.add_argument("--data", help=argparse.SUPPRESS)
    p.add_argument("--out-prefix", help=argparse.SUPPRESS)
    p.add_argument("--n", type=int, help=argparse.SUPPRESS)
    args = p.parse_args(argv)

    if args.worker == "ours":
        return _worker_ours(args)
    if args.worker == "nt":
        return _worker_nt(args)
    if args.worker == "memory":
        return _worker_memory(args)
    if args.worker == "nystrom":
        return _worker_nystrom(args)

    log = open(args.log, "a") if args.log else None
    print(f"load average at start: {os.getloadavg()}; cpus: {os.cpu_count()}")
    rows = []
    if args.sizes:
        nt_python = _find_nt_python(args.nt_python)
        if nt_python is None:
            print("neural-tangents not found (pass --nt-python or set NT_PYTHON; install with "
                  "`python -m venv .venv-nt && .venv-nt/bin/pip install neural-tangents==0.6.5 "
                  "jax==0.5.3 jaxlib==0.5.3 tf2jax==0.3.7`): the NT columns are skipped.")
        else:
            print(f"neural-tangents interpreter: {nt_python}")
        rows = _bench(args, nt_python, log)
        _print_table(rows, args)
    for n in args.memory_sizes:
        print(f"memory: n = {n} (exact fit + predict, fresh subprocess) ...", flush=True)
        res = _run_worker(sys.executable, "memory",
                          ["--n", str(n), "--n-test", str(args.n_test)],
                          _env_for(args.threads), log)
        if res:
            verdict = "met" if res["peak_rss_gib"] <= TARGET_MEMORY_GIB else "MISSED"
            print(f"n={n}: exact fit+predict {res['seconds']:.1f} s wall, "
                  f"{res['cpu_seconds']:.1f} s CPU, peak RSS "
                  f"{res['peak_rss_gib']:.2f} GiB (baseline {res['baseline_rss_gib']:.2f} GiB; "
                  f"target <= {TARGET_MEMORY_GIB} GiB: {verdict}); "
                  f"torch_threads={res['torch_threads']}, env={res['threads_env']}")
    _run_nystrom(args, log)
    print(f"load average at end: {os.getloadavg()}")
    if log:
        log.close()


if __name__ == "__main__":
    main()
