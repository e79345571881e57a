"""A PFN on cell tokens: one token per (row, group of features) and one for the target.

The alternative to :class:`~overparam_sklearn.pfn.model.PFNTransformer` (one token per row) that
TabPFN v2 introduced (Hollmann et al., Nature 2025, "Accurate predictions on small data with a
tabular foundation model", Methods: every cell is a token; each layer attends across the features
of a row, then across the rows of a feature) and that the nanoTabPFN speedrun records refine with
feature groups (a few features per token), learned "thinking" rows prepended to the context, and
RMSNorm. The interface is the row model's (``forward``, ``forward_split``, ``encode_context``,
``predict_queries``), so training, export and the estimators take either.

Attention across rows: every row attends to the context rows only (the thinking rows count as
context), so a context's state never depends on the queries and ``forward_split`` equals the
masked ``forward`` on the query rows (tested).
"""

import math

import torch
import torch.nn.functional as F
from torch import nn

from ._blocks import check_task, split_heads, task_modules

__all__ = ["CellPFNTransformer"]


class _CellLayer(nn.Module):
    """Attention across the tokens of a row, then across the rows of each token column, then an
    MLP; pre-RMSNorm residual blocks."""

    def __init__(self, d_model, n_heads, d_ff):
        super().__init__()
        self.n_heads = n_heads
        self.norm_feat = nn.RMSNorm(d_model)
        self.feat_qkv = nn.Linear(d_model, 3 * d_model)
        self.feat_out = nn.Linear(d_model, d_model)
        self.norm_row = nn.RMSNorm(d_model)
        self.row_q = nn.Linear(d_model, d_model)
        self.row_kv = nn.Linear(d_model, 2 * d_model)
        self.row_out = nn.Linear(d_model, d_model)
        self.norm_ff = nn.RMSNorm(d_model)
        self.ff1 = nn.Linear(d_model, d_ff)
        self.ff2 = nn.Linear(d_ff, d_model)

    def _heads(self, t):
        return split_heads(t, self.n_heads)

    def _merge(self, t):
        S, H, L, dh = t.shape
        return t.transpose(1, 2).reshape(S, L, H * dh)

    def across_features(self, h):
        """(B, N, T, D): every token attends to the tokens of its own row."""
        B, N, T, D = h.shape
        flat = h.reshape(B * N, T, D)
        q, k, v = self.feat_qkv(self.norm_feat(flat)).chunk(3, dim=-1)
        att = F.scaled_dot_product_attention(self._heads(q), self._heads(k), self._heads(v))
        return h + self.feat_out(self._merge(att)).view(B, N, T, D)

    def keys_values(self, h_ctx):
        """Row-attention keys and values of context tokens (B, n, T, D), after the feature
        attention: (B * T, H, n, D / H) each."""
        B, n, T, D = h_ctx.shape
        cols = h_ctx.transpose(1, 2).reshape(B * T, n, D)
        k, v = self.row_kv(self.norm_row(cols)).chunk(2, dim=-1)
        return self._heads(k), self._heads(v)

    def across_rows(self, h, k, v, key_mask=None):
        """(B, N, T, D): every token attends to the context tokens of its column."""
        B, N, T, D = h.shape
        cols = h.transpose(1, 2).reshape(B * T, N, D)
        q = self._heads(self.row_q(self.norm_row(cols)))
        att = F.scaled_dot_product_attention(q, k, v, attn_mask=key_mask)
        upd = self.row_out(self._merge(att)).view(B, T, N, D).transpose(1, 2)
        return h + upd

    def mlp(self, h):
        return h + self.ff2(F.gelu(self.ff1(self.norm_ff(h))))


class CellPFNTransformer(nn.Module):
    """Cell-token PFN: a token per group of ``feature_group`` features of each row, one per
    row for the target (its value in the context, a learned "unknown" vector for the queries),
    and ``thinking_rows`` learned rows prepended to every context.

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
    feature_group : int
        Features per token (the last group is zero-padded).
    thinking_rows : int
        Learned context rows (attended to like data rows; they carry no target).
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
        feature_group=2,
        thinking_rows=4,
    ):
        super().__init__()
        check_task(task)
        self.task = task
        self.d_max = d_max
        self.max_classes = max_classes
        self.feature_group = int(feature_group)
        self.n_groups = math.ceil(d_max / self.feature_group)
        self.n_tokens = self.n_groups + 1  # feature groups, then the target
        self.thinking_rows = int(thinking_rows)
        self.x_encoder = nn.Linear(self.feature_group, d_model)
        self.bar, self.y_encoder, head = task_modules(task, d_model, d_ff, borders, max_classes)
        # 2-D parameters, so that the seeded initialisation of pfn.train draws them
        self.y_unknown = nn.Parameter(torch.zeros(1, d_model))
        self.thinking = nn.Parameter(torch.zeros(self.thinking_rows * self.n_tokens, d_model))
        self.layers = nn.ModuleList(_CellLayer(d_model, n_heads, d_ff) for _ in range(n_layers))
        self.norm_out = nn.RMSNorm(d_model)
        self.head = head

    def _cells(self, x):
        """(B, N, d_max) -> feature-group tokens (B, N, n_groups, D)."""
        B, N, d = x.shape
        pad = self.n_groups * self.feature_group - d
        if pad:
            x = F.pad(x, (0, pad))
        return self.x_encoder(x.view(B, N, self.n_groups, self.feature_group))

    def _embed(self, x, y=None, known=None):
        """Tokens (B, N, T, D): the feature groups of ``x``, then the target token, which
        encodes ``y`` where ``known`` (B, N) is true (all rows when ``known`` is None) and is
        the learned "unknown" vector elsewhere (every row when ``y`` is None)."""
        cells = self._cells(x)
        B, N, _, D = cells.shape
        t = self.y_unknown.view(1, 1, D).expand(B, N, D)
        if y is not None:
            if self.task == "regression":
                ty = self.y_encoder(y[..., None].to(cells.dtype))
            else:
                ty = self.y_encoder(y.long().clamp(0, self.max_classes - 1))
            t = ty if known is None else torch.where(known[..., None], ty, t)
        return torch.cat([cells, t[:, :, None, :]], 2)

    def _with_thinking(self, h_ctx):
        if self.thinking_rows == 0:
            return h_ctx
        B, _, T, D = h_ctx.shape
        rows = self.thinking.view(self.thinking_rows, T, D)[None].expand(B, -1, -1, -1)
        return torch.cat([rows.to(h_ctx.dtype), h_ctx], 1)

    def _readout(self, h):
        return self.head(self.norm_out(h[:, :, -1, :]))

    def forward(self, x, y, n_ctx):
        """Training forward pass on whole datasets (as :meth:`PFNTransformer.forward`): the
        first ``n_ctx[b]`` rows of dataset ``b`` are its context. Returns (B, N, n_out)."""
        B, N, _ = x.shape
        is_ctx = torch.arange(N, device=x.device)[None, :] < n_ctx[:, None]
        h = self._embed(x, y, known=is_ctx)
        h = self._with_thinking(h)
        R = self.thinking_rows
        keys = torch.cat([torch.ones((B, R), dtype=torch.bool, device=x.device), is_ctx], 1)
        T = self.n_tokens
        key_mask = keys[:, None, None, :].repeat_interleave(T, 0)  # (B * T, 1, 1, R + N)
        for layer in self.layers:
            h = layer.across_features(h)
            k, v = layer.keys_values(h)
            h = layer.mlp(layer.across_rows(h, k, v, key_mask))
        return self._readout(h[:, R:])

    def encode_context(self, x_ctx, y_ctx):
        """Row-attention keys/values of every layer for a context (B, n, d_max), (B, n)."""
        h = self._with_thinking(self._embed(x_ctx, y_ctx))
        cache = []
        last = len(self.layers) - 1
        for i, layer in enumerate(self.layers):
            h = layer.across_features(h)
            k, v = layer.keys_values(h)
            cache.append((k, v))
            if i < last:
                h = layer.mlp(layer.across_rows(h, k, v))
        return cache

    def forward_split(self, x, y, n_ctx):
        """Query logits (B, N - n_ctx, n_out) for datasets sharing one context size; equal to
        ``forward(x, y, n_ctx)[:, n_ctx:]``."""
        n_ctx = int(n_ctx)
        return self.predict_queries(self.encode_context(x[:, :n_ctx], y[:, :n_ctx]), x[:, n_ctx:])

    def predict_queries(self, cache, x_query):
        """Output logits (B, m, n_out) for queries (B, m, d_max) given :meth:`encode_context`."""
        h = self._embed(x_query)
        for layer, (k, v) in zip(self.layers, cache, strict=True):
            h = layer.across_features(h)
            h = layer.mlp(layer.across_rows(h, k, v))
        return self._readout(h)
