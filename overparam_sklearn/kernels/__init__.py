"""Infinite-width kernels as pure torch functions, and the empirical NTK of torch modules.

``_dual`` holds the closed-form dual activations, ``_fully_connected`` the NNGP / NTK recursion
through depth, ``layers`` the layer algebra for any architecture (convolutions, pooling,
residual branches, LayerNorm), ``_empirical`` the finite-width NTK of a torch module, and
``_sklearn`` the :mod:`sklearn.gaussian_process.kernels` adapters (``EmpiricalNTKKernel`` too).
"""

from ._dual import ACTIVATION_NAMES, DualActivation, parse_activation
from ._empirical import empirical_ntk
from ._fully_connected import (
    dense_input_gram,
    fc_diagonals,
    fc_kernels,
    nngp_kernel,
    ntk_kernel,
)
from ._sklearn import EmpiricalNTKKernel, NNGPKernel, NTKKernel
from .layers import (
    Activation,
    AvgPool,
    Conv,
    Dense,
    FanInSum,
    FanOut,
    Flatten,
    GlobalAvgPool,
    Identity,
    Layer,
    LayerNorm,
    layer_diagonals,
    layer_kernels,
    parallel,
    serial,
)

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
    "empirical_ntk",
    "EmpiricalNTKKernel",
    "Layer",
    "serial",
    "parallel",
    "FanOut",
    "FanInSum",
    "Identity",
    "Dense",
    "Conv",
    "AvgPool",
    "GlobalAvgPool",
    "Flatten",
    "LayerNorm",
    "Activation",
    "layer_kernels",
    "layer_diagonals",
]
