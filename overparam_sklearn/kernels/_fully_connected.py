"""NNGP and NTK of deep fully connected networks, evaluated in tiles.

The network is ``Dense -> [activation -> Dense] * n_hidden``: ``n_hidden`` hidden layers and a
readout. Dense layers follow neural-tangents' conventions (Novak et al. 2020): weights
``N(0, w_std^2 / fan_in)`` and biases ``N(0, b_std^2)``. The input layer's NNGP is
``w_std^2 x.x' / d + b_std^2`` (:func:`dense_input_gram`; with per-feature ``input_scales``
``s``, ``w_std^2 sum_i s_i^2 x_i x'_i / d + b_std^2``). Per layer (Jacot et al. 2018, Thm 1;
Lee et al. 2019, Eq. 7-10; Arora et al. 2019)::

    K_{l+1}     = w_std^2 E[phi(u) phi(v)] + b_std^2
    Theta_{l+1} = K_{l+1} + w_std^2 E[phi'(u) phi'(v)] Theta_l            ("ntk")
    Theta_{l+1} = width E[phi(u) phi(v)] + 1 + w_std^2 E[phi'phi'] Theta_l  ("standard")

where ``(u, v) ~ N(0, [[K_l(x, x), K_l(x, x')], [K_l(x, x'), K_l(x', x')]])``. In the standard
parameterization the NTK depends on the layer ``width`` (the first layer's fan-in is ``d``).

The recursion after the first layer is elementwise, so a block of rows of the kernel needs only
the per-layer variances of its own rows and of all columns: an ``n x m`` kernel is computed in
row tiles with ``O(tile_rows * m)`` memory, never ``n x m x width``.
"""

import numpy as np
import torch

from .._backend import (
    DEFAULT_TILE_BYTES,
    check_memory,
    estimate_bytes,
    rows_per_tile,
    tile_slices,
)
from .._validation import check_real_matrix
from ._dual import parse_activation

__all__ = ["nngp_kernel", "ntk_kernel", "fc_kernels", "fc_diagonals", "check_kernel_params",
           "check_input_scales", "dense_input_gram"]

_PARAMETERIZATIONS = ("ntk", "standard")
# Number of (tile_rows x m) buffers alive at once inside one layer of the recursion.
_BUFFERS_PER_TILE = 8
# A symmetric kernel is split into at least this many row tiles (of at least _MIN_TILE_ROWS
# rows): only the blocks on and above the diagonal are computed, and the smaller blocks stay
# in cache (measured 2.5x faster at n = 1000, where one tile used to cover the whole matrix).
_MIN_SYMMETRIC_TILES = 4
_MIN_TILE_ROWS = 128


def check_kernel_params(n_hidden, activation, w_std, b_std, parameterization, width):
    """Validate the kernel hyperparameters; returns the parsed activation."""
    if isinstance(n_hidden, bool) or not isinstance(n_hidden, int) or n_hidden < 0:
        raise ValueError(f"n_hidden must be a non-negative int, got {n_hidden!r}")
    if parameterization not in _PARAMETERIZATIONS:
        raise ValueError(
            f"parameterization must be 'ntk' or 'standard', got {parameterization!r}"
        )
    for name, value in (("w_std", w_std), ("b_std", b_std)):
        v = float(value.detach()) if isinstance(value, torch.Tensor) else value
        if not isinstance(v, (int, float)) or isinstance(v, bool) or not v >= 0:
            raise ValueError(f"{name} must be a non-negative float, got {value!r}")
    if parameterization == "standard" and not (isinstance(width, (int, float)) and width > 0):
        raise ValueError(f"width must be a positive number, got {width!r}")
    return parse_activation(activation)


def _check_diagonals(variances, theta, name):
    """A clear error when the inputs are so large that the kernel overflows.

    Every entry of the NNGP (and NTK) is bounded by the diagonal entries of its row and column
    (Cauchy-Schwarz, layer by layer), but the dual activations form products ``k11 * k22`` of two
    variances: the diagonals must stay below the square root of the largest float.
    """
    diagonals = list(variances) + ([theta] if theta is not None else [])
    dtype = diagonals[0].dtype
    limit = torch.finfo(dtype).max ** 0.5
    if not all(bool((v.abs() < limit).all()) for v in diagonals):  # (NaN compares False)
        raise ValueError(
            f"{name} is so large that its kernel overflows {str(dtype).replace('torch.', '')}: "
            f"the diagonal (x.x / d, or a layer's variance) exceeds {limit:.3g}, and the "
            f"kernel multiplies two of them. Rescale {name} (e.g. with StandardScaler) or "
            "reduce w_std."
        )


def check_input_scales(input_scales, n_features, like):
    """``input_scales`` as a 1-D tensor of length ``n_features`` (dtype/device of ``like``).

    ``None`` stays ``None`` (every feature weighs the same). A tensor keeps its autograd /
    forward-mode graph, so the kernels can be differentiated with respect to the scales.
    """
    if input_scales is None:
        return None
    if isinstance(input_scales, torch.Tensor):
        scales = input_scales.to(dtype=like.dtype, device=like.device)
    else:
        try:
            values = np.asarray(input_scales, dtype=np.float64)
        except (TypeError, ValueError):
            raise TypeError(
                f"input_scales must be None or a 1-D array of non-negative floats, got "
                f"{input_scales!r}"
            ) from None
        scales = torch.as_tensor(values, dtype=like.dtype, device=like.device)
    if scales.ndim == 0:
        scales = scales.reshape(1).expand(n_features)
    if scales.ndim != 1 or scales.shape[0] != n_features:
        raise ValueError(
            f"input_scales must hold one scale per feature ({n_features}), got shape "
            f"{tuple(scales.shape)}"
        )
    if not bool(torch.isfinite(scales).all()) or bool((scales < 0).any()):
        raise ValueError("input_scales must be finite and non-negative.")
    return scales


def _scale_inputs(X, scales):
    return X if scales is None else X * scales


def dense_input_gram(X1, X2=None, w_std=1.0, b_std=0.0, input_scales=None):
    """NNGP of the input Dense layer: ``w_std^2 sum_i s_i^2 x_i x'_i / d + b_std^2``.

    The covariance of the first layer's pre-activations for weights ``N(0, w_std^2 s_i^2 / d)``
    on input ``i`` and biases ``N(0, b_std^2)``; ``input_scales=None`` means every ``s_i = 1``
    (``w_std^2 x.x' / d + b_std^2``). Equivalently, the inputs are multiplied feature-wise by
    ``input_scales`` before an ordinary Dense layer.

    Parameters
    ----------
    X1 : tensor of shape (n, d)
    X2 : tensor of shape (m, d), default=None
        ``None`` means ``X1``.
    w_std, b_std : float or 0-d tensor
    input_scales : array-like or tensor of shape (d,), default=None

    Returns
    -------
    K : tensor of shape (n, m)
    """
    X1 = check_real_matrix(X1, "X1")
    X2 = X1 if X2 is None else check_real_matrix(X2, "X2", X1.dtype, X1.device)
    scales = check_input_scales(input_scales, X1.shape[1], X1)
    X1, X2 = _scale_inputs(X1, scales), _scale_inputs(X2, scales)
    return w_std**2 * (X1 @ X2.T) / X1.shape[1] + b_std**2


def dense_update(e, theta, w2, b2, parameterization, fan_in, need_ntk=True, inplace=False,
                 dot=None):
    """A Dense layer's NNGP and NTK from the moments of its input (Jacot et al. 2018, Eq. 5-6).

    ``e`` is ``E[phi(u) phi(v)]`` (or, for the first layer, the input Gram ``x.x' / d``) and the
    incoming NTK term is ``dot * theta`` with ``dot = E[phi'(u) phi'(v)]`` (``theta`` alone when
    ``dot`` is None; ``theta=None`` for the first layer, whose input has no NTK). Returns
    ``K = w2 e + b2`` and ``Theta = K + w2 dot theta`` in the NTK parameterization, or
    ``fan_in e + 1 + w2 dot theta`` in the standard one (the weights' and bias' own gradients);
    the NTK is ``None`` when ``need_ntk`` is false. ``inplace=True`` overwrites ``e`` and
    ``theta`` (no autograd; ``w2``, ``b2`` are then floats), one fused pass per result.
    """
    standard = parameterization == "standard"
    if not inplace:
        k = w2 * e + b2
        if not need_ntk:
            return k, None
        base = fan_in * e + 1.0 if standard else k
        if theta is None:
            return k, base
        return k, base + w2 * (theta if dot is None else dot * theta)
    if need_ntk and standard:
        base = torch.mul(e, fan_in).add_(1.0)
    k = e.mul_(w2).add_(b2)
    if not need_ntk:
        return k, None
    if not standard:
        base = k
    if theta is None:
        return k, base.clone() if base is k else base
    if dot is None:
        return k, torch.add(base, theta, alpha=w2, out=theta)
    return k, torch.addcmul(base, dot, theta, value=w2, out=theta)


def _next_layer(e, dot, theta, w2, b2, parameterization, width, inplace=False):
    """One hidden layer (activation then Dense): ``K_{l+1}`` and ``Theta_{l+1}``.

    ``e = E[phi(u) phi(v)]`` and ``dot = E[phi'(u) phi'(v)]`` under ``K_l``; ``theta`` is
    ``Theta_l`` (``None`` when the NTK is not needed). ``inplace=True`` overwrites ``e`` and
    ``theta`` (no autograd); ``w2``, ``b2`` are then floats.
    """
    return dense_update(e, theta, w2, b2, parameterization, width, theta is not None, inplace,
                        dot)


def fc_diagonals(X, n_hidden, activation, w_std, b_std, parameterization="ntk", width=512,
                 need_ntk=True, input_scales=None):
    """Per-layer pre-activation variances and the final diagonals for the rows of ``X``.

    Parameters
    ----------
    X : tensor of shape (n, d)
    n_hidden : int
        Number of hidden layers.
    activation : str or DualActivation
        Activation spec, as in :func:`nngp_kernel`.
    w_std, b_std : float
        Standard deviations of weights (times ``sqrt(fan_in)``) and biases.
    parameterization : {"ntk", "standard"}, default="ntk"
        As in :func:`ntk_kernel`.
    width : float, default=512
        Hidden-layer width; used only by the standard parameterization.
    need_ntk : bool, default=True
        Whether to compute the NTK diagonal too.
    input_scales : array-like of shape (d,), default=None
        Per-feature input scales, as in :func:`nngp_kernel`.

    Returns
    -------
    variances : list of tensors
        ``variances[l]`` is ``K_{l+1}(x, x)`` after Dense layer ``l`` (``n_hidden + 1`` entries);
        the last one is the NNGP diagonal.
    ntk_diag : tensor or None
        The NTK diagonal ``Theta(x, x)``.
    """
    act = parse_activation(activation)
    X = _scale_inputs(X, check_input_scales(input_scales, X.shape[1], X))
    d = X.shape[1]
    s = (X * X).sum(dim=1) / d
    k = w_std**2 * s + b_std**2
    theta = None
    if need_ntk:
        theta = k if parameterization == "ntk" else d * s + 1.0
    variances = [k]
    for _ in range(n_hidden):
        e, dot = act.maps(k, k, k, need_ntk)
        k, theta = _next_layer(e, dot, theta, w_std**2, b_std**2, parameterization, width)
        variances.append(k)
    return variances, theta


def _fc_block(X1, X2, var1, var2, act, n_hidden, w_std, b_std, parameterization, width,
              need_ntk, on_diagonal=False, traced=True):
    """The recursion for one block of rows: returns (nngp, ntk or None), shape (r, m).

    ``X1``, ``X2`` are already multiplied by the input scales. ``on_diagonal``: row ``i`` of
    ``X1`` is row ``i`` of ``X2`` (a block of a symmetric kernel). ``traced``: a
    hyperparameter is a tensor (autograd / forward-mode AD), so nothing is done in place.
    """
    inplace = act.fast_maps is not None and not traced
    maps = act.fast_maps if inplace else act.maps
    d = X1.shape[1]
    w2, b2 = (float(w_std) ** 2, float(b_std) ** 2) if inplace else (w_std**2, b_std**2)
    s12 = X1 @ X2.T  # d times the input Gram x.x' / d
    theta = None
    if need_ntk and parameterization == "standard":
        theta = s12 + 1.0
    k12 = s12.mul_(w2 / d).add_(b2) if inplace else w2 * s12 / d + b2
    if need_ntk and parameterization == "ntk":
        theta = k12.clone() if inplace else k12
    del s12
    for layer in range(n_hidden):
        k1, k2 = var1[layer][:, None], var2[layer][None, :]
        if inplace:
            e12, dot = maps(k12, k1, k2, need_ntk, on_diagonal)
        else:
            e12, dot = maps(k12, k1, k2, need_ntk)
        k12, theta = _next_layer(e12, dot, theta, w2, b2, parameterization, width, inplace)
        del e12, dot
    return k12, theta


def fc_kernels(X1, X2=None, n_hidden=1, activation="relu", w_std=1.0, b_std=0.0,
               parameterization="ntk", width=512, need_ntk=True, need_nngp=True,
               tile_bytes=DEFAULT_TILE_BYTES, input_scales=None):
    """NNGP and (optionally) NTK matrices between the rows of ``X1`` and ``X2``.

    Parameters
    ----------
    X1 : tensor or array of shape (n, d)
    X2 : tensor or array of shape (m, d), default=None
        ``None`` means ``X1`` (the symmetric train kernel).
    n_hidden : int
        Number of hidden layers.
    activation : str
        Activation spec (see :func:`~overparam_sklearn.kernels.parse_activation`).
    w_std, b_std : float or 0-d tensor
        Weight and bias standard deviations (tensors allow autograd / forward-mode AD).
    parameterization : {"ntk", "standard"}
    width : float
        Hidden-layer width; used only by the standard parameterization's NTK.
    need_ntk : bool
        Compute the NTK as well as the NNGP.
    need_nngp : bool, default=True
        Return the NNGP matrix. With ``need_ntk=True`` and ``need_nngp=False`` the NNGP is
        still computed tile by tile (the NTK recursion needs it) but never stored: ``None`` is
        returned in its place, saving one ``n x m`` matrix.
    tile_bytes : int
        Bytes one ``(rows, m)`` intermediate may take; peak memory is about
        ``8 * tile_bytes`` plus the two outputs.
    input_scales : array-like or tensor of shape (d,), default=None
        Per-feature scales ``s`` of the input layer: its weights on feature ``i`` have
        variance ``w_std^2 s_i^2 / d``, so its NNGP is ``w_std^2 sum_i s_i^2 x_i x'_i / d +
        b_std^2`` (:func:`dense_input_gram`); the kernels are those of the inputs ``X * s``.
        ``None`` (every ``s_i = 1``) is the isotropic network. A tensor is differentiated
        through (automatic relevance determination by marginal likelihood).

    Returns
    -------
    nngp : tensor of shape (n, m)
    ntk : tensor of shape (n, m) or None
    """
    act = check_kernel_params(n_hidden, activation, w_std, b_std, parameterization, width)
    X1 = check_real_matrix(X1, "X1")
    symmetric = X2 is None
    X2 = X1 if symmetric else check_real_matrix(X2, "X2", X1.dtype, X1.device)
    if X1.shape[1] != X2.shape[1]:
        raise ValueError(
            f"X1 has {X1.shape[1]} features but X2 has {X2.shape[1]}; they must match."
        )
    scales = check_input_scales(input_scales, X1.shape[1], X1)
    X1 = _scale_inputs(X1, scales)
    X2 = X1 if symmetric else _scale_inputs(X2, scales)
    args = (n_hidden, act, w_std, b_std, parameterization, width)
    hyper = (w_std, b_std, input_scales)
    traced = tensor_params = any(isinstance(p, torch.Tensor) for p in hyper)
    var1, theta1 = fc_diagonals(X1, *args, need_ntk=need_ntk and not tensor_params)
    var2, theta2 = (var1, theta1) if symmetric else fc_diagonals(
        X2, *args, need_ntk=need_ntk and not tensor_params)
    if not tensor_params:  # (the forward-mode pass of the kernel objects checks beforehand)
        _check_diagonals(var1, theta1, "X1")
        if not symmetric:
            _check_diagonals(var2, theta2, "X2")
    n, m = X1.shape[0], X2.shape[0]
    tile = rows_per_tile(m, X1.dtype, _BUFFERS_PER_TILE, tile_bytes)
    store_nngp = need_nngp or not need_ntk
    requires_grad = any(isinstance(p, torch.Tensor) and p.requires_grad for p in hyper)
    n_outputs = int(store_nngp) + int(need_ntk)
    kind = "NNGP and NTK" if n_outputs == 2 else ("NTK" if need_ntk else "NNGP")
    check_memory(
        n_outputs * estimate_bytes((n, m), X1.dtype) * (2 if requires_grad else 1)
        + _BUFFERS_PER_TILE * estimate_bytes((min(tile, n), m), X1.dtype),
        X1.device, f"the {n} x {m} {kind} kernel",
        "Use fewer samples (or evaluate the kernel in blocks of rows), float32 inputs, or an "
        "approximation: random features (overparam_sklearn.RandomFeatures) or Nystroem.",
    )
    if symmetric and not requires_grad:
        tile = min(tile, max(_MIN_TILE_ROWS, -(-n // _MIN_SYMMETRIC_TILES)))
    if requires_grad or (tile >= n and not symmetric):
        # autograd needs the graph of every tile: concatenate instead of writing in place.
        blocks = [
            _fc_block(X1[sl], X2, [v[sl] for v in var1], var2, act, n_hidden, w_std, b_std,
                      parameterization, width, need_ntk, on_diagonal=symmetric and n <= tile,
                      traced=traced)
            for sl in tile_slices(n, tile)
        ]
        if len(blocks) == 1:
            return blocks[0][0] if store_nngp else None, blocks[0][1]
        nngp = torch.cat([b[0] for b in blocks]) if store_nngp else None
        ntk = torch.cat([b[1] for b in blocks]) if need_ntk else None
        return nngp, ntk
    nngp = torch.empty((n, m), dtype=X1.dtype, device=X1.device) if store_nngp else None
    ntk = torch.empty((n, m), dtype=X1.dtype, device=X1.device) if need_ntk else None
    for sl in tile_slices(n, tile):
        # a symmetric kernel needs only the blocks on and above the diagonal
        cols = slice(sl.start, m) if symmetric else slice(0, m)
        k, t = _fc_block(X1[sl], X2[cols], [v[sl] for v in var1], [v[cols] for v in var2],
                         act, n_hidden, w_std, b_std, parameterization, width, need_ntk,
                         on_diagonal=symmetric, traced=traced)
        for out, block in ((nngp, k), (ntk, t)):
            if out is None:
                continue
            out[sl, cols] = block
            if symmetric:
                out[sl.stop:, sl] = block[:, sl.stop - sl.start:].T
                # the square block on the diagonal: copy its upper triangle to the lower one so
                # the result is exactly symmetric (row and column round-off can differ)
                square = out[sl, sl]
                lower = torch.tril_indices(*square.shape, offset=-1, device=square.device)
                square[lower[0], lower[1]] = square[lower[1], lower[0]]
    return nngp, ntk


def nngp_kernel(X1, X2=None, n_hidden=1, activation="relu", w_std=1.0, b_std=0.0,
                parameterization="ntk", width=512, input_scales=None):
    """NNGP kernel of an infinitely wide fully connected network.

    The covariance of the network's outputs at initialisation, in the limit of infinite width
    (Neal 1996; Lee et al. 2018; Matthews et al. 2018).

    Parameters
    ----------
    <KERNEL FUNCTION PARAMETERS>
    parameterization : {"ntk", "standard"}, default="ntk"
        Does not change the NNGP; accepted for symmetry with :func:`ntk_kernel`.
    width : float, default=512
        Unused by the NNGP.
    input_scales : array-like of shape (d,), default=None
        Per-feature input scales ``s`` (automatic relevance determination): the input layer's
        NNGP becomes ``w_std^2 sum_i s_i^2 x_i x'_i / d + b_std^2``, i.e. the kernel of the
        inputs ``X * s``. Scales multiply (a large ``s_i`` makes feature ``i`` matter more),
        unlike the length scales of an RBF kernel, which divide. ``None``: all ones.

    Returns
    -------
    K : tensor of shape (n, m)
        On the device and floating dtype of ``X1`` (float64 for integer or numpy input).

    Examples
    --------
    >>> import numpy as np
    >>> from overparam_sklearn.kernels import nngp_kernel
    >>> X = np.random.default_rng(0).normal(size=(5, 3))
    >>> nngp_kernel(X, n_hidden=2, activation="erf", w_std=1.5, b_std=0.1).shape
    torch.Size([5, 5])
    """
    return fc_kernels(X1, X2, n_hidden, activation, w_std, b_std, parameterization, width,
                      need_ntk=False, input_scales=input_scales)[0]


def ntk_kernel(X1, X2=None, n_hidden=1, activation="relu", w_std=1.0, b_std=0.0,
               parameterization="ntk", width=512, input_scales=None):
    """Neural tangent kernel of an infinitely wide fully connected network (Jacot et al. 2018).

    Parameters
    ----------
    <KERNEL FUNCTION PARAMETERS>
    parameterization : {"ntk", "standard"}, default="ntk"
        neural-tangents' parameterization. With ``"standard"`` the NTK grows with ``width``.
    width : float, default=512
        Hidden-layer width of the finite network; used only by the standard parameterization.
    input_scales : array-like of shape (d,), default=None
        Per-feature scales that multiply the inputs before the network (in the NTK
        parameterization: first-layer weight variances ``w_std^2 s_i^2 / d``, not trained), as
        in :func:`nngp_kernel`. ``None``: all ones.

    Returns
    -------
    Theta : tensor of shape (n, m)

    Examples
    --------
    >>> import numpy as np
    >>> from overparam_sklearn.kernels import ntk_kernel
    >>> X = np.random.default_rng(0).normal(size=(4, 3))
    >>> K = ntk_kernel(X, n_hidden=3, activation="relu")
    >>> bool((K - K.T).abs().max() < 1e-12)
    True
    """
    # the NNGP is needed tile by tile by the recursion but not stored (one n x m matrix less)
    return fc_kernels(X1, X2, n_hidden, activation, w_std, b_std, parameterization, width,
                      need_ntk=True, need_nngp=False, input_scales=input_scales)[1]


# the parameters nngp_kernel and ntk_kernel share, written once
_KERNEL_FUNCTION_PARAMETERS = """    X1 : array-like or tensor of shape (n, d)
    X2 : array-like or tensor of shape (m, d), default=None
        ``None`` means ``X1``.
    n_hidden : int, default=1
        Number of hidden layers.
    activation : str, default="relu"
        Activation spec, e.g. ``"relu"``, ``"erf"``, ``"leaky_relu(0.1)"``.
    w_std, b_std : float, default=1.0, 0.0
        Standard deviations of weights (times ``sqrt(fan_in)``) and biases.
"""
for _function in (nngp_kernel, ntk_kernel):
    _function.__doc__ = _function.__doc__.replace("    <KERNEL FUNCTION PARAMETERS>\n",
                                                  _KERNEL_FUNCTION_PARAMETERS)
del _function
