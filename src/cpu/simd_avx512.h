/* Small helpers shared by the AVX-512 kernel files (include only from *_avx512.c: the
 * intrinsics need that file's ISA flags). */
#ifndef CHORD_CPU_SIMD_AVX512_H
#define CHORD_CPU_SIMD_AVX512_H

#include <immintrin.h>
#include <stdint.h>
#include <string.h>

#include "cpu/simd_util.h"

#define ALIGN64 __attribute__((aligned(64)))


/* 16 halves, each at its own pointer -> floats (packed with scalar ops first, which run
 * beside the busy vector ports) */
INLINE __m512 halves16(const uint8_t *const p[16]) {
    uint64_t w[4];
    for (int j = 0; j < 4; j++) {
        uint64_t v = 0;
        for (int i = 0; i < 4; i++)
            v |= (uint64_t)ld16(p[4 * j + i]) << (16 * i);
        w[j] = v;
    }
    const __m128i lo = _mm_insert_epi64(_mm_cvtsi64_si128((long long)w[0]), (long long)w[1], 1);
    const __m128i hi = _mm_insert_epi64(_mm_cvtsi64_si128((long long)w[2]), (long long)w[3], 1);
    return _mm512_cvtph_ps(_mm256_setr_m128i(lo, hi));
}

/* chunk k (128 bits) lane i of the result = the sum of chunk k of p[i] */
INLINE __m512i reduce4_epi32(__m512i p0, __m512i p1, __m512i p2, __m512i p3) {
    const __m512i q01 =
        _mm512_add_epi32(_mm512_unpacklo_epi32(p0, p1), _mm512_unpackhi_epi32(p0, p1));
    const __m512i q23 =
        _mm512_add_epi32(_mm512_unpacklo_epi32(p2, p3), _mm512_unpackhi_epi32(p2, p3));
    return _mm512_add_epi32(_mm512_unpacklo_epi64(q01, q23), _mm512_unpackhi_epi64(q01, q23));
}

#endif
