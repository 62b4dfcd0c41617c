/* Quantizers (src/quant/quantize*.c), the GGUF writer and the model-quantization engine:
 * - quantize -> reference dequantize round trips on random data stay within per-type
 *   relative RMSE bounds, and beat (or match) max-based scales;
 * - constant, all-zero, tiny and spiky rows give finite output (constants near exact);
 * - the GGUF writer's output parses back with every value and tensor byte intact;
 * - the tensor-type rules of the Q4_K_M / Q5_K_M mixes;
 * - the threaded engine writes the same bytes with 1 and 4 threads. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "gguf.h"
#include "gguf_write.h"
#include "quant/quantize.h"
#include "quant/types.h"
#include "quantize_model.h"
#include "testutil.h"

/* xorshift64* */
static uint64_t rng_next(uint64_t *s) {
    *s ^= *s >> 12;
    *s ^= *s << 25;
    *s ^= *s >> 27;
    return *s * 2685821657736338717ull;
}
static double rng_u(uint64_t *s) {
    return ((double)(rng_next(s) >> 11) + 0.5) / 9007199254740992.0;
}
static float rng_gauss(uint64_t *s) {
    return (float)(sqrt(-2.0 * log(rng_u(s))) * cos(6.283185307179586 * rng_u(s)));
}

typedef struct {
    chord_type t;
    double bound; /* relative RMSE on N(0, 1) rows */
} type_bound;

/* ~1.1x what the quantizers reach on Gaussian data */
static const type_bound TYPES[] = {
    {CHORD_TYPE_F32, 1e-7},   {CHORD_TYPE_F16, 1e-3},   {CHORD_TYPE_BF16, 5e-3},
    {CHORD_TYPE_Q8_0, 0.006}, {CHORD_TYPE_Q4_0, 0.09},  {CHORD_TYPE_Q4_1, 0.077},
    {CHORD_TYPE_Q5_0, 0.045}, {CHORD_TYPE_Q5_1, 0.038}, {CHORD_TYPE_Q2_K, 0.30},
    {CHORD_TYPE_Q3_K, 0.16},  {CHORD_TYPE_Q4_K, 0.078}, {CHORD_TYPE_Q5_K, 0.039},
    {CHORD_TYPE_Q6_K, 0.019},
};
#define N_TYPES (sizeof TYPES / sizeof TYPES[0])

/* Quantizes and dequantizes n floats; returns ||y - x|| / ||x|| (or ||y|| when x = 0),
 * and whether every output value is finite. */
static double round_trip(chord_type t, const float *x, float *y, int64_t n, bool *finite) {
    void *q = malloc(chord_row_size(t, n) + 1);
    bool ok = chord_quantize_row(t, x, q, n);
    CHECK(ok, "%s: chord_quantize_row failed", chord_type_name(t));
    chord_type_get(t)->to_float(q, y, n);
    free(q);
    double num = 0, den = 0;
    *finite = true;
    for (int64_t i = 0; i < n; i++) {
        if (!isfinite(y[i])) *finite = false;
        num += ((double)y[i] - x[i]) * ((double)y[i] - x[i]);
        den += (double)x[i] * x[i];
    }
    return den > 0 ? sqrt(num / den) : sqrt(num);
}

static void test_random_rows(void) {
    const int64_t n = 4096, rows = 16;
    float *x = malloc(sizeof(float) * n * rows), *y = malloc(sizeof(float) * n * rows);
    uint64_t s = 0x1234567;
    for (int64_t i = 0; i < n * rows; i++)
        x[i] = rng_gauss(&s);
    for (size_t k = 0; k < N_TYPES; k++) {
        bool fin;
        double e = round_trip(TYPES[k].t, x, y, n * rows, &fin);
        printf("  %-5s rel rmse %.5f (bound %.5f)\n", chord_type_name(TYPES[k].t), e,
               TYPES[k].bound);
        CHECK(fin, "%s: non-finite output", chord_type_name(TYPES[k].t));
        CHECK(e < TYPES[k].bound, "%s: rel rmse %.5f >= %.5f", chord_type_name(TYPES[k].t), e,
              TYPES[k].bound);
    }
    /* Q8_0: the searched scales are at least as good as ggml's max-based ones */
    {
        void *q = malloc(chord_row_size(CHORD_TYPE_Q8_0, n * rows));
        quant_row_q8_0_ref(x, q, n * rows);
        dequant_row_q8_0_ref(q, y, n * rows);
        double num = 0, den = 0;
        for (int64_t i = 0; i < n * rows; i++) {
            num += ((double)y[i] - x[i]) * ((double)y[i] - x[i]);
            den += (double)x[i] * x[i];
        }
        bool fin;
        double ours = round_trip(CHORD_TYPE_Q8_0, x, y, n * rows, &fin);
        CHECK(ours <= sqrt(num / den), "Q8_0: %.6f worse than max-based %.6f", ours,
              sqrt(num / den));
        free(q);
    }
    /* heavy tails (Student-t like: gauss / sqrt(uniform)) and a non-zero mean: finite,
     * and not absurdly far off */
    for (int64_t i = 0; i < n * rows; i++)
        x[i] = 0.3f + rng_gauss(&s) / (float)sqrt(0.05 + rng_u(&s));
    for (size_t k = 0; k < N_TYPES; k++) {
        bool fin;
        double e = round_trip(TYPES[k].t, x, y, n * rows, &fin);
        CHECK(fin, "%s: non-finite output on heavy-tailed data", chord_type_name(TYPES[k].t));
        CHECK(e < 3 * TYPES[k].bound + 0.02, "%s: heavy-tailed rel rmse %.5f",
              chord_type_name(TYPES[k].t), e);
    }
    free(x);
    free(y);
}

static void test_special_rows(void) {
    const int64_t n = 512;
    float x[512], y[512];
    const float consts[] = {0.0f, 1.0f, -3.5f, 1e-3f, -1000.0f, 65000.0f, 1e-30f, -1e-38f};
    for (size_t k = 0; k < N_TYPES; k++) {
        const chord_type t = TYPES[k].t;
        for (size_t c = 0; c < sizeof consts / sizeof consts[0]; c++) {
            for (int i = 0; i < n; i++)
                x[i] = consts[c];
            bool fin;
            double e = round_trip(t, x, y, n, &fin);
            CHECK(fin, "%s: constant %g gives non-finite output", chord_type_name(t),
                  consts[c]);
            if (consts[c] == 0.0f) {
                bool zero = true;
                for (int i = 0; i < n; i++)
                    zero = zero && y[i] == 0.0f;
                CHECK(zero, "%s: all-zero row does not come back as zeros", chord_type_name(t));
            } else if (fabsf(consts[c]) >= 1e-3f && fabsf(consts[c]) <= 1000.0f) {
                /* small constants meet the precision of subnormal half scales */
                const double tol = t == CHORD_TYPE_BF16       ? 5e-3
                                   : fabsf(consts[c]) < 0.01f ? 1e-2
                                                              : 2e-3;
                CHECK(e < tol, "%s: constant %g: rel error %g", chord_type_name(t), consts[c],
                      e);
            }
        }
        /* one spike in zeros, alternating signs, a ramp */
        for (int i = 0; i < n; i++)
            x[i] = 0.0f;
        x[77] = 5.0f;
        bool fin;
        round_trip(t, x, y, n, &fin);
        CHECK(fin, "%s: spike row gives non-finite output", chord_type_name(t));
        CHECK(fabsf(y[77] - 5.0f) < 0.05f, "%s: spike comes back as %g", chord_type_name(t),
              y[77]);
        for (int i = 0; i < n; i++)
            x[i] = (i & 1) ? 1e-20f : -1e-20f;
        round_trip(t, x, y, n, &fin);
        CHECK(fin, "%s: tiny row gives non-finite output", chord_type_name(t));
        for (int i = 0; i < n; i++)
            x[i] = (float)i / n - 0.5f;
        double e = round_trip(t, x, y, n, &fin);
        CHECK(fin && e < 2 * TYPES[k].bound, "%s: ramp rel error %g", chord_type_name(t), e);
    }
    /* unsupported types and lengths */
    uint8_t buf[4096];
    CHECK(!chord_quantize_row(CHORD_TYPE_Q8_K, x, buf, 256), "Q8_K is not a weight type");
    CHECK(!chord_quantize_row(CHORD_TYPE_IQ2_XXS, x, buf, 256), "IQ2_XXS unsupported");
    CHECK(!chord_quantize_row(CHORD_TYPE_Q4_K, x, buf, 100), "100 is not a multiple of 256");
    CHECK(chord_quantize_supported(CHORD_TYPE_Q5_K) &&
              !chord_quantize_supported(CHORD_TYPE_Q8_1),
          "supported set");
}

/* ------------------------------------------------------------ GGUF writer */

static void test_writer(void) {
    char path[256];
    snprintf(path, sizeof path, "test_quantize_rt_%d.gguf", (int)getpid());
    chord_error err = {0};
    gguf_writer *w = NULL;
    CHECK(gguf_writer_new(&w, &err) == CHORD_OK, "new");
    int16_t i16 = -7;
    double f64 = 2.5;
    int32_t arr[5] = {1, -2, 3, -4, 5};
    const char *strs[3] = {"a", "", "héllo"};
    CHECK(gguf_writer_set_str(w, "general.architecture", "llama", &err) == CHORD_OK, "%s",
          err.message);
    CHECK(gguf_writer_set_u32(w, "x.u32", 123, &err) == CHORD_OK, "%s", err.message);
    CHECK(gguf_writer_set_u32(w, "x.u32", 456, &err) == CHORD_OK, "replace");
    CHECK(gguf_writer_set_scalar(w, "x.i16", GGUF_I16, &i16, &err) == CHORD_OK, "%s",
          err.message);
    CHECK(gguf_writer_set_scalar(w, "x.f64", GGUF_F64, &f64, &err) == CHORD_OK, "%s",
          err.message);
    CHECK(gguf_writer_set_f32(w, "x.f32", 0.25f, &err) == CHORD_OK, "%s", err.message);
    CHECK(gguf_writer_set_bool(w, "x.bool", true, &err) == CHORD_OK, "%s", err.message);
    CHECK(gguf_writer_set_u64(w, "x.u64", 1ull << 40, &err) == CHORD_OK, "%s", err.message);
    CHECK(gguf_writer_set_arr(w, "x.arr", GGUF_I32, arr, 5, &err) == CHORD_OK, "%s",
          err.message);
    CHECK(gguf_writer_set_str_arr(w, "x.strs", strs, 3, &err) == CHORD_OK, "%s", err.message);
    CHECK(gguf_writer_set_u32(w, "x.gone", 1, &err) == CHORD_OK, "%s", err.message);
    CHECK(gguf_writer_remove_kv(w, "x.gone") && !gguf_writer_remove_kv(w, "x.gone"), "remove");
    CHECK(gguf_writer_set_u32(w, "general.alignment", 64, &err) == CHORD_OK, "%s", err.message);

    /* copy the tokenizer kvs of the shared vocabulary, when there */
    size_t vsize = 0;
    void *vbytes = test_read_file(test_shared("vocab/ggml-vocab-llama-spm.gguf"), &vsize);
    gguf_file *voc = NULL;
    if (vbytes && gguf_parse(vbytes, vsize, &voc, &err) == CHORD_OK)
        CHECK(gguf_writer_copy_kvs(w, voc, "tokenizer.", &err) == CHORD_OK, "%s", err.message);

    const int64_t ne_a[2] = {256, 3}, ne_b[1] = {5}, ne_c[2] = {64, 2}, ne_bad[2] = {100, 2};
    CHECK(gguf_writer_add_tensor(w, "a", 2, ne_a, CHORD_TYPE_Q4_K, &err) == CHORD_OK, "%s",
          err.message);
    CHECK(gguf_writer_add_tensor(w, "b", 1, ne_b, CHORD_TYPE_F32, &err) == CHORD_OK, "%s",
          err.message);
    CHECK(gguf_writer_add_tensor(w, "c", 2, ne_c, CHORD_TYPE_Q8_0, &err) == CHORD_OK, "%s",
          err.message);
    CHECK(gguf_writer_add_tensor(w, "a", 1, ne_b, CHORD_TYPE_F32, &err) != CHORD_OK,
          "duplicate name");
    CHECK(gguf_writer_add_tensor(w, "d", 2, ne_bad, CHORD_TYPE_Q4_K, &err) != CHORD_OK,
          "bad row length");
    uint8_t da[3 * 144], db[20], dc[2 * 2 * 34];
    for (size_t i = 0; i < sizeof da; i++)
        da[i] = (uint8_t)(i * 7);
    for (size_t i = 0; i < sizeof db; i++)
        db[i] = (uint8_t)(200 - i);
    for (size_t i = 0; i < sizeof dc; i++)
        dc[i] = (uint8_t)(i ^ 0x5a);
    CHECK(gguf_writer_begin(w, path, &err) == CHORD_OK, "%s", err.message);
    CHECK(gguf_writer_set_u32(w, "late", 1, &err) != CHORD_OK, "kv after begin refused");
    /* pieces of odd sizes across tensor boundaries */
    CHECK(gguf_writer_write(w, da, 100, &err) == CHORD_OK, "%s", err.message);
    CHECK(gguf_writer_write(w, da + 100, sizeof da - 100, &err) == CHORD_OK, "%s", err.message);
    uint8_t both[sizeof db + sizeof dc];
    memcpy(both, db, sizeof db);
    memcpy(both + sizeof db, dc, sizeof dc);
    CHECK(gguf_writer_write(w, both, sizeof both, &err) == CHORD_OK, "%s", err.message);
    CHECK(gguf_writer_write(w, both, 1, &err) != CHORD_OK, "writing past the end refused");
    uint64_t fsize = 0;
    CHECK(gguf_writer_finish(w, &fsize, &err) == CHORD_OK, "%s", err.message);
    gguf_writer_free(w);

    size_t size = 0;
    void *bytes = test_read_file(path, &size);
    CHECK(bytes && size == fsize, "file size %zu vs %llu", size, (unsigned long long)fsize);
    gguf_file *g = NULL;
    if (bytes && gguf_parse(bytes, size, &g, &err) == CHORD_OK) {
        uint64_t u;
        int64_t i;
        double d;
        bool b;
        gguf_str s;
        gguf_value v;
        CHECK(gguf_version(g) == 3 && gguf_alignment(g) == 64, "version/alignment");
        CHECK(gguf_get_str(g, "general.architecture", &s) && gguf_str_eq(s, "llama"), "arch");
        CHECK(gguf_get_u64(g, "x.u32", &u) && u == 456, "u32 replaced");
        CHECK(gguf_get_i64(g, "x.i16", &i) && i == -7, "i16");
        CHECK(gguf_get_f64(g, "x.f64", &d) && d == 2.5, "f64");
        CHECK(gguf_get_f64(g, "x.f32", &d) && d == 0.25, "f32");
        CHECK(gguf_get_bool(g, "x.bool", &b) && b, "bool");
        CHECK(gguf_get_u64(g, "x.u64", &u) && u == 1ull << 40, "u64");
        CHECK(!gguf_find_kv(g, "x.gone"), "removed key absent");
        CHECK(gguf_get_arr(g, "x.arr", &v) && v.arr_n == 5 && gguf_arr_i64(&v, 3) == -4, "arr");
        CHECK(gguf_get_arr(g, "x.strs", &v) && v.arr_n == 3 &&
                  gguf_str_eq(gguf_arr_str(&v, 2), "héllo") && gguf_arr_str(&v, 1).len == 0,
              "str arr");
        if (voc) {
            gguf_value a, c;
            CHECK(gguf_get_arr(voc, "tokenizer.ggml.tokens", &a) &&
                      gguf_get_arr(g, "tokenizer.ggml.tokens", &c) && a.arr_n == c.arr_n,
                  "vocab copied");
            if (a.arr_n == c.arr_n)
                for (uint64_t k = 0; k < a.arr_n; k += 997) {
                    gguf_str x1 = gguf_arr_str(&a, k), x2 = gguf_arr_str(&c, k);
                    CHECK(x1.len == x2.len && !memcmp(x1.ptr, x2.ptr, x1.len), "token %llu",
                          (unsigned long long)k);
                }
        }
        const gguf_tensor *ta = gguf_find_tensor(g, "a"), *tb = gguf_find_tensor(g, "b"),
                          *tc = gguf_find_tensor(g, "c");
        CHECK(ta && tb && tc, "tensors present");
        if (ta && tb && tc) {
            CHECK(ta->type == CHORD_TYPE_Q4_K && ta->ne[0] == 256 && ta->ne[1] == 3, "a info");
            CHECK(!memcmp(ta->data, da, sizeof da), "a bytes");
            CHECK(!memcmp(tb->data, db, sizeof db), "b bytes");
            CHECK(!memcmp(tc->data, dc, sizeof dc), "c bytes");
            CHECK((uintptr_t)((const uint8_t *)tc->data - (const uint8_t *)bytes) % 64 == 0,
                  "aligned");
        }
        gguf_free(g);
    } else {
        CHECK(0, "written file does not parse: %s", err.message);
    }
    free(bytes);
    remove(path);
    gguf_free(voc);
    free(vbytes);

    /* copying a nested array (array of [u8 x3] and [string x1]) keeps its bytes */
    {
        static const uint8_t src[] = {
            'G', 'G', 'U', 'F', 3, 0, 0, 0, 0, 0, 0,   0, 0, 0, 0, 0, 1, 0, 0, 0, 0,   0,
            0,   0,   1,   0,   0, 0, 0, 0, 0, 0, 'n',                /* key */
            9,   0,   0,   0,   9, 0, 0, 0, 2, 0, 0,   0, 0, 0, 0, 0, /* array of 2 arrays */
            0,   0,   0,   0,   3, 0, 0, 0, 0, 0, 0,   0, 1, 2, 3,    /* u8 x3 */
            8,   0,   0,   0,   1, 0, 0, 0, 0, 0, 0,   0, 2, 0, 0, 0, 0, 0, 0, 0, 'h', 'i'};
        gguf_file *sg = NULL, *og = NULL;
        CHECK(gguf_parse(src, sizeof src, &sg, &err) == CHORD_OK, "nested source: %s",
              err.message);
        if (sg) {
            CHECK(gguf_writer_new(&w, &err) == CHORD_OK, "new");
            CHECK(gguf_writer_copy_kvs(w, sg, NULL, &err) == CHORD_OK, "%s", err.message);
            CHECK(gguf_writer_begin(w, path, &err) == CHORD_OK, "%s", err.message);
            CHECK(gguf_writer_finish(w, NULL, &err) == CHORD_OK, "%s", err.message);
            gguf_writer_free(w);
            size_t n2 = 0;
            void *b2 = test_read_file(path, &n2);
            CHECK(b2 && n2 >= sizeof src && !memcmp(b2, src, sizeof src), "nested array bytes");
            if (b2 && gguf_parse(b2, n2, &og, &err) == CHORD_OK) {
                const gguf_kv *kv = gguf_find_kv(og, "n");
                CHECK(kv && kv->value.arr_n == 2 && kv->value.arr_type == GGUF_ARRAY,
                      "nested kv");
                gguf_free(og);
            }
            free(b2);
            remove(path);
            gguf_free(sg);
        }
    }

    /* a writer freed before finish removes its partial file */
    CHECK(gguf_writer_new(&w, &err) == CHORD_OK, "new");
    CHECK(gguf_writer_add_tensor(w, "b", 1, ne_b, CHORD_TYPE_F32, &err) == CHORD_OK, "add");
    CHECK(gguf_writer_begin(w, path, &err) == CHORD_OK, "%s", err.message);
    CHECK(gguf_writer_finish(w, NULL, &err) != CHORD_OK, "finish with missing data refused");
    gguf_writer_free(w);
    FILE *f = fopen(path, "rb");
    CHECK(!f, "partial file removed");
    if (f) fclose(f);
}

/* ------------------------------------------------------------ type rules */

static void test_type_rules(void) {
    const quant_ftype *m = quant_ftype_from_name("q4_k_m");
    CHECK(m && m->base == CHORD_TYPE_Q4_K && m->file_type == 15, "Q4_K_M parsed");
    CHECK(!quant_ftype_from_name("Q7_K"), "unknown type");
    if (!m) return;
    const int64_t mat[2] = {2048, 256}, vec[1] = {2048}, odd[2] = {96, 8}, odder[2] = {100, 8};
    /* 22 layers: n/8 = 2, 7n/8 = 19 -> 0 1 4 7 10 13 16 19 20 21 */
    const int more[] = {0, 1, 4, 7, 10, 13, 16, 19, 20, 21};
    for (int l = 0; l < 22; l++) {
        bool want = false;
        for (size_t k = 0; k < sizeof more / sizeof more[0]; k++)
            want = want || more[k] == l;
        char nv[64], nd[64], nq[64];
        snprintf(nv, sizeof nv, "blk.%d.attn_v.weight", l);
        snprintf(nd, sizeof nd, "blk.%d.ffn_down.weight", l);
        snprintf(nq, sizeof nq, "blk.%d.attn_q.weight", l);
        chord_type tv = quant_tensor_type(m, nv, 2, mat, 22, true, false);
        chord_type td = quant_tensor_type(m, nd, 2, mat, 22, true, false);
        chord_type tq = quant_tensor_type(m, nq, 2, mat, 22, true, false);
        CHECK(tv == (want ? CHORD_TYPE_Q6_K : CHORD_TYPE_Q4_K), "layer %d attn_v: %s", l,
              chord_type_name(tv));
        CHECK(td == (want ? CHORD_TYPE_Q6_K : CHORD_TYPE_Q4_K), "layer %d ffn_down: %s", l,
              chord_type_name(td));
        CHECK(tq == CHORD_TYPE_Q4_K, "layer %d attn_q", l);
        CHECK(quant_tensor_type(m, nv, 2, mat, 22, true, true) == CHORD_TYPE_Q4_K, "pure");
    }
    CHECK(quant_tensor_type(m, "output.weight", 2, mat, 22, true, false) == CHORD_TYPE_Q6_K,
          "output");
    CHECK(quant_tensor_type(m, "token_embd.weight", 2, mat, 22, true, false) == CHORD_TYPE_Q4_K,
          "embd");
    CHECK(quant_tensor_type(m, "token_embd.weight", 2, mat, 22, false, false) ==
              CHORD_TYPE_Q6_K,
          "tied embd is the output");
    CHECK(quant_tensor_type(m, "blk.0.attn_norm.weight", 1, vec, 22, true, false) ==
              CHORD_TYPE_F32,
          "norm");
    CHECK(quant_tensor_type(m, "blk.3.attn_q.weight", 2, odd, 22, true, false) ==
              CHORD_TYPE_Q5_0,
          "fallback");
    CHECK(quant_tensor_type(m, "blk.3.attn_q.weight", 2, odder, 22, true, false) ==
              CHORD_TYPE_F16,
          "fallback 2");
    const quant_ftype *q8 = quant_ftype_from_name("Q8_0"), *f16 = quant_ftype_from_name("F16");
    CHECK(quant_tensor_type(q8, "output.weight", 2, mat, 22, true, false) == CHORD_TYPE_Q8_0,
          "q8 output");
    CHECK(quant_tensor_type(f16, "output.weight", 2, mat, 22, true, false) == CHORD_TYPE_F16,
          "f16 output");
    const quant_ftype *m5 = quant_ftype_from_name("Q5_K_M");
    CHECK(quant_tensor_type(m5, "blk.1.attn_v.weight", 2, mat, 22, true, false) ==
                  CHORD_TYPE_Q6_K &&
              quant_tensor_type(m5, "blk.2.attn_v.weight", 2, mat, 22, true, false) ==
                  CHORD_TYPE_Q5_K,
          "Q5_K_M");
}

/* ------------------------------------------------------------ the engine */

static chord_status synth_row(void *user, uint64_t t, int64_t row, float *dst,
                              chord_error *err) {
    (void)user;
    (void)err;
    uint64_t s = (t + 1) * 0x9E3779B97F4A7C15ull ^ (uint64_t)(row + 1) * 0xD1342543DE82EF95ull;
    const int64_t n = t == 2 ? 64 : 512;
    for (int64_t i = 0; i < n; i++)
        dst[i] = rng_gauss(&s);
    return CHORD_OK;
}

static void test_engine(void) {
    static const char *names[3] = {"m", "n", "o"};
    qm_tensor ts[3] = {{names[0], 2, {512, 300, 1, 1}, CHORD_TYPE_Q4_K, CHORD_TYPE_F32, NULL},
                       {names[1], 2, {512, 7, 1, 1}, CHORD_TYPE_Q6_K, CHORD_TYPE_F32, NULL},
                       {names[2], 1, {64, 1, 1, 1}, CHORD_TYPE_F32, CHORD_TYPE_F32, NULL}};
    void *files[2] = {NULL, NULL};
    size_t sizes[2] = {0, 0};
    const int threads[2] = {1, 4};
    for (int k = 0; k < 2; k++) {
        char path[64];
        snprintf(path, sizeof path, "test_quantize_rt_engine_%d_%d.gguf", (int)getpid(), k);
        chord_error err = {0};
        gguf_writer *w = NULL;
        gguf_writer_new(&w, &err);
        qm_params p = {threads[k], NULL, NULL};
        chord_status st = qm_write_model(w, path, ts, 3, synth_row, NULL, &p, NULL, &err);
        CHECK(st == CHORD_OK, "engine (%d threads): %s", threads[k], err.message);
        gguf_writer_free(w);
        files[k] = test_read_file(path, &sizes[k]);
        remove(path);
    }
    CHECK(files[0] && files[1] && sizes[0] == sizes[1] && !memcmp(files[0], files[1], sizes[0]),
          "1 and 4 threads give the same file");
    /* and the rows are chord_quantize_row's */
    gguf_file *g = NULL;
    chord_error err = {0};
    if (files[0] && gguf_parse(files[0], sizes[0], &g, &err) == CHORD_OK) {
        const gguf_tensor *t = gguf_find_tensor(g, "m");
        float x[512];
        uint8_t q[288];
        synth_row(NULL, 0, 123, x, NULL);
        chord_quantize_row(CHORD_TYPE_Q4_K, x, q, 512);
        CHECK(t && !memcmp((const uint8_t *)t->data + 123 * 288, q, 288), "row 123 of m");
        gguf_free(g);
    }
    free(files[0]);
    free(files[1]);
}

int main(void) {
    test_random_rows();
    test_special_rows();
    test_writer();
    test_type_rules();
    test_engine();
    return test_summary("test_quantize_rt");
}
