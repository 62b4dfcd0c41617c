/* Scalar kernels: the reference every SIMD kernel is tested against, bit for bit.
 *
 * They compute each dot product with exactly the float operations, in exactly the
 * order, of llama.cpp's CPU backend on x86 (b4748, as built for an AVX-512 machine):
 * the random-weight golden models are chaotic, so a one-ulp difference before an int8
 * activation rounding flips it and moves the logits by ~1%. Integer sums are exact and
 * may be formed in any order; float sums may not. fma1 is a fused multiply-add (one rounding). */
#include <math.h>
#include <string.h>

#include "cpu/fma_ref.h"
#include "cpu/kernels.h"

static inline float h2f(chord_half h) {
    return chord_half_to_float(h);
}

#define fma1 cpu_fma1

/* ------------------------------------------------------------ activations */

void cpu_quantize_f32(const float *x, void *a, int64_t n) {
    memcpy(a, x, (size_t)n * sizeof(float));
}

/* max|x| of k floats */
static float block_amax(const float *x, int k) {
    float amax = 0.0f;
    for (int i = 0; i < k; i++)
        amax = fmaxf(amax, fabsf(x[i]));
    return amax;
}

/* q = round-to-nearest-even(x * (127 / amax)); returns the sum of the q */
static int quant_block(const float *x, int8_t *q, int k, float amax) {
    const float id = amax > 0.0f ? 127.0f / amax : 0.0f;
    int sum = 0;
    for (int i = 0; i < k; i++) {
        const int v = (int)lrintf(x[i] * id);
        q[i] = (int8_t)v;
        sum += v;
    }
    return sum;
}

static inline float round_half(float v) {
    return h2f(chord_float_to_half(v));
}

void cpu_quantize_q8_32_scalar(const float *x, void *a, int64_t n) {
    int8_t *q = a;
    const int64_t nb = n / 32;
    float *d = (float *)(q + n), *s = d + nb;
    int32_t *c = (int32_t *)(s + nb);
    for (int64_t b = 0; b < nb; b++) {
        const float amax = block_amax(x + 32 * b, 32);
        const int sum = quant_block(x + 32 * b, q + 32 * b, 32, amax);
        const float df = amax / 127.0f;
        d[b] = round_half(df);
        s[b] = round_half(df * (float)sum);
    }
    for (int64_t j = 0; j < n / 4; j++)
        c[j] = -128 * (q[4 * j] + q[4 * j + 1] + q[4 * j + 2] + q[4 * j + 3]);
}

void cpu_quantize_q8_256_scalar(const float *x, void *a, int64_t n) {
    int8_t *q = a;
    const int64_t nb = n / QK_K;
    float *d = (float *)(q + n);
    int16_t *bs = (int16_t *)(d + nb);
    for (int64_t b = 0; b < nb; b++) {
        const float amax = block_amax(x + QK_K * b, QK_K);
        quant_block(x + QK_K * b, q + QK_K * b, QK_K, amax);
        d[b] = amax > 0.0f ? 1.0f / (127.0f / amax) : 0.0f;
        for (int s = 0; s < 16; s++) {
            int sum = 0;
            for (int l = 0; l < 16; l++)
                sum += q[QK_K * b + 16 * s + l];
            bs[16 * b + s] = (int16_t)sum;
        }
        for (int s = 0; s < 8; s++) /* the per-32 sums, after all the bsums */
            bs[n / 16 + 8 * b + s] = (int16_t)(bs[16 * b + 2 * s] + bs[16 * b + 2 * s + 1]);
    }
}

/* ------------------------------------------------------------ float weights */

/* F32 / F16 / BF16 (llamafile's tinyBLAS, which llama.cpp uses for these products on
 * AVX-512; it also computes chord's attention scores and outputs there): 16 float
 * lanes, lane l accumulating x[i] * y[i] for i = l, l + 16, ... with fma, then the lanes
 * summed as _mm512_reduce_add_ps does: halves, quarters, then (t0+t2) + (t1+t3). */
static inline float reduce16(const float l[16]) {
    float t8[8], t4[4];
    for (int i = 0; i < 8; i++)
        t8[i] = l[i + 8] + l[i];
    for (int i = 0; i < 4; i++)
        t4[i] = t8[i + 4] + t8[i];
    return (t4[0] + t4[2]) + (t4[1] + t4[3]);
}

void cpu_vec_dot_f32_scalar(int64_t n, float *s, const void *w, const void *a) {
    const float *x = w, *y = a;
    float acc[16] = {0};
    for (int64_t i = 0; i < n; i++)
        acc[i % 16] = fma1(x[i], y[i], acc[i % 16]);
    *s = reduce16(acc);
}

void cpu_vec_dot_f16_scalar(int64_t n, float *s, const void *w, const void *a) {
    const chord_half *x = w;
    const float *y = a;
    float acc[16] = {0};
    for (int64_t i = 0; i < n; i++)
        acc[i % 16] = fma1(h2f(x[i]), y[i], acc[i % 16]);
    *s = reduce16(acc);
}

void cpu_vec_dot_bf16_scalar(int64_t n, float *s, const void *w, const void *a) {
    const chord_bf16 *x = w;
    const float *y = a;
    float acc[16] = {0};
    for (int64_t i = 0; i < n; i++)
        acc[i % 16] = fma1(chord_bf16_to_float(x[i]), y[i], acc[i % 16]);
    *s = reduce16(acc);
}

/* ----------------------------------------------------- quantized weights
 *
 * llama.cpp's x86 dot products (its AVX2 kernels, which it also runs on AVX-512 CPUs,
 * and llamafile's Q8_0 / Q5_0 tiles, which do the same arithmetic): 8 float lanes, lane m
 * accumulating with fma, block after block, the integer dot product over the elements e
 * of the block with (e % 32) / 4 == m (for 32-blocks: elements 4m..4m+3), scaled by the
 * block's float scale (a single product: exact for two halves); the lanes are then
 * summed as ((l0+l4) + (l2+l6)) + ((l1+l5) + (l3+l7)), and the min terms some types keep
 * apart are added. Q4_0 is the exception: llama.cpp repacks it and its AVX2 / AVX-512
 * tiles accumulate one block total at a time. */

static inline float hsum8(const float l[8]) {
    const float t0 = l[0] + l[4], t1 = l[1] + l[5], t2 = l[2] + l[6], t3 = l[3] + l[7];
    return (t0 + t2) + (t1 + t3);
}

/* acc[m] = fma(dd, sum of w[e] * y[e] over e = 4m..4m+3, acc[m]) */
static inline void lanes32(float acc[8], float dd, const int w[32], const int8_t *y) {
    for (int m = 0; m < 8; m++) {
        const int p = w[4 * m] * y[4 * m] + w[4 * m + 1] * y[4 * m + 1] +
                      w[4 * m + 2] * y[4 * m + 2] + w[4 * m + 3] * y[4 * m + 3];
        acc[m] = fma1(dd, (float)p, acc[m]);
    }
}

/* The activation row's parts (CPU_ACT_Q8_32): qs, d, s. */
#define ACT32(a, n)                                                                            \
    const int8_t *aq = (const int8_t *)(a);                                                    \
    const float *ad = (const float *)(aq + (n));                                               \
    const float *as = ad + (n) / 32;                                                           \
    (void)as

static inline uint32_t load_u32(const uint8_t *p) {
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

/* element j of a 32-block with 4-bit quants: low nibbles first, then high nibbles */
static inline int nib(const uint8_t qs[16], int j) {
    return j < 16 ? qs[j] & 15 : qs[j - 16] >> 4;
}

/* Q4_0: acc = fma(d_w * d_a, sum over the block of (q - 8) * y, acc), block by block */
void cpu_vec_dot_q4_0_scalar(int64_t n, float *s, const void *w, const void *a) {
    const block_q4_0 *x = w;
    ACT32(a, n);
    float acc = 0.0f;
    for (int64_t b = 0; b < n / 32; b++) {
        int p = 0;
        for (int j = 0; j < 32; j++)
            p += (nib(x[b].qs, j) - 8) * aq[32 * b + j];
        acc = fma1(h2f(x[b].d) * ad[b], (float)p, acc);
    }
    *s = acc;
}

/* Q4_1 / Q5_1: the mins go through s = half(d * sum of the block's q), summed apart
 * (m * s is exact, so the sum rounds once per block either way) */
void cpu_vec_dot_q4_1_scalar(int64_t n, float *s, const void *w, const void *a) {
    const block_q4_1 *x = w;
    ACT32(a, n);
    float acc[8] = {0}, summs = 0.0f;
    for (int64_t b = 0; b < n / 32; b++) {
        int v[32];
        for (int j = 0; j < 32; j++)
            v[j] = nib(x[b].qs, j);
        summs += h2f(x[b].m) * as[b];
        lanes32(acc, h2f(x[b].d) * ad[b], v, aq + 32 * b);
    }
    *s = hsum8(acc) + summs;
}

void cpu_vec_dot_q5_0_scalar(int64_t n, float *s, const void *w, const void *a) {
    const block_q5_0 *x = w;
    ACT32(a, n);
    float acc[8] = {0};
    for (int64_t b = 0; b < n / 32; b++) {
        const uint32_t qh = load_u32(x[b].qh);
        int v[32];
        for (int j = 0; j < 32; j++)
            v[j] = (nib(x[b].qs, j) | (int)((qh >> j) & 1) << 4) - 16;
        lanes32(acc, h2f(x[b].d) * ad[b], v, aq + 32 * b);
    }
    *s = hsum8(acc);
}

void cpu_vec_dot_q5_1_scalar(int64_t n, float *s, const void *w, const void *a) {
    const block_q5_1 *x = w;
    ACT32(a, n);
    float acc[8] = {0}, summs = 0.0f;
    for (int64_t b = 0; b < n / 32; b++) {
        const uint32_t qh = load_u32(x[b].qh);
        int v[32];
        for (int j = 0; j < 32; j++)
            v[j] = nib(x[b].qs, j) | (int)((qh >> j) & 1) << 4;
        summs += h2f(x[b].m) * as[b];
        lanes32(acc, h2f(x[b].d) * ad[b], v, aq + 32 * b);
    }
    *s = hsum8(acc) + summs;
}

void cpu_vec_dot_q8_0_scalar(int64_t n, float *s, const void *w, const void *a) {
    const block_q8_0 *x = w;
    ACT32(a, n);
    float acc[8] = {0};
    for (int64_t b = 0; b < n / 32; b++) {
        int v[32];
        for (int j = 0; j < 32; j++)
            v[j] = x[b].qs[j];
        lanes32(acc, h2f(x[b].d) * ad[b], v, aq + 32 * b);
    }
    *s = hsum8(acc);
}

/* ------------------------------------------------------------------ K-quants */

#define ACT256(a, n)                                                                           \
    const int8_t *aq = (const int8_t *)(a);                                                    \
    const float *ad = (const float *)(aq + (n));                                               \
    const int16_t *abs16 = (const int16_t *)(ad + (n) / QK_K);                                 \
    (void)abs16

/* One 32-element chunk k of a superblock, its weights v: sumi[m] += scale * (sum of
 * v[e] * y[e], e = 4m..4m+3), the scale of 16-sub-block 2k (m < 4) or 2k + 1 (m >= 4) */
static inline void lanes_chunk(int sumi[8], const int v[32], const int8_t *y, int sc_lo,
                               int sc_hi) {
    for (int m = 0; m < 8; m++) {
        const int p = v[4 * m] * y[4 * m] + v[4 * m + 1] * y[4 * m + 1] +
                      v[4 * m + 2] * y[4 * m + 2] + v[4 * m + 3] * y[4 * m + 3];
        sumi[m] += (m < 4 ? sc_lo : sc_hi) * p;
    }
}

/* acc[m] = fma(d, sumi[m], acc[m]) */
static inline void lanes_add(float acc[8], float d, const int sumi[8]) {
    for (int m = 0; m < 8; m++)
        acc[m] = fma1(d, (float)sumi[m], acc[m]);
}

/* Q2_K / Q3_K chunk k = 4h + g: elements 128h + 32g + l, 2 bits at 2g of qs[32h + l] */
static inline void k_low2(int v[32], const uint8_t *qs, int k) {
    const uint8_t *q = qs + 32 * (k / 4);
    const int sh = 2 * (k % 4);
    for (int l = 0; l < 32; l++)
        v[l] = (q[l] >> sh) & 3;
}

void cpu_vec_dot_q2_K_scalar(int64_t n, float *s, const void *w, const void *a) {
    const block_q2_K *x = w;
    ACT256(a, n);
    float acc[8] = {0};
    for (int64_t b = 0; b < n / QK_K; b++) {
        const float d = ad[b] * h2f(x[b].d), dmin = -ad[b] * h2f(x[b].dmin);
        const int16_t *bs = abs16 + 16 * b;
        const uint8_t *sc = x[b].scales; /* per 16: scale low nibble, min high nibble */
        int sumi[8] = {0}, v[32];
        for (int k = 0; k < 8; k++) {
            k_low2(v, x[b].qs, k);
            lanes_chunk(sumi, v, aq + QK_K * b + 32 * k, sc[2 * k] & 15, sc[2 * k + 1] & 15);
        }
        /* the mins first: lane m, 16-sub-blocks 2m, 2m + 1 */
        for (int m = 0; m < 8; m++) {
            const int prod = (sc[2 * m] >> 4) * bs[2 * m] + (sc[2 * m + 1] >> 4) * bs[2 * m + 1];
            acc[m] = fma1(dmin, (float)prod, acc[m]);
        }
        lanes_add(acc, d, sumi);
    }
    *s = hsum8(acc);
}

static inline int q3_K_scale(const uint8_t sc[12], int s) {
    const int lo = (sc[s % 8] >> (4 * (s / 8))) & 0x0F;
    const int hi = (sc[8 + s % 4] >> (2 * (s / 4))) & 0x03;
    return (lo | hi << 4) - 32;
}

void cpu_vec_dot_q3_K_scalar(int64_t n, float *s, const void *w, const void *a) {
    const block_q3_K *x = w;
    ACT256(a, n);
    float acc[8] = {0};
    for (int64_t b = 0; b < n / QK_K; b++) {
        const float d = ad[b] * h2f(x[b].d);
        int sumi[8] = {0}, v[32];
        for (int k = 0; k < 8; k++) {
            k_low2(v, x[b].qs, k);
            /* the high bit of chunk k's element l is bit k of hmask[l]; clear: -4 */
            for (int l = 0; l < 32; l++)
                v[l] -= (x[b].hmask[l] >> k) & 1 ? 0 : 4;
            lanes_chunk(sumi, v, aq + QK_K * b + 32 * k, q3_K_scale(x[b].scales, 2 * k),
                        q3_K_scale(x[b].scales, 2 * k + 1));
        }
        lanes_add(acc, d, sumi);
    }
    *s = hsum8(acc);
}

/* Q4_K / Q5_K: 6-bit scale and min of sub-block j (of 32) */
static inline void k4_scale_min(const uint8_t q[12], int j, int *sc, int *mn) {
    if (j < 4) {
        *sc = q[j] & 63;
        *mn = q[j + 4] & 63;
    } else {
        *sc = (q[j + 4] & 0x0F) | ((q[j - 4] >> 6) << 4);
        *mn = (q[j + 4] >> 4) | ((q[j] >> 6) << 4);
    }
}

/* Q4_K / Q5_K: the mins against the per-32 sums of the activations, 4 lanes of pairs of
 * sub-blocks */
static inline void k4_mins(const uint8_t q[12], const int16_t *bs, int prod[4]) {
    for (int k = 0; k < 4; k++) {
        int sc, m0, m1;
        k4_scale_min(q, 2 * k, &sc, &m0);
        k4_scale_min(q, 2 * k + 1, &sc, &m1);
        prod[k] = m0 * (bs[4 * k] + bs[4 * k + 1]) + m1 * (bs[4 * k + 2] + bs[4 * k + 3]);
    }
}

/* Q4_K / Q5_K chunk (sub-block) j: nibble j % 2 of qs[32 * (j / 2) + l] */
static inline void k4_nib(int v[32], const uint8_t *qs, int j) {
    const uint8_t *q = qs + 32 * (j / 2);
    const int sh = 4 * (j % 2);
    for (int l = 0; l < 32; l++)
        v[l] = (q[l] >> sh) & 15;
}

void cpu_vec_dot_q4_K_scalar(int64_t n, float *s, const void *w, const void *a) {
    const block_q4_K *x = w;
    ACT256(a, n);
    float acc[8] = {0}, accm[4] = {0};
    for (int64_t b = 0; b < n / QK_K; b++) {
        const float d = ad[b] * h2f(x[b].d), dmin = -ad[b] * h2f(x[b].dmin);
        int sumi[8] = {0}, v[32], prod[4];
        for (int j = 0; j < 8; j++) {
            int sc, mn;
            k4_scale_min(x[b].scales, j, &sc, &mn);
            k4_nib(v, x[b].qs, j);
            lanes_chunk(sumi, v, aq + QK_K * b + 32 * j, sc, sc);
        }
        k4_mins(x[b].scales, abs16 + 16 * b, prod);
        for (int k = 0; k < 4; k++)
            accm[k] = fma1(dmin, (float)prod[k], accm[k]);
        lanes_add(acc, d, sumi);
    }
    *s = hsum8(acc) + ((accm[0] + accm[2]) + (accm[1] + accm[3]));
}

void cpu_vec_dot_q5_K_scalar(int64_t n, float *s, const void *w, const void *a) {
    const block_q5_K *x = w;
    ACT256(a, n);
    float acc[8] = {0}, summs = 0.0f;
    for (int64_t b = 0; b < n / QK_K; b++) {
        const float d = ad[b] * h2f(x[b].d), dmin = -ad[b] * h2f(x[b].dmin);
        int sumi[8] = {0}, v[32], prod[4];
        for (int j = 0; j < 8; j++) {
            int sc, mn;
            k4_scale_min(x[b].scales, j, &sc, &mn);
            k4_nib(v, x[b].qs, j);
            /* the 5th bit of sub-block j's element l: bit j of qh[l] */
            for (int l = 0; l < 32; l++)
                v[l] |= ((x[b].qh[l] >> j) & 1) << 4;
            lanes_chunk(sumi, v, aq + QK_K * b + 32 * j, sc, sc);
        }
        k4_mins(x[b].scales, abs16 + 16 * b, prod);
        summs = fma1(dmin, (float)(prod[0] + prod[1] + prod[2] + prod[3]), summs);
        lanes_add(acc, d, sumi);
    }
    *s = hsum8(acc) + summs;
}

void cpu_vec_dot_q6_K_scalar(int64_t n, float *s, const void *w, const void *a) {
    const block_q6_K *x = w;
    ACT256(a, n);
    float acc[8] = {0};
    for (int64_t b = 0; b < n / QK_K; b++) {
        const float d = ad[b] * h2f(x[b].d);
        int sumi[8] = {0}, v[32];
        /* chunk k = 4h + g, element 128h + 32g + l: low 4 bits from ql[64h + 32(g & 1) + l]
         * (low nibble for g < 2), top 2 bits = bits 2g of qh[32h + l] */
        for (int k = 0; k < 8; k++) {
            const int h = k / 4, g = k % 4;
            const uint8_t *ql = x[b].ql + 64 * h + 32 * (g & 1), *qh = x[b].qh + 32 * h;
            for (int l = 0; l < 32; l++)
                v[l] = (((ql[l] >> (4 * (g >> 1))) & 15) | ((qh[l] >> (2 * g)) & 3) << 4) - 32;
            lanes_chunk(sumi, v, aq + QK_K * b + 32 * k, x[b].scales[2 * k],
                        x[b].scales[2 * k + 1]);
        }
        lanes_add(acc, d, sumi);
    }
    *s = hsum8(acc);
}

/* ------------------------------------------------------------- gemm tiles */

#define SCALAR_GEMM(t, isa)                                                                    \
    void cpu_gemm_##t##_scalar(int64_t n, int nw, int na, float *s, size_t lds, const void *w, \
                               size_t ldw, const void *a, size_t lda, void *scratch) {         \
        for (int c = 0; c < na; c++)                                                           \
            for (int r = 0; r < nw; r++)                                                       \
                cpu_vec_dot_##t##_scalar(n, &s[(size_t)c * lds + r],                           \
                                         (const char *)w + (size_t)r * ldw,                    \
                                         (const char *)a + (size_t)c * lda);                   \
    }
CPU_KERNEL_TYPES(SCALAR_GEMM, scalar)
