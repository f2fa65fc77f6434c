# The thread pool of layers.pyx, for the other kernel modules (update.pyx).
cdef int parallel_run(void (*fn)(void *, int, int) noexcept nogil, void *ctx,
                      int chunks) noexcept nogil


cdef inline void band(Py_ssize_t total, int i, int parts, Py_ssize_t *lo,
                      Py_ssize_t *hi) noexcept nogil:
    """Band i of ``parts`` of range(total), edges on multiples of 16 (the last
    ends at total); a band may be empty."""
    lo[0] = (total * i // parts) // 16 * 16
    hi[0] = total if i == parts - 1 else (total * (i + 1) // parts) // 16 * 16
