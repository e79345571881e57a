"""PFN training runs on disk: crash-safe checkpoints (write, read, average) and exported weights.

Used by :mod:`overparam_sklearn.pfn.train`; no training logic here.
"""

import json
import os
import shutil
from pathlib import Path

import torch

from .model import build_model


def _weights_pt(path):
    path = Path(path)
    return path.with_suffix(".pt")


def load_exported(path):
    """Model (train mode off) and config of weights written by :func:`export_weights`; ``path``
    is the ``.json`` or the ``.pt`` (its ``.json`` beside it)."""
    path = Path(path)
    js, pt = path.with_suffix(".json"), path.with_suffix(".pt")
    if not js.exists() or not pt.exists():
        raise ValueError(f"exported weights need both {js} and {pt}")
    with open(js) as fh:
        arch = json.load(fh)
    state = torch.load(pt, weights_only=True)
    model = build_model(arch, state)
    model.eval()
    return model, arch


# ``out_dir/ckpt/step-XXXXXXX/`` holds ``model.pt`` (weights, a few MiB), ``optim.pt`` (optimiser
# state) and ``state.json`` (config, step, history); ``out_dir/latest.json`` names the newest
# complete one and is replaced atomically after the directory is written, so a run killed at any
# moment resumes from a consistent checkpoint. The last ``max(1, avg_last)`` directories are kept
# for the final averaging. ``out_dir/checkpoint.pt`` is the single-file format of earlier versions
# (still resumed from).


def _atomic_json(obj, path):
    tmp = Path(str(path) + ".tmp")
    with open(tmp, "w") as fh:
        json.dump(obj, fh)
    os.replace(tmp, path)


def _checkpoint_dirs(out_dir):
    """Complete checkpoint directories, oldest first."""
    root = Path(out_dir) / "ckpt"
    if not root.exists():
        return []
    return sorted(d for d in root.iterdir() if d.is_dir() and (d / "state.json").exists())


def _write_checkpoint(out_dir, model, opts, config, step, history, keep):
    out_dir = Path(out_dir)
    d = out_dir / "ckpt" / f"step-{step:07d}"
    tmp = out_dir / "ckpt" / f".tmp-step-{step:07d}"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    cpu = {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}
    torch.save({"model": cpu, "step": step}, tmp / "model.pt")
    torch.save({"optimizer": [o.state_dict() for o in opts], "step": step}, tmp / "optim.pt")
    with open(tmp / "state.json", "w") as fh:
        json.dump({"config": config, "step": step, "history": history}, fh)
    if d.exists():
        shutil.rmtree(d)
    os.replace(tmp, d)
    _atomic_json({"dir": str(d.relative_to(out_dir)), "step": step}, out_dir / "latest.json")
    with open(out_dir / "history.json", "w") as fh:
        json.dump(history, fh)
    for old in _checkpoint_dirs(out_dir)[: -max(1, keep)]:
        shutil.rmtree(old, ignore_errors=True)


def _read_checkpoint(out_dir):
    """``(config, model_state, optimizer_states, step, history)`` of the newest checkpoint, or
    None. Reads the directory format and the legacy single ``checkpoint.pt``."""
    out_dir = Path(out_dir)
    latest = out_dir / "latest.json"
    if latest.exists():
        with open(latest) as fh:
            d = out_dir / json.load(fh)["dir"]
        with open(d / "state.json") as fh:
            st = json.load(fh)
        m = torch.load(d / "model.pt", weights_only=True)
        o = torch.load(d / "optim.pt", weights_only=True)
        if not (m["step"] == o["step"] == st["step"]):
            raise RuntimeError(f"inconsistent checkpoint in {d}")
        return st["config"], m["model"], o["optimizer"], st["step"], st["history"]
    legacy = out_dir / "checkpoint.pt"
    if legacy.exists():
        ck = torch.load(legacy, weights_only=True)
        return ck["config"], ck["model"], [ck["optimizer"]], ck["step"], ck["history"]
    return None


def average_checkpoints(out_dir, last):
    """Parameter average of the model states of the last ``last`` checkpoints of a run (the
    newest alone when ``last <= 1`` or only one is kept); buffers (the bucket borders) are equal
    across checkpoints. Returns ``(state_dict, steps)``."""
    dirs = _checkpoint_dirs(out_dir)
    if not dirs:
        ck = _read_checkpoint(out_dir)
        if ck is None:
            raise FileNotFoundError(f"no checkpoint in {out_dir}")
        return ck[1], [ck[3]]
    dirs = dirs[-max(1, int(last)) :]
    states = [torch.load(d / "model.pt", weights_only=True) for d in dirs]
    avg = {}
    for k in states[-1]["model"]:
        vs = [s["model"][k] for s in states]
        if vs[0].is_floating_point() and not k.endswith("borders"):
            avg[k] = torch.stack([v.double() for v in vs]).mean(0).to(vs[-1].dtype)
        else:
            avg[k] = vs[-1].clone()
    return avg, [s["step"] for s in states]
