/* AVX-512 elementwise kernels: exp_ref.h's arithmetic, 16 lanes at a time (the same
 * bits as the scalar reference). */
#include <immintrin.h>

#include "cpu/exp_ref.h"
#include "cpu/kernels.h"

static inline __m512 exp16(__m512 x) {
    const __m512 shift = _mm512_set1_ps(CPU_EXP_SHIFT);
    const __m512 k =
        _mm512_sub_ps(_mm512_fmadd_ps(x, _mm512_set1_ps(CPU_EXP_LOG2E), shift), shift);
    const __m512 r = _mm512_fnmadd_ps(k, _mm512_set1_ps(CPU_EXP_LN2_LO),
                                      _mm512_fnmadd_ps(k, _mm512_set1_ps(CPU_EXP_LN2_HI), x));
    const __m512 r2 = _mm512_mul_ps(r, r);
    const __m512 hi = _mm512_fmadd_ps(
        _mm512_fmadd_ps(_mm512_set1_ps(CPU_EXP_C5), r, _mm512_set1_ps(CPU_EXP_C4)), r2,
        _mm512_fmadd_ps(_mm512_set1_ps(CPU_EXP_C3), r, _mm512_set1_ps(CPU_EXP_C2)));
    const __m512 p = _mm512_fmadd_ps(
        hi, r2, _mm512_fmadd_ps(_mm512_set1_ps(CPU_EXP_C1), r, _mm512_set1_ps(1.0f)));
    __m512 y = _mm512_scalef_ps(p, k);
    /* |k| > 192: overflow or underflow, decided by the sign alone */
    const __mmask16 big =
        _mm512_cmp_ps_mask(_mm512_abs_ps(k), _mm512_set1_ps(192.0f), _CMP_GT_OQ);
    if (big) {
        const __mmask16 pos = _mm512_cmp_ps_mask(k, _mm512_setzero_ps(), _CMP_GT_OQ);
        y = _mm512_mask_mov_ps(y, big, _mm512_setzero_ps());
        y = _mm512_mask_mov_ps(y, big & pos, _mm512_set1_ps(INFINITY));
    }
    return y;
}

void cpu_exp_avx512(int64_t n, float *y, const float *x) {
    int64_t i = 0;
    for (; i + 16 <= n; i += 16)
        _mm512_storeu_ps(y + i, exp16(_mm512_loadu_ps(x + i)));
    for (; i < n; i++)
        y[i] = cpu_exp1(x[i]);
}

void cpu_swiglu_avx512(int64_t n, float *out, const float *g, const float *u) {
    int64_t i = 0;
    for (; i + 16 <= n; i += 16) {
        const __m512 gv = _mm512_loadu_ps(g + i);
        const __m512 e = exp16(_mm512_sub_ps(_mm512_setzero_ps(), gv));
        const __m512 s = _mm512_div_ps(gv, _mm512_add_ps(_mm512_set1_ps(1.0f), e));
        _mm512_storeu_ps(out + i, _mm512_mul_ps(s, _mm512_loadu_ps(u + i)));
    }
    for (; i < n; i++)
        out[i] = cpu_swiglu1(g[i], u[i]);
}
