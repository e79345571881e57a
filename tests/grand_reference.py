"""Reference per-example gradient norms for the GraNd tests and benchmark (slow by design)."""

import torch
from torch import nn


def _grand_scores_loop(module, X, y, params=None):
    """Reference: per-example gradient norms with one backward pass per example (slow)."""
    module.eval()
    params = list(module.parameters()) if params is None else list(params)
    out = torch.empty(X.shape[0], dtype=X.dtype, device=X.device)
    for i in range(X.shape[0]):
        loss = nn.functional.cross_entropy(module(X[i : i + 1]), y[i : i + 1])
        grads = torch.autograd.grad(loss, params)
        out[i] = torch.sqrt(sum(g.pow(2).sum() for g in grads))
    return out

