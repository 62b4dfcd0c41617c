/* Internals of the Jinja interpreter, shared by the jinja_*.c files.
 *
 * Memory: every allocation of a render (tokens, syntax tree, values, strings, output)
 * comes from one arena that is released at the end.
 * Errors: jx_fail formats the message and longjmps back to jinja_render, which frees the
 * arena; since nothing else owns memory, unwinding leaks nothing.
 */
#ifndef CHORD_JINJA_INT_H
#define CHORD_JINJA_INT_H

#include <setjmp.h>
#include <stdint.h>

#include "chat/jinja.h"
#include "error.h"

#if defined(__GNUC__)
#define JX_NOINLINE __attribute__((noinline))
#else
#define JX_NOINLINE
#endif

/* ------------------------------------------------------------------ arena */

typedef struct ja_chunk ja_chunk;
typedef struct jarena {
    ja_chunk *head;
    size_t total; /* bytes obtained from malloc */
} jarena;

/* ---------------------------------------------------------------- strings */

typedef struct jstr {
    const char *p;
    size_t n;
} jstr;

#define JSTR(lit) ((jstr){(lit), sizeof(lit) - 1})

/* A growable byte buffer in the arena. */
typedef struct jbuf {
    char *p;
    size_t n, cap;
} jbuf;

/* ----------------------------------------------------------------- values */

typedef enum jv_type {
    JV_UNDEF,
    JV_NONE,
    JV_BOOL,
    JV_INT,
    JV_FLOAT,
    JV_STR,
    JV_LIST, /* also tuples */
    JV_DICT, /* also namespaces */
    JV_FUNC,
    JV_LOOP,
} jv_type;

typedef struct jlist jlist;
typedef struct jdict jdict;
typedef struct jfunc jfunc;
typedef struct jloop jloop;

typedef struct jv {
    jv_type type;
    union {
        bool b;
        int64_t i;
        double f;
        jstr s;
        jlist *list;
        jdict *dict;
        jfunc *fn;
        jloop *loop;
    };
} jv;

struct jlist {
    size_t n;
    bool tuple;
    jv *v;
};

struct jdict {
    size_t n, cap;
    bool ns; /* a namespace(): attributes may be assigned */
    jv *k, *v;
};

struct jnode;

typedef enum jfunc_kind {
    JF_BUILTIN, /* a global function: id in jinja_builtins.c */
    JF_METHOD,  /* a method bound to self: id in jinja_builtins.c */
    JF_MACRO,   /* a {% macro %} */
} jfunc_kind;

struct jfunc {
    jfunc_kind kind;
    int id;
    jv self;
    const struct jnode *macro;
};

struct jloop {
    const jlist *items;
    size_t index0;
    int depth;
};

/* -------------------------------------------------------------- tokens */

typedef enum jtok_type {
    JT_EOF,
    JT_TEXT,
    JT_VAR_BEGIN,
    JT_VAR_END,
    JT_BLOCK_BEGIN,
    JT_BLOCK_END,
    JT_NAME,
    JT_STRING,
    JT_INT,
    JT_FLOAT,
    JT_OP,
} jtok_type;

typedef enum jop {
    JO_ADD = 1,
    JO_SUB,
    JO_DIV,
    JO_FLOORDIV,
    JO_MUL,
    JO_MOD,
    JO_POW,
    JO_TILDE,
    JO_LBRACKET,
    JO_RBRACKET,
    JO_LPAREN,
    JO_RPAREN,
    JO_LBRACE,
    JO_RBRACE,
    JO_EQ,
    JO_NE,
    JO_GT,
    JO_GE,
    JO_LT,
    JO_LE,
    JO_ASSIGN,
    JO_DOT,
    JO_COLON,
    JO_PIPE,
    JO_COMMA,
    JO_SEMICOLON,
    /* comparison operators that are not tokens */
    JO_IN,
    JO_NOTIN,
} jop;

typedef struct jtok {
    jtok_type type;
    jop op;
    uint32_t pos; /* byte offset in the (normalized) template */
    jstr s;       /* name, decoded string, or text */
    int64_t i;
    double f;
} jtok;

/* ----------------------------------------------------------- syntax tree */

typedef enum jn_type {
    /* expressions */
    JN_CONST,
    JN_NAME,
    JN_GETATTR,
    JN_GETITEM,
    JN_SLICE,
    JN_CALL,
    JN_FILTER,
    JN_TEST,
    JN_NEG,
    JN_POS,
    JN_NOT,
    JN_AND,
    JN_OR,
    JN_BINOP,
    JN_COMPARE,
    JN_CONCAT,
    JN_COND,
    JN_LIST,
    JN_TUPLE,
    JN_DICT,
    /* statements */
    JN_BODY,
    JN_TEXT,
    JN_OUTPUT,
    JN_IF,
    JN_FOR,
    JN_SET,
    JN_NSSET,
    JN_SETBLOCK,
    JN_MACRO,
    JN_BREAK,
    JN_CONTINUE,
    JN_FILTERBLOCK,
    JN_SCOPE,
} jn_type;

typedef struct jnode jnode;
struct jnode {
    jn_type type;
    jop op; /* BINOP */
    int id; /* FILTER / TEST: builtin id */
    uint32_t pos;
    jv value;  /* CONST */
    jstr name; /* NAME, GETATTR, FILTER, TEST, MACRO, NSSET (namespace) */
    jstr attr; /* NSSET attribute */
    jnode *a, *b, *c, *d;
    jnode **items; /* args, elements, keys, operands, statements, defaults */
    size_t n_items;
    jnode **items2; /* keyword values, dict values, scope values */
    jstr *names;    /* keyword names, targets, parameters */
    size_t n_names;
    jop *ops; /* COMPARE: one per operand in items */
};

/* --------------------------------------------------------------- context */

typedef struct jbind {
    jstr name;
    jv value;
} jbind;

typedef struct jframe {
    size_t base;  /* first binding of the frame */
    bool barrier; /* a macro call: lookups skip to the globals after this frame */
} jframe;

typedef enum jctl { JC_NONE, JC_BREAK, JC_CONTINUE } jctl;

typedef struct jctx {
    jarena arena;
    chord_error *err;
    jmp_buf jb;
    chord_status status; /* of the failure that jumped to jb */
    const char *src;     /* normalized template, for line/column */
    size_t src_len;
    jbuf *out; /* where output goes (the result or a capture) */
    jbind *binds;
    size_t n_binds, cap_binds;
    jframe *frames;
    size_t n_frames, cap_frames;
    uint64_t steps;
    int depth;
    jctl ctl;
} jctx;

/* jinja.c */
_Noreturn void jx_fail(jctx *c, uint32_t pos, const char *fmt, ...) CHORD_PRINTF(3, 4);
_Noreturn void jx_nomem(jctx *c);
void jx_step(jctx *c, uint32_t pos);

/* jinja_value.c: arena, buffers, values */
void *ja_alloc(jctx *c, size_t n);
void ja_free_all(jarena *a);
jstr jx_strdup(jctx *c, const char *p, size_t n);
void jb_put(jctx *c, jbuf *b, const char *p, size_t n);
void jb_puts(jctx *c, jbuf *b, const char *s);
void jb_putc(jctx *c, jbuf *b, char ch);
void jb_printf(jctx *c, jbuf *b, const char *fmt, ...) CHORD_PRINTF(3, 4);
jstr jb_str(const jbuf *b);

static inline jv jv_undef(void) {
    return (jv){.type = JV_UNDEF};
}
static inline jv jv_none(void) {
    return (jv){.type = JV_NONE};
}
static inline jv jv_bool(bool b) {
    return (jv){.type = JV_BOOL, .b = b};
}
static inline jv jv_int(int64_t i) {
    return (jv){.type = JV_INT, .i = i};
}
static inline jv jv_float(double f) {
    return (jv){.type = JV_FLOAT, .f = f};
}
static inline jv jv_str(jstr s) {
    return (jv){.type = JV_STR, .s = s};
}
jv jv_cstr(jctx *c, const char *s); /* copies */
jv jv_list_new(jctx *c, size_t n, bool tuple);
jv jv_dict_new(jctx *c);
void jv_dict_set(jctx *c, jdict *d, jv key, jv value);
bool jv_dict_get(const jdict *d, jv key, jv *out);
void jl_push(jctx *c, jv *list, size_t *cap, jv item); /* grows list->list */

const char *jv_type_name(jv v);
bool jv_truthy(jv v);
bool jv_equal(jv a, jv b);
/* <0, 0, >0; fails on types Python cannot order. */
int jv_compare(jctx *c, uint32_t pos, jv a, jv b);
bool jv_is_number(jv v);
double jv_as_double(jv v);
/* str() and repr() as Python prints them. */
void jv_write_str(jctx *c, jbuf *b, jv v);
void jv_write_repr(jctx *c, jbuf *b, jv v);
jstr jv_to_str(jctx *c, jv v);
/* json.dumps(v, ensure_ascii=False, indent=indent (<0: None)) */
void jv_write_json(jctx *c, uint32_t pos, jbuf *b, jv v, int indent, int level);
/* Python repr of a float into buf[32]. */
void jx_float_repr(double d, char buf[32]);
/* Locale-independent strtod of a decimal literal; false if s is not a whole number. */
bool jx_parse_double(const char *s, size_t n, double *out);

/* jinja_str.c: UTF-8 string helpers with Python str semantics */
size_t u8_count(jstr s);                         /* code points */
size_t u8_ws_at(const char *p, const char *end); /* bytes of a whitespace char at p, or 0 */
size_t u8_ws_before(const char *begin, const char *p); /* same, ending at p */
jstr js_strip(jstr s, jstr chars, bool chars_given, bool left, bool right);
bool js_equal(jstr a, jstr b);
bool js_eq_cstr(jstr a, const char *s);
bool js_starts(jstr s, jstr prefix);
bool js_ends(jstr s, jstr suffix);
const char *js_find(jstr hay, jstr needle); /* NULL if absent */
jstr js_case(jctx *c, jstr s, int mode);    /* 0 lower, 1 upper, 2 capitalize, 3 title */
jstr js_replace(jctx *c, jstr s, jstr old, jstr new_, int64_t count);
jv js_split(jctx *c, jstr s, jstr sep, bool sep_given, int64_t maxsplit);
jv js_index(jctx *c, jstr s, int64_t i, bool *ok); /* one code point, Python indexing */
jv js_chars(jctx *c, jstr s);                      /* list of code points */

/* jinja_lex.c */
jtok *jx_lex(jctx *c, const char *src, size_t n, size_t *n_tok);

/* jinja_parse.c */
jnode *jx_parse(jctx *c, const jtok *toks, size_t n_tok);

/* jinja_eval.c */
void jx_begin_globals(jctx *c); /* opens the top-level frame */
void jx_set_global(jctx *c, const char *name, jv value);
/* a op b for + - * / // % ** with Python semantics */
jv jx_arith(jctx *c, uint32_t pos, jop op, jv a, jv b);
/* Python's fmt % args for %s %r %d %i %f %% */
jv jx_percent_format(jctx *c, uint32_t pos, jstr fmt, jv args);
jv jx_eval(jctx *c, const jnode *n);
void jx_exec(jctx *c, const jnode *n);
jv jx_call(jctx *c, uint32_t pos, jv fn, const jv *args, size_t n_args, const jstr *kw_names,
           const jv *kw_vals, size_t n_kw);
jv jx_lookup(jctx *c, jstr name);
jv jx_getattr(jctx *c, uint32_t pos, jv obj, jstr name);
jv jx_getitem(jctx *c, uint32_t pos, jv obj, jv key);
/* Elements of an iterable (list, tuple, dict keys, string characters); fails otherwise.
 * Undefined iterates as empty. */
const jlist *jx_iter(jctx *c, uint32_t pos, jv v);

/* jinja_builtins.c */
int jx_filter_id(jstr name); /* -1: unknown */
int jx_test_id(jstr name);   /* -1: unknown */
int jx_global_id(jstr name); /* -1: unknown */
int jx_method_id(jv self, jstr name);
jv jx_filter(jctx *c, uint32_t pos, int id, jv in, const jv *args, size_t n_args,
             const jstr *kw_names, const jv *kw_vals, size_t n_kw);
bool jx_test(jctx *c, uint32_t pos, int id, jv in, const jv *args, size_t n_args);
jv jx_global(jctx *c, uint32_t pos, int id, const jv *args, size_t n_args, const jstr *kw_names,
             const jv *kw_vals, size_t n_kw);
jv jx_method(jctx *c, uint32_t pos, int id, jv self, const jv *args, size_t n_args,
             const jstr *kw_names, const jv *kw_vals, size_t n_kw);

#endif
