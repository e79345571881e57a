"""Random-feature ridge against scikit-learn, measured in the same run.

On identical random features (n = 20000, d = 16, N = 4000, a grid of 10 alphas):

1. grid fit: our one-eigendecomposition ridge path (``RandomFeatureRegressor(alpha=grid)`` and
   its solver alone on the same feature matrix) against ``RidgeCV(alphas=grid)`` with its default
   ``gcv_mode``; same selected alpha, predictions to 1e-6, time ratio (target >= 4x);
2. single alpha: ``RandomFeatureRegressor(activation="fourier", alpha=a)`` against
   ``RBFSampler + Ridge(a)`` on the same RBF kernel (target >= 1.5x), with ``Nystroem + Ridge``
   beside them.

Thread settings are recorded in the output. Run::

    OMP_NUM_THREADS=1 python benchmarks/rf_bench.py            # the issue's sizes
    OMP_NUM_THREADS=1 python benchmarks/rf_bench.py --n 4000 --N 800   # quick
    OMP_NUM_THREADS=1 python benchmarks/rf_bench.py --theory-table     # theory vs simulation
"""

import argparse
import json
import math
import os
import platform
import time
from pathlib import Path

import numpy as np
import torch
from sklearn.kernel_approximation import Nystroem, RBFSampler
from sklearn.linear_model import Ridge, RidgeCV
from sklearn.pipeline import make_pipeline
from threadpoolctl import threadpool_info

from overparam_sklearn import RandomFeatureRegressor, RandomFeatures
from overparam_sklearn._linalg import ridge_coef, ridge_decompose, ridge_path


def _timed(fn):
    start = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - start


def _task(n, n_test, d, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n + n_test, d))
    w = rng.normal(size=d) / math.sqrt(d)
    y = np.sin(2 * X @ w) + 0.5 * np.cos(X[:, 0] * X[:, 1]) + 0.1 * rng.normal(size=n + n_test)
    return X[:n], y[:n], X[n:], y[n:]


def theory_table(trials=30, seed=0):
    """Monte-Carlo RF ridge (``RandomFeatureRegressor``) against ``rf_risk``.

    The linear-Gaussian power-law task: ``z ~ N(0, I_M)``, inputs ``x = sqrt(M lambda) z``, linear
    features ``phi(x) = W x / sqrt(N)`` (``activation="identity"``) whose kernel is
    ``sum_i lambda_i z_i z'_i``, target ``y = v.z + noise``; no intercept, as in the theory. The
    test MSE is exact: ``|beta - v|^2 + noise`` for the learned linear function ``beta`` of ``z``.
    """
    from overparam_sklearn.theory import power_law_task, rf_risk

    M, noise = 400, 0.1
    lam, v = power_law_task(M, 1.5, 1.5)
    scale = np.sqrt(M * lam)
    rng = np.random.default_rng(seed)
    print(f"{'n':>4} {'N':>5} {'ridge':>7} {'theory test':>12} {'MC test':>9} {'rel':>7} "
          f"{'+-se':>6} {'theory train':>13} {'MC train':>9}")
    rows = []
    for n in (100, 200):
        for N in (50, 200, 800):
            for ridge in (0.0, 1e-3, 1e-1):
                if ridge == 0 and N == n:
                    continue
                test, train = [], []
                for _ in range(trials):
                    Z = rng.standard_normal((n, M))
                    y = Z @ v + math.sqrt(noise) * rng.standard_normal(n)
                    reg = RandomFeatureRegressor(
                        n_components=N, activation="identity", alpha=ridge, fit_intercept=False,
                        random_state=int(rng.integers(2**31)), device="cpu").fit(Z * scale, y)
                    W = reg.random_features_.weights_
                    beta = scale * (W @ reg.coef_) / math.sqrt(N)
                    test.append(np.sum((beta - v) ** 2) + noise)
                    train.append(np.mean((reg.predict(Z * scale) - y) ** 2))
                th = rf_risk(lam, v, n, N, ridge, noise)
                mt, se = np.mean(test), np.std(test) / math.sqrt(trials)
                rows.append(dict(n=n, N=N, ridge=ridge, theory_test=th.test_mse, mc_test=mt,
                                 mc_test_se=se, theory_train=th.train_mse,
                                 mc_train=float(np.mean(train))))
                print(f"{n:4d} {N:5d} {ridge:7.0e} {th.test_mse:12.4f} {mt:9.4f} "
                      f"{mt / th.test_mse - 1:+7.3f} {se / mt:6.3f} {th.train_mse:13.4f} "
                      f"{np.mean(train):9.4f}")
    return rows


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--theory-table", action="store_true",
                        help="print the Monte-Carlo vs rf_risk table and exit")
    parser.add_argument("--n", type=int, default=20000)
    parser.add_argument("--d", type=int, default=16)
    parser.add_argument("--N", type=int, default=4000)
    parser.add_argument("--n-test", type=int, default=2000)
    parser.add_argument("--activation", default="relu")
    parser.add_argument("--repeats", type=int, default=3,
                        help="alternating repeats of the single-alpha fits (best kept)")
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "rf_bench.json"))
    args = parser.parse_args()
    if args.theory_table:
        theory_table()
        return

    threads = {
        "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS"),
        "MKL_NUM_THREADS": os.environ.get("MKL_NUM_THREADS"),
        "torch_num_threads": torch.get_num_threads(),
        "blas": [
            {k: info.get(k) for k in ("internal_api", "num_threads", "version")}
            for info in threadpool_info()
        ],
        "cpu_count": os.cpu_count(),
        "load_average_at_start": os.getloadavg(),
        "platform": platform.platform(),
        "torch": torch.__version__,
    }
    print("threads:", json.dumps(threads))
    n, d, N = args.n, args.d, args.N
    X, y, Xt, yt = _task(n, args.n_test, d)
    grid = np.logspace(-4, 2, 10)
    results = {"n": n, "d": d, "N": N, "alphas": grid.tolist(), "threads": threads}

    # --- 1. the grid: identical features, same alpha grid --------------------------------------
    params = dict(n_components=N, activation=args.activation, b_std=1.0, random_state=0,
                  device="cpu")
    rf = RandomFeatures(**params).fit(X)
    Phi, t_feat = _timed(lambda: rf.transform(X))
    Phi_test = rf.transform(Xt)
    print(f"features {n} x {N} ({args.activation}): {t_feat:.2f}s")

    sk, t_sk = _timed(lambda: RidgeCV(alphas=grid).fit(Phi, y))
    print(f"RidgeCV(alphas=grid) [default gcv_mode] on the features: {t_sk:.2f}s, "
          f"alpha_={sk.alpha_:g}")

    def our_path():
        P, Y = torch.from_numpy(Phi), torch.from_numpy(y[:, None])
        dec = ridge_decompose(P, Y, True)
        mse = ridge_path(P, Y, dec, grid)
        alpha = float(grid[int(torch.argmin(mse))])
        coef, intercept = ridge_coef(P, dec, alpha)
        return alpha, coef.numpy()[:, 0], float(intercept[0])

    (alpha_path, coef, intercept), t_path = _timed(our_path)
    pred_path = Phi_test @ coef + intercept
    print(f"our ridge path on the same features: {t_path:.2f}s, alpha={alpha_path:g}")

    est, t_est = _timed(lambda: RandomFeatureRegressor(alpha=grid, **params).fit(X, y))
    pred_est = est.predict(Xt)
    print(f"RandomFeatureRegressor(alpha=grid).fit (features included): {t_est:.2f}s, "
          f"alpha_={est.alpha_:g}")

    pred_sk = sk.predict(Phi_test)
    scale = np.abs(pred_sk).max()
    results["grid"] = {
        "ridgecv_s": t_sk,
        "ridgecv_gcv_mode": "auto (cov: eigendecomposition of X^T X, n > N)",
        "features_s": t_feat,
        "ours_path_s": t_path,
        "ours_estimator_fit_s": t_est,
        "speedup_path_vs_ridgecv": t_sk / t_path,
        "speedup_estimator_vs_features_plus_ridgecv": (t_feat + t_sk) / t_est,
        "alpha_ridgecv": float(sk.alpha_),
        "alpha_ours_path": alpha_path,
        "alpha_ours_estimator": float(est.alpha_),
        "same_alpha": bool(sk.alpha_ == alpha_path == est.alpha_),
        "max_abs_pred_diff_path": float(np.abs(pred_path - pred_sk).max()),
        "max_abs_pred_diff_estimator": float(np.abs(pred_est - pred_sk).max()),
        "max_rel_pred_diff_estimator": float(np.abs(pred_est - pred_sk).max() / scale),
        "test_mse": float(np.mean((pred_est - yt) ** 2)),
    }
    Phi = Phi_test = None  # free the feature matrices before part 2

    # --- 2. a single alpha on the RBF kernel ----------------------------------------------------
    alpha = float(est.alpha_)
    gamma = 1.0 / (2 * d)  # RBFSampler(gamma) <-> fourier features with w_std = sqrt(2 d gamma)
    w_std = math.sqrt(2 * d * gamma)
    fits = {
        "ours": lambda: RandomFeatureRegressor(
            n_components=N, activation="fourier", w_std=w_std, alpha=alpha, random_state=0,
            device="cpu").fit(X, y),
        "rbf": lambda: make_pipeline(
            RBFSampler(gamma=gamma, n_components=N, random_state=0), Ridge(alpha=alpha)
        ).fit(X, y),
        "nys": lambda: make_pipeline(
            Nystroem(gamma=gamma, n_components=N, random_state=0), Ridge(alpha=alpha)
        ).fit(X, y),
    }
    # the machine is shared: alternate the contenders and keep each one's best of `repeats`
    times = {name: [] for name in fits}
    models = {}
    for _ in range(args.repeats):
        for name, fit in fits.items():
            models[name], t = _timed(fit)
            times[name].append(t)
    ours1, rbf, nys = models["ours"], models["rbf"], models["nys"]
    t_ours1, t_rbf, t_nys = (min(times[k]) for k in ("ours", "rbf", "nys"))
    print("single-alpha fit times (s):", {k: [round(t, 2) for t in v] for k, v in times.items()})
    mse = {name: float(np.mean((m.predict(Xt) - yt) ** 2))
           for name, m in (("ours_fourier", ours1), ("rbfsampler_ridge", rbf),
                           ("nystroem_ridge", nys))}
    results["single_alpha"] = {
        "alpha": alpha,
        "gamma": gamma,
        "ours_fourier_fit_s": t_ours1,
        "rbfsampler_ridge_fit_s": t_rbf,
        "nystroem_ridge_fit_s": t_nys,
        "all_times_s": times,
        "timing": f"best of {args.repeats} alternating repeats",
        "speedup_vs_rbfsampler_ridge": t_rbf / t_ours1,
        "speedup_vs_nystroem_ridge": t_nys / t_ours1,
        "test_mse": mse,
    }
    print(f"single alpha={alpha:g}: ours (fourier) {t_ours1:.2f}s, RBFSampler+Ridge {t_rbf:.2f}s, "
          f"Nystroem+Ridge {t_nys:.2f}s; test MSE {mse}")
    results["threads"]["load_average_at_end"] = os.getloadavg()

    g, s = results["grid"], results["single_alpha"]
    print("\n=== ratios (same run) ===")
    print(f"grid: RidgeCV {g['ridgecv_s']:.1f}s / our path {g['ours_path_s']:.1f}s = "
          f"{g['speedup_path_vs_ridgecv']:.2f}x (target >= 4); estimator incl. features "
          f"{g['speedup_estimator_vs_features_plus_ridgecv']:.2f}x; "
          f"same alpha: {g['same_alpha']}; "
          f"max |pred diff| {g['max_abs_pred_diff_estimator']:.2e} "
          f"(relative {g['max_rel_pred_diff_estimator']:.2e})")
    print(f"single alpha: RBFSampler+Ridge / ours = {s['speedup_vs_rbfsampler_ridge']:.2f}x "
          f"(target >= 1.5); Nystroem+Ridge / ours = {s['speedup_vs_nystroem_ridge']:.2f}x")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
