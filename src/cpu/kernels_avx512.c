/* AVX-512 (F/BW/VL/DQ + VNNI) kernels. Only called after cpuid reports these.
 *
 * Every dot product is computed with the float operations of the scalar reference
 * (kernels_scalar.c: llama.cpp's arithmetic), in its order, so the results are the same
 * bits; only the integer parts, which are exact, are formed differently.
 *
 * Float weights: one zmm per (row, activation) pair holds the reference's 16 lanes.
 * 32-element blocks: a block's integer part is 8 lanes of 4-element products (vpdpbusd,
 * unsigned weights x signed activations). Two weight rows share a zmm, one per 256-bit
 * half, against the activation block broadcast to both, so the float lanes accumulate
 * exactly as the reference's 8 lanes, for two rows at once. Offsets (Q4_0's q - 8, ...)
 * go in as biased weights (q + 120 = (q - 8) + 128) with the activation row's
 * precomputed -128 * (sums of 4) as vpdpbusd's accumulator. Scales come 4 blocks x 4 rows
 * at a time, packed with scalar ops and handed out with vpermps. Q4_0's reference adds
 * block totals: the lanes of 8 or 16 (row, activation) pairs are reduced together.
 * K-quants: a superblock is unpacked into 4 zmm of 64 elements with per-lane int16 scales
 * (vpmaddubsw + vpdpwssd); element 64k + 4i lands in int32 lane i, the reference's lane
 * i % 8, so the two halves are added before the float part. Q3_K and Q6_K are signed:
 * their offsets come off the int16 pair sums (as llama.cpp does), or, in tiles of 4 or
 * more activation rows, the activations take the weights' signs.
 * A weight block is unpacked once for several activation rows of a gemm tile; decode
 * (one activation row) runs 4 or 8 weight rows at once.
 *
 * These loops are bound by the vector ports (with 512-bit uops in flight: ports 0 and
 * 5), so work that scalar integer ops can do (scale unpacking, gathering the halves)
 * is done there. */
#include <immintrin.h>
#include <stddef.h>
#include <string.h>

#include "cpu/kernels.h"
#include "cpu/simd_avx512.h"

/* software prefetch distance for the weight stream: the hardware prefetcher alone
 * leaves the unpack-heavy loops waiting on DRAM (measured +25..60% single-thread) */
#define PF_BYTES 4096
#define ALIGN32 __attribute__((aligned(32)))

INLINE float h2f(uint16_t h) {
    return _cvtsh_ss(h);
}


#define R4(x) x, x, x, x
#define R8(x) x, x, x, x, x, x, x, x
#define R16(x) R8(x), R8(x)
#define R32(x) R16(x), R16(x)

/* ------------------------------------------------------------------ tables */

/* word shifts: per 128-bit lane 0,4,0,4 (nibble pairs) */
static const uint16_t SH_L128_04[32] ALIGN64 = {R8(0), R8(4), R8(0), R8(4)};
static const uint16_t SH_Q2[2][32] ALIGN64 = {{R16(0), R16(2)}, {R16(4), R16(6)}};
static const uint16_t SH_Q6_LO[32] ALIGN64 = {R16(4), R16(2)}; /* left */
static const uint16_t SH_Q6_HI[32] ALIGN64 = {R16(0), R16(2)}; /* right */
/* vpermw indices: lane i of chunk k (64 elements) gets the scale of its 16-sub-block */
static const uint16_t IDX16[4][32] ALIGN64 = {
    {R8(0), R8(1), R8(2), R8(3)},
    {R8(4), R8(5), R8(6), R8(7)},
    {R8(8), R8(9), R8(10), R8(11)},
    {R8(12), R8(13), R8(14), R8(15)},
};
static const uint16_t IDX32[4][32] ALIGN64 = {
    {R16(0), R16(1)}, {R16(2), R16(3)}, {R16(4), R16(5)}, {R16(6), R16(7)}};
static const uint16_t SH_H256_04[32] ALIGN64 = {R16(0), R16(4)};
/* Q3_K / Q5_K chunk k: bits 2k (first 32 bytes) and 2k+1 (last 32) */
static const uint8_t HB2[4][64] ALIGN64 = {
    {R32(1), R32(2)}, {R32(4), R32(8)}, {R32(16), R32(32)}, {R32(64), R32(128)}};
/* vpermps: rows 2p, 2p+1 of column j of a 4 x 4 matrix (row-major: lane 4i + j) ->
 * [m[2p][j] x8 | m[2p+1][j] x8] */
static const int32_t IDX44P[4][2][16] ALIGN64 = {
#define P(j, p) {R8(8 * (p) + (j)), R8(8 * (p) + 4 + (j))}
    {P(0, 0), P(0, 1)}, {P(1, 0), P(1, 1)}, {P(2, 0), P(2, 1)}, {P(3, 0), P(3, 1)},
#undef P
};
/* vpermps: column j of a 4 x 4 matrix (row-major) -> [m[0][j] x4, ..., m[3][j] x4] */
static const int32_t IDX4X4[4][16] ALIGN64 = {
#define P(j) {R4(j), R4(4 + j), R4(8 + j), R4(12 + j)}
    P(0), P(1), P(2), P(3),
#undef P
};
/* vpermps: column j of a 4 x 4 matrix -> lanes 0..3 */
static const int32_t IDX4X4C[4][16] ALIGN64 = {
#define P(j) {j, 4 + j, 8 + j, 12 + j, R4(0), R8(0)}
    P(0), P(1), P(2), P(3),
#undef P
};
/* vpermps: column j of a 2 x 8 matrix -> [m[j][0..3] x2, m[j][4..7] x2] */
static const int32_t IDX8X2[2][16] ALIGN64 = {
    {0, 1, 2, 3, 0, 1, 2, 3, 4, 5, 6, 7, 4, 5, 6, 7},
    {8, 9, 10, 11, 8, 9, 10, 11, 12, 13, 14, 15, 12, 13, 14, 15},
};

#define LD512(p) _mm512_load_si512((const void *)(p))
#define LD256(p) _mm256_load_si256((const __m256i *)(p))

INLINE int imin(int a, int b) {
    return a < b ? a : b;
}

/* Horizontal sums in the reference's orders */
INLINE float hsum4_ps(__m128 t4) { /* (t0+t2) + (t1+t3) */
    const __m128 t2 = _mm_add_ps(t4, _mm_movehl_ps(t4, t4));
    return _mm_cvtss_f32(_mm_add_ss(t2, _mm_movehdup_ps(t2)));
}
INLINE float hsum8_ps(__m256 v) {
    return hsum4_ps(_mm_add_ps(_mm256_extractf128_ps(v, 1), _mm256_castps256_ps128(v)));
}
INLINE float reduce16_ps(__m512 v) {
    return hsum8_ps(_mm256_add_ps(_mm512_extractf32x8_ps(v, 1), _mm512_castps512_ps256(v)));
}
/* hsum8 of each 256-bit half: lane 0 and lane 8 */
INLINE __m512 hsum8x2_ps(__m512 v) {
    const __m512 t = _mm512_add_ps(v, _mm512_shuffle_f32x4(v, v, _MM_SHUFFLE(2, 3, 0, 1)));
    const __m512 u = _mm512_add_ps(t, _mm512_permute_ps(t, _MM_SHUFFLE(1, 0, 3, 2)));
    return _mm512_add_ps(u, _mm512_permute_ps(u, _MM_SHUFFLE(2, 3, 0, 1)));
}
INLINE float lane8_ps(__m512 v) {
    return _mm_cvtss_f32(_mm512_extractf32x4_ps(v, 2));
}

/* A 4 x 4 matrix of halves -> floats, lane 4i + j: the half at p[i] + j * stride (j <
 * cnt; else j = 0). Constant offsets from 4 base pointers, packed with scalar ops. */
INLINE uint64_t pack4h(const uint8_t *p, size_t stride) {
    return (uint64_t)ld16(p) | (uint64_t)ld16(p + stride) << 16 |
           (uint64_t)ld16(p + 2 * stride) << 32 | (uint64_t)ld16(p + 3 * stride) << 48;
}
INLINE __m512 gather44(const uint8_t *p0, const uint8_t *p1, const uint8_t *p2,
                       const uint8_t *p3, size_t stride, int cnt) {
    uint64_t w[4];
    if (cnt == 4) {
        w[0] = pack4h(p0, stride);
        w[1] = pack4h(p1, stride);
        w[2] = pack4h(p2, stride);
        w[3] = pack4h(p3, stride);
    } else {
        const uint8_t *p[4] = {p0, p1, p2, p3};
        for (int i = 0; i < 4; i++) {
            w[i] = 0;
            for (int j = 0; j < cnt; j++)
                w[i] |= (uint64_t)ld16(p[i] + (size_t)j * stride) << (16 * j);
        }
    }
    const __m128i lo = _mm_insert_epi64(_mm_cvtsi64_si128((long long)w[0]), (long long)w[1], 1);
    const __m128i hi = _mm_insert_epi64(_mm_cvtsi64_si128((long long)w[2]), (long long)w[3], 1);
    return _mm512_cvtph_ps(_mm256_setr_m128i(lo, hi));
}

INLINE __m512i bcast256(const void *p) {
    return _mm512_broadcast_i64x4(_mm256_loadu_si256((const __m256i *)p));
}

/* ------------------------------------------------------------ activations */

INLINE float round_half(float v) {
    return _cvtsh_ss(_cvtss_sh(v, _MM_FROUND_TO_NEAREST_INT));
}

void cpu_quantize_q8_32_avx512(const float *x, void *a, int64_t n) {
    int8_t *q = a;
    const int64_t nb = n / 32;
    float *d = (float *)(q + n), *s = d + nb;
    int32_t *cc = (int32_t *)(s + nb);
    const __m512 absm = _mm512_castsi512_ps(_mm512_set1_epi32(0x7fffffff));
    for (int64_t b = 0; b < nb; b++) {
        const __m512 x0 = _mm512_loadu_ps(x + 32 * b), x1 = _mm512_loadu_ps(x + 32 * b + 16);
        const __m512 m = _mm512_max_ps(_mm512_and_ps(x0, absm), _mm512_and_ps(x1, absm));
        const float amax = _mm512_reduce_max_ps(m);
        const float id = amax > 0.0f ? 127.0f / amax : 0.0f;
        const __m512 vid = _mm512_set1_ps(id);
        const __m512i i0 = _mm512_cvtps_epi32(_mm512_mul_ps(x0, vid));
        const __m512i i1 = _mm512_cvtps_epi32(_mm512_mul_ps(x1, vid));
        _mm_storeu_si128((__m128i *)(q + 32 * b), _mm512_cvtsepi32_epi8(i0));
        _mm_storeu_si128((__m128i *)(q + 32 * b + 16), _mm512_cvtsepi32_epi8(i1));
        const int sum = _mm512_reduce_add_epi32(_mm512_add_epi32(i0, i1));
        const float df = amax / 127.0f;
        d[b] = round_half(df);
        s[b] = round_half(df * (float)sum);
        /* c: -128 * sums of 4 */
        const __m256i c = _mm256_dpbusd_epi32(_mm256_setzero_si256(), _mm256_set1_epi8(1),
                                              _mm256_loadu_si256((const __m256i *)(q + 32 * b)));
        _mm256_storeu_si256((__m256i *)(cc + 8 * b),
                            _mm256_slli_epi32(_mm256_sub_epi32(_mm256_setzero_si256(), c), 7));
    }
}

void cpu_quantize_q8_256_avx512(const float *x, void *a, int64_t n) {
    int8_t *q = a;
    const int64_t nb = n / QK_K;
    float *d = (float *)(q + n);
    int16_t *bs = (int16_t *)(d + nb);
    const __m512 absm = _mm512_castsi512_ps(_mm512_set1_epi32(0x7fffffff));
    for (int64_t b = 0; b < nb; b++) {
        const float *xb = x + QK_K * b;
        __m512 m = _mm512_setzero_ps();
        for (int i = 0; i < 16; i++)
            m = _mm512_max_ps(m, _mm512_and_ps(_mm512_loadu_ps(xb + 16 * i), absm));
        const float amax = _mm512_reduce_max_ps(m);
        const float id = amax > 0.0f ? 127.0f / amax : 0.0f;
        const __m512 vid = _mm512_set1_ps(id);
        __m512i sums = _mm512_setzero_si512();
        for (int i = 0; i < 16; i++) {
            const __m512i v =
                _mm512_cvtps_epi32(_mm512_mul_ps(_mm512_loadu_ps(xb + 16 * i), vid));
            _mm_storeu_si128((__m128i *)(q + QK_K * b + 16 * i), _mm512_cvtsepi32_epi8(v));
            /* lane i of `sums` gets the sum of chunk i */
            sums = _mm512_mask_mov_epi32(sums, (__mmask16)(1u << i),
                                         _mm512_set1_epi32(_mm512_reduce_add_epi32(v)));
        }
        _mm256_storeu_si256((__m256i *)(bs + 16 * b), _mm512_cvtepi32_epi16(sums));
        /* per-32 sums: pairs of chunks */
        const __m512i s2 = _mm512_add_epi32(sums, _mm512_srli_epi64(sums, 32));
        _mm_storeu_si128((__m128i *)(bs + n / 16 + 8 * b),
                         _mm512_cvtepi64_epi16(s2));
        d[b] = amax > 0.0f ? 1.0f / id : 0.0f;
    }
}

/* ------------------------------------------------------------ float weights */

/* One zmm per (row, activation) pair: lane l accumulates elements l, l + 16, ... with
 * fma, as the reference; a short tail is loaded masked (zeros leave the lanes as they
 * are). */

INLINE __m512 wload_f32(const void *w, int64_t i) {
    return _mm512_loadu_ps((const float *)w + i);
}
INLINE __m512 wload_f16(const void *w, int64_t i) {
    return _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)((const uint16_t *)w + i)));
}
INLINE __m512 wload_bf16(const void *w, int64_t i) {
    const __m256i h = _mm256_loadu_si256((const __m256i *)((const uint16_t *)w + i));
    return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
}
INLINE __m512 wmload_f32(const void *w, int64_t i, __mmask16 m) {
    return _mm512_maskz_loadu_ps(m, (const float *)w + i);
}
INLINE __m512 wmload_f16(const void *w, int64_t i, __mmask16 m) {
    return _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(m, (const uint16_t *)w + i));
}
INLINE __m512 wmload_bf16(const void *w, int64_t i, __mmask16 m) {
    const __m256i h = _mm256_maskz_loadu_epi16(m, (const uint16_t *)w + i);
    return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
}

#define WSIZE_f32 4
#define WSIZE_f16 2
#define WSIZE_bf16 2
#define FLOAT_KERNELS(T)                                                                       \
    void cpu_vec_dot_##T##_avx512(int64_t n, float *s, const void *w, const void *a) {         \
        const float *x = a;                                                                    \
        __m512 acc = _mm512_setzero_ps();                                                      \
        int64_t i = 0;                                                                         \
        for (; i + 64 <= n; i += 64) {                                                         \
            for (int pf = 0; pf < 64 * (int)WSIZE_##T; pf += 64)                               \
                _mm_prefetch((const char *)w + i * WSIZE_##T + PF_BYTES + pf, _MM_HINT_T0);    \
            for (int k = 0; k < 64; k += 16)                                                   \
                acc = _mm512_fmadd_ps(wload_##T(w, i + k), _mm512_loadu_ps(x + i + k), acc);   \
        }                                                                                      \
        for (; i < n; i += 16) {                                                               \
            const __mmask16 m =                                                                \
                n - i >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << (n - i)) - 1);            \
            acc = _mm512_fmadd_ps(wmload_##T(w, i, m), _mm512_maskz_loadu_ps(m, x + i), acc);  \
        }                                                                                      \
        *s = reduce16_ps(acc);                                                                 \
    }                                                                                          \
    /* NW weight rows x NA activation rows, one 16-wide step at a time */                      \
    INLINE void ftile_##T(int64_t n, const char *w, size_t ldw, const char *a, size_t lda,     \
                          const int NW, const int NA, float *s, size_t lds) {                  \
        __m512 acc[4][4];                                                                      \
        for (int r = 0; r < NW; r++)                                                           \
            for (int c = 0; c < NA; c++)                                                       \
                acc[r][c] = _mm512_setzero_ps();                                               \
        int64_t i = 0;                                                                         \
        for (; i + 16 <= n; i += 16) {                                                         \
            if (((i * WSIZE_##T) & 63) == 0)                                                   \
                for (int r = 0; r < NW; r++)                                                   \
                    _mm_prefetch(w + r * ldw + i * WSIZE_##T + PF_BYTES, _MM_HINT_T0);         \
            __m512 wv[4];                                                                      \
            for (int r = 0; r < NW; r++)                                                       \
                wv[r] = wload_##T(w + r * ldw, i);                                             \
            for (int c = 0; c < NA; c++) {                                                     \
                const __m512 xv = _mm512_loadu_ps((const float *)(a + c * lda) + i);           \
                for (int r = 0; r < NW; r++)                                                   \
                    acc[r][c] = _mm512_fmadd_ps(wv[r], xv, acc[r][c]);                         \
            }                                                                                  \
        }                                                                                      \
        if (i < n) {                                                                           \
            const __mmask16 m = (__mmask16)((1u << (n - i)) - 1);                              \
            __m512 wv[4];                                                                      \
            for (int r = 0; r < NW; r++)                                                       \
                wv[r] = wmload_##T(w + r * ldw, i, m);                                         \
            for (int c = 0; c < NA; c++) {                                                     \
                const __m512 xv = _mm512_maskz_loadu_ps(m, (const float *)(a + c * lda) + i);  \
                for (int r = 0; r < NW; r++)                                                   \
                    acc[r][c] = _mm512_fmadd_ps(wv[r], xv, acc[r][c]);                         \
            }                                                                                  \
        }                                                                                      \
        for (int r = 0; r < NW; r++)                                                           \
            for (int c = 0; c < NA; c++)                                                       \
                s[c * lds + r] = reduce16_ps(acc[r][c]);                                       \
    }                                                                                          \
    void cpu_gemm_##T##_avx512(int64_t n, int nw, int na, float *s, size_t lds, const void *w, \
                               size_t ldw, const void *a, size_t lda, void *scratch) {         \
        const char *wb = w, *ab = a;                                                           \
        int c = 0;                                                                             \
        for (; c + 4 <= na; c += 4) {                                                          \
            int r = 0;                                                                         \
            for (; r + 4 <= nw; r += 4)                                                        \
                ftile_##T(n, wb + r * ldw, ldw, ab + c * lda, lda, 4, 4, s + c * lds + r,      \
                          lds);                                                                \
            for (; r < nw; r++)                                                                \
                ftile_##T(n, wb + r * ldw, ldw, ab + c * lda, lda, 1, 4, s + c * lds + r,      \
                          lds);                                                                \
        }                                                                                      \
        for (; c < na; c++) {                                                                  \
            int r = 0;                                                                         \
            for (; r + 4 <= nw; r += 4)                                                        \
                ftile_##T(n, wb + r * ldw, ldw, ab + c * lda, lda, 4, 1, s + c * lds + r,      \
                          lds);                                                                \
            for (; r < nw; r++)                                                                \
                cpu_vec_dot_##T##_avx512(n, s + c * lds + r, wb + r * ldw, ab + c * lda);      \
        }                                                                                      \
    }

FLOAT_KERNELS(f32)
FLOAT_KERNELS(f16)
FLOAT_KERNELS(bf16)

/* ------------------------------------------------------ 32-element blocks */

/* two 16-byte nibble arrays -> [lo(a), hi(a), lo(b), hi(b)]: blocks a, b in element
 * order */
INLINE __m512i nib_pair(const uint8_t *qa, const uint8_t *qb) {
    const __m256i lo = _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)qa));
    const __m256i hi = _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)qb));
    const __m512i t = _mm512_inserti64x4(_mm512_castsi256_si512(lo), hi, 1);
    return _mm512_and_si512(_mm512_srlv_epi16(t, LD512(SH_L128_04)), _mm512_set1_epi8(15));
}
/* + 16 where bit i of the blocks' 32-bit qh is set */
INLINE __m512i hbit_pair(__m512i q, const uint8_t *ha, const uint8_t *hb) {
    const __mmask64 m = _cvtu64_mask64((uint64_t)ld32(ha) | (uint64_t)ld32(hb) << 32);
    return _mm512_mask_add_epi8(q, m, q, _mm512_set1_epi8(16));
}

/* One block of two weight rows as unsigned bytes, [row a | row b]. HASC: the weight is
 * the byte minus 128 (so the activations' c, -128 * sums of 4, is vpdpbusd's
 * accumulator: Q4_0 q + 120, Q5_0 q + 112, Q8_0 q ^ 0x80), else the byte. HASM: the block
 * has a min m (the half after d). */
INLINE __m512i nib_pair_or(const uint8_t *qa, const uint8_t *qb, char bias) {
    const __m256i lo = _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)qa));
    const __m256i hi = _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)qb));
    const __m512i t = _mm512_inserti64x4(_mm512_castsi256_si512(lo), hi, 1);
    /* (t >> s) & 15 | bias */
    return _mm512_ternarylogic_epi32(_mm512_srlv_epi16(t, LD512(SH_L128_04)),
                                     _mm512_set1_epi8(15), _mm512_set1_epi8(bias), 0xEA);
}
INLINE __m512i wq_q4_0(const block_q4_0 *a, const block_q4_0 *b) {
    return _mm512_add_epi8(nib_pair(a->qs, b->qs), _mm512_set1_epi8(120));
}
INLINE __m512i wq_q4_1(const block_q4_1 *a, const block_q4_1 *b) {
    return nib_pair(a->qs, b->qs);
}
INLINE __m512i wq_q5_0(const block_q5_0 *a, const block_q5_0 *b) {
    return hbit_pair(nib_pair_or(a->qs, b->qs, 0x70), a->qh, b->qh);
}
INLINE __m512i wq_q5_1(const block_q5_1 *a, const block_q5_1 *b) {
    return hbit_pair(nib_pair(a->qs, b->qs), a->qh, b->qh);
}
INLINE __m512i wq_q8_0(const block_q8_0 *a, const block_q8_0 *b) {
    const __m512i t = _mm512_inserti64x4(
        _mm512_castsi256_si512(_mm256_loadu_si256((const __m256i *)a->qs)),
        _mm256_loadu_si256((const __m256i *)b->qs), 1);
    return _mm512_xor_si512(t, _mm512_set1_epi8((char)0x80));
}
#define HASC_q4_0 1
#define HASC_q4_1 0
#define HASC_q5_0 1
#define HASC_q5_1 0
#define HASC_q8_0 1
#define HASM_q4_1 1
#define HASM_q5_0 0
#define HASM_q5_1 1
#define HASM_q8_0 0

/* vpdpbusd accumulator for block b of an activation row: its c (HASC), else 0 */
INLINE __m512i kacc(const int8_t *aq, int64_t n, int64_t b, int hasc) {
    if (!hasc) return _mm512_setzero_si512();
    return bcast256((const int32_t *)((const float *)(aq + n) + 2 * (n / 32)) + 8 * b);
}

/* Q4_1, Q5_0, Q5_1, Q8_0, gemm: 4 weight rows as 2 pairs (0, 1), (2, 3) (rows from nr on
 * repeat the last) x NA activation rows (lda apart; st: their s by block, transposed,
 * for 4 activations): out[c * lds + row]. acc[p][c] holds the reference's 8 lanes of
 * both rows of pair p; the min sums of all 16 (row, activation) pairs share one zmm,
 * lane 4 * row + c. Scales go 4 blocks at a time, as a 4 x 4 matrix per zmm. */
#define TILE32L(T, BT)                                                                         \
    INLINE void tile_##T(int64_t n, const uint8_t *w, size_t ldw, int nr, const uint8_t *a,    \
                         size_t lda, const int NA, const float *st, float *out, size_t lds) {  \
        const int64_t nb = n / 32;                                                             \
        const BT *r[4];                                                                        \
        const float *ss[4];                                                                    \
        for (int i = 0; i < 4; i++) {                                                          \
            r[i] = (const BT *)(w + (size_t)imin(i, nr - 1) * ldw);                            \
            ss[i] = (const float *)(a + (size_t)imin(i, NA - 1) * lda + n) + nb;               \
        }                                                                                      \
        __m512 acc[2][4], sm = _mm512_setzero_ps();                                            \
        for (int p = 0; p < 2; p++)                                                            \
            for (int c = 0; c < NA; c++)                                                       \
                acc[p][c] = _mm512_setzero_ps();                                               \
        for (int64_t b = 0; b < nb; b += 4) {                                                  \
            const int cnt = nb - b < 4 ? (int)(nb - b) : 4;                                    \
            const uint8_t *h0 = (const uint8_t *)&r[0][b].d, *h1 = (const uint8_t *)&r[1][b].d; \
            const uint8_t *h2 = (const uint8_t *)&r[2][b].d, *h3 = (const uint8_t *)&r[3][b].d; \
            for (int pf = 0; pf < 4 * (int)sizeof(BT); pf += 64) {                             \
                _mm_prefetch((const char *)h0 + PF_BYTES + pf, _MM_HINT_T0);                   \
                _mm_prefetch((const char *)h1 + PF_BYTES + pf, _MM_HINT_T0);                   \
                _mm_prefetch((const char *)h2 + PF_BYTES + pf, _MM_HINT_T0);                   \
                _mm_prefetch((const char *)h3 + PF_BYTES + pf, _MM_HINT_T0);                   \
            }                                                                                  \
            /* lane 4i + j: row i, block b + j */                                              \
            const __m512 dw = gather44(h0, h1, h2, h3, sizeof(BT), cnt);                       \
            const __m512 mw = HASM_##T ? gather44(h0 + 2, h1 + 2, h2 + 2, h3 + 2, sizeof(BT), cnt) \
                                       : _mm512_setzero_ps();                                  \
            for (int j = 0; j < cnt; j++) {                                                    \
                const int64_t bb = b + j;                                                      \
                const __m512i U[2] = {wq_##T(r[0] + bb, r[1] + bb), wq_##T(r[2] + bb, r[3] + bb)}; \
                const __m512 DP[2] = {_mm512_permutexvar_ps(LD512(IDX44P[j][0]), dw),          \
                                      _mm512_permutexvar_ps(LD512(IDX44P[j][1]), dw)};         \
                if (HASM_##T) { /* m * s is exact: fma is the reference's sum */               \
                    const __m128 sv = st ? _mm_loadu_ps(st + 4 * bb)                           \
                                         : _mm_setr_ps(ss[0][bb], ss[1][bb], ss[2][bb], ss[3][bb]); \
                    sm = _mm512_fmadd_ps(_mm512_permutexvar_ps(LD512(IDX4X4[j]), mw),          \
                                         _mm512_broadcast_f32x4(sv), sm);                      \
                }                                                                              \
                for (int c = 0; c < NA; c++) {                                                 \
                    const int8_t *aq = (const int8_t *)(a + c * lda);                          \
                    const float *ad = (const float *)(aq + n);                                 \
                    const __m512i y = bcast256(aq + 32 * bb);                                  \
                    const __m512 da = _mm512_set1_ps(ad[bb]);                                  \
                    for (int p = 0; p < 2; p++) {                                              \
                        const __m512i pi =                                                     \
                            _mm512_dpbusd_epi32(kacc(aq, n, bb, HASC_##T), U[p], y);           \
                        acc[p][c] = _mm512_fmadd_ps(_mm512_mul_ps(DP[p], da),                  \
                                                    _mm512_cvtepi32_ps(pi), acc[p][c]);        \
                    }                                                                          \
                }                                                                              \
            }                                                                                  \
        }                                                                                      \
        float m[16];                                                                           \
        _mm512_storeu_ps(m, sm);                                                               \
        for (int p = 0; p < 2; p++)                                                            \
            for (int c = 0; c < NA; c++) {                                                     \
                const __m512 v = hsum8x2_ps(acc[p][c]);                                        \
                float r0 = _mm512_cvtss_f32(v), r1 = lane8_ps(v);                              \
                if (HASM_##T) {                                                                \
                    r0 += m[4 * (2 * p) + c];                                                  \
                    r1 += m[4 * (2 * p + 1) + c];                                              \
                }                                                                              \
                if (2 * p < nr) out[c * lds + 2 * p] = r0;                                     \
                if (2 * p + 1 < nr) out[c * lds + 2 * p + 1] = r1;                             \
            }                                                                                  \
    }

/* Decode (one activation row): 4 weight rows as 2 pairs (0, 1), (2, 3). Scales go 4
 * blocks at a time, as a 4 x 4 matrix per zmm (lane 4 * row + j), multiplied by the
 * activation's (exact products); the min sums of the 4 rows share one xmm. VERT (or
 * NULL): the vertical tile (gemm_vert_avx512.c) for VERT_MIN_ACTS activation rows on. */
#define DEC32L(T, BT, VERT)                                                                    \
    static void dec_##T(int64_t n, const uint8_t *w, size_t ldw, int nr, const uint8_t *a,     \
                        float *out) {                                                          \
        const int64_t nb = n / 32;                                                             \
        const BT *r[4];                                                                        \
        for (int i = 0; i < 4; i++)                                                            \
            r[i] = (const BT *)(w + (size_t)imin(i, nr - 1) * ldw);                            \
        const int8_t *aq = (const int8_t *)a;                                                  \
        const float *ad = (const float *)(aq + n);                                             \
        __m512 acc0 = _mm512_setzero_ps(), acc1 = acc0;                                        \
        __m128 sm = _mm_setzero_ps();                                                          \
        for (int64_t b = 0; b < nb; b += 4) {                                                  \
            const int cnt = nb - b < 4 ? (int)(nb - b) : 4;                                    \
            const __mmask16 km = (__mmask16)(0x1111u * ((1u << cnt) - 1));                     \
            const uint8_t *h0 = (const uint8_t *)&r[0][b].d, *h1 = (const uint8_t *)&r[1][b].d; \
            const uint8_t *h2 = (const uint8_t *)&r[2][b].d, *h3 = (const uint8_t *)&r[3][b].d; \
            _mm_prefetch((const char *)h0 + PF_BYTES, _MM_HINT_T0);                            \
            _mm_prefetch((const char *)h1 + PF_BYTES, _MM_HINT_T0);                            \
            _mm_prefetch((const char *)h2 + PF_BYTES, _MM_HINT_T0);                            \
            _mm_prefetch((const char *)h3 + PF_BYTES, _MM_HINT_T0);                            \
            if (sizeof(BT) * 4 > 64) {                                                         \
                _mm_prefetch((const char *)h0 + PF_BYTES + 64, _MM_HINT_T0);                   \
                _mm_prefetch((const char *)h1 + PF_BYTES + 64, _MM_HINT_T0);                   \
                _mm_prefetch((const char *)h2 + PF_BYTES + 64, _MM_HINT_T0);                   \
                _mm_prefetch((const char *)h3 + PF_BYTES + 64, _MM_HINT_T0);                   \
            }                                                                                  \
            /* d_a (and s) of the 4 blocks in every row's lanes */                             \
            const __m512 d4 = _mm512_broadcast_f32x4(_mm_maskz_loadu_ps((__mmask8)((1u << cnt) - 1), ad + b)); \
            const __m512 dd = _mm512_mul_ps(gather44(h0, h1, h2, h3, sizeof(BT), cnt), d4);    \
            if (HASM_##T) {                                                                    \
                const __m512 s4 = _mm512_broadcast_f32x4(                                      \
                    _mm_maskz_loadu_ps((__mmask8)((1u << cnt) - 1), ad + nb + b));             \
                /* m * s per (row, block), exact; added block by block: lanes j, 4 + j, ... */ \
                const __m512 ms = _mm512_maskz_mul_ps(                                         \
                    km, gather44(h0 + 2, h1 + 2, h2 + 2, h3 + 2, sizeof(BT), cnt), s4);        \
                for (int j = 0; j < cnt; j++)                                                  \
                    sm = _mm_add_ps(sm, _mm512_castps512_ps128(_mm512_permutexvar_ps(          \
                                            LD512(IDX4X4C[j]), ms)));                          \
            }                                                                                  \
            for (int j = 0; j < cnt; j++) {                                                    \
                const int64_t bb = b + j;                                                      \
                const __m512i y = bcast256(aq + 32 * bb);                                      \
                const __m512i p0 = _mm512_dpbusd_epi32(kacc(aq, n, bb, HASC_##T),              \
                                                       wq_##T(r[0] + bb, r[1] + bb), y);       \
                const __m512i p1 = _mm512_dpbusd_epi32(kacc(aq, n, bb, HASC_##T),              \
                                                       wq_##T(r[2] + bb, r[3] + bb), y);       \
                acc0 = _mm512_fmadd_ps(_mm512_permutexvar_ps(LD512(IDX44P[j][0]), dd),         \
                                       _mm512_cvtepi32_ps(p0), acc0);                          \
                acc1 = _mm512_fmadd_ps(_mm512_permutexvar_ps(LD512(IDX44P[j][1]), dd),         \
                                       _mm512_cvtepi32_ps(p1), acc1);                          \
            }                                                                                  \
        }                                                                                      \
        float m[4];                                                                            \
        _mm_storeu_ps(m, sm);                                                                  \
        const __m512 v0 = hsum8x2_ps(acc0), v1 = hsum8x2_ps(acc1);                             \
        float rr[4] = {_mm512_cvtss_f32(v0), lane8_ps(v0), _mm512_cvtss_f32(v1), lane8_ps(v1)}; \
        for (int i = 0; i < nr && i < 4; i++)                                                  \
            out[i] = HASM_##T ? rr[i] + m[i] : rr[i];                                          \
    }                                                                                          \
    void cpu_vec_dot_##T##_avx512(int64_t n, float *s, const void *w, const void *a) {         \
        dec_##T(n, w, 0, 1, a, s);                                                             \
    }                                                                                          \
    void cpu_gemm_##T##_avx512(int64_t n, int nw, int na, float *s, size_t lds, const void *w, \
                               size_t ldw, const void *a, size_t lda, void *scratch) {         \
        const uint8_t *wb = w, *ab = a;                                                        \
        if (na == 1) {                                                                         \
            for (int r = 0; r < nw; r += 4)                                                    \
                dec_##T(n, wb + (size_t)r * ldw, ldw, imin(4, nw - r), ab, s + r);             \
            return;                                                                            \
        }                                                                                      \
        const cpu_gemm_tile_fn vert = VERT;                                                    \
        if (vert && na >= VERT_MIN_ACTS) {                                                     \
            vert(n, nw, na, s, lds, w, ldw, a, lda, scratch);                                  \
            return;                                                                            \
        }                                                                                      \
        const int64_t nb = n / 32;                                                             \
        float *st = scratch;                                                                   \
        const float *stp = nb <= DAT_BLOCKS ? st : NULL;                                       \
        for (int c = 0; c < na; c += 4) {                                                      \
            const int nc = imin(4, na - c);                                                    \
            const uint8_t *ac = ab + (size_t)c * lda;                                          \
            if (HASM_##T && nb <= DAT_BLOCKS) transpose4(st, ac, lda, nc, n, nb, nb);          \
            for (int r = 0; r < nw; r += 4) {                                                  \
                const uint8_t *wr = wb + (size_t)r * ldw;                                      \
                float *o = s + (size_t)c * lds + r;                                            \
                const int nr = imin(4, nw - r);                                                \
                switch (nc) {                                                                  \
                case 4: tile_##T(n, wr, ldw, nr, ac, lda, 4, stp, o, lds); break;              \
                case 3: tile_##T(n, wr, ldw, nr, ac, lda, 3, stp, o, lds); break;              \
                case 2: tile_##T(n, wr, ldw, nr, ac, lda, 2, stp, o, lds); break;              \
                default: tile_##T(n, wr, ldw, nr, ac, lda, 1, stp, o, lds); break;             \
                }                                                                              \
            }                                                                                  \
        }                                                                                      \
    }

/* dst[4b + k] = the float at offset n + 4 * (off + b) bytes of activation row min(k, nc - 1)
 * (its d: off 0; its s: off nb), for b < nb */
INLINE void transpose4(float *dst, const uint8_t *a, size_t lda, int nc, int64_t n, int64_t off,
                       int64_t nb) {
    for (int k = 0; k < 4; k++) {
        const float *src = (const float *)(a + (size_t)imin(k, nc - 1) * lda + n) + off;
        for (int64_t b = 0; b < nb; b++)
            dst[4 * b + k] = src[b];
    }
}

/* activation rows from which the vertical tiles (gemm_vert_avx512.c) take over */
#define VERT_MIN_ACTS 2
#define DAT_BLOCKS 1024 /* activation scales transposed in the scratch up to this many blocks */
_Static_assert(4 * DAT_BLOCKS * sizeof(float) <= CPU_GEMM_SCRATCH, "DAT_BLOCKS");
TILE32L(q4_1, block_q4_1)
TILE32L(q5_0, block_q5_0)
TILE32L(q5_1, block_q5_1)
TILE32L(q8_0, block_q8_0)
DEC32L(q4_1, block_q4_1, cpu_gemmv_q4_1_avx512)
DEC32L(q5_0, block_q5_0, cpu_gemmv_q5_0_avx512)
DEC32L(q5_1, block_q5_1, cpu_gemmv_q5_1_avx512)
DEC32L(q8_0, block_q8_0, cpu_gemmv_q8_0_avx512)

void cpu_gemm_q8_0_fast_avx512(int64_t n, int nw, int na, float *s, size_t lds, const void *w,
                               size_t ldw, const void *a, size_t lda, void *scratch) {
    if (na >= VERT_MIN_ACTS)
        cpu_gemmv_q8_0_fast_avx512(n, nw, na, s, lds, w, ldw, a, lda, scratch);
    else
        cpu_gemm_q8_0_avx512(n, nw, na, s, lds, w, ldw, a, lda, scratch);
}

/* Q4_0: the reference adds each block's total, so the 8 lanes of several (row,
 * activation) pairs are reduced together (reduce4_epi32, simd_avx512.h). */

/* 8 weight rows (pairs i, i + 4; rows from nr on repeat the last) x 1 activation row:
 * the totals of rows 0..3 land in lanes 0..3, those of rows 4..7 in lanes 8..11 */
INLINE void tile8_q4_0(int64_t n, const uint8_t *w, size_t ldw, int nr, const uint8_t *a,
                       float *out) {
    const int64_t nb = n / 32;
    const block_q4_0 *r[8];
    for (int i = 0; i < 8; i++)
        r[i] = (const block_q4_0 *)(w + (size_t)imin(i, nr - 1) * ldw);
    const int8_t *aq = (const int8_t *)a;
    const float *ad = (const float *)(aq + n);
    __m512 acc = _mm512_setzero_ps();
    for (int64_t b = 0; b < nb; b += 2) {
        const int cnt = nb - b < 2 ? 1 : 2;
        const uint8_t *hp[16];
        for (int j = 0; j < 2; j++)
            for (int i = 0; i < 8; i++)
                hp[8 * j + i] = (const uint8_t *)&r[i][b + (j < cnt ? j : 0)].d;
        const __m512 dw = halves16(hp); /* lane 8j + i: row i, block b + j */
        for (int i = 0; i < 8; i++)
            _mm_prefetch((const char *)(r[i] + b) + PF_BYTES, _MM_HINT_T0);
        for (int j = 0; j < cnt; j++) {
            const __m512i y = bcast256(aq + 32 * (b + j));
            __m512i P[4];
            for (int i = 0; i < 4; i++)
                P[i] = _mm512_dpbusd_epi32(kacc(aq, n, b + j, 1),
                                           wq_q4_0(r[i] + b + j, r[i + 4] + b + j), y);
            const __m512i R = reduce4_epi32(P[0], P[1], P[2], P[3]);
            const __m512i S = _mm512_add_epi32(R, _mm512_shuffle_i32x4(R, R, _MM_SHUFFLE(2, 3, 0, 1)));
            const __m512 dd = _mm512_mul_ps(_mm512_permutexvar_ps(LD512(IDX8X2[j]), dw),
                                            _mm512_set1_ps(ad[b + j]));
            acc = _mm512_fmadd_ps(dd, _mm512_cvtepi32_ps(S), acc);
        }
    }
    float t[16];
    _mm512_storeu_ps(t, acc);
    for (int i = 0; i < nr && i < 8; i++)
        out[i] = t[i < 4 ? i : i + 4];
}

/* 4 weight rows (pairs 0,1 and 2,3) x 4 activation rows (rows from nr / na on repeat the
 * last): lane 4i + c = row i, activation c. dat[4b + c]: the activations' d by block
 * (NULL: read from the rows). */
INLINE void tile44_q4_0(int64_t n, const uint8_t *w, size_t ldw, int nr, const uint8_t *a,
                        size_t lda, int na, const float *dat, float *out, size_t lds) {
    const int64_t nb = n / 32;
    const block_q4_0 *r[4];
    const int8_t *aq[4];
    const float *ad[4];
    for (int i = 0; i < 4; i++) {
        r[i] = (const block_q4_0 *)(w + (size_t)imin(i, nr - 1) * ldw);
        aq[i] = (const int8_t *)(a + (size_t)imin(i, na - 1) * lda);
        ad[i] = (const float *)(aq[i] + n);
    }
    __m512 acc = _mm512_setzero_ps();
    for (int64_t b = 0; b < nb; b += 4) {
        const int cnt = nb - b < 4 ? (int)(nb - b) : 4;
        const uint8_t *hp[16];
        for (int i = 0; i < 4; i++)
            for (int j = 0; j < 4; j++)
                hp[4 * i + j] = (const uint8_t *)&r[i][b + (j < cnt ? j : 0)].d;
        const __m512 dw = halves16(hp); /* lane 4i + j: row i, block b + j */
        for (int i = 0; i < 4; i++)
            _mm_prefetch((const char *)(r[i] + b) + PF_BYTES, _MM_HINT_T0);
        for (int j = 0; j < cnt; j++) {
            const int64_t bb = b + j;
            const __m512i U0 = wq_q4_0(r[0] + bb, r[1] + bb), U1 = wq_q4_0(r[2] + bb, r[3] + bb);
            __m512i P0[4], P1[4];
            for (int c = 0; c < 4; c++) {
                const __m512i y = bcast256(aq[c] + 32 * bb);
                P0[c] = _mm512_dpbusd_epi32(kacc(aq[c], n, bb, 1), U0, y);
                P1[c] = _mm512_dpbusd_epi32(kacc(aq[c], n, bb, 1), U1, y);
            }
            const __m512i R0 = reduce4_epi32(P0[0], P0[1], P0[2], P0[3]);
            const __m512i R1 = reduce4_epi32(P1[0], P1[1], P1[2], P1[3]);
            const __m512i T =
                _mm512_add_epi32(_mm512_shuffle_i32x4(R0, R1, _MM_SHUFFLE(2, 0, 2, 0)),
                                 _mm512_shuffle_i32x4(R0, R1, _MM_SHUFFLE(3, 1, 3, 1)));
            const __m128 da = dat ? _mm_loadu_ps(dat + 4 * bb)
                                  : _mm_setr_ps(ad[0][bb], ad[1][bb], ad[2][bb], ad[3][bb]);
            const __m512 dd = _mm512_mul_ps(_mm512_permutexvar_ps(LD512(IDX4X4[j]), dw),
                                            _mm512_broadcast_f32x4(da));
            acc = _mm512_fmadd_ps(dd, _mm512_cvtepi32_ps(T), acc);
        }
    }
    float t[16];
    _mm512_storeu_ps(t, acc);
    for (int c = 0; c < na && c < 4; c++)
        for (int i = 0; i < nr && i < 4; i++)
            out[c * lds + i] = t[4 * i + c];
}

void cpu_vec_dot_q4_0_avx512(int64_t n, float *s, const void *w, const void *a) {
    tile8_q4_0(n, w, 0, 1, a, s);
}

void cpu_gemm_q4_0_avx512(int64_t n, int nw, int na, float *s, size_t lds, const void *w,
                          size_t ldw, const void *a, size_t lda, void *scratch) {
    const uint8_t *wb = w, *ab = a;
    const int64_t nb = n / 32;
    if (na == 1) {
        for (int r = 0; r < nw; r += 8)
            tile8_q4_0(n, wb + (size_t)r * ldw, ldw, imin(8, nw - r), ab, s + r);
        return;
    }
    if (na >= VERT_MIN_ACTS) {
        cpu_gemmv_q4_0_avx512(n, nw, na, s, lds, w, ldw, a, lda, scratch);
        return;
    }
    float *dat = scratch;
    for (int c = 0; c < na; c += 4) {
        const int nc = imin(4, na - c);
        const uint8_t *ac = ab + (size_t)c * lda;
        if (nb <= DAT_BLOCKS)
            for (int k = 0; k < 4; k++) {
                const float *ad = (const float *)(ac + (size_t)imin(k, nc - 1) * lda + n);
                for (int64_t b = 0; b < nb; b++)
                    dat[4 * b + k] = ad[b];
            }
        for (int r = 0; r < nw; r += 4)
            tile44_q4_0(n, wb + (size_t)r * ldw, ldw, imin(4, nw - r), ac, lda, nc,
                        nb <= DAT_BLOCKS ? dat : NULL, s + (size_t)c * lds + r, lds);
    }
}

/* ---------------------------------------------------------------- K-quants */

/* One 256-block unpacked: q[k] = u8 of elements 64k..64k+63 (Q3_K, Q6_K: the weight plus
 * 4 / 32; or, SIGN, its magnitude, neg[k] its signs), sc[k] = the int16 scale of each
 * vpmaddubsw lane, mw = per-16 min weights (against the bsums; Q2_K), mn = the 8 per-32
 * mins (against the per-32 sums; Q4_K, Q5_K). */
typedef struct {
    __m512i q[4];
    __m512i sc[4];
    __m256i mw;
    __m128i mn;
    __mmask64 neg[4];
} ukq;

/* Q3_K / Q6_K, SIGN: q - off as magnitude and sign */
INLINE void to_sign(ukq *u, int off) {
    for (int k = 0; k < 4; k++) {
        const __m512i s = _mm512_sub_epi8(u->q[k], _mm512_set1_epi8((char)off));
        u->neg[k] = _mm512_movepi8_mask(s);
        u->q[k] = _mm512_abs_epi8(s);
    }
}

/* 16 scale words of the 16-element sub-blocks -> lanes */
INLINE void scales16(ukq *u, __m256i scw) {
    const __m512i z = _mm512_castsi256_si512(scw);
    for (int k = 0; k < 4; k++)
        u->sc[k] = _mm512_permutexvar_epi16(LD512(IDX16[k]), z);
}

/* Q2_K / Q3_K 2-bit field of chunk k (k = 2 * half + m): qs[32*half + l] >> (4m | 4m+2) */
INLINE __m512i low2(const uint8_t *qs, int k) {
    const __m512i t = bcast256(qs + 32 * (k / 2));
    return _mm512_and_si512(_mm512_srlv_epi16(t, LD512(SH_Q2[k % 2])), _mm512_set1_epi8(3));
}

INLINE void unpack_q2_K(const block_q2_K *x, ukq *u) {
    const __m128i s8 = _mm_loadu_si128((const __m128i *)x->scales);
    const __m128i m4 = _mm_set1_epi8(15);
    scales16(u, _mm256_cvtepu8_epi16(_mm_and_si128(s8, m4)));
    u->mw = _mm256_cvtepu8_epi16(_mm_and_si128(_mm_srli_epi16(s8, 4), m4));
    for (int k = 0; k < 4; k++)
        u->q[k] = low2(x->qs, k);
}

/* Q3_K's 16 6-bit scales (biased by 32): low 4 bits in nibble s/8 of byte s%8, top 2
 * bits at bit 2*(s/4) of byte 8 + s%4 */
INLINE __m256i q3_scales(const uint8_t *b) {
    /* scalar integer ops (they run beside the busy vector ports) */
    const uint32_t a0 = ld32(b), a1 = ld32(b + 4), t = ld32(b + 8);
    const uint32_t s0 = (a0 & 0x0f0f0f0f) | ((t & 0x03030303) << 4);
    const uint32_t s1 = (a1 & 0x0f0f0f0f) | (((t >> 2) & 0x03030303) << 4);
    const uint32_t s2 = ((a0 >> 4) & 0x0f0f0f0f) | (((t >> 4) & 0x03030303) << 4);
    const uint32_t s3 = ((a1 >> 4) & 0x0f0f0f0f) | (((t >> 6) & 0x03030303) << 4);
    const __m128i v = _mm_insert_epi64(_mm_cvtsi64_si128((long long)((uint64_t)s1 << 32 | s0)),
                                       (long long)((uint64_t)s3 << 32 | s2), 1);
    return _mm256_sub_epi16(_mm256_cvtepu8_epi16(v), _mm256_set1_epi16(32));
}

INLINE void unpack_q3_K(const block_q3_K *x, ukq *u) {
    scales16(u, q3_scales(x->scales));
    const __m512i hm = bcast256(x->hmask);
    for (int k = 0; k < 4; k++) {
        const __m512i q = low2(x->qs, k);
        /* chunk k = (half, m): groups g = 2m, 2m+1 -> hmask bits 4*half + 2m (+1) = 2k (+1) */
        const __mmask64 hb = _mm512_test_epi8_mask(hm, LD512(HB2[k]));
        u->q[k] = _mm512_mask_add_epi8(q, hb, q, _mm512_set1_epi8(4));
    }
}

/* Q4_K / Q5_K: the 6-bit scales and mins of the 8 sub-blocks, unpacked with dword
 * shifts from s = [s0, s1, s2] (12 bytes):
 *   sc0..3 = s0 & 63, mn0..3 = s1 & 63,
 *   sc4..7 = (s2 & 15) | (s0 >> 6) << 4, mn4..7 = (s2 >> 4) | (s1 >> 6) << 4. */
INLINE void k4_scales(ukq *u, const uint8_t *scales) {
    /* scalar integer ops run beside the vector ports, which are the bottleneck here */
    const uint32_t s0 = ld32(scales), s1 = ld32(scales + 4), s2 = ld32(scales + 8);
    const uint64_t sc = (uint64_t)(s0 & 0x3f3f3f3f) |
                        (uint64_t)((s2 & 0x0f0f0f0f) | ((s0 >> 2) & 0x30303030)) << 32;
    const uint64_t mn = (uint64_t)(s1 & 0x3f3f3f3f) |
                        (uint64_t)(((s2 >> 4) & 0x0f0f0f0f) | ((s1 >> 2) & 0x30303030)) << 32;
    const __m128i bytes = _mm_insert_epi64(_mm_cvtsi64_si128((long long)sc), (long long)mn, 1);
    const __m256i w16 = _mm256_cvtepu8_epi16(bytes); /* [sc0..7 | mn0..7] */
    const __m512i wz = _mm512_castsi256_si512(w16);
    for (int k = 0; k < 4; k++)
        u->sc[k] = _mm512_permutexvar_epi16(LD512(IDX32[k]), wz);
    u->mn = _mm256_extracti128_si256(w16, 1);
}

/* Q4_K / Q5_K chunk k: [low nibbles of qs[32k..32k+31] | high nibbles] */
INLINE __m512i nib64(const uint8_t *qs) {
    return _mm512_and_si512(_mm512_srlv_epi16(bcast256(qs), LD512(SH_H256_04)),
                            _mm512_set1_epi8(15));
}

INLINE void unpack_q4_K(const block_q4_K *x, ukq *u) {
    k4_scales(u, x->scales);
    for (int k = 0; k < 4; k++)
        u->q[k] = nib64(x->qs + 32 * k);
}

INLINE void unpack_q5_K(const block_q5_K *x, ukq *u) {
    k4_scales(u, x->scales);
    const __m512i hb = bcast256(x->qh);
    for (int k = 0; k < 4; k++) {
        const __m512i q = nib64(x->qs + 32 * k);
        /* sub-blocks 2k, 2k+1 -> qh bits 2k, 2k+1 */
        const __mmask64 m = _mm512_test_epi8_mask(hb, LD512(HB2[k]));
        u->q[k] = _mm512_mask_add_epi8(q, m, q, _mm512_set1_epi8(16));
    }
}

INLINE void unpack_q6_K(const block_q6_K *x, ukq *u) {
    scales16(u, _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)x->scales)));
    const __m512i m4 = _mm512_set1_epi8(15), m30 = _mm512_set1_epi8(0x30);
    for (int h = 0; h < 2; h++) {
        const __m512i ql = _mm512_loadu_si512((const void *)(x->ql + 64 * h));
        const __m512i qh = bcast256(x->qh + 32 * h);
        const __m512i tlo = _mm512_and_si512(_mm512_sllv_epi16(qh, LD512(SH_Q6_LO)), m30);
        const __m512i thi = _mm512_and_si512(_mm512_srlv_epi16(qh, LD512(SH_Q6_HI)), m30);
        /* (a & 15) | t */
        u->q[2 * h] = _mm512_ternarylogic_epi32(ql, m4, tlo, 0xEA);
        u->q[2 * h + 1] = _mm512_ternarylogic_epi32(_mm512_srli_epi16(ql, 4), m4, thi, 0xEA);
    }
}

/* The reference's 8 int lanes of one superblock against one activation row: 16 lanes,
 * element 64k + 4i in lane i, whose halves are then added. OFF (Q3_K 4, Q6_K 32): the
 * weights are q - OFF; SIGN: their magnitudes, the activations taking their signs; else
 * the offsets are taken off in the int16 pair sums (as llama.cpp does). */
INLINE __m256i kdot(const ukq *u, const int8_t *aq, const int OFF, const int SIGN) {
    __m512i p[4];
    for (int k = 0; k < 4; k++) {
        __m512i y = _mm512_loadu_si512((const void *)(aq + 64 * k));
        if (OFF && SIGN) y = _mm512_mask_sub_epi8(y, u->neg[k], _mm512_setzero_si512(), y);
        p[k] = _mm512_maddubs_epi16(u->q[k], y);
        if (OFF && !SIGN)
            p[k] = _mm512_sub_epi16(p[k], _mm512_maddubs_epi16(_mm512_set1_epi8((char)OFF), y));
    }
    __m512i i0 = _mm512_setzero_si512(), i1 = _mm512_setzero_si512();
    i0 = _mm512_dpwssd_epi32(i0, p[0], u->sc[0]);
    i1 = _mm512_dpwssd_epi32(i1, p[1], u->sc[1]);
    i0 = _mm512_dpwssd_epi32(i0, p[2], u->sc[2]);
    i1 = _mm512_dpwssd_epi32(i1, p[3], u->sc[3]);
    const __m512i t = _mm512_add_epi32(i0, i1);
    return _mm256_add_epi32(_mm512_castsi512_si256(t), _mm512_extracti64x4_epi64(t, 1));
}

/* MINS: how the mins enter (the reference's order): 0 none (Q3_K, Q6_K); 1 Q2_K: 8 lanes
 * of per-16 mins x bsums into the same accumulator, before the scales; 2 Q4_K: 4 lanes of
 * pairs of per-32 mins x sums in an accumulator of their own; 3 Q5_K: their total, in a
 * scalar. Tiles of 4 or more activation rows run OFF types with SIGN. */
#define TILEK(T, BT, MINS, OFF)                                                                \
    INLINE void tile_##T(int64_t n, const void *w, const uint8_t *a, size_t lda, const int NA, \
                         float *out, size_t lds) {                                             \
        const BT *x = w;                                                                       \
        const int64_t nb = n / QK_K;                                                           \
        const int SIGN = OFF && NA >= 4;                                                       \
        __m256 acc[8];                                                                         \
        __m128 accm[8];                                                                        \
        float summs[8];                                                                        \
        for (int c = 0; c < NA; c++) {                                                         \
            acc[c] = _mm256_setzero_ps();                                                      \
            accm[c] = _mm_setzero_ps();                                                        \
            summs[c] = 0.0f;                                                                   \
        }                                                                                      \
        for (int64_t b = 0; b < nb; b++) {                                                     \
            for (int pf = 0; pf < (int)sizeof(BT); pf += 64)                                   \
                _mm_prefetch((const char *)(x + b) + PF_BYTES + pf, _MM_HINT_T0);              \
            ukq u;                                                                             \
            unpack_##T(x + b, &u);                                                             \
            if (SIGN) to_sign(&u, OFF);                                                        \
            const float xd = h2f(x[b].d), xm = MINS ? h2f(ld16((const uint8_t *)&x[b].d + 2)) : 0; \
            for (int c = 0; c < NA; c++) {                                                     \
                const int8_t *aq = (const int8_t *)(a + c * lda);                              \
                const float *ad = (const float *)(aq + n);                                     \
                const int16_t *bs = (const int16_t *)(ad + nb) + 16 * b;                       \
                const __m256i si = kdot(&u, aq + QK_K * b, OFF, SIGN);                         \
                if (MINS) {                                                                    \
                    /* dmin = -(d_a * xm): fnmadd */                                           \
                    const float dm = ad[b] * xm;                                               \
                    if (MINS == 1) {                                                           \
                        const __m256i ms = _mm256_madd_epi16(                                  \
                            _mm256_loadu_si256((const __m256i *)bs), u.mw);                    \
                        acc[c] = _mm256_fnmadd_ps(_mm256_set1_ps(dm), _mm256_cvtepi32_ps(ms),  \
                                                  acc[c]);                                     \
                    } else {                                                                   \
                        /* the per-32 sums follow the bsums */                                 \
                        const __m128i s32 = _mm_loadu_si128(                                   \
                            (const __m128i *)((const int16_t *)(ad + nb) + n / 16) + b);       \
                        const __m128i p4 = _mm_madd_epi16(s32, u.mn);                          \
                        if (MINS == 2) {                                                       \
                            accm[c] = _mm_fnmadd_ps(_mm_set1_ps(dm), _mm_cvtepi32_ps(p4),      \
                                                    accm[c]);                                  \
                        } else {                                                               \
                            __m128i t = _mm_add_epi32(p4, _mm_shuffle_epi32(p4, 0x4e));        \
                            t = _mm_add_epi32(t, _mm_shuffle_epi32(t, 0xb1));                  \
                            summs[c] = _mm_cvtss_f32(_mm_fnmadd_ss(                            \
                                _mm_set_ss(dm), _mm_cvtepi32_ps(t), _mm_set_ss(summs[c])));    \
                        }                                                                      \
                    }                                                                          \
                }                                                                              \
                acc[c] = _mm256_fmadd_ps(_mm256_set1_ps(ad[b] * xd), _mm256_cvtepi32_ps(si),   \
                                         acc[c]);                                              \
            }                                                                                  \
        }                                                                                      \
        for (int c = 0; c < NA; c++) {                                                         \
            float r = hsum8_ps(acc[c]);                                                        \
            if (MINS == 2) r += hsum4_ps(accm[c]);                                             \
            if (MINS == 3) r += summs[c];                                                      \
            out[c * lds] = r;                                                                  \
        }                                                                                      \
    }

TILEK(q2_K, block_q2_K, 1, 0)
TILEK(q3_K, block_q3_K, 0, 4)
TILEK(q4_K, block_q4_K, 2, 0)
TILEK(q5_K, block_q5_K, 3, 0)
TILEK(q6_K, block_q6_K, 0, 32)

/* vec_dot and gemm_tile from a one-row tile function; VERT (or NULL): the vertical tile
 * (gemm_vert_avx512.c) that takes several activation rows, repaying the unpacking of a
 * 16-row panel */
#define QUANT_DRIVERS(T, VERT)                                                                 \
    void cpu_vec_dot_##T##_avx512(int64_t n, float *s, const void *w, const void *a) {         \
        tile_##T(n, w, a, 0, 1, s, 0);                                                         \
    }                                                                                          \
    static void gemm_##T(int64_t n, int nw, int na, float *s, size_t lds, const void *w,       \
                         size_t ldw, const void *a, size_t lda, void *scratch);                \
    void cpu_gemm_##T##_avx512(int64_t n, int nw, int na, float *s, size_t lds, const void *w, \
                               size_t ldw, const void *a, size_t lda, void *scratch) {         \
        const cpu_gemm_tile_fn vert = VERT;                                                    \
        if (vert && na >= VERT_MIN_ACTS_K)                                                     \
            vert(n, nw, na, s, lds, w, ldw, a, lda, scratch);                                  \
        else                                                                                   \
            gemm_##T(n, nw, na, s, lds, w, ldw, a, lda, scratch);                              \
    }                                                                                          \
    static void gemm_##T(int64_t n, int nw, int na, float *s, size_t lds, const void *w,       \
                         size_t ldw, const void *a, size_t lda, void *scratch) {               \
        const uint8_t *wb = w, *ab = a;                                                        \
        int c = 0;                                                                             \
        for (; c + 8 <= na; c += 8)                                                            \
            for (int r = 0; r < nw; r++)                                                       \
                tile_##T(n, wb + r * ldw, ab + c * lda, lda, 8, s + c * lds + r, lds);         \
        for (; c + 4 <= na; c += 4)                                                            \
            for (int r = 0; r < nw; r++)                                                       \
                tile_##T(n, wb + r * ldw, ab + c * lda, lda, 4, s + c * lds + r, lds);         \
        for (int r = 0; r < nw && c < na; r++) {                                               \
            const uint8_t *wr = wb + r * ldw, *ac = ab + c * lda;                              \
            float *o = s + c * lds + r;                                                        \
            switch (na - c) {                                                                  \
            case 3: tile_##T(n, wr, ac, lda, 3, o, lds); break;                                \
            case 2: tile_##T(n, wr, ac, lda, 2, o, lds); break;                                \
            default: tile_##T(n, wr, ac, lda, 1, o, lds); break;                               \
            }                                                                                  \
        }                                                                                      \
    }

/* activation rows from which the K-quants' vertical tiles take over */
#define VERT_MIN_ACTS_K 4
QUANT_DRIVERS(q2_K, NULL)
QUANT_DRIVERS(q3_K, NULL)
QUANT_DRIVERS(q4_K, cpu_gemmv_q4_K_avx512)
QUANT_DRIVERS(q5_K, cpu_gemmv_q5_K_avx512)
QUANT_DRIVERS(q6_K, cpu_gemmv_q6_K_avx512)
