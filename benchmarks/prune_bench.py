"""Data-diet benchmark: GraNd speed and pruning curves on digits and MNIST-1D.

Part 1 (speed). Per-example GraNd over all parameters with ``torch.func`` (vmap of grad of
functional_call, as in ``data_diet._scores.grand_scores``) against a loop with one
backward pass per example; both in the same run, same network, same rows; ratio printed.

Part 2 (pruning curves). For each dataset and seed, score the training set with EL2N, GraNd
(all parameters) and forgetting (``n_estimators`` networks each), then for each fraction pruned
keep the hardest rows by each score, the hardest by EL2N within each class (``el2n_balanced``), the
easiest by EL2N (``el2n_easiest``, the better choice on scarce data per Sorscher et al. 2022), a
random subset, or a CCS-stratified subset of the EL2N scores
(Zheng et al. 2023; ``drop_hardest_fraction`` beta = 0 below 70% pruned, 0.1 at 70%, 0.3 at
90%, roughly their CIFAR-10 schedule), select through :class:`DataDietSampler`, train a fresh MLP
on the kept rows for a fixed number of optimiser steps (the same compute whatever is kept), and
report test accuracy (mean and std over seeds).

Datasets: scikit-learn digits (1797 rows, 70/30 stratified split) and MNIST-1D generated offline
with ``mnist1d.data.make_dataset(get_dataset_args())`` (4000 train / 1000 test; never downloaded).

Run (background, single-threaded)::

    OMP_NUM_THREADS=1 nice python benchmarks/prune_bench.py            # full: ~25 min on 1 core
    OMP_NUM_THREADS=1 python benchmarks/prune_bench.py --quick         # smoke run, ~1 min

Rows are appended to ``benchmarks/results/prune_bench.csv`` as they finish (a rerun skips what is
there, so an interrupted run resumes); the table is printed at the end.
"""

import argparse
import csv
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch
from sklearn.base import BaseEstimator
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from sklearn.preprocessing import StandardScaler
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout

from overparam_sklearn import (  # noqa: E402
    DataDietSampler,
    EL2NScorer,
    ForgettingScorer,
    GraNdScorer,
)
from overparam_sklearn.data_diet._mlp import _MLP, _reset_parameters  # noqa: E402
from overparam_sklearn.data_diet._scores import grand_scores  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from grand_reference import _grand_scores_loop  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
FIELDS = ["dataset", "seed", "method", "pruned", "n_kept", "test_acc"]


# ------------------------------------------------------------------------------------------
# Part 1: GraNd speed
# ------------------------------------------------------------------------------------------


def bench_grand_speed(n=512, n_features=64, hidden=(256, 256), n_classes=10, repeats=3,
                      device="cpu"):
    gen = torch.Generator().manual_seed(0)
    module = _MLP(n_features, n_classes, hidden_layer_sizes=hidden)
    _reset_parameters(module, gen)
    X = torch.randn(n, n_features, generator=gen)
    y = torch.randint(0, n_classes, (n,), generator=gen)
    module, X, y = module.to(device), X.to(device), y.to(device)
    n_params = sum(p.numel() for p in module.parameters())

    def best(fn):
        times = []
        for _ in range(repeats):
            if device != "cpu":
                torch.cuda.synchronize()
            t = time.perf_counter()
            out = fn()
            if device != "cpu":
                torch.cuda.synchronize()
            times.append(time.perf_counter() - t)
        return min(times), out

    grand_scores(module, X[:8], y[:8])  # warm up torch.func
    grand_scores(module, X[:8], y[:8], factored=False)
    t_fact, fact = best(lambda: grand_scores(module, X, y))
    t_mat, mat = best(lambda: grand_scores(module, X, y, factored=False))
    t_loop, slow = best(lambda: _grand_scores_loop(module, X, y))

    def err(a):
        return float((a - slow).abs().max() / slow.abs().max())

    print(
        f"GraNd over all {n_params} parameters of a {n_features}-{'-'.join(map(str, hidden))}-"
        f"{n_classes} MLP, {n} examples, float32, {device}, best of {repeats}:\n"
        f"  torch.func, factored Linear norms (default) {t_fact * 1e3:8.1f} ms  "
        f"{t_loop / t_fact:6.1f}x  (max rel. diff {err(fact):.1e})\n"
        f"  torch.func, materialised vmap(grad)         {t_mat * 1e3:8.1f} ms  "
        f"{t_loop / t_mat:6.1f}x  (max rel. diff {err(mat):.1e})\n"
        f"  per-example backward loop (reference)       {t_loop * 1e3:8.1f} ms    1.0x"
    )
    return t_loop / t_fact, t_loop / t_mat


# ------------------------------------------------------------------------------------------
# Part 2: pruning curves
# ------------------------------------------------------------------------------------------


def load(name, seed):
    if name == "digits":
        X, y = load_digits(return_X_y=True)
        X_tr, X_te, y_tr, y_te = train_test_split(
            X, y, test_size=0.3, stratify=y, random_state=seed
        )
    else:
        from mnist1d.data import get_dataset_args, make_dataset

        data = make_dataset(get_dataset_args())  # generated offline, fixed by its own seed
        X_tr, y_tr, X_te, y_te = data["x"], data["y"], data["x_test"], data["y_test"]
    scaler = StandardScaler().fit(X_tr)
    f32 = np.float32
    return (scaler.transform(X_tr).astype(f32), np.asarray(y_tr),
            scaler.transform(X_te).astype(f32), np.asarray(y_te))


def train_and_test(X, y, X_te, y_te, hidden, steps, seed, batch_size=64, lr=1e-3):
    """A fresh MLP trained with Adam for a fixed number of steps; test accuracy."""
    gen = torch.Generator().manual_seed(seed)
    n_classes = int(max(y.max(), y_te.max())) + 1
    model = _MLP(X.shape[1], n_classes, hidden_layer_sizes=hidden)
    _reset_parameters(model, gen)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    Xt, yt = torch.from_numpy(X), torch.from_numpy(y.astype(np.int64))
    bs = min(batch_size, len(X))
    model.train()
    for _ in range(steps):
        idx = torch.randint(0, len(X), (bs,), generator=gen)
        loss = nn.functional.cross_entropy(model(Xt[idx]), yt[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    with torch.no_grad():
        pred = model(torch.from_numpy(X_te)).argmax(dim=1).numpy()
    return float(np.mean(pred == y_te))


class Precomputed(BaseEstimator):
    """A scorer whose ``fit`` hands back scores computed once (so every fraction reuses them)."""

    def __init__(self, scores=None):
        self.scores = scores

    def fit(self, X, y):
        if len(self.scores) != len(X):
            raise ValueError("scores do not match X")
        self.scores_ = np.asarray(self.scores)
        return self


def ccs_beta(pruned):
    return 0.0 if pruned < 0.7 else (0.1 if pruned < 0.85 else 0.3)


def run_curves(cfg, out_csv):
    done = set()
    if out_csv.exists():
        with open(out_csv) as fh:
            for row in csv.DictReader(fh):
                done.add((row["dataset"], int(row["seed"]), row["method"], float(row["pruned"])))
    new_file = not out_csv.exists()
    fh = open(out_csv, "a", newline="")
    writer = csv.DictWriter(fh, fieldnames=FIELDS)
    if new_file:
        writer.writeheader()
    for dataset in cfg["datasets"]:
        dc = cfg[dataset]
        for seed in cfg["seeds"]:
            todo = [
                (m, p) for m in cfg["methods"] for p in cfg["fractions"]
                if (dataset, seed, m, p) not in done and not (p == 0.0 and m != "random")
            ]
            if not todo:
                continue
            X, y, X_te, y_te = load(dataset, seed)
            t0 = time.perf_counter()
            common = dict(n_estimators=dc["n_estimators"], device="cpu", random_state=seed,
                          module_params={"hidden_layer_sizes": dc["hidden"]}, batch_size=64)
            scores = {}
            need = {m for m, _ in todo}
            if need & {"el2n", "el2n_balanced", "el2n_easiest", "stratified"}:
                scorer = EL2NScorer(score_epoch=dc["score_epoch"], **common)
                scores["el2n"] = scorer.fit(X, y).scores_
            if "grand" in need:
                scorer = GraNdScorer(score_epoch=dc["score_epoch"], **common)
                scores["grand"] = scorer.fit(X, y).scores_
            if "forgetting" in need:
                scores["forgetting"] = ForgettingScorer(
                    score_epoch=dc["forget_epochs"], **common).fit(X, y).scores_
            t_score = time.perf_counter() - t0
            for method, pruned in todo:
                keep_fraction = 1.0 - pruned
                if pruned == 0.0:
                    idx = np.arange(len(y))
                else:
                    if method == "random":
                        sampler = DataDietSampler(keep="random", keep_fraction=keep_fraction,
                                                  random_state=seed)
                    elif method == "el2n_balanced":
                        sampler = DataDietSampler(Precomputed(scores["el2n"]), keep="hardest",
                                                  keep_fraction=keep_fraction,
                                                  class_balanced=True, random_state=seed)
                    elif method == "el2n_easiest":
                        sampler = DataDietSampler(Precomputed(scores["el2n"]), keep="easiest",
                                                  keep_fraction=keep_fraction, random_state=seed)
                    elif method == "stratified":
                        sampler = DataDietSampler(Precomputed(scores["el2n"]), keep="stratified",
                                                  keep_fraction=keep_fraction,
                                                  drop_hardest_fraction=ccs_beta(pruned),
                                                  random_state=seed)
                    else:
                        sampler = DataDietSampler(Precomputed(scores[method]), keep="hardest",
                                                  keep_fraction=keep_fraction, random_state=seed)
                    idx = sampler.fit(X, y).sample_indices_
                acc = train_and_test(X[idx], y[idx], X_te, y_te, dc["hidden"], dc["steps"],
                                     seed=1000 + seed, batch_size=dc["batch_size"])
                writer.writerow(dict(dataset=dataset, seed=seed, method=method, pruned=pruned,
                                     n_kept=len(idx), test_acc=f"{acc:.4f}"))
                fh.flush()
            print(f"[{dataset} seed {seed}] scored in {t_score:.0f} s, "
                  f"{len(todo)} trainings in {time.perf_counter() - t0 - t_score:.0f} s",
                  flush=True)
    fh.close()


def print_table(out_csv, cfg):
    rows = list(csv.DictReader(open(out_csv)))
    for dataset in cfg["datasets"]:
        sub = [r for r in rows if r["dataset"] == dataset]
        if not sub:
            continue
        full = [float(r["test_acc"]) for r in sub if float(r["pruned"]) == 0.0]
        print(f"\n{dataset}: test accuracy (%), mean +- std over {len(full)} seeds; "
              f"full data {100 * np.mean(full):.1f} +- {100 * np.std(full):.1f}")
        header = "pruned".ljust(8) + "".join(m.rjust(15) for m in cfg["methods"])
        print(header)
        for p in cfg["fractions"]:
            if p == 0.0:
                continue
            line = f"{p:<8.1f}"
            for m in cfg["methods"]:
                acc = [float(r["test_acc"]) for r in sub
                       if r["method"] == m and abs(float(r["pruned"]) - p) < 1e-9]
                line += (f"{100 * np.mean(acc):8.1f} +-{100 * np.std(acc):4.1f}" if acc
                         else "-".rjust(15))
            print(line)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny settings, for a smoke run")
    parser.add_argument("--skip-speed", action="store_true")
    parser.add_argument("--skip-curves", action="store_true")
    parser.add_argument("--speed-device", default="cpu", help="device of the GraNd timing")
    parser.add_argument("--speed-n", type=int, default=None, help="examples in the timing")
    args = parser.parse_args()
    print(f"torch {torch.__version__}, torch threads {torch.get_num_threads()}, "
          f"OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS')}")
    if not args.skip_speed:
        n = args.speed_n or (128 if args.quick else 512)
        bench_grand_speed(n=n, device=args.speed_device)
    if args.skip_curves:
        return
    cfg = dict(
        datasets=["digits", "mnist1d"],
        seeds=[0, 1, 2],
        methods=["el2n", "grand", "forgetting", "random", "stratified", "el2n_balanced",
                 "el2n_easiest"],
        fractions=[0.0, 0.1, 0.3, 0.5, 0.7, 0.9],
        digits=dict(hidden=(256,), n_estimators=5, score_epoch=10, forget_epochs=20, steps=1500,
                    batch_size=64),
        mnist1d=dict(hidden=(256, 256), n_estimators=5, score_epoch=10, forget_epochs=20,
                     steps=3000, batch_size=128),
    )
    name = "prune_bench.csv"
    if args.quick:
        cfg.update(seeds=[0], fractions=[0.0, 0.5, 0.9])
        for d in ("digits", "mnist1d"):
            cfg[d].update(n_estimators=2, score_epoch=3, forget_epochs=4, steps=200)
        name = "prune_bench_quick.csv"
    RESULTS.mkdir(exist_ok=True)
    out_csv = RESULTS / name
    if args.quick and out_csv.exists():
        out_csv.unlink()
    run_curves(cfg, out_csv)
    print_table(out_csv, cfg)
    print(f"\nrows in {out_csv}")


if __name__ == "__main__":
    main()
