/* Jinja interpreter: the arena, byte buffers, and values (truth, equality, ordering,
 * str/repr/json as Python writes them). */
#include <locale.h>
#include <math.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "chat/jinja_int.h"

/* ------------------------------------------------------------------ arena */

struct ja_chunk {
    ja_chunk *next;
    size_t used, cap;
    max_align_t data[];
};

#define JA_CHUNK ((size_t)64 << 10)
#define JA_ALIGN (sizeof(max_align_t))

static ja_chunk *chunk_new(jctx *c, size_t cap) {
    size_t bytes = sizeof(ja_chunk) + cap;
    if (c->arena.total + bytes > JINJA_MAX_MEMORY)
        jx_fail(c, UINT32_MAX, "template needs more than %zu MiB of memory",
                JINJA_MAX_MEMORY >> 20);
    ja_chunk *k = malloc(bytes);
    if (!k) jx_nomem(c);
    c->arena.total += bytes;
    k->used = 0;
    k->cap = cap;
    return k;
}

void *ja_alloc(jctx *c, size_t n) {
    if (n > JINJA_MAX_MEMORY)
        jx_fail(c, UINT32_MAX, "template needs more than %zu MiB of memory",
                JINJA_MAX_MEMORY >> 20);
    n = (n + JA_ALIGN - 1) & ~(JA_ALIGN - 1);
    if (n == 0) n = JA_ALIGN;
    ja_chunk *h = c->arena.head;
    if (h && h->cap - h->used >= n) {
        void *p = (char *)h->data + h->used;
        h->used += n;
        return p;
    }
    if (n > JA_CHUNK / 4 && h) {
        /* big: its own chunk, behind the head so the head's free space stays usable */
        ja_chunk *k = chunk_new(c, n);
        k->used = n;
        k->next = h->next;
        h->next = k;
        return k->data;
    }
    ja_chunk *k = chunk_new(c, n > JA_CHUNK ? n : JA_CHUNK);
    k->next = h;
    c->arena.head = k;
    k->used = n;
    return k->data;
}

/* Grows the most recent allocation in place when it is the tail of the head chunk. */
static bool ja_extend(jctx *c, void *p, size_t old_n, size_t new_n) {
    ja_chunk *h = c->arena.head;
    if (!h) return false;
    old_n = (old_n + JA_ALIGN - 1) & ~(JA_ALIGN - 1);
    new_n = (new_n + JA_ALIGN - 1) & ~(JA_ALIGN - 1);
    char *end = (char *)h->data + h->used;
    if ((char *)p + old_n != end || h->used - old_n + new_n > h->cap) return false;
    h->used = h->used - old_n + new_n;
    return true;
}

void ja_free_all(jarena *a) {
    ja_chunk *k = a->head;
    while (k) {
        ja_chunk *next = k->next;
        free(k);
        k = next;
    }
    a->head = NULL;
    a->total = 0;
}

jstr jx_strdup(jctx *c, const char *p, size_t n) {
    char *d = ja_alloc(c, n + 1);
    if (n) memcpy(d, p, n);
    d[n] = 0;
    return (jstr){d, n};
}

/* ---------------------------------------------------------------- buffers */

void jb_put(jctx *c, jbuf *b, const char *p, size_t n) {
    if (n == 0) return;
    if (b->n + n > b->cap) {
        size_t need = b->n + n;
        size_t cap = b->cap ? b->cap * 2 : 64;
        while (cap < need)
            cap *= 2;
        if (!(b->p && ja_extend(c, b->p, b->cap, cap))) {
            char *q = ja_alloc(c, cap);
            if (b->n) memcpy(q, b->p, b->n);
            b->p = q;
        }
        b->cap = cap;
    }
    memcpy(b->p + b->n, p, n);
    b->n += n;
}

void jb_puts(jctx *c, jbuf *b, const char *s) {
    jb_put(c, b, s, strlen(s));
}
void jb_putc(jctx *c, jbuf *b, char ch) {
    jb_put(c, b, &ch, 1);
}

void jb_printf(jctx *c, jbuf *b, const char *fmt, ...) {
    char tmp[256];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(tmp, sizeof tmp, fmt, ap);
    va_end(ap);
    if (n < 0) return;
    jb_put(c, b, tmp, (size_t)n < sizeof tmp ? (size_t)n : sizeof tmp - 1);
}

jstr jb_str(const jbuf *b) {
    return (jstr){b->n ? b->p : "", b->n};
}

/* ----------------------------------------------------------------- values */

jv jv_cstr(jctx *c, const char *s) {
    return jv_str(jx_strdup(c, s, strlen(s)));
}

jv jv_list_new(jctx *c, size_t n, bool tuple) {
    jlist *l = ja_alloc(c, sizeof *l);
    l->n = n;
    l->tuple = tuple;
    l->v = n ? ja_alloc(c, n * sizeof *l->v) : NULL;
    for (size_t i = 0; i < n; i++)
        l->v[i] = jv_undef();
    return (jv){.type = JV_LIST, .list = l};
}

void jl_push(jctx *c, jv *list, size_t *cap, jv item) {
    jlist *l = list->list;
    if (l->n == *cap) {
        size_t nc = *cap ? *cap * 2 : 8;
        jv *v = ja_alloc(c, nc * sizeof *v);
        if (l->n) memcpy(v, l->v, l->n * sizeof *v);
        l->v = v;
        *cap = nc;
    }
    l->v[l->n++] = item;
}

jv jv_dict_new(jctx *c) {
    jdict *d = ja_alloc(c, sizeof *d);
    memset(d, 0, sizeof *d);
    return (jv){.type = JV_DICT, .dict = d};
}

bool jv_dict_get(const jdict *d, jv key, jv *out) {
    for (size_t i = 0; i < d->n; i++)
        if (jv_equal(d->k[i], key)) {
            if (out) *out = d->v[i];
            return true;
        }
    return false;
}

void jv_dict_set(jctx *c, jdict *d, jv key, jv value) {
    for (size_t i = 0; i < d->n; i++)
        if (jv_equal(d->k[i], key)) {
            d->v[i] = value;
            return;
        }
    if (d->n == d->cap) {
        size_t nc = d->cap ? d->cap * 2 : 4;
        jv *k = ja_alloc(c, nc * sizeof *k), *v = ja_alloc(c, nc * sizeof *v);
        if (d->n) {
            memcpy(k, d->k, d->n * sizeof *k);
            memcpy(v, d->v, d->n * sizeof *v);
        }
        d->k = k;
        d->v = v;
        d->cap = nc;
    }
    d->k[d->n] = key;
    d->v[d->n] = value;
    d->n++;
}

const char *jv_type_name(jv v) {
    switch (v.type) {
    case JV_UNDEF: return "Undefined";
    case JV_NONE: return "NoneType";
    case JV_BOOL: return "bool";
    case JV_INT: return "int";
    case JV_FLOAT: return "float";
    case JV_STR: return "str";
    case JV_LIST: return v.list->tuple ? "tuple" : "list";
    case JV_DICT: return v.dict->ns ? "Namespace" : "dict";
    case JV_FUNC: return "function";
    case JV_LOOP: return "LoopContext";
    }
    return "?";
}

bool jv_truthy(jv v) {
    switch (v.type) {
    case JV_UNDEF:
    case JV_NONE: return false;
    case JV_BOOL: return v.b;
    case JV_INT: return v.i != 0;
    case JV_FLOAT: return v.f != 0.0;
    case JV_STR: return v.s.n != 0;
    case JV_LIST: return v.list->n != 0;
    case JV_DICT: return v.dict->ns || v.dict->n != 0;
    case JV_FUNC:
    case JV_LOOP: return true;
    }
    return false;
}

bool jv_is_number(jv v) {
    return v.type == JV_BOOL || v.type == JV_INT || v.type == JV_FLOAT;
}

double jv_as_double(jv v) {
    switch (v.type) {
    case JV_BOOL: return v.b ? 1.0 : 0.0;
    case JV_INT: return (double)v.i;
    case JV_FLOAT: return v.f;
    default: return 0.0;
    }
}

static bool num_equal(jv a, jv b) {
    if (a.type != JV_FLOAT && b.type != JV_FLOAT) {
        int64_t x = a.type == JV_BOOL ? a.b : a.i, y = b.type == JV_BOOL ? b.b : b.i;
        return x == y;
    }
    return jv_as_double(a) == jv_as_double(b);
}

/* Values nested deeper than JINJA_MAX_DEPTH compare unequal (no unbounded recursion). */
static bool equal_at(jv a, jv b, int depth) {
    if (jv_is_number(a) && jv_is_number(b)) return num_equal(a, b);
    if (depth > JINJA_MAX_DEPTH) return false;
    if (a.type != b.type) return false;
    switch (a.type) {
    case JV_UNDEF:
    case JV_NONE: return true;
    case JV_STR: return js_equal(a.s, b.s);
    case JV_LIST:
        if (a.list->tuple != b.list->tuple || a.list->n != b.list->n) return false;
        for (size_t i = 0; i < a.list->n; i++)
            if (!equal_at(a.list->v[i], b.list->v[i], depth + 1)) return false;
        return true;
    case JV_DICT:
        if (a.dict->ns || b.dict->ns) return a.dict == b.dict;
        if (a.dict->n != b.dict->n) return false;
        for (size_t i = 0; i < a.dict->n; i++) {
            jv other;
            if (!jv_dict_get(b.dict, a.dict->k[i], &other) ||
                !equal_at(a.dict->v[i], other, depth + 1))
                return false;
        }
        return true;
    case JV_FUNC: return a.fn == b.fn;
    case JV_LOOP: return a.loop == b.loop;
    default: return false;
    }
}

bool jv_equal(jv a, jv b) {
    return equal_at(a, b, 0);
}

int jv_compare(jctx *c, uint32_t pos, jv a, jv b) {
    if (jv_is_number(a) && jv_is_number(b)) {
        if (a.type != JV_FLOAT && b.type != JV_FLOAT) {
            int64_t x = a.type == JV_BOOL ? a.b : a.i, y = b.type == JV_BOOL ? b.b : b.i;
            return (x > y) - (x < y);
        }
        double x = jv_as_double(a), y = jv_as_double(b);
        return (x > y) - (x < y); /* NaN compares equal here; Python says False both ways */
    }
    if (a.type == JV_STR && b.type == JV_STR) {
        size_t n = a.s.n < b.s.n ? a.s.n : b.s.n;
        int r = n ? memcmp(a.s.p, b.s.p, n) : 0;
        if (r) return r < 0 ? -1 : 1;
        return (a.s.n > b.s.n) - (a.s.n < b.s.n);
    }
    if (a.type == JV_LIST && b.type == JV_LIST && a.list->tuple == b.list->tuple) {
        size_t n = a.list->n < b.list->n ? a.list->n : b.list->n;
        for (size_t i = 0; i < n; i++) {
            if (jv_equal(a.list->v[i], b.list->v[i])) continue;
            if (++c->depth > JINJA_MAX_DEPTH) jx_fail(c, pos, "value nested too deeply");
            int r = jv_compare(c, pos, a.list->v[i], b.list->v[i]);
            c->depth--;
            return r;
        }
        return (a.list->n > b.list->n) - (a.list->n < b.list->n);
    }
    jx_fail(c, pos, "cannot compare '%s' with '%s'", jv_type_name(a), jv_type_name(b));
}

/* ----------------------------------------------------------------- floats */

bool jx_parse_double(const char *s, size_t n, double *out) {
    char tmp[128];
    if (n == 0 || n >= sizeof tmp) return false;
    const char *dp = localeconv()->decimal_point;
    size_t w = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] == '_') continue;
        if (s[i] == '.' && dp && dp[0] && dp[0] != '.' && !dp[1]) {
            tmp[w++] = dp[0];
            continue;
        }
        tmp[w++] = s[i];
    }
    tmp[w] = 0;
    char *end;
    *out = strtod(tmp, &end);
    return w > 0 && *end == 0;
}

void jx_float_repr(double d, char buf[32]) {
    if (isnan(d)) {
        strcpy(buf, "nan");
        return;
    }
    if (isinf(d)) {
        strcpy(buf, d < 0 ? "-inf" : "inf");
        return;
    }
    if (d == 0.0) {
        strcpy(buf, signbit(d) ? "-0.0" : "0.0");
        return;
    }
    char tmp[48];
    for (int prec = 1; prec <= 17; prec++) {
        snprintf(tmp, sizeof tmp, "%.*e", prec - 1, d);
        double back;
        if (jx_parse_double(tmp, strlen(tmp), &back) && back == d) break;
    }
    /* tmp: [-]d[<point>ddd]e[+-]xx (any decimal point the locale uses) */
    char digits[24];
    int nd = 0, exp10 = 0;
    bool neg = tmp[0] == '-';
    const char *p = tmp + neg;
    for (; *p && *p != 'e'; p++)
        if (*p >= '0' && *p <= '9' && nd < 20) digits[nd++] = *p;
    if (*p == 'e') exp10 = atoi(p + 1);
    while (nd > 1 && digits[nd - 1] == '0')
        nd--;
    char *o = buf;
    if (neg) *o++ = '-';
    if (exp10 >= -4 && exp10 < 16) {
        int decpt = exp10 + 1;
        if (decpt <= 0) {
            *o++ = '0';
            *o++ = '.';
            for (int i = 0; i < -decpt; i++)
                *o++ = '0';
            for (int i = 0; i < nd; i++)
                *o++ = digits[i];
        } else if (decpt >= nd) {
            for (int i = 0; i < nd; i++)
                *o++ = digits[i];
            for (int i = nd; i < decpt; i++)
                *o++ = '0';
            *o++ = '.';
            *o++ = '0';
        } else {
            for (int i = 0; i < decpt; i++)
                *o++ = digits[i];
            *o++ = '.';
            for (int i = decpt; i < nd; i++)
                *o++ = digits[i];
        }
        *o = 0;
    } else {
        *o++ = digits[0];
        if (nd > 1) {
            *o++ = '.';
            for (int i = 1; i < nd; i++)
                *o++ = digits[i];
        }
        int e = exp10 < 0 ? -exp10 : exp10; /* at most 324 */
        *o++ = 'e';
        *o++ = exp10 < 0 ? '-' : '+';
        if (e >= 100) *o++ = (char)('0' + e / 100 % 10);
        *o++ = (char)('0' + e / 10 % 10);
        *o++ = (char)('0' + e % 10);
        *o = 0;
    }
}

/* ------------------------------------------------------------ str / repr */

static uint32_t u8_decode(const unsigned char *p, const unsigned char *end, size_t *len) {
    unsigned char b = p[0];
    int n = b < 0x80 ? 1 : b >= 0xF0 ? 4 : b >= 0xE0 ? 3 : b >= 0xC0 ? 2 : 1;
    if (p + n > end) n = 1;
    uint32_t cp = n == 1 ? b : n == 2 ? (b & 0x1Fu) : n == 3 ? (b & 0x0Fu) : (b & 0x07u);
    for (int i = 1; i < n; i++) {
        if ((p[i] & 0xC0) != 0x80) {
            *len = 1;
            return b;
        }
        cp = (cp << 6) | (p[i] & 0x3Fu);
    }
    *len = (size_t)n;
    return cp;
}

/* Code points Python's repr() escapes (str.isprintable() false), roughly. */
static bool cp_unprintable(uint32_t cp) {
    if (cp < 0x20 || cp == 0x7F || (cp >= 0x80 && cp <= 0xA0) || cp == 0xAD) return true;
    if (cp == 0x1680 || (cp >= 0x2000 && cp <= 0x200F) || (cp >= 0x2028 && cp <= 0x202F))
        return true;
    if ((cp >= 0x205F && cp <= 0x206F) || cp == 0x3000 || cp == 0xFEFF) return true;
    if (cp >= 0xD800 && cp <= 0xDFFF) return true;
    return false;
}

static void write_str_repr(jctx *c, jbuf *b, jstr s) {
    bool has_sq = memchr(s.p, '\'', s.n) != NULL, has_dq = memchr(s.p, '"', s.n) != NULL;
    char q = has_sq && !has_dq ? '"' : '\'';
    jb_putc(c, b, q);
    const unsigned char *p = (const unsigned char *)s.p, *end = p + s.n;
    while (p < end) {
        size_t len;
        uint32_t cp = u8_decode(p, end, &len);
        if (cp == '\\')
            jb_put(c, b, "\\\\", 2);
        else if (cp == (uint32_t)q) {
            jb_putc(c, b, '\\');
            jb_putc(c, b, q);
        } else if (cp == '\n')
            jb_put(c, b, "\\n", 2);
        else if (cp == '\r')
            jb_put(c, b, "\\r", 2);
        else if (cp == '\t')
            jb_put(c, b, "\\t", 2);
        else if (cp_unprintable(cp)) {
            if (cp < 0x100)
                jb_printf(c, b, "\\x%02x", (unsigned)cp);
            else
                jb_printf(c, b, "\\u%04x", (unsigned)cp);
        } else
            jb_put(c, b, (const char *)p, len);
        p += len;
    }
    jb_putc(c, b, q);
}

static void write_func(jctx *c, jbuf *b, jv v) {
    if (v.fn->kind == JF_MACRO) {
        jb_puts(c, b, "<Macro '");
        jb_put(c, b, v.fn->macro->name.p, v.fn->macro->name.n);
        jb_puts(c, b, "'>");
    } else {
        jb_puts(c, b, "<built-in function>");
    }
}

void jv_write_repr(jctx *c, jbuf *b, jv v) {
    if (v.type == JV_LIST || v.type == JV_DICT) {
        if (++c->depth > JINJA_MAX_DEPTH)
            jx_fail(c, UINT32_MAX, "value nested too deeply to print");
    }
    switch (v.type) {
    case JV_STR: write_str_repr(c, b, v.s); return;
    case JV_UNDEF: return;
    case JV_LIST:
        jb_putc(c, b, v.list->tuple ? '(' : '[');
        for (size_t i = 0; i < v.list->n; i++) {
            if (i) jb_put(c, b, ", ", 2);
            jv_write_repr(c, b, v.list->v[i]);
        }
        if (v.list->tuple && v.list->n == 1) jb_putc(c, b, ',');
        jb_putc(c, b, v.list->tuple ? ')' : ']');
        c->depth--;
        return;
    case JV_DICT:
        if (v.dict->ns) {
            jb_puts(c, b, "<Namespace {");
        } else {
            jb_putc(c, b, '{');
        }
        for (size_t i = 0; i < v.dict->n; i++) {
            if (i) jb_put(c, b, ", ", 2);
            jv_write_repr(c, b, v.dict->k[i]);
            jb_put(c, b, ": ", 2);
            jv_write_repr(c, b, v.dict->v[i]);
        }
        jb_puts(c, b, v.dict->ns ? "}>" : "}");
        c->depth--;
        return;
    default: jv_write_str(c, b, v); return;
    }
}

void jv_write_str(jctx *c, jbuf *b, jv v) {
    char tmp[32];
    switch (v.type) {
    case JV_UNDEF: return;
    case JV_NONE: jb_put(c, b, "None", 4); return;
    case JV_BOOL: jb_puts(c, b, v.b ? "True" : "False"); return;
    case JV_INT: jb_printf(c, b, "%lld", (long long)v.i); return;
    case JV_FLOAT:
        jx_float_repr(v.f, tmp);
        jb_puts(c, b, tmp);
        return;
    case JV_STR: jb_put(c, b, v.s.p, v.s.n); return;
    case JV_LIST:
    case JV_DICT: jv_write_repr(c, b, v); return;
    case JV_FUNC: write_func(c, b, v); return;
    case JV_LOOP: jb_puts(c, b, "<LoopContext>"); return;
    }
}

jstr jv_to_str(jctx *c, jv v) {
    if (v.type == JV_STR) return v.s;
    jbuf b = {0};
    jv_write_str(c, &b, v);
    return jb_str(&b);
}

/* ------------------------------------------------------------------- json */

static void json_string(jctx *c, jbuf *b, jstr s) {
    jb_putc(c, b, '"');
    size_t run = 0; /* bytes copied verbatim in one go */
    for (size_t i = 0; i < s.n; i++) {
        unsigned char ch = (unsigned char)s.p[i];
        const char *esc = NULL;
        char tmp[8];
        if (ch == '"')
            esc = "\\\"";
        else if (ch == '\\')
            esc = "\\\\";
        else if (ch == '\n')
            esc = "\\n";
        else if (ch == '\r')
            esc = "\\r";
        else if (ch == '\t')
            esc = "\\t";
        else if (ch == '\b')
            esc = "\\b";
        else if (ch == '\f')
            esc = "\\f";
        else if (ch < 0x20) {
            snprintf(tmp, sizeof tmp, "\\u%04x", ch);
            esc = tmp;
        }
        if (!esc) {
            run++;
            continue;
        }
        jb_put(c, b, s.p + i - run, run);
        run = 0;
        jb_puts(c, b, esc);
    }
    jb_put(c, b, s.p + s.n - run, run);
    jb_putc(c, b, '"');
}

static void json_newline(jctx *c, jbuf *b, int indent, int level) {
    jb_putc(c, b, '\n');
    for (int i = 0; i < indent * level; i++)
        jb_putc(c, b, ' ');
}

void jv_write_json(jctx *c, uint32_t pos, jbuf *b, jv v, int indent, int level) {
    char tmp[32];
    if (level > JINJA_MAX_DEPTH) jx_fail(c, pos, "tojson: value nested too deeply");
    switch (v.type) {
    case JV_NONE: jb_puts(c, b, "null"); return;
    case JV_BOOL: jb_puts(c, b, v.b ? "true" : "false"); return;
    case JV_INT: jb_printf(c, b, "%lld", (long long)v.i); return;
    case JV_FLOAT:
        if (isnan(v.f))
            jb_puts(c, b, "NaN");
        else if (isinf(v.f))
            jb_puts(c, b, v.f < 0 ? "-Infinity" : "Infinity");
        else {
            jx_float_repr(v.f, tmp);
            jb_puts(c, b, tmp);
        }
        return;
    case JV_STR: json_string(c, b, v.s); return;
    case JV_LIST:
        if (v.list->n == 0) {
            jb_puts(c, b, "[]");
            return;
        }
        jb_putc(c, b, '[');
        for (size_t i = 0; i < v.list->n; i++) {
            if (i) jb_puts(c, b, indent >= 0 ? "," : ", ");
            if (indent >= 0) json_newline(c, b, indent, level + 1);
            jv_write_json(c, pos, b, v.list->v[i], indent, level + 1);
        }
        if (indent >= 0) json_newline(c, b, indent, level);
        jb_putc(c, b, ']');
        return;
    case JV_DICT:
        if (v.dict->ns) break;
        if (v.dict->n == 0) {
            jb_puts(c, b, "{}");
            return;
        }
        jb_putc(c, b, '{');
        for (size_t i = 0; i < v.dict->n; i++) {
            if (i) jb_puts(c, b, indent >= 0 ? "," : ", ");
            if (indent >= 0) json_newline(c, b, indent, level + 1);
            jv k = v.dict->k[i];
            if (k.type == JV_STR)
                json_string(c, b, k.s);
            else if (k.type == JV_NONE || k.type == JV_BOOL || k.type == JV_INT ||
                     k.type == JV_FLOAT) {
                jbuf kb = {0};
                jv_write_json(c, pos, &kb, k, -1, 0);
                json_string(c, b, jb_str(&kb));
            } else
                jx_fail(c, pos, "tojson: keys must be str, int, float, bool or None, not %s",
                        jv_type_name(k));
            jb_puts(c, b, ": ");
            jv_write_json(c, pos, b, v.dict->v[i], indent, level + 1);
        }
        if (indent >= 0) json_newline(c, b, indent, level);
        jb_putc(c, b, '}');
        return;
    default: break;
    }
    jx_fail(c, pos, "tojson: object of type %s is not JSON serializable", jv_type_name(v));
}
