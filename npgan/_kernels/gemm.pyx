# cython: language_level=3
"""Matrix products for the layers: BLAS (SciPy's, or MKL's) or npgan's own sgemm, split over the pool.

* ``gemm(a, b, c, beta)``: c = a @ b + beta * c for row-major ``c`` through
  SciPy's BLAS (``scipy.linalg.cython_blas``; importing this module fails
  without SciPy, and npgan then uses its NumPy references). ``a`` and ``b`` may
  each be C- or F-contiguous (a transposed view costs no copy): row-major
  C = A B is column-major C^T = B^T A^T, so the operands are handed over
  swapped, with 'N' or 'T' according to their layout. A big product is cut
  into bands of C, ``chunks_per_thread`` (pool.set_split) per thread of the
  pool (pool.pyx), computed at once by single-threaded BLAS calls; BLAS is
  pinned to one thread meanwhile. float32 products go to npgan's own GEMM
  instead (``sgemm.h``, AVX-512: ``set_own_sgemm``, the default where the CPU
  has it) when they suit it.
* ``gemm2``: two independent products at once, a thread each (a linear
  layer's backward pair g W^T and x^T g).
* ``set_gemm``: SciPy's BLAS swapped for another library's sgemm_/dgemm_
  (MKL: npgan._kernels.blas_lib).

Empty operands are refused with a ValueError (the wrappers in
``npgan._kernels`` send empty batches to the reference).
"""
cimport numpy as cnp
from scipy.linalg.cython_blas cimport sgemm, dgemm

from npgan._kernels.common cimport nonempty
from npgan._kernels.pool cimport (acquire, band, chunks_per_thread, pin_blas, pool_threads,
                                  release, run, split_threads, unpin_blas)

cnp.import_array()


cdef enum:
    SPLIT_MIN_WORK = 1 << 22             # M*N*K below this: one call (the sync would cost more)


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
    return bool(_own_sgemm and pool_threads())


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
    if (not _own_sgemm or not pool_threads() or g.n < OWN_MIN_N or g.m > OWN_MAX_M or g.alpha != 1.0
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
    if <double> g.m * g.n * g.k < SPLIT_MIN_WORK or split_threads() < 2 or not acquire():
        _run(g)
        return
    threads = split_threads()
    chunks = min(threads * chunks_per_thread(), max(g.n, g.m) // 16)
    if threads < 2 or chunks < 2:
        release()
        _run(g)
        return
    s.g = g[0]
    s.by_columns = g.n >= g.m
    prev = pin_blas()
    run(_run_chunk, &s, chunks, threads)
    unpin_blas(prev)
    release()


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
    nonempty("gemm", m)
    nonempty("gemm", n)
    nonempty("gemm", k)
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
            or split_threads() < 2 or not acquire()):
        _gemm(&s.g[0])
        _gemm(&s.g[1])
        return
    threads = split_threads()
    s.per = max(1, min(threads // 2, min(max(s.g[0].n, s.g[0].m), max(s.g[1].n, s.g[1].m)) // 16))
    prev = pin_blas()
    run(_run_pair_chunk, s, 2 * s.per, threads)
    unpin_blas(prev)
    release()


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
