"""Quickstart: ``python -m overparam_sklearn``.

Fits every public estimator of the package on a bundled scikit-learn data set inside a
``Pipeline`` (with ``StandardScaler``) and prints a table of held-out score and wall time.
Regressors use ``load_diabetes`` (R^2), classifiers ``load_wine`` (accuracy); transformers and
scorers are shown in the pipeline where they belong (random features before a ridge, a data-diet
scorer inside a pruning classifier). Baseline rows (``RidgeCV``, ``LogisticRegression``) come
first, so the scores can be read against them. Each row is printed as soon as it is fitted; the
whole table takes well under a minute of fitting on two CPU cores, also when another busy
process shares them.

Threads: every estimator runs its torch work with the number of threads its ``n_threads``
parameter gives (``None``, the default: one thread for small work such as training loops,
torch's thread count for kernels and solves of at least 2000 rows), and restores torch's
setting afterwards. Pass ``--threads N`` to use N threads everywhere (``n_threads=N``).

Options: ``--device {auto,cpu,cuda}``, ``--only NAME`` (repeatable; an error if it matches no
row), ``--threads N``, ``--verbose`` (progress of each fit).
"""

import argparse
import time

import numpy as np
from sklearn.base import ClassifierMixin, RegressorMixin, TransformerMixin
from sklearn.datasets import load_diabetes, load_wine
from sklearn.linear_model import LogisticRegression, RidgeCV
from sklearn.model_selection import train_test_split
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

import overparam_sklearn as ops


def _data(task, seed=0):
    if task == "regression":
        X, y = load_diabetes(return_X_y=True)
        y = (y - y.mean()) / y.std()
    else:
        X, y = load_wine(return_X_y=True)
    return train_test_split(X, y, test_size=0.25, random_state=seed,
                            stratify=None if task == "regression" else y)


def _configs(device):
    """(name, task, estimator factory) for each estimator the quickstart knows how to show."""
    def has(name):
        return name in ops.__all__

    configs = [
        ("baseline: RidgeCV", "regression",
         lambda: RidgeCV(alphas=np.logspace(-3, 3, 13))),
        ("baseline: LogisticRegression", "classification",
         lambda: LogisticRegression(max_iter=1000)),
    ]
    # The package's estimators with their defaults (alpha="auto": the ridge by leave-one-out),
    # except where a row shows a feature (the NNGP mode, a finite training time t).
    if has("NTKRegressor"):
        configs += [
            ("NTKRegressor()", "regression", lambda: ops.NTKRegressor(device=device)),
            ("NTKRegressor(kernel='nngp')", "regression",
             lambda: ops.NTKRegressor(kernel="nngp", device=device)),
            ("NTKRegressor(t=100)", "regression",
             lambda: ops.NTKRegressor(t=100.0, device=device)),
        ]
    if has("NTKClassifier"):
        configs.append(("NTKClassifier()", "classification",
                        lambda: ops.NTKClassifier(device=device)))
    if has("RandomFeatureRegressor"):
        configs.append(("RandomFeatureRegressor(n_components=1000)", "regression",
                        lambda: ops.RandomFeatureRegressor(n_components=1000, random_state=0,
                                                           device=device)))
    if has("RandomFeatureClassifier"):
        configs.append(("RandomFeatureClassifier(n_components=1000)", "classification",
                        lambda: ops.RandomFeatureClassifier(n_components=1000, random_state=0,
                                                            device=device)))
    if has("RandomFeatures"):
        configs.append(("RandomFeatures + RidgeCV", "regression",
                        lambda: make_pipeline(
                            ops.RandomFeatures(n_components=1000, random_state=0, device=device),
                            RidgeCV(alphas=np.logspace(-3, 3, 13)))))
    if has("PFNRegressor"):
        configs.append(("PFNRegressor", "regression",
                        lambda: ops.PFNRegressor(device=device, random_state=0)))
    if has("PFNClassifier"):
        configs.append(("PFNClassifier", "classification",
                        lambda: ops.PFNClassifier(device=device, random_state=0)))
    if has("SparseDKMRegressor"):
        configs.append(("SparseDKMRegressor()", "regression",
                        lambda: ops.SparseDKMRegressor(device=device, random_state=0)))
    if has("SparseDKMClassifier"):
        configs.append(("SparseDKMClassifier()", "classification",
                        lambda: ops.SparseDKMClassifier(device=device, random_state=0)))
    if has("DataDietClassifier"):
        for scorer_name in ("EL2NScorer", "GraNdScorer", "ForgettingScorer"):
            if has(scorer_name):
                configs.append((
                    f"DataDietClassifier({scorer_name}, keep 70%)", "classification",
                    lambda s=scorer_name: ops.DataDietClassifier(
                        LogisticRegression(max_iter=1000),
                        getattr(ops, s)(random_state=0, device=device),
                        keep_fraction=0.7, random_state=0)))
    return configs


def _generic_configs(known, device):
    """Public estimators the table above does not name: shown with default parameters."""
    out = []
    for name in ops.__all__:
        obj = getattr(ops, name)
        if not isinstance(obj, type) or name in known or "kernels" in obj.__module__:
            continue
        if issubclass(obj, RegressorMixin):
            out.append((name, "regression", obj))
        elif issubclass(obj, ClassifierMixin):
            out.append((name, "classification", obj))
        elif issubclass(obj, TransformerMixin):
            out.append((f"{name} + RidgeCV", "regression",
                        lambda obj=obj: make_pipeline(obj(), RidgeCV())))
    return out


def _set_nested(estimator, name, value):
    """Set ``name`` on the estimator and on every estimator inside it that has it."""
    params = estimator.get_params(deep=True)
    update = {key: value for key in params if key == name or key.endswith("__" + name)}
    if update:
        estimator.set_params(**update)
    return estimator


def _select(configs, only):
    """The configs whose label contains one of ``only``; a ValueError names unknown ones."""
    if not only:
        return configs
    unknown = [o for o in only if not any(o in label for label, _, _ in configs)]
    if unknown:
        names = ", ".join(label for label, _, _ in configs)
        raise ValueError(f"--only {', '.join(map(repr, unknown))} matches no estimator; the "
                         f"rows are: {names}")
    return [c for c in configs if any(o in c[0] for o in only)]


def _all_configs(device):
    configs = _configs(device)
    known = {label.split("(")[0].split(" ")[0] for label, _, _ in configs}
    known |= {"RandomFeatures", "EL2NScorer", "GraNdScorer", "ForgettingScorer",
              "DataDietSampler"}
    return configs + _generic_configs(known, device)


def run(device="auto", only=None, verbose=0, threads=None):
    """Fit and score each row, printing it as it finishes; returns (label, task, score, s)."""
    configs = _select(_all_configs(device), only)
    rows, cpu_total = [], 0.0
    threads_note = ("n_threads=None: the thread policy" if threads is None
                    else f"n_threads={threads}")
    print(f"overparam_sklearn {ops.__version__} quickstart (device={device}, {threads_note})")
    print("regression: load_diabetes, standardised target, R^2 on a 25% test split")
    print("classification: load_wine, accuracy on a 25% stratified test split")
    print("time s: wall time of fit + score; cpu s: CPU time of this process (all threads)\n")
    title = "estimator (in Pipeline with StandardScaler)"
    header = f"{title:<52} {'task':<15} {'score':>7} {'time s':>8} {'cpu s':>7}"
    print(header)
    print("-" * len(header))
    for label, task, factory in configs:
        X_train, X_test, y_train, y_test = _data(task)
        pipe = make_pipeline(StandardScaler(), factory())
        if verbose:
            _set_nested(pipe, "verbose", verbose)
        if threads is not None:
            _set_nested(pipe, "n_threads", threads)
        start, cpu_start = time.perf_counter(), time.process_time()
        try:
            pipe.fit(X_train, y_train)
            score = pipe.score(X_test, y_test)
            status = f"{score:7.3f}"
        except Exception as exc:  # report, do not hide: the table says which one failed
            status = "  error"
            label = f"{label}: {type(exc).__name__}: {exc}"[:120]
            score = float("nan")
        elapsed = time.perf_counter() - start
        cpu = time.process_time() - cpu_start
        rows.append((label, task, score, elapsed))
        cpu_total += cpu
        print(f"{label:<52} {task:<15} {status:>7} {elapsed:8.2f} {cpu:7.2f}", flush=True)
    print("-" * len(header))
    print(f"{'total':<52} {'':<15} {'':>7} {sum(r[3] for r in rows):8.2f} {cpu_total:7.2f}",
          flush=True)
    return rows


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m overparam_sklearn", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    parser.add_argument("--only", action="append", help="run only estimators whose label "
                        "contains this text (repeatable; an error if it matches none)")
    parser.add_argument("--threads", type=int, default=None, metavar="N",
                        help="n_threads for every estimator (default: the thread policy)")
    parser.add_argument("--verbose", "-v", action="count", default=0,
                        help="show the progress of each fit (repeat for more)")
    args = parser.parse_args(argv)
    if args.threads is not None and args.threads < 1:
        parser.error(f"--threads must be >= 1, got {args.threads}")
    try:
        _select(_all_configs(args.device), args.only)
    except ValueError as exc:
        parser.error(str(exc))
    rows = run(args.device, args.only, verbose=args.verbose, threads=args.threads)
    failed = [r for r in rows if np.isnan(r[2])]
    if failed:
        raise SystemExit(f"{len(failed)} estimator(s) failed: " + ", ".join(r[0] for r in failed))


if __name__ == "__main__":
    main()
