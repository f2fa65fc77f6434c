# cython: language_level=3
"""Maxout: the max over consecutive groups of ``pieces`` features, and its scatter back.

``maxout_forward`` gives the max with its argmax as uint8 (first maximum, or
first NaN, as numpy.argmax); ``maxout_backward`` writes the gradient to the
argmax and the zeros in one pass. Each equals its namesake in ``reference.py``
bit for bit (tests/test_layer_ops.py). Arrays arrive flat, C-contiguous, of
one float dtype (npgan._kernels.layer_ops); sizes are checked here, empty
arrays refused. Big float32 passes run in bands of units on the pool.
"""
from cython cimport floating
from libc.stdint cimport uint8_t
from libc.string cimport memset

from npgan._kernels.common cimport BAND_MIN, BAND_PARTS, nonempty
from npgan._kernels.pool cimport band, parallel_run


cdef extern from * nogil:
    """
    #include "simd.h"
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
    """
    int npl_maxout_f(const float *x, Py_ssize_t units, int pieces, float *y, uint8_t *arg)
    int npl_maxout_d(const double *x, Py_ssize_t units, int pieces, double *y, uint8_t *arg)


cdef struct Rows:
    const void *x
    void *y
    uint8_t *arg
    Py_ssize_t n                         # units
    int pieces
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
                          uint8_t *arg) noexcept nogil:
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


def maxout_forward(floating[::1] x, int pieces, floating[::1] y, uint8_t[::1] arg):
    """y[u] = max(x[u*pieces : (u+1)*pieces]), arg[u] = its first argmax (or
    first NaN), for the flat C-order data of (..., units*pieces)."""
    cdef Py_ssize_t u, k, base, units = y.shape[0]
    cdef floating best, v
    cdef int b, nan
    nonempty("maxout_forward", units)
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
                arg[u] = <uint8_t> b


def maxout_backward(floating[::1] g, uint8_t[::1] arg, int pieces, floating[::1] gx):
    """gx[u*pieces + k] = g[u] if k == arg[u] else 0: zeros, then one write per unit."""
    cdef Py_ssize_t u, units = g.shape[0]
    nonempty("maxout_backward", units)
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
