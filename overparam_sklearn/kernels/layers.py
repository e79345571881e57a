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

import torch

from ._dual import parse_activation
from ._fully_connected import dense_update
from ._layer_eval import (  # noqa: F401  (Layer, layer_kernels & co. are public here)
    Layer,
    _axes,
    _check_architecture,
    _check_std,
    _check_tuple,
    _conv_map,
    _fmt,
    _State,
    _window_pads,
    _window_sum,
    layer_diagonals,
    layer_kernels,
    layer_memory_bytes,
)

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


# -- layers ----------------------------------------------------------------------------------
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

    Parameters
    ----------
    *layers : Layer
        The layers, first to last.

    Returns
    -------
    arch : Layer
        The composed architecture (``arch.kernel(x1, x2=None, get="nngp"|"ntk")``).

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

    Parameters
    ----------
    *layers : Layer
        One layer per branch.

    Returns
    -------
    arch : Layer
        The layer that maps the branches in parallel (combine them with :class:`FanInSum`).

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
        nngp, ntk = dense_update(lin_nngp, lin_ntk, w2 / f, b2, self.parameterization,
                                 self._fan_in(st) / f, ctx.need_ntk, inplace=True)
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

    _stores_variances = True

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

    _stores_variances = True

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


