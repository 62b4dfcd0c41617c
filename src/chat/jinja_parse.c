/* Jinja interpreter: the parser. Recursive descent over the tokens, with Jinja2's
 * grammar and operator precedence (loosest first): `a if c else b`, or, and, not,
 * comparisons (== != < <= > >= in, not in; chained), + -, ~, * / // %, **, unary - +,
 * then postfix . [] () and filters | / tests `is`. Filter and test names are resolved
 * here, so an unknown one is an error even in a branch that never runs (as in Jinja2). */
#include <stdio.h>
#include <string.h>

#include "chat/jinja_int.h"

#define MAX_NESTING 64 /* brackets / unary operators / blocks inside each other */

typedef struct parser {
    jctx *c;
    const jtok *t;
    size_t n, i;
    int nesting;
    int loop_depth; /* for break/continue */
} parser;

typedef struct nvec {
    jnode **v;
    size_t n, cap;
} nvec;

typedef struct svec {
    jstr *v;
    size_t n, cap;
} svec;

static void nv_push(parser *P, nvec *v, jnode *x) {
    if (v->n == v->cap) {
        size_t nc = v->cap ? v->cap * 2 : 4;
        jnode **q = ja_alloc(P->c, nc * sizeof *q);
        if (v->n) memcpy(q, v->v, v->n * sizeof *q);
        v->v = q;
        v->cap = nc;
    }
    v->v[v->n++] = x;
}

static void sv_push(parser *P, svec *v, jstr x) {
    if (v->n == v->cap) {
        size_t nc = v->cap ? v->cap * 2 : 4;
        jstr *q = ja_alloc(P->c, nc * sizeof *q);
        if (v->n) memcpy(q, v->v, v->n * sizeof *q);
        v->v = q;
        v->cap = nc;
    }
    v->v[v->n++] = x;
}

static const jtok *cur(const parser *P) {
    return &P->t[P->i];
}
static const jtok *peek(const parser *P, size_t k) {
    return P->i + k < P->n ? &P->t[P->i + k] : &P->t[P->n - 1];
}
static const jtok *advance(parser *P) {
    const jtok *t = cur(P);
    if (P->i + 1 < P->n) P->i++;
    return t;
}

static bool tok_is_op(const jtok *t, jop op) {
    return t->type == JT_OP && t->op == op;
}
static bool tok_is_name(const jtok *t, const char *s) {
    return t->type == JT_NAME && js_eq_cstr(t->s, s);
}
static bool is_op(const parser *P, jop op) {
    return tok_is_op(cur(P), op);
}
static bool is_name(const parser *P, const char *s) {
    return tok_is_name(cur(P), s);
}

static const char *describe(const jtok *t, char *buf, size_t size) {
    switch (t->type) {
    case JT_EOF: return "end of template";
    case JT_TEXT: return "template data";
    case JT_VAR_BEGIN: return "'{{'";
    case JT_VAR_END: return "end of print statement '}}'";
    case JT_BLOCK_BEGIN: return "'{%'";
    case JT_BLOCK_END: return "end of statement block '%}'";
    case JT_NAME:
        snprintf(buf, size, "'%.*s'", (int)(t->s.n > 40 ? 40 : t->s.n), t->s.p);
        return buf;
    case JT_STRING: return "string";
    case JT_INT: return "integer";
    case JT_FLOAT: return "float";
    case JT_OP: break;
    }
    static const char *const names[] = {
        "",  "+",  "-",  "/", "//", "*", "%",  "**", "~", "[", "]", "(", ")", "{",
        "}", "==", "!=", ">", ">=", "<", "<=", "=",  ".", ":", "|", ",", ";",
    };
    snprintf(buf, size, "'%s'", t->op < sizeof names / sizeof names[0] ? names[t->op] : "?");
    return buf;
}

_Noreturn static void unexpected(parser *P, const char *expected) {
    char buf[64];
    const jtok *t = cur(P);
    if (expected)
        jx_fail(P->c, t->pos, "expected %s, got %s", expected, describe(t, buf, sizeof buf));
    jx_fail(P->c, t->pos, "unexpected %s", describe(t, buf, sizeof buf));
}

static void expect_op(parser *P, jop op, const char *what) {
    if (!is_op(P, op)) unexpected(P, what);
    advance(P);
}

static jstr expect_name(parser *P) {
    if (cur(P)->type != JT_NAME) unexpected(P, "a name");
    return advance(P)->s;
}

static void expect_block_end(parser *P) {
    if (cur(P)->type != JT_BLOCK_END) unexpected(P, "end of statement block '%}'");
    advance(P);
}

static void enter(parser *P) {
    if (++P->nesting > MAX_NESTING)
        jx_fail(P->c, cur(P)->pos, "template nested too deeply (more than %d levels)",
                MAX_NESTING);
}
static void leave(parser *P) {
    P->nesting--;
}

static jnode *mk(parser *P, jn_type type, uint32_t pos) {
    jnode *n = ja_alloc(P->c, sizeof *n);
    memset(n, 0, sizeof *n);
    n->type = type;
    n->pos = pos;
    return n;
}

/* ------------------------------------------------------------ expressions */

static jnode *parse_expression(parser *P, bool with_condexpr);
static jnode *parse_or(parser *P);
static jnode *parse_unary(parser *P, bool with_filter);
static jnode *parse_primary(parser *P);
static jnode *parse_postfix(parser *P, jnode *node);

static bool is_tuple_end(const parser *P, const char *extra) {
    const jtok *t = cur(P);
    if (t->type == JT_VAR_END || t->type == JT_BLOCK_END || t->type == JT_EOF) return true;
    if (tok_is_op(t, JO_RPAREN)) return true;
    return extra && tok_is_name(t, extra);
}

/* Comma-separated expressions; a tuple if there is a comma. */
static jnode *parse_tuple(parser *P, bool with_condexpr, const char *extra_end,
                          bool explicit_parens) {
    uint32_t pos = cur(P)->pos;
    nvec items = {0};
    bool is_tuple = false;
    for (;;) {
        if (items.n) expect_op(P, JO_COMMA, "','");
        if (is_tuple_end(P, extra_end)) break;
        nv_push(P, &items, parse_expression(P, with_condexpr));
        if (is_op(P, JO_COMMA))
            is_tuple = true;
        else
            break;
    }
    if (!is_tuple) {
        if (items.n) return items.v[0];
        if (!explicit_parens) unexpected(P, "an expression");
    }
    jnode *n = mk(P, JN_TUPLE, pos);
    n->items = items.v;
    n->n_items = items.n;
    return n;
}

static void parse_call_args(parser *P, jnode *n) {
    expect_op(P, JO_LPAREN, "'('");
    nvec args = {0}, kwv = {0};
    svec kwn = {0};
    while (!is_op(P, JO_RPAREN)) {
        if (args.n || kwn.n) {
            expect_op(P, JO_COMMA, "','");
            if (is_op(P, JO_RPAREN)) break;
        }
        if (is_op(P, JO_MUL) || is_op(P, JO_POW))
            jx_fail(P->c, cur(P)->pos, "*args and **kwargs in calls are not supported");
        if (cur(P)->type == JT_NAME && tok_is_op(peek(P, 1), JO_ASSIGN)) {
            sv_push(P, &kwn, advance(P)->s);
            advance(P);
            nv_push(P, &kwv, parse_expression(P, true));
        } else {
            if (kwn.n) jx_fail(P->c, cur(P)->pos, "positional argument after keyword argument");
            nv_push(P, &args, parse_expression(P, true));
        }
    }
    advance(P);
    n->items = args.v;
    n->n_items = args.n;
    n->names = kwn.v;
    n->items2 = kwv.v;
    n->n_names = kwn.n;
}

static jstr dotted_name(parser *P) {
    const jtok *first = cur(P);
    jstr name = expect_name(P);
    while (is_op(P, JO_DOT)) {
        advance(P);
        jstr part = expect_name(P);
        name.n = (size_t)(part.p + part.n - first->s.p); /* contiguous in the source */
    }
    return name;
}

/* `| name(args)`, repeatedly; input NULL for filter blocks. */
static jnode *parse_filters(parser *P, jnode *node, bool start_inline) {
    while (is_op(P, JO_PIPE) || start_inline) {
        if (!start_inline) advance(P);
        start_inline = false;
        uint32_t pos = cur(P)->pos;
        jstr name = dotted_name(P);
        int id = jx_filter_id(name);
        if (id < 0) jx_fail(P->c, pos, "no filter named '%.*s'", (int)name.n, name.p);
        jnode *f = mk(P, JN_FILTER, pos);
        f->a = node;
        f->name = name;
        f->id = id;
        if (is_op(P, JO_LPAREN)) parse_call_args(P, f);
        node = f;
    }
    return node;
}

static jnode *parse_test(parser *P, jnode *node) {
    uint32_t pos = advance(P)->pos; /* 'is' */
    bool negated = false;
    if (is_name(P, "not")) {
        advance(P);
        negated = true;
    }
    uint32_t npos = cur(P)->pos;
    jstr name = dotted_name(P);
    int id = jx_test_id(name);
    if (id < 0) jx_fail(P->c, npos, "no test named '%.*s'", (int)name.n, name.p);
    jnode *t = mk(P, JN_TEST, pos);
    t->a = node;
    t->name = name;
    t->id = id;
    const jtok *k = cur(P);
    if (is_op(P, JO_LPAREN)) {
        parse_call_args(P, t);
    } else if ((k->type == JT_NAME || k->type == JT_STRING || k->type == JT_INT ||
                k->type == JT_FLOAT || tok_is_op(k, JO_LBRACKET) || tok_is_op(k, JO_LBRACE)) &&
               !tok_is_name(k, "else") && !tok_is_name(k, "or") && !tok_is_name(k, "and")) {
        if (tok_is_name(k, "is")) jx_fail(P->c, k->pos, "cannot chain tests with 'is'");
        jnode *arg = parse_postfix(P, parse_primary(P));
        t->items = ja_alloc(P->c, sizeof *t->items);
        t->items[0] = arg;
        t->n_items = 1;
    }
    if (!negated) return t;
    jnode *n = mk(P, JN_NOT, pos);
    n->a = t;
    return n;
}

static jnode *parse_filter_expr(parser *P, jnode *node) {
    for (;;) {
        if (is_op(P, JO_PIPE))
            node = parse_filters(P, node, false);
        else if (is_name(P, "is"))
            node = parse_test(P, node);
        else if (is_op(P, JO_LPAREN)) {
            jnode *call = mk(P, JN_CALL, cur(P)->pos);
            call->a = node;
            parse_call_args(P, call);
            node = call;
        } else
            return node;
    }
}

/* One subscript: an expression or a slice a:b:c (each part optional). */
static jnode *parse_subscribed(parser *P, jnode *obj, uint32_t pos) {
    jnode *parts[3] = {NULL, NULL, NULL};
    if (!is_op(P, JO_COLON)) {
        jnode *e = parse_expression(P, true);
        if (!is_op(P, JO_COLON)) return e;
        parts[0] = e;
    }
    advance(P); /* ':' */
    if (!is_op(P, JO_COLON) && !is_op(P, JO_RBRACKET) && !is_op(P, JO_COMMA))
        parts[1] = parse_expression(P, true);
    if (is_op(P, JO_COLON)) {
        advance(P);
        if (!is_op(P, JO_RBRACKET) && !is_op(P, JO_COMMA)) parts[2] = parse_expression(P, true);
    }
    jnode *s = mk(P, JN_SLICE, pos);
    s->a = obj;
    s->b = parts[0];
    s->c = parts[1];
    s->d = parts[2];
    return s;
}

static jnode *parse_postfix(parser *P, jnode *node) {
    for (;;) {
        const jtok *t = cur(P);
        if (tok_is_op(t, JO_DOT)) {
            advance(P);
            const jtok *a = cur(P);
            if (a->type == JT_NAME) {
                advance(P);
                jnode *g = mk(P, JN_GETATTR, a->pos);
                g->a = node;
                g->name = a->s;
                node = g;
            } else if (a->type == JT_INT) {
                advance(P);
                jnode *k = mk(P, JN_CONST, a->pos);
                k->value = jv_int(a->i);
                jnode *g = mk(P, JN_GETITEM, a->pos);
                g->a = node;
                g->b = k;
                node = g;
            } else {
                unexpected(P, "a name or number after '.'");
            }
        } else if (tok_is_op(t, JO_LBRACKET)) {
            advance(P);
            enter(P);
            nvec args = {0};
            jnode *last = NULL;
            while (!is_op(P, JO_RBRACKET)) {
                if (args.n) expect_op(P, JO_COMMA, "','");
                last = parse_subscribed(P, node, t->pos);
                nv_push(P, &args, last);
            }
            expect_op(P, JO_RBRACKET, "']'");
            leave(P);
            if (args.n == 0) jx_fail(P->c, t->pos, "empty subscript");
            if (args.n == 1 && last->type == JN_SLICE && last->a == node) {
                node = last;
            } else {
                for (size_t i = 0; i < args.n; i++)
                    if (args.v[i]->type == JN_SLICE && args.v[i]->a == node)
                        jx_fail(P->c, t->pos, "multi-dimensional slices are not supported");
                jnode *g = mk(P, JN_GETITEM, t->pos);
                g->a = node;
                if (args.n == 1) {
                    g->b = args.v[0];
                } else {
                    jnode *tup = mk(P, JN_TUPLE, t->pos);
                    tup->items = args.v;
                    tup->n_items = args.n;
                    g->b = tup;
                }
                node = g;
            }
        } else if (tok_is_op(t, JO_LPAREN)) {
            jnode *call = mk(P, JN_CALL, t->pos);
            call->a = node;
            enter(P);
            parse_call_args(P, call);
            leave(P);
            node = call;
        } else {
            return node;
        }
    }
}

static jnode *parse_primary(parser *P) {
    const jtok *t = cur(P);
    jnode *n;
    switch (t->type) {
    case JT_NAME:
        advance(P);
        if (js_eq_cstr(t->s, "true") || js_eq_cstr(t->s, "True") || js_eq_cstr(t->s, "false") ||
            js_eq_cstr(t->s, "False")) {
            n = mk(P, JN_CONST, t->pos);
            n->value = jv_bool(t->s.p[0] == 't' || t->s.p[0] == 'T');
        } else if (js_eq_cstr(t->s, "none") || js_eq_cstr(t->s, "None")) {
            n = mk(P, JN_CONST, t->pos);
            n->value = jv_none();
        } else {
            n = mk(P, JN_NAME, t->pos);
            n->name = t->s;
        }
        return n;
    case JT_STRING: {
        advance(P);
        n = mk(P, JN_CONST, t->pos);
        if (cur(P)->type != JT_STRING) {
            n->value = jv_str(t->s);
            return n;
        }
        jbuf b = {0};
        jb_put(P->c, &b, t->s.p, t->s.n);
        while (cur(P)->type == JT_STRING) {
            const jtok *s = advance(P);
            jb_put(P->c, &b, s->s.p, s->s.n);
        }
        n->value = jv_str(jb_str(&b));
        return n;
    }
    case JT_INT:
    case JT_FLOAT:
        advance(P);
        n = mk(P, JN_CONST, t->pos);
        n->value = t->type == JT_INT ? jv_int(t->i) : jv_float(t->f);
        return n;
    case JT_OP:
        if (t->op == JO_LPAREN) {
            advance(P);
            enter(P);
            n = parse_tuple(P, true, NULL, true);
            leave(P);
            expect_op(P, JO_RPAREN, "')'");
            return n;
        }
        if (t->op == JO_LBRACKET) {
            advance(P);
            enter(P);
            nvec items = {0};
            while (!is_op(P, JO_RBRACKET)) {
                if (items.n) {
                    expect_op(P, JO_COMMA, "','");
                    if (is_op(P, JO_RBRACKET)) break;
                }
                nv_push(P, &items, parse_expression(P, true));
            }
            advance(P);
            leave(P);
            n = mk(P, JN_LIST, t->pos);
            n->items = items.v;
            n->n_items = items.n;
            return n;
        }
        if (t->op == JO_LBRACE) {
            advance(P);
            enter(P);
            nvec keys = {0}, vals = {0};
            while (!is_op(P, JO_RBRACE)) {
                if (keys.n) {
                    expect_op(P, JO_COMMA, "','");
                    if (is_op(P, JO_RBRACE)) break;
                }
                nv_push(P, &keys, parse_expression(P, true));
                expect_op(P, JO_COLON, "':'");
                nv_push(P, &vals, parse_expression(P, true));
            }
            advance(P);
            leave(P);
            n = mk(P, JN_DICT, t->pos);
            n->items = keys.v;
            n->items2 = vals.v;
            n->n_items = keys.n;
            return n;
        }
        break;
    default: break;
    }
    unexpected(P, NULL);
}

static jnode *parse_unary(parser *P, bool with_filter) {
    const jtok *t = cur(P);
    jnode *node;
    if (tok_is_op(t, JO_SUB) || tok_is_op(t, JO_ADD)) {
        advance(P);
        enter(P);
        node = mk(P, t->op == JO_SUB ? JN_NEG : JN_POS, t->pos);
        node->a = parse_unary(P, false);
        leave(P);
    } else {
        node = parse_primary(P);
    }
    node = parse_postfix(P, node);
    if (with_filter) node = parse_filter_expr(P, node);
    return node;
}

static jnode *binop(parser *P, jop op, uint32_t pos, jnode *a, jnode *b) {
    jnode *n = mk(P, JN_BINOP, pos);
    n->op = op;
    n->a = a;
    n->b = b;
    return n;
}

static jnode *parse_pow(parser *P) {
    jnode *left = parse_unary(P, true);
    while (is_op(P, JO_POW)) {
        uint32_t pos = advance(P)->pos;
        left = binop(P, JO_POW, pos, left, parse_unary(P, true));
    }
    return left;
}

static jnode *parse_math2(parser *P) {
    jnode *left = parse_pow(P);
    while (is_op(P, JO_MUL) || is_op(P, JO_DIV) || is_op(P, JO_FLOORDIV) || is_op(P, JO_MOD)) {
        const jtok *t = advance(P);
        left = binop(P, t->op, t->pos, left, parse_pow(P));
    }
    return left;
}

static jnode *parse_concat(parser *P) {
    uint32_t pos = cur(P)->pos;
    jnode *first = parse_math2(P);
    if (!is_op(P, JO_TILDE)) return first;
    nvec args = {0};
    nv_push(P, &args, first);
    while (is_op(P, JO_TILDE)) {
        advance(P);
        nv_push(P, &args, parse_math2(P));
    }
    jnode *n = mk(P, JN_CONCAT, pos);
    n->items = args.v;
    n->n_items = args.n;
    return n;
}

static jnode *parse_math1(parser *P) {
    jnode *left = parse_concat(P);
    while (is_op(P, JO_ADD) || is_op(P, JO_SUB)) {
        const jtok *t = advance(P);
        left = binop(P, t->op, t->pos, left, parse_concat(P));
    }
    return left;
}

static jnode *parse_compare(parser *P) {
    uint32_t pos = cur(P)->pos;
    jnode *expr = parse_math1(P);
    nvec operands = {0};
    jop *ops = NULL;
    size_t n_ops = 0, cap_ops = 0;
    for (;;) {
        const jtok *t = cur(P);
        jop op;
        if (t->type == JT_OP && (t->op == JO_EQ || t->op == JO_NE || t->op == JO_LT ||
                                 t->op == JO_LE || t->op == JO_GT || t->op == JO_GE)) {
            op = t->op;
            advance(P);
        } else if (tok_is_name(t, "in")) {
            op = JO_IN;
            advance(P);
        } else if (tok_is_name(t, "not") && tok_is_name(peek(P, 1), "in")) {
            op = JO_NOTIN;
            advance(P);
            advance(P);
        } else {
            break;
        }
        if (n_ops == cap_ops) {
            size_t nc = cap_ops ? cap_ops * 2 : 2;
            jop *q = ja_alloc(P->c, nc * sizeof *q);
            if (n_ops) memcpy(q, ops, n_ops * sizeof *q);
            ops = q;
            cap_ops = nc;
        }
        ops[n_ops++] = op;
        nv_push(P, &operands, parse_math1(P));
    }
    if (!n_ops) return expr;
    jnode *n = mk(P, JN_COMPARE, pos);
    n->a = expr;
    n->items = operands.v;
    n->n_items = operands.n;
    n->ops = ops;
    return n;
}

static jnode *parse_not(parser *P) {
    if (!is_name(P, "not")) return parse_compare(P);
    uint32_t pos = advance(P)->pos;
    enter(P);
    jnode *n = mk(P, JN_NOT, pos);
    n->a = parse_not(P);
    leave(P);
    return n;
}

static jnode *parse_and(parser *P) {
    jnode *left = parse_not(P);
    while (is_name(P, "and")) {
        uint32_t pos = advance(P)->pos;
        jnode *n = mk(P, JN_AND, pos);
        n->a = left;
        n->b = parse_not(P);
        left = n;
    }
    return left;
}

static jnode *parse_or(parser *P) {
    jnode *left = parse_and(P);
    while (is_name(P, "or")) {
        uint32_t pos = advance(P)->pos;
        jnode *n = mk(P, JN_OR, pos);
        n->a = left;
        n->b = parse_and(P);
        left = n;
    }
    return left;
}

static jnode *parse_condexpr(parser *P) {
    jnode *expr1 = parse_or(P);
    while (is_name(P, "if")) {
        uint32_t pos = advance(P)->pos;
        jnode *n = mk(P, JN_COND, pos);
        n->a = parse_or(P);
        n->b = expr1;
        if (is_name(P, "else")) {
            advance(P);
            enter(P);
            n->c = parse_condexpr(P);
            leave(P);
        }
        expr1 = n;
    }
    return expr1;
}

static jnode *parse_expression(parser *P, bool with_condexpr) {
    enter(P);
    jnode *n = with_condexpr ? parse_condexpr(P) : parse_or(P);
    leave(P);
    return n;
}

/* ------------------------------------------------------------- statements */

static jnode *parse_body(parser *P, const char *const *ends, size_t n_ends);

/* Consumes "{% name" of the tag that ended a body; returns the name. */
static jstr end_tag(parser *P) {
    advance(P); /* '{%' */
    return expect_name(P);
}

/* Names of a for / set target: a name or a tuple of names, maybe in parentheses. */
static void parse_targets(parser *P, svec *out, const char *stop) {
    bool parens = is_op(P, JO_LPAREN);
    if (parens) advance(P);
    for (;;) {
        sv_push(P, out, expect_name(P));
        if (!is_op(P, JO_COMMA)) break;
        advance(P);
        if ((stop && is_name(P, stop)) || (parens && is_op(P, JO_RPAREN)) ||
            is_op(P, JO_ASSIGN))
            break;
    }
    if (parens) expect_op(P, JO_RPAREN, "')'");
}

static jnode *parse_for(parser *P, uint32_t pos) {
    jnode *n = mk(P, JN_FOR, pos);
    svec targets = {0};
    parse_targets(P, &targets, "in");
    n->names = targets.v;
    n->n_names = targets.n;
    if (!is_name(P, "in")) unexpected(P, "'in'");
    advance(P);
    n->a = parse_tuple(P, false, "recursive", false);
    if (is_name(P, "if")) {
        advance(P);
        n->b = parse_expression(P, true);
    }
    if (is_name(P, "recursive"))
        jx_fail(P->c, cur(P)->pos, "recursive loops are not supported");
    expect_block_end(P);
    static const char *const ends[] = {"endfor", "else"};
    P->loop_depth++;
    n->c = parse_body(P, ends, 2);
    P->loop_depth--;
    jstr e = end_tag(P);
    if (js_eq_cstr(e, "else")) {
        expect_block_end(P);
        n->d = parse_body(P, ends, 1);
        end_tag(P);
    }
    expect_block_end(P);
    return n;
}

static jnode *parse_if(parser *P, uint32_t pos) {
    jnode *n = mk(P, JN_IF, pos);
    n->a = parse_tuple(P, false, NULL, false);
    expect_block_end(P);
    static const char *const ends[] = {"endif", "elif", "else"};
    n->b = parse_body(P, ends, 3);
    uint32_t epos = peek(P, 1)->pos;
    jstr e = end_tag(P);
    if (js_eq_cstr(e, "elif")) {
        n->c = parse_if(P, epos); /* consumes through endif */
        return n;
    }
    if (js_eq_cstr(e, "else")) {
        expect_block_end(P);
        n->c = parse_body(P, ends, 1);
        end_tag(P);
    }
    expect_block_end(P);
    return n;
}

static jnode *parse_set(parser *P, uint32_t pos) {
    const jtok *t = cur(P);
    if (t->type == JT_NAME && tok_is_op(peek(P, 1), JO_DOT)) {
        jnode *n = mk(P, JN_NSSET, pos);
        n->name = advance(P)->s;
        advance(P);
        n->attr = expect_name(P);
        expect_op(P, JO_ASSIGN, "'='");
        n->a = parse_tuple(P, true, NULL, false);
        expect_block_end(P);
        return n;
    }
    svec targets = {0};
    parse_targets(P, &targets, NULL);
    if (is_op(P, JO_ASSIGN)) {
        advance(P);
        jnode *n = mk(P, JN_SET, pos);
        n->names = targets.v;
        n->n_names = targets.n;
        n->a = parse_tuple(P, true, NULL, false);
        expect_block_end(P);
        return n;
    }
    if (targets.n != 1) unexpected(P, "'='");
    jnode *n = mk(P, JN_SETBLOCK, pos);
    n->names = targets.v;
    n->n_names = 1;
    if (is_op(P, JO_PIPE)) n->a = parse_filters(P, NULL, false);
    expect_block_end(P);
    static const char *const ends[] = {"endset"};
    n->b = parse_body(P, ends, 1);
    end_tag(P);
    expect_block_end(P);
    return n;
}

static jnode *parse_macro(parser *P, uint32_t pos) {
    jnode *n = mk(P, JN_MACRO, pos);
    n->name = expect_name(P);
    expect_op(P, JO_LPAREN, "'('");
    svec params = {0};
    nvec defaults = {0};
    bool any_default = false;
    while (!is_op(P, JO_RPAREN)) {
        if (params.n) expect_op(P, JO_COMMA, "','");
        if (is_op(P, JO_RPAREN)) break;
        uint32_t ppos = cur(P)->pos;
        sv_push(P, &params, expect_name(P));
        if (is_op(P, JO_ASSIGN)) {
            advance(P);
            nv_push(P, &defaults, parse_expression(P, true));
            any_default = true;
        } else {
            if (any_default)
                jx_fail(P->c, ppos, "non-default argument follows default argument");
            nv_push(P, &defaults, NULL);
        }
    }
    advance(P);
    expect_block_end(P);
    n->names = params.v;
    n->n_names = params.n;
    n->items = defaults.v;
    n->n_items = defaults.n;
    int saved = P->loop_depth;
    P->loop_depth = 0;
    static const char *const ends[] = {"endmacro"};
    n->b = parse_body(P, ends, 1);
    P->loop_depth = saved;
    end_tag(P);
    expect_block_end(P);
    return n;
}

static jnode *parse_with(parser *P, uint32_t pos) {
    jnode *n = mk(P, JN_SCOPE, pos);
    svec names = {0};
    nvec vals = {0};
    while (cur(P)->type != JT_BLOCK_END) {
        if (names.n) expect_op(P, JO_COMMA, "','");
        sv_push(P, &names, expect_name(P));
        expect_op(P, JO_ASSIGN, "'='");
        nv_push(P, &vals, parse_expression(P, true));
    }
    advance(P);
    n->names = names.v;
    n->items2 = vals.v;
    n->n_names = names.n;
    static const char *const ends[] = {"endwith"};
    n->b = parse_body(P, ends, 1);
    end_tag(P);
    expect_block_end(P);
    return n;
}

static jnode *parse_statement(parser *P) {
    const jtok *open = advance(P); /* '{%' */
    const jtok *kw = cur(P);
    if (kw->type != JT_NAME) unexpected(P, "a statement name");
    advance(P);
    jstr k = kw->s;
    uint32_t pos = open->pos;
    if (js_eq_cstr(k, "for")) return parse_for(P, pos);
    if (js_eq_cstr(k, "if")) return parse_if(P, pos);
    if (js_eq_cstr(k, "set")) return parse_set(P, pos);
    if (js_eq_cstr(k, "macro")) return parse_macro(P, pos);
    if (js_eq_cstr(k, "with")) return parse_with(P, pos);
    if (js_eq_cstr(k, "break") || js_eq_cstr(k, "continue")) {
        if (P->loop_depth == 0)
            jx_fail(P->c, kw->pos, "'%.*s' outside of a loop", (int)k.n, k.p);
        expect_block_end(P);
        return mk(P, k.p[0] == 'b' ? JN_BREAK : JN_CONTINUE, pos);
    }
    if (js_eq_cstr(k, "filter")) {
        jnode *n = mk(P, JN_FILTERBLOCK, pos);
        n->a = parse_filters(P, NULL, true);
        expect_block_end(P);
        static const char *const ends[] = {"endfilter"};
        n->b = parse_body(P, ends, 1);
        end_tag(P);
        expect_block_end(P);
        return n;
    }
    if (js_eq_cstr(k, "generation")) { /* transformers' assistant-mask marker: just the body */
        expect_block_end(P);
        static const char *const ends[] = {"endgeneration"};
        jnode *body = parse_body(P, ends, 1);
        end_tag(P);
        expect_block_end(P);
        return body;
    }
    static const char *const unsupported[] = {
        "call", "block", "extends", "include", "import", "from", "autoescape", "do", "trans"};
    for (size_t i = 0; i < sizeof unsupported / sizeof unsupported[0]; i++)
        if (js_eq_cstr(k, unsupported[i]))
            jx_fail(P->c, kw->pos, "the '%s' tag is not supported", unsupported[i]);
    jx_fail(P->c, kw->pos, "unknown tag '%.*s'", (int)(k.n > 40 ? 40 : k.n), k.p);
}

static jnode *parse_body(parser *P, const char *const *ends, size_t n_ends) {
    enter(P);
    jnode *body = mk(P, JN_BODY, cur(P)->pos);
    nvec stmts = {0};
    for (;;) {
        const jtok *t = cur(P);
        if (t->type == JT_EOF) {
            if (n_ends) {
                char want[96] = "";
                for (size_t i = 0; i < n_ends; i++) {
                    size_t l = strlen(want);
                    snprintf(want + l, sizeof want - l, "%s'%s'", i ? " or " : "", ends[i]);
                }
                jx_fail(P->c, t->pos, "unexpected end of template, expected %s", want);
            }
            break;
        }
        if (t->type == JT_TEXT) {
            jnode *n = mk(P, JN_TEXT, t->pos);
            n->name = t->s;
            nv_push(P, &stmts, n);
            advance(P);
            continue;
        }
        if (t->type == JT_VAR_BEGIN) {
            advance(P);
            jnode *n = mk(P, JN_OUTPUT, t->pos);
            n->a = parse_tuple(P, true, NULL, false);
            if (cur(P)->type != JT_VAR_END) unexpected(P, "end of print statement '}}'");
            advance(P);
            nv_push(P, &stmts, n);
            continue;
        }
        if (t->type == JT_BLOCK_BEGIN) {
            const jtok *kw = peek(P, 1);
            bool is_end = false;
            for (size_t i = 0; i < n_ends && kw->type == JT_NAME; i++)
                if (js_eq_cstr(kw->s, ends[i])) is_end = true;
            if (is_end) break;
            if (kw->type == JT_NAME && (js_starts(kw->s, JSTR("end")) ||
                                        js_eq_cstr(kw->s, "else") || js_eq_cstr(kw->s, "elif")))
                jx_fail(P->c, kw->pos, "unexpected '%.*s'", (int)kw->s.n, kw->s.p);
            nv_push(P, &stmts, parse_statement(P));
            continue;
        }
        unexpected(P, NULL);
    }
    body->items = stmts.v;
    body->n_items = stmts.n;
    leave(P);
    return body;
}

jnode *jx_parse(jctx *c, const jtok *toks, size_t n_tok) {
    parser P = {.c = c, .t = toks, .n = n_tok};
    return parse_body(&P, NULL, 0);
}
