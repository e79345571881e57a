"""
Finite-width networks trained by gradient descent approach the NTK
==================================================================

A fully connected network in the NTK parameterization, trained by full-batch gradient descent
on the squared loss, behaves more and more like a linear model in its parameters as its width
grows; in the limit its training dynamics are those of kernel regression with the neural tangent
kernel (Jacot et al. 2018; Lee et al. 2019). :class:`~overparam_sklearn.NTKRegressor` computes
that limit in closed form for any training time ``t``.

Here we train finite networks of growing width with skorch, average a few seeds, and measure how
far their predictions are from the NTK regressor's mean prediction at the same training time.
"""

# %%
# The problem and the infinite-width prediction
# ---------------------------------------------
# A 1-D regression problem with a handful of training points. The network has one hidden ReLU
# layer; weights are ``N(0, 1)`` scaled by ``w_std / sqrt(fan_in)`` in the forward pass and
# biases ``N(0, 1)`` scaled by ``b_std`` (neural-tangents' NTK parameterization, the convention
# of :mod:`overparam_sklearn.kernels`).
#
# Training time follows neural-tangents: the loss is ``||f(X) - y||^2 / (2 n)`` and
# gradient descent with learning rate ``lr`` for ``k`` steps reaches time ``t = lr * k``.
import copy
import time

import matplotlib.pyplot as plt
import numpy as np
import torch
from skorch import NeuralNetRegressor

from overparam_sklearn import NTKRegressor
from overparam_sklearn.kernels import ntk_kernel

rng = np.random.default_rng(0)
n_train = 16
X_train = np.sort(rng.uniform(-2, 2, size=n_train))[:, None]
y_train = np.sin(2 * X_train[:, 0]) + 0.5 * X_train[:, 0]
X_test = np.linspace(-3, 3, 121)[:, None]

N_HIDDEN, W_STD, B_STD = 1, 1.5, 0.5
T = 5.0  # training time: far from converged, so the time matters (compare t=inf below)
LR = 0.01
N_STEPS = int(round(T / LR))

ntk = NTKRegressor(n_hidden=N_HIDDEN, w_std=W_STD, b_std=B_STD, alpha=0.0, t=T, device="cpu")
ntk.fit(X_train, y_train)
mean_ntk = ntk.predict(X_test)
mean_converged = NTKRegressor(n_hidden=N_HIDDEN, w_std=W_STD, b_std=B_STD, alpha=1e-10,
                              device="cpu").fit(X_train, y_train).predict(X_test)

# %%
# How close can gradient descent get at all? Gradient descent with a finite step is not the
# gradient flow: in the infinite-width limit it multiplies each NTK eigendirection by
# ``1 - (1 - lr * lam / n)^k`` instead of ``1 - exp(-lam t / n)``. We compute that limit from
# the kernel matrices to know the floor below which no width can go.
theta_train = ntk_kernel(X_train, n_hidden=N_HIDDEN, w_std=W_STD, b_std=B_STD).numpy()
theta_test = ntk_kernel(X_test, X_train, n_hidden=N_HIDDEN, w_std=W_STD, b_std=B_STD).numpy()
lam, vec = np.linalg.eigh(theta_train)
lam = np.clip(lam, 1e-300, None)
gd_filter = (1 - (1 - LR * lam / n_train) ** N_STEPS) / lam
mean_gd_limit = theta_test @ (vec @ (gd_filter * (vec.T @ y_train)))


def rel_distance(pred, ref=mean_ntk):
    """Root-mean-square distance on the test grid, relative to the reference's RMS."""
    return float(np.sqrt(np.mean((pred - ref) ** 2) / np.mean(ref**2)))


print(f"largest NTK eigenvalue / n = {lam.max() / n_train:.2f}; lr * that = "
      f"{LR * lam.max() / n_train:.3f}")
print(f"discrete-step floor: relative distance of the infinite-width GD limit to the flow "
      f"= {rel_distance(mean_gd_limit):.2e}")

# %%
# Finite networks, centred at initialisation
# ------------------------------------------
# A single finite network starts from a random function ``f_0``; in the infinite-width limit
# that function is a draw from the NNGP and stays in the prediction, so one network converges
# to a *sample* of the NTK ensemble, not to its mean (the spread of those samples is
# ``ntk.predict(X, return_std=True)``). To compare a
# single network with the mean we subtract the initial function: the trained model is
# ``f(x; theta) - f(x; theta_0)``, which has the same tangent kernel, starts at zero, and whose
# infinite-width limit is exactly the NTK mean (Lee et al. 2019, Eq. 9 with ``f_0 = 0``).
#
# Each module draws its initial weights from its own seeded ``torch.Generator``, so the run is
# deterministic without touching torch's global random state.


class NTKDense(torch.nn.Module):
    """``w_std / sqrt(fan_in) * W x + b_std * b`` with ``W, b ~ N(0, 1)``."""

    def __init__(self, fan_in, fan_out, generator):
        super().__init__()
        self.scale = W_STD / np.sqrt(fan_in)
        self.weight = torch.nn.Parameter(
            torch.randn(fan_out, fan_in, generator=generator, dtype=torch.float64))
        self.bias = torch.nn.Parameter(
            torch.randn(fan_out, generator=generator, dtype=torch.float64))

    def forward(self, x):
        return self.scale * (x @ self.weight.T) + B_STD * self.bias


class CentredMLP(torch.nn.Module):
    """MLP in NTK parameterization minus its own (frozen) function at initialisation."""

    def __init__(self, width=64, seed=0):
        super().__init__()
        gen = torch.Generator().manual_seed(seed)
        sizes = [1] + [width] * N_HIDDEN
        layers = []
        for fan_in, fan_out in zip(sizes[:-1], sizes[1:], strict=True):
            layers += [NTKDense(fan_in, fan_out, gen), torch.nn.ReLU()]
        layers.append(NTKDense(sizes[-1], 1, gen))
        self.net = torch.nn.Sequential(*layers)
        self.net0 = copy.deepcopy(self.net).requires_grad_(False)

    def forward(self, x):
        return self.net(x) - self.net0(x)


class HalfMSELoss(torch.nn.Module):
    """``||f - y||^2 / (2 y.size)``: neural-tangents' loss, so that ``t = lr * steps``."""

    def forward(self, pred, target):
        return 0.5 * torch.mean((pred - target) ** 2)


class GradientDescent(torch.optim.Optimizer):
    """Plain full-batch gradient descent, ``steps`` updates per call of ``step(closure)``.

    skorch hands the optimizer a closure that zeroes the gradients and recomputes loss and
    gradients (as for L-BFGS), so several exact gradient-descent steps can run per epoch and
    skorch's per-epoch bookkeeping is paid once per ``steps`` updates.
    """

    def __init__(self, params, lr=0.1, steps=1):
        super().__init__(params, dict(lr=lr))
        self.steps = steps

    def step(self, closure):
        for _ in range(self.steps):
            loss = closure()
            with torch.no_grad():
                for group in self.param_groups:
                    for p in group["params"]:
                        if p.grad is not None:
                            p.add_(p.grad, alpha=-group["lr"])
        return loss


STEPS_PER_EPOCH = 50
assert N_STEPS % STEPS_PER_EPOCH == 0


def train(width, seed):
    net = NeuralNetRegressor(
        CentredMLP, module__width=width, module__seed=seed,
        criterion=HalfMSELoss, optimizer=GradientDescent, lr=LR,
        optimizer__steps=STEPS_PER_EPOCH, max_epochs=N_STEPS // STEPS_PER_EPOCH,
        batch_size=-1, train_split=None, verbose=0,
    )
    net.fit(X_train, y_train[:, None])
    return net.predict(X_test)[:, 0]


# Each step of these small networks is a handful of small tensor operations: they run several
# times faster on one torch thread than on all cores, and far faster when other processes
# share the cores (``benchmarks/threads.py``). The package's estimators do this by themselves
# (their ``n_threads`` parameter); this script trains with skorch directly, so it sets torch's
# thread count itself and restores it afterwards.
widths = [64, 256, 1024, 4096, 16384]
seeds = [0, 1, 2, 3, 4]
predictions = {}
start = time.perf_counter()
threads = torch.get_num_threads()
torch.set_num_threads(1)
try:
    for width in widths:
        predictions[width] = np.stack([train(width, seed) for seed in seeds])
finally:
    torch.set_num_threads(threads)
print(f"trained {len(widths) * len(seeds)} networks in {time.perf_counter() - start:.1f} s")

# %%
# Distance to the NTK mean
# ------------------------
# The relative RMS distance of single networks and of their seed average to the NTK
# regressor's mean at the same ``t``. The single-network distance falls like
# ``1 / sqrt(width)`` (the empirical tangent kernel fluctuates at that rate); averaging seeds
# removes part of the fluctuation.
single = {w: np.mean([rel_distance(p) for p in predictions[w]]) for w in widths}
averaged = {w: rel_distance(predictions[w].mean(axis=0)) for w in widths}
print(f"{'width':>6} {'single net':>11} {'seed mean':>10} {'single * sqrt(width)':>21}")
for w in widths:
    print(f"{w:>6} {single[w]:>11.2e} {averaged[w]:>10.2e} {single[w] * np.sqrt(w):>21.3f}")

# %%
# Plot
# ----
fig, (ax0, ax1) = plt.subplots(1, 2, figsize=(11, 4))
colors = plt.cm.viridis(np.linspace(0.1, 0.85, len(widths)))
for w, c in zip(widths, colors, strict=True):
    ax0.plot(X_test[:, 0], predictions[w].mean(axis=0), color=c, lw=1.2,
             label=f"width {w} (mean of {len(seeds)})")
ax0.plot(X_test[:, 0], mean_ntk, "k--", lw=2, label=f"NTKRegressor, t={T:g}")
ax0.plot(X_test[:, 0], mean_converged, color="0.6", ls=":", lw=1.5, label="NTKRegressor, t=inf")
ax0.plot(X_train[:, 0], y_train, "ro", ms=4, label="training data")
ax0.set_xlabel("x")
ax0.set_ylabel("prediction")
ax0.legend(fontsize=8)
ax0.set_title("Centred networks after gradient descent")

ax1.loglog(widths, [single[w] for w in widths], "o-", label="single network")
ax1.loglog(widths, [averaged[w] for w in widths], "s-", label=f"mean of {len(seeds)} seeds")
ref = single[widths[0]] * np.sqrt(widths[0] / np.asarray(widths, dtype=float))
ax1.loglog(widths, ref, "k:", label="1 / sqrt(width)")
ax1.axhline(rel_distance(mean_gd_limit), color="0.6", ls="--", label="discrete-step floor")
ax1.set_xlabel("width")
ax1.set_ylabel("relative RMS distance to the NTK mean")
ax1.legend(fontsize=8)
ax1.set_title("Convergence to the infinite-width limit")
fig.tight_layout()
plt.show()
