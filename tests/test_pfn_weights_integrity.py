"""PFN weights given by path: hashes written by --export, verified by load_pfn (issue 14)."""

import hashlib
import pickle
import shutil

import numpy as np
import pytest

from overparam_sklearn import PFNRegressor
from overparam_sklearn.pfn import load_pfn
from overparam_sklearn.pfn.estimator import WEIGHTS_DIR
from overparam_sklearn.pfn.train import PRESETS, export_weights, train


def _copy_shipped(tmp_path):
    """The shipped regression weights copied on their own (no manifest, no .sha256 files)."""
    for suffix in (".pt", ".json"):
        shutil.copy(WEIGHTS_DIR / f"regression{suffix}", tmp_path / f"regression{suffix}")
    return tmp_path / "regression.json"


def _flip_a_byte(path, offset=-100):
    data = bytearray(path.read_bytes())
    data[offset] ^= 0x40
    path.write_bytes(bytes(data))


def test_export_writes_sha256_beside_the_weights(tmp_path):
    config = dict(PRESETS["regression"], d_model=16, n_layers=1, n_heads=2, d_ff=16, n_bars=20,
                  steps=1, warmup=1, min_len=40, max_len=50, curriculum_steps=1,
                  tokens_per_batch=120, eval_every=100, d_max=4, border_samples=2000,
                  val_sizes=[5])
    train(config, tmp_path / "run", verbose=0)
    pt, js = export_weights(tmp_path / "run", tmp_path / "w", "tiny")
    for f in (pt, js):
        digest, name = (f.parent / (f.name + ".sha256")).read_text().split()
        assert name == f.name and digest == hashlib.sha256(f.read_bytes()).hexdigest()
    # copied on their own (without the manifest), the files are still verified
    alone = tmp_path / "alone"
    alone.mkdir()
    for f in (pt, js):
        shutil.copy(f, alone / f.name)
        shutil.copy(f.parent / (f.name + ".sha256"), alone / (f.name + ".sha256"))
    config_loaded, _ = load_pfn(str(alone / "tiny.json"))
    assert config_loaded["d_model"] == 16
    _flip_a_byte(alone / "tiny.pt")
    with pytest.raises(ValueError, match=r"does not match the sha256 in .*tiny\.pt\.sha256"):
        load_pfn(str(alone / "tiny.json"))


def test_explicit_sha256(tmp_path):
    js = _copy_shipped(tmp_path)
    good = hashlib.sha256(js.with_suffix(".pt").read_bytes()).hexdigest()
    config, _ = load_pfn(str(js), sha256=good)
    assert config["task"] == "regression"
    with pytest.raises(ValueError, match="given as sha256="):
        load_pfn(str(js), sha256="0" * 64)
    # a flipped bit in a file without any hash beside it: caught by the explicit hash
    _flip_a_byte(js.with_suffix(".pt"))
    with pytest.raises(ValueError, match="sha256"):
        load_pfn(str(js), sha256=good)


@pytest.mark.parametrize("damage", ["empty", "truncated", "not_json"])
def test_unreadable_weight_files_get_a_clear_error(tmp_path, damage):
    js = _copy_shipped(tmp_path)
    pt = js.with_suffix(".pt")
    if damage == "empty":
        pt.write_bytes(b"")
        pattern = "is empty"
    elif damage == "truncated":
        pt.write_bytes(pt.read_bytes()[: pt.stat().st_size // 2])
        pattern = "cannot be read.*truncated"
    else:
        js.write_text('{"task": "regr')
        pattern = "not valid JSON"
    with pytest.raises(ValueError, match=pattern):
        load_pfn(str(js))
    X = np.random.RandomState(0).randn(10, 2)
    with pytest.raises(ValueError, match=pattern):
        PFNRegressor(weights=str(js), device="cpu").fit(X, X[:, 0])


def test_shipped_weights_are_stored_by_name():
    # a fitted PFN names the shipped weights, it does not store the install path, so its pickle
    # works after the package moves
    X = np.random.RandomState(0).randn(12, 2)
    reg = PFNRegressor(1, device="cpu", random_state=0).fit(X, X[:, 0])
    assert reg.weights_ == "regression"
    assert str(WEIGHTS_DIR).encode() not in pickle.dumps(reg)
    assert not hasattr(reg, "weights_path_")
