/* AVX-512 VNNI "vertical" gemm tiles for prefill of the K-quants (Q4_K, Q5_K, Q6_K) and of
 * the 32-block types whose reference keeps 8 float lanes per block (Q8_0 exact, Q5_0,
 * Q4_1, Q5_1; Q4_0 and Q8_0's fast order: gemm_q4q8_avx512.c). Each zmm lane is one
 * (weight row, activation row) pair, 16 weight rows per zmm (gemm_vert_avx512.h), so an
 * integer block total needs no horizontal reduction and each pair's float chain is the
 * reference's (kernels_scalar.c), in its order, only computed for 16 pairs at once.
 *
 * A panel of 16 weight rows is unpacked once per block (dword k of every row's quants in
 * lane order) and then used for every activation row of the tile: per activation row,
 * vpdpbusd (or vpmaddubsw + vpdpwssd) with the activation's 4 bytes broadcast adds 4
 * products per lane. Weights are read straight from the mapped file; the float
 * accumulators go through the caller's scratch between slabs of blocks. */
#include <immintrin.h>
#include <stddef.h>
#include <string.h>

#include "cpu/gemm_vert_avx512.h"
#include "cpu/kernels.h"

/* ---------------------------------------------------------------- K-quants
 * Reference per pair and superblock (Q4_K; Q5_K adds a fifth bit and sums the 4 accm terms
 * as integers into one chain; Q6_K has no mins and 16-element scales):
 *   sumi[m] = sum over sub-blocks j of sc_j * (4-element product of elements 4m..4m+3)
 *   accm[k] = fma(-(d_a * dmin_w), m_2k * S_2k + m_2k+1 * S_2k+1, accm[k])  (S: per-32 sums)
 *   acc[m]  = fma(d_a * d_w, (float)sumi[m], acc[m])
 *   result  = hsum8(acc) (+ ((accm0 + accm2) + (accm1 + accm3)))
 * Here sumi[m] of 16 rows is one zmm: per (j, m) vpmaddubsw of the activation's 4 bytes,
 * biased to unsigned (y + 128), against the 16 rows' 4 signed weights, then vpdpwssd
 * with the rows' scale; the bias (128 * sum of sc_j * weights) is the accumulator's
 * start, computed once per superblock when the panel is unpacked. The float
 * accumulators of a (panel, activation) pair stay in registers across a slab of
 * superblocks and go through memory between slabs. */

enum {
    KSLAB = 2, /* superblocks per slab */
    KTOK = 32, /* activation rows per tile */
    KPAN = 8,  /* panels per tile */
};

/* one superblock of a 16-row panel, unpacked */
typedef struct {
    __m512i w[8][8];  /* [j][m]: 4 signed weights of elements 32j + 4m.. per lane */
    __m512i sc[8][2]; /* [j][m / 4]: the scale as an int16 pair */
    __m512i corr[8];  /* [m]: -128 * sum over j of sc * (sum of the 4 weights) */
    __m512i mn[4];    /* [k]: int16 pair (min 2k, min 2k + 1) */
    __m512 dw, dm;
} kpan;

/* the activations of a slab, token-major */
typedef struct {
    uint8_t q[KTOK][KSLAB][256]; /* y + 128 */
    float d[KTOK][KSLAB];
    int16_t s32[KTOK][KSLAB][8];
} kslab;

/* corr[m] from w and the scales (isc: the scale in the low int16 of each lane, 0 above,
 * so a sum of 4 weights, sign-extended, times it is one vpdpwssd) */
INLINE void k_corr(kpan *u, const __m512i isc[8][2]) {
    const __m512i ones = _mm512_set1_epi8(1);
    for (int m = 0; m < 8; m++) {
        __m512i c = _mm512_setzero_si512();
        for (int j = 0; j < 8; j++) {
            const __m512i s4 = _mm512_dpbusd_epi32(_mm512_setzero_si512(), ones, u->w[j][m]);
            c = _mm512_dpwssd_epi32(c, s4, isc[j][m / 4]);
        }
        u->corr[m] = _mm512_sub_epi32(_mm512_setzero_si512(), _mm512_slli_epi32(c, 7));
    }
}

/* byte i of every dword of v, zero- (SIGNED: sign-) extended */
INLINE __m512i dw_byte(__m512i v, int i, const int SIGNED) {
    const __m512i t = _mm512_slli_epi32(v, 24 - 8 * i);
    return SIGNED ? _mm512_srai_epi32(t, 24) : _mm512_srli_epi32(t, 24);
}

/* an int32 lane value in -32768..32767 as an int16 pair (v, v) */
INLINE __m512i dup16(__m512i v) {
    return _mm512_or_si512(_mm512_and_si512(v, _mm512_set1_epi32(0xffff)),
                           _mm512_slli_epi32(v, 16));
}

/* the fifth bit of sub-block jj (Q5_K): bit jj of every byte of qh, moved to bit 4 */
INLINE __m512i q5_K_hbit(__m512i qh, int jj) {
    const __m512i t = jj < 4 ? _mm512_slli_epi32(qh, 4 - jj) : _mm512_srli_epi32(qh, jj - 4);
    return _mm512_and_si512(t, _mm512_set1_epi8(16));
}

/* Q4_K and Q5_K share the scales, mins and nibble layout; Q5_K adds qh, one bit per
 * element (Q5: 1 for Q5_K). Both blocks start with d and dmin. */
INLINE void unpack_q45_K(kpan *u, const uint8_t *const rp[16], int64_t b, const int Q5) {
    const size_t bsz = Q5 ? sizeof(block_q5_K) : sizeof(block_q4_K);
    const size_t oqs = Q5 ? offsetof(block_q5_K, qs) : offsetof(block_q4_K, qs);
    const size_t osc = Q5 ? offsetof(block_q5_K, scales) : offsetof(block_q4_K, scales);
    const __m512i m4 = _mm512_set1_epi8(15);
    __m512i QH[2][4]; /* [h][k]: qh bytes 16h + 4k.., the elements of w[.][4h + k] */
    if (Q5)
        for (int h = 0; h < 2; h++)
            panel_dwords(rp, bsz, b, offsetof(block_q5_K, qh) + 16 * h, QH[h]);
    for (int i = 0; i < 4; i++) /* qs[32i..32i+31]: sub-blocks 2i (low), 2i + 1 (high) */
        for (int h = 0; h < 2; h++) {
            __m512i X[4];
            panel_dwords(rp, bsz, b, oqs + 32 * i + 16 * h, X);
            for (int k = 0; k < 4; k++) {
                __m512i lo = _mm512_and_si512(X[k], m4);
                __m512i hi = _mm512_and_si512(_mm512_srli_epi32(X[k], 4), m4);
                if (Q5) {
                    lo = _mm512_or_si512(lo, q5_K_hbit(QH[h][k], 2 * i));
                    hi = _mm512_or_si512(hi, q5_K_hbit(QH[h][k], 2 * i + 1));
                }
                u->w[2 * i][4 * h + k] = lo;
                u->w[2 * i + 1][4 * h + k] = hi;
            }
        }
    /* 6-bit scales and mins of 16 rows: sc0..3 = s0 & 63, mn0..3 = s1 & 63,
     * sc4..7 = (s2 & 15) | (s0 >> 6) << 4, mn4..7 = (s2 >> 4) | (s1 >> 6) << 4 (bytes) */
    __m512i S[4];
    panel_dwords(rp, bsz, b, osc, S);
    const __m512i k63 = _mm512_set1_epi8(63), k30 = _mm512_set1_epi8(0x30);
    const __m512i sc4[2] = {_mm512_and_si512(S[0], k63),
                            _mm512_or_si512(_mm512_and_si512(S[2], m4),
                                            _mm512_and_si512(_mm512_srli_epi32(S[0], 2), k30))};
    const __m512i mn4[2] = {_mm512_and_si512(S[1], k63),
                            _mm512_or_si512(_mm512_and_si512(_mm512_srli_epi32(S[2], 4), m4),
                                            _mm512_and_si512(_mm512_srli_epi32(S[1], 2), k30))};
    __m512i isc[8][2];
    for (int jj = 0; jj < 8; jj++) {
        isc[jj][0] = isc[jj][1] = dw_byte(sc4[jj / 4], jj % 4, 0);
        u->sc[jj][0] = u->sc[jj][1] = dup16(isc[jj][0]);
    }
    for (int k = 0; k < 4; k++)
        u->mn[k] =
            _mm512_or_si512(dw_byte(mn4[k / 2], 2 * (k % 2), 0),
                            _mm512_slli_epi32(dw_byte(mn4[k / 2], 2 * (k % 2) + 1, 0), 16));
    k_corr(u, isc);
    u->dw = panel_halves(rp, bsz, b, offsetof(block_q4_K, d));
    u->dm = panel_halves(rp, bsz, b, offsetof(block_q4_K, dmin));
}
_Static_assert(offsetof(block_q5_K, d) == offsetof(block_q4_K, d) &&
                   offsetof(block_q5_K, dmin) == offsetof(block_q4_K, dmin),
               "Q4_K and Q5_K share d and dmin");

static void unpack_q6_K(kpan *u, const uint8_t *const rp[16], int64_t b) {
    const size_t bsz = sizeof(block_q6_K);
    const __m512i m4 = _mm512_set1_epi8(15), m3 = _mm512_set1_epi8(3);
    const __m512i k32 = _mm512_set1_epi8(32);
    for (int h = 0; h < 2; h++) {
        /* chunk k = 4h + g, element l: low bits from ql[64h + 32(g & 1) + l] (nibble g / 2),
         * top bits = bits 2g of qh[32h + l] */
        __m512i QL[4][4], QH[2][4];
        for (int i = 0; i < 4; i++)
            panel_dwords(rp, bsz, b, offsetof(block_q6_K, ql) + 64 * h + 16 * i, QL[i]);
        for (int i = 0; i < 2; i++)
            panel_dwords(rp, bsz, b, offsetof(block_q6_K, qh) + 32 * h + 16 * i, QH[i]);
        for (int g = 0; g < 4; g++)
            for (int m = 0; m < 8; m++) {
                /* dword m of the 32 bytes at 32(g & 1): piece 2(g & 1) + m / 4, dword m % 4 */
                const __m512i ql = QL[2 * (g & 1) + m / 4][m % 4];
                const __m512i qh = QH[m / 4][m % 4];
                const __m512i lo = _mm512_and_si512(_mm512_srli_epi32(ql, 4 * (g >> 1)), m4);
                const __m512i hi = _mm512_and_si512(_mm512_srli_epi32(qh, 2 * g), m3);
                u->w[4 * h + g][m] =
                    _mm512_sub_epi8(_mm512_or_si512(lo, _mm512_slli_epi32(hi, 4)), k32);
            }
    }
    __m512i S[4]; /* dword i: int8 scales 4i..4i+3 */
    panel_dwords(rp, bsz, b, offsetof(block_q6_K, scales), S);
    __m512i isc[8][2];
    for (int k = 0; k < 8; k++)
        for (int hh = 0; hh < 2; hh++) {
            const int sx = 2 * k + hh;
            const __m512i v = dw_byte(S[sx / 4], sx % 4, 1);
            u->sc[k][hh] = dup16(v);
            isc[k][hh] = _mm512_and_si512(v, _mm512_set1_epi32(0xffff));
        }
    k_corr(u, isc);
    u->dw = panel_halves(rp, bsz, b, offsetof(block_q6_K, d));
    u->dm = _mm512_setzero_ps();
}

static void kslab_fill(kslab *sl, const vjob *j, int64_t b0, int sb, int nt) {
    const __m512i bias = _mm512_set1_epi8((char)0x80);
    for (int t = 0; t < nt; t++) {
        const uint8_t *row = j->a + (size_t)t * j->lda;
        const float *d = (const float *)(row + j->n);
        const int16_t *s32 = (const int16_t *)(d + j->nb) + j->n / 16;
        for (int b = 0; b < sb; b++) {
            for (int i = 0; i < 4; i++)
                _mm512_store_si512(
                    (void *)(sl->q[t][b] + 64 * i),
                    _mm512_xor_si512(
                        _mm512_loadu_si512((const void *)(row + 256 * (b0 + b) + 64 * i)),
                        bias));
            sl->d[t][b] = d[b0 + b];
            memcpy(sl->s32[t][b], s32 + 8 * (b0 + b), 16);
        }
    }
}

/* float accumulators of one (panel, activation) pair */
typedef struct {
    __m512 acc[8], accm[4];
} kacc;

#define KQ_Q4_K 0
#define KQ_Q6_K 1
#define KQ_Q5_K 2

/* MINS, how the mins enter (the reference's order): 0 none (Q6_K); 1 Q4_K: 4 float
 * chains of pairs of per-32 mins x sums; 2 Q5_K: their total, one chain (accm[0]) */

INLINE void k_run(const kpan *u, const uint8_t *y, float da, const int16_t *s32, __m512 acc[8],
                  __m512 accm[4], const int MINS) {
    __m512i I[8];
    for (int m = 0; m < 8; m++)
        I[m] = u->corr[m];
#pragma GCC unroll 8
    for (int jj = 0; jj < 8; jj++) {
        const __m512i s0 = u->sc[jj][0], s1 = u->sc[jj][1];
#pragma GCC unroll 8
        for (int m = 0; m < 8; m++) {
            int32_t y4;
            memcpy(&y4, y + 32 * jj + 4 * m, 4);
            const __m512i p = _mm512_maddubs_epi16(_mm512_set1_epi32(y4), u->w[jj][m]);
            I[m] = _mm512_dpwssd_epi32(I[m], p, m < 4 ? s0 : s1);
        }
    }
    const __m512 vda = _mm512_set1_ps(da);
    if (MINS == 1) {
        const __m512 nd = _mm512_mul_ps(u->dm, vda);
        for (int k = 0; k < 4; k++) {
            int32_t sp;
            memcpy(&sp, s32 + 2 * k, 4);
            const __m512i pr =
                _mm512_dpwssd_epi32(_mm512_setzero_si512(), u->mn[k], _mm512_set1_epi32(sp));
            accm[k] = _mm512_fnmadd_ps(nd, _mm512_cvtepi32_ps(pr), accm[k]);
        }
    } else if (MINS == 2) {
        /* the 4 pair products' integer total, exact in any order, then one float step */
        __m512i pr = _mm512_setzero_si512();
        for (int k = 0; k < 4; k++) {
            int32_t sp;
            memcpy(&sp, s32 + 2 * k, 4);
            pr = _mm512_dpwssd_epi32(pr, u->mn[k], _mm512_set1_epi32(sp));
        }
        accm[0] = _mm512_fnmadd_ps(_mm512_mul_ps(u->dm, vda), _mm512_cvtepi32_ps(pr), accm[0]);
    }
    const __m512 d = _mm512_mul_ps(u->dw, vda);
    for (int m = 0; m < 8; m++)
        acc[m] = _mm512_fmadd_ps(d, _mm512_cvtepi32_ps(I[m]), acc[m]);
}

/* the tile's scratch (CPU_GEMM_SCRATCH): the accumulators go through L2 between slabs */
typedef struct {
    kacc ka[KPAN * KTOK];
    kslab sl;
    kpan u[KSLAB];
} kscratch;
_Static_assert(sizeof(kscratch) <= CPU_GEMM_SCRATCH, "K-quant tile scratch");

INLINE void k_tile(const vjob *j, int nr, int nt, float *s, size_t lds, kscratch *ws,
                   const int TYPE) {
    const int MINS = TYPE == KQ_Q4_K ? 1 : TYPE == KQ_Q5_K ? 2 : 0;
    const int nm = MINS == 1 ? 4 : MINS; /* float chains of the mins */
    const int npan = (nr + VP - 1) / VP;
    kacc *ka = ws->ka;
    kslab *sl = &ws->sl;
    kpan *u = ws->u;
    const uint8_t *rows[KPAN][16];
    for (int p = 0; p < npan; p++)
        panel_rows(j->w + (size_t)(p * VP) * j->ldw, j->ldw, nr - p * VP, rows[p]);
    const int64_t nb = j->n / QK_K;
    for (int64_t b0 = 0; b0 < nb; b0 += KSLAB) {
        const int sb = nb - b0 < KSLAB ? (int)(nb - b0) : KSLAB;
        kslab_fill(sl, j, b0, sb, nt);
        for (int p = 0; p < npan; p++) {
            for (int b = 0; b < sb; b++) {
                if (TYPE == KQ_Q4_K || TYPE == KQ_Q5_K)
                    unpack_q45_K(&u[b], rows[p], b0 + b, TYPE == KQ_Q5_K);
                else
                    unpack_q6_K(&u[b], rows[p], b0 + b);
            }
            for (int t = 0; t < nt; t++) {
                kacc *A = &ka[p * KTOK + t];
                __m512 acc[8], accm[4];
                for (int m = 0; m < 8; m++)
                    acc[m] = b0 ? A->acc[m] : _mm512_setzero_ps();
                for (int k = 0; k < 4; k++)
                    accm[k] = b0 && k < nm ? A->accm[k] : _mm512_setzero_ps();
                for (int b = 0; b < sb; b++)
                    k_run(&u[b], sl->q[t][b], sl->d[t][b], sl->s32[t][b], acc, accm, MINS);
                if (b0 + sb < nb) {
                    for (int m = 0; m < 8; m++)
                        A->acc[m] = acc[m];
                    for (int k = 0; k < nm; k++)
                        A->accm[k] = accm[k];
                    continue;
                }
                /* hsum8 over m, in the reference's order */
                __m512 r = _mm512_add_ps(
                    _mm512_add_ps(_mm512_add_ps(acc[0], acc[4]), _mm512_add_ps(acc[2], acc[6])),
                    _mm512_add_ps(_mm512_add_ps(acc[1], acc[5]),
                                  _mm512_add_ps(acc[3], acc[7])));
                if (MINS == 1)
                    r = _mm512_add_ps(r, _mm512_add_ps(_mm512_add_ps(accm[0], accm[2]),
                                                       _mm512_add_ps(accm[1], accm[3])));
                else if (MINS == 2)
                    r = _mm512_add_ps(r, accm[0]);
                store_rows(s + (size_t)t * lds + p * VP, r, imin(VP, nr - p * VP));
            }
        }
    }
}

#define KQ_ENTRY(T, TYPE)                                                                      \
    void cpu_gemmv_##T##_avx512(int64_t n, int nw, int na, float *s, size_t lds,               \
                                const void *w, size_t ldw, const void *a, size_t lda,          \
                                void *scratch) {                                               \
        vjob j = {.ldw = ldw, .lda = lda, .n = n, .nb = n / QK_K};                             \
        for (int t0 = 0; t0 < na; t0 += KTOK)                                                  \
            for (int r0 = 0; r0 < nw; r0 += VP * KPAN) {                                       \
                j.w = (const uint8_t *)w + (size_t)r0 * ldw;                                   \
                j.a = (const uint8_t *)a + (size_t)t0 * lda;                                   \
                k_tile(&j, imin(VP *KPAN, nw - r0), imin(KTOK, na - t0),                       \
                       s + (size_t)t0 * lds + r0, lds, scratch, TYPE);                         \
            }                                                                                  \
    }
KQ_ENTRY(q4_K, KQ_Q4_K)
KQ_ENTRY(q5_K, KQ_Q5_K)
KQ_ENTRY(q6_K, KQ_Q6_K)

/* ------------------------------------------------ Q8_0, Q5_0, Q4_1, Q5_1
 * Reference per pair (8 float lanes per block, kernels_scalar.c lanes32):
 *   acc[m] = fma(d_w * d_a, (float)(sum of w[e] * y[e], e = 4m..4m+3), acc[m]),
 *   result = ((acc0 + acc4) + (acc2 + acc6)) + ((acc1 + acc5) + (acc3 + acc7)),
 *   Q4_1 / Q5_1 then + summs, summs += m_w * s_a block by block (an exact product).
 * Weights go in unsigned: Q8_0 biased by xor 0x80 (w + 128), so the activation's
 * c = -128 * sum of 4 is the exact vpdpbusd start of each m; Q5_0 as 0..31 (w + 16),
 * start c / 8; Q4_1 / Q5_1 are unsigned already, start 0. A 16-row panel's blocks of a
 * slab are unpacked once into memory; the 8 float lanes (and summs) of a (panel,
 * activation) pair stay in registers across the slab, two activation rows at a time so
 * each weight load serves both. */

enum {
    ESLAB = 8, /* blocks per slab */
    ETOK = 32, /* activation rows per tile */
    EPAN = 8,  /* panels per tile */
};

#define EQ_Q8_0 0
#define EQ_Q5_0 1
#define EQ_Q4_1 2
#define EQ_Q5_1 3

typedef struct {
    int8_t q[ETOK][ESLAB][32];
    int32_t c[ETOK][ESLAB][8]; /* vpdpbusd start values */
    float d[ETOK][ESLAB];
    float s[ETOK][ESLAB]; /* Q4_1, Q5_1 */
} eslab;

typedef struct {
    __m512i w[ESLAB][8]; /* [b][m]: 4 unsigned weights of elements 4m.. per lane */
    __m512 dw[ESLAB];
    __m512 mw[ESLAB]; /* Q4_1, Q5_1 */
} epan;

/* the types with a min, kept apart in summs */
#define EQ_HASM(TYPE) ((TYPE) == EQ_Q4_1 || (TYPE) == EQ_Q5_1)

INLINE size_t eq_bsz(const int TYPE) {
    return TYPE == EQ_Q8_0   ? sizeof(block_q8_0)
           : TYPE == EQ_Q5_0 ? sizeof(block_q5_0)
           : TYPE == EQ_Q4_1 ? sizeof(block_q4_1)
                             : sizeof(block_q5_1);
}

static void eslab_fill(eslab *sl, const vjob *j, int64_t b0, int sb, int nt, const int TYPE) {
    for (int t = 0; t < nt; t++) {
        const uint8_t *row = j->a + (size_t)t * j->lda;
        const float *d = (const float *)(row + j->n) + b0;
        const int32_t *c = (const int32_t *)((const float *)(row + j->n) + 2 * j->nb) + 8 * b0;
        for (int b = 0; b < sb; b++) {
            _mm256_store_si256((__m256i *)sl->q[t][b],
                               _mm256_loadu_si256((const __m256i *)(row + 32 * (b0 + b))));
            __m256i cv = _mm256_loadu_si256((const __m256i *)(c + 8 * b));
            if (TYPE == EQ_Q5_0) cv = _mm256_srai_epi32(cv, 3); /* c is a multiple of 128 */
            if (EQ_HASM(TYPE)) cv = _mm256_setzero_si256();
            _mm256_store_si256((__m256i *)sl->c[t][b], cv);
            sl->d[t][b] = d[b];
            if (EQ_HASM(TYPE)) sl->s[t][b] = d[j->nb + b];
        }
    }
}

/* the bits 4m..4m+3 of every lane's qh as bit 4 of bytes 0..3: the product puts copies
 * of bit k at k + 7i (i < 4), all distinct (no carries), and bit k's copy at 8k is the
 * only one on a byte's bit 0 */
INLINE __m512i q5_hbits(__m512i qh, int m) {
    const __m512i b4 = _mm512_and_si512(_mm512_srli_epi32(qh, 4 * m), _mm512_set1_epi32(15));
    const __m512i spread = _mm512_mullo_epi32(b4, _mm512_set1_epi32(0x00204081));
    return _mm512_slli_epi32(_mm512_and_si512(spread, _mm512_set1_epi32(0x01010101)), 4);
}

static void epan_unpack(epan *u, const uint8_t *const rp[16], int64_t b0, int sb,
                        const int TYPE) {
    const size_t bsz = eq_bsz(TYPE);
    /* Q5_0 and Q5_1 differ only in where qh and qs are */
    const size_t oqh = TYPE == EQ_Q5_0 ? offsetof(block_q5_0, qh) : offsetof(block_q5_1, qh);
    const size_t oqs = TYPE == EQ_Q5_0   ? offsetof(block_q5_0, qs)
                       : TYPE == EQ_Q5_1 ? offsetof(block_q5_1, qs)
                                         : offsetof(block_q4_1, qs);
    for (int b = 0; b < sb; b++) {
        const int64_t bb = b0 + b;
        u->dw[b] = panel_halves(rp, bsz, bb, 0);
        if (EQ_HASM(TYPE)) u->mw[b] = panel_halves(rp, bsz, bb, offsetof(block_q4_1, m));
        if (TYPE == EQ_Q8_0) {
            const __m512i bias = _mm512_set1_epi8((char)0x80);
            for (int h = 0; h < 2; h++) {
                __m512i X[4];
                panel_dwords(rp, bsz, bb, offsetof(block_q8_0, qs) + 16 * h, X);
                for (int k = 0; k < 4; k++)
                    u->w[b][4 * h + k] = _mm512_xor_si512(X[k], bias);
            }
        } else if (TYPE == EQ_Q4_1) {
            const __m512i m4 = _mm512_set1_epi8(15);
            __m512i X[4];
            panel_dwords(rp, bsz, bb, oqs, X);
            for (int k = 0; k < 4; k++) {
                u->w[b][k] = _mm512_and_si512(X[k], m4);
                u->w[b][k + 4] = _mm512_and_si512(_mm512_srli_epi32(X[k], 4), m4);
            }
        } else {
            const __m512i m4 = _mm512_set1_epi8(15);
            __m512i X[4];
            panel_dwords(rp, bsz, bb, oqs, X);
            const uint8_t *hp[16];
            for (int l = 0; l < 16; l++)
                hp[l] = rp[l] + (size_t)bb * bsz + oqh;
            int32_t hv[16];
            for (int l = 0; l < 16; l++)
                memcpy(&hv[l], hp[l], 4);
            const __m512i qh = _mm512_loadu_si512((const void *)hv);
            for (int k = 0; k < 4; k++) {
                u->w[b][k] = _mm512_or_si512(_mm512_and_si512(X[k], m4), q5_hbits(qh, k));
                u->w[b][k + 4] = _mm512_or_si512(
                    _mm512_and_si512(_mm512_srli_epi32(X[k], 4), m4), q5_hbits(qh, k + 4));
            }
        }
    }
}

/* block b for activation rows t0 and t1, each weight dword loaded once for both */
INLINE void e_block2(const epan *u, int b, const eslab *sl, int t0, int t1, __m512 a0[8],
                     __m512 a1[8], __m512 *m0, __m512 *m1, const int TYPE) {
    const int8_t *y0 = sl->q[t0][b], *y1 = sl->q[t1][b];
    if (EQ_HASM(TYPE)) {
        /* separate mul and add as in the reference (the product is exact anyway) */
        *m0 = _mm512_add_ps(*m0, _mm512_mul_ps(u->mw[b], _mm512_set1_ps(sl->s[t0][b])));
        *m1 = _mm512_add_ps(*m1, _mm512_mul_ps(u->mw[b], _mm512_set1_ps(sl->s[t1][b])));
    }
    const __m512 d0 = _mm512_mul_ps(u->dw[b], _mm512_set1_ps(sl->d[t0][b]));
    const __m512 d1 = _mm512_mul_ps(u->dw[b], _mm512_set1_ps(sl->d[t1][b]));
#pragma GCC unroll 8
    for (int m = 0; m < 8; m++) {
        int32_t v0, v1;
        memcpy(&v0, y0 + 4 * m, 4);
        memcpy(&v1, y1 + 4 * m, 4);
        const __m512i w = _mm512_load_si512((const void *)&u->w[b][m]);
        const __m512i p0 =
            _mm512_dpbusd_epi32(_mm512_set1_epi32(sl->c[t0][b][m]), w, _mm512_set1_epi32(v0));
        const __m512i p1 =
            _mm512_dpbusd_epi32(_mm512_set1_epi32(sl->c[t1][b][m]), w, _mm512_set1_epi32(v1));
        a0[m] = _mm512_fmadd_ps(d0, _mm512_cvtepi32_ps(p0), a0[m]);
        a1[m] = _mm512_fmadd_ps(d1, _mm512_cvtepi32_ps(p1), a1[m]);
    }
}

/* the tile's scratch: the accumulators (acc[], and summs in accm[0]) go through L2 */
typedef struct {
    kacc ka[EPAN * ETOK];
    eslab sl;
    epan u;
} escratch;
_Static_assert(sizeof(escratch) <= CPU_GEMM_SCRATCH, "32-block tile scratch");

INLINE void e_tile(const vjob *j, int nr, int nt, float *s, size_t lds, escratch *ws,
                   const int TYPE) {
    const int npan = (nr + VP - 1) / VP;
    kacc *ka = ws->ka;
    eslab *sl = &ws->sl;
    epan *u = &ws->u;
    const uint8_t *rows[EPAN][16];
    for (int p = 0; p < npan; p++)
        panel_rows(j->w + (size_t)(p * VP) * j->ldw, j->ldw, nr - p * VP, rows[p]);
    for (int64_t b0 = 0; b0 < j->nb; b0 += ESLAB) {
        const int sb = j->nb - b0 < ESLAB ? (int)(j->nb - b0) : ESLAB;
        const int last = b0 + sb >= j->nb;
        eslab_fill(sl, j, b0, sb, nt, TYPE);
        for (int p = 0; p < npan; p++) {
            epan_unpack(u, rows[p], b0, sb, TYPE);
            for (int t = 0; t < nt; t += 2) {
                const int two = t + 1 < nt;
                kacc *A0 = &ka[p * ETOK + t], *A1 = &ka[p * ETOK + t + two];
                __m512 a0[8], a1[8], m0, m1;
                for (int m = 0; m < 8; m++) {
                    a0[m] = b0 ? A0->acc[m] : _mm512_setzero_ps();
                    a1[m] = b0 ? A1->acc[m] : _mm512_setzero_ps();
                }
                m0 = b0 && EQ_HASM(TYPE) ? A0->accm[0] : _mm512_setzero_ps();
                m1 = b0 && EQ_HASM(TYPE) ? A1->accm[0] : _mm512_setzero_ps();
                for (int b = 0; b < sb; b++)
                    e_block2(u, b, sl, t, t + two, a0, a1, &m0, &m1, TYPE);
                if (!last) {
                    for (int m = 0; m < 8; m++) {
                        A0->acc[m] = a0[m];
                        A1->acc[m] = a1[m];
                    }
                    if (EQ_HASM(TYPE)) {
                        A0->accm[0] = m0;
                        A1->accm[0] = m1;
                    }
                    continue;
                }
                for (int k = 0; k < 1 + two; k++) {
                    const __m512 *a = k ? a1 : a0;
                    __m512 r = _mm512_add_ps(
                        _mm512_add_ps(_mm512_add_ps(a[0], a[4]), _mm512_add_ps(a[2], a[6])),
                        _mm512_add_ps(_mm512_add_ps(a[1], a[5]), _mm512_add_ps(a[3], a[7])));
                    if (EQ_HASM(TYPE)) r = _mm512_add_ps(r, k ? m1 : m0);
                    store_rows(s + (size_t)(t + k) * lds + p * VP, r, imin(VP, nr - p * VP));
                }
            }
        }
    }
}

#define EQ_ENTRY(T, TYPE)                                                                      \
    void cpu_gemmv_##T##_avx512(int64_t n, int nw, int na, float *s, size_t lds,               \
                                const void *w, size_t ldw, const void *a, size_t lda,          \
                                void *scratch) {                                               \
        vjob j = {.ldw = ldw, .lda = lda, .n = n, .nb = n / 32};                               \
        for (int t0 = 0; t0 < na; t0 += ETOK)                                                  \
            for (int r0 = 0; r0 < nw; r0 += VP * EPAN) {                                       \
                j.w = (const uint8_t *)w + (size_t)r0 * ldw;                                   \
                j.a = (const uint8_t *)a + (size_t)t0 * lda;                                   \
                e_tile(&j, imin(VP *EPAN, nw - r0), imin(ETOK, na - t0),                       \
                       s + (size_t)t0 * lds + r0, lds, scratch, TYPE);                         \
            }                                                                                  \
    }
EQ_ENTRY(q8_0, EQ_Q8_0)
EQ_ENTRY(q5_0, EQ_Q5_0)
EQ_ENTRY(q4_1, EQ_Q4_1)
EQ_ENTRY(q5_1, EQ_Q5_1)
