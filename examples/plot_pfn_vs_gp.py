"""
PFN posterior beside the exact Gaussian-process posterior
==========================================================

A prior-data fitted network (PFN) is a transformer trained on datasets drawn from a prior; given a
training set as context it returns the posterior predictive distribution of every query in one
forward pass (Müller et al., "Transformers Can Do Bayesian Inference", ICLR 2022).

Here 1-D data are drawn from a GP with an RBF kernel. We plot the exact posterior of that GP (its
true hyperparameters, no fitting) next to :class:`~overparam_sklearn.PFNRegressor`, whose shipped
network was trained on GPs with *random* lengthscales, output scales and noise levels; it
therefore averages over hyperparameters instead of knowing them, and its bands are usually a bit
wider. The shaded bands are 90% credible intervals of the noisy targets.
"""

import matplotlib.pyplot as plt
import numpy as np
from scipy.stats import norm
from sklearn.gaussian_process import GaussianProcessRegressor
from sklearn.gaussian_process.kernels import RBF, ConstantKernel, WhiteKernel

from overparam_sklearn import PFNRegressor

rng = np.random.RandomState(0)
lengthscale, noise = 0.6, 0.1
kernel = ConstantKernel(1.0, "fixed") * RBF(lengthscale, "fixed") + WhiteKernel(noise**2, "fixed")

# one function from the GP prior, observed at 25 noisy points
X_all = np.sort(rng.uniform(-3, 3, size=(400, 1)), axis=0)
K = kernel(X_all) + 1e-8 * np.eye(len(X_all))
y_all = np.linalg.cholesky(K) @ rng.randn(len(X_all))
train = rng.choice(len(X_all), 25, replace=False)
X, y = X_all[train], y_all[train]

# exact posterior (the true hyperparameters, nothing is optimised)
gp = GaussianProcessRegressor(kernel, optimizer=None).fit(X, y)
gp_mean, gp_std = gp.predict(X_all, return_std=True)

# PFN: one forward pass, no hyperparameter fitting
pfn = PFNRegressor(n_estimators=4, random_state=0, device="cpu").fit(X, y)
dist = pfn.predict_distribution(X_all)
lo, hi = dist.quantile([0.05, 0.95]).T

fig, axes = plt.subplots(1, 2, figsize=(11, 4), sharey=True)
z = 1.6448536269514722
panels = [
    ("exact GP posterior", gp_mean, gp_mean - z * gp_std, gp_mean + z * gp_std),
    ("PFNRegressor", dist.mean, lo, hi),
]
for ax, (title, mean, lower, upper) in zip(axes, panels, strict=True):
    ax.fill_between(X_all[:, 0], lower, upper, alpha=0.3, label="90% credible band")
    ax.plot(X_all[:, 0], mean, lw=2, label="posterior mean")
    ax.plot(X_all[:, 0], y_all, "k:", lw=1, label="noisy function")
    ax.scatter(X[:, 0], y, c="k", s=15, zorder=3, label="training points")
    ax.set_title(title)
    ax.set_xlabel("x")
axes[0].legend(loc="lower left", fontsize=8)
axes[0].set_ylabel("y")
fig.tight_layout()

nll_gp = -np.mean(norm.logpdf(y_all, gp_mean, gp_std))
nll_pfn = -np.mean(dist.logpdf(y_all))
print(f"test NLL per point: exact GP {nll_gp:.3f}, PFN {nll_pfn:.3f}")
plt.show()
