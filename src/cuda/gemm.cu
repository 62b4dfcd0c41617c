/* Prefill matmul (n > 1 tokens): y[t][o] = sum_i W[o][i] x[t][i].
 *
 * Quantized weights: int8 tensor cores (mma.sync m16n8k16 s8), the exact integer form of
 * what the CPU backend computes. The activations are the int8 ones the CPU uses (one
 * scale per 32 or 256); each 16-element chunk of a weight row is unpacked to int8 q with
 * w = scale * q - min (qi16), the integer dot of every chunk is exact and is scaled in
 * float: y += scale_w * d_x * sum(q_w q_x) - min_w * d_x * sum(q_x). 64x64 output tiles,
 * 4 warps of 32x32, K steps of 32.
 *
 * F16 / BF16 weights (n_in % 32 == 0): wmma 16x16x16 with f16 (bf16) operands and float
 * accumulators, 64x64 tiles, K steps of 32; the next step's global loads are issued
 * before the current step's products.
 *
 * F32 weights keep float precision: a SIMT float GEMM (also the fallback for float
 * types whose row length is not a multiple of 32). */
#include <mma.h>

#include "quant.cuh"

using namespace nvcuda;

#define GM 64
#define GN 64
#define GK 32
#define GPAD 8
#define GLD (GK + GPAD)
#define CLD (GN + 4)

template <typename E> __device__ __forceinline__ E to_e(float f);
template <> __device__ __forceinline__ __half to_e<__half>(float f) {
    return __float2half_rn(f);
}
template <> __device__ __forceinline__ __nv_bfloat16 to_e<__nv_bfloat16>(float f) {
    return __float2bfloat16_rn(f);
}

/* 16 floats -> 16 E at dst (32-byte aligned smem row piece). */
template <typename E> __device__ __forceinline__ void store16(E *dst, const float *v) {
    union {
        E e[16];
        uint4 u[2];
    } p;
#pragma unroll
    for (int j = 0; j < 16; j++)
        p.e[j] = to_e<E>(v[j]);
    uint4 *d = reinterpret_cast<uint4 *>(dst);
    d[0] = p.u[0];
    d[1] = p.u[1];
}

template <int T, typename E>
__global__ void __launch_bounds__(128)
    gemm_wmma_kernel(wview w, const float *__restrict__ x, float *__restrict__ y, int n) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ < 800
    __trap(); /* never launched: the backend requires compute capability 8.0 */
#else
    constexpr int AB_BYTES = 2 * GM * GLD * (int)sizeof(E);
    constexpr int C_BYTES = GM * CLD * (int)sizeof(float);
    __shared__ __align__(128) unsigned char smem[AB_BYTES > C_BYTES ? AB_BYTES : C_BYTES];
    E *As = reinterpret_cast<E *>(smem);         /* [GM][GLD] activations */
    E *Bs = As + GM * GLD;                       /* [GN][GLD] weights */
    float *Cs = reinterpret_cast<float *>(smem); /* [GM][CLD] epilogue */

    const int t0 = blockIdx.y * GM;
    const int64_t o0 = (int64_t)blockIdx.x * GN;
    const int tid = threadIdx.x, warp = tid >> 5;
    const int wm = warp >> 1, wn = warp & 1;
    const int lr = tid >> 1, lc = (tid & 1) * 16;
    const int t = t0 + lr;
    const int64_t o = o0 + lr;
    const bool t_ok = t < n, o_ok = o < w.n_out;

    wmma::fragment<wmma::accumulator, 16, 16, 16, float> acc[2][2];
#pragma unroll
    for (int i = 0; i < 2; i++)
#pragma unroll
        for (int j = 0; j < 2; j++)
            wmma::fill_fragment(acc[i][j], 0.0f);

    float va[16], vb[16];
    auto load = [&](int64_t k0) {
        if (t_ok) {
            const size_t off = (size_t)t * w.n_in + k0 + lc;
            const float4 *p = reinterpret_cast<const float4 *>(x + off);
#pragma unroll
            for (int i = 0; i < 4; i++) {
                float4 f = __ldg(p + i);
                va[4 * i] = f.x, va[4 * i + 1] = f.y, va[4 * i + 2] = f.z, va[4 * i + 3] = f.w;
            }
        } else {
#pragma unroll
            for (int i = 0; i < 16; i++)
                va[i] = 0.f;
        }
        if (o_ok) {
            dq16<T>(w, o, k0 + lc, vb);
        } else {
#pragma unroll
            for (int i = 0; i < 16; i++)
                vb[i] = 0.f;
        }
    };

    load(0);
    for (int64_t k0 = 0; k0 < w.n_in; k0 += GK) {
        store16<E>(As + lr * GLD + lc, va);
        store16<E>(Bs + lr * GLD + lc, vb);
        __syncthreads();
        if (k0 + GK < w.n_in) load(k0 + GK);
#pragma unroll
        for (int kk = 0; kk < GK; kk += 16) {
            wmma::fragment<wmma::matrix_a, 16, 16, 16, E, wmma::row_major> a[2];
            wmma::fragment<wmma::matrix_b, 16, 16, 16, E, wmma::col_major> b[2];
#pragma unroll
            for (int i = 0; i < 2; i++)
                wmma::load_matrix_sync(a[i], As + (wm * 32 + 16 * i) * GLD + kk, GLD);
#pragma unroll
            for (int j = 0; j < 2; j++)
                wmma::load_matrix_sync(b[j], Bs + (wn * 32 + 16 * j) * GLD + kk, GLD);
#pragma unroll
            for (int i = 0; i < 2; i++)
#pragma unroll
                for (int j = 0; j < 2; j++)
                    wmma::mma_sync(acc[i][j], a[i], b[j], acc[i][j]);
        }
        __syncthreads();
    }
#pragma unroll
    for (int i = 0; i < 2; i++)
#pragma unroll
        for (int j = 0; j < 2; j++)
            wmma::store_matrix_sync(Cs + (wm * 32 + 16 * i) * CLD + wn * 32 + 16 * j, acc[i][j],
                                    CLD, wmma::mem_row_major);
    __syncthreads();
    for (int idx = tid; idx < GM * GN; idx += 128) {
        int r = idx / GN, c = idx % GN;
        int tt = t0 + r;
        int64_t oo = o0 + c;
        if (tt < n && oo < w.n_out) y[(size_t)tt * w.n_out + oo] = Cs[r * CLD + c];
    }
#endif
}

/* ------------------------------------------------------- int8 (quantized) */

#define QM 64
#define QN 64

__device__ __forceinline__ void mma_s8_16816(int c[4], uint32_t a0, uint32_t a1, uint32_t b0) {
    asm volatile(
        "mma.sync.aligned.m16n8k16.row.col.s32.s8.s8.s32 {%0,%1,%2,%3}, {%4,%5}, {%6}, "
        "{%7,%8,%9,%10};"
        : "=r"(c[0]), "=r"(c[1]), "=r"(c[2]), "=r"(c[3])
        : "r"(a0), "r"(a1), "r"(b0), "r"(0), "r"(0), "r"(0), "r"(0));
}

template <int T>
__global__ void __launch_bounds__(128)
    gemm_q8_kernel(wview w, xact xa, float *__restrict__ y, int n) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ < 800
    __trap(); /* never launched: the backend requires compute capability 8.0 */
#else
    constexpr int QB = act_block(T);
    constexpr bool HAS_MIN = T == CHORD_TYPE_Q4_1 || T == CHORD_TYPE_Q5_1 ||
                             T == CHORD_TYPE_Q2_K || T == CHORD_TYPE_Q4_K ||
                             T == CHORD_TYPE_Q5_K;
    __shared__ __align__(16) uint32_t As[2][QM][4]; /* [chunk][token][16 int8] */
    __shared__ __align__(16) uint32_t Bs[2][QN][4]; /* [chunk][output][16 int8] */
    __shared__ float sw[2][QN], mw[2][QN], dx[2][QM], xs[2][QM];

    const int t0 = blockIdx.y * QM;
    const int64_t o0 = (int64_t)blockIdx.x * QN;
    const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
    const int wm = warp >> 1, wn = warp & 1, gid = lane >> 2, tig = lane & 3;
    const int lr = tid >> 1, ch = tid & 1;
    const int t = t0 + lr;
    const int64_t o = o0 + lr;

    float acc[2][4][4];
#pragma unroll
    for (int a = 0; a < 2; a++)
#pragma unroll
        for (int b = 0; b < 4; b++)
#pragma unroll
            for (int c = 0; c < 4; c++)
                acc[a][b][c] = 0.f;

    for (int64_t k0 = 0; k0 < w.n_in; k0 += 32) {
        const int64_t kc = k0 + 16 * ch;
        if (t < n) {
            const size_t off = (size_t)t * w.n_in + kc;
            uint4 v = __ldg(reinterpret_cast<const uint4 *>(xa.q + off));
            *reinterpret_cast<uint4 *>(&As[ch][lr][0]) = v;
            const float d = __ldg(xa.d + off / QB);
            dx[ch][lr] = d;
            /* min term: d * sum q per 16 (K-quants); the block's s on its first chunk (32) */
            xs[ch][lr] = !HAS_MIN   ? 0.f
                         : QB == 32 ? (ch == 0 ? __ldg(xa.s + off / 32) : 0.f)
                                    : d * (float)xa.bs[off / 16];
        } else {
            *reinterpret_cast<uint4 *>(&As[ch][lr][0]) = make_uint4(0, 0, 0, 0);
            dx[ch][lr] = 0.f;
            xs[ch][lr] = 0.f;
        }
        if (o < w.n_out) {
            q16 r = qi16<T>(w, o, kc);
            *reinterpret_cast<uint4 *>(&Bs[ch][lr][0]) = r.q;
            sw[ch][lr] = r.scale;
            mw[ch][lr] = r.min;
        } else {
            *reinterpret_cast<uint4 *>(&Bs[ch][lr][0]) = make_uint4(0, 0, 0, 0);
            sw[ch][lr] = 0.f;
            mw[ch][lr] = 0.f;
        }
        __syncthreads();
#pragma unroll
        for (int c = 0; c < 2; c++) {
            uint32_t a[2][2];
            float dr[2][2], xr[2][2];
#pragma unroll
            for (int mi = 0; mi < 2; mi++) {
                const int r = wm * 32 + mi * 16 + gid;
                a[mi][0] = As[c][r][tig];
                a[mi][1] = As[c][r + 8][tig];
                dr[mi][0] = dx[c][r], dr[mi][1] = dx[c][r + 8];
                xr[mi][0] = xs[c][r], xr[mi][1] = xs[c][r + 8];
            }
#pragma unroll
            for (int ni = 0; ni < 4; ni++) {
                const int col = wn * 32 + ni * 8;
                const uint32_t b = Bs[c][col + gid][tig];
                const float s0 = sw[c][col + 2 * tig], s1 = sw[c][col + 2 * tig + 1];
                const float m0 = mw[c][col + 2 * tig], m1 = mw[c][col + 2 * tig + 1];
#pragma unroll
                for (int mi = 0; mi < 2; mi++) {
                    int cc[4];
                    mma_s8_16816(cc, a[mi][0], a[mi][1], b);
                    acc[mi][ni][0] += s0 * (dr[mi][0] * (float)cc[0]);
                    acc[mi][ni][1] += s1 * (dr[mi][0] * (float)cc[1]);
                    acc[mi][ni][2] += s0 * (dr[mi][1] * (float)cc[2]);
                    acc[mi][ni][3] += s1 * (dr[mi][1] * (float)cc[3]);
                    if (HAS_MIN) {
                        acc[mi][ni][0] -= m0 * xr[mi][0];
                        acc[mi][ni][1] -= m1 * xr[mi][0];
                        acc[mi][ni][2] -= m0 * xr[mi][1];
                        acc[mi][ni][3] -= m1 * xr[mi][1];
                    }
                }
            }
        }
        __syncthreads();
    }
#pragma unroll
    for (int mi = 0; mi < 2; mi++) {
#pragma unroll
        for (int ni = 0; ni < 4; ni++) {
            const int r = t0 + wm * 32 + mi * 16 + gid;
            const int64_t col = o0 + wn * 32 + ni * 8 + 2 * tig;
#pragma unroll
            for (int h = 0; h < 2; h++) {
                const int rr = r + 8 * h;
                if (rr >= n) continue;
                if (col < w.n_out) y[(size_t)rr * w.n_out + col] = acc[mi][ni][2 * h];
                if (col + 1 < w.n_out)
                    y[(size_t)rr * w.n_out + col + 1] = acc[mi][ni][2 * h + 1];
            }
        }
    }
#endif
}

/* SIMT float GEMM: 64x64 tiles, 256 threads with 4x4 outputs each, K steps of 16. */
template <int T>
__global__ void __launch_bounds__(256)
    gemm_f32_kernel(wview w, const float *__restrict__ x, float *__restrict__ y, int n) {
    __shared__ float As[16][GM + 4];
    __shared__ float Bs[16][GN + 4];
    const int t0 = blockIdx.y * GM;
    const int64_t o0 = (int64_t)blockIdx.x * GN;
    const int tid = threadIdx.x, tx = tid & 15, ty = tid >> 4;
    float acc[4][4] = {};
    for (int64_t k0 = 0; k0 < w.n_in; k0 += 16) {
#pragma unroll
        for (int r = 0; r < 4; r++) {
            int idx = tid + 256 * r, rr = idx >> 4, kk = idx & 15;
            int64_t k = k0 + kk;
            int tt = t0 + rr;
            int64_t oo = o0 + rr;
            As[kk][rr] = (tt < n && k < w.n_in) ? x[(size_t)tt * w.n_in + k] : 0.f;
            Bs[kk][rr] = (oo < w.n_out && k < w.n_in) ? ld_elem<T>(w, oo, k) : 0.f;
        }
        __syncthreads();
#pragma unroll
        for (int kk = 0; kk < 16; kk++) {
            float a[4], b[4];
#pragma unroll
            for (int i = 0; i < 4; i++)
                a[i] = As[kk][ty * 4 + i], b[i] = Bs[kk][tx * 4 + i];
#pragma unroll
            for (int i = 0; i < 4; i++)
#pragma unroll
                for (int j = 0; j < 4; j++)
                    acc[i][j] += a[i] * b[j];
        }
        __syncthreads();
    }
#pragma unroll
    for (int i = 0; i < 4; i++) {
        int tt = t0 + ty * 4 + i;
        if (tt >= n) continue;
#pragma unroll
        for (int j = 0; j < 4; j++) {
            int64_t oo = o0 + tx * 4 + j;
            if (oo < w.n_out) y[(size_t)tt * w.n_out + oo] = acc[i][j];
        }
    }
}

template <int T>
static void launch_gemm(cuda_backend *be, const wview &w, const float *x, const qact *xa,
                        float *y, int n) {
    dim3 grid((unsigned)((w.n_out + GN - 1) / GN), (unsigned)((n + GM - 1) / GM));
    bool tc_ok = w.n_in % GK == 0 && ((uintptr_t)x & 15) == 0;
    if constexpr (type_is_float(T)) {
        if (T != CHORD_TYPE_F32 && tc_ok) {
            if constexpr (T == CHORD_TYPE_BF16)
                gemm_wmma_kernel<T, __nv_bfloat16><<<grid, 128, 0, be->stream>>>(w, x, y, n);
            else
                gemm_wmma_kernel<T, __half><<<grid, 128, 0, be->stream>>>(w, x, y, n);
        } else {
            gemm_f32_kernel<T><<<grid, 256, 0, be->stream>>>(w, x, y, n);
        }
    } else {
        if (!xa || xa->qb != act_block(T)) {
            cuda_fail(be, "matmul: activations not quantized for this type");
            return;
        }
        xact a = {xa->q, xa->d, xa->bs, xa->s};
        gemm_q8_kernel<T><<<grid, 128, 0, be->stream>>>(w, a, y, n);
    }
    CUDA_LAUNCHED(be, "gemm_kernel");
}

void cuda_gemm(cuda_backend *be, const chord_weight *w, const float *x, const qact *xa,
               float *y, int n) {
    if (n <= 0) return;
    if ((n + GM - 1) / GM > 65535) {
        cuda_fail(be, "matmul: %d tokens in one call is too many", n);
        return;
    }
    wview v = wview_of(w);
    CUDA_TYPE_SWITCH(w->type, launch_gemm,
                     cuda_fail(be, "matmul: unsupported type %d", w->type), be, v, x, xa, y, n);
}
