"""Tests of PFN training: the split forward pass, lower-variance targets, checkpoints, resume,
averaging, export, and the continuation of exported weights."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy import integrate, stats
from sklearn.datasets import load_iris

from overparam_sklearn import PFNClassifier, PFNRegressor
from overparam_sklearn.pfn import load_pfn
from overparam_sklearn.pfn.model import BarDistribution, PFNTransformer
from overparam_sklearn.pfn.priors import get_prior, rbf_gp_predictive_sample
from overparam_sklearn.pfn.train import (
    PRESETS,
    _loss,
    average_checkpoints,
    export_weights,
    main,
    sample_batch,
    train,
)

REPO = Path(__file__).resolve().parents[1]


def _gen(seed):
    g = torch.Generator()
    g.manual_seed(seed)
    return g


def _tiny_model(task="regression"):
    borders = torch.linspace(-4, 4, 33) if task == "regression" else None
    model = PFNTransformer(task, 3, d_model=16, n_layers=3, n_heads=2, d_ff=32, borders=borders)
    with torch.no_grad():
        g = _gen(3)
        for p in model.parameters():
            p.copy_(0.3 * torch.randn(p.shape, generator=g))
    return model.eval()


def _tiny_config(**kw):
    c = dict(PRESETS["regression"])
    c.update(
        d_model=16,
        n_layers=1,
        n_heads=2,
        d_ff=16,
        n_bars=20,
        steps=4,
        warmup=2,
        min_len=40,
        max_len=60,
        curriculum_steps=2,
        tokens_per_batch=240,
        ckpt_every=2,
        eval_every=100,
        d_max=4,
        border_samples=2000,
        val_sizes=[5],
        val_batch=4,
    )
    c.update(kw)
    return c


def _same_state(a, b, atol=0.0):
    pairs = zip(a.items(), b.items(), strict=True)
    for (k, v), (k2, v2) in pairs:
        assert k == k2
        torch.testing.assert_close(v, v2, rtol=0, atol=atol)


# ------------------------------------------------------------------------------------------------
# cheaper steps


@pytest.mark.parametrize("task", ["regression", "classification"])
def test_split_forward_gives_the_masked_forward_logits(task):
    model = _tiny_model(task)
    g = _gen(4)
    x = torch.randn(3, 14, 3, generator=g)
    y = torch.randn(3, 14, generator=g) if task == "regression" else torch.randint(0, 4, (3, 14))
    y = y.float()
    with torch.no_grad():
        full = model(x, y, torch.full((3,), 6))
        split = model.forward_split(x, y, 6)
    assert split.shape == (3, 8, full.shape[-1])
    torch.testing.assert_close(split, full[:, 6:], rtol=1e-5, atol=1e-5)
    # the loss takes the split path for a shared context size and agrees with the masked one
    batch = {"x": x, "y": y, "n_ctx": torch.full((3,), 6)}
    mixed = {"x": x, "y": y, "n_ctx": torch.tensor([6, 6, 5])}
    with torch.no_grad():
        masked = model(x, y, batch["n_ctx"])
        if task == "regression":
            ref = model.bar.nll(masked[:, 6:], y[:, 6:]).mean()
        else:
            ref = torch.nn.functional.cross_entropy(masked[:, 6:].transpose(1, 2), y[:, 6:].long())
        torch.testing.assert_close(_loss(model, batch), ref, rtol=1e-5, atol=1e-6)
        assert torch.isfinite(_loss(model, mixed))


def test_one_context_size_per_batch():
    cfg = _tiny_config(ctx_per_batch=True)
    sizes = set()
    for step in range(6):
        b = sample_batch(cfg, step)
        assert torch.all(b["n_ctx"] == b["n_ctx"][0])
        assert 1 <= int(b["n_ctx"][0]) <= b["x"].shape[1] - cfg["min_queries"]
        sizes.add(int(b["n_ctx"][0]))
    assert len(sizes) > 1
    b = sample_batch(_tiny_config(ctx_per_batch=False), 0)
    assert len(set(b["n_ctx"].tolist())) > 1


# ------------------------------------------------------------------------------------------------
# lower-variance targets


def test_normal_bucket_masses_match_quadrature_and_give_the_expected_nll():
    borders = torch.linspace(-3, 3, 13, dtype=torch.float64)
    bar = BarDistribution(borders.float())
    bar.borders = borders
    mu = torch.tensor([0.3, -2.5, 2.9], dtype=torch.float64)
    sd = torch.tensor([0.7, 0.4, 1.5], dtype=torch.float64)
    masses = bar.normal_masses(mu, sd)
    # training computes them in float32 (fast); close enough for a target
    torch.testing.assert_close(
        bar.normal_masses(mu.float(), sd.float()).double(), masses, rtol=0, atol=1e-6
    )
    b = borders.numpy()
    edges = np.concatenate([[-np.inf], b[1:-1], [np.inf]])
    for i in range(3):
        pdf = stats.norm(float(mu[i]), float(sd[i])).pdf
        pairs = zip(edges[:-1], edges[1:], strict=True)
        ref = [integrate.quad(pdf, lo, hi)[0] for lo, hi in pairs]
        np.testing.assert_allclose(masses[i].numpy(), ref, atol=1e-9)
    # E_{y ~ N(mu, sd^2)} [bar NLL(y)] = -sum_i mass_i log p_i + (a term free of the logits):
    # the difference between two networks' expected NLLs equals the difference of soft CEs
    g = _gen(11)
    la, lb = torch.randn(2, 3, 12, generator=g, dtype=torch.float64)

    def expected_nll(logits, i):
        def f(t):
            return float(bar.nll(logits[i : i + 1], torch.tensor([t], dtype=torch.float64))[0])

        pdf = stats.norm(float(mu[i]), float(sd[i])).pdf
        pts = list(b[1:-1])
        return sum(
            integrate.quad(lambda t: f(t) * pdf(t), lo, hi, limit=200)[0]
            for lo, hi in zip([-np.inf] + pts, pts + [np.inf], strict=True)
        )

    for i in range(3):
        soft = [-(masses[i] * torch.log_softmax(lg[i], -1)).sum() for lg in (la, lb)]
        assert expected_nll(la, i) - expected_nll(lb, i) == pytest.approx(
            float(soft[0] - soft[1]), abs=1e-6
        )


def test_gp_predictive_targets_are_the_exact_posterior_predictive():
    g = _gen(12)
    B, N, D = 3, 9, 2
    x = torch.randn(B, N, D, generator=g, dtype=torch.float64)
    inv_l = torch.tensor([[1.0, 0.5], [2.0, 0.0], [0.7, 0.7]], dtype=torch.float64)
    s = torch.tensor([1.0, 0.5, 2.0], dtype=torch.float64)
    noise = torch.tensor([0.1, 0.3, 0.05], dtype=torch.float64)
    n_ctx = torch.tensor([4, 6, 1])
    y, mu, sd = rbf_gp_predictive_sample(g, x, inv_l, s, noise, n_ctx)
    for b in range(B):
        c = int(n_ctx[b])
        xs = x[b] * inv_l[b]
        K = s[b] ** 2 * torch.exp(-0.5 * torch.cdist(xs, xs) ** 2)
        Ky = K + (noise[b] ** 2 + 1e-6) * torch.eye(N, dtype=torch.float64)
        A = Ky[c:, :c] @ torch.linalg.inv(Ky[:c, :c])
        torch.testing.assert_close(mu[b, c:], A @ y[b, :c], rtol=1e-7, atol=1e-8)
        var = torch.diagonal(Ky[c:, c:] - A @ Ky[:c, c:])
        torch.testing.assert_close(sd[b, c:] ** 2, var, rtol=1e-7, atol=1e-9)


def test_gp_predictive_targets_with_a_linear_part_are_exact():
    # the sum kernel s^2 k_RBF + sum_j a_j^2 x_j x'_j: exact posterior written out directly
    g = _gen(14)
    B, N, D = 2, 10, 3
    x = torch.randn(B, N, D, generator=g, dtype=torch.float64)
    inv_l = torch.tensor([[1.0, 0.0, 0.5], [0.3, 0.3, 0.3]], dtype=torch.float64)
    s = torch.tensor([0.2, 1.0], dtype=torch.float64)
    a = torch.tensor([[2.0, 0.5, 0.0], [0.0, 1.0, 1.0]], dtype=torch.float64)
    noise = torch.tensor([0.1, 0.5], dtype=torch.float64)
    n_ctx = torch.tensor([5, 3])
    y, mu, sd = rbf_gp_predictive_sample(g, x, inv_l, s, noise, n_ctx, linear_sd=a)
    for b in range(B):
        c = int(n_ctx[b])
        xs = x[b] * inv_l[b]
        K = s[b] ** 2 * torch.exp(-0.5 * torch.cdist(xs, xs) ** 2) + (x[b] * a[b] ** 2) @ x[b].T
        Ky = K + (noise[b] ** 2 + 1e-6) * torch.eye(N, dtype=torch.float64)
        A = Ky[c:, :c] @ torch.linalg.inv(Ky[:c, :c])
        torch.testing.assert_close(mu[b, c:], A @ y[b, :c], rtol=1e-7, atol=1e-8)
        var = torch.diagonal(Ky[c:, c:] - A @ Ky[:c, c:])
        torch.testing.assert_close(sd[b, c:] ** 2, var, rtol=1e-7, atol=1e-9)
    # and the draws follow the sum kernel: the linear part shows in the empirical covariance
    from overparam_sklearn.pfn.priors import rbf_gp_sample

    xx = x[:1].expand(4000, N, D)
    f, _ = rbf_gp_sample(g, xx, inv_l[:1].expand(4000, D), s[:1].expand(4000),
                         torch.zeros(4000, dtype=torch.float64), linear_sd=a[:1].expand(4000, D))
    K0 = s[0] ** 2 * torch.exp(-0.5 * torch.cdist(x[0] * inv_l[0], x[0] * inv_l[0]) ** 2)
    K0 = K0 + (x[0] * a[0] ** 2) @ x[0].T
    emp = f.T @ f / 4000
    assert float((emp - K0).abs().max() / K0.abs().max()) < 0.1


@pytest.mark.parametrize("name", ["gp_hyper", "gp_fixed", "bnn", "regression"])
def test_regression_priors_carry_standardised_predictive_targets(name):
    n_ctx = torch.tensor([5, 20, 2, 40])
    b = get_prior(name)(_gen(13), 4, 50, n_ctx, 5)
    assert b["y_mu"].shape == b["y_sd"].shape == (4, 50)
    assert torch.isfinite(b["y_mu"]).all() and bool((b["y_sd"] > 0).all())
    # the drawn query targets are plausible under their predictive (standardised residuals)
    q = torch.arange(50)[None, :] >= n_ctx[:, None]
    r = ((b["y"] - b["y_mu"]) / b["y_sd"])[q]
    assert 0.5 < float(r.std()) < 1.5 and abs(float(r.mean())) < 0.3


# ------------------------------------------------------------------------------------------------
# training loop, checkpoints, resume, averaging, export


def test_training_is_deterministic_and_resume_is_exact(tmp_path):
    cfg = dict(prefetch=True, ctx_per_batch=True, target="predictive")
    straight = train(_tiny_config(**cfg), tmp_path / "a", verbose=0)
    train(_tiny_config(steps=2, **cfg), tmp_path / "b", verbose=0)
    resumed = train(_tiny_config(steps=4, eval_every=3, **cfg), tmp_path / "b", verbose=0)
    _same_state(straight.state_dict(), resumed.state_dict())
    # the curriculum: later batches are longer
    b0, b3 = sample_batch(_tiny_config(), 0), sample_batch(_tiny_config(), 3)
    assert b0["x"].shape[1] <= b3["x"].shape[1]
    hist = json.loads((tmp_path / "a" / "history.json").read_text())
    assert [h["step"] for h in hist] == [1, 2, 3, 4]
    assert all(h["wall"] >= 0 for h in hist)
    # the run exported its weights with a manifest; export_weights writes the same elsewhere
    assert (tmp_path / "a" / "export" / "manifest.json").exists()
    pt, js = export_weights(tmp_path / "a", tmp_path / "w", "tiny")
    state = torch.load(pt, weights_only=True)
    assert all(isinstance(v, torch.Tensor) for v in state.values())
    config, model = load_pfn(str(js))
    assert config["d_model"] == 16 and model.task == "regression"
    _same_state(model.state_dict(), straight.state_dict())


def test_legacy_single_file_checkpoint_resumes(tmp_path):
    # a run directory of the earlier format (one checkpoint.pt) resumes to the same weights
    straight = train(_tiny_config(), tmp_path / "a", verbose=0)
    train(_tiny_config(steps=2), tmp_path / "b", verbose=0)
    d = tmp_path / "b" / "ckpt" / "step-0000002"
    st = json.loads((d / "state.json").read_text())
    del st["config"]["val_sizes"]  # a key added to the presets after the checkpoint was written
    legacy = {
        "config": st["config"],
        "model": torch.load(d / "model.pt", weights_only=True)["model"],
        "optimizer": torch.load(d / "optim.pt", weights_only=True)["optimizer"][0],
        "step": 2,
        "history": st["history"],
    }
    (tmp_path / "c").mkdir()
    torch.save(legacy, tmp_path / "c" / "checkpoint.pt")
    resumed = train(_tiny_config(steps=4), tmp_path / "c", verbose=0)
    _same_state(straight.state_dict(), resumed.state_dict())


def test_averaging_of_the_last_checkpoints(tmp_path):
    train(_tiny_config(steps=6, ckpt_every=1, avg_last=3), tmp_path / "a", verbose=0)
    dirs = sorted((tmp_path / "a" / "ckpt").iterdir())
    assert [d.name for d in dirs] == ["step-0000004", "step-0000005", "step-0000006"]
    states = [torch.load(d / "model.pt", weights_only=True)["model"] for d in dirs]
    avg, steps = average_checkpoints(tmp_path / "a", 3)
    assert steps == [4, 5, 6]
    w = "layers.0.q.weight"
    torch.testing.assert_close(avg[w], (states[0][w] + states[1][w] + states[2][w]) / 3)
    exported = torch.load(tmp_path / "a" / "export" / "regression.pt", weights_only=True)
    torch.testing.assert_close(exported[w], avg[w])
    meta = json.loads((tmp_path / "a" / "export" / "regression.json").read_text())
    assert meta["training"]["averaged_steps"] == [4, 5, 6]
    assert np.isfinite(meta["training"]["validation"]["5"])


@pytest.mark.parametrize("opt", ["adamw", "muon"])
def test_optimisers_and_bf16_autocast_train(tmp_path, opt):
    cfg = _tiny_config(steps=3, optimizer=opt, amp="bf16", ctx_per_batch=True)
    model = train(cfg, tmp_path / opt, verbose=0)
    assert all(torch.isfinite(p).all() for p in model.parameters())
    hist = json.loads((tmp_path / opt / "history.json").read_text())
    assert all(np.isfinite(h["loss"]) for h in hist)
    with pytest.raises(ValueError, match="optimizer"):
        train(_tiny_config(optimizer="sgd"), tmp_path / "x", verbose=0)


def test_time_budget_sets_the_number_of_steps(tmp_path):
    cfg = _tiny_config(steps=10**6, time_budget=3.0, budget_probe_steps=3, warmup=5)
    train(cfg, tmp_path / "a", verbose=0, max_seconds=30)
    st = json.loads((tmp_path / "a" / "config.json").read_text())
    hist = json.loads((tmp_path / "a" / "history.json").read_text())
    ck = json.loads((tmp_path / "a" / "latest.json").read_text())
    steps = ck["step"]
    assert 4 <= steps < 10**6 and hist[-1]["step"] == steps
    assert (tmp_path / "a" / "export" / "regression.pt").exists()
    assert st["steps"] == 10**6  # config.json is written at the start; the schedule is stored
    state = json.loads((tmp_path / "a" / ck["dir"] / "state.json").read_text())
    assert state["config"]["steps"] == steps and "budget_steps" in state["config"]


def test_init_from_exported_weights(tmp_path):
    train(_tiny_config(steps=2), tmp_path / "a", verbose=0)
    js = tmp_path / "a" / "export" / "regression.json"
    ref, _ = load_pfn(str(js))
    # continue: same architecture from the weights (the config's sizes are ignored), the exported
    # weights at step 0 (their validation is recorded first), a new optimiser and schedule
    cfg = _tiny_config(steps=0, d_model=32, eval_at_start=True, seed=5)
    model = train(cfg, tmp_path / "b", verbose=0, init_from=str(js))
    _same_state(model.state_dict(), load_pfn(str(js))[1].state_dict())
    hist = json.loads((tmp_path / "b" / "history.json").read_text())
    assert hist[0]["step"] == 0 and "val" in hist[0]
    conf = json.loads((tmp_path / "b" / "config.json").read_text())
    assert conf["d_model"] == 16 and conf["init_from"]["sha256"]
    model = train(dict(cfg, steps=2), tmp_path / "b", verbose=0)
    assert model.layers[0].q.weight.shape == (16, 16)
    with pytest.raises(ValueError, match="classification"):
        train(dict(PRESETS["classification"]), tmp_path / "c", init_from=str(js))


def test_command_line_trains_and_exports(tmp_path):
    args = [
        "--preset",
        "classification",
        "--out",
        str(tmp_path / "run"),
        "--steps",
        "2",
        "--verbose",
        "0",
        "--set",
        "d_model=16",
        "n_layers=1",
        "d_ff=16",
        "n_heads=2",
        "val_sizes=[5]",
        "tokens_per_batch=120",
        "min_len=40",
        "max_len=50",
    ]
    assert main(args) == 0
    assert main(["--out", str(tmp_path / "run"), "--export", str(tmp_path / "w")]) == 0
    manifest = json.loads((tmp_path / "w" / "manifest.json").read_text())
    assert set(manifest) == {"classification.pt", "classification.json"}
    X, y = load_iris(return_X_y=True)
    clf = PFNClassifier(
        n_estimators=1, weights=str(tmp_path / "w" / "classification.json"), device="cpu"
    )
    assert clf.fit(X, y).predict_proba(X[:4]).shape == (4, 3)
    with pytest.raises(SystemExit):
        main(["--out", str(tmp_path / "x"), "--set", "no_such_key=1"])


def test_one_shot_run_killed_resumed_exported_and_loaded(tmp_path):
    """The GPU recipe end to end on the CPU with tiny settings: a run killed (SIGKILL) after a
    checkpoint resumes, finishes, averages, exports with a manifest, and the estimator loads it."""
    out = tmp_path / "run"
    sets = [
        "d_model=16",
        "n_layers=1",
        "n_heads=2",
        "d_ff=16",
        "n_bars=20",
        "d_max=4",
        "border_samples=2000",
        "val_sizes=[5]",
        "val_batch=4",
        "min_len=40",
        "max_len=60",
        "tokens_per_batch=240",
        "curriculum_steps=2",
        "warmup=2",
        "ckpt_every=1",
        "avg_last=2",
        'amp="bf16"',
        'device="cpu"',
    ]
    cmd = [sys.executable, "-m", "overparam_sklearn.pfn.train", "--out", str(out)]
    cmd += ["--steps", "100000", "--threads", "1", "--verbose", "0", "--set", *sets]
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(REPO))
    proc = subprocess.Popen(cmd, cwd=REPO, env=env)
    try:
        deadline = time.time() + 120
        while time.time() < deadline:
            latest = out / "latest.json"
            if latest.exists() and json.loads(latest.read_text())["step"] >= 3:
                break
            assert proc.poll() is None, "the run stopped early"
            time.sleep(0.2)
        else:
            pytest.fail("the run wrote no checkpoint")
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    killed_at = json.loads((out / "latest.json").read_text())["step"]
    # SIGTERM instead stops after the current step with a checkpoint
    proc = subprocess.Popen(cmd, cwd=REPO, env=env)
    time.sleep(0.5)
    while json.loads((out / "latest.json").read_text())["step"] <= killed_at + 1:
        assert proc.poll() is None, "the resumed run stopped early"
        time.sleep(0.2)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=60) == 0
    killed_at = json.loads((out / "latest.json").read_text())["step"]
    hist = json.loads((out / "history.json").read_text())
    assert hist[-1]["step"] == killed_at
    assert not (out / "export").exists()
    for d in (out / "ckpt").iterdir():  # every kept checkpoint is complete and small
        assert (d / "model.pt").stat().st_size < 16 * 2**20
        assert (d / "optim.pt").stat().st_size < 16 * 2**20
    assert main(["--out", str(out), "--steps", str(killed_at + 3), "--verbose", "0"]) == 0
    hist = json.loads((out / "history.json").read_text())
    assert hist[-1]["step"] == killed_at + 3
    # settings given when the run started and not repeated on resume are kept (not the preset's)
    state = json.loads(
        (out / json.loads((out / "latest.json").read_text())["dir"] / "state.json").read_text()
    )
    assert state["config"]["avg_last"] == 2 and state["config"]["ckpt_every"] == 1
    manifest = json.loads((out / "export" / "manifest.json").read_text())
    assert set(manifest) == {"regression.pt", "regression.json"}
    reg = PFNRegressor(n_estimators=1, weights=str(out / "export" / "regression.json"))
    X = np.random.default_rng(0).normal(size=(30, 3))
    pred = reg.fit(X, X[:, 0]).predict(X[:5])
    assert pred.shape == (5,) and np.isfinite(pred).all()


# ------------------------------------------------------------------------------------------------
# tabular priors


TABULAR = [
    "scm",
    "tree",
    "scm_classification",
    "tree_classification",
    "tabular_regression",
    "tabular_classification",
    "linear_gp",
    "linear_classification",
    "tabular_linear_regression",
    "tabular_linear_classification",
]


@pytest.mark.parametrize("name", TABULAR)
def test_tabular_priors_are_reproducible_and_well_formed(name):
    prior = get_prior(name)
    B, N, D = 12, 80, 6
    # (a one-point context standardises every feature to zero, and then the target is noise)
    n_ctx = torch.tensor([5, 20, 2, 40] * 3)
    a = prior(_gen(21), B, N, n_ctx, D)
    b = prior(_gen(21), B, N, n_ctx, D)
    c = prior(_gen(22), B, N, n_ctx, D)
    assert set(a) == set(b)
    for k in a:
        assert torch.equal(a[k], b[k])
    assert not torch.equal(a["y"], c["y"])
    assert a["x"].shape == (B, N, D) and a["y"].shape == (B, N)
    assert a["x"].dtype == a["y"].dtype == torch.float32
    for k in ("x", "y", "y_mu", "y_sd"):
        if k in a:
            assert torch.isfinite(a[k]).all()
    for i, d in enumerate(a["n_features"].tolist()):
        assert 1 <= d <= D and torch.all(a["x"][i, :, d:] == 0)
    y = a["y"]
    if name.endswith("classification"):
        assert torch.equal(y, y.round()) and y.min() >= 0 and y.max() <= 9
        # non-degenerate: most datasets have at least two classes among their points
        assert sum(len(torch.unique(y[i])) >= 2 for i in range(B)) >= B - 1
    else:
        assert int((y.std(1) > 0.1).sum()) >= B - 1  # non-constant targets
        q = torch.arange(N)[None, :] >= n_ctx[:, None]
        assert bool((a["y_sd"][q] > 0).all())


def test_tabular_priors_have_few_valued_features_and_depend_on_the_inputs():
    g = _gen(23)
    b = get_prior("scm")(g, 32, 200, torch.full((32,), 100), 6)
    d = b["n_features"].tolist()
    levels = [len(torch.unique(b["x"][i, :, j])) for i in range(32) for j in range(d[i])]
    few = sum(2 <= k <= 10 for k in levels)
    assert 0.1 < few / len(levels) < 0.6  # some categorical-like features, mostly continuous
    # the target is predictable from the features on average: a random forest beats the mean
    from sklearn.ensemble import RandomForestRegressor

    for name in ("scm", "tree"):
        b = get_prior(name)(_gen(24), 8, 300, torch.full((8,), 200), 4)
        r2 = []
        for i in range(8):
            x, y = b["x"][i].numpy(), b["y"][i].numpy()
            rf = RandomForestRegressor(50, random_state=0).fit(x[:200], y[:200])
            r2.append(1 - np.mean((rf.predict(x[200:]) - y[200:]) ** 2) / np.var(y[200:]))
        assert np.median(r2) > 0.2, (name, r2)


def test_linear_priors_are_mostly_linear_and_reach_low_signal_to_noise():
    # what the linear priors add to the tabular mixtures: data where a linear model does well,
    # and noisy data (R^2 < 0.3) that the other regression priors rarely draw
    from sklearn.linear_model import LogisticRegression, RidgeCV

    def r2(name):
        b = get_prior(name)(_gen(26), 48, 300, torch.full((48,), 200), 5)
        # standardised query residuals under the exact predictive (with a small context they
        # are strongly correlated within a dataset through the unknown weights, hence 200)
        r = ((b["y"] - b["y_mu"]) / b["y_sd"])[:, 200:]
        assert abs(float(r.mean())) < 0.15 and 0.85 < float(r.std()) < 1.15, name
        # the best possible test R^2 (the exact predictive's), and RidgeCV's
        best = 1 - b["y_sd"][:, 200:].pow(2).mean(1) / b["y"][:, 200:].var(1)
        ridge = []
        for i in range(48):
            d = int(b["n_features"][i])
            x, y = b["x"][i, :, :d].numpy(), b["y"][i].numpy()
            ridge.append(RidgeCV().fit(x[:200], y[:200]).score(x[200:], y[200:]))
        return best.numpy(), np.array(ridge)

    (best_lin, ridge_lin), (best_gp, ridge_gp) = r2("linear_gp"), r2("gp_hyper")
    assert np.median(ridge_lin) > 0.6 and np.median(ridge_lin) > np.median(ridge_gp) + 0.1
    low_lin, low_gp = np.mean(best_lin < 0.3), np.mean(best_gp < 0.3)
    assert low_lin > 0.1 and low_lin > 2 * low_gp, (low_lin, low_gp)

    def logreg_shortfall(name):
        # median of (Bayes accuracy from y_prob) - (LogisticRegression's test accuracy)
        b = get_prior(name)(_gen(27), 24, 300, torch.full((24,), 200), 5)
        gap = []
        for i in range(24):
            d = int(b["n_features"][i])
            x, y = b["x"][i, :, :d].numpy(), b["y"][i].numpy()
            if len(np.unique(y[:200])) > 1:
                clf = LogisticRegression(max_iter=1000).fit(x[:200], y[:200])
                bayes = float(b["y_prob"][i, 200:].max(-1).values.mean())
                gap.append(bayes - clf.score(x[200:], y[200:]))
        return np.median(gap)

    # a linear classifier is nearly Bayes-optimal on the linear prior, not on the GP/MLP one
    lin, other = logreg_shortfall("linear_classification"), logreg_shortfall("classification")
    assert lin < 0.06 and other > lin + 0.05, (lin, other)


def test_scm_noise_target_is_exact_where_offered():
    # datasets whose features include no effect of the target carry y ~ N(y_mu, y_sd^2) with
    # standardised residuals; the others fall back to a point mass at the drawn target
    b = get_prior("scm")(_gen(25), 64, 120, torch.full((64,), 60), 5)
    q = slice(60, 120)
    point = (b["y_sd"][:, q] <= 1e-6).all(1)
    assert 0 < int(point.sum()) < 64
    assert torch.equal(b["y_mu"][point][:, q], b["y"][point][:, q])
    r = ((b["y"] - b["y_mu"]) / b["y_sd"])[~point][:, q]
    assert abs(float(r.mean())) < 0.1 and 0.85 < float(r.std()) < 1.15


# ------------------------------------------------------------------------------------------------
# lower-variance classification targets


def test_cut_masses_match_monte_carlo():
    from overparam_sklearn.pfn.priors import cut_masses

    g = _gen(30)
    mu = torch.randn(2, 3, generator=g, dtype=torch.float64)
    sd = 0.2 + torch.rand(2, 3, generator=g, dtype=torch.float64)
    cuts = torch.tensor([[-0.5, 0.1, 0.8], [-1.0, -0.9, 1.2]], dtype=torch.float64)
    p = cut_masses(mu, sd, cuts)
    assert p.shape == (2, 3, 4)
    torch.testing.assert_close(p.sum(-1), torch.ones(2, 3, dtype=torch.float64))
    draws = mu[..., None] + sd[..., None] * torch.randn(2, 3, 200_000, generator=g, dtype=mu.dtype)
    labels = (draws[..., None] > cuts[:, None, None, :]).sum(-1)
    freq = torch.nn.functional.one_hot(labels, 4).double().mean(2)
    torch.testing.assert_close(freq, p, rtol=0, atol=4e-3)


@pytest.mark.parametrize(
    "name",
    ["classification", "scm_classification", "tree_classification", "linear_classification"],
)
def test_classification_priors_carry_the_labels_distribution(name):
    # y_prob is the distribution of each drawn label given the latent function: the probability
    # it gives the drawn label has the expectation sum_k p_k^2 (zero mean of s below) only where
    # it is the labels' own distribution; a wrong class permutation or temperature biases s
    cfg = dict(PRESETS["classification"], prior=name)
    s, s_shuffled = [], []
    for step in range(30):
        b = sample_batch(cfg, step, n_points=150, batch=8, n_ctx=100)
        p, lab = b["y_prob"], b["y"].long()
        assert p.shape == (8, 150, 10) and torch.isfinite(p).all()
        torch.testing.assert_close(p.sum(-1), torch.ones(8, 150), rtol=0, atol=1e-5)
        s.append((p.gather(-1, lab[..., None])[..., 0] - (p**2).sum(-1)).flatten())
        rolled = p.roll(1, dims=-1)
        s_shuffled.append((rolled.gather(-1, lab[..., None])[..., 0] - (p**2).sum(-1)).flatten())
    s, s_shuffled = torch.cat(s), torch.cat(s_shuffled)
    se = float(s.std()) / len(s) ** 0.5
    assert abs(float(s.mean())) < 4 * se + 2e-3, (float(s.mean()), se)
    assert float(s_shuffled.mean()) < -0.1


def test_predictive_classification_target_is_the_expected_cross_entropy():
    model = _tiny_model("classification")
    batch = sample_batch(
        dict(PRESETS["classification"], d_max=3), 2, n_points=40, batch=3, n_ctx=20
    )
    with torch.no_grad():
        logp = torch.log_softmax(model.forward_split(batch["x"], batch["y"], 20).float(), -1)
        ref = -(batch["y_prob"][:, 20:] * logp).sum(-1).mean()
        torch.testing.assert_close(_loss(model, batch, "predictive"), ref)
        # one-hot masses of the drawn labels give the sampled-target loss
        one_hot = torch.nn.functional.one_hot(batch["y"].long(), 10).float()
        torch.testing.assert_close(
            _loss(model, dict(batch, y_prob=one_hot), "predictive"), _loss(model, batch, "sample")
        )


# ------------------------------------------------------------------------------------------------
# cell tokens


def _tiny_cells(task, **kw):
    from overparam_sklearn.pfn.model import make_network

    borders = torch.linspace(-4, 4, 33) if task == "regression" else None
    cfg = dict(
        task=task, d_max=5, d_model=16, n_layers=2, n_heads=2, d_ff=32, architecture="cells"
    )
    model = make_network(dict(cfg, **kw), borders)
    with torch.no_grad():
        g = _gen(31)
        for p in model.parameters():
            p.copy_(0.3 * torch.randn(p.shape, generator=g))
    return model.eval()


@pytest.mark.parametrize("task", ["regression", "classification"])
@pytest.mark.parametrize("group,thinking", [(2, 3), (1, 0), (5, 1)])
def test_cell_model_split_pass_and_query_independence(task, group, thinking):
    model = _tiny_cells(task, feature_group=group, thinking_rows=thinking)
    g = _gen(32)
    x = torch.randn(3, 14, 5, generator=g)
    y = torch.randn(3, 14, generator=g) if task == "regression" else torch.randint(0, 4, (3, 14))
    y = y.float()
    with torch.no_grad():
        full = model(x, y, torch.tensor([6, 6, 6]))
        split = model.forward_split(x, y, 6)
        torch.testing.assert_close(split, full[:, 6:], rtol=1e-5, atol=1e-5)
        # mixed context sizes: each dataset as if alone
        mixed = model(x, y, torch.tensor([6, 9, 6]))
        torch.testing.assert_close(mixed[1:2, 9:], model.forward_split(x[1:2], y[1:2], 9))
        # a query changes only its own output; the context's targets matter
        x2 = x.clone()
        x2[:, 10] += 1.0
        moved = model.forward_split(x2, y, 6)
        others = [i for i in range(8) if i != 4]
        torch.testing.assert_close(moved[:, others], split[:, others], rtol=0, atol=0)
        assert (moved[:, 4] - split[:, 4]).abs().max() > 1e-3
        y2 = y.clone()
        y2[:, 0] = y2[:, 0] + 1.0
        assert (model.forward_split(x, y2, 6) - split).abs().max() > 1e-3


def test_cell_model_trains_exports_and_predicts(tmp_path):
    cfg = _tiny_config(architecture="cells", feature_group=2, thinking_rows=2, steps=3)
    model = train(cfg, tmp_path / "cells", verbose=0)
    assert type(model).__name__ == "CellPFNTransformer"
    js = tmp_path / "cells" / "export" / "regression.json"
    loaded = load_pfn(str(js))[1]
    _same_state(model.state_dict(), loaded.state_dict())
    rng = np.random.default_rng(0)
    X = rng.normal(size=(40, 3))
    y = X[:, 0] + 0.1 * rng.normal(size=40)
    reg = PFNRegressor(weights=str(js), n_estimators=1, random_state=0).fit(X, y)
    assert np.isfinite(reg.predict(X[:5])).all()
    with pytest.raises(ValueError, match="architecture"):
        train(_tiny_config(architecture="grid"), tmp_path / "bad", verbose=0)


def test_validation_in_chunks_covers_several_mixture_components(monkeypatch):
    from overparam_sklearn.pfn import train as train_mod

    model = _tiny_model()
    config = dict(
        PRESETS["regression"], d_max=3, prior="tabular_regression", val_sizes=[10], val_batch=8
    )
    one = train_mod._validation(model, dict(config))
    # a chunk as large as the set is the one-batch set of the presets (and of shipped runs)
    assert train_mod._validation(model, dict(config, val_chunk=8)) == one
    seen = []
    real = train_mod.sample_batch

    def spy(cfg, step, **kw):
        b = real(cfg, step, **kw)
        seen.append((step, kw["batch"], tuple(b["y"][:, -1].tolist())))
        return b

    monkeypatch.setattr(train_mod, "sample_batch", spy)
    chunked = train_mod._validation(model, dict(config, val_chunk=3))
    assert [(s, n) for s, n, _ in seen] == [(10, 3), (1_000_010, 3), (2_000_010, 2)]
    assert len({y for *_, y in seen}) == 3  # different datasets per chunk
    assert np.isfinite(chunked["10"]) and chunked["10"] != one["10"]
