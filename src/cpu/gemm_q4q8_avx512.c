/* AVX-512 VNNI prefill tiles whose per-pair float chain takes one step per 32-block:
 *   acc = fma(d_w * d_a, (float)(integer dot of the block), acc)
 * Q4_0's reference order (kernels_scalar.c), so bit for bit; and Q8_0's fast order, which
 * is not the reference's (that keeps 8 float lanes per block: e_tile in
 * gemm_vert_avx512.c, still used under CHORD_CPU_EXACT=1) but rounds less: its integer
 * dot is exact, so it differs from the reference only by float rounding.
 *
 * Each zmm lane is one (weight row, activation row) pair (gemm_vert_avx512.h). The weights
 * go in unsigned, so vpdpbusd takes them as its u8 operand and the activation's 4 bytes,
 * broadcast, as the s8 one: Q4_0's nibbles as they are (q - 8 + 8), Q8_0's bytes biased by
 * xor 0x80 (w + 128); the bias times the activation's block sum (from its c, already
 * -128 * sums of 4) is each chain's starting value.
 *
 * Per slab of blocks, each 16-row panel is unpacked once into the scratch (4.5 KiB, L1)
 * and then run against 12 activation rows at a time with their float accumulators in
 * registers: 8 vpdpbusd + cvt + mul + fma per (pair, block), the 12 integer chains
 * interleaved so that dependent vpdpbusd are far apart (the vector ALUs are the limit:
 * 11 ops per 16 pairs and block). The activations of a slab are copied block-major first,
 * once for all 16 panels (rows are lda apart, often a multiple of a large power of two:
 * read in place they collide in a few L1 sets; copied, 12 rows of a block are one 384-byte
 * run that one pointer and small displacements reach). */
#include <immintrin.h>
#include <stddef.h>

#include "cpu/gemm_vert_avx512.h"
#include "cpu/kernels.h"

enum {
    BPAN = 16, /* panels per tile call: 256 weight rows, each slab copy serves them all */
    BTOK = 64, /* activation rows per tile call */
    BSLAB = 8, /* blocks per slab */
    BT = 12,   /* activation rows per register block */
};

#define BQ_Q4_0 0
#define BQ_Q8_0 1

typedef struct {
    int8_t q[BSLAB][BTOK][32]; /* block-major */
    float d[BTOK][BSLAB];
    int32_t off[BTOK][BSLAB]; /* each chain's start: - bias * the block's sum */
} bslab;

typedef struct {
    __m512i w[BSLAB][8]; /* [b][k]: 4 unsigned weights of elements 4k.. per lane */
    __m512 dw[BSLAB];
} bpan;

typedef struct {
    bslab sl;
    bpan u;
    __m512 acc[BPAN][BTOK]; /* between slabs */
} bscratch;

/* lane b (b < 8) = the sum of the 8 dwords c[8b..8b+7] */
INLINE __m512i sums8x8(const int32_t *c) {
    __m512i V[4];
    for (int i = 0; i < 4; i++)
        V[i] = _mm512_loadu_si512((const void *)(c + 16 * i));
    /* chunk k lane i: half k % 2 of block 2i + k / 2 */
    const __m512i R = reduce4_epi32(V[0], V[1], V[2], V[3]);
    const __m512i T = _mm512_add_epi32(R, _mm512_shuffle_i32x4(R, R, _MM_SHUFFLE(2, 3, 0, 1)));
    /* chunk 0 lane i: block 2i, chunk 2 lane i: block 2i + 1 */
    return _mm512_permutexvar_epi32(
        _mm512_setr_epi32(0, 8, 1, 9, 2, 10, 3, 11, 0, 0, 0, 0, 0, 0, 0, 0), T);
}

static void bslab_fill(bslab *sl, const vjob *j, int64_t b0, int sb, int nt, const int TYPE) {
    const __mmask16 m = (__mmask16)((1u << sb) - 1);
    for (int t = 0; t < nt; t++) {
        const uint8_t *row = j->a + (size_t)t * j->lda;
        const float *d = (const float *)(row + j->n) + b0;
        const int32_t *c = (const int32_t *)((const float *)(row + j->n) + 2 * j->nb) + 8 * b0;
        for (int b = 0; b < sb; b++)
            _mm256_store_si256((__m256i *)sl->q[b][t],
                               _mm256_loadu_si256((const __m256i *)(row + 32 * (b0 + b))));
        _mm256_store_ps(sl->d[t], _mm512_castps512_ps256(_mm512_maskz_loadu_ps(m, d)));
        __m512i off;
        if (sb == BSLAB) {
            off = sums8x8(c);
        } else {
            int32_t o[16] = {0};
            for (int b = 0; b < sb; b++)
                for (int k = 0; k < 8; k++)
                    o[b] += c[8 * b + k];
            off = _mm512_loadu_si512((const void *)o);
        }
        /* c = -128 * sums of 4: Q4_0's bias is 8 */
        if (TYPE == BQ_Q4_0) off = _mm512_srai_epi32(off, 4);
        _mm256_store_si256((__m256i *)sl->off[t], _mm512_castsi512_si256(off));
    }
}

static void bpan_unpack(bpan *u, const uint8_t *const rp[16], int64_t b0, int sb,
                        const int TYPE) {
    for (int b = 0; b < sb; b++) {
        const int64_t bb = b0 + b;
        if (TYPE == BQ_Q4_0) {
            const __m512i m4 = _mm512_set1_epi8(15);
            u->dw[b] = panel_halves(rp, sizeof(block_q4_0), bb, 0);
            __m512i X[4];
            panel_dwords(rp, sizeof(block_q4_0), bb, offsetof(block_q4_0, qs), X);
            for (int k = 0; k < 4; k++) {
                u->w[b][k] = _mm512_and_si512(X[k], m4);
                u->w[b][k + 4] = _mm512_and_si512(_mm512_srli_epi32(X[k], 4), m4);
            }
        } else {
            const __m512i bias = _mm512_set1_epi8((char)0x80);
            u->dw[b] = panel_halves(rp, sizeof(block_q8_0), bb, 0);
            for (int h = 0; h < 2; h++) {
                __m512i X[4];
                panel_dwords(rp, sizeof(block_q8_0), bb, offsetof(block_q8_0, qs) + 16 * h, X);
                for (int k = 0; k < 4; k++)
                    u->w[b][4 * h + k] = _mm512_xor_si512(X[k], bias);
            }
        }
    }
}

/* acc + the u8 x s8 products of w and the 4 bytes at y, broadcast: vpdpbusd with a
 * {1to16} memory operand, one front-end slot (GCC keeps a separate vpbroadcastd for
 * _mm512_set1_epi32 of a load, and the front end is shared with the core's other thread) */
typedef int32_t i32_alias __attribute__((may_alias));
INLINE __m512i dpbusd_bcast(__m512i acc, __m512i w, const int8_t *y) {
    __asm__("vpdpbusd %2%{1to16%}, %1, %0" : "+v"(acc) : "v"(w), "m"(*(const i32_alias *)y));
    return acc;
}

/* T activation rows from t against one unpacked panel, over the slab's sb blocks, with CH
 * integer chains per row: vpdpbusd's latency needs ~12 independent chains in flight */
INLINE void brun(const bpan *u, const bslab *sl, int t, int sb, __m512 acc[BT], const int T,
                 const int CH) {
    for (int b = 0; b < sb; b++) {
        __m512i P[BT * 2];
        for (int i = 0; i < T; i++) {
            P[i] = _mm512_set1_epi32(sl->off[t + i][b]);
            if (CH == 2) P[T + i] = _mm512_setzero_si512();
        }
        const int8_t *y = sl->q[b][t];
#pragma GCC unroll 8
        for (int k = 0; k < 8; k++) {
            const __m512i W = _mm512_load_si512((const void *)&u->w[b][k]);
            const int c = CH == 2 ? (k & 1) * T : 0;
#pragma GCC unroll 12
            for (int i = 0; i < T; i++)
                P[c + i] = dpbusd_bcast(P[c + i], W, y + 32 * i + 4 * k);
        }
        const __m512 dw = u->dw[b];
        for (int i = 0; i < T; i++) {
            /* d_w * d_a is exact (two halves), so the mul's placement costs no bits */
            const __m512 dd = _mm512_mul_ps(dw, _mm512_set1_ps(sl->d[t + i][b]));
            const __m512i p = CH == 2 ? _mm512_add_epi32(P[i], P[T + i]) : P[i];
            acc[i] = _mm512_fmadd_ps(dd, _mm512_cvtepi32_ps(p), acc[i]);
        }
    }
}

/* one register block: accumulators in, the slab, out (or to s after the last slab) */
INLINE void bgroup(bscratch *ws, int p, int t, int sb, int first, int last, float *s,
                   size_t lds, int nrp, const int T, const int CH) {
    __m512 acc[BT];
    for (int i = 0; i < T; i++)
        acc[i] = first ? _mm512_setzero_ps() : ws->acc[p][t + i];
    brun(&ws->u, &ws->sl, t, sb, acc, T, CH);
    for (int i = 0; i < T; i++) {
        if (last)
            store_rows(s + (size_t)(t + i) * lds + p * VP, acc[i], nrp);
        else
            ws->acc[p][t + i] = acc[i];
    }
}

INLINE void btile(const vjob *j, int nr, int nt, float *s, size_t lds, bscratch *ws,
                  const int TYPE) {
    const int npan = (nr + VP - 1) / VP;
    const uint8_t *rows[BPAN][16];
    for (int p = 0; p < npan; p++)
        panel_rows(j->w + (size_t)(p * VP) * j->ldw, j->ldw, nr - p * VP, rows[p]);
    for (int64_t b0 = 0; b0 < j->nb; b0 += BSLAB) {
        const int sb = j->nb - b0 < BSLAB ? (int)(j->nb - b0) : BSLAB;
        const int first = b0 == 0, last = b0 + sb >= j->nb;
        bslab_fill(&ws->sl, j, b0, sb, nt, TYPE);
        for (int p = 0; p < npan; p++) {
            const int nrp = imin(VP, nr - p * VP);
            bpan_unpack(&ws->u, rows[p], b0, sb, TYPE);
            int t = 0;
            for (; nt - t >= 2 * BT || nt - t == BT; t += BT)
                bgroup(ws, p, t, sb, first, last, s, lds, nrp, BT, 1);
            /* the rest in groups of up to 8 with two chains each */
            for (; nt - t >= 8; t += 8)
                bgroup(ws, p, t, sb, first, last, s, lds, nrp, 8, 2);
            switch (nt - t) {
            case 7: bgroup(ws, p, t, sb, first, last, s, lds, nrp, 7, 2); break;
            case 6: bgroup(ws, p, t, sb, first, last, s, lds, nrp, 6, 2); break;
            case 5: bgroup(ws, p, t, sb, first, last, s, lds, nrp, 5, 2); break;
            case 4: bgroup(ws, p, t, sb, first, last, s, lds, nrp, 4, 2); break;
            case 3: bgroup(ws, p, t, sb, first, last, s, lds, nrp, 3, 2); break;
            case 2: bgroup(ws, p, t, sb, first, last, s, lds, nrp, 2, 2); break;
            case 1: bgroup(ws, p, t, sb, first, last, s, lds, nrp, 1, 2); break;
            default: break;
            }
        }
    }
}

_Static_assert(sizeof(bscratch) <= CPU_GEMM_SCRATCH, "Q4_0 / Q8_0 tile scratch");

INLINE void bentry(int64_t n, int nw, int na, float *s, size_t lds, const void *w, size_t ldw,
                   const void *a, size_t lda, bscratch *ws, const int TYPE) {
    vjob j = {.ldw = ldw, .lda = lda, .n = n, .nb = n / 32};
    for (int t0 = 0; t0 < na; t0 += BTOK)
        for (int r0 = 0; r0 < nw; r0 += VP * BPAN) {
            j.w = (const uint8_t *)w + (size_t)r0 * ldw;
            j.a = (const uint8_t *)a + (size_t)t0 * lda;
            btile(&j, imin(VP * BPAN, nw - r0), imin(BTOK, na - t0), s + (size_t)t0 * lds + r0,
                  lds, ws, TYPE);
        }
}

void cpu_gemmv_q4_0_avx512(int64_t n, int nw, int na, float *s, size_t lds, const void *w,
                           size_t ldw, const void *a, size_t lda, void *scratch) {
    bentry(n, nw, na, s, lds, w, ldw, a, lda, scratch, BQ_Q4_0);
}

void cpu_gemmv_q8_0_fast_avx512(int64_t n, int nw, int na, float *s, size_t lds, const void *w,
                                size_t ldw, const void *a, size_t lda, void *scratch) {
    bentry(n, nw, na, s, lds, w, ldw, a, lda, scratch, BQ_Q8_0);
}
