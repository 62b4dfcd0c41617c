/* A decode matvec launch (matvec.cu, matvec_bulk.cu): up to CUDA_MV_MAXW weights that
 * share one quantized input. */
#ifndef CHORD_CUDA_MVJOB_CUH
#define CHORD_CUDA_MVJOB_CUH

#include "quant.cuh"

/* Up to CUDA_MV_MAXW weights of one type and row length in one launch: weight k owns
 * blocks [bstart[k], bstart[k+1]); res[k] (may be NULL) gets y added (residual). */
typedef struct mvjob {
    wview w[CUDA_MV_MAXW];
    float *y[CUDA_MV_MAXW];
    float *res[CUDA_MV_MAXW];
    unsigned bstart[CUDA_MV_MAXW + 1];
    int nw;
    int nw0; /* matvec_q2_kernel: weights [0, nw0) have its first type */
    ktr kt;
} mvjob;

__device__ __forceinline__ int job_pick(const mvjob &job) {
    int k = 0;
#pragma unroll
    for (int i = 1; i < CUDA_MV_MAXW; i++)
        if (i < job.nw && blockIdx.x >= job.bstart[i]) k = i;
    return k;
}

/* Which weight of the job owns block tile t. */
__device__ __forceinline__ int job_pick_tile(const mvjob &job, unsigned t) {
    int k = 0;
#pragma unroll
    for (int i = 1; i < CUDA_MV_MAXW; i++)
        if (i < job.nw && t >= job.bstart[i]) k = i;
    return k;
}

__device__ __forceinline__ float mv_warp_sum(float v) {
#pragma unroll
    for (int o = 16; o > 0; o >>= 1)
        v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}

/* matvec_bulk.cu: the launch through shared-memory stages filled by bulk copies, for
 * weights of types t0 (k < job.nw0) and t1 when it applies (type, size and the
 * CHORD_CUDA_BULK threshold); false: not launched, use the register kernels. */
bool cuda_matvec_bulk(cuda_backend *be, mvjob &job, const xact &xa, int t0, int t1);

#endif
