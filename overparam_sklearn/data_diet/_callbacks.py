"""skorch callbacks of the scorers, in their own module so that importing the package does not
import skorch (the scorers import this module inside ``fit``)."""

from skorch.callbacks import Callback

from ._mlp import _logits


class _EpochTracker(Callback):
    """skorch callback: per-epoch correctness on the training set (and weight snapshots)."""

    def __init__(self, X, y, keep_snapshots):
        self.X = X
        self.y = y
        self.keep_snapshots = keep_snapshots

    def initialize(self):
        self.correct_ = []
        self.snapshots_ = []
        return self

    def on_epoch_end(self, net, **kwargs):
        module = net.module_
        logits = _logits(module, self.X)
        self.correct_.append((logits.argmax(dim=1) == self.y).cpu())
        if self.keep_snapshots:
            self.snapshots_.append(
                {k: v.detach().cpu().clone() for k, v in module.state_dict().items()}
            )
        module.train()
