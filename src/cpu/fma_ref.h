/* A fused multiply-add for the portable (scalar) kernels, which are built without FMA
 * instructions. */
#ifndef CHORD_CPU_FMA_REF_H
#define CHORD_CPU_FMA_REF_H

#include <math.h>
#include <stdint.h>
#include <string.h>

/* fmaf(a, b, c), rounded once, without a libm call: a * b is exact in double and the
 * sum is rounded to double once; rounding that to float can only differ from rounding
 * the exact value when it lies exactly halfway between two floats (or in the float
 * subnormal range), and those rare cases go to fmaf. */
static inline float cpu_fma1(float a, float b, float c) {
    const double t = (double)a * (double)b + (double)c;
    uint64_t u;
    memcpy(&u, &t, sizeof u);
    const int e = (int)((u >> 52) & 0x7ff);
    if ((u & 0x1fffffffu) == 0x10000000u || e < 1023 - 126) return fmaf(a, b, c);
    return (float)t;
}

#endif
