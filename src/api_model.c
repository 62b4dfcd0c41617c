/* Public model API: load (map, parse, bind, tokenizer, devices), free, queries. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "devices.h"
#include "error.h"
#include "model.h"

chord_model_params chord_model_default_params(void) {
    chord_model_params p = {.n_gpu_layers = -1, .progress = NULL, .progress_user = NULL};
    return p;
}

static chord_status load_common(chord_model *m, const chord_model_params *params,
                                chord_error *err) {
    chord_model_params dflt = chord_model_default_params();
    if (!params) params = &dflt;
    chord_status s = gguf_parse(m->map.data, m->map.size, &m->gguf, err);
    if (s != CHORD_OK) return s;
    if ((s = model_bind(m, err)) != CHORD_OK) return s;
    if ((s = tok_load(m->gguf, &m->vocab, err)) != CHORD_OK) return s;
    if (tok_n_vocab(m->vocab) != m->hp.n_vocab)
        return chord_fail(err, CHORD_E_FORMAT,
                          "tokenizer has %d tokens but token_embd.weight has %d rows",
                          tok_n_vocab(m->vocab), m->hp.n_vocab);
    return devices_setup(m, params, err);
}

chord_status chord_model_load(const char *path, const chord_model_params *params,
                              chord_model **out, chord_error *err) {
    if (!path || !out) return chord_fail(err, CHORD_E_INVALID_ARG, "model path is NULL");
    *out = NULL;
    chord_model *m = calloc(1, sizeof *m);
    if (!m) return chord_fail(err, CHORD_E_NOMEM, "out of memory");
    chord_status s = chord_map_file(path, &m->map, err);
    if (s == CHORD_OK) s = load_common(m, params, err);
    if (s != CHORD_OK) {
        chord_model_free(m);
        return s;
    }
    *out = m;
    return CHORD_OK;
}

chord_status chord_model_load_from_memory(const void *data, size_t size,
                                          const chord_model_params *params, chord_model **out,
                                          chord_error *err) {
    if (!data || !out) return chord_fail(err, CHORD_E_INVALID_ARG, "model bytes are NULL");
    *out = NULL;
    chord_model *m = calloc(1, sizeof *m);
    if (!m) return chord_fail(err, CHORD_E_NOMEM, "out of memory");
    m->map.data = data; /* not owned: chord_unmap of a borrowed span is never called */
    m->map.size = size;
    m->borrowed = true;
    chord_status s = load_common(m, params, err);
    if (s != CHORD_OK) {
        chord_model_free(m);
        return s;
    }
    *out = m;
    return CHORD_OK;
}

void chord_model_free(chord_model *m) {
    if (!m) return;
    devices_teardown(m);
    tok_free(m->vocab);
    free(m->chat_template);
    free(m->layers);
    gguf_free(m->gguf);
    if (!m->borrowed) chord_unmap(&m->map);
    free(m);
}

const char *chord_model_arch(const chord_model *m) { return m->arch; }
const char *chord_model_name(const chord_model *m) { return m->name; }
int chord_model_n_vocab(const chord_model *m) { return m->hp.n_vocab; }
int chord_model_n_ctx_train(const chord_model *m) { return m->hp.n_ctx_train; }
int chord_model_n_embd(const chord_model *m) { return m->hp.n_embd; }
int chord_model_n_layer(const chord_model *m) { return m->hp.n_layer; }
const char *chord_model_backend(const chord_model *m) { return m->backend_desc; }
const char *chord_model_backend_notice(const chord_model *m) {
    return m->backend_notice[0] ? m->backend_notice : NULL;
}

int chord_model_meta(const chord_model *m, const char *key, char *buf, size_t size) {
    const gguf_kv *kv = gguf_find_kv(m->gguf, key);
    if (!kv) return -1;
    if (kv->value.type == GGUF_STRING) {
        gguf_str s;
        gguf_get_str(m->gguf, key, &s);
        return snprintf(buf, size, "%.*s", (int)s.len, s.ptr);
    }
    char tmp[4096];
    gguf_value_format(&kv->value, tmp, sizeof tmp, 16);
    return snprintf(buf, size, "%s", tmp);
}

/* ---- tokenizer ---- */

int chord_tokenize(const chord_model *m, const char *text, size_t len, int32_t *tokens, int max,
                   bool add_bos, bool parse_special, chord_error *err) {
    if (!m || (!text && len)) {
        chord_fail(err, CHORD_E_INVALID_ARG, "chord_tokenize: NULL argument");
        return -1;
    }
    int32_t *ids = NULL;
    size_t n = 0;
    if (tok_encode(m->vocab, text ? text : "", len, add_bos && tok_add_bos(m->vocab), parse_special, &ids, &n, err) !=
        CHORD_OK)
        return -1;
    if (n > (size_t)INT32_MAX) {
        free(ids);
        chord_fail(err, CHORD_E_INVALID_ARG, "text is too long");
        return -1;
    }
    if ((int)n <= max && tokens) memcpy(tokens, ids, n * sizeof *ids);
    free(ids);
    return (int)n;
}

int chord_token_to_piece(const chord_model *m, int32_t token, char *buf, int size) {
    return tok_piece(m->vocab, token, buf, size);
}
int32_t chord_token_bos(const chord_model *m) { return tok_bos(m->vocab); }
int32_t chord_token_eos(const chord_model *m) { return tok_eos(m->vocab); }
bool chord_token_is_eog(const chord_model *m, int32_t t) { return tok_is_eog(m->vocab, t); }
