/* Quantized matrix multiplication on the CPU: activations are quantized once per call
 * (shared by all weights of the call), rows of all weights are spread over the pool. */
#ifndef CHORD_CPU_MATMUL_H
#define CHORD_CPU_MATMUL_H

#include "backend.h"
#include "cpu/kernels.h"
#include "cpu/threadpool.h"

/* Scratch for the quantized activations; grows as needed. One per caller thread. */
typedef struct cpu_matmul_ctx cpu_matmul_ctx;
cpu_matmul_ctx *cpu_matmul_ctx_new(void);      /* NULL when out of memory */
void cpu_matmul_ctx_free(cpu_matmul_ctx *ctx); /* NULL ok */

/* For k < n_w: ys[k][t * ws[k]->n_out + o] = dot(row o of ws[k]->host, x[t]) for t < n,
 * x is [n][n_in] floats (n_in = ws[k]->n_in, the same for every k). pool may be NULL
 * (single-threaded). Chunks of rows go to the gemm tiles, for n == 1 too (they run
 * several weight rows at once).
 * Fails (CHORD_E_INVALID_ARG / CHORD_E_UNSUPPORTED / CHORD_E_NOMEM) without writing. */
chord_status cpu_matmul(cpu_pool *pool, const cpu_kernels *k, cpu_matmul_ctx *ctx, int n_w,
                        float *const *ys, const chord_weight *const *ws, const float *x, int n,
                        chord_error *err);

#endif
