"""Pieces the row-token and cell-token PFNs share: the task's target encoder and output head, and
the split of a projection into attention heads."""

from torch import nn

from ._bar import BarDistribution


def check_task(task):
    if task not in ("regression", "classification"):
        raise ValueError(f"task must be 'regression' or 'classification', got {task!r}")


def task_modules(task, d_model, d_ff, borders, max_classes):
    """``(bar, y_encoder, head)``: regression encodes a target value linearly and outputs
    ``n_bars`` bucket logits of a :class:`BarDistribution` on ``borders``; classification embeds
    the label and outputs ``max_classes`` logits (``bar`` is None)."""
    if task == "regression":
        if borders is None:
            raise ValueError("a regression PFN needs bucket borders")
        bar = BarDistribution(borders)
        y_encoder = nn.Linear(1, d_model)
        n_out = bar.n_bars
    else:
        bar = None
        y_encoder = nn.Embedding(max_classes, d_model)
        n_out = max_classes
    head = nn.Sequential(nn.Linear(d_model, d_ff), nn.GELU(), nn.Linear(d_ff, n_out))
    return bar, y_encoder, head


def split_heads(t, n_heads):
    """(S, L, D) -> (S, n_heads, L, D / n_heads)."""
    S, L, D = t.shape
    return t.view(S, L, n_heads, D // n_heads).transpose(1, 2)
