/* The CPU backend's elementwise float arithmetic (src/cpu/exp_ref.h, backend_cpu.c),
 * written once for the CUDA kernels and for host code (tests, the host-built RoPE
 * table). The golden models are chaotic: one ulp of difference in an attention weight or
 * a SiLU output can flip the int8 rounding of the next activation, so the GPU has to
 * perform the very same roundings in the very same order, not just be as accurate.
 *
 * The CUDA library is compiled with --use_fast_math, which lets the compiler contract
 * a * b + c into an FMA and approximate division; every rounding that matters therefore
 * goes through an explicit _rn intrinsic in device code. Host code (C or C++) uses plain
 * IEEE operations and fmaf.
 *
 * Known, harmless difference: device code flushes float subnormals to zero (-ftz). The
 * exp result itself is built from bits, so it keeps subnormals; where a subnormal feeds
 * further arithmetic (1 + e^x, a sum that already holds 1.0) it cannot change a float
 * result. */
#ifndef CHORD_CUDA_EXACT_MATH_H
#define CHORD_CUDA_EXACT_MATH_H

#include <math.h>
#include <stdint.h>
#include <string.h>

#ifdef __CUDACC__
#define XM_FN __host__ __device__ __forceinline__
#else
#define XM_FN static inline
#endif

#if defined(__CUDA_ARCH__)
#define XM_FMA(a, b, c) __fmaf_rn((a), (b), (c))
#define XM_MUL(a, b) __fmul_rn((a), (b))
#define XM_ADD(a, b) __fadd_rn((a), (b))
#define XM_SUB(a, b) __fsub_rn((a), (b))
#define XM_DIV(a, b) __fdiv_rn((a), (b))
#else
#define XM_FMA(a, b, c) fmaf((a), (b), (c))
#define XM_MUL(a, b) ((a) * (b))
#define XM_ADD(a, b) ((a) + (b))
#define XM_SUB(a, b) ((a) - (b))
#define XM_DIV(a, b) ((a) / (b))
#endif

/* the constants of cpu_exp1 (exp_ref.h explains the method) */
#define XM_EXP_SHIFT 0x1.8p23f
#define XM_EXP_LOG2E 0x1.715476p+0f
#define XM_EXP_LN2_HI 0x1.62e4p-1f
#define XM_EXP_LN2_LO 0x1.7f7d1cp-20f
#define XM_EXP_C1 0x1.ffffecp-1f
#define XM_EXP_C2 0x1.fffdb6p-2f
#define XM_EXP_C3 0x1.555e66p-3f
#define XM_EXP_C4 0x1.573e2ep-5f
#define XM_EXP_C5 0x1.0e4020p-7f

/* p * 2^k rounded once, as ldexpf: p is the polynomial's value (positive, normal, near 1)
 * and |k| <= 192. A float multiply cannot be used on the device: -ftz would flush the
 * subnormal results that ldexpf rounds to nearest even. */
XM_FN float xm_scale2(float p, int k) {
#if defined(__CUDA_ARCH__)
    const uint32_t b = __float_as_uint(p);
    const int e = (int)(b >> 23) + k; /* biased exponent of the result */
    if (e >= 255) return INFINITY;
    if (e > 0) return __uint_as_float((uint32_t)((int32_t)b + k * (1 << 23)));
    /* subnormal: the 24-bit significand shifted right by 1 - e, ties to even */
    const int sh = 1 - e;
    if (sh > 24) return 0.0f;
    const uint32_t m = (b & 0x7fffffu) | 0x800000u;
    uint32_t q = m >> sh;
    const uint32_t rem = m & ((1u << sh) - 1u), half = 1u << (sh - 1);
    if (rem > half || (rem == half && (q & 1u))) q++;
    return __uint_as_float(q);
#else
    return ldexpf(p, k);
#endif
}

/* e^x with cpu_exp1's operations, in its order */
XM_FN float xm_exp(float x) {
    const float k = XM_SUB(XM_FMA(x, XM_EXP_LOG2E, XM_EXP_SHIFT), XM_EXP_SHIFT);
    if (k != k) return XM_ADD(x, x);
    if (fabsf(k) > 192.0f) return k > 0 ? INFINITY : 0.0f;
    const float r = XM_FMA(-k, XM_EXP_LN2_LO, XM_FMA(-k, XM_EXP_LN2_HI, x));
    const float r2 = XM_MUL(r, r);
    const float hi =
        XM_FMA(XM_FMA(XM_EXP_C5, r, XM_EXP_C4), r2, XM_FMA(XM_EXP_C3, r, XM_EXP_C2));
    const float p = XM_FMA(hi, r2, XM_FMA(XM_EXP_C1, r, 1.0f));
    return xm_scale2(p, (int)k);
}

/* cpu_swiglu1: g / (1 + e^-g) * u, in that order */
XM_FN float xm_swiglu(float g, float u) {
    return XM_MUL(XM_DIV(g, XM_ADD(1.0f, xm_exp(-g))), u);
}

/* A 16-lane vector summed as _mm512_reduce_add_ps does (the CPU's sum16_pairwise and
 * reduce16): halves added lane-wise, then quarters, then (t0 + t2) + (t1 + t3). */
XM_FN float xm_sum16(const float v[16]) {
    float a[8], b[4];
    for (int i = 0; i < 8; i++)
        a[i] = XM_ADD(v[i], v[i + 8]);
    for (int i = 0; i < 4; i++)
        b[i] = XM_ADD(a[i], a[i + 4]);
    return XM_ADD(XM_ADD(b[0], b[2]), XM_ADD(b[1], b[3]));
}

/* One rotated pair, as the CPU backend (whose compiler fuses the first product of each
 * output): x0' = fma(x0, cs, -(x1 sn)), x1' = fma(x0, sn, x1 cs). */
XM_FN void xm_rope_rot(float *x0, float *x1, float cs, float sn) {
    const float a = *x0, b = *x1;
    *x0 = XM_FMA(a, cs, -XM_MUL(b, sn));
    *x1 = XM_FMA(a, sn, XM_MUL(b, cs));
}

#endif
