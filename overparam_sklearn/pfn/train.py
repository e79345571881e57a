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
import hashlib
import json
import math
import os
import sys
import time
from pathlib import Path

import torch
from torch.nn import functional as F

from .model import PFNTransformer, build_model
from .priors import get_prior

__all__ = ["PRESETS", "train", "export_weights", "compute_borders", "sample_batch", "main"]

_BASE = {
    "seed": 0,
    "d_max": 10,
    "d_model": 128,
    "n_layers": 4,
    "n_heads": 4,
    "d_ff": 256,
    "n_bars": 1000,
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
    "border_samples": 100_000,
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


def _step_generator(seed, step, stream=0):
    g = torch.Generator()
    g.manual_seed((int(seed) * 1_000_003 + int(step)) * 7 + stream)
    return g


def _seq_len(config, step):
    frac = min(1.0, step / max(1, config["curriculum_steps"]))
    return int(round(config["min_len"] + frac * (config["max_len"] - config["min_len"])))


def sample_batch(config, step, n_points=None, batch=None, n_ctx=None, stream=0):
    """The training batch of ``step`` (a pure function of ``config['seed']``, ``step``, ``stream``).

    ``n_points``, ``batch`` and ``n_ctx`` override the curriculum (used for validation batches).
    """
    gen = _step_generator(config["seed"], step, stream)
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
        uniform = torch.randint(1, hi_ctx + 1, (batch,), generator=gen)
        log_unif = (
            torch.exp(torch.rand((batch,), generator=gen) * math.log(hi_ctx))
            .floor()
            .long()
            .clamp(1, hi_ctx)
        )
        n_ctx = torch.where(torch.rand((batch,), generator=gen) < 0.3, log_unif, uniform)
    else:
        n_ctx = torch.as_tensor(n_ctx).expand(batch).clone()
    prior = get_prior(config["prior"])
    return prior(gen, batch, n_points, n_ctx, config["d_max"])


def compute_borders(config, n_samples=100_000):
    """Bucket borders: quantiles of standardised query targets drawn from the prior (PFN Sec. 4.1)."""
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


def _loss(model, batch):
    out = model(batch["x"], batch["y"], batch["n_ctx"])
    N = batch["x"].shape[1]
    query = torch.arange(N)[None, :] >= batch["n_ctx"][:, None]
    if model.task == "regression":
        per = model.bar.nll(out, batch["y"])
    else:
        per = F.cross_entropy(out.transpose(1, 2), batch["y"].long(), reduction="none")
    return (per * query).sum() / query.sum()


def _validation(model, config):
    """Mean query NLL on fixed validation batches at context sizes 10, 50 and 200."""
    model.eval()
    out = {}
    with torch.no_grad():
        for n_ctx in config["val_sizes"]:
            b = sample_batch(config, n_ctx, n_points=n_ctx + 100, batch=16, n_ctx=n_ctx, stream=5)
            out[str(n_ctx)] = float(_loss(model, b))
    model.train()
    return out


def _model_config(config):
    keys = [
        "task",
        "prior",
        "d_max",
        "d_model",
        "n_layers",
        "n_heads",
        "d_ff",
        "max_classes",
        "max_ctx",
        "normalize_x",
        "normalize_y",
        "seed",
    ]
    return {k: config[k] for k in keys}


def _atomic_save(obj, path):
    tmp = Path(str(path) + ".tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def train(config, out_dir, resume=True, verbose=0, max_seconds=None):
    """Train (or resume) a PFN; returns the model. Checkpoints go to ``out_dir/checkpoint.pt``.

    ``max_seconds`` stops cleanly (after a checkpoint) once that much wall time has passed.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    ckpt_path = out_dir / "checkpoint.pt"
    history = []
    step = 0
    if resume and ckpt_path.exists():
        ckpt = torch.load(ckpt_path, weights_only=True)
        saved = ckpt["config"]
        # architecture and prior come from the checkpoint; schedule settings may be extended
        for k in ("steps", "curriculum_steps", "ckpt_every", "eval_every"):
            saved[k] = config.get(k, saved[k])
        for (
            k,
            v,
        ) in config.items():  # settings added to the presets after the checkpoint was written
            saved.setdefault(k, v)
        config = saved
        model = build_model(_model_config(config), ckpt["model"])
        opt = torch.optim.AdamW(
            model.parameters(), lr=config["lr"], weight_decay=config["weight_decay"], foreach=False
        )
        opt.load_state_dict(ckpt["optimizer"])
        step = ckpt["step"]
        history = ckpt["history"]
        if verbose:
            print(f"resumed {ckpt_path} at step {step}", file=sys.stderr)
    else:
        borders = (
            compute_borders(config, config["border_samples"])
            if config["task"] == "regression"
            else None
        )
        # torch's default initialisation draws from the global RNG; it is overwritten at once by
        # init_parameters, so draw it from a forked RNG and leave the caller's global state alone
        with torch.random.fork_rng(devices=[]):
            model = PFNTransformer(
                config["task"],
                config["d_max"],
                config["d_model"],
                config["n_layers"],
                config["n_heads"],
                config["d_ff"],
                borders=borders,
                max_classes=config["max_classes"],
            )
        g = torch.Generator()
        g.manual_seed(int(config["seed"]))
        init_parameters(model, g)
        opt = torch.optim.AdamW(
            model.parameters(), lr=config["lr"], weight_decay=config["weight_decay"], foreach=False
        )
    with open(out_dir / "config.json", "w") as fh:
        json.dump({k: v for k, v in config.items()}, fh, indent=1)

    def save():
        _atomic_save(
            {
                "config": config,
                "model": model.state_dict(),
                "optimizer": opt.state_dict(),
                "step": step,
                "history": history,
            },
            ckpt_path,
        )
        with open(out_dir / "history.json", "w") as fh:
            json.dump(history, fh)

    bar = None
    if verbose:
        try:
            from tqdm.auto import tqdm

            bar = tqdm(total=config["steps"], initial=step, file=sys.stderr, mininterval=5.0)
        except ImportError:  # pragma: no cover
            bar = None
    t_start = time.time()
    model.train()
    ema = None
    while step < config["steps"]:
        t0 = time.time()
        batch = sample_batch(config, step)
        t1 = time.time()
        for group in opt.param_groups:
            group["lr"] = _lr(config, step)
        loss = _loss(model, batch)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), config["grad_clip"])
        opt.step()
        step += 1
        lv = loss.item()
        ema = lv if ema is None else 0.98 * ema + 0.02 * lv
        rec = {
            "step": step,
            "loss": round(lv, 5),
            "n_points": int(batch["x"].shape[1]),
            "batch": int(batch["x"].shape[0]),
            "t_prior": round(t1 - t0, 4),
            "t_step": round(time.time() - t0, 4),
        }
        if step % config["eval_every"] == 0 or step == config["steps"]:
            rec["val"] = _validation(model, config)
        history.append(rec)
        if bar is not None:
            bar.update(1)
            bar.set_postfix(loss=f"{ema:.4f}", N=rec["n_points"])
        if verbose and (step % 25 == 0 or "val" in rec):
            print(json.dumps(dict(rec, ema=round(ema, 4))), flush=True)
        if step % config["ckpt_every"] == 0 or step == config["steps"]:
            save()
        if max_seconds is not None and time.time() - t_start > max_seconds:
            save()
            break
    if bar is not None:
        bar.close()
    save()
    return model


def _sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def export_weights(run_dir, weights_dir, name=None):
    """Write ``<name>.pt`` (a state dict of plain tensors) and ``<name>.json`` (config plus training
    summary) from ``run_dir``'s checkpoint, and record their sha256 in ``manifest.json`` and in
    ``<file>.sha256`` beside each."""
    run_dir, weights_dir = Path(run_dir), Path(weights_dir)
    ckpt = torch.load(run_dir / "checkpoint.pt", weights_only=True)
    config = ckpt["config"]
    name = name or config["task"]
    weights_dir.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().clone().contiguous() for k, v in ckpt["model"].items()}
    pt = weights_dir / f"{name}.pt"
    torch.save(state, pt)
    hist = ckpt["history"]
    vals = [h for h in hist if "val" in h]
    meta = dict(
        _model_config(config),
        training={
            "steps": ckpt["step"],
            "preset_config": config,
            "last_validation": vals[-1] if vals else None,
            "train_seconds": round(sum(h["t_step"] for h in hist), 1),
            "command": f"python -m overparam_sklearn.pfn.train --preset {config.get('preset', config['prior'])} "
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
    if args.steps is not None:
        config["steps"] = args.steps
    if args.seed is not None:
        config["seed"] = args.seed
    for kv in args.set:
        k, v = kv.split("=", 1)
        if k not in config:
            p.error(f"unknown config key {k!r}")
        config[k] = json.loads(v)
    train(
        config,
        args.out,
        resume=not args.no_resume,
        verbose=args.verbose,
        max_seconds=args.max_seconds,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
