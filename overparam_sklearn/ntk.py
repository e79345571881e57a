"""Infinite ensembles of infinitely wide networks: NTK / NNGP regression and classification.

A fully connected network trained by gradient descent on the MSE loss becomes, as its width goes
to infinity, a linear model in its parameters; averaged over random initialisations its outputs
form a Gaussian process whose mean and covariance at training time ``t`` are closed forms in the
NNGP kernel ``K`` and the neural tangent kernel ``Theta`` (Jacot et al. 2018; Lee et al. 2019,
"Wide neural networks of any depth evolve as linear models under gradient descent", Eq. 14-16).
With ``tau = t / y.size`` (neural-tangents' convention, learning rate 1) and
``A = Theta + alpha I``::

    mean(t) = Theta_*x A^{-1} (I - exp(-tau A)) y
    cov(t)  = K_** + Theta_*x A^{-1}(I - e^{-tau A}) K_xx (I - e^{-tau A}) A^{-1} Theta_x*
              - (Theta_*x A^{-1} (I - e^{-tau A}) K_x* + transpose)

``kernel="nngp"`` trains only the readout layer, i.e. ``Theta`` replaced by ``K``; at ``t=None``
(converged) it is the exact GP posterior with noise variance ``alpha``.
"""

import math
import time
import warnings
from numbers import Integral, Real

import numpy as np
import torch
from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin, _fit_context
from sklearn.preprocessing import LabelEncoder
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted, validate_data

from . import _linalg, _nystrom
from ._backend import (
    DEVICE_OPTIONS,
    DTYPE_OPTIONS,
    LARGE_WORK_ROWS,
    THREADS_OPTIONS,
    DevicePortableMixin,
    check_memory,
    estimate_bytes,
    limits_threads,
    numpy_dtype,
    resolve_device,
    resolve_dtype,
    standardize_targets,
    to_numpy,
    to_tensor,
)
from ._tuning import tune_marginal_likelihood
from ._validation import atomic_fit, check_finite_cast, check_n_classes
from .kernels import fc_diagonals, fc_kernels, parse_activation
from .kernels._fully_connected import check_input_scales
from .kernels.layers import Layer, layer_diagonals, layer_kernels, layer_memory_bytes

__all__ = ["NTKRegressor", "NTKClassifier"]

#: ``solver="auto"`` solves exactly up to this many samples and by Nystrom above (the exact
#: solve's three n x n float64 matrices take 9.6 GB at n = 20,000).
_AUTO_EXACT_MAX_SAMPLES = 20_000
#: ``n_centers=None``: this many Nystrom centres (or n, if fewer).
_DEFAULT_N_CENTERS = 2_000
#: ``alpha="auto"`` with the Nystrom solver: leave-one-out on this many centres.
_AUTO_ALPHA_CENTERS = 2_000


def _large(est, n_rows):
    """Kernel work counts as large (torch's thread count) from LARGE_WORK_ROWS rows on."""
    fitted = getattr(est, "X_fit_", None)
    return max(n_rows, 0 if fitted is None else fitted.shape[0]) >= LARGE_WORK_ROWS


class _NTKBase(DevicePortableMixin, BaseEstimator):
    """Shared parameters and numerics of :class:`NTKRegressor` and :class:`NTKClassifier`."""

    # Pickles carry the fitted tensors on the CPU, without the derived-factor cache; unpickled
    # where device_ is usable they go back to it (see _backend's device policy).
    _transient_state = ("_cache",)
    _state_follows_device = True

    _parameter_constraints = {
        "kernel": [StrOptions({"ntk", "nngp"})],
        "n_hidden": [Interval(Integral, 0, None, closed="left")],
        "activation": [str],
        "w_std": [Interval(Real, 0, None, closed="neither")],
        "b_std": [Interval(Real, 0, None, closed="left")],
        "parameterization": [StrOptions({"ntk", "standard"})],
        "width": [Interval(Integral, 1, None, closed="left")],
        "architecture": [Layer, None],
        "input_shape": [tuple, list, None],
        "alpha": [Interval(Real, 0, None, closed="left"), StrOptions({"auto"})],
        "t": [Interval(Real, 0, None, closed="left"), None],
        "input_scales": ["array-like", None],
        "optimize": [StrOptions({"ml"}), None],
        "ard": ["boolean"],
        "n_restarts": [Interval(Integral, 0, None, closed="left")],
        "solver": [StrOptions({"auto", "exact", "nystrom"})],
        "n_centers": [Interval(Integral, 1, None, closed="left"), None],
        "random_state": ["random_state"],
        "device": DEVICE_OPTIONS,
        "dtype": DTYPE_OPTIONS,
        "n_threads": THREADS_OPTIONS,
        "verbose": ["verbose"],
    }

    def __init__(self, kernel="ntk", n_hidden=1, activation="relu", w_std=1.0, b_std=0.1,
                 parameterization="ntk", width=512, architecture=None, input_shape=None,
                 alpha="auto", t=None, input_scales=None, optimize=None, ard=False,
                 n_restarts=0, solver="auto", n_centers=None, random_state=None,
                 device="auto", dtype="float64", n_threads=None, verbose=0):
        self.kernel = kernel
        self.n_hidden = n_hidden
        self.activation = activation
        self.w_std = w_std
        self.b_std = b_std
        self.parameterization = parameterization
        self.width = width
        self.architecture = architecture
        self.input_shape = input_shape
        self.alpha = alpha
        self.t = t
        self.input_scales = input_scales
        self.optimize = optimize
        self.ard = ard
        self.n_restarts = n_restarts
        self.solver = solver
        self.n_centers = n_centers
        self.random_state = random_state
        self.device = device
        self.dtype = dtype
        self.n_threads = n_threads
        self.verbose = verbose

    # -- kernels ---------------------------------------------------------------------------
    def _kernel_args(self):
        """The fitted kernel's arguments (tuned values with ``optimize``)."""
        return dict(n_hidden=self.n_hidden, activation=self.activation, w_std=self.w_std_,
                    b_std=self.b_std_, parameterization=self.parameterization,
                    width=self.width, input_scales=self.input_scales_)

    def _shaped(self, X):
        """Rows of a 2-D tensor reshaped to ``input_shape`` for the architecture."""
        if self.input_shape is None:
            return X
        return X.reshape((X.shape[0],) + tuple(int(s) for s in self.input_shape))

    def _pair_kernels(self, X1, X2, need_ntk, need_nngp, args=None):
        """(NNGP or None, NTK or None) of the fully connected network or the architecture.

        ``args`` are the fully connected kernel's arguments (default: the fitted ones).
        """
        if self.architecture is not None:
            X2 = None if X2 is None else self._shaped(X2)
            return layer_kernels(self.architecture, self._shaped(X1), X2, need_ntk=need_ntk,
                                 need_nngp=need_nngp)
        args = self._kernel_args() if args is None else args
        return fc_kernels(X1, X2, need_ntk=need_ntk, need_nngp=need_nngp, **args)

    def _prior_variance(self, X):
        """NNGP diagonal ``k(x, x)`` of each row."""
        if self.architecture is not None:
            return layer_diagonals(self.architecture, self._shaped(X), need_ntk=False)[0]
        return fc_diagonals(X, need_ntk=False, **self._kernel_args())[0][-1]

    def _check_architecture(self, n_features):
        """Validate ``architecture`` / ``input_shape`` against the data (clear ValueErrors)."""
        if self.architecture is None:
            if self.input_shape is not None:
                raise ValueError("input_shape is only used together with architecture=")
            parse_activation(self.activation)  # clear ValueError for a bad spec
            return
        if self.input_shape is not None:
            shape = tuple(self.input_shape)
            if not shape or any(isinstance(s, bool) or not isinstance(s, Integral) or s < 1
                                for s in shape):
                raise ValueError(f"input_shape must be a tuple of positive ints, got {shape!r}")
            if math.prod(shape) != n_features:
                raise ValueError(
                    f"input_shape {shape} holds {math.prod(shape)} values per sample but X has "
                    f"{n_features} features"
                )

    def _kernels(self, X1, X2=None, need_nngp=False, args=None):
        """(kernel of the training mode, NNGP or None) between rows of X1 and X2."""
        need_ntk = self.kernel == "ntk"
        nngp, ntk = self._pair_kernels(X1, X2, need_ntk, need_nngp or not need_ntk, args)
        if need_ntk:
            return ntk, (nngp if need_nngp else None)
        return nngp, (nngp if need_nngp else None)

    def _log(self, message):
        if self.verbose:
            print(f"[{type(self).__name__}] {message}", flush=True)

    def _finite_time(self):
        return self.t is not None and not math.isinf(self.t)

    # -- fit -------------------------------------------------------------------------------
    def _resolve_solver(self, n):
        solver = self.solver
        if solver == "auto":
            solver = "exact" if n <= _AUTO_EXACT_MAX_SAMPLES else "nystrom"
        if solver == "nystrom" and self._finite_time():
            raise ValueError(
                f"solver='nystrom' solves the converged ensemble (t=None) only, got t={self.t}; "
                "use solver='exact' for a finite training time."
            )
        return solver

    def _fit_targets(self, X, Y):
        """Fit the flow on validated numpy ``X`` (n, d) and 2-D targets ``Y`` (n, k).

        Builds every fitted attribute into locals and assigns them at the end.
        """
        self._check_architecture(X.shape[1])
        device = resolve_device(self.device)
        dtype = resolve_dtype(self.dtype, "float64")
        solver = self._resolve_solver(X.shape[0])
        args, tuned = self._tuned_kernel_args(X, Y, device, dtype)
        alpha = tuned["alpha"] if tuned is not None else None
        if solver == "nystrom":
            fitted = self._fit_nystrom(X, Y, device, dtype, args, alpha)
        else:
            fitted = self._fit_exact(X, Y, device, dtype, args, alpha)
        # Derived factors filled on first use (eigendecomposition, NNGP train kernel). One
        # container created here, mutated in place later, so predict leaves __dict__ as is.
        # Device tensors of the fitted state are private; X_fit_ and dual_coef_ are their
        # numpy copies for users (as in KernelRidge).
        fitted.update(_cache={}, device_=device, solver_=solver,
                      X_fit_=to_numpy(fitted["_X_fit"]).copy(),
                      dual_coef_=to_numpy(fitted["_dual_coef"]).copy(),
                      w_std_=args["w_std"], b_std_=args["b_std"],
                      input_scales_=args["input_scales"],
                      kernel_scale_=1.0 if tuned is None else tuned["kernel_scale"],
                      _tuned_lml=None if tuned is None else tuned["log_marginal_likelihood"])
        for key, value in fitted.items():
            setattr(self, key, value)
        return self

    def _tuned_kernel_args(self, X, Y, device, dtype):
        """The kernel's arguments, tuned by marginal likelihood with ``optimize="ml"``.

        Returns ``(args, tuned)``; ``tuned`` is None without ``optimize``. Past
        ``_AUTO_ALPHA_CENTERS`` rows the criterion is evaluated on a random subset of that
        many rows (each L-BFGS step costs an ``n x n`` Cholesky factorisation).
        """
        if self.architecture is not None and (self.optimize is not None
                                              or self.input_scales is not None):
            raise ValueError(
                "optimize and input_scales act on the fully connected network's input layer; "
                "with architecture= the layers carry their own w_std and b_std."
            )
        scales = check_input_scales(self.input_scales, X.shape[1], torch.zeros(0, dtype=dtype))
        scales = None if scales is None else to_numpy(scales).astype(np.float64)
        args = dict(n_hidden=self.n_hidden, activation=self.activation, w_std=self.w_std,
                    b_std=self.b_std, parameterization=self.parameterization,
                    width=self.width, input_scales=scales)
        if self.optimize != "ml":
            return args, None
        rng = check_random_state(self.random_state)
        rows = np.arange(X.shape[0])
        if X.shape[0] > _AUTO_ALPHA_CENTERS:
            rows = np.sort(rng.choice(X.shape[0], size=_AUTO_ALPHA_CENTERS, replace=False))
        Xt, Yt = to_tensor(X[rows], device, dtype), to_tensor(Y[rows], device, dtype)
        self._log(f"tuning the {self.kernel.upper()} by marginal likelihood "
                  f"({'one scale per feature' if self.ard else 'one input scale'})")
        with torch.enable_grad():
            tuned = tune_marginal_likelihood(
                Xt, Yt, kind=self.kernel, n_hidden=self.n_hidden,
                activation=self.activation, parameterization=self.parameterization,
                width=self.width, w_std=self.w_std, b_std=self.b_std, input_scales=scales,
                alpha=0.0 if isinstance(self.alpha, str) else float(self.alpha),
                ard=self.ard, n_restarts=self.n_restarts, random_state=rng,
            )
        args.update(w_std=tuned["w_std"], b_std=tuned["b_std"],
                    input_scales=tuned["input_scales"])
        self._log(f"tuned: w_std={tuned['w_std']:.4g}, b_std={tuned['b_std']:.4g}, "
                  f"alpha={tuned['alpha']:.4g}, LML={tuned['log_marginal_likelihood']:.6g}")
        return args, tuned

    def _fit_exact(self, X, Y, device, dtype, args, alpha=None):
        n = X.shape[0]
        check_memory(
            3 * estimate_bytes((n, n), dtype), device,
            f"the {n} x {n} train kernels",
            "Use fewer samples, dtype='float32', solver='nystrom' or random features.",
        )
        if self.architecture is not None:
            # the blocks of pairs of a convolutional architecture (layer_kernels checks again)
            x_shape = (n,) + (tuple(self.input_shape) if self.input_shape else X.shape[1:])
            check_memory(
                layer_memory_bytes(self.architecture, x_shape, n, n, dtype) +
                estimate_bytes((n, n), dtype), device,
                f"the {n} x {n} train kernel of the architecture",
                "Use fewer or smaller images, a Flatten readout instead of pooling, or "
                "dtype='float32'.",
            )
        Xt = to_tensor(X, device, dtype)
        Yt = to_tensor(Y, device, dtype)
        self._log(f"computing the {n} x {n} {self.kernel.upper()} train kernel")
        start = time.perf_counter()
        A, _ = self._kernels(Xt, args=args)
        self._log(f"train kernel done ({time.perf_counter() - start:.1f} s)")
        if alpha is None:
            alpha = (self._select_alpha(A, Yt) if isinstance(self.alpha, str)
                     else float(self.alpha))
        A.diagonal().add_(alpha)
        tau = self.t / Y.size if self._finite_time() else None
        self._log("Cholesky factorisation" if tau is None else f"gradient flow to t={self.t}")
        factor = _linalg.kernel_ridge_factor(
            A, tau, what=f"the {self.kernel.upper()} train kernel plus alpha * I")
        coef = _linalg.kernel_ridge_apply(factor, Yt, tau)
        return dict(_X_fit=Xt, _y_fit=Yt, _dual_coef=coef, _cholesky=factor.get("L"),
                    _train_matrix=factor.get("A"), n_iter_=None, centers_indices_=None,
                    alpha_=alpha)

    def _fit_nystrom(self, X, Y, device, dtype, args, alpha=None):
        n, d = X.shape
        # Centres are drawn among distinct rows: a repeated centre adds nothing to the span
        # and makes K_mm singular (and the preconditioner useless).
        distinct = np.sort(np.unique(X, axis=0, return_index=True)[1])
        m = min(len(distinct),
                self.n_centers if self.n_centers is not None else _DEFAULT_N_CENTERS)
        check_memory(
            _nystrom.nystrom_bytes(n, m, d, Y.shape[1], dtype), device,
            f"the Nystrom solve with {m} centres",
            "Use fewer centres (n_centers) or dtype='float32'.",
        )
        rng = check_random_state(self.random_state)
        centers_idx = np.sort(rng.choice(distinct, size=m, replace=False))
        Xt = to_tensor(X, device, dtype)
        Yt = to_tensor(Y, device, dtype)
        centers = Xt[torch.as_tensor(centers_idx, device=device)].contiguous()
        if alpha is None and not isinstance(self.alpha, str):
            alpha = float(self.alpha)
        if alpha is None:
            # alpha="auto": leave-one-out on (at most 2000 of) the centres. alpha is the noise
            # variance of the GP reading of both solves, so it does not scale with n.
            sub = torch.arange(min(m, _AUTO_ALPHA_CENTERS), device=device)
            alpha = self._select_alpha(self._kernels(centers[sub], args=args)[0],
                                       Yt[torch.as_tensor(centers_idx, device=device)[sub]])
        self._log(f"Nystrom solve with {m} centres on {n} samples")
        coef, n_iter = _nystrom.nystrom_fit(
            lambda A, B: self._kernels(A, B, args=args)[0], Xt, Yt, centers, alpha,
            log=self._log if self.verbose else None)
        return dict(_X_fit=centers, _y_fit=None, _dual_coef=coef.to(dtype), _cholesky=None,
                    _train_matrix=None, n_iter_=n_iter, centers_indices_=centers_idx,
                    alpha_=alpha)

    def _select_alpha(self, K, Y):
        """``alpha="auto"``: the grid alpha with the smallest cross-validation error.

        One eigendecomposition of the train kernel scores the whole grid
        (:func:`~overparam_sklearn._linalg.auto_alpha_grid`, from ``1e-10`` to ``100`` times the
        largest eigenvalue): by exact leave-one-out error at ``t=None``, by GCV at a finite
        ``t`` (the flow is a linear smoother, but not a ridge, so the LOO shortcut is not exact).
        """
        n = K.shape[0]
        finite = self._finite_time()
        tau = self.t / Y.numel() if finite else None
        criterion = "gcv" if finite else "loo"
        start = time.perf_counter()
        s, U = _linalg._eigh_psd(K, f"the {self.kernel.upper()} train kernel")
        alphas = _linalg.auto_alpha_grid(s, n, K.dtype)
        mse = _linalg.kernel_ridge_path(s, U, Y, alphas, criterion, tau)
        best = int(np.argmin(mse))
        _linalg.warn_if_alpha_on_edge(
            alphas, best, s, n, "Pass a float alpha to use a value outside it.", stacklevel=8)
        self._log(f"alpha='auto': {criterion.upper()} over {alphas.size} alphas from one "
                  f"eigendecomposition ({time.perf_counter() - start:.1f} s): "
                  f"alpha_={alphas[best]:.3g}")
        return float(alphas[best])

    # -- predict ---------------------------------------------------------------------------
    def _predict_targets(self, X, return_var=False, return_cov=False):
        """Mean (m, k) and optionally the variance (m,) or covariance (m, m) shared by outputs."""
        check_is_fitted(self, "dual_coef_")
        Xfit = self._X_fit
        Xt = to_tensor(X, Xfit.device, Xfit.dtype)
        if not (return_var or return_cov):  # the mean alone, in row tiles of the kernel
            return _nystrom.kernel_apply(lambda A, B: self._kernels(A, B)[0], Xt, Xfit,
                                         self._dual_coef), None
        if self.solver_ == "nystrom":
            raise ValueError(
                "Predictive variances (return_std, return_cov, predict_proba) are not "
                "available with solver='nystrom'; use solver='exact' (at most about "
                f"{_AUTO_EXACT_MAX_SAMPLES} samples) for them."
            )
        K_td, nngp_td = self._kernels(Xt, Xfit, need_nngp=self.kernel == "ntk")
        mean = K_td @ self._dual_coef
        tau = self.t / self._y_fit.numel() if self._finite_time() else None
        reduction = _linalg.ensemble_variance_reduction(
            self._factor(), K_td, tau, nngp_td=nngp_td if self.kernel == "ntk" else None,
            nngp_train=self._nngp_train, return_cov=return_cov, cache=self._cache)
        if return_cov:
            K_tt, _ = self._pair_kernels(Xt, None, need_ntk=False, need_nngp=True)
            cov = K_tt - reduction
            cov = 0.5 * (cov + cov.T)
            return mean, cov * self.kernel_scale_
        prior_var = self._prior_variance(Xt)
        var = prior_var - reduction
        _warn_negative_variance(var, prior_var)
        return mean, torch.clamp(var, min=0) * self.kernel_scale_

    def _factor(self):
        """The exact solver's factor, as :func:`_linalg.kernel_ridge_factor` returned it."""
        if self._cholesky is not None:
            return {"solver": "cholesky", "L": self._cholesky}
        return {"solver": "flow", "A": self._train_matrix}

    def _nngp_train(self):
        """The NNGP train kernel the NTK-mode covariance needs, computed once per fit.

        Cached on first use (one more ``n x n`` matrix in memory), cleared by ``fit`` and not
        pickled: repeated ``predict(..., return_std=True)`` calls then skip the recursion.
        """
        if "nngp_train" not in self._cache:
            self._cache["nngp_train"], _ = self._pair_kernels(self._X_fit, None, need_ntk=False,
                                                              need_nngp=True)
        return self._cache["nngp_train"]

    def _eigh(self, train_matrix):
        """Eigendecomposition of the regularised train kernel, computed once per fit.

        ``train_matrix`` is a zero-argument callable returning that kernel; it is only called
        when the decomposition is not cached yet.
        """
        if "eigh" not in self._cache:
            self._cache["eigh"] = _linalg.eigh(train_matrix())
        return self._cache["eigh"]

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.allow_nan = False
        return tags


def _warn_negative_variance(var, prior):
    tol = 1e-6 * float(prior.abs().max()) if prior.numel() else 0.0
    if bool((var < -tol).any()):
        warnings.warn(
            "Predicted variances smaller than 0 were set to 0; the train kernel is badly "
            "conditioned. Try gradually increasing alpha.",
            RuntimeWarning,
            stacklevel=3,
        )


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
