/* Device-side decoding of every weight type, on the repacked layout (cuda_common.cuh):
 *  - dq16<T>: 16 consecutive elements of a row (k0 % 16 == 0) as floats, rounded as
 *    ref.c (no fused multiply-add). Used by get_rows.
 *  - unit_dot<T>: one 16-byte "unit" of quant bytes dotted with the activations
 *    quantized to int8 (32 per scale), with dp4a. Used by the decode matvec.
 * The arithmetic follows src/quant/ref.c (the ground truth). */
#ifndef CHORD_CUDA_QUANT_CUH
#define CHORD_CUDA_QUANT_CUH

#include "cuda_common.cuh"
#include "exact_math.h"
#include "rms_exact.cuh"

#define M4 0x0F0F0F0Fu
#define ONES 0x01010101

__device__ __forceinline__ uint4 ld16(const uint8_t *p) {
    return __ldg(reinterpret_cast<const uint4 *>(p));
}
/* Weights are read once per matvec: keep them out of L1 so the activations stay. */
__device__ __forceinline__ uint4 ld16_stream(const uint8_t *p) {
    uint4 r;
    asm("ld.global.nc.L1::no_allocate.v4.u32 {%0,%1,%2,%3}, [%4];"
        : "=r"(r.x), "=r"(r.y), "=r"(r.z), "=r"(r.w)
        : "l"(p));
    return r;
}
/* Activation loads: generic (not __ldg), as the activations may sit in shared memory
 * (the matvec that quantizes its own input, matvec.cu). */
__device__ __forceinline__ int4 ldx16(const int8_t *p) {
    return *reinterpret_cast<const int4 *>(p);
}
__device__ __forceinline__ float xldf(const float *p) {
    return *p;
}
__device__ __forceinline__ float ldh(const uint8_t *p) {
    return __half2float(__ushort_as_half(__ldg(reinterpret_cast<const unsigned short *>(p))));
}
__device__ __forceinline__ uint32_t ldu16(const uint8_t *p) {
    return __ldg(reinterpret_cast<const unsigned short *>(p));
}
__device__ __forceinline__ int ldb(const uint8_t *p) {
    return __ldg(p);
}
__device__ __forceinline__ float bf16_bits(uint32_t b) {
    return __uint_as_float(b << 16);
}
__device__ __forceinline__ uint32_t byte_of(const uint32_t a[4], int j) {
    return (a[j >> 2] >> (8 * (j & 3))) & 0xFFu;
}

/* Q4_K / Q5_K 6-bit scale and min of sub-block j (as k4_scale_min in ref.c). */
__device__ __forceinline__ void k4_scale_min(const uint8_t *q, int j, int *sc, int *mn) {
    if (j < 4) {
        *sc = ldb(q + j) & 63;
        *mn = ldb(q + j + 4) & 63;
    } else {
        int a = ldb(q + j + 4), lo = ldb(q + j - 4), hi = ldb(q + j);
        *sc = (a & 0x0F) | ((lo >> 6) << 4);
        *mn = (a >> 4) | ((hi >> 6) << 4);
    }
}

/* Q3_K 6-bit scale s (0..15), bias removed. */
__device__ __forceinline__ int q3k_scale(const uint8_t *sc, int s) {
    int lo = (ldb(sc + (s & 7)) >> (4 * (s >> 3))) & 0x0F;
    int hi = (ldb(sc + 8 + (s & 3)) >> (2 * (s >> 2))) & 0x03;
    return (lo | hi << 4) - 32;
}

/* ---------------------------------------------------------------- dq16 */

template <int T>
__device__ __forceinline__ void dq16(const wview &w, int64_t row, int64_t k0, float *o);

template <>
__device__ __forceinline__ void dq16<CHORD_TYPE_F32>(const wview &w, int64_t row, int64_t k0,
                                                     float *o) {
    const float4 *p = reinterpret_cast<const float4 *>(w.q + ((size_t)row * w.n_in + k0) * 4);
#pragma unroll
    for (int i = 0; i < 4; i++) {
        float4 v = __ldg(p + i);
        o[4 * i] = v.x, o[4 * i + 1] = v.y, o[4 * i + 2] = v.z, o[4 * i + 3] = v.w;
    }
}
template <>
__device__ __forceinline__ void dq16<CHORD_TYPE_F16>(const wview &w, int64_t row, int64_t k0,
                                                     float *o) {
    const uint8_t *p = w.q + ((size_t)row * w.n_in + k0) * 2;
#pragma unroll
    for (int i = 0; i < 2; i++) {
        uint4 v = ld16(p + 16 * i);
        const __half2 *h = reinterpret_cast<const __half2 *>(&v);
#pragma unroll
        for (int j = 0; j < 4; j++) {
            float2 f = __half22float2(h[j]);
            o[8 * i + 2 * j] = f.x, o[8 * i + 2 * j + 1] = f.y;
        }
    }
}
template <>
__device__ __forceinline__ void dq16<CHORD_TYPE_BF16>(const wview &w, int64_t row, int64_t k0,
                                                      float *o) {
    const uint8_t *p = w.q + ((size_t)row * w.n_in + k0) * 2;
#pragma unroll
    for (int i = 0; i < 2; i++) {
        uint4 v = ld16(p + 16 * i);
        uint32_t a[4] = {v.x, v.y, v.z, v.w};
#pragma unroll
        for (int j = 0; j < 4; j++) {
            o[8 * i + 2 * j] = __uint_as_float(a[j] << 16);
            o[8 * i + 2 * j + 1] = __uint_as_float(a[j] & 0xFFFF0000u);
        }
    }
}

template <>
__device__ __forceinline__ void dq16<CHORD_TYPE_Q4_0>(const wview &w, int64_t row, int64_t k0,
                                                      float *o) {
    size_t idx = (size_t)row * w.nb + (size_t)(k0 >> 5);
    uint4 v = ld16(w.q + idx * 16);
    float d = ldh(w.s + idx * 2);
    int sh = (k0 & 16) ? 4 : 0;
    uint32_t a[4] = {v.x, v.y, v.z, v.w};
#pragma unroll
    for (int j = 0; j < 16; j++)
        o[j] = d * (float)((int)((byte_of(a, j) >> sh) & 15) - 8);
}
template <>
__device__ __forceinline__ void dq16<CHORD_TYPE_Q4_1>(const wview &w, int64_t row, int64_t k0,
                                                      float *o) {
    size_t idx = (size_t)row * w.nb + (size_t)(k0 >> 5);
    uint4 v = ld16(w.q + idx * 16);
    float d = ldh(w.s + idx * 4), m = ldh(w.s + idx * 4 + 2);
    int sh = (k0 & 16) ? 4 : 0;
    uint32_t a[4] = {v.x, v.y, v.z, v.w};
#pragma unroll
    for (int j = 0; j < 16; j++)
        o[j] = __fadd_rn(__fmul_rn(d, (float)((byte_of(a, j) >> sh) & 15)), m);
}
template <>
__device__ __forceinline__ void dq16<CHORD_TYPE_Q5_0>(const wview &w, int64_t row, int64_t k0,
                                                      float *o) {
    size_t idx = (size_t)row * w.nb + (size_t)(k0 >> 5);
    uint4 v = ld16(w.q + idx * 16);
    const uint8_t *s = w.s + idx * 6;
    float d = ldh(s);
    uint32_t qh = ldu16(s + 2) | ldu16(s + 4) << 16;
    int sh = (k0 & 16) ? 4 : 0, hb = (int)(k0 & 16);
    uint32_t a[4] = {v.x, v.y, v.z, v.w};
#pragma unroll
    for (int j = 0; j < 16; j++) {
        int q = (int)((byte_of(a, j) >> sh) & 15) | (int)(((qh >> (j + hb)) & 1) << 4);
        o[j] = d * (float)(q - 16);
    }
}
template <>
__device__ __forceinline__ void dq16<CHORD_TYPE_Q5_1>(const wview &w, int64_t row, int64_t k0,
                                                      float *o) {
    size_t idx = (size_t)row * w.nb + (size_t)(k0 >> 5);
    uint4 v = ld16(w.q + idx * 16);
    const uint8_t *s = w.s + idx * 8;
    float d = ldh(s), m = ldh(s + 2);
    uint32_t qh = __ldg(reinterpret_cast<const uint32_t *>(s + 4));
    int sh = (k0 & 16) ? 4 : 0, hb = (int)(k0 & 16);
    uint32_t a[4] = {v.x, v.y, v.z, v.w};
#pragma unroll
    for (int j = 0; j < 16; j++) {
        int q = (int)((byte_of(a, j) >> sh) & 15) | (int)(((qh >> (j + hb)) & 1) << 4);
        o[j] = __fadd_rn(__fmul_rn(d, (float)q), m);
    }
}
template <>
__device__ __forceinline__ void dq16<CHORD_TYPE_Q8_0>(const wview &w, int64_t row, int64_t k0,
                                                      float *o) {
    size_t idx = (size_t)row * w.nb + (size_t)(k0 >> 5);
    uint4 v = ld16(w.q + idx * 32 + (k0 & 16));
    float d = ldh(w.s + idx * 2);
    uint32_t a[4] = {v.x, v.y, v.z, v.w};
#pragma unroll
    for (int j = 0; j < 16; j++)
        o[j] = (float)(int8_t)byte_of(a, j) * d;
}
template <>
__device__ __forceinline__ void dq16<CHORD_TYPE_Q2_K>(const wview &w, int64_t row, int64_t k0,
                                                      float *o) {
    size_t idx = (size_t)row * w.nb + (size_t)(k0 >> 8);
    int e = (int)(k0 & 255), half = e >> 7, g = (e >> 5) & 3, l0 = e & 16;
    uint4 v = ld16(w.q + idx * 64 + 32 * half + l0);
    const uint8_t *s = w.s + idx * 20;
    int sc = ldb(s + (e >> 4));
    float d = ldh(s + 16), dmin = ldh(s + 18);
    float dl = d * (float)(sc & 15), ml = dmin * (float)(sc >> 4);
    uint32_t a[4] = {v.x, v.y, v.z, v.w};
#pragma unroll
    for (int j = 0; j < 16; j++)
        o[j] = __fsub_rn(__fmul_rn(dl, (float)((byte_of(a, j) >> (2 * g)) & 3)), ml);
}
template <>
__device__ __forceinline__ void dq16<CHORD_TYPE_Q3_K>(const wview &w, int64_t row, int64_t k0,
                                                      float *o) {
    size_t idx = (size_t)row * w.nb + (size_t)(k0 >> 8);
    int e = (int)(k0 & 255), half = e >> 7, g = (e >> 5) & 3, l0 = e & 16;
    const uint8_t *qb = w.q + idx * 96;
    uint4 vq = ld16(qb + 32 + 32 * half + l0), vh = ld16(qb + l0);
    const uint8_t *s = w.s + idx * 16;
    float dl = ldh(s + 12) * (float)q3k_scale(s, e >> 4);
    int bit = 4 * half + g;
    uint32_t a[4] = {vq.x, vq.y, vq.z, vq.w}, h[4] = {vh.x, vh.y, vh.z, vh.w};
#pragma unroll
    for (int j = 0; j < 16; j++) {
        int q = (int)((byte_of(a, j) >> (2 * g)) & 3) - (((byte_of(h, j) >> bit) & 1) ? 0 : 4);
        o[j] = dl * (float)q;
    }
}
template <>
__device__ __forceinline__ void dq16<CHORD_TYPE_Q4_K>(const wview &w, int64_t row, int64_t k0,
                                                      float *o) {
    size_t idx = (size_t)row * w.nb + (size_t)(k0 >> 8);
    int e = (int)(k0 & 255), c = e >> 6, sh = (e & 32) ? 4 : 0, l0 = e & 16;
    uint4 v = ld16(w.q + idx * 128 + 32 * c + l0);
    const uint8_t *s = w.s + idx * 16;
    int sc, mn;
    k4_scale_min(s + 4, e >> 5, &sc, &mn);
    float dl = ldh(s) * (float)sc, ml = ldh(s + 2) * (float)mn;
    uint32_t a[4] = {v.x, v.y, v.z, v.w};
#pragma unroll
    for (int j = 0; j < 16; j++)
        o[j] = __fsub_rn(__fmul_rn(dl, (float)((byte_of(a, j) >> sh) & 15)), ml);
}
template <>
__device__ __forceinline__ void dq16<CHORD_TYPE_Q5_K>(const wview &w, int64_t row, int64_t k0,
                                                      float *o) {
    size_t idx = (size_t)row * w.nb + (size_t)(k0 >> 8);
    int e = (int)(k0 & 255), c = e >> 6, sh = (e & 32) ? 4 : 0, l0 = e & 16, j5 = e >> 5;
    const uint8_t *qb = w.q + idx * 160;
    uint4 v = ld16(qb + 32 + 32 * c + l0), vh = ld16(qb + l0);
    const uint8_t *s = w.s + idx * 16;
    int sc, mn;
    k4_scale_min(s + 4, j5, &sc, &mn);
    float dl = ldh(s) * (float)sc, ml = ldh(s + 2) * (float)mn;
    uint32_t a[4] = {v.x, v.y, v.z, v.w}, h[4] = {vh.x, vh.y, vh.z, vh.w};
#pragma unroll
    for (int j = 0; j < 16; j++) {
        int q = (int)((byte_of(a, j) >> sh) & 15) + (((byte_of(h, j) >> j5) & 1) ? 16 : 0);
        o[j] = __fsub_rn(__fmul_rn(dl, (float)q), ml);
    }
}
template <>
__device__ __forceinline__ void dq16<CHORD_TYPE_Q6_K>(const wview &w, int64_t row, int64_t k0,
                                                      float *o) {
    size_t idx = (size_t)row * w.nb + (size_t)(k0 >> 8);
    int e = (int)(k0 & 255), half = e >> 7, g = (e >> 5) & 3, l0 = e & 16;
    const uint8_t *qb = w.q + idx * 192;
    uint4 vl = ld16(qb + 64 * half + 32 * (g & 1) + l0), vh = ld16(qb + 128 + 32 * half + l0);
    const uint8_t *s = w.s + idx * 20;
    float dl = ldh(s + 16) * (float)(int8_t)ldb(s + (e >> 4));
    int sh = g >= 2 ? 4 : 0;
    uint32_t a[4] = {vl.x, vl.y, vl.z, vl.w}, h[4] = {vh.x, vh.y, vh.z, vh.w};
#pragma unroll
    for (int j = 0; j < 16; j++) {
        int q =
            (int)(((byte_of(a, j) >> sh) & 15) | (((byte_of(h, j) >> (2 * g)) & 3) << 4)) - 32;
        o[j] = dl * (float)q;
    }
}

/* ---------------------------------------------------------------- qi16 */

/* The 4 low bits of h become bit 4 of the 4 bytes. */
__device__ __forceinline__ uint32_t expand4(uint32_t h) {
    return ((h & 1u) << 4) | ((h & 2u) << 11) | ((h & 4u) << 18) | ((h & 8u) << 25);
}

/* 16 consecutive elements (k0 % 16 == 0, all in one sub-block) as signed 8-bit integers
 * q (offsets such as -8 applied) with w = scale * q - min. Used by the int8 prefill. */
typedef struct q16 {
    uint4 q;
    float scale, min;
} q16;

template <int T> __device__ __forceinline__ q16 qi16(const wview &w, int64_t row, int64_t k0);

template <>
__device__ __forceinline__ q16 qi16<CHORD_TYPE_Q4_0>(const wview &w, int64_t row, int64_t k0) {
    size_t idx = (size_t)row * w.nb + (size_t)(k0 >> 5);
    uint4 v = ld16(w.q + idx * 16);
    int sh = (k0 & 16) ? 4 : 0;
    q16 r;
    r.q = make_uint4(
        __vsub4((v.x >> sh) & M4, 0x08080808u), __vsub4((v.y >> sh) & M4, 0x08080808u),
        __vsub4((v.z >> sh) & M4, 0x08080808u), __vsub4((v.w >> sh) & M4, 0x08080808u));
    r.scale = ldh(w.s + idx * 2);
    r.min = 0.f;
    return r;
}
template <>
__device__ __forceinline__ q16 qi16<CHORD_TYPE_Q4_1>(const wview &w, int64_t row, int64_t k0) {
    size_t idx = (size_t)row * w.nb + (size_t)(k0 >> 5);
    uint4 v = ld16(w.q + idx * 16);
    int sh = (k0 & 16) ? 4 : 0;
    q16 r;
    r.q = make_uint4((v.x >> sh) & M4, (v.y >> sh) & M4, (v.z >> sh) & M4, (v.w >> sh) & M4);
    r.scale = ldh(w.s + idx * 4);
    r.min = -ldh(w.s + idx * 4 + 2);
    return r;
}
template <>
__device__ __forceinline__ q16 qi16<CHORD_TYPE_Q5_0>(const wview &w, int64_t row, int64_t k0) {
    size_t idx = (size_t)row * w.nb + (size_t)(k0 >> 5);
    uint4 v = ld16(w.q + idx * 16);
    const uint8_t *s = w.s + idx * 6;
    uint32_t qh = (ldu16(s + 2) | ldu16(s + 4) << 16) >> (k0 & 16);
    int sh = (k0 & 16) ? 4 : 0;
    q16 r;
    r.q = make_uint4(__vsub4(((v.x >> sh) & M4) | expand4(qh), 0x10101010u),
                     __vsub4(((v.y >> sh) & M4) | expand4(qh >> 4), 0x10101010u),
                     __vsub4(((v.z >> sh) & M4) | expand4(qh >> 8), 0x10101010u),
                     __vsub4(((v.w >> sh) & M4) | expand4(qh >> 12), 0x10101010u));
    r.scale = ldh(s);
    r.min = 0.f;
    return r;
}
template <>
__device__ __forceinline__ q16 qi16<CHORD_TYPE_Q5_1>(const wview &w, int64_t row, int64_t k0) {
    size_t idx = (size_t)row * w.nb + (size_t)(k0 >> 5);
    uint4 v = ld16(w.q + idx * 16);
    const uint8_t *s = w.s + idx * 8;
    uint32_t qh = __ldg(reinterpret_cast<const uint32_t *>(s + 4)) >> (k0 & 16);
    int sh = (k0 & 16) ? 4 : 0;
    q16 r;
    r.q = make_uint4(((v.x >> sh) & M4) | expand4(qh), ((v.y >> sh) & M4) | expand4(qh >> 4),
                     ((v.z >> sh) & M4) | expand4(qh >> 8),
                     ((v.w >> sh) & M4) | expand4(qh >> 12));
    r.scale = ldh(s);
    r.min = -ldh(s + 2);
    return r;
}
template <>
__device__ __forceinline__ q16 qi16<CHORD_TYPE_Q8_0>(const wview &w, int64_t row, int64_t k0) {
    size_t idx = (size_t)row * w.nb + (size_t)(k0 >> 5);
    q16 r;
    r.q = ld16(w.q + idx * 32 + (k0 & 16));
    r.scale = ldh(w.s + idx * 2);
    r.min = 0.f;
    return r;
}
template <>
__device__ __forceinline__ q16 qi16<CHORD_TYPE_Q2_K>(const wview &w, int64_t row, int64_t k0) {
    size_t idx = (size_t)row * w.nb + (size_t)(k0 >> 8);
    int e = (int)(k0 & 255), half = e >> 7, g = (e >> 5) & 3, l0 = e & 16;
    uint4 v = ld16(w.q + idx * 64 + 32 * half + l0);
    const uint8_t *s = w.s + idx * 20;
    int sc = ldb(s + (e >> 4));
    q16 r;
    r.q = make_uint4((v.x >> (2 * g)) & 0x03030303u, (v.y >> (2 * g)) & 0x03030303u,
                     (v.z >> (2 * g)) & 0x03030303u, (v.w >> (2 * g)) & 0x03030303u);
    r.scale = ldh(s + 16) * (float)(sc & 15);
    r.min = ldh(s + 18) * (float)(sc >> 4);
    return r;
}
template <>
__device__ __forceinline__ q16 qi16<CHORD_TYPE_Q3_K>(const wview &w, int64_t row, int64_t k0) {
    size_t idx = (size_t)row * w.nb + (size_t)(k0 >> 8);
    int e = (int)(k0 & 255), half = e >> 7, g = (e >> 5) & 3, l0 = e & 16;
    const uint8_t *qb = w.q + idx * 96;
    uint4 v = ld16(qb + 32 + 32 * half + l0), h = ld16(qb + l0);
    const uint8_t *s = w.s + idx * 16;
    int bit = 4 * half + g;
    q16 r;
    r.q = make_uint4(
        __vsub4(((v.x >> (2 * g)) & 0x03030303u) | (((h.x >> bit) & ONES) << 2), 0x04040404u),
        __vsub4(((v.y >> (2 * g)) & 0x03030303u) | (((h.y >> bit) & ONES) << 2), 0x04040404u),
        __vsub4(((v.z >> (2 * g)) & 0x03030303u) | (((h.z >> bit) & ONES) << 2), 0x04040404u),
        __vsub4(((v.w >> (2 * g)) & 0x03030303u) | (((h.w >> bit) & ONES) << 2), 0x04040404u));
    r.scale = ldh(s + 12) * (float)q3k_scale(s, e >> 4);
    r.min = 0.f;
    return r;
}
template <>
__device__ __forceinline__ q16 qi16<CHORD_TYPE_Q4_K>(const wview &w, int64_t row, int64_t k0) {
    size_t idx = (size_t)row * w.nb + (size_t)(k0 >> 8);
    int e = (int)(k0 & 255), c = e >> 6, sh = (e & 32) ? 4 : 0, l0 = e & 16;
    uint4 v = ld16(w.q + idx * 128 + 32 * c + l0);
    const uint8_t *s = w.s + idx * 16;
    int sc, mn;
    k4_scale_min(s + 4, e >> 5, &sc, &mn);
    q16 r;
    r.q = make_uint4((v.x >> sh) & M4, (v.y >> sh) & M4, (v.z >> sh) & M4, (v.w >> sh) & M4);
    r.scale = ldh(s) * (float)sc;
    r.min = ldh(s + 2) * (float)mn;
    return r;
}
template <>
__device__ __forceinline__ q16 qi16<CHORD_TYPE_Q5_K>(const wview &w, int64_t row, int64_t k0) {
    size_t idx = (size_t)row * w.nb + (size_t)(k0 >> 8);
    int e = (int)(k0 & 255), c = e >> 6, sh = (e & 32) ? 4 : 0, l0 = e & 16, j5 = e >> 5;
    const uint8_t *qb = w.q + idx * 160;
    uint4 v = ld16(qb + 32 + 32 * c + l0), h = ld16(qb + l0);
    const uint8_t *s = w.s + idx * 16;
    int sc, mn;
    k4_scale_min(s + 4, j5, &sc, &mn);
    q16 r;
    r.q = make_uint4(((v.x >> sh) & M4) | (((h.x >> j5) & ONES) << 4),
                     ((v.y >> sh) & M4) | (((h.y >> j5) & ONES) << 4),
                     ((v.z >> sh) & M4) | (((h.z >> j5) & ONES) << 4),
                     ((v.w >> sh) & M4) | (((h.w >> j5) & ONES) << 4));
    r.scale = ldh(s) * (float)sc;
    r.min = ldh(s + 2) * (float)mn;
    return r;
}
template <>
__device__ __forceinline__ q16 qi16<CHORD_TYPE_Q6_K>(const wview &w, int64_t row, int64_t k0) {
    size_t idx = (size_t)row * w.nb + (size_t)(k0 >> 8);
    int e = (int)(k0 & 255), half = e >> 7, g = (e >> 5) & 3, l0 = e & 16;
    const uint8_t *qb = w.q + idx * 192;
    uint4 vl = ld16(qb + 64 * half + 32 * (g & 1) + l0), vh = ld16(qb + 128 + 32 * half + l0);
    const uint8_t *s = w.s + idx * 20;
    int sh = g >= 2 ? 4 : 0;
    q16 r;
    r.q = make_uint4(
        __vsub4(((vl.x >> sh) & M4) | (((vh.x >> (2 * g)) & 0x03030303u) << 4), 0x20202020u),
        __vsub4(((vl.y >> sh) & M4) | (((vh.y >> (2 * g)) & 0x03030303u) << 4), 0x20202020u),
        __vsub4(((vl.z >> sh) & M4) | (((vh.z >> (2 * g)) & 0x03030303u) << 4), 0x20202020u),
        __vsub4(((vl.w >> sh) & M4) | (((vh.w >> (2 * g)) & 0x03030303u) << 4), 0x20202020u));
    r.scale = ldh(s + 16) * (float)(int8_t)ldb(s + (e >> 4));
    r.min = 0.f;
    return r;
}

/* One element of a float-type row (any alignment). */
template <int T>
__device__ __forceinline__ float ld_elem(const wview &w, int64_t row, int64_t k) {
    size_t i = (size_t)row * w.n_in + k;
    if (T == CHORD_TYPE_F32) return __ldg(reinterpret_cast<const float *>(w.q) + i);
    uint32_t b = __ldg(reinterpret_cast<const unsigned short *>(w.q) + i);
    if (T == CHORD_TYPE_F16) return __half2float(__ushort_as_half((unsigned short)b));
    return bf16_bits(b);
}

/* ------------------------------------------- activation quantization */

/* Q4_K chunk order of one token's activations (xact.qc), for the decode kernel's loads
 * (q4k_load_pair): in a round of 32 chunks (2048 elements), lane L holds half h = L & 1 of
 * chunk j = L / 2 (load a) and of chunk 16 + L / 2 (load b); each half is 16 low nibbles
 * (sub-block 2c) and 16 high ones (sub-block 2c + 1). The 16 activations of piece p
 * (0 / 1: a's low / high, 2 / 3: b's) go to 2048 g + 512 p + 16 L, so that each of a
 * warp's four activation loads reads 512 contiguous bytes (4 L1 lines). q4k_co: where the
 * 8 activations 8 l .. 8 l + 7 of superblock b go (a permutation within each 2048; the
 * buffer is padded to a multiple of 2048). */
__host__ __device__ constexpr int64_t q4k_co(int64_t b, int l) {
    /* chunk j of the round, element 8 (l & 7) of the chunk: high nibbles from 32 */
    return 2048 * (b >> 3) + 512 * (2 * ((4 * (b & 7) + (l >> 3)) >> 4) + ((l >> 2) & 1)) +
           16 * (2 * ((4 * (b & 7) + (l >> 3)) & 15) + ((l >> 1) & 1)) + 8 * (l & 1);
}

/* One warp quantizes activation block b (QB = 32 or 256 values; lane holds elements
 * b * QB + lane * PER + i in v[i], PER = QB / 32) as the CPU backend does: d = amax / 127
 * (QB 32) or 1 / (127 / amax) (QB 256),
 * q = rint(x * (127 / amax)), each step correctly rounded; bs = sum of each 16 q. QB = 32
 * then stores d rounded to half and s = half(d * sum), as llama.cpp's Q8_0 / Q8_1. QB = 256
 * also stores q in Q4_K chunk order to xqc when given (q4k_co). */
template <int QB>
__device__ __forceinline__ void quant_store(const float *v, int lane, int64_t b,
                                            int8_t *__restrict__ xq, float *__restrict__ xd,
                                            int16_t *__restrict__ bs, float *__restrict__ xs,
                                            int8_t *__restrict__ xqc) {
    constexpr int PER = QB / 32;
    float a = 0.f;
#pragma unroll
    for (int i = 0; i < PER; i++)
        a = fmaxf(a, fabsf(v[i]));
#pragma unroll
    for (int o = 16; o > 0; o >>= 1)
        a = fmaxf(a, __shfl_xor_sync(0xffffffffu, a, o));
    const float id = a > 0.f ? __fdiv_rn(127.0f, a) : 0.f;
    int sum = 0;
    int8_t q[PER];
#pragma unroll
    for (int i = 0; i < PER; i++) {
        int qi = __float2int_rn(__fmul_rn(v[i], id));
        q[i] = (int8_t)qi;
        sum += qi;
    }
    /* per 256 the CPU (= llama.cpp's Q8_K) keeps d = 1 / (127 / amax), which can differ
     * from amax / 127 in the last bit */
    const float d = PER == 1 ? __fdiv_rn(a, 127.0f) : (a > 0.f ? __fdiv_rn(1.0f, id) : 0.f);
    if constexpr (PER == 1) {
        xq[b * QB + lane] = q[0];
        /* sums of lanes 0..15 and 16..31, then of all 32 */
#pragma unroll
        for (int o = 8; o > 0; o >>= 1)
            sum += __shfl_xor_sync(0xffffffffu, sum, o);
        if ((lane & 15) == 0) bs[b * 2 + (lane >> 4)] = (int16_t)sum;
        sum += __shfl_xor_sync(0xffffffffu, sum, 16);
        if (lane == 0) {
            xd[b] = __half2float(__float2half_rn(d));
            xs[b] = __half2float(__float2half_rn(__fmul_rn(d, (float)sum)));
        }
    } else {
        uint2 pk;
        pk.x = (uint32_t)(uint8_t)q[0] | (uint32_t)(uint8_t)q[1] << 8 |
               (uint32_t)(uint8_t)q[2] << 16 | (uint32_t)(uint8_t)q[3] << 24;
        pk.y = (uint32_t)(uint8_t)q[4] | (uint32_t)(uint8_t)q[5] << 8 |
               (uint32_t)(uint8_t)q[6] << 16 | (uint32_t)(uint8_t)q[7] << 24;
        *reinterpret_cast<uint2 *>(xq + b * QB + lane * PER) = pk;
        if (xqc) *reinterpret_cast<uint2 *>(xqc + q4k_co(b, lane)) = pk;
        sum += __shfl_xor_sync(0xffffffffu, sum, 1); /* two lanes hold 16 */
        if ((lane & 1) == 0) bs[b * 16 + (lane >> 1)] = (int16_t)sum;
        if (lane == 0) xd[b] = d;
    }
}

/* silu(g) * u and 1 / rms(row) rounded exactly as the CPU backend (exact_math.h,
 * rms_exact.cuh): the input-quantizing matvec path must agree with the separate kernels */
__device__ __forceinline__ float silu_mul(float g, float u) {
    return xm_swiglu(g, u);
}

__device__ __forceinline__ float rms_scale(const float *__restrict__ xr, int dim, float eps) {
    return rms_scale_exact(xr, dim, eps);
}

/* ----------------------------------------------------- decode dot units */

/* Units per block of the type: each unit is 16 bytes of its main quant array. */
__host__ __device__ constexpr int units_per_block(int t) {
    return t == CHORD_TYPE_Q4_K || t == CHORD_TYPE_Q5_K || t == CHORD_TYPE_Q6_K ? 8
           : t == CHORD_TYPE_Q2_K || t == CHORD_TYPE_Q3_K                       ? 4
                                                                                : 1;
}

__device__ __forceinline__ int dot16(uint32_t w0, uint32_t w1, uint32_t w2, uint32_t w3, int4 x,
                                     int acc) {
    acc = __dp4a((int)w0, x.x, acc);
    acc = __dp4a((int)w1, x.y, acc);
    acc = __dp4a((int)w2, x.z, acc);
    return __dp4a((int)w3, x.w, acc);
}

__device__ __forceinline__ float half_lo(uint32_t v) {
    return __half2float(__ushort_as_half((unsigned short)(v & 0xFFFFu)));
}
__device__ __forceinline__ float half_hi(uint32_t v) {
    return __half2float(__ushort_as_half((unsigned short)(v >> 16)));
}
/* byte j (run time) of the 12 bytes a, b, c */
__device__ __forceinline__ int byte12(uint32_t a, uint32_t b, uint32_t c, int j) {
    uint32_t w = j < 4 ? a : (j < 8 ? b : c);
    return (int)((w >> (8 * (j & 3))) & 0xFFu);
}
/* k4_scale_min from the 12 scale bytes held in registers */
__device__ __forceinline__ void k4_sm_reg(uint32_t a, uint32_t b, uint32_t c, int j, int *sc,
                                          int *mn) {
    if (j < 4) {
        *sc = byte12(a, b, c, j) & 63;
        *mn = byte12(a, b, c, j + 4) & 63;
    } else {
        int x = byte12(a, b, c, j + 4), lo = byte12(a, b, c, j - 4), hi = byte12(a, b, c, j);
        *sc = (x & 0x0F) | ((lo >> 6) << 4);
        *mn = (x >> 4) | ((hi >> 6) << 4);
    }
}

/* One unit's weight bytes, loaded before any arithmetic so a lane has several units'
 * loads in flight: a, b quant bytes; s0..s3 the scale words it needs. */
typedef struct uraw {
    uint4 a, b;
    uint32_t s0, s1, s2, s3;
} uraw;

/* Activations of the matvec: q int8, d per act_block, bs sum of each 16 q. */
typedef struct xact {
    const int8_t *q;
    const float *d;
    const int16_t *bs;
    const float *s;   /* qb = 32: half(d * sum q) per block, for weights with a min */
    const int8_t *qc; /* qb = 256, decode: q in Q4_K chunk order (q4k_co), or NULL */
} xact;

template <int T> __device__ __forceinline__ uraw unit_load(const wview &w, int64_t row, int u);
template <int T> __device__ __forceinline__ float unit_dot(const uraw &r, int u, const xact &x);

/* ---- 32-element blocks: unit u is block u of the row; x scale per 32 ---- */
template <>
__device__ __forceinline__ uraw unit_load<CHORD_TYPE_Q4_0>(const wview &w, int64_t row, int u) {
    size_t idx = (size_t)row * w.nb + u;
    uraw r;
    r.a = ld16_stream(w.q + idx * 16);
    r.s0 = ldu16(w.s + idx * 2);
    return r;
}
template <>
__device__ __forceinline__ uraw unit_load<CHORD_TYPE_Q4_1>(const wview &w, int64_t row, int u) {
    size_t idx = (size_t)row * w.nb + u;
    uraw r;
    r.a = ld16_stream(w.q + idx * 16);
    r.s0 = __ldg(reinterpret_cast<const uint32_t *>(w.s + idx * 4));
    return r;
}
template <>
__device__ __forceinline__ uraw unit_load<CHORD_TYPE_Q5_0>(const wview &w, int64_t row, int u) {
    size_t idx = (size_t)row * w.nb + u;
    const uint8_t *s = w.s + idx * 6;
    uraw r;
    r.a = ld16_stream(w.q + idx * 16);
    r.s0 = ldu16(s);
    r.s1 = ldu16(s + 2) | ldu16(s + 4) << 16;
    return r;
}
template <>
__device__ __forceinline__ uraw unit_load<CHORD_TYPE_Q5_1>(const wview &w, int64_t row, int u) {
    size_t idx = (size_t)row * w.nb + u;
    uraw r;
    r.a = ld16_stream(w.q + idx * 16);
    uint2 s = __ldg(reinterpret_cast<const uint2 *>(w.s + idx * 8));
    r.s0 = s.x, r.s1 = s.y;
    return r;
}
template <>
__device__ __forceinline__ uraw unit_load<CHORD_TYPE_Q8_0>(const wview &w, int64_t row, int u) {
    size_t idx = (size_t)row * w.nb + u;
    uraw r;
    r.a = ld16_stream(w.q + idx * 32);
    r.b = ld16_stream(w.q + idx * 32 + 16);
    r.s0 = ldu16(w.s + idx * 2);
    return r;
}

/* nibbles of a (low: elements 0..15, high: 16..31) against x block u */
__device__ __forceinline__ int dot_q4(const uint4 &v, int4 x0, int4 x1) {
    int si = dot16(v.x & M4, v.y & M4, v.z & M4, v.w & M4, x0, 0);
    return dot16((v.x >> 4) & M4, (v.y >> 4) & M4, (v.z >> 4) & M4, (v.w >> 4) & M4, x1, si);
}
__device__ __forceinline__ int dot_q5(const uint4 &v, uint32_t qh, int4 x0, int4 x1) {
    int si = dot16((v.x & M4) | expand4(qh), (v.y & M4) | expand4(qh >> 4),
                   (v.z & M4) | expand4(qh >> 8), (v.w & M4) | expand4(qh >> 12), x0, 0);
    return dot16(((v.x >> 4) & M4) | expand4(qh >> 16), ((v.y >> 4) & M4) | expand4(qh >> 20),
                 ((v.z >> 4) & M4) | expand4(qh >> 24), ((v.w >> 4) & M4) | expand4(qh >> 28),
                 x1, si);
}

template <>
__device__ __forceinline__ float unit_dot<CHORD_TYPE_Q4_0>(const uraw &r, int u,
                                                           const xact &x) {
    int4 x0 = ldx16(x.q + 32 * u), x1 = ldx16(x.q + 32 * u + 16);
    int sx = x.bs[2 * u] + x.bs[2 * u + 1];
    return half_lo(r.s0) * xldf(x.d + u) * (float)(dot_q4(r.a, x0, x1) - 8 * sx);
}
template <>
__device__ __forceinline__ float unit_dot<CHORD_TYPE_Q4_1>(const uraw &r, int u,
                                                           const xact &x) {
    int4 x0 = ldx16(x.q + 32 * u), x1 = ldx16(x.q + 32 * u + 16);
    return xldf(x.d + u) * half_lo(r.s0) * (float)dot_q4(r.a, x0, x1) +
           half_hi(r.s0) * xldf(x.s + u);
}
template <>
__device__ __forceinline__ float unit_dot<CHORD_TYPE_Q5_0>(const uraw &r, int u,
                                                           const xact &x) {
    int4 x0 = ldx16(x.q + 32 * u), x1 = ldx16(x.q + 32 * u + 16);
    int sx = x.bs[2 * u] + x.bs[2 * u + 1];
    return half_lo(r.s0) * xldf(x.d + u) * (float)(dot_q5(r.a, r.s1, x0, x1) - 16 * sx);
}
template <>
__device__ __forceinline__ float unit_dot<CHORD_TYPE_Q5_1>(const uraw &r, int u,
                                                           const xact &x) {
    int4 x0 = ldx16(x.q + 32 * u), x1 = ldx16(x.q + 32 * u + 16);
    return xldf(x.d + u) * half_lo(r.s0) * (float)dot_q5(r.a, r.s1, x0, x1) +
           half_hi(r.s0) * xldf(x.s + u);
}
template <>
__device__ __forceinline__ float unit_dot<CHORD_TYPE_Q8_0>(const uraw &r, int u,
                                                           const xact &x) {
    int4 x0 = ldx16(x.q + 32 * u), x1 = ldx16(x.q + 32 * u + 16);
    int si = dot16(r.a.x, r.a.y, r.a.z, r.a.w, x0, 0);
    si = dot16(r.b.x, r.b.y, r.b.z, r.b.w, x1, si);
    return half_lo(r.s0) * xldf(x.d + u) * (float)si;
}

/* ---- K-quants: 256-element superblocks; x scale per 256 ---- */
template <>
__device__ __forceinline__ uraw unit_load<CHORD_TYPE_Q2_K>(const wview &w, int64_t row, int u) {
    int b = u >> 2, i = u & 3, hh = i >> 1, l0 = (i & 1) * 16;
    size_t idx = (size_t)row * w.nb + b;
    const uint32_t *s = reinterpret_cast<const uint32_t *>(w.s + idx * 20);
    uraw r;
    r.a = ld16_stream(w.q + idx * 64 + 32 * hh + l0);
    r.s0 = __ldg(s + 2 * hh);
    r.s1 = __ldg(s + 2 * hh + 1);
    r.s2 = __ldg(s + 4);
    return r;
}
template <>
__device__ __forceinline__ float unit_dot<CHORD_TYPE_Q2_K>(const uraw &r, int u,
                                                           const xact &x) {
    int b = u >> 2, i = u & 3, hh = i >> 1, l0 = (i & 1) * 16;
    float d = half_lo(r.s2), dmin = half_hi(r.s2);
    int e0 = 256 * b + 128 * hh + l0;
    float acc = 0.f;
#pragma unroll
    for (int g = 0; g < 4; g++) {
        int4 xv = ldx16(x.q + e0 + 32 * g);
        int si =
            dot16((r.a.x >> (2 * g)) & 0x03030303u, (r.a.y >> (2 * g)) & 0x03030303u,
                  (r.a.z >> (2 * g)) & 0x03030303u, (r.a.w >> (2 * g)) & 0x03030303u, xv, 0);
        int sx = x.bs[(e0 + 32 * g) >> 4];
        int j = 2 * g + (l0 >> 4);
        int sc = (int)(((j < 4 ? r.s0 : r.s1) >> (8 * (j & 3))) & 0xFFu);
        acc += d * (float)((sc & 15) * si) - dmin * (float)((sc >> 4) * sx);
    }
    return xldf(x.d + b) * acc;
}
template <>
__device__ __forceinline__ uraw unit_load<CHORD_TYPE_Q3_K>(const wview &w, int64_t row, int u) {
    int b = u >> 2, i = u & 3, hh = i >> 1, l0 = (i & 1) * 16;
    size_t idx = (size_t)row * w.nb + b;
    const uint8_t *qb = w.q + idx * 96;
    uraw r;
    r.a = ld16_stream(qb + 32 + 32 * hh + l0);
    r.b = ld16_stream(qb + l0);
    uint4 s = ld16(w.s + idx * 16);
    r.s0 = s.x, r.s1 = s.y, r.s2 = s.z, r.s3 = s.w;
    return r;
}
template <>
__device__ __forceinline__ float unit_dot<CHORD_TYPE_Q3_K>(const uraw &r, int u,
                                                           const xact &x) {
    int b = u >> 2, i = u & 3, hh = i >> 1, l0 = (i & 1) * 16;
    int e0 = 256 * b + 128 * hh + l0;
    float acc = 0.f;
#pragma unroll
    for (int g = 0; g < 4; g++) {
        int4 xv = ldx16(x.q + e0 + 32 * g);
        int bit = 4 * hh + g;
        int si =
            dot16(((r.a.x >> (2 * g)) & 0x03030303u) | (((r.b.x >> bit) & ONES) << 2),
                  ((r.a.y >> (2 * g)) & 0x03030303u) | (((r.b.y >> bit) & ONES) << 2),
                  ((r.a.z >> (2 * g)) & 0x03030303u) | (((r.b.z >> bit) & ONES) << 2),
                  ((r.a.w >> (2 * g)) & 0x03030303u) | (((r.b.w >> bit) & ONES) << 2), xv, 0);
        int sx = x.bs[(e0 + 32 * g) >> 4];
        int sub = 8 * hh + 2 * g + (l0 >> 4);
        int lo = (byte12(r.s0, r.s1, r.s2, sub & 7) >> (4 * (sub >> 3))) & 0x0F;
        int hi = (byte12(r.s0, r.s1, r.s2, 8 + (sub & 3)) >> (2 * (sub >> 2))) & 0x03;
        acc += (float)(((lo | hi << 4) - 32) * (si - 4 * sx));
    }
    return half_lo(r.s3) * xldf(x.d + b) * acc;
}
/* Q4_K decode with a lane's constants hoisted (mv_rows). A lane's units u = lane + 32 k
 * all have the same position in their superblock, so the sub-block pair c it dots, the
 * element offset and the scale bytes' shifts are fixed; sub-blocks 4..7 take their 6-bit
 * scale and min from the low / high nibble of bytes 8..11 plus the top two bits of bytes
 * 0..7 (m1 / m2 select that per lane without a branch). */
typedef struct k4_sel {
    int sh;  /* bit position of sub-block 2c's scale byte in its word */
    bool hi; /* c >= 2: sub-blocks 4..7 */
    uint32_t m1, m2;
} k4_sel;

__device__ __forceinline__ k4_sel k4_sel_of(int c) {
    k4_sel S;
    S.sh = 16 * (c & 1);
    S.hi = c >= 2;
    S.m1 = S.hi ? 0x0F0Fu : 0x3F3Fu;
    S.m2 = S.hi ? 0x3030u : 0u;
    return S;
}

/* 16-byte scale entry of superblock b of the row whose scale bytes start at s */
__device__ __forceinline__ void k4_scales_load(uraw &r, const uint8_t *s, int b) {
    uint4 v = ld16(s + (size_t)b * 16);
    r.s0 = v.x, r.s1 = v.y, r.s2 = v.z, r.s3 = v.w;
}

/* d * (scl * sil + sch * sih) - dmin * (mnl * sxl + mnh * sxh) of sub-blocks 2c, 2c + 1
 * (integer dots sil / sih, activation sums sxl / sxh), times the activation scale xd */
__device__ __forceinline__ float k4_pair(const uraw &r, const k4_sel &S, int sil, int sih,
                                         int sxl, int sxh, float xd) {
    const uint32_t A = r.s1 >> S.sh, B = r.s2 >> S.sh, C = r.s3 >> S.sh;
    const uint32_t X = S.hi ? C : A, Y = S.hi ? C >> 4 : B;
    const uint32_t sc = (X & S.m1) | ((A >> 2) & S.m2); /* bytes: scale 2c, 2c + 1 */
    const uint32_t mn = (Y & S.m1) | ((B >> 2) & S.m2);
    const int scl = (int)(sc & 0xFFu), sch = (int)((sc >> 8) & 0xFFu);
    const int mnl = (int)(mn & 0xFFu), mnh = (int)((mn >> 8) & 0xFFu);
    return xd * (half_lo(r.s0) * (float)(scl * sil + sch * sih) -
                 half_hi(r.s0) * (float)(mnl * sxl + mnh * sxh));
}

/* By 16-byte units (rows up to 2048; each unit half of a chunk: the low or high 16 of
 * its 32 bytes). About half the instructions of decoding the scales per unit (7th session
 * NOTES.md), bit-identical to that. */
typedef struct q4ku_lane {
    int e;    /* element offset of the unit in its superblock: 64 c + l0 */
    int qoff; /* byte offset of its quant bytes in the superblock: 32 c + l0 */
    k4_sel S;
} q4ku_lane;

__device__ __forceinline__ q4ku_lane q4ku_lane_of(int lane) {
    const int i = lane & 7, c = i >> 1, l0 = (i & 1) * 16;
    q4ku_lane L;
    L.e = 64 * c + l0;
    L.qoff = 32 * c + l0;
    L.S = k4_sel_of(c);
    return L;
}

/* unit of superblock b (of the row whose quant / scale bytes start at q / s) */
__device__ __forceinline__ uraw q4ku_load(const uint8_t *q, const uint8_t *s, int b,
                                          const q4ku_lane &L) {
    uraw r;
    r.a = ld16_stream(q + (size_t)b * 128 + L.qoff);
    k4_scales_load(r, s, b);
    return r;
}

__device__ __forceinline__ float q4ku_dot(const uraw &r, int b, const q4ku_lane &L,
                                          const xact &x) {
    const int el = 256 * b + L.e;
    int4 xl = ldx16(x.q + el), xh = ldx16(x.q + el + 32);
    int sil = dot16(r.a.x & M4, r.a.y & M4, r.a.z & M4, r.a.w & M4, xl, 0);
    int sih = dot16((r.a.x >> 4) & M4, (r.a.y >> 4) & M4, (r.a.z >> 4) & M4, (r.a.w >> 4) & M4,
                    xh, 0);
    return k4_pair(r, L.S, sil, sih, x.bs[el >> 4], x.bs[(el >> 4) + 2], xldf(x.d + b));
}

/* By 32-byte chunks (rows over 2048): chunk c of a superblock holds sub-blocks 2c (low
 * nibbles) and 2c + 1 (high nibbles), 64 elements with one scale / min pair each, so a
 * lane dots both halves before any float arithmetic: half the instructions per byte of
 * the units, but the two halves' integer sums are added first (not bit-identical). */
#define Q4K_CHUNKS 4 /* per superblock */

typedef struct q4k_lane {
    int c; /* chunk in the superblock */
    k4_sel S;
} q4k_lane;

/* the input-quantizing kernel's lanes: lane L dots chunk L & 3 of superblock L / 4 */
__device__ __forceinline__ q4k_lane q4k_lane_of(int lane) {
    q4k_lane L;
    L.c = lane & 3;
    L.S = k4_sel_of(L.c);
    return L;
}

/* chunk of superblock b (of the row whose quant / scale bytes start at q / s) */
__device__ __forceinline__ uraw q4k_load(const uint8_t *q, const uint8_t *s, int b,
                                         const q4k_lane &L) {
    uraw r;
    const uint8_t *qc = q + (size_t)b * 128 + 32 * L.c;
    r.a = ld16_stream(qc);
    r.b = ld16_stream(qc + 16);
    k4_scales_load(r, s, b);
    return r;
}

/* The decode kernel's lanes (mv_rows_ch), rounds of 32 chunks from chunk cs. A lane that
 * loaded both halves of its chunk (32 bytes apart) made each load fetch 32-byte sectors
 * of which it used 16: twice the L2 traffic. Here each load of a warp reads 512
 * contiguous bytes: lane L gets half L & 1 of chunk cs + L / 2 (a) and of chunk
 * cs + 16 + L / 2 (b), dots both halves, and lane pairs trade the halves' integer sums:
 * lane L then finishes chunk cs + q4k_own(L) with the same integers as a whole-chunk dot. */
__device__ __forceinline__ int q4k_own(int lane) {
    return ((lane & 1) << 4) | (lane >> 1);
}
__device__ __forceinline__ q4k_lane q4k_lane_pair(int lane) {
    q4k_lane L;
    L.c = (lane >> 1) & 3;
    L.S = k4_sel_of(L.c);
    return L;
}
__device__ __forceinline__ uraw q4k_load_pair(const uint8_t *q, const uint8_t *s, int cs,
                                              int n_ch, int lane) {
    uraw r;
    const uint4 z = make_uint4(0, 0, 0, 0);
    const uint8_t *p = q + (size_t)cs * 32 + 16 * lane;
    r.a = cs + (lane >> 1) < n_ch ? ld16_stream(p) : z;
    r.b = cs + 16 + (lane >> 1) < n_ch ? ld16_stream(p + 512) : z;
    const int own = cs + q4k_own(lane);
    if (own < n_ch)
        k4_scales_load(r, s, own >> 2);
    else
        r.s0 = r.s1 = r.s2 = r.s3 = 0;
    return r;
}
/* the lane's 64 activations of the round from chunk cs (xact.qc), loaded once per round
 * for all the warp's rows (loads after a shuffle are not merged with those before it) */
typedef struct q4k_act {
    int4 al, ah, bl, bh;
} q4k_act;
__device__ __forceinline__ q4k_act q4k_act_pair(int cs, int lane, const xact &x) {
    const int8_t *xp = x.qc + 64 * cs + 16 * lane;
    q4k_act a;
    a.al = ldx16(xp);
    a.ah = ldx16(xp + 512);
    a.bl = ldx16(xp + 1024);
    a.bh = ldx16(xp + 1536);
    return a;
}
/* the integer dots of the lane's two halves (low / high nibbles of a, of b) */
__device__ __forceinline__ int4 q4k_part(const uraw &r, const q4k_act &x) {
    int4 p;
    p.x = dot16(r.a.x & M4, r.a.y & M4, r.a.z & M4, r.a.w & M4, x.al, 0);
    p.y = dot16((r.a.x >> 4) & M4, (r.a.y >> 4) & M4, (r.a.z >> 4) & M4, (r.a.w >> 4) & M4,
                x.ah, 0);
    p.z = dot16(r.b.x & M4, r.b.y & M4, r.b.z & M4, r.b.w & M4, x.bl, 0);
    p.w = dot16((r.b.x >> 4) & M4, (r.b.y >> 4) & M4, (r.b.z >> 4) & M4, (r.b.w >> 4) & M4,
                x.bh, 0);
    return p;
}
/* all 32 lanes (shuffles): even lanes own chunk a, odd lanes chunk b; each sends its
 * partner the sums of the other one and gets the integer dots (sil, sih) of its own */
__device__ __forceinline__ void q4k_trade(const int4 &p, int lane, int &sil, int &sih) {
    const bool odd = lane & 1;
    const int gl = __shfl_xor_sync(0xffffffffu, odd ? p.x : p.z, 1);
    const int gh = __shfl_xor_sync(0xffffffffu, odd ? p.y : p.w, 1);
    sil = (odd ? p.z : p.x) + gl;
    sih = (odd ? p.w : p.y) + gh;
}
/* chunk L.c of superblock b, from its integer dots */
__device__ __forceinline__ float q4k_finish(const uraw &r, int b, const q4k_lane &L,
                                            const xact &x, int sil, int sih) {
    const short4 bs = *reinterpret_cast<const short4 *>(x.bs + ((256 * b + 64 * L.c) >> 4));
    return k4_pair(r, L.S, sil, sih, bs.x + bs.y, bs.z + bs.w, xldf(x.d + b));
}

/* the input-quantizing kernel's chunk dot, activations in natural order */
__device__ __forceinline__ float q4k_dot(const uraw &r, int b, const q4k_lane &L,
                                         const xact &x) {
    const int el = 256 * b + 64 * L.c;
    const int8_t *xp = x.q + el;
    const int4 x0 = ldx16(xp), x1 = ldx16(xp + 16);
    const int4 x2 = ldx16(xp + 32), x3 = ldx16(xp + 48);
    int sil = dot16(r.a.x & M4, r.a.y & M4, r.a.z & M4, r.a.w & M4, x0, 0);
    sil = dot16(r.b.x & M4, r.b.y & M4, r.b.z & M4, r.b.w & M4, x1, sil);
    int sih = dot16((r.a.x >> 4) & M4, (r.a.y >> 4) & M4, (r.a.z >> 4) & M4, (r.a.w >> 4) & M4,
                    x2, 0);
    sih = dot16((r.b.x >> 4) & M4, (r.b.y >> 4) & M4, (r.b.z >> 4) & M4, (r.b.w >> 4) & M4, x3,
                sih);
    return q4k_finish(r, b, L, x, sil, sih);
}

template <>
__device__ __forceinline__ uraw unit_load<CHORD_TYPE_Q5_K>(const wview &w, int64_t row, int u) {
    int b = u >> 3, i = u & 7, c = i >> 1, l0 = (i & 1) * 16;
    size_t idx = (size_t)row * w.nb + b;
    const uint8_t *qb = w.q + idx * 160;
    uraw r;
    r.a = ld16_stream(qb + 32 + 32 * c + l0);
    r.b = ld16(qb + l0);
    uint4 s = ld16(w.s + idx * 16);
    r.s0 = s.x, r.s1 = s.y, r.s2 = s.z, r.s3 = s.w;
    return r;
}
template <>
__device__ __forceinline__ float unit_dot<CHORD_TYPE_Q5_K>(const uraw &r, int u,
                                                           const xact &x) {
    int b = u >> 3, i = u & 7, c = i >> 1, l0 = (i & 1) * 16;
    int el = 256 * b + 64 * c + l0;
    int4 xl = ldx16(x.q + el), xh = ldx16(x.q + el + 32);
    int bl = 2 * c, bh = 2 * c + 1;
    const uint4 &v = r.a, &h = r.b;
    int sil = dot16((v.x & M4) | (((h.x >> bl) & ONES) << 4),
                    (v.y & M4) | (((h.y >> bl) & ONES) << 4),
                    (v.z & M4) | (((h.z >> bl) & ONES) << 4),
                    (v.w & M4) | (((h.w >> bl) & ONES) << 4), xl, 0);
    int sih = dot16(((v.x >> 4) & M4) | (((h.x >> bh) & ONES) << 4),
                    ((v.y >> 4) & M4) | (((h.y >> bh) & ONES) << 4),
                    ((v.z >> 4) & M4) | (((h.z >> bh) & ONES) << 4),
                    ((v.w >> 4) & M4) | (((h.w >> bh) & ONES) << 4), xh, 0);
    int sxl = x.bs[el >> 4], sxh = x.bs[(el >> 4) + 2];
    int scl, mnl, sch, mnh;
    k4_sm_reg(r.s1, r.s2, r.s3, bl, &scl, &mnl);
    k4_sm_reg(r.s1, r.s2, r.s3, bh, &sch, &mnh);
    return xldf(x.d + b) * (half_lo(r.s0) * (float)(scl * sil + sch * sih) -
                            half_hi(r.s0) * (float)(mnl * sxl + mnh * sxh));
}
template <>
__device__ __forceinline__ uraw unit_load<CHORD_TYPE_Q6_K>(const wview &w, int64_t row, int u) {
    int b = u >> 3, i = u & 7, hh = i >> 2, k = (i >> 1) & 1, l0 = (i & 1) * 16;
    size_t idx = (size_t)row * w.nb + b;
    const uint8_t *qb = w.q + idx * 192;
    const uint32_t *s = reinterpret_cast<const uint32_t *>(w.s + idx * 20);
    uraw r;
    r.a = ld16_stream(qb + 64 * hh + 32 * k + l0);
    r.b = ld16(qb + 128 + 32 * hh + l0);
    r.s0 = __ldg(s + 2 * hh);
    r.s1 = __ldg(s + 2 * hh + 1);
    r.s2 = __ldg(s + 4);
    return r;
}
template <>
__device__ __forceinline__ float unit_dot<CHORD_TYPE_Q6_K>(const uraw &r, int u,
                                                           const xact &x) {
    int b = u >> 3, i = u & 7, hh = i >> 2, k = (i >> 1) & 1, l0 = (i & 1) * 16;
    int el = 256 * b + 128 * hh + 32 * k + l0, eh = el + 64;
    int4 xl = ldx16(x.q + el), xh = ldx16(x.q + eh);
    int bl = 2 * k, bh = 2 * k + 4;
    const uint4 &v = r.a, &h = r.b;
    int sil = dot16((v.x & M4) | (((h.x >> bl) & 0x03030303u) << 4),
                    (v.y & M4) | (((h.y >> bl) & 0x03030303u) << 4),
                    (v.z & M4) | (((h.z >> bl) & 0x03030303u) << 4),
                    (v.w & M4) | (((h.w >> bl) & 0x03030303u) << 4), xl, 0);
    int sih = dot16(((v.x >> 4) & M4) | (((h.x >> bh) & 0x03030303u) << 4),
                    ((v.y >> 4) & M4) | (((h.y >> bh) & 0x03030303u) << 4),
                    ((v.z >> 4) & M4) | (((h.z >> bh) & 0x03030303u) << 4),
                    ((v.w >> 4) & M4) | (((h.w >> bh) & 0x03030303u) << 4), xh, 0);
    int sxl = x.bs[el >> 4], sxh = x.bs[eh >> 4];
    int jl = 2 * k + (l0 >> 4), jh = jl + 4; /* within the 8 scale bytes of this half */
    int scl = (int8_t)((r.s0 >> (8 * jl)) & 0xFFu);
    int sch = (int8_t)((r.s1 >> (8 * (jh - 4))) & 0xFFu);
    return half_lo(r.s2) * xldf(x.d + b) *
           (float)(scl * (sil - 32 * sxl) + sch * (sih - 32 * sxh));
}

/* Q6_K rows longer than 2048 by 64-element chunks (mv_rows_q6ch). Chunk (hh, h) of a
 * superblock is elements 128 hh + 16 h + 32 i + [0, 16), i = 0..3: low nibbles of the 16
 * ql bytes at 64 hh + 16 h (i = 0) and at 64 hh + 32 + 16 h (i = 1), their high nibbles
 * (i = 2, 3), and bits 2i, 2i + 1 of the 16 qh bytes at 128 + 32 hh + 16 h. Every byte a
 * lane loads is used once (the units load each qh byte for two lanes), and a lane adds its
 * four 16-sums in integers before one float product: about half the instructions per
 * byte of the units. Lane L of a round of 32 chunks (8 superblocks, 2048 elements) takes
 * chunk L & 3 of superblock L / 4, so each weight load of a warp reads 16 whole sectors.
 * Its activations come from the Q4_K chunk order (xact.qc, q4k_co): piece i of lane L is
 * at 1024 (L / 16) + 512 (i & 1) + 128 (L / 4 % 4) + 64 hh + 32 (i / 2) + 16 h of the
 * round, 8 L1 lines per warp load (2 per quarter-warp). */
#define Q6K_CHUNKS 4 /* per superblock */

typedef struct q6raw {
    uint4 l, m, h;      /* ql at 64 hh + 16 h, at 64 hh + 32 + 16 h; qh at 128 + 32 hh + 16 h */
    uint32_t s0, s1, d; /* scale bytes 8 hh .. 8 hh + 7, the word holding d */
} q6raw;

typedef struct q6k_lane {
    int qo; /* byte of the lane's ql piece in its superblock: 64 hh + 16 h */
    int ho; /* and of its qh piece: 128 + 32 hh + 16 h */
    int so; /* its scale word: 2 hh */
    int xo; /* its activations in a round of xact.qc (piece 0) */
    int bo; /* its bs entries in the superblock: 8 hh */
    int sh; /* 8 h: shift of its scale bytes */
} q6k_lane;

__device__ __forceinline__ q6k_lane q6k_lane_of(int lane) {
    const int hh = (lane >> 1) & 1, h = lane & 1;
    q6k_lane L;
    L.qo = 64 * hh + 16 * h;
    L.ho = 128 + 32 * hh + 16 * h;
    L.so = 2 * hh;
    L.xo = 1024 * (lane >> 4) + 128 * ((lane >> 2) & 3) + 64 * hh + 16 * h;
    L.bo = 8 * hh;
    L.sh = 8 * h;
    return L;
}

/* chunk ch of a row (quant / scale bytes from q / s); zeros past n_ch */
__device__ __forceinline__ q6raw q6k_load(const uint8_t *q, const uint8_t *s, int ch, int n_ch,
                                          const q6k_lane &L) {
    q6raw r;
    if (ch < n_ch) {
        const uint8_t *qb = q + (size_t)(ch >> 2) * 192;
        const uint32_t *sw = reinterpret_cast<const uint32_t *>(s + (size_t)(ch >> 2) * 20);
        r.l = ld16_stream(qb + L.qo);
        r.m = ld16_stream(qb + L.qo + 32);
        r.h = ld16_stream(qb + L.ho);
        r.s0 = __ldg(sw + L.so);
        r.s1 = __ldg(sw + L.so + 1);
        r.d = __ldg(sw + 4);
    } else {
        r.l = r.m = r.h = make_uint4(0, 0, 0, 0);
        r.s0 = r.s1 = r.d = 0;
    }
    return r;
}

/* the lane's activations of chunk ch (a round's, loaded once for all of a warp's rows) */
typedef struct q6k_act {
    int4 x0, x1, x2, x3; /* pieces i = 0..3 */
    int4 bs;             /* the 8 sums of 16 of its half superblock */
    float d;
} q6k_act;
__device__ __forceinline__ q6k_act q6k_act_load(int ch, const q6k_lane &L, const xact &x) {
    const int8_t *xp = x.qc + 64 * (ch & ~31) + L.xo;
    q6k_act a;
    a.x0 = ldx16(xp);
    a.x1 = ldx16(xp + 512);
    a.x2 = ldx16(xp + 32);
    a.x3 = ldx16(xp + 544);
    a.bs = *reinterpret_cast<const int4 *>(x.bs + 16 * (ch >> 2) + L.bo);
    a.d = xldf(x.d + (ch >> 2));
    return a;
}

#define M30 0x30303030u
/* sum over the chunk's 64 weights; (q - 32) through the activations' 16-sums */
__device__ __forceinline__ float q6k_dot(const q6raw &r, const q6k_act &a, const q6k_lane &L) {
    const uint4 &l = r.l, &m = r.m, &h = r.h;
    const int d0 =
        dot16((l.x & M4) | ((h.x << 4) & M30), (l.y & M4) | ((h.y << 4) & M30),
              (l.z & M4) | ((h.z << 4) & M30), (l.w & M4) | ((h.w << 4) & M30), a.x0, 0);
    const int d1 =
        dot16((m.x & M4) | ((h.x << 2) & M30), (m.y & M4) | ((h.y << 2) & M30),
              (m.z & M4) | ((h.z << 2) & M30), (m.w & M4) | ((h.w << 2) & M30), a.x1, 0);
    const int d2 =
        dot16(((l.x >> 4) & M4) | (h.x & M30), ((l.y >> 4) & M4) | (h.y & M30),
              ((l.z >> 4) & M4) | (h.z & M30), ((l.w >> 4) & M4) | (h.w & M30), a.x2, 0);
    const int d3 =
        dot16(((m.x >> 4) & M4) | ((h.x >> 2) & M30), ((m.y >> 4) & M4) | ((h.y >> 2) & M30),
              ((m.z >> 4) & M4) | ((h.z >> 2) & M30), ((m.w >> 4) & M4) | ((h.w >> 2) & M30),
              a.x3, 0);
    /* 16-sums h + 2 i of the half (high or low 16 bits of bs word i); scale bytes h + 2 i */
    const int bsh = 16 - 2 * L.sh;
    const int b0 = (int)((uint32_t)a.bs.x << bsh) >> 16,
              b1 = (int)((uint32_t)a.bs.y << bsh) >> 16;
    const int b2 = (int)((uint32_t)a.bs.z << bsh) >> 16,
              b3 = (int)((uint32_t)a.bs.w << bsh) >> 16;
    const int c0 = (int)(r.s0 << (24 - L.sh)) >> 24, c1 = (int)(r.s0 << (8 - L.sh)) >> 24;
    const int c2 = (int)(r.s1 << (24 - L.sh)) >> 24, c3 = (int)(r.s1 << (8 - L.sh)) >> 24;
    const int t =
        c0 * (d0 - 32 * b0) + c1 * (d1 - 32 * b1) + c2 * (d2 - 32 * b2) + c3 * (d3 - 32 * b3);
    return half_lo(r.d) * a.d * (float)t;
}

#endif
