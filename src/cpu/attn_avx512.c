/* AVX-512 attention of a batch of up to 16 queries sharing one K/V head (the query heads
 * of a GQA group, several tokens of a prefill): each zmm lane is one query, so every K
 * and V element is converted once and broadcast to all queries of the batch, and no dot
 * product needs a horizontal reduction or a call.
 *
 * The float operations of each query are the per-query path's (backend_cpu.c), in its
 * order: the F16 dot's 16 lane chains (lane l sums elements l, l + 16, ... with fma) and
 * its reduce16 tree, the same softmax steps (scale, max, subtract, the exp kernel, the
 * padded 16-key pairwise sums added in double, the F16 rounding of the weights). Keys at
 * or past a query's length are computed or loaded but masked out, as the reference never
 * sees them.
 *
 * Each fma needs a broadcast and a vector load, so the loads bound it; two keys (scores)
 * or two output dimensions (values) at a time share the vector loads. Their 2 x 16 chains
 * would not fit in registers, so chains c and c + 8 are run together and added at once,
 * as reduce16's first step adds them. */
#include <immintrin.h>
#include <math.h>
#include <stdint.h>
#include <string.h>

#include "cpu/kernels.h"
#include "cpu/simd_util.h"


INLINE __m512 round_half16(__m512 x) {
    return _mm512_cvtph_ps(_mm512_cvtps_ph(x, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
}

/* n halves -> floats (n a multiple of 16 is read whole: callers pad with masks) */
INLINE void halves_to_float(float *dst, const chord_half *src, int n) {
    int i = 0;
    for (; i + 16 <= n; i += 16)
        _mm512_store_ps(dst + i,
                        _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(src + i))));
    if (i < n) {
        const __mmask16 m = (__mmask16)((1u << (n - i)) - 1);
        _mm512_store_ps(dst + i, _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(m, src + i)));
    }
}

/* reduce16 of 16 chains, each a vector over the queries: halves, quarters, then
 * (t0 + t2) + (t1 + t3), as _mm512_reduce_add_ps (kernels_scalar.c) */
INLINE __m512 reduce16v(const __m512 l[16]) {
    __m512 t8[8], t4[4];
    for (int i = 0; i < 8; i++)
        t8[i] = _mm512_add_ps(l[i + 8], l[i]);
    for (int i = 0; i < 4; i++)
        t4[i] = _mm512_add_ps(t8[i + 4], t8[i]);
    return _mm512_add_ps(_mm512_add_ps(t4[0], t4[2]), _mm512_add_ps(t4[1], t4[3]));
}

/* the score vector of one key (kf: its hd floats) against the transposed queries qt */
INLINE __m512 score(const float *kf, const float *qt, int hd) {
    __m512 l[16];
    for (int c = 0; c < 16; c++)
        l[c] = _mm512_setzero_ps();
    /* chain c takes d = c, c + 16, ... in order; stepping all 16 chains together keeps
     * 16 independent fmas in flight instead of one chain's latency at a time */
    int d0 = 0;
    for (; d0 + 16 <= hd; d0 += 16)
#pragma GCC unroll 16
        for (int c = 0; c < 16; c++)
            l[c] = _mm512_fmadd_ps(_mm512_set1_ps(kf[d0 + c]),
                                   _mm512_load_ps(qt + 16 * (d0 + c)), l[c]);
    for (int c = 0; d0 + c < hd; c++)
        l[c] = _mm512_fmadd_ps(_mm512_set1_ps(kf[d0 + c]), _mm512_load_ps(qt + 16 * (d0 + c)),
                               l[c]);
    return reduce16v(l);
}

/* v, kept in a register: GCC would fold its load into each of its two fmas, loading it
 * twice, which is the load this pairing saves */
INLINE __m512 in_reg(__m512 v) {
    __asm__("" : "+v"(v));
    return v;
}

/* The scores of two keys (kf0, kf1: their hd floats) at once, each qt load serving both */
INLINE void score2(const float *kf0, const float *kf1, const float *qt, int hd, __m512 *s0,
                   __m512 *s1) {
    __m512 t0[8], t1[8];
    for (int i = 0; i < 8; i++) {
        __m512 a0 = _mm512_setzero_ps(), a1 = a0, b0 = a0, b1 = a0;
        for (int d = i; d < hd; d += 16) {
            const __m512 q = in_reg(_mm512_load_ps(qt + 16 * d));
            a0 = _mm512_fmadd_ps(_mm512_set1_ps(kf0[d]), q, a0);
            a1 = _mm512_fmadd_ps(_mm512_set1_ps(kf1[d]), q, a1);
        }
        for (int d = i + 8; d < hd; d += 16) {
            const __m512 q = in_reg(_mm512_load_ps(qt + 16 * d));
            b0 = _mm512_fmadd_ps(_mm512_set1_ps(kf0[d]), q, b0);
            b1 = _mm512_fmadd_ps(_mm512_set1_ps(kf1[d]), q, b1);
        }
        t0[i] = _mm512_add_ps(b0, a0);
        t1[i] = _mm512_add_ps(b1, a1);
    }
    __m512 u0[4], u1[4];
    for (int i = 0; i < 4; i++) {
        u0[i] = _mm512_add_ps(t0[i + 4], t0[i]);
        u1[i] = _mm512_add_ps(t1[i + 4], t1[i]);
    }
    *s0 = _mm512_add_ps(_mm512_add_ps(u0[0], u0[2]), _mm512_add_ps(u0[1], u0[3]));
    *s1 = _mm512_add_ps(_mm512_add_ps(u1[0], u1[2]), _mm512_add_ps(u1[1], u1[3]));
}

/* Dims i and i + 1 of every query's output (vr0, vr1: their values of the keys), each S
 * load serving both: chains c, c + 1, c + 8, c + 9 over keys p = chain (mod 16), the keys
 * every query has (below full) unmasked, then the rest masked per query. */
INLINE void out2(const float *vr0, const float *vr1, const float *S, int full, int lmax,
                 __m512i lenv, __m512 *o0, __m512 *o1) {
    __m512 t0[8], t1[8];
    for (int c = 0; c < 8; c += 2) {
        static const int CH[4] = {0, 1, 8, 9};
        __m512 A[4], B[4];
        for (int k = 0; k < 4; k++)
            A[k] = B[k] = _mm512_setzero_ps();
        for (int p0 = 0; p0 < full; p0 += 16)
            for (int k = 0; k < 4; k++) {
                const int p = p0 + c + CH[k];
                const __m512 sv = in_reg(_mm512_load_ps(S + 16 * (size_t)p));
                A[k] = _mm512_fmadd_ps(_mm512_set1_ps(vr0[p]), sv, A[k]);
                B[k] = _mm512_fmadd_ps(_mm512_set1_ps(vr1[p]), sv, B[k]);
            }
        for (int k = 0; k < 4; k++)
            for (int p = full + c + CH[k]; p < lmax; p += 16) {
                const __mmask16 valid = _mm512_cmpgt_epi32_mask(lenv, _mm512_set1_epi32(p));
                const __m512 sv = _mm512_load_ps(S + 16 * (size_t)p);
                A[k] = _mm512_mask3_fmadd_ps(_mm512_set1_ps(vr0[p]), sv, A[k], valid);
                B[k] = _mm512_mask3_fmadd_ps(_mm512_set1_ps(vr1[p]), sv, B[k], valid);
            }
        t0[c] = _mm512_add_ps(A[2], A[0]);
        t0[c + 1] = _mm512_add_ps(A[3], A[1]);
        t1[c] = _mm512_add_ps(B[2], B[0]);
        t1[c + 1] = _mm512_add_ps(B[3], B[1]);
    }
    __m512 u0[4], u1[4];
    for (int i = 0; i < 4; i++) {
        u0[i] = _mm512_add_ps(t0[i + 4], t0[i]);
        u1[i] = _mm512_add_ps(t1[i + 4], t1[i]);
    }
    *o0 = _mm512_add_ps(_mm512_add_ps(u0[0], u0[2]), _mm512_add_ps(u0[1], u0[3]));
    *o1 = _mm512_add_ps(_mm512_add_ps(u1[0], u1[2]), _mm512_add_ps(u1[1], u1[3]));
}

/* scores of keys p and p + 1 (hd a constant where the caller dispatches on it) */
INLINE void scores_pair(const cpu_attn_batch *b, int p, float *kf, const float *qt, int hd,
                        __m512 *s0, __m512 *s1) {
    float *kf1 = kf + ((hd + 15) & ~15); /* aligned: halves_to_float stores whole vectors */
    halves_to_float(kf, b->k + (size_t)p * b->ldk, hd);
    halves_to_float(kf1, b->k + (size_t)(p + 1) * b->ldk, hd);
    score2(kf, kf1, qt, hd, s0, s1);
}

INLINE float *align64(float *p) {
    return (float *)(((uintptr_t)p + 63) & ~(uintptr_t)63);
}

void cpu_attn_batch_avx512(const cpu_attn_batch *b) {
    const int hd = b->hd, nq = b->nq;
    int lmin = b->len[0], lmax = b->len[0];
    for (int j = 1; j < nq; j++) {
        lmin = b->len[j] < lmin ? b->len[j] : lmin;
        lmax = b->len[j] > lmax ? b->len[j] : lmax;
    }
    const int l16 = (lmax + 15) & ~15;
    float *qt = align64(b->scratch);           /* [hd][16] */
    float *ot = qt + 16 * (size_t)hd;          /* [hd][16] */
    float *kf = ot + 16 * (size_t)hd;          /* [2][hd + 16] */
    float *vr = align64(kf + 2 * (hd + 16));   /* [2][l16 + 16] */
    float *S = align64(vr + 2 * (l16 + 16));   /* [l16][16] */
    int32_t lens[16];
    for (int j = 0; j < 16; j++)
        lens[j] = j < nq ? b->len[j] : 0;
    const __m512i lenv = _mm512_loadu_si512((const void *)lens);

    for (int d = 0; d < hd; d++) {
        float col[16];
        for (int j = 0; j < 16; j++)
            col[j] = j < nq ? b->q[j][d] : 0.0f;
        _mm512_store_ps(qt + 16 * d, round_half16(_mm512_loadu_ps(col)));
    }

    /* scores, scaled, and their maximum over each query's keys (max_ps(s, mx) is
     * s > mx ? s : mx, the reference's test) */
    const __m512 scale = _mm512_set1_ps(b->scale);
    __m512 mx = _mm512_set1_ps(-INFINITY);
    int p = 0;
    for (; p + 2 <= lmax; p += 2) {
        __m512 s2[2];
        if (hd == 64)
            scores_pair(b, p, kf, qt, 64, &s2[0], &s2[1]);
        else if (hd == 128)
            scores_pair(b, p, kf, qt, 128, &s2[0], &s2[1]);
        else
            scores_pair(b, p, kf, qt, hd, &s2[0], &s2[1]);
        for (int k = 0; k < 2; k++) {
            const __m512 s = _mm512_mul_ps(s2[k], scale);
            _mm512_store_ps(S + 16 * (size_t)(p + k), s);
            const __mmask16 valid = _mm512_cmpgt_epi32_mask(lenv, _mm512_set1_epi32(p + k));
            mx = _mm512_mask_max_ps(mx, valid, s, mx);
        }
    }
    if (p < lmax) {
        halves_to_float(kf, b->k + (size_t)p * b->ldk, hd);
        const __m512 s = _mm512_mul_ps(score(kf, qt, hd), scale);
        _mm512_store_ps(S + 16 * (size_t)p, s);
        const __mmask16 valid = _mm512_cmpgt_epi32_mask(lenv, _mm512_set1_epi32(p));
        mx = _mm512_mask_max_ps(mx, valid, s, mx);
    }
    /* minus the max; masked and padding keys -inf, so e^x = 0 */
    const __m512 ninf = _mm512_set1_ps(-INFINITY);
    for (int p = 0; p < l16; p++) {
        const __mmask16 valid = _mm512_cmpgt_epi32_mask(lenv, _mm512_set1_epi32(p));
        const __m512 s = p < lmax ? _mm512_load_ps(S + 16 * (size_t)p) : ninf;
        _mm512_store_ps(S + 16 * (size_t)p, _mm512_mask_sub_ps(ninf, valid, s, mx));
    }
    b->exp((int64_t)l16 * 16, S, S);
    /* per 16 keys: the pairwise sum, added in double (a query's keys past its padded
     * length add 0, which leaves the sum as it is) */
    __m512d sum_lo = _mm512_setzero_pd(), sum_hi = _mm512_setzero_pd();
    for (int p = 0; p < l16; p += 16) {
        __m512 v[16];
        for (int i = 0; i < 16; i++)
            v[i] = _mm512_load_ps(S + 16 * (size_t)(p + i));
        __m512 a[8], c[4];
        for (int i = 0; i < 8; i++)
            a[i] = _mm512_add_ps(v[i], v[i + 8]);
        for (int i = 0; i < 4; i++)
            c[i] = _mm512_add_ps(a[i], a[i + 4]);
        const __m512 t = _mm512_add_ps(_mm512_add_ps(c[0], c[2]), _mm512_add_ps(c[1], c[3]));
        sum_lo = _mm512_add_pd(sum_lo, _mm512_cvtps_pd(_mm512_castps512_ps256(t)));
        sum_hi = _mm512_add_pd(sum_hi, _mm512_cvtps_pd(_mm512_extractf32x8_ps(t, 1)));
    }
    const __m512d one = _mm512_set1_pd(1.0);
    const __m512 inv =
        _mm512_insertf32x8(_mm512_castps256_ps512(_mm512_cvtpd_ps(_mm512_div_pd(one, sum_lo))),
                           _mm512_cvtpd_ps(_mm512_div_pd(one, sum_hi)), 1);
    for (int p = 0; p < lmax; p++) {
        const __mmask16 valid = _mm512_cmpgt_epi32_mask(lenv, _mm512_set1_epi32(p));
        const __m512 s = _mm512_load_ps(S + 16 * (size_t)p);
        _mm512_store_ps(S + 16 * (size_t)p,
                        _mm512_maskz_mov_ps(valid, round_half16(_mm512_mul_ps(s, inv))));
    }

    /* outputs: dim i of every query, lane chain l over keys l, l + 16, ...; keys every
     * query has go unmasked */
    const int full = lmin & ~15;
    int i = 0;
    for (; i + 2 <= hd; i += 2) {
        float *vr1 = vr + l16 + 16;
        halves_to_float(vr, b->vt + (size_t)i * b->ldv, lmax);
        halves_to_float(vr1, b->vt + (size_t)(i + 1) * b->ldv, lmax);
        __m512 o0, o1;
        out2(vr, vr1, S, full, lmax, lenv, &o0, &o1);
        _mm512_store_ps(ot + 16 * i, o0);
        _mm512_store_ps(ot + 16 * (i + 1), o1);
    }
    for (; i < hd; i++) {
        halves_to_float(vr, b->vt + (size_t)i * b->ldv, lmax);
        __m512 l[16];
        for (int c = 0; c < 16; c++)
            l[c] = _mm512_setzero_ps();
        for (int p = 0; p < full; p += 16)
            for (int c = 0; c < 16; c++)
                l[c] = _mm512_fmadd_ps(_mm512_set1_ps(vr[p + c]),
                                       _mm512_load_ps(S + 16 * (size_t)(p + c)), l[c]);
        for (int p = full; p < lmax; p++) {
            const __mmask16 valid = _mm512_cmpgt_epi32_mask(lenv, _mm512_set1_epi32(p));
            l[p & 15] = _mm512_mask3_fmadd_ps(
                _mm512_set1_ps(vr[p]), _mm512_load_ps(S + 16 * (size_t)p), l[p & 15], valid);
        }
        _mm512_store_ps(ot + 16 * i, reduce16v(l));
    }
    for (int j = 0; j < nq; j++)
        for (int i = 0; i < hd; i++)
            b->out[j][i] = ot[16 * i + j];
}
