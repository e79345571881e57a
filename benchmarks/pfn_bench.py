"""PFN benchmark: posterior quality against exact and ML-II Gaussian processes, real data, speed.

Sections (each prints a markdown table; NLL is the mean negative log predictive density of the
test targets, in nats per point; "diff" is PFN minus reference, negative = PFN better):

1. ``machinery``: a PFN trained on a GP prior with *fixed* hyperparameters (preset ``gp_fixed``,
   not shipped; pass its exported ``.json`` with ``--gp-fixed-weights``) against that GP's exact
   posterior predictive, by context size n and dimension d (Müller et al. 2022, Fig. 3).
   Target: |diff| <= 0.05 for 10 <= n <= 500, d <= 8.
2. ``hyperprior``: the shipped regressor on datasets whose GP hyperparameters are drawn from the
   training hyperprior, against scikit-learn's ``GaussianProcessRegressor`` with ML-II (ARD RBF +
   WhiteKernel, 5 restarts). Target: PFN better for n <= 20, within 0.05 for n >= 100.
   ``fixed``: datasets from one GP inside the prior, against its exact posterior (target: within
   0.1 for n >= 100).
3. ``real`` (``--real`` runs only this): the shipping gate. Regression on load_diabetes and the
   UCI sets in ../shared/data/uci (their fixed splits), classification on load_breast_cancer,
   load_wine, load_iris and load_digits (stratified 5-fold); training subsets of n = 50, 200, 1000
   (all features); splits 0-4. Baselines in the same run: RidgeCV (NLL from its leave-one-out
   residual variance), HistGradientBoosting, GaussianProcessRegressor (ARD RBF + WhiteKernel,
   ML-II, normalize_y) / LogisticRegressionCV (log-loss scoring), HistGradientBoosting,
   GaussianProcessClassifier. RMSE and NLL (accuracy and log-loss), mean +- s.e. over splits,
   fit + predict seconds. Every baseline cell is cached as one JSON file under
   benchmarks/cache/pfn_real/ (gitignored), so a rerun, e.g. with candidate weights
   (``--weights DIR --methods pfn``), recomputes only the PFN columns.
4. ``speed``: 1000 queries from 1000 context points, d = 8 (target < 0.5 s and >= 20x faster
   than the GP's fit + predict with 5 restarts at n = 1000).

Run from the repository root, e.g.::

    OMP_NUM_THREADS=1 nice -n 10 python benchmarks/pfn_bench.py --real --real-sizes 50 200 \\
        --real-splits 0 1 2 --out benchmarks/results/pfn_real.json \\
        --real-md benchmarks/results/pfn_real.md
    OMP_NUM_THREADS=1 python benchmarks/pfn_bench.py --real --methods pfn --weights runs/x/export

    OMP_NUM_THREADS=1 python benchmarks/pfn_bench.py --sections machinery hyperprior speed \\
        --gp-fixed-weights runs/pfn_gp_fixed/export/gp_fixed.json --reps 4
"""

import argparse
import json
import os
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import torch
from scipy import stats
from sklearn.exceptions import ConvergenceWarning
from sklearn.gaussian_process import GaussianProcessRegressor
from sklearn.gaussian_process.kernels import RBF, ConstantKernel, WhiteKernel
from sklearn.model_selection import train_test_split

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from overparam_sklearn.pfn import PFNRegressor  # noqa: E402
from overparam_sklearn.pfn.priors import (  # noqa: E402
    FIXED_GP,
    _gp_hyperparameters,
    rbf_gp_sample,
    sample_inputs,
    standardize_context,
)

UCI = ROOT.parent / "shared" / "data" / "uci"


# ------------------------------------------------------------------------------------------------
# references


def exact_gp_predict(Xtr, ytr, Xte, inv_lengthscale, outputscale, noise_std):
    """Exact GP posterior predictive (mean, std of y) for an ARD RBF kernel, float64."""
    A, B = Xtr * inv_lengthscale, Xte * inv_lengthscale

    def k(a, b):
        d2 = (a**2).sum(1)[:, None] + (b**2).sum(1)[None, :] - 2 * a @ b.T
        return outputscale**2 * np.exp(-0.5 * np.maximum(d2, 0))

    K = k(A, A) + (noise_std**2 + 1e-10) * np.eye(len(A))
    L = np.linalg.cholesky(K)
    Ks = k(B, A)
    alpha = np.linalg.solve(L.T, np.linalg.solve(L, ytr))
    V = np.linalg.solve(L, Ks.T)
    var = outputscale**2 + noise_std**2 - (V**2).sum(0)
    return Ks @ alpha, np.sqrt(np.maximum(var, 1e-12))


def ml2_gp(d, seed=0):
    kernel = ConstantKernel(1.0, (1e-3, 1e3)) * RBF(np.ones(d), (1e-2, 1e3)) + WhiteKernel(
        1e-2, (1e-6, 1e1)
    )
    return GaussianProcessRegressor(
        kernel, n_restarts_optimizer=5, normalize_y=True, random_state=seed
    )


def gauss_nll(y, mean, std):
    return float(-stats.norm(mean, std).logpdf(y).mean())


class GPCache:
    """ML-II GP results are deterministic (fixed seeds) and slow on a shared CPU: ``--cache FILE``
    stores them so a rerun (or ``--gp-only`` run ahead of time) does not refit them. The speed
    section never uses the cache: its GP timing is always measured in the same run."""

    def __init__(self, path):
        self.path = Path(path) if path else None
        self.data = json.loads(self.path.read_text()) if self.path and self.path.exists() else {}
        self.hits = 0

    def get(self, key, compute):
        if key in self.data:
            self.hits += 1
            return self.data[key]
        value = compute()
        self.data[key] = value
        if self.path:
            self.path.write_text(json.dumps(self.data, indent=1))
        return value


# ------------------------------------------------------------------------------------------------
# datasets


def _gen(seed):
    g = torch.Generator()
    g.manual_seed(10**12 + seed)  # far from the training streams
    return g


def gp_dataset(seed, n, n_test, d, kind):
    """One dataset of n context + n_test test points, d features.

    kind = "hyper": hyperparameters from the training hyperprior (inputs of varied distributions,
    standardised with the context statistics); "fixed": all features relevant with lengthscale
    0.8 sqrt(d), output scale 1, noise std 0.1, same inputs; "machinery": the ``gp_fixed`` prior.
    Returns X_train, y_train, X_test, y_test and the exact-GP parameters.
    """
    g = _gen(seed)
    N = n + n_test
    n_ctx = torch.tensor([n])
    nf = torch.tensor([d])
    if kind == "machinery":
        x = torch.rand((1, N, d), generator=g, dtype=torch.float64)
        inv_l = torch.full(
            (1, d), 1.0 / (FIXED_GP["lengthscale_per_sqrt_d"] * d**0.5), dtype=torch.float64
        )
        s = torch.tensor([FIXED_GP["outputscale"]], dtype=torch.float64)
        noise = torch.tensor([FIXED_GP["noise_std"]], dtype=torch.float64)
    else:
        x = standardize_context(sample_inputs(g, 1, N, nf, d), n_ctx)
        if kind == "hyper":
            inv_l, s, noise = _gp_hyperparameters(g, nf, d)
        else:
            inv_l = torch.full((1, d), 1.0 / (0.8 * d**0.5), dtype=torch.float64)
            s = torch.tensor([1.0], dtype=torch.float64)
            noise = torch.tensor([0.1], dtype=torch.float64)
    _, y = rbf_gp_sample(g, x, inv_l, s, noise)
    X, Y = x[0].numpy(), y[0].numpy()
    params = (inv_l[0].numpy(), float(s[0]), float(noise[0]))
    return X[:n], Y[:n], X[n:], Y[n:], params


def load_uci(name, split):
    folder = UCI / name
    data = np.loadtxt(folder / "data.txt")
    feats = np.loadtxt(folder / "index_features.txt", dtype=int)
    target = int(np.loadtxt(folder / "index_target.txt"))
    tr = np.loadtxt(folder / f"index_train_{split}.txt", dtype=int)
    te = np.loadtxt(folder / f"index_test_{split}.txt", dtype=int)
    X, y = data[:, feats], data[:, target]
    return X[tr], y[tr], X[te], y[te]


# ------------------------------------------------------------------------------------------------
# sections


def pfn_nll(reg, X, y):
    dist = reg.predict_distribution(X)
    return float(-dist.logpdf(y).mean()), dist


def section_machinery(args):
    if not args.gp_fixed_weights or not Path(args.gp_fixed_weights).exists():
        print("\n## machinery: skipped (pass --gp-fixed-weights, the exported gp_fixed model)")
        return []
    print(
        "\n## machinery: fixed-hyperparameter GP prior, PFN vs exact GP posterior "
        "(NLL, nats/point)"
    )
    print("| d | n | exact GP | PFN | diff |\n|---|---|---|---|---|")
    rows = []
    for d in args.dims_machinery:
        for n in args.sizes_machinery:
            e, p = [], []
            for r in range(args.reps):
                Xtr, ytr, Xte, yte, (il, s, nz) = gp_dataset(
                    1000 * d + 7 * n + r, n, args.n_test, d, "machinery"
                )
                m, sd = exact_gp_predict(Xtr, ytr, Xte, il, s, nz)
                e.append(gauss_nll(yte, m, sd))
                # one network pass on the standardised inputs (no ensemble, no stacking): the
                # check is of the network itself; inputs are zero-padded as in training
                reg = PFNRegressor(
                    n_estimators=1,
                    input_transform="standard",
                    weights=args.gp_fixed_weights,
                    device="cpu",
                    random_state=r,
                )
                p.append(pfn_nll(reg.fit(Xtr, ytr), Xte, yte)[0])
            row = dict(d=d, n=n, exact=np.mean(e), pfn=np.mean(p))
            rows.append(row)
            diff = row["pfn"] - row["exact"]
            print(
                f"| {d} | {n} | {row['exact']:.3f} | {row['pfn']:.3f} | {diff:+.3f} |", flush=True
            )
    return rows


def section_hyperprior(args):
    print("\n## hyperprior and fixed: shipped PFN vs GP (NLL, nats/point; mean over datasets)")
    print("| data | d | n | reference | ref NLL | PFN NLL | diff |\n|---|---|---|---|---|---|---|")
    rows = []
    for kind in ("hyper", "fixed"):
        for d in args.dims:
            for n in args.sizes:
                ref, pf = [], []
                for r in range(args.reps):
                    Xtr, ytr, Xte, yte, (il, s, nz) = gp_dataset(
                        50_000 + 1000 * d + 7 * n + r, n, args.n_test, d, kind
                    )
                    if kind == "hyper":

                        def fit_gp(d=d, r=r, Xtr=Xtr, ytr=ytr, Xte=Xte, yte=yte):
                            with warnings.catch_warnings():
                                warnings.simplefilter("ignore", ConvergenceWarning)
                                gp = ml2_gp(d, r).fit(Xtr, ytr)
                            m, sd = gp.predict(Xte, return_std=True)
                            return gauss_nll(yte, m, sd)

                        ref.append(args.cache.get(f"hyper/{d}/{n}/{r}/{args.n_test}", fit_gp))
                    else:
                        m, sd = exact_gp_predict(Xtr, ytr, Xte, il, s, nz)
                        ref.append(gauss_nll(yte, m, sd))
                    if args.gp_only:
                        continue
                    reg = PFNRegressor(
                        n_estimators=args.n_estimators, device="cpu", random_state=r
                    ).fit(Xtr, ytr)
                    pf.append(pfn_nll(reg, Xte, yte)[0])
                name = "GP ML-II (5 restarts)" if kind == "hyper" else "exact GP"
                row = dict(
                    kind=kind,
                    d=d,
                    n=n,
                    ref=float(np.mean(ref)),
                    pfn=float(np.mean(pf)) if pf else np.nan,
                )
                rows.append(row)
                diff = row["pfn"] - row["ref"]
                print(
                    f"| {kind} | {d} | {n} | {name} | {row['ref']:.3f} | {row['pfn']:.3f} | "
                    f"{diff:+.3f} |",
                    flush=True,
                )
    return rows


# ------------------------------------------------------------------------------------------------
# real data: the shipping gate of the PFN issue

REG_SETS = [
    "diabetes",
    "boston",
    "concrete",
    "energy",
    "kin8nm",
    "naval",
    "power",
    "protein",
    "wine",
    "yacht",
]
CLF_SETS = ["breast_cancer", "wine_clf", "iris", "digits"]
REG_METHODS = ["ridge", "hgb", "gp", "pfn"]
CLF_METHODS = ["logreg", "hgb", "gpc", "pfn"]
METHOD_NAMES = {
    "ridge": "RidgeCV",
    "hgb": "HGB",
    "gp": "GP ML-II",
    "logreg": "LogRegCV",
    "gpc": "GPC",
    "pfn": "PFN",
}
CACHE_DIR = ROOT / "benchmarks" / "cache" / "pfn_real"  # gitignored


def real_split(name, split):
    """(X_train, y_train, X_test, y_test, task) of split ``split`` of a real dataset.

    UCI sets use their fixed split files; the sklearn sets a (stratified, for classification)
    5-fold split with a fixed shuffle, fold ``split`` being the test set.
    """
    from sklearn import datasets
    from sklearn.model_selection import KFold, StratifiedKFold

    if name in REG_SETS and name != "diabetes":
        if not (UCI / name).exists():
            raise FileNotFoundError(f"{UCI / name} is absent")
        return (*load_uci(name, split), "regression")
    loaders = {
        "diabetes": datasets.load_diabetes,
        "breast_cancer": datasets.load_breast_cancer,
        "wine_clf": datasets.load_wine,
        "iris": datasets.load_iris,
        "digits": datasets.load_digits,
    }
    X, y = loaders[name](return_X_y=True)
    task = "regression" if name == "diabetes" else "classification"
    folds = (KFold if task == "regression" else StratifiedKFold)(5, shuffle=True, random_state=0)
    tr, te = list(folds.split(X, y))[split]
    return X[tr], y[tr], X[te], y[te], task


def real_subset(Xtr, ytr, n, split, task):
    """The first ``n`` training points of a seeded shuffle (stratified for classification)."""
    if n >= len(ytr):
        return Xtr, ytr
    seed = 1000 * split + n
    if task == "classification":
        idx, _ = train_test_split(
            np.arange(len(ytr)), train_size=n, stratify=ytr, random_state=seed
        )
    else:
        idx = np.random.RandomState(seed).choice(len(ytr), n, replace=False)
    idx = np.sort(idx)
    return Xtr[idx], ytr[idx]


def _ridge_fit_predict(Xtr, ytr, Xte):
    from sklearn.linear_model import RidgeCV
    from sklearn.preprocessing import StandardScaler

    sc = StandardScaler().fit(Xtr)
    alphas = np.logspace(-6, 6, 25)
    m = RidgeCV(alphas=alphas, store_cv_results=True).fit(sc.transform(Xtr), ytr)
    # predictive std: the leave-one-out residual variance at the chosen alpha (homoscedastic)
    loo = m.cv_results_[:, int(np.argmin(np.abs(alphas - m.alpha_)))]
    return m.predict(sc.transform(Xte)), np.full(len(Xte), np.sqrt(loo.mean()))


def real_fit_predict(method, task, Xtr, ytr, Xte, args, seed):
    """Predictions of one method: regression (mean, std or None), classification probabilities
    (columns in the order of np.unique(ytr))."""
    from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor
    from sklearn.gaussian_process import GaussianProcessClassifier
    from sklearn.linear_model import LogisticRegressionCV
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from overparam_sklearn.pfn import PFNClassifier

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        if method == "pfn":
            kw = dict(device="cpu", random_state=seed)
            if args.n_estimators is not None:
                kw["n_estimators"] = args.n_estimators
            if task == "regression":
                if args.weights:
                    kw["weights"] = str(Path(args.weights) / "regression.json")
                reg = PFNRegressor(**kw).fit(Xtr, ytr)
                return reg.predict(Xte, return_std=True)
            if args.weights:
                kw["weights"] = str(Path(args.weights) / "classification.json")
            return PFNClassifier(**kw).fit(Xtr, ytr).predict_proba(Xte)
        if method == "ridge":
            return _ridge_fit_predict(Xtr, ytr, Xte)
        if method == "hgb" and task == "regression":
            return HistGradientBoostingRegressor(random_state=seed).fit(Xtr, ytr).predict(
                Xte
            ), None
        if method == "gp":
            sc = StandardScaler().fit(Xtr)
            gp = ml2_gp(Xtr.shape[1], seed)
            gp.n_restarts_optimizer = args.gp_restarts
            gp.fit(sc.transform(Xtr), ytr)
            return gp.predict(sc.transform(Xte), return_std=True)
        if method == "logreg":
            model = make_pipeline(
                StandardScaler(),
                LogisticRegressionCV(
                    l1_ratios=(0.0,),
                    scoring="neg_log_loss",
                    max_iter=2000,
                    use_legacy_attributes=False,
                ),
            )
        elif method == "hgb":
            model = HistGradientBoostingClassifier(random_state=seed)
        elif method == "gpc":
            model = make_pipeline(
                StandardScaler(),
                GaussianProcessClassifier(
                    ConstantKernel(1.0, (1e-3, 1e3)) * RBF(1.0, (1e-2, 1e3)), random_state=seed
                ),
            )
        else:
            raise ValueError(f"unknown method {method!r} for {task}")
        return model.fit(Xtr, ytr).predict_proba(Xte)


def real_cell(name, n, split, method, args):
    """One (dataset, n, split, method) cell: metrics and fit + predict seconds. Baselines are
    cached on disk (one JSON file per cell); the PFN is recomputed unless ``--cache-pfn``."""
    from sklearn.metrics import log_loss

    cache = None
    if method != "pfn" or args.cache_pfn:
        tag = method if method != "pfn" else f"pfn-{args.cache_pfn}"
        cache = Path(args.cache_dir) / tag / f"{name}_n{n}_s{split}.json"
        if cache.exists():
            return json.loads(cache.read_text())
    Xtr, ytr, Xte, yte, task = real_split(name, split)
    Xs, ys = real_subset(Xtr, ytr, n, split, task)
    t = time.perf_counter()
    out = real_fit_predict(method, task, Xs, ys, Xte, args, split)
    seconds = time.perf_counter() - t
    if task == "regression":
        mean, std = out
        res = dict(rmse=float(np.sqrt(np.mean((mean - yte) ** 2))))
        res["nll"] = gauss_nll(yte, mean, std) if std is not None else None
    else:
        classes = np.unique(ys)
        proba = np.clip(out, 1e-15, 1.0)
        proba /= proba.sum(1, keepdims=True)
        res = dict(
            acc=float(np.mean(classes[np.argmax(proba, 1)] == yte)),
            logloss=float(log_loss(yte, proba, labels=classes)),
        )
    res.update(seconds=seconds, n_train=len(ys), d=Xtr.shape[1], n_test=len(yte))
    if cache is not None:
        cache.parent.mkdir(parents=True, exist_ok=True)
        tmp = cache.with_suffix(".tmp")
        tmp.write_text(json.dumps(res))
        tmp.replace(cache)
    return res


def _mse(values):
    v = np.asarray([x for x in values if x is not None], dtype=float)
    if v.size == 0:
        return None, None
    se = v.std(ddof=1) / np.sqrt(v.size) if v.size > 1 else 0.0
    return float(v.mean()), float(se)


def real_tables(rows, compare=None, style="md"):
    """Tables (one per task and metric) from the aggregated rows: Markdown (``style="md"``) or
    reStructuredText list-tables (``"rst"``, included by the user guide)."""
    lines = []
    by_task = {
        "regression": [r for r in rows if r["task"] == "regression"],
        "classification": [r for r in rows if r["task"] == "classification"],
    }
    metrics = {
        "regression": [("rmse", "RMSE", "{:.3g}"), ("nll", "NLL (nats)", "{:.3f}")],
        "classification": [("acc", "accuracy", "{:.3f}"), ("logloss", "log-loss", "{:.3f}")],
    }
    for task, trows in by_task.items():
        if not trows:
            continue
        methods = [
            m
            for m in (REG_METHODS if task == "regression" else CLF_METHODS)
            if any(m in r["methods"] for r in trows)
        ]
        extra = ["pfn_before"] if compare else []
        for key, label, fmt in metrics[task] + [("seconds", "fit + predict s", "{:.2g}")]:
            head = ["data", "n", "d", "splits"] + [METHOD_NAMES[m] for m in methods]
            head += ["PFN (before)"] if extra else []
            body = []
            for r in trows:
                cells = [r["name"], str(r["n_train"]), str(r["d"]), str(r["splits"])]
                for m in methods + extra:
                    src = (
                        r["methods"].get(m)
                        if m != "pfn_before"
                        else (compare.get((r["name"], r["n"]), {}) if compare else {})
                    )
                    mean, se = (src or {}).get(key, (None, None))
                    cells.append("–" if mean is None else f"{fmt.format(mean)} ± {fmt.format(se)}")
                body.append(cells)
            title = f"{task}: {label}, mean ± s.e. over splits"
            if style == "rst":
                lines += ["", f".. list-table:: {title}", "   :header-rows: 1", ""]
                for row in [head] + body:
                    lines.append("   * - " + row[0])
                    lines += [f"     - {c}" for c in row[1:]]
            else:
                lines += ["", title, "", "| " + " | ".join(head) + " |"]
                lines.append("|" + "---|" * len(head))
                lines += ["| " + " | ".join(row) + " |" for row in body]
    return "\n".join(lines)


def real_summary(rows):
    """How the PFN stands against the issue's targets."""
    out = []
    reg = [r for r in rows if r["task"] == "regression" and "pfn" in r["methods"]]
    small = [r for r in reg if r["n"] <= 200]
    for n in sorted({r["n"] for r in small}):
        ok, total = 0, 0
        for r in (r for r in small if r["n"] == n):
            m = r["methods"]
            best = min(m[k]["rmse"][0] for k in ("ridge", "hgb", "gp") if k in m)
            if "gp" not in m:
                continue
            total += 1
            ok += m["pfn"]["nll"][0] <= m["gp"]["nll"][0] and m["pfn"]["rmse"][0] <= 1.05 * best
        out.append(
            f"regression n = {n}: PFN NLL <= GP and RMSE within 5% of the best baseline "
            f"on {ok} of {total} sets (target: 7 of 10)"
        )
    big = [r for r in reg if r["n"] >= 1000 and "gp" in r["methods"]]
    if big:
        diff = np.mean([r["methods"]["pfn"]["nll"][0] - r["methods"]["gp"]["nll"][0] for r in big])
        out.append(
            f"regression n = 1000: mean PFN - GP NLL {diff:+.3f} nats over {len(big)} sets "
            "(target <= 0.1)"
        )
    clf = [r for r in rows if r["task"] == "classification" and "pfn" in r["methods"]]
    for n in sorted({r["n"] for r in clf}):
        cr = [r for r in clf if r["n"] == n]
        parts = []
        for k in ("logreg", "hgb", "gpc"):
            if all(k in r["methods"] for r in cr):
                d = np.mean(
                    [r["methods"]["pfn"]["logloss"][0] - r["methods"][k]["logloss"][0] for r in cr]
                )
                parts.append(f"PFN - {METHOD_NAMES[k]} log-loss {d:+.3f}")
        gap = max(
            max(r["methods"][k]["acc"][0] for k in ("logreg", "hgb", "gpc") if k in r["methods"])
            - r["methods"]["pfn"]["acc"][0]
            for r in cr
        )
        parts.append(f"largest accuracy gap to the best baseline {100 * gap:.1f} points")
        out.append(f"classification n = {n} (mean over {len(cr)} sets): " + "; ".join(parts))
    return out


def _compare_rows(path):
    if not path:
        return None
    old = json.loads(Path(path).read_text())
    old_rows = old["real"]["rows"] if "real" in old else old["rows"]
    return {(r["name"], r["n"]): r["methods"].get("pfn") for r in old_rows}


def section_real(args):
    sets = args.sets or (REG_SETS + CLF_SETS)
    methods = args.methods
    print(
        f"\n## real data: sets {sets}, n {args.real_sizes}, splits {args.real_splits}, "
        f"methods {methods}; PFN weights {args.weights or 'shipped'}"
    )
    rows = []
    for name in sets:
        task = "regression" if name in REG_SETS else "classification"
        allowed = REG_METHODS if task == "regression" else CLF_METHODS
        for n in args.real_sizes:
            per = {}
            info = None
            for method in [m for m in allowed if m in methods]:
                cells = []
                for split in args.real_splits:
                    try:
                        c = real_cell(name, n, split, method, args)
                    except FileNotFoundError as e:
                        print(f"{name}: skipped ({e})")
                        break
                    cells.append(c)
                    info = c
                    if args.verbose:
                        print(
                            f"  {name} n={n} split={split} {method}: "
                            + ", ".join(
                                f"{k}={v:.4g}" for k, v in c.items() if isinstance(v, float)
                            ),
                            flush=True,
                        )
                if cells:
                    keys = ("rmse", "nll") if task == "regression" else ("acc", "logloss")
                    per[method] = {k: _mse([c[k] for c in cells]) for k in keys + ("seconds",)}
                    per[method]["splits"] = len(cells)
            if info is None:
                continue
            row = dict(
                name=name,
                task=task,
                n=n,
                n_train=info["n_train"],
                d=info["d"],
                splits=min(v["splits"] for v in per.values()),
                methods=per,
            )
            rows.append(row)
            print(
                f"{name} n={n}: "
                + "; ".join(
                    f"{k} "
                    + ", ".join(
                        f"{kk}={vv[0]:.4g}"
                        for kk, vv in v.items()
                        if isinstance(vv, tuple) and vv[0] is not None
                    )
                    for k, v in per.items()
                ),
                flush=True,
            )
    compare = _compare_rows(args.compare)
    return write_real(rows, compare, args)


def write_real(rows, compare, args):
    """Print and write (``--real-md``, ``--real-rst``) the tables and the target summary."""
    table = real_tables(rows, compare)
    summary = real_summary(rows)
    command = " ".join(["python benchmarks/pfn_bench.py"] + sys.argv[1:])
    if args.tables_from:
        header = f"Tables from `{args.tables_from}` (measured as the user guide says)."
    else:
        header = (
            f"Measured with `{command}` (torch threads {torch.get_num_threads()}, "
            f"OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS')}, PFN weights: "
            f"{args.weights or 'shipped'}; load average {os.getloadavg()[0]:.1f} on "
            f"{os.cpu_count()} cores: times are wall seconds)."
        )
    text = header + "\n" + table + "\n\n" + "\n".join(f"* {s}" for s in summary) + "\n"
    print(text)
    if args.real_md:
        Path(args.real_md).write_text(text)
    if args.real_rst:
        bullets = "\n".join(f"* {s}" for s in summary)
        rst = header + "\n" + real_tables(rows, compare, "rst") + "\n\n" + bullets + "\n"
        Path(args.real_rst).write_text(rst)
    return {"rows": rows, "summary": summary}


def section_speed(args):
    print(
        f"\n## speed: 1000 queries from 1000 context points, d = 8 (GP: ML-II with "
        f"{args.speed_gp_restarts} restarts)"
    )
    Xtr, ytr, Xte, yte, _ = gp_dataset(7, 1000, 1000, 8, "fixed")
    out, cpu = {}, {}
    for ne in sorted({1, args.n_estimators}):
        reg = PFNRegressor(n_estimators=ne, device="cpu", random_state=0).fit(Xtr, ytr)
        reg.predict(Xte[:10])  # load the weights once
        ts, cs = [], []
        for _ in range(3):
            t, c = time.perf_counter(), time.process_time()
            reg.fit(Xtr, ytr).predict(Xte, return_std=True)
            ts.append(time.perf_counter() - t)
            cs.append(time.process_time() - c)
        out[f"pfn_{ne}"] = min(ts)
        cpu[f"pfn_{ne}"] = min(cs)
    t, c = time.perf_counter(), time.process_time()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        gp = ml2_gp(8)
        gp.n_restarts_optimizer = args.speed_gp_restarts
        gp.fit(Xtr, ytr).predict(Xte, return_std=True)
    out["gp"] = time.perf_counter() - t
    cpu["gp"] = time.process_time() - c
    print(
        f"load average at the end: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores (wall "
        "time includes waiting for the CPU; CPU seconds do not)"
    )
    print(
        "| method | fit + predict wall s | CPU s | GP / method (wall) | GP / method (CPU) |\n"
        "|---|---|---|---|---|"
    )
    for k, v in out.items():
        print(
            f"| {k} | {v:.3f} | {cpu[k]:.3f} | {out['gp'] / v:.1f}x | {cpu['gp'] / cpu[k]:.1f}x |"
        )
    return {"wall": out, "cpu": cpu}


def main(argv=None):
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--sections", nargs="+", default=["machinery", "hyperprior", "real", "speed"])
    p.add_argument(
        "--gp-fixed-weights",
        default=str(ROOT / "runs" / "pfn_gp_fixed" / "export" / "gp_fixed.json"),
    )
    p.add_argument("--reps", type=int, default=4, help="datasets per (n, d) cell")
    p.add_argument("--n-test", type=int, default=200)
    p.add_argument("--sizes", type=int, nargs="+", default=[10, 20, 100, 200])
    p.add_argument("--dims", type=int, nargs="+", default=[1, 4, 8])
    p.add_argument("--sizes-machinery", type=int, nargs="+", default=[10, 50, 100, 500])
    p.add_argument("--dims-machinery", type=int, nargs="+", default=[1, 4, 8])
    p.add_argument(
        "--n-estimators", type=int, default=None, help="PFN members (default: the estimator's)"
    )
    p.add_argument("--real", action="store_true", help="only the real-data section")
    p.add_argument(
        "--sets", nargs="+", default=None, help=f"real data: subset of {REG_SETS + CLF_SETS}"
    )
    p.add_argument("--real-sizes", type=int, nargs="+", default=[50, 200, 1000])
    p.add_argument("--real-splits", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    p.add_argument(
        "--methods",
        nargs="+",
        default=sorted(set(REG_METHODS + CLF_METHODS)),
        help="real data: methods to run (pfn ridge hgb gp logreg gpc)",
    )
    p.add_argument(
        "--weights",
        default=None,
        help="directory holding regression.json/.pt and classification.json/.pt "
        "(default: the shipped weights)",
    )
    p.add_argument("--gp-restarts", type=int, default=2, help="real data: ML-II GP restarts")
    p.add_argument("--cache-dir", default=str(CACHE_DIR), help="real data: per-cell cache")
    p.add_argument(
        "--cache-pfn",
        default=None,
        metavar="TAG",
        help="real data: also cache PFN cells under this tag (resumable PFN runs)",
    )
    p.add_argument(
        "--compare",
        default=None,
        help="real data: JSON of an earlier run; its PFN column is shown beside",
    )
    p.add_argument("--real-md", default=None, help="real data: write the Markdown tables here")
    p.add_argument("--real-rst", default=None, help="real data: write reST tables here")
    p.add_argument(
        "--tables-from",
        default=None,
        metavar="JSON",
        help="real data: only rewrite the tables from the JSON (--out) of an earlier run",
    )
    p.add_argument("--verbose", action="store_true")
    p.add_argument("--speed-gp-restarts", type=int, default=5)
    p.add_argument("--out", default=None, help="write all rows as JSON here")
    p.add_argument(
        "--cache", default=None, help="JSON file caching the (deterministic) ML-II GP results"
    )
    p.add_argument(
        "--gp-only", action="store_true", help="only compute (and cache) the GP references"
    )
    args = p.parse_args(argv)
    if args.real:
        args.sections = ["real"]
    if args.n_estimators is None and set(args.sections) - {"real"}:
        args.n_estimators = PFNRegressor().n_estimators  # the default ensemble
    args.cache = GPCache(args.cache)
    if args.tables_from:
        rows = json.loads(Path(args.tables_from).read_text())["real"]["rows"]
        write_real(rows, _compare_rows(args.compare), args)
        return
    print(
        f"# PFN benchmark  torch threads={torch.get_num_threads()}  OMP_NUM_THREADS="
        f"{os.environ.get('OMP_NUM_THREADS')}  torch {torch.__version__}"
    )
    results = {}
    for name in args.sections:
        t = time.perf_counter()
        results[name] = globals()[f"section_{name}"](args)
        print(
            f"({name}: {time.perf_counter() - t:.0f} s; GP results from cache so far: "
            f"{args.cache.hits})"
        )
    if args.out:
        with open(args.out, "w") as fh:
            json.dump(results, fh, indent=1, default=float)


if __name__ == "__main__":
    main()
