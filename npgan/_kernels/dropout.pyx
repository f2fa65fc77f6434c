# cython: language_level=3
"""Inverted dropout from the uniform draws: out = x * (scale if draw < keep else 0).

The same pass is the forward (x the input) and the backward (x the upstream
gradient). Equals ``reference.dropout_forward`` bit for bit
(tests/test_layer_ops.py). Arrays arrive flat, C-contiguous, of one float
dtype (npgan._kernels.layer_ops); sizes are checked here, empty arrays
refused. Big float32 passes run in bands on the pool.
"""
cimport numpy as cnp
from cython cimport floating
from libc.math cimport ceil

from npgan._kernels.common cimport BAND_MIN, BAND_PARTS, nonempty
from npgan._kernels.pool cimport band, parallel_run

cnp.import_array()


cdef extern from * nogil:
    """
    #include "simd.h"
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
    void npl_dropout_f(const float *x, const float *u, float keep, float scale, float *out,
                       Py_ssize_t n)
    void npl_dropout_words_f(const float *x, const cnp.uint32_t *w, cnp.uint32_t threshold,
                             float scale, float *out, Py_ssize_t n)


cdef struct Rows:
    const void *x
    void *y
    const void *u                        # the draws (or their words)
    Py_ssize_t n                         # elements
    float keep, scale
    cnp.uint32_t threshold


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
    nonempty("dropout", n)
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
