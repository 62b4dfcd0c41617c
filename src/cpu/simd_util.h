/* ISA-neutral helpers of the SIMD kernel files: forced inlining and unaligned loads of
 * little-endian quant fields (memcpy, which compiles to one load). */
#ifndef CHORD_CPU_SIMD_UTIL_H
#define CHORD_CPU_SIMD_UTIL_H

#include <stdint.h>
#include <string.h>

#define INLINE static inline __attribute__((always_inline))

INLINE uint32_t ld32(const void *p) {
    uint32_t v;
    memcpy(&v, p, 4);
    return v;
}
INLINE uint16_t ld16(const void *p) {
    uint16_t v;
    memcpy(&v, p, 2);
    return v;
}

#endif
