/* Pre-tokenizers: hand-written equivalents of the split regexes, as state machines
 * over code points. Each matcher returns the end of the match starting at i (the regex
 * alternatives are tried in order; the first that matches wins, as in a backtracking
 * regex engine). Lookahead sees only [.., hi): the end of the piece is the end of the
 * string, as when Hugging Face runs the regex on each piece separately. */
#include <stdlib.h>

#include "tok_internal.h"
#include "unicode.h"

typedef struct span {
    const uint32_t *cp;
    const uint8_t *fl;
    size_t hi;
} span;

static inline bool is_crlf(uint32_t c) {
    return c == '\r' || c == '\n';
}
/* [^\s\p{L}\p{N}] */
static inline bool is_other(uint8_t f) {
    return !(f & (UNI_L | UNI_N | UNI_SPACE));
}

static size_t run_flag(const span *s, size_t i, uint8_t flag) {
    while (i < s->hi && (s->fl[i] & flag))
        i++;
    return i;
}

static size_t run_other(const span *s, size_t i) {
    while (i < s->hi && is_other(s->fl[i]))
        i++;
    return i;
}

/* Simple case folding, as far as the contractions need it (U+017F LONG S folds to s). */
static inline uint32_t fold(uint32_t c) {
    if (c >= 'A' && c <= 'Z') return c + 32;
    return c == 0x17F ? 's' : c;
}

/* 's|'t|'re|'ve|'m|'ll|'d (case-insensitive when ci): the match length, or 0. */
static size_t contraction(const span *s, size_t i, bool ci) {
    if (s->cp[i] != '\'' || i + 1 >= s->hi) return 0;
    uint32_t a = s->cp[i + 1];
    if (ci) a = fold(a);
    if (a == 's' || a == 't' || a == 'm' || a == 'd') return 2;
    if (i + 2 < s->hi) {
        uint32_t b = s->cp[i + 2];
        if (ci) b = fold(b);
        if ((a == 'r' && b == 'e') || (a == 'v' && b == 'e') || (a == 'l' && b == 'l'))
            return 3;
    }
    return 0;
}

/* \s+(?!\S)|\s+ at a white-space character i. */
static size_t trailing_space(const span *s, size_t i) {
    size_t e = run_flag(s, i, UNI_SPACE);
    if (e == s->hi) return e;     /* the run ends the string */
    if (e - i >= 2) return e - 1; /* leave the last one to prefix the next word */
    return i + 1;
}

/* 's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+ */
static size_t match_gpt2(const span *s, size_t i) {
    size_t k = contraction(s, i, false);
    if (k) return i + k;
    size_t j = (s->cp[i] == ' ' && i + 1 < s->hi) ? i + 1 : i;
    uint8_t f = s->fl[j];
    if (f & UNI_L) return run_flag(s, j, UNI_L);
    if (f & UNI_N) return run_flag(s, j, UNI_N);
    if (is_other(f)) return run_other(s, j);
    if (s->fl[i] & UNI_SPACE) return trailing_space(s, i);
    return i + 1;
}

/* (?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,max_digits}|
 *  ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+ */
static size_t match_llama3(const span *s, size_t i, size_t max_digits) {
    size_t k = contraction(s, i, true);
    if (k) return i + k;
    uint8_t f = s->fl[i];
    if (f & UNI_L) return run_flag(s, i, UNI_L);
    if (!is_crlf(s->cp[i]) && !(f & UNI_N) && i + 1 < s->hi && (s->fl[i + 1] & UNI_L))
        return run_flag(s, i + 1, UNI_L);
    if (f & UNI_N) {
        size_t e = i;
        while (e < s->hi && e - i < max_digits && (s->fl[e] & UNI_N))
            e++;
        return e;
    }
    size_t j = (s->cp[i] == ' ' && i + 1 < s->hi) ? i + 1 : i;
    if (is_other(s->fl[j])) {
        size_t e = run_other(s, j);
        while (e < s->hi && is_crlf(s->cp[e]))
            e++;
        return e;
    }
    if (f & UNI_SPACE) {
        size_t e = run_flag(s, i, UNI_SPACE);
        for (size_t p = e; p > i; p--)
            if (is_crlf(s->cp[p - 1])) return p; /* \s*[\r\n]+ up to the last CR/LF */
        return trailing_space(s, i);
    }
    return i + 1;
}

typedef struct pt_ctx {
    tok_pre pre;
    const uint32_t *cp;
    const uint8_t *fl;
    const uint32_t *off; /* byte offset of every code point, plus the end */
    tok_piece_fn fn;
    void *user;
} pt_ctx;

/* Runs the regex over code points [lo, hi). */
static bool split_regex(const pt_ctx *c, size_t lo, size_t hi) {
    span s = {c->cp, c->fl, hi};
    size_t i = lo;
    while (i < hi) {
        size_t e;
        switch (c->pre) {
        case TOK_PRE_LLAMA3: e = match_llama3(&s, i, 3); break;
        case TOK_PRE_QWEN2: e = match_llama3(&s, i, 1); break;
        default: e = match_gpt2(&s, i); break;
        }
        if (e <= i) e = i + 1;
        if (!c->fn(c->user, c->off[i], c->off[e])) return false;
        i = e;
    }
    return true;
}

bool tok_pretokenize_cps(tok_pre pre, const uint32_t *cp, const uint8_t *fl,
                         const uint32_t *off, size_t n, tok_piece_fn fn, void *user) {
    pt_ctx c = {pre, cp, fl, off, fn, user};
    if (pre != TOK_PRE_DIGITS_GPT2) return split_regex(&c, 0, n);
    /* Digits(individual_digits) first: every number character is a piece of its own;
     * the text between numbers goes through the GPT-2 regex. */
    c.pre = TOK_PRE_GPT2;
    size_t lo = 0;
    for (size_t i = 0; i < n; i++) {
        if (!(fl[i] & UNI_N)) continue;
        if (lo < i && !split_regex(&c, lo, i)) return false;
        if (!fn(user, off[i], off[i + 1])) return false;
        lo = i + 1;
    }
    return lo < n ? split_regex(&c, lo, n) : true;
}
