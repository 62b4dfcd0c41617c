/* A loaded model: hyperparameters from metadata and weights bound by name, with
 * their types and shapes checked at load, pointing into the mapped file. */
#ifndef CHORD_MODEL_H
#define CHORD_MODEL_H

#include "backend.h"
#include "chord.h"
#include "gguf.h"
#include "mapfile.h"
#include "tokenizer/tokenizer.h"

typedef struct chord_hparams {
    int n_vocab;
    int n_embd;
    int n_ff;
    int n_layer;
    int n_head;
    int n_head_kv;
    int head_dim;    /* n_embd / n_head unless attention.key_length says otherwise */
    int n_rot;       /* rope.dimension_count */
    int n_ctx_train;
    float rope_base;
    float rope_scale; /* linear scaling factor applied to positions (1 = none) */
    float rms_eps;
} chord_hparams;

typedef struct chord_layer {
    chord_weight attn_norm; /* [n_embd] */
    chord_weight wq;        /* [n_head*head_dim][n_embd] */
    chord_weight wk;        /* [n_head_kv*head_dim][n_embd] */
    chord_weight wv;        /* [n_head_kv*head_dim][n_embd] */
    chord_weight wo;        /* [n_embd][n_head*head_dim] */
    chord_weight ffn_norm;  /* [n_embd] */
    chord_weight w_gate;    /* [n_ff][n_embd] */
    chord_weight w_up;      /* [n_ff][n_embd] */
    chord_weight w_down;    /* [n_embd][n_ff] */
} chord_layer;

#define CHORD_MAX_BACKENDS 2

struct chord_model {
    chord_mapping map;   /* the file, or the caller's bytes when borrowed */
    bool borrowed;
    gguf_file *gguf;
    char arch[32];
    char name[128];      /* general.name, may be empty */
    chord_hparams hp;
    chord_weight tok_embd;    /* [n_vocab][n_embd] */
    chord_weight output_norm; /* [n_embd] */
    chord_weight output;      /* [n_vocab][n_embd]; tok_embd's rows when tied */
    chord_layer *layers;      /* [n_layer] */
    tok_vocab *vocab;
    char *chat_template;      /* tokenizer.chat_template, NUL-terminated copy, or NULL */

    /* Devices: backend 0 is the CPU (each context makes its own, with its own thread
     * pool); backend 1 is the GPU, shared by the model's contexts (weights live there
     * once) and used by one context at a time under gpu_lock. */
    chord_backend *gpu;       /* NULL: CPU only */
    void *gpu_lock;           /* pthread_mutex_t* */
    int *layer_be;            /* [n_layer] 0 = cpu, 1 = gpu */
    int out_be;               /* backend of the output head */
    uint64_t ctx_serial;      /* contexts made so far (each one's step key) */
    char backend_desc[192];
    char backend_notice[256]; /* why the GPU is not used, or "" */
};

/* Reads hyperparameters and binds weights; does not create backends. */
chord_status model_bind(chord_model *m, chord_error *err);

#endif
