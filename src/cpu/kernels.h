/* CPU compute kernels: fused dequantize x dot products on quantized weight rows (read
 * straight from the mapped file) against activations quantized once per matmul, with
 * one table of kernels per ISA, chosen at run time.
 *
 * Activation formats (cpu_act), one row of n elements:
 *   CPU_ACT_F32     float x[n]                       for F32, F16, BF16 weights
 *   CPU_ACT_Q8_32   int8 qs[n], float d[n/32],       for Q4_0, Q4_1, Q5_0, Q5_1, Q8_0
 *                   float s[n/32], int32 c[n/4]      (llama.cpp's Q8_0 / Q8_1)
 *                   x[i] ~= d[i/32] * qs[i]; d and s are halves kept as floats:
 *                   d = half(max|x| / 127), s = half(max|x| / 127 * sum of the block's qs);
 *                   c[j] = -128 * (qs[4j] + qs[4j+1] + qs[4j+2] + qs[4j+3]) (the offset
 *                   term of biased unsigned weights, for vpdpbusd)
 *   CPU_ACT_Q8_256  int8 qs[n], float d[n/256],      for Q2_K, Q3_K, Q4_K, Q5_K, Q6_K
 *                   int16 bsums[n/16],               (llama.cpp's Q8_K)
 *                   int16 sums32[n/32]
 *                   x[i] ~= d[i/256] * qs[i], d = 1 / (127 / max|x|),
 *                   bsums[s] = sum of qs[16s..16s+15], sums32[s] = sum of qs[32s..32s+31]
 * The qs of a row are contiguous, so SIMD kernels load them with plain vector loads.
 * q = round-to-nearest-even(x * (127 / max|x|)), in -127..127 (0 where max|x| = 0);
 * every ISA produces the same bytes (for finite inputs).
 *
 * Arithmetic: in the exact tables (cpu_kernels_get) every ISA computes every dot product
 * exactly as llama.cpp's x86 CPU backend does (see kernels_scalar.c), so all ISAs give the
 * same bits, and the same bits as llama.cpp. The scalar kernels are the reference. The
 * fast tables (cpu_kernels_fast) may sum a type's float terms in another order where
 * that order is much faster (AVX-512: Q8_0 prefill, one float step per block instead of
 * eight); the integer dots are exact either way. CHORD_CPU_EXACT=1 picks the exact table.
 *
 * Kernel contracts (n: elements per row, a multiple of the weight type's block size):
 *   vec_dot(n, s, w, a):   *s = dot(weight row w, activation row a)
 *   gemm_tile(n, nw, na, s, lds, w, ldw, a, lda, scratch):
 *       s[c * lds + r] = dot(w + r * ldw, a + c * lda) for r < nw, c < na
 *       (ldw, lda in bytes). Each weight block is unpacked once and used for several
 *       activation rows, so this is much faster than nw * na vec_dot calls. scratch:
 *       CPU_GEMM_SCRATCH bytes, 64-byte aligned, the calling thread's for the call (the
 *       tiles' accumulators live there, not on the stack). */
#ifndef CHORD_CPU_KERNELS_H
#define CHORD_CPU_KERNELS_H

#include <stddef.h>
#include <stdint.h>

#include "quant/types.h"

typedef enum cpu_isa {
    CPU_ISA_SCALAR = 0,
    CPU_ISA_AVX2 = 1,   /* AVX2 + FMA + F16C + BMI2 */
    CPU_ISA_AVX512 = 2, /* AVX-512 F/BW/VL/DQ + VNNI */
    CPU_ISA_COUNT = 3,
} cpu_isa;

/* Best ISA the CPU and OS support (detected once), capped by the environment variable
 * CHORD_ISA=scalar|avx2|avx512 (read on every call). */
cpu_isa cpu_isa_detect(void);
/* Whether the environment asks for the exact kernels: CHORD_CPU_EXACT set and not "0"
 * (read on every call; the CPU backend reads it once, when it is created). */
int cpu_exact_requested(void);
/* Same without the environment cap. */
cpu_isa cpu_isa_hardware(void);
const char *cpu_isa_name(cpu_isa isa); /* "scalar", "avx2", "avx512" */

typedef enum cpu_act {
    CPU_ACT_NONE = 0, /* the type has no kernels */
    CPU_ACT_F32,
    CPU_ACT_Q8_32,
    CPU_ACT_Q8_256,
} cpu_act;

/* Bytes of one activation row of n elements, rounded up to 64 (rows stay aligned). */
size_t cpu_act_row_size(cpu_act act, int64_t n);
/* Scalar: converts one activation row back to floats (for tests). */
void cpu_act_dequant(cpu_act act, const void *a, float *x, int64_t n);

typedef void (*cpu_quantize_fn)(const float *x, void *a, int64_t n);
typedef void (*cpu_vec_dot_fn)(int64_t n, float *s, const void *w, const void *a);
typedef void (*cpu_gemm_tile_fn)(int64_t n, int nw, int na, float *s, size_t lds, const void *w,
                                 size_t ldw, const void *a, size_t lda, void *scratch);
/* bytes of gemm_tile scratch */
#define CPU_GEMM_SCRATCH ((size_t)256 * 1024)

typedef struct cpu_type_kernels {
    cpu_act act;                  /* CPU_ACT_NONE: no kernels for this weight type */
    cpu_quantize_fn quantize_act; /* float row -> activation row of `act` */
    cpu_vec_dot_fn vec_dot;
    cpu_gemm_tile_fn gemm_tile;
} cpu_type_kernels;

/* Elementwise kernels (activ_<isa>.c), bit-identical on every ISA (see exp_ref.h):
 *   exp(n, y, x):        y[i] = e^x[i] (y may be x)
 *   swiglu(n, o, g, u):  o[i] = g[i] / (1 + e^-g[i]) * u[i] */
typedef void (*cpu_exp_fn)(int64_t n, float *y, const float *x);
typedef void (*cpu_swiglu_fn)(int64_t n, float *out, const float *g, const float *u);

/* Attention of up to 16 queries sharing one K/V head (attn_<isa>.c), each query's output
 * bit-identical to the per-query path of backend_cpu.c (F16 dots of the query, rounded
 * to F16, with each key; softmax; F16 dots of the rounded weights with each V row):
 *   query j < nq: q[j] (hd floats), len[j] keys, output out[j] (hd floats)
 *   key p: k + p * ldk (hd halves); dim i of the values: vt + i * ldv (len halves)
 *   scratch: CPU_ATTN_SCRATCH(hd, max len) floats, any alignment */
typedef struct cpu_attn_batch {
    int nq, hd;
    const float *q[16];
    float *out[16];
    int len[16];
    const chord_half *k, *vt;
    size_t ldk, ldv;
    float scale;
    cpu_exp_fn exp;
    float *scratch;
} cpu_attn_batch;
#define CPU_ATTN_SCRATCH(hd, len) (34 * (size_t)(hd) + 18 * ((size_t)(len) + 16) + 256)
typedef void (*cpu_attn_fn)(const cpu_attn_batch *b);

typedef struct cpu_kernels {
    cpu_isa isa;
    int exact; /* every kernel in the reference's float order (see above) */
    cpu_type_kernels t[CHORD_TYPE_COUNT];
    cpu_exp_fn exp;
    cpu_swiglu_fn swiglu;
    cpu_attn_fn attn_batch; /* NULL: the per-query path only */
} cpu_kernels;

/* The static tables of an ISA (isa must be <= cpu_isa_hardware() to be called): the exact
 * one, and the fast one (the exact one's kernels where it has no faster order). */
const cpu_kernels *cpu_kernels_get(cpu_isa isa);
const cpu_kernels *cpu_kernels_fast(cpu_isa isa);
/* The table the CPU backend runs: cpu_kernels_get if exact, else cpu_kernels_fast. */
const cpu_kernels *cpu_kernels_pick(cpu_isa isa, int exact);

/* ---- internal: per-ISA entry points, defined in kernels_<isa>.c ---- */
#define CPU_KERNEL_TYPES(X, isa)                                                               \
    X(f32, isa)                                                                                \
    X(f16, isa)                                                                                \
    X(bf16, isa)                                                                               \
    X(q4_0, isa) X(q4_1, isa) X(q5_0, isa) X(q5_1, isa) X(q8_0, isa) X(q2_K, isa) X(q3_K, isa) \
        X(q4_K, isa) X(q5_K, isa) X(q6_K, isa)

#define CPU_DECLARE_TYPE_KERNELS(t, isa)                                                       \
    void cpu_vec_dot_##t##_##isa(int64_t n, float *s, const void *w, const void *a);           \
    void cpu_gemm_##t##_##isa(int64_t n, int nw, int na, float *s, size_t lds, const void *w,  \
                              size_t ldw, const void *a, size_t lda, void *scratch);

#define CPU_DECLARE_ISA_KERNELS(isa)                                                           \
    void cpu_quantize_q8_32_##isa(const float *x, void *a, int64_t n);                         \
    void cpu_quantize_q8_256_##isa(const float *x, void *a, int64_t n);                        \
    void cpu_exp_##isa(int64_t n, float *y, const float *x);                                   \
    void cpu_swiglu_##isa(int64_t n, float *out, const float *g, const float *u);              \
    CPU_KERNEL_TYPES(CPU_DECLARE_TYPE_KERNELS, isa)

void cpu_quantize_f32(const float *x, void *a, int64_t n); /* a copy */
CPU_DECLARE_ISA_KERNELS(scalar)
CPU_DECLARE_ISA_KERNELS(avx2)
CPU_DECLARE_ISA_KERNELS(avx512)
/* AVX-512 prefill gemm tiles with (weight row, activation row) pairs in the lanes
 * (gemm_vert_avx512.c, gemm_q4q8_avx512.c); the gemm_tile contract, for several
 * activation rows. q8_0_fast: Q8_0 in the fast order (one float step per block). */
#define CPU_DECLARE_GEMMV(t)                                                                   \
    void cpu_gemmv_##t##_avx512(int64_t n, int nw, int na, float *s, size_t lds,               \
                                const void *w, size_t ldw, const void *a, size_t lda,          \
                                void *scratch);
CPU_DECLARE_GEMMV(q4_0)
CPU_DECLARE_GEMMV(q4_1)
CPU_DECLARE_GEMMV(q5_0)
CPU_DECLARE_GEMMV(q5_1)
CPU_DECLARE_GEMMV(q8_0)
CPU_DECLARE_GEMMV(q8_0_fast)
CPU_DECLARE_GEMMV(q4_K)
CPU_DECLARE_GEMMV(q5_K)
CPU_DECLARE_GEMMV(q6_K)
/* Q8_0's fast gemm_tile: the exact decode path for one activation row, else
 * cpu_gemmv_q8_0_fast_avx512 */
void cpu_gemm_q8_0_fast_avx512(int64_t n, int nw, int na, float *s, size_t lds, const void *w,
                               size_t ldw, const void *a, size_t lda, void *scratch);
/* attention batches (attn_avx512.c) */
void cpu_attn_batch_avx512(const cpu_attn_batch *b);

#endif
