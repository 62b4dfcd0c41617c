/* The public C API on a golden model: ownership, errors, eval/logits consistency,
 * KV-cache truncation, two contexts in two threads, generation with stop strings. */
#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "chord.h"
#include "testutil.h"

static const int32_t TOKS[] = {1, 344, 412, 14, 414, 241, 265, 323, 148, 501, 30, 144};
#define NT (int)(sizeof TOKS / sizeof TOKS[0])

static double max_diff(const float *a, const float *b, int n) {
    double m = 0;
    for (int i = 0; i < n; i++) m = fmax(m, fabs((double)a[i] - b[i]));
    return m;
}

typedef struct {
    chord_model *m;
    float *out; /* [n_vocab] logits of the last token */
    chord_status st;
} thread_job;

static void *run_ctx(void *arg) {
    thread_job *j = arg;
    chord_context *ctx = NULL;
    chord_context_params cp = chord_context_default_params();
    cp.n_ctx = 64;
    cp.n_threads = 1;
    j->st = chord_context_new(j->m, &cp, &ctx, NULL);
    if (j->st == CHORD_OK) j->st = chord_eval(ctx, TOKS, NT, false, NULL);
    if (j->st == CHORD_OK)
        memcpy(j->out, chord_get_logits(ctx, -1), sizeof(float) * chord_model_n_vocab(j->m));
    chord_context_free(ctx);
    return NULL;
}

static bool collect(const char *text, size_t len, void *user) {
    char *buf = user;
    size_t have = strlen(buf);
    if (have + len < 4096) {
        memcpy(buf + have, text, len);
        buf[have + len] = 0;
    }
    return true;
}

int main(void) {
    chord_error err = {0};
    chord_model *m = NULL;
    chord_model_free(NULL);
    chord_context_free(NULL);
    chord_sampler_free(NULL);

    /* errors name the problem */
    CHECK(chord_model_load("/nonexistent/model.gguf", NULL, &m, &err) == CHORD_E_IO, "code %d", err.code);
    CHECK(m == NULL, "no handle on failure");
    CHECK(strstr(err.message, "/nonexistent/model.gguf") != NULL, "message: %s", err.message);
    const char junk[] = "not a gguf file at all";
    CHECK(chord_model_load_from_memory(junk, sizeof junk, NULL, &m, &err) == CHORD_E_FORMAT,
          "junk: %d %s", err.code, err.message);

    chord_model_params mp = chord_model_default_params();
    mp.n_gpu_layers = 0;
    /* F32 weights: no activation quantization, so batch and step agree to rounding */
    if (chord_model_load(test_shared("golden/dev-F32.gguf"), &mp, &m, &err) != CHORD_OK) {
        fprintf(stderr, "load: %s\n", err.message);
        return 1;
    }
    int nv = chord_model_n_vocab(m);
    CHECK(nv == 512, "n_vocab %d", nv);
    CHECK(!strcmp(chord_model_arch(m), "llama"), "arch %s", chord_model_arch(m));
    CHECK(chord_model_n_layer(m) == 2 && chord_model_n_embd(m) == 512, "shape");
    char buf[64];
    CHECK(chord_model_meta(m, "llama.block_count", buf, sizeof buf) > 0 && !strcmp(buf, "2"), "meta %s", buf);
    CHECK(chord_model_meta(m, "no.such.key", buf, sizeof buf) == -1, "absent key");

    chord_context *ctx = NULL;
    chord_context_params cp = chord_context_default_params();
    cp.n_ctx = 16;
    cp.n_batch = 5; /* forces several chunks */
    CHECK(chord_context_new(m, &cp, &ctx, &err) == CHORD_OK, "ctx: %s", err.message);
    CHECK(chord_context_n_ctx(ctx) == 16, "n_ctx");

    /* one batch (chunked) == token by token */
    float *all = malloc(sizeof(float) * nv * NT), *ref = malloc(sizeof(float) * nv);
    CHECK(chord_eval(ctx, TOKS, NT, true, &err) == CHORD_OK, "eval: %s", err.message);
    for (int i = 0; i < NT; i++) memcpy(all + (size_t)i * nv, chord_get_logits(ctx, i), sizeof(float) * nv);
    CHECK(chord_get_logits(ctx, NT) == NULL, "out of range row");
    CHECK(chord_context_n_past(ctx) == NT, "n_past %d", chord_context_n_past(ctx));
    CHECK(chord_context_truncate(ctx, 0) == CHORD_OK, "truncate");
    double worst = 0;
    for (int i = 0; i < NT; i++) {
        CHECK(chord_eval(ctx, TOKS + i, 1, false, &err) == CHORD_OK, "step %d", i);
        worst = fmax(worst, max_diff(all + (size_t)i * nv, chord_get_logits(ctx, -1), nv));
    }
    CHECK(worst < 1e-3, "batch vs step max diff %g", worst);

    /* truncate and re-evaluate the tail: same logits as before */
    CHECK(chord_context_truncate(ctx, 6) == CHORD_OK, "truncate 6");
    CHECK(chord_eval(ctx, TOKS + 6, NT - 6, false, &err) == CHORD_OK, "re-eval");
    CHECK(max_diff(all + (size_t)(NT - 1) * nv, chord_get_logits(ctx, -1), nv) < 1e-3, "after truncate");
    CHECK(chord_context_truncate(ctx, 99) == CHORD_E_INVALID_ARG, "truncate past n_past");

    /* bad input is an error, not a crash */
    int32_t bad = 100000;
    CHECK(chord_eval(ctx, &bad, 1, false, &err) == CHORD_E_INVALID_ARG, "bad token");
    CHECK(chord_eval(ctx, TOKS, NT, false, &err) == CHORD_E_CONTEXT_FULL, "context full: %s", err.message);

    /* chord_eval_sample draws what chord_eval + chord_sampler_sample draw */
    {
        chord_sampler_params sp = chord_sampler_default_params();
        sp.seed = 11;
        sp.repeat_penalty = 1.1f;
        chord_sampler *sa = NULL, *sb = NULL;
        CHECK(chord_sampler_new(&sp, &sa, &err) == CHORD_OK, "sampler");
        CHECK(chord_sampler_new(&sp, &sb, &err) == CHORD_OK, "sampler");
        int same = 0;
        for (int i = 0; i < NT; i++) {
            int32_t ta = -1;
            CHECK(chord_context_truncate(ctx, i) == CHORD_OK, "truncate %d", i);
            CHECK(chord_eval_sample(ctx, TOKS + i, 1, sa, &ta, &err) == CHORD_OK,
                  "eval_sample: %s", err.message);
            CHECK(chord_context_truncate(ctx, i) == CHORD_OK, "truncate %d", i);
            CHECK(chord_eval(ctx, TOKS + i, 1, false, &err) == CHORD_OK, "eval %d", i);
            const int32_t tb = chord_sampler_sample(sb, chord_get_logits(ctx, -1), nv);
            same += ta == tb;
            chord_sampler_accept(sa, tb);
            chord_sampler_accept(sb, tb);
        }
        CHECK(same == NT, "chord_eval_sample draws as eval + sample (%d of %d)", same, NT);
        int32_t t = 0;
        CHECK(chord_eval_sample(ctx, TOKS, 0, sa, &t, &err) == CHORD_E_INVALID_ARG, "no tokens");
        CHECK(chord_eval_sample(ctx, TOKS, 1, NULL, &t, &err) == CHORD_E_INVALID_ARG, "no sampler");
        chord_sampler_free(sa);
        chord_sampler_free(sb);
        chord_context_truncate(ctx, 0);
    }

    /* two contexts on two threads give the same answer as one */
    memcpy(ref, all + (size_t)(NT - 1) * nv, sizeof(float) * nv);
    thread_job jobs[2];
    pthread_t th[2];
    for (int i = 0; i < 2; i++) {
        jobs[i] = (thread_job){m, malloc(sizeof(float) * nv), CHORD_E_BACKEND};
        pthread_create(&th[i], NULL, run_ctx, &jobs[i]);
    }
    for (int i = 0; i < 2; i++) {
        pthread_join(th[i], NULL);
        CHECK(jobs[i].st == CHORD_OK, "thread %d", i);
        CHECK(max_diff(ref, jobs[i].out, nv) < 1e-3, "thread %d logits", i);
        free(jobs[i].out);
    }

    /* generation: greedy is deterministic, max_tokens respected, stop strings cut */
    chord_sampler *s = NULL;
    chord_sampler_params sp = chord_sampler_default_params();
    sp.temperature = 0;
    CHECK(chord_sampler_new(&sp, &s, &err) == CHORD_OK, "sampler");
    char out1[4096] = "", out2[4096] = "";
    chord_gen_params gp = {.max_tokens = 8};
    chord_gen_stats st;
    chord_context_truncate(ctx, 0);
    CHECK(chord_generate(ctx, s, "hello world", &gp, collect, out1, &st, &err) == CHORD_OK, "gen: %s", err.message);
    CHECK(st.n_gen <= 8 && st.n_prompt > 0, "stats %d %d", st.n_gen, st.n_prompt);
    chord_context_truncate(ctx, 0);
    chord_sampler_reset(s);
    CHECK(chord_generate(ctx, s, "hello world", &gp, collect, out2, &st, &err) == CHORD_OK, "gen2");
    CHECK(!strcmp(out1, out2), "greedy differs: '%s' vs '%s'", out1, out2);
    if (strlen(out1) > 2) {
        char stop[3] = {out1[1], out1[2], 0};
        const char *stops[1] = {stop};
        char out3[4096] = "";
        chord_gen_params g3 = {.max_tokens = 8, .stop = stops, .n_stop = 1};
        chord_context_truncate(ctx, 0);
        chord_sampler_reset(s);
        CHECK(chord_generate(ctx, s, "hello world", &g3, collect, out3, &st, &err) == CHORD_OK, "gen3");
        CHECK(st.hit_stop && strstr(out3, stop) == NULL, "stop '%s' in '%s'", stop, out3);
    }
    /* a prompt longer than the context */
    char longp[2048];
    memset(longp, 'a', sizeof longp - 1);
    for (size_t i = 0; i < sizeof longp - 1; i += 2) longp[i] = ' ';
    longp[sizeof longp - 1] = 0;
    chord_context_truncate(ctx, 0);
    CHECK(chord_generate(ctx, s, longp, &gp, collect, out1, &st, &err) == CHORD_E_CONTEXT_FULL,
          "long prompt: %d", err.code);

    chord_sampler_free(s);
    chord_context_free(ctx);
    chord_model_free(m);
    free(all);
    free(ref);
    return test_summary("test_api");
}
