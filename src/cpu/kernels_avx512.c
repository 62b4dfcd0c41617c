/* AVX-512 (F/BW/VL/DQ + VNNI) kernels. Only called after cpuid reports these.
 *
 * Quantized weights are unpacked to unsigned bytes u and multiplied with the int8
 * activations by vpdpbusd (u8 x s8, 32-bit sums) or vpmaddubsw + vpdpwssd (when a
 * per-16/32 integer scale follows). Offsets (q - 8, q - 32, ...) and mins are applied
 * through the activation block sums, so no sign tricks are needed:
 *   32-blocks:  w = dw * u + cw      -> dw*da * (u . a) + cw * (da * sum a)
 *   K-quants:   w = d * sc * u - dmin * mn
 *                                     -> d*da * sum(sc * (u . a)) - dmin*da * sum(mn * bsum)
 * 32-blocks go 16 at a time: two blocks per zmm, their 16 half scales gathered with
 * word inserts and spread over the lanes with vpermps; leftover blocks one at a time
 * on ymm. K-quants unpack a superblock into 4 zmm of 64 elements with per-lane int16
 * scales (vpermw). A weight block is unpacked once and reused for up to 8 activation
 * rows of a gemm tile.
 *
 * (A 256-bit variant, which keeps port 1 available for the integer multiplies, was
 * measured: it was slower for Q8_0, Q5_0, Q2_K, Q3_K, Q6_K and within a few percent for
 * Q4_K / Q5_K, so everything but the per-block tails is 512-bit.) */
#include <immintrin.h>
#include <stddef.h>
#include <string.h>

#include "cpu/kernels.h"

#define INLINE static inline __attribute__((always_inline))
#define ALIGN32 __attribute__((aligned(32)))

INLINE float h2f(uint16_t h) {
    return _cvtsh_ss(h);
}

INLINE uint32_t ld32(const void *p) {
    uint32_t v;
    memcpy(&v, p, 4);
    return v;
}

#define R8(x) x, x, x, x, x, x, x, x
#define R16(x) R8(x), R8(x)

/* ------------------------------------------------------------------ tables */

#define R32(x) R16(x), R16(x)
#define ALIGN64 __attribute__((aligned(64)))

/* word shifts: per 128-bit lane 0,4,0,4 (Q5 pairs) */
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
/* float lanes of zmm k (two 32-blocks) take the scale of block 2k / 2k+1 */
static const int32_t IDX_PAIR[8][16] ALIGN64 = {
    {R8(0), R8(1)}, {R8(2), R8(3)},   {R8(4), R8(5)},   {R8(6), R8(7)},
    {R8(8), R8(9)}, {R8(10), R8(11)}, {R8(12), R8(13)}, {R8(14), R8(15)},
};
static const uint16_t IDX32[4][32] ALIGN64 = {
    {R16(0), R16(1)}, {R16(2), R16(3)}, {R16(4), R16(5)}, {R16(6), R16(7)}};
static const uint16_t IDX_MINS[16] ALIGN32 = {8,  8,  9,  9,  10, 10, 11, 11,
                                              12, 12, 13, 13, 14, 14, 15, 15};
static const uint16_t SH_H256_04[32] ALIGN64 = {R16(0), R16(4)};
/* Q3_K / Q5_K chunk k: bits 2k (first 32 bytes) and 2k+1 (last 32) */
static const uint8_t HB2[4][64] ALIGN64 = {
    {R32(1), R32(2)}, {R32(4), R32(8)}, {R32(16), R32(32)}, {R32(64), R32(128)}};

#define LD512(p) _mm512_load_si512((const void *)(p))
#define LD256(p) _mm256_load_si256((const __m256i *)(p))
#define LDU256(p) _mm256_loadu_si256((const __m256i *)(p))

INLINE float hsum256(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

/* ------------------------------------------------------------ activations */

void cpu_quantize_q8_32_avx512(const float *x, void *a, int64_t n) {
    int8_t *q = a;
    const int64_t nb = n / 32;
    float *d = (float *)(q + n), *ds = d + nb;
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
        d[b] = amax / 127.0f;
        ds[b] = d[b] * (float)sum;
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
        d[b] = amax / 127.0f;
    }
}

/* ------------------------------------------------------------ float weights */

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

#define FLOAT_KERNELS(T)                                                                       \
    void cpu_vec_dot_##T##_avx512(int64_t n, float *s, const void *w, const void *a) {         \
        const float *x = a;                                                                    \
        __m512 acc0 = _mm512_setzero_ps(), acc1 = acc0, acc2 = acc0, acc3 = acc0;              \
        int64_t i = 0;                                                                         \
        for (; i + 64 <= n; i += 64) {                                                         \
            acc0 = _mm512_fmadd_ps(wload_##T(w, i), _mm512_loadu_ps(x + i), acc0);             \
            acc1 = _mm512_fmadd_ps(wload_##T(w, i + 16), _mm512_loadu_ps(x + i + 16), acc1);   \
            acc2 = _mm512_fmadd_ps(wload_##T(w, i + 32), _mm512_loadu_ps(x + i + 32), acc2);   \
            acc3 = _mm512_fmadd_ps(wload_##T(w, i + 48), _mm512_loadu_ps(x + i + 48), acc3);   \
        }                                                                                      \
        for (; i < n; i += 16) {                                                               \
            const __mmask16 m =                                                                \
                n - i >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << (n - i)) - 1);            \
            acc0 =                                                                             \
                _mm512_fmadd_ps(wmload_##T(w, i, m), _mm512_maskz_loadu_ps(m, x + i), acc0);   \
        }                                                                                      \
        *s = _mm512_reduce_add_ps(                                                             \
            _mm512_add_ps(_mm512_add_ps(acc0, acc1), _mm512_add_ps(acc2, acc3)));              \
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
                s[c * lds + r] = _mm512_reduce_add_ps(acc[r][c]);                              \
    }                                                                                          \
    void cpu_gemm_##T##_avx512(int64_t n, int nw, int na, float *s, size_t lds, const void *w, \
                               size_t ldw, const void *a, size_t lda) {                        \
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

/* 16 consecutive blocks unpacked: q[k] holds blocks 2k, 2k+1 as u8 */
typedef struct {
    __m512i q[8];
    __m512 dw, cw;
} u16b;
/* one block */
typedef struct {
    __m256i q;
    float dw, cw;
} u1b;

/* 16 halves at a stride of `stride` bytes -> floats */
INLINE __m512 gather_h16(const uint8_t *p, size_t stride) {
    /* packed into 64-bit words with scalar ops, which run beside the busy vector ports */
    uint64_t w[4];
    for (int j = 0; j < 4; j++) {
        uint64_t v = 0;
        for (int i = 0; i < 4; i++) {
            uint16_t h;
            memcpy(&h, p + (size_t)(4 * j + i) * stride, 2);
            v |= (uint64_t)h << (16 * i);
        }
        w[j] = v;
    }
    const __m128i lo = _mm_insert_epi64(_mm_cvtsi64_si128((long long)w[0]), (long long)w[1], 1);
    const __m128i hi = _mm_insert_epi64(_mm_cvtsi64_si128((long long)w[2]), (long long)w[3], 1);
    return _mm512_cvtph_ps(_mm256_setr_m128i(lo, hi));
}

/* two 16-byte nibble arrays -> [lo(a), hi(a), lo(b), hi(b)] */
INLINE __m512i nib_pair(const uint8_t *qa, const uint8_t *qb) {
    const __m256i lo = _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)qa));
    const __m256i hi = _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)qb));
    const __m512i t = _mm512_inserti64x4(_mm512_castsi256_si512(lo), hi, 1);
    return _mm512_and_si512(_mm512_srlv_epi16(t, LD512(SH_L128_04)), _mm512_set1_epi8(15));
}
/* Q4_0 / Q4_1: the same without the shift: the high nibbles stay in place (x16), and
 * lanes 4..7 / 12..15 of the sums are divided by 16 at the end (vpdpbusd does not
 * saturate; everything stays exact) */
INLINE __m512i nib_pair_x16(const uint8_t *qa, const uint8_t *qb) {
    const __m256i lo = _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)qa));
    const __m256i hi = _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)qb));
    const __m512i t = _mm512_inserti64x4(_mm512_castsi256_si512(lo), hi, 1);
    const __m128i m0 = _mm_set1_epi8(0x0F), m1 = _mm_set1_epi8((char)0xF0);
    const __m512i m = _mm512_inserti64x4(_mm512_castsi256_si512(_mm256_setr_m128i(m0, m1)),
                                         _mm256_setr_m128i(m0, m1), 1);
    return _mm512_and_si512(t, m);
}
INLINE __m256i nib_one(const uint8_t *qa) {
    const __m256i t = _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)qa));
    return _mm256_and_si256(_mm256_srlv_epi16(t, LD256(SH_L128_04)), _mm256_set1_epi8(15));
}
INLINE __m512i hbit_pair(__m512i q, const uint8_t *ha, const uint8_t *hb) {
    const __mmask64 m = _cvtu64_mask64((uint64_t)ld32(ha) | (uint64_t)ld32(hb) << 32);
    return _mm512_mask_add_epi8(q, m, q, _mm512_set1_epi8(16));
}
INLINE __m256i hbit_one(__m256i q, const uint8_t *h) {
    return _mm256_mask_add_epi8(q, (__mmask32)ld32(h), q, _mm256_set1_epi8(16));
}

INLINE void unpack16_q4_0(const block_q4_0 *x, u16b *u) {
    for (int k = 0; k < 8; k++)
        u->q[k] = nib_pair_x16(x[2 * k].qs, x[2 * k + 1].qs);
    u->dw = gather_h16((const uint8_t *)&x[0].d, sizeof *x);
    u->cw = _mm512_mul_ps(u->dw, _mm512_set1_ps(-8.0f));
}
INLINE void unpack1_q4_0(const block_q4_0 *x, u1b *u) {
    u->q = nib_one(x->qs);
    u->dw = h2f(x->d);
    u->cw = -8.0f * u->dw;
}
INLINE void unpack16_q4_1(const block_q4_1 *x, u16b *u) {
    for (int k = 0; k < 8; k++)
        u->q[k] = nib_pair_x16(x[2 * k].qs, x[2 * k + 1].qs);
    u->dw = gather_h16((const uint8_t *)&x[0].d, sizeof *x);
    u->cw = gather_h16((const uint8_t *)&x[0].m, sizeof *x);
}
INLINE void unpack1_q4_1(const block_q4_1 *x, u1b *u) {
    u->q = nib_one(x->qs);
    u->dw = h2f(x->d);
    u->cw = h2f(x->m);
}
INLINE void unpack16_q5_0(const block_q5_0 *x, u16b *u) {
    for (int k = 0; k < 8; k++)
        u->q[k] =
            hbit_pair(nib_pair(x[2 * k].qs, x[2 * k + 1].qs), x[2 * k].qh, x[2 * k + 1].qh);
    u->dw = gather_h16((const uint8_t *)&x[0].d, sizeof *x);
    u->cw = _mm512_mul_ps(u->dw, _mm512_set1_ps(-16.0f));
}
INLINE void unpack1_q5_0(const block_q5_0 *x, u1b *u) {
    u->q = hbit_one(nib_one(x->qs), x->qh);
    u->dw = h2f(x->d);
    u->cw = -16.0f * u->dw;
}
INLINE void unpack16_q5_1(const block_q5_1 *x, u16b *u) {
    for (int k = 0; k < 8; k++)
        u->q[k] =
            hbit_pair(nib_pair(x[2 * k].qs, x[2 * k + 1].qs), x[2 * k].qh, x[2 * k + 1].qh);
    u->dw = gather_h16((const uint8_t *)&x[0].d, sizeof *x);
    u->cw = gather_h16((const uint8_t *)&x[0].m, sizeof *x);
}
INLINE void unpack1_q5_1(const block_q5_1 *x, u1b *u) {
    u->q = hbit_one(nib_one(x->qs), x->qh);
    u->dw = h2f(x->d);
    u->cw = h2f(x->m);
}
/* Q8_0: u = q + 128 (xor of the sign bit), offset -128 */
INLINE void unpack16_q8_0(const block_q8_0 *x, u16b *u) {
    for (int k = 0; k < 8; k++) {
        const __m256i a = _mm256_loadu_si256((const __m256i *)x[2 * k].qs);
        const __m256i b = _mm256_loadu_si256((const __m256i *)x[2 * k + 1].qs);
        u->q[k] = _mm512_xor_si512(_mm512_inserti64x4(_mm512_castsi256_si512(a), b, 1),
                                   _mm512_set1_epi8((char)0x80));
    }
    u->dw = gather_h16((const uint8_t *)&x[0].d, sizeof *x);
    u->cw = _mm512_mul_ps(u->dw, _mm512_set1_ps(-128.0f));
}
INLINE void unpack1_q8_0(const block_q8_0 *x, u1b *u) {
    u->q = _mm256_xor_si256(_mm256_loadu_si256((const __m256i *)x->qs),
                            _mm256_set1_epi8((char)0x80));
    u->dw = h2f(x->d);
    u->cw = -128.0f * u->dw;
}

/* acc[k % NACC] += per-block (u . a) * dw * da; acc[NACC] += cw * ds */
INLINE void dot16(const u16b *u, const int8_t *aq, const float *ad, const float *ads,
                  __m512 *acc, const int NACC) {
    const __m512 S = _mm512_mul_ps(u->dw, _mm512_loadu_ps(ad));
    for (int k = 0; k < 8; k++) {
        const __m512i p = _mm512_dpbusd_epi32(_mm512_setzero_si512(), u->q[k],
                                              _mm512_loadu_si512((const void *)(aq + 64 * k)));
        acc[k % NACC] = _mm512_fmadd_ps(
            _mm512_cvtepi32_ps(p), _mm512_permutexvar_ps(LD512(IDX_PAIR[k]), S), acc[k % NACC]);
    }
    acc[NACC] = _mm512_fmadd_ps(u->cw, _mm512_loadu_ps(ads), acc[NACC]);
}

/* One weight row against NA activation rows (lda apart): out[c * lds]. */
#define TILE32(T, BT, X16)                                                                     \
    INLINE void tile_##T(int64_t n, const void *w, const uint8_t *a, size_t lda, const int NA, \
                         float *out, size_t lds) {                                             \
        const BT *x = w;                                                                       \
        const int64_t nb = n / 32, ng = nb / 16;                                               \
        const int NACC = NA == 1 ? 4 : NA <= 4 ? 2 : 1;                                        \
        __m512 acc[8][5]; /* [c][0..NACC-1]: products, [c][NACC]: offsets / mins */            \
        for (int c = 0; c < NA; c++)                                                           \
            for (int j = 0; j <= NACC; j++)                                                    \
                acc[c][j] = _mm512_setzero_ps();                                               \
        for (int64_t g = 0; g < ng; g++) {                                                     \
            u16b u;                                                                            \
            unpack16_##T(x + 16 * g, &u);                                                      \
            for (int c = 0; c < NA; c++) {                                                     \
                const int8_t *aq = (const int8_t *)(a + c * lda);                              \
                const float *ad = (const float *)(aq + n);                                     \
                dot16(&u, aq + 512 * g, ad + 16 * g, ad + nb + 16 * g, acc[c], NACC);          \
            }                                                                                  \
        }                                                                                      \
        __m256 acct[8];                                                                        \
        float corr[8];                                                                         \
        for (int c = 0; c < NA; c++) {                                                         \
            acct[c] = _mm256_setzero_ps();                                                     \
            corr[c] = 0.0f;                                                                    \
        }                                                                                      \
        for (int64_t b = 16 * ng; b < nb; b++) {                                               \
            u1b u;                                                                             \
            unpack1_##T(x + b, &u);                                                            \
            for (int c = 0; c < NA; c++) {                                                     \
                const int8_t *aq = (const int8_t *)(a + c * lda);                              \
                const float *ad = (const float *)(aq + n);                                     \
                const __m256i p =                                                              \
                    _mm256_dpbusd_epi32(_mm256_setzero_si256(), u.q,                           \
                                        _mm256_loadu_si256((const __m256i *)(aq + 32 * b)));   \
                acct[c] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(p), _mm256_set1_ps(u.dw * ad[b]), \
                                          acct[c]);                                            \
                corr[c] += u.cw * ad[nb + b];                                                  \
            }                                                                                  \
        }                                                                                      \
        for (int c = 0; c < NA; c++) {                                                         \
            __m512 t = acc[c][0];                                                              \
            for (int j = 1; j < NACC; j++)                                                     \
                t = _mm512_add_ps(t, acc[c][j]);                                               \
            if (X16)                                                                           \
                t = _mm512_mul_ps(t, _mm512_setr_ps(1, 1, 1, 1, 0.0625f, 0.0625f, 0.0625f,     \
                                                    0.0625f, 1, 1, 1, 1, 0.0625f, 0.0625f,     \
                                                    0.0625f, 0.0625f));                        \
            t = _mm512_add_ps(t,                                                               \
                              _mm512_add_ps(acc[c][NACC], _mm512_zextps256_ps512(acct[c])));   \
            out[c * lds] = _mm512_reduce_add_ps(t) + corr[c];                                  \
        }                                                                                      \
    }

TILE32(q4_0, block_q4_0, 1)
TILE32(q4_1, block_q4_1, 1)
TILE32(q5_0, block_q5_0, 0)
TILE32(q5_1, block_q5_1, 0)
TILE32(q8_0, block_q8_0, 0)

/* ---------------------------------------------------------------- K-quants */

/* One 256-block unpacked: q[k] = u8 of elements 64k..64k+63, sc[k] = the int16 scale
 * of each vpmaddubsw lane, mw = per-16 min weights (against the bsums). */
typedef struct {
    __m512i q[4];
    __m512i sc[4];
    __m256i mw;
} ukq;

INLINE __m512i bcast256(const uint8_t *p) {
    return _mm512_broadcast_i64x4(_mm256_loadu_si256((const __m256i *)p));
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
    const __m256i scw = q3_scales(x->scales);
    scales16(u, scw);
    u->mw = _mm256_slli_epi16(scw, 2); /* q = u - 4 */
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
    u->mw = _mm256_permutexvar_epi16(LD256(IDX_MINS), w16);
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
    const __m256i scw = _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)x->scales));
    scales16(u, scw);
    u->mw = _mm256_slli_epi16(scw, 5); /* q = u - 32 */
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

/* acc[0] += dd * sum(sc * (u . a)); acc[1] -= dm * sum(mw * bsums) */
INLINE void kdot(const ukq *u, const int8_t *aq, __m512 dd, __m512 dm, const int16_t *bs,
                 __m512 *acc) {
    __m512i i0 = _mm512_setzero_si512(), i1 = _mm512_setzero_si512();
    i0 = _mm512_dpwssd_epi32(i0, _mm512_maddubs_epi16(u->q[0], _mm512_loadu_si512(aq)),
                             u->sc[0]);
    i1 = _mm512_dpwssd_epi32(i1, _mm512_maddubs_epi16(u->q[1], _mm512_loadu_si512(aq + 64)),
                             u->sc[1]);
    i0 = _mm512_dpwssd_epi32(i0, _mm512_maddubs_epi16(u->q[2], _mm512_loadu_si512(aq + 128)),
                             u->sc[2]);
    i1 = _mm512_dpwssd_epi32(i1, _mm512_maddubs_epi16(u->q[3], _mm512_loadu_si512(aq + 192)),
                             u->sc[3]);
    const __m256i ms = _mm256_madd_epi16(_mm256_loadu_si256((const __m256i *)bs), u->mw);
    acc[0] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(_mm512_add_epi32(i0, i1)), dd, acc[0]);
    acc[1] = _mm512_fnmadd_ps(_mm512_zextps256_ps512(_mm256_cvtepi32_ps(ms)), dm, acc[1]);
}

/* DMIN: the block has a dmin right after d (else the min weights use d) */
#define TILEK(T, BT, DMIN)                                                                     \
    INLINE void tile_##T(int64_t n, const void *w, const uint8_t *a, size_t lda, const int NA, \
                         float *out, size_t lds) {                                             \
        const BT *x = w;                                                                       \
        const int64_t nb = n / QK_K;                                                           \
        __m512 acc[8][2];                                                                      \
        for (int c = 0; c < NA; c++)                                                           \
            acc[c][0] = acc[c][1] = _mm512_setzero_ps();                                       \
        for (int64_t b = 0; b < nb; b++) {                                                     \
            ukq u;                                                                             \
            unpack_##T(x + b, &u);                                                             \
            /* [d, dmin] (adjacent halves) or [d] (no reading past the block) */               \
            uint16_t dh[2] = {x[b].d, 0};                                                      \
            if (DMIN) memcpy(&dh[1], (const uint8_t *)&x[b].d + 2, 2);                         \
            uint32_t dbits;                                                                    \
            memcpy(&dbits, dh, 4);                                                             \
            const __m128 dv = _mm_cvtph_ps(_mm_cvtsi32_si128((int)dbits));                     \
            for (int c = 0; c < NA; c++) {                                                     \
                const int8_t *aq = (const int8_t *)(a + c * lda);                              \
                const float *ad = (const float *)(aq + n);                                     \
                const int16_t *bs = (const int16_t *)(ad + nb);                                \
                const __m128 sv = _mm_mul_ps(dv, _mm_set1_ps(ad[b]));                          \
                const __m512 dd = _mm512_broadcastss_ps(sv);                                   \
                const __m512 dm = DMIN ? _mm512_permutexvar_ps(_mm512_set1_epi32(1),           \
                                                               _mm512_castps128_ps512(sv))     \
                                       : dd;                                                   \
                kdot(&u, aq + QK_K * b, dd, dm, bs + 16 * b, acc[c]);                          \
            }                                                                                  \
        }                                                                                      \
        for (int c = 0; c < NA; c++)                                                           \
            out[c * lds] = _mm512_reduce_add_ps(_mm512_add_ps(acc[c][0], acc[c][1]));          \
    }

TILEK(q2_K, block_q2_K, 1)
TILEK(q3_K, block_q3_K, 0)
TILEK(q4_K, block_q4_K, 1)
TILEK(q5_K, block_q5_K, 1)
TILEK(q6_K, block_q6_K, 0)

/* vec_dot and gemm_tile from a one-row tile function */
#define QUANT_DRIVERS(T)                                                                       \
    void cpu_vec_dot_##T##_avx512(int64_t n, float *s, const void *w, const void *a) {         \
        tile_##T(n, w, a, 0, 1, s, 0);                                                         \
    }                                                                                          \
    void cpu_gemm_##T##_avx512(int64_t n, int nw, int na, float *s, size_t lds, const void *w, \
                               size_t ldw, const void *a, size_t lda) {                        \
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

QUANT_DRIVERS(q4_0)
QUANT_DRIVERS(q4_1)
QUANT_DRIVERS(q5_0)
QUANT_DRIVERS(q5_1)
QUANT_DRIVERS(q8_0)
QUANT_DRIVERS(q2_K)
QUANT_DRIVERS(q3_K)
QUANT_DRIVERS(q4_K)
QUANT_DRIVERS(q5_K)
QUANT_DRIVERS(q6_K)
