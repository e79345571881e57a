"""Does the PFN regressor fit noise? Pure-noise targets on real inputs.

The targets are standard normal draws independent of the inputs (``load_diabetes``'s ten
standardised features, the first 331 rows for training and the other 111 for testing, as in the
quickstart's split sizes), so the Bayes-optimal prediction is 0 and every method's test R^2
should be slightly below 0. A mean well below that means the predictor reads structure into
noise. Compared, in the same run: ``PFNRegressor`` (default ensemble), ``RidgeCV`` and an ML-II
``GaussianProcessRegressor`` (ARD RBF + WhiteKernel, ``normalize_y``).

Run::

    OMP_NUM_THREADS=1 python benchmarks/pfn_noise_check.py [--weights DIR] [--draws 5]
"""

import argparse
import warnings
from pathlib import Path

import numpy as np
from sklearn.datasets import load_diabetes
from sklearn.exceptions import ConvergenceWarning
from sklearn.gaussian_process import GaussianProcessRegressor
from sklearn.gaussian_process.kernels import RBF, ConstantKernel, WhiteKernel
from sklearn.linear_model import RidgeCV
from sklearn.metrics import r2_score

from overparam_sklearn import PFNRegressor


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--weights", default=None, help="directory with regression.json")
    p.add_argument("--draws", type=int, default=5)
    args = p.parse_args(argv)
    X, _ = load_diabetes(return_X_y=True)
    X = (X - X.mean(0)) / X.std(0)
    train, test = np.arange(331), np.arange(331, len(X))
    weights = None if args.weights is None else str(Path(args.weights) / "regression.json")
    scores = {"PFNRegressor": [], "RidgeCV": [], "GP (ARD RBF, ML-II)": []}
    for draw in range(args.draws):
        y = np.random.default_rng(draw).normal(size=len(X))
        models = {
            "PFNRegressor": PFNRegressor(weights=weights, random_state=0),
            "RidgeCV": RidgeCV(alphas=np.logspace(-3, 3, 13)),
            "GP (ARD RBF, ML-II)": GaussianProcessRegressor(
                ConstantKernel() * RBF(np.ones(X.shape[1])) + WhiteKernel(),
                normalize_y=True,
                random_state=0,
            ),
        }
        for name, model in models.items():
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", ConvergenceWarning)
                pred = model.fit(X[train], y[train]).predict(X[test])
            scores[name].append(r2_score(y[test], pred))
    print(f"test R^2 on pure-noise targets ({args.draws} draws; 0 is the best possible mean)")
    for name, v in scores.items():
        v = np.asarray(v)
        se = v.std(ddof=1) / np.sqrt(len(v))
        print(f"  {name:22s} {v.mean():+.3f} +- {se:.3f}  {np.round(v, 3)}")


if __name__ == "__main__":
    main()
