/* npgan's own float32 GEMM for AVX-512 machines (included by gemm.pyx).
 *
 * Row-major C (m x n) = A (m x k) B (k x n), or C += A B, where element (i, p)
 * of A is a[i*rsa + p*csa] and (p, j) of B is b[p*rsb + j*csb] (so either
 * layout, C- or F-contiguous, costs no copy). The blocking is the usual one
 * (Goto / BLIS), sized for the 100-200-row products of a GAN step:
 *
 *   for each block of MC rows of C:
 *     for each block of KC of the k dimension:
 *       pack A's block into MR-row panels ap[p][r] (zeros below row m)
 *       for each strip of NR = 32 columns:
 *         pack B's KC x 32 strip into bp[p][j] (zeros beyond column n)
 *         for each MR-row panel: the micro-kernel, an MR x 32 tile of C
 *         kept in 2*MR zmm registers across the KC rank-1 updates,
 *         then added to (or stored over) C with masked stores at the edges.
 *
 * MR = 10 rows (20 accumulators) divides the batch of 100 and 200 exactly.
 * Each element of C is the same chain of FMAs (p ascending within a KC block,
 * blocks added in order) whatever the tile, edge or band it falls in, so a
 * product cut into bands of rows or columns gives the same bits as the whole.
 * Buffers: one per thread, MC*KC + KC*NR floats (236 KB), allocated on its
 * first product and freed when it exits. Other machines and compilers:
 * npg_sgemm_supported() is 0 and the caller uses BLAS.
 */
#ifndef NPGAN_SGEMM_H
#define NPGAN_SGEMM_H

#define NPG_MR 10
#define NPG_NR 32
#define NPG_KC 256
#define NPG_MC 200

#if defined(__x86_64__) && defined(__GNUC__) && !defined(_WIN32)
#include <immintrin.h>
#include <pthread.h>
#include <stdlib.h>

#define NPG_TARGET __attribute__((target("avx512f")))

static int npg_sgemm_supported(void) {
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx512f");        /* CPU and OS (zmm state saved) */
}

static NPG_TARGET inline __mmask16 npg_mask(long cols) {
    return cols >= 16 ? (__mmask16) 0xffff : cols > 0 ? (__mmask16) ((1u << cols) - 1) : 0;
}

/* C tile (mr x 16*nv, only nr columns stored) = [C +] ap (kc x MR) bp (kc x NR).
 * Inlined with constant mr, nv: the tile's accumulators stay in registers. */
static NPG_TARGET __attribute__((always_inline)) inline void
npg_tile(const int mr, const int nv, long kc, const float *ap, const float *bp,
         float *c, long ldc, int nr, int add) {
    __m512 x[NPG_MR][2], b[2];
    for (int i = 0; i < mr; i++)
        for (int v = 0; v < nv; v++) x[i][v] = _mm512_setzero_ps();
    for (int i = 0; i < mr; i++) {                    /* C's rows, needed at the end */
        _mm_prefetch((const char *) (c + i * ldc), _MM_HINT_T0);
        _mm_prefetch((const char *) (c + i * ldc + 16 * nv - 1), _MM_HINT_T0);
    }
    for (long p = 0; p < kc; p++) {
        for (int v = 0; v < nv; v++) b[v] = _mm512_load_ps(bp + 16 * v);
        for (int i = 0; i < mr; i++) {
            __m512 a = _mm512_set1_ps(ap[i]);
            for (int v = 0; v < nv; v++) x[i][v] = _mm512_fmadd_ps(a, b[v], x[i][v]);
        }
        ap += NPG_MR;
        bp += NPG_NR;
    }
    for (int i = 0; i < mr; i++) {
        float *q = c + i * ldc;
        for (int v = 0; v < nv; v++) {
            __mmask16 m = npg_mask(nr - 16 * v);
            __m512 y = x[i][v];
            if (add) y = _mm512_add_ps(_mm512_maskz_loadu_ps(m, q + 16 * v), y);
            _mm512_mask_storeu_ps(q + 16 * v, m, y);
        }
    }
}

static NPG_TARGET void npg_micro(int mr, long kc, const float *ap, const float *bp, float *c,
                                 long ldc, int nr, int add) {
#define NPG_CASE(r, nv) case r: npg_tile(r, nv, kc, ap, bp, c, ldc, nr, add); break;
#define NPG_CASES(nv) NPG_CASE(1, nv) NPG_CASE(2, nv) NPG_CASE(3, nv) NPG_CASE(4, nv) \
    NPG_CASE(5, nv) NPG_CASE(6, nv) NPG_CASE(7, nv) NPG_CASE(8, nv) NPG_CASE(9, nv) NPG_CASE(10, nv)
    if (nr > 16) { switch (mr) { NPG_CASES(2) } }
    else { switch (mr) { NPG_CASES(1) } }
#undef NPG_CASES
#undef NPG_CASE
}

/* In-register transpose of 16 rows of 16 floats: r[i][j] -> r[j][i]. */
static NPG_TARGET inline void npg_transpose16(__m512 r[16]) {
    __m512 t[16];
    for (int i = 0; i < 16; i += 2) {                 /* 32-bit pairs */
        t[i] = _mm512_unpacklo_ps(r[i], r[i + 1]);
        t[i + 1] = _mm512_unpackhi_ps(r[i], r[i + 1]);
    }
    for (int i = 0; i < 16; i += 4)                   /* 64-bit pairs: columns 4L+c in r[i+c] */
        for (int j = 0; j < 2; j++) {
            __m512d x = _mm512_castps_pd(t[i + j]), y = _mm512_castps_pd(t[i + j + 2]);
            r[i + 2 * j] = _mm512_castpd_ps(_mm512_unpacklo_pd(x, y));
            r[i + 2 * j + 1] = _mm512_castpd_ps(_mm512_unpackhi_pd(x, y));
        }
    for (int i = 0; i < 16; i += 8)                   /* 128-bit lanes */
        for (int j = 0; j < 4; j++) {
            t[i + j] = _mm512_shuffle_f32x4(r[i + j], r[i + j + 4], 0x88);
            t[i + j + 4] = _mm512_shuffle_f32x4(r[i + j], r[i + j + 4], 0xdd);
        }
    for (int j = 0; j < 8; j++) {                     /* 256-bit halves */
        r[j] = _mm512_shuffle_f32x4(t[j], t[j + 8], 0x88);
        r[j + 8] = _mm512_shuffle_f32x4(t[j], t[j + 8], 0xdd);
    }
}

/* bp[p*NR + j] = B(p, j) for p < kc, j < nr, zeros for nr <= j < NR. */
static NPG_TARGET void npg_pack_b(long kc, int nr, const float *b, long rs, long cs, float *bp) {
    __mmask16 m0 = npg_mask(nr), m1 = npg_mask(nr - 16);
    if (cs == 1) {
        for (long p = 0; p < kc; p++) {
            _mm512_store_ps(bp + p * NPG_NR, _mm512_maskz_loadu_ps(m0, b + p * rs));
            _mm512_store_ps(bp + p * NPG_NR + 16, _mm512_maskz_loadu_ps(m1, b + p * rs + 16));
        }
        return;
    }
    long p0 = 0;
    if (rs == 1) {                                    /* B's columns contiguous: 16 x 16 transposes */
        __m512 r[16];
        for (; p0 + 16 <= kc; p0 += 16)
            for (int h = 0; h < 2; h++) {
                for (int j = 0; j < 16; j++)
                    r[j] = 16 * h + j < nr ? _mm512_loadu_ps(b + (16 * h + j) * cs + p0)
                                           : _mm512_setzero_ps();
                npg_transpose16(r);
                for (int q = 0; q < 16; q++) _mm512_store_ps(bp + (p0 + q) * NPG_NR + 16 * h, r[q]);
            }
    }
    for (long p = p0; p < kc; p++)
        for (int j = 0; j < NPG_NR; j++)
            bp[p * NPG_NR + j] = j < nr ? b[p * rs + j * cs] : 0.0f;
}

/* ap[(i/MR)*kc*MR + p*MR + i%MR] = A(i, p) for i < mc, p < kc; zeros up to a multiple of MR. */
static NPG_TARGET void npg_pack_a(long mc, long kc, const float *a, long rs, long cs, float *ap) {
    const __mmask16 panel = (1u << NPG_MR) - 1;
    for (long i0 = 0; i0 < mc; i0 += NPG_MR) {
        float *d = ap + i0 * kc;
        int mr = mc - i0 < NPG_MR ? (int) (mc - i0) : NPG_MR;
        const float *s = a + i0 * rs;
        long p0 = 0;
        if (rs == 1) {                                 /* a panel's rows contiguous: one load a column */
            __mmask16 m = npg_mask(mr);
            for (long p = 0; p < kc; p++)
                _mm512_mask_storeu_ps(d + p * NPG_MR, panel, _mm512_maskz_loadu_ps(m, s + p * cs));
            continue;
        }
        if (cs == 1) {                                 /* rows contiguous: 16 x 16 transposes */
            __m512 r[16];
            for (; p0 + 16 <= kc; p0 += 16) {
                for (int i = 0; i < 16; i++)
                    r[i] = i < mr ? _mm512_loadu_ps(s + i * rs + p0) : _mm512_setzero_ps();
                npg_transpose16(r);
                for (int q = 0; q < 16; q++) _mm512_mask_storeu_ps(d + (p0 + q) * NPG_MR, panel, r[q]);
            }
        }
        for (long p = p0; p < kc; p++)
            for (int i = 0; i < NPG_MR; i++) d[p * NPG_MR + i] = i < mr ? s[i * rs + p * cs] : 0.0f;
    }
}

/* The packing buffer of the calling thread: allocated on its first product,
 * freed when the thread exits (a pthread key's destructor), so short-lived
 * threads leave nothing behind. */
static pthread_key_t npg_buffer_key;
static pthread_once_t npg_buffer_once = PTHREAD_ONCE_INIT;
static int npg_buffer_key_ok = 0;

static void npg_buffer_key_make(void) {
    npg_buffer_key_ok = pthread_key_create(&npg_buffer_key, free) == 0;
}

static float *npg_thread_buffer(void) {
    float *buf;
    pthread_once(&npg_buffer_once, npg_buffer_key_make);
    if (!npg_buffer_key_ok) return NULL;
    buf = (float *) pthread_getspecific(npg_buffer_key);
    if (buf == NULL) {
        buf = (float *) aligned_alloc(64, sizeof(float) * (NPG_KC * NPG_NR + NPG_MC * NPG_KC));
        if (buf != NULL && pthread_setspecific(npg_buffer_key, buf) != 0) {
            free(buf);
            buf = NULL;
        }
    }
    return buf;
}

/* C = A B (add = 0) or C += A B (add = 1); m, n, k > 0. Returns -1 (nothing
 * done) if this thread's buffer cannot be allocated, else 0. */
static NPG_TARGET int npg_sgemm(long m, long n, long k, const float *a, long rsa, long csa,
                                const float *b, long rsb, long csb, float *c, long ldc, int add) {
    float *buf = npg_thread_buffer();
    if (buf == NULL) return -1;
    float *bp = buf, *ap = buf + NPG_KC * NPG_NR;
    for (long ic = 0; ic < m; ic += NPG_MC) {
        long mc = m - ic < NPG_MC ? m - ic : NPG_MC;
        for (long pc = 0; pc < k; pc += NPG_KC) {
            long kc = k - pc < NPG_KC ? k - pc : NPG_KC;
            npg_pack_a(mc, kc, a + ic * rsa + pc * csa, rsa, csa, ap);
            for (long j0 = 0; j0 < n; j0 += NPG_NR) {
                int nr = n - j0 < NPG_NR ? (int) (n - j0) : NPG_NR;
                npg_pack_b(kc, nr, b + pc * rsb + j0 * csb, rsb, csb, bp);
                for (long i0 = 0; i0 < mc; i0 += NPG_MR)
                    npg_micro(mc - i0 < NPG_MR ? (int) (mc - i0) : NPG_MR, kc, ap + i0 * kc, bp,
                              c + (ic + i0) * ldc + j0, ldc, nr, add || pc > 0);
            }
        }
    }
    return 0;
}

#else  /* not x86-64 GCC/Clang, or Windows: never used */
static int npg_sgemm_supported(void) { return 0; }
static int npg_sgemm(long m, long n, long k, const float *a, long rsa, long csa, const float *b,
                     long rsb, long csb, float *c, long ldc, int add) { return -1; }
#endif

#endif
