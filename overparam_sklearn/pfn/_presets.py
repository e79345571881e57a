"""Training configurations of the PFN: the defaults and the named presets of ``pfn.train``."""

_BASE = {
    "seed": 0,
    "d_max": 10,
    "d_model": 128,
    "n_layers": 4,
    "n_heads": 4,
    "d_ff": 256,
    "n_bars": 1000,
    # "rows": a token per row; "cells": a token per feature group and row plus thinking rows
    "architecture": "rows",
    "feature_group": 2,
    "thinking_rows": 4,
    "max_classes": 10,
    "steps": 3700,
    "lr": 5e-4,
    "warmup": 200,
    "weight_decay": 0.0,
    "grad_clip": 1.0,
    "tokens_per_batch": 4096,
    "min_batch": 2,
    "max_batch": 64,
    "min_len": 40,
    "max_len": 1032,
    "max_ctx": 1000,
    "min_queries": 32,
    "curriculum_steps": 600,
    "ckpt_every": 25,
    "eval_every": 250,
    "val_sizes": [10, 50, 200],
    "val_batch": 16,
    "val_chunk": None,  # datasets per validation batch (None: one batch per size)
    "val_seed": 0,
    "border_samples": 100_000,
    "eval_at_start": False,
    # cheaper steps: one context size per batch (split forward pass), next batch drawn in a thread
    "ctx_per_batch": True,
    "prefetch": True,
    # "sample": NLL of the drawn targets; "predictive": bucket masses of the exact predictive
    "target": "sample",
    "optimizer": "adamw",
    "muon_lr_mult": 1.0,
    # one-shot runs: where the network runs and the prior is drawn, bf16 autocast, checkpoints
    # every ckpt_seconds, averaging of the last avg_last checkpoints, a wall-clock budget
    "device": "cpu",
    "amp": "none",
    "ckpt_seconds": 60.0,
    "avg_last": 1,
    "time_budget": None,
    "budget_probe_steps": 10,
}

#: Training presets: the shipped regression and classification models, and the fixed-
#: hyperparameter GP model used to check the machinery against the exact GP posterior.
PRESETS = {
    "regression": dict(
        _BASE, prior="regression", task="regression", normalize_x=True, normalize_y=True
    ),
    "classification": dict(
        _BASE,
        prior="classification",
        task="classification",
        normalize_x=True,
        normalize_y=False,
        steps=1800,
        curriculum_steps=500,
    ),
    "gp_fixed": dict(
        _BASE,
        prior="gp_fixed",
        task="regression",
        normalize_x=False,
        normalize_y=False,
        d_max=8,
        max_len=532,
        max_ctx=500,
        steps=3600,
        curriculum_steps=400,
    ),
}
