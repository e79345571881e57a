"""The empirical (finite-width) neural tangent kernel of any torch module.

For a network ``f(x; theta)`` with ``k`` outputs the empirical NTK is the sum over parameters of
the products of Jacobians (Jacot et al. 2018, Eq. 2)::

    Theta(x, x')[c, c'] = sum_p  d f_c(x) / d theta_p  *  d f_c'(x') / d theta_p.

It is computed without materialising the ``n x P`` Jacobian:

* an ``nn.Linear`` layer called once per input on 2-D activations has the Jacobian
  ``d f_c / d W = g_c a^T`` (``a`` its input, ``g_c`` the gradient of output ``c`` with respect
  to its output), so its share of the kernel is ``(a(x).a(x')) (g_c(x).g_c'(x'))`` plus
  ``g_c(x).g_c'(x')`` for the bias: ``O(n m (fan_in + fan_out))`` work and ``O(n (fan_in +
  fan_out))`` memory instead of ``O(n fan_in fan_out)`` (the factorisation of Novak et al. 2022,
  "Fast Finite Width Neural Tangent Kernel", Sec. 4);
* every other parameter (convolutions, normalisation layers, shared layers) goes through
  per-sample Jacobians from :func:`torch.func.jacrev` and :func:`torch.func.vmap`, in chunks of
  inputs sized to ``tile_bytes``, contracted chunk against chunk.

The module must treat the samples of a batch independently (put batch normalisation in eval
mode); it is called on batches and, for the per-sample Jacobians, on single samples with a
leading batch axis of 1. Nothing about the module is changed (hooks are removed on exit).
"""

import torch

from .._backend import DEFAULT_TILE_BYTES, tile_slices
from .._validation import check_real_matrix

__all__ = ["empirical_ntk"]


def _check_module(module):
    if not isinstance(module, torch.nn.Module):
        raise TypeError(f"module must be a torch.nn.Module, got {type(module).__name__}")
    params = {name: p for name, p in module.named_parameters() if p.requires_grad}
    if not params:
        raise ValueError("module has no trainable parameters: its NTK is zero")
    return params


def _as_inputs(X, like, name):
    if isinstance(X, torch.Tensor):
        X = X.detach()
    return check_real_matrix(X, name, like.dtype, like.device, ndim=None)


def _linear_factors(module, X, params):
    """Inputs ``a`` and output gradients ``g`` of each factorisable ``nn.Linear``.

    Returns ``(factors, names)``: ``factors`` is a list of ``(a, g, has_bias)`` with ``a`` of
    shape (n, fan_in) and ``g`` of shape (n, k, fan_out); ``names`` the parameters covered.
    """
    linears = {
        m: name for name, m in module.named_modules()
        if type(m) is torch.nn.Linear and m.weight.requires_grad
        and (m.bias is None or m.bias.requires_grad)
    }
    calls = {m: [] for m in linears}

    def hook(mod, inputs, output):
        calls[mod].append((inputs[0], output, inputs[0]._version, output._version))

    handles = [m.register_forward_hook(hook) for m in linears]
    try:
        with torch.enable_grad():
            out = module(X)
    finally:
        for h in handles:
            h.remove()
    out = out.reshape(X.shape[0], -1)
    # factorisable: called exactly once, on (n, fan_in) inputs that are per-sample rows, and
    # neither its input nor its output changed in place afterwards (ReLU(inplace=True))
    usable = [m for m, c in calls.items()
              if len(c) == 1 and c[0][0].ndim == 2 and c[0][0].shape[0] == X.shape[0]
              and (c[0][0]._version, c[0][1]._version) == c[0][2:]]
    if not usable:
        return [], set(), out.detach()
    zs = [calls[m][0][1] for m in usable]
    k = out.shape[1]
    grads = [[] for _ in usable]
    try:
        for c in range(k):
            gs = torch.autograd.grad(out[:, c].sum(), zs, retain_graph=c + 1 < k,
                                     allow_unused=True)
            for i, g in enumerate(gs):
                grads[i].append(torch.zeros_like(zs[i]) if g is None else g)
    except RuntimeError:
        # e.g. an in-place operation on a layer's output: every parameter takes the
        # per-sample Jacobian path instead
        return [], set(), out.detach()
    factors, names = [], set()
    for m, g in zip(usable, grads, strict=True):
        a = calls[m][0][0].detach()
        factors.append((a, torch.stack(g, dim=1).detach(), m.bias is not None))
        prefix = linears[m] + "." if linears[m] else ""
        names.add(prefix + "weight")
        if m.bias is not None:
            names.add(prefix + "bias")
    return factors, names, out.detach()


def _jacobians(module, X, rest, frozen):
    """Per-sample Jacobians ``{name: (r, k, *shape)}`` of the parameters in ``rest``."""
    from torch.func import functional_call, jacrev, vmap

    def f(p, x):
        return functional_call(module, {**frozen, **p}, (x.unsqueeze(0),)).reshape(-1)

    return vmap(jacrev(f), in_dims=(None, 0))(rest, X)


def _contract(J1, J2):
    """``sum_p J1[i, c, p] J2[j, c', p]`` over a dict of Jacobians: shape (r, s, k, k)."""
    total = None
    for name, a in J1.items():
        b = J2[name]
        r, k = a.shape[:2]
        s = b.shape[0]
        block = (a.reshape(r * k, -1) @ b.reshape(s * k, -1).T).reshape(r, k, s, k)
        total = block if total is None else total.add_(block)
    return total.permute(0, 2, 1, 3)


def empirical_ntk(module, X1, X2=None, *, trace=True, tile_bytes=DEFAULT_TILE_BYTES):
    """Empirical neural tangent kernel of a torch module (its parameters as they are now).

    Parameters
    ----------
    module : torch.nn.Module
        The network; its trainable parameters (``requires_grad=True``) are differentiated.
        It must map the samples of a batch independently.
    X1 : array-like or tensor of shape (n, ...)
        Inputs, in the module's input shape; converted to the dtype of its parameters.
    X2 : array-like or tensor of shape (m, ...), default=None
        ``None`` means ``X1``.
    trace : bool, default=True
        For ``k > 1`` outputs, return the mean over outputs of ``Theta[c, c]`` (neural-tangents'
        ``trace_axes=(-1,)``), shape (n, m); ``False`` returns every pair of outputs, shape
        (n, m, k, k). A scalar output gives (n, m) either way.
    tile_bytes : int, default=64 MiB
        Bytes one chunk of per-sample Jacobians may take (for the parameters that are not in
        factorisable ``nn.Linear`` layers).

    Returns
    -------
    Theta : tensor of shape (n, m) or (n, m, k, k)
        On the device and dtype of the module's parameters.

    Examples
    --------
    >>> import torch
    >>> from overparam_sklearn.kernels import empirical_ntk
    >>> with torch.random.fork_rng():  # building layers draws from the global RNG: restored
    ...     net = torch.nn.Sequential(torch.nn.Linear(3, 64), torch.nn.ReLU(),
    ...                               torch.nn.Linear(64, 1)).double()
    >>> g = torch.Generator().manual_seed(0)  # fixed weights from a private generator
    >>> for p in net.parameters():
    ...     _ = torch.nn.init.normal_(p, std=0.3, generator=g)
    >>> X = torch.randn(5, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    >>> K = empirical_ntk(net, X)
    >>> K.shape, bool(torch.allclose(K, K.T))
    (torch.Size([5, 5]), True)
    """
    params = _check_module(module)
    like = next(iter(params.values()))
    X1 = _as_inputs(X1, like, "X1")
    symmetric = X2 is None
    X2 = X1 if symmetric else _as_inputs(X2, like, "X2")
    if X1.shape[1:] != X2.shape[1:]:
        raise ValueError(
            f"X1 has sample shape {tuple(X1.shape[1:])} but X2 has {tuple(X2.shape[1:])}"
        )
    factors1, covered, out1 = _linear_factors(module, X1, params)
    if symmetric:
        factors2, out2 = factors1, out1
    else:
        factors2, _, out2 = _linear_factors(module, X2, params)
    n, m, k = X1.shape[0], X2.shape[0], out1.shape[1]
    theta = X1.new_zeros((n, m, k, k))
    for (a1, g1, bias), (a2, g2, _) in zip(factors1, factors2, strict=True):
        gg = torch.einsum("ico,jdo->ijcd", g1, g2)
        share = (a1 @ a2.T)[:, :, None, None] * gg
        theta += share
        if bias:
            theta += gg
    rest = {name: p for name, p in params.items() if name not in covered}
    if rest:
        frozen = {name: p.detach() for name, p in module.named_parameters()
                  if name not in rest}
        frozen.update(dict(module.named_buffers()))
        rest = {name: p.detach() for name, p in rest.items()}
        per_sample = k * sum(p.numel() for p in rest.values()) * like.element_size()
        rows = max(1, int(tile_bytes // max(1, per_sample)))
        with torch.no_grad():
            if symmetric and n <= rows:
                J = _jacobians(module, X1, rest, frozen)
                theta += _contract(J, J)
            else:
                J2_all = _jacobians(module, X2, rest, frozen) if m <= rows else None
                for rs in tile_slices(n, rows):
                    J1 = _jacobians(module, X1[rs], rest, frozen)
                    if J2_all is not None:
                        theta[rs] += _contract(J1, J2_all)
                        continue
                    for cs in tile_slices(m, rows):
                        J2 = (J1 if symmetric and cs == rs
                              else _jacobians(module, X2[cs], rest, frozen))
                        theta[rs, cs] += _contract(J1, J2)
    if k == 1:
        return theta[:, :, 0, 0]
    if trace:
        return torch.diagonal(theta, dim1=2, dim2=3).mean(dim=-1)
    return theta
