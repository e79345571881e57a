"""scikit-learn estimators around the shipped PFN transformers.

``fit`` validates and standardises the training set, builds the input representations
(standardised features, normal scores, whitened principal components), draws the ensemble members
so that every feature reaches the network, and weighs the members by stacking on held-out
training points (a few forward passes); ``predict`` conditions the transformer on the stored
context and reads off the posterior predictive of every query in one forward pass (Müller et al.,
"Transformers Can Do Bayesian Inference", ICLR 2022). Multi-class problems are composed from
pairwise binary contexts (Wu, Lin & Weng, JMLR 2004).
"""

import itertools
import warnings
from numbers import Integral
from pathlib import Path

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin, _fit_context
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted, validate_data

from .._backend import (
    DEVICE_OPTIONS,
    DTYPE_OPTIONS,
    THREADS_OPTIONS,
    DevicePortableMixin,
    check_memory,
    limits_threads,
    resolve_device,
    to_numpy,
    usable_device,
)
from .._validation import atomic_fit, check_finite_cast, check_n_classes
from ._context import (  # noqa: F401 (_stacking_weights: tests reach it here)
    _AUTO_PAIRWISE_MAX_CLASSES,
    _Context,
    _pairwise_coupling,
    _stacking_weights,
    _tempered,
)
from ._distribution import PFNPredictiveDistribution, _check_quantiles
from ._weights import WEIGHTS_DIR, _load_model, _load_state, _resolve_weights, load_pfn

__all__ = ["PFNRegressor", "PFNClassifier", "PFNPredictiveDistribution", "load_pfn", "WEIGHTS_DIR"]


class _PFNBase(DevicePortableMixin, BaseEstimator):
    _task = None

    _parameter_constraints = {
        "n_estimators": [Interval(Integral, 1, None, closed="left")],
        "max_context": [Interval(Integral, 1, None, closed="left"), None],
        "input_transform": [StrOptions({"mixed", "standard", "quantile", "pca"})],
        "batch_size": [Interval(Integral, 1, None, closed="left")],
        "weights": [str, Path, None],
        "device": DEVICE_OPTIONS,
        "dtype": DTYPE_OPTIONS,
        "random_state": ["random_state"],
        "verbose": ["verbose"],
        "n_threads": THREADS_OPTIONS,
    }

    def __init__(
        self,
        n_estimators=4,
        *,
        max_context=None,
        input_transform="mixed",
        batch_size=1024,
        weights=None,
        device="auto",
        dtype="float32",
        random_state=None,
        verbose=0,
        n_threads=None,
    ):
        self.n_estimators = n_estimators
        self.max_context = max_context
        self.input_transform = input_transform
        self.batch_size = batch_size
        self.weights = weights
        self.device = device
        self.dtype = dtype
        self.random_state = random_state
        self.verbose = verbose
        self.n_threads = n_threads

    # -- fit ---------------------------------------------------------------------------------
    def _load(self):
        device = resolve_device(self.device)
        json_path = _resolve_weights(self.weights, self._task)
        config, _ = _load_state(str(json_path))
        if config["task"] != self._task:
            raise ValueError(f"{json_path} holds a {config['task']} PFN, not a {self._task} one")
        _, model = _load_model(str(json_path), str(device), self.dtype)
        return device, json_path, config, model

    def _make_context(self, X, y, config, rng, model, device, n_labels=10):
        ctx = _Context(
            X,
            y,
            task=self._task,
            config=config,
            estimator=self,
            rng=rng,
            model=model,
            device=device,
            n_labels=n_labels,
        )
        msg = ctx.coverage_warning(type(self).__name__, X.shape[1])
        if msg:
            warnings.warn(msg, UserWarning, stacklevel=3)
        return ctx

    def _finish_fit(self, device, json_path, config, contexts):
        self.device_ = device
        # the shipped weights are stored by name (found in the installed package when used, so a
        # pickle moves between installations); user weights by the path given
        self.weights_ = json_path.stem if self.weights is None else str(json_path)
        self.model_config_ = {
            k: config[k] for k in ("task", "d_max", "max_ctx", "normalize_x", "normalize_y")
        }
        self.contexts_ = contexts
        self.members_ = [m for c in contexts for m in c.members]
        self.member_weights_ = np.concatenate([c.weights for c in contexts])
        first = contexts[0]
        self.X_ = first.context["standard"]

    def _weights_json(self):
        if Path(self.weights_).suffix == ".json":
            return self.weights_
        return str(_resolve_weights(None, self.weights_))

    def _device(self):
        return usable_device(self.device_)

    def _model(self):
        return _load_model(self._weights_json(), str(self._device()), self.dtype)[1]

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.non_deterministic = False
        return tags


class PFNRegressor(RegressorMixin, _PFNBase):
    """Prior-data fitted network regressor: GP-like Bayesian regression in one forward pass.

    A transformer trained on datasets drawn from a Gaussian-process prior with hyperpriors over
    ARD lengthscales, output scale and noise (mixed with random-MLP functions, structural causal
    models and random trees) returns the
    posterior predictive distribution of every query given the training set as context
    (Müller et al., "Transformers Can Do Bayesian Inference", ICLR 2022). ``fit`` standardises the
    training set and weighs the ensemble members on held-out training points (a few forward
    passes); there is no gradient descent.

    The network computes in float32 by default (``dtype``). The shipped model takes ``d_max`` = 10
    inputs and 1000 context points. Each ensemble member sees one representation of the inputs
    (standardised features, their normal scores, or the whitened principal components of the
    standardised features) and at most ``d_max`` of its columns; with more columns the members
    cover them in windows (the most target-relevant first) and members are added, up to 32, until
    every feature reaches the network; beyond that a warning says how many were used and what
    ``n_estimators`` would use them all. Constant features and exact (affine) duplicates carry no
    information and are left out. With more samples than ``max_context`` each member conditions on
    a random subset. The members' predictive distributions are mixed with stacking weights (Yao et
    al., Bayesian Analysis 2018) that maximise the log score of held-out training points (two folds
    for n <= 300, else 200 points against 500 others); members whose weight is below 0.02 are
    dropped, so ``predict`` runs only the members that matter.

    Parameters
    ----------
    n_estimators : int, default=4
        Ensemble members (at least; more are added to cover every feature). Members differ in
        input representation, feature order or subset and, for large training sets, context
        subset.
    max_context : int or None, default=None
        Context points per member; None uses the model's trained maximum (1000).
    input_transform : {"mixed", "standard", "quantile", "pca"}, default="mixed"
        ``"standard"`` standardises each feature; ``"quantile"`` maps it to normal scores
        (``QuantileTransformer``) first; ``"pca"`` uses the whitened principal components of the
        standardised features (a target that depends on small-variance directions of strongly
        correlated features becomes visible); ``"mixed"`` uses all three over the members.
    batch_size : int, default=1024
        Queries whose bucket probabilities are held at once (bounds memory). The network itself
        runs on fixed blocks of 128 queries, so a prediction does not depend on ``batch_size``
        nor on which other queries are predicted with it (bitwise).
    weights : str or None, default=None
        None for the shipped weights, or the path of a ``.json`` config exported by
        ``python -m overparam_sklearn.pfn.train --export``.
    device : {"auto", "cpu", "cuda"}, default="auto"
    dtype : {"float32", "float64"}, default="float32"
        Precision of the network's forward pass (float32, as for every neural network; the
        weights were trained in float32).
    random_state : int, RandomState instance or None, default=None
        Draws the ensemble members.
    verbose : int, default=0
        Print progress per ensemble member when > 0.
    n_threads : int or None, default=None
        torch intra-op threads for fit and prediction, set on entry and restored on exit. ``None``
        means one: the forward passes are small ops that run faster on one thread, and much
        faster when other processes share the cores (see ``benchmarks/threads.py``).

    Attributes
    ----------
    X_ : ndarray of shape (n_samples, n_features)
        The standardised training inputs (the context), float32.
    y_context_ : ndarray of shape (n_samples,)
        The standardised training targets.
    y_mean_, y_scale_ : float
        Target standardisation. For constant targets ``y_scale_`` is 0: every prediction is
        that constant, with standard deviation 0.
    members_ : list of dict
        Representation (``"transform"``), its column indices (``"features"``) and context
        indices of each member.
    member_weights_ : ndarray of shape (n_members,)
        Stacking weights of the members (sum to one; zero for dropped members).
    device_ : torch.device
    n_features_in_ : int

    Examples
    --------
    >>> import numpy as np
    >>> from overparam_sklearn import PFNRegressor
    >>> rng = np.random.RandomState(0)
    >>> X = rng.uniform(-2, 2, size=(40, 1))
    >>> y = np.sin(2 * X[:, 0]) + 0.1 * rng.randn(40)
    >>> reg = PFNRegressor(n_estimators=2, random_state=0).fit(X, y)
    >>> mean, std = reg.predict(X[:3], return_std=True)
    >>> reg.predict_quantiles(X[:3], [0.05, 0.95]).shape
    (3, 2)
    """

    _task = "regression"

    @atomic_fit
    @_fit_context(prefer_skip_nested_validation=True)
    @limits_threads()
    def fit(self, X, y):
        """Store the standardised training set as the transformer's context.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
        y : array-like of shape (n_samples,)

        Returns
        -------
        self : PFNRegressor
        """
        X, y = validate_data(self, X, y, y_numeric=True, dtype=np.float64)
        device, json_path, config, model = self._load()
        with np.errstate(over="ignore", invalid="ignore"):
            y_mean, y_sd = float(y.mean()), float(y.std())
        if not (np.isfinite(y_mean) and np.isfinite(y_sd)):
            raise ValueError(
                "y is so large that its mean or standard deviation overflows float64; rescale it."
            )
        if y_sd <= 1e-12 * (1.0 + abs(y_mean)):
            # constant targets (up to round-off): the posterior is a point mass at that
            # constant; y_scale_ = 0 maps every prediction to y_mean_, with std 0
            y_mean = float(y[0]) if np.ptp(y) == 0 else y_mean
            y_scale = 0.0
            y_std = np.zeros(len(y), dtype=np.float32)
        else:
            if config.get("normalize_y", True):
                y_scale = y_sd
            else:
                y_mean, y_scale = 0.0, 1.0
            y_std = check_finite_cast(
                (y - y_mean) / y_scale, np.float32, "y", "(the PFN computes in float32)"
            )
        rng = check_random_state(self.random_state)
        context = self._make_context(X, y_std, config, rng, model, device)
        self.y_mean_, self.y_scale_ = y_mean, y_scale
        self.y_context_ = y_std
        self._finish_fit(device, json_path, config, [context])
        return self

    def _bar(self):
        _, model = _load_model(self._weights_json(), "cpu")
        return model.bar

    @limits_threads()
    def _mixture(self, X, keep):
        """Average the members' bucket probabilities; return (probs or None, mean, var) in
        standardised units."""
        n = X.shape[0]
        bar = self._bar()
        n_bars = bar.n_bars
        if keep:
            check_memory(
                8 * n * n_bars * 2,
                "cpu",
                f"the {n} x {n_bars} predictive bucket probabilities",
                "predict in smaller batches of X",
            )
            probs = np.zeros((n, n_bars))
        mean = np.zeros(n)
        second = np.zeros(n)
        context = self.contexts_[0]
        for i, sl, p in context.iter_outputs(
            self._model(),
            self._device(),
            X,
            self.batch_size,
            verbose=self.verbose,
            name=type(self).__name__,
        ):
            w = context.weights[i]
            if keep:
                probs[sl] += w * p.numpy()
            m = bar.mean(p).numpy()
            v = bar.variance(p).numpy()
            mean[sl] += w * m
            second[sl] += w * (v + m**2)
        var = np.maximum(second - mean**2, 0.0)
        return (probs if keep else None), mean, var

    def _check_X(self, X):
        check_is_fitted(self)
        return validate_data(self, X, reset=False, dtype=np.float64)

    def predict(self, X, return_std=False):
        """Posterior predictive mean (and standard deviation).

        Parameters
        ----------
        X : array-like of shape (n_queries, n_features)
        return_std : bool, default=False

        Returns
        -------
        y_mean : ndarray of shape (n_queries,)
        y_std : ndarray of shape (n_queries,), only when ``return_std``
        """
        X = self._check_X(X)
        _, mean, var = self._mixture(X, keep=False)
        y_mean = self.y_mean_ + self.y_scale_ * mean
        if return_std:
            return y_mean, self.y_scale_ * np.sqrt(var)
        return y_mean

    def predict_distribution(self, X):
        """Posterior predictive distributions of the queries.

        Parameters
        ----------
        X : array-like of shape (n_queries, n_features)

        Returns
        -------
        dist : PFNPredictiveDistribution
            With ``mean``, ``std``, ``quantile(q)``, ``logpdf(y)`` and ``cdf(y)``.
        """
        X = self._check_X(X)
        probs, _, _ = self._mixture(X, keep=True)
        return PFNPredictiveDistribution(
            probs, to_numpy(self._bar().borders), self.y_mean_, self.y_scale_
        )

    def predict_quantiles(self, X, q):
        """Predictive quantiles of the queries.

        Parameters
        ----------
        X : array-like of shape (n_queries, n_features)
        q : float or array-like of shape (n_levels,)
            Levels strictly between 0 and 1.

        Returns
        -------
        quantiles : ndarray of shape (n_queries,) for a float ``q``, else (n_queries, n_levels)
        """
        _check_quantiles(q)
        return self.predict_distribution(X).quantile(q)


class PFNClassifier(ClassifierMixin, _PFNBase):
    """Prior-data fitted network classifier (at most 10 classes) in one forward pass.

    A transformer trained on classification datasets whose labels come from latent Gaussian-process
    and random-MLP functions, structural causal models and random trees returns the posterior
    predictive class probabilities of every query given the training set as context (Müller et
    al., ICLR 2022). ``fit`` only standardises the
    training set, draws the ensemble members and weighs them on held-out training points (as in
    :class:`PFNRegressor`, whose notes on features, representations and stacking apply). With
    more than two classes each pair of classes is by default its own binary context (with its own
    standardisation, so the features are scaled to the pair that they must separate), and the
    pairwise probabilities are coupled into class probabilities (Wu, Lin & Weng, JMLR 2004,
    method 2, as in libsvm). The network computes in float32 by default (``dtype``).

    Parameters
    ----------
    n_estimators : int, default=4
        Ensemble members per context (at least; more are added to cover every feature); they
        differ in representation, feature order or subset, the assignment of classes to the
        network's label ids and, for large training sets, the context subset.
    max_context : int or None, default=None
        Context points per member; None uses the model's trained maximum (1000).
    input_transform : {"mixed", "standard", "quantile", "pca"}, default="mixed"
    multi_class : {"auto", "pairwise", "direct"}, default="auto"
        ``"pairwise"``: one binary context per pair of classes, coupled (k (k - 1) / 2 contexts:
        on ``load_iris`` in-sample accuracy 0.99 against 0.85, on ``load_digits`` with 500
        training points test accuracy 0.875 against 0.79, at about 20x the cost of ``"direct"``);
        ``"direct"``: one context with all classes; ``"auto"``: pairwise for 3 to 10 classes.
    batch_size : int, default=1024
    weights : str or None, default=None
        None for the shipped weights, or the path of an exported ``.json`` config.
    device : {"auto", "cpu", "cuda"}, default="auto"
    dtype : {"float32", "float64"}, default="float32"
        Precision of the network's forward pass.
    random_state : int, RandomState instance or None, default=None
    verbose : int, default=0
        Print progress per ensemble member when > 0.
    n_threads : int or None, default=None
        torch intra-op threads for fit and prediction, set on entry and restored on exit. ``None``
        means one: the forward passes are small ops that run faster on one thread, and much
        faster when other processes share the cores (see ``benchmarks/threads.py``).

    Attributes
    ----------
    classes_ : ndarray of shape (n_classes,)
    X_ : ndarray of shape (n_samples, n_features)
        The standardised training inputs (the context), float32.
    members_ : list of dict
        The members of all contexts, in order.
    member_weights_ : ndarray of shape (n_members,)
        Stacking weights (summing to one within each context).
    pairs_ : list of (int, int) or None
        The class-index pair of each context (None for a single multi-class context).
    device_ : torch.device
    n_features_in_ : int

    Examples
    --------
    >>> from sklearn.datasets import load_iris
    >>> from overparam_sklearn import PFNClassifier
    >>> X, y = load_iris(return_X_y=True)
    >>> clf = PFNClassifier(n_estimators=2, random_state=0).fit(X, y)
    >>> clf.predict_proba(X[:2]).shape
    (2, 3)
    """

    _task = "classification"

    _parameter_constraints = {
        **_PFNBase._parameter_constraints,
        "multi_class": [StrOptions({"auto", "pairwise", "direct"})],
    }

    def __init__(
        self,
        n_estimators=4,
        *,
        max_context=None,
        input_transform="mixed",
        multi_class="auto",
        batch_size=1024,
        weights=None,
        device="auto",
        dtype="float32",
        random_state=None,
        verbose=0,
        n_threads=None,
    ):
        super().__init__(
            n_estimators,
            max_context=max_context,
            input_transform=input_transform,
            batch_size=batch_size,
            weights=weights,
            device=device,
            dtype=dtype,
            random_state=random_state,
            verbose=verbose,
            n_threads=n_threads,
        )
        self.multi_class = multi_class

    @atomic_fit
    @_fit_context(prefer_skip_nested_validation=True)
    @limits_threads()
    def fit(self, X, y):
        """Store the standardised training set as the transformer's context.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
        y : array-like of shape (n_samples,)

        Returns
        -------
        self : PFNClassifier
        """
        X, y = validate_data(self, X, y, dtype=np.float64)
        check_classification_targets(y)
        classes, y_enc = np.unique(y, return_inverse=True)
        check_n_classes(classes, self)
        device, json_path, config, model = self._load()
        max_classes = int(config.get("max_classes", 10))
        if len(classes) > max_classes:
            raise ValueError(
                f"PFNClassifier supports at most {max_classes} classes, got {len(classes)}"
            )
        rng = check_random_state(self.random_state)
        k = len(classes)
        multi = self.multi_class
        if multi == "auto":
            multi = "pairwise" if 2 < k <= _AUTO_PAIRWISE_MAX_CLASSES else "direct"
        if multi == "pairwise" and k > 2:
            pairs = list(itertools.combinations(range(k), 2))
            contexts = []
            for a, b in pairs:
                rows = np.flatnonzero((y_enc == a) | (y_enc == b))
                y_pair = (y_enc[rows] == b).astype(np.int64)
                contexts.append(
                    self._make_context(X[rows], y_pair, config, rng, model, device, max_classes)
                )
        else:
            pairs = None
            contexts = [
                self._make_context(
                    X, y_enc.astype(np.int64), config, rng, model, device, max_classes
                )
            ]
        self.classes_ = classes
        self.pairs_ = pairs
        self._finish_fit(device, json_path, config, contexts)
        return self

    def _context_proba(self, context, X, k):
        out = np.zeros((X.shape[0], k))
        for i, sl, p in context.iter_outputs(
            self._model(),
            self._device(),
            X,
            self.batch_size,
            k=k,
            verbose=self.verbose,
            name=type(self).__name__,
        ):
            out[sl] += context.weights[i] * p.numpy()
        return _tempered(out / out.sum(1, keepdims=True), getattr(context, "temperature", 1.0))

    @limits_threads()
    def predict_proba(self, X):
        """Posterior predictive class probabilities.

        Parameters
        ----------
        X : array-like of shape (n_queries, n_features)

        Returns
        -------
        proba : ndarray of shape (n_queries, n_classes)
        """
        check_is_fitted(self)
        X = validate_data(self, X, reset=False, dtype=np.float64)
        k = len(self.classes_)
        if self.pairs_ is None:
            return self._context_proba(self.contexts_[0], X, k)
        r = np.full((X.shape[0], k, k), 0.5)
        for (a, b), context in zip(self.pairs_, self.contexts_, strict=True):
            p = self._context_proba(context, X, 2)
            r[:, a, b] = p[:, 0]
            r[:, b, a] = p[:, 1]
        return _pairwise_coupling(np.clip(r, 1e-12, 1.0 - 1e-12))

    def predict_log_proba(self, X):
        """Logarithm of :meth:`predict_proba`.

        Parameters
        ----------
        X : array-like of shape (n_queries, n_features)

        Returns
        -------
        log_proba : ndarray of shape (n_queries, n_classes)
        """
        return np.log(np.clip(self.predict_proba(X), 1e-300, None))

    def predict(self, X):
        """Most probable class of every query.

        Parameters
        ----------
        X : array-like of shape (n_queries, n_features)

        Returns
        -------
        y_pred : ndarray of shape (n_queries,)
        """
        proba = self.predict_proba(X)
        return self.classes_[np.argmax(proba, 1)]
