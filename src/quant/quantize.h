/* Float -> quantized converters for every weight type chord can write.
 *
 * Unlike the *_ref quantizers in types.h (bit-exact twins of ggml's, used for
 * activations), these search for the scales that minimise the squared error of each
 * block, so they are slower and may produce different bytes than llama.cpp; the
 * layouts are the same (src/quant/blocks.h) and ref.c's dequantizers read them back.
 *
 * Conventions: `n` is a multiple of the type's block size; rows are processed block by
 * block; every function is pure and thread-safe. Non-finite input gives unspecified
 * (but finite-sized, never out-of-bounds) output. */
#ifndef CHORD_QUANT_QUANTIZE_H
#define CHORD_QUANT_QUANTIZE_H

#include <stdbool.h>
#include <stdint.h>

#include "types.h"

/* 32-element legacy blocks (quantize_legacy.c) */
void quantize_row_q4_0(const float *x, void *y, int64_t n);
void quantize_row_q4_1(const float *x, void *y, int64_t n);
void quantize_row_q5_0(const float *x, void *y, int64_t n);
void quantize_row_q5_1(const float *x, void *y, int64_t n);
void quantize_row_q8_0(const float *x, void *y, int64_t n);

/* 256-element K-quants (quantize_k.c) */
void quantize_row_q2_K(const float *x, void *y, int64_t n);
void quantize_row_q3_K(const float *x, void *y, int64_t n);
void quantize_row_q4_K(const float *x, void *y, int64_t n);
void quantize_row_q5_K(const float *x, void *y, int64_t n);
void quantize_row_q6_K(const float *x, void *y, int64_t n);

/* True when chord_quantize_row can produce type t (F32, F16, BF16, Q4_0, Q4_1, Q5_0,
 * Q5_1, Q8_0, Q2_K..Q6_K). */
bool chord_quantize_supported(chord_type t);

/* Converts n floats (a multiple of t's block size) to type t. Returns false, writing
 * nothing, when t is not supported or n is not a multiple of the block size. */
bool chord_quantize_row(chord_type t, const float *x, void *y, int64_t n);

/* ---- scale searches shared by the quantizers (quantize_k.c) ---- */

/* Round to nearest (ties to even) for |f| < 2^22, without libm or UB on NaN. */
static inline int quant_nearest_int(float f) {
    union {
        float f;
        int32_t i;
    } u;
    u.f = f + 12582912.0f;
    return (int)(u.i & 0x007fffff) - 0x00400000;
}

/* Symmetric levels q in [-nmax, nmax-1], x ~ d * q. Minimises sum w (x - d q)^2 over
 * ncand candidate scales that map the max-abs element to -(nmax + off), off evenly
 * spread over [lo_off, hi_off] (off > 0 clips it), then refines by alternating
 * re-rounding and least-squares refits. w NULL: all weights 1.
 * Returns d (may be negative; 0 for an all-zero block, q all 0). n <= 256. */
float quant_search_sym(int n, int nmax, const float *x, const float *w, int8_t *q, int ncand,
                       float lo_off, float hi_off);

/* Asymmetric levels l in [0, nmax], x ~ d * l + m. Minimises sum w (x - d l - m)^2.
 * When `m_nonpos`, m is constrained to <= 0 (K-quants store -m as an unsigned min).
 * Returns d (>= 0) and *m. n <= 256. */
float quant_search_asym(int n, int nmax, const float *x, const float *w, uint8_t *l, float *m,
                        bool m_nonpos, int nstep);

#endif
