# cython: language_level=3
"""Optimizer updates in one pass over the parameters (in place).

``sgd_momentum`` equals ``reference.sgd_momentum`` (pylearn2's rule, see
npgan/optim.py): v <- mu v - lr g; p <- p + v, or, Nesterov,
p <- p + mu v - lr g with the new v. The arithmetic is done in the arrays'
dtype, operation by operation as NumPy does it, so the results are the same
bits as the reference's ``v *= mu; v -= lr * g; p += v`` (without its
temporary ``lr * g`` and its three further passes over memory). Arrays of
at least PARALLEL_MIN elements are cut into bands updated at once on the
threads of the kernels' pool (pool.pyx) (an element's result does not depend on which
thread computes it). ``add``: out = a + b the same way, for the gradients a
leaf collects from several uses (Tensor.backward). ``all_finite``: whether an
array holds no NaN or inf, read in bands the same way (the trainer's check of
every gradient before an update: a max over the exponent bits, branch-free).
"""
from cython cimport floating

from npgan._kernels.pool cimport band, parallel_run

cdef extern from * nogil:
    """
    #include "simd.h"
    /* restrict pointers and no branches: vectorized. Each product is rounded
       before the difference (FMA contraction off), as NumPy's separate ops do. */
    #if defined(__GNUC__) && !defined(__clang__)
    #pragma GCC optimize ("fp-contract=off")
    #endif
    #define NPU_SGD(T, NAME) \
    NPG_CLONES static void NAME(T *restrict p, T *restrict v, const T *restrict g, int64_t n, \
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
    #define NPU_ADD(T, NAME) \
    NPG_CLONES static void NAME(const T *restrict a, const T *restrict b, T *restrict out, \
                                int64_t n) { \
        for (int64_t i = 0; i < n; i++) out[i] = a[i] + b[i]; \
    }
    NPU_ADD(float, npu_add_f)
    NPU_ADD(double, npu_add_d)
    /* 1 if no element of a (n floats or doubles, as their bits) is NaN or inf:
       those, and only those, have every exponent bit set. */
    #define NPU_FINITE(U, MASK, NAME) \
    NPG_CLONES static int NAME(const void *restrict bits, int64_t n) { \
        const U *restrict a = (const U *) bits; \
        U top = 0; \
        for (int64_t i = 0; i < n; i++) { U e = a[i] & MASK; top = top > e ? top : e; } \
        return top != MASK; \
    }
    NPU_FINITE(uint32_t, 0x7f800000u, npu_finite_f)
    NPU_FINITE(uint64_t, 0x7ff0000000000000ull, npu_finite_d)
    """
    void npu_sgd_f(float *p, float *v, const float *g, Py_ssize_t n, float lr, float mu, int nesterov)
    void npu_sgd_d(double *p, double *v, const double *g, Py_ssize_t n, double lr, double mu,
                   int nesterov)
    void npu_add_f(const float *a, const float *b, float *out, Py_ssize_t n)
    void npu_add_d(const double *a, const double *b, double *out, Py_ssize_t n)
    int npu_finite_f(const void *a, Py_ssize_t n)
    int npu_finite_d(const void *a, Py_ssize_t n)


cdef enum:
    PARALLEL_MIN = 1 << 16               # elements: smaller arrays are updated in one pass


# One pass in bands: the SGD update (p, v in place, g read), or out = a + b
# (the gradients a leaf collects from several uses: Tensor.backward).

cdef struct Pass:
    void *param                          # SGD: the parameter (updated)
    void *v                              # SGD: the velocity (updated)
    const void *g                        # SGD: the gradient
    void *out                            # add: out = a + b
    const void *a
    const void *b
    Py_ssize_t n
    double lr, mu
    int nesterov, itemsize, add


cdef void _band(void *ctx, int i, int parts) noexcept nogil:
    cdef Pass *s = <Pass *> ctx
    cdef Py_ssize_t lo, hi
    band(s.n, i, parts, &lo, &hi)
    if hi <= lo:
        return
    if s.add and s.itemsize == 4:
        npu_add_f(<const float *> s.a + lo, <const float *> s.b + lo, <float *> s.out + lo, hi - lo)
    elif s.add:
        npu_add_d(<const double *> s.a + lo, <const double *> s.b + lo, <double *> s.out + lo,
                  hi - lo)
    elif s.itemsize == 4:
        npu_sgd_f(<float *> s.param + lo, <float *> s.v + lo, <const float *> s.g + lo, hi - lo,
                  <float> s.lr, <float> s.mu, s.nesterov)
    else:
        npu_sgd_d(<double *> s.param + lo, <double *> s.v + lo, <const double *> s.g + lo, hi - lo,
                  s.lr, s.mu, s.nesterov)


cdef bint _sizes(str what, Py_ssize_t n, Py_ssize_t n1, Py_ssize_t n2) except -1:
    """ValueError (``what``) unless n == n1 == n2; -> whether there is work (n > 0)."""
    if n1 != n or n2 != n:
        raise ValueError(what)
    return n > 0


cdef void _run(Pass *s, Py_ssize_t n, int itemsize) noexcept:
    s.n, s.itemsize = n, itemsize
    with nogil:
        parallel_run(_band, s, 1 if n < PARALLEL_MIN else 4)


def sgd_momentum(floating[::1] p, floating[::1] v, floating[::1] g, double lr, double mu,
                 bint nesterov):
    """In place: the SGD update of the module docstring (p, v updated; g read)."""
    cdef Pass s
    if _sizes("sgd_momentum: parameter, velocity and gradient sizes differ",
              p.shape[0], v.shape[0], g.shape[0]):
        s.param, s.v, s.g, s.lr, s.mu, s.nesterov, s.add = &p[0], &v[0], &g[0], lr, mu, nesterov, 0
        _run(&s, p.shape[0], sizeof(floating))


def add(floating[::1] a, floating[::1] b, floating[::1] out):
    """out = a + b (out must not overlap a or b)."""
    cdef Pass s
    if _sizes("add: sizes differ", a.shape[0], b.shape[0], out.shape[0]):
        s.out, s.a, s.b, s.add = &out[0], &a[0], &b[0], 1
        _run(&s, a.shape[0], sizeof(floating))


cdef enum:
    FINITE_PARTS = 4                     # bands of a big array checked at once


cdef struct Check:
    const void *a
    Py_ssize_t n
    int itemsize
    int ok[FINITE_PARTS]


cdef void _check_band(void *ctx, int i, int parts) noexcept nogil:
    cdef Check *s = <Check *> ctx
    cdef Py_ssize_t lo, hi
    band(s.n, i, parts, &lo, &hi)
    if hi <= lo:
        s.ok[i] = 1
    elif s.itemsize == 4:
        s.ok[i] = npu_finite_f(<const char *> s.a + 4 * lo, hi - lo)
    else:
        s.ok[i] = npu_finite_d(<const char *> s.a + 8 * lo, hi - lo)


def all_finite(floating[::1] a):
    """True if the contiguous array ``a`` holds no NaN or inf."""
    cdef Check s
    cdef int i, parts = 1 if a.shape[0] < PARALLEL_MIN else FINITE_PARTS
    if a.shape[0] == 0:
        return True
    s.a, s.n, s.itemsize = &a[0], a.shape[0], sizeof(floating)
    for i in range(FINITE_PARTS):
        s.ok[i] = 1
    with nogil:
        parallel_run(_check_band, &s, parts)
    for i in range(parts):
        if not s.ok[i]:
            return False
    return True
