/* GPU first, CPU fallback: place layers, upload their weights, explain any fallback. */
#include "devices.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "error.h"

#ifdef CHORD_HAVE_CUDA
static size_t layer_bytes(const chord_layer *L) {
    return L->attn_norm.nbytes + L->wq.nbytes + L->wk.nbytes + L->wv.nbytes + L->wo.nbytes +
           L->ffn_norm.nbytes + L->w_gate.nbytes + L->w_up.nbytes + L->w_down.nbytes;
}

static chord_status upload_layer(chord_backend *g, chord_layer *L, chord_error *err) {
    chord_weight *ws[] = {&L->attn_norm, &L->wq,   &L->wk,   &L->wv,    &L->wo,
                          &L->ffn_norm,  &L->w_gate, &L->w_up, &L->w_down};
    for (size_t i = 0; i < sizeof ws / sizeof ws[0]; i++) {
        chord_status s = g->ops->upload(g, ws[i], err);
        if (s != CHORD_OK) return s;
    }
    return CHORD_OK;
}

static bool types_supported(chord_backend *g, const chord_model *m, int n) {
    if (!g->ops->supports_type(g, m->tok_embd.type) || !g->ops->supports_type(g, m->output.type))
        return false;
    for (int l = 0; l < n; l++) {
        const chord_layer *L = &m->layers[l];
        const chord_weight *ws[] = {&L->wq, &L->wk, &L->wv, &L->wo, &L->w_gate, &L->w_up, &L->w_down};
        for (size_t i = 0; i < sizeof ws / sizeof ws[0]; i++)
            if (!g->ops->supports_type(g, ws[i]->type)) return false;
    }
    return true;
}

/* Puts layers [0, n) (and, with all of them, the output head) on the GPU. */
static chord_status try_gpu(chord_model *m, const chord_model_params *p) {
    chord_error e = {0};
    chord_backend *g = NULL;
    const chord_hparams *hp = &m->hp;
    if (chord_backend_cuda_new(&g, &e) != CHORD_OK) {
        snprintf(m->backend_notice, sizeof m->backend_notice, "GPU not used (%.200s); running on the CPU",
                 e.message);
        return CHORD_OK;
    }
    int want = p->n_gpu_layers < 0 || p->n_gpu_layers > hp->n_layer ? hp->n_layer : p->n_gpu_layers;
    if (!types_supported(g, m, want)) {
        snprintf(m->backend_notice, sizeof m->backend_notice,
                 "GPU not used (a weight type has no CUDA kernel); running on the CPU");
        g->ops->destroy(g);
        return CHORD_OK;
    }
    /* Budget: weights plus a margin for the KV cache and activations. */
    size_t free_mem = chord_backend_cuda_free_mem(g), margin = (size_t)512 << 20;
    size_t budget = free_mem > margin ? free_mem - margin : 0;
    size_t fixed = m->tok_embd.nbytes + m->output_norm.nbytes +
                   (m->output.host != m->tok_embd.host ? m->output.nbytes : 0);
    size_t used = fixed;
    int fit = 0;
    while (fit < want && used + layer_bytes(&m->layers[fit]) <= budget) used += layer_bytes(&m->layers[fit++]);
    if (fit == 0) {
        snprintf(m->backend_notice, sizeof m->backend_notice,
                 "GPU not used (%zu MiB free is too small for this model); running on the CPU",
                 free_mem >> 20);
        g->ops->destroy(g);
        return CHORD_OK;
    }
    chord_status s = g->ops->upload(g, &m->tok_embd, &e);
    for (int l = 0; l < fit && s == CHORD_OK; l++) {
        s = upload_layer(g, &m->layers[l], &e);
        if (p->progress) p->progress((float)(l + 1) / (float)fit, p->progress_user);
    }
    bool all = fit == hp->n_layer;
    if (s == CHORD_OK && all) {
        s = g->ops->upload(g, &m->output_norm, &e);
        if (s == CHORD_OK) {
            if (m->output.host == m->tok_embd.host) m->output.dev = m->tok_embd.dev;
            else s = g->ops->upload(g, &m->output, &e);
        }
    }
    if (s != CHORD_OK) {
        snprintf(m->backend_notice, sizeof m->backend_notice,
                 "GPU not used (uploading weights failed: %.160s); running on the CPU", e.message);
        g->ops->destroy(g); /* frees every device copy */
        m->tok_embd.dev = m->output.dev = m->output_norm.dev = NULL;
        for (int l = 0; l < hp->n_layer; l++) {
            chord_layer *L = &m->layers[l];
            chord_weight *ws[] = {&L->attn_norm, &L->wq, &L->wk, &L->wv, &L->wo,
                                  &L->ffn_norm, &L->w_gate, &L->w_up, &L->w_down};
            for (size_t i = 0; i < sizeof ws / sizeof ws[0]; i++) ws[i]->dev = NULL;
        }
        return CHORD_OK;
    }
    pthread_mutex_t *mu = malloc(sizeof *mu);
    if (!mu) {
        g->ops->destroy(g);
        return CHORD_E_NOMEM;
    }
    pthread_mutex_init(mu, NULL);
    m->gpu_lock = mu;
    m->gpu = g;
    for (int l = 0; l < fit; l++) m->layer_be[l] = 1;
    m->out_be = all ? 1 : 0;
    snprintf(m->backend_desc, sizeof m->backend_desc, "%s, %d/%d layers%s", g->desc, fit, hp->n_layer,
             all ? "" : " (rest on cpu)");
    return CHORD_OK;
}
#endif

chord_status devices_setup(chord_model *m, const chord_model_params *p, chord_error *err) {
    m->layer_be = calloc((size_t)m->hp.n_layer, sizeof *m->layer_be);
    if (!m->layer_be) return chord_fail(err, CHORD_E_NOMEM, "out of memory");
    m->out_be = 0;
    snprintf(m->backend_desc, sizeof m->backend_desc, "cpu");
#ifdef CHORD_HAVE_CUDA
    if (p->n_gpu_layers != 0 && try_gpu(m, p) != CHORD_OK)
        return chord_fail(err, CHORD_E_NOMEM, "out of memory");
#else
    if (p->n_gpu_layers > 0)
        snprintf(m->backend_notice, sizeof m->backend_notice,
                 "GPU not used (chord was built without CUDA); running on the CPU");
#endif
    if (p->progress) p->progress(1.0f, p->progress_user);
    return CHORD_OK;
}

void devices_teardown(chord_model *m) {
    if (m->gpu) m->gpu->ops->destroy(m->gpu);
    if (m->gpu_lock) {
        pthread_mutex_destroy(m->gpu_lock);
        free(m->gpu_lock);
    }
    free(m->layer_be);
}
