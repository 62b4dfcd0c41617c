/* AVX2 + FMA + F16C kernels. Only called after cpuid reports these.
 *
 * Same scheme as the AVX-512 kernels (see kernels_avx512.c) with 256-bit vectors and
 * vpmaddubsw + vpmaddwd for the integer dot products: weights are unpacked to unsigned
 * bytes, offsets and mins go through the activation block sums. Q8_0 weights are
 * signed and use the abs / sign trick instead. */
#include <immintrin.h>
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

INLINE __m256i ldu(const void *p) {
    return _mm256_loadu_si256((const __m256i *)p);
}

INLINE float hsum_ps(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}
INLINE int hsum_epi32(__m256i v) {
    __m128i s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0x4e));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0xb1));
    return _mm_cvtsi128_si32(s);
}
INLINE float hmax_ps(__m256 v) {
    __m128 s = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_max_ps(s, _mm_movehl_ps(s, s));
    s = _mm_max_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

/* ------------------------------------------------------------ activations */

/* 4 x 8 int32 -> 32 int8 in order (values already in -127..127) */
INLINE __m256i pack32(__m256i i0, __m256i i1, __m256i i2, __m256i i3) {
    const __m256i a = _mm256_packs_epi32(i0, i1), b = _mm256_packs_epi32(i2, i3);
    const __m256i c = _mm256_packs_epi16(a, b);
    return _mm256_permutevar8x32_epi32(c, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
}

void cpu_quantize_q8_32_avx2(const float *x, void *a, int64_t n) {
    int8_t *q = a;
    const int64_t nb = n / 32;
    float *d = (float *)(q + n), *ds = d + nb;
    const __m256 absm = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fffffff));
    for (int64_t b = 0; b < nb; b++) {
        __m256 v[4];
        __m256 m = _mm256_setzero_ps();
        for (int i = 0; i < 4; i++) {
            v[i] = _mm256_loadu_ps(x + 32 * b + 8 * i);
            m = _mm256_max_ps(m, _mm256_and_ps(v[i], absm));
        }
        const float amax = hmax_ps(m);
        const __m256 vid = _mm256_set1_ps(amax > 0.0f ? 127.0f / amax : 0.0f);
        __m256i iv[4];
        for (int i = 0; i < 4; i++)
            iv[i] = _mm256_cvtps_epi32(_mm256_mul_ps(v[i], vid));
        _mm256_storeu_si256((__m256i *)(q + 32 * b), pack32(iv[0], iv[1], iv[2], iv[3]));
        const int sum = hsum_epi32(
            _mm256_add_epi32(_mm256_add_epi32(iv[0], iv[1]), _mm256_add_epi32(iv[2], iv[3])));
        d[b] = amax / 127.0f;
        ds[b] = d[b] * (float)sum;
    }
}

void cpu_quantize_q8_256_avx2(const float *x, void *a, int64_t n) {
    int8_t *q = a;
    const int64_t nb = n / QK_K;
    float *d = (float *)(q + n);
    int16_t *bs = (int16_t *)(d + nb);
    const __m256 absm = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fffffff));
    for (int64_t b = 0; b < nb; b++) {
        const float *xb = x + QK_K * b;
        __m256 m = _mm256_setzero_ps();
        for (int i = 0; i < 32; i++)
            m = _mm256_max_ps(m, _mm256_and_ps(_mm256_loadu_ps(xb + 8 * i), absm));
        const float amax = hmax_ps(m);
        const __m256 vid = _mm256_set1_ps(amax > 0.0f ? 127.0f / amax : 0.0f);
        for (int j = 0; j < 8; j++) { /* 32 elements = two bsums */
            __m256i iv[4];
            for (int i = 0; i < 4; i++)
                iv[i] = _mm256_cvtps_epi32(
                    _mm256_mul_ps(_mm256_loadu_ps(xb + 32 * j + 8 * i), vid));
            _mm256_storeu_si256((__m256i *)(q + QK_K * b + 32 * j),
                                pack32(iv[0], iv[1], iv[2], iv[3]));
            bs[16 * b + 2 * j] = (int16_t)hsum_epi32(_mm256_add_epi32(iv[0], iv[1]));
            bs[16 * b + 2 * j + 1] = (int16_t)hsum_epi32(_mm256_add_epi32(iv[2], iv[3]));
        }
        d[b] = amax / 127.0f;
    }
}

/* ------------------------------------------------------------ float weights */

INLINE __m256 wload_f32(const void *w, int64_t i) {
    return _mm256_loadu_ps((const float *)w + i);
}
INLINE __m256 wload_f16(const void *w, int64_t i) {
    return _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)((const uint16_t *)w + i)));
}
INLINE __m256 wload_bf16(const void *w, int64_t i) {
    const __m128i h = _mm_loadu_si128((const __m128i *)((const uint16_t *)w + i));
    return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
}
INLINE float wscalar_f32(const void *w, int64_t i) {
    return ((const float *)w)[i];
}
INLINE float wscalar_f16(const void *w, int64_t i) {
    return h2f(((const uint16_t *)w)[i]);
}
INLINE float wscalar_bf16(const void *w, int64_t i) {
    return chord_bf16_to_float(((const uint16_t *)w)[i]);
}

#define FLOAT_KERNELS(T)                                                                       \
    void cpu_vec_dot_##T##_avx2(int64_t n, float *s, const void *w, const void *a) {           \
        const float *x = a;                                                                    \
        __m256 acc0 = _mm256_setzero_ps(), acc1 = acc0, acc2 = acc0, acc3 = acc0;              \
        int64_t i = 0;                                                                         \
        for (; i + 32 <= n; i += 32) {                                                         \
            acc0 = _mm256_fmadd_ps(wload_##T(w, i), _mm256_loadu_ps(x + i), acc0);             \
            acc1 = _mm256_fmadd_ps(wload_##T(w, i + 8), _mm256_loadu_ps(x + i + 8), acc1);     \
            acc2 = _mm256_fmadd_ps(wload_##T(w, i + 16), _mm256_loadu_ps(x + i + 16), acc2);   \
            acc3 = _mm256_fmadd_ps(wload_##T(w, i + 24), _mm256_loadu_ps(x + i + 24), acc3);   \
        }                                                                                      \
        for (; i + 8 <= n; i += 8)                                                             \
            acc0 = _mm256_fmadd_ps(wload_##T(w, i), _mm256_loadu_ps(x + i), acc0);             \
        float t = 0.0f;                                                                        \
        for (; i < n; i++)                                                                     \
            t += wscalar_##T(w, i) * x[i];                                                     \
        *s = hsum_ps(_mm256_add_ps(_mm256_add_ps(acc0, acc1), _mm256_add_ps(acc2, acc3))) + t; \
    }                                                                                          \
    INLINE void ftile_##T(int64_t n, const char *w, size_t ldw, const char *a, size_t lda,     \
                          const int NW, const int NA, float *s, size_t lds) {                  \
        __m256 acc[3][4];                                                                      \
        for (int r = 0; r < NW; r++)                                                           \
            for (int c = 0; c < NA; c++)                                                       \
                acc[r][c] = _mm256_setzero_ps();                                               \
        int64_t i = 0;                                                                         \
        for (; i + 8 <= n; i += 8) {                                                           \
            __m256 wv[3];                                                                      \
            for (int r = 0; r < NW; r++)                                                       \
                wv[r] = wload_##T(w + r * ldw, i);                                             \
            for (int c = 0; c < NA; c++) {                                                     \
                const __m256 xv = _mm256_loadu_ps((const float *)(a + c * lda) + i);           \
                for (int r = 0; r < NW; r++)                                                   \
                    acc[r][c] = _mm256_fmadd_ps(wv[r], xv, acc[r][c]);                         \
            }                                                                                  \
        }                                                                                      \
        for (int r = 0; r < NW; r++)                                                           \
            for (int c = 0; c < NA; c++) {                                                     \
                float t = 0.0f;                                                                \
                for (int64_t j = i; j < n; j++)                                                \
                    t += wscalar_##T(w + r * ldw, j) * ((const float *)(a + c * lda))[j];      \
                s[c * lds + r] = hsum_ps(acc[r][c]) + t;                                       \
            }                                                                                  \
    }                                                                                          \
    void cpu_gemm_##T##_avx2(int64_t n, int nw, int na, float *s, size_t lds, const void *w,   \
                             size_t ldw, const void *a, size_t lda) {                          \
        const char *wb = w, *ab = a;                                                           \
        int c = 0;                                                                             \
        for (; c + 4 <= na; c += 4) {                                                          \
            int r = 0;                                                                         \
            for (; r + 3 <= nw; r += 3)                                                        \
                ftile_##T(n, wb + r * ldw, ldw, ab + c * lda, lda, 3, 4, s + c * lds + r,      \
                          lds);                                                                \
            for (; r < nw; r++)                                                                \
                ftile_##T(n, wb + r * ldw, ldw, ab + c * lda, lda, 1, 4, s + c * lds + r,      \
                          lds);                                                                \
        }                                                                                      \
        for (; c < na; c++)                                                                    \
            for (int r = 0; r < nw; r++)                                                       \
                cpu_vec_dot_##T##_avx2(n, s + c * lds + r, wb + r * ldw, ab + c * lda);        \
    }

FLOAT_KERNELS(f32)
FLOAT_KERNELS(f16)
FLOAT_KERNELS(bf16)

/* ------------------------------------------------------ 32-element blocks */

typedef struct {
    __m256i q; /* u8, or s8 for Q8_0 */
    float dw, cw;
} u1b;

INLINE __m256i nib_one(const uint8_t *qs) {
    const __m128i x = _mm_loadu_si128((const __m128i *)qs);
    const __m256i t =
        _mm256_inserti128_si256(_mm256_castsi128_si256(x), _mm_srli_epi16(x, 4), 1);
    return _mm256_and_si256(t, _mm256_set1_epi8(15));
}
/* byte i = 16 if bit i of the 32-bit qh is set */
INLINE __m256i hbit16(const uint8_t *qh) {
    const __m256i v =
        _mm256_shuffle_epi8(_mm256_set1_epi32((int)ld32(qh)),
                            _mm256_setr_epi64x(0x0000000000000000, 0x0101010101010101,
                                               0x0202020202020202, 0x0303030303030303));
    const __m256i bit = _mm256_set1_epi64x((int64_t)0x8040201008040201ull);
    return _mm256_and_si256(_mm256_cmpeq_epi8(_mm256_and_si256(v, bit), bit),
                            _mm256_set1_epi8(16));
}

INLINE void unpack1_q4_0(const block_q4_0 *x, u1b *u) {
    u->q = nib_one(x->qs);
    u->dw = h2f(x->d);
    u->cw = -8.0f * u->dw;
}
INLINE void unpack1_q4_1(const block_q4_1 *x, u1b *u) {
    u->q = nib_one(x->qs);
    u->dw = h2f(x->d);
    u->cw = h2f(x->m);
}
INLINE void unpack1_q5_0(const block_q5_0 *x, u1b *u) {
    u->q = _mm256_or_si256(nib_one(x->qs), hbit16(x->qh));
    u->dw = h2f(x->d);
    u->cw = -16.0f * u->dw;
}
INLINE void unpack1_q5_1(const block_q5_1 *x, u1b *u) {
    u->q = _mm256_or_si256(nib_one(x->qs), hbit16(x->qh));
    u->dw = h2f(x->d);
    u->cw = h2f(x->m);
}
INLINE void unpack1_q8_0(const block_q8_0 *x, u1b *u) {
    u->q = ldu(x->qs);
    u->dw = h2f(x->d);
    u->cw = 0.0f;
}

/* 8 int32 partial sums of u . a */
INLINE __m256i idot_u(__m256i q, __m256i a) {
    return _mm256_madd_epi16(_mm256_maddubs_epi16(q, a), _mm256_set1_epi16(1));
}
INLINE __m256i idot_s(__m256i q, __m256i a) {
    return _mm256_madd_epi16(
        _mm256_maddubs_epi16(_mm256_sign_epi8(q, q), _mm256_sign_epi8(a, q)),
        _mm256_set1_epi16(1));
}
#define IDOT_q4_0 idot_u
#define IDOT_q4_1 idot_u
#define IDOT_q5_0 idot_u
#define IDOT_q5_1 idot_u
#define IDOT_q8_0 idot_s

/* 8 halves `stride` bytes apart -> floats (packed with scalar ops first) */
INLINE __m256 gather_h8(const uint8_t *p, size_t stride) {
    uint64_t w[2];
    for (int j = 0; j < 2; j++) {
        uint64_t v = 0;
        for (int i = 0; i < 4; i++) {
            uint16_t h;
            memcpy(&h, p + (size_t)(4 * j + i) * stride, 2);
            v |= (uint64_t)h << (16 * i);
        }
        w[j] = v;
    }
    return _mm256_cvtph_ps(
        _mm_insert_epi64(_mm_cvtsi64_si128((long long)w[0]), (long long)w[1], 1));
}

/* Blocks go 8 at a time: their scales dw * da as one vector (vpermps hands each block
 * its lane), offsets cw * ds accumulated as vectors. CWK: w = dw * (u + CWK) when
 * M_OFF < 0, else the half at byte M_OFF is the offset (w = dw * u + m). */
#define TILE32(T, BT, CWK, M_OFF)                                                              \
    INLINE void tile_##T(int64_t n, const void *w, const uint8_t *a, size_t lda, const int NA, \
                         float *out, size_t lds) {                                             \
        const BT *x = w;                                                                       \
        const int64_t nb = n / 32;                                                             \
        const int NACC = NA == 1 ? 4 : (NA == 2 ? 2 : 1);                                      \
        __m256 acc[4][4], cacc[4];                                                             \
        float corr[4];                                                                         \
        for (int c = 0; c < NA; c++) {                                                         \
            for (int j = 0; j < NACC; j++)                                                     \
                acc[c][j] = _mm256_setzero_ps();                                               \
            cacc[c] = _mm256_setzero_ps();                                                     \
            corr[c] = 0.0f;                                                                    \
        }                                                                                      \
        int64_t b = 0;                                                                         \
        for (; b + 8 <= nb; b += 8) {                                                          \
            const __m256 dw = gather_h8((const uint8_t *)(x + b), sizeof(BT));                 \
            const __m256 cw =                                                                  \
                M_OFF >= 0 ? gather_h8((const uint8_t *)(x + b) + M_OFF, sizeof(BT)) : dw;     \
            __m256 S[4];                                                                       \
            for (int c = 0; c < NA; c++) {                                                     \
                const float *ad = (const float *)(a + c * lda + n);                            \
                S[c] = _mm256_mul_ps(dw, _mm256_loadu_ps(ad + b));                             \
                cacc[c] = _mm256_fmadd_ps(cw, _mm256_loadu_ps(ad + nb + b), cacc[c]);          \
            }                                                                                  \
            for (int j = 0; j < 8; j++) {                                                      \
                u1b u;                                                                         \
                unpack1_##T(x + b + j, &u);                                                    \
                const __m256i idx = _mm256_set1_epi32(j);                                      \
                for (int c = 0; c < NA; c++) {                                                 \
                    const int8_t *aq = (const int8_t *)(a + c * lda);                          \
                    const __m256i p = IDOT_##T(u.q, ldu(aq + 32 * (b + j)));                   \
                    acc[c][j % NACC] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(p),                  \
                                                       _mm256_permutevar8x32_ps(S[c], idx),    \
                                                       acc[c][j % NACC]);                      \
                }                                                                              \
            }                                                                                  \
        }                                                                                      \
        for (; b < nb; b++) {                                                                  \
            u1b u;                                                                             \
            unpack1_##T(x + b, &u);                                                            \
            for (int c = 0; c < NA; c++) {                                                     \
                const int8_t *aq = (const int8_t *)(a + c * lda);                              \
                const float *ad = (const float *)(aq + n);                                     \
                const __m256i p = IDOT_##T(u.q, ldu(aq + 32 * b));                             \
                acc[c][0] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(p),                             \
                                            _mm256_set1_ps(u.dw * ad[b]), acc[c][0]);          \
                corr[c] += u.cw * ad[nb + b];                                                  \
            }                                                                                  \
        }                                                                                      \
        for (int c = 0; c < NA; c++) {                                                         \
            __m256 t = acc[c][0];                                                              \
            for (int j = 1; j < NACC; j++)                                                     \
                t = _mm256_add_ps(t, acc[c][j]);                                               \
            const __m256 cv =                                                                  \
                M_OFF >= 0 ? cacc[c] : _mm256_mul_ps(cacc[c], _mm256_set1_ps(CWK));            \
            out[c * lds] = hsum_ps(_mm256_add_ps(t, cv)) + corr[c];                            \
        }                                                                                      \
    }

TILE32(q4_0, block_q4_0, -8.0f, -1)
TILE32(q4_1, block_q4_1, 0.0f, 2)
TILE32(q5_0, block_q5_0, -16.0f, -1)
TILE32(q5_1, block_q5_1, 0.0f, 2)
TILE32(q8_0, block_q8_0, 0.0f, -1)

/* ---------------------------------------------------------------- K-quants */

/* q[k]: u8 of elements 32k..32k+31; sc[k]: scale of each vpmaddubsw lane;
 * mw: per-16 min weights for the bsums. Kept in memory (L1) for reuse. */
typedef struct {
    __m256i q[8];
    __m256i sc[8];
    __m256i mw;
    float d, dmin;
} ukq;

static const uint8_t SC_SHUF[4][32] ALIGN32 = {
#define P(a, b) a, b, a, b, a, b, a, b, a, b, a, b, a, b, a, b
    {P(0, 1), P(2, 3)},
    {P(4, 5), P(6, 7)},
    {P(8, 9), P(10, 11)},
    {P(12, 13), P(14, 15)},
#undef P
};

/* scw: 16 int16 scales of the 16-element sub-blocks */
INLINE void set_scales(ukq *u, __m256i scw) {
    const __m256i lo = _mm256_permute2x128_si256(scw, scw, 0x00);
    const __m256i hi = _mm256_permute2x128_si256(scw, scw, 0x11);
    for (int k = 0; k < 8; k++)
        u->sc[k] = _mm256_shuffle_epi8(k < 4 ? lo : hi,
                                       _mm256_load_si256((const __m256i *)SC_SHUF[k % 4]));
}

INLINE __m256i shr16(__m256i x, int s) {
    return _mm256_srl_epi16(x, _mm_cvtsi32_si128(s));
}

INLINE __m256i low2(const uint8_t *qs, int k) { /* k = 4 * half + g */
    return _mm256_and_si256(shr16(ldu(qs + 32 * (k / 4)), 2 * (k % 4)), _mm256_set1_epi8(3));
}
/* byte = v if bit `bit` of h's byte is set */
INLINE __m256i bit_to(__m256i h, int bit, char v) {
    const __m256i m = _mm256_set1_epi8((char)(1u << bit));
    return _mm256_and_si256(_mm256_cmpeq_epi8(_mm256_and_si256(h, m), m), _mm256_set1_epi8(v));
}

INLINE void unpack_q2_K(const block_q2_K *x, ukq *u) {
    const __m128i s8 = _mm_loadu_si128((const __m128i *)x->scales);
    const __m128i m4 = _mm_set1_epi8(15);
    set_scales(u, _mm256_cvtepu8_epi16(_mm_and_si128(s8, m4)));
    u->mw = _mm256_cvtepu8_epi16(_mm_and_si128(_mm_srli_epi16(s8, 4), m4));
    for (int k = 0; k < 8; k++)
        u->q[k] = low2(x->qs, k);
    u->d = h2f(x->d);
    u->dmin = h2f(x->dmin);
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
    set_scales(u, scw);
    u->mw = _mm256_slli_epi16(scw, 2);
    const __m256i hm = ldu(x->hmask);
    for (int k = 0; k < 8; k++)
        u->q[k] = _mm256_or_si256(low2(x->qs, k), bit_to(hm, k, 4));
    u->d = u->dmin = h2f(x->d);
}

INLINE __m256i k4_words(const uint8_t *sc) {
    const uint32_t s0 = ld32(sc), s1 = ld32(sc + 4), s2 = ld32(sc + 8);
    const uint32_t sc_lo = s0 & 0x3f3f3f3f, mn_lo = s1 & 0x3f3f3f3f;
    const uint32_t sc_hi = (s2 & 0x0f0f0f0f) | ((s0 >> 2) & 0x30303030);
    const uint32_t mn_hi = ((s2 >> 4) & 0x0f0f0f0f) | ((s1 >> 2) & 0x30303030);
    return _mm256_cvtepu8_epi16(_mm_set_epi32((int)mn_hi, (int)mn_lo, (int)sc_hi, (int)sc_lo));
}
/* per-32 scales and mins -> per-16 */
INLINE void k4_set(ukq *u, const uint8_t *scales) {
    const __m256i w = k4_words(scales);
    const __m128i sc = _mm256_castsi256_si128(w), mn = _mm256_extracti128_si256(w, 1);
    set_scales(u, _mm256_setr_m128i(_mm_unpacklo_epi16(sc, sc), _mm_unpackhi_epi16(sc, sc)));
    u->mw = _mm256_setr_m128i(_mm_unpacklo_epi16(mn, mn), _mm_unpackhi_epi16(mn, mn));
}

INLINE void unpack_q4_K(const block_q4_K *x, ukq *u) {
    k4_set(u, x->scales);
    const __m256i m4 = _mm256_set1_epi8(15);
    for (int j = 0; j < 4; j++) {
        const __m256i v = ldu(x->qs + 32 * j);
        u->q[2 * j] = _mm256_and_si256(v, m4);
        u->q[2 * j + 1] = _mm256_and_si256(_mm256_srli_epi16(v, 4), m4);
    }
    u->d = h2f(x->d);
    u->dmin = h2f(x->dmin);
}

INLINE void unpack_q5_K(const block_q5_K *x, ukq *u) {
    k4_set(u, x->scales);
    const __m256i m4 = _mm256_set1_epi8(15);
    const __m256i hb = ldu(x->qh);
    for (int j = 0; j < 4; j++) {
        const __m256i v = ldu(x->qs + 32 * j);
        u->q[2 * j] = _mm256_or_si256(_mm256_and_si256(v, m4), bit_to(hb, 2 * j, 16));
        u->q[2 * j + 1] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(v, 4), m4),
                                          bit_to(hb, 2 * j + 1, 16));
    }
    u->d = h2f(x->d);
    u->dmin = h2f(x->dmin);
}

INLINE void unpack_q6_K(const block_q6_K *x, ukq *u) {
    const __m256i scw = _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)x->scales));
    set_scales(u, scw);
    u->mw = _mm256_slli_epi16(scw, 5);
    const __m256i m4 = _mm256_set1_epi8(15), m3 = _mm256_set1_epi8(3);
    for (int h = 0; h < 2; h++) {
        const __m256i l0 = ldu(x->ql + 64 * h), l1 = ldu(x->ql + 64 * h + 32);
        const __m256i qh = ldu(x->qh + 32 * h);
        const __m256i lo[4] = {_mm256_and_si256(l0, m4), _mm256_and_si256(l1, m4),
                               _mm256_and_si256(_mm256_srli_epi16(l0, 4), m4),
                               _mm256_and_si256(_mm256_srli_epi16(l1, 4), m4)};
        for (int g = 0; g < 4; g++) {
            const __m256i hi = _mm256_slli_epi16(_mm256_and_si256(shr16(qh, 2 * g), m3), 4);
            u->q[4 * h + g] = _mm256_or_si256(lo[g], hi);
        }
    }
    u->d = u->dmin = h2f(x->d);
}

INLINE void kdot(const ukq *u, const int8_t *aq, float ad, const int16_t *bs, __m256 *acc) {
    __m256i i0 = _mm256_setzero_si256(), i1 = _mm256_setzero_si256();
    for (int k = 0; k < 8; k += 2) {
        i0 = _mm256_add_epi32(
            i0, _mm256_madd_epi16(_mm256_maddubs_epi16(u->q[k], ldu(aq + 32 * k)), u->sc[k]));
        i1 = _mm256_add_epi32(
            i1, _mm256_madd_epi16(_mm256_maddubs_epi16(u->q[k + 1], ldu(aq + 32 * k + 32)),
                                  u->sc[k + 1]));
    }
    const __m256i ms = _mm256_madd_epi16(ldu(bs), u->mw);
    acc[0] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(_mm256_add_epi32(i0, i1)),
                             _mm256_set1_ps(u->d * ad), acc[0]);
    acc[1] = _mm256_fnmadd_ps(_mm256_cvtepi32_ps(ms), _mm256_set1_ps(u->dmin * ad), acc[1]);
}

#define TILEK(T, BT)                                                                           \
    INLINE void tile_##T(int64_t n, const void *w, const uint8_t *a, size_t lda, const int NA, \
                         float *out, size_t lds) {                                             \
        const BT *x = w;                                                                       \
        const int64_t nb = n / QK_K;                                                           \
        __m256 acc[4][2];                                                                      \
        for (int c = 0; c < NA; c++)                                                           \
            acc[c][0] = acc[c][1] = _mm256_setzero_ps();                                       \
        for (int64_t b = 0; b < nb; b++) {                                                     \
            ukq u;                                                                             \
            unpack_##T(x + b, &u);                                                             \
            for (int c = 0; c < NA; c++) {                                                     \
                const int8_t *aq = (const int8_t *)(a + c * lda);                              \
                const float *ad = (const float *)(aq + n);                                     \
                const int16_t *bs = (const int16_t *)(ad + nb);                                \
                kdot(&u, aq + QK_K * b, ad[b], bs + 16 * b, acc[c]);                           \
            }                                                                                  \
        }                                                                                      \
        for (int c = 0; c < NA; c++)                                                           \
            out[c * lds] = hsum_ps(_mm256_add_ps(acc[c][0], acc[c][1]));                       \
    }

TILEK(q2_K, block_q2_K)
TILEK(q3_K, block_q3_K)
TILEK(q4_K, block_q4_K)
TILEK(q5_K, block_q5_K)
TILEK(q6_K, block_q6_K)

#define QUANT_DRIVERS(T)                                                                       \
    void cpu_vec_dot_##T##_avx2(int64_t n, float *s, const void *w, const void *a) {           \
        tile_##T(n, w, a, 0, 1, s, 0);                                                         \
    }                                                                                          \
    void cpu_gemm_##T##_avx2(int64_t n, int nw, int na, float *s, size_t lds, const void *w,   \
                             size_t ldw, const void *a, size_t lda) {                          \
        const uint8_t *wb = w, *ab = a;                                                        \
        int c = 0;                                                                             \
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
