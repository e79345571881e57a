"""The NNGP / NTK recursion against neural-tangents' float64 values and exact closed forms."""

import math

import numpy as np
import pytest
import torch
from conftest import REFERENCE, shared_path

from overparam_sklearn.kernels import (
    fc_diagonals,
    fc_kernels,
    nngp_kernel,
    ntk_kernel,
    parse_activation,
)

W_STD, B_STD, WIDTH = 1.5, 0.05, 512  # the reference file's __meta__
# ABReLU-family activations: at x = x' neural-tangents takes the angle from
# sqrt(k11 k22 - k12^2) of a round-off residual and loses about half the digits on the
# diagonal of the train-train NTK (angle ~ 1e-8 instead of 0). We compute the exact angle 0,
# so those diagonal entries are compared at 1e-8 and everything else at 1e-12.
ABRELU_FAMILY = {"relu", "abs", "leaky_relu(0.1)", "abrelu(-0.5,2)"}


@pytest.fixture(scope="module")
def reference():
    path = shared_path("reference", "ntk_reference.npz")
    return dict(np.load(path))


def _kernel_keys():
    # Parameters are collected before any test runs: without ../shared, one placeholder whose
    # test skips (through the reference fixture) with the absent-file message.
    path = REFERENCE / "ntk_reference.npz"
    if not path.exists():
        return ["reference-absent"]
    with np.load(path) as data:
        return sorted(k for k in data.files if k.startswith("kernel|"))


def test_reference_covers_every_activation(reference):
    acts = {k.split("|")[1] for k in reference if k.startswith("kernel|")}
    assert len(acts) == 10
    for act in acts:
        parse_activation(act)


@pytest.mark.parametrize("key", _kernel_keys())
def test_kernels_match_neural_tangents(reference, key):
    _, act, par, hidden, which, pair = key.split("|")
    n_hidden = int(hidden.split("=")[1])
    x1 = reference["x1"]
    x2 = reference["x2"] if pair == "x1x2" else None
    nngp, ntk = fc_kernels(x1, x2, n_hidden, act, W_STD, B_STD, par, WIDTH)
    ours = (nngp if which == "nngp" else ntk).numpy()
    ref = reference[key]
    scale = np.abs(ref).max()
    err = np.abs(ours - ref) / scale
    abrelu_ntk_diagonal = which == "ntk" and act in ABRELU_FAMILY and n_hidden > 0
    if pair == "x1x1" and abrelu_ntk_diagonal:
        off = ~np.eye(len(ref), dtype=bool)
        assert err[off].max() < 1e-12
        assert np.diag(err).max() < 1e-8
    else:
        assert err.max() < 1e-12, err.max()


@pytest.mark.parametrize("a,b", [(0.0, 1.0), (-1.0, 1.0), (0.1, 1.0), (-0.5, 2.0)])
def test_abrelu_diagonal_is_exact(a, b):
    # At x = x' the angle is 0: E[phi(u)^2] = (a^2 + b^2)/2 k and E[phi'(u)^2] = (a^2 + b^2)/2.
    act = parse_activation(f"abrelu({a},{b})")
    k = torch.tensor([0.3, 1.0, 7.0], dtype=torch.float64)
    nngp, dot = act.maps(k, k, k, True)
    torch.testing.assert_close(nngp, (a * a + b * b) / 2 * k, rtol=1e-15, atol=0)
    torch.testing.assert_close(dot, torch.full_like(k, (a * a + b * b) / 2), rtol=1e-15, atol=0)


@pytest.mark.parametrize("spec", ["relu", "erf", "gelu", "sin", "rbf(0.7)", "abs", "sigmoid_like",
                                  "leaky_relu(0.2)", "identity", "abrelu(-0.5,2)"])
def test_dual_maps_match_monte_carlo(spec):
    # E[phi(u) phi(v)] and E[phi'(u) phi'(v)] by Monte Carlo over 2e6 Gaussian pairs.
    act = parse_activation(spec)
    gen = torch.Generator().manual_seed(0)
    k11, k22, k12 = 1.3, 0.7, 0.5
    cov = torch.tensor([[k11, k12], [k12, k22]], dtype=torch.float64)
    z = torch.randn(2_000_000, 2, generator=gen, dtype=torch.float64)
    z = z @ torch.linalg.cholesky(cov).T
    u, v = z[:, 0].requires_grad_(), z[:, 1].requires_grad_()
    fu, fv = act.fn(u), act.fn(v)
    du = torch.autograd.grad(fu.sum(), u)[0]
    dv = torch.autograd.grad(fv.sum(), v)[0]
    fu, fv = fu.detach(), fv.detach()  # plain numbers from here on (no autograd graph)
    mc_nngp = float((fu * fv).mean())
    mc_dot = float((du * dv).mean())
    t = lambda x: torch.tensor(x, dtype=torch.float64)  # noqa: E731
    nngp, dot = act.maps(t(k12), t(k11), t(k22), True)
    assert abs(float(nngp) - mc_nngp) < 5e-3 * max(1.0, abs(mc_nngp))
    assert abs(float(dot) - mc_dot) < 5e-3 * max(1.0, abs(mc_dot))


def test_tiling_gives_the_same_kernel():
    rng = np.random.default_rng(0)
    X, Y = rng.normal(size=(300, 5)), rng.normal(size=(70, 5))
    full = fc_kernels(X, Y, 3, "gelu", 1.3, 0.2)
    tiled = fc_kernels(X, Y, 3, "gelu", 1.3, 0.2, tile_bytes=70 * 8 * 8 * 7)  # 7-row tiles
    for a, b in zip(full, tiled, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-14, atol=1e-15)


def test_diagonals_match_kernel_diagonal():
    rng = np.random.default_rng(1)
    X = torch.as_tensor(rng.normal(size=(20, 4)))
    for par in ["ntk", "standard"]:
        nngp, ntk = fc_kernels(X, None, 2, "erf", 1.4, 0.3, par, 64)
        variances, theta = fc_diagonals(X, 2, "erf", 1.4, 0.3, par, 64)
        torch.testing.assert_close(variances[-1], nngp.diagonal(), rtol=1e-13, atol=0)
        torch.testing.assert_close(theta, ntk.diagonal(), rtol=1e-13, atol=0)


def test_zero_hidden_layers_is_the_linear_kernel():
    rng = np.random.default_rng(2)
    X = rng.normal(size=(6, 3))
    K = nngp_kernel(X, n_hidden=0, w_std=2.0, b_std=0.5).numpy()
    np.testing.assert_allclose(K, 4.0 * X @ X.T / 3 + 0.25, rtol=1e-14)
    # NTK parameterization: the NTK of one Dense layer equals its NNGP.
    np.testing.assert_allclose(ntk_kernel(X, n_hidden=0, w_std=2.0, b_std=0.5).numpy(), K)


def test_one_hidden_relu_layer_is_the_arc_cosine_kernel():
    # Cho & Saul (2009): E[relu(u) relu(v)] = |u||v| (sin t + (pi - t) cos t) / (2 pi).
    rng = np.random.default_rng(3)
    X = rng.normal(size=(5, 4))
    K = nngp_kernel(X, n_hidden=1, w_std=1.0, b_std=0.0).numpy()
    norms = np.linalg.norm(X, axis=1) / 2.0  # sqrt(x.x / d), d = 4
    cos = np.clip((X @ X.T / 4) / np.outer(norms, norms), -1, 1)
    theta = np.arccos(cos)
    expected = np.outer(norms, norms) * (np.sin(theta) + (math.pi - theta) * cos) / (2 * math.pi)
    np.testing.assert_allclose(K, expected, rtol=1e-12, atol=1e-14)


def test_float32_and_device_follow_the_input():
    X = torch.randn(8, 3, dtype=torch.float32, generator=torch.Generator().manual_seed(0))
    K = ntk_kernel(X, n_hidden=2)
    assert K.dtype == torch.float32 and K.device == X.device
    K64 = ntk_kernel(X.double(), n_hidden=2)
    torch.testing.assert_close(K.double(), K64, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize(
    "bad, message",
    [("swish", "Unknown activation"), ("leaky_relu(x)", "Unknown activation"),
     ("rbf(-1)", "gamma > 0"), (3, "must be a string")],
)
def test_bad_activation_specs(bad, message):
    with pytest.raises((ValueError, TypeError), match=message):
        parse_activation(bad)


def test_bad_kernel_parameters():
    X = np.ones((3, 2))
    with pytest.raises(ValueError, match="n_hidden"):
        nngp_kernel(X, n_hidden=-1)
    with pytest.raises(ValueError, match="parameterization"):
        ntk_kernel(X, parameterization="mup")
    with pytest.raises(ValueError, match="features"):
        nngp_kernel(X, np.ones((2, 3)))
    with pytest.raises(ValueError, match="2-D"):
        nngp_kernel(np.ones(3))


@pytest.mark.parametrize("activation", ["relu", "gelu", "abrelu(-0.5,2)"])
@pytest.mark.parametrize("parameterization", ["ntk", "standard"])
def test_symmetric_tiles_mirror_the_upper_blocks(activation, parameterization):
    # A symmetric kernel is computed on and above the diagonal only, in tiles, then mirrored;
    # it must equal the one-block evaluation and the general (X, X) evaluation off the diagonal.
    X = np.random.default_rng(4).normal(size=(90, 6))
    args = (2, activation, 1.2, 0.1, parameterization, 64)
    one_block = fc_kernels(X, None, *args)
    tiled = fc_kernels(X, None, *args, tile_bytes=90 * 8 * 8 * 13)  # 13-row tiles
    general = fc_kernels(X, X.copy(), *args)
    for a, b, c in zip(one_block, tiled, general, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-13, atol=1e-14)
        assert torch.equal(b, b.T)
        off = ~torch.eye(90, dtype=torch.bool)
        torch.testing.assert_close(b[off], c[off], rtol=1e-12, atol=1e-14)
        torch.testing.assert_close(b.diagonal(), c.diagonal(), rtol=1e-7, atol=0)
