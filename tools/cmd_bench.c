/* chord bench: llama-bench's flags and table (pp = prompt processing, tg = text
 * generation), plus, for decode, the weight bytes read per token and the fraction of
 * the machine's memory read bandwidth that speed implies. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "args.h"
#include "bench_kernels.h"
#include "chord.h"
#include "membw.h"
#include "model.h"

#define MAXL 16

typedef struct list {
    const char *s[MAXL];
    int v[MAXL];
    int n;
} list;

static bool parse_list(const char *flag, const char *val, list *l, bool numeric, int lo, int hi) {
    char *copy = strdup(val), *save = NULL;
    l->n = 0;
    for (char *tok = strtok_r(copy, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
        if (l->n == MAXL) {
            fprintf(stderr, "chord: %s takes at most %d values\n", flag, MAXL);
            return false;
        }
        if (numeric) {
            if (!arg_int(flag, tok, lo, hi, &l->v[l->n])) return false;
        } else {
            l->s[l->n] = strdup(tok);
        }
        l->n++;
    }
    free(copy);
    if (!l->n) fprintf(stderr, "chord: %s needs at least one value\n", flag);
    return l->n > 0;
}

static void usage(FILE *f) {
    fprintf(f,
            "usage: chord bench -m MODEL[,MODEL...] [options]\n"
            "  -m FILES     models (comma-separated)\n"
            "  -p N,...     prompt lengths for pp tests (default 512; 0 skips)\n"
            "  -n N,...     generated tokens for tg tests (default 128; 0 skips)\n"
            "  -t N,...     CPU threads (default: physical cores)\n"
            "  -r N         repetitions (default 5)\n"
            "  -ngl N       layers on the GPU (default: all that fit; 0 = CPU)\n"
            "  --no-bw      do not measure memory bandwidth\n"
            "chord bench --kernels [-t N]  fused vs naive kernels, GB/s of weights per type\n"
            "chord bench --isa-list        instruction sets this CPU can run, best last\n");
}

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

static const char *ftype_name(const chord_model *m) {
    char buf[32];
    int ft = -1;
    if (chord_model_meta(m, "general.file_type", buf, sizeof buf) > 0) ft = atoi(buf);
    switch (ft) {
    case 0: return "all F32";
    case 1: return "F16";
    case 2: return "Q4_0";
    case 3: return "Q4_1";
    case 7: return "Q8_0";
    case 8: return "Q5_0";
    case 9: return "Q5_1";
    case 10: return "Q2_K - Medium";
    case 11: return "Q3_K - Small";
    case 12: return "Q3_K - Medium";
    case 13: return "Q3_K - Large";
    case 14: return "Q4_K - Small";
    case 15: return "Q4_K - Medium";
    case 16: return "Q5_K - Small";
    case 17: return "Q5_K - Medium";
    case 18: return "Q6_K";
    case 32: return "BF16";
    default: return chord_type_name(m->layers[0].wq.type);
    }
}

/* Bytes of weights one decode step reads: every layer matrix and the output head. */
static double weight_bytes_per_token(const chord_model *m) {
    double b = m->output.nbytes + m->output_norm.nbytes;
    for (int l = 0; l < m->hp.n_layer; l++) {
        const chord_layer *L = &m->layers[l];
        b += L->wq.nbytes + L->wk.nbytes + L->wv.nbytes + L->wo.nbytes + L->w_gate.nbytes +
             L->w_up.nbytes + L->w_down.nbytes + L->attn_norm.nbytes + L->ffn_norm.nbytes;
    }
    return b;
}

static void stats(const double *x, int n, double *mean, double *sd) {
    double s = 0, q = 0;
    for (int i = 0; i < n; i++) s += x[i];
    *mean = s / n;
    for (int i = 0; i < n; i++) q += (x[i] - *mean) * (x[i] - *mean);
    *sd = n > 1 ? sqrt(q / (n - 1)) : 0;
}

/* One test: pp (n_prompt tokens in one eval) or tg (n_gen evals of one token). */
static bool run_test(chord_context *ctx, int n_vocab, int n_prompt, int n_gen, int reps,
                     double *tps) {
    int n = n_prompt ? n_prompt : n_gen;
    int32_t *toks = malloc(sizeof *toks * (size_t)n);
    unsigned r = 12345;
    for (int i = 0; i < n; i++) toks[i] = (int32_t)((r = r * 1103515245u + 12345u) >> 8) % n_vocab;
    chord_error err = {0};
    bool ok = true;
    for (int rep = -1; rep < reps && ok; rep++) { /* rep -1 warms up */
        chord_context_truncate(ctx, 0);
        double t0 = now();
        if (n_prompt) {
            ok = chord_eval(ctx, toks, n_prompt, false, &err) == CHORD_OK;
        } else {
            for (int i = 0; i < (rep < 0 ? 1 : n_gen) && ok; i++)
                ok = chord_eval(ctx, toks + i, 1, false, &err) == CHORD_OK;
        }
        double dt = now() - t0;
        if (rep >= 0) tps[rep] = n / dt;
    }
    if (!ok) fprintf(stderr, "chord: bench: %s\n", err.message);
    free(toks);
    return ok;
}

int cmd_bench(int argc, char **argv) {
    list models = {0}, pp = {.v = {512}, .n = 1}, tg = {.v = {128}, .n = 1}, th = {.v = {0}, .n = 1};
    int reps = 5, ngl = -1;
    bool kernels = false, no_bw = false;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            usage(stdout);
            return 0;
        } else if (!strcmp(a, "--isa-list")) {
            return bench_print_isas();
        } else if (!strcmp(a, "--kernels")) {
            kernels = true;
        } else if (!strcmp(a, "--no-bw")) {
            no_bw = true;
        } else if (!strcmp(a, "-m") || !strcmp(a, "--model")) {
            if (!(v = arg_value(argc, argv, &i)) || !parse_list(a, v, &models, false, 0, 0)) return 1;
        } else if (!strcmp(a, "-p") || !strcmp(a, "--n-prompt")) {
            if (!(v = arg_value(argc, argv, &i)) || !parse_list(a, v, &pp, true, 0, 1 << 16)) return 1;
        } else if (!strcmp(a, "-n") || !strcmp(a, "--n-gen")) {
            if (!(v = arg_value(argc, argv, &i)) || !parse_list(a, v, &tg, true, 0, 1 << 16)) return 1;
        } else if (!strcmp(a, "-t") || !strcmp(a, "--threads")) {
            if (!(v = arg_value(argc, argv, &i)) || !parse_list(a, v, &th, true, 0, 1024)) return 1;
        } else if (!strcmp(a, "-r") || !strcmp(a, "--repetitions")) {
            if (!(v = arg_value(argc, argv, &i)) || !arg_int(a, v, 1, 1000, &reps)) return 1;
        } else if (!strcmp(a, "-ngl") || !strcmp(a, "--n-gpu-layers")) {
            if (!(v = arg_value(argc, argv, &i)) || !arg_int(a, v, -1, 100000, &ngl)) return 1;
        } else {
            fprintf(stderr, "chord bench: unknown option '%s'\n", a);
            usage(stderr);
            return 1;
        }
    }
    if (kernels) return bench_kernels(th.v[0]);
    if (!models.n) {
        usage(stderr);
        return 1;
    }
    int max_ctx = 0;
    for (int i = 0; i < pp.n; i++) max_ctx = pp.v[i] > max_ctx ? pp.v[i] : max_ctx;
    for (int i = 0; i < tg.n; i++) max_ctx = tg.v[i] > max_ctx ? tg.v[i] : max_ctx;
    printf("| model | size | params | backend | threads | test | t/s | weights/token | GB/s | %% of bw |\n");
    printf("| --- | ---: | ---: | --- | ---: | --- | ---: | ---: | ---: | ---: |\n");
    fflush(stdout);
    double *tps = malloc(sizeof(double) * (size_t)reps);
    int rc = 0;
    for (int mi = 0; mi < models.n; mi++) {
        chord_model *m = load_model_cli(models.s[mi], ngl, true);
        if (!m) {
            rc = 1;
            continue;
        }
        double wbytes = weight_bytes_per_token(m), params = 0;
        for (uint64_t t = 0; t < gguf_n_tensors(m->gguf); t++) {
            const gguf_tensor *gt = gguf_tensor_at(m->gguf, t);
            params += (double)gt->ne[0] * gt->ne[1] * gt->ne[2] * gt->ne[3];
        }
        for (int ti = 0; ti < th.n; ti++) {
            chord_context *ctx = NULL;
            chord_error err = {0};
            chord_context_params cp = chord_context_default_params();
            cp.n_ctx = max_ctx < 16 ? 16 : max_ctx;
            cp.n_threads = th.v[ti];
            cp.n_batch = max_ctx < 512 ? (max_ctx ? max_ctx : 1) : 512;
            if (chord_context_new(m, &cp, &ctx, &err) != CHORD_OK) {
                fprintf(stderr, "chord: %s\n", err.message);
                rc = 1;
                continue;
            }
            int n_threads = bench_context_threads(ctx);
            bool on_gpu = m->gpu && m->layer_be[0] == 1;
            double bw = (!no_bw && !on_gpu && tg.n && tg.v[0]) ? membw_read_gbps(n_threads) : 0;
            for (int kind = 0; kind < 2; kind++) {
                list *l = kind ? &tg : &pp;
                for (int k = 0; k < l->n; k++) {
                    if (!l->v[k]) continue;
                    if (!run_test(ctx, m->hp.n_vocab, kind ? 0 : l->v[k], kind ? l->v[k] : 0, reps, tps)) {
                        rc = 1;
                        continue;
                    }
                    double mean, sd;
                    stats(tps, reps, &mean, &sd);
                    printf("| %s %.1fB %s | %.2f MiB | %.2f B | %s | %d | %s%d | %.2f ± %.2f |", m->arch,
                           params / 1e9, ftype_name(m), (double)gguf_size(m->gguf) / (1 << 20), params / 1e9,
                           on_gpu ? "CUDA" : "CPU", n_threads, kind ? "tg" : "pp", l->v[k], mean, sd);
                    if (kind) {
                        double gbps = wbytes * mean / 1e9;
                        printf(" %.1f MiB | %.1f |", wbytes / (1 << 20), gbps);
                        if (bw > 0) printf(" %.0f%% of %.1f |\n", 100 * gbps / bw, bw);
                        else printf(" - |\n");
                    } else {
                        printf(" | | |\n");
                    }
                    fflush(stdout);
                }
            }
            chord_context_free(ctx);
        }
        chord_model_free(m);
    }
    free(tps);
    return rc;
}
