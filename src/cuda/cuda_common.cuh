/* Shared by the CUDA backend's translation units: the backend struct, error recording,
 * the device view of a (repacked) weight, and the host launchers each .cu file exports.
 *
 * Error model: the vtable ops return void, so every CUDA failure is recorded in the
 * backend (first one wins, with file:line and CUDA's message) and returned by the next
 * sync as CHORD_E_BACKEND. Nothing here exits or prints. */
#ifndef CHORD_CUDA_COMMON_CUH
#define CHORD_CUDA_COMMON_CUH

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

/* error.h uses C11 _Noreturn, which C++ lacks. */
#ifndef _Noreturn
#define _Noreturn __attribute__((noreturn))
#endif
extern "C" {
#include "backend.h"
#include "error.h"
}

typedef struct cuda_scratch {
    void *p;
    size_t cap;
} cuda_scratch;

/* ROPE: the (cos, sin) table of cuda_rope_table */
enum {
    CUDA_SCRATCH_XQ = 0,   /* quantized activations */
    CUDA_SCRATCH_ATTN = 1, /* attention scores (exact prefill kernels) */
    CUDA_SCRATCH_ROPE = 2, /* RoPE cos/sin table */
    CUDA_SCRATCH_XH = 3,   /* activations as half / bfloat16 (F16 / BF16 GEMMs) */
    CUDA_SCRATCH_TOPK = 4, /* top-k candidates (topk.cu) */
    CUDA_SCRATCH_COUNT = 5
};

struct cuda_rec;
struct cuda_graph_entry;

/* Timing trace of the decode kernels (cuda_set_trace, tool_gpu_bench --decode): each
 * decode kernel gets its slot in a device buffer of TRACE_WORDS words per kernel. */
typedef struct ktr {
    unsigned long long *tr; /* NULL: no trace */
    int slot;
    int *prog; /* matvecs of a captured step: where to report seq (prefetch.cu), or NULL */
    int seq;
} ktr;
#define TRACE_SLOTS 1024
#define TRACE_WORDS 5

/* cuda_backend.early_trigger bits */
#define CUDA_EARLY_QS 1   /* activation quantization, swiglu + quantization */
#define CUDA_EARLY_NORM 2 /* rmsnorm + quantization */
#define CUDA_EARLY_ATTN 4 /* decode attention */

typedef struct cuda_backend {
    chord_backend base;
    int device;
    int n_sm;
    bool pdl; /* programmatic dependent launch for the matvec path (Hopper and newer) */
    size_t smem_per_block_optin;
    cudaStream_t stream;
    /* first recorded failure since the last sync */
    chord_status err_code;
    char err_msg[400];
    /* every device allocation we own (weights, alloc(), scratch), freed by destroy */
    void **allocs;
    size_t n_allocs, cap_allocs;
    cuda_scratch scratch[CUDA_SCRATCH_COUNT];
    unsigned scratch_gen; /* bumped whenever a scratch buffer moves (graphs hold pointers) */

    /* Decode steps (graph.cu). graphs: 0 = off (ops run as issued), 1 = CUDA graphs,
     * 2 = recorded and fused like a graph but launched directly (for tests). Between
     * step_begin and step_end the ops are recorded (rec), not launched. */
    int graphs;
    bool rec;
    int step_tok, step_pos;
    uint64_t step_key;
    bool fast_steps; /* step_begin may replay a context's last graph (CHORD_CUDA_FAST=0: no) */
    struct cuda_rec *recs;
    int n_recs, cap_recs;
    struct cuda_graph_entry *gcache;
    unsigned long gclock;
    int *h_in; /* pinned {token, pos} */
    int *d_in; /* device copy the graph's kernels read */
    int graph_fails;
    /* the graph of the last step of key last_key (replayed by step_begin without the
     * ops being issued while it is still held: serial last_serial) */
    uint64_t last_key;
    struct cuda_graph_entry *last_e;
    unsigned long last_serial, gserial;
    bool fuse_pro;  /* recorded steps: matvecs quantize their own input (CHORD_CUDA_FUSE=2) */
    int mv_persist; /* those matvecs' blocks per SM (persistent grid; 0: a block per tile) */
    int mv_pairs;   /* decode: one launch for two weight types (CHORD_CUDA_PAIRS=0: off) */
    int mv_waves;   /* decode: more rows per warp when blocks would need two waves (=0: off) */
    int q4k_long;   /* decode: Q4_K chunk rows over 4096 in one wave by the long-row kernels
                       (CHORD_CUDA_Q4KLONG=0: the one-row kernel) */
    int mv_ptrig;   /* decode: a paired q / k / v launch of several waves lets the next
                       kernel launch at its entry (CHORD_CUDA_PAIRTRIG=0: off) */
    int q4k_split;  /* decode: Q4_K chunk matvecs that need several waves split each row's
                       rounds over two warps, two rows per warp (mv_rows_split;
                       CHORD_CUDA_Q4KSPLIT=0: off) */
    int q4k_rows;   /* decode: without the split, rows per warp of those matvecs (1, 2, 3;
                       the paired kernel: 1 or 2) */
    /* L2 prefetch of a captured step's weights (prefetch.cu): pf_window bytes ahead of
     * the running matvec (0: off); while capturing, the matvecs' weights in order */
    /* kernels that trigger their dependent at entry, not after their wait (CUDA_EARLY_*
     * bits): the next matvec's blocks then fetch their weights while the kernel before
     * the short one still runs */
    int early_trigger;
    /* decode attention quantizes its output for wo itself (CHORD_CUDA_ATTNQ): 0 never (a
     * separate kernel does), 1 per 32 (Q8_0, Q4_0, ...: within each block), 2 also per 256
     * (K-quants: over a thread-block cluster of heads; TinyLlama's attention 3.7 -> 5.2 us
     * for 1.1 us of quantize kernel saved, so not by default) */
    int attn_quant;
    int cc_major; /* the device's compute capability (major) */
    size_t pf_window;
    long long pf_max_launch; /* steps with a larger matvec launch (but the last) go without */
    int pf_blocks;
    int pf_chunk; /* bytes per lane and prefetch */
    bool pf_collect;
    int pf_seq, pf_n;
    struct pfreg *pf_regs;
    int *pf_prog;
    cudaStream_t pf_stream;
    cudaEvent_t pf_fork, pf_join;
    unsigned long long *tr; /* timing trace of the kernels of a step (cuda_set_trace) */
    int tr_next;
    char tr_kind[TRACE_SLOTS];
    size_t attn_smem_max; /* dynamic shared memory the decode attention may use */
    int attn_kstage;      /* cache rows the decode attention stages in shared memory */
    int attn_flash_hd;    /* largest head_dim the tensor-core prefill attention may run */
    /* what the ROPE scratch holds: positions [0, rope_npos) of this rotation */
    int rope_npos, rope_nrot;
    float rope_base, rope_fscale;
} cuda_backend;

static inline cuda_backend *cuda_be(chord_backend *be) {
    return (cuda_backend *)be;
}

/* Records a CUDA failure (first one wins); returns false when e is an error. */
bool cuda_record(cuda_backend *be, cudaError_t e, const char *what, const char *file, int line);
/* Records a non-CUDA failure (unsupported shape, missing upload, ...). */
void cuda_fail(cuda_backend *be, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#define CUDA_CHECK(be, call) cuda_record((be), (call), #call, __FILE__, __LINE__)
/* After every kernel launch: catches bad launch configurations at once. */
#define CUDA_LAUNCHED(be, name) cuda_record((be), cudaGetLastError(), name, __FILE__, __LINE__)

/* Programmatic dependent launch: a kernel launched with launch_pdl may start while the
 * previous kernel of the stream still runs. It calls pdl_trigger() early (so the next
 * one may start too) and must call pdl_wait() before reading anything an earlier kernel
 * wrote and before its first global write; before that it may only read weights. */
__device__ __forceinline__ void pdl_trigger() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    asm volatile("griddepcontrol.launch_dependents;");
#endif
}
__device__ __forceinline__ void pdl_wait() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    asm volatile("griddepcontrol.wait;" ::: "memory");
#endif
}
__device__ __forceinline__ unsigned long long gtime() {
    unsigned long long t;
    asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(t));
    return t;
}

/* Timing trace of a decode kernel (when k.tr is set): thread 0 of every block records
 * its start (first and last of the grid), its release from pdl_wait (released(), first),
 * its end (destructor, last) and optionally a point in between (mark(), last). */
struct ktrace {
    unsigned long long *p;
    __device__ explicit ktrace(const ktr &k)
        : p(k.tr && threadIdx.x == 0 ? k.tr + TRACE_WORDS * k.slot : nullptr) {
        if (p) {
            const unsigned long long t = gtime();
            atomicMin(p, t);
            atomicMax(p + 3, t);
        }
    }
    __device__ void released() {
        if (p) atomicMin(p + 1, gtime());
    }
    __device__ void mark() { /* a point inside the kernel (last block to reach it) */
        if (p) atomicMax(p + 4, gtime());
    }
    __device__ ~ktrace() {
        if (p) atomicMax(p + 2, gtime());
    }
};

/* A matvec of a captured step tells the prefetcher (prefetch.cu) that it runs. */
__device__ __forceinline__ void pf_report(const ktr &k) {
    if (k.prog && blockIdx.x == 0 && threadIdx.x == 0) *(volatile int *)k.prog = k.seq;
}

/* pdl_wait after loads issued before it: ptxas otherwise schedules the wait (ACQBULK)
 * ahead of independent loads (seen in the SASS of the matvecs), so that they go out only
 * once the previous kernel is done. A wait that depends on the loaded data (dep: any
 * function of it) keeps them first; the loads then overlap the previous kernel. */
__device__ __forceinline__ void pdl_wait_after(uint32_t dep) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    if (dep == 0x9E3779B9u) asm volatile("griddepcontrol.wait;" ::: "memory");
    asm volatile("griddepcontrol.wait;" ::: "memory");
#else
    (void)dep;
#endif
}

template <typename... KArgs, typename... Args>
static inline cudaError_t launch_pdl(cuda_backend *be, void (*kernel)(KArgs...), dim3 grid,
                                     dim3 block, Args... args) {
    cudaLaunchConfig_t cfg;
    memset(&cfg, 0, sizeof cfg);
    cfg.gridDim = grid;
    cfg.blockDim = block;
    cfg.dynamicSmemBytes = 0;
    cfg.stream = be->stream;
    cudaLaunchAttribute attr[1];
    attr[0].id = cudaLaunchAttributeProgrammaticStreamSerialization;
    attr[0].val.programmaticStreamSerializationAllowed = 1;
    cfg.attrs = attr;
    cfg.numAttrs = be->pdl ? 1 : 0;
    return cudaLaunchKernelEx(&cfg, kernel, static_cast<KArgs>(args)...);
}

template <typename... KArgs, typename... Args>
static inline cudaError_t launch_pdl_cluster(cuda_backend *be, void (*kernel)(KArgs...),
                                             dim3 grid, dim3 block, size_t smem,
                                             unsigned cluster, Args... args) {
    cudaLaunchConfig_t cfg;
    memset(&cfg, 0, sizeof cfg);
    cfg.gridDim = grid;
    cfg.blockDim = block;
    cfg.dynamicSmemBytes = smem;
    cfg.stream = be->stream;
    if (smem > 48 * 1024) { /* above the default limit: opt in (cheap; graphs capture once) */
        cudaError_t e = cudaFuncSetAttribute(
            kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem);
        if (e != cudaSuccess) return e;
    }
    cudaLaunchAttribute attr[2];
    unsigned na = 0;
    if (be->pdl) {
        attr[na].id = cudaLaunchAttributeProgrammaticStreamSerialization;
        attr[na++].val.programmaticStreamSerializationAllowed = 1;
    }
    if (cluster > 1) { /* thread-block clusters of `cluster` consecutive blocks in x */
        attr[na].id = cudaLaunchAttributeClusterDimension;
        attr[na].val.clusterDim.x = cluster;
        attr[na].val.clusterDim.y = 1;
        attr[na++].val.clusterDim.z = 1;
    }
    cfg.attrs = attr;
    cfg.numAttrs = na;
    return cudaLaunchKernelEx(&cfg, kernel, static_cast<KArgs>(args)...);
}

template <typename... KArgs, typename... Args>
static inline cudaError_t launch_pdl_smem(cuda_backend *be, void (*kernel)(KArgs...), dim3 grid,
                                          dim3 block, size_t smem, Args... args) {
    return launch_pdl_cluster(be, kernel, grid, block, smem, 1, args...);
}

/* A device buffer of at least `bytes` that lives until the next call asking for more.
 * Growing waits for the stream first. NULL (with the error recorded) on failure. */
void *cuda_scratch_get(cuda_backend *be, int slot, size_t bytes);

/* --------------------------------------------------------------- weights */

/* Device view of an uploaded weight. Quantized types are repacked at upload into two
 * regions: every block's quant bytes (qlen per block, a multiple of 16, so 16-byte loads
 * are aligned) for all rows, then every block's remaining bytes (scales etc.) in their
 * original order, each entry padded to `sb` bytes (Q3_K, Q6_K: +2) so that it can be
 * read with aligned words. Float types are stored as in the file. */
typedef struct wview {
    const uint8_t *q;
    const uint8_t *s;
    int64_t n_in, n_out;
    int64_t nb; /* blocks per row */
} wview;

/* Layout of one block: elements, bytes, the quant byte range [qoff, qoff+qlen), and the
 * padded size of its scale entry. */
typedef struct qinfo {
    int blk, tsize, qoff, qlen, sb;
} qinfo;

__host__ __device__ constexpr qinfo qinfo_of(int t) {
    return t == CHORD_TYPE_F32    ? qinfo{1, 4, 0, 4, 0}
           : t == CHORD_TYPE_F16  ? qinfo{1, 2, 0, 2, 0}
           : t == CHORD_TYPE_BF16 ? qinfo{1, 2, 0, 2, 0}
           : t == CHORD_TYPE_Q4_0 ? qinfo{32, 18, 2, 16, 2}
           : t == CHORD_TYPE_Q4_1 ? qinfo{32, 20, 4, 16, 4}
           : t == CHORD_TYPE_Q5_0 ? qinfo{32, 22, 6, 16, 6}
           : t == CHORD_TYPE_Q5_1 ? qinfo{32, 24, 8, 16, 8}
           : t == CHORD_TYPE_Q8_0 ? qinfo{32, 34, 2, 32, 2}
           : t == CHORD_TYPE_Q2_K ? qinfo{256, 84, 16, 64, 20}
           : t == CHORD_TYPE_Q3_K ? qinfo{256, 110, 0, 96, 16}
           : t == CHORD_TYPE_Q4_K ? qinfo{256, 144, 16, 128, 16}
           : t == CHORD_TYPE_Q5_K ? qinfo{256, 176, 16, 160, 16}
           : t == CHORD_TYPE_Q6_K ? qinfo{256, 210, 0, 192, 20}
                                  : qinfo{0, 0, 0, 0, 0};
}

__host__ __device__ constexpr bool type_is_float(int t) {
    return t == CHORD_TYPE_F32 || t == CHORD_TYPE_F16 || t == CHORD_TYPE_BF16;
}

/* Activations of quantized weights are quantized as the CPU backend does: int8 with one
 * float scale per 32 (32-element weight blocks) or per 256 (K-quants). */
__host__ __device__ constexpr int act_block(int t) {
    return qinfo_of(t).blk == 256 ? 256 : 32;
}

/* Bytes of the repacked copy on the device. */
static inline size_t cuda_weight_bytes(const chord_weight *w) {
    qinfo qi = qinfo_of(w->type);
    if (!qi.blk || qi.blk == 1) return w->nbytes;
    return (size_t)w->n_out * (size_t)(w->n_in / qi.blk) * (size_t)(qi.qlen + qi.sb);
}

/* The trace argument of the next decode kernel launched (kind: a letter for the report). */
static inline ktr take_ktr(cuda_backend *be, char kind) {
    ktr k = {NULL, 0, NULL, 0};
    if (be->tr && be->tr_next < TRACE_SLOTS) {
        k.tr = be->tr;
        k.slot = be->tr_next;
        be->tr_kind[be->tr_next++] = kind;
    }
    if (kind == 'm' && be->pf_collect) {
        k.prog = be->pf_prog;
        k.seq = be->pf_seq++;
    }
    return k;
}

/* Every type the CUDA kernels handle. */
static inline bool cuda_type_ok(int t) {
    return qinfo_of(t).blk != 0;
}

static inline wview wview_of(const chord_weight *w) {
    qinfo qi = qinfo_of(w->type);
    wview v;
    v.n_in = w->n_in;
    v.n_out = w->n_out;
    v.q = (const uint8_t *)w->dev;
    if (type_is_float(w->type)) {
        v.nb = w->n_in;
        v.s = NULL;
    } else {
        v.nb = w->n_in / qi.blk;
        v.s = v.q + (size_t)w->n_out * (size_t)v.nb * (size_t)qi.qlen;
    }
    return v;
}

/* Calls F<TYPE>(args...) for a run-time type id; `otherwise` runs for any other id. */
#define CUDA_TYPE_SWITCH(t, F, otherwise, ...)                                                 \
    switch (t) {                                                                               \
    case CHORD_TYPE_F32: F<CHORD_TYPE_F32>(__VA_ARGS__); break;                                \
    case CHORD_TYPE_F16: F<CHORD_TYPE_F16>(__VA_ARGS__); break;                                \
    case CHORD_TYPE_BF16: F<CHORD_TYPE_BF16>(__VA_ARGS__); break;                              \
    case CHORD_TYPE_Q4_0: F<CHORD_TYPE_Q4_0>(__VA_ARGS__); break;                              \
    case CHORD_TYPE_Q4_1: F<CHORD_TYPE_Q4_1>(__VA_ARGS__); break;                              \
    case CHORD_TYPE_Q5_0: F<CHORD_TYPE_Q5_0>(__VA_ARGS__); break;                              \
    case CHORD_TYPE_Q5_1: F<CHORD_TYPE_Q5_1>(__VA_ARGS__); break;                              \
    case CHORD_TYPE_Q8_0: F<CHORD_TYPE_Q8_0>(__VA_ARGS__); break;                              \
    case CHORD_TYPE_Q2_K: F<CHORD_TYPE_Q2_K>(__VA_ARGS__); break;                              \
    case CHORD_TYPE_Q3_K: F<CHORD_TYPE_Q3_K>(__VA_ARGS__); break;                              \
    case CHORD_TYPE_Q4_K: F<CHORD_TYPE_Q4_K>(__VA_ARGS__); break;                              \
    case CHORD_TYPE_Q5_K: F<CHORD_TYPE_Q5_K>(__VA_ARGS__); break;                              \
    case CHORD_TYPE_Q6_K: F<CHORD_TYPE_Q6_K>(__VA_ARGS__); break;                              \
    default: otherwise; break;                                                                 \
    }

/* ------------------------------------------------------- host launchers */

/* elementwise.cu */
void cuda_repack(cuda_backend *be, uint8_t *dst, const uint8_t *raw, chord_type type,
                 int64_t n_blocks);
/* dtok / dpos (device, may be NULL): read the token / position there instead of the
 * host value, so that a recorded graph can be replayed for a new step (n = 1). */
void cuda_get_rows(cuda_backend *be, float *out, const chord_weight *emb, const int32_t *tokens,
                   int n, const int *dtok);
void cuda_rmsnorm(cuda_backend *be, float *out, const float *x, const float *w, int n, int dim,
                  float eps);
void cuda_rope(cuda_backend *be, float *x, int n, int pos0, const chord_rope_shape *s,
               const int *dpos);
void cuda_add(cuda_backend *be, float *x, const float *y, size_t n);
void cuda_swiglu(cuda_backend *be, float *out, const float *g, const float *u, size_t n);

/* Activations quantized for one weight type: q int8 [n][n_in], d float [n][n_in/qb],
 * bs int16 [n][n_in/16] (sum of each 16 q); for qb = 32 also s float [n][n_in/32].
 * qb = 32 follows llama.cpp's Q8_0 / Q8_1: d is rounded to half, s = half(d * sum q)
 * (d unrounded); qb = 256 its Q8_K: float d. */
typedef struct qact {
    const int8_t *q;
    const float *d;
    const int16_t *bs;
    const float *s;
    const int8_t *qc; /* one token, qb 256: q in Q4_K chunk order (quant.cuh q4k_co) */
    int qb;
} qact;

/* matvec.cu: quantizes n rows of x (n_in % qb == 0) into scratch; y = W x for one
 * token (xa: x quantized for W's act_block, unused for float types). */
bool cuda_quantize_act(cuda_backend *be, const float *x, int64_t n_in, int n, int qb,
                       qact *out);
/* Bytes of scratch cuda_quantize_act needs. */
size_t cuda_qact_bytes(int64_t n_in, int n, int qb);
/* The scratch of cuda_quantize_act as a qact, without computing anything (for the fused
 * kernels below, which fill it). NULL scratch: false, error recorded. */
bool cuda_qact_view(cuda_backend *be, int64_t n_in, int n, int qb, qact *out);
void cuda_matvec(cuda_backend *be, const chord_weight *w, const float *x, const qact *xa,
                 float *y);
/* Several weights of one type and row length in one launch: ys[k] = W_k x, and where
 * res[k] is not NULL also res[k] += ys[k] (the residual add, rounded as cuda_add). */
#define CUDA_MV_MAXW 3
/* Batches shorter than this of exact_batch_type weights (Q4_1, Q5_1, Q2_K, Q3_K, Q4_K,
 * Q5_K, Q6_K) run matvec_exact_kernel instead of the tensor cores: the CPU's float order
 * (decode uses it for Q4_1, Q5_1, Q2_K, Q5_K); CHORD_CUDA_EXACT=0 turns it off. */
/* Measured on the H100, TinyLlama Q4_K_M prompt of n tokens (tok/s, exact vs tensor
 * cores): n 8: 1880 vs 1271, n 24: 2462 vs 3774, n 63: 2675 vs 10083. */
#define CUDA_EXACT_MAX_N 32
/* ys[k] = W_k x for n tokens in that order; false (nothing launched) where it does not
 * apply (type, n, activations) */
bool cuda_matmul_exact(cuda_backend *be, int n_w, const chord_weight *const *ws,
                       float *const *ys, const qact *xa, int n);
void cuda_matvec_multi(cuda_backend *be, int n_w, const chord_weight *const *ws,
                       float *const *ys, float *const *res, const float *x, const qact *xa);
/* One token, quantized weights of one type and row length (at most CUDA_MV_MAXW): each
 * block quantizes x itself (nw not NULL: rmsnorm(x) * nw, eps; xout not NULL gets that
 * normed x), then ys[k] = W_k x' (res as cuda_matvec_multi). glu_out: two weights
 * (gate, up, same shape): also glu_out = silu(ys[0]) * ys[1]. */
bool cuda_matvec_pro_ok(const chord_weight *w);
void cuda_matvec_pro(cuda_backend *be, int n_w, const chord_weight *const *ws, float *const *ys,
                     float *const *res, const float *x, const float *nw, float eps, float *xout,
                     float *glu_out);
/* Decode fusions (n = 1; dim % qb == 0): rmsnorm, or silu(g) * u, written to out as the
 * unfused ops write it (out NULL: not written, nothing reads it), and quantized into xa
 * (the XQ scratch) as cuda_quantize_act. */
bool cuda_rmsnorm_quant(cuda_backend *be, float *out, const float *x, const float *w, int dim,
                        float eps, int qb, qact *xa);
bool cuda_swiglu_quant(cuda_backend *be, float *out, const float *g, const float *u, int dim,
                       int qb, qact *xa);

/* gemm.cu: y[t][o] = sum_i W[o][i] x[t][i] for n tokens (xa as for cuda_matvec). */
void cuda_gemm(cuda_backend *be, const chord_weight *w, const float *x, const qact *xa,
               float *y, int n);

/* attention.cu: the KV cache is half [n_ctx][kv_dim] for each of k and v */
size_t cuda_kv_bytes(int n_ctx, int kv_dim);
void cuda_attention(cuda_backend *be, float *out, const float *q, const float *k,
                    const float *v, chord_kv *kv, int n, int pos0, const chord_attn_shape *s,
                    const int *dpos);
/* One token (n = 1) in one kernel: with rope (not NULL) q and k are first rotated as
 * cuda_rope does (q in place; k only on its way into the cache). */
bool cuda_attn_decode_ok(cuda_backend *be, const chord_attn_shape *s);
/* attn_flash.cu: tensor-core prefill attention over the F16 cache (K/V already stored) */
void cuda_attn_flash_init(cuda_backend *be);
bool cuda_attn_flash_ok(const cuda_backend *be, const chord_attn_shape *s);
void cuda_attn_flash(cuda_backend *be, float *out, const float *q, const __half *kc,
                     const __half *vc, int m, int pos_first, const chord_attn_shape *s);
/* xq (or NULL): also quantize the output for a matvec of row length n_head * head_dim
 * (cuda_qact_view's scratch, as cuda_quantize_act would; cuda_attn_quant_ok) */
void cuda_attention_decode(cuda_backend *be, float *out, float *q, const float *k,
                           const float *v, chord_kv *kv, int pos0, const chord_attn_shape *s,
                           const chord_rope_shape *rope, const int *dpos, const qact *xq);
bool cuda_attn_quant_ok(const cuda_backend *be, const chord_attn_shape *s, int qb);
void cuda_attention_init(cuda_backend *be);

/* elementwise.cu: RoPE's (cos, sin) for positions [0, npos), [pos][i] for i < n_rot / 2,
 * computed on the host exactly as the CPU backend computes them (the angle stepped in
 * float, glibc's cosf / sinf, which no device function reproduces bit for bit: about 2.6%
 * of the angles differ from correctly rounded values). build: may (re)make the table
 * (allocates, copies, synchronizes: never while capturing a graph; a new table bumps
 * scratch_gen); otherwise a table that does not cover npos is an error. NULL on error
 * (recorded). */
const float2 *cuda_rope_table(cuda_backend *be, const chord_rope_shape *s, int npos,
                              bool build);

/* graph.cu: the decode-step recorder (backend_cuda.cu's ops call cuda_rec_* while
 * be->rec is set) and step_begin / step_end. */
typedef enum {
    CREC_GET_ROWS,
    CREC_RMSNORM,
    CREC_MATMUL,
    CREC_ROPE,
    CREC_ATTN,
    CREC_ADD,
    CREC_SWIGLU
} cuda_rec_op;

typedef struct cuda_rec {
    int op, n, n_w, dim;
    float eps;
    float *out;
    const float *x, *y, *z;
    const chord_weight *w[4];
    float *ys[4];
    chord_kv kv;
    chord_attn_shape as;
    chord_rope_shape rs;
    size_t count;
    /* not part of the graph's key: the step's inputs */
    int pos0;
    int32_t tok;
} cuda_rec;

/* Appends an op (false: could not; the recording was abandoned and its ops launched,
 * so the caller launches this op itself). */
bool cuda_rec_push(cuda_backend *be, const cuda_rec *r);
/* Leaves recording mode, launching what was recorded (before a to_host, sync, ...). */
void cuda_rec_flush(cuda_backend *be);
bool cuda_step_begin(chord_backend *b, uint64_t key, const int32_t *tokens, int n, int pos0);
void cuda_step_end(chord_backend *b);
void cuda_graphs_free(cuda_backend *be);

/* prefetch.cu: while a step is captured, a side branch prefetches the matvecs' weights
 * into L2 pf_window bytes ahead of the running matvec. setup (outside a capture) makes
 * the stream, events and counter; begin / end bracket the step's ops inside the capture
 * (end launches the prefetcher reading its plan from dev_plan, NULL: cuda_pf_plan_bytes
 * to allocate); upload fills dev_plan after the capture. */
bool cuda_pf_setup(cuda_backend *be);
void cuda_pf_begin(cuda_backend *be);
void cuda_pf_end(cuda_backend *be, void *dev_plan);
bool cuda_pf_upload(cuda_backend *be, void *dev_plan);
size_t cuda_pf_plan_bytes(void);
void cuda_pf_weight(cuda_backend *be, const ktr &k, const chord_weight *w);
void cuda_pf_cancel(cuda_backend *be); /* this step goes without */
void cuda_pf_free(cuda_backend *be);
/* Graphs held now; *fails (may be NULL): captures that failed (graphs are then off). */
int cuda_graph_stats(cuda_backend *be, int *fails);
/* One launch for weights of two types that share the activation quantization xa (first
 * weights of one type, then of the other; the pairs matvec.cu is built for); false when
 * they are not such a pair (nothing launched). */
bool cuda_matvec_pair(cuda_backend *be, int n_w, const chord_weight *const *ws,
                      float *const *ys, float *const *res, const qact *xa);
/* backend_cuda.cu: a one-token matmul call (see cuda_matvec_multi; xa_pre may be NULL). */
void cuda_matvec_call(cuda_backend *be, int n_w, float *const *ys,
                      const chord_weight *const *ws, float *const *res, const float *x,
                      const qact *xa_pre);
/* topk.cu: the vtable's topk op. */
chord_status cuda_topk(chord_backend *b, const float *x, int n, int k, int32_t *ids,
                       float *vals, chord_error *err);
/* Launches one recorded op as the vtable would (dpos / dtok as above). */
void cuda_exec_op(cuda_backend *be, const cuda_rec *r, const int *dpos, const int *dtok);

#endif
