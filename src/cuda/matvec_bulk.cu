/* Decode matvec for big weights: the weights stream through shared memory in tiles of
 * rt consecutive rows, each tile fetched by two bulk copies (cp.async.bulk: quant bytes,
 * scale entries) that complete on an mbarrier. One block of MB_WARPS warps per SM walks
 * tiles blockIdx.x, + gridDim.x, ...; while it computes one tile the next `stages - 1`
 * are in flight, and the first ones go out before the PDL wait. So every SM keeps
 * ~100-200 KB of weight reads outstanding all the time, where the register kernels
 * (matvec.cu) issue their loads in rounds between which blocks retire and launch
 * (measured: ~1.8 TB/s on Llama-2-7B's matrices).
 *
 * With one warp per row (rt = MB_WARPS) a lane adds its units in the order of
 * matvec_q_kernel, so the sums are bit-identical; with shorter tiles (wpr warps per row)
 * each warp adds a contiguous run of the lane's units and the parts are added in order. */
#include "mvjob.cuh"
#include "ptx.cuh"

#define MB_WARPS 16
#define MB_MAXS 8

/* ------------------------------------------ weight units from shared memory */

/* A tile in shared memory: quant bytes q of its rows (nb blocks each), scale entries s. */
typedef struct sview {
    const uint8_t *q, *s;
    int nb;
} sview;

__host__ __device__ constexpr bool bulk_type(int t) {
    return t == CHORD_TYPE_Q4_0 || t == CHORD_TYPE_Q8_0 || t == CHORD_TYPE_Q4_K ||
           t == CHORD_TYPE_Q6_K;
}

__device__ __forceinline__ uint4 sh16(const uint8_t *p) {
    return *reinterpret_cast<const uint4 *>(p);
}
__device__ __forceinline__ uint32_t sh_u16(const uint8_t *p) {
    return *reinterpret_cast<const unsigned short *>(p);
}
__device__ __forceinline__ uint32_t sh_u32(const uint8_t *p) {
    return *reinterpret_cast<const uint32_t *>(p);
}

/* The same fields as unit_load<T> (quant.cuh) fills, from the tile. */
template <int T> __device__ __forceinline__ uraw unit_load_sh(const sview &w, int row, int u) {
    uraw r;
    if constexpr (T == CHORD_TYPE_Q4_0) {
        const int idx = row * w.nb + u;
        r.a = sh16(w.q + idx * 16);
        r.s0 = sh_u16(w.s + idx * 2);
    } else if constexpr (T == CHORD_TYPE_Q8_0) {
        const int idx = row * w.nb + u;
        r.a = sh16(w.q + idx * 32);
        r.b = sh16(w.q + idx * 32 + 16);
        r.s0 = sh_u16(w.s + idx * 2);
    } else if constexpr (T == CHORD_TYPE_Q4_K) {
        const int b = u >> 3, i = u & 7, c = i >> 1, l0 = (i & 1) * 16;
        const int idx = row * w.nb + b;
        r.a = sh16(w.q + idx * 128 + 32 * c + l0);
        const uint4 s = sh16(w.s + idx * 16);
        r.s0 = s.x, r.s1 = s.y, r.s2 = s.z, r.s3 = s.w;
    } else {
        static_assert(T == CHORD_TYPE_Q6_K, "no shared-memory loader for this type");
        const int b = u >> 3, i = u & 7, hh = i >> 2, k = (i >> 1) & 1, l0 = (i & 1) * 16;
        const int idx = row * w.nb + b;
        const uint8_t *qb = w.q + idx * 192, *s = w.s + idx * 20;
        r.a = sh16(qb + 64 * hh + 32 * k + l0);
        r.b = sh16(qb + 128 + 32 * hh + l0);
        r.s0 = sh_u32(s + 8 * hh);
        r.s1 = sh_u32(s + 8 * hh + 4);
        r.s2 = sh_u32(s + 16);
    }
    return r;
}

/* ------------------------------------------------------------ the kernel */

/* Where tile t lies: weight k, first row, rows, and its scale bytes [a16, b16) as
 * copied (16-byte aligned, so the tile's first entry sits at a - a16). */
typedef struct mbtile {
    int k, rows;
    int64_t row0;
    size_t qoff, qbytes, a, a16, b16;
} mbtile;

template <int T>
__device__ __forceinline__ void tile_bytes(const wview &w, int64_t row0, int rows, mbtile &t) {
    constexpr qinfo qi = qinfo_of(T);
    const size_t qrow = (size_t)w.nb * qi.qlen, srow = (size_t)w.nb * qi.sb;
    t.qoff = (size_t)row0 * qrow;
    t.qbytes = (size_t)rows * qrow;
    t.a = (size_t)row0 * srow;
    t.a16 = t.a & ~(size_t)15;
    const size_t b16 = (t.a + (size_t)rows * srow + 15) & ~(size_t)15,
                 end = (size_t)w.n_out * srow;
    t.b16 = b16 < end ? b16 : end;
}

template <int T0, int T1>
__device__ __forceinline__ mbtile tile_of(const mvjob &job, unsigned t, int rt) {
    mbtile m;
    m.k = job_pick_tile(job, t);
    const wview &w = job.w[m.k];
    m.row0 = (int64_t)(t - job.bstart[m.k]) * rt;
    m.rows = (int)(w.n_out - m.row0 < rt ? w.n_out - m.row0 : rt);
    if (m.k < job.nw0)
        tile_bytes<T0>(w, m.row0, m.rows, m);
    else
        tile_bytes<T1>(w, m.row0, m.rows, m);
    return m;
}

/* All threads: fetch tile t into dst with 16-byte cp.async copies (the caller commits). */
template <int T0, int T1>
__device__ __forceinline__ void tile_fetch_coop(const mvjob &job, unsigned t, int rt,
                                                uint8_t *dst, size_t qcap) {
    const mbtile m = tile_of<T0, T1>(job, t, rt);
    const wview &w = job.w[m.k];
    const uint8_t *q = w.q + m.qoff, *sc = w.s + m.a16;
    const unsigned nq = (unsigned)(m.qbytes >> 4), ns = (unsigned)((m.b16 - m.a16) >> 4);
    for (unsigned c = threadIdx.x; c < nq + ns; c += blockDim.x)
        if (c < nq)
            cp16(dst + 16 * (size_t)c, q + 16 * (size_t)c, true);
        else
            cp16(dst + qcap + 16 * (size_t)(c - nq), sc + 16 * (size_t)(c - nq), true);
}

/* One warp's part h (of wpr) of row r of the tile: units lane + 32 j for j in its run. */
template <int T>
__device__ __forceinline__ float tile_row(const sview &v, int r, int h, int wpr, int lane,
                                          const xact &xa) {
    const int n_units = v.nb * units_per_block(T);
    const int J = (n_units + 31) >> 5;
    const int j0 = J * h / wpr, j1 = J * (h + 1) / wpr;
    float acc = 0.f;
    for (int j = j0; j < j1; j += 4) {
        uraw raw[4];
#pragma unroll
        for (int i = 0; i < 4; i++) {
            const int u = lane + 32 * (j + i);
            if (j + i < j1 && u < n_units) raw[i] = unit_load_sh<T>(v, r, u);
        }
#pragma unroll
        for (int i = 0; i < 4; i++) {
            const int u = lane + 32 * (j + i);
            if (j + i < j1 && u < n_units) acc += unit_dot<T>(raw[i], u, xa);
        }
    }
    return acc;
}

template <int T0, int T1, int S>
__global__ void __launch_bounds__(32 * MB_WARPS, 1)
    matvec_bulk_kernel(const __grid_constant__ mvjob job, xact xa, int rt, unsigned stage_bytes,
                       unsigned qcap, unsigned n_tiles, int dbg) {
    extern __shared__ __align__(128) uint8_t mb_smem[];
    __shared__ float red[2][MB_WARPS];
    ktrace kt(job.kt);
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    const int wpr = MB_WARPS / rt, r = warp / wpr, h = warp % wpr;
    const unsigned G = gridDim.x;
    /* the weights do not depend on the previous kernel: the first tiles go out now (one
     * commit group per tile, empty ones too, so that "all but the newest S - 1 groups"
     * means tile i) */
    for (int s = 0; s < S; s++) {
        if (blockIdx.x + s * G < n_tiles)
            tile_fetch_coop<T0, T1>(job, blockIdx.x + s * G, rt,
                                    mb_smem + (size_t)s * stage_bytes, qcap);
        cp_commit();
    }
    pdl_wait(); /* x comes from the previous kernel */
    kt.released();
    pdl_trigger();
    unsigned i = 0;
    for (unsigned t = blockIdx.x; t < n_tiles; t += G, i++) {
        const int s = (int)(i % (unsigned)S);
        cp_wait<S - 1>();
        __syncthreads(); /* every thread's copies of tile i are in */
        const mbtile m = tile_of<T0, T1>(job, t, rt);
        const uint8_t *base = mb_smem + (size_t)s * stage_bytes;
        float acc = 0.f;
        if (r < m.rows && !dbg) {
            const sview v = {base, base + qcap + (m.a - m.a16), (int)job.w[m.k].nb};
            acc = m.k < job.nw0 ? tile_row<T0>(v, r, h, wpr, lane, xa)
                                : tile_row<T1>(v, r, h, wpr, lane, xa);
        }
        acc = mv_warp_sum(acc);
        if (wpr > 1 && lane == 0) red[i & 1][warp] = acc;
        __syncthreads(); /* stage s is read: refill it */
        if (t + S * G < n_tiles)
            tile_fetch_coop<T0, T1>(job, t + S * G, rt, mb_smem + (size_t)s * stage_bytes,
                                    qcap);
        cp_commit();
        if (lane == 0 && h == 0 && r < m.rows) {
            float v = acc;
            if (wpr > 1) {
                v = red[i & 1][warp];
                for (int p = 1; p < wpr; p++)
                    v += red[i & 1][warp + p];
            }
            const int64_t o = m.row0 + r;
            job.y[m.k][o] = v;
            if (job.res[m.k]) job.res[m.k][o] += v;
        }
    }
    cp_wait<0>();
}

/* ------------------------------------------------------------ launch */

static size_t bulk_qrow(int t, const wview &w) {
    return (size_t)w.nb * (size_t)qinfo_of(t).qlen;
}
static size_t bulk_srow(int t, const wview &w) {
    return (size_t)w.nb * (size_t)qinfo_of(t).sb;
}

template <int T0, int T1>
static bool launch_bulk(cuda_backend *be, mvjob &job, const xact &xa) {
    /* stage layout: rt rows of quant bytes, then their scale bytes (+32: 16-byte rounding
     * at both ends); the largest of the job's weights */
    size_t qrow = 0, srow = 0;
    for (int k = 0; k < job.nw; k++) {
        const int t = k < job.nw0 ? T0 : T1;
        const size_t q = bulk_qrow(t, job.w[k]), s = bulk_srow(t, job.w[k]);
        qrow = q > qrow ? q : qrow;
        srow = s > srow ? s : srow;
    }
    const size_t budget = be->smem_per_block_optin > 4096 ? be->smem_per_block_optin - 2048 : 0;
    const int64_t G = be->n_sm;
    int rt = 0;
    int64_t best = 0;
    /* the tile height with the shortest longest block (rows), among those with two stages
     * in shared memory; ties: the taller tile */
    const int rmax =
        be->mv_bulk_rows > 0 && be->mv_bulk_rows < MB_WARPS ? be->mv_bulk_rows : MB_WARPS;
    for (int cand = MB_WARPS; cand >= 1; cand /= 2) {
        if (cand > rmax) continue;
        const size_t stage = ((cand * (qrow + srow) + 32) + 127) & ~(size_t)127;
        if (2 * stage > budget) continue;
        int64_t tiles = 0;
        for (int k = 0; k < job.nw; k++)
            tiles += (job.w[k].n_out + cand - 1) / cand;
        const int64_t span = (tiles + G - 1) / G * cand;
        if (!rt || span < best) rt = cand, best = span;
    }
    if (!rt) return false;
    const size_t qcap = (size_t)rt * qrow;
    const size_t stage = ((qcap + (size_t)rt * srow + 32) + 127) & ~(size_t)127;
    int stages = (int)(budget / stage);
    const int smax =
        be->mv_bulk_stages > 0 && be->mv_bulk_stages < MB_MAXS ? be->mv_bulk_stages : MB_MAXS;
    stages = stages > smax ? smax : stages;
    int64_t tiles = 0;
    for (int k = 0; k < job.nw; k++) {
        job.bstart[k] = (unsigned)tiles;
        tiles += (job.w[k].n_out + rt - 1) / rt;
    }
    for (int k = job.nw; k <= CUDA_MV_MAXW; k++)
        job.bstart[k] = (unsigned)tiles;
    if (tiles >= (1LL << 31)) return false;
    const unsigned grid = (unsigned)(tiles < G ? tiles : G);
    cudaError_t e;
    if (stages >= 4)
        e = launch_pdl_smem(be, matvec_bulk_kernel<T0, T1, 4>, dim3(grid), dim3(32 * MB_WARPS),
                            4 * stage, job, xa, rt, (unsigned)stage, (unsigned)qcap,
                            (unsigned)tiles, be->mv_bulk_dbg);
    else if (stages == 3)
        e = launch_pdl_smem(be, matvec_bulk_kernel<T0, T1, 3>, dim3(grid), dim3(32 * MB_WARPS),
                            3 * stage, job, xa, rt, (unsigned)stage, (unsigned)qcap,
                            (unsigned)tiles, be->mv_bulk_dbg);
    else
        e = launch_pdl_smem(be, matvec_bulk_kernel<T0, T1, 2>, dim3(grid), dim3(32 * MB_WARPS),
                            2 * stage, job, xa, rt, (unsigned)stage, (unsigned)qcap,
                            (unsigned)tiles, be->mv_bulk_dbg);
    CUDA_CHECK(be, e);
    CUDA_LAUNCHED(be, "matvec_bulk_kernel");
    return true;
}

/* Can the tiles of weight w (type t) be fetched by bulk copies (16-byte sizes and
 * addresses for every tile)? */
static bool bulk_fits(int t, const wview &w) {
    const size_t srow = bulk_srow(t, w);
    return bulk_qrow(t, w) % 16 == 0 && ((size_t)w.n_out * srow) % 16 == 0 &&
           ((uintptr_t)w.q & 15) == 0 && ((uintptr_t)w.s & 15) == 0 && w.n_out < (1 << 30);
}

bool cuda_matvec_bulk(cuda_backend *be, mvjob &job, const xact &xa, int t0, int t1) {
    if (be->mv_bulk_kib <= 0 || be->n_sm <= 0 || !bulk_type(t0) || !bulk_type(t1)) return false;
    size_t bytes = 0;
    for (int k = 0; k < job.nw; k++) {
        const int t = k < job.nw0 ? t0 : t1;
        if (!bulk_fits(t, job.w[k])) return false;
        bytes += (size_t)job.w[k].n_out * (bulk_qrow(t, job.w[k]) + bulk_srow(t, job.w[k]));
    }
    if (bytes < (size_t)be->mv_bulk_kib * 1024) return false;
#define MB_CASE(A, B)                                                                          \
    if (t0 == (A) && t1 == (B)) return launch_bulk<A, B>(be, job, xa);
    MB_CASE(CHORD_TYPE_Q4_K, CHORD_TYPE_Q4_K)
    MB_CASE(CHORD_TYPE_Q6_K, CHORD_TYPE_Q6_K)
    MB_CASE(CHORD_TYPE_Q4_K, CHORD_TYPE_Q6_K)
    MB_CASE(CHORD_TYPE_Q8_0, CHORD_TYPE_Q8_0)
    MB_CASE(CHORD_TYPE_Q4_0, CHORD_TYPE_Q4_0)
#undef MB_CASE
    return false;
}
