"""Per-example scores as pure torch functions: EL2N, GraNd and forgetting counts.

Paul et al. (2021) eq. 2 (EL2N) and eq. 1 (GraNd); Toneva et al. (2019) for forgetting events.
"""

import math

import torch
from torch import nn

from .._backend import (
    rows_per_tile,
    tile_slices,
)
from ._mlp import _last_linear, _logits


def el2n_scores(module, X, y):
    """EL2N (Paul et al. 2021, eq. 2) of one network: ``|| softmax(f(x)) - onehot(y) ||_2``."""
    logits = _logits(module, X)
    err = torch.softmax(logits, dim=1)
    err[torch.arange(len(y), device=err.device), y] -= 1.0
    return torch.linalg.vector_norm(err, dim=1)



def _single_use_linears(module, x1):
    """The ``nn.Linear`` submodules called exactly once in a forward pass of one example.

    Returns ``[(name, linear, output_shape)]``; shapes come from a dry run on ``x1`` (one row).
    A Linear called twice (weight sharing) or whose parameters are shared elsewhere is left out:
    its per-example gradient is not the single product the factored norm assumes.
    """
    calls, shapes, handles = {}, {}, []
    named = [(n, m) for n, m in module.named_modules() if isinstance(m, nn.Linear)]
    for name, lin in named:

        def hook(mod, inp, out, name=name):
            calls[name] = calls.get(name, 0) + 1
            shapes[name] = tuple(out.shape)

        handles.append(lin.register_forward_hook(hook))
    try:
        with torch.no_grad():
            module(x1)
    finally:
        for h in handles:
            h.remove()
    owners = {}
    for mod_name, mod in module.named_modules():
        for p in mod.parameters(recurse=False):
            owners.setdefault(id(p), set()).add(mod_name)
    out = []
    for name, lin in named:
        shared = any(len(owners[id(p)]) > 1 for p in lin.parameters(recurse=False))
        if calls.get(name) == 1 and not shared:
            out.append((name, lin, shapes[name]))
    return out


def grand_scores(module, X, y, tile_bytes=64 * 2**20, factored=True):
    """GraNd (Paul et al. 2021, eq. 1) of one network over all its parameters.

    ``|| grad_theta CE(f_theta(x), y) ||_2`` for every row, batched per example with
    ``torch.func`` (``vmap`` of ``grad`` of ``functional_call``) over tiles of rows. The module
    runs in eval mode (no dropout; norm layers use their running statistics), so rows are
    independent.

    With ``factored=True`` (default) the weights of every ``nn.Linear`` called once per forward
    are not differentiated directly: ``vmap(grad)`` is taken with respect to a zero perturbation
    of the layer's output, giving the per-example output gradient ``delta`` (positions
    ``p = 1..P`` when the layer sees more than one vector per example), and the layer's input
    ``h`` is returned alongside. The per-example weight gradient is ``sum_p delta_p h_p^T``, so
    ``||dL/dW||^2 = sum_{p,q} (delta_p . delta_q)(h_p . h_q)`` and ``||dL/db||^2 =
    ||sum_p delta_p||^2`` exactly (the rank-one identity of Goodfellow 2015, "Efficient
    per-example gradient computations"), without materialising ``n x n_params`` numbers. All
    other parameters get their per-example gradients from ``vmap(grad)`` directly, as does every
    parameter with ``factored=False``. Tiles keep those per-example numbers within
    ``tile_bytes``.
    """
    from torch.func import functional_call, grad, vmap

    module.eval()
    params = {k: v.detach() for k, v in module.named_parameters()}
    buffers = {k: v.detach() for k, v in module.named_buffers()}
    linears = _single_use_linears(module, X[:1]) if factored and len(X) else []
    factored_names = set()
    for name, lin, _ in linears:
        prefix = f"{name}." if name else ""
        factored_names.update(prefix + k for k, _ in lin.named_parameters(recurse=False))
    direct = {k: v for k, v in params.items() if k not in factored_names}
    fixed = {k: v for k, v in params.items() if k in factored_names}
    eps = [torch.zeros(shape, dtype=X.dtype, device=X.device) for _, _, shape in linears]

    def loss_one(direct_p, eps_l, x, t):
        feats = []
        handles = []
        for i, (_, lin, _) in enumerate(linears):

            def hook(mod, inp, out, i=i):
                feats.append(inp[0])
                return out + eps_l[i]

            handles.append(lin.register_forward_hook(hook))
        try:
            out = functional_call(module, ({**fixed, **direct_p}, buffers), (x.unsqueeze(0),))
        finally:
            for h in handles:
                h.remove()
        return nn.functional.cross_entropy(out, t.unsqueeze(0)), feats

    per_example = vmap(grad(loss_one, argnums=(0, 1), has_aux=True), in_dims=(None, None, 0, 0))
    width = sum(math.prod(shape) for _, _, shape in linears)
    n_direct = sum(v.numel() for v in direct.values())
    # the per-example numbers plus the activations of the batched forward/backward: ~4 copies
    tile = rows_per_tile(n_direct + 2 * width, X.dtype, n_buffers=4, tile_bytes=tile_bytes)
    out = []
    for s in tile_slices(X.shape[0], tile):
        (g_direct, g_eps), feats = per_example(direct, eps, X[s], y[s])
        rows = s.stop - s.start
        # one fused pass per tensor (no squared temporary of the per-example gradients)
        sq = [torch.linalg.vector_norm(v.reshape(rows, -1), dim=1).square()
              for v in g_direct.values()]
        for (_, lin, _), delta, h in zip(linears, g_eps, feats, strict=True):
            delta = delta.reshape(rows, -1, delta.shape[-1])  # (rows, P, out)
            h = h.reshape(rows, -1, h.shape[-1])  # (rows, P, in)
            if delta.shape[1] == 1:
                sq.append(delta.square().sum(dim=(1, 2)) * h.square().sum(dim=(1, 2)))
            else:
                gram = (delta @ delta.transpose(1, 2)) * (h @ h.transpose(1, 2))
                sq.append(gram.sum(dim=(1, 2)))
            if lin.bias is not None:
                sq.append(delta.sum(dim=1).square().sum(dim=1))
        total = torch.stack(sq).sum(dim=0) if sq else torch.zeros(rows, dtype=X.dtype)
        out.append(total.sqrt())
    return torch.cat(out) if out else torch.zeros(0, dtype=X.dtype, device=X.device)


def grand_scores_last_layer(module, X, y):
    """GraNd restricted to the readout layer, in closed form.

    For logits ``z = W h + b`` and cross-entropy, ``dL/dW = (p - e_y) h^T`` and ``dL/db = p - e_y``
    (``p = softmax(z)``), so the norm is ``||p - e_y|| * sqrt(||h||^2 + 1)`` (``+1`` only with a
    bias): the EL2N error times the feature norm. ``h`` is captured with a forward hook on the last
    ``nn.Linear``, which must produce the logits.
    """
    last = _last_linear(module)
    feats = []
    hook = last.register_forward_hook(lambda mod, inp, out: feats.append(inp[0].detach()))
    try:
        err_norm = el2n_scores(module, X, y)
    finally:
        hook.remove()
    h = torch.cat(feats, dim=0).reshape(X.shape[0], -1)
    sq = h.pow(2).sum(dim=1)
    if last.bias is not None:
        sq = sq + 1.0
    return err_norm * sq.sqrt()



def _forgetting_counts(correct):
    """Forgetting events (Toneva et al. 2019) from a ``(n_epochs, n)`` boolean correctness matrix.

    An event is a transition correct -> wrong between consecutive evaluations; the state before
    training counts as "not learned". Examples never classified correctly count as forgotten
    ``n_epochs`` times, more than any learned example can be (at most ``n_epochs // 2``): Toneva
    et al. rank never-learned examples as the most forgettable.
    """
    correct = torch.as_tensor(correct, dtype=torch.bool)
    n_epochs = correct.shape[0]
    events = (correct[:-1] & ~correct[1:]).sum(dim=0).to(torch.float64)
    never = ~correct.any(dim=0)
    events[never] = float(n_epochs)
    return events

