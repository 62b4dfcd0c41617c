/* SentencePiece-style tokenization (tokenizer.ggml.model = "llama"), the algorithm
 * llama.cpp uses: spaces become U+2581, optionally one is prefixed; the text is split
 * into UTF-8 characters; then the adjacent pair whose concatenation is a token with the
 * highest score is merged (ties: leftmost) until no pair is a token. Symbols that are
 * not tokens fall back to <0xNN> byte tokens (or the unknown token). */
#include <stdlib.h>
#include <string.h>

#include "error.h"
#include "tok_internal.h"
#include "unicode.h"

typedef struct sym {
    uint32_t start, len;
    int32_t prev, next;
} sym;

typedef struct bigram {
    float score;
    int32_t left, right;
    uint32_t len; /* total length when pushed: a mismatch means it is stale */
} bigram;

typedef struct spm_ctx {
    const tok_vocab *v;
    const char *s;
    sym *sy;
    bigram *heap;
    size_t heap_n;
} spm_ctx;

static inline bool bg_better(const bigram *a, const bigram *b) {
    return a->score > b->score || (a->score == b->score && a->left < b->left);
}

static void heap_push(spm_ctx *c, bigram e) {
    size_t i = c->heap_n++;
    while (i > 0) {
        size_t p = (i - 1) / 2;
        if (!bg_better(&e, &c->heap[p])) break;
        c->heap[i] = c->heap[p];
        i = p;
    }
    c->heap[i] = e;
}

static bigram heap_pop(spm_ctx *c) {
    bigram top = c->heap[0];
    bigram last = c->heap[--c->heap_n];
    size_t n = c->heap_n, i = 0;
    for (;;) {
        size_t l = 2 * i + 1;
        if (l >= n) break;
        size_t m = (l + 1 < n && bg_better(&c->heap[l + 1], &c->heap[l])) ? l + 1 : l;
        if (!bg_better(&c->heap[m], &last)) break;
        c->heap[i] = c->heap[m];
        i = m;
    }
    if (n) c->heap[i] = last;
    return top;
}

static void try_bigram(spm_ctx *c, int32_t l, int32_t r) {
    if (l < 0 || r < 0) return;
    uint32_t len = c->sy[l].len + c->sy[r].len;
    int32_t id = tok_find(c->v, c->s + c->sy[l].start, len);
    if (id < 0) return;
    heap_push(c, (bigram){c->v->scores[id], l, r, len});
}

chord_status tok_spm_encode(const tok_vocab *v, const char *text, size_t len, bool add_prefix,
                            tok_ivec *out, chord_error *err) {
    static const char ws[3] = {(char)0xE2, (char)0x96, (char)0x81}; /* U+2581 */
    size_t cap = 3 * len + 3;
    char *s = malloc(cap ? cap : 1);
    sym *sy = malloc((len + 1) * sizeof *sy);
    bigram *heap = malloc(3 * (len + 1) * sizeof *heap); /* 3 pushes per symbol at most */
    chord_status st = CHORD_OK;
    if (!s || !sy || !heap) {
        st = chord_fail(err, CHORD_E_NOMEM, "out of memory while tokenizing");
        goto done;
    }
    size_t n = 0;
    if (add_prefix) {
        memcpy(s, ws, 3);
        n = 3;
    }
    for (size_t i = 0; i < len; i++) {
        if (text[i] == ' ') {
            memcpy(s + n, ws, 3);
            n += 3;
        } else {
            s[n++] = text[i];
        }
    }
    if (n == 0) goto done;

    int32_t ns = 0;
    for (size_t i = 0; i < n;) {
        uint32_t cp;
        size_t k = uni_utf8_decode((const unsigned char *)s + i, n - i, &cp);
        sy[ns] = (sym){(uint32_t)i, (uint32_t)k, ns - 1, -1};
        if (ns > 0) sy[ns - 1].next = ns;
        ns++;
        i += k;
    }
    spm_ctx c = {v, s, sy, heap, 0};
    for (int32_t i = 0; i + 1 < ns; i++)
        try_bigram(&c, i, i + 1);
    while (c.heap_n) {
        bigram b = heap_pop(&c);
        sym *l = &sy[b.left], *r = &sy[b.right];
        if (l->len == 0 || r->len == 0 || l->next != b.right || l->len + r->len != b.len)
            continue; /* stale */
        l->len += r->len;
        r->len = 0;
        l->next = r->next;
        if (r->next >= 0) sy[r->next].prev = b.left;
        try_bigram(&c, l->prev, b.left);
        try_bigram(&c, b.left, l->next);
    }
    for (int32_t i = 0; i >= 0; i = sy[i].next) {
        int32_t id = tok_find(v, s + sy[i].start, sy[i].len);
        if (id >= 0) {
            if (!tok_ivec_push(out, id)) goto nomem;
            continue;
        }
        for (uint32_t k = 0; k < sy[i].len; k++) {
            unsigned char byte = (unsigned char)s[sy[i].start + k];
            id = v->byte_tok[byte] >= 0 ? v->byte_tok[byte] : v->unk;
            if (id < 0) {
                st = chord_fail(err, CHORD_E_UNSUPPORTED,
                                "cannot encode byte 0x%02X: the vocabulary has no <0x%02X> "
                                "token and no unknown token",
                                byte, byte);
                goto done;
            }
            if (!tok_ivec_push(out, id)) goto nomem;
            if (v->byte_tok[byte] < 0) break; /* one unknown token for the whole symbol */
        }
    }
    goto done;
nomem:
    st = chord_fail(err, CHORD_E_NOMEM, "out of memory while tokenizing");
done:
    free(s);
    free(sy);
    free(heap);
    return st;
}
