"""overparam_sklearn: scikit-learn estimators from the theory of overparameterized networks.

Infinite-width NTK / NNGP kernel regression, random-feature ridge regression and its risk theory,
prior-data fitted networks, data-pruning scores, and sparse deep kernel machines, computed in
PyTorch on CPU or GPU.
"""

__version__ = "0.1.0"

# Public estimators and functions only. Each method module adds its own import line here.
from .data_diet import (  # noqa: F401
    DataDietClassifier,
    DataDietSampler,
    EL2NScorer,
    ForgettingScorer,
    GraNdScorer,
)
from .dkm import SparseDKMClassifier, SparseDKMRegressor  # noqa: F401
from .kernels import NNGPKernel, NTKKernel, nngp_kernel, ntk_kernel  # noqa: F401
from .ntk import NTKClassifier, NTKRegressor  # noqa: F401
from .pfn import PFNClassifier, PFNRegressor  # noqa: F401
from .random_features import (  # noqa: F401
    RandomFeatureClassifier,
    RandomFeatureRegressor,
    RandomFeatures,
)

__all__ = [
    "EL2NScorer",
    "GraNdScorer",
    "ForgettingScorer",
    "DataDietClassifier",
    "DataDietSampler",
    "SparseDKMRegressor",
    "SparseDKMClassifier",
    "NNGPKernel",
    "NTKKernel",
    "nngp_kernel",
    "ntk_kernel",
    "NTKRegressor",
    "NTKClassifier",
    "PFNRegressor",
    "PFNClassifier",
    "RandomFeatures",
    "RandomFeatureRegressor",
    "RandomFeatureClassifier",
]
