/* chord: run GGUF language models on the CPU and GPU.
 *
 * Conventions
 * - Handles are opaque. A `*_load` / `*_new` call hands ownership to the caller, who
 *   releases it with the matching `*_free`; `*_free(NULL)` is a no-op.
 * - Fallible calls return a chord_status and, when `err` is not NULL, fill it with a
 *   message naming the problem (and a byte offset for file-format errors).
 * - No global mutable state: separate contexts may be used from separate threads.
 *   One context (and one sampler) must not be used by two threads at once.
 * - The thread calling chord_eval / chord_generate runs a share of the CPU kernels, whose
 *   scratch lives in the context, so it needs little stack: 64 KiB is enough (checked by
 *   tests/test_stack.c for every weight type; an optimized build runs in 16 KiB, a
 *   sanitizer build needs about 128 KiB). Every platform's default thread stack is larger.
 */
#ifndef CHORD_H
#define CHORD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef enum chord_status {
    CHORD_OK = 0,
    CHORD_E_INVALID_ARG = 1,  /* a caller-supplied value is out of range */
    CHORD_E_IO = 2,           /* the file could not be opened, read or mapped */
    CHORD_E_FORMAT = 3,       /* the file is malformed or corrupt */
    CHORD_E_UNSUPPORTED = 4,  /* well-formed, but chord does not support it */
    CHORD_E_NOMEM = 5,        /* an allocation failed */
    CHORD_E_CONTEXT_FULL = 6, /* the tokens do not fit in the context */
    CHORD_E_BACKEND = 7,      /* a device (GPU) operation failed */
    CHORD_E_TEMPLATE = 8,     /* a chat template failed to parse or render */
} chord_status;

typedef struct chord_error {
    chord_status code;
    int64_t offset; /* byte offset in the file for CHORD_E_FORMAT, else -1 */
    char message[512];
} chord_error;

/* A static string such as "corrupt file". */
const char *chord_status_str(chord_status s);

/* ------------------------------------------------------------------ models */

typedef struct chord_model chord_model;

typedef void (*chord_progress_fn)(float fraction, void *user);

typedef struct chord_model_params {
    int n_gpu_layers;           /* -1: as many as the GPU holds (default); 0: CPU only */
    chord_progress_fn progress; /* called while loading, may be NULL */
    void *progress_user;
} chord_model_params;

chord_model_params chord_model_default_params(void);

/* Maps the file; weights stay in the mapping (never copied to RAM as a whole). */
chord_status chord_model_load(const char *path, const chord_model_params *params,
                              chord_model **out, chord_error *err);
/* Same, from bytes the caller keeps alive until chord_model_free (e.g. in WASM). */
chord_status chord_model_load_from_memory(const void *data, size_t size,
                                          const chord_model_params *params,
                                          chord_model **out, chord_error *err);
void chord_model_free(chord_model *model);

const char *chord_model_arch(const chord_model *model);
int chord_model_n_vocab(const chord_model *model);
int chord_model_n_ctx_train(const chord_model *model);
int chord_model_n_embd(const chord_model *model);
int chord_model_n_layer(const chord_model *model);
/* Which device runs the model, e.g. "cpu" or "cuda (NVIDIA H100, 22/22 layers)". */
const char *chord_model_backend(const chord_model *model);
/* Why the GPU is not used (one line, e.g. "no CUDA device found"), or NULL. */
const char *chord_model_backend_notice(const chord_model *model);
/* general.name, or "" */
const char *chord_model_name(const chord_model *model);
/* Any metadata value rendered as text (arrays abbreviated). Returns the length the
 * full text needs (as snprintf), or -1 when the key is absent. */
int chord_model_meta(const chord_model *model, const char *key, char *buf, size_t buf_size);

/* -------------------------------------------------------------- contexts */

typedef struct chord_context chord_context;

typedef struct chord_context_params {
    int n_ctx;     /* KV cache length in tokens; 0: min(model's training length, 4096) */
    int n_threads; /* CPU threads; 0: number of physical cores */
    int n_batch;   /* tokens per forward chunk during prompt eval; 0: 512 */
} chord_context_params;

chord_context_params chord_context_default_params(void);
chord_status chord_context_new(chord_model *model, const chord_context_params *params,
                               chord_context **out, chord_error *err);
void chord_context_free(chord_context *ctx);
int chord_context_n_ctx(const chord_context *ctx);
/* Number of tokens held in the KV cache. */
int chord_context_n_past(const chord_context *ctx);
/* Drops cached tokens at positions >= n_keep (n_keep <= n_past). */
chord_status chord_context_truncate(chord_context *ctx, int n_keep);

/* Appends tokens to the KV cache at positions n_past.. and computes logits.
 * all_logits = false: logits of the last token only; true: of every token. */
chord_status chord_eval(chord_context *ctx, const int32_t *tokens, int n_tokens,
                        bool all_logits, chord_error *err);
/* Logits [n_vocab] of the i-th token of the last chord_eval (i = -1: the last token).
 * Valid until the next chord_eval. NULL if that position has no logits. */
const float *chord_get_logits(const chord_context *ctx, int i);

/* ------------------------------------------------------------ tokenizer */

/* Encodes text. add_bos: start with BOS when the model's metadata asks for one
 * (tokenizer.ggml.add_bos_token). parse_special: control tokens spelled in the text
 * (e.g. "<|im_start|>") become those tokens. Returns the number of tokens; if that
 * exceeds max_tokens, nothing is written and the caller retries with a larger buffer
 * (tokens may be NULL to ask for the count). Negative: error. */
int chord_tokenize(const chord_model *model, const char *text, size_t text_len,
                   int32_t *tokens, int max_tokens, bool add_bos, bool parse_special,
                   chord_error *err);
/* Bytes of one token's text (may be a partial UTF-8 sequence). Returns the length
 * (which may exceed buf_size: nothing is written then) or -1 for an invalid id. */
int chord_token_to_piece(const chord_model *model, int32_t token, char *buf, int buf_size);
int32_t chord_token_bos(const chord_model *model); /* -1 if none */
int32_t chord_token_eos(const chord_model *model); /* -1 if none */
/* True for every end-of-generation token (eos, eot, <|im_end|>, <end_of_turn>, ...). */
bool chord_token_is_eog(const chord_model *model, int32_t token);

/* --------------------------------------------------------------- sampling */

typedef struct chord_sampler chord_sampler;

typedef struct chord_sampler_params {
    float temperature;    /* <= 0: greedy */
    int top_k;            /* <= 0: off */
    float top_p;          /* >= 1: off */
    float min_p;          /* <= 0: off */
    float repeat_penalty; /* 1: off */
    int repeat_last_n;    /* tokens considered by the penalty */
    uint64_t seed;        /* CHORD_SEED_RANDOM: chosen from the clock */
} chord_sampler_params;

#define CHORD_SEED_RANDOM UINT64_MAX

chord_sampler_params chord_sampler_default_params(void);
chord_status chord_sampler_new(const chord_sampler_params *params, chord_sampler **out,
                               chord_error *err);
void chord_sampler_free(chord_sampler *s);
uint64_t chord_sampler_seed(const chord_sampler *s); /* the seed in use */
/* Picks a token from logits[n_vocab]; NaN/inf logits are treated as impossible. */
int32_t chord_sampler_sample(chord_sampler *s, const float *logits, int n_vocab);
/* Records a token (prompt or generated) for the repetition penalty. */
void chord_sampler_accept(chord_sampler *s, int32_t token);
void chord_sampler_reset(chord_sampler *s);

/* chord_eval of the tokens (logits of the last one), then *token = the draw of
 * chord_sampler_sample from those logits (not accepted: call chord_sampler_accept). The
 * same token as those two calls; where the output runs on the GPU and the sampler needs
 * only the best logits (greedy, or top-k), only they cross the bus, and
 * chord_get_logits then returns NULL. CHORD_GPU_SAMPLE=0 always reads every logit. */
chord_status chord_eval_sample(chord_context *ctx, const int32_t *tokens, int n_tokens,
                               chord_sampler *smp, int32_t *token, chord_error *err);

/* ---------------------------------------------------------- chat templates */

typedef struct chord_chat_message {
    const char *role; /* "system", "user", "assistant" */
    const char *content;
} chord_chat_message;

/* Renders messages with the model's own tokenizer.chat_template, or with `tmpl`
 * when not NULL (a Jinja template, or a name: chatml, llama2, llama3, zephyr,
 * mistral, gemma). *out is malloc'd; the caller frees it. */
chord_status chord_chat_apply_template(const chord_model *model, const char *tmpl,
                                       const chord_chat_message *msgs, size_t n_msgs,
                                       bool add_generation_prompt, char **out,
                                       chord_error *err);

/* ------------------------------------------------------------- generation */

/* Receives UTF-8 text as it is produced (never a partial character).
 * Return false to stop the generation. */
typedef bool (*chord_text_fn)(const char *text, size_t len, void *user);

typedef struct chord_gen_params {
    int max_tokens;           /* <= 0: until end of generation or context full */
    const char *const *stop;  /* stop strings (not emitted), may be NULL */
    int n_stop;
    bool parse_special;       /* recognise control tokens written in the prompt */
} chord_gen_params;

typedef struct chord_gen_stats {
    int n_prompt;          /* prompt tokens evaluated */
    int n_gen;             /* tokens generated */
    double prompt_seconds; /* wall time of prompt evaluation */
    double gen_seconds;    /* wall time of generation */
    bool hit_eog;          /* stopped on an end-of-generation token */
    bool hit_stop;         /* stopped on a stop string */
    bool hit_ctx;          /* stopped because the context was full */
} chord_gen_stats;

/* Tokenizes `prompt` (no BOS is added when the cache is not empty), evaluates it after
 * the tokens already cached, then samples and streams up to max_tokens tokens. */
chord_status chord_generate(chord_context *ctx, chord_sampler *s, const char *prompt,
                            const chord_gen_params *params, chord_text_fn on_text,
                            void *user, chord_gen_stats *stats, chord_error *err);

#ifdef __cplusplus
}
#endif
#endif
