"""Data-pruning scores (EL2N, GraNd, forgetting) and pruning estimators.

"Deep Learning on a Data Diet" (Paul, Ganguli & Dziugaite, NeurIPS 2021) scores every training
example early in training, averaged over several independently initialised networks:

* **EL2N** (their eq. 2): ``E_w || softmax(f_w(x)) - onehot(y) ||_2``, the norm of the error
  vector;
* **GraNd** (their eq. 1): ``E_w || grad_w loss(f_w(x), y) ||_2``, the norm of the per-example
  loss gradient over all parameters (here batched per example with :mod:`torch.func`).

Forgetting (Toneva et al., ICLR 2019) counts how often an example goes from correctly to wrongly
classified during training. Large scores mark hard, atypical or mislabelled examples. Keeping the
hardest examples prunes a dataset with little loss of accuracy at moderate rates; at high rates or
on scarce data keeping only the hardest collapses (Sorscher et al., NeurIPS 2022), which
coverage-centric coreset selection (CCS, Zheng et al., ICLR 2023) fixes by dropping the very
hardest and sampling evenly across the score range. Kirsch (2023) reproduced EL2N but not GraNd at
initialisation.

:class:`DataDietClassifier` scores and prunes inside its own ``fit``, so it works in a plain
:class:`~sklearn.pipeline.Pipeline` and in :class:`~sklearn.model_selection.GridSearchCV` without
leakage across folds; :class:`DataDietSampler` offers the same selection as ``fit_resample`` for
imbalanced-learn pipelines.
"""

from ._pruning import DataDietClassifier, DataDietSampler
from ._scorers import EL2NScorer, ForgettingScorer, GraNdScorer

__all__ = [
    "EL2NScorer",
    "GraNdScorer",
    "ForgettingScorer",
    "DataDietClassifier",
    "DataDietSampler",
]
