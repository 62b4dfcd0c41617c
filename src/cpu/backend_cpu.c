/* The CPU backend: activations in host memory, weights read in place from the mapping. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend.h"
#include "error.h"

typedef struct cpu_backend {
    chord_backend base;
    int n_threads;
    float *row;      /* scratch: one dequantized weight row */
    size_t row_cap;
} cpu_backend;

static cpu_backend *cpu(chord_backend *be) { return (cpu_backend *)be; }

static void cpu_destroy(chord_backend *be) {
    if (!be) return;
    free(cpu(be)->row);
    free(be);
}

static bool cpu_supports_type(chord_backend *be, chord_type t) {
    const chord_type_traits *tr = chord_type_get((uint32_t)t);
    return tr && tr->to_float;
}

static chord_status cpu_upload(chord_backend *be, chord_weight *w, chord_error *err) {
    return CHORD_OK;
}

static void *cpu_alloc(chord_backend *be, size_t bytes) {
    void *p = NULL;
    if (posix_memalign(&p, 64, bytes ? bytes : 64)) return NULL;
    return p;
}
static void cpu_free(chord_backend *be, void *p) { free(p); }
static void cpu_copy(chord_backend *be, void *dst, const void *src, size_t bytes) {
    if (dst != src) memcpy(dst, src, bytes);
}
static chord_status cpu_sync(chord_backend *be, chord_error *err) { return CHORD_OK; }

static float *row_scratch(cpu_backend *c, size_t n) {
    if (n > c->row_cap) {
        float *p = realloc(c->row, n * sizeof(float));
        CHORD_ASSERT(p);
        c->row = p;
        c->row_cap = n;
    }
    return c->row;
}

static void cpu_get_rows(chord_backend *be, float *out, const chord_weight *emb,
                         const int32_t *tokens, int n) {
    const chord_type_traits *tr = chord_type_get(emb->type);
    size_t rs = chord_row_size(emb->type, emb->n_in);
    for (int i = 0; i < n; i++)
        tr->to_float((const char *)emb->host + (size_t)tokens[i] * rs, out + (size_t)i * emb->n_in,
                     emb->n_in);
}

static void cpu_rmsnorm(chord_backend *be, float *out, const float *x, const chord_weight *w,
                        int n, int dim, float eps) {
    const float *g = w->host;
    for (int t = 0; t < n; t++) {
        const float *xr = x + (size_t)t * dim;
        float *o = out + (size_t)t * dim;
        double ss = 0;
        for (int i = 0; i < dim; i++) ss += (double)(xr[i] * xr[i]);
        float scale = 1.0f / sqrtf((float)(ss / dim) + eps);
        for (int i = 0; i < dim; i++) o[i] = xr[i] * scale * g[i];
    }
}

/* The activation format each weight type's dot product uses (as llama.cpp does, so
 * results agree with it to rounding): integer dots against Q8 activations for the
 * quantized types, half / bfloat16 activations for F16 / BF16. */
static chord_type act_type(chord_type w) {
    switch (w) {
    case CHORD_TYPE_F16: return CHORD_TYPE_F16;
    case CHORD_TYPE_BF16: return CHORD_TYPE_BF16;
    case CHORD_TYPE_Q4_0: case CHORD_TYPE_Q5_0: case CHORD_TYPE_Q8_0: return CHORD_TYPE_Q8_0;
    case CHORD_TYPE_Q4_1: case CHORD_TYPE_Q5_1: return CHORD_TYPE_Q8_1;
    case CHORD_TYPE_Q2_K: case CHORD_TYPE_Q3_K: case CHORD_TYPE_Q4_K: case CHORD_TYPE_Q5_K:
    case CHORD_TYPE_Q6_K: return CHORD_TYPE_Q8_K;
    default: return CHORD_TYPE_F32;
    }
}

/* Rounds x through the activation format (quantize, dequantize), n_rows rows of k. */
static void round_acts(chord_type at, const float *x, float *out, int n_rows, int64_t k) {
    const chord_type_traits *tr = chord_type_get(at);
    void *q = malloc(chord_row_size(at, k));
    CHORD_ASSERT(q);
    for (int r = 0; r < n_rows; r++) {
        tr->from_float(x + (size_t)r * k, q, k);
        tr->to_float(q, out + (size_t)r * k, k);
    }
    free(q);
}

/* Reference matmul: dequantize each weight row to float, then float dots against the
 * activations rounded as the fused kernels see them. */
static void cpu_matmul(chord_backend *be, int n_w, float *const *ys, const chord_weight *const *ws,
                       const float *x_in, int n) {
    cpu_backend *c = cpu(be);
    for (int k = 0; k < n_w; k++) {
        const chord_weight *w = ws[k];
        float *x = malloc((size_t)n * w->n_in * sizeof(float));
        CHORD_ASSERT(x);
        round_acts(act_type(w->type), x_in, x, n, w->n_in);
        const chord_type_traits *tr = chord_type_get(w->type);
        size_t rs = chord_row_size(w->type, w->n_in);
        float *row = row_scratch(c, (size_t)w->n_in);
        for (int64_t o = 0; o < w->n_out; o++) {
            tr->to_float((const char *)w->host + (size_t)o * rs, row, w->n_in);
            for (int t = 0; t < n; t++) {
                const float *xr = x + (size_t)t * w->n_in;
                float s = 0;
                for (int64_t i = 0; i < w->n_in; i++) s += row[i] * xr[i];
                ys[k][(size_t)t * w->n_out + o] = s;
            }
        }
        free(x);
    }
}

static void cpu_rope(chord_backend *be, float *x, int n, int pos0, const chord_rope_shape *s) {
    int half = s->n_rot / 2;
    /* theta_i = p * base^(-2i/n_rot), stepped by repeated multiplication as llama.cpp
     * does, so rounding agrees with it */
    const float step = powf(s->freq_base, -2.0f / (float)s->n_rot);
    for (int t = 0; t < n; t++) {
        float theta = (float)(pos0 + t) * s->freq_scale;
        for (int i = 0; i < half; i++, theta *= step) {
            float cs = cosf(theta), sn = sinf(theta);
            for (int h = 0; h < s->n_head; h++) {
                float *v = x + ((size_t)t * s->n_head + h) * s->head_dim;
                int a = s->neox ? i : 2 * i, b = s->neox ? i + half : 2 * i + 1;
                float x0 = v[a], x1 = v[b];
                v[a] = x0 * cs - x1 * sn;
                v[b] = x0 * sn + x1 * cs;
            }
        }
    }
}

static void cpu_attention(chord_backend *be, float *out, const float *q, const float *k,
                          const float *v, chord_kv *kv, int n, int pos0, const chord_attn_shape *s) {
    const int hd = s->head_dim, kvd = s->n_head_kv * hd, group = s->n_head / s->n_head_kv;
    float *kc = kv->k, *vc = kv->v;
    for (size_t i = 0; i < (size_t)n * kvd; i++) {
        kc[(size_t)pos0 * kvd + i] = chord_half_to_float(chord_float_to_half(k[i]));
        vc[(size_t)pos0 * kvd + i] = chord_half_to_float(chord_float_to_half(v[i]));
    }
    float *sc = row_scratch(cpu(be), (size_t)(pos0 + n));
    for (int t = 0; t < n; t++) {
        int len = pos0 + t + 1;
        for (int h = 0; h < s->n_head; h++) {
            const float *qh = q + ((size_t)t * s->n_head + h) * hd;
            const int kh = h / group; /* the shared K/V head, read in place */
            float mx = -INFINITY;
            for (int j = 0; j < len; j++) {
                const float *kr = kc + (size_t)j * kvd + (size_t)kh * hd;
                float d = 0;
                for (int i = 0; i < hd; i++) d += chord_half_to_float(chord_float_to_half(qh[i])) * kr[i];
                sc[j] = d * s->scale;
                if (sc[j] > mx) mx = sc[j];
            }
            double sum = 0;
            for (int j = 0; j < len; j++) {
                sc[j] = expf(sc[j] - mx);
                sum += sc[j];
            }
            float inv = (float)(1.0 / sum);
            float *o = out + ((size_t)t * s->n_head + h) * hd;
            memset(o, 0, (size_t)hd * sizeof(float));
            for (int j = 0; j < len; j++) {
                const float *vr = vc + (size_t)j * kvd + (size_t)kh * hd;
                float p = chord_half_to_float(chord_float_to_half(sc[j] * inv));
                for (int i = 0; i < hd; i++) o[i] += p * vr[i];
            }
        }
    }
}

static void cpu_add(chord_backend *be, float *x, const float *y, size_t n) {
    for (size_t i = 0; i < n; i++) x[i] += y[i];
}

static void cpu_swiglu(chord_backend *be, float *out, const float *g, const float *u, size_t n) {
    for (size_t i = 0; i < n; i++) out[i] = g[i] / (1.0f + expf(-g[i])) * u[i];
}

static const chord_backend_ops CPU_OPS = {
    .name = "cpu",
    .destroy = cpu_destroy,
    .supports_type = cpu_supports_type,
    .upload = cpu_upload,
    .alloc = cpu_alloc,
    .free = cpu_free,
    .to_host = cpu_copy,
    .from_host = cpu_copy,
    .sync = cpu_sync,
    .get_rows = cpu_get_rows,
    .rmsnorm = cpu_rmsnorm,
    .matmul = cpu_matmul,
    .rope = cpu_rope,
    .attention = cpu_attention,
    .add = cpu_add,
    .swiglu = cpu_swiglu,
};

chord_status chord_backend_cpu_new(int n_threads, chord_backend **out, chord_error *err) {
    cpu_backend *c = calloc(1, sizeof *c);
    if (!c) return chord_fail(err, CHORD_E_NOMEM, "out of memory creating the CPU backend");
    c->base.ops = &CPU_OPS;
    c->n_threads = n_threads > 0 ? n_threads : 1;
    snprintf(c->base.desc, sizeof c->base.desc, "cpu (scalar, %d thread%s)", c->n_threads,
             c->n_threads == 1 ? "" : "s");
    *out = &c->base;
    return CHORD_OK;
}
