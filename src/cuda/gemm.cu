/* Prefill matmul (n > 1 tokens): y[t][o] = sum_i W[o][i] x[t][i].
 *
 * Quantized weights: int8 tensor cores (mma.sync m16n8k16 s8), the exact integer form of
 * what the CPU backend computes. The activations are the int8 ones the CPU uses (one
 * scale per 32 or 256); each 16-element chunk of a weight row is unpacked to int8 q with
 * w = scale * q - min (qi16), the integer dot of every chunk is exact and is scaled in
 * float: y += scale_w * d_x * sum(q_w q_x) - min_w * d_x * sum(q_x). Where both
 * 16-chunks of a 32-step share one weight scale (32-blocks, Q4_K / Q5_K sub-blocks) the
 * two integer dots are added in the tensor core first (exact). BM x 128 output tiles.
 *
 * F16 / BF16 weights (n_in % 32 == 0): mma.sync m16n8k16 with f16 (bf16) operands and
 * float accumulators, same tiling.
 *
 * F32 weights keep float precision: a SIMT float GEMM (also the fallback for float
 * types whose row length is not a multiple of 32). */
#include <stdlib.h>

#include "gemm_pipe.cuh"
#include "mma_tile.cuh"
#include "ptx.cuh"
#include "quant.cuh"

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

/* ------------------------------------------------------- int8 (quantized) */

/* Tiles: BM tokens x 128 outputs, 256 threads (8 warps, 2 along tokens x 4 along
 * outputs, each (BM/2) x 32), K steps of 32 (two 16-element chunks), two shared-memory
 * stages: the next step's loads (and weight decoding) are issued before the current
 * step's products, one barrier per step. BM (32, 64, 128) is chosen to fill the GPU. */
#define QN 128
#define QT 256

__device__ __forceinline__ void mma_s8_16816(int c[4], uint32_t a0, uint32_t a1, uint32_t b0) {
    asm volatile(
        "mma.sync.aligned.m16n8k16.row.col.s32.s8.s8.s32 {%0,%1,%2,%3}, {%4,%5}, {%6}, "
        "{%7,%8,%9,%10};"
        : "=r"(c[0]), "=r"(c[1]), "=r"(c[2]), "=r"(c[3])
        : "r"(a0), "r"(a1), "r"(b0), "r"(0), "r"(0), "r"(0), "r"(0));
}

/* exact int -> float for |i| < 2^22 with an integer add and a float subtract (the
 * conversion instruction runs at a quarter of the float rate) */
__device__ __forceinline__ float i2f_small(int i) {
    return __int_as_float(i + 0x4B400000) - 12582912.0f;
}

template <int T> struct q8traits {
    static constexpr bool HAS_MIN = T == CHORD_TYPE_Q4_1 || T == CHORD_TYPE_Q5_1 ||
                                    T == CHORD_TYPE_Q2_K || T == CHORD_TYPE_Q4_K ||
                                    T == CHORD_TYPE_Q5_K;
    /* one weight scale for both 16-chunks of a 32-step: the two integer dots are added
     * (exactly, in the tensor core) before the float scaling */
    static constexpr bool MERGE = T == CHORD_TYPE_Q4_0 || T == CHORD_TYPE_Q4_1 ||
                                  T == CHORD_TYPE_Q5_0 || T == CHORD_TYPE_Q5_1 ||
                                  T == CHORD_TYPE_Q8_0 || T == CHORD_TYPE_Q4_K ||
                                  T == CHORD_TYPE_Q5_K;
};

template <int T, int BM>
__global__ void __launch_bounds__(QT, 2)
    gemm_q8_kernel(wview w, xact xa, float *__restrict__ y, int n) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ < 800
    __trap(); /* never launched: the backend requires compute capability 8.0 */
#else
    constexpr int QB = act_block(T);
    constexpr bool HAS_MIN = q8traits<T>::HAS_MIN, MERGE = q8traits<T>::MERGE;
    constexpr int MI = BM / 32;                        /* 16-row fragments per warp */
    __shared__ __align__(16) uint32_t As[2][2][BM][4]; /* [stage][chunk][token][16 int8] */
    __shared__ __align__(16) uint32_t Bs[2][2][QN][4]; /* [stage][chunk][output][16 int8] */
    __shared__ float sw[2][2][QN], mw[2][2][QN], dx[2][2][BM], xs[2][2][BM];

    const int t0 = blockIdx.y * BM;
    const int64_t o0 = (int64_t)blockIdx.x * QN;
    const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
    const int wm = warp >> 2, wn = warp & 3, gid = lane >> 2, tig = lane & 3;
    const int lr = tid >> 1, ch = tid & 1;
    const int t = t0 + lr;
    const int64_t o = o0 + lr;
    const bool a_thread = lr < BM, t_ok = a_thread && t < n, o_ok = o < w.n_out;

    float acc[MI][4][4];
    mma_zero_acc<MI>(acc);

    /* prefetch registers */
    uint4 pa = make_uint4(0, 0, 0, 0);
    float pd = 0.f, ps = 0.f;
    q16 pw;
    pw.q = make_uint4(0, 0, 0, 0);
    pw.scale = 0.f, pw.min = 0.f;
    auto load = [&](int64_t k0) {
        const int64_t kc = k0 + 16 * ch;
        if (t_ok) {
            const size_t off = (size_t)t * w.n_in + kc;
            pa = __ldg(reinterpret_cast<const uint4 *>(xa.q + off));
            pd = __ldg(xa.d + off / QB);
            ps = !HAS_MIN   ? 0.f
                 : QB == 32 ? (ch == 0 ? __ldg(xa.s + off / 32) : 0.f)
                            : pd * (float)__ldg(xa.bs + off / 16);
        }
        if (o_ok) pw = qi16<T>(w, o, kc);
    };
    auto store = [&](int st) {
        if (a_thread) {
            *reinterpret_cast<uint4 *>(&As[st][ch][lr][0]) = pa;
            dx[st][ch][lr] = pd;
            xs[st][ch][lr] = ps;
        }
        *reinterpret_cast<uint4 *>(&Bs[st][ch][lr][0]) = pw.q;
        sw[st][ch][lr] = pw.scale;
        mw[st][ch][lr] = pw.min;
    };

    load(0);
    store(0);
    __syncthreads();
    const int64_t nk = w.n_in / 32;
    for (int64_t ks = 0; ks < nk; ks++) {
        const int st = (int)(ks & 1);
        if (ks + 1 < nk) load((ks + 1) * 32);
        if (MERGE) {
            uint32_t a[MI][2][2];
            float dr[MI][2], xr[MI][2];
#pragma unroll
            for (int mi = 0; mi < MI; mi++) {
                const int r = wm * (BM / 2) + mi * 16 + gid;
#pragma unroll
                for (int c = 0; c < 2; c++) {
                    a[mi][c][0] = As[st][c][r][tig];
                    a[mi][c][1] = As[st][c][r + 8][tig];
                }
                dr[mi][0] = dx[st][0][r], dr[mi][1] = dx[st][0][r + 8];
                if (HAS_MIN) {
                    xr[mi][0] = xs[st][0][r] + xs[st][1][r];
                    xr[mi][1] = xs[st][0][r + 8] + xs[st][1][r + 8];
                }
            }
#pragma unroll
            for (int ni = 0; ni < 4; ni++) {
                const int col = wn * 32 + ni * 8;
                const uint32_t b0 = Bs[st][0][col + gid][tig], b1 = Bs[st][1][col + gid][tig];
                const float s0 = sw[st][0][col + 2 * tig], s1 = sw[st][0][col + 2 * tig + 1];
                float m0 = 0.f, m1 = 0.f;
                if (HAS_MIN) m0 = mw[st][0][col + 2 * tig], m1 = mw[st][0][col + 2 * tig + 1];
#pragma unroll
                for (int mi = 0; mi < MI; mi++) {
                    int cc[4];
                    mma_s8_16816(cc, a[mi][0][0], a[mi][0][1], b0);
                    mma_s8_acc(cc, a[mi][1][0], a[mi][1][1], b1);
                    acc[mi][ni][0] += s0 * (dr[mi][0] * i2f_small(cc[0]));
                    acc[mi][ni][1] += s1 * (dr[mi][0] * i2f_small(cc[1]));
                    acc[mi][ni][2] += s0 * (dr[mi][1] * i2f_small(cc[2]));
                    acc[mi][ni][3] += s1 * (dr[mi][1] * i2f_small(cc[3]));
                    if (HAS_MIN) {
                        acc[mi][ni][0] -= m0 * xr[mi][0];
                        acc[mi][ni][1] -= m1 * xr[mi][0];
                        acc[mi][ni][2] -= m0 * xr[mi][1];
                        acc[mi][ni][3] -= m1 * xr[mi][1];
                    }
                }
            }
        } else {
#pragma unroll
            for (int c = 0; c < 2; c++) {
                uint32_t a[MI][2];
                float dr[MI][2], xr[MI][2];
#pragma unroll
                for (int mi = 0; mi < MI; mi++) {
                    const int r = wm * (BM / 2) + mi * 16 + gid;
                    a[mi][0] = As[st][c][r][tig];
                    a[mi][1] = As[st][c][r + 8][tig];
                    dr[mi][0] = dx[st][c][r], dr[mi][1] = dx[st][c][r + 8];
                    if (HAS_MIN) xr[mi][0] = xs[st][c][r], xr[mi][1] = xs[st][c][r + 8];
                }
#pragma unroll
                for (int ni = 0; ni < 4; ni++) {
                    const int col = wn * 32 + ni * 8;
                    const uint32_t b = Bs[st][c][col + gid][tig];
                    const float s0 = sw[st][c][col + 2 * tig],
                                s1 = sw[st][c][col + 2 * tig + 1];
                    float m0 = 0.f, m1 = 0.f;
                    if (HAS_MIN)
                        m0 = mw[st][c][col + 2 * tig], m1 = mw[st][c][col + 2 * tig + 1];
#pragma unroll
                    for (int mi = 0; mi < MI; mi++) {
                        int cc[4];
                        mma_s8_16816(cc, a[mi][0], a[mi][1], b);
                        acc[mi][ni][0] += s0 * (dr[mi][0] * i2f_small(cc[0]));
                        acc[mi][ni][1] += s1 * (dr[mi][0] * i2f_small(cc[1]));
                        acc[mi][ni][2] += s0 * (dr[mi][1] * i2f_small(cc[2]));
                        acc[mi][ni][3] += s1 * (dr[mi][1] * i2f_small(cc[3]));
                        if (HAS_MIN) {
                            acc[mi][ni][0] -= m0 * xr[mi][0];
                            acc[mi][ni][1] -= m1 * xr[mi][0];
                            acc[mi][ni][2] -= m0 * xr[mi][1];
                            acc[mi][ni][3] -= m1 * xr[mi][1];
                        }
                    }
                }
            }
        }
        if (ks + 1 < nk) store(st ^ 1);
        __syncthreads();
    }
    mma_store_acc<MI, BM>(y, w.n_out, n, t0, o0, wm, wn, gid, tig, acc);
#endif
}

/* ------------------------------------------------------------ f16 / bf16 */

/* mma.sync m16n8k16 with f16 (bf16) operands and float accumulators; same tiling as the
 * int8 kernel (BM x 128, 256 threads, K steps of 32, two stages). Shared rows are padded
 * to 40 elements (20 words): the fragment loads are free of bank conflicts. */
#define FLD 40

template <typename E>
__device__ __forceinline__ void mma_f16_16816(float c[4], const uint32_t a[4], uint32_t b0,
                                              uint32_t b1);
template <>
__device__ __forceinline__ void mma_f16_16816<__half>(float c[4], const uint32_t a[4],
                                                      uint32_t b0, uint32_t b1) {
    asm volatile(
        "mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, "
        "{%8,%9}, {%0,%1,%2,%3};"
        : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}
template <>
__device__ __forceinline__ void mma_f16_16816<__nv_bfloat16>(float c[4], const uint32_t a[4],
                                                             uint32_t b0, uint32_t b1) {
    asm volatile(
        "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, "
        "{%8,%9}, {%0,%1,%2,%3};"
        : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

template <int T, typename E, int BM>
__global__ void __launch_bounds__(QT, 2)
    gemm_h_kernel(wview w, const float *__restrict__ x, float *__restrict__ y, int n) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ < 800
    __trap(); /* never launched: the backend requires compute capability 8.0 */
#else
    constexpr int MI = BM / 32;
    __shared__ __align__(16) E As[2][BM][FLD];
    __shared__ __align__(16) E Bs[2][QN][FLD];
    const int t0 = blockIdx.y * BM;
    const int64_t o0 = (int64_t)blockIdx.x * QN;
    const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
    const int wm = warp >> 2, wn = warp & 3, gid = lane >> 2, tig = lane & 3;
    const int lr = tid >> 1, lc = (tid & 1) * 16;
    const int t = t0 + lr;
    const int64_t o = o0 + lr;
    const bool a_thread = lr < BM, t_ok = a_thread && t < n, o_ok = o < w.n_out;

    float acc[MI][4][4];
    mma_zero_acc<MI>(acc);

    float va[16], vb[16];
#pragma unroll
    for (int i = 0; i < 16; i++)
        va[i] = 0.f, vb[i] = 0.f;
    auto load = [&](int64_t k0) {
        if (t_ok) {
            const float4 *p =
                reinterpret_cast<const float4 *>(x + (size_t)t * w.n_in + k0 + lc);
#pragma unroll
            for (int i = 0; i < 4; i++) {
                float4 f = __ldg(p + i);
                va[4 * i] = f.x, va[4 * i + 1] = f.y, va[4 * i + 2] = f.z, va[4 * i + 3] = f.w;
            }
        }
        if (o_ok) dq16<T>(w, o, k0 + lc, vb);
    };
    auto store = [&](int st) {
        if (a_thread) store16<E>(&As[st][lr][lc], va);
        store16<E>(&Bs[st][lr][lc], vb);
    };

    load(0);
    store(0);
    __syncthreads();
    const int64_t nk = w.n_in / 32;
    for (int64_t ks = 0; ks < nk; ks++) {
        const int st = (int)(ks & 1);
        if (ks + 1 < nk) load((ks + 1) * 32);
#pragma unroll
        for (int c = 0; c < 2; c++) {
            uint32_t a[MI][4];
#pragma unroll
            for (int mi = 0; mi < MI; mi++) {
                const int r = wm * (BM / 2) + mi * 16 + gid;
                const E *p0 = &As[st][r][16 * c + 2 * tig],
                        *p1 = &As[st][r + 8][16 * c + 2 * tig];
                a[mi][0] = *reinterpret_cast<const uint32_t *>(p0);
                a[mi][1] = *reinterpret_cast<const uint32_t *>(p1);
                a[mi][2] = *reinterpret_cast<const uint32_t *>(p0 + 8);
                a[mi][3] = *reinterpret_cast<const uint32_t *>(p1 + 8);
            }
#pragma unroll
            for (int ni = 0; ni < 4; ni++) {
                const E *pb = &Bs[st][wn * 32 + ni * 8 + gid][16 * c + 2 * tig];
                const uint32_t b0 = *reinterpret_cast<const uint32_t *>(pb);
                const uint32_t b1 = *reinterpret_cast<const uint32_t *>(pb + 8);
#pragma unroll
                for (int mi = 0; mi < MI; mi++)
                    mma_f16_16816<E>(acc[mi][ni], a[mi], b0, b1);
            }
        }
        if (ks + 1 < nk) store(st ^ 1);
        __syncthreads();
    }
    mma_store_acc<MI, BM>(y, w.n_out, n, t0, o0, wm, wn, gid, tig, acc);
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

/* Token tile: the largest of 128 / 64 / 32 that still gives enough blocks. */
static int pick_bm(const cuda_backend *be, int64_t n_out, int n) {
    const long nb = (long)((n_out + QN - 1) / QN);
    if (nb * ((n + 127) / 128) >= 2L * be->n_sm) return 128;
    if (nb * ((n + 63) / 64) >= (long)be->n_sm) return 64;
    return 32;
}

template <int T, typename E>
static void launch_h(cuda_backend *be, const wview &w, const float *x, float *y, int n) {
    const int bm = pick_bm(be, w.n_out, n);
    dim3 grid((unsigned)((w.n_out + QN - 1) / QN), (unsigned)((n + bm - 1) / bm));
    if (bm == 128)
        gemm_h_kernel<T, E, 128><<<grid, QT, 0, be->stream>>>(w, x, y, n);
    else if (bm == 64)
        gemm_h_kernel<T, E, 64><<<grid, QT, 0, be->stream>>>(w, x, y, n);
    else
        gemm_h_kernel<T, E, 32><<<grid, QT, 0, be->stream>>>(w, x, y, n);
}

template <int T>
static void launch_gemm(cuda_backend *be, const wview &w, const float *x, const qact *xa,
                        float *y, int n) {
    bool tc_ok = w.n_in % GK == 0 && ((uintptr_t)x & 15) == 0;
    if constexpr (type_is_float(T)) {
        if (T != CHORD_TYPE_F32 && tc_ok) {
            if constexpr (T == CHORD_TYPE_BF16)
                launch_h<T, __nv_bfloat16>(be, w, x, y, n);
            else
                launch_h<T, __half>(be, w, x, y, n);
        } else {
            dim3 grid((unsigned)((w.n_out + GN - 1) / GN), (unsigned)((n + GM - 1) / GM));
            gemm_f32_kernel<T><<<grid, 256, 0, be->stream>>>(w, x, y, n);
        }
    } else {
        if (!xa || xa->qb != act_block(T)) {
            cuda_fail(be, "matmul: activations not quantized for this type");
            return;
        }
        xact a = {xa->q, xa->d, xa->bs, xa->s};
        const int bm = pick_bm(be, w.n_out, n);
        dim3 grid((unsigned)((w.n_out + QN - 1) / QN), (unsigned)((n + bm - 1) / bm));
        if (bm == 128)
            gemm_q8_kernel<T, 128><<<grid, QT, 0, be->stream>>>(w, a, y, n);
        else if (bm == 64)
            gemm_q8_kernel<T, 64><<<grid, QT, 0, be->stream>>>(w, a, y, n);
        else
            gemm_q8_kernel<T, 32><<<grid, QT, 0, be->stream>>>(w, a, y, n);
    }
    CUDA_LAUNCHED(be, "gemm_kernel");
}

/* The pipelined kernels (gemm_pipe.cu) compute the same bits as the ones above;
 * CHORD_CUDA_GEMM=old keeps these for an A/B, CHORD_CUDA_GEMM_BM=32/64/128 forces the
 * pipelined kernels' token tile. */
static bool gemm_pipe_on(void) {
    const char *mode = getenv("CHORD_CUDA_GEMM");
    return !mode || strcmp(mode, "old") != 0;
}

void cuda_gemm(cuda_backend *be, const chord_weight *w, const float *x, const qact *xa,
               float *y, int n) {
    if (n <= 0) return;
    if ((n + 31) / 32 > 65535) {
        cuda_fail(be, "matmul: %d tokens in one call is too many", n);
        return;
    }
    if (cuda_matmul_exact(be, 1, &w, &y, xa, n)) return;
    wview v = wview_of(w);
    if (gemm_pipe_on()) {
        const char *bm = getenv("CHORD_CUDA_GEMM_BM");
        if (cuda_gemm_pipe(be, w->type, 1, &v, x, xa, &y, n, bm ? atoi(bm) : 0)) return;
    }
    CUDA_TYPE_SWITCH(w->type, launch_gemm,
                     cuda_fail(be, "matmul: unsupported type %d", w->type), be, v, x, xa, y, n);
}

void cuda_gemm_multi(cuda_backend *be, int n_w, const chord_weight *const *ws, const float *x,
                     const qact *xa, float *const *ys, int n) {
    if (n <= 0) return;
    if (cuda_matmul_exact(be, n_w, ws, ys, xa, n)) return;
    bool same = n_w >= 1 && n_w <= GEMM_MAXW;
    for (int k = 1; k < n_w && same; k++)
        same = ws[k]->type == ws[0]->type && ws[k]->n_in == ws[0]->n_in;
    if (same && n_w > 1 && (n + 31) / 32 <= 65535 && gemm_pipe_on()) {
        wview v[GEMM_MAXW];
        for (int k = 0; k < n_w; k++)
            v[k] = wview_of(ws[k]);
        const char *bm = getenv("CHORD_CUDA_GEMM_BM");
        if (cuda_gemm_pipe(be, ws[0]->type, n_w, v, x, xa, ys, n, bm ? atoi(bm) : 0)) return;
    }
    for (int k = 0; k < n_w; k++)
        cuda_gemm(be, ws[k], x, xa, ys[k], n);
}
