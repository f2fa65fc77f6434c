"""CuPy kernels: the GPU counterparts of the Cython kernels.

Imported only when the backend is CuPy (``npgan._kernels.cuda_kernels()``), so
importing npgan never needs CuPy. The activation and maxout functions equal
their namesakes in ``reference.py``, ``lse_sqdist`` equals
``npgan.parzen._lse_numpy`` (the ``gpu``-marked tests compare them on a GPU;
``tests/cupy_emulator.py`` compiles these kernel sources as C++ to check them
on a CPU):

* fused activations, forward and backward: one ``cupy.ElementwiseKernel``
  each (one read, one write per element, instead of the 3-5 temporaries of the
  reference), computed from ``exp(-|x|)`` like the CPU kernels, so they are
  exact and never overflow at large ``|x|``;
* maxout: an ElementwiseKernel over output units that scans the ``pieces``
  values of its group once, giving the max and its (first) argmax; and one over
  input features that routes the gradient to the argmax;
* the Parzen log-sum-exp: ``x @ s.T`` by cuBLAS, turned into squared distances
  in place by an ElementwiseKernel, then a ``cupy.ReductionKernel`` that sums
  ``exp(-c (max(d, 0) - m))`` along each row in float64 straight from that
  block (no clamped, shifted or float64 copy of it), with the same running-max
  rescaling as the NumPy path.

Everything else runs as plain CuPy operations (cuBLAS GEMMs, CuPy ufuncs),
which are as fast as a hand kernel would be.
"""
try:
    import cupy
except Exception as e:  # ImportError, or CUDA libraries that fail to load
    raise ImportError(f"npgan._kernels.cuda needs CuPy: {e}") from e

FLOATS = ("float32", "float64")

# ----------------------------------------------------------------------------- activations
# In CUDA C++, exp/log1p/fabs are overloaded for float and double.

_EXP_NEG_ABS = "const T e = exp(-fabs(x));"
_SIGMOID = "(x >= (T)0 ? (T)1 : e) / ((T)1 + e)"     # sigmoid(x) from e = exp(-|x|)

def _kernel(name, args, out, body):
    """A cupy.ElementwiseKernel ``npgan_<name>``."""
    return cupy.ElementwiseKernel(args, out, body, "npgan_" + name)


relu_forward = _kernel("relu_forward", "T x", "T y", "y = x > (T)0 ? x : (T)0;")
relu_backward = _kernel("relu_backward", "T g, T y", "T r", "r = y > (T)0 ? g : (T)0;")
sigmoid_forward = _kernel("sigmoid_forward", "T x", "T y", _EXP_NEG_ABS + " y = " + _SIGMOID + ";")
sigmoid_backward = _kernel("sigmoid_backward", "T g, T x", "T r",
                           _EXP_NEG_ABS + " r = g * (e / (((T)1 + e) * ((T)1 + e)));")
softplus_forward = _kernel("softplus_forward", "T x", "T y",
                           _EXP_NEG_ABS + " y = (x > (T)0 ? x : (T)0) + log1p(e);")
log_sigmoid_forward = _kernel("log_sigmoid_forward", "T x", "T y",
                              _EXP_NEG_ABS + " y = (x < (T)0 ? x : (T)0) - log1p(e);")
# g * sigmoid(sign * x): softplus' (sign = +1) and log-sigmoid' (sign = -1)
_sigmoid_times = _kernel("sigmoid_times", "T g, T x0, int32 sign", "T r",
                         "const T x = sign > 0 ? x0 : -x0; " + _EXP_NEG_ABS
                         + " r = g * (" + _SIGMOID + ");")


def softplus_backward(g, x):
    return _sigmoid_times(g, x, 1)


def log_sigmoid_backward(g, x):
    return _sigmoid_times(g, x, -1)


def accepts(*arrays):
    """True when these kernels take the arrays: CuPy float32/64 arrays of one
    dtype and one shape (anything else goes to the reference)."""
    a = arrays[0]
    return all(isinstance(b, cupy.ndarray) and b.dtype == a.dtype and b.shape == a.shape
               for b in arrays) and a.dtype.name in FLOATS


# ----------------------------------------------------------------------------- maxout
# One thread per output unit i: the group x[i*pieces : (i+1)*pieces] of the flat,
# C-contiguous input. Ties and NaN as numpy.argmax: the first maximum, or the
# first NaN.
_maxout_forward = cupy.ElementwiseKernel(
    "raw T x, int64 pieces", "T y, int64 arg",
    """
    const long long base = (long long)i * pieces;
    T best = x[base];
    long long b = 0;
    for (long long k = 1; k < pieces; ++k) {
        const T v = x[base + k];
        if (v > best || (v != v && best == best)) { best = v; b = k; }
    }
    y = best;
    arg = b;
    """,
    "npgan_maxout_forward")

# One thread per input feature j (flat): unit u = j / pieces gets g[u] if j is
# its argmax, else 0.
_maxout_backward = cupy.ElementwiseKernel(
    "raw T g, raw int64 arg, int64 pieces", "T gx",
    """
    const long long u = (long long)i / pieces;
    gx = (arg[u] == (long long)i - u * pieces) ? g[u] : (T)0;
    """,
    "npgan_maxout_backward")


def maxout_forward(x, pieces):
    """(..., units*pieces) -> (y (..., units), arg (..., units) int64)."""
    units = x.shape[-1] // pieces
    y = cupy.empty(x.shape[:-1] + (units,), dtype=x.dtype)
    arg = cupy.empty(y.shape, dtype=cupy.int64)
    if y.size:
        _maxout_forward(cupy.ascontiguousarray(x).reshape(-1), pieces, y, arg)
    return y, arg


def maxout_backward(g, arg, pieces):
    """Scatter g (..., units) to the argmax of each group: (..., units*pieces)."""
    gx = cupy.empty(g.shape[:-1] + (g.shape[-1] * pieces,), dtype=g.dtype)
    if gx.size:
        _maxout_backward(cupy.ascontiguousarray(g).reshape(-1),
                         cupy.ascontiguousarray(arg, dtype=cupy.int64).reshape(-1), pieces, gx)
    return gx


# ----------------------------------------------------------------------------- Parzen
#: (test rows, sample columns) per block on the GPU: a 4096 x 8192 distance block
#: is 128 MiB in float32
BLOCKS = (4096, 8192)

# ||v_i||^2 accumulated in float64, returned in v's dtype (as parzen._sqnorms)
_sqnorm = cupy.ReductionKernel(
    "T v", "T r",
    "(double)v * (double)v", "a + b", "r = (T)a", "0",
    "npgan_parzen_sqnorm", reduce_type="double")

# in place, GEMM output -> squared distances: d = (||x||^2 + ||s||^2) - 2 x.s,
# rounded as the NumPy path's xx + ss - 2 * (x @ s.T)
_sqdist = cupy.ElementwiseKernel(
    "T xx, T ss", "T d",
    "d = (xx + ss) - (T)2 * d;",
    "npgan_parzen_sqdist")

# sum_j exp(-c (max(d_ij, 0) - m_i)) in float64, straight from the distances d
_sum_exp = cupy.ReductionKernel(
    "T d, float64 m, float64 c", "float64 r",
    "exp(-c * (((double)d > 0.0 ? (double)d : 0.0) - m))", "a + b", "r = a", "0",
    "npgan_parzen_sum_exp")


def lse_sqdist(x, s, c, bx, bs, progress):
    """(K, N) float64: logsumexp_j(-c_k ||x_i - s_j||^2).

    x (N, D), s (M, D): C-contiguous CuPy arrays of one float dtype (the
    distances are computed in it); c (K,) host float64 (1 / 2 sigma^2).
    Blocks of ``bx`` rows of x by ``bs`` rows of s; the running minimum distance
    per row (the log-sum-exp's max) and the rescaling of the partial sums are
    those of ``npgan.parzen._lse_numpy``."""
    n, m = x.shape[0], s.shape[0]
    cs = [float(ck) for ck in c]
    cc = cupy.asarray(c, dtype=cupy.float64)[:, None]
    ss = _sqnorm(s, axis=1)
    out = cupy.empty((len(cs), n), dtype=cupy.float64)
    for i0 in range(0, n, bx):
        xb = x[i0:i0 + bx]
        xx = _sqnorm(xb, axis=1)[:, None]
        dmin = cupy.full(xb.shape[0], cupy.inf, dtype=cupy.float64)
        acc = cupy.zeros((len(cs), xb.shape[0]), dtype=cupy.float64)
        for j0 in range(0, m, bs):
            d = xb @ s[j0:j0 + bs].T              # cuBLAS GEMM, compute dtype
            _sqdist(xx, ss[None, j0:j0 + bs], d)
            new = cupy.minimum(dmin, cupy.maximum(d.min(axis=1), 0).astype(cupy.float64))
            acc *= cupy.exp(-cc * (dmin - new))   # rescale to the new running minimum
            dmin = new
            col = dmin[:, None]
            for k, ck in enumerate(cs):
                acc[k] += _sum_exp(d, col, ck, axis=1)
        out[:, i0:i0 + xb.shape[0]] = cupy.log(acc) - cc * dmin
        progress.update(xb.shape[0])
    return out
