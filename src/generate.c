/* Prompt in, streamed text out: tokenize, evaluate, sample, detokenize, stop. */
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "chat/chat.h"
#include "context.h"
#include "error.h"

static double now_seconds(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* Holds back text that might be the start of a stop string. */
typedef struct stop_filter {
    const char *const *stop;
    int n_stop;
    char *buf;
    size_t len, cap;
} stop_filter;

static bool sf_append(stop_filter *f, const char *s, size_t n) {
    if (f->len + n + 1 > f->cap) {
        size_t cap = (f->len + n + 1) * 2;
        char *p = realloc(f->buf, cap);
        if (!p) return false;
        f->buf = p;
        f->cap = cap;
    }
    memcpy(f->buf + f->len, s, n);
    f->len += n;
    f->buf[f->len] = 0;
    return true;
}

/* Emits what is safe; returns true when a stop string was found (text before it is
 * emitted, the rest dropped). *cont is false when the callback asked to stop. */
static bool sf_flush(stop_filter *f, bool final, chord_text_fn cb, void *user, bool *cont) {
    size_t emit = f->len, found = (size_t)-1;
    for (int i = 0; i < f->n_stop; i++) {
        const char *st = f->stop[i];
        if (!st || !*st) continue;
        const char *hit = strstr(f->buf, st);
        if (hit && (size_t)(hit - f->buf) < found) found = (size_t)(hit - f->buf);
    }
    if (found != (size_t)-1) {
        emit = found;
    } else if (!final) {
        /* keep the longest suffix that is a proper prefix of a stop string */
        for (int i = 0; i < f->n_stop; i++) {
            const char *st = f->stop[i];
            if (!st) continue;
            size_t sl = strlen(st);
            for (size_t k = sl > 1 ? sl - 1 : 0; k > 0; k--) {
                if (k <= f->len && !memcmp(f->buf + f->len - k, st, k)) {
                    if (f->len - k < emit) emit = f->len - k;
                    break;
                }
            }
        }
    }
    if (emit && cb && !cb(f->buf, emit, user)) *cont = false;
    memmove(f->buf, f->buf + emit, f->len - emit);
    f->len -= emit;
    f->buf[f->len] = 0;
    return found != (size_t)-1;
}

chord_status chord_generate(chord_context *ctx, chord_sampler *smp, const char *prompt,
                            const chord_gen_params *params, chord_text_fn on_text, void *user,
                            chord_gen_stats *stats, chord_error *err) {
    if (!ctx || !smp || !prompt)
        return chord_fail(err, CHORD_E_INVALID_ARG, "chord_generate: NULL argument");
    chord_gen_params gp = {0};
    if (params) gp = *params;
    chord_gen_stats st = {0};
    const chord_model *m = ctx->model;
    int32_t *ids = NULL;
    size_t n_ids = 0;
    chord_status s = tok_encode(m->vocab, prompt, strlen(prompt), false, gp.parse_special, &ids,
                                &n_ids, err);
    if (s != CHORD_OK) return s;
    /* BOS starts a sequence once: not again when the (templated) text already has it */
    int32_t bos = tok_bos(m->vocab);
    if (ctx->n_past == 0 && tok_add_bos(m->vocab) && bos >= 0 && (n_ids == 0 || ids[0] != bos)) {
        int32_t *p = realloc(ids, (n_ids + 1) * sizeof *ids);
        if (!p) {
            free(ids);
            return chord_fail(err, CHORD_E_NOMEM, "out of memory");
        }
        ids = p;
        memmove(ids + 1, ids, n_ids * sizeof *ids);
        ids[0] = bos;
        n_ids++;
    }
    if (n_ids == 0) {
        free(ids);
        return chord_fail(err, CHORD_E_INVALID_ARG, "the prompt is empty");
    }
    int free_pos = ctx->n_ctx - ctx->n_past;
    if (n_ids >= (size_t)free_pos) {
        free(ids);
        return chord_fail(err, CHORD_E_CONTEXT_FULL,
                          "the prompt is %zu tokens but only %d of the context's %d positions are free "
                          "(raise -c)", n_ids, free_pos, ctx->n_ctx);
    }
    for (size_t i = 0; i < n_ids; i++) chord_sampler_accept(smp, ids[i]);
    double t0 = now_seconds();
    int32_t tok = 0;
    s = chord_eval_sample(ctx, ids, (int)n_ids, smp, &tok, err);
    st.prompt_seconds = now_seconds() - t0;
    st.n_prompt = (int)n_ids;
    free(ids);
    if (s != CHORD_OK) return s;

    stop_filter sf = {.stop = gp.stop, .n_stop = gp.stop ? gp.n_stop : 0};
    tok_stream ts = {0};
    char piece[256], text[TOK_STREAM_OUT_MAX(256)];
    bool cont = true;
    t0 = now_seconds();
    while (cont) {
        if (gp.max_tokens > 0 && st.n_gen >= gp.max_tokens) break;
        chord_sampler_accept(smp, tok);
        if (tok_is_eog(m->vocab, tok)) {
            st.hit_eog = true;
            break;
        }
        st.n_gen++;
        int pl = tok_piece(m->vocab, tok, piece, sizeof piece);
        if (pl > (int)sizeof piece) pl = 0; /* no vocabulary piece is this long */
        size_t tl = pl > 0 ? tok_stream_push(&ts, piece, (size_t)pl, text, sizeof text) : 0;
        if (tl) {
            if (!sf_append(&sf, text, tl)) {
                s = chord_fail(err, CHORD_E_NOMEM, "out of memory");
                break;
            }
            if (sf_flush(&sf, false, on_text, user, &cont)) {
                st.hit_stop = true;
                break;
            }
        }
        if (ctx->n_past >= ctx->n_ctx) {
            st.hit_ctx = true;
            break;
        }
        if (!cont || (gp.max_tokens > 0 && st.n_gen >= gp.max_tokens)) { /* nothing to draw */
            s = chord_eval(ctx, &tok, 1, false, err);
            break;
        }
        s = chord_eval_sample(ctx, &tok, 1, smp, &tok, err);
        if (s != CHORD_OK) break;
    }
    st.gen_seconds = now_seconds() - t0;
    if (s == CHORD_OK && !st.hit_stop) {
        size_t tl = tok_stream_flush(&ts, text, sizeof text);
        if (tl && sf_append(&sf, text, tl)) {}
        if (sf_flush(&sf, true, on_text, user, &cont)) st.hit_stop = true;
    }
    free(sf.buf);
    if (stats) *stats = st;
    return s;
}

chord_status chord_chat_apply_template(const chord_model *m, const char *tmpl,
                                       const chord_chat_message *msgs, size_t n_msgs,
                                       bool add_generation_prompt, char **out, chord_error *err) {
    if (!m || !out || (!msgs && n_msgs))
        return chord_fail(err, CHORD_E_INVALID_ARG, "chord_chat_apply_template: NULL argument");
    jinja_message *jm = calloc(n_msgs ? n_msgs : 1, sizeof *jm);
    if (!jm) return chord_fail(err, CHORD_E_NOMEM, "out of memory");
    for (size_t i = 0; i < n_msgs; i++) {
        jm[i].role = msgs[i].role;
        jm[i].content = msgs[i].content;
    }
    char bos[128] = "", eos[128] = "";
    size_t len;
    const char *t;
    if (tok_bos(m->vocab) >= 0 && (t = tok_text(m->vocab, tok_bos(m->vocab), &len)) && len < sizeof bos) {
        memcpy(bos, t, len);
        bos[len] = 0;
    }
    if (tok_eos(m->vocab) >= 0 && (t = tok_text(m->vocab, tok_eos(m->vocab), &len)) && len < sizeof eos) {
        memcpy(eos, t, len);
        eos[len] = 0;
    }
    jinja_vars vars = {.bos_token = bos, .eos_token = eos,
                       .add_generation_prompt = add_generation_prompt};
    chord_status s = chat_render(m->chat_template, tmpl, jm, n_msgs, &vars, out, err);
    free(jm);
    return s;
}
