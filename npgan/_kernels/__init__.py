"""Compiled kernels (Cython) and the switch between them and their references.

Each ``<name>.pyx`` here is built into ``npgan._kernels.<name>``. Callers ask
:func:`load` for a compiled module and fall back to the plain-NumPy reference
(``reference.py`` or the module's own NumPy path) when it returns None: the
extension was not built, cannot be imported (e.g. SciPy missing for BLAS), the
backend is not NumPy, or ``NPGAN_NO_KERNELS=1`` is set.
"""
import importlib
import os

from .. import backend

_cache = {}


def disabled():
    """True when the environment asks for the reference path."""
    return os.environ.get("NPGAN_NO_KERNELS", "") not in ("", "0")


def load(name):
    """The compiled module ``npgan._kernels.<name>``, or None (see above)."""
    if disabled() or not backend.is_numpy():
        return None
    if name not in _cache:
        try:
            _cache[name] = importlib.import_module(f"{__name__}.{name}")
        except ImportError:
            _cache[name] = None
    return _cache[name]


def available():
    """Names of the compiled kernel modules that import, for reports."""
    here = os.path.dirname(__file__)
    names = sorted({f.split(".")[0] for f in os.listdir(here) if f.endswith(".pyx")})
    return {n: load(n) is not None for n in names}
