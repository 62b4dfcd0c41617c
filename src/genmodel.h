/* Random-weight llama models at real shapes, for benchmarks and tests: every weight is
 * generated row by row from a seeded PRNG and quantized on the fly, so a 7B file
 * streams to disk without ever being held as floats.
 *
 * Weights: matrices N(0, 1/n_in); token_embd N(0, 1) (as the golden dev models);
 * norms 1 + N(0, 0.1^2). Each row's values depend only on (seed, tensor, row), so the
 * file is identical whatever the thread count. Vocabulary and tokenizer metadata
 * (every tokenizer.* key) are copied from a vocabulary GGUF such as
 * ggml-vocab-llama-spm.gguf; n_vocab is its token count. */
#ifndef CHORD_GENMODEL_H
#define CHORD_GENMODEL_H

#include <stdbool.h>
#include <stdint.h>

#include "chord.h"
#include "quantize_model.h"

typedef struct genmodel_shape {
    const char *name;
    int n_embd, n_ff, n_layer, n_head, n_head_kv, n_ctx;
} genmodel_shape;

/* "tinyllama-1.1b", "llama2-7b", "dev" (512/1024/2 layers/8 heads/2 kv heads); NULL if
 * unknown. */
const genmodel_shape *genmodel_shape_from_name(const char *name);
const char *genmodel_shape_names(void);

typedef struct genmodel_params {
    const genmodel_shape *shape;
    const quant_ftype *ftype;
    const char *vocab_path;
    uint64_t seed;
    int n_threads;          /* <= 0: 1 */
    bool pure;              /* every matrix in the base type */
    qm_tensor_fn on_tensor; /* progress, may be NULL */
    void *user;
} genmodel_params;

chord_status genmodel_write(const char *out, const genmodel_params *p, uint64_t *file_size,
                            chord_error *err);

#endif
