# cython: language_level=3
"""The passes around a layer's GEMM, and maxout and dropout, each in one pass over memory.

* ``bias_act``: the GEMM's epilogue, y = act(y + b) in one pass over y
  (act: 0 none, 1 relu, 2 sigmoid, which also keeps the pre-activation).
* ``act_backward``: the backward prologue, g_pre = g * act'(.) and the bias
  gradient (column sums of g_pre, row by row as numpy.sum(axis=0)) in one pass.
* ``maxout_forward`` / ``maxout_backward``: max over consecutive groups of
  ``pieces`` with the argmax as uint8 (first maximum, or first NaN, as
  numpy.argmax), and the scatter back in one pass that also writes the zeros.
* ``dropout``: out = x * (scale if u < keep else 0) from the uniform draws u
  (float32, from the caller's numpy Generator, or the uint32 words those
  draws are made of); forward and backward alike.

Each equals its namesake in ``reference.py`` (tests/test_layer_ops.py).
Arrays arrive C-contiguous and of one float dtype (the wrappers in
``npgan._kernels.layer_ops`` make them so, or take the reference path); the
sizes are checked here (memory safety), empty arrays refused with a
ValueError. Loops run without the GIL; big float32 passes in bands on the
pool's threads (pool.pyx), with the same bits as one pass; float32 sigmoid
and exp from simd.h (as activations.pyx).
"""
cimport numpy as cnp
from cython cimport floating
from libc.math cimport ceil
from libc.string cimport memset

from npgan._kernels.pool cimport band, parallel_run, split_threads

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


cdef extern from "simd.h" nogil:
    double npg_sigmoid_d(double v)
    double npg_sigmoid_grad_d(double v)


# ----------------------------------------------------------------------------- C loops
# float32 loops in C with restrict pointers and no branches, so that GCC
# vectorizes them (AVX-512 / AVX2 clones where the machine has them); float64
# (gradient checks) takes the plain Cython loops below, with libm's exp.

cdef extern from * nogil:
    """
    #include "simd.h"
    /* y = act(y + b) over rows of m; act 0 none, 1 relu, 2 sigmoid (pre = y + b) */
    NPG_CLONES static void npl_bias_act_f(float *restrict y, const float *restrict b, int64_t n,
                                          int64_t m, int64_t ld, int act, float *restrict pre) {
        for (int64_t i = 0; i < n; i++) {
            float *restrict yi = y + i * ld;
            if (act == 1) {
                if (b) for (int64_t j = 0; j < m; j++) { float v = yi[j] + b[j]; yi[j] = v <= 0 ? 0.0f : v; }
                else   for (int64_t j = 0; j < m; j++) { float v = yi[j]; yi[j] = v <= 0 ? 0.0f : v; }
            } else if (act == 2 && pre) {
                float *restrict pi = pre + i * ld;
                for (int64_t j = 0; j < m; j++) {
                    float v = b ? yi[j] + b[j] : yi[j];
                    pi[j] = v;
                    yi[j] = npg_sigmoid_f(v);
                }
            } else if (act == 2) {
                for (int64_t j = 0; j < m; j++) yi[j] = npg_sigmoid_f(b ? yi[j] + b[j] : yi[j]);
            } else if (b) {
                for (int64_t j = 0; j < m; j++) yi[j] += b[j];
            }
        }
    }

    /* gpre = g * act'(saved), gb (if not NULL) = column sums of gpre, row by row */
    NPG_CLONES static void npl_act_backward_f(const float *restrict g, const float *restrict saved,
                                              int64_t n, int64_t m, int64_t ld, int act, float *restrict gpre,
                                              float *restrict gb) {
        if (gb) memset(gb, 0, sizeof(float) * m);
        for (int64_t i = 0; i < n; i++) {
            const float *restrict gi = g + i * ld, *restrict si = saved + i * ld;
            float *restrict oi = gpre + i * ld;
            if (act == 1) {
                for (int64_t j = 0; j < m; j++) oi[j] = si[j] > 0 ? gi[j] : 0.0f;
            } else if (act == 2) {
                for (int64_t j = 0; j < m; j++) oi[j] = gi[j] * npg_sigmoid_grad_f(si[j]);
            }
            if (gb) {
                const float *restrict src = act ? oi : gi;
                for (int64_t j = 0; j < m; j++) gb[j] += src[j];
            }
        }
    }

    /* maxout, float32 or float64 (T): one pass per piece over all units, the
       running max and its index kept in y and arg (strided loads, vectorized
       across units; the first maximum wins ties as its index is only replaced
       by a strictly greater value). Returns 1 if a NaN was seen: the caller
       then redoes the array with the NaN-aware loop. */
    #define NPL_MAXOUT(T, NAME) \
    NPG_CLONES static int NAME(const T *restrict x, int64_t units, int pieces, T *restrict y, \
                               uint8_t *restrict arg) { \
        int nan = 0; \
        for (int64_t u = 0; u < units; u++) { T v = x[u * pieces]; y[u] = v; arg[u] = 0; nan |= v != v; } \
        for (int k = 1; k < pieces; k++) { \
            for (int64_t u = 0; u < units; u++) { \
                T v = x[u * pieces + k], b = y[u]; \
                int c = v > b; \
                y[u] = c ? v : b; \
                arg[u] = c ? (uint8_t)k : arg[u]; \
                nan |= v != v; \
            } \
        } \
        return nan; \
    }
    NPL_MAXOUT(float, npl_maxout_f)
    NPL_MAXOUT(double, npl_maxout_d)
    /* dropout from float draws u or their uint32 words w; a select, no branch
       (the mask is random: a branch would be mispredicted a fifth of the time) */
    NPG_CLONES static void npl_dropout_f(const float *restrict x, const float *restrict u,
                                         float keep, float scale, float *restrict out, int64_t n) {
        for (int64_t i = 0; i < n; i++) out[i] = x[i] * (u[i] < keep ? scale : 0.0f);
    }
    NPG_CLONES static void npl_dropout_words_f(const float *restrict x, const uint32_t *restrict w,
                                               uint32_t threshold, float scale,
                                               float *restrict out, int64_t n) {
        for (int64_t i = 0; i < n; i++) out[i] = x[i] * ((w[i] >> 8) < threshold ? scale : 0.0f);
    }
    """
    void npl_bias_act_f(float *y, const float *b, Py_ssize_t n, Py_ssize_t m, Py_ssize_t ld, int act,
                        float *pre)
    void npl_act_backward_f(const float *g, const float *saved, Py_ssize_t n, Py_ssize_t m,
                            Py_ssize_t ld, int act,
                            float *gpre, float *gb)
    int npl_maxout_f(const float *x, Py_ssize_t units, int pieces, float *y, cnp.uint8_t *arg)
    int npl_maxout_d(const double *x, Py_ssize_t units, int pieces, double *y, cnp.uint8_t *arg)
    void npl_dropout_f(const float *x, const float *u, float keep, float scale, float *out,
                       Py_ssize_t n)
    void npl_dropout_words_f(const float *x, const cnp.uint32_t *w, cnp.uint32_t threshold,
                             float scale, float *out, Py_ssize_t n)


# ----------------------------------------------------------------------------- activations

# float32 passes over (n, m) arrays of at least BAND_MIN elements run in bands
# of columns on the pool's threads: every element (and every column sum of
# act_backward, added row by row) is computed as in one pass, so the result is
# the same bits.

cdef enum:
    BAND_MIN = 1 << 15
    BAND_PARTS = 4                       # bands of the maxout and dropout passes

cdef struct Elementwise:
    float *y                             # bias_act: y; act_backward: gpre
    const float *b
    float *pre
    const float *g
    const float *saved
    float *gb
    Py_ssize_t n, m
    int act


cdef void _bias_act_band(void *ctx, int i, int parts) noexcept nogil:
    cdef Elementwise *e = <Elementwise *> ctx
    cdef Py_ssize_t lo, hi
    band(e.m, i, parts, &lo, &hi)
    if hi > lo:
        npl_bias_act_f(e.y + lo, e.b + lo if e.b != NULL else NULL, e.n, hi - lo, e.m, e.act,
                       e.pre + lo if e.pre != NULL else NULL)


cdef void _act_backward_band(void *ctx, int i, int parts) noexcept nogil:
    cdef Elementwise *e = <Elementwise *> ctx
    cdef Py_ssize_t lo, hi
    band(e.m, i, parts, &lo, &hi)
    if hi > lo:
        npl_act_backward_f(e.g + lo, e.saved + lo if e.saved != NULL else NULL, e.n, hi - lo, e.m,
                           e.act, e.y + lo if e.y != NULL else NULL,
                           e.gb + lo if e.gb != NULL else NULL)


cdef void _banded(void (*fn)(void *, int, int) noexcept nogil, Elementwise *e) noexcept nogil:
    cdef int parts = 1
    if e.n * e.m >= BAND_MIN and e.m >= 64:
        parts = min(split_threads(), <int> (e.m // 32))
    parallel_run(fn, e, max(parts, 1))


def bias_act(floating[:, ::1] y, floating[::1] b, int act, floating[:, ::1] pre):
    """In place: y = act(y + b) (b may be None); with act SIGMOID and ``pre``
    not None, y + b is also stored there (the backward needs it)."""
    cdef Py_ssize_t i, j, n = y.shape[0], m = y.shape[1]
    cdef double v
    cdef bint has_b = b is not None, has_pre = pre is not None
    _nonempty("bias_act", n * m)
    if has_b and b.shape[0] != m:
        raise ValueError("bias_act: bias length does not match")
    if has_pre and (pre.shape[0] != n or pre.shape[1] != m):
        raise ValueError("bias_act: the pre-activation array must have y's shape")
    if act == NONE and not has_b:
        return
    cdef Elementwise ew
    if floating is float:
        ew.y, ew.b, ew.n, ew.m, ew.act = &y[0, 0], &b[0] if has_b else NULL, n, m, act
        ew.pre = &pre[0, 0] if act == SIGMOID and has_pre else NULL
        with nogil:
            _banded(_bias_act_band, &ew)
    else:
        with nogil:
            for i in range(n):
                for j in range(m):
                    v = y[i, j] + b[j] if has_b else y[i, j]
                    if act == RELU:
                        y[i, j] = 0 if v <= 0 else v      # NaN stays NaN, as numpy.maximum
                    elif act == SIGMOID:
                        if has_pre:
                            pre[i, j] = v
                        y[i, j] = npg_sigmoid_d(v)
                    else:
                        y[i, j] = v


def act_backward(floating[:, ::1] g, floating[:, ::1] saved, int act,
                 floating[:, ::1] gpre, floating[::1] gb):
    """gpre = g * act'(.) (``saved``: y for relu, the pre-activation for
    sigmoid; unused for NONE, where gpre may be None) and, unless gb is None,
    gb = gpre.sum(axis=0), in one pass over g."""
    cdef Py_ssize_t i, j, n = g.shape[0], m = g.shape[1]
    cdef double v
    cdef bint want_b = gb is not None
    _nonempty("act_backward", n * m)
    if want_b and gb.shape[0] != m:
        raise ValueError("act_backward: bias gradient length does not match")
    if act != NONE and (saved is None or gpre is None or saved.shape[0] != n or saved.shape[1] != m
                        or gpre.shape[0] != n or gpre.shape[1] != m):
        raise ValueError("act_backward: saved and gpre must have g's shape")
    cdef Elementwise ew
    if floating is float:
        ew.g, ew.saved, ew.n, ew.m, ew.act = (&g[0, 0], &saved[0, 0] if act != NONE else NULL,
                                              n, m, act)
        ew.y, ew.gb = &gpre[0, 0] if act != NONE else NULL, &gb[0] if want_b else NULL
        with nogil:
            _banded(_act_backward_band, &ew)
    else:
        if want_b:
            gb[:] = 0
        with nogil:
            for i in range(n):
                for j in range(m):
                    v = g[i, j]
                    if act == RELU:
                        v = v if saved[i, j] > 0 else 0
                        gpre[i, j] = v
                    elif act == SIGMOID:
                        v = v * npg_sigmoid_grad_d(saved[i, j])
                        gpre[i, j] = v
                    if want_b:
                        gb[j] += v


# ----------------------------------------------------------------------------- maxout

# float32 maxout and dropout passes of at least BAND_MIN elements: in bands of
# units (elements) on the pool, as bias_act; each output as in one pass.

cdef struct Rows:
    const void *x
    void *y
    const void *u                        # dropout: the draws (or words)
    cnp.uint8_t *arg
    Py_ssize_t n                         # units (maxout) or elements (dropout)
    int pieces
    float keep, scale
    cnp.uint32_t threshold
    int flag[BAND_PARTS]                 # maxout_forward: a NaN seen in band i


cdef void _maxout_f_band(void *ctx, int i, int parts) noexcept nogil:
    cdef Rows *r = <Rows *> ctx
    cdef Py_ssize_t lo, hi
    band(r.n, i, parts, &lo, &hi)
    r.flag[i] = 0
    if hi > lo:
        r.flag[i] = npl_maxout_f(<const float *> r.x + lo * r.pieces, hi - lo, r.pieces,
                                 <float *> r.y + lo, r.arg + lo)


cdef int _maxout_f_banded(const float *x, Py_ssize_t units, int pieces, float *y,
                          cnp.uint8_t *arg) noexcept nogil:
    cdef Rows r
    cdef int i, parts = BAND_PARTS if units * pieces >= BAND_MIN else 1
    r.x, r.y, r.arg, r.n, r.pieces = x, y, arg, units, pieces
    parallel_run(_maxout_f_band, &r, parts)
    for i in range(1, parts):
        r.flag[0] |= r.flag[i]
    return r.flag[0]


cdef void _maxout_back_f_band(void *ctx, int i, int parts) noexcept nogil:
    cdef Rows *r = <Rows *> ctx
    cdef Py_ssize_t lo, hi, u
    cdef const float *g = <const float *> r.x
    cdef float *gx = <float *> r.y
    band(r.n, i, parts, &lo, &hi)
    if hi > lo:
        memset(gx + lo * r.pieces, 0, (hi - lo) * r.pieces * sizeof(float))
        for u in range(lo, hi):
            gx[u * r.pieces + r.arg[u]] = g[u]


cdef void _dropout_f_band(void *ctx, int i, int parts) noexcept nogil:
    cdef Rows *r = <Rows *> ctx
    cdef Py_ssize_t lo, hi
    band(r.n, i, parts, &lo, &hi)
    if hi > lo:
        npl_dropout_f(<const float *> r.x + lo, <const float *> r.u + lo, r.keep, r.scale,
                      <float *> r.y + lo, hi - lo)


cdef void _dropout_words_f_band(void *ctx, int i, int parts) noexcept nogil:
    cdef Rows *r = <Rows *> ctx
    cdef Py_ssize_t lo, hi
    band(r.n, i, parts, &lo, &hi)
    if hi > lo:
        npl_dropout_words_f(<const float *> r.x + lo, <const cnp.uint32_t *> r.u + lo,
                            r.threshold, r.scale, <float *> r.y + lo, hi - lo)


def maxout_forward(floating[::1] x, int pieces, floating[::1] y, cnp.uint8_t[::1] arg):
    """y[u] = max(x[u*pieces : (u+1)*pieces]), arg[u] = its first argmax (or
    first NaN), for the flat C-order data of (..., units*pieces)."""
    cdef Py_ssize_t u, k, base, units = y.shape[0]
    cdef floating best, v
    cdef int b, nan
    _nonempty("maxout_forward", units)
    if pieces < 1 or pieces > 256 or x.shape[0] != units * pieces or arg.shape[0] != units:
        raise ValueError("maxout_forward: sizes do not match (or pieces not in 1..256)")
    with nogil:
        if floating is float:
            nan = _maxout_f_banded(&x[0], units, pieces, &y[0], &arg[0])
        else:
            nan = npl_maxout_d(&x[0], units, pieces, &y[0], &arg[0])
        if nan:                        # rare: redo with NaN handling (the first NaN wins)
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
    """gx[u*pieces + k] = g[u] if k == arg[u] else 0: zeros, then one write per unit."""
    cdef Py_ssize_t u, units = g.shape[0]
    _nonempty("maxout_backward", units)
    if pieces < 1 or gx.shape[0] != units * pieces or arg.shape[0] != units:
        raise ValueError("maxout_backward: sizes do not match")
    cdef Rows r
    if floating is float and gx.shape[0] >= BAND_MIN:
        r.x, r.y, r.arg, r.n, r.pieces = &g[0], &gx[0], &arg[0], units, pieces
        with nogil:
            parallel_run(_maxout_back_f_band, &r, BAND_PARTS)
        return
    with nogil:
        memset(&gx[0], 0, gx.shape[0] * sizeof(floating))
        for u in range(units):
            gx[u * pieces + arg[u]] = g[u]


# ----------------------------------------------------------------------------- dropout

def dropout(floating[::1] x, cnp.ndarray u, float keep, floating scale, floating[::1] out):
    """out = x * (scale if draw < keep else 0): the forward (x the input) and
    the backward (x the upstream gradient) of inverted dropout. u: the float32
    draws (1-D), or the uint32 words NumPy's float32 draws are made of (draw =
    (w >> 8) * 2**-24, so draw < keep exactly when (w >> 8) < ceil(keep *
    2**24)). The product is taken for dropped elements too, so NaN/inf
    propagate as in x * mask."""
    cdef Py_ssize_t i, n = x.shape[0]
    cdef floating zero = 0
    cdef float[::1] uf
    cdef cnp.uint32_t[::1] uw
    cdef Rows r
    cdef bint words = u.dtype.num == cnp.NPY_UINT32
    _nonempty("dropout", n)
    if u.ndim != 1 or u.shape[0] != n or out.shape[0] != n:
        raise ValueError("dropout: sizes do not match")
    if words:
        uw = u
        r.u = &uw[0]
    else:
        uf = u
        r.u = &uf[0]
    r.threshold = <cnp.uint32_t> ceil(<double> keep * 16777216.0)
    if floating is float:
        r.x, r.y, r.n, r.keep, r.scale = &x[0], &out[0], n, keep, scale
        with nogil:
            parallel_run(_dropout_words_f_band if words else _dropout_f_band, &r,
                         BAND_PARTS if n >= BAND_MIN else 1)
        return
    with nogil:
        if words:
            for i in range(n):
                out[i] = x[i] * (scale if (uw[i] >> 8) < r.threshold else zero)
        else:
            for i in range(n):
                out[i] = x[i] * (scale if uf[i] < keep else zero)
