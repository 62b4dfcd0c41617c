/* e^x as the golden reference (llama.cpp's x86 CPU backend, AVX-512 build) evaluates it
 * in softmax and SiLU. Matching its rounding, not just its accuracy, matters: the
 * random-weight golden models are chaotic, and a one-ulp difference in an attention
 * weight or a SiLU output can flip the int8 rounding of the next activation.
 *
 * Method: e^x = 2^k * e^r with k = round(x * log2(e)) and r = x - k*ln2, where ln2 is
 * split into a float with trailing zero bits (LN2_HI, so k*LN2_HI is exact) and the
 * remainder (LN2_LO). e^r on |r| <= ln2/2 is a degree-5 polynomial, evaluated in
 * Estrin's form; 2^k is applied exactly (one rounding, in the subnormal range only).
 * Adding 1.5 * 2^23 rounds x * log2(e) to an integer in the float's low bits.
 * |k| > 192 gives 0 or infinity. Error about 2 ulp at most (tests/test_activ.c). */
#ifndef CHORD_CPU_EXP_REF_H
#define CHORD_CPU_EXP_REF_H

#include <math.h>

#include "cpu/fma_ref.h"

#define CPU_EXP_SHIFT 0x1.8p23f
#define CPU_EXP_LOG2E 0x1.715476p+0f
#define CPU_EXP_LN2_HI 0x1.62e4p-1f
#define CPU_EXP_LN2_LO 0x1.7f7d1cp-20f
#define CPU_EXP_C1 0x1.ffffecp-1f
#define CPU_EXP_C2 0x1.fffdb6p-2f
#define CPU_EXP_C3 0x1.555e66p-3f
#define CPU_EXP_C4 0x1.573e2ep-5f
#define CPU_EXP_C5 0x1.0e4020p-7f

static inline float cpu_exp1(float x) {
    const float k = cpu_fma1(x, CPU_EXP_LOG2E, CPU_EXP_SHIFT) - CPU_EXP_SHIFT;
    if (k != k) return x + x; /* NaN in, NaN out */
    if (fabsf(k) > 192.0f) return k > 0 ? INFINITY : 0.0f;
    const float r = cpu_fma1(-k, CPU_EXP_LN2_LO, cpu_fma1(-k, CPU_EXP_LN2_HI, x));
    const float r2 = r * r;
    const float hi =
        cpu_fma1(cpu_fma1(CPU_EXP_C5, r, CPU_EXP_C4), r2, cpu_fma1(CPU_EXP_C3, r, CPU_EXP_C2));
    const float p = cpu_fma1(hi, r2, cpu_fma1(CPU_EXP_C1, r, 1.0f));
    return ldexpf(p, (int)k);
}

/* g / (1 + e^-g) * u: SiLU of the gate times the up projection, in that order */
static inline float cpu_swiglu1(float g, float u) {
    return g / (1.0f + cpu_exp1(-g)) * u;
}

#endif
