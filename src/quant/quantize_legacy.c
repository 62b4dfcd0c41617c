/* Float -> 32-element legacy blocks (Q4_0, Q4_1, Q5_0, Q5_1, Q8_0).
 *
 * ggml's reference quantizers derive the scale from the block's max (and min); here
 * the scale (and min) minimising the block's squared error is searched for
 * (quant_search_sym / quant_search_asym), then rounded to half precision and the levels
 * re-rounded against the stored values, so the file decodes to the least-error block
 * the search found. */
#include <math.h>
#include <string.h>

#include "quantize.h"

/* Candidate scales for the symmetric types: the max-abs element mapped to -(nmax + off),
 * off in [LO, HI], NC candidates (see quant_search_sym). */
#define NC40 13
#define LO40 -2.0f
#define HI40 1.0f
#define NC50 13
#define LO50 -2.0f
#define HI50 1.0f
#define NC80 9
#define LO80 -4.0f
#define HI80 0.0f

static inline float clampf(float v, float lo, float hi) {
    v = v < lo ? lo : v;
    return v > hi ? hi : v;
}

/* Symmetric block: levels q in [-nmax, nmax-1] against the half scale. */
static chord_half sym_block(const float *x, int nmax, int ncand, float lo, float hi,
                            int8_t *q) {
    const float d = quant_search_sym(32, nmax, x, NULL, q, ncand, lo, hi);
    const chord_half dh = chord_float_to_half(d);
    const float dr = chord_half_to_float(dh);
    if (dr == 0.0f || !isfinite(dr)) {
        memset(q, 0, 32);
        return isfinite(dr) ? dh : 0;
    }
    const float id = 1.0f / dr;
    for (int j = 0; j < 32; j++)
        q[j] = (int8_t)quant_nearest_int(clampf(x[j] * id, (float)-nmax, (float)(nmax - 1)));
    return dh;
}

/* Asymmetric block: levels l in [0, nmax], x ~ d * l + m, both halves. */
static void asym_block(const float *x, int nmax, int nstep, uint8_t *l, chord_half *d_out,
                       chord_half *m_out) {
    float m;
    const float d = quant_search_asym(32, nmax, x, NULL, l, &m, false, nstep);
    const chord_half dh = chord_float_to_half(d), mh = chord_float_to_half(m);
    const float dr = chord_half_to_float(dh), mr = chord_half_to_float(mh);
    *d_out = isfinite(dr) ? dh : 0;
    *m_out = isfinite(mr) ? mh : 0;
    if (dr == 0.0f || !isfinite(dr)) {
        memset(l, 0, 32);
        return;
    }
    const float id = 1.0f / dr;
    for (int j = 0; j < 32; j++)
        l[j] = (uint8_t)quant_nearest_int(clampf((x[j] - mr) * id, 0.0f, (float)nmax));
}

void quantize_row_q4_0(const float *x, void *y, int64_t n) {
    block_q4_0 *b = y;
    int8_t q[32];
    for (int64_t i = 0; i < n / QK4_0; i++, x += QK4_0) {
        b[i].d = sym_block(x, 8, NC40, LO40, HI40, q);
        for (int j = 0; j < 16; j++)
            b[i].qs[j] = (uint8_t)((q[j] + 8) | (q[j + 16] + 8) << 4);
    }
}

void quantize_row_q4_1(const float *x, void *y, int64_t n) {
    block_q4_1 *b = y;
    uint8_t l[32];
    for (int64_t i = 0; i < n / QK4_1; i++, x += QK4_1) {
        asym_block(x, 15, 20, l, &b[i].d, &b[i].m);
        for (int j = 0; j < 16; j++)
            b[i].qs[j] = (uint8_t)(l[j] | l[j + 16] << 4);
    }
}

static void pack_q5(const uint8_t *u, uint8_t qs[16], uint8_t qh[4]) {
    uint32_t h = 0;
    for (int j = 0; j < 16; j++) {
        qs[j] = (uint8_t)((u[j] & 15) | (u[j + 16] & 15) << 4);
        h |= (uint32_t)(u[j] >> 4) << j;
        h |= (uint32_t)(u[j + 16] >> 4) << (j + 16);
    }
    for (int k = 0; k < 4; k++)
        qh[k] = (uint8_t)(h >> (8 * k));
}

void quantize_row_q5_0(const float *x, void *y, int64_t n) {
    block_q5_0 *b = y;
    int8_t q[32];
    uint8_t u[32];
    for (int64_t i = 0; i < n / QK5_0; i++, x += QK5_0) {
        b[i].d = sym_block(x, 16, NC50, LO50, HI50, q);
        for (int j = 0; j < 32; j++)
            u[j] = (uint8_t)(q[j] + 16);
        pack_q5(u, b[i].qs, b[i].qh);
    }
}

void quantize_row_q5_1(const float *x, void *y, int64_t n) {
    block_q5_1 *b = y;
    uint8_t l[32];
    for (int64_t i = 0; i < n / QK5_1; i++, x += QK5_1) {
        asym_block(x, 31, 15, l, &b[i].d, &b[i].m);
        pack_q5(l, b[i].qs, b[i].qh);
    }
}

void quantize_row_q8_0(const float *x, void *y, int64_t n) {
    block_q8_0 *b = y;
    for (int64_t i = 0; i < n / QK8_0; i++, x += QK8_0)
        b[i].d = sym_block(x, 128, NC80, LO80, HI80, b[i].qs);
}
