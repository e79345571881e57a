"""Compare PFN weights on a fixed validation set drawn from the training prior (the first half of
the shipping gate; the real-data table of ``pfn_bench.py`` is the second).

Every weights file is scored on the same datasets (``val_seed``, independent of any training
seed): ``--datasets`` datasets per context size, 100 query points each; the score is the mean
query NLL in nats (standardised targets). Differences are paired per dataset, with their
standard error over datasets. Example::

    OMP_NUM_THREADS=1 nice -n 10 python benchmarks/pfn_val.py \\
        overparam_sklearn/pfn/weights/regression.json runs/reg_cont/export/regression.json

``--real`` instead compares the regression weights on real data (``load_diabetes`` and the UCI
sets in ``../shared/data/uci``; training subsets of ``--real-sizes`` points of splits
``0..--splits-1``, all features, the default ensemble of 4): test RMSE and NLL on the original
target scale, each weights file on identical subsets. (``pfn_bench.py`` has the full table with
the GP, ridge and boosting baselines.)
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


UCI = Path(__file__).resolve().parents[2] / "shared" / "data" / "uci"
REAL = ["diabetes", "boston", "concrete", "energy", "yacht", "wine", "kin8nm", "power", "naval"]


def _real_split(name, split):
    import numpy as np

    if name == "diabetes":
        from sklearn.datasets import load_diabetes
        from sklearn.model_selection import train_test_split

        X, y = load_diabetes(return_X_y=True)
        return train_test_split(X, y, test_size=0.1, random_state=split)
    folder = UCI / name
    data = np.loadtxt(folder / "data.txt")
    feats = np.loadtxt(folder / "index_features.txt", dtype=int)
    target = int(np.loadtxt(folder / "index_target.txt"))
    tr = np.loadtxt(folder / f"index_train_{split}.txt", dtype=int)
    te = np.loadtxt(folder / f"index_test_{split}.txt", dtype=int)
    X, y = data[:, feats], data[:, target]
    return X[tr], X[te], y[tr], y[te]


def real(args):
    import numpy as np

    from overparam_sklearn import PFNRegressor

    rows = []
    for name in args.real_data:
        if name != "diabetes" and not (UCI / name).exists():
            print(f"{name}: skipped ({UCI / name} is absent)")
            continue
        for n in args.real_sizes:
            res = {w: {"rmse": [], "nll": []} for w in args.weights}
            for split in range(args.splits):
                Xtr, Xte, ytr, yte = _real_split(name, split)
                rng = np.random.RandomState(split)
                sub = rng.choice(len(ytr), min(n, len(ytr)), replace=False)
                test = rng.choice(len(yte), min(500, len(yte)), replace=False)
                for w in args.weights:
                    reg = PFNRegressor(weights=w, random_state=split).fit(Xtr[sub], ytr[sub])
                    dist = reg.predict_distribution(Xte[test])
                    res[w]["rmse"].append(float(np.sqrt(np.mean((dist.mean - yte[test]) ** 2))))
                    res[w]["nll"].append(float(-dist.logpdf(yte[test]).mean()))
            row = {"data": name, "n": int(min(n, len(ytr)))}
            for w in args.weights:
                row[w] = {k: round(float(np.mean(v)), 4) for k, v in res[w].items()}
            rows.append(row)
            print(json.dumps(row), flush=True)
    ref, new = args.weights[0], args.weights[-1]
    better_nll = sum(r[new]["nll"] <= r[ref]["nll"] for r in rows)
    better_rmse = sum(r[new]["rmse"] <= r[ref]["rmse"] for r in rows)
    mean_d = float(np.mean([r[new]["nll"] - r[ref]["nll"] for r in rows]))
    print(
        json.dumps(
            {
                "cells": len(rows),
                "last_not_worse_nll": better_nll,
                "last_not_worse_rmse": better_rmse,
                "mean_nll_diff_last_minus_first": round(mean_d, 4),
            }
        )
    )


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("weights", nargs="+", help="exported .json files (the first is the reference)")
    p.add_argument("--prior", default=None, help="default: the first model's training prior")
    p.add_argument("--sizes", type=int, nargs="+", default=[5, 10, 50, 200, 1000])
    p.add_argument("--datasets", type=int, default=128)
    p.add_argument("--val-seed", type=int, default=0)
    p.add_argument("--real", action="store_true", help="compare on real data instead")
    p.add_argument("--real-data", nargs="+", default=REAL)
    p.add_argument("--real-sizes", type=int, nargs="+", default=[50, 200, 1000])
    p.add_argument("--splits", type=int, default=2)
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    if args.real:
        return real(args)
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
