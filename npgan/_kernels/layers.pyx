# cython: language_level=3
"""The passes around a linear layer's GEMM (gemm.pyx), each in one pass over memory.

* ``bias_act``: the GEMM's epilogue, y = act(y + b) in one pass over y
  (act: 0 none, 1 relu, 2 sigmoid, which also keeps the pre-activation).
* ``act_backward``: the backward prologue, g_pre = g * act'(.) and the bias
  gradient (column sums of g_pre, row by row as numpy.sum(axis=0)) in one pass.

They equal reference.py's activations and sums (tests/test_layer_ops.py).
Arrays arrive C-contiguous and of one float dtype (the wrappers in
``npgan._kernels.layer_ops`` make them so, or take the reference path); the
sizes are checked here (memory safety), empty arrays refused with a
ValueError. Loops run without the GIL; big float32 passes in column bands on
the pool's threads (pool.pyx), with the same bits as one pass; float32
sigmoid and exp from simd.h (as activations.pyx).
"""
cimport numpy as cnp
from cython cimport floating

from npgan._kernels.common cimport BAND_MIN, nonempty
from npgan._kernels.pool cimport band, parallel_run, split_threads

cnp.import_array()


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

    """
    void npl_bias_act_f(float *y, const float *b, Py_ssize_t n, Py_ssize_t m, Py_ssize_t ld, int act,
                        float *pre)
    void npl_act_backward_f(const float *g, const float *saved, Py_ssize_t n, Py_ssize_t m,
                            Py_ssize_t ld, int act,
                            float *gpre, float *gb)


# ----------------------------------------------------------------------------- activations

# float32 passes over (n, m) arrays of at least BAND_MIN elements run in bands
# of columns on the pool's threads: every element (and every column sum of
# act_backward, added row by row) is computed as in one pass, so the result is
# the same bits.


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
    nonempty("bias_act", n * m)
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
    nonempty("act_backward", n * m)
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
