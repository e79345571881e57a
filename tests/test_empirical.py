"""The empirical NTK against its definition (autograd Jacobians) and against the infinite-width
NTK as the width grows; the scikit-learn kernel wrapper in KernelRidge / GPR / SVC."""

import math
import pickle

import numpy as np
import pytest
import torch
from sklearn.base import clone
from sklearn.gaussian_process import GaussianProcessRegressor
from sklearn.kernel_ridge import KernelRidge
from sklearn.svm import SVC

from overparam_sklearn.kernels import EmpiricalNTKKernel, empirical_ntk, ntk_kernel


def _double(module, seed):
    """``module`` in float64 with parameters drawn from a private generator."""
    g = torch.Generator().manual_seed(seed)
    module = module.double()
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn(p.shape, generator=g, dtype=p.dtype) / math.sqrt(p.shape[-1]))
    return module


def _ntk_by_definition(module, X1, X2):
    """``sum_p J(x1) J(x2)^T`` from one autograd call per sample and output: (n, m, k, k)."""
    params = [p for p in module.parameters() if p.requires_grad]

    def jacobian(X):
        out = module(X).reshape(X.shape[0], -1)
        rows = []
        for i in range(out.shape[0]):
            for c in range(out.shape[1]):
                grads = torch.autograd.grad(out[i, c], params, retain_graph=True,
                                            allow_unused=True)
                rows.append(torch.cat([
                    (torch.zeros_like(p) if g is None else g).reshape(-1)
                    for g, p in zip(grads, params, strict=True)
                ]))
        return torch.stack(rows).reshape(out.shape[0], out.shape[1], -1)

    return torch.einsum("icp,jdp->ijcd", jacobian(X1), jacobian(X2))


class _Shared(torch.nn.Module):
    """One Linear used twice (weight sharing): not factorisable, Jacobian path."""

    def __init__(self):
        super().__init__()
        self.inner = torch.nn.Linear(3, 3)
        self.out = torch.nn.Linear(3, 2)

    def forward(self, x):
        return self.out(torch.tanh(self.inner(torch.tanh(self.inner(x)))))


def _modules():
    mlp = torch.nn.Sequential(torch.nn.Linear(3, 7), torch.nn.Tanh(), torch.nn.Linear(7, 5),
                              torch.nn.ReLU(inplace=True), torch.nn.Linear(5, 2))
    cnn = torch.nn.Sequential(torch.nn.Conv2d(1, 3, 3, padding=1), torch.nn.ReLU(),
                              torch.nn.Flatten(), torch.nn.Linear(3 * 16, 3))
    scalar = torch.nn.Sequential(torch.nn.Linear(3, 6), torch.nn.GELU(),
                                 torch.nn.LayerNorm(6), torch.nn.Linear(6, 1))
    return [("mlp", mlp, (3,)), ("cnn", cnn, (1, 4, 4)), ("shared", _Shared(), (3,)),
            ("scalar", scalar, (3,))]


@pytest.mark.parametrize("name, module, shape", _modules(), ids=lambda v: v
                         if isinstance(v, str) else "")
def test_matches_autograd_jacobians(name, module, shape):
    module = _double(module, 0)
    g = torch.Generator().manual_seed(1)
    X1 = torch.randn((5,) + shape, generator=g, dtype=torch.float64)
    X2 = torch.randn((3,) + shape, generator=g, dtype=torch.float64)
    for x2 in (X2, None):
        ref = _ntk_by_definition(module, X1, X1 if x2 is None else x2)
        full = empirical_ntk(module, X1, x2, trace=False)
        chunked = empirical_ntk(module, X1, x2, trace=False, tile_bytes=1)
        k = ref.shape[-1]
        if k == 1:
            ref = ref[..., 0, 0]
        torch.testing.assert_close(full, ref, rtol=1e-12, atol=1e-13)
        torch.testing.assert_close(chunked, ref, rtol=1e-12, atol=1e-13)
        traced = empirical_ntk(module, X1, x2)
        expected = ref if k == 1 else torch.diagonal(ref, dim1=2, dim2=3).mean(-1)
        torch.testing.assert_close(traced, expected, rtol=1e-12, atol=1e-13)


def test_frozen_parameters_and_module_left_alone():
    net = _double(torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.ReLU(),
                                      torch.nn.Linear(4, 1)), 0)
    net[0].weight.requires_grad_(False)
    X = torch.randn(4, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    before = {k: v.clone() for k, v in net.state_dict().items()}
    K = empirical_ntk(net, X)
    ref = _ntk_by_definition(net, X, X)[..., 0, 0]
    torch.testing.assert_close(K, ref, rtol=1e-12, atol=1e-13)
    for key, value in net.state_dict().items():
        assert torch.equal(value, before[key])
    assert not net[0]._forward_hooks and not net[2]._forward_hooks


class _Scale(torch.nn.Module):
    def __init__(self, c):
        super().__init__()
        self.c = c

    def forward(self, x):
        return x * self.c


class _Bias(torch.nn.Module):
    def __init__(self, n, b_std, generator):
        super().__init__()
        self.b_std = b_std
        self.b = torch.nn.Parameter(torch.randn(n, generator=generator, dtype=torch.float64))

    def forward(self, x):
        return x + self.b_std * self.b


def _ntk_parameterised_mlp(d, width, n_hidden, w_std, b_std, seed):
    """A ReLU MLP in neural-tangents' NTK parameterisation: standard normal parameters,
    ``w_std / sqrt(fan_in)`` and ``b_std`` in the forward pass."""
    g = torch.Generator().manual_seed(seed)
    layers, fan_in = [], d
    for i in range(n_hidden + 1):
        out = width if i < n_hidden else 1
        linear = torch.nn.Linear(fan_in, out, bias=False).double()
        with torch.no_grad():
            linear.weight.copy_(torch.randn(out, fan_in, generator=g, dtype=torch.float64))
        layers += [_Scale(w_std / math.sqrt(fan_in)), linear, _Bias(out, b_std, g)]
        if i < n_hidden:
            layers.append(torch.nn.ReLU())
        fan_in = out
    return torch.nn.Sequential(*layers)


def test_converges_to_infinite_width_ntk_like_inverse_sqrt_width():
    # Relative Frobenius distance to ntk_kernel, root-mean-square over 32 fixed seeds per
    # width: measured 0.055, 0.029, 0.015 at widths 1024, 4096, 16384 (slope -0.46 in log-log).
    X = torch.as_tensor(np.random.default_rng(0).normal(size=(8, 4)))
    ref = ntk_kernel(X, n_hidden=1, activation="relu", w_std=1.4, b_std=0.1)
    widths, rms = (1024, 4096, 16384), []
    for width in widths:
        errs = [
            float(torch.linalg.norm(empirical_ntk(
                _ntk_parameterised_mlp(4, width, 1, 1.4, 0.1, 1000 * width + seed), X) - ref)
                / torch.linalg.norm(ref))
            for seed in range(32)
        ]
        rms.append(math.sqrt(np.mean(np.square(errs))))
    assert rms[1] < 0.05, rms  # within a few percent at width 4096
    slope = np.polyfit(np.log(widths), np.log(rms), 1)[0]
    assert -0.7 < slope < -0.3, (slope, rms)  # 1/sqrt(width): -0.5
    assert rms[0] > rms[1] > rms[2]


@pytest.mark.slow
def test_deep_net_at_width_4096_is_within_a_few_percent():
    X = torch.as_tensor(np.random.default_rng(1).normal(size=(6, 4)))
    ref = ntk_kernel(X, n_hidden=2, activation="relu", w_std=1.4, b_std=0.1)
    errs = [float(torch.linalg.norm(empirical_ntk(
        _ntk_parameterised_mlp(4, 4096, 2, 1.4, 0.1, seed), X) - ref) / torch.linalg.norm(ref))
        for seed in range(2)]
    assert max(errs) < 0.1, errs  # measured 0.048 rms over 4 seeds


@pytest.fixture(scope="module")
def digits_like():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(40, 4))
    return X, np.sin(X[:, 0]) + X[:, 1] ** 2, (X[:, 0] > 0).astype(int)


def _net():
    return _double(torch.nn.Sequential(torch.nn.Linear(4, 64), torch.nn.Tanh(),
                                       torch.nn.Linear(64, 1)), 3)


def test_kernel_in_kernel_ridge_gpr_and_svc(digits_like):
    X, y, labels = digits_like
    kernel = EmpiricalNTKKernel(_net())
    K = kernel(X)
    np.testing.assert_allclose(K, empirical_ntk(kernel.module, X).numpy(), rtol=1e-14)
    np.testing.assert_allclose(kernel.diag(X), np.diag(K), rtol=1e-12)
    krr = KernelRidge(alpha=1e-3, kernel=kernel).fit(X[:30], y[:30])
    pre = KernelRidge(alpha=1e-3, kernel="precomputed").fit(K[:30, :30], y[:30])
    np.testing.assert_allclose(krr.predict(X[30:]), pre.predict(K[30:, :30]), rtol=1e-8)
    gpr = GaussianProcessRegressor(kernel, alpha=1e-2).fit(X[:30], y[:30])
    mean, std = gpr.predict(X[30:], return_std=True)
    assert mean.shape == std.shape == (10,) and np.all(std >= 0)
    assert SVC(kernel=kernel, C=10.0).fit(X[:30], labels[:30]).score(X[:30], labels[:30]) > 0.8
    assert kernel.theta.shape == (0,)
    K2, grad = kernel(X[:5], eval_gradient=True)
    assert grad.shape == (5, 5, 0)


def test_kernel_input_shape_clone_and_pickle():
    cnn = _double(torch.nn.Sequential(torch.nn.Conv2d(1, 2, 3), torch.nn.ReLU(),
                                      torch.nn.Flatten(), torch.nn.Linear(8, 1)), 0)
    X = np.random.default_rng(0).normal(size=(5, 16))
    kernel = EmpiricalNTKKernel(cnn, input_shape=(1, 4, 4))
    K = kernel(X)
    np.testing.assert_allclose(K, empirical_ntk(cnn, X.reshape(5, 1, 4, 4)).numpy())
    np.testing.assert_allclose(clone(kernel)(X), K, rtol=1e-14)
    np.testing.assert_allclose(pickle.loads(pickle.dumps(kernel))(X), K, rtol=1e-14)
    with pytest.raises(ValueError, match="input_shape"):
        kernel(np.ones((2, 15)))


def test_bad_inputs():
    net = _net()
    with pytest.raises(TypeError, match="torch.nn.Module"):
        empirical_ntk("net", np.ones((2, 4)))
    with pytest.raises(ValueError, match="NaN"):
        empirical_ntk(net, np.array([[np.nan, 0, 0, 0]]))
    with pytest.raises(ValueError, match="sample shape"):
        empirical_ntk(net, np.ones((2, 4)), np.ones((2, 4, 1)))
    frozen = torch.nn.Linear(2, 1).requires_grad_(False)
    with pytest.raises(ValueError, match="no trainable parameters"):
        empirical_ntk(frozen, np.ones((2, 2)))
