/* Read bandwidth of ways to stream weights into an SM (tool_gpu_bench --stream): plain
 * 16-byte loads into registers, and rings of shared-memory stages filled by every
 * thread's cp.async or by one thread's cp.async.bulk on an mbarrier. The data is read and
 * dropped, so the numbers are the copy mechanisms' own (the decode matvec that staged its
 * weights in shared memory ran at ~0.7 TB/s with its arithmetic off: src/cuda/NOTES.md). */
#include "cuda_api.h"
#include "cuda_common.cuh"
#include "ptx.cuh"

__global__ void stream_reg_kernel(const uint4 *__restrict__ p, size_t n16, unsigned *out) {
    uint32_t acc = 0;
    const size_t stride = (size_t)gridDim.x * blockDim.x;
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < n16; i += 4 * stride) {
        uint4 v[4];
#pragma unroll
        for (int u = 0; u < 4; u++) {
            const size_t k = i + u * stride;
            v[u] = k < n16 ? __ldcs(p + k) : make_uint4(0, 0, 0, 0);
        }
#pragma unroll
        for (int u = 0; u < 4; u++)
            acc ^= v[u].x ^ v[u].w;
    }
    if (acc == 0x9E3779B9u) out[0] = acc; /* keeps the loads */
}

/* Block b streams chunks b, b + G, ... (stage bytes each) through S stages. */
template <int S>
__global__ void stream_cpasync_kernel(const uint8_t *__restrict__ p, size_t nchunks,
                                      unsigned stage, unsigned *out) {
    extern __shared__ __align__(128) uint8_t sb[];
    const size_t G = gridDim.x;
    const unsigned n16 = stage >> 4;
    uint32_t acc = 0;
    for (int s = 0; s < S; s++) {
        const size_t c = blockIdx.x + s * G;
        if (c < nchunks)
            for (unsigned j = threadIdx.x; j < n16; j += blockDim.x)
                cp16(sb + (size_t)s * stage + 16 * j, p + c * stage + 16 * j, true);
        cp_commit();
    }
    unsigned i = 0;
    for (size_t c = blockIdx.x; c < nchunks; c += G, i++) {
        const unsigned s = i % S;
        cp_wait<S - 1>();
        __syncthreads();
        acc ^= *reinterpret_cast<const uint32_t *>(sb + (size_t)s * stage +
                                                   16 * (threadIdx.x % n16));
        __syncthreads();
        const size_t cn = c + S * G;
        if (cn < nchunks)
            for (unsigned j = threadIdx.x; j < n16; j += blockDim.x)
                cp16(sb + (size_t)s * stage + 16 * j, p + cn * stage + 16 * j, true);
        cp_commit();
    }
    cp_wait<0>();
    if (acc == 0x9E3779B9u) out[0] = acc;
}

#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ < 900
#define SB_SM90(...)
#else
#define SB_SM90(...) __VA_ARGS__
#endif

template <int S>
__global__ void stream_bulk_kernel(const uint8_t *__restrict__ p, size_t nchunks,
                                   unsigned stage, unsigned *out) {
    extern __shared__ __align__(128) uint8_t sb[];
    __shared__ uint64_t full[S];
    const size_t G = gridDim.x;
    uint32_t acc = 0;
    (void)full;
    if (threadIdx.x == 0) {
        for (int s = 0; s < S; s++)
            SB_SM90(asm volatile("mbarrier.init.shared::cta.b64 [%0], 1;" ::"r"(sptr(&full[s]))
                                 : "memory"));
        SB_SM90(asm volatile("fence.mbarrier_init.release.cluster;" ::: "memory"));
    }
    __syncthreads();
    auto fetch = [&](size_t c, int s) {
        SB_SM90(
            asm volatile(
                "mbarrier.arrive.expect_tx.shared::cta.b64 _, [%0], %1;" ::"r"(sptr(&full[s])),
                "r"(stage)
                : "memory");
            asm volatile("cp.async.bulk.shared::cluster.global.mbarrier::complete_tx::bytes "
                         "[%0], [%1], %2, [%3];" ::"r"(sptr(sb + (size_t)s * stage)),
                         "l"(p + c * stage), "r"(stage), "r"(sptr(&full[s]))
                         : "memory"));
        (void)c, (void)s;
    };
    if (threadIdx.x == 0)
        for (int s = 0; s < S && blockIdx.x + s * G < nchunks; s++)
            fetch(blockIdx.x + s * G, s);
    unsigned i = 0;
    for (size_t c = blockIdx.x; c < nchunks; c += G, i++) {
        const int s = (int)(i % S);
        uint32_t done = 1;
        SB_SM90(do {
            asm volatile("{\n\t.reg .pred q;\n\t"
                         "mbarrier.try_wait.parity.shared::cta.b64 q, [%1], %2;\n\t"
                         "selp.u32 %0, 1, 0, q;\n\t}"
                         : "=r"(done)
                         : "r"(sptr(&full[s])), "r"((i / S) & 1u)
                         : "memory");
        } while (!done));
        (void)done;
        acc ^= *reinterpret_cast<const uint32_t *>(sb + (size_t)s * stage +
                                                   16 * (threadIdx.x % (stage >> 4)));
        __syncthreads();
        if (threadIdx.x == 0 && c + S * G < nchunks) fetch(c + S * G, s);
    }
    if (acc == 0x9E3779B9u) out[0] = acc;
}

template <typename K>
static cudaError_t stream_launch(cuda_backend *be, K kernel, int bps, int threads, size_t smem,
                                 const uint8_t *p, size_t nchunks, unsigned stage,
                                 unsigned *out) {
    if (smem > 48 * 1024) {
        cudaError_t e = cudaFuncSetAttribute(
            kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem);
        if (e != cudaSuccess) return e;
    }
    kernel<<<be->n_sm * bps, threads, smem, be->stream>>>(p, nchunks, stage, out);
    return cudaGetLastError();
}

/* mode 0: registers (bps blocks of `threads` per SM), 1: cp.async ring, 2: cp.async.bulk
 * ring (stages 2 / 4 / 8 of stage_kib KiB); GB/s read, best of 5 over `bytes`. */
extern "C" chord_status cuda_bench_stream(chord_backend *b, int mode, int bps, int threads,
                                          int stage_kib, int stages, size_t bytes,
                                          double *gb_per_s, chord_error *err) {
    cuda_backend *be = cuda_be(b);
    cudaSetDevice(be->device);
    const unsigned stage = (unsigned)stage_kib * 1024u;
    if (mode < 0 || mode > 2 || bps <= 0 || threads <= 0 || threads > 1024 ||
        (mode && (stage == 0 || (stages != 2 && stages != 4 && stages != 8))))
        return chord_fail(err, CHORD_E_INVALID_ARG, "stream benchmark: bad parameters");
    int major = 0;
    if (cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, be->device) !=
            cudaSuccess ||
        (mode == 2 && major < 9))
        return chord_fail(err, CHORD_E_UNSUPPORTED, "stream benchmark: bulk copies need sm_90");
    uint8_t *p = (uint8_t *)b->ops->alloc(b, bytes);
    unsigned *out = (unsigned *)b->ops->alloc(b, 64);
    cudaEvent_t e0 = NULL, e1 = NULL;
    chord_status st = CHORD_OK;
    if (!p || !out) {
        st = chord_fail(err, CHORD_E_NOMEM, "out of GPU memory for the stream benchmark");
        goto done;
    }
    CUDA_CHECK(be, cudaMemsetAsync(p, 1, bytes, be->stream));
    CUDA_CHECK(be, cudaEventCreate(&e0));
    CUDA_CHECK(be, cudaEventCreate(&e1));
    {
        const size_t nchunks = mode ? bytes / stage : 0, smem = (size_t)stages * stage;
        double best = 0;
        for (int r = 0; r < 6 && be->err_code == CHORD_OK; r++) {
            CUDA_CHECK(be, cudaEventRecord(e0, be->stream));
            cudaError_t e = cudaSuccess;
            if (mode == 0)
                stream_reg_kernel<<<be->n_sm * bps, threads, 0, be->stream>>>((const uint4 *)p,
                                                                              bytes / 16, out);
            else if (mode == 1)
                e = stages == 2   ? stream_launch(be, stream_cpasync_kernel<2>, bps, threads,
                                                  smem, p, nchunks, stage, out)
                    : stages == 4 ? stream_launch(be, stream_cpasync_kernel<4>, bps, threads,
                                                  smem, p, nchunks, stage, out)
                                  : stream_launch(be, stream_cpasync_kernel<8>, bps, threads,
                                                  smem, p, nchunks, stage, out);
            else
                e = stages == 2   ? stream_launch(be, stream_bulk_kernel<2>, bps, threads, smem,
                                                  p, nchunks, stage, out)
                    : stages == 4 ? stream_launch(be, stream_bulk_kernel<4>, bps, threads, smem,
                                                  p, nchunks, stage, out)
                                  : stream_launch(be, stream_bulk_kernel<8>, bps, threads, smem,
                                                  p, nchunks, stage, out);
            CUDA_CHECK(be, e);
            CUDA_CHECK(be, cudaGetLastError());
            CUDA_CHECK(be, cudaEventRecord(e1, be->stream));
            CUDA_CHECK(be, cudaEventSynchronize(e1));
            float ms = 0;
            CUDA_CHECK(be, cudaEventElapsedTime(&ms, e0, e1));
            const double moved = mode ? (double)nchunks * stage : (double)bytes;
            if (r > 0 && ms > 0 && moved / (ms * 1e6) > best) best = moved / (ms * 1e6);
        }
        *gb_per_s = best;
    }
    if (be->err_code != CHORD_OK) {
        st = chord_fail(err, be->err_code, "stream benchmark: %s", be->err_msg);
        be->err_code = CHORD_OK;
    }
done:
    if (e0) cudaEventDestroy(e0);
    if (e1) cudaEventDestroy(e1);
    if (p) b->ops->free(b, p);
    if (out) b->ops->free(b, out);
    return st;
}

/* ------------------------------------------------ grid barrier latency */

__device__ __forceinline__ unsigned ld_acquire(const unsigned *p) {
    unsigned v;
    asm volatile("ld.acquire.gpu.global.u32 %0, [%1];" : "=r"(v) : "l"(p) : "memory");
    return v;
}

/* iters grid-wide barriers: each block's thread 0 arrives on bar[0]; the last one resets
 * it and bumps the generation bar[1], which the others spin on. */
__global__ void barrier_kernel(unsigned *bar, int iters) {
    for (int i = 0; i < iters; i++) {
        __syncthreads();
        if (threadIdx.x == 0) {
            const unsigned gen = ld_acquire(bar + 1);
            if (atomicAdd(bar, 1u) == gridDim.x - 1) {
                bar[0] = 0;
                __threadfence();
                atomicAdd(bar + 1, 1u);
            } else {
                while (ld_acquire(bar + 1) == gen) {
                }
            }
        }
        __syncthreads();
    }
}

/* us per grid-wide barrier of bps blocks of `threads` per SM (all resident). */
extern "C" chord_status cuda_bench_barrier(chord_backend *b, int bps, int threads, int iters,
                                           double *us, chord_error *err) {
    cuda_backend *be = cuda_be(b);
    cudaSetDevice(be->device);
    int fit = 0;
    if (cudaOccupancyMaxActiveBlocksPerMultiprocessor(&fit, barrier_kernel, threads, 0) !=
            cudaSuccess ||
        bps <= 0 || bps > fit || iters <= 0)
        return chord_fail(err, CHORD_E_INVALID_ARG, "barrier benchmark: %d blocks per SM", bps);
    unsigned *bar = (unsigned *)b->ops->alloc(b, 64);
    cudaEvent_t e0 = NULL, e1 = NULL;
    double best = 1e30;
    if (bar && CUDA_CHECK(be, cudaMemsetAsync(bar, 0, 64, be->stream)) &&
        CUDA_CHECK(be, cudaEventCreate(&e0)) && CUDA_CHECK(be, cudaEventCreate(&e1)))
        for (int r = 0; r < 4 && be->err_code == CHORD_OK; r++) {
            CUDA_CHECK(be, cudaEventRecord(e0, be->stream));
            barrier_kernel<<<be->n_sm * bps, threads, 0, be->stream>>>(bar, iters);
            CUDA_CHECK(be, cudaGetLastError());
            CUDA_CHECK(be, cudaEventRecord(e1, be->stream));
            CUDA_CHECK(be, cudaEventSynchronize(e1));
            float ms = 0;
            CUDA_CHECK(be, cudaEventElapsedTime(&ms, e0, e1));
            if (r > 0 && ms * 1e3 / iters < best) best = ms * 1e3 / iters;
        }
    *us = best;
    chord_status st = CHORD_OK;
    if (!bar) st = chord_fail(err, CHORD_E_NOMEM, "out of GPU memory");
    if (be->err_code != CHORD_OK) {
        st = chord_fail(err, be->err_code, "barrier benchmark: %s", be->err_msg);
        be->err_code = CHORD_OK;
    }
    if (e0) cudaEventDestroy(e0);
    if (e1) cudaEventDestroy(e1);
    if (bar) b->ops->free(b, bar);
    return st;
}
