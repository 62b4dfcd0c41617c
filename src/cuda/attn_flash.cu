/* Tensor-core causal attention for prefill (flash-attention style: the scores never leave
 * the chip). Not bit-equal to the CPU backend: q.K and P.V are mma sums of half products
 * in the tensor core's order and the softmax runs online with exp2f, so results differ
 * from the exact kernels (attention.cu) by rounding only (test_gpu_ops bounds it). The
 * exact kernels stay the reference and serve short batches; CHORD_CUDA_ATTN picks.
 *
 * Block: 4 warps, FQ = 64 consecutive tokens of one q head (16 per warp), looping over
 * tiles of FK = 64 keys of the head's kv head, causal order, two tiles of K and V in
 * shared memory (cp.async; the next tile loads while this one is multiplied).
 *   S = Q K^T: Q fragments stay in registers (head_dim / 16 k-steps), K fragments by
 *     ldmatrix from [key][dim] rows, which is the mma's column-major B.
 *   online softmax per row in the log2 domain (scale folded into the exponent); a row's
 *     values sit in the 4 threads of a quad, so max and sum need two shuffles.
 *   O += P V: the S accumulators are already laid out as the A fragments of P (packed
 *     to half), V fragments by ldmatrix.trans from [key][dim] rows.
 * Keys past the last row's position are zero-filled (V too: 0 * garbage could be NaN)
 * and masked. */
#include <math.h>

#include "cuda_common.cuh"
#include "ptx.cuh"

namespace {

constexpr int FQ = 64;  /* tokens per block */
constexpr int FK = 64;  /* keys per tile */
constexpr int FT = 128; /* threads */
constexpr int FPAD = 8; /* halves of padding per smem row: ldmatrix phases conflict-free */

template <int HD> __host__ __device__ constexpr int f_ld() {
    return HD + FPAD;
}
template <int HD> __host__ __device__ constexpr size_t f_smem() {
    return (size_t)(FQ + 4 * FK) * f_ld<HD>() * sizeof(__half);
}

__device__ __forceinline__ uint32_t pack_h2(float a, float b) {
    const __half2 h = __floats2half2_rn(a, b);
    return *reinterpret_cast<const uint32_t *>(&h);
}

/* K and V rows [key0, key0 + FK) of one kv head into the tile buffers; keys >= kend are
 * zeros */
template <int HD>
__device__ __forceinline__ void f_load_kv(__half *ks, __half *vs, const __half *kc,
                                          const __half *vc, size_t kvd, int key0, int kend,
                                          int tid) {
    constexpr int CPR = HD / 8; /* 16-byte chunks per row */
#pragma unroll
    for (int i = 0; i < FK * CPR / FT; i++) {
        const int c = tid + i * FT, r = c / CPR, ch = c % CPR;
        const int key = key0 + r;
        const bool ok = key < kend;
        const size_t off = (size_t)(ok ? key : 0) * kvd + ch * 8;
        cp16(ks + r * f_ld<HD>() + ch * 8, kc + off, ok);
        cp16(vs + r * f_ld<HD>() + ch * 8, vc + off, ok);
    }
}

template <int HD>
__global__ void __launch_bounds__(FT)
    attn_flash_kernel(float *__restrict__ out, const float *__restrict__ q,
                      const __half *__restrict__ kc, const __half *__restrict__ vc, int nh,
                      int nkv, int m, int pos_first, float scale_log2) {
    constexpr int LD = f_ld<HD>(), KS = HD / 16, NO = HD / 8;
    extern __shared__ __align__(16) unsigned char f_sm[];
    __half *qs = reinterpret_cast<__half *>(f_sm);
    __half *kbuf = qs + FQ * LD; /* [2][FK][LD] */
    __half *vbuf = kbuf + 2 * FK * LD;

    const int tid = threadIdx.x, warp = tid / 32, lane = tid % 32;
    const int gid = lane / 4, tig = lane % 4;
    /* the longest rows (last tokens) first: they set the tail of the grid */
    const int qt = gridDim.x - 1 - blockIdx.x, h = blockIdx.y;
    const int t0 = qt * FQ;
    const int kvh = h / (nh / nkv);
    const size_t qd = (size_t)nh * HD, kvd = (size_t)nkv * HD;
    const int t_last = min(t0 + FQ, m) - 1;
    const int kend = pos_first + t_last + 1; /* keys any row of the block may see */
    const int n_tiles = (kend + FK - 1) / FK;
    const __half *kh = kc + (size_t)kvh * HD, *vh = vc + (size_t)kvh * HD;

    f_load_kv<HD>(kbuf, vbuf, kh, vh, kvd, 0, kend, tid);
    cp_commit();

    /* Q rows to half (rows past m are zeros) */
    for (int c = tid; c < FQ * HD / 4; c += FT) {
        const int r = c / (HD / 4), e = (c % (HD / 4)) * 4;
        float4 v = make_float4(0.f, 0.f, 0.f, 0.f);
        if (t0 + r < m)
            v = *reinterpret_cast<const float4 *>(q + (size_t)(t0 + r) * qd + h * HD + e);
        uint2 p;
        p.x = pack_h2(v.x, v.y);
        p.y = pack_h2(v.z, v.w);
        *reinterpret_cast<uint2 *>(qs + r * LD + e) = p;
    }
    __syncthreads();
    uint32_t qf[KS][4];
#pragma unroll
    for (int kk = 0; kk < KS; kk++)
        ldsm4(qf[kk], qs + (warp * 16 + (lane % 8) + 8 * ((lane / 8) % 2)) * LD + kk * 16 +
                          8 * (lane / 16));

    float o[NO][4];
#pragma unroll
    for (int i = 0; i < NO; i++)
        o[i][0] = o[i][1] = o[i][2] = o[i][3] = 0.f;
    float mx[2] = {-INFINITY, -INFINITY}, l[2] = {0.f, 0.f};
    const int pos_r0 = pos_first + t0 + warp * 16 + gid; /* position of row gid; +8: gid + 8 */

    for (int j = 0; j < n_tiles; j++) {
        const int buf = j & 1;
        if (j + 1 < n_tiles)
            f_load_kv<HD>(kbuf + (buf ^ 1) * FK * LD, vbuf + (buf ^ 1) * FK * LD, kh, vh, kvd,
                          (j + 1) * FK, kend, tid);
        cp_commit();
        cp_wait<1>();
        __syncthreads();
        const __half *ks = kbuf + buf * FK * LD, *vs = vbuf + buf * FK * LD;

        float s[FK / 8][4];
#pragma unroll
        for (int i = 0; i < FK / 8; i++)
            s[i][0] = s[i][1] = s[i][2] = s[i][3] = 0.f;
#pragma unroll
        for (int kk = 0; kk < KS; kk++)
#pragma unroll
            for (int np = 0; np < FK / 16; np++) {
                uint32_t b[4];
                ldsm4(b, ks + (np * 16 + (lane % 8) + 8 * (lane / 16)) * LD + kk * 16 +
                             8 * ((lane / 8) % 2));
                mma_h<__half>(s[2 * np], qf[kk], b[0], b[1]);
                mma_h<__half>(s[2 * np + 1], qf[kk], b[2], b[3]);
            }

        /* mask, running max, exponentials */
        const int key0 = j * FK;
        float tmax[2] = {-INFINITY, -INFINITY};
#pragma unroll
        for (int i = 0; i < FK / 8; i++)
#pragma unroll
            for (int e = 0; e < 4; e++) {
                const int key = key0 + i * 8 + 2 * tig + (e & 1);
                const int pos = pos_r0 + 8 * (e >> 1);
                s[i][e] = key <= pos ? s[i][e] * scale_log2 : -INFINITY;
                tmax[e >> 1] = fmaxf(tmax[e >> 1], s[i][e]);
            }
        float alpha[2];
#pragma unroll
        for (int r = 0; r < 2; r++) {
            tmax[r] = fmaxf(tmax[r], __shfl_xor_sync(0xffffffffu, tmax[r], 1));
            tmax[r] = fmaxf(tmax[r], __shfl_xor_sync(0xffffffffu, tmax[r], 2));
            const float mn = fmaxf(mx[r], tmax[r]);
            /* a row with no key yet keeps -inf: exp2(-inf - -inf) would be NaN */
            alpha[r] = mn == -INFINITY ? 1.f : exp2f(mx[r] - mn);
            mx[r] = mn;
        }
        float rs[2] = {0.f, 0.f};
#pragma unroll
        for (int i = 0; i < FK / 8; i++)
#pragma unroll
            for (int e = 0; e < 4; e++) {
                const float mr = mx[e >> 1];
                const float p = mr == -INFINITY ? 0.f : exp2f(s[i][e] - mr);
                s[i][e] = p;
                rs[e >> 1] += p;
            }
#pragma unroll
        for (int r = 0; r < 2; r++)
            l[r] = l[r] * alpha[r] + rs[r];
#pragma unroll
        for (int i = 0; i < NO; i++) {
            o[i][0] *= alpha[0];
            o[i][1] *= alpha[0];
            o[i][2] *= alpha[1];
            o[i][3] *= alpha[1];
        }

        /* O += P V */
#pragma unroll
        for (int kk = 0; kk < FK / 16; kk++) {
            uint32_t a[4];
            a[0] = pack_h2(s[2 * kk][0], s[2 * kk][1]);
            a[1] = pack_h2(s[2 * kk][2], s[2 * kk][3]);
            a[2] = pack_h2(s[2 * kk + 1][0], s[2 * kk + 1][1]);
            a[3] = pack_h2(s[2 * kk + 1][2], s[2 * kk + 1][3]);
#pragma unroll
            for (int np = 0; np < HD / 16; np++) {
                uint32_t b[4];
                ldsm4t(b, vs + (kk * 16 + (lane % 8) + 8 * ((lane / 8) % 2)) * LD + np * 16 +
                              8 * (lane / 16));
                mma_h<__half>(o[2 * np], a, b[0], b[1]);
                mma_h<__half>(o[2 * np + 1], a, b[2], b[3]);
            }
        }
        __syncthreads(); /* the buffer is refilled next iteration */
    }

#pragma unroll
    for (int r = 0; r < 2; r++) {
        l[r] += __shfl_xor_sync(0xffffffffu, l[r], 1);
        l[r] += __shfl_xor_sync(0xffffffffu, l[r], 2);
    }
#pragma unroll
    for (int r = 0; r < 2; r++) {
        const int t = t0 + warp * 16 + gid + 8 * r;
        if (t >= m) continue;
        const float inv = 1.f / l[r];
        float *op = out + (size_t)t * qd + h * HD + 2 * tig;
#pragma unroll
        for (int i = 0; i < NO; i++)
            *reinterpret_cast<float2 *>(op + i * 8) =
                make_float2(o[i][2 * r] * inv, o[i][2 * r + 1] * inv);
    }
}

} // namespace

void cuda_attn_flash_init(cuda_backend *be) {
    be->attn_flash_hd = 0;
    if (be->smem_per_block_optin < f_smem<128>()) {
        if (be->smem_per_block_optin >= f_smem<64>()) be->attn_flash_hd = 64;
        return;
    }
    if (cudaFuncSetAttribute(attn_flash_kernel<64>, cudaFuncAttributeMaxDynamicSharedMemorySize,
                             (int)f_smem<64>()) != cudaSuccess ||
        cudaFuncSetAttribute(attn_flash_kernel<128>,
                             cudaFuncAttributeMaxDynamicSharedMemorySize,
                             (int)f_smem<128>()) != cudaSuccess) {
        (void)cudaGetLastError();
        return;
    }
    be->attn_flash_hd = 128;
}

bool cuda_attn_flash_ok(const cuda_backend *be, const chord_attn_shape *s) {
    const int hd = s->head_dim;
    return (hd == 64 || hd == 128) && hd <= be->attn_flash_hd && s->n_head_kv > 0 &&
           s->n_head % s->n_head_kv == 0;
}

void cuda_attn_flash(cuda_backend *be, float *out, const float *q, const __half *kc,
                     const __half *vc, int m, int pos_first, const chord_attn_shape *s) {
    const dim3 grid((unsigned)((m + FQ - 1) / FQ), (unsigned)s->n_head);
    const float sl2 = s->scale * 1.4426950408889634f;
    if (s->head_dim == 64)
        attn_flash_kernel<64><<<grid, FT, f_smem<64>(), be->stream>>>(
            out, q, kc, vc, s->n_head, s->n_head_kv, m, pos_first, sl2);
    else
        attn_flash_kernel<128><<<grid, FT, f_smem<128>(), be->stream>>>(
            out, q, kc, vc, s->n_head, s->n_head_kv, m, pos_first, sl2);
    CUDA_LAUNCHED(be, "attn_flash_kernel");
}
