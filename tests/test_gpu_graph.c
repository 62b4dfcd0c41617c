/* Decode steps through CUDA graphs (src/cuda/graph.cu) give the logits of the plain ops:
 * for dev models (gpu_data/ or ../shared/golden), 40 one-token steps (with a 5-token
 * chunk half way, which moves the positions on and may grow scratch buffers) run with
 * graphs off (0), fused without a graph (2) and as graphs (1); the logits must agree bit
 * for bit (reported), and within 1e-6 of the largest logit (checked). Two contexts that
 * share the model's GPU backend, stepped alternately, must each get what they get alone
 * (each needs its own graph). Without a CUDA device: "skipped" and passes. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "chord.h"
#include "context.h"
#include "model.h"
#include "sample.h"
#include "testutil.h"
#ifdef CHORD_HAVE_CUDA
#include "cuda/cuda_api.h"
#endif

#ifndef CHORD_HAVE_CUDA
int main(void) {
    printf("skipped: no CUDA device (chord built without CUDA)\n");
    return 0;
}
#else

#define N_STEPS 40
#define N_PROMPT 8
#define N_MID 5

static int32_t tok_at(int ctx_id, int i, int n_vocab) {
    unsigned r = 2654435761u * (unsigned)(i + 1) + 40503u * (unsigned)(ctx_id + 7);
    r ^= r >> 13;
    return (int32_t)(r % (unsigned)n_vocab);
}

/* Prompt, 20 steps, a 5-token chunk, 20 steps; the steps' logits into out[N_STEPS][V]. */
static bool run_ctx(chord_context *ctx, int ctx_id, int n_vocab, float *out) {
    chord_error err = {0};
    int32_t t[N_PROMPT];
    chord_context_truncate(ctx, 0);
    for (int i = 0; i < N_PROMPT; i++)
        t[i] = tok_at(ctx_id, i, n_vocab);
    if (chord_eval(ctx, t, N_PROMPT, false, &err) != CHORD_OK) goto fail;
    for (int s = 0; s < N_STEPS; s++) {
        if (s == N_STEPS / 2) {
            for (int i = 0; i < N_MID; i++)
                t[i] = tok_at(ctx_id, 100 + i, n_vocab);
            if (chord_eval(ctx, t, N_MID, false, &err) != CHORD_OK) goto fail;
        }
        int32_t x = tok_at(ctx_id, 1000 + s, n_vocab);
        if (chord_eval(ctx, &x, 1, false, &err) != CHORD_OK) goto fail;
        memcpy(out + (size_t)s * n_vocab, chord_get_logits(ctx, -1), sizeof(float) * n_vocab);
    }
    return true;
fail:
    fprintf(stderr, "eval: %s\n", err.message);
    return false;
}

/* One step of each context in turn (same token sequence as run_ctx). */
static bool run_interleaved(chord_context **ctx, int n_vocab, float **out) {
    chord_error err = {0};
    int32_t t[N_PROMPT];
    for (int c = 0; c < 2; c++) {
        chord_context_truncate(ctx[c], 0);
        for (int i = 0; i < N_PROMPT; i++)
            t[i] = tok_at(c, i, n_vocab);
        if (chord_eval(ctx[c], t, N_PROMPT, false, &err) != CHORD_OK) goto fail;
    }
    for (int s = 0; s < N_STEPS; s++) {
        for (int c = 0; c < 2; c++) {
            if (s == N_STEPS / 2) {
                for (int i = 0; i < N_MID; i++)
                    t[i] = tok_at(c, 100 + i, n_vocab);
                if (chord_eval(ctx[c], t, N_MID, false, &err) != CHORD_OK) goto fail;
            }
            int32_t x = tok_at(c, 1000 + s, n_vocab);
            if (chord_eval(ctx[c], &x, 1, false, &err) != CHORD_OK) goto fail;
            memcpy(out[c] + (size_t)s * n_vocab, chord_get_logits(ctx[c], -1),
                   sizeof(float) * n_vocab);
        }
    }
    return true;
fail:
    fprintf(stderr, "eval: %s\n", err.message);
    return false;
}

/* max |a - b| / max |b|; *bits: number of values that differ in any bit */
static double cmp(const float *a, const float *b, size_t n, size_t *bits) {
    double md = 0, mb = 0;
    *bits = 0;
    for (size_t i = 0; i < n; i++) {
        if (isnan(a[i]) || isnan(b[i])) return INFINITY;
        double d = fabs((double)a[i] - b[i]);
        md = d > md ? d : md;
        mb = fabs(b[i]) > mb ? fabs(b[i]) : mb;
        *bits += memcmp(&a[i], &b[i], sizeof(float)) != 0;
    }
    return mb > 0 ? md / mb : md;
}

/* Sampling from the GPU's best candidates (context_eval_topk) draws the tokens that
 * sampling from all the logits draws: two contexts, the same steps, for greedy (with a
 * penalty) and top-k / top-p / min-p / temperature. */
static void test_sampling(chord_model *m, const char *name) {
    const int V = m->hp.n_vocab;
    chord_context_params cp = chord_context_default_params();
    cp.n_ctx = 96;
    cp.n_batch = 16;
    chord_context *a = NULL, *b = NULL;
    chord_error err = {0};
    if (chord_context_new(m, &cp, &a, &err) != CHORD_OK ||
        chord_context_new(m, &cp, &b, &err) != CHORD_OK) {
        CHECK(false, "context: %s", err.message);
        chord_context_free(a);
        return;
    }
    const struct {
        float temp, top_p, min_p, pen;
        int top_k;
    } cfg[] = {{0.0f, 1.0f, 0.0f, 1.0f, 0},
               {0.0f, 1.0f, 0.0f, 1.3f, 0},
               {0.9f, 0.95f, 0.05f, 1.1f, 40},
               {1.2f, 1.0f, 0.0f, 1.0f, 5}};
    int same = 0, steps = 0, from_cands = 0;
    for (size_t c = 0; c < sizeof cfg / sizeof cfg[0]; c++) {
        chord_sampler_params sp = chord_sampler_default_params();
        sp.temperature = cfg[c].temp, sp.top_p = cfg[c].top_p, sp.min_p = cfg[c].min_p;
        sp.repeat_penalty = cfg[c].pen, sp.top_k = cfg[c].top_k, sp.seed = 5 + c;
        chord_sampler *sa = NULL, *sb = NULL;
        chord_sampler_new(&sp, &sa, &err);
        chord_sampler_new(&sp, &sb, &err);
        chord_context_truncate(a, 0);
        chord_context_truncate(b, 0);
        int32_t tok[N_PROMPT];
        for (int i = 0; i < N_PROMPT; i++)
            tok[i] = tok_at(3, i, V);
        int n = N_PROMPT;
        for (int step = 0; step < 24; step++) {
            int32_t ids[512];
            float vals[512];
            int got = 0;
            const int k = sampler_cands_needed(sa, V);
            int32_t ta = -1, tb = -1;
            if (k > 0 && k <= 512 &&
                context_eval_topk(a, tok, n, k, ids, vals, &got, &err) == CHORD_OK) {
                ta = got ? sampler_sample_cands(sa, ids, vals, got, V)
                         : chord_sampler_sample(sa, chord_get_logits(a, -1), V);
                from_cands += got > 0;
            }
            if (chord_eval(b, tok, n, false, &err) == CHORD_OK)
                tb = chord_sampler_sample(sb, chord_get_logits(b, -1), V);
            same += ta == tb && ta >= 0;
            steps++;
            chord_sampler_accept(sa, tb);
            chord_sampler_accept(sb, tb);
            tok[0] = tb >= 0 ? tb : 0;
            n = 1;
        }
        chord_sampler_free(sa);
        chord_sampler_free(sb);
    }
    printf("  %-8s sampling from the GPU's candidates: %d of %d draws as from all logits (%d "
           "from candidates)\n",
           name, same, steps, from_cands);
    CHECK(same == steps, "%s: candidate draws differ (%d of %d)", name, same, steps);
    CHECK(from_cands == steps, "%s: %d of %d draws used the GPU's candidates", name, from_cands,
          steps);
    chord_context_free(a);
    chord_context_free(b);
}

static void test_model(const char *path, const char *name) {
    chord_model_params mp = chord_model_default_params();
    chord_model *m = NULL;
    chord_error err = {0};
    if (chord_model_load(path, &mp, &m, &err) != CHORD_OK) {
        CHECK(false, "load %s: %s", path, err.message);
        return;
    }
    if (!m->gpu || m->out_be != 1) {
        printf("  %s: not on the GPU (%s), skipped\n", name, chord_model_backend(m));
        chord_model_free(m);
        return;
    }
    const int V = m->hp.n_vocab;
    const size_t nl = (size_t)N_STEPS * V;
    chord_context_params cp = chord_context_default_params();
    cp.n_ctx = 128;
    cp.n_batch = 16;
    chord_context *ctx[2] = {NULL, NULL};
    for (int c = 0; c < 2; c++)
        if (chord_context_new(m, &cp, &ctx[c], &err) != CHORD_OK) {
            CHECK(false, "context: %s", err.message);
            goto done;
        }
    float *ref[2], *got[5][2];
    for (int c = 0; c < 2; c++) {
        ref[c] = malloc(nl * sizeof(float));
        for (int mo = 0; mo < 5; mo++)
            got[mo][c] = malloc(nl * sizeof(float));
    }
    /* alone, each mode (3: graphs whose matvecs quantize their own input; 4: graphs whose
     * attention also quantizes per 256 over thread-block clusters); then interleaved with
     * graphs */
    const int modes[5] = {0, 2, 1, 3, 4};
    const int aq0 = cuda_tune(m->gpu, "attnquant", 1);
    for (int mi = 0; mi < 5; mi++) {
        cuda_set_graphs(m->gpu, modes[mi] >= 3 ? 1 : modes[mi]);
        cuda_set_fuse(m->gpu, modes[mi] == 3);
        cuda_tune(m->gpu, "attnquant", modes[mi] == 4 ? 2 : aq0);
        for (int c = 0; c < 2; c++)
            CHECK(run_ctx(ctx[c], c, V, mi == 0 ? ref[c] : got[mi][c]), "%s mode %d", name,
                  modes[mi]);
    }
    cuda_set_fuse(m->gpu, 0);
    cuda_set_graphs(m->gpu, 1);
    cuda_tune(m->gpu, "attnquant", aq0);
    float *inter[2] = {got[0][0], got[0][1]}; /* reuse as buffers */
    CHECK(run_interleaved(ctx, V, inter), "%s interleaved", name);
    int fails = 0, held = cuda_graph_count(m->gpu, &fails);
    for (int c = 0; c < 2; c++) {
        size_t b2, b1, b3, b4, bi;
        double e4 = cmp(got[4][c], ref[c], nl, &b4);
        double e2 = cmp(got[1][c], ref[c], nl, &b2);
        double e1 = cmp(got[2][c], ref[c], nl, &b1);
        double e3 = cmp(got[3][c], ref[c], nl, &b3);
        double ei = cmp(inter[c], got[2][c], nl, &bi);
        printf("  %-8s ctx %d: vs plain ops: fused %.2e (%zu of %zu values differ), graph %.2e "
               "(%zu), graph with input-quantizing matvecs %.2e (%zu); interleaved/alone %.2e "
               "(%zu), clustered attention quantization %.2e (%zu)\n",
               name, c, e2, b2, nl, e1, b1, e3, b3, ei, bi, e4, b4);
        CHECK(e2 <= 1e-6, "%s ctx %d: fused vs plain %.3e", name, c, e2);
        CHECK(e1 <= 1e-6, "%s ctx %d: graph vs plain %.3e", name, c, e1);
        CHECK(e3 <= 1e-6, "%s ctx %d: graph (input-quantizing matvecs) vs plain %.3e", name, c,
              e3);
        CHECK(b4 == 0, "%s ctx %d: clustered attention quantization vs plain %.3e (%zu)", name,
              c, e4, b4);
        CHECK(bi == 0, "%s ctx %d: interleaved graphs differ from one context (%zu values)",
              name, c, bi);
    }
    int pf_stalled = 0, pf_done = cuda_pf_stats(m->gpu, &pf_stalled);
    printf(
        "  %-8s graphs held %d, failed captures %d; L2 prefetcher warps ended %d, stalled %d\n",
        name, held, fails, pf_done, pf_stalled);
    CHECK(pf_stalled == 0, "%s: %d prefetcher warps waited for a matvec that never reported",
          name, pf_stalled);
    const char *pf_env = getenv("CHORD_CUDA_PREFETCH");
    if (!pf_env || strcmp(pf_env, "0") != 0)
        CHECK(pf_done > 0, "%s: the L2 prefetcher never ran", name);
    CHECK(fails == 0, "%s: %d graph captures failed", name, fails);
    CHECK(held >= 2, "%s: two contexts should hold two graphs (%d)", name, held);
    for (int c = 0; c < 2; c++) {
        free(ref[c]);
        for (int mo = 0; mo < 5; mo++)
            free(got[mo][c]);
    }
done:
    for (int c = 0; c < 2; c++)
        chord_context_free(ctx[c]);
    test_sampling(m, name);
    chord_model_free(m);
}

int main(void) {
    const char *names[] = {"Q4_K_M", "Q4_0", "Q8_0", "F16"};
    int found = 0;
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        char path[1024];
        FILE *f = NULL;
        snprintf(path, sizeof path, "%s/gpu_data/dev-%s.gguf", CHORD_SOURCE_DIR, names[i]);
        if (!(f = fopen(path, "rb"))) {
            snprintf(path, sizeof path, "%s/golden/dev-%s.gguf", CHORD_SHARED_DIR, names[i]);
            f = fopen(path, "rb");
        }
        if (!f) continue;
        fclose(f);
        found++;
        test_model(path, names[i]);
    }
    if (!found) {
        printf("skipped: no dev models (gpu_data/ or shared/golden)\n");
        return 0;
    }
    return test_summary("test_gpu_graph");
}

#endif
