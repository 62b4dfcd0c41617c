/* Shared by the tensor-core GEMMs (gemm.cu, gemm_pipe.cu): the layout of a warp's
 * m16n8 accumulator tiles in the output. */
#ifndef CHORD_CUDA_MMA_TILE_CUH
#define CHORD_CUDA_MMA_TILE_CUH

#include <stddef.h>
#include <stdint.h>

template <int MI> __device__ __forceinline__ void mma_zero_acc(float (&acc)[MI][4][4]) {
#pragma unroll
    for (int a = 0; a < MI; a++)
#pragma unroll
        for (int b = 0; b < 4; b++)
#pragma unroll
            for (int c = 0; c < 4; c++)
                acc[a][b][c] = 0.f;
}

/* Writes a warp's MI x 4 accumulator tiles (rows: tokens t0 + wm * BM/2 + ..., columns:
 * outputs o0 + wn * 32 + ...) to y [n][n_out], skipping tokens >= n and outputs >= n_out.
 * Pairs of columns go out as one float2 where n_out is even (8-byte aligned). */
template <int MI, int BM>
__device__ __forceinline__ void mma_store_acc(float *__restrict__ y, int64_t n_out, int n,
                                              int t0, int64_t o0, int wm, int wn, int gid,
                                              int tig, const float (&acc)[MI][4][4]) {
#pragma unroll
    for (int mi = 0; mi < MI; mi++) {
#pragma unroll
        for (int ni = 0; ni < 4; ni++) {
            const int r = t0 + wm * (BM / 2) + mi * 16 + gid;
            const int64_t col = o0 + wn * 32 + ni * 8 + 2 * tig;
#pragma unroll
            for (int h = 0; h < 2; h++) {
                const int rr = r + 8 * h;
                if (rr >= n) continue;
                float *yp = y + (size_t)rr * n_out + col;
                if (col + 1 < n_out && ((n_out & 1) == 0)) {
                    *reinterpret_cast<float2 *>(yp) =
                        make_float2(acc[mi][ni][2 * h], acc[mi][ni][2 * h + 1]);
                } else {
                    if (col < n_out) yp[0] = acc[mi][ni][2 * h];
                    if (col + 1 < n_out) yp[1] = acc[mi][ni][2 * h + 1];
                }
            }
        }
    }
}

#endif
