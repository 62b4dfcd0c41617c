/* The GGUF parser on malformed input: every defect is built in memory with a small
 * writer, and each must fail with the right status, a message naming the field and
 * the byte offset of the defect. Also: every truncation of a small valid file, and
 * random byte flips in the header region of a real model (must never crash). */
#include <inttypes.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "gguf.h"
#include "quant/types.h"
#include "testutil.h"

/* ------------------------------------------------------------------ writer */

typedef struct wbuf {
    uint8_t *p;
    size_t n, cap;
} wbuf;

static void w_bytes(wbuf *w, const void *src, size_t n) {
    if (w->n + n > w->cap) {
        size_t cap = w->cap ? w->cap : 256;
        while (cap < w->n + n)
            cap *= 2;
        uint8_t *p = realloc(w->p, cap);
        if (!p) abort();
        w->p = p;
        w->cap = cap;
    }
    if (n) memcpy(w->p + w->n, src, n);
    w->n += n;
}
static void w_u8(wbuf *w, uint8_t v) {
    w_bytes(w, &v, 1);
}
static void w_u32(wbuf *w, uint32_t v) {
    uint8_t b[4] = {(uint8_t)v, (uint8_t)(v >> 8), (uint8_t)(v >> 16), (uint8_t)(v >> 24)};
    w_bytes(w, b, 4);
}
static void w_u64(wbuf *w, uint64_t v) {
    w_u32(w, (uint32_t)v);
    w_u32(w, (uint32_t)(v >> 32));
}
static void w_str(wbuf *w, const char *s) {
    w_u64(w, strlen(s));
    w_bytes(w, s, strlen(s));
}
static void w_hdr(wbuf *w, uint32_t version, uint64_t n_tensors, uint64_t n_kv) {
    w_bytes(w, "GGUF", 4);
    w_u32(w, version);
    w_u64(w, n_tensors);
    w_u64(w, n_kv);
}
static void w_kv_u32(wbuf *w, const char *key, uint32_t v) {
    w_str(w, key);
    w_u32(w, GGUF_U32);
    w_u32(w, v);
}
static void w_kv_str(wbuf *w, const char *key, const char *v) {
    w_str(w, key);
    w_u32(w, GGUF_STRING);
    w_str(w, v);
}
static void w_tinfo(wbuf *w, const char *name, uint32_t n_dims, const uint64_t *ne,
                    uint32_t type, uint64_t offset) {
    w_str(w, name);
    w_u32(w, n_dims);
    for (uint32_t d = 0; d < n_dims; d++)
        w_u64(w, ne[d]);
    w_u32(w, type);
    w_u64(w, offset);
}
static void w_zeros(wbuf *w, size_t n) {
    for (size_t i = 0; i < n; i++)
        w_u8(w, 0);
}
static void w_pad(wbuf *w, size_t align) {
    while (w->n % align)
        w_u8(w, 0);
}

/* Parses w's bytes from an exactly-sized copy (so ASan sees any over-read). */
static chord_status parse(const wbuf *w, chord_error *err) {
    uint8_t *copy = malloc(w->n ? w->n : 1);
    if (w->n) memcpy(copy, w->p, w->n);
    gguf_file *f = NULL;
    memset(err, 0, sizeof *err);
    err->offset = -2;
    chord_status st = gguf_parse(copy, w->n, &f, err);
    if (getenv("GGUF_TEST_VERBOSE"))
        printf("  [%d] @%" PRId64 " %s\n", (int)st, err->offset, st ? err->message : "ok");
    if (st == CHORD_OK) {
        CHECK(f != NULL, "OK without a file");
        gguf_free(f);
    } else {
        CHECK(f == NULL, "failure left a file");
    }
    free(copy);
    return st;
}

/* Expects status `code`, `field` in the message, and err.offset == `offset`
 * (offset < 0: any offset >= 0). */
#define EXPECT(w, want, field, off)                                                            \
    do {                                                                                       \
        chord_error e_;                                                                        \
        int64_t off_ = (int64_t)(off);                                                         \
        chord_status st_ = parse((w), &e_);                                                    \
        CHECK(st_ == (want), "status %d, want %d (%s)", (int)st_, (int)(want), e_.message);    \
        if (st_ != CHORD_OK) {                                                                 \
            CHECK(strstr(e_.message, (field)) != NULL, "message '%s' lacks '%s'", e_.message,  \
                  (field));                                                                    \
            CHECK(e_.code == st_, "err.code %d", (int)e_.code);                                \
            if (off_ >= 0)                                                                     \
                CHECK(e_.offset == off_, "offset %" PRId64 ", want %" PRId64 " (%s)",          \
                      e_.offset, off_, e_.message);                                            \
            else                                                                               \
                CHECK(e_.offset >= 0, "offset %" PRId64 " (%s)", e_.offset, e_.message);       \
        }                                                                                      \
        free((w)->p);                                                                          \
        memset((w), 0, sizeof *(w));                                                           \
    } while (0)

/* One F32 tensor [n] named `name` at data offset 0, alignment 32, one kv. */
static void small_file(wbuf *w, const char *name, uint64_t n) {
    w_hdr(w, 3, 1, 1);
    w_kv_str(w, "general.architecture", "llama");
    uint64_t ne[1] = {n};
    w_tinfo(w, name, 1, ne, CHORD_TYPE_F32, 0);
    w_pad(w, 32);
    w_zeros(w, n * 4);
}

/* A valid file exercising every value type, nested arrays, string arrays and three
 * tensors of different types; ends exactly at the end of the last tensor's data. */
static void rich_file(wbuf *w) {
    w_hdr(w, 3, 3, 8);
    w_kv_str(w, "general.architecture", "llama");
    w_kv_u32(w, "general.alignment", 64);
    w_str(w, "a.u8");
    w_u32(w, GGUF_U8);
    w_u8(w, 7);
    w_str(w, "a.bool");
    w_u32(w, GGUF_BOOL);
    w_u8(w, 1);
    w_str(w, "a.f64");
    w_u32(w, GGUF_F64);
    w_u64(w, 0x3ff8000000000000ull); /* 1.5 */
    w_str(w, "a.tokens");
    w_u32(w, GGUF_ARRAY);
    w_u32(w, GGUF_STRING);
    w_u64(w, 3);
    w_str(w, "a");
    w_str(w, "");
    w_str(w, "ccc");
    w_str(w, "a.nested");
    w_u32(w, GGUF_ARRAY);
    w_u32(w, GGUF_ARRAY);
    w_u64(w, 2);
    w_u32(w, GGUF_I16);
    w_u64(w, 2);
    w_u32(w, 0xfffe0001u); /* two i16: 1, -2 */
    w_u32(w, GGUF_STRING);
    w_u64(w, 1);
    w_str(w, "x");
    w_str(w, "a.f32s");
    w_u32(w, GGUF_ARRAY);
    w_u32(w, GGUF_F32);
    w_u64(w, 2);
    w_u32(w, 0x3f800000u);
    w_u32(w, 0x40000000u);
    uint64_t ne_a[2] = {32, 2}, ne_b[1] = {3}, ne_c[1] = {256};
    w_tinfo(w, "q8", 2, ne_a, CHORD_TYPE_Q8_0, 0);    /* 68 bytes */
    w_tinfo(w, "f32", 1, ne_b, CHORD_TYPE_F32, 128);  /* 12 bytes */
    w_tinfo(w, "q4k", 1, ne_c, CHORD_TYPE_Q4_K, 192); /* 144 bytes */
    w_pad(w, 64);
    w_zeros(w, 192 + 144);
}

/* ------------------------------------------------------------------- cases */

static void test_header(void) {
    wbuf w = {0};
    small_file(&w, "t", 4);
    EXPECT(&w, CHORD_OK, "", -1);

    small_file(&w, "t", 4);
    w.p[3] = 'X';
    EXPECT(&w, CHORD_E_FORMAT, "magic", 0);

    w_bytes(&w, "GG", 2);
    EXPECT(&w, CHORD_E_FORMAT, "magic", 0);

    EXPECT(&w, CHORD_E_FORMAT, "magic", 0); /* empty */

    {
        chord_error e;
        gguf_file *f = (gguf_file *)1;
        CHECK(gguf_parse(NULL, 0, &f, &e) == CHORD_E_FORMAT && f == NULL, "NULL, 0");
        CHECK(gguf_parse(NULL, 10, &f, &e) == CHORD_E_INVALID_ARG, "NULL, 10");
        CHECK(gguf_parse("GGUF", 4, NULL, &e) == CHORD_E_INVALID_ARG, "out NULL");
        CHECK(gguf_parse("GGUF", 4, &f, NULL) == CHORD_E_FORMAT, "err NULL");
    }

    small_file(&w, "t", 4);
    w.p[4] = 1;
    EXPECT(&w, CHORD_E_UNSUPPORTED, "version 1", 4);
    small_file(&w, "t", 4);
    w.p[4] = 4;
    EXPECT(&w, CHORD_E_UNSUPPORTED, "version 4", 4);
    small_file(&w, "t", 4);
    w.p[4] = 0;
    EXPECT(&w, CHORD_E_UNSUPPORTED, "version 0", 4);
    small_file(&w, "t", 4);
    w.p[4] = 0;
    w.p[7] = 3; /* big-endian v3 */
    EXPECT(&w, CHORD_E_UNSUPPORTED, "big-endian", 4);
    small_file(&w, "t", 4);
    w.p[4] = 2; /* v2 has the same layout */
    EXPECT(&w, CHORD_OK, "", -1);

    w_hdr(&w, 3, 0, 1ull << 60);
    w_zeros(&w, 64);
    EXPECT(&w, CHORD_E_FORMAT, "n_kv", 16);
    w_hdr(&w, 3, UINT64_MAX, 0);
    w_zeros(&w, 64);
    EXPECT(&w, CHORD_E_FORMAT, "n_tensors", 8);
    w_hdr(&w, 3, 1ull << 40, 1);
    w_kv_u32(&w, "k", 1);
    EXPECT(&w, CHORD_E_FORMAT, "n_tensors", 8);
    /* counts that fit individually but not together */
    w_hdr(&w, 3, 2, 4);
    w_zeros(&w, 4 * 13 + 2 * 32 - 1);
    EXPECT(&w, CHORD_E_FORMAT, "n_tensors", 8);
    /* a header alone, no kvs and no tensors, is a valid (empty) file */
    w_hdr(&w, 3, 0, 0);
    EXPECT(&w, CHORD_OK, "", -1);
    w_hdr(&w, 3, 0, 0);
    w.n -= 1;
    EXPECT(&w, CHORD_E_FORMAT, "n_kv", 16);
}

static void test_kvs(void) {
    wbuf w = {0};
    /* key length 2^63 */
    w_hdr(&w, 3, 0, 1);
    w_u64(&w, 1ull << 63);
    w_zeros(&w, 40);
    EXPECT(&w, CHORD_E_FORMAT, "key length", 24);

    /* string value length 2^63 */
    w_hdr(&w, 3, 0, 1);
    w_str(&w, "general.name");
    w_u32(&w, GGUF_STRING);
    size_t at = w.n;
    w_u64(&w, 1ull << 63);
    w_zeros(&w, 16);
    EXPECT(&w, CHORD_E_FORMAT, "string value length", at);

    /* string value one byte longer than the file */
    w_hdr(&w, 3, 0, 1);
    w_str(&w, "general.name");
    w_u32(&w, GGUF_STRING);
    at = w.n;
    w_u64(&w, 5);
    w_bytes(&w, "abcd", 4);
    EXPECT(&w, CHORD_E_FORMAT, "'general.name'", at);

    /* unknown value type */
    w_hdr(&w, 3, 0, 1);
    w_str(&w, "k.x");
    at = w.n;
    w_u32(&w, 13);
    w_zeros(&w, 16);
    EXPECT(&w, CHORD_E_FORMAT, "value type id 13", at);

    /* unknown array element type */
    w_hdr(&w, 3, 0, 1);
    w_str(&w, "k.arr");
    w_u32(&w, GGUF_ARRAY);
    at = w.n;
    w_u32(&w, 99);
    w_u64(&w, 1);
    w_zeros(&w, 16);
    EXPECT(&w, CHORD_E_FORMAT, "element type id 99", at);

    /* array counts too large for the file, of each element size */
    const uint32_t types[] = {GGUF_U8, GGUF_U16, GGUF_F32, GGUF_I64, GGUF_STRING, GGUF_ARRAY};
    const uint64_t counts[] = {UINT64_MAX, 1ull << 62, (1ull << 62) + 1, 1ull << 61, 5, 3};
    for (int i = 0; i < 6; i++) {
        w_hdr(&w, 3, 0, 1);
        w_str(&w, "k.arr");
        w_u32(&w, GGUF_ARRAY);
        w_u32(&w, types[i]);
        at = w.n;
        w_u64(&w, counts[i]);
        w_zeros(&w, 35);
        EXPECT(&w, CHORD_E_FORMAT, "array count", at);
    }

    /* a string element of a string array whose length runs past the end */
    w_hdr(&w, 3, 0, 1);
    w_str(&w, "tokenizer.ggml.tokens");
    w_u32(&w, GGUF_ARRAY);
    w_u32(&w, GGUF_STRING);
    w_u64(&w, 2);
    w_str(&w, "ok");
    at = w.n;
    w_u64(&w, 1ull << 63);
    w_zeros(&w, 8);
    EXPECT(&w, CHORD_E_FORMAT, "element 1", at);

    /* nesting: 8 levels are fine, 9 are not */
    for (int levels = 8; levels <= 9; levels++) {
        w_hdr(&w, 3, 0, 1);
        w_str(&w, "k.deep");
        w_u32(&w, GGUF_ARRAY);
        size_t last_hdr = 0;
        for (int l = 0; l < levels; l++) {
            last_hdr = w.n;
            w_u32(&w, l + 1 < levels ? GGUF_ARRAY : GGUF_U8);
            w_u64(&w, 1);
        }
        w_u8(&w, 42);
        if (levels == 8) {
            EXPECT(&w, CHORD_OK, "", -1);
        } else {
            /* the 9th level's header is the element of the 8th-level array */
            EXPECT(&w, CHORD_E_FORMAT, "nested deeper than 8", last_hdr - 12);
        }
    }
    /* deep nesting that is also wide: must not blow up */
    w_hdr(&w, 3, 0, 1);
    w_str(&w, "k.wide");
    w_u32(&w, GGUF_ARRAY);
    w_u32(&w, GGUF_ARRAY);
    w_u64(&w, 1000);
    for (int i = 0; i < 1000; i++) {
        w_u32(&w, GGUF_ARRAY);
        w_u64(&w, 0);
    }
    EXPECT(&w, CHORD_OK, "", -1);

    /* bool that is neither 0 nor 1 */
    w_hdr(&w, 3, 0, 1);
    w_str(&w, "k.b");
    w_u32(&w, GGUF_BOOL);
    at = w.n;
    w_u8(&w, 2);
    EXPECT(&w, CHORD_E_FORMAT, "bool", at);
    w_hdr(&w, 3, 0, 1);
    w_str(&w, "k.bs");
    w_u32(&w, GGUF_ARRAY);
    w_u32(&w, GGUF_BOOL);
    w_u64(&w, 3);
    w_u8(&w, 0);
    w_u8(&w, 1);
    at = w.n;
    w_u8(&w, 0x80);
    EXPECT(&w, CHORD_E_FORMAT, "element 2", at);

    /* scalar value cut short */
    w_hdr(&w, 3, 0, 1);
    w_str(&w, "k.u64");
    w_u32(&w, GGUF_U64);
    at = w.n;
    w_u32(&w, 1);
    EXPECT(&w, CHORD_E_FORMAT, "u64 value", at);

    /* duplicate key */
    w_hdr(&w, 3, 0, 3);
    w_kv_u32(&w, "a", 1);
    w_kv_u32(&w, "b", 2);
    at = w.n;
    w_kv_u32(&w, "a", 3);
    EXPECT(&w, CHORD_E_FORMAT, "duplicate key", at);
    /* keys differing only in length are not duplicates */
    w_hdr(&w, 3, 0, 3);
    w_kv_u32(&w, "a", 1);
    w_kv_u32(&w, "ab", 2);
    w_kv_u32(&w, "", 3);
    EXPECT(&w, CHORD_OK, "", -1);
}

static void test_alignment(void) {
    wbuf w = {0};
    const uint32_t bad[] = {0, 3, 48, 0x80000001u};
    for (int i = 0; i < 4; i++) {
        w_hdr(&w, 3, 0, 1);
        w_str(&w, "general.alignment");
        w_u32(&w, GGUF_U32);
        size_t at = w.n;
        w_u32(&w, bad[i]);
        EXPECT(&w, CHORD_E_FORMAT, "general.alignment", at);
    }
    /* not u32 */
    w_hdr(&w, 3, 0, 1);
    w_str(&w, "general.alignment");
    w_u32(&w, GGUF_U64);
    size_t at = w.n;
    w_u64(&w, 32);
    EXPECT(&w, CHORD_E_FORMAT, "must be of type u32", at);
    w_hdr(&w, 3, 0, 1);
    w_kv_str(&w, "general.alignment", "32");
    EXPECT(&w, CHORD_E_FORMAT, "general.alignment", -1);

    /* alignment 1 and 4096 are fine */
    {
        wbuf v = {0};
        w_hdr(&v, 3, 1, 1);
        w_kv_u32(&v, "general.alignment", 1);
        uint64_t ne[1] = {1};
        w_tinfo(&v, "w", 1, ne, CHORD_TYPE_I8, 0);
        w_u8(&v, 5);
        gguf_file *f = NULL;
        chord_error e;
        CHECK(gguf_parse(v.p, v.n, &f, &e) == CHORD_OK, "align 1: %s", e.message);
        if (f) {
            CHECK(gguf_alignment(f) == 1, "alignment");
            CHECK(gguf_data_offset(f) == v.n - 1, "data offset");
            CHECK(*(const uint8_t *)gguf_tensor_at(f, 0)->data == 5, "data");
        }
        gguf_free(f);
        free(v.p);
    }
    w_hdr(&w, 3, 1, 1);
    w_kv_u32(&w, "general.alignment", 4096);
    uint64_t ne[1] = {8};
    w_tinfo(&w, "w", 1, ne, CHORD_TYPE_F32, 0);
    w_pad(&w, 4096);
    w_zeros(&w, 32);
    EXPECT(&w, CHORD_OK, "", -1);
}

static void test_tensors(void) {
    wbuf w = {0};
    uint64_t ne[5] = {32, 2, 1, 1, 1};
    size_t at;

    /* n_dims 0 and 5 */
    for (uint32_t nd = 0; nd <= 5; nd += 5) {
        w_hdr(&w, 3, 1, 0);
        w_str(&w, "blk.0.attn_q.weight");
        at = w.n;
        w_u32(&w, nd);
        for (uint32_t d = 0; d < nd; d++)
            w_u64(&w, ne[d]);
        w_u32(&w, CHORD_TYPE_F32);
        w_u64(&w, 0);
        w_zeros(&w, 1024);
        EXPECT(&w, CHORD_E_FORMAT, "n_dims", at);
    }
    /* 1..4 dims are fine */
    for (uint32_t nd = 1; nd <= 4; nd++) {
        w_hdr(&w, 3, 1, 0);
        w_tinfo(&w, "t", nd, ne, CHORD_TYPE_F32, 0);
        w_pad(&w, 32);
        w_zeros(&w, 64 * 4);
        EXPECT(&w, CHORD_OK, "", -1);
    }

    /* ne = 0, negative, product overflow */
    const uint64_t bad_ne[][2] = {{0, 2}, {32, 0}, {UINT64_MAX, 1}, {32, 1ull << 63}};
    const char *bad_field[] = {"ne[0] = 0", "ne[1] = 0", "ne[0] = -1", "ne[1] = "};
    for (int i = 0; i < 4; i++) {
        w_hdr(&w, 3, 1, 0);
        w_str(&w, "t.bad");
        w_u32(&w, 2);
        at = w.n + (bad_ne[i][0] == 0 || bad_ne[i][0] == UINT64_MAX ? 0 : 8);
        w_u64(&w, bad_ne[i][0]);
        w_u64(&w, bad_ne[i][1]);
        w_u32(&w, CHORD_TYPE_F32);
        w_u64(&w, 0);
        w_zeros(&w, 64);
        EXPECT(&w, CHORD_E_FORMAT, bad_field[i], at);
    }
    {
        w_hdr(&w, 3, 1, 0);
        w_str(&w, "t.big");
        w_u32(&w, 3);
        w_u64(&w, 1ull << 31);
        w_u64(&w, 1ull << 31);
        at = w.n;
        w_u64(&w, 4);
        w_u32(&w, CHORD_TYPE_F32);
        w_u64(&w, 0);
        w_zeros(&w, 64);
        EXPECT(&w, CHORD_E_FORMAT, "overflows int64", at);
    }
    {
        /* element count fits int64, byte count does not */
        w_hdr(&w, 3, 1, 0);
        w_str(&w, "t.bytes");
        w_u32(&w, 2);
        at = w.n;
        w_u64(&w, 1ull << 31);
        w_u64(&w, 1ull << 31);
        w_u32(&w, CHORD_TYPE_F64);
        w_u64(&w, 0);
        w_zeros(&w, 64);
        EXPECT(&w, CHORD_E_FORMAT, "byte size", at);
    }

    /* unknown type ids, including the retired Q4_2 (4) */
    const uint32_t bad_types[] = {4, 5, 31, 36, 99, UINT32_MAX};
    for (int i = 0; i < 6; i++) {
        w_hdr(&w, 3, 1, 0);
        w_str(&w, "blk.0.attn_q.weight");
        w_u32(&w, 1);
        w_u64(&w, 32);
        at = w.n;
        w_u32(&w, bad_types[i]);
        w_u64(&w, 0);
        w_zeros(&w, 64);
        char want[96];
        snprintf(want, sizeof want, "tensor 'blk.0.attn_q.weight' has unknown type id %" PRIu32,
                 bad_types[i]);
        EXPECT(&w, CHORD_E_UNSUPPORTED, want, at);
    }

    /* ne[0] not a multiple of the block size */
    w_hdr(&w, 3, 1, 0);
    w_str(&w, "t.q8");
    w_u32(&w, 2);
    at = w.n;
    w_u64(&w, 33);
    w_u64(&w, 1);
    w_u32(&w, CHORD_TYPE_Q8_0);
    w_u64(&w, 0);
    w_zeros(&w, 64);
    EXPECT(&w, CHORD_E_FORMAT, "block size 32", at);
    w_hdr(&w, 3, 1, 0);
    w_str(&w, "t.q4k");
    w_u32(&w, 1);
    at = w.n;
    w_u64(&w, 128);
    w_u32(&w, CHORD_TYPE_Q4_K);
    w_u64(&w, 0);
    w_zeros(&w, 256);
    EXPECT(&w, CHORD_E_FORMAT, "block size 256", at);

    /* misaligned offset */
    w_hdr(&w, 3, 2, 0);
    w_tinfo(&w, "a", 1, ne, CHORD_TYPE_F32, 0);
    w_str(&w, "b");
    w_u32(&w, 1);
    w_u64(&w, 8);
    w_u32(&w, CHORD_TYPE_F32);
    at = w.n;
    w_u64(&w, 144);
    w_pad(&w, 32);
    w_zeros(&w, 256);
    EXPECT(&w, CHORD_E_FORMAT, "not a multiple of the alignment 32", at);

    /* data past EOF: by one byte, and with a huge offset */
    {
        size_t info;
        w_hdr(&w, 3, 1, 1);
        w_kv_str(&w, "general.architecture", "llama");
        info = w.n;
        w_tinfo(&w, "blk.0.attn_q.weight", 1, ne, CHORD_TYPE_F32, 0);
        w_pad(&w, 32);
        w_zeros(&w, 32 * 4 - 1);
        EXPECT(&w, CHORD_E_FORMAT, "tensor 0 ('blk.0.attn_q.weight'): data [", info);
        w_hdr(&w, 3, 1, 0);
        info = w.n;
        w_tinfo(&w, "x", 1, ne, CHORD_TYPE_F32, UINT64_MAX - 31);
        w_pad(&w, 32);
        w_zeros(&w, 32 * 4);
        EXPECT(&w, CHORD_E_FORMAT, "extends past end of file", info);
        /* tensor infos end where the data section would need padding past EOF */
        w_hdr(&w, 3, 1, 0);
        w_tinfo(&w, "x", 1, ne, CHORD_TYPE_F32, 0);
        at = w.n;
        EXPECT(&w, CHORD_E_FORMAT, "data section", at);
    }

    /* overlapping tensors (listed out of order), and touching ones (fine) */
    {
        size_t info_b;
        uint64_t n8[1] = {8};
        w_hdr(&w, 3, 3, 0);
        w_tinfo(&w, "c", 1, n8, CHORD_TYPE_F32, 128);
        w_tinfo(&w, "a", 1, n8, CHORD_TYPE_F32, 0);
        info_b = w.n;
        w_tinfo(&w, "b", 1, ne, CHORD_TYPE_F32, 0 + 32); /* [32, 160) overlaps c */
        w_pad(&w, 32);
        w_zeros(&w, 256);
        EXPECT(&w, CHORD_E_FORMAT, "overlaps tensor 2 ('b')", -1);
        (void)info_b;
        w_hdr(&w, 3, 2, 0);
        w_tinfo(&w, "a", 1, n8, CHORD_TYPE_F32, 0);
        info_b = w.n;
        w_tinfo(&w, "b", 1, n8, CHORD_TYPE_F32, 0);
        w_pad(&w, 32);
        w_zeros(&w, 64);
        EXPECT(&w, CHORD_E_FORMAT, "overlaps", info_b);
        w_hdr(&w, 3, 2, 0);
        w_tinfo(&w, "a", 1, n8, CHORD_TYPE_F32, 0);
        w_tinfo(&w, "b", 1, n8, CHORD_TYPE_F32, 32);
        w_pad(&w, 32);
        w_zeros(&w, 64);
        EXPECT(&w, CHORD_OK, "", -1);
    }

    /* duplicate tensor name */
    {
        uint64_t n8[1] = {8};
        w_hdr(&w, 3, 2, 0);
        w_tinfo(&w, "output.weight", 1, n8, CHORD_TYPE_F32, 0);
        size_t info = w.n;
        w_tinfo(&w, "output.weight", 1, n8, CHORD_TYPE_F32, 32);
        w_pad(&w, 32);
        w_zeros(&w, 64);
        EXPECT(&w, CHORD_E_FORMAT, "duplicate tensor name", info);
    }

    /* tensor name length past the end; a control character shows as '?' */
    w_hdr(&w, 3, 1, 0);
    at = w.n;
    w_u64(&w, 1ull << 63);
    w_zeros(&w, 32);
    EXPECT(&w, CHORD_E_FORMAT, "name length", at);
    w_hdr(&w, 3, 1, 0);
    w_str(&w, "bad\nname");
    w_u32(&w, 9);
    w_zeros(&w, 32);
    EXPECT(&w, CHORD_E_FORMAT, "('bad?name')", -1);
}

/* Every prefix of a valid file must fail cleanly. */
static void test_truncation(void) {
    wbuf w = {0};
    rich_file(&w);
    chord_error e;
    gguf_file *f = NULL;
    chord_status st = gguf_parse(w.p, w.n, &f, &e);
    CHECK(st == CHORD_OK, "rich file: %s", e.message);
    if (f) {
        CHECK(gguf_n_kv(f) == 8 && gguf_n_tensors(f) == 3, "counts");
        CHECK(gguf_alignment(f) == 64 && gguf_data_offset(f) % 64 == 0, "alignment");
        gguf_value v;
        CHECK(gguf_get_arr(f, "a.tokens", &v) && v.arr_n == 3, "tokens");
        if (v.arr_n == 3) {
            CHECK(gguf_str_eq(gguf_arr_str(&v, 2), "ccc"), "tokens[2]");
            CHECK(gguf_str_eq(gguf_arr_str(&v, 1), ""), "tokens[1]");
        }
        char buf[128];
        CHECK(gguf_get_arr(f, "a.nested", &v), "nested");
        gguf_value_format(&v, buf, sizeof buf, 4);
        CHECK(!strcmp(buf, "[[1, -2], [\"x\"]]"), "nested: %s", buf);
        const gguf_tensor *t = gguf_find_tensor(f, "q4k");
        CHECK(t && t->nbytes == 144 && t->offset == 192, "q4k");
        CHECK(t && (const uint8_t *)t->data + t->nbytes == w.p + w.n, "q4k ends at EOF");
        t = gguf_find_tensor(f, "q8");
        CHECK(t && t->nbytes == 68 && t->ne[0] == 32 && t->ne[1] == 2 && t->ne[2] == 1, "q8");
    }
    gguf_free(f);

    int failed_ok = 0;
    for (size_t len = 0; len < w.n; len++) {
        uint8_t *copy = malloc(len ? len : 1);
        memcpy(copy, w.p, len);
        f = NULL;
        memset(&e, 0, sizeof e);
        st = gguf_parse(copy, len, &f, &e);
        if (st != CHORD_E_FORMAT || f != NULL || e.offset < 0 || (size_t)e.offset > len ||
            !e.message[0]) {
            failed_ok++;
            if (failed_ok < 5)
                fprintf(stderr, "truncated at %zu: status %d offset %" PRId64 " '%s'\n", len,
                        (int)st, e.offset, e.message);
        }
        gguf_free(f);
        free(copy);
    }
    CHECK(failed_ok == 0, "%d truncations did not fail cleanly", failed_ok);
    free(w.p);
}

static uint64_t rng(uint64_t *s) {
    *s ^= *s >> 12;
    *s ^= *s << 25;
    *s ^= *s >> 27;
    return *s * 2685821657736338717ull;
}

/* Touches everything a parsed file hands out (ASan checks the pointers). */
static unsigned touch(const gguf_file *f) {
    unsigned acc = 0;
    char buf[256];
    for (uint64_t i = 0; i < gguf_n_kv(f); i++) {
        const gguf_kv *kv = gguf_kv_at(f, i);
        gguf_value_format(&kv->value, buf, sizeof buf, 8);
        acc += (unsigned)strlen(buf);
        if (kv->value.type == GGUF_ARRAY && kv->value.arr_n) {
            uint64_t last = kv->value.arr_n - 1;
            if (kv->value.arr_type == GGUF_STRING) {
                gguf_str s = gguf_arr_str(&kv->value, last);
                if (s.len) acc += (unsigned char)s.ptr[s.len - 1];
            } else {
                acc += (unsigned)gguf_arr_i64(&kv->value, last);
                acc += (unsigned)gguf_arr_f64(&kv->value, last);
            }
        }
    }
    for (uint64_t i = 0; i < gguf_n_tensors(f); i++) {
        const gguf_tensor *t = gguf_tensor_at(f, i);
        const uint8_t *d = t->data;
        acc += d[0] + d[t->nbytes - 1];
    }
    return acc;
}

/* Random byte flips in the header region of a real model: never a crash. */
static void test_flips(void) {
    size_t size = 0;
    char *raw = test_read_file(test_shared("golden/dev-Q4_K_M.gguf"), &size);
    if (!raw) {
        printf("flips: skipped: %s not found\n", test_shared("golden/dev-Q4_K_M.gguf"));
        /* fall back to the in-memory rich file */
        wbuf w = {0};
        rich_file(&w);
        raw = (char *)w.p;
        size = w.n;
    }
    uint8_t *buf = malloc(size);
    memcpy(buf, raw, size);
    gguf_file *f = NULL;
    chord_error e;
    CHECK(gguf_parse(buf, size, &f, &e) == CHORD_OK, "base file: %s", e.message);
    uint64_t region = f ? gguf_data_offset(f) : 4096;
    if (region > size) region = size;
    gguf_free(f);

    uint64_t seed = 0x9e3779b97f4a7c15ull;
    int n_ok = 0, n_err = 0;
    unsigned acc = 0;
    for (int it = 0; it < 2000; it++) {
        size_t pos[4];
        uint8_t old[4];
        int k = 1 + (int)(rng(&seed) % 4);
        for (int j = 0; j < k; j++) {
            /* favour the first bytes (header, counts, first keys) a little */
            uint64_t r = rng(&seed);
            pos[j] = (size_t)((r & 1) ? (r >> 1) % (region < 256 ? region : 256)
                                      : (r >> 1) % region);
            old[j] = buf[pos[j]];
            uint64_t how = rng(&seed) % 3;
            buf[pos[j]] = how == 0   ? (uint8_t)(old[j] ^ (1u << (rng(&seed) % 8)))
                          : how == 1 ? (uint8_t)rng(&seed)
                                     : (uint8_t)(0xff * (rng(&seed) & 1));
        }
        f = NULL;
        chord_status st = gguf_parse(buf, size, &f, &e);
        if (st == CHORD_OK) {
            n_ok++;
            acc += touch(f);
        } else {
            n_err++;
            CHECK(f == NULL && e.message[0], "error without message");
        }
        gguf_free(f);
        for (int j = k - 1; j >= 0; j--)
            buf[pos[j]] = old[j];
    }
    printf("flips: %d parsed, %d rejected (acc %u)\n", n_ok, n_err, acc);
    CHECK(n_err > 0, "no flip was rejected");
    free(buf);
    free(raw);
}

int main(void) {
    test_header();
    test_kvs();
    test_alignment();
    test_tensors();
    test_truncation();
    test_flips();
    return test_summary("test_gguf_corrupt");
}
