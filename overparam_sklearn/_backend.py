"""Torch glue shared by every estimator.

Estimators validate input with scikit-learn, then come here to turn numpy arrays into tensors on
the resolved device and dtype, to draw randomness from a private :class:`torch.Generator`, to tile
large computations, and to refuse an allocation that cannot fit before it is attempted.

Nothing in this module changes torch's global state (threads, default dtype, global RNG).
"""

import math

import numpy as np
import torch
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import StrOptions

__all__ = [
    "DEVICE_OPTIONS",
    "DTYPE_OPTIONS",
    "resolve_device",
    "resolve_dtype",
    "to_tensor",
    "to_numpy",
    "make_generator",
    "seed_from_random_state",
    "estimate_bytes",
    "check_memory",
    "available_memory",
    "tile_slices",
    "rows_per_tile",
]

#: ``_parameter_constraints`` entry for every ``device`` parameter.
DEVICE_OPTIONS = [StrOptions({"auto", "cpu", "cuda"})]
#: ``_parameter_constraints`` entry for every ``dtype`` parameter. Defaults are spelled out:
#: ``"float64"`` for kernel solves, ``"float32"`` for neural networks. Only a transformer that
#: follows its input's dtype (``RandomFeatures``) adds ``None`` ("as the input").
DTYPE_OPTIONS = [StrOptions({"float32", "float64"})]

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
    """A validated (real, finite) array or tensor as a tensor on ``device`` with ``dtype``."""
    if isinstance(X, torch.Tensor):
        return X.to(device=device, dtype=dtype)
    X = np.asarray(X)
    if not X.flags.writeable:
        # torch warns on read-only buffers (e.g. joblib memmaps); copy instead of aliasing.
        X = np.array(X)
    return torch.as_tensor(X, dtype=dtype, device=device)


def to_numpy(t):
    """A tensor (any device) as a numpy array on the host; numpy input passes through."""
    if isinstance(t, torch.Tensor):
        return t.detach().cpu().numpy()
    return np.asarray(t)


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
