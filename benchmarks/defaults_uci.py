"""Do the defaults work? NTKRegressor() and SparseDKMRegressor(nu) against RidgeCV on UCI sets.

``--model ntk``: for ``load_diabetes`` and each set of ``../shared/data/uci`` (the standard
splits, ``--splits``), fits ``make_pipeline(StandardScaler(), est)`` on the raw target, as a new
user would, for ``est`` in ``NTKRegressor()`` (the defaults: ``alpha="auto"``,
``normalize_y=True``), ``NTKRegressor(alpha=1e-6, normalize_y=False)`` (the former defaults) and
``RidgeCV(alphas=np.logspace(-3, 3, 13))``, and prints the test R^2 (mean over splits) and the
difference to RidgeCV. Training sets above ``--max-train`` rows are subsampled (the same rows
for every model), since the exact NTK solve is cubic in n. ``load_diabetes`` uses 25% test
splits with ``random_state`` = split.

``--model dkm``: the same protocol for ``SparseDKMRegressor(nu=...)`` over ``--nu`` values with
the other parameters at their defaults (a small budget: the small sets, one or two splits).

Run::

    nice -n 10 python benchmarks/defaults_uci.py --model ntk --splits 0 1 2
    nice -n 10 python benchmarks/defaults_uci.py --model dkm --splits 0 --nu 1 10 100 1000 \\
        --datasets diabetes boston yacht energy concrete wine
"""

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np
from sklearn.datasets import load_diabetes
from sklearn.linear_model import RidgeCV
from sklearn.model_selection import train_test_split
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

UCI = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "uci"
UCI_SETS = ["boston", "concrete", "energy", "kin8nm", "naval", "power", "protein", "wine",
            "yacht"]


def load_split(name, split):
    if name == "diabetes":
        X, y = load_diabetes(return_X_y=True)
        return train_test_split(X, y, test_size=0.25, random_state=split)
    folder = UCI / name
    data = np.loadtxt(folder / "data.txt")
    feats = np.loadtxt(folder / "index_features.txt", dtype=int).ravel()
    target = int(np.loadtxt(folder / "index_target.txt"))
    tr = np.loadtxt(folder / f"index_train_{split}.txt", dtype=int)
    te = np.loadtxt(folder / f"index_test_{split}.txt", dtype=int)
    X, y = data[:, feats], data[:, target]
    return X[tr], X[te], y[tr], y[te]


def models(kind, nus):
    from overparam_sklearn import NTKRegressor, SparseDKMRegressor

    if kind == "ntk":
        return {
            "RidgeCV": lambda: RidgeCV(alphas=np.logspace(-3, 3, 13)),
            "NTKRegressor()": lambda: NTKRegressor(device="cpu"),
            "former defaults": lambda: NTKRegressor(alpha=1e-6, normalize_y=False,
                                                    device="cpu"),
        }
    out = {"RidgeCV": lambda: RidgeCV(alphas=np.logspace(-3, 3, 13))}
    for nu in nus:
        out[f"DKM nu={nu:g}"] = lambda nu=nu: SparseDKMRegressor(nu=nu, device="cpu",
                                                                 random_state=0)
    return out


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", choices=["ntk", "dkm"], default="ntk")
    parser.add_argument("--datasets", nargs="+", default=["diabetes"] + UCI_SETS)
    parser.add_argument("--splits", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--max-train", type=int, default=2000)
    parser.add_argument("--nu", nargs="+", type=float, default=[1.0, 10.0, 100.0, 1000.0])
    args = parser.parse_args(argv)
    import torch

    print(f"python {sys.version.split()[0]}, torch {torch.__version__}, torch threads "
          f"{torch.get_num_threads()}, OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS')}, "
          f"load average {os.getloadavg()[0]:.1f}; settings {vars(args)}")
    if not UCI.is_dir():
        print(f"{UCI} is absent: only load_diabetes is run")
        args.datasets = [d for d in args.datasets if d == "diabetes"]
    factories = models(args.model, args.nu)
    names = list(factories)
    print(f"{'data set':<10} {'n_train':>7} " + " ".join(f"{n:>16}" for n in names)
          + "   (test R^2, mean over splits; in brackets: minus RidgeCV)")
    for data in args.datasets:
        scores = {n: [] for n in names}
        seconds = {n: 0.0 for n in names}
        n_train = 0
        for split in args.splits:
            X_train, X_test, y_train, y_test = load_split(data, split)
            if len(X_train) > args.max_train:
                rows = np.random.default_rng(split).choice(len(X_train), args.max_train,
                                                           replace=False)
                X_train, y_train = X_train[rows], y_train[rows]
            n_train = len(X_train)
            for name in names:
                start = time.perf_counter()
                model = make_pipeline(StandardScaler(), factories[name]()).fit(X_train, y_train)
                scores[name].append(model.score(X_test, y_test))
                seconds[name] += time.perf_counter() - start
        base = np.mean(scores["RidgeCV"])
        cells = []
        for name in names:
            mean = np.mean(scores[name])
            cells.append(f"{mean:7.3f}" + ("" if name == "RidgeCV" else f" ({mean - base:+.3f})"))
        print(f"{data:<10} {n_train:>7} " + " ".join(f"{c:>16}" for c in cells)
              + "   s: " + ", ".join(f"{seconds[n]:.1f}" for n in names), flush=True)


if __name__ == "__main__":
    main()
