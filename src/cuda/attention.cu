/* Causal attention over an F16 KV cache in device memory.
 *
 * Cache layout (kv_bytes): k and v are each half [n_ctx][n_head_kv * head_dim].
 * Rounding follows the CPU backend (and llama.cpp): K, V and the query are rounded to
 * half, scores and the softmax are float, the normalized attention weights are rounded
 * to half before the weighted sum of V, and every dot product accumulates in float.
 *
 * Three kernels per chunk of tokens (chunks bound the score buffer):
 *   1. scores: one block per (kv head [slice of its q heads], token, 128 keys), one
 *      thread per key; the q heads sharing a kv head (GQA) are handled together, so a K
 *      row is read once for the whole group;
 *   2. softmax: one block per (head, token) row: max, sum, normalized half-rounded
 *      weights written in place;
 *   3. weighted sum of V: one block per (kv head [slice], token, key split), one thread
 *      per (head, 4 dims). When there are too few (kv head, token) pairs to fill the GPU
 *      (decode), the keys are split over several blocks ("flash decoding") and a last
 *      kernel adds the partial sums. */
#include <math.h>

#include "cuda_common.cuh"

#define AT 128                      /* threads per block */
#define PMAX 4                      /* (head, 4 dims) pairs per thread in the V kernel */
#define GMAX 32                     /* q heads per block */
#define S_BUDGET ((size_t)64 << 20) /* bytes of scores per chunk of tokens */

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

/* S[t][h][j] = scale * (half(q[t][h]) . K[j][kh]) for keys j <= pos_first + t. */
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
    const bool vec = (hd & 7) == 0;
    for (int gb = 0; gb < gn; gb += 8) {
        float s[8] = {0.f, 0.f, 0.f, 0.f, 0.f, 0.f, 0.f, 0.f};
        if (vec) {
            for (int c = 0; c < hd; c += 8) {
                uint4 raw = __ldg(reinterpret_cast<const uint4 *>(kr + c));
                const __half2 *h2 = reinterpret_cast<const __half2 *>(&raw);
                float kf[8];
#pragma unroll
                for (int e = 0; e < 4; e++) {
                    float2 f = __half22float2(h2[e]);
                    kf[2 * e] = f.x, kf[2 * e + 1] = f.y;
                }
#pragma unroll
                for (int gg = 0; gg < 8; gg++) {
                    if (gb + gg < gn) {
                        const float4 *qv =
                            reinterpret_cast<const float4 *>(qs + (gb + gg) * hd + c);
                        float4 a = qv[0], b = qv[1];
                        s[gg] += a.x * kf[0] + a.y * kf[1] + a.z * kf[2] + a.w * kf[3] +
                                 b.x * kf[4] + b.y * kf[5] + b.z * kf[6] + b.w * kf[7];
                    }
                }
            }
        } else {
            for (int c = 0; c < hd; c++) {
                float kf = __half2float(kr[c]);
#pragma unroll
                for (int gg = 0; gg < 8; gg++)
                    if (gb + gg < gn) s[gg] += qs[(gb + gg) * hd + c] * kf;
            }
        }
#pragma unroll
        for (int gg = 0; gg < 8; gg++)
            if (gb + gg < gn) S[((size_t)t * n_head + h0 + gb + gg) * ldS + j] = s[gg] * scale;
    }
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

/* expf as the CPU's libm computes it (fast-math would use an approximation) */
__device__ __forceinline__ float exp_exact(float x) {
    return (float)exp((double)x);
}

/* One row S[t][h][0..len): p = half(exp(s - max) / sum), as the CPU backend: float
 * exponentials summed in double, 1 / sum rounded to float. */
__global__ void attn_softmax_kernel(float *__restrict__ S, int ldS, int n_head, int pos_first) {
    __shared__ float redf[32];
    __shared__ double redd[32];
    const int h = blockIdx.x, t = blockIdx.y, len = pos_first + t + 1;
    float *row = S + ((size_t)t * n_head + h) * ldS;
    float mx = -INFINITY;
    for (int j = threadIdx.x; j < len; j += blockDim.x)
        mx = fmaxf(mx, row[j]);
    mx = block_reduce<float>(mx, true, redf);
    double sum = 0.0;
    for (int j = threadIdx.x; j < len; j += blockDim.x) {
        float e = exp_exact(row[j] - mx);
        row[j] = e;
        sum += (double)e;
    }
    sum = block_reduce<double>(sum, false, redd);
    const float inv = (float)(1.0 / sum);
    for (int j = threadIdx.x; j < len; j += blockDim.x)
        row[j] = round_half(__fmul_rn(row[j], inv));
}

/* out[t][h] (or a partial sum over this block's keys) = sum_j P[t][h][j] * V[j][kh]. */
__global__ void __launch_bounds__(AT)
    attn_pv_kernel(float *__restrict__ out, float *__restrict__ part,
                   const float *__restrict__ S, int ldS, const __half *__restrict__ vc,
                   int n_head, int n_head_kv, int hd, int pos_first, int gsplit, int gn_max,
                   int chunk, int n_split) {
    const int group = n_head / n_head_kv;
    const int kh = blockIdx.x / gsplit, g0 = (blockIdx.x % gsplit) * gn_max;
    const int gn = min(gn_max, group - g0);
    const int t = blockIdx.y, split = blockIdx.z, len = pos_first + t + 1;
    const int j0 = split * chunk, j1 = min(len, j0 + chunk);
    const int hd4 = hd / 4, npairs = gn * hd4, kvd = n_head_kv * hd, h0 = kh * group + g0;
#pragma unroll
    for (int p = 0; p < PMAX; p++) {
        const int pair = threadIdx.x + p * AT;
        if (pair >= npairs) break;
        const int g = pair / hd4, c = pair % hd4;
        const float *P = S + ((size_t)t * n_head + h0 + g) * ldS;
        const __half *vcol = vc + (size_t)kh * hd + 4 * c;
        float4 a = make_float4(0.f, 0.f, 0.f, 0.f);
#pragma unroll 4
        for (int j = j0; j < j1; j++) {
            float pv = P[j];
            uint2 raw = __ldg(reinterpret_cast<const uint2 *>(vcol + (size_t)j * kvd));
            float2 lo = __half22float2(*reinterpret_cast<const __half2 *>(&raw.x));
            float2 hi = __half22float2(*reinterpret_cast<const __half2 *>(&raw.y));
            a.x += pv * lo.x, a.y += pv * lo.y, a.z += pv * hi.x, a.w += pv * hi.y;
        }
        const size_t hrow = (size_t)t * n_head + h0 + g;
        if (n_split == 1)
            reinterpret_cast<float4 *>(out + hrow * hd)[c] = a;
        else
            reinterpret_cast<float4 *>(part + (hrow * n_split + split) * hd)[c] = a;
    }
}

/* One block per (head, token), one thread per 4 dims: adds the splits' partial sums. */
__global__ void attn_combine_kernel(float *__restrict__ out, const float *__restrict__ part,
                                    int n_head, int hd, int n_split) {
    const size_t hrow = (size_t)blockIdx.y * n_head + blockIdx.x;
    const int c = threadIdx.x;
    float4 o = make_float4(0.f, 0.f, 0.f, 0.f);
    for (int s = 0; s < n_split; s++) {
        float4 a = reinterpret_cast<const float4 *>(part + (hrow * n_split + s) * hd)[c];
        o.x += a.x, o.y += a.y, o.z += a.z, o.w += a.w;
    }
    reinterpret_cast<float4 *>(out + hrow * hd)[c] = o;
}

static long cdiv(long a, long b) {
    return (a + b - 1) / b;
}

size_t cuda_kv_bytes(int n_ctx, int kv_dim) {
    return (size_t)n_ctx * (size_t)kv_dim * sizeof(__half);
}

void cuda_attention(cuda_backend *be, float *out, const float *q, const float *k,
                    const float *v, chord_kv *kv, int n, int pos0, const chord_attn_shape *s) {
    if (n <= 0) return;
    const int hd = s->head_dim, nh = s->n_head, nkv = s->n_head_kv;
    if (nkv <= 0 || nh % nkv != 0 || hd <= 0 || hd % 4 != 0 || hd / 4 > AT * PMAX) {
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

    const int group = nh / nkv, hd4 = hd / 4;
    int gn_max = (AT * PMAX) / hd4; /* heads whose (head, 4 dims) pairs fit one block */
    if (gn_max > GMAX) gn_max = GMAX;
    if (gn_max > group) gn_max = group;
    if (gn_max < 1) gn_max = 1;
    const int gsplit = (int)cdiv(group, gn_max);
    const size_t qd = (size_t)nh * hd;

    /* tokens per chunk: the scores [tc][n_head][pos0 + tc] stay within S_BUDGET */
    int tc = n;
    while (tc > 1 && (size_t)tc * nh * (size_t)(pos0 + tc) * sizeof(float) > S_BUDGET)
        tc = (tc + 1) / 2;

    for (int t0 = 0; t0 < n; t0 += tc) {
        const int m = n - t0 < tc ? n - t0 : tc;
        const int pos_first = pos0 + t0, maxlen = pos_first + m, ldS = (maxlen + 3) & ~3;
        long blocks = (long)nkv * gsplit * m;
        int n_split = 1;
        if (blocks < 2L * be->n_sm) {
            long want = cdiv(2L * be->n_sm, blocks), by_len = cdiv(maxlen, 32);
            n_split = (int)(want < by_len ? want : by_len);
            if (n_split < 1) n_split = 1;
        }
        const int chunk = (int)cdiv(maxlen, n_split);
        n_split = (int)cdiv(maxlen, chunk);
        size_t s_floats = (size_t)m * nh * ldS;
        size_t p_floats = n_split > 1 ? (size_t)m * nh * n_split * hd : 0;
        float *S = (float *)cuda_scratch_get(be, CUDA_SCRATCH_ATTN,
                                             (s_floats + p_floats) * sizeof(float));
        if (!S) return;
        float *part = S + s_floats;
        const float *qc = q + (size_t)t0 * qd;
        float *oc = out + (size_t)t0 * qd;

        dim3 g1((unsigned)(nkv * gsplit), (unsigned)m, (unsigned)cdiv(maxlen, AT));
        attn_scores_kernel<<<g1, AT, (size_t)gn_max * hd * sizeof(float), be->stream>>>(
            S, ldS, qc, kc, nh, nkv, hd, pos_first, gsplit, gn_max, s->scale);
        if (!CUDA_LAUNCHED(be, "attn_scores_kernel")) return;
        int sm_threads = maxlen >= 1024 ? 256 : 128;
        attn_softmax_kernel<<<dim3((unsigned)nh, (unsigned)m), sm_threads, 0, be->stream>>>(
            S, ldS, nh, pos_first);
        if (!CUDA_LAUNCHED(be, "attn_softmax_kernel")) return;
        dim3 g3((unsigned)(nkv * gsplit), (unsigned)m, (unsigned)n_split);
        attn_pv_kernel<<<g3, AT, 0, be->stream>>>(oc, part, S, ldS, vc, nh, nkv, hd, pos_first,
                                                  gsplit, gn_max, chunk, n_split);
        if (!CUDA_LAUNCHED(be, "attn_pv_kernel")) return;
        if (n_split > 1) {
            attn_combine_kernel<<<dim3((unsigned)nh, (unsigned)m), hd4, 0, be->stream>>>(
                oc, part, nh, hd, n_split);
            if (!CUDA_LAUNCHED(be, "attn_combine_kernel")) return;
        }
    }
}
