"""Sparse DKM on the UCI regression benchmarks, beside GPyTorch's SVGP and NNGP regression.

For each data set and split of ``../shared/data/uci`` (Hernandez-Lobato & Adams 2015 splits), the
inputs and target are standardised with the training split's statistics, and three models are fit:

* ``dkm``: :class:`overparam_sklearn.SparseDKMRegressor` (ReLU arc-cosine kernel, ARD, learned
  inducing inputs, Gaussian likelihood with learned noise);
* ``svgp``: GPyTorch's SVGP (ARD RBF kernel with an output scale, constant mean, Cholesky
  variational distribution, learned inducing inputs) with the *same* initial inducing inputs,
  the same number of Adam steps, the same learning rate and the same minibatch size;
* ``nngp``: exact NNGP regression, :class:`overparam_sklearn.NTKRegressor` with
  ``kernel="nngp"`` and the DKM's NNGP limit kernel (the same ``n_hidden``), for
  training sets up to ``--exact-max`` rows; above that the optimal (Titsias 2009) sparse GP with
  the NNGP kernel and the same inducing inputs. The noise is chosen from a grid by the (collapsed)
  log marginal likelihood.

Reported: test RMSE and mean test log-likelihood on the original target scale, mean and standard
error over the splits run. Every fit is appended to a JSON-lines log, so an interrupted run
resumes where it stopped (``--log``).

Run (single-threaded, in the background)::

    OMP_NUM_THREADS=1 nice python benchmarks/dkm_uci.py --splits 0 1 2 --log dkm_uci.jsonl
"""

import argparse
import json
import math
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch

from overparam_sklearn import NTKRegressor, SparseDKMRegressor
from overparam_sklearn.kernels import nngp_kernel

UCI = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "uci"
DATASETS = ["boston", "concrete", "energy", "yacht", "wine", "kin8nm", "power", "naval"]


def load_split(name, split):
    folder = UCI / name
    data = np.loadtxt(folder / "data.txt")
    feats = np.loadtxt(folder / "index_features.txt", dtype=int).ravel()
    target = int(np.loadtxt(folder / "index_target.txt"))
    tr = np.loadtxt(folder / f"index_train_{split}.txt", dtype=int)
    te = np.loadtxt(folder / f"index_test_{split}.txt", dtype=int)
    X, y = data[:, feats], data[:, target]
    return X[tr], y[tr], X[te], y[te]


def standardise(Xtr, ytr, Xte):
    mx, sx = Xtr.mean(0), Xtr.std(0)
    sx = np.where(sx > 0, sx, 1.0)
    my, sy = ytr.mean(), ytr.std()
    sy = sy if sy > 0 else 1.0
    return (Xtr - mx) / sx, (ytr - my) / sy, (Xte - mx) / sx, my, sy


def gaussian_scores(y, mean, var):
    rmse = float(np.sqrt(np.mean((y - mean) ** 2)))
    ll = float(np.mean(-0.5 * np.log(2 * math.pi * var) - 0.5 * (y - mean) ** 2 / var))
    return rmse, ll


# ------------------------------------------------------------------------------------ models
def fit_dkm(Xtr, ytr, Xte, Z, args, seed):
    n = len(Xtr)
    steps_per_epoch = math.ceil(n / min(args.batch_size, n))
    model = SparseDKMRegressor(
        n_hidden=args.n_hidden, activation=args.activation, nu=args.nu, n_inducing=Z,
        max_iter=max(1, round(args.steps / steps_per_epoch)), batch_size=args.batch_size,
        learning_rate=args.lr, normalize_y=False, random_state=seed, device="cpu",
    )
    model.fit(Xtr, ytr)
    mean, std = model.predict(Xte, return_std=True)
    return mean, std**2


def fit_svgp(Xtr, ytr, Xte, Z, args, seed):
    import gpytorch

    dtype = torch.float64
    Xt = torch.tensor(Xtr, dtype=dtype)
    yt = torch.tensor(ytr, dtype=dtype)
    d = Xt.shape[1]

    class SVGP(gpytorch.models.ApproximateGP):
        def __init__(self, inducing):
            dist = gpytorch.variational.CholeskyVariationalDistribution(inducing.shape[0])
            strategy = gpytorch.variational.VariationalStrategy(
                self, inducing, dist, learn_inducing_locations=True
            )
            super().__init__(strategy)
            self.mean_module = gpytorch.means.ConstantMean()
            self.covar_module = gpytorch.kernels.ScaleKernel(
                gpytorch.kernels.RBFKernel(ard_num_dims=d)
            )

        def forward(self, x):
            return gpytorch.distributions.MultivariateNormal(
                self.mean_module(x), self.covar_module(x)
            )

    model = SVGP(torch.tensor(Z, dtype=dtype)).to(dtype)
    likelihood = gpytorch.likelihoods.GaussianLikelihood().to(dtype)
    n = len(Xt)
    mll = gpytorch.mlls.VariationalELBO(likelihood, model, num_data=n)
    opt = torch.optim.Adam(list(model.parameters()) + list(likelihood.parameters()), lr=args.lr)
    gen = torch.Generator().manual_seed(seed)
    batch = min(args.batch_size, n)
    steps_per_epoch = math.ceil(n / batch)
    epochs = max(1, round(args.steps / steps_per_epoch))
    model.train()
    likelihood.train()
    for _ in range(epochs):
        perm = torch.randperm(n, generator=gen)
        for start in range(0, n, batch):
            idx = perm[start:start + batch]
            opt.zero_grad()
            loss = -mll(model(Xt[idx]), yt[idx])
            loss.backward()
            opt.step()
    model.eval()
    likelihood.eval()
    with torch.no_grad():
        pred = likelihood(model(torch.tensor(Xte, dtype=dtype)))
        return pred.mean.numpy(), pred.variance.numpy()


NOISE_GRID = (1e-3, 3e-3, 1e-2, 3e-2, 0.1, 0.3, 1.0)


def fit_nngp(Xtr, ytr, Xte, Z, args, seed):
    kw = dict(n_hidden=args.n_hidden, activation="relu", w_std=math.sqrt(2.0), b_std=0.1)
    if len(Xtr) <= args.exact_max:
        best = None
        for noise in NOISE_GRID:
            model = NTKRegressor(kernel="nngp", alpha=noise, device="cpu", **kw).fit(Xtr, ytr)
            lml = model.log_marginal_likelihood_value_
            if best is None or lml > best[0]:
                best = (lml, model, noise)
        _, model, noise = best
        mean, std = model.predict(Xte, return_std=True)
        return mean, std**2 + noise
    # Titsias (2009) optimal sparse GP with the NNGP kernel and inducing inputs Z.
    Xt = torch.tensor(Xtr)
    Zt = torch.tensor(Z)
    yt = torch.tensor(ytr)
    Kzz = nngp_kernel(Zt, **kw)
    Kzz = Kzz + 1e-6 * Kzz.diagonal().mean() * torch.eye(len(Zt), dtype=Kzz.dtype)
    Lz = torch.linalg.cholesky(Kzz)
    Kxz = nngp_kernel(Xt, Zt, **kw)
    kxx = _nngp_diag(Xt, kw)
    A = torch.linalg.solve_triangular(Lz, Kxz.T, upper=False)  # m x n
    AAT = A @ A.T
    Ay = A @ yt
    n, m = len(Xt), len(Zt)
    best = None
    for noise in NOISE_GRID:
        B = torch.eye(m, dtype=Kzz.dtype) + AAT / noise
        LB = torch.linalg.cholesky(B)
        c = torch.linalg.solve_triangular(LB, Ay[:, None], upper=False)[:, 0] / noise
        bound = (
            -0.5 * n * math.log(2 * math.pi * noise) - torch.log(LB.diagonal()).sum()
            - 0.5 * (yt @ yt) / noise + 0.5 * (c @ c)
            - 0.5 * (kxx.sum() - A.pow(2).sum()) / noise
        )
        if best is None or bound > best[0]:
            best = (float(bound), noise, LB, c)
    _, noise, LB, c = best
    Kzs = nngp_kernel(Zt, torch.tensor(Xte), **kw)
    As = torch.linalg.solve_triangular(Lz, Kzs, upper=False)
    Bs = torch.linalg.solve_triangular(LB, As, upper=False)
    mean = Bs.T @ c
    var = _nngp_diag(torch.tensor(Xte), kw) - As.pow(2).sum(0) + Bs.pow(2).sum(0)
    return mean.numpy(), var.numpy() + noise


def _nngp_diag(X, kw):
    from overparam_sklearn.kernels import fc_diagonals

    variances, _ = fc_diagonals(X, kw["n_hidden"], kw["activation"], kw["w_std"], kw["b_std"],
                                need_ntk=False)
    return variances[-1]


MODELS = {"dkm": fit_dkm, "svgp": fit_svgp, "nngp": fit_nngp}


# ------------------------------------------------------------------------------------ driver
def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", nargs="+", default=DATASETS)
    parser.add_argument("--splits", nargs="+", type=int, default=[1, 2, 3])
    parser.add_argument("--models", nargs="+", default=list(MODELS))
    parser.add_argument("--n-inducing", type=int, default=100)
    parser.add_argument("--n-hidden", type=int, default=3)
    parser.add_argument("--nu", type=float, default=0.1)
    parser.add_argument("--activation", default="relu")
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--lr", type=float, default=0.02)
    parser.add_argument("--exact-max", type=int, default=3000)
    parser.add_argument("--log", default="dkm_uci.jsonl")
    parser.add_argument("--dkm-label", default="dkm",
                        help="name under which the DKM fits are logged (e.g. dkm-nu1)")
    parser.add_argument("--report-only", action="store_true",
                        help="print the table of the fits already in --log and stop")
    args = parser.parse_args(argv)
    if not UCI.exists():
        print(f"{UCI} is absent: the UCI splits live beside the project, in ../shared/data/uci")
        return 0

    print(f"python {platform.python_version()}, torch {torch.__version__}, "
          f"torch threads {torch.get_num_threads()}, "
          f"OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS')}")
    print(f"settings: {vars(args)}", flush=True)
    config = {k: getattr(args, k) for k in ("n_inducing", "n_hidden", "nu", "activation", "steps",
                                           "batch_size", "lr", "exact_max")}
    done = {}
    log = Path(args.log)
    if log.exists():
        for line in log.read_text().splitlines():
            rec = json.loads(line)
            if args.report_only or rec.get("config") == config:
                done[(rec["dataset"], rec["split"], rec["model"])] = rec
    for name in [] if args.report_only else args.datasets:
        for split in args.splits:
            Xtr, ytr, Xte, yte = load_split(name, split)
            Xtr, ytr_s, Xte, my, sy = standardise(Xtr, ytr, Xte)
            gen = torch.Generator().manual_seed(1000 + split)
            m = min(args.n_inducing, len(Xtr))
            Z = Xtr[torch.randperm(len(Xtr), generator=gen)[:m].numpy()]
            for model_name in args.models:
                label = args.dkm_label if model_name == "dkm" else model_name
                key = (name, split, label)
                if key in done:
                    continue
                t0 = time.perf_counter()
                mean, var = MODELS[model_name](Xtr, ytr_s, Xte, Z, args, split)
                seconds = time.perf_counter() - t0
                rmse, ll = gaussian_scores(yte, mean * sy + my, var * sy**2)
                rec = {"dataset": name, "split": split, "model": label, "rmse": rmse,
                       "loglik": ll, "seconds": seconds, "config": config}
                done[key] = rec
                with log.open("a") as fh:
                    fh.write(json.dumps(rec) + "\n")
                print(f"{name:9s} split {split:2d} {label:5s} rmse {rmse:8.4f} "
                      f"loglik {ll:8.4f} ({seconds:6.1f} s)", flush=True)
    print_table(done, args)
    return 0


def _fmt(x):
    return f"{x:.3f}" if not np.isfinite(x) or abs(x) >= 0.01 or x == 0 else f"{x:.1e}"


def print_table(done, args):
    labels = [args.dkm_label if m == "dkm" else m for m in args.models]
    print()
    print("Test RMSE and mean test log-likelihood (original target scale), mean ± standard "
          "error over the splits run")
    print("| dataset | splits | " + " | ".join(f"{m} RMSE" for m in labels) + " | "
          + " | ".join(f"{m} test LL" for m in labels) + " |")
    print("|---" * (2 + 2 * len(labels)) + "|")
    for name in args.datasets:
        cells_rmse, cells_ll, splits = [], [], None
        for model_name in labels:
            recs = [done[(name, s, model_name)] for s in args.splits
                    if (name, s, model_name) in done]
            splits = len(recs)
            if not recs:
                cells_rmse.append("-")
                cells_ll.append("-")
                continue
            for key, cells in (("rmse", cells_rmse), ("loglik", cells_ll)):
                vals = np.array([r[key] for r in recs])
                se = vals.std(ddof=1) / math.sqrt(len(vals)) if len(vals) > 1 else float("nan")
                cells.append(f"{_fmt(vals.mean())} ± {_fmt(se)}")
        print(f"| {name} | {splits} | " + " | ".join(cells_rmse) + " | "
              + " | ".join(cells_ll) + " |")
    for model_name in labels:
        secs = [r["seconds"] for r in done.values() if r["model"] == model_name]
        print(f"{model_name}: {len(secs)} fits, {sum(secs):.0f} s wall in total")


if __name__ == "__main__":
    sys.exit(main())
