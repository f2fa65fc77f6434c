"""Plain array-module references for the compiled kernels.

These are the truth the Cython kernels in ``activations.pyx`` (fused
activations), ``gemm.pyx`` and ``layers.pyx`` (linear), ``maxout.pyx``,
``dropout.pyx`` and ``update.pyx`` (SGD) are tested against, and the path
used when the kernels are absent or disabled, or when the backend is CuPy. All take and return arrays of one floating dtype (float32 or
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


# --- layers (gemm, layers, maxout, dropout, update .pyx) ----------------------

def linear_forward(x, weight, bias=None):
    """x @ weight + bias: x (N, in), weight (in, out), bias (out,) or None."""
    z = x @ weight
    if bias is not None:
        z += bias
    return z


def linear_backward(g, x, weight, need_x=True, need_weight=True, need_bias=True):
    """(g W^T, x^T g, sum_rows g) for the gradient g (N, out) of the
    pre-activation; None where not needed."""
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


# --- squared distances and the Parzen window (parzen_kernel.pyx, cuda.lse_sqdist) ---
# The one blocked-distance helper of the package: npgan.metrics.parzen (its NumPy
# path is parzen_lse below) and npgan.metrics.neighbours take their distance
# blocks from gemm_sqdist.

#: direct_sqdist holds at most this many bytes of differences at a time
DIRECT_BYTES = 32 << 20


def sqnorms(a, rows=4096):
    """||a_i||^2 accumulated in float64, returned in a's dtype, shape (N,)."""
    xp = backend.xp
    out = xp.empty(a.shape[0], a.dtype)
    for i in range(0, a.shape[0], rows):
        b = a[i:i + rows].astype(xp.float64)
        out[i:i + rows] = (b * b).sum(axis=1)
    return out


def gemm_sqdist(a, b, a_sq, b_sq, norms_first=True):
    """(len(a), len(b)) squared distances ||a_i - b_j||^2 from one GEMM,
    ||a_i||^2 + ||b_j||^2 - 2 a_i.b_j, clamped at 0 (rounding can make them a
    hair negative), in the dtype of the operands; a_sq (len(a),) and b_sq
    (len(b),): the squared norms. Cancels: see npgan.metrics.parzen for its
    error bound, and for inputs where the differences must be used instead
    (:func:`direct_sqdist`).

    Two roundings, each the one its caller's published numbers came from:
    norms_first (the Parzen window, as parzen_kernel and the CUDA kernel):
    (||a||^2 + ||b||^2) - 2 a.b; else (the neighbour metrics, on blocks of up
    to 128 MiB): (-2 a.b + ||a||^2) + ||b||^2 in the GEMM's own output, no
    temporary block. The two differ in the last bit."""
    xp = backend.xp
    g = a @ b.T
    if norms_first:
        d = a_sq[:, None] + b_sq[None, :]
        g *= 2
        d -= g
    else:
        d = g
        d *= -2
        d += a_sq[:, None]
        d += b_sq[None, :]
    return xp.maximum(d, 0, out=d)


def direct_sqdist(a, b):
    """(len(a), len(b)) float64 ||a_i - b_j||^2 from the differences (no
    cancellation), in slices of at most DIRECT_BYTES of differences."""
    xp = backend.xp
    d = xp.empty((a.shape[0], b.shape[0]), xp.float64)
    rows = max(1, DIRECT_BYTES // (8 * b.shape[0] * b.shape[1]))
    for i in range(0, a.shape[0], rows):
        diff = a[i:i + rows, None, :] - b[None, :, :]
        d[i:i + rows] = xp.einsum("ijk,ijk->ij", diff, diff)
    return d


def parzen_lse(x, s, c, bx, bs, progress=None, direct=False):
    """(K, N) float64: logsumexp_j(-c_k ||x_i - s_j||^2), the reference of
    parzen_kernel.lse_sqdist and cuda.lse_sqdist, and the NumPy path of
    npgan.metrics.parzen.log_likelihood.

    x (N, D), s (M, D): arrays of one float dtype (the GEMM's); c (K,) host
    float64 (1 / 2 sigma^2). Blocks of ``bx`` rows of x by ``bs`` rows of s;
    per row a running minimum distance (the log-sum-exp's max) with the
    partial sums rescaled to it, accumulated in float64. direct: distances
    from the differences (float64 x, s) instead of the GEMM. progress: an
    object whose ``update(rows)`` is called after each block of x, or None."""
    xp = backend.xp
    n, m = x.shape[0], s.shape[0]
    cc = xp.asarray(c)[:, None]
    ss = sqnorms(s)
    out = xp.empty((len(c), n), xp.float64)
    for i0 in range(0, n, bx):
        xb = x[i0:i0 + bx]
        xx = sqnorms(xb)
        dmin = xp.full(xb.shape[0], xp.inf)
        acc = xp.zeros((len(c), xb.shape[0]))
        for j0 in range(0, m, bs):
            if direct:
                d = direct_sqdist(xb, s[j0:j0 + bs])
            else:
                d = gemm_sqdist(xb, s[j0:j0 + bs], xx, ss[j0:j0 + bs]).astype(xp.float64)
            new = xp.minimum(dmin, d.min(axis=1))
            acc *= xp.exp(-cc * (dmin - new))        # rescale to the new running max
            dmin = new
            d -= dmin[:, None]
            t = xp.empty_like(d)
            for k in range(len(c)):
                xp.multiply(d, -float(c[k]), out=t)
                # exp takes a slow path below -708 (denormals); e^-700 adds nothing here
                xp.maximum(t, -700.0, out=t)
                xp.exp(t, out=t)
                acc[k] += t.sum(axis=1)
        out[:, i0:i0 + xb.shape[0]] = xp.log(acc) - cc * dmin
        if progress is not None:
            progress.update(xb.shape[0])
    return out
