/* The per-ISA kernel tables and the activation-format helpers. */
#include <string.h>

#include "cpu/kernels.h"

size_t cpu_act_row_size(cpu_act act, int64_t n) {
    size_t b = 0;
    switch (act) {
    case CPU_ACT_F32: b = (size_t)n * sizeof(float); break;
    case CPU_ACT_Q8_32:
        b = (size_t)n + (size_t)(n / 32) * 2 * sizeof(float) + (size_t)(n / 4) * sizeof(int32_t);
        break;
    case CPU_ACT_Q8_256:
        b = (size_t)n + (size_t)(n / QK_K) * sizeof(float) +
            (size_t)(n / 16 + n / 32) * sizeof(int16_t);
        break;
    default: return 0;
    }
    return (b + 63) & ~(size_t)63;
}

void cpu_act_dequant(cpu_act act, const void *a, float *x, int64_t n) {
    if (act == CPU_ACT_F32) {
        memcpy(x, a, (size_t)n * sizeof(float));
        return;
    }
    const int64_t bs = act == CPU_ACT_Q8_32 ? 32 : QK_K;
    const int8_t *q = a;
    const float *d = (const float *)(q + n);
    for (int64_t i = 0; i < n; i++)
        x[i] = d[i / bs] * (float)q[i];
}

#define ENTRY(tp, act, quant, t, isa)                                                          \
    [CHORD_TYPE_##tp] = {act, quant, cpu_vec_dot_##t##_##isa, cpu_gemm_##t##_##isa}

#define TABLE(ISA, isa, attn)                                                                  \
    {                                                                                          \
        ISA, 1, {                                                                              \
            ENTRY(F32, CPU_ACT_F32, cpu_quantize_f32, f32, isa),                               \
                ENTRY(F16, CPU_ACT_F32, cpu_quantize_f32, f16, isa),                           \
                ENTRY(BF16, CPU_ACT_F32, cpu_quantize_f32, bf16, isa),                         \
                ENTRY(Q4_0, CPU_ACT_Q8_32, cpu_quantize_q8_32_##isa, q4_0, isa),               \
                ENTRY(Q4_1, CPU_ACT_Q8_32, cpu_quantize_q8_32_##isa, q4_1, isa),               \
                ENTRY(Q5_0, CPU_ACT_Q8_32, cpu_quantize_q8_32_##isa, q5_0, isa),               \
                ENTRY(Q5_1, CPU_ACT_Q8_32, cpu_quantize_q8_32_##isa, q5_1, isa),               \
                ENTRY(Q8_0, CPU_ACT_Q8_32, cpu_quantize_q8_32_##isa, q8_0, isa),               \
                ENTRY(Q2_K, CPU_ACT_Q8_256, cpu_quantize_q8_256_##isa, q2_K, isa),             \
                ENTRY(Q3_K, CPU_ACT_Q8_256, cpu_quantize_q8_256_##isa, q3_K, isa),             \
                ENTRY(Q4_K, CPU_ACT_Q8_256, cpu_quantize_q8_256_##isa, q4_K, isa),             \
                ENTRY(Q5_K, CPU_ACT_Q8_256, cpu_quantize_q8_256_##isa, q5_K, isa),             \
                ENTRY(Q6_K, CPU_ACT_Q8_256, cpu_quantize_q8_256_##isa, q6_K, isa),             \
        },                                                                                     \
        cpu_exp_##isa, cpu_swiglu_##isa, attn                                                  \
    }

static const cpu_kernels TABLES[CPU_ISA_COUNT] = {
    TABLE(CPU_ISA_SCALAR, scalar, NULL),
    TABLE(CPU_ISA_AVX2, avx2, NULL),
    TABLE(CPU_ISA_AVX512, avx512, cpu_attn_batch_avx512),
};

/* AVX-512's fast table: the exact one but for Q8_0's prefill (gemm_q4q8_avx512.c) */
static const cpu_kernels AVX512_FAST = {
    CPU_ISA_AVX512,
    0,
    {
        ENTRY(F32, CPU_ACT_F32, cpu_quantize_f32, f32, avx512),
        ENTRY(F16, CPU_ACT_F32, cpu_quantize_f32, f16, avx512),
        ENTRY(BF16, CPU_ACT_F32, cpu_quantize_f32, bf16, avx512),
        ENTRY(Q4_0, CPU_ACT_Q8_32, cpu_quantize_q8_32_avx512, q4_0, avx512),
        ENTRY(Q4_1, CPU_ACT_Q8_32, cpu_quantize_q8_32_avx512, q4_1, avx512),
        ENTRY(Q5_0, CPU_ACT_Q8_32, cpu_quantize_q8_32_avx512, q5_0, avx512),
        ENTRY(Q5_1, CPU_ACT_Q8_32, cpu_quantize_q8_32_avx512, q5_1, avx512),
        [CHORD_TYPE_Q8_0] = {CPU_ACT_Q8_32, cpu_quantize_q8_32_avx512, cpu_vec_dot_q8_0_avx512,
                             cpu_gemm_q8_0_fast_avx512},
        ENTRY(Q2_K, CPU_ACT_Q8_256, cpu_quantize_q8_256_avx512, q2_K, avx512),
        ENTRY(Q3_K, CPU_ACT_Q8_256, cpu_quantize_q8_256_avx512, q3_K, avx512),
        ENTRY(Q4_K, CPU_ACT_Q8_256, cpu_quantize_q8_256_avx512, q4_K, avx512),
        ENTRY(Q5_K, CPU_ACT_Q8_256, cpu_quantize_q8_256_avx512, q5_K, avx512),
        ENTRY(Q6_K, CPU_ACT_Q8_256, cpu_quantize_q8_256_avx512, q6_K, avx512),
    },
    cpu_exp_avx512,
    cpu_swiglu_avx512,
    cpu_attn_batch_avx512,
};

const cpu_kernels *cpu_kernels_get(cpu_isa isa) {
    if ((int)isa < 0 || isa >= CPU_ISA_COUNT) isa = CPU_ISA_SCALAR;
    return &TABLES[isa];
}

const cpu_kernels *cpu_kernels_fast(cpu_isa isa) {
    return isa == CPU_ISA_AVX512 ? &AVX512_FAST : cpu_kernels_get(isa);
}

const cpu_kernels *cpu_kernels_pick(cpu_isa isa, int exact) {
    return exact ? cpu_kernels_get(isa) : cpu_kernels_fast(isa);
}
