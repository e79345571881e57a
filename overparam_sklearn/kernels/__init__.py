"""Infinite-width kernels of fully connected networks as pure torch functions.

``_dual`` holds the closed-form dual activations, ``_fully_connected`` the NNGP / NTK recursion
through depth, and ``_sklearn`` the :mod:`sklearn.gaussian_process.kernels` adapters.
"""

from ._dual import ACTIVATION_NAMES, DualActivation, parse_activation
from ._fully_connected import (
    dense_input_gram,
    fc_diagonals,
    fc_kernels,
    nngp_kernel,
    ntk_kernel,
)
from ._sklearn import NNGPKernel, NTKKernel

__all__ = [
    "ACTIVATION_NAMES",
    "DualActivation",
    "parse_activation",
    "fc_kernels",
    "fc_diagonals",
    "dense_input_gram",
    "nngp_kernel",
    "ntk_kernel",
    "NNGPKernel",
    "NTKKernel",
]
