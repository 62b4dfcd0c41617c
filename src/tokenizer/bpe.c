/* Byte-level BPE (tokenizer.ggml.model = "gpt2"): pre-tokenize, map every byte to its
 * GPT-2 byte-level character, then merge adjacent pairs by rank (lowest first, ties to
 * the leftmost) until no listed pair is left. */
#include <stdlib.h>
#include <string.h>

#include "error.h"
#include "tok_internal.h"
#include "unicode.h"

/* GPT-2 bytes_to_unicode: printable Latin-1 bytes stand for themselves, the other 68
 * bytes get U+0100.. in byte order. */
static bool byte_is_printable(unsigned b) {
    return (b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
}

uint32_t tok_byte_to_cp(unsigned b) {
    if (byte_is_printable(b)) return b;
    uint32_t k = 0;
    for (unsigned x = 0; x < b; x++)
        if (!byte_is_printable(x)) k++;
    return 0x100 + k;
}

int tok_cp_to_byte(uint32_t cp) {
    if (cp < 0x100) return byte_is_printable(cp) ? (int)cp : -1;
    if (cp >= 0x100 + 68) return -1;
    uint32_t k = cp - 0x100;
    for (unsigned x = 0; x < 256; x++)
        if (!byte_is_printable(x) && k-- == 0) return (int)x;
    return -1;
}

static inline uint32_t pair_hash(int32_t a, int32_t b) {
    uint64_t h = ((uint64_t)(uint32_t)a << 32 | (uint32_t)b) * 0x9E3779B97F4A7C15ull;
    return (uint32_t)(h >> 32);
}

const tok_merge *tok_merge_find(const tok_vocab *v, int32_t a, int32_t b) {
    if (!v->merges) return NULL;
    for (uint32_t i = pair_hash(a, b) & v->merge_mask;; i = (i + 1) & v->merge_mask) {
        const tok_merge *m = &v->merges[i];
        if (m->left < 0) return NULL;
        if (m->left == a && m->right == b) return m;
    }
}

bool tok_merge_insert(tok_merge *tab, uint32_t mask, int32_t a, int32_t b, int32_t rank,
                      int32_t result) {
    for (uint32_t i = pair_hash(a, b) & mask;; i = (i + 1) & mask) {
        tok_merge *m = &tab[i];
        if (m->left < 0) {
            *m = (tok_merge){a, b, rank, result};
            return true;
        }
        if (m->left == a && m->right == b) return false; /* keep the first (best) rank */
    }
}

typedef struct heap_ent {
    int32_t rank;
    int32_t pos;   /* left symbol */
    int32_t left;  /* its id when pushed */
    int32_t right; /* the right neighbour's id when pushed */
} heap_ent;

typedef struct bpe_ctx {
    const tok_vocab *v;
    const char *text;
    tok_ivec *out;
    chord_error *err;
    chord_status st;
    /* scratch, grown as needed */
    size_t cap;
    int32_t *id, *prev, *next;
    heap_ent *heap;
    size_t heap_n;
    char *mapped;
} bpe_ctx;

static inline bool ent_less(const heap_ent *a, const heap_ent *b) {
    return a->rank < b->rank || (a->rank == b->rank && a->pos < b->pos);
}

static void heap_push(bpe_ctx *c, heap_ent e) {
    size_t i = c->heap_n++;
    while (i > 0) {
        size_t p = (i - 1) / 2;
        if (!ent_less(&e, &c->heap[p])) break;
        c->heap[i] = c->heap[p];
        i = p;
    }
    c->heap[i] = e;
}

static heap_ent heap_pop(bpe_ctx *c) {
    heap_ent top = c->heap[0];
    heap_ent last = c->heap[--c->heap_n];
    size_t n = c->heap_n, i = 0;
    for (;;) {
        size_t l = 2 * i + 1;
        if (l >= n) break;
        size_t m = (l + 1 < n && ent_less(&c->heap[l + 1], &c->heap[l])) ? l + 1 : l;
        if (!ent_less(&c->heap[m], &last)) break;
        c->heap[i] = c->heap[m];
        i = m;
    }
    if (n) c->heap[i] = last;
    return top;
}

static void try_pair(bpe_ctx *c, int32_t l) {
    if (l < 0) return;
    int32_t r = c->next[l];
    if (r < 0 || c->id[l] < 0 || c->id[r] < 0) return;
    const tok_merge *m = tok_merge_find(c->v, c->id[l], c->id[r]);
    if (m) heap_push(c, (heap_ent){m->rank, l, c->id[l], c->id[r]});
}

static bool grow(bpe_ctx *c, size_t n) {
    if (n <= c->cap) return true;
    size_t cap = c->cap ? c->cap : 64;
    while (cap < n)
        cap *= 2;
    int32_t *id = realloc(c->id, cap * sizeof *id);
    if (id) c->id = id;
    int32_t *prev = realloc(c->prev, cap * sizeof *prev);
    if (prev) c->prev = prev;
    int32_t *next = realloc(c->next, cap * sizeof *next);
    if (next) c->next = next;
    heap_ent *heap = realloc(c->heap, 3 * cap * sizeof *heap); /* 3 pushes per symbol */
    if (heap) c->heap = heap;
    char *mapped = realloc(c->mapped, cap * 2);
    if (mapped) c->mapped = mapped;
    if (!id || !prev || !next || !heap || !mapped) return false;
    c->cap = cap;
    return true;
}

static bool emit_unknown(bpe_ctx *c, const unsigned char *bytes, size_t n) {
    if (c->v->unk >= 0) return tok_ivec_push(c->out, c->v->unk);
    c->st = chord_fail(c->err, CHORD_E_UNSUPPORTED,
                       "cannot encode byte 0x%02X: the vocabulary has no token for it "
                       "and no unknown token",
                       n ? bytes[0] : 0);
    return false;
}

/* Encodes one pre-tokenized piece: text[start, end). */
static bool bpe_piece(void *user, size_t start, size_t end) {
    bpe_ctx *c = user;
    const tok_vocab *v = c->v;
    const unsigned char *b = (const unsigned char *)c->text + start;
    size_t n = end - start;
    if (!grow(c, n)) {
        c->st = chord_fail(c->err, CHORD_E_NOMEM, "out of memory while tokenizing");
        return false;
    }
    if (v->ignore_merges || n == 1) {
        /* A piece that is a token as a whole is taken as is. */
        size_t m = 0;
        for (size_t i = 0; i < n; i++) {
            memcpy(c->mapped + m, v->byte_char[b[i]], v->byte_char_len[b[i]]);
            m += v->byte_char_len[b[i]];
        }
        int32_t id = tok_find(v, c->mapped, m);
        if (id >= 0) {
            if (tok_ivec_push(c->out, id)) return true;
            c->st = chord_fail(c->err, CHORD_E_NOMEM, "out of memory while tokenizing");
            return false;
        }
    }
    for (size_t i = 0; i < n; i++) {
        c->id[i] = v->byte_tok[b[i]];
        c->prev[i] = (int32_t)i - 1;
        c->next[i] = i + 1 < n ? (int32_t)i + 1 : -1;
    }
    c->heap_n = 0;
    for (size_t i = 0; i + 1 < n; i++)
        try_pair(c, (int32_t)i);
    while (c->heap_n) {
        heap_ent e = heap_pop(c);
        int32_t l = e.pos, r = c->next[l];
        /* Stale entries: a side was merged away or changed since the push. */
        if (c->id[l] != e.left || r < 0 || c->id[r] != e.right) continue;
        c->id[l] = tok_merge_find(v, e.left, e.right)->result;
        c->id[r] = -2; /* dead */
        c->next[l] = c->next[r];
        if (c->next[r] >= 0) c->prev[c->next[r]] = l;
        try_pair(c, c->prev[l]);
        try_pair(c, l);
    }
    for (int32_t i = 0; i >= 0; i = c->next[i]) {
        bool ok = c->id[i] >= 0 ? tok_ivec_push(c->out, c->id[i]) : emit_unknown(c, b + i, 1);
        if (!ok) {
            if (c->st == CHORD_OK)
                c->st = chord_fail(c->err, CHORD_E_NOMEM, "out of memory while tokenizing");
            return false;
        }
    }
    return true;
}

chord_status tok_bpe_encode(const tok_vocab *v, const char *text, size_t len, tok_ivec *out,
                            chord_error *err) {
    if (len == 0) return CHORD_OK;
    uint32_t *cp = malloc(len * sizeof *cp);
    uint32_t *off = malloc((len + 1) * sizeof *off);
    uint8_t *fl = malloc(len);
    bpe_ctx c = {.v = v, .text = text, .out = out, .err = err, .st = CHORD_OK};
    if (!cp || !off || !fl) {
        c.st = chord_fail(err, CHORD_E_NOMEM, "out of memory while tokenizing");
        goto done;
    }
    size_t n = 0;
    const unsigned char *s = (const unsigned char *)text;
    for (size_t i = 0; i < len;) {
        uint32_t ch;
        size_t k = uni_utf8_decode(s + i, len - i, &ch);
        cp[n] = ch;
        fl[n] = ch < 0x80 ? v->ascii_flags[ch] : uni_flags(ch);
        off[n] = (uint32_t)i;
        n++;
        i += k;
    }
    off[n] = (uint32_t)len;
    if (!tok_pretokenize_cps(v->pre, cp, fl, off, n, bpe_piece, &c) && c.st == CHORD_OK)
        c.st = chord_fail(err, CHORD_E_NOMEM, "out of memory while tokenizing");
done:
    free(cp);
    free(off);
    free(fl);
    free(c.id);
    free(c.prev);
    free(c.next);
    free(c.heap);
    free(c.mapped);
    return c.st;
}
