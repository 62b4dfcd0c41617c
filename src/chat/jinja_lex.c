/* Jinja interpreter: the lexer. Splits the template into text and tag tokens, applying
 * whitespace control exactly as Jinja2's lexer does with trim_blocks and lstrip_blocks:
 * - "{%-" / "{{-" / "{#-" strip all whitespace before the tag; "-%}" / "-}}" / "-#}" all
 *   whitespace after it;
 * - trim_blocks: one newline right after "%}" or "#}" is dropped ("+%}" keeps it);
 * - lstrip_blocks: spaces and tabs from the start of a line up to "{%" or "{#" are
 *   dropped ("{%+" keeps them); never before "{{".
 * The template's line endings are normalized to "\n" and one trailing newline is dropped
 * (keep_trailing_newline off), so token positions refer to the normalized text. */
#include <string.h>

#include "chat/jinja_int.h"

typedef struct lexer {
    jctx *c;
    const char *s;
    size_t n, pos;
    jtok *toks;
    size_t n_tok, cap;
    bool line_starting;
} lexer;

static void push(lexer *L, jtok t) {
    if (L->n_tok == L->cap) {
        size_t nc = L->cap ? L->cap * 2 : 256;
        jtok *q = ja_alloc(L->c, nc * sizeof *q);
        if (L->n_tok) memcpy(q, L->toks, L->n_tok * sizeof *q);
        L->toks = q;
        L->cap = nc;
    }
    L->toks[L->n_tok++] = t;
}

static void push_simple(lexer *L, jtok_type type, size_t pos) {
    push(L, (jtok){.type = type, .pos = (uint32_t)pos});
}

static size_t skip_ws(const lexer *L, size_t p) {
    size_t l;
    while (p < L->n && (l = u8_ws_at(L->s + p, L->s + L->n)))
        p += l;
    return p;
}

/* Whitespace handling of the text before a tag, then emits it. */
static void emit_text(lexer *L, size_t from, size_t to, char sign, bool lstrip_ok) {
    jstr t = {L->s + from, to - from};
    if (sign == '-') {
        t = js_strip(t, (jstr){0}, false, false, true);
    } else if (sign != '+' && lstrip_ok) {
        size_t l_pos = 0;
        for (size_t i = t.n; i > 0; i--)
            if (t.p[i - 1] == '\n') {
                l_pos = i;
                break;
            }
        if (l_pos > 0 || L->line_starting) {
            size_t p = l_pos, l;
            while (p < t.n && (l = u8_ws_at(t.p + p, t.p + t.n)))
                p += l;
            if (p == t.n && p > l_pos) t.n = l_pos;
        }
    }
    if (t.n) push(L, (jtok){.type = JT_TEXT, .pos = (uint32_t)from, .s = t});
}

/* After an end marker at p ("%}" etc., len bytes, sign '-', '+' or 0): where lexing
 * resumes, with trim_blocks applied when trim is set. */
static size_t after_end(lexer *L, size_t p, size_t len, char sign, bool trim) {
    p += len;
    if (sign == '-')
        p = skip_ws(L, p);
    else if (sign != '+' && trim && p < L->n && L->s[p] == '\n')
        p++;
    L->line_starting = p > 0 && L->s[p - 1] == '\n';
    return p;
}

static bool starts(const lexer *L, size_t p, const char *lit) {
    size_t n = strlen(lit);
    return p + n <= L->n && memcmp(L->s + p, lit, n) == 0;
}

static bool is_digit(char ch) {
    return ch >= '0' && ch <= '9';
}
static bool is_name_start(char ch) {
    return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || ch == '_';
}
static bool is_name_char(char ch) {
    return is_name_start(ch) || is_digit(ch);
}

/* "{% word %}" (with any whitespace control) at p? Sets the signs, where "%}" is, and
 * where the text after it starts. */
static bool match_word_tag(const lexer *L, size_t p, const char *word, size_t *body,
                           char *open_sign, char *close_sign, size_t *close_at) {
    if (!starts(L, p, "{%")) return false;
    size_t q = p + 2;
    *open_sign = 0;
    if (q < L->n && (L->s[q] == '-' || L->s[q] == '+')) *open_sign = L->s[q++];
    q = skip_ws(L, q);
    size_t wl = strlen(word);
    if (!starts(L, q, word) || (q + wl < L->n && is_name_char(L->s[q + wl]))) return false;
    q = skip_ws(L, q + wl);
    *close_sign = 0;
    if (q < L->n && (L->s[q] == '-' || L->s[q] == '+')) *close_sign = L->s[q++];
    if (!starts(L, q, "%}")) return false;
    *close_at = q;
    *body = q + 2;
    return true;
}

static void lex_string(lexer *L, size_t *pp) {
    jctx *c = L->c;
    size_t start = *pp, p = start + 1;
    char q = L->s[start];
    jbuf b = {0};
    for (;;) {
        if (p >= L->n) jx_fail(c, (uint32_t)start, "unterminated string literal");
        char ch = L->s[p];
        if (ch == q) break;
        if (ch != '\\') {
            size_t run = p;
            while (p < L->n && L->s[p] != q && L->s[p] != '\\')
                p++;
            jb_put(c, &b, L->s + run, p - run);
            continue;
        }
        if (p + 1 >= L->n) jx_fail(c, (uint32_t)start, "unterminated string literal");
        char e = L->s[p + 1];
        p += 2;
        switch (e) {
        case 'n': jb_putc(c, &b, '\n'); break;
        case 't': jb_putc(c, &b, '\t'); break;
        case 'r': jb_putc(c, &b, '\r'); break;
        case 'a': jb_putc(c, &b, '\a'); break;
        case 'b': jb_putc(c, &b, '\b'); break;
        case 'f': jb_putc(c, &b, '\f'); break;
        case 'v': jb_putc(c, &b, '\v'); break;
        case '\\': jb_putc(c, &b, '\\'); break;
        case '\'': jb_putc(c, &b, '\''); break;
        case '"': jb_putc(c, &b, '"'); break;
        case '\n': break; /* line continuation */
        case 'x':
        case 'u':
        case 'U': {
            int nd = e == 'x' ? 2 : e == 'u' ? 4 : 8;
            uint32_t cp = 0;
            for (int i = 0; i < nd; i++, p++) {
                char h = p < L->n ? L->s[p] : 0;
                int v = is_digit(h)              ? h - '0'
                        : (h >= 'a' && h <= 'f') ? h - 'a' + 10
                        : (h >= 'A' && h <= 'F') ? h - 'A' + 10
                                                 : -1;
                if (v < 0) jx_fail(c, (uint32_t)p, "truncated \\%c escape in string", e);
                cp = cp * 16 + (uint32_t)v;
            }
            if (cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
                jx_fail(c, (uint32_t)p, "invalid code point in string escape");
            char u[4];
            size_t ul;
            if (cp < 0x80)
                u[0] = (char)cp, ul = 1;
            else if (cp < 0x800)
                u[0] = (char)(0xC0 | (cp >> 6)), u[1] = (char)(0x80 | (cp & 0x3F)), ul = 2;
            else if (cp < 0x10000)
                u[0] = (char)(0xE0 | (cp >> 12)), u[1] = (char)(0x80 | ((cp >> 6) & 0x3F)),
                u[2] = (char)(0x80 | (cp & 0x3F)), ul = 3;
            else
                u[0] = (char)(0xF0 | (cp >> 18)), u[1] = (char)(0x80 | ((cp >> 12) & 0x3F)),
                u[2] = (char)(0x80 | ((cp >> 6) & 0x3F)), u[3] = (char)(0x80 | (cp & 0x3F)),
                ul = 4;
            jb_put(c, &b, u, ul);
            break;
        }
        default:
            if (e >= '0' && e <= '7') { /* octal, up to 3 digits */
                unsigned v = (unsigned)(e - '0');
                for (int i = 0; i < 2 && p < L->n && L->s[p] >= '0' && L->s[p] <= '7'; i++)
                    v = v * 8 + (unsigned)(L->s[p++] - '0');
                if (v > 0x7F)
                    jx_fail(c, (uint32_t)p, "octal escapes above \\177 are not supported");
                jb_putc(c, &b, (char)v);
            } else { /* unknown escape: kept as written */
                jb_putc(c, &b, '\\');
                p--;
            }
        }
    }
    *pp = p + 1;
    push(L, (jtok){.type = JT_STRING, .pos = (uint32_t)start, .s = jb_str(&b)});
}

static void lex_number(lexer *L, size_t *pp) {
    jctx *c = L->c;
    size_t start = *pp, p = start;
    const char *s = L->s;
    /* prefixed integers */
    if (s[p] == '0' && p + 1 < L->n && strchr("xXoObB", s[p + 1]) && s[p + 1]) {
        int base = (s[p + 1] == 'x' || s[p + 1] == 'X')   ? 16
                   : (s[p + 1] == 'o' || s[p + 1] == 'O') ? 8
                                                          : 2;
        p += 2;
        uint64_t v = 0;
        size_t digits = 0;
        for (; p < L->n; p++) {
            char h = s[p];
            if (h == '_') continue;
            int d = is_digit(h)              ? h - '0'
                    : (h >= 'a' && h <= 'f') ? h - 'a' + 10
                    : (h >= 'A' && h <= 'F') ? h - 'A' + 10
                                             : 99;
            if (d >= base) break;
            if (v > (UINT64_MAX >> 4) || v * (uint64_t)base + (uint64_t)d > (uint64_t)INT64_MAX)
                jx_fail(c, (uint32_t)start, "integer literal too large");
            v = v * (uint64_t)base + (uint64_t)d;
            digits++;
        }
        if (!digits) jx_fail(c, (uint32_t)start, "invalid integer literal");
        push(L, (jtok){.type = JT_INT, .pos = (uint32_t)start, .i = (int64_t)v});
        *pp = p;
        return;
    }
    while (p < L->n && (is_digit(s[p]) || (s[p] == '_' && p + 1 < L->n && is_digit(s[p + 1]))))
        p++;
    bool is_float = false;
    if (p + 1 < L->n && s[p] == '.' && is_digit(s[p + 1])) {
        is_float = true;
        p++;
        while (p < L->n &&
               (is_digit(s[p]) || (s[p] == '_' && p + 1 < L->n && is_digit(s[p + 1]))))
            p++;
    }
    if (p < L->n && (s[p] == 'e' || s[p] == 'E')) {
        size_t q = p + 1;
        if (q < L->n && (s[q] == '+' || s[q] == '-')) q++;
        if (q < L->n && is_digit(s[q])) {
            is_float = true;
            p = q;
            while (p < L->n &&
                   (is_digit(s[p]) || (s[p] == '_' && p + 1 < L->n && is_digit(s[p + 1]))))
                p++;
        }
    }
    if (is_float) {
        double f;
        if (!jx_parse_double(s + start, p - start, &f))
            jx_fail(c, (uint32_t)start, "invalid number literal");
        push(L, (jtok){.type = JT_FLOAT, .pos = (uint32_t)start, .f = f});
    } else {
        int64_t v = 0;
        for (size_t i = start; i < p; i++) {
            if (s[i] == '_') continue;
            int d = s[i] - '0';
            if (v > (INT64_MAX - d) / 10)
                jx_fail(c, (uint32_t)start,
                        "integer literal too large (chord uses 64-bit integers)");
            v = v * 10 + d;
        }
        push(L, (jtok){.type = JT_INT, .pos = (uint32_t)start, .i = v});
    }
    *pp = p;
}

static const struct {
    const char *text;
    jop op;
} OPS[] = {
    {"//", JO_FLOORDIV}, {"**", JO_POW},      {"==", JO_EQ},    {"!=", JO_NE},
    {">=", JO_GE},       {"<=", JO_LE},       {"+", JO_ADD},    {"-", JO_SUB},
    {"/", JO_DIV},       {"*", JO_MUL},       {"%", JO_MOD},    {"~", JO_TILDE},
    {"[", JO_LBRACKET},  {"]", JO_RBRACKET},  {"(", JO_LPAREN}, {")", JO_RPAREN},
    {"{", JO_LBRACE},    {"}", JO_RBRACE},    {">", JO_GT},     {"<", JO_LT},
    {"=", JO_ASSIGN},    {".", JO_DOT},       {":", JO_COLON},  {"|", JO_PIPE},
    {",", JO_COMMA},     {";", JO_SEMICOLON},
};

/* Tokens of one tag, from p (after the opener) through its end marker. */
static size_t lex_tag(lexer *L, size_t p, bool block, size_t open_pos) {
    jctx *c = L->c;
    char stack[JINJA_MAX_DEPTH];
    int depth = 0;
    for (;;) {
        p = skip_ws(L, p);
        if (p >= L->n)
            jx_fail(c, (uint32_t)open_pos, "unexpected end of template: %s tag not closed",
                    block ? "{%" : "{{");
        if (depth == 0) {
            if (block) {
                char sign = 0;
                size_t q = p;
                if (L->s[q] == '-' || L->s[q] == '+') sign = L->s[q++];
                if (starts(L, q, "%}")) {
                    push_simple(L, JT_BLOCK_END, p);
                    return after_end(L, q, 2, sign, true);
                }
            } else {
                char sign = 0;
                size_t q = p;
                if (L->s[q] == '-') sign = L->s[q++];
                if (starts(L, q, "}}")) {
                    push_simple(L, JT_VAR_END, p);
                    return after_end(L, q, 2, sign, false);
                }
            }
        }
        char ch = L->s[p];
        if (ch == '\'' || ch == '"') {
            lex_string(L, &p);
        } else if (is_digit(ch)) {
            lex_number(L, &p);
        } else if (is_name_start(ch)) {
            size_t q = p;
            while (q < L->n && is_name_char(L->s[q]))
                q++;
            push(L, (jtok){.type = JT_NAME, .pos = (uint32_t)p, .s = {L->s + p, q - p}});
            p = q;
        } else {
            size_t i;
            for (i = 0; i < sizeof OPS / sizeof OPS[0]; i++)
                if (starts(L, p, OPS[i].text)) break;
            if (i == sizeof OPS / sizeof OPS[0])
                jx_fail(c, (uint32_t)p, "unexpected character '%c' in tag", ch);
            jop op = OPS[i].op;
            if (op == JO_LPAREN || op == JO_LBRACKET || op == JO_LBRACE) {
                if (depth == JINJA_MAX_DEPTH)
                    jx_fail(c, (uint32_t)p, "brackets nested too deeply");
                stack[depth++] = op == JO_LPAREN ? ')' : op == JO_LBRACKET ? ']' : '}';
            } else if (op == JO_RPAREN || op == JO_RBRACKET || op == JO_RBRACE) {
                if (depth == 0) jx_fail(c, (uint32_t)p, "unexpected '%c'", ch);
                if (stack[depth - 1] != ch)
                    jx_fail(c, (uint32_t)p, "unexpected '%c', expected '%c'", ch,
                            stack[depth - 1]);
                depth--;
            }
            push(L, (jtok){.type = JT_OP, .op = op, .pos = (uint32_t)p});
            p += strlen(OPS[i].text);
        }
    }
}

/* Normalizes line endings and drops one trailing newline. */
static const char *normalize(jctx *c, const char *src, size_t n, size_t *out_n) {
    char *d = ja_alloc(c, n + 1);
    size_t w = 0;
    for (size_t i = 0; i < n; i++) {
        if (src[i] == '\r') {
            d[w++] = '\n';
            if (i + 1 < n && src[i + 1] == '\n') i++;
        } else {
            d[w++] = src[i];
        }
    }
    if (w > 0 && d[w - 1] == '\n') w--;
    d[w] = 0;
    *out_n = w;
    return d;
}

jtok *jx_lex(jctx *c, const char *src, size_t n, size_t *n_tok) {
    lexer L = {.c = c, .line_starting = true};
    L.s = normalize(c, src, n, &L.n);
    c->src = L.s;
    c->src_len = L.n;
    size_t p = 0;
    while (p < L.n) {
        /* next tag opener */
        size_t q = p;
        const char *hit = NULL;
        while (q + 1 < L.n) {
            hit = memchr(L.s + q, '{', L.n - q - 1);
            if (!hit) break;
            q = (size_t)(hit - L.s);
            char k = L.s[q + 1];
            if (k == '{' || k == '%' || k == '#') break;
            q++;
            hit = NULL;
        }
        if (!hit) {
            push(&L, (jtok){.type = JT_TEXT, .pos = (uint32_t)p, .s = {L.s + p, L.n - p}});
            break;
        }
        char kind = L.s[q + 1];
        char sign = 0;
        if (q + 2 < L.n && (L.s[q + 2] == '-' || L.s[q + 2] == '+')) sign = L.s[q + 2];
        size_t body, close_at;
        char osign, csign;
        if (kind == '%' && match_word_tag(&L, q, "raw", &body, &osign, &csign, &close_at)) {
            emit_text(&L, p, q, osign, true);
            /* "{% raw %}" has no trim_blocks newline; "-%}" strips what follows */
            size_t start = body;
            if (csign == '-') start = skip_ws(&L, start);
            L.line_starting = start > 0 && L.s[start - 1] == '\n';
            size_t r = start;
            size_t end_body, end_close;
            char eo, ec;
            for (;; r++) {
                if (r + 1 >= L.n) jx_fail(c, (uint32_t)q, "missing {%% endraw %%}");
                if (match_word_tag(&L, r, "endraw", &end_body, &eo, &ec, &end_close)) break;
            }
            emit_text(&L, start, r, eo, true);
            p = after_end(&L, end_close, 2, ec, true);
            continue;
        }
        emit_text(&L, p, q, sign, kind != '{');
        size_t after_open = q + 2 + (sign ? 1 : 0);
        if (kind == '#') {
            size_t e = after_open;
            const char *end = NULL;
            while (e + 1 < L.n) {
                end = memchr(L.s + e, '#', L.n - e - 1);
                if (!end) break;
                e = (size_t)(end - L.s);
                if (L.s[e + 1] == '}') break;
                e++;
                end = NULL;
            }
            if (!end) jx_fail(c, (uint32_t)q, "missing end of comment tag");
            char cs = 0;
            size_t m = e;
            if (e > after_open && (L.s[e - 1] == '-' || L.s[e - 1] == '+')) {
                cs = L.s[e - 1];
                m = e - 1;
            }
            p = after_end(&L, m, (e - m) + 2, cs, true);
            continue;
        }
        bool block = kind == '%';
        push_simple(&L, block ? JT_BLOCK_BEGIN : JT_VAR_BEGIN, q);
        p = lex_tag(&L, after_open, block, q);
    }
    push_simple(&L, JT_EOF, L.n);
    *n_tok = L.n_tok;
    return L.toks;
}
