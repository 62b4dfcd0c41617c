/* Scalar reference (de)quantizers: the ground truth every SIMD / GPU kernel is tested
 * against. Layouts are bit-exact with GGUF; the float arithmetic is done in the same
 * order as ggml's reference code (and the `gguf` Python package), one rounding per
 * operation, so results match bit for bit.
 *
 * Conventions: `k` is the number of elements, a multiple of the block size; blocks are
 * processed one after another, element i of a row lives in block i / block_size. */
#include <math.h>
#include <string.h>

#include "types.h"

/* A fused multiply-add would round once where ggml rounds twice (d * q + m): keep
 * every product rounded on its own, whatever -march the library is built for. */
#if defined(__clang__)
#pragma STDC FP_CONTRACT OFF
#elif defined(__GNUC__)
#pragma GCC optimize("fp-contract=off")
#endif

static inline float h2f(chord_half h) {
    return chord_half_to_float(h);
}

/* ------------------------------------------------------------- plain floats */

/* F32: y = x */
void dequant_row_f32_ref(const void *x, float *y, int64_t k) {
    memcpy(y, x, (size_t)k * sizeof(float));
}

/* F16: y = half_to_float(x), exact */
void dequant_row_f16_ref(const void *x, float *y, int64_t k) {
    const chord_half *h = x;
    for (int64_t i = 0; i < k; i++)
        y[i] = chord_half_to_float(h[i]);
}

/* BF16: y = bits(x) << 16, exact */
void dequant_row_bf16_ref(const void *x, float *y, int64_t k) {
    const chord_bf16 *h = x;
    for (int64_t i = 0; i < k; i++)
        y[i] = chord_bf16_to_float(h[i]);
}

void quant_row_f32_ref(const float *x, void *y, int64_t k) {
    memcpy(y, x, (size_t)k * sizeof(float));
}

/* float -> half, round to nearest even */
void quant_row_f16_ref(const float *x, void *y, int64_t k) {
    chord_half *h = y;
    for (int64_t i = 0; i < k; i++)
        h[i] = chord_float_to_half(x[i]);
}

/* float -> bfloat16, round to nearest even, NaN stays (quiet) NaN */
void quant_row_bf16_ref(const float *x, void *y, int64_t k) {
    chord_bf16 *h = y;
    for (int64_t i = 0; i < k; i++)
        h[i] = chord_float_to_bf16(x[i]);
}

/* ------------------------------------------------------- 32-element blocks */

/* Q4_0: y[j] = d * (q[j] - 8), q[j] in 0..15.
 * Element j < 16 is the low nibble of qs[j], element j + 16 its high nibble. */
void dequant_row_q4_0_ref(const void *x, float *y, int64_t k) {
    const block_q4_0 *b = x;
    const int64_t nb = k / QK4_0;
    for (int64_t i = 0; i < nb; i++, y += QK4_0) {
        const float d = h2f(b[i].d);
        for (int j = 0; j < QK4_0 / 2; j++) {
            const int lo = (b[i].qs[j] & 0x0F) - 8;
            const int hi = (b[i].qs[j] >> 4) - 8;
            y[j] = d * (float)lo;
            y[j + QK4_0 / 2] = d * (float)hi;
        }
    }
}

/* Q4_1: y[j] = d * q[j] + m, q[j] in 0..15, same nibble order as Q4_0. */
void dequant_row_q4_1_ref(const void *x, float *y, int64_t k) {
    const block_q4_1 *b = x;
    const int64_t nb = k / QK4_1;
    for (int64_t i = 0; i < nb; i++, y += QK4_1) {
        const float d = h2f(b[i].d);
        const float m = h2f(b[i].m);
        for (int j = 0; j < QK4_1 / 2; j++) {
            const int lo = b[i].qs[j] & 0x0F;
            const int hi = b[i].qs[j] >> 4;
            y[j] = d * (float)lo + m;
            y[j + QK4_1 / 2] = d * (float)hi + m;
        }
    }
}

/* The 5th bit of element j of a Q5_0 / Q5_1 block, placed at bit 4: bit j of the
 * little-endian 32-bit qh. */
static inline int q5_high_bit(const uint8_t qh[4], int j) {
    const uint32_t h =
        (uint32_t)qh[0] | (uint32_t)qh[1] << 8 | (uint32_t)qh[2] << 16 | (uint32_t)qh[3] << 24;
    return (int)((h >> j) & 1u) << 4;
}

/* Q5_0: y[j] = d * (q[j] - 16), q[j] in 0..31: low 4 bits as Q4_0, 5th bit in qh. */
void dequant_row_q5_0_ref(const void *x, float *y, int64_t k) {
    const block_q5_0 *b = x;
    const int64_t nb = k / QK5_0;
    for (int64_t i = 0; i < nb; i++, y += QK5_0) {
        const float d = h2f(b[i].d);
        for (int j = 0; j < QK5_0 / 2; j++) {
            const int lo = ((b[i].qs[j] & 0x0F) | q5_high_bit(b[i].qh, j)) - 16;
            const int hi = ((b[i].qs[j] >> 4) | q5_high_bit(b[i].qh, j + 16)) - 16;
            y[j] = d * (float)lo;
            y[j + QK5_0 / 2] = d * (float)hi;
        }
    }
}

/* Q5_1: y[j] = d * q[j] + m, q[j] in 0..31, bits as Q5_0. */
void dequant_row_q5_1_ref(const void *x, float *y, int64_t k) {
    const block_q5_1 *b = x;
    const int64_t nb = k / QK5_1;
    for (int64_t i = 0; i < nb; i++, y += QK5_1) {
        const float d = h2f(b[i].d);
        const float m = h2f(b[i].m);
        for (int j = 0; j < QK5_1 / 2; j++) {
            const int lo = (b[i].qs[j] & 0x0F) | q5_high_bit(b[i].qh, j);
            const int hi = (b[i].qs[j] >> 4) | q5_high_bit(b[i].qh, j + 16);
            y[j] = d * (float)lo + m;
            y[j + QK5_1 / 2] = d * (float)hi + m;
        }
    }
}

/* Q8_0: y[j] = d * q[j], q[j] int8. */
void dequant_row_q8_0_ref(const void *x, float *y, int64_t k) {
    const block_q8_0 *b = x;
    const int64_t nb = k / QK8_0;
    for (int64_t i = 0; i < nb; i++, y += QK8_0) {
        const float d = h2f(b[i].d);
        for (int j = 0; j < QK8_0; j++)
            y[j] = (float)b[i].qs[j] * d;
    }
}

/* Q8_1: y[j] = d * q[j]; s (= d * sum q) is only used by dot products. */
void dequant_row_q8_1_ref(const void *x, float *y, int64_t k) {
    const block_q8_1 *b = x;
    const int64_t nb = k / QK8_1;
    for (int64_t i = 0; i < nb; i++, y += QK8_1) {
        const float d = h2f(b[i].d);
        for (int j = 0; j < QK8_1; j++)
            y[j] = (float)b[i].qs[j] * d;
    }
}

/* Q8_0 quantizer: d = max|x| / 127, q[j] = round-half-away(x[j] * (1/d)) (0 if d = 0),
 * d stored as half. */
void quant_row_q8_0_ref(const float *x, void *y, int64_t k) {
    block_q8_0 *b = y;
    const int64_t nb = k / QK8_0;
    for (int64_t i = 0; i < nb; i++, x += QK8_0) {
        float amax = 0.0f;
        for (int j = 0; j < QK8_0; j++)
            amax = fmaxf(amax, fabsf(x[j]));
        const float d = amax / 127.0f;
        const float id = d != 0.0f ? 1.0f / d : 0.0f;
        b[i].d = chord_float_to_half(d);
        for (int j = 0; j < QK8_0; j++)
            b[i].qs[j] = (int8_t)roundf(x[j] * id);
    }
}

/* Q8_1 quantizer: as Q8_0, plus s = half(d * sum(q)) with the unrounded float d. */
void quant_row_q8_1_ref(const float *x, void *y, int64_t k) {
    block_q8_1 *b = y;
    const int64_t nb = k / QK8_1;
    for (int64_t i = 0; i < nb; i++, x += QK8_1) {
        float amax = 0.0f;
        for (int j = 0; j < QK8_1; j++)
            amax = fmaxf(amax, fabsf(x[j]));
        const float d = amax / 127.0f;
        const float id = d != 0.0f ? 1.0f / d : 0.0f;
        b[i].d = chord_float_to_half(d);
        int sum = 0;
        for (int j = 0; j < QK8_1; j++) {
            b[i].qs[j] = (int8_t)roundf(x[j] * id);
            sum += b[i].qs[j];
        }
        b[i].s = chord_float_to_half((float)sum * d);
    }
}

/* ------------------------------------------------------ 256-element K-quants */

/* Q2_K: 16 sub-blocks of 16. scales[s]: low nibble sc, high nibble mn;
 * y = (d * sc) * q - (dmin * mn), q in 0..3.
 * Each 128-element half uses 32 bytes of qs: element 32*g + l (g = 0..3, l = 0..31)
 * of the half is bits 2g..2g+1 of qs[l]. Sub-block s covers elements 16s..16s+15. */
void dequant_row_q2_K_ref(const void *x, float *y, int64_t k) {
    const block_q2_K *b = x;
    const int64_t nb = k / QK_K;
    for (int64_t i = 0; i < nb; i++) {
        const float d = h2f(b[i].d);
        const float dmin = h2f(b[i].dmin);
        const uint8_t *q = b[i].qs;
        int s = 0;
        for (int half = 0; half < 2; half++, q += 32) {
            for (int g = 0; g < 4; g++) {
                const int shift = 2 * g;
                for (int part = 0; part < 2; part++, s++) { /* two sub-blocks of 16 */
                    const float dl = d * (float)(b[i].scales[s] & 0x0F);
                    const float ml = dmin * (float)(b[i].scales[s] >> 4);
                    for (int l = 0; l < 16; l++) {
                        const int v = (q[16 * part + l] >> shift) & 3;
                        *y++ = dl * (float)v - ml;
                    }
                }
            }
        }
    }
}

/* Q3_K's 16 6-bit scales: scale s has its low 4 bits in nibble s/8 of byte s%8 and its
 * top 2 bits at bits 2*(s/4) of byte 8 + s%4. Stored with a +32 bias. */
static inline int q3_K_scale(const uint8_t sc[12], int s) {
    const int lo = (sc[s % 8] >> (4 * (s / 8))) & 0x0F;
    const int hi = (sc[8 + s % 4] >> (2 * (s / 4))) & 0x03;
    return (lo | hi << 4) - 32;
}

/* Q3_K: 16 sub-blocks of 16, y = (d * scale) * q, q = low2 - (hbit ? 0 : 4) in -4..3.
 * low2 is laid out as in Q2_K. The high bit of element 128*half + 32*g + l is bit
 * 4*half + g of hmask[l]. */
void dequant_row_q3_K_ref(const void *x, float *y, int64_t k) {
    const block_q3_K *b = x;
    const int64_t nb = k / QK_K;
    for (int64_t i = 0; i < nb; i++) {
        const float d = h2f(b[i].d);
        const uint8_t *q = b[i].qs;
        int s = 0;
        for (int half = 0; half < 2; half++, q += 32) {
            for (int g = 0; g < 4; g++) {
                const int shift = 2 * g;
                const uint8_t m = (uint8_t)(1u << (4 * half + g));
                for (int part = 0; part < 2; part++, s++) {
                    const float dl = d * (float)q3_K_scale(b[i].scales, s);
                    for (int l = 16 * part; l < 16 * part + 16; l++) {
                        const int v = ((q[l] >> shift) & 3) - ((b[i].hmask[l] & m) ? 0 : 4);
                        *y++ = dl * (float)v;
                    }
                }
            }
        }
    }
}

/* Q4_K / Q5_K 6-bit scale and min of sub-block j (0..7) from the 12 packed bytes:
 * j < 4: sc = q[j] & 63, mn = q[j+4] & 63;
 * j >= 4: low 4 bits in q[j+4] (sc low nibble, mn high nibble), top 2 bits in the
 * top 2 bits of q[j-4] (sc) and q[j] (mn). */
static inline void k4_scale_min(const uint8_t q[K_SCALE_SIZE], int j, int *sc, int *mn) {
    if (j < 4) {
        *sc = q[j] & 63;
        *mn = q[j + 4] & 63;
    } else {
        *sc = (q[j + 4] & 0x0F) | ((q[j - 4] >> 6) << 4);
        *mn = (q[j + 4] >> 4) | ((q[j] >> 6) << 4);
    }
}

/* Q4_K: 8 sub-blocks of 32, y = (d * sc) * q - (dmin * mn), q in 0..15.
 * Each 64 elements use 32 bytes of qs: low nibbles are the first 32, high the next. */
void dequant_row_q4_K_ref(const void *x, float *y, int64_t k) {
    const block_q4_K *b = x;
    const int64_t nb = k / QK_K;
    for (int64_t i = 0; i < nb; i++) {
        const float d = h2f(b[i].d);
        const float dmin = h2f(b[i].dmin);
        const uint8_t *q = b[i].qs;
        for (int j = 0; j < 8; j += 2, q += 32) {
            int sc, mn;
            k4_scale_min(b[i].scales, j, &sc, &mn);
            const float d1 = d * (float)sc, m1 = dmin * (float)mn;
            k4_scale_min(b[i].scales, j + 1, &sc, &mn);
            const float d2 = d * (float)sc, m2 = dmin * (float)mn;
            for (int l = 0; l < 32; l++)
                *y++ = d1 * (float)(q[l] & 0x0F) - m1;
            for (int l = 0; l < 32; l++)
                *y++ = d2 * (float)(q[l] >> 4) - m2;
        }
    }
}

/* Q5_K: as Q4_K with q in 0..31; the 5th bit of element 32*j + l (sub-block j) is
 * bit j of qh[l]. */
void dequant_row_q5_K_ref(const void *x, float *y, int64_t k) {
    const block_q5_K *b = x;
    const int64_t nb = k / QK_K;
    for (int64_t i = 0; i < nb; i++) {
        const float d = h2f(b[i].d);
        const float dmin = h2f(b[i].dmin);
        const uint8_t *q = b[i].qs;
        uint8_t u1 = 1, u2 = 2; /* qh bits of the two sub-blocks of this 64 */
        for (int j = 0; j < 8; j += 2, q += 32) {
            int sc, mn;
            k4_scale_min(b[i].scales, j, &sc, &mn);
            const float d1 = d * (float)sc, m1 = dmin * (float)mn;
            k4_scale_min(b[i].scales, j + 1, &sc, &mn);
            const float d2 = d * (float)sc, m2 = dmin * (float)mn;
            for (int l = 0; l < 32; l++) {
                const int v = (q[l] & 0x0F) + ((b[i].qh[l] & u1) ? 16 : 0);
                *y++ = d1 * (float)v - m1;
            }
            for (int l = 0; l < 32; l++) {
                const int v = (q[l] >> 4) + ((b[i].qh[l] & u2) ? 16 : 0);
                *y++ = d2 * (float)v - m2;
            }
            u1 = (uint8_t)(u1 << 2);
            u2 = (uint8_t)(u2 << 2);
        }
    }
}

/* Q6_K: 16 sub-blocks of 16 with int8 scales, y = (d * scale) * (q - 32), q in 0..63.
 * Per 128-element half (64 bytes ql, 32 bytes qh), element 32*g + l (g = 0..3,
 * l = 0..31): low 4 bits from ql[l + 32*(g & 1)] (low nibble for g < 2, high for
 * g >= 2), top 2 bits from bits 2g..2g+1 of qh[l]. */
void dequant_row_q6_K_ref(const void *x, float *y, int64_t k) {
    const block_q6_K *b = x;
    const int64_t nb = k / QK_K;
    for (int64_t i = 0; i < nb; i++) {
        const float d = h2f(b[i].d);
        const uint8_t *ql = b[i].ql;
        const uint8_t *qh = b[i].qh;
        const int8_t *sc = b[i].scales;
        for (int half = 0; half < 2; half++, ql += 64, qh += 32, sc += 8, y += 128) {
            for (int l = 0; l < 32; l++) {
                const int is = l / 16;
                const int q1 = ((ql[l] & 0x0F) | ((qh[l] >> 0) & 3) << 4) - 32;
                const int q2 = ((ql[l + 32] & 0x0F) | ((qh[l] >> 2) & 3) << 4) - 32;
                const int q3 = ((ql[l] >> 4) | ((qh[l] >> 4) & 3) << 4) - 32;
                const int q4 = ((ql[l + 32] >> 4) | ((qh[l] >> 6) & 3) << 4) - 32;
                y[l] = (d * (float)sc[is]) * (float)q1;
                y[l + 32] = (d * (float)sc[is + 2]) * (float)q2;
                y[l + 64] = (d * (float)sc[is + 4]) * (float)q3;
                y[l + 96] = (d * (float)sc[is + 6]) * (float)q4;
            }
        }
    }
}

/* Q8_K: y = d * q, d a float32. */
void dequant_row_q8_K_ref(const void *x, float *y, int64_t k) {
    const block_q8_K *b = x;
    const int64_t nb = k / QK_K;
    for (int64_t i = 0; i < nb; i++, y += QK_K) {
        for (int j = 0; j < QK_K; j++)
            y[j] = b[i].d * (float)b[i].qs[j];
    }
}

/* Q8_K quantizer (as ggml): take the value v with the largest |v| (first one on ties),
 * iscale = -127 / v, q = min(127, round-half-even(iscale * x)), d = 1 / iscale,
 * bsums[s] = sum of q[16s..16s+15]. A block of zeros gives d = 0, q = 0. */
void quant_row_q8_K_ref(const float *x, void *y, int64_t k) {
    block_q8_K *b = y;
    const int64_t nb = k / QK_K;
    for (int64_t i = 0; i < nb; i++, x += QK_K) {
        float amax = 0.0f, vmax = 0.0f;
        for (int j = 0; j < QK_K; j++) {
            const float ax = fabsf(x[j]);
            if (ax > amax) {
                amax = ax;
                vmax = x[j];
            }
        }
        if (amax == 0.0f) {
            memset(&b[i], 0, sizeof b[i]);
            continue;
        }
        const float iscale = -127.0f / vmax;
        for (int j = 0; j < QK_K; j++) {
            const int v = (int)rintf(iscale * x[j]); /* nearest, ties to even */
            b[i].qs[j] = (int8_t)(v < 127 ? v : 127);
        }
        for (int s = 0; s < QK_K / 16; s++) {
            int sum = 0;
            for (int l = 0; l < 16; l++)
                sum += b[i].qs[16 * s + l];
            b[i].bsums[s] = (int16_t)sum;
        }
        b[i].d = 1.0f / iscale;
    }
}
