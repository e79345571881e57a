"""NTKRegressor: the infinite ensemble's posterior mean and covariance at time ``t``."""

import math
from numbers import Real

import numpy as np
import torch
from sklearn.base import RegressorMixin, _fit_context
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.validation import check_is_fitted, validate_data

from .. import _linalg
from .._backend import (
    limits_threads,
    numpy_dtype,
    resolve_dtype,
    standardize_targets,
    to_numpy,
    to_tensor,
)
from .._validation import atomic_fit, check_finite_cast
from ._base import _large, _NTKBase


class NTKRegressor(RegressorMixin, _NTKBase):
    """Infinite ensemble of infinitely wide networks trained by gradient descent (NTK / NNGP).

    Predicts the mean and covariance of the outputs of an infinitely wide fully connected
    network trained on the MSE loss for time ``t``, over random initialisations (Lee et al.
    2019). ``kernel="ntk"`` trains every layer (neural tangent kernel regime);
    ``kernel="nngp"`` trains only the readout, which at ``t=None`` is the exact Gaussian process
    posterior of the NNGP prior (Lee et al. 2018). Computed in float64 by default.

    Parameters
    ----------
    kernel : {"ntk", "nngp"}, default="ntk"
        Which layers are trained: all ("ntk") or the readout only ("nngp").
    n_hidden : int, default=1
        Number of hidden layers (each Dense then activation); a readout Dense follows.
    activation : str, default="relu"
        ``"relu"``, ``"leaky_relu(a)"``, ``"abrelu(a,b)"``, ``"abs"``, ``"erf"``, ``"gelu"``,
        ``"sin"``, ``"rbf(gamma)"``, ``"identity"`` or ``"sigmoid_like"``.
    w_std : float, default=1.0
        Weight standard deviation: weights are ``N(0, w_std**2 / fan_in)``.
    b_std : float, default=0.1
        Bias standard deviation. A nonzero bias lets the kernel see more than angles and
        norms of the inputs (without it a ReLU kernel is positively homogeneous).
    parameterization : {"ntk", "standard"}, default="ntk"
        As in neural-tangents. With "standard" the NTK grows with ``width``.
    width : int, default=512
        Hidden width; used only by ``parameterization="standard"``.
    architecture : Layer, default=None
        Any architecture of :mod:`overparam_sklearn.kernels.layers` (e.g. a convolutional
        network ``serial(Conv((3, 3)), Activation("relu"), GlobalAvgPool(), Dense())``) in place
        of the fully connected network; ``n_hidden``, ``activation``, ``w_std``, ``b_std``,
        ``parameterization`` and ``width`` are then not used (the layers carry their own).
    input_shape : tuple of int, default=None
        Shape of one sample for ``architecture``, e.g. ``(8, 8, 1)`` for NHWC images: ``X``
        stays 2-D for scikit-learn and its rows are reshaped. ``None`` passes rows as vectors.
    alpha : float or "auto", default="auto"
        Absolute ridge added to the train kernel's diagonal (the ``KernelRidge`` /
        ``GaussianProcessRegressor`` convention). neural-tangents' relative ``diag_reg``
        corresponds to ``alpha = diag_reg * trace(K_train) / n``. At ``t=None`` with
        ``kernel="nngp"`` it is the observation-noise variance. ``"auto"`` picks it from a grid
        of 1e-10 to 100 times the train kernel's largest eigenvalue (four values a decade) by
        exact leave-one-out error (GCV at a finite ``t``), from one eigendecomposition, as
        ``RidgeCV`` does; that eigendecomposition costs about as much as three to five Cholesky
        factorisations, so pass a float when fitting many times at large ``n``. A
        ``ConvergenceWarning`` says when the choice is on an edge of the grid where a value
        beyond it could still change the fit. With ``solver="nystrom"`` the grid is scored on
        the kernel of (at most 2,000 of) the centres: ``alpha`` is the noise variance of the GP
        reading of both solves, which does not grow with ``n``.
    t : float or None, default=None
        Training time in neural-tangents' convention (learning rate 1; the flow runs as
        ``exp(-K t / y.size)``). ``None`` (or ``inf``) is the converged ensemble, solved by
        Cholesky. A finite ``t`` uses a Krylov (Lanczos) method, not an eigendecomposition.
    input_scales : array-like of shape (n_features,), default=None
        Per-feature scales ``s`` of the input layer (automatic relevance determination): its
        NNGP is ``w_std^2 sum_i s_i^2 x_i x'_i / d + b_std^2`` instead of
        ``w_std^2 x.x' / d + b_std^2``, i.e. the kernels are those of the inputs ``X * s``
        (scales multiply; a large ``s_i`` makes feature ``i`` matter more). ``None``: all ones.
        With ``optimize="ml"`` it is the starting point.
    optimize : {"ml"} or None, default=None
        ``"ml"`` fits the input scales, ``w_std``, ``b_std`` and ``alpha`` by maximising the
        log marginal likelihood of the targets under the Gaussian process
        ``y ~ N(0, c (K + alpha I))`` (``K`` the NNGP or, with ``kernel="ntk"``, the NTK; ``c``
        the output scale, profiled out in closed form), with exact gradients (autograd through
        the kernel recursion and the Cholesky factor) and L-BFGS-B in log space within bounds
        chosen by measurement on the UCI sets. The given ``w_std``, ``b_std``, ``alpha`` and
        ``input_scales`` are the first start (a float ``alpha`` is read relative to the
        kernel's mean diagonal and clipped to ``[0.1, 1]`` of it; ``"auto"`` starts at 0.1).
        ``b_std=0`` stays 0. The criterion is that of the converged model; a finite ``t`` is
        then applied with the tuned values.
        The cost is ``O(n^3)`` per L-BFGS step (typically 50-200 steps): tune on a subsample
        of a few thousand rows for larger sets. A ``ConvergenceWarning`` is raised if no start
        moves.
    ard : bool, default=False
        With ``optimize="ml"``: one input scale per feature (True) or one shared by all.
    n_restarts : int, default=0
        With ``optimize="ml"``: further starts drawn log-uniformly (``w_std`` in [0.5, 2],
        ``b_std`` in [0.01, 1], scales in [0.3, 3], relative noise in [1e-3, 0.3]); the best
        marginal likelihood wins.
    solver : {"auto", "exact", "nystrom"}, default="auto"
        ``"exact"`` factorises the ``n x n`` train kernel (three ``n x n`` matrices in memory).
        ``"nystrom"`` restricts the converged (``t=None``) ensemble mean to the span of
        ``n_centers`` training rows and solves by Falkon-preconditioned conjugate gradients
        (Rudi et al. 2017), with the ``n x n_centers`` kernel evaluated in tiles, never whole:
        memory ``O(n_centers**2)``, time ``O(n * n_centers**2)``. It gives the mean only (no
        ``return_std`` / ``return_cov``). ``"auto"`` is exact up to 20,000 samples and Nystrom
        above.
    n_centers : int or None, default=None
        Number of Nystrom centres (uniformly drawn distinct training rows); ``None`` means
        ``min(n_samples, 2000)``. More centres approach the exact solve (equal at
        ``n_centers = n_samples``).
    random_state : int, RandomState instance or None, default=None
        Draws the Nystrom centres and seeds the restarts of ``optimize="ml"``.
    posterior : {"gaussian", "student_t"}, default="gaussian"
        ``"student_t"`` (``kernel="nngp"``, ``t=None`` only) puts an inverse-gamma prior
        ``InvGamma(prior_shape, prior_scale)`` on a common scale of the kernel and of ``alpha``
        (a scale mixture of NNGPs, Lee et al., ICLR 2022); the predictive distribution is then
        a Student-t with ``2 * prior_shape + n_samples`` degrees of freedom and heavier tails
        when the data disagree with the prior scale.
    prior_shape, prior_scale : float, default=2.0, 2.0
        Shape ``a`` and scale ``b`` of the inverse-gamma prior (``posterior="student_t"``).
    normalize_y : bool, default=True
        Subtract the targets' mean and divide by their standard deviation before fitting (the
        prior is zero-mean); predictions are mapped back. ``False`` fits the raw targets, as
        neural-tangents and ``GaussianProcessRegressor(normalize_y=False)`` do: targets far from
        zero mean are then fitted poorly (R^2 0.24 against 0.35 on ``load_diabetes``).
    device : {"auto", "cpu", "cuda"}, default="auto"
        Where to compute; "auto" uses CUDA when available.
    dtype : {"float64", "float32"}, default="float64"
    n_threads : int or None, default=None
        torch intra-op threads for this estimator's work, set on entry to ``fit`` / ``predict``
        and restored on exit (torch's global setting is left as it was). ``None``: torch's
        current count when the train or query set has at least 2000 rows (large kernels and
        solves gain from the cores), one thread below (small work runs faster on one thread,
        and much faster when other processes share the cores); see ``benchmarks/threads.py``.
    verbose : int, default=0
        Print progress of the kernel and factorisation steps.

    Attributes
    ----------
    alpha_ : float
        The ridge used (the selected one for ``alpha="auto"``).
    dual_coef_ : ndarray of shape (n_samples, n_targets) or (n_centers, n_targets)
        ``A^{-1}(I - exp(-tau A)) y`` (``A^{-1} y`` at ``t=None``) for the normalised targets;
        predictions are ``K(X, X_fit_) @ dual_coef_`` (then mapped back by ``normalize_y``).
        With ``solver="nystrom"``, the coefficients of the centres.
    X_fit_ : ndarray of shape (n_samples, n_features) or (n_centers, n_features)
        The training inputs (with ``solver="nystrom"``: the centres).
    solver_ : {"exact", "nystrom"}
        The solver used.
    centers_indices_ : ndarray of shape (n_centers,) or None
        Rows of the training data used as Nystrom centres.
    n_iter_ : int or None
        Conjugate-gradient iterations of the Nystrom solve.
    log_marginal_likelihood_value_ : float
        Log marginal likelihood of the (normalised) targets, ``kernel="nngp"``, ``t=None``;
        with ``optimize="ml"`` the maximised one (of ``N(0, kernel_scale_ (K + alpha_ I))``,
        for either kernel).
    w_std_, b_std_ : float
        The kernel's weight and bias standard deviations (tuned with ``optimize="ml"``, else
        ``w_std`` and ``b_std``).
    input_scales_ : ndarray of shape (n_features,) or None
        The input scales (tuned with ``optimize="ml"``; else ``input_scales``).
    alpha_ : float
        The ridge on the train kernel's diagonal (tuned with ``optimize="ml"``, else
        ``alpha``).
    kernel_scale_ : float
        The fitted output scale ``c`` (1.0 without ``optimize``): predictive variances are
        multiplied by it, and ``kernel_scale_ * alpha_`` is the noise variance.
    predictive_df_ : float
        Degrees of freedom of the Student-t predictive (``posterior="student_t"``).
    device_ : torch.device
    n_features_in_ : int
    feature_names_in_ : ndarray of str

    See Also
    --------
    NTKClassifier : The same model on one-hot targets.
    overparam_sklearn.NTKKernel : The NTK as a scikit-learn GP kernel.

    Examples
    --------
    >>> import numpy as np
    >>> from overparam_sklearn import NTKRegressor
    >>> rng = np.random.default_rng(0)
    >>> X = rng.normal(size=(50, 3)); y = np.sin(X[:, 0])
    >>> model = NTKRegressor(n_hidden=2, alpha=1e-3).fit(X, y)
    >>> mean, std = model.predict(X[:5], return_std=True)
    >>> mean.shape, std.shape
    ((5,), (5,))
    >>> NTKRegressor(kernel="nngp", t=10.0).fit(X, y).predict(X[:2]).shape
    (2,)

    Input scales, ``w_std``, ``b_std`` and the ridge tuned by marginal likelihood (ARD):

    >>> tuned = NTKRegressor(kernel="nngp", optimize="ml", ard=True).fit(X, y)
    >>> int(np.argmax(tuned.input_scales_))  # y depends on feature 0 only
    0
    """

    _parameter_constraints = {
        **_NTKBase._parameter_constraints,
        "posterior": [StrOptions({"gaussian", "student_t"})],
        "prior_shape": [Interval(Real, 0, None, closed="neither")],
        "prior_scale": [Interval(Real, 0, None, closed="neither")],
        "normalize_y": ["boolean"],
    }

    def __init__(self, kernel="ntk", n_hidden=1, activation="relu", w_std=1.0, b_std=0.1,
                 parameterization="ntk", width=512, architecture=None, input_shape=None,
                 alpha="auto", t=None, input_scales=None, optimize=None, ard=False,
                 n_restarts=0, solver="auto", n_centers=None, random_state=None,
                 posterior="gaussian", prior_shape=2.0, prior_scale=2.0, normalize_y=True,
                 device="auto", dtype="float64", n_threads=None, verbose=0):
        super().__init__(kernel=kernel, n_hidden=n_hidden, activation=activation, w_std=w_std,
                         b_std=b_std, parameterization=parameterization, width=width,
                         architecture=architecture, input_shape=input_shape,
                         alpha=alpha, t=t, input_scales=input_scales, optimize=optimize,
                         ard=ard, n_restarts=n_restarts, solver=solver, n_centers=n_centers,
                         random_state=random_state, device=device, dtype=dtype,
                         n_threads=n_threads, verbose=verbose)
        self.posterior = posterior
        self.prior_shape = prior_shape
        self.prior_scale = prior_scale
        self.normalize_y = normalize_y

    @atomic_fit
    @_fit_context(prefer_skip_nested_validation=True)
    @limits_threads(_large)
    def fit(self, X, y):
        """Fit the infinite ensemble on training data.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
        y : array-like of shape (n_samples,) or (n_samples, n_targets)

        Returns
        -------
        self : NTKRegressor
        """
        if self.posterior == "student_t" and self.optimize is not None:
            raise ValueError(
                "posterior='student_t' integrates the kernel's scale out; it cannot be combined "
                "with optimize='ml', which fits that scale."
            )
        if self.posterior == "student_t" and (self.kernel != "nngp" or self._finite_time()
                                              or self.solver == "nystrom"):
            raise ValueError(
                "posterior='student_t' is the scale-mixture NNGP posterior: it needs "
                f"kernel='nngp', t=None and an exact solve, got kernel={self.kernel!r}, "
                f"t={self.t!r}, solver={self.solver!r}."
            )
        dtype = numpy_dtype(resolve_dtype(self.dtype, "float64"))
        X, y = validate_data(self, X, y, multi_output=True, y_numeric=True,
                             dtype=[np.float64, np.float32])
        X = check_finite_cast(X, dtype, "X", f"in dtype={self.dtype!r}")
        y = np.asarray(y, dtype=dtype)
        self._y_1d = y.ndim == 1
        Y = y.reshape(len(y), -1)
        Y, self._y_mean, self._y_std = standardize_targets(Y, self.normalize_y)
        self._fit_targets(X, Y)
        self.log_marginal_likelihood_value_ = self._tuned_lml
        self.predictive_df_ = None
        if (self.optimize is None and self.kernel == "nngp" and not self._finite_time()
                and self.solver_ == "exact"):
            n, k = Y.shape
            fit_term = (self._y_fit * self._dual_coef).sum(0)  # y' A^{-1} y per output
            logdet = 2 * torch.log(self._cholesky.diagonal()).sum()
            lml = -0.5 * fit_term.sum() - k * (0.5 * logdet + 0.5 * n * math.log(2 * math.pi))
            self.log_marginal_likelihood_value_ = float(lml)
            if self.posterior == "student_t":
                a, b = self.prior_shape, self.prior_scale
                self.predictive_df_ = 2 * a + n
                # posterior of the scale: InvGamma(a + n/2, b + y'A^{-1}y / 2); the predictive
                # is Student-t with df 2a + n and squared scale (2b + y'A^{-1}y)/(2a + n) * var.
                self._t_scale2 = to_numpy((2 * b + fit_term) / (2 * a + n))
        return self

    @limits_threads(_large)
    def predict(self, X, return_std=False, return_cov=False):
        """Predict with the infinite ensemble at training time ``t``.

        Parameters
        ----------
        X : array-like of shape (n_queries, n_features)
        return_std : bool, default=False
            Also return the predictive standard deviation (over initialisations; for
            ``kernel="nngp"``, ``t=None`` the GP posterior std of the latent function).
        return_cov : bool, default=False
            Also return the predictive covariance. Only one of ``return_std`` and
            ``return_cov`` may be set.

        Returns
        -------
        y_mean : ndarray of shape (n_queries,) or (n_queries, n_targets)
        y_std : ndarray of shape (n_queries,) or (n_queries, n_targets), optional
        y_cov : ndarray of shape (n_queries, n_queries[, n_targets]), optional
        """
        if return_std and return_cov:
            raise RuntimeError("At most one of return_std or return_cov can be requested.")
        check_is_fitted(self, "dual_coef_")
        X = validate_data(self, X, reset=False, dtype=[np.float64, np.float32])
        mean, spread = self._predict_targets(X, return_var=return_std, return_cov=return_cov)
        mean = to_numpy(mean) * self._y_std + self._y_mean
        if self._y_1d:
            mean = mean[:, 0]
        if not (return_std or return_cov):
            return mean
        spread = to_numpy(spread)
        scale2 = self._y_std**2
        if self.posterior == "student_t":
            df = self.predictive_df_
            # variance of a Student-t is scale^2 * df / (df - 2) for df > 2
            scale2 = scale2 * self._t_scale2 * (df / (df - 2) if df > 2 else np.inf)
        if return_std:
            std = np.sqrt(spread[:, None] * scale2)
            return mean, (std[:, 0] if self._y_1d else std)
        cov = spread[:, :, None] * scale2
        return mean, (cov[:, :, 0] if self._y_1d else cov)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.target_tags.multi_output = True
        return tags

    @limits_threads(_large)
    def predict_trajectory(self, X, times):
        """Mean predictions at several training times from one eigendecomposition.

        The eigendecomposition of the regularised train kernel is computed once and cached
        (not pickled); each time then costs two matrix-vector products.

        Parameters
        ----------
        X : array-like of shape (n_queries, n_features)
        times : array-like of shape (n_times,)
            Training times (``inf`` allowed).

        Returns
        -------
        y_mean : ndarray of shape (n_times, n_queries) or (n_times, n_queries, n_targets)
        """
        check_is_fitted(self, "dual_coef_")
        X = validate_data(self, X, reset=False, dtype=[np.float64, np.float32])
        if self.solver_ == "nystrom":
            raise ValueError("predict_trajectory needs solver='exact'; this model was fitted "
                             "with solver='nystrom'.")
        times = np.asarray(times, dtype=np.float64).reshape(-1)
        if times.size == 0 or np.isnan(times).any() or (times < 0).any():
            raise ValueError("times must be a non-empty array of non-negative numbers.")
        evals, evecs = self._eigh(self._regularised_train_matrix)
        Xt = to_tensor(X, self._X_fit.device, self._X_fit.dtype)
        K_td, _ = self._kernels(Xt, self._X_fit)
        left = K_td @ evecs  # (m, n)
        right = evecs.T @ self._y_fit  # (n, k)
        out = []
        for t in times:
            tau = t / self._y_fit.numel()
            mean = left @ (_linalg.flow_filter(evals, tau)[:, None] * right)
            mean = to_numpy(mean) * self._y_std + self._y_mean
            out.append(mean[:, 0] if self._y_1d else mean)
        return np.stack(out)

    def _regularised_train_matrix(self):
        if self._train_matrix is not None:
            return self._train_matrix
        A, _ = self._kernels(self._X_fit)
        A.diagonal().add_(self.alpha_)
        return A

