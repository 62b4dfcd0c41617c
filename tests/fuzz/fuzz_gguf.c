/* libFuzzer target for the GGUF parser: parse, then touch everything the parsed file
 * hands out (format every value, read array elements, look up every key and tensor by
 * name, read the first and last byte of every tensor). ASan/UBSan catch the rest.
 * Built and run by tests/test_fuzz_gguf.py. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "gguf.h"

#define FUZZ_REQUIRE(x)                                                                        \
    do {                                                                                       \
        if (!(x)) __builtin_trap();                                                            \
    } while (0)

static const uint8_t *g_lo, *g_hi; /* the input span, for pointer checks */

static void in_span(const void *p, uint64_t n) {
    const uint8_t *q = p;
    FUZZ_REQUIRE(q >= g_lo && q <= g_hi && n <= (uint64_t)(g_hi - q));
}

/* Copies s into buf as a C string; false if it holds a NUL or does not fit. */
static int to_cstr(gguf_str s, char *buf, size_t size) {
    if (s.len >= size || (s.len && memchr(s.ptr, 0, (size_t)s.len))) return 0;
    if (s.len) memcpy(buf, s.ptr, (size_t)s.len);
    buf[s.len] = 0;
    return 1;
}

static unsigned touch_value(const gguf_value *v) {
    unsigned acc = 0;
    char out[512];
    gguf_value_format(v, out, sizeof out, 16);
    acc += (unsigned)strlen(out);
    gguf_value_format(v, out, 7, 3);
    acc += (unsigned)strlen(out);
    if (v->type != GGUF_ARRAY || v->arr_n == 0) return acc;
    uint64_t idx[3] = {0, v->arr_n / 2, v->arr_n - 1};
    for (int k = 0; k < 3; k++) {
        if (v->arr_type == GGUF_STRING) {
            gguf_str s = gguf_arr_str(v, idx[k]);
            in_span(s.ptr, s.len);
            if (s.len) acc += (unsigned char)s.ptr[s.len - 1];
            gguf_value scan = *v; /* the linear fallback must agree with the index */
            scan.str_index_ = NULL;
            if (idx[k] < 4096) FUZZ_REQUIRE(gguf_arr_str(&scan, idx[k]).ptr == s.ptr);
        } else {
            acc += (unsigned)gguf_arr_i64(v, idx[k]);
            acc += (unsigned)(int64_t)(gguf_arr_f64(v, idx[k]) != 0);
        }
    }
    return acc;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    gguf_file *f = NULL;
    chord_error err;
    memset(&err, 0, sizeof err);
    chord_status st = gguf_parse(data, size, &f, &err);
    if (st != CHORD_OK) {
        FUZZ_REQUIRE(f == NULL && err.code == st && err.message[0] != 0);
        FUZZ_REQUIRE(st == CHORD_E_FORMAT || st == CHORD_E_UNSUPPORTED || st == CHORD_E_NOMEM);
        FUZZ_REQUIRE(st == CHORD_E_NOMEM || (err.offset >= 0 && (uint64_t)err.offset <= size));
        return 0;
    }
    g_lo = data;
    g_hi = data + size;
    FUZZ_REQUIRE(gguf_size(f) == size);
    uint64_t a = gguf_alignment(f);
    FUZZ_REQUIRE(a && !(a & (a - 1)) && gguf_data_offset(f) % a == 0);
    volatile unsigned acc = 0;
    char key[256];
    for (uint64_t i = 0; i < gguf_n_kv(f); i++) {
        const gguf_kv *kv = gguf_kv_at(f, i);
        in_span(kv->key.ptr, kv->key.len);
        in_span(kv->value.data, 0);
        acc += touch_value(&kv->value);
        if (to_cstr(kv->key, key, sizeof key)) {
            FUZZ_REQUIRE(gguf_find_kv(f, key) == kv);
            uint64_t u;
            int64_t s;
            double d;
            bool b;
            gguf_str str;
            gguf_value arr;
            acc += gguf_get_u64(f, key, &u) + gguf_get_i64(f, key, &s) +
                   gguf_get_f64(f, key, &d) + gguf_get_bool(f, key, &b);
            if (gguf_get_str(f, key, &str)) in_span(str.ptr, str.len);
            if (gguf_get_arr(f, key, &arr)) acc += touch_value(&arr);
        }
    }
    FUZZ_REQUIRE(gguf_kv_at(f, gguf_n_kv(f)) == NULL);
    for (uint64_t i = 0; i < gguf_n_tensors(f); i++) {
        const gguf_tensor *t = gguf_tensor_at(f, i);
        in_span(t->name.ptr, t->name.len);
        in_span(t->data, t->nbytes);
        FUZZ_REQUIRE(t->nbytes > 0 && t->n_dims >= 1 && t->n_dims <= GGUF_MAX_DIMS);
        FUZZ_REQUIRE(((const uint8_t *)t->data - data) % a == 0);
        const uint8_t *p = t->data;
        acc += p[0] + p[t->nbytes - 1];
        if (to_cstr(t->name, key, sizeof key)) FUZZ_REQUIRE(gguf_find_tensor(f, key) == t);
    }
    FUZZ_REQUIRE(gguf_tensor_at(f, gguf_n_tensors(f)) == NULL);
    (void)acc;
    gguf_free(f);
    return 0;
}
