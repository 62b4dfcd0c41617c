/* Portable elementwise kernels: the reference for the SIMD ones (see exp_ref.h). */
#include "cpu/exp_ref.h"
#include "cpu/kernels.h"

void cpu_exp_scalar(int64_t n, float *y, const float *x) {
    for (int64_t i = 0; i < n; i++)
        y[i] = cpu_exp1(x[i]);
}

void cpu_swiglu_scalar(int64_t n, float *out, const float *g, const float *u) {
    for (int64_t i = 0; i < n; i++)
        out[i] = cpu_swiglu1(g[i], u[i]);
}
