/* Run-time ISA detection: cpuid for the instructions, xgetbv for the OS saving the
 * vector state. The hardware result is computed once; CHORD_ISA caps it per call. */
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "cpu/kernels.h"

#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>

static uint64_t read_xcr0(void) {
    uint32_t lo, hi;
    __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
    return ((uint64_t)hi << 32) | lo;
}

static cpu_isa detect_hw(void) {
    unsigned a, b, c, d;
    if (!__get_cpuid(1, &a, &b, &c, &d)) return CPU_ISA_SCALAR;
    const int osxsave = (c >> 27) & 1, avx = (c >> 28) & 1;
    const int fma = (c >> 12) & 1, f16c = (c >> 29) & 1;
    if (!osxsave || !avx) return CPU_ISA_SCALAR;
    const uint64_t xcr0 = read_xcr0();
    if ((xcr0 & 0x6) != 0x6) return CPU_ISA_SCALAR; /* SSE + AVX state */
    if (__get_cpuid_max(0, NULL) < 7) return CPU_ISA_SCALAR;
    __cpuid_count(7, 0, a, b, c, d);
    const int avx2 = (b >> 5) & 1, bmi2 = (b >> 8) & 1;
    if (!(avx2 && fma && f16c && bmi2)) return CPU_ISA_SCALAR;
    const int avx512f = (b >> 16) & 1, avx512dq = (b >> 17) & 1;
    const int avx512bw = (b >> 30) & 1, avx512vl = (b >> 31) & 1;
    const int vnni = (c >> 11) & 1;
    const int zmm_state = (xcr0 & 0xe0) == 0xe0; /* opmask, ZMM0-15 upper, ZMM16-31 */
    if (avx512f && avx512dq && avx512bw && avx512vl && vnni && zmm_state) return CPU_ISA_AVX512;
    return CPU_ISA_AVX2;
}
#else
static cpu_isa detect_hw(void) {
    return CPU_ISA_SCALAR;
}
#endif

cpu_isa cpu_isa_hardware(void) {
    /* The one piece of mutable global state allowed: a once-computed feature result.
     * Racing first calls compute the same value. */
    static atomic_int cached = -1;
    int v = atomic_load_explicit(&cached, memory_order_relaxed);
    if (v < 0) {
        v = (int)detect_hw();
        atomic_store_explicit(&cached, v, memory_order_relaxed);
    }
    return (cpu_isa)v;
}

cpu_isa cpu_isa_detect(void) {
    cpu_isa hw = cpu_isa_hardware();
    const char *e = getenv("CHORD_ISA");
    if (e && *e) {
        cpu_isa cap = hw;
        if (!strcasecmp(e, "scalar"))
            cap = CPU_ISA_SCALAR;
        else if (!strcasecmp(e, "avx2"))
            cap = CPU_ISA_AVX2;
        else if (!strcasecmp(e, "avx512"))
            cap = CPU_ISA_AVX512;
        if (cap < hw) hw = cap;
    }
    return hw;
}

int cpu_exact_requested(void) {
    const char *e = getenv("CHORD_CPU_EXACT");
    return e && *e && strcmp(e, "0") != 0;
}

const char *cpu_isa_name(cpu_isa isa) {
    switch (isa) {
    case CPU_ISA_SCALAR: return "scalar";
    case CPU_ISA_AVX2: return "avx2";
    case CPU_ISA_AVX512: return "avx512";
    default: return "unknown";
    }
}
