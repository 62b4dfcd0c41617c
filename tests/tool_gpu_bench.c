/* GPU benchmarks of the CUDA backend (run by scripts/gpu_check.sh on a GPU machine):
 *   tool_gpu_bench                 decode matvec GB/s per weight type for TinyLlama-shaped
 *                                  5632x2048 and 2048x5632 matrices, the copy ceiling,
 *                                  prefill GEMM TFLOP/s and attention times
 *   tool_gpu_bench --gemm-check    the pipelined prefill GEMMs against the old kernels
 *                                  (CHORD_CUDA_GEMM=old), bit for bit, every type, odd
 *                                  shapes and token counts, every token tile; exit 1 on a
 *                                  difference
 *   tool_gpu_bench --attn-check    the tiled attention kernels (default, and
 *                                  CHORD_CUDA_ATTN=split for n = 1) against the old ones
 *                                  (CHORD_CUDA_ATTN=old), bit for bit, over head layouts,
 *                                  head sizes, token counts, positions and cache sizes,
 *                                  then old vs new times; exit 1 on a difference
 *   tool_gpu_bench --mvhot         decode matvec kernel time per type and shape with the
 *                                  weights in L2 vs from DRAM (what is latency, what is
 *                                  bandwidth)
 *   tool_gpu_bench --stream        ways to stream weights into the SMs (GB/s) and the
 *                                  cost of a grid-wide barrier
 *   tool_gpu_bench --decode MODEL [POS]
 *                                  decode step variants and a per-kernel trace
 *   tool_gpu_bench --backend MODEL [NGL]
 *                                  loads MODEL and prints which device runs it
 * Timings: CUDA graph replays timed with events, median; weights rotate over several
 * copies so that they do not sit in the 50 MB L2 cache. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "backend.h"
#include "chord.h"
#include "model.h"
#include "quant/types.h"
#ifdef CHORD_HAVE_CUDA
#include "cuda/cuda_api.h"
#endif

static int cmd_backend(int argc, char **argv) {
    chord_model_params mp = chord_model_default_params();
    if (argc >= 4) mp.n_gpu_layers = atoi(argv[3]);
    chord_model *m = NULL;
    chord_error err = {0};
    if (chord_model_load(argv[2], &mp, &m, &err) != CHORD_OK) {
        fprintf(stderr, "tool_gpu_bench: %s: %s\n", argv[2], err.message);
        return 1;
    }
    printf("backend: %s\n", chord_model_backend(m));
    const char *notice = chord_model_backend_notice(m);
    if (notice && *notice) printf("notice: %s\n", notice);
    chord_model_free(m);
    return 0;
}

#ifndef CHORD_HAVE_CUDA
int main(int argc, char **argv) {
    if (argc >= 3 && !strcmp(argv[1], "--backend")) return cmd_backend(argc, argv);
    printf("skipped: no CUDA device (chord built without CUDA)\n");
    return 0;
}
#else

#define PEAK_GBS 3000.0

static uint64_t rng = 0x243F6A8885A308D3ull;
static uint64_t rnext(void) {
    rng ^= rng >> 12;
    rng ^= rng << 25;
    rng ^= rng >> 27;
    return rng * 2685821657736338717ull;
}
static float runif(void) {
    return (float)((double)(rnext() >> 11) / 9007199254740992.0 * 2.0 - 1.0);
}

static int half_fields(chord_type t, int off[2]) {
    switch (t) {
    case CHORD_TYPE_Q4_0:
    case CHORD_TYPE_Q5_0:
    case CHORD_TYPE_Q8_0: off[0] = 0; return 1;
    case CHORD_TYPE_Q4_1:
    case CHORD_TYPE_Q5_1:
    case CHORD_TYPE_Q4_K:
    case CHORD_TYPE_Q5_K: off[0] = 0, off[1] = 2; return 2;
    case CHORD_TYPE_Q2_K: off[0] = 80, off[1] = 82; return 2;
    case CHORD_TYPE_Q3_K: off[0] = 108; return 1;
    case CHORD_TYPE_Q6_K: off[0] = 208; return 1;
    default: return 0;
    }
}

/* Random, finite weight bytes of type t. */
static void *make_data(chord_type t, int64_t n_out, int64_t n_in, size_t *nbytes) {
    const chord_type_traits *tr = chord_type_get(t);
    size_t n = chord_row_size(t, n_in) * (size_t)n_out;
    uint8_t *d = malloc(n);
    if (!d) return NULL;
    if (t == CHORD_TYPE_F32 || t == CHORD_TYPE_F16 || t == CHORD_TYPE_BF16) {
        size_t cnt = (size_t)n_out * n_in;
        float *f = malloc(cnt * sizeof *f);
        for (size_t i = 0; i < cnt; i++)
            f[i] = runif() * 0.05f;
        tr->from_float(f, d, (int64_t)cnt);
        free(f);
    } else {
        for (size_t i = 0; i < n; i++)
            d[i] = (uint8_t)(rnext() >> 56);
        int off[2], nf = half_fields(t, off);
        for (size_t b = 0; b < n / tr->type_size; b++)
            for (int k = 0; k < nf; k++) {
                chord_half h = chord_float_to_half(0.001f + 0.002f * (runif() + 1.0f));
                memcpy(d + b * tr->type_size + off[k], &h, 2);
            }
    }
    *nbytes = n;
    return d;
}

static float *dev_random(chord_backend *g, size_t n) {
    float *h = malloc(n * sizeof *h);
    for (size_t i = 0; i < n; i++)
        h[i] = runif();
    float *d = g->ops->alloc(g, n * sizeof *d);
    if (d) g->ops->from_host(g, d, h, n * sizeof *d);
    free(h);
    return d;
}

/* Times n-token matmuls of one weight type and shape; returns us per call (< 0: error). */
static double bench_type(chord_backend *g, chord_type t, int64_t n_out, int64_t n_in, int n,
                         int kernel_only, size_t min_bytes, size_t *nbytes_out) {
    size_t nbytes = 0;
    void *data = make_data(t, n_out, n_in, &nbytes);
    if (!data) return -1;
    int copies = (int)((min_bytes + nbytes - 1) / nbytes);
    if (copies < 2) copies = 2;
    if (copies > 64) copies = 64;
    /* at least 48 calls per graph, cycling over the copies: the graph launch's own
     * overhead is then spread as thin for weights in L2 (2 copies) as for rotation */
    const int calls = copies < 48 ? 48 : copies;
    chord_weight *ws = calloc((size_t)copies, sizeof *ws);
    const chord_weight **wp = calloc((size_t)calls, sizeof *wp);
    chord_error err = {0};
    double us = -1;
    int up = 0;
    for (; up < copies; up++) {
        chord_weight w = {.name = "bench",
                          .type = t,
                          .n_in = n_in,
                          .n_out = n_out,
                          .host = data,
                          .nbytes = nbytes};
        ws[up] = w;
        if (g->ops->upload(g, &ws[up], &err) != CHORD_OK) {
            fprintf(stderr, "upload: %s\n", err.message);
            break;
        }
        wp[up] = &ws[up];
    }
    float *x = dev_random(g, (size_t)n * n_in),
          *y = g->ops->alloc(g, (size_t)n * n_out * sizeof(float));
    for (int i = copies; up == copies && i < calls; i++)
        wp[i] = wp[i % copies];
    if (up == copies && x && y) {
        int reps = n == 1 ? 50 : 10;
        if (cuda_bench_matmul(g, wp, n == 1 ? calls : copies, x, y, n, kernel_only, reps, &us,
                              &err) != CHORD_OK) {
            fprintf(stderr, "bench %s: %s\n", chord_type_name(t), err.message);
            us = -1;
        }
    }
    for (int i = 0; i < up; i++)
        g->ops->free(g, ws[i].dev);
    g->ops->free(g, x);
    g->ops->free(g, y);
    free(ws);
    free(wp);
    free(data);
    *nbytes_out = nbytes;
    return us;
}

/* --decode MODEL [POS]: one-token steps of MODEL on the GPU at positions POS.. (default
 * 0): host-observed us per chord_eval and the GPU time of one replay of the step's graph,
 * for the decode variants (graphs, fused input quantization, PDL). */
static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* Steps pos.. of ctx from an empty cache (the first 8 uncounted: the capture): host us per
 * chord_eval, and with graphs the GPU us of one replay of the step's graph (else 0). */
static chord_status time_steps(chord_backend *g, chord_context *ctx, const int32_t *toks,
                               int pos, int steps, bool graphs, double *host, double *gus,
                               chord_error *err) {
    chord_context_truncate(ctx, 0);
    if (pos && chord_eval(ctx, toks, pos, false, err) != CHORD_OK) return CHORD_E_BACKEND;
    double t0 = 0;
    for (int i = 0; i < steps; i++) {
        if (i == 8) t0 = now_s(); /* after the capture */
        if (chord_eval(ctx, toks + pos + i, 1, false, err) != CHORD_OK) return CHORD_E_BACKEND;
    }
    *host = (now_s() - t0) / (steps - 8) * 1e6;
    *gus = 0;
    return graphs ? cuda_graph_bench(g, 200, gus, err) : CHORD_OK;
}

/* The kernels of one step graph on the GPU's clock: per kind, the wait from the previous
 * kernel's end to the release of this one and its time after the release. */
static int trace_step(chord_backend *g, chord_context *ctx, const int32_t *toks) {
    chord_error err = {0};
    if (!cuda_set_trace(g, 1)) {
        printf("trace: no device memory\n");
        return 1;
    }
    for (int i = 0; i < 4; i++)
        if (chord_eval(ctx, toks + i, 1, false, &err) != CHORD_OK) {
            fprintf(stderr, "trace: %s\n", err.message);
            return 1;
        }
    enum { MAXK = 1024 };
    static char kinds[MAXK];
    static double t5[5 * MAXK];
    int n = cuda_trace_step(g, kinds, t5, MAXK);
    cuda_set_trace(g, 0);
    if (n <= 0) {
        printf("trace: no step graph\n");
        return 1;
    }
    printf(
        "trace of one step graph: %d kernels, %.1f us from the first start to the last end\n",
        n, t5[5 * (n - 1) + 2]);
    printf("  first kernels (us): kind start last-start release end | release-prev_end "
           "end-release\n");
    const int shown = getenv("TRACE_ALL") ? n : 24;
    for (int i = 0; i < n && i < shown; i++) {
        const double *t = t5 + 5 * i;
        printf("  %3d %c %8.2f %8.2f %8.2f %8.2f | %6.2f %6.2f\n", i, kinds[i], t[0], t[3],
               t[1], t[2], i ? t[1] - t5[5 * (i - 1) + 2] : 0.0, t[2] - t[1]);
    }
    const char *ks = "nqsam";
    for (const char *k = ks; *k; k++) {
        double wait = 0, run = 0, to_mark = 0;
        int c = 0, marks = 0;
        for (int i = 1; i < n; i++)
            if (kinds[i] == *k && t5[5 * i + 1] >= 0) {
                wait += t5[5 * i + 1] - t5[5 * (i - 1) + 2];
                run += t5[5 * i + 2] - t5[5 * i + 1];
                if (t5[5 * i + 4] >= 0) to_mark += t5[5 * i + 4] - t5[5 * i + 1], marks++;
                c++;
            }
        if (c)
            printf(
                "  kind %c: %4d kernels, release - previous end %6.2f us, end - release %6.2f "
                "us (sums %7.1f / %7.1f)\n",
                *k, c, wait / c, run / c, wait, run);
        if (marks) printf("          release to mark %6.2f us\n", to_mark / marks);
    }
    return 0;
}

/* The CUDA backend, or NULL after printing why the run is skipped. */
static chord_backend *gpu_or_skip(chord_error *err) {
    chord_backend *g = NULL;
    if (chord_backend_cuda_new(&g, err) == CHORD_OK) return g;
    printf("skipped: no CUDA device (%s)\n", err->message);
    return NULL;
}

/* --stream: read bandwidth of the ways to bring weights into an SM (cuda_bench_stream). */
static int cmd_stream(void) {
    chord_error err = {0};
    chord_backend *g = gpu_or_skip(&err);
    if (!g) return 0;
    const size_t bytes = (size_t)1 << 30;
    static const struct {
        int mode, bps, threads, kib, stages;
    } cs[] = {
        {0, 4, 128, 0, 0},  {0, 8, 128, 0, 0},  {0, 4, 256, 0, 0},  {0, 8, 256, 0, 0},
        {1, 1, 512, 32, 4}, {1, 1, 512, 16, 8}, {1, 2, 256, 16, 4}, {1, 2, 512, 16, 4},
        {1, 4, 256, 8, 4},  {1, 4, 128, 8, 4},  {1, 8, 128, 4, 4},  {1, 1, 512, 48, 4},
        {2, 1, 512, 32, 4}, {2, 1, 128, 32, 4}, {2, 2, 256, 16, 4}, {2, 4, 128, 8, 4},
        {2, 4, 128, 16, 2}, {2, 8, 64, 4, 4},   {2, 1, 512, 96, 2}, {2, 2, 128, 48, 2},
    };
    const char *names[] = {"registers", "cp.async ring", "cp.async.bulk ring"};
    printf("streaming 1 GiB into the SMs (%s)\n", g->desc);
    printf("%-20s %8s %8s %9s %7s %10s\n", "way", "blk/SM", "threads", "stage KiB", "stages",
           "GB/s");
    int rc = 0;
    for (size_t i = 0; i < sizeof cs / sizeof cs[0]; i++) {
        double gbs = 0;
        if (cuda_bench_stream(g, cs[i].mode, cs[i].bps, cs[i].threads, cs[i].kib, cs[i].stages,
                              bytes, &gbs, &err) != CHORD_OK) {
            printf("%-20s %8d %8d %9d %7d  failed: %s\n", names[cs[i].mode], cs[i].bps,
                   cs[i].threads, cs[i].kib, cs[i].stages, err.message);
            rc = 1;
            continue;
        }
        printf("%-20s %8d %8d %9d %7d %10.0f\n", names[cs[i].mode], cs[i].bps, cs[i].threads,
               cs[i].kib, cs[i].stages, gbs);
    }
    static const int bar[][2] = {{1, 128}, {1, 512}, {1, 1024}, {2, 512}, {4, 256}, {8, 128}};
    for (size_t i = 0; i < sizeof bar / sizeof bar[0]; i++) {
        double us = 0;
        if (cuda_bench_barrier(g, bar[i][0], bar[i][1], 2000, &us, &err) == CHORD_OK)
            printf("grid barrier, %d blocks of %d threads per SM: %.3f us\n", bar[i][0],
                   bar[i][1], us);
        else
            printf("grid barrier %d x %d: %s\n", bar[i][0], bar[i][1], err.message);
    }
    g->ops->destroy(g);
    return rc;
}

/* --mvhot: decode matvec kernel time with the weights in L2 (two copies alternating) and
 * rotating over 256 MiB (from DRAM), TinyLlama's shapes: what an L2 prefetch could save. */
static int cmd_mvhot(void) {
    chord_error err = {0};
    chord_backend *g = gpu_or_skip(&err);
    if (!g) return 0;
    static const chord_type types[] = {CHORD_TYPE_Q4_K, CHORD_TYPE_Q6_K, CHORD_TYPE_Q8_0,
                                       CHORD_TYPE_Q4_0};
    static const int64_t shapes[][2] = {{2048, 2048},  {2560, 2048},  {5632, 2048},
                                        {11264, 2048}, {2048, 5632},  {4096, 4096},
                                        {12288, 4096}, {22016, 4096}, {4096, 11008}};
    printf("%-6s %-12s %7s | %8s %6s | %8s %6s\n", "type", "n_out x n_in", "MiB", "L2 us",
           "GB/s", "DRAM us", "GB/s");
    /* CHORD_MVHOT_ONLY="Q4_K 22016 4096": one type and shape (e.g. under ncu) */
    const char *only = getenv("CHORD_MVHOT_ONLY");
    for (size_t i = 0; i < sizeof types / sizeof types[0]; i++)
        for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
            if (only) {
                char want[64];
                snprintf(want, sizeof want, "%s %lld %lld", chord_type_name(types[i]),
                         (long long)shapes[s][0], (long long)shapes[s][1]);
                if (strcmp(only, want)) continue;
            }
            size_t nb = 0;
            const double hot =
                bench_type(g, types[i], shapes[s][0], shapes[s][1], 1, 1, 0, &nb);
            const double cold = bench_type(g, types[i], shapes[s][0], shapes[s][1], 1, 1,
                                           (size_t)256 << 20, &nb);
            printf("%-6s %5lldx%-6lld %7.2f | %8.2f %6.0f | %8.2f %6.0f\n",
                   chord_type_name(types[i]), (long long)shapes[s][0], (long long)shapes[s][1],
                   (double)nb / (1 << 20), hot, hot > 0 ? (double)nb / (hot * 1e3) : 0, cold,
                   cold > 0 ? (double)nb / (cold * 1e3) : 0);
        }
    g->ops->destroy(g);
    return 0;
}

static int cmd_decode(int argc, char **argv) {
    chord_model_params mp = chord_model_default_params();
    chord_model *m = NULL;
    chord_error err = {0};
    if (chord_model_load(argv[2], &mp, &m, &err) != CHORD_OK) {
        fprintf(stderr, "tool_gpu_bench: %s: %s\n", argv[2], err.message);
        return 1;
    }
    chord_backend *g = m->gpu && m->out_be == 1 ? m->gpu : NULL;
    if (!g) {
        printf("skipped: model not on the GPU (%s)\n", chord_model_backend(m));
        chord_model_free(m);
        return 0;
    }
    int pos = argc >= 4 ? atoi(argv[3]) : 0;
    chord_context_params cp = chord_context_default_params();
    cp.n_ctx = pos + 160;
    cp.n_batch = 512;
    chord_context *ctx = NULL;
    if (chord_context_new(m, &cp, &ctx, &err) != CHORD_OK) {
        fprintf(stderr, "context: %s\n", err.message);
        return 1;
    }
    const int V = chord_model_n_vocab(m), steps = 128;
    int32_t *toks = malloc(sizeof *toks * (size_t)(pos + steps + 1));
    for (int i = 0; i < pos + steps + 1; i++)
        toks[i] = (int32_t)((i * 2654435761u) % (unsigned)V);
    printf("decode steps of %s at positions %d..%d\n", argv[2], pos, pos + steps - 1);
    printf("%-40s %10s %10s\n", "variant", "host us", "graph us");
    const struct {
        const char *name;
        int graphs, fuse, pdl, persist, pairs, fast, waves, pf, pfb, early, pfc, q4kr, kst, spl;
    } vs[] = {
        {"graphs (default)", 1, 0, 1, 2, 1, 1, 1, -1, -1, -1, -1, 3, -1, 1},
        {"graphs, Q4_K chunk rounds not split", 1, 0, 1, 2, 1, 1, 1, -1, -1, -1, -1, 3, -1, 0},
        {"graphs, not split, 2 rows per warp", 1, 0, 1, 2, 1, 1, 1, -1, -1, -1, -1, 2, -1, 0},
        {"graphs, attention stages no cache rows", 1, 0, 1, 2, 1, 1, 1, -1, -1, -1, -1, 3, 0,
         1},
        {"graphs, no L2 prefetch", 1, 0, 1, 2, 1, 1, 1, 0, -1, -1, -1, 3, -1, 1},
        {"graphs, no pdl", 1, 0, 0, 2, 1, 1, 1, -1, -1, -1, -1, 3, -1, 1},
        {"graphs, early rmsnorm", 1, 0, 1, 2, 1, 1, 1, -1, -1, 3, -1, 3, -1, 1},
        {"graphs, no early triggers", 1, 0, 1, 2, 1, 1, 1, -1, -1, 0, -1, 3, -1, 1},
        {"graphs, not split (again)", 1, 0, 1, 2, 1, 1, 1, -1, -1, -1, -1, 3, -1, 0},
        {"graphs (default, again)", 1, 0, 1, 2, 1, 1, 1, -1, -1, -1, -1, 3, -1, 1},
    };
    const int pf0 = cuda_tune(g, "prefetch", 0); /* the default (CHORD_CUDA_PREFETCH) */
    const int pfb0 = cuda_tune(g, "pfblocks", 32);
    const int early0 = cuda_tune(g, "early", 1);
    const int pfc0 = cuda_tune(g, "pfchunk", 32);
    const int kst0 = cuda_tune(g, "kstage", 256);
    int rc = 0;
    /* TRACE_ONLY=1: no variant table (the A/B below and the trace only) */
    const bool trace_only = getenv("TRACE_ONLY") != NULL;
    for (size_t v = 0; v < (trace_only ? 0 : sizeof vs / sizeof vs[0]); v++) {
        cuda_set_graphs(g, vs[v].graphs);
        cuda_set_fuse(g, vs[v].fuse);
        cuda_set_pdl(g, vs[v].pdl);
        cuda_tune(g, "persist", vs[v].persist);
        cuda_tune(g, "pairs", vs[v].pairs);
        cuda_tune(g, "fast", vs[v].fast);
        cuda_tune(g, "waves", vs[v].waves);
        cuda_tune(g, "q4krows", vs[v].q4kr);
        cuda_tune(g, "prefetch", vs[v].pf < 0 ? pf0 : vs[v].pf);
        cuda_tune(g, "pfblocks", vs[v].pfb < 0 ? pfb0 : vs[v].pfb);
        cuda_tune(g, "early", vs[v].early < 0 ? early0 : vs[v].early);
        cuda_tune(g, "pfchunk", vs[v].pfc < 0 ? pfc0 : vs[v].pfc);
        cuda_tune(g, "kstage", vs[v].kst < 0 ? kst0 : vs[v].kst);
        cuda_tune(g, "q4ksplit", vs[v].spl);
        cuda_graphs_drop(g);
        double host, gus;
        if (time_steps(g, ctx, toks, pos, steps, vs[v].graphs == 1, &host, &gus, &err) !=
            CHORD_OK)
            goto fail;
        printf("%-40s %10.1f %10.1f\n", vs[v].name, host, gus);
    }
    cuda_set_graphs(g, 1);
    cuda_set_fuse(g, 0);
    cuda_set_pdl(g, 1);
    cuda_tune(g, "persist", 2);
    cuda_tune(g, "pairs", 1);
    cuda_tune(g, "fast", 1);
    cuda_tune(g, "waves", 1);
    cuda_tune(g, "q4krows", 3);
    const char *tpf = getenv("TRACE_PREFETCH");
    cuda_tune(g, "prefetch", tpf ? atoi(tpf) : pf0);
    const char *tpb = getenv("TRACE_PFBLOCKS");
    cuda_tune(g, "pfblocks", tpb ? atoi(tpb) : pfb0);
    cuda_tune(g, "early", early0);
    const char *tpc = getenv("TRACE_PFCHUNK");
    cuda_tune(g, "pfchunk", tpc ? atoi(tpc) : pfc0);
    cuda_tune(g, "kstage", kst0);
    const char *tsp = getenv("TRACE_Q4KSPLIT");
    cuda_tune(g, "q4ksplit", tsp ? atoi(tsp) : 1);
    /* AB_KNOB=name AB_VALS="a b a b": graph us per step with a cuda_tune knob at each
     * value in turn (steps pos.. each), interleaved in one run */
    const char *abk = getenv("AB_KNOB"), *abv = getenv("AB_VALS");
    if (abk && abv) {
        char *end;
        for (long val = strtol(abv, &end, 10); end != abv; val = strtol(abv = end, &end, 10)) {
            const int old = cuda_tune(g, abk, (int)val);
            double host, gus;
            if (time_steps(g, ctx, toks, pos, steps, true, &host, &gus, &err) != CHORD_OK)
                goto fail;
            printf("%s %ld: host %.1f graph %.1f us\n", abk, val, host, gus);
            cuda_tune(g, abk, old);
        }
    }
    if (trace_only) { /* the trace at positions 64.. */
        chord_context_truncate(ctx, 0);
        for (int i = 0; i < 64; i++)
            if (chord_eval(ctx, toks + i, 1, false, &err) != CHORD_OK) goto fail;
    }
    if (trace_step(g, ctx, toks + pos) != 0) goto fail;
    goto done;
fail:
    fprintf(stderr, "decode: %s\n", err.message);
    rc = 1;
done:
    free(toks);
    chord_context_free(ctx);
    chord_model_free(m);
    return rc;
}

/* --gemm-check: y of the pipelined prefill kernels (default, and each token tile forced by
 * CHORD_CUDA_GEMM_BM) must equal the old kernels' (CHORD_CUDA_GEMM=old) bit for bit. */
static int cmd_gemm_check(void) {
    chord_error err = {0};
    chord_backend *g = gpu_or_skip(&err);
    if (!g) return 0;
    static const chord_type types[] = {
        CHORD_TYPE_F16,  CHORD_TYPE_BF16, CHORD_TYPE_Q4_0, CHORD_TYPE_Q4_1,
        CHORD_TYPE_Q5_0, CHORD_TYPE_Q5_1, CHORD_TYPE_Q8_0, CHORD_TYPE_Q2_K,
        CHORD_TYPE_Q3_K, CHORD_TYPE_Q4_K, CHORD_TYPE_Q5_K, CHORD_TYPE_Q6_K,
    };
    /* n_out x n_in: TinyLlama's, a ragged n_out, short rows (fewer K-tiles than stages) */
    static const int64_t shapes[][2] = {{5632, 2048}, {256, 2048}, {2048, 5632},
                                        {1000, 512},  {200, 256},  {130, 64}};
    static const int ns[] = {512, 77, 2, 300};
    static const char *bms[] = {NULL, "32", "64", "128"};
    const int nmax = 512;
    int runs = 0, bad = 0;
    for (size_t ti = 0; ti < sizeof types / sizeof types[0]; ti++) {
        const chord_type t = types[ti];
        const int64_t blk = chord_type_get(t)->block_size;
        for (size_t si = 0; si < sizeof shapes / sizeof shapes[0]; si++) {
            const int64_t n_out = shapes[si][0], n_in = shapes[si][1];
            if (n_in % blk != 0) continue;
            size_t nbytes = 0;
            void *data = make_data(t, n_out, n_in, &nbytes);
            chord_weight w = {.name = "check",
                              .type = t,
                              .n_in = n_in,
                              .n_out = n_out,
                              .host = data,
                              .nbytes = nbytes};
            if (!data || g->ops->upload(g, &w, &err) != CHORD_OK) {
                printf("upload %s failed: %s\n", chord_type_name(t), err.message);
                free(data);
                bad++;
                continue;
            }
            const chord_weight *wp[1] = {&w};
            const size_t ny = (size_t)nmax * (size_t)n_out;
            float *x = dev_random(g, (size_t)nmax * (size_t)n_in);
            float *y = g->ops->alloc(g, ny * sizeof(float));
            float *ref = malloc(ny * sizeof(float)), *got = malloc(ny * sizeof(float));
            float *junk = malloc(ny * sizeof(float));
            memset(junk, 0xFF, ny * sizeof(float)); /* NaN: catches outputs never written */
            float *ys[1] = {y};
            for (size_t ni = 0; ni < sizeof ns / sizeof ns[0]; ni++) {
                const int n = ns[ni];
                const size_t cnt = (size_t)n * (size_t)n_out;
                setenv("CHORD_CUDA_GEMM", "old", 1);
                unsetenv("CHORD_CUDA_GEMM_BM");
                g->ops->from_host(g, y, junk, cnt * sizeof(float));
                g->ops->matmul(g, 1, ys, wp, x, n);
                g->ops->to_host(g, ref, y, cnt * sizeof(float));
                if (g->ops->sync(g, &err) != CHORD_OK) {
                    printf("old %s: %s\n", chord_type_name(t), err.message);
                    bad++;
                    continue;
                }
                unsetenv("CHORD_CUDA_GEMM");
                for (size_t bi = 0; bi < sizeof bms / sizeof bms[0]; bi++) {
                    if (bms[bi])
                        setenv("CHORD_CUDA_GEMM_BM", bms[bi], 1);
                    else
                        unsetenv("CHORD_CUDA_GEMM_BM");
                    g->ops->from_host(g, y, junk, cnt * sizeof(float));
                    g->ops->matmul(g, 1, ys, wp, x, n);
                    g->ops->to_host(g, got, y, cnt * sizeof(float));
                    runs++;
                    if (g->ops->sync(g, &err) != CHORD_OK) {
                        printf("new %s: %s\n", chord_type_name(t), err.message);
                        bad++;
                        continue;
                    }
                    size_t diff = 0, first = 0;
                    double maxd = 0;
                    for (size_t i = 0; i < cnt; i++) {
                        if (memcmp(&ref[i], &got[i], sizeof(float)) != 0) {
                            if (!diff) first = i;
                            diff++;
                            double d = fabs((double)ref[i] - (double)got[i]);
                            if (!(d <= maxd)) maxd = d;
                        }
                    }
                    if (diff) {
                        bad++;
                        printf("DIFF %-5s %5lldx%-5lld n=%-3d bm=%-4s %zu of %zu differ, max "
                               "|d| %g, first [%zu][%zu] old %.9g new %.9g\n",
                               chord_type_name(t), (long long)n_out, (long long)n_in, n,
                               bms[bi] ? bms[bi] : "auto", diff, cnt, maxd,
                               first / (size_t)n_out, first % (size_t)n_out, ref[first],
                               got[first]);
                    }
                }
            }
            unsetenv("CHORD_CUDA_GEMM_BM");
            printf("%-5s %5lldx%-5lld checked\n", chord_type_name(t), (long long)n_out,
                   (long long)n_in);
            fflush(stdout);
            g->ops->free(g, w.dev);
            g->ops->free(g, x);
            g->ops->free(g, y);
            free(ref), free(got), free(junk), free(data);
        }
        /* three weights sharing x in one matmul call: one grouped launch */
        {
            static const int64_t gout[3] = {300, 1000, 64};
            const int64_t n_in = 512;
            chord_weight gw[3];
            const chord_weight *gwp[3];
            void *gd[3];
            float *gy[3], *gref[3], *ggot[3];
            int up = 1;
            for (int k = 0; k < 3; k++) {
                size_t nbytes = 0;
                gd[k] = make_data(t, gout[k], n_in, &nbytes);
                chord_weight w = {.name = "group",
                                  .type = t,
                                  .n_in = n_in,
                                  .n_out = gout[k],
                                  .host = gd[k],
                                  .nbytes = nbytes};
                gw[k] = w;
                if (!gd[k] || g->ops->upload(g, &gw[k], &err) != CHORD_OK) up = 0;
                gwp[k] = &gw[k];
                gy[k] = g->ops->alloc(g, (size_t)nmax * gout[k] * sizeof(float));
                gref[k] = malloc((size_t)nmax * gout[k] * sizeof(float));
                ggot[k] = malloc((size_t)nmax * gout[k] * sizeof(float));
            }
            float *x = dev_random(g, (size_t)nmax * (size_t)n_in);
            float *gjunk = malloc((size_t)nmax * 1000 * sizeof(float));
            memset(gjunk, 0xFF, (size_t)nmax * 1000 * sizeof(float));
            for (size_t ni = 0; up && ni < sizeof ns / sizeof ns[0]; ni++) {
                const int n = ns[ni];
                setenv("CHORD_CUDA_GEMM", "old", 1);
                g->ops->matmul(g, 3, gy, gwp, x, n);
                for (int k = 0; k < 3; k++)
                    g->ops->to_host(g, gref[k], gy[k], (size_t)n * gout[k] * sizeof(float));
                unsetenv("CHORD_CUDA_GEMM");
                for (int k = 0; k < 3; k++) /* NaN: catches outputs never written */
                    g->ops->from_host(g, gy[k], gjunk, (size_t)n * gout[k] * sizeof(float));
                g->ops->matmul(g, 3, gy, gwp, x, n);
                for (int k = 0; k < 3; k++)
                    g->ops->to_host(g, ggot[k], gy[k], (size_t)n * gout[k] * sizeof(float));
                runs++;
                if (g->ops->sync(g, &err) != CHORD_OK) {
                    printf("grouped %s: %s\n", chord_type_name(t), err.message);
                    bad++;
                    continue;
                }
                for (int k = 0; k < 3; k++)
                    if (memcmp(gref[k], ggot[k], (size_t)n * gout[k] * sizeof(float)) != 0) {
                        printf("DIFF %-5s grouped weight %d (%lldx%lld) n=%d\n",
                               chord_type_name(t), k, (long long)gout[k], (long long)n_in, n);
                        bad++;
                    }
            }
            if (!up) {
                printf("grouped %s: upload failed\n", chord_type_name(t));
                bad++;
            }
            printf("%-5s grouped x3 checked\n", chord_type_name(t));
            for (int k = 0; k < 3; k++) {
                if (gw[k].dev) g->ops->free(g, gw[k].dev);
                g->ops->free(g, gy[k]);
                free(gref[k]), free(ggot[k]), free(gd[k]);
            }
            g->ops->free(g, x);
            free(gjunk);
        }
    }
    g->ops->destroy(g);
    printf("gemm-check: %d runs, %d with differences\n", runs, bad);
    return bad ? 1 : 0;
}

/* --attn-check: every output of ops->attention under the exact tiled kernels
 * (CHORD_CUDA_ATTN=exact, and split) must equal the old kernels' (CHORD_CUDA_ATTN=old, which
 * test_gpu_ops holds to the CPU backend); the default and flash modes (tensor cores from
 * FLASH_MIN_N tokens) must be finite everywhere and within FLASH_TOL of them (relative L2). */
#define FLASH_TOL 3e-3
static int cmd_attn_check(void) {
    chord_error err = {0};
    chord_backend *g = gpu_or_skip(&err);
    if (!g) return 0;
    static const int heads[][3] = {{32, 4, 64},  {8, 2, 64},  {4, 4, 64},
                                   {32, 4, 128}, {8, 2, 128}, {4, 4, 128}};
    static const int ctxs[] = {512, 4096};
    /* (n, pos0) per cache size; pos0 + n <= n_ctx */
    static const int cases512[][2] = {{1, 0},  {1, 300},  {7, 0},   {7, 123},
                                      {77, 0}, {77, 400}, {512, 0}, {16, 496}};
    static const int cases4k[][2] = {{1, 4000}, {7, 2000},   {77, 3000},
                                     {512, 0},  {512, 3584}, {1, 4095}};
    static const char *modes[] = {"exact", "split", NULL, "flash"};
    const char *mode0 = getenv("CHORD_CUDA_ATTN");
    const int nmax = 512;
    int runs = 0, bad = 0;
    for (size_t hi = 0; hi < sizeof heads / sizeof heads[0]; hi++) {
        const int nh = heads[hi][0], nkv = heads[hi][1], hd = heads[hi][2];
        for (size_t ci = 0; ci < sizeof ctxs / sizeof ctxs[0]; ci++) {
            const int n_ctx = ctxs[ci];
            chord_attn_shape s = {nh, nkv, hd, n_ctx, 1.0f / sqrtf((float)hd)};
            const size_t kvd = (size_t)nkv * hd, qd = (size_t)nh * hd;
            size_t kvb = g->ops->kv_bytes ? g->ops->kv_bytes(g, n_ctx, (int)kvd)
                                          : (size_t)n_ctx * kvd * 4;
            chord_kv kv = {g->ops->alloc(g, kvb), g->ops->alloc(g, kvb)};
            float *kf = dev_random(g, (size_t)n_ctx * kvd),
                  *vf = dev_random(g, (size_t)n_ctx * kvd);
            float *q = dev_random(g, (size_t)nmax * qd);
            float *o = g->ops->alloc(g, (size_t)nmax * qd * sizeof(float));
            const size_t ocnt = (size_t)nmax * qd;
            float *ref = malloc(ocnt * sizeof(float)), *got = malloc(ocnt * sizeof(float));
            float *junk = malloc(ocnt * sizeof(float));
            if (!kv.k || !kv.v || !kf || !vf || !q || !o || !ref || !got || !junk) {
                printf("attn-check: out of memory\n");
                return 1;
            }
            memset(junk, 0xFF, ocnt * sizeof(float)); /* NaN: catches outputs never written */
            setenv("CHORD_CUDA_ATTN", "old", 1);
            for (int p = 0; p < n_ctx; p += nmax) /* every cache row defined */
                g->ops->attention(g, o, q, kf + (size_t)p * kvd, vf + (size_t)p * kvd, &kv,
                                  nmax, p, &s);
            const int(*cases)[2] = n_ctx == 512 ? cases512 : cases4k;
            const size_t ncases = n_ctx == 512 ? sizeof cases512 / sizeof cases512[0]
                                               : sizeof cases4k / sizeof cases4k[0];
            for (size_t k = 0; k < ncases; k++) {
                const int n = cases[k][0], pos0 = cases[k][1];
                const size_t cnt = (size_t)n * qd;
                const float *kk = kf + (size_t)pos0 * kvd, *vv = vf + (size_t)pos0 * kvd;
                setenv("CHORD_CUDA_ATTN", "old", 1);
                g->ops->from_host(g, o, junk, cnt * sizeof(float));
                g->ops->attention(g, o, q, kk, vv, &kv, n, pos0, &s);
                g->ops->to_host(g, ref, o, cnt * sizeof(float));
                if (g->ops->sync(g, &err) != CHORD_OK) {
                    printf("old %d/%d/%d n=%d pos0=%d: %s\n", nh, nkv, hd, n, pos0,
                           err.message);
                    bad++;
                    continue;
                }
                for (size_t mi = 0; mi < sizeof modes / sizeof modes[0]; mi++) {
                    if (modes[mi])
                        setenv("CHORD_CUDA_ATTN", modes[mi], 1);
                    else
                        unsetenv("CHORD_CUDA_ATTN");
                    g->ops->from_host(g, o, junk, cnt * sizeof(float));
                    g->ops->attention(g, o, q, kk, vv, &kv, n, pos0, &s);
                    g->ops->to_host(g, got, o, cnt * sizeof(float));
                    runs++;
                    if (g->ops->sync(g, &err) != CHORD_OK) {
                        printf("new %d/%d/%d n=%d pos0=%d: %s\n", nh, nkv, hd, n, pos0,
                               err.message);
                        bad++;
                        continue;
                    }
                    /* the tensor-core kernel: from 64 tokens, or 2 when forced */
                    const bool tc =
                        mi != 0 && (hd == 64 || hd == 128) && (n >= 64 || (mi == 3 && n >= 2));
                    if (tc) { /* rounding differs */
                        double se = 0, sr = 0;
                        size_t nonfinite = 0;
                        for (size_t i = 0; i < cnt; i++) {
                            if (!isfinite(got[i])) nonfinite++;
                            const double d = (double)got[i] - ref[i];
                            se += d * d, sr += (double)ref[i] * ref[i];
                        }
                        const double rel = sr > 0 ? sqrt(se / sr) : sqrt(se);
                        if (nonfinite || !(rel <= FLASH_TOL)) {
                            bad++;
                            printf("TOL heads %d/%d hd %d n_ctx %d n=%d pos0=%d mode=%s: rel "
                                   "%.3e, "
                                   "%zu not finite\n",
                                   nh, nkv, hd, n_ctx, n, pos0,
                                   modes[mi] ? modes[mi] : "default", rel, nonfinite);
                        } else if (n >= 64 && pos0 == 0 && n_ctx == 512) {
                            printf("  %s %d/%d hd %d n=%d: rel %.2e\n",
                                   modes[mi] ? modes[mi] : "default", nh, nkv, hd, n, rel);
                        }
                        continue;
                    }
                    size_t diff = 0, first = 0;
                    for (size_t i = 0; i < cnt; i++)
                        if (memcmp(&ref[i], &got[i], sizeof(float)) != 0 && !diff++) first = i;
                    if (diff) {
                        bad++;
                        printf(
                            "DIFF heads %d/%d hd %d n_ctx %d n=%d pos0=%d mode=%s: %zu of %zu "
                            "differ, first [tok %zu][head %zu][%zu] old %.9g new %.9g\n",
                            nh, nkv, hd, n_ctx, n, pos0, modes[mi] ? modes[mi] : "default",
                            diff, cnt, first / qd, first % qd / (size_t)hd, first % (size_t)hd,
                            ref[first], got[first]);
                    }
                }
            }
            printf("heads %2d/%d hd %3d n_ctx %4d checked\n", nh, nkv, hd, n_ctx);
            fflush(stdout);
            g->ops->free(g, kv.k), g->ops->free(g, kv.v), g->ops->free(g, kf);
            g->ops->free(g, vf), g->ops->free(g, q), g->ops->free(g, o);
            free(ref), free(got), free(junk);
        }
    }
    printf("attn-check: %d runs, %d with differences\n", runs, bad);

    /* times, TinyLlama shape */
    {
        const int nh = 32, nkv = 4, hd = 64, n_ctx = 4096;
        chord_attn_shape s = {nh, nkv, hd, n_ctx, 0.125f};
        const size_t kvd = (size_t)nkv * hd;
        size_t kvb =
            g->ops->kv_bytes ? g->ops->kv_bytes(g, n_ctx, (int)kvd) : (size_t)n_ctx * kvd * 4;
        chord_kv kv = {g->ops->alloc(g, kvb), g->ops->alloc(g, kvb)};
        float *q = dev_random(g, (size_t)512 * nh * hd), *k = dev_random(g, (size_t)512 * kvd),
              *v = dev_random(g, (size_t)512 * kvd),
              *o = g->ops->alloc(g, (size_t)512 * nh * hd * sizeof(float));
        for (int p = 0; p < n_ctx; p += 512)
            g->ops->attention(g, o, q, k, v, &kv, 512, p, &s);
        static const int tc[][2] = {{512, 0}, {512, 3584}, {77, 1000}, {1, 4095}};
        static const char *tm[] = {"old", "exact", "split", "flash"};
        printf("\nattention times, 32/4 heads, hd 64 (us): %-10s %10s %10s %10s %10s\n", "case",
               "old", "exact", "split", "flash");
        for (size_t c = 0; c < sizeof tc / sizeof tc[0]; c++) {
            double us[4] = {0, 0, 0, 0};
            for (int mi = 0; mi < 4; mi++) {
                if (tm[mi])
                    setenv("CHORD_CUDA_ATTN", tm[mi], 1);
                else
                    unsetenv("CHORD_CUDA_ATTN");
                if (cuda_bench_attention(g, o, q, k, v, &kv, tc[c][0], tc[c][1], &s, 20,
                                         &us[mi], &err) != CHORD_OK) {
                    printf("attention failed: %s\n", err.message);
                    bad++;
                }
            }
            char cs[32];
            snprintf(cs, sizeof cs, "n=%d pos0=%d", tc[c][0], tc[c][1]);
            printf("%-42s %-10s %10.1f %10.1f %10.1f %10.1f\n", "", cs, us[0], us[1], us[2],
                   us[3]);
        }
        g->ops->free(g, kv.k), g->ops->free(g, kv.v), g->ops->free(g, q), g->ops->free(g, k);
        g->ops->free(g, v), g->ops->free(g, o);
    }
    if (mode0)
        setenv("CHORD_CUDA_ATTN", mode0, 1);
    else
        unsetenv("CHORD_CUDA_ATTN");
    g->ops->destroy(g);
    return bad ? 1 : 0;
}

int main(int argc, char **argv) {
    if (argc >= 2 && !strcmp(argv[1], "--gemm-check")) return cmd_gemm_check();
    if (argc >= 2 && !strcmp(argv[1], "--attn-check")) return cmd_attn_check();
    if (argc >= 3 && !strcmp(argv[1], "--backend")) return cmd_backend(argc, argv);
    if (argc >= 3 && !strcmp(argv[1], "--decode")) return cmd_decode(argc, argv);
    if (argc >= 2 && !strcmp(argv[1], "--stream")) return cmd_stream();
    if (argc >= 2 && !strcmp(argv[1], "--mvhot")) return cmd_mvhot();
    chord_error err = {0};
    chord_backend *g = gpu_or_skip(&err);
    if (!g) return 0;
    printf("device: %s\n", g->desc);
    double copy = 0;
    if (cuda_bench_copy(g, (size_t)1 << 30, &copy, &err) == CHORD_OK)
        printf("device-to-device copy: %.0f GB/s (read + write)\n", copy);
    else
        printf("copy bench failed: %s\n", err.message);

    static const chord_type types[] = {
        CHORD_TYPE_F32,  CHORD_TYPE_F16,  CHORD_TYPE_BF16, CHORD_TYPE_Q8_0, CHORD_TYPE_Q4_0,
        CHORD_TYPE_Q4_1, CHORD_TYPE_Q5_0, CHORD_TYPE_Q5_1, CHORD_TYPE_Q2_K, CHORD_TYPE_Q3_K,
        CHORD_TYPE_Q4_K, CHORD_TYPE_Q5_K, CHORD_TYPE_Q6_K,
    };
    const int64_t shapes[3][2] = {{5632, 2048}, {2048, 5632}, {32000, 4096}}; /* n_out x n_in */
    printf("\ndecode matvec (n = 1), weights rotating over >= 256 MiB; GB/s of weight bytes, "
           "%% of %.0f GB/s\n"
           "kernel: the matvec kernel alone (pdl: programmatic dependent launch on); op: "
           "ops->matmul\n"
           "(x quantized per call, one weight per call, pdl on)\n",
           PEAK_GBS);
    printf("%-6s %-12s %7s | %8s %6s | %8s %6s %6s | %8s %6s\n", "type", "n_out x n_in", "MiB",
           "no-pdl", "GB/s", "kern us", "GB/s", "%", "op us", "GB/s");
    for (size_t i = 0; i < sizeof types / sizeof types[0]; i++) {
        for (int s = 0; s < 3; s++) {
            size_t nb = 0;
            int old = cuda_set_pdl(g, 0);
            double us_n = bench_type(g, types[i], shapes[s][0], shapes[s][1], 1, 1,
                                     (size_t)256 << 20, &nb);
            cuda_set_pdl(g, old);
            double us_k = bench_type(g, types[i], shapes[s][0], shapes[s][1], 1, 1,
                                     (size_t)256 << 20, &nb);
            double us_o = s == 2 ? 0
                                 : bench_type(g, types[i], shapes[s][0], shapes[s][1], 1, 0,
                                              (size_t)256 << 20, &nb);
            double gn = us_n > 0 ? (double)nb / (us_n * 1e-6) / 1e9 : 0;
            double gk = us_k > 0 ? (double)nb / (us_k * 1e-6) / 1e9 : 0;
            double go = us_o > 0 ? (double)nb / (us_o * 1e-6) / 1e9 : 0;
            char shp[32];
            snprintf(shp, sizeof shp, "%lldx%lld", (long long)shapes[s][0],
                     (long long)shapes[s][1]);
            printf("%-6s %-12s %7.2f | %8.2f %6.0f | %8.2f %6.0f %5.1f%% | %8.2f %6.0f\n",
                   chord_type_name(types[i]), shp, (double)nb / (1 << 20), us_n, gn, us_k, gk,
                   100.0 * gk / PEAK_GBS, us_o, go);
        }
        fflush(stdout);
    }

    printf("\nprefill matmul (n = 512 tokens): old kernels (CHORD_CUDA_GEMM=old) vs "
           "pipelined\n");
    static const chord_type ptypes[] = {CHORD_TYPE_F16,  CHORD_TYPE_BF16, CHORD_TYPE_Q8_0,
                                        CHORD_TYPE_Q4_0, CHORD_TYPE_Q4_K, CHORD_TYPE_Q6_K,
                                        CHORD_TYPE_Q5_K, CHORD_TYPE_F32};
    static const int64_t pshapes[][2] = {{5632, 2048}, {2048, 2048}, {2048, 5632}, {256, 2048}};
    printf("%-6s %-10s %9s %7s | %9s %7s %6s | %9s %9s %9s\n", "type", "shape", "old us",
           "TFLOP/s", "new us", "TFLOP/s", "x", "bm=32 us", "bm=64 us", "bm=128 us");
    const char *mode0 = getenv("CHORD_CUDA_GEMM");
    for (size_t i = 0; i < sizeof ptypes / sizeof ptypes[0]; i++) {
        for (size_t si = 0; si < sizeof pshapes / sizeof pshapes[0]; si++) {
            const int64_t no = pshapes[si][0], ni = pshapes[si][1];
            size_t nb = 0;
            setenv("CHORD_CUDA_GEMM", "old", 1);
            double us0 = bench_type(g, ptypes[i], no, ni, 512, 0, 0, &nb);
            unsetenv("CHORD_CUDA_GEMM");
            double us1 = bench_type(g, ptypes[i], no, ni, 512, 0, 0, &nb);
            double ub[3] = {0, 0, 0};
            static const char *bmv[3] = {"32", "64", "128"};
            for (int b = 0; b < 3 && ptypes[i] != CHORD_TYPE_F32; b++) {
                setenv("CHORD_CUDA_GEMM_BM", bmv[b], 1);
                ub[b] = bench_type(g, ptypes[i], no, ni, 512, 0, 0, &nb);
            }
            unsetenv("CHORD_CUDA_GEMM_BM");
            const double fl = 2.0 * 512 * (double)no * (double)ni;
            char shp[32];
            snprintf(shp, sizeof shp, "%lldx%lld", (long long)no, (long long)ni);
            printf("%-6s %-10s %9.1f %7.1f | %9.1f %7.1f %6.2f | %9.1f %9.1f %9.1f\n",
                   chord_type_name(ptypes[i]), shp, us0, us0 > 0 ? fl / (us0 * 1e-6) / 1e12 : 0,
                   us1, us1 > 0 ? fl / (us1 * 1e-6) / 1e12 : 0, us1 > 0 ? us0 / us1 : 0, ub[0],
                   ub[1], ub[2]);
        }
        fflush(stdout);
    }
    if (mode0) setenv("CHORD_CUDA_GEMM", mode0, 1);

    printf("\nattention, TinyLlama shape (32 heads, 4 kv heads, head_dim 64)\n");
    {
        const int nh = 32, nkv = 4, hd = 64, n_ctx = 4096;
        chord_attn_shape s = {nh, nkv, hd, n_ctx, 0.125f};
        size_t kvb = g->ops->kv_bytes ? g->ops->kv_bytes(g, n_ctx, nkv * hd)
                                      : (size_t)n_ctx * nkv * hd * 4;
        chord_kv kv = {g->ops->alloc(g, kvb), g->ops->alloc(g, kvb)};
        float *q = dev_random(g, (size_t)512 * nh * hd),
              *k = dev_random(g, (size_t)512 * nkv * hd),
              *v = dev_random(g, (size_t)512 * nkv * hd),
              *o = g->ops->alloc(g, (size_t)512 * nh * hd * 4);
        for (int p = 0; p < n_ctx; p += 512)
            g->ops->attention(g, o, q, k, v, &kv, 512, p, &s); /* fill */
        const int cases[][2] = {{1, 511}, {1, 2047}, {1, 4095}, {512, 0}, {512, 3584}};
        for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
            int n = cases[c][0], pos0 = cases[c][1];
            double us = 0, us_old = 0;
            const char *am = getenv("CHORD_CUDA_ATTN");
            char *am_saved = am ? strdup(am) : NULL;
            setenv("CHORD_CUDA_ATTN", "old", 1);
            chord_status st0 =
                cuda_bench_attention(g, o, q, k, v, &kv, n, pos0, &s, 20, &us_old, &err);
            if (am_saved)
                setenv("CHORD_CUDA_ATTN", am_saved, 1);
            else
                unsetenv("CHORD_CUDA_ATTN");
            free(am_saved);
            if (st0 != CHORD_OK || cuda_bench_attention(g, o, q, k, v, &kv, n, pos0, &s, 20,
                                                        &us, &err) != CHORD_OK) {
                printf("attention failed: %s\n", err.message);
                break;
            }
            double kv_bytes = 2.0 * (double)kvb / n_ctx * (pos0 + n);
            printf(
                "n=%-4d keys %-5d %9.1f us (old kernels %9.1f us)   (KV %.1f MiB, %.0f GB/s if "
                "read once)\n",
                n, pos0 + n, us, us_old, kv_bytes / (1 << 20), kv_bytes / (us * 1e-6) / 1e9);
        }
        g->ops->free(g, kv.k), g->ops->free(g, kv.v), g->ops->free(g, q), g->ops->free(g, k);
        g->ops->free(g, v), g->ops->free(g, o);
    }
    chord_status st = g->ops->sync(g, &err);
    g->ops->destroy(g);
    if (st != CHORD_OK) {
        printf("error: %s\n", err.message);
        return 1;
    }
    return 0;
}
#endif
