"""A layer algebra for the NNGP and NTK of infinitely wide networks of any architecture.

Layers compose like neural-tangents' ``stax`` (Novak et al. 2020, "Neural Tangents: Fast and
Easy Infinite Neural Networks in Python", ICLR): :func:`serial`, :func:`parallel`,
:class:`FanOut`, :class:`FanInSum`, :class:`Identity`, :class:`Dense`, :class:`Conv`,
:class:`AvgPool`, :class:`GlobalAvgPool`, :class:`Flatten`, :class:`LayerNorm` and
:class:`Activation` (every dual activation of :mod:`~overparam_sklearn.kernels._dual`). Widths do
not appear: every layer is infinitely wide. The conventions are neural-tangents' (weights
``N(0, w_std^2 / fan_in)``, biases ``N(0, b_std^2)``, ``parameterization="ntk"`` by default,
images NHWC).

What is propagated (Novak et al. 2019, "Bayesian Deep Convolutional Networks with Many Channels
are Gaussian Processes", Eq. 3-7; Arora et al. 2019, "On Exact Computation with an Infinitely
Wide Neural Net", Sec. 4): for a pair of inputs ``(x, x')`` the covariance of the pre-activations
at every pair of spatial positions, ``K[p, p'] = E[z_p(x) z_p'(x')]``, and the NTK ``Theta`` of
the same shape. Per layer, with ``f`` the filter size and ``A`` the mean over the filter offsets
``d`` of ``K[p + d, p' + d]`` (the same offset on both sides: the filter is shared)::

    Conv / Dense (ntk):   K <- w_std^2 A(K) + b_std^2,   Theta <- K + w_std^2 A(Theta)
    Conv / Dense (std):   Theta <- fan_in A(K_in) + 1 + w_std^2 A(Theta), fan_in = C f
    Activation phi:       K <- E[phi(u) phi(v)],   Theta <- E[phi'(u) phi'(v)] Theta
    AvgPool (window w):   K[p, p'] <- mean over a, b in the windows of K[s p + a, s p' + b]
    GlobalAvgPool:        K <- mean over all (p, p');  Flatten: K <- mean over p of K[p, p]
    LayerNorm:            K[p, p'] <- K[p, p'] / sqrt(v(x)[p] v(x')[p'])
    FanInSum:             K <- sum of the branches' K (independent branches)

where ``(u, v)`` is Gaussian with variances ``K(x, x)[p, p]``, ``K(x', x')[p', p']`` and
covariance ``K(x, x')[p, p']``, and ``v`` is the variance averaged over LayerNorm's axes.

Cost and what is stored. Conv, Dense, activations and Flatten only ever read ``K[p, p]`` on the
diagonal ``p = p'``; an architecture without pooling is therefore evaluated on that diagonal:
``H W`` numbers per pair of inputs, ``O(n m H W f)`` time. Pooling mixes positions, so an
architecture with :class:`AvgPool` or :class:`GlobalAvgPool` keeps every pair of positions:
``(H W)^2`` numbers per pair of inputs, ``O(n m (H W)^2 f)`` time. The ``n x m`` kernel is
computed in blocks of ``rows x cols`` pairs whose intermediates fit in ``tile_bytes``; the
per-input variances every activation needs are computed once per input (a first pass over the
rows of ``X1`` and of ``X2``) and stored, ``O(n H W)`` per activation.
"""

import math
import numbers
import string

import torch

from .._backend import (
    DEFAULT_TILE_BYTES,
    check_memory,
    estimate_bytes,
    tile_slices,
    tiled_kernel_bytes,
)
from .._validation import check_real_matrix
from ._dual import parse_activation

__all__ = [
    "Layer",
    "serial",
    "parallel",
    "FanOut",
    "FanInSum",
    "Identity",
    "Dense",
    "Conv",
    "AvgPool",
    "GlobalAvgPool",
    "Flatten",
    "LayerNorm",
    "Activation",
    "layer_kernels",
    "layer_diagonals",
]

_PADDINGS = ("SAME", "VALID", "CIRCULAR")
_PARAMETERIZATIONS = ("ntk", "standard")
# Tensors of one block's size alive at once inside a layer (nngp, ntk, padded copies, the
# activation's temporaries); the memory estimate and the block size use it.
_BUFFERS_PER_BLOCK = 10
# Blocks are kept small enough to stay in cache while a layer makes its passes over them
# (measured on the CNTK benchmark: 1 MiB blocks, 5 x 5 pairs of 8 x 8 images, ran 1.4x
# faster than 2 MiB ones and 1.6x faster than 8 MiB ones).
_CACHE_BLOCK_BYTES = 2**20


# -- the state propagated through the layers --------------------------------------------------
class _State:
    """Kernels of a block of input pairs at one point of the network.

    ``nngp`` and ``ntk`` have shape ``(*batch, *positions)``: ``batch`` is ``(r, m)`` for a block
    of pairs or ``(r,)`` for the pairs ``(x, x)`` of the first pass; ``positions`` is ``()`` for
    vectors, ``(H, W, ...)`` on the positional diagonal, or ``(H, H, W, W, ...)`` for every
    pair of positions (``full``). ``ntk`` is ``None`` while it is zero or not needed.
    """

    __slots__ = ("nngp", "ntk", "spatial", "width")

    def __init__(self, nngp, ntk, spatial, width):
        self.nngp = nngp
        self.ntk = ntk
        self.spatial = tuple(spatial)
        self.width = width

    def replace(self, **kw):
        out = _State(self.nngp, self.ntk, self.spatial, self.width)
        for key, value in kw.items():
            setattr(out, key, value)
        return out


class _Context:
    """What every layer of one pass shares.

    In the first pass (``paired``) the state holds the pairs ``(x, x)`` and each layer that
    needs the inputs' variances (activations, LayerNorm) reads them off the state's positional
    diagonal and records them on ``tape``. In a block pass the same layers, visited in the same
    order, replay the recorded variances of the block's rows (``tape1``) and columns
    (``tape2``).
    """

    def __init__(self, full, paired, need_ntk, tape1=None, tape2=None, rows=None, cols=None):
        self.full = full
        self.paired = paired
        self.need_ntk = need_ntk
        self.tape1, self.tape2 = tape1, tape2
        self.rows, self.cols = rows, cols
        self.position = 0
        self.recorded = []

    @property
    def n_batch(self):
        return 1 if self.paired else 2

    def variances(self, st):
        """Per-input variances at each position, ``(v1, v2)`` shaped to broadcast on ``st``."""
        if self.paired:
            # a copy: the diagonal of a full state is a view that would keep it all alive
            v = _positional_diagonal(st.nngp, self.full, len(st.spatial)).clone()
            self.recorded.append(v)
            v1 = v2 = v
        else:
            v1 = self.tape1[self.position][self.rows][:, None]
            v2 = self.tape2[self.position][self.cols][None]
            self.position += 1
        if self.full and st.spatial:
            nb = self.n_batch
            first = tuple(x for h in st.spatial for x in (h, 1))
            second = tuple(x for h in st.spatial for x in (1, h))
            v1 = v1.reshape(v1.shape[:nb] + first)
            v2 = v2.reshape(v2.shape[:nb] + second)
        return v1, v2


def _positional_diagonal(K, full, n_spatial):
    """``K[..., p, p]`` of a first-pass state: shape ``(r, *spatial)``."""
    if not full:
        return K
    for _ in range(n_spatial):
        # the first remaining pair of position axes sits at dims (1, 2); its diagonal goes last
        K = torch.diagonal(K, dim1=1, dim2=2)
    return K


def _axes(ctx, spatial_index):
    """The tensor dims holding spatial axis ``spatial_index`` (one, or a pair when ``full``)."""
    nb = ctx.n_batch
    if ctx.full:
        return (nb + 2 * spatial_index, nb + 2 * spatial_index + 1)
    return (nb + spatial_index,)


def _window_pads(size, window, stride, padding):
    """``(lo, hi, out)``: padding and output length along one axis (XLA's SAME rule)."""
    if padding == "VALID":
        out = (size - window) // stride + 1
        if out < 1:
            raise ValueError(
                f"a window of {window} with VALID padding does not fit an axis of size {size}"
            )
        return 0, 0, out
    out = -(-size // stride)
    total = max((out - 1) * stride + window - size, 0)
    return total // 2, total - total // 2, out


def _pad(K, dim, lo, hi, circular):
    if lo == 0 and hi == 0:
        return K
    size = K.shape[dim]
    if circular:
        if lo > size or hi > size:
            raise ValueError(
                f"CIRCULAR padding of ({lo}, {hi}) is larger than the axis ({size})"
            )
        parts = [K.narrow(dim, size - lo, lo), K, K.narrow(dim, 0, hi)]
    else:
        zeros = list(K.shape)
        zeros_lo, zeros_hi = list(zeros), list(zeros)
        zeros_lo[dim], zeros_hi[dim] = lo, hi
        parts = [K.new_zeros(zeros_lo), K, K.new_zeros(zeros_hi)]
    return torch.cat(parts, dim)


def _window_sum(K, dims, window, stride, padding):
    """Sum over offsets ``d < window`` of ``K[..., s i + d, ..., s j + d, ...]`` along ``dims``.

    With two ``dims`` (a pair of position axes) the same offset moves both: the shared filter
    of a convolution. With one it is a one-sided window (pooling). Returns a new tensor.
    """
    size = K.shape[dims[0]]
    lo, hi, out = _window_pads(size, window, stride, padding)
    if stride == 1 and padding != "CIRCULAR":
        # zero padding without padded copies: offset e = d - lo adds K[i + e] to out[i] where
        # 0 <= i + e < size (a slice on each of the dims)
        total = None
        for e in sorted(range(-lo, window - lo), key=abs):
            a, b = max(0, -e), min(out, size - e)
            if b <= a:
                continue
            dst = [slice(None)] * K.ndim
            src = [slice(None)] * K.ndim
            for dim in dims:
                dst[dim], src[dim] = slice(a, b), slice(a + e, b + e)
            if total is None:  # e = 0 comes first and covers the whole output
                total = K[tuple(src)].clone() if (a, b) == (0, out) else None
                if total is None:
                    shape = list(K.shape)
                    for dim in dims:
                        shape[dim] = out
                    total = K.new_zeros(shape)
                    total[tuple(dst)] = K[tuple(src)]
                continue
            total[tuple(dst)] += K[tuple(src)]
        return total
    for dim in dims:
        K = _pad(K, dim, lo, hi, padding == "CIRCULAR")
    total = None
    for d in range(window):
        index = [slice(None)] * K.ndim
        for dim in dims:
            index[dim] = slice(d, d + stride * (out - 1) + 1, stride)
        term = K[tuple(index)]
        total = term.clone() if total is None else total.add_(term)
    return total


def _conv_map(K, ctx, filter_shape, strides, padding):
    """The sum over the filter's offsets (divide by ``prod(filter_shape)`` for the mean)."""
    for i, (f, s) in enumerate(zip(filter_shape, strides, strict=True)):
        K = _window_sum(K, _axes(ctx, i), f, s, padding)
    return K


def _input_state(x1, x2, ctx):
    """Covariance of the inputs: ``sum_c x1[p, c] x2[p', c] / C`` (the channel mean)."""
    n_spatial = x1.ndim - 2
    channels = x1.shape[-1]
    letters = iter(string.ascii_letters)
    a, b, c = next(letters), next(letters), next(letters)
    p = [next(letters) for _ in range(n_spatial)]
    q = [next(letters) for _ in range(n_spatial)] if ctx.full else p
    left = a + "".join(p) + c
    if ctx.paired:
        right = a + "".join(q) + c
        out = a
        x2 = x1
    else:
        right = b + "".join(q) + c
        out = a + b
    out += "".join(u + v for u, v in zip(p, q, strict=True)) if ctx.full else "".join(p)
    K = torch.einsum(f"{left},{right}->{out}", x1, x2) / channels
    return _State(K, None, x1.shape[1:-1], channels)


def _check_std(name, value):
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not value >= 0:
        raise ValueError(f"{name} must be a non-negative float, got {value!r}")
    if not math.isfinite(value):
        raise ValueError(f"{name} must be finite, got {value!r}")
    return float(value)


def _check_tuple(name, value, allow_none=False):
    if value is None and allow_none:
        return None
    if isinstance(value, numbers.Integral) and not isinstance(value, bool):
        value = (value,)
    try:
        out = tuple(int(v) for v in value)
    except (TypeError, ValueError):
        raise TypeError(f"{name} must be a tuple of positive ints, got {value!r}") from None
    if not out or any(v < 1 for v in out) or any(
        isinstance(v, bool) or not float(v).is_integer() for v in value
    ):
        raise ValueError(f"{name} must be a tuple of positive ints, got {value!r}")
    return out


def _fmt(value):
    return f"{value:g}" if isinstance(value, float) else repr(value)


# -- layers ----------------------------------------------------------------------------------
class Layer:
    """Base class of the layers; any layer (or composition) is an architecture.

    Subclasses implement ``_apply(state, ctx) -> state``. An architecture is a plain object:
    it can be cloned, pickled and compared, and used as an estimator parameter.
    """

    _pooling = False

    def _apply(self, st, ctx):  # pragma: no cover - abstract
        raise NotImplementedError

    def _children(self):
        return ()

    def _has_pooling(self):
        return self._pooling or any(c._has_pooling() for c in self._children())

    def _count_variance_layers(self):
        """Layers that store per-input variances (activations and LayerNorm)."""
        own = isinstance(self, (Activation, LayerNorm))
        return own + sum(c._count_variance_layers() for c in self._children())

    def _params(self):
        return {}

    def __eq__(self, other):
        return type(self) is type(other) and self._params() == other._params()

    def __hash__(self):
        return hash((type(self).__name__, repr(self)))

    def __repr__(self):
        args = ", ".join(f"{k}={_fmt(v)}" for k, v in self._params().items())
        return f"{type(self).__name__}({args})"

    def kernel(self, x1, x2=None, get="nngp", tile_bytes=DEFAULT_TILE_BYTES):
        """NNGP or NTK of the infinitely wide network between the inputs ``x1`` and ``x2``.

        Parameters
        ----------
        x1 : array-like or tensor of shape (n, H, W, C) (NHWC images), (n, L, C), or (n, d)
        x2 : array-like or tensor of the same trailing shape, default=None
            ``None`` means ``x1`` (the symmetric train kernel).
        get : {"nngp", "ntk"} or tuple of them, default="nngp"
            Which kernel to return; a tuple returns a tuple in that order.
        tile_bytes : int, default=64 MiB
            Bytes the intermediates of one block of pairs may take.

        Returns
        -------
        K : ndarray of shape (n, m), float64 for numpy input (the tensor's dtype otherwise)
        """
        names = (get,) if isinstance(get, str) else tuple(get)
        if not names or any(g not in ("nngp", "ntk") for g in names):
            raise ValueError(f"get must be 'nngp', 'ntk' or a tuple of them, got {get!r}")
        need_ntk = "ntk" in names
        nngp, ntk = layer_kernels(self, x1, x2, need_ntk=need_ntk,
                                  need_nngp="nngp" in names, tile_bytes=tile_bytes)
        out = {"nngp": nngp, "ntk": ntk}
        values = tuple(out[g].cpu().numpy() for g in names)
        return values[0] if isinstance(get, str) else values


class _Serial(Layer):
    def __init__(self, layers):
        self.layers = tuple(layers)

    def _children(self):
        return self.layers

    def _params(self):
        return {"layers": self.layers}

    def _apply(self, st, ctx):
        for layer in self.layers:
            if isinstance(st, list) and not isinstance(layer, (_Serial, _Parallel, FanInSum,
                                                                FanOut)):
                raise ValueError(
                    f"{layer!r} received several branches; merge them with FanInSum() first"
                )
            st = layer._apply(st, ctx)
        return st

    def __repr__(self):
        return "serial(" + ", ".join(repr(layer) for layer in self.layers) + ")"


class _Parallel(Layer):
    def __init__(self, layers):
        self.layers = tuple(layers)

    def _children(self):
        return self.layers

    def _params(self):
        return {"layers": self.layers}

    def _apply(self, st, ctx):
        if not isinstance(st, list) or len(st) != len(self.layers):
            got = len(st) if isinstance(st, list) else 1
            raise ValueError(
                f"parallel of {len(self.layers)} layers received {got} input(s); put "
                f"FanOut({len(self.layers)}) before it"
            )
        return [layer._apply(s, ctx) for layer, s in zip(self.layers, st, strict=True)]

    def __repr__(self):
        return "parallel(" + ", ".join(repr(layer) for layer in self.layers) + ")"


def _check_layers(layers, what):
    if not layers:
        raise ValueError(f"{what} needs at least one layer")
    for layer in layers:
        if not isinstance(layer, Layer):
            raise TypeError(
                f"{what} takes layers such as Dense(), Conv((3, 3)) or Activation('relu'), "
                f"got {type(layer).__name__}"
            )
    return layers


def serial(*layers):
    """Compose layers in sequence: the output of each is the input of the next.

    Examples
    --------
    >>> import numpy as np
    >>> from overparam_sklearn.kernels.layers import serial, Conv, Activation, Flatten, Dense
    >>> arch = serial(Conv((3, 3), padding="SAME", w_std=1.4, b_std=0.1), Activation("relu"),
    ...               Flatten(), Dense(w_std=1.4, b_std=0.1))
    >>> X = np.random.default_rng(0).normal(size=(4, 6, 6, 2))  # NHWC
    >>> arch.kernel(X, get="ntk").shape
    (4, 4)
    """
    return _Serial(_check_layers(layers, "serial"))


def parallel(*layers):
    """Apply the ``i``-th layer to the ``i``-th of several inputs (after :class:`FanOut`).

    Examples
    --------
    A residual block ``x + f(x)``:

    >>> from overparam_sklearn.kernels.layers import (serial, parallel, FanOut, FanInSum,
    ...     Identity, Dense, Activation)
    >>> block = serial(FanOut(2), parallel(serial(Activation("relu"), Dense(1.4, 0.1)),
    ...                                    Identity()), FanInSum())
    """
    return _Parallel(_check_layers(layers, "parallel"))


class FanOut(Layer):
    """Copy the input into ``n`` branches (for :func:`parallel`).

    Parameters
    ----------
    n : int
        Number of branches.
    """

    def __init__(self, n):
        if isinstance(n, bool) or not isinstance(n, numbers.Integral) or n < 1:
            raise ValueError(f"FanOut(n) needs a positive int n, got {n!r}")
        self.n = int(n)

    def _params(self):
        return {"n": self.n}

    def _apply(self, st, ctx):
        if isinstance(st, list):
            raise ValueError("FanOut received several branches; merge them with FanInSum first")
        # every branch owns its tensors, so that layers may update them in place
        copies = [st.replace(nngp=st.nngp.clone(),
                             ntk=None if st.ntk is None else st.ntk.clone())
                  for _ in range(self.n - 1)]
        return [st] + copies


class FanInSum(Layer):
    """Sum the outputs of the branches.

    The branches have independent parameters, so their kernels add (neural-tangents'
    ``FanInSum``). Every branch must have the same spatial shape.
    """

    def _apply(self, st, ctx):
        if not isinstance(st, list):
            return st
        shapes = {s.spatial for s in st}
        if len(shapes) > 1:
            raise ValueError(f"FanInSum needs branches of one spatial shape, got {sorted(shapes)}")
        nngp = st[0].nngp
        for s in st[1:]:
            nngp = nngp.add_(s.nngp)
        ntks = [s.ntk for s in st if s.ntk is not None]
        ntk = None
        for t in ntks:
            ntk = t if ntk is None else ntk.add_(t)
        return _State(nngp, ntk, st[0].spatial, st[0].width)


class Identity(Layer):
    """The identity layer (the skip branch of a residual block)."""

    def _apply(self, st, ctx):
        return st


class _Affine(Layer):
    """Dense and Conv: weights ``N(0, w_std^2 / fan_in)``, biases ``N(0, b_std^2)``."""

    def __init__(self, w_std, b_std, parameterization, width):
        self.w_std = _check_std("w_std", w_std)
        self.b_std = _check_std("b_std", b_std)
        if parameterization not in _PARAMETERIZATIONS:
            raise ValueError(
                f"parameterization must be 'ntk' or 'standard', got {parameterization!r}"
            )
        self.parameterization = parameterization
        if isinstance(width, bool) or not isinstance(width, numbers.Real) or not width > 0:
            raise ValueError(f"width must be a positive number, got {width!r}")
        self.width = width

    def _linear(self, K, ctx, spatial):
        """The bias-free linear map ``A`` up to the factor ``_filter_size``: the sum over the
        filter's offsets (the identity for Dense)."""
        return K

    _filter_size = 1

    def _out_spatial(self, spatial):
        return spatial

    def _fan_in(self, st):
        return st.width

    def _apply(self, st, ctx):
        w2, b2, f = self.w_std**2, self.b_std**2, self._filter_size
        spatial = self._out_spatial(st.spatial)
        # Dense is the identity map: copy, as the results below are updated in place
        lin_nngp = self._linear(st.nngp, ctx, st.spatial)
        lin_ntk = None
        if ctx.need_ntk and st.ntk is not None:
            lin_ntk = self._linear(st.ntk, ctx, st.spatial)
        if f == 1:
            lin_nngp = lin_nngp.clone()
            lin_ntk = None if lin_ntk is None else lin_ntk.clone()
        ntk = None
        if ctx.need_ntk and self.parameterization == "standard":
            # fan_in * mean(K_in) + 1 (weights' and bias' gradients) + w^2 A(Theta)
            ntk = torch.mul(lin_nngp, self._fan_in(st) / f).add_(1.0)
            if lin_ntk is not None:
                ntk.add_(lin_ntk, alpha=w2 / f)
        nngp = lin_nngp.mul_(w2 / f).add_(b2)
        if ctx.need_ntk and self.parameterization == "ntk":
            ntk = nngp.clone() if lin_ntk is None else lin_ntk.mul_(w2 / f).add_(nngp)
        return _State(nngp, ntk, spatial, self.width)

    def _params(self):
        out = {"w_std": self.w_std, "b_std": self.b_std}
        if self.parameterization != "ntk":
            out.update(parameterization=self.parameterization, width=self.width)
        return out


class Dense(_Affine):
    """Fully connected layer on the channel (last) axis, position by position.

    Parameters
    ----------
    w_std : float, default=1.0
        Weights are ``N(0, w_std^2 / fan_in)`` (``parameterization="ntk"``: ``w_std /
        sqrt(fan_in)`` times a standard normal parameter).
    b_std : float, default=0.0
        Biases are ``N(0, b_std^2)``.
    parameterization : {"ntk", "standard"}, default="ntk"
        As in neural-tangents. In the standard parameterization the NTK depends on the fan-in,
        the ``width`` of the layer before (the channels of the input for the first layer).
    width : int, default=512
        Number of units of this layer in the finite network it describes; only the NTK of a
        following standard-parameterised layer depends on it.
    """

    def __init__(self, w_std=1.0, b_std=0.0, parameterization="ntk", width=512):
        super().__init__(w_std, b_std, parameterization, width)


class Conv(_Affine):
    """Convolution with a shared filter over the spatial axes of NHWC inputs.

    Parameters
    ----------
    filter_shape : tuple of int
        Spatial shape of the filter, e.g. ``(3, 3)``; its length is the number of spatial axes.
    padding : {"SAME", "VALID", "CIRCULAR"}, default="SAME"
        ``"SAME"`` pads with zeros as XLA does (extra padding at the end for even filters);
        ``"CIRCULAR"`` wraps around (periodic images).
    strides : tuple of int, default=None
        ``None`` means 1 along every axis.
    w_std : float, default=1.0
        Weights are ``N(0, w_std^2 / fan_in)`` with ``fan_in = channels * prod(filter_shape)``.
    b_std : float, default=0.0
        Biases are ``N(0, b_std^2)``, one per output channel (shared over positions).
    parameterization : {"ntk", "standard"}, default="ntk"
    width : int, default=512
        Output channels of the finite network (see :class:`Dense`).
    """

    def __init__(self, filter_shape, padding="SAME", strides=None, w_std=1.0, b_std=0.0,
                 parameterization="ntk", width=512):
        self.filter_shape = _check_tuple("filter_shape", filter_shape)
        if padding not in _PADDINGS:
            raise ValueError(f"padding must be one of {_PADDINGS}, got {padding!r}")
        self.padding = padding
        strides = _check_tuple("strides", strides, allow_none=True)
        self.strides = strides or (1,) * len(self.filter_shape)
        if len(self.strides) != len(self.filter_shape):
            raise ValueError(
                f"strides {self.strides} and filter_shape {self.filter_shape} differ in length"
            )
        super().__init__(w_std, b_std, parameterization, width)

    def _check_spatial(self, spatial):
        if len(spatial) != len(self.filter_shape):
            raise ValueError(
                f"Conv with filter_shape {self.filter_shape} needs inputs with "
                f"{len(self.filter_shape)} spatial axes, got spatial shape {spatial} (images "
                "are NHWC; after Flatten or GlobalAvgPool use Dense)"
            )

    def _out_spatial(self, spatial):
        self._check_spatial(spatial)
        return tuple(_window_pads(size, f, s, self.padding)[2] for size, f, s in
                     zip(spatial, self.filter_shape, self.strides, strict=True))

    def _linear(self, K, ctx, spatial):
        self._check_spatial(spatial)
        return _conv_map(K, ctx, self.filter_shape, self.strides, self.padding)

    @property
    def _filter_size(self):
        return math.prod(self.filter_shape)

    def _fan_in(self, st):
        return st.width * math.prod(self.filter_shape)

    def _params(self):
        out = {"filter_shape": self.filter_shape, "padding": self.padding}
        if any(s != 1 for s in self.strides):
            out["strides"] = self.strides
        return {**out, **super()._params()}


class AvgPool(Layer):
    """Average pooling over windows of the spatial axes.

    Parameters
    ----------
    window_shape : tuple of int
    strides : tuple of int, default=None
        ``None`` means 1 along every axis (neural-tangents' default).
    padding : {"VALID", "SAME", "CIRCULAR"}, default="VALID"
        ``"SAME"`` pads with zeros and divides by the full window size (neural-tangents'
        ``normalize_edges=False``).
    """

    _pooling = True

    def __init__(self, window_shape, strides=None, padding="VALID"):
        self.window_shape = _check_tuple("window_shape", window_shape)
        strides = _check_tuple("strides", strides, allow_none=True)
        self.strides = strides or (1,) * len(self.window_shape)
        if len(self.strides) != len(self.window_shape):
            raise ValueError(
                f"strides {self.strides} and window_shape {self.window_shape} differ in length"
            )
        if padding not in _PADDINGS:
            raise ValueError(f"padding must be one of {_PADDINGS}, got {padding!r}")
        self.padding = padding

    def _params(self):
        return {"window_shape": self.window_shape, "strides": self.strides,
                "padding": self.padding}

    def _apply(self, st, ctx):
        if len(st.spatial) != len(self.window_shape):
            raise ValueError(
                f"AvgPool with window_shape {self.window_shape} needs inputs with "
                f"{len(self.window_shape)} spatial axes, got spatial shape {st.spatial}"
            )
        spatial = []
        nngp, ntk = st.nngp, st.ntk
        for i, (w, s) in enumerate(zip(self.window_shape, self.strides, strict=True)):
            spatial.append(_window_pads(st.spatial[i], w, s, self.padding)[2])
            for dim in _axes(ctx, i):  # both positions move independently
                nngp = _window_sum(nngp, (dim,), w, s, self.padding).div_(w)
                if ntk is not None:
                    ntk = _window_sum(ntk, (dim,), w, s, self.padding).div_(w)
        return st.replace(nngp=nngp, ntk=ntk, spatial=tuple(spatial))


class GlobalAvgPool(Layer):
    """Mean over every spatial position: ``(n, H, W, C) -> (n, C)``."""

    _pooling = True

    def _apply(self, st, ctx):
        if not st.spatial:
            raise ValueError("GlobalAvgPool needs spatial inputs (NHWC), got vectors")
        dims = tuple(range(ctx.n_batch, st.nngp.ndim))
        ntk = None if st.ntk is None else st.ntk.mean(dim=dims)
        return _State(st.nngp.mean(dim=dims), ntk, (), st.width)


class Flatten(Layer):
    """Flatten positions and channels into one feature axis: ``(n, H, W, C) -> (n, HWC)``.

    The covariance of the flattened features is the mean over positions of ``K[p, p]``.
    """

    def _apply(self, st, ctx):
        if not st.spatial:
            return st
        n_pos = math.prod(st.spatial)

        def flat(K):
            if K is None:
                return None
            if ctx.full:
                for _ in st.spatial:
                    K = torch.diagonal(K, dim1=ctx.n_batch, dim2=ctx.n_batch + 1)
            return K.reshape(K.shape[:ctx.n_batch] + (-1,)).mean(dim=-1)

        return _State(flat(st.nngp), flat(st.ntk), (), st.width * n_pos)


class LayerNorm(Layer):
    """Layer normalisation over ``axis`` (which must include the channel axis, -1).

    In the infinite-width limit the channel mean vanishes and the normalised kernel is
    ``K[p, p'] / sqrt(v(x)[p] v(x')[p'])`` with ``v`` the variance averaged over the spatial
    axes in ``axis`` (plus ``eps``), as in neural-tangents.

    Parameters
    ----------
    axis : int or tuple of int, default=-1
        Axes of the NHWC input (0 is the batch) to normalise over, e.g. ``(1, 2, 3)``.
    eps : float, default=1e-12
        Added to the variances.
    """

    def __init__(self, axis=-1, eps=1e-12):
        if isinstance(axis, numbers.Integral) and not isinstance(axis, bool):
            axis = (int(axis),)
        try:
            self.axis = tuple(int(a) for a in axis)
        except (TypeError, ValueError):
            raise TypeError(f"axis must be an int or a tuple of ints, got {axis!r}") from None
        self.eps = _check_std("eps", eps)

    def _params(self):
        return {"axis": self.axis, "eps": self.eps}

    def _apply(self, st, ctx):
        ndim = len(st.spatial) + 2
        axes = set()
        for a in self.axis:
            if not -ndim <= a < ndim:
                raise ValueError(f"LayerNorm axis {a} is out of range for {ndim}-D inputs")
            axes.add(a % ndim)
        if ndim - 1 not in axes:
            raise ValueError("LayerNorm must normalise over the channel axis (-1)")
        if 0 in axes:
            raise ValueError("LayerNorm over the batch axis (0) is not supported")
        v1, v2 = ctx.variances(st)
        # average the variances over the normalised spatial axes, keeping the others
        mean_dims1, mean_dims2 = [], []
        for a in sorted(axes - {ndim - 1}):
            dims = _axes(ctx, a - 1)
            mean_dims1.append(dims[0])
            mean_dims2.append(dims[-1])
        v1 = (v1 + self.eps)
        v2 = (v2 + self.eps)
        if mean_dims1:
            v1 = v1.mean(dim=mean_dims1, keepdim=True)
            v2 = v2.mean(dim=mean_dims2, keepdim=True)
        scale = torch.rsqrt(v1 * v2)
        ntk = None if st.ntk is None else st.ntk * scale
        return st.replace(nngp=st.nngp * scale, ntk=ntk)


class Activation(Layer):
    """A pointwise nonlinearity, with its closed-form dual (the package's dual activations).

    Parameters
    ----------
    spec : str
        The same spec strings as ``activation=`` elsewhere: ``"relu"``, ``"leaky_relu(a)"``,
        ``"abrelu(a,b)"``, ``"abs"``, ``"erf"``, ``"gelu"``, ``"sin"``, ``"rbf(gamma)"``,
        ``"identity"``, ``"sigmoid_like"``.
    """

    def __init__(self, spec="relu"):
        self.spec = parse_activation(spec).spec  # validates; stores the canonical string

    def _params(self):
        return {"spec": self.spec}

    def _apply(self, st, ctx):
        act = parse_activation(self.spec)
        v1, v2 = ctx.variances(st)
        need_dot = ctx.need_ntk and st.ntk is not None
        if act.fast_maps is not None and not ctx.paired:
            # in place (the state's tensors belong to this branch: FanOut copies them); the
            # pairs (x, x) of a symmetric kernel get their exact value from the first pass
            nngp, dot = act.fast_maps(st.nngp, v1, v2, need_dot, False)
            ntk = None if dot is None else st.ntk.mul_(dot)
        else:
            nngp, dot = act.maps(st.nngp, v1, v2, need_dot)
            ntk = None if dot is None else dot * st.ntk
        return st.replace(nngp=nngp, ntk=ntk)


# -- evaluation --------------------------------------------------------------------------------
def _as_input_tensor(X, dtype=None, device=None, name="x1"):
    return check_real_matrix(X, name, dtype, device, ndim=None)


def _check_architecture(arch):
    if not isinstance(arch, Layer):
        raise TypeError(
            "architecture must be a layer or a composition of layers from "
            f"overparam_sklearn.kernels.layers (e.g. serial(Dense(), ...)), got {arch!r}"
        )


def _pair_elements(arch, x_shape):
    """Numbers one pair of inputs needs at the widest point (the input's positions)."""
    n_pos = math.prod(x_shape[1:-1]) if len(x_shape) > 2 else 1
    return n_pos * n_pos if arch._has_pooling() else n_pos


def _first_pass(arch, X, full, need_ntk, tile_rows):
    """Variances recorded by every activation / LayerNorm, and the kernels' diagonals."""
    tapes, nngp_diag, ntk_diag = None, [], []
    for sl in tile_slices(X.shape[0], tile_rows):
        ctx = _Context(full, True, need_ntk)
        st = arch._apply(_input_state(X[sl], None, ctx), ctx)
        _check_output(st)
        if tapes is None:
            tapes = [[] for _ in ctx.recorded]
        for tape, v in zip(tapes, ctx.recorded, strict=True):
            tape.append(v)
        nngp_diag.append(st.nngp)
        ntk_diag.append(_zero_if_none(st))
    tapes = [torch.cat(t) for t in (tapes or [])]
    if not nngp_diag:  # no rows
        empty = X.new_zeros((0,))
        return tapes, empty, (empty if need_ntk else None)
    return tapes, torch.cat(nngp_diag), (torch.cat(ntk_diag) if need_ntk else None)


def _zero_if_none(st):
    return torch.zeros_like(st.nngp) if st.ntk is None else st.ntk


def _check_output(st):
    if isinstance(st, list):
        raise ValueError("the architecture ends with several branches: merge them with "
                         "FanInSum()")
    if st.spatial:
        raise ValueError(
            f"the architecture's output still has spatial shape {st.spatial}: end it with "
            "Flatten() or GlobalAvgPool() (and a readout Dense) to get one kernel value per "
            "pair of inputs"
        )


def _block_shape(n, m, pair_elems, itemsize, tile_bytes, symmetric):
    """Rows and columns of one block of pairs."""
    budget = max(1, min(tile_bytes, _CACHE_BLOCK_BYTES * _BUFFERS_PER_BLOCK)
                 // (_BUFFERS_PER_BLOCK * pair_elems * itemsize))
    if symmetric:
        side = max(1, int(math.isqrt(budget)))
        return side, side
    cols = max(1, min(m, budget))
    rows = max(1, min(n, budget // cols))
    return rows, cols


def layer_memory_bytes(arch, x_shape, n, m, dtype=torch.float64, need_ntk=True,
                       tile_bytes=DEFAULT_TILE_BYTES):
    """Estimated peak bytes of :func:`layer_kernels` for ``n x m`` inputs of ``x_shape``."""
    pair_elems = _pair_elements(arch, x_shape)
    n_pos = math.prod(x_shape[1:-1]) if len(x_shape) > 2 else 1
    n_out = 2 if need_ntk else 1
    return tiled_kernel_bytes(n, m, pair_elems, dtype, n_outputs=n_out,
                              n_buffers=_BUFFERS_PER_BLOCK, tile_bytes=tile_bytes,
                              per_input_elems=n_pos * arch._count_variance_layers())


def layer_kernels(arch, X1, X2=None, need_ntk=True, need_nngp=True,
                  tile_bytes=DEFAULT_TILE_BYTES):
    """NNGP and (optionally) NTK matrices of an architecture between two sets of inputs.

    Parameters
    ----------
    arch : Layer
        A layer or composition (:func:`serial`, :func:`parallel`, ...).
    X1 : array-like or tensor of shape (n, H, W, C), (n, L, C) or (n, d)
    X2 : array-like or tensor of the same trailing shape, default=None
        ``None`` means ``X1`` (the symmetric train kernel: only blocks on and above the
        diagonal are computed).
    need_ntk, need_nngp : bool, default=True
        Which kernels to return (``None`` in place of the other).
    tile_bytes : int
        Bytes the intermediates of one block of pairs may take.

    Returns
    -------
    nngp : tensor of shape (n, m) or None
    ntk : tensor of shape (n, m) or None

    Raises
    ------
    ValueError
        For inputs the architecture cannot take, and before an allocation that cannot fit in
        memory (with the estimate and what to change).
    """
    _check_architecture(arch)
    X1 = _as_input_tensor(X1)
    symmetric = X2 is None
    X2 = X1 if symmetric else _as_input_tensor(X2, X1.dtype, X1.device, "x2")
    if X1.shape[1:] != X2.shape[1:]:
        raise ValueError(
            f"x1 has trailing shape {tuple(X1.shape[1:])} but x2 has "
            f"{tuple(X2.shape[1:])}; they must match."
        )
    full = arch._has_pooling() and X1.ndim > 2
    n, m = X1.shape[0], X2.shape[0]
    pair_elems = _pair_elements(arch, X1.shape)
    itemsize = X1.element_size()
    need = layer_memory_bytes(arch, tuple(X1.shape), n, m, X1.dtype, need_ntk, tile_bytes)
    what = (f"the {n} x {m} kernel of this architecture ({pair_elems} numbers per pair of "
            f"inputs{', every pair of positions: pooling' if full else ''})")
    check_memory(need, X1.device, what,
                 "Use fewer or smaller images, a Flatten readout instead of pooling (H W instead "
                 "of (H W)^2 numbers per pair), dtype float32, or a smaller tile_bytes.")
    # first pass: per-input variances for every activation, in row tiles
    first_rows = max(1, tile_bytes // (_BUFFERS_PER_BLOCK * pair_elems * itemsize))
    tape1, nngp_d1, ntk_d1 = _first_pass(arch, X1, full, need_ntk, first_rows)
    tape2 = tape1 if symmetric else _first_pass(arch, X2, full, need_ntk, first_rows)[0]
    rows, cols = _block_shape(n, m, pair_elems, itemsize, tile_bytes, symmetric)
    nngp = X1.new_empty((n, m)) if (need_nngp or not need_ntk) else None
    ntk = X1.new_empty((n, m)) if need_ntk else None
    for rs in tile_slices(n, rows):
        for cs in tile_slices(m, cols):
            if symmetric and cs.start < rs.start:
                continue  # mirrored from the block above the diagonal
            ctx = _Context(full, False, need_ntk, tape1, tape2, rs, cs)
            st = arch._apply(_input_state(X1[rs], X2[cs], ctx), ctx)
            _check_output(st)
            for out, block in ((nngp, st.nngp), (ntk, _zero_if_none(st) if need_ntk else None)):
                if out is None:
                    continue
                out[rs, cs] = block
                if symmetric and cs.start != rs.start:
                    out[cs, rs] = block.T
    if symmetric:
        # diagonal blocks: mirror the upper triangle so the result is exactly symmetric, and
        # take the diagonal from the first pass, where each pair (x, x) is exact
        for out, diag in ((nngp, nngp_d1), (ntk, ntk_d1)):
            if out is None:
                continue
            for rs in tile_slices(n, rows):
                square = out[rs, rs]
                lower = torch.tril_indices(*square.shape, offset=-1, device=square.device)
                square[lower[0], lower[1]] = square[lower[1], lower[0]]
            out.diagonal().copy_(diag)
    return (nngp if need_nngp or not need_ntk else None), ntk


def layer_diagonals(arch, X, need_ntk=True, tile_bytes=DEFAULT_TILE_BYTES):
    """``k(x, x)`` for each input: the NNGP and (optionally) NTK diagonals, ``O(n)`` memory.

    Returns
    -------
    nngp_diag : tensor of shape (n,)
    ntk_diag : tensor of shape (n,) or None
    """
    _check_architecture(arch)
    X = _as_input_tensor(X, name="X")
    full = arch._has_pooling() and X.ndim > 2
    pair_elems = _pair_elements(arch, X.shape)
    rows = max(1, tile_bytes // (_BUFFERS_PER_BLOCK * pair_elems * X.element_size()))
    check_memory(estimate_bytes((min(rows, X.shape[0]) * _BUFFERS_PER_BLOCK, pair_elems),
                                X.dtype), X.device, "the kernel diagonal of this architecture")
    _, nngp, ntk = _first_pass(arch, X, full, need_ntk, rows)
    return nngp, ntk
