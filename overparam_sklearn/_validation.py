"""Input and state rules shared by every estimator and kernel function.

* :func:`check_n_classes`: the one "fewer than 2 classes" error, with one message.
* :func:`atomic_fit`: ``fit`` either completes or leaves the estimator as it was.
* :func:`check_finite_cast`: an array cast to a narrower float type must stay finite.
* :func:`check_real_matrix`: what the kernel functions accept (dense, real, finite, 2-D, not
  empty), with an error that names the problem.
"""

import functools

import numpy as np
import scipy.sparse
import torch

__all__ = ["check_n_classes", "atomic_fit", "check_finite_cast", "check_real_matrix",
           "check_gram_range"]


def check_n_classes(classes, estimator):
    """Raise the shared ``ValueError`` when ``classes`` holds fewer than 2 labels.

    Parameters
    ----------
    classes : array-like
        The distinct labels of the training targets.
    estimator : object or str
        The estimator (or its name) named in the message.
    """
    classes = np.asarray(classes)
    if classes.size >= 2:
        return
    name = estimator if isinstance(estimator, str) else type(estimator).__name__
    found = f"only one class: {classes.tolist()[0]!r}" if classes.size == 1 else "no class at all"
    raise ValueError(
        f"{name} needs samples of at least 2 classes in the data, but the data contain {found}."
    )


def atomic_fit(fit):
    """Decorate ``fit`` so that an exception or ``KeyboardInterrupt`` leaves ``self`` unchanged.

    The instance ``__dict__`` is copied (shallowly) before the call and restored if the call
    raises: an interrupted first fit leaves the estimator unfitted, an interrupted refit leaves
    the previous fit whole. This relies on ``fit`` building new fitted objects rather than
    mutating the previous ones in place, which every estimator here does.
    """

    @functools.wraps(fit)
    def wrapper(self, *args, **kwargs):
        saved = self.__dict__.copy()
        try:
            return fit(self, *args, **kwargs)
        except BaseException:
            self.__dict__.clear()
            self.__dict__.update(saved)
            raise

    return wrapper


def check_finite_cast(X, dtype, what="X", where=""):
    """``X`` (numpy) cast to ``dtype``; a ``ValueError`` if the cast overflowed to inf.

    Float32 paths (the PFN, the data-diet scorers) would otherwise turn values beyond
    ``finfo(float32).max`` (about 3.4e38) into inf and every output into NaN.
    """
    with np.errstate(over="ignore"):
        out = np.asarray(X).astype(dtype, copy=False)
    if not np.isfinite(out).all():
        limit = np.finfo(dtype).max
        raise ValueError(
            f"{what} has values beyond the range of {np.dtype(dtype).name} (|x| > {limit:.3g})"
            f"{' ' + where if where else ''}; rescale it (e.g. with StandardScaler)."
        )
    return out


def check_real_matrix(X, name, dtype=None, device=None):
    """``X`` as a 2-D real floating tensor with at least one row and one column, all finite.

    Integer and boolean input become float64 (or ``dtype``). Sparse, complex, object,
    non-2-D, empty and non-finite input get a ``TypeError`` / ``ValueError`` that names ``name``.
    """
    if scipy.sparse.issparse(X) or (isinstance(X, torch.Tensor) and X.layout != torch.strided):
        raise TypeError(
            f"{name} is a sparse matrix; the kernels need dense input: pass {name}.toarray() "
            "(the kernel matrix is dense anyway)."
        )
    if not isinstance(X, torch.Tensor):
        arr = np.asarray(X)
        if arr.dtype == object:
            try:
                arr = arr.astype(np.float64)
            except (TypeError, ValueError):
                raise TypeError(
                    f"{name} must hold real numbers, got an object array that cannot be "
                    "converted to float."
                ) from None
        if np.iscomplexobj(arr):
            raise TypeError(f"{name} must hold real numbers, got complex dtype {arr.dtype}.")
        if not (np.issubdtype(arr.dtype, np.number) or arr.dtype == bool):
            raise TypeError(f"{name} must hold real numbers, got dtype {arr.dtype}.")
        if not arr.flags.writeable:
            arr = np.array(arr)
        X = torch.as_tensor(arr)
    if X.is_complex():
        raise TypeError(f"{name} must hold real numbers, got complex dtype {X.dtype}.")
    if dtype is None and not X.is_floating_point():
        dtype = torch.float64
    X = X.to(dtype=dtype or X.dtype, device=device or X.device)
    if X.ndim != 2:
        hint = ""
        if X.ndim == 1:
            hint = (f" Reshape it: {name}.reshape(-1, 1) for one feature or "
                    f"{name}.reshape(1, -1) for one sample.")
        raise ValueError(
            f"{name} must be 2-D (n_samples, n_features), got shape {tuple(X.shape)}.{hint}"
        )
    if X.shape[0] == 0:
        raise ValueError(f"{name} has 0 samples (shape {tuple(X.shape)}); at least 1 is needed.")
    if X.shape[1] == 0:
        raise ValueError(f"{name} has 0 features (shape {tuple(X.shape)}); at least 1 is needed.")
    if not bool(torch.isfinite(X).all()):
        raise ValueError(f"{name} contains NaN or infinity.")
    return X


def check_gram_range(X, what="X", factor=1.0):
    """Refuse ``X`` whose Gram matrix ``factor * X X'`` would overflow its float type.

    Kernels multiply two diagonal entries of the Gram matrix (``k11 * k22``), so its largest
    diagonal entry must stay below the square root of the largest float (about 1.3e154 in
    float64, 1.8e19 in float32).
    """
    X = torch.as_tensor(X)
    limit = torch.finfo(X.dtype).max ** 0.5
    with torch.no_grad():
        top = float(X.abs().max()) if X.numel() else 0.0
    largest = float(factor) * top * top * X.shape[-1]  # (float *, unlike **, gives inf)
    if not largest < limit:
        raise ValueError(
            f"{what} is so large that its Gram matrix overflows "
            f"{str(X.dtype).replace('torch.', '')} (entries up to {largest:.3g}, limit "
            f"{limit:.3g}); rescale it (e.g. with StandardScaler)."
        )
