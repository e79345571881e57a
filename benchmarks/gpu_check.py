"""The one script to run when a GPU is lent: CUDA tests and a GPU-vs-CPU speed table.

Usage::

    python benchmarks/gpu_check.py --out DIR            # on a machine with CUDA (< 8 min, H200)
    python benchmarks/gpu_check.py --out DIR --dry-run  # same code, tiny sizes, CPU only

It does two things and writes ``DIR/gpu_check.json`` and ``DIR/gpu_check.md``:

1. runs every test marked ``cuda`` (``pytest -m cuda tests``): each estimator fits and predicts
   on CUDA and agrees with its CPU fit to the tolerance stated in ``tests/test_cuda.py``; a
   CUDA-fitted model is pickled, loaded in a fresh interpreter with ``CUDA_VISIBLE_DEVICES=""``
   and predicts the same;
2. times the headline operations of issue 11 on the GPU and on one CPU core
   (``torch.set_num_threads(1)``), with the targets:

   =====================  ==========================================================  ========
   operation              what                                                        target
   =====================  ==========================================================  ========
   ``ntk_kernel``         NNGP + NTK, n = 20,000, d = 32, 3 hidden ReLU, float64      >= 30x
   ``ntk_exact``          NTKRegressor(solver="exact", dtype="float32") fit n=50,000  < 60 s
                          + predict 1,000
   ``rf_ridge``           RandomFeatureRegressor n = 10^6, N = 10^4, 10 alphas (LOO)  < 30 s
   ``pfn_predict``        PFNRegressor(n_estimators=1) 1,000 context x 1,000 queries  < 20 ms
   ``grand``              GraNdScorer(n_estimators=1, score_epoch=0) on 50,000 examples   < 10 s
   =====================  ==========================================================  ========

   Where one CPU core at the full size would take too long for the time budget, the CPU column
   is measured at a smaller size and scaled by the operation's cost exponent; the table says
   so (``cpu size`` and ``scaled``).

``--dry-run`` runs the same code on the CPU with tiny sizes and with ``OVERPARAM_CUDA_DRY_RUN=1``
(the CUDA tests then use the CPU as the stand-in device), so that this script is exercised by
the default test suite (``tests/test_gpu_check.py``) and never breaks unseen. A dry run checks
code paths, not a GPU: its numbers mean nothing.
"""

import argparse
import json
import os
import platform
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]

# name: (full size, CPU-reference size, cost exponent in the size, dry-run size, target)
OPS = {
    "ntk_kernel": (20_000, 10_000, 2.0, 200, ("speedup", 30.0)),
    "ntk_exact": (50_000, 5_000, 3.0, 200, ("gpu_seconds", 60.0)),
    "rf_ridge": (1_000_000, 20_000, 1.0, 500, ("gpu_seconds", 30.0)),
    "pfn_predict": (1_000, 1_000, 1.0, 50, ("gpu_seconds", 0.020)),
    "grand": (50_000, 5_000, 1.0, 300, ("gpu_seconds", 10.0)),
}


def _sync(device):
    import torch

    if device == "cuda":
        torch.cuda.synchronize()


def _timed(fn, device):
    _sync(device)
    start = time.perf_counter()
    fn()
    _sync(device)
    return time.perf_counter() - start


# -- the operations: each returns a zero-argument callable doing the timed work ---------------
def _op_ntk_kernel(n, device, dry):
    import torch

    from overparam_sklearn.kernels import fc_kernels

    X = torch.randn(n, 32, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    X = X.to(device)
    return lambda: fc_kernels(X, None, n_hidden=3, activation="relu", w_std=1.5, b_std=0.1,
                              need_ntk=True)


def _op_ntk_exact(n, device, dry):
    from overparam_sklearn import NTKRegressor

    rng = np.random.default_rng(0)
    X = rng.standard_normal((n, 32))
    y = np.sin(X @ rng.standard_normal(32) / np.sqrt(32))
    Xq = rng.standard_normal((1000 if not dry else 50, 32))
    model = NTKRegressor(n_hidden=3, w_std=1.5, b_std=0.1, alpha=0.1, solver="exact",
                         dtype="float32", device=device)
    return lambda: model.fit(X, y).predict(Xq)


def _op_rf_ridge(n, device, dry):
    from overparam_sklearn import RandomFeatureRegressor

    N = 10_000 if not dry else 100
    if device == "cpu" and not dry:
        N = 2_000  # the CPU reference: n N^2 work, scaled below (see _cpu_scale)
    rng = np.random.default_rng(0)
    X = rng.standard_normal((n, 32)).astype(np.float32)
    y = np.sin(X[:, 0]) + 0.1 * rng.standard_normal(n).astype(np.float32)
    model = RandomFeatureRegressor(n_components=N, alpha=np.logspace(-3, 2, 10).tolist(),
                                   b_std=1.0, random_state=0, dtype="float32", device=device)
    return lambda: model.fit(X, y).predict(X[:1000])


def _op_pfn_predict(n, device, dry):
    from overparam_sklearn import PFNRegressor

    rng = np.random.default_rng(0)
    X = rng.standard_normal((n, 10))
    y = X[:, 0] + 0.1 * rng.standard_normal(n)
    model = PFNRegressor(n_estimators=1, random_state=0, device=device).fit(X, y)
    Xq = rng.standard_normal((n, 10))
    model.predict(Xq)  # load the weights once (cached per process)
    return lambda: model.predict(Xq)


def _op_grand(n, device, dry):
    from overparam_sklearn import GraNdScorer

    rng = np.random.default_rng(0)
    X = rng.standard_normal((n, 64)).astype(np.float32)
    y = rng.integers(0, 10, size=n)
    scorer = GraNdScorer(n_estimators=1, score_epoch=0, random_state=0, device=device)
    return lambda: scorer.fit(X, y)


def _cpu_scale(name, full, measured_size):
    """Factor from the CPU-reference size to the full size (1 when they are equal)."""
    _, _, exponent, _, _ = OPS[name]
    factor = (full / measured_size) ** exponent
    if name == "rf_ridge":
        factor *= (10_000 / 2_000) ** 2  # N = 2,000 on the CPU, cost n N^2
    return factor


def run_speed(device, dry, log):
    import torch

    rows = []
    for name, (full, cpu_size, _, dry_size, target) in OPS.items():
        size = dry_size if dry else full
        cpu_n = dry_size if dry else cpu_size
        builder = globals()[f"_op_{name}"]
        row = {"operation": name, "size": size, "cpu_size": cpu_n}
        try:
            # warm-up at a tiny size (CUDA context, kernels, weights), then the timed run
            _timed(builder(min(size, dry_size), device, True), device)
            row["gpu_seconds"] = _timed(builder(size, device, dry), device)
        except Exception as exc:  # record and go on: one failure must not hide the others
            row["gpu_error"] = f"{type(exc).__name__}: {exc}"[:400]
        threads = torch.get_num_threads()
        try:
            torch.set_num_threads(1)
            row["cpu_measured_seconds"] = _timed(builder(cpu_n, "cpu", dry), "cpu")
            row["cpu_scaled"] = not dry and _cpu_scale(name, size, cpu_n) != 1.0
            row["cpu_seconds"] = row["cpu_measured_seconds"] * (
                1.0 if dry else _cpu_scale(name, size, cpu_n))
        except Exception as exc:
            row["cpu_error"] = f"{type(exc).__name__}: {exc}"[:400]
        finally:
            torch.set_num_threads(threads)
        if "gpu_seconds" in row and "cpu_seconds" in row:
            row["speedup"] = row["cpu_seconds"] / row["gpu_seconds"]
        kind, bound = target
        row["target"] = f">= {bound:g}x" if kind == "speedup" else f"< {bound:g} s"
        value = row.get(kind)
        row["met"] = None if value is None or dry else (
            value >= bound if kind == "speedup" else value < bound)
        log(f"{name}: {row}")
        rows.append(row)
    return rows


def run_tests(out, dry, log):
    xml = out / "cuda_tests.xml"
    env = dict(os.environ)
    if dry:
        env["OVERPARAM_CUDA_DRY_RUN"] = "1"
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-o", "addopts=",
           "-m", "cuda", "--junitxml", str(xml), "tests"]
    log("$ " + " ".join(cmd))
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True)
    (out / "cuda_tests.log").write_text(proc.stdout + proc.stderr)
    summary = {"returncode": proc.returncode, "command": " ".join(cmd)}
    if xml.exists():
        suite = ET.parse(xml).getroot()
        suite = suite if suite.tag == "testsuite" else suite.find("testsuite")
        for key in ("tests", "failures", "errors", "skipped"):
            summary[key] = int(suite.get(key, 0))
    summary["passed"] = (summary.get("tests", 0) - summary.get("failures", 0)
                         - summary.get("errors", 0) - summary.get("skipped", 0))
    log(f"cuda tests: {summary}")
    return summary


def _fmt(x, spec):
    return "-" if x is None else format(x, spec)


def write_markdown(path, result):
    title = ("DRY RUN on the CPU: numbers mean nothing" if result["dry_run"]
             else result["device_name"])
    lines = [f"# GPU check ({title})",
             "", f"- date (UTC): {result['date']}", f"- torch {result['torch']}, "
             f"host CPUs: {result['cpu_count']}, CPU reference: 1 thread",
             f"- command: `{result['command']}`"]
    tests = result.get("tests")
    if tests:
        lines += ["", f"CUDA tests (`pytest -m cuda`): {tests.get('passed', 0)} passed, "
                  f"{tests.get('failures', 0)} failed, {tests.get('errors', 0)} errors, "
                  f"{tests.get('skipped', 0)} skipped (exit {tests['returncode']})."]
    if result.get("speed"):
        lines += ["", "| operation | size | GPU s | CPU s (1 core) | CPU measured at | speed-up "
                  "| target | met |", "|---|---|---|---|---|---|---|---|"]
        for r in result["speed"]:
            cpu_at = f"{r['cpu_size']}" + (" (scaled)" if r.get("cpu_scaled") else "")
            lines.append(
                f"| {r['operation']} | {r['size']} | {_fmt(r.get('gpu_seconds'), '.4g')} | "
                f"{_fmt(r.get('cpu_seconds'), '.4g')} | {cpu_at} | "
                f"{_fmt(r.get('speedup'), '.1f')} | {r['target']} | "
                f"{'-' if r['met'] is None else ('yes' if r['met'] else 'NO')} |")
            for key in ("gpu_error", "cpu_error"):
                if key in r:
                    lines.append(f"|  | {key}: {r[key]} | | | | | | |")
    path.write_text("\n".join(lines) + "\n")


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", required=True, help="directory for gpu_check.json / .md")
    p.add_argument("--dry-run", action="store_true", help="tiny sizes on the CPU")
    p.add_argument("--skip-tests", action="store_true")
    p.add_argument("--skip-speed", action="store_true")
    args = p.parse_args(argv)
    sys.path.insert(0, str(REPO))
    import torch

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    dry = args.dry_run
    if not dry and not torch.cuda.is_available():
        print("torch sees no CUDA device: run with --dry-run, or on a machine with a GPU.")
        return 2
    device = "cpu" if dry else "cuda"

    def log(msg):
        print(msg, flush=True)

    result = {
        "dry_run": dry,
        "device": device,
        "device_name": torch.cuda.get_device_name(0) if device == "cuda" else platform.processor()
        or "cpu",
        "torch": torch.__version__,
        "cpu_count": os.cpu_count(),
        "date": time.strftime("%Y-%m-%d %H:%M", time.gmtime()),
        "command": " ".join([Path(sys.argv[0]).name, *(argv if argv is not None
                                                        else sys.argv[1:])]),
        "threads_env": {k: os.environ.get(k) for k in ("OMP_NUM_THREADS", "MKL_NUM_THREADS")},
    }
    start = time.perf_counter()
    if not args.skip_tests:
        result["tests"] = run_tests(out, dry, log)
    if not args.skip_speed:
        result["speed"] = run_speed(device, dry, log)
    result["total_seconds"] = time.perf_counter() - start
    (out / "gpu_check.json").write_text(json.dumps(result, indent=2, default=str))
    write_markdown(out / "gpu_check.md", result)
    log((out / "gpu_check.md").read_text())
    failed = (result.get("tests", {}).get("returncode", 0) != 0
              or any("gpu_error" in r or "cpu_error" in r for r in result.get("speed", [])))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
