"""Closed-form dual activations.

For a pre-activation pair ``(u, v)`` drawn from a centred Gaussian with variances ``k11``, ``k22``
and covariance ``k12``, an activation ``phi`` maps the covariance to

* ``E[phi(u) phi(v)]`` (the NNGP map), and
* ``E[phi'(u) phi'(v)]`` (the derivative map that multiplies the NTK).

Each activation is one small object; adding one is adding one function. The formulas follow
neural-tangents' ``stax`` conventions (Novak et al. 2020) so that values agree to round-off:

* ``abrelu(a, b)`` = ``a min(x, 0) + b max(x, 0)`` (Cho & Saul 2009; Tsuchida et al. 2018);
  ``relu`` = ``abrelu(0, 1)``, ``leaky_relu(a)`` = ``abrelu(a, 1)``, ``abs`` = ``abrelu(-1, 1)``.
* ``erf`` = ``erf(x)`` (Williams 1997);
  ``sigmoid_like`` = ``0.5 erf(x / 2.4020563531719796) + 0.5``.
* ``gelu`` = ``x Phi(x)`` (Tsuchida et al. 2021, arXiv:2002.08517).
* ``sin`` = ``sin(x)``; ``rbf(gamma)`` = ``sqrt(2) sin(sqrt(2 gamma) x + pi / 4)``, whose NNGP map
  is ``exp(-gamma (k11 + k22 - 2 k12))`` (Rahimi & Recht 2007).
* ``identity``.

Spec strings: ``"relu"``, ``"leaky_relu(0.1)"``, ``"abrelu(-0.5,2)"``, ``"abs"``, ``"erf"``,
``"gelu"``, ``"sin"``, ``"rbf(0.5)"``, ``"identity"``, ``"sigmoid_like"``.
"""

import math
import re
from dataclasses import dataclass
from typing import Callable

import torch

__all__ = ["DualActivation", "parse_activation", "ACTIVATION_NAMES"]

ACTIVATION_NAMES = (
    "relu",
    "leaky_relu(a)",
    "abrelu(a,b)",
    "abs",
    "erf",
    "gelu",
    "sin",
    "rbf(gamma)",
    "identity",
    "sigmoid_like",
)

_SIGMOID_LIKE_SCALE = 2.4020563531719796


def _safe_sqrt(x):
    """``sqrt(max(x, 0))`` whose gradient is 0, not inf/NaN, where ``x <= 0``.

    On the diagonal of a train kernel ``k11 k22 - k12**2`` is identically zero as a function of
    the hyperparameters, so a zero derivative there is the exact one.
    """
    positive = x > 0
    return torch.where(positive, torch.sqrt(torch.where(positive, x, torch.ones_like(x))), 0.0)


@dataclass(frozen=True)
class DualActivation:
    """An activation with its closed-form NNGP and derivative maps.

    A frozen record made by :func:`parse_activation`; its parameters are kept as attributes.

    Parameters
    ----------
    spec : str
        Canonical spec string, e.g. ``"leaky_relu(0.1)"``.
    fn : callable
        The pointwise activation on tensors (for finite-width networks and random features).
    maps : callable
        ``maps(k12, k11, k22, need_dot) -> (nngp, dot)``: ``E[phi(u)phi(v)]`` and, if
        ``need_dot``, ``E[phi'(u)phi'(v)]`` (else ``None``). ``k11`` and ``k22`` broadcast
        against ``k12`` (a column and a row for a matrix of pairs).
    fast_maps : callable or None
        ``fast_maps(k12, k11, k22, need_dot, on_diagonal)``: the same values computed with
        fewer passes and in place; it may overwrite ``k12`` and is not differentiable.
        ``on_diagonal`` says that entry ``[i, i]`` pairs a point with itself. Used by the
        kernel recursion when no gradient is needed.
    """

    spec: str
    fn: Callable
    maps: Callable
    fast_maps: Callable = None

    def __call__(self, x):
        """The activation applied pointwise.

        Parameters
        ----------
        x : tensor

        Returns
        -------
        phi : tensor of the same shape
        """
        return self.fn(x)

    def nngp(self, k12, k11, k22):
        """``E[phi(u) phi(v)]`` for ``(u, v)`` centred Gaussian with covariance ``[[k11, k12],
        [k12, k22]]``.

        Parameters
        ----------
        k12 : tensor
            Covariances of the pairs.
        k11, k22 : tensor
            Variances of the two sides, broadcasting against ``k12``.

        Returns
        -------
        nngp : tensor of the broadcast shape
        """
        return self.maps(k12, k11, k22, False)[0]

    def diag(self, k):
        """``E[phi(u)^2]`` for a vector of variances ``k``.

        Parameters
        ----------
        k : tensor of shape (n,)
            Variances of ``u``.

        Returns
        -------
        second_moment : tensor of shape (n,)
        """
        return self.maps(k, k, k, False)[0]


def _abrelu(a, b):
    a, b = float(a), float(b)

    def fn(x):
        return a * torch.clamp(x, max=0) + b * torch.clamp(x, min=0)

    def maps(k12, k11, k22, need_dot):
        root = _safe_sqrt(k11 * k22 - k12**2)
        # angle between the two pre-activations; pi / 2 where both vanish (neural-tangents'
        # convention for zero inputs).
        zero = (root == 0) & (k12 == 0)
        angle = torch.where(zero, math.pi / 2, torch.atan2(root, k12))
        factor = (a - b) ** 2 / (2 * math.pi)
        dot = (a**2 + b**2) / 2 - factor * angle
        nngp = factor * root + dot * k12
        return nngp, (dot if need_dot else None)

    def fast_maps(k12, k11, k22, need_dot, on_diagonal=False):
        if bool((k11 == 0).any()) or bool((k22 == 0).any()):
            return maps(k12, k11, k22, need_dot)  # the zero-input angle convention
        # same formula as maps, about 9 passes over the block instead of 20
        root = k11 * k22
        root.addcmul_(k12, k12, value=-1).clamp_(min=0).sqrt_()
        if on_diagonal:
            # pairs (x, x): the angle is exactly 0, not the root of a round-off residual
            root.diagonal().zero_()
        angle = torch.atan2(root, k12)
        factor = (a - b) ** 2 / (2 * math.pi)
        dot = angle.mul_(-factor).add_((a**2 + b**2) / 2)
        nngp = root.mul_(factor).addcmul_(dot, k12)
        return nngp, (dot if need_dot else None)

    return fn, maps, fast_maps


def _erf(a=1.0, b=1.0, c=0.0):
    """``a erf(b x) + c``: nngp ``a^2 (2/pi) arcsin(...) + c^2`` (Williams 1997)."""

    def fn(x):
        return a * torch.erf(b * x) + c

    def maps(k12, k11, k22, need_dot):
        b2 = b * b
        k12s, k11s, k22s = b2 * k12, b2 * k11, b2 * k22
        prod = (1 + 2 * k11s) * (1 + 2 * k22s)
        root = _safe_sqrt(prod - 4 * k12s**2)
        nngp = a * a * (2 / math.pi) * torch.atan2(2 * k12s, root) + c * c
        dot = None
        if need_dot:
            dot = a * a * b2 * (4 / math.pi) / root
        return nngp, dot

    return fn, maps


def _gelu():
    """``x Phi(x)``; closed form of Tsuchida et al. (2021) as used by neural-tangents."""

    def fn(x):
        return torch.nn.functional.gelu(x)

    def maps(k12, k11, k22, need_dot):
        prod = k11 * k22
        prod_plus_1 = (k11 + 1) * (k22 + 1)
        delta_sq = prod_plus_1 - k12**2
        delta = _safe_sqrt(delta_sq)
        angle = torch.atan2(k12, delta)
        nngp = ((k12**2 + prod * delta_sq) / (prod_plus_1 * delta) + k12 * angle) / (
            2 * math.pi
        ) + 0.25 * k12
        dot = None
        if need_dot:
            first = (1 / delta_sq + (1 - prod) / prod_plus_1 + 1) * k12 / delta / (2 * math.pi)
            dot = first + 0.25 + angle / (2 * math.pi)
        return nngp, dot

    return fn, maps


def _sin(a=1.0, b=1.0, c=0.0):
    """``a sin(b x + c)``.

    ``E = a^2/2 (e^{-b^2 (k11+k22-2k12)/2} - e^{-b^2 (k11+k22+2k12)/2} cos 2c)``.
    """

    def fn(x):
        return a * torch.sin(b * x + c)

    def maps(k12, k11, k22, need_dot):
        half_sum = 0.5 * (k11 + k22)
        # k12 <= sqrt(k11 k22) <= half_sum (Cauchy-Schwarz); the clamp keeps the round-off of
        # k12 on the diagonal of a large kernel (k ~ 1e50: error ~ 1e34) from giving exp(+big)
        s1 = torch.exp(b * b * torch.clamp(k12 - half_sum, max=0.0))
        s2 = torch.exp(b * b * (-half_sum - k12)) * math.cos(2 * c)
        nngp = a * a / 2 * (s1 - s2)
        dot = a * a / 2 * b * b * (s1 + s2) if need_dot else None
        return nngp, dot

    return fn, maps


def _rbf(gamma):
    gamma = float(gamma)
    if not gamma > 0:
        raise ValueError(f"rbf(gamma) needs gamma > 0, got rbf({gamma:g})")
    scale = math.sqrt(2 * gamma)

    def fn(x):
        return math.sqrt(2) * torch.sin(scale * x + math.pi / 4)

    def maps(k12, k11, k22, need_dot):
        # 2 k12 <= k11 + k22 (Cauchy-Schwarz); clamp round-off on the diagonal (see _sin)
        nngp = torch.exp(gamma * torch.clamp(2 * k12 - k11 - k22, max=0.0))
        dot = 2 * gamma * nngp if need_dot else None
        return nngp, dot

    return fn, maps


def _identity():
    def fn(x):
        return x

    def maps(k12, k11, k22, need_dot):
        return k12, (torch.ones_like(k12) if need_dot else None)

    return fn, maps


_NUMBER = r"\s*([-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)\s*"
_PATTERNS = [
    (re.compile(r"^relu$"), lambda: ("relu", _abrelu(0.0, 1.0))),
    (re.compile(r"^abs$"), lambda: ("abs", _abrelu(-1.0, 1.0))),
    (
        re.compile(rf"^leaky_relu\({_NUMBER}\)$"),
        lambda a: (f"leaky_relu({float(a):g})", _abrelu(float(a), 1.0)),
    ),
    (
        re.compile(rf"^abrelu\({_NUMBER},{_NUMBER}\)$"),
        lambda a, b: (f"abrelu({float(a):g},{float(b):g})", _abrelu(float(a), float(b))),
    ),
    (re.compile(r"^erf$"), lambda: ("erf", _erf())),
    (
        re.compile(r"^sigmoid_like$"),
        lambda: ("sigmoid_like", _erf(0.5, 1 / _SIGMOID_LIKE_SCALE, 0.5)),
    ),
    (re.compile(r"^gelu$"), lambda: ("gelu", _gelu())),
    (re.compile(r"^sin$"), lambda: ("sin", _sin())),
    (re.compile(rf"^rbf\({_NUMBER}\)$"), lambda g: (f"rbf({float(g):g})", _rbf(float(g)))),
    (re.compile(r"^identity$"), lambda: ("identity", _identity())),
]


def parse_activation(spec):
    """Parse an activation spec string into a :class:`DualActivation`.

    Parameters
    ----------
    spec : str or DualActivation
        One of ``"relu"``, ``"leaky_relu(a)"``, ``"abrelu(a,b)"``, ``"abs"``, ``"erf"``,
        ``"gelu"``, ``"sin"``, ``"rbf(gamma)"``, ``"identity"``, ``"sigmoid_like"``.

    Returns
    -------
    DualActivation

    Examples
    --------
    >>> import torch
    >>> from overparam_sklearn.kernels import parse_activation
    >>> act = parse_activation("leaky_relu(0.1)")
    >>> act.spec
    'leaky_relu(0.1)'
    >>> k = torch.tensor([1.0], dtype=torch.float64)
    >>> float(act.diag(k)[0])  # E[phi(u)^2] = (a^2 + 1) / 2 for u ~ N(0, 1)
    0.505
    """
    if isinstance(spec, DualActivation):
        return spec
    if not isinstance(spec, str):
        raise TypeError(f"activation must be a string such as 'relu', got {type(spec).__name__}")
    text = spec.strip().lower().replace(" ", "")
    for pattern, build in _PATTERNS:
        match = pattern.match(text)
        if match:
            name, functions = build(*match.groups())
            return DualActivation(name, *functions)
    raise ValueError(
        f"Unknown activation {spec!r}; expected one of {', '.join(ACTIVATION_NAMES)} "
        "(for example 'leaky_relu(0.1)')."
    )
