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
from .pfn import (  # noqa: F401
    PFNClassifier,
    PFNPredictiveDistribution,
    PFNRegressor,
    load_pfn,
)
from .random_features import (  # noqa: F401
    RandomFeatureClassifier,
    RandomFeatureRegressor,
    RandomFeatures,
)
from .theory import (  # noqa: F401
    RiskEstimate,
    krr_risk,
    optimal_ridge,
    power_law_task,
    rf_risk,
    task_eigenstructure,
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
    "PFNPredictiveDistribution",
    "load_pfn",
    "RandomFeatures",
    "RandomFeatureRegressor",
    "RandomFeatureClassifier",
    "RiskEstimate",
    "krr_risk",
    "rf_risk",
    "optimal_ridge",
    "power_law_task",
    "task_eigenstructure",
]
