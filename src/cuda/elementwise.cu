/* Small ops: weight repacking, embedding rows, RMS norm, RoPE, add, SwiGLU.
 * RMS norm, RoPE and SwiGLU round exactly as the CPU backend (exact_math.h). */
#include <stdlib.h>

#include "exact_math.h"
#include "quant.cuh"
#include "rms_exact.cuh"

/* ------------------------------------------------------------- repack */

/* One thread per block: quant bytes to region Q, the rest to region S (cuda_common.cuh),
 * each S entry padded with zeros to sb bytes. */
__global__ void repack_kernel(uint8_t *__restrict__ dst, const uint8_t *__restrict__ raw,
                              int64_t n_blocks, int tsize, int qoff, int qlen, int sb) {
    int64_t b = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (b >= n_blocks) return;
    const uint8_t *src = raw + (size_t)b * tsize;
    uint8_t *q = dst + (size_t)b * qlen;
    uint8_t *s = dst + (size_t)n_blocks * qlen + (size_t)b * sb;
    for (int i = 0; i < qlen; i++)
        q[i] = src[qoff + i];
    for (int i = 0; i < qoff; i++)
        s[i] = src[i];
    for (int i = qoff + qlen; i < tsize; i++)
        s[i - qlen] = src[i];
    for (int i = tsize - qlen; i < sb; i++)
        s[i] = 0;
}

void cuda_repack(cuda_backend *be, uint8_t *dst, const uint8_t *raw, chord_type type,
                 int64_t n_blocks) {
    qinfo qi = qinfo_of(type);
    int threads = 256;
    int64_t grid = (n_blocks + threads - 1) / threads;
    repack_kernel<<<(unsigned)grid, threads, 0, be->stream>>>(dst, raw, n_blocks, qi.tsize,
                                                              qi.qoff, qi.qlen, qi.sb);
    CUDA_LAUNCHED(be, "repack_kernel");
}

/* ----------------------------------------------------------- get_rows */

#define ROWS_PER_LAUNCH 256
typedef struct token_list {
    int32_t id[ROWS_PER_LAUNCH];
} token_list;

/* Quantized types and aligned float types: 16 elements per step. */
template <int T>
__global__ void get_rows_kernel(float *__restrict__ out, wview w, token_list toks,
                                const int *__restrict__ dtok) {
    int t = blockIdx.x;
    int64_t row = dtok ? dtok[t] : toks.id[t];
    float *o = out + (size_t)t * w.n_in;
    bool valid = row >= 0 && row < w.n_out;
    for (int64_t k0 = 16 * (int64_t)threadIdx.x; k0 < w.n_in; k0 += 16 * blockDim.x) {
        float v[16];
        if (valid) {
            dq16<T>(w, row, k0, v);
        } else {
#pragma unroll
            for (int j = 0; j < 16; j++)
                v[j] = 0.f;
        }
#pragma unroll
        for (int j = 0; j < 16; j++)
            o[k0 + j] = v[j];
    }
}

/* Float types of any row length. */
template <int T>
__global__ void get_rows_scalar_kernel(float *__restrict__ out, wview w, token_list toks,
                                       const int *__restrict__ dtok) {
    int t = blockIdx.x;
    int64_t row = dtok ? dtok[t] : toks.id[t];
    bool valid = row >= 0 && row < w.n_out;
    for (int64_t k = threadIdx.x; k < w.n_in; k += blockDim.x)
        out[(size_t)t * w.n_in + k] = valid ? ld_elem<T>(w, row, k) : 0.f;
}

template <int T>
static void launch_get_rows(cuda_backend *be, float *out, const wview &w, const token_list &tl,
                            int n, const int *dtok) {
    bool vec = !type_is_float(T) || (w.n_in % 16 == 0);
    if (vec) {
        get_rows_kernel<T><<<n, 128, 0, be->stream>>>(out, w, tl, dtok);
    } else if (type_is_float(T)) {
        get_rows_scalar_kernel<(type_is_float(T) ? T : CHORD_TYPE_F32)>
            <<<n, 128, 0, be->stream>>>(out, w, tl, dtok);
    }
    CUDA_LAUNCHED(be, "get_rows_kernel");
}

void cuda_get_rows(cuda_backend *be, float *out, const chord_weight *emb, const int32_t *tokens,
                   int n, const int *dtok) {
    if (dtok && n > ROWS_PER_LAUNCH) {
        cuda_fail(be, "get_rows: %d device tokens", n);
        return;
    }
    if (!emb->dev) {
        cuda_fail(be, "get_rows: weight '%s' is not on the GPU", emb->name ? emb->name : "?");
        return;
    }
    wview w = wview_of(emb);
    for (int i0 = 0; i0 < n; i0 += ROWS_PER_LAUNCH) {
        int m = n - i0 < ROWS_PER_LAUNCH ? n - i0 : ROWS_PER_LAUNCH;
        token_list tl;
        memset(&tl, 0, sizeof tl);
        for (int i = 0; i < m && tokens; i++)
            tl.id[i] = tokens[i0 + i];
        float *o = out + (size_t)i0 * emb->n_in;
        CUDA_TYPE_SWITCH(emb->type, launch_get_rows,
                         cuda_fail(be, "get_rows: type %d", emb->type), be, o, w, tl, m, dtok);
    }
}

/* ------------------------------------------------------------ rmsnorm */

__device__ __forceinline__ float warp_sum(float v) {
#pragma unroll
    for (int o = 16; o > 0; o >>= 1)
        v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}

/* One block per row: out = x / rms(x) * w. */
__global__ void rmsnorm_kernel(float *__restrict__ out, const float *__restrict__ x,
                               const float *__restrict__ w, int dim, float eps) {
    pdl_wait();
    pdl_trigger();
    const float *xr = x + (size_t)blockIdx.x * dim;
    float *o = out + (size_t)blockIdx.x * dim;
    const float scale = rms_scale_exact(xr, dim, eps);
    for (int i = threadIdx.x; i < dim; i += blockDim.x)
        o[i] = __fmul_rn(__fmul_rn(xr[i], scale), w[i]);
}

/* d[j] = the lane's PER values of block warp + j * nw of src (0 past the nb blocks). */
template <int QB, int NBW>
__device__ __forceinline__ void warp_blocks(float (&d)[NBW][QB / 32],
                                            const float *__restrict__ src, int nb, int warp,
                                            int nw, int lane) {
    constexpr int PER = QB / 32;
#pragma unroll
    for (int j = 0; j < NBW; j++) {
        const int b = warp + j * nw;
#pragma unroll
        for (int i = 0; i < PER; i++)
            d[j][i] = b < nb ? src[b * QB + lane * PER + i] : 0.f;
    }
}

/* One row (decode): rmsnorm as above, then quantization of the activation blocks
 * (quant_store). Warp w holds blocks w, w + warps, ... (at most NBW) in registers from a
 * single read of x, which feeds both the sum of squares (any order does: rms_scale_reduce)
 * and the quantization; the norm weights are read before waiting for the kernel that
 * writes x. */
template <int QB, int NBW>
__global__ void rmsnorm_quant_kernel(float *__restrict__ out, const float *__restrict__ x,
                                     const float *__restrict__ w, int dim, float eps,
                                     int8_t *__restrict__ xq, float *__restrict__ xd,
                                     int16_t *__restrict__ bs, float *__restrict__ xs,
                                     int8_t *__restrict__ xqc, ktr tk, int early) {
    constexpr int PER = QB / 32;
    ktrace kt(tk);
    if (early) pdl_trigger(); /* CUDA_EARLY_NORM */
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nw = blockDim.x >> 5;
    const int nb = dim / QB;
    float g[NBW][PER], v[NBW][PER];
    warp_blocks<QB, NBW>(g, w, nb, warp, nw, lane);
    uint32_t dep = 0;
#pragma unroll
    for (int j = 0; j < NBW; j++)
#pragma unroll
        for (int i = 0; i < PER; i++)
            dep ^= __float_as_uint(g[j][i]);
    pdl_wait_after(dep); /* every load above first */
    kt.released();
    if (!early) pdl_trigger();
    double ss = 0.0;
    warp_blocks<QB, NBW>(v, x, nb, warp, nw, lane);
#pragma unroll
    for (int j = 0; j < NBW; j++)
#pragma unroll
        for (int i = 0; i < PER; i++)
            ss = __dadd_rn(ss, (double)__fmul_rn(v[j][i], v[j][i]));
    const float scale = rms_scale_reduce(ss, x, dim, eps);
    kt.mark();
#pragma unroll
    for (int j = 0; j < NBW; j++) {
        const int b = warp + j * nw;
        if (b >= nb) break; /* uniform across the warp */
        float o[PER];
#pragma unroll
        for (int i = 0; i < PER; i++) {
            o[i] = __fmul_rn(__fmul_rn(v[j][i], scale), g[j][i]);
            if (out) out[b * QB + lane * PER + i] = o[i];
        }
        quant_store<QB>(o, lane, b, xq, xd, bs, xs, xqc);
    }
}

template <int QB, int NBW>
static cudaError_t launch_rmsq(cuda_backend *be, int warps, float *out, const float *x,
                               const float *w, int dim, float eps, const qact *xa) {
    return launch_pdl(be, rmsnorm_quant_kernel<QB, NBW>, dim3(1), dim3(32 * warps), out, x, w,
                      dim, eps, (int8_t *)xa->q, (float *)xa->d, (int16_t *)xa->bs,
                      (float *)(QB == 32 ? xa->s : NULL), (int8_t *)xa->qc, take_ktr(be, 'n'),
                      (int)(be->early_trigger & CUDA_EARLY_NORM));
}

template <int QB>
static cudaError_t launch_rmsq_nbw(cuda_backend *be, int nbw, int warps, float *out,
                                   const float *x, const float *w, int dim, float eps,
                                   const qact *xa) {
    return nbw <= 1   ? launch_rmsq<QB, 1>(be, warps, out, x, w, dim, eps, xa)
           : nbw <= 2 ? launch_rmsq<QB, 2>(be, warps, out, x, w, dim, eps, xa)
           : nbw <= 4 ? launch_rmsq<QB, 4>(be, warps, out, x, w, dim, eps, xa)
                      : launch_rmsq<QB, 8>(be, warps, out, x, w, dim, eps, xa);
}

static int rms_threads(int dim) {
    return dim >= 1024 ? 1024 : (dim + 31) / 32 * 32;
}

bool cuda_rmsnorm_quant(cuda_backend *be, float *out, const float *x, const float *w, int dim,
                        float eps, int qb, qact *xa) {
    if (!cuda_qact_view(be, dim, 1, qb, xa)) return false;
    const int nb = dim / qb, warps = nb < 32 ? nb : 32, nbw = (nb + warps - 1) / warps;
    if (nb <= 0 || nbw > 8) {
        cuda_fail(be, "rmsnorm: %d activation blocks in one row (at most 256)", nb);
        return false;
    }
    cudaError_t e = qb == 32 ? launch_rmsq_nbw<32>(be, nbw, warps, out, x, w, dim, eps, xa)
                             : launch_rmsq_nbw<256>(be, nbw, warps, out, x, w, dim, eps, xa);
    return CUDA_CHECK(be, e) && CUDA_LAUNCHED(be, "rmsnorm_quant_kernel");
}

void cuda_rmsnorm(cuda_backend *be, float *out, const float *x, const float *w, int n, int dim,
                  float eps) {
    if (n <= 0) return;
    CUDA_CHECK(be, launch_pdl(be, rmsnorm_kernel, dim3((unsigned)n), dim3(rms_threads(dim)),
                              out, x, w, dim, eps));
    CUDA_LAUNCHED(be, "rmsnorm_kernel");
}

/* --------------------------------------------------------------- rope */

const float2 *cuda_rope_table(cuda_backend *be, const chord_rope_shape *s, int npos,
                              bool build) {
    const int half = s->n_rot / 2;
    cuda_scratch *sc = &be->scratch[CUDA_SCRATCH_ROPE];
    const bool same = sc->p && be->rope_npos > 0 && be->rope_nrot == s->n_rot &&
                      be->rope_base == s->freq_base && be->rope_fscale == s->freq_scale;
    if (same && npos <= be->rope_npos) return (const float2 *)sc->p;
    if (!build) {
        cuda_fail(be, "rope: no (cos, sin) table for position %d", npos - 1);
        return NULL;
    }
    if (half <= 0 || npos <= 0) {
        cuda_fail(be, "rope: n_rot %d, %d positions", s->n_rot, npos);
        return NULL;
    }
    /* doubling: a long generation remakes the table a logarithmic number of times */
    int cap = npos < 1024 ? 1024 : npos;
    if (same && cap / 2 < be->rope_npos)
        cap = be->rope_npos < (1 << 29) ? 2 * be->rope_npos : cap;
    const size_t count = (size_t)cap * (size_t)half;
    float2 *h = (float2 *)malloc(count * sizeof *h);
    if (!h) {
        cuda_fail(be, "rope: out of host memory for a %zu-entry table", count);
        return NULL;
    }
    /* the CPU backend's rope_fn, angle by angle */
    const float step = powf(s->freq_base, -2.0f / (float)s->n_rot);
    for (int p = 0; p < cap; p++) {
        float theta_ext = (float)p;
        for (int i = 0; i < half; i++, theta_ext *= step) {
            const float theta = s->freq_scale * theta_ext;
            h[(size_t)p * half + i] = make_float2(cosf(theta), sinf(theta));
        }
    }
    be->rope_npos = 0; /* nothing valid until the copy is done */
    void *d = cuda_scratch_get(be, CUDA_SCRATCH_ROPE, count * sizeof *h);
    /* stream order: kernels queued earlier still read the old table before this copy */
    if (d && CUDA_CHECK(be, cudaMemcpyAsync(d, h, count * sizeof *h, cudaMemcpyHostToDevice,
                                            be->stream)))
        CUDA_CHECK(be, cudaStreamSynchronize(be->stream)); /* h is freed next */
    free(h);
    if (!d || be->err_code != CHORD_OK) return NULL;
    be->scratch_gen++; /* graphs captured with the old contents must not run again */
    be->rope_npos = cap;
    be->rope_nrot = s->n_rot;
    be->rope_base = s->freq_base;
    be->rope_fscale = s->freq_scale;
    return (const float2 *)d;
}

/* One thread per (token, pair index i), applied to every head. */
__global__ void rope_kernel(float *__restrict__ x, int n, int pos0,
                            const int *__restrict__ dpos, int n_head, int head_dim, int n_rot,
                            int neox, const float2 *__restrict__ tab) {
    /* one thread per (token, head, pair): a prompt has enough of them to fill the GPU */
    const int half = n_rot / 2;
    const int64_t idx = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (idx >= (int64_t)n * n_head * half) return;
    if (dpos) pos0 = *dpos;
    const int i = (int)(idx % half);
    const int64_t th = idx / half; /* token * n_head + head */
    const int t = (int)(th / n_head);
    const float2 cs = tab[(size_t)(pos0 + t) * half + i];
    const int a = neox ? i : 2 * i, b = neox ? i + half : 2 * i + 1;
    float *v = x + (size_t)th * head_dim;
    xm_rope_rot(&v[a], &v[b], cs.x, cs.y);
}

void cuda_rope(cuda_backend *be, float *x, int n, int pos0, const chord_rope_shape *s,
               const int *dpos) {
    int half = s->n_rot / 2;
    if (n <= 0 || half <= 0) return;
    if (s->n_rot > s->head_dim) {
        cuda_fail(be, "rope: n_rot %d > head_dim %d", s->n_rot, s->head_dim);
        return;
    }
    if (pos0 < 0) {
        cuda_fail(be, "rope: position %d", pos0);
        return;
    }
    /* under a graph (dpos) step_end made the table ready for this step's positions */
    const float2 *tab = cuda_rope_table(be, s, pos0 + n, dpos == NULL);
    if (!tab) return;
    const int64_t total = (int64_t)n * s->n_head * half;
    const int threads = 128;
    rope_kernel<<<(unsigned)((total + threads - 1) / threads), threads, 0, be->stream>>>(
        x, n, pos0, dpos, s->n_head, s->head_dim, s->n_rot, s->neox ? 1 : 0, tab);
    CUDA_LAUNCHED(be, "rope_kernel");
}

/* ---------------------------------------------------------- add, swiglu */

__global__ void add_kernel(float *__restrict__ x, const float *__restrict__ y, size_t n) {
    size_t n4 = n / 4, stride = (size_t)gridDim.x * blockDim.x;
    float4 *x4 = reinterpret_cast<float4 *>(x);
    const float4 *y4 = reinterpret_cast<const float4 *>(y);
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < n4; i += stride) {
        float4 a = x4[i], b = y4[i];
        a.x += b.x, a.y += b.y, a.z += b.z, a.w += b.w;
        x4[i] = a;
    }
    for (size_t i = 4 * n4 + (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += stride)
        x[i] += y[i];
}

__global__ void swiglu_kernel(float *out, const float *g, const float *u, size_t n) {
    size_t n4 = n / 4, stride = (size_t)gridDim.x * blockDim.x;
    const float4 *g4 = reinterpret_cast<const float4 *>(g);
    const float4 *u4 = reinterpret_cast<const float4 *>(u);
    float4 *o4 = reinterpret_cast<float4 *>(out);
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < n4; i += stride) {
        float4 a = g4[i], b = u4[i];
        o4[i] = make_float4(xm_swiglu(a.x, b.x), xm_swiglu(a.y, b.y), xm_swiglu(a.z, b.z),
                            xm_swiglu(a.w, b.w));
    }
    for (size_t i = 4 * n4 + (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += stride)
        out[i] = xm_swiglu(g[i], u[i]);
}

static bool aligned16(const void *p) {
    return ((uintptr_t)p & 15) == 0;
}

static unsigned ew_grid(cuda_backend *be, size_t n) {
    size_t want = (n / 4 + 255) / 256;
    size_t cap = (size_t)be->n_sm * 8;
    if (want < 1) want = 1;
    return (unsigned)(want < cap ? want : cap);
}

__global__ void add_scalar_kernel(float *x, const float *y, size_t n) {
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < n;
         i += (size_t)gridDim.x * blockDim.x)
        x[i] += y[i];
}
__global__ void swiglu_scalar_kernel(float *out, const float *g, const float *u, size_t n) {
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < n;
         i += (size_t)gridDim.x * blockDim.x)
        out[i] = xm_swiglu(g[i], u[i]);
}

void cuda_add(cuda_backend *be, float *x, const float *y, size_t n) {
    if (!n) return;
    if (aligned16(x) && aligned16(y))
        add_kernel<<<ew_grid(be, n), 256, 0, be->stream>>>(x, y, n);
    else
        add_scalar_kernel<<<ew_grid(be, 4 * n), 256, 0, be->stream>>>(x, y, n);
    CUDA_LAUNCHED(be, "add_kernel");
}

void cuda_swiglu(cuda_backend *be, float *out, const float *g, const float *u, size_t n) {
    if (!n) return;
    if (aligned16(out) && aligned16(g) && aligned16(u))
        swiglu_kernel<<<ew_grid(be, n), 256, 0, be->stream>>>(out, g, u, n);
    else
        swiglu_scalar_kernel<<<ew_grid(be, 4 * n), 256, 0, be->stream>>>(out, g, u, n);
    CUDA_LAUNCHED(be, "swiglu_kernel");
}

/* Decode: out = silu(g) * u (as swiglu_kernel), quantized per activation block: one block
 * of QB threads per activation block, one element per thread, then warp 0 quantizes. */
template <int QB>
__global__ void __launch_bounds__(QB)
    swiglu_quant_kernel(float *out, const float *g, const float *u, int8_t *__restrict__ xq,
                        float *__restrict__ xd, int16_t *__restrict__ bs,
                        float *__restrict__ xs, int8_t *__restrict__ xqc, ktr tk, int early) {
    constexpr int PER = QB / 32;
    __shared__ float vals[QB];
    const int64_t b = blockIdx.x, e = b * QB + threadIdx.x;
    ktrace kt(tk);
    if (early) pdl_trigger(); /* cuda_backend.early_trigger */
    pdl_wait();
    kt.released();
    if (!early) pdl_trigger();
    const float val = xm_swiglu(g[e], u[e]);
    if (out) out[e] = val;
    vals[threadIdx.x] = val;
    __syncthreads();
    if (threadIdx.x < 32) {
        const int lane = threadIdx.x;
        float v[PER];
#pragma unroll
        for (int i = 0; i < PER; i++)
            v[i] = vals[lane * PER + i];
        quant_store<QB>(v, lane, b, xq, xd, bs, xs, xqc);
    }
}

bool cuda_swiglu_quant(cuda_backend *be, float *out, const float *g, const float *u, int dim,
                       int qb, qact *xa) {
    if (!cuda_qact_view(be, dim, 1, qb, xa)) return false;
    const unsigned grid = (unsigned)(dim / qb);
    cudaError_t e;
    if (qb == 32)
        e = launch_pdl(be, swiglu_quant_kernel<32>, dim3(grid), dim3(32), out, g, u,
                       (int8_t *)xa->q, (float *)xa->d, (int16_t *)xa->bs, (float *)xa->s,
                       (int8_t *)NULL, take_ktr(be, 's'),
                       (int)(be->early_trigger & CUDA_EARLY_QS));
    else
        e = launch_pdl(be, swiglu_quant_kernel<256>, dim3(grid), dim3(256), out, g, u,
                       (int8_t *)xa->q, (float *)xa->d, (int16_t *)xa->bs, (float *)NULL,
                       (int8_t *)xa->qc, take_ktr(be, 's'),
                       (int)(be->early_trigger & CUDA_EARLY_QS));
    return CUDA_CHECK(be, e) && CUDA_LAUNCHED(be, "swiglu_quant_kernel");
}
