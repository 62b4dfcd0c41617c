/* AVX-512 (F/BW/VL/DQ + VNNI) kernels. Only called after cpuid reports these.
 *
 * Quantized weights are unpacked to unsigned bytes u and multiplied with the int8
 * activations by vpdpbusd (u8 x s8, 32-bit sums) or vpmaddubsw + vpdpwssd (when a
 * per-16/32 integer scale follows). Offsets (q - 8, q - 32, ...) and mins are applied
 * through the activation block sums, so no sign tricks are needed:
 *   32-blocks:  w = dw * u + cw      -> dw*da * (u . a) + cw * (da * sum a)
 *   K-quants:   w = d * sc * u - dmin * mn
 *                                     -> d*da * sum(sc * (u . a)) - dmin*da * sum(mn * bsum)
 * The float scales of a row (dw*da, ...) are computed first, 8 blocks at a time, into
 * small tables that the main loop reads with broadcast loads. A weight block is
 * unpacked once and reused for every activation row of a tile.
 *
 * The quantized kernels use 256-bit vectors: on this class of core vpmaddubsw,
 * vpdpbusd, vpdpwssd and variable shifts on zmm issue on port 0 only, and a 512-bit uop
 * in flight takes port 1's vector ALU away, so the unpack-heavy integer loops run
 * faster on ymm (ports 0, 1 and 5). AVX-512 still brings VNNI, embedded broadcasts,
 * masks, vpermw and vpternlog to them. Float weights and activation quantization use
 * zmm. */
#include <immintrin.h>
#include <stddef.h>
#include <string.h>

#include "cpu/kernels.h"

#define INLINE static inline __attribute__((always_inline))
#define ALIGN32 __attribute__((aligned(32)))

INLINE float h2f(uint16_t h) { return _cvtsh_ss(h); }

INLINE uint32_t ld32(const void *p) {
    uint32_t v;
    memcpy(&v, p, 4);
    return v;
}

#define R8(x) x, x, x, x, x, x, x, x
#define R16(x) R8(x), R8(x)

/* ------------------------------------------------------------------ tables */

/* vpermw indices (16 words): the scale word of sub-block k / of 16-sub-blocks 2k, 2k+1 */
static const uint16_t IDX_TWO[8][16] ALIGN32 = {
    {R8(0), R8(1)},   {R8(2), R8(3)},   {R8(4), R8(5)},   {R8(6), R8(7)},
    {R8(8), R8(9)},   {R8(10), R8(11)}, {R8(12), R8(13)}, {R8(14), R8(15)}};
static const uint16_t SH_04[16] ALIGN32 = {R8(0), R8(4)};

#define LD256(p) _mm256_load_si256((const __m256i *)(p))
#define LDU256(p) _mm256_loadu_si256((const __m256i *)(p))

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
        for (int i = 0; i < 16; i++) m = _mm512_max_ps(m, _mm512_and_ps(_mm512_loadu_ps(xb + 16 * i), absm));
        const float amax = _mm512_reduce_max_ps(m);
        const float id = amax > 0.0f ? 127.0f / amax : 0.0f;
        const __m512 vid = _mm512_set1_ps(id);
        __m512i sums = _mm512_setzero_si512();
        for (int i = 0; i < 16; i++) {
            const __m512i v = _mm512_cvtps_epi32(_mm512_mul_ps(_mm512_loadu_ps(xb + 16 * i), vid));
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

#define FLOAT_KERNELS(T)                                                                \
    void cpu_vec_dot_##T##_avx512(int64_t n, float *s, const void *w, const void *a) {  \
        const float *x = a;                                                             \
        __m512 acc0 = _mm512_setzero_ps(), acc1 = acc0, acc2 = acc0, acc3 = acc0;       \
        int64_t i = 0;                                                                  \
        for (; i + 64 <= n; i += 64) {                                                  \
            acc0 = _mm512_fmadd_ps(wload_##T(w, i), _mm512_loadu_ps(x + i), acc0);      \
            acc1 = _mm512_fmadd_ps(wload_##T(w, i + 16), _mm512_loadu_ps(x + i + 16), acc1); \
            acc2 = _mm512_fmadd_ps(wload_##T(w, i + 32), _mm512_loadu_ps(x + i + 32), acc2); \
            acc3 = _mm512_fmadd_ps(wload_##T(w, i + 48), _mm512_loadu_ps(x + i + 48), acc3); \
        }                                                                               \
        for (; i < n; i += 16) {                                                        \
            const __mmask16 m = n - i >= 16 ? (__mmask16)0xffff                         \
                                            : (__mmask16)((1u << (n - i)) - 1);         \
            acc0 = _mm512_fmadd_ps(wmload_##T(w, i, m), _mm512_maskz_loadu_ps(m, x + i), acc0); \
        }                                                                               \
        *s = _mm512_reduce_add_ps(                                                      \
            _mm512_add_ps(_mm512_add_ps(acc0, acc1), _mm512_add_ps(acc2, acc3)));       \
    }                                                                                   \
    /* NW weight rows x NA activation rows, one 16-wide step at a time */               \
    INLINE void ftile_##T(int64_t n, const char *w, size_t ldw, const char *a, size_t lda, \
                          const int NW, const int NA, float *s, size_t lds) {           \
        __m512 acc[4][4];                                                               \
        for (int r = 0; r < NW; r++)                                                    \
            for (int c = 0; c < NA; c++) acc[r][c] = _mm512_setzero_ps();               \
        int64_t i = 0;                                                                  \
        for (; i + 16 <= n; i += 16) {                                                  \
            __m512 wv[4];                                                               \
            for (int r = 0; r < NW; r++) wv[r] = wload_##T(w + r * ldw, i);             \
            for (int c = 0; c < NA; c++) {                                              \
                const __m512 xv = _mm512_loadu_ps((const float *)(a + c * lda) + i);    \
                for (int r = 0; r < NW; r++) acc[r][c] = _mm512_fmadd_ps(wv[r], xv, acc[r][c]); \
            }                                                                           \
        }                                                                               \
        if (i < n) {                                                                    \
            const __mmask16 m = (__mmask16)((1u << (n - i)) - 1);                       \
            __m512 wv[4];                                                               \
            for (int r = 0; r < NW; r++) wv[r] = wmload_##T(w + r * ldw, i, m);         \
            for (int c = 0; c < NA; c++) {                                              \
                const __m512 xv = _mm512_maskz_loadu_ps(m, (const float *)(a + c * lda) + i); \
                for (int r = 0; r < NW; r++) acc[r][c] = _mm512_fmadd_ps(wv[r], xv, acc[r][c]); \
            }                                                                           \
        }                                                                               \
        for (int r = 0; r < NW; r++)                                                    \
            for (int c = 0; c < NA; c++) s[c * lds + r] = _mm512_reduce_add_ps(acc[r][c]); \
    }                                                                                   \
    void cpu_gemm_##T##_avx512(int64_t n, int nw, int na, float *s, size_t lds,         \
                               const void *w, size_t ldw, const void *a, size_t lda) {  \
        const char *wb = w, *ab = a;                                                    \
        int c = 0;                                                                      \
        for (; c + 4 <= na; c += 4) {                                                   \
            int r = 0;                                                                  \
            for (; r + 4 <= nw; r += 4)                                                 \
                ftile_##T(n, wb + r * ldw, ldw, ab + c * lda, lda, 4, 4, s + c * lds + r, lds); \
            for (; r < nw; r++)                                                         \
                ftile_##T(n, wb + r * ldw, ldw, ab + c * lda, lda, 1, 4, s + c * lds + r, lds); \
        }                                                                               \
        for (; c < na; c++) {                                                           \
            int r = 0;                                                                  \
            for (; r + 4 <= nw; r += 4)                                                 \
                ftile_##T(n, wb + r * ldw, ldw, ab + c * lda, lda, 4, 1, s + c * lds + r, lds); \
            for (; r < nw; r++)                                                         \
                cpu_vec_dot_##T##_avx512(n, s + c * lds + r, wb + r * ldw, ab + c * lda); \
        }                                                                               \
    }

FLOAT_KERNELS(f32)
FLOAT_KERNELS(f16)
FLOAT_KERNELS(bf16)

/* ------------------------------------------------------- per-row scale tables */

/* n halves `stride` bytes apart -> floats */
INLINE void halves_to_float(const uint8_t *p, size_t stride, int n, float *out) {
    int i = 0;
    for (; i + 8 <= n; i += 8) {
        uint16_t t[8];
        for (int j = 0; j < 8; j++) memcpy(&t[j], p + (size_t)(i + j) * stride, 2);
        _mm256_storeu_ps(out + i, _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)t)));
    }
    for (; i < n; i++) {
        uint16_t h;
        memcpy(&h, p + (size_t)i * stride, 2);
        out[i] = h2f(h);
    }
}

INLINE __mmask8 tail8(int left) { return left >= 8 ? (__mmask8)0xff : (__mmask8)((1u << left) - 1); }

/* ------------------------------------------------------ 32-element blocks */

#define SEG 256 /* blocks per scale table */

/* Q4_0 / Q4_1: bytes 0..15 = low nibbles, bytes 16..31 = 16 * high nibbles (the
 * factor 16 is divided out of lanes 4..7 at the end; vpdpbusd does not saturate). */
INLINE __m256i nib_x16(const uint8_t *qs) {
    const __m256i t = _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)qs));
    return _mm256_and_si256(t, _mm256_setr_m128i(_mm_set1_epi8(0x0F), _mm_set1_epi8((char)0xF0)));
}
/* Q5_0 / Q5_1: plain nibbles plus 16 where the qh bit is set */
INLINE __m256i nib5(const uint8_t *qs, const uint8_t *qh) {
    const __m256i t = _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)qs));
    const __m256i q = _mm256_and_si256(_mm256_srlv_epi16(t, LD256(SH_04)), _mm256_set1_epi8(15));
    return _mm256_mask_add_epi8(q, (__mmask32)ld32(qh), q, _mm256_set1_epi8(16));
}
INLINE __m256i u_q4_0(const block_q4_0 *x) { return nib_x16(x->qs); }
INLINE __m256i u_q4_1(const block_q4_1 *x) { return nib_x16(x->qs); }
INLINE __m256i u_q5_0(const block_q5_0 *x) { return nib5(x->qs, x->qh); }
INLINE __m256i u_q5_1(const block_q5_1 *x) { return nib5(x->qs, x->qh); }
/* Q8_0: u = q + 128 */
INLINE __m256i u_q8_0(const block_q8_0 *x) {
    return _mm256_xor_si256(LDU256(x->qs), _mm256_set1_epi8((char)0x80));
}

/* T: type, BT: block, CWK: offset factor (w = dw * (u + CWK)) when M_OFF < 0, else the
 * half at byte M_OFF is added (w = dw * u + m); X16: lanes 4..7 carry a factor 16. */
#define TILE32(T, BT, CWK, M_OFF, X16)                                                  \
    INLINE void tile_##T(int64_t n, const void *w, const uint8_t *a, size_t lda,        \
                         const int NA, float *out, size_t lds) {                        \
        const BT *x = w;                                                                \
        const int64_t nb = n / 32;                                                      \
        const int NACC = NA == 1 ? 4 : 2;                                               \
        __m256 acc[4][4], cacc[4];                                                      \
        for (int c = 0; c < NA; c++) {                                                  \
            for (int j = 0; j < NACC; j++) acc[c][j] = _mm256_setzero_ps();             \
            cacc[c] = _mm256_setzero_ps();                                              \
        }                                                                               \
        float S[4][SEG] ALIGN32, dw[SEG] ALIGN32, mw[SEG] ALIGN32;                      \
        for (int64_t s0 = 0; s0 < nb; s0 += SEG) {                                      \
            const int ns = nb - s0 < SEG ? (int)(nb - s0) : SEG;                        \
            halves_to_float((const uint8_t *)(x + s0), sizeof(BT), ns, dw);             \
            if (M_OFF >= 0) halves_to_float((const uint8_t *)(x + s0) + M_OFF, sizeof(BT), ns, mw); \
            for (int c = 0; c < NA; c++) {                                              \
                const float *ad = (const float *)(a + c * lda + n) + s0;                \
                const float *ds = ad + nb;                                              \
                for (int b = 0; b < ns; b += 8) {                                       \
                    const __mmask8 m = tail8(ns - b);                                   \
                    const __m256 d = _mm256_maskz_loadu_ps(m, dw + b);                  \
                    _mm256_store_ps(S[c] + b, _mm256_mul_ps(d, _mm256_maskz_loadu_ps(m, ad + b))); \
                    cacc[c] = _mm256_fmadd_ps(M_OFF >= 0 ? _mm256_maskz_loadu_ps(m, mw + b) : d, \
                                              _mm256_maskz_loadu_ps(m, ds + b), cacc[c]); \
                }                                                                       \
            }                                                                           \
            int b = 0;                                                                  \
            for (; b + 4 <= ns; b += 4) {                                               \
                _Pragma("GCC unroll 4") for (int j = 0; j < 4; j++) {                   \
                    const __m256i q = u_##T(x + s0 + b + j);                            \
                    for (int c = 0; c < NA; c++) {                                      \
                        const __m256i p = _mm256_dpbusd_epi32(                          \
                            _mm256_setzero_si256(), q, LDU256(a + c * lda + 32 * (s0 + b + j))); \
                        acc[c][j % NACC] = _mm256_fmadd_ps(                             \
                            _mm256_cvtepi32_ps(p), _mm256_set1_ps(S[c][b + j]), acc[c][j % NACC]); \
                    }                                                                   \
                }                                                                       \
            }                                                                           \
            for (; b < ns; b++) {                                                       \
                const __m256i q = u_##T(x + s0 + b);                                    \
                for (int c = 0; c < NA; c++) {                                          \
                    const __m256i p = _mm256_dpbusd_epi32(_mm256_setzero_si256(), q,    \
                                                          LDU256(a + c * lda + 32 * (s0 + b))); \
                    acc[c][0] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(p), _mm256_set1_ps(S[c][b]), \
                                                acc[c][0]);                             \
                }                                                                       \
            }                                                                           \
        }                                                                               \
        for (int c = 0; c < NA; c++) {                                                  \
            __m256 t = acc[c][0];                                                       \
            for (int j = 1; j < NACC; j++) t = _mm256_add_ps(t, acc[c][j]);             \
            if (X16) t = _mm256_mul_ps(t, _mm256_setr_ps(1, 1, 1, 1, 0.0625f, 0.0625f,  \
                                                         0.0625f, 0.0625f));           \
            const __m256 corr = M_OFF >= 0 ? cacc[c] : _mm256_mul_ps(cacc[c], _mm256_set1_ps(CWK)); \
            out[c * lds] = hsum256(_mm256_add_ps(t, corr));                             \
        }                                                                               \
    }

INLINE float hsum256(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

TILE32(q4_0, block_q4_0, -8.0f, -1, 1)
TILE32(q4_1, block_q4_1, 0.0f, 2, 1)
TILE32(q5_0, block_q5_0, -16.0f, -1, 0)
TILE32(q5_1, block_q5_1, 0.0f, 2, 0)
TILE32(q8_0, block_q8_0, -128.0f, -1, 0)

/* ---------------------------------------------------------------- K-quants */

/* One 256-block unpacked: q[k] = u8 of elements 32k..32k+31, sc[k] = the int16 scale
 * of each vpmaddubsw lane, mw = per-16 min weights (against the bsums). */
typedef struct {
    __m256i q[8];
    __m256i sc[8];
    __m256i mw;
} ukq;

/* 16 scale words of the 16-element sub-blocks */
INLINE void scales16(ukq *u, __m256i scw) {
    for (int k = 0; k < 8; k++) u->sc[k] = _mm256_permutexvar_epi16(LD256(IDX_TWO[k]), scw);
}
INLINE __m256i srli16(__m256i v, int s) { return _mm256_srli_epi16(v, s); }

INLINE void unpack_q2_K(const block_q2_K *x, ukq *u) {
    const __m128i s8 = _mm_loadu_si128((const __m128i *)x->scales);
    const __m128i m4 = _mm_set1_epi8(15);
    scales16(u, _mm256_cvtepu8_epi16(_mm_and_si128(s8, m4)));
    u->mw = _mm256_cvtepu8_epi16(_mm_and_si128(_mm_srli_epi16(s8, 4), m4));
    const __m256i m3 = _mm256_set1_epi8(3);
    for (int h = 0; h < 2; h++) {
        const __m256i v = LDU256(x->qs + 32 * h);
        u->q[4 * h] = _mm256_and_si256(v, m3);
        u->q[4 * h + 1] = _mm256_and_si256(srli16(v, 2), m3);
        u->q[4 * h + 2] = _mm256_and_si256(srli16(v, 4), m3);
        u->q[4 * h + 3] = _mm256_and_si256(srli16(v, 6), m3);
    }
}

INLINE void unpack_q3_K(const block_q3_K *x, ukq *u) {
    const uint32_t a0 = ld32(x->scales), a1 = ld32(x->scales + 4), t = ld32(x->scales + 8);
    const uint32_t s0 = (a0 & 0x0f0f0f0f) | ((t & 0x03030303) << 4);
    const uint32_t s1 = (a1 & 0x0f0f0f0f) | (((t >> 2) & 0x03030303) << 4);
    const uint32_t s2 = ((a0 >> 4) & 0x0f0f0f0f) | (((t >> 4) & 0x03030303) << 4);
    const uint32_t s3 = ((a1 >> 4) & 0x0f0f0f0f) | (((t >> 6) & 0x03030303) << 4);
    const __m256i scw = _mm256_sub_epi16(
        _mm256_cvtepu8_epi16(_mm_set_epi32((int)s3, (int)s2, (int)s1, (int)s0)),
        _mm256_set1_epi16(32));
    scales16(u, scw);
    u->mw = _mm256_slli_epi16(scw, 2); /* q = u - 4 */
    const __m256i m3 = _mm256_set1_epi8(3), four = _mm256_set1_epi8(4);
    const __m256i hm = LDU256(x->hmask);
    for (int h = 0; h < 2; h++) {
        const __m256i v = LDU256(x->qs + 32 * h);
        const __m256i q[4] = {_mm256_and_si256(v, m3), _mm256_and_si256(srli16(v, 2), m3),
                              _mm256_and_si256(srli16(v, 4), m3), _mm256_and_si256(srli16(v, 6), m3)};
        for (int g = 0; g < 4; g++) {
            const int k = 4 * h + g; /* high bit: bit k of hmask[l] */
            const __mmask32 hb = _mm256_test_epi8_mask(hm, _mm256_set1_epi8((char)(1u << k)));
            u->q[k] = _mm256_mask_add_epi8(q[g], hb, q[g], four);
        }
    }
}

/* Q4_K / Q5_K: the 6-bit scales and mins of the 8 sub-blocks, unpacked with dword
 * shifts from s = [s0, s1, s2] (12 bytes):
 *   sc0..3 = s0 & 63, mn0..3 = s1 & 63,
 *   sc4..7 = (s2 & 15) | (s0 >> 6) << 4, mn4..7 = (s2 >> 4) | (s1 >> 6) << 4.
 * Written to memory before the main loop (which broadcasts them from there, keeping
 * port 5 free): scd[k] = sc_k | sc_k << 16, mw = [mn0, mn0, mn1, mn1, ..]. */
INLINE void k4_prep(const uint8_t *scales, int32_t *scd, __m256i *mw) {
    /* 16 bytes: the 12 scale bytes and 4 bytes of what follows in the block */
    const __m128i s = _mm_loadu_si128((const __m128i *)scales);
    const __m128i A = _mm_srlv_epi32(_mm_shuffle_epi32(s, _MM_SHUFFLE(2, 1, 2, 0)),
                                     _mm_setr_epi32(0, 0, 0, 4)); /* s0, s2, s1, s2 >> 4 */
    const __m128i B = _mm_srli_epi32(_mm_shuffle_epi32(s, _MM_SHUFFLE(1, 1, 0, 0)), 2);
    const __m128i T = _mm_and_si128(B, _mm_setr_epi32(0, 0x30303030, 0, 0x30303030));
    const __m128i bytes = _mm_ternarylogic_epi32(
        A, _mm_setr_epi32(0x3f3f3f3f, 0x0f0f0f0f, 0x3f3f3f3f, 0x0f0f0f0f), T, 0xEA);
    const __m256i w16 = _mm256_cvtepu8_epi16(bytes); /* [sc0..7 | mn0..7] */
    const __m256i lo = _mm256_unpacklo_epi16(w16, w16), hi = _mm256_unpackhi_epi16(w16, w16);
    _mm256_store_si256((__m256i *)scd, _mm256_permute2x128_si256(lo, hi, 0x20));
    *mw = _mm256_permute2x128_si256(lo, hi, 0x31);
}

INLINE void unpack_q4_K(const block_q4_K *x, ukq *u) { /* scales: k4_prep */
    const __m256i m4 = _mm256_set1_epi8(15);
    for (int j = 0; j < 4; j++) {
        const __m256i v = LDU256(x->qs + 32 * j);
        u->q[2 * j] = _mm256_and_si256(v, m4);
        u->q[2 * j + 1] = _mm256_and_si256(srli16(v, 4), m4);
    }
}

INLINE void unpack_q5_K(const block_q5_K *x, ukq *u) { /* scales: k4_prep */
    const __m256i m4 = _mm256_set1_epi8(15), sixteen = _mm256_set1_epi8(16);
    const __m256i hb = LDU256(x->qh);
    for (int j = 0; j < 4; j++) {
        const __m256i v = LDU256(x->qs + 32 * j);
        const __m256i lo = _mm256_and_si256(v, m4), hi = _mm256_and_si256(srli16(v, 4), m4);
        /* sub-block k: bit k of qh[l] */
        const __mmask32 b0 = _mm256_test_epi8_mask(hb, _mm256_set1_epi8((char)(1u << (2 * j))));
        const __mmask32 b1 = _mm256_test_epi8_mask(hb, _mm256_set1_epi8((char)(1u << (2 * j + 1))));
        u->q[2 * j] = _mm256_mask_add_epi8(lo, b0, lo, sixteen);
        u->q[2 * j + 1] = _mm256_mask_add_epi8(hi, b1, hi, sixteen);
    }
}

INLINE void unpack_q6_K(const block_q6_K *x, ukq *u) {
    const __m256i scw = _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)x->scales));
    scales16(u, scw);
    u->mw = _mm256_slli_epi16(scw, 5); /* q = u - 32 */
    const __m256i m4 = _mm256_set1_epi8(15), m30 = _mm256_set1_epi8(0x30);
    for (int h = 0; h < 2; h++) {
        const __m256i l0 = LDU256(x->ql + 64 * h), l1 = LDU256(x->ql + 64 * h + 32);
        const __m256i qh = LDU256(x->qh + 32 * h);
        /* element 32g + l: low 4 bits from l0/l1 (g & 1), nibble g >> 1; top 2 bits from
         * bits 2g of qh, moved to bits 4..5 */
        const __m256i t0 = _mm256_and_si256(_mm256_slli_epi16(qh, 4), m30);
        const __m256i t1 = _mm256_and_si256(_mm256_slli_epi16(qh, 2), m30);
        const __m256i t2 = _mm256_and_si256(qh, m30);
        const __m256i t3 = _mm256_and_si256(srli16(qh, 2), m30);
        /* (a & 15) | t */
        u->q[4 * h + 0] = _mm256_ternarylogic_epi32(l0, m4, t0, 0xEA);
        u->q[4 * h + 1] = _mm256_ternarylogic_epi32(l1, m4, t1, 0xEA);
        u->q[4 * h + 2] = _mm256_ternarylogic_epi32(srli16(l0, 4), m4, t2, 0xEA);
        u->q[4 * h + 3] = _mm256_ternarylogic_epi32(srli16(l1, 4), m4, t3, 0xEA);
    }
}

/* acc[0] += dd * sum(sc * (u . a)); acc[1] -= dm * sum(mw * bsums).
 * scd: per-32 scales to broadcast (Q4_K, Q5_K), else NULL and u->sc holds them. */
INLINE void kdot(const ukq *u, const int32_t *scd, __m256i mw, const int8_t *aq, float dd,
                 float dm, const int16_t *bs, __m256 *acc) {
    __m256i i0 = _mm256_setzero_si256(), i1 = _mm256_setzero_si256();
    for (int k = 0; k < 8; k += 2) {
        const __m256i s0 = scd ? _mm256_set1_epi32(scd[k]) : u->sc[k];
        const __m256i s1 = scd ? _mm256_set1_epi32(scd[k + 1]) : u->sc[k + 1];
        i0 = _mm256_dpwssd_epi32(i0, _mm256_maddubs_epi16(u->q[k], LDU256(aq + 32 * k)), s0);
        i1 = _mm256_dpwssd_epi32(i1, _mm256_maddubs_epi16(u->q[k + 1], LDU256(aq + 32 * k + 32)), s1);
    }
    const __m256i ms = _mm256_madd_epi16(LDU256(bs), mw);
    acc[0] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(_mm256_add_epi32(i0, i1)), _mm256_set1_ps(dd),
                             acc[0]);
    acc[1] = _mm256_fnmadd_ps(_mm256_cvtepi32_ps(ms), _mm256_set1_ps(dm), acc[1]);
}

#define KSEG 32 /* superblocks per prepass */

/* DMIN: byte offset of the block's dmin (0: none, the min weights use d);
 * K4: Q4_K / Q5_K scales (prepass k4_prep) */
#define TILEK(T, BT, DMIN, K4)                                                          \
    INLINE void tile_##T(int64_t n, const void *w, const uint8_t *a, size_t lda,        \
                         const int NA, float *out, size_t lds) {                        \
        const BT *x = w;                                                                \
        const int64_t nb = n / QK_K;                                                    \
        __m256 acc[4][2];                                                               \
        for (int c = 0; c < NA; c++) acc[c][0] = acc[c][1] = _mm256_setzero_ps();       \
        float dd[4][KSEG], dm[4][KSEG];                                                 \
        int32_t scd[K4 ? KSEG : 1][8] ALIGN32;                                          \
        __m256i mwv[K4 ? KSEG : 1];                                                     \
        for (int64_t s0 = 0; s0 < nb; s0 += KSEG) {                                     \
            const int ns = nb - s0 < KSEG ? (int)(nb - s0) : KSEG;                      \
            for (int b = 0; b < ns; b++) {                                              \
                const BT *xb = x + s0 + b;                                              \
                const float d = h2f(xb->d);                                             \
                uint16_t hm;                                                            \
                memcpy(&hm, (const uint8_t *)xb + DMIN, 2);                             \
                const float dmn = DMIN ? h2f(hm) : d;                                   \
                for (int c = 0; c < NA; c++) {                                          \
                    const float ad = ((const float *)(a + c * lda + n))[s0 + b];        \
                    dd[c][b] = d * ad;                                                  \
                    dm[c][b] = dmn * ad;                                                \
                }                                                                       \
                if (K4) k4_prep((const uint8_t *)xb->scales, scd[K4 ? b : 0], &mwv[K4 ? b : 0]);         \
            }                                                                           \
            for (int b = 0; b < ns; b++) {                                              \
                ukq u;                                                                  \
                unpack_##T(x + s0 + b, &u);                                             \
                for (int c = 0; c < NA; c++) {                                          \
                    const int8_t *aq = (const int8_t *)(a + c * lda);                   \
                    const int16_t *bs = (const int16_t *)((const float *)(aq + n) + nb); \
                    kdot(&u, K4 ? scd[K4 ? b : 0] : NULL, K4 ? mwv[K4 ? b : 0] : u.mw,  \
                         aq + QK_K * (s0 + b), dd[c][b], dm[c][b], bs + 16 * (s0 + b), acc[c]); \
                }                                                                       \
            }                                                                           \
        }                                                                               \
        for (int c = 0; c < NA; c++) out[c * lds] = hsum256(_mm256_add_ps(acc[c][0], acc[c][1])); \
    }

TILEK(q2_K, block_q2_K, offsetof(block_q2_K, dmin), 0)
TILEK(q3_K, block_q3_K, 0, 0)
TILEK(q4_K, block_q4_K, offsetof(block_q4_K, dmin), 1)
TILEK(q5_K, block_q5_K, offsetof(block_q5_K, dmin), 1)
TILEK(q6_K, block_q6_K, 0, 0)

/* vec_dot and gemm_tile from a one-row tile function */
#define QUANT_DRIVERS(T)                                                                \
    void cpu_vec_dot_##T##_avx512(int64_t n, float *s, const void *w, const void *a) {  \
        tile_##T(n, w, a, 0, 1, s, 0);                                                  \
    }                                                                                   \
    void cpu_gemm_##T##_avx512(int64_t n, int nw, int na, float *s, size_t lds,         \
                               const void *w, size_t ldw, const void *a, size_t lda) {  \
        const uint8_t *wb = w, *ab = a;                                                 \
        int c = 0;                                                                      \
        for (; c + 4 <= na; c += 4)                                                     \
            for (int r = 0; r < nw; r++)                                                \
                tile_##T(n, wb + r * ldw, ab + c * lda, lda, 4, s + c * lds + r, lds);  \
        for (int r = 0; r < nw && c < na; r++) {                                        \
            const uint8_t *wr = wb + r * ldw, *ac = ab + c * lda;                       \
            float *o = s + c * lds + r;                                                 \
            switch (na - c) {                                                           \
            case 3: tile_##T(n, wr, ac, lda, 3, o, lds); break;                         \
            case 2: tile_##T(n, wr, ac, lda, 2, o, lds); break;                         \
            default: tile_##T(n, wr, ac, lda, 1, o, lds); break;                        \
            }                                                                           \
        }                                                                               \
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
