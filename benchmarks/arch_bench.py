"""CNTK timing: overparam_sklearn's layer algebra against neural-tangents, in the same run.

What is timed: the ``n x n`` NTK train kernel (the NNGP is computed on the way) of a
convolutional network on ``n`` images of ``load_digits`` (8 x 8 x 1, NHWC, scaled to [0, 1])::

    Conv(3x3, SAME) -> ReLU -> Conv(3x3, SAME) -> ReLU -> GlobalAvgPool -> Dense

with ``W_std = 1.4``, ``b_std = 0.1``, NTK parameterization, float64. Global average pooling
needs the covariance of every pair of positions: ``(8 * 8)^2 = 4096`` numbers per pair of
images, so the kernel does ``O(n^2 4096)`` work and is computed in blocks on both sides:

* ours: ``layer_kernels(arch, X, need_ntk=True)`` (blocks of pairs sized to stay in cache; only
  the blocks on and above the diagonal);
* neural-tangents 0.6.5: ``nt.batch(kernel_fn, batch_size=B)(X, None, "ntk")`` (``jax.jit``
  inside, after a warm-up call that compiles; without batching the 500 x 500 x 4096 float64
  intermediates take 8 GB each). ``--nt-batch`` sets ``B`` (default 100).

Each timing is the best of ``--repeats`` runs in CPU seconds of the worker process (the fairer
measure on a shared machine) and in wall seconds; the ratio neural-tangents / ours is printed
(> 1: ours is faster), together with the largest relative difference between the two kernels
(they compute the same thing) and each worker's peak resident memory.

Thread settings as in ``ntk_bench.py``: ``--threads 1`` (default) exports ``OMP_NUM_THREADS =
MKL_NUM_THREADS = OPENBLAS_NUM_THREADS = 1`` and single-threaded ``XLA_FLAGS`` to both workers;
each reports what it saw. neural-tangents lives in its own virtual environment
(``--nt-python``, ``$NT_PYTHON`` or ``<repo>/.venv-nt``; see the README).

Usage::

    nice python benchmarks/arch_bench.py                 # n = 500, 1 thread
    nice python benchmarks/arch_bench.py --n 200 --repeats 3
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

sys.path.insert(0, str(Path(__file__).resolve().parent))
from ntk_bench import _env_for, _find_nt_python, _peak_rss_gib, _thread_env  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
W_STD, B_STD = 1.4, 0.1
TARGET_SPEEDUP = 1.0  # "at least as fast"


def _best(fn, repeats, res):
    walls, cpus = [], []
    out = None
    for _ in range(max(1, repeats)):
        wall, cpu = time.perf_counter(), time.process_time()
        out = fn()
        walls.append(time.perf_counter() - wall)
        cpus.append(time.process_time() - cpu)
    res["kernel"], res["kernel_cpu"] = min(walls), min(cpus)
    return out


def _worker_ours(args):
    import torch

    sys.path.insert(0, str(REPO))
    from overparam_sklearn.kernels.layers import (
        Activation,
        Conv,
        Dense,
        GlobalAvgPool,
        layer_kernels,
        serial,
    )

    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))  # a script may
    X = torch.as_tensor(np.load(args.data))
    arch = serial(Conv((3, 3), "SAME", w_std=W_STD, b_std=B_STD), Activation("relu"),
                  Conv((3, 3), "SAME", w_std=W_STD, b_std=B_STD), Activation("relu"),
                  GlobalAvgPool(), Dense(W_STD, B_STD))
    res = {"threads_env": _thread_env(), "torch_threads": torch.get_num_threads(),
           "torch": torch.__version__}
    layer_kernels(arch, X[:8])  # warm-up (allocator, lazy imports)
    _, ntk = _best(lambda: layer_kernels(arch, X, need_ntk=True, need_nngp=False),
                   args.repeats, res)
    np.save(args.out, ntk.numpy())
    res["peak_rss_gib"] = _peak_rss_gib()
    print("RESULT " + json.dumps(res), flush=True)


def _worker_nt(args):
    os.environ.setdefault("JAX_ENABLE_X64", "1")
    os.environ.setdefault("JAX_PLATFORMS", "cpu")
    import jax

    jax.config.update("jax_enable_x64", True)
    import neural_tangents as nt
    from neural_tangents import stax

    X = np.load(args.data)
    _, _, kernel_fn = stax.serial(
        stax.Conv(64, (3, 3), padding="SAME", W_std=W_STD, b_std=B_STD), stax.Relu(),
        stax.Conv(64, (3, 3), padding="SAME", W_std=W_STD, b_std=B_STD), stax.Relu(),
        stax.GlobalAvgPool(), stax.Dense(1, W_STD, B_STD))
    batched = nt.batch(kernel_fn, batch_size=args.nt_batch)
    res = {"threads_env": _thread_env(), "jax": jax.__version__,
           "neural_tangents": getattr(nt, "__version__", "?"), "nt_batch": args.nt_batch}

    def run():
        return np.asarray(jax.block_until_ready(batched(X, None, "ntk")))

    run()  # warm-up: compiles
    ntk = _best(run, args.repeats, res)
    np.save(args.out, ntk)
    res["peak_rss_gib"] = _peak_rss_gib()
    print("RESULT " + json.dumps(res), flush=True)


def _run(python, worker, extra, env):
    cmd = [python, str(Path(__file__).resolve()), "--worker", worker, *extra]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    for line in proc.stdout.splitlines():
        if line.startswith("RESULT "):
            return json.loads(line[len("RESULT "):])
    tail = (proc.stderr or proc.stdout).strip().splitlines()[-5:]
    print(f"  ! {worker} worker failed (exit {proc.returncode}): " + " | ".join(tail))
    return None


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--worker", choices=["ours", "nt"])
    parser.add_argument("--data")
    parser.add_argument("--out")
    parser.add_argument("--n", type=int, default=500)
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--nt-batch", type=int, default=100)
    parser.add_argument("--nt-python")
    args = parser.parse_args(argv)
    if args.worker == "ours":
        return _worker_ours(args)
    if args.worker == "nt":
        return _worker_nt(args)

    from sklearn.datasets import load_digits

    X = load_digits().data[: args.n].reshape(-1, 8, 8, 1) / 16.0
    env = _env_for(args.threads)
    nt_python = _find_nt_python(args.nt_python)
    print(f"CNTK (2 SAME 3x3 convs + ReLU + GlobalAvgPool + Dense) on {len(X)} load_digits "
          f"images, float64, threads={args.threads}, repeats={args.repeats}", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        data = os.path.join(tmp, "X.npy")
        np.save(data, X)
        common = ["--data", data, "--repeats", str(args.repeats),
                  "--nt-batch", str(args.nt_batch)]
        ours = _run(sys.executable, "ours", common + ["--out", os.path.join(tmp, "ours.npy")],
                    env)
        nt = None
        if nt_python:
            nt = _run(nt_python, "nt", common + ["--out", os.path.join(tmp, "nt.npy")], env)
        else:
            print("neural-tangents not found: only our side is timed (see the README)")
        diff = None
        if ours and nt:
            a, b = np.load(os.path.join(tmp, "ours.npy")), np.load(os.path.join(tmp, "nt.npy"))
            diff = float(np.abs(a - b).max() / np.abs(b).max())
    for name, res in (("ours", ours), ("neural-tangents", nt)):
        if res:
            print(f"{name:16s} CPU {res['kernel_cpu']:8.2f} s  wall {res['kernel']:8.2f} s  "
                  f"peak RSS {res['peak_rss_gib']:.2f} GiB  threads {res['threads_env']}")
    if ours and nt:
        ratio = nt["kernel_cpu"] / ours["kernel_cpu"]
        wall_ratio = nt["kernel"] / ours["kernel"]
        print(f"neural-tangents / ours: CPU {ratio:.2f}x, wall {wall_ratio:.2f}x "
              f"(target >= {TARGET_SPEEDUP:g}x: {'met' if ratio >= TARGET_SPEEDUP else 'MISSED'})"
              f"; max relative difference of the kernels {diff:.1e}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
