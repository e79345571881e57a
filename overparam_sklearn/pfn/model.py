"""The PFN transformer and its output heads.

Müller et al., "Transformers Can Do Bayesian Inference" (ICLR 2022):

* Sec. 4 / Fig. 2: the context points are tokens ``enc(x) + enc(y)`` and the query points tokens
  ``enc(x)``; every token attends only to the context tokens, so a query's prediction does not
  depend on the other queries, and no positional encoding is used (the context is a set).
* Sec. 4.1 "Riemann distribution": regression outputs a discretised density over ``n_bars``
  buckets whose borders are quantiles of targets drawn from the prior; to give full support the
  two outermost buckets are replaced by half-normal tails.
* Classification uses a softmax over ``max_classes`` logits.

The context stream never sees the queries, so at prediction time the keys/values of every layer
are computed once from the context (:meth:`PFNTransformer.encode_context`) and any number of query
chunks reuse them (:meth:`PFNTransformer.predict_queries`).
"""

import torch
from torch import nn
from torch.nn import functional as F

from ._bar import BarDistribution
from ._blocks import check_task, split_heads, task_modules
from ._cells import CellPFNTransformer

__all__ = [
    "BarDistribution",
    "PFNTransformer",
    "CellPFNTransformer",
    "build_model",
    "make_network",
]

class _Layer(nn.Module):
    """Pre-LayerNorm transformer layer whose keys and values come from the context only."""

    def __init__(self, d_model, n_heads, d_ff):
        super().__init__()
        self.n_heads = n_heads
        self.ln1 = nn.LayerNorm(d_model)
        self.q = nn.Linear(d_model, d_model)
        self.kv = nn.Linear(d_model, 2 * d_model)
        self.out = nn.Linear(d_model, d_model)
        self.ln2 = nn.LayerNorm(d_model)
        self.ff1 = nn.Linear(d_model, d_ff)
        self.ff2 = nn.Linear(d_ff, d_model)

    def _heads(self, t):
        return split_heads(t, self.n_heads)

    def keys_values(self, h_ctx):
        k, v = self.kv(self.ln1(h_ctx)).chunk(2, dim=-1)
        return self._heads(k), self._heads(v)

    def forward(self, h, k, v, key_mask=None):
        B, N, D = h.shape
        q = self._heads(self.q(self.ln1(h)))
        att = F.scaled_dot_product_attention(q, k, v, attn_mask=key_mask)
        h = h + self.out(att.transpose(1, 2).reshape(B, N, D))
        return h + self.ff2(F.gelu(self.ff1(self.ln2(h))))


class PFNTransformer(nn.Module):
    """Transformer PFN: context tokens ``enc(x) + enc(y)``, query tokens ``enc(x)``.

    Parameters
    ----------
    task : {"regression", "classification"}
    d_max : int
        Number of input features the network takes (datasets with fewer are zero-padded).
    d_model, n_layers, n_heads, d_ff : int
        Transformer sizes.
    borders : 1-D tensor, optional
        Bucket borders of the regression head (``n_bars + 1`` values).
    max_classes : int
        Number of classification logits.
    """

    def __init__(
        self,
        task,
        d_max,
        d_model=128,
        n_layers=4,
        n_heads=4,
        d_ff=256,
        borders=None,
        max_classes=10,
    ):
        super().__init__()
        check_task(task)
        self.task = task
        self.d_max = d_max
        self.max_classes = max_classes
        self.x_encoder = nn.Linear(d_max, d_model)
        self.bar, self.y_encoder, head = task_modules(task, d_model, d_ff, borders, max_classes)
        self.layers = nn.ModuleList(_Layer(d_model, n_heads, d_ff) for _ in range(n_layers))
        self.ln_out = nn.LayerNorm(d_model)
        self.head = head

    def _embed_y(self, y):
        if self.task == "regression":
            return self.y_encoder(y[..., None].to(self.x_encoder.weight.dtype))
        return self.y_encoder(y.long().clamp(0, self.max_classes - 1))

    def forward(self, x, y, n_ctx):
        """Training forward pass on whole datasets.

        ``x`` (B, N, d_max), ``y`` (B, N), ``n_ctx`` (B,): the first ``n_ctx[b]`` points of
        dataset ``b`` are its context (they carry their ``y``); every point attends only to those.
        Returns output logits (B, N, n_out); only the query positions are meaningful for a loss.
        """
        B, N, _ = x.shape
        is_ctx = torch.arange(N, device=x.device)[None, :] < n_ctx[:, None]
        h = self.x_encoder(x) + self._embed_y(y) * is_ctx[..., None].to(x.dtype)
        key_mask = is_ctx[:, None, None, :]
        for layer in self.layers:
            k, v = layer.keys_values(h)
            h = layer(h, k, v, key_mask)
        return self.head(self.ln_out(h))

    def encode_context(self, x_ctx, y_ctx):
        """Keys/values of every layer for a context (B, n, d_max), (B, n); queries reuse them.

        The context tokens' outputs of the last layer feed nothing (only the queries reach the
        head), so that layer's context update is skipped.
        """
        h = self.x_encoder(x_ctx) + self._embed_y(y_ctx)
        cache = []
        last = len(self.layers) - 1
        for i, layer in enumerate(self.layers):
            k, v = layer.keys_values(h)
            cache.append((k, v))
            if i < last:
                h = layer(h, k, v)
        return cache

    def forward_split(self, x, y, n_ctx):
        """Training forward pass for a batch whose datasets share one context size ``n_ctx``.

        Equal to ``forward(x, y, n_ctx)[:, n_ctx:]`` (the query rows), but keys and values are
        computed from the context tokens only, the context attends to itself without a mask, and
        the output head runs on the query rows only. Returns logits (B, N - n_ctx, n_out).
        """
        n_ctx = int(n_ctx)
        return self.predict_queries(self.encode_context(x[:, :n_ctx], y[:, :n_ctx]), x[:, n_ctx:])

    def predict_queries(self, cache, x_query):
        """Output logits (B, m, n_out) for queries (B, m, d_max) given :meth:`encode_context`."""
        h = self.x_encoder(x_query)
        for layer, (k, v) in zip(self.layers, cache, strict=True):
            h = layer(h, k, v)
        return self.head(self.ln_out(h))


def build_model(config, state_dict=None):
    """A :class:`PFNTransformer` from a config dict (as stored beside shipped weights)."""
    borders = None
    if config["task"] == "regression":
        if state_dict is not None:
            borders = state_dict["bar.borders"]
        else:
            borders = torch.as_tensor(config["borders"], dtype=torch.float32)

    if state_dict is None:
        return make_network(config, borders)
    # The random initialisation is overwritten at once; draw it from a forked RNG so that
    # loading shipped weights leaves the user's global torch RNG exactly as it was.
    with torch.random.fork_rng(devices=[]):
        model = make_network(config, borders)
    model.load_state_dict(state_dict)
    return model


def make_network(config, borders=None):
    """The untrained network a config describes: ``architecture="rows"`` (default; one token per
    row, :class:`PFNTransformer`) or ``"cells"`` (a token per feature group and row,
    :class:`CellPFNTransformer`)."""
    kwargs = dict(
        d_model=config["d_model"],
        n_layers=config["n_layers"],
        n_heads=config["n_heads"],
        d_ff=config["d_ff"],
        borders=borders,
        max_classes=config.get("max_classes", 10),
    )
    arch = config.get("architecture", "rows")
    if arch == "rows":
        return PFNTransformer(config["task"], config["d_max"], **kwargs)
    if arch == "cells":
        return CellPFNTransformer(
            config["task"],
            config["d_max"],
            feature_group=config.get("feature_group", 2),
            thinking_rows=config.get("thinking_rows", 4),
            **kwargs,
        )
    raise ValueError(f"architecture must be 'rows' or 'cells', got {arch!r}")
