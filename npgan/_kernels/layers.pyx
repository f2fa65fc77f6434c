# cython: language_level=3
"""Layer kernels: GEMM straight to BLAS, and the one-pass loops around it.

* ``gemm(a, b, c, beta)``: c = a @ b + beta * c for row-major ``c`` through
  SciPy's BLAS (``scipy.linalg.cython_blas``; importing this module fails
  without SciPy, and npgan then uses its NumPy references). ``a`` and ``b`` may
  each be C- or F-contiguous (a transposed view costs no copy): row-major
  C = A B is column-major C^T = B^T A^T, so the operands are handed over
  swapped, with 'N' or 'T' according to their layout.
* ``bias_act``: the GEMM's epilogue, y = act(y + b) in one pass over y
  (act: 0 none, 1 relu, 2 sigmoid, which also keeps the pre-activation).
* ``act_backward``: the backward prologue, g_pre = g * act'(.) and the bias
  gradient (column sums of g_pre, row by row as numpy.sum(axis=0)) in one pass.
* ``maxout_forward`` / ``maxout_backward``: max over consecutive groups of
  ``pieces`` with the argmax as uint8 (first maximum, or first NaN, as
  numpy.argmax), and the scatter back in one pass that also writes the zeros.
* ``dropout``: out = x * (scale if u < keep else 0) from the uniform draws u
  (float32, from the caller's numpy Generator); forward and backward alike.

Each equals its namesake in ``reference.py`` (tests/test_layer_kernels.py).
Empty arrays are refused with a ValueError. Arrays arrive C-contiguous and of one float dtype (the wrappers in
``npgan._kernels`` make them so, or take the reference path); loops run
without the GIL, single-threaded; BLAS uses its own thread settings
(OPENBLAS_NUM_THREADS / OMP_NUM_THREADS / threadpoolctl).
"""
cimport numpy as cnp
from cython cimport floating
from libc.math cimport exp, expf, fabs, fabsf
from libc.string cimport memset
from scipy.linalg.cython_blas cimport sgemm, dgemm

cnp.import_array()


cdef inline int _nonempty(str op, Py_ssize_t n) except -1:
    if n == 0:
        raise ValueError(f"{op}: empty batch (or an empty operand); the compiled kernels take "
                         "only non-empty arrays (npgan._kernels' wrappers send empty ones to the "
                         "reference)")
    return 0

cdef enum:
    NONE = 0
    RELU = 1
    SIGMOID = 2


# ----------------------------------------------------------------------------- GEMM

cdef inline int _op(cnp.ndarray a, char *trans, int *ld) except -1:
    """BLAS operand of row-major ``a`` as seen column-major: 'N' with ld =
    columns if C-contiguous, 'T' with ld = rows if F-contiguous."""
    if cnp.PyArray_IS_C_CONTIGUOUS(a):
        trans[0] = b'N'
        ld[0] = max(<int> a.shape[1], 1)
    elif cnp.PyArray_IS_F_CONTIGUOUS(a):
        trans[0] = b'T'
        ld[0] = max(<int> a.shape[0], 1)
    else:
        raise ValueError("gemm: operands must be C- or F-contiguous")
    return 0


def gemm(cnp.ndarray a, cnp.ndarray b, cnp.ndarray c, double beta=0.0):
    """c = a @ b + beta * c. a (m, k), b (k, n): C- or F-contiguous; c (m, n)
    C-contiguous; one dtype, float32 or float64. Returns c."""
    cdef int m = a.shape[0], k = a.shape[1], n = b.shape[1], lda, ldb, ldc = max(n, 1)
    cdef char ta, tb
    cdef float sa = 1, sb = <float> beta
    cdef double da = 1, db = beta
    if b.shape[0] != k or c.shape[0] != m or c.shape[1] != n:
        raise ValueError(f"gemm: shapes ({m}, {k}) @ ({b.shape[0]}, {n}) -> "
                         f"({c.shape[0]}, {c.shape[1]}) do not match")
    if not cnp.PyArray_IS_C_CONTIGUOUS(c):
        raise ValueError("gemm: the output must be C-contiguous")
    if not (a.dtype == b.dtype == c.dtype):
        raise TypeError(f"gemm: one dtype needed, got {a.dtype}, {b.dtype}, {c.dtype}")
    _nonempty("gemm", m)
    _nonempty("gemm", n)
    _nonempty("gemm", k)
    _op(a, &ta, &lda)
    _op(b, &tb, &ldb)
    if c.dtype.num == cnp.NPY_FLOAT32:
        with nogil:
            sgemm(&tb, &ta, &n, &m, &k, &sa, <float *> cnp.PyArray_DATA(b), &ldb,
                  <float *> cnp.PyArray_DATA(a), &lda, &sb, <float *> cnp.PyArray_DATA(c), &ldc)
    elif c.dtype.num == cnp.NPY_FLOAT64:
        with nogil:
            dgemm(&tb, &ta, &n, &m, &k, &da, <double *> cnp.PyArray_DATA(b), &ldb,
                  <double *> cnp.PyArray_DATA(a), &lda, &db, <double *> cnp.PyArray_DATA(c), &ldc)
    else:
        raise TypeError(f"gemm: float32 or float64 needed, got {c.dtype}")
    return c


# ----------------------------------------------------------------------------- activations

cdef inline floating _exp_neg_abs(floating x) noexcept nogil:
    if floating is float:
        return expf(-fabsf(x))
    else:
        return exp(-fabs(x))


cdef inline floating _sigmoid(floating x) noexcept nogil:
    # as reference.sigmoid_forward: from exp(-|x|), never overflows
    cdef floating e = _exp_neg_abs(x)
    if x >= 0:
        return 1 / (1 + e)
    return e / (1 + e)


def bias_act(floating[:, ::1] y, floating[::1] b, int act, floating[:, ::1] pre):
    """In place: y = act(y + b) (b may be None); act SIGMOID also stores
    y + b in ``pre`` (the backward needs it; else pass None)."""
    cdef Py_ssize_t i, j, n = y.shape[0], m = y.shape[1]
    cdef floating v
    cdef bint has_b = b is not None
    _nonempty("bias_act", n * m)
    if has_b and b.shape[0] != m:
        raise ValueError("bias_act: bias length does not match")
    if act == SIGMOID and (pre is None or pre.shape[0] != n or pre.shape[1] != m):
        raise ValueError("bias_act: sigmoid needs a pre-activation array of y's shape")
    if act == NONE and not has_b:
        return
    with nogil:
        for i in range(n):
            for j in range(m):
                v = y[i, j] + b[j] if has_b else y[i, j]
                if act == RELU:
                    y[i, j] = 0 if v <= 0 else v      # NaN stays NaN, as numpy.maximum
                elif act == SIGMOID:
                    pre[i, j] = v
                    y[i, j] = _sigmoid(v)
                else:
                    y[i, j] = v


def act_backward(floating[:, ::1] g, floating[:, ::1] saved, int act,
                 floating[:, ::1] gpre, floating[::1] gb):
    """gpre = g * act'(.) (``saved``: y for relu, the pre-activation for
    sigmoid; unused for NONE, where gpre may be None) and, unless gb is None,
    gb = gpre.sum(axis=0), in one pass over g."""
    cdef Py_ssize_t i, j, n = g.shape[0], m = g.shape[1]
    cdef floating v, e
    cdef bint want_b = gb is not None
    _nonempty("act_backward", n * m)
    if want_b:
        if gb.shape[0] != m:
            raise ValueError("act_backward: bias gradient length does not match")
        gb[:] = 0
    if act != NONE and (saved is None or gpre is None or saved.shape[0] != n or saved.shape[1] != m
                        or gpre.shape[0] != n or gpre.shape[1] != m):
        raise ValueError("act_backward: saved and gpre must have g's shape")
    with nogil:
        for i in range(n):
            for j in range(m):
                v = g[i, j]
                if act == RELU:
                    v = v if saved[i, j] > 0 else 0
                    gpre[i, j] = v
                elif act == SIGMOID:
                    e = _exp_neg_abs(saved[i, j])
                    v = v * (e / ((1 + e) * (1 + e)))
                    gpre[i, j] = v
                if want_b:
                    gb[j] += v


# ----------------------------------------------------------------------------- maxout

def maxout_forward(floating[::1] x, int pieces, floating[::1] y, cnp.uint8_t[::1] arg):
    """y[u] = max(x[u*pieces : (u+1)*pieces]), arg[u] = its first argmax (or
    first NaN), for the flat C-order data of (..., units*pieces)."""
    cdef Py_ssize_t u, k, base, units = y.shape[0]
    cdef floating best, v
    cdef int b
    _nonempty("maxout_forward", units)
    if pieces < 1 or pieces > 256 or x.shape[0] != units * pieces or arg.shape[0] != units:
        raise ValueError("maxout_forward: sizes do not match (or pieces not in 1..256)")
    with nogil:
        for u in range(units):
            base = u * pieces
            best = x[base]
            b = 0
            for k in range(1, pieces):
                v = x[base + k]
                if v > best or (v != v and best == best):
                    best = v
                    b = k
            y[u] = best
            arg[u] = <cnp.uint8_t> b


def maxout_backward(floating[::1] g, cnp.uint8_t[::1] arg, int pieces, floating[::1] gx):
    """gx[u*pieces + k] = g[u] if k == arg[u] else 0; every element written."""
    cdef Py_ssize_t u, k, base, units = g.shape[0]
    cdef int a
    _nonempty("maxout_backward", units)
    if pieces < 1 or gx.shape[0] != units * pieces or arg.shape[0] != units:
        raise ValueError("maxout_backward: sizes do not match")
    with nogil:
        for u in range(units):
            base = u * pieces
            a = arg[u]
            for k in range(pieces):
                gx[base + k] = g[u] if k == a else 0


# ----------------------------------------------------------------------------- dropout

def dropout(floating[::1] x, float[::1] u, float keep, floating scale, floating[::1] out):
    """out = x * (scale if u < keep else 0): the forward (x the input) and the
    backward (x the upstream gradient) of inverted dropout. The product is
    taken for dropped elements too, so NaN/inf propagate as in x * mask."""
    cdef Py_ssize_t i, n = x.shape[0]
    cdef floating zero = 0
    _nonempty("dropout", n)
    if u.shape[0] != n or out.shape[0] != n:
        raise ValueError("dropout: sizes do not match")
    with nogil:
        for i in range(n):
            out[i] = x[i] * (scale if u[i] < keep else zero)
