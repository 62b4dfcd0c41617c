/* Dot products in the CPU backend's float order (src/cpu/kernels_scalar.c, which is
 * llama.cpp's x86 order), for the types whose usual GPU order (one float per unit, summed
 * per lane, then across the warp; per-16 float steps in the mma GEMM) is not close enough
 * for the chaotic golden models.
 *
 * The reference keeps 8 float lanes per row; lane m accumulates, block after block, a
 * float scale times an integer: the sum of the products of the elements e with
 * (e % 32) / 4 == m (times the sub-block scales, for K-quants). Some types keep min terms
 * apart (one chain, or Q4_K's four). Integer sums are exact in any order, so a block's
 * integers come from one thread (32-blocks) or four (superblocks, added by shuffles),
 * with the block's weights loaded once into registers for up to XT tokens; only the float
 * chains run in order: one thread per (token, chain) over the blocks staged in shared
 * memory, XC at a time. The lanes are then summed as hsum8 does. */
#ifndef CHORD_CUDA_EXACT_DOT_CUH
#define CHORD_CUDA_EXACT_DOT_CUH

#include "quant.cuh"

/* decode (n = 1) takes this order for these types (fast enough to afford it) */
__host__ __device__ constexpr bool exact_lanes_type(int t) {
    return t == CHORD_TYPE_Q4_1 || t == CHORD_TYPE_Q5_1 || t == CHORD_TYPE_Q2_K ||
           t == CHORD_TYPE_Q5_K;
}
/* short batches take it for these (the mma GEMM's order elsewhere) */
__host__ __device__ constexpr bool exact_batch_type(int t) {
    return exact_lanes_type(t) || t == CHORD_TYPE_Q3_K || t == CHORD_TYPE_Q4_K ||
           t == CHORD_TYPE_Q6_K;
}
/* threads per block in the integer phase */
__host__ __device__ constexpr int xblk_split(int t) {
    return t == CHORD_TYPE_Q4_1 || t == CHORD_TYPE_Q5_1 ? 1 : 4;
}
/* float chains kept apart from the 8 lanes */
__host__ __device__ constexpr int xblk_nmin(int t) {
    return t == CHORD_TYPE_Q4_K                                                   ? 4
           : t == CHORD_TYPE_Q4_1 || t == CHORD_TYPE_Q5_1 || t == CHORD_TYPE_Q5_K ? 1
                                                                                  : 0;
}

/* One block's integers for one token: lanes i[8]; pi: Q2_K's mins per lane (scale g,
 * applied first), Q4_K's four min products (chains with scale g); pm: Q5_K's min product
 * (one chain, scale g). Q4_1 / Q5_1: g is the min term itself, added to its chain. */
typedef struct xblk {
    int i[8];
    int pi[8];
    int pm;
    float f, g;
} xblk;

__device__ __forceinline__ uint32_t word4(const int4 &v, int k) {
    return (uint32_t)(k == 0 ? v.x : k == 1 ? v.y : k == 2 ? v.z : v.w);
}
__device__ __forceinline__ uint32_t word4u(const uint4 &v, int k) {
    return k == 0 ? v.x : k == 1 ? v.y : k == 2 ? v.z : v.w;
}
__device__ __forceinline__ void xb_zero(xblk &o) {
#pragma unroll
    for (int m = 0; m < 8; m++)
        o.i[m] = 0, o.pi[m] = 0;
    o.pm = 0;
}

/* A block's weights (this thread's part), loaded once for all tokens of a pass. */
typedef struct wblk {
    uint4 a, b, c, d, e, f;
    uint32_t s, t;
} wblk;

template <int T>
__device__ __forceinline__ wblk wload(const wview &w, int64_t row, int64_t b, int part);
template <int T>
__device__ __forceinline__ void xcalc(xblk &o, const wblk &r, int64_t b, const xact &x,
                                      int part);

/* ---- Q4_1 / Q5_1: element j < 16 is the low nibble of byte j, j >= 16 the high nibble
 * of byte j - 16: lane m < 4 is the low nibbles of word m, lane m + 4 the high ones */
template <int T>
__device__ __forceinline__ wblk wload_32min(const wview &w, int64_t row, int64_t b) {
    const size_t idx = (size_t)row * w.nb + b;
    wblk r;
    r.a = ld16_stream(w.q + idx * 16);
    if constexpr (T == CHORD_TYPE_Q4_1) {
        r.s = __ldg(reinterpret_cast<const uint32_t *>(w.s + idx * 4));
        r.t = 0;
    } else {
        const uint2 v = __ldg(reinterpret_cast<const uint2 *>(w.s + idx * 8));
        r.s = v.x, r.t = v.y;
    }
    return r;
}
template <int T>
__device__ __forceinline__ void xcalc_32min(xblk &o, const wblk &r, int64_t b, const xact &x) {
    const int4 x0 = ldx16(x.q + 32 * b), x1 = ldx16(x.q + 32 * b + 16);
#pragma unroll
    for (int m = 0; m < 4; m++) {
        uint32_t lo = word4u(r.a, m) & M4, hi = (word4u(r.a, m) >> 4) & M4;
        if constexpr (T == CHORD_TYPE_Q5_1) {
            lo |= expand4(r.t >> (4 * m));
            hi |= expand4(r.t >> (16 + 4 * m));
        }
        o.i[m] = __dp4a((int)lo, (int)word4(x0, m), 0);
        o.i[m + 4] = __dp4a((int)hi, (int)word4(x1, m), 0);
    }
    o.f = __fmul_rn(half_lo(r.s), xldf(x.d + b));
    o.g = __fmul_rn(half_hi(r.s), xldf(x.s + b));
}
template <>
__device__ __forceinline__ wblk wload<CHORD_TYPE_Q4_1>(const wview &w, int64_t row, int64_t b,
                                                       int) {
    return wload_32min<CHORD_TYPE_Q4_1>(w, row, b);
}
template <>
__device__ __forceinline__ wblk wload<CHORD_TYPE_Q5_1>(const wview &w, int64_t row, int64_t b,
                                                       int) {
    return wload_32min<CHORD_TYPE_Q5_1>(w, row, b);
}
template <>
__device__ __forceinline__ void xcalc<CHORD_TYPE_Q4_1>(xblk &o, const wblk &r, int64_t b,
                                                       const xact &x, int) {
    xcalc_32min<CHORD_TYPE_Q4_1>(o, r, b, x);
}
template <>
__device__ __forceinline__ void xcalc<CHORD_TYPE_Q5_1>(xblk &o, const wblk &r, int64_t b,
                                                       const xact &x, int) {
    xcalc_32min<CHORD_TYPE_Q5_1>(o, r, b, x);
}

/* ---- Q2_K / Q3_K: chunk k = 4h + g of 32 elements is 2 bits at 2g of qs[32h + l]
 * (Q3_K: minus 4 where bit k of hmask[l] is clear); lanes m < 4 take the scale of
 * sub-block 2k, m >= 4 that of 2k + 1. Part p: half h = p / 2, chunks g = 2 (p % 2) + 0, 1.
 * Q2_K's scale bytes: low nibble scale, high nibble min (against per-16 sums). */
/* The chunk loop Q2_K, Q3_K and Q6_K share: part p covers chunks k = 4 (p / 2) + g, g =
 * 2 (p % 2) + gg; vals(gg, g, k, m, va, vc) gives the bytes of lanes m and m + 4 of chunk
 * k, scales(gg, k, lo, hi) the scales of its sub-blocks 2k and 2k + 1. */
template <typename V, typename S>
__device__ __forceinline__ void k_chunks(xblk &o, const int8_t *xq, int part, V vals,
                                         S scales) {
    const int h = part >> 1;
#pragma unroll
    for (int gg = 0; gg < 2; gg++) {
        const int g = 2 * (part & 1) + gg, k = 4 * h + g;
        const int4 xa = ldx16(xq + 32 * k), xc = ldx16(xq + 32 * k + 16);
        int sc_lo, sc_hi;
        scales(gg, k, sc_lo, sc_hi);
#pragma unroll
        for (int m = 0; m < 4; m++) {
            uint32_t va, vc;
            vals(gg, g, k, m, va, vc);
            o.i[m] += sc_lo * __dp4a((int)va, (int)word4(xa, m), 0);
            o.i[m + 4] += sc_hi * __dp4a((int)vc, (int)word4(xc, m), 0);
        }
    }
}

template <>
__device__ __forceinline__ wblk wload<CHORD_TYPE_Q2_K>(const wview &w, int64_t row, int64_t b,
                                                       int part) {
    const size_t idx = (size_t)row * w.nb + b;
    const uint8_t *qb = w.q + idx * 64;
    /* 16 scale bytes, then d | dmin; entries are 20 bytes apart: word loads */
    const uint32_t *s4 = reinterpret_cast<const uint32_t *>(w.s + idx * 20);
    wblk r;
    r.c = make_uint4(__ldg(s4), __ldg(s4 + 1), __ldg(s4 + 2), __ldg(s4 + 3));
    r.s = __ldg(s4 + 4);
    const int h = part >> 1;
    r.a = ld16_stream(qb + 32 * h);
    r.b = ld16_stream(qb + 32 * h + 16);
    return r;
}
template <>
__device__ __forceinline__ void xcalc<CHORD_TYPE_Q2_K>(xblk &o, const wblk &r, int64_t b,
                                                       const xact &x, int part) {
    const int8_t *xq = x.q + 256 * b;
    const int16_t *bs = x.bs + 16 * b;
    xb_zero(o);
    k_chunks(
        o, xq, part,
        [&](int, int g, int, int m, uint32_t &va, uint32_t &vc) {
            va = (word4u(r.a, m) >> (2 * g)) & 0x03030303u;
            vc = (word4u(r.b, m) >> (2 * g)) & 0x03030303u;
        },
        [&](int, int k, int &lo, int &hi) {
            const uint32_t scw = word4u(r.c, k / 2); /* bytes 2k, 2k + 1 at 16 (k % 2) */
            lo = (int)((scw >> (16 * (k & 1))) & 15u);
            hi = (int)((scw >> (16 * (k & 1) + 8)) & 15u);
        });
    /* the mins of lanes m = 2 part, 2 part + 1 (scale bytes 2m, 2m + 1) */
#pragma unroll
    for (int mm = 0; mm < 2; mm++) {
        const int m = 2 * part + mm;
        const uint32_t scw = word4u(r.c, part);
        const int mn0 = (int)((scw >> (16 * mm + 4)) & 15u);
        const int mn1 = (int)((scw >> (16 * mm + 12)) & 15u);
        o.pi[m] = mn0 * bs[2 * m] + mn1 * bs[2 * m + 1];
    }
    const float ad = xldf(x.d + b);
    o.f = __fmul_rn(ad, half_lo(r.s));
    o.g = __fmul_rn(-ad, half_hi(r.s));
}

template <>
__device__ __forceinline__ wblk wload<CHORD_TYPE_Q3_K>(const wview &w, int64_t row, int64_t b,
                                                       int part) {
    const size_t idx = (size_t)row * w.nb + b;
    const uint8_t *qb = w.q + idx * 96; /* hmask[32], qs[64] */
    const int h = part >> 1;
    wblk r;
    r.a = ld16_stream(qb + 32 + 32 * h);
    r.b = ld16_stream(qb + 48 + 32 * h);
    r.c = ld16(qb);
    r.d = ld16(qb + 16);
    r.e = ld16(w.s + idx * 16); /* 12 scale bytes, d */
    return r;
}
/* Q3_K's 6-bit scale of sub-block s, from the 12 scale bytes in registers */
__device__ __forceinline__ int q3k_scale(const uint4 &s, int sb) {
    const int lo = (byte12(s.x, s.y, s.z, sb % 8) >> (4 * (sb / 8))) & 0x0F;
    const int hi = (byte12(s.x, s.y, s.z, 8 + sb % 4) >> (2 * (sb / 4))) & 0x03;
    return (lo | hi << 4) - 32;
}
template <>
__device__ __forceinline__ void xcalc<CHORD_TYPE_Q3_K>(xblk &o, const wblk &r, int64_t b,
                                                       const xact &x, int part) {
    const int8_t *xq = x.q + 256 * b;
    xb_zero(o);
    /* 2 low bits, then 4 more where the hmask bit is set: v - 4 with 0..7 as bytes */
    k_chunks(
        o, xq, part,
        [&](int, int g, int k, int m, uint32_t &va, uint32_t &vc) {
            va = __vsub4(((word4u(r.a, m) >> (2 * g)) & 0x03030303u) |
                             (((word4u(r.c, m) >> k) & ONES) << 2),
                         0x04040404u);
            vc = __vsub4(((word4u(r.b, m) >> (2 * g)) & 0x03030303u) |
                             (((word4u(r.d, m) >> k) & ONES) << 2),
                         0x04040404u);
        },
        [&](int, int k, int &lo, int &hi) {
            lo = q3k_scale(r.e, 2 * k);
            hi = q3k_scale(r.e, 2 * k + 1);
        });
    o.f = __fmul_rn(xldf(x.d + b), half_lo(r.e.w));
    o.g = 0.f;
}

/* ---- Q4_K / Q5_K: sub-block j is nibble j % 2 of qs[32 (j / 2) + l] (Q5_K: plus bit j
 * of qh[l]); its 6-bit scale multiplies all 8 lanes. Part p: sub-blocks 2p, 2p + 1, and
 * the min product of that pair (Q4_K's chain p; Q5_K adds the four into one chain). */
template <int T>
__device__ __forceinline__ wblk wload_k45(const wview &w, int64_t row, int64_t b, int part) {
    const size_t idx = (size_t)row * w.nb + b;
    constexpr int QBY = T == CHORD_TYPE_Q5_K ? 160 : 128, QS = T == CHORD_TYPE_Q5_K ? 32 : 0;
    const uint8_t *qb = w.q + idx * QBY;
    wblk r;
    r.e = ld16(w.s + idx * 16); /* d | dmin, 12 scale bytes */
    r.a = ld16_stream(qb + QS + 32 * part);
    r.b = ld16_stream(qb + QS + 32 * part + 16);
    if constexpr (T == CHORD_TYPE_Q5_K) {
        r.c = ld16(qb);
        r.d = ld16(qb + 16);
    }
    return r;
}
template <int T>
__device__ __forceinline__ void xcalc_k45(xblk &o, const wblk &r, int64_t b, const xact &x,
                                          int part) {
    const int8_t *xq = x.q + 256 * b;
    const int16_t *bs = x.bs + 16 * b;
    xb_zero(o);
    int pm = 0;
#pragma unroll
    for (int hb = 0; hb < 2; hb++) {
        const int j = 2 * part + hb;
        int sc, mn;
        k4_sm_reg(r.e.y, r.e.z, r.e.w, j, &sc, &mn);
        pm += mn * (bs[2 * j] + bs[2 * j + 1]);
        const int4 xa = ldx16(xq + 32 * j), xc = ldx16(xq + 32 * j + 16);
#pragma unroll
        for (int m = 0; m < 4; m++) {
            uint32_t va = (word4u(r.a, m) >> (4 * hb)) & M4;
            uint32_t vc = (word4u(r.b, m) >> (4 * hb)) & M4;
            if constexpr (T == CHORD_TYPE_Q5_K) {
                va |= ((word4u(r.c, m) >> j) & ONES) << 4;
                vc |= ((word4u(r.d, m) >> j) & ONES) << 4;
            }
            o.i[m] += sc * __dp4a((int)va, (int)word4(xa, m), 0);
            o.i[m + 4] += sc * __dp4a((int)vc, (int)word4(xc, m), 0);
        }
    }
    if constexpr (T == CHORD_TYPE_Q4_K)
        o.pi[part] = pm;
    else
        o.pm = pm;
    const float ad = xldf(x.d + b);
    o.f = __fmul_rn(ad, half_lo(r.e.x));
    o.g = __fmul_rn(-ad, half_hi(r.e.x));
}
template <>
__device__ __forceinline__ wblk wload<CHORD_TYPE_Q4_K>(const wview &w, int64_t row, int64_t b,
                                                       int part) {
    return wload_k45<CHORD_TYPE_Q4_K>(w, row, b, part);
}
template <>
__device__ __forceinline__ wblk wload<CHORD_TYPE_Q5_K>(const wview &w, int64_t row, int64_t b,
                                                       int part) {
    return wload_k45<CHORD_TYPE_Q5_K>(w, row, b, part);
}
template <>
__device__ __forceinline__ void xcalc<CHORD_TYPE_Q4_K>(xblk &o, const wblk &r, int64_t b,
                                                       const xact &x, int part) {
    xcalc_k45<CHORD_TYPE_Q4_K>(o, r, b, x, part);
}
template <>
__device__ __forceinline__ void xcalc<CHORD_TYPE_Q5_K>(xblk &o, const wblk &r, int64_t b,
                                                       const xact &x, int part) {
    xcalc_k45<CHORD_TYPE_Q5_K>(o, r, b, x, part);
}

/* ---- Q6_K: chunk k = 4h + g, element 128h + 32g + l: 4 bits of ql[64h + 32 (g & 1) + l]
 * (high nibble for g >= 2) and 2 bits at 2g of qh[32h + l], minus 32; int8 scales per 16.
 * Part p: h = p / 2, chunks g = 2 (p % 2) + 0, 1 (the two 32-byte runs of ql). */
template <>
__device__ __forceinline__ wblk wload<CHORD_TYPE_Q6_K>(const wview &w, int64_t row, int64_t b,
                                                       int part) {
    const size_t idx = (size_t)row * w.nb + b;
    const uint8_t *qb = w.q + idx * 192; /* ql[128], qh[64] */
    const int h = part >> 1;
    const uint32_t *s4 = reinterpret_cast<const uint32_t *>(w.s + idx * 20);
    wblk r;
    r.a = ld16_stream(qb + 64 * h); /* ql run of even chunks: l 0..15, 16..31 */
    r.b = ld16_stream(qb + 64 * h + 16);
    r.c = ld16_stream(qb + 64 * h + 32); /* odd chunks */
    r.d = ld16_stream(qb + 64 * h + 48);
    r.e = ld16(qb + 128 + 32 * h); /* qh, l 0..15, 16..31 */
    r.f = ld16(qb + 128 + 32 * h + 16);
    r.s = __ldg(s4 + part); /* scale bytes 4p..4p+3: chunks 2p, 2p + 1 */
    r.t = __ldg(s4 + 4);    /* d */
    return r;
}
template <>
__device__ __forceinline__ void xcalc<CHORD_TYPE_Q6_K>(xblk &o, const wblk &r, int64_t b,
                                                       const xact &x, int part) {
    const int8_t *xq = x.q + 256 * b;
    xb_zero(o);
    k_chunks(
        o, xq, part,
        [&](int gg, int g, int, int m, uint32_t &va, uint32_t &vc) {
            const uint4 &la = gg == 0 ? r.a : r.c, &lc = gg == 0 ? r.b : r.d;
            const int sh = 4 * (g >> 1);
            va = __vsub4(((word4u(la, m) >> sh) & M4) |
                             (((word4u(r.e, m) >> (2 * g)) & 0x03030303u) << 4),
                         0x20202020u);
            vc = __vsub4(((word4u(lc, m) >> sh) & M4) |
                             (((word4u(r.f, m) >> (2 * g)) & 0x03030303u) << 4),
                         0x20202020u);
        },
        [&](int gg, int, int &lo, int &hi) {
            lo = (int)(int8_t)((r.s >> (16 * gg)) & 0xFFu);
            hi = (int)(int8_t)((r.s >> (16 * gg + 8)) & 0xFFu);
        });
    o.f = __fmul_rn(xldf(x.d + b), half_lo(r.t));
    o.g = 0.f;
}

/* ------------------------------------------------------------ rows */

#define XC 32  /* 32-blocks per stage (superblocks: XC / 4) */
#define XT 4   /* tokens per pass */
#define XNC 12 /* chains per token at most: 8 lanes + Q4_K's 4 min chains */
typedef struct xstage {
    int i[XT][XC][9];  /* 8 lanes (+ pad) */
    int pi[XT][XC][9]; /* Q2_K: the lanes' min products; Q4_K: the 4 min chains' */
    int pm[XT][XC];    /* Q5_K: the min product */
    float f[XT][XC], g[XT][XC];
    float fin[XT][XNC];
} xstage;

/* Token t of the activations (token-major, n_in per token) */
template <int T> __device__ __forceinline__ xact xact_tok(const xact &xa, int64_t n_in, int t) {
    constexpr int QB = act_block(T);
    const size_t u = (size_t)t;
    return {xa.q + u * n_in, xa.d + u * (n_in / QB), xa.bs + u * (n_in / 16),
            xa.s ? xa.s + u * (n_in / QB) : NULL};
}

/* One chain step over block k of the stage: lanes ch < 8, then the min chains */
template <int T>
__device__ __forceinline__ float xchain(float acc, const xstage &st, int t, int k, int ch) {
    if (ch < 8) {
        if constexpr (T == CHORD_TYPE_Q2_K)
            acc = __fmaf_rn(st.g[t][k], (float)st.pi[t][k][ch], acc);
        return __fmaf_rn(st.f[t][k], (float)st.i[t][k][ch], acc);
    }
    if constexpr (T == CHORD_TYPE_Q4_K)
        return __fmaf_rn(st.g[t][k], (float)st.pi[t][k][ch - 8], acc);
    else if constexpr (T == CHORD_TYPE_Q5_K)
        return __fmaf_rn(st.g[t][k], (float)st.pm[t][k], acc);
    else
        return __fadd_rn(acc, st.g[t][k]); /* Q4_1 / Q5_1 */
}

/* Row `row` against tokens t0 .. t0 + nt - 1 (nt <= XT): st.fin[t][chain] gets every
 * chain's value (the caller sums them with xfinal). */
template <int T>
__device__ __forceinline__ void exact_rows(const wview &w, int64_t row, const xact &xa,
                                           int64_t n_in, int t0, int nt, xstage &st, int lane) {
    constexpr int SPL = xblk_split(T), CB = XC / SPL, NCH = 8 + xblk_nmin(T);
    const int bi = lane / SPL, part = lane % SPL;
    float cacc[2] = {0.f, 0.f};
    for (int64_t b0 = 0; b0 < w.nb; b0 += CB) {
        const int nbk = w.nb - b0 < CB ? (int)(w.nb - b0) : CB;
        if (bi < nbk) { /* whole groups of SPL lanes */
            const wblk r = wload<T>(w, row, b0 + bi, part);
            for (int t = 0; t < nt; t++) {
                xblk o;
                xcalc<T>(o, r, b0 + bi, xact_tok<T>(xa, n_in, t0 + t), part);
                if constexpr (SPL > 1) {
                    const unsigned gm = 0xFu << (lane & ~3);
#pragma unroll
                    for (int sh = 1; sh < SPL; sh <<= 1) {
#pragma unroll
                        for (int m = 0; m < 8; m++) {
                            o.i[m] += __shfl_xor_sync(gm, o.i[m], sh);
                            if constexpr (T == CHORD_TYPE_Q2_K || T == CHORD_TYPE_Q4_K)
                                o.pi[m] += __shfl_xor_sync(gm, o.pi[m], sh);
                        }
                        if constexpr (T == CHORD_TYPE_Q5_K)
                            o.pm += __shfl_xor_sync(gm, o.pm, sh);
                    }
                }
                if (part == 0) {
#pragma unroll
                    for (int m = 0; m < 8; m++)
                        st.i[t][bi][m] = o.i[m], st.pi[t][bi][m] = o.pi[m];
                    st.pm[t][bi] = o.pm;
                    st.f[t][bi] = o.f;
                    st.g[t][bi] = o.g;
                }
            }
        }
        __syncwarp();
#pragma unroll
        for (int rr = 0; rr < 2; rr++) {
            const int c = lane + 32 * rr, t = c / NCH, ch = c % NCH;
            if (t < nt)
                for (int k = 0; k < nbk; k++)
                    cacc[rr] = xchain<T>(cacc[rr], st, t, k, ch);
        }
        __syncwarp();
    }
#pragma unroll
    for (int rr = 0; rr < 2; rr++) {
        const int c = lane + 32 * rr, t = c / NCH, ch = c % NCH;
        if (t < nt) st.fin[t][ch] = cacc[rr];
    }
    __syncwarp();
}

/* the reference's final sum of token t's chains: hsum8 of the lanes, then the mins */
template <int T> __device__ __forceinline__ float xfinal(const xstage &st, int t) {
    const float *l = st.fin[t];
    const float h = __fadd_rn(__fadd_rn(__fadd_rn(l[0], l[4]), __fadd_rn(l[2], l[6])),
                              __fadd_rn(__fadd_rn(l[1], l[5]), __fadd_rn(l[3], l[7])));
    if constexpr (T == CHORD_TYPE_Q4_K)
        return __fadd_rn(h, __fadd_rn(__fadd_rn(l[8], l[10]), __fadd_rn(l[9], l[11])));
    else if constexpr (xblk_nmin(T) == 1)
        return __fadd_rn(h, l[8]);
    else
        return h;
}

#endif
