/* chord genmodel: write a random-weight llama model at a real shape (for benchmarks). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "args.h"
#include "chord.h"
#include "genmodel.h"

#define VOCAB_FILE "vocab/ggml-vocab-llama-spm.gguf"

static void usage(FILE *f) {
    fprintf(
        f,
        "usage: chord genmodel SHAPE TYPE OUT.gguf [--vocab FILE] [--seed N] [--pure] [-t N]\n"
        "  Writes a llama model with random weights, generated and quantized row by row.\n"
        "  SHAPE: %s\n"
        "  TYPE:  %s\n"
        "  --vocab FILE  vocabulary GGUF whose tokenizer.* metadata is copied (default:\n"
        "                $CHORD_SHARED/" VOCAB_FILE ", else ../shared/" VOCAB_FILE "\n"
        "                relative to the current directory)\n"
        "  --seed N      PRNG seed (default 42); same seed, same file\n"
        "  --pure        every matrix in TYPE (no Q6_K output / mix rules)\n"
        "  -t N          threads (default: all CPUs)\n",
        genmodel_shape_names(), quant_ftype_names());
}

static void on_tensor(void *user, uint64_t i, uint64_t n, const qm_tensor *t) {
    const double *t0 = user;
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    const double el = (double)ts.tv_sec + ts.tv_nsec * 1e-9 - *t0;
    if (t->n_dims >= 2)
        printf("[%4llu/%4llu] %6.1fs %-32s %6lld x %-6lld %s\n", (unsigned long long)i + 1,
               (unsigned long long)n, el, t->name, (long long)t->ne[0], (long long)t->ne[1],
               chord_type_name(t->type));
    else
        printf("[%4llu/%4llu] %6.1fs %-32s %6lld          %s\n", (unsigned long long)i + 1,
               (unsigned long long)n, el, t->name, (long long)t->ne[0],
               chord_type_name(t->type));
    fflush(stdout);
}

int cmd_genmodel(int argc, char **argv) {
    const char *pos[3] = {NULL, NULL, NULL};
    int n_pos = 0, threads = 0;
    const char *vocab = NULL;
    unsigned long long seed = 42;
    bool pure = false;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            usage(stdout);
            return 0;
        } else if (!strcmp(a, "--vocab")) {
            if (!(vocab = arg_value(argc, argv, &i))) return 1;
        } else if (!strcmp(a, "--seed")) {
            if (!(v = arg_value(argc, argv, &i)) || !arg_u64(a, v, &seed)) return 1;
        } else if (!strcmp(a, "--pure")) {
            pure = true;
        } else if (!strcmp(a, "-t") || !strcmp(a, "--threads")) {
            if (!(v = arg_value(argc, argv, &i)) || !arg_int(a, v, 1, 1024, &threads)) return 1;
        } else if (a[0] == '-' && a[1]) {
            fprintf(stderr, "chord genmodel: unknown option '%s'\n", a);
            return 1;
        } else if (n_pos < 3) {
            pos[n_pos++] = a;
        } else {
            fprintf(stderr, "chord genmodel: unexpected argument '%s'\n", a);
            return 1;
        }
    }
    if (n_pos != 3) {
        usage(stderr);
        return 1;
    }
    genmodel_params p = {0};
    if (!(p.shape = genmodel_shape_from_name(pos[0]))) {
        fprintf(stderr, "chord genmodel: unknown shape '%s' (one of: %s)\n", pos[0],
                genmodel_shape_names());
        return 1;
    }
    if (!(p.ftype = quant_ftype_from_name(pos[1]))) {
        fprintf(stderr, "chord genmodel: unknown type '%s' (one of: %s)\n", pos[1],
                quant_ftype_names());
        return 1;
    }
    char path[4096];
    if (!vocab) {
        const char *shared = getenv("CHORD_SHARED");
        if (shared && *shared) {
            snprintf(path, sizeof path, "%s/%s", shared, VOCAB_FILE);
        } else {
            snprintf(path, sizeof path, "../shared/%s", VOCAB_FILE);
        }
        if (access(path, R_OK) != 0) {
            fprintf(stderr,
                    "chord genmodel: no vocabulary at %s: pass --vocab FILE or set "
                    "CHORD_SHARED\n",
                    path);
            return 1;
        }
        vocab = path;
    }
    if (threads <= 0) {
        long n = sysconf(_SC_NPROCESSORS_ONLN);
        threads = n > 0 ? (int)(n < 256 ? n : 256) : 1;
    }
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    double t0 = (double)ts.tv_sec + ts.tv_nsec * 1e-9;
    p.vocab_path = vocab;
    p.seed = seed;
    p.n_threads = threads;
    p.pure = pure;
    p.on_tensor = on_tensor;
    p.user = &t0;
    printf("generating %s %s%s -> %s (seed %llu, vocab %s, %d threads)\n", p.shape->name,
           p.ftype->name, pure ? " (pure)" : "", pos[2], seed, vocab, threads);
    chord_error err = {0};
    uint64_t size = 0;
    if (genmodel_write(pos[2], &p, &size, &err) != CHORD_OK) {
        fprintf(stderr, "chord: %s\n", err.message);
        return 1;
    }
    clock_gettime(CLOCK_MONOTONIC, &ts);
    printf("wrote %s: %.2f MiB in %.1f s\n", pos[2], (double)size / (1024.0 * 1024.0),
           (double)ts.tv_sec + ts.tv_nsec * 1e-9 - t0);
    return 0;
}
