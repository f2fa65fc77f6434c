"""Layer ops: linear (GEMM + bias + activation), maxout, dropout; gradient sums, SGD.

Compiled (gemm.pyx for the products, layers.pyx for the passes around them,
maxout.pyx, dropout.pyx, update.pyx) for NumPy float32/float64 arrays of one dtype, else the
references (NumPy or CuPy through backend.xp, with the CUDA activations and
maxout on CuPy). Both paths take and return the same things and agree to
rounding (bit for bit where no GEMM is involved). The arguments are checked
here, once, for every tier; the compiled kernels refuse empty batches, which
go to the reference instead (it returns the empty result).
"""
import numbers

import numpy as np

from .. import backend
from . import reference as _ref
from .elementwise import relu_backward, relu_forward, sigmoid_backward, sigmoid_forward
from .loader import REFERENCE, cuda_tier, load, numpy_floats, op

ACTIVATIONS = (None, "relu", "sigmoid")
_ACT_CODE = {None: 0, "relu": 1, "sigmoid": 2}      # as in layers.pyx
_ADD_MIN = 1 << 16                 # elements: below, a + b (a thread split costs more)


def _modules(*arrays):
    """accepts of the compiled linear tier: (gemm, layers) modules if they take
    these arrays (NumPy floats of one dtype; the first, x, non-empty)."""
    if not numpy_floats(*arrays) or arrays[0].size == 0:
        return None
    gemm, k = load("gemm"), load("layers")
    return None if gemm is None or k is None else (gemm, k)


def _gemm_operand(a):
    """``a`` itself if C- or F-contiguous (BLAS takes either), else a C copy."""
    return a if a.flags.c_contiguous or a.flags.f_contiguous else np.ascontiguousarray(a)


def check_activation(activation):
    """ValueError unless ``activation`` is one of ACTIVATIONS."""
    if activation not in _ACT_CODE:
        raise ValueError(f"linear: activation must be one of {ACTIVATIONS}, got {activation!r}")


def _linear_forward_compiled(mods, x, weight, bias, activation, keep):
    gemm, k = mods
    y = np.empty((x.shape[0], weight.shape[1]), dtype=x.dtype)
    gemm.gemm(_gemm_operand(x), _gemm_operand(weight), y)
    pre = np.empty_like(y) if activation == "sigmoid" and keep else None
    k.bias_act(y, None if bias is None else np.ascontiguousarray(bias), _ACT_CODE[activation], pre)
    return y, (y if activation == "relu" else pre)


def _linear_forward_reference(ref, x, weight, bias, activation, keep):
    z = ref.linear_forward(x, weight, bias)
    if activation is None:
        return z, None
    y = (relu_forward if activation == "relu" else sigmoid_forward)(z)
    return y, (y if activation == "relu" else z if keep else None)


_linear_forward = op("linear_forward", None,
                     (lambda x, w, b, a, keep: _modules(x, w, b), _linear_forward_compiled),
                     (REFERENCE, _linear_forward_reference))


def linear_forward(x, weight, bias=None, activation=None, keep=True):
    """y = activation(x @ weight + bias) -> (y, saved), ``saved`` being what
    :func:`linear_backward` needs: y for relu, the pre-activation for sigmoid
    (its exact backward needs x, not y), None without activation (and None
    when ``keep`` is False: no backward will follow, so no pre-activation is
    stored).

    x (N, in), weight (in, out), bias (out,) or None, one float dtype.
    Compiled: one GEMM into a fresh output, then bias and activation in one
    pass over it."""
    check_activation(activation)
    if x.ndim != 2 or weight.ndim != 2 or x.shape[1] != weight.shape[0] or (
            bias is not None and tuple(bias.shape) != (weight.shape[1],)):
        raise ValueError(f"linear: need x (N, in), weight (in, out), bias (out,); got "
                         f"{tuple(x.shape)}, {tuple(weight.shape)}, "
                         f"{None if bias is None else tuple(bias.shape)}")
    return _linear_forward(x, weight, bias, activation, keep)


def _linear_backward_compiled(mods, g, x, weight, saved, activation, need_x, need_weight,
                              need_bias):
    gemm, k = mods
    g = np.ascontiguousarray(g)
    gb = np.empty(g.shape[1], dtype=g.dtype) if need_bias else None
    if activation is None:
        gpre = g
        if need_bias:
            k.act_backward(g, None, 0, None, gb)
    else:
        gpre = np.empty_like(g)
        k.act_backward(g, np.ascontiguousarray(saved), _ACT_CODE[activation], gpre, gb)
    gx = np.empty(x.shape, dtype=g.dtype) if need_x else None
    gw = np.empty(weight.shape, dtype=g.dtype) if need_weight else None
    if need_x and need_weight:              # equal cost, independent: at once, a thread each
        gemm.gemm2(gpre, _gemm_operand(weight).T, gx, _gemm_operand(x).T, gpre, gw)
    elif need_x:
        gemm.gemm(gpre, _gemm_operand(weight).T, gx)
    elif need_weight:
        gemm.gemm(_gemm_operand(x).T, gpre, gw)
    return gx, gw, gb


def _linear_backward_reference(ref, g, x, weight, saved, activation, *need):
    if activation is not None:
        g = (relu_backward if activation == "relu" else sigmoid_backward)(g, saved)
    return ref.linear_backward(g, x, weight, *need)


_linear_backward = op("linear_backward", None,
                      (lambda g, x, w, saved, *rest: _modules(x, g, w, saved),
                       _linear_backward_compiled),
                      (REFERENCE, _linear_backward_reference))


def linear_backward(g, x, weight, saved, activation=None, need_x=True, need_weight=True,
                    need_bias=True):
    """Gradients (gx, gweight, gbias) of :func:`linear_forward` for the
    upstream gradient g (N, out); each is None unless asked for, and its GEMM
    is skipped. Compiled: g * activation' and the bias gradient in one pass,
    then at most two GEMMs (g W^T and x^T g, transposes by BLAS flags), run
    at the same time on two threads when both are needed (gemm.gemm2)."""
    check_activation(activation)
    return _linear_backward(g, x, weight, saved, activation, need_x, need_weight, need_bias)


def _maxout_forward_compiled(k, x, pieces):
    y = np.empty(x.shape[:-1] + (x.shape[-1] // pieces,), dtype=x.dtype)
    arg = np.empty(y.shape, dtype=np.uint8)
    k.maxout_forward(np.ascontiguousarray(x).reshape(-1), pieces, y.reshape(-1), arg.reshape(-1))
    return y, arg


_maxout_forward = op(
    "maxout_forward", None,
    (lambda x, pieces: load("maxout") if numpy_floats(x) and pieces <= 256 and x.size else None,
     _maxout_forward_compiled),
    (lambda x, pieces: cuda_tier(x), lambda cu, x, pieces: cu.maxout_forward(x, pieces)),
    (REFERENCE, lambda ref, x, pieces: ref.maxout_forward(x, pieces)))


def maxout_forward(x, pieces):
    """(..., units*pieces) -> (y (..., units), arg): the max of each group of
    ``pieces`` consecutive features and its index in the group (the first
    maximum, or the first NaN, as numpy.argmax). arg is uint8 on the compiled
    path (pieces <= 256), int64 on the others; maxout_backward takes either.
    ValueError unless pieces is a positive integer dividing the last axis."""
    if isinstance(pieces, bool) or not isinstance(pieces, numbers.Integral) or pieces < 1:
        raise ValueError(f"maxout: pieces must be a positive integer, got {pieces!r}")
    if x.ndim == 0 or x.shape[-1] % pieces:
        raise ValueError(f"maxout: last axis of {tuple(x.shape)} is not a multiple of pieces={pieces}")
    return _maxout_forward(x, pieces)


def _maxout_backward_compiled(k, g, arg, pieces):
    gx = np.empty(g.shape[:-1] + (g.shape[-1] * pieces,), dtype=g.dtype)
    k.maxout_backward(np.ascontiguousarray(g).reshape(-1), arg.reshape(-1), pieces, gx.reshape(-1))
    return gx


maxout_backward = op(
    "maxout_backward", "Scatter g (..., units) to the argmax of each group: (..., units*pieces).",
    (lambda g, arg, pieces: load("maxout") if (numpy_floats(g) and arg.dtype == np.uint8
                                               and g.shape == arg.shape and g.size) else None,
     _maxout_backward_compiled),
    (lambda g, arg, pieces: cuda_tier(g), lambda cu, g, arg, pieces: cu.maxout_backward(g, arg, pieces)),
    (REFERENCE, lambda ref, g, arg, pieces: ref.maxout_backward(g, arg, pieces)))


uniform_draws = _ref.uniform_draws


def check_dropout_p(p, what="dropout probability"):
    """ValueError unless 0 <= p < 1 (NaN included), naming ``what``."""
    if not 0 <= p < 1:
        raise ValueError(f"{what} must be in [0, 1), got {p}")


def _dropout_compiled(k, x, u, p):
    out = np.empty(x.shape, dtype=x.dtype)
    k.dropout(np.ascontiguousarray(x).reshape(-1), np.ascontiguousarray(u).reshape(-1),
              _ref.dropout_keep(p), x.dtype.type(1.0 / (1.0 - p)), out.reshape(-1))
    return out


_dropout = op("dropout", None,
              (lambda x, u, p: load("dropout") if (numpy_floats(x) and x.size
                                                  and isinstance(u, np.ndarray)) else None,
               _dropout_compiled),
              (REFERENCE, lambda ref, x, u, p: ref.dropout_forward(x, u, p)))


def dropout_forward(x, u, p):
    """Inverted dropout of x given its uniform draws u (x's shape: float32
    draws, or the uint32 words of NumPy's float32 draws, see
    reference.uniform_draws): x * (draw < 1-p) / (1-p). The draws, not a mask,
    are what the backward keeps."""
    check_dropout_p(p)
    if tuple(u.shape) != tuple(x.shape):
        raise ValueError(f"dropout: draws of shape {tuple(u.shape)} for input {tuple(x.shape)}")
    if u.dtype not in (np.float32, np.uint32):
        raise TypeError(f"dropout: draws must be float32 (or their uint32 words), got {u.dtype}")
    return _dropout(x, u, p)


def dropout_backward(g, u, p):
    """g * (draw < 1-p) / (1-p): the same mask and scale as the forward."""
    return dropout_forward(g, u, p)


def _big_contiguous(*arrays):
    """accepts of the compiled update tier for add/all_finite: the update
    module if these are big C-contiguous NumPy floats of one shape and dtype."""
    a = arrays[0]
    if a.size < _ADD_MIN or not numpy_floats(*arrays) or any(
            b.shape != a.shape or not b.flags.c_contiguous for b in arrays):
        return None
    return load("update")


def _add_compiled(k, a, b):
    out = np.empty(a.shape, a.dtype)
    k.add(a.reshape(-1), b.reshape(-1), out.reshape(-1))
    return out


add = op("add", """a + b, the same bits: for gradient accumulation in Tensor.backward.
    Big float arrays of one shape and dtype (NumPy, C-contiguous) are added in
    bands on the kernels' threads; anything else by the array module.""",
         (_big_contiguous, _add_compiled),
         (REFERENCE, lambda ref, a, b: a + b))

all_finite = op("all_finite", """True if array ``a`` holds no NaN or inf. Big contiguous NumPy floats are
    read once, in bands on the kernels' threads (a max over exponent bits);
    anything else by the array module.""",
                (_big_contiguous, lambda k, a: k.all_finite(a.reshape(-1))),
                (REFERENCE, lambda ref, a: bool(backend.xp.isfinite(a).all())))


def _sgd_compiled(k, p, v, g, lr, momentum, nesterov=False):
    k.sgd_momentum(p.reshape(-1), v.reshape(-1), np.ascontiguousarray(g).reshape(-1),
                   float(lr), float(momentum), bool(nesterov))


sgd_momentum_ = op(
    "sgd_momentum_", """In place: v <- momentum v - lr g; p <- p + v (Nesterov: p <- p +
    momentum v - lr g). One pass over memory when compiled; bit for bit the
    reference's result either way (lr, momentum rounded to p's dtype, as NumPy
    does for Python floats).""",
    (lambda p, v, g, *rest: load("update") if (
        numpy_floats(p, v, g) and p.shape == v.shape == g.shape
        and p.flags.c_contiguous and v.flags.c_contiguous) else None, _sgd_compiled),
    (REFERENCE, lambda ref, *args: ref.sgd_momentum_(*args)))
