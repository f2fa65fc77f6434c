# What the kernel modules share (inline: nothing to import at run time).

cdef enum:
    BAND_MIN = 1 << 15                   # elements: smaller float32 passes run in one band
    BAND_PARTS = 4                       # bands of a big elementwise pass


cdef inline int nonempty(str op, Py_ssize_t n) except -1:
    """ValueError for an empty operand (the wrappers in npgan._kernels send
    empty batches to the reference)."""
    if n == 0:
        raise ValueError(f"{op}: empty batch (or an empty operand); the compiled kernels take "
                         "only non-empty arrays (npgan._kernels' wrappers send empty ones to the "
                         "reference)")
    return 0
