"""Pruning estimators: :class:`DataDietClassifier` and :class:`DataDietSampler`."""

from numbers import Integral, Real

import numpy as np
from sklearn.base import (
    BaseEstimator,
    ClassifierMixin,
    MetaEstimatorMixin,
    _fit_context,
    clone,
)
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import LabelEncoder
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import HasMethods, Interval, StrOptions
from sklearn.utils.metaestimators import available_if
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted, validate_data

from .._validation import atomic_fit, check_n_classes
from ._scorers import EL2NScorer
from ._selection import _select

_PRUNE_CONSTRAINTS = {
    "scorer": [None, HasMethods(["fit"])],
    "keep_fraction": [Interval(Real, 0, 1, closed="right")],
    "keep": [StrOptions({"hardest", "easiest", "random", "stratified"})],
    "drop_hardest_fraction": [Interval(Real, 0, 1, closed="left")],
    "class_balanced": ["boolean"],
    "n_bins": [Interval(Integral, 1, None, closed="left")],
    "random_state": ["random_state"],
    "verbose": ["verbose"],
}

_PRUNE_PARAMS_DOC = """
    scorer : estimator or None, default=None
        Fitted on the training data inside ``fit``; must set ``scores_`` (larger = harder).
        ``None`` is ``EL2NScorer()``. When its ``random_state`` is ``None`` it is seeded from this
        estimator's ``random_state``. Not used when ``keep="random"``.
    keep_fraction : float in (0, 1], default=0.7
        Fraction of the training rows kept (of each class when ``class_balanced``).
    keep : {"hardest", "easiest", "random", "stratified"}, default="hardest"
        Which rows are kept: the largest scores (Paul et al. 2021), the smallest, a uniform
        random subset, or coverage-centric stratified sampling across the score range (CCS,
        Zheng et al. 2023).
    drop_hardest_fraction : float in [0, 1), default=0.0
        Fraction of the hardest rows removed before selecting (CCS's ``beta``; they are often
        mislabelled). Applies to "hardest", "easiest" and "stratified"; ignored for "random".
        ``keep_fraction + drop_hardest_fraction`` must not exceed 1.
    class_balanced : bool, default=False
        Select within each class, keeping ``keep_fraction`` of every class. In any case every
        class keeps at least one row, so the estimator sees all classes.
    n_bins : int, default=50
        Number of score strata for ``keep="stratified"`` (CCS uses 50).
    random_state : int, RandomState instance or None, default=None
        Seeds random and stratified selection and a scorer left unseeded.
    verbose : int, default=0
"""


def _prune(est, X, y):
    """Score (unless random) and select rows; sets the pruning attributes on ``est``."""
    check_classification_targets(y)
    if est.keep_fraction + est.drop_hardest_fraction > 1 + 1e-12 and est.keep != "random":
        raise ValueError(
            f"keep_fraction ({est.keep_fraction}) + drop_hardest_fraction "
            f"({est.drop_hardest_fraction}) must not exceed 1."
        )
    encoder = LabelEncoder().fit(y)
    y_enc = encoder.transform(y)
    rng = check_random_state(est.random_state)
    if est.keep != "random":
        check_n_classes(encoder.classes_, est)  # the scores are defined against other classes
    if est.keep == "random":
        est.scorer_ = None
        est.scores_ = None
        scores = np.zeros(len(y))
    else:
        scorer = clone(est.scorer if est.scorer is not None else EL2NScorer())
        params = scorer.get_params(deep=False)
        if "random_state" in params and params["random_state"] is None:
            scorer.set_params(random_state=int(rng.randint(np.iinfo(np.int32).max)))
        if est.verbose > 0 and "verbose" in params:
            scorer.set_params(verbose=est.verbose)
        scorer.fit(X, y)
        scores = np.asarray(getattr(scorer, "scores_", None), dtype=np.float64)
        if scores.shape != (len(y),):
            raise TypeError(
                f"scorer {type(scorer).__name__} must set scores_, one score per training row, "
                f"in fit; got {getattr(scorer, 'scores_', None)!r:.80}"
            )
        est.scorer_ = scorer
        est.scores_ = scores
        scores = est.scores_
    est.sample_indices_ = _select(
        scores,
        y_enc,
        len(encoder.classes_),
        est.keep_fraction,
        est.keep,
        est.drop_hardest_fraction,
        est.class_balanced,
        est.n_bins,
        rng,
    )
    if est.verbose > 0:
        print(
            f"[{type(est).__name__}] kept {len(est.sample_indices_)} of {len(y)} rows "
            f"(keep={est.keep!r})"
        )
    return est.sample_indices_


def _estimator_has(attr):
    def check(self):
        if hasattr(self, "estimator_"):
            return hasattr(self.estimator_, attr)
        inner = self.estimator if self.estimator is not None else LogisticRegression()
        return hasattr(inner, attr)

    return check


class DataDietClassifier(MetaEstimatorMixin, ClassifierMixin, BaseEstimator):
    __doc__ = (
        """Prune the training set by data-diet scores, then fit a classifier on what is kept.

    ``fit`` fits ``scorer`` on the training rows, keeps ``keep_fraction`` of them by ``keep``,
    and fits a clone of ``estimator`` on the kept rows. Because scoring happens inside ``fit``, the
    classifier can sit in a :class:`~sklearn.pipeline.Pipeline` (where a step cannot drop rows)
    and in :class:`~sklearn.model_selection.GridSearchCV` over ``keep_fraction``: every fold
    scores only its own training rows, so nothing leaks across folds.

    Parameters
    ----------
    estimator : classifier or None, default=None
        Fitted on the kept rows; ``None`` is ``LogisticRegression(max_iter=1000)``."""
        + _PRUNE_PARAMS_DOC
        + """
    Attributes
    ----------
    estimator_ : classifier
        The clone of ``estimator`` fitted on the kept rows.
    scorer_ : estimator or None
        The fitted scorer (``None`` for ``keep="random"``).
    scores_ : ndarray of shape (n_samples,) or None
        Training scores (``None`` for ``keep="random"``).
    sample_indices_ : ndarray of shape (n_kept,)
        Sorted indices of the kept training rows.
    classes_ : ndarray of shape (n_classes,)
    n_features_in_ : int

    Examples
    --------
    >>> from sklearn.datasets import load_iris
    >>> from overparam_sklearn import DataDietClassifier, EL2NScorer
    >>> X, y = load_iris(return_X_y=True)
    >>> clf = DataDietClassifier(
    ...     scorer=EL2NScorer(n_estimators=2, score_epoch=3), keep_fraction=0.5,
    ...     class_balanced=True, random_state=0,
    ... ).fit(X, y)
    >>> len(clf.sample_indices_)  # the 25 hardest rows of each class
    75
    """
    )

    _parameter_constraints = {
        "estimator": [None, HasMethods(["fit", "predict"])],
        **_PRUNE_CONSTRAINTS,
    }

    def __init__(
        self,
        estimator=None,
        scorer=None,
        keep_fraction=0.7,
        keep="hardest",
        drop_hardest_fraction=0.0,
        class_balanced=False,
        n_bins=50,
        random_state=None,
        verbose=0,
    ):
        self.estimator = estimator
        self.scorer = scorer
        self.keep_fraction = keep_fraction
        self.keep = keep
        self.drop_hardest_fraction = drop_hardest_fraction
        self.class_balanced = class_balanced
        self.n_bins = n_bins
        self.random_state = random_state
        self.verbose = verbose

    @atomic_fit
    @_fit_context(prefer_skip_nested_validation=False)
    def fit(self, X, y):
        """Score, prune and fit the estimator on the kept rows.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
        y : array-like of shape (n_samples,)

        Returns
        -------
        self : object
        """
        X, y = validate_data(self, X, y)
        check_classification_targets(y)
        self.classes_ = np.unique(y)
        check_n_classes(self.classes_, self)
        idx = _prune(self, X, y)
        inner = self.estimator if self.estimator is not None else LogisticRegression(max_iter=1000)
        self.estimator_ = clone(inner).fit(X[idx], y[idx])
        return self

    def _check_X(self, X):
        check_is_fitted(self)
        return validate_data(self, X, reset=False)

    @available_if(_estimator_has("predict"))
    def predict(self, X):
        """Predict with the estimator fitted on the kept rows.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)

        Returns
        -------
        y_pred : ndarray of shape (n_samples,)
        """
        X = self._check_X(X)
        return self.estimator_.predict(X)

    @available_if(_estimator_has("predict_proba"))
    def predict_proba(self, X):
        """Class probabilities from the estimator fitted on the kept rows.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)

        Returns
        -------
        proba : ndarray of shape (n_samples, n_classes)
        """
        X = self._check_X(X)
        return self.estimator_.predict_proba(X)

    @available_if(_estimator_has("predict_log_proba"))
    def predict_log_proba(self, X):
        """Log class probabilities from the estimator fitted on the kept rows.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)

        Returns
        -------
        log_proba : ndarray of shape (n_samples, n_classes)
        """
        X = self._check_X(X)
        return self.estimator_.predict_log_proba(X)

    @available_if(_estimator_has("decision_function"))
    def decision_function(self, X):
        """Decision function of the estimator fitted on the kept rows.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)

        Returns
        -------
        scores : ndarray of shape (n_samples,) or (n_samples, n_classes)
        """
        X = self._check_X(X)
        return self.estimator_.decision_function(X)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.sparse = False
        tags.input_tags.allow_nan = False
        return tags


class DataDietSampler(BaseEstimator):
    __doc__ = (
        """Data-diet pruning as an imbalanced-learn sampler: ``fit_resample`` keeps scored rows.

    Use it as a step of :class:`imblearn.pipeline.Pipeline`, which passes the pruned rows on to
    the next steps during ``fit`` and all rows at prediction time (imbalanced-learn's sampler
    API: a ``fit_resample(X, y)`` returning the kept ``(X, y)``). Selection is the same as
    :class:`DataDietClassifier`'s. ``fit_resample`` returns validated numpy arrays.

    Parameters
    ----------"""
        + _PRUNE_PARAMS_DOC
        + """
    Attributes
    ----------
    scorer_ : estimator or None
    scores_ : ndarray of shape (n_samples,) or None
    sample_indices_ : ndarray of shape (n_kept,)
        Sorted indices of the kept rows of the last ``fit`` / ``fit_resample``.
    n_features_in_ : int

    Examples
    --------
    >>> from sklearn.datasets import load_iris
    >>> from overparam_sklearn import DataDietSampler, EL2NScorer
    >>> X, y = load_iris(return_X_y=True)
    >>> sampler = DataDietSampler(EL2NScorer(n_estimators=2, score_epoch=3), keep_fraction=0.4,
    ...                           class_balanced=True, random_state=0)
    >>> X_kept, y_kept = sampler.fit_resample(X, y)
    >>> X_kept.shape
    (60, 4)
    """
    )

    _parameter_constraints = dict(_PRUNE_CONSTRAINTS)

    def __init__(
        self,
        scorer=None,
        keep_fraction=0.7,
        keep="hardest",
        drop_hardest_fraction=0.0,
        class_balanced=False,
        n_bins=50,
        random_state=None,
        verbose=0,
    ):
        self.scorer = scorer
        self.keep_fraction = keep_fraction
        self.keep = keep
        self.drop_hardest_fraction = drop_hardest_fraction
        self.class_balanced = class_balanced
        self.n_bins = n_bins
        self.random_state = random_state
        self.verbose = verbose

    @atomic_fit
    @_fit_context(prefer_skip_nested_validation=False)
    def fit(self, X, y):
        """Score and select rows; ``sample_indices_`` holds the kept indices.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
        y : array-like of shape (n_samples,)

        Returns
        -------
        self : object
        """
        X, y = validate_data(self, X, y)
        _prune(self, X, y)
        return self

    def fit_resample(self, X, y):
        """Fit and return the kept rows.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
        y : array-like of shape (n_samples,)

        Returns
        -------
        X_resampled : ndarray of shape (n_kept, n_features)
        y_resampled : ndarray of shape (n_kept,)
        """
        self.fit(X, y)
        X, y = validate_data(self, X, y, reset=False)
        return X[self.sample_indices_], y[self.sample_indices_]

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.target_tags.required = True
        tags.input_tags.sparse = False
        return tags

