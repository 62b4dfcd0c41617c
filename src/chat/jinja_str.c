/* Jinja interpreter: UTF-8 strings with Python str semantics (whitespace as
 * str.isspace() sees it, code point indexing, strip/split/replace). Case mapping covers
 * ASCII, Latin-1, Latin Extended-A, Greek and Cyrillic (one-to-one mappings only). */
#include <string.h>

#include "chat/jinja_int.h"

static bool is_cont(unsigned char b) {
    return (b & 0xC0) == 0x80;
}

size_t u8_count(jstr s) {
    size_t n = 0;
    for (size_t i = 0; i < s.n; i++)
        n += !is_cont((unsigned char)s.p[i]);
    return n;
}

/* Byte length of the code point starting at p (1 for stray bytes). */
static size_t u8_len_at(const char *p, const char *end) {
    unsigned char b = (unsigned char)*p;
    size_t n = b < 0xC0 ? 1 : b < 0xE0 ? 2 : b < 0xF0 ? 3 : 4;
    if ((size_t)(end - p) < n) return 1;
    for (size_t i = 1; i < n; i++)
        if (!is_cont((unsigned char)p[i])) return 1;
    return n;
}

static size_t ws3(const unsigned char *q) {
    if (q[0] == 0xE1 && q[1] == 0x9A && q[2] == 0x80) return 3; /* U+1680 */
    if (q[0] == 0xE2 && q[1] == 0x80 &&
        (q[2] <= 0x8A || q[2] == 0xA8 || q[2] == 0xA9 || q[2] == 0xAF))
        return q[2] >= 0x80 ? 3 : 0; /* U+2000..200A, 2028, 2029, 202F */
    if (q[0] == 0xE2 && q[1] == 0x81 && q[2] == 0x9F) return 3; /* U+205F */
    if (q[0] == 0xE3 && q[1] == 0x80 && q[2] == 0x80) return 3; /* U+3000 */
    return 0;
}

size_t u8_ws_at(const char *p, const char *end) {
    const unsigned char *q = (const unsigned char *)p;
    size_t avail = (size_t)(end - p);
    if (avail == 0) return 0;
    unsigned char b = q[0];
    if (b == ' ' || (b >= 0x09 && b <= 0x0D) || (b >= 0x1C && b <= 0x1F)) return 1;
    if (avail >= 2 && b == 0xC2 && (q[1] == 0x85 || q[1] == 0xA0)) return 2;
    if (avail >= 3) return ws3(q);
    return 0;
}

size_t u8_ws_before(const char *begin, const char *p) {
    size_t avail = (size_t)(p - begin);
    if (avail >= 1 && u8_ws_at(p - 1, p) == 1) return 1;
    if (avail >= 2 && u8_ws_at(p - 2, p) == 2) return 2;
    if (avail >= 3 && ws3((const unsigned char *)p - 3)) return 3;
    return 0;
}

/* Is the code point at p (len bytes) one of chars' code points? */
static bool in_chars(const char *p, size_t len, jstr chars) {
    const char *q = chars.p, *end = chars.p + chars.n;
    while (q < end) {
        size_t l = u8_len_at(q, end);
        if (l == len && memcmp(q, p, len) == 0) return true;
        q += l;
    }
    return false;
}

/* Byte length of the code point ending at p (1 for stray bytes). */
static size_t u8_len_before(const char *begin, const char *p) {
    for (size_t n = 1; n <= 4 && (size_t)(p - begin) >= n; n++) {
        unsigned char b = (unsigned char)p[-(ptrdiff_t)n];
        if (is_cont(b)) continue;
        return u8_len_at(p - n, p) == n ? n : 1;
    }
    return 1;
}

jstr js_strip(jstr s, jstr chars, bool chars_given, bool left, bool right) {
    const char *b = s.p, *e = s.p + s.n;
    if (left)
        while (b < e) {
            size_t l;
            if (chars_given) {
                l = u8_len_at(b, e);
                if (!in_chars(b, l, chars)) break;
            } else if (!(l = u8_ws_at(b, e)))
                break;
            b += l;
        }
    if (right)
        while (e > b) {
            size_t l;
            if (chars_given) {
                l = u8_len_before(b, e);
                if (!in_chars(e - l, l, chars)) break;
            } else if (!(l = u8_ws_before(b, e)))
                break;
            e -= l;
        }
    return (jstr){b, (size_t)(e - b)};
}

bool js_equal(jstr a, jstr b) {
    return a.n == b.n && (a.n == 0 || memcmp(a.p, b.p, a.n) == 0);
}

bool js_eq_cstr(jstr a, const char *s) {
    size_t n = strlen(s);
    return a.n == n && memcmp(a.p, s, n) == 0;
}

bool js_starts(jstr s, jstr x) {
    return x.n <= s.n && memcmp(s.p, x.p, x.n) == 0;
}
bool js_ends(jstr s, jstr x) {
    return x.n <= s.n && memcmp(s.p + s.n - x.n, x.p, x.n) == 0;
}

const char *js_find(jstr hay, jstr needle) {
    if (needle.n == 0) return hay.p;
    if (needle.n > hay.n) return NULL;
    const char *p = hay.p, *last = hay.p + hay.n - needle.n;
    while (p <= last) {
        const char *q = memchr(p, needle.p[0], (size_t)(last - p) + 1);
        if (!q) return NULL;
        if (memcmp(q, needle.p, needle.n) == 0) return q;
        p = q + 1;
    }
    return NULL;
}

/* Greek letters with tonos: upper, lower. */
static const uint16_t GREEK_TONOS[][2] = {{0x386, 0x3AC}, {0x388, 0x3AD}, {0x389, 0x3AE},
                                          {0x38A, 0x3AF}, {0x38C, 0x3CC}, {0x38E, 0x3CD},
                                          {0x38F, 0x3CE}};

/* Simple case mapping for ASCII, Latin-1, Latin Extended-A, Greek and Cyrillic. */
static uint32_t cp_lower(uint32_t c) {
    for (size_t i = 0; i < sizeof GREEK_TONOS / sizeof GREEK_TONOS[0]; i++)
        if (c == GREEK_TONOS[i][0]) return GREEK_TONOS[i][1];
    if (c < 0x80) return c >= 'A' && c <= 'Z' ? c + 32 : c;
    if ((c >= 0xC0 && c <= 0xDE && c != 0xD7) || (c >= 0x391 && c <= 0x3AB && c != 0x3A2) ||
        (c >= 0x410 && c <= 0x42F))
        return c + 32;
    if (c >= 0x400 && c <= 0x40F) return c + 80;
    if (c == 0x178) return 0xFF;
    if (c >= 0x100 && c <= 0x17F && c != 0x130 && c != 0x138 && c != 0x149 && c != 0x17F) {
        bool odd_upper = (c >= 0x139 && c <= 0x148) || (c >= 0x179 && c <= 0x17E);
        if ((c & 1) == (odd_upper ? 1u : 0u)) return c + 1;
    }
    return c;
}

static uint32_t cp_upper(uint32_t c) {
    for (size_t i = 0; i < sizeof GREEK_TONOS / sizeof GREEK_TONOS[0]; i++)
        if (c == GREEK_TONOS[i][1]) return GREEK_TONOS[i][0];
    if (c < 0x80) return c >= 'a' && c <= 'z' ? c - 32 : c;
    if ((c >= 0xE0 && c <= 0xFE && c != 0xF7) || (c >= 0x3B1 && c <= 0x3CB && c != 0x3C2) ||
        (c >= 0x430 && c <= 0x44F))
        return c - 32;
    if (c == 0x3C2) return 0x3A3; /* final sigma */
    if (c >= 0x450 && c <= 0x45F) return c - 80;
    if (c == 0xFF) return 0x178;
    if (c == 0xB5) return 0x39C;
    if (c >= 0x100 && c <= 0x17F && c != 0x131 && c != 0x138 && c != 0x149 && c != 0x17F) {
        bool odd_upper = (c >= 0x139 && c <= 0x148) || (c >= 0x179 && c <= 0x17E);
        if ((c & 1) != (odd_upper ? 1u : 0u)) return c - 1;
    }
    return c;
}

static bool cp_cased(uint32_t c) {
    return cp_lower(c) != c || cp_upper(c) != c;
}

static uint32_t decode(const char *p, size_t len) {
    const unsigned char *q = (const unsigned char *)p;
    if (len == 1) return q[0];
    uint32_t c = q[0] & (0x7Fu >> len);
    for (size_t i = 1; i < len; i++)
        c = (c << 6) | (q[i] & 0x3Fu);
    return c;
}

static void encode(jctx *c, jbuf *b, uint32_t cp) {
    char u[4];
    size_t n;
    if (cp < 0x80)
        u[0] = (char)cp, n = 1;
    else if (cp < 0x800)
        u[0] = (char)(0xC0 | (cp >> 6)), u[1] = (char)(0x80 | (cp & 0x3F)), n = 2;
    else
        u[0] = (char)(0xE0 | (cp >> 12)), u[1] = (char)(0x80 | ((cp >> 6) & 0x3F)),
        u[2] = (char)(0x80 | (cp & 0x3F)), n = 3;
    jb_put(c, b, u, n);
}

jstr js_case(jctx *c, jstr s, int mode) {
    jbuf b = {0};
    const char *p = s.p, *end = s.p + s.n;
    bool prev_cased = false, first = true;
    while (p < end) {
        size_t len = u8_len_at(p, end);
        uint32_t cp = len <= 3 ? decode(p, len) : 0x10000;
        uint32_t out = cp;
        if (cp < 0x10000) {
            switch (mode) {
            case 0: out = cp_lower(cp); break;
            case 1: out = cp_upper(cp); break;
            case 2: out = first ? cp_upper(cp) : cp_lower(cp); break; /* capitalize */
            default: { /* str.title(): a cased char after an uncased one starts a word */
                bool cased = cp_cased(cp);
                out = cased ? (prev_cased ? cp_lower(cp) : cp_upper(cp)) : cp;
                prev_cased = cased;
            }
            }
        } else if (mode == 3) {
            prev_cased = false;
        }
        if (out == cp)
            jb_put(c, &b, p, len);
        else
            encode(c, &b, out);
        first = false;
        p += len;
    }
    return jb_str(&b);
}

jstr js_replace(jctx *c, jstr s, jstr old, jstr new_, int64_t count) {
    jbuf b = {0};
    if (old.n == 0) {
        /* Python: new before every code point and at the end, at most count times */
        const char *p = s.p, *end = s.p + s.n;
        int64_t done = 0;
        for (;;) {
            if (count < 0 || done < count) {
                jb_put(c, &b, new_.p, new_.n);
                done++;
            }
            if (p >= end) break;
            size_t l = u8_len_at(p, end);
            jb_put(c, &b, p, l);
            p += l;
        }
        return jb_str(&b);
    }
    jstr rest = s;
    int64_t done = 0;
    for (;;) {
        const char *q = (count < 0 || done < count) ? js_find(rest, old) : NULL;
        if (!q) break;
        jb_put(c, &b, rest.p, (size_t)(q - rest.p));
        jb_put(c, &b, new_.p, new_.n);
        size_t adv = (size_t)(q - rest.p) + old.n;
        rest.p += adv;
        rest.n -= adv;
        done++;
    }
    if (done == 0) return s;
    jb_put(c, &b, rest.p, rest.n);
    return jb_str(&b);
}

jv js_split(jctx *c, jstr s, jstr sep, bool sep_given, int64_t maxsplit) {
    jv out = jv_list_new(c, 0, false);
    size_t cap = 0;
    const char *p = s.p, *end = s.p + s.n;
    int64_t splits = 0;
    if (!sep_given) {
        for (;;) {
            size_t l;
            while (p < end && (l = u8_ws_at(p, end)))
                p += l;
            if (p >= end) break;
            if (maxsplit >= 0 && splits >= maxsplit) {
                /* the rest, with trailing whitespace removed */
                jstr rest =
                    js_strip((jstr){p, (size_t)(end - p)}, (jstr){0}, false, false, true);
                jl_push(c, &out, &cap, jv_str(rest));
                break;
            }
            const char *w = p;
            while (p < end && !u8_ws_at(p, end))
                p += u8_len_at(p, end);
            jl_push(c, &out, &cap, jv_str((jstr){w, (size_t)(p - w)}));
            splits++;
        }
        return out;
    }
    for (;;) {
        jstr rest = {p, (size_t)(end - p)};
        const char *q = (maxsplit < 0 || splits < maxsplit) ? js_find(rest, sep) : NULL;
        if (!q) {
            jl_push(c, &out, &cap, jv_str(rest));
            break;
        }
        jl_push(c, &out, &cap, jv_str((jstr){p, (size_t)(q - p)}));
        p = q + sep.n;
        splits++;
    }
    return out;
}

jv js_chars(jctx *c, jstr s) {
    jv out = jv_list_new(c, u8_count(s), false);
    const char *p = s.p, *end = s.p + s.n;
    size_t i = 0;
    while (p < end && i < out.list->n) {
        size_t l = u8_len_at(p, end);
        /* stray continuation bytes belong to the previous element (u8_count skips them) */
        while (p + l < end && is_cont((unsigned char)p[l]) && l < 4 && u8_len_at(p, end) == 1)
            l++;
        out.list->v[i++] = jv_str((jstr){p, l});
        p += l;
    }
    while (i < out.list->n)
        out.list->v[i++] = jv_str((jstr){"", 0});
    return out;
}

jv js_index(jctx *c, jstr s, int64_t i, bool *ok) {
    size_t n = u8_count(s);
    if (i < 0) i += (int64_t)n;
    if (i < 0 || (size_t)i >= n) {
        *ok = false;
        return jv_undef();
    }
    *ok = true;
    if (n == s.n) return jv_str((jstr){s.p + i, 1});
    jv chars = js_chars(c, s);
    return chars.list->v[i];
}
