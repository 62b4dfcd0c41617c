/* CPU kernels: every type x every ISA this CPU has, against the scalar kernels (bit for
 * bit: every ISA's exact table does llama.cpp's float arithmetic), and the scalar kernels
 * against the reference dequantizers (src/quant/ref.c); the fast tables' own orders
 * (AVX-512 Q8_0 prefill) against the scalar kernels within a relative tolerance and bit
 * for bit against a scalar model of that order; the activation formats; cpu_matmul with
 * a 2-thread pool (bit for bit too, for the exact tables); the CHORD_ISA cap and
 * CHORD_CPU_EXACT. */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "cpu/kernels.h"
#include "cpu/matmul.h"
#include "cpu/threadpool.h"
#include "testutil.h"


static const chord_type TYPES[] = {
    CHORD_TYPE_F32,  CHORD_TYPE_F16,  CHORD_TYPE_BF16, CHORD_TYPE_Q4_0, CHORD_TYPE_Q4_1,
    CHORD_TYPE_Q5_0, CHORD_TYPE_Q5_1, CHORD_TYPE_Q8_0, CHORD_TYPE_Q2_K, CHORD_TYPE_Q3_K,
    CHORD_TYPE_Q4_K, CHORD_TYPE_Q5_K, CHORD_TYPE_Q6_K,
};
#define N_TYPES (int)(sizeof TYPES / sizeof TYPES[0])

static void put_half(void *p, float v) {
    chord_half h = chord_float_to_half(v);
    memcpy(p, &h, 2);
}
/* a scale in +-[0.002, 0.05] (or positive only) */
static float rand_scale(uint64_t *s, int positive) {
    float v = 0.002f + 0.048f * (test_rand_sym(s) * 0.5f + 0.5f);
    return positive || test_rand_sym(s) > 0 ? v : -v;
}

/* n_rows random weight rows of n elements: random bytes for the quants, sane halves */
static void rand_weights(chord_type t, void *dst, int64_t n_rows, int64_t n, uint64_t *s) {
    const chord_type_traits *tr = chord_type_get(t);
    const size_t rs = chord_row_size(t, n);
    uint8_t *p = dst;
    if (t == CHORD_TYPE_F32 || t == CHORD_TYPE_F16 || t == CHORD_TYPE_BF16) {
        float *tmp = malloc((size_t)n * sizeof(float));
        for (int64_t r = 0; r < n_rows; r++) {
            for (int64_t i = 0; i < n; i++)
                tmp[i] = test_rand_sym(s);
            tr->from_float(tmp, p + r * rs, n);
        }
        free(tmp);
        return;
    }
    for (size_t i = 0; i < rs * (size_t)n_rows; i++)
        p[i] = (uint8_t)test_rand_u64(s);
    const int64_t nb = n / tr->block_size * n_rows;
    for (int64_t b = 0; b < nb; b++) {
        uint8_t *blk = p + b * tr->type_size;
        switch (t) {
        case CHORD_TYPE_Q4_0: put_half(&((block_q4_0 *)blk)->d, rand_scale(s, 0)); break;
        case CHORD_TYPE_Q5_0: put_half(&((block_q5_0 *)blk)->d, rand_scale(s, 0)); break;
        case CHORD_TYPE_Q8_0: put_half(&((block_q8_0 *)blk)->d, rand_scale(s, 0)); break;
        case CHORD_TYPE_Q4_1:
            put_half(&((block_q4_1 *)blk)->d, rand_scale(s, 1));
            put_half(&((block_q4_1 *)blk)->m, rand_scale(s, 0) * 8);
            break;
        case CHORD_TYPE_Q5_1:
            put_half(&((block_q5_1 *)blk)->d, rand_scale(s, 1));
            put_half(&((block_q5_1 *)blk)->m, rand_scale(s, 0) * 16);
            break;
        case CHORD_TYPE_Q2_K:
            put_half(&((block_q2_K *)blk)->d, rand_scale(s, 1));
            put_half(&((block_q2_K *)blk)->dmin, rand_scale(s, 1));
            break;
        case CHORD_TYPE_Q3_K: put_half(&((block_q3_K *)blk)->d, rand_scale(s, 0) * 0.1f); break;
        case CHORD_TYPE_Q4_K:
            put_half(&((block_q4_K *)blk)->d, rand_scale(s, 1) * 0.1f);
            put_half(&((block_q4_K *)blk)->dmin, rand_scale(s, 1) * 0.1f);
            break;
        case CHORD_TYPE_Q5_K:
            put_half(&((block_q5_K *)blk)->d, rand_scale(s, 1) * 0.1f);
            put_half(&((block_q5_K *)blk)->dmin, rand_scale(s, 1) * 0.1f);
            break;
        case CHORD_TYPE_Q6_K:
            put_half(&((block_q6_K *)blk)->d, rand_scale(s, 0) * 0.01f);
            break;
        default: break;
        }
    }
}

static void rand_acts(float *x, int64_t count, uint64_t *s) {
    for (int64_t i = 0; i < count; i++) {
        float v = test_rand_sym(s);
        if ((test_rand_u64(s) & 63) == 0) v *= 8.0f; /* some outliers */
        x[i] = v;
    }
}

static void *xalloc(size_t bytes) {
    void *p = aligned_alloc(64, (bytes + 63) & ~(size_t)63);
    if (!p) abort();
    return p;
}

#define MAX_ROWS 127
#define MAX_ACTS 17
static const int ROW_COUNTS[] = {1, 3, 7, 33, 127};
static const int ACT_COUNTS[] = {1, 2, 5, 17};
#define TOL 1e-5

/* worst relative errors seen for the current type (printed per type) */
static double worst_ref, worst_isa, worst_fast;

static int close_enough(double got, double want, double norm) {
    return fabs(got - want) <= TOL * norm + 1e-30;
}

/* The fast order of a 32-block type (AVX-512 Q8_0 prefill): acc = fma(d_w * d_a, (float)
 * (the block's integer dot), acc), block by block. */
static float one_step_dot(chord_type t, int64_t n, const void *w, const void *a) {
    const int8_t *aq = a;
    const float *ad = (const float *)(aq + n);
    float acc = 0.0f;
    for (int64_t b = 0; b < n / 32; b++) {
        int p = 0;
        if (t == CHORD_TYPE_Q8_0) {
            const block_q8_0 *x = (const block_q8_0 *)w + b;
            for (int i = 0; i < 32; i++)
                p += x->qs[i] * aq[32 * b + i];
            acc = fmaf(chord_half_to_float(x->d) * ad[b], (float)p, acc);
        }
    }
    return acc;
}

/* Checks a fast table's gemm_tile (which differs from the exact one) of nw x na: within
 * TOL of the exact scalar results want[c * ldw + r] (relative to norm, sum |w x|), and bit
 * for bit the fast order's model; one activation row takes the exact decode path. */
static void check_fast_gemm(chord_type t, const char *in, int64_t n, const cpu_type_kernels *k,
                            const uint8_t *w, size_t rs, const uint8_t *a, size_t lda, int nw,
                            int na, const float *want, const double *norm, int ldw,
                            void *scratch) {
    const size_t lds = (size_t)nw + 3;
    float *o = xalloc(sizeof(float) * lds * (size_t)na);
    for (size_t i = 0; i < lds * (size_t)na; i++)
        o[i] = NAN;
    k->gemm_tile(n, nw, na, o, lds, w, rs, a, lda, scratch);
    int far = 0, model = 0, untouched_ok = 1;
    double worst = 0;
    for (int c = 0; c < na; c++) {
        for (int r = 0; r < nw; r++) {
            const float v = o[c * lds + r], e = want[c * ldw + r];
            const double nm = norm[c * ldw + r];
            const double rel = fabs(v - e) / (nm + 1e-30);
            if (!(rel <= worst)) worst = rel;
            far += !close_enough(v, e, nm);
            const float m = na == 1 ? e : one_step_dot(t, n, w + (size_t)r * rs, a + c * lda);
            model += memcmp(&v, &m, sizeof v) != 0;
        }
        for (size_t r = (size_t)nw; r < lds; r++)
            untouched_ok &= isnan(o[c * lds + r]);
    }
    CHECK(far == 0 && model == 0 && untouched_ok,
          "%s/%s fast n=%lld gemm %dx%d: %d beyond tolerance (worst rel %.3g), %d not the fast "
          "order's bits, bounds %d",
          chord_type_name(t), in, (long long)n, nw, na, far, worst, model, untouched_ok);
    if (worst > worst_fast) worst_fast = worst;
    free(o);
}

/* One type, one row length: everything. */
static void test_type_size(chord_type t, int64_t n, cpu_isa best, uint64_t *seed) {
    const char *tn = chord_type_name(t);
    const cpu_kernels *ks = cpu_kernels_get(CPU_ISA_SCALAR);
    const cpu_type_kernels *sk = &ks->t[t];
    const size_t rs = chord_row_size(t, n);
    const size_t lda = cpu_act_row_size(sk->act, n);
    CHECK(sk->act != CPU_ACT_NONE && rs > 0 && lda > 0, "%s: no kernel", tn);
    if (sk->act == CPU_ACT_NONE || rs == 0) return;

    uint8_t *w = xalloc(rs * MAX_ROWS);
    float *x = xalloc((size_t)n * MAX_ACTS * sizeof(float));
    uint8_t *a = xalloc(lda * MAX_ACTS), *a2 = xalloc(lda * MAX_ACTS);
    float *wf = xalloc((size_t)n * MAX_ROWS * sizeof(float));
    float *af = xalloc((size_t)n * MAX_ACTS * sizeof(float));
    double *ref = xalloc(sizeof(double) * MAX_ROWS * MAX_ACTS);
    double *norm = xalloc(sizeof(double) * MAX_ROWS * MAX_ACTS);
    float *ssc = xalloc(sizeof(float) * MAX_ROWS * MAX_ACTS);
    float *out = xalloc(sizeof(float) * MAX_ROWS * MAX_ACTS);
    void *scratch = xalloc(CPU_GEMM_SCRATCH);

    rand_weights(t, w, MAX_ROWS, n, seed);
    rand_acts(x, n * MAX_ACTS, seed);
    /* edge cases: a block of zeros (scale 0), a row of tiny values (half scales in the
     * subnormal range) */
    for (int64_t i = 0; i < (n < 32 ? n : 32); i++)
        x[n + i] = 0.0f;
    for (int64_t i = 0; i < n; i++)
        x[2 * n + i] *= 1e-5f;
    memset(a, 0, lda * MAX_ACTS);
    for (int c = 0; c < MAX_ACTS; c++)
        sk->quantize_act(x + c * n, a + c * lda, n);

    /* activation quantization: q within half a step of x, and the scales as llama.cpp
     * stores them: Q8_32 d = half(amax / 127), s = half(amax / 127 * sum q); Q8_256
     * d = 1 / (127 / amax) */
    int bad_q = 0, bad_d = 0;
    for (int c = 0; c < MAX_ACTS; c++) {
        cpu_act_dequant(sk->act, a + c * lda, af + c * n, n);
        if (sk->act == CPU_ACT_F32) continue;
        const int64_t bs = sk->act == CPU_ACT_Q8_32 ? 32 : 256;
        const int8_t *q = (const int8_t *)(a + c * lda);
        const float *d = (const float *)(q + n);
        for (int64_t b = 0; b < n / bs; b++) {
            float amax = 0.0f;
            int sum = 0;
            for (int64_t i = bs * b; i < bs * (b + 1); i++) {
                amax = fmaxf(amax, fabsf(x[c * n + i]));
                sum += q[i];
            }
            /* half a step of amax / 127, plus (Q8_32) the rounding of d to a half */
            const double tol = amax / 127.0 * 0.5001 + 127.0 * fabs(d[b] - amax / 127.0) + 1e-30;
            for (int64_t i = bs * b; i < bs * (b + 1); i++)
                bad_q += fabs((double)af[c * n + i] - x[c * n + i]) > tol;
            if (bs == 32) {
                const float df = amax / 127.0f;
                bad_d += d[b] != chord_half_to_float(chord_float_to_half(df));
                bad_d += d[n / 32 + b] !=
                         chord_half_to_float(chord_float_to_half(df * (float)sum));
            } else {
                bad_d += d[b] != (amax > 0.0f ? 1.0f / (127.0f / amax) : 0.0f);
            }
        }
    }
    CHECK(bad_q == 0, "%s n=%lld: %d activations quantized badly", tn, (long long)n, bad_q);
    CHECK(bad_d == 0, "%s n=%lld: %d activation scales not as llama.cpp's", tn, (long long)n,
          bad_d);

    /* reference: dequantized weights . dequantized activations, in double; for Q4_1 /
     * Q5_1 the mins multiply the activations' s (half(d * sum q)) instead of d * sum q */
    chord_type_get(t)->to_float(w, wf, n * MAX_ROWS); /* rows are whole blocks */
    for (int r = 0; r < MAX_ROWS; r++)
        for (int c = 0; c < MAX_ACTS; c++) {
            double s = 0, sa = 0;
            for (int64_t i = 0; i < n; i++) {
                const double p = (double)wf[r * n + i] * af[c * n + i];
                s += p;
                sa += fabs(p);
            }
            if (t == CHORD_TYPE_Q4_1 || t == CHORD_TYPE_Q5_1) {
                const int8_t *q = (const int8_t *)(a + c * lda);
                const float *d = (const float *)(q + n);
                for (int64_t b = 0; b < n / 32; b++) {
                    const uint8_t *blk = w + r * rs + b * chord_type_get(t)->type_size;
                    chord_half mh;
                    memcpy(&mh, blk + 2, 2); /* m follows d in both */
                    int sum = 0;
                    for (int i = 0; i < 32; i++)
                        sum += q[32 * b + i];
                    s += (double)chord_half_to_float(mh) * (d[n / 32 + b] - (double)d[b] * sum);
                }
            }
            ref[c * MAX_ROWS + r] = s;
            norm[c * MAX_ROWS + r] = sa;
        }

    /* scalar vec_dot against the reference */
    int bad = 0;
    double worst = 0;
    for (int r = 0; r < MAX_ROWS; r++)
        for (int c = 0; c < MAX_ACTS; c++) {
            const int i = c * MAX_ROWS + r;
            sk->vec_dot(n, &ssc[i], w + r * rs, a + c * lda);
            const double e = fabs(ssc[i] - ref[i]) / (norm[i] + 1e-30);
            if (e > worst) worst = e;
            bad += !close_enough(ssc[i], ref[i], norm[i]);
        }
    CHECK(bad == 0, "%s n=%lld: scalar vec_dot vs reference: %d bad, worst rel %.3g", tn,
          (long long)n, bad, worst);
    if (worst > worst_ref) worst_ref = worst;

    for (int isa = CPU_ISA_SCALAR; isa <= (int)best; isa++) {
        const cpu_type_kernels *k = &cpu_kernels_get((cpu_isa)isa)->t[t];
        const char *in = cpu_isa_name((cpu_isa)isa);
        CHECK(k->act == sk->act, "%s/%s: activation format differs", tn, in);
        /* same activation bytes from every ISA's quantizer */
        memset(a2, 0, lda * MAX_ACTS);
        for (int c = 0; c < MAX_ACTS; c++)
            k->quantize_act(x + c * n, a2 + c * lda, n);
        CHECK(memcmp(a, a2, lda * MAX_ACTS) == 0,
              "%s/%s n=%lld: quantize_act differs from scalar", tn, in, (long long)n);
        /* vec_dot */
        bad = 0;
        worst = 0;
        for (int r = 0; r < MAX_ROWS; r++)
            for (int c = 0; c < MAX_ACTS; c++) {
                const int i = c * MAX_ROWS + r;
                float v = NAN;
                k->vec_dot(n, &v, w + r * rs, a + c * lda);
                const double e = fabs(v - ssc[i]) / (norm[i] + 1e-30);
                if (!(e <= worst)) worst = e;
                bad += memcmp(&v, &ssc[i], sizeof v) != 0;
            }
        CHECK(bad == 0, "%s/%s n=%lld: vec_dot vs scalar: %d not identical, worst rel %.3g", tn, in,
              (long long)n, bad, worst);
        if (worst > worst_isa) worst_isa = worst;
        /* gemm tiles of every shape */
        for (size_t ri = 0; ri < sizeof ROW_COUNTS / sizeof ROW_COUNTS[0]; ri++)
            for (size_t ci = 0; ci < sizeof ACT_COUNTS / sizeof ACT_COUNTS[0]; ci++) {
                const int nw = ROW_COUNTS[ri], na = ACT_COUNTS[ci];
                const size_t lds = MAX_ROWS + 1; /* not the row count: checks lds use */
                float *o = xalloc(sizeof(float) * lds * na);
                for (size_t i = 0; i < lds * (size_t)na; i++)
                    o[i] = NAN;
                k->gemm_tile(n, nw, na, o, lds, w, rs, a, lda, scratch);
                bad = 0;
                worst = 0;
                int untouched_ok = 1;
                for (int c = 0; c < na; c++) {
                    for (int r = 0; r < nw; r++) {
                        const int i = c * MAX_ROWS + r;
                        const float v = o[c * lds + r];
                        const double e = fabs(v - ssc[i]) / (norm[i] + 1e-30);
                        if (!(e <= worst)) worst = e;
                        bad += memcmp(&v, &ssc[i], sizeof v) != 0;
                    }
                    for (size_t r = (size_t)nw; r < lds; r++)
                        untouched_ok &= isnan(o[c * lds + r]);
                }
                CHECK(bad == 0 && untouched_ok,
                      "%s/%s n=%lld gemm %dx%d: %d not identical, worst rel %.3g, bounds %d", tn, in,
                      (long long)n, nw, na, bad, worst, untouched_ok);
                free(o);
                /* the fast table, where its order differs */
                const cpu_type_kernels *kf = &cpu_kernels_fast((cpu_isa)isa)->t[t];
                if (kf->gemm_tile != k->gemm_tile)
                    check_fast_gemm(t, in, n, kf, w, rs, a, lda, nw, na, ssc, norm, MAX_ROWS,
                                    scratch);
            }
    }
    free(w);
    free(x);
    free(a);
    free(a2);
    free(wf);
    free(af);
    free(ref);
    free(norm);
    free(ssc);
    free(out);
    free(scratch);
}

/* gemm tiles larger than the vertical tiles' row and activation groups (128 or 256 rows x
 * 32 or 64 activations, slabs of 8 or 16 blocks / 2 superblocks), with partial groups and
 * slab tails, bit for bit against the scalar vec_dot (the fast orders: see
 * check_fast_gemm) */
static void test_big_tiles(chord_type t, cpu_isa best, uint64_t *seed) {
    enum { NW = 263, NA = 70 };
    const int64_t n = 768; /* 24 blocks of 32, 3 superblocks */
    const cpu_type_kernels *sk = &cpu_kernels_get(CPU_ISA_SCALAR)->t[t];
    const size_t rs = chord_row_size(t, n), lda = cpu_act_row_size(sk->act, n);
    uint8_t *w = xalloc(rs * NW), *a = xalloc(lda * NA);
    float *x = xalloc(sizeof(float) * (size_t)n * NA);
    float *ref = xalloc(sizeof(float) * NW * NA), *o = xalloc(sizeof(float) * NW * NA);
    void *scratch = xalloc(CPU_GEMM_SCRATCH);
    rand_weights(t, w, NW, n, seed);
    rand_acts(x, n * NA, seed);
    memset(a, 0, lda * NA);
    for (int c = 0; c < NA; c++)
        sk->quantize_act(x + c * n, a + c * lda, n);
    for (int c = 0; c < NA; c++)
        for (int r = 0; r < NW; r++)
            sk->vec_dot(n, &ref[c * NW + r], w + r * rs, a + c * lda);
    /* sum |w x| of each pair, for the fast orders' tolerance */
    double *norm = xalloc(sizeof(double) * NW * NA);
    {
        float *wf = xalloc(sizeof(float) * (size_t)n * NW);
        float *af = xalloc(sizeof(float) * (size_t)n);
        chord_type_get(t)->to_float(w, wf, n * NW);
        for (int c = 0; c < NA; c++) {
            cpu_act_dequant(sk->act, a + c * lda, af, n);
            for (int r = 0; r < NW; r++) {
                double sa = 0;
                for (int64_t i = 0; i < n; i++)
                    sa += fabs((double)wf[r * n + i] * af[i]);
                norm[c * NW + r] = sa;
            }
        }
        free(wf);
        free(af);
    }
    for (int isa = CPU_ISA_AVX2; isa <= (int)best; isa++) {
        const cpu_type_kernels *k = &cpu_kernels_get((cpu_isa)isa)->t[t];
        for (int i = 0; i < NW * NA; i++)
            o[i] = NAN;
        k->gemm_tile(n, NW, NA, o, NW, w, rs, a, lda, scratch);
        int bad = 0;
        for (int i = 0; i < NW * NA; i++)
            bad += memcmp(&o[i], &ref[i], sizeof(float)) != 0;
        CHECK(bad == 0, "%s/%s gemm %dx%d: %d not identical", chord_type_name(t),
              cpu_isa_name((cpu_isa)isa), NW, NA, bad);
        const cpu_type_kernels *kf = &cpu_kernels_fast((cpu_isa)isa)->t[t];
        if (kf->gemm_tile != k->gemm_tile)
            check_fast_gemm(t, cpu_isa_name((cpu_isa)isa), n, kf, w, rs, a, lda, NW, NA, ref,
                            norm, NW, scratch);
    }
    free(w);
    free(a);
    free(x);
    free(ref);
    free(o);
    free(norm);
    free(scratch);
}

/* cpu_matmul with a 2-thread pool: mixed types sharing one input, against scalar dots (bit
 * for bit; within TOL where k's kernel has its own order) */
static void test_matmul(const cpu_kernels *k, uint64_t *seed) {
    const cpu_isa isa = k->isa;
    const cpu_kernels *ke = cpu_kernels_get(isa);
    const cpu_kernels *ks = cpu_kernels_get(CPU_ISA_SCALAR);
    cpu_pool *pool = cpu_pool_new(2);
    cpu_matmul_ctx *ctx = cpu_matmul_ctx_new();
    CHECK(pool && cpu_pool_size(pool) == 2, "pool of 2");
    CHECK(ctx != NULL, "matmul ctx");
    if (!pool || !ctx) return;
    const int64_t n_in = 512;
    static const chord_type groups[][3] = {
        {CHORD_TYPE_Q4_K, CHORD_TYPE_Q6_K, CHORD_TYPE_F16},
        {CHORD_TYPE_Q4_0, CHORD_TYPE_Q8_0, CHORD_TYPE_Q5_K},
        {CHORD_TYPE_BF16, CHORD_TYPE_Q2_K, CHORD_TYPE_Q5_1},
        {CHORD_TYPE_Q3_K, CHORD_TYPE_Q4_1, CHORD_TYPE_F32},
        {CHORD_TYPE_Q5_0, CHORD_TYPE_Q4_K, CHORD_TYPE_Q4_K},
    };
    float *x = xalloc(sizeof(float) * n_in * MAX_ACTS);
    for (size_t g = 0; g < sizeof groups / sizeof groups[0]; g++)
        for (size_t ri = 0; ri < sizeof ROW_COUNTS / sizeof ROW_COUNTS[0]; ri++)
            for (size_t ci = 0; ci < sizeof ACT_COUNTS / sizeof ACT_COUNTS[0]; ci++) {
                const int n = ACT_COUNTS[ci];
                chord_weight wt[3];
                const chord_weight *wp[3];
                float *ys[3];
                void *wmem[3];
                rand_acts(x, n_in * n, seed);
                for (int i = 0; i < 3; i++) {
                    const chord_type t = groups[g][i];
                    const int64_t n_out = ROW_COUNTS[(ri + (size_t)i) % 5];
                    wmem[i] = xalloc(chord_row_size(t, n_in) * (size_t)n_out);
                    rand_weights(t, wmem[i], n_out, n_in, seed);
                    wt[i] = (chord_weight){.name = "w",
                                           .type = t,
                                           .n_in = n_in,
                                           .n_out = n_out,
                                           .host = wmem[i],
                                           .nbytes = chord_row_size(t, n_in) * (size_t)n_out};
                    wp[i] = &wt[i];
                    ys[i] = xalloc(sizeof(float) * (size_t)(n_out * n));
                }
                chord_error err;
                chord_status st = cpu_matmul(pool, k, ctx, 3, ys, wp, x, n, &err);
                CHECK(st == CHORD_OK, "matmul: %s", err.message);
                int bad = 0;
                for (int i = 0; i < 3; i++) {
                    const cpu_type_kernels *sk = &ks->t[wt[i].type];
                    const size_t lda = cpu_act_row_size(sk->act, n_in);
                    uint8_t *a = xalloc(lda);
                    float *wf = xalloc(sizeof(float) * n_in),
                          *af = xalloc(sizeof(float) * n_in);
                    const size_t rs = chord_row_size(wt[i].type, n_in);
                    for (int t = 0; t < n; t++) {
                        sk->quantize_act(x + t * n_in, a, n_in);
                        cpu_act_dequant(sk->act, a, af, n_in);
                        for (int64_t o = 0; o < wt[i].n_out; o++) {
                            float want;
                            sk->vec_dot(n_in, &want, (const uint8_t *)wmem[i] + o * rs, a);
                            chord_type_get(wt[i].type)
                                ->to_float((const uint8_t *)wmem[i] + o * rs, wf, n_in);
                            double nm = 0;
                            for (int64_t j = 0; j < n_in; j++)
                                nm += fabs((double)wf[j] * af[j]);
                            const float got = ys[i][t * wt[i].n_out + o];
                            if (k->t[wt[i].type].gemm_tile == ke->t[wt[i].type].gemm_tile)
                                bad += memcmp(&got, &want, sizeof want) != 0;
                            else
                                bad += !close_enough(got, want, nm);
                        }
                    }
                    free(a);
                    free(wf);
                    free(af);
                }
                CHECK(bad == 0, "matmul %s%s group %zu rows %d acts %d: %d bad",
                      cpu_isa_name(isa), k->exact ? "" : " fast", g, ROW_COUNTS[ri], n, bad);
                for (int i = 0; i < 3; i++) {
                    free(wmem[i]);
                    free(ys[i]);
                }
            }
    /* bad input: mismatched n_in and an unsupported type */
    {
        chord_weight a = {
            .name = "a", .type = CHORD_TYPE_Q8_0, .n_in = 64, .n_out = 1, .host = x};
        chord_weight b = {
            .name = "b", .type = CHORD_TYPE_Q8_0, .n_in = 96, .n_out = 1, .host = x};
        chord_weight c = {
            .name = "c", .type = CHORD_TYPE_IQ2_XS, .n_in = 256, .n_out = 1, .host = x};
        const chord_weight *wp[2] = {&a, &b};
        float y[4];
        float *ys[2] = {y, y + 2};
        chord_error err;
        CHECK(cpu_matmul(pool, k, ctx, 2, ys, wp, x, 1, &err) == CHORD_E_INVALID_ARG,
              "mismatched n_in");
        wp[0] = &c;
        CHECK(cpu_matmul(pool, k, ctx, 1, ys, wp, x, 1, &err) == CHORD_E_UNSUPPORTED,
              "unsupported type");
        CHECK(cpu_matmul(pool, k, ctx, 0, ys, wp, x, 1, &err) == CHORD_OK, "no weights");
    }
    free(x);
    cpu_matmul_ctx_free(ctx);
    cpu_pool_free(pool);
}

static void test_isa_env(void) {
    const cpu_isa hw = cpu_isa_hardware();
    const char *old = getenv("CHORD_ISA");
    char *saved = old ? strdup(old) : NULL;
    setenv("CHORD_ISA", "scalar", 1);
    CHECK(cpu_isa_detect() == CPU_ISA_SCALAR, "CHORD_ISA=scalar");
    setenv("CHORD_ISA", "avx2", 1);
    CHECK(cpu_isa_detect() == (hw < CPU_ISA_AVX2 ? hw : CPU_ISA_AVX2), "CHORD_ISA=avx2");
    setenv("CHORD_ISA", "AVX512", 1);
    CHECK(cpu_isa_detect() == hw, "CHORD_ISA=avx512 never raises");
    setenv("CHORD_ISA", "bogus", 1);
    CHECK(cpu_isa_detect() == hw, "CHORD_ISA=bogus ignored");
    unsetenv("CHORD_ISA");
    CHECK(cpu_isa_detect() == hw, "no cap");
    if (saved) {
        setenv("CHORD_ISA", saved, 1);
        free(saved);
    }
    CHECK(!strcmp(cpu_isa_name(CPU_ISA_AVX512), "avx512") &&
              !strcmp(cpu_isa_name(CPU_ISA_AVX2), "avx2") &&
              !strcmp(cpu_isa_name(CPU_ISA_SCALAR), "scalar"),
          "isa names");
    CHECK(cpu_kernels_get(CPU_ISA_AVX2)->isa == CPU_ISA_AVX2, "table isa");
    /* CHORD_CPU_EXACT: set and not "0" picks the exact tables */
    const char *oldx = getenv("CHORD_CPU_EXACT");
    char *savedx = oldx ? strdup(oldx) : NULL;
    unsetenv("CHORD_CPU_EXACT");
    CHECK(!cpu_exact_requested(), "CHORD_CPU_EXACT unset");
    setenv("CHORD_CPU_EXACT", "0", 1);
    CHECK(!cpu_exact_requested(), "CHORD_CPU_EXACT=0");
    setenv("CHORD_CPU_EXACT", "1", 1);
    CHECK(cpu_exact_requested(), "CHORD_CPU_EXACT=1");
    if (savedx) {
        setenv("CHORD_CPU_EXACT", savedx, 1);
        free(savedx);
    } else {
        unsetenv("CHORD_CPU_EXACT");
    }
    for (int isa = CPU_ISA_SCALAR; isa < CPU_ISA_COUNT; isa++) {
        const cpu_kernels *e = cpu_kernels_get((cpu_isa)isa);
        const cpu_kernels *f = cpu_kernels_fast((cpu_isa)isa);
        CHECK(e->exact && (int)e->isa == isa && (int)f->isa == isa, "%s tables",
              cpu_isa_name((cpu_isa)isa));
        CHECK(cpu_kernels_pick((cpu_isa)isa, 1) == e && cpu_kernels_pick((cpu_isa)isa, 0) == f,
              "%s pick", cpu_isa_name((cpu_isa)isa));
        /* a fast table differs only in gemm tiles, and keeps the activation formats */
        for (int t = 0; t < CHORD_TYPE_COUNT; t++)
            CHECK(e->t[t].act == f->t[t].act && e->t[t].vec_dot == f->t[t].vec_dot &&
                      e->t[t].quantize_act == f->t[t].quantize_act,
                  "%s fast table type %d", cpu_isa_name((cpu_isa)isa), t);
    }
}

int main(void) {
    test_isa_env();
    const cpu_isa best = cpu_isa_detect();
    printf("testing ISAs up to %s (hardware: %s)\n", cpu_isa_name(best),
           cpu_isa_name(cpu_isa_hardware()));
    uint64_t seed = 12345;
    for (int ti = 0; ti < N_TYPES; ti++) {
        const chord_type t = TYPES[ti];
        const int64_t bs = chord_type_get(t)->block_size;
        int64_t sizes[5];
        int ns = 0;
        if (bs == 1) {
            sizes[ns++] = 1;
            sizes[ns++] = 37;
        } else {
            sizes[ns++] = bs;     /* one block */
            sizes[ns++] = 5 * bs; /* several */
        }
        if (bs == 32) sizes[ns++] = 32 * 23; /* 16-block groups plus a tail */
        sizes[ns++] = 4096;
        sizes[ns++] = 11008;
        const int before = test_failures;
        worst_ref = worst_isa = worst_fast = 0;
        for (int i = 0; i < ns; i++)
            test_type_size(t, sizes[i], best, &seed);
        printf("%-5s %-6s worst error / sum|w x|: scalar vs reference %.1e, SIMD vs scalar "
               "%.1e",
               chord_type_name(t), test_failures == before ? "ok" : "FAILED", worst_ref,
               worst_isa);
        if (worst_fast > 0) printf(", fast order vs scalar %.1e", worst_fast);
        printf("\n");
    }
    for (int ti = 0; ti < N_TYPES; ti++)
        if (chord_type_get(TYPES[ti])->block_size > 1) test_big_tiles(TYPES[ti], best, &seed);
    for (int isa = CPU_ISA_SCALAR; isa <= (int)best; isa++) {
        test_matmul(cpu_kernels_get((cpu_isa)isa), &seed);
        if (cpu_kernels_fast((cpu_isa)isa) != cpu_kernels_get((cpu_isa)isa))
            test_matmul(cpu_kernels_fast((cpu_isa)isa), &seed);
    }
    return test_summary("test_kernels");
}
