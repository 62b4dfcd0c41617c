/* Decode steps as CUDA graphs.
 *
 * forward.c brackets a one-token step that runs entirely on this backend with
 * step_begin / step_end. In between, the ops are recorded (cuda_rec), not launched.
 * step_end then looks for a graph recorded from the same op sequence (every argument
 * except the token and the position: the buffers of the context, its KV cache, the
 * weights), so several contexts sharing the backend each get their own graph. If there
 * is one, the token and position are copied to device memory (d_in) and the graph is
 * launched; otherwise the recorded ops are captured into a new graph first. Every kernel
 * whose work depends on the token or position reads it from d_in in a graph.
 *
 * Recorded ops are also fused where that is cheap and exact (same roundings as the
 * separate kernels): rmsnorm + quantization of the next matmul's input, swiglu +
 * quantization, rope(q) + rope(k) + attention in one kernel, the residual add in the
 * matvec epilogue, and weights of one type sharing one matvec launch.
 *
 * graphs = 2 runs the same fused sequence without a graph (by value): the test compares
 * it, the graph and the plain ops (graphs = 0). */
#include <stddef.h>
#include <stdlib.h>

#include "cuda_common.cuh"

#define GRAPH_CACHE 8

struct cuda_graph_entry {
    cuda_rec *recs;
    int nr;
    cudaGraphExec_t exec;
    unsigned gen;
    unsigned long used;
    unsigned long serial; /* distinct for every graph captured */
    void *pf_plan;        /* the prefetcher's plan (prefetch.cu), or NULL */
};

static bool same_key(const cuda_rec *a, const cuda_rec *b, int n) {
    for (int i = 0; i < n; i++)
        if (memcmp(&a[i], &b[i], offsetof(cuda_rec, pos0)) != 0) return false;
    return true;
}

/* ------------------------------------------------------------ recording */

bool cuda_rec_push(cuda_backend *be, const cuda_rec *r) {
    if (be->n_recs == be->cap_recs) {
        int cap = be->cap_recs ? 2 * be->cap_recs : 512;
        cuda_rec *p = (cuda_rec *)realloc(be->recs, (size_t)cap * sizeof *p);
        if (!p) {
            cuda_rec_flush(be);
            return false;
        }
        be->recs = p;
        be->cap_recs = cap;
    }
    memcpy(&be->recs[be->n_recs++], r, sizeof *r); /* padding too: it is part of the key */
    return true;
}

/* --------------------------------------------------------------- fusion */

/* A one-token matmul whose weights are all quantized with one activation block, each of
 * row length n_in: its input can be quantized by the kernel that produces it. */
static bool quant_matmul(const cuda_rec *m, int64_t n_in, int *qb) {
    if (m->op != CREC_MATMUL || m->n != 1 || m->n_w < 1 || m->n_w > 4) return false;
    int q = 0;
    for (int k = 0; k < m->n_w; k++) {
        const chord_weight *w = m->w[k];
        if (!w || !w->dev || !cuda_type_ok(w->type) || type_is_float(w->type) ||
            w->n_in != n_in)
            return false;
        if (k == 0)
            q = act_block(w->type);
        else if (act_block(w->type) != q)
            return false;
    }
    if (q <= 0 || n_in % q != 0 || n_in > (1 << 30)) return false;
    *qb = q;
    return true;
}

/* Launches the matmul R[*i] (one token), taking in a following residual add. */
static void exec_matmul(cuda_backend *be, const cuda_rec *R, int nr, int *i, const qact *xa) {
    const cuda_rec *r = &R[*i];
    float *res[4] = {NULL, NULL, NULL, NULL};
    bool fused_add = false;
    if (r->n_w == 1 && *i + 1 < nr) {
        const cuda_rec *a = &R[*i + 1];
        if (a->op == CREC_ADD && a->y == r->ys[0] && r->w[0] &&
            a->count == (size_t)r->w[0]->n_out && a->out != r->x && a->out != r->ys[0]) {
            res[0] = a->out;
            fused_add = true;
            (*i)++;
        }
    }
    cuda_matvec_call(be, r->n_w, r->ys, r->w, fused_add ? res : NULL, r->x, xa);
}

/* A one-token matmul whose weights all take the matvec that quantizes its own input
 * (and whose outputs do not overwrite that input). */
static bool pro_matmul(const cuda_rec *m, int64_t n_in, const float *x, const float *xout) {
    if (m->op != CREC_MATMUL || m->n != 1 || m->n_w < 1 || m->n_w > 4) return false;
    for (int k = 0; k < m->n_w; k++) {
        if (!cuda_matvec_pro_ok(m->w[k]) || m->w[k]->n_in != n_in) return false;
        if (m->ys[k] == x || (xout && m->ys[k] == xout) || m->ys[k] == m->x) return false;
    }
    return true;
}

/* Launches the matmul R[*i] through cuda_matvec_pro: input x (normed with nw when not
 * NULL, the normed copy to xout), taking in a following swiglu of its two outputs or a
 * following residual add. */
static void exec_matmul_pro(cuda_backend *be, const cuda_rec *R, int nr, int *i, const float *x,
                            const float *nw, float eps, float *xout) {
    const cuda_rec *r = &R[*i];
    const cuda_rec *nx = *i + 1 < nr ? &R[*i + 1] : NULL;
    if (r->n_w == 2 && nx && nx->op == CREC_SWIGLU && nx->x == r->ys[0] && nx->y == r->ys[1] &&
        r->w[0]->type == r->w[1]->type && r->w[0]->n_out == r->w[1]->n_out &&
        nx->count == (size_t)r->w[0]->n_out && nx->out != x && nx->out != r->ys[1] &&
        (!xout || nx->out != xout)) {
        cuda_matvec_pro(be, 2, r->w, r->ys, NULL, x, nw, eps, xout, nx->out);
        (*i)++;
        return;
    }
    float *res[4] = {NULL, NULL, NULL, NULL};
    bool fused_add = false;
    if (r->n_w == 1 && nx && nx->op == CREC_ADD && nx->y == r->ys[0] &&
        nx->count == (size_t)r->w[0]->n_out && nx->out != x && nx->out != r->ys[0] &&
        (!xout || nx->out != xout)) {
        res[0] = nx->out;
        fused_add = true;
        (*i)++;
    }
    for (int k0 = 0; k0 < r->n_w;) {
        int k1 = k0 + 1;
        while (k1 < r->n_w && k1 - k0 < CUDA_MV_MAXW && r->w[k1]->type == r->w[k0]->type)
            k1++;
        cuda_matvec_pro(be, k1 - k0, r->w + k0, r->ys + k0, fused_add ? res + k0 : NULL, x, nw,
                        eps, k0 == 0 ? xout : NULL, NULL);
        k0 = k1;
    }
}

/* Is nothing reading buf (count floats) after record j before it is overwritten? Any
 * other use of buf by a record counts as a read; a buffer still live at the step's end
 * counts as read (the host or the next step may want it). */
static bool in_buf(const float *p, const float *buf, size_t count) {
    return p && p >= buf && p < buf + count;
}

static bool dead_after(const cuda_rec *R, int nr, int j, const float *buf, size_t count) {
    for (int k = j + 1; k < nr; k++) {
        const cuda_rec *r = &R[k];
        if (in_buf(r->x, buf, count) || in_buf(r->y, buf, count) || in_buf(r->z, buf, count))
            return false;
        size_t full = 0; /* elements of buf this record overwrites without reading */
        if (r->op == CREC_MATMUL) {
            for (int w = 0; w < r->n_w && w < 4; w++)
                if (r->ys[w] == buf && r->w[w]) full = (size_t)r->w[w]->n_out * (size_t)r->n;
        } else if (r->out == buf && (r->op == CREC_RMSNORM || r->op == CREC_SWIGLU)) {
            full = r->op == CREC_RMSNORM ? (size_t)r->dim * (size_t)r->n : r->count;
        } else if (in_buf(r->out, buf, count)) {
            return false;
        }
        if (full >= count) return true;
        if (full) return false;
    }
    return false;
}

static bool same_rope(const chord_rope_shape *a, const chord_rope_shape *b) {
    return a->head_dim == b->head_dim && a->n_rot == b->n_rot && a->freq_base == b->freq_base &&
           a->freq_scale == b->freq_scale && a->neox == b->neox;
}

/* rope(q), rope(k), attention(q, k) for one token -> one kernel */
static bool rope_attn_fusable(cuda_backend *be, const cuda_rec *rq, const cuda_rec *rk,
                              const cuda_rec *a) {
    return rq->op == CREC_ROPE && rk->op == CREC_ROPE && a->op == CREC_ATTN && a->n == 1 &&
           rq->n == 1 && rk->n == 1 && rq->out == a->x && rk->out == a->y &&
           rq->out != rk->out && rq->pos0 == a->pos0 && rk->pos0 == a->pos0 &&
           rq->rs.n_head == a->as.n_head && rk->rs.n_head == a->as.n_head_kv &&
           rq->rs.head_dim == a->as.head_dim && same_rope(&rq->rs, &rk->rs) &&
           rq->rs.n_rot <= rq->rs.head_dim && rq->rs.n_rot / 2 > 0 &&
           cuda_attn_decode_ok(be, &a->as);
}

static bool norm_ok(const cuda_rec *r) {
    const chord_weight *w = r->w[0];
    return r->n == 1 && w && w->dev && w->type == CHORD_TYPE_F32 &&
           w->n_in * w->n_out >= r->dim;
}

static void exec_fused_ops(cuda_backend *be, const cuda_rec *R, int nr, const int *dpos,
                           const int *dtok) {
    for (int i = 0; i < nr; i++) {
        const cuda_rec *r = &R[i];
        const cuda_rec *nx = i + 1 < nr ? &R[i + 1] : NULL;
        int qb = 0;
        switch (r->op) {
        case CREC_RMSNORM:
            if (be->fuse_pro && nx && nx->x == r->out && norm_ok(r) &&
                pro_matmul(nx, r->dim, r->x, r->out)) {
                i++;
                exec_matmul_pro(be, R, nr, &i, r->x, (const float *)r->w[0]->dev, r->eps,
                                r->out);
                continue;
            }
            if (nx && nx->x == r->out && norm_ok(r) && quant_matmul(nx, r->dim, &qb) &&
                r->dim / qb <= 256) { /* cuda_rmsnorm_quant's limit */
                qact xa;
                /* the normed x goes only to the matmul: not stored (7B: 16 KB of stores at
                 * the end of a one-block kernel) */
                float *out = dead_after(R, nr, i + 1, r->out, (size_t)r->dim) ? NULL : r->out;
                if (!cuda_rmsnorm_quant(be, out, r->x, (const float *)r->w[0]->dev, r->dim,
                                        r->eps, qb, &xa))
                    return;
                i++;
                exec_matmul(be, R, nr, &i, &xa);
                continue;
            }
            break;
        case CREC_SWIGLU:
            if (nx && nx->x == r->out && r->count <= (size_t)1 << 30 &&
                quant_matmul(nx, (int64_t)r->count, &qb)) {
                qact xa;
                float *out = dead_after(R, nr, i + 1, r->out, r->count) ? NULL : r->out;
                if (!cuda_swiglu_quant(be, out, r->x, r->y, (int)r->count, qb, &xa)) return;
                i++;
                exec_matmul(be, R, nr, &i, &xa);
                continue;
            }
            break;
        case CREC_ROPE:
            if (i + 2 < nr && rope_attn_fusable(be, r, &R[i + 1], &R[i + 2])) {
                const cuda_rec *a = &R[i + 2];
                chord_kv kv = a->kv;
                /* and the quantization of its output for the next matmul (wo) */
                const cuda_rec *m = i + 3 < nr ? &R[i + 3] : NULL;
                const int64_t n_out = (int64_t)a->as.n_head * a->as.head_dim;
                qact xa;
                if (m && m->x == a->out && quant_matmul(m, n_out, &qb) &&
                    cuda_attn_quant_ok(be, &a->as, qb) &&
                    cuda_qact_view(be, n_out, 1, qb, &xa)) {
                    float *out =
                        dead_after(R, nr, i + 3, a->out, (size_t)n_out) ? NULL : a->out;
                    cuda_attention_decode(be, out, (float *)a->x, a->y, a->z, &kv, a->pos0,
                                          &a->as, &r->rs, dpos, &xa);
                    i += 3;
                    exec_matmul(be, R, nr, &i, &xa);
                    continue;
                }
                cuda_attention_decode(be, a->out, (float *)a->x, a->y, a->z, &kv, a->pos0,
                                      &a->as, &r->rs, dpos, NULL);
                i += 2;
                continue;
            }
            break;
        case CREC_MATMUL:
            if (be->fuse_pro && r->n == 1 && r->w[0] &&
                pro_matmul(r, r->w[0]->n_in, r->x, NULL)) {
                exec_matmul_pro(be, R, nr, &i, r->x, NULL, 0.0f, NULL);
                continue;
            }
            if (r->n == 1) {
                exec_matmul(be, R, nr, &i, NULL);
                continue;
            }
            break;
        default: break;
        }
        cuda_exec_op(be, r, dpos, dtok);
    }
}

/* Launches the recorded ops, fused; dpos / dtok: device inputs (graph) or NULL. */
static void exec_fused(cuda_backend *be, const cuda_rec *R, int nr, const int *dpos,
                       const int *dtok) {
    cudaSetDevice(be->device);
    be->tr_next = 0;
    exec_fused_ops(be, R, nr, dpos, dtok);
}

void cuda_rec_flush(cuda_backend *be) {
    if (!be->rec) return;
    be->rec = false;
    int nr = be->n_recs;
    be->n_recs = 0;
    exec_fused(be, be->recs, nr, NULL, NULL);
}

/* --------------------------------------------------------------- graphs */

/* Can the recorded step be replayed with only the token and position changed? */
static bool graphable(cuda_backend *be, const cuda_rec *R, int nr) {
    for (int i = 0; i < nr; i++) {
        const cuda_rec *r = &R[i];
        if (r->n != 1) return false;
        if (r->op == CREC_GET_ROWS && r->tok != be->step_tok) return false;
        if ((r->op == CREC_ROPE || r->op == CREC_ATTN) && r->pos0 != be->step_pos) return false;
        if (r->op == CREC_ATTN && !cuda_attn_decode_ok(be, &r->as)) return false;
    }
    return nr > 0;
}

static void entry_clear(cuda_graph_entry *e) {
    if (e->exec) cudaGraphExecDestroy(e->exec);
    if (e->pf_plan) cudaFree(e->pf_plan);
    free(e->recs);
    memset(e, 0, sizeof *e);
}

void cuda_graphs_free(cuda_backend *be) {
    be->last_e = NULL;
    if (be->gcache) {
        for (int i = 0; i < GRAPH_CACHE; i++)
            entry_clear(&be->gcache[i]);
        free(be->gcache);
        be->gcache = NULL;
    }
    free(be->recs);
    be->recs = NULL;
    be->n_recs = be->cap_recs = 0;
    if (be->h_in) cudaFreeHost(be->h_in);
    if (be->d_in) cudaFree(be->d_in);
    be->h_in = be->d_in = NULL;
    cuda_pf_free(be);
}

int cuda_graph_stats(cuda_backend *be, int *fails) {
    int n = 0;
    if (be->gcache)
        for (int i = 0; i < GRAPH_CACHE; i++)
            n += be->gcache[i].exec != NULL;
    if (fails) *fails = be->graph_fails;
    return n;
}

static bool graph_setup(cuda_backend *be) {
    if (!be->gcache) {
        be->gcache = (cuda_graph_entry *)calloc(GRAPH_CACHE, sizeof *be->gcache);
        if (!be->gcache) return false;
    }
    if (!be->h_in && cudaMallocHost((void **)&be->h_in, 4 * sizeof(int)) != cudaSuccess) {
        (void)cudaGetLastError();
        be->h_in = NULL;
        return false;
    }
    if (!be->d_in && cudaMalloc((void **)&be->d_in, 4 * sizeof(int)) != cudaSuccess) {
        (void)cudaGetLastError();
        be->d_in = NULL;
        return false;
    }
    return true;
}

/* Grows the activation scratch to what the step needs, so that nothing is allocated
 * (or the stream synchronized) while capturing. */
static void presize_scratch(cuda_backend *be, const cuda_rec *R, int nr) {
    size_t need = 0;
    for (int i = 0; i < nr; i++) {
        if (R[i].op != CREC_MATMUL) continue;
        for (int k = 0; k < R[i].n_w; k++) {
            const chord_weight *w = R[i].w[k];
            if (!w || !cuda_type_ok(w->type) || type_is_float(w->type)) continue;
            size_t b = cuda_qact_bytes(w->n_in, R[i].n, act_block(w->type));
            need = b > need ? b : need;
        }
    }
    if (need) cuda_scratch_get(be, CUDA_SCRATCH_XQ, need);
}

static cuda_graph_entry *find_graph(cuda_backend *be, const cuda_rec *R, int nr) {
    for (int i = 0; i < GRAPH_CACHE; i++) {
        cuda_graph_entry *e = &be->gcache[i];
        if (!e->exec) continue;
        if (e->gen != be->scratch_gen) {
            entry_clear(e); /* made with a scratch buffer that is gone */
            continue;
        }
        if (e->nr == nr && same_key(e->recs, R, nr)) return e;
    }
    return NULL;
}

static cuda_graph_entry *capture_graph(cuda_backend *be, const cuda_rec *R, int nr) {
    cudaGraph_t g = NULL;
    cudaGraphExec_t ex = NULL;
    void *plan = NULL;
    if (cuda_pf_setup(be) && cudaMalloc(&plan, cuda_pf_plan_bytes()) != cudaSuccess) {
        (void)cudaGetLastError(); /* no room: no prefetch */
        plan = NULL;
    }
    if (cudaStreamBeginCapture(be->stream, cudaStreamCaptureModeRelaxed) == cudaSuccess) {
        if (plan) cuda_pf_begin(be);
        exec_fused(be, R, nr, be->d_in + 1, be->d_in);
        if (plan) cuda_pf_end(be, plan);
        cudaError_t e = cudaStreamEndCapture(be->stream, &g);
        if (e == cudaSuccess && be->err_code == CHORD_OK && g &&
            cudaGraphInstantiate(&ex, g, 0) != cudaSuccess)
            ex = NULL;
    }
    be->pf_collect = false;
    if (g) cudaGraphDestroy(g);
    if (plan && be->pf_n == 0) { /* no prefetcher in this graph */
        cudaFree(plan);
        plan = NULL;
    }
    if (ex && plan && !cuda_pf_upload(be, plan)) {
        cudaGraphExecDestroy(ex);
        ex = NULL;
    }
    if (!ex) {
        if (plan) cudaFree(plan);
        return NULL;
    }
    cuda_graph_entry *slot = NULL;
    for (int i = 0; i < GRAPH_CACHE && !slot; i++)
        if (!be->gcache[i].exec) slot = &be->gcache[i];
    if (!slot) { /* least recently used */
        slot = &be->gcache[0];
        for (int i = 1; i < GRAPH_CACHE; i++)
            if (be->gcache[i].used < slot->used) slot = &be->gcache[i];
        entry_clear(slot);
    }
    slot->recs = (cuda_rec *)malloc((size_t)nr * sizeof(cuda_rec));
    if (!slot->recs) {
        cudaGraphExecDestroy(ex);
        if (plan) cudaFree(plan);
        return NULL;
    }
    slot->pf_plan = plan;
    memcpy(slot->recs, R, (size_t)nr * sizeof(cuda_rec));
    slot->nr = nr;
    slot->exec = ex;
    slot->gen = be->scratch_gen;
    slot->serial = ++be->gserial;
    return slot;
}

/* Launches graph e for token tok at position pos. */
static void replay(cuda_backend *be, cuda_graph_entry *e, int tok, int pos) {
    e->used = ++be->gclock;
    be->h_in[0] = tok;
    be->h_in[1] = pos;
    CUDA_CHECK(be, cudaMemcpyAsync(be->d_in, be->h_in, 2 * sizeof(int), cudaMemcpyHostToDevice,
                                   be->stream));
    CUDA_CHECK(be, cudaGraphLaunch(e->exec, be->stream));
}

bool cuda_step_begin(chord_backend *b, uint64_t key, const int32_t *tokens, int n, int pos0) {
    cuda_backend *be = (cuda_backend *)b;
    cuda_rec_flush(be);
    if (be->graphs == 0 || n != 1 || !tokens) return false;
    /* the same context's next step: its last graph, if it still holds and the rope table
     * covers the position (the ops need not be issued again) */
    cuda_graph_entry *e = be->last_e;
    if (be->graphs == 1 && key == be->last_key && e && e->exec &&
        e->serial == be->last_serial && e->gen == be->scratch_gen && be->err_code == CHORD_OK &&
        pos0 < be->rope_npos && be->fast_steps) {
        cudaSetDevice(be->device);
        replay(be, e, tokens[0], pos0);
        return true;
    }
    be->rec = true;
    be->n_recs = 0;
    be->step_tok = tokens[0];
    be->step_pos = pos0;
    be->step_key = key;
    return false; /* the ops are issued (and recorded); step_end launches them */
}

void cuda_step_end(chord_backend *b) {
    cuda_backend *be = (cuda_backend *)b;
    if (!be->rec) return;
    be->rec = false;
    const int nr = be->n_recs;
    be->n_recs = 0;
    const cuda_rec *R = be->recs;
    cudaSetDevice(be->device);
    be->last_e = NULL;
    if (be->graphs != 1 || be->err_code != CHORD_OK || !graphable(be, R, nr) ||
        !graph_setup(be)) {
        exec_fused(be, R, nr, NULL, NULL);
        return;
    }
    presize_scratch(be, R, nr);
    /* a graph reads its position from d_in: the rope table must already cover it (a
     * table made now bumps scratch_gen, and find_graph drops the graphs it outdates) */
    for (int i = 0; i < nr && be->err_code == CHORD_OK; i++)
        if (R[i].op == CREC_ROPE) cuda_rope_table(be, &R[i].rs, be->step_pos + R[i].n, true);
    if (be->err_code != CHORD_OK) return;
    cuda_graph_entry *e = find_graph(be, R, nr);
    if (!e) {
        e = capture_graph(be, R, nr);
        if (!e) {
            /* capture failed: forget its errors, run this step (and later ones) without */
            (void)cudaGetLastError();
            be->err_code = CHORD_OK;
            be->graph_fails++;
            be->graphs = 2;
            exec_fused(be, R, nr, NULL, NULL);
            return;
        }
    }
    replay(be, e, be->step_tok, be->step_pos);
    be->last_key = be->step_key;
    be->last_e = e;
    be->last_serial = e->serial;
}

/* ------------------------------------------------------------ for tests */

extern "C" int cuda_set_fuse(chord_backend *b, int on) {
    cuda_backend *be = (cuda_backend *)b;
    int old = be->fuse_pro;
    cudaStreamSynchronize(be->stream);
    if (be->gcache)
        for (int i = 0; i < GRAPH_CACHE; i++)
            entry_clear(&be->gcache[i]);
    be->fuse_pro = on != 0;
    return old;
}

extern "C" void cuda_graphs_drop(chord_backend *b);

/* One replay of the latest step graph with the trace on: per kernel its kind and first
 * start, release, end, last start, mark (-1: none) in us from the first start. Returns
 * the number of kernels (or -1). */
extern "C" int cuda_trace_step(chord_backend *b, char *kinds, double *t4, int max) {
    cuda_backend *be = (cuda_backend *)b;
    cuda_graph_entry *e = NULL;
    if (be->gcache)
        for (int i = 0; i < GRAPH_CACHE; i++)
            if (be->gcache[i].exec && (!e || be->gcache[i].used > e->used)) e = &be->gcache[i];
    if (!e || !be->tr) return -1;
    static const unsigned long long init[TRACE_WORDS] = {~0ull, ~0ull, 0ull, 0ull, 0ull};
    unsigned long long *h = (unsigned long long *)malloc(TRACE_WORDS * TRACE_SLOTS * 8);
    if (!h) return -1;
    for (int i = 0; i < TRACE_SLOTS; i++)
        memcpy(h + TRACE_WORDS * i, init, sizeof init);
    int n = be->tr_next < max ? be->tr_next : max;
    bool ok = cudaMemcpy(be->tr, h, TRACE_WORDS * TRACE_SLOTS * 8, cudaMemcpyHostToDevice) ==
                  cudaSuccess &&
              cudaGraphLaunch(e->exec, be->stream) == cudaSuccess &&
              cudaStreamSynchronize(be->stream) == cudaSuccess &&
              cudaMemcpy(h, be->tr, TRACE_WORDS * TRACE_SLOTS * 8, cudaMemcpyDeviceToHost) ==
                  cudaSuccess;
    if (ok) {
        unsigned long long t0 = ~0ull;
        for (int i = 0; i < n; i++)
            t0 = h[TRACE_WORDS * i] < t0 ? h[TRACE_WORDS * i] : t0;
        for (int i = 0; i < n; i++) {
            kinds[i] = be->tr_kind[i];
            for (int j = 0; j < TRACE_WORDS; j++) {
                const unsigned long long v = h[TRACE_WORDS * i + j];
                t4[TRACE_WORDS * i + j] = v == ~0ull || v == 0 ? -1.0 : (double)(v - t0) * 1e-3;
            }
        }
    }
    free(h);
    return ok ? n : -1;
}

/* Experiment knobs that are on or off: name and the backend field. */
static int *tune_flag(cuda_backend *be, const char *knob) {
    const struct {
        const char *name;
        int *field;
    } flags[] = {{"waves", &be->mv_waves},
                 {"pairs", &be->mv_pairs},
                 {"q4ksplit", &be->q4k_split},
                 {"pairtrig", &be->mv_ptrig},
                 {"q4klong", &be->q4k_long}};
    for (size_t i = 0; i < sizeof flags / sizeof flags[0]; i++)
        if (!strcmp(knob, flags[i].name)) return flags[i].field;
    return NULL;
}

extern "C" int cuda_tune(chord_backend *b, const char *knob, int value) {
    cuda_backend *be = (cuda_backend *)b;
    cuda_graphs_drop(b);
    int old = -1;
    if (int *flag = tune_flag(be, knob)) {
        old = *flag;
        *flag = value != 0;
    } else if (!strcmp(knob, "fast")) {
        old = be->fast_steps;
        be->fast_steps = value != 0;
    } else if (!strcmp(knob, "prefetch")) { /* MiB ahead, 0: off */
        old = (int)(be->pf_window >> 20);
        be->pf_window = value > 0 ? (size_t)value << 20 : 0;
    } else if (!strcmp(knob, "attnquant")) {
        old = be->attn_quant;
        be->attn_quant = value < 0 ? 0 : value > 2 ? 2 : value;
    } else if (!strcmp(knob, "early")) {
        old = be->early_trigger;
        be->early_trigger = value & 7; /* CUDA_EARLY_* bits */
    } else if (!strcmp(knob, "pfblocks")) {
        old = be->pf_blocks;
        be->pf_blocks = value < 1 ? 1 : value > 1024 ? 1024 : value;
    } else if (!strcmp(knob, "pfchunk")) { /* KiB per lane and prefetch */
        old = be->pf_chunk >> 10;
        be->pf_chunk = (value < 1 ? 1 : value > 1024 ? 1024 : value) << 10;
    } else if (!strcmp(knob, "kstage")) {
        old = be->attn_kstage;
        be->attn_kstage = value < 0 ? 0 : value > 4096 ? 4096 : value;
    } else if (!strcmp(knob, "q4krows")) {
        old = be->q4k_rows;
        be->q4k_rows = value >= 1 && value <= 3 ? value : 3;
    } else if (!strcmp(knob, "persist")) {
        old = be->mv_persist;
        be->mv_persist = value < 0 ? 0 : value;
    }
    return old;
}

extern "C" void cuda_graphs_drop(chord_backend *b) {
    cuda_backend *be = (cuda_backend *)b;
    cudaStreamSynchronize(be->stream);
    if (be->gcache)
        for (int i = 0; i < GRAPH_CACHE; i++)
            entry_clear(&be->gcache[i]);
}

/* GPU time of the most recently launched step graph: reps launches back to back. */
extern "C" chord_status cuda_graph_bench(chord_backend *b, int reps, double *us,
                                         chord_error *err) {
    cuda_backend *be = (cuda_backend *)b;
    cuda_graph_entry *e = NULL;
    if (be->gcache)
        for (int i = 0; i < GRAPH_CACHE; i++)
            if (be->gcache[i].exec && (!e || be->gcache[i].used > e->used)) e = &be->gcache[i];
    if (!e || reps <= 0) return chord_fail(err, CHORD_E_INVALID_ARG, "no step graph to time");
    cudaSetDevice(be->device);
    cudaEvent_t a = NULL, c = NULL;
    float ms = 0;
    if (CUDA_CHECK(be, cudaEventCreate(&a)) && CUDA_CHECK(be, cudaEventCreate(&c))) {
        CUDA_CHECK(be, cudaGraphLaunch(e->exec, be->stream)); /* warm */
        CUDA_CHECK(be, cudaEventRecord(a, be->stream));
        for (int r = 0; r < reps; r++)
            CUDA_CHECK(be, cudaGraphLaunch(e->exec, be->stream));
        CUDA_CHECK(be, cudaEventRecord(c, be->stream));
        CUDA_CHECK(be, cudaEventSynchronize(c));
        CUDA_CHECK(be, cudaEventElapsedTime(&ms, a, c));
    }
    if (a) cudaEventDestroy(a);
    if (c) cudaEventDestroy(c);
    *us = (double)ms * 1000.0 / reps;
    if (be->err_code == CHORD_OK) return CHORD_OK;
    chord_status s = chord_fail(err, be->err_code, "%s", be->err_msg);
    be->err_code = CHORD_OK;
    return s;
}
