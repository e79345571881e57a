"""Tuned infinite-width kernels against the usual baselines on the nine UCI regression sets.

For each data set of ``../shared/data/uci`` and splits 0-4 (Hernandez-Lobato & Adams 2015 splits),
inputs and target are standardised with the training split's statistics, and these models are
fit (RMSE and mean test negative log-likelihood on the original target scale):

* ``nngp_ard`` / ``nngp_iso`` / ``ntk_ard`` / ``ntk_iso``: :class:`overparam_sklearn.NTKRegressor`
  (2 hidden ReLU layers) with ``optimize="ml"``: input scales (per feature with ``ard=True``, one
  shared scale otherwise), ``w_std``, ``b_std`` and the ridge fitted by maximising the log marginal
  likelihood with exact gradients, on at most ``--tune-rows`` training rows; the tuned kernel then
  solves on at most ``--kernel-rows`` rows (by default every training row: one exact Cholesky
  solve of at most 10,741 rows, about 10 s on one core). Predictive variance: the fitted output
  scale times (the model's predictive variance + ``alpha_``).
* ``gp_rbf``: :class:`~sklearn.gaussian_process.GaussianProcessRegressor` with
  ``ConstantKernel * RBF(ARD) + WhiteKernel``, ML-II (no restarts) on at most ``--tune-rows``
  rows, then the tuned kernel on at most ``--kernel-rows`` rows (the same protocol).
* ``krr_rbf``: :class:`~sklearn.kernel_ridge.KernelRidge` (RBF) tuned by 3-fold
  :class:`~sklearn.model_selection.GridSearchCV` over ``alpha`` and ``gamma``, on at most
  ``--krr-rows`` rows (its 60 solves make it the one kernel model that cannot take them all);
  predictive variance: the cross-validated MSE (homoscedastic).
* ``rf``: :class:`~sklearn.ensemble.RandomForestRegressor` (100 trees) on all training rows;
  variance: out-of-bag MSE.
* ``hgb``: :class:`~sklearn.ensemble.HistGradientBoostingRegressor` (defaults) on all training
  rows; variance: 3-fold cross-validated MSE.

protein's training split is subsampled to 10,000 rows for every model (seeded by the split).
Every cell (data set, split, model) is cached as JSON under ``--cache`` (gitignored), so a rerun
only computes what is missing; the Markdown table is printed and written to ``--markdown``, and
an reStructuredText copy for the user guide to ``--rst``.

One command (single-threaded, in the background)::

    OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 MKL_NUM_THREADS=1 nice -n 10 \\
        python benchmarks/uci_bench.py --rst doc/modules/uci_table.rst
"""

import argparse
import json
import math
import os
import platform
import sys
import time
import warnings
from collections import Counter
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # this checkout's package, not another installed copy
UCI = ROOT.parent / "shared" / "data" / "uci"
DATASETS = ["boston", "concrete", "energy", "kin8nm", "naval", "power", "protein", "wine",
            "yacht"]
KERNEL_MODELS = ["nngp_ard", "ntk_ard", "nngp_iso", "ntk_iso"]
ARD_MODELS = ["nngp_ard", "ntk_ard"]
BASELINES = ["gp_rbf", "krr_rbf", "rf", "hgb"]
MODELS = KERNEL_MODELS + BASELINES
# the order cells are computed in: what the 10% check needs first
RUN_ORDER = ["nngp_ard", "gp_rbf", "hgb", "rf", "krr_rbf", "ntk_ard", "nngp_iso", "ntk_iso"]
PROTEIN_ROWS = 10_000


def load_split(name, split):
    folder = UCI / name
    data = np.loadtxt(folder / "data.txt")
    feats = np.loadtxt(folder / "index_features.txt", dtype=int).ravel()
    target = int(np.loadtxt(folder / "index_target.txt"))
    tr = np.loadtxt(folder / f"index_train_{split}.txt", dtype=int)
    te = np.loadtxt(folder / f"index_test_{split}.txt", dtype=int)
    if name == "protein" and len(tr) > PROTEIN_ROWS:
        tr = np.random.default_rng(split).choice(tr, PROTEIN_ROWS, replace=False)
    X, y = data[:, feats], data[:, target]
    return X[tr], y[tr], X[te], y[te]


def standardise(Xtr, ytr, Xte):
    mx, sx = Xtr.mean(0), Xtr.std(0)
    sx = np.where(sx > 0, sx, 1.0)
    my, sy = ytr.mean(), ytr.std()
    sy = sy if sy > 0 else 1.0
    return (Xtr - mx) / sx, (ytr - my) / sy, (Xte - mx) / sx, my, sy


def first_rows(n, cap, seed):
    """Indices of a seeded random subset of ``min(n, cap)`` rows."""
    if n <= cap:
        return np.arange(n)
    return np.sort(np.random.default_rng(seed).choice(n, cap, replace=False))


# ------------------------------------------------------------------------------------ models
# Each returns (mean, variance) on the standardised scale, and a dict of details.
def fit_kernel_model(model, X, y, Xte, args, seed):
    from overparam_sklearn import NTKRegressor

    kind, mode = model.split("_")
    tune = first_rows(len(X), args.tune_rows, seed)
    tuned = NTKRegressor(kernel=kind, n_hidden=args.n_hidden, activation="relu",
                         optimize="ml", ard=mode == "ard", n_restarts=args.restarts,
                         random_state=seed, device="cpu").fit(X[tune], y[tune])
    rows = first_rows(len(X), args.kernel_rows, seed + 1)
    final = NTKRegressor(kernel=kind, n_hidden=args.n_hidden, activation="relu",
                         w_std=tuned.w_std_, b_std=tuned.b_std_, alpha=tuned.alpha_,
                         input_scales=tuned.input_scales_, device="cpu").fit(X[rows], y[rows])
    mean, std = final.predict(Xte, return_std=True)
    var = tuned.kernel_scale_ * (std**2 + tuned.alpha_)
    info = dict(w_std=float(tuned.w_std_), b_std=float(tuned.b_std_),
                alpha=float(tuned.alpha_), kernel_scale=float(tuned.kernel_scale_),
                lml=float(tuned.log_marginal_likelihood_value_),
                input_scales=np.asarray(tuned.input_scales_).round(4).tolist(),
                tune_rows=len(tune), rows=len(rows))
    return mean, var, info


def fit_gp_rbf(X, y, Xte, args, seed):
    from sklearn.gaussian_process import GaussianProcessRegressor
    from sklearn.gaussian_process.kernels import RBF, ConstantKernel, WhiteKernel

    d = X.shape[1]
    kernel = (ConstantKernel(1.0, (1e-3, 1e3)) * RBF(np.ones(d), (1e-2, 1e3))
              + WhiteKernel(0.1, (1e-6, 1e1)))
    tune = first_rows(len(X), args.tune_rows, seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        gp = GaussianProcessRegressor(kernel, n_restarts_optimizer=0, random_state=seed)
        gp.fit(X[tune], y[tune])
    rows = first_rows(len(X), args.kernel_rows, seed + 1)
    final = GaussianProcessRegressor(gp.kernel_, optimizer=None).fit(X[rows], y[rows])
    mean, std = final.predict(Xte, return_std=True)  # includes the white noise
    return mean, std**2, dict(kernel=str(gp.kernel_), tune_rows=len(tune), rows=len(rows))


def fit_krr_rbf(X, y, Xte, args, seed):
    from sklearn.kernel_ridge import KernelRidge
    from sklearn.model_selection import GridSearchCV, KFold

    d = X.shape[1]
    rows = first_rows(len(X), args.krr_rows, seed + 1)
    grid = {"alpha": [1e-3, 1e-2, 1e-1, 1.0],
            "gamma": [g / d for g in (0.03, 0.1, 0.3, 1.0, 3.0)]}
    search = GridSearchCV(KernelRidge(kernel="rbf"), grid, cv=KFold(3, shuffle=True,
                                                                      random_state=seed),
                          scoring="neg_mean_squared_error").fit(X[rows], y[rows])
    mean = search.predict(Xte)
    return mean, np.full(len(Xte), -search.best_score_), dict(
        best=search.best_params_, rows=len(rows))


def fit_rf(X, y, Xte, args, seed):
    from sklearn.ensemble import RandomForestRegressor

    rf = RandomForestRegressor(n_estimators=100, oob_score=True, random_state=seed,
                               n_jobs=1).fit(X, y)
    oob_mse = float(np.mean((rf.oob_prediction_ - y) ** 2))
    return rf.predict(Xte), np.full(len(Xte), oob_mse), dict(rows=len(X))


def fit_hgb(X, y, Xte, args, seed):
    from sklearn.ensemble import HistGradientBoostingRegressor
    from sklearn.model_selection import KFold, cross_val_predict

    model = HistGradientBoostingRegressor(random_state=seed)
    cv = cross_val_predict(model, X, y, cv=KFold(3, shuffle=True, random_state=seed))
    model.fit(X, y)
    return model.predict(Xte), np.full(len(Xte), float(np.mean((cv - y) ** 2))), dict(
        rows=len(X))


def run_cell(name, split, model, args):
    Xtr, ytr, Xte, yte = load_split(name, split)
    X, y, Xt, my, sy = standardise(Xtr, ytr, Xte)
    start = time.process_time()
    wall = time.perf_counter()
    if model in KERNEL_MODELS:
        mean, var, info = fit_kernel_model(model, X, y, Xt, args, split)
    else:
        mean, var, info = globals()[f"fit_{model}"](X, y, Xt, args, split)
    cpu, wall = time.process_time() - start, time.perf_counter() - wall
    mean = mean * sy + my
    var = np.maximum(var, 1e-12) * sy**2
    rmse = float(np.sqrt(np.mean((yte - mean) ** 2)))
    nll = float(np.mean(0.5 * np.log(2 * math.pi * var) + 0.5 * (yte - mean) ** 2 / var))
    return dict(dataset=name, split=split, model=model, rmse=rmse, nll=nll, cpu_s=cpu,
                wall_s=wall, n_train=len(Xtr), **{"info": info})


# ------------------------------------------------------------------------------------- table
def mean_se(values):
    v = np.asarray(values, dtype=float)
    if len(v) < 2:
        return float(v.mean()), float("nan")
    return float(v.mean()), float(v.std(ddof=1) / math.sqrt(len(v)))


def summarise(cells, datasets, models):
    table = {}
    for name in datasets:
        for model in models:
            rows = [c for c in cells if c["dataset"] == name and c["model"] == model]
            if rows:
                table[name, model] = dict(
                    rmse=mean_se([c["rmse"] for c in rows]),
                    nll=mean_se([c["nll"] for c in rows]),
                    time=float(np.mean([c["cpu_s"] for c in rows])), n=len(rows))
    return table


def fmt(pair, digits):
    m, se = pair
    if math.isnan(se):
        return f"{m:.{digits}g}"
    return f"{m:.{digits}g} ± {se:.1g}"


def common_ratio(cells, name, best_of):
    """(ARD kernel / best baseline) RMSE on the splits where the kernel and every baseline ran.

    The ARD kernel of a split is the NNGP or the NTK, whichever ran on it with the higher log
    marginal likelihood on the tuning rows (both tune on the same rows): a choice made on the
    training data, not on the test RMSE. Only when every baseline in ``best_of`` ran.
    Returns ``(ratio, (best baseline RMSE, its name), number of splits, {kernel: splits})``.
    """
    runs = {}
    for c in cells:
        if c["dataset"] == name:
            runs.setdefault(c["model"], {})[c["split"]] = c
    if not best_of or not all(b in runs for b in best_of):
        return None
    chosen = {}
    for split in set().union(*(runs.get(k, {}) for k in ARD_MODELS)):
        options = [runs[k][split] for k in ARD_MODELS if split in runs.get(k, {})]
        chosen[split] = max(options, key=lambda c: c["info"]["lml"])
    splits = sorted(set(chosen).intersection(*(runs[b] for b in best_of)))
    if not splits:
        return None
    kern = np.mean([chosen[s]["rmse"] for s in splits])
    base = min((np.mean([runs[b][s]["rmse"] for s in splits]), b) for b in best_of)
    picks = Counter(chosen[s]["model"].split("_")[0] for s in splits)
    return kern / base[0], base, len(splits), dict(picks)


def render(table, datasets, models, best_of, cells):
    """Rows of text cells: the RMSE table (best baseline and the 10% check), NLL, time."""
    out = {}
    header = ["data set"] + models + ["best baseline", "ARD kernel / best"]
    for metric, digits in (("rmse", 3), ("nll", 3), ("time", 2)):
        rows = []
        for name in datasets:
            row = [name]
            for model in models:
                cell = table.get((name, model))
                if cell is None:
                    row.append("—")
                elif metric == "time":
                    row.append(f"{cell['time']:.3g}")
                else:
                    row.append(fmt(cell[metric], digits))
            check = common_ratio(cells, name, best_of) if metric == "rmse" else None
            if check is not None:
                ratio, (best, who), n_splits, picks = check
                kernels = ", ".join(f"{k} {n}" for k, n in sorted(picks.items()))
                row += [f"{who} {best:.3g}", f"{ratio:.2f}" + (" ✓" if ratio <= 1.1 else "")
                        + f" ({n_splits} sp.: {kernels})"]
            else:
                row += ["", ""]
            rows.append(row)
        out[metric] = (header if metric == "rmse" else header[:-2], rows)
    return out


def markdown(rendered, meta):
    lines = []
    titles = {"rmse": "Test RMSE (mean ± s.e. over splits)",
              "nll": "Test negative log-likelihood per point (mean ± s.e.)",
              "time": "CPU seconds per split (fit + predict, one thread)"}
    for metric, (header, rows) in rendered.items():
        lines += [f"**{titles[metric]}**", "", "| " + " | ".join(header) + " |",
                  "|" + "---|" * len(header)]
        lines += ["| " + " | ".join(r[:len(header)]) + " |" for r in rows]
        lines.append("")
    lines.append(meta)
    return "\n".join(lines)


def rst(rendered, meta):
    lines = []
    titles = {"rmse": "Test RMSE (mean ± s.e. over splits)",
              "nll": "Test negative log-likelihood per point (mean ± s.e.)",
              "time": "CPU seconds per split (fit + predict, one thread)"}
    for metric, (header, rows) in rendered.items():
        lines += [f".. list-table:: {titles[metric]}", "   :header-rows: 1", ""]
        for row in [header] + [r[:len(header)] for r in rows]:
            lines.append("   * - " + row[0])
            lines += [f"     - {c}" for c in row[1:]]
        lines.append("")
    lines += [meta, ""]
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--datasets", nargs="+", default=DATASETS)
    parser.add_argument("--models", nargs="+", default=MODELS, choices=MODELS)
    parser.add_argument("--splits", nargs="+", type=int, default=[0, 1, 2, 3, 4])
    parser.add_argument("--tune-rows", type=int, default=1000,
                        help="rows for marginal-likelihood tuning (GP and NTK/NNGP)")
    parser.add_argument("--kernel-rows", type=int, default=12000,
                        help="rows the tuned GP and NTK/NNGP solve on (default: all)")
    parser.add_argument("--krr-rows", type=int, default=2000,
                        help="rows the kernel ridge grid search runs on")
    parser.add_argument("--n-hidden", type=int, default=2)
    parser.add_argument("--restarts", type=int, default=0)
    parser.add_argument("--cache", type=Path, default=ROOT / "benchmarks" / ".uci_cache")
    parser.add_argument("--markdown", type=Path, default=None)
    parser.add_argument("--rst", type=Path, default=None)
    parser.add_argument("--table-only", action="store_true",
                        help="only render the table from the cache")
    args = parser.parse_args(argv)
    if not UCI.is_dir():
        print(f"UCI data not found at {UCI}; nothing to do.")
        return 0
    threads = {k: os.environ.get(k) for k in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS",
                                              "MKL_NUM_THREADS")}
    import torch

    torch.set_num_threads(1)
    print(f"threads: {threads}, torch {torch.__version__}, {platform.processor() or 'cpu'}",
          flush=True)
    tag = (f"h{args.n_hidden}-t{args.tune_rows}-k{args.kernel_rows}-r{args.restarts}"
           f"-kr{args.krr_rows}")
    args.cache.mkdir(parents=True, exist_ok=True)
    cells = []
    # splits outermost: an interrupted run still covers every data set with the first splits
    for split in args.splits:
        for name in args.datasets:
            for model in sorted(args.models, key=RUN_ORDER.index):
                path = args.cache / f"{name}-{split}-{model}-{tag}.json"
                if path.exists():
                    cells.append(json.loads(path.read_text()))
                    continue
                if args.table_only:
                    continue
                cell = run_cell(name, split, model, args)
                path.write_text(json.dumps(cell))
                cells.append(cell)
                print(f"{name:9s} split {split} {model:9s} rmse {cell['rmse']:.4g} "
                      f"nll {cell['nll']:.4g} cpu {cell['cpu_s']:.1f}s", flush=True)
    table = summarise(cells, args.datasets, args.models)
    rendered = render(table, args.datasets, args.models,
                      [m for m in BASELINES if m in args.models], cells)
    command = sys.argv[1:] if argv is None else argv
    meta = (f"Splits {args.splits}; 2 hidden ReLU layers; marginal-likelihood tuning on at most "
            f"{args.tune_rows} rows, then the tuned GP and NTK/NNGP solve on at most "
            f"{args.kernel_rows} rows, kernel ridge's grid search on at most "
            f"{args.krr_rows}; forests and boosting on all training rows; protein "
            f"subsampled to {PROTEIN_ROWS} training rows. ARD kernel / best: on each split the "
            "ARD NNGP or NTK, whichever has the higher marginal likelihood on the tuning rows "
            "(how many splits chose each), against the best baseline, both averaged over the "
            "splits (sp.) where the kernel and every baseline ran; ✓: within 10%; blank: not "
            f"every baseline ran; a value without ± is from one split. Threads: {threads}. "
            "Command: "
            f"``python benchmarks/uci_bench.py {' '.join(command)}``.")
    md = markdown(rendered, meta)
    print(md)
    if args.markdown:
        args.markdown.write_text(md + "\n")
    if args.rst:
        args.rst.write_text(rst(rendered, meta))
    return 0


if __name__ == "__main__":
    sys.exit(main())
