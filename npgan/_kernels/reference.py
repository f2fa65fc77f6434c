"""Plain array-module references for the compiled kernels.

These are the truth the Cython kernels in ``activations.pyx`` (fused
activations), ``layers.pyx`` (linear, maxout, dropout) and ``update.pyx`` (SGD)
are tested against, and the path used when the kernels are absent or disabled, or when the
backend is CuPy. All take and return arrays of one floating dtype (float32 or
float64) and are exact at large |x|: no ``1 - sigmoid(x)`` cancellation, no
overflow of ``exp``.
"""
import math
import sys

import numpy  # host scalars, and the host Generator of uniform_draws

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


# --- layers (layers.pyx, update.pyx) ------------------------------------------

def linear_forward(x, weight, bias=None, activation=None):
    """act(x @ weight + bias) -> (y, saved): saved is y for relu, the
    pre-activation for sigmoid, None without activation."""
    z = x @ weight
    if bias is not None:
        z += bias
    if activation is None:
        return z, None
    if activation == "relu":
        y = relu_forward(z)
        return y, y
    if activation == "sigmoid":
        return sigmoid_forward(z), z
    raise ValueError(f"unknown activation {activation!r}")


def linear_backward(g, x, weight, saved, activation=None, need_x=True, need_weight=True,
                    need_bias=True):
    """(g W^T, x^T g, sum_rows g) with g first multiplied by act'; None where not needed."""
    if activation == "relu":
        g = relu_backward(g, saved)
    elif activation == "sigmoid":
        g = sigmoid_backward(g, saved)
    elif activation is not None:
        raise ValueError(f"unknown activation {activation!r}")
    return (g @ weight.T if need_x else None,
            x.T @ g if need_weight else None,
            g.sum(axis=0) if need_bias else None)


def dropout_keep(p):
    """The keep threshold 1-p as the float32 value the float32 draws are
    compared with (as NumPy 2 compares float32 arrays with a Python float)."""
    return float(numpy.float32(1.0 - p))


def uniform_draws(rng, shape):
    """rng.random(shape, dtype=float32), the dropout draws, or where it can
    the uint32 words they are made of, at less than half the cost: NumPy's
    float32 draw is (w >> 8) * 2**-24 with w the next 32-bit output, which
    PCG64 (and PCG64DXSM) give as the low, then the high half of each 64-bit
    output. So for an even count, with no half-word buffered, the words are
    random_raw(count / 2) seen as uint32 (little-endian), and the generator ends
    where rng.random would leave it (its buffered-word field, unused, aside).
    Anything else (another bit generator, an odd count, a buffered half):
    rng.random itself."""
    n = math.prod(shape)
    bg = rng.bit_generator
    if (n % 2 == 0 and n > 0 and sys.byteorder == "little"
            and isinstance(bg, (numpy.random.PCG64, numpy.random.PCG64DXSM))
            and not bg.state["has_uint32"]):
        return bg.random_raw(n // 2).view(numpy.uint32).reshape(shape)
    return rng.random(shape, dtype=numpy.float32)


def _draws(u):
    """float32 draws from u (draws, or their uint32 words); any array module."""
    if u.dtype == numpy.uint32:
        return (u >> 8).astype(numpy.float32) * numpy.float32(2.0 ** -24)
    return u


def dropout_forward(x, u, p):
    """x * mask, mask = 1/(1-p) (in x's dtype) where the draw u < 1-p, else 0;
    u: float32 draws, or their uint32 words (see uniform_draws)."""
    mask = (_draws(u) < dropout_keep(p)).astype(x.dtype) * (1.0 / (1.0 - p))
    return x * mask


dropout_backward = dropout_forward      # g * the same mask


def sgd_momentum_(p, v, g, lr, momentum, nesterov=False):
    """In place: v <- momentum v - lr g; p <- p + v (Nesterov: p += momentum v - lr g)."""
    v *= momentum
    v -= lr * g
    if nesterov:
        p += momentum * v - lr * g
    else:
        p += v
