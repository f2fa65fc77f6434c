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


def sgd_momentum(floating[::1] p, floating[::1] v, floating[::1] g, double lr, double mu,
                 bint nesterov):
    cdef Py_ssize_t i, n = p.shape[0]
    cdef floating lr_ = <floating> lr, mu_ = <floating> mu, vi, a, b
    if v.shape[0] != n or g.shape[0] != n:
        raise ValueError("sgd_momentum: parameter, velocity and gradient sizes differ")
    with nogil:
        if nesterov:
            for i in range(n):
                a = v[i] * mu_
                b = lr_ * g[i]
                vi = a - b
                v[i] = vi
                a = mu_ * vi
                p[i] = p[i] + (a - b)
        else:
            for i in range(n):
                a = v[i] * mu_
                b = lr_ * g[i]
                vi = a - b
                v[i] = vi
                p[i] = p[i] + vi
