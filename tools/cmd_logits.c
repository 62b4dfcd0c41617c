/* chord logits: evaluate token ids and write float32 logits [n_tokens][n_vocab]. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "args.h"
#include "chord.h"

static void usage(FILE *f) {
    fprintf(f,
            "usage: chord logits -m MODEL --tokens FILE -o OUT [--step] [-t N] [-ngl N] [-c N]\n"
            "  Evaluates the whitespace-separated token ids in FILE and writes the logits of\n"
            "  every position as float32 [n_tokens][n_vocab] to OUT.\n"
            "  --step     one token at a time through the KV cache (default: one batch)\n"
            "  -t N       CPU threads (default: physical cores)\n"
            "  -ngl N     layers on the GPU (default: all when a GPU is usable; 0 = CPU)\n"
            "  -c N       context size (default: number of tokens)\n");
}

static int32_t *read_tokens(const char *path, int *n_out) {
    char *text = read_text_file(path, NULL);
    if (!text) return NULL;
    int cap = 64, n = 0;
    int32_t *ids = malloc((size_t)cap * sizeof *ids);
    char *p = text;
    while (ids) {
        while (*p == ' ' || *p == '\n' || *p == '\t' || *p == '\r') p++;
        if (!*p) break;
        char *end;
        long v = strtol(p, &end, 10);
        if (end == p || v < 0 || v > INT32_MAX || (*end && !strchr(" \n\t\r", *end))) {
            fprintf(stderr, "chord: %s: not a token id near '%.16s'\n", path, p);
            free(ids);
            ids = NULL;
            break;
        }
        if (n == cap) {
            int32_t *q = realloc(ids, (size_t)(cap *= 2) * sizeof *ids);
            if (!q) {
                free(ids);
                ids = NULL;
                break;
            }
            ids = q;
        }
        ids[n++] = (int32_t)v;
        p = end;
    }
    free(text);
    if (ids && n == 0) {
        fprintf(stderr, "chord: %s holds no token ids\n", path);
        free(ids);
        return NULL;
    }
    *n_out = n;
    return ids;
}

int cmd_logits(int argc, char **argv) {
    const char *model = NULL, *tokens = NULL, *outp = NULL;
    bool step = false;
    int threads = 0, ngl = -1, n_ctx = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            usage(stdout);
            return 0;
        } else if (!strcmp(a, "--step")) {
            step = true;
        } else if (!strcmp(a, "-m") || !strcmp(a, "--model")) {
            if (!(model = arg_value(argc, argv, &i))) return 1;
        } else if (!strcmp(a, "--tokens")) {
            if (!(tokens = arg_value(argc, argv, &i))) return 1;
        } else if (!strcmp(a, "-o")) {
            if (!(outp = arg_value(argc, argv, &i))) return 1;
        } else if (!strcmp(a, "-t") || !strcmp(a, "--threads")) {
            if (!(v = arg_value(argc, argv, &i)) || !arg_int(a, v, 0, 1024, &threads)) return 1;
        } else if (!strcmp(a, "-ngl") || !strcmp(a, "--n-gpu-layers")) {
            if (!(v = arg_value(argc, argv, &i)) || !arg_int(a, v, -1, 100000, &ngl)) return 1;
        } else if (!strcmp(a, "-c") || !strcmp(a, "--ctx-size")) {
            if (!(v = arg_value(argc, argv, &i)) || !arg_int(a, v, 0, 1 << 22, &n_ctx)) return 1;
        } else {
            fprintf(stderr, "chord logits: unknown option '%s'\n", a);
            usage(stderr);
            return 1;
        }
    }
    if (!model || !tokens || !outp) {
        usage(stderr);
        return 1;
    }
    int n = 0;
    int32_t *ids = read_tokens(tokens, &n);
    if (!ids) return 1;
    chord_model *m = load_model_cli(model, ngl, true);
    if (!m) {
        free(ids);
        return 1;
    }
    int rc = 1;
    chord_context *ctx = NULL;
    chord_error err = {0};
    chord_context_params cp = chord_context_default_params();
    cp.n_ctx = n_ctx ? n_ctx : n;
    cp.n_threads = threads;
    FILE *f = NULL;
    size_t nv = (size_t)chord_model_n_vocab(m);
    if (chord_context_new(m, &cp, &ctx, &err) != CHORD_OK) {
        fprintf(stderr, "chord: %s\n", err.message);
        goto done;
    }
    if (!(f = fopen(outp, "wb"))) {
        fprintf(stderr, "chord: cannot write '%s'\n", outp);
        goto done;
    }
    if (step) {
        for (int i = 0; i < n; i++) {
            if (chord_eval(ctx, ids + i, 1, false, &err) != CHORD_OK) {
                fprintf(stderr, "chord: token %d: %s\n", i, err.message);
                goto done;
            }
            if (fwrite(chord_get_logits(ctx, -1), sizeof(float), nv, f) != nv) goto write_err;
        }
    } else {
        if (chord_eval(ctx, ids, n, true, &err) != CHORD_OK) {
            fprintf(stderr, "chord: %s\n", err.message);
            goto done;
        }
        for (int i = 0; i < n; i++)
            if (fwrite(chord_get_logits(ctx, i), sizeof(float), nv, f) != nv) goto write_err;
    }
    rc = 0;
    goto done;
write_err:
    fprintf(stderr, "chord: writing '%s' failed\n", outp);
done:
    if (f && fclose(f) && rc == 0) {
        fprintf(stderr, "chord: writing '%s' failed\n", outp);
        rc = 1;
    }
    chord_context_free(ctx);
    chord_model_free(m);
    free(ids);
    return rc;
}
