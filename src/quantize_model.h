/* Quantizing whole models: the output type of each tensor (llama.cpp's rules for the
 * mixes), and a threaded engine that streams rows of floats through the quantizers
 * into a GGUF file. Used by `chord quantize` (rows from an F32/F16/BF16 or, with
 * allow_requantize, quantized file) and `chord genmodel` (rows from a PRNG). */
#ifndef CHORD_QUANTIZE_MODEL_H
#define CHORD_QUANTIZE_MODEL_H

#include <stdbool.h>
#include <stdint.h>

#include "chord.h"
#include "gguf.h"
#include "quant/types.h"

/* A target "file type": one weight type, or a mix. */
typedef enum quant_mix {
    QUANT_MIX_NONE = 0,
    QUANT_MIX_Q4_K_M, /* Q4_K; Q6_K for output and attn_v / ffn_down of the more-bits layers */
    QUANT_MIX_Q5_K_M, /* Q5_K; same rules */
} quant_mix;

typedef struct quant_ftype {
    const char *name; /* "Q4_K_M" */
    chord_type base;  /* the type of most matrices */
    quant_mix mix;
    uint32_t file_type; /* llama.cpp's general.file_type value */
} quant_ftype;

/* F32 F16 BF16 Q4_0 Q4_1 Q5_0 Q5_1 Q8_0 Q2_K Q3_K Q4_K Q5_K Q6_K Q4_K_M Q5_K_M
 * (case-insensitive); NULL for anything else. */
const quant_ftype *quant_ftype_from_name(const char *name);
/* The names above, space-separated. */
const char *quant_ftype_names(void);

/* The type of one tensor. 1-D tensors (norms, biases) are F32. Matrices get the base
 * type, except, unless `pure`: output.weight (and token_embd.weight when there is no
 * output.weight) Q6_K when the base type is below Q6_K; and for the _M mixes attn_v and
 * ffn_down Q6_K on the "more bits" layers (the first and last n_layer/8 and every third
 * in between). A row length the type's block size does not divide falls back as
 * llama.cpp does (Q2_K/Q3_K -> Q4_0, Q4_K -> Q5_0, Q5_K -> Q5_1, Q6_K -> Q8_0, legacy
 * -> F16). has_output: the model has a separate output.weight. */
chord_type quant_tensor_type(const quant_ftype *ft, const char *name, uint32_t n_dims,
                             const int64_t *ne, int n_layer, bool has_output, bool pure);

/* ----------------------------------------------------------- the engine */

typedef struct qm_tensor {
    const char *name;
    uint32_t n_dims;
    int64_t ne[GGUF_MAX_DIMS]; /* unused dimensions 1 */
    chord_type type;           /* output type */
    uint32_t src_type;         /* for progress reports only */
    const void *raw;           /* not NULL: the output bytes as they are (no conversion) */
} qm_tensor;

/* Fills dst[ne[0]] with row `row` of tensor `t` (rows counted over ne[1..3]). Called from
 * several threads at once. Returns CHORD_OK or an error (err may be filled). */
typedef chord_status (*qm_row_fn)(void *user, uint64_t t, int64_t row, float *dst,
                                  chord_error *err);

/* Called on the calling thread before each tensor is written. */
typedef void (*qm_tensor_fn)(void *user, uint64_t i, uint64_t n, const qm_tensor *t);

typedef struct qm_params {
    int n_threads;          /* <= 0: 1 */
    qm_tensor_fn on_tensor; /* may be NULL */
    void *user;
} qm_params;

struct gguf_writer;
/* Declares the tensors in w (whose metadata is already set), writes `path`, and fills
 * each tensor row by row through `rows` and chord_quantize_row, n_threads at a time,
 * streaming (memory: a few MiB per thread plus one chunk of output). */
chord_status qm_write_model(struct gguf_writer *w, const char *path, const qm_tensor *tensors,
                            uint64_t n_tensors, qm_row_fn rows, void *rows_user,
                            const qm_params *p, uint64_t *file_size, chord_error *err);

/* --------------------------------------------------- quantizing a file */

typedef struct quantize_params {
    const quant_ftype *ftype;
    int n_threads;          /* <= 0: 1 */
    bool allow_requantize;  /* accept quantized input (dequantized, then quantized) */
    bool pure;              /* every matrix in the base type */
    qm_tensor_fn on_tensor; /* progress, may be NULL */
    void *user;
} quantize_params;

/* Reads `in` (GGUF), writes `out` with every kv of `in` (general.file_type and
 * general.quantization_version updated) and every tensor converted. Tensors whose type
 * does not change are copied byte for byte. Quantized input that would change type
 * needs allow_requantize (else CHORD_E_UNSUPPORTED). */
chord_status quantize_model_file(const char *in, const char *out, const quantize_params *p,
                                 uint64_t *file_size, chord_error *err);

#endif
