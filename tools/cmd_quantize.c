/* chord quantize: convert a GGUF model's weights to another type or mix. */
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "args.h"
#include "chord.h"
#include "quantize_model.h"

static void usage(FILE *f) {
    fprintf(f,
            "usage: chord quantize IN.gguf OUT.gguf TYPE [--allow-requantize] [--pure] [-t N]\n"
            "  Writes OUT with IN's metadata (general.file_type updated) and every weight\n"
            "  converted to TYPE, one of:\n"
            "    %s\n"
            "  Matrices get TYPE; 1-D tensors (norms) stay F32. Unless --pure, output.weight\n"
            "  is Q6_K for types below it, and the _M mixes also give attn_v and ffn_down\n"
            "  Q6_K on the first and last n_layer/8 layers and every third in between.\n"
            "  --allow-requantize  accept already-quantized input (dequantized first: quality\n"
            "                      is lost twice); tensors already in their target type are\n"
            "                      always copied as they are\n"
            "  --pure              every matrix (embeddings and output too) in TYPE\n"
            "  -t N                threads (default: all CPUs)\n",
            quant_ftype_names());
}

static void dims(char *buf, size_t n, const qm_tensor *t) {
    int k = snprintf(buf, n, "%lld", (long long)t->ne[0]);
    for (uint32_t d = 1; d < t->n_dims && k > 0 && (size_t)k < n; d++)
        k += snprintf(buf + k, n - (size_t)k, " x %lld", (long long)t->ne[d]);
}

static void on_tensor(void *user, uint64_t i, uint64_t n, const qm_tensor *t) {
    (void)user;
    char d[64];
    dims(d, sizeof d, t);
    printf("[%4llu/%4llu] %-32s %-18s %-5s -> %s%s\n", (unsigned long long)i + 1,
           (unsigned long long)n, t->name, d,
           t->src_type < CHORD_TYPE_COUNT ? chord_type_name(t->src_type) : "?",
           chord_type_name(t->type), t->raw ? " (copied)" : "");
    fflush(stdout);
}

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

int cmd_quantize(int argc, char **argv) {
    const char *pos[3] = {NULL, NULL, NULL};
    int n_pos = 0, threads = 0;
    quantize_params p = {0};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            usage(stdout);
            return 0;
        } else if (!strcmp(a, "--allow-requantize")) {
            p.allow_requantize = true;
        } else if (!strcmp(a, "--pure")) {
            p.pure = true;
        } else if (!strcmp(a, "-t") || !strcmp(a, "--threads")) {
            if (!(v = arg_value(argc, argv, &i)) || !arg_int(a, v, 1, 1024, &threads)) return 1;
        } else if (a[0] == '-' && a[1]) {
            fprintf(stderr, "chord quantize: unknown option '%s'\n", a);
            return 1;
        } else if (n_pos < 3) {
            pos[n_pos++] = a;
        } else {
            fprintf(stderr, "chord quantize: unexpected argument '%s'\n", a);
            return 1;
        }
    }
    if (n_pos != 3) {
        usage(stderr);
        return 1;
    }
    p.ftype = quant_ftype_from_name(pos[2]);
    if (!p.ftype) {
        fprintf(stderr, "chord quantize: unknown type '%s' (one of: %s)\n", pos[2],
                quant_ftype_names());
        return 1;
    }
    struct stat si, so;
    if (!strcmp(pos[0], pos[1]) || (stat(pos[0], &si) == 0 && stat(pos[1], &so) == 0 &&
                                    si.st_dev == so.st_dev && si.st_ino == so.st_ino)) {
        fprintf(stderr, "chord quantize: input and output are the same file\n");
        return 1;
    }
    if (threads <= 0) {
        long n = sysconf(_SC_NPROCESSORS_ONLN);
        threads = n > 0 ? (int)(n < 256 ? n : 256) : 1;
    }
    p.n_threads = threads;
    p.on_tensor = on_tensor;
    printf("quantizing %s -> %s as %s%s (%d threads)\n", pos[0], pos[1], p.ftype->name,
           p.pure ? " (pure)" : "", threads);
    const double t0 = now_s();
    chord_error err = {0};
    uint64_t size = 0;
    if (quantize_model_file(pos[0], pos[1], &p, &size, &err) != CHORD_OK) {
        fprintf(stderr, "chord: %s\n", err.message);
        return 1;
    }
    printf("wrote %s: %.2f MiB in %.1f s\n", pos[1], (double)size / (1024.0 * 1024.0),
           now_s() - t0);
    return 0;
}
