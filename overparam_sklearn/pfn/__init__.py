"""Prior-data fitted networks: transformers that do Bayesian inference in one forward pass.

``priors`` samples training datasets, ``model`` holds the transformer and its bar-distribution
head, ``train`` trains and exports weights (``python -m overparam_sklearn.pfn.train``; run
directories, checkpoints and exported files in ``_checkpoints``), and
``estimator`` wraps the shipped weights as scikit-learn estimators, with ``_weights`` (locating,
verifying and loading weights), ``_context`` (how a training set becomes the network's context)
and ``_distribution`` (the regressor's predictive distributions) beside it.
"""

from .estimator import PFNClassifier, PFNPredictiveDistribution, PFNRegressor, load_pfn

__all__ = ["PFNRegressor", "PFNClassifier", "PFNPredictiveDistribution", "load_pfn"]
