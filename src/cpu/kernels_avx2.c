/* AVX2 + FMA + F16C kernels. Only called after cpuid reports these.
 *
 * The same arithmetic as the scalar reference (kernels_scalar.c), bit for bit: the float
 * operations are the reference's, in its order; integer parts, which are exact, are
 * formed with vpmaddubsw + vpmaddwd. A 32-block's 8 lanes of 4-element sums are those of
 * vpmaddubsw + vpmaddwd on the block in element order: unsigned weights, the offsets of
 * Q4_0 / Q5_0 added from the activation row's c (-128 * sums of 4, shifted), Q8_0's
 * signs moved to the activations (vpsignb). Q4_0's reference adds block totals: the lanes
 * of 4 (row, activation) pairs are reduced together. K-quant chunks of 32 elements leave
 * element 32k + 4i in int32 lane i, the reference's lane; Q3_K / Q6_K offsets come off the
 * int16 pair sums, or (tiles of 4 activation rows) as signs. Float weights: the
 * reference's 16 lanes are two ymm. Decode (one activation row) runs 4 weight rows at a
 * time so that their fma chains overlap. */
#include <immintrin.h>
#include <math.h>
#include <string.h>

#include "cpu/kernels.h"
#include "cpu/simd_util.h"

/* software prefetch distance for the weight stream (see kernels_avx512.c) */
#define PF_BYTES 4096
#define ALIGN32 __attribute__((aligned(32)))

INLINE float h2f(uint16_t h) {
    return _cvtsh_ss(h);
}

INLINE __m256i ldu(const void *p) {
    return _mm256_loadu_si256((const __m256i *)p);
}

INLINE int imin(int a, int b) {
    return a < b ? a : b;
}

/* Horizontal sums in the reference's orders */
INLINE float hsum4_ps(__m128 t4) { /* (t0+t2) + (t1+t3) */
    const __m128 t2 = _mm_add_ps(t4, _mm_movehl_ps(t4, t4));
    return _mm_cvtss_f32(_mm_add_ss(t2, _mm_movehdup_ps(t2)));
}
INLINE float hsum_ps(__m256 v) { /* ((l0+l4) + (l2+l6)) + ((l1+l5) + (l3+l7)) */
    return hsum4_ps(_mm_add_ps(_mm256_extractf128_ps(v, 1), _mm256_castps256_ps128(v)));
}
/* 16 lanes as [lo | hi]: halves, then as hsum_ps */
INLINE float reduce16_ps(__m256 lo, __m256 hi) {
    return hsum_ps(_mm256_add_ps(hi, lo));
}
INLINE float reduce16_arr(const float l[16]) {
    return reduce16_ps(_mm256_loadu_ps(l), _mm256_loadu_ps(l + 8));
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

INLINE float round_half(float v) {
    return _cvtsh_ss(_cvtss_sh(v, _MM_FROUND_TO_NEAREST_INT));
}

/* 4 x 8 int32 -> 32 int8 in order (values already in -127..127) */
INLINE __m256i pack32(__m256i i0, __m256i i1, __m256i i2, __m256i i3) {
    const __m256i a = _mm256_packs_epi32(i0, i1), b = _mm256_packs_epi32(i2, i3);
    const __m256i c = _mm256_packs_epi16(a, b);
    return _mm256_permutevar8x32_epi32(c, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
}

void cpu_quantize_q8_32_avx2(const float *x, void *a, int64_t n) {
    int8_t *q = a;
    const int64_t nb = n / 32;
    float *d = (float *)(q + n), *s = d + nb;
    int32_t *cc = (int32_t *)(s + nb);
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
        const float df = amax / 127.0f;
        d[b] = round_half(df);
        s[b] = round_half(df * (float)sum);
        /* c: -128 * sums of 4 */
        const __m256i y = ldu(q + 32 * b);
        const __m256i s4 = _mm256_madd_epi16(_mm256_maddubs_epi16(_mm256_set1_epi8(1), y),
                                             _mm256_set1_epi16(1));
        _mm256_storeu_si256((__m256i *)(cc + 8 * b), _mm256_mullo_epi32(s4, _mm256_set1_epi32(-128)));
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
        const float id = amax > 0.0f ? 127.0f / amax : 0.0f;
        const __m256 vid = _mm256_set1_ps(id);
        for (int j = 0; j < 8; j++) { /* 32 elements = two bsums */
            __m256i iv[4];
            for (int i = 0; i < 4; i++)
                iv[i] = _mm256_cvtps_epi32(
                    _mm256_mul_ps(_mm256_loadu_ps(xb + 32 * j + 8 * i), vid));
            _mm256_storeu_si256((__m256i *)(q + QK_K * b + 32 * j),
                                pack32(iv[0], iv[1], iv[2], iv[3]));
            const int s0 = hsum_epi32(_mm256_add_epi32(iv[0], iv[1]));
            const int s1 = hsum_epi32(_mm256_add_epi32(iv[2], iv[3]));
            bs[16 * b + 2 * j] = (int16_t)s0;
            bs[16 * b + 2 * j + 1] = (int16_t)s1;
            bs[n / 16 + 8 * b + j] = (int16_t)(s0 + s1); /* per-32 sums, after the bsums */
        }
        d[b] = amax > 0.0f ? 1.0f / id : 0.0f;
    }
}

/* ------------------------------------------------------------ float weights */

/* The reference's 16 lanes as two ymm per (row, activation) pair: elements i with
 * i % 16 < 8 and the others. A tail (n % 16) is finished in scalar code on the lanes. */

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

#define WSIZE_f32 4
#define WSIZE_f16 2
#define WSIZE_bf16 2
#define FLOAT_KERNELS(T)                                                                       \
    /* NW weight rows x NA activation rows (NW * NA <= 4) */                                   \
    INLINE void ftile_##T(int64_t n, const char *w, size_t ldw, const char *a, size_t lda,     \
                          const int NW, const int NA, float *s, size_t lds) {                  \
        __m256 lo[4][4], hi[4][4];                                                             \
        for (int r = 0; r < NW; r++)                                                           \
            for (int c = 0; c < NA; c++)                                                       \
                lo[r][c] = hi[r][c] = _mm256_setzero_ps();                                     \
        int64_t i = 0;                                                                         \
        for (; i + 16 <= n; i += 16) {                                                         \
            if (((i * WSIZE_##T) & 63) == 0)                                                   \
                for (int r = 0; r < NW; r++)                                                   \
                    _mm_prefetch(w + r * ldw + i * WSIZE_##T + PF_BYTES, _MM_HINT_T0);         \
            __m256 wl[4], wh[4];                                                               \
            for (int r = 0; r < NW; r++) {                                                     \
                wl[r] = wload_##T(w + r * ldw, i);                                             \
                wh[r] = wload_##T(w + r * ldw, i + 8);                                         \
            }                                                                                  \
            for (int c = 0; c < NA; c++) {                                                     \
                const float *x = (const float *)(a + c * lda) + i;                             \
                const __m256 xl = _mm256_loadu_ps(x), xh = _mm256_loadu_ps(x + 8);             \
                for (int r = 0; r < NW; r++) {                                                 \
                    lo[r][c] = _mm256_fmadd_ps(wl[r], xl, lo[r][c]);                           \
                    hi[r][c] = _mm256_fmadd_ps(wh[r], xh, hi[r][c]);                           \
                }                                                                              \
            }                                                                                  \
        }                                                                                      \
        for (int r = 0; r < NW; r++)                                                           \
            for (int c = 0; c < NA; c++) {                                                     \
                if (i == n) {                                                                  \
                    s[c * lds + r] = reduce16_ps(lo[r][c], hi[r][c]);                          \
                    continue;                                                                  \
                }                                                                              \
                float l[16];                                                                   \
                _mm256_storeu_ps(l, lo[r][c]);                                                 \
                _mm256_storeu_ps(l + 8, hi[r][c]);                                             \
                const float *x = (const float *)(a + c * lda);                                 \
                for (int64_t j = i; j < n; j++)                                                \
                    l[j - i] = fmaf(wscalar_##T(w + r * ldw, j), x[j], l[j - i]);              \
                s[c * lds + r] = reduce16_arr(l);                                              \
            }                                                                                  \
    }                                                                                          \
    /* 3 weight rows x 4 activation rows, in two passes over each stretch of 512 elements    \
     * (which stays in L1): lanes 0..7 of each 16, then lanes 8..15, 12 accumulators each     \
     * time (n a multiple of 16) */                                                            \
    INLINE void ftile34_##T(int64_t n, const char *w, size_t ldw, const char *a, size_t lda,   \
                            float *s, size_t lds) {                                            \
        __m256 part[2][3][4];                                                                  \
        for (int h = 0; h < 2; h++)                                                            \
            for (int r = 0; r < 3; r++)                                                        \
                for (int c = 0; c < 4; c++)                                                    \
                    part[h][r][c] = _mm256_setzero_ps();                                       \
        for (int64_t i0 = 0; i0 < n; i0 += 512) {                                              \
            const int64_t i1 = n - i0 < 512 ? n : i0 + 512;                                    \
            for (int h = 0; h < 2; h++) {                                                      \
                __m256 acc[3][4];                                                              \
                for (int r = 0; r < 3; r++)                                                    \
                    for (int c = 0; c < 4; c++)                                                \
                        acc[r][c] = part[h][r][c];                                             \
                for (int64_t i = i0 + 8 * h; i < i1; i += 16) {                                \
                    if (h == 0 && ((i * WSIZE_##T) & 63) == 0)                                 \
                        for (int r = 0; r < 3; r++)                                            \
                            _mm_prefetch(w + r * ldw + i * WSIZE_##T + PF_BYTES, _MM_HINT_T0); \
                    const __m256 w0 = wload_##T(w, i), w1 = wload_##T(w + ldw, i),             \
                                 w2 = wload_##T(w + 2 * ldw, i);                               \
                    for (int c = 0; c < 4; c++) {                                              \
                        const __m256 x = _mm256_loadu_ps((const float *)(a + c * lda) + i);    \
                        acc[0][c] = _mm256_fmadd_ps(w0, x, acc[0][c]);                         \
                        acc[1][c] = _mm256_fmadd_ps(w1, x, acc[1][c]);                         \
                        acc[2][c] = _mm256_fmadd_ps(w2, x, acc[2][c]);                         \
                    }                                                                          \
                }                                                                              \
                for (int r = 0; r < 3; r++)                                                    \
                    for (int c = 0; c < 4; c++)                                                \
                        part[h][r][c] = acc[r][c];                                             \
            }                                                                                  \
        }                                                                                      \
        for (int r = 0; r < 3; r++)                                                            \
            for (int c = 0; c < 4; c++)                                                        \
                s[c * lds + r] = reduce16_ps(part[0][r][c], part[1][r][c]);                    \
    }                                                                                          \
    void cpu_vec_dot_##T##_avx2(int64_t n, float *s, const void *w, const void *a) {           \
        ftile_##T(n, w, 0, a, 0, 1, 1, s, 0);                                                  \
    }                                                                                          \
    void cpu_gemm_##T##_avx2(int64_t n, int nw, int na, float *s, size_t lds, const void *w,   \
                             size_t ldw, const void *a, size_t lda, void *scratch) {           \
        const char *wb = w, *ab = a;                                                           \
        int c = 0;                                                                             \
        for (; c + 4 <= na; c += 4) {                                                          \
            int r = 0;                                                                         \
            if (n % 16 == 0)                                                                   \
                for (; r + 3 <= nw; r += 3)                                                    \
                    ftile34_##T(n, wb + r * ldw, ldw, ab + c * lda, lda, s + c * lds + r, lds); \
            for (; r < nw; r++)                                                                \
                ftile_##T(n, wb + r * ldw, ldw, ab + c * lda, lda, 1, 4, s + c * lds + r,      \
                          lds);                                                                \
        }                                                                                      \
        for (; c + 2 <= na; c += 2) {                                                          \
            int r = 0;                                                                         \
            for (; r + 2 <= nw; r += 2)                                                        \
                ftile_##T(n, wb + r * ldw, ldw, ab + c * lda, lda, 2, 2, s + c * lds + r,      \
                          lds);                                                                \
            for (; r < nw; r++)                                                                \
                ftile_##T(n, wb + r * ldw, ldw, ab + c * lda, lda, 1, 2, s + c * lds + r,      \
                          lds);                                                                \
        }                                                                                      \
        for (; c < na; c++) {                                                                  \
            int r = 0;                                                                         \
            for (; r + 4 <= nw; r += 4)                                                        \
                ftile_##T(n, wb + r * ldw, ldw, ab + c * lda, lda, 4, 1, s + c * lds + r,      \
                          lds);                                                                \
            for (; r < nw; r++)                                                                \
                ftile_##T(n, wb + r * ldw, ldw, ab + c * lda, lda, 1, 1, s + c * lds + r,      \
                          lds);                                                                \
        }                                                                                      \
    }

FLOAT_KERNELS(f32)
FLOAT_KERNELS(f16)
FLOAT_KERNELS(bf16)

/* ------------------------------------------------------ 32-element blocks */

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

/* One block's weights in element order: SIGNED_T: signed bytes (their signs go to the
 * activations), else unsigned. */
/* One block's weights in element order, unsigned (Q8_0: signed, its signs go to the
 * activations: SIGNED). KSH: the weight is the byte minus 8 (Q4_0) or 16 (Q5_0), the
 * offset term being the activation row's c (-128 * sums of 4) >> KSH. */
INLINE __m256i wq_q4_0(const block_q4_0 *x) {
    return nib_one(x->qs);
}
INLINE __m256i wq_q4_1(const block_q4_1 *x) {
    return nib_one(x->qs);
}
INLINE __m256i wq_q5_0(const block_q5_0 *x) {
    return _mm256_or_si256(nib_one(x->qs), hbit16(x->qh));
}
INLINE __m256i wq_q5_1(const block_q5_1 *x) {
    return _mm256_or_si256(nib_one(x->qs), hbit16(x->qh));
}
INLINE __m256i wq_q8_0(const block_q8_0 *x) {
    return ldu(x->qs);
}
#define SIGNED_q4_1 0
#define SIGNED_q5_0 0
#define SIGNED_q5_1 0
#define SIGNED_q8_0 1
#define KSH_q4_1 0
#define KSH_q5_0 3
#define KSH_q5_1 0
#define KSH_q8_0 0
#define HASM_q4_1 1
#define HASM_q5_0 0
#define HASM_q5_1 1
#define HASM_q8_0 0

/* 8 int32 lanes of 4-element products: q the weight (or its magnitude), s the signed
 * weight (SIGNED) */
INLINE __m256i idot(__m256i q, __m256i s, __m256i y, const int SIGNED) {
    const __m256i p = _mm256_maddubs_epi16(q, SIGNED ? _mm256_sign_epi8(y, s) : y);
    return _mm256_madd_epi16(p, _mm256_set1_epi16(1));
}
/* the offset lanes of block b of an activation row: its c >> ksh */
INLINE __m256i koff(const int8_t *aq, int64_t n, int64_t b, int ksh) {
    const int32_t *c = (const int32_t *)((const float *)(aq + n) + 2 * (n / 32)) + 8 * b;
    return _mm256_srai_epi32(ldu(c), ksh);
}

/* 8 halves `stride` bytes apart -> floats (packed with scalar ops first) */
INLINE __m256 gather_h8(const uint8_t *p, size_t stride) {
    uint64_t w[2];
    for (int j = 0; j < 2; j++) {
        uint64_t v = 0;
        for (int i = 0; i < 4; i++)
            v |= (uint64_t)ld16(p + (size_t)(4 * j + i) * stride) << (16 * i);
        w[j] = v;
    }
    return _mm256_cvtph_ps(
        _mm_insert_epi64(_mm_cvtsi64_si128((long long)w[0]), (long long)w[1], 1));
}

/* Q4_1, Q5_0, Q5_1, Q8_0: NR weight rows (ldw apart) x NA activation rows (lda apart),
 * NR * NA <= 4 (decode: 4 x 1, so that 4 chains of fmas overlap). acc[r][c] holds the
 * reference's 8 lanes, summs[r][c] its min sum. Blocks go 8 at a time: their scale
 * products d_w * d_a as one vector per pair (vpermps hands each block its lane). */
#define TILE32L(T, BT)                                                                         \
    INLINE void tile_##T(int64_t n, const void *w, size_t ldw, const int NR, const uint8_t *a, \
                         size_t lda, const int NA, float *out, size_t lds) {                   \
        const int64_t nb = n / 32;                                                             \
        __m256 acc[4][4];                                                                      \
        float summs[4][4];                                                                     \
        for (int r = 0; r < NR; r++)                                                           \
            for (int c = 0; c < NA; c++) {                                                     \
                acc[r][c] = _mm256_setzero_ps();                                               \
                summs[r][c] = 0.0f;                                                            \
            }                                                                                  \
        for (int64_t b = 0; b < nb; b += 8) {                                                  \
            const int cnt = nb - b < 8 ? (int)(nb - b) : 8;                                    \
            __m256 S[4][4];                                                                    \
            float ms[4][4][8]; /* m * s of the 8 blocks (exact) */                             \
            for (int r = 0; r < NR; r++)                                                       \
                for (int c = 0; c < NA; c++)                                                   \
                    S[r][c] = _mm256_setzero_ps();                                             \
            for (int r = 0; r < NR; r++) {                                                     \
                const BT *x = (const BT *)((const uint8_t *)w + r * ldw) + b;                  \
                for (int pf = 0; pf < 8 * (int)sizeof(BT); pf += 64)                           \
                    _mm_prefetch((const char *)x + PF_BYTES + pf, _MM_HINT_T0);                \
                if (cnt < 8) continue;                                                         \
                const __m256 dw = gather_h8((const uint8_t *)x, sizeof(BT));                   \
                const __m256 mw = HASM_##T ? gather_h8((const uint8_t *)x + 2, sizeof(BT))     \
                                           : _mm256_setzero_ps();                              \
                for (int c = 0; c < NA; c++) {                                                 \
                    const float *ad = (const float *)(a + c * lda + n);                        \
                    S[r][c] = _mm256_mul_ps(dw, _mm256_loadu_ps(ad + b));                      \
                    if (HASM_##T)                                                              \
                        _mm256_storeu_ps(ms[r][c],                                             \
                                         _mm256_mul_ps(mw, _mm256_loadu_ps(ad + nb + b)));     \
                }                                                                              \
            }                                                                                  \
            for (int j = 0; j < cnt; j++) {                                                    \
                __m256i s[4], q[4], y[4], k[4];                                                \
                for (int r = 0; r < NR; r++) {                                                 \
                    s[r] = wq_##T((const BT *)((const uint8_t *)w + r * ldw) + b + j);         \
                    q[r] = SIGNED_##T ? _mm256_sign_epi8(s[r], s[r]) : s[r];                   \
                }                                                                              \
                for (int c = 0; c < NA; c++) {                                                 \
                    const int8_t *aq = (const int8_t *)(a + c * lda);                          \
                    y[c] = ldu(aq + 32 * (b + j));                                             \
                    if (KSH_##T) k[c] = koff(aq, n, b + j, KSH_##T);                           \
                }                                                                              \
                for (int r = 0; r < NR; r++) {                                                 \
                    const BT *xb = (const BT *)((const uint8_t *)w + r * ldw) + b + j;         \
                    for (int c = 0; c < NA; c++) {                                             \
                        const float *ad = (const float *)(a + c * lda + n);                    \
                        __m256i p = idot(q[r], s[r], y[c], SIGNED_##T);                        \
                        if (KSH_##T) p = _mm256_add_epi32(p, k[c]);                            \
                        const __m256 dd =                                                      \
                            cnt == 8 ? _mm256_permutevar8x32_ps(S[r][c], _mm256_set1_epi32(j)) \
                                     : _mm256_set1_ps(h2f(xb->d) * ad[b + j]);                 \
                        acc[r][c] = _mm256_fmadd_ps(dd, _mm256_cvtepi32_ps(p), acc[r][c]);     \
                        if (HASM_##T) /* m * s is exact: the reference's sum */                \
                            summs[r][c] += cnt == 8 ? ms[r][c][j]                              \
                                                    : h2f(ld16((const uint8_t *)&xb->d + 2)) * \
                                                          ad[nb + b + j];                      \
                    }                                                                          \
                }                                                                              \
            }                                                                                  \
        }                                                                                      \
        for (int r = 0; r < NR; r++)                                                           \
            for (int c = 0; c < NA; c++) {                                                     \
                float v = hsum_ps(acc[r][c]);                                                  \
                if (HASM_##T) v += summs[r][c];                                                \
                out[c * lds + r] = v;                                                          \
            }                                                                                  \
    }

TILE32L(q4_1, block_q4_1)
TILE32L(q5_0, block_q5_0)
TILE32L(q5_1, block_q5_1)
TILE32L(q8_0, block_q8_0)

/* vec_dot and gemm from the tiles: decode (one activation row) 4 weight rows at a time */
#define QUANT_DRIVERS(T)                                                                       \
    void cpu_vec_dot_##T##_avx2(int64_t n, float *s, const void *w, const void *a) {           \
        tile_##T(n, w, 0, 1, a, 0, 1, s, 0);                                                   \
    }                                                                                          \
    void cpu_gemm_##T##_avx2(int64_t n, int nw, int na, float *s, size_t lds, const void *w,   \
                             size_t ldw, const void *a, size_t lda, void *scratch) {           \
        const uint8_t *wb = w, *ab = a;                                                        \
        if (na == 1) {                                                                         \
            int r = 0;                                                                         \
            for (; r + 4 <= nw; r += 4)                                                        \
                tile_##T(n, wb + r * ldw, ldw, 4, ab, lda, 1, s + r, lds);                     \
            for (; r < nw; r++)                                                                \
                tile_##T(n, wb + r * ldw, ldw, 1, ab, lda, 1, s + r, lds);                     \
            return;                                                                            \
        }                                                                                      \
        int c = 0;                                                                             \
        for (; c + 4 <= na; c += 4)                                                            \
            for (int r = 0; r < nw; r++)                                                       \
                tile_##T(n, wb + r * ldw, ldw, 1, ab + c * lda, lda, 4, s + c * lds + r, lds); \
        for (int r = 0; r < nw && c < na; r++) {                                               \
            const uint8_t *wr = wb + r * ldw, *ac = ab + c * lda;                              \
            float *o = s + c * lds + r;                                                        \
            switch (na - c) {                                                                  \
            case 3: tile_##T(n, wr, ldw, 1, ac, lda, 3, o, lds); break;                        \
            case 2: tile_##T(n, wr, ldw, 1, ac, lda, 2, o, lds); break;                        \
            default: tile_##T(n, wr, ldw, 1, ac, lda, 1, o, lds); break;                       \
            }                                                                                  \
        }                                                                                      \
    }

QUANT_DRIVERS(q4_1)
QUANT_DRIVERS(q5_0)
QUANT_DRIVERS(q5_1)
QUANT_DRIVERS(q8_0)

/* one-row tiles (K-quants) */
#define QUANTK_DRIVERS(T)                                                                      \
    void cpu_vec_dot_##T##_avx2(int64_t n, float *s, const void *w, const void *a) {           \
        tile_##T(n, w, a, 0, 1, s, 0);                                                         \
    }                                                                                          \
    void cpu_gemm_##T##_avx2(int64_t n, int nw, int na, float *s, size_t lds, const void *w,   \
                             size_t ldw, const void *a, size_t lda, void *scratch) {           \
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

/* Q4_0: the reference adds each block's total. reduce4: the 8 lanes of each of p0..p3
 * summed, in lanes 0..3 */
INLINE __m128i reduce4_epi32(__m256i p0, __m256i p1, __m256i p2, __m256i p3) {
    const __m256i q01 =
        _mm256_add_epi32(_mm256_unpacklo_epi32(p0, p1), _mm256_unpackhi_epi32(p0, p1));
    const __m256i q23 =
        _mm256_add_epi32(_mm256_unpacklo_epi32(p2, p3), _mm256_unpackhi_epi32(p2, p3));
    const __m256i r =
        _mm256_add_epi32(_mm256_unpacklo_epi64(q01, q23), _mm256_unpackhi_epi64(q01, q23));
    return _mm_add_epi32(_mm256_castsi256_si128(r), _mm256_extracti128_si256(r, 1));
}

/* 4 weight rows (rows from nr on repeat the last) x 1 activation row */
INLINE void tile41_q4_0(int64_t n, const uint8_t *w, size_t ldw, int nr, const uint8_t *a,
                        float *out) {
    const int64_t nb = n / 32;
    const block_q4_0 *r[4];
    for (int i = 0; i < 4; i++)
        r[i] = (const block_q4_0 *)(w + (size_t)imin(i, nr - 1) * ldw);
    const int8_t *aq = (const int8_t *)a;
    const float *ad = (const float *)(aq + n);
    __m128 acc = _mm_setzero_ps();
    for (int64_t b = 0; b < nb; b += 2) {
        const int cnt = nb - b < 2 ? 1 : 2;
        uint64_t h[2];
        for (int j = 0; j < 2; j++) {
            const int64_t bj = b + (j < cnt ? j : 0);
            h[j] = (uint64_t)r[0][bj].d | (uint64_t)r[1][bj].d << 16 |
                   (uint64_t)r[2][bj].d << 32 | (uint64_t)r[3][bj].d << 48;
        }
        const __m256 dw = _mm256_cvtph_ps(
            _mm_insert_epi64(_mm_cvtsi64_si128((long long)h[0]), (long long)h[1], 1));
        for (int i = 0; i < 4; i++)
            _mm_prefetch((const char *)(r[i] + b) + PF_BYTES, _MM_HINT_T0);
        for (int j = 0; j < cnt; j++) {
            const __m256i y = ldu(aq + 32 * (b + j));
            __m256i P[4];
            const __m256i k = koff(aq, n, b + j, 4);
            for (int i = 0; i < 4; i++) {
                const __m256i u = wq_q4_0(r[i] + b + j);
                P[i] = _mm256_add_epi32(idot(u, u, y, 0), k);
            }
            const __m128 dwj = j ? _mm256_extractf128_ps(dw, 1) : _mm256_castps256_ps128(dw);
            const __m128 dd = _mm_mul_ps(dwj, _mm_set1_ps(ad[b + j]));
            acc = _mm_fmadd_ps(dd, _mm_cvtepi32_ps(reduce4_epi32(P[0], P[1], P[2], P[3])), acc);
        }
    }
    float t[4];
    _mm_storeu_ps(t, acc);
    for (int i = 0; i < nr && i < 4; i++)
        out[i] = t[i];
}

/* 1 weight row x 4 activation rows (rows from na on repeat the last) */
INLINE void tile14_q4_0(int64_t n, const uint8_t *w, const uint8_t *a, size_t lda, int na,
                        float *out, size_t lds) {
    const int64_t nb = n / 32;
    const block_q4_0 *x = (const block_q4_0 *)w;
    const int8_t *aq[4];
    const float *ad[4];
    for (int c = 0; c < 4; c++) {
        aq[c] = (const int8_t *)(a + (size_t)imin(c, na - 1) * lda);
        ad[c] = (const float *)(aq[c] + n);
    }
    __m128 acc = _mm_setzero_ps();
    for (int64_t b = 0; b < nb; b++) {
        if ((b & 3) == 0) _mm_prefetch((const char *)(x + b) + PF_BYTES, _MM_HINT_T0);
        const __m256i u = wq_q4_0(x + b);
        __m256i P[4];
        for (int c = 0; c < 4; c++)
            P[c] = _mm256_add_epi32(idot(u, u, ldu(aq[c] + 32 * b), 0), koff(aq[c], n, b, 4));
        const __m128 da = _mm_setr_ps(ad[0][b], ad[1][b], ad[2][b], ad[3][b]);
        const __m128 dd = _mm_mul_ps(_mm_set1_ps(h2f(x[b].d)), da);
        acc = _mm_fmadd_ps(dd, _mm_cvtepi32_ps(reduce4_epi32(P[0], P[1], P[2], P[3])), acc);
    }
    float t[4];
    _mm_storeu_ps(t, acc);
    for (int c = 0; c < na && c < 4; c++)
        out[c * lds] = t[c];
}

void cpu_vec_dot_q4_0_avx2(int64_t n, float *s, const void *w, const void *a) {
    tile41_q4_0(n, w, 0, 1, a, s);
}

void cpu_gemm_q4_0_avx2(int64_t n, int nw, int na, float *s, size_t lds, const void *w,
                        size_t ldw, const void *a, size_t lda, void *scratch) {
    const uint8_t *wb = w, *ab = a;
    if (na == 1) {
        for (int r = 0; r < nw; r += 4)
            tile41_q4_0(n, wb + (size_t)r * ldw, ldw, imin(4, nw - r), ab, s + r);
        return;
    }
    for (int c = 0; c < na; c += 4)
        for (int r = 0; r < nw; r++)
            tile14_q4_0(n, wb + (size_t)r * ldw, ab + (size_t)c * lda, lda, imin(4, na - c),
                        s + (size_t)c * lds + r, lds);
}

/* ---------------------------------------------------------------- K-quants */

/* q[k]: u8 of elements 32k..32k+31 (Q3_K / Q6_K: the weight plus 4 / 32; with to_sign,
 * its magnitude, s[k] the signed weight); sc[k]: scale of each
 * vpmaddubsw lane; mw: per-16 min weights for the bsums (Q2_K, Q4_K, Q5_K). Kept in
 * memory (L1) for reuse. */
typedef struct {
    __m256i q[8];
    __m256i s[8];
    __m256i sc[8];
    __m256i mw;
    __m128i mn; /* Q4_K / Q5_K: the 8 per-32 mins (against the per-32 sums) */
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
    const __m256i hm = ldu(x->hmask);
    for (int k = 0; k < 8; k++) {
        u->q[k] = _mm256_or_si256(low2(x->qs, k), bit_to(hm, k, 4));
    }
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
    u->mn = mn;
}

INLINE void unpack_q4_K(const block_q4_K *x, ukq *u) {
    k4_set(u, x->scales);
    const __m256i m4 = _mm256_set1_epi8(15);
    for (int j = 0; j < 4; j++) {
        const __m256i v = ldu(x->qs + 32 * j);
        u->q[2 * j] = _mm256_and_si256(v, m4);
        u->q[2 * j + 1] = _mm256_and_si256(_mm256_srli_epi16(v, 4), m4);
    }
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
}

INLINE void unpack_q6_K(const block_q6_K *x, ukq *u) {
    const __m256i scw = _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)x->scales));
    set_scales(u, scw);
    const __m256i m4 = _mm256_set1_epi8(15), m3 = _mm256_set1_epi8(3);
    for (int h = 0; h < 2; h++) {
        const __m256i l0 = ldu(x->ql + 64 * h), l1 = ldu(x->ql + 64 * h + 32);
        const __m256i qh = ldu(x->qh + 32 * h);
        const __m256i lo[4] = {_mm256_and_si256(l0, m4), _mm256_and_si256(l1, m4),
                               _mm256_and_si256(_mm256_srli_epi16(l0, 4), m4),
                               _mm256_and_si256(_mm256_srli_epi16(l1, 4), m4)};
        for (int g = 0; g < 4; g++) {
            const __m256i hi = _mm256_slli_epi16(_mm256_and_si256(shr16(qh, 2 * g), m3), 4);
            const int k = 4 * h + g;
            u->q[k] = _mm256_or_si256(lo[g], hi);
        }
    }
}

/* Q3_K / Q6_K, SIGN: the weights u - off as magnitudes q and signed values s */
INLINE void to_sign(ukq *u, int off) {
    for (int k = 0; k < 8; k++) {
        u->s[k] = _mm256_sub_epi8(u->q[k], _mm256_set1_epi8((char)off));
        u->q[k] = _mm256_sign_epi8(u->s[k], u->s[k]);
    }
}

/* The reference's 8 int lanes of one superblock against one activation row. OFF (Q3_K 4,
 * Q6_K 32): the weights are u - OFF; SIGN: their magnitudes, the activations taking their
 * signs (vpsignb); else the offsets are taken off the int16 pair sums (as llama.cpp
 * does). */
INLINE __m256i kdot(const ukq *u, const int8_t *aq, const int OFF, const int SIGN) {
    __m256i i0 = _mm256_setzero_si256(), i1 = _mm256_setzero_si256();
    for (int k = 0; k < 8; k += 2) {
        __m256i y0 = ldu(aq + 32 * k), y1 = ldu(aq + 32 * k + 32);
        __m256i p0, p1;
        if (OFF && SIGN) {
            p0 = _mm256_maddubs_epi16(u->q[k], _mm256_sign_epi8(y0, u->s[k]));
            p1 = _mm256_maddubs_epi16(u->q[k + 1], _mm256_sign_epi8(y1, u->s[k + 1]));
        } else {
            p0 = _mm256_maddubs_epi16(u->q[k], y0);
            p1 = _mm256_maddubs_epi16(u->q[k + 1], y1);
            if (OFF) {
                const __m256i ko = _mm256_set1_epi8((char)OFF);
                p0 = _mm256_sub_epi16(p0, _mm256_maddubs_epi16(ko, y0));
                p1 = _mm256_sub_epi16(p1, _mm256_maddubs_epi16(ko, y1));
            }
        }
        i0 = _mm256_add_epi32(i0, _mm256_madd_epi16(p0, u->sc[k]));
        i1 = _mm256_add_epi32(i1, _mm256_madd_epi16(p1, u->sc[k + 1]));
    }
    return _mm256_add_epi32(i0, i1);
}

/* MINS: how the mins enter (the reference's order): 0 none (Q3_K, Q6_K); 1 Q2_K: 8 lanes
 * of mins x bsums into the same accumulator, before the scales; 2 Q4_K: 4 lanes (pairs of
 * sub-blocks) in an accumulator of their own; 3 Q5_K: one sum, in a scalar. */
#define TILEK(T, BT, MINS, OFF)                                                                \
    INLINE void tile_##T(int64_t n, const void *w, const uint8_t *a, size_t lda, const int NA, \
                         float *out, size_t lds) {                                             \
        const BT *x = w;                                                                       \
        const int64_t nb = n / QK_K;                                                           \
        __m256 acc[4];                                                                         \
        __m128 accm[4];                                                                        \
        float summs[4];                                                                        \
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
            if (OFF && NA >= 4) to_sign(&u, OFF);                                              \
            const float xd = h2f(x[b].d);                                                      \
            const float xm = MINS ? h2f(ld16((const uint8_t *)&x[b].d + 2)) : 0.0f;            \
            for (int c = 0; c < NA; c++) {                                                     \
                const int8_t *aq = (const int8_t *)(a + c * lda);                              \
                const float *ad = (const float *)(aq + n);                                     \
                const int16_t *bs = (const int16_t *)(ad + nb) + 16 * b;                       \
                const __m256i si = kdot(&u, aq + QK_K * b, OFF, NA >= 4);                      \
                if (MINS) {                                                                    \
                    /* dmin = -(d_a * xm): fnmadd */                                           \
                    const float dm = ad[b] * xm;                                               \
                    if (MINS == 1) {                                                           \
                        const __m256i ms = _mm256_madd_epi16(ldu(bs), u.mw);                   \
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
            float r = hsum_ps(acc[c]);                                                         \
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

QUANTK_DRIVERS(q2_K)
QUANTK_DRIVERS(q3_K)
QUANTK_DRIVERS(q4_K)
QUANTK_DRIVERS(q5_K)
QUANTK_DRIVERS(q6_K)
