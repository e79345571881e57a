"""Selecting examples by score: hardest, easiest, random, and coverage-centric (CCS)."""

import math

import numpy as np


def _ccs_sample(candidates, scores, budget, n_bins, rng):
    """Coverage-centric sampling (Zheng et al. 2023, Algorithm 1) of ``budget`` candidates.

    The score range is cut into ``n_bins`` equal-width strata; strata are visited from the
    smallest, each giving ``min(|stratum|, floor(remaining budget / strata left))`` examples drawn
    uniformly, so sparse regions of the score range are fully covered and the rest is spread
    evenly. Any budget left by rounding is filled uniformly from the unselected candidates.
    """
    s = scores[candidates]
    lo, hi = float(s.min()), float(s.max())
    if hi > lo:
        bins = np.minimum(((s - lo) / (hi - lo) * n_bins).astype(np.int64), n_bins - 1)
    else:
        bins = np.zeros(len(s), dtype=np.int64)
    strata = [candidates[bins == b] for b in range(n_bins)]
    strata = [st for st in strata if len(st)]
    strata.sort(key=len)
    chosen, remaining = [], budget
    for i, st in enumerate(strata):
        take = min(len(st), remaining // (len(strata) - i))
        if take:
            chosen.append(rng.choice(st, size=take, replace=False))
            remaining -= take
    chosen = np.concatenate(chosen) if chosen else np.empty(0, dtype=np.int64)
    if remaining > 0:
        rest = np.setdiff1d(candidates, chosen)
        chosen = np.concatenate([chosen, rng.choice(rest, size=remaining, replace=False)])
    return chosen


def _select_group(group, scores, keep_fraction, keep, drop_hardest_fraction, n_bins, rng):
    n = len(group)
    n_keep = min(n, max(1, int(round(keep_fraction * n))))
    if keep == "random":
        return rng.choice(group, size=n_keep, replace=False)
    order = group[np.argsort(-scores[group], kind="stable")]  # hardest first
    n_drop = int(math.floor(drop_hardest_fraction * n))
    candidates = order[n_drop:] if n_drop < n else order[-1:]
    n_keep = min(n_keep, len(candidates))
    if keep == "hardest":
        return candidates[:n_keep]
    if keep == "easiest":
        return candidates[len(candidates) - n_keep :]
    return _ccs_sample(candidates, scores, n_keep, n_bins, rng)


def _select(scores, y_enc, n_classes, keep_fraction, keep, drop_hardest_fraction,
            class_balanced, n_bins, rng):
    """Indices (sorted) of the rows kept; every class keeps at least one row."""
    n = len(y_enc)
    if class_balanced:
        groups = [np.flatnonzero(y_enc == k) for k in range(n_classes)]
    else:
        groups = [np.arange(n)]
    kept = np.concatenate(
        [
            _select_group(g, scores, keep_fraction, keep, drop_hardest_fraction, n_bins, rng)
            for g in groups
            if len(g)
        ]
    )
    present = np.unique(y_enc[kept])
    for k in np.setdiff1d(np.arange(n_classes), present):
        # a class pruned away entirely gets back one row, chosen by the same rule
        g = np.flatnonzero(y_enc == k)
        kept = np.append(
            kept,
            _select_group(g, scores, 1.0 / len(g), keep, drop_hardest_fraction, n_bins, rng)[:1],
        )
    return np.sort(kept)

