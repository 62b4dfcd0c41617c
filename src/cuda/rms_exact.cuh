/* RMS norm's 1 / rms(x) rounded exactly as the CPU backend rounds it (device code; used
 * by elementwise.cu's rmsnorm kernels, and meant for every kernel that norms a row). */
#ifndef CHORD_CUDA_RMS_EXACT_CUH
#define CHORD_CUDA_RMS_EXACT_CUH

#include <cuda_runtime.h>
#include <stdint.h>

/* Can m (> 0), rounded to float as f, differ in its float rounding from another sum of
 * the same n nonnegative terms, added in another order? Each sum is within about
 * (depth) 2^-53 of the exact one (depth: additions on a term's path, < n + 16 here), so
 * only an m that close to a rounding boundary of f can. */
__device__ __forceinline__ bool rounds_same(double m, float f, int n) {
    if (!(f >= 1.17549435e-38f) || isinf(f)) return false;
    const uint32_t b = __float_as_uint(f);
    const double df = (double)f;
    const double lo = __dmul_rn(0.5, __dadd_rn(df, (double)__uint_as_float(b - 1)));
    const double hi = __dmul_rn(0.5, __dadd_rn(df, (double)__uint_as_float(b + 1)));
    const double margin = __dmul_rn(m, (double)(n + 16) * 0x1p-52);
    return __dsub_rn(m, lo) > margin && __dsub_rn(hi, m) > margin;
}

/* sum / dim as the CPU's division (a product where dim is a power of two: the same) */
__device__ __forceinline__ double rms_mean(double sum, int dim) {
    return (dim & (dim - 1)) == 0 ? __dmul_rn(sum, 1.0 / (double)dim)
                                  : __ddiv_rn(sum, (double)dim);
}

/* 1 / rms of one row from each thread's partial sum ss (any split of the row's products
 * over the threads, each added in double), by the whole block (every thread gets it), as
 * the CPU backend: products in float, their sum in double in index order,
 * (float)(sum / dim) + eps, 1 / sqrt. The in-order sum is one long chain, so the block adds
 * in parallel and thread 0 redoes the sum in order from xr only when the rounding to
 * float could differ (rounds_same; about dim * 2^-28 of the rows). */
__device__ __forceinline__ float rms_scale_reduce(double ss, const float *xr, int dim,
                                                  float eps) {
    __shared__ double red[32];
    __shared__ float res;
#pragma unroll
    for (int off = 16; off > 0; off >>= 1)
        ss = __dadd_rn(ss, __shfl_xor_sync(0xffffffffu, ss, off));
    const int lane = threadIdx.x & 31, wid = threadIdx.x >> 5;
    if (lane == 0) red[wid] = ss;
    __syncthreads();
    if (wid == 0) { /* the warps' sums by shuffles too (any order: see rounds_same) */
        double tot = lane < (int)(blockDim.x >> 5) ? red[lane] : 0.0;
#pragma unroll
        for (int off = 16; off > 0; off >>= 1)
            tot = __dadd_rn(tot, __shfl_xor_sync(0xffffffffu, tot, off));
        if (lane == 0) {
            double m = rms_mean(tot, dim);
            float f = __double2float_rn(m);
            if (m != 0.0 && !rounds_same(m, f, dim)) {
                tot = 0.0;
                for (int i = 0; i < dim; i++)
                    tot = __dadd_rn(tot, (double)__fmul_rn(xr[i], xr[i]));
                m = rms_mean(tot, dim);
                f = __double2float_rn(m);
            }
            res = __frcp_rn(__fsqrt_rn(__fadd_rn(f, eps)));
        }
    }
    __syncthreads();
    return res;
}

/* 1 / rms(xr) of one row by the whole block; each thread's loads all go out before its
 * additions (a chain of dependent L2 round trips would dominate). */
__device__ __forceinline__ float rms_scale_exact(const float *__restrict__ xr, int dim,
                                                 float eps) {
    constexpr int UNR = 8;
    double ss = 0.0;
    for (int i0 = threadIdx.x; i0 < dim; i0 += UNR * blockDim.x) {
        float v[UNR];
#pragma unroll
        for (int j = 0; j < UNR; j++) {
            const int i = i0 + j * (int)blockDim.x;
            v[j] = i < dim ? xr[i] : 0.f;
        }
#pragma unroll
        for (int j = 0; j < UNR; j++)
            ss = __dadd_rn(ss, (double)__fmul_rn(v[j], v[j]));
    }
    return rms_scale_reduce(ss, xr, dim, eps);
}

#endif
