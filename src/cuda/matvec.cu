/* Decode matvec (one token): y[o] = sum_i W[o][i] x[i], fused with dequantization.
 *
 * One warp per output row, 4 rows per 128-thread block. Each lane walks the row in
 * 16-byte units of quant bytes (coalesced across the warp, loaded with L1 bypass so the
 * activations stay cached). Quantized types dot against the activations quantized to
 * int8 with one float scale per 32 (quantized once per matmul call, shared by the
 * weights of the call) using dp4a; float types dot against the float activations. */
#include "quant.cuh"

#define MV_ROWS 4

__device__ __forceinline__ float mv_warp_sum(float v) {
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}

/* x -> int8 with d = max|x| / 127 per 32 elements, rounded as the host test expects:
 * d = amax / 127, q = rint(x * (1 / d)), each step correctly rounded. */
__global__ void quantize_x_kernel(int8_t *__restrict__ xq, float *__restrict__ xd,
                                  const float *__restrict__ x, int64_t n_blocks) {
    int64_t b = ((int64_t)blockIdx.x * blockDim.x + threadIdx.x) >> 5;
    int lane = threadIdx.x & 31;
    if (b >= n_blocks) return; /* uniform across the warp */
    float v = x[b * 32 + lane];
    float a = fabsf(v);
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) a = fmaxf(a, __shfl_xor_sync(0xffffffffu, a, o));
    float d = __fdiv_rn(a, 127.0f);
    float id = d != 0.0f ? __frcp_rn(d) : 0.0f;
    xq[b * 32 + lane] = (int8_t)__float2int_rn(__fmul_rn(v, id));
    if (lane == 0) xd[b] = d;
}

void cuda_quantize_x(cuda_backend *be, int8_t *xq, float *xd, const float *x, int64_t n_in) {
    int64_t n_blocks = n_in / 32;
    if (n_blocks <= 0) return;
    int threads = 256;
    int64_t grid = (n_blocks * 32 + threads - 1) / threads;
    quantize_x_kernel<<<(unsigned)grid, threads, 0, be->stream>>>(xq, xd, x, n_blocks);
    CUDA_LAUNCHED(be, "quantize_x_kernel");
}

template <int T>
__global__ void __launch_bounds__(32 * MV_ROWS)
    matvec_q_kernel(wview w, const int8_t *__restrict__ xq, const float *__restrict__ xd,
                    float *__restrict__ y) {
    int64_t row = (int64_t)blockIdx.x * MV_ROWS + (threadIdx.x >> 5);
    int lane = threadIdx.x & 31;
    if (row >= w.n_out) return;
    const int n_units = (int)w.nb * units_per_block(T);
    float acc = 0.f;
#pragma unroll 4
    for (int u = lane; u < n_units; u += 32) acc += unit_dot<T>(w, row, u, xq, xd);
    acc = mv_warp_sum(acc);
    if (lane == 0) y[row] = acc;
}

/* Float weights, 16 bytes (4 or 8 elements) per unit; needs n_in % 8 == 0. */
template <int T>
__global__ void __launch_bounds__(32 * MV_ROWS)
    matvec_f_kernel(wview w, const float *__restrict__ x, float *__restrict__ y) {
    int64_t row = (int64_t)blockIdx.x * MV_ROWS + (threadIdx.x >> 5);
    int lane = threadIdx.x & 31;
    if (row >= w.n_out) return;
    constexpr int EPU = T == CHORD_TYPE_F32 ? 4 : 8;
    constexpr int ESZ = T == CHORD_TYPE_F32 ? 4 : 2;
    const int n_units = (int)(w.n_in / EPU);
    const uint8_t *rp = w.q + (size_t)row * w.n_in * ESZ;
    const float4 *x4 = reinterpret_cast<const float4 *>(x);
    float acc = 0.f;
#pragma unroll 4
    for (int u = lane; u < n_units; u += 32) {
        uint4 v = ld16_stream(rp + 16 * (size_t)u);
        if constexpr (T == CHORD_TYPE_F32) {
            float4 a = __ldg(x4 + u);
            acc += __uint_as_float(v.x) * a.x + __uint_as_float(v.y) * a.y +
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
            acc += f[0] * a.x + f[1] * a.y + f[2] * a.z + f[3] * a.w + f[4] * b.x + f[5] * b.y +
                   f[6] * b.z + f[7] * b.w;
        }
    }
    acc = mv_warp_sum(acc);
    if (lane == 0) y[row] = acc;
}

/* Float weights of any row length / alignment. */
template <int T>
__global__ void __launch_bounds__(32 * MV_ROWS)
    matvec_f_scalar_kernel(wview w, const float *__restrict__ x, float *__restrict__ y) {
    int64_t row = (int64_t)blockIdx.x * MV_ROWS + (threadIdx.x >> 5);
    int lane = threadIdx.x & 31;
    if (row >= w.n_out) return;
    float acc = 0.f;
    for (int64_t k = lane; k < w.n_in; k += 32) acc += ld_elem<T>(w, row, k) * x[k];
    acc = mv_warp_sum(acc);
    if (lane == 0) y[row] = acc;
}

template <int T>
static void launch_matvec(cuda_backend *be, const wview &w, const float *x, const int8_t *xq,
                          const float *xd, float *y) {
    unsigned grid = (unsigned)((w.n_out + MV_ROWS - 1) / MV_ROWS);
    if constexpr (type_is_float(T)) {
        bool vec = w.n_in % 8 == 0 && ((uintptr_t)x & 15) == 0;
        if (vec)
            matvec_f_kernel<T><<<grid, 32 * MV_ROWS, 0, be->stream>>>(w, x, y);
        else
            matvec_f_scalar_kernel<T><<<grid, 32 * MV_ROWS, 0, be->stream>>>(w, x, y);
    } else {
        matvec_q_kernel<T><<<grid, 32 * MV_ROWS, 0, be->stream>>>(w, xq, xd, y);
    }
    CUDA_LAUNCHED(be, "matvec_kernel");
}

void cuda_matvec(cuda_backend *be, const chord_weight *w, const float *x, const int8_t *xq,
                 const float *xd, float *y) {
    wview v = wview_of(w);
    CUDA_TYPE_SWITCH(w->type, launch_matvec, cuda_fail(be, "matvec: unsupported type %d", w->type),
                     be, v, x, xq, xd, y);
}
