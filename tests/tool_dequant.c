/* tool_dequant FILE.gguf OUTDIR
 *
 * Dequantizes every tensor of a GGUF file with the scalar reference converters (the
 * traits table's to_float) and writes OUTDIR/<index>.f32 (raw float32, host byte
 * order = little-endian on every supported platform) plus OUTDIR/index.txt with one
 * "index name type ne0 ne1" line per tensor (type is the GGUF type name). Driven by
 * tests/test_dequant_oracle.py. Errors: a message on stderr and exit status 1. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gguf.h"
#include "mapfile.h"
#include "quant/types.h"

static int fail(const char *what, const chord_error *err) {
    if (err) /* chord's messages name the file already */
        fprintf(stderr, "tool_dequant: %s\n", err->message);
    else
        fprintf(stderr, "tool_dequant: %s: %s\n", what, strerror(errno));
    return 1;
}

/* Writes tensor t to path. Returns 0, or 1 after printing the reason. */
static int dump_tensor(const gguf_tensor *t, const char *path) {
    const chord_type_traits *tr = chord_type_get(t->type);
    if (!tr || !tr->to_float) {
        fprintf(stderr, "tool_dequant: %.*s: type %s can not be dequantized\n",
                (int)t->name.len, t->name.ptr, chord_type_name(t->type));
        return 1;
    }
    const int64_t ne0 = t->ne[0];
    int64_t nrows = 1;
    for (uint32_t d = 1; d < GGUF_MAX_DIMS; d++)
        nrows *= t->ne[d];
    const size_t row_bytes = chord_row_size((chord_type)t->type, ne0);
    if (row_bytes == 0 || (uint64_t)row_bytes * (uint64_t)nrows > t->nbytes) {
        fprintf(stderr, "tool_dequant: %.*s: %lld x %lld %s does not fit in %llu bytes\n",
                (int)t->name.len, t->name.ptr, (long long)ne0, (long long)nrows, tr->name,
                (unsigned long long)t->nbytes);
        return 1;
    }
    float *row = malloc((size_t)ne0 * sizeof(float));
    FILE *f = fopen(path, "wb");
    if (!row || !f) {
        free(row);
        if (f) fclose(f);
        return fail(path, NULL);
    }
    int rc = 0;
    const uint8_t *src = t->data;
    for (int64_t r = 0; r < nrows && rc == 0; r++) {
        tr->to_float(src + (size_t)r * row_bytes, row, ne0);
        if (fwrite(row, sizeof(float), (size_t)ne0, f) != (size_t)ne0) rc = fail(path, NULL);
    }
    if (fclose(f) != 0 && rc == 0) rc = fail(path, NULL);
    free(row);
    return rc;
}

int main(int argc, char **argv) {
    if (argc != 3) {
        fprintf(stderr, "usage: tool_dequant FILE.gguf OUTDIR\n");
        return 1;
    }
    chord_error err;
    chord_mapping map;
    if (chord_map_file(argv[1], &map, &err) != CHORD_OK) return fail(argv[1], &err);
    gguf_file *g = NULL;
    if (gguf_parse(map.data, map.size, &g, &err) != CHORD_OK) {
        chord_unmap(&map);
        return fail(argv[1], &err);
    }

    char path[4096];
    snprintf(path, sizeof path, "%s/index.txt", argv[2]);
    FILE *idx = fopen(path, "w");
    int rc = idx ? 0 : fail(path, NULL);
    const uint64_t n = gguf_n_tensors(g);
    for (uint64_t i = 0; i < n && rc == 0; i++) {
        const gguf_tensor *t = gguf_tensor_at(g, i);
        fprintf(idx, "%llu %.*s %s %lld %lld\n", (unsigned long long)i, (int)t->name.len,
                t->name.ptr, chord_type_name(t->type), (long long)t->ne[0],
                (long long)t->ne[1]);
        snprintf(path, sizeof path, "%s/%llu.f32", argv[2], (unsigned long long)i);
        rc = dump_tensor(t, path);
    }
    if (idx && fclose(idx) != 0 && rc == 0) rc = fail("index.txt", NULL);
    gguf_free(g);
    chord_unmap(&map);
    return rc;
}
