"""Sparse deep kernel machines (DKMs) with inducing points.

A deep kernel machine (Yang, Robeyns, Milsom, Anson, Schoots & Aitchison, "A theory of
representation learning gives a deep generalisation of kernel methods", ICML 2023) is the
infinite-width limit of a deep Gaussian process in which the layer widths grow with a *retained*
weight on the prior, so that each layer keeps a learned Gram matrix instead of collapsing to the
fixed NNGP kernel. Each hidden layer ``l = 1..L`` has a Gram matrix ``G_l`` and the objective is
(the DKM objective; the inducing-point version is their sparse DKM)::

    L(G_1..G_L) = E_q[log p(Y | F_{L+1})] - KL(q(u) || p(u | K(G_L)))
                  - sum_l nu_l KL( N(0, G_l) || N(0, K(G_{l-1})) ),

where ``K`` maps a Gram matrix to the kernel of the next layer and ``G_0`` is the input Gram.
With inducing points only the ``m x m`` inducing blocks ``G_l^ii`` are parameters, each through
its Cholesky factor ``chol(K(G_{l-1}^ii)) V_l`` with ``V_l`` lower triangular with a positive
diagonal (``V_l = I``, the NNGP, at initialisation; written relative to the prior's factor, the
KL is ``(|V_l|_F^2 - m - log det V_l V_l^T) / 2`` whatever the conditioning of ``K``). The
train/test blocks follow from the Gaussian conditional of the features given the inducing
features::

    G_l^ti = K^ti (K^ii)^-1 G_l^ii
    diag G_l^tt = diag[K^tt - K^ti (K^ii)^-1 K^it + K^ti (K^ii)^-1 G_l^ii (K^ii)^-1 K^it]

with ``K = K(G_{l-1})``. The kernels below are elementwise functions of ``(G_ij, G_ii, G_jj)``, so
a minibatch needs only its ``b x m`` block and its own diagonal: one step costs
``O(b m^2 + L m^3)`` and an epoch is linear in ``n``; no ``n x n`` matrix is ever formed.

The output layer is a sparse variational GP (SVGP, Hensman et al. 2013/2015) on the top kernel
``K(G_L)`` with whitened inducing outputs, a Gaussian likelihood (analytic expected
log-likelihood, learned noise above a floor) or a categorical one (softmax, Monte Carlo).

Limits (tested in tests/test_dkm.py): at initialisation every ``G_l^ii`` is the NNGP Gram, so
every KL is zero and the model is an SVGP with the NNGP kernel of depth ``n_hidden = L + 1``; as
``nu -> inf`` training keeps it there; ``n_hidden=1`` (``L = 0``) is a plain SVGP.
"""

from ._estimators import SparseDKMClassifier, SparseDKMRegressor

__all__ = ["SparseDKMRegressor", "SparseDKMClassifier"]
