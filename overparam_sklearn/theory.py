"""Eigenframework risk estimates for kernel ridge and random-feature ridge regression.

Two closed-form predictions of the test and train error of ridge regression, from the eigenvalues
``lambda_i`` of a kernel (an integral operator on the data distribution) and the coefficients
``v_i`` of the target function in its orthonormal eigenbasis:

* :func:`krr_risk`: kernel ridge regression with ``n`` samples and ridge ``delta`` (the
  "eigenlearning" estimate of Simon, Dickens, Karkada & DeWeese 2021, also Bordelon et al. 2020,
  Jacot et al. 2020, Canatar et al. 2021).
* :func:`rf_risk`: ridge regression on ``N`` random features whose inner products converge to that
  kernel (Simon, Karkada, Ghosh & Belkin, "More is Better in Modern Machine Learning", ICLR 2024,
  Section 4; also Bach 2023, Atanasov et al. 2024).

Conventions (those of the paper and of its authors' code, see
``../shared/reference/rf_theory_reference.json``):

* The predictor is ``f(x) = k(x, X) (K + delta I)^{-1} y`` with the *unscaled* ridge ``delta``; for
  random features ``K = Phi Phi^T`` with ``Phi`` normalised so that ``E[Phi Phi^T] = K``. With the
  estimators of this package (``phi = g(W x + b) / sqrt(N)``), ``delta`` is exactly the ``alpha``
  of :class:`~overparam_sklearn.RandomFeatureRegressor` and of :class:`sklearn.linear_model.Ridge`
  on the same features.
* ``test_mse`` is measured against *noisy* labels ``y = f*(x) + eps``, ``Var eps = noise``.
* The two effective ridges: ``gamma`` (the effective ridge of the infinite-feature kernel) and
  ``kappa`` (that of the random-feature kernel). For kernel ridge they coincide.

The self-consistent equations (paper, Eq. 4; ``df1(g) = sum_i lambda_i / (lambda_i + g)``,
``df2(g) = sum_i lambda_i^2 / (lambda_i + g)^2``)::

    n - delta / kappa = df1(gamma)                (A)
    N - N kappa / gamma = df1(gamma)              (B)

and the risk (paper, Eq. 5, written with ``z = df1(gamma)``, ``q = df2(gamma)``,
``L_i = lambda_i / (lambda_i + gamma)``)::

    E_te = E0 * (sum_i b_i v_i^2 + noise),
    E0   = n (N - q) / (n (N - q) - q N + 2 q z - z^2),
    b_i  = (1 - L_i) (1 - L_i (N - z) / (N - q)),
    E_tr = (delta / (n kappa))^2 E_te = (1 - z / n)^2 E_te.

As ``N -> infinity``, ``kappa = gamma``, ``E0 = n / (n - q)`` and ``b_i = (1 - L_i)^2``: the kernel
ridge estimate. In the ridgeless limit with ``N < n``, ``kappa = 0``, ``df1(gamma) = N`` and
``E0 = n / (n - N)`` (the noise factor of least squares on ``N`` features); with ``N > n``,
``df1(gamma) = n`` and ``E0 = n (N - q) / ((N - n) (n - q))``.

The equations are solved with a bracketing root finder in one variable (``log(gamma - gamma_*)``,
where ``df1(gamma_*) = N``, which behaves like ``log kappa``), to float64 round-off. This is
theory code: numpy / scipy float64, no torch.
"""

import math
from dataclasses import dataclass, field

import numpy as np
from scipy import optimize

__all__ = [
    "RiskEstimate",
    "krr_risk",
    "rf_risk",
    "optimal_ridge",
    "task_eigenstructure",
    "power_law_task",
]


@dataclass(frozen=True)
class RiskEstimate:
    """Predicted errors of (random-feature) ridge regression and the effective ridges.

    A frozen record returned by :func:`krr_risk`, :func:`rf_risk` and :func:`optimal_ridge`; its
    fields are its constructor's parameters.

    Parameters
    ----------
    test_mse : float
        Predicted test mean squared error against noisy labels (``inf`` at an interpolation
        threshold, e.g. ``alpha=0`` and ``n_features == n``).
    train_mse : float
        Predicted mean squared training error.
    gamma : float
        Effective ridge of the infinite-feature kernel (solution of equations (A)-(B)).
    kappa : float
        Effective ridge of the random-feature kernel; equals ``gamma`` for kernel ridge.
    overfitting_coefficient : float
        ``E0``, the factor multiplying ``bias + noise``.
    bias : float
        ``sum_i b_i v_i^2`` (the test error at zero noise is ``E0 * bias``).
    df1, df2 : float
        ``sum L_i`` and ``sum L_i^2`` at ``gamma``.
    n, n_features, alpha, noise : numbers
        The inputs (``n_features`` is ``None`` for kernel ridge).
    learnabilities : ndarray
        ``L_i = lambda_i / (lambda_i + gamma)``.
    """

    test_mse: float
    train_mse: float
    gamma: float
    kappa: float
    overfitting_coefficient: float
    bias: float
    df1: float
    df2: float
    n: float
    n_features: float | None
    alpha: float
    noise: float
    learnabilities: np.ndarray = field(repr=False, compare=False)

    def residuals(self, eigenvalues):
        """Relative residuals of the self-consistent equations (A) and (B) at the solution.

        Useful as a check; both are at round-off level for a converged solution (a ridgeless
        limit, where ``delta / kappa`` is a ``0 / 0`` limit, reports its defining equation).

        Parameters
        ----------
        eigenvalues : array-like of shape (M,)
            The eigenvalues the estimate was computed from.

        Returns
        -------
        residual_a, residual_b : float
            Relative residuals of equations (A) and (B).
        """
        lam = np.asarray(eigenvalues, dtype=np.float64)
        z = _df1(lam, self.gamma)
        if self.alpha > 0:
            res_a = (z + self.alpha / self.kappa - self.n) / self.n
        else:
            res_a = (z - min(self.n, self.n_features or math.inf)) / self.n
        if self.n_features is None:
            res_b = (self.kappa - self.gamma) / max(self.gamma, np.finfo(float).tiny)
        else:
            N = self.n_features
            res_b = (z + N * self.kappa / self.gamma - N) / N if self.gamma > 0 else 0.0
        return float(res_a), float(res_b)


# ------------------------------------------------------------------------------------------
# validation and the degrees-of-freedom sums


def _check_spectrum(eigenvalues, coefficients):
    lam = np.asarray(eigenvalues, dtype=np.float64)
    v = np.asarray(coefficients, dtype=np.float64)
    if lam.ndim != 1 or lam.size == 0:
        raise ValueError(f"eigenvalues must be a non-empty 1-D array, got shape {lam.shape}")
    if v.ndim not in (1, 2) or v.shape[0] != lam.shape[0]:
        raise ValueError(
            "coefficients must have shape (n_eigenvalues,) or (n_eigenvalues, n_targets) "
            f"matching eigenvalues {lam.shape}, got {v.shape}"
        )
    if not (np.all(np.isfinite(lam)) and np.all(np.isfinite(v))):
        raise ValueError("eigenvalues and coefficients must be finite")
    if np.any(lam < 0):
        raise ValueError("eigenvalues must be non-negative")
    # several targets: the risk is the mean over targets (as mean_squared_error averages them)
    v2 = v**2 if v.ndim == 1 else np.mean(v**2, axis=1)
    return lam, v2


def _check_scalars(n, n_features, alpha, noise):
    if not (np.isscalar(n) and n > 0):
        raise ValueError(f"n must be a positive number, got {n!r}")
    if n_features is not None and not (np.isscalar(n_features) and n_features > 0):
        raise ValueError(f"n_features must be a positive number or None, got {n_features!r}")
    if not (np.isscalar(alpha) and alpha >= 0):
        raise ValueError(f"alpha must be a non-negative number, got {alpha!r}")
    if not (np.isscalar(noise) and noise >= 0):
        raise ValueError(f"noise must be a non-negative number (a variance), got {noise!r}")
    if n_features is not None and math.isinf(n_features):
        n_features = None
    return float(n), (None if n_features is None else float(n_features)), float(alpha), float(
        noise
    )


def _df1(lam, g):
    if g == 0:
        return float(np.count_nonzero(lam > 0))
    return float(np.sum(lam / (lam + g)))


def _df2(lam, g):
    if g == 0:
        return float(np.count_nonzero(lam > 0))
    r = lam / (lam + g)
    return float(np.sum(r * r))


def _learnabilities(lam, g):
    if g == 0:
        return (lam > 0).astype(np.float64)
    return lam / (lam + g)


def _decreasing_root(fun, t0, step=2.0, t_min=-745.0, t_max=745.0):
    """Root of a decreasing function of ``t`` (a log variable): bracket from ``t0``, then Brent."""
    f0 = fun(t0)
    if f0 == 0:
        return t0
    lo, hi = t0, t0
    if f0 > 0:
        while True:
            hi = min(hi + step, t_max)
            if fun(hi) <= 0 or hi >= t_max:
                break
            lo = hi
            step *= 2
    else:
        while True:
            lo = max(lo - step, t_min)
            if fun(lo) >= 0 or lo <= t_min:
                break
            hi = lo
            step *= 2
    f_lo, f_hi = fun(lo), fun(hi)
    if f_lo * f_hi > 0:  # pragma: no cover - guarded by the callers' limits
        raise RuntimeError("could not bracket the effective ridge; check the spectrum")
    return optimize.brentq(fun, lo, hi, xtol=1e-15, rtol=4 * np.finfo(float).eps, maxiter=500)


def _solve_df1(lam, target):
    """``gamma > 0`` with ``df1(gamma) = target`` (needs ``target < #{lambda_i > 0}``)."""
    scale = float(np.sum(lam)) / target

    def fun(t):
        return (_df1(lam, math.exp(t)) - target) / target

    return math.exp(_decreasing_root(fun, math.log(scale)))


# ------------------------------------------------------------------------------------------
# the risk estimates


def _estimate(lam, v2, n, N, alpha, noise, gamma, kappa):
    z = _df1(lam, gamma)
    q = _df2(lam, gamma)
    L = _learnabilities(lam, gamma)
    if N is None:
        denom = n - q
        e0 = n / denom if denom > 0 else math.inf
        b = (1 - L) ** 2
    else:
        denom = n * (N - q) - q * N + 2 * q * z - z * z
        e0 = n * (N - q) / denom if denom > 0 else math.inf
        b = (1 - L) * (1 - L * (N - z) / (N - q)) if N > q else (1 - L) ** 2
    bias = float(np.sum(b * v2))
    test = e0 * (bias + noise) if math.isfinite(e0) else math.inf
    # (delta / (n kappa)) = 1 - z / n by equation (A); exact in the ridgeless limits too
    ratio = max(1.0 - z / n, 0.0)
    train = ratio**2 * test if math.isfinite(test) else (0.0 if ratio == 0 else math.inf)
    return RiskEstimate(
        test_mse=float(test),
        train_mse=float(train),
        gamma=float(gamma),
        kappa=float(kappa),
        overfitting_coefficient=float(e0),
        bias=bias,
        df1=z,
        df2=q,
        n=n,
        n_features=N,
        alpha=alpha,
        noise=noise,
        learnabilities=L,
    )


def krr_risk(eigenvalues, coefficients, n, alpha=0.0, noise=0.0):
    """Eigenlearning estimate of the errors of kernel ridge regression.

    Solves ``n = sum_i lambda_i / (lambda_i + kappa) + alpha / kappa`` for the effective ridge
    ``kappa`` and returns ``test_mse = n / (n - q) * (sum_i (1 - L_i)^2 v_i^2 + noise)`` and
    ``train_mse = (alpha / (n kappa))^2 test_mse`` (Simon et al. 2021, Eqs. 9-12; Canatar et al.
    2021).

    Parameters
    ----------
    eigenvalues : array-like of shape (M,)
        Non-negative kernel eigenvalues (with respect to the data distribution).
    coefficients : array-like of shape (M,) or (M, n_targets)
        Coefficients of the target function in the orthonormal eigenbasis. With several targets
        the risks are averaged over targets.
    n : float
        Number of training samples.
    alpha : float, default=0.0
        Ridge ``delta`` (unscaled: the predictor is ``k(x, X) (K + delta I)^{-1} y``).
    noise : float, default=0.0
        Label-noise variance; ``test_mse`` is against noisy labels.

    Returns
    -------
    RiskEstimate
        ``gamma == kappa`` and ``n_features is None``.

    Examples
    --------
    >>> import numpy as np
    >>> from overparam_sklearn.theory import krr_risk
    >>> i = np.arange(1, 2001)
    >>> r = krr_risk(i**-1.5, i**-0.75, n=100, alpha=1e-3, noise=0.1)
    >>> round(r.test_mse, 4), r.train_mse < r.test_mse
    (0.4649, True)
    """
    lam, v2 = _check_spectrum(eigenvalues, coefficients)
    n, _, alpha, noise = _check_scalars(n, None, alpha, noise)
    rank = np.count_nonzero(lam > 0)
    if alpha > 0:
        # n - alpha/kappa = df1(kappa): decreasing in log kappa
        def fun(t):
            g = math.exp(t)
            return (_df1(lam, g) + alpha / g - n) / n

        kappa = math.exp(_decreasing_root(fun, math.log((float(np.sum(lam)) + alpha) / n)))
    elif rank > n:
        kappa = _solve_df1(lam, n)
    else:
        kappa = 0.0  # fewer nonzero eigenvalues than samples: ridgeless regression on them
    return _estimate(lam, v2, n, None, alpha, noise, kappa, kappa)


def rf_risk(eigenvalues, coefficients, n, n_features, alpha=0.0, noise=0.0):
    """Eigenframework estimate of the errors of random-feature ridge regression.

    Simon, Karkada, Ghosh & Belkin (ICLR 2024), Eqs. 4-5: ridge regression with ridge ``delta`` on
    ``N`` random features ``phi`` whose kernel ``E[phi(x) . phi(x')]`` has eigenvalues
    ``lambda_i``. See the module docstring for the equations; ``n_features=None`` (or ``inf``)
    gives :func:`krr_risk`.

    Parameters
    ----------
    eigenvalues : array-like of shape (M,)
    coefficients : array-like of shape (M,) or (M, n_targets)
    n : float
        Number of training samples.
    n_features : float or None
        Number of random features ``N``.
    alpha : float, default=0.0
        Ridge ``delta``; equal to ``alpha`` of
        :class:`~overparam_sklearn.RandomFeatureRegressor` (features scaled by ``1/sqrt(N)``).
    noise : float, default=0.0
        Label-noise variance.

    Returns
    -------
    RiskEstimate

    Examples
    --------
    >>> import numpy as np
    >>> from overparam_sklearn.theory import rf_risk
    >>> i = np.arange(1, 4001)
    >>> r = rf_risk(i**-1.5, i**-0.75, n=100, n_features=50, alpha=0.0, noise=0.1)
    >>> r.kappa, round(r.overfitting_coefficient, 12)  # ridgeless, N < n: n / (n - N)
    (0.0, 2.0)
    """
    lam, v2 = _check_spectrum(eigenvalues, coefficients)
    n, N, alpha, noise = _check_scalars(n, n_features, alpha, noise)
    if N is None:
        return krr_risk(lam, np.sqrt(v2), n, alpha, noise)
    rank = np.count_nonzero(lam > 0)
    # gamma_* : where df1(gamma_*) = N, i.e. kappa = 0 (0 when the spectrum has rank <= N)
    gamma_star = _solve_df1(lam, N) if rank > N else 0.0

    if alpha > 0:
        def kappa_of(g):
            return g * (N - _df1(lam, g)) / N  # equation (B)

        def fun(t):
            g = gamma_star + math.exp(t)
            return (_df1(lam, g) + alpha / kappa_of(g) - n) / n  # equation (A)

        t0 = math.log(max(float(np.sum(lam)) + alpha, 1e-300) / min(n, N))
        gamma = gamma_star + math.exp(_decreasing_root(fun, t0))
        # kappa from whichever equation is better conditioned: (B) loses digits to the
        # cancellation in N - df1 when N < n and the ridge is tiny, (A) in n - df1 when N > n
        z = _df1(lam, gamma)
        if (n - z) / n > (N - z) / N:
            kappa = alpha / (n - z)
        else:
            kappa = kappa_of(gamma)
    else:
        m = min(n, N)
        if rank <= m:
            gamma = kappa = 0.0
        elif N < n:
            gamma, kappa = gamma_star, 0.0
        else:
            gamma = _solve_df1(lam, n)
            kappa = gamma * (1.0 - n / N)  # equation (B) with df1 = n
    return _estimate(lam, v2, n, N, alpha, noise, gamma, kappa)


def optimal_ridge(eigenvalues, coefficients, n, n_features=None, noise=0.0, alphas=None):
    """The ridge that minimises the predicted test error, and the estimate there.

    The search covers ``alpha = 0`` and a log grid (``alphas``; default 1e-8 to 1e3 times the
    kernel trace ``sum lambda_i``, 45 points), then refines the best grid point with a bounded
    scalar minimisation in ``log alpha``. Simon et al. (2024) show that at this optimum the test
    error decreases with both ``n_features`` and ``n``.

    Parameters
    ----------
    eigenvalues, coefficients, n, n_features, noise
        As in :func:`rf_risk` (``n_features=None`` for kernel ridge).
    alphas : array-like of positive floats, default=None
        The coarse grid.

    Returns
    -------
    RiskEstimate
        At the optimal alpha (its ``alpha`` attribute).

    Examples
    --------
    >>> import numpy as np
    >>> from overparam_sklearn.theory import optimal_ridge, rf_risk
    >>> i = np.arange(1, 2001)
    >>> best = optimal_ridge(i**-1.5, i**-1.0, n=200, n_features=100, noise=0.5)
    >>> best.alpha > 0, best.test_mse <= rf_risk(i**-1.5, i**-1.0, 200, 100, 1e-3, 0.5).test_mse
    (True, True)
    """
    lam, v2 = _check_spectrum(eigenvalues, coefficients)
    coef = np.sqrt(v2)
    trace = float(np.sum(lam))
    if alphas is None:
        alphas = trace * np.logspace(-8, 3, 45)
    alphas = np.sort(np.asarray(alphas, dtype=np.float64).ravel())
    if alphas.size == 0 or np.any(alphas <= 0):
        raise ValueError("alphas must be a non-empty array of positive floats")

    def risk(r):
        return rf_risk(lam, coef, n, n_features, r, noise)

    results = [risk(r) for r in alphas]
    errors = np.array([r.test_mse for r in results])
    i = int(np.argmin(errors))
    best = results[i]
    lo = math.log(alphas[max(i - 1, 0)])
    hi = math.log(alphas[min(i + 1, alphas.size - 1)])
    if hi > lo:
        opt = optimize.minimize_scalar(
            lambda t: risk(math.exp(t)).test_mse,
            bounds=(lo, hi),
            method="bounded",
            options={"xatol": 1e-6},
        )
        candidate = risk(math.exp(opt.x))
        if candidate.test_mse < best.test_mse:
            best = candidate
    zero = risk(0.0)
    if zero.test_mse <= best.test_mse:
        best = zero
    return best


# ------------------------------------------------------------------------------------------
# spectra: synthetic and from data


def power_law_task(n_eigenvalues, eigen_exponent, target_exponent):
    """Eigenvalues ``i^-a`` and target coefficients ``sqrt(i^-b)``, ``i = 1..M``.

    The synthetic task of Simon et al. (2024) and of ``rf_theory_reference.json`` (spectrum
    ``"aA_bB"``).

    Parameters
    ----------
    n_eigenvalues : int
        ``M``, the number of modes.
    eigen_exponent : float
        ``a``: the eigenvalues decay as ``i^-a``.
    target_exponent : float
        ``b``: the squared target coefficients decay as ``i^-b``.

    Returns
    -------
    eigenvalues, coefficients : ndarray of shape (M,)

    Examples
    --------
    >>> from overparam_sklearn.theory import power_law_task
    >>> lam, v = power_law_task(4, 2.0, 2.0)
    >>> lam.tolist(), v.tolist()
    ([1.0, 0.25, 0.1111111111111111, 0.0625], [1.0, 0.5, 0.3333333333333333, 0.25])
    """
    i = np.arange(1, int(n_eigenvalues) + 1, dtype=np.float64)
    return i ** (-float(eigen_exponent)), np.sqrt(i ** (-float(target_exponent)))


def task_eigenstructure(X, y, kernel=None, *, activation="relu", w_std=1.0, b_std=0.0,
                        n_samples=2000, center=True, random_state=None):
    """Estimate kernel eigenvalues and target coefficients from data.

    On a random sample of ``m = min(n_samples, len(X))`` rows, eigendecompose the kernel matrix:
    ``K / m = sum_j lambda_j u_j u_j^T`` with orthonormal ``u_j``. The ``lambda_j`` estimate the
    operator's eigenvalues, ``sqrt(m) u_j`` the eigenfunctions at the sample, and the target
    coefficients are ``v_j = u_j . y / sqrt(m)`` (so ``sum v_j^2 = mean(y^2)``); the part of ``y``
    outside the kernel's range (round-off-level eigenvalues) sits on eigenvalue 0. This is the
    procedure of Simon et al. (2024, App. D). Use the returned arrays with ``noise=0``: label
    noise of the data set is then part of the spectrum's tail.

    Parameters
    ----------
    X : array-like of shape (n_samples_total, n_features)
    y : array-like of shape (n_samples_total,) or (n_samples_total, n_targets)
    kernel : callable or None, default=None
        ``kernel(X) -> (m, m)`` kernel matrix (numpy or torch). ``None`` uses the kernel of
        :class:`~overparam_sklearn.RandomFeatures` with ``activation``, ``w_std``, ``b_std``:
        the one-hidden-layer NNGP before the readout, ``E[g(u) g(v)]``
        (for ``activation="fourier"``, the RBF kernel ``exp(-w_std^2 |x - x'|^2 / (2 d))``).
    activation, w_std, b_std
        Used when ``kernel`` is ``None``.
    n_samples : int, default=2000
        Size of the sample that is eigendecomposed (``O(m^3)`` work).
    center : bool, default=True
        Centre the kernel matrix (``H K H``) and ``y``: the spectrum of ridge regression with a
        fitted intercept (``fit_intercept=True`` in the estimators).
    random_state : int, RandomState instance or None
        Picks the sample.

    Returns
    -------
    eigenvalues : ndarray of shape (m,)
        Decreasing, clipped at 0.
    coefficients : ndarray of shape (m,) or (m, n_targets)

    Examples
    --------
    >>> import numpy as np
    >>> from overparam_sklearn.theory import task_eigenstructure
    >>> rng = np.random.default_rng(0)
    >>> X = rng.normal(size=(300, 3)); y = np.sin(X[:, 0])
    >>> lam, v = task_eigenstructure(X, y, n_samples=200, random_state=0)
    >>> lam.shape, bool(np.all(np.diff(lam) <= 0))
    ((200,), True)
    """
    from sklearn.utils import check_random_state
    from sklearn.utils.validation import check_array, check_consistent_length

    X = check_array(X, dtype=np.float64)
    y = check_array(y, dtype=np.float64, ensure_2d=False)
    check_consistent_length(X, y)
    rng = check_random_state(random_state)
    m = min(int(n_samples), X.shape[0])
    idx = rng.choice(X.shape[0], size=m, replace=False) if m < X.shape[0] else np.arange(m)
    Xs, ys = X[idx], y[idx]
    if kernel is None:
        K = _random_features_kernel(Xs, activation, w_std, b_std)
    else:
        K = kernel(Xs)
    K = np.asarray(K.detach().cpu().numpy() if hasattr(K, "detach") else K, dtype=np.float64)
    if K.shape != (m, m):
        raise ValueError(f"kernel(X) must return an ({m}, {m}) matrix, got {K.shape}")
    if center:
        K = K - K.mean(axis=0, keepdims=True)
        K = K - K.mean(axis=1, keepdims=True)
        ys = ys - ys.mean(axis=0)
    K = (K + K.T) / 2
    evals, evecs = np.linalg.eigh(K / m)
    order = np.argsort(evals)[::-1]
    evals, evecs = np.clip(evals[order], 0.0, None), evecs[:, order]
    coefficients = evecs.T @ ys / math.sqrt(m)
    return evals, coefficients


def _random_features_kernel(X, activation, w_std, b_std):
    """The limit of ``RandomFeatures(...)`` inner products, as a numpy matrix."""
    import torch

    Xt = torch.as_tensor(X, dtype=torch.float64)
    d = X.shape[1]
    if activation == "fourier":
        sq = (Xt * Xt).sum(1)
        dist = (sq[:, None] + sq[None, :] - 2 * Xt @ Xt.T).clamp_min(0)
        return torch.exp(-(w_std**2) * dist / (2 * d)).numpy()
    from .kernels import dense_input_gram, parse_activation

    act = parse_activation(activation)
    k12 = dense_input_gram(Xt, None, w_std, b_std)
    diag = torch.diagonal(k12).clone()
    return act.maps(k12, diag[:, None], diag[None, :], False)[0].numpy()
