"""How a training set becomes the network's context: input representations, ensemble members,
stacking weights, pairwise coupling for multi-class problems (Wu, Lin & Weng, JMLR 2004).
"""


import numpy as np
import torch
from sklearn.preprocessing import QuantileTransformer

from .._backend import (
    resolve_dtype,
    tile_slices,
)
from .._validation import check_finite_cast


def _standardize_fit(X, zero_constant=True):
    with np.errstate(over="ignore", invalid="ignore"):
        mean = X.mean(0)
        std = X.std(0)
    if not (np.isfinite(mean).all() and np.isfinite(std).all()):
        raise ValueError(
            "X is so large that its mean or standard deviation overflows float64; rescale it."
        )
    constant = std <= 1e-8 * (1.0 + np.abs(mean))
    return (
        mean,
        np.where(constant, 1.0, std),
        constant if zero_constant else np.zeros_like(constant),
    )


#: Queries go through the network in blocks of exactly this many rows (the last one zero-padded).
#: float32 matrix products round differently for different row counts (BLAS picks its kernels
#: and blocking by shape), so with a fixed block shape a query's prediction is bitwise the same
#: whichever other queries are predicted with it and wherever it sits in the block.
_QUERY_BLOCK = 128

#: Members added automatically so that every feature reaches the network; beyond this the user is
#: warned and asked to raise ``n_estimators``.
_MAX_AUTO_MEMBERS = 32

#: Eigenvalues of the standardised feature covariance below this fraction of the largest are
#: treated as exact linear dependences (not whitened: that would amplify round-off).
_PCA_RTOL = 1e-9

#: ``multi_class="auto"`` couples pairwise binary problems up to this many classes (the cost
#: grows as k (k - 1) / 2 contexts); the shipped networks take at most 10 classes anyway.
_AUTO_PAIRWISE_MAX_CLASSES = 10


def _query_logits(model, cache, q_x, device, dtype=torch.float32):
    """Logits (m, n_out) of the queries ``q_x`` (m, d_max), evaluated in fixed-size blocks."""
    out = []
    for start in range(0, q_x.shape[0], _QUERY_BLOCK):
        q = q_x[start : start + _QUERY_BLOCK]
        m = q.shape[0]
        if m < _QUERY_BLOCK:
            q = np.concatenate([q, np.zeros((_QUERY_BLOCK - m, q.shape[1]), q.dtype)])
        q = torch.as_tensor(q, device=device, dtype=dtype)
        logits = model.predict_queries(cache, q[None])[0]
        out.append(logits[:m])
    return torch.cat(out)


def _stacking_weights(loglik, n_iter=200):
    """Mixture weights of the members maximising the held-out log score.

    ``loglik`` (n_points, n_members): log predictive density of each held-out point under each
    member. Stacking of predictive distributions (Yao, Vehtari, Simpson & Gelman, Bayesian
    Analysis 2018, eq. 4): maximise ``sum_i log sum_m w_m p_m(y_i)`` over the simplex, here by
    EM (responsibilities, then ``w = mean responsibility``), which increases it monotonically.
    """
    n, m = loglik.shape
    w = np.full(m, 1.0 / m)
    lik = np.exp(loglik - loglik.max(1, keepdims=True))
    for _ in range(n_iter):
        r = w * lik
        r /= r.sum(1, keepdims=True)
        w = r.mean(0)
    return w


def _tempered(p, temperature):
    """Probabilities ``p`` (n, k) sharpened (T < 1) or flattened (T > 1): softmax(log p / T)."""
    logp = np.log(np.clip(p, 1e-300, None)) / temperature
    logp -= logp.max(1, keepdims=True)
    out = np.exp(logp)
    return out / out.sum(1, keepdims=True)


def _fit_temperature(p, y, bounds=(1.0 / 3.0, 3.0)):
    """Temperature minimising the log-loss of held-out probabilities ``p`` (n, k) with labels
    ``y`` (temperature scaling, Guo et al., ICML 2017), searched on a log grid within
    ``bounds`` (narrow, as the held-out sets of small data are small)."""
    grid = np.exp(np.linspace(np.log(bounds[0]), np.log(bounds[1]), 41))
    rows = np.arange(len(y))
    losses = [-np.log(np.clip(_tempered(p, t)[rows, y], 1e-300, None)).mean() for t in grid]
    return float(grid[int(np.argmin(losses))])


def _pairwise_coupling(r):
    """Class probabilities (n, k) from pairwise probabilities ``r[:, i, j] = P(i | i or j)``.

    Wu, Lin & Weng, "Probability estimates for multi-class classification by pairwise coupling"
    (JMLR 2004), method 2 (eq. 21), as in libsvm: minimise ``sum_i sum_{j != i}
    (r_ji p_i - r_ij p_j)^2`` subject to ``sum_i p_i = 1``, a (k + 1) x (k + 1) linear system.
    """
    n, k, _ = r.shape
    off = ~np.eye(k, dtype=bool)
    rt = np.swapaxes(r, 1, 2)  # rt[:, i, j] = r_ji
    Q = -rt * r
    Q[:, ~off] = 0.0
    Q[:, np.arange(k), np.arange(k)] = np.where(off, rt**2, 0.0).sum(2)
    A = np.zeros((n, k + 1, k + 1))
    A[:, :k, :k] = Q
    A[:, :k, k] = 1.0
    A[:, k, :k] = 1.0
    b = np.zeros((n, k + 1))
    b[:, k] = 1.0
    p = np.linalg.solve(A, b[..., None])[:, :k, 0]
    p = np.clip(p, 0.0, None)
    return p / p.sum(1, keepdims=True)


def _float32(Z):
    return check_finite_cast(
        Z,
        np.float32,
        "X",
        "after standardisation with the training set's mean and scale (the PFN computes in "
        "float32)",
    )


def _relevance(Z, y, task):
    """Per-column relevance to the target: the larger of |Pearson| and |Spearman| correlation
    (regression), the correlation ratio (between-class share of the variance; classification)."""
    Z = np.asarray(Z, dtype=np.float64)
    Zc = Z - Z.mean(0)
    ss = (Zc**2).sum(0)
    ok = ss > 0
    if task == "classification":
        between = np.zeros(Z.shape[1])
        for c in np.unique(y):
            rows = y == c
            between += rows.sum() * Zc[rows].mean(0) ** 2
        return np.where(ok, between / np.where(ok, ss, 1.0), 0.0)

    def corr(A, b):
        A = A - A.mean(0)
        b = b - b.mean()
        den = np.sqrt((A**2).sum(0) * (b**2).sum())
        return np.abs(A.T @ b) / np.where(den > 0, den, np.inf)

    ranks = np.argsort(np.argsort(Z, 0), 0).astype(np.float64)
    y_rank = np.argsort(np.argsort(y)).astype(np.float64)
    return np.where(ok, np.maximum(corr(Z, y.astype(np.float64)), corr(ranks, y_rank)), 0.0)


class _Context:
    """One training set as the network's context: its input representations, the ensemble
    members and their stacking weights. Plain numpy state (pickles without torch).

    Representations of the inputs (each column standardised on the training set):

    * ``"standard"``: the standardised informative features (constant features and exact
      duplicates of another feature carry no information and are left out);
    * ``"quantile"``: normal scores of the same features (``QuantileTransformer``), robust to
      outliers and skew;
    * ``"pca"``: the whitened principal components of the standardised features, so that a
      direction of small variance that the target depends on (strongly correlated inputs, as in
      designed experiments) reaches the network at unit scale instead of hidden in rounding of
      a near-duplicate feature.

    The network takes ``d_max`` inputs, so a representation with more columns is split into
    windows of ``d_max`` columns over members until every column is used.
    """

    def __init__(self, X, y, *, task, config, estimator, rng, model, device, n_labels=10):
        self.dtype = resolve_dtype(estimator.dtype)
        n, d = X.shape
        d_max = int(config["d_max"])
        max_ctx = (
            int(config["max_ctx"]) if estimator.max_context is None else int(estimator.max_context)
        )
        self.task = task
        self.d_max = d_max
        self.y = y
        normalize = bool(config["normalize_x"])
        if normalize:
            mean, scale, constant = _standardize_fit(X)
        else:
            mean, scale, constant = np.zeros(d), np.ones(d), np.zeros(d, dtype=bool)
        self.x_mean, self.x_scale, self.x_constant = mean, scale, constant
        Z = self._standard(X)
        # informative features: not constant, not an exact (affine) duplicate of an earlier one
        cand = np.flatnonzero(~constant)
        if cand.size:
            signs = np.sign(Z[:1, cand] + (Z[:1, cand] == 0))  # fold x and -x together
            _, first = np.unique(np.round(Z[:, cand] * signs, 9), axis=1, return_index=True)
            self.features = np.sort(cand[first])
        else:
            self.features = np.zeros(1, dtype=int)  # all constant: one zero column (the prior)
        kind = estimator.input_transform
        if not normalize:
            kind = "standard"
        transforms = {
            "mixed": ["standard", "pca", "quantile"],
            "standard": ["standard"],
            "quantile": ["quantile"],
            "pca": ["pca"],
        }[kind]
        if cand.size == 0 or (self.features.size == 1 and "pca" in transforms and kind == "mixed"):
            transforms = [t for t in transforms if t != "pca"] or ["standard"]
        self.transforms = transforms
        Zf = Z[:, self.features]
        context = {"standard": _float32(Zf)}
        if "quantile" in transforms:
            self.qt = QuantileTransformer(
                n_quantiles=max(2, min(1000, n)),
                output_distribution="normal",
                subsample=None,
                random_state=0,
            )
            Xq = self.qt.fit_transform(X[:, self.features])
            self.q_mean, self.q_scale, self.q_constant = _standardize_fit(Xq)
            context["quantile"] = self._quantile(X).astype(np.float32)
        if "pca" in transforms:
            # whitening: W = Zf V diag(lambda)^-1/2 over the eigenpairs of the covariance of Zf
            lam, V = np.linalg.eigh(Zf.T @ Zf / n)
            lam, V = lam[::-1], V[:, ::-1]
            keep = lam > _PCA_RTOL * max(lam[0], 1e-300)
            self.pca_map = V[:, keep] / np.sqrt(lam[keep])
            context["pca"] = _float32(Zf @ self.pca_map)
        self.context = context
        width = {t: context[t].shape[1] for t in transforms}

        # members: first the windows that cover every column of every representation, then
        # extra members (other feature orders or subsets) up to n_estimators
        raw_cycle = [t for t in transforms if t != "pca"]
        required = []
        # windows: with more columns than the network takes, the most target-relevant columns
        # come first (the member seeing them usually earns the largest stacking weight), the
        # rest follow in windows of d_max so that every column is used
        relevance = {}
        if raw_cycle and context["standard"].shape[1] > d_max:
            relevance["raw"] = np.argsort(-_relevance(context["standard"], y, task), kind="stable")
        if "pca" in transforms and width["pca"] > d_max:
            relevance["pca"] = np.argsort(-_relevance(context["pca"], y, task), kind="stable")
        spaces = (["raw"] if raw_cycle else []) + (["pca"] if "pca" in transforms else [])
        space_width = {
            "raw": context["standard"].shape[1],
            "pca": width.get("pca", 0),
        }
        perms = {}
        for space in spaces:
            if space in relevance:
                perms[space] = relevance[space]
            elif space == "pca":
                perms[space] = np.arange(space_width[space])
            else:
                perms[space] = rng.permutation(space_width[space])
        n_win = {space: -(-space_width[space] // d_max) for space in spaces}
        for w in range(max(n_win.values())):
            for space in spaces:
                if w < n_win[space]:
                    cols = perms[space][w * d_max : (w + 1) * d_max]
                    if space == "raw":  # raw windows alternate between the raw transforms
                        required.append((raw_cycle[w % len(raw_cycle)], np.sort(cols)))
                    else:
                        required.append(("pca", cols))
        n_members = max(estimator.n_estimators, len(required))
        self.n_required = len(required)
        if n_members > max(estimator.n_estimators, _MAX_AUTO_MEMBERS):
            n_members = max(estimator.n_estimators, _MAX_AUTO_MEMBERS)
        members = []
        for m in range(n_members):
            if m < len(required):
                transform, cols = required[m]
            else:
                transform = transforms[m % len(transforms)]
                if width[transform] <= d_max:
                    cols = rng.permutation(width[transform])
                else:
                    cols = rng.permutation(rng.choice(width[transform], d_max, replace=False))
            ctx_rows = (
                np.arange(n) if n <= max_ctx else np.sort(rng.choice(n, max_ctx, replace=False))
            )
            member = {"features": np.asarray(cols), "context": ctx_rows, "transform": transform}
            if task == "classification":
                member["labels"] = np.arange(n_labels) if m == 0 else rng.permutation(n_labels)
            members.append(member)
        self.members = members
        # columns reached: the raw features (standard and quantile members share them) and the
        # principal components
        self.n_used = {}
        for space in ("raw", "pca"):
            ts = [t for t in transforms if (t == "pca") == (space == "pca")]
            if ts:
                cols = [m["features"] for m in members if m["transform"] in ts]
                self.n_used[space] = len(np.unique(np.concatenate(cols))) if cols else 0
        self.width = width
        self.weights = self._fit_weights(model, device, rng, max_ctx)

    # -- representations -------------------------------------------------------------------
    def _standard(self, X):
        Z = (X - self.x_mean) / self.x_scale
        Z[:, self.x_constant] = 0.0
        return Z

    def _quantile(self, X):
        Z = (self.qt.transform(X[:, self.features]) - self.q_mean) / self.q_scale
        Z[:, self.q_constant] = 0.0
        return Z

    def represent(self, X):
        Zf = self._standard(X)[:, self.features]
        out = {"standard": _float32(Zf)}
        if "quantile" in self.transforms:
            out["quantile"] = self._quantile(X).astype(np.float32)
        if "pca" in self.transforms:
            out["pca"] = _float32(Zf @ self.pca_map)
        return out

    def _inputs(self, rep, member, rows=None):
        Z = rep[member["transform"]]
        Z = Z[:, member["features"]] if rows is None else Z[np.ix_(rows, member["features"])]
        out = np.zeros((Z.shape[0], self.d_max), dtype=np.float32)
        out[:, : Z.shape[1]] = Z
        return out

    def _targets(self, member, rows):
        y = self.y[rows]
        if self.task == "classification":
            return member["labels"][y]
        return y

    # -- network ----------------------------------------------------------------------------
    def _tensors(self, x, y, device):
        """Context inputs and targets as tensors in the network's dtype (labels stay integer)."""
        y = torch.as_tensor(np.ascontiguousarray(y), device=device)
        if y.is_floating_point():
            y = y.to(self.dtype)
        return torch.as_tensor(x, device=device, dtype=self.dtype), y

    def _encode(self, model, device, member, rows):
        x, y = self._tensors(
            self._inputs(self.context, member, rows), self._targets(member, rows), device
        )
        return model.encode_context(x[None], y[None])

    def member_output(self, logits, member, k):
        """Regression: bucket probabilities; classification: probabilities of the k labels."""
        logits = logits.double()
        if self.task == "classification":
            idx = torch.as_tensor(member["labels"][:k], device=logits.device)
            logits = logits[:, idx]
        return torch.softmax(logits, -1).cpu()

    def _fit_weights(self, model, device, rng, max_ctx):
        """Stacking weights from held-out predictions on the training set (two folds for
        n <= 300, else 200 held-out points against the rest)."""
        n = self.y.shape[0]
        M = len(self.members)
        self.temperature = 1.0
        if M == 1 or n < 8:
            return np.full(M, 1.0 / M)
        perm = rng.permutation(n)
        if n <= 300:
            half = n // 2
            folds = [(perm[:half], perm[half:]), (perm[half:], perm[:half])]
        else:  # 200 held-out points against (at most) 500 others keep this cheap
            folds = [(perm[:200], perm[200:700])]
        k = int(self.y.max()) + 1 if self.task == "classification" else None
        loglik = []
        probs = {}  # classification: held-out probabilities of every member
        with torch.inference_mode():
            for held, rest in folds:
                rest = np.sort(rest)
                if rest.size > max_ctx:
                    rest = np.sort(rng.choice(rest, max_ctx, replace=False))
                ll = []
                # all members in one batched pass per chunk of members (one dataset per member)
                for start in range(0, M, 16):
                    chunk = self.members[start : start + 16]
                    x = np.stack([self._inputs(self.context, m, rest) for m in chunk])
                    y = np.stack([self._targets(m, rest) for m in chunk])
                    q = np.stack([self._inputs(self.context, m, held) for m in chunk])
                    cache = model.encode_context(*self._tensors(x, y, device))
                    q = torch.as_tensor(q, device=device, dtype=self.dtype)
                    logits = model.predict_queries(cache, q)
                    for m, member in enumerate(chunk):
                        p = self.member_output(logits[m], member, k)
                        if self.task == "classification":
                            probs.setdefault(start + m, []).append(p.numpy())
                            lp = torch.log(p[torch.arange(len(held)), self.y[held]])
                        else:
                            lp = model.bar.logpdf(
                                p, torch.as_tensor(self.y[held], dtype=torch.float64)
                            )
                        ll.append(lp.clamp_min(-50.0).numpy())
                loglik.append(np.stack(ll, 1))
        loglik = np.concatenate(loglik, 0)
        w = _stacking_weights(loglik)
        # members with a negligible weight are dropped from prediction (they cost as much as
        # the others); the rest are renormalised
        w = np.where(w < 0.02, 0.0, w)
        w = w / w.sum()
        if self.task == "classification":
            mix = sum(w[m] * np.concatenate(probs[m]) for m in range(M) if w[m] > 0)
            y_held = np.concatenate([held for held, _ in folds])
            self.temperature = _fit_temperature(mix, self.y[y_held])
        return w

    def iter_outputs(self, model, device, X, batch_size, k=None, verbose=0, name=""):
        """Yield (member index, query slice, member output (m, n_out) float64 on CPU)."""
        rep = self.represent(X)
        for i, member in enumerate(self.members):
            if self.weights[i] == 0.0:
                continue
            with torch.inference_mode():
                cache = self._encode(model, device, member, member["context"])
                q_x = self._inputs(rep, member)
                for sl in tile_slices(q_x.shape[0], batch_size):
                    logits = _query_logits(model, cache, q_x[sl], device, self.dtype)
                    yield i, sl, self.member_output(logits, member, k)
            if verbose:
                print(f"[{name}] ensemble member {i + 1}/{len(self.members)} done")

    def coverage_warning(self, name, n_features_in):
        """A warning text when some informative columns reach no member (None otherwise)."""
        n_raw = self.features.size
        parts = []
        if "raw" in self.n_used and self.n_used["raw"] < n_raw:
            parts.append(
                f"{self.n_used['raw']} of the {n_raw} informative features (of {n_features_in})"
            )
        if "pca" in self.n_used and self.n_used["pca"] < self.width["pca"]:
            parts.append(f"{self.n_used['pca']} of {self.width['pca']} principal components")
        if not parts:
            return None
        return (
            f"{name}: the network takes {self.d_max} inputs per ensemble member, and the "
            f"{len(self.members)} members use only " + " and ".join(parts) + "; set "
            f"n_estimators={self.n_required} (slower) so that every feature reaches the model, "
            "or reduce the features first (e.g. PCA in a Pipeline)."
        )
