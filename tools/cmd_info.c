/* chord info: what a GGUF file holds, or the reader's error for a bad one. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "args.h"
#include "chord.h"
#include "gguf.h"
#include "mapfile.h"
#include "quant/types.h"

static void usage(FILE *f) {
    fprintf(f, "usage: chord info MODEL.gguf [--key KEY]... [--all] [--tensors]\n"
               "  Prints the architecture, hyperparameters, vocabulary size, tensor count, type\n"
               "  histogram and file size. --key prints one metadata value (repeatable), --all\n"
               "  every metadata key, --tensors every tensor. Exit status 1 for a bad file.\n");
}

static void print_kv(const gguf_kv *kv) {
    char buf[1024];
    gguf_value_format(&kv->value, buf, sizeof buf, 8);
    printf("  %-44.*s %s\n", (int)kv->key.len, kv->key.ptr, buf);
}

int cmd_info(int argc, char **argv) {
    const char *path = NULL;
    const char *keys[64];
    int n_keys = 0;
    bool all = false, tensors = false;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
            usage(stdout);
            return 0;
        } else if (!strcmp(argv[i], "--key")) {
            const char *v = arg_value(argc, argv, &i);
            if (!v) return 1;
            if (n_keys < 64) keys[n_keys++] = v;
        } else if (!strcmp(argv[i], "--all")) {
            all = true;
        } else if (!strcmp(argv[i], "--tensors")) {
            tensors = true;
        } else if (!strcmp(argv[i], "-m") && i + 1 < argc) {
            path = argv[++i];
        } else if (argv[i][0] == '-') {
            fprintf(stderr, "chord info: unknown option '%s'\n", argv[i]);
            return 1;
        } else {
            path = argv[i];
        }
    }
    if (!path) {
        usage(stderr);
        return 1;
    }
    chord_mapping map = {0};
    chord_error err = {0};
    gguf_file *g = NULL;
    if (chord_map_file(path, &map, &err) != CHORD_OK || gguf_parse(map.data, map.size, &g, &err) != CHORD_OK) {
        fprintf(stderr, "chord: %s: %s\n", path, err.message);
        chord_unmap(&map);
        return 1;
    }
    int rc = 0;
    if (n_keys) {
        for (int k = 0; k < n_keys; k++) {
            const gguf_kv *kv = gguf_find_kv(g, keys[k]);
            if (!kv) {
                fprintf(stderr, "chord: %s: no metadata key '%s'\n", path, keys[k]);
                rc = 1;
                continue;
            }
            gguf_str s;
            if (kv->value.type == GGUF_STRING && gguf_get_str(g, keys[k], &s)) {
                printf("%.*s\n", (int)s.len, s.ptr);
            } else {
                char buf[1 << 14];
                gguf_value_format(&kv->value, buf, sizeof buf, 1 << 20);
                printf("%s\n", buf);
            }
        }
        gguf_free(g);
        chord_unmap(&map);
        return rc;
    }

    gguf_str arch = {"?", 1};
    gguf_get_str(g, "general.architecture", &arch);
    gguf_str name = {"", 0};
    gguf_get_str(g, "general.name", &name);
    printf("file:          %s\n", path);
    printf("size:          %.2f MiB (%zu bytes)\n", (double)gguf_size(g) / (1 << 20), gguf_size(g));
    printf("gguf version:  %u\n", gguf_version(g));
    printf("name:          %.*s\n", (int)name.len, name.ptr);
    printf("architecture:  %.*s\n", (int)arch.len, arch.ptr);
    static const char *const HP[][2] = {
        {"context_length", "n_ctx_train"},      {"embedding_length", "n_embd"},
        {"feed_forward_length", "n_ff"},        {"block_count", "n_layer"},
        {"attention.head_count", "n_head"},     {"attention.head_count_kv", "n_head_kv"},
        {"rope.dimension_count", "n_rot"},      {"rope.freq_base", "rope_freq_base"},
        {"attention.layer_norm_rms_epsilon", "rms_eps"},
    };
    for (size_t i = 0; i < sizeof HP / sizeof HP[0]; i++) {
        char key[160];
        snprintf(key, sizeof key, "%.*s.%s", (int)arch.len, arch.ptr, HP[i][0]);
        const gguf_kv *kv = gguf_find_kv(g, key);
        if (!kv) continue;
        char buf[128];
        gguf_value_format(&kv->value, buf, sizeof buf, 4);
        printf("%-14s %s\n", HP[i][1], buf);
    }
    gguf_value toks;
    if (gguf_get_arr(g, "tokenizer.ggml.tokens", &toks)) {
        gguf_str model = {"?", 1};
        gguf_get_str(g, "tokenizer.ggml.model", &model);
        printf("vocabulary:    %llu tokens (%.*s)\n", (unsigned long long)toks.arr_n, (int)model.len,
               model.ptr);
    }
    uint64_t hist[CHORD_TYPE_COUNT] = {0}, bytes[CHORD_TYPE_COUNT] = {0}, n_params = 0;
    for (uint64_t i = 0; i < gguf_n_tensors(g); i++) {
        const gguf_tensor *t = gguf_tensor_at(g, i);
        hist[t->type]++;
        bytes[t->type] += t->nbytes;
        n_params += (uint64_t)(t->ne[0] * t->ne[1] * t->ne[2] * t->ne[3]);
    }
    printf("tensors:       %llu (%.1f M parameters)\n", (unsigned long long)gguf_n_tensors(g),
           (double)n_params / 1e6);
    for (int t = 0; t < CHORD_TYPE_COUNT; t++)
        if (hist[t])
            printf("  %-8s %5llu tensors  %10.2f MiB\n", chord_type_name((uint32_t)t),
                   (unsigned long long)hist[t], (double)bytes[t] / (1 << 20));
    if (all) {
        printf("metadata:      %llu keys\n", (unsigned long long)gguf_n_kv(g));
        for (uint64_t i = 0; i < gguf_n_kv(g); i++) print_kv(gguf_kv_at(g, i));
    }
    if (tensors) {
        for (uint64_t i = 0; i < gguf_n_tensors(g); i++) {
            const gguf_tensor *t = gguf_tensor_at(g, i);
            printf("  %-40.*s %-6s [%lld, %lld, %lld, %lld] @%llu\n", (int)t->name.len, t->name.ptr,
                   chord_type_name(t->type), (long long)t->ne[0], (long long)t->ne[1],
                   (long long)t->ne[2], (long long)t->ne[3], (unsigned long long)t->offset);
        }
    }
    gguf_free(g);
    chord_unmap(&map);
    return 0;
}
