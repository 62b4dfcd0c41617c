/* Helpers shared by the AVX-512 "vertical" prefill tiles (gemm_vert_avx512.c,
 * gemm_q4q8_avx512.c): one zmm lane per (weight row, activation row) pair, 16 weight rows
 * per panel. Include only from *_avx512.c (the intrinsics need that file's ISA flags).
 *
 * Lane order: a panel's 16 rows are read as 4 groups of 4 (one 128-bit chunk each) and
 * transposed within chunks, which puts row 4i + r in lane 4r + i; results are permuted
 * back when they are stored. */
#ifndef CHORD_CPU_GEMM_VERT_AVX512_H
#define CHORD_CPU_GEMM_VERT_AVX512_H

#include <immintrin.h>
#include <stddef.h>
#include <stdint.h>

#include "cpu/simd_avx512.h"

enum { VP = 16 /* weight rows per panel (zmm lanes) */ };

/* one tile call: weight rows ldw bytes apart, activation rows lda bytes apart, rows of
 * n elements in nb blocks */
typedef struct {
    const uint8_t *w;
    size_t ldw;
    const uint8_t *a;
    size_t lda;
    int64_t n, nb;
} vjob;

INLINE int imin(int a, int b) {
    return a < b ? a : b;
}

/* 16 bytes at each of 4 pointers -> one zmm, pointer i in 128-bit chunk i */
INLINE __m512i load4x128(const uint8_t *p0, const uint8_t *p1, const uint8_t *p2,
                         const uint8_t *p3) {
    const __m512i z = _mm512_castsi128_si512(_mm_loadu_si128((const __m128i *)p0));
    const __m512i y = _mm512_inserti32x4(z, _mm_loadu_si128((const __m128i *)p1), 1);
    const __m512i x = _mm512_inserti32x4(y, _mm_loadu_si128((const __m128i *)p2), 2);
    return _mm512_inserti32x4(x, _mm_loadu_si128((const __m128i *)p3), 3);
}

/* In every 128-bit chunk, a 4 x 4 dword transpose: X[k] lane 4r + i = dword k of chunk r
 * of Z[i] */
INLINE void transpose4x4(const __m512i Z[4], __m512i X[4]) {
    const __m512i t0 = _mm512_unpacklo_epi32(Z[0], Z[1]),
                  t1 = _mm512_unpackhi_epi32(Z[0], Z[1]);
    const __m512i t2 = _mm512_unpacklo_epi32(Z[2], Z[3]),
                  t3 = _mm512_unpackhi_epi32(Z[2], Z[3]);
    X[0] = _mm512_unpacklo_epi64(t0, t2);
    X[1] = _mm512_unpackhi_epi64(t0, t2);
    X[2] = _mm512_unpacklo_epi64(t1, t3);
    X[3] = _mm512_unpackhi_epi64(t1, t3);
}

/* results: lane 4r + i of acc -> s[row 4i + r] for rows < nr */
INLINE void store_rows(float *s, __m512 acc, int nr) {
    /* source lane of row q for vpermps */
    const __m512i unperm =
        _mm512_setr_epi32(0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15);
    const __m512 v = _mm512_permutexvar_ps(unperm, acc);
    _mm512_mask_storeu_ps(s, (__mmask16)((1u << nr) - 1), v);
}

/* the 16 row pointers of a panel in lane order (rows from nr on repeat the last) */
INLINE void panel_rows(const uint8_t *w, size_t ldw, int nr, const uint8_t *rows[16]) {
    for (int r = 0; r < 4; r++)
        for (int i = 0; i < 4; i++)
            rows[4 * r + i] = w + (size_t)imin(4 * i + r, nr - 1) * ldw;
}

/* X[m'] lane L = dword m' of the 16 bytes at byte offset off of block b (bsz bytes) of
 * lane L's row */
INLINE void panel_dwords(const uint8_t *const rp[16], size_t bsz, int64_t b, size_t off,
                         __m512i X[4]) {
    __m512i Z[4];
    const size_t o = (size_t)b * bsz + off;
    for (int i = 0; i < 4; i++)
        Z[i] = load4x128(rp[i] + o, rp[4 + i] + o, rp[8 + i] + o, rp[12 + i] + o);
    transpose4x4(Z, X);
}

/* 16 halves at byte offset off of block b of each lane's row */
INLINE __m512 panel_halves(const uint8_t *const rp[16], size_t bsz, int64_t b, size_t off) {
    const uint8_t *hp[16];
    for (int l = 0; l < 16; l++)
        hp[l] = rp[l] + (size_t)b * bsz + off;
    return halves16(hp);
}


#endif
