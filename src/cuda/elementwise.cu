/* Small ops: weight repacking, embedding rows, RMS norm, RoPE, add, SwiGLU. */
#include "quant.cuh"

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
__global__ void get_rows_kernel(float *__restrict__ out, wview w, token_list toks) {
    int t = blockIdx.x;
    int64_t row = toks.id[t];
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
__global__ void get_rows_scalar_kernel(float *__restrict__ out, wview w, token_list toks) {
    int t = blockIdx.x;
    int64_t row = toks.id[t];
    bool valid = row >= 0 && row < w.n_out;
    for (int64_t k = threadIdx.x; k < w.n_in; k += blockDim.x)
        out[(size_t)t * w.n_in + k] = valid ? ld_elem<T>(w, row, k) : 0.f;
}

template <int T>
static void launch_get_rows(cuda_backend *be, float *out, const wview &w, const token_list &tl,
                            int n) {
    bool vec = !type_is_float(T) || (w.n_in % 16 == 0);
    if (vec) {
        get_rows_kernel<T><<<n, 128, 0, be->stream>>>(out, w, tl);
    } else if (type_is_float(T)) {
        get_rows_scalar_kernel<(type_is_float(T) ? T : CHORD_TYPE_F32)>
            <<<n, 128, 0, be->stream>>>(out, w, tl);
    }
    CUDA_LAUNCHED(be, "get_rows_kernel");
}

void cuda_get_rows(cuda_backend *be, float *out, const chord_weight *emb, const int32_t *tokens,
                   int n) {
    if (!emb->dev) {
        cuda_fail(be, "get_rows: weight '%s' is not on the GPU", emb->name ? emb->name : "?");
        return;
    }
    wview w = wview_of(emb);
    for (int i0 = 0; i0 < n; i0 += ROWS_PER_LAUNCH) {
        int m = n - i0 < ROWS_PER_LAUNCH ? n - i0 : ROWS_PER_LAUNCH;
        token_list tl;
        for (int i = 0; i < m; i++)
            tl.id[i] = tokens[i0 + i];
        float *o = out + (size_t)i0 * emb->n_in;
        CUDA_TYPE_SWITCH(emb->type, launch_get_rows,
                         cuda_fail(be, "get_rows: type %d", emb->type), be, o, w, tl, m);
    }
}

/* ------------------------------------------------------------ rmsnorm */

__device__ __forceinline__ float warp_sum(float v) {
#pragma unroll
    for (int o = 16; o > 0; o >>= 1)
        v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}

/* One block per row: out = x / rms(x) * w, rounded as the CPU backend (and llama.cpp):
 * products in float, their sum in double, 1 / sqrt in float, correctly rounded. */
__global__ void rmsnorm_kernel(float *__restrict__ out, const float *__restrict__ x,
                               const float *__restrict__ w, int dim, float eps) {
    __shared__ double red[32];
    const float *xr = x + (size_t)blockIdx.x * dim;
    float *o = out + (size_t)blockIdx.x * dim;
    double ss = 0.0;
    for (int i = threadIdx.x; i < dim; i += blockDim.x)
        ss += (double)__fmul_rn(xr[i], xr[i]);
#pragma unroll
    for (int off = 16; off > 0; off >>= 1)
        ss += __shfl_xor_sync(0xffffffffu, ss, off);
    int lane = threadIdx.x & 31, wid = threadIdx.x >> 5;
    if (lane == 0) red[wid] = ss;
    __syncthreads();
    if (wid == 0) {
        double v = lane < (int)(blockDim.x >> 5) ? red[lane] : 0.0;
#pragma unroll
        for (int off = 16; off > 0; off >>= 1)
            v += __shfl_xor_sync(0xffffffffu, v, off);
        if (lane == 0) red[0] = v;
    }
    __syncthreads();
    const float scale = __frcp_rn(__fsqrt_rn(__fadd_rn((float)(red[0] / dim), eps)));
    for (int i = threadIdx.x; i < dim; i += blockDim.x)
        o[i] = __fmul_rn(__fmul_rn(xr[i], scale), w[i]);
}

void cuda_rmsnorm(cuda_backend *be, float *out, const float *x, const float *w, int n, int dim,
                  float eps) {
    if (n <= 0) return;
    int threads = dim >= 1024 ? 1024 : (dim + 31) / 32 * 32;
    rmsnorm_kernel<<<n, threads, 0, be->stream>>>(out, x, w, dim, eps);
    CUDA_LAUNCHED(be, "rmsnorm_kernel");
}

/* --------------------------------------------------------------- rope */

/* One thread per (token, pair index i); the angle is applied to every head. As the CPU
 * backend (and llama.cpp): theta_0 = p * freq_scale, theta_{i+1} = theta_i * step in
 * float, step = powf(base, -2 / n_rot) computed on the host by the same libm; cos/sin
 * in double (so fast-math cannot degrade large angles), rounded to float. */
__global__ void rope_kernel(float *__restrict__ x, int n, int pos0, int n_head, int head_dim,
                            int n_rot, float step, float freq_scale, int neox) {
    int half = n_rot / 2;
    int idx = blockIdx.x * blockDim.x + threadIdx.x;
    if (idx >= n * half) return;
    int t = idx / half, i = idx % half;
    float theta = __fmul_rn((float)(pos0 + t), freq_scale);
    for (int k = 0; k < i; k++)
        theta = __fmul_rn(theta, step);
    double sd, cd;
    sincos((double)theta, &sd, &cd);
    float cs = (float)cd, sn = (float)sd;
    int a = neox ? i : 2 * i, b = neox ? i + half : 2 * i + 1;
    for (int h = 0; h < n_head; h++) {
        float *v = x + ((size_t)t * n_head + h) * head_dim;
        float x0 = v[a], x1 = v[b];
        v[a] = x0 * cs - x1 * sn;
        v[b] = x0 * sn + x1 * cs;
    }
}

void cuda_rope(cuda_backend *be, float *x, int n, int pos0, const chord_rope_shape *s) {
    int half = s->n_rot / 2;
    if (n <= 0 || half <= 0) return;
    if (s->n_rot > s->head_dim) {
        cuda_fail(be, "rope: n_rot %d > head_dim %d", s->n_rot, s->head_dim);
        return;
    }
    const float step = powf(s->freq_base, -2.0f / (float)s->n_rot);
    int total = n * half, threads = 128;
    rope_kernel<<<(total + threads - 1) / threads, threads, 0, be->stream>>>(
        x, n, pos0, s->n_head, s->head_dim, s->n_rot, step, s->freq_scale, s->neox ? 1 : 0);
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

/* silu(g) * u rounded as the CPU's g / (1 + expf(-g)) * u (no fast-math shortcuts) */
__device__ __forceinline__ float silu_mul(float g, float u) {
    return __fmul_rn(__fdiv_rn(g, __fadd_rn(1.0f, (float)exp(-(double)g))), u);
}

__global__ void swiglu_kernel(float *out, const float *g, const float *u, size_t n) {
    size_t n4 = n / 4, stride = (size_t)gridDim.x * blockDim.x;
    const float4 *g4 = reinterpret_cast<const float4 *>(g);
    const float4 *u4 = reinterpret_cast<const float4 *>(u);
    float4 *o4 = reinterpret_cast<float4 *>(out);
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < n4; i += stride) {
        float4 a = g4[i], b = u4[i];
        o4[i] = make_float4(silu_mul(a.x, b.x), silu_mul(a.y, b.y), silu_mul(a.z, b.z),
                            silu_mul(a.w, b.w));
    }
    for (size_t i = 4 * n4 + (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += stride)
        out[i] = silu_mul(g[i], u[i]);
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
        out[i] = silu_mul(g[i], u[i]);
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
