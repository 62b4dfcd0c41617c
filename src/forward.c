/* The llama transformer pass, in pipeline order, written once against backend.h. */
#include <math.h>
#include <string.h>

#include "context.h"
#include "error.h"

/* Moves the residual stream to the backend that runs the next layer. */
static void move_x(chord_context *ctx, int from, int to, int n) {
    const chord_model *m = ctx->model;
    size_t bytes = (size_t)n * m->hp.n_embd * sizeof(float);
    chord_backend *src = ctx->backends[from], *dst = ctx->backends[to];
    src->ops->to_host(src, ctx->host_x, ctx->acts[from].x, bytes);
    dst->ops->from_host(dst, ctx->acts[to].x, ctx->host_x, bytes);
}

static void attention_block(chord_context *ctx, chord_backend *be, chord_acts *a,
                            const chord_layer *L, chord_kv *kv, int n, int pos0) {
    const chord_hparams *hp = &ctx->model->hp;
    const chord_backend_ops *op = be->ops;
    op->rmsnorm(be, a->xb, a->x, &L->attn_norm, n, hp->n_embd, hp->rms_eps);

    float *qkv[3] = {a->q, a->k, a->v};
    const chord_weight *wqkv[3] = {&L->wq, &L->wk, &L->wv};
    op->matmul(be, 3, qkv, wqkv, a->xb, n);

    chord_rope_shape rq = {hp->n_head, hp->head_dim, hp->n_rot, hp->rope_base, hp->rope_scale, false};
    chord_rope_shape rk = rq;
    rk.n_head = hp->n_head_kv;
    op->rope(be, a->q, n, pos0, &rq);
    op->rope(be, a->k, n, pos0, &rk);

    chord_attn_shape as = {hp->n_head, hp->n_head_kv, hp->head_dim, ctx->n_ctx,
                           1.0f / sqrtf((float)hp->head_dim)};
    op->attention(be, a->att, a->q, a->k, a->v, kv, n, pos0, &as);

    float *o[1] = {a->xb};
    const chord_weight *wo[1] = {&L->wo};
    op->matmul(be, 1, o, wo, a->att, n);
    op->add(be, a->x, a->xb, (size_t)n * hp->n_embd);
}

static void ffn_block(chord_context *ctx, chord_backend *be, chord_acts *a, const chord_layer *L,
                      int n) {
    const chord_hparams *hp = &ctx->model->hp;
    const chord_backend_ops *op = be->ops;
    op->rmsnorm(be, a->xb, a->x, &L->ffn_norm, n, hp->n_embd, hp->rms_eps);

    float *gu[2] = {a->gate, a->up};
    const chord_weight *wgu[2] = {&L->w_gate, &L->w_up};
    op->matmul(be, 2, gu, wgu, a->xb, n);
    op->swiglu(be, a->gate, a->gate, a->up, (size_t)n * hp->n_ff);

    float *d[1] = {a->xb};
    const chord_weight *wd[1] = {&L->w_down};
    op->matmul(be, 1, d, wd, a->gate, n);
    op->add(be, a->x, a->xb, (size_t)n * hp->n_embd);
}

/* The ops of one chunk, in pipeline order. Returns the backend index holding the
 * output rows. */
static int issue_ops(chord_context *ctx, const int32_t *tokens, int n, int pos0, int first) {
    const chord_model *m = ctx->model;
    const chord_hparams *hp = &m->hp;
    int cur = m->layer_be[0];
    chord_backend *be = ctx->backends[cur];
    be->ops->get_rows(be, ctx->acts[cur].x, &m->tok_embd, tokens, n);

    for (int l = 0; l < hp->n_layer; l++) {
        if (m->layer_be[l] != cur) {
            move_x(ctx, cur, m->layer_be[l], n);
            cur = m->layer_be[l];
            be = ctx->backends[cur];
        }
        attention_block(ctx, be, &ctx->acts[cur], &m->layers[l], &ctx->kv[l], n, pos0);
        ffn_block(ctx, be, &ctx->acts[cur], &m->layers[l], n);
    }

    if (first < n) {
        if (m->out_be != cur) {
            move_x(ctx, cur, m->out_be, n);
            cur = m->out_be;
            be = ctx->backends[cur];
        }
        chord_acts *a = &ctx->acts[cur];
        int rows = n - first;
        const float *xs = a->x + (size_t)first * hp->n_embd;
        be->ops->rmsnorm(be, a->xb, xs, &m->output_norm, rows, hp->n_embd, hp->rms_eps);
        float *lg[1] = {a->logits};
        const chord_weight *wout[1] = {&m->output};
        be->ops->matmul(be, 1, lg, wout, a->xb, rows);
    }
    return cur;
}

static bool single_backend(const chord_model *m) {
    for (int l = 0; l < m->hp.n_layer; l++)
        if (m->layer_be[l] != m->out_be) return false;
    return true;
}

chord_status forward_chunk(chord_context *ctx, const int32_t *tokens, int n, int pos0, int first,
                           float *out, chord_error *err) {
    const chord_model *m = ctx->model;
    CHORD_ASSERT(n > 0 && n <= ctx->n_batch && pos0 + n <= ctx->n_ctx);

    /* A one-token step on one device may be replayed as a whole (CUDA graphs). */
    int cur = m->out_be;
    chord_backend *be = ctx->backends[cur];
    bool step = n == 1 && first == 0 && single_backend(m) && be->ops->step_begin;
    if (!step || !be->ops->step_begin(be, ctx->step_key, tokens, n, pos0)) {
        cur = issue_ops(ctx, tokens, n, pos0, first);
        if (step) be->ops->step_end(be);
    }
    if (first < n && out) { /* out NULL: the logits stay on the device */
        be = ctx->backends[cur];
        be->ops->to_host(be, out, ctx->acts[cur].logits,
                         (size_t)(n - first) * m->hp.n_vocab * sizeof(float));
    }
    for (int i = 0; i < CHORD_MAX_BACKENDS; i++) {
        if (!ctx->backends[i]) continue;
        chord_status s = ctx->backends[i]->ops->sync(ctx->backends[i], err);
        if (s != CHORD_OK) return s;
    }
    return CHORD_OK;
}
