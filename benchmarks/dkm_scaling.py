"""Cost of a sparse DKM epoch is linear in the number of training points.

Times :class:`overparam_sklearn.SparseDKMRegressor` training epochs (minibatch Adam, fixed batch
size and number of inducing points) at ``n`` and ``2 n`` training points and prints the ratio of
the time per epoch; linear cost means a ratio near 2 (the target is at most 2.3). No ``n x n``
matrix is formed: each step touches a ``batch x m`` block only. The sizes are interleaved and
repeated, and the fastest repeat of each size is kept, to damp the noise of a shared machine.

Run::

    OMP_NUM_THREADS=1 python benchmarks/dkm_scaling.py            # n = 10000 vs 20000
"""

import argparse
import os
import platform
import sys
import time

import numpy as np
import torch

from overparam_sklearn import SparseDKMRegressor


def epoch_seconds(n, args, seed):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, args.d))
    y = np.sin(X[:, 0]) + 0.1 * rng.normal(size=n)
    model = SparseDKMRegressor(
        n_hidden=args.n_hidden, n_inducing=args.n_inducing, batch_size=args.batch_size,
        max_iter=args.epochs, solve_output=False, random_state=seed, device="cpu",
    )
    start = time.perf_counter()
    model.fit(X, y)
    return (time.perf_counter() - start) / args.epochs


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=10000)
    parser.add_argument("--d", type=int, default=8)
    parser.add_argument("--n-inducing", type=int, default=100)
    parser.add_argument("--n-hidden", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--max-ratio", type=float, default=2.3)
    args = parser.parse_args(argv)
    print(f"python {platform.python_version()}, torch {torch.__version__}, "
          f"torch threads {torch.get_num_threads()}, "
          f"OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS')}")
    print(f"settings: {vars(args)}", flush=True)
    sizes = (args.n, 2 * args.n)
    times = {n: [] for n in sizes}
    epoch_seconds(1000, args, 0)  # warm-up
    for rep in range(args.repeats):
        for n in sizes:
            times[n].append(epoch_seconds(n, args, rep))
            print(f"repeat {rep}: n={n:6d} {times[n][-1]:.3f} s/epoch", flush=True)
    best = {n: min(t) for n, t in times.items()}
    ratio = best[sizes[1]] / best[sizes[0]]
    print(f"time per epoch (fastest of {args.repeats}): n={sizes[0]}: {best[sizes[0]]:.3f} s, "
          f"n={sizes[1]}: {best[sizes[1]]:.3f} s")
    print(f"ratio {sizes[1]}/{sizes[0]}: {ratio:.3f} (target <= {args.max_ratio}; linear = 2)")
    return 0 if ratio <= args.max_ratio else 1


if __name__ == "__main__":
    sys.exit(main())
