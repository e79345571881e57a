"""Tests of the data-diet scorers and pruning estimators.

Scores are checked against closed forms (EL2N from the stored networks, GraNd of a linear model,
the last-layer gradient formula), against a per-example backward loop, and against hand-counted
forgetting events; selection against the CCS allocation worked by hand; the label-noise claim of
Paul et al. (2021) as an AUROC on digits with 10% flipped labels.
"""

import pickle

import numpy as np
import pytest
import torch
from grand_reference import _grand_scores_loop
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.datasets import load_digits, make_blobs
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import GridSearchCV
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.utils._param_validation import InvalidParameterError
from torch import nn

from overparam_sklearn import (
    DataDietClassifier,
    DataDietSampler,
    EL2NScorer,
    ForgettingScorer,
    GraNdScorer,
)
from overparam_sklearn.data_diet._mlp import _MLP, _last_linear, _reset_parameters
from overparam_sklearn.data_diet._scores import (
    _forgetting_counts,
    grand_scores,
    grand_scores_last_layer,
)
from overparam_sklearn.data_diet._selection import _ccs_sample, _select

SMALL = dict(n_estimators=2, score_epoch=3, device="cpu",
             module_params={"hidden_layer_sizes": (16,)})


@pytest.fixture(scope="module")
def blobs():
    X, y = make_blobs(n_samples=120, centers=3, n_features=5, cluster_std=3.0, random_state=0)
    return X, y


@pytest.fixture(scope="module")
def noisy_digits():
    X, y = load_digits(return_X_y=True)
    X = X / 16.0
    rng = np.random.RandomState(0)
    flipped = rng.rand(len(y)) < 0.1
    y_noisy = y.copy()
    y_noisy[flipped] = (y[flipped] + rng.randint(1, 10, flipped.sum())) % 10
    return X, y_noisy, flipped


def _softmax(z):
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def _numpy_forward(module, X):
    """The default MLP's forward pass in numpy float64, from its state dict."""
    layers = [m for m in module.modules() if isinstance(m, nn.Linear)]
    h = X
    for i, lin in enumerate(layers):
        h = h @ lin.weight.detach().double().numpy().T + lin.bias.detach().double().numpy()
        if i < len(layers) - 1:
            h = np.maximum(h, 0.0)
    return h


# ------------------------------------------------------------------------------------------
# Scores against closed forms and references
# ------------------------------------------------------------------------------------------


def test_el2n_matches_numpy_closed_form(blobs):
    X, y = blobs
    scorer = EL2NScorer(dtype="float64", random_state=0, **SMALL).fit(X, y)
    onehot = np.eye(3)[y]
    per_model = [
        np.linalg.norm(_softmax(_numpy_forward(net.module_, X)) - onehot, axis=1)
        for net in scorer.estimators_
    ]
    np.testing.assert_allclose(scorer.scores_per_model_, np.stack(per_model), rtol=1e-12)
    np.testing.assert_allclose(scorer.scores_, np.mean(per_model, axis=0), rtol=1e-12)
    # scoring the training data again reproduces the fit-time scores
    np.testing.assert_allclose(scorer.score_samples(X, y), scorer.scores_, rtol=1e-12)
    # EL2N is bounded by sqrt(2) (two probability vectors on the simplex)
    assert scorer.scores_.max() <= np.sqrt(2) + 1e-12


def test_grand_torch_func_matches_backward_loop():
    gen = torch.Generator().manual_seed(0)
    with torch.random.fork_rng(devices=[]):  # deterministic weights, global RNG restored
        torch.manual_seed(0)
        module = _MLP(6, 4, hidden_layer_sizes=(12, 7)).double()
    X = torch.randn(25, 6, generator=gen, dtype=torch.float64)
    y = torch.randint(0, 4, (25,), generator=gen)
    fast = grand_scores(module, X, y)
    slow = _grand_scores_loop(module, X, y)
    torch.testing.assert_close(fast, slow, rtol=1e-12, atol=1e-14)
    # per-example gradients of every parameter materialised by vmap(grad): same numbers
    torch.testing.assert_close(grand_scores(module, X, y, factored=False), slow, rtol=1e-12,
                               atol=1e-14)
    # tiny tiles give the same numbers (tiling is exact)
    torch.testing.assert_close(grand_scores(module, X, y, tile_bytes=1), slow, rtol=1e-12,
                               atol=1e-14)
    # last-layer closed form == backward loop over the readout parameters only
    last = _last_linear(module)
    closed = grand_scores_last_layer(module, X, y)
    ref = _grand_scores_loop(module, X, y, params=[last.weight, last.bias])
    torch.testing.assert_close(closed, ref, rtol=1e-12, atol=1e-14)
    assert torch.all(closed < fast)  # a subset of the parameters has a smaller gradient norm


class _Mixed(nn.Module):
    """Exercises every path of the factored GraNd: a Linear seeing 3 positions per example
    (Gram identity), a LayerNorm (direct vmap(grad)), a Linear called twice (direct), a head."""

    def __init__(self, n_features=6, n_classes=3):
        super().__init__()
        self.tok = nn.Linear(2, 4)
        self.inp = nn.Linear(4 * (n_features // 2), 8)
        self.norm = nn.LayerNorm(8)
        self.shared = nn.Linear(8, 8)
        self.head = nn.Linear(8, n_classes, bias=False)

    def forward(self, X):
        h = torch.tanh(self.tok(X.reshape(X.shape[0], -1, 2))).flatten(1)
        h = torch.tanh(self.norm(self.inp(h)))
        h = torch.tanh(self.shared(torch.tanh(self.shared(h))))
        return self.head(h)


def test_grand_factored_paths_match_backward_loop():
    gen = torch.Generator().manual_seed(1)
    module = _Mixed().double()
    _reset_parameters(module, gen)
    with torch.no_grad():
        module.norm.weight.uniform_(0.5, 1.5, generator=gen)
        module.norm.bias.uniform_(-0.5, 0.5, generator=gen)
    X = torch.randn(17, 6, generator=gen, dtype=torch.float64)
    y = torch.randint(0, 3, (17,), generator=gen)
    slow = _grand_scores_loop(module, X, y)
    torch.testing.assert_close(grand_scores(module, X, y), slow, rtol=1e-12, atol=1e-14)
    torch.testing.assert_close(grand_scores(module, X, y, factored=False), slow, rtol=1e-12,
                               atol=1e-14)
    # the last-layer closed form handles a readout without bias
    ref = _grand_scores_loop(module, X, y, params=[module.head.weight])
    torch.testing.assert_close(grand_scores_last_layer(module, X, y), ref, rtol=1e-12,
                               atol=1e-14)


def test_grand_linear_model_closed_form(blobs):
    # With no hidden layer every parameter is in the readout: ||p - e_y|| * sqrt(||x||^2 + 1).
    X, y = blobs
    params = dict(SMALL, module_params={"hidden_layer_sizes": ()})
    scorer = GraNdScorer(dtype="float64", random_state=1, **params).fit(X, y)
    onehot = np.eye(3)[y]
    expected = np.mean(
        [
            np.linalg.norm(_softmax(_numpy_forward(net.module_, X)) - onehot, axis=1)
            * np.sqrt((X**2).sum(axis=1) + 1.0)
            for net in scorer.estimators_
        ],
        axis=0,
    )
    np.testing.assert_allclose(scorer.scores_, expected, rtol=1e-10)
    last = GraNdScorer(gradient="last_layer", dtype="float64", random_state=1, **params)
    np.testing.assert_allclose(last.fit(X, y).scores_, expected, rtol=1e-10)


def test_grand_at_initialisation_is_allowed(blobs):
    X, y = blobs
    scorer = GraNdScorer(n_estimators=3, score_epoch=0, device="cpu", random_state=0).fit(X, y)
    assert scorer.scores_.shape == (len(y),) and np.all(scorer.scores_ > 0)
    with pytest.raises(InvalidParameterError):
        ForgettingScorer(score_epoch=0).fit(X, y)


def test_forgetting_counts_by_hand():
    correct = np.array(
        [
            # ex0: learned, forgotten, relearned, forgotten -> 2; ex1: never learned -> 5
            # ex2: learned once and kept -> 0; ex3: learned at the end -> 0
            [1, 0, 1, 0],
            [0, 0, 1, 0],
            [1, 0, 1, 0],
            [0, 0, 1, 0],
            [0, 0, 1, 1],
        ],
        dtype=bool,
    )
    np.testing.assert_array_equal(_forgetting_counts(correct).numpy(), [2, 5, 0, 0])


def test_forgetting_scorer_replays_on_training_data(blobs):
    X, y = blobs
    scorer = ForgettingScorer(random_state=0, lr=0.05, **dict(SMALL, score_epoch=6)).fit(X, y)
    assert len(scorer.snapshots_) == 2 and len(scorer.snapshots_[0]) == 6
    assert scorer.scores_.max() <= 6 and scorer.scores_.min() >= 0
    np.testing.assert_array_equal(scorer.score_samples(X, y), scorer.scores_)
    # counts are integers per model
    np.testing.assert_array_equal(scorer.scores_per_model_ % 1, 0)


# ------------------------------------------------------------------------------------------
# Label noise (Paul et al. 2021, Sec. 5): EL2N flags flipped labels
# ------------------------------------------------------------------------------------------


def test_el2n_flags_flipped_digits_labels(noisy_digits):
    X, y_noisy, flipped = noisy_digits
    scorer = EL2NScorer(
        n_estimators=2, score_epoch=5, device="cpu", random_state=0,
        module_params={"hidden_layer_sizes": (64,)},
    ).fit(X, y_noisy)
    auroc = roc_auc_score(flipped, scorer.scores_)
    assert auroc >= 0.9, auroc
    # and a network at initialisation cannot tell (the score is nearly label-agnostic)
    init = EL2NScorer(n_estimators=2, score_epoch=0, device="cpu", random_state=0).fit(X, y_noisy)
    assert roc_auc_score(flipped, init.scores_) < 0.75


# ------------------------------------------------------------------------------------------
# Randomness, dtype, devices, modules in skorch's convention
# ------------------------------------------------------------------------------------------


def test_reproducible_and_leaves_global_rng_alone(blobs):
    X, y = blobs
    state = torch.get_rng_state()
    a = EL2NScorer(random_state=3, **SMALL).fit(X, y).scores_
    assert torch.equal(state, torch.get_rng_state())
    b = EL2NScorer(random_state=3, **SMALL).fit(X, y).scores_
    c = EL2NScorer(random_state=4, **SMALL).fit(X, y).scores_
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a, c)


def test_models_are_independently_initialised(blobs):
    X, y = blobs
    scorer = EL2NScorer(random_state=0, **dict(SMALL, score_epoch=0)).fit(X, y)
    w = [net.module_.net[0].weight.detach() for net in scorer.estimators_]
    assert not torch.equal(w[0], w[1])
    # PyTorch's default Linear rule: U(-1/sqrt(fan_in), 1/sqrt(fan_in))
    assert float(w[0].abs().max()) <= 1 / np.sqrt(X.shape[1])


def test_dtype_float32_default_and_float64(blobs):
    X, y = blobs
    s32 = EL2NScorer(random_state=0, **SMALL).fit(X, y)
    assert s32.dtype_ == torch.float32
    assert next(s32.estimators_[0].module_.parameters()).dtype == torch.float32
    s64 = EL2NScorer(random_state=0, dtype="float64", **SMALL).fit(X, y)
    assert next(s64.estimators_[0].module_.parameters()).dtype == torch.float64
    assert s32.scores_.dtype == np.float64 and s64.scores_.dtype == np.float64


class _Net(nn.Module):
    def __init__(self, n_features, n_classes, width=4):
        super().__init__()
        self.width = width
        self.body = nn.Sequential(nn.Linear(n_features, width), nn.Tanh())
        self.head = nn.Linear(width, n_classes)

    def forward(self, X):
        return self.head(self.body(X))


def test_user_module_in_skorch_convention(blobs):
    X, y = blobs
    scorer = GraNdScorer(module=_Net, module_params={"width": 5}, random_state=0,
                         n_estimators=1, score_epoch=2, device="cpu")
    scorer.fit(X, y)
    assert scorer.estimators_[0].module_.width == 5
    scorer.set_params(module__width=7)
    assert scorer.module_params == {"width": 7}
    assert scorer.fit(X, y).estimators_[0].module_.width == 7
    # an instance is copied per model
    inst = _Net(5, 3, width=3)
    fitted = EL2NScorer(module=inst, random_state=0, n_estimators=2, score_epoch=1,
                        device="cpu").fit(X, y)
    assert fitted.estimators_[0].module_ is not fitted.estimators_[1].module_
    # reachable through a meta-estimator, as in GridSearchCV
    clf = DataDietClassifier(scorer=GraNdScorer(module=_Net, n_estimators=1, score_epoch=1,
                                                device="cpu"), random_state=0)
    clf.set_params(scorer__module__width=6).fit(X, y)
    assert clf.scorer_.estimators_[0].module_.width == 6


def test_last_layer_needs_a_linear_readout(blobs):
    X, y = blobs

    class NoLinear(nn.Module):
        def __init__(self, n_features, n_classes):
            super().__init__()
            self.w = nn.Parameter(torch.zeros(n_features, n_classes))

        def forward(self, X):
            return X @ self.w

    with pytest.raises(ValueError, match="nn.Linear"):
        GraNdScorer(module=NoLinear, gradient="last_layer", n_estimators=1, score_epoch=1,
                    device="cpu").fit(X, y)


def test_pickle_roundtrip(blobs):
    X, y = blobs
    for scorer in (EL2NScorer(random_state=0, **SMALL), ForgettingScorer(random_state=0, **SMALL),
                   GraNdScorer(random_state=0, **SMALL)):
        scorer.fit(X, y)
        loaded = pickle.loads(pickle.dumps(scorer))
        np.testing.assert_array_equal(loaded.score_samples(X, y), scorer.score_samples(X, y))
        assert next(loaded.estimators_[0].module_.parameters()).device.type == "cpu"


def test_score_samples_without_labels_uses_predicted_class(blobs):
    X, y = blobs
    scorer = EL2NScorer(random_state=0, **SMALL).fit(X, y)
    probs = np.mean([_softmax(_numpy_forward(n.module_, X.astype(np.float32).astype(np.float64)))
                     for n in scorer.estimators_], axis=0)
    pseudo = scorer.classes_[probs.argmax(axis=1)]
    np.testing.assert_allclose(scorer.score_samples(X), scorer.score_samples(X, pseudo),
                               rtol=1e-6)


def test_bad_input(blobs):
    X, y = blobs
    scorer = EL2NScorer(random_state=0, **SMALL)
    X_nan = X.copy()
    X_nan[0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        scorer.fit(X_nan, y)
    with pytest.raises(ValueError, match="Unknown label type"):
        scorer.fit(X, y + 0.5)
    scorer.fit(X, y)
    with pytest.raises(ValueError, match="features"):
        scorer.score_samples(X[:, :3], y)
    with pytest.raises(ValueError, match="not seen in fit"):
        scorer.score_samples(X, y + 10)
    with pytest.raises(ValueError, match="one label per row"):
        scorer.score_samples(X, y[:-1])
    with pytest.raises(ValueError, match="must not exceed 1"):
        DataDietClassifier(scorer=scorer, keep_fraction=0.8, drop_hardest_fraction=0.3).fit(X, y)
    with pytest.raises(ValueError, match="at least 2 classes"):
        DataDietClassifier(scorer=scorer).fit(X, np.zeros(len(y)))
    with pytest.raises(TypeError, match="must set scores_"):
        DataDietClassifier(scorer=LogisticRegression()).fit(X, y)


def test_verbose_reports_progress(blobs, capsys):
    X, y = blobs
    EL2NScorer(random_state=0, verbose=1, **SMALL).fit(X, y)
    out = capsys.readouterr().out
    assert "model 1/2" in out and "model 2/2" in out


# ------------------------------------------------------------------------------------------
# Selection
# ------------------------------------------------------------------------------------------


def test_ccs_allocation_by_hand():
    # strata of sizes 2, 10 and 100 (scores in three separated bins), budget 30:
    # smallest first: min(2, 30 // 3) = 2, then min(10, 28 // 2) = 10, then min(100, 18) = 18.
    scores = np.concatenate([np.full(2, 0.05), np.full(10, 0.5), np.full(100, 0.95)])
    scores[:2] = [0.0, 0.01]
    scores[-1] = 1.0
    cand = np.arange(len(scores))
    got = _ccs_sample(cand, scores, 30, n_bins=3, rng=np.random.RandomState(0))
    assert len(got) == 30 and len(np.unique(got)) == 30
    assert np.sum(got < 2) == 2 and np.sum((got >= 2) & (got < 12)) == 10
    assert np.sum(got >= 12) == 18


def test_select_modes():
    rng = np.random.RandomState(0)
    scores = rng.rand(200)
    y = np.repeat([0, 1], 100)
    order = np.argsort(-scores)
    hard = _select(scores, y, 2, 0.3, "hardest", 0.0, False, 10, rng)
    np.testing.assert_array_equal(hard, np.sort(order[:60]))
    easy = _select(scores, y, 2, 0.3, "easiest", 0.0, False, 10, rng)
    np.testing.assert_array_equal(easy, np.sort(order[-60:]))
    offset = _select(scores, y, 2, 0.3, "hardest", 0.1, False, 10, rng)
    np.testing.assert_array_equal(offset, np.sort(order[20:80]))
    rand = _select(scores, y, 2, 0.3, "random", 0.0, False, 10, rng)
    assert len(rand) == 60 and len(np.unique(rand)) == 60
    strat = _select(scores, y, 2, 0.3, "stratified", 0.1, False, 10, rng)
    assert len(strat) == 60 and not np.isin(order[:20], strat).any()
    # stratified covers the score range: every decile of the remaining scores is represented
    kept_bins = np.unique(np.minimum((scores[strat] * 10).astype(int), 9))
    assert len(kept_bins) >= 9
    balanced = _select(scores, y, 2, 0.3, "hardest", 0.0, True, 10, rng)
    assert np.sum(y[balanced] == 0) == 30 and np.sum(y[balanced] == 1) == 30


def test_every_class_keeps_a_row():
    scores = np.concatenate([np.ones(50), np.zeros(5)])  # class 1 is the easiest
    y = np.concatenate([np.zeros(50, int), np.ones(5, int)])
    kept = _select(scores, y, 2, 0.2, "hardest", 0.0, False, 10, np.random.RandomState(0))
    assert set(y[kept]) == {0, 1} and len(kept) == 12


def test_data_diet_classifier_keeps_hardest(blobs):
    X, y = blobs
    scorer = EL2NScorer(**SMALL)
    clf = DataDietClassifier(LogisticRegression(), scorer, keep_fraction=0.5, random_state=0)
    clf.fit(X, y)
    top = np.argsort(-clf.scores_)[:60]
    extra = np.setdiff1d(clf.sample_indices_, top)
    assert np.isin(top, clf.sample_indices_).all()
    # rows beyond the 60 hardest only bring back a class the hardest 60 missed
    assert len(extra) <= 2 and not np.isin(y[extra], y[top]).any()
    assert set(y[clf.sample_indices_]) == {0, 1, 2}
    np.testing.assert_array_equal(clf.classes_, [0, 1, 2])
    # delegates to the estimator fitted on the kept rows
    ref = LogisticRegression().fit(X[clf.sample_indices_], y[clf.sample_indices_])
    np.testing.assert_allclose(clf.predict_proba(X), ref.predict_proba(X))
    np.testing.assert_allclose(clf.decision_function(X), ref.decision_function(X))
    np.testing.assert_array_equal(clf.predict(X), ref.predict(X))
    loaded = pickle.loads(pickle.dumps(clf))
    np.testing.assert_array_equal(loaded.predict(X), clf.predict(X))
    # random pruning needs no scorer
    rnd = DataDietClassifier(keep="random", keep_fraction=0.25, random_state=0).fit(X, y)
    assert rnd.scores_ is None and len(rnd.sample_indices_) == 30


class _SpyScorer(BaseEstimator):
    """Records the rows it is fitted on; scores are the first feature."""

    seen = []

    def fit(self, X, y):
        type(self).seen.append(X.copy())
        self.scores_ = X[:, 0].copy()
        return self


class _SpyClassifier(ClassifierMixin, BaseEstimator):
    seen_rows = []

    def fit(self, X, y):
        type(self).seen_rows.append(len(X))
        self.classes_ = np.unique(y)
        return self

    def predict(self, X):
        return np.full(len(X), self.classes_[0])


def test_grid_search_scores_each_fold_separately(blobs):
    X, y = blobs
    X = X + np.arange(len(X))[:, None] * 1e-3  # rows are unique
    _SpyScorer.seen.clear()
    search = GridSearchCV(
        make_pipeline(StandardScaler(), DataDietClassifier(scorer=_SpyScorer(), random_state=0)),
        {"datadietclassifier__keep_fraction": [0.3, 0.6]},
        cv=3,
    ).fit(X, y)
    assert len(_SpyScorer.seen) == 2 * 3 + 1
    for seen in _SpyScorer.seen[:-1]:
        assert len(seen) == 80  # one fold's training rows only: nothing leaks from the test fold
    assert len(_SpyScorer.seen[-1]) == 120
    assert search.best_params_["datadietclassifier__keep_fraction"] in (0.3, 0.6)


def test_sampler_in_imblearn_pipeline(blobs):
    from imblearn.pipeline import make_pipeline as imb_make_pipeline

    X, y = blobs
    sampler = DataDietSampler(EL2NScorer(**SMALL), keep_fraction=0.25, keep="stratified",
                              random_state=0)
    Xr, yr = sampler.fit_resample(X, y)
    assert Xr.shape == (30, 5)
    np.testing.assert_array_equal(Xr, X[sampler.sample_indices_])
    np.testing.assert_array_equal(yr, y[sampler.sample_indices_])
    _SpyClassifier.seen_rows.clear()
    pipe = imb_make_pipeline(sampler, _SpyClassifier()).fit(X, y)
    assert _SpyClassifier.seen_rows == [30]
    assert len(pipe.predict(X)) == 120  # prediction sees every row


# ------------------------------------------------------------------------------------------
# Devices
# ------------------------------------------------------------------------------------------


def test_gpu_fitted_scorer_scores_on_cpu_machine(blobs, monkeypatch):
    # a scorer fitted on a GPU keeps its networks on the CPU; on a machine without a GPU it
    # scores there (simulated: the fitted device says cuda, torch sees none)
    X, y = blobs
    scorer = ForgettingScorer(random_state=0, **SMALL).fit(X, y)
    expected = scorer.score_samples(X, y)
    scorer.device_ = torch.device("cuda")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    loaded = pickle.loads(pickle.dumps(scorer))
    np.testing.assert_array_equal(loaded.score_samples(X, y), expected)


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_fit_keeps_state_on_cpu(noisy_digits, blobs):
    X, y_noisy, flipped = noisy_digits
    for cls in (EL2NScorer, GraNdScorer, ForgettingScorer):
        scorer = cls(n_estimators=2, score_epoch=5, device="cuda", random_state=0).fit(X, y_noisy)
        assert scorer.device_.type == "cuda"
        for net in scorer.estimators_:
            assert all(p.device.type == "cpu" for p in net.module_.parameters())
        np.testing.assert_allclose(scorer.score_samples(X, y_noisy), scorer.scores_,
                                   rtol=1e-4, atol=1e-5)
        loaded = pickle.loads(pickle.dumps(scorer))
        np.testing.assert_allclose(loaded.score_samples(X, y_noisy), scorer.scores_,
                                   rtol=1e-4, atol=1e-5)
        assert roc_auc_score(flipped, scorer.scores_) >= 0.9, cls.__name__
    Xb, yb = blobs
    clf = DataDietClassifier(scorer=GraNdScorer(n_estimators=2, score_epoch=2, device="cuda"),
                             keep_fraction=0.5, random_state=0).fit(Xb, yb)
    assert len(clf.sample_indices_) >= 60 and clf.score(Xb, yb) > 0.5
