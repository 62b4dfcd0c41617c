/* Encoding with special-token splitting, decoding, and UTF-8 safe streaming. */
#include <stdlib.h>
#include <string.h>

#include "error.h"
#include "tok_internal.h"

bool tok_ivec_push(tok_ivec *a, int32_t x) {
    if (a->n == a->cap) {
        size_t cap = a->cap ? a->cap * 2 : 64;
        int32_t *p = realloc(a->v, cap * sizeof *p);
        if (!p) return false;
        a->v = p;
        a->cap = cap;
    }
    a->v[a->n++] = x;
    return true;
}

/* The special token starting at text[i] (longest first), or -1. */
static int32_t match_special(const tok_vocab *v, const char *text, size_t len, size_t i,
                             bool parse_special, size_t *mlen) {
    unsigned char b = (unsigned char)text[i];
    for (uint32_t k = v->special_start[b]; k < v->special_start[b + 1]; k++) {
        int32_t id = v->special[k];
        if (!parse_special && v->types[id] != TOK_TYPE_USER_DEFINED) continue;
        size_t n;
        const char *t = tok_text_at(v, id, &n);
        if (n <= len - i && memcmp(text + i, t, n) == 0) {
            *mlen = n;
            return id;
        }
    }
    return -1;
}

static chord_status encode_raw(const tok_vocab *v, const char *text, size_t len,
                               bool prev_special, tok_ivec *out, chord_error *err) {
    if (v->model == TOK_MODEL_SPM)
        return tok_spm_encode(v, text, len, v->add_space_prefix && prev_special, out, err);
    return tok_bpe_encode(v, text, len, out, err);
}

chord_status tok_encode(const tok_vocab *v, const char *text, size_t len, bool add_bos,
                        bool parse_special, int32_t **ids, size_t *n_ids, chord_error *err) {
    if (!v || !ids || !n_ids || (!text && len))
        return chord_fail(err, CHORD_E_INVALID_ARG, "tok_encode: NULL argument");
    *ids = NULL;
    *n_ids = 0;
    if (len >= UINT32_MAX / 4)
        return chord_fail(err, CHORD_E_INVALID_ARG, "text of %zu bytes is too long to tokenize",
                          len);
    tok_ivec out = {0};
    chord_status st = CHORD_OK;
    if (add_bos && v->bos >= 0 && !tok_ivec_push(&out, v->bos)) goto nomem;
    bool prev_special = true; /* SPM: the first fragment gets the space prefix */
    size_t raw = 0;
    for (size_t i = 0; i < len;) {
        size_t mlen = 0;
        int32_t id =
            v->special_start[256] ? match_special(v, text, len, i, parse_special, &mlen) : -1;
        if (id < 0) {
            i++;
            continue;
        }
        if (raw < i) {
            if ((st = encode_raw(v, text + raw, i - raw, prev_special, &out, err))) goto fail;
        }
        if (!tok_ivec_push(&out, id)) goto nomem;
        prev_special = true;
        i += mlen;
        raw = i;
    }
    if (raw < len && (st = encode_raw(v, text + raw, len - raw, prev_special, &out, err)))
        goto fail;
    if (!out.v && !(out.v = malloc(sizeof *out.v))) goto nomem;
    *ids = out.v;
    *n_ids = out.n;
    return CHORD_OK;
nomem:
    st = chord_fail(err, CHORD_E_NOMEM, "out of memory while tokenizing");
fail:
    free(out.v);
    return st;
}

chord_status tok_decode(const tok_vocab *v, const int32_t *ids, size_t n, char **out,
                        size_t *out_len, chord_error *err) {
    if (!v || !out || !out_len || (!ids && n))
        return chord_fail(err, CHORD_E_INVALID_ARG, "tok_decode: NULL argument");
    *out = NULL;
    *out_len = 0;
    size_t total = 0;
    for (size_t i = 0; i < n; i++) {
        if (ids[i] < 0 || ids[i] >= v->n)
            return chord_fail(err, CHORD_E_INVALID_ARG,
                              "token id %d at position %zu is not in "
                              "the vocabulary (%d tokens)",
                              ids[i], i, v->n);
        total += v->piece_off[ids[i] + 1] - v->piece_off[ids[i]];
    }
    char *s = malloc(total + 1);
    if (!s) return chord_fail(err, CHORD_E_NOMEM, "out of memory while decoding");
    size_t o = 0;
    bool strip = v->model == TOK_MODEL_SPM && v->add_space_prefix;
    for (size_t i = 0; i < n; i++) {
        size_t k;
        const char *p = tok_piece_ref(v, ids[i], &k);
        if (strip && k > 0) {
            strip = false;
            if (p[0] == ' ') {
                p++;
                k--;
            }
        }
        memcpy(s + o, p, k);
        o += k;
    }
    s[o] = 0;
    *out = s;
    *out_len = o;
    return CHORD_OK;
}

/* ------------------------------------------------------------------ streaming */

static const char REPL[3] = {(char)0xEF, (char)0xBF, (char)0xBD}; /* U+FFFD */

typedef struct sink {
    char *out;
    size_t cap, n;
} sink;

static void put(sink *k, const void *p, size_t n) {
    if (k->n + n > k->cap) return; /* does not fit: dropped (documented) */
    memcpy(k->out + k->n, p, n);
    k->n += n;
}

/* Length of the sequence a lead byte starts (0: not a lead byte). */
static int seq_len(unsigned char c) {
    if (c < 0x80) return 1;
    if (c >= 0xC2 && c <= 0xDF) return 2;
    if (c >= 0xE0 && c <= 0xEF) return 3;
    if (c >= 0xF0 && c <= 0xF4) return 4;
    return 0;
}

/* Can byte c come at position pos (>= 1) of a sequence starting with lead? */
static bool cont_ok(unsigned char lead, int pos, unsigned char c) {
    unsigned lo = 0x80, hi = 0xBF;
    if (pos == 1) {
        if (lead == 0xE0) lo = 0xA0;
        if (lead == 0xED) hi = 0x9F;
        if (lead == 0xF0) lo = 0x90;
        if (lead == 0xF4) hi = 0x8F;
    }
    return c >= lo && c <= hi;
}

size_t tok_stream_push(tok_stream *s, const char *bytes, size_t n, char *out, size_t cap) {
    sink k = {out, cap, 0};
    if (s->n < 0 || s->n > 3) s->n = 0; /* not a state we produce: start over */
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)bytes[i];
        if (s->n > 0) {
            if (cont_ok(s->pend[0], s->n, c)) {
                s->pend[s->n++] = c;
                if (s->n == seq_len(s->pend[0])) {
                    put(&k, s->pend, (size_t)s->n);
                    s->n = 0;
                }
                continue;
            }
            put(&k, REPL, 3); /* the pending bytes can never complete */
            s->n = 0;
        }
        int l = seq_len(c);
        if (l == 1)
            put(&k, &c, 1);
        else if (l == 0)
            put(&k, REPL, 3);
        else
            s->pend[s->n++] = c;
    }
    return k.n;
}

size_t tok_stream_flush(tok_stream *s, char *out, size_t cap) {
    sink k = {out, cap, 0};
    if (s->n > 0) put(&k, REPL, 3);
    s->n = 0;
    return k.n;
}
