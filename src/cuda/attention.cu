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

/* ---------------------------------------------------------------- decode */

#define ADT 256 /* threads of the decode kernel */

typedef struct rope_args {
    int n_rot, neox;
    float step, freq_scale;
} rope_args;

/* q . k for one key of 8 * NV halves (raw) against qs (float, half-rounded). */
template <int NV>
__device__ __forceinline__ float qk_dot8(const float *qs, const uint4 *raw) {
    float sc = 0.f;
#pragma unroll
    for (int v = 0; v < NV; v++) {
        const __half2 *h2 = reinterpret_cast<const __half2 *>(&raw[v]);
        const float2 f0 = __half22float2(h2[0]), f1 = __half22float2(h2[1]);
        const float2 f2 = __half22float2(h2[2]), f3 = __half22float2(h2[3]);
        const float *qv = qs + 8 * v;
        sc += qv[0] * f0.x + qv[1] * f0.y + qv[2] * f1.x + qv[3] * f1.y;
        sc += qv[4] * f2.x + qv[5] * f2.y + qv[6] * f3.x + qv[7] * f3.y;
    }
    return sc;
}

/* One token, one block per q head: (rope,) K/V row into the cache, scores of every key
 * in shared memory, softmax, P.V, with the roundings of the kernels above. The key and
 * value of the token itself come from k / v directly (the cache row is written by the
 * first block of the kv group, which the other blocks do not wait for). Position from
 * *dpos when given (graph replay), else pos_val. HDT: head_dim known at compile time
 * (64, 128; 0: run time, multiple of 4). Several keys' loads are in flight per thread. */
template <bool ROPE, int HDT>
__global__ void __launch_bounds__(ADT)
    attn_decode_kernel(float *__restrict__ out, float *q, const float *k,
                       const float *__restrict__ v, __half *kc, __half *vc, int n_head,
                       int n_head_kv, int hd_rt, int pos_val, const int *__restrict__ dpos,
                       float scale, rope_args ra) {
    const int hd = HDT ? HDT : hd_rt;
    extern __shared__ float4 sm4[];
    float *sm = reinterpret_cast<float *>(sm4);
    float *qs = sm, *ks = sm + hd, *vs = sm + 2 * hd;
    float4 *red4 = reinterpret_cast<float4 *>(sm + 3 * hd); /* 3 * hd % 4 == 0 */
    float *S = sm + 3 * hd + 4 * ADT;
    __shared__ float redf[32];
    __shared__ double redd[32];
    pdl_wait();
    pdl_trigger();
    const int tid = threadIdx.x;
    const int pos = dpos ? *dpos : pos_val, len = pos + 1;
    const int h = blockIdx.x, group = n_head / n_head_kv, kh = h / group;
    const bool leader = h % group == 0;
    const int kvd = n_head_kv * hd;
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
            float cs, sn;
            rope_cs(pos, i, ra.step, ra.freq_scale, &cs, &sn);
            const int a = ra.neox ? i : 2 * i, b = ra.neox ? i + half : 2 * i + 1;
            rope_rot(&qs[a], &qs[b], cs, sn);
            rope_rot(&ks[a], &ks[b], cs, sn);
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
    __syncthreads();

    /* scores; the token's own key from ks (the cache row may not be written yet) */
    float mx = -INFINITY;
    const __half *kbase = kc + (size_t)kh * hd;
    if constexpr (HDT > 0) {
        constexpr int NV = HDT / 8;
        for (int j0 = tid; j0 < len; j0 += 2 * ADT) {
            uint4 raw[2][NV];
#pragma unroll
            for (int u = 0; u < 2; u++) {
                const int j = min(j0 + u * ADT, len - 1);
                const uint4 *kr = reinterpret_cast<const uint4 *>(kbase + (size_t)j * kvd);
#pragma unroll
                for (int t = 0; t < NV; t++)
                    raw[u][t] = __ldg(kr + t);
            }
#pragma unroll
            for (int u = 0; u < 2; u++) {
                const int j = j0 + u * ADT;
                if (j >= len) break;
                if (j == pos) {
#pragma unroll
                    for (int t = 0; t < NV; t++) {
                        __half2 p4[4];
#pragma unroll
                        for (int e = 0; e < 4; e++)
                            p4[e] = __floats2half2_rn(ks[8 * t + 2 * e], ks[8 * t + 2 * e + 1]);
                        memcpy(&raw[u][t], p4, sizeof(uint4));
                    }
                }
                const float sc = qk_dot8<NV>(qs, raw[u]) * scale;
                S[j] = sc;
                mx = fmaxf(mx, sc);
            }
        }
    } else {
        for (int j = tid; j < len; j += ADT) {
            const __half *kr = kbase + (size_t)j * kvd;
            float sc = 0.f;
            for (int c = 0; c < hd; c += 4) {
                float2 f0, f1;
                if (j == pos) {
                    f0 = make_float2(ks[c], ks[c + 1]);
                    f1 = make_float2(ks[c + 2], ks[c + 3]);
                } else {
                    uint2 raw = __ldg(reinterpret_cast<const uint2 *>(kr + c));
                    f0 = __half22float2(*reinterpret_cast<const __half2 *>(&raw.x));
                    f1 = __half22float2(*reinterpret_cast<const __half2 *>(&raw.y));
                }
                sc += qs[c] * f0.x + qs[c + 1] * f0.y + qs[c + 2] * f1.x + qs[c + 3] * f1.y;
            }
            sc *= scale;
            S[j] = sc;
            mx = fmaxf(mx, sc);
        }
    }
    mx = block_reduce<float>(mx, true, redf);
    double sum = 0.0;
    for (int j = tid; j < len; j += ADT) {
        float e = exp_exact(S[j] - mx);
        S[j] = e;
        sum += (double)e;
    }
    sum = block_reduce<double>(sum, false, redd);
    const float inv = (float)(1.0 / sum);
    for (int j = tid; j < len; j += ADT)
        S[j] = round_half(__fmul_rn(S[j], inv));
    __syncthreads();

    /* P.V: thread (part p, 4 dims c); part p takes keys p, p + np, ... in order, eight
     * rows' loads in flight */
    const int hd4 = hd / 4, np = ADT / hd4;
    const int c = tid % hd4, p = tid / hd4;
    float4 a = make_float4(0.f, 0.f, 0.f, 0.f);
    if (p < np) {
        const __half *vcol = vc + (size_t)kh * hd + 4 * c;
        const float4 vme = make_float4(vs[4 * c], vs[4 * c + 1], vs[4 * c + 2], vs[4 * c + 3]);
        int j = p;
        for (; j + 7 * np < len; j += 8 * np) {
            uint2 raw[8];
#pragma unroll
            for (int u = 0; u < 8; u++)
                raw[u] = __ldg(reinterpret_cast<const uint2 *>(vcol + (size_t)(j + u * np) * kvd));
#pragma unroll
            for (int u = 0; u < 8; u++) {
                const int jj = j + u * np;
                const float pv = S[jj];
                float4 f;
                if (jj == pos) {
                    f = vme;
                } else {
                    const float2 lo = __half22float2(*reinterpret_cast<const __half2 *>(&raw[u].x));
                    const float2 hi = __half22float2(*reinterpret_cast<const __half2 *>(&raw[u].y));
                    f = make_float4(lo.x, lo.y, hi.x, hi.y);
                }
                a.x += pv * f.x, a.y += pv * f.y, a.z += pv * f.z, a.w += pv * f.w;
            }
        }
        for (; j < len; j += np) {
            const float pv = S[j];
            float4 f;
            if (j == pos) {
                f = vme;
            } else {
                const uint2 raw = __ldg(reinterpret_cast<const uint2 *>(vcol + (size_t)j * kvd));
                const float2 lo = __half22float2(*reinterpret_cast<const __half2 *>(&raw.x));
                const float2 hi = __half22float2(*reinterpret_cast<const __half2 *>(&raw.y));
                f = make_float4(lo.x, lo.y, hi.x, hi.y);
            }
            a.x += pv * f.x, a.y += pv * f.y, a.z += pv * f.z, a.w += pv * f.w;
        }
    }
    red4[tid] = a;
    __syncthreads();
    if (p == 0) {
        float4 o = red4[c];
        for (int pp = 1; pp < np; pp++) {
            const float4 b = red4[pp * hd4 + c];
            o.x += b.x, o.y += b.y, o.z += b.z, o.w += b.w;
        }
        reinterpret_cast<float4 *>(out + (size_t)h * hd)[c] = o;
    }
}

static size_t decode_smem(const chord_attn_shape *s) {
    return ((size_t)3 * s->head_dim + 4 * ADT + (size_t)s->n_ctx) * sizeof(float);
}

template <bool ROPE, int HDT> static bool decode_attr(int bytes) {
    return cudaFuncSetAttribute(attn_decode_kernel<ROPE, HDT>,
                                cudaFuncAttributeMaxDynamicSharedMemorySize, bytes) == cudaSuccess;
}

void cuda_attention_init(cuda_backend *be) {
    size_t mx = be->smem_per_block_optin;
    size_t stat = 32 * (sizeof(float) + sizeof(double)) + 64;
    mx = mx > stat ? mx - stat : 0;
    if (mx > 48 * 1024) {
        const int b = (int)mx;
        if (!(decode_attr<true, 64>(b) && decode_attr<true, 128>(b) && decode_attr<true, 0>(b) &&
              decode_attr<false, 64>(b) && decode_attr<false, 128>(b) &&
              decode_attr<false, 0>(b))) {
            (void)cudaGetLastError();
            mx = 48 * 1024;
        }
    } else {
        mx = 48 * 1024 < mx ? 48 * 1024 : mx;
    }
    be->attn_smem_max = mx;
}

bool cuda_attn_decode_ok(cuda_backend *be, const chord_attn_shape *s) {
    const int hd = s->head_dim, nh = s->n_head, nkv = s->n_head_kv;
    return nkv > 0 && nh % nkv == 0 && hd > 0 && hd % 4 == 0 && hd / 4 <= ADT &&
           decode_smem(s) <= be->attn_smem_max;
}

void cuda_attention_decode(cuda_backend *be, float *out, float *q, const float *k,
                           const float *v, chord_kv *kv, int pos0, const chord_attn_shape *s,
                           const chord_rope_shape *rope, const int *dpos) {
    if (!cuda_attn_decode_ok(be, s)) {
        cuda_fail(be, "attention: no one-token kernel for this shape");
        return;
    }
    if (!dpos && (pos0 < 0 || pos0 >= s->n_ctx)) {
        cuda_fail(be, "attention: position %d outside the cache (%d)", pos0, s->n_ctx);
        return;
    }
    rope_args ra = {0, 0, 1.0f, 1.0f};
    if (rope) {
        if (rope->n_rot > s->head_dim || rope->n_rot / 2 <= 0) {
            cuda_fail(be, "attention: rope n_rot %d, head_dim %d", rope->n_rot, s->head_dim);
            return;
        }
        ra.n_rot = rope->n_rot;
        ra.neox = rope->neox ? 1 : 0;
        ra.step = powf(rope->freq_base, -2.0f / (float)rope->n_rot);
        ra.freq_scale = rope->freq_scale;
    }
    cudaError_t e;
    const int hd = s->head_dim;
    const dim3 grid((unsigned)s->n_head), blk(ADT);
    const size_t smem = decode_smem(s);
    __half *kc = (__half *)kv->k, *vc = (__half *)kv->v;
#define DECODE_ARGS out, q, k, v, kc, vc, s->n_head, s->n_head_kv, hd, pos0, dpos, s->scale, ra
    if (rope)
        e = hd == 64    ? launch_pdl_smem(be, attn_decode_kernel<true, 64>, grid, blk, smem, DECODE_ARGS)
            : hd == 128 ? launch_pdl_smem(be, attn_decode_kernel<true, 128>, grid, blk, smem, DECODE_ARGS)
                        : launch_pdl_smem(be, attn_decode_kernel<true, 0>, grid, blk, smem, DECODE_ARGS);
    else
        e = hd == 64    ? launch_pdl_smem(be, attn_decode_kernel<false, 64>, grid, blk, smem, DECODE_ARGS)
            : hd == 128 ? launch_pdl_smem(be, attn_decode_kernel<false, 128>, grid, blk, smem, DECODE_ARGS)
                        : launch_pdl_smem(be, attn_decode_kernel<false, 0>, grid, blk, smem, DECODE_ARGS);
#undef DECODE_ARGS
    CUDA_CHECK(be, e);
    CUDA_LAUNCHED(be, "attn_decode_kernel");
}

void cuda_attention(cuda_backend *be, float *out, const float *q, const float *k,
                    const float *v, chord_kv *kv, int n, int pos0, const chord_attn_shape *s,
                    const int *dpos) {
    if (n <= 0) return;
    if (n == 1 && cuda_attn_decode_ok(be, s)) {
        cuda_attention_decode(be, out, (float *)q, k, v, kv, pos0, s, NULL, dpos);
        return;
    }
    if (dpos) {
        cuda_fail(be, "attention: this shape cannot read its position from the device");
        return;
    }
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
