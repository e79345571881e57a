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

import copy
import inspect
import math
import time
from numbers import Integral, Real

import numpy as np
import torch
from sklearn.base import (
    BaseEstimator,
    ClassifierMixin,
    MetaEstimatorMixin,
    _fit_context,
    clone,
)
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import LabelEncoder
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import HasMethods, Interval, StrOptions
from sklearn.utils.metaestimators import available_if
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted, validate_data
from skorch.callbacks import Callback
from torch import nn

from ._backend import (
    DEVICE_OPTIONS,
    DTYPE_OPTIONS,
    numpy_dtype,
    resolve_device,
    resolve_dtype,
    rows_per_tile,
    seed_from_random_state,
    tile_slices,
    to_numpy,
    to_tensor,
)

__all__ = [
    "EL2NScorer",
    "GraNdScorer",
    "ForgettingScorer",
    "DataDietClassifier",
    "DataDietSampler",
]


# --------------------------------------------------------------------------------------------
# The default network and initialisation from a private generator
# --------------------------------------------------------------------------------------------


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
        layers, fan_in = [], n_features
        for width in hidden_layer_sizes:
            layers += [nn.Linear(fan_in, int(width)), acts[activation]()]
            fan_in = int(width)
        layers.append(nn.Linear(fan_in, n_classes))
        self.net = nn.Sequential(*layers)

    def forward(self, X):
        return self.net(X)


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


def el2n_scores(module, X, y):
    """EL2N (Paul et al. 2021, eq. 2) of one network: ``|| softmax(f(x)) - onehot(y) ||_2``."""
    logits = _logits(module, X)
    err = torch.softmax(logits, dim=1)
    err[torch.arange(len(y), device=err.device), y] -= 1.0
    return torch.linalg.vector_norm(err, dim=1)


def _n_params(module):
    return sum(p.numel() for p in module.parameters())


def _single_use_linears(module, x1):
    """The ``nn.Linear`` submodules called exactly once in a forward pass of one example.

    Returns ``[(name, linear, output_shape)]``; shapes come from a dry run on ``x1`` (one row).
    A Linear called twice (weight sharing) or whose parameters are shared elsewhere is left out:
    its per-example gradient is not the single product the factored norm assumes.
    """
    calls, shapes, handles = {}, {}, []
    named = [(n, m) for n, m in module.named_modules() if isinstance(m, nn.Linear)]
    for name, lin in named:

        def hook(mod, inp, out, name=name):
            calls[name] = calls.get(name, 0) + 1
            shapes[name] = tuple(out.shape)

        handles.append(lin.register_forward_hook(hook))
    try:
        with torch.no_grad():
            module(x1)
    finally:
        for h in handles:
            h.remove()
    owners = {}
    for mod_name, mod in module.named_modules():
        for p in mod.parameters(recurse=False):
            owners.setdefault(id(p), set()).add(mod_name)
    out = []
    for name, lin in named:
        shared = any(len(owners[id(p)]) > 1 for p in lin.parameters(recurse=False))
        if calls.get(name) == 1 and not shared:
            out.append((name, lin, shapes[name]))
    return out


def grand_scores(module, X, y, tile_bytes=64 * 2**20, factored=True):
    """GraNd (Paul et al. 2021, eq. 1) of one network over all its parameters.

    ``|| grad_theta CE(f_theta(x), y) ||_2`` for every row, batched per example with
    ``torch.func`` (``vmap`` of ``grad`` of ``functional_call``) over tiles of rows. The module
    runs in eval mode (no dropout; norm layers use their running statistics), so rows are
    independent.

    With ``factored=True`` (default) the weights of every ``nn.Linear`` called once per forward
    are not differentiated directly: ``vmap(grad)`` is taken with respect to a zero perturbation
    of the layer's output, giving the per-example output gradient ``delta`` (positions
    ``p = 1..P`` when the layer sees more than one vector per example), and the layer's input
    ``h`` is returned alongside. The per-example weight gradient is ``sum_p delta_p h_p^T``, so
    ``||dL/dW||^2 = sum_{p,q} (delta_p . delta_q)(h_p . h_q)`` and ``||dL/db||^2 =
    ||sum_p delta_p||^2`` exactly (the rank-one identity of Goodfellow 2015, "Efficient
    per-example gradient computations"), without materialising ``n x n_params`` numbers. All
    other parameters get their per-example gradients from ``vmap(grad)`` directly, as does every
    parameter with ``factored=False``. Tiles keep those per-example numbers within
    ``tile_bytes``.
    """
    from torch.func import functional_call, grad, vmap

    module.eval()
    params = {k: v.detach() for k, v in module.named_parameters()}
    buffers = {k: v.detach() for k, v in module.named_buffers()}
    linears = _single_use_linears(module, X[:1]) if factored and len(X) else []
    factored_names = set()
    for name, lin, _ in linears:
        prefix = f"{name}." if name else ""
        factored_names.update(prefix + k for k, _ in lin.named_parameters(recurse=False))
    direct = {k: v for k, v in params.items() if k not in factored_names}
    fixed = {k: v for k, v in params.items() if k in factored_names}
    eps = [torch.zeros(shape, dtype=X.dtype, device=X.device) for _, _, shape in linears]

    def loss_one(direct_p, eps_l, x, t):
        feats = []
        handles = []
        for i, (_, lin, _) in enumerate(linears):

            def hook(mod, inp, out, i=i):
                feats.append(inp[0])
                return out + eps_l[i]

            handles.append(lin.register_forward_hook(hook))
        try:
            out = functional_call(module, ({**fixed, **direct_p}, buffers), (x.unsqueeze(0),))
        finally:
            for h in handles:
                h.remove()
        return nn.functional.cross_entropy(out, t.unsqueeze(0)), feats

    per_example = vmap(grad(loss_one, argnums=(0, 1), has_aux=True), in_dims=(None, None, 0, 0))
    width = sum(math.prod(shape) for _, _, shape in linears)
    n_direct = sum(v.numel() for v in direct.values())
    # the per-example numbers plus the activations of the batched forward/backward: ~4 copies
    tile = rows_per_tile(n_direct + 2 * width, X.dtype, n_buffers=4, tile_bytes=tile_bytes)
    out = []
    for s in tile_slices(X.shape[0], tile):
        (g_direct, g_eps), feats = per_example(direct, eps, X[s], y[s])
        rows = s.stop - s.start
        # one fused pass per tensor (no squared temporary of the per-example gradients)
        sq = [torch.linalg.vector_norm(v.reshape(rows, -1), dim=1).square()
              for v in g_direct.values()]
        for (_, lin, _), delta, h in zip(linears, g_eps, feats, strict=True):
            delta = delta.reshape(rows, -1, delta.shape[-1])  # (rows, P, out)
            h = h.reshape(rows, -1, h.shape[-1])  # (rows, P, in)
            if delta.shape[1] == 1:
                sq.append(delta.square().sum(dim=(1, 2)) * h.square().sum(dim=(1, 2)))
            else:
                gram = (delta @ delta.transpose(1, 2)) * (h @ h.transpose(1, 2))
                sq.append(gram.sum(dim=(1, 2)))
            if lin.bias is not None:
                sq.append(delta.sum(dim=1).square().sum(dim=1))
        total = torch.stack(sq).sum(dim=0) if sq else torch.zeros(rows, dtype=X.dtype)
        out.append(total.sqrt())
    return torch.cat(out) if out else torch.zeros(0, dtype=X.dtype, device=X.device)


def grand_scores_last_layer(module, X, y):
    """GraNd restricted to the readout layer, in closed form.

    For logits ``z = W h + b`` and cross-entropy, ``dL/dW = (p - e_y) h^T`` and ``dL/db = p - e_y``
    (``p = softmax(z)``), so the norm is ``||p - e_y|| * sqrt(||h||^2 + 1)`` (``+1`` only with a
    bias): the EL2N error times the feature norm. ``h`` is captured with a forward hook on the last
    ``nn.Linear``, which must produce the logits.
    """
    last = _last_linear(module)
    feats = []
    hook = last.register_forward_hook(lambda mod, inp, out: feats.append(inp[0].detach()))
    try:
        err_norm = el2n_scores(module, X, y)
    finally:
        hook.remove()
    h = torch.cat(feats, dim=0).reshape(X.shape[0], -1)
    sq = h.pow(2).sum(dim=1)
    if last.bias is not None:
        sq = sq + 1.0
    return err_norm * sq.sqrt()


def _grand_scores_loop(module, X, y, params=None):
    """Reference: per-example gradient norms with one backward pass per example (slow)."""
    module.eval()
    params = list(module.parameters()) if params is None else list(params)
    out = torch.empty(X.shape[0], dtype=X.dtype, device=X.device)
    for i in range(X.shape[0]):
        loss = nn.functional.cross_entropy(module(X[i : i + 1]), y[i : i + 1])
        grads = torch.autograd.grad(loss, params)
        out[i] = torch.sqrt(sum(g.pow(2).sum() for g in grads))
    return out


def _forgetting_counts(correct):
    """Forgetting events (Toneva et al. 2019) from a ``(n_epochs, n)`` boolean correctness matrix.

    An event is a transition correct -> wrong between consecutive evaluations; the state before
    training counts as "not learned". Examples never classified correctly count as forgotten
    ``n_epochs`` times, more than any learned example can be (at most ``n_epochs // 2``): Toneva
    et al. rank never-learned examples as the most forgettable.
    """
    correct = torch.as_tensor(correct, dtype=torch.bool)
    n_epochs = correct.shape[0]
    events = (correct[:-1] & ~correct[1:]).sum(dim=0).to(torch.float64)
    never = ~correct.any(dim=0)
    events[never] = float(n_epochs)
    return events


# --------------------------------------------------------------------------------------------
# skorch training shared by the three scorers
# --------------------------------------------------------------------------------------------


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


def _net_to_cpu(net):
    """Move a fitted skorch net (module and optimizer state) to the CPU, in place."""
    net.module_.to("cpu")
    for state in net.optimizer_.state.values():
        for k, v in state.items():
            if isinstance(v, torch.Tensor):
                state[k] = v.to("cpu")
    net.criterion_.to("cpu")
    net.device = "cpu"
    return net


_SCORER_CONSTRAINTS = {
    "n_models": [Interval(Integral, 1, None, closed="left")],
    "score_epoch": [Interval(Integral, 0, None, closed="left")],
    "module": [None, callable],
    "module_params": [None, dict],
    "optimizer": [callable],
    "lr": [Interval(Real, 0, None, closed="neither")],
    "batch_size": [Interval(Integral, 1, None, closed="left")],
    "device": DEVICE_OPTIONS,
    "dtype": DTYPE_OPTIONS,
    "random_state": ["random_state"],
    "verbose": ["verbose"],
}

_COMMON_PARAMS_DOC = """
    n_models : int, default=5
        Number of independently initialised networks the scores are averaged over (Paul et al.
        use 10).
    score_epoch : int, default=10
        Epochs of training before scoring. ``0`` scores the networks at initialisation.
    module : torch.nn.Module class, instance or None, default=None
        The network, in skorch's convention: a class instantiated with ``module_params``
        (``n_features`` and ``n_classes`` are filled in when the class accepts them and they are
        not given), or an instance that is copied for each model. It must output logits.
        ``None`` is a small MLP (``hidden_layer_sizes=(128,)``, ``activation="relu"``). Weights of
        every model are redrawn from a private generator (PyTorch's default Linear/Conv
        initialisation), never from torch's global RNG.
    module_params : dict or None, default=None
        Keyword arguments of ``module``. As in skorch, each is also reachable as
        ``set_params(module__<name>=value)`` (so ``GridSearchCV`` can search
        ``scorer__module__hidden_layer_sizes``), which updates this dict.
    optimizer : torch optimizer class, default=torch.optim.Adam
    lr : float, default=1e-3
        Learning rate.
    batch_size : int, default=64
    device : {"auto", "cpu", "cuda"}, default="auto"
        Where training and scoring run; fitted networks are kept on the CPU.
    dtype : {"float32", "float64"} or None, default=None
        Network precision; ``None`` means float32.
    random_state : int, RandomState instance or None, default=None
        Seeds the initialisation and the minibatch order of every model (private generators).
    verbose : int, default=0
        Print progress per model when > 0 (and skorch's epoch log when > 1).
"""


class _BaseScorer(BaseEstimator):
    """Shared ``fit`` of the scorers: train ``n_models`` networks with skorch, score each."""

    _parameter_constraints = dict(_SCORER_CONSTRAINTS)
    _keep_snapshots = False

    def __init__(
        self,
        n_models=5,
        score_epoch=10,
        module=None,
        module_params=None,
        optimizer=torch.optim.Adam,
        lr=1e-3,
        batch_size=64,
        device="auto",
        dtype=None,
        random_state=None,
        verbose=0,
    ):
        self.n_models = n_models
        self.score_epoch = score_epoch
        self.module = module
        self.module_params = module_params
        self.optimizer = optimizer
        self.lr = lr
        self.batch_size = batch_size
        self.device = device
        self.dtype = dtype
        self.random_state = random_state
        self.verbose = verbose

    def _module_kwargs(self):
        return dict(self.module_params or {})

    def set_params(self, **params):
        """Set parameters; ``module__<name>=value`` updates ``module_params`` (skorch style).

        Returns
        -------
        self : object
        """
        module_kw = {k[len("module__") :]: params.pop(k) for k in list(params)
                     if k.startswith("module__")}
        if "module_params" in params:
            self.module_params = params.pop("module_params")
        if module_kw:
            self.module_params = {**(self.module_params or {}), **module_kw}
        return super().set_params(**params)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.target_tags.required = True
        tags.non_deterministic = False
        return tags

    # --- fitting ---------------------------------------------------------------------------

    def _validate_X(self, X, reset):
        X = validate_data(self, X, reset=reset, dtype=[np.float64, np.float32])
        return np.array(X, dtype=numpy_dtype(self.dtype_), order="C", copy=True)

    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y):
        """Train ``n_models`` networks for ``score_epoch`` epochs and score the training set.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
        y : array-like of shape (n_samples,)
            Class labels.

        Returns
        -------
        self : object
            Fitted scorer; ``scores_`` holds the training scores averaged over the models.
        """
        from skorch import NeuralNetClassifier

        X, y = validate_data(self, X, y, dtype=[np.float64, np.float32])
        check_classification_targets(y)
        self.device_ = resolve_device(self.device)
        self.dtype_ = resolve_dtype(self.dtype, "float32")
        X = np.array(X, dtype=numpy_dtype(self.dtype_), order="C", copy=True)
        self.label_encoder_ = LabelEncoder().fit(y)
        self.classes_ = self.label_encoder_.classes_
        y_enc = self.label_encoder_.transform(y).astype(np.int64)
        n_classes = len(self.classes_)

        rng = check_random_state(self.random_state)
        Xt = to_tensor(X, self.device_, self.dtype_)
        yt = torch.as_tensor(y_enc, device=self.device_)
        track = self.score_epoch > 0 and (self._keep_snapshots or self._needs_tracking)
        self.estimators_, self.snapshots_, per_model = [], [], []
        start = time.perf_counter()
        for m in range(self.n_models):
            seed = seed_from_random_state(rng)
            init_gen = torch.Generator(device="cpu")
            init_gen.manual_seed(seed)
            shuffle_gen = torch.Generator(device="cpu")
            shuffle_gen.manual_seed(seed + 1)
            module = _build_module(
                self.module,
                self._module_kwargs(),
                X.shape[1],
                n_classes,
                init_gen,
                self.device_,
                self.dtype_,
            )
            callbacks = []
            tracker = None
            if track:
                tracker = _EpochTracker(Xt, yt, self._keep_snapshots)
                callbacks.append(("data_diet_tracker", tracker))
            net = NeuralNetClassifier(
                module=module,
                criterion=nn.CrossEntropyLoss,
                optimizer=self.optimizer,
                lr=self.lr,
                max_epochs=self.score_epoch,
                batch_size=self.batch_size,
                train_split=None,
                callbacks=callbacks,
                device=str(self.device_),
                iterator_train__shuffle=True,
                iterator_train__generator=shuffle_gen,
                classes=np.arange(n_classes),
                # skorch unpickles its CUDA-dependent attributes (module objects, not only
                # tensors) with torch.load when the scorer itself is unpickled; that is the
                # trust a pickle already asks for, and weights_only=True cannot load modules.
                torch_load_kwargs={"weights_only": False},
                verbose=max(0, int(self.verbose) - 1),
            )
            if self.score_epoch > 0:
                net.fit(X, y_enc)
            else:
                net.initialize()
            scores = self._score_trained(net.module_, Xt, yt, tracker)
            per_model.append(to_numpy(scores).astype(np.float64))
            if tracker is not None:
                self.snapshots_.append(tracker.snapshots_)
                # the tracker holds the training data; do not keep it in the fitted net
                tracker.X = tracker.y = None
                tracker.snapshots_ = tracker.correct_ = None
            self.estimators_.append(_net_to_cpu(net))
            if self.verbose > 0:
                print(
                    f"[{type(self).__name__}] model {m + 1}/{self.n_models} trained and scored "
                    f"({time.perf_counter() - start:.1f} s)"
                )
        self.scores_per_model_ = np.stack(per_model)
        self.scores_ = self.scores_per_model_.mean(axis=0)
        return self

    _needs_tracking = False

    def _score_trained(self, module, X, y, tracker):
        return self._score_module(module, X, y)

    # --- scoring new data ------------------------------------------------------------------

    def score_samples(self, X, y=None):
        """Score labelled data with the fitted networks (larger = harder), averaged over models.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
        y : array-like of shape (n_samples,) or None, default=None
            True labels (the data-diet scores proper). Without labels every row is scored
            against the class the fitted networks predict (argmax of their averaged
            probabilities), a label-free uncertainty score.

        Returns
        -------
        scores : ndarray of shape (n_samples,), float64
        """
        check_is_fitted(self)
        X = self._validate_X(X, reset=False)
        device = self._score_device()
        Xt = to_tensor(X, device, self.dtype_)
        modules = [self._module_on_device(net.module_, device) for net in self.estimators_]
        if y is None:
            probs = sum(torch.softmax(_logits(mod, Xt), dim=1) for mod in modules)
            yt = probs.argmax(dim=1)
        else:
            y = np.asarray(y)
            if y.ndim != 1 or y.shape[0] != X.shape[0]:
                raise ValueError(
                    f"y must be 1-D with one label per row of X ({X.shape[0]}), "
                    f"got shape {y.shape}"
                )
            unseen = ~np.isin(y, self.classes_)
            if unseen.any():
                raise ValueError(
                    f"y contains labels not seen in fit: {np.unique(y[unseen])[:5].tolist()}"
                )
            yt = torch.as_tensor(
                self.label_encoder_.transform(y).astype(np.int64), device=device
            )
        out = [to_numpy(self._score_new(m, mod, Xt, yt)) for m, mod in enumerate(modules)]
        return np.mean(np.stack(out).astype(np.float64), axis=0)

    def _score_device(self):
        # A scorer fitted on a GPU and unpickled on a machine without one scores on the CPU.
        if self.device_.type == "cuda" and not torch.cuda.is_available():
            return torch.device("cpu")
        return self.device_

    @staticmethod
    def _module_on_device(module, device):
        if device.type == "cpu":
            return module
        return copy.deepcopy(module).to(device)

    def _score_new(self, m, module, X, y):
        return self._score_module(module, X, y)


class EL2NScorer(_BaseScorer):
    __doc__ = (
        """EL2N data-pruning scores: the norm of the softmax error early in training.

    ``score(x, y) = mean_m || softmax(f_m(x)) - onehot(y) ||_2`` over ``n_models`` networks
    trained for ``score_epoch`` epochs (Paul, Ganguli & Dziugaite 2021, eq. 2). Large scores mark
    hard or mislabelled examples. Networks train in float32 by default (cross-entropy, skorch).

    Parameters
    ----------"""
        + _COMMON_PARAMS_DOC
        + """
    Attributes
    ----------
    scores_ : ndarray of shape (n_samples,)
        Training scores averaged over the models (float64).
    scores_per_model_ : ndarray of shape (n_models, n_samples)
    estimators_ : list of skorch.NeuralNetClassifier
        The trained networks, on the CPU.
    classes_ : ndarray of shape (n_classes,)
    device_ : torch.device
    dtype_ : torch.dtype
    n_features_in_ : int

    Examples
    --------
    >>> from sklearn.datasets import load_iris
    >>> from overparam_sklearn import EL2NScorer
    >>> X, y = load_iris(return_X_y=True)
    >>> scorer = EL2NScorer(n_models=2, score_epoch=3, random_state=0).fit(X, y)
    >>> scorer.scores_.shape
    (150,)
    """
    )

    def _score_module(self, module, X, y):
        return el2n_scores(module, X, y)


class GraNdScorer(_BaseScorer):
    __doc__ = (
        """GraNd data-pruning scores: the norm of the per-example loss gradient.

    ``score(x, y) = mean_m || grad_theta CE(f_m(x), y) ||_2`` (Paul, Ganguli & Dziugaite 2021,
    eq. 1), by default over all parameters, batched per example with ``torch.func`` (``vmap`` of
    ``grad`` of ``functional_call``); peak memory is bounded by tiling rows (about 64 MB of
    per-example gradients per tile). ``gradient="last_layer"`` uses the closed form
    ``||softmax(z) - e_y|| * sqrt(||h||^2 + 1)`` for the readout ``z = W h + b``.

    ``score_epoch=0`` scores at initialisation as in the paper's headline, but that is not
    recommended: Kirsch (2023, "Does 'Deep Learning on a Data Diet' reproduce?") found GraNd at
    initialisation no better than random pruning, while EL2N a few epochs in reproduces. Networks
    train in float32 by default.

    Parameters
    ----------
    gradient : {"all", "last_layer"}, default="all"
        Parameters the gradient norm is taken over."""
        + _COMMON_PARAMS_DOC
        + """
    Attributes
    ----------
    scores_ : ndarray of shape (n_samples,)
        Training scores averaged over the models (float64).
    scores_per_model_ : ndarray of shape (n_models, n_samples)
    estimators_ : list of skorch.NeuralNetClassifier
        The trained networks, on the CPU.
    classes_ : ndarray of shape (n_classes,)
    device_ : torch.device
    dtype_ : torch.dtype
    n_features_in_ : int

    Examples
    --------
    >>> from sklearn.datasets import load_iris
    >>> from overparam_sklearn import GraNdScorer
    >>> X, y = load_iris(return_X_y=True)
    >>> scorer = GraNdScorer(n_models=2, score_epoch=3, random_state=0).fit(X, y)
    >>> scorer.scores_.shape
    (150,)
    """
    )

    _parameter_constraints = {
        **_SCORER_CONSTRAINTS,
        "gradient": [StrOptions({"all", "last_layer"})],
    }

    def __init__(
        self,
        gradient="all",
        n_models=5,
        score_epoch=10,
        module=None,
        module_params=None,
        optimizer=torch.optim.Adam,
        lr=1e-3,
        batch_size=64,
        device="auto",
        dtype=None,
        random_state=None,
        verbose=0,
    ):
        self.gradient = gradient
        super().__init__(
            n_models=n_models,
            score_epoch=score_epoch,
            module=module,
            module_params=module_params,
            optimizer=optimizer,
            lr=lr,
            batch_size=batch_size,
            device=device,
            dtype=dtype,
            random_state=random_state,
            verbose=verbose,
        )

    def _score_module(self, module, X, y):
        if self.gradient == "last_layer":
            return grand_scores_last_layer(module, X, y)
        return grand_scores(module, X, y)


class ForgettingScorer(_BaseScorer):
    __doc__ = (
        """Forgetting-event counts (Toneva et al., ICLR 2019), averaged over networks.

    Each of ``n_models`` networks trains for ``score_epoch`` epochs; after every epoch the whole
    training set is classified, and a forgetting event is a transition from correct to wrong
    between consecutive epochs (the state before training counts as "not learned"). Examples never
    learned count ``score_epoch`` events, more than any learned example can have, so they rank as
    the most forgettable (Toneva et al. treat them as forgotten infinitely often). Evaluating once
    per epoch, rather than at every minibatch presentation as Toneva et al. do, is a coarser but
    common approximation.

    ``score_samples(X, y)`` replays the same count on new data with the per-epoch snapshots of
    every network (``snapshots_``; ``n_models * score_epoch`` CPU copies of the weights), so
    ``score_samples(X_train, y_train)`` equals ``scores_``. Networks train in float32 by default.

    Parameters
    ----------"""
        + _COMMON_PARAMS_DOC.replace(
            "score_epoch : int, default=10\n        Epochs of training before scoring. "
            "``0`` scores the networks at initialisation.",
            "score_epoch : int, default=10\n        Training epochs over which forgetting events "
            "are counted (at least 1).",
        )
        + """
    Attributes
    ----------
    scores_ : ndarray of shape (n_samples,)
        Forgetting counts averaged over the models (float64).
    scores_per_model_ : ndarray of shape (n_models, n_samples)
    estimators_ : list of skorch.NeuralNetClassifier
        The trained networks, on the CPU.
    snapshots_ : list of list of dict
        ``snapshots_[m][e]`` is the state dict of network ``m`` after epoch ``e + 1``.
    classes_ : ndarray of shape (n_classes,)
    device_ : torch.device
    dtype_ : torch.dtype
    n_features_in_ : int

    Examples
    --------
    >>> from sklearn.datasets import load_iris
    >>> from overparam_sklearn import ForgettingScorer
    >>> X, y = load_iris(return_X_y=True)
    >>> scorer = ForgettingScorer(n_models=2, score_epoch=4, random_state=0).fit(X, y)
    >>> bool(scorer.scores_.max() <= 4)
    True
    """
    )

    _parameter_constraints = {
        **_SCORER_CONSTRAINTS,
        "score_epoch": [Interval(Integral, 1, None, closed="left")],
    }
    _keep_snapshots = True
    _needs_tracking = True

    def _score_trained(self, module, X, y, tracker):
        return _forgetting_counts(torch.stack(tracker.correct_))

    def _score_new(self, m, module, X, y):
        replay = copy.deepcopy(module)
        correct = []
        for state in self.snapshots_[m]:
            replay.load_state_dict(state)
            replay.to(X.device)
            correct.append((_logits(replay, X).argmax(dim=1) == y).cpu())
        return _forgetting_counts(torch.stack(correct))


# --------------------------------------------------------------------------------------------
# Selection: hardest / easiest / random / stratified (CCS)
# --------------------------------------------------------------------------------------------


def _ccs_sample(candidates, scores, budget, n_bins, rng):
    """Coverage-centric sampling (Zheng et al. 2023, Algorithm 1) of ``budget`` candidates.

    The score range is cut into ``n_bins`` equal-width strata; strata are visited from the
    smallest, each giving ``min(|stratum|, floor(remaining budget / strata left))`` examples drawn
    uniformly, so sparse regions of the score range are fully covered and the rest is spread
    evenly. Any budget left by rounding is filled uniformly from the unselected candidates.
    """
    s = scores[candidates]
    lo, hi = float(s.min()), float(s.max())
    if hi > lo:
        bins = np.minimum(((s - lo) / (hi - lo) * n_bins).astype(np.int64), n_bins - 1)
    else:
        bins = np.zeros(len(s), dtype=np.int64)
    strata = [candidates[bins == b] for b in range(n_bins)]
    strata = [st for st in strata if len(st)]
    strata.sort(key=len)
    chosen, remaining = [], budget
    for i, st in enumerate(strata):
        take = min(len(st), remaining // (len(strata) - i))
        if take:
            chosen.append(rng.choice(st, size=take, replace=False))
            remaining -= take
    chosen = np.concatenate(chosen) if chosen else np.empty(0, dtype=np.int64)
    if remaining > 0:
        rest = np.setdiff1d(candidates, chosen)
        chosen = np.concatenate([chosen, rng.choice(rest, size=remaining, replace=False)])
    return chosen


def _select_group(group, scores, keep_fraction, keep, drop_hardest_fraction, n_bins, rng):
    n = len(group)
    n_keep = min(n, max(1, int(round(keep_fraction * n))))
    if keep == "random":
        return rng.choice(group, size=n_keep, replace=False)
    order = group[np.argsort(-scores[group], kind="stable")]  # hardest first
    n_drop = int(math.floor(drop_hardest_fraction * n))
    candidates = order[n_drop:] if n_drop < n else order[-1:]
    n_keep = min(n_keep, len(candidates))
    if keep == "hardest":
        return candidates[:n_keep]
    if keep == "easiest":
        return candidates[len(candidates) - n_keep :]
    return _ccs_sample(candidates, scores, n_keep, n_bins, rng)


def _select(scores, y_enc, n_classes, keep_fraction, keep, drop_hardest_fraction,
            class_balanced, n_bins, rng):
    """Indices (sorted) of the rows kept; every class keeps at least one row."""
    n = len(y_enc)
    if class_balanced:
        groups = [np.flatnonzero(y_enc == k) for k in range(n_classes)]
    else:
        groups = [np.arange(n)]
    kept = np.concatenate(
        [
            _select_group(g, scores, keep_fraction, keep, drop_hardest_fraction, n_bins, rng)
            for g in groups
            if len(g)
        ]
    )
    present = np.unique(y_enc[kept])
    for k in np.setdiff1d(np.arange(n_classes), present):
        # a class pruned away entirely gets back one row, chosen by the same rule
        g = np.flatnonzero(y_enc == k)
        kept = np.append(
            kept,
            _select_group(g, scores, 1.0 / len(g), keep, drop_hardest_fraction, n_bins, rng)[:1],
        )
    return np.sort(kept)


_PRUNE_CONSTRAINTS = {
    "scorer": [None, HasMethods(["fit"])],
    "keep_fraction": [Interval(Real, 0, 1, closed="right")],
    "keep": [StrOptions({"hardest", "easiest", "random", "stratified"})],
    "drop_hardest_fraction": [Interval(Real, 0, 1, closed="left")],
    "class_balanced": ["boolean"],
    "n_bins": [Interval(Integral, 1, None, closed="left")],
    "random_state": ["random_state"],
    "verbose": ["verbose"],
}

_PRUNE_PARAMS_DOC = """
    scorer : estimator or None, default=None
        Fitted on the training data inside ``fit``; must set ``scores_`` (larger = harder).
        ``None`` is ``EL2NScorer()``. When its ``random_state`` is ``None`` it is seeded from this
        estimator's ``random_state``. Not used when ``keep="random"``.
    keep_fraction : float in (0, 1], default=0.7
        Fraction of the training rows kept (of each class when ``class_balanced``).
    keep : {"hardest", "easiest", "random", "stratified"}, default="hardest"
        Which rows are kept: the largest scores (Paul et al. 2021), the smallest, a uniform
        random subset, or coverage-centric stratified sampling across the score range (CCS,
        Zheng et al. 2023).
    drop_hardest_fraction : float in [0, 1), default=0.0
        Fraction of the hardest rows removed before selecting (CCS's ``beta``; they are often
        mislabelled). Applies to "hardest", "easiest" and "stratified"; ignored for "random".
        ``keep_fraction + drop_hardest_fraction`` must not exceed 1.
    class_balanced : bool, default=False
        Select within each class, keeping ``keep_fraction`` of every class. In any case every
        class keeps at least one row, so the estimator sees all classes.
    n_bins : int, default=50
        Number of score strata for ``keep="stratified"`` (CCS uses 50).
    random_state : int, RandomState instance or None, default=None
        Seeds random and stratified selection and a scorer left unseeded.
    verbose : int, default=0
"""


def _prune(est, X, y):
    """Score (unless random) and select rows; sets the pruning attributes on ``est``."""
    check_classification_targets(y)
    if est.keep_fraction + est.drop_hardest_fraction > 1 + 1e-12 and est.keep != "random":
        raise ValueError(
            f"keep_fraction ({est.keep_fraction}) + drop_hardest_fraction "
            f"({est.drop_hardest_fraction}) must not exceed 1."
        )
    encoder = LabelEncoder().fit(y)
    y_enc = encoder.transform(y)
    rng = check_random_state(est.random_state)
    if est.keep == "random":
        est.scorer_ = None
        est.scores_ = None
        scores = np.zeros(len(y))
    else:
        scorer = clone(est.scorer if est.scorer is not None else EL2NScorer())
        params = scorer.get_params(deep=False)
        if "random_state" in params and params["random_state"] is None:
            scorer.set_params(random_state=int(rng.randint(np.iinfo(np.int32).max)))
        if est.verbose > 0 and "verbose" in params:
            scorer.set_params(verbose=est.verbose)
        scorer.fit(X, y)
        scores = np.asarray(getattr(scorer, "scores_", None), dtype=np.float64)
        if scores.shape != (len(y),):
            raise TypeError(
                f"scorer {type(scorer).__name__} must set scores_, one score per training row, "
                f"in fit; got {getattr(scorer, 'scores_', None)!r:.80}"
            )
        est.scorer_ = scorer
        est.scores_ = scores
        scores = est.scores_
    est.sample_indices_ = _select(
        scores,
        y_enc,
        len(encoder.classes_),
        est.keep_fraction,
        est.keep,
        est.drop_hardest_fraction,
        est.class_balanced,
        est.n_bins,
        rng,
    )
    if est.verbose > 0:
        print(
            f"[{type(est).__name__}] kept {len(est.sample_indices_)} of {len(y)} rows "
            f"(keep={est.keep!r})"
        )
    return est.sample_indices_


def _estimator_has(attr):
    def check(self):
        if hasattr(self, "estimator_"):
            return hasattr(self.estimator_, attr)
        inner = self.estimator if self.estimator is not None else LogisticRegression()
        return hasattr(inner, attr)

    return check


class DataDietClassifier(MetaEstimatorMixin, ClassifierMixin, BaseEstimator):
    __doc__ = (
        """Prune the training set by data-diet scores, then fit a classifier on what is kept.

    ``fit`` fits ``scorer`` on the training rows, keeps ``keep_fraction`` of them by ``keep``,
    and fits a clone of ``estimator`` on the kept rows. Because scoring happens inside ``fit``, the
    classifier can sit in a :class:`~sklearn.pipeline.Pipeline` (where a step cannot drop rows)
    and in :class:`~sklearn.model_selection.GridSearchCV` over ``keep_fraction``: every fold
    scores only its own training rows, so nothing leaks across folds.

    Parameters
    ----------
    estimator : classifier or None, default=None
        Fitted on the kept rows; ``None`` is ``LogisticRegression(max_iter=1000)``."""
        + _PRUNE_PARAMS_DOC
        + """
    Attributes
    ----------
    estimator_ : classifier
        The clone of ``estimator`` fitted on the kept rows.
    scorer_ : estimator or None
        The fitted scorer (``None`` for ``keep="random"``).
    scores_ : ndarray of shape (n_samples,) or None
        Training scores (``None`` for ``keep="random"``).
    sample_indices_ : ndarray of shape (n_kept,)
        Sorted indices of the kept training rows.
    classes_ : ndarray of shape (n_classes,)
    n_features_in_ : int

    Examples
    --------
    >>> from sklearn.datasets import load_iris
    >>> from overparam_sklearn import DataDietClassifier, EL2NScorer
    >>> X, y = load_iris(return_X_y=True)
    >>> clf = DataDietClassifier(
    ...     scorer=EL2NScorer(n_models=2, score_epoch=3), keep_fraction=0.5,
    ...     class_balanced=True, random_state=0,
    ... ).fit(X, y)
    >>> len(clf.sample_indices_)  # the 25 hardest rows of each class
    75
    """
    )

    _parameter_constraints = {
        "estimator": [None, HasMethods(["fit", "predict"])],
        **_PRUNE_CONSTRAINTS,
    }

    def __init__(
        self,
        estimator=None,
        scorer=None,
        keep_fraction=0.7,
        keep="hardest",
        drop_hardest_fraction=0.0,
        class_balanced=False,
        n_bins=50,
        random_state=None,
        verbose=0,
    ):
        self.estimator = estimator
        self.scorer = scorer
        self.keep_fraction = keep_fraction
        self.keep = keep
        self.drop_hardest_fraction = drop_hardest_fraction
        self.class_balanced = class_balanced
        self.n_bins = n_bins
        self.random_state = random_state
        self.verbose = verbose

    @_fit_context(prefer_skip_nested_validation=False)
    def fit(self, X, y):
        """Score, prune and fit the estimator on the kept rows.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
        y : array-like of shape (n_samples,)

        Returns
        -------
        self : object
        """
        X, y = validate_data(self, X, y)
        check_classification_targets(y)
        self.classes_ = np.unique(y)
        if len(self.classes_) < 2:
            raise ValueError(
                f"{type(self).__name__} needs samples of at least 2 classes; got 1 class "
                f"({self.classes_[0]!r})."
            )
        idx = _prune(self, X, y)
        inner = self.estimator if self.estimator is not None else LogisticRegression(max_iter=1000)
        self.estimator_ = clone(inner).fit(X[idx], y[idx])
        return self

    def _check_X(self, X):
        check_is_fitted(self)
        return validate_data(self, X, reset=False)

    @available_if(_estimator_has("predict"))
    def predict(self, X):
        """Predict with the estimator fitted on the kept rows."""
        X = self._check_X(X)
        return self.estimator_.predict(X)

    @available_if(_estimator_has("predict_proba"))
    def predict_proba(self, X):
        """Class probabilities from the estimator fitted on the kept rows."""
        X = self._check_X(X)
        return self.estimator_.predict_proba(X)

    @available_if(_estimator_has("predict_log_proba"))
    def predict_log_proba(self, X):
        """Log class probabilities from the estimator fitted on the kept rows."""
        X = self._check_X(X)
        return self.estimator_.predict_log_proba(X)

    @available_if(_estimator_has("decision_function"))
    def decision_function(self, X):
        """Decision function of the estimator fitted on the kept rows."""
        X = self._check_X(X)
        return self.estimator_.decision_function(X)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.sparse = False
        tags.input_tags.allow_nan = False
        return tags


class DataDietSampler(BaseEstimator):
    __doc__ = (
        """Data-diet pruning as an imbalanced-learn sampler: ``fit_resample`` keeps scored rows.

    Use it as a step of :class:`imblearn.pipeline.Pipeline`, which passes the pruned rows on to
    the next steps during ``fit`` and all rows at prediction time (imbalanced-learn's sampler
    API: a ``fit_resample(X, y)`` returning the kept ``(X, y)``). Selection is the same as
    :class:`DataDietClassifier`'s. ``fit_resample`` returns validated numpy arrays.

    Parameters
    ----------"""
        + _PRUNE_PARAMS_DOC
        + """
    Attributes
    ----------
    scorer_ : estimator or None
    scores_ : ndarray of shape (n_samples,) or None
    sample_indices_ : ndarray of shape (n_kept,)
        Sorted indices of the kept rows of the last ``fit`` / ``fit_resample``.
    n_features_in_ : int

    Examples
    --------
    >>> from sklearn.datasets import load_iris
    >>> from overparam_sklearn import DataDietSampler, EL2NScorer
    >>> X, y = load_iris(return_X_y=True)
    >>> sampler = DataDietSampler(EL2NScorer(n_models=2, score_epoch=3), keep_fraction=0.4,
    ...                           class_balanced=True, random_state=0)
    >>> X_kept, y_kept = sampler.fit_resample(X, y)
    >>> X_kept.shape
    (60, 4)
    """
    )

    _parameter_constraints = dict(_PRUNE_CONSTRAINTS)

    def __init__(
        self,
        scorer=None,
        keep_fraction=0.7,
        keep="hardest",
        drop_hardest_fraction=0.0,
        class_balanced=False,
        n_bins=50,
        random_state=None,
        verbose=0,
    ):
        self.scorer = scorer
        self.keep_fraction = keep_fraction
        self.keep = keep
        self.drop_hardest_fraction = drop_hardest_fraction
        self.class_balanced = class_balanced
        self.n_bins = n_bins
        self.random_state = random_state
        self.verbose = verbose

    @_fit_context(prefer_skip_nested_validation=False)
    def fit(self, X, y):
        """Score and select rows; ``sample_indices_`` holds the kept indices.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
        y : array-like of shape (n_samples,)

        Returns
        -------
        self : object
        """
        X, y = validate_data(self, X, y)
        _prune(self, X, y)
        return self

    def fit_resample(self, X, y):
        """Fit and return the kept rows.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
        y : array-like of shape (n_samples,)

        Returns
        -------
        X_resampled : ndarray of shape (n_kept, n_features)
        y_resampled : ndarray of shape (n_kept,)
        """
        self.fit(X, y)
        X, y = validate_data(self, X, y, reset=False)
        return X[self.sample_indices_], y[self.sample_indices_]

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.target_tags.required = True
        tags.input_tags.sparse = False
        return tags
