# cython: language_level=3
"""Optimizer updates in one pass over the parameters (in place).

``sgd_momentum`` equals ``reference.sgd_momentum`` (pylearn2's rule, see
npgan/optim.py): v <- mu v - lr g; p <- p + v, or, Nesterov,
p <- p + mu v - lr g with the new v. The arithmetic is done in the arrays'
dtype, operation by operation as NumPy does it, so the results are the same
bits as the reference's ``v *= mu; v -= lr * g; p += v`` (without its
temporary ``lr * g`` and its three further passes over memory).
"""
from cython cimport floating

cdef extern from * nogil:
    """
    #include <stdint.h>
    #if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && defined(__linux__)
    #define NPU_CLONES __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
    #else
    #define NPU_CLONES
    #endif
    /* restrict pointers and no branches: vectorized. Each product is rounded
       before the difference (FMA contraction off), as NumPy's separate ops do. */
    #if defined(__GNUC__) && !defined(__clang__)
    #pragma GCC optimize ("fp-contract=off")
    #endif
    #define NPU_SGD(T, NAME) \
    NPU_CLONES static void NAME(T *restrict p, T *restrict v, const T *restrict g, int64_t n, \
                                T lr, T mu, int nesterov) { \
        if (nesterov) { \
            for (int64_t i = 0; i < n; i++) { \
                T a = v[i] * mu, b = lr * g[i]; \
                T vi = a - b; \
                v[i] = vi; \
                T c = mu * vi; \
                p[i] = p[i] + (c - b); \
            } \
        } else { \
            for (int64_t i = 0; i < n; i++) { \
                T a = v[i] * mu, b = lr * g[i]; \
                T vi = a - b; \
                v[i] = vi; \
                p[i] = p[i] + vi; \
            } \
        } \
    }
    NPU_SGD(float, npu_sgd_f)
    NPU_SGD(double, npu_sgd_d)
    """
    void npu_sgd_f(float *p, float *v, const float *g, Py_ssize_t n, float lr, float mu, int nesterov)
    void npu_sgd_d(double *p, double *v, const double *g, Py_ssize_t n, double lr, double mu,
                   int nesterov)


def sgd_momentum(floating[::1] p, floating[::1] v, floating[::1] g, double lr, double mu,
                 bint nesterov):
    cdef Py_ssize_t n = p.shape[0]
    if v.shape[0] != n or g.shape[0] != n:
        raise ValueError("sgd_momentum: parameter, velocity and gradient sizes differ")
    if n == 0:
        return
    with nogil:
        if floating is float:
            npu_sgd_f(&p[0], &v[0], &g[0], n, <float> lr, <float> mu, nesterov)
        else:
            npu_sgd_d(&p[0], &v[0], &g[0], n, lr, mu, nesterov)
