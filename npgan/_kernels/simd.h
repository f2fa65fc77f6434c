/* The kernels' shared loop helpers (included by activations, layers, update and
   parzen_kernel): the target_clones macro, the float32 exp and sigmoid, and
   the vector exp2 of the Parzen kernel.

   NPG_CLONES compiles a loop for AVX-512 (x86-64-v4), AVX2 (v3) and baseline
   x86-64, picked at load time (GCC on x86-64 Linux; elsewhere one version).
   Loops that call npg_exp_neg / npg_sigmoid_f must be NPG_CLONES loops so
   that every kernel gets the same bits (the clones contract the polynomial
   to FMAs where the machine has them).

   Two exps, kept apart on purpose: npg_exp_neg (scalar e^x, Cody-Waite
   reduction in base e, degree 7) is what the layers' sigmoid has always
   used, npg_exp2f/npg_exp2d (vector 2^x, degree 6 / 13) what the Parzen
   kernel has always used; sharing one would change the trained networks' or
   the Parzen estimates' last bits. */
#ifndef NPGAN_SIMD_H
#define NPGAN_SIMD_H

#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && defined(__linux__)
#define NPG_CLONES __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#else
#define NPG_CLONES
#endif
#define NPG_INLINE static inline __attribute__((always_inline))

NPG_INLINE float npg_bits_to_float(int32_t i) { float f; memcpy(&f, &i, 4); return f; }
NPG_INLINE int32_t npg_float_to_bits(float f) { int32_t i; memcpy(&i, &f, 4); return i; }

/* e^x for x <= 0, float32, within 2 ulp (NaN -> NaN, -inf -> 0); branch-free.
   x = n ln2 + r, |r| <= ln2/2 (Cody-Waite: n * ln2_hi is exact), e^r by its
   Taylor polynomial of degree 7 (error < 6e-9), 2^n as two normal powers of
   two so that results down to the smallest subnormal round once. */
NPG_INLINE float npg_exp_neg(float x) {
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
    int32_t k = npg_float_to_bits(t) - npg_float_to_bits(magic);   /* n, in [-150, 0] */
    int32_t k1 = k >> 1, k2 = k - k1;
    return p * npg_bits_to_float((k1 + 127) << 23) * npg_bits_to_float((k2 + 127) << 23);
}

/* sigmoid(v) = 1 / (1 + e^-v), from e = e^-|v|: never overflows (float32) */
NPG_INLINE float npg_sigmoid_f(float v) {
    float e = npg_exp_neg(v < 0 ? v : -v);
    return (v >= 0 ? 1.0f : e) / (1.0f + e);
}

/* sigmoid'(v) = sigmoid(v) sigmoid(-v) = e / (1 + e)^2, e = e^-|v| (float32) */
NPG_INLINE float npg_sigmoid_grad_f(float v) {
    float e = npg_exp_neg(v < 0 ? v : -v);
    return e / ((1.0f + e) * (1.0f + e));
}

/* the same in float64, with libm's exp (gradient checks) */
NPG_INLINE double npg_sigmoid_d(double v) {
    double e = exp(-fabs(v));
    return v >= 0 ? 1 / (1 + e) : e / (1 + e);
}

NPG_INLINE double npg_sigmoid_grad_d(double v) {
    double e = exp(-fabs(v));
    return e / ((1 + e) * (1 + e));
}

#if defined(__GNUC__) || defined(__clang__)
#define NPG_HAVE_VECTORS 1
#pragma GCC diagnostic ignored "-Wpsabi"   /* vector helpers are always inlined */
/* ---- GCC/Clang vector extensions, lowered to the target's SIMD width ---- */
typedef float v16f __attribute__((vector_size(64)));
typedef int v16i __attribute__((vector_size(64)));
typedef float v16f_u __attribute__((vector_size(64), aligned(4)));
typedef float v8f __attribute__((vector_size(32)));
typedef double v8d __attribute__((vector_size(64)));
typedef long long v8l __attribute__((vector_size(64)));
typedef double v8d_u __attribute__((vector_size(64), aligned(8)));

NPG_INLINE v16f npg_self(v16i m, v16f a, v16f b) { return (v16f)((m & (v16i)a) | (~m & (v16i)b)); }
NPG_INLINE v8d npg_seld(v8l m, v8d a, v8d b) { return (v8d)((m & (v8l)a) | (~m & (v8l)b)); }

/* 2^v, float32, for v <= 0 (v < -125 is taken as -125: a term below
   2^-125 of the running max, which cannot change the float64 sum).
   Taylor polynomial of e^(f ln 2) of degree 6 on [-1/2, 1/2]: rel. error < 1.3e-7. */
NPG_INLINE v16f npg_exp2f(v16f v) {
    const v16f magic = (v16f){0} + 12582912.0f, lo = (v16f){0} + -125.0f;
    v = npg_self(v < lo, lo, v);
    v16f t = v + magic, f = v - (t - magic);           /* t - magic = round(v) */
    static const float c[7] = {1.5403530393381606e-04f, 1.3333558146428443e-03f,
                               9.6181291076284772e-03f, 5.5504108664821580e-02f,
                               2.4022650695910071e-01f, 6.9314718055994531e-01f, 1.0f};
    v16f p = (v16f){0} + c[0];
    for (int i = 1; i < 7; i++) p = p * f + c[i];                  /* Horner */
    return (v16f)((v16i)p + (((v16i)t - (v16i)magic) << 23));
}

/* 2^v, float64, for v <= 0 (v < -1021 is taken as -1021); rel. error ~2e-16. */
NPG_INLINE v8d npg_exp2d(v8d v) {
    const v8d magic = (v8d){0} + 6755399441055744.0, lo = (v8d){0} + -1021.0;
    v = npg_seld(v < lo, lo, v);
    v8d t = v + magic, n = t - magic, f = v - n;
    static const double c[14] = {                  /* Taylor of e^(f ln2), deg 13 */
        1.3691488853904124e-12, 2.5678435993488196e-11, 4.4455382718708100e-10,
        7.0549116208011210e-09, 1.0178086009239696e-07, 1.3215486790144305e-06,
        1.5252733804059838e-05, 1.5403530393381606e-04, 1.3333558146428441e-03,
        9.6181291076284770e-03, 5.5504108664821576e-02, 2.4022650695910070e-01,
        6.9314718055994531e-01, 1.0};
    v8d p = (v8d){0} + c[0];
    for (int i = 1; i < 14; i++) p = p * f + c[i];                 /* Horner */
    return (v8d)((v8l)p + (((v8l)t - (v8l)magic) << 52));
}
#endif

#endif
