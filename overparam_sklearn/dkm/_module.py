"""The sparse DKM as a torch module: kernels on Gram matrices, inducing Grams, SVGP output.

The objective and the conditionals are in the package docstring (:mod:`overparam_sklearn.dkm`).
"""


import torch

from .._linalg import cholesky
from ..kernels import parse_activation

ACTIVATIONS = ("relu", "sqexp", "normalized_gaussian")


# ---------------------------------------------------------------------------------------------
# Kernels on Gram matrices. Each maps (G_ij, G_ii, G_jj) elementwise (broadcasting) to the
# covariance of the next layer's features, before the weight / bias scaling.
# ---------------------------------------------------------------------------------------------

_RELU = parse_activation("relu")
_RBF_HALF = parse_activation("rbf(0.5)")


def _relu_map(k12, k11, k22):
    # ReLU arc-cosine kernel (Cho & Saul 2009): E[relu(u) relu(v)], exactly the NNGP map of
    # kernels/ (so the nu -> inf limit is our nngp_kernel).
    return _RELU.maps(k12, k11, k22, False)[0]


def _sqexp_map(k12, k11, k22):
    # Squared exponential on the feature distance: exp(-(G_ii + G_jj - 2 G_ij) / 2); this is the
    # NNGP map of the "rbf(0.5)" activation of kernels/ (Rahimi & Recht random features).
    return _RBF_HALF.maps(k12, k11, k22, False)[0]


def _normalized_gaussian_map(k12, k11, k22):
    # Normalised Gaussian kernel (Shankar et al. 2020, Sec. 3.2, as used by the DKM authors):
    # sqrt(G_ii G_jj) exp(G_ij / sqrt(G_ii G_jj) - 1), i.e. an RBF between the normalised
    # features, rescaled by the norms.
    norm = torch.sqrt(torch.clamp(k11 * k22, min=torch.finfo(k12.dtype).tiny))
    return norm * torch.exp(k12 / norm - 1.0)


_KERNEL_MAPS = {
    "relu": _relu_map,
    "sqexp": _sqexp_map,
    "normalized_gaussian": _normalized_gaussian_map,
}


def _chol_from(offdiag, logdiag):
    """Lower-triangular factor with a positive (exponentiated) diagonal."""
    return torch.tril(offdiag, diagonal=-1) + torch.diag_embed(torch.exp(logdiag))


class _SparseDKM(torch.nn.Module):
    """Parameters and forward pass of a sparse DKM with an SVGP output layer.

    Parameters live on one device and dtype; ``Z`` (inducing inputs), ``log_ard`` (per-feature
    log input scales), per layer the factor ``V_l`` of ``G_l^ii`` (see :meth:`whitened_factor`),
    the whitened variational distribution ``q(v) = N(M, S_c)`` of each output
    (``u_c = chol(K^ii) v_c``) and, for the Gaussian likelihood, the log of the noise above its
    floor.
    """

    def __init__(self, Z, n_learned, activation, w_std, b_std, n_outputs, ard, learn_inducing,
                 jitter, noise=None, min_noise=0.0, learn_noise=True):
        super().__init__()
        m, d = Z.shape
        self.n_learned = int(n_learned)  # hidden layers with a learned Gram: n_hidden - 1
        self.activation = activation
        self.w2 = float(w_std) ** 2
        self.b2 = float(b_std) ** 2
        self.jitter = float(jitter)
        self.min_noise = float(min_noise)
        opts = {"dtype": Z.dtype, "device": Z.device}
        self.Z = torch.nn.Parameter(Z.clone(), requires_grad=learn_inducing)
        self.log_ard = torch.nn.Parameter(torch.zeros(d, **opts), requires_grad=ard)
        self.gram_offdiag = torch.nn.ParameterList()
        self.gram_logdiag = torch.nn.ParameterList()
        # G_l^ii = L_K V_l V_l^T L_K^T with L_K = chol(K(G_{l-1}^ii)) and V_l lower triangular
        # with a positive diagonal: the Cholesky factor of G_l^ii is L_K V_l. V_l = I at
        # initialisation, so G_l^ii = K(G_{l-1}^ii) is the NNGP Gram and every KL is zero.
        # Relative to the prior's factor, the KL does not depend on the conditioning of K.
        for _ in range(self.n_learned):
            self.gram_offdiag.append(torch.nn.Parameter(torch.zeros(m, m, **opts)))
            self.gram_logdiag.append(torch.nn.Parameter(torch.zeros(m, **opts)))
        self.q_mean = torch.nn.Parameter(torch.zeros(m, n_outputs, **opts))
        self.q_offdiag = torch.nn.Parameter(torch.zeros(n_outputs, m, m, **opts))
        self.q_logdiag = torch.nn.Parameter(torch.zeros(n_outputs, m, **opts))
        if noise is not None:
            init = torch.full((n_outputs,), float(noise) - self.min_noise, **opts)
            self.log_noise = torch.nn.Parameter(torch.log(init), requires_grad=learn_noise)
        else:
            self.log_noise = None

    # -- pieces -------------------------------------------------------------------------------
    def noise(self):
        return self.min_noise + torch.exp(self.log_noise)

    def _scaled(self, X):
        return X * torch.exp(self.log_ard)

    def _input_gram_ii(self):
        Zs = self._scaled(self.Z)
        return self.w2 * (Zs @ Zs.T) / Zs.shape[1] + self.b2

    def _k(self, k12, k11, k22):
        return self.w2 * _KERNEL_MAPS[self.activation](k12, k11, k22) + self.b2

    def _kernel_ii(self, G):
        diag = torch.diagonal(G)
        K = self._k(G, diag[:, None], diag[None, :])
        # dtype-dependent jitter relative to the mean variance (GPyTorch's defaults); the same
        # jittered matrix serves the conditionals and the KL, so the KL is exactly 0 at init.
        scale = self.jitter * diag.detach().mean().clamp(min=1.0)
        return K + scale * torch.eye(K.shape[0], dtype=K.dtype, device=K.device)

    def whitened_factor(self, layer):
        """``V_l``: the Cholesky factor of ``G_l^ii`` is ``chol(K(G_{l-1}^ii)) V_l``."""
        return _chol_from(self.gram_offdiag[layer], self.gram_logdiag[layer])

    def inducing_chain(self):
        """Per kernel application: (chol of K^ii, diag of the Gram it was computed from); KLs."""
        G = self._input_gram_ii()
        chols, kls = [], []
        m = G.shape[0]
        for layer in range(self.n_learned + 1):
            chol_k = cholesky(
                self._kernel_ii(G), f"the layer-{layer} kernel on the inducing points",
                "try fewer inducing points, a larger nu, a smaller learning_rate or float64",
            )
            chols.append((chol_k, torch.diagonal(G)))
            if layer < self.n_learned:
                V = self.whitened_factor(layer)
                # KL(N(0, L V V^T L^T) || N(0, L L^T)) = KL(N(0, V V^T) || N(0, I))
                #   = (|V|_F^2 - m - log det(V V^T)) / 2
                kls.append(0.5 * ((V * V).sum() - m - 2 * self.gram_logdiag[layer].sum()))
                chol_g = chol_k @ V
                G = chol_g @ chol_g.T
        return chols, kls

    def top_features(self, X, chols):
        """``A = chol(K^ii)^-1 K^it`` of the top kernel (m x b) and the diagonal ``k^tt``."""
        Xs = self._scaled(X)
        Zs = self._scaled(self.Z)
        d = X.shape[1]
        G_ti = self.w2 * (Xs @ Zs.T) / d + self.b2
        g_t = self.w2 * (Xs * Xs).sum(1) / d + self.b2
        for layer in range(self.n_learned + 1):
            chol_k, g_i = chols[layer]
            K_ti = self._k(G_ti, g_t[:, None], g_i[None, :])
            k_t = self._k(g_t, g_t, g_t)
            A = torch.linalg.solve_triangular(chol_k, K_ti.T, upper=False)
            if layer == self.n_learned:
                return A, k_t
            V = self.whitened_factor(layer)
            # Conditional blocks: G^ti = K^ti K^-1 G^ii = A^T V V^T L_K^T = B^T (L_K V)^T with
            # B = V^T A, and diag G^tt = k^tt - |A|^2 + |B|^2 (columnwise).
            B = V.T @ A
            G_ti = B.T @ (chol_k @ V).T
            g_t = torch.clamp(k_t - (A * A).sum(0), min=0.0) + (B * B).sum(0)

    def output(self, A, k_t):
        """Marginals of q(f): mean and variance, each (b, n_outputs)."""
        mean = A.T @ self.q_mean
        chol_s = _chol_from(self.q_offdiag, self.q_logdiag)  # (C, m, m)
        SA = chol_s.transpose(-2, -1) @ A  # (C, m, b)
        var = torch.clamp(k_t - (A * A).sum(0), min=0.0)[:, None] + (SA * SA).sum(1).T
        return mean, var

    def kl_output(self):
        chol_s = _chol_from(self.q_offdiag, self.q_logdiag)
        m = chol_s.shape[-1]
        return 0.5 * (
            (chol_s**2).sum() + (self.q_mean**2).sum() - m * chol_s.shape[0]
            - 2 * self.q_logdiag.sum()
        )

    def forward(self, X):
        chols, kls = self.inducing_chain()
        A, k_t = self.top_features(X, chols)
        mean, var = self.output(A, k_t)
        return mean, var, kls

