/* Tokenizer tests: llama.cpp's vocab goldens (SPM, Phi-3 SPM, GPT-2 BPE), decoding
 * round trips, streaming, special tokens, end-of-generation ids, bad metadata. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "gguf.h"
#include "mapfile.h"
#include "testutil.h"
#include "tokenizer/tok_internal.h"
#include "tokenizer/tokenizer.h"
#include "tokenizer/unicode.h"

/* ------------------------------------------------------------------ helpers */

typedef struct loaded {
    chord_mapping map;
    gguf_file *g;
    tok_vocab *v;
} loaded;

static bool load_vocab(const char *name, loaded *l) {
    memset(l, 0, sizeof *l);
    chord_error err = {0};
    char rel[256];
    snprintf(rel, sizeof rel, "vocab/%s", name);
    if (chord_map_file(test_shared(rel), &l->map, &err) ||
        gguf_parse(l->map.data, l->map.size, &l->g, &err) || tok_load(l->g, &l->v, &err)) {
        CHECK(0, "loading %s: %s", name, err.message);
        return false;
    }
    /* The vocab keeps no pointers into the file. */
    gguf_free(l->g);
    l->g = NULL;
    chord_unmap(&l->map);
    return true;
}

static void unload(loaded *l) {
    tok_free(l->v);
    gguf_free(l->g);
    chord_unmap(&l->map);
}

static size_t encode(const tok_vocab *v, const char *s, bool bos, bool special, int32_t *out,
                     size_t cap) {
    int32_t *ids;
    size_t n;
    chord_error err = {0};
    if (tok_encode(v, s, strlen(s), bos, special, &ids, &n, &err)) {
        CHECK(0, "encode \"%s\": %s", s, err.message);
        return 0;
    }
    for (size_t i = 0; i < n && i < cap; i++)
        out[i] = ids[i];
    free(ids);
    return n;
}

static bool contains(const int32_t *ids, size_t n, int32_t id) {
    for (size_t i = 0; i < n; i++)
        if (ids[i] == id) return true;
    return false;
}

static void print_ids(const char *what, const int32_t *ids, size_t n) {
    fprintf(stderr, "  %s:", what);
    for (size_t i = 0; i < n; i++)
        fprintf(stderr, " %d", ids[i]);
    fprintf(stderr, "\n");
}

/* ------------------------------------------------------------------ goldens */

static const char SEP[] = "\n__ggml_vocab_test__\n";

static void golden(const char *name) {
    loaded l;
    if (!load_vocab(name, &l)) return;
    char rel[256];
    snprintf(rel, sizeof rel, "vocab/%s.inp", name);
    size_t inp_size, out_size;
    char *inp = test_read_file(test_shared(rel), &inp_size);
    snprintf(rel, sizeof rel, "vocab/%s.out", name);
    char *outf = test_read_file(test_shared(rel), &out_size);
    CHECK(inp && outf, "%s: cannot read .inp/.out", name);
    if (!inp || !outf) goto done;

    size_t sep = strlen(SEP), pos = 0, cases = 0, ok_enc = 0, ok_dec = 0;
    char *line = outf;
    while (pos < inp_size) {
        char *end = strstr(inp + pos, SEP);
        if (!end) break;
        size_t len = (size_t)(end - (inp + pos));
        /* Expected ids: one line of " id id ...". */
        char *nl = strchr(line, '\n');
        CHECK(nl != NULL, "%s: .out has fewer lines than cases", name);
        if (!nl) break;
        *nl = 0;
        int32_t want[4096];
        size_t nw = 0;
        for (char *p = line; *p;) {
            char *q;
            long x = strtol(p, &q, 10);
            if (q == p) break;
            if (nw < 4096) want[nw++] = (int32_t)x;
            p = q;
        }
        line = nl + 1;

        int32_t *ids = NULL;
        size_t n = 0;
        chord_error err = {0};
        chord_status st = tok_encode(l.v, inp + pos, len, false, false, &ids, &n, &err);
        CHECK(st == CHORD_OK, "%s case %zu: %s", name, cases, err.message);
        bool same = st == CHORD_OK && n == nw && memcmp(ids, want, n * sizeof *ids) == 0;
        CHECK(same, "%s case %zu \"%.*s\": ids differ", name, cases, (int)len, inp + pos);
        if (!same && st == CHORD_OK) {
            print_ids("want", want, nw);
            print_ids("got ", ids, n);
        }
        ok_enc += same;
        char *dec = NULL;
        size_t dlen = 0;
        if (st == CHORD_OK) st = tok_decode(l.v, ids, n, &dec, &dlen, &err);
        bool round = st == CHORD_OK && dlen == len && memcmp(dec, inp + pos, len) == 0;
        CHECK(round, "%s case %zu: decode gives \"%.*s\" for \"%.*s\"", name, cases, (int)dlen,
              dec ? dec : "", (int)len, inp + pos);
        ok_dec += round;
        free(dec);
        free(ids);
        cases++;
        pos = (size_t)(end - inp) + sep;
    }
    CHECK(cases > 30, "%s: only %zu cases", name, cases);
    CHECK(*line == 0, "%s: .out has more lines than cases", name);
    printf("%s: %zu cases, %zu encode exactly, %zu decode back\n", name, cases, ok_enc, ok_dec);
done:
    free(inp);
    free(outf);
    unload(&l);
}

/* ------------------------------------------------------------------ pre-tokenizers */

/* Expected pieces (joined by \x1f) from Hugging Face tokenizers (Oniguruma): Split with
 * the GPT-2 (1), Llama 3 (2) and Qwen2 (3) regexes, and Digits + GPT-2 (4, SmolLM). */
typedef struct pt_case {
    int pre;
    const char *text, *want;
} pt_case;

static const pt_case PT_CASES[] = {
    {1, "Hello world",
     "Hello\x1f"
     " world"},
    {1,
     "  Hello\x0a"
     "\x0a"
     "  world  ",
     " \x1f"
     " Hello\x1f"
     "\x0a"
     "\x0a"
     " \x1f"
     " world\x1f"
     "  "},
    {1, "I'M sure it's 12345 o'clock'S",
     "I\x1f"
     "'\x1f"
     "M\x1f"
     " sure\x1f"
     " it\x1f"
     "'s\x1f"
     " 12345\x1f"
     " o\x1f"
     "'\x1f"
     "clock\x1f"
     "'\x1f"
     "S"},
    {1, "a1b22c333d4444",
     "a\x1f"
     "1\x1f"
     "b\x1f"
     "22\x1f"
     "c\x1f"
     "333\x1f"
     "d\x1f"
     "4444"},
    {1,
     "x \x09"
     "\x0d"
     "\x0a"
     "\x0d"
     "\x0a"
     " y",
     "x\x1f"
     " \x09"
     "\x0d"
     "\x0a"
     "\x0d"
     "\x0a"
     "\x1f"
     " y"},
    {1,
     "(normal) emoji \xf0"
     "\x9f"
     "\x98"
     "\x80"
     "!!\x0a"
     "",
     "(\x1f"
     "normal\x1f"
     ")\x1f"
     " emoji\x1f"
     " \xf0"
     "\x9f"
     "\x98"
     "\x80"
     "!!\x1f"
     "\x0a"
     ""},
    {1,
     "\xc2"
     "\xbd"
     "\xd9"
     "\xa3"
     " \xe4"
     "\xbd"
     "\xa0"
     "\xe5"
     "\xa5"
     "\xbd"
     ",\xe4"
     "\xb8"
     "\x96"
     "\xe7"
     "\x95"
     "\x8c"
     "",
     "\xc2"
     "\xbd"
     "\xd9"
     "\xa3"
     "\x1f"
     " \xe4"
     "\xbd"
     "\xa0"
     "\xe5"
     "\xa5"
     "\xbd"
     "\x1f"
     ",\x1f"
     "\xe4"
     "\xb8"
     "\x96"
     "\xe7"
     "\x95"
     "\x8c"
     ""},
    {1, "foo   ",
     "foo\x1f"
     "   "},
    {1, "'ll 've 'RE 'd",
     "'ll\x1f"
     " '\x1f"
     "ve\x1f"
     " '\x1f"
     "RE\x1f"
     " '\x1f"
     "d"},
    {1,
     "int x=42;\x0a"
     "\x09"
     "return\x0a"
     "",
     "int\x1f"
     " x\x1f"
     "=\x1f"
     "42\x1f"
     ";\x1f"
     "\x0a"
     "\x1f"
     "\x09"
     "\x1f"
     "return\x1f"
     "\x0a"
     ""},
    {2, "Hello world",
     "Hello\x1f"
     " world"},
    {2,
     "  Hello\x0a"
     "\x0a"
     "  world  ",
     " \x1f"
     " Hello\x1f"
     "\x0a"
     "\x0a"
     "\x1f"
     " \x1f"
     " world\x1f"
     "  "},
    {2, "I'M sure it's 12345 o'clock'S",
     "I\x1f"
     "'M\x1f"
     " sure\x1f"
     " it\x1f"
     "'s\x1f"
     " \x1f"
     "123\x1f"
     "45\x1f"
     " o\x1f"
     "'clock\x1f"
     "'S"},
    {2, "a1b22c333d4444",
     "a\x1f"
     "1\x1f"
     "b\x1f"
     "22\x1f"
     "c\x1f"
     "333\x1f"
     "d\x1f"
     "444\x1f"
     "4"},
    {2,
     "x \x09"
     "\x0d"
     "\x0a"
     "\x0d"
     "\x0a"
     " y",
     "x\x1f"
     " \x09"
     "\x0d"
     "\x0a"
     "\x0d"
     "\x0a"
     "\x1f"
     " y"},
    {2,
     "(normal) emoji \xf0"
     "\x9f"
     "\x98"
     "\x80"
     "!!\x0a"
     "",
     "(normal\x1f"
     ")\x1f"
     " emoji\x1f"
     " \xf0"
     "\x9f"
     "\x98"
     "\x80"
     "!!\x0a"
     ""},
    {2,
     "\xc2"
     "\xbd"
     "\xd9"
     "\xa3"
     " \xe4"
     "\xbd"
     "\xa0"
     "\xe5"
     "\xa5"
     "\xbd"
     ",\xe4"
     "\xb8"
     "\x96"
     "\xe7"
     "\x95"
     "\x8c"
     "",
     "\xc2"
     "\xbd"
     "\xd9"
     "\xa3"
     "\x1f"
     " \xe4"
     "\xbd"
     "\xa0"
     "\xe5"
     "\xa5"
     "\xbd"
     "\x1f"
     ",\xe4"
     "\xb8"
     "\x96"
     "\xe7"
     "\x95"
     "\x8c"
     ""},
    {2, "foo   ",
     "foo\x1f"
     "   "},
    {2, "'ll 've 'RE 'd",
     "'ll\x1f"
     " '\x1f"
     "ve\x1f"
     " '\x1f"
     "RE\x1f"
     " '\x1f"
     "d"},
    {2,
     "int x=42;\x0a"
     "\x09"
     "return\x0a"
     "",
     "int\x1f"
     " x\x1f"
     "=\x1f"
     "42\x1f"
     ";\x0a"
     "\x1f"
     "\x09"
     "return\x1f"
     "\x0a"
     ""},
    {3, "Hello world",
     "Hello\x1f"
     " world"},
    {3,
     "  Hello\x0a"
     "\x0a"
     "  world  ",
     " \x1f"
     " Hello\x1f"
     "\x0a"
     "\x0a"
     "\x1f"
     " \x1f"
     " world\x1f"
     "  "},
    {3, "I'M sure it's 12345 o'clock'S",
     "I\x1f"
     "'M\x1f"
     " sure\x1f"
     " it\x1f"
     "'s\x1f"
     " \x1f"
     "1\x1f"
     "2\x1f"
     "3\x1f"
     "4\x1f"
     "5\x1f"
     " o\x1f"
     "'clock\x1f"
     "'S"},
    {3, "a1b22c333d4444",
     "a\x1f"
     "1\x1f"
     "b\x1f"
     "2\x1f"
     "2\x1f"
     "c\x1f"
     "3\x1f"
     "3\x1f"
     "3\x1f"
     "d\x1f"
     "4\x1f"
     "4\x1f"
     "4\x1f"
     "4"},
    {3,
     "x \x09"
     "\x0d"
     "\x0a"
     "\x0d"
     "\x0a"
     " y",
     "x\x1f"
     " \x09"
     "\x0d"
     "\x0a"
     "\x0d"
     "\x0a"
     "\x1f"
     " y"},
    {3,
     "(normal) emoji \xf0"
     "\x9f"
     "\x98"
     "\x80"
     "!!\x0a"
     "",
     "(normal\x1f"
     ")\x1f"
     " emoji\x1f"
     " \xf0"
     "\x9f"
     "\x98"
     "\x80"
     "!!\x0a"
     ""},
    {3,
     "\xc2"
     "\xbd"
     "\xd9"
     "\xa3"
     " \xe4"
     "\xbd"
     "\xa0"
     "\xe5"
     "\xa5"
     "\xbd"
     ",\xe4"
     "\xb8"
     "\x96"
     "\xe7"
     "\x95"
     "\x8c"
     "",
     "\xc2"
     "\xbd"
     "\x1f"
     "\xd9"
     "\xa3"
     "\x1f"
     " \xe4"
     "\xbd"
     "\xa0"
     "\xe5"
     "\xa5"
     "\xbd"
     "\x1f"
     ",\xe4"
     "\xb8"
     "\x96"
     "\xe7"
     "\x95"
     "\x8c"
     ""},
    {3, "foo   ",
     "foo\x1f"
     "   "},
    {3, "'ll 've 'RE 'd",
     "'ll\x1f"
     " '\x1f"
     "ve\x1f"
     " '\x1f"
     "RE\x1f"
     " '\x1f"
     "d"},
    {3,
     "int x=42;\x0a"
     "\x09"
     "return\x0a"
     "",
     "int\x1f"
     " x\x1f"
     "=\x1f"
     "4\x1f"
     "2\x1f"
     ";\x0a"
     "\x1f"
     "\x09"
     "return\x1f"
     "\x0a"
     ""},
    {4, "Hello world",
     "Hello\x1f"
     " world"},
    {4,
     "  Hello\x0a"
     "\x0a"
     "  world  ",
     " \x1f"
     " Hello\x1f"
     "\x0a"
     "\x0a"
     " \x1f"
     " world\x1f"
     "  "},
    {4, "I'M sure it's 12345 o'clock'S",
     "I\x1f"
     "'\x1f"
     "M\x1f"
     " sure\x1f"
     " it\x1f"
     "'s\x1f"
     " \x1f"
     "1\x1f"
     "2\x1f"
     "3\x1f"
     "4\x1f"
     "5\x1f"
     " o\x1f"
     "'\x1f"
     "clock\x1f"
     "'\x1f"
     "S"},
    {4, "a1b22c333d4444",
     "a\x1f"
     "1\x1f"
     "b\x1f"
     "2\x1f"
     "2\x1f"
     "c\x1f"
     "3\x1f"
     "3\x1f"
     "3\x1f"
     "d\x1f"
     "4\x1f"
     "4\x1f"
     "4\x1f"
     "4"},
    {4,
     "x \x09"
     "\x0d"
     "\x0a"
     "\x0d"
     "\x0a"
     " y",
     "x\x1f"
     " \x09"
     "\x0d"
     "\x0a"
     "\x0d"
     "\x0a"
     "\x1f"
     " y"},
    {4,
     "(normal) emoji \xf0"
     "\x9f"
     "\x98"
     "\x80"
     "!!\x0a"
     "",
     "(\x1f"
     "normal\x1f"
     ")\x1f"
     " emoji\x1f"
     " \xf0"
     "\x9f"
     "\x98"
     "\x80"
     "!!\x1f"
     "\x0a"
     ""},
    {4,
     "\xc2"
     "\xbd"
     "\xd9"
     "\xa3"
     " \xe4"
     "\xbd"
     "\xa0"
     "\xe5"
     "\xa5"
     "\xbd"
     ",\xe4"
     "\xb8"
     "\x96"
     "\xe7"
     "\x95"
     "\x8c"
     "",
     "\xc2"
     "\xbd"
     "\x1f"
     "\xd9"
     "\xa3"
     "\x1f"
     " \xe4"
     "\xbd"
     "\xa0"
     "\xe5"
     "\xa5"
     "\xbd"
     "\x1f"
     ",\x1f"
     "\xe4"
     "\xb8"
     "\x96"
     "\xe7"
     "\x95"
     "\x8c"
     ""},
    {4, "foo   ",
     "foo\x1f"
     "   "},
    {4, "'ll 've 'RE 'd",
     "'ll\x1f"
     " '\x1f"
     "ve\x1f"
     " '\x1f"
     "RE\x1f"
     " '\x1f"
     "d"},
    {4,
     "int x=42;\x0a"
     "\x09"
     "return\x0a"
     "",
     "int\x1f"
     " x\x1f"
     "=\x1f"
     "4\x1f"
     "2\x1f"
     ";\x1f"
     "\x0a"
     "\x1f"
     "\x09"
     "\x1f"
     "return\x1f"
     "\x0a"
     ""},
};

typedef struct pt_out {
    const char *text;
    char buf[512];
    size_t n;
} pt_out;

static bool pt_collect(void *user, size_t s, size_t e) {
    pt_out *o = user;
    if (o->n) o->buf[o->n++] = '\x1f';
    if (o->n + (e - s) >= sizeof o->buf) return false;
    memcpy(o->buf + o->n, o->text + s, e - s);
    o->n += e - s;
    return true;
}

static void test_pretokenizers(void) {
    CHECK(TOK_PRE_GPT2 == 1 && TOK_PRE_LLAMA3 == 2 && TOK_PRE_QWEN2 == 3 &&
              TOK_PRE_DIGITS_GPT2 == 4,
          "enum values used by the table");
    for (size_t c = 0; c < sizeof PT_CASES / sizeof PT_CASES[0]; c++) {
        const pt_case *t = &PT_CASES[c];
        size_t len = strlen(t->text), n = 0;
        uint32_t cp[128], off[129];
        uint8_t fl[128];
        for (size_t i = 0; i < len && n < 128;) {
            size_t k = uni_utf8_decode((const unsigned char *)t->text + i, len - i, &cp[n]);
            fl[n] = uni_flags(cp[n]);
            off[n++] = (uint32_t)i;
            i += k;
        }
        off[n] = (uint32_t)len;
        pt_out o = {.text = t->text};
        tok_pretokenize_cps((tok_pre)t->pre, cp, fl, off, n, pt_collect, &o);
        o.buf[o.n] = 0;
        CHECK(strcmp(o.buf, t->want) == 0, "pre %d \"%s\": got \"%s\"", t->pre, t->text, o.buf);
    }
}

/* ------------------------------------------------------------------ streaming */

static void test_stream_bytes(void) {
    char out[64];
    tok_stream s = {0};
    const char *emoji = "\xF0\x9F\x98\x80"; /* U+1F600 */
    size_t k = tok_stream_push(&s, "a", 1, out, sizeof out);
    CHECK(k == 1 && out[0] == 'a', "ascii passes through");
    for (int i = 0; i < 3; i++) {
        k = tok_stream_push(&s, emoji + i, 1, out, sizeof out);
        CHECK(k == 0, "partial emoji byte %d emitted %zu bytes", i, k);
    }
    k = tok_stream_push(&s, emoji + 3, 1, out, sizeof out);
    CHECK(k == 4 && memcmp(out, emoji, 4) == 0, "completed emoji: %zu bytes", k);

    /* Incomplete then ASCII: U+FFFD, then the ASCII byte. */
    k = tok_stream_push(&s, "\xF0\x9F", 2, out, sizeof out);
    CHECK(k == 0, "pending");
    k = tok_stream_push(&s, "x", 1, out, sizeof out);
    CHECK(k == 4 && memcmp(out, "\xEF\xBF\xBDx", 4) == 0, "broken sequence -> U+FFFD x");

    /* Stray continuation byte and invalid lead bytes. */
    k = tok_stream_push(&s, "\x80\xC0\xFFz", 4, out, sizeof out);
    CHECK(k == 10 && memcmp(out, "\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBDz", 10) == 0,
          "stray bytes -> 3 x U+FFFD: %zu", k);

    /* Surrogates and overlongs cannot be completed. */
    k = tok_stream_push(&s, "\xED\xA0\x80", 3, out, sizeof out);
    CHECK(k == 9, "surrogate ED A0 80 -> 3 replacements: %zu", k);

    /* Flush of a pending sequence. */
    k = tok_stream_push(&s, "\xE2\x82", 2, out, sizeof out);
    CHECK(k == 0, "pending euro");
    k = tok_stream_flush(&s, out, sizeof out);
    CHECK(k == 3 && memcmp(out, "\xEF\xBF\xBD", 3) == 0, "flush pending -> U+FFFD");
    k = tok_stream_flush(&s, out, sizeof out);
    CHECK(k == 0, "second flush empty");

    /* Multi-character chunk with a split at the end. */
    k = tok_stream_push(&s, "h\xC3\xA9llo \xE2\x82", 9, out, sizeof out);
    CHECK(k == 7 && memcmp(out, "h\xC3\xA9llo ", 7) == 0, "complete prefix only: %zu", k);
    k = tok_stream_push(&s, "\xAC!", 2, out, sizeof out);
    CHECK(k == 4 && memcmp(out, "\xE2\x82\xAC!", 4) == 0, "euro completed");

    /* A small output buffer never overflows. */
    char small[2] = {'#', '#'};
    k = tok_stream_push(&s, "abc", 3, small, 1);
    CHECK(k == 1 && small[1] == '#', "cap respected");
}

/* An emoji split over several byte tokens: nothing comes out until it is complete. */
static void test_stream_tokens(const tok_vocab *v, const char *name) {
    const char *text = "\xF0\x9F\xA6\x99"; /* U+1F999, tokenized as several tokens */
    int32_t ids[16];
    size_t n = encode(v, text, false, false, ids, 16);
    CHECK(n >= 2, "%s: emoji should take several tokens, got %zu", name, n);
    tok_stream s = {0};
    char out[64], piece[64];
    size_t total = 0;
    char all[64];
    for (size_t i = 0; i < n && i < 16; i++) {
        int pl = tok_piece(v, ids[i], piece, sizeof piece);
        CHECK(pl >= 0, "piece");
        size_t k = tok_stream_push(&s, piece, (size_t)pl, out, sizeof out);
        if (i + 1 < n) {
            /* Pieces may carry a leading space (SPM "▁"); the emoji bytes stay pending. */
            bool only_space = k == 0 || (k == 1 && out[0] == ' ');
            CHECK(only_space, "%s: token %zu emitted %zu bytes before completion", name, i, k);
        }
        memcpy(all + total, out, k);
        total += k;
    }
    total += tok_stream_flush(&s, all + total, sizeof all - total);
    const char *got = all;
    if (total && all[0] == ' ') {
        got++;
        total--;
    }
    CHECK(total == 4 && memcmp(got, text, 4) == 0, "%s: streamed emoji back (%zu bytes)", name,
          total);
}

/* ------------------------------------------------------------------ specials, eog */

static void test_llama_spm(const tok_vocab *v) {
    int32_t ids[64];
    CHECK(tok_get_model(v) == TOK_MODEL_SPM, "model");
    CHECK(tok_n_vocab(v) == 32000, "n_vocab %d", tok_n_vocab(v));
    CHECK(tok_bos(v) == 1 && tok_eos(v) == 2, "bos/eos");
    CHECK(tok_add_bos(v), "add_bos");
    CHECK(tok_is_eog(v, 2) && !tok_is_eog(v, 1) && !tok_is_eog(v, 15043), "eog");
    CHECK(tok_is_control(v, 1) && !tok_is_control(v, 15043), "control");
    CHECK(tok_find(v, "\xE2\x96\x81Hello", 8) == 15043, "find ▁Hello");
    CHECK(tok_find(v, "no-such-token-xyz", 17) == -1, "find missing");

    size_t n = encode(v, "Hello world", true, false, ids, 64);
    CHECK(n == 3 && ids[0] == 1 && ids[1] == 15043 && ids[2] == 3186, "bos + Hello world");
    n = encode(v, "", true, false, ids, 64);
    CHECK(n == 1 && ids[0] == 1, "empty text with BOS -> [BOS]");
    n = encode(v, "", false, false, ids, 64);
    CHECK(n == 0, "empty text -> []");

    /* parse_special: control tokens written in the text. */
    n = encode(v, "<s>Hello</s>", false, true, ids, 64);
    CHECK(n == 3 && ids[0] == 1 && ids[1] == 15043 && ids[2] == 2, "special <s>Hello</s>: %zu",
          n);
    n = encode(v, "<s>Hello</s>", false, false, ids, 64);
    CHECK(n > 3 && !contains(ids, n, 1) && !contains(ids, n, 2), "no special parsing");

    /* Pieces. */
    char buf[16];
    CHECK(tok_piece(v, 15043, buf, sizeof buf) == 6 && memcmp(buf, " Hello", 6) == 0, "piece");
    CHECK(tok_piece(v, 15043, buf, 3) == 6, "piece length when too small");
    CHECK(tok_piece(v, 1, buf, sizeof buf) == 0, "control piece empty");
    CHECK(tok_piece(v, 3 + 0x41, buf, sizeof buf) == 1 && buf[0] == 'A', "byte token <0x41>");
    CHECK(tok_piece(v, -1, buf, sizeof buf) == -1 && tok_piece(v, 32000, buf, 16) == -1,
          "invalid id");
    size_t len;
    const char *t = tok_text(v, 15043, &len);
    CHECK(t && len == 8 && memcmp(t, "\xE2\x96\x81Hello", 8) == 0, "raw text");

    /* Decode drops only the prefix space, also after a BOS. */
    int32_t seq[] = {1, 15043, 3186};
    char *s;
    chord_error err = {0};
    CHECK(tok_decode(v, seq, 3, &s, &len, &err) == CHORD_OK && len == 11 &&
              strcmp(s, "Hello world") == 0,
          "decode with BOS");
    free(s);
    int32_t bad[] = {15043, 99999};
    CHECK(tok_decode(v, bad, 2, &s, &len, &err) == CHORD_E_INVALID_ARG, "decode bad id");

    /* Byte fallback keeps invalid UTF-8 byte for byte. */
    const char raw[] = "a\xFF\xC3(b";
    int32_t *ids2;
    size_t n2;
    CHECK(tok_encode(v, raw, 5, false, false, &ids2, &n2, &err) == CHORD_OK, "encode raw");
    CHECK(tok_decode(v, ids2, n2, &s, &len, &err) == CHORD_OK && len == 5 &&
              memcmp(s, raw, 5) == 0,
          "invalid UTF-8 round trip");
    free(s);
    free(ids2);
}

static void test_phi3(const tok_vocab *v) {
    int32_t ids[64];
    CHECK(tok_eos(v) == 32000 && tok_is_eog(v, 32000), "phi-3 eos");
    int32_t end = tok_find(v, "<|end|>", 7);
    CHECK(end == 32007 && tok_is_eog(v, end) && tok_is_control(v, end), "<|end|> is eog");
    CHECK(!tok_is_eog(v, tok_find(v, "<|user|>", 8)), "<|user|> is not eog");
    /* </s> is user-defined in this vocab: matched even without special parsing. */
    CHECK(tok_get_type(v, 2) == TOK_TYPE_USER_DEFINED, "</s> user-defined");
    size_t n = encode(v, "a</s>b", false, false, ids, 64);
    CHECK(contains(ids, n, 2), "user-defined token always matched");
    n = encode(v, "<|user|>\nHi<|end|>", false, true, ids, 64);
    CHECK(n >= 3 && ids[0] == 32010 && ids[n - 1] == 32007, "phi-3 chat specials");
    n = encode(v, "<|user|>", false, false, ids, 64);
    CHECK(n > 1 && !contains(ids, n, 32010), "control not matched without parse_special");
    char buf[16];
    CHECK(tok_piece(v, 2, buf, sizeof buf) == 4 && memcmp(buf, "</s>", 4) == 0,
          "user-defined piece is its text");
}

static void test_gpt2(const tok_vocab *v) {
    int32_t ids[256];
    CHECK(tok_get_model(v) == TOK_MODEL_BPE, "model");
    CHECK(!tok_add_bos(v), "gpt2 add_bos default false");
    CHECK(tok_is_eog(v, 50256), "<|endoftext|> eog");
    size_t n = encode(v, "Hello<|endoftext|> world", false, true, ids, 256);
    CHECK(n == 3 && ids[0] == 15496 && ids[1] == 50256 && ids[2] == 995, "gpt2 special: %zu",
          n);
    n = encode(v, "<|endoftext|>", false, false, ids, 256);
    CHECK(n > 1 && !contains(ids, n, 50256), "gpt2 no special parsing");
    char buf[16];
    CHECK(tok_piece(v, 18435, buf, sizeof buf) == 6 && memcmp(buf, " Hello", 6) == 0,
          "gpt2 piece Ġ -> space");
    CHECK(tok_piece(v, 50256, buf, sizeof buf) == 0, "gpt2 control piece empty");
    /* Invalid UTF-8 round trip through byte-level tokens. */
    const char raw[] = "x\xFF\xE2\x82 \x80y";
    int32_t *p;
    size_t np, len;
    char *s;
    chord_error err = {0};
    CHECK(tok_encode(v, raw, 7, false, false, &p, &np, &err) == CHORD_OK, "encode raw");
    CHECK(tok_decode(v, p, np, &s, &len, &err) == CHORD_OK && len == 7 && !memcmp(s, raw, 7),
          "gpt2 invalid UTF-8 round trip");
    free(s);
    free(p);
}

/* Random bytes (mostly ASCII, some UTF-8 fragments and stray bytes) round-trip. */
static void test_random_roundtrip(const tok_vocab *v, const char *name) {
    static const char *const bits[] = {"a",
                                       "Z",
                                       "7",
                                       " ",
                                       "  ",
                                       "\n",
                                       "\t",
                                       "'s",
                                       "\xC3\xA9",
                                       "\xE4\xB8\xAD",
                                       "\xF0\x9F\x98\x80",
                                       "\xF0\x9F",
                                       "\x80",
                                       "\xFF",
                                       "<",
                                       "|",
                                       "!",
                                       ".",
                                       "\r\n",
                                       "\xC2\xA0"};
    uint64_t rng = 88172645463325252ull;
    int bad = 0;
    for (int it = 0; it < 300; it++) {
        char text[256];
        size_t len = 0;
        rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
        int parts = (int)(rng % 40);
        for (int p = 0; p < parts; p++) {
            rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
            const char *b = bits[rng % (sizeof bits / sizeof bits[0])];
            memcpy(text + len, b, strlen(b));
            len += strlen(b);
        }
        int32_t *ids;
        size_t n, dlen;
        char *dec;
        chord_error err = {0};
        if (tok_encode(v, text, len, false, false, &ids, &n, &err) != CHORD_OK) {
            bad++;
            continue;
        }
        if (tok_decode(v, ids, n, &dec, &dlen, &err) != CHORD_OK || dlen != len ||
            memcmp(dec, text, len) != 0)
            bad++;
        else
            free(dec);
        free(ids);
    }
    CHECK(bad == 0, "%s: %d of 300 random texts do not round-trip", name, bad);
}

/* ------------------------------------------------------------------ speed */

static void test_speed(const tok_vocab *v, const char *name) {
    static const char para[] =
        "The quick brown fox jumps over the lazy dog. It's 2024, and we've got 12345 "
        "reasons \xF0\x9F\x98\x80 to tokenize: caf\xC3\xA9, na\xC3\xAFve, \xE4\xBD\xA0\xE5\xA5"
        "\xBD, \xD0\xBF\xD1\x80\xD0\xB8\xD0\xB2\xD0\xB5\xD1\x82!\n\tint main(void) { return "
        "0; }    \n\n";
    size_t plen = strlen(para), n = 0;
    char *text = malloc(10240 + plen);
    while (n < 10240) {
        memcpy(text + n, para, plen);
        n += plen;
    }
    int32_t *ids;
    size_t nids;
    chord_error err = {0};
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    chord_status st = tok_encode(v, text, n, false, false, &ids, &nids, &err);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    double ms =
        1e3 * (double)(t1.tv_sec - t0.tv_sec) + 1e-6 * (double)(t1.tv_nsec - t0.tv_nsec);
    CHECK(st == CHORD_OK, "%s speed encode", name);
    printf("%s: encoded %zu bytes into %zu tokens in %.2f ms\n", name, n, nids, ms);
    CHECK(ms < 500, "%s: 10 KB took %.1f ms", name, ms);
    char *s;
    size_t len;
    if (st == CHORD_OK) {
        CHECK(tok_decode(v, ids, nids, &s, &len, &err) == CHORD_OK && len == n &&
                  !memcmp(s, text, n),
              "%s: 10 KB round trip", name);
        free(s);
        free(ids);
    }
    /* Long runs without any split point (one giant piece). */
    memset(text, 'a', 10240);
    clock_gettime(CLOCK_MONOTONIC, &t0);
    st = tok_encode(v, text, 10240, false, false, &ids, &nids, &err);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    ms = 1e3 * (double)(t1.tv_sec - t0.tv_sec) + 1e-6 * (double)(t1.tv_nsec - t0.tv_nsec);
    CHECK(st == CHORD_OK && ms < 500, "%s: 10 KB of 'a' took %.1f ms", name, ms);
    if (st == CHORD_OK) free(ids);
    free(text);
}

/* ------------------------------------------------------------------ synthetic GGUFs */

typedef struct gbuf {
    unsigned char *p;
    size_t n, cap;
    uint64_t n_kv;
} gbuf;

static void gput(gbuf *b, const void *d, size_t n) {
    if (b->n + n > b->cap) {
        b->cap = (b->n + n) * 2 + 256;
        b->p = realloc(b->p, b->cap);
    }
    memcpy(b->p + b->n, d, n);
    b->n += n;
}
static void gu32(gbuf *b, uint32_t x) {
    gput(b, &x, 4);
}
static void gu64(gbuf *b, uint64_t x) {
    gput(b, &x, 8);
}
static void gstr(gbuf *b, const char *s) {
    gu64(b, strlen(s));
    gput(b, s, strlen(s));
}
static void gkey(gbuf *b, const char *k, uint32_t type) {
    gstr(b, k);
    gu32(b, type);
    b->n_kv++;
}
static void kv_str(gbuf *b, const char *k, const char *v) {
    gkey(b, k, GGUF_STRING);
    gstr(b, v);
}
static void kv_u32(gbuf *b, const char *k, uint32_t v) {
    gkey(b, k, GGUF_U32);
    gu32(b, v);
}
static void kv_bool(gbuf *b, const char *k, bool v) {
    gkey(b, k, GGUF_BOOL);
    unsigned char c = v;
    gput(b, &c, 1);
}
static void kv_strs(gbuf *b, const char *k, const char *const *v, size_t n) {
    gkey(b, k, GGUF_ARRAY);
    gu32(b, GGUF_STRING);
    gu64(b, n);
    for (size_t i = 0; i < n; i++)
        gstr(b, v[i]);
}
static void kv_f32s(gbuf *b, const char *k, const float *v, size_t n) {
    gkey(b, k, GGUF_ARRAY);
    gu32(b, GGUF_F32);
    gu64(b, n);
    gput(b, v, n * 4);
}
static void kv_i32s(gbuf *b, const char *k, const int32_t *v, size_t n) {
    gkey(b, k, GGUF_ARRAY);
    gu32(b, GGUF_I32);
    gu64(b, n);
    gput(b, v, n * 4);
}

/* Header + kvs; the kv count is patched in. */
static unsigned char *gfinish(gbuf *kvs, size_t *size) {
    gbuf b = {0};
    gput(&b, "GGUF", 4);
    gu32(&b, 3);
    gu64(&b, 0);
    gu64(&b, kvs->n_kv);
    gput(&b, kvs->p, kvs->n);
    /* Pad to the default alignment: the (empty) data section starts there. */
    while (b.n % 32)
        gput(&b, "", 1);
    free(kvs->p);
    *size = b.n;
    return b.p;
}

/* Loads the synthetic file; returns the tok_load status (or the parse failure). */
static chord_status try_load(gbuf *kvs, tok_vocab **out, chord_error *err) {
    size_t size;
    unsigned char *data = gfinish(kvs, &size);
    gguf_file *g = NULL;
    *out = NULL;
    chord_status st = gguf_parse(data, size, &g, err);
    CHECK(st == CHORD_OK, "synthetic gguf does not parse: %s", err->message);
    if (st == CHORD_OK) st = tok_load(g, out, err);
    gguf_free(g);
    free(data);
    return st;
}

#define U "\xE2\x96\x81" /* ▁ */

static const char *const SPM_TOKS[] = {"<unk>", "<s>",  "</s>",   U,       "a",     "b",
                                       "ab",    U "ab", "<0x41>", "<tag>", "<tag2>"};
static const float SPM_SCORES[] = {0, 0, 0, -5, -3, -3, -1, -0.5f, 0, 0, 0};
static const int32_t SPM_TYPES[] = {2, 3, 3, 1, 1, 1, 1, 1, 6, 4, 4};
#define N_SPM 11

static void spm_base(gbuf *b, const char *model) {
    kv_str(b, "tokenizer.ggml.model", model);
    kv_strs(b, "tokenizer.ggml.tokens", SPM_TOKS, N_SPM);
    kv_f32s(b, "tokenizer.ggml.scores", SPM_SCORES, N_SPM);
    kv_i32s(b, "tokenizer.ggml.token_type", SPM_TYPES, N_SPM);
}

static void expect_fail(gbuf *b, chord_status want, const char *needle, const char *what) {
    tok_vocab *v = NULL;
    chord_error err = {0};
    chord_status st = try_load(b, &v, &err);
    CHECK(st == want, "%s: status %d, want %d (%s)", what, st, want, err.message);
    CHECK(v == NULL, "%s: vocab returned on failure", what);
    CHECK(!needle || strstr(err.message, needle), "%s: message \"%s\" lacks \"%s\"", what,
          err.message, needle);
    tok_free(v);
}

/* A byte-level BPE vocab: the 256 byte characters, then extra tokens. */
static void bpe_vocab(gbuf *b, const char *pre, const char *const *extra, size_t n_extra,
                      const char *const *merges, size_t n_merges) {
    static char chars[256][4];
    const char *toks[256 + 16];
    for (unsigned i = 0; i < 256; i++) {
        size_t k = uni_utf8_encode(tok_byte_to_cp(i), chars[i]);
        chars[i][k] = 0;
        toks[i] = chars[i];
    }
    for (size_t i = 0; i < n_extra; i++)
        toks[256 + i] = extra[i];
    kv_str(b, "tokenizer.ggml.model", "gpt2");
    if (pre) kv_str(b, "tokenizer.ggml.pre", pre);
    kv_strs(b, "tokenizer.ggml.tokens", toks, 256 + n_extra);
    kv_strs(b, "tokenizer.ggml.merges", merges, n_merges);
}

static void test_synthetic_bpe(void) {
    static const char *const extra[] = {"ab", "bc", "abc", "<|eot|>", "\xC4\xA0x"};
    tok_vocab *v;
    chord_error err = {0};
    int32_t ids[16];
    size_t n;
    /* Rank order decides: "a b" first, then "ab c". */
    gbuf b = {0};
    bpe_vocab(&b, "llama-bpe", extra, 5,
              (const char *const[]){"a b", "b c", "ab c", "\xC4\xA0 x"}, 4);
    chord_status st = try_load(&b, &v, &err);
    CHECK(st == CHORD_OK, "synthetic bpe: %s", err.message);
    if (st == CHORD_OK) {
        n = encode(v, "abc", false, false, ids, 16);
        CHECK(n == 1 && ids[0] == 258, "abc merged by rank (%zu, %d)", n, ids[0]);
        n = encode(v, "abcabc", false, false, ids, 16);
        CHECK(n == 2 && ids[0] == 258 && ids[1] == 258, "abcabc");
        n = encode(v, "a x", false, false, ids, 16);
        CHECK(n == 2 && ids[0] == 'a' && ids[1] == 260, "space merge (%zu)", n);
        CHECK(!tok_add_bos(v) && tok_bos(v) == -1, "no bos");
        tok_free(v);
    }
    b = (gbuf){0};
    bpe_vocab(&b, "qwen2", extra, 5, (const char *const[]){"b c", "a b", "ab c"}, 3);
    st = try_load(&b, &v, &err);
    CHECK(st == CHORD_OK, "synthetic bpe 2: %s", err.message);
    if (st == CHORD_OK) {
        n = encode(v, "abc", false, false, ids, 16);
        CHECK(n == 2 && ids[0] == 'a' && ids[1] == 257, "b c first -> a + bc (%zu)", n);
        /* A control-less vocab with an <|eot|> text: not eog (it is a normal token). */
        CHECK(!tok_is_eog(v, 259), "normal token is not eog");
        tok_free(v);
    }
}

static void test_synthetic(void) {
    tok_vocab *v;
    chord_error err = {0};
    gbuf b = {0};

    /* A tiny valid SPM vocab. */
    spm_base(&b, "llama");
    kv_u32(&b, "tokenizer.ggml.bos_token_id", 1);
    kv_u32(&b, "tokenizer.ggml.eos_token_id", 2);
    kv_bool(&b, "tokenizer.ggml.add_bos_token", false);
    chord_status st = try_load(&b, &v, &err);
    CHECK(st == CHORD_OK, "tiny spm: %s", err.message);
    if (st == CHORD_OK) {
        int32_t ids[32];
        CHECK(!tok_add_bos(v), "add_bos false from metadata");
        size_t n = encode(v, "ab", false, false, ids, 32);
        CHECK(n == 1 && ids[0] == 7, "▁ab merged by score (%zu)", n);
        n = encode(v, "abA", false, false, ids, 32);
        CHECK(n == 2 && ids[0] == 7 && ids[1] == 8, "byte fallback <0x41>");
        n = encode(v, "Z", false, false, ids, 32);
        CHECK(n == 2 && ids[0] == 3 && ids[1] == 0, "no byte token -> unk (%zu)", n);
        n = encode(v, "a<tag2>b", false, false, ids, 32);
        CHECK(n == 5 && ids[2] == 10 && ids[3] == 3, "user-defined, longest match (%zu)", n);
        char buf[8];
        CHECK(tok_piece(v, 0, buf, 8) == 3, "unk piece is U+2585");
        tok_free(v);
    }

    b = (gbuf){0};
    spm_base(&b, "llama");
    kv_bool(&b, "tokenizer.ggml.add_space_prefix", false);
    st = try_load(&b, &v, &err);
    if (st == CHORD_OK) {
        int32_t ids[8];
        size_t n = encode(v, "ab", false, false, ids, 8);
        CHECK(n == 1 && ids[0] == 6, "no space prefix: 'ab' (%zu)", n);
        tok_free(v);
    }

    /* Bad metadata: clean errors. */
    b = (gbuf){0};
    kv_str(&b, "tokenizer.ggml.model", "llama");
    kv_f32s(&b, "tokenizer.ggml.scores", SPM_SCORES, N_SPM);
    expect_fail(&b, CHORD_E_FORMAT, "tokenizer.ggml.tokens", "missing tokens");

    b = (gbuf){0};
    kv_strs(&b, "tokenizer.ggml.tokens", SPM_TOKS, N_SPM);
    expect_fail(&b, CHORD_E_FORMAT, "tokenizer.ggml.model", "missing model");

    b = (gbuf){0};
    spm_base(&b, "bert");
    expect_fail(&b, CHORD_E_UNSUPPORTED, "bert", "unknown model");

    b = (gbuf){0};
    spm_base(&b, "gpt2");
    kv_str(&b, "tokenizer.ggml.pre", "frobnicate-9000");
    kv_strs(&b, "tokenizer.ggml.merges", (const char *const[]){"a b"}, 1);
    expect_fail(&b, CHORD_E_UNSUPPORTED, "frobnicate-9000", "unknown pre");

    b = (gbuf){0};
    spm_base(&b, "gpt2");
    expect_fail(&b, CHORD_E_FORMAT, "merges", "gpt2 without merges");

    b = (gbuf){0};
    spm_base(&b, "gpt2");
    kv_strs(&b, "tokenizer.ggml.merges", (const char *const[]){"a b", "ab"}, 2);
    expect_fail(&b, CHORD_E_FORMAT, "merges", "merge without a space");

    b = (gbuf){0};
    kv_str(&b, "tokenizer.ggml.model", "llama");
    kv_strs(&b, "tokenizer.ggml.tokens", SPM_TOKS, N_SPM);
    kv_f32s(&b, "tokenizer.ggml.scores", SPM_SCORES, N_SPM - 1);
    expect_fail(&b, CHORD_E_FORMAT, "scores", "scores length mismatch");

    b = (gbuf){0};
    kv_str(&b, "tokenizer.ggml.model", "llama");
    kv_strs(&b, "tokenizer.ggml.tokens", SPM_TOKS, N_SPM);
    expect_fail(&b, CHORD_E_FORMAT, "scores", "spm without scores");

    b = (gbuf){0};
    kv_str(&b, "tokenizer.ggml.model", "llama");
    kv_f32s(&b, "tokenizer.ggml.tokens", SPM_SCORES, N_SPM);
    expect_fail(&b, CHORD_E_FORMAT, "tokens", "tokens not strings");

    b = (gbuf){0};
    kv_str(&b, "tokenizer.ggml.model", "llama");
    kv_strs(&b, "tokenizer.ggml.tokens", SPM_TOKS, 0);
    kv_f32s(&b, "tokenizer.ggml.scores", SPM_SCORES, 0);
    expect_fail(&b, CHORD_E_FORMAT, "tokens", "empty tokens");

    b = (gbuf){0};
    spm_base(&b, "llama");
    kv_u32(&b, "tokenizer.ggml.eos_token_id", 11);
    expect_fail(&b, CHORD_E_FORMAT, "eos_token_id", "eos out of range");

    b = (gbuf){0};
    spm_base(&b, "llama");
    kv_str(&b, "tokenizer.ggml.bos_token_id", "1");
    expect_fail(&b, CHORD_E_FORMAT, "bos_token_id", "bos not an integer");

    b = (gbuf){0};
    spm_base(&b, "llama");
    kv_u32(&b, "tokenizer.ggml.add_bos_token", 1);
    expect_fail(&b, CHORD_E_FORMAT, "add_bos_token", "add_bos not a bool");

    b = (gbuf){0};
    kv_str(&b, "tokenizer.ggml.model", "llama");
    kv_strs(&b, "tokenizer.ggml.tokens", SPM_TOKS, N_SPM);
    kv_f32s(&b, "tokenizer.ggml.scores", SPM_SCORES, N_SPM);
    int32_t bad_types[N_SPM];
    memcpy(bad_types, SPM_TYPES, sizeof bad_types);
    bad_types[5] = 9;
    kv_i32s(&b, "tokenizer.ggml.token_type", bad_types, N_SPM);
    expect_fail(&b, CHORD_E_FORMAT, "token_type", "bad token type");

    /* Without token types, SPM byte tokens are still known by their spelling. */
    b = (gbuf){0};
    kv_str(&b, "tokenizer.ggml.model", "llama");
    kv_strs(&b, "tokenizer.ggml.tokens", SPM_TOKS, N_SPM);
    kv_f32s(&b, "tokenizer.ggml.scores", SPM_SCORES, N_SPM);
    st = try_load(&b, &v, &err);
    CHECK(st == CHORD_OK, "spm without types: %s", err.message);
    if (st == CHORD_OK) {
        char buf[8];
        CHECK(tok_piece(v, 8, buf, 8) == 1 && buf[0] == 'A', "untyped <0x41> decodes to A");
        tok_free(v);
    }

    /* An out-of-range padding id is ignored (seen in real files), not fatal. */
    b = (gbuf){0};
    spm_base(&b, "llama");
    kv_u32(&b, "tokenizer.ggml.padding_token_id", 500);
    st = try_load(&b, &v, &err);
    CHECK(st == CHORD_OK && tok_pad(v) == -1, "lenient padding id");
    tok_free(v);
}

/* ------------------------------------------------------------------ unicode */

static void test_unicode(void) {
    CHECK(uni_flags('a') & UNI_L, "a is L");
    CHECK(uni_flags('7') & UNI_N, "7 is N");
    CHECK(uni_flags(' ') & UNI_SPACE, "space");
    CHECK(uni_flags('\n') & UNI_SPACE, "newline");
    CHECK(uni_flags(0x3000) & UNI_SPACE, "ideographic space");
    CHECK(!(uni_flags(0x200B) & UNI_SPACE), "zero width space is not White_Space");
    CHECK(uni_flags(0x4F60) & UNI_L, "CJK is L");
    CHECK(uni_flags(0x00BD) & UNI_N, "½ is N");
    CHECK(uni_flags(0x0663) & UNI_N, "Arabic-Indic 3 is N");
    CHECK(uni_flags(0x1F600) & UNI_S, "emoji is S");
    CHECK(uni_flags(0x0301) & UNI_M, "combining acute is M");
    CHECK(uni_flags(0x10FFFF) & UNI_C, "last code point");
    CHECK(uni_flags(UNI_INVALID) == UNI_C, "invalid");
}

int main(void) {
    test_unicode();
    test_pretokenizers();
    test_stream_bytes();
    test_synthetic();
    test_synthetic_bpe();
    golden("ggml-vocab-llama-spm.gguf");
    golden("ggml-vocab-phi-3.gguf");
    golden("ggml-vocab-gpt-2.gguf");
    loaded l;
    if (load_vocab("ggml-vocab-llama-spm.gguf", &l)) {
        test_llama_spm(l.v);
        test_stream_tokens(l.v, "llama-spm");
        test_speed(l.v, "llama-spm");
        test_random_roundtrip(l.v, "llama-spm");
        unload(&l);
    }
    if (load_vocab("ggml-vocab-phi-3.gguf", &l)) {
        test_phi3(l.v);
        test_random_roundtrip(l.v, "phi-3");
        unload(&l);
    }
    if (load_vocab("ggml-vocab-gpt-2.gguf", &l)) {
        test_gpt2(l.v);
        test_stream_tokens(l.v, "gpt-2");
        test_speed(l.v, "gpt-2");
        test_random_roundtrip(l.v, "gpt-2");
        unload(&l);
    }
    return test_summary("test_tokenizer");
}
