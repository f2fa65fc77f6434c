"""The one place that chooses the array module.

Every part of npgan that touches arrays which may live on a device reads the
module from here at call time (``backend.xp``), never ``import numpy``
directly: NumPy by default, CuPy with ``NPGAN_BACKEND=cupy`` or
``npgan.use("cupy")``.

Host-side code (data files, checkpoints, pictures) uses NumPy and crosses to
the backend only through :func:`asarray` and :func:`to_numpy`.
"""
import numpy

from . import settings

xp = numpy          #: the active array module (numpy or cupy)
name = "numpy"      #: its name


def use(backend_name):
    """Select the array module: ``"numpy"`` or ``"cupy"``.

    Raises RuntimeError with the reason when CuPy cannot be imported or no
    CUDA device is visible. Call it before creating tensors or models.
    """
    global xp, name
    if backend_name in ("numpy", "np", None, ""):
        xp, name = numpy, "numpy"
        return xp
    if backend_name != "cupy":
        raise ValueError(f"unknown backend {backend_name!r}: use 'numpy' or 'cupy'")
    try:
        import cupy
    except Exception as e:  # ImportError, or a CUDA library that fails to load
        raise RuntimeError(
            "NPGAN_BACKEND=cupy / npgan.use('cupy') needs CuPy: "
            "pip install 'npgan[cuda12]' (or a cupy-cudaXXx wheel matching your "
            f"CUDA); importing cupy failed with: {e}") from e
    try:
        count = cupy.cuda.runtime.getDeviceCount()
    except Exception as e:
        raise RuntimeError(f"CuPy is installed but no CUDA device is usable: {e}") from e
    if count < 1:
        raise RuntimeError("CuPy is installed but no CUDA device is visible")
    xp, name = cupy, "cupy"
    return xp


def set_module(module, module_name):
    """Install any NumPy-compatible module as the backend (used by the tests'
    strict checking namespace). Returns the previous ``(module, name)``."""
    global xp, name
    prev = (xp, name)
    xp, name = module, module_name
    return prev


def asarray(a, dtype=None):
    """Host or backend array -> backend array (copy only when needed)."""
    return xp.asarray(a, dtype=dtype)


def to_numpy(a):
    """Backend array -> NumPy array on the host (identity for NumPy)."""
    if isinstance(a, numpy.ndarray):
        return a
    get = getattr(a, "get", None)
    if get is not None:      # cupy.ndarray
        return get()
    return numpy.asarray(a)


def is_numpy():
    return xp is numpy


if settings.get("backend"):
    use(settings.get("backend"))
