/* Decode matvec (one token): y[o] = sum_i W[o][i] x[i], fused with dequantization.
 *
 * One warp per output row, 4 rows per 128-thread block. Each lane walks the row in
 * 16-byte units of quant bytes (coalesced across the warp, loaded past L1 so the
 * activations stay cached). A lane first issues the loads of several units (quant
 * bytes and scales), then does their arithmetic, so several loads per lane are in flight;
 * short rows give each warp several rows so that every lane still has ~4 loads going.
 * Quantized types dot against the activations quantized to int8 exactly as the CPU
 * backend does (cuda_quantize_act), with dp4a; float types dot against float x. */
#include "exact_dot.cuh"
#include "quant.cuh"

#define MV_ROWS 4
#define MV_UF 4 /* float types: units in flight per lane */

__device__ __forceinline__ float mv_warp_sum(float v) {
#pragma unroll
    for (int o = 16; o > 0; o >>= 1)
        v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}

/* ------------------------------------------------ activation quantization */

/* One warp per QB elements (QB = 32: one per lane; 256: 8 per lane), quant_store. */
template <int QB>
__global__ void quantize_act_kernel(int8_t *__restrict__ xq, float *__restrict__ xd,
                                    int16_t *__restrict__ bs, float *__restrict__ xs,
                                    int8_t *__restrict__ xqc, const float *__restrict__ x,
                                    int64_t n_blocks, ktr tk, int early) {
    constexpr int PER = QB / 32;
    ktrace kt(tk);
    int64_t b = ((int64_t)blockIdx.x * blockDim.x + threadIdx.x) >> 5;
    int lane = threadIdx.x & 31;
    if (early) pdl_trigger();  /* cuda_backend.early_trigger */
    if (b >= n_blocks) return; /* uniform across the warp */
    pdl_wait();
    kt.released();
    if (!early) pdl_trigger(); /* the next kernel may start (and fetch its weights) now */
    const float *xb = x + b * QB + lane * PER;
    float v[PER];
#pragma unroll
    for (int i = 0; i < PER; i++)
        v[i] = xb[i];
    quant_store<QB>(v, lane, b, xq, xd, bs, xs, xqc);
}

/* Q4_K rows longer than 2048 are dotted by 32-byte chunks (MV_Q4K_CH below) */
__host__ __device__ constexpr bool q4k_chunks(int t, int64_t n_in) {
    return t == CHORD_TYPE_Q4_K && n_in > 2048;
}

/* the chunk-order copy (xact.qc) of a decode token's K-quant activations, where Q4_K
 * weights of that row length would be dotted by chunks (q4k_chunks) */
static size_t qact_co_bytes(int64_t n_in, int n, int qb) {
    return n == 1 && qb == 256 && q4k_chunks(CHORD_TYPE_Q4_K, n_in)
               ? (size_t)(n_in + 2047) & ~(size_t)2047
               : 0;
}

size_t cuda_qact_bytes(int64_t n_in, int n, int qb) {
    const size_t total = (size_t)n * (size_t)n_in;
    const size_t qbytes = (total + 15) & ~(size_t)15;
    const size_t dbytes = ((total / qb) * sizeof(float) + 15) & ~(size_t)15;
    const size_t sbytes = qb == 32 ? dbytes : 0;
    const size_t bbytes = (total / 16) * sizeof(int16_t);
    return qbytes + dbytes + sbytes + bbytes + qact_co_bytes(n_in, n, qb);
}

bool cuda_qact_view(cuda_backend *be, int64_t n_in, int n, int qb, qact *out) {
    if (n_in % qb != 0) {
        cuda_fail(be, "matmul: row length %lld is not a multiple of %d", (long long)n_in, qb);
        return false;
    }
    const size_t total = (size_t)n * (size_t)n_in;
    const size_t qbytes = (total + 15) & ~(size_t)15;
    const size_t dbytes = ((total / qb) * sizeof(float) + 15) & ~(size_t)15;
    const size_t sbytes = qb == 32 ? dbytes : 0;
    uint8_t *p = (uint8_t *)cuda_scratch_get(be, CUDA_SCRATCH_XQ, cuda_qact_bytes(n_in, n, qb));
    if (!p) return false;
    out->q = (const int8_t *)p;
    out->d = (const float *)(p + qbytes);
    out->s = qb == 32 ? (const float *)(p + qbytes + dbytes) : NULL;
    out->bs = (const int16_t *)(p + qbytes + dbytes + sbytes);
    out->qc =
        qact_co_bytes(n_in, n, qb)
            ? (const int8_t *)(p + qbytes + dbytes + sbytes + (total / 16) * sizeof(int16_t))
            : NULL;
    out->qb = qb;
    return true;
}

bool cuda_quantize_act(cuda_backend *be, const float *x, int64_t n_in, int n, int qb,
                       qact *out) {
    if (!cuda_qact_view(be, n_in, n, qb, out)) return false;
    const size_t total = (size_t)n * (size_t)n_in;
    const int64_t n_blocks = (int64_t)(total / qb);
    const int threads = 256;
    const int64_t grid = (n_blocks * 32 + threads - 1) / threads;
    cudaError_t e;
    if (qb == 32)
        e = launch_pdl(be, quantize_act_kernel<32>, dim3((unsigned)grid), dim3(threads),
                       (int8_t *)out->q, (float *)out->d, (int16_t *)out->bs, (float *)out->s,
                       (int8_t *)NULL, x, n_blocks, take_ktr(be, 'q'),
                       (int)(be->early_trigger & CUDA_EARLY_QS));
    else
        e = launch_pdl(be, quantize_act_kernel<256>, dim3((unsigned)grid), dim3(threads),
                       (int8_t *)out->q, (float *)out->d, (int16_t *)out->bs, (float *)NULL,
                       (int8_t *)out->qc, x, n_blocks, take_ktr(be, 'q'),
                       (int)(be->early_trigger & CUDA_EARLY_QS));
    return CUDA_CHECK(be, e) && CUDA_LAUNCHED(be, "quantize_act_kernel");
}

/* ------------------------------------------------------------ kernels */

/* Up to CUDA_MV_MAXW weights of one type and row length in one launch: weight k owns
 * blocks [bstart[k], bstart[k+1]); res[k] (may be NULL) gets y added (residual). */
typedef struct mvjob {
    wview w[CUDA_MV_MAXW];
    float *y[CUDA_MV_MAXW];
    float *res[CUDA_MV_MAXW];
    unsigned bstart[CUDA_MV_MAXW + 1];
    int nw;
    int nw0;     /* matvec_q2_kernel: weights [0, nw0) have its first type */
    int trig_in; /* matvec_q2_kernel: let the next kernel launch at entry */
    ktr kt;
} mvjob;

__device__ __forceinline__ int job_pick(const mvjob &job) {
    int k = 0;
#pragma unroll
    for (int i = 1; i < CUDA_MV_MAXW; i++)
        if (i < job.nw && blockIdx.x >= job.bstart[i]) k = i;
    return k;
}

/* Q4_K rows longer than 2048 (more than two 16-byte units per lane) are dotted by 32-byte
 * chunks (mv_rows_ch, quant.cuh q4k_load_pair): half the instructions per byte, 7B's large
 * Q4_K matvecs 1.8 -> 2.0 TB/s. Shorter rows keep the units: one chunk per lane and row
 * leaves too few rows per warp for TinyLlama's gate / up (11264 x 2048: 5.8 -> 8.0 us).
 * Every decode kernel picks by the same rule (q4k_chunks), so each weight gets one
 * arithmetic in every mode. MV_Q4K_CH is that kernel "type" (not a chord_type). */
#define MV_Q4K_CH 100
static_assert(MV_Q4K_CH >= CHORD_TYPE_COUNT, "MV_Q4K_CH must not be a chord_type");

/* Q6_K rows longer than 2048 by 64-element chunks (mv_rows_q6ch; their activations come in
 * the Q4_K chunk order, which exists for those row lengths): half the instructions per
 * byte of the units. Every decode kernel picks by this rule, as for Q4_K. */
__host__ __device__ constexpr bool q6k_chunks(int t, int64_t n_in) {
    return t == CHORD_TYPE_Q6_K && n_in > 2048;
}
#define MV_Q6K_CH 101
static_assert(MV_Q6K_CH >= CHORD_TYPE_COUNT, "MV_Q6K_CH must not be a chord_type");

/* Decode units of a block: 16-byte units of the main quant array, or Q4_K's chunks. */
__host__ __device__ constexpr int mv_units_per_block(int t) {
    return t == MV_Q4K_CH ? Q4K_CHUNKS : t == MV_Q6K_CH ? Q6K_CHUNKS : units_per_block(t);
}

/* The constants of a lane's units (a lane's units are lane + 32 k, so their position in
 * the block is the lane's): Q4_K's hoisted out of the loop; other types need none. */
template <int T> struct mv_lane {
    __device__ explicit mv_lane(int) {}
};
template <> struct mv_lane<CHORD_TYPE_Q4_K> {
    q4ku_lane L;
    __device__ explicit mv_lane(int lane) : L(q4ku_lane_of(lane)) {}
};

template <int T>
__device__ __forceinline__ uraw mv_load(const wview &w, int64_t row, int u,
                                        const mv_lane<T> &c) {
    if constexpr (T == CHORD_TYPE_Q4_K)
        return q4ku_load(w.q + (size_t)row * w.nb * 128, w.s + (size_t)row * w.nb * 16, u >> 3,
                         c.L);
    else
        return unit_load<T>(w, row, u);
}
template <int T>
__device__ __forceinline__ float mv_dot(const uraw &r, int u, const xact &xa,
                                        const mv_lane<T> &c) {
    if constexpr (T == CHORD_TYPE_Q4_K)
        return q4ku_dot(r, u >> 3, c.L, xa);
    else
        return unit_dot<T>(r, u, xa);
}

/* warp sums of acc[R] to y (lane 0), and added to res when given */
template <int R>
__device__ __forceinline__ void mv_store(const float (&acc)[R], int64_t row0, int64_t n_out,
                                         int lane, float *__restrict__ y, float *res) {
#pragma unroll
    for (int r = 0; r < R; r++) {
        float v = mv_warp_sum(acc[r]);
        if (lane == 0 && row0 + r < n_out) {
            y[row0 + r] = v;
            if (res) res[row0 + r] += v;
        }
    }
}

/* Q4_K rows by chunks: R consecutive rows per warp, U rounds of 32 chunks per row in flight
 * (quant.cuh q4k_load_pair: every load reads whole sectors; lane pairs then trade integer
 * sums by shuffles, so all 32 lanes run every round). */
template <int R, int U>
__device__ __forceinline__ void mv_rows_ch(const mvjob &job, const xact &xa, int k,
                                           ktrace &kt) {
    const wview &w = job.w[k];
    const int64_t row0 =
        ((int64_t)(blockIdx.x - job.bstart[k]) * MV_ROWS + (threadIdx.x >> 5)) * R;
    const int lane = threadIdx.x & 31;
    if (row0 >= w.n_out) return;
    const int n_ch = (int)w.nb * Q4K_CHUNKS, own = q4k_own(lane);
    const q4k_lane L = q4k_lane_pair(lane);
    /* a row past the end rereads row0 (its sums are not stored): no per-row conditions */
    const uint8_t *q[R], *s[R];
#pragma unroll
    for (int r = 0; r < R; r++) {
        const int64_t row = row0 + r < w.n_out ? row0 + r : row0;
        q[r] = w.q + (size_t)row * w.nb * 128;
        s[r] = w.s + (size_t)row * w.nb * 16;
    }
    float acc[R];
#pragma unroll
    for (int r = 0; r < R; r++)
        acc[r] = 0.f;
    /* the first rounds' loads go out before waiting for the previous kernel (PDL) */
    uraw raw[R][U];
    uint32_t dep = 0;
#pragma unroll
    for (int r = 0; r < R; r++)
#pragma unroll
        for (int i = 0; i < U; i++)
            if (32 * i < n_ch) {
                raw[r][i] = q4k_load_pair(q[r], s[r], 32 * i, n_ch, lane);
                dep ^= raw[r][i].a.x ^ raw[r][i].s0;
            }
    pdl_wait_after(dep); /* x comes from the previous kernel */
    kt.released();
    pf_report(job.kt);
    pdl_trigger();
    for (int cs = 0;;) {
#pragma unroll
        for (int i = 0; i < U; i++) {
            if (cs + 32 * i >= n_ch) continue; /* warp-uniform */
            const q4k_act xr = q4k_act_pair(cs + 32 * i, lane, xa);
            const int c = cs + 32 * i + own;
            int4 part[R];
#pragma unroll
            for (int r = 0; r < R; r++)
                part[r] = q4k_part(raw[r][i], xr);
#pragma unroll
            for (int r = 0; r < R; r++) {
                int sil, sih;
                q4k_trade(part[r], lane, sil, sih);
                if (c < n_ch) acc[r] += q4k_finish(raw[r][i], c >> 2, L, xa, sil, sih);
            }
        }
        cs += 32 * U;
        if (cs >= n_ch) break;
#pragma unroll
        for (int r = 0; r < R; r++)
#pragma unroll
            for (int i = 0; i < U; i++)
                if (cs + 32 * i < n_ch)
                    raw[r][i] = q4k_load_pair(q[r], s[r], cs + 32 * i, n_ch, lane);
    }
    mv_store<R>(acc, row0, w.n_out, lane, job.y[k], job.res[k]);
}

/* The Q4_K chunk kernel's pieces for mv_rows_split: a row's round of 32 chunks from chunk
 * cs (load) and its arithmetic for R rows (round), as in mv_rows_ch. (A Q6_K one for the
 * paired q / k / v launch measured no faster: 7B step 1951 vs 1950 us.) */
struct mv_ch4 {
    typedef uraw raw_t;
    const uint8_t *q, *s;
    int n_ch, lane, own;
    q4k_lane L;
    __device__ mv_ch4(const wview &w, int lane_)
        : q(w.q), s(w.s), n_ch((int)w.nb * Q4K_CHUNKS), lane(lane_), own(q4k_own(lane_)),
          L(q4k_lane_pair(lane_)) {}
    __device__ __forceinline__ raw_t load(int64_t row, int cs) const {
        return q4k_load_pair(q + (size_t)row * n_ch * 32, s + (size_t)row * n_ch * 4, cs, n_ch,
                             lane);
    }
    __device__ __forceinline__ static uint32_t dep(const raw_t &r) { return r.a.x ^ r.s0; }
    template <int R>
    __device__ __forceinline__ void round(float (&acc)[R], const raw_t (&raw)[R], int cs,
                                          const xact &xa) const {
        const q4k_act xr = q4k_act_pair(cs, lane, xa);
        const int c = cs + own;
        int4 part[R];
#pragma unroll
        for (int r = 0; r < R; r++)
            part[r] = q4k_part(raw[r], xr);
#pragma unroll
        for (int r = 0; r < R; r++) {
            int sil, sih;
            q4k_trade(part[r], lane, sil, sih);
            if (c < n_ch) acc[r] += q4k_finish(raw[r], c >> 2, L, xa, sil, sih);
        }
    }
};
/* Chunk rows, each row's rounds of 32 chunks split over two warps of the block (warp
 * 2 g + h takes rounds h, h + 2, ... of rows R g .. R g + R - 1 of the block), one round in
 * flight: a block is done in half the time of mv_rows_ch<R, 1> (4096-wide rows: one round
 * each), so a kernel of several waves ends with a shorter tail. The two halves' warp sums
 * meet in shared memory: not mv_rows_ch's order, so each launch takes one of the two. */
template <class C, int R>
__device__ __forceinline__ void mv_rows_split(const mvjob &job, const xact &xa, int k,
                                              ktrace &kt) {
    static_assert(MV_ROWS % 2 == 0, "warp pairs");
    typedef typename C::raw_t raw_t;
    __shared__ float half_sum[MV_ROWS / 2][R];
    const wview &w = job.w[k];
    const int wb = threadIdx.x >> 5, h = wb & 1, lane = threadIdx.x & 31;
    const int64_t row0 =
        ((int64_t)(blockIdx.x - job.bstart[k]) * (MV_ROWS / 2) + (wb >> 1)) * R;
    const bool live = row0 < w.n_out; /* uniform across the warp pair (barrier below) */
    const C c(w, lane);
    int64_t row[R];
#pragma unroll
    for (int r = 0; r < R; r++) /* a row past the end rereads row0 (not stored) */
        row[r] = row0 + r < w.n_out ? row0 + r : (live ? row0 : 0);
    float acc[R];
#pragma unroll
    for (int r = 0; r < R; r++)
        acc[r] = 0.f;
    raw_t raw[R];
    uint32_t dep = 0;
    int cs = 32 * h;
    if (live && cs < c.n_ch)
#pragma unroll
        for (int r = 0; r < R; r++) {
            raw[r] = c.load(row[r], cs);
            dep ^= C::dep(raw[r]);
        }
    pdl_wait_after(dep); /* x comes from the previous kernel */
    kt.released();
    pf_report(job.kt);
    pdl_trigger();
    while (live && cs < c.n_ch) { /* uniform across the warp */
        c.template round<R>(acc, raw, cs, xa);
        cs += 64;
        if (cs >= c.n_ch) break;
#pragma unroll
        for (int r = 0; r < R; r++)
            raw[r] = c.load(row[r], cs);
    }
    float v[R];
#pragma unroll
    for (int r = 0; r < R; r++)
        v[r] = mv_warp_sum(acc[r]);
    if (h && lane == 0)
#pragma unroll
        for (int r = 0; r < R; r++)
            half_sum[wb >> 1][r] = v[r];
    __syncthreads();
    if (!h && lane == 0 && live)
#pragma unroll
        for (int r = 0; r < R; r++)
            if (row0 + r < w.n_out) {
                const float o = v[r] + half_sum[wb >> 1][r];
                job.y[k][row0 + r] = o;
                if (job.res[k]) job.res[k][row0 + r] += o;
            }
}

/* Q6_K rows by 64-element chunks (quant.cuh q6k_load): R consecutive rows per warp, U rounds
 * of 32 chunks per row in flight. No lane trades with another, so a lane past the row's
 * end skips its chunk. */
template <int R, int U>
__device__ __forceinline__ void mv_rows_q6ch(const mvjob &job, const xact &xa, int k,
                                             ktrace &kt) {
    const wview &w = job.w[k];
    const int64_t row0 =
        ((int64_t)(blockIdx.x - job.bstart[k]) * MV_ROWS + (threadIdx.x >> 5)) * R;
    const int lane = threadIdx.x & 31;
    if (row0 >= w.n_out) return;
    const int n_ch = (int)w.nb * Q6K_CHUNKS;
    const q6k_lane L = q6k_lane_of(lane);
    /* a row past the end rereads row0 (its sums are not stored) */
    const uint8_t *q[R], *s[R];
#pragma unroll
    for (int r = 0; r < R; r++) {
        const int64_t row = row0 + r < w.n_out ? row0 + r : row0;
        q[r] = w.q + (size_t)row * w.nb * 192;
        s[r] = w.s + (size_t)row * w.nb * 20;
    }
    float acc[R];
#pragma unroll
    for (int r = 0; r < R; r++)
        acc[r] = 0.f;
    /* the first rounds' loads go out before waiting for the previous kernel (PDL) */
    q6raw raw[R][U];
    uint32_t dep = 0;
#pragma unroll
    for (int r = 0; r < R; r++)
#pragma unroll
        for (int i = 0; i < U; i++) {
            raw[r][i] = q6k_load(q[r], s[r], 32 * i + lane, n_ch, L);
            dep ^= raw[r][i].l.x ^ raw[r][i].s0;
        }
    pdl_wait_after(dep); /* x comes from the previous kernel */
    kt.released();
    pf_report(job.kt);
    pdl_trigger();
    for (int cs = 0;;) {
#pragma unroll
        for (int i = 0; i < U; i++) {
            const int c = cs + 32 * i + lane;
            if (c >= n_ch) continue;
            const q6k_act xr = q6k_act_load(c, L, xa);
#pragma unroll
            for (int r = 0; r < R; r++)
                acc[r] += q6k_dot(raw[r][i], xr, L);
        }
        cs += 32 * U;
        if (cs >= n_ch) break;
#pragma unroll
        for (int r = 0; r < R; r++)
#pragma unroll
            for (int i = 0; i < U; i++)
                raw[r][i] = q6k_load(q[r], s[r], cs + 32 * i + lane, n_ch, L);
    }
    mv_store<R>(acc, row0, w.n_out, lane, job.y[k], job.res[k]);
}

/* Each warp: R consecutive rows of weight k (type T), U 16-byte units per row in flight per
 * lane (R * U loads). */
template <int T, int R, int U>
__device__ __forceinline__ void mv_rows_u(const mvjob &job, const xact &xa, int k, ktrace &kt) {
    const wview &w = job.w[k];
    float *__restrict__ y = job.y[k];
    float *res = job.res[k];
    const int64_t row0 =
        ((int64_t)(blockIdx.x - job.bstart[k]) * MV_ROWS + (threadIdx.x >> 5)) * R;
    const int lane = threadIdx.x & 31;
    if (row0 >= w.n_out) return;
    const int n_units = (int)w.nb * mv_units_per_block(T);
    const mv_lane<T> L(lane);
    float acc[R];
#pragma unroll
    for (int r = 0; r < R; r++)
        acc[r] = 0.f;
    /* the first units' loads go out before waiting for the previous kernel (PDL) */
    uraw raw[R][U];
    int base = lane;
    uint32_t dep = 0;
#pragma unroll
    for (int r = 0; r < R; r++)
#pragma unroll
        for (int i = 0; i < U; i++)
            if (row0 + r < w.n_out && base + 32 * i < n_units) {
                raw[r][i] = mv_load<T>(w, row0 + r, base + 32 * i, L);
                dep ^= raw[r][i].a.x ^ raw[r][i].s0;
            }
    pdl_wait_after(dep); /* x comes from the previous kernel */
    kt.released();
    pf_report(job.kt);
    pdl_trigger();
    while (base < n_units) {
#pragma unroll
        for (int r = 0; r < R; r++)
#pragma unroll
            for (int i = 0; i < U; i++)
                if (row0 + r < w.n_out && base + 32 * i < n_units)
                    acc[r] += mv_dot<T>(raw[r][i], base + 32 * i, xa, L);
        base += 32 * U;
        if (base >= n_units) break;
#pragma unroll
        for (int r = 0; r < R; r++)
#pragma unroll
            for (int i = 0; i < U; i++)
                if (row0 + r < w.n_out && base + 32 * i < n_units)
                    raw[r][i] = mv_load<T>(w, row0 + r, base + 32 * i, L);
    }
#pragma unroll
    for (int r = 0; r < R; r++) {
        float v = mv_warp_sum(acc[r]);
        if (lane == 0 && row0 + r < w.n_out) {
            y[row0 + r] = v;
            if (res) res[row0 + r] += v;
        }
    }
}

template <int T, int R, int U0>
__device__ __forceinline__ void mv_rows(const mvjob &job, const xact &xa, int k, ktrace &kt) {
    if constexpr (T == MV_Q4K_CH && U0 == 0) /* U0 0: rounds split over warp pairs */
        mv_rows_split<mv_ch4, R>(job, xa, k, kt);
    else if constexpr (T == MV_Q4K_CH)
        mv_rows_ch<R, (U0 + 1) / 2>(job, xa, k, kt);
    else if constexpr (T == MV_Q6K_CH)
        mv_rows_q6ch<R, (U0 + 1) / 2>(job, xa, k, kt);
    else
        mv_rows_u<T, R, U0>(job, xa, k, kt);
}

/* Blocks per SM each quantized matvec is compiled for: the most at which ptxas keeps every
 * value in registers (checked with -Xptxas -v: 0 bytes spilled). Left to itself ptxas took
 * 70 registers for Q4_K (1, 4): 7 blocks per SM instead of 8, so Llama-2-7B's 4096-row
 * matvecs (1024 blocks) needed a second wave, and 7B decode lost ~5%. */
__host__ __device__ constexpr int mv_min_blocks(int t, int r, int u = 4) {
    return t == CHORD_TYPE_Q4_0 || t == CHORD_TYPE_Q5_0 ? 8
           : t == MV_Q4K_CH && r == 1 && u > 4          ? 6
           : t == MV_Q4K_CH                             ? (r <= 2 ? 8 : 6)
           : t == MV_Q6K_CH                             ? (r == 1 ? 8 : 6)
           : t == CHORD_TYPE_Q4_K                       ? (r == 1 ? 8 : 7)
           : t == CHORD_TYPE_Q8_0                       ? (r == 1 ? 8 : 7)
           : t == CHORD_TYPE_Q6_K                       ? (r == 1 ? (u <= 2 ? 8 : 6) : 5)
           : t == CHORD_TYPE_Q3_K                       ? 4
                                                        : 5;
}

template <int T, int R, int U>
__global__ void __launch_bounds__(32 * MV_ROWS, mv_min_blocks(T, R, U))
    matvec_q_kernel(const __grid_constant__ mvjob job, xact xa) {
    ktrace kt(job.kt);
    mv_rows<T, R, U>(job, xa, job_pick(job), kt);
}

/* Two weight types with one activation block and row length in one launch (weights
 * [0, job.nw0) of type T0, the rest T1; e.g. Q4_K attn_q / attn_k with a Q6_K attn_v):
 * one kernel boundary less per layer. Each block takes rows of one weight. */
template <int T0, int T1, int R, int U>
__global__ void __launch_bounds__(32 * MV_ROWS, R == 4 || (T0 == MV_Q4K_CH && R == 2) ? 5 : 6)
    matvec_q2_kernel(const __grid_constant__ mvjob job, xact xa) {
    if (job.trig_in) pdl_trigger();
    ktrace kt(job.kt);
    const int k = job_pick(job);
    if (k < job.nw0)
        mv_rows<T0, R, U>(job, xa, k, kt);
    else
        mv_rows<T1, R, U>(job, xa, k, kt);
}

/* exact_batch_type weights: the CPU's float order (exact_dot.cuh). One warp per row,
 * all n tokens (activations and outputs token-major), XT at a time: the row's blocks
 * are reread per pass (from L1 / L2). */
template <int T>
__global__ void __launch_bounds__(32 * MV_ROWS)
    matvec_exact_kernel(const __grid_constant__ mvjob job, xact xa, int64_t n_in, int n) {
    __shared__ xstage st[MV_ROWS];
    ktrace kt(job.kt);
    const int k = job_pick(job);
    const wview &w = job.w[k];
    const int64_t row = (int64_t)(blockIdx.x - job.bstart[k]) * MV_ROWS + (threadIdx.x >> 5);
    const int lane = threadIdx.x & 31;
    pdl_wait(); /* x comes from the previous kernel */
    kt.released();
    pf_report(job.kt);
    pdl_trigger();
    if (row >= w.n_out) return; /* uniform across the warp */
    xstage &s = st[threadIdx.x >> 5];
    for (int t0 = 0; t0 < n; t0 += XT) {
        const int nt = n - t0 < XT ? n - t0 : XT;
        exact_rows<T>(w, row, xa, n_in, t0, nt, s, lane);
        if (lane < nt) {
            const float v = xfinal<T>(s, lane);
            const size_t o = (size_t)(t0 + lane) * w.n_out + row;
            job.y[k][o] = v;
            if (job.res[k]) job.res[k][o] += v;
        }
        __syncwarp();
    }
}

/* Float weights, 16 bytes (4 or 8 elements) per unit; needs n_in % 8 == 0. */
template <int T>
__device__ __forceinline__ float f_unit_dot(const uint4 &v, const float4 *__restrict__ x4,
                                            int u) {
    if constexpr (T == CHORD_TYPE_F32) {
        float4 a = __ldg(x4 + u);
        return __uint_as_float(v.x) * a.x + __uint_as_float(v.y) * a.y +
               __uint_as_float(v.z) * a.z + __uint_as_float(v.w) * a.w;
    } else {
        float4 a = __ldg(x4 + 2 * u), b = __ldg(x4 + 2 * u + 1);
        float f[8];
        uint32_t wd[4] = {v.x, v.y, v.z, v.w};
#pragma unroll
        for (int j = 0; j < 4; j++) {
            if constexpr (T == CHORD_TYPE_F16) {
                float2 h = __half22float2(*reinterpret_cast<const __half2 *>(&wd[j]));
                f[2 * j] = h.x, f[2 * j + 1] = h.y;
            } else {
                f[2 * j] = __uint_as_float(wd[j] << 16);
                f[2 * j + 1] = __uint_as_float(wd[j] & 0xFFFF0000u);
            }
        }
        return f[0] * a.x + f[1] * a.y + f[2] * a.z + f[3] * a.w + f[4] * b.x + f[5] * b.y +
               f[6] * b.z + f[7] * b.w;
    }
}

/* Float weights, 16 bytes (4 or 8 elements) per unit; needs n_in % 8 == 0. */
template <int T>
__global__ void __launch_bounds__(32 * MV_ROWS)
    matvec_f_kernel(const __grid_constant__ mvjob job, const float *__restrict__ x) {
    ktrace kt(job.kt);
    const int k = job_pick(job);
    const wview &w = job.w[k];
    float *__restrict__ y = job.y[k];
    float *res = job.res[k];
    int64_t row = (int64_t)(blockIdx.x - job.bstart[k]) * MV_ROWS + (threadIdx.x >> 5);
    int lane = threadIdx.x & 31;
    if (row >= w.n_out) return;
    constexpr int EPU = T == CHORD_TYPE_F32 ? 4 : 8;
    constexpr int ESZ = T == CHORD_TYPE_F32 ? 4 : 2;
    const int n_units = (int)(w.n_in / EPU);
    const uint8_t *rp = w.q + (size_t)row * w.n_in * ESZ;
    const float4 *x4 = reinterpret_cast<const float4 *>(x);
    float acc = 0.f;
    uint4 v[MV_UF];
    int base = lane;
    uint32_t dep = 0;
#pragma unroll
    for (int i = 0; i < MV_UF; i++)
        if (base + 32 * i < n_units) {
            v[i] = ld16_stream(rp + 16 * (size_t)(base + 32 * i));
            dep ^= v[i].x;
        }
    pdl_wait_after(dep);
    kt.released();
    pf_report(job.kt);
    pdl_trigger();
    while (base < n_units) {
#pragma unroll
        for (int i = 0; i < MV_UF; i++)
            if (base + 32 * i < n_units) acc += f_unit_dot<T>(v[i], x4, base + 32 * i);
        base += 32 * MV_UF;
        if (base >= n_units) break;
#pragma unroll
        for (int i = 0; i < MV_UF; i++)
            if (base + 32 * i < n_units) v[i] = ld16_stream(rp + 16 * (size_t)(base + 32 * i));
    }
    acc = mv_warp_sum(acc);
    if (lane == 0) {
        y[row] = acc;
        if (res) res[row] += acc;
    }
}

/* Float weights of any row length / alignment. */
template <int T>
__global__ void __launch_bounds__(32 * MV_ROWS)
    matvec_f_scalar_kernel(wview w, const float *__restrict__ x, float *__restrict__ y,
                           float *res) {
    int64_t row = (int64_t)blockIdx.x * MV_ROWS + (threadIdx.x >> 5);
    int lane = threadIdx.x & 31;
    if (row >= w.n_out) return;
    float acc = 0.f;
    for (int64_t k = lane; k < w.n_in; k += 32)
        acc += ld_elem<T>(w, row, k) * x[k];
    acc = mv_warp_sum(acc);
    if (lane == 0) {
        y[row] = acc;
        if (res) res[row] += acc;
    }
}

/* Would the job's blocks at rows_per_block rows all be resident at once (or is the
 * fallback off)? */
template <typename K>
static bool one_wave(cuda_backend *be, K kernel, const mvjob &job, int64_t rows_per_block) {
    if (!be->mv_waves) return true;
    int64_t blocks = 0;
    for (int k = 0; k < job.nw; k++)
        blocks += (job.w[k].n_out + rows_per_block - 1) / rows_per_block;
    int per_sm = 0;
    if (cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per_sm, kernel, 32 * MV_ROWS, 0) !=
        cudaSuccess) {
        (void)cudaGetLastError();
        return true;
    }
    return blocks <= (int64_t)per_sm * be->n_sm;
}

/* Fills the job's block ranges for rows_per_block rows per block; false if too many. */
static bool job_blocks(mvjob &job, int64_t rows_per_block) {
    int64_t acc = 0;
    for (int k = 0; k < job.nw; k++) {
        job.bstart[k] = (unsigned)acc;
        acc += (job.w[k].n_out + rows_per_block - 1) / rows_per_block;
    }
    for (int k = job.nw; k <= CUDA_MV_MAXW; k++)
        job.bstart[k] = (unsigned)acc;
    return acc < (1LL << 31);
}

template <int T>
static void launch_matvec(cuda_backend *be, mvjob &job, const float *x, const qact *xa) {
    const wview &w = job.w[0]; /* every weight of the job has this type and row length */
    const dim3 blk(32 * MV_ROWS);
    if constexpr (type_is_float(T)) {
        bool vec = w.n_in % 8 == 0 && ((uintptr_t)x & 15) == 0;
        if (vec) {
            if (!job_blocks(job, MV_ROWS)) return cuda_fail(be, "matvec: too many rows");
            CUDA_CHECK(
                be, launch_pdl(be, matvec_f_kernel<T>, dim3(job.bstart[job.nw]), blk, job, x));
        } else {
            for (int k = 0; k < job.nw; k++) {
                unsigned grid = (unsigned)((job.w[k].n_out + MV_ROWS - 1) / MV_ROWS);
                matvec_f_scalar_kernel<T>
                    <<<grid, blk, 0, be->stream>>>(job.w[k], x, job.y[k], job.res[k]);
            }
        }
    } else {
        if (!xa || xa->qb != act_block(T)) {
            cuda_fail(be, "matvec: activations not quantized for this type");
            return;
        }
        xact a = {xa->q, xa->d, xa->bs, xa->s, xa->qc};
        if ((q4k_chunks(T, w.n_in) || q6k_chunks(T, w.n_in)) && !xa->qc)
            return cuda_fail(be,
                             "matvec: Q4_K / Q6_K rows need the activations in chunk order");
        if constexpr (exact_lanes_type(T)) {
            if (!job_blocks(job, MV_ROWS)) return cuda_fail(be, "matvec: too many rows");
            CUDA_CHECK(be, launch_pdl(be, matvec_exact_kernel<T>, dim3(job.bstart[job.nw]), blk,
                                      job, a, w.n_in, 1));
            CUDA_LAUNCHED(be, "matvec_exact_kernel");
            return;
        }
        /* enough loads in flight per lane whatever the row length */
        const int64_t per_lane = (w.nb * units_per_block(T) + 31) / 32;
        cudaError_t e;
        if (q4k_chunks(T, w.n_in) && be->q4k_split &&
            !one_wave(be, matvec_q_kernel<MV_Q4K_CH, 1, 4>, job, MV_ROWS)) {
            /* each row's rounds over a warp pair, two rows per warp (7B's gate / up: 5504
             * blocks of 4 rows at 8 per SM): step 1968-1975 -> 1948 us in one run; three
             * rows per warp split the same way: 1970, one row: 2046 */
            if (!job_blocks(job, MV_ROWS)) return cuda_fail(be, "matvec: too many rows");
            e = launch_pdl(be, matvec_q_kernel<MV_Q4K_CH, 2, 0>, dim3(job.bstart[job.nw]), blk,
                           job, a);
        } else if (q4k_chunks(T, w.n_in) && be->q4k_rows == 3 &&
                   !one_wave(be, matvec_q_kernel<MV_Q4K_CH, 1, 4>, job, MV_ROWS)) {
            /* three rows per warp (7B's gate / up: 1835 blocks at 6 per SM, 2.3 waves
             * instead of 2.6 at two rows): step 1983 -> 1968 us in one run */
            if (!job_blocks(job, 3 * MV_ROWS)) return cuda_fail(be, "matvec: too many rows");
            e = launch_pdl(be, matvec_q_kernel<MV_Q4K_CH, 3, 2>, dim3(job.bstart[job.nw]), blk,
                           job, a);
        } else if (q4k_chunks(T, w.n_in) && be->q4k_rows >= 2 &&
                   !one_wave(be, matvec_q_kernel<MV_Q4K_CH, 1, 4>, job, MV_ROWS)) {
            /* two rows per warp share each activation load (a chunk's 4 activation loads
             * touch 16 lines per warp-instruction each); only where one row per warp would
             * need several waves (--mvhot: 22016 x 4096 24.4 -> 20.7 us, but 4096 x 4096
             * 5.4 -> 5.9 us) */
            if (!job_blocks(job, 2 * MV_ROWS)) return cuda_fail(be, "matvec: too many rows");
            e = launch_pdl(be, matvec_q_kernel<MV_Q4K_CH, 2, 2>, dim3(job.bstart[job.nw]), blk,
                           job, a);
        } else if (q6k_chunks(T, w.n_in) &&
                   !one_wave(be, matvec_q_kernel<MV_Q6K_CH, 1, 2>, job, MV_ROWS)) {
            /* as Q4_K's chunks: two rows per warp share each activation load */
            if (!job_blocks(job, 2 * MV_ROWS)) return cuda_fail(be, "matvec: too many rows");
            e = launch_pdl(be, matvec_q_kernel<MV_Q6K_CH, 2, 2>, dim3(job.bstart[job.nw]), blk,
                           job, a);
        } else if (q6k_chunks(T, w.n_in)) {
            if (!job_blocks(job, MV_ROWS)) return cuda_fail(be, "matvec: too many rows");
            e = launch_pdl(be, matvec_q_kernel<MV_Q6K_CH, 1, 2>, dim3(job.bstart[job.nw]), blk,
                           job, a);
        } else if (q4k_chunks(T, w.n_in) && be->q4k_long && w.n_in > 64 * QK_K / Q4K_CHUNKS &&
                   w.n_in <= 96 * QK_K / Q4K_CHUNKS &&
                   one_wave(be, matvec_q_kernel<MV_Q4K_CH, 1, 6>, job, MV_ROWS)) {
            /* rows of 65-96 chunks (TinyLlama's ffn_down) in one round trip: three rounds
             * in flight per lane instead of two, then a third (--mvhot 2048 x 5632 from
             * DRAM 4.46 -> 3.62 us; TinyLlama step 625 -> 616 us in one run) */
            if (!job_blocks(job, MV_ROWS)) return cuda_fail(be, "matvec: too many rows");
            e = launch_pdl(be, matvec_q_kernel<MV_Q4K_CH, 1, 6>, dim3(job.bstart[job.nw]), blk,
                           job, a);
        } else if (q4k_chunks(T, w.n_in) && be->q4k_long && w.n_in > 96 * QK_K / Q4K_CHUNKS) {
            /* longer rows (7B's ffn_down, 172 chunks) even where one row per warp fits in one
             * wave: each row's rounds split over a warp pair, as for several waves (--mvhot
             * 4096 x 11008 from DRAM 10.43 -> 9.57 us; 7B step -4..-10 us in one run) */
            if (!job_blocks(job, MV_ROWS)) return cuda_fail(be, "matvec: too many rows");
            e = launch_pdl(be, matvec_q_kernel<MV_Q4K_CH, 2, 0>, dim3(job.bstart[job.nw]), blk,
                           job, a);
        } else if (q4k_chunks(T, w.n_in)) {
            if (!job_blocks(job, MV_ROWS)) return cuda_fail(be, "matvec: too many rows");
            e = launch_pdl(be, matvec_q_kernel<MV_Q4K_CH, 1, 4>, dim3(job.bstart[job.nw]), blk,
                           job, a);
        } else if (per_lane <= 1) {
            job_blocks(job, 4 * MV_ROWS);
            e = launch_pdl(be, matvec_q_kernel<T, 4, 1>, dim3(job.bstart[job.nw]), blk, job, a);
        } else if (per_lane <= 2 && !one_wave(be, matvec_q_kernel<T, 2, 2>, job, 2 * MV_ROWS)) {
            /* 4 rows per warp, half of each row's loads at a time: every block resident at
             * once (gate / up); a second wave would only start loading when the first ends */
            job_blocks(job, 4 * MV_ROWS);
            e = launch_pdl(be, matvec_q_kernel<T, 4, 1>, dim3(job.bstart[job.nw]), blk, job, a);
        } else if (per_lane <= 2) {
            job_blocks(job, 2 * MV_ROWS);
            e = launch_pdl(be, matvec_q_kernel<T, 2, 2>, dim3(job.bstart[job.nw]), blk, job, a);
        } else {
            if (!job_blocks(job, MV_ROWS)) return cuda_fail(be, "matvec: too many rows");
            bool done = false;
            if constexpr (T == CHORD_TYPE_Q6_K)
                if (be->mv_waves && per_lane > 4 &&
                    !one_wave(be, matvec_q_kernel<T, 1, 4>, job, MV_ROWS)) {
                    /* long Q6_K rows (Llama-2-7B's ffn_down: 4096 x 11008) take several
                     * rounds anyway; at 2 units a round 8 blocks fit per SM: one wave */
                    e = launch_pdl(be, matvec_q_kernel<T, 1, 2>, dim3(job.bstart[job.nw]), blk,
                                   job, a);
                    done = true;
                }
            if (!done)
                e = launch_pdl(be, matvec_q_kernel<T, 1, 4>, dim3(job.bstart[job.nw]), blk, job,
                               a);
        }
        CUDA_CHECK(be, e);
    }
    CUDA_LAUNCHED(be, "matvec_kernel");
}

/* The type pairs matvec_q2_kernel is built for (both with the same units per block). */
static bool q2_pair(int t0, int t1) {
    return t0 == CHORD_TYPE_Q4_K && t1 == CHORD_TYPE_Q6_K;
}

template <int T0, int T1> static void launch_q2(cuda_backend *be, mvjob &job, const xact &a) {
    const wview &w = job.w[0];
    if (q4k_chunks(T0, w.n_in) && !a.qc)
        return cuda_fail(be, "matvec: Q4_K rows need the activations in chunk order");
    const int64_t per_lane = (w.nb * units_per_block(T0) + 31) / 32;
    const dim3 blk(32 * MV_ROWS);
    cudaError_t e;
    if (per_lane <= 1) {
        job_blocks(job, 4 * MV_ROWS);
        e = launch_pdl(be, matvec_q2_kernel<T0, T1, 4, 1>, dim3(job.bstart[job.nw]), blk, job,
                       a);
    } else if (per_lane <= 2) {
        job_blocks(job, 2 * MV_ROWS);
        e = launch_pdl(be, matvec_q2_kernel<T0, T1, 2, 2>, dim3(job.bstart[job.nw]), blk, job,
                       a);
    } else {
        /* rows longer than 2048 (per_lane > 2): Q4_K and Q6_K by chunks, as everywhere
         * (q4k_chunks, q6k_chunks) */
        static_assert(T0 == CHORD_TYPE_Q4_K && T1 == CHORD_TYPE_Q6_K, "q2_pair's types");
        if (be->q4k_rows >= 2 &&
            !one_wave(be, matvec_q2_kernel<MV_Q4K_CH, MV_Q6K_CH, 1, 4>, job, MV_ROWS)) {
            /* two rows per warp share each activation load (as in launch_matvec). Several
             * waves: the next kernel (the attention) may launch at entry and stage its K / V
             * rows during the last wave (7B step 1940 -> 1935 us, three interleaved pairs;
             * TinyLlama's one-wave launch got slower with it, 615 -> 622) */
            if (!job_blocks(job, 2 * MV_ROWS)) return cuda_fail(be, "matvec: too many rows");
            job.trig_in = be->mv_ptrig;
            e = launch_pdl(be, matvec_q2_kernel<MV_Q4K_CH, MV_Q6K_CH, 2, 2>,
                           dim3(job.bstart[job.nw]), blk, job, a);
        } else {
            if (!job_blocks(job, MV_ROWS)) return cuda_fail(be, "matvec: too many rows");
            e = launch_pdl(be, matvec_q2_kernel<MV_Q4K_CH, MV_Q6K_CH, 1, 4>,
                           dim3(job.bstart[job.nw]), blk, job, a);
        }
    }
    CUDA_CHECK(be, e);
    CUDA_LAUNCHED(be, "matvec_q2_kernel");
}

bool cuda_matvec_pair(cuda_backend *be, int n_w, const chord_weight *const *ws,
                      float *const *ys, float *const *res, const qact *xa) {
    if (n_w < 2 || n_w > CUDA_MV_MAXW || !xa || be->mv_pairs == 0) return false;
    int n0 = 1;
    while (n0 < n_w && ws[n0]->type == ws[0]->type)
        n0++;
    if (n0 == n_w || !q2_pair(ws[0]->type, ws[n0]->type)) return false;
    for (int k = 0; k < n_w; k++)
        if (ws[k]->n_in != ws[0]->n_in || (k >= n0 && ws[k]->type != ws[n0]->type))
            return false;
    if (xa->qb != act_block(ws[0]->type) || xa->qb != act_block(ws[n0]->type)) return false;
    mvjob job;
    memset(&job, 0, sizeof job);
    job.nw = n_w;
    job.nw0 = n0;
    job.kt = take_ktr(be, 'm');
    for (int k = 0; k < n_w; k++) {
        job.w[k] = wview_of(ws[k]);
        job.y[k] = ys[k];
        job.res[k] = res ? res[k] : NULL;
    }
    const xact a = {xa->q, xa->d, xa->bs, xa->s, xa->qc};
    launch_q2<CHORD_TYPE_Q4_K, CHORD_TYPE_Q6_K>(be, job, a);
    for (int k = 0; k < n_w; k++)
        cuda_pf_weight(be, job.kt, ws[k]);
    return true;
}

void cuda_matvec_multi(cuda_backend *be, int n_w, const chord_weight *const *ws,
                       float *const *ys, float *const *res, const float *x, const qact *xa) {
    if (n_w <= 0) return;
    if (n_w > CUDA_MV_MAXW) {
        cuda_fail(be, "matvec: %d weights in one launch (at most %d)", n_w, CUDA_MV_MAXW);
        return;
    }
    mvjob job;
    memset(&job, 0, sizeof job);
    job.nw = n_w;
    job.kt = take_ktr(be, 'm');
    for (int k = 0; k < n_w; k++) {
        if (ws[k]->type != ws[0]->type || ws[k]->n_in != ws[0]->n_in) {
            cuda_fail(be, "matvec: weights of one launch differ in type or row length");
            return;
        }
        job.w[k] = wview_of(ws[k]);
        job.y[k] = ys[k];
        job.res[k] = res ? res[k] : NULL;
    }
    CUDA_TYPE_SWITCH(ws[0]->type, launch_matvec,
                     cuda_fail(be, "matvec: unsupported type %d", ws[0]->type), be, job, x, xa);
    /* Steps with matvec_exact_kernel's weights go without prefetch (TinyLlama Q5_K_M tg128
     * 944 -> 863 with it); the other kernels report to the prefetcher (not
     * matvec_f_scalar_kernel). */
    if (exact_lanes_type(ws[0]->type))
        cuda_pf_cancel(be);
    else if (!type_is_float(ws[0]->type) || (ws[0]->n_in % 8 == 0 && ((uintptr_t)x & 15) == 0))
        for (int k = 0; k < n_w; k++)
            cuda_pf_weight(be, job.kt, ws[k]);
}

template <int T>
static void launch_exact(cuda_backend *be, const mvjob &job, const xact &a, int n) {
    if constexpr (exact_batch_type(T)) {
        const dim3 grid(job.bstart[job.nw]), blk(32 * MV_ROWS);
        matvec_exact_kernel<T><<<grid, blk, 0, be->stream>>>(job, a, job.w[0].n_in, n);
        CUDA_LAUNCHED(be, "matvec_exact_kernel");
    }
}

bool cuda_matmul_exact(cuda_backend *be, int n_w, const chord_weight *const *ws,
                       float *const *ys, const qact *xa, int n) {
    if (n_w <= 0 || n_w > CUDA_MV_MAXW || n <= 0 || n >= CUDA_EXACT_MAX_N ||
        !exact_batch_type(ws[0]->type) || !xa || xa->qb != act_block(ws[0]->type))
        return false;
    const char *ex = getenv("CHORD_CUDA_EXACT"); /* 0: short batches on the tensor cores too */
    if (ex && !strcmp(ex, "0")) return false;
    mvjob job;
    memset(&job, 0, sizeof job);
    job.nw = n_w;
    job.kt = take_ktr(be, 'm');
    for (int k = 0; k < n_w; k++) {
        if (ws[k]->type != ws[0]->type || ws[k]->n_in != ws[0]->n_in) return false;
        job.w[k] = wview_of(ws[k]);
        job.y[k] = ys[k];
    }
    if (!job_blocks(job, MV_ROWS)) return false;
    const xact a = {xa->q, xa->d, xa->bs, xa->s, xa->qc};
    CUDA_TYPE_SWITCH(ws[0]->type, launch_exact, (void)0, be, job, a, n);
    return true;
}

/* ------------------------------------------- matvec quantizing its own input */

/* Decode, quantized weights: every block first quantizes the float input x (optionally
 * rmsnorm(x) * nw) into shared memory itself, exactly as cuda_quantize_act /
 * cuda_rmsnorm_quant would, instead of a separate kernel doing it once (the input is
 * small and in L2; a kernel boundary costs more). Block 0 writes the normed x to xout.
 * With glu (two weights: gate, up, of one shape), a warp takes row r of both and writes
 * gate[r] = g, up[r] = u, glu_out[r] = silu(g) * u. The weight loads of the first
 * iteration are issued before waiting for the previous kernel (PDL). */
#define MVF_WARPS 8
#define PRO_SMEM_MAX (96 * 1024) /* within the opt-in limit of every sm_80+ device */

typedef struct mvpro {
    const float *x;
    const float *nw; /* rmsnorm weight, or NULL */
    float eps;
    float *xout; /* the normed x (block 0 writes it), or NULL */
    float *glu_out;
    int n_in;
} mvpro;

/* shared memory layout of the quantized input: as cuda_qact_view's scratch */
__host__ __device__ static inline size_t pro_off_d(int n_in) {
    return ((size_t)n_in + 15) & ~(size_t)15;
}
__host__ __device__ static inline size_t pro_dbytes(int n_in, int qb) {
    return ((size_t)(n_in / qb) * sizeof(float) + 15) & ~(size_t)15;
}
__host__ __device__ static inline size_t pro_off_x(int n_in, int qb) {
    return pro_off_d(n_in) + (qb == 32 ? 2 : 1) * pro_dbytes(n_in, qb) +
           (((size_t)(n_in / 16) * sizeof(int16_t) + 15) & ~(size_t)15);
}

/* Which weight of the job owns block tile t. */
__device__ __forceinline__ int job_pick_tile(const mvjob &job, unsigned t) {
    int k = 0;
#pragma unroll
    for (int i = 1; i < CUDA_MV_MAXW; i++)
        if (i < job.nw && t >= job.bstart[i]) k = i;
    return k;
}

/* Q4_K chunks in the input-quantizing kernel (only ever called for Q4_K) */
template <int T>
__device__ __forceinline__ uraw qp_load_ch(const wview &w, int64_t row, int u,
                                           const q4k_lane &c) {
    if constexpr (T == CHORD_TYPE_Q4_K)
        return q4k_load(w.q + (size_t)row * w.nb * 128, w.s + (size_t)row * w.nb * 16, u >> 2,
                        c);
    else
        return uraw{};
}
template <int T>
__device__ __forceinline__ float qp_dot_ch(const uraw &r, int u, const xact &xa,
                                           const q4k_lane &c) {
    if constexpr (T == CHORD_TYPE_Q4_K)
        return q4k_dot(r, u >> 2, c, xa); /* x in shared memory, natural order */
    else
        return 0.f;
}

/* Persistent when gridDim.x < the job's tiles: block b takes tiles b, b + gridDim.x, ...,
 * so the input is quantized once per block, not once per tile; the next tile's first
 * weight loads go out before the current tile's sums are reduced and stored. */
template <int T, int R, int U, bool GLU>
__global__ void __launch_bounds__(32 * MVF_WARPS)
    matvec_qp_kernel(const __grid_constant__ mvjob job, const __grid_constant__ mvpro pro) {
    constexpr int QB = act_block(T), PER = QB / 32;
    extern __shared__ int4 smq[];
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    const unsigned n_tiles = job.bstart[GLU ? 1 : job.nw];
    /* one row length per job; Q4_K rows by chunks as in mv_rows (q4k_chunks) */
    const bool ch = q4k_chunks(T, job.w[0].n_in);
    const int n_units = (int)job.w[0].nb * (ch ? Q4K_CHUNKS : units_per_block(T));
    const mv_lane<T> L(lane);
    const q4k_lane Lc = q4k_lane_of(lane); /* not mv_rows_ch's order */
    unsigned tile = blockIdx.x;
    ktrace kt(job.kt);
    int k = 0;
    bool on[R];
    int64_t row[R];
    auto setup = [&](unsigned t) {
        k = GLU ? 0 : job_pick_tile(job, t);
        const int64_t rbase = ((int64_t)(t - job.bstart[k]) * MVF_WARPS + warp) * (GLU ? 1 : R);
#pragma unroll
        for (int r = 0; r < R; r++) {
            row[r] = GLU ? rbase : rbase + r;
            on[r] = row[r] < job.w[k].n_out;
        }
    };
    uraw raw[R][U];
    auto issue = [&](int base) {
#pragma unroll
        for (int r = 0; r < R; r++)
#pragma unroll
            for (int i = 0; i < U; i++)
                if (on[r] && base + 32 * i < n_units)
                    raw[r][i] =
                        ch ? qp_load_ch<T>(job.w[GLU ? r : k], row[r], base + 32 * i, Lc)
                           : mv_load<T>(job.w[GLU ? r : k], row[r], base + 32 * i, L);
    };
    setup(tile);
    issue(lane); /* before waiting for the previous kernel (PDL) */
    uint32_t dep = 0;
#pragma unroll
    for (int r = 0; r < R; r++)
        if (on[r] && lane < n_units) dep ^= raw[r][0].a.x;
    pdl_wait_after(dep); /* x comes from the previous kernel */
    kt.released();
    pf_report(job.kt);
    pdl_trigger();

    /* the block quantizes x (all threads: barriers inside); x (and the norm weights) go
     * to shared memory first, every load of a thread issued before it adds */
    const int n_in = pro.n_in;
    int8_t *sq = reinterpret_cast<int8_t *>(smq);
    float *sd = reinterpret_cast<float *>(reinterpret_cast<uint8_t *>(smq) + pro_off_d(n_in));
    float *ss = QB == 32 ? sd + pro_dbytes(n_in, QB) / sizeof(float) : NULL;
    int16_t *sbs = reinterpret_cast<int16_t *>(reinterpret_cast<uint8_t *>(sd) +
                                               (QB == 32 ? 2 : 1) * pro_dbytes(n_in, QB));
    float *xsm =
        reinterpret_cast<float *>(reinterpret_cast<uint8_t *>(smq) + pro_off_x(n_in, QB));
    float *wsm = xsm + n_in;
    {
        constexpr int UNR = 8;
        double sq2 = 0.0;
        for (int i0 = threadIdx.x; i0 < n_in; i0 += UNR * (int)blockDim.x) {
            float v[UNR], g[UNR];
#pragma unroll
            for (int j = 0; j < UNR; j++) {
                const int i = i0 + j * (int)blockDim.x;
                v[j] = i < n_in ? pro.x[i] : 0.f;
                g[j] = pro.nw && i < n_in ? pro.nw[i] : 0.f;
            }
#pragma unroll
            for (int j = 0; j < UNR; j++) {
                const int i = i0 + j * (int)blockDim.x;
                if (i < n_in) {
                    xsm[i] = v[j];
                    if (pro.nw) wsm[i] = g[j];
                }
                sq2 = __dadd_rn(sq2, (double)__fmul_rn(v[j], v[j]));
            }
        }
        float scale = 1.0f;
        if (pro.nw)
            scale = rms_scale_reduce(sq2, xsm, n_in, pro.eps); /* barriers inside */
        else
            __syncthreads();
        const bool wr = pro.xout && blockIdx.x == 0;
        for (int b = warp; b < n_in / QB; b += MVF_WARPS) {
            float v[PER];
#pragma unroll
            for (int i = 0; i < PER; i++) {
                const int e = b * QB + lane * PER + i;
                v[i] = pro.nw ? __fmul_rn(__fmul_rn(xsm[e], scale), wsm[e]) : xsm[e];
                if (wr) pro.xout[e] = v[i];
            }
            quant_store<QB>(v, lane, b, sq, sd, sbs, ss, nullptr);
        }
        __syncthreads();
    }
    const xact xa = {sq, sd, sbs, ss};

    for (;;) {
        float acc[R];
#pragma unroll
        for (int r = 0; r < R; r++)
            acc[r] = 0.f;
        for (int base = lane;;) {
#pragma unroll
            for (int r = 0; r < R; r++)
#pragma unroll
                for (int i = 0; i < U; i++)
                    if (on[r] && base + 32 * i < n_units)
                        acc[r] += ch ? qp_dot_ch<T>(raw[r][i], base + 32 * i, xa, Lc)
                                     : mv_dot<T>(raw[r][i], base + 32 * i, xa, L);
            base += 32 * U;
            if (base >= n_units) break;
            issue(base);
        }
        const int kc = k;
        int64_t rc[R];
        bool oc[R];
#pragma unroll
        for (int r = 0; r < R; r++)
            rc[r] = row[r], oc[r] = on[r];
        const unsigned next = tile + gridDim.x;
        if (next < n_tiles) {
            setup(next);
            issue(lane);
        }
        float v[R];
#pragma unroll
        for (int r = 0; r < R; r++)
            v[r] = mv_warp_sum(acc[r]);
        if (lane == 0) {
            if constexpr (GLU) {
                if (oc[0]) {
                    job.y[0][rc[0]] = v[0];
                    job.y[1][rc[0]] = v[1];
                    pro.glu_out[rc[0]] = silu_mul(v[0], v[1]);
                }
            } else {
                float *y = job.y[kc], *res = job.res[kc];
#pragma unroll
                for (int r = 0; r < R; r++)
                    if (oc[r]) {
                        y[rc[r]] = v[r];
                        if (res) res[rc[r]] += v[r];
                    }
            }
        }
        if (next >= n_tiles) break;
        tile = next;
    }
}

/* the quantized input, then x and the norm weights (with a norm) as floats */
static size_t pro_smem(int64_t n_in, int qb, bool norm) {
    return pro_off_x((int)n_in, qb) + (norm ? 2 : 1) * (size_t)n_in * sizeof(float);
}

bool cuda_matvec_pro_ok(const chord_weight *w) {
    if (!w || !w->dev || !cuda_type_ok(w->type) || type_is_float(w->type)) return false;
    const int qb = act_block(w->type);
    return w->n_in % qb == 0 && w->n_in <= (1 << 24) &&
           pro_smem(w->n_in, qb, true) <= PRO_SMEM_MAX;
}

/* Blocks of a launch over `tiles` block tiles: at most mv_persist per SM (0: one per tile). */
static dim3 pro_grid(const cuda_backend *be, unsigned tiles) {
    const long cap = (long)be->mv_persist * be->n_sm;
    return dim3(cap > 0 && (long)tiles > cap ? (unsigned)cap : tiles);
}

template <int T>
static void launch_matvec_pro(cuda_backend *be, mvjob &job, const mvpro &pro, bool glu) {
    if constexpr (type_is_float(T)) {
        cuda_fail(be, "matvec: no input quantization for float weights");
    } else {
        const wview &w = job.w[0];
        const size_t smem = pro_smem(w.n_in, act_block(T), pro.nw != NULL);
        const int64_t per_lane = (w.nb * units_per_block(T) + 31) / 32;
        const dim3 blk(32 * MVF_WARPS);
        cudaError_t e;
        if (glu) {
            job_blocks(job,
                       MVF_WARPS); /* block ranges of weight 0 (one row of each per warp) */
            const dim3 grid = pro_grid(be, job.bstart[1]);
            if (per_lane <= 1)
                e = launch_pdl_smem(be, matvec_qp_kernel<T, 2, 1, true>, grid, blk, smem, job,
                                    pro);
            else if (per_lane <= 2)
                e = launch_pdl_smem(be, matvec_qp_kernel<T, 2, 2, true>, grid, blk, smem, job,
                                    pro);
            else
                e = launch_pdl_smem(be, matvec_qp_kernel<T, 2, 4, true>, grid, blk, smem, job,
                                    pro);
        } else if (per_lane <= 1) {
            job_blocks(job, 4 * MVF_WARPS);
            e = launch_pdl_smem(be, matvec_qp_kernel<T, 4, 1, false>,
                                pro_grid(be, job.bstart[job.nw]), blk, smem, job, pro);
        } else if (per_lane <= 2) {
            job_blocks(job, 2 * MVF_WARPS);
            e = launch_pdl_smem(be, matvec_qp_kernel<T, 2, 2, false>,
                                pro_grid(be, job.bstart[job.nw]), blk, smem, job, pro);
        } else {
            job_blocks(job, MVF_WARPS);
            e = launch_pdl_smem(be, matvec_qp_kernel<T, 1, 4, false>,
                                pro_grid(be, job.bstart[job.nw]), blk, smem, job, pro);
        }
        CUDA_CHECK(be, e);
        CUDA_LAUNCHED(be, "matvec_qp_kernel");
    }
}

void cuda_matvec_pro(cuda_backend *be, int n_w, const chord_weight *const *ws, float *const *ys,
                     float *const *res, const float *x, const float *nw, float eps, float *xout,
                     float *glu_out) {
    if (n_w <= 0 || n_w > CUDA_MV_MAXW || (glu_out && n_w != 2)) {
        cuda_fail(be, "matvec: %d weights for one fused launch", n_w);
        return;
    }
    mvjob job;
    memset(&job, 0, sizeof job);
    job.nw = n_w;
    job.kt = take_ktr(be, 'm');
    for (int k = 0; k < n_w; k++) {
        if (!cuda_matvec_pro_ok(ws[k]) || ws[k]->type != ws[0]->type ||
            ws[k]->n_in != ws[0]->n_in || (glu_out && ws[k]->n_out != ws[0]->n_out)) {
            cuda_fail(be, "matvec: weights of one fused launch differ in type or shape");
            return;
        }
        job.w[k] = wview_of(ws[k]);
        job.y[k] = ys[k];
        job.res[k] = res ? res[k] : NULL;
    }
    mvpro pro;
    memset(&pro, 0, sizeof pro);
    pro.x = x, pro.nw = nw, pro.eps = eps, pro.xout = xout, pro.glu_out = glu_out;
    pro.n_in = (int)ws[0]->n_in;
    CUDA_TYPE_SWITCH(ws[0]->type, launch_matvec_pro,
                     cuda_fail(be, "matvec: unsupported type %d", ws[0]->type), be, job, pro,
                     glu_out != NULL);
}

void cuda_matvec(cuda_backend *be, const chord_weight *w, const float *x, const qact *xa,
                 float *y) {
    float *ys[1] = {y};
    cuda_matvec_multi(be, 1, &w, ys, NULL, x, xa);
}
