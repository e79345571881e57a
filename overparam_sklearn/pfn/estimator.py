"""scikit-learn estimators around the shipped PFN transformers.

``fit`` only validates and standardises the training set and draws the ensemble members (context
subsets, feature orders or subsets, input transforms); ``predict`` conditions the transformer on
the stored context and reads off the posterior predictive of every query in one forward pass
(Müller et al., "Transformers Can Do Bayesian Inference", ICLR 2022).
"""

import functools
import hashlib
import json
from numbers import Integral
from pathlib import Path

import numpy as np
import torch
from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin, _fit_context
from sklearn.preprocessing import QuantileTransformer
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted, validate_data

from .._backend import (
    DEVICE_OPTIONS,
    DTYPE_OPTIONS,
    check_memory,
    resolve_device,
    resolve_dtype,
    tile_slices,
    to_numpy,
)
from .model import BarDistribution, build_model

__all__ = ["PFNRegressor", "PFNClassifier", "PFNPredictiveDistribution", "load_pfn", "WEIGHTS_DIR"]

#: Directory of the shipped weights (``regression.pt/json``, ``classification.pt/json``,
#: ``manifest.json`` with their sha256).
WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"


def _sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


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


@functools.lru_cache(maxsize=8)
def _load_state(json_path):
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
            if expected is None or _sha256(p) != expected:
                raise ValueError(
                    f"{p} does not match the sha256 in {manifest_path}: the weights are corrupted "
                    "or were replaced; reinstall the package or re-export them with "
                    "`python -m overparam_sklearn.pfn.train --export`"
                )
    elif json_path.parent == WEIGHTS_DIR:
        raise ValueError(f"{manifest_path} is missing; the shipped PFN weights cannot be verified")
    with open(json_path) as fh:
        config = json.load(fh)
    state = torch.load(pt_path, map_location="cpu", weights_only=True)
    return config, state


@functools.lru_cache(maxsize=8)
def _load_model(json_path, device, dtype="float32"):
    config, state = _load_state(json_path)
    model = build_model(config, state).to(torch.device(device), resolve_dtype(dtype))
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return config, model


def load_pfn(weights=None, task="regression", device="cpu"):
    """Load a PFN (config dict, :class:`~overparam_sklearn.pfn.model.PFNTransformer` in eval mode).

    ``weights`` is None for the shipped model of ``task``, or the path of a ``.json`` config
    written by ``python -m overparam_sklearn.pfn.train --export`` (its ``.pt`` beside it; checked
    against a ``manifest.json`` in the same directory when there is one). Tensors are loaded with
    ``torch.load(..., weights_only=True)``.
    """
    path = _resolve_weights(weights, task)
    return _load_model(str(path), str(torch.device(device)))


class PFNPredictiveDistribution:
    """Posterior predictive distributions of a :class:`PFNRegressor`, one per query.

    Each is a mixture (over the ensemble members) of Riemann "bar" distributions with half-normal
    tails, on the standardised target scale, mapped back by ``y = loc + scale * z``.

    Attributes
    ----------
    probs : ndarray of shape (n_queries, n_bars)
        Bucket probabilities (standardised scale).
    borders : ndarray of shape (n_bars + 1,)
    loc, scale : float
        The target standardisation of the training set.
    """

    def __init__(self, probs, borders, loc, scale):
        self.probs = np.asarray(probs, dtype=np.float64)
        self.borders = np.asarray(borders, dtype=np.float64)
        self.loc = float(loc)
        self.scale = float(scale)
        self._bar = BarDistribution(torch.as_tensor(self.borders, dtype=torch.float32))
        self._bar.borders = torch.as_tensor(self.borders, dtype=torch.float64)

    def _t(self):
        return torch.as_tensor(self.probs)

    @property
    def mean(self):
        """Predictive means, shape (n_queries,)."""
        return self.loc + self.scale * self._bar.mean(self._t()).numpy()

    @property
    def std(self):
        """Predictive standard deviations, shape (n_queries,)."""
        return self.scale * np.sqrt(self._bar.variance(self._t()).numpy())

    def quantile(self, q):
        """Quantiles: ``q`` a float gives shape (n_queries,), a sequence (n_queries, len(q))."""
        q_arr = _check_quantiles(q)
        out = np.stack(
            [self._bar.quantile(self._t(), float(qi)).numpy() for qi in q_arr.ravel()], -1
        )
        out = self.loc + self.scale * out
        return out[:, 0] if np.ndim(q) == 0 else out

    def logpdf(self, y):
        """Log predictive densities of ``y`` (shape (n_queries,), or broadcastable to it)."""
        z = (np.asarray(y, dtype=np.float64) - self.loc) / self.scale
        z = np.array(np.broadcast_to(z, self.probs.shape[:1]))
        return self._bar.logpdf(self._t(), torch.as_tensor(z)).numpy() - np.log(self.scale)

    def cdf(self, y):
        """Predictive CDF at ``y`` (shape (n_queries,), or broadcastable to it)."""
        z = (np.asarray(y, dtype=np.float64) - self.loc) / self.scale
        z = np.array(np.broadcast_to(z, self.probs.shape[:1]))
        return self._bar.cdf(self._t(), torch.as_tensor(z)).numpy()

    def __len__(self):
        return self.probs.shape[0]


def _check_quantiles(q):
    q_arr = np.atleast_1d(np.asarray(q, dtype=np.float64))
    if q_arr.ndim != 1 or q_arr.size == 0 or not np.all((q_arr > 0) & (q_arr < 1)):
        raise ValueError(f"quantile levels must be numbers strictly between 0 and 1, got {q!r}")
    return q_arr


def _standardize_fit(X, zero_constant=True):
    mean = X.mean(0)
    std = X.std(0)
    constant = std <= 1e-8 * (1.0 + np.abs(mean))
    return (
        mean,
        np.where(constant, 1.0, std),
        constant if zero_constant else np.zeros_like(constant),
    )


#: Queries go through the network in blocks of exactly this many rows (the last one zero-padded).
#: float32 matrix products round differently for different row counts (BLAS picks its kernels
#: and blocking by shape), so with a fixed block shape a query's prediction is bitwise the same
#: whichever other queries are predicted with it and wherever it sits in the block.
_QUERY_BLOCK = 128


def _query_logits(model, cache, q_x, device, dtype=torch.float32):
    """Logits (m, n_out) of the queries ``q_x`` (m, d_max), evaluated in fixed-size blocks."""
    out = []
    for start in range(0, q_x.shape[0], _QUERY_BLOCK):
        q = q_x[start : start + _QUERY_BLOCK]
        m = q.shape[0]
        if m < _QUERY_BLOCK:
            q = np.concatenate([q, np.zeros((_QUERY_BLOCK - m, q.shape[1]), q.dtype)])
        q = torch.as_tensor(q, device=device, dtype=dtype)
        logits = model.predict_queries(cache, q[None])[0]
        out.append(logits[:m])
    return torch.cat(out)


class _PFNBase(BaseEstimator):
    _task = None

    _parameter_constraints = {
        "n_estimators": [Interval(Integral, 1, None, closed="left")],
        "max_context": [Interval(Integral, 1, None, closed="left"), None],
        "input_transform": [StrOptions({"mixed", "standard", "quantile"})],
        "batch_size": [Interval(Integral, 1, None, closed="left")],
        "weights": [str, Path, None],
        "device": DEVICE_OPTIONS,
        "dtype": DTYPE_OPTIONS,
        "random_state": ["random_state"],
        "verbose": ["verbose"],
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

    # -- fit ---------------------------------------------------------------------------------
    def _fit_common(self, X, y_encoded):
        """Store the standardised context and draw the ensemble members."""
        self.device_ = resolve_device(self.device)
        json_path = _resolve_weights(self.weights, self._task)
        config, _ = _load_state(str(json_path))
        if config["task"] != self._task:
            raise ValueError(f"{json_path} holds a {config['task']} PFN, not a {self._task} one")
        self.weights_path_ = str(json_path)
        self.model_config_ = {
            k: config[k] for k in ("task", "d_max", "max_ctx", "normalize_x", "normalize_y")
        }
        n, d = X.shape
        d_max = int(config["d_max"])
        max_ctx = int(config["max_ctx"]) if self.max_context is None else int(self.max_context)
        normalize = bool(config["normalize_x"])
        if normalize:
            self.x_mean_, self.x_scale_, self.x_constant_ = _standardize_fit(X)
        else:
            self.x_mean_, self.x_scale_, self.x_constant_ = (
                np.zeros(d),
                np.ones(d),
                np.zeros(d, dtype=bool),
            )
        self.X_ = self._standard(X).astype(np.float32)
        if normalize and self.input_transform != "standard":
            qt = QuantileTransformer(
                n_quantiles=max(2, min(1000, n)),
                output_distribution="normal",
                subsample=None,
                random_state=0,
            )
            Xq = qt.fit_transform(X)
            self.quantile_transformer_ = qt
            self.q_mean_, self.q_scale_, self.q_constant_ = _standardize_fit(Xq)
            Xq = (Xq - self.q_mean_) / self.q_scale_
            Xq[:, self.q_constant_] = 0.0
            self.Xq_ = Xq.astype(np.float32)
        else:
            self.quantile_transformer_ = None
        rng = check_random_state(self.random_state)
        perm_all = rng.permutation(d)
        members = []
        for m in range(self.n_estimators):
            if d <= d_max:
                features = np.arange(d) if m == 0 else rng.permutation(d)
            else:  # more features than the network takes: consecutive windows of one permutation,
                # so that the members together cover every feature
                window = perm_all[(m * d_max + np.arange(d_max)) % d]
                features = np.sort(window) if m % 2 == 0 else rng.permutation(window)
            context = (
                np.arange(n) if n <= max_ctx else np.sort(rng.choice(n, max_ctx, replace=False))
            )
            if self.quantile_transformer_ is None or self.input_transform == "standard":
                transform = "standard"
            elif self.input_transform == "quantile":
                transform = "quantile"
            else:
                transform = "standard" if m % 2 == 0 else "quantile"
            member = {"features": features, "context": context, "transform": transform}
            if self._task == "classification":
                member["labels"] = np.arange(10) if m == 0 else rng.permutation(10)
            members.append(member)
        self.members_ = members
        self.y_context_ = y_encoded
        return self

    def _standard(self, X):
        Z = (X - self.x_mean_) / self.x_scale_
        Z[:, self.x_constant_] = 0.0
        return Z

    def _quantile_inputs(self, X):
        Z = (self.quantile_transformer_.transform(X) - self.q_mean_) / self.q_scale_
        Z[:, self.q_constant_] = 0.0
        return Z

    def _member_inputs(self, Z, member):
        """Transformed inputs ``Z`` restricted to the member's features, zero-padded to d_max."""
        Z = Z[:, member["features"]]
        out = np.zeros((Z.shape[0], self.model_config_["d_max"]), dtype=np.float32)
        out[:, : Z.shape[1]] = Z
        return out

    # -- predict -----------------------------------------------------------------------------
    def _iter_member_outputs(self, X):
        """Yield (member index, query slice, probabilities (m, n_out) float64 on CPU)."""
        _, model = _load_model(self.weights_path_, str(self.device_), self.dtype)
        device = self.device_
        dtype = resolve_dtype(self.dtype)
        Z = {"standard": self._standard(X)}
        if any(m["transform"] == "quantile" for m in self.members_):
            Z["quantile"] = self._quantile_inputs(X)
        context = {"standard": self.X_, "quantile": getattr(self, "Xq_", None)}
        for i, member in enumerate(self.members_):
            ctx_idx = member["context"]
            ctx_x = self._member_inputs(context[member["transform"]][ctx_idx], member)
            ctx_y = np.ascontiguousarray(self._member_targets(ctx_idx, member))
            q_x = self._member_inputs(Z[member["transform"]], member)
            with torch.inference_mode():
                ctx_y = torch.as_tensor(ctx_y, device=device)
                cache = model.encode_context(
                    torch.as_tensor(ctx_x, device=device, dtype=dtype)[None],
                    (ctx_y.to(dtype) if ctx_y.is_floating_point() else ctx_y)[None],
                )
                for sl in tile_slices(q_x.shape[0], self.batch_size):
                    logits = _query_logits(model, cache, q_x[sl], device, dtype)
                    yield i, sl, self._member_probs(logits.double(), member)
            if self.verbose:
                print(f"[{type(self).__name__}] ensemble member {i + 1}/{len(self.members_)} done")

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.non_deterministic = False
        return tags


class PFNRegressor(RegressorMixin, _PFNBase):
    """Prior-data fitted network regressor: GP-like Bayesian regression in one forward pass.

    A transformer trained on datasets drawn from a Gaussian-process prior with hyperpriors over
    ARD lengthscales, output scale and noise (mixed with random-MLP functions) returns the
    posterior predictive distribution of every query given the training set as context
    (Müller et al., "Transformers Can Do Bayesian Inference", ICLR 2022). ``fit`` only stores the
    standardised training set; there is no gradient descent and no hyperparameter fitting.

    The network computes in float32 by default (``dtype``). The shipped model takes at most
    ``d_max`` = 10 features and 1000 context points: with more samples every ensemble member
    conditions on a random subset of ``max_context`` of them, with more features every member
    sees a different subset of ``d_max`` features; the members' predictive distributions are
    averaged (a mixture).

    Parameters
    ----------
    n_estimators : int, default=4
        Ensemble members. Members differ in feature order (or feature subset), input transform
        (see ``input_transform``) and, for large training sets, context subset.
    max_context : int or None, default=None
        Context points per member; None uses the model's trained maximum (1000).
    input_transform : {"mixed", "standard", "quantile"}, default="mixed"
        ``"standard"`` standardises each feature; ``"quantile"`` maps it to normal scores
        (``QuantileTransformer``) first; ``"mixed"`` alternates between the two over members.
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

    Attributes
    ----------
    X_ : ndarray of shape (n_samples, n_features)
        The standardised training inputs (the context), float32.
    y_context_ : ndarray of shape (n_samples,)
        The standardised training targets.
    y_mean_, y_scale_ : float
        Target standardisation.
    members_ : list of dict
        Feature indices, context indices and input transform of each member.
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

    @_fit_context(prefer_skip_nested_validation=True)
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
        json_path = _resolve_weights(self.weights, self._task)
        config, _ = _load_state(str(json_path))
        if config.get("normalize_y", True):
            self.y_mean_ = float(y.mean())
            std = float(y.std())
            self.y_scale_ = std if std > 1e-12 * (1.0 + abs(self.y_mean_)) else 1.0
        else:
            self.y_mean_, self.y_scale_ = 0.0, 1.0
        y_std = ((y - self.y_mean_) / self.y_scale_).astype(np.float32)
        return self._fit_common(X, y_std)

    def _member_targets(self, ctx_idx, member):
        return self.y_context_[ctx_idx]

    def _member_probs(self, logits, member):
        return torch.softmax(logits, -1).cpu()

    def _bar(self):
        _, model = _load_model(self.weights_path_, "cpu")
        return model.bar

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
        n_m = len(self.members_)
        for _i, sl, p in self._iter_member_outputs(X):
            if keep:
                probs[sl] += p.numpy() / n_m
            m = bar.mean(p).numpy()
            v = bar.variance(p).numpy()
            mean[sl] += m / n_m
            second[sl] += (v + m**2) / n_m
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
        """Predictive quantiles: ``q`` a float gives shape (n_queries,), a sequence of levels
        shape (n_queries, len(q))."""
        _check_quantiles(q)
        return self.predict_distribution(X).quantile(q)


class PFNClassifier(ClassifierMixin, _PFNBase):
    """Prior-data fitted network classifier (at most 10 classes) in one forward pass.

    A transformer trained on classification datasets whose labels come from latent Gaussian-process
    and random-MLP functions returns the posterior predictive class probabilities of every query
    given the training set as context (Müller et al., ICLR 2022). ``fit`` only stores the
    standardised training set. The network computes in float32 by default (``dtype``).

    Parameters
    ----------
    n_estimators : int, default=4
        Ensemble members; they differ in feature order (or subset), input transform, the
        assignment of classes to the network's label ids and, for large training sets, the
        context subset. Their class probabilities are averaged.
    max_context : int or None, default=None
        Context points per member; None uses the model's trained maximum (1000).
    input_transform : {"mixed", "standard", "quantile"}, default="mixed"
    batch_size : int, default=1024
    weights : str or None, default=None
        None for the shipped weights, or the path of an exported ``.json`` config.
    device : {"auto", "cpu", "cuda"}, default="auto"
    dtype : {"float32", "float64"}, default="float32"
        Precision of the network's forward pass.
    random_state : int, RandomState instance or None, default=None
    verbose : int, default=0

    Attributes
    ----------
    classes_ : ndarray of shape (n_classes,)
    X_ : ndarray of shape (n_samples, n_features)
        The standardised training inputs (the context), float32.
    members_ : list of dict
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

    @_fit_context(prefer_skip_nested_validation=True)
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
        self.classes_, y_enc = np.unique(y, return_inverse=True)
        json_path = _resolve_weights(self.weights, self._task)
        config, _ = _load_state(str(json_path))
        max_classes = int(config.get("max_classes", 10))
        if len(self.classes_) > max_classes:
            raise ValueError(
                f"PFNClassifier supports at most {max_classes} classes, got {len(self.classes_)}"
            )
        return self._fit_common(X, y_enc.astype(np.int64))

    def _member_targets(self, ctx_idx, member):
        return member["labels"][self.y_context_[ctx_idx]]

    def _member_probs(self, logits, member):
        k = len(self.classes_)
        idx = torch.as_tensor(member["labels"][:k], device=logits.device)
        return torch.softmax(logits[:, idx], -1).cpu()

    def predict_proba(self, X):
        """Posterior predictive class probabilities, shape (n_queries, n_classes)."""
        check_is_fitted(self)
        X = validate_data(self, X, reset=False, dtype=np.float64)
        out = np.zeros((X.shape[0], len(self.classes_)))
        for _, sl, p in self._iter_member_outputs(X):
            out[sl] += p.numpy()
        out /= len(self.members_)
        return out / out.sum(1, keepdims=True)

    def predict_log_proba(self, X):
        """Logarithm of :meth:`predict_proba`."""
        return np.log(np.clip(self.predict_proba(X), 1e-300, None))

    def predict(self, X):
        """Most probable class of every query."""
        proba = self.predict_proba(X)
        return self.classes_[np.argmax(proba, 1)]
