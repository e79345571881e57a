"""The shipped PFN weights: where they live, how they are verified (sha256), and loading.

``load_pfn`` and the estimators load a config ``.json`` and its ``.pt`` state dict, check both
against ``manifest.json`` or ``.sha256`` sidecars, and cache the built model per file version.
"""

import functools
import json
from pathlib import Path

import torch

from .._backend import (
    resolve_dtype,
)
from ._io import _sha256
from .model import build_model

#: Directory of the shipped weights (``regression.pt/json``, ``classification.pt/json``,
#: ``manifest.json`` with their sha256).
WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"


def _resolve_weights(weights, task):
    """Path of the JSON config for ``weights`` (None: the shipped model for ``task``)."""
    if weights is None:
        path = WEIGHTS_DIR / f"{task}.json"
        if not path.exists():
            raise ValueError(
                f"the shipped {task} PFN weights are missing from {WEIGHTS_DIR}; regenerate them "
                f"with `python -m overparam_sklearn.pfn.train --preset {task}` (see the README)"
            )
        return path
    path = Path(weights)
    if path.suffix != ".json":
        path = path.with_suffix(".json")
    if not path.exists():
        raise ValueError(f"PFN weights config {path} does not exist")
    return path


def _check_sha256(path, expected, source):
    if _sha256(path) != str(expected).strip().lower():
        raise ValueError(
            f"{path} does not match the sha256 {source}: the weights are corrupted or were "
            "replaced; reinstall the package or re-export them with "
            "`python -m overparam_sklearn.pfn.train --export`"
        )


def _sidecar_sha256(path):
    """The hash in ``<file>.sha256`` beside ``path`` (``sha256sum`` format), or None."""
    sidecar = path.with_name(path.name + ".sha256")
    if not sidecar.exists():
        return None, sidecar
    text = sidecar.read_text().split()
    if not text:
        raise ValueError(f"{sidecar} is empty; re-export the weights or delete it")
    return text[0], sidecar


def _files_version(json_path):
    """(mtime, size) of the files a load reads: part of the cache keys, so that weights replaced
    or damaged on disk after a first load are read (and verified) again."""
    json_path = Path(json_path)
    files = [json_path, json_path.with_suffix(".pt"), json_path.parent / "manifest.json"]
    files += [f.with_name(f.name + ".sha256") for f in files[:2]]
    out = []
    for f in files:
        try:
            st = f.stat()
            out.append((st.st_mtime_ns, st.st_size))
        except OSError:
            out.append(None)
    return tuple(out)


def _load_state(json_path, sha256=None):
    """(config, state dict) of the weights at ``json_path``, verified; cached per file version."""
    return _load_state_cached(str(json_path), sha256, _files_version(json_path))


@functools.lru_cache(maxsize=8)
def _load_state_cached(json_path, sha256, version):
    json_path = Path(json_path)
    pt_path = json_path.with_suffix(".pt")
    if not pt_path.exists():
        raise ValueError(f"PFN weights file {pt_path} does not exist")
    manifest_path = json_path.parent / "manifest.json"
    if manifest_path.exists():
        with open(manifest_path) as fh:
            manifest = json.load(fh)
        for p in (json_path, pt_path):
            expected = manifest.get(p.name)
            if expected is None:
                raise ValueError(
                    f"{p.name} is not listed in {manifest_path}; it cannot be verified"
                )
            _check_sha256(p, expected, f"in {manifest_path}")
    elif json_path.parent == WEIGHTS_DIR:
        raise ValueError(f"{manifest_path} is missing; the shipped PFN weights cannot be verified")
    for p in (json_path, pt_path):
        expected, sidecar = _sidecar_sha256(p)
        if expected is not None:
            _check_sha256(p, expected, f"in {sidecar}")
    if sha256 is not None:
        _check_sha256(pt_path, sha256, "given as sha256=")
    for p in (json_path, pt_path):
        if p.stat().st_size == 0:
            raise ValueError(f"PFN weights file {p} is empty; re-export the weights")
    try:
        with open(json_path) as fh:
            config = json.load(fh)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ValueError(
            f"PFN weights config {json_path} is not valid JSON ({exc}); it is "
            "truncated or not an exported config"
        ) from None
    try:
        state = torch.load(pt_path, map_location="cpu", weights_only=True)
    except (EOFError, RuntimeError, OSError, ValueError) as exc:
        raise ValueError(
            f"PFN weights file {pt_path} cannot be read ({type(exc).__name__}: "
            f"{str(exc)[:120]}); it is truncated or not a file written by "
            "`python -m overparam_sklearn.pfn.train --export`"
        ) from None
    if not isinstance(config, dict) or "task" not in config or not isinstance(state, dict):
        raise ValueError(f"{json_path} / {pt_path} are not exported PFN weights")
    return config, state


def _load_model(json_path, device, dtype="float32", sha256=None):
    """(config, model in eval mode) on ``device``; cached per file version."""
    return _load_model_cached(str(json_path), device, dtype, sha256, _files_version(json_path))


@functools.lru_cache(maxsize=8)
def _load_model_cached(json_path, device, dtype, sha256, version):
    config, state = _load_state(json_path, sha256)
    model = build_model(config, state).to(torch.device(device), resolve_dtype(dtype))
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return config, model


def load_pfn(weights=None, task="regression", device="cpu", sha256=None):
    """Load a PFN (config dict, :class:`~overparam_sklearn.pfn.model.PFNTransformer` in eval mode).

    Parameters
    ----------
    weights : str, Path or None, default=None
        None for the shipped model of ``task``, or the path of a ``.json`` config written by
        ``python -m overparam_sklearn.pfn.train --export`` (its ``.pt`` beside it).
    task : {"regression", "classification"}, default="regression"
        Which shipped model ``weights=None`` means.
    device : str, default="cpu"
    sha256 : str or None, default=None
        The expected sha256 of the ``.pt`` file; a mismatch raises ``ValueError``.

    Returns
    -------
    config : dict
    model : PFNTransformer

    Notes
    -----
    The files are verified against every hash available: a ``manifest.json`` in the same
    directory, ``<file>.sha256`` files beside them (both written by ``--export``), and
    ``sha256``. Tensors are loaded with ``torch.load(..., weights_only=True)``; an empty,
    truncated or otherwise unreadable file raises ``ValueError``.
    """
    path = _resolve_weights(weights, task)
    return _load_model(str(path), str(torch.device(device)), sha256=sha256)
