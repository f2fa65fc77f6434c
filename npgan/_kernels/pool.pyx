# cython: language_level=3
"""The kernels' worker pool: big jobs split over threads, as many as BLAS has.

A job is fn(ctx, i, chunks) for every i < chunks (``parallel_run``, pool.pxd),
claimed one chunk at a time by the calling thread and this module's workers
(pool.h). The thread count is the one SciPy's OpenBLAS is configured with
(OPENBLAS_NUM_THREADS / OMP_NUM_THREADS, threadpoolctl, or
npgan.settings' ``blas_threads``), read at every call through the functions
given to ``set_blas_threading``; while a GEMM job runs, BLAS is pinned to one
thread (``pin_blas``) and restored after. Waiting threads spin for at most
``set_spin`` microseconds (default 1000: the gaps between a step's GEMMs),
then block, and a thread that is late to wake simply finds its chunks taken:
on a machine shared with other jobs a step slows down gracefully, where
BLAS's own spinning threads collapse (OpenBLAS with 2 threads on 2 busy
cores: several times slower than with 1). Without POSIX threads, without the
BLAS's thread-count functions, or with ``set_split(False)``, every job runs
on the caller and BLAS threads itself.
"""

cdef extern from "pool.h" nogil:
    int NPL_HAVE_POOL
    long long npl_spin_ns
    int npl_pinned_prev
    int npl_restore_blas
    void npl_init()
    void npl_blas_set(void (*set)(int) noexcept nogil, int n)
    int npl_pool_acquire()
    void npl_pool_release()
    int npl_pool_run(void (*fn)(void *, int, int) noexcept nogil, void *ctx, int chunks, int threads)


ctypedef int (*get_threads_t)() noexcept nogil
ctypedef void (*set_threads_t)(int) noexcept nogil

cdef enum:
    MAX_THREADS = 64

cdef get_threads_t _blas_get = NULL
cdef set_threads_t _blas_set = NULL
cdef bint _split = True
cdef bint _pool_threads = False          # this module threads the jobs (set_split, set_blas_threading)
cdef int _chunks_per_thread = 2

npl_init()                               # at import: no fork between a first job and the handlers


def set_blas_threading(size_t get_address, size_t set_address):
    """Give the addresses of the BLAS's ``int get_num_threads(void)`` and
    ``void set_num_threads(int)`` (0, 0: unknown; then no split)."""
    global _blas_get, _blas_set
    _blas_get = <get_threads_t> get_address
    _blas_set = <set_threads_t> set_address
    _update_pool_threads()


def set_split(bint on, int chunks_per_thread=0):
    """Split big jobs over this module's threads (True) or leave the
    threading to BLAS (False; then BLAS computes every product, npgan's own
    sgemm included: it has no threads of its own); optionally the GEMM bands
    per thread (default 2: a thread that is late finds work done by the
    others). Returns the previous (on, chunks_per_thread)."""
    global _split, _chunks_per_thread
    prev = (_split, _chunks_per_thread)
    _split = on
    _update_pool_threads()
    if chunks_per_thread > 0:
        _chunks_per_thread = chunks_per_thread
    return prev


def set_spin(double microseconds):
    """How long an idle pool thread (and a caller waiting for its helpers)
    spins before it blocks: short waits between GEMMs then cost no wake-up,
    longer ones no CPU. 0: always block. Returns the previous value."""
    global npl_spin_ns
    prev = npl_spin_ns / 1000.0
    npl_spin_ns = <long long> (max(microseconds, 0.0) * 1000)
    return prev


cdef void _update_pool_threads() noexcept:
    global _pool_threads
    _pool_threads = _split and NPL_HAVE_POOL and _blas_get != NULL and _blas_set != NULL


cdef bint pool_threads() noexcept nogil:
    """True if this module does the threading (split on, BLAS's count known)."""
    return _pool_threads


cdef int chunks_per_thread() noexcept nogil:
    return _chunks_per_thread


cpdef int split_threads() noexcept nogil:
    """How many threads a big job is computed on now: BLAS's thread count (1:
    no pool; a GEMM is then one BLAS call, threaded by BLAS itself)."""
    global npl_restore_blas
    if not _pool_threads:
        return 1
    if npl_restore_blas > 0:             # forked while another thread's job had BLAS at 1
        npl_blas_set(_blas_set, npl_restore_blas)
        npl_restore_blas = 0
    return max(1, min(_blas_get(), MAX_THREADS))


cdef bint acquire() noexcept nogil:
    """True if this thread may run a job now (else another one is: compute alone)."""
    return npl_pool_acquire()


cdef void release() noexcept nogil:
    npl_pool_release()


cdef int run(job_t fn, void *ctx, int chunks, int threads) noexcept nogil:
    """The job on the caller and up to threads-1 workers (pool acquired)."""
    return npl_pool_run(fn, ctx, chunks, threads)


cdef int pin_blas() noexcept nogil:
    """BLAS to one thread for a job (pool held); -> the count to give back."""
    global npl_pinned_prev
    cdef int prev = _blas_get()          # read under the pool: only its holder changes it
    npl_pinned_prev = prev               # first: a fork from now on restores it in the child
    npl_blas_set(_blas_set, 1)
    return prev


cdef void unpin_blas(int prev) noexcept nogil:
    global npl_pinned_prev
    npl_blas_set(_blas_set, prev)
    npl_pinned_prev = 0


cdef int parallel_run(job_t fn, void *ctx, int chunks) noexcept nogil:
    """fn(ctx, i, chunks) for every i < chunks, on this module's threads when
    the split is on and the pool is free (else all on the caller); returns
    after every call has finished."""
    cdef int i
    if chunks < 2 or split_threads() < 2 or not npl_pool_acquire():
        for i in range(chunks):
            fn(ctx, i, chunks)
        return 1
    npl_pool_run(fn, ctx, chunks, split_threads())
    npl_pool_release()
    return 0
