"""The default scorer network (a ReLU MLP) and its initialisation from a private generator."""

import copy
import inspect
import math
import numbers

import torch
from torch import nn

from .._backend import (
    tile_slices,
)


class _MLP(nn.Module):
    """Default scoring network: ``Linear -> activation`` per hidden layer, then a Linear readout.

    Outputs logits (the scorers train it with cross-entropy). ``n_features`` and ``n_classes`` are
    filled in by the scorer; set the others with ``module_params={"hidden_layer_sizes": (...),
    "activation": "relu" | "tanh" | "gelu"}`` or ``set_params(module__hidden_layer_sizes=...)``.
    """

    def __init__(self, n_features, n_classes, hidden_layer_sizes=(128,), activation="relu"):
        super().__init__()
        acts = {"relu": nn.ReLU, "tanh": nn.Tanh, "gelu": nn.GELU}
        if activation not in acts:
            raise ValueError(f"activation must be one of {sorted(acts)}, got {activation!r}")
        hidden_layer_sizes = _check_hidden_layer_sizes(hidden_layer_sizes)
        layers, fan_in = [], n_features
        for width in hidden_layer_sizes:
            layers += [nn.Linear(fan_in, int(width)), acts[activation]()]
            fan_in = int(width)
        layers.append(nn.Linear(fan_in, n_classes))
        self.net = nn.Sequential(*layers)

    def forward(self, X):
        return self.net(X)


def _check_hidden_layer_sizes(sizes):
    """``sizes`` as a tuple of positive ints (an empty tuple is a linear model)."""
    if isinstance(sizes, numbers.Integral) and not isinstance(sizes, bool):
        sizes = (sizes,)
    try:
        sizes = tuple(sizes)
    except TypeError:
        raise TypeError(
            f"hidden_layer_sizes must be a sequence of positive ints, got {sizes!r}"
        ) from None
    for width in sizes:
        if isinstance(width, bool) or not isinstance(width, numbers.Integral) or width < 1:
            raise ValueError(
                "hidden_layer_sizes must be a sequence of positive ints (the width of each "
                f"hidden layer; () for none), got {sizes!r}"
            )
    return tuple(int(w) for w in sizes)


@torch.no_grad()
def _reset_parameters(module, generator):
    """Redraw a module's weights from ``generator`` with PyTorch's default Linear/Conv rule.

    Every parameter named ``weight`` with at least two dimensions (Linear, Conv, ...) is drawn
    U(-1/sqrt(fan_in), 1/sqrt(fan_in)) (PyTorch's ``kaiming_uniform_(a=sqrt(5))``), and the
    ``bias`` beside it from the same interval. Other parameters keep their deterministic defaults
    (norm layers: ones and zeros). The global torch RNG is never used.
    """
    for sub in module.modules():
        direct = dict(sub.named_parameters(recurse=False))
        weight = direct.get("weight")
        fan_in = None
        if weight is not None and weight.dim() >= 2:
            fan_in = weight[0].numel()
            bound = 1.0 / math.sqrt(max(fan_in, 1))
            weight.copy_(_uniform(weight, bound, generator))
        for name, p in direct.items():
            if name == "weight":
                continue
            if name == "bias" and fan_in is not None:
                p.copy_(_uniform(p, 1.0 / math.sqrt(max(fan_in, 1)), generator))
            elif p.dim() >= 2:
                p.copy_(_uniform(p, 1.0 / math.sqrt(max(p[0].numel(), 1)), generator))


def _uniform(like, bound, generator):
    u = torch.rand(like.shape, generator=generator, dtype=torch.float64, device=generator.device)
    return ((2.0 * u - 1.0) * bound).to(device=like.device, dtype=like.dtype)


def _build_module(module, module_kwargs, n_features, n_classes, generator, device, dtype):
    """Instantiate the scoring module (skorch convention) and initialise it from ``generator``."""
    if module is None:
        module = _MLP
    kwargs = dict(module_kwargs)
    if isinstance(module, nn.Module):
        # an instance: copy it so every model of the ensemble has its own parameters
        instance = copy.deepcopy(module)
    else:
        try:
            sig = inspect.signature(module)
            accepted = sig.parameters
            has_var_kw = any(p.kind == p.VAR_KEYWORD for p in accepted.values())
        except (TypeError, ValueError):
            accepted, has_var_kw = {}, False
        for key, val in (("n_features", n_features), ("n_classes", n_classes)):
            if key not in kwargs and (key in accepted or has_var_kw):
                kwargs[key] = val
        # Keep the global RNG's stream where it was: modules draw their default initialisation
        # from it when constructed; we redraw every weight from the private generator below.
        with torch.random.fork_rng(devices=[]):
            instance = module(**kwargs)
    if not isinstance(instance, nn.Module):
        raise TypeError(f"module must build a torch.nn.Module, got {type(instance).__name__}")
    _reset_parameters(instance, generator)
    return instance.to(device=device, dtype=dtype)


def _last_linear(module):
    """The last ``nn.Linear`` of a module (assumed to be the readout producing the logits)."""
    last = None
    for sub in module.modules():
        if isinstance(sub, nn.Linear):
            last = sub
    if last is None:
        raise ValueError(
            "gradient='last_layer' needs a module whose readout is an nn.Linear layer; "
            "none was found. Use gradient='all'."
        )
    return last


# --------------------------------------------------------------------------------------------
# Per-example scores of one network (pure torch)
# --------------------------------------------------------------------------------------------


def _logits(module, X, batch_size=4096):
    module.eval()
    with torch.no_grad():
        return torch.cat([module(X[s]) for s in tile_slices(X.shape[0], batch_size)], dim=0)

