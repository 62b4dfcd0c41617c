/* chord chat: an interactive multi-turn chat that keeps the KV cache between turns:
 * each turn evaluates only the text the chat template adds after what is cached. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "gen_opts.h"

typedef struct chat_state {
    chord_chat_message *msgs;
    size_t n, cap;
    char *cached;      /* the formatted text whose tokens are in the KV cache */
    char *reply;       /* the reply being generated */
    size_t reply_len, reply_cap;
} chat_state;

static bool push(chat_state *c, const char *role, const char *content) {
    if (c->n == c->cap) {
        size_t cap = c->cap ? c->cap * 2 : 8;
        chord_chat_message *p = realloc(c->msgs, cap * sizeof *p);
        if (!p) return false;
        c->msgs = p;
        c->cap = cap;
    }
    char *copy = strdup(content);
    if (!copy) return false;
    c->msgs[c->n++] = (chord_chat_message){role, copy};
    return true;
}

static bool on_text(const char *text, size_t len, void *user) {
    chat_state *c = user;
    if (c->reply_len + len + 1 > c->reply_cap) {
        size_t cap = (c->reply_len + len + 1) * 2;
        char *p = realloc(c->reply, cap);
        if (!p) return false;
        c->reply = p;
        c->reply_cap = cap;
    }
    memcpy(c->reply + c->reply_len, text, len);
    c->reply_len += len;
    c->reply[c->reply_len] = 0;
    return gen_print_text(text, len, NULL);
}

static char *read_line(FILE *f) {
    size_t cap = 256, n = 0;
    char *buf = malloc(cap);
    int ch;
    while (buf && (ch = fgetc(f)) != EOF && ch != '\n') {
        if (n + 2 > cap) {
            char *p = realloc(buf, cap *= 2);
            if (!p) {
                free(buf);
                return NULL;
            }
            buf = p;
        }
        buf[n++] = (char)ch;
    }
    if (!buf || (ch == EOF && n == 0)) {
        free(buf);
        return NULL;
    }
    buf[n] = 0;
    return buf;
}

/* Drops every message but the system prompt, keeping the last user message. */
static void forget_history(chat_state *c, bool has_system) {
    size_t keep_first = has_system ? 1 : 0;
    char *last = (char *)c->msgs[c->n - 1].content;
    for (size_t i = keep_first; i + 1 < c->n; i++) free((char *)c->msgs[i].content);
    c->msgs[keep_first] = (chord_chat_message){"user", last};
    c->n = keep_first + 1;
}

/* One turn: format, evaluate what is new, generate. Returns false on a fatal error. */
static bool turn(chat_state *c, const gen_opts *o, chord_model *m, chord_context *ctx,
                 chord_sampler *s, double load_s) {
    chord_error err = {0};
    for (int attempt = 0; attempt < 2; attempt++) {
        char *full = NULL;
        if (chord_chat_apply_template(m, o->chat_template, c->msgs, c->n, true, &full, &err) != CHORD_OK) {
            fprintf(stderr, "chord: %s\n", err.message);
            return false;
        }
        size_t cl = c->cached ? strlen(c->cached) : 0;
        if (cl && strncmp(full, c->cached, cl) != 0) {
            /* the template rewrote earlier text: re-evaluate from the start */
            chord_context_truncate(ctx, 0);
            cl = 0;
        }
        c->reply_len = 0;
        if (c->reply) c->reply[0] = 0;
        chord_gen_params gp = {.max_tokens = o->n_predict, .stop = o->stop, .n_stop = o->n_stop,
                               .parse_special = !o->no_special};
        chord_gen_stats st = {0};
        chord_status rc = chord_generate(ctx, s, full + cl, &gp, on_text, c, &st, &err);
        if (rc == CHORD_E_CONTEXT_FULL && attempt == 0) {
            fprintf(stderr, "chord: the context (%d tokens) is full; forgetting earlier turns\n",
                    chord_context_n_ctx(ctx));
            free(full);
            forget_history(c, o->system != NULL);
            chord_context_truncate(ctx, 0);
            chord_sampler_reset(s);
            free(c->cached);
            c->cached = NULL;
            continue;
        }
        if (rc != CHORD_OK) {
            fprintf(stderr, "\nchord: %s\n", err.message);
            free(full);
            return rc == CHORD_E_CONTEXT_FULL;
        }
        printf("\n");
        if (st.hit_ctx)
            fprintf(stderr, "chord: the context is full; the next turn starts over\n");
        if (o->verbose) gen_print_stats(&st, load_s);
        /* the cache now holds the formatted prompt plus the reply's tokens */
        size_t fl = strlen(full);
        char *cached = realloc(full, fl + c->reply_len + 1);
        if (!cached) {
            free(full);
            return false;
        }
        memcpy(cached + fl, c->reply ? c->reply : "", c->reply_len);
        cached[fl + c->reply_len] = 0;
        free(c->cached);
        c->cached = st.hit_ctx ? NULL : cached;
        if (st.hit_ctx) {
            free(cached);
            chord_context_truncate(ctx, 0);
        }
        return push(c, "assistant", c->reply ? c->reply : "");
    }
    return true;
}

int cmd_chat(int argc, char **argv) {
    gen_opts o;
    bool help;
    if (!gen_opts_parse(&o, argc, argv, &help)) {
        gen_opts_free(&o);
        return 1;
    }
    if (help) {
        gen_opts_usage(stdout, "chat");
        printf("\nIn the chat: type a message and Enter; /reset starts over; /exit or Ctrl-D quits.\n");
        gen_opts_free(&o);
        return 0;
    }
    if (o.n_predict == -2) o.n_predict = -1;
    chord_model *m;
    chord_context *ctx;
    chord_sampler *s;
    double load_s = 0;
    int rc = 1;
    chat_state c = {0};
    if (!gen_setup(&o, &m, &ctx, &s, &load_s)) goto done;
    if (o.system && !push(&c, "system", o.system)) goto done;
    bool tty = isatty(0);
    if (tty) fprintf(stderr, "chord chat: %s. /reset starts over, /exit quits.\n", chord_model_name(m));
    char *line = o.prompt ? strdup(o.prompt) : NULL;
    for (;;) {
        if (!line) {
            if (tty) {
                printf("> ");
                fflush(stdout);
            }
            if (!(line = read_line(stdin))) break;
        }
        if (!strcmp(line, "/exit") || !strcmp(line, "/quit")) {
            free(line);
            break;
        }
        if (!strcmp(line, "/reset")) {
            for (size_t i = o.system ? 1 : 0; i < c.n; i++) free((char *)c.msgs[i].content);
            c.n = o.system ? 1 : 0;
            free(c.cached);
            c.cached = NULL;
            chord_context_truncate(ctx, 0);
            chord_sampler_reset(s);
            free(line);
            line = NULL;
            continue;
        }
        if (!*line) {
            free(line);
            line = NULL;
            continue;
        }
        bool ok = push(&c, "user", line);
        free(line);
        line = NULL;
        if (!ok || !turn(&c, &o, m, ctx, s, load_s)) goto done;
    }
    rc = 0;
done:
    for (size_t i = 0; i < c.n; i++) free((char *)c.msgs[i].content);
    free(c.msgs);
    free(c.cached);
    free(c.reply);
    chord_sampler_free(s);
    chord_context_free(ctx);
    chord_model_free(m);
    gen_opts_free(&o);
    return rc;
}
