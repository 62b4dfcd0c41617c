/* Whole-model quantization: per-tensor type rules, the threaded row engine, and
 * `chord quantize`'s file-to-file conversion. */
#include "quantize_model.h"

#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "error.h"
#include "gguf_write.h"
#include "mapfile.h"
#include "quant/quantize.h"

/* ------------------------------------------------------------ file types */

/* file_type values are llama.cpp's llama_ftype; a plain K type is named after its
 * "_S" variant (mostly that type). */
static const quant_ftype FTYPES[] = {
    {"F32", CHORD_TYPE_F32, QUANT_MIX_NONE, 0},
    {"F16", CHORD_TYPE_F16, QUANT_MIX_NONE, 1},
    {"BF16", CHORD_TYPE_BF16, QUANT_MIX_NONE, 32},
    {"Q4_0", CHORD_TYPE_Q4_0, QUANT_MIX_NONE, 2},
    {"Q4_1", CHORD_TYPE_Q4_1, QUANT_MIX_NONE, 3},
    {"Q5_0", CHORD_TYPE_Q5_0, QUANT_MIX_NONE, 8},
    {"Q5_1", CHORD_TYPE_Q5_1, QUANT_MIX_NONE, 9},
    {"Q8_0", CHORD_TYPE_Q8_0, QUANT_MIX_NONE, 7},
    {"Q2_K", CHORD_TYPE_Q2_K, QUANT_MIX_NONE, 10},
    {"Q3_K", CHORD_TYPE_Q3_K, QUANT_MIX_NONE, 11},
    {"Q4_K", CHORD_TYPE_Q4_K, QUANT_MIX_NONE, 14},
    {"Q5_K", CHORD_TYPE_Q5_K, QUANT_MIX_NONE, 16},
    {"Q6_K", CHORD_TYPE_Q6_K, QUANT_MIX_NONE, 18},
    {"Q4_K_M", CHORD_TYPE_Q4_K, QUANT_MIX_Q4_K_M, 15},
    {"Q5_K_M", CHORD_TYPE_Q5_K, QUANT_MIX_Q5_K_M, 17},
};

static bool name_eq_ci(const char *a, const char *b) {
    for (; *a && *b; a++, b++) {
        char x = *a >= 'a' && *a <= 'z' ? (char)(*a - 32) : *a;
        if (x != *b) return false;
    }
    return !*a && !*b;
}

const quant_ftype *quant_ftype_from_name(const char *name) {
    for (size_t i = 0; i < sizeof FTYPES / sizeof FTYPES[0]; i++)
        if (name_eq_ci(name, FTYPES[i].name)) return &FTYPES[i];
    return NULL;
}

const char *quant_ftype_names(void) {
    return "F32 F16 BF16 Q4_0 Q4_1 Q5_0 Q5_1 Q8_0 Q2_K Q3_K Q4_K Q5_K Q6_K Q4_K_M Q5_K_M";
}

static bool is_float_type(chord_type t) {
    return t == CHORD_TYPE_F32 || t == CHORD_TYPE_F16 || t == CHORD_TYPE_BF16;
}

/* "blk.N.<suffix>": N, else -1. */
static int layer_of(const char *name) {
    if (strncmp(name, "blk.", 4)) return -1;
    const char *p = name + 4;
    int n = 0, digits = 0;
    while (*p >= '0' && *p <= '9' && digits < 7)
        n = n * 10 + (*p++ - '0'), digits++;
    return digits && *p == '.' ? n : -1;
}

static bool ends_with(const char *s, const char *suffix) {
    size_t a = strlen(s), b = strlen(suffix);
    return a >= b && !strcmp(s + a - b, suffix);
}

/* llama.cpp's choice of layers that get more bits in the _M mixes. */
static bool use_more_bits(int i, int n) {
    return i < n / 8 || i >= 7 * n / 8 || (i - n / 8) % 3 == 2;
}

static chord_type fallback_type(chord_type t, int64_t ne0) {
    if (chord_row_size(t, ne0)) return t;
    chord_type f;
    switch (t) {
    case CHORD_TYPE_Q2_K:
    case CHORD_TYPE_Q3_K: f = CHORD_TYPE_Q4_0; break;
    case CHORD_TYPE_Q4_K: f = CHORD_TYPE_Q5_0; break;
    case CHORD_TYPE_Q5_K: f = CHORD_TYPE_Q5_1; break;
    case CHORD_TYPE_Q6_K: f = CHORD_TYPE_Q8_0; break;
    default: f = CHORD_TYPE_F16; break;
    }
    return chord_row_size(f, ne0) ? f : CHORD_TYPE_F16;
}

chord_type quant_tensor_type(const quant_ftype *ft, const char *name, uint32_t n_dims,
                             const int64_t *ne, int n_layer, bool has_output, bool pure) {
    uint32_t nd = n_dims;
    while (nd > 1 && ne[nd - 1] == 1)
        nd--;
    if (nd < 2) return CHORD_TYPE_F32;
    chord_type t = ft->base;
    const bool quantized = !is_float_type(t);
    if (quantized && !pure) {
        const bool is_output = !strcmp(name, "output.weight") ||
                               (!has_output && !strcmp(name, "token_embd.weight"));
        if (is_output) {
            if (t != CHORD_TYPE_Q8_0 && t != CHORD_TYPE_Q6_K) t = CHORD_TYPE_Q6_K;
        } else if (ft->mix != QUANT_MIX_NONE &&
                   (ends_with(name, ".attn_v.weight") || ends_with(name, ".ffn_down.weight"))) {
            const int il = layer_of(name);
            if (il >= 0 && n_layer > 0 && use_more_bits(il, n_layer)) t = CHORD_TYPE_Q6_K;
        }
    }
    return fallback_type(t, ne[0]);
}

/* ---------------------------------------------------------------- engine */

typedef struct qm_job {
    pthread_t th;
    bool started;
    qm_row_fn rows;
    void *user;
    uint64_t ti;
    chord_type type;
    int64_t ne0;
    int64_t r0, r1; /* rows of this job */
    int64_t base;   /* first row of the chunk (row r goes to out + (r - base) * rs) */
    size_t rs;
    uint8_t *out;
    float *scratch;
    chord_status st;
    chord_error err;
} qm_job;

static void *qm_job_run(void *arg) {
    qm_job *j = arg;
    j->st = CHORD_OK;
    for (int64_t r = j->r0; r < j->r1; r++) {
        j->st = j->rows(j->user, j->ti, r, j->scratch, &j->err);
        if (j->st) {
            if (!j->err.message[0])
                chord_fail(&j->err, j->st, "row %" PRId64 " could not be produced", r);
            break;
        }
        if (!chord_quantize_row(j->type, j->scratch, j->out + (size_t)(r - j->base) * j->rs,
                                j->ne0)) {
            j->st = chord_fail(&j->err, CHORD_E_UNSUPPORTED, "chord can not produce %s",
                               chord_type_name(j->type));
            break;
        }
    }
    return NULL;
}

#define QM_CHUNK_BYTES ((size_t)4 << 20) /* output bytes per thread per chunk */

chord_status qm_write_model(struct gguf_writer *w, const char *path, const qm_tensor *tensors,
                            uint64_t n_tensors, qm_row_fn rows, void *rows_user,
                            const qm_params *p, uint64_t *file_size, chord_error *err) {
    int nth = p && p->n_threads > 0 ? p->n_threads : 1;
    if (nth > 256) nth = 256;
    chord_status st = CHORD_OK;
    int64_t max_ne0 = 1;
    for (uint64_t i = 0; i < n_tensors; i++) {
        const qm_tensor *t = &tensors[i];
        if (!t->raw && !chord_quantize_supported(t->type))
            return chord_fail(err, CHORD_E_UNSUPPORTED, "%s: chord can not produce type %s",
                              t->name, chord_type_name(t->type));
        if ((st = gguf_writer_add_tensor(w, t->name, t->n_dims, t->ne, t->type, err)))
            return st;
        if (t->ne[0] > max_ne0) max_ne0 = t->ne[0];
    }
    if ((st = gguf_writer_begin(w, path, err))) return st;

    qm_job *jobs = calloc((size_t)nth, sizeof *jobs);
    float *scratch = malloc((size_t)nth * (size_t)max_ne0 * sizeof(float));
    uint8_t *out = NULL;
    size_t out_cap = 0;
    if (!jobs || !scratch) {
        st = chord_fail(err, CHORD_E_NOMEM, "out of memory for the quantization buffers");
        goto done;
    }
    for (uint64_t ti = 0; ti < n_tensors && !st; ti++) {
        const qm_tensor *t = &tensors[ti];
        if (p && p->on_tensor) p->on_tensor(p->user, ti, n_tensors, t);
        if (t->raw) {
            st = gguf_writer_write(w, t->raw, (size_t)gguf_writer_tensor_size(w, ti), err);
            continue;
        }
        const int64_t ne0 = t->ne[0];
        int64_t nrows = 1;
        for (int d = 1; d < GGUF_MAX_DIMS; d++)
            nrows *= t->ne[d] > 0 ? t->ne[d] : 1;
        const size_t rs = chord_row_size(t->type, ne0);
        /* chunk: ~QM_CHUNK_BYTES of output per thread, at least one row per thread */
        int64_t chunk = (int64_t)(QM_CHUNK_BYTES / rs) * nth;
        if (chunk < nth) chunk = nth;
        if (chunk > nrows) chunk = nrows;
        if ((size_t)chunk * rs > out_cap) {
            free(out);
            out_cap = (size_t)chunk * rs;
            if (!(out = malloc(out_cap))) {
                st = chord_fail(err, CHORD_E_NOMEM, "out of memory for %s", t->name);
                break;
            }
        }
        /* small tensors run on this thread alone */
        const int use = (int64_t)ne0 * nrows < 65536 ? 1 : nth;
        for (int64_t c0 = 0; c0 < nrows && !st; c0 += chunk) {
            const int64_t c1 = c0 + chunk < nrows ? c0 + chunk : nrows;
            const int64_t n = c1 - c0;
            int nj = use < n ? use : (int)n;
            for (int k = 0; k < nj; k++) {
                qm_job *j = &jobs[k];
                memset(j, 0, sizeof *j);
                j->rows = rows;
                j->user = rows_user;
                j->ti = ti;
                j->type = t->type;
                j->ne0 = ne0;
                j->r0 = c0 + n * k / nj;
                j->r1 = c0 + n * (k + 1) / nj;
                j->base = c0;
                j->rs = rs;
                j->out = out;
                j->scratch = scratch + (size_t)k * (size_t)max_ne0;
            }
            for (int k = 1; k < nj; k++)
                jobs[k].started = pthread_create(&jobs[k].th, NULL, qm_job_run, &jobs[k]) == 0;
            qm_job_run(&jobs[0]);
            for (int k = 1; k < nj; k++) {
                if (jobs[k].started)
                    pthread_join(jobs[k].th, NULL);
                else
                    qm_job_run(&jobs[k]); /* could not start a thread: do it here */
            }
            for (int k = 0; k < nj && !st; k++) {
                if (jobs[k].st) {
                    st = jobs[k].st;
                    if (err) {
                        *err = jobs[k].err;
                        err->code = st;
                    }
                }
            }
            if (!st) st = gguf_writer_write(w, out, (size_t)n * rs, err);
        }
    }
    if (!st) st = gguf_writer_finish(w, file_size, err);
done:
    free(out);
    free(scratch);
    free(jobs);
    return st;
}

/* ------------------------------------------------------ file to file */

typedef struct src_tensor {
    const uint8_t *data;
    uint32_t type;
    size_t row_bytes;
} src_tensor;

static chord_status file_row(void *user, uint64_t t, int64_t row, float *dst,
                             chord_error *err) {
    const src_tensor *s = &((const src_tensor *)user)[t];
    const chord_type_traits *tr = chord_type_get(s->type);
    const int64_t n = (int64_t)(s->row_bytes / tr->type_size) * tr->block_size;
    tr->to_float(s->data + (size_t)row * s->row_bytes, dst, n);
    (void)err;
    return CHORD_OK;
}

chord_status quantize_model_file(const char *in, const char *out, const quantize_params *p,
                                 uint64_t *file_size, chord_error *err) {
    if (!p || !p->ftype) return chord_fail(err, CHORD_E_INVALID_ARG, "no target type given");
    chord_mapping map = {0};
    gguf_file *g = NULL;
    gguf_writer *w = NULL;
    qm_tensor *ts = NULL;
    src_tensor *src = NULL;
    char(*names)[GGUF_WRITE_MAX_NAME + 1] = NULL;
    chord_status st;
    if ((st = chord_map_file(in, &map, err))) return st;
    if ((st = gguf_parse(map.data, map.size, &g, err))) goto done;

    const uint64_t nt = gguf_n_tensors(g);
    ts = calloc(nt ? nt : 1, sizeof *ts);
    src = calloc(nt ? nt : 1, sizeof *src);
    names = calloc(nt ? nt : 1, sizeof *names);
    if (!ts || !src || !names) {
        st = chord_fail(err, CHORD_E_NOMEM, "out of memory");
        goto done;
    }

    /* n_layer for the mix rules: <arch>.block_count, else the highest blk.N + 1 */
    int n_layer = 0;
    gguf_str arch;
    if (gguf_get_str(g, "general.architecture", &arch) && arch.len < 64) {
        char key[96];
        snprintf(key, sizeof key, "%.*s.block_count", (int)arch.len, arch.ptr);
        uint64_t v;
        if (gguf_get_u64(g, key, &v) && v < 100000) n_layer = (int)v;
    }
    const bool has_output = gguf_find_tensor(g, "output.weight") != NULL;
    for (uint64_t i = 0; i < nt; i++) {
        const gguf_tensor *t = gguf_tensor_at(g, i);
        if (t->name.len > GGUF_WRITE_MAX_NAME) {
            st = chord_fail(err, CHORD_E_UNSUPPORTED, "%s: tensor %" PRIu64 ": name too long",
                            in, i);
            goto done;
        }
        memcpy(names[i], t->name.ptr, (size_t)t->name.len);
        names[i][t->name.len] = 0;
    }
    if (n_layer == 0)
        for (uint64_t i = 0; i < nt; i++)
            if (layer_of(names[i]) + 1 > n_layer) n_layer = layer_of(names[i]) + 1;
    for (uint64_t i = 0; i < nt; i++) {
        const gguf_tensor *t = gguf_tensor_at(g, i);
        qm_tensor *q = &ts[i];
        q->name = names[i];
        q->n_dims = t->n_dims;
        for (int d = 0; d < GGUF_MAX_DIMS; d++)
            q->ne[d] = t->ne[d];
        q->src_type = t->type;
        const chord_type_traits *tr = chord_type_get(t->type); /* known: parser checked */
        const chord_type want = quant_tensor_type(p->ftype, names[i], t->n_dims, t->ne, n_layer,
                                                  has_output, p->pure);
        const bool integer = t->type >= CHORD_TYPE_I8 && t->type <= CHORD_TYPE_F64;
        if (want == (chord_type)t->type || integer) {
            /* already in the wanted type, or not a weight (integers): copied as is */
            q->type = (chord_type)t->type;
            q->raw = t->data;
            continue;
        }
        if (!tr->to_float) {
            st = chord_fail(err, CHORD_E_UNSUPPORTED,
                            "%s: tensor '%s' has type %s, which chord can not read", in,
                            names[i], tr->name);
            goto done;
        }
        if (!is_float_type((chord_type)t->type) && !p->allow_requantize) {
            st = chord_fail(err, CHORD_E_UNSUPPORTED,
                            "%s: tensor '%s' is already quantized (%s); converting it to %s "
                            "loses quality: pass --allow-requantize to do it anyway",
                            in, names[i], tr->name, chord_type_name(want));
            goto done;
        }
        q->type = want;
        src[i].data = t->data;
        src[i].type = t->type;
        src[i].row_bytes = chord_row_size((chord_type)t->type, t->ne[0]);
    }

    if ((st = gguf_writer_new(&w, err))) goto done;
    if ((st = gguf_writer_copy_kvs(w, g, NULL, err))) goto done;
    gguf_writer_remove_kv(w, "general.quantization_version");
    gguf_writer_remove_kv(w, "general.file_type");
    if (!is_float_type(p->ftype->base) &&
        (st = gguf_writer_set_u32(w, "general.quantization_version", 2, err)))
        goto done;
    if ((st = gguf_writer_set_u32(w, "general.file_type", p->ftype->file_type, err))) goto done;

    qm_params qp = {p->n_threads, p->on_tensor, p->user};
    st = qm_write_model(w, out, ts, nt, file_row, src, &qp, file_size, err);
done:
    gguf_writer_free(w);
    free(names);
    free(src);
    free(ts);
    gguf_free(g);
    chord_unmap(&map);
    return st;
}
