/* Kernel-level benchmarks and CPU facts for `chord bench`. */
#ifndef CHORD_TOOLS_BENCH_KERNELS_H
#define CHORD_TOOLS_BENCH_KERNELS_H

#include "chord.h"

/* Prints the instruction sets this CPU can run (scalar ... best), one line. */
int bench_print_isas(void);
/* Fused vs naive (dequantize to float, then float dot) matvec, GB/s of weights. */
int bench_kernels(int n_threads);
/* Threads the context's CPU backend uses. */
int bench_context_threads(const chord_context *ctx);

#endif
