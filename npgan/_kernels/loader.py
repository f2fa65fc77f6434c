"""Which tier computes an op: the compiled module, the CUDA kernels, or the reference.

:func:`load` imports a compiled module ``npgan._kernels.<name>`` (None when it
was not built, cannot be imported, the backend is not NumPy, or the kernels
are off: ``npgan.settings``' ``kernels``). :func:`op` builds an op from its
tiers, tried in order, each an ``(accepts, run)`` pair: ``accepts(*args)``
returns what ``run`` takes first (a module), or None to pass to the next tier.
"""
import importlib
import os

import numpy as np

from .. import backend, settings
from . import reference as _ref

FLOATS = (np.dtype(np.float32), np.dtype(np.float64))
_cache = {}
_on_load = {}        # name -> fn(module), run once when the module is first imported


def disabled():
    """True when the settings ask for the reference path (NPGAN_NO_KERNELS=1)."""
    return not settings.kernels()


def load(name):
    """The compiled module ``npgan._kernels.<name>``, or None (see above)."""
    if not settings.kernels() or not backend.is_numpy():
        return None
    if name not in _cache:
        try:
            _cache[name] = importlib.import_module(f"npgan._kernels.{name}")
        except ImportError:
            _cache[name] = None
        else:
            if name in _on_load:
                try:
                    _on_load[name](_cache[name])
                except Exception:
                    del _cache[name]          # not set up: the next load() tries (and raises) again
                    raise
    return _cache[name]


def cuda_kernels():
    """``npgan._kernels.cuda`` (CuPy kernels) when the backend is CuPy and kernels
    are on, else None. Imported on first use only: CuPy is never imported for
    the NumPy backend."""
    if not settings.kernels() or backend.name != "cupy":
        return None
    if "cuda" not in _cache:
        try:
            _cache["cuda"] = importlib.import_module("npgan._kernels.cuda")
        except ImportError:
            _cache["cuda"] = None
    return _cache["cuda"]


def available():
    """{name: whether the compiled kernel module imports and is in use}, for
    reports: every kernel this package has a source or a build of, so an
    install without them (no C compiler at install time) shows each as False
    (with the CuPy backend: whether the CUDA kernels are in use, as "cuda")."""
    import importlib.machinery
    here = os.path.dirname(__file__)
    ends = (".pyx",) + tuple(importlib.machinery.EXTENSION_SUFFIXES)
    names = sorted({f.split(".")[0] for f in os.listdir(here) if f.endswith(ends)})
    out = {n: load(n) is not None for n in names}
    if backend.name == "cupy":
        out["cuda"] = cuda_kernels() is not None
    return out


def numpy_floats(*arrays):
    """True if every non-None array is a NumPy float32/float64 array, all of one
    dtype (at least one array). A plain loop: this runs for every layer op."""
    dtype = None
    for a in arrays:
        if a is None:
            continue
        if not isinstance(a, np.ndarray):
            return False
        if dtype is None:
            dtype = a.dtype
            if dtype not in FLOATS:
                return False
        elif a.dtype != dtype:
            return False
    return dtype is not None


# --- the tiers' acceptance checks ----------------------------------------------

def cuda_tier(*arrays):
    """The CUDA kernels if they take these arrays (CuPy float32/64 arrays of one
    dtype and shape), else None."""
    cu = cuda_kernels()
    return cu if cu is not None and cu.accepts(*arrays) else None


def _reference(*args):
    return _ref


def op(name, doc, *tiers):
    """An op that runs the first of ``tiers`` ((accepts, run) pairs) whose
    accepts(*args) is not None, with the plain reference (``run(_ref, *args)``
    of the last pair) as the tier that takes anything."""
    def f(*args):
        for accepts, run in tiers:
            k = accepts(*args)
            if k is not None:
                return run(k, *args)
    f.__name__ = f.__qualname__ = name
    f.__doc__ = doc
    return f


REFERENCE = _reference        # accepts of the reference tier: everything
