/* Causal attention over an F16 KV cache in device memory.
 *
 * Cache layout (kv_bytes): k and v are each half [n_ctx][n_head_kv * head_dim].
 * Arithmetic: the CPU backend's (src/cpu/backend_cpu.c, which rounds as llama.cpp), one
 * operation at a time, so that both backends give the same bits:
 *   - q, K, V rounded to half; every dot product (q.K, P.V) as the CPU's F16 vec_dot:
 *     16 lanes, lane l accumulating the products of elements l, l + 16, ... in order with
 *     an FMA, then the lanes summed pairwise (xm_sum16); the score is then times scale;
 *   - softmax: exps (xm_exp) of score - max; the row padded with zeros to a multiple of
 *     16, each 16 summed pairwise in float, those sums added in double in order; then
 *     p = half((float)(1 / sum) * e).
 * The in-order double sum and the per-lane chains are serial by nature: one thread adds
 * the group sums of a row, and keys are never split over blocks (that would reorder a
 * lane's chain); parallelism comes from the 16 lanes x head_dim / 4 columns instead.
 *
 * Prefill (three kernels per chunk of tokens, chunks bound the score buffer):
 *   1. scores: one block per (kv head [slice of its q heads], token, 128 keys), one
 *      thread per key; the q heads sharing a kv head (GQA) are handled together;
 *   2. softmax: one block per (head, token) row, in place;
 *   3. P.V: one block per (head, token), one thread per (lane, 4 dims).
 * These three are the reference of the tiled kernels (attn_tiled.cuh), which give the same
 * bits faster and are the default for head_dim 64 and 128; CHORD_CUDA_ATTN=old selects
 * these for an A/B, CHORD_CUDA_ATTN=split sends n = 1 through the prefill path as well.
 * Decode: attn_decode_kernel below, everything in one kernel. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <cooperative_groups.h>

#include "cuda_common.cuh"
#include "exact_math.h"
#include "ptx.cuh"
#include "quant.cuh"

#define AT 128                      /* threads per block (scores) */
#define PVT 256                     /* threads per block (P.V) */
#define GMAX 32                     /* q heads per block (scores) */
#define QMAX 2048                   /* floats of q per scores block */
#define HD_MAX 768                  /* 16 lanes x head_dim floats: 48 KB of shared memory */
#define GS_MAX 1024                 /* group sums per softmax pass */
#define S_BUDGET ((size_t)64 << 20) /* bytes of scores per chunk of tokens */
#define FLASH_MIN_N 64              /* tokens from which prefill uses attn_flash.cu */

__device__ __forceinline__ float round_half(float x) {
    return __half2float(__float2half_rn(x));
}

__global__ void kv_store_kernel(__half *__restrict__ kc, __half *__restrict__ vc,
                                const float *__restrict__ k, const float *__restrict__ v,
                                size_t n) {
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < n;
         i += (size_t)gridDim.x * blockDim.x) {
        kc[i] = __float2half_rn(k[i]);
        vc[i] = __float2half_rn(v[i]);
    }
}

/* q . k (q float, half-rounded; k half in memory, 8-byte aligned; hd % 4 == 0) */
__device__ __forceinline__ float qk_dot_h(const float *qs, const __half *kr, int hd) {
    float acc[16];
#pragma unroll
    for (int e = 0; e < 16; e++)
        acc[e] = 0.f;
    for (int c = 0; c < hd; c += 16) {
#pragma unroll
        for (int g = 0; g < 4; g++) {
            if (c + 4 * g < hd) {
                const uint2 raw = __ldg(reinterpret_cast<const uint2 *>(kr + c + 4 * g));
                const float2 f0 = __half22float2(*reinterpret_cast<const __half2 *>(&raw.x));
                const float2 f1 = __half22float2(*reinterpret_cast<const __half2 *>(&raw.y));
                const float *q = qs + c + 4 * g;
                acc[4 * g] = __fmaf_rn(f0.x, q[0], acc[4 * g]);
                acc[4 * g + 1] = __fmaf_rn(f0.y, q[1], acc[4 * g + 1]);
                acc[4 * g + 2] = __fmaf_rn(f1.x, q[2], acc[4 * g + 2]);
                acc[4 * g + 3] = __fmaf_rn(f1.y, q[3], acc[4 * g + 3]);
            }
        }
    }
    return xm_sum16(acc);
}

/* the same with k as floats (already half-rounded) */
__device__ __forceinline__ float qk_dot_f(const float *qs, const float *kf, int hd) {
    float acc[16];
#pragma unroll
    for (int e = 0; e < 16; e++)
        acc[e] = 0.f;
    for (int c = 0; c < hd; c += 16) {
#pragma unroll
        for (int e = 0; e < 16; e++)
            if (c + e < hd) acc[e] = __fmaf_rn(kf[c + e], qs[c + e], acc[e]);
    }
    return xm_sum16(acc);
}

/* q . k for one key of 8 * NV halves (raw, in registers): lane of element 8v + e is
 * 8 (v % 2) + e */
template <int NV> __device__ __forceinline__ float qk_dot8(const float *qs, const uint4 *raw) {
    float acc[16];
#pragma unroll
    for (int e = 0; e < 16; e++)
        acc[e] = 0.f;
#pragma unroll
    for (int v = 0; v < NV; v++) {
        const __half2 *h2 = reinterpret_cast<const __half2 *>(&raw[v]);
        const int l0 = 8 * (v & 1);
#pragma unroll
        for (int e = 0; e < 4; e++) {
            const float2 f = __half22float2(h2[e]);
            acc[l0 + 2 * e] = __fmaf_rn(f.x, qs[8 * v + 2 * e], acc[l0 + 2 * e]);
            acc[l0 + 2 * e + 1] = __fmaf_rn(f.y, qs[8 * v + 2 * e + 1], acc[l0 + 2 * e + 1]);
        }
    }
    return xm_sum16(acc);
}

/* S[t][h][j] = (half(q[t][h]) . K[j][kh]) * scale for keys j <= pos_first + t. */
__global__ void __launch_bounds__(AT)
    attn_scores_kernel(float *__restrict__ S, int ldS, const float *__restrict__ q,
                       const __half *__restrict__ kc, int n_head, int n_head_kv, int hd,
                       int pos_first, int gsplit, int gn_max, float scale) {
    extern __shared__ float qs[]; /* [gn_max][hd] */
    const int group = n_head / n_head_kv;
    const int kh = blockIdx.x / gsplit, g0 = (blockIdx.x % gsplit) * gn_max;
    const int gn = min(gn_max, group - g0);
    const int t = blockIdx.y, len = pos_first + t + 1;
    const int jb = blockIdx.z * AT;
    if (jb >= len) return; /* the whole block is past the causal limit */
    const int h0 = kh * group + g0, kvd = n_head_kv * hd;
    for (int i = threadIdx.x; i < gn * hd; i += AT)
        qs[i] = round_half(q[((size_t)t * n_head + h0) * hd + i]);
    __syncthreads();
    const int j = jb + threadIdx.x;
    if (j >= len) return;
    const __half *kr = kc + (size_t)j * kvd + (size_t)kh * hd;
    for (int gg = 0; gg < gn; gg++)
        S[((size_t)t * n_head + h0 + gg) * ldS + j] =
            __fmul_rn(qk_dot_h(qs + gg * hd, kr, hd), scale);
}

template <typename V> __device__ __forceinline__ V block_reduce(V v, bool is_max, V *red) {
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) {
        V u = __shfl_xor_sync(0xffffffffu, v, o);
        v = is_max ? (u > v ? u : v) : v + u;
    }
    const int lane = threadIdx.x & 31, wp = threadIdx.x >> 5, nw = blockDim.x >> 5;
    __syncthreads(); /* red is reused */
    if (lane == 0) red[wp] = v;
    __syncthreads();
    v = lane < nw ? red[lane] : (is_max ? (V)-INFINITY : (V)0);
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) {
        V u = __shfl_xor_sync(0xffffffffu, v, o);
        v = is_max ? (u > v ? u : v) : v + u;
    }
    return v;
}

/* Softmax of row[0..len) in place, by the whole block (blockDim a multiple of 32; every
 * thread must call it). Thread tid owns elements tid, tid + blockDim, ... (callers that
 * wrote the row with that mapping need no barrier before). gs: GS_MAX floats of shared
 * memory, free during the call. Each 16 consecutive threads hold one group of 16: the
 * shuffles down by 8, 4, 2, 1 add exactly the pairs xm_sum16 adds. */
__device__ void softmax_row(float *row, int len, float *gs, double *dsh, float *redf) {
    const int tid = threadIdx.x, bd = blockDim.x;
    float mx = -INFINITY;
    for (int j = tid; j < len; j += bd)
        mx = fmaxf(mx, row[j]);
    mx = block_reduce<float>(mx, true, redf);
    const int len16 = (len + 15) & ~15;
    double sum = 0.0;
    for (int base = 0; base < len16; base += 16 * GS_MAX) {
        const int end = min(len16, base + 16 * GS_MAX);
        for (int j0 = base; j0 < end; j0 += bd) {
            const int j = j0 + tid;
            float e = 0.f; /* the CPU pads with e^-inf */
            if (j < len && j < end) {
                e = xm_exp(__fsub_rn(row[j], mx));
                row[j] = e;
            }
#pragma unroll
            for (int o = 8; o > 0; o >>= 1)
                e = __fadd_rn(e, __shfl_down_sync(0xffffffffu, e, o, 16));
            if ((tid & 15) == 0 && j < end) gs[(j - base) >> 4] = e;
        }
        __syncthreads();
        if (tid == 0) {
            const int ng = (end - base) >> 4;
            for (int g = 0; g < ng; g++)
                sum = __dadd_rn(sum, (double)gs[g]);
        }
        __syncthreads();
    }
    if (tid == 0) *dsh = sum;
    __syncthreads();
    const float inv = __double2float_rn(__ddiv_rn(1.0, *dsh));
    for (int j = tid; j < len; j += bd)
        row[j] = round_half(__fmul_rn(row[j], inv));
}

__global__ void attn_softmax_kernel(float *__restrict__ S, int ldS, int n_head, int pos_first) {
    __shared__ float redf[32];
    __shared__ float gs[GS_MAX];
    __shared__ double dsh;
    const int h = blockIdx.x, t = blockIdx.y, len = pos_first + t + 1;
    softmax_row(S + ((size_t)t * n_head + h) * ldS, len, gs, &dsh, redf);
}

/* One of the 16 lanes of the F16 dot P.V for 4 adjacent output elements: keys l, l + 16,
 * ... in order, each an FMA per element (the CPU's lane chain). Key `pos` (if >= 0) takes
 * the values vme instead of the cache (the decode step's own V, not yet stored). Eight
 * keys' loads are issued before their FMAs, a short last batch too (one key at a time,
 * a lane's last keys were each an L2 round trip: most of a decode step's P.V below 128
 * keys). */
/* Rows of V below st.n come from the decode kernel's shared-memory copy (kv_piece). */
typedef struct vstage {
    const __half *v;  /* [n][hd] halves, swizzled (kv_piece) */
    int n, pieces, c; /* rows staged, 16-byte pieces per row, the 4-dim group */
} vstage;

/* eight rows of the cache (keys j, j + 16, ...) */
__device__ __forceinline__ void pv_load8g(uint2 (&raw)[8], const __half *__restrict__ vcol,
                                          int kvd, int j, int len, int pos) {
#pragma unroll
    for (int u = 0; u < 8; u++) {
        const int jj = j + 16 * u;
        raw[u] = jj < len && jj != pos
                     ? __ldg(reinterpret_cast<const uint2 *>(vcol + (size_t)jj * kvd))
                     : make_uint2(0u, 0u);
    }
}

__device__ __forceinline__ void pv_load8(uint2 (&raw)[8], const __half *__restrict__ vcol,
                                         int kvd, int j, int len, int pos, const vstage &st) {
    if (st.n == 0) return pv_load8g(raw, vcol, kvd, j, len, pos);
#pragma unroll
    for (int u = 0; u < 8; u++) {
        const int jj = j + 16 * u;
        raw[u] =
            jj >= len || jj == pos ? make_uint2(0u, 0u)
            : jj < st.n
                ? *reinterpret_cast<const uint2 *>(
                      st.v + 8 * (jj * st.pieces + ((st.c >> 1) ^ (jj & (st.pieces - 1)))) +
                      4 * (st.c & 1))
                : __ldg(reinterpret_cast<const uint2 *>(vcol + (size_t)jj * kvd));
    }
}

/* pre (may be NULL): the first batch, loaded by pv_load8 already */
__device__ __forceinline__ float4 pv_lane(const __half *__restrict__ vcol, int kvd,
                                          const float *P, int l, int len, int pos, float4 vme,
                                          const vstage &st, const uint2 *pre = nullptr) {
    float4 a = make_float4(0.f, 0.f, 0.f, 0.f);
    for (int j = l; j < len; j += 8 * 16) {
        uint2 raw[8];
        if (pre && j == l) {
#pragma unroll
            for (int u = 0; u < 8; u++)
                raw[u] = pre[u];
        } else {
            pv_load8(raw, vcol, kvd, j, len, pos, st);
        }
#pragma unroll
        for (int u = 0; u < 8; u++) {
            const int jj = j + 16 * u;
            if (jj >= len) break;
            const float pv = P[jj];
            float4 f;
            if (jj == pos) {
                f = vme;
            } else {
                const float2 lo = __half22float2(*reinterpret_cast<const __half2 *>(&raw[u].x));
                const float2 hi = __half22float2(*reinterpret_cast<const __half2 *>(&raw[u].y));
                f = make_float4(lo.x, lo.y, hi.x, hi.y);
            }
            a.x = __fmaf_rn(f.x, pv, a.x), a.y = __fmaf_rn(f.y, pv, a.y);
            a.z = __fmaf_rn(f.z, pv, a.z), a.w = __fmaf_rn(f.w, pv, a.w);
        }
    }
    return a;
}

/* out[t][h] = sum_j P[t][h][j] * V[j][kh]: thread (lane l, 4 dims c) accumulates keys
 * l, l + 16, ... in order; the 16 lanes of each dim are then summed pairwise. */
__global__ void __launch_bounds__(PVT)
    attn_pv_kernel(float *__restrict__ out, const float *__restrict__ S, int ldS,
                   const __half *__restrict__ vc, int n_head, int n_head_kv, int hd,
                   int pos_first) {
    extern __shared__ float4 red4[]; /* [16][hd / 4] */
    const int h = blockIdx.x, t = blockIdx.y, len = pos_first + t + 1;
    const int kh = h / (n_head / n_head_kv), hd4 = hd / 4, kvd = n_head_kv * hd;
    const float *P = S + ((size_t)t * n_head + h) * ldS;
    for (int it = threadIdx.x; it < 16 * hd4; it += PVT) {
        const int l = it / hd4, c = it % hd4;
        const __half *vcol = vc + (size_t)kh * hd + 4 * c;
        const float4 a = pv_lane(vcol, kvd, P, l, len, -1, make_float4(0.f, 0.f, 0.f, 0.f),
                                 vstage{nullptr, 0, 1, 0});
        red4[it] = a; /* it = l * hd4 + c */
    }
    __syncthreads();
    const float *red = reinterpret_cast<const float *>(red4);
    float *o = out + ((size_t)t * n_head + h) * hd;
    for (int i = threadIdx.x; i < hd; i += PVT) {
        float v[16];
#pragma unroll
        for (int l = 0; l < 16; l++)
            v[l] = red[l * hd + i];
        o[i] = xm_sum16(v);
    }
}

#include "attn_tiled.cuh"

/* set by cuda_attention_init (a process-wide attribute of the kernel, per device) */
static bool attn_tiled128_ok = false;

static long cdiv(long a, long b) {
    return (a + b - 1) / b;
}

size_t cuda_kv_bytes(int n_ctx, int kv_dim) {
    return (size_t)n_ctx * (size_t)kv_dim * sizeof(__half);
}

/* ---------------------------------------------------------------- decode */

#define ADT 256 /* threads of the decode kernel */

typedef struct rope_args {
    const float2 *tab; /* cuda_rope_table: (cos, sin) of [pos][i] */
    int n_rot, neox;
} rope_args;

/* floats of the decode kernel's reduction area: softmax group sums, then 16 lanes x hd */
static __host__ __device__ int decode_red_floats(int hd) {
    return 16 * hd > GS_MAX ? 16 * hd : GS_MAX;
}

/* The decode kernel's copy of the first kmax cache rows of its kv head (K and V, but the
 * row of the token itself), made by cp.async before the PDL wait: row j's 16-byte piece t
 * is stored at piece t ^ (j % pieces) of row j (pieces = head_dim / 8, a power of 2), so
 * that the scores (a warp reads one piece of 32 rows) and P.V (one or two rows) spread
 * over all the banks. */
__device__ __forceinline__ int kv_piece(int j, int t, int pieces) {
    return t ^ (j & (pieces - 1));
}

/* Where the decode kernel quantizes its output for the next matvec (qb 0: it does not). */
typedef struct attn_q {
    int8_t *q;
    float *d;
    int16_t *bs;
    float *s;
    int8_t *qc;
    int qb;
} attn_q;

/* The head's hd outputs (ob, shared memory) quantized as quantize_act_kernel does: per 32
 * by the block's own warps; per 256 (K-quants) over 256 / hd heads, a thread-block cluster:
 * its first block's warp 0 reads the others' outputs from their shared memory (every
 * block then waits until it has: a block's shared memory must outlive the reads). */
__device__ __forceinline__ void attn_quant_out(const float *ob, int h, int hd,
                                               const attn_q &a) {
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    if (a.qb == 32) {
        __syncthreads();
        if (warp < hd / 32) {
            const float v = ob[32 * warp + lane];
            quant_store<32>(&v, lane, (int64_t)h * (hd / 32) + warp, a.q, a.d, a.bs, a.s,
                            nullptr);
        }
        return;
    }
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900 /* clusters: sm_90 (cuda_attn_quant_ok) */
    namespace cg = cooperative_groups;
    cg::cluster_group cl = cg::this_cluster();
    cl.sync();
    if (cl.block_rank() == 0 && warp == 0) {
        float v[8];
        const int e = 8 * lane;
        const float *src = cl.map_shared_rank(ob, (unsigned)(e / hd)) + e % hd;
        const float4 v0 = *reinterpret_cast<const float4 *>(src);
        const float4 v1 = *reinterpret_cast<const float4 *>(src + 4);
        v[0] = v0.x, v[1] = v0.y, v[2] = v0.z, v[3] = v0.w;
        v[4] = v1.x, v[5] = v1.y, v[6] = v1.z, v[7] = v1.w;
        quant_store<256>(v, lane, (int64_t)h * hd / 256, a.q, a.d, a.bs, nullptr, a.qc);
    }
    cl.sync();
#endif
}

/* One token, one block per q head: (rope,) K/V row into the cache, scores of every key
 * in shared memory, softmax, P.V, with the roundings of the kernels above. The key and
 * value of the token itself come from k / v directly (the cache row is written by the
 * first block of the kv group, which the other blocks do not wait for). Position from
 * *dpos when given (graph replay), else pos_val. HDT: head_dim known at compile time
 * (64, 128; 0: run time, multiple of 4). Rows below kmax (HDT 128) are staged in shared
 * memory while the previous kernel still runs (kv_piece); later ones are read from the
 * cache, several keys' loads in flight per thread. */
template <bool ROPE, int HDT>
__global__ void __launch_bounds__(ADT)
    attn_decode_kernel(float *__restrict__ out, float *q, const float *k,
                       const float *__restrict__ v, __half *kc, __half *vc, int n_head,
                       int n_head_kv, int hd_rt, int pos_val, const int *__restrict__ dpos,
                       float scale, rope_args ra, int kmax, ktr tk, int early, attn_q aq) {
    const int hd = HDT ? HDT : hd_rt;
    extern __shared__ float4 sm4[];
    float *sm = reinterpret_cast<float *>(sm4);
    float *qs = sm, *ks = sm + hd, *vs = sm + 2 * hd;
    float *red = sm + 3 * hd; /* 3 * hd % 4 == 0: float4-aligned */
    __half *kst = reinterpret_cast<__half *>(red + decode_red_floats(hd));
    __half *vst = kst + (size_t)kmax * hd;
    float *S = reinterpret_cast<float *>(vst + (size_t)kmax * hd);
    __shared__ float redf[32];
    __shared__ double dsh;
    ktrace kt(tk);
    if (early) pdl_trigger(); /* CUDA_EARLY_ATTN */
    /* Before waiting for the kernel that writes q / k / v: the position (copied in before
     * the step), this thread's rope entry and the staged cache rows (earlier steps wrote
     * them; the row of pos itself is replaced from ks / vs below). */
    const int tid = threadIdx.x;
    const int pos = dpos ? *dpos : pos_val, len = pos + 1;
    const int h = blockIdx.x, group = n_head / n_head_kv, kh = h / group;
    const bool leader = h % group == 0;
    const int kvd = n_head_kv * hd;
    const __half *kbase = kc + (size_t)kh * hd;
    float2 rope_t = make_float2(1.f, 0.f);
    if constexpr (ROPE)
        if (tid < ra.n_rot / 2) rope_t = ra.tab[(size_t)pos * (ra.n_rot / 2) + tid];
    constexpr int NP = HDT > 0 ? HDT / 8 : 1; /* 16-byte pieces per row */
    /* head_dim 128 stages rows; 64 keeps its first rows in registers: two K rows and each
     * thread's first eight V rows of its P.V item (staging was slower there: its blocks,
     * needing more shared memory, no longer started on SMs the matvec before still used) */
    constexpr bool STAGE = HDT == 128;
    const int nst = STAGE ? min(len, kmax) : 0;
    constexpr int PU = HDT == 64 ? 2 : 1;
    uint4 kpre[PU][NP];
    uint2 vpre[8];
    uint32_t dep = __float_as_uint(rope_t.x) ^ __float_as_uint(rope_t.y);
    if constexpr (HDT == 64) {
        if (tid < len)
#pragma unroll
            for (int u = 0; u < PU; u++) {
                const int j = min(tid + u * ADT, len - 1);
                const uint4 *kr = reinterpret_cast<const uint4 *>(kbase + (size_t)j * kvd);
#pragma unroll
                for (int t = 0; t < NP; t++) {
                    kpre[u][t] = __ldg(kr + t);
                    dep ^= kpre[u][t].x;
                }
            }
        pv_load8g(vpre, vc + (size_t)kh * hd + 4 * (tid % 16), kvd, tid / 16, len, pos);
#pragma unroll
        for (int u = 0; u < 8; u++)
            dep ^= vpre[u].x;
    }
    if constexpr (STAGE) {
        for (int i = tid; i < nst * NP; i += ADT) {
            const int j = i / NP, t = i % NP;
            if (j == pos) continue;
            const int o = 8 * (j * NP + kv_piece(j, t, NP));
            cp16(kst + o, kbase + (size_t)j * kvd + 8 * t, true);
            cp16(vst + o, vc + (size_t)kh * hd + (size_t)j * kvd + 8 * t, true);
        }
        cp_commit();
    }
    pdl_wait_after(dep); /* every load above first (pdl_wait_after) */
    kt.released();
    pf_report(tk);
    if (!early) pdl_trigger();
    float *qr = q + (size_t)h * hd;
    for (int c = tid; c < hd; c += ADT) {
        qs[c] = qr[c];
        ks[c] = k[(size_t)kh * hd + c];
        vs[c] = v[(size_t)kh * hd + c];
    }
    __syncthreads();
    if constexpr (ROPE) {
        const int half = ra.n_rot / 2;
        for (int i = tid; i < half; i += ADT) {
            const float2 t = i == tid ? rope_t : ra.tab[(size_t)pos * half + i];
            const int a = ra.neox ? i : 2 * i, b = ra.neox ? i + half : 2 * i + 1;
            xm_rope_rot(&qs[a], &qs[b], t.x, t.y);
            xm_rope_rot(&ks[a], &ks[b], t.x, t.y);
        }
        __syncthreads();
        for (int c = tid; c < hd; c += ADT)
            qr[c] = qs[c]; /* q is rotated in place, as the rope op does */
    }
    for (int c = tid; c < hd; c += ADT) {
        const __half kh16 = __float2half_rn(ks[c]), vh16 = __float2half_rn(vs[c]);
        if (leader) {
            kc[(size_t)pos * kvd + (size_t)kh * hd + c] = kh16;
            vc[(size_t)pos * kvd + (size_t)kh * hd + c] = vh16;
        }
        qs[c] = round_half(qs[c]);
        ks[c] = __half2float(kh16);
        vs[c] = __half2float(vh16);
    }
    if constexpr (STAGE) cp_wait<0>();
    __syncthreads();

    /* scores (thread tid owns keys tid, tid + ADT, ..., as softmax_row expects); the
     * token's own key from ks (the cache row may not be written yet) */
    if constexpr (HDT > 0) {
        for (int j0 = tid; j0 < len; j0 += 2 * ADT) {
            uint4 raw[2][NP];
#pragma unroll
            for (int u = 0; u < 2; u++) {
                const int j = min(j0 + u * ADT, len - 1);
                if (STAGE && j < nst) { /* separate branches: shared and global loads */
                    const uint4 *kr = reinterpret_cast<const uint4 *>(kst) + (size_t)j * NP;
#pragma unroll
                    for (int t = 0; t < NP; t++)
                        raw[u][t] = kr[kv_piece(j, t, NP)];
                } else {
                    const uint4 *kr = reinterpret_cast<const uint4 *>(kbase + (size_t)j * kvd);
#pragma unroll
                    for (int t = 0; t < NP; t++)
                        raw[u][t] = HDT == 64 && j0 == tid && u < PU ? kpre[u < PU ? u : 0][t]
                                                                     : __ldg(kr + t);
                }
            }
#pragma unroll
            for (int u = 0; u < 2; u++) {
                const int j = j0 + u * ADT;
                if (j >= len) break;
                if (j == pos) {
#pragma unroll
                    for (int t = 0; t < NP; t++) {
                        __half2 p4[4];
#pragma unroll
                        for (int e = 0; e < 4; e++)
                            p4[e] = __floats2half2_rn(ks[8 * t + 2 * e], ks[8 * t + 2 * e + 1]);
                        memcpy(&raw[u][t], p4, sizeof(uint4));
                    }
                }
                S[j] = __fmul_rn(qk_dot8<NP>(qs, raw[u]), scale);
            }
        }
    } else {
        for (int j = tid; j < len; j += ADT) {
            const float d =
                j == pos ? qk_dot_f(qs, ks, hd) : qk_dot_h(qs, kbase + (size_t)j * kvd, hd);
            S[j] = __fmul_rn(d, scale);
        }
    }
    softmax_row(S, len, red, &dsh, redf);
    __syncthreads();

    /* P.V: thread (lane l, 4 dims c) takes keys l, l + 16, ... in order, eight rows'
     * loads in flight; then the 16 lanes of each dim are summed pairwise */
    const int hd4 = hd / 4;
    float4 *red4 = reinterpret_cast<float4 *>(red);
    for (int it = tid; it < 16 * hd4; it += ADT) {
        const int l = it / hd4, c = it % hd4;
        const __half *vcol = vc + (size_t)kh * hd + 4 * c;
        const float4 vme = make_float4(vs[4 * c], vs[4 * c + 1], vs[4 * c + 2], vs[4 * c + 3]);
        red4[it] = pv_lane(vcol, kvd, S, l, len, pos, vme, vstage{vst, nst, NP, c},
                           HDT == 64 && it == tid ? vpre : nullptr);
    }
    __syncthreads();
    for (int i = tid; i < hd; i += ADT) {
        float s[16];
#pragma unroll
        for (int l = 0; l < 16; l++)
            s[l] = red[l * hd + i];
        const float o = xm_sum16(s);
        if (out) out[(size_t)h * hd + i] = o;
        if (HDT > 0 && aq.qb) qs[i] = o; /* q is no longer read: the output to quantize */
    }
    if constexpr (HDT > 0)
        if (aq.qb) attn_quant_out(qs, h, hd, aq);
}

/* attn_decode_kernel for head_dim hd (64, 128 compiled for; others at run time) */
template <bool ROPE, typename... A>
static cudaError_t launch_decode_hd(cuda_backend *be, int hd, dim3 grid, dim3 blk, size_t smem,
                                    unsigned cl, A... args) {
    return hd == 64 ? launch_pdl_cluster(be, attn_decode_kernel<ROPE, 64>, grid, blk, smem, cl,
                                         args...)
           : hd == 128 ? launch_pdl_cluster(be, attn_decode_kernel<ROPE, 128>, grid, blk, smem,
                                            cl, args...)
                       : launch_pdl_cluster(be, attn_decode_kernel<ROPE, 0>, grid, blk, smem,
                                            cl, args...);
}

/* Can the decode kernel quantize its output per qb (head_dim 64 / 128: per 32 within a
 * block, per 256 over a cluster of 256 / head_dim blocks)? */
bool cuda_attn_quant_ok(const cuda_backend *be, const chord_attn_shape *s, int qb) {
    const int hd = s->head_dim;
    if (hd != 64 && hd != 128) return false;
    if (qb == 32) return be->attn_quant >= 1;
    return qb == 256 && be->attn_quant >= 2 && be->cc_major >= 9 && s->n_head % (256 / hd) == 0;
}

/* shared memory of the decode kernel with kmax rows staged */
static size_t decode_smem(const chord_attn_shape *s, int kmax) {
    return ((size_t)3 * s->head_dim + (size_t)decode_red_floats(s->head_dim) +
            (size_t)s->n_ctx) *
               sizeof(float) +
           (size_t)2 * kmax * s->head_dim * sizeof(__half);
}

/* Rows the decode kernel stages: up to be->attn_kstage (head_dim 128, not more than
 * the context), fewer where shared memory would not hold them. */
static int decode_kmax(const cuda_backend *be, const chord_attn_shape *s) {
    if (s->head_dim != 128) return 0;
    int kmax = be->attn_kstage < s->n_ctx ? be->attn_kstage : s->n_ctx;
    const size_t base = decode_smem(s, 0), row = (size_t)4 * s->head_dim;
    if (base >= be->attn_smem_max) return 0;
    if (base + kmax * row > be->attn_smem_max) kmax = (int)((be->attn_smem_max - base) / row);
    return kmax < 0 ? 0 : kmax;
}

template <bool ROPE, int HDT> static bool decode_attr(int bytes) {
    return cudaFuncSetAttribute(attn_decode_kernel<ROPE, HDT>,
                                cudaFuncAttributeMaxDynamicSharedMemorySize,
                                bytes) == cudaSuccess;
}

void cuda_attention_init(cuda_backend *be) {
    size_t mx = be->smem_per_block_optin;
    size_t stat = 32 * sizeof(float) + sizeof(double) + 64;
    mx = mx > stat ? mx - stat : 0;
    if (mx > 48 * 1024) {
        const int b = (int)mx;
        if (!(decode_attr<true, 64>(b) && decode_attr<true, 128>(b) &&
              decode_attr<true, 0>(b) && decode_attr<false, 64>(b) &&
              decode_attr<false, 128>(b) && decode_attr<false, 0>(b))) {
            (void)cudaGetLastError();
            mx = 48 * 1024;
        }
    } else {
        mx = 48 * 1024 < mx ? 48 * 1024 : mx;
    }
    be->attn_smem_max = mx;
    /* the hd 128 scores tile needs more than the default 48 KB; without it that head size
     * keeps the reference kernels */
    attn_tiled128_ok = be->smem_per_block_optin >= (size_t)ts_smem(128) &&
                       cudaFuncSetAttribute(attn_scores_tiled<128>,
                                            cudaFuncAttributeMaxDynamicSharedMemorySize,
                                            ts_smem(128)) == cudaSuccess;
    if (!attn_tiled128_ok) (void)cudaGetLastError();
    cuda_attn_flash_init(be);
}

bool cuda_attn_decode_ok(cuda_backend *be, const chord_attn_shape *s) {
    const int hd = s->head_dim, nh = s->n_head, nkv = s->n_head_kv;
    return nkv > 0 && nh % nkv == 0 && hd > 0 && hd % 4 == 0 && hd <= HD_MAX &&
           decode_smem(s, 0) <= be->attn_smem_max;
}

void cuda_attention_decode(cuda_backend *be, float *out, float *q, const float *k,
                           const float *v, chord_kv *kv, int pos0, const chord_attn_shape *s,
                           const chord_rope_shape *rope, const int *dpos, const qact *xq) {
    if (!cuda_attn_decode_ok(be, s) || (xq && !cuda_attn_quant_ok(be, s, xq->qb))) {
        cuda_fail(be, "attention: no one-token kernel for this shape");
        return;
    }
    if (!dpos && (pos0 < 0 || pos0 >= s->n_ctx)) {
        cuda_fail(be, "attention: position %d outside the cache (%d)", pos0, s->n_ctx);
        return;
    }
    rope_args ra = {NULL, 0, 0};
    if (rope) {
        if (rope->n_rot > s->head_dim || rope->n_rot / 2 <= 0) {
            cuda_fail(be, "attention: rope n_rot %d, head_dim %d", rope->n_rot, s->head_dim);
            return;
        }
        /* under a graph (dpos) the table was made ready by step_end for this position */
        ra.tab = cuda_rope_table(be, rope, pos0 + 1, dpos == NULL);
        if (!ra.tab) return;
        ra.n_rot = rope->n_rot;
        ra.neox = rope->neox ? 1 : 0;
    }
    cudaError_t e;
    const int hd = s->head_dim;
    const dim3 grid((unsigned)s->n_head), blk(ADT);
    const int kmax = decode_kmax(be, s);
    const size_t smem = decode_smem(s, kmax);
    __half *kc = (__half *)kv->k, *vc = (__half *)kv->v;
    const ktr tk = take_ktr(be, 'a');
    attn_q aq = {nullptr, nullptr, nullptr, nullptr, nullptr, 0};
    if (xq)
        aq = attn_q{(int8_t *)xq->q, (float *)xq->d,   (int16_t *)xq->bs,
                    (float *)xq->s,  (int8_t *)xq->qc, xq->qb};
    const unsigned cl = xq && xq->qb == 256 ? (unsigned)(256 / hd) : 1;
#define DECODE_ARGS                                                                            \
    out, q, k, v, kc, vc, s->n_head, s->n_head_kv, hd, pos0, dpos, s->scale, ra, kmax, tk,     \
        (int)(be->early_trigger & CUDA_EARLY_ATTN), aq
    e = rope ? launch_decode_hd<true>(be, hd, grid, blk, smem, cl, DECODE_ARGS)
             : launch_decode_hd<false>(be, hd, grid, blk, smem, cl, DECODE_ARGS);
#undef DECODE_ARGS
    CUDA_CHECK(be, e);
    CUDA_LAUNCHED(be, "attn_decode_kernel");
}

void cuda_attention(cuda_backend *be, float *out, const float *q, const float *k,
                    const float *v, chord_kv *kv, int n, int pos0, const chord_attn_shape *s,
                    const int *dpos) {
    if (n <= 0) return;
    const char *mode = getenv("CHORD_CUDA_ATTN");
    const bool use_old = mode && !strcmp(mode, "old");
    const bool force_split = mode && !strcmp(mode, "split");
    const bool exact = use_old || (mode && !strcmp(mode, "exact"));
    const bool force_flash = mode && !strcmp(mode, "flash");
    if (n == 1 && !force_split && cuda_attn_decode_ok(be, s)) {
        cuda_attention_decode(be, out, (float *)q, k, v, kv, pos0, s, NULL, dpos, NULL);
        return;
    }
    if (dpos) {
        cuda_fail(be, "attention: this shape cannot read its position from the device");
        return;
    }
    const int hd = s->head_dim, nh = s->n_head, nkv = s->n_head_kv;
    if (nkv <= 0 || nh % nkv != 0 || hd <= 0 || hd % 4 != 0 || hd > HD_MAX) {
        cuda_fail(be, "attention: unsupported shape (n_head %d, n_head_kv %d, head_dim %d)", nh,
                  nkv, hd);
        return;
    }
    if (pos0 < 0 || pos0 + n > s->n_ctx) {
        cuda_fail(be, "attention: positions %d..%d outside the cache (%d)", pos0, pos0 + n - 1,
                  s->n_ctx);
        return;
    }
    const size_t kvd = (size_t)nkv * hd;
    __half *kc = (__half *)kv->k, *vc = (__half *)kv->v;
    {
        size_t cnt = (size_t)n * kvd;
        long blocks = cdiv((long)cnt, 256);
        if (blocks > 8L * be->n_sm) blocks = 8L * be->n_sm;
        kv_store_kernel<<<(unsigned)blocks, 256, 0, be->stream>>>(
            kc + (size_t)pos0 * kvd, vc + (size_t)pos0 * kvd, k, v, cnt);
        if (!CUDA_LAUNCHED(be, "kv_store_kernel")) return;
    }
    /* batches of at least one full flash tile take the tensor cores; shorter ones (and
     * CHORD_CUDA_ATTN=exact) the exact kernels */
    if (!exact && (n >= FLASH_MIN_N || force_flash) && cuda_attn_flash_ok(be, s)) {
        cuda_attn_flash(be, out, q, kc, vc, n, pos0, s);
        return;
    }

    const int group = nh / nkv;
    int gn_max = QMAX / hd; /* heads whose queries fit one scores block */
    if (gn_max > GMAX) gn_max = GMAX;
    if (gn_max > group) gn_max = group;
    if (gn_max < 1) gn_max = 1;
    const int gsplit = (int)cdiv(group, gn_max);
    const size_t qd = (size_t)nh * hd;

    /* tokens per chunk: the scores [tc][n_head][pos0 + tc] stay within S_BUDGET */
    int tc = n;
    while (tc > 1 && (size_t)tc * nh * (size_t)(pos0 + tc) * sizeof(float) > S_BUDGET)
        tc = (tc + 1) / 2;

    /* heads per P.V thread: the most (up to 8) that divide the group */
    const int rh = group % 8 == 0 ? 8 : group % 4 == 0 ? 4 : group % 2 == 0 ? 2 : 1;
    const bool tiled = !use_old && (hd == 64 || (hd == 128 && attn_tiled128_ok)) &&
                       pv_smem(group, rh, hd) <= 48 * 1024;

    for (int t0 = 0; t0 < n; t0 += tc) {
        const int m = n - t0 < tc ? n - t0 : tc;
        const int pos_first = pos0 + t0, maxlen = pos_first + m, ldS = (maxlen + 3) & ~3;
        float *S = (float *)cuda_scratch_get(be, CUDA_SCRATCH_ATTN,
                                             (size_t)m * nh * ldS * sizeof(float));
        if (!S) return;
        const float *qc = q + (size_t)t0 * qd;
        float *oc = out + (size_t)t0 * qd;

        if (tiled) {
            const dim3 gs((unsigned)cdiv(maxlen, TS_KEYS),
                          (unsigned)cdiv((long)m * group, TS_ROWS), (unsigned)nkv);
            if (hd == 64)
                attn_scores_tiled<64><<<gs, TS_THREADS, ts_smem(64), be->stream>>>(
                    S, ldS, qc, kc, nh, nkv, m, pos_first, s->scale);
            else
                attn_scores_tiled<128><<<gs, TS_THREADS, ts_smem(128), be->stream>>>(
                    S, ldS, qc, kc, nh, nkv, m, pos_first, s->scale);
            if (!CUDA_LAUNCHED(be, "attn_scores_tiled")) return;
            const dim3 gp((unsigned)cdiv(m, pv_tt(group, rh, hd)), (unsigned)nkv);
            const size_t pvs = pv_smem(group, rh, hd);
#define PV_LAUNCH(HD, RH)                                                                      \
    attn_pv_tiled<HD, RH>                                                                      \
        <<<gp, PV_THREADS, pvs, be->stream>>>(oc, S, ldS, vc, nh, nkv, m, pos_first)
            if (hd == 64)
                rh == 8   ? PV_LAUNCH(64, 8)
                : rh == 4 ? PV_LAUNCH(64, 4)
                : rh == 2 ? PV_LAUNCH(64, 2)
                          : PV_LAUNCH(64, 1);
            else
                rh == 8   ? PV_LAUNCH(128, 8)
                : rh == 4 ? PV_LAUNCH(128, 4)
                : rh == 2 ? PV_LAUNCH(128, 2)
                          : PV_LAUNCH(128, 1);
#undef PV_LAUNCH
            if (!CUDA_LAUNCHED(be, "attn_pv_tiled")) return;
            continue;
        }

        dim3 g1((unsigned)(nkv * gsplit), (unsigned)m, (unsigned)cdiv(maxlen, AT));
        attn_scores_kernel<<<g1, AT, (size_t)gn_max * hd * sizeof(float), be->stream>>>(
            S, ldS, qc, kc, nh, nkv, hd, pos_first, gsplit, gn_max, s->scale);
        if (!CUDA_LAUNCHED(be, "attn_scores_kernel")) return;
        int sm_threads = maxlen >= 1024 ? 256 : 128;
        attn_softmax_kernel<<<dim3((unsigned)nh, (unsigned)m), sm_threads, 0, be->stream>>>(
            S, ldS, nh, pos_first);
        if (!CUDA_LAUNCHED(be, "attn_softmax_kernel")) return;
        attn_pv_kernel<<<dim3((unsigned)nh, (unsigned)m), PVT, (size_t)16 * hd * sizeof(float),
                         be->stream>>>(oc, S, ldS, vc, nh, nkv, hd, pos_first);
        if (!CUDA_LAUNCHED(be, "attn_pv_kernel")) return;
    }
}
