/* Jinja interpreter: evaluation of expressions and execution of statements.
 *
 * Scopes follow Jinja2: each loop iteration, macro call and {% with %} has its own frame
 * (so `set` inside a loop does not leak out of it; namespaces exist for that), while
 * `if` blocks share the enclosing frame. A macro sees its own frame and the top level. */
#include <math.h>
#include <string.h>

#include "chat/jinja_int.h"

/* ------------------------------------------------------------------ scopes */

static void push_frame(jctx *c, bool barrier) {
    if (c->n_frames == c->cap_frames) {
        size_t nc = c->cap_frames ? c->cap_frames * 2 : 16;
        jframe *f = ja_alloc(c, nc * sizeof *f);
        if (c->n_frames) memcpy(f, c->frames, c->n_frames * sizeof *f);
        c->frames = f;
        c->cap_frames = nc;
    }
    c->frames[c->n_frames++] = (jframe){.base = c->n_binds, .barrier = barrier};
}

static void pop_frame(jctx *c) {
    c->n_binds = c->frames[c->n_frames - 1].base;
    c->n_frames--;
}

static void bind(jctx *c, jstr name, jv value) {
    size_t base = c->frames[c->n_frames - 1].base;
    for (size_t i = c->n_binds; i > base; i--)
        if (js_equal(c->binds[i - 1].name, name)) {
            c->binds[i - 1].value = value;
            return;
        }
    if (c->n_binds == c->cap_binds) {
        size_t nc = c->cap_binds ? c->cap_binds * 2 : 32;
        jbind *b = ja_alloc(c, nc * sizeof *b);
        if (c->n_binds) memcpy(b, c->binds, c->n_binds * sizeof *b);
        c->binds = b;
        c->cap_binds = nc;
    }
    c->binds[c->n_binds++] = (jbind){name, value};
}

static bool find_in_frame(const jctx *c, size_t f, jstr name, jv *out) {
    size_t base = c->frames[f].base;
    size_t end = f + 1 < c->n_frames ? c->frames[f + 1].base : c->n_binds;
    for (size_t i = end; i > base; i--)
        if (js_equal(c->binds[i - 1].name, name)) {
            *out = c->binds[i - 1].value;
            return true;
        }
    return false;
}

JX_NOINLINE jv jx_lookup(jctx *c, jstr name) {
    jv v;
    for (size_t f = c->n_frames; f > 0; f--) {
        if (find_in_frame(c, f - 1, name, &v)) return v;
        if (c->frames[f - 1].barrier) {
            if (find_in_frame(c, 0, name, &v)) return v;
            break;
        }
    }
    int id = jx_global_id(name);
    if (id < 0) return jv_undef();
    jfunc *fn = ja_alloc(c, sizeof *fn);
    memset(fn, 0, sizeof *fn);
    fn->kind = JF_BUILTIN;
    fn->id = id;
    return (jv){.type = JV_FUNC, .fn = fn};
}

/* ------------------------------------------------------------------ output */

static void emit(jctx *c, uint32_t pos, const char *p, size_t n) {
    if (c->out->n + n > JINJA_MAX_OUTPUT)
        jx_fail(c, pos, "template output exceeds %zu MiB", JINJA_MAX_OUTPUT >> 20);
    jb_put(c, c->out, p, n);
}

/* Runs body with its output going to a fresh buffer; returns that text. */
static jstr capture(jctx *c, const jnode *body) {
    jbuf *saved = c->out;
    jbuf tmp = {0};
    c->out = &tmp;
    jx_exec(c, body);
    c->out = saved;
    return jb_str(&tmp);
}

/* ---------------------------------------------------------- attributes */

static jv bound_method(jctx *c, int id, jv self) {
    jfunc *fn = ja_alloc(c, sizeof *fn);
    memset(fn, 0, sizeof *fn);
    fn->kind = JF_METHOD;
    fn->id = id;
    fn->self = self;
    return (jv){.type = JV_FUNC, .fn = fn};
}

static jv loop_attr(jctx *c, const jloop *l, jstr name) {
    size_t n = l->items->n, i = l->index0;
    if (js_eq_cstr(name, "index")) return jv_int((int64_t)i + 1);
    if (js_eq_cstr(name, "index0")) return jv_int((int64_t)i);
    if (js_eq_cstr(name, "revindex")) return jv_int((int64_t)(n - i));
    if (js_eq_cstr(name, "revindex0")) return jv_int((int64_t)(n - i - 1));
    if (js_eq_cstr(name, "first")) return jv_bool(i == 0);
    if (js_eq_cstr(name, "last")) return jv_bool(i + 1 == n);
    if (js_eq_cstr(name, "length")) return jv_int((int64_t)n);
    if (js_eq_cstr(name, "depth")) return jv_int(l->depth);
    if (js_eq_cstr(name, "depth0")) return jv_int(l->depth - 1);
    if (js_eq_cstr(name, "previtem")) return i > 0 ? l->items->v[i - 1] : jv_undef();
    if (js_eq_cstr(name, "nextitem")) return i + 1 < n ? l->items->v[i + 1] : jv_undef();
    (void)c;
    return jv_undef();
}

JX_NOINLINE jv jx_getattr(jctx *c, uint32_t pos, jv obj, jstr name) {
    (void)pos;
    if (obj.type == JV_LOOP) {
        int id = jx_method_id(obj, name);
        if (id >= 0) return bound_method(c, id, obj);
        return loop_attr(c, obj.loop, name);
    }
    if (obj.type == JV_DICT && obj.dict->ns) {
        jv v;
        return jv_dict_get(obj.dict, jv_str(name), &v) ? v : jv_undef();
    }
    int id = jx_method_id(obj, name);
    if (id >= 0) return bound_method(c, id, obj);
    if (obj.type == JV_DICT) {
        jv v;
        return jv_dict_get(obj.dict, jv_str(name), &v) ? v : jv_undef();
    }
    return jv_undef();
}

JX_NOINLINE jv jx_getitem(jctx *c, uint32_t pos, jv obj, jv key) {
    switch (obj.type) {
    case JV_DICT: {
        jv v;
        if (jv_dict_get(obj.dict, key, &v)) return v;
        return key.type == JV_STR && !obj.dict->ns ? jx_getattr(c, pos, obj, key.s)
                                                   : jv_undef();
    }
    case JV_LIST:
        if (key.type == JV_INT || key.type == JV_BOOL) {
            int64_t i = key.type == JV_BOOL ? key.b : key.i;
            int64_t n = (int64_t)obj.list->n;
            if (i < 0) i += n;
            return i >= 0 && i < n ? obj.list->v[i] : jv_undef();
        }
        return key.type == JV_STR ? jx_getattr(c, pos, obj, key.s) : jv_undef();
    case JV_STR:
        if (key.type == JV_INT || key.type == JV_BOOL) {
            bool ok;
            jv ch = js_index(c, obj.s, key.type == JV_BOOL ? key.b : key.i, &ok);
            return ok ? ch : jv_undef();
        }
        return key.type == JV_STR ? jx_getattr(c, pos, obj, key.s) : jv_undef();
    case JV_LOOP: return key.type == JV_STR ? jx_getattr(c, pos, obj, key.s) : jv_undef();
    default: return jv_undef();
    }
}

const jlist *jx_iter(jctx *c, uint32_t pos, jv v) {
    static const jlist empty = {0, false, NULL};
    switch (v.type) {
    case JV_UNDEF: return &empty;
    case JV_LIST: return v.list;
    case JV_STR: return js_chars(c, v.s).list;
    case JV_DICT:
        if (!v.dict->ns) {
            jv keys = jv_list_new(c, v.dict->n, false);
            for (size_t i = 0; i < v.dict->n; i++)
                keys.list->v[i] = v.dict->k[i];
            return keys.list;
        }
        break;
    default: break;
    }
    jx_fail(c, pos, "'%s' object is not iterable", jv_type_name(v));
}

/* ---------------------------------------------------------------- slices */

static int64_t slice_part(jctx *c, const jnode *n, int64_t dflt) {
    if (!n) return dflt;
    jv v = jx_eval(c, n);
    if (v.type == JV_NONE || v.type == JV_UNDEF) return dflt;
    if (v.type == JV_BOOL) return v.b;
    if (v.type != JV_INT) jx_fail(c, n->pos, "slice indices must be integers or None");
    return v.i;
}

static JX_NOINLINE jv eval_slice(jctx *c, const jnode *n) {
    jv obj = jx_eval(c, n->a);
    int64_t step = slice_part(c, n->d, 1);
    if (step == 0) jx_fail(c, n->pos, "slice step cannot be zero");
    if (obj.type == JV_UNDEF) return obj;
    if (obj.type != JV_LIST && obj.type != JV_STR)
        jx_fail(c, n->pos, "'%s' object is not subscriptable", jv_type_name(obj));
    const jlist *src = NULL;
    bool ascii = obj.type == JV_STR && u8_count(obj.s) == obj.s.n;
    int64_t len;
    if (obj.type == JV_LIST)
        src = obj.list, len = (int64_t)src->n;
    else if (ascii)
        len = (int64_t)obj.s.n;
    else
        src = js_chars(c, obj.s).list, len = (int64_t)src->n;
    int64_t lo = step > 0 ? 0 : -1, hi = step > 0 ? len : len - 1;
    int64_t start = slice_part(c, n->b, step > 0 ? 0 : len - 1);
    int64_t stop = slice_part(c, n->c, step > 0 ? len : -1 - len);
    if (start < 0) start += len;
    if (start < lo) start = lo;
    if (start > hi) start = hi;
    if (n->c) {
        if (stop < 0) stop += len;
        if (stop < lo) stop = lo;
        if (stop > hi) stop = hi;
    } else {
        stop = step > 0 ? len : -1;
    }
    int64_t count = 0;
    if (step > 0 && stop > start) count = (stop - start + step - 1) / step;
    if (step < 0 && start > stop) count = (start - stop - step - 1) / (-step);
    if (obj.type == JV_STR) {
        if (ascii && step == 1) return jv_str((jstr){obj.s.p + start, (size_t)count});
        jbuf b = {0};
        for (int64_t k = 0, i = start; k < count; k++, i += step) {
            if (ascii)
                jb_putc(c, &b, obj.s.p[i]);
            else
                jb_put(c, &b, src->v[i].s.p, src->v[i].s.n);
        }
        return jv_str(jb_str(&b));
    }
    jv out = jv_list_new(c, (size_t)count, obj.list->tuple);
    for (int64_t k = 0, i = start; k < count; k++, i += step)
        out.list->v[k] = src->v[i];
    return out;
}

/* ------------------------------------------------------------- operators */

static JX_NOINLINE bool contains(jctx *c, uint32_t pos, jv container, jv item) {
    switch (container.type) {
    case JV_UNDEF: return false;
    case JV_STR:
        if (item.type != JV_STR)
            jx_fail(c, pos, "'in <string>' requires string as left operand, not %s",
                    jv_type_name(item));
        return js_find(container.s, item.s) != NULL;
    case JV_LIST:
        for (size_t i = 0; i < container.list->n; i++)
            if (jv_equal(container.list->v[i], item)) return true;
        return false;
    case JV_DICT: return jv_dict_get(container.dict, item, NULL);
    default: jx_fail(c, pos, "argument of type '%s' is not iterable", jv_type_name(container));
    }
}

static int64_t as_int(jv v) {
    return v.type == JV_BOOL ? v.b : v.i;
}
static bool is_intlike(jv v) {
    return v.type == JV_INT || v.type == JV_BOOL;
}

_Noreturn static void bad_operands(jctx *c, uint32_t pos, const char *op, jv a, jv b) {
    if (a.type == JV_UNDEF || b.type == JV_UNDEF)
        jx_fail(c, pos, "'%s' applied to an undefined value", op);
    jx_fail(c, pos, "unsupported operand types for %s: '%s' and '%s'", op, jv_type_name(a),
            jv_type_name(b));
}

static jv repeat(jctx *c, uint32_t pos, jv seq, int64_t times) {
    if (times < 0) times = 0;
    if (seq.type == JV_STR) {
        if (seq.s.n && (uint64_t)times > JINJA_MAX_OUTPUT / seq.s.n)
            jx_fail(c, pos, "string repetition too large");
        jbuf b = {0};
        for (int64_t i = 0; i < times; i++)
            jb_put(c, &b, seq.s.p, seq.s.n);
        return jv_str(jb_str(&b));
    }
    size_t n = seq.list->n;
    if (n && (uint64_t)times > JINJA_MAX_STEPS / n)
        jx_fail(c, pos, "list repetition too large");
    jv out = jv_list_new(c, n * (size_t)times, seq.list->tuple);
    for (int64_t i = 0; i < times; i++)
        for (size_t k = 0; k < n; k++)
            out.list->v[(size_t)i * n + k] = seq.list->v[k];
    return out;
}

/* Python's str % args, for %s %r %d %i %f %% (no widths beyond an optional precision). */
jv jx_percent_format(jctx *c, uint32_t pos, jstr fmt, jv args) {
    const jv *av = &args;
    size_t an = 1, ai = 0;
    if (args.type == JV_LIST && args.list->tuple) av = args.list->v, an = args.list->n;
    jbuf b = {0};
    for (size_t i = 0; i < fmt.n; i++) {
        char ch = fmt.p[i];
        if (ch != '%') {
            jb_putc(c, &b, ch);
            continue;
        }
        if (++i >= fmt.n) jx_fail(c, pos, "incomplete format");
        int prec = -1;
        if (fmt.p[i] == '.') {
            prec = 0;
            while (++i < fmt.n && fmt.p[i] >= '0' && fmt.p[i] <= '9')
                prec = prec * 10 + (fmt.p[i] - '0');
            if (i >= fmt.n) jx_fail(c, pos, "incomplete format");
        }
        char conv = fmt.p[i];
        if (conv == '%') {
            jb_putc(c, &b, '%');
            continue;
        }
        if (ai >= an) jx_fail(c, pos, "not enough arguments for format string");
        jv a = av[ai++];
        if (conv == 's')
            jv_write_str(c, &b, a);
        else if (conv == 'r')
            jv_write_repr(c, &b, a);
        else if (conv == 'd' || conv == 'i') {
            if (!jv_is_number(a)) jx_fail(c, pos, "%%%c format: a number is required", conv);
            jb_printf(c, &b, "%lld",
                      a.type == JV_FLOAT ? (long long)a.f : (long long)as_int(a));
        } else if (conv == 'f') {
            if (!jv_is_number(a)) jx_fail(c, pos, "%%f format: a number is required");
            jb_printf(c, &b, "%.*f", prec < 0 ? 6 : prec, jv_as_double(a));
        } else
            jx_fail(c, pos, "unsupported format character '%c'", conv);
    }
    if (ai < an && args.type == JV_LIST && args.list->tuple)
        jx_fail(c, pos, "not all arguments converted during string formatting");
    return jv_str(jb_str(&b));
}

JX_NOINLINE jv jx_arith(jctx *c, uint32_t pos, jop op, jv a, jv b) {
    static const char *const names[] = {
        [JO_ADD] = "+",       [JO_SUB] = "-", [JO_MUL] = "*", [JO_DIV] = "/",
        [JO_FLOORDIV] = "//", [JO_MOD] = "%", [JO_POW] = "**"};
    const char *name = names[op];
    bool nums = jv_is_number(a) && jv_is_number(b);
    bool ints = is_intlike(a) && is_intlike(b);
    switch (op) {
    case JO_ADD:
        if (ints) {
            int64_t x = as_int(a), y = as_int(b);
            if ((y > 0 && x > INT64_MAX - y) || (y < 0 && x < INT64_MIN - y))
                jx_fail(c, pos, "integer overflow");
            return jv_int(x + y);
        }
        if (nums) return jv_float(jv_as_double(a) + jv_as_double(b));
        if (a.type == JV_STR && b.type == JV_STR) {
            if (!a.s.n) return b;
            if (!b.s.n) return a;
            jbuf s = {0};
            jb_put(c, &s, a.s.p, a.s.n);
            jb_put(c, &s, b.s.p, b.s.n);
            return jv_str(jb_str(&s));
        }
        if (a.type == JV_LIST && b.type == JV_LIST && a.list->tuple == b.list->tuple) {
            jv out = jv_list_new(c, a.list->n + b.list->n, a.list->tuple);
            for (size_t i = 0; i < a.list->n; i++)
                out.list->v[i] = a.list->v[i];
            for (size_t i = 0; i < b.list->n; i++)
                out.list->v[a.list->n + i] = b.list->v[i];
            return out;
        }
        break;
    case JO_SUB:
        if (ints) {
            int64_t x = as_int(a), y = as_int(b);
            if ((y < 0 && x > INT64_MAX + y) || (y > 0 && x < INT64_MIN + y))
                jx_fail(c, pos, "integer overflow");
            return jv_int(x - y);
        }
        if (nums) return jv_float(jv_as_double(a) - jv_as_double(b));
        break;
    case JO_MUL:
        if (ints) {
            int64_t x = as_int(a), y = as_int(b);
            if (x != 0 && y != 0) {
                int64_t r = (int64_t)((uint64_t)x * (uint64_t)y);
                if ((x == -1 && y == INT64_MIN) || (y == -1 && x == INT64_MIN) || r / y != x)
                    jx_fail(c, pos, "integer overflow");
                return jv_int(r);
            }
            return jv_int(0);
        }
        if (nums) return jv_float(jv_as_double(a) * jv_as_double(b));
        if ((a.type == JV_STR || a.type == JV_LIST) && is_intlike(b))
            return repeat(c, pos, a, as_int(b));
        if ((b.type == JV_STR || b.type == JV_LIST) && is_intlike(a))
            return repeat(c, pos, b, as_int(a));
        break;
    case JO_DIV:
        if (nums) {
            if (jv_as_double(b) == 0.0) jx_fail(c, pos, "division by zero");
            return jv_float(jv_as_double(a) / jv_as_double(b));
        }
        break;
    case JO_FLOORDIV:
    case JO_MOD:
        if (ints) {
            int64_t x = as_int(a), y = as_int(b);
            if (y == 0) jx_fail(c, pos, "integer division or modulo by zero");
            if (x == INT64_MIN && y == -1) {
                if (op == JO_MOD) return jv_int(0);
                jx_fail(c, pos, "integer overflow");
            }
            int64_t q = x / y, r = x % y;
            if (r != 0 && ((r < 0) != (y < 0))) q--, r += y;
            return jv_int(op == JO_FLOORDIV ? q : r);
        }
        if (nums) { /* CPython's float divmod */
            double x = jv_as_double(a), y = jv_as_double(b);
            if (y == 0.0) jx_fail(c, pos, "float division or modulo by zero");
            double mod = fmod(x, y), div = (x - mod) / y;
            if (mod != 0.0) {
                if ((y < 0) != (mod < 0)) {
                    mod += y;
                    div -= 1.0;
                }
            } else {
                mod = copysign(0.0, y);
            }
            if (op == JO_MOD) return jv_float(mod);
            double fd;
            if (div != 0.0) {
                fd = floor(div);
                if (div - fd > 0.5) fd += 1.0;
            } else {
                fd = copysign(0.0, x / y);
            }
            return jv_float(fd);
        }
        if (op == JO_MOD && a.type == JV_STR) return jx_percent_format(c, pos, a.s, b);
        break;
    case JO_POW:
        if (ints && as_int(b) >= 0) {
            int64_t base = as_int(a), e = as_int(b), r = 1;
            while (e > 0) {
                if (e & 1) {
                    if (base != 0 &&
                        (r > INT64_MAX / (base < 0 ? -base : base) || base == INT64_MIN))
                        jx_fail(c, pos, "integer overflow");
                    r *= base;
                }
                e >>= 1;
                if (e) {
                    if (base > 3037000499 || base < -3037000499)
                        jx_fail(c, pos, "integer overflow");
                    base *= base;
                }
            }
            return jv_int(r);
        }
        if (nums) return jv_float(pow(jv_as_double(a), jv_as_double(b)));
        break;
    default: break;
    }
    bad_operands(c, pos, name, a, b);
}

static JX_NOINLINE bool compare_op(jctx *c, uint32_t pos, jop op, jv a, jv b) {
    switch (op) {
    case JO_EQ: return jv_equal(a, b);
    case JO_NE: return !jv_equal(a, b);
    case JO_IN: return contains(c, pos, b, a);
    case JO_NOTIN: return !contains(c, pos, b, a);
    default: break;
    }
    if (a.type == JV_FLOAT && isnan(a.f)) return false;
    if (b.type == JV_FLOAT && isnan(b.f)) return false;
    int r = jv_compare(c, pos, a, b);
    switch (op) {
    case JO_LT: return r < 0;
    case JO_LE: return r <= 0;
    case JO_GT: return r > 0;
    case JO_GE: return r >= 0;
    default: return false;
    }
}

/* ----------------------------------------------------------------- calls */

typedef struct argv_ {
    jv *pos;
    size_t n;
    jv *kw;
} argv_;

static JX_NOINLINE argv_ eval_args(jctx *c, const jnode *n) {
    argv_ a = {0};
    if (n->n_items) {
        a.pos = ja_alloc(c, n->n_items * sizeof *a.pos);
        for (size_t i = 0; i < n->n_items; i++)
            a.pos[i] = jx_eval(c, n->items[i]);
    }
    a.n = n->n_items;
    if (n->n_names) {
        a.kw = ja_alloc(c, n->n_names * sizeof *a.kw);
        for (size_t i = 0; i < n->n_names; i++)
            a.kw[i] = jx_eval(c, n->items2[i]);
    }
    return a;
}

static jv call_macro(jctx *c, uint32_t pos, const jnode *m, const jv *args, size_t n_args,
                     const jstr *kw_names, const jv *kw_vals, size_t n_kw) {
    if (n_args > m->n_names)
        jx_fail(c, pos, "macro '%.*s' takes at most %zu argument(s), %zu given", (int)m->name.n,
                m->name.p, m->n_names, n_args);
    jx_step(c, pos);
    push_frame(c, true);
    for (size_t i = 0; i < m->n_names; i++) {
        jv v = jv_undef();
        bool set = false;
        if (i < n_args) {
            v = args[i];
            set = true;
        }
        for (size_t k = 0; k < n_kw; k++)
            if (js_equal(kw_names[k], m->names[i])) {
                if (set)
                    jx_fail(c, pos, "macro '%.*s' got multiple values for argument '%.*s'",
                            (int)m->name.n, m->name.p, (int)m->names[i].n, m->names[i].p);
                v = kw_vals[k];
                set = true;
            }
        if (!set && m->items[i]) v = jx_eval(c, m->items[i]);
        bind(c, m->names[i], v);
    }
    for (size_t k = 0; k < n_kw; k++) {
        bool known = false;
        for (size_t i = 0; i < m->n_names; i++)
            known |= js_equal(kw_names[k], m->names[i]);
        if (!known)
            jx_fail(c, pos, "macro '%.*s' has no argument named '%.*s'", (int)m->name.n,
                    m->name.p, (int)kw_names[k].n, kw_names[k].p);
    }
    jstr text = capture(c, m->b);
    pop_frame(c);
    return jv_str(text);
}

jv jx_call(jctx *c, uint32_t pos, jv fn, const jv *args, size_t n_args, const jstr *kw_names,
           const jv *kw_vals, size_t n_kw) {
    if (fn.type != JV_FUNC) {
        if (fn.type == JV_UNDEF) jx_fail(c, pos, "call of an undefined name or method");
        jx_fail(c, pos, "'%s' object is not callable", jv_type_name(fn));
    }
    switch (fn.fn->kind) {
    case JF_BUILTIN: return jx_global(c, pos, fn.fn->id, args, n_args, kw_names, kw_vals, n_kw);
    case JF_METHOD:
        return jx_method(c, pos, fn.fn->id, fn.fn->self, args, n_args, kw_names, kw_vals, n_kw);
    case JF_MACRO:
        return call_macro(c, pos, fn.fn->macro, args, n_args, kw_names, kw_vals, n_kw);
    }
    return jv_undef();
}

/* Applies a filter chain whose innermost input is NULL (filter blocks, set blocks). */
static void enter(jctx *c, uint32_t pos);
static jv apply_filters(jctx *c, const jnode *f, jv input) {
    if (!f) return input;
    enter(c, f->pos);
    jv in = apply_filters(c, f->a, input);
    argv_ a = eval_args(c, f);
    jv out = jx_filter(c, f->pos, f->id, in, a.pos, a.n, f->names, a.kw, f->n_names);
    c->depth--;
    return out;
}

/* -------------------------------------------------------------- evaluation */

static void enter(jctx *c, uint32_t pos) {
    if (++c->depth > JINJA_MAX_DEPTH)
        jx_fail(c, pos, "template nested too deeply (more than %d levels)", JINJA_MAX_DEPTH);
}

/* The cases of eval_inner that need locals live in their own (not inlined) functions, so
 * that the recursive path eval -> eval_inner -> eval keeps a small stack frame. */
static JX_NOINLINE jv eval_call(jctx *c, const jnode *n) {
    jv fn;
    if (n->a->type == JN_GETATTR) {
        jv obj = jx_eval(c, n->a->a);
        fn = jx_getattr(c, n->a->pos, obj, n->a->name);
        if (fn.type == JV_UNDEF)
            jx_fail(c, n->pos, "'%s' object has no method '%.*s'", jv_type_name(obj),
                    (int)n->a->name.n, n->a->name.p);
    } else {
        fn = jx_eval(c, n->a);
        if (fn.type == JV_UNDEF && n->a->type == JN_NAME)
            jx_fail(c, n->pos, "'%.*s' is undefined", (int)n->a->name.n, n->a->name.p);
    }
    argv_ a = eval_args(c, n);
    return jx_call(c, n->pos, fn, a.pos, a.n, n->names, a.kw, n->n_names);
}

static JX_NOINLINE jv eval_filter_or_test(jctx *c, const jnode *n) {
    jv in = jx_eval(c, n->a);
    argv_ a = eval_args(c, n);
    if (n->type == JN_TEST) return jv_bool(jx_test(c, n->pos, n->id, in, a.pos, a.n));
    return jx_filter(c, n->pos, n->id, in, a.pos, a.n, n->names, a.kw, n->n_names);
}

static JX_NOINLINE jv eval_unary(jctx *c, const jnode *n) {
    jv v = jx_eval(c, n->a);
    if (n->type == JN_POS && jv_is_number(v)) return v.type == JV_BOOL ? jv_int(v.b) : v;
    if (v.type == JV_FLOAT) return jv_float(-v.f);
    if (is_intlike(v)) {
        if (as_int(v) == INT64_MIN) jx_fail(c, n->pos, "integer overflow");
        return jv_int(-as_int(v));
    }
    jx_fail(c, n->pos, "bad operand type for unary %c: '%s'", n->type == JN_NEG ? '-' : '+',
            jv_type_name(v));
}

static JX_NOINLINE jv eval_binop(jctx *c, const jnode *n) {
    jv a = jx_eval(c, n->a);
    return jx_arith(c, n->pos, n->op, a, jx_eval(c, n->b));
}

static JX_NOINLINE jv eval_compare(jctx *c, const jnode *n) {
    jv left = jx_eval(c, n->a);
    for (size_t i = 0; i < n->n_items; i++) {
        jv right = jx_eval(c, n->items[i]);
        if (!compare_op(c, n->items[i]->pos, n->ops[i], left, right)) return jv_bool(false);
        left = right;
    }
    return jv_bool(true);
}

static JX_NOINLINE jv eval_concat(jctx *c, const jnode *n) {
    jbuf b = {0};
    for (size_t i = 0; i < n->n_items; i++)
        jv_write_str(c, &b, jx_eval(c, n->items[i]));
    return jv_str(jb_str(&b));
}

static JX_NOINLINE jv eval_list(jctx *c, const jnode *n) {
    jv l = jv_list_new(c, n->n_items, n->type == JN_TUPLE);
    for (size_t i = 0; i < n->n_items; i++)
        l.list->v[i] = jx_eval(c, n->items[i]);
    return l;
}

static JX_NOINLINE jv eval_dict(jctx *c, const jnode *n) {
    jv d = jv_dict_new(c);
    for (size_t i = 0; i < n->n_items; i++) {
        jv k = jx_eval(c, n->items[i]);
        if (k.type == JV_LIST && !k.list->tuple)
            jx_fail(c, n->items[i]->pos, "unhashable type: 'list'");
        if (k.type == JV_DICT) jx_fail(c, n->items[i]->pos, "unhashable type: 'dict'");
        jv_dict_set(c, d.dict, k, jx_eval(c, n->items2[i]));
    }
    return d;
}

static JX_NOINLINE jv eval_getitem(jctx *c, const jnode *n) {
    jv obj = jx_eval(c, n->a);
    return jx_getitem(c, n->pos, obj, jx_eval(c, n->b));
}

static JX_NOINLINE jv eval_andor(jctx *c, const jnode *n) {
    jv a = jx_eval(c, n->a);
    if (n->type == JN_AND) return jv_truthy(a) ? jx_eval(c, n->b) : a;
    return jv_truthy(a) ? a : jx_eval(c, n->b);
}

static jv eval_inner(jctx *c, const jnode *n) {
    switch (n->type) {
    case JN_CONST: return n->value;
    case JN_NAME: return jx_lookup(c, n->name);
    case JN_GETATTR: return jx_getattr(c, n->pos, jx_eval(c, n->a), n->name);
    case JN_GETITEM: return eval_getitem(c, n);
    case JN_SLICE: return eval_slice(c, n);
    case JN_CALL: return eval_call(c, n);
    case JN_FILTER:
    case JN_TEST: return eval_filter_or_test(c, n);
    case JN_NEG:
    case JN_POS: return eval_unary(c, n);
    case JN_NOT: return jv_bool(!jv_truthy(jx_eval(c, n->a)));
    case JN_AND:
    case JN_OR: return eval_andor(c, n);
    case JN_BINOP: return eval_binop(c, n);
    case JN_COMPARE: return eval_compare(c, n);
    case JN_CONCAT: return eval_concat(c, n);
    case JN_COND:
        if (jv_truthy(jx_eval(c, n->a))) return jx_eval(c, n->b);
        return n->c ? jx_eval(c, n->c) : jv_undef();
    case JN_LIST:
    case JN_TUPLE: return eval_list(c, n);
    case JN_DICT: return eval_dict(c, n);
    default: break;
    }
    jx_fail(c, n->pos, "internal error: statement used as an expression");
}

jv jx_eval(jctx *c, const jnode *n) {
    enter(c, n->pos);
    jv v = eval_inner(c, n);
    c->depth--;
    return v;
}

static void assign_targets(jctx *c, uint32_t pos, const jstr *names, size_t n, jv value) {
    if (n == 1) {
        bind(c, names[0], value);
        return;
    }
    const jlist *items = jx_iter(c, pos, value);
    if (items->n != n)
        jx_fail(c, pos, "%s values to unpack (expected %zu, got %zu)",
                items->n > n ? "too many" : "not enough", n, items->n);
    for (size_t i = 0; i < n; i++)
        bind(c, names[i], items->v[i]);
}

static JX_NOINLINE void exec_for(jctx *c, const jnode *n) {
    jv seq = jx_eval(c, n->a);
    const jlist *items = jx_iter(c, n->a->pos, seq);
    if (n->b) { /* `for x in xs if cond`: filter first, so loop.* counts kept items */
        jv kept = jv_list_new(c, 0, false);
        size_t cap = 0;
        for (size_t i = 0; i < items->n; i++) {
            jx_step(c, n->pos);
            push_frame(c, false);
            assign_targets(c, n->pos, n->names, n->n_names, items->v[i]);
            bool ok = jv_truthy(jx_eval(c, n->b));
            pop_frame(c);
            if (ok) jl_push(c, &kept, &cap, items->v[i]);
        }
        items = kept.list;
    }
    if (items->n == 0) {
        if (n->d) {
            push_frame(c, false);
            jx_exec(c, n->d);
            pop_frame(c);
        }
        return;
    }
    jloop *loop = ja_alloc(c, sizeof *loop);
    loop->items = items;
    loop->depth = 1;
    for (size_t i = 0; i < items->n; i++) {
        jx_step(c, n->pos);
        loop->index0 = i;
        push_frame(c, false);
        bind(c, JSTR("loop"), (jv){.type = JV_LOOP, .loop = loop});
        assign_targets(c, n->pos, n->names, n->n_names, items->v[i]);
        jx_exec(c, n->c);
        pop_frame(c);
        if (c->ctl == JC_BREAK) {
            c->ctl = JC_NONE;
            break;
        }
        c->ctl = JC_NONE;
    }
}

static JX_NOINLINE void exec_output(jctx *c, const jnode *n) {
    jstr s = jv_to_str(c, jx_eval(c, n->a));
    emit(c, n->pos, s.p, s.n);
}

static JX_NOINLINE void exec_nsset(jctx *c, const jnode *n) {
    jv ns = jx_lookup(c, n->name);
    if (ns.type != JV_DICT || !ns.dict->ns)
        jx_fail(c, n->pos, "cannot assign attribute on non-namespace object '%.*s'",
                (int)n->name.n, n->name.p);
    jv_dict_set(c, ns.dict, jv_str(n->attr), jx_eval(c, n->a));
}

static JX_NOINLINE void exec_blocks(jctx *c, const jnode *n) {
    jv v = jv_str(capture(c, n->b));
    v = apply_filters(c, n->a, v);
    if (n->type == JN_SETBLOCK) {
        bind(c, n->names[0], v);
    } else { /* JN_FILTERBLOCK */
        jstr s = jv_to_str(c, v);
        emit(c, n->pos, s.p, s.n);
    }
}

static JX_NOINLINE void exec_macro_def(jctx *c, const jnode *n) {
    jfunc *fn = ja_alloc(c, sizeof *fn);
    memset(fn, 0, sizeof *fn);
    fn->kind = JF_MACRO;
    fn->macro = n;
    bind(c, n->name, (jv){.type = JV_FUNC, .fn = fn});
}

static JX_NOINLINE void exec_scope(jctx *c, const jnode *n) {
    jv *vals = n->n_names ? ja_alloc(c, n->n_names * sizeof *vals) : NULL;
    for (size_t i = 0; i < n->n_names; i++)
        vals[i] = jx_eval(c, n->items2[i]);
    push_frame(c, false);
    for (size_t i = 0; i < n->n_names; i++)
        bind(c, n->names[i], vals[i]);
    jx_exec(c, n->b);
    pop_frame(c);
}

static JX_NOINLINE void exec_set(jctx *c, const jnode *n) {
    assign_targets(c, n->pos, n->names, n->n_names, jx_eval(c, n->a));
}

static void exec_inner(jctx *c, const jnode *n) {
    switch (n->type) {
    case JN_BODY:
        for (size_t i = 0; i < n->n_items && c->ctl == JC_NONE; i++)
            jx_exec(c, n->items[i]);
        return;
    case JN_TEXT: emit(c, n->pos, n->name.p, n->name.n); return;
    case JN_OUTPUT: exec_output(c, n); return;
    case JN_IF:
        if (jv_truthy(jx_eval(c, n->a)))
            jx_exec(c, n->b);
        else if (n->c)
            jx_exec(c, n->c);
        return;
    case JN_FOR: exec_for(c, n); return;
    case JN_SET: exec_set(c, n); return;
    case JN_NSSET: exec_nsset(c, n); return;
    case JN_SETBLOCK:
    case JN_FILTERBLOCK: exec_blocks(c, n); return;
    case JN_MACRO: exec_macro_def(c, n); return;
    case JN_BREAK: c->ctl = JC_BREAK; return;
    case JN_CONTINUE: c->ctl = JC_CONTINUE; return;
    case JN_SCOPE: exec_scope(c, n); return;
    default: break;
    }
    jx_fail(c, n->pos, "internal error: expression used as a statement");
}

void jx_exec(jctx *c, const jnode *n) {
    enter(c, n->pos);
    exec_inner(c, n);
    c->depth--;
}

void jx_begin_globals(jctx *c) {
    push_frame(c, false);
}

void jx_set_global(jctx *c, const char *name, jv value) {
    bind(c, (jstr){name, strlen(name)}, value);
}
