"""
More is better: random-feature ridge regression against its eigenframework
===========================================================================

Simon, Karkada, Ghosh & Belkin ("More is Better in Modern Machine Learning", ICLR 2024) show
that random-feature (RF) ridge regression, with its ridge tuned, gets better monotonically as the
number of features ``N`` and of samples ``n`` grow, and that a closed-form eigenframework
(:func:`overparam_sklearn.theory.rf_risk`) predicts its test error from the kernel's
eigenvalues and the target's coefficients in its eigenbasis.

We measure :class:`~overparam_sklearn.RandomFeatureRegressor` (ridge chosen by exact
leave-one-out over a grid, one eigendecomposition per fit) and draw the theory at the optimal
ridge (:func:`~overparam_sklearn.theory.optimal_ridge`) on

1. a synthetic power-law task (eigenvalues ``i^-1.5``, squared target coefficients ``i^-1.5``):
   linear random features of Gaussian inputs, whose kernel has exactly that spectrum;
2. the digits data set (one-hot targets, ReLU features), with the spectrum estimated by
   :func:`~overparam_sklearn.theory.task_eigenstructure`.

Solid lines: predicted test MSE; dashed: predicted train MSE; markers: measured (filled: test,
open: train). Test error falls with ``N`` and with ``n``, and at the tuned ridge the training
error is far below the test error. The theory is exact for the linear-Gaussian features of the
first task; for ReLU features of real images it is an approximation (Gaussian universality of
the features), here within about 10-25% of the measured error.
"""

import warnings

import matplotlib.pyplot as plt
import numpy as np
from sklearn.datasets import load_digits
from sklearn.exceptions import ConvergenceWarning

from overparam_sklearn import RandomFeatureRegressor
from overparam_sklearn.theory import optimal_ridge, power_law_task, task_eigenstructure

warnings.simplefilter("ignore", ConvergenceWarning)  # wide grids; the edge is sometimes best
rng = np.random.default_rng(0)
ALPHAS = np.logspace(-7, 2, 19)


def measure(X_train, Y_train, X_test, Y_test, n_features, seed, **params):
    """Train and test MSE of RF ridge with alpha chosen by leave-one-out."""
    reg = RandomFeatureRegressor(n_components=n_features, alpha=ALPHAS, random_state=seed,
                                 device="cpu", **params).fit(X_train, Y_train)
    train = np.mean((reg.predict(X_train) - Y_train) ** 2)
    test = np.mean((reg.predict(X_test) - Y_test) ** 2)
    return train, test


def theory_curves(lam, coef, n, n_features_grid, noise):
    best = [optimal_ridge(lam, coef, n, N, noise) for N in n_features_grid]
    return np.array([b.test_mse for b in best]), np.array([b.train_mse for b in best])


# %%
# Synthetic power-law task
# ------------------------
# Inputs ``x = sqrt(d lambda) * z`` with ``z ~ N(0, I_d)``: the linear features
# ``phi(x) = W x / sqrt(N)`` (``activation="identity"``) have kernel ``sum_i lambda_i z_i z'_i``,
# whose eigenfunctions ``z_i`` are orthonormal, so the target ``y = sum_i v_i z_i + noise`` has
# coefficients ``v``. No intercept, as in the theory.
d, noise = 400, 0.05
lam, v = power_law_task(d, 1.5, 1.5)
scale = np.sqrt(d * lam)


def synthetic(n):
    Z = rng.standard_normal((n, d))
    return Z * scale, Z @ v + np.sqrt(noise) * rng.standard_normal(n)


n_grid_syn = [64, 256]
N_grid = np.array([8, 16, 32, 64, 128, 256, 512, 1024])
X_test, y_test = synthetic(2000)
syn = {}
for n in n_grid_syn:
    meas = []
    for N in N_grid:
        runs = [measure(*synthetic(n), X_test, y_test, N, seed, activation="identity",
                        fit_intercept=False) for seed in range(3)]
        meas.append(np.mean(runs, axis=0))
    syn[n] = (np.array(meas), theory_curves(lam, v, n, N_grid, noise))

# %%
# Digits
# ------
# One-hot targets (10 outputs, MSE averaged over them), pixels scaled to [0, 1], ReLU features
# (the defaults: ``w_std=1, b_std=0``, whose limit kernel is the one-hidden-layer NNGP). The
# kernel eigenvalues and target coefficients come from an eigendecomposition of the (centred)
# kernel on all 1797 images, so the theory describes the empirical distribution
# of those images: training sets are drawn from it with replacement, and the test MSE is its
# population risk, the mean over all 1797 images.
X_dig, labels = load_digits(return_X_y=True)
X_dig = X_dig / 16.0
Y_dig = np.eye(10)[labels]
rf_params = dict(activation="relu", w_std=1.0, b_std=0.0)
lam_dig, v_dig = task_eigenstructure(X_dig, Y_dig, n_samples=len(X_dig), **rf_params)
n_grid_dig = [100, 400]
dig = {}
for n in n_grid_dig:
    meas = []
    for N in N_grid:
        runs = []
        for seed in range(3):
            tr = rng.integers(0, len(X_dig), size=n)
            runs.append(measure(X_dig[tr], Y_dig[tr], X_dig, Y_dig, N, seed, **rf_params))
        meas.append(np.mean(runs, axis=0))
    dig[n] = (np.array(meas), theory_curves(lam_dig, v_dig, n, N_grid, 0.0))

# %%
# Plot and table
# --------------
fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
for ax, results, title in ((axes[0], syn, "power law: $\\lambda_i = i^{-1.5}$, $v_i^2 = "
                            "i^{-1.5}$"), (axes[1], dig, "digits, ReLU features")):
    for color, (n, (meas, (th_test, th_train))) in zip(("C0", "C1"), results.items(), strict=True):
        ax.plot(N_grid, th_test, "-", color=color, label=f"n = {n}: theory test")
        ax.plot(N_grid, th_train, "--", color=color, alpha=0.6, label=f"n = {n}: theory train")
        ax.plot(N_grid, meas[:, 1], "o", color=color, label=f"n = {n}: measured test")
        ax.plot(N_grid, meas[:, 0], "o", mfc="none", color=color)
    ax.set(xscale="log", yscale="log", xlabel="number of random features N",
           ylabel="MSE at the tuned ridge", title=title)
    ax.grid(alpha=0.3)
axes[0].legend(fontsize=7)
fig.tight_layout()

print(f"{'task':8} {'n':>4} {'N':>5} {'theory test':>12} {'measured':>9} "
      f"{'theory train':>13} {'measured':>9}")
for name, results in (("powerlaw", syn), ("digits", dig)):
    for n, (meas, (th_test, th_train)) in results.items():
        for k, N in enumerate(N_grid):
            print(f"{name:8} {n:4d} {N:5d} {th_test[k]:12.4f} {meas[k, 1]:9.4f} "
                  f"{th_train[k]:13.4f} {meas[k, 0]:9.4f}")
plt.show()
