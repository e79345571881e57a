"""scikit-learn :mod:`sklearn.gaussian_process.kernels` adapters for the infinite-width kernels.

:class:`NNGPKernel` and :class:`NTKKernel` wrap :func:`~overparam_sklearn.kernels.fc_kernels` so
that the NNGP / NTK of a fully connected network can be used wherever scikit-learn takes a kernel
object: :class:`~sklearn.gaussian_process.GaussianProcessRegressor` (with hyperparameter
optimisation of ``w_std`` and ``b_std``), sums and products with other kernels,
:class:`~sklearn.kernel_ridge.KernelRidge`, :class:`~sklearn.svm.SVC`,
:class:`~sklearn.kernel_approximation.Nystroem`.

Gradients with respect to the log-hyperparameters are exact: one forward-mode
(:func:`torch.func.jvp`) pass through the recursion per free hyperparameter, with tangent
``d w_std / d log w_std = w_std`` (and likewise for ``b_std``).
"""

import math
import numbers
import warnings

import numpy as np
import torch
from sklearn.gaussian_process.kernels import Hyperparameter, Kernel

from .._backend import check_memory, estimate_bytes, tile_slices
from .._validation import check_real_matrix
from ._empirical import empirical_ntk
from ._fully_connected import _check_diagonals, check_kernel_params, fc_diagonals, fc_kernels
from .layers import _check_architecture, layer_diagonals, layer_kernels

__all__ = ["NNGPKernel", "NTKKernel", "EmpiricalNTKKernel"]


def _as_float64_2d(X, name):
    """``X`` as a float64 CPU tensor of 2 dimensions (dense, real, finite, not empty)."""
    return check_real_matrix(X, name, torch.float64, torch.device("cpu"))


class _FullyConnectedKernel(Kernel):
    """Shared implementation; subclasses set ``_need_ntk`` and the docstring."""

    _need_ntk = False

    def __init__(
        self,
        n_hidden=1,
        activation="relu",
        w_std=1.0,
        b_std=0.1,
        parameterization="ntk",
        width=512,
        w_std_bounds=(0.3, 3.0),
        b_std_bounds=(1e-3, 10.0),
        input_scales=None,
        input_scales_bounds=(1e-2, 10.0),
        architecture=None,
        input_shape=None,
    ):
        self.n_hidden = n_hidden
        self.activation = activation
        self.w_std = w_std
        self.b_std = b_std
        self.parameterization = parameterization
        self.width = width
        self.w_std_bounds = w_std_bounds
        self.b_std_bounds = b_std_bounds
        self.input_scales = input_scales
        self.input_scales_bounds = input_scales_bounds
        self.architecture = architecture
        self.input_shape = input_shape

    # -- hyperparameters -------------------------------------------------------------------
    # A standard deviation of exactly 0 has no logarithm, so it is held fixed whatever its
    # bounds say (b_std=0 is the bias-free network; it stays bias-free under optimisation).
    # With an architecture the layers carry their own w_std / b_std: both are then fixed.
    @property
    def hyperparameter_w_std(self):
        fixed = self._std_value(self.w_std) == 0 or self.architecture is not None
        return Hyperparameter("w_std", "numeric", "fixed" if fixed else self.w_std_bounds)

    @property
    def hyperparameter_b_std(self):
        fixed = self._std_value(self.b_std) == 0 or self.architecture is not None
        return Hyperparameter("b_std", "numeric", "fixed" if fixed else self.b_std_bounds)

    @property
    def hyperparameter_input_scales(self):
        scales = self._scales_value()
        if (scales is None or self.architecture is not None
                or not np.all(np.isfinite(scales)) or np.any(scales <= 0)):
            # None is the isotropic kernel; a zero scale (a dropped feature) has no logarithm.
            return Hyperparameter("input_scales", "numeric", "fixed")
        return Hyperparameter("input_scales", "numeric", self.input_scales_bounds,
                              n_elements=len(scales))

    def _scales_value(self):
        if self.input_scales is None:
            return None
        try:
            scales = np.asarray(self.input_scales, dtype=np.float64)
        except (TypeError, ValueError):
            raise TypeError(
                f"input_scales must be None or a 1-D array of positive floats, got "
                f"{self.input_scales!r}"
            ) from None
        if scales.ndim != 1:
            raise ValueError(
                f"input_scales must be None or 1-D (one scale per feature), got shape "
                f"{scales.shape}"
            )
        return scales

    @staticmethod
    def _std_value(value):
        if isinstance(value, numbers.Real) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, np.ndarray) and value.size == 1:
            return float(value.reshape(()))
        return value  # invalid; reported by _check_params

    def _check_params(self):
        n_hidden = self.n_hidden
        if isinstance(n_hidden, numbers.Integral) and not isinstance(n_hidden, bool):
            n_hidden = int(n_hidden)
        w_std, b_std = self._std_value(self.w_std), self._std_value(self.b_std)
        act = check_kernel_params(
            n_hidden, self.activation, w_std, b_std, self.parameterization, self.width
        )
        return n_hidden, act, w_std, b_std, self._scales_value()

    # -- evaluation ------------------------------------------------------------------------
    def _shaped(self, X, name):
        """Rows of ``X`` reshaped to ``input_shape`` for the architecture."""
        if self.input_shape is None:
            return X
        shape = tuple(self.input_shape)
        if not shape or any(isinstance(s, bool) or not isinstance(s, numbers.Integral) or s < 1
                            for s in shape):
            raise ValueError(f"input_shape must be a tuple of positive ints, got {shape!r}")
        if int(np.prod(shape)) != X.shape[1]:
            raise ValueError(
                f"input_shape {shape} holds {int(np.prod(shape))} values but {name} has "
                f"{X.shape[1]} features"
            )
        return X.reshape((X.shape[0],) + tuple(int(s) for s in shape))

    def _evaluate_architecture(self, X, Y):
        _check_architecture(self.architecture)
        need_ntk = self._need_ntk
        X = self._shaped(X, "X")
        Y = None if Y is None else self._shaped(Y, "Y")
        nngp, ntk = layer_kernels(self.architecture, X, Y, need_ntk=need_ntk,
                                  need_nngp=not need_ntk)
        return ntk if need_ntk else nngp

    def _evaluate(self, X, Y, n_hidden, act, w_std, b_std, scales):
        nngp, ntk = fc_kernels(
            X, Y, n_hidden, act, w_std, b_std, self.parameterization, self.width,
            need_ntk=self._need_ntk, input_scales=scales,
        )
        K = ntk if self._need_ntk else nngp
        if Y is None and isinstance(w_std, torch.Tensor):
            # With tensor hyperparameters (the forward-mode pass) fc_kernels takes its generic
            # path, where the diagonal of k(X, X) sees k11 k22 - k12^2 = +-1e-16 instead of 0:
            # a sqrt(1e-16) error in the relu-family angle, ~1e-8 relative in the NTK diagonal
            # and noise in its derivative. The diagonal recursion is exact and differentiable.
            K = torch.diagonal_scatter(
                K, self._evaluate_diag(X, n_hidden, act, w_std, b_std, scales)
            )
        return K

    def _evaluate_diag(self, X, n_hidden, act, w_std, b_std, scales):
        variances, theta = fc_diagonals(
            X, n_hidden, act, w_std, b_std, self.parameterization, self.width,
            need_ntk=self._need_ntk, input_scales=scales,
        )
        return theta if self._need_ntk else variances[-1]

    def __call__(self, X, Y=None, eval_gradient=False):
        """Return the kernel k(X, Y) and optionally its gradient.

        Parameters
        ----------
        X : array-like of shape (n_samples_X, n_features)
            Left argument of the returned kernel k(X, Y).
        Y : array-like of shape (n_samples_Y, n_features), default=None
            Right argument of the returned kernel k(X, Y). If None, k(X, X) is evaluated.
        eval_gradient : bool, default=False
            Also return the gradient with respect to the log of the non-fixed hyperparameters
            (only when ``Y`` is None).

        Returns
        -------
        K : ndarray of shape (n_samples_X, n_samples_Y), float64
        K_gradient : ndarray of shape (n_samples_X, n_samples_X, n_dims), float64
            Only when ``eval_gradient`` is True; the last axis follows :attr:`theta`.
        """
        n_hidden, act, w_std, b_std, scales = self._check_params()
        if self.input_shape is not None and self.architecture is None:
            raise ValueError("input_shape is only used together with architecture=")
        if Y is not None and eval_gradient:
            raise ValueError("Gradient can only be evaluated when Y is None.")
        if Y is X:
            # pairwise_kernels (KernelRidge, Nystroem) and SVC pass the training set twice: the
            # symmetric evaluation is twice as fast and exact on the diagonal.
            Y = None
        X = _as_float64_2d(X, "X")
        if Y is not None:
            Y = _as_float64_2d(Y, "Y")
            if Y.shape[1] != X.shape[1]:
                raise ValueError(
                    f"X has {X.shape[1]} features but Y has {Y.shape[1]}; they must match."
                )
        n, m = X.shape[0], (X if Y is None else Y).shape[0]
        # the kernel, and with eval_gradient one matrix per free hyperparameter, held twice
        # (the list of gradients and their stack)
        n_free = sum(not hp.fixed for hp in self.hyperparameters) if eval_gradient else 0
        check_memory(
            (1 + 2 * n_free) * estimate_bytes((n, m), torch.float64), "cpu",
            f"the {n} x {m} {type(self).__name__[:-6]} kernel"
            + (f" and its {n_free} gradient matrices" if n_free else ""),
            "Use fewer samples, or an approximation: random features "
            "(overparam_sklearn.RandomFeatures) or sklearn's Nystroem.",
        )
        if self.architecture is not None:
            # no free hyperparameters: the gradient has no columns
            with torch.no_grad():
                K = self._evaluate_architecture(X, Y).numpy()
            return (K, np.empty(K.shape + (0,))) if eval_gradient else K
        if not eval_gradient:
            with torch.no_grad():
                K = self._evaluate(X, Y, n_hidden, act, w_std, b_std, scales)
            return K.numpy()

        # the overflow check needs plain floats (it is skipped inside the forward-mode pass)
        variances, theta = fc_diagonals(X, n_hidden, act, w_std, b_std, self.parameterization,
                                        self.width, need_ntk=self._need_ntk,
                                        input_scales=scales)
        _check_diagonals(variances, theta, "X")
        w = torch.tensor(w_std, dtype=torch.float64)
        b = torch.tensor(b_std, dtype=torch.float64)
        d = X.shape[1]
        s = torch.ones(d, dtype=torch.float64) if scales is None else torch.from_numpy(scales)
        zero = torch.zeros((), dtype=torch.float64)
        zeros = torch.zeros_like(s)

        def kernel_of(w_, b_, s_):
            return self._evaluate(X, None, n_hidden, act, w_, b_, s_)

        # d/d(log p) = p d/dp: push the tangent p e_p forward, one pass per entry of theta, in
        # the order of self.hyperparameters (alphabetical: b_std, input_scales, w_std).
        tangents = []
        for hp in self.hyperparameters:
            if hp.fixed:
                continue
            if hp.name == "w_std":
                tangents.append((w, zero, zeros))
            elif hp.name == "b_std":
                tangents.append((zero, b, zeros))
            else:
                for i in range(d):
                    e_i = torch.zeros_like(s)
                    e_i[i] = s[i]
                    tangents.append((zero, zero, e_i))
        K, grads = None, []
        for tangent in tangents:
            with warnings.catch_warnings():
                # torch's first forward-mode call scripts its jvp decompositions and warns that
                # torch.jit.script is deprecated; that is torch's internal business.
                warnings.filterwarnings(
                    "ignore", message=r".*torch\.jit\.script.* is deprecated",
                    category=DeprecationWarning,
                )
                K, dK = torch.func.jvp(kernel_of, (w, b, s), tangent)
            grads.append(dK.detach().numpy())
        if K is None:
            with torch.no_grad():
                K = kernel_of(w, b, s)
        K = K.detach().numpy()
        n = K.shape[0]
        K_gradient = np.stack(grads, axis=-1) if grads else np.empty((n, n, 0))
        return K, K_gradient

    def diag(self, X):
        """Diagonal ``k(x, x)`` for each row of ``X``, without forming the full matrix.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)

        Returns
        -------
        K_diag : ndarray of shape (n_samples,), float64
        """
        n_hidden, act, w_std, b_std, scales = self._check_params()
        X = _as_float64_2d(X, "X")
        with torch.no_grad():
            if self.architecture is not None:
                _check_architecture(self.architecture)
                nngp, ntk = layer_diagonals(self.architecture, self._shaped(X, "X"),
                                            need_ntk=self._need_ntk)
                return (ntk if self._need_ntk else nngp).numpy()
            variances, theta = fc_diagonals(X, n_hidden, act, w_std, b_std,
                                            self.parameterization, self.width,
                                            need_ntk=self._need_ntk, input_scales=scales)
        _check_diagonals(variances, theta, "X")
        return (theta if self._need_ntk else variances[-1]).numpy()

    def is_stationary(self):
        """Whether the kernel depends only on ``x - x'``: never for these kernels.

        Returns
        -------
        stationary : bool
            False: the kernel depends on the inputs, not only on their difference.
        """
        return False

    @property
    def requires_vector_input(self):
        """Returns True: the kernel is defined on fixed-length feature vectors."""
        return True

    def _repr_params(self):
        if self.architecture is not None:
            return [("architecture", self.architecture), ("input_shape", self.input_shape)]
        out = [("n_hidden", self.n_hidden), ("activation", self.activation),
               ("w_std", self.w_std), ("b_std", self.b_std)]
        if self.input_scales is not None:
            out.append(("input_scales", self.input_scales))
        if self._need_ntk and self.parameterization != "ntk":
            out += [("parameterization", self.parameterization), ("width", self.width)]
        return out

    def __repr__(self):
        parts = []
        for name, value in self._repr_params():
            if isinstance(value, (float, np.floating)):
                parts.append(f"{name}={float(value):.4g}")
            elif name == "input_scales":
                values = np.atleast_1d(np.asarray(value, dtype=float))
                parts.append(f"{name}=[{', '.join(f'{v:.3g}' for v in values)}]")
            else:
                parts.append(f"{name}={value!r}")
        return f"{type(self).__name__}({', '.join(parts)})"


# The parameters of the two fully connected kernels, documented once; <PARAMETERIZATION> and
# <WIDTH> are the two entries whose meaning differs between the NNGP and the NTK.
_FC_PARAMS_DOC = """    Parameters
    ----------
    n_hidden : int, default=1
        Number of hidden layers (each Dense then activation); a readout Dense follows.
    activation : str, default="relu"
        Activation spec: ``"relu"``, ``"leaky_relu(a)"``, ``"abrelu(a,b)"``, ``"abs"``,
        ``"erf"``, ``"gelu"``, ``"sin"``, ``"rbf(gamma)"``, ``"identity"``, ``"sigmoid_like"``.
    w_std : float, default=1.0
        Weight standard deviation (times ``sqrt(fan_in)``).
    b_std : float, default=0.1
        Bias standard deviation (the default is that of the estimators, e.g.
        :class:`~overparam_sklearn.NTKRegressor`; :func:`~overparam_sklearn.nngp_kernel`
        defaults to 0). A value of exactly 0 (no biases) cannot be log-transformed and is
        therefore held fixed, whatever ``b_std_bounds`` says: the bias-free network stays
        bias-free under optimisation. The same rule applies to ``w_std=0``.
    parameterization : {"ntk", "standard"}, default="ntk"
<PARAMETERIZATION>
    width : float, default=512
<WIDTH>
    w_std_bounds : pair of floats > 0 or "fixed", default=(0.3, 3.0)
        Bounds on ``w_std`` for hyperparameter optimisation; ``"fixed"`` excludes it from theta.
        The kernel's amplitude grows like ``w_std^(2 (n_hidden + 1))``, and L-BFGS-B's first
        trial step goes to a corner of the box: with wide bounds that corner has a kernel of
        order ``1e30``, the Cholesky factor fails and the optimiser stops at its start. These
        defaults were chosen by measurement (200 rows of UCI boston, concrete, energy, yacht:
        the fit moves and the LML improves, ``n_restarts_optimizer=0``, 2-4 hidden layers).
    b_std_bounds : pair of floats > 0 or "fixed", default=(1e-3, 10.0)
        Bounds on ``b_std``; ``"fixed"`` excludes it from theta.
    input_scales : array-like of shape (n_features,) or None, default=None
        Per-feature scales ``s`` of the input layer (automatic relevance determination, like
        ``RBF(length_scale=[...])``): the input layer's NNGP becomes
        ``w_std^2 sum_i s_i^2 x_i x'_i / d + b_std^2``, i.e. the kernel of the inputs ``X * s``.
        Scales multiply the inputs (a large ``s_i`` makes feature ``i`` matter more), where RBF
        length scales divide them. ``None`` (the default) is the isotropic kernel and adds no
        hyperparameter; an array adds one hyperparameter per feature (``np.ones(d)`` is the
        usual start). A zero scale has no logarithm: then all scales are held fixed.
    input_scales_bounds : pair of floats > 0 or "fixed", default=(1e-2, 10.0)
        Bounds on each input scale.
    architecture : Layer, default=None
        An architecture of :mod:`overparam_sklearn.kernels.layers` (convolutional, residual,
        ...) in place of the fully connected network. Its layers carry their own ``w_std`` and
        ``b_std``; the kernel then has no free hyperparameters (scale it with a
        ``ConstantKernel`` to fit an amplitude) and the fully connected parameters are unused.
    input_shape : tuple of int, default=None
        Shape of one sample for ``architecture``, e.g. ``(8, 8, 1)`` (NHWC): rows of ``X`` are
        reshaped to it. ``None`` passes rows as vectors.

"""


_FC_NOTES_DOC = """
    Notes
    -----
    Evaluating ``k(X, Y)`` costs ``O(n m (d + n_hidden))`` time and is tiled over rows, so the
    memory is a few ``n x m`` float64 matrices. With ``eval_gradient=True`` there is one extra
    forward-mode pass per non-fixed hyperparameter.
"""


def _fc_params_doc(parameterization, width):
    indent = " " * 8
    return _FC_PARAMS_DOC.replace("<PARAMETERIZATION>", indent + parameterization).replace(
        "<WIDTH>", indent + width
    )


class NNGPKernel(_FullyConnectedKernel):
    __doc__ = """NNGP kernel of an infinitely wide fully connected network, sklearn API.

    The covariance of the outputs of a randomly initialised network ``Dense -> [activation ->
    Dense] * n_hidden`` in the infinite-width limit (Neal 1996; Lee et al. 2018; Matthews et al.
    2018). Dense layers follow neural-tangents: weights ``N(0, w_std^2 / fan_in)``, biases
    ``N(0, b_std^2)``; the input layer gives ``w_std^2 x.x' / d + b_std^2``. Values are those of
    :func:`~overparam_sklearn.kernels.nngp_kernel`, evaluated on the CPU in float64.

    ``w_std`` and ``b_std`` are hyperparameters (log-transformed in :attr:`theta`), so
    :class:`~sklearn.gaussian_process.GaussianProcessRegressor` can fit them by maximising the
    marginal likelihood; the gradient is exact (forward-mode autodiff). ``n_hidden``,
    ``activation``, ``parameterization`` and ``width`` are ordinary parameters (settable with
    ``set_params`` and searchable with :class:`~sklearn.model_selection.GridSearchCV`).

""" + _fc_params_doc(
        "Does not change the NNGP; accepted so that the two kernels share their parameters.",
        "Unused by the NNGP; accepted for symmetry with :class:`NTKKernel`.",
    ) + """    See Also
    --------
    NTKKernel : The neural tangent kernel of the same network.
    overparam_sklearn.kernels.nngp_kernel : The underlying torch function.
""" + _FC_NOTES_DOC + """
    Examples
    --------
    >>> import numpy as np
    >>> from sklearn.gaussian_process import GaussianProcessRegressor
    >>> from sklearn.gaussian_process.kernels import WhiteKernel
    >>> from overparam_sklearn import NNGPKernel
    >>> rng = np.random.default_rng(0)
    >>> X = rng.normal(size=(30, 3))
    >>> y = np.sin(X[:, 0]) + 1.0 + 0.1 * rng.normal(size=30)
    >>> kernel = NNGPKernel(n_hidden=2, activation="erf", w_std=1.0, b_std=0.1)
    >>> kernel
    NNGPKernel(n_hidden=2, activation='erf', w_std=1, b_std=0.1)
    >>> kernel.theta.shape  # log(b_std), log(w_std)
    (2,)
    >>> gpr = GaussianProcessRegressor(kernel + WhiteKernel(1e-2), random_state=0).fit(X, y)
    >>> gpr.predict(X[:2]).shape
    (2,)
    """

    _need_ntk = False


class NTKKernel(_FullyConnectedKernel):
    __doc__ = """Neural tangent kernel of an infinitely wide fully connected network, sklearn API.

    The NTK (Jacot et al. 2018) of the network ``Dense -> [activation -> Dense] * n_hidden``:
    kernel regression with it gives the mean prediction of the infinitely wide network trained to
    convergence by gradient flow on the squared loss (Lee et al. 2019). Dense layers follow
    neural-tangents (weights ``N(0, w_std^2 / fan_in)``, biases ``N(0, b_std^2)``). Values are
    those of :func:`~overparam_sklearn.kernels.ntk_kernel`, evaluated on the CPU in float64.

    ``w_std`` and ``b_std`` are hyperparameters (log-transformed in :attr:`theta`) with exact
    gradients (forward-mode autodiff); the other arguments are ordinary parameters.

""" + _fc_params_doc(
        "neural-tangents' parameterization. In the standard one the NTK grows with ``width``.",
        "Hidden-layer width of the finite network; used only by the standard parameterization.",
    ) + """    See Also
    --------
    NNGPKernel : The NNGP kernel of the same network.
    overparam_sklearn.kernels.ntk_kernel : The underlying torch function.
""" + _FC_NOTES_DOC + """
    Examples
    --------
    >>> import numpy as np
    >>> from sklearn.kernel_ridge import KernelRidge
    >>> from overparam_sklearn import NTKKernel
    >>> rng = np.random.default_rng(0)
    >>> X = rng.normal(size=(30, 3))
    >>> y = np.sin(X[:, 0])
    >>> kernel = NTKKernel(n_hidden=3, activation="relu")
    >>> K = kernel(X)
    >>> K.shape, bool(np.allclose(np.diag(K), kernel.diag(X)))
    ((30, 30), True)
    >>> KernelRidge(alpha=1e-3, kernel=kernel).fit(X, y).predict(X[:2]).shape
    (2,)
    """

    _need_ntk = True


class EmpiricalNTKKernel(Kernel):
    """The empirical NTK of a torch module as a scikit-learn kernel.

    Wraps :func:`empirical_ntk` so that the finite-width NTK of a concrete network (at
    initialisation or after training) can be used in
    :class:`~sklearn.kernel_ridge.KernelRidge`, :class:`~sklearn.svm.SVC` or
    :class:`~sklearn.gaussian_process.GaussianProcessRegressor` (add a ``WhiteKernel`` or set
    ``alpha``). The kernel has no hyperparameters; the module is used as it is, in its own dtype,
    and never changed.

    Parameters
    ----------
    module : torch.nn.Module
        The network; for ``k > 1`` outputs the kernel is the mean over outputs (see
        :func:`empirical_ntk`).
    input_shape : tuple of int, default=None
        Shape of one sample as the module takes it; rows of ``X`` (2-D for scikit-learn) are
        reshaped to it. ``None`` passes the rows as they are.

    Examples
    --------
    >>> import numpy as np, torch
    >>> from sklearn.kernel_ridge import KernelRidge
    >>> from overparam_sklearn.kernels import EmpiricalNTKKernel
    >>> with torch.random.fork_rng():  # building layers draws from the global RNG: restored
    ...     net = torch.nn.Sequential(torch.nn.Linear(4, 32), torch.nn.Tanh(),
    ...                               torch.nn.Linear(32, 1)).double()
    >>> g = torch.Generator().manual_seed(0)  # fixed weights from a private generator
    >>> for p in net.parameters():
    ...     _ = torch.nn.init.normal_(p, std=0.3, generator=g)
    >>> X = np.random.default_rng(0).normal(size=(20, 4)); y = X[:, 0]
    >>> model = KernelRidge(alpha=1e-3, kernel=EmpiricalNTKKernel(net)).fit(X, y)
    >>> model.predict(X[:3]).shape
    (3,)
    """

    def __init__(self, module, input_shape=None):
        self.module = module
        self.input_shape = input_shape

    def _rows(self, X, name):
        if isinstance(X, torch.Tensor):
            X = X.detach().cpu()
        X = check_real_matrix(X, name).numpy()
        if self.input_shape is not None:
            shape = tuple(int(s) for s in self.input_shape)
            if math.prod(shape) != X.shape[1]:
                raise ValueError(
                    f"input_shape {shape} holds {math.prod(shape)} values but {name} has "
                    f"{X.shape[1]} features"
                )
            X = X.reshape((X.shape[0],) + shape)
        return X

    def __call__(self, X, Y=None, eval_gradient=False):
        """Kernel ``k(X, Y)`` (and an empty gradient: there are no hyperparameters).

        Parameters
        ----------
        X : array-like of shape (n_samples_X, n_features)
        Y : array-like of shape (n_samples_Y, n_features), default=None
        eval_gradient : bool, default=False

        Returns
        -------
        K : ndarray of shape (n_samples_X, n_samples_Y), float64
        K_gradient : ndarray of shape (n_samples_X, n_samples_X, 0), only if eval_gradient
        """
        if Y is not None and eval_gradient:
            raise ValueError("Gradient can only be evaluated when Y is None.")
        if Y is X:
            Y = None
        Xr = self._rows(X, "X")
        Yr = None if Y is None else self._rows(Y, "Y")
        K = empirical_ntk(self.module, Xr, Yr).detach().cpu().numpy().astype(np.float64)
        if eval_gradient:
            return K, np.empty((K.shape[0], K.shape[0], 0))
        return K

    def diag(self, X):
        """``k(x, x)`` for each row of ``X``, in chunks (no ``n x n`` matrix).

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)

        Returns
        -------
        K_diag : ndarray of shape (n_samples,), float64
        """
        Xr = self._rows(X, "X")
        out = [torch.diagonal(empirical_ntk(self.module, Xr[sl])).detach().cpu()
               for sl in tile_slices(Xr.shape[0], 256)]
        return torch.cat(out).numpy().astype(np.float64)

    def is_stationary(self):
        """Whether the kernel depends only on ``x - x'``: never for an empirical NTK.

        Returns
        -------
        stationary : bool
            Always False.
        """
        return False

    @property
    def requires_vector_input(self):
        """Returns True."""
        return True

    def __repr__(self):
        return f"{type(self).__name__}(module={type(self.module).__name__})"
