/* The CUDA backend: device selection, memory, weight upload (with repacking), the
 * vtable, and error reporting. Kernels live in elementwise.cu, matvec.cu, gemm.cu and
 * attention.cu. Everything runs in order on one non-blocking stream per backend. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <algorithm>

#include "cuda_api.h"
#include "cuda_common.cuh"
#include "gemm_pipe.cuh"

/* ------------------------------------------------------------ errors */

bool cuda_record(cuda_backend *be, cudaError_t e, const char *what, const char *file,
                 int line) {
    if (e == cudaSuccess) return true;
    if (be->err_code == CHORD_OK) {
        const char *base = strrchr(file, '/');
        base = base ? base + 1 : file;
        snprintf(be->err_msg, sizeof be->err_msg, "CUDA error %s (%s) in %.60s at %s:%d",
                 cudaGetErrorName(e), cudaGetErrorString(e), what, base, line);
        be->err_code = CHORD_E_BACKEND;
    }
    return false;
}

void cuda_fail(cuda_backend *be, const char *fmt, ...) {
    if (be->err_code != CHORD_OK) return;
    va_list ap;
    va_start(ap, fmt);
    char msg[300];
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    snprintf(be->err_msg, sizeof be->err_msg, "CUDA backend: %s", msg);
    be->err_code = CHORD_E_BACKEND;
}

static void dev_enter(cuda_backend *be) {
    CUDA_CHECK(be, cudaSetDevice(be->device));
}

/* ------------------------------------------------------ allocations */

static bool track(cuda_backend *be, void *p) {
    if (be->n_allocs == be->cap_allocs) {
        size_t cap = be->cap_allocs ? 2 * be->cap_allocs : 64;
        void **a = (void **)realloc(be->allocs, cap * sizeof *a);
        if (!a) return false;
        be->allocs = a;
        be->cap_allocs = cap;
    }
    be->allocs[be->n_allocs++] = p;
    return true;
}

static bool untrack(cuda_backend *be, void *p) {
    for (size_t i = be->n_allocs; i-- > 0;) {
        if (be->allocs[i] == p) {
            be->allocs[i] = be->allocs[--be->n_allocs];
            return true;
        }
    }
    return false;
}

/* cudaMalloc that leaves no error behind on failure (out of memory is not sticky). */
static void *dev_malloc(cuda_backend *be, size_t bytes) {
    void *p = NULL;
    if (cudaMalloc(&p, bytes ? bytes : 16) != cudaSuccess) {
        (void)cudaGetLastError();
        return NULL;
    }
    if (!track(be, p)) {
        cudaFree(p);
        return NULL;
    }
    return p;
}

static void dev_free(cuda_backend *be, void *p) {
    if (!p) return;
    if (untrack(be, p)) CUDA_CHECK(be, cudaFree(p));
}

void *cuda_scratch_get(cuda_backend *be, int slot, size_t bytes) {
    cuda_scratch *s = &be->scratch[slot];
    if (s->cap >= bytes && s->p) return s->p;
    size_t cap = std::max(bytes, s->cap + s->cap / 2);
    cap = (cap + 4095) & ~(size_t)4095;
    if (s->p) {
        CUDA_CHECK(be, cudaStreamSynchronize(be->stream)); /* in use by queued work */
        dev_free(be, s->p);
        s->p = NULL;
        s->cap = 0;
    }
    be->scratch_gen++; /* graphs recorded with the old buffer must not run again */
    void *p = dev_malloc(be, cap);
    if (!p) {
        cuda_fail(be, "out of GPU memory for %zu bytes of scratch", cap);
        return NULL;
    }
    s->p = p;
    s->cap = cap;
    return p;
}

/* ---------------------------------------------------------- vtable */

static void cu_destroy(chord_backend *b) {
    if (!b) return;
    cuda_backend *be = cuda_be(b);
    cudaSetDevice(be->device);
    if (be->stream) cudaStreamSynchronize(be->stream);
    cuda_graphs_free(be);
    for (size_t i = 0; i < be->n_allocs; i++)
        cudaFree(be->allocs[i]);
    free(be->allocs);
    if (be->stream) cudaStreamDestroy(be->stream);
    (void)cudaGetLastError();
    free(be);
}

static bool cu_supports_type(chord_backend *b, chord_type t) {
    return cuda_type_ok(t);
}

/* Host fallback of the repack kernel (used when there is no room for a staging copy). */
static void repack_host(uint8_t *dst, const uint8_t *raw, qinfo qi, int64_t n_blocks) {
    uint8_t *sreg = dst + (size_t)n_blocks * qi.qlen;
    for (int64_t b = 0; b < n_blocks; b++) {
        const uint8_t *src = raw + (size_t)b * qi.tsize;
        memcpy(dst + (size_t)b * qi.qlen, src + qi.qoff, (size_t)qi.qlen);
        uint8_t *s = sreg + (size_t)b * qi.sb;
        memset(s, 0, (size_t)qi.sb);
        memcpy(s, src, (size_t)qi.qoff);
        memcpy(s + qi.qoff, src + qi.qoff + qi.qlen, (size_t)(qi.tsize - qi.qoff - qi.qlen));
    }
}

static chord_status cu_upload(chord_backend *b, chord_weight *w, chord_error *err) {
    cuda_backend *be = cuda_be(b);
    cuda_rec_flush(be);
    const char *name = w->name ? w->name : "?";
    if (w->dev) return CHORD_OK; /* already there (e.g. a tied output head) */
    if (!cuda_type_ok(w->type))
        return chord_fail(err, CHORD_E_UNSUPPORTED, "no CUDA kernel for weight '%s' of type %s",
                          name, chord_type_name(w->type));
    qinfo qi = qinfo_of(w->type);
    if (w->n_in <= 0 || w->n_out <= 0 || w->n_in % qi.blk ||
        w->nbytes != (size_t)w->n_out * (size_t)(w->n_in / qi.blk) * (size_t)qi.tsize)
        return chord_fail(err, CHORD_E_INVALID_ARG,
                          "weight '%s': size does not match its shape", name);
    dev_enter(be);
    const size_t dev_bytes = cuda_weight_bytes(w);
    uint8_t *d = (uint8_t *)dev_malloc(be, dev_bytes);
    if (!d)
        return chord_fail(err, CHORD_E_NOMEM, "out of GPU memory uploading '%s' (%zu MiB)",
                          name, dev_bytes >> 20);
    int64_t n_blocks = w->n_out * (w->n_in / qi.blk);
    if (type_is_float(w->type)) {
        CUDA_CHECK(be,
                   cudaMemcpyAsync(d, w->host, w->nbytes, cudaMemcpyHostToDevice, be->stream));
    } else {
        uint8_t *tmp = (uint8_t *)dev_malloc(be, w->nbytes);
        if (tmp) {
            CUDA_CHECK(be, cudaMemcpyAsync(tmp, w->host, w->nbytes, cudaMemcpyHostToDevice,
                                           be->stream));
            cuda_repack(be, d, tmp, w->type, n_blocks);
            CUDA_CHECK(be, cudaStreamSynchronize(be->stream));
            dev_free(be, tmp);
        } else {
            uint8_t *h = (uint8_t *)malloc(dev_bytes);
            if (!h) {
                dev_free(be, d);
                return chord_fail(err, CHORD_E_NOMEM, "out of memory repacking '%s'", name);
            }
            repack_host(h, (const uint8_t *)w->host, qi, n_blocks);
            CUDA_CHECK(be,
                       cudaMemcpyAsync(d, h, dev_bytes, cudaMemcpyHostToDevice, be->stream));
            CUDA_CHECK(be, cudaStreamSynchronize(be->stream));
            free(h);
        }
    }
    CUDA_CHECK(be, cudaStreamSynchronize(be->stream));
    if (be->err_code != CHORD_OK) {
        chord_status s = chord_fail(err, be->err_code, "uploading '%s': %s", name, be->err_msg);
        be->err_code = CHORD_OK;
        dev_free(be, d);
        return s;
    }
    w->dev = d;
    return CHORD_OK;
}

static void *cu_alloc(chord_backend *b, size_t bytes) {
    cuda_backend *be = cuda_be(b);
    cuda_rec_flush(be);
    dev_enter(be);
    return dev_malloc(be, bytes);
}

static void cu_free(chord_backend *b, void *p) {
    cuda_backend *be = cuda_be(b);
    cuda_rec_flush(be);
    dev_enter(be);
    dev_free(be, p);
}

static void cu_to_host(chord_backend *b, void *dst, const void *src, size_t bytes) {
    cuda_backend *be = cuda_be(b);
    cuda_rec_flush(be);
    if (!bytes) return;
    dev_enter(be);
    CUDA_CHECK(be, cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToHost, be->stream));
    CUDA_CHECK(be, cudaStreamSynchronize(be->stream));
}

/* Page-locks host memory the context copies to / from every step (its logits): a copy
 * from pageable memory goes through a staging buffer. Best effort: a failure (no room to
 * lock, already registered) leaves the memory pageable and no error behind. */
static void cu_pin(chord_backend *b, void *p, size_t bytes) {
    cuda_backend *be = cuda_be(b);
    if (!p || !bytes) return;
    dev_enter(be);
    if (cudaHostRegister(p, bytes, cudaHostRegisterDefault) != cudaSuccess)
        (void)cudaGetLastError();
}

static void cu_unpin(chord_backend *b, void *p) {
    cuda_backend *be = cuda_be(b);
    if (!p) return;
    dev_enter(be);
    if (cudaHostUnregister(p) != cudaSuccess) (void)cudaGetLastError();
}

static void cu_from_host(chord_backend *b, void *dst, const void *src, size_t bytes) {
    cuda_backend *be = cuda_be(b);
    cuda_rec_flush(be);
    if (!bytes) return;
    dev_enter(be);
    CUDA_CHECK(be, cudaMemcpyAsync(dst, src, bytes, cudaMemcpyHostToDevice, be->stream));
    /* the caller may reuse src at once */
    CUDA_CHECK(be, cudaStreamSynchronize(be->stream));
}

static chord_status cu_sync(chord_backend *b, chord_error *err) {
    cuda_backend *be = cuda_be(b);
    cuda_rec_flush(be);
    dev_enter(be);
    CUDA_CHECK(be, cudaStreamSynchronize(be->stream));
    if (be->err_code == CHORD_OK) return CHORD_OK;
    chord_status s = chord_fail(err, be->err_code, "%s", be->err_msg);
    be->err_code = CHORD_OK; /* reported once; a sticky device error will recur */
    return s;
}

static bool on_device(cuda_backend *be, const chord_weight *w, const char *op) {
    if (w && w->dev) return true;
    cuda_fail(be, "%s: weight '%s' is not on the GPU", op, w && w->name ? w->name : "?");
    return false;
}

/* Each op either appends itself to the step being recorded (graph.cu) or launches. */
static bool recorded(cuda_backend *be, cuda_rec *r) {
    return be->rec && cuda_rec_push(be, r);
}

static void rec_init(cuda_rec *r, int op, int n) {
    memset(r, 0, sizeof *r);
    r->op = op;
    r->n = n;
}

static void do_get_rows(cuda_backend *be, float *out, const chord_weight *emb,
                        const int32_t *tokens, int n, const int *dtok) {
    if (n <= 0) return;
    dev_enter(be);
    if (!on_device(be, emb, "get_rows")) return;
    cuda_get_rows(be, out, emb, tokens, n, dtok);
}

static void cu_get_rows(chord_backend *b, float *out, const chord_weight *emb,
                        const int32_t *tokens, int n) {
    cuda_backend *be = cuda_be(b);
    if (n == 1) {
        cuda_rec r;
        rec_init(&r, CREC_GET_ROWS, n);
        r.out = out;
        r.w[0] = emb;
        r.tok = tokens[0];
        if (recorded(be, &r)) return;
    }
    do_get_rows(be, out, emb, tokens, n, NULL);
}

static void do_rmsnorm(cuda_backend *be, float *out, const float *x, const chord_weight *w,
                       int n, int dim, float eps) {
    dev_enter(be);
    if (!on_device(be, w, "rmsnorm")) return;
    if (w->type != CHORD_TYPE_F32 || w->n_in * w->n_out < dim) {
        cuda_fail(be, "rmsnorm: weight '%s' must be F32 with %d values",
                  w->name ? w->name : "?", dim);
        return;
    }
    cuda_rmsnorm(be, out, x, (const float *)w->dev, n, dim, eps);
}

static void cu_rmsnorm(chord_backend *b, float *out, const float *x, const chord_weight *w,
                       int n, int dim, float eps) {
    cuda_backend *be = cuda_be(b);
    cuda_rec r;
    rec_init(&r, CREC_RMSNORM, n);
    r.out = out, r.x = x, r.w[0] = w, r.dim = dim, r.eps = eps;
    if (recorded(be, &r)) return;
    do_rmsnorm(be, out, x, w, n, dim, eps);
}

static bool matmul_check(cuda_backend *be, int n_w, const chord_weight *const *ws) {
    for (int k = 0; k < n_w; k++) {
        if (!on_device(be, ws[k], "matmul")) return false;
        if (!cuda_type_ok(ws[k]->type)) {
            cuda_fail(be, "matmul: no kernel for type %s", chord_type_name(ws[k]->type));
            return false;
        }
    }
    return true;
}

/* One token: consecutive weights of one type and row length share a launch; res[k]
 * (may be NULL) gets ys[k] added. xa_pre: x already quantized (may be NULL). */
void cuda_matvec_call(cuda_backend *be, int n_w, float *const *ys,
                      const chord_weight *const *ws, float *const *res, const float *x,
                      const qact *xa_pre) {
    dev_enter(be);
    if (!matmul_check(be, n_w, ws)) return;
    qact xa = {NULL, NULL, NULL, NULL, NULL, 0};
    int64_t xa_n_in = -1;
    if (xa_pre) xa = *xa_pre, xa_n_in = ws[0]->n_in;
    /* two types sharing one activation quantization (Q4_K q/k + Q6_K v): one launch */
    if (n_w > 1 && !type_is_float(ws[0]->type)) {
        if (!xa_pre && !cuda_quantize_act(be, x, ws[0]->n_in, 1, act_block(ws[0]->type), &xa))
            return;
        if (cuda_matvec_pair(be, n_w, ws, ys, res, &xa)) return;
        xa_n_in = ws[0]->n_in;
    }
    for (int k0 = 0; k0 < n_w;) {
        const chord_weight *w = ws[k0];
        int k1 = k0 + 1;
        while (k1 < n_w && k1 - k0 < CUDA_MV_MAXW && ws[k1]->type == w->type &&
               ws[k1]->n_in == w->n_in)
            k1++;
        if (!type_is_float(w->type) && (w->n_in != xa_n_in || act_block(w->type) != xa.qb)) {
            if (!cuda_quantize_act(be, x, w->n_in, 1, act_block(w->type), &xa)) return;
            xa_n_in = w->n_in;
        }
        cuda_matvec_multi(be, k1 - k0, ws + k0, ys + k0, res ? res + k0 : NULL, x, &xa);
        k0 = k1;
    }
}

static void do_matmul(cuda_backend *be, int n_w, float *const *ys,
                      const chord_weight *const *ws, const float *x, int n) {
    if (n <= 0 || n_w <= 0) return;
    dev_enter(be);
    if (n == 1) {
        cuda_matvec_call(be, n_w, ys, ws, NULL, x, NULL);
        return;
    }
    if (!matmul_check(be, n_w, ws)) return;
    /* the activations are quantized once per (row length, block) for the quantized
     * weights of the call, as the CPU backend does */
    qact xa = {NULL, NULL, NULL, NULL, NULL, 0};
    int64_t xa_n_in = -1;
    for (int k0 = 0; k0 < n_w;) {
        const chord_weight *w = ws[k0];
        int k1 = k0 + 1; /* weights of one type and row length: one launch */
        while (k1 < n_w && k1 - k0 < GEMM_MAXW && ws[k1]->type == w->type &&
               ws[k1]->n_in == w->n_in)
            k1++;
        if (!type_is_float(w->type) && (w->n_in != xa_n_in || act_block(w->type) != xa.qb)) {
            if (!cuda_quantize_act(be, x, w->n_in, n, act_block(w->type), &xa)) return;
            xa_n_in = w->n_in;
        }
        cuda_gemm_multi(be, k1 - k0, ws + k0, x, &xa, ys + k0, n);
        k0 = k1;
    }
}

static void cu_matmul(chord_backend *b, int n_w, float *const *ys,
                      const chord_weight *const *ws, const float *x, int n) {
    cuda_backend *be = cuda_be(b);
    if (n_w <= 4) {
        cuda_rec r;
        rec_init(&r, CREC_MATMUL, n);
        r.n_w = n_w, r.x = x;
        for (int k = 0; k < n_w; k++)
            r.w[k] = ws[k], r.ys[k] = ys[k];
        if (recorded(be, &r)) return;
    } else {
        cuda_rec_flush(be);
    }
    do_matmul(be, n_w, ys, ws, x, n);
}

static void cu_rope(chord_backend *b, float *x, int n, int pos0, const chord_rope_shape *s) {
    cuda_backend *be = cuda_be(b);
    cuda_rec r;
    rec_init(&r, CREC_ROPE, n);
    /* field by field: the caller's padding bytes must not reach the graph key */
    r.out = x, r.pos0 = pos0;
    r.rs.n_head = s->n_head, r.rs.head_dim = s->head_dim, r.rs.n_rot = s->n_rot;
    r.rs.freq_base = s->freq_base, r.rs.freq_scale = s->freq_scale, r.rs.neox = s->neox;
    if (recorded(be, &r)) return;
    dev_enter(be);
    cuda_rope(be, x, n, pos0, s, NULL);
}

static void cu_attention(chord_backend *b, float *out, const float *q, const float *k,
                         const float *v, chord_kv *kv, int n, int pos0,
                         const chord_attn_shape *s) {
    cuda_backend *be = cuda_be(b);
    cuda_rec r;
    rec_init(&r, CREC_ATTN, n);
    r.out = out, r.x = q, r.y = k, r.z = v, r.pos0 = pos0;
    r.kv.k = kv->k, r.kv.v = kv->v;
    r.as.n_head = s->n_head, r.as.n_head_kv = s->n_head_kv, r.as.head_dim = s->head_dim;
    r.as.n_ctx = s->n_ctx, r.as.scale = s->scale;
    if (recorded(be, &r)) return;
    dev_enter(be);
    cuda_attention(be, out, q, k, v, kv, n, pos0, s, NULL);
}

static void cu_add(chord_backend *b, float *x, const float *y, size_t n) {
    cuda_backend *be = cuda_be(b);
    cuda_rec r;
    rec_init(&r, CREC_ADD, 1);
    r.out = x, r.y = y, r.count = n;
    if (recorded(be, &r)) return;
    dev_enter(be);
    cuda_add(be, x, y, n);
}

static void cu_swiglu(chord_backend *b, float *out, const float *g, const float *u, size_t n) {
    cuda_backend *be = cuda_be(b);
    cuda_rec r;
    rec_init(&r, CREC_SWIGLU, 1);
    r.out = out, r.x = g, r.y = u, r.count = n;
    if (recorded(be, &r)) return;
    dev_enter(be);
    cuda_swiglu(be, out, g, u, n);
}

void cuda_exec_op(cuda_backend *be, const cuda_rec *r, const int *dpos, const int *dtok) {
    dev_enter(be);
    switch (r->op) {
    case CREC_GET_ROWS: do_get_rows(be, r->out, r->w[0], &r->tok, r->n, dtok); break;
    case CREC_RMSNORM: do_rmsnorm(be, r->out, r->x, r->w[0], r->n, r->dim, r->eps); break;
    case CREC_MATMUL: do_matmul(be, r->n_w, r->ys, r->w, r->x, r->n); break;
    case CREC_ROPE: cuda_rope(be, r->out, r->n, r->pos0, &r->rs, dpos); break;
    case CREC_ATTN: {
        chord_kv kv = r->kv;
        cuda_attention(be, r->out, r->x, r->y, r->z, &kv, r->n, r->pos0, &r->as, dpos);
        break;
    }
    case CREC_ADD: cuda_add(be, r->out, r->y, r->count); break;
    case CREC_SWIGLU: cuda_swiglu(be, r->out, r->x, r->y, r->count); break;
    default: cuda_fail(be, "recorded op %d unknown", r->op); break;
    }
}

static size_t cu_kv_bytes(chord_backend *b, int n_ctx, int kv_dim) {
    return cuda_kv_bytes(n_ctx, kv_dim);
}

/* Filled by name so the table follows backend.h whatever its field order. */
static chord_backend_ops make_ops(void) {
    chord_backend_ops o;
    memset(&o, 0, sizeof o);
    o.name = "cuda";
    o.destroy = cu_destroy;
    o.supports_type = cu_supports_type;
    o.upload = cu_upload;
    o.alloc = cu_alloc;
    o.free = cu_free;
    o.to_host = cu_to_host;
    o.from_host = cu_from_host;
    o.sync = cu_sync;
    o.pin = cu_pin;
    o.unpin = cu_unpin;
    o.kv_bytes = cu_kv_bytes;
    o.step_begin = cuda_step_begin;
    o.step_end = cuda_step_end;
    o.topk = cuda_topk;
    o.get_rows = cu_get_rows;
    o.rmsnorm = cu_rmsnorm;
    o.matmul = cu_matmul;
    o.rope = cu_rope;
    o.attention = cu_attention;
    o.add = cu_add;
    o.swiglu = cu_swiglu;
    return o;
}
static const chord_backend_ops CUDA_OPS = make_ops();

/* ------------------------------------------------------------ create */

__global__ void probe_kernel(int *p) {
    if (threadIdx.x == 0 && blockIdx.x == 0) *p = 42;
}

static chord_status init_fail(chord_error *err, const char *fmt, const char *detail) {
    (void)cudaGetLastError();
    return chord_fail(err, CHORD_E_BACKEND, fmt, detail);
}

extern "C" chord_status chord_backend_cuda_new(chord_backend **out, chord_error *err) {
    *out = NULL;
    int drv = 0, rt = 0;
    if (cudaDriverGetVersion(&drv) != cudaSuccess || drv == 0)
        return init_fail(err, "no CUDA driver found%s", "");
    cudaRuntimeGetVersion(&rt);
    int count = 0;
    cudaError_t e = cudaGetDeviceCount(&count);
    if (e == cudaErrorNoDevice || (e == cudaSuccess && count == 0))
        return init_fail(err, "no CUDA device found%s", "");
    if (e == cudaErrorInsufficientDriver || drv / 1000 < rt / 1000) {
        (void)cudaGetLastError();
        return chord_fail(err, CHORD_E_BACKEND,
                          "CUDA driver too old (it supports CUDA %d.%d, chord needs %d.%d)",
                          drv / 1000, drv % 1000 / 10, rt / 1000, rt % 1000 / 10);
    }
    if (e != cudaSuccess)
        return init_fail(err, "CUDA initialisation failed: %s", cudaGetErrorString(e));

    int best = -1;
    size_t best_mem = 0;
    cudaDeviceProp prop, best_prop;
    memset(&best_prop, 0, sizeof best_prop);
    for (int i = 0; i < count; i++) {
        if (cudaGetDeviceProperties(&prop, i) != cudaSuccess) continue;
        if (prop.major < 8) continue;
        if (best < 0 || prop.totalGlobalMem > best_mem) {
            best = i;
            best_mem = prop.totalGlobalMem;
            best_prop = prop;
        }
    }
    if (best < 0) {
        (void)cudaGetLastError();
        if (cudaGetDeviceProperties(&prop, 0) == cudaSuccess)
            return chord_fail(
                err, CHORD_E_BACKEND,
                "no CUDA device with compute capability 8.0 or newer (%s is %d.%d)", prop.name,
                prop.major, prop.minor);
        return init_fail(err, "no usable CUDA device found%s", "");
    }
    if ((e = cudaSetDevice(best)) != cudaSuccess)
        return init_fail(err, "selecting the CUDA device failed: %s", cudaGetErrorString(e));

    cuda_backend *be = (cuda_backend *)calloc(1, sizeof *be);
    if (!be) return chord_fail(err, CHORD_E_NOMEM, "out of memory creating the CUDA backend");
    be->base.ops = &CUDA_OPS;
    be->device = best;
    be->n_sm = best_prop.multiProcessorCount;
    be->smem_per_block_optin = best_prop.sharedMemPerBlockOptin;
    const char *pdl = getenv("CHORD_CUDA_PDL");
    be->pdl = best_prop.major >= 9 && !(pdl && !strcmp(pdl, "0"));
    be->cc_major = best_prop.major;
    const char *gr = getenv("CHORD_CUDA_GRAPHS");
    be->graphs = gr && *gr ? atoi(gr) : 1;
    if (be->graphs < 0 || be->graphs > 2) be->graphs = 1;
    const char *fu = getenv("CHORD_CUDA_FUSE");
    be->fuse_pro = fu && !strcmp(fu, "2"); /* measured slower: see NOTES.md */
    const char *fs = getenv("CHORD_CUDA_FAST");
    be->fast_steps = !(fs && !strcmp(fs, "0"));
    const char *wv = getenv("CHORD_CUDA_WAVES");
    be->mv_waves = !(wv && !strcmp(wv, "0"));
    const char *qr = getenv("CHORD_CUDA_Q4KR");
    be->q4k_rows = qr && *qr >= '1' && *qr <= '3' && !qr[1] ? *qr - '0' : 3;
    const char *pt = getenv("CHORD_CUDA_PAIRTRIG");
    be->mv_ptrig = !(pt && !strcmp(pt, "0"));
    const char *ql = getenv("CHORD_CUDA_Q4KLONG");
    be->q4k_long = !(ql && !strcmp(ql, "0"));
    const char *qs = getenv("CHORD_CUDA_Q4KSPLIT");
    be->q4k_split = !(qs && !strcmp(qs, "0"));
    const char *mp = getenv("CHORD_CUDA_PAIRS");
    be->mv_pairs = !(mp && !strcmp(mp, "0"));
    const char *pf = getenv("CHORD_CUDA_PREFETCH"); /* MiB of L2 prefetch ahead, 0: off */
    const int pf_mib = pf && *pf ? atoi(pf) : 24;
    be->pf_window = pf_mib > 0 && pf_mib <= 4096 ? (size_t)pf_mib << 20 : 0;
    const char *pm = getenv("CHORD_CUDA_PF_MAX"); /* MiB: largest matvec launch prefetched */
    const int pm_mib = pm && *pm ? atoi(pm) : 16;
    be->pf_max_launch = (long long)(pm_mib > 0 && pm_mib <= 4096 ? pm_mib : 16) << 20;
    be->pf_blocks = 32;
    be->pf_chunk = 32 * 1024;
    const char *ks = getenv("CHORD_CUDA_KSTAGE"); /* rows of decode attention staged */
    be->attn_kstage = ks && *ks ? atoi(ks) : 256;
    if (be->attn_kstage < 0 || be->attn_kstage > 4096) be->attn_kstage = 256;
    const char *et = getenv("CHORD_CUDA_EARLY");
    be->early_trigger = et && *et ? atoi(et) & 7 : CUDA_EARLY_QS; /* CUDA_EARLY_* bits */
    const char *aq = getenv("CHORD_CUDA_ATTNQ");
    be->attn_quant = aq && *aq >= '0' && *aq <= '2' && !aq[1] ? *aq - '0' : 1;
    const char *pe = getenv("CHORD_CUDA_PERSIST");
    be->mv_persist = pe && *pe ? atoi(pe) : 2;
    if (be->mv_persist < 0 || be->mv_persist > 64) be->mv_persist = 2;
    if ((e = cudaStreamCreateWithFlags(&be->stream, cudaStreamNonBlocking)) != cudaSuccess) {
        free(be);
        return init_fail(err, "creating a CUDA stream failed: %s", cudaGetErrorString(e));
    }
    /* A kernel must run: catches a missing kernel image or PTX the driver can't JIT. */
    int *probe = (int *)dev_malloc(be, sizeof(int));
    int got = 0;
    if (!probe) {
        cu_destroy(&be->base);
        return init_fail(err, "no memory on the CUDA device%s", "");
    }
    probe_kernel<<<1, 32, 0, be->stream>>>(probe);
    e = cudaGetLastError();
    if (e == cudaSuccess)
        e = cudaMemcpyAsync(&got, probe, sizeof got, cudaMemcpyDeviceToHost, be->stream);
    if (e == cudaSuccess) e = cudaStreamSynchronize(be->stream);
    if (e != cudaSuccess || got != 42) {
        char msg[200];
        snprintf(msg, sizeof msg, "%s (compute capability %d.%d)",
                 e != cudaSuccess ? cudaGetErrorString(e) : "wrong result", best_prop.major,
                 best_prop.minor);
        cu_destroy(&be->base);
        return init_fail(err, "a test kernel failed on the GPU: %s", msg);
    }
    dev_free(be, probe);
    cuda_attention_init(be);
    snprintf(be->base.desc, sizeof be->base.desc, "cuda (%s, %.0f GiB)", best_prop.name,
             (double)best_prop.totalGlobalMem / (1024.0 * 1024.0 * 1024.0));
    *out = &be->base;
    return CHORD_OK;
}

extern "C" size_t chord_backend_cuda_free_mem(chord_backend *b) {
    cuda_backend *be = cuda_be(b);
    size_t fr = 0, total = 0;
    if (cudaSetDevice(be->device) != cudaSuccess ||
        cudaMemGetInfo(&fr, &total) != cudaSuccess) {
        (void)cudaGetLastError();
        return 0;
    }
    return fr;
}

/* ------------------------------------------------------------- bench */

static chord_status take_error(cuda_backend *be, chord_error *err) {
    if (be->err_code == CHORD_OK) return CHORD_OK;
    chord_status s = chord_fail(err, be->err_code, "%s", be->err_msg);
    be->err_code = CHORD_OK;
    return s;
}

/* Captures fn() into a graph, replays it reps times; median ms per replay. */
template <typename F>
static chord_status time_graph(cuda_backend *be, F fn, int reps, double *ms, chord_error *err) {
    fn(); /* warm-up outside the capture: grows scratch buffers */
    CUDA_CHECK(be, cudaStreamSynchronize(be->stream));
    if (be->err_code != CHORD_OK) return take_error(be, err);
    cudaGraph_t graph = NULL;
    cudaGraphExec_t exec = NULL;
    cudaEvent_t a = NULL, b = NULL;
    double *t = (double *)malloc(sizeof(double) * (size_t)(reps > 0 ? reps : 1));
    if (!t) return chord_fail(err, CHORD_E_NOMEM, "out of memory");
    if (CUDA_CHECK(be, cudaStreamBeginCapture(be->stream, cudaStreamCaptureModeRelaxed))) {
        fn();
        CUDA_CHECK(be, cudaStreamEndCapture(be->stream, &graph));
    }
    if (graph && CUDA_CHECK(be, cudaGraphInstantiate(&exec, graph, 0)) &&
        CUDA_CHECK(be, cudaEventCreate(&a)) && CUDA_CHECK(be, cudaEventCreate(&b))) {
        for (int i = 0; i < 3; i++)
            CUDA_CHECK(be, cudaGraphLaunch(exec, be->stream));
        for (int r = 0; r < reps; r++) {
            CUDA_CHECK(be, cudaEventRecord(a, be->stream));
            CUDA_CHECK(be, cudaGraphLaunch(exec, be->stream));
            CUDA_CHECK(be, cudaEventRecord(b, be->stream));
            CUDA_CHECK(be, cudaEventSynchronize(b));
            float f = 0;
            CUDA_CHECK(be, cudaEventElapsedTime(&f, a, b));
            t[r] = f;
        }
        std::sort(t, t + reps);
        *ms = t[reps / 2];
    }
    if (a) cudaEventDestroy(a);
    if (b) cudaEventDestroy(b);
    if (exec) cudaGraphExecDestroy(exec);
    if (graph) cudaGraphDestroy(graph);
    free(t);
    return take_error(be, err);
}

extern "C" chord_status cuda_bench_matmul(chord_backend *b, const chord_weight *const *ws,
                                          int n_w, const float *x, float *y, int n,
                                          int kernel_only, int reps, double *us_per_call,
                                          chord_error *err) {
    cuda_backend *be = cuda_be(b);
    dev_enter(be);
    if (n_w <= 0 || reps <= 0) return chord_fail(err, CHORD_E_INVALID_ARG, "nothing to time");
    double ms = 0;
    qact xa = {NULL, NULL, NULL, NULL, NULL, 0};
    bool pre = kernel_only && n == 1;
    if (pre && !type_is_float(ws[0]->type) &&
        !cuda_quantize_act(be, x, ws[0]->n_in, 1, act_block(ws[0]->type), &xa))
        return take_error(be, err);
    auto fn = [&]() {
        for (int i = 0; i < n_w; i++) {
            float *ys[1] = {y};
            const chord_weight *w1[1] = {ws[i]};
            if (pre)
                cuda_matvec(be, ws[i], x, &xa, y);
            else
                cu_matmul(b, 1, ys, w1, x, n);
        }
    };
    chord_status s = time_graph(be, fn, reps, &ms, err);
    if (s == CHORD_OK) *us_per_call = ms * 1000.0 / n_w;
    return s;
}

extern "C" chord_status cuda_bench_attention(chord_backend *b, float *out, const float *q,
                                             const float *k, const float *v, chord_kv *kv,
                                             int n, int pos0, const chord_attn_shape *s,
                                             int reps, double *us, chord_error *err) {
    cuda_backend *be = cuda_be(b);
    dev_enter(be);
    double ms = 0;
    auto fn = [&]() { cuda_attention(be, out, q, k, v, kv, n, pos0, s, NULL); };
    chord_status st = time_graph(be, fn, reps, &ms, err);
    if (st == CHORD_OK) *us = ms * 1000.0;
    return st;
}

extern "C" int cuda_set_trace(chord_backend *b, int on) {
    cuda_backend *be = (cuda_backend *)b;
    cuda_graphs_drop(b);
    if (on && !be->tr)
        be->tr = (unsigned long long *)dev_malloc(be, TRACE_WORDS * TRACE_SLOTS * 8);
    if (!on && be->tr) {
        dev_free(be, be->tr);
        be->tr = NULL;
    }
    return be->tr != NULL;
}

extern "C" int cuda_set_pdl(chord_backend *b, int on) {
    cuda_backend *be = cuda_be(b);
    int old = be->pdl;
    cudaDeviceProp p;
    if (cudaGetDeviceProperties(&p, be->device) == cudaSuccess) be->pdl = on && p.major >= 9;
    return old;
}

extern "C" chord_status cuda_bench_copy(chord_backend *b, size_t bytes, double *gb_per_s,
                                        chord_error *err) {
    cuda_backend *be = cuda_be(b);
    dev_enter(be);
    void *src = dev_malloc(be, bytes), *dst = dev_malloc(be, bytes);
    if (!src || !dst) {
        dev_free(be, src);
        dev_free(be, dst);
        return chord_fail(err, CHORD_E_NOMEM, "out of GPU memory for the copy benchmark");
    }
    CUDA_CHECK(be, cudaMemsetAsync(src, 1, bytes, be->stream));
    double ms = 0;
    auto fn = [&]() {
        CUDA_CHECK(be, cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToDevice, be->stream));
    };
    chord_status s = time_graph(be, fn, 20, &ms, err);
    if (s == CHORD_OK) *gb_per_s = 2.0 * (double)bytes / (ms * 1e-3) / 1e9;
    dev_free(be, src);
    dev_free(be, dst);
    return s;
}

extern "C" int cuda_set_graphs(chord_backend *b, int mode) {
    cuda_backend *be = cuda_be(b);
    int old = be->graphs;
    if (mode >= 0 && mode <= 2) be->graphs = mode;
    return old;
}

extern "C" int cuda_graph_count(chord_backend *b, int *fails) {
    return cuda_graph_stats(cuda_be(b), fails);
}
