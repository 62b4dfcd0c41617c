/* The stack a thread calling chord_eval / chord_generate needs (include/chord.h promises
 * STACK_KIB): every golden model's prompt (the prefill tiles of every weight type), a
 * decode step and a short generation, on a thread given just that much stack, with 2 CPU
 * threads (so the calling thread runs its share of every kernel), against the same calls
 * on the main thread (bit for bit). `test_stack KIB` tries another size (a crash is the
 * answer "too small"). */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "chord.h"
#include "testutil.h"

#define STACK_KIB 64

/* the sanitizers' redzones and bookkeeping take stack too */
#if defined(__SANITIZE_ADDRESS__)
#define STACK_SCALE 8
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define STACK_SCALE 8
#endif
#endif
#ifndef STACK_SCALE
#define STACK_SCALE 1
#endif

static const char *TYPES[] = {"F32",  "F16",  "BF16", "Q8_0", "Q4_0", "Q4_1", "Q5_0",
                              "Q5_1", "Q2_K", "Q3_K", "Q4_K", "Q5_K", "Q6_K", "Q4_K_M"};
#define N_TYPES (int)(sizeof TYPES / sizeof TYPES[0])

static const int32_t TOKS[] = {1,   344, 412, 14,  414, 241, 265, 323, 148, 501, 30, 144,
                               200, 201, 202, 203, 204, 205, 206, 207, 208, 209, 210};
#define NT (int)(sizeof TOKS / sizeof TOKS[0])

typedef struct {
    chord_model *m;
    float *out; /* [2][n_vocab]: the prompt's last logits, then the decode step's */
    char text[256]; /* the generation's */
    chord_status st;
    char msg[sizeof(((chord_error *)0)->message)];
} job;

static bool collect(const char *text, size_t len, void *user) {
    char *buf = user;
    const size_t have = strlen(buf);
    if (have + len < 256) {
        memcpy(buf + have, text, len);
        buf[have + len] = 0;
    }
    return true;
}

static void *run(void *arg) {
    job *j = arg;
    chord_error err = {0};
    chord_context *ctx = NULL;
    chord_context_params cp = chord_context_default_params();
    cp.n_ctx = 64;
    cp.n_threads = 2;
    const int nv = chord_model_n_vocab(j->m);
    j->st = chord_context_new(j->m, &cp, &ctx, &err);
    if (j->st == CHORD_OK) j->st = chord_eval(ctx, TOKS, NT - 1, false, &err);
    if (j->st == CHORD_OK) {
        memcpy(j->out, chord_get_logits(ctx, -1), sizeof(float) * (size_t)nv);
        j->st = chord_eval(ctx, TOKS + NT - 1, 1, false, &err);
    }
    if (j->st == CHORD_OK)
        memcpy(j->out + nv, chord_get_logits(ctx, -1), sizeof(float) * (size_t)nv);
    chord_sampler *smp = NULL;
    chord_sampler_params sp = chord_sampler_default_params();
    sp.temperature = 0;
    if (j->st == CHORD_OK) j->st = chord_sampler_new(&sp, &smp, &err);
    if (j->st == CHORD_OK) j->st = chord_context_truncate(ctx, 0);
    chord_gen_params gp = {.max_tokens = 6};
    if (j->st == CHORD_OK)
        j->st = chord_generate(ctx, smp, "hello world, and some more words", &gp, collect,
                               j->text, NULL, &err);
    if (j->st != CHORD_OK) snprintf(j->msg, sizeof j->msg, "%s", err.message);
    chord_sampler_free(smp);
    chord_context_free(ctx);
    return NULL;
}

int main(int argc, char **argv) {
    const size_t kib = (argc > 1 ? (size_t)atoi(argv[1]) : STACK_KIB) * STACK_SCALE;
    printf("thread stack %zu KiB\n", kib);
    for (int ti = 0; ti < N_TYPES; ti++) {
        char path[64];
        snprintf(path, sizeof path, "golden/dev-%s.gguf", TYPES[ti]);
        chord_model_params mp = chord_model_default_params();
        mp.n_gpu_layers = 0;
        chord_model *m = NULL;
        chord_error err = {0};
        if (chord_model_load(test_shared(path), &mp, &m, &err) != CHORD_OK) {
            CHECK(0, "%s: %s", path, err.message);
            continue;
        }
        const int nv = chord_model_n_vocab(m);
        job small = {m, malloc(sizeof(float) * 2 * (size_t)nv), "", CHORD_E_BACKEND, ""};
        job big = {m, malloc(sizeof(float) * 2 * (size_t)nv), "", CHORD_E_BACKEND, ""};
        pthread_attr_t attr;
        pthread_attr_init(&attr);
        CHECK(pthread_attr_setstacksize(&attr, kib * 1024) == 0, "stack size %zu KiB", kib);
        pthread_t th;
        CHECK(pthread_create(&th, &attr, run, &small) == 0, "thread");
        pthread_join(th, NULL);
        pthread_attr_destroy(&attr);
        run(&big);
        CHECK(small.st == CHORD_OK && big.st == CHORD_OK, "%s: %s / %s", TYPES[ti], small.msg,
              big.msg);
        CHECK(!memcmp(small.out, big.out, sizeof(float) * 2 * (size_t)nv) &&
                  !strcmp(small.text, big.text),
              "%s: the small-stack thread's logits or text differ", TYPES[ti]);
        free(small.out);
        free(big.out);
        chord_model_free(m);
    }
    return test_summary("test_stack");
}
