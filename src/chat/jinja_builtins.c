/* Jinja interpreter: filters, tests, global functions and methods.
 *
 * Filters: abs attr capitalize count d default dictsort e escape first float format
 *   indent int items join last length list lower map max min reject rejectattr replace
 *   reverse round safe select selectattr sort string sum title tojson trim unique upper
 *   wordcount
 * Tests: boolean callable defined divisibleby eq equalto even false float ge gt
 *   greaterthan in integer iterable le lower lt lessthan mapping ne none number odd
 *   sameas sequence string true undefined upper
 * Globals: range namespace dict raise_exception strftime_now
 * Methods: str: strip lstrip rstrip startswith endswith split upper lower title
 *   capitalize replace find count join splitlines isdigit isalpha isalnum isspace islower
 *   isupper; dict: items keys values get; loop: cycle
 */
#if !defined(_WIN32) && !defined(_POSIX_C_SOURCE)
#define _POSIX_C_SOURCE 200809L /* localtime_r */
#endif
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "chat/jinja_int.h"

typedef struct jargs {
    const jv *pos;
    size_t n;
    const jstr *kn;
    const jv *kv;
    size_t nk;
} jargs;

/* Argument i (positional) or `name` (keyword). */
static bool get_arg(const jargs *a, size_t i, const char *name, jv *out) {
    if (i < a->n) {
        *out = a->pos[i];
        return true;
    }
    for (size_t k = 0; name && k < a->nk; k++)
        if (js_eq_cstr(a->kn[k], name)) {
            *out = a->kv[k];
            return true;
        }
    return false;
}

static jv arg_or(const jargs *a, size_t i, const char *name, jv dflt) {
    jv v;
    return get_arg(a, i, name, &v) ? v : dflt;
}

static jstr need_str(jctx *c, uint32_t pos, jv v, const char *what) {
    if (v.type != JV_STR)
        jx_fail(c, pos, "%s: expected a string, got %s", what, jv_type_name(v));
    return v.s;
}

static int64_t need_int(jctx *c, uint32_t pos, jv v, const char *what) {
    if (v.type == JV_INT) return v.i;
    if (v.type == JV_BOOL) return v.b;
    jx_fail(c, pos, "%s: expected an integer, got %s", what, jv_type_name(v));
}

static size_t length_of(jctx *c, uint32_t pos, jv v) {
    switch (v.type) {
    case JV_UNDEF: return 0;
    case JV_STR: return u8_count(v.s);
    case JV_LIST: return v.list->n;
    case JV_DICT: return v.dict->n;
    case JV_LOOP: return v.loop->items->n;
    default: jx_fail(c, pos, "object of type '%s' has no len()", jv_type_name(v));
    }
}

/* ------------------------------------------------------------------ tables */

enum {
    F_ABS,
    F_ATTR,
    F_CAPITALIZE,
    F_DEFAULT,
    F_DICTSORT,
    F_ESCAPE,
    F_FIRST,
    F_FLOAT,
    F_FORMAT,
    F_INDENT,
    F_INT,
    F_ITEMS,
    F_JOIN,
    F_LAST,
    F_LENGTH,
    F_LIST,
    F_LOWER,
    F_MAP,
    F_MAX,
    F_MIN,
    F_REJECT,
    F_REJECTATTR,
    F_REPLACE,
    F_REVERSE,
    F_ROUND,
    F_SAFE,
    F_SELECT,
    F_SELECTATTR,
    F_SORT,
    F_STRING,
    F_SUM,
    F_TITLE,
    F_TOJSON,
    F_TRIM,
    F_UNIQUE,
    F_UPPER,
    F_WORDCOUNT,
};

typedef struct named {
    const char *name;
    int id;
} named;

static const named FILTERS[] = {
    {"abs", F_ABS},
    {"attr", F_ATTR},
    {"capitalize", F_CAPITALIZE},
    {"count", F_LENGTH},
    {"d", F_DEFAULT},
    {"default", F_DEFAULT},
    {"dictsort", F_DICTSORT},
    {"e", F_ESCAPE},
    {"escape", F_ESCAPE},
    {"first", F_FIRST},
    {"float", F_FLOAT},
    {"format", F_FORMAT},
    {"indent", F_INDENT},
    {"int", F_INT},
    {"items", F_ITEMS},
    {"join", F_JOIN},
    {"last", F_LAST},
    {"length", F_LENGTH},
    {"list", F_LIST},
    {"lower", F_LOWER},
    {"map", F_MAP},
    {"max", F_MAX},
    {"min", F_MIN},
    {"reject", F_REJECT},
    {"rejectattr", F_REJECTATTR},
    {"replace", F_REPLACE},
    {"reverse", F_REVERSE},
    {"round", F_ROUND},
    {"safe", F_SAFE},
    {"select", F_SELECT},
    {"selectattr", F_SELECTATTR},
    {"sort", F_SORT},
    {"string", F_STRING},
    {"sum", F_SUM},
    {"title", F_TITLE},
    {"tojson", F_TOJSON},
    {"trim", F_TRIM},
    {"unique", F_UNIQUE},
    {"upper", F_UPPER},
    {"wordcount", F_WORDCOUNT},
};

enum {
    T_BOOLEAN,
    T_CALLABLE,
    T_DEFINED,
    T_DIVISIBLEBY,
    T_EQ,
    T_EVEN,
    T_FALSE,
    T_FLOAT,
    T_GE,
    T_GT,
    T_IN,
    T_INTEGER,
    T_ITERABLE,
    T_LE,
    T_LOWER,
    T_LT,
    T_MAPPING,
    T_NE,
    T_NONE,
    T_NUMBER,
    T_ODD,
    T_SAMEAS,
    T_SEQUENCE,
    T_STRING,
    T_TRUE,
    T_UNDEFINED,
    T_UPPER,
};

static const named TESTS[] = {
    {"boolean", T_BOOLEAN},
    {"callable", T_CALLABLE},
    {"defined", T_DEFINED},
    {"divisibleby", T_DIVISIBLEBY},
    {"eq", T_EQ},
    {"equalto", T_EQ},
    {"even", T_EVEN},
    {"false", T_FALSE},
    {"float", T_FLOAT},
    {"ge", T_GE},
    {"gt", T_GT},
    {"greaterthan", T_GT},
    {"in", T_IN},
    {"integer", T_INTEGER},
    {"iterable", T_ITERABLE},
    {"le", T_LE},
    {"lower", T_LOWER},
    {"lt", T_LT},
    {"lessthan", T_LT},
    {"mapping", T_MAPPING},
    {"ne", T_NE},
    {"none", T_NONE},
    {"number", T_NUMBER},
    {"odd", T_ODD},
    {"sameas", T_SAMEAS},
    {"sequence", T_SEQUENCE},
    {"string", T_STRING},
    {"true", T_TRUE},
    {"undefined", T_UNDEFINED},
    {"upper", T_UPPER},
};

enum { G_RANGE, G_NAMESPACE, G_DICT, G_RAISE, G_STRFTIME };

static const named GLOBALS[] = {
    {"range", G_RANGE},           {"namespace", G_NAMESPACE},   {"dict", G_DICT},
    {"raise_exception", G_RAISE}, {"strftime_now", G_STRFTIME},
};

enum {
    /* str */
    M_STRIP,
    M_LSTRIP,
    M_RSTRIP,
    M_STARTSWITH,
    M_ENDSWITH,
    M_SPLIT,
    M_UPPER,
    M_LOWER,
    M_TITLE,
    M_CAPITALIZE,
    M_REPLACE,
    M_FIND,
    M_COUNT,
    M_JOIN,
    M_SPLITLINES,
    M_ISDIGIT,
    M_ISALPHA,
    M_ISALNUM,
    M_ISSPACE,
    M_ISLOWER,
    M_ISUPPER,
    /* dict */
    M_ITEMS,
    M_KEYS,
    M_VALUES,
    M_GET,
    /* loop */
    M_CYCLE,
};

static const named STR_METHODS[] = {
    {"strip", M_STRIP},           {"lstrip", M_LSTRIP},     {"rstrip", M_RSTRIP},
    {"startswith", M_STARTSWITH}, {"endswith", M_ENDSWITH}, {"split", M_SPLIT},
    {"upper", M_UPPER},           {"lower", M_LOWER},       {"title", M_TITLE},
    {"capitalize", M_CAPITALIZE}, {"replace", M_REPLACE},   {"find", M_FIND},
    {"count", M_COUNT},           {"join", M_JOIN},         {"splitlines", M_SPLITLINES},
    {"isdigit", M_ISDIGIT},       {"isalpha", M_ISALPHA},   {"isalnum", M_ISALNUM},
    {"isspace", M_ISSPACE},       {"islower", M_ISLOWER},   {"isupper", M_ISUPPER},
};

static const named DICT_METHODS[] = {
    {"items", M_ITEMS},
    {"keys", M_KEYS},
    {"values", M_VALUES},
    {"get", M_GET},
};

static int lookup(const named *t, size_t n, jstr name) {
    for (size_t i = 0; i < n; i++)
        if (js_eq_cstr(name, t[i].name)) return t[i].id;
    return -1;
}

#define LOOKUP(t, name) lookup(t, sizeof t / sizeof t[0], name)

int jx_filter_id(jstr name) {
    return LOOKUP(FILTERS, name);
}
int jx_test_id(jstr name) {
    return LOOKUP(TESTS, name);
}
int jx_global_id(jstr name) {
    return LOOKUP(GLOBALS, name);
}

int jx_method_id(jv self, jstr name) {
    switch (self.type) {
    case JV_STR: return LOOKUP(STR_METHODS, name);
    case JV_DICT: return self.dict->ns ? -1 : LOOKUP(DICT_METHODS, name);
    case JV_LOOP: return js_eq_cstr(name, "cycle") ? M_CYCLE : -1;
    default: return -1;
    }
}

/* ------------------------------------------------------------------- tests */

static bool str_cased(jstr s, bool want_lower) {
    bool any = false;
    for (size_t i = 0; i < s.n; i++) {
        char ch = s.p[i];
        if (ch >= 'a' && ch <= 'z') {
            if (!want_lower) return false;
            any = true;
        } else if (ch >= 'A' && ch <= 'Z') {
            if (want_lower) return false;
            any = true;
        }
    }
    return any;
}

static bool test_needs_arg(jctx *c, uint32_t pos, size_t n_args, const char *name) {
    if (n_args < 1) jx_fail(c, pos, "test '%s' needs an argument", name);
    return true;
}

bool jx_test(jctx *c, uint32_t pos, int id, jv in, const jv *args, size_t n_args) {
    switch (id) {
    case T_BOOLEAN: return in.type == JV_BOOL;
    case T_CALLABLE: return in.type == JV_FUNC;
    case T_DEFINED: return in.type != JV_UNDEF;
    case T_UNDEFINED: return in.type == JV_UNDEF;
    case T_NONE: return in.type == JV_NONE;
    case T_FALSE: return in.type == JV_BOOL && !in.b;
    case T_TRUE: return in.type == JV_BOOL && in.b;
    case T_INTEGER: return in.type == JV_INT;
    case T_FLOAT: return in.type == JV_FLOAT;
    case T_NUMBER: return jv_is_number(in);
    case T_STRING: return in.type == JV_STR;
    case T_MAPPING: return in.type == JV_DICT && !in.dict->ns;
    case T_ITERABLE:
        return in.type == JV_STR || in.type == JV_LIST || in.type == JV_UNDEF ||
               (in.type == JV_DICT && !in.dict->ns);
    case T_SEQUENCE:
        return in.type == JV_STR || in.type == JV_LIST || (in.type == JV_DICT && !in.dict->ns);
    case T_LOWER: return in.type == JV_STR && str_cased(in.s, true);
    case T_UPPER: return in.type == JV_STR && str_cased(in.s, false);
    case T_EVEN:
    case T_ODD: {
        int64_t v = need_int(c, pos, in, id == T_EVEN ? "even" : "odd");
        return ((v % 2) == 0) == (id == T_EVEN);
    }
    case T_DIVISIBLEBY: {
        test_needs_arg(c, pos, n_args, "divisibleby");
        int64_t v = need_int(c, pos, in, "divisibleby"),
                d = need_int(c, pos, args[0], "divisibleby");
        if (d == 0) jx_fail(c, pos, "divisibleby: division by zero");
        return d == -1 || v % d == 0;
    }
    case T_EQ: test_needs_arg(c, pos, n_args, "eq"); return jv_equal(in, args[0]);
    case T_NE: test_needs_arg(c, pos, n_args, "ne"); return !jv_equal(in, args[0]);
    case T_LT: test_needs_arg(c, pos, n_args, "lt"); return jv_compare(c, pos, in, args[0]) < 0;
    case T_LE:
        test_needs_arg(c, pos, n_args, "le");
        return jv_compare(c, pos, in, args[0]) <= 0;
    case T_GT: test_needs_arg(c, pos, n_args, "gt"); return jv_compare(c, pos, in, args[0]) > 0;
    case T_GE:
        test_needs_arg(c, pos, n_args, "ge");
        return jv_compare(c, pos, in, args[0]) >= 0;
    case T_IN: {
        test_needs_arg(c, pos, n_args, "in");
        jv seq = args[0];
        if (seq.type == JV_STR) {
            if (in.type != JV_STR)
                jx_fail(c, pos, "'in <string>' requires string as left operand");
            return js_find(seq.s, in.s) != NULL;
        }
        if (seq.type == JV_DICT) return jv_dict_get(seq.dict, in, NULL);
        const jlist *l = jx_iter(c, pos, seq);
        for (size_t i = 0; i < l->n; i++)
            if (jv_equal(l->v[i], in)) return true;
        return false;
    }
    case T_SAMEAS: {
        test_needs_arg(c, pos, n_args, "sameas");
        jv o = args[0];
        if (in.type != o.type) return false;
        switch (in.type) {
        case JV_UNDEF:
        case JV_NONE: return true;
        case JV_BOOL: return in.b == o.b;
        case JV_INT: return in.i == o.i;
        case JV_FLOAT: return in.f == o.f;
        case JV_STR: return in.s.p == o.s.p && in.s.n == o.s.n;
        case JV_LIST: return in.list == o.list;
        case JV_DICT: return in.dict == o.dict;
        case JV_FUNC: return in.fn == o.fn;
        case JV_LOOP: return in.loop == o.loop;
        }
        return false;
    }
    }
    jx_fail(c, pos, "internal error: unknown test");
}

/* ----------------------------------------------------------------- filters */

static jstr to_str(jctx *c, jv v) {
    return jv_to_str(c, v);
}

/* Attribute path "a.b.0" as Jinja's attribute= arguments use it. */
static jv get_path(jctx *c, uint32_t pos, jv obj, jstr path) {
    const char *p = path.p, *end = path.p + path.n;
    while (p <= end) {
        const char *dot = memchr(p, '.', (size_t)(end - p));
        if (!dot) dot = end;
        jstr part = {p, (size_t)(dot - p)};
        bool digits = part.n > 0;
        int64_t idx = 0;
        for (size_t i = 0; i < part.n && digits; i++) {
            if (part.p[i] < '0' || part.p[i] > '9' || idx > INT64_MAX / 10 - 10)
                digits = false;
            else
                idx = idx * 10 + (part.p[i] - '0');
        }
        obj = digits ? jx_getitem(c, pos, obj, jv_int(idx))
                     : jx_getitem(c, pos, obj, jv_str(part));
        p = dot + 1;
    }
    return obj;
}

static jv html_escape(jctx *c, jstr s) {
    jbuf b = {0};
    size_t run = 0;
    for (size_t i = 0; i < s.n; i++) {
        const char *e = NULL;
        switch (s.p[i]) {
        case '&': e = "&amp;"; break;
        case '<': e = "&lt;"; break;
        case '>': e = "&gt;"; break;
        case '"': e = "&#34;"; break;
        case '\'': e = "&#39;"; break;
        default: run++; continue;
        }
        jb_put(c, &b, s.p + i - run, run);
        run = 0;
        jb_puts(c, &b, e);
    }
    jb_put(c, &b, s.p + s.n - run, run);
    return jv_str(jb_str(&b));
}

/* Python str.splitlines() */
static jv splitlines(jctx *c, jstr s, bool keepends) {
    jv out = jv_list_new(c, 0, false);
    size_t cap = 0, start = 0, i = 0;
    while (i < s.n) {
        unsigned char ch = (unsigned char)s.p[i];
        size_t brk = 0;
        if (ch == '\r')
            brk = (i + 1 < s.n && s.p[i + 1] == '\n') ? 2 : 1;
        else if (ch == '\n' || ch == '\v' || ch == '\f' || (ch >= 0x1C && ch <= 0x1E))
            brk = 1;
        else if (ch == 0xC2 && i + 1 < s.n && (unsigned char)s.p[i + 1] == 0x85)
            brk = 2;
        else if (ch == 0xE2 && i + 2 < s.n && (unsigned char)s.p[i + 1] == 0x80 &&
                 ((unsigned char)s.p[i + 2] == 0xA8 || (unsigned char)s.p[i + 2] == 0xA9))
            brk = 3;
        if (!brk) {
            i++;
            continue;
        }
        jl_push(c, &out, &cap, jv_str((jstr){s.p + start, (keepends ? i + brk : i) - start}));
        i += brk;
        start = i;
    }
    if (start < s.n) jl_push(c, &out, &cap, jv_str((jstr){s.p + start, s.n - start}));
    return out;
}

static jv do_indent(jctx *c, uint32_t pos, jstr s, const jargs *a) {
    jv width = arg_or(a, 0, "width", jv_int(4));
    bool first = jv_truthy(arg_or(a, 1, "first", jv_bool(false)));
    bool blank = jv_truthy(arg_or(a, 2, "blank", jv_bool(false)));
    jstr ind;
    if (width.type == JV_STR)
        ind = width.s;
    else {
        int64_t w = need_int(c, pos, width, "indent");
        if (w < 0) w = 0;
        if (w > 4096) jx_fail(c, pos, "indent: width too large");
        char *sp = ja_alloc(c, (size_t)w + 1);
        memset(sp, ' ', (size_t)w);
        ind = (jstr){sp, (size_t)w};
    }
    jbuf b = {0};
    jb_put(c, &b, s.p, s.n);
    jb_putc(c, &b, '\n');
    jv lines = splitlines(c, jb_str(&b), false);
    jbuf o = {0};
    if (first) jb_put(c, &o, ind.p, ind.n);
    for (size_t i = 0; i < lines.list->n; i++) {
        jstr line = lines.list->v[i].s;
        if (i) {
            jb_putc(c, &o, '\n');
            if (blank || line.n) jb_put(c, &o, ind.p, ind.n);
        }
        jb_put(c, &o, line.p, line.n);
    }
    return jv_str(jb_str(&o));
}

static jv do_title(jctx *c, jstr s) {
    /* Jinja: words start after runs of whitespace, '-', '(', '{', '[', '<'; each word is
     * capitalized (first letter upper, the rest lower) */
    jbuf b = {0};
    size_t i = 0;
    while (i < s.n) {
        size_t start = i;
        for (;;) {
            size_t ws = i < s.n ? u8_ws_at(s.p + i, s.p + s.n) : 0;
            if (ws)
                i += ws;
            else if (i < s.n && s.p[i] && strchr("-({[<", s.p[i]))
                i++;
            else
                break;
        }
        jb_put(c, &b, s.p + start, i - start);
        start = i;
        while (i < s.n && !u8_ws_at(s.p + i, s.p + s.n) && !(s.p[i] && strchr("-({[<", s.p[i])))
            i++;
        jstr word = js_case(c, (jstr){s.p + start, i - start}, 2);
        jb_put(c, &b, word.p, word.n);
    }
    return jv_str(jb_str(&b));
}

/* Sort key: the attribute if given, strings lowercased unless case-sensitive. */
static jv sort_key(jctx *c, uint32_t pos, jv v, jv attribute, bool case_sensitive) {
    if (attribute.type == JV_STR)
        v = get_path(c, pos, v, attribute.s);
    else if (attribute.type == JV_INT)
        v = jx_getitem(c, pos, v, attribute);
    if (!case_sensitive && v.type == JV_STR) v = jv_str(js_case(c, v.s, 0));
    return v;
}

typedef struct keyed {
    jv key, value;
} keyed;

static void merge_sort(jctx *c, uint32_t pos, keyed *a, keyed *tmp, size_t n, bool reverse) {
    if (n < 2) return;
    size_t m = n / 2;
    merge_sort(c, pos, a, tmp, m, reverse);
    merge_sort(c, pos, a + m, tmp, n - m, reverse);
    size_t i = 0, j = m, k = 0;
    while (i < m && j < n) {
        int r = jv_compare(c, pos, a[j].key, a[i].key);
        bool take_right = reverse ? r > 0 : r < 0;
        tmp[k++] = take_right ? a[j++] : a[i++];
    }
    while (i < m)
        tmp[k++] = a[i++];
    while (j < n)
        tmp[k++] = a[j++];
    memcpy(a, tmp, n * sizeof *a);
}

static jv sorted(jctx *c, uint32_t pos, const jlist *l, jv attribute, bool case_sensitive,
                 bool reverse, bool pairs_by_key, int by_value) {
    size_t n = l->n;
    keyed *a = ja_alloc(c, (n ? n : 1) * sizeof *a),
          *tmp = ja_alloc(c, (n ? n : 1) * sizeof *tmp);
    for (size_t i = 0; i < n; i++) {
        a[i].value = l->v[i];
        jv k = l->v[i];
        if (pairs_by_key) k = k.list->v[by_value];
        a[i].key = sort_key(c, pos, k, attribute, case_sensitive);
    }
    merge_sort(c, pos, a, tmp, n, reverse);
    jv out = jv_list_new(c, n, false);
    for (size_t i = 0; i < n; i++)
        out.list->v[i] = a[i].value;
    return out;
}

static jv dict_items(jctx *c, const jdict *d) {
    jv out = jv_list_new(c, d->n, false);
    for (size_t i = 0; i < d->n; i++) {
        jv pair = jv_list_new(c, 2, true);
        pair.list->v[0] = d->k[i];
        pair.list->v[1] = d->v[i];
        out.list->v[i] = pair;
    }
    return out;
}

/* select / reject / selectattr / rejectattr */
static jv select_items(jctx *c, uint32_t pos, jv in, const jargs *a, bool attr, bool want) {
    const jlist *l = jx_iter(c, pos, in);
    size_t first = 0;
    jstr path = {0};
    if (attr) {
        if (a->n < 1) jx_fail(c, pos, "selectattr/rejectattr: missing attribute name");
        path = need_str(c, pos, a->pos[0], "selectattr");
        first = 1;
    }
    int tid = -1;
    if (a->n > first) {
        tid = jx_test_id(need_str(c, pos, a->pos[first], "select: test name"));
        if (tid < 0)
            jx_fail(c, pos, "no test named '%.*s'", (int)a->pos[first].s.n, a->pos[first].s.p);
    }
    jv out = jv_list_new(c, 0, false);
    size_t cap = 0;
    for (size_t i = 0; i < l->n; i++) {
        jv v = attr ? get_path(c, pos, l->v[i], path) : l->v[i];
        bool ok = tid < 0 ? jv_truthy(v)
                          : jx_test(c, pos, tid, v, a->pos + first + 1, a->n - first - 1);
        if (ok == want) jl_push(c, &out, &cap, l->v[i]);
    }
    return out;
}

static jv do_map(jctx *c, uint32_t pos, jv in, const jargs *a) {
    const jlist *l = jx_iter(c, pos, in);
    jv out = jv_list_new(c, l->n, false);
    jv attribute;
    if (get_arg(a, SIZE_MAX, "attribute", &attribute)) {
        jv dflt = arg_or(a, SIZE_MAX, "default", jv_undef());
        for (size_t i = 0; i < l->n; i++) {
            jv v = attribute.type == JV_STR ? get_path(c, pos, l->v[i], attribute.s)
                                            : jx_getitem(c, pos, l->v[i], attribute);
            out.list->v[i] = v.type == JV_UNDEF ? dflt : v;
        }
        return out;
    }
    if (a->n < 1) jx_fail(c, pos, "map: expected a filter name or attribute=");
    jstr fname = need_str(c, pos, a->pos[0], "map: filter name");
    int fid = jx_filter_id(fname);
    if (fid < 0) jx_fail(c, pos, "no filter named '%.*s'", (int)fname.n, fname.p);
    for (size_t i = 0; i < l->n; i++)
        out.list->v[i] =
            jx_filter(c, pos, fid, l->v[i], a->pos + 1, a->n - 1, a->kn, a->kv, a->nk);
    return out;
}

static jv min_max(jctx *c, uint32_t pos, jv in, const jargs *a, bool want_max) {
    const jlist *l = jx_iter(c, pos, in);
    bool cs = jv_truthy(arg_or(a, 0, "case_sensitive", jv_bool(false)));
    jv attribute = arg_or(a, 1, "attribute", jv_none());
    if (l->n == 0) return jv_undef();
    size_t best = 0;
    jv bk = sort_key(c, pos, l->v[0], attribute, cs);
    for (size_t i = 1; i < l->n; i++) {
        jv k = sort_key(c, pos, l->v[i], attribute, cs);
        int r = jv_compare(c, pos, k, bk);
        if (want_max ? r > 0 : r < 0) best = i, bk = k;
    }
    return l->v[best];
}

static jv to_int(jctx *c, jv v, jv dflt, int64_t base) {
    switch (v.type) {
    case JV_INT: return v;
    case JV_BOOL: return jv_int(v.b);
    case JV_FLOAT:
        if (!isfinite(v.f) || fabs(v.f) >= 9.2e18) return dflt;
        return jv_int((int64_t)v.f);
    case JV_STR: {
        jstr s = js_strip(v.s, (jstr){0}, false, true, true);
        char tmp[80];
        if (s.n == 0 || s.n >= sizeof tmp) return dflt;
        size_t w = 0;
        for (size_t i = 0; i < s.n; i++)
            if (s.p[i] != '_') tmp[w++] = s.p[i];
        tmp[w] = 0;
        char *end;
        long long r = strtoll(tmp, &end, (int)base);
        if (*end == 0 && end != tmp) return jv_int(r);
        double d;
        if (jx_parse_double(s.p, s.n, &d) && isfinite(d) && fabs(d) < 9.2e18)
            return jv_int((int64_t)d);
        return dflt;
    }
    default: (void)c; return dflt;
    }
}

static jv to_float(jv v, jv dflt) {
    switch (v.type) {
    case JV_INT:
    case JV_BOOL:
    case JV_FLOAT: return jv_float(jv_as_double(v));
    case JV_STR: {
        jstr s = js_strip(v.s, (jstr){0}, false, true, true);
        double d;
        if (jx_parse_double(s.p, s.n, &d)) return jv_float(d);
        char low[16];
        if (s.n < sizeof low) { /* Python's float() also takes inf, infinity, nan */
            for (size_t i = 0; i < s.n; i++)
                low[i] = (char)((s.p[i] >= 'A' && s.p[i] <= 'Z') ? s.p[i] + 32 : s.p[i]);
            low[s.n] = 0;
            const char *q = low;
            bool neg = *q == '-';
            if (*q == '+' || *q == '-') q++;
            if (!strcmp(q, "inf") || !strcmp(q, "infinity"))
                return jv_float(neg ? -INFINITY : INFINITY);
            if (!strcmp(q, "nan")) return jv_float(NAN);
        }
        return dflt;
    }
    default: return dflt;
    }
}

static jv do_round(jctx *c, uint32_t pos, jv in, const jargs *a) {
    if (!jv_is_number(in))
        jx_fail(c, pos, "round: expected a number, got %s", jv_type_name(in));
    int64_t prec = need_int(c, pos, arg_or(a, 0, "precision", jv_int(0)), "round");
    jv method = arg_or(a, 1, "method", jv_str(JSTR("common")));
    jstr m = need_str(c, pos, method, "round: method");
    double x = jv_as_double(in), scale = pow(10.0, (double)prec), y = x * scale;
    if (js_eq_cstr(m, "common"))
        y = nearbyint(y); /* half to even, as Python's round() */
    else if (js_eq_cstr(m, "ceil"))
        y = ceil(y);
    else if (js_eq_cstr(m, "floor"))
        y = floor(y);
    else
        jx_fail(c, pos, "round: method must be 'common', 'ceil' or 'floor'");
    return jv_float(y / scale);
}

jv jx_filter(jctx *c, uint32_t pos, int id, jv in, const jv *args, size_t n_args,
             const jstr *kw_names, const jv *kw_vals, size_t n_kw) {
    jargs A = {args, n_args, kw_names, kw_vals, n_kw};
    const jargs *a = &A;
    switch (id) {
    case F_ABS:
        if (in.type == JV_FLOAT) return jv_float(fabs(in.f));
        {
            int64_t v = need_int(c, pos, in, "abs");
            if (v == INT64_MIN) jx_fail(c, pos, "integer overflow");
            return jv_int(v < 0 ? -v : v);
        }
    case F_ATTR: {
        jv name = arg_or(a, 0, "name", jv_undef());
        return jx_getattr(c, pos, in, need_str(c, pos, name, "attr"));
    }
    case F_CAPITALIZE: return jv_str(js_case(c, to_str(c, in), 2));
    case F_DEFAULT: {
        jv dflt = arg_or(a, 0, "default_value", jv_str(JSTR("")));
        bool boolean = jv_truthy(arg_or(a, 1, "boolean", jv_bool(false)));
        if (in.type == JV_UNDEF || (boolean && !jv_truthy(in))) return dflt;
        return in;
    }
    case F_DICTSORT: {
        if (in.type != JV_DICT)
            jx_fail(c, pos, "dictsort: expected a dict, got %s", jv_type_name(in));
        bool cs = jv_truthy(arg_or(a, 0, "case_sensitive", jv_bool(false)));
        jv by = arg_or(a, 1, "by", jv_str(JSTR("key")));
        bool rev = jv_truthy(arg_or(a, 2, "reverse", jv_bool(false)));
        int col = by.type == JV_STR && js_eq_cstr(by.s, "value") ? 1 : 0;
        return sorted(c, pos, dict_items(c, in.dict).list, jv_none(), cs, rev, true, col);
    }
    case F_ESCAPE: return html_escape(c, to_str(c, in));
    case F_FIRST: {
        const jlist *l = jx_iter(c, pos, in);
        return l->n ? l->v[0] : jv_undef();
    }
    case F_LAST: {
        const jlist *l = jx_iter(c, pos, in);
        return l->n ? l->v[l->n - 1] : jv_undef();
    }
    case F_FLOAT: return to_float(in, arg_or(a, 0, "default", jv_float(0.0)));
    case F_INT: {
        int64_t base = need_int(c, pos, arg_or(a, 1, "base", jv_int(10)), "int");
        if (base != 0 && (base < 2 || base > 36)) jx_fail(c, pos, "int: invalid base");
        return to_int(c, in, arg_or(a, 0, "default", jv_int(0)), base);
    }
    case F_FORMAT: {
        jstr fmt = need_str(c, pos, in, "format");
        jv tup = jv_list_new(c, n_args, true);
        for (size_t i = 0; i < n_args; i++)
            tup.list->v[i] = args[i];
        return jx_percent_format(c, pos, fmt, tup);
    }
    case F_INDENT: return do_indent(c, pos, to_str(c, in), a);
    case F_ITEMS:
        if (in.type == JV_UNDEF) return jv_list_new(c, 0, false);
        if (in.type != JV_DICT || in.dict->ns)
            jx_fail(c, pos, "items: expected a dict, got %s", jv_type_name(in));
        return dict_items(c, in.dict);
    case F_JOIN: {
        const jlist *l = jx_iter(c, pos, in);
        jstr sep = to_str(c, arg_or(a, 0, "d", jv_str(JSTR(""))));
        jv attribute;
        bool has_attr = get_arg(a, 1, "attribute", &attribute) && attribute.type != JV_NONE;
        jbuf b = {0};
        for (size_t i = 0; i < l->n; i++) {
            if (i) jb_put(c, &b, sep.p, sep.n);
            jv v = l->v[i];
            if (has_attr)
                v = attribute.type == JV_STR ? get_path(c, pos, v, attribute.s)
                                             : jx_getitem(c, pos, v, attribute);
            jv_write_str(c, &b, v);
        }
        return jv_str(jb_str(&b));
    }
    case F_LENGTH: return jv_int((int64_t)length_of(c, pos, in));
    case F_LIST: {
        const jlist *l = jx_iter(c, pos, in);
        jv out = jv_list_new(c, l->n, false);
        for (size_t i = 0; i < l->n; i++)
            out.list->v[i] = l->v[i];
        return out;
    }
    case F_LOWER: return jv_str(js_case(c, to_str(c, in), 0));
    case F_UPPER: return jv_str(js_case(c, to_str(c, in), 1));
    case F_MAP: return do_map(c, pos, in, a);
    case F_MAX: return min_max(c, pos, in, a, true);
    case F_MIN: return min_max(c, pos, in, a, false);
    case F_SELECT: return select_items(c, pos, in, a, false, true);
    case F_REJECT: return select_items(c, pos, in, a, false, false);
    case F_SELECTATTR: return select_items(c, pos, in, a, true, true);
    case F_REJECTATTR: return select_items(c, pos, in, a, true, false);
    case F_REPLACE: {
        jstr s = to_str(c, in);
        jstr old = to_str(c, arg_or(a, 0, "old", jv_undef()));
        jstr new_ = to_str(c, arg_or(a, 1, "new", jv_undef()));
        jv count = arg_or(a, 2, "count", jv_none());
        int64_t n = count.type == JV_NONE ? -1 : need_int(c, pos, count, "replace");
        return jv_str(js_replace(c, s, old, new_, n));
    }
    case F_REVERSE: {
        if (in.type == JV_STR) {
            jv chars = js_chars(c, in.s);
            jbuf b = {0};
            for (size_t i = chars.list->n; i > 0; i--)
                jb_put(c, &b, chars.list->v[i - 1].s.p, chars.list->v[i - 1].s.n);
            return jv_str(jb_str(&b));
        }
        const jlist *l = jx_iter(c, pos, in);
        jv out = jv_list_new(c, l->n, false);
        for (size_t i = 0; i < l->n; i++)
            out.list->v[i] = l->v[l->n - 1 - i];
        return out;
    }
    case F_ROUND: return do_round(c, pos, in, a);
    case F_SAFE: return in;
    case F_SORT: {
        bool rev = jv_truthy(arg_or(a, 0, "reverse", jv_bool(false)));
        bool cs = jv_truthy(arg_or(a, 1, "case_sensitive", jv_bool(false)));
        jv attribute = arg_or(a, 2, "attribute", jv_none());
        return sorted(c, pos, jx_iter(c, pos, in), attribute, cs, rev, false, 0);
    }
    case F_STRING: return jv_str(to_str(c, in));
    case F_SUM: {
        const jlist *l = jx_iter(c, pos, in);
        jv attribute = arg_or(a, 0, "attribute", jv_none());
        jv acc = arg_or(a, 1, "start", jv_int(0));
        for (size_t i = 0; i < l->n; i++) {
            jv v = l->v[i];
            if (attribute.type == JV_STR) v = get_path(c, pos, v, attribute.s);
            acc = jx_arith(c, pos, JO_ADD, acc, v);
        }
        return acc;
    }
    case F_TITLE: return do_title(c, to_str(c, in));
    case F_TOJSON: {
        jv indent = arg_or(a, 0, "indent", jv_none());
        if (jv_truthy(arg_or(a, SIZE_MAX, "ensure_ascii", jv_bool(false))))
            jx_fail(c, pos, "tojson: ensure_ascii=True is not supported");
        if (jv_truthy(arg_or(a, SIZE_MAX, "sort_keys", jv_bool(false))))
            jx_fail(c, pos, "tojson: sort_keys=True is not supported");
        int ind = -1;
        if (indent.type != JV_NONE) {
            int64_t v = need_int(c, pos, indent, "tojson: indent");
            ind = v < 0 ? 0 : v > 64 ? 64 : (int)v;
        }
        jbuf b = {0};
        jv_write_json(c, pos, &b, in, ind, 0);
        return jv_str(jb_str(&b));
    }
    case F_TRIM: {
        jv chars = arg_or(a, 0, "chars", jv_none());
        bool given = chars.type != JV_NONE && chars.type != JV_UNDEF;
        return jv_str(js_strip(to_str(c, in),
                               given ? need_str(c, pos, chars, "trim") : (jstr){0}, given, true,
                               true));
    }
    case F_UNIQUE: {
        const jlist *l = jx_iter(c, pos, in);
        bool cs = jv_truthy(arg_or(a, 0, "case_sensitive", jv_bool(false)));
        jv attribute = arg_or(a, 1, "attribute", jv_none());
        jv out = jv_list_new(c, 0, false), seen = jv_list_new(c, 0, false);
        size_t cap = 0, scap = 0;
        for (size_t i = 0; i < l->n; i++) {
            jv k = sort_key(c, pos, l->v[i], attribute, cs);
            bool dup = false;
            for (size_t j = 0; j < seen.list->n && !dup; j++)
                dup = jv_equal(seen.list->v[j], k);
            if (dup) continue;
            jl_push(c, &seen, &scap, k);
            jl_push(c, &out, &cap, l->v[i]);
        }
        return out;
    }
    case F_WORDCOUNT: {
        jstr s = to_str(c, in);
        int64_t n = 0;
        bool in_word = false;
        for (size_t i = 0; i < s.n; i++) {
            unsigned char ch = (unsigned char)s.p[i];
            bool w = ch >= 0x80 || ch == '_' || (ch >= '0' && ch <= '9') ||
                     ((ch | 32) >= 'a' && (ch | 32) <= 'z');
            if (w && !in_word) n++;
            in_word = w;
        }
        return jv_int(n);
    }
    }
    jx_fail(c, pos, "internal error: unknown filter");
}

/* ----------------------------------------------------------------- globals */

jv jx_global(jctx *c, uint32_t pos, int id, const jv *args, size_t n_args, const jstr *kw_names,
             const jv *kw_vals, size_t n_kw) {
    switch (id) {
    case G_RANGE: {
        if (n_args < 1 || n_args > 3) jx_fail(c, pos, "range expects 1 to 3 arguments");
        int64_t start = 0, stop, step = 1;
        if (n_args == 1)
            stop = need_int(c, pos, args[0], "range");
        else {
            start = need_int(c, pos, args[0], "range");
            stop = need_int(c, pos, args[1], "range");
            if (n_args == 3) step = need_int(c, pos, args[2], "range");
        }
        if (step == 0) jx_fail(c, pos, "range() arg 3 must not be zero");
        double count = 0;
        if (step > 0 && stop > start)
            count = ceil(((double)stop - (double)start) / (double)step);
        if (step < 0 && start > stop)
            count = ceil(((double)start - (double)stop) / -(double)step);
        if (count > JINJA_MAX_STEPS) jx_fail(c, pos, "range too large");
        jv out = jv_list_new(c, (size_t)count, false);
        for (size_t i = 0; i < (size_t)count; i++)
            out.list->v[i] = jv_int(start + (int64_t)i * step);
        return out;
    }
    case G_NAMESPACE:
    case G_DICT: {
        jv d = jv_dict_new(c);
        d.dict->ns = id == G_NAMESPACE;
        for (size_t i = 0; i < n_args; i++) {
            if (args[i].type == JV_DICT) {
                for (size_t k = 0; k < args[i].dict->n; k++)
                    jv_dict_set(c, d.dict, args[i].dict->k[k], args[i].dict->v[k]);
            } else {
                const jlist *l = jx_iter(c, pos, args[i]);
                for (size_t k = 0; k < l->n; k++) {
                    const jlist *pair = jx_iter(c, pos, l->v[k]);
                    if (pair->n != 2) jx_fail(c, pos, "dict: sequence elements must be pairs");
                    jv_dict_set(c, d.dict, pair->v[0], pair->v[1]);
                }
            }
        }
        for (size_t k = 0; k < n_kw; k++)
            jv_dict_set(c, d.dict, jv_str(kw_names[k]), kw_vals[k]);
        return d;
    }
    case G_RAISE: {
        jstr msg = n_args ? to_str(c, args[0]) : JSTR("raise_exception called");
        jx_fail(c, pos, "%.*s", (int)(msg.n > 400 ? 400 : msg.n), msg.p);
    }
    case G_STRFTIME: {
        if (n_args < 1) jx_fail(c, pos, "strftime_now expects a format");
        jstr fmt = need_str(c, pos, args[0], "strftime_now");
        if (fmt.n > 200) jx_fail(c, pos, "strftime_now: format too long");
        char f[256], buf[512];
        memcpy(f, fmt.p, fmt.n);
        f[fmt.n] = 0;
        time_t now = time(NULL);
        struct tm tm;
#if defined(_WIN32)
        localtime_s(&tm, &now);
#else
        localtime_r(&now, &tm);
#endif
        size_t n = fmt.n ? strftime(buf, sizeof buf, f, &tm) : 0;
        return jv_str(jx_strdup(c, buf, n));
    }
    }
    jx_fail(c, pos, "internal error: unknown global");
}

/* ----------------------------------------------------------------- methods */

static bool str_all(jstr s, int kind) {
    if (s.n == 0) return false;
    for (size_t i = 0; i < s.n; i++) {
        unsigned char ch = (unsigned char)s.p[i];
        bool digit = ch >= '0' && ch <= '9', alpha = (ch | 32) >= 'a' && (ch | 32) <= 'z';
        bool ok = kind == 0 ? digit : kind == 1 ? alpha : kind == 2 ? digit || alpha : false;
        if (kind == 3) {
            size_t l = u8_ws_at(s.p + i, s.p + s.n);
            if (!l) return false;
            i += l - 1;
            continue;
        }
        if (!ok) return false;
    }
    return true;
}

static bool affix_match(jctx *c, uint32_t pos, jstr s, jv affix, bool prefix) {
    if (affix.type == JV_LIST && affix.list->tuple) {
        for (size_t i = 0; i < affix.list->n; i++)
            if (affix_match(c, pos, s, affix.list->v[i], prefix)) return true;
        return false;
    }
    jstr x = need_str(c, pos, affix, prefix ? "startswith" : "endswith");
    return prefix ? js_starts(s, x) : js_ends(s, x);
}

jv jx_method(jctx *c, uint32_t pos, int id, jv self, const jv *args, size_t n_args,
             const jstr *kw_names, const jv *kw_vals, size_t n_kw) {
    jargs A = {args, n_args, kw_names, kw_vals, n_kw};
    const jargs *a = &A;
    if (id == M_CYCLE) {
        if (n_args == 0) jx_fail(c, pos, "loop.cycle needs at least one argument");
        return args[self.loop->index0 % n_args];
    }
    if (self.type == JV_DICT) {
        const jdict *d = self.dict;
        switch (id) {
        case M_ITEMS: return dict_items(c, d);
        case M_KEYS:
        case M_VALUES: {
            jv out = jv_list_new(c, d->n, false);
            for (size_t i = 0; i < d->n; i++)
                out.list->v[i] = id == M_KEYS ? d->k[i] : d->v[i];
            return out;
        }
        case M_GET: {
            jv key = arg_or(a, 0, "key", jv_none()), v;
            return jv_dict_get(d, key, &v) ? v : arg_or(a, 1, "default", jv_none());
        }
        }
        jx_fail(c, pos, "internal error: unknown dict method");
    }
    jstr s = self.s;
    switch (id) {
    case M_STRIP:
    case M_LSTRIP:
    case M_RSTRIP: {
        jv chars = arg_or(a, 0, "chars", jv_none());
        bool given = chars.type != JV_NONE && chars.type != JV_UNDEF;
        return jv_str(js_strip(s, given ? need_str(c, pos, chars, "strip") : (jstr){0}, given,
                               id != M_RSTRIP, id != M_LSTRIP));
    }
    case M_STARTSWITH:
    case M_ENDSWITH:
        if (n_args < 1) jx_fail(c, pos, "startswith/endswith need an argument");
        return jv_bool(affix_match(c, pos, s, args[0], id == M_STARTSWITH));
    case M_SPLIT: {
        jv sep = arg_or(a, 0, "sep", jv_none());
        int64_t maxsplit = need_int(c, pos, arg_or(a, 1, "maxsplit", jv_int(-1)), "split");
        bool given = sep.type != JV_NONE && sep.type != JV_UNDEF;
        jstr sp = given ? need_str(c, pos, sep, "split") : (jstr){0};
        if (given && sp.n == 0) jx_fail(c, pos, "split: empty separator");
        return js_split(c, s, sp, given, maxsplit);
    }
    case M_UPPER: return jv_str(js_case(c, s, 1));
    case M_LOWER: return jv_str(js_case(c, s, 0));
    case M_TITLE: return jv_str(js_case(c, s, 3));
    case M_CAPITALIZE: return jv_str(js_case(c, s, 2));
    case M_REPLACE: {
        if (n_args < 2) jx_fail(c, pos, "replace needs two arguments");
        jstr old = need_str(c, pos, args[0], "replace"),
             new_ = need_str(c, pos, args[1], "replace");
        int64_t n = n_args > 2 ? need_int(c, pos, args[2], "replace") : -1;
        return jv_str(js_replace(c, s, old, new_, n));
    }
    case M_FIND: {
        if (n_args < 1) jx_fail(c, pos, "find needs an argument");
        const char *q = js_find(s, need_str(c, pos, args[0], "find"));
        return jv_int(q ? (int64_t)u8_count((jstr){s.p, (size_t)(q - s.p)}) : -1);
    }
    case M_COUNT: {
        if (n_args < 1) jx_fail(c, pos, "count needs an argument");
        jstr x = need_str(c, pos, args[0], "count");
        if (x.n == 0) return jv_int((int64_t)u8_count(s) + 1);
        int64_t n = 0;
        jstr rest = s;
        const char *q;
        while ((q = js_find(rest, x))) {
            n++;
            size_t adv = (size_t)(q - rest.p) + x.n;
            rest.p += adv;
            rest.n -= adv;
        }
        return jv_int(n);
    }
    case M_JOIN: {
        if (n_args < 1) jx_fail(c, pos, "join needs an argument");
        const jlist *l = jx_iter(c, pos, args[0]);
        jbuf b = {0};
        for (size_t i = 0; i < l->n; i++) {
            if (i) jb_put(c, &b, s.p, s.n);
            jstr part = need_str(c, pos, l->v[i], "join: sequence item");
            jb_put(c, &b, part.p, part.n);
        }
        return jv_str(jb_str(&b));
    }
    case M_SPLITLINES:
        return splitlines(c, s, jv_truthy(arg_or(a, 0, "keepends", jv_bool(false))));
    case M_ISDIGIT: return jv_bool(str_all(s, 0));
    case M_ISALPHA: return jv_bool(str_all(s, 1));
    case M_ISALNUM: return jv_bool(str_all(s, 2));
    case M_ISSPACE: return jv_bool(str_all(s, 3));
    case M_ISLOWER: return jv_bool(str_cased(s, true));
    case M_ISUPPER: return jv_bool(str_cased(s, false));
    }
    jx_fail(c, pos, "internal error: unknown method");
}
