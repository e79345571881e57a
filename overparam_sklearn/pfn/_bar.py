"""The Riemann ("bar") output distribution of regression PFNs.

Müller et al., "Transformers Can Do Bayesian Inference" (ICLR 2022), Sec. 4.1: a discretised
density over ``n_bars`` buckets whose borders are quantiles of targets drawn from the prior, the
two outermost buckets replaced by half-normal tails for full support.
"""

import math

import torch
from torch import nn

__all__ = ["BarDistribution"]

# median of the standard half-normal distribution, Phi^-1(0.75)
_HALFNORMAL_MEDIAN = 0.6744897501960817


class BarDistribution(nn.Module):
    """Riemann ("bar") distribution with half-normal tails on a fixed set of bucket borders.

    Bucket ``i`` spans ``[borders[i], borders[i + 1]]``. The interior buckets have a uniform
    density; bucket 0 is replaced by a half-normal on ``(-inf, borders[1]]`` and the last bucket
    by a half-normal on ``[borders[-2], inf)``, each with the scale that puts half of its mass
    within the original bucket width (the "full support" bar distribution of the PFN paper).

    All methods take bucket probabilities ``probs`` (..., n_bars) (or ``logits`` for
    :meth:`nll`) and work in float64 when given float64.
    """

    def __init__(self, borders):
        super().__init__()
        borders = torch.as_tensor(borders, dtype=torch.float32)
        if (
            borders.ndim != 1
            or borders.numel() < 4
            or not bool((borders[1:] > borders[:-1]).all())
        ):
            raise ValueError(
                "borders must be a strictly increasing 1-D tensor with at least 4 entries"
            )
        self.register_buffer("borders", borders)

    @property
    def n_bars(self):
        return self.borders.numel() - 1

    def _parts(self, dtype):
        b = self.borders.to(dtype)
        widths = b[1:] - b[:-1]
        s_left = widths[0] / _HALFNORMAL_MEDIAN
        s_right = widths[-1] / _HALFNORMAL_MEDIAN
        return b, widths, s_left, s_right

    def log_prob_from_logp(self, logp, y):
        """``log p(y)`` given bucket log-probabilities ``logp`` (..., n_bars) and ``y`` (...)."""
        b, widths, s_l, s_r = self._parts(logp.dtype)
        y = y.to(logp.dtype)
        K = self.n_bars
        idx = torch.searchsorted(b[1:-1].contiguous(), y.contiguous(), right=False).clamp(0, K - 1)
        lp = torch.gather(logp, -1, idx[..., None])[..., 0]
        interior = lp - torch.log(widths[idx])
        log_hn = math.log(math.sqrt(2.0 / math.pi))
        left = lp + log_hn - torch.log(s_l) - 0.5 * ((b[1] - y) / s_l) ** 2
        right = lp + log_hn - torch.log(s_r) - 0.5 * ((y - b[-2]) / s_r) ** 2
        out = torch.where(idx == 0, left, interior)
        return torch.where(idx == K - 1, right, out)

    def normal_masses(self, mu, sd):
        """Bucket probabilities (..., n_bars) of ``N(mu, sd^2)`` (in ``mu``'s dtype): the mass of
        each interior bucket, and of ``(-inf, borders[1]]`` / ``[borders[-2], inf)`` for the two
        tail buckets. Used as soft training targets: the expected bar NLL of ``y ~ N(mu, sd^2)`` is
        ``-sum_i mass_i log p_i`` plus terms that do not depend on the network."""
        # in mu's precision: float32 (absolute errors ~1e-7, ample for a target) is many times
        # faster than float64 here, and this runs on every query of every training batch
        dtype = mu.dtype
        b = self.borders.to(dtype)[1:-1]
        cdf = torch.special.ndtr((b - mu[..., None]) / sd.to(dtype)[..., None])
        cdf = torch.nn.functional.pad(cdf, (1, 0), value=0.0)
        cdf = torch.nn.functional.pad(cdf, (0, 1), value=1.0)
        return torch.diff(cdf, dim=-1).clamp_min(0.0)

    def nll(self, logits, y):
        """Negative log density of ``y`` under ``softmax(logits)`` (the PFN training loss)."""
        return -self.log_prob_from_logp(torch.log_softmax(logits, -1), y)

    def logpdf(self, probs, y):
        return self.log_prob_from_logp(
            torch.log(probs.clamp_min(1e-300 if probs.dtype == torch.float64 else 1e-38)), y
        )

    def mean(self, probs):
        b, widths, s_l, s_r = self._parts(probs.dtype)
        centers = 0.5 * (b[1:] + b[:-1])
        centers = centers.clone()
        c = math.sqrt(2.0 / math.pi)
        centers[0] = b[1] - s_l * c
        centers[-1] = b[-2] + s_r * c
        # a row-wise sum, not a matrix-vector product: BLAS gemv rounds differently for a few
        # rows than for many, and a query's result must not depend on its companions
        return (probs * centers).sum(-1)

    def variance(self, probs):
        b, widths, s_l, s_r = self._parts(probs.dtype)
        lo, hi = b[:-1], b[1:]
        second = (lo**2 + lo * hi + hi**2) / 3.0
        c = math.sqrt(2.0 / math.pi)
        second = second.clone()
        # half-normal tail t >= 0 with E t = s c, E t^2 = s^2: y = b1 - t (left), y = b_{K-1} + t
        second[0] = b[1] ** 2 - 2 * b[1] * s_l * c + s_l**2
        second[-1] = b[-2] ** 2 + 2 * b[-2] * s_r * c + s_r**2
        m = self.mean(probs)
        return ((probs * second).sum(-1) - m**2).clamp_min(0.0)

    def cdf(self, probs, y):
        b, widths, s_l, s_r = self._parts(probs.dtype)
        y = y.to(probs.dtype)
        K = self.n_bars
        cum = torch.cumsum(probs, -1)
        before = torch.cat([torch.zeros_like(cum[..., :1]), cum[..., :-1]], -1)
        idx = torch.searchsorted(b[1:-1].contiguous(), y.contiguous(), right=False).clamp(0, K - 1)
        p = torch.gather(probs, -1, idx[..., None])[..., 0]
        start = torch.gather(before, -1, idx[..., None])[..., 0]
        frac = ((y - b[idx]) / widths[idx]).clamp(0.0, 1.0)
        interior = start + p * frac
        sqrt2 = math.sqrt(2.0)
        left = p * torch.erfc(((b[1] - y) / (s_l * sqrt2)).clamp_min(0.0))
        right = start + p * torch.erf(((y - b[-2]) / (s_r * sqrt2)).clamp_min(0.0))
        out = torch.where(idx == 0, left, interior)
        return torch.where(idx == K - 1, right, out)

    def quantile(self, probs, q):
        """Quantiles ``q`` (a float or a tensor broadcastable to ``probs.shape[:-1]``)."""
        b, widths, s_l, s_r = self._parts(probs.dtype)
        K = self.n_bars
        q = torch.as_tensor(q, dtype=probs.dtype, device=probs.device)
        q = torch.broadcast_to(q, probs.shape[:-1]).contiguous()
        cum = torch.cumsum(probs, -1)
        cum = cum / cum[..., -1:].clamp_min(1e-300)
        idx = torch.searchsorted(cum.contiguous(), q[..., None], right=False)[..., 0].clamp(
            0, K - 1
        )
        p = torch.gather(probs / probs.sum(-1, keepdim=True), -1, idx[..., None])[
            ..., 0
        ].clamp_min(1e-300)
        before = torch.gather(cum, -1, idx[..., None])[..., 0] - p
        frac = ((q - before) / p).clamp(0.0, 1.0)
        interior = b[idx] + frac * widths[idx]
        sqrt2 = math.sqrt(2.0)
        # left tail: F(y) = p * erfc((b1 - y) / (s sqrt2))  ->  y = b1 - s sqrt2 erfcinv(q / p)
        u = (q / p).clamp(1e-12, 1.0)
        left = b[1] - s_l * sqrt2 * torch.special.erfinv(1.0 - u)
        # right tail: F(y) = before + p * erf((y - b_{K-1}) / (s sqrt2))
        v = ((q - before) / p).clamp(0.0, 1.0 - 1e-12)
        right = b[-2] + s_r * sqrt2 * torch.special.erfinv(v)
        out = torch.where(idx == 0, left, interior)
        return torch.where(idx == K - 1, right, out)
