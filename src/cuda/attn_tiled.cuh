/* Tiled prefill attention (included by attention.cu, after its helpers): the roundings
 * and orders of attn_scores_kernel / attn_softmax_kernel / attn_pv_kernel, so the bits
 * equal theirs (and the CPU backend's), with K and V staged in shared memory once per
 * tile of rows instead of re-read from L2 by every (head, token).
 *
 *   1. attn_scores_tiled: one block per (kv head, 64 rows, 64 keys), a row being one
 *      (token, q head of the group); each thread 4 rows x 4 keys. Q and K are stored with
 *      the head dimension permuted to [lane e][chunk c] (element 16c + e), so the chain of
 *      one F16-dot lane is one contiguous float4 run. The 16 lanes are computed in the
 *      order the pairwise sum consumes them, which keeps ~5 lanes live instead of 16.
 *   2. attn_pv_tiled: one block per (kv head, tile of tokens), all q heads of the group.
 *      First the softmax of the block's rows (one warp per row, in place in S), then
 *      P.V: thread (key lane l, token, RH heads, 8 dims) accumulates keys l, l + 16, ...
 *      in order from 64-key chunks of V and P staged in shared memory; the 16 lanes of an
 *      output sit in 16 consecutive threads, whose shuffles down by 8, 4, 2, 1 add the
 *      pairs xm_sum16 adds. */

#define TS_ROWS 64 /* rows per scores block */
#define TS_KEYS 64 /* keys per scores block */
#define TS_THREADS 256
#define PV_THREADS 256
#define PV_CK 64 /* keys per staged chunk (a multiple of 16: lanes continue across chunks) */
#define PV_D 8   /* output dims per thread */

/* the shared memory of attn_scores_tiled: Q rows and K rows, HD + 4 floats apart (the +4
 * puts the 8 keys a quarter warp reads into distinct bank groups) */
static __host__ __device__ constexpr int ts_smem(int hd) {
    return (TS_ROWS + TS_KEYS) * (hd + 4) * (int)sizeof(float);
}

/* v[p] = lane e of the dot of pair p (row r, key k: p = 4r + k); chain over c in order */
template <int HD>
__device__ __forceinline__ void ts_lane(float (&v)[16], const float *qs, const float *ks, int e,
                                        int r0, int tx) {
    constexpr int NC = HD / 16, ST = HD + 4;
#pragma unroll
    for (int p = 0; p < 16; p++)
        v[p] = 0.f;
        /* one float4 run of the chain at a time, not unrolled: fewer loads live (hd 128
         * spilled otherwise) */
#pragma unroll 1
    for (int u = 0; u < NC / 4; u++) {
        float4 qa[4], ka[4];
#pragma unroll
        for (int r = 0; r < 4; r++)
            qa[r] = *reinterpret_cast<const float4 *>(qs + (r0 + r) * ST + e * NC + 4 * u);
#pragma unroll
        for (int k = 0; k < 4; k++)
            ka[k] = *reinterpret_cast<const float4 *>(ks + (tx + 16 * k) * ST + e * NC + 4 * u);
#pragma unroll
        for (int r = 0; r < 4; r++)
#pragma unroll
            for (int k = 0; k < 4; k++) {
                float a = v[4 * r + k];
                a = __fmaf_rn(ka[k].x, qa[r].x, a);
                a = __fmaf_rn(ka[k].y, qa[r].y, a);
                a = __fmaf_rn(ka[k].z, qa[r].z, a);
                a = __fmaf_rn(ka[k].w, qa[r].w, a);
                v[4 * r + k] = a;
            }
    }
}

/* xm_sum16's tree, level by level: lane i + lane i + 8, then those of i and i + 4 */
template <int HD>
__device__ __forceinline__ void ts_pair8(float (&o)[16], const float *qs, const float *ks,
                                         int i, int r0, int tx) {
    float x[16], y[16];
    ts_lane<HD>(x, qs, ks, i, r0, tx);
    ts_lane<HD>(y, qs, ks, i + 8, r0, tx);
#pragma unroll
    for (int p = 0; p < 16; p++)
        o[p] = __fadd_rn(x[p], y[p]);
}

template <int HD>
__device__ __forceinline__ void ts_pair4(float (&o)[16], const float *qs, const float *ks,
                                         int i, int r0, int tx) {
    float x[16], y[16];
    ts_pair8<HD>(x, qs, ks, i, r0, tx);
    ts_pair8<HD>(y, qs, ks, i + 4, r0, tx);
#pragma unroll
    for (int p = 0; p < 16; p++)
        o[p] = __fadd_rn(x[p], y[p]);
}

/* S[t][h][j] as attn_scores_kernel: grid (key tiles, row tiles, kv heads) */
template <int HD>
__global__ void __launch_bounds__(TS_THREADS)
    attn_scores_tiled(float *__restrict__ S, int ldS, const float *__restrict__ q,
                      const __half *__restrict__ kc, int n_head, int n_head_kv, int m,
                      int pos_first, float scale) {
    constexpr int NC = HD / 16, ST = HD + 4;
    extern __shared__ float4 ts_sm4[];
    float *qs = reinterpret_cast<float *>(ts_sm4), *ks = qs + TS_ROWS * ST;
    const int group = n_head / n_head_kv, kh = blockIdx.z, kvd = n_head_kv * HD;
    const int nrows = m * group, ri0 = blockIdx.y * TS_ROWS, jb = blockIdx.x * TS_KEYS;
    const int rlast = min(nrows, ri0 + TS_ROWS) - 1;
    const int maxlen = pos_first + rlast / group + 1; /* keys the tile's last row sees */
    if (jb >= maxlen) return;
    const int tid = threadIdx.x;
    /* rows: contiguous runs of HD floats in q; element 16c + e goes to e * NC + c */
    for (int i = tid; i < TS_ROWS * HD; i += TS_THREADS) {
        const int rl = i / HD, d = i % HD, ri = ri0 + rl;
        float x = 0.f;
        if (ri < nrows) {
            const int t = ri / group, h = kh * group + ri % group;
            x = round_half(q[((size_t)t * n_head + h) * HD + d]);
        }
        qs[rl * ST + (d % 16) * NC + d / 16] = x;
    }
    for (int i = tid; i < TS_KEYS * (HD / 8); i += TS_THREADS) {
        const int kl = i / (HD / 8), d0 = (i % (HD / 8)) * 8, j = jb + kl;
        uint4 raw = make_uint4(0u, 0u, 0u, 0u);
        if (j < maxlen)
            raw = __ldg(
                reinterpret_cast<const uint4 *>(kc + (size_t)j * kvd + (size_t)kh * HD + d0));
        const __half2 *h2 = reinterpret_cast<const __half2 *>(&raw);
#pragma unroll
        for (int e = 0; e < 4; e++) {
            const float2 f = __half22float2(h2[e]);
            const int d = d0 + 2 * e;
            ks[kl * ST + (d % 16) * NC + d / 16] = f.x;
            ks[kl * ST + ((d + 1) % 16) * NC + (d + 1) / 16] = f.y;
        }
    }
    __syncthreads();
    const int tx = tid & 15, r0 = (tid >> 4) * 4;
    float c0[16], c1[16];
    {
        float b0[16], b2[16];
        ts_pair4<HD>(b0, qs, ks, 0, r0, tx);
        ts_pair4<HD>(b2, qs, ks, 2, r0, tx);
#pragma unroll
        for (int p = 0; p < 16; p++)
            c0[p] = __fadd_rn(b0[p], b2[p]);
    }
    {
        float b1[16], b3[16];
        ts_pair4<HD>(b1, qs, ks, 1, r0, tx);
        ts_pair4<HD>(b3, qs, ks, 3, r0, tx);
#pragma unroll
        for (int p = 0; p < 16; p++)
            c1[p] = __fadd_rn(b1[p], b3[p]);
    }
#pragma unroll
    for (int r = 0; r < 4; r++) {
        const int ri = ri0 + r0 + r;
        if (ri >= nrows) break;
        const int t = ri / group, h = kh * group + ri % group, len = pos_first + t + 1;
        float *srow = S + ((size_t)t * n_head + h) * ldS;
#pragma unroll
        for (int k = 0; k < 4; k++) {
            const int j = jb + tx + 16 * k;
            if (j < len) srow[j] = __fmul_rn(__fadd_rn(c0[4 * r + k], c1[4 * r + k]), scale);
        }
    }
}

/* softmax_row's arithmetic by one warp: lane i of the warp holds key j0 + i, so lanes
 * 0-15 and 16-31 each hold one group of 16; lane 0 adds the group sums in double in key
 * order. Each lane reads back only what it wrote: no barrier inside. */
__device__ __forceinline__ void softmax_row_warp(float *row, int len) {
    const int lane = threadIdx.x & 31;
    float mx = -INFINITY;
    for (int j = lane; j < len; j += 32)
        mx = fmaxf(mx, row[j]);
#pragma unroll
    for (int o = 16; o > 0; o >>= 1)
        mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, o));
    const int len16 = (len + 15) & ~15;
    double sum = 0.0;
    for (int j0 = 0; j0 < len16; j0 += 32) {
        const int j = j0 + lane;
        float e = 0.f; /* the CPU pads with e^-inf */
        if (j < len) {
            e = xm_exp(__fsub_rn(row[j], mx));
            row[j] = e;
        }
#pragma unroll
        for (int o = 8; o > 0; o >>= 1)
            e = __fadd_rn(e, __shfl_down_sync(0xffffffffu, e, o, 16));
        const float e_hi = __shfl_sync(0xffffffffu, e, 16);
        if (lane == 0) {
            sum = __dadd_rn(sum, (double)e);
            if (j0 + 16 < len16) sum = __dadd_rn(sum, (double)e_hi);
        }
    }
    sum = __shfl_sync(0xffffffffu, sum, 0);
    const float inv = __double2float_rn(__ddiv_rn(1.0, sum));
    for (int j = lane; j < len; j += 32)
        row[j] = round_half(__fmul_rn(row[j], inv));
}

/* floats of a staged P chunk per key: the group's heads, padded to 4 mod 8 so that the 8
 * keys of a quarter warp's float4 reads fall in distinct bank groups */
static __host__ __device__ inline int pv_gp(int group) {
    int gp = (group + 3) & ~3;
    return gp % 8 == 0 ? gp + 4 : gp;
}

static __host__ __device__ inline int pv_per_token(int group, int rh, int hd) {
    return (group / rh) * (hd / PV_D) * 16;
}

static __host__ __device__ inline int pv_tt(int group, int rh, int hd) {
    const int pt = pv_per_token(group, rh, hd);
    return pt >= PV_THREADS ? 1 : PV_THREADS / pt;
}

static size_t pv_smem(int group, int rh, int hd) {
    return ((size_t)PV_CK * (hd + 4) + (size_t)pv_tt(group, rh, hd) * PV_CK * pv_gp(group)) *
           sizeof(float);
}

/* softmax rows of tokens t0.. in place, then out = P.V; grid (token tiles, kv heads) */
template <int HD, int RH>
__global__ void __launch_bounds__(PV_THREADS)
    attn_pv_tiled(float *__restrict__ out, float *S, int ldS, const __half *__restrict__ vc,
                  int n_head, int n_head_kv, int m, int pos_first) {
    constexpr int VST = HD + 4, NDG = HD / PV_D;
    extern __shared__ float4 pv_sm4[];
    float *vs = reinterpret_cast<float *>(pv_sm4);
    float *ps = vs + PV_CK * VST;
    const int group = n_head / n_head_kv, kh = blockIdx.y, kvd = n_head_kv * HD;
    const int tt_n = pv_tt(group, RH, HD), gp = pv_gp(group), nhg = group / RH;
    const int t0 = blockIdx.x * tt_n, tn = min(tt_n, m - t0);
    const int tid = threadIdx.x, warp = tid >> 5;
    const int maxlen = pos_first + t0 + tn;

    for (int r = warp; r < tn * group; r += PV_THREADS / 32) {
        const int t = t0 + r / group, h = kh * group + r % group;
        softmax_row_warp(S + ((size_t)t * n_head + h) * ldS, pos_first + t + 1);
    }
    /* __syncthreads also orders the block's global writes (P) before its reads */

    const int items = tn * nhg * NDG * 16;
    for (int base = 0; base < items; base += PV_THREADS) {
        const int item = base + tid, l = item & 15, s = item >> 4;
        const int dg = s % NDG, hg = (s / NDG) % nhg, tt = s / (NDG * nhg);
        const bool active = item < items;
        const int len = active ? pos_first + t0 + tt + 1 : 0;
        float acc[RH][PV_D];
#pragma unroll
        for (int r = 0; r < RH; r++)
#pragma unroll
            for (int d = 0; d < PV_D; d++)
                acc[r][d] = 0.f;
        for (int jc = 0; jc < maxlen; jc += PV_CK) {
            __syncthreads(); /* the previous chunk is consumed (first: the softmax is done) */
            for (int i = tid; i < PV_CK * (HD / 8); i += PV_THREADS) {
                const int kl = i / (HD / 8), d0 = (i % (HD / 8)) * 8, j = jc + kl;
                if (j >= maxlen) continue;
                const uint4 raw = __ldg(reinterpret_cast<const uint4 *>(vc + (size_t)j * kvd +
                                                                        (size_t)kh * HD + d0));
                const __half2 *h2 = reinterpret_cast<const __half2 *>(&raw);
                const float2 a = __half22float2(h2[0]), b = __half22float2(h2[1]);
                const float2 c = __half22float2(h2[2]), d = __half22float2(h2[3]);
                float4 *dst = reinterpret_cast<float4 *>(vs + kl * VST + d0);
                dst[0] = make_float4(a.x, a.y, b.x, b.y);
                dst[1] = make_float4(c.x, c.y, d.x, d.y);
            }
            for (int i = tid; i < tn * group * PV_CK; i += PV_THREADS) {
                const int kl = i % PV_CK, r = i / PV_CK, tl = r / group, g = r % group;
                const int j = jc + kl;
                if (j <= pos_first + t0 + tl)
                    ps[(tl * PV_CK + kl) * gp + g] =
                        S[((size_t)(t0 + tl) * n_head + kh * group + g) * ldS + j];
            }
            __syncthreads();
            if (active) {
                const int kend = min(PV_CK, len - jc);
                for (int kl = l; kl < kend; kl += 16) {
                    const float *pr = ps + (tt * PV_CK + kl) * gp + hg * RH;
                    float p[RH];
                    if constexpr (RH % 4 == 0) {
#pragma unroll
                        for (int r = 0; r < RH; r += 4) {
                            const float4 f = *reinterpret_cast<const float4 *>(pr + r);
                            p[r] = f.x, p[r + 1] = f.y, p[r + 2] = f.z, p[r + 3] = f.w;
                        }
                    } else {
#pragma unroll
                        for (int r = 0; r < RH; r++)
                            p[r] = pr[r];
                    }
                    const float4 *vr =
                        reinterpret_cast<const float4 *>(vs + kl * VST + dg * PV_D);
                    const float4 v0 = vr[0], v1 = vr[1];
                    const float v[PV_D] = {v0.x, v0.y, v0.z, v0.w, v1.x, v1.y, v1.z, v1.w};
#pragma unroll
                    for (int r = 0; r < RH; r++)
#pragma unroll
                        for (int d = 0; d < PV_D; d++)
                            acc[r][d] = __fmaf_rn(v[d], p[r], acc[r][d]);
                }
            }
        }
#pragma unroll
        for (int r = 0; r < RH; r++)
#pragma unroll
            for (int d = 0; d < PV_D; d++) {
                float x = acc[r][d];
#pragma unroll
                for (int o = 8; o > 0; o >>= 1)
                    x = __fadd_rn(x, __shfl_down_sync(0xffffffffu, x, o, 16));
                acc[r][d] = x;
            }
        if (active && l == 0) {
#pragma unroll
            for (int r = 0; r < RH; r++) {
                float4 *o = reinterpret_cast<float4 *>(
                    out + ((size_t)(t0 + tt) * n_head + kh * group + hg * RH + r) * HD +
                    dg * PV_D);
                o[0] = make_float4(acc[r][0], acc[r][1], acc[r][2], acc[r][3]);
                o[1] = make_float4(acc[r][4], acc[r][5], acc[r][6], acc[r][7]);
            }
        }
    }
}
