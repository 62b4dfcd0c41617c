/* Public context API: KV cache and buffers, evaluation in chunks, logits. */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "context.h"
#include "sample.h"
#include "error.h"

chord_context_params chord_context_default_params(void) {
    chord_context_params p = {.n_ctx = 0, .n_threads = 0, .n_batch = 0};
    return p;
}

static void free_acts(chord_backend *be, chord_acts *a) {
    float **bufs[] = {&a->x, &a->xb, &a->q, &a->k, &a->v, &a->att, &a->gate, &a->up, &a->logits};
    for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++) {
        if (*bufs[i]) be->ops->free(be, *bufs[i]);
        *bufs[i] = NULL;
    }
}

static chord_status alloc_acts(chord_context *ctx, int bi, bool with_logits, chord_error *err) {
    const chord_hparams *hp = &ctx->model->hp;
    chord_backend *be = ctx->backends[bi];
    chord_acts *a = &ctx->acts[bi];
    size_t B = (size_t)ctx->n_batch, E = hp->n_embd, QD = (size_t)hp->n_head * hp->head_dim,
           KD = (size_t)hp->n_head_kv * hp->head_dim, F = hp->n_ff;
    struct { float **p; size_t n; } want[] = {
        {&a->x, B * E},  {&a->xb, B * E},  {&a->q, B * QD},    {&a->k, B * KD},
        {&a->v, B * KD}, {&a->att, B * QD}, {&a->gate, B * F}, {&a->up, B * F},
        {&a->logits, with_logits ? B * hp->n_vocab : 0},
    };
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++) {
        if (!want[i].n) continue;
        *want[i].p = be->ops->alloc(be, want[i].n * sizeof(float));
        if (!*want[i].p)
            return chord_fail(err, CHORD_E_NOMEM, "out of %s memory for activations (n_batch %d)",
                              be->ops->name, ctx->n_batch);
    }
    return CHORD_OK;
}

/* The logits are copied from the output backend after every eval: pinned where it offers
 * that (CUDA: a 32000-float row went through a staging copy in pageable memory). */
static chord_backend *logits_backend(const chord_context *ctx) {
    chord_backend *be = ctx->backends[ctx->model->out_be];
    return be && be->ops->pin && be->ops->unpin ? be : NULL;
}

void chord_context_free(chord_context *ctx) {
    if (!ctx) return;
    const chord_model *m = ctx->model;
    chord_backend *pb = logits_backend(ctx);
    if (pb && ctx->logits) pb->ops->unpin(pb, ctx->logits);
    if (ctx->kv) {
        for (int l = 0; l < m->hp.n_layer; l++) {
            chord_backend *be = ctx->backends[m->layer_be[l]];
            if (!be) continue;
            if (ctx->kv[l].k) be->ops->free(be, ctx->kv[l].k);
            if (ctx->kv[l].v) be->ops->free(be, ctx->kv[l].v);
        }
        free(ctx->kv);
    }
    for (int i = 0; i < CHORD_MAX_BACKENDS; i++)
        if (ctx->backends[i]) free_acts(ctx->backends[i], &ctx->acts[i]);
    if (ctx->backends[0]) ctx->backends[0]->ops->destroy(ctx->backends[0]);
    free(ctx->host_x);
    free(ctx->logits);
    free(ctx);
}

chord_status chord_context_new(chord_model *m, const chord_context_params *params,
                               chord_context **out, chord_error *err) {
    if (!m || !out) return chord_fail(err, CHORD_E_INVALID_ARG, "chord_context_new: NULL argument");
    *out = NULL;
    chord_context_params p = params ? *params : chord_context_default_params();
    if (p.n_ctx < 0 || p.n_threads < 0 || p.n_batch < 0)
        return chord_fail(err, CHORD_E_INVALID_ARG, "context sizes must not be negative");
    const chord_hparams *hp = &m->hp;
    if (p.n_ctx == 0) p.n_ctx = hp->n_ctx_train < 4096 ? hp->n_ctx_train : 4096;
    if (p.n_ctx > (1 << 22))
        return chord_fail(err, CHORD_E_INVALID_ARG, "context size %d is too large", p.n_ctx);
    if (p.n_batch == 0) p.n_batch = 512;
    if (p.n_batch > p.n_ctx) p.n_batch = p.n_ctx;

    chord_context *ctx = calloc(1, sizeof *ctx);
    if (!ctx) return chord_fail(err, CHORD_E_NOMEM, "out of memory");
    ctx->model = m;
    ctx->step_key = __atomic_add_fetch(&m->ctx_serial, 1, __ATOMIC_RELAXED);
    ctx->n_ctx = p.n_ctx;
    ctx->n_batch = p.n_batch;
    chord_status s = chord_backend_cpu_new(p.n_threads, &ctx->backends[0], err);
    if (s != CHORD_OK) goto fail;
    ctx->backends[1] = m->gpu;

    bool uses[CHORD_MAX_BACKENDS] = {false};
    for (int l = 0; l < hp->n_layer; l++) uses[m->layer_be[l]] = true;
    uses[m->out_be] = true;
    for (int i = 0; i < CHORD_MAX_BACKENDS; i++)
        if (uses[i] && (s = alloc_acts(ctx, i, i == m->out_be, err)) != CHORD_OK) goto fail;

    ctx->kv = calloc((size_t)hp->n_layer, sizeof *ctx->kv);
    if (!ctx->kv) {
        s = chord_fail(err, CHORD_E_NOMEM, "out of memory");
        goto fail;
    }
    int kv_dim = hp->n_head_kv * hp->head_dim;
    for (int l = 0; l < hp->n_layer; l++) {
        chord_backend *be = ctx->backends[m->layer_be[l]];
        size_t kv_bytes = be->ops->kv_bytes ? be->ops->kv_bytes(be, p.n_ctx, kv_dim)
                                            : (size_t)p.n_ctx * kv_dim * sizeof(float);
        ctx->kv[l].k = be->ops->alloc(be, kv_bytes);
        ctx->kv[l].v = be->ops->alloc(be, kv_bytes);
        if (!ctx->kv[l].k || !ctx->kv[l].v) {
            s = chord_fail(err, CHORD_E_NOMEM, "out of %s memory for the KV cache (%d tokens)",
                           be->ops->name, p.n_ctx);
            goto fail;
        }
    }
    ctx->host_x = malloc((size_t)p.n_batch * hp->n_embd * sizeof(float));
    if (!ctx->host_x) {
        s = chord_fail(err, CHORD_E_NOMEM, "out of memory");
        goto fail;
    }
    *out = ctx;
    return CHORD_OK;
fail:
    chord_context_free(ctx);
    return s;
}

int chord_context_n_ctx(const chord_context *ctx) { return ctx->n_ctx; }
int chord_context_n_past(const chord_context *ctx) { return ctx->n_past; }

chord_status chord_context_truncate(chord_context *ctx, int n_keep) {
    if (n_keep < 0 || n_keep > ctx->n_past)
        return CHORD_E_INVALID_ARG;
    ctx->n_past = n_keep; /* later writes overwrite the dropped positions */
    ctx->n_logits = 0;
    return CHORD_OK;
}

static chord_status ensure_logits(chord_context *ctx, int rows, chord_error *err) {
    if (rows <= ctx->logits_cap) return CHORD_OK;
    const size_t row = (size_t)ctx->model->hp.n_vocab * sizeof(float);
    chord_backend *pb = logits_backend(ctx);
    if (pb && ctx->logits) pb->ops->unpin(pb, ctx->logits);
    float *p = realloc(ctx->logits, (size_t)rows * row);
    if (!p) {
        if (pb && ctx->logits) pb->ops->pin(pb, ctx->logits, (size_t)ctx->logits_cap * row);
        return chord_fail(err, CHORD_E_NOMEM, "out of memory for %d rows of logits", rows);
    }
    ctx->logits = p;
    ctx->logits_cap = rows;
    if (pb) pb->ops->pin(pb, p, (size_t)rows * row);
    return CHORD_OK;
}

static chord_status check_tokens(const chord_context *ctx, const int32_t *tokens, int n,
                                 chord_error *err) {
    const chord_model *m = ctx->model;
    for (int i = 0; i < n; i++)
        if (tokens[i] < 0 || tokens[i] >= m->hp.n_vocab)
            return chord_fail(err, CHORD_E_INVALID_ARG, "token id %d at index %d is outside [0, %d)",
                              tokens[i], i, m->hp.n_vocab);
    if (n > ctx->n_ctx - ctx->n_past)
        return chord_fail(err, CHORD_E_CONTEXT_FULL,
                          "%d tokens do not fit in the context: %d of %d positions are used", n,
                          ctx->n_past, ctx->n_ctx);
    return CHORD_OK;
}

/* The chunks of an eval (the caller holds the GPU lock). Logits of rows first_row.. go
 * to ctx->logits, or stay in the output backend's buffer when on_device. */
static chord_status eval_chunks(chord_context *ctx, const int32_t *tokens, int n, int first_row,
                                bool on_device, chord_error *err) {
    const chord_model *m = ctx->model;
    chord_status s = CHORD_OK;
    for (int done = 0; done < n && s == CHORD_OK;) {
        int c = n - done < ctx->n_batch ? n - done : ctx->n_batch;
        /* rows of this chunk that return logits: [first, c) */
        int first = first_row > done ? first_row - done : 0;
        if (first > c) first = c;
        float *out =
            on_device ? NULL : ctx->logits + (size_t)(done + first - first_row) * m->hp.n_vocab;
        s = forward_chunk(ctx, tokens + done, c, ctx->n_past, first, out, err);
        if (s == CHORD_OK) {
            ctx->n_past += c;
            done += c;
        }
    }
    ctx->last_n = n;
    ctx->logits_first = first_row;
    ctx->n_logits = s == CHORD_OK && !on_device ? n - first_row : 0;
    return s;
}

chord_status chord_eval(chord_context *ctx, const int32_t *tokens, int n, bool all_logits,
                        chord_error *err) {
    if (!ctx || (!tokens && n) || n < 0)
        return chord_fail(err, CHORD_E_INVALID_ARG, "chord_eval: bad arguments");
    if (n == 0) return CHORD_OK;
    chord_status s = check_tokens(ctx, tokens, n, err);
    if (s != CHORD_OK) return s;
    const chord_model *m = ctx->model;
    int first_row = all_logits ? 0 : n - 1;
    s = ensure_logits(ctx, n - first_row, err);
    if (s != CHORD_OK) return s;
    if (m->gpu_lock) pthread_mutex_lock(m->gpu_lock);
    s = eval_chunks(ctx, tokens, n, first_row, false, err);
    if (m->gpu_lock) pthread_mutex_unlock(m->gpu_lock);
    return s;
}

chord_status context_eval_topk(chord_context *ctx, const int32_t *tokens, int n, int k,
                               int32_t *ids, float *vals, int *n_got, chord_error *err) {
    *n_got = 0;
    if (!ctx || !tokens || n <= 0 || k <= 0)
        return chord_fail(err, CHORD_E_INVALID_ARG, "eval: bad arguments");
    const chord_model *m = ctx->model;
    chord_backend *be = ctx->backends[m->out_be];
    if (!be->ops->topk || k > m->hp.n_vocab) return chord_eval(ctx, tokens, n, false, err);
    chord_status s = check_tokens(ctx, tokens, n, err);
    if (s == CHORD_OK) s = ensure_logits(ctx, 1, err);
    if (s != CHORD_OK) return s;
    if (m->gpu_lock) pthread_mutex_lock(m->gpu_lock);
    s = eval_chunks(ctx, tokens, n, n - 1, true, err);
    if (s == CHORD_OK) {
        const float *dev = ctx->acts[m->out_be].logits;
        s = be->ops->topk(be, dev, m->hp.n_vocab, k, ids, vals, err);
        if (s == CHORD_OK) {
            *n_got = k;
        } else if (s == CHORD_E_UNSUPPORTED) { /* more than it selects: all the logits */
            be->ops->to_host(be, ctx->logits, dev, (size_t)m->hp.n_vocab * sizeof(float));
            s = be->ops->sync(be, err);
            ctx->n_logits = s == CHORD_OK ? 1 : 0;
        }
    }
    if (m->gpu_lock) pthread_mutex_unlock(m->gpu_lock);
    return s;
}

#define CANDS_MAX 512
chord_status chord_eval_sample(chord_context *ctx, const int32_t *tokens, int n, chord_sampler *smp,
                               int32_t *token, chord_error *err) {
    if (!ctx || !smp || !token || !tokens || n <= 0)
        return chord_fail(err, CHORD_E_INVALID_ARG, "chord_eval_sample: bad arguments");
    const int n_vocab = ctx->model->hp.n_vocab;
    const char *env = getenv("CHORD_GPU_SAMPLE");
    const int k = env && !strcmp(env, "0") ? 0 : sampler_cands_needed(smp, n_vocab);
    chord_status s;
    if (k > 0 && k <= CANDS_MAX) {
        int32_t ids[CANDS_MAX];
        float vals[CANDS_MAX];
        int got = 0;
        s = context_eval_topk(ctx, tokens, n, k, ids, vals, &got, err);
        if (s != CHORD_OK) return s;
        if (got > 0) {
            *token = sampler_sample_cands(smp, ids, vals, got, n_vocab);
            return CHORD_OK;
        }
    } else {
        s = chord_eval(ctx, tokens, n, false, err);
        if (s != CHORD_OK) return s;
    }
    *token = chord_sampler_sample(smp, chord_get_logits(ctx, -1), n_vocab);
    return CHORD_OK;
}

const float *chord_get_logits(const chord_context *ctx, int i) {
    if (i < 0) i += ctx->last_n;
    int row = i - ctx->logits_first;
    if (i < 0 || row < 0 || row >= ctx->n_logits) return NULL;
    return ctx->logits + (size_t)row * ctx->model->hp.n_vocab;
}
