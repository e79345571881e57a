"""The sparse DKM estimators: :class:`SparseDKMRegressor` and :class:`SparseDKMClassifier`."""

import copy
import math
import numbers
import time

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
from sklearn.preprocessing import LabelEncoder
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted, validate_data

from .._backend import (
    DEVICE_OPTIONS,
    DTYPE_OPTIONS,
    THREADS_OPTIONS,
    DevicePortableMixin,
    Progress,
    check_memory,
    estimate_bytes,
    limits_threads,
    make_generator,
    resolve_device,
    resolve_dtype,
    rows_per_tile,
    standardize_targets,
    tile_slices,
    to_tensor,
    usable_device,
)
from .._linalg import cho_solve, cholesky
from .._validation import atomic_fit, check_gram_range, check_n_classes
from ._module import ACTIVATIONS, _SparseDKM

# Monte Carlo draws used by predict_proba (fixed per fit, shared by every row, so that the
# prediction of a row does not depend on the other rows of the batch).
_N_PREDICT_SAMPLES = 256


class _BaseSparseDKM(ClassNamePrefixFeaturesOutMixin, TransformerMixin, DevicePortableMixin,
                     BaseEstimator):
    _parameter_constraints = {
        "n_hidden": [Interval(numbers.Integral, 1, None, closed="left")],
        "activation": [StrOptions(set(ACTIVATIONS))],
        "nu": [Interval(numbers.Real, 0, None, closed="left"), "array-like"],
        "n_inducing": [Interval(numbers.Integral, 1, None, closed="left"), "array-like"],
        "w_std": [Interval(numbers.Real, 0, None, closed="neither"), None],
        "b_std": [Interval(numbers.Real, 0, None, closed="left")],
        "ard": ["boolean"],
        "learn_inducing": ["boolean"],
        "max_iter": [Interval(numbers.Integral, 0, None, closed="left")],
        "batch_size": [Interval(numbers.Integral, 1, None, closed="left")],
        "learning_rate": [Interval(numbers.Real, 0, None, closed="neither")],
        "random_state": ["random_state"],
        "verbose": ["verbose"],
        "device": DEVICE_OPTIONS,
        "dtype": DTYPE_OPTIONS,
        "n_threads": THREADS_OPTIONS,
    }

    def _nu_per_layer(self):
        n_learned = self.n_hidden - 1
        nu = np.asarray(self.nu, dtype=float)
        if nu.ndim == 0:
            nu = np.full(n_learned, float(nu))
        elif nu.ndim != 1 or nu.shape[0] != n_learned:
            raise ValueError(
                f"nu must be a number or have one value per learned Gram layer (n_hidden - 1 = "
                f"{n_learned}), got shape {nu.shape}."
            )
        if not np.all(np.isfinite(nu)) or np.any(nu < 0):
            raise ValueError(f"nu must be finite and non-negative, got {self.nu!r}")
        return nu

    def _w_std(self):
        if self.w_std is not None:
            return float(self.w_std)
        # He scaling keeps the ReLU arc-cosine kernel's diagonal equal to the Gram's diagonal.
        return math.sqrt(2.0) if self.activation == "relu" else 1.0

    def _initial_inducing(self, X, gen):
        n, d = X.shape
        if isinstance(self.n_inducing, numbers.Integral):
            m = min(int(self.n_inducing), n)
            idx = torch.randperm(n, generator=gen)[:m].numpy()
            return X[idx]
        Z = np.asarray(self.n_inducing, dtype=float)
        if Z.ndim != 2 or Z.shape[1] != d or Z.shape[0] < 1:
            raise ValueError(
                f"n_inducing given as an array must have shape (m, {d}) (the initial inducing "
                f"inputs), got shape {Z.shape}."
            )
        if not np.all(np.isfinite(Z)):
            raise ValueError("The inducing inputs given in n_inducing contain NaN or inf.")
        return Z

    def _fit_model(self, X, targets, n_outputs, likelihood):
        """Build and train the module with minibatch Adam; sets the fitted attributes."""
        nu = self._nu_per_layer()
        self.device_ = resolve_device(self.device)
        dtype = resolve_dtype(self.dtype, "float64")
        gen_cpu = make_generator(self.random_state, "cpu")
        Z0 = self._initial_inducing(X, gen_cpu)
        m = Z0.shape[0]
        n = X.shape[0]
        # Parameters (L + 1 Cholesky-sized blocks and C variational factors) and three Adam
        # copies, plus the per-step (b, m) blocks.
        n_params = (self.n_hidden + n_outputs + 1) * m * m
        check_memory(
            4 * estimate_bytes((n_params,), dtype)
            + 8 * estimate_bytes((min(self.batch_size, n), m), dtype),
            self.device_, f"a sparse DKM with {m} inducing points",
            "reduce n_inducing or use dtype='float32'.",
        )
        jitter = 1e-6 if dtype == torch.float64 else 1e-4
        Xt = to_tensor(X, self.device_, dtype)
        Yt = torch.tensor(targets, device=self.device_)
        if Yt.is_floating_point():
            Yt = Yt.to(dtype)
        Zt = torch.tensor(Z0, dtype=dtype, device=self.device_)
        check_gram_range(Xt, "X", self._w_std() ** 2 / X.shape[1])
        gaussian = likelihood == "gaussian"
        module = _SparseDKM(
            Zt, self.n_hidden - 1, self.activation, self._w_std(), self.b_std, n_outputs, self.ard,
            self.learn_inducing, jitter,
            noise=self.noise if gaussian else None,
            min_noise=self.min_noise if gaussian else 0.0,
            learn_noise=self.learn_noise if gaussian else False,
        )
        params = [p for p in module.parameters() if p.requires_grad]
        optimizer = torch.optim.Adam(params, lr=self.learning_rate)
        nu_t = torch.tensor(nu, dtype=dtype, device=self.device_)
        # Minibatch orders come from the CPU generator (so CPU and CUDA fits see the same
        # batches); the Monte Carlo draws of the classifier's likelihood come from a generator on
        # the device, for speed (so they differ between a CPU and a CUDA fit).
        gen = make_generator(self.random_state, self.device_) if self.device_.type != "cpu" \
            else gen_cpu
        batch = min(self.batch_size, n)
        n_mc = getattr(self, "n_mc_samples", 1)
        self.loss_curve_ = []
        start = time.perf_counter()
        report_every = max(1, self.max_iter // 10)
        progress = Progress(self.max_iter, type(self).__name__, self.verbose, unit="epoch")
        for epoch in range(self.max_iter):
            perm = torch.randperm(n, generator=gen_cpu).to(self.device_)
            total, steps = 0.0, 0
            for sl in tile_slices(n, batch):
                idx = perm[sl]
                optimizer.zero_grad(set_to_none=True)
                mean, var, kls = module(Xt[idx])
                ell = self._expected_loglik(module, mean, var, Yt[idx], gen, n_mc)
                reg = module.kl_output()
                if kls:
                    reg = reg + (nu_t * torch.stack(kls)).sum()
                loss = -(ell - reg / n)
                loss.backward()
                optimizer.step()
                total += float(loss.detach())
                steps += 1
            self.loss_curve_.append(total / steps)
            if not np.isfinite(self.loss_curve_[-1]):
                progress.close()
                raise ValueError(
                    "Training diverged (non-finite objective); try a smaller learning_rate, a "
                    "larger min_noise, or standardising X."
                )
            progress.update(objective=f"{self.loss_curve_[-1]:.4f}")
            if (epoch + 1) % report_every == 0 or epoch + 1 == self.max_iter:
                progress.log(
                    f"epoch {epoch + 1}/{self.max_iter}: "
                    f"negative objective per point {self.loss_curve_[-1]:.5f} "
                    f"({time.perf_counter() - start:.1f} s)"
                )
        progress.close()
        self.n_iter_ = self.max_iter
        with torch.no_grad():
            _, kls = module.inducing_chain()
            self.layer_kl_ = np.array([float(k) for k in kls])
        module.requires_grad_(False)
        # Fitted state lives on the CPU so that a pickle loads without a GPU.
        self.module_ = module.to("cpu")
        self.inducing_points_ = module.Z.detach().numpy().astype(np.float64, copy=True)
        self.input_scales_ = torch.exp(module.log_ard).detach().numpy().copy()
        return module

    def _module_on_device(self):
        device = usable_device(self.device_)
        if device.type != "cpu":
            return copy.deepcopy(self.module_).to(device), device
        return self.module_, device

    def _validated_tensor(self, X):
        X = validate_data(self, X, reset=False)
        module, device = self._module_on_device()
        dtype = module.Z.dtype
        return to_tensor(X, device, dtype), module

    @limits_threads()
    def _marginals(self, X):
        """q(f) mean and variance at the rows of X, in row tiles."""
        Xt, module = self._validated_tensor(X)
        m = module.Z.shape[0]
        tile = rows_per_tile(m, Xt.dtype, n_buffers=4 * (module.q_mean.shape[1] + 2))
        means, variances = [], []
        with torch.no_grad():
            chols, _ = module.inducing_chain()
            for sl in tile_slices(Xt.shape[0], tile):
                A, k_t = module.top_features(Xt[sl], chols)
                mean, var = module.output(A, k_t)
                means.append(mean)
                variances.append(var)
        return torch.cat(means).cpu(), torch.cat(variances).cpu()

    def transform(self, X):
        """Learned top-layer representation: kernel features against the inducing points.

        Returns the Nystrom features ``K(G_L)^{ti} chol(K(G_L)^{ii})^{-T}`` of the top layer's
        kernel (the one the output GP uses), so that inner products of two rows are the
        inducing-point approximation ``K^{ti} (K^{ii})^{-1} K^{it}`` of that kernel. A linear
        model on these features is a downstream read-out of the learned representation.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)

        Returns
        -------
        features : ndarray of shape (n_samples, n_inducing)
        """
        check_is_fitted(self)
        Xt, module = self._validated_tensor(X)
        m = module.Z.shape[0]
        tile = rows_per_tile(m, Xt.dtype, n_buffers=8)
        out = []
        with torch.no_grad():
            chols, _ = module.inducing_chain()
            for sl in tile_slices(Xt.shape[0], tile):
                A, _ = module.top_features(Xt[sl], chols)
                out.append(A.T)
        return torch.cat(out).cpu().numpy()

    @property
    def _n_features_out(self):
        """Number of :meth:`transform` features (one per inducing point), for
        ``get_feature_names_out`` (``sparsedkmregressor0``, ...)."""
        return self.inducing_points_.shape[0]

    def inducing_grams(self):
        """The learned inducing Gram matrices ``G_l^{ii}``, one per learned layer.

        Returns
        -------
        grams : list of ndarray of shape (n_inducing, n_inducing)
            ``n_hidden - 1`` matrices, from the second hidden layer up.
        """
        check_is_fitted(self)
        with torch.no_grad():
            chols, _ = self.module_.inducing_chain()
            out = []
            for layer in range(self.module_.n_learned):
                chol = chols[layer][0] @ self.module_.whitened_factor(layer)
                out.append((chol @ chol.T).numpy().copy())
        return out


_DOC_PARAMS = """
    n_hidden : int, default=3
        Number of hidden layers of the network whose NNGP is the ``nu -> inf`` limit
        (``kernels.nngp_kernel(..., n_hidden=n_hidden)``): the activation's kernel map is applied
        ``n_hidden`` times. The first hidden layer's Gram is fixed by the inputs; the other
        ``n_hidden - 1`` have a learned Gram matrix (``L = n_hidden - 1`` in Yang et al. 2023),
        so ``n_hidden=1`` is a plain SVGP with the one-hidden-layer NNGP kernel.
    activation : {"relu", "sqexp", "normalized_gaussian"}, default="relu"
        Kernel map applied to each layer's Gram matrix: the ReLU arc-cosine kernel (the NNGP map of
        ``kernels.parse_activation("relu")``), the squared exponential
        ``exp(-(G_ii + G_jj - 2 G_ij) / 2)`` (the map of ``"rbf(0.5)"``), or the normalised
        Gaussian ``sqrt(G_ii G_jj) exp(G_ij / sqrt(G_ii G_jj) - 1)``. Each is then scaled as a
        dense layer: ``w_std**2 * map + b_std**2``.
    nu : float or array-like of shape (n_hidden - 1,), default=100.0 (regressor), 1.0 (classifier)
        Weight of each layer's KL term (the relative width). Large ``nu`` pins the layers at the
        NNGP; small ``nu`` lets the representation adapt to the data. The regressor's default
        was measured on regression data (user guide, "Threads, progress and defaults"): at
        ``nu=1`` the learned Grams overfit small noisy sets (``load_diabetes`` test R^2 -0.29,
        against 0.29 at ``nu=100``), and ``nu=100`` costs little where the data are nearly
        noiseless (yacht 0.965 against 0.995, energy 0.988 against 0.996). The classifier
        keeps ``nu=1`` (at ``nu=100`` it fell below 90% training accuracy on iris in the
        tests: 20 inducing points, 150 epochs).
    n_inducing : int or array-like of shape (m, n_features), default=100
        Number of inducing points, initialised at a random subset of the training rows (at most
        ``n_samples``), or the initial inducing inputs themselves.
    w_std : float, default=None
        Weight standard deviation of each layer (the input layer's Gram is
        ``w_std**2 x.x' / d + b_std**2``, as in :func:`~overparam_sklearn.kernels.nngp_kernel`).
        ``None`` means ``sqrt(2)`` for ``"relu"`` (variance preserving) and ``1`` otherwise.
    b_std : float, default=0.1
        Bias standard deviation of each layer.
    ard : bool, default=True
        Learn one input scale per feature (automatic relevance determination).
    learn_inducing : bool, default=True
        Learn the inducing inputs.
    max_iter : int, default=100
        Number of epochs (passes over the training data) of minibatch Adam.
    batch_size : int, default=256
        Minibatch size (capped at ``n_samples``).
    learning_rate : float, default=0.01
        Adam step size.
    random_state : int, RandomState instance or None, default=None
        Seeds the inducing-point subset, the minibatch order and the Monte Carlo draws through
        a private :class:`torch.Generator`.
    verbose : int, default=0
        When positive, show a progress bar over the epochs (with the current objective) and
        print the objective about ten times during training.
    device : {"auto", "cpu", "cuda"}, default="auto"
        Where to train; the fitted model is stored on the CPU.
    dtype : {"float32", "float64"}, default="float64"
        Floating type of the computation (float64, as for every kernel solve).
    n_threads : int or None, default=None
        torch intra-op threads for training and prediction, set on entry and restored on exit.
        ``None`` means one: the many small minibatch steps run faster on one thread, and
        several times faster when other processes share the cores (see
        ``benchmarks/threads.py``).
"""

_DOC_ATTRS = """
    module_ : torch.nn.Module
        The trained model (on the CPU).
    inducing_points_ : ndarray of shape (m, n_features)
        Learned inducing inputs.
    input_scales_ : ndarray of shape (n_features,)
        Learned ARD scales (inputs are multiplied by them).
    layer_kl_ : ndarray of shape (n_hidden - 1,)
        ``KL(N(0, G_l^ii) || N(0, K(G_{l-1}^ii)))`` of each layer after training.
    loss_curve_ : list of float
        Mean negative objective (per training point) of each epoch.
    n_iter_ : int
        Number of epochs run.
    n_features_in_ : int
    feature_names_in_ : ndarray of shape (n_features_in_,)
        Defined only when X has feature names that are all strings.
"""


class SparseDKMRegressor(RegressorMixin, _BaseSparseDKM):
    __doc__ = """Sparse deep kernel machine regression (Yang et al., ICML 2023).

    Learns one Gram matrix per hidden layer over a set of inducing points, balancing the fit to
    the data against ``nu``-weighted KL divergences that keep each layer near the kernel of the
    layer below, with a sparse variational GP (Gaussian likelihood, learned noise) on top.
    Trained by minibatch Adam; an epoch costs ``O(n m^2)``. Computation in float64 by default.

    Parameters
    ----------""" + _DOC_PARAMS + """    noise : float, default=0.1
        Initial Gaussian noise variance (in units of the normalised target when
        ``normalize_y=True``).
    min_noise : float, default=1e-6
        Floor of the noise variance.
    learn_noise : bool, default=True
        Learn the noise variance (else it stays at ``noise``).
    normalize_y : bool, default=True
        Standardise the targets with their training mean and standard deviation.
    solve_output : bool, default=True
        After the Adam epochs, replace the output layer's variational distribution by its
        closed-form optimum given the learned layers and noise (Titsias 2009), at the cost of
        one more pass over the training data. The ELBO can only increase.

    Attributes
    ----------""" + _DOC_ATTRS + """    noise_ : ndarray of shape (n_outputs,)
        Learned noise variance on the original target scale.
    y_mean_, y_std_ : ndarray of shape (n_outputs,)
        Target normalisation (zeros and ones when ``normalize_y=False``).

    See Also
    --------
    SparseDKMClassifier : The same model with a categorical likelihood.

    References
    ----------
    A. X. Yang, M. Robeyns, E. Milsom, B. Anson, N. Schoots, L. Aitchison. "A theory of
    representation learning gives a deep generalisation of kernel methods". ICML 2023.

    Examples
    --------
    >>> import numpy as np
    >>> from overparam_sklearn import SparseDKMRegressor
    >>> rng = np.random.default_rng(0)
    >>> X = rng.normal(size=(200, 3))
    >>> y = np.sin(X[:, 0]) + 0.1 * rng.normal(size=200)
    >>> reg = SparseDKMRegressor(n_inducing=20, max_iter=20, random_state=0).fit(X, y)
    >>> mean, std = reg.predict(X[:2], return_std=True)
    >>> mean.shape, std.shape
    ((2,), (2,))
    """

    _parameter_constraints = {
        **_BaseSparseDKM._parameter_constraints,
        "noise": [Interval(numbers.Real, 0, None, closed="neither")],
        "min_noise": [Interval(numbers.Real, 0, None, closed="left")],
        "learn_noise": ["boolean"],
        "normalize_y": ["boolean"],
        "solve_output": ["boolean"],
    }

    def __init__(self, n_hidden=3, activation="relu", nu=100.0, n_inducing=100, w_std=None,
                 b_std=0.1, ard=True, learn_inducing=True, max_iter=100, batch_size=256,
                 learning_rate=0.01, noise=0.1, min_noise=1e-6, learn_noise=True,
                 normalize_y=True, solve_output=True, random_state=None, verbose=0,
                 device="auto", dtype="float64", n_threads=None):
        self.n_hidden = n_hidden
        self.activation = activation
        self.nu = nu
        self.n_inducing = n_inducing
        self.w_std = w_std
        self.b_std = b_std
        self.ard = ard
        self.learn_inducing = learn_inducing
        self.max_iter = max_iter
        self.batch_size = batch_size
        self.learning_rate = learning_rate
        self.noise = noise
        self.min_noise = min_noise
        self.learn_noise = learn_noise
        self.normalize_y = normalize_y
        self.solve_output = solve_output
        self.random_state = random_state
        self.verbose = verbose
        self.device = device
        self.dtype = dtype
        self.n_threads = n_threads

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.target_tags.multi_output = True
        tags.target_tags.single_output = True
        return tags

    @staticmethod
    def _expected_loglik(module, mean, var, y, gen, n_mc):
        # Analytic E_q[log N(y | f, s2)] = -log(2 pi s2)/2 - ((y - mu)^2 + v) / (2 s2).
        s2 = module.noise()
        per = -0.5 * torch.log(2 * math.pi * s2) - ((y - mean) ** 2 + var) / (2 * s2)
        return per.sum(1).mean()

    @atomic_fit
    @_fit_context(prefer_skip_nested_validation=True)
    @limits_threads()
    def fit(self, X, y):
        """Fit the sparse DKM.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
        y : array-like of shape (n_samples,) or (n_samples, n_outputs)

        Returns
        -------
        self : SparseDKMRegressor
        """
        X, y = validate_data(self, X, y, multi_output=True, y_numeric=True,
                             dtype=[np.float64, np.float32])
        y = np.asarray(y, dtype=np.float64)
        self._y_1d = y.ndim == 1
        Y = y.reshape(len(y), -1)
        Yn, self.y_mean_, self.y_std_ = standardize_targets(Y, self.normalize_y)
        self._fit_model(X, Yn, Y.shape[1], "gaussian")
        if self.solve_output:
            self._solve_output(X, Yn)
        with torch.no_grad():
            self.noise_ = self.module_.noise().numpy() * self.y_std_**2
        return self

    def _solve_output(self, X, Y):
        """Set q(v) to its closed-form optimum given the learned layers and noise.

        With whitened inducing outputs ``v`` (``u = chol(K^ii) v``) and ``A = chol(K^ii)^-1
        K^{i,train}`` the ELBO is a conjugate Gaussian model in ``v`` (Titsias 2009; Hensman et
        al. 2013, Eq. 9-10): ``S = (I + A A^T / s2)^-1`` and ``M = S A y / s2``. ``A A^T`` and
        ``A y`` are accumulated over row tiles, so this is one more linear-time pass.
        """
        # On the fit device (a copy of the CPU module there); the result goes back to module_.
        module, device = self._module_on_device()
        dtype = module.Z.dtype
        Xt = to_tensor(X, device, dtype)
        Yt = torch.tensor(Y, dtype=dtype, device=device)
        m = module.Z.shape[0]
        P = torch.zeros((m, m), dtype=dtype, device=device)
        r = torch.zeros((m, Yt.shape[1]), dtype=dtype, device=device)
        with torch.no_grad():
            chols, _ = module.inducing_chain()
            for sl in tile_slices(Xt.shape[0], rows_per_tile(m, dtype, n_buffers=8)):
                A, _ = module.top_features(Xt[sl], chols)
                P += A @ A.T
                r += A @ Yt[sl]
            eye = torch.eye(m, dtype=dtype, device=device)
            target = self.module_
            for c, s2 in enumerate(module.noise()):
                chol_p = cholesky(eye + P / s2, "the output layer's posterior precision")
                mean = cho_solve(chol_p, r[:, c:c + 1] / s2)[:, 0]
                cov = cho_solve(chol_p, eye)
                chol_s = cholesky((cov + cov.T) / 2, "the output layer's posterior covariance")
                target.q_mean[:, c] = mean.cpu()
                target.q_offdiag[c] = torch.tril(chol_s, -1).cpu()
                target.q_logdiag[c] = torch.log(torch.diagonal(chol_s)).cpu()

    def predict(self, X, return_std=False):
        """Predictive mean (and standard deviation) of the target.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
        return_std : bool, default=False
            Also return the predictive standard deviation of a new observation (latent variance
            plus the learned noise).

        Returns
        -------
        y_mean : ndarray of shape (n_samples,) or (n_samples, n_outputs)
        y_std : ndarray, same shape, only when ``return_std=True``
        """
        check_is_fitted(self)
        mean, var = self._marginals(X)
        mean = mean.numpy() * self.y_std_ + self.y_mean_
        if self._y_1d:
            mean = mean[:, 0]
        if not return_std:
            return mean
        with torch.no_grad():
            noise = self.module_.noise().numpy()
        std = np.sqrt(var.numpy() + noise) * self.y_std_
        if self._y_1d:
            std = std[:, 0]
        return mean, std


class SparseDKMClassifier(ClassifierMixin, _BaseSparseDKM):
    __doc__ = """Sparse deep kernel machine classification (Yang et al., ICML 2023).

    The sparse DKM of :class:`SparseDKMRegressor` with one latent GP per class on the top
    layer and a softmax (categorical) likelihood, whose expected log-likelihood is estimated by
    Monte Carlo with reparameterised draws. Computation in float64 by default.

    Parameters
    ----------""" + _DOC_PARAMS + """    n_mc_samples : int, default=8
        Monte Carlo draws of the latent functions per training step.

    Attributes
    ----------""" + _DOC_ATTRS + """    classes_ : ndarray of shape (n_classes,)
    predict_draws_ : ndarray of shape (256, n_classes)
        Standard-normal draws shared by every row in :meth:`predict_proba`, so that a row's
        probabilities do not depend on the other rows.

    See Also
    --------
    SparseDKMRegressor : The same model with a Gaussian likelihood.

    Examples
    --------
    >>> from sklearn.datasets import load_iris
    >>> from overparam_sklearn import SparseDKMClassifier
    >>> X, y = load_iris(return_X_y=True)
    >>> clf = SparseDKMClassifier(n_inducing=15, max_iter=30, random_state=0).fit(X, y)
    >>> clf.predict_proba(X[:2]).shape
    (2, 3)
    """

    _parameter_constraints = {
        **_BaseSparseDKM._parameter_constraints,
        "n_mc_samples": [Interval(numbers.Integral, 1, None, closed="left")],
    }

    def __init__(self, n_hidden=3, activation="relu", nu=1.0, n_inducing=100, w_std=None,
                 b_std=0.1, ard=True, learn_inducing=True, max_iter=100, batch_size=256,
                 learning_rate=0.01, n_mc_samples=8, random_state=None, verbose=0,
                 device="auto", dtype="float64", n_threads=None):
        self.n_hidden = n_hidden
        self.activation = activation
        self.nu = nu
        self.n_inducing = n_inducing
        self.w_std = w_std
        self.b_std = b_std
        self.ard = ard
        self.learn_inducing = learn_inducing
        self.max_iter = max_iter
        self.batch_size = batch_size
        self.learning_rate = learning_rate
        self.n_mc_samples = n_mc_samples
        self.random_state = random_state
        self.verbose = verbose
        self.device = device
        self.dtype = dtype
        self.n_threads = n_threads

    @staticmethod
    def _expected_loglik(module, mean, var, y, gen, n_mc):
        # Monte Carlo E_q[log softmax(f)_y] with reparameterised draws f = mu + sd * eps.
        eps = torch.randn((n_mc,) + tuple(mean.shape), generator=gen, dtype=mean.dtype,
                          device=mean.device)
        f = mean + torch.sqrt(var) * eps
        logp = torch.log_softmax(f, dim=-1)
        return logp.gather(-1, y.expand(n_mc, -1)[..., None]).mean()

    @atomic_fit
    @_fit_context(prefer_skip_nested_validation=True)
    @limits_threads()
    def fit(self, X, y):
        """Fit the sparse DKM classifier.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
        y : array-like of shape (n_samples,)

        Returns
        -------
        self : SparseDKMClassifier
        """
        X, y = validate_data(self, X, y, dtype=[np.float64, np.float32])
        check_classification_targets(y)
        encoder = LabelEncoder()
        codes = encoder.fit_transform(y)
        self.classes_ = encoder.classes_
        check_n_classes(self.classes_, self)
        self._fit_model(X, codes.astype(np.int64), len(self.classes_), "categorical")
        # Fixed standard-normal draws shared by every row at prediction time.
        gen = make_generator(self.random_state, "cpu")
        self.predict_draws_ = torch.randn(
            (_N_PREDICT_SAMPLES, len(self.classes_)), generator=gen,
            dtype=self.module_.Z.dtype,
        ).numpy()
        return self

    def predict_proba(self, X):
        """Class probabilities, ``E_q[softmax(f)]`` by Monte Carlo (256 fixed draws).

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)

        Returns
        -------
        proba : ndarray of shape (n_samples, n_classes)
        """
        check_is_fitted(self)
        mean, var = self._marginals(X)
        draws = torch.from_numpy(self.predict_draws_)
        f = mean[None] + torch.sqrt(var)[None] * draws[:, None, :]
        proba = torch.softmax(f, dim=-1).mean(0)
        return proba.numpy()

    def predict_log_proba(self, X):
        """Logarithm of :meth:`predict_proba`.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)

        Returns
        -------
        log_proba : ndarray of shape (n_samples, n_classes)
        """
        return np.log(self.predict_proba(X))

    def predict(self, X):
        """Most probable class.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)

        Returns
        -------
        y_pred : ndarray of shape (n_samples,)
        """
        check_is_fitted(self)
        return self.classes_[np.argmax(self.predict_proba(X), axis=1)]
