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


def cuda_kernels():
    """``npgan._kernels.cuda`` (CuPy kernels) when the backend is CuPy and kernels
    are not disabled, else None. Imported on first use only: CuPy is never
    imported for the NumPy backend."""
    if disabled() or backend.name != "cupy":
        return None
    if "cuda" not in _cache:
        try:
            _cache["cuda"] = importlib.import_module(f"{__name__}.cuda")
        except ImportError:
            _cache["cuda"] = None
    return _cache["cuda"]


def _cuda(*arrays):
    """The CuPy kernels module if it takes these arrays (float32/64 CuPy arrays of
    one dtype and shape), else None."""
    cu = cuda_kernels()
    return cu if cu is not None and cu.accepts(*arrays) else None


def available():
    """Names of the compiled kernel modules that import, for reports (with the
    CuPy backend: whether the CUDA kernels are in use, as "cuda")."""
    here = os.path.dirname(__file__)
    names = sorted({f.split(".")[0] for f in os.listdir(here) if f.endswith(".pyx")})
    out = {n: load(n) is not None for n in names}
    if backend.name == "cupy":
        out["cuda"] = cuda_kernels() is not None
    return out


# --- fused activations: compiled when possible, else reference.py -------------
import numpy as _np

from . import reference as _ref

_FLOATS = (_np.dtype(_np.float32), _np.dtype(_np.float64))


def _compiled(x):
    """The activations module if it can take ``x`` (NumPy float32/64, non-empty)."""
    k = load("activations")
    if k is None or not isinstance(x, _np.ndarray) or x.dtype not in _FLOATS or x.size == 0:
        return None
    return k


def _unary(kname, refname):
    def f(x):
        k = _compiled(x)
        if k is None:
            cu = _cuda(x)
            return cu.UNARY[refname](x) if cu else getattr(_ref, refname)(x)
        out = _np.empty(x.shape, dtype=x.dtype)     # not empty_like(ascontiguousarray(x)): keeps 0-d
        getattr(k, kname)(_np.ascontiguousarray(x).reshape(-1), out.reshape(-1))
        return out
    f.__name__ = refname
    f.__doc__ = getattr(_ref, refname).__doc__
    return f


def _binary(kname, refname, *extra):
    def f(g, x):
        k = _compiled(x)
        if k is None or g.shape != x.shape:
            cu = _cuda(g, x)
            return cu.BINARY[refname](g, x) if cu else getattr(_ref, refname)(g, x)
        out = _np.empty(x.shape, dtype=x.dtype)
        getattr(k, kname)(_np.ascontiguousarray(g, dtype=x.dtype).reshape(-1),
                          _np.ascontiguousarray(x).reshape(-1), *extra, out.reshape(-1))
        return out
    f.__name__ = refname
    f.__doc__ = getattr(_ref, refname).__doc__
    return f


relu_forward = _unary("relu_forward", "relu_forward")
relu_backward = _binary("relu_backward", "relu_backward")
sigmoid_forward = _unary("sigmoid_forward", "sigmoid_forward")
sigmoid_backward = _binary("sigmoid_backward", "sigmoid_backward")
softplus_forward = _unary("softplus_forward", "softplus_forward")
softplus_backward = _binary("sigmoid_times", "softplus_backward", 1)
log_sigmoid_forward = _unary("log_sigmoid_forward", "log_sigmoid_forward")
log_sigmoid_backward = _binary("sigmoid_times", "log_sigmoid_backward", -1)


def maxout_forward(x, pieces):
    cu = _cuda(x)
    return (cu.maxout_forward if cu else _ref.maxout_forward)(x, pieces)


def maxout_backward(g, arg, pieces):
    cu = _cuda(g)
    return (cu.maxout_backward if cu else _ref.maxout_backward)(g, arg, pieces)
