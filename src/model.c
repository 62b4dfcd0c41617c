/* Hyperparameters from GGUF metadata and weights bound by name, checked at load. */
#include "model.h"

#include <math.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>

#include "error.h"

static const char *const SUPPORTED_ARCHS[] = {"llama", NULL};

static chord_status arch_supported(const char *arch, chord_error *err) {
    for (int i = 0; SUPPORTED_ARCHS[i]; i++)
        if (!strcmp(arch, SUPPORTED_ARCHS[i])) return CHORD_OK;
    char list[128] = "";
    for (int i = 0; SUPPORTED_ARCHS[i]; i++) {
        if (i) strncat(list, ", ", sizeof list - strlen(list) - 1);
        strncat(list, SUPPORTED_ARCHS[i], sizeof list - strlen(list) - 1);
    }
    return chord_fail(err, CHORD_E_UNSUPPORTED,
                      "architecture '%s' is not supported (supported: %s)", arch, list);
}

/* Reads "<arch>.<suffix>" as a positive int; required keys fail with their name. */
static chord_status get_int(const chord_model *m, const char *suffix, bool required, int dflt,
                            int lo, int hi, int *out, chord_error *err) {
    char key[160];
    snprintf(key, sizeof key, "%s.%s", m->arch, suffix);
    uint64_t v;
    if (!gguf_get_u64(m->gguf, key, &v)) {
        if (gguf_find_kv(m->gguf, key))
            return chord_fail(err, CHORD_E_FORMAT, "metadata key '%s' is not an integer", key);
        if (required)
            return chord_fail(err, CHORD_E_FORMAT, "missing required metadata key '%s'", key);
        *out = dflt;
        return CHORD_OK;
    }
    if (v < (uint64_t)lo || v > (uint64_t)hi)
        return chord_fail(err, CHORD_E_FORMAT, "metadata key '%s' = %llu is out of range [%d, %d]",
                          key, (unsigned long long)v, lo, hi);
    *out = (int)v;
    return CHORD_OK;
}

static chord_status get_float(const chord_model *m, const char *suffix, bool required,
                              float dflt, float *out, chord_error *err) {
    char key[160];
    snprintf(key, sizeof key, "%s.%s", m->arch, suffix);
    double v;
    if (!gguf_get_f64(m->gguf, key, &v)) {
        if (gguf_find_kv(m->gguf, key))
            return chord_fail(err, CHORD_E_FORMAT, "metadata key '%s' is not a number", key);
        if (required)
            return chord_fail(err, CHORD_E_FORMAT, "missing required metadata key '%s'", key);
        *out = dflt;
        return CHORD_OK;
    }
    if (!isfinite(v) || v <= 0)
        return chord_fail(err, CHORD_E_FORMAT, "metadata key '%s' = %g must be positive", key, v);
    *out = (float)v;
    return CHORD_OK;
}

#define TRY(x)                                                                        \
    do {                                                                              \
        chord_status s_ = (x);                                                        \
        if (s_ != CHORD_OK) return s_;                                                \
    } while (0)

static chord_status read_hparams(chord_model *m, chord_error *err) {
    chord_hparams *hp = &m->hp;
    const int BIG = 1 << 20;
    TRY(get_int(m, "context_length", true, 0, 1, 1 << 24, &hp->n_ctx_train, err));
    TRY(get_int(m, "embedding_length", true, 0, 1, BIG, &hp->n_embd, err));
    TRY(get_int(m, "feed_forward_length", true, 0, 1, BIG, &hp->n_ff, err));
    TRY(get_int(m, "block_count", true, 0, 1, 4096, &hp->n_layer, err));
    TRY(get_int(m, "attention.head_count", true, 0, 1, 4096, &hp->n_head, err));
    TRY(get_int(m, "attention.head_count_kv", false, hp->n_head, 1, 4096, &hp->n_head_kv, err));
    if (hp->n_embd % hp->n_head)
        return chord_fail(err, CHORD_E_FORMAT, "embedding_length %d is not divisible by head_count %d",
                          hp->n_embd, hp->n_head);
    TRY(get_int(m, "attention.key_length", false, hp->n_embd / hp->n_head, 1, 65536, &hp->head_dim,
                err));
    int vlen;
    TRY(get_int(m, "attention.value_length", false, hp->head_dim, 1, 65536, &vlen, err));
    if (vlen != hp->head_dim)
        return chord_fail(err, CHORD_E_UNSUPPORTED, "value_length %d != key_length %d is not supported",
                          vlen, hp->head_dim);
    if (hp->n_head % hp->n_head_kv)
        return chord_fail(err, CHORD_E_FORMAT, "head_count %d is not a multiple of head_count_kv %d",
                          hp->n_head, hp->n_head_kv);
    TRY(get_int(m, "rope.dimension_count", false, hp->head_dim, 2, hp->head_dim, &hp->n_rot, err));
    if (hp->n_rot % 2)
        return chord_fail(err, CHORD_E_FORMAT, "rope.dimension_count %d is odd", hp->n_rot);
    TRY(get_float(m, "rope.freq_base", false, 10000.0f, &hp->rope_base, err));
    TRY(get_float(m, "attention.layer_norm_rms_epsilon", true, 0, &hp->rms_eps, err));
    hp->rope_scale = 1.0f;
    char key[160];
    snprintf(key, sizeof key, "%s.rope.scaling.type", m->arch);
    gguf_str st;
    if (gguf_get_str(m->gguf, key, &st) && !gguf_str_eq(st, "none")) {
        if (!gguf_str_eq(st, "linear"))
            return chord_fail(err, CHORD_E_UNSUPPORTED, "rope scaling type '%.*s' is not supported",
                              (int)(st.len > 32 ? 32 : st.len), st.ptr);
        float f;
        TRY(get_float(m, "rope.scaling.factor", true, 1.0f, &f, err));
        hp->rope_scale = 1.0f / f;
    }
    return CHORD_OK;
}

/* Binds tensor `name` with GGUF shape {n_in, n_out}; n_out = 0 means a vector. */
static chord_status bind(chord_model *m, chord_weight *w, const char *name, int64_t n_in,
                         int64_t n_out, bool vector_f32, bool optional, chord_error *err) {
    const gguf_tensor *t = gguf_find_tensor(m->gguf, name);
    memset(w, 0, sizeof *w);
    if (!t) {
        if (optional) return CHORD_OK;
        return chord_fail(err, CHORD_E_FORMAT, "missing tensor '%s'", name);
    }
    int64_t want1 = n_out ? n_out : 1;
    uint32_t want_dims = n_out ? 2 : 1;
    bool ok = t->ne[0] == n_in && t->ne[1] == want1 && t->ne[2] == 1 && t->ne[3] == 1;
    if (!ok || (t->n_dims != want_dims && !(t->n_dims == 2 && !n_out && t->ne[1] == 1)))
        return chord_fail(err, CHORD_E_FORMAT,
                          "tensor '%s' has shape [%lld, %lld, %lld, %lld], expected [%lld, %lld]",
                          name, (long long)t->ne[0], (long long)t->ne[1], (long long)t->ne[2],
                          (long long)t->ne[3], (long long)n_in, (long long)want1);
    const chord_type_traits *tr = chord_type_get(t->type);
    if (!tr || !tr->to_float || t->type == CHORD_TYPE_Q8_1 || t->type == CHORD_TYPE_Q8_K)
        return chord_fail(err, CHORD_E_UNSUPPORTED, "tensor '%s' has type %s, which chord does not support",
                          name, chord_type_name(t->type));
    if (vector_f32 && t->type != CHORD_TYPE_F32)
        return chord_fail(err, CHORD_E_UNSUPPORTED, "tensor '%s' has type %s; norm weights must be F32",
                          name, chord_type_name(t->type));
    w->name = NULL; /* GGUF names are not NUL-terminated; the loader names errors itself */
    w->type = (chord_type)t->type;
    w->n_in = t->ne[0];
    w->n_out = t->ne[1];
    w->host = t->data;
    w->nbytes = t->nbytes;
    return CHORD_OK;
}

chord_status model_bind(chord_model *m, chord_error *err) {
    gguf_str arch;
    if (!gguf_get_str(m->gguf, "general.architecture", &arch))
        return chord_fail(err, CHORD_E_FORMAT, "missing required metadata key 'general.architecture'");
    if (arch.len >= sizeof m->arch)
        return chord_fail(err, CHORD_E_UNSUPPORTED, "architecture '%.*s...' is not supported", 31,
                          arch.ptr);
    memcpy(m->arch, arch.ptr, arch.len);
    m->arch[arch.len] = 0;
    TRY(arch_supported(m->arch, err));
    gguf_str name;
    if (gguf_get_str(m->gguf, "general.name", &name)) {
        size_t n = name.len < sizeof m->name - 1 ? name.len : sizeof m->name - 1;
        memcpy(m->name, name.ptr, n);
        m->name[n] = 0;
    }
    TRY(read_hparams(m, err));
    chord_hparams *hp = &m->hp;

    const gguf_tensor *emb = gguf_find_tensor(m->gguf, "token_embd.weight");
    if (!emb) return chord_fail(err, CHORD_E_FORMAT, "missing tensor 'token_embd.weight'");
    if (emb->ne[1] < 1 || emb->ne[1] > (1 << 24))
        return chord_fail(err, CHORD_E_FORMAT, "tensor 'token_embd.weight' has a bad vocabulary size %lld",
                          (long long)emb->ne[1]);
    hp->n_vocab = (int)emb->ne[1];
    int vocab_meta;
    TRY(get_int(m, "vocab_size", false, hp->n_vocab, 1, 1 << 24, &vocab_meta, err));
    if (vocab_meta != hp->n_vocab)
        return chord_fail(err, CHORD_E_FORMAT, "vocab_size %d does not match token_embd.weight rows %d",
                          vocab_meta, hp->n_vocab);

    const int64_t E = hp->n_embd, F = hp->n_ff, V = hp->n_vocab;
    const int64_t QD = (int64_t)hp->n_head * hp->head_dim, KD = (int64_t)hp->n_head_kv * hp->head_dim;
    TRY(bind(m, &m->tok_embd, "token_embd.weight", E, V, false, false, err));
    TRY(bind(m, &m->output_norm, "output_norm.weight", E, 0, true, false, err));
    TRY(bind(m, &m->output, "output.weight", E, V, false, true, err));
    if (!m->output.host) m->output = m->tok_embd; /* tied embeddings */

    m->layers = calloc((size_t)hp->n_layer, sizeof *m->layers);
    if (!m->layers) return chord_fail(err, CHORD_E_NOMEM, "out of memory for %d layers", hp->n_layer);
    for (int l = 0; l < hp->n_layer; l++) {
        chord_layer *L = &m->layers[l];
        char nm[96];
#define B(field, suffix, nin, nout, vec)                                              \
    snprintf(nm, sizeof nm, "blk.%d." suffix, l);                                     \
    TRY(bind(m, &L->field, nm, nin, nout, vec, false, err))
        B(attn_norm, "attn_norm.weight", E, 0, true);
        B(wq, "attn_q.weight", E, QD, false);
        B(wk, "attn_k.weight", E, KD, false);
        B(wv, "attn_v.weight", E, KD, false);
        B(wo, "attn_output.weight", QD, E, false);
        B(ffn_norm, "ffn_norm.weight", E, 0, true);
        B(w_gate, "ffn_gate.weight", E, F, false);
        B(w_up, "ffn_up.weight", E, F, false);
        B(w_down, "ffn_down.weight", F, E, false);
#undef B
    }

    gguf_str tmpl;
    if (gguf_get_str(m->gguf, "tokenizer.chat_template", &tmpl)) {
        m->chat_template = malloc(tmpl.len + 1);
        if (!m->chat_template) return chord_fail(err, CHORD_E_NOMEM, "out of memory");
        memcpy(m->chat_template, tmpl.ptr, tmpl.len);
        m->chat_template[tmpl.len] = 0;
    }
    return CHORD_OK;
}
