"""Shared dense linear algebra in torch: every kernel-ridge, GP and ridge solve of the package.

Numerics live here as private module-level solvers (in the spirit of scikit-learn's
``linear_model/_ridge.py``); estimators only orchestrate. Everything takes and returns torch
tensors on any device.

* :mod:`._dense`: finiteness checks, Cholesky and triangular solves, eigendecompositions;
* :mod:`._kernel_ridge`: kernel ridge and gradient-flow ensembles (NTK / NNGP), the
  leave-one-out path of kernel ridge over alpha;
* :mod:`._ridge`: ridge on an explicit design (random features) and the ``alpha="auto"`` grid.
"""

from ._dense import _eigh_psd as _eigh_psd  # noqa: F401  (ntk, tests and benchmarks use it)
from ._dense import all_finite, cho_solve, cholesky, eigh, gram
from ._kernel_ridge import (
    ensemble_variance_reduction,
    flow_filter,
    flow_matrix_function,
    kernel_ridge_apply,
    kernel_ridge_factor,
    kernel_ridge_path,
)
from ._ridge import (
    auto_alpha_grid,
    ridge_coef,
    ridge_decompose,
    ridge_path,
    ridge_solve,
    warn_if_alpha_on_edge,
)

__all__ = [
    "all_finite",
    "gram",
    "cholesky",
    "cho_solve",
    "flow_filter",
    "flow_matrix_function",
    "eigh",
    "kernel_ridge_factor",
    "kernel_ridge_apply",
    "ensemble_variance_reduction",
    "ridge_decompose",
    "ridge_path",
    "ridge_coef",
    "ridge_solve",
    "kernel_ridge_path",
    "auto_alpha_grid",
    "warn_if_alpha_on_edge",
]
