# cython: language_level=3
"""Fused elementwise activations, forward and backward, in one pass each.

Each function equals its namesake in ``reference.py`` (the tests compare
them); sigmoid is simd.h's (float32: its polynomial exp, as the layers'
fused sigmoid), softplus and log-sigmoid use libm. Inputs: C-contiguous float32 or float64 arrays of one dtype and equal
shape (the Python wrappers in ``npgan._kernels`` make them so); the result is
a new array of that shape and dtype. Loops run without the GIL.
"""
cimport numpy as cnp
from cython cimport floating
from libc.math cimport exp, expf, log1p, log1pf, fabs, fabsf

cnp.import_array()

# sigmoid and its derivative: simd.h's, the same bits as the layers' fused
# epilogue (layers.pyx); float32 in clone loops like the layers' own
cdef extern from * nogil:
    """
    #include "simd.h"
    NPG_CLONES static void npa_sigmoid_f(const float *restrict x, float *restrict out, int64_t n) {
        for (int64_t i = 0; i < n; i++) out[i] = npg_sigmoid_f(x[i]);
    }
    NPG_CLONES static void npa_sigmoid_backward_f(const float *restrict g, const float *restrict x,
                                                  float *restrict out, int64_t n) {
        for (int64_t i = 0; i < n; i++) out[i] = g[i] * npg_sigmoid_grad_f(x[i]);
    }
    """
    void npa_sigmoid_f(const float *x, float *out, Py_ssize_t n)
    void npa_sigmoid_backward_f(const float *g, const float *x, float *out, Py_ssize_t n)
    double npg_sigmoid_d(double v)
    double npg_sigmoid_grad_d(double v)


cdef inline floating _exp_neg_abs(floating x) noexcept nogil:
    if floating is float:
        return expf(-fabsf(x))
    else:
        return exp(-fabs(x))


cdef inline floating _log1p(floating x) noexcept nogil:
    if floating is float:
        return log1pf(x)
    else:
        return log1p(x)


def sigmoid_forward(floating[::1] x, floating[::1] out):
    cdef Py_ssize_t i, n = x.shape[0]
    if n == 0:
        return
    with nogil:
        if floating is float:
            npa_sigmoid_f(&x[0], &out[0], n)
        else:
            for i in range(n):
                out[i] = npg_sigmoid_d(x[i])


def sigmoid_backward(floating[::1] g, floating[::1] x, floating[::1] out):
    cdef Py_ssize_t i, n = x.shape[0]
    if n == 0:
        return
    with nogil:
        if floating is float:
            npa_sigmoid_backward_f(&g[0], &x[0], &out[0], n)
        else:
            for i in range(n):
                out[i] = g[i] * npg_sigmoid_grad_d(x[i])


def relu_forward(floating[::1] x, floating[::1] out):
    cdef Py_ssize_t i, n = x.shape[0]
    with nogil:
        for i in range(n):
            out[i] = 0 if x[i] <= 0 else x[i]      # NaN stays NaN, as numpy.maximum


def relu_backward(floating[::1] g, floating[::1] y, floating[::1] out):
    cdef Py_ssize_t i, n = y.shape[0]
    with nogil:
        for i in range(n):
            out[i] = g[i] if y[i] > 0 else 0


def softplus_forward(floating[::1] x, floating[::1] out):
    cdef Py_ssize_t i, n = x.shape[0]
    with nogil:
        for i in range(n):
            out[i] = (x[i] if x[i] > 0 else 0) + _log1p(_exp_neg_abs(x[i]))


def log_sigmoid_forward(floating[::1] x, floating[::1] out):
    cdef Py_ssize_t i, n = x.shape[0]
    with nogil:
        for i in range(n):
            out[i] = (x[i] if x[i] < 0 else 0) - _log1p(_exp_neg_abs(x[i]))


def sigmoid_times(floating[::1] g, floating[::1] x, int sign, floating[::1] out):
    """out = g * sigmoid(sign * x): softplus' (sign +1) and log-sigmoid' (-1)."""
    cdef Py_ssize_t i, n = x.shape[0]
    cdef floating e, xi
    with nogil:
        for i in range(n):
            xi = sign * x[i]
            e = _exp_neg_abs(xi)
            if xi >= 0:
                out[i] = g[i] / (1 + e)
            else:
                out[i] = g[i] * e / (1 + e)
