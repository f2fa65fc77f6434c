"""Fused activations, forward and backward: activations.pyx, the CUDA kernels or reference.py.

Each op takes arrays of one float dtype (float32/float64) and returns a new
array of x's shape and dtype. Tiers, in order: compiled (NumPy float32/64 x,
non-empty; for a backward g of x's shape, cast to x's dtype), CUDA (CuPy
arrays of one dtype and shape), reference.
"""
import numpy as np

from . import reference as _ref
from .loader import FLOATS, REFERENCE, cuda_tier, load, op


def _compiled(x, g=None):
    """accepts of the compiled tier: the activations module if it takes x (and g)."""
    if not isinstance(x, np.ndarray) or x.dtype not in FLOATS or x.size == 0 or (
            g is not None and g.shape != x.shape):
        return None
    return load("activations")


def _unary(kname, refname):
    def compiled(k, x):
        out = np.empty(x.shape, dtype=x.dtype)     # not empty_like(ascontiguousarray(x)): keeps 0-d
        getattr(k, kname)(np.ascontiguousarray(x).reshape(-1), out.reshape(-1))
        return out
    return op(refname, getattr(_ref, refname).__doc__,
              (_compiled, compiled),
              (cuda_tier, lambda cu, x: getattr(cu, refname)(x)),
              (REFERENCE, lambda ref, x: getattr(ref, refname)(x)))


def _binary(kname, refname, *extra):
    def compiled(k, g, x):
        out = np.empty(x.shape, dtype=x.dtype)
        getattr(k, kname)(np.ascontiguousarray(g, dtype=x.dtype).reshape(-1),
                          np.ascontiguousarray(x).reshape(-1), *extra, out.reshape(-1))
        return out
    return op(refname, getattr(_ref, refname).__doc__,
              (lambda g, x: _compiled(x, g), compiled),
              (cuda_tier, lambda cu, g, x: getattr(cu, refname)(g, x)),
              (REFERENCE, lambda ref, g, x: getattr(ref, refname)(g, x)))


relu_forward = _unary("relu_forward", "relu_forward")
relu_backward = _binary("relu_backward", "relu_backward")
sigmoid_forward = _unary("sigmoid_forward", "sigmoid_forward")
sigmoid_backward = _binary("sigmoid_backward", "sigmoid_backward")
softplus_forward = _unary("softplus_forward", "softplus_forward")
softplus_backward = _binary("sigmoid_times", "softplus_backward", 1)
log_sigmoid_forward = _unary("log_sigmoid_forward", "log_sigmoid_forward")
log_sigmoid_backward = _binary("sigmoid_times", "log_sigmoid_backward", -1)
