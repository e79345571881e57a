"""Random features of infinitely wide one-hidden-layer networks, and ridge regression on them.

:class:`RandomFeatures` is the hidden layer of a shallow network frozen at initialisation,
``phi(x) = g(W x + b) / sqrt(N)``, with the Dense conventions of :mod:`overparam_sklearn.kernels`
(``W ~ N(0, w_std^2 / d)``, ``b ~ N(0, b_std^2)``): the inner products ``phi(x) . phi(x')``
converge, as ``N -> infinity``, to ``E[g(u) g(v)]`` for Gaussian pre-activations with the
input layer's covariance ``w_std^2 x.x' / d + b_std^2``. The one-hidden-layer NNGP kernel of
:func:`~overparam_sklearn.kernels.nngp_kernel` adds the readout layer on top::

    nngp_kernel(X, Y, n_hidden=1, activation, w_std, b_std)
        = w_std^2 * lim_N phi(X) phi(Y)^T + b_std^2

so the two coincide for ``w_std=1, b_std=0`` (the default). ``activation="fourier"`` gives the
random Fourier features of Rahimi & Recht (2007) for the RBF kernel
``exp(-w_std^2 |x - x'|^2 / (2 d))``.

:class:`RandomFeatureRegressor` and :class:`RandomFeatureClassifier` fit ridge regression on
those features: the random-feature model of Simon, Karkada, Ghosh & Belkin ("More is Better in
Modern Machine Learning", ICLR 2024), whose risk :func:`overparam_sklearn.theory.rf_risk`
predicts.
"""

import math
import numbers

import numpy as np
import torch
from sklearn.base import (
    BaseEstimator,
    ClassifierMixin,
    ClassNamePrefixFeaturesOutMixin,
    RegressorMixin,
    TransformerMixin,
    _fit_context,
)
from sklearn.preprocessing import LabelBinarizer
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.multiclass import check_classification_targets, type_of_target
from sklearn.utils.validation import check_is_fitted, validate_data

from . import _linalg
from ._backend import (
    DEVICE_OPTIONS,
    DTYPE_OPTIONS,
    LARGE_WORK_ROWS,
    THREADS_OPTIONS,
    DevicePortableMixin,
    check_memory,
    estimate_bytes,
    limits_threads,
    make_generator,
    numpy_dtype,
    resolve_device,
    resolve_dtype,
    rows_per_tile,
    tile_slices,
    to_numpy,
    to_tensor,
    usable_device,
)
from ._validation import atomic_fit, check_gram_range, check_n_classes
from .kernels import parse_activation
from .kernels._fully_connected import check_input_scales

__all__ = ["RandomFeatures", "RandomFeatureRegressor", "RandomFeatureClassifier"]

_FLOATS = [np.float64, np.float32]


def _large(est, n_rows):
    """Feature maps and solves count as large work (torch's thread count) from
    LARGE_WORK_ROWS rows or features on; below, one thread."""
    return max(n_rows, est.n_components) >= LARGE_WORK_ROWS


def _check_activation(activation):
    if activation == "fourier":
        return None
    return parse_activation(activation)  # raises a clear ValueError / TypeError


class RandomFeatures(ClassNamePrefixFeaturesOutMixin, TransformerMixin, DevicePortableMixin,
                     BaseEstimator):
    """Random features of a one-hidden-layer network: ``phi(x) = g(W x + b) / sqrt(N)``.

    ``W`` (``N x d``) has i.i.d. ``N(0, w_std^2 / d)`` entries and ``b`` i.i.d. ``N(0, b_std^2)``
    entries (the Dense conventions of :mod:`overparam_sklearn.kernels`), drawn once in ``fit``
    from a private generator. As ``N`` grows, ``phi(X) phi(Y)^T`` converges (error
    ``O(1/sqrt(N))``) to ``E[g(u) g(v)]`` with ``(u, v)`` Gaussian of covariance
    ``w_std^2 x.y / d + b_std^2``; the one-hidden-layer NNGP kernel is
    ``w_std^2 E[g(u) g(v)] + b_std^2`` (it includes the readout layer), equal for the default
    ``w_std=1, b_std=0``.

    Parameters
    ----------
    n_components : int, default=500
        Number of features ``N``.
    activation : str, default="relu"
        Activation spec of :func:`~overparam_sklearn.kernels.parse_activation` (``"relu"``,
        ``"erf"``, ``"leaky_relu(0.1)"``, ...), or ``"fourier"``: features
        ``sqrt(2 / N) [cos(w_j.x + b_j), sin(w_j.x + b_j)]`` for ``ceil(N / 2)`` frequencies
        ``w_j ~ N(0, w_std^2 / d)`` and phases ``b_j ~ U(0, 2 pi)``, whose kernel is the RBF
        ``exp(-w_std^2 |x - x'|^2 / (2 d))`` (``RBFSampler(gamma)`` corresponds to
        ``w_std = sqrt(2 d gamma)``); ``b_std`` is then unused.
    w_std : float, default=1.0
        Weight standard deviation times ``sqrt(d)``.
    b_std : float, default=0.0
        Bias standard deviation.
    input_scales : array-like of shape (n_features,), default=None
        Per-feature scales ``s``: the weights on feature ``i`` are ``N(0, w_std^2 s_i^2 / d)``
        (the same draws as without scales, multiplied by ``s_i``), so the features converge to
        the kernels with ``input_scales`` of :mod:`overparam_sklearn.kernels` (pre-activation
        covariance ``w_std^2 sum_i s_i^2 x_i y_i / d + b_std^2``; for ``"fourier"`` the ARD RBF
        ``exp(-w_std^2 sum_i s_i^2 (x_i - y_i)^2 / (2 d))``). ``None``: all ones.
    random_state : int, RandomState instance or None, default=None
        Seeds the private torch generator that draws ``W`` and ``b``.
    device : {"auto", "cpu", "cuda"}, default="auto"
        Where the features are computed (in row tiles); the fitted weights are stored on the CPU.
    dtype : {"float32", "float64"} or None, default=None
        Output dtype; ``None`` keeps the input's (float32 stays float32, anything else becomes
        float64). The random weights are drawn in float64 whatever the dtype.
    n_threads : int or None, default=None
        torch intra-op threads inside ``transform`` (restored on exit). ``None``: torch's
        current count from 2000 rows or components on, one thread below (see
        ``benchmarks/threads.py``).

    Attributes
    ----------
    weights_ : ndarray of shape (n_features_in_, n_frequencies)
        ``W^T`` (``n_frequencies = n_components``, or ``ceil(n_components / 2)`` for Fourier).
    offsets_ : ndarray of shape (n_frequencies,)
        ``b``.
    device_ : torch.device
    n_features_in_ : int
    feature_names_in_ : ndarray of str
        Only when ``X`` has string feature names.

    See Also
    --------
    RandomFeatureRegressor : ridge regression on these features.
    sklearn.kernel_approximation.RBFSampler : random Fourier features.

    Examples
    --------
    >>> import numpy as np
    >>> from overparam_sklearn import RandomFeatures
    >>> X = np.random.default_rng(0).normal(size=(4, 3))
    >>> phi = RandomFeatures(n_components=20000, random_state=0).fit_transform(X)
    >>> phi.shape
    (4, 20000)
    >>> from overparam_sklearn.kernels import nngp_kernel
    >>> K = nngp_kernel(X, n_hidden=1, activation="relu").numpy()
    >>> bool(np.abs(phi @ phi.T - K).max() < 0.03)
    True
    """

    _parameter_constraints = {
        "n_components": [Interval(numbers.Integral, 1, None, closed="left")],
        "activation": [str],
        "w_std": [Interval(numbers.Real, 0, None, closed="left")],
        "b_std": [Interval(numbers.Real, 0, None, closed="left")],
        "input_scales": ["array-like", None],
        "random_state": ["random_state"],
        "device": DEVICE_OPTIONS,
        "dtype": DTYPE_OPTIONS + [None],
        "n_threads": THREADS_OPTIONS,
    }

    def __init__(self, n_components=500, activation="relu", w_std=1.0, b_std=0.0,
                 input_scales=None, random_state=None, device="auto", dtype=None,
                 n_threads=None):
        self.n_components = n_components
        self.activation = activation
        self.w_std = w_std
        self.b_std = b_std
        self.input_scales = input_scales
        self.random_state = random_state
        self.device = device
        self.dtype = dtype
        self.n_threads = n_threads

    @atomic_fit
    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y=None):
        """Draw the random weights for inputs with ``X.shape[1]`` features.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
        y : ignored

        Returns
        -------
        self : RandomFeatures
        """
        X = validate_data(self, X, dtype=_FLOATS)
        self._draw(X.shape[1])
        return self

    def _draw(self, d):
        _check_activation(self.activation)
        scales = check_input_scales(self.input_scales, d, torch.empty(0, dtype=torch.float64))
        self.device_ = resolve_device(self.device)
        fourier = self.activation == "fourier"
        m = math.ceil(self.n_components / 2) if fourier else self.n_components
        # W (d x m), its scaled copy and b, in float64, before anything is drawn
        check_memory(
            2 * estimate_bytes((d + 1, m), torch.float64), "cpu",
            f"the {d} x {m} random weights",
            "reduce n_components.",
        )
        # drawn on the CPU whatever the device (the weights are stored as numpy): a CPU fit and
        # a CUDA fit with the same random_state have the same features
        gen = make_generator(self.random_state, "cpu")
        opts = {"dtype": torch.float64, "generator": gen}
        W = torch.randn(d, m, **opts) * (self.w_std / math.sqrt(d))
        if scales is not None:
            W *= scales.to(W.device)[:, None]
        if fourier:
            b = torch.rand(m, **opts) * (2 * math.pi)
        else:
            b = torch.randn(m, **opts) * self.b_std
        self.weights_ = to_numpy(W)
        self.offsets_ = to_numpy(b)
        self._n_features_out = self.n_components
        return self

    @limits_threads(_large)
    def transform(self, X):
        """The random features of ``X``.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)

        Returns
        -------
        Phi : ndarray of shape (n_samples, n_components)
            float32 for float32 input (or ``dtype="float32"``), else float64.
        """
        check_is_fitted(self)
        X = validate_data(self, X, dtype=_FLOATS, reset=False)
        dtype = resolve_dtype(self.dtype, "float32" if X.dtype == np.float32 else "float64")
        return to_numpy(self._features(X, dtype, usable_device(self.device_)))

    def _features(self, X, dtype, device, rows=None):
        """``phi(X)`` as a tensor on ``device``, computed in row tiles of bounded memory."""
        n = X.shape[0]
        N = self.n_components
        check_memory(
            estimate_bytes((n, N), dtype), device, f"the {n} x {N} random-feature matrix",
            "reduce n_components or the number of samples, or use dtype='float32'.",
        )
        W = to_tensor(self.weights_, device, dtype)
        b = to_tensor(self.offsets_, device, dtype)
        Xt = to_tensor(X, device, dtype)
        out = torch.empty((n, N), dtype=dtype, device=device)
        tile = rows or rows_per_tile(W.shape[1], dtype, 2)
        if self.activation == "fourier":
            scale = math.sqrt(2.0 / N)
            n_cos, n_sin = (N + 1) // 2, N // 2
            for sl in tile_slices(n, tile):
                Z = torch.addmm(b, Xt[sl], W)
                out[sl, 0::2] = torch.cos(Z[:, :n_cos]) * scale
                out[sl, 1::2] = torch.sin(Z[:, :n_sin]) * scale
        else:
            fn = parse_activation(self.activation).fn
            scale = 1.0 / math.sqrt(N)
            for sl in tile_slices(n, tile):
                out[sl] = fn(torch.addmm(b, Xt[sl], W)).mul_(scale)
        return out

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.transformer_tags.preserves_dtype = ["float64", "float32"]
        return tags


# ------------------------------------------------------------------------------------------
# ridge on random features


_RIDGE_CONSTRAINTS = {
    **RandomFeatures._parameter_constraints,
    "alpha": [Interval(numbers.Real, 0, None, closed="left"), "array-like",
              StrOptions({"auto"})],
    "alpha_selection": [StrOptions({"loo", "gcv"})],
    "fit_intercept": ["boolean"],
    "verbose": ["verbose"],
}


def _check_alphas(alpha):
    """``(alphas as a 1-D float array, is_grid)``; ``(None, True)`` for ``"auto"``."""
    if isinstance(alpha, str) and alpha == "auto":
        return None, True
    if isinstance(alpha, numbers.Real) and not isinstance(alpha, bool):
        return np.array([float(alpha)]), False
    alphas = np.asarray(alpha, dtype=np.float64).ravel()
    if alphas.size == 0:
        raise ValueError("alpha must be a non-negative float or a non-empty array of them.")
    if not np.all(np.isfinite(alphas)) or np.any(alphas < 0):
        raise ValueError(f"alpha values must be finite and >= 0, got {alpha!r}")
    return alphas, True


class _RandomFeatureRidge(DevicePortableMixin, BaseEstimator):
    """Shared fit/predict of the random-feature ridge estimators (private)."""

    _parameter_constraints = _RIDGE_CONSTRAINTS

    def __init__(self, n_components=500, activation="relu", w_std=1.0, b_std=0.0, alpha="auto",
                 alpha_selection="loo", fit_intercept=True, input_scales=None, random_state=None,
                 device="auto", dtype="float64", n_threads=None, verbose=0):
        self.n_components = n_components
        self.activation = activation
        self.w_std = w_std
        self.b_std = b_std
        self.input_scales = input_scales
        self.alpha = alpha
        self.alpha_selection = alpha_selection
        self.fit_intercept = fit_intercept
        self.random_state = random_state
        self.device = device
        self.dtype = dtype
        self.n_threads = n_threads
        self.verbose = verbose

    @limits_threads(_large)
    def _fit_targets(self, X, Y):
        """Draw the features of ``X`` and fit ridge to ``Y`` (n, t); sets the fitted state."""
        alphas, is_grid = _check_alphas(self.alpha)
        dtype = resolve_dtype(self.dtype, "float64")
        features = RandomFeatures(
            n_components=self.n_components, activation=self.activation, w_std=self.w_std,
            b_std=self.b_std, input_scales=self.input_scales, random_state=self.random_state,
            device=self.device, dtype=self.dtype,
        )
        # same draws as RandomFeatures(...).fit(X): one generator seeded from random_state
        features.n_features_in_ = X.shape[1]
        features._draw(X.shape[1])
        self.random_features_ = features
        self.device_ = features.device_
        n, N = X.shape[0], self.n_components
        if self.verbose:
            print(f"[{type(self).__name__}] {n} x {N} {self.activation} features on "
                  f"{self.device_}", flush=True)
        Phi = features._features(X, dtype, self.device_)
        check_gram_range(Phi, "The random features of X")
        Yt = to_tensor(Y, self.device_, dtype)
        side = min(n, N)
        check_memory(2 * estimate_bytes((side, side), dtype), self.device_,
                     f"the {side} x {side} Gram matrix and its eigenvectors",
                     "reduce n_components or the number of samples.")
        if is_grid:
            dec = _linalg.ridge_decompose(Phi, Yt, self.fit_intercept)
            if alphas is None:  # "auto": a grid relative to the spectrum
                alphas = _linalg.auto_alpha_grid(dec["s"], max(n, N), dtype)
            if self.verbose:
                print(f"[{type(self).__name__}] {dec['mode']} eigendecomposition done; "
                      f"scoring {alphas.size} alphas by {self.alpha_selection}", flush=True)
            mse = to_numpy(_linalg.ridge_path(Phi, Yt, dec, alphas, self.alpha_selection))
            best = int(np.argmin(mse))  # first of ties, in the given order (as RidgeCV)
            alpha = float(alphas[best])
            order = np.argsort(np.argsort(mse, kind="stable"), kind="stable")
            self.cv_results_ = {
                "alphas": alphas.copy(),
                "mean_squared_error": mse,
                "rank": order + 1,
            }
            self.best_score_ = -float(mse[best])
            hint = ("Pass a float alpha to use a value outside it." if isinstance(self.alpha, str)
                    else "Extend the grid.")
            _linalg.warn_if_alpha_on_edge(alphas, best, dec["s"], max(n, N), hint,
                                          stacklevel=7)
            coef, intercept = _linalg.ridge_coef(Phi, dec, alpha)
        else:
            alpha = float(alphas[0])
            coef, intercept = _linalg.ridge_solve(Phi, Yt, alpha, self.fit_intercept)
        del Phi
        finite_intercept = bool(torch.isfinite(torch.as_tensor(intercept)).all())
        if not (_linalg.all_finite(coef) and finite_intercept):
            raise ValueError(
                "The ridge solution on the random features is not finite: the features of X "
                "overflow float64 in their Gram matrix. Rescale X (e.g. with StandardScaler) or "
                "reduce w_std."
            )
        self.alpha_ = alpha
        self.coef_ = to_numpy(coef).T  # (t, N), as sklearn's Ridge
        self.intercept_ = to_numpy(intercept)
        if self.verbose:
            print(f"[{type(self).__name__}] fitted with alpha={alpha:g}", flush=True)

    @limits_threads(_large)
    def _decision(self, X):
        check_is_fitted(self)
        X = validate_data(self, X, dtype=_FLOATS, reset=False)
        dtype = resolve_dtype(self.dtype, "float64")
        device = usable_device(self.device_)
        coef = to_tensor(np.atleast_2d(self.coef_).T, device, dtype)  # (N, t)
        intercept = to_tensor(np.atleast_1d(self.intercept_), device, dtype)
        n = X.shape[0]
        out = np.empty((n, coef.shape[1]), dtype=numpy_dtype(dtype))
        tile = rows_per_tile(self.n_components, dtype, 2)
        for sl in tile_slices(n, tile):
            Phi = self.random_features_._features(X[sl], dtype, device)
            out[sl] = to_numpy(torch.addmm(intercept, Phi, coef))
        return out

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.sparse = False
        return tags


_PARAMS_DOC = """
    Parameters
    ----------
    n_components : int, default=500
        Number of random features ``N``.
    activation : str, default="relu"
        Feature activation (see :class:`RandomFeatures`; ``"fourier"`` for RBF features).
    w_std, b_std : float, default=1.0, 0.0
        Weight (times ``sqrt(d)``) and bias standard deviations of the random layer.
    alpha : "auto", float >= 0 or array-like of floats, default="auto"
        Ridge penalty on the readout weights: the estimator minimises
        ``||y - Phi w - c||^2 + alpha ||w||^2`` with ``Phi`` the features (``1/sqrt(N)`` scaled)
        and an unpenalised intercept ``c``, which is ``sklearn.linear_model.Ridge(alpha)`` on
        ``RandomFeatures(...).fit_transform(X)``, and the paper's unscaled ridge ``delta`` of
        Simon et al. (2024) (and of :func:`overparam_sklearn.theory.rf_risk`). ``0`` fits the
        minimum-norm least-squares solution (the interpolant when ``N >= n``). An array is a
        grid, resolved by ``alpha_selection`` from one eigendecomposition, ``O(n N)`` per alpha.
        ``"auto"`` is such a grid relative to the spectrum: 1e-10 to 100 times the largest
        eigenvalue of the centred feature Gram matrix, four values a decade. A
        ``ConvergenceWarning`` says when the choice is on an edge of a grid and a value beyond
        it could still change the fit.
    alpha_selection : {"loo", "gcv"}, default="loo"
        Exact leave-one-out squared error (what ``RidgeCV`` uses) or generalized
        cross-validation, used when ``alpha`` is a grid.
    fit_intercept : bool, default=True
        Fit an unpenalised intercept (centre features and targets).
    input_scales : array-like of shape (n_features,), default=None
        Per-feature scales of the random layer's weights, as in :class:`RandomFeatures`.
    random_state : int, RandomState instance or None, default=None
        Seeds the random features; the same value gives the same features as
        ``RandomFeatures(random_state=...)``.
    device : {"auto", "cpu", "cuda"}, default="auto"
    dtype : {"float32", "float64"}, default="float64"
        Precision of the features and the solve.
    n_threads : int or None, default=None
        torch intra-op threads in ``fit`` / ``predict`` (restored on exit). ``None``: torch's
        current count from 2000 samples or components on, one thread below (see
        ``benchmarks/threads.py``).
    verbose : int, default=0
        Print progress when > 0.

    Notes
    -----
    The solver picks the primal form (``N x N`` covariance) when ``n_samples >= N`` and the dual
    (``n x n`` Gram) otherwise. A single alpha is a Cholesky solve; a grid (or ``alpha=0``) one
    symmetric eigendecomposition, after which each alpha costs ``O(n min(n, N))``. Eigenvalues
    below ``max(n, N) * eps`` times the largest are treated as zero at ``alpha=0``. Peak memory is
    the ``n x N`` feature matrix plus two ``min(n, N)``-square matrices.
"""


class RandomFeatureRegressor(RegressorMixin, _RandomFeatureRidge):
    __doc__ = """Ridge regression on the random features of a one-hidden-layer network.

    Equivalent, with the same parameters and ``random_state``, to
    ``make_pipeline(RandomFeatures(...), RidgeCV(alphas=alpha))`` (or ``Ridge(alpha)`` for a
    float): predictions agree to round-off. It is faster (one eigendecomposition for the whole
    grid, ``O(n N)`` per alpha instead of ``O(n N^2)``), accepts ``alpha=0`` (the
    minimum-norm interpolant) and runs on a GPU.
""" + _PARAMS_DOC + """
    Attributes
    ----------
    alpha_ : float
        The alpha used (the selected one for a grid).
    best_score_ : float
        Negative mean squared LOO (or GCV) error at ``alpha_`` (grid only).
    cv_results_ : dict of ndarrays
        ``"alphas"``, ``"mean_squared_error"`` (LOO or GCV, per alpha) and ``"rank"`` (grid only).
    coef_ : ndarray of shape (n_components,) or (n_targets, n_components)
    intercept_ : float or ndarray of shape (n_targets,)
    random_features_ : RandomFeatures
        The fitted feature map.
    device_ : torch.device
    n_features_in_ : int
    feature_names_in_ : ndarray of str

    See Also
    --------
    RandomFeatures, RandomFeatureClassifier
    overparam_sklearn.theory.rf_risk : the predicted test error.

    Examples
    --------
    >>> import numpy as np
    >>> from overparam_sklearn import RandomFeatureRegressor
    >>> rng = np.random.default_rng(0)
    >>> X = rng.normal(size=(200, 3)); y = np.sin(X[:, 0]) + 0.1 * rng.normal(size=200)
    >>> reg = RandomFeatureRegressor(n_components=300, b_std=1.0,
    ...                              alpha=np.logspace(-6, 1, 8), random_state=0).fit(X, y)
    >>> reg.alpha_ in reg.cv_results_["alphas"], reg.score(X, y) > 0.9
    (True, True)
    """

    @atomic_fit
    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y):
        """Draw the random features and fit the ridge readout.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
        y : array-like of shape (n_samples,) or (n_samples, n_targets)

        Returns
        -------
        self : RandomFeatureRegressor
        """
        X, y = validate_data(self, X, y, dtype=_FLOATS, multi_output=True, y_numeric=True)
        Y = y.reshape(-1, 1) if y.ndim == 1 else y
        self._fit_targets(X, Y.astype(np.float64, copy=False))
        if y.ndim == 1:
            self.coef_ = self.coef_[0]
            self.intercept_ = float(self.intercept_[0])
        return self

    def predict(self, X):
        """Predict ``phi(X) coef_ + intercept_``.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)

        Returns
        -------
        y : ndarray of shape (n_samples,) or (n_samples, n_targets)
        """
        out = self._decision(X)
        return out[:, 0] if np.ndim(self.coef_) == 1 else out

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.target_tags.multi_output = True
        return tags


class RandomFeatureClassifier(ClassifierMixin, _RandomFeatureRidge):
    __doc__ = """Ridge classifier on the random features of a one-hidden-layer network.

    Targets are coded ``{-1, +1}`` (one column per class, one column for two classes) and fit by
    ridge regression, as :class:`sklearn.linear_model.RidgeClassifierCV` does; the predicted class
    is the largest decision value. ``alpha`` grids are scored by the squared leave-one-out error
    of the coded targets.
""" + _PARAMS_DOC + """
    Attributes
    ----------
    classes_ : ndarray of shape (n_classes,)
    alpha_, best_score_, cv_results_, coef_, intercept_, random_features_, device_
        As in :class:`RandomFeatureRegressor` (``coef_`` has shape ``(1, N)`` for two classes).
    n_features_in_ : int
    feature_names_in_ : ndarray of str

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn.datasets import load_iris
    >>> from overparam_sklearn import RandomFeatureClassifier
    >>> X, y = load_iris(return_X_y=True)
    >>> clf = RandomFeatureClassifier(n_components=200, alpha=np.logspace(-6, 1, 8),
    ...                               random_state=0).fit(X, y)
    >>> clf.score(X, y) > 0.9
    True
    """

    @atomic_fit
    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y):
        """Draw the random features and fit the ridge readout to the coded classes.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
        y : array-like of shape (n_samples,)

        Returns
        -------
        self : RandomFeatureClassifier
        """
        X, y = validate_data(self, X, y, dtype=_FLOATS)
        check_classification_targets(y)
        kind = type_of_target(y)
        if kind not in ("binary", "multiclass"):
            raise ValueError(
                f"RandomFeatureClassifier supports binary and multiclass y; got {kind}."
            )
        binarizer = LabelBinarizer(neg_label=-1, pos_label=1)
        Y = binarizer.fit_transform(y).astype(np.float64)
        self.classes_ = binarizer.classes_
        check_n_classes(self.classes_, self)
        self._fit_targets(X, Y)
        return self

    def decision_function(self, X):
        """Decision values: shape (n_samples,) for two classes, else (n_samples, n_classes).

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)

        Returns
        -------
        scores : ndarray
        """
        out = self._decision(X)
        return out[:, 0] if out.shape[1] == 1 else out

    def predict(self, X):
        """Predict class labels.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)

        Returns
        -------
        y : ndarray of shape (n_samples,)
        """
        scores = self.decision_function(X)
        if scores.ndim == 1:
            return self.classes_[(scores > 0).astype(int)]
        return self.classes_[np.argmax(scores, axis=1)]
