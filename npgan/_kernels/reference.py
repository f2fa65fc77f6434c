"""Plain array-module references for the fused activation kernels.

These are the truth the Cython kernels in ``activations.pyx`` are tested
against, and the path used when the kernels are absent or disabled, or when the
backend is CuPy. All take and return arrays of one floating dtype (float32 or
float64) and are exact at large |x|: no ``1 - sigmoid(x)`` cancellation, no
overflow of ``exp``.
"""
from .. import backend


def relu_forward(x):
    """max(x, 0)."""
    return backend.xp.maximum(x, 0)


def relu_backward(g, y):
    """g * [y > 0], given y = relu(x)."""
    return g * (y > 0)


def sigmoid_forward(x):
    """1 / (1 + exp(-x)), computed from exp(-|x|) so it never overflows."""
    xp = backend.xp
    e = xp.exp(-xp.abs(x))
    return xp.where(x >= 0, 1, e) / (1 + e)


def sigmoid_backward(g, x):
    """g * sigmoid(x) * sigmoid(-x) = g * e / (1 + e)^2, e = exp(-|x|)."""
    xp = backend.xp
    e = xp.exp(-xp.abs(x))
    return g * (e / ((1 + e) * (1 + e)))


def softplus_forward(x):
    """log(1 + exp(x)) = max(x, 0) + log1p(exp(-|x|))."""
    xp = backend.xp
    return xp.maximum(x, 0) + xp.log1p(xp.exp(-xp.abs(x)))


def softplus_backward(g, x):
    """g * sigmoid(x)."""
    return g * sigmoid_forward(x)


def log_sigmoid_forward(x):
    """log sigmoid(x) = min(x, 0) - log1p(exp(-|x|))."""
    xp = backend.xp
    return xp.minimum(x, 0) - xp.log1p(xp.exp(-xp.abs(x)))


def log_sigmoid_backward(g, x):
    """g * sigmoid(-x) (= g * (1 - sigmoid(x)), without the cancellation)."""
    return g * sigmoid_forward(-x)


def maxout_forward(x, pieces):
    """(..., units*pieces) -> y (..., units) = max over each group of
    ``pieces`` consecutive features, and the argmax within the group (int)."""
    z = x.reshape(x.shape[:-1] + (x.shape[-1] // pieces, pieces))
    arg = z.argmax(axis=-1)
    return backend.xp.take_along_axis(z, arg[..., None], axis=-1)[..., 0], arg


def maxout_backward(g, arg, pieces):
    """Scatter g (..., units) to the argmax of each group: (..., units*pieces)."""
    xp = backend.xp
    onehot = xp.arange(pieces) == arg[..., None]
    return (onehot * g[..., None]).astype(g.dtype).reshape(g.shape[:-1] + (g.shape[-1] * pieces,))
