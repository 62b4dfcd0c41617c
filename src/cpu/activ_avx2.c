/* AVX2 elementwise kernels: exp_ref.h's arithmetic, 8 lanes at a time (the same bits as
 * the scalar reference). Without vscalefps, 2^k is built from its exponent bits, which
 * is exact for |k| <= 126; vectors with a larger |k| take the scalar path. */
#include <immintrin.h>

#include "cpu/exp_ref.h"
#include "cpu/kernels.h"

/* false when a lane needs the scalar path */
static inline int exp8(__m256 x, __m256 *y) {
    const __m256 shift = _mm256_set1_ps(CPU_EXP_SHIFT);
    const __m256 k =
        _mm256_sub_ps(_mm256_fmadd_ps(x, _mm256_set1_ps(CPU_EXP_LOG2E), shift), shift);
    const __m256 ak = _mm256_andnot_ps(_mm256_set1_ps(-0.0f), k);
    /* NaN compares false, so NaN lanes also go to the scalar path */
    if (_mm256_movemask_ps(_mm256_cmp_ps(ak, _mm256_set1_ps(126.0f), _CMP_LE_OQ)) != 0xff)
        return 0;
    const __m256 r = _mm256_fnmadd_ps(k, _mm256_set1_ps(CPU_EXP_LN2_LO),
                                      _mm256_fnmadd_ps(k, _mm256_set1_ps(CPU_EXP_LN2_HI), x));
    const __m256 r2 = _mm256_mul_ps(r, r);
    const __m256 hi = _mm256_fmadd_ps(
        _mm256_fmadd_ps(_mm256_set1_ps(CPU_EXP_C5), r, _mm256_set1_ps(CPU_EXP_C4)), r2,
        _mm256_fmadd_ps(_mm256_set1_ps(CPU_EXP_C3), r, _mm256_set1_ps(CPU_EXP_C2)));
    const __m256 p = _mm256_fmadd_ps(
        hi, r2, _mm256_fmadd_ps(_mm256_set1_ps(CPU_EXP_C1), r, _mm256_set1_ps(1.0f)));
    const __m256i e =
        _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(k), _mm256_set1_epi32(127)), 23);
    *y = _mm256_mul_ps(p, _mm256_castsi256_ps(e));
    return 1;
}

void cpu_exp_avx2(int64_t n, float *y, const float *x) {
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        __m256 v;
        if (exp8(_mm256_loadu_ps(x + i), &v))
            _mm256_storeu_ps(y + i, v);
        else
            for (int l = 0; l < 8; l++)
                y[i + l] = cpu_exp1(x[i + l]);
    }
    for (; i < n; i++)
        y[i] = cpu_exp1(x[i]);
}

void cpu_swiglu_avx2(int64_t n, float *out, const float *g, const float *u) {
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        const __m256 gv = _mm256_loadu_ps(g + i);
        __m256 e;
        if (!exp8(_mm256_sub_ps(_mm256_setzero_ps(), gv), &e)) {
            for (int l = 0; l < 8; l++)
                out[i + l] = cpu_swiglu1(g[i + l], u[i + l]);
            continue;
        }
        const __m256 s = _mm256_div_ps(gv, _mm256_add_ps(_mm256_set1_ps(1.0f), e));
        _mm256_storeu_ps(out + i, _mm256_mul_ps(s, _mm256_loadu_ps(u + i)));
    }
    for (; i < n; i++)
        out[i] = cpu_swiglu1(g[i], u[i]);
}
