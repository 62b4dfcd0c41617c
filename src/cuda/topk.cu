/* The k best of n values (the output head's logits) on the GPU, so that sampling reads k
 * candidates instead of the whole vocabulary over the bus.
 *
 * Each value becomes a 64-bit key, (order-preserving bits of the value) << 32 | ~index,
 * so that one descending sort orders by value and then by smaller index, with NaN and
 * -inf (key 0) last, +inf equal to FLT_MAX and -0 equal to +0 (as the host sampler
 * treats them). Stage 1:
 * every block sorts a chunk of TK_CHUNK keys in shared memory (bitonic) and keeps its best
 * k; stage 2: one block sorts those nb * k keys and writes the best k. */
#include <float.h>

#include "cuda_common.cuh"

#define TK_CHUNK 2048 /* keys per stage-1 block: 16 KiB of shared memory */
#define TK_MERGE 4096 /* keys stage 2 sorts at most: 32 KiB */
#define TK_THREADS 512

__device__ __forceinline__ unsigned long long tk_key(float v, int i) {
    uint32_t hi = 0;
    if (!isnan(v) && v != -INFINITY) {
        const uint32_t u = v == 0.0f ? 0u : __float_as_uint(fminf(v, FLT_MAX)); /* -0 = +0 */
        hi = u ^ ((0u - (u >> 31)) | 0x80000000u); /* >= 0x00800000 for finite floats */
    }
    return (unsigned long long)hi << 32 | (0xFFFFFFFFu - (uint32_t)i);
}

/* Sorts a[0..m) (m a power of two) descending; the whole block takes part. */
__device__ void tk_sort(unsigned long long *a, int m) {
    for (int k = 2; k <= m; k <<= 1)
        for (int j = k >> 1; j > 0; j >>= 1) {
            for (int i = threadIdx.x; i < m; i += blockDim.x) {
                const int l = i ^ j;
                if (l > i) {
                    const unsigned long long x = a[i], y = a[l];
                    if ((i & k) == 0 ? x < y : x > y) {
                        a[i] = y;
                        a[l] = x;
                    }
                }
            }
            __syncthreads();
        }
}

__global__ void __launch_bounds__(TK_THREADS)
    topk_chunk_kernel(unsigned long long *__restrict__ best, const float *__restrict__ x, int n,
                      int k) {
    __shared__ unsigned long long a[TK_CHUNK];
    const int base = blockIdx.x * TK_CHUNK;
    for (int i = threadIdx.x; i < TK_CHUNK; i += blockDim.x)
        a[i] = base + i < n ? tk_key(x[base + i], base + i) : 0ull;
    __syncthreads();
    tk_sort(a, TK_CHUNK);
    for (int i = threadIdx.x; i < k; i += blockDim.x)
        best[(size_t)blockIdx.x * k + i] = a[i];
}

__global__ void __launch_bounds__(TK_THREADS)
    topk_merge_kernel(int32_t *__restrict__ ids, float *__restrict__ vals,
                      const unsigned long long *__restrict__ best, int m_in, int m,
                      const float *__restrict__ x, int k) {
    __shared__ unsigned long long a[TK_MERGE];
    for (int i = threadIdx.x; i < m; i += blockDim.x)
        a[i] = i < m_in ? best[i] : 0ull;
    __syncthreads();
    tk_sort(a, m);
    for (int i = threadIdx.x; i < k; i += blockDim.x) {
        const int32_t id = (int32_t)(0xFFFFFFFFu - (uint32_t)(a[i] & 0xFFFFFFFFull));
        ids[i] = id;
        vals[i] = x[id]; /* as stored: the sampler applies its own clamping */
    }
}

chord_status cuda_topk(chord_backend *b, const float *x, int n, int k, int32_t *ids,
                       float *vals, chord_error *err) {
    cuda_backend *be = cuda_be(b);
    if (n <= 0 || k <= 0 || k > n)
        return chord_fail(err, CHORD_E_INVALID_ARG, "topk: k = %d of n = %d", k, n);
    const int nb = (int)(((int64_t)n + TK_CHUNK - 1) / TK_CHUNK);
    if (k > TK_CHUNK || (long)nb * k > TK_MERGE)
        return chord_fail(err, CHORD_E_UNSUPPORTED,
                          "topk: %d of %d values is more than the GPU "
                          "selects (%d)",
                          k, n, TK_MERGE / nb);
    cuda_rec_flush(be);
    cudaSetDevice(be->device);
    int m = 1;
    while (m < nb * k)
        m <<= 1;
    /* scratch: nb * k keys, then k ids and k values */
    const size_t kb = (size_t)nb * k * sizeof(unsigned long long);
    uint8_t *p = (uint8_t *)cuda_scratch_get(be, CUDA_SCRATCH_TOPK, kb + (size_t)k * 8);
    if (p) {
        unsigned long long *best = (unsigned long long *)p;
        int32_t *d_ids = (int32_t *)(p + kb);
        float *d_vals = (float *)(p + kb + (size_t)k * 4);
        topk_chunk_kernel<<<nb, TK_THREADS, 0, be->stream>>>(best, x, n, k);
        if (CUDA_LAUNCHED(be, "topk_chunk_kernel")) {
            topk_merge_kernel<<<1, TK_THREADS, 0, be->stream>>>(d_ids, d_vals, best, nb * k, m,
                                                                x, k);
            if (CUDA_LAUNCHED(be, "topk_merge_kernel") &&
                CUDA_CHECK(be, cudaMemcpyAsync(ids, d_ids, (size_t)k * 4,
                                               cudaMemcpyDeviceToHost, be->stream)))
                CUDA_CHECK(be, cudaMemcpyAsync(vals, d_vals, (size_t)k * 4,
                                               cudaMemcpyDeviceToHost, be->stream));
        }
    }
    return b->ops->sync(b, err);
}
