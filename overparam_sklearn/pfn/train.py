"""Train a PFN on datasets drawn from a prior, reproducibly, with checkpoints and resume.

Usage (the shipped weights were made this way; see the README for the measured time)::

    OMP_NUM_THREADS=1 python -m overparam_sklearn.pfn.train --preset regression \\
        --out runs/pfn_regression --threads 1 --verbose 1
    python -m overparam_sklearn.pfn.train --preset regression --out runs/pfn_regression \\
        --export overparam_sklearn/pfn/weights

Determinism: the network is initialised from a generator seeded with ``seed``, and the batch of
step ``t`` is drawn from a generator seeded with ``(seed, t)`` only, so a run that is interrupted
and resumed from its checkpoint draws the same batches as an uninterrupted one (up to
floating-point reduction order in the optimiser, which is deterministic on the CPU).

Curriculum: the sequence length grows linearly from ``min_len`` to ``max_len`` over
``curriculum_steps``; every batch draws its length uniformly between ``min_len`` and the current
maximum, and every dataset in the batch draws its own context size (log-uniform with
probability 0.3, otherwise uniform on ``[1, N - min_queries]``), so small contexts are trained
throughout. The batch size shrinks with the length to keep ``tokens_per_batch`` roughly constant.
"""

import argparse
import json
import math
import shutil
import signal
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import torch
from torch.nn import functional as F

from ._checkpoints import (  # noqa: F401 (load_exported, average_checkpoints: public here)
    _checkpoint_dirs,
    _read_checkpoint,
    _weights_pt,
    _write_checkpoint,
    average_checkpoints,
    load_exported,
)
from ._io import _sha256
from ._presets import PRESETS
from .model import build_model, make_network
from .priors import get_prior

__all__ = ["PRESETS", "train", "export_weights", "compute_borders", "sample_batch", "main"]


def _step_generator(seed, step, stream=0, device="cpu"):
    g = torch.Generator(device=device)
    g.manual_seed((int(seed) * 1_000_003 + int(step)) * 7 + stream)
    return g


def _seq_len(config, step):
    frac = min(1.0, step / max(1, config["curriculum_steps"]))
    return int(round(config["min_len"] + frac * (config["max_len"] - config["min_len"])))


def sample_batch(config, step, n_points=None, batch=None, n_ctx=None, stream=0, seed=None):
    """The training batch of ``step`` (a pure function of ``config['seed']``, ``step``, ``stream``
    and ``config['device']``, where it is drawn).

    ``n_points``, ``batch`` and ``n_ctx`` override the curriculum (used for validation batches);
    ``seed`` overrides ``config['seed']``.
    """
    device = torch.device(config.get("device", "cpu"))
    if device.type == "cuda" and device.index is None:
        device = torch.device("cuda", torch.cuda.current_device())
    gen = _step_generator(config["seed"] if seed is None else seed, step, stream, device)
    # the priors create their tensors with torch's factory functions: on ``device`` here
    with torch.device(device):
        return _sample_batch(config, gen, step, n_points, batch, n_ctx)


def _sample_batch(config, gen, step, n_points, batch, n_ctx):
    if n_points is None:
        hi = _seq_len(config, step)
        lo = max(min(config["min_len"], hi), config["min_queries"] + 1)
        n_points = int(torch.randint(lo, hi + 1, (1,), generator=gen))
    if batch is None:
        batch = int(
            min(
                config["max_batch"],
                max(config["min_batch"], config["tokens_per_batch"] // n_points),
            )
        )
    if n_ctx is None:
        hi_ctx = min(config["max_ctx"], n_points - config["min_queries"])
        # one context size for the whole batch (the cheap split forward pass), or one per dataset
        n_draw = 1 if config.get("ctx_per_batch", False) else batch
        uniform = torch.randint(1, hi_ctx + 1, (n_draw,), generator=gen)
        log_unif = (
            torch.exp(torch.rand((n_draw,), generator=gen) * math.log(hi_ctx))
            .floor()
            .long()
            .clamp(1, hi_ctx)
        )
        n_ctx = torch.where(torch.rand((n_draw,), generator=gen) < 0.3, log_unif, uniform)
        n_ctx = n_ctx.expand(batch).clone()
    else:
        n_ctx = torch.as_tensor(n_ctx).expand(batch).clone()
    prior = get_prior(config["prior"])
    return prior(gen, batch, n_points, n_ctx, config["d_max"])


def compute_borders(config, n_samples=100_000):
    """Bucket borders: quantiles of standardised query targets drawn from the prior (PFN
    Sec. 4.1)."""
    ys = []
    count = 0
    i = 0
    while count < n_samples:
        n_points = [64, 160, 400][i % 3]
        b = sample_batch(config, i, n_points=n_points, batch=max(2, 4096 // n_points), stream=3)
        q = torch.arange(n_points)[None, :] >= b["n_ctx"][:, None]
        ys.append(b["y"][q].double())
        count += int(q.sum())
        i += 1
    y = torch.cat(ys)
    # targets clamped by the prior (|z| = 50, tiny contexts) would make a pile of empty buckets at
    # the ends; they are left to the half-normal tails instead
    y = y[y.abs() < 49.0][:10_000_000]
    probs = torch.linspace(0.0, 1.0, config["n_bars"] + 1, dtype=torch.float64)
    borders = torch.quantile(y, probs)
    for j in range(1, borders.numel()):  # strictly increasing (discrete priors can tie)
        if borders[j] <= borders[j - 1] + 1e-6:
            borders[j] = borders[j - 1] + 1e-6
    return borders.float()


def init_parameters(model, gen):
    """Seeded initialisation (no global RNG): truncated normal ``1/sqrt(fan_in)`` weights, residual
    output projections scaled by ``1/sqrt(2 n_layers)``, zero biases, and a zero last head layer so
    the untrained network predicts the prior's marginal (uniform over the quantile buckets)."""
    n_layers = len(model.layers)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("bias"):
                p.zero_()
            elif ".ln" in name or name.startswith("ln") or "ln_out" in name:
                p.fill_(1.0)
            elif name.startswith("y_encoder") and p.ndim == 2 and model.task == "classification":
                torch.nn.init.trunc_normal_(p, std=1.0, a=-2.0, b=2.0, generator=gen)
            elif p.ndim == 2:
                std = 1.0 / math.sqrt(p.shape[1])
                if name.endswith("out.weight") or name.endswith("ff2.weight"):
                    std /= math.sqrt(2 * n_layers)
                torch.nn.init.trunc_normal_(p, std=std, a=-2 * std, b=2 * std, generator=gen)
        model.head[-1].weight.zero_()
        model.head[-1].bias.zero_()


def _lr(config, step):
    if step < config["warmup"]:
        return config["lr"] * (step + 1) / config["warmup"]
    frac = min(1.0, (step - config["warmup"]) / max(1, config["steps"] - config["warmup"]))
    return config["lr"] * (0.1 + 0.9 * 0.5 * (1.0 + math.cos(math.pi * frac)))


def _loss(model, batch, target="sample"):
    """Mean loss over the query points of a batch.

    ``target="sample"``: the NLL of the drawn query targets. ``target="predictive"``: for
    regression batches that carry ``y_mu``/``y_sd``, the cross-entropy against the bucket masses of
    ``N(y_mu, y_sd^2)``; for classification batches that carry ``y_prob``, the cross-entropy
    against those class probabilities. Cross-entropy is linear in the target distribution, so
    averaging it over the predictive gives the same expected gradient as the drawn targets with
    less noise (the value differs from the NLL by a network-independent constant, so validation
    always uses drawn targets). A batch whose datasets share one context size takes the split
    forward pass (:meth:`~overparam_sklearn.pfn.model.PFNTransformer.forward_split`), which gives
    the same query logits at a lower cost.
    """
    x, y, n_ctx = batch["x"], batch["y"], batch["n_ctx"]
    N = x.shape[1]
    if bool((n_ctx == n_ctx[0]).all()):
        c = int(n_ctx[0])
        out = model.forward_split(x, y, c).float()
        sl = slice(c, N)
        query = None
    else:
        out = model(x, y, n_ctx).float()
        sl = slice(0, N)
        query = torch.arange(N, device=x.device)[None, :] >= n_ctx[:, None]
    yq = y[:, sl]
    if model.task == "classification" and target == "predictive" and "y_prob" in batch:
        per = -(batch["y_prob"][:, sl].to(out.dtype) * torch.log_softmax(out, -1)).sum(-1)
    elif model.task == "classification":
        per = F.cross_entropy(out.transpose(1, 2), yq.long(), reduction="none")
    elif target == "predictive" and "y_mu" in batch:
        masses = model.bar.normal_masses(batch["y_mu"][:, sl], batch["y_sd"][:, sl])
        per = -(masses.to(out.dtype) * torch.log_softmax(out, -1)).sum(-1)
    else:
        per = model.bar.nll(out, yq)
    if query is None:
        return per.mean()
    return (per * query).sum() / query.sum()


def _validation(model, config):
    """Mean query NLL on fixed validation batches at context sizes ``val_sizes`` (``val_batch``
    datasets of 100 queries each, drawn with ``val_seed``: the same set whatever the training
    seed, so runs and shipped weights are compared on identical data).

    The mixture priors pick their component once per batch, so with ``val_chunk`` (datasets per
    batch) the set is drawn as several batches and covers several components; without it (the
    presets, as for every shipped run) each context size is one batch.
    """
    model.eval()
    out = {}
    device = next(model.parameters()).device
    total = config.get("val_batch", 16)
    chunk = config.get("val_chunk") or total
    with torch.no_grad():
        for n_ctx in config["val_sizes"]:
            total_nll = 0.0
            for i, start in enumerate(range(0, total, chunk)):
                b = sample_batch(
                    dict(config, device="cpu"),  # the same set wherever the network runs
                    n_ctx + 1_000_000 * i,  # chunk 0 is the one-batch set of earlier runs
                    n_points=n_ctx + 100,
                    batch=min(chunk, total - start),
                    n_ctx=n_ctx,
                    stream=5,
                    seed=config.get("val_seed", config["seed"]),
                )
                b = {k: v.to(device) for k, v in b.items()}
                total_nll += float(_loss(model, b)) * b["y"].shape[0]
            out[str(n_ctx)] = total_nll / total
    model.train()
    return out


_CELL_KEYS = ("architecture", "feature_group", "thinking_rows")
_ARCH_KEYS = (
    "d_max",
    "d_model",
    "n_layers",
    "n_heads",
    "d_ff",
    "max_classes",
    "max_ctx",
    "architecture",
    "feature_group",
    "thinking_rows",
)


def _model_config(config):
    keys = ["task", "prior", *_ARCH_KEYS, "normalize_x", "normalize_y", "seed"]
    # runs and weights from before the cell-token option have no architecture keys: rows
    return {k: config[k] for k in keys if k in config or k not in _CELL_KEYS}


def _make_optimizers(model, config):
    """AdamW on every parameter, or (``optimizer="muon"``) torch's Muon on the 2-D weight matrices
    of the transformer layers and the head's hidden layer and AdamW on the rest (encoders, output
    layer, norms, biases), as Muon's authors recommend (Jordan et al. 2024, "Muon: an optimizer for
    hidden layers"). Muon's step is scaled to AdamW's update RMS (``adjust_lr_fn=
    "match_rms_adamw"``, Liu et al. 2025, "Muon is scalable for LLM training"), so both share the
    learning rate; ``muon_lr_mult`` multiplies it for the matrices."""
    kind = config.get("optimizer", "adamw")
    wd = config["weight_decay"]
    if kind == "adamw":
        return [
            torch.optim.AdamW(model.parameters(), lr=config["lr"], weight_decay=wd, foreach=False)
        ]
    if kind != "muon":
        raise ValueError(f"optimizer must be 'adamw' or 'muon', got {kind!r}")
    mats = [
        p
        for n, p in model.named_parameters()
        if p.ndim == 2 and (n.startswith("layers.") or n.startswith("head.0"))
    ]
    ids = {id(p) for p in mats}
    rest = [p for p in model.parameters() if id(p) not in ids]
    adam = torch.optim.AdamW(rest, lr=config["lr"], weight_decay=wd, foreach=False)
    muon = torch.optim.Muon(mats, lr=config["lr"], weight_decay=wd, adjust_lr_fn="match_rms_adamw")
    for g in muon.param_groups:
        g["lr_mult"] = float(config.get("muon_lr_mult", 1.0))
    return [adam, muon]


def _set_lr(opts, config, step):
    lr = _lr(config, step)
    for opt in opts:
        for g in opt.param_groups:
            g["lr"] = lr * g.get("lr_mult", 1.0)


def _new_model(config, init_from):
    """A fresh network (seeded initialisation) or the exported weights ``init_from``."""
    if init_from is not None:
        # continue training exported weights (a fresh optimiser; the schedule starts at step 0)
        model, arch = load_exported(init_from)
        if arch["task"] != config["task"]:
            raise ValueError(
                f"init_from weights are a {arch['task']} model, the config trains {config['task']}"
            )
        config = dict(config, **{k: arch[k] for k in _ARCH_KEYS if k in arch})
        config["init_from"] = {"path": str(init_from), "sha256": _sha256(_weights_pt(init_from))}
        return model, config
    borders = (
        compute_borders(dict(config, device="cpu"), config["border_samples"])
        if config["task"] == "regression"
        else None
    )
    # torch's default initialisation draws from the global RNG; it is overwritten at once by
    # init_parameters, so draw it from a forked RNG and leave the caller's global state alone
    with torch.random.fork_rng(devices=[]):
        model = make_network(config, borders)
    g = torch.Generator()
    g.manual_seed(int(config["seed"]))
    init_parameters(model, g)
    return model, config


# ---- checkpoints -------------------------------------------------------------------------------


def train(
    config, out_dir, resume=True, verbose=0, max_seconds=None, init_from=None, overrides=None
):
    """Train (or resume) a PFN; returns the model (the last state, not the average).

    Checkpoints go to ``out_dir/ckpt`` (see above) every ``ckpt_every`` steps and every
    ``ckpt_seconds`` seconds. ``max_seconds`` stops cleanly (after a checkpoint) once that much
    wall time has passed in this call. ``time_budget`` (config, seconds) instead fixes the number
    of steps of a new run from the speed measured over its first ``budget_probe_steps`` steps, so
    that the learning-rate schedule ends within the budget. ``init_from`` (the ``.json`` or
    ``.pt`` of exported weights) starts a new run from those weights instead of a random
    initialisation (the architecture comes from the weights). A run with a checkpoint in
    ``out_dir`` resumes from it and ignores ``init_from``; its config comes from the checkpoint,
    except the schedule settings of ``_RESCHEDULABLE`` (steps, checkpoint and validation
    intervals, device, amp, prefetch, avg_last), taken from ``config`` (only those named in
    ``overrides`` when it is given). At the end the weights (averaged over
    the last ``avg_last`` checkpoints) are exported to ``out_dir/export`` with their manifest.

    ``device`` (config) is where the network runs and the prior is sampled (``"cpu"``,
    ``"cuda"``); ``amp="bf16"`` runs the forward pass under bfloat16 autocast (and allows TF32
    matrix products on CUDA); ``prefetch`` draws the next batch in a background thread.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    history = []
    step = 0
    ck = _read_checkpoint(out_dir) if resume else None
    if ck is not None:
        saved, model_state, opt_states, step, history = ck
        # architecture and prior come from the checkpoint; schedule settings may be extended
        # (only those named in ``overrides`` when given: the command line passes the keys it set)
        for k in _RESCHEDULABLE:
            if k in config and (overrides is None or k in overrides):
                saved[k] = config[k]
        for k, v in config.items():  # settings added to the presets after the checkpoint
            saved.setdefault(k, v)
        config = saved
        model = build_model(_model_config(config), model_state)
        model.train()
        opts = _make_optimizers(model, config)
        for o, s in zip(opts, opt_states, strict=True):
            o.load_state_dict(s)
        if verbose:
            print(f"resumed {out_dir} at step {step}", file=sys.stderr)
    else:
        if resume is False:
            for d in _checkpoint_dirs(out_dir):
                shutil.rmtree(d, ignore_errors=True)
            for f in ("latest.json", "checkpoint.pt"):
                (out_dir / f).unlink(missing_ok=True)
        model, config = _new_model(dict(config), init_from)
        model.train()
        opts = _make_optimizers(model, config)
        if verbose and init_from is not None:
            print(f"initialised from {init_from}", file=sys.stderr)
    device = torch.device(config.get("device", "cpu"))
    model.to(device)
    for o in opts:  # optimiser state follows its parameters (loaded on the CPU)
        for st in o.state.values():
            for k, v in st.items():
                if isinstance(v, torch.Tensor) and v.ndim > 0:
                    st[k] = v.to(device)
    with open(out_dir / "config.json", "w") as fh:
        json.dump(config, fh, indent=1)
    amp = config.get("amp", "none")
    if amp not in ("none", "bf16"):
        raise ValueError(f"amp must be 'none' or 'bf16', got {amp!r}")
    tf32 = torch.backends.cuda.matmul.allow_tf32
    if amp == "bf16" and device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True  # restored below
    keep = max(1, int(config.get("avg_last", 1)))

    def save():
        _write_checkpoint(out_dir, model, opts, config, step, history, keep)

    bar = None
    if verbose:
        try:
            from tqdm.auto import tqdm

            bar = tqdm(total=config["steps"], initial=step, file=sys.stderr, mininterval=5.0)
        except ImportError:  # pragma: no cover
            bar = None
    prefetch = bool(config.get("prefetch", False))
    pool = ThreadPoolExecutor(1) if prefetch else None

    def fetch(s):
        return pool.submit(sample_batch, config, s) if pool else sample_batch(config, s)

    # SIGTERM (a scheduler's or a user's kill) stops after the current step with a checkpoint
    stop_signal = []
    old_handler = None
    if threading.current_thread() is threading.main_thread():
        old_handler = signal.signal(signal.SIGTERM, lambda *_: stop_signal.append(True))
    try:
        t_start = time.time()
        # wall time accumulated over the earlier segments of a resumed run
        wall0 = (
            history[-1].get("wall", sum(h.get("t_step", 0.0) for h in history)) if history else 0.0
        )
        if step == 0 and not history and config.get("eval_at_start"):
            history.append({"step": 0, "wall": 0.0, "val": _validation(model, config)})
            if verbose:
                print(json.dumps(history[-1]), flush=True)
            t_start = time.time()
        model.train()
        ema = None
        t_ckpt = time.time()
        t_probe = None
        pending = fetch(step) if step < config["steps"] else None
        while step < config["steps"]:
            t0 = time.time()
            batch = pending.result() if pool else pending
            t1 = time.time()
            pending = fetch(step + 1) if step + 1 < config["steps"] else None
            _set_lr(opts, config, step)
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp == "bf16"):
                loss = _loss(model, batch, config.get("target", "sample"))
            for o in opts:
                o.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), config["grad_clip"])
            for o in opts:
                o.step()
            step += 1
            lv = loss.item()
            ema = lv if ema is None else 0.98 * ema + 0.02 * lv
            now = time.time()
            rec = {
                "step": step,
                "loss": round(lv, 5),
                "n_points": int(batch["x"].shape[1]),
                "batch": int(batch["x"].shape[0]),
                "t_prior": round(t1 - t0, 4),
                "t_step": round(now - t0, 4),
                "wall": round(wall0 + now - t_start, 2),
            }
            budget = config.get("time_budget")
            probe = int(config.get("budget_probe_steps", 10))
            if budget and not config.get("budget_steps") and step == 1:
                t_probe = now  # the first step (allocations, autotuning) is the warm-up
            if budget and not config.get("budget_steps") and step == 1 + probe:
                per_step = (now - t_probe) / probe
                # reserve for validation passes, checkpoints and the final export
                left = 0.92 * (float(budget) - rec["wall"]) - 5.0
                config["steps"] = max(step + 1, step + int(left / per_step))
                config["budget_steps"] = {"per_step": round(per_step, 5), "steps": config["steps"]}
                if bar is not None:
                    bar.total = config["steps"]
                if verbose:
                    print(f"time budget {budget} s: {config['steps']} steps", file=sys.stderr)
            if step % config["eval_every"] == 0 or step == config["steps"]:
                rec["val"] = _validation(model, config)
            history.append(rec)
            if bar is not None:
                bar.update(1)
                bar.set_postfix(loss=f"{ema:.4f}", N=rec["n_points"])
            if verbose and (step % 25 == 0 or "val" in rec):
                print(json.dumps(dict(rec, ema=round(ema, 4))), flush=True)
            stop = bool(stop_signal) or (
                max_seconds is not None and time.time() - t_start > max_seconds
            )
            by_time = time.time() - t_ckpt > float(config.get("ckpt_seconds", 1e18))
            if step % config["ckpt_every"] == 0 or step == config["steps"] or stop or by_time:
                save()
                t_ckpt = time.time()
            if stop:
                break
    finally:
        if old_handler is not None:
            signal.signal(signal.SIGTERM, old_handler)
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)
        torch.backends.cuda.matmul.allow_tf32 = tf32
        if bar is not None:
            bar.close()
    save()
    if step >= config["steps"]:
        export_weights(out_dir, out_dir / "export", average=config.get("avg_last", 1))
    return model


#: config entries that a resumed run may change (everything else comes from the checkpoint)
_RESCHEDULABLE = (
    "steps",
    "curriculum_steps",
    "ckpt_every",
    "ckpt_seconds",
    "eval_every",
    "val_chunk",
    "device",
    "amp",
    "prefetch",
    "avg_last",
)


def export_weights(run_dir, weights_dir, name=None, average=1, command=None):
    """Write ``<name>.pt`` (a state dict of plain tensors) and ``<name>.json`` (config and a
    training summary) from ``run_dir``'s checkpoint, averaged over its last ``average``
    checkpoints, and record their sha256 in ``weights_dir/manifest.json`` and in
    ``<file>.sha256`` beside each. ``command`` (text) records how the run was made."""
    run_dir, weights_dir = Path(run_dir), Path(weights_dir)
    ck = _read_checkpoint(run_dir)
    if ck is None:
        raise FileNotFoundError(f"no checkpoint in {run_dir}")
    config, _, _, step, hist = ck
    state, steps = average_checkpoints(run_dir, average)
    name = name or config["task"]
    weights_dir.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().to("cpu").clone().contiguous() for k, v in state.items()}
    model = build_model(_model_config(config), state)
    val = _validation(model, dict(config, device="cpu"))
    pt = weights_dir / f"{name}.pt"
    torch.save(state, pt)
    vals = [h for h in hist if "val" in h]
    preset = config.get("preset", config["prior"])
    meta = dict(
        _model_config(config),
        training={
            "steps": step,
            "averaged_steps": steps,
            "preset_config": config,
            "validation": val,
            "last_validation": vals[-1] if vals else None,
            "train_seconds": round(hist[-1].get("wall", 0.0), 1) if hist else 0.0,
            "command": command
            or f"python -m overparam_sklearn.pfn.train --preset {preset} "
            f"--out {run_dir} --steps {config['steps']} --threads 1",
        },
    )
    js = weights_dir / f"{name}.json"
    with open(js, "w") as fh:
        json.dump(meta, fh, indent=1)
    manifest_path = weights_dir / "manifest.json"
    manifest = {}
    if manifest_path.exists():
        with open(manifest_path) as fh:
            manifest = json.load(fh)
    manifest[pt.name] = _sha256(pt)
    manifest[js.name] = _sha256(js)
    with open(manifest_path, "w") as fh:
        json.dump(manifest, fh, indent=1, sort_keys=True)
    for f in (pt, js):  # beside each file too (sha256sum format), for files copied on their own
        f.with_name(f.name + ".sha256").write_text(f"{manifest[f.name]}  {f.name}\n")
    return pt, js


def main(argv=None):
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--preset", choices=sorted(PRESETS), default="regression")
    p.add_argument("--out", required=True, help="run directory (checkpoint.pt, history.json)")
    p.add_argument("--steps", type=int, default=None)
    p.add_argument("--seed", type=int, default=None)
    p.add_argument(
        "--threads", type=int, default=None, help="torch intra-op threads for this process"
    )
    p.add_argument("--max-seconds", type=float, default=None)
    p.add_argument("--no-resume", action="store_true")
    p.add_argument(
        "--init-from",
        default=None,
        metavar="WEIGHTS",
        help="start from exported weights (.json or .pt) instead of a random initialisation",
    )
    p.add_argument("--verbose", type=int, default=1)
    p.add_argument(
        "--export", default=None, help="only export the run's checkpoint to this weights directory"
    )
    p.add_argument("--name", default=None, help="file stem for --export (default: the task)")
    p.add_argument(
        "--set", nargs="*", default=[], help="override config entries, key=value (JSON values)"
    )
    args = p.parse_args(argv)
    if args.threads is not None:
        torch.set_num_threads(args.threads)  # script entry point: the process is ours
    if args.export:
        pt, js = export_weights(args.out, args.export, args.name)
        print(f"wrote {pt} ({pt.stat().st_size / 2**20:.2f} MiB) and {js}")
        return 0
    config = dict(PRESETS[args.preset], preset=args.preset)
    overrides = set()
    if args.steps is not None:
        config["steps"] = args.steps
        overrides.add("steps")
    if args.seed is not None:
        config["seed"] = args.seed
    for kv in args.set:
        k, v = kv.split("=", 1)
        if k not in config:
            p.error(f"unknown config key {k!r}")
        config[k] = json.loads(v)
        overrides.add(k)
    train(
        config,
        args.out,
        resume=not args.no_resume,
        verbose=args.verbose,
        max_seconds=args.max_seconds,
        init_from=args.init_from,
        overrides=overrides,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
