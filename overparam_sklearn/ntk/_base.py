"""Shared NTK / NNGP machinery: parameters, kernels, the exact and Nystrom fits, posteriors."""

import math
import time
import warnings
from numbers import Integral, Real

import numpy as np
import torch
from sklearn.base import BaseEstimator
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.validation import check_is_fitted

from .. import _linalg, _nystrom
from .._backend import (
    DEVICE_OPTIONS,
    DTYPE_OPTIONS,
    LARGE_WORK_ROWS,
    THREADS_OPTIONS,
    DevicePortableMixin,
    check_memory,
    estimate_bytes,
    resolve_device,
    resolve_dtype,
    to_numpy,
    to_tensor,
)
from .._tuning import tune_marginal_likelihood
from ..kernels import fc_diagonals, fc_kernels, parse_activation
from ..kernels._fully_connected import check_input_scales
from ..kernels.layers import Layer, layer_diagonals, layer_kernels, layer_memory_bytes

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

