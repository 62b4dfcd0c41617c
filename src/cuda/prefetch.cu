/* L2 prefetch of a decode step's weights, for captured steps (graphs).
 *
 * Why: a decode step is a chain of ~10 dependent kernels per layer. While the short ones
 * run (rmsnorm, attention, quantization) and while a small matvec waits on its first
 * loads, the memory system idles; the matvecs themselves are latency-bound on
 * TinyLlama-sized matrices. A side branch of the step graph (pf_blocks one-warp blocks,
 * concurrent with the whole chain) keeps DRAM busy instead: it walks the step's weights in
 * the order the matvecs read them and prefetches them into L2 (cp.async.bulk.prefetch.L2,
 * pf_chunk bytes per lane), at most pf_window bytes ahead of the matvec now running, which
 * each matvec reports when released (pf_report). The matvecs then read L2.
 * Nothing is computed differently: results are bit-identical with it on or off.
 *
 * The prefetcher never blocks the chain (it only reads the counter); it stops when the
 * last matvec runs, or when the counter stops moving for PF_STALL_NS (a matvec that does
 * not report, or an error). */
#include "cuda_common.cuh"

typedef struct pfreg {
    const uint8_t *p;
    long long off; /* where the region starts in the step's weight stream */
    unsigned bytes;
    int seq; /* the matvec (in step order) that reads it */
} pfreg;

#define PF_MAXR 8192           /* regions (and matvecs) a plan holds */
#define PF_STALL_NS 2000000ull /* give up after 2 ms without progress */

size_t cuda_pf_plan_bytes(void) {
    return PF_MAXR * sizeof(pfreg) + PF_MAXR * sizeof(long long);
}

__device__ __forceinline__ void pf_l2(const uint8_t *p, unsigned bytes) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    asm volatile("cp.async.bulk.prefetch.L2.global [%0], %1;" ::"l"(p), "r"(bytes) : "memory");
#else
    for (unsigned o = 0; o < bytes; o += 128)
        asm volatile("prefetch.global.L2 [%0];" ::"l"(p + o));
#endif
}

/* gridDim.x warps; prog[0]: the running matvec, prog[1] / prog[2]: warps that ended / that
 * gave up for want of progress (cuda_pf_stats). Block b takes the groups of 32 chunks (one per
 * lane) whose index in the step's weight stream is b modulo the grid: one SM's bulk prefetches
 * run at only ~150-220 GB/s (measured), so many SMs must issue them. seq_off[s]: where matvec
 * s's regions start in the weight stream. */
__global__ void pf_kernel(const pfreg *__restrict__ rg, int n,
                          const long long *__restrict__ seq_off, int n_seq, int *prog,
                          long long window, unsigned chunk) {
    const int lane = threadIdx.x;
    int last_p = -2;
    unsigned long long last_t = gtime();
    long long group = 0;
    for (int i = 0; i < n; i++) {
        const pfreg r = rg[i];
        const unsigned nch = (r.bytes + chunk - 1) / chunk;
        for (unsigned c0 = 0; c0 < nch; c0 += 32, group++) {
            if (group % gridDim.x != blockIdx.x) continue;
            const unsigned c1 = c0 + 32 < nch ? c0 + 32 : nch;
            const long long end = c1 * (long long)chunk < (long long)r.bytes
                                      ? c1 * (long long)chunk
                                      : (long long)r.bytes;
            const long long need = r.off + end - window; /* the running matvec's start */
            int give_up = 0;
            if (lane == 0 && need > 0) {
                for (;;) {
                    const int p = *(volatile const int *)prog;
                    if (p >= n_seq - 1) { /* the last matvec runs: nothing left ahead of it */
                        give_up = 1;
                        break;
                    }
                    const long long o = p < 0 ? 0 : seq_off[p];
                    if (o >= need) break;
                    const unsigned long long t = gtime();
                    if (p != last_p) {
                        last_p = p;
                        last_t = t;
                    } else if (t - last_t > PF_STALL_NS) {
                        give_up = 2;
                        break;
                    }
                    __nanosleep(128);
                }
            }
            give_up = __shfl_sync(0xffffffffu, give_up, 0);
            if (give_up) {
                if (lane == 0) atomicAdd(prog + give_up, 1); /* done / stalled counts */
                return;
            }
            const unsigned c = c0 + lane;
            if (c < c1) {
                const unsigned left = r.bytes - c * chunk;
                const unsigned b = (left < chunk ? left : chunk) & ~15u;
                if (b) pf_l2(r.p + (size_t)c * chunk, b);
            }
        }
    }
    if (lane == 0) atomicAdd(prog + 1, 1);
}

bool cuda_pf_setup(cuda_backend *be) {
    if (be->pf_window == 0) return false;
    if (be->pf_stream && be->pf_regs) return true;
    cuda_pf_free(be);
    bool ok = cudaStreamCreateWithFlags(&be->pf_stream, cudaStreamNonBlocking) == cudaSuccess &&
              cudaEventCreateWithFlags(&be->pf_fork, cudaEventDisableTiming) == cudaSuccess &&
              cudaEventCreateWithFlags(&be->pf_join, cudaEventDisableTiming) == cudaSuccess &&
              cudaMalloc((void **)&be->pf_prog, 4 * sizeof(int)) == cudaSuccess &&
              cudaMemset(be->pf_prog, 0, 4 * sizeof(int)) == cudaSuccess;
    if (ok) be->pf_regs = (pfreg *)malloc(PF_MAXR * sizeof(pfreg));
    if (!ok || !be->pf_regs) {
        (void)cudaGetLastError();
        cuda_pf_free(be);
        return false;
    }
    return true;
}

void cuda_pf_free(cuda_backend *be) {
    if (be->pf_stream) cudaStreamDestroy(be->pf_stream);
    if (be->pf_fork) cudaEventDestroy(be->pf_fork);
    if (be->pf_join) cudaEventDestroy(be->pf_join);
    if (be->pf_prog) cudaFree(be->pf_prog);
    free(be->pf_regs);
    be->pf_stream = NULL;
    be->pf_fork = be->pf_join = NULL;
    be->pf_prog = NULL;
    be->pf_regs = NULL;
    be->pf_collect = false;
}

void cuda_pf_begin(cuda_backend *be) {
    be->pf_n = 0;
    be->pf_seq = 0;
    if (CUDA_CHECK(be, cudaEventRecord(be->pf_fork, be->stream))) be->pf_collect = true;
}

void cuda_pf_weight(cuda_backend *be, const ktr &k, const chord_weight *w) {
    if (!be->pf_collect || !k.prog || !w || !w->dev || be->pf_n >= PF_MAXR) return;
    size_t bytes = cuda_weight_bytes(w);
    const uint8_t *p = (const uint8_t *)w->dev;
    long long off =
        be->pf_n ? be->pf_regs[be->pf_n - 1].off + be->pf_regs[be->pf_n - 1].bytes : 0;
    while (bytes && be->pf_n < PF_MAXR) { /* regions of at most 1 GiB */
        const unsigned b = bytes > (1u << 30) ? (1u << 30) : (unsigned)bytes;
        be->pf_regs[be->pf_n++] = pfreg{p, off, b, k.seq};
        p += b, off += b, bytes -= b;
    }
}

void cuda_pf_cancel(cuda_backend *be) {
    be->pf_collect = false;
    be->pf_n = 0;
}

void cuda_pf_end(cuda_backend *be, void *dev_plan) {
    if (!be->pf_collect) return;
    be->pf_collect = false;
    if (be->pf_n == 0 || be->pf_seq == 0 || be->pf_seq > PF_MAXR) return;
    /* Measured (tool_gpu_bench --decode, H100): TinyLlama Q4_K_M 809 -> 751 us per step
     * at 24 MiB, but Llama-2-7B 2960 -> 3060-3390 us: matvecs as large as the window or
     * L2 (its gate / up: 50 MiB) stream well by themselves, and the prefetch only
     * competes with them. So only steps whose matvecs (but the last, the output head)
     * are each at most pf_max_launch (16 MiB, CHORD_CUDA_PF_MAX) get it. */
    long long seq_bytes = 0, max_bytes = 0;
    for (int i = 0; i < be->pf_n; i++) {
        const pfreg &r = be->pf_regs[i];
        if (r.seq == be->pf_seq - 1) break;
        seq_bytes = i && be->pf_regs[i - 1].seq == r.seq ? seq_bytes + r.bytes : r.bytes;
        max_bytes = seq_bytes > max_bytes ? seq_bytes : max_bytes;
    }
    if (max_bytes > be->pf_max_launch) {
        be->pf_n = 0;
        return;
    }
    const pfreg *rg = (const pfreg *)dev_plan;
    const long long *so = (const long long *)((uint8_t *)dev_plan + PF_MAXR * sizeof(pfreg));
    /* The side branch starts with the step: the counter to -1 (no matvec has run), then
     * the prefetcher. Should the first matvec report before the reset, the prefetcher
     * only lags until the next one reports. */
    if (CUDA_CHECK(be, cudaStreamWaitEvent(be->pf_stream, be->pf_fork, 0)) &&
        CUDA_CHECK(be, cudaMemsetAsync(be->pf_prog, 0xFF, sizeof(int), be->pf_stream))) {
        pf_kernel<<<be->pf_blocks, 32, 0, be->pf_stream>>>(
            rg, be->pf_n, so, be->pf_seq, be->pf_prog, (long long)be->pf_window,
            (unsigned)be->pf_chunk);
        CUDA_LAUNCHED(be, "pf_kernel");
        if (CUDA_CHECK(be, cudaEventRecord(be->pf_join, be->pf_stream)))
            CUDA_CHECK(be, cudaStreamWaitEvent(be->stream, be->pf_join, 0));
    }
}

bool cuda_pf_upload(cuda_backend *be, void *dev_plan) {
    if (be->pf_n == 0) return true;
    long long *off = (long long *)malloc(PF_MAXR * sizeof(long long));
    if (!off) return false;
    /* matvec s starts at its first region; one without regions at the next one's */
    long long end = be->pf_regs[be->pf_n - 1].off + be->pf_regs[be->pf_n - 1].bytes;
    for (int s = 0; s < PF_MAXR; s++)
        off[s] = end;
    for (int i = be->pf_n - 1; i >= 0; i--)
        if (be->pf_regs[i].seq < PF_MAXR) off[be->pf_regs[i].seq] = be->pf_regs[i].off;
    for (int s = be->pf_seq - 2; s >= 0; s--)
        if (off[s] > off[s + 1]) off[s] = off[s + 1];
    /* in stream order before the first replay; synchronized: the host buffers go away */
    bool ok = cudaMemcpyAsync(dev_plan, be->pf_regs, (size_t)be->pf_n * sizeof(pfreg),
                              cudaMemcpyHostToDevice, be->stream) == cudaSuccess &&
              cudaMemcpyAsync((uint8_t *)dev_plan + PF_MAXR * sizeof(pfreg), off,
                              PF_MAXR * sizeof(long long), cudaMemcpyHostToDevice,
                              be->stream) == cudaSuccess &&
              cudaStreamSynchronize(be->stream) == cudaSuccess;
    free(off);
    if (!ok) (void)cudaGetLastError();
    return ok;
}

/* Prefetcher warps that ended since the backend started, and (*stalled) those that gave
 * up waiting for a matvec to report: a test's check that every captured step's matvecs
 * report (a silent stall costs 2 ms per step). */
extern "C" int cuda_pf_stats(chord_backend *b, int *stalled) {
    cuda_backend *be = (cuda_backend *)b;
    int h[4] = {0, 0, 0, 0};
    if (be->pf_prog && cudaStreamSynchronize(be->stream) == cudaSuccess &&
        cudaMemcpy(h, be->pf_prog, sizeof h, cudaMemcpyDeviceToHost) != cudaSuccess)
        (void)cudaGetLastError();
    if (stalled) *stalled = h[2];
    return h[1];
}
