"""Infinite ensembles of infinitely wide networks: NTK / NNGP regression and classification.

A fully connected network trained by gradient descent on the MSE loss becomes, as its width goes
to infinity, a linear model in its parameters; averaged over random initialisations its outputs
form a Gaussian process whose mean and covariance at training time ``t`` are closed forms in the
NNGP kernel ``K`` and the neural tangent kernel ``Theta`` (Jacot et al. 2018; Lee et al. 2019,
"Wide neural networks of any depth evolve as linear models under gradient descent", Eq. 14-16).
With ``tau = t / y.size`` (neural-tangents' convention, learning rate 1) and
``A = Theta + alpha I``::

    mean(t) = Theta_*x A^{-1} (I - exp(-tau A)) y
    cov(t)  = K_** + Theta_*x A^{-1}(I - e^{-tau A}) K_xx (I - e^{-tau A}) A^{-1} Theta_x*
              - (Theta_*x A^{-1} (I - e^{-tau A}) K_x* + transpose)

``kernel="nngp"`` trains only the readout layer, i.e. ``Theta`` replaced by ``K``; at ``t=None``
(converged) it is the exact GP posterior with noise variance ``alpha``.
"""

from ._classifier import NTKClassifier
from ._regressor import NTKRegressor

__all__ = ["NTKRegressor", "NTKClassifier"]
