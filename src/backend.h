/* The interface every compute device implements. The forward pass (forward.c) is
 * written once against it and never branches on the device or the ISA.
 *
 * Activations are float32, row-major [n_tokens][dim], in memory the backend owns
 * (host memory for the CPU, device memory for CUDA); the forward pass only passes the
 * pointers along. Calls may be asynchronous: results are visible to the host after
 * to_host / sync. */
#ifndef CHORD_BACKEND_H
#define CHORD_BACKEND_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "chord.h"
#include "quant/types.h"

/* A weight matrix [n_out][n_in] (GGUF ne = {n_in, n_out}), or a vector (n_out = 1). */
typedef struct chord_weight {
    const char *name;   /* GGUF tensor name */
    chord_type type;
    int64_t n_in;       /* row length (ne[0]) */
    int64_t n_out;      /* number of rows (ne[1]) */
    const void *host;   /* rows in the mapped file */
    void *dev;          /* the backend's copy (NULL on the CPU: it reads `host`) */
    size_t nbytes;
} chord_weight;

/* Per-layer attention cache, allocated by the backend that runs the layer, in the
 * layout and precision it chooses (kv_bytes says how big each of k and v is). */
typedef struct chord_kv {
    void *k;
    void *v;
} chord_kv;

typedef struct chord_attn_shape {
    int n_head;
    int n_head_kv;
    int head_dim;
    int n_ctx;   /* cache capacity */
    float scale; /* usually 1/sqrt(head_dim) */
} chord_attn_shape;

typedef struct chord_rope_shape {
    int n_head;
    int head_dim;
    int n_rot;        /* rotated dims per head (<= head_dim) */
    float freq_base;
    float freq_scale; /* linear position scaling, 1 = none */
    bool neox;        /* rotate pairs (i, i + n_rot/2) instead of (2i, 2i+1) */
} chord_rope_shape;

typedef struct chord_backend chord_backend;

typedef struct chord_backend_ops {
    const char *name;
    void (*destroy)(chord_backend *be);
    /* Can this backend multiply with weights of this type? */
    bool (*supports_type)(chord_backend *be, chord_type type);
    /* Makes w usable on the device (copies to GPU memory; no-op on the CPU). */
    chord_status (*upload)(chord_backend *be, chord_weight *w, chord_error *err);

    /* Activation / cache memory. alloc returns NULL on failure. */
    void *(*alloc)(chord_backend *be, size_t bytes);
    void (*free)(chord_backend *be, void *p);
    void (*to_host)(chord_backend *be, void *dst, const void *src, size_t bytes);
    void (*from_host)(chord_backend *be, void *dst, const void *src, size_t bytes);
    /* Waits for queued work; returns (and clears) the first failure of any op since the
     * last sync: ops themselves return nothing. */
    chord_status (*sync)(chord_backend *be, chord_error *err);
    /* Optional (NULL: not offered): makes host memory [p, p + bytes) faster for to_host /
     * from_host (a GPU: page-locked, copied by DMA without a staging copy); best effort.
     * unpin undoes it before the memory is freed or moved. */
    void (*pin)(chord_backend *be, void *p, size_t bytes);
    void (*unpin)(chord_backend *be, void *p);
    /* Bytes of each of k and v for one layer; NULL means float32 [n_ctx][kv_dim]. */
    size_t (*kv_bytes)(chord_backend *be, int n_ctx, int kv_dim);

    /* Optional (NULL: not offered): a whole decode step as one replayable unit, e.g. a
     * CUDA graph. forward.c calls step_begin before the ops of a step that runs entirely
     * on this backend. It returns true when the backend has replayed the step itself
     * (the logits are then in the output buffer of the ops recorded earlier, and the ops
     * are not issued); false means: issue the ops now (the backend may record them),
     * then call step_end. tokens (host) and pos0 are the step's inputs: a backend that
     * replays must read them from memory it updates here, not from recorded arguments.
     * key: the same key (one context's steps) promises the same ops apart from the token
     * and position, so the backend may replay the last step of that key at once. */
    bool (*step_begin)(chord_backend *be, uint64_t key, const int32_t *tokens, int n, int pos0);
    void (*step_end)(chord_backend *be);

    /* Optional (NULL: not offered): ids / vals (host) get the k best of the n values at x
     * (this backend's memory), by value descending then index ascending, +inf counted as
     * the largest finite float, NaN and -inf last. Waits for the queued work (and reports
     * its failures, as sync does). CHORD_E_UNSUPPORTED when k is more than the backend
     * selects for this n (the caller then reads all n). */
    chord_status (*topk)(chord_backend *be, const float *x, int n, int k, int32_t *ids,
                         float *vals, chord_error *err);

    /* out[i] = emb row tokens[i] (dequantized), out is [n][emb->n_in]. tokens are host. */
    void (*get_rows)(chord_backend *be, float *out, const chord_weight *emb,
                     const int32_t *tokens, int n);
    /* out[t] = x[t] / rms(x[t]) * w */
    void (*rmsnorm)(chord_backend *be, float *out, const float *x, const chord_weight *w,
                    int n, int dim, float eps);
    /* For each k < n_w: ys[k][t][o] = sum_i ws[k][o][i] * x[t][i]. Several weights that
     * share one input go in one call, so the input is prepared (quantized) once. */
    void (*matmul)(chord_backend *be, int n_w, float *const *ys,
                   const chord_weight *const *ws, const float *x, int n);
    /* Rotates q [n][n_head*head_dim] in place, token t at position pos0 + t. */
    void (*rope)(chord_backend *be, float *x, int n, int pos0, const chord_rope_shape *s);
    /* Writes k, v [n][n_head_kv*head_dim] at cache positions pos0.. and computes causal
     * attention of q [n][n_head*head_dim] over positions 0..pos0+t into out. */
    void (*attention)(chord_backend *be, float *out, const float *q, const float *k,
                      const float *v, chord_kv *kv, int n, int pos0,
                      const chord_attn_shape *s);
    /* x += y, over n floats */
    void (*add)(chord_backend *be, float *x, const float *y, size_t n);
    /* out = silu(gate) * up, over n floats */
    void (*swiglu)(chord_backend *be, float *out, const float *gate, const float *up,
                   size_t n);
} chord_backend_ops;

struct chord_backend {
    const chord_backend_ops *ops;
    char desc[128]; /* "cpu (avx512, 2 threads)" */
};

/* CPU backend with n_threads workers (0: physical cores). */
chord_status chord_backend_cpu_new(int n_threads, chord_backend **out, chord_error *err);
int chord_backend_cpu_threads(chord_backend *cpu_backend);

#ifdef CHORD_HAVE_CUDA
/* Fails (with a reason in err) when no usable CUDA device is present. */
chord_status chord_backend_cuda_new(chord_backend **out, chord_error *err);
/* Free device memory in bytes, for deciding how many layers fit. */
size_t chord_backend_cuda_free_mem(chord_backend *be);
#endif

#endif
