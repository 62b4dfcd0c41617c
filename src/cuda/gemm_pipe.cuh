/* Pipelined prefill GEMMs (gemm_pipe.cu), called by cuda_gemm / cuda_gemm_multi (gemm.cu). */
#ifndef CHORD_CUDA_GEMM_PIPE_CUH
#define CHORD_CUDA_GEMM_PIPE_CUH

#include "cuda_common.cuh"

/* weights of one type and row length sharing the input in one launch */
#define GEMM_MAXW 3

/* ys[k] = W_k x for n tokens (k < nw <= GEMM_MAXW, one type, one row length) with the
 * cp.async pipelined kernels, bit for bit what the old kernels of gemm.cu compute. bm:
 * token tile (128, 64, 32; anything else: chosen here). Returns false (nothing launched)
 * where the shape or type is not handled: the caller then uses the old kernels. */
bool cuda_gemm_pipe(cuda_backend *be, int type, int nw, const wview *ws, const float *x,
                    const qact *xa, float *const *ys, int n, int bm);

/* gemm.cu: cuda_gemm for n_w weights of one type and row length sharing x (and xa), in
 * one launch where the pipelined kernels apply (the backend's matmul groups q / k / v and
 * gate / up this way). */
void cuda_gemm_multi(cuda_backend *be, int n_w, const chord_weight *const *ws, const float *x,
                     const qact *xa, float *const *ys, int n);

#endif
