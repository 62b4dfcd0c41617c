/* Random-weight llama GGUF files (see genmodel.h). */
#include "genmodel.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "error.h"
#include "gguf.h"
#include "gguf_write.h"
#include "mapfile.h"

static const genmodel_shape SHAPES[] = {
    {"tinyllama-1.1b", 2048, 5632, 22, 32, 4, 2048},
    {"llama2-7b", 4096, 11008, 32, 32, 32, 4096},
    {"dev", 512, 1024, 2, 8, 2, 512},
};

const genmodel_shape *genmodel_shape_from_name(const char *name) {
    for (size_t i = 0; i < sizeof SHAPES / sizeof SHAPES[0]; i++)
        if (!strcmp(name, SHAPES[i].name)) return &SHAPES[i];
    return NULL;
}

const char *genmodel_shape_names(void) {
    return "tinyllama-1.1b llama2-7b dev";
}

/* ------------------------------------------------------------------ PRNG */

/* splitmix64: a counter through a bijective mixer; one state per row. */
static inline uint64_t sm64(uint64_t *s) {
    uint64_t z = (*s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

/* uniform in (0, 1) */
static inline double uni(uint64_t *s) {
    return ((double)(sm64(s) >> 11) + 0.5) * 0x1p-53;
}

/* Standard normal by the ziggurat method (Marsaglia & Tsang, 128 layers): tables of
 * layer edges; most draws are one multiply and one compare. Read-only after init. */
#define ZIG_R 3.442619855899
typedef struct zig {
    uint32_t kn[128];
    float wn[128];
    float fn[128];
} zig;

static void zig_init(zig *z) {
    const double m1 = 2147483648.0, vn = 9.91256303526217e-3;
    double dn = ZIG_R, tn = dn;
    const double q = vn / exp(-0.5 * dn * dn);
    z->kn[0] = (uint32_t)((dn / q) * m1);
    z->kn[1] = 0;
    z->wn[0] = (float)(q / m1);
    z->wn[127] = (float)(dn / m1);
    z->fn[0] = 1.0f;
    z->fn[127] = (float)exp(-0.5 * dn * dn);
    for (int i = 126; i >= 1; i--) {
        dn = sqrt(-2.0 * log(vn / dn + exp(-0.5 * dn * dn)));
        z->kn[i + 1] = (uint32_t)((dn / tn) * m1);
        tn = dn;
        z->fn[i] = (float)exp(-0.5 * dn * dn);
        z->wn[i] = (float)(dn / m1);
    }
}

static float gauss(const zig *z, uint64_t *s) {
    for (;;) {
        const uint64_t r = sm64(s);
        const int32_t hz = (int32_t)(uint32_t)r;
        const uint32_t iz = (uint32_t)(r >> 32) & 127;
        const uint32_t ahz = hz < 0 ? (uint32_t)0 - (uint32_t)hz : (uint32_t)hz;
        const float x = (float)hz * z->wn[iz];
        if (ahz < z->kn[iz]) return x;
        if (iz == 0) { /* the tail beyond R */
            double a, b;
            do {
                a = -log(uni(s)) / ZIG_R;
                b = -log(uni(s));
            } while (b + b < a * a);
            return (float)(hz > 0 ? ZIG_R + a : -ZIG_R - a);
        }
        if (z->fn[iz] + (float)uni(s) * (z->fn[iz - 1] - z->fn[iz]) < expf(-0.5f * x * x))
            return x;
    }
}

/* --------------------------------------------------------------- tensors */

typedef enum { GEN_MATRIX, GEN_EMBD, GEN_NORM } gen_kind;

typedef struct gen_ctx {
    zig z;
    uint64_t seed;
    const gen_kind *kind;
} gen_ctx;

typedef struct gen_user {
    gen_ctx ctx;
    const qm_tensor *tensors;
} gen_user;

static chord_status gen_fill(void *user, uint64_t t, int64_t row, float *dst,
                             chord_error *err) {
    const gen_user *u = user;
    const gen_ctx *g = &u->ctx;
    const int64_t n = u->tensors[t].ne[0];
    /* the row's PRNG state depends on (seed, tensor, row) only */
    uint64_t s = g->seed ^ 0x5851F42D4C957F2Dull;
    s = sm64(&s) ^ (t * 0xD1342543DE82EF95ull);
    s = sm64(&s) ^ ((uint64_t)row * 0x2545F4914F6CDD1Dull);
    (void)err;
    switch (g->kind[t]) {
    case GEN_NORM:
        for (int64_t i = 0; i < n; i++)
            dst[i] = 1.0f + 0.1f * gauss(&g->z, &s);
        break;
    case GEN_EMBD:
        for (int64_t i = 0; i < n; i++)
            dst[i] = gauss(&g->z, &s);
        break;
    case GEN_MATRIX: {
        const float sd = 1.0f / sqrtf((float)n);
        for (int64_t i = 0; i < n; i++)
            dst[i] = sd * gauss(&g->z, &s);
        break;
    }
    }
    return CHORD_OK;
}

#define MAX_GEN_TENSORS 1024

chord_status genmodel_write(const char *out, const genmodel_params *p, uint64_t *file_size,
                            chord_error *err) {
    if (!p || !p->shape || !p->ftype || !p->vocab_path)
        return chord_fail(err, CHORD_E_INVALID_ARG,
                          "genmodel: shape, type and vocabulary needed");
    const genmodel_shape *sh = p->shape;
    if (3 + 9 * (int64_t)sh->n_layer > MAX_GEN_TENSORS)
        return chord_fail(err, CHORD_E_INVALID_ARG, "genmodel: too many layers");
    chord_mapping map = {0};
    gguf_file *voc = NULL;
    gguf_writer *w = NULL;
    qm_tensor *ts = NULL;
    gen_kind *kinds = NULL;
    char(*names)[GGUF_WRITE_MAX_NAME + 1] = NULL;
    gen_user *gu = NULL;
    chord_status st;
    if ((st = chord_map_file(p->vocab_path, &map, err))) return st;
    if ((st = gguf_parse(map.data, map.size, &voc, err))) goto done;
    gguf_value toks;
    if (!gguf_get_arr(voc, "tokenizer.ggml.tokens", &toks) || toks.arr_type != GGUF_STRING ||
        toks.arr_n == 0 || toks.arr_n > (1u << 30)) {
        st = chord_fail(err, CHORD_E_FORMAT, "%s: no tokenizer.ggml.tokens string array",
                        p->vocab_path);
        goto done;
    }
    const int64_t n_vocab = (int64_t)toks.arr_n;

    /* metadata */
    const uint32_t n_embd = (uint32_t)sh->n_embd;
    const uint32_t n_embd_kv = n_embd / (uint32_t)sh->n_head * (uint32_t)sh->n_head_kv;
    char name[128];
    snprintf(name, sizeof name, "%s (random weights, seed %llu)", sh->name,
             (unsigned long long)p->seed);
    if ((st = gguf_writer_new(&w, err))) goto done;
    if ((st = gguf_writer_set_str(w, "general.architecture", "llama", err)) ||
        (st = gguf_writer_set_str(w, "general.name", name, err)) ||
        (st = gguf_writer_set_u32(w, "llama.context_length", (uint32_t)sh->n_ctx, err)) ||
        (st = gguf_writer_set_u32(w, "llama.embedding_length", n_embd, err)) ||
        (st = gguf_writer_set_u32(w, "llama.block_count", (uint32_t)sh->n_layer, err)) ||
        (st = gguf_writer_set_u32(w, "llama.feed_forward_length", (uint32_t)sh->n_ff, err)) ||
        (st =
             gguf_writer_set_u32(w, "llama.attention.head_count", (uint32_t)sh->n_head, err)) ||
        (st = gguf_writer_set_u32(w, "llama.attention.head_count_kv", (uint32_t)sh->n_head_kv,
                                  err)) ||
        (st = gguf_writer_set_u32(w, "llama.rope.dimension_count",
                                  n_embd / (uint32_t)sh->n_head, err)) ||
        (st = gguf_writer_set_f32(w, "llama.rope.freq_base", 10000.0f, err)) ||
        (st = gguf_writer_set_f32(w, "llama.attention.layer_norm_rms_epsilon", 1e-5f, err)) ||
        (st = gguf_writer_set_u32(w, "llama.vocab_size", (uint32_t)n_vocab, err)) ||
        (st = gguf_writer_set_u32(w, "general.file_type", p->ftype->file_type, err)))
        goto done;
    if (p->ftype->base != CHORD_TYPE_F32 && p->ftype->base != CHORD_TYPE_F16 &&
        p->ftype->base != CHORD_TYPE_BF16 &&
        (st = gguf_writer_set_u32(w, "general.quantization_version", 2, err)))
        goto done;
    if ((st = gguf_writer_copy_kvs(w, voc, "tokenizer.", err))) goto done;

    /* tensors, in llama.cpp's order */
    ts = calloc(MAX_GEN_TENSORS, sizeof *ts);
    kinds = calloc(MAX_GEN_TENSORS, sizeof *kinds);
    names = calloc(MAX_GEN_TENSORS, sizeof *names);
    gu = malloc(sizeof *gu);
    if (!ts || !kinds || !names || !gu) {
        st = chord_fail(err, CHORD_E_NOMEM, "genmodel: out of memory");
        goto done;
    }
    uint64_t nt = 0;
#define ADD(KIND, NE0, NE1, ...)                                                               \
    do {                                                                                       \
        snprintf(names[nt], sizeof names[nt], __VA_ARGS__);                                    \
        ts[nt].name = names[nt];                                                               \
        ts[nt].n_dims = (NE1) > 0 ? 2 : 1;                                                     \
        ts[nt].ne[0] = (NE0);                                                                  \
        ts[nt].ne[1] = (NE1) > 0 ? (NE1) : 1;                                                  \
        ts[nt].ne[2] = ts[nt].ne[3] = 1;                                                       \
        ts[nt].src_type = CHORD_TYPE_F32;                                                      \
        kinds[nt] = (KIND);                                                                    \
        nt++;                                                                                  \
    } while (0)
    ADD(GEN_EMBD, n_embd, n_vocab, "token_embd.weight");
    for (int l = 0; l < sh->n_layer; l++) {
        ADD(GEN_NORM, n_embd, 0, "blk.%d.attn_norm.weight", l);
        ADD(GEN_MATRIX, n_embd, n_embd, "blk.%d.attn_q.weight", l);
        ADD(GEN_MATRIX, n_embd, n_embd_kv, "blk.%d.attn_k.weight", l);
        ADD(GEN_MATRIX, n_embd, n_embd_kv, "blk.%d.attn_v.weight", l);
        ADD(GEN_MATRIX, n_embd, n_embd, "blk.%d.attn_output.weight", l);
        ADD(GEN_NORM, n_embd, 0, "blk.%d.ffn_norm.weight", l);
        ADD(GEN_MATRIX, n_embd, sh->n_ff, "blk.%d.ffn_gate.weight", l);
        ADD(GEN_MATRIX, n_embd, sh->n_ff, "blk.%d.ffn_up.weight", l);
        ADD(GEN_MATRIX, sh->n_ff, n_embd, "blk.%d.ffn_down.weight", l);
    }
    ADD(GEN_NORM, n_embd, 0, "output_norm.weight");
    ADD(GEN_MATRIX, n_embd, n_vocab, "output.weight");
#undef ADD
    for (uint64_t i = 0; i < nt; i++)
        ts[i].type = quant_tensor_type(p->ftype, ts[i].name, ts[i].n_dims, ts[i].ne,
                                       sh->n_layer, true, p->pure);

    zig_init(&gu->ctx.z);
    gu->ctx.seed = p->seed;
    gu->ctx.kind = kinds;
    gu->tensors = ts;
    qm_params qp = {p->n_threads, p->on_tensor, p->user};
    st = qm_write_model(w, out, ts, nt, gen_fill, gu, &qp, file_size, err);
done:
    gguf_writer_free(w);
    free(gu);
    free(names);
    free(kinds);
    free(ts);
    gguf_free(voc);
    chord_unmap(&map);
    return st;
}
