/* Jinja interpreter: the entry point, error reporting and limits. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "chat/jinja_int.h"

static void line_col(const jctx *c, uint32_t pos, int *line, int *col) {
    *line = 1;
    *col = 1;
    if (!c->src) return;
    size_t end = pos < c->src_len ? pos : c->src_len;
    for (size_t i = 0; i < end; i++) {
        unsigned char ch = (unsigned char)c->src[i];
        if (ch == '\n') {
            (*line)++;
            *col = 1;
        } else if ((ch & 0xC0) != 0x80) {
            (*col)++;
        }
    }
}

void jx_fail(jctx *c, uint32_t pos, const char *fmt, ...) {
    char msg[400];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (pos == UINT32_MAX || !c->src) {
        chord_fail(c->err, CHORD_E_TEMPLATE, "chat template: %s", msg);
    } else {
        int line, col;
        line_col(c, pos, &line, &col);
        chord_fail(c->err, CHORD_E_TEMPLATE, "chat template line %d, column %d: %s", line, col,
                   msg);
    }
    c->status = CHORD_E_TEMPLATE;
    longjmp(c->jb, 1);
}

void jx_nomem(jctx *c) {
    chord_fail(c->err, CHORD_E_NOMEM, "out of memory while rendering the chat template");
    c->status = CHORD_E_NOMEM;
    longjmp(c->jb, 1);
}

void jx_step(jctx *c, uint32_t pos) {
    if (++c->steps > JINJA_MAX_STEPS)
        jx_fail(c, pos, "template runs too long (more than %d loop iterations and calls)",
                JINJA_MAX_STEPS);
}

static jv opt_str(jctx *c, const char *s) {
    return s ? jv_cstr(c, s) : jv_none();
}

static void render(jctx *c, const char *tmpl, const jinja_message *msgs, size_t n_msgs,
                   const jinja_vars *vars, char **out) {
    size_t len = strlen(tmpl);
    if (len >= UINT32_MAX / 2) jx_fail(c, UINT32_MAX, "template too large");
    size_t n_tok;
    jtok *toks = jx_lex(c, tmpl, len, &n_tok);
    jnode *root = jx_parse(c, toks, n_tok);

    jx_begin_globals(c);
    jv messages = jv_list_new(c, n_msgs, false);
    for (size_t i = 0; i < n_msgs; i++) {
        jv m = jv_dict_new(c);
        jv_dict_set(c, m.dict, jv_str(JSTR("role")), opt_str(c, msgs[i].role));
        jv_dict_set(c, m.dict, jv_str(JSTR("content")), opt_str(c, msgs[i].content));
        messages.list->v[i] = m;
    }
    jx_set_global(c, "messages", messages);
    if (vars && vars->bos_token) jx_set_global(c, "bos_token", jv_cstr(c, vars->bos_token));
    if (vars && vars->eos_token) jx_set_global(c, "eos_token", jv_cstr(c, vars->eos_token));
    jx_set_global(c, "add_generation_prompt", jv_bool(vars && vars->add_generation_prompt));

    jbuf result = {0};
    c->out = &result;
    jx_exec(c, root);

    char *s = malloc(result.n + 1);
    if (!s) jx_nomem(c);
    if (result.n) memcpy(s, result.p, result.n);
    s[result.n] = 0;
    *out = s;
}

chord_status jinja_render(const char *tmpl, const jinja_message *msgs, size_t n_msgs,
                          const jinja_vars *vars, char **out, chord_error *err) {
    if (out) *out = NULL;
    if (!tmpl || !out || (!msgs && n_msgs))
        return chord_fail(err, CHORD_E_INVALID_ARG, "jinja_render: NULL argument");
    jctx *c = calloc(1, sizeof *c);
    if (!c) return chord_fail(err, CHORD_E_NOMEM, "out of memory");
    c->err = err;
    chord_status st = CHORD_OK;
    if (setjmp(c->jb) == 0)
        render(c, tmpl, msgs, n_msgs, vars, out);
    else
        st = c->status;
    ja_free_all(&c->arena);
    free(c);
    return st;
}
