/* tool_tokenize MODEL.gguf INPFILE [--special]
 * Tokenizes every case of INPFILE (cases separated by "\n__ggml_vocab_test__\n", see
 * shared/vocab/README.md) with no BOS, printing one line per case: each id preceded by a
 * space. --special: parse special tokens. --time: also print the encoding time to stderr. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "gguf.h"
#include "mapfile.h"
#include "tokenizer/tokenizer.h"

static const char SEP[] = "\n__ggml_vocab_test__\n";

static void *read_all(const char *path, size_t *size) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    size_t cap = 1 << 16, n = 0;
    char *buf = malloc(cap);
    for (;;) {
        if (n == cap) {
            char *nb = realloc(buf, cap *= 2);
            if (!nb) break;
            buf = nb;
        }
        size_t k = fread(buf + n, 1, cap - n, f);
        if (k == 0) break;
        n += k;
    }
    fclose(f);
    *size = n;
    return buf;
}

int main(int argc, char **argv) {
    if (argc < 3) {
        fprintf(stderr, "usage: %s MODEL.gguf INPFILE [--special] [--time]\n", argv[0]);
        return 2;
    }
    bool special = false, timing = false;
    for (int i = 3; i < argc; i++) {
        if (!strcmp(argv[i], "--special")) special = true;
        if (!strcmp(argv[i], "--time")) timing = true;
    }
    chord_error err = {0};
    chord_mapping map = {0};
    gguf_file *g = NULL;
    tok_vocab *v = NULL;
    if (chord_map_file(argv[1], &map, &err) || gguf_parse(map.data, map.size, &g, &err) ||
        tok_load(g, &v, &err)) {
        fprintf(stderr, "%s: %s\n", argv[1], err.message);
        return 1;
    }
    size_t size;
    char *inp = read_all(argv[2], &size);
    if (!inp) {
        fprintf(stderr, "cannot read %s\n", argv[2]);
        return 1;
    }
    double total = 0;
    size_t sep = strlen(SEP);
    for (size_t pos = 0; pos < size;) {
        /* The case ends at the next separator; the last one ends the file. */
        size_t end = pos;
        while (end + sep <= size && memcmp(inp + end, SEP, sep) != 0)
            end++;
        if (end + sep > size) break; /* trailing bytes without a separator */
        int32_t *ids;
        size_t n;
        struct timespec t0, t1;
        clock_gettime(CLOCK_MONOTONIC, &t0);
        if (tok_encode(v, inp + pos, end - pos, false, special, &ids, &n, &err)) {
            fprintf(stderr, "encode: %s\n", err.message);
            return 1;
        }
        clock_gettime(CLOCK_MONOTONIC, &t1);
        total += (double)(t1.tv_sec - t0.tv_sec) + 1e-9 * (double)(t1.tv_nsec - t0.tv_nsec);
        for (size_t i = 0; i < n; i++)
            printf(" %d", ids[i]);
        printf("\n");
        free(ids);
        pos = end + sep;
    }
    if (timing) fprintf(stderr, "encode time: %.3f ms\n", total * 1e3);
    free(inp);
    tok_free(v);
    gguf_free(g);
    chord_unmap(&map);
    return 0;
}
