/* chord tokenize: text to token ids, as llama-tokenize prints them. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "args.h"
#include "chord.h"

static void usage(FILE *f) {
    fprintf(f, "usage: chord tokenize -m MODEL (-p TEXT | -f FILE) [--ids] [--no-bos] [--no-parse-special]\n"
               "  Prints one line per token: id -> 'piece'. --ids prints only the ids, as one JSON\n"
               "  list. Control tokens written in the text are parsed unless --no-parse-special;\n"
               "  BOS is added when the model asks for it unless --no-bos.\n");
}

int cmd_tokenize(int argc, char **argv) {
    const char *model = NULL;
    char *text = NULL;
    bool ids_only = false, no_bos = false, no_special = false;
    int rc = 1;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            usage(stdout);
            free(text);
            return 0;
        } else if (!strcmp(a, "-m") || !strcmp(a, "--model")) {
            if (!(model = arg_value(argc, argv, &i))) goto out;
        } else if (!strcmp(a, "-p") || !strcmp(a, "--prompt")) {
            if (!(v = arg_value(argc, argv, &i))) goto out;
            free(text);
            text = strdup(v);
        } else if (!strcmp(a, "-f") || !strcmp(a, "--file")) {
            if (!(v = arg_value(argc, argv, &i))) goto out;
            free(text);
            if (!(text = read_text_file(v, NULL))) goto out;
        } else if (!strcmp(a, "--ids")) {
            ids_only = true;
        } else if (!strcmp(a, "--no-bos")) {
            no_bos = true;
        } else if (!strcmp(a, "--no-parse-special")) {
            no_special = true;
        } else {
            fprintf(stderr, "chord tokenize: unknown option '%s'\n", a);
            usage(stderr);
            goto out;
        }
    }
    if (!model || !text) {
        usage(stderr);
        goto out;
    }
    chord_model_params mp = chord_model_default_params();
    mp.n_gpu_layers = 0; /* tokenizing needs no device */
    chord_model *m = NULL;
    chord_error err = {0};
    if (chord_model_load(model, &mp, &m, &err) != CHORD_OK) {
        fprintf(stderr, "chord: %s: %s\n", model, err.message);
        goto out;
    }
    size_t len = strlen(text);
    int n = chord_tokenize(m, text, len, NULL, 0, !no_bos, !no_special, &err);
    int32_t *ids = n >= 0 ? malloc(((size_t)n + 1) * sizeof *ids) : NULL;
    if (n < 0 || !ids || chord_tokenize(m, text, len, ids, n, !no_bos, !no_special, &err) != n) {
        fprintf(stderr, "chord: %s\n", n < 0 ? err.message : "out of memory");
        free(ids);
        chord_model_free(m);
        goto out;
    }
    if (ids_only) {
        printf("[");
        for (int i = 0; i < n; i++) printf("%s%d", i ? ", " : "", ids[i]);
        printf("]\n");
    } else {
        char piece[512];
        for (int i = 0; i < n; i++) {
            int pl = chord_token_to_piece(m, ids[i], piece, sizeof piece);
            if (pl < 0 || pl > (int)sizeof piece) pl = 0;
            printf("%6d -> '%.*s'\n", ids[i], pl, piece);
        }
    }
    free(ids);
    chord_model_free(m);
    rc = 0;
out:
    free(text);
    return rc;
}
