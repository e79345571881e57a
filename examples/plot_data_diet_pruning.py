"""
=====================================================
Pruning a dataset with EL2N scores (a "data diet")
=====================================================

Paul, Ganguli & Dziugaite (NeurIPS 2021) score every training example a few epochs into
training by the norm of its softmax error (EL2N), averaged over a few networks. Large scores mark
hard examples, and mislabelled ones. Keeping the hardest examples prunes a dataset with little
loss at moderate rates, but collapses at high rates, where coverage-centric selection (CCS, Zheng
et al. 2023) keeps a spread of scores instead.

:class:`~overparam_sklearn.DataDietClassifier` scores and prunes inside its own ``fit``, so it is
an ordinary scikit-learn classifier: here it wraps a logistic regression on scikit-learn's digits.
The settings are small so the example runs in well under a minute; ``benchmarks/prune_bench.py``
has the full curves (three seeds, neural networks, digits and MNIST-1D).
"""

# %%
# Label noise: EL2N flags flipped labels
# --------------------------------------
# Flip 10% of the training labels and score with EL2N (2 networks, 5 epochs).
import matplotlib.pyplot as plt
import numpy as np
from sklearn.datasets import load_digits
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import train_test_split
from sklearn.preprocessing import StandardScaler

from overparam_sklearn import DataDietClassifier, EL2NScorer

X, y = load_digits(return_X_y=True)
X_train, X_test, y_train, y_test = train_test_split(
    X, y, test_size=0.3, stratify=y, random_state=0
)
scaler = StandardScaler().fit(X_train)
X_train, X_test = scaler.transform(X_train), scaler.transform(X_test)

rng = np.random.RandomState(0)
flipped = rng.rand(len(y_train)) < 0.1
y_noisy = y_train.copy()
y_noisy[flipped] = (y_train[flipped] + rng.randint(1, 10, flipped.sum())) % 10

scorer = EL2NScorer(n_estimators=2, score_epoch=5, device="cpu", random_state=0)
scores = scorer.fit(X_train, y_noisy).scores_
print(f"AUROC of EL2N for the flipped labels: {roc_auc_score(flipped, scores):.3f}")

# %%
# Pruning curves
# --------------
# Keep the hardest rows by EL2N, a random subset, or a CCS-stratified subset (dropping the hardest
# 10% first at high pruning rates), and fit the logistic regression on what is kept.
fractions = [0.0, 0.3, 0.5, 0.7, 0.9]
curves = {"hardest": [], "random": [], "stratified": []}
for keep in curves:
    for pruned in fractions:
        clf = DataDietClassifier(
            LogisticRegression(max_iter=2000),
            EL2NScorer(n_estimators=2, score_epoch=5, device="cpu"),
            keep_fraction=1.0 - pruned,
            keep=keep,
            drop_hardest_fraction=0.1 if (keep == "stratified" and pruned >= 0.7) else 0.0,
            random_state=0,
        ).fit(X_train, y_train)
        curves[keep].append(clf.score(X_test, y_test))
        print(f"{keep:>10}, {pruned:.0%} pruned: test accuracy {curves[keep][-1]:.3f} "
              f"({len(clf.sample_indices_)} rows kept)")

fig, ax = plt.subplots(figsize=(5, 3.5))
for keep, acc in curves.items():
    ax.plot(np.array(fractions) * 100, np.array(acc) * 100, marker="o", label=keep)
ax.set_xlabel("training rows pruned (%)")
ax.set_ylabel("test accuracy (%)")
ax.set_title("digits, logistic regression on EL2N-pruned data")
ax.legend()
fig.tight_layout()

# %%
# Keeping only the hardest rows works at moderate rates and collapses at high ones (few easy,
# prototypical examples are left); stratified selection keeps the curve closer to random there.
# The same classifier works in ``GridSearchCV`` over ``keep_fraction``: each fold scores only its
# own training rows.
