#include "args.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

bool arg_int(const char *flag, const char *val, long lo, long hi, int *out) {
    char *end;
    errno = 0;
    long v = val ? strtol(val, &end, 10) : 0;
    if (!val || !*val || *end || errno || v < lo || v > hi) {
        fprintf(stderr, "chord: %s expects an integer in [%ld, %ld], got '%s'\n", flag, lo, hi,
                val ? val : "");
        return false;
    }
    *out = (int)v;
    return true;
}

bool arg_float(const char *flag, const char *val, double lo, double hi, float *out) {
    char *end;
    errno = 0;
    double v = val ? strtod(val, &end) : 0;
    if (!val || !*val || *end || errno || !isfinite(v) || v < lo || v > hi) {
        fprintf(stderr, "chord: %s expects a number in [%g, %g], got '%s'\n", flag, lo, hi,
                val ? val : "");
        return false;
    }
    *out = (float)v;
    return true;
}

bool arg_u64(const char *flag, const char *val, unsigned long long *out) {
    char *end;
    errno = 0;
    unsigned long long v = val ? strtoull(val, &end, 10) : 0;
    if (!val || !*val || *val == '-' || *end || errno) {
        fprintf(stderr, "chord: %s expects a non-negative integer, got '%s'\n", flag, val ? val : "");
        return false;
    }
    *out = v;
    return true;
}

const char *arg_value(int argc, char **argv, int *i) {
    if (*i + 1 >= argc) {
        fprintf(stderr, "chord: %s needs a value\n", argv[*i]);
        return NULL;
    }
    return argv[++*i];
}

char *read_text_file(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) {
        fprintf(stderr, "chord: cannot open '%s': %s\n", path, strerror(errno));
        return NULL;
    }
    size_t cap = 4096, n = 0;
    char *buf = malloc(cap);
    size_t r;
    while (buf && (r = fread(buf + n, 1, cap - n - 1, f)) > 0) {
        n += r;
        if (n + 1 == cap) {
            char *p = realloc(buf, cap *= 2);
            if (!p) {
                free(buf);
                buf = NULL;
            } else {
                buf = p;
            }
        }
    }
    fclose(f);
    if (!buf) {
        fprintf(stderr, "chord: out of memory reading '%s'\n", path);
        return NULL;
    }
    buf[n] = 0;
    if (len) *len = n;
    return buf;
}

static void progress_bar(float frac, void *user) {
    int width = 30, done = (int)(frac * width + 0.5f);
    fprintf(stderr, "\rloading [%.*s%*s] %3d%%", done, "##############################",
            width - done, "", (int)(frac * 100 + 0.5f));
    if (frac >= 1.0f) fprintf(stderr, "\r%*s\r", width + 20, "");
    fflush(stderr);
}

chord_model *load_model_cli(const char *path, int n_gpu_layers, bool quiet) {
    if (!path) {
        fprintf(stderr, "chord: no model given (-m MODEL.gguf)\n");
        return NULL;
    }
    chord_model_params mp = chord_model_default_params();
    mp.n_gpu_layers = n_gpu_layers;
    if (!quiet && isatty(2)) mp.progress = progress_bar;
    chord_model *m = NULL;
    chord_error err = {0};
    if (chord_model_load(path, &mp, &m, &err) != CHORD_OK) {
        fprintf(stderr, "chord: %s: %s\n", path, err.message);
        return NULL;
    }
    const char *notice = chord_model_backend_notice(m);
    if (notice && !quiet) fprintf(stderr, "chord: %s\n", notice);
    return m;
}
