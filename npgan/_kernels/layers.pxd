# The thread pool of layers.pyx, for the other kernel modules (update.pyx).
cdef int parallel_run(void (*fn)(void *, int, int) noexcept nogil, void *ctx,
                      int chunks) noexcept nogil
