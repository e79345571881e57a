"""A/B comparisons of PFN training settings at equal CPU wall time.

Every variant trains from the same seed, so it sees identical batches (the batch of step ``t`` is a
function of the seed and ``t`` only) and is validated on the same fixed validation set
(``val_seed``). The variants run at the same time, one process and one thread each, so machine
load affects them alike; each stops at ``--seconds`` of wall time (``time_budget`` fixes its
learning-rate schedule from its own measured speed, so every variant completes its schedule).

Example (the A/Bs recorded in doc/modules/pfn.rst)::

    OMP_NUM_THREADS=1 nice -n 10 python benchmarks/pfn_ab.py --out runs/ab_target \\
        --seconds 600 --variant sample target='"sample"' --variant predictive \\
        target='"predictive"'

Prints, per variant, the steps done and the validation NLL (mean over the validation context
sizes, and per size) at the end and at fractions of the budget.
"""

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

#: the small configuration of the A/Bs: a 3-D GP prior with sampled hyperparameters
SMALL = [
    "d_max=3",
    "d_model=64",
    "n_layers=2",
    "n_heads=4",
    "d_ff=128",
    "n_bars=200",
    "border_samples=50000",
    "min_len=40",
    "max_len=232",
    "max_ctx=200",
    "curriculum_steps=1",
    "tokens_per_batch=2048",
    "warmup=50",
    "lr=0.001",
    "eval_every=40",
    "val_sizes=[5,20,100]",
    "val_batch=64",
    "ckpt_every=100000",
    "ckpt_seconds=1e9",
    "budget_probe_steps=10",
]


def _val_at(hist, wall):
    """The last validation record at or before ``wall`` seconds."""
    best = None
    for h in hist:
        if "val" in h and h.get("wall", 0.0) <= wall:
            best = h
    return best


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--out", required=True)
    p.add_argument("--seconds", type=float, default=600)
    p.add_argument("--prior", default="gp_hyper")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--set", nargs="*", default=[], help="settings shared by all variants")
    p.add_argument(
        "--variant", nargs="+", action="append", required=True, help="NAME key=value ..."
    )
    args = p.parse_args(argv)
    out = Path(args.out)
    procs = {}
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1")
    for name, *sets in args.variant:
        cmd = [sys.executable, "-m", "overparam_sklearn.pfn.train", "--preset", "gp_fixed"]
        cmd += ["--out", str(out / name), "--no-resume", "--threads", "1", "--verbose", "0"]
        cmd += ["--seed", str(args.seed), "--steps", "1000000"]
        cmd += ["--max-seconds", str(args.seconds * 1.05)]
        settings = SMALL + [
            f'prior="{args.prior}"',
            "normalize_x=true",
            "normalize_y=true",
            f"time_budget={args.seconds}",
        ]
        cmd += ["--set", *settings, *args.set, *sets]
        procs[name] = subprocess.Popen(cmd, cwd=REPO, env=env)
    t0 = time.time()
    for proc in procs.values():
        proc.wait()
    report = {"seconds": args.seconds, "prior": args.prior, "shared": args.set, "variants": {}}
    for name, *sets in args.variant:
        hist = json.loads((out / name / "history.json").read_text())
        last = [h for h in hist if "val" in h][-1]
        row = {"settings": sets, "steps": hist[-1]["step"], "wall": hist[-1]["wall"]}
        for frac in (0.25, 0.5, 0.75, 1.0):
            h = _val_at(hist, frac * args.seconds) or last
            row[f"val_mean@{frac}"] = round(sum(h["val"].values()) / len(h["val"]), 4)
        row["val_final"] = {k: round(v, 4) for k, v in last["val"].items()}
        row["val_final_mean"] = round(sum(last["val"].values()) / len(last["val"]), 4)
        row["s_per_step"] = round(hist[-1]["wall"] / max(1, hist[-1]["step"]), 4)
        report["variants"][name] = row
    report["elapsed"] = round(time.time() - t0, 1)
    print(json.dumps(report, indent=1))
    (out / "report.json").write_text(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
