"""The posterior predictive distribution a :class:`PFNRegressor` returns per query."""


import numpy as np
import torch

from .model import BarDistribution


class PFNPredictiveDistribution:
    """Posterior predictive distributions of a :class:`PFNRegressor`, one per query.

    Each is a mixture (over the ensemble members) of Riemann "bar" distributions with half-normal
    tails, on the standardised target scale, mapped back by ``y = loc + scale * z``. Made by
    :meth:`PFNRegressor.predict_distribution`; the parameters are kept as attributes.

    Parameters
    ----------
    probs : ndarray of shape (n_queries, n_bars)
        Bucket probabilities (standardised scale).
    borders : ndarray of shape (n_bars + 1,)
    loc, scale : float
        The target standardisation of the training set.
    """

    def __init__(self, probs, borders, loc, scale):
        self.probs = np.asarray(probs, dtype=np.float64)
        self.borders = np.asarray(borders, dtype=np.float64)
        self.loc = float(loc)
        self.scale = float(scale)
        self._bar = BarDistribution(torch.as_tensor(self.borders, dtype=torch.float32))
        self._bar.borders = torch.as_tensor(self.borders, dtype=torch.float64)

    def _t(self):
        return torch.as_tensor(self.probs)

    # scale == 0: the training targets were constant; every distribution is a point mass at loc.
    @property
    def mean(self):
        """Predictive means, shape (n_queries,)."""
        return self.loc + self.scale * self._bar.mean(self._t()).numpy()

    @property
    def std(self):
        """Predictive standard deviations, shape (n_queries,)."""
        return self.scale * np.sqrt(self._bar.variance(self._t()).numpy())

    def quantile(self, q):
        """Quantiles of every query's distribution.

        Parameters
        ----------
        q : float or array-like of shape (n_levels,)
            Levels strictly between 0 and 1.

        Returns
        -------
        quantiles : ndarray of shape (n_queries,) for a float ``q``, else (n_queries, n_levels)
        """
        q_arr = _check_quantiles(q)
        out = np.stack(
            [self._bar.quantile(self._t(), float(qi)).numpy() for qi in q_arr.ravel()], -1
        )
        out = self.loc + self.scale * out
        return out[:, 0] if np.ndim(q) == 0 else out

    def _point_mass(self, y):
        return np.array(np.broadcast_to(np.asarray(y, dtype=np.float64), self.probs.shape[:1]))

    def logpdf(self, y):
        """Log predictive densities of ``y`` (shape (n_queries,), or broadcastable to it).

        For a point mass (constant training targets) the density is +inf at ``loc`` and 0
        (log: -inf) elsewhere.

        Parameters
        ----------
        y : float or array-like of shape (n_queries,)
            Target values (broadcast to one per query).

        Returns
        -------
        logpdf : ndarray of shape (n_queries,)
        """
        if self.scale == 0:
            return np.where(self._point_mass(y) == self.loc, np.inf, -np.inf)
        z = (np.asarray(y, dtype=np.float64) - self.loc) / self.scale
        z = np.array(np.broadcast_to(z, self.probs.shape[:1]))
        return self._bar.logpdf(self._t(), torch.as_tensor(z)).numpy() - np.log(self.scale)

    def cdf(self, y):
        """Predictive CDF at ``y`` (shape (n_queries,), or broadcastable to it).

        Parameters
        ----------
        y : float or array-like of shape (n_queries,)
            Target values (broadcast to one per query).

        Returns
        -------
        cdf : ndarray of shape (n_queries,)
        """
        if self.scale == 0:
            return (self._point_mass(y) >= self.loc).astype(np.float64)
        z = (np.asarray(y, dtype=np.float64) - self.loc) / self.scale
        z = np.array(np.broadcast_to(z, self.probs.shape[:1]))
        return self._bar.cdf(self._t(), torch.as_tensor(z)).numpy()

    def __len__(self):
        return self.probs.shape[0]


def _check_quantiles(q):
    q_arr = np.atleast_1d(np.asarray(q, dtype=np.float64))
    if q_arr.ndim != 1 or q_arr.size == 0 or not np.all((q_arr > 0) & (q_arr < 1)):
        raise ValueError(f"quantile levels must be numbers strictly between 0 and 1, got {q!r}")
    return q_arr
