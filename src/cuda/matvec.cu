/* Decode matvec (one token): y[o] = sum_i W[o][i] x[i], fused with dequantization.
 *
 * One warp per output row, 4 rows per 128-thread block. Each lane walks the row in
 * 16-byte units of quant bytes (coalesced across the warp, loaded past L1 so the
 * activations stay cached). A lane first issues the loads of several units (quant
 * bytes and scales), then does their arithmetic, so several loads per lane are in flight;
 * short rows give each warp several rows so that every lane still has ~4 loads going.
 * Quantized types dot against the activations quantized to int8 exactly as the CPU
 * backend does (cuda_quantize_act), with dp4a; float types dot against float x. */
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

/* One warp per QB elements (QB = 32: one per lane; 256: 8 per lane). As the CPU
 * backend: d = amax / 127, q = rint(x * (127 / amax)), each step correctly rounded;
 * bs = sum of each 16 q. QB = 32 then stores d rounded to half and s = half(d * sum),
 * as llama.cpp's Q8_0 / Q8_1 (its golden logits match bit for bit on Q4_0 that way). */
template <int QB>
__global__ void quantize_act_kernel(int8_t *__restrict__ xq, float *__restrict__ xd,
                                    int16_t *__restrict__ bs, float *__restrict__ xs,
                                    const float *__restrict__ x, int64_t n_blocks) {
    constexpr int PER = QB / 32;
    int64_t b = ((int64_t)blockIdx.x * blockDim.x + threadIdx.x) >> 5;
    int lane = threadIdx.x & 31;
    pdl_trigger();
    if (b >= n_blocks) return; /* uniform across the warp */
    pdl_wait();
    const float *xb = x + b * QB + lane * PER;
    float v[PER];
    float a = 0.f;
#pragma unroll
    for (int i = 0; i < PER; i++) {
        v[i] = xb[i];
        a = fmaxf(a, fabsf(v[i]));
    }
#pragma unroll
    for (int o = 16; o > 0; o >>= 1)
        a = fmaxf(a, __shfl_xor_sync(0xffffffffu, a, o));
    const float id = a > 0.f ? __fdiv_rn(127.0f, a) : 0.f;
    int sum = 0;
    int8_t q[PER];
#pragma unroll
    for (int i = 0; i < PER; i++) {
        int qi = __float2int_rn(__fmul_rn(v[i], id));
        q[i] = (int8_t)qi;
        sum += qi;
    }
    const float d = __fdiv_rn(a, 127.0f);
    if constexpr (PER == 1) {
        xq[b * QB + lane] = q[0];
        /* sums of lanes 0..15 and 16..31, then of all 32 */
#pragma unroll
        for (int o = 8; o > 0; o >>= 1)
            sum += __shfl_xor_sync(0xffffffffu, sum, o);
        if ((lane & 15) == 0) bs[b * 2 + (lane >> 4)] = (int16_t)sum;
        sum += __shfl_xor_sync(0xffffffffu, sum, 16);
        if (lane == 0) {
            xd[b] = __half2float(__float2half_rn(d));
            xs[b] = __half2float(__float2half_rn(__fmul_rn(d, (float)sum)));
        }
    } else {
        uint2 pk;
        pk.x = (uint32_t)(uint8_t)q[0] | (uint32_t)(uint8_t)q[1] << 8 |
               (uint32_t)(uint8_t)q[2] << 16 | (uint32_t)(uint8_t)q[3] << 24;
        pk.y = (uint32_t)(uint8_t)q[4] | (uint32_t)(uint8_t)q[5] << 8 |
               (uint32_t)(uint8_t)q[6] << 16 | (uint32_t)(uint8_t)q[7] << 24;
        *reinterpret_cast<uint2 *>(xq + b * QB + lane * PER) = pk;
        sum += __shfl_xor_sync(0xffffffffu, sum, 1); /* two lanes hold 16 */
        if ((lane & 1) == 0) bs[b * 16 + (lane >> 1)] = (int16_t)sum;
        if (lane == 0) xd[b] = d;
    }
}

bool cuda_quantize_act(cuda_backend *be, const float *x, int64_t n_in, int n, int qb,
                       qact *out) {
    if (n_in % qb != 0) {
        cuda_fail(be, "matmul: row length %lld is not a multiple of %d", (long long)n_in, qb);
        return false;
    }
    const size_t total = (size_t)n * (size_t)n_in;
    const size_t qbytes = (total + 15) & ~(size_t)15;
    const size_t dbytes = ((total / qb) * sizeof(float) + 15) & ~(size_t)15;
    const size_t sbytes = qb == 32 ? dbytes : 0;
    const size_t bbytes = (total / 16) * sizeof(int16_t);
    uint8_t *p =
        (uint8_t *)cuda_scratch_get(be, CUDA_SCRATCH_XQ, qbytes + dbytes + sbytes + bbytes);
    if (!p) return false;
    out->q = (const int8_t *)p;
    out->d = (const float *)(p + qbytes);
    out->s = qb == 32 ? (const float *)(p + qbytes + dbytes) : NULL;
    out->bs = (const int16_t *)(p + qbytes + dbytes + sbytes);
    out->qb = qb;
    const int64_t n_blocks = (int64_t)(total / qb);
    const int threads = 256;
    const int64_t grid = (n_blocks * 32 + threads - 1) / threads;
    cudaError_t e;
    if (qb == 32)
        e = launch_pdl(be, quantize_act_kernel<32>, dim3((unsigned)grid), dim3(threads),
                       (int8_t *)out->q, (float *)out->d, (int16_t *)out->bs, (float *)out->s,
                       x, n_blocks);
    else
        e = launch_pdl(be, quantize_act_kernel<256>, dim3((unsigned)grid), dim3(threads),
                       (int8_t *)out->q, (float *)out->d, (int16_t *)out->bs, (float *)NULL, x,
                       n_blocks);
    return CUDA_CHECK(be, e) && CUDA_LAUNCHED(be, "quantize_act_kernel");
}

/* ------------------------------------------------------------ kernels */

/* Each warp: R consecutive rows, U units per row in flight per lane (R * U loads). */
template <int T, int R, int U>
__global__ void __launch_bounds__(32 * MV_ROWS)
    matvec_q_kernel(wview w, xact xa, float *__restrict__ y) {
    pdl_trigger();
    const int64_t row0 = ((int64_t)blockIdx.x * MV_ROWS + (threadIdx.x >> 5)) * R;
    const int lane = threadIdx.x & 31;
    if (row0 >= w.n_out) return;
    const int n_units = (int)w.nb * units_per_block(T);
    float acc[R];
#pragma unroll
    for (int r = 0; r < R; r++)
        acc[r] = 0.f;
    for (int base = lane; base < n_units; base += 32 * U) {
        uraw raw[R][U];
#pragma unroll
        for (int r = 0; r < R; r++)
#pragma unroll
            for (int i = 0; i < U; i++)
                if (row0 + r < w.n_out && base + 32 * i < n_units)
                    raw[r][i] = unit_load<T>(w, row0 + r, base + 32 * i);
        pdl_wait(); /* x comes from the previous kernel */
#pragma unroll
        for (int r = 0; r < R; r++)
#pragma unroll
            for (int i = 0; i < U; i++)
                if (row0 + r < w.n_out && base + 32 * i < n_units)
                    acc[r] += unit_dot<T>(raw[r][i], base + 32 * i, xa);
    }
    pdl_wait();
#pragma unroll
    for (int r = 0; r < R; r++) {
        float v = mv_warp_sum(acc[r]);
        if (lane == 0 && row0 + r < w.n_out) y[row0 + r] = v;
    }
}

/* Float weights, 16 bytes (4 or 8 elements) per unit; needs n_in % 8 == 0. */
template <int T>
__global__ void __launch_bounds__(32 * MV_ROWS)
    matvec_f_kernel(wview w, const float *__restrict__ x, float *__restrict__ y) {
    pdl_trigger();
    int64_t row = (int64_t)blockIdx.x * MV_ROWS + (threadIdx.x >> 5);
    int lane = threadIdx.x & 31;
    if (row >= w.n_out) return;
    constexpr int EPU = T == CHORD_TYPE_F32 ? 4 : 8;
    constexpr int ESZ = T == CHORD_TYPE_F32 ? 4 : 2;
    const int n_units = (int)(w.n_in / EPU);
    const uint8_t *rp = w.q + (size_t)row * w.n_in * ESZ;
    const float4 *x4 = reinterpret_cast<const float4 *>(x);
    float acc = 0.f;
    for (int base = lane; base < n_units; base += 32 * MV_UF) {
        uint4 v[MV_UF];
#pragma unroll
        for (int i = 0; i < MV_UF; i++)
            if (base + 32 * i < n_units) v[i] = ld16_stream(rp + 16 * (size_t)(base + 32 * i));
        pdl_wait();
#pragma unroll
        for (int i = 0; i < MV_UF; i++) {
            const int u = base + 32 * i;
            if (u >= n_units) break;
            if constexpr (T == CHORD_TYPE_F32) {
                float4 a = __ldg(x4 + u);
                acc += __uint_as_float(v[i].x) * a.x + __uint_as_float(v[i].y) * a.y +
                       __uint_as_float(v[i].z) * a.z + __uint_as_float(v[i].w) * a.w;
            } else {
                float4 a = __ldg(x4 + 2 * u), b = __ldg(x4 + 2 * u + 1);
                float f[8];
                uint32_t wd[4] = {v[i].x, v[i].y, v[i].z, v[i].w};
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
                acc += f[0] * a.x + f[1] * a.y + f[2] * a.z + f[3] * a.w + f[4] * b.x +
                       f[5] * b.y + f[6] * b.z + f[7] * b.w;
            }
        }
    }
    pdl_wait();
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
    for (int64_t k = lane; k < w.n_in; k += 32)
        acc += ld_elem<T>(w, row, k) * x[k];
    acc = mv_warp_sum(acc);
    if (lane == 0) y[row] = acc;
}

template <int T>
static void launch_matvec(cuda_backend *be, const wview &w, const float *x, const qact *xa,
                          float *y) {
    unsigned grid = (unsigned)((w.n_out + MV_ROWS - 1) / MV_ROWS);
    if constexpr (type_is_float(T)) {
        bool vec = w.n_in % 8 == 0 && ((uintptr_t)x & 15) == 0;
        if (vec)
            CUDA_CHECK(be, launch_pdl(be, matvec_f_kernel<T>, dim3(grid), dim3(32 * MV_ROWS), w,
                                      x, y));
        else
            matvec_f_scalar_kernel<T><<<grid, 32 * MV_ROWS, 0, be->stream>>>(w, x, y);
    } else {
        if (!xa || xa->qb != act_block(T)) {
            cuda_fail(be, "matvec: activations not quantized for this type");
            return;
        }
        xact a = {xa->q, xa->d, xa->bs, xa->s};
        /* enough loads in flight per lane whatever the row length */
        const int64_t per_lane = (w.nb * units_per_block(T) + 31) / 32;
        const int64_t nr = w.n_out;
        const dim3 blk(32 * MV_ROWS);
        cudaError_t e;
        if (per_lane <= 1)
            e = launch_pdl(be, matvec_q_kernel<T, 4, 1>, dim3((unsigned)((nr + 15) / 16)), blk,
                           w, a, y);
        else if (per_lane <= 2)
            e = launch_pdl(be, matvec_q_kernel<T, 2, 2>, dim3((unsigned)((nr + 7) / 8)), blk, w,
                           a, y);
        else
            e = launch_pdl(be, matvec_q_kernel<T, 1, 4>, dim3(grid), blk, w, a, y);
        CUDA_CHECK(be, e);
    }
    CUDA_LAUNCHED(be, "matvec_kernel");
}

void cuda_matvec(cuda_backend *be, const chord_weight *w, const float *x, const qact *xa,
                 float *y) {
    wview v = wview_of(w);
    CUDA_TYPE_SWITCH(w->type, launch_matvec,
                     cuda_fail(be, "matvec: unsupported type %d", w->type), be, v, x, xa, y);
}
