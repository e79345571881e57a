"""Compare PFN weights on a fixed validation set drawn from the training prior (the first half of
the shipping gate; the real-data table of ``pfn_bench.py`` is the second).

Every weights file is scored on the same datasets (``val_seed``, independent of any training
seed): ``--datasets`` datasets per context size, 100 query points each; the score is the mean
query NLL in nats (standardised targets). Differences are paired per dataset, with their
standard error over datasets. Example::

    OMP_NUM_THREADS=1 nice -n 10 python benchmarks/pfn_val.py \\
        overparam_sklearn/pfn/weights/regression.json runs/reg_cont/export/regression.json
"""

import argparse
import json
import math
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from overparam_sklearn.pfn.train import PRESETS, load_exported, sample_batch  # noqa: E402


def per_dataset_nll(model, config, n_ctx, n_datasets, chunk=16):
    """Mean query NLL of each of ``n_datasets`` validation datasets with context size ``n_ctx``."""
    out = []
    with torch.no_grad():
        for start in range(0, n_datasets, chunk):
            b = sample_batch(
                dict(config, device="cpu"),
                10_000 + n_ctx * 1000 + start,  # fixed datasets, disjoint from training steps
                n_points=n_ctx + 100,
                batch=min(chunk, n_datasets - start),
                n_ctx=n_ctx,
                stream=7,
                seed=config["val_seed"],
            )
            logits = model.forward_split(b["x"], b["y"], n_ctx).float()
            yq = b["y"][:, n_ctx:]
            if model.task == "regression":
                per = model.bar.nll(logits, yq)
            else:
                per = torch.nn.functional.cross_entropy(
                    logits.transpose(1, 2), yq.long(), reduction="none"
                )
            out.append(per.mean(1).double())
    return torch.cat(out)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("weights", nargs="+", help="exported .json files (the first is the reference)")
    p.add_argument("--prior", default=None, help="default: the first model's training prior")
    p.add_argument("--sizes", type=int, nargs="+", default=[5, 10, 50, 200, 1000])
    p.add_argument("--datasets", type=int, default=128)
    p.add_argument("--val-seed", type=int, default=0)
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    models = [load_exported(w) for w in args.weights]
    arch = models[0][1]
    prior = args.prior or arch.get("prior", "regression")
    preset = "classification" if arch["task"] == "classification" else "regression"
    config = dict(PRESETS[preset], prior=prior, d_max=arch["d_max"], val_seed=args.val_seed)
    t0 = time.time()
    scores = {w: {} for w in args.weights}
    for n_ctx in args.sizes:
        for w, (model, _) in zip(args.weights, models, strict=True):
            scores[w][n_ctx] = per_dataset_nll(model, config, n_ctx, args.datasets)
    ref = args.weights[0]
    report = {"prior": prior, "datasets_per_size": args.datasets, "sizes": args.sizes}
    report["threads"] = torch.get_num_threads()
    for w in args.weights:
        row = {}
        for n_ctx in args.sizes:
            s, r = scores[w][n_ctx], scores[ref][n_ctx]
            d = s - r
            row[str(n_ctx)] = {
                "nll": round(float(s.mean()), 4),
                "diff_vs_ref": round(float(d.mean()), 4),
                "se_diff": round(float(d.std() / math.sqrt(len(d))), 4),
            }
        allw = torch.cat([scores[w][n] for n in args.sizes])
        allr = torch.cat([scores[ref][n] for n in args.sizes])
        d = allw - allr
        row["mean"] = {
            "nll": round(float(allw.mean()), 4),
            "diff_vs_ref": round(float(d.mean()), 4),
            "se_diff": round(float(d.std() / math.sqrt(len(d))), 4),
        }
        report[w] = row
    report["seconds"] = round(time.time() - t0, 1)
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
