/* Every op of the CUDA backend, through the vtable, against the CPU backend (and, for the
 * matmuls, against a double-precision reference that applies the same activation
 * rounding the GPU kernels use: int8 per 32 for decode of quantized weights, f16 / bf16
 * for the tensor-core prefill). Random data, odd sizes, and sentinel padding around
 * every output buffer to catch out-of-bounds or missing writes. rmsnorm, rope, swiglu,
 * add and attention must equal the CPU backend bit for bit (the golden models are
 * chaotic: one ulp flips an int8 activation rounding downstream), except the tensor-core
 * prefill attention (head_dim 64 / 128, from 64 tokens; CHORD_CUDA_ATTN=exact turns it
 * off, =flash on from 2 tokens), which must stay within 3e-3 relative L2 of the CPU.
 * First, on the host: the shared formulas of src/cuda/exact_math.h against the CPU's.
 * Without a CUDA device: prints "skipped: no CUDA device" and passes. */
#include <float.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend.h"
#include "quant/types.h"
#include "testutil.h"
#ifdef CHORD_HAVE_CUDA
#include "cpu/exp_ref.h"
#include "cuda/exact_math.h"
#endif

#ifndef CHORD_HAVE_CUDA
int main(void) {
    printf("skipped: no CUDA device (chord built without CUDA)\n");
    return 0;
}
#else

static chord_backend *gpu, *cpu;

/* ------------------------------------------------------------ helpers */

static uint64_t rng = 0x9E3779B97F4A7C15ull;
static uint64_t rnext(void) {
    rng ^= rng >> 12;
    rng ^= rng << 25;
    rng ^= rng >> 27;
    return rng * 2685821657736338717ull;
}
static float runif(void) {
    return (float)((double)(rnext() >> 11) / 9007199254740992.0 * 2.0 - 1.0);
}
static float rnorm(void) {
    float s = 0;
    for (int i = 0; i < 4; i++)
        s += runif();
    return s * 0.8660254f; /* var(sum of 4 U(-1,1)) = 4/3 */
}

#define PAD 64
static const uint32_t SENTINEL = 0x7fa5a5a5u; /* a NaN nothing computes */

typedef struct gbuf {
    float *base, *p;
    size_t n;
} gbuf;

static gbuf galloc(size_t n) {
    gbuf b = {0};
    b.n = n;
    size_t tot = n + 2 * PAD;
    b.base = gpu->ops->alloc(gpu, tot * sizeof(float));
    CHECK(b.base != NULL, "alloc %zu floats", tot);
    if (!b.base) exit(1);
    uint32_t *h = malloc(tot * sizeof *h);
    for (size_t i = 0; i < tot; i++)
        h[i] = SENTINEL;
    gpu->ops->from_host(gpu, b.base, h, tot * sizeof(float));
    free(h);
    b.p = b.base + PAD;
    return b;
}
static void gfree(gbuf *b) {
    gpu->ops->free(gpu, b->base);
}
/* Back to all sentinels (before each op, so earlier calls' writes do not count). */
static void gfill(gbuf *b) {
    size_t tot = b->n + 2 * PAD;
    uint32_t *h = malloc(tot * sizeof *h);
    for (size_t i = 0; i < tot; i++)
        h[i] = SENTINEL;
    gpu->ops->from_host(gpu, b->base, h, tot * sizeof(float));
    free(h);
}
static void gput(gbuf *b, const float *h, size_t n) {
    gpu->ops->from_host(gpu, b->p, h, n * sizeof(float));
}

/* Copies the first n floats back; checks the pads and that all n were written. */
static void gget(gbuf *b, float *h, size_t n, const char *what) {
    size_t tot = b->n + 2 * PAD;
    uint32_t *all = malloc(tot * sizeof *all);
    gpu->ops->to_host(gpu, all, b->base, tot * sizeof(float));
    chord_error err = {0};
    chord_status s = gpu->ops->sync(gpu, &err);
    CHECK(s == CHORD_OK, "%s: sync: %s", what, err.message);
    size_t bad_pad = 0, unwritten = 0;
    for (size_t i = 0; i < PAD; i++)
        bad_pad += all[i] != SENTINEL;
    for (size_t i = PAD + n; i < tot; i++)
        bad_pad += all[i] != SENTINEL;
    for (size_t i = 0; i < n; i++)
        unwritten += all[PAD + i] == SENTINEL;
    CHECK(bad_pad == 0, "%s: %zu writes outside the output", what, bad_pad);
    CHECK(unwritten == 0, "%s: %zu outputs not written", what, unwritten);
    memcpy(h, all + PAD, n * sizeof(float));
    free(all);
}

static double rel_err(const float *a, const double *ref, size_t n) {
    double num = 0, den = 0;
    for (size_t i = 0; i < n; i++) {
        double d = (double)a[i] - ref[i];
        if (isnan(a[i])) return INFINITY;
        num += d * d;
        den += ref[i] * ref[i];
    }
    return den > 0 ? sqrt(num / den) : sqrt(num);
}
static double rel_err_f(const float *a, const float *b, size_t n) {
    double *r = malloc(n * sizeof *r);
    for (size_t i = 0; i < n; i++)
        r[i] = b[i];
    double e = rel_err(a, r, n);
    free(r);
    return e;
}

/* Elements whose bits differ (NaN equals NaN). */
static size_t n_diff(const float *a, const float *b, size_t n) {
    size_t d = 0;
    for (size_t i = 0; i < n; i++) {
        uint32_t x, y;
        memcpy(&x, &a[i], 4);
        memcpy(&y, &b[i], 4);
        d += x != y && !(isnan(a[i]) && isnan(b[i]));
    }
    return d;
}

/* ------------------------------------------------- shared formulas (host) */

/* exact_math.h's host path runs the device formulas with the same operations (fmaf for
 * __fmaf_rn, ldexpf for the exact scaling): it must give cpu_exp1's bits everywhere. */
static void test_exact_math_host(void) {
    printf("exact_math.h vs the CPU's formulas\n");
    size_t bad = 0, n = 0;
    for (uint64_t u = 0; u < (1ull << 32);
         u += 251) { /* every sign, exponent, many mantissas */
        uint32_t b = (uint32_t)u;
        float x;
        memcpy(&x, &b, 4);
        float a = cpu_exp1(x), c = xm_exp(x);
        bad += n_diff(&a, &c, 1);
        n++;
    }
    for (float x = -104.0f; x < 90.0f; x += 0.0009765625f) { /* the range that is not 0 / inf */
        float a = cpu_exp1(x), c = xm_exp(x);
        bad += n_diff(&a, &c, 1);
        n++;
    }
    CHECK(bad == 0, "xm_exp: %zu of %zu inputs differ from cpu_exp1", bad, n);
    bad = 0;
    for (int i = 0; i < 200000; i++) {
        float g = rnorm() * 12, u = rnorm(), a = cpu_swiglu1(g, u), c = xm_swiglu(g, u);
        bad += n_diff(&a, &c, 1);
    }
    CHECK(bad == 0, "xm_swiglu: %zu differ from cpu_swiglu1", bad);
    printf("  exp: %zu inputs, swiglu: 200000\n", n);
}

/* --------------------------------------------------------------- weights */

static const chord_type TYPES[] = {
    CHORD_TYPE_F32,  CHORD_TYPE_F16,  CHORD_TYPE_BF16, CHORD_TYPE_Q4_0, CHORD_TYPE_Q4_1,
    CHORD_TYPE_Q5_0, CHORD_TYPE_Q5_1, CHORD_TYPE_Q8_0, CHORD_TYPE_Q2_K, CHORD_TYPE_Q3_K,
    CHORD_TYPE_Q4_K, CHORD_TYPE_Q5_K, CHORD_TYPE_Q6_K,
};
#define N_TYPES (sizeof TYPES / sizeof TYPES[0])

static bool is_float_type(chord_type t) {
    return t == CHORD_TYPE_F32 || t == CHORD_TYPE_F16 || t == CHORD_TYPE_BF16;
}

/* Offsets of the half-precision scale fields in a block, for random blocks. */
static int half_fields(chord_type t, int off[2]) {
    switch (t) {
    case CHORD_TYPE_Q4_0:
    case CHORD_TYPE_Q5_0:
    case CHORD_TYPE_Q8_0: off[0] = 0; return 1;
    case CHORD_TYPE_Q4_1:
    case CHORD_TYPE_Q5_1:
    case CHORD_TYPE_Q4_K:
    case CHORD_TYPE_Q5_K: off[0] = 0, off[1] = 2; return 2;
    case CHORD_TYPE_Q2_K: off[0] = 80, off[1] = 82; return 2;
    case CHORD_TYPE_Q3_K: off[0] = 108; return 1;
    case CHORD_TYPE_Q6_K: off[0] = 208; return 1;
    default: return 0;
    }
}

typedef struct tw {
    chord_weight cw; /* CPU: reads host */
    chord_weight gw; /* GPU: uploaded */
    float *deq;      /* [n_out][n_in] reference dequantization */
    void *data;
} tw;

static tw make_weight(chord_type t, int64_t n_out, int64_t n_in) {
    tw w;
    memset(&w, 0, sizeof w);
    const chord_type_traits *tr = chord_type_get(t);
    size_t rs = chord_row_size(t, n_in), nbytes = rs * (size_t)n_out;
    uint8_t *d = malloc(nbytes);
    if (is_float_type(t) || t == CHORD_TYPE_Q8_0) {
        float *row = malloc((size_t)n_in * sizeof *row);
        float sc = 1.0f / sqrtf((float)n_in);
        for (int64_t o = 0; o < n_out; o++) {
            for (int64_t i = 0; i < n_in; i++)
                row[i] = rnorm() * sc;
            tr->from_float(row, d + (size_t)o * rs, n_in);
        }
        free(row);
    } else {
        for (size_t i = 0; i < nbytes; i++)
            d[i] = (uint8_t)(rnext() >> 56);
        int off[2], nf = half_fields(t, off);
        size_t nblk = nbytes / tr->type_size;
        for (size_t b = 0; b < nblk; b++)
            for (int f = 0; f < nf; f++) {
                float v = (0.5f + 0.5f * (runif() + 1.0f)) * 0.004f;
                if (f == 1 && (t == CHORD_TYPE_Q4_1 || t == CHORD_TYPE_Q5_1))
                    v = runif() * 0.05f;
                chord_half h = chord_float_to_half(v);
                memcpy(d + b * tr->type_size + off[f], &h, 2);
            }
    }
    w.data = d;
    w.deq = malloc((size_t)n_out * n_in * sizeof(float));
    for (int64_t o = 0; o < n_out; o++)
        tr->to_float(d + (size_t)o * rs, w.deq + (size_t)o * n_in, n_in);
    chord_weight base = {.name = "test",
                         .type = t,
                         .n_in = n_in,
                         .n_out = n_out,
                         .host = d,
                         .dev = NULL,
                         .nbytes = nbytes};
    w.cw = base;
    w.gw = base;
    chord_error err = {0};
    chord_status s = gpu->ops->upload(gpu, &w.gw, &err);
    CHECK(s == CHORD_OK && w.gw.dev, "upload %s: %s", tr->name, err.message);
    return w;
}
static void free_weight(tw *w) {
    free(w->data);
    free(w->deq);
    /* device copies are freed with the backend */
}

/* The activation rounding of the GPU for quantized weights: int8 per 32 (per 256 for
 * K-quants), d = amax / 127, q = rint(x * (127 / amax)); returns d * q. Per 32, d is
 * rounded to half (llama.cpp's Q8_0), and the min term of Q4_1 / Q5_1 uses
 * s = half(d * sum q): sdiff[b] = s - half(d) * sum q is what that adds. */
static void q8_emulate(chord_type t, const float *x, float *out, int64_t n, float *sdiff) {
    const int qb = chord_type_get(t)->block_size == 256 ? 256 : 32;
    for (int64_t b = 0; b < n / qb; b++) {
        float amax = 0;
        for (int j = 0; j < qb; j++)
            amax = fmaxf(amax, fabsf(x[qb * b + j]));
        float d = amax / 127.0f, id = amax > 0 ? 127.0f / amax : 0.0f;
        float dq = qb == 32 ? chord_half_to_float(chord_float_to_half(d)) : d;
        int sum = 0;
        for (int j = 0; j < qb; j++) {
            int q = (int)lrintf(x[qb * b + j] * id);
            sum += q;
            out[qb * b + j] = dq * (float)q;
        }
        if (sdiff && qb == 32)
            sdiff[b] =
                chord_half_to_float(chord_float_to_half(d * (float)sum)) - dq * (float)sum;
    }
}

/* ref[t][o] = sum_i f(W[o][i]) * g(x[t][i]) in double. mode 0: plain; 1: f16 both;
 * 2: bf16 both. */
static void ref_matmul(const tw *w, const float *x, int n, int mode, double *ref) {
    int64_t ni = w->cw.n_in, no = w->cw.n_out;
    float *xr = malloc((size_t)n * ni * sizeof *xr), *wr = malloc((size_t)ni * sizeof *wr);
    for (size_t i = 0; i < (size_t)n * ni; i++)
        xr[i] = mode == 1   ? chord_half_to_float(chord_float_to_half(x[i]))
                : mode == 2 ? chord_bf16_to_float(chord_float_to_bf16(x[i]))
                            : x[i];
    for (int64_t o = 0; o < no; o++) {
        const float *wrow = w->deq + (size_t)o * ni;
        for (int64_t i = 0; i < ni; i++)
            wr[i] = mode == 1   ? chord_half_to_float(chord_float_to_half(wrow[i]))
                    : mode == 2 ? chord_bf16_to_float(chord_float_to_bf16(wrow[i]))
                                : wrow[i];
        for (int t = 0; t < n; t++) {
            double s = 0;
            const float *xt = xr + (size_t)t * ni;
            for (int64_t i = 0; i < ni; i++)
                s += (double)wr[i] * xt[i];
            ref[(size_t)t * no + o] = s;
        }
    }
    free(xr);
    free(wr);
}

/* ---------------------------------------------------------------- matmul */

static void test_matmul_case(chord_type t, int64_t n_out, int64_t n_in, const int *ns,
                             int n_ns) {
    const char *tn = chord_type_name(t);
    tw w = make_weight(t, n_out, n_in);
    if (!w.gw.dev) {
        free_weight(&w);
        return;
    }
    int nmax = 0;
    for (int i = 0; i < n_ns; i++)
        nmax = ns[i] > nmax ? ns[i] : nmax;
    float *x = malloc((size_t)nmax * n_in * sizeof *x);
    for (size_t i = 0; i < (size_t)nmax * n_in; i++)
        x[i] = rnorm() * (1.0f + 3.0f * (i % 7 == 0));
    gbuf gx = galloc((size_t)nmax * n_in), gy = galloc((size_t)nmax * n_out);
    gput(&gx, x, (size_t)nmax * n_in);
    float *y = malloc((size_t)nmax * n_out * sizeof *y),
          *yc = malloc((size_t)nmax * n_out * sizeof *yc);
    double *ref = malloc((size_t)nmax * n_out * sizeof *ref);
    for (int k = 0; k < n_ns; k++) {
        int n = ns[k];
        char what[96];
        snprintf(what, sizeof what, "matmul %s %lldx%lld n=%d", tn, (long long)n_out,
                 (long long)n_in, n);
        float *ys[1] = {gy.p}, *ycs[1] = {yc};
        const chord_weight *gws[1] = {&w.gw}, *cws[1] = {&w.cw};
        gfill(&gy);
        gpu->ops->matmul(gpu, 1, ys, gws, gx.p, n);
        gget(&gy, y, (size_t)n * n_out, what);
        cpu->ops->matmul(cpu, 1, ycs, cws, x, n);
        double e_cpu = rel_err_f(y, yc, (size_t)n * n_out);
        /* the GPU's rounding of the inputs: quantized weights see the CPU's int8
         * activations (decode and the int8 prefill are exact integer dots); the F16 / BF16
         * tensor-core prefill rounds both operands to f16 / bf16; F32 is float */
        bool quant = !is_float_type(t);
        bool tensor_cores = !quant && n > 1 && n_in % 32 == 0 && t != CHORD_TYPE_F32;
        int mode = tensor_cores ? (t == CHORD_TYPE_BF16 ? 2 : 1) : 0;
        float *xe = malloc((size_t)n * n_in * sizeof *xe);
        float *sd = calloc((size_t)n * (n_in / 32 + 1), sizeof *sd);
        for (int r = 0; r < n; r++) {
            if (quant)
                q8_emulate(t, x + (size_t)r * n_in, xe + (size_t)r * n_in, n_in,
                           sd + (size_t)r * (n_in / 32));
            else
                memcpy(xe + (size_t)r * n_in, x + (size_t)r * n_in, (size_t)n_in * sizeof *xe);
        }
        ref_matmul(&w, xe, n, mode, ref);
        if (t == CHORD_TYPE_Q4_1 || t == CHORD_TYPE_Q5_1) { /* m * (s - d * sum) per block */
            const size_t ts = chord_type_get(t)->type_size, rs = chord_row_size(t, n_in);
            for (int r = 0; r < n; r++)
                for (int64_t o = 0; o < n_out; o++)
                    for (int64_t b = 0; b < n_in / 32; b++) {
                        chord_half mh;
                        memcpy(&mh,
                               (const uint8_t *)w.data + (size_t)o * rs + (size_t)b * ts + 2,
                               2);
                        ref[(size_t)r * n_out + o] +=
                            (double)chord_half_to_float(mh) * sd[(size_t)r * (n_in / 32) + b];
                    }
        }
        free(xe);
        free(sd);
        /* vs the CPU backend: its activation scales per 32 are float (the GPU's are half,
         * as llama.cpp's), a difference of ~1e-4 */
        double tol_emul = 1e-5, tol_cpu = mode == 2                                      ? 1e-2
                                          : mode == 1                                    ? 3e-3
                                          : quant && chord_type_get(t)->block_size == 32 ? 3e-3
                                                                                         : 1e-5;
        double e_emul = rel_err(y, ref, (size_t)n * n_out);
        printf("  %-34s vs cpu %.2e   vs emulated rounding %.2e\n", what, e_cpu, e_emul);
        CHECK(e_cpu < tol_cpu, "%s: error vs CPU backend %.3e >= %.1e", what, e_cpu, tol_cpu);
        CHECK(e_emul < tol_emul, "%s: error vs reference %.3e >= %.1e", what, e_emul, tol_emul);
    }
    free(x);
    free(y);
    free(yc);
    free(ref);
    gfree(&gx);
    gfree(&gy);
    free_weight(&w);
}

/* One matmul call of nw weights sharing the input x (n_in wide), for each n of ns, against
 * the CPU backend's one call. */
static void test_matmul_multi(tw *ws, int nw, int64_t n_in, const int *ns, int nn) {
    const int nmax = ns[nn - 1];
    float *x = malloc((size_t)nmax * n_in * sizeof *x);
    for (int64_t i = 0; i < nmax * n_in; i++)
        x[i] = rnorm();
    gbuf gx = galloc((size_t)nmax * n_in);
    gput(&gx, x, (size_t)nmax * n_in);
    for (int pass = 0; pass < nn; pass++) {
        const int n = ns[pass];
        gbuf gy[4];
        float *ys[4], *yc[4];
        const chord_weight *gws[4], *cws[4];
        for (int k = 0; k < nw; k++) {
            gy[k] = galloc((size_t)n * ws[k].cw.n_out);
            ys[k] = gy[k].p;
            yc[k] = malloc((size_t)n * ws[k].cw.n_out * sizeof(float));
            gws[k] = &ws[k].gw;
            cws[k] = &ws[k].cw;
        }
        gpu->ops->matmul(gpu, nw, ys, gws, gx.p, n);
        cpu->ops->matmul(cpu, nw, yc, cws, x, n);
        for (int k = 0; k < nw; k++) {
            size_t m = (size_t)n * ws[k].cw.n_out;
            float *y = malloc(m * sizeof *y);
            char what[64];
            snprintf(what, sizeof what, "matmul x%d [%d] %lldx%lld n=%d", nw, k,
                     (long long)ws[k].cw.n_out, (long long)n_in, n);
            gget(&gy[k], y, m, what);
            double e = rel_err_f(y, yc[k], m);
            printf("  %-34s vs cpu %.2e\n", what, e);
            const bool fl = is_float_type(ws[k].cw.type);
            CHECK(e < (!fl || n == 1 ? 1e-5 : 3e-3), "%s: error %.3e", what, e);
            free(y);
            free(yc[k]);
            gfree(&gy[k]);
        }
    }
    gfree(&gx);
    free(x);
}

static void test_matmul(void) {
    printf("matmul\n");
    const int ns[] = {1, 2, 5, 64, 70, 130};
    for (size_t i = 0; i < N_TYPES; i++) {
        chord_type t = TYPES[i];
        test_matmul_case(t, 67, 768, ns, 6);
        const int ns2[] = {1, 3};
        test_matmul_case(t, 300, 2560, ns2, 2);
    }
    /* decode matvecs with long rows and more blocks than fit at once on an H100: Q4_K's
     * 32-byte chunks, Q6_K's 2-units-a-round kernel (matvec.cu) */
    const int ns1[] = {1};
    test_matmul_case(CHORD_TYPE_Q4_K, 3200, 4352, ns1, 1);
    test_matmul_case(CHORD_TYPE_Q6_K, 3200, 4352, ns1, 1);
    /* Q4_K chunks at two rows per warp with an odd row count (the last warp's second row
     * is past the end) and rows of 36 chunks (the second round has 4) */
    test_matmul_case(CHORD_TYPE_Q4_K, 8001, 2304, ns1, 1);
    /* the same for Q6_K's chunks, and rows of 172 chunks (Llama-2-7B's ffn_down) */
    test_matmul_case(CHORD_TYPE_Q6_K, 8001, 2304, ns1, 1);
    test_matmul_case(CHORD_TYPE_Q6_K, 1000, 11008, ns1, 1);
    /* Q4_K rows of 65-96 chunks in one wave (three rounds at once: TinyLlama's ffn_down;
     * 80 chunks: the third round has 16) and of 172 chunks (each row's rounds over a warp
     * pair: Llama-2-7B's ffn_down) */
    test_matmul_case(CHORD_TYPE_Q4_K, 2048, 5632, ns1, 1);
    test_matmul_case(CHORD_TYPE_Q4_K, 1001, 5120, ns1, 1);
    test_matmul_case(CHORD_TYPE_Q4_K, 1001, 11008, ns1, 1);
    /* float rows that are not a multiple of 8 / 32 */
    const int ns3[] = {1, 4, 66};
    test_matmul_case(CHORD_TYPE_F32, 45, 100, ns3, 3);
    test_matmul_case(CHORD_TYPE_F16, 45, 100, ns3, 3);
    test_matmul_case(CHORD_TYPE_BF16, 33, 37, ns3, 3);
    test_matmul_case(CHORD_TYPE_F16, 40, 96, ns3, 3);

    /* several weights with one input (x quantized once), n = 1 and n = 9 */
    tw ws[3] = {make_weight(CHORD_TYPE_Q4_K, 130, 512), make_weight(CHORD_TYPE_Q6_K, 70, 512),
                make_weight(CHORD_TYPE_F16, 90, 512)};
    const int ns9[] = {1, 9};
    test_matmul_multi(ws, 3, 512, ns9, 2);
    /* decode with long Q4_K rows and more blocks than one row per warp fits at once on an
     * H100: the chunk kernels at two rows per warp, alone and paired with Q6_K */
    tw wl[2] = {make_weight(CHORD_TYPE_Q4_K, 8000, 4352),
                make_weight(CHORD_TYPE_Q6_K, 1000, 4352)};
    test_matmul_multi(wl, 2, 4352, ns1, 1);
    test_matmul_multi(wl, 1, 4352, ns1, 1);
    /* and at one row per warp (every block resident at once) */
    tw wp[2] = {make_weight(CHORD_TYPE_Q4_K, 2000, 4352),
                make_weight(CHORD_TYPE_Q6_K, 1001, 4352)};
    test_matmul_multi(wp, 2, 4352, ns1, 1);
    for (int k = 0; k < 2; k++)
        free_weight(&wp[k]);
    for (int k = 0; k < 3; k++)
        free_weight(&ws[k]);
    for (int k = 0; k < 2; k++)
        free_weight(&wl[k]);
}

/* -------------------------------------------------------------- get_rows */

static void test_get_rows(void) {
    printf("get_rows\n");
    for (size_t i = 0; i < N_TYPES; i++) {
        chord_type t = TYPES[i];
        int64_t n_in = is_float_type(t) ? 100 : 512, n_out = 41;
        for (int pass = 0; pass < 2; pass++) {
            if (pass) n_in = 768;
            tw w = make_weight(t, n_out, n_in);
            int32_t toks[300];
            int n = pass ? 300 : 5; /* 300: more than one launch's worth */
            for (int k = 0; k < n; k++)
                toks[k] = (int32_t)(rnext() % (uint64_t)n_out);
            toks[0] = (int32_t)n_out - 1;
            gbuf g = galloc((size_t)n * n_in);
            float *y = malloc((size_t)n * n_in * sizeof *y),
                  *yc = malloc((size_t)n * n_in * sizeof *yc);
            gpu->ops->get_rows(gpu, g.p, &w.gw, toks, n);
            char what[64];
            snprintf(what, sizeof what, "get_rows %s n_in=%lld n=%d", chord_type_name(t),
                     (long long)n_in, n);
            gget(&g, y, (size_t)n * n_in, what);
            cpu->ops->get_rows(cpu, yc, &w.cw, toks, n);
            double e = rel_err_f(y, yc, (size_t)n * n_in);
            CHECK(e < 1e-6, "%s: error %.3e", what, e);
            if (pass) printf("  %-34s %.2e\n", what, e);
            free(y);
            free(yc);
            gfree(&g);
            free_weight(&w);
        }
    }
}

/* ------------------------------------------------------ small float ops */

static void test_elementwise(void) {
    printf("rmsnorm / rope / add / swiglu\n");
    const int dims[] = {64, 100, 2048, 5000};
    for (int di = 0; di < 4; di++) {
        int dim = dims[di], n = 7;
        float *x = malloc((size_t)n * dim * sizeof *x), *g = malloc((size_t)dim * sizeof *g);
        for (int i = 0; i < n * dim; i++)
            x[i] = rnorm() * 3;
        for (int i = 0; i < dim; i++)
            g[i] = 1.0f + 0.2f * rnorm();
        chord_weight cw = {.name = "norm",
                           .type = CHORD_TYPE_F32,
                           .n_in = dim,
                           .n_out = 1,
                           .host = g,
                           .nbytes = (size_t)dim * 4};
        chord_weight gw = cw;
        chord_error err = {0};
        CHECK(gpu->ops->upload(gpu, &gw, &err) == CHORD_OK, "upload norm: %s", err.message);
        gbuf gx = galloc((size_t)n * dim), go = galloc((size_t)n * dim);
        gput(&gx, x, (size_t)n * dim);
        gpu->ops->rmsnorm(gpu, go.p, gx.p, &gw, n, dim, 1e-5f);
        float *y = malloc((size_t)n * dim * sizeof *y),
              *yc = malloc((size_t)n * dim * sizeof *yc);
        gget(&go, y, (size_t)n * dim, "rmsnorm");
        cpu->ops->rmsnorm(cpu, yc, x, &cw, n, dim, 1e-5f);
        double e = rel_err_f(y, yc, (size_t)n * dim);
        size_t nd = n_diff(y, yc, (size_t)n * dim);
        CHECK(nd == 0, "rmsnorm dim %d: %zu values differ from the CPU's (rel err %.3e)", dim,
              nd, e);

        /* add / swiglu over n*dim floats, and at an odd offset (unaligned path) */
        for (int off = 0; off < 2; off++) {
            size_t m = (size_t)n * dim - off;
            float *a = malloc(m * sizeof *a), *b = malloc(m * sizeof *b);
            for (size_t i = 0; i < m; i++)
                a[i] = rnorm() * 4, b[i] = rnorm();
            gbuf ga = galloc(m + 1), gb = galloc(m + 1), gc = galloc(m + 1);
            gput(&ga, a, m);
            gput(&gb, b, m);
            gpu->ops->swiglu(gpu, gc.p + off, ga.p, gb.p, m);
            float *r = malloc((m + 1) * sizeof *r), *rc = malloc(m * sizeof *rc);
            if (off) {
                /* pad element before the output: write a value there first */
                float z = 0;
                gpu->ops->from_host(gpu, gc.p, &z, sizeof z);
            }
            gget(&gc, r, m + off, "swiglu");
            cpu->ops->swiglu(cpu, rc, a, b, m);
            e = rel_err_f(r + off, rc, m);
            size_t nd = n_diff(r + off, rc, m);
            CHECK(nd == 0, "swiglu %zu: %zu values differ from the CPU's (rel err %.3e)", m, nd,
                  e);
            gpu->ops->add(gpu, ga.p, gb.p, m);
            gget(&ga, r, m, "add");
            cpu->ops->add(cpu, a, b, m);
            e = rel_err_f(r, a, m);
            CHECK(n_diff(r, a, m) == 0, "add %zu: %.3e", m, e);
            free(a), free(b), free(r), free(rc);
            gfree(&ga), gfree(&gb), gfree(&gc);
        }
        free(x), free(g), free(y), free(yc);
        gfree(&gx), gfree(&go);
    }

    /* rope: both modes, partial rotation, positions far from 0 */
    const struct {
        int n_head, head_dim, n_rot, pos0;
        bool neox;
        float scale;
    } rc[] = {
        {8, 64, 64, 0, false, 1.0f},  {4, 128, 128, 1000, false, 1.0f},
        {8, 64, 32, 17, false, 0.5f}, {6, 80, 80, 3000, true, 1.0f},
        {2, 64, 48, 5, true, 1.0f},
    };
    for (size_t c = 0; c < sizeof rc / sizeof rc[0]; c++) {
        int n = 13;
        size_t m = (size_t)n * rc[c].n_head * rc[c].head_dim;
        float *x = malloc(m * sizeof *x), *y = malloc(m * sizeof *y);
        for (size_t i = 0; i < m; i++)
            x[i] = rnorm();
        chord_rope_shape s = {rc[c].n_head, rc[c].head_dim, rc[c].n_rot,
                              10000.0f,     rc[c].scale,    rc[c].neox};
        gbuf g = galloc(m);
        gput(&g, x, m);
        gpu->ops->rope(gpu, g.p, n, rc[c].pos0, &s);
        gget(&g, y, m, "rope");
        cpu->ops->rope(cpu, x, n, rc[c].pos0, &s);
        double e = rel_err_f(y, x, m);
        size_t nd = n_diff(y, x, m);
        CHECK(nd == 0, "rope case %zu: %zu values differ from the CPU's (rel err %.3e)", c, nd,
              e);
        printf("  rope case %zu (%s, pos0 %d): %.2e, %zu differ\n", c,
               rc[c].neox ? "neox" : "normal", rc[c].pos0, e, nd);
        free(x), free(y);
        gfree(&g);
    }
}

/* ------------------------------------------------------------- attention */

static void test_attention_shape(int n_head, int n_head_kv, int hd, int n_ctx,
                                 const int (*steps)[2], int n_steps) {
    int kvd = n_head_kv * hd, qd = n_head * hd;
    chord_attn_shape s = {n_head, n_head_kv, hd, n_ctx, 1.0f / sqrtf((float)hd)};
    size_t gkb =
        gpu->ops->kv_bytes ? gpu->ops->kv_bytes(gpu, n_ctx, kvd) : (size_t)n_ctx * kvd * 4;
    size_t ckb =
        cpu->ops->kv_bytes ? cpu->ops->kv_bytes(cpu, n_ctx, kvd) : (size_t)n_ctx * kvd * 4;
    chord_kv gkv = {gpu->ops->alloc(gpu, gkb), gpu->ops->alloc(gpu, gkb)};
    chord_kv ckv = {cpu->ops->alloc(cpu, ckb), cpu->ops->alloc(cpu, ckb)};
    int nmax = 0;
    for (int i = 0; i < n_steps; i++)
        nmax = steps[i][0] > nmax ? steps[i][0] : nmax;
    float *q = malloc((size_t)nmax * qd * 4), *k = malloc((size_t)nmax * kvd * 4),
          *v = malloc((size_t)nmax * kvd * 4), *o = malloc((size_t)nmax * qd * 4),
          *oc = malloc((size_t)nmax * qd * 4);
    gbuf gq = galloc((size_t)nmax * qd), gk = galloc((size_t)nmax * kvd),
         gv = galloc((size_t)nmax * kvd), go = galloc((size_t)nmax * qd);
    for (int st = 0; st < n_steps; st++) {
        int n = steps[st][0], pos0 = steps[st][1];
        for (size_t i = 0; i < (size_t)n * qd; i++)
            q[i] = rnorm() * 2;
        for (size_t i = 0; i < (size_t)n * kvd; i++)
            k[i] = rnorm(), v[i] = rnorm();
        gput(&gq, q, (size_t)n * qd);
        gput(&gk, k, (size_t)n * kvd);
        gput(&gv, v, (size_t)n * kvd);
        gfill(&go);
        gpu->ops->attention(gpu, go.p, gq.p, gk.p, gv.p, &gkv, n, pos0, &s);
        char what[96];
        snprintf(what, sizeof what, "attention h%d/kv%d/d%d n=%d pos0=%d", n_head, n_head_kv,
                 hd, n, pos0);
        gget(&go, o, (size_t)n * qd, what);
        cpu->ops->attention(cpu, oc, q, k, v, &ckv, n, pos0, &s);
        double e = rel_err_f(o, oc, (size_t)n * qd);
        size_t nd = n_diff(o, oc, (size_t)n * qd);
        const char *am = getenv("CHORD_CUDA_ATTN");
        const bool exact_env = am && (!strcmp(am, "exact") || !strcmp(am, "old"));
        const bool flash_env = am && !strcmp(am, "flash");
        const bool flash =
            !exact_env && (hd == 64 || hd == 128) && (n >= 64 || (flash_env && n >= 2));
        printf("  %-44s %.2e, %zu differ%s\n", what, e, nd, flash ? " (tensor cores)" : "");
        if (flash)
            CHECK(e <= 3e-3, "%s: rel err %.3e from the CPU's", what, e);
        else
            CHECK(nd == 0, "%s: %zu values differ from the CPU's (rel err %.3e)", what, nd, e);
    }
    gpu->ops->free(gpu, gkv.k);
    gpu->ops->free(gpu, gkv.v);
    cpu->ops->free(cpu, ckv.k), cpu->ops->free(cpu, ckv.v), free(q), free(k), free(v), free(o),
        free(oc);
    gfree(&gq), gfree(&gk), gfree(&gv), gfree(&go);
}

static void test_attention(void) {
    printf("attention\n");
    const int long_steps[][2] = {{7, 0},      {1, 7},    {200, 8}, {1, 208},
                                 {1000, 209}, {1, 1209}, {3, 1210}};
    test_attention_shape(8, 2, 64, 1300, long_steps, 7);
    const int steps[][2] = {{5, 0}, {1, 5}, {130, 6}, {1, 136}, {2, 137}};
    test_attention_shape(4, 4, 128, 200, steps, 5);
    test_attention_shape(32, 4, 64, 200, steps, 5);  /* TinyLlama */
    test_attention_shape(14, 2, 64, 200, steps, 5);  /* group of 7 */
    test_attention_shape(12, 1, 80, 200, steps, 5);  /* head_dim 80, MQA */
    test_attention_shape(16, 2, 256, 200, steps, 5); /* heads split over blocks */
    test_attention_shape(64, 1, 32, 200, steps, 5);  /* more heads than one block holds */
    test_attention_shape(4, 2, 36, 200, steps, 5);   /* head_dim not a multiple of 8 */
    const int pre[][2] = {{64, 0}, {65, 64}, {1, 129}, {512, 130}, {127, 642}, {1, 769}};
    test_attention_shape(32, 4, 64, 800, pre, 6);   /* tensor-core tile edges */
    test_attention_shape(32, 32, 128, 800, pre, 6); /* Llama-2-7B */
}

/* ------------------------------------------------------------------ misc */

static void test_misc(void) {
    chord_error err = {0};
    CHECK(gpu->ops->supports_type(gpu, CHORD_TYPE_Q4_K), "supports Q4_K");
    CHECK(!gpu->ops->supports_type(gpu, CHORD_TYPE_Q8_K), "no Q8_K kernel");
    CHECK(chord_backend_cuda_free_mem(gpu) > 0, "free memory");
    void *huge = gpu->ops->alloc(gpu, (size_t)1 << 50);
    CHECK(huge == NULL, "a 1 PiB allocation fails");
    CHECK(gpu->ops->sync(gpu, &err) == CHORD_OK, "a failed alloc is not sticky: %s",
          err.message);
    uint8_t blk[292] = {0};
    chord_weight w = {.name = "q8k",
                      .type = CHORD_TYPE_Q8_K,
                      .n_in = 256,
                      .n_out = 1,
                      .host = blk,
                      .nbytes = 292};
    CHECK(gpu->ops->upload(gpu, &w, &err) == CHORD_E_UNSUPPORTED, "upload Q8_K refused");

    /* a failing op is reported by the next sync, once */
    chord_weight missing = {.name = "missing", .type = CHORD_TYPE_F16, .n_in = 64, .n_out = 4};
    gbuf gx = galloc(64), gy = galloc(4);
    float *ys[1] = {gy.p};
    const chord_weight *ws[1] = {&missing};
    gpu->ops->matmul(gpu, 1, ys, ws, gx.p, 1);
    memset(&err, 0, sizeof err);
    chord_status s = gpu->ops->sync(gpu, &err);
    CHECK(s == CHORD_E_BACKEND && strstr(err.message, "missing"), "error reported: %d %s", s,
          err.message);
    CHECK(gpu->ops->sync(gpu, &err) == CHORD_OK, "then cleared");
    gfree(&gx);
    gfree(&gy);
}

/* topk: the k best by value descending then id ascending (+inf as FLT_MAX, NaN and -inf
 * last), against a host sort, with ties and non-finite values; k over the limit is
 * CHORD_E_UNSUPPORTED, not an error. */
static void test_topk(void) {
    const int ns[] = {1, 100, 2048, 2049, 32000, 49152, 262144};
    const int ks[] = {1, 2, 41, 65, 128, 256};
    int cases = 0, bad = 0, unsupported = 0;
    for (size_t a = 0; a < sizeof ns / sizeof ns[0]; a++) {
        const int n = ns[a];
        float *h = malloc((size_t)n * sizeof *h);
        int32_t *ref = malloc((size_t)n * sizeof *ref);
        gbuf g = galloc((size_t)n);
        for (int rep = 0; rep < 2; rep++) {
            for (int i = 0; i < n; i++) /* coarse values: ties */
                h[i] = rep ? roundf(rnorm() * 8.0f) / 8.0f : rnorm();
            if (n > 10) {
                h[3] = INFINITY, h[n - 2] = FLT_MAX, h[5] = NAN, h[6] = -INFINITY;
                h[n / 2] = -FLT_MAX;
            }
            gput(&g, h, (size_t)n);
            test_rank_logits(h, ref, n);
            for (size_t b = 0; b < sizeof ks / sizeof ks[0]; b++) {
                const int k = ks[b] < n ? ks[b] : n;
                int32_t ids[256];
                float vals[256];
                chord_error err = {0};
                chord_status st = gpu->ops->topk(gpu, g.p, n, k, ids, vals, &err);
                cases++;
                if (st == CHORD_E_UNSUPPORTED) {
                    unsupported++;
                    CHECK(gpu->ops->sync(gpu, &err) == CHORD_OK,
                          "topk unsupported: no error left");
                    continue;
                }
                CHECK(st == CHORD_OK, "topk n %d k %d: %s", n, k, err.message);
                for (int i = 0; i < k; i++)
                    if (ids[i] != ref[i] || memcmp(&vals[i], &h[ref[i]], sizeof(float)) != 0) {
                        if (bad++ < 5)
                            printf("  topk n %d k %d: [%d] id %d want %d\n", n, k, i, ids[i],
                                   ref[i]);
                        break;
                    }
            }
        }
        gfree(&g);
        free(h);
        free(ref);
    }
    printf("topk: %d cases, %d differ, %d over the limit\n", cases, bad, unsupported);
    CHECK(bad == 0, "topk: %d of %d cases differ from the host sort", bad, cases);
    CHECK(unsupported > 0 && unsupported < cases / 2, "topk: %d cases over the limit",
          unsupported);
}

int main(void) {
    chord_error err = {0};
    test_exact_math_host();
    if (chord_backend_cuda_new(&gpu, &err) != CHORD_OK) {
        printf("skipped: no CUDA device (%s)\n", err.message);
        return test_summary("test_gpu_ops");
    }
    if (chord_backend_cpu_new(1, &cpu, &err) != CHORD_OK) {
        fprintf(stderr, "cpu backend: %s\n", err.message);
        return 1;
    }
    printf("device: %s\n", gpu->desc);
    test_misc();
    test_topk();
    test_elementwise();
    test_get_rows();
    test_attention();
    test_matmul();
    gpu->ops->destroy(gpu);
    cpu->ops->destroy(cpu);
    return test_summary("test_gpu_ops");
}

#endif /* CHORD_HAVE_CUDA */
