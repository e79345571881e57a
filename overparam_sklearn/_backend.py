"""Torch glue shared by every estimator.

Estimators validate input with scikit-learn, then come here to turn numpy arrays into tensors on
the resolved device and dtype, to draw randomness from a private :class:`torch.Generator`, to tile
large computations, and to refuse an allocation that cannot fit before it is attempted.

Nothing in this module changes torch's global state (default dtype, global RNG) for longer than
a call: :func:`thread_limit` sets torch's thread count for the duration of an estimator's torch
work and restores it on exit.
"""

import contextlib
import copy
import functools
import itertools
import math
import threading
from numbers import Integral

import numpy as np
import torch
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import Interval, StrOptions

__all__ = [
    "DEVICE_OPTIONS",
    "DTYPE_OPTIONS",
    "resolve_device",
    "resolve_dtype",
    "to_tensor",
    "to_numpy",
    "standardize_targets",
    "make_generator",
    "seed_from_random_state",
    "estimate_bytes",
    "check_memory",
    "available_memory",
    "tile_slices",
    "rows_per_tile",
    "usable_device",
    "DevicePortableMixin",
    "THREADS_OPTIONS",
    "resolve_threads",
    "thread_limit",
    "limits_threads",
    "Progress",
]

#: ``_parameter_constraints`` entry for every ``device`` parameter.
DEVICE_OPTIONS = [StrOptions({"auto", "cpu", "cuda"})]
#: ``_parameter_constraints`` entry for every ``dtype`` parameter. Defaults are spelled out:
#: ``"float64"`` for kernel solves, ``"float32"`` for neural networks. Only a transformer that
#: follows its input's dtype (``RandomFeatures``) adds ``None`` ("as the input").
DTYPE_OPTIONS = [StrOptions({"float32", "float64"})]

#: ``_parameter_constraints`` entry for every ``n_threads`` parameter.
THREADS_OPTIONS = [Interval(Integral, 1, None, closed="left"), None]

_DTYPES = {"float32": torch.float32, "float64": torch.float64}

#: Default bytes one tile of an intermediate may use (per tensor); keeps kernel evaluation
#: within a few hundred MB whatever n and m are.
DEFAULT_TILE_BYTES = 64 * 2**20


def resolve_device(device):
    """Turn ``"auto" | "cpu" | "cuda"`` into a :class:`torch.device`.

    ``"auto"`` picks CUDA when available and the CPU otherwise. Asking for ``"cuda"`` on a machine
    without a usable GPU raises a ``ValueError`` rather than failing later inside torch.
    """
    if isinstance(device, torch.device):
        device = str(device)
    if not isinstance(device, str):
        raise TypeError(f"device must be 'auto', 'cpu' or 'cuda', got {device!r}")
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cpu":
        return torch.device("cpu")
    if device.startswith("cuda"):
        if not torch.cuda.is_available():
            raise ValueError(
                f"device={device!r} was requested but torch sees no CUDA device; "
                "use device='cpu' or device='auto'."
            )
        return torch.device(device)
    raise ValueError(f"device must be 'auto', 'cpu' or 'cuda', got {device!r}")


def resolve_dtype(dtype, default="float64"):
    """Turn ``"float32" | "float64" | None`` into a torch dtype (``None`` means ``default``)."""
    if dtype is None:
        dtype = default
    if isinstance(dtype, torch.dtype):
        return dtype
    if isinstance(dtype, (type, np.dtype)):
        dtype = np.dtype(dtype).name
    try:
        return _DTYPES[dtype]
    except (KeyError, TypeError):
        raise ValueError(f"dtype must be 'float32' or 'float64', got {dtype!r}") from None


def numpy_dtype(torch_dtype):
    """The numpy dtype matching a torch floating dtype."""
    return np.float32 if torch_dtype == torch.float32 else np.float64


def to_tensor(X, device, dtype):
    """A validated (real, finite) array or tensor as a tensor on ``device`` with ``dtype``.

    A numpy array narrowed to a smaller float type (float64 to float32) must stay finite: an
    overflow in the cast raises a ``ValueError`` rather than giving inf (and NaN results).
    """
    if isinstance(X, torch.Tensor):
        return X.to(device=device, dtype=dtype)
    X = np.asarray(X)
    if not X.flags.writeable:
        # torch warns on read-only buffers (e.g. joblib memmaps); copy instead of aliasing.
        X = np.array(X)
    out = torch.as_tensor(X, dtype=dtype, device=device)
    narrowing = (X.dtype.kind == "f" and out.is_floating_point()
                 and X.dtype.itemsize > out.element_size())
    if narrowing and not bool(torch.isfinite(out).all()):
        # (the input was validated finite: the cast overflowed)
        raise ValueError(
            f"The input has values beyond the range of {str(dtype).replace('torch.', '')} "
            f"(|x| > {torch.finfo(dtype).max:.3g}), the dtype of this computation; rescale it "
            "(e.g. with StandardScaler) or use dtype='float64'."
        )
    return out


def to_numpy(t):
    """A tensor (any device) as a numpy array on the host; numpy input passes through."""
    if isinstance(t, torch.Tensor):
        return t.detach().cpu().numpy()
    return np.asarray(t)


def standardize_targets(Y, normalize=True):
    """Standardise 2-D targets column by column: ``((Y - mean) / std, mean, std)``.

    A constant column keeps ``std = 1``; ``normalize=False`` gives zeros and ones (the targets
    pass through). Predictions map back with ``pred * std + mean``.
    """
    if normalize:
        mean = Y.mean(axis=0)
        std = Y.std(axis=0)
        std = np.where(std > 0, std, 1.0).astype(Y.dtype, copy=False)
    else:
        mean = np.zeros(Y.shape[1], dtype=Y.dtype)
        std = np.ones(Y.shape[1], dtype=Y.dtype)
    return (Y - mean) / std, mean, std


def seed_from_random_state(random_state):
    """Draw a 63-bit integer seed from ``check_random_state(random_state)``.

    Using the sklearn random state to seed a private generator keeps results reproducible for an
    int ``random_state`` and independent across calls for ``None`` or a shared ``RandomState``.
    """
    rng = check_random_state(random_state)
    return int(rng.randint(0, 2**31 - 1)) * (2**31) + int(rng.randint(0, 2**31 - 1))


def make_generator(random_state, device="cpu"):
    """A private :class:`torch.Generator` on ``device`` seeded from ``random_state``.

    Never touches torch's global RNG. Pass the generator to ``torch.randn(..., generator=g)``.
    """
    device = torch.device(device)
    gen = torch.Generator(device=device)
    gen.manual_seed(seed_from_random_state(random_state))
    return gen


def estimate_bytes(shape, dtype):
    """Bytes needed by a dense tensor of ``shape`` and ``dtype``."""
    itemsize = torch.empty((), dtype=dtype).element_size()
    return int(math.prod(int(s) for s in shape)) * itemsize


def available_memory(device):
    """Bytes of memory free on ``device`` (best effort; ``None`` if unknown)."""
    device = torch.device(device)
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return int(free)
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        import os

        return int(os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
    except (ValueError, OSError, AttributeError):
        return None


def check_memory(n_bytes, device, what, hint=""):
    """Raise a ``ValueError`` before allocating ``n_bytes`` that cannot fit on ``device``.

    Parameters
    ----------
    n_bytes : int
        Estimated peak bytes of the allocation.
    device : torch.device or str
    what : str
        Description of the allocation, used in the message (``"the 20000 x 20000 train kernel"``).
    hint : str
        What the user can change (``"reduce n_samples or use dtype='float32'"``).
    """
    free = available_memory(device)
    if free is not None and n_bytes > free:
        msg = (
            f"Not enough memory for {what}: it needs about {n_bytes / 2**30:.2f} GiB but only "
            f"{free / 2**30:.2f} GiB is available on {torch.device(device)}."
        )
        if hint:
            msg += " " + hint
        raise ValueError(msg)


def rows_per_tile(n_cols, dtype, n_buffers=1, tile_bytes=DEFAULT_TILE_BYTES):
    """Rows of an ``(*, n_cols)`` matrix that fit in ``tile_bytes`` with ``n_buffers`` copies."""
    per_row = max(1, estimate_bytes((n_cols,), dtype) * max(1, n_buffers))
    return max(1, int(tile_bytes // per_row))


def tile_slices(n, tile):
    """Slices ``[0:tile], [tile:2 tile], ...`` covering ``range(n)``."""
    tile = max(1, int(tile))
    return [slice(start, min(start + tile, n)) for start in range(0, n, tile)]


# -- the device policy ----------------------------------------------------------------------
# One rule for every estimator (see doc/modules/devices.rst):
#
# * ``device_`` records where the estimator was fitted and is pickled as it is.
# * Every method computes on ``usable_device(self.device_)``: ``device_`` itself where it is
#   usable, the CPU where it names CUDA and this process sees none (a model fitted on a GPU and
#   unpickled on a laptop, or with ``CUDA_VISIBLE_DEVICES=""``).
# * Pickling (``DevicePortableMixin.__getstate__``) copies every tensor and torch module of the
#   fitted state to the CPU, so a pickle never needs CUDA to load.
#
# Random draws: weights, minibatch orders and subsets are drawn from CPU generators seeded from
# ``random_state`` and then moved to the device, so a CPU fit and a CUDA fit with the same
# ``random_state`` start from the same draws. They agree to floating-point round-off (GPU
# kernels sum in another order), not bitwise; iterative training can amplify that round-off.
# The exceptions, drawn on the device for speed, are listed in the user guide.


def usable_device(device):
    """The device to compute on for state fitted on ``device``.

    ``device`` itself, or the CPU when ``device`` is a CUDA device and this process sees no CUDA
    (the estimator was fitted on a GPU and is used where there is none). ``None`` means the CPU.
    """
    if device is None:
        return torch.device("cpu")
    device = torch.device(device)
    if device.type == "cuda" and not torch.cuda.is_available():
        return torch.device("cpu")
    return device


def _to_cpu(value):
    """``value`` with every tensor and torch module in it copied to the CPU (containers too)."""
    if isinstance(value, torch.Tensor):
        return value.detach().cpu()
    if isinstance(value, torch.nn.Module):
        on_cpu = all(t.device.type == "cpu"
                     for t in itertools.chain(value.parameters(), value.buffers()))
        return value if on_cpu else copy.deepcopy(value).cpu()
    if isinstance(value, dict):
        return {k: _to_cpu(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)) and not hasattr(value, "_fields"):
        return type(value)(_to_cpu(v) for v in value)
    return value


class DevicePortableMixin:
    """The one pickling rule: fitted tensors and modules travel on the CPU.

    Put it before :class:`~sklearn.base.BaseEstimator` in the bases. ``device_`` is pickled
    unchanged (it says where the model was fitted); methods compute on
    :func:`usable_device` of it. ``_transient_state`` names attributes (caches) that are reset to
    an empty dict in the pickle. ``_state_follows_device`` (a class flag) moves the tensors back
    to ``usable_device(device_)`` when unpickled, for estimators that compute on their stored
    tensors directly.
    """

    _transient_state = ()
    _state_follows_device = False

    def __getstate__(self):
        state = super().__getstate__()
        state = {k: _to_cpu(v) for k, v in state.items()}
        for key in self._transient_state:
            if key in state:
                state[key] = {}
        return state

    def __setstate__(self, state):
        super().__setstate__(state)
        if self._state_follows_device and "device_" in state:
            device = usable_device(state["device_"])
            if device.type != "cpu":
                for key, value in list(self.__dict__.items()):
                    if isinstance(value, torch.Tensor):
                        self.__dict__[key] = value.to(device)


# ------------------------------------------------------------------------------------------
# Thread policy
#
# Measured with benchmarks/threads.py on a 2-core machine (torch 2.13, OpenMP + MKL): work made
# of many small ops (minibatch training of the DKM, the data-diet networks, the PFN forward
# pass) runs 5-100x slower with two threads than with one, alone or with another busy process
# beside it (OpenMP threads wait on each other at every op; the SparseDKM quickstart row took
# 491.6 s with the default threads against 22.2 s with one). Large dense work (kernels,
# Cholesky, eigendecompositions of thousands of rows) gains from the cores only when they are
# free: on the shared 2-core machine even a 3000 x 3000 NTK kernel ran 4.6x slower on two
# threads than on one. So: one thread for small work; for large work torch's
# thread count (the user's choice, torch's default otherwise), capped by the cores the 1-minute
# load average leaves idle (this process counting for one), and at least one.

#: Rows from which a dense kernel / solve counts as large work (uses torch's thread count).
LARGE_WORK_ROWS = 2000

_thread_lock = threading.Lock()
_thread_depth = [0, None]  # open contexts, torch's thread count before the outermost one


def resolve_threads(n_threads, large=False):
    """The intra-op thread count for a piece of work under the package's policy.

    Parameters
    ----------
    n_threads : int >= 1 or None
        The estimator's ``n_threads``. An int is used as given; ``None`` lets the policy choose.
    large : bool, default=False
        Whether the work is large dense linear algebra (see :data:`LARGE_WORK_ROWS`). ``None``
        then keeps torch's current thread count, capped by the idle cores
        (:func:`idle_cores`); small work (training loops of many small ops) gets one thread.
    """
    if n_threads is not None:
        if isinstance(n_threads, bool) or not isinstance(n_threads, Integral) or n_threads < 1:
            raise ValueError(f"n_threads must be None or an int >= 1, got {n_threads!r}")
        return int(n_threads)
    if not large:
        return 1
    current = torch.get_num_threads()
    idle = idle_cores()
    return current if idle is None else max(1, min(current, idle))


def idle_cores():
    """Cores the 1-minute load average leaves free, counting this process as one (``None``
    where the load average is unavailable)."""
    import os

    try:
        load = os.getloadavg()[0]
    except (OSError, AttributeError):
        return None
    cores = os.cpu_count() or 1
    return int(math.floor(cores - max(0.0, load - 1.0) + 1e-9))


_blas = []


def _blas_limit(n):
    """Lower (never raise) the BLAS libraries' threads (scipy's LAPACK calls) to ``n``."""
    if not _blas:
        from threadpoolctl import ThreadpoolController

        # created once (it scans the loaded libraries, ~5 ms); scipy's BLAS is loaded by then
        _blas.append(ThreadpoolController().select(user_api="blas"))
    controller = _blas[0]
    counts = [lib.num_threads for lib in controller.lib_controllers]
    if not counts:
        return contextlib.nullcontext()
    target = min(n, min(counts))
    if target >= max(counts):
        return contextlib.nullcontext()
    return controller.limit(limits=target)


@contextlib.contextmanager
def thread_limit(n_threads, large=False):
    """Run a block with torch's intra-op thread count set by :func:`resolve_threads`.

    The BLAS under scipy (used for some LAPACK calls) is lowered to the same count through
    ``threadpoolctl`` (never raised). Both are restored on exit, also after an exception, so the
    caller's global state is unchanged. Contexts nest (an estimator inside another); the
    outermost one restores the original count.

    Yields
    ------
    n : int
        The thread count in force inside the block.
    """
    n = resolve_threads(n_threads, large)
    with _thread_lock:
        outer = _thread_depth[0] == 0
        if outer:
            _thread_depth[1] = torch.get_num_threads()
        previous = torch.get_num_threads()
        _thread_depth[0] += 1
        if n != previous:
            torch.set_num_threads(n)
    try:
        with _blas_limit(n):
            yield n
    finally:
        with _thread_lock:
            _thread_depth[0] -= 1
            restore = _thread_depth[1] if _thread_depth[0] == 0 else previous
            if torch.get_num_threads() != restore:
                torch.set_num_threads(restore)


def _n_rows(X):
    try:
        from sklearn.utils.validation import _num_samples

        return _num_samples(X)
    except Exception:  # validation proper happens inside the method and reports the problem
        return 0


def limits_threads(large=None):
    """Decorator: run an estimator method inside ``thread_limit(self.n_threads, ...)``.

    Parameters
    ----------
    large : callable or None
        ``large(self, n_rows)`` says whether the call is large dense work, given the rows of
        its first argument (0 when they cannot be counted); ``None`` means small work.
    """

    def decorate(method):
        @functools.wraps(method)
        def wrapper(self, *args, **kwargs):
            is_large = False
            if large is not None:
                is_large = bool(large(self, _n_rows(args[0]) if args else 0))
            with thread_limit(getattr(self, "n_threads", None), is_large):
                return method(self, *args, **kwargs)

        return wrapper

    return decorate


# ------------------------------------------------------------------------------------------
# Progress of long work


class Progress:
    """Progress of a loop of known length: a tqdm bar (on stderr) and log lines, when verbose.

    With ``verbose=0`` every method does nothing. Log lines go to stdout through
    ``tqdm.write``, so they do not break the bar.

    Parameters
    ----------
    total : int
        Number of steps.
    desc : str
        Label of the bar (the estimator's name).
    verbose : int
        The estimator's ``verbose``.
    unit : str, default="it"
    """

    def __init__(self, total, desc, verbose, unit="it"):
        self.desc = desc
        self.verbose = verbose
        self._bar = None
        if verbose:
            from tqdm.auto import tqdm

            self._bar = tqdm(total=total, desc=desc, unit=unit, leave=False,
                             dynamic_ncols=True)

    def update(self, n=1, **postfix):
        """Advance by ``n`` steps, showing ``postfix`` (e.g. the current loss) beside the bar."""
        if self._bar is not None:
            if postfix:
                self._bar.set_postfix(postfix, refresh=False)
            self._bar.update(n)

    def log(self, message):
        """Print ``[desc] message`` to stdout (above the bar) when verbose."""
        if self.verbose:
            from tqdm.auto import tqdm

            tqdm.write(f"[{self.desc}] {message}")

    def close(self):
        if self._bar is not None:
            self._bar.close()
            self._bar = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False
