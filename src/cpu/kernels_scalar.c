/* Scalar kernels: the straightforward versions every SIMD kernel is tested against.
 * Each block's integer dot product is exact; blocks are combined in double. */
#include <math.h>
#include <string.h>

#include "cpu/kernels.h"

static inline float h2f(chord_half h) {
    return chord_half_to_float(h);
}

/* ------------------------------------------------------------ activations */

void cpu_quantize_f32(const float *x, void *a, int64_t n) {
    memcpy(a, x, (size_t)n * sizeof(float));
}

/* One block of k floats -> k int8 with d = max|x| / 127; returns the sum of the q. */
static int quant_block(const float *x, int8_t *q, int k, float *d_out) {
    float amax = 0.0f;
    for (int i = 0; i < k; i++)
        amax = fmaxf(amax, fabsf(x[i]));
    const float d = amax / 127.0f;
    const float id = amax > 0.0f ? 127.0f / amax : 0.0f;
    int sum = 0;
    for (int i = 0; i < k; i++) {
        const int v = (int)lrintf(x[i] * id);
        q[i] = (int8_t)v;
        sum += v;
    }
    *d_out = d;
    return sum;
}

void cpu_quantize_q8_32_scalar(const float *x, void *a, int64_t n) {
    int8_t *q = a;
    const int64_t nb = n / 32;
    float *d = (float *)(q + n), *ds = d + nb;
    for (int64_t b = 0; b < nb; b++) {
        const int sum = quant_block(x + 32 * b, q + 32 * b, 32, &d[b]);
        ds[b] = d[b] * (float)sum;
    }
}

void cpu_quantize_q8_256_scalar(const float *x, void *a, int64_t n) {
    int8_t *q = a;
    const int64_t nb = n / QK_K;
    float *d = (float *)(q + n);
    int16_t *bs = (int16_t *)(d + nb);
    for (int64_t b = 0; b < nb; b++) {
        quant_block(x + QK_K * b, q + QK_K * b, QK_K, &d[b]);
        for (int s = 0; s < 16; s++) {
            int sum = 0;
            for (int l = 0; l < 16; l++)
                sum += q[QK_K * b + 16 * s + l];
            bs[16 * b + s] = (int16_t)sum;
        }
    }
}

/* ------------------------------------------------------------ float weights */

void cpu_vec_dot_f32_scalar(int64_t n, float *s, const void *w, const void *a) {
    const float *x = w, *y = a;
    double acc = 0;
    for (int64_t i = 0; i < n; i++)
        acc += (double)x[i] * y[i];
    *s = (float)acc;
}

void cpu_vec_dot_f16_scalar(int64_t n, float *s, const void *w, const void *a) {
    const chord_half *x = w;
    const float *y = a;
    double acc = 0;
    for (int64_t i = 0; i < n; i++)
        acc += (double)h2f(x[i]) * y[i];
    *s = (float)acc;
}

void cpu_vec_dot_bf16_scalar(int64_t n, float *s, const void *w, const void *a) {
    const chord_bf16 *x = w;
    const float *y = a;
    double acc = 0;
    for (int64_t i = 0; i < n; i++)
        acc += (double)chord_bf16_to_float(x[i]) * y[i];
    *s = (float)acc;
}

/* -------------------------------------------------- 32-element weight blocks */

/* The activation row's parts (CPU_ACT_Q8_32). */
#define ACT32(a, n)                                                                            \
    const int8_t *aq = (const int8_t *)(a);                                                    \
    const float *ad = (const float *)(aq + (n));                                               \
    (void)ad

void cpu_vec_dot_q4_0_scalar(int64_t n, float *s, const void *w, const void *a) {
    const block_q4_0 *x = w;
    ACT32(a, n);
    double acc = 0;
    for (int64_t b = 0; b < n / 32; b++) {
        const int8_t *y = aq + 32 * b;
        int sum = 0;
        for (int j = 0; j < 16; j++)
            sum += ((x[b].qs[j] & 15) - 8) * y[j] + ((x[b].qs[j] >> 4) - 8) * y[j + 16];
        acc += (double)h2f(x[b].d) * ad[b] * sum;
    }
    *s = (float)acc;
}

void cpu_vec_dot_q4_1_scalar(int64_t n, float *s, const void *w, const void *a) {
    const block_q4_1 *x = w;
    ACT32(a, n);
    double acc = 0;
    for (int64_t b = 0; b < n / 32; b++) {
        const int8_t *y = aq + 32 * b;
        int sum = 0, sy = 0;
        for (int j = 0; j < 16; j++) {
            sum += (x[b].qs[j] & 15) * y[j] + (x[b].qs[j] >> 4) * y[j + 16];
            sy += y[j] + y[j + 16];
        }
        acc += (double)ad[b] * ((double)h2f(x[b].d) * sum + (double)h2f(x[b].m) * sy);
    }
    *s = (float)acc;
}

static inline uint32_t load_u32(const uint8_t *p) {
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

void cpu_vec_dot_q5_0_scalar(int64_t n, float *s, const void *w, const void *a) {
    const block_q5_0 *x = w;
    ACT32(a, n);
    double acc = 0;
    for (int64_t b = 0; b < n / 32; b++) {
        const int8_t *y = aq + 32 * b;
        const uint32_t qh = load_u32(x[b].qh);
        int sum = 0;
        for (int j = 0; j < 16; j++) {
            const int lo = ((x[b].qs[j] & 15) | (int)((qh >> j) & 1) << 4) - 16;
            const int hi = ((x[b].qs[j] >> 4) | (int)((qh >> (j + 16)) & 1) << 4) - 16;
            sum += lo * y[j] + hi * y[j + 16];
        }
        acc += (double)h2f(x[b].d) * ad[b] * sum;
    }
    *s = (float)acc;
}

void cpu_vec_dot_q5_1_scalar(int64_t n, float *s, const void *w, const void *a) {
    const block_q5_1 *x = w;
    ACT32(a, n);
    double acc = 0;
    for (int64_t b = 0; b < n / 32; b++) {
        const int8_t *y = aq + 32 * b;
        const uint32_t qh = load_u32(x[b].qh);
        int sum = 0, sy = 0;
        for (int j = 0; j < 16; j++) {
            const int lo = (x[b].qs[j] & 15) | (int)((qh >> j) & 1) << 4;
            const int hi = (x[b].qs[j] >> 4) | (int)((qh >> (j + 16)) & 1) << 4;
            sum += lo * y[j] + hi * y[j + 16];
            sy += y[j] + y[j + 16];
        }
        acc += (double)ad[b] * ((double)h2f(x[b].d) * sum + (double)h2f(x[b].m) * sy);
    }
    *s = (float)acc;
}

void cpu_vec_dot_q8_0_scalar(int64_t n, float *s, const void *w, const void *a) {
    const block_q8_0 *x = w;
    ACT32(a, n);
    double acc = 0;
    for (int64_t b = 0; b < n / 32; b++) {
        const int8_t *y = aq + 32 * b;
        int sum = 0;
        for (int j = 0; j < 32; j++)
            sum += x[b].qs[j] * y[j];
        acc += (double)h2f(x[b].d) * ad[b] * sum;
    }
    *s = (float)acc;
}

/* ------------------------------------------------------------------ K-quants */

#define ACT256(a, n)                                                                           \
    const int8_t *aq = (const int8_t *)(a);                                                    \
    const float *ad = (const float *)(aq + (n))

/* Element e (0..255) of a Q2_K / Q3_K block: 2 low bits from qs (see ref.c). */
static inline int k_low2(const uint8_t *qs, int e) {
    const int half = e / 128, g = (e % 128) / 32, l = e % 32;
    return (qs[32 * half + l] >> (2 * g)) & 3;
}

void cpu_vec_dot_q2_K_scalar(int64_t n, float *s, const void *w, const void *a) {
    const block_q2_K *x = w;
    ACT256(a, n);
    double acc = 0;
    for (int64_t b = 0; b < n / QK_K; b++) {
        const int8_t *y = aq + QK_K * b;
        int sum_q = 0, sum_m = 0;
        for (int e = 0; e < QK_K; e++) {
            const int sc = x[b].scales[e / 16] & 15, mn = x[b].scales[e / 16] >> 4;
            sum_q += sc * k_low2(x[b].qs, e) * y[e];
            sum_m += mn * y[e];
        }
        acc += (double)ad[b] * ((double)h2f(x[b].d) * sum_q - (double)h2f(x[b].dmin) * sum_m);
    }
    *s = (float)acc;
}

static inline int q3_K_scale(const uint8_t sc[12], int s) {
    const int lo = (sc[s % 8] >> (4 * (s / 8))) & 0x0F;
    const int hi = (sc[8 + s % 4] >> (2 * (s / 4))) & 0x03;
    return (lo | hi << 4) - 32;
}

void cpu_vec_dot_q3_K_scalar(int64_t n, float *s, const void *w, const void *a) {
    const block_q3_K *x = w;
    ACT256(a, n);
    double acc = 0;
    for (int64_t b = 0; b < n / QK_K; b++) {
        const int8_t *y = aq + QK_K * b;
        int sum = 0;
        for (int e = 0; e < QK_K; e++) {
            const int half = e / 128, g = (e % 128) / 32, l = e % 32;
            const int hbit = (x[b].hmask[l] >> (4 * half + g)) & 1;
            const int q = k_low2(x[b].qs, e) - (hbit ? 0 : 4);
            sum += q3_K_scale(x[b].scales, e / 16) * q * y[e];
        }
        acc += (double)ad[b] * h2f(x[b].d) * sum;
    }
    *s = (float)acc;
}

static inline void k4_scale_min(const uint8_t q[12], int j, int *sc, int *mn) {
    if (j < 4) {
        *sc = q[j] & 63;
        *mn = q[j + 4] & 63;
    } else {
        *sc = (q[j + 4] & 0x0F) | ((q[j - 4] >> 6) << 4);
        *mn = (q[j + 4] >> 4) | ((q[j] >> 6) << 4);
    }
}

void cpu_vec_dot_q4_K_scalar(int64_t n, float *s, const void *w, const void *a) {
    const block_q4_K *x = w;
    ACT256(a, n);
    double acc = 0;
    for (int64_t b = 0; b < n / QK_K; b++) {
        const int8_t *y = aq + QK_K * b;
        int sum_q = 0, sum_m = 0;
        for (int e = 0; e < QK_K; e++) {
            int sc, mn;
            k4_scale_min(x[b].scales, e / 32, &sc, &mn);
            const int c = e / 64, l = e % 32;
            const uint8_t byte = x[b].qs[32 * c + l];
            const int q = (e % 64) < 32 ? (byte & 15) : (byte >> 4);
            sum_q += sc * q * y[e];
            sum_m += mn * y[e];
        }
        acc += (double)ad[b] * ((double)h2f(x[b].d) * sum_q - (double)h2f(x[b].dmin) * sum_m);
    }
    *s = (float)acc;
}

void cpu_vec_dot_q5_K_scalar(int64_t n, float *s, const void *w, const void *a) {
    const block_q5_K *x = w;
    ACT256(a, n);
    double acc = 0;
    for (int64_t b = 0; b < n / QK_K; b++) {
        const int8_t *y = aq + QK_K * b;
        int sum_q = 0, sum_m = 0;
        for (int e = 0; e < QK_K; e++) {
            int sc, mn;
            k4_scale_min(x[b].scales, e / 32, &sc, &mn);
            const int c = e / 64, l = e % 32;
            const uint8_t byte = x[b].qs[32 * c + l];
            int q = (e % 64) < 32 ? (byte & 15) : (byte >> 4);
            q += ((x[b].qh[l] >> (e / 32)) & 1) << 4;
            sum_q += sc * q * y[e];
            sum_m += mn * y[e];
        }
        acc += (double)ad[b] * ((double)h2f(x[b].d) * sum_q - (double)h2f(x[b].dmin) * sum_m);
    }
    *s = (float)acc;
}

void cpu_vec_dot_q6_K_scalar(int64_t n, float *s, const void *w, const void *a) {
    const block_q6_K *x = w;
    ACT256(a, n);
    double acc = 0;
    for (int64_t b = 0; b < n / QK_K; b++) {
        const int8_t *y = aq + QK_K * b;
        int sum = 0;
        for (int e = 0; e < QK_K; e++) {
            const int half = e / 128, g = (e % 128) / 32, l = e % 32;
            const uint8_t lb = x[b].ql[64 * half + l + 32 * (g & 1)];
            const int lo = g < 2 ? (lb & 15) : (lb >> 4);
            const int hi = (x[b].qh[32 * half + l] >> (2 * g)) & 3;
            sum += x[b].scales[e / 16] * ((lo | hi << 4) - 32) * y[e];
        }
        acc += (double)ad[b] * h2f(x[b].d) * sum;
    }
    *s = (float)acc;
}

/* ------------------------------------------------------------- gemm tiles */

#define SCALAR_GEMM(t, isa)                                                                    \
    void cpu_gemm_##t##_scalar(int64_t n, int nw, int na, float *s, size_t lds, const void *w, \
                               size_t ldw, const void *a, size_t lda) {                        \
        for (int c = 0; c < na; c++)                                                           \
            for (int r = 0; r < nw; r++)                                                       \
                cpu_vec_dot_##t##_scalar(n, &s[(size_t)c * lds + r],                           \
                                         (const char *)w + (size_t)r * ldw,                    \
                                         (const char *)a + (size_t)c * lda);                   \
    }
CPU_KERNEL_TYPES(SCALAR_GEMM, scalar)
