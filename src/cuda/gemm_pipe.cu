/* Pipelined prefill GEMMs. Each output gets exactly the arithmetic of the kernels in
 * gemm.cu (same integer groups, same float expressions in the same K order), so the
 * results are bit-identical to them; only the memory side differs:
 *  - both operands stream through a 4-stage ring of shared memory filled with cp.async
 *    (16-byte copies; the bytes of rows past n / n_out are zero-filled), so that three
 *    K-tiles are in flight while the tensor cores work on an older one;
 *  - quantized weights are copied raw (the quant bytes and the scale entry a K-tile of
 *    64 needs) and decoded once per block into an int8 tile plus float scales, one K-tile
 *    ahead of the products, in a double buffer; F16/BF16 GEMMs take the activations
 *    converted to 16 bits once per GEMM (to_e_kernel) and K-tiles of 64;
 *  - fragments are read with ldmatrix; tile rows are padded by 16 bytes, which keeps the
 *    8-row ldmatrix phases and the row-per-thread decode stores free of bank conflicts.
 * One barrier per K-tile. Block: 256 threads, BM tokens x 128 outputs, warps 2 x 4, each
 * (BM/2) x 32 as in gemm.cu. Weights of one type and row length that share the input
 * (q / k / v, gate / up) go in one grid (gjob).
 * The int8 kernel is bound by the float scaling of each 32-step's integer dots (the exact
 * CPU arithmetic: about 4 float instructions per output and step), not by the tensor
 * cores. */
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include <type_traits>

#include "gemm_pipe.cuh"
#include "mma_tile.cuh"
#include "ptx.cuh"
#include "quant.cuh"

namespace {

constexpr int PT = 256; /* threads */
constexpr int PN = 128; /* outputs per block */
constexpr int RS = 80;  /* bytes per row of an int8 / 16-bit 64-byte tile row, padded */

/* for (i = tid; i < N; i += PT), N a constant: fully unrolled */
#define FOR_T(i, N)                                                                            \
    _Pragma("unroll") for (int i##_j = 0; i##_j < ((N) + PT - 1) / PT;                         \
                           i##_j++) if (const int i = tid + i##_j * PT;                        \
                                        (N) % PT == 0 || i < (N))

/* The integer dots start from the bits of 1.5 * 2^23 (MAGIC) instead of 0: with |dot| <
 * 2^22 the sum read as a float is exactly 1.5 * 2^23 + dot, so the tensor core does the
 * integer add of gemm.cu's i2f_small and only the float subtract is left (fewer issued
 * instructions in the scaling, which bounds this kernel; the value is the same). */
#define MAGIC 0x4B400000
__device__ __forceinline__ void mma_s8(int c[4], uint32_t a0, uint32_t a1, uint32_t b0) {
    asm volatile(
        "mma.sync.aligned.m16n8k16.row.col.s32.s8.s8.s32 {%0,%1,%2,%3}, {%4,%5}, {%6}, "
        "{%7,%8,%9,%10};"
        : "=r"(c[0]), "=r"(c[1]), "=r"(c[2]), "=r"(c[3])
        : "r"(a0), "r"(a1), "r"(b0), "r"(MAGIC), "r"(MAGIC), "r"(MAGIC), "r"(MAGIC));
}
/* gemm.cu's i2f_small of the dot, given MAGIC + dot */
__device__ __forceinline__ float m2f(int m) {
    return __int_as_float(m) - 12582912.0f;
}

/* the same rounding as gemm.cu's to_e (one element at a time), packed low element first */
__device__ __forceinline__ uint32_t pack_e(float a, float b, __half *) {
    return (uint32_t)__half_as_ushort(__float2half_rn(a)) |
           (uint32_t)__half_as_ushort(__float2half_rn(b)) << 16;
}
__device__ __forceinline__ uint32_t pack_e(float a, float b, __nv_bfloat16 *) {
    return (uint32_t)__bfloat16_as_ushort(__float2bfloat16_rn(a)) |
           (uint32_t)__bfloat16_as_ushort(__float2bfloat16_rn(b)) << 16;
}

/* ------------------------------------------------------------ raw weight staging */

template <int T> struct qgeo {
    static constexpr qinfo QI = qinfo_of(T);
    static constexpr bool KQ = QI.blk == 256;
    /* quant bytes one row's 64-element K-tile needs, as staged (K-quants: the pieces of
     * the super-block these 64 elements use; Q6_K's low nibbles of the 64-byte run are
     * shared by two K-tiles, Q5_K / Q3_K's high bits by all four) */
    static constexpr int QROW = !KQ                                            ? 2 * QI.qlen
                                : T == CHORD_TYPE_Q6_K                         ? 96
                                : T == CHORD_TYPE_Q5_K || T == CHORD_TYPE_Q3_K ? 64
                                                                               : 32;
    static constexpr int NP = QROW / 16;
    static constexpr int QSTR = QROW + 16;
    static constexpr int SROW = KQ ? QI.sb : 2 * QI.sb; /* scale bytes per row */
    static constexpr int NS = SROW / 4;
    static constexpr int QB = act_block(T);
    static constexpr bool HAS_MIN = T == CHORD_TYPE_Q4_1 || T == CHORD_TYPE_Q5_1 ||
                                    T == CHORD_TYPE_Q2_K || T == CHORD_TYPE_Q4_K ||
                                    T == CHORD_TYPE_Q5_K;
    static constexpr bool MERGE = T == CHORD_TYPE_Q4_0 || T == CHORD_TYPE_Q4_1 ||
                                  T == CHORD_TYPE_Q5_0 || T == CHORD_TYPE_Q5_1 ||
                                  T == CHORD_TYPE_Q8_0 || T == CHORD_TYPE_Q4_K ||
                                  T == CHORD_TYPE_Q5_K;
    static_assert(SROW % 4 == 0 && QROW % 16 == 0, "staging granularity");
};

/* Offset (from the block's quant bytes) of staged 16-byte piece p; e0 = K-tile start
 * within the super-block. The decoders below read the staged pieces at 16 * p. */
template <int T> __device__ __forceinline__ int qpiece(int e0, int p) {
    if constexpr (T == CHORD_TYPE_Q4_K)
        return 32 * (e0 >> 6) + 16 * p;
    else if constexpr (T == CHORD_TYPE_Q5_K)
        return p < 2 ? 32 + 32 * (e0 >> 6) + 16 * p : 16 * (p - 2);
    else if constexpr (T == CHORD_TYPE_Q6_K)
        return p < 4 ? 64 * (e0 >> 7) + 16 * p : 128 + 32 * (e0 >> 7) + 16 * (p - 4);
    else if constexpr (T == CHORD_TYPE_Q2_K)
        return 32 * (e0 >> 7) + 16 * p;
    else if constexpr (T == CHORD_TYPE_Q3_K)
        return p < 2 ? 32 + 32 * (e0 >> 7) + 16 * p : 16 * (p - 2);
    else
        return 16 * p;
}

__device__ __forceinline__ uint4 su4(const uint8_t *p) {
    return *reinterpret_cast<const uint4 *>(p);
}
__device__ __forceinline__ float shf(const uint8_t *p) {
    return __half2float(__ushort_as_half(*reinterpret_cast<const unsigned short *>(p)));
}
__device__ __forceinline__ uint32_t su16(const uint8_t *p) {
    return *reinterpret_cast<const unsigned short *>(p);
}

/* qi16 (quant.cuh) on the staged bytes: q = the row's staged quant bytes, s = its staged
 * scale bytes, chunk ct (0..3) of the K-tile starting at e0 within its super-block. Each
 * formula is qi16's, with the staged offsets. */
template <int T>
__device__ __forceinline__ q16 qs16(const uint8_t *q, const uint8_t *s, int e0, int ct) {
    q16 r;
    const int bi = ct >> 1, sh32 = (ct & 1) ? 4 : 0;
    const int e = e0 + 16 * ct, l0 = e & 16;
    if constexpr (T == CHORD_TYPE_Q4_0) {
        uint4 v = su4(q + 16 * bi);
        r.q = make_uint4(
            __vsub4((v.x >> sh32) & M4, 0x08080808u), __vsub4((v.y >> sh32) & M4, 0x08080808u),
            __vsub4((v.z >> sh32) & M4, 0x08080808u), __vsub4((v.w >> sh32) & M4, 0x08080808u));
        r.scale = shf(s + 2 * bi);
        r.min = 0.f;
    } else if constexpr (T == CHORD_TYPE_Q4_1) {
        uint4 v = su4(q + 16 * bi);
        r.q = make_uint4((v.x >> sh32) & M4, (v.y >> sh32) & M4, (v.z >> sh32) & M4,
                         (v.w >> sh32) & M4);
        r.scale = shf(s + 4 * bi);
        r.min = -shf(s + 4 * bi + 2);
    } else if constexpr (T == CHORD_TYPE_Q5_0) {
        uint4 v = su4(q + 16 * bi);
        const uint8_t *ss = s + 6 * bi;
        uint32_t qh = (su16(ss + 2) | su16(ss + 4) << 16) >> (16 * (ct & 1));
        r.q = make_uint4(__vsub4(((v.x >> sh32) & M4) | expand4(qh), 0x10101010u),
                         __vsub4(((v.y >> sh32) & M4) | expand4(qh >> 4), 0x10101010u),
                         __vsub4(((v.z >> sh32) & M4) | expand4(qh >> 8), 0x10101010u),
                         __vsub4(((v.w >> sh32) & M4) | expand4(qh >> 12), 0x10101010u));
        r.scale = shf(ss);
        r.min = 0.f;
    } else if constexpr (T == CHORD_TYPE_Q5_1) {
        uint4 v = su4(q + 16 * bi);
        const uint8_t *ss = s + 8 * bi;
        uint32_t qh = *reinterpret_cast<const uint32_t *>(ss + 4) >> (16 * (ct & 1));
        r.q = make_uint4(
            ((v.x >> sh32) & M4) | expand4(qh), ((v.y >> sh32) & M4) | expand4(qh >> 4),
            ((v.z >> sh32) & M4) | expand4(qh >> 8), ((v.w >> sh32) & M4) | expand4(qh >> 12));
        r.scale = shf(ss);
        r.min = -shf(ss + 2);
    } else if constexpr (T == CHORD_TYPE_Q8_0) {
        r.q = su4(q + 32 * bi + 16 * (ct & 1));
        r.scale = shf(s + 2 * bi);
        r.min = 0.f;
    } else if constexpr (T == CHORD_TYPE_Q2_K) {
        const int g = (e >> 5) & 3;
        uint4 v = su4(q + l0);
        int sc = s[e >> 4];
        r.q = make_uint4((v.x >> (2 * g)) & 0x03030303u, (v.y >> (2 * g)) & 0x03030303u,
                         (v.z >> (2 * g)) & 0x03030303u, (v.w >> (2 * g)) & 0x03030303u);
        r.scale = shf(s + 16) * (float)(sc & 15);
        r.min = shf(s + 18) * (float)(sc >> 4);
    } else if constexpr (T == CHORD_TYPE_Q3_K) {
        const int half = e >> 7, g = (e >> 5) & 3, bit = 4 * half + g;
        uint4 v = su4(q + l0), h = su4(q + 32 + l0);
        r.q =
            make_uint4(__vsub4(((v.x >> (2 * g)) & 0x03030303u) | (((h.x >> bit) & ONES) << 2),
                               0x04040404u),
                       __vsub4(((v.y >> (2 * g)) & 0x03030303u) | (((h.y >> bit) & ONES) << 2),
                               0x04040404u),
                       __vsub4(((v.z >> (2 * g)) & 0x03030303u) | (((h.z >> bit) & ONES) << 2),
                               0x04040404u),
                       __vsub4(((v.w >> (2 * g)) & 0x03030303u) | (((h.w >> bit) & ONES) << 2),
                               0x04040404u));
        const int sj = e >> 4;
        int lo = (s[sj & 7] >> (4 * (sj >> 3))) & 0x0F;
        int hi = (s[8 + (sj & 3)] >> (2 * (sj >> 2))) & 0x03;
        r.scale = shf(s + 12) * (float)((lo | hi << 4) - 32);
        r.min = 0.f;
    } else if constexpr (T == CHORD_TYPE_Q4_K || T == CHORD_TYPE_Q5_K) {
        const int sh = (e & 32) ? 4 : 0, j = e >> 5;
        const uint8_t *k = s + 4;
        int sc, mn;
        if (j < 4) {
            sc = k[j] & 63;
            mn = k[j + 4] & 63;
        } else {
            int a = k[j + 4], lo = k[j - 4], hi = k[j];
            sc = (a & 0x0F) | ((lo >> 6) << 4);
            mn = (a >> 4) | ((hi >> 6) << 4);
        }
        uint4 v = su4(q + l0);
        if constexpr (T == CHORD_TYPE_Q4_K) {
            r.q = make_uint4((v.x >> sh) & M4, (v.y >> sh) & M4, (v.z >> sh) & M4,
                             (v.w >> sh) & M4);
        } else {
            uint4 h = su4(q + 32 + l0);
            r.q = make_uint4(((v.x >> sh) & M4) | (((h.x >> j) & ONES) << 4),
                             ((v.y >> sh) & M4) | (((h.y >> j) & ONES) << 4),
                             ((v.z >> sh) & M4) | (((h.z >> j) & ONES) << 4),
                             ((v.w >> sh) & M4) | (((h.w >> j) & ONES) << 4));
        }
        r.scale = shf(s) * (float)sc;
        r.min = shf(s + 2) * (float)mn;
    } else if constexpr (T == CHORD_TYPE_Q6_K) {
        const int g = (e >> 5) & 3, sh = g >= 2 ? 4 : 0;
        uint4 vl = su4(q + 32 * (g & 1) + l0), vh = su4(q + 64 + l0);
        r.q = make_uint4(__vsub4(((vl.x >> sh) & M4) | (((vh.x >> (2 * g)) & 0x03030303u) << 4),
                                 0x20202020u),
                         __vsub4(((vl.y >> sh) & M4) | (((vh.y >> (2 * g)) & 0x03030303u) << 4),
                                 0x20202020u),
                         __vsub4(((vl.z >> sh) & M4) | (((vh.z >> (2 * g)) & 0x03030303u) << 4),
                                 0x20202020u),
                         __vsub4(((vl.w >> sh) & M4) | (((vh.w >> (2 * g)) & 0x03030303u) << 4),
                                 0x20202020u));
        r.scale = shf(s + 16) * (float)(int8_t)s[e >> 4];
        r.min = 0.f;
    }
    return r;
}

/* Up to GEMM_MAXW weights of one type and row length sharing the input, in one grid:
 * blocks [cb[k], cb[k+1]) along x compute weight k (cb past the last weight: INT_MAX).
 * One launch fills the GPU better than several small ones (q / k / v, gate / up). */
struct gjob {
    wview w[GEMM_MAXW];
    float *y[GEMM_MAXW];
    int cb[GEMM_MAXW];
};

/* this block's weight, output and first output row */
#define GJOB_SELECT(J)                                                                         \
    const int jg_ = (int)blockIdx.x >= (J).cb[2] ? 2 : (int)blockIdx.x >= (J).cb[1] ? 1 : 0;   \
    const wview w = jg_ == 0 ? (J).w[0] : jg_ == 1 ? (J).w[1] : (J).w[2];                      \
    float *__restrict__ y = jg_ == 0 ? (J).y[0] : jg_ == 1 ? (J).y[1] : (J).y[2];              \
    const int64_t o0 = (int64_t)((int)blockIdx.x - (J).cb[jg_]) * PN;
static_assert(GEMM_MAXW == 3, "GJOB_SELECT picks among 3");

/* A kernel's start: its job (GJOB_SELECT), token tile t0, warp (wm, wn) and lane (gid,
 * tig) coordinates, nt K-tiles of 64, zeroed accumulators (MI, BM from the kernel) */
#define PIPE_SETUP(J)                                                                          \
    GJOB_SELECT(J)                                                                             \
    const int t0 = blockIdx.y * BM;                                                            \
    const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;                             \
    const int wm = warp >> 2, wn = warp & 3, gid = lane >> 2, tig = lane & 3;                  \
    const int64_t n_in = w.n_in;                                                               \
    const int nt = (int)(n_in / 64);                                                           \
    float acc[MI][4][4];                                                                       \
    mma_zero_acc<MI>(acc);

/* ------------------------------------------------------------ int8 kernel */

/* Shared memory of the int8 kernel: S stages of raw tiles, then two decoded weight tiles.
 * Stage: activations BM x 64 int8 (rows padded to RS), their scales (d: 2 floats per row
 * for 32-blocks, 1 for 256; x: s (2 floats) or bs (4 int16) where the weights have a
 * min), the weights' staged quant bytes (QSTR per row) and scale bytes (SROW per row).
 * Decoded: 128 x 64 int8 (rows padded to RS), scale [4][128], min [4][128]. */
template <int T, int BM, int S> struct q8lay {
    using G = qgeo<T>;
    static constexpr int AQ = 0;
    static constexpr int AD = AQ + BM * RS;
    static constexpr int AX = AD + BM * 8;
    static constexpr int BQ = AX + (G::HAS_MIN ? BM * 8 : 0);
    static constexpr int BS = BQ + PN * G::QSTR;
    static constexpr int STAGE = (BS + PN * G::SROW + 15) & ~15;
    static constexpr int DW = PN * RS;         /* decoded int8 */
    static constexpr int DS = DW + 4 * PN * 4; /* scales */
    static constexpr int DEC = DS + (G::HAS_MIN ? 4 * PN * 4 : 0);
    static constexpr int TOTAL = S * STAGE + 2 * DEC;
};

template <int T, int BM, int S>
__global__ void __launch_bounds__(PT, BM == 128 ? 1 : 2)
    gemm_q8p_kernel(gjob J, xact xa, int n) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ < 800
    __trap(); /* never launched: the backend requires compute capability 8.0 */
#else
    using G = qgeo<T>;
    using L = q8lay<T, BM, S>;
    constexpr int QB = G::QB, MI = BM / 32;
    constexpr bool HAS_MIN = G::HAS_MIN, MERGE = G::MERGE;
    extern __shared__ __align__(16) uint8_t smem[];

    PIPE_SETUP(J)

    auto issue = [&](int kt) {
        if (kt < nt) {
            uint8_t *sb = smem + (kt % S) * L::STAGE;
            const int64_t k0 = (int64_t)kt * 64;
            FOR_T(i, BM * 4) {
                const int r = i >> 2, p = i & 3, t = t0 + r;
                const bool ok = t < n;
                const int8_t *src = xa.q + (ok ? (size_t)t * n_in + k0 + 16 * p : 0);
                cp16(sb + L::AQ + r * RS + 16 * p, src, ok);
            }
            FOR_T(r, BM) {
                const int t = t0 + r;
                const bool ok = t < n;
                const size_t tt = ok ? (size_t)t : 0;
                if constexpr (QB == 32) {
                    const size_t off = tt * (size_t)(n_in / 32) + (size_t)(k0 / 32);
                    cp8(sb + L::AD + 8 * r, xa.d + off, ok);
                    if constexpr (HAS_MIN) cp8(sb + L::AX + 8 * r, xa.s + off, ok);
                } else {
                    cp4(sb + L::AD + 8 * r,
                        xa.d + tt * (size_t)(n_in / 256) + (size_t)(k0 / 256), ok);
                    if constexpr (HAS_MIN)
                        cp8(sb + L::AX + 8 * r,
                            xa.bs + tt * (size_t)(n_in / 16) + (size_t)(k0 / 16), ok);
                }
            }
            const int e0 = G::KQ ? (int)(k0 & 255) : 0;
            const int64_t kb = k0 / G::QI.blk;
            FOR_T(i, PN * G::NP) {
                const int r = i / G::NP, p = i % G::NP;
                const int64_t o = o0 + r;
                const bool ok = o < w.n_out;
                const uint8_t *src =
                    w.q + ((size_t)(ok ? o : 0) * (size_t)w.nb + (size_t)kb) * G::QI.qlen +
                    qpiece<T>(e0, p);
                cp16(sb + L::BQ + r * G::QSTR + 16 * p, src, ok);
            }
            FOR_T(i, PN * G::NS) {
                const int r = i / G::NS, p = i % G::NS;
                const int64_t o = o0 + r;
                const bool ok = o < w.n_out;
                const uint8_t *src =
                    w.s + ((size_t)(ok ? o : 0) * (size_t)w.nb + (size_t)kb) * G::QI.sb + 4 * p;
                cp4(sb + L::BS + r * G::SROW + 4 * p, src, ok);
            }
        }
        cp_commit(); /* empty groups too: the wait counts stay uniform */
    };

    auto decode = [&](int kt) {
        const uint8_t *sb = smem + (kt % S) * L::STAGE;
        uint8_t *db = smem + S * L::STAGE + (kt & 1) * L::DEC;
        float *dsw = reinterpret_cast<float *>(db + L::DW);
        float *dmw = reinterpret_cast<float *>(db + L::DS);
        const int e0 = G::KQ ? (kt * 64) & 255 : 0;
        FOR_T(i, PN * 4) {
            const int r = i & (PN - 1), ct = i / PN;
            q16 v = qs16<T>(sb + L::BQ + r * G::QSTR, sb + L::BS + r * G::SROW, e0, ct);
            *reinterpret_cast<uint4 *>(db + r * RS + 16 * ct) = v.q;
            dsw[ct * PN + r] = v.scale;
            if constexpr (HAS_MIN) dmw[ct * PN + r] = v.min;
        }
    };

    auto compute = [&](int kt) {
        const uint8_t *sb = smem + (kt % S) * L::STAGE;
        const uint8_t *db = smem + S * L::STAGE + (kt & 1) * L::DEC;
        const float *dsw = reinterpret_cast<const float *>(db + L::DW);
        const float *dmw = reinterpret_cast<const float *>(db + L::DS);
        const float *ad = reinterpret_cast<const float *>(sb + L::AD);
        uint32_t bf[4][4]; /* [n fragment][16-chunk] */
#pragma unroll
        for (int ni = 0; ni < 4; ni++)
            ldsm4(bf[ni], db + (wn * 32 + ni * 8 + (lane & 7)) * RS + 16 * (lane >> 3));
#pragma unroll
        for (int s = 0; s < 2; s++) { /* the two 32-steps of the K-tile */
            uint32_t a[MI][2][2];
            float dr[MI][2], xr[MI][2][2];
#pragma unroll
            for (int mi = 0; mi < MI; mi++) {
                uint32_t t4[4];
                ldsm4(t4,
                      sb + L::AQ +
                          (wm * (BM / 2) + mi * 16 + (lane & 7) + 8 * ((lane >> 3) & 1)) * RS +
                          16 * (2 * s + (lane >> 4)));
                a[mi][0][0] = t4[0], a[mi][0][1] = t4[1], a[mi][1][0] = t4[2],
                a[mi][1][1] = t4[3];
#pragma unroll
                for (int h = 0; h < 2; h++) {
                    const int r = wm * (BM / 2) + mi * 16 + gid + 8 * h;
                    if constexpr (QB == 32) {
                        dr[mi][h] = ad[2 * r + s];
                        if constexpr (HAS_MIN) {
                            /* gemm.cu adds the second chunk's 0 */
                            const float *ax = reinterpret_cast<const float *>(sb + L::AX);
                            xr[mi][0][h] = __fadd_rn(ax[2 * r + s], 0.f);
                        }
                    } else {
                        const float d = ad[2 * r];
                        dr[mi][h] = d;
                        if constexpr (HAS_MIN) {
                            const int16_t *bs =
                                reinterpret_cast<const int16_t *>(sb + L::AX) + 4 * r;
                            const float x0 = __fmul_rn(d, (float)bs[2 * s]);
                            const float x1 = __fmul_rn(d, (float)bs[2 * s + 1]);
                            if constexpr (MERGE)
                                xr[mi][0][h] = __fadd_rn(x0, x1);
                            else
                                xr[mi][0][h] = x0, xr[mi][1][h] = x1;
                        }
                    }
                }
            }
            /* acc[.][ni] += s * (d_x * dot) - m * x_sum with the scales of 16-step row sr of
             * the decoded tile (xr column xc): gemm.cu's float expressions */
            auto scaled = [&](int ni, int sr, int xc, auto &&dots) {
                const int col = wn * 32 + ni * 8 + 2 * tig;
                const float2 sv = *reinterpret_cast<const float2 *>(dsw + sr * PN + col);
                float2 mv = make_float2(0.f, 0.f);
                if constexpr (HAS_MIN)
                    mv = *reinterpret_cast<const float2 *>(dmw + sr * PN + col);
#pragma unroll
                for (int mi = 0; mi < MI; mi++) {
                    int cc[4];
                    dots(mi, cc);
                    acc[mi][ni][0] += sv.x * (dr[mi][0] * m2f(cc[0]));
                    acc[mi][ni][1] += sv.y * (dr[mi][0] * m2f(cc[1]));
                    acc[mi][ni][2] += sv.x * (dr[mi][1] * m2f(cc[2]));
                    acc[mi][ni][3] += sv.y * (dr[mi][1] * m2f(cc[3]));
                    if constexpr (HAS_MIN) {
                        acc[mi][ni][0] -= mv.x * xr[mi][xc][0];
                        acc[mi][ni][1] -= mv.y * xr[mi][xc][0];
                        acc[mi][ni][2] -= mv.x * xr[mi][xc][1];
                        acc[mi][ni][3] -= mv.y * xr[mi][xc][1];
                    }
                }
            };
#pragma unroll
            for (int ni = 0; ni < 4; ni++) {
                if constexpr (MERGE) { /* one scale for both 16-steps */
                    scaled(ni, 2 * s, 0, [&](int mi, int(&cc)[4]) {
                        mma_s8(cc, a[mi][0][0], a[mi][0][1], bf[ni][2 * s]);
                        mma_s8_acc(cc, a[mi][1][0], a[mi][1][1], bf[ni][2 * s + 1]);
                    });
                } else {
#pragma unroll
                    for (int c = 0; c < 2; c++)
                        scaled(ni, 2 * s + c, c, [&](int mi, int(&cc)[4]) {
                            mma_s8(cc, a[mi][c][0], a[mi][c][1], bf[ni][2 * s + c]);
                        });
                }
            }
        }
    };

    /* Tile kt's raw bytes land S - 1 iterations after they are issued; it is decoded one
     * iteration before its products. The barrier at the top of iteration kt orders: the
     * products of kt - 1 (stage (kt - 1) % S, decoded buffer (kt + 1) & 1) before this
     * iteration's copy into that stage and decode into that buffer, and the decode of kt
     * before its products. */
#pragma unroll 1
    for (int s = 0; s < S - 1; s++)
        issue(s);
    cp_wait<S - 2>();
    __syncthreads();
    decode(0);
#pragma unroll 1
    for (int kt = 0; kt < nt; kt++) {
        cp_wait<S - 3>(); /* tile kt + 1 landed (this thread's copies) */
        __syncthreads();
        issue(kt + S - 1);
        if (kt + 1 < nt) decode(kt + 1);
        compute(kt);
    }

    mma_store_acc<MI, BM>(y, w.n_out, n, t0, o0, wm, wn, gid, tig, acc);
#endif
}

/* ------------------------------------------------------------ f16 / bf16 kernel */

/* The activations converted to E once per GEMM (to_e_kernel: the rounding pack_e does),
 * so a stage holds only 16-bit tiles: K-tiles of 64 (four mma k-steps per barrier) fit
 * four stages and two blocks per SM. Each accumulator still takes its k16 steps in K
 * order with the same mma, so the sums are gemm.cu's F16 / BF16 kernels' bit for bit. */
constexpr int RH = 144; /* bytes per 64-element 16-bit row, padded */
template <int BM, int S> struct hhlay {
    static constexpr int A = 0;
    static constexpr int B = BM * RH;
    static constexpr int STAGE = B + PN * RH;
    static constexpr int TOTAL = S * STAGE;
};

template <typename E>
__global__ void to_e_kernel(E *__restrict__ out, const float *__restrict__ x, size_t n4) {
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n4;
         i += (size_t)gridDim.x * blockDim.x) {
        const float4 f = reinterpret_cast<const float4 *>(x)[i];
        reinterpret_cast<uint2 *>(out)[i] =
            make_uint2(pack_e(f.x, f.y, (E *)nullptr), pack_e(f.z, f.w, (E *)nullptr));
    }
}

template <int T, typename E, int BM, int S>
__global__ void __launch_bounds__(PT, BM == 128 ? 1 : 2)
    gemm_hh_kernel(gjob J, const E *__restrict__ x, int n) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ < 800
    __trap(); /* never launched: the backend requires compute capability 8.0 */
#else
    using L = hhlay<BM, S>;
    constexpr int MI = BM / 32;
    extern __shared__ __align__(16) uint8_t smem[];
    PIPE_SETUP(J)

    auto issue = [&](int kt) {
        if (kt < nt) {
            uint8_t *sb = smem + (kt % S) * L::STAGE;
            const int64_t k0 = (int64_t)kt * 64;
            FOR_T(i, BM * 8) {
                const int r = i >> 3, p = i & 7, t = t0 + r;
                const bool ok = t < n;
                const E *src = x + (ok ? (size_t)t * n_in + k0 + 8 * p : 0);
                cp16(sb + L::A + r * RH + 16 * p, src, ok);
            }
            FOR_T(i, PN * 8) {
                const int r = i >> 3, p = i & 7;
                const int64_t o = o0 + r;
                const bool ok = o < w.n_out;
                const uint8_t *src = w.q + ((ok ? (size_t)o * n_in + k0 : 0) * 2 + 16 * p);
                cp16(sb + L::B + r * RH + 16 * p, src, ok);
            }
        }
        cp_commit();
    };

    auto compute = [&](int kt) {
        const uint8_t *sb = smem + (kt % S) * L::STAGE;
#pragma unroll
        for (int h = 0; h < 2; h++) {
            uint32_t bf[4][4]; /* [n fragment][k 8-group] */
#pragma unroll
            for (int ni = 0; ni < 4; ni++)
                ldsm4(bf[ni], sb + L::B + (wn * 32 + ni * 8 + (lane & 7)) * RH + 64 * h +
                                  16 * (lane >> 3));
#pragma unroll
            for (int c = 0; c < 2; c++) {
                uint32_t a[MI][4];
#pragma unroll
                for (int mi = 0; mi < MI; mi++)
                    ldsm4(a[mi],
                          sb + L::A +
                              (wm * (BM / 2) + mi * 16 + (lane & 7) + 8 * ((lane >> 3) & 1)) *
                                  RH +
                              64 * h + 2 * (16 * c + 8 * (lane >> 4)));
#pragma unroll
                for (int ni = 0; ni < 4; ni++)
#pragma unroll
                    for (int mi = 0; mi < MI; mi++)
                        mma_h<E>(acc[mi][ni], a[mi], bf[ni][2 * c], bf[ni][2 * c + 1]);
            }
        }
    };

#pragma unroll 1
    for (int s = 0; s < S - 1; s++)
        issue(s);
#pragma unroll 1
    for (int kt = 0; kt < nt; kt++) {
        cp_wait<S - 2>(); /* tile kt landed (this thread's copies) */
        __syncthreads();  /* ... everyone's; and the products of kt - 1 are done */
        issue(kt + S - 1);
        compute(kt);
    }

    mma_store_acc<MI, BM>(y, w.n_out, n, t0, o0, wm, wn, gid, tig, acc);
#endif
}

/* ------------------------------------------------------------ host */

/* Token tile: 128 if that alone fills the GPU (int8 weights) or gives several waves
 * (float weights), else 64 if it gives half a block per SM (one block of 8 warps with a
 * deep pipeline keeps an SM busy), else 32. Measured on the H100, 512 tokens: F16
 * 5632x2048 runs 88 us with 64-token tiles vs 117 us with 128 (pp512 F16 36.1k -> 37.3k
 * tok/s), but the int8 kernels lose 1-4% of pp512 with 64. Float weights never take 32
 * (gemm_hh_kernel, pp512 F16: 64.3k tok/s picking 32 for the small GEMMs, 65.0k with 64). */
int pick_bm(const cuda_backend *be, int64_t n_out, int n, bool float_w) {
    const long nb = (long)((n_out + PN - 1) / PN);
    if (nb * ((n + 127) / 128) >= (float_w ? 4L : 1L) * be->n_sm) return 128;
    if (float_w || nb * ((n + 63) / 64) >= (long)be->n_sm / 2) return 64;
    return 32;
}

/* Four stages: three K-tiles in flight while one is multiplied. (128-token tiles need
 * more than 128 registers, so they run one block per SM and cannot count on a second
 * block to hide the latency.) */
template <int BM> constexpr int stages() {
    return 4;
}

template <typename... KArgs, typename... Args>
bool launch_k(cuda_backend *be, void (*kernel)(KArgs...), size_t smem, dim3 grid,
              const char *name, Args... args) {
    if (smem > be->smem_per_block_optin) return false;
    if (!CUDA_CHECK(be, cudaFuncSetAttribute(
                            kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem)))
        return true; /* failure recorded */
    kernel<<<grid, PT, smem, be->stream>>>(static_cast<KArgs>(args)...);
    CUDA_LAUNCHED(be, name);
    return true;
}

template <int T, int BM>
bool launch_q8(cuda_backend *be, const gjob &J, int nblk, const xact &a, int n) {
    constexpr int S = stages<BM>();
    dim3 grid((unsigned)nblk, (unsigned)((n + BM - 1) / BM));
    return launch_k(be, gemm_q8p_kernel<T, BM, S>, (size_t)q8lay<T, BM, S>::TOTAL, grid,
                    "gemm_q8p_kernel", J, a, n);
}

/* x converted once into scratch, then gemm_hh_kernel; false where it does not apply */
template <int T, typename E, int BM>
bool launch_hh(cuda_backend *be, const gjob &J, int nblk, const float *x, int n, int64_t n_in) {
    constexpr int S = 4;
    using L = hhlay<BM, S>;
    if ((size_t)L::TOTAL > be->smem_per_block_optin || n_in % 64 != 0) return false;
    const size_t cnt = (size_t)n * n_in;
    E *xe = (E *)cuda_scratch_get(be, CUDA_SCRATCH_XH, cnt * sizeof(E));
    if (!xe) return true; /* failure recorded */
    long blocks = (long)((cnt / 4 + 255) / 256);
    if (blocks > 16L * be->n_sm) blocks = 16L * be->n_sm;
    to_e_kernel<E><<<(unsigned)blocks, 256, 0, be->stream>>>(xe, x, cnt / 4);
    if (!CUDA_LAUNCHED(be, "to_e_kernel")) return true;
    dim3 grid((unsigned)nblk, (unsigned)((n + BM - 1) / BM));
    return launch_k(be, gemm_hh_kernel<T, E, BM, S>, (size_t)L::TOTAL, grid, "gemm_hh_kernel",
                    J, (const E *)xe, n);
}

bool aligned16(const void *p) {
    return ((uintptr_t)p & 15) == 0;
}

template <int T>
void pipe_launch(cuda_backend *be, int nw, const wview *ws, const float *x, const qact *xa,
                 float *const *ys, int n, int bm, bool *done) {
    if constexpr (T == CHORD_TYPE_F32) {
        return; /* float precision: the SIMT kernel of gemm.cu */
    } else {
        gjob J;
        memset(&J, 0, sizeof J);
        long nblk = 0;
        for (int k = 0; k < GEMM_MAXW; k++) {
            if (k < nw) {
                if (ws[k].n_in != ws[0].n_in || !aligned16(ws[k].q) || !aligned16(ws[k].s))
                    return;
                J.w[k] = ws[k];
                J.y[k] = ys[k];
                J.cb[k] = (int)nblk;
                nblk += (long)((ws[k].n_out + PN - 1) / PN);
            } else {
                J.w[k] = ws[0];
                J.y[k] = ys[0];
                J.cb[k] = INT_MAX;
            }
        }
        if (nblk <= 0 || nblk > INT_MAX / 2) return;
        if (bm != 32 && bm != 64 && bm != 128) bm = pick_bm(be, nblk * PN, n, type_is_float(T));
        const int nb = (int)nblk;
        if constexpr (type_is_float(T)) {
            using E =
                typename std::conditional<T == CHORD_TYPE_BF16, __nv_bfloat16, __half>::type;
            if (ws[0].n_in % 64 != 0 || !aligned16(x)) return;
            if (bm == 128 && (size_t)hhlay<128, 4>::TOTAL > be->smem_per_block_optin) bm = 64;
            *done = bm == 128  ? launch_hh<T, E, 128>(be, J, nb, x, n, ws[0].n_in)
                    : bm == 64 ? launch_hh<T, E, 64>(be, J, nb, x, n, ws[0].n_in)
                               : launch_hh<T, E, 32>(be, J, nb, x, n, ws[0].n_in);
        } else {
            if (ws[0].n_in % 64 != 0 || !xa || xa->qb != act_block(T)) return;
            if (!aligned16(xa->q) || !aligned16(xa->d) || !aligned16(xa->bs) ||
                (xa->s && !aligned16(xa->s)))
                return;
            xact a = {xa->q, xa->d, xa->bs, xa->s};
            if (bm == 128)
                *done = launch_q8<T, 128>(be, J, nb, a, n);
            else if (bm == 64)
                *done = launch_q8<T, 64>(be, J, nb, a, n);
            else
                *done = launch_q8<T, 32>(be, J, nb, a, n);
        }
    }
}

} /* namespace */

bool cuda_gemm_pipe(cuda_backend *be, int type, int nw, const wview *ws, const float *x,
                    const qact *xa, float *const *ys, int n, int bm) {
    if (n <= 0 || nw < 1 || nw > GEMM_MAXW) return false;
    bool done = false;
    CUDA_TYPE_SWITCH(type, pipe_launch, (void)0, be, nw, ws, x, xa, ys, n, bm, &done);
    return done;
}
