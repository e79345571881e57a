"""Cost of one PFN training step: the masked forward pass over all tokens with per-dataset context
sizes (the path of the shipped models) against the split pass with one context size per batch
(keys/values from the context only, the bar head on the query rows only), both with the prior
drawn on the training thread, and the split pass with the next batch drawn in a background thread.

Run (the modes are interleaved over the same steps, so machine load hits all of them alike)::

    OMP_NUM_THREADS=1 nice -n 10 python benchmarks/pfn_train_step.py --steps 30

Prints seconds per step of each mode, tokens per second and the ratios to the masked path.
"""

import argparse
import json
import os
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from overparam_sklearn.pfn.estimator import load_pfn  # noqa: E402
from overparam_sklearn.pfn.train import PRESETS, _loss, sample_batch  # noqa: E402


def _step(model, opt, batch):
    loss = _loss(model, batch)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--steps", type=int, default=30)
    p.add_argument("--first-step", type=int, default=1000, help="curriculum past its ramp")
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    _, model = load_pfn(None, "regression")
    model.train().requires_grad_(True)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-9, foreach=False)
    cfg_old = dict(PRESETS["regression"], ctx_per_batch=False)
    cfg_new = dict(PRESETS["regression"], ctx_per_batch=True)
    times = {"masked": 0.0, "split": 0.0, "split+prefetch": 0.0}
    tokens = {"masked": 0, "split": 0, "split+prefetch": 0}
    pool = ThreadPoolExecutor(1)
    steps = range(args.first_step, args.first_step + args.steps)
    fut = pool.submit(sample_batch, cfg_new, steps[0])
    for i, s in enumerate(steps):
        t0 = time.perf_counter()
        b = sample_batch(cfg_old, s)
        _step(model, opt, b)
        t1 = time.perf_counter()
        times["masked"] += t1 - t0
        tokens["masked"] += b["x"].shape[0] * b["x"].shape[1]
        t0 = time.perf_counter()
        b = sample_batch(cfg_new, s)
        _step(model, opt, b)
        t1 = time.perf_counter()
        times["split"] += t1 - t0
        tokens["split"] += b["x"].shape[0] * b["x"].shape[1]
        # prefetch: the batch of this step was drawn while the previous step ran
        t0 = time.perf_counter()
        b = fut.result()
        if i + 1 < len(steps):
            fut = pool.submit(sample_batch, cfg_new, steps[i + 1])
        _step(model, opt, b)
        t1 = time.perf_counter()
        times["split+prefetch"] += t1 - t0
        tokens["split+prefetch"] += b["x"].shape[0] * b["x"].shape[1]
    pool.shutdown()
    out = {
        "threads": {k: os.environ.get(k) for k in ("OMP_NUM_THREADS", "MKL_NUM_THREADS")},
        "torch_threads": torch.get_num_threads(),
        "steps": args.steps,
    }
    for k in times:
        out[k] = {
            "s_per_step": round(times[k] / args.steps, 4),
            "tokens_per_s": round(tokens[k] / times[k], 1),
            "speedup_vs_masked": round(times["masked"] / times[k], 3),
        }
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
