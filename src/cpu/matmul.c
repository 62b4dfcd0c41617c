/* cpu_matmul: quantize the activations once per activation format, then hand out
 * chunks (weight, block of rows, block of activation rows) to the pool's threads
 * through an atomic counter, so fast and slow (or preempted) threads balance out.
 * Each thread's gemm tiles get their scratch (CPU_GEMM_SCRATCH) from the context, so
 * the calling thread's stack needs no room for their accumulators. */
#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define CPU_RELAX() _mm_pause()
#else
#define CPU_RELAX() ((void)0)
#endif
#include <sched.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "cpu/matmul.h"
#include "error.h"

#define N_ACT 4 /* cpu_act values */

struct cpu_matmul_ctx {
    void *buf; /* 64-byte aligned: the threads' gemm scratch, quantized activations, then
                  the chunk table */
    size_t cap;
};

cpu_matmul_ctx *cpu_matmul_ctx_new(void) {
    return calloc(1, sizeof(cpu_matmul_ctx));
}

void cpu_matmul_ctx_free(cpu_matmul_ctx *ctx) {
    if (!ctx) return;
    free(ctx->buf);
    free(ctx);
}

static int reserve(cpu_matmul_ctx *ctx, size_t bytes) {
    if (bytes <= ctx->cap) return 1;
    size_t cap = ctx->cap ? ctx->cap : 4096;
    while (cap < bytes)
        cap *= 2;
    void *p = aligned_alloc(64, cap);
    if (!p) return 0;
    free(ctx->buf);
    ctx->buf = p;
    ctx->cap = cap;
    return 1;
}

typedef struct {
    const cpu_kernels *k;
    int n_w;
    float *const *ys;
    const chord_weight *const *ws;
    const float *x;
    int n;
    int64_t n_in;
    /* activations per cpu_act */
    const void *act[N_ACT];
    size_t lda[N_ACT];
    cpu_quantize_fn quant[N_ACT];
    int quant_in_job; /* quantize inside the job (n > 1), then a barrier */
    atomic_int quant_done;
    /* chunks */
    int rows_per_chunk, acts_per_chunk, n_ablk;
    int64_t *chunk_end; /* [n_w] cumulative chunk counts */
    char *scratch;      /* thread ith's: scratch + ith * CPU_GEMM_SCRATCH */
    atomic_int next;
} mm_job;

static void quantize_rows(mm_job *j, int t0, int t1) {
    for (int a = 0; a < N_ACT; a++) {
        if (!j->quant[a]) continue;
        for (int t = t0; t < t1; t++)
            j->quant[a](j->x + (size_t)t * j->n_in, (char *)j->act[a] + (size_t)t * j->lda[a],
                        j->n_in);
    }
}

static void mm_worker(void *arg, int ith, int nth) {
    mm_job *j = arg;
    if (j->quant_in_job) {
        quantize_rows(j, (int)((int64_t)j->n * ith / nth),
                      (int)((int64_t)j->n * (ith + 1) / nth));
        atomic_fetch_add_explicit(&j->quant_done, 1, memory_order_acq_rel);
        for (int i = 0; atomic_load_explicit(&j->quant_done, memory_order_acquire) < nth; i++) {
            CPU_RELAX();
            if (i > 4096) sched_yield();
        }
    }
    const int64_t n_chunks = j->chunk_end[j->n_w - 1];
    void *scratch = j->scratch + (size_t)ith * CPU_GEMM_SCRATCH;
    int w = 0;
    for (;;) {
        const int64_t c = atomic_fetch_add_explicit(&j->next, 1, memory_order_relaxed);
        if (c >= n_chunks) break;
        while (c >= j->chunk_end[w])
            w++;
        const int64_t local = c - (w ? j->chunk_end[w - 1] : 0);
        const int64_t rb = local / j->n_ablk, ab = local % j->n_ablk;
        const chord_weight *wt = j->ws[w];
        const cpu_type_kernels *tk = &j->k->t[wt->type];
        const size_t ldw = chord_row_size(wt->type, wt->n_in);
        const int64_t r0 = rb * j->rows_per_chunk;
        const int64_t r1 =
            r0 + j->rows_per_chunk < wt->n_out ? r0 + j->rows_per_chunk : wt->n_out;
        const int t0 = (int)ab * j->acts_per_chunk;
        const int t1 = t0 + j->acts_per_chunk < j->n ? t0 + j->acts_per_chunk : j->n;
        const char *wrow = (const char *)wt->host + (size_t)r0 * ldw;
        const size_t lda = j->lda[tk->act];
        const char *arow = (const char *)j->act[tk->act] + (size_t)t0 * lda;
        float *y = j->ys[w] + (size_t)t0 * wt->n_out + r0;
        /* one activation row too: the tiles run several weight rows at once */
        tk->gemm_tile(wt->n_in, (int)(r1 - r0), t1 - t0, y, (size_t)wt->n_out, wrow, ldw, arow,
                      lda, scratch);
    }
}

chord_status cpu_matmul(cpu_pool *pool, const cpu_kernels *k, cpu_matmul_ctx *ctx, int n_w,
                        float *const *ys, const chord_weight *const *ws, const float *x, int n,
                        chord_error *err) {
    if (n_w < 0 || n < 0 || !k || !ctx)
        return chord_fail(err, CHORD_E_INVALID_ARG, "matmul: bad arguments");
    if (n_w == 0 || n == 0) return CHORD_OK;
    if (!ys || !ws || !x) return chord_fail(err, CHORD_E_INVALID_ARG, "matmul: NULL pointer");
    const int64_t n_in = ws[0]->n_in;
    int64_t total_rows = 0;
    mm_job j;
    memset(&j, 0, sizeof j);
    for (int w = 0; w < n_w; w++) {
        const chord_weight *wt = ws[w];
        if (!wt || !ys[w] || !wt->host)
            return chord_fail(err, CHORD_E_INVALID_ARG, "matmul: weight %d is missing", w);
        if (wt->n_in != n_in)
            return chord_fail(err, CHORD_E_INVALID_ARG,
                              "matmul: %s has %lld inputs, expected %lld",
                              wt->name ? wt->name : "?", (long long)wt->n_in, (long long)n_in);
        if ((unsigned)wt->type >= CHORD_TYPE_COUNT || k->t[wt->type].act == CPU_ACT_NONE)
            return chord_fail(err, CHORD_E_UNSUPPORTED, "matmul: %s: type %s has no CPU kernel",
                              wt->name ? wt->name : "?", chord_type_name((uint32_t)wt->type));
        if (wt->n_out < 1 || chord_row_size(wt->type, n_in) == 0)
            return chord_fail(err, CHORD_E_INVALID_ARG, "matmul: %s: bad shape %lld x %lld",
                              wt->name ? wt->name : "?", (long long)wt->n_out, (long long)n_in);
        const cpu_act a = k->t[wt->type].act;
        j.quant[a] = a == CPU_ACT_F32 ? NULL : k->t[wt->type].quantize_act;
        j.lda[a] = a == CPU_ACT_F32 ? (size_t)n_in * sizeof(float) : cpu_act_row_size(a, n_in);
        j.act[a] = x; /* F32: the input itself; others set below */
        total_rows += wt->n_out;
    }

    int vertical = k->isa == CPU_ISA_AVX512;
    for (int w = 0; w < n_w; w++) {
        const chord_type t = ws[w]->type;
        vertical &= t == CHORD_TYPE_Q4_0 || t == CHORD_TYPE_Q4_1 || t == CHORD_TYPE_Q5_0 ||
                    t == CHORD_TYPE_Q5_1 || t == CHORD_TYPE_Q8_0 || t == CHORD_TYPE_Q4_K ||
                    t == CHORD_TYPE_Q5_K || t == CHORD_TYPE_Q6_K;
    }
    const int nth = cpu_pool_size(pool);
    /* Chunking. One activation row: blocks of rows, ~16 per thread. Several: blocks of
     * 16 weight rows (stay in L2) x 64 activation rows (stay in L2, 4 at a time in L1),
     * or larger blocks of rows for the vertical tiles (Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q4_K,
     * Q5_K, Q6_K). */
    if (n == 1) {
        int64_t r = total_rows / ((int64_t)nth * 16);
        r = (r + 7) & ~(int64_t)7; /* whole 8-row decode tiles */
        j.rows_per_chunk = (int)(r < 8 ? 8 : r > 128 ? 128 : r);
        j.acts_per_chunk = 1;
    } else if (vertical) {
        /* the vertical tiles (gemm_vert_avx512.c, gemm_q4q8_avx512.c) unpack 16-row
         * panels once per block for all activation rows of the chunk, and copy a slab of
         * the activations once for all panels: 16 panels x 64 activation rows (the K-quant
         * and other 32-block tiles take them as 2 x 2 of their 8 panels x 32) */
        j.rows_per_chunk = 256;
        j.acts_per_chunk = 64;
    } else {
        j.rows_per_chunk = 16;
        j.acts_per_chunk = 64;
    }
    j.n_ablk = (n + j.acts_per_chunk - 1) / j.acts_per_chunk;

    /* scratch: the threads' gemm scratch, activations of each format, then the chunk
     * table */
    size_t off[N_ACT] = {0}, bytes = (size_t)nth * CPU_GEMM_SCRATCH;
    for (int a = 0; a < N_ACT; a++) {
        if (!j.quant[a]) continue;
        off[a] = bytes;
        bytes += ((j.lda[a] * (size_t)n) + 63) & ~(size_t)63;
    }
    const size_t table_off = bytes;
    bytes += (size_t)n_w * sizeof(int64_t);
    if (!reserve(ctx, bytes))
        return chord_fail(err, CHORD_E_NOMEM, "matmul: out of memory (%zu bytes)", bytes);
    j.scratch = ctx->buf;
    for (int a = 0; a < N_ACT; a++)
        if (j.quant[a]) j.act[a] = (char *)ctx->buf + off[a];
    j.chunk_end = (int64_t *)((char *)ctx->buf + table_off);
    int64_t cum = 0;
    for (int w = 0; w < n_w; w++) {
        cum += (ws[w]->n_out + j.rows_per_chunk - 1) / j.rows_per_chunk * j.n_ablk;
        j.chunk_end[w] = cum;
    }

    j.k = k;
    j.n_w = n_w;
    j.ys = ys;
    j.ws = ws;
    j.x = x;
    j.n = n;
    j.n_in = n_in;
    atomic_init(&j.next, 0);
    atomic_init(&j.quant_done, 0);
    j.quant_in_job = n > 1 && nth > 1;
    if (!j.quant_in_job) quantize_rows(&j, 0, n);
    cpu_pool_run(pool, mm_worker, &j);
    return CHORD_OK;
}
