/* A context: the KV cache, activation buffers and logits of one conversation. */
#ifndef CHORD_CONTEXT_H
#define CHORD_CONTEXT_H

#include "model.h"

/* Activations of one chunk of up to n_batch tokens, in one backend's memory. */
typedef struct chord_acts {
    float *x;      /* [n_batch][n_embd] residual stream */
    float *xb;     /* [n_batch][n_embd] normed input of a block */
    float *q;      /* [n_batch][n_head*head_dim] */
    float *k;      /* [n_batch][n_head_kv*head_dim] */
    float *v;      /* [n_batch][n_head_kv*head_dim] */
    float *att;    /* [n_batch][n_head*head_dim] attention output */
    float *gate;   /* [n_batch][n_ff] */
    float *up;     /* [n_batch][n_ff] */
    float *logits; /* [n_batch][n_vocab] (only on the output backend) */
} chord_acts;

struct chord_context {
    chord_model *model;
    chord_backend *backends[CHORD_MAX_BACKENDS]; /* [0] own CPU backend, [1] model->gpu */
    int n_threads;
    int n_ctx;
    int n_batch;
    int n_past;          /* tokens in the KV cache */
    chord_kv *kv;        /* [n_layer], in the memory of the layer's backend */
    chord_acts acts[CHORD_MAX_BACKENDS];
    float *host_x;       /* [n_batch][n_embd] staging when layers change backend */
    float *logits;       /* host [logits_cap][n_vocab] */
    int logits_cap;
    int n_logits;        /* rows valid after the last eval */
    int logits_first;    /* index (in the last eval) of the first row held */
    int last_n;          /* tokens in the last eval */
    uint64_t step_key;   /* unique per context: its one-token steps repeat one op sequence */
};

/* Runs n tokens (n <= n_batch) at positions pos0.. through the model; writes the
 * logits of tokens [first, n) to out (host, [n-first][n_vocab]); first = n means none,
 * out = NULL leaves them in the output backend's acts.logits. */
chord_status forward_chunk(chord_context *ctx, const int32_t *tokens, int n, int pos0,
                           int first, float *out, chord_error *err);

/* chord_eval (logits of the last token) that leaves the logits on the output backend
 * and copies only their k best (ids / vals, by value descending then id ascending;
 * *n_got = k). Where that backend offers no selection of k, the logits are copied as by
 * chord_eval and *n_got = 0. */
chord_status context_eval_topk(chord_context *ctx, const int32_t *tokens, int n, int k,
                               int32_t *ids, float *vals, int *n_got, chord_error *err);

#endif
