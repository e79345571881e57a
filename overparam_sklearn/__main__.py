"""Quickstart: ``python -m overparam_sklearn``.

Fits every public estimator of the package on a bundled scikit-learn data set inside a
``Pipeline`` (with ``StandardScaler``) and prints a table of held-out score and wall time.
Regressors use ``load_diabetes`` (R^2), classifiers ``load_wine`` (accuracy); transformers and
scorers are shown in the pipeline where they belong (random features before a ridge, a data-diet
scorer inside a pruning classifier). Runs on the CPU in about a minute.

Options: ``--device {auto,cpu,cuda}``, ``--only NAME`` (repeatable).
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

    configs = []
    if has("NTKRegressor"):
        configs += [
            ("NTKRegressor(ntk, t=inf)", "regression",
             lambda: ops.NTKRegressor(n_hidden=2, alpha=1.0, device=device)),
            ("NTKRegressor(nngp, t=inf)", "regression",
             lambda: ops.NTKRegressor(kernel="nngp", n_hidden=2, alpha=1.0, device=device)),
            ("NTKRegressor(ntk, t=100)", "regression",
             lambda: ops.NTKRegressor(n_hidden=2, alpha=1e-3, t=100.0, device=device)),
        ]
    if has("NTKClassifier"):
        configs.append(("NTKClassifier", "classification",
                        lambda: ops.NTKClassifier(n_hidden=2, alpha=0.1, device=device)))
    if has("RandomFeatureRegressor"):
        configs.append(("RandomFeatureRegressor", "regression",
                        lambda: ops.RandomFeatureRegressor(
                            n_components=1000, alpha=np.logspace(-3, 3, 13), random_state=0,
                            device=device)))
    if has("RandomFeatureClassifier"):
        configs.append(("RandomFeatureClassifier", "classification",
                        lambda: ops.RandomFeatureClassifier(
                            n_components=1000, alpha=np.logspace(-3, 3, 13), random_state=0,
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
        # nu=100: with 331 noisy training rows the default nu=1 lets the learned Grams overfit
        # (measured test R^2 -0.29 against 0.29); see the DKM user guide.
        configs.append(("SparseDKMRegressor(nu=100)", "regression",
                        lambda: ops.SparseDKMRegressor(nu=100.0, device=device, random_state=0)))
    if has("SparseDKMClassifier"):
        configs.append(("SparseDKMClassifier", "classification",
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


def run(device="auto", only=None):
    configs = _configs(device)
    known = {label.split("(")[0].split(" ")[0] for label, _, _ in configs}
    known |= {"RandomFeatures", "EL2NScorer", "GraNdScorer", "ForgettingScorer",
              "DataDietSampler"}
    configs += _generic_configs(known, device)
    if only:
        configs = [c for c in configs if any(o in c[0] for o in only)]
    rows = []
    print(f"overparam_sklearn {ops.__version__} quickstart (device={device})")
    print("regression: load_diabetes, standardised target, R^2 on a 25% test split")
    print("classification: load_wine, accuracy on a 25% stratified test split\n")
    title = "estimator (in Pipeline with StandardScaler)"
    header = f"{title:<52} {'task':<15} {'score':>7} {'time s':>8}"
    print(header)
    print("-" * len(header))
    for label, task, factory in configs:
        X_train, X_test, y_train, y_test = _data(task)
        pipe = make_pipeline(StandardScaler(), factory())
        start = time.perf_counter()
        try:
            pipe.fit(X_train, y_train)
            score = pipe.score(X_test, y_test)
            status = f"{score:7.3f}"
        except Exception as exc:  # report, do not hide: the table says which one failed
            status = "  error"
            label = f"{label}: {type(exc).__name__}: {exc}"[:120]
            score = float("nan")
        elapsed = time.perf_counter() - start
        rows.append((label, task, score, elapsed))
        print(f"{label:<52} {task:<15} {status:>7} {elapsed:8.2f}", flush=True)
    return rows


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m overparam_sklearn", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    parser.add_argument("--only", action="append", help="run only estimators whose label "
                        "contains this text (repeatable)")
    args = parser.parse_args(argv)
    rows = run(args.device, args.only)
    failed = [r for r in rows if np.isnan(r[2])]
    if failed:
        raise SystemExit(f"{len(failed)} estimator(s) failed: " + ", ".join(r[0] for r in failed))


if __name__ == "__main__":
    main()
