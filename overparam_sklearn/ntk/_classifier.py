"""NTKClassifier: one-hot regression by the infinite ensemble, with ensemble-vote probabilities."""


import numpy as np
from sklearn.base import ClassifierMixin, _fit_context
from sklearn.preprocessing import LabelEncoder
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted, validate_data

from .._backend import (
    limits_threads,
    numpy_dtype,
    resolve_dtype,
    to_numpy,
)
from .._validation import atomic_fit, check_finite_cast, check_n_classes
from ._base import _large, _NTKBase


class NTKClassifier(ClassifierMixin, _NTKBase):
    """Classification by an infinite ensemble of infinitely wide networks (MSE on one-hot).

    The targets are one-hot vectors centred at zero (``onehot - 1 / n_classes``) and each
    output is regressed exactly as in :class:`NTKRegressor` (Lee et al. 2019; Arora et al.
    2019). ``decision_function`` returns the ensemble-mean outputs; ``predict`` their argmax.

    ``predict_proba`` is the fraction of the infinite ensemble that votes for each class: at a
    query point the outputs of a random member are independent Gaussians with the ensemble
    means ``mu_c`` and the ensemble standard deviation ``sigma`` (shared by the outputs), and
    ``P(c) = P(argmax_j f_j = c) = E_z[prod_{j != c} Phi((mu_c + sigma z - mu_j) / sigma)]``,
    evaluated by 64-point Gauss-Hermite quadrature. Where ``sigma`` is 0 the vote is unanimous.
    These are not calibrated Bayesian class probabilities.

    Parameters
    ----------
    kernel, n_hidden, activation, w_std, b_std, parameterization, width : see below
        As in :class:`NTKRegressor`.
    architecture, input_shape, alpha, t : see below
        As in :class:`NTKRegressor`.
    input_scales, optimize, ard, n_restarts, random_state : see below
        As in :class:`NTKRegressor`; ``optimize="ml"`` maximises the marginal likelihood of the
        centred one-hot targets (one output scale shared by the classes).
    solver, n_centers, random_state : see below
        As in :class:`NTKRegressor`; ``solver="nystrom"`` gives ``decision_function`` and
        ``predict`` but not ``predict_proba`` (which needs the ensemble's variance).
    device, dtype, n_threads, verbose : see below
        As in :class:`NTKRegressor`.

    Attributes
    ----------
    classes_ : ndarray of shape (n_classes,)
    alpha_ : float
        The ridge used (for ``alpha="auto"`` chosen by the leave-one-out squared error of the
        centred one-hot targets, as ``RidgeClassifierCV`` does).
    dual_coef_ : ndarray of shape (n_samples, n_classes)
        Dual coefficients of the centred one-hot targets.
    X_fit_ : ndarray of shape (n_samples, n_features)
        The training inputs.
    w_std_, b_std_, input_scales_, alpha_, kernel_scale_ : see below
        As in :class:`NTKRegressor`.
    n_features_in_ : int
    feature_names_in_ : ndarray of str

    Examples
    --------
    >>> from sklearn.datasets import load_iris
    >>> from overparam_sklearn import NTKClassifier
    >>> X, y = load_iris(return_X_y=True)
    >>> clf = NTKClassifier(n_hidden=2, alpha=1e-2).fit(X, y)
    >>> clf.predict_proba(X[:2]).shape
    (2, 3)
    """

    @atomic_fit
    @_fit_context(prefer_skip_nested_validation=True)
    @limits_threads(_large)
    def fit(self, X, y):
        """Fit on training data.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
        y : array-like of shape (n_samples,)

        Returns
        -------
        self : NTKClassifier
        """
        dtype = numpy_dtype(resolve_dtype(self.dtype, "float64"))
        X, y = validate_data(self, X, y, dtype=[np.float64, np.float32])
        X = check_finite_cast(X, dtype, "X", f"in dtype={self.dtype!r}")
        check_classification_targets(y)
        encoder = LabelEncoder().fit(y)
        self.classes_ = encoder.classes_
        n_classes = len(self.classes_)
        check_n_classes(self.classes_, self)
        Y = np.eye(n_classes, dtype=dtype)[encoder.transform(y)] - 1.0 / n_classes
        return self._fit_targets(X, Y)

    @limits_threads(_large)
    def _outputs(self, X, return_var=False):
        check_is_fitted(self, "dual_coef_")
        X = validate_data(self, X, reset=False, dtype=[np.float64, np.float32])
        mean, var = self._predict_targets(X, return_var=return_var)
        return to_numpy(mean), (None if var is None else to_numpy(var))

    def decision_function(self, X):
        """Ensemble-mean outputs.

        Parameters
        ----------
        X : array-like of shape (n_queries, n_features)

        Returns
        -------
        scores : ndarray of shape (n_queries,) for two classes (positive means
            ``classes_[1]``), else (n_queries, n_classes)
        """
        mean, _ = self._outputs(X)
        if len(self.classes_) == 2:
            return mean[:, 1] - mean[:, 0]
        return mean

    def predict(self, X):
        """Class with the largest ensemble-mean output.

        Parameters
        ----------
        X : array-like of shape (n_queries, n_features)

        Returns
        -------
        y_pred : ndarray of shape (n_queries,)
        """
        mean, _ = self._outputs(X)
        return self.classes_[np.argmax(mean, axis=1)]

    def predict_proba(self, X):
        """Fraction of the infinite ensemble voting for each class (see the class docstring).

        Parameters
        ----------
        X : array-like of shape (n_queries, n_features)

        Returns
        -------
        proba : ndarray of shape (n_queries, n_classes)
        """
        mean, var = self._outputs(X, return_var=True)
        return _ensemble_vote_probabilities(mean, np.sqrt(var))

    def predict_log_proba(self, X):
        """Logarithm of :meth:`predict_proba`.

        Parameters
        ----------
        X : array-like of shape (n_queries, n_features)

        Returns
        -------
        log_proba : ndarray of shape (n_queries, n_classes)
        """
        with np.errstate(divide="ignore"):
            return np.log(self.predict_proba(X))


def _ensemble_vote_probabilities(mean, std, n_nodes=64):
    """``P(argmax_j N(mean_j, std^2) = c)`` for independent outputs with a shared std."""
    from scipy.special import ndtr

    nodes, weights = np.polynomial.hermite_e.hermegauss(n_nodes)
    weights = weights / weights.sum()
    m, C = mean.shape
    proba = np.zeros_like(mean)
    hard = std <= 1e-12 * np.maximum(1.0, np.abs(mean).max(axis=1))
    safe_std = np.where(hard, 1.0, std)
    diff = (mean[:, :, None] - mean[:, None, :]) / safe_std[:, None, None]  # (m, c, j)
    for z, w in zip(nodes, weights, strict=True):
        cdf = ndtr(diff + z)  # P(f_j < f_c) given z for output c
        idx = np.arange(C)
        cdf[:, idx, idx] = 1.0
        proba += w * np.prod(cdf, axis=2)
    proba[hard] = np.eye(C)[np.argmax(mean[hard], axis=1)]
    proba /= proba.sum(axis=1, keepdims=True)
    return proba
