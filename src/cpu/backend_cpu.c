/* The CPU backend: activations in host memory, weights read in place from the mapping,
 * fused quantized kernels picked once by cpuid, work spread over a persistent pool. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend.h"
#include "cpu/fma_ref.h"
#include "cpu/kernels.h"
#include "cpu/matmul.h"
#include "cpu/threadpool.h"
#include "error.h"

typedef struct cpu_backend {
    chord_backend base;
    cpu_pool *pool;
    const cpu_kernels *k;
    cpu_matmul_ctx *mm;
    float *scratch;     /* per thread: attention scores and f16-rounded query */
    size_t scratch_cap; /* floats per thread */
    /* RoPE's (cos, sin) of each (token, pair) of the last positions rotated: every layer's
     * Q and K rotate the same positions, and cosf / sinf dominate the rotation's cost */
    float *rope_cs;
    size_t rope_cap; /* floats */
    int rope_pos0, rope_n, rope_rot;
    float rope_base, rope_scale;
    chord_status failed; /* sticky: the first failure since the last sync */
    chord_error err;
} cpu_backend;

static cpu_backend *cpu(chord_backend *be) { return (cpu_backend *)be; }

static void cpu_destroy(chord_backend *be) {
    if (!be) return;
    cpu_pool_free(cpu(be)->pool);
    cpu_matmul_ctx_free(cpu(be)->mm);
    free(cpu(be)->scratch);
    free(cpu(be)->rope_cs);
    free(be);
}

static bool cpu_supports_type(chord_backend *be, chord_type t) {
    return (uint32_t)t < CHORD_TYPE_COUNT && cpu(be)->k->t[t].act != CPU_ACT_NONE;
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
/* Ops cannot fail mid-pass without leaving the pass; a failure is kept and reported
 * here, at the end of the forward chunk. */
static chord_status cpu_sync(chord_backend *be, chord_error *err) {
    cpu_backend *c = cpu(be);
    chord_status s = c->failed;
    if (s != CHORD_OK && err) *err = c->err;
    c->failed = CHORD_OK;
    return s;
}

/* Splits [0, n) into nth near-equal parts. */
static void split(int64_t n, int ith, int nth, int64_t *lo, int64_t *hi) {
    *lo = n * ith / nth;
    *hi = n * (ith + 1) / nth;
}

typedef struct rows_job {
    float *out;
    const float *x, *y;
    const chord_weight *w;
    const int32_t *tokens;
    int n, dim;
    float eps;
} rows_job;

static void get_rows_fn(void *arg, int ith, int nth) {
    rows_job *j = arg;
    const chord_type_traits *tr = chord_type_get(j->w->type);
    size_t rs = chord_row_size(j->w->type, j->w->n_in);
    int64_t lo, hi;
    split(j->n, ith, nth, &lo, &hi);
    for (int64_t i = lo; i < hi; i++)
        tr->to_float((const char *)j->w->host + (size_t)j->tokens[i] * rs,
                     j->out + (size_t)i * j->w->n_in, j->w->n_in);
}

static void cpu_get_rows(chord_backend *be, float *out, const chord_weight *emb,
                         const int32_t *tokens, int n) {
    rows_job j = {.out = out, .w = emb, .tokens = tokens, .n = n};
    cpu_pool_run(cpu(be)->pool, get_rows_fn, &j);
}

static void rmsnorm_fn(void *arg, int ith, int nth) {
    rows_job *j = arg;
    const float *g = j->w->host;
    int64_t lo, hi;
    split(j->n, ith, nth, &lo, &hi);
    for (int64_t t0 = lo; t0 < hi; t0 += 4) {
        /* products in float, each row's sum in double in element order: as llama.cpp
         * rounds; four rows at once, as one row's sum is a chain of dependent adds */
        const int nr = hi - t0 < 4 ? (int)(hi - t0) : 4;
        const float *xr[4];
        for (int r = 0; r < 4; r++)
            xr[r] = j->x + (size_t)(t0 + (r < nr ? r : 0)) * j->dim;
        double ss[4] = {0, 0, 0, 0};
        for (int i = 0; i < j->dim; i++)
            for (int r = 0; r < 4; r++)
                ss[r] += (double)(xr[r][i] * xr[r][i]);
        for (int r = 0; r < nr; r++) {
            float *o = j->out + (size_t)(t0 + r) * j->dim;
            float scale = 1.0f / sqrtf((float)(ss[r] / j->dim) + j->eps);
            for (int i = 0; i < j->dim; i++) o[i] = xr[r][i] * scale * g[i];
        }
    }
}

static void cpu_rmsnorm(chord_backend *be, float *out, const float *x, const chord_weight *w,
                        int n, int dim, float eps) {
    rows_job j = {.out = out, .x = x, .w = w, .n = n, .dim = dim, .eps = eps};
    cpu_pool_run(cpu(be)->pool, rmsnorm_fn, &j);
}

static void cpu_op_matmul(chord_backend *be, int n_w, float *const *ys,
                          const chord_weight *const *ws, const float *x, int n) {
    cpu_backend *c = cpu(be);
    if (c->failed) return;
    c->failed = cpu_matmul(c->pool, c->k, c->mm, n_w, ys, ws, x, n, &c->err);
}

typedef struct rope_job {
    float *x;
    float *cs; /* [n][n_rot / 2][2] */
    int n, pos0;
    const chord_rope_shape *s;
} rope_job;

/* theta_i = p * base^(-2i/n_rot), stepped by repeated multiplication and scaled per element
 * as llama.cpp does, so rounding agrees with it */
static void rope_table_fn(void *arg, int ith, int nth) {
    rope_job *j = arg;
    const chord_rope_shape *s = j->s;
    const int half = s->n_rot / 2;
    const float step = powf(s->freq_base, -2.0f / (float)s->n_rot);
    int64_t lo, hi;
    split(j->n, ith, nth, &lo, &hi);
    for (int64_t t = lo; t < hi; t++) {
        float theta_ext = (float)(j->pos0 + t);
        float *cs = j->cs + (size_t)t * half * 2;
        for (int i = 0; i < half; i++, theta_ext *= step) {
            const float theta = s->freq_scale * theta_ext;
            cs[2 * i] = cosf(theta);
            cs[2 * i + 1] = sinf(theta);
        }
    }
}

static void rope_fn(void *arg, int ith, int nth) {
    rope_job *j = arg;
    const chord_rope_shape *s = j->s;
    int half = s->n_rot / 2;
    int64_t lo, hi;
    split(j->n, ith, nth, &lo, &hi);
    for (int64_t t = lo; t < hi; t++) {
        const float *csr = j->cs + (size_t)t * half * 2;
        for (int i = 0; i < half; i++) {
            const float cs = csr[2 * i], sn = csr[2 * i + 1];
            int a = s->neox ? i : 2 * i, b = s->neox ? i + half : 2 * i + 1;
            /* llama.cpp's compiler fuses the first product of each rotated pair into an
             * FMA, and so do we */
            for (int h = 0; h < s->n_head; h++) {
                float *v = j->x + ((size_t)t * s->n_head + h) * s->head_dim;
                float x0 = v[a], x1 = v[b];
                v[a] = cpu_fma1(x0, cs, -(x1 * sn));
                v[b] = cpu_fma1(x0, sn, x1 * cs);
            }
        }
    }
}

static void cpu_rope(chord_backend *be, float *x, int n, int pos0, const chord_rope_shape *s) {
    cpu_backend *c = cpu(be);
    if (c->failed || n <= 0) return;
    rope_job j = {x, NULL, n, pos0, s};
    const size_t need = (size_t)n * (size_t)(s->n_rot / 2) * 2;
    const int cached = c->rope_cs && c->rope_pos0 == pos0 && c->rope_n == n &&
                       c->rope_rot == s->n_rot && c->rope_base == s->freq_base &&
                       c->rope_scale == s->freq_scale;
    if (!cached) {
        if (need > c->rope_cap) {
            float *p = realloc(c->rope_cs, need * sizeof(float));
            if (!p) {
                c->failed = chord_fail(&c->err, CHORD_E_NOMEM, "out of memory for RoPE tables");
                return;
            }
            c->rope_cs = p;
            c->rope_cap = need;
        }
        j.cs = c->rope_cs;
        cpu_pool_run(c->pool, rope_table_fn, &j);
        c->rope_pos0 = pos0;
        c->rope_n = n;
        c->rope_rot = s->n_rot;
        c->rope_base = s->freq_base;
        c->rope_scale = s->freq_scale;
    }
    j.cs = c->rope_cs;
    cpu_pool_run(c->pool, rope_fn, &j);
}

/* x rounded to half precision, kept as float: the KV cache is F16 and llama.cpp
 * rounds the query and the attention weights to F16 for its dot products, so doing the
 * same keeps results within rounding of it. */
static inline float round_half(float x) {
    float a = fabsf(x);
    if (a >= 6.103515625e-05f && a < 65504.0f) {
        uint32_t u;
        memcpy(&u, &x, 4);
        u += 0xfffu + ((u >> 13) & 1u);
        u &= ~0x1fffu;
        memcpy(&x, &u, 4);
        return x;
    }
    return chord_half_to_float(chord_float_to_half(x));
}

/* sum of 16 floats as _mm512_reduce_add_ps forms it: halves added lane-wise, down to one */
static float sum16_pairwise(const float *v) {
    float a[8], b[4];
    for (int i = 0; i < 8; i++) a[i] = v[i] + v[i + 8];
    for (int i = 0; i < 4; i++) b[i] = a[i] + a[i + 4];
    return (b[0] + b[2]) + (b[1] + b[3]);
}

typedef struct attn_job {
    cpu_backend *c;
    float *out;
    const float *q;
    chord_kv *kv;
    int n, pos0;
    const chord_attn_shape *s;
    int batched; /* through the ISA's attn_batch */
} attn_job;

static void attn_batched(attn_job *j, int ith, int nth);

/* K is [n_ctx][kv_dim] F16; V is stored transposed, [kv_dim][n_ctx] F16, so both
 * products are contiguous F16 dot products. Query heads of one group read their shared
 * K/V head in place. */
static void attn_fn(void *arg, int ith, int nth) {
    attn_job *j = arg;
    const chord_attn_shape *s = j->s;
    if (j->batched) {
        attn_batched(j, ith, nth);
        return;
    }
    const int hd = s->head_dim, kvd = s->n_head_kv * hd, group = s->n_head / s->n_head_kv;
    const chord_half *kc = j->kv->k, *vt = j->kv->v;
    cpu_vec_dot_fn dot = j->c->k->t[CHORD_TYPE_F16].vec_dot;
    float *qr = j->c->scratch + (size_t)ith * j->c->scratch_cap;
    float *sc = qr + ((hd + 15) & ~15); /* n_ctx + 15 scores, padded to vectors of 16 */
    int64_t lo, hi;
    split((int64_t)j->n * s->n_head, ith, nth, &lo, &hi);
    for (int64_t w = lo; w < hi; w++) {
        int t = (int)(w / s->n_head), h = (int)(w % s->n_head), kh = h / group;
        int len = j->pos0 + t + 1;
        const float *qh = j->q + ((size_t)t * s->n_head + h) * hd;
        for (int i = 0; i < hd; i++) qr[i] = round_half(qh[i]);
        float mx = -INFINITY;
        for (int p = 0; p < len; p++) {
            dot(hd, &sc[p], kc + (size_t)p * kvd + (size_t)kh * hd, qr);
            sc[p] *= s->scale;
            if (sc[p] > mx) mx = sc[p];
        }
        /* llama.cpp pads the scores to whole vectors of 16 (masked: e^-inf = 0) and
         * adds each vector's exponentials pairwise before adding them up in double */
        const int len16 = (len + 15) & ~15;
        for (int p = 0; p < len; p++) sc[p] -= mx;
        for (int p = len; p < len16; p++) sc[p] = -INFINITY;
        j->c->k->exp(len16, sc, sc);
        double sum = 0;
        for (int p = 0; p < len16; p += 16) sum += sum16_pairwise(sc + p);
        float inv = (float)(1.0 / sum);
        for (int p = 0; p < len; p++) sc[p] = round_half(sc[p] * inv);
        float *o = j->out + ((size_t)t * s->n_head + h) * hd;
        for (int i = 0; i < hd; i++)
            dot(len, &o[i], vt + ((size_t)kh * hd + i) * s->n_ctx, sc);
    }
}

/* The ISA's batch kernel: the queries of one K/V head, token after token and head after
 * head within the group, in batches of 16 (bit-identical to attn_fn's per-query loop).
 * Batches go to threads round robin: later tokens have more keys. */
static void attn_batched(attn_job *j, int ith, int nth) {
    const chord_attn_shape *s = j->s;
    const int hd = s->head_dim, kvd = s->n_head_kv * hd, group = s->n_head / s->n_head_kv;
    const int64_t nf = (int64_t)j->n * group, nbat = (nf + 15) / 16;
    cpu_attn_batch b;
    b.hd = hd;
    b.ldk = (size_t)kvd;
    b.ldv = (size_t)s->n_ctx;
    b.scale = s->scale;
    b.exp = j->c->k->exp;
    b.scratch = j->c->scratch + (size_t)ith * j->c->scratch_cap;
    for (int64_t w = ith; w < nbat * s->n_head_kv; w += nth) {
        const int kh = (int)(w % s->n_head_kv);
        const int64_t f0 = w / s->n_head_kv * 16;
        b.nq = (int)(nf - f0 < 16 ? nf - f0 : 16);
        for (int q = 0; q < b.nq; q++) {
            const int t = (int)((f0 + q) / group), h = kh * group + (int)((f0 + q) % group);
            b.q[q] = j->q + ((size_t)t * s->n_head + h) * hd;
            b.out[q] = j->out + ((size_t)t * s->n_head + h) * hd;
            b.len[q] = j->pos0 + t + 1;
        }
        b.k = (const chord_half *)j->kv->k + (size_t)kh * hd;
        b.vt = (const chord_half *)j->kv->v + (size_t)kh * hd * s->n_ctx;
        j->c->k->attn_batch(&b);
    }
}

/* chord_float_to_half, inline for the normal half range (the rest goes to it): round to
 * nearest even at bit 13, the carry moving into the exponent as it should */
static inline chord_half to_half(float x) {
    uint32_t u;
    memcpy(&u, &x, 4);
    const uint32_t au = u & 0x7fffffffu;
    if (au >= 0x38800000u && au < 0x477ff000u) {
        const uint32_t r = au + 0xfffu + ((au >> 13) & 1u);
        return (chord_half)(((u >> 16) & 0x8000u) | ((r - 0x38000000u) >> 13));
    }
    return chord_float_to_half(x);
}

typedef struct store_job {
    chord_kv *kv;
    const float *k, *v;
    int n, pos0, kvd, n_ctx;
} store_job;

static void store_fn(void *arg, int ith, int nth) {
    store_job *j = arg;
    chord_half *kc = j->kv->k, *vt = j->kv->v;
    int64_t lo, hi;
    split(j->kvd, ith, nth, &lo, &hi);
    for (int t = 0; t < j->n; t++) {
        size_t pos = (size_t)(j->pos0 + t);
        for (int64_t i = lo; i < hi; i++) {
            kc[pos * j->kvd + i] = to_half(j->k[(size_t)t * j->kvd + i]);
            vt[(size_t)i * j->n_ctx + pos] = to_half(j->v[(size_t)t * j->kvd + i]);
        }
    }
}

static void cpu_attention(chord_backend *be, float *out, const float *q, const float *k,
                          const float *v, chord_kv *kv, int n, int pos0, const chord_attn_shape *s) {
    cpu_backend *c = cpu(be);
    /* the batch kernel wants full batches: with fewer queries per K/V head (decode) its
     * V products, one fma per key, dimension and batch, cost more than per-query dots */
    const int batched = c->k->attn_batch && (int64_t)n * (s->n_head / s->n_head_kv) >= 16;
    size_t need = (size_t)s->n_ctx + (size_t)s->head_dim + 32;
    if (batched && CPU_ATTN_SCRATCH(s->head_dim, s->n_ctx) > need)
        need = CPU_ATTN_SCRATCH(s->head_dim, s->n_ctx);
    if (c->failed) return;
    if (need > c->scratch_cap) {
        float *p = realloc(c->scratch, need * sizeof(float) * (size_t)cpu_pool_size(c->pool));
        if (!p) {
            c->failed = chord_fail(&c->err, CHORD_E_NOMEM, "out of memory for attention scratch");
            return;
        }
        c->scratch = p;
        c->scratch_cap = need;
    }
    store_job sj = {kv, k, v, n, pos0, s->n_head_kv * s->head_dim, s->n_ctx};
    cpu_pool_run(c->pool, store_fn, &sj);
    attn_job aj = {c, out, q, kv, n, pos0, s, batched};
    cpu_pool_run(c->pool, attn_fn, &aj);
}

typedef struct elem_job {
    const cpu_kernels *k;
    float *out;
    const float *a, *b;
    size_t n;
} elem_job;

static void add_fn(void *arg, int ith, int nth) {
    elem_job *j = arg;
    int64_t lo, hi;
    split((int64_t)j->n, ith, nth, &lo, &hi);
    for (int64_t i = lo; i < hi; i++) j->out[i] += j->b[i];
}

static void swiglu_fn(void *arg, int ith, int nth) {
    elem_job *j = arg;
    int64_t lo, hi;
    split((int64_t)(j->n / 16), ith, nth, &lo, &hi); /* whole vectors per thread */
    lo *= 16;
    hi = ith == nth - 1 ? (int64_t)j->n : hi * 16;
    j->k->swiglu(hi - lo, j->out + lo, j->a + lo, j->b + lo);
}

static void cpu_add(chord_backend *be, float *x, const float *y, size_t n) {
    elem_job j = {NULL, x, NULL, y, n};
    cpu_pool_run(cpu(be)->pool, add_fn, &j);
}

static void cpu_swiglu(chord_backend *be, float *out, const float *g, const float *u, size_t n) {
    elem_job j = {cpu(be)->k, out, g, u, n};
    cpu_pool_run(cpu(be)->pool, swiglu_fn, &j);
}

static size_t cpu_kv_bytes(chord_backend *be, int n_ctx, int kv_dim) {
    return (size_t)n_ctx * (size_t)kv_dim * sizeof(chord_half);
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
    .kv_bytes = cpu_kv_bytes,
    .get_rows = cpu_get_rows,
    .rmsnorm = cpu_rmsnorm,
    .matmul = cpu_op_matmul,
    .rope = cpu_rope,
    .attention = cpu_attention,
    .add = cpu_add,
    .swiglu = cpu_swiglu,
};

chord_status chord_backend_cpu_new(int n_threads, chord_backend **out, chord_error *err) {
    cpu_backend *c = calloc(1, sizeof *c);
    if (!c) return chord_fail(err, CHORD_E_NOMEM, "out of memory creating the CPU backend");
    c->base.ops = &CPU_OPS;
    c->k = cpu_kernels_pick(cpu_isa_detect(), cpu_exact_requested());
    c->pool = cpu_pool_new(n_threads);
    c->mm = cpu_matmul_ctx_new();
    if (!c->pool || !c->mm) {
        cpu_destroy(&c->base);
        return chord_fail(err, CHORD_E_NOMEM, "could not start %d CPU threads", n_threads);
    }
    int nt = cpu_pool_size(c->pool);
    snprintf(c->base.desc, sizeof c->base.desc, "cpu (%s, %d thread%s)", cpu_isa_name(c->k->isa), nt,
             nt == 1 ? "" : "s");
    *out = &c->base;
    return CHORD_OK;
}

int chord_backend_cpu_threads(chord_backend *be) { return cpu_pool_size(cpu(be)->pool); }
