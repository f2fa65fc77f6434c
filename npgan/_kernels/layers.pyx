# cython: language_level=3
"""Layer kernels: GEMM (straight to BLAS, or npgan's own), and the one-pass loops around it.

* ``gemm(a, b, c, beta)``: c = a @ b + beta * c for row-major ``c`` through
  SciPy's BLAS (``scipy.linalg.cython_blas``; importing this module fails
  without SciPy, and npgan then uses its NumPy references). ``a`` and ``b`` may
  each be C- or F-contiguous (a transposed view costs no copy): row-major
  C = A B is column-major C^T = B^T A^T, so the operands are handed over
  swapped, with 'N' or 'T' according to their layout. A big product is cut
  into as many bands as BLAS has threads, computed at once by single-threaded
  BLAS calls on workers that spin briefly, then block (see "The split").
  float32 products go to npgan's own GEMM instead (``sgemm.h``, AVX-512:
  ``set_own_sgemm``, the default where the CPU has it) when they suit it.
* ``gemm2``: two independent products at once, a thread each (a linear
  layer's backward pair g W^T and x^T g); ``parallel_run`` (layers.pxd) lends
  the same pool to other kernels (update.pyx); ``set_gemm`` swaps SciPy's
  BLAS for another library's sgemm_/dgemm_ (MKL: npgan._kernels.use_blas).
* ``bias_act``: the GEMM's epilogue, y = act(y + b) in one pass over y
  (act: 0 none, 1 relu, 2 sigmoid, which also keeps the pre-activation); big
  float32 arrays in column bands on the pool, as ``act_backward``.
* ``act_backward``: the backward prologue, g_pre = g * act'(.) and the bias
  gradient (column sums of g_pre, row by row as numpy.sum(axis=0)) in one pass.
* ``maxout_forward`` / ``maxout_backward``: max over consecutive groups of
  ``pieces`` with the argmax as uint8 (first maximum, or first NaN, as
  numpy.argmax), and the scatter back in one pass that also writes the zeros.
* ``dropout``: out = x * (scale if u < keep else 0) from the uniform draws u
  (float32, from the caller's numpy Generator); forward and backward alike.
  or from the uint32 words those draws are made of.

Each equals its namesake in ``reference.py`` (tests/test_layer_kernels.py).
Empty arrays are refused with a ValueError. Arrays arrive C-contiguous and
of one float dtype (the wrappers in ``npgan._kernels`` make them so, or take
the reference path); loops run without the GIL; GEMMs and big passes use as
many threads as SciPy's BLAS is set to (OPENBLAS_NUM_THREADS / OMP_NUM_THREADS
/ threadpoolctl).
"""
cimport numpy as cnp
from cython cimport floating
from libc.math cimport ceil, exp, fabs
from libc.string cimport memset
from scipy.linalg.cython_blas cimport sgemm, dgemm

cnp.import_array()


cdef inline int _nonempty(str op, Py_ssize_t n) except -1:
    if n == 0:
        raise ValueError(f"{op}: empty batch (or an empty operand); the compiled kernels take "
                         "only non-empty arrays (npgan._kernels' wrappers send empty ones to the "
                         "reference)")
    return 0

cdef enum:
    NONE = 0
    RELU = 1
    SIGMOID = 2


# ----------------------------------------------------------------------------- GEMM
# One BLAS call, in BLAS's column-major terms: the row-major product C = A B
# (M x N) is C^T = op(B^T) op(A^T), so B goes first. ``tb``/``ta`` are 'N' when
# the row-major operand is C-contiguous (ld = its columns) and 'T' when it is
# F-contiguous (ld = its rows).

cdef struct Gemm:
    char tb, ta
    int n, m, k, ldb, lda, ldc          # n, m: columns and rows of the row-major C
    double alpha, beta
    char *b
    char *a
    char *c
    int itemsize                         # 4: sgemm, 8: dgemm


# The BLAS: SciPy's (cython_blas) unless set_gemm hands over another library's
# Fortran sgemm_/dgemm_ (same signature), e.g. MKL's (npgan._kernels.use_blas).
ctypedef void (*sgemm_t)(char *, char *, int *, int *, int *, float *, float *, int *, float *,
                         int *, float *, float *, int *) noexcept nogil
ctypedef void (*dgemm_t)(char *, char *, int *, int *, int *, double *, double *, int *, double *,
                         int *, double *, double *, int *) noexcept nogil
cdef sgemm_t _sgemm = sgemm
cdef dgemm_t _dgemm = dgemm

# npgan's own float32 GEMM (sgemm.h: AVX-512), used by _run in place of the
# BLAS's sgemm when set_own_sgemm(True) and the product suits it.
cdef extern from "sgemm.h" nogil:
    enum:
        NPG_MR, NPG_NR, NPG_KC, NPG_MC
    int npg_sgemm_supported()
    int npg_sgemm(long m, long n, long k, const float *a, long rsa, long csa, const float *b,
                  long rsb, long csb, float *c, long ldc, int add)

cdef bint _own_sgemm = False
cdef bint _pool_threads = False          # this module threads GEMMs (set_split, set_blas_threading)
cdef enum:
    OWN_MIN_N = 16                       # narrower products (D's 1-unit output layer): BLAS
    OWN_MAX_M = 2048                     # taller bands (G forward on 10k z): BLAS, ~8% faster there


def own_sgemm_supported():
    """True if this machine can run npgan's own float32 GEMM (AVX-512F, x86-64)."""
    return bool(npg_sgemm_supported())


def own_sgemm_blocking():
    """(MR, NR, KC, MC) of npgan's own GEMM: tile rows and columns, the k
    block (each element of C sums a block's products in order, FMA by FMA,
    then adds the block to C) and the row block."""
    return (NPG_MR, NPG_NR, NPG_KC, NPG_MC)


def own_sgemm_active():
    """True if float32 products go to npgan's own GEMM now (switched on, and
    this module does the threading)."""
    return bool(_own_sgemm and _pool_threads)


def set_own_sgemm(bint on):
    """float32 products through npgan's own GEMM (sgemm.h) instead of the
    BLAS's sgemm (float64 always BLAS). Raises RuntimeError where the machine
    lacks AVX-512. Returns the previous setting."""
    global _own_sgemm
    if on and not npg_sgemm_supported():
        raise RuntimeError("npgan's own sgemm needs an x86-64 CPU with AVX-512F")
    prev = _own_sgemm
    _own_sgemm = on
    return prev


cdef inline bint _run_own(Gemm *g) noexcept nogil:
    """g by sgemm.h if it is switched on, this module does the threading (see
    "The split"; otherwise BLAS threads itself) and g suits it (alpha 1, beta 0
    or 1, OWN_MIN_N columns or more, OWN_MAX_M rows or fewer); False if it did not run."""
    cdef long rsa, csa, rsb, csb
    if (not _own_sgemm or not _pool_threads or g.n < OWN_MIN_N or g.m > OWN_MAX_M or g.alpha != 1.0
            or (g.beta != 0.0 and g.beta != 1.0)):
        return False
    if g.ta == b'N':                     # row-major A, lda apart; else its transpose's storage
        rsa, csa = g.lda, 1
    else:
        rsa, csa = 1, g.lda
    if g.tb == b'N':
        rsb, csb = g.ldb, 1
    else:
        rsb, csb = 1, g.ldb
    return npg_sgemm(g.m, g.n, g.k, <float *> g.a, rsa, csa, <float *> g.b, rsb, csb,
                     <float *> g.c, g.ldc, g.beta == 1.0) == 0


def set_gemm(size_t sgemm_address, size_t dgemm_address):
    """Compute products with the Fortran ``sgemm_``/``dgemm_`` at these
    addresses (both 0: SciPy's BLAS again). The library must be thread-safe
    and single-threaded (this module does the threading). Not while a product
    is running."""
    global _sgemm, _dgemm
    if (sgemm_address == 0) != (dgemm_address == 0):
        raise ValueError("set_gemm: give both addresses, or neither")
    _sgemm = <sgemm_t> sgemm_address if sgemm_address else sgemm
    _dgemm = <dgemm_t> dgemm_address if dgemm_address else dgemm


cdef void _run(Gemm *g) noexcept nogil:
    cdef float sa = <float> g.alpha, sb = <float> g.beta
    if g.itemsize == 4 and _run_own(g):
        return
    if g.itemsize == 4:
        _sgemm(&g.tb, &g.ta, &g.n, &g.m, &g.k, &sa, <float *> g.b, &g.ldb, <float *> g.a, &g.lda,
               &sb, <float *> g.c, &g.ldc)
    else:
        _dgemm(&g.tb, &g.ta, &g.n, &g.m, &g.k, &g.alpha, <double *> g.b, &g.ldb, <double *> g.a,
               &g.lda, &g.beta, <double *> g.c, &g.ldc)


cdef Gemm _part(Gemm *g, int i, int parts, bint by_columns) noexcept nogil:
    """Block i of ``parts`` of g: a band of C's columns (or rows), edges on
    multiples of 16 elements; the operand it needs is offset to match."""
    cdef Gemm p = g[0]
    cdef Py_ssize_t lo, hi
    band(g.n if by_columns else g.m, i, parts, &lo, &hi)
    if by_columns:                       # C[:, lo:hi] = A B[:, lo:hi]
        p.n = hi - lo
        p.b = g.b + <long> lo * (1 if g.tb == b'N' else g.ldb) * g.itemsize
        p.c = g.c + <long> lo * g.itemsize
    else:                                # C[lo:hi] = A[lo:hi] B
        p.m = hi - lo
        p.a = g.a + <long> lo * (g.lda if g.ta == b'N' else 1) * g.itemsize
        p.c = g.c + <long> lo * g.ldc * g.itemsize
    return p


# The split: a GEMM big enough is cut into bands of C, ``chunks_per_thread``
# per thread, that the calling thread and this module's workers claim one at a
# time and compute with single-threaded BLAS calls, where the thread count is
# the one BLAS is configured with (OPENBLAS_NUM_THREADS / OMP_NUM_THREADS, or
# threadpoolctl at run time), read at every call; BLAS is set to 1 thread for
# the duration and restored. Waiting threads spin for at most set_spin()
# microseconds (default 1000: the gaps between a step's GEMMs, its Python and
# elementwise work between them), then block
# (condition variables), and a thread that is late to wake simply finds its bands taken:
# on a machine shared with other jobs a step slows down gracefully, where
# BLAS's own spinning threads collapse (OpenBLAS with 2 threads on 2 busy
# cores: several times slower than with 1). Needs POSIX threads and the BLAS's
# thread-count functions (``set_blas_threading``); without them, or with
# set_split(False), BLAS threads itself.

cdef extern from * nogil:
    """
    #if defined(_WIN32)
    #define NPL_HAVE_POOL 0
    static long long npl_spin_ns = 0;
    static int npl_pinned_prev = 0, npl_restore_blas = 0;
    static void npl_init(void) {}
    static void npl_blas_set(void (*set)(int), int n) { set(n); }
    static int npl_pool_acquire(void) { return 0; }
    static void npl_pool_release(void) {}
    static int npl_pool_run(void (*fn)(void *, int, int), void *ctx, int chunks, int threads) {
        for (int i = 0; i < chunks; i++) fn(ctx, i, chunks);
        return 1;
    }
    #else
    #define NPL_HAVE_POOL 1
    #include <pthread.h>
    #include <stdatomic.h>

    /* A job is fn(ctx, i, chunks) for i < chunks. Chunk indices are claimed
       from npl_next, which holds (job number << 24) | next index, by
       compare-and-swap, so a worker still holding an old job can never claim
       (or spend) an index of the next one. The caller waits until npl_done
       counts every chunk of its job, so none is still running afterwards. */
    static pthread_mutex_t npl_caller = PTHREAD_MUTEX_INITIALIZER;   /* one job at a time */
    static pthread_mutex_t npl_mu = PTHREAD_MUTEX_INITIALIZER;
    static pthread_cond_t npl_work = PTHREAD_COND_INITIALIZER;
    static pthread_cond_t npl_finished = PTHREAD_COND_INITIALIZER;
    static _Atomic long long npl_job = 0;  /* job number: changed under npl_mu, read also outside */
    static void (*npl_fn)(void *, int, int);
    static void *npl_ctx;
    static int npl_chunks, npl_helpers;    /* chunks of the job, workers that join it */
    static int npl_workers = 0;            /* threads started */
    static _Atomic long long npl_next;
    static _Atomic int npl_done;
    static int npl_atfork = 0;
    static long long npl_spin_ns = 1000000; /* how long a waiting thread spins before it blocks */
    static int npl_pinned_prev = 0;        /* BLAS's thread count while a job has it at 1, else 0 */
    static int npl_restore_blas = 0;       /* in a forked child: give BLAS this count back */

    #include <time.h>
    static inline long long npl_now_ns(void) {
        struct timespec t;
        clock_gettime(CLOCK_MONOTONIC, &t);
        return (long long)t.tv_sec * 1000000000LL + t.tv_nsec;
    }
    static inline void npl_relax(void) {
    #if defined(__x86_64__) || defined(__i386__)
        __builtin_ia32_pause();
    #endif
    }
    /* Spin while ``cond`` holds, for at most npl_spin_ns; the caller then
       checks (and waits) under the mutex as before. */
    #define NPL_SPIN_WHILE(cond) do {                                         \
        if (npl_spin_ns > 0) {                                                \
            long long end_ = npl_now_ns() + npl_spin_ns;                      \
            for (int i_ = 0; (cond); i_++) {                                  \
                npl_relax();                                                  \
                if ((i_ & 63) == 63 && npl_now_ns() > end_) break;            \
            }                                                                 \
        }                                                                     \
    } while (0)

    static int npl_claim(long long job, int chunks) {
        long long cur = atomic_load(&npl_next);
        for (;;) {
            if ((cur >> 24) != job || (int)(cur & 0xffffff) >= chunks) return -1;
            if (atomic_compare_exchange_weak(&npl_next, &cur, cur + 1)) return (int)(cur & 0xffffff);
        }
    }

    static void npl_work_on(long long job, void (*fn)(void *, int, int), void *ctx, int chunks) {
        int i;
        while ((i = npl_claim(job, chunks)) >= 0) {
            fn(ctx, i, chunks);
            if (atomic_fetch_add(&npl_done, 1) + 1 == chunks) {
                pthread_mutex_lock(&npl_mu);
                pthread_cond_broadcast(&npl_finished);
                pthread_mutex_unlock(&npl_mu);
            }
        }
    }

    static void *npl_worker(void *arg) {
        int id = (int)(intptr_t)arg;
        pthread_mutex_lock(&npl_mu);
        long long seen = npl_job;
        for (;;) {
            if (npl_job == seen) {                      /* spin a little, then block */
                pthread_mutex_unlock(&npl_mu);
                NPL_SPIN_WHILE(atomic_load(&npl_job) == seen);
                pthread_mutex_lock(&npl_mu);
            }
            while (npl_job == seen) pthread_cond_wait(&npl_work, &npl_mu);
            seen = npl_job;
            if (id >= npl_helpers) continue;            /* fewer threads wanted now */
            void (*fn)(void *, int, int) = npl_fn;
            void *ctx = npl_ctx;
            int chunks = npl_chunks;
            pthread_mutex_unlock(&npl_mu);
            npl_work_on(seen, fn, ctx, chunks);
            pthread_mutex_lock(&npl_mu);
        }
        return NULL;
    }

    /* fork(): the child has only the thread that forked. No worker survives,
       and a lock or condition held by another thread would stay so for ever:
       all start over. A job another thread was running had BLAS at 1 thread;
       its count is restored at the child's next use of the pool (not here:
       only async-signal-safe work belongs in a fork handler). */
    static void npl_child_after_fork(void) {
        pthread_mutex_t m = PTHREAD_MUTEX_INITIALIZER;
        pthread_cond_t c = PTHREAD_COND_INITIALIZER;
        npl_caller = m; npl_mu = m; npl_work = c; npl_finished = c;
        npl_workers = 0;
        npl_restore_blas = npl_pinned_prev;
        npl_pinned_prev = 0;
    }

    /* BLAS's set_num_threads under a lock that fork() takes first (prepare
       handler): OpenBLAS's own lock, taken inside it, would otherwise be
       inherited held by a child forked meanwhile, and the child's next
       threaded BLAS call would wait for it for ever. */
    static pthread_mutex_t npl_blas_mu = PTHREAD_MUTEX_INITIALIZER;
    static void npl_blas_set(void (*set)(int), int n) {
        pthread_mutex_lock(&npl_blas_mu);
        set(n);
        pthread_mutex_unlock(&npl_blas_mu);
    }
    static void npl_before_fork(void) { pthread_mutex_lock(&npl_blas_mu); }
    static void npl_parent_after_fork(void) { pthread_mutex_unlock(&npl_blas_mu); }
    static void npl_child_after_fork_all(void) {
        pthread_mutex_t m = PTHREAD_MUTEX_INITIALIZER;
        npl_blas_mu = m;
        npl_child_after_fork();
    }

    /* at import, so that no fork can come between a first job and the handlers */
    static void npl_init(void) {
        if (!npl_atfork) {
            pthread_atfork(npl_before_fork, npl_parent_after_fork, npl_child_after_fork_all);
            npl_atfork = 1;
        }
    }

    /* 1 if this thread may run a job now (else another one is: compute alone) */
    static int npl_pool_acquire(void) { return pthread_mutex_trylock(&npl_caller) == 0; }
    static void npl_pool_release(void) { pthread_mutex_unlock(&npl_caller); }

    /* Run a job on the caller and up to threads-1 workers (pool acquired). */
    static int npl_pool_run(void (*fn)(void *, int, int), void *ctx, int chunks, int threads) {
        pthread_mutex_lock(&npl_mu);
        while (npl_workers < threads - 1) {
            pthread_t t;
            pthread_attr_t attr;
            pthread_attr_init(&attr);
            pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
            int err = pthread_create(&t, &attr, npl_worker, (void *)(intptr_t)npl_workers);
            pthread_attr_destroy(&attr);
            if (err) break;                             /* go on with fewer */
            npl_workers++;
        }
        npl_fn = fn; npl_ctx = ctx; npl_chunks = chunks;
        npl_helpers = threads - 1 < npl_workers ? threads - 1 : npl_workers;
        atomic_store(&npl_done, 0);
        long long job = ++npl_job;
        atomic_store(&npl_next, job << 24);
        pthread_cond_broadcast(&npl_work);
        pthread_mutex_unlock(&npl_mu);
        npl_work_on(job, fn, ctx, chunks);
        NPL_SPIN_WHILE(atomic_load(&npl_done) < chunks);
        pthread_mutex_lock(&npl_mu);
        while (atomic_load(&npl_done) < chunks) pthread_cond_wait(&npl_finished, &npl_mu);
        pthread_mutex_unlock(&npl_mu);
        return npl_helpers + 1;
    }
    #endif
    """
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
    SPLIT_MIN_WORK = 1 << 22             # M*N*K below this: one call (the sync would cost more)

cdef get_threads_t _blas_get = NULL
cdef set_threads_t _blas_set = NULL
cdef bint _split = True
cdef int _chunks_per_thread = 2


def set_blas_threading(size_t get_address, size_t set_address):
    """Give the addresses of the BLAS's ``int get_num_threads(void)`` and
    ``void set_num_threads(int)`` (0, 0: unknown; then no split)."""
    global _blas_get, _blas_set
    _blas_get = <get_threads_t> get_address
    _blas_set = <set_threads_t> set_address
    _update_pool_threads()


def set_split(bint on, int chunks_per_thread=0):
    """Split big GEMMs over this module's threads (True) or leave the
    threading to BLAS (False; then BLAS computes every product, npgan's own
    sgemm included: it has no threads of its own); optionally the bands per thread (default 2:
    a thread that is late finds work done by the others). Returns the
    previous (on, chunks_per_thread)."""
    global _split, _chunks_per_thread
    prev = (_split, _chunks_per_thread)
    _split = on
    _update_pool_threads()
    if chunks_per_thread > 0:
        _chunks_per_thread = chunks_per_thread
    return prev


cdef void _update_pool_threads() noexcept:
    global _pool_threads
    _pool_threads = _split and NPL_HAVE_POOL and _blas_get != NULL and _blas_set != NULL


cdef int _split_threads() noexcept nogil:
    global npl_restore_blas
    if not _pool_threads:
        return 1
    if npl_restore_blas > 0:             # forked while another thread's job had BLAS at 1
        npl_blas_set(_blas_set, npl_restore_blas)
        npl_restore_blas = 0
    return max(1, min(_blas_get(), MAX_THREADS))


cdef inline int _pin_blas() noexcept nogil:
    """BLAS to one thread for a job (pool held); -> the count to give back."""
    global npl_pinned_prev
    cdef int prev = _blas_get()          # read under the pool: only its holder changes it
    npl_pinned_prev = prev               # first: a fork from now on restores it in the child
    npl_blas_set(_blas_set, 1)
    return prev


cdef inline void _unpin_blas(int prev) noexcept nogil:
    global npl_pinned_prev
    npl_blas_set(_blas_set, prev)
    npl_pinned_prev = 0


npl_init()


def set_spin(double microseconds):
    """How long an idle pool thread (and a caller waiting for its helpers)
    spins before it blocks: short waits between GEMMs then cost no wake-up,
    longer ones no CPU. 0: always block. Returns the previous value."""
    global npl_spin_ns
    prev = npl_spin_ns / 1000.0
    npl_spin_ns = <long long> (max(microseconds, 0.0) * 1000)
    return prev


def split_threads():
    """How many threads a big GEMM is computed on now (1: one BLAS call,
    threaded by BLAS itself)."""
    return _split_threads()


cdef struct Split:
    Gemm g
    bint by_columns


cdef void _run_chunk(void *ctx, int i, int parts) noexcept nogil:
    cdef Split *s = <Split *> ctx
    cdef Gemm p = _part(&s.g, i, parts, s.by_columns)
    _run(&p)


cdef void _gemm(Gemm *g) noexcept nogil:
    """One GEMM: split over threads when it is big enough and the pool is free."""
    cdef Split s
    cdef int threads, chunks, prev
    if <double> g.m * g.n * g.k < SPLIT_MIN_WORK or _split_threads() < 2 or not npl_pool_acquire():
        _run(g)
        return
    threads = _split_threads()
    chunks = min(threads * _chunks_per_thread, max(g.n, g.m) // 16)
    if threads < 2 or chunks < 2:
        npl_pool_release()
        _run(g)
        return
    s.g = g[0]
    s.by_columns = g.n >= g.m
    prev = _pin_blas()
    npl_pool_run(_run_chunk, &s, chunks, threads)
    _unpin_blas(prev)
    npl_pool_release()


cdef inline int _op(cnp.ndarray a, char *trans, int *ld) except -1:
    """BLAS operand of row-major ``a`` as seen column-major: 'N' with ld =
    columns if C-contiguous, 'T' with ld = rows if F-contiguous."""
    if cnp.PyArray_IS_C_CONTIGUOUS(a):
        trans[0] = b'N'
        ld[0] = max(<int> a.shape[1], 1)
    elif cnp.PyArray_IS_F_CONTIGUOUS(a):
        trans[0] = b'T'
        ld[0] = max(<int> a.shape[0], 1)
    else:
        raise ValueError("gemm: operands must be C- or F-contiguous")
    return 0


cdef int _prepare(Gemm *g, cnp.ndarray a, cnp.ndarray b, cnp.ndarray c, double beta) except -1:
    """Check c = a @ b + beta * c and describe it in ``g`` (see gemm)."""
    cdef long m, k, n
    if a.ndim != 2 or b.ndim != 2 or c.ndim != 2:
        raise ValueError("gemm: operands must be 2-D")
    m, k, n = a.shape[0], a.shape[1], b.shape[1]
    if b.shape[0] != k or c.shape[0] != m or c.shape[1] != n:
        raise ValueError(f"gemm: shapes ({m}, {k}) @ ({b.shape[0]}, {n}) -> "
                         f"({c.shape[0]}, {c.shape[1]}) do not match")
    if not cnp.PyArray_IS_C_CONTIGUOUS(c):
        raise ValueError("gemm: the output must be C-contiguous")
    if not (a.dtype == b.dtype == c.dtype):
        raise TypeError(f"gemm: one dtype needed, got {a.dtype}, {b.dtype}, {c.dtype}")
    if c.dtype.num != cnp.NPY_FLOAT32 and c.dtype.num != cnp.NPY_FLOAT64:
        raise TypeError(f"gemm: float32 or float64 needed, got {c.dtype}")
    _nonempty("gemm", m)
    _nonempty("gemm", n)
    _nonempty("gemm", k)
    if m > 2**31 - 1 or n > 2**31 - 1 or k > 2**31 - 1:
        raise ValueError("gemm: dimensions beyond 32-bit BLAS")
    _op(a, &g.ta, &g.lda)
    _op(b, &g.tb, &g.ldb)
    g.m, g.n, g.k, g.ldc = m, n, k, max(n, 1)
    g.alpha, g.beta = 1.0, beta
    g.a, g.b, g.c = <char *> cnp.PyArray_DATA(a), <char *> cnp.PyArray_DATA(b), \
        <char *> cnp.PyArray_DATA(c)
    g.itemsize = c.itemsize
    return 0


def gemm(cnp.ndarray a, cnp.ndarray b, cnp.ndarray c, double beta=0.0):
    """c = a @ b + beta * c. a (m, k), b (k, n): C- or F-contiguous; c (m, n)
    C-contiguous; one dtype, float32 or float64. Returns c. Big products are
    split over threads (see above)."""
    cdef Gemm g
    _prepare(&g, a, b, c, beta)
    with nogil:
        _gemm(&g)
    return c


# Two independent products at once (a linear layer's backward: g W^T and
# x^T g, of equal cost): on two threads each runs whole on one of them, a
# single-threaded BLAS call, instead of both being cut in bands one after the
# other; with more threads each is cut into threads // 2 bands.

cdef struct Pair:
    Gemm g[2]
    int per                              # bands per product


cdef void _run_pair_chunk(void *ctx, int i, int parts) noexcept nogil:
    cdef Pair *s = <Pair *> ctx
    cdef Gemm *g = &s.g[i // s.per]
    cdef Gemm p
    if s.per == 1:
        _run(g)
    else:
        p = _part(g, i % s.per, s.per, g.n >= g.m)
        _run(&p)


cdef void _gemm2(Pair *s) noexcept nogil:
    cdef int threads, prev
    if (<double> s.g[0].m * s.g[0].n * s.g[0].k < SPLIT_MIN_WORK
            or <double> s.g[1].m * s.g[1].n * s.g[1].k < SPLIT_MIN_WORK
            or _split_threads() < 2 or not npl_pool_acquire()):
        _gemm(&s.g[0])
        _gemm(&s.g[1])
        return
    threads = _split_threads()
    s.per = max(1, min(threads // 2, min(max(s.g[0].n, s.g[0].m), max(s.g[1].n, s.g[1].m)) // 16))
    prev = _pin_blas()
    npl_pool_run(_run_pair_chunk, s, 2 * s.per, threads)
    _unpin_blas(prev)
    npl_pool_release()


def gemm2(cnp.ndarray a0, cnp.ndarray b0, cnp.ndarray c0, cnp.ndarray a1, cnp.ndarray b1,
          cnp.ndarray c1):
    """c0 = a0 @ b0 and c1 = a1 @ b1 (as gemm, each checked alike), computed at
    the same time on different threads when both are big enough to split.
    The outputs must not overlap each other or the operands. Returns (c0, c1)."""
    cdef Pair s
    _prepare(&s.g[0], a0, b0, c0, 0.0)
    _prepare(&s.g[1], a1, b1, c1, 0.0)
    with nogil:
        _gemm2(&s)
    return c0, c1


cdef int parallel_run(void (*fn)(void *, int, int) noexcept nogil, void *ctx,
                      int chunks) noexcept nogil:
    """fn(ctx, i, chunks) for every i < chunks, on this module's threads when
    the split is on and the pool is free (else all on the caller); returns
    after every call has finished. For other kernels (update.pyx)."""
    cdef int i
    if chunks < 2 or _split_threads() < 2 or not npl_pool_acquire():
        for i in range(chunks):
            fn(ctx, i, chunks)
        return 1
    npl_pool_run(fn, ctx, chunks, _split_threads())
    npl_pool_release()
    return 0


# ----------------------------------------------------------------------------- C loops
# float32 loops in C with restrict pointers and no branches, so that GCC
# vectorizes them (AVX-512 / AVX2 clones where the machine has them); float64
# (gradient checks) takes the plain Cython loops below, with libm's exp.

cdef extern from * nogil:
    """
    #include <stdint.h>
    #include <string.h>

    #if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && defined(__linux__)
    #define NPL_CLONES __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
    #else
    #define NPL_CLONES
    #endif
    #define NPL_INLINE static inline __attribute__((always_inline))

    NPL_INLINE float npl_bits_to_float(int32_t i) { float f; memcpy(&f, &i, 4); return f; }
    NPL_INLINE int32_t npl_float_to_bits(float f) { int32_t i; memcpy(&i, &f, 4); return i; }

    /* e^x for x <= 0, float32, within 2 ulp (NaN -> NaN, -inf -> 0); branch-free.
       x = n ln2 + r, |r| <= ln2/2 (Cody-Waite: n * ln2_hi is exact), e^r by its
       Taylor polynomial of degree 7 (error < 6e-9), 2^n as two normal powers of
       two so that results down to the smallest subnormal round once. */
    NPL_INLINE float npl_exp_neg(float x) {
        const float magic = 12582912.0f;            /* 1.5 * 2^23: t - magic = round(x log2 e) */
        x = x < -104.0f ? -104.0f : x;              /* e^-104 rounds to 0 */
        float t = x * 1.44269504088896341f + magic;
        float n = t - magic;
        float r = (x - n * 0.693359375f) - n * -2.12194440e-4f;
        float p = 1.0f / 5040;
        p = p * r + 1.0f / 720;
        p = p * r + 1.0f / 120;
        p = p * r + 1.0f / 24;
        p = p * r + 1.0f / 6;
        p = p * r + 0.5f;
        p = p * r + 1.0f;
        p = p * r + 1.0f;
        int32_t k = npl_float_to_bits(t) - npl_float_to_bits(magic);   /* n, in [-150, 0] */
        int32_t k1 = k >> 1, k2 = k - k1;
        return p * npl_bits_to_float((k1 + 127) << 23) * npl_bits_to_float((k2 + 127) << 23);
    }

    NPL_INLINE float npl_sigmoid(float v) {
        float e = npl_exp_neg(v < 0 ? v : -v);
        return (v >= 0 ? 1.0f : e) / (1.0f + e);
    }

    /* y = act(y + b) over rows of m; act 0 none, 1 relu, 2 sigmoid (pre = y + b) */
    NPL_CLONES static void npl_bias_act_f(float *restrict y, const float *restrict b, int64_t n,
                                          int64_t m, int64_t ld, int act, float *restrict pre) {
        for (int64_t i = 0; i < n; i++) {
            float *restrict yi = y + i * ld;
            if (act == 1) {
                if (b) for (int64_t j = 0; j < m; j++) { float v = yi[j] + b[j]; yi[j] = v <= 0 ? 0.0f : v; }
                else   for (int64_t j = 0; j < m; j++) { float v = yi[j]; yi[j] = v <= 0 ? 0.0f : v; }
            } else if (act == 2 && pre) {
                float *restrict pi = pre + i * ld;
                for (int64_t j = 0; j < m; j++) {
                    float v = b ? yi[j] + b[j] : yi[j];
                    pi[j] = v;
                    yi[j] = npl_sigmoid(v);
                }
            } else if (act == 2) {
                for (int64_t j = 0; j < m; j++) yi[j] = npl_sigmoid(b ? yi[j] + b[j] : yi[j]);
            } else if (b) {
                for (int64_t j = 0; j < m; j++) yi[j] += b[j];
            }
        }
    }

    /* gpre = g * act'(saved), gb (if not NULL) = column sums of gpre, row by row */
    NPL_CLONES static void npl_act_backward_f(const float *restrict g, const float *restrict saved,
                                              int64_t n, int64_t m, int64_t ld, int act, float *restrict gpre,
                                              float *restrict gb) {
        if (gb) memset(gb, 0, sizeof(float) * m);
        for (int64_t i = 0; i < n; i++) {
            const float *restrict gi = g + i * ld, *restrict si = saved + i * ld;
            float *restrict oi = gpre + i * ld;
            if (act == 1) {
                for (int64_t j = 0; j < m; j++) oi[j] = si[j] > 0 ? gi[j] : 0.0f;
            } else if (act == 2) {
                for (int64_t j = 0; j < m; j++) {
                    float v = si[j], e = npl_exp_neg(v < 0 ? v : -v);
                    oi[j] = gi[j] * (e / ((1.0f + e) * (1.0f + e)));
                }
            }
            if (gb) {
                const float *restrict src = act ? oi : gi;
                for (int64_t j = 0; j < m; j++) gb[j] += src[j];
            }
        }
    }

    /* maxout, float32 or float64 (T): one pass per piece over all units, the
       running max and its index kept in y and arg (strided loads, vectorized
       across units; the first maximum wins ties as its index is only replaced
       by a strictly greater value). Returns 1 if a NaN was seen: the caller
       then redoes the array with the NaN-aware loop. */
    #define NPL_MAXOUT(T, NAME) \
    NPL_CLONES static int NAME(const T *restrict x, int64_t units, int pieces, T *restrict y, \
                               uint8_t *restrict arg) { \
        int nan = 0; \
        for (int64_t u = 0; u < units; u++) { T v = x[u * pieces]; y[u] = v; arg[u] = 0; nan |= v != v; } \
        for (int k = 1; k < pieces; k++) { \
            for (int64_t u = 0; u < units; u++) { \
                T v = x[u * pieces + k], b = y[u]; \
                int c = v > b; \
                y[u] = c ? v : b; \
                arg[u] = c ? (uint8_t)k : arg[u]; \
                nan |= v != v; \
            } \
        } \
        return nan; \
    }
    NPL_MAXOUT(float, npl_maxout_f)
    NPL_MAXOUT(double, npl_maxout_d)
    /* dropout from float draws u or their uint32 words w; a select, no branch
       (the mask is random: a branch would be mispredicted a fifth of the time) */
    NPL_CLONES static void npl_dropout_f(const float *restrict x, const float *restrict u,
                                         float keep, float scale, float *restrict out, int64_t n) {
        for (int64_t i = 0; i < n; i++) out[i] = x[i] * (u[i] < keep ? scale : 0.0f);
    }
    NPL_CLONES static void npl_dropout_words_f(const float *restrict x, const uint32_t *restrict w,
                                               uint32_t threshold, float scale,
                                               float *restrict out, int64_t n) {
        for (int64_t i = 0; i < n; i++) out[i] = x[i] * ((w[i] >> 8) < threshold ? scale : 0.0f);
    }
    """
    void npl_bias_act_f(float *y, const float *b, Py_ssize_t n, Py_ssize_t m, Py_ssize_t ld, int act,
                        float *pre)
    void npl_act_backward_f(const float *g, const float *saved, Py_ssize_t n, Py_ssize_t m,
                            Py_ssize_t ld, int act,
                            float *gpre, float *gb)
    int npl_maxout_f(const float *x, Py_ssize_t units, int pieces, float *y, cnp.uint8_t *arg)
    int npl_maxout_d(const double *x, Py_ssize_t units, int pieces, double *y, cnp.uint8_t *arg)
    void npl_dropout_f(const float *x, const float *u, float keep, float scale, float *out,
                       Py_ssize_t n)
    void npl_dropout_words_f(const float *x, const cnp.uint32_t *w, cnp.uint32_t threshold,
                             float scale, float *out, Py_ssize_t n)


# ----------------------------------------------------------------------------- activations

cdef inline double _sigmoid_d(double x) noexcept nogil:
    # as reference.sigmoid_forward: from exp(-|x|), never overflows
    cdef double e = exp(-fabs(x))
    if x >= 0:
        return 1 / (1 + e)
    return e / (1 + e)


# float32 passes over (n, m) arrays of at least BAND_MIN elements run in bands
# of columns on the pool's threads: every element (and every column sum of
# act_backward, added row by row) is computed as in one pass, so the result is
# the same bits.

cdef enum:
    BAND_MIN = 1 << 15
    BAND_PARTS = 4                       # bands of the maxout and dropout passes

cdef struct Elementwise:
    float *y                             # bias_act: y; act_backward: gpre
    const float *b
    float *pre
    const float *g
    const float *saved
    float *gb
    Py_ssize_t n, m
    int act


cdef void _bias_act_band(void *ctx, int i, int parts) noexcept nogil:
    cdef Elementwise *e = <Elementwise *> ctx
    cdef Py_ssize_t lo, hi
    band(e.m, i, parts, &lo, &hi)
    if hi > lo:
        npl_bias_act_f(e.y + lo, e.b + lo if e.b != NULL else NULL, e.n, hi - lo, e.m, e.act,
                       e.pre + lo if e.pre != NULL else NULL)


cdef void _act_backward_band(void *ctx, int i, int parts) noexcept nogil:
    cdef Elementwise *e = <Elementwise *> ctx
    cdef Py_ssize_t lo, hi
    band(e.m, i, parts, &lo, &hi)
    if hi > lo:
        npl_act_backward_f(e.g + lo, e.saved + lo if e.saved != NULL else NULL, e.n, hi - lo, e.m,
                           e.act, e.y + lo if e.y != NULL else NULL,
                           e.gb + lo if e.gb != NULL else NULL)


cdef void _banded(void (*fn)(void *, int, int) noexcept nogil, Elementwise *e) noexcept nogil:
    cdef int parts = 1
    if e.n * e.m >= BAND_MIN and e.m >= 64:
        parts = min(_split_threads(), <int> (e.m // 32))
    parallel_run(fn, e, max(parts, 1))


def bias_act(floating[:, ::1] y, floating[::1] b, int act, floating[:, ::1] pre):
    """In place: y = act(y + b) (b may be None); with act SIGMOID and ``pre``
    not None, y + b is also stored there (the backward needs it)."""
    cdef Py_ssize_t i, j, n = y.shape[0], m = y.shape[1]
    cdef double v
    cdef bint has_b = b is not None, has_pre = pre is not None
    _nonempty("bias_act", n * m)
    if has_b and b.shape[0] != m:
        raise ValueError("bias_act: bias length does not match")
    if has_pre and (pre.shape[0] != n or pre.shape[1] != m):
        raise ValueError("bias_act: the pre-activation array must have y's shape")
    if act == NONE and not has_b:
        return
    cdef Elementwise ew
    if floating is float:
        ew.y, ew.b, ew.n, ew.m, ew.act = &y[0, 0], &b[0] if has_b else NULL, n, m, act
        ew.pre = &pre[0, 0] if act == SIGMOID and has_pre else NULL
        with nogil:
            _banded(_bias_act_band, &ew)
    else:
        with nogil:
            for i in range(n):
                for j in range(m):
                    v = y[i, j] + b[j] if has_b else y[i, j]
                    if act == RELU:
                        y[i, j] = 0 if v <= 0 else v      # NaN stays NaN, as numpy.maximum
                    elif act == SIGMOID:
                        if has_pre:
                            pre[i, j] = v
                        y[i, j] = _sigmoid_d(v)
                    else:
                        y[i, j] = v


def act_backward(floating[:, ::1] g, floating[:, ::1] saved, int act,
                 floating[:, ::1] gpre, floating[::1] gb):
    """gpre = g * act'(.) (``saved``: y for relu, the pre-activation for
    sigmoid; unused for NONE, where gpre may be None) and, unless gb is None,
    gb = gpre.sum(axis=0), in one pass over g."""
    cdef Py_ssize_t i, j, n = g.shape[0], m = g.shape[1]
    cdef double v, e
    cdef bint want_b = gb is not None
    _nonempty("act_backward", n * m)
    if want_b and gb.shape[0] != m:
        raise ValueError("act_backward: bias gradient length does not match")
    if act != NONE and (saved is None or gpre is None or saved.shape[0] != n or saved.shape[1] != m
                        or gpre.shape[0] != n or gpre.shape[1] != m):
        raise ValueError("act_backward: saved and gpre must have g's shape")
    cdef Elementwise ew
    if floating is float:
        ew.g, ew.saved, ew.n, ew.m, ew.act = (&g[0, 0], &saved[0, 0] if act != NONE else NULL,
                                              n, m, act)
        ew.y, ew.gb = &gpre[0, 0] if act != NONE else NULL, &gb[0] if want_b else NULL
        with nogil:
            _banded(_act_backward_band, &ew)
    else:
        if want_b:
            gb[:] = 0
        with nogil:
            for i in range(n):
                for j in range(m):
                    v = g[i, j]
                    if act == RELU:
                        v = v if saved[i, j] > 0 else 0
                        gpre[i, j] = v
                    elif act == SIGMOID:
                        e = exp(-fabs(saved[i, j]))
                        v = v * (e / ((1 + e) * (1 + e)))
                        gpre[i, j] = v
                    if want_b:
                        gb[j] += v


# ----------------------------------------------------------------------------- maxout

# float32 maxout and dropout passes of at least BAND_MIN elements: in bands of
# units (elements) on the pool, as bias_act; each output as in one pass.

cdef struct Rows:
    const void *x
    void *y
    const void *u                        # dropout: the draws (or words)
    cnp.uint8_t *arg
    Py_ssize_t n                         # units (maxout) or elements (dropout)
    int pieces
    float keep, scale
    cnp.uint32_t threshold
    int flag[BAND_PARTS]                 # maxout_forward: a NaN seen in band i


cdef void _maxout_f_band(void *ctx, int i, int parts) noexcept nogil:
    cdef Rows *r = <Rows *> ctx
    cdef Py_ssize_t lo, hi
    band(r.n, i, parts, &lo, &hi)
    r.flag[i] = 0
    if hi > lo:
        r.flag[i] = npl_maxout_f(<const float *> r.x + lo * r.pieces, hi - lo, r.pieces,
                                 <float *> r.y + lo, r.arg + lo)


cdef int _maxout_f_banded(const float *x, Py_ssize_t units, int pieces, float *y,
                          cnp.uint8_t *arg) noexcept nogil:
    cdef Rows r
    cdef int i, parts = BAND_PARTS if units * pieces >= BAND_MIN else 1
    r.x, r.y, r.arg, r.n, r.pieces = x, y, arg, units, pieces
    parallel_run(_maxout_f_band, &r, parts)
    for i in range(1, parts):
        r.flag[0] |= r.flag[i]
    return r.flag[0]


cdef void _maxout_back_f_band(void *ctx, int i, int parts) noexcept nogil:
    cdef Rows *r = <Rows *> ctx
    cdef Py_ssize_t lo, hi, u
    cdef const float *g = <const float *> r.x
    cdef float *gx = <float *> r.y
    band(r.n, i, parts, &lo, &hi)
    if hi > lo:
        memset(gx + lo * r.pieces, 0, (hi - lo) * r.pieces * sizeof(float))
        for u in range(lo, hi):
            gx[u * r.pieces + r.arg[u]] = g[u]


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


def maxout_forward(floating[::1] x, int pieces, floating[::1] y, cnp.uint8_t[::1] arg):
    """y[u] = max(x[u*pieces : (u+1)*pieces]), arg[u] = its first argmax (or
    first NaN), for the flat C-order data of (..., units*pieces)."""
    cdef Py_ssize_t u, k, base, units = y.shape[0]
    cdef floating best, v
    cdef int b, nan
    _nonempty("maxout_forward", units)
    if pieces < 1 or pieces > 256 or x.shape[0] != units * pieces or arg.shape[0] != units:
        raise ValueError("maxout_forward: sizes do not match (or pieces not in 1..256)")
    with nogil:
        if floating is float:
            nan = _maxout_f_banded(&x[0], units, pieces, &y[0], &arg[0])
        else:
            nan = npl_maxout_d(&x[0], units, pieces, &y[0], &arg[0])
        if nan:                        # rare: redo with NaN handling (the first NaN wins)
            for u in range(units):
                base = u * pieces
                best = x[base]
                b = 0
                for k in range(1, pieces):
                    v = x[base + k]
                    if v > best or (v != v and best == best):
                        best = v
                        b = k
                y[u] = best
                arg[u] = <cnp.uint8_t> b


def maxout_backward(floating[::1] g, cnp.uint8_t[::1] arg, int pieces, floating[::1] gx):
    """gx[u*pieces + k] = g[u] if k == arg[u] else 0: zeros, then one write per unit."""
    cdef Py_ssize_t u, units = g.shape[0]
    _nonempty("maxout_backward", units)
    if pieces < 1 or gx.shape[0] != units * pieces or arg.shape[0] != units:
        raise ValueError("maxout_backward: sizes do not match")
    cdef Rows r
    if floating is float and gx.shape[0] >= BAND_MIN:
        r.x, r.y, r.arg, r.n, r.pieces = &g[0], &gx[0], &arg[0], units, pieces
        with nogil:
            parallel_run(_maxout_back_f_band, &r, BAND_PARTS)
        return
    with nogil:
        memset(&gx[0], 0, gx.shape[0] * sizeof(floating))
        for u in range(units):
            gx[u * pieces + arg[u]] = g[u]


# ----------------------------------------------------------------------------- dropout

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
    _nonempty("dropout", n)
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
