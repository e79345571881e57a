"""The layer algebra against neural-tangents' float64 values, the fully connected recursion, and
its own invariances (tiling, symmetry, diagonal vs full positions), plus its error messages."""

import json
import pickle

import numpy as np
import pytest
import torch
from conftest import REFERENCE, shared_path
from sklearn.base import clone

from overparam_sklearn.kernels import fc_kernels
from overparam_sklearn.kernels.layers import (
    Activation,
    AvgPool,
    Conv,
    Dense,
    FanInSum,
    FanOut,
    Flatten,
    GlobalAvgPool,
    Identity,
    LayerNorm,
    layer_diagonals,
    layer_kernels,
    parallel,
    serial,
)

REF_FILE = "arch_reference.npz"


@pytest.fixture(scope="module")
def reference():
    path = shared_path("reference", REF_FILE)
    with np.load(path) as data:
        out = {k: data[k] for k in data.files}
    out["__meta__"] = json.loads(str(out["__meta__"]))
    return out


def _architecture_names():
    path = REFERENCE / REF_FILE
    if not path.exists():
        return ["reference-absent"]
    with np.load(path) as data:
        return sorted(json.loads(str(data["__meta__"]))["architectures"])


def build(specs):
    """neural-tangents layer specs from the reference's ``__meta__`` -> our layers."""
    layers = []
    for name, kw in specs:
        if name == "Conv":
            layers.append(Conv(tuple(kw["filter_shape"]), padding=kw["padding"],
                               w_std=kw["W_std"], b_std=kw["b_std"]))
        elif name == "Dense":
            layers.append(Dense(w_std=kw["W_std"], b_std=kw["b_std"]))
        elif name in ("Relu", "Erf"):
            layers.append(Activation(name.lower()))
        elif name == "Flatten":
            layers.append(Flatten())
        elif name == "GlobalAvgPool":
            layers.append(GlobalAvgPool())
        elif name == "AvgPool":
            layers.append(AvgPool(tuple(kw["window_shape"]), tuple(kw["strides"]),
                                  kw["padding"]))
        elif name == "LayerNorm":
            layers.append(LayerNorm(tuple(kw["axis"])))
        elif name == "Residual":
            assert kw["combine"] == "FanOut(2) -> parallel(branch, Identity) -> FanInSum"
            layers.append(serial(FanOut(2), parallel(build(kw["branch"]), Identity()),
                                 FanInSum()))
        else:
            raise KeyError(f"layer {name} of the reference is not mapped")
    return serial(*layers)


@pytest.mark.parametrize("name", _architecture_names())
@pytest.mark.parametrize("pair", ["x1x2", "x1x1"])
def test_architectures_match_neural_tangents(reference, name, pair):
    arch = build(reference["__meta__"]["architectures"][name])
    x2 = reference["x2"] if pair == "x1x2" else None
    nngp, ntk = arch.kernel(reference["x1"], x2, get=("nngp", "ntk"))
    for which, ours in (("nngp", nngp), ("ntk", ntk)):
        ref = reference[f"{name}|{which}|{pair}"]
        assert ours.shape == ref.shape
        err = np.abs(ours - ref) / np.abs(ref).max()
        if pair == "x1x1" and which == "ntk":
            # At x = x' neural-tangents takes the ReLU angle from sqrt(k11 k22 - k12^2) of a
            # round-off residual (about 1e-8 instead of 0) and loses half the digits on the
            # diagonal of the NTK; ours comes from the exact pairs (x, x). See test_kernels.py.
            off = ~np.eye(len(ref), dtype=bool)
            assert err[off].max() < 1e-10, (which, err[off].max())
            assert np.diag(err).max() < 1e-8
        else:
            assert err.max() < 1e-10, (which, err.max())


def test_reference_lists_every_layer_kind(reference):
    kinds = set()

    def walk(specs):
        for name, kw in specs:
            kinds.add(name)
            if name == "Residual":
                walk(kw["branch"])

    for specs in reference["__meta__"]["architectures"].values():
        walk(specs)
    assert {"Conv", "AvgPool", "GlobalAvgPool", "Flatten", "LayerNorm", "Residual"} <= kinds


@pytest.mark.parametrize("activation", ["relu", "erf", "gelu", "leaky_relu(0.1)", "sin"])
@pytest.mark.parametrize("parameterization", ["ntk", "standard"])
def test_dense_stack_equals_fully_connected_recursion(activation, parameterization):
    rng = np.random.default_rng(0)
    X1, X2 = rng.normal(size=(7, 5)), rng.normal(size=(4, 5))
    n_hidden, w, b, width = 3, 1.3, 0.2, 300
    layers = [Dense(w, b, parameterization, width)]
    for _ in range(n_hidden):
        layers += [Activation(activation), Dense(w, b, parameterization, width)]
    arch = serial(*layers)
    for x2 in (X2, None):
        nngp, ntk = layer_kernels(arch, X1, x2)
        ref_nngp, ref_ntk = fc_kernels(X1, x2, n_hidden, activation, w, b, parameterization,
                                       width)
        torch.testing.assert_close(nngp, ref_nngp, rtol=1e-12, atol=0)
        torch.testing.assert_close(ntk, ref_ntk, rtol=1e-12, atol=0)


def _images(n, seed, shape=(6, 5, 2)):
    return np.random.default_rng(seed).normal(size=(n,) + shape)


def test_full_positions_equal_positional_diagonal():
    # Without pooling only K[p, p] is needed; AvgPool((1, 1)) is the identity but forces every
    # pair of positions to be kept: both evaluations must agree.
    body = [Conv((3, 3), "SAME", w_std=1.3, b_std=0.2), Activation("relu"),
            Conv((2, 3), "VALID", strides=(1, 2), w_std=1.1, b_std=0.1), Activation("erf"),
            LayerNorm(-1)]
    tail = [Flatten(), Dense(1.2, 0.1)]
    diag = serial(*body, *tail)
    full = serial(*body, AvgPool((1, 1)), *tail)
    X1, X2 = _images(5, 0), _images(3, 1)
    for x2 in (X2, None):
        a = layer_kernels(diag, X1, x2)
        b = layer_kernels(full, X1, x2)
        for u, v in zip(a, b, strict=True):
            torch.testing.assert_close(u, v, rtol=1e-12, atol=1e-14)


def test_tiling_symmetry_and_diagonal_are_consistent():
    arch = serial(Conv((3, 3), "CIRCULAR", w_std=1.4, b_std=0.1), Activation("relu"),
                  AvgPool((2, 2), (2, 2), "SAME"), Conv((3, 3), w_std=1.4), Activation("gelu"),
                  GlobalAvgPool(), Dense(1.0, 0.3))
    X = _images(9, 2)
    big = layer_kernels(arch, X)
    small = layer_kernels(arch, X, tile_bytes=1)  # one pair per block
    cross = layer_kernels(arch, X, X.copy())  # the non-symmetric path
    d_nngp, d_ntk = layer_diagonals(arch, X)
    for k, (a, b, c, d) in enumerate(zip(big, small, cross, (d_nngp, d_ntk), strict=True)):
        torch.testing.assert_close(a, b, rtol=1e-13, atol=0)
        assert torch.equal(a, a.T), k
        torch.testing.assert_close(a, c, rtol=1e-10, atol=0)
        torch.testing.assert_close(a.diagonal(), d, rtol=0, atol=0)
    # positive semi-definite
    assert torch.linalg.eigvalsh(big[1]).min() > -1e-10 * big[1].diagonal().max()


def test_width_appears_only_in_standard_ntk():
    X = _images(4, 3)
    base = dict(filter_shape=(3, 3), w_std=1.2, b_std=0.1)

    def arch(parameterization, width):
        return serial(Conv(**base, parameterization=parameterization, width=width),
                      Activation("relu"),
                      Conv(**base, parameterization=parameterization, width=width),
                      Activation("relu"), Flatten(),
                      Dense(1.0, 0.1, parameterization=parameterization))

    n1, t1 = layer_kernels(arch("standard", 64), X)
    n2, t2 = layer_kernels(arch("standard", 128), X)
    n3, _ = layer_kernels(arch("ntk", 64), X)
    torch.testing.assert_close(n1, n2, rtol=1e-14, atol=0)
    torch.testing.assert_close(n1, n3, rtol=1e-14, atol=0)
    assert (t2 > t1).all()


def test_vector_inputs_and_numpy_output():
    arch = serial(Dense(1.5, 0.1), Activation("relu"), Dense(1.5, 0.1))
    X = np.random.default_rng(0).normal(size=(6, 4))
    K = arch.kernel(X, get="ntk")
    assert isinstance(K, np.ndarray) and K.dtype == np.float64 and K.shape == (6, 6)
    K32 = arch.kernel(torch.as_tensor(X, dtype=torch.float32), get="nngp")
    assert K32.dtype == np.float32
    np.testing.assert_allclose(K32, arch.kernel(X), rtol=1e-5)


def test_architectures_are_plain_values():
    arch = serial(Conv((3, 3), w_std=1.4), Activation("leaky_relu(0.1)"),
                  FanOut(2), parallel(Identity(), serial(Activation("relu"), Conv((1, 1)))),
                  FanInSum(), LayerNorm((1, 2, 3)), GlobalAvgPool(), Dense())
    assert pickle.loads(pickle.dumps(arch)) == arch
    assert clone(arch, safe=False) == arch
    assert arch != serial(Conv((3, 3), w_std=1.5))
    assert "Conv(filter_shape=(3, 3), padding='SAME', w_std=1.4, b_std=0)" in repr(arch)
    assert hash(arch) == hash(pickle.loads(pickle.dumps(arch)))


@pytest.mark.parametrize("arch, X, match", [
    (serial(Conv((3, 3)), Activation("relu"), Dense()), _images(2, 0), "spatial shape"),
    (serial(Conv((3, 3)), Flatten(), Dense()), np.ones((3, 4)), "spatial axes"),
    (serial(Conv((3,)), Flatten()), _images(2, 0), "spatial axes"),
    (serial(GlobalAvgPool()), np.ones((3, 4)), "needs spatial inputs"),
    (serial(parallel(Dense(), Dense()), FanInSum()), np.ones((3, 4)), "FanOut"),
    (serial(FanOut(2), Dense()), np.ones((3, 4)), "several branches"),
    (serial(Conv((7, 7), "VALID"), Flatten()), _images(2, 0), "does not fit"),
    (serial(LayerNorm((1, 2)), Flatten()), _images(2, 0), "channel axis"),
    (serial(Dense()), np.array([[np.nan, 1.0]]), "NaN"),
    (serial(FanOut(2), parallel(Conv((3, 3), "VALID"), Identity()), FanInSum(), Flatten()),
     _images(2, 0), "one spatial shape"),
])
def test_bad_inputs_raise_clear_errors(arch, X, match):
    with pytest.raises(ValueError, match=match):
        layer_kernels(arch, X)


def test_bad_layer_arguments():
    with pytest.raises(ValueError, match="padding"):
        Conv((3, 3), padding="same")
    with pytest.raises(ValueError, match="w_std"):
        Dense(w_std=-1.0)
    with pytest.raises(ValueError, match="filter_shape"):
        Conv((0, 3))
    with pytest.raises(ValueError, match="Unknown activation"):
        Activation("tanhh")
    with pytest.raises(TypeError, match="layers such as"):
        serial(Dense(), "relu")
    with pytest.raises(ValueError, match="get must be"):
        serial(Dense()).kernel(np.ones((2, 2)), get="cov")
    with pytest.raises(ValueError, match="trailing shape"):
        layer_kernels(serial(Dense()), np.ones((2, 3)), np.ones((2, 4)))
    with pytest.raises(TypeError, match="architecture must be"):
        layer_kernels("relu", np.ones((2, 3)))


def test_memory_guard_refuses_before_allocating():
    # 20000 32x32 images with pooling: (HW)^2 = 1M numbers per pair; the two 20000 x 20000
    # outputs alone are 6 GiB and every block of pairs costs at least 80 MB. Refused with the
    # estimate and what to change, before anything is allocated.
    arch = serial(Conv((3, 3)), Activation("relu"), GlobalAvgPool(), Dense())
    X = torch.zeros((1, 32, 32, 3)).expand(200000, 32, 32, 3)  # no memory behind it
    with pytest.raises(ValueError, match=r"Not enough memory.*\(H W\)\^2"):
        layer_kernels(arch, X)
