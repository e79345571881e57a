"""Evaluation of the layer algebra: the state each layer maps, the window sums of convolutions
and pooling, and the blocked evaluation of a kernel matrix (see :mod:`.layers` for the maths).
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

# Tensors of one block's size alive at once inside a layer (nngp, ntk, padded copies, the
# activation's temporaries); the memory estimate and the block size use it.
_BUFFERS_PER_BLOCK = 10
# Blocks are kept small enough to stay in cache while a layer makes its passes over them
# (measured on the CNTK of 160 load_digits images: 1 MiB blocks, 5 x 5 pairs of 8 x 8 images,
# ran 1.3-1.6x faster than 2-8 MiB ones on a busy 2-core machine).
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


# -- the base class of every layer -----------------------------------------------------------
class Layer:
    """Base class of the layers; any layer (or composition) is an architecture.

    Subclasses implement ``_apply(state, ctx) -> state``. An architecture is a plain object:
    it can be cloned, pickled and compared, and used as an estimator parameter.
    """

    _pooling = False
    _stores_variances = False

    def _apply(self, st, ctx):  # pragma: no cover - abstract
        raise NotImplementedError

    def _children(self):
        return ()

    def _has_pooling(self):
        return self._pooling or any(c._has_pooling() for c in self._children())

    def _count_variance_layers(self):
        """Layers that store per-input variances (activations and LayerNorm)."""
        own = int(self._stores_variances)
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

    Parameters
    ----------
    arch : Layer
        A composed architecture (:func:`serial`, :class:`Dense`, :class:`Conv`, ...).
    X : array-like or tensor of shape (n, ...)
        Inputs, ``(n, d)`` or NHWC images.
    need_ntk : bool, default=True
        Whether to compute the NTK diagonal too.
    tile_bytes : int, default=DEFAULT_TILE_BYTES
        Memory budget of one block of rows.

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
