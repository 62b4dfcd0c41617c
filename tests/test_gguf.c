/* The GGUF parser on real files (the golden dev models and the tokenizer vocabularies
 * in ../shared), the typed getters and value formatting on a file built in memory,
 * and chord_map_file. */
#define _POSIX_C_SOURCE 200809L
#include <dirent.h>
#include <inttypes.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "gguf.h"
#include "mapfile.h"
#include "quant/types.h"
#include "testutil.h"

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

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
static void w_u16(wbuf *w, uint16_t v) {
    w_u8(w, (uint8_t)v);
    w_u8(w, (uint8_t)(v >> 8));
}
static void w_u32(wbuf *w, uint32_t v) {
    w_u16(w, (uint16_t)v);
    w_u16(w, (uint16_t)(v >> 16));
}
static void w_u64(wbuf *w, uint64_t v) {
    w_u32(w, (uint32_t)v);
    w_u32(w, (uint32_t)(v >> 32));
}
static void w_f32(wbuf *w, float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    w_u32(w, u);
}
static void w_f64(wbuf *w, double f) {
    uint64_t u;
    memcpy(&u, &f, 8);
    w_u64(w, u);
}
static void w_strn(wbuf *w, const char *s, size_t n) {
    w_u64(w, n);
    w_bytes(w, s, n);
}
static void w_str(wbuf *w, const char *s) {
    w_strn(w, s, strlen(s));
}
static void w_key(wbuf *w, const char *key, uint32_t type) {
    w_str(w, key);
    w_u32(w, type);
}

/* ------------------------------------------------------------- real files */

static const char *const LAYER_TENSORS[] = {
    "attn_norm.weight", "attn_q.weight",      "attn_k.weight",
    "attn_v.weight",    "attn_output.weight", "ffn_norm.weight",
    "ffn_gate.weight",  "ffn_up.weight",      "ffn_down.weight"};

static char *name_cstr(gguf_str s, char *buf, size_t size) {
    size_t n = s.len < size - 1 ? (size_t)s.len : size - 1;
    memcpy(buf, s.ptr, n);
    buf[n] = 0;
    return buf;
}

static void check_golden(const char *path, const char *fname) {
    chord_mapping m;
    chord_error e;
    chord_status st = chord_map_file(path, &m, &e);
    CHECK(st == CHORD_OK, "%s: map: %s", fname, e.message);
    if (st) return;
    gguf_file *f = NULL;
    st = gguf_parse(m.data, m.size, &f, &e);
    CHECK(st == CHORD_OK, "%s: %s", fname, e.message);
    if (st) {
        chord_unmap(&m);
        return;
    }
    const uint8_t *base = m.data;
    CHECK(gguf_version(f) == 3, "%s: version %u", fname, gguf_version(f));
    CHECK(gguf_alignment(f) == 32, "%s: alignment", fname);
    CHECK(gguf_size(f) == m.size, "%s: size", fname);
    CHECK(gguf_data_offset(f) % 32 == 0 && gguf_data_offset(f) < m.size, "%s: data offset",
          fname);
    CHECK(gguf_n_tensors(f) == 21, "%s: %" PRIu64 " tensors", fname, gguf_n_tensors(f));

    gguf_str s;
    CHECK(gguf_get_str(f, "general.architecture", &s) && gguf_str_eq(s, "llama"),
          "%s: architecture", fname);
    uint64_t u = 0;
    int64_t i64 = 0;
    double d = 0;
    CHECK(gguf_get_u64(f, "llama.embedding_length", &u) && u == 512, "%s: n_embd", fname);
    CHECK(gguf_get_i64(f, "llama.block_count", &i64) && i64 == 2, "%s: n_layer", fname);
    CHECK(gguf_get_u64(f, "llama.attention.head_count_kv", &u) && u == 2, "%s: n_head_kv",
          fname);
    CHECK(!gguf_get_f64(f, "llama.embedding_length", &d), "%s: u32 as f64", fname);
    CHECK(gguf_get_f64(f, "llama.rope.freq_base", &d) && d == 10000.0, "%s: freq base", fname);
    CHECK(gguf_get_f64(f, "llama.attention.layer_norm_rms_epsilon", &d) && (float)d == 1e-5f,
          "%s: eps %g", fname, d);
    CHECK(!gguf_get_u64(f, "llama.rope.freq_base", &u), "%s: f32 as u64", fname);
    CHECK(!gguf_get_str(f, "llama.embedding_length", &s), "%s: u32 as str", fname);
    CHECK(!gguf_get_u64(f, "no.such.key", &u) && !gguf_find_kv(f, "no.such.key"),
          "%s: missing key", fname);
    CHECK(!gguf_find_kv(f, "llama.embedding_lengt") && !gguf_find_kv(f, ""), "%s: prefix key",
          fname);

    gguf_value toks, scores, types;
    CHECK(gguf_get_arr(f, "tokenizer.ggml.tokens", &toks) && toks.arr_type == GGUF_STRING &&
              toks.arr_n == 512,
          "%s: tokens", fname);
    if (toks.arr_n == 512) {
        CHECK(gguf_str_eq(gguf_arr_str(&toks, 0), "<unk>"), "%s: tok 0", fname);
        CHECK(gguf_str_eq(gguf_arr_str(&toks, 1), "<s>"), "%s: tok 1", fname);
        CHECK(gguf_str_eq(gguf_arr_str(&toks, 2), "</s>"), "%s: tok 2", fname);
        CHECK(gguf_str_eq(gguf_arr_str(&toks, 3), "<0x00>"), "%s: tok 3", fname);
        gguf_str last = gguf_arr_str(&toks, 511);
        CHECK((const uint8_t *)last.ptr > base &&
                  (const uint8_t *)last.ptr + last.len <= base + gguf_data_offset(f),
              "%s: last token inside the header", fname);
    }
    CHECK(gguf_get_arr(f, "tokenizer.ggml.scores", &scores) && scores.arr_type == GGUF_F32 &&
              scores.arr_n == 512,
          "%s: scores", fname);
    CHECK(gguf_get_arr(f, "tokenizer.ggml.token_type", &types) && types.arr_type == GGUF_I32 &&
              types.arr_n == 512,
          "%s: token types", fname);
    if (types.arr_n == 512) {
        CHECK(gguf_arr_i64(&types, 0) == 2 && gguf_arr_i64(&types, 1) == 3 &&
                  gguf_arr_i64(&types, 3) == 6 && gguf_arr_i64(&types, 300) == 1,
              "%s: token type values", fname);
        CHECK(gguf_arr_f64(&types, 3) == 6.0, "%s: i32 as f64", fname);
        CHECK(gguf_arr_str(&types, 0).ptr == NULL, "%s: i32 as str", fname);
    }
    if (scores.arr_n == 512) CHECK(gguf_arr_i64(&scores, 5) == 0, "%s: f32 as i64", fname);
    CHECK(!gguf_get_arr(f, "general.architecture", &toks), "%s: str as arr", fname);

    /* tensors */
    char want[64], nb[128];
    int found = 0;
    for (int l = 0; l < 2; l++)
        for (int k = 0; k < 9; k++) {
            snprintf(want, sizeof want, "blk.%d.%s", l, LAYER_TENSORS[k]);
            const gguf_tensor *t = gguf_find_tensor(f, want);
            CHECK(t != NULL, "%s: no %s", fname, want);
            found += t != NULL;
        }
    const char *top[] = {"token_embd.weight", "output_norm.weight", "output.weight"};
    for (int k = 0; k < 3; k++)
        found += gguf_find_tensor(f, top[k]) != NULL;
    CHECK(found == 21, "%s: found %d", fname, found);
    CHECK(!gguf_find_tensor(f, "blk.2.attn_q.weight") && !gguf_find_tensor(f, "output"),
          "%s: missing tensor", fname);

    const gguf_tensor *emb = gguf_find_tensor(f, "token_embd.weight");
    if (emb) {
        CHECK(emb->n_dims == 2 && emb->ne[0] == 512 && emb->ne[1] == 512 && emb->ne[2] == 1 &&
                  emb->ne[3] == 1,
              "%s: token_embd shape", fname);
        /* pure files: the embedding has the file's type */
        const char *ty = fname + 4; /* "dev-" */
        size_t tl = strcspn(ty, ".");
        char tname[16] = {0};
        memcpy(tname, ty, tl < 15 ? tl : 15);
        if (strcmp(tname, "Q4_K_M") != 0)
            CHECK(emb->type == (uint32_t)chord_type_from_name(tname), "%s: embd type %s", fname,
                  chord_type_name(emb->type));
    }
    const gguf_tensor *on = gguf_find_tensor(f, "output_norm.weight");
    if (on)
        CHECK(on->n_dims == 1 && on->ne[0] == 512 && on->ne[1] == 1 &&
                  on->type == CHORD_TYPE_F32 && on->nbytes == 2048,
              "%s: output_norm", fname);
    const gguf_tensor *fd = gguf_find_tensor(f, "blk.1.ffn_down.weight");
    if (fd) CHECK(fd->ne[0] == 1024 && fd->ne[1] == 512, "%s: ffn_down shape", fname);
    const gguf_tensor *ak = gguf_find_tensor(f, "blk.0.attn_k.weight");
    if (ak) CHECK(ak->ne[0] == 512 && ak->ne[1] == 128, "%s: attn_k shape", fname);

    uint64_t total = 0, max_end = 0;
    for (uint64_t i = 0; i < gguf_n_tensors(f); i++) {
        const gguf_tensor *t = gguf_tensor_at(f, i);
        CHECK(gguf_find_tensor(f, name_cstr(t->name, nb, sizeof nb)) == t, "%s: lookup %s",
              fname, nb);
        size_t row = chord_row_size((chord_type)t->type, t->ne[0]);
        CHECK(t->nbytes == row * (uint64_t)(t->ne[1] * t->ne[2] * t->ne[3]), "%s: %s nbytes",
              fname, nb);
        CHECK((const uint8_t *)t->data == base + gguf_data_offset(f) + t->offset, "%s: %s data",
              fname, nb);
        CHECK(((const uint8_t *)t->data - base) % 32 == 0, "%s: %s aligned", fname, nb);
        total += t->nbytes;
        if (t->offset + t->nbytes > max_end) max_end = t->offset + t->nbytes;
    }
    CHECK(gguf_tensor_at(f, 21) == NULL && gguf_kv_at(f, gguf_n_kv(f)) == NULL,
          "%s: out of range", fname);
    CHECK(gguf_data_offset(f) + max_end <= m.size &&
              m.size - gguf_data_offset(f) - max_end < 32,
          "%s: data section ends at EOF", fname);
    CHECK(total <= max_end, "%s: bytes", fname);

    /* every kv formats */
    char buf[256];
    for (uint64_t i = 0; i < gguf_n_kv(f); i++) {
        const gguf_kv *kv = gguf_kv_at(f, i);
        CHECK(gguf_find_kv(f, name_cstr(kv->key, nb, sizeof nb)) == kv, "%s: key %s", fname,
              nb);
        gguf_value_format(&kv->value, buf, sizeof buf, 4);
        CHECK(buf[0] != 0, "%s: format %s", fname, nb);
    }
    const gguf_kv *kv = gguf_find_kv(f, "tokenizer.ggml.tokens");
    if (kv) {
        gguf_value_format(&kv->value, buf, sizeof buf, 3);
        CHECK(!strcmp(buf, "[\"<unk>\", \"<s>\", \"</s>\", ... (512 items)]"), "%s: '%s'",
              fname, buf);
    }
    if ((kv = gguf_find_kv(f, "llama.embedding_length"))) {
        gguf_value_format(&kv->value, buf, sizeof buf, 3);
        CHECK(!strcmp(buf, "512"), "%s: '%s'", fname, buf);
    }
    if ((kv = gguf_find_kv(f, "general.architecture"))) {
        gguf_value_format(&kv->value, buf, sizeof buf, 3);
        CHECK(!strcmp(buf, "\"llama\""), "%s: '%s'", fname, buf);
    }
    if ((kv = gguf_find_kv(f, "llama.attention.layer_norm_rms_epsilon"))) {
        gguf_value_format(&kv->value, buf, sizeof buf, 3);
        CHECK(!strcmp(buf, "1e-05"), "%s: '%s'", fname, buf);
    }
    if ((kv = gguf_find_kv(f, "tokenizer.ggml.add_bos_token"))) {
        gguf_value_format(&kv->value, buf, sizeof buf, 3);
        CHECK(!strcmp(buf, "true"), "%s: '%s'", fname, buf);
    }
    gguf_free(f);
    chord_unmap(&m);
    CHECK(m.data == NULL && m.size == 0, "unmap zeroes");
}

static void check_vocab(const char *path, const char *fname) {
    size_t size = 0;
    void *data = test_read_file(path, &size);
    CHECK(data != NULL, "read %s", path);
    if (!data) return;
    gguf_file *f = NULL;
    chord_error e;
    double best = 1e9;
    for (int rep = 0; rep < 5; rep++) {
        double t0 = now_s();
        chord_status st = gguf_parse(data, size, &f, &e);
        double dt = now_s() - t0;
        if (dt < best) best = dt;
        CHECK(st == CHORD_OK, "%s: %s", fname, e.message);
        if (st) {
            free(data);
            return;
        }
        if (rep < 4) gguf_free(f);
    }
    printf("%s: %zu bytes, %" PRIu64 " kv, parse %.2f ms (best of 5)\n", fname, size,
           gguf_n_kv(f), best * 1e3);
    CHECK(best < 0.05, "%s: parse took %.1f ms", fname, best * 1e3);
    CHECK(gguf_version(f) == 3 && gguf_n_tensors(f) == 0, "%s: header", fname);

    uint64_t want_n = 0;
    const char *want_model = NULL, *tok1 = NULL;
    if (strstr(fname, "gpt-2")) want_n = 50257, want_model = "gpt2", tok1 = "\"";
    if (strstr(fname, "llama-spm")) want_n = 32000, want_model = "llama", tok1 = "<s>";
    if (strstr(fname, "phi-3")) want_n = 32064, want_model = "llama", tok1 = "<s>";
    gguf_value toks;
    gguf_str s;
    CHECK(gguf_get_arr(f, "tokenizer.ggml.tokens", &toks) && toks.arr_type == GGUF_STRING,
          "%s: tokens", fname);
    if (want_n) {
        CHECK(toks.arr_n == want_n, "%s: %" PRIu64 " tokens", fname, toks.arr_n);
        CHECK(gguf_get_str(f, "tokenizer.ggml.model", &s) && gguf_str_eq(s, want_model),
              "%s: model", fname);
        CHECK(toks.arr_n > 1 && gguf_str_eq(gguf_arr_str(&toks, 1), tok1), "%s: token 1",
              fname);
    }
    /* O(1) element access agrees with a scan of the raw bytes */
    gguf_value scan = toks;
    scan.str_index_ = NULL;
    const uint8_t *p = toks.data;
    uint64_t bad = 0, bytes = 0;
    for (uint64_t i = 0; i < toks.arr_n; i++) {
        uint64_t len;
        memcpy(&len, p, 8); /* little-endian host */
        gguf_str a = gguf_arr_str(&toks, i);
        if (a.ptr != (const char *)p + 8 || a.len != len) bad++;
        bytes += a.len;
        p += 8 + len;
    }
    CHECK(bad == 0, "%s: %" PRIu64 " token strings differ", fname, bad);
    CHECK(toks.arr_n == 0 || gguf_arr_str(&scan, toks.arr_n - 1).ptr ==
                                 gguf_arr_str(&toks, toks.arr_n - 1).ptr,
          "%s: linear fallback", fname);
    if (strstr(fname, "gpt-2")) {
        gguf_value merges;
        CHECK(gguf_get_arr(f, "tokenizer.ggml.merges", &merges) && merges.arr_n == 50000,
              "%s: merges", fname);
        CHECK(gguf_str_eq(gguf_arr_str(&toks, 50256), "<|endoftext|>"), "%s: eot", fname);
        CHECK(gguf_str_eq(gguf_arr_str(&merges, 0), "\xc4\xa0 t"), "%s: merge 0", fname);
    }
    if (strstr(fname, "phi-3")) {
        CHECK(gguf_get_str(f, "tokenizer.chat_template", &s) && s.len > 60, "%s: template",
              fname);
        const gguf_kv *kv = gguf_find_kv(f, "tokenizer.chat_template");
        char buf[256];
        gguf_value_format(&kv->value, buf, sizeof buf, 4);
        char tail[64];
        snprintf(tail, sizeof tail, "\"... (%" PRIu64 " bytes)", s.len);
        CHECK(buf[0] == '"' && strstr(buf, tail) && strlen(buf) < 100 + strlen(tail),
              "%s: template format '%s'", fname, buf);
    }
    (void)bytes;
    gguf_free(f);
    free(data);
}

typedef void (*file_fn)(const char *path, const char *fname);

static int for_each_gguf(const char *dir, file_fn fn) {
    DIR *d = opendir(dir);
    if (!d) return -1;
    int n = 0;
    struct dirent *de;
    char path[4096];
    while ((de = readdir(d))) {
        size_t l = strlen(de->d_name);
        if (l < 5 || strcmp(de->d_name + l - 5, ".gguf")) continue;
        snprintf(path, sizeof path, "%s/%s", dir, de->d_name);
        fn(path, de->d_name);
        n++;
    }
    closedir(d);
    return n;
}

/* ----------------------------------------------------- in-memory: getters */

static void test_getters(void) {
    wbuf w = {0};
    w_bytes(&w, "GGUF", 4);
    w_u32(&w, 2);
    w_u64(&w, 0);
    w_u64(&w, 22);
    w_key(&w, "u8", GGUF_U8), w_u8(&w, 200);
    w_key(&w, "i8", GGUF_I8), w_u8(&w, (uint8_t)-5);
    w_key(&w, "u16", GGUF_U16), w_u16(&w, 65535);
    w_key(&w, "i16", GGUF_I16), w_u16(&w, (uint16_t)-300);
    w_key(&w, "u32", GGUF_U32), w_u32(&w, 4000000000u);
    w_key(&w, "i32", GGUF_I32), w_u32(&w, (uint32_t)-1);
    w_key(&w, "u64", GGUF_U64), w_u64(&w, (1ull << 63) + 1);
    w_key(&w, "i64", GGUF_I64), w_u64(&w, (uint64_t) - (1ll << 40));
    w_key(&w, "f32", GGUF_F32), w_f32(&w, 0.25f);
    w_key(&w, "f64", GGUF_F64), w_f64(&w, -1.5e300);
    w_key(&w, "bool", GGUF_BOOL), w_u8(&w, 0);
    w_key(&w, "str", GGUF_STRING), w_str(&w, "a\"b\\c\nd\t\x01");
    w_key(&w, "long", GGUF_STRING);
    w_str(&w, "0123456789012345678901234567890123456789012345678901234\xc3\xa9\xc3\xa9"
              "\xc3\xa9xyz"); /* 55 ASCII + 3 two-byte chars + 3 */
    w_key(&w, "empty", GGUF_STRING), w_str(&w, "");
    w_key(&w, "a.u8", GGUF_ARRAY), w_u32(&w, GGUF_U8), w_u64(&w, 0);
    w_key(&w, "a.i16", GGUF_ARRAY), w_u32(&w, GGUF_I16), w_u64(&w, 3);
    w_u16(&w, 1), w_u16(&w, (uint16_t)-2), w_u16(&w, 3);
    w_key(&w, "a.u64", GGUF_ARRAY), w_u32(&w, GGUF_U64), w_u64(&w, 2);
    w_u64(&w, 7), w_u64(&w, UINT64_MAX);
    w_key(&w, "a.f64", GGUF_ARRAY), w_u32(&w, GGUF_F64), w_u64(&w, 2);
    w_f64(&w, 0.5), w_f64(&w, -2);
    w_key(&w, "a.bool", GGUF_ARRAY), w_u32(&w, GGUF_BOOL), w_u64(&w, 2);
    w_u8(&w, 1), w_u8(&w, 0);
    w_key(&w, "a.str", GGUF_ARRAY), w_u32(&w, GGUF_STRING), w_u64(&w, 4);
    w_str(&w, "x"), w_str(&w, ""), w_strn(&w, "n\0l", 3), w_str(&w, "last");
    w_key(&w, "a.nest", GGUF_ARRAY), w_u32(&w, GGUF_ARRAY), w_u64(&w, 3);
    w_u32(&w, GGUF_STRING), w_u64(&w, 2), w_str(&w, "p"), w_str(&w, "q");
    w_u32(&w, GGUF_ARRAY), w_u64(&w, 1), w_u32(&w, GGUF_U8), w_u64(&w, 2), w_u8(&w, 9),
        w_u8(&w, 8);
    w_u32(&w, GGUF_F32), w_u64(&w, 0);
    w_key(&w, "a.i32", GGUF_ARRAY), w_u32(&w, GGUF_I32), w_u64(&w, 10);
    for (int i = 0; i < 10; i++)
        w_u32(&w, (uint32_t)(i * 10));

    gguf_file *f = NULL;
    chord_error e;
    chord_status st = gguf_parse(w.p, w.n, &f, &e);
    CHECK(st == CHORD_OK, "getters file: %s", e.message);
    if (st) {
        free(w.p);
        return;
    }
    CHECK(gguf_version(f) == 2 && gguf_n_kv(f) == 22 && gguf_n_tensors(f) == 0, "header");
    CHECK(gguf_data_offset(f) % 32 == 0 && gguf_data_offset(f) >= w.n, "data offset");

    uint64_t u;
    int64_t i;
    double d;
    bool b;
    gguf_str s;
    CHECK(gguf_get_u64(f, "u8", &u) && u == 200, "u8");
    CHECK(gguf_get_i64(f, "u8", &i) && i == 200, "u8 as i64");
    CHECK(!gguf_get_u64(f, "i8", &u), "negative i8 as u64");
    CHECK(gguf_get_i64(f, "i8", &i) && i == -5, "i8");
    CHECK(gguf_get_u64(f, "u16", &u) && u == 65535, "u16");
    CHECK(gguf_get_i64(f, "i16", &i) && i == -300, "i16");
    CHECK(gguf_get_u64(f, "u32", &u) && u == 4000000000u, "u32");
    CHECK(gguf_get_i64(f, "u32", &i) && i == 4000000000ll, "u32 as i64");
    CHECK(gguf_get_i64(f, "i32", &i) && i == -1, "i32");
    CHECK(gguf_get_u64(f, "u64", &u) && u == (1ull << 63) + 1, "u64");
    CHECK(!gguf_get_i64(f, "u64", &i), "big u64 as i64");
    CHECK(gguf_get_i64(f, "i64", &i) && i == -(1ll << 40), "i64");
    CHECK(!gguf_get_u64(f, "i64", &u), "negative i64 as u64");
    CHECK(gguf_get_f64(f, "f32", &d) && d == 0.25, "f32");
    CHECK(gguf_get_f64(f, "f64", &d) && d == -1.5e300, "f64");
    CHECK(!gguf_get_f64(f, "u8", &d) && !gguf_get_u64(f, "f32", &u), "float/int");
    CHECK(gguf_get_bool(f, "bool", &b) && b == false, "bool");
    CHECK(!gguf_get_bool(f, "u8", &b) && !gguf_get_u64(f, "bool", &u), "bool/int");
    CHECK(gguf_get_str(f, "str", &s) && s.len == 9 && !memcmp(s.ptr, "a\"b\\c\nd\t\x01", 9),
          "str");
    CHECK(gguf_get_str(f, "empty", &s) && s.len == 0, "empty str");
    CHECK(!gguf_get_str(f, "a.str", &s), "array as str");

    gguf_value v;
    CHECK(gguf_get_arr(f, "a.i16", &v) && v.arr_type == GGUF_I16 && v.arr_n == 3, "a.i16");
    CHECK(gguf_arr_i64(&v, 1) == -2 && gguf_arr_f64(&v, 2) == 3.0, "a.i16 elems");
    CHECK(gguf_get_arr(f, "a.u64", &v) && gguf_arr_i64(&v, 0) == 7 &&
              gguf_arr_i64(&v, 1) == INT64_MAX && gguf_arr_f64(&v, 1) == 18446744073709551615.0,
          "a.u64");
    CHECK(gguf_get_arr(f, "a.f64", &v) && gguf_arr_f64(&v, 1) == -2.0 &&
              gguf_arr_i64(&v, 0) == 0,
          "a.f64");
    CHECK(gguf_get_arr(f, "a.bool", &v) && gguf_arr_i64(&v, 0) == 1 &&
              gguf_arr_f64(&v, 1) == 0.0,
          "a.bool");
    CHECK(gguf_get_arr(f, "a.str", &v) && v.arr_n == 4 && v.str_index_ != NULL, "a.str");
    CHECK(gguf_str_eq(gguf_arr_str(&v, 3), "last") && gguf_arr_str(&v, 1).len == 0 &&
              gguf_arr_str(&v, 2).len == 3 && !memcmp(gguf_arr_str(&v, 2).ptr, "n\0l", 3),
          "a.str elems");
    CHECK(gguf_arr_f64(&v, 0) == 0 && gguf_arr_i64(&v, 0) == 0, "str elems as numbers");
    CHECK(gguf_get_arr(f, "a.nest", &v) && v.arr_type == GGUF_ARRAY && v.arr_n == 3 &&
              v.str_index_ == NULL,
          "a.nest");
    CHECK(gguf_arr_str(&v, 0).ptr == NULL && gguf_arr_i64(&v, 0) == 0, "nested elems");
    CHECK(gguf_str_eq((gguf_str){"ab", 2}, "ab") && !gguf_str_eq((gguf_str){"ab", 2}, "a") &&
              !gguf_str_eq((gguf_str){"ab", 2}, "abc") &&
              gguf_str_eq((gguf_str){NULL, 0}, "") && !gguf_str_eq((gguf_str){"ab", 2}, NULL),
          "str_eq");

    /* formatting */
    struct {
        const char *key;
        int max;
        const char *want;
    } cases[] = {
        {"u8", 4, "200"},
        {"i8", 4, "-5"},
        {"i16", 4, "-300"},
        {"u32", 4, "4000000000"},
        {"u64", 4, "9223372036854775809"},
        {"i64", 4, "-1099511627776"},
        {"f32", 4, "0.25"},
        {"f64", 4, "-1.5e+300"},
        {"bool", 4, "false"},
        {"str", 4, "\"a\\\"b\\\\c\\nd\\t\\x01\""},
        {"long", 4,
         "\"0123456789012345678901234567890123456789012345678901234\xc3\xa9\xc3\xa9\"... "
         "(64 bytes)"},
        {"empty", 4, "\"\""},
        {"a.u8", 4, "[]"},
        {"a.i16", 4, "[1, -2, 3]"},
        {"a.i16", 3, "[1, -2, 3]"},
        {"a.i16", 2, "[1, -2, ... (3 items)]"},
        {"a.i16", 0, "[... (3 items)]"},
        {"a.u64", 4, "[7, 18446744073709551615]"},
        {"a.f64", 4, "[0.5, -2]"},
        {"a.bool", 4, "[true, false]"},
        {"a.str", 4, "[\"x\", \"\", \"n\\x00l\", \"last\"]"},
        {"a.nest", 4, "[[\"p\", \"q\"], [[9, 8]], []]"},
        {"a.nest", 1, "[[\"p\", ... (2 items)], ... (3 items)]"},
        {"a.i32", 5, "[0, 10, 20, 30, 40, ... (10 items)]"},
    };
    char buf[256];
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        const gguf_kv *kv = gguf_find_kv(f, cases[k].key);
        CHECK(kv != NULL, "no %s", cases[k].key);
        if (!kv) continue;
        gguf_value_format(&kv->value, buf, sizeof buf, cases[k].max);
        CHECK(!strcmp(buf, cases[k].want), "format %s/%d: got '%s' want '%s'", cases[k].key,
              cases[k].max, buf, cases[k].want);
    }
    /* small buffers: truncated, always terminated */
    const gguf_kv *kv = gguf_find_kv(f, "a.i32");
    memset(buf, 'Z', sizeof buf);
    gguf_value_format(&kv->value, buf, 8, 5);
    CHECK(!strcmp(buf, "[0, 10,"), "small buffer: '%s'", buf);
    buf[0] = 'Z';
    gguf_value_format(&kv->value, buf, 1, 5);
    CHECK(buf[0] == 0, "size 1");
    buf[0] = 'Z';
    gguf_value_format(&kv->value, buf, 0, 5);
    CHECK(buf[0] == 'Z', "size 0 writes nothing");

    CHECK(!strcmp(gguf_vtype_name(GGUF_STRING), "string") &&
              !strcmp(gguf_vtype_name(GGUF_F64), "f64") &&
              !strcmp(gguf_vtype_name(13), "unknown"),
          "vtype names");
    gguf_free(f);
    gguf_free(NULL);
    free(w.p);
}

/* ------------------------------------------------------------------ mapfile */

static void test_mapfile(void) {
    chord_mapping m = {0};
    chord_error e;
    chord_unmap(&m); /* zeroed: no-op */
    chord_unmap(NULL);

    CHECK(chord_map_file("/nonexistent/x.gguf", &m, &e) == CHORD_E_IO, "missing file");
    CHECK(strstr(e.message, "/nonexistent/x.gguf") && strstr(e.message, "No such file"),
          "missing: '%s'", e.message);
    CHECK(m.data == NULL, "missing: data");

    CHECK(chord_map_file("/tmp", &m, &e) == CHORD_E_IO, "directory");
    CHECK(strstr(e.message, "/tmp") && strstr(e.message, "directory"), "dir: '%s'", e.message);

    char path[] = "/tmp/chord_test_gguf_XXXXXX";
    int fd = mkstemp(path);
    CHECK(fd >= 0, "mkstemp");
    if (fd >= 0) {
        CHECK(chord_map_file(path, &m, &e) == CHORD_E_FORMAT, "empty file");
        CHECK(strstr(e.message, "file is empty") && strstr(e.message, path), "empty: '%s'",
              e.message);
        CHECK(write(fd, "GGUF\x03\0\0\0", 8) == 8, "write");
        CHECK(chord_map_file(path, &m, &e) == CHORD_OK, "map: %s", e.message);
        CHECK(m.size == 8 && m.data && !memcmp(m.data, "GGUF", 4), "mapped bytes");
        gguf_file *f = NULL;
        CHECK(gguf_parse(m.data, m.size, &f, &e) == CHORD_E_FORMAT && e.offset == 8,
              "8-byte file: %s", e.message);
        chord_unmap(&m);
        chord_unmap(&m); /* twice: no-op */
        CHECK(m.data == NULL && m.size == 0 && m.kind_ == 0, "unmapped");
        close(fd);
        unlink(path);
    }
}

int main(void) {
    test_getters();
    test_mapfile();
    int n = for_each_gguf(test_shared("golden"), check_golden);
    if (n < 0)
        printf("skipped golden: %s not found\n", test_shared("golden"));
    else
        CHECK(n >= 14, "only %d golden files", n);
    n = for_each_gguf(test_shared("vocab"), check_vocab);
    if (n < 0)
        printf("skipped vocab: %s not found\n", test_shared("vocab"));
    else
        CHECK(n >= 3, "only %d vocab files", n);
    return test_summary("test_gguf");
}
