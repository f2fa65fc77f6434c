# The kernels' worker pool (pool.pyx), for the modules that split work over it
# (gemm, layers, update): cimport what is declared here.

ctypedef void (*job_t)(void *, int, int) noexcept nogil

cdef int parallel_run(job_t fn, void *ctx, int chunks) noexcept nogil
cpdef int split_threads() noexcept nogil
cdef bint pool_threads() noexcept nogil
cdef int chunks_per_thread() noexcept nogil
cdef bint acquire() noexcept nogil
cdef void release() noexcept nogil
cdef int run(job_t fn, void *ctx, int chunks, int threads) noexcept nogil
cdef int pin_blas() noexcept nogil
cdef void unpin_blas(int prev) noexcept nogil


cdef inline void band(Py_ssize_t total, int i, int parts, Py_ssize_t *lo,
                      Py_ssize_t *hi) noexcept nogil:
    """Band i of ``parts`` of range(total), edges on multiples of 16 (the last
    ends at total); a band may be empty."""
    lo[0] = (total * i // parts) // 16 * 16
    hi[0] = total if i == parts - 1 else (total * (i + 1) // parts) // 16 * 16
