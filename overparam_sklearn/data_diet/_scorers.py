"""The scorer estimators: networks trained briefly over several initialisations with skorch."""

import copy
import time
from numbers import Integral, Real

import numpy as np
import torch
from joblib import Parallel, delayed
from sklearn.base import (
    BaseEstimator,
    _fit_context,
)
from sklearn.preprocessing import LabelEncoder
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted, validate_data
from torch import nn

from .._backend import (
    DEVICE_OPTIONS,
    DTYPE_OPTIONS,
    THREADS_OPTIONS,
    DevicePortableMixin,
    Progress,
    limits_threads,
    numpy_dtype,
    resolve_device,
    resolve_dtype,
    seed_from_random_state,
    to_numpy,
    to_tensor,
    usable_device,
)
from .._validation import atomic_fit, check_finite_cast, check_n_classes
from ._mlp import _build_module, _logits
from ._scores import _forgetting_counts, el2n_scores, grand_scores, grand_scores_last_layer


def _net_to_cpu(net):
    """Move a fitted skorch net (module and optimizer state) to the CPU, in place."""
    net.module_.to("cpu")
    for state in net.optimizer_.state.values():
        for k, v in state.items():
            if isinstance(v, torch.Tensor):
                state[k] = v.to("cpu")
    net.criterion_.to("cpu")
    net.device = "cpu"
    return net


def _fit_net(net, X, y):
    """``net.fit(X, y)``, letting a ``KeyboardInterrupt`` through.

    skorch's ``NeuralNet.partial_fit`` catches ``KeyboardInterrupt`` around its training loop
    (it ends that one network's training early and returns normally). A scorer trains several
    networks, so a swallowed Ctrl-C would only skip to the next one: the interrupt is recorded
    as it leaves the training loop and raised again once skorch returns.
    """
    interrupts = []
    fit_loop = net.fit_loop

    def recording_fit_loop(*args, **kwargs):
        try:
            return fit_loop(*args, **kwargs)
        except KeyboardInterrupt as exc:
            interrupts.append(exc)
            raise

    net.fit_loop = recording_fit_loop
    try:
        net.fit(X, y)
    finally:
        del net.fit_loop  # the instance attribute; the class method is back
    if interrupts:
        raise interrupts[0]
    return net


_SCORER_CONSTRAINTS = {
    "n_estimators": [Interval(Integral, 1, None, closed="left")],
    "score_epoch": [Interval(Integral, 0, None, closed="left")],
    "module": [None, callable],
    "module_params": [None, dict],
    "optimizer": [callable],
    "lr": [Interval(Real, 0, None, closed="neither")],
    "batch_size": [Interval(Integral, 1, None, closed="left")],
    "device": DEVICE_OPTIONS,
    "dtype": DTYPE_OPTIONS,
    "n_threads": THREADS_OPTIONS,
    "random_state": ["random_state"],
    "n_jobs": [None, Integral],
    "verbose": ["verbose"],
}

_COMMON_PARAMS_DOC = """
    n_estimators : int, default=5
        Number of independently initialised networks the scores are averaged over (Paul et al.
        use 10).
    score_epoch : int, default=10
        Epochs of training before scoring. ``0`` scores the networks at initialisation.
    module : torch.nn.Module class, instance or None, default=None
        The network, in skorch's convention: a class instantiated with ``module_params``
        (``n_features`` and ``n_classes`` are filled in when the class accepts them and they are
        not given), or an instance that is copied for each model. It must output logits.
        ``None`` is a small MLP (``hidden_layer_sizes=(128,)``, ``activation="relu"``). Weights of
        every model are redrawn from a private generator (PyTorch's default Linear/Conv
        initialisation), never from torch's global RNG.
    module_params : dict or None, default=None
        Keyword arguments of ``module``. As in skorch, each is also reachable as
        ``set_params(module__<name>=value)`` (so ``GridSearchCV`` can search
        ``scorer__module__hidden_layer_sizes``), which updates this dict.
    optimizer : torch optimizer class, default=torch.optim.Adam
    lr : float, default=1e-3
        Learning rate.
    batch_size : int, default=64
    device : {"auto", "cpu", "cuda"}, default="auto"
        Where training and scoring run; fitted networks are kept on the CPU.
    dtype : {"float32", "float64"}, default="float32"
        Network precision (float32, as for every neural network).
    random_state : int, RandomState instance or None, default=None
        Seeds the initialisation and the minibatch order of every model (private generators).
    n_jobs : int or None, default=None
        Networks trained in parallel with joblib (``None`` means 1, ``-1`` all cores). Every
        model's seed is drawn before dispatch, so the scores are identical for any
        ``n_jobs`` and any joblib backend, e.g. ``joblib.parallel_backend("dask")`` to spread
        the models over a ``dask.distributed`` cluster (see "Scaling out" in the user guide).
    verbose : int, default=0
        When > 0, show a progress bar over the models and print a line per model (and
        skorch's epoch log when > 1).
    n_threads : int or None, default=None
        torch intra-op threads for training and scoring, set on entry and restored on exit.
        ``None`` means one: minibatch training of small networks runs faster on one thread,
        and several times faster when other processes share the cores (see
        ``benchmarks/threads.py``).
"""


def _train_and_score(scorer, X, y_enc, n_classes, seed, device, dtype, index, start):
    """Train model ``index`` of ``scorer`` from ``seed`` and score the training set.

    A module-level function of picklable arguments, so joblib can run it in another process or
    on a dask worker. Returns ``(net on the CPU, float64 scores, snapshots or None)``.
    """
    # skorch is imported here, not at package import (it is slow to import and only the
    # scorers train with it).
    from skorch import NeuralNetClassifier

    from ._callbacks import _EpochTracker

    init_gen = torch.Generator(device="cpu")
    init_gen.manual_seed(seed)
    shuffle_gen = torch.Generator(device="cpu")
    shuffle_gen.manual_seed(seed + 1)
    Xt = to_tensor(X, device, dtype)
    yt = torch.as_tensor(y_enc, device=device)
    module = _build_module(scorer.module, scorer._module_kwargs(), X.shape[1], n_classes,
                           init_gen, device, dtype)
    track = scorer.score_epoch > 0 and (scorer._keep_snapshots or scorer._needs_tracking)
    tracker = _EpochTracker(Xt, yt, scorer._keep_snapshots) if track else None
    net = NeuralNetClassifier(
        module=module,
        criterion=nn.CrossEntropyLoss,
        optimizer=scorer.optimizer,
        lr=scorer.lr,
        max_epochs=scorer.score_epoch,
        batch_size=scorer.batch_size,
        train_split=None,
        callbacks=[("data_diet_tracker", tracker)] if tracker is not None else [],
        device=str(device),
        iterator_train__shuffle=True,
        iterator_train__generator=shuffle_gen,
        classes=np.arange(n_classes),
        # skorch unpickles its CUDA-dependent attributes (module objects, not only
        # tensors) with torch.load when the scorer itself is unpickled; that is the
        # trust a pickle already asks for, and weights_only=True cannot load modules.
        torch_load_kwargs={"weights_only": False},
        verbose=max(0, int(scorer.verbose) - 1),
    )
    if scorer.score_epoch > 0:
        _fit_net(net, X, y_enc)
    else:
        net.initialize()
    scores = to_numpy(scorer._score_trained(net.module_, Xt, yt, tracker)).astype(np.float64)
    snapshots = None
    if tracker is not None:
        snapshots = tracker.snapshots_ if scorer._keep_snapshots else None
        # the tracker holds the training data; do not keep it in the fitted net
        tracker.X = tracker.y = None
        tracker.snapshots_ = tracker.correct_ = None
    if scorer.verbose > 0:
        print(f"[{type(scorer).__name__}] model {index + 1}/{scorer.n_estimators} trained and "
              f"scored ({time.perf_counter() - start:.1f} s)", flush=True)
    return _net_to_cpu(net), scores, snapshots


class _BaseScorer(DevicePortableMixin, BaseEstimator):
    """Shared ``fit`` of the scorers: train ``n_estimators`` networks with skorch, score each."""

    _parameter_constraints = dict(_SCORER_CONSTRAINTS)
    _keep_snapshots = False

    def __init__(
        self,
        n_estimators=5,
        score_epoch=10,
        module=None,
        module_params=None,
        optimizer=torch.optim.Adam,
        lr=1e-3,
        batch_size=64,
        device="auto",
        dtype="float32",
        random_state=None,
        n_jobs=None,
        verbose=0,
        n_threads=None,
    ):
        self.n_estimators = n_estimators
        self.score_epoch = score_epoch
        self.module = module
        self.module_params = module_params
        self.optimizer = optimizer
        self.lr = lr
        self.batch_size = batch_size
        self.device = device
        self.dtype = dtype
        self.random_state = random_state
        self.n_jobs = n_jobs
        self.verbose = verbose
        self.n_threads = n_threads

    def _module_kwargs(self):
        return dict(self.module_params or {})

    def set_params(self, **params):
        """Set parameters; ``module__<name>=value`` updates ``module_params`` (skorch style).

        Parameters
        ----------
        **params : dict
            Estimator parameters, and ``module__<name>`` entries of ``module_params``.

        Returns
        -------
        self : object
        """
        module_kw = {k[len("module__") :]: params.pop(k) for k in list(params)
                     if k.startswith("module__")}
        if "module_params" in params:
            self.module_params = params.pop("module_params")
        if module_kw:
            self.module_params = {**(self.module_params or {}), **module_kw}
        return super().set_params(**params)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.target_tags.required = True
        tags.non_deterministic = False
        return tags

    # --- fitting ---------------------------------------------------------------------------

    def _validate_X(self, X, reset):
        X = validate_data(self, X, reset=reset, dtype=[np.float64, np.float32])
        return np.array(self._cast(X), order="C", copy=True)

    def _cast(self, X):
        dtype = numpy_dtype(self.dtype_)
        return check_finite_cast(X, dtype, "X", f"in which {type(self).__name__} computes")

    @atomic_fit
    @_fit_context(prefer_skip_nested_validation=True)
    @limits_threads()
    def fit(self, X, y):
        """Train ``n_estimators`` networks for ``score_epoch`` epochs and score the training set.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
        y : array-like of shape (n_samples,)
            Class labels.

        Returns
        -------
        self : object
            Fitted scorer; ``scores_`` holds the training scores averaged over the models.
        """
        X, y = validate_data(self, X, y, dtype=[np.float64, np.float32])
        check_classification_targets(y)
        device = resolve_device(self.device)
        dtype = resolve_dtype(self.dtype, "float32")
        X = np.array(check_finite_cast(X, numpy_dtype(dtype), "X",
                                       f"in which {type(self).__name__} computes"),
                     order="C", copy=True)
        label_encoder = LabelEncoder().fit(y)
        check_n_classes(label_encoder.classes_, self)
        y_enc = label_encoder.transform(y).astype(np.int64)
        n_classes = len(label_encoder.classes_)

        # every seed is drawn here, in order, so results do not depend on n_jobs or backend
        rng = check_random_state(self.random_state)
        seeds = [seed_from_random_state(rng) for _ in range(self.n_estimators)]
        start = time.perf_counter()
        # the bar advances as results come back (joblib returns them in order); each model
        # also logs a line where it ran
        progress = Progress(self.n_estimators, type(self).__name__, self.verbose, unit="model")
        results = []
        for result in Parallel(n_jobs=self.n_jobs, return_as="generator")(
            delayed(_train_and_score)(self, X, y_enc, n_classes, seed, device, dtype, m, start)
            for m, seed in enumerate(seeds)
        ):
            results.append(result)
            progress.update()
        progress.close()
        self.device_, self.dtype_ = device, dtype
        self.label_encoder_ = label_encoder
        self.classes_ = label_encoder.classes_
        self.estimators_ = [net for net, _, _ in results]
        self.snapshots_ = [snaps for _, _, snaps in results if snaps is not None]
        self.scores_per_model_ = np.stack([scores for _, scores, _ in results])
        self.scores_ = self.scores_per_model_.mean(axis=0)
        return self

    _needs_tracking = False

    def _score_trained(self, module, X, y, tracker):
        return self._score_module(module, X, y)

    # --- scoring new data ------------------------------------------------------------------

    @limits_threads()
    def score_samples(self, X, y=None):
        """Score labelled data with the fitted networks (larger = harder), averaged over models.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
        y : array-like of shape (n_samples,) or None, default=None
            True labels (the data-diet scores proper). Without labels every row is scored
            against the class the fitted networks predict (argmax of their averaged
            probabilities), a label-free uncertainty score.

        Returns
        -------
        scores : ndarray of shape (n_samples,), float64
        """
        check_is_fitted(self)
        X = self._validate_X(X, reset=False)
        device = self._score_device()
        Xt = to_tensor(X, device, self.dtype_)
        modules = [self._module_on_device(net.module_, device) for net in self.estimators_]
        if y is None:
            probs = sum(torch.softmax(_logits(mod, Xt), dim=1) for mod in modules)
            yt = probs.argmax(dim=1)
        else:
            y = np.asarray(y)
            if y.ndim != 1 or y.shape[0] != X.shape[0]:
                raise ValueError(
                    f"y must be 1-D with one label per row of X ({X.shape[0]}), "
                    f"got shape {y.shape}"
                )
            unseen = ~np.isin(y, self.classes_)
            if unseen.any():
                raise ValueError(
                    f"y contains labels not seen in fit: {np.unique(y[unseen])[:5].tolist()}"
                )
            yt = torch.as_tensor(
                self.label_encoder_.transform(y).astype(np.int64), device=device
            )
        out = [to_numpy(self._score_new(m, mod, Xt, yt)) for m, mod in enumerate(modules)]
        return np.mean(np.stack(out).astype(np.float64), axis=0)

    def _score_device(self):
        # A scorer fitted on a GPU and unpickled on a machine without one scores on the CPU.
        return usable_device(self.device_)

    @staticmethod
    def _module_on_device(module, device):
        if device.type == "cpu":
            return module
        return copy.deepcopy(module).to(device)

    def _score_new(self, m, module, X, y):
        return self._score_module(module, X, y)


# the fitted attributes of EL2NScorer and GraNdScorer (ForgettingScorer has its own)
_SCORE_ATTRIBUTES_DOC = """
    Attributes
    ----------
    scores_ : ndarray of shape (n_samples,)
        Training scores averaged over the models (float64).
    scores_per_model_ : ndarray of shape (n_estimators, n_samples)
    estimators_ : list of skorch.NeuralNetClassifier
        The trained networks, on the CPU.
    classes_ : ndarray of shape (n_classes,)
    device_ : torch.device
    dtype_ : torch.dtype
    n_features_in_ : int
"""


class EL2NScorer(_BaseScorer):
    __doc__ = (
        """EL2N data-pruning scores: the norm of the softmax error early in training.

    ``score(x, y) = mean_m || softmax(f_m(x)) - onehot(y) ||_2`` over ``n_estimators`` networks
    trained for ``score_epoch`` epochs (Paul, Ganguli & Dziugaite 2021, eq. 2). Large scores mark
    hard or mislabelled examples. Networks train in float32 by default (cross-entropy, skorch).

    Parameters
    ----------"""
        + _COMMON_PARAMS_DOC
        + _SCORE_ATTRIBUTES_DOC
        + """
    Examples
    --------
    >>> from sklearn.datasets import load_iris
    >>> from overparam_sklearn import EL2NScorer
    >>> X, y = load_iris(return_X_y=True)
    >>> scorer = EL2NScorer(n_estimators=2, score_epoch=3, random_state=0).fit(X, y)
    >>> scorer.scores_.shape
    (150,)
    """
    )

    def _score_module(self, module, X, y):
        return el2n_scores(module, X, y)


class GraNdScorer(_BaseScorer):
    __doc__ = (
        """GraNd data-pruning scores: the norm of the per-example loss gradient.

    ``score(x, y) = mean_m || grad_theta CE(f_m(x), y) ||_2`` (Paul, Ganguli & Dziugaite 2021,
    eq. 1), by default over all parameters, batched per example with ``torch.func`` (``vmap`` of
    ``grad`` of ``functional_call``); peak memory is bounded by tiling rows (about 64 MB of
    per-example gradients per tile). ``gradient="last_layer"`` uses the closed form
    ``||softmax(z) - e_y|| * sqrt(||h||^2 + 1)`` for the readout ``z = W h + b``.

    ``score_epoch=0`` scores at initialisation as in the paper's headline, but that is not
    recommended: Kirsch (2023, "Does 'Deep Learning on a Data Diet' reproduce?") found GraNd at
    initialisation no better than random pruning, while EL2N a few epochs in reproduces. Networks
    train in float32 by default.

    Parameters
    ----------
    gradient : {"all", "last_layer"}, default="all"
        Parameters the gradient norm is taken over."""
        + _COMMON_PARAMS_DOC
        + _SCORE_ATTRIBUTES_DOC
        + """
    Examples
    --------
    >>> from sklearn.datasets import load_iris
    >>> from overparam_sklearn import GraNdScorer
    >>> X, y = load_iris(return_X_y=True)
    >>> scorer = GraNdScorer(n_estimators=2, score_epoch=3, random_state=0).fit(X, y)
    >>> scorer.scores_.shape
    (150,)
    """
    )

    _parameter_constraints = {
        **_SCORER_CONSTRAINTS,
        "gradient": [StrOptions({"all", "last_layer"})],
    }

    def __init__(
        self,
        gradient="all",
        n_estimators=5,
        score_epoch=10,
        module=None,
        module_params=None,
        optimizer=torch.optim.Adam,
        lr=1e-3,
        batch_size=64,
        device="auto",
        dtype="float32",
        random_state=None,
        n_jobs=None,
        verbose=0,
        n_threads=None,
    ):
        self.gradient = gradient
        super().__init__(
            n_estimators=n_estimators,
            score_epoch=score_epoch,
            module=module,
            module_params=module_params,
            optimizer=optimizer,
            lr=lr,
            batch_size=batch_size,
            device=device,
            dtype=dtype,
            random_state=random_state,
            n_jobs=n_jobs,
            verbose=verbose,
            n_threads=n_threads,
        )

    def _score_module(self, module, X, y):
        if self.gradient == "last_layer":
            return grand_scores_last_layer(module, X, y)
        return grand_scores(module, X, y)


class ForgettingScorer(_BaseScorer):
    __doc__ = (
        """Forgetting-event counts (Toneva et al., ICLR 2019), averaged over networks.

    Each of ``n_estimators`` networks trains for ``score_epoch`` epochs; after every epoch the
    whole training set is classified, and a forgetting event is a transition from correct to wrong
    between consecutive epochs (the state before training counts as "not learned"). Examples never
    learned count ``score_epoch`` events, more than any learned example can have, so they rank as
    the most forgettable (Toneva et al. treat them as forgotten infinitely often). Evaluating once
    per epoch, rather than at every minibatch presentation as Toneva et al. do, is a coarser but
    common approximation.

    ``score_samples(X, y)`` replays the same count on new data with the per-epoch snapshots of
    every network (``snapshots_``; ``n_estimators * score_epoch`` CPU copies of the weights), so
    ``score_samples(X_train, y_train)`` equals ``scores_``. Networks train in float32 by default.

    Parameters
    ----------"""
        + _COMMON_PARAMS_DOC.replace(
            "score_epoch : int, default=10\n        Epochs of training before scoring. "
            "``0`` scores the networks at initialisation.",
            "score_epoch : int, default=10\n        Training epochs over which forgetting events "
            "are counted (at least 1).",
        )
        + """
    Attributes
    ----------
    scores_ : ndarray of shape (n_samples,)
        Forgetting counts averaged over the models (float64).
    scores_per_model_ : ndarray of shape (n_estimators, n_samples)
    estimators_ : list of skorch.NeuralNetClassifier
        The trained networks, on the CPU.
    snapshots_ : list of list of dict
        ``snapshots_[m][e]`` is the state dict of network ``m`` after epoch ``e + 1``.
    classes_ : ndarray of shape (n_classes,)
    device_ : torch.device
    dtype_ : torch.dtype
    n_features_in_ : int

    Examples
    --------
    >>> from sklearn.datasets import load_iris
    >>> from overparam_sklearn import ForgettingScorer
    >>> X, y = load_iris(return_X_y=True)
    >>> scorer = ForgettingScorer(n_estimators=2, score_epoch=4, random_state=0).fit(X, y)
    >>> bool(scorer.scores_.max() <= 4)
    True
    """
    )

    _parameter_constraints = {
        **_SCORER_CONSTRAINTS,
        "score_epoch": [Interval(Integral, 1, None, closed="left")],
    }
    _keep_snapshots = True
    _needs_tracking = True

    def _score_trained(self, module, X, y, tracker):
        return _forgetting_counts(torch.stack(tracker.correct_))

    def _score_new(self, m, module, X, y):
        replay = copy.deepcopy(module)
        correct = []
        for state in self.snapshots_[m]:
            replay.load_state_dict(state)
            replay.to(X.device)
            correct.append((_logits(replay, X).argmax(dim=1) == y).cpu())
        return _forgetting_counts(torch.stack(correct))

