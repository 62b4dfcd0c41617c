/* `chord bench --kernels` and CPU facts: fused quantized matvec against the naive way
 * (dequantize the row to floats, then a float dot), in GB/s of weights read. */
#include "bench_kernels.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "context.h"
#include "cpu/kernels.h"
#include "cpu/matmul.h"
#include "cpu/threadpool.h"

int bench_print_isas(void) {
    cpu_isa best = cpu_isa_hardware();
    for (int i = 0; i <= (int)best; i++) printf("%s%s", i ? " " : "", cpu_isa_name((cpu_isa)i));
    printf("\n");
    return 0;
}

int bench_context_threads(const chord_context *ctx) {
    return chord_backend_cpu_threads(ctx->backends[0]);
}

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

typedef struct naive_job {
    const chord_weight *w;
    const float *x;
    float *y;
    float *rows; /* per thread: one dequantized row */
} naive_job;

static void naive_fn(void *arg, int ith, int nth) {
    naive_job *j = arg;
    const chord_type_traits *tr = chord_type_get(j->w->type);
    size_t rs = chord_row_size(j->w->type, j->w->n_in);
    float *row = j->rows + (size_t)ith * j->w->n_in;
    for (int64_t o = j->w->n_out * ith / nth; o < j->w->n_out * (ith + 1) / nth; o++) {
        tr->to_float((const char *)j->w->host + (size_t)o * rs, row, j->w->n_in);
        float s = 0;
        for (int64_t i = 0; i < j->w->n_in; i++) s += row[i] * j->x[i];
        j->y[o] = s;
    }
}

/* A TinyLlama ffn_up-shaped matrix (5632 x 2048) of random blocks. */
int bench_kernels(int n_threads) {
    static const chord_type TYPES[] = {CHORD_TYPE_F32,  CHORD_TYPE_F16,  CHORD_TYPE_BF16, CHORD_TYPE_Q8_0,
                                       CHORD_TYPE_Q4_0, CHORD_TYPE_Q4_1, CHORD_TYPE_Q5_0, CHORD_TYPE_Q5_1,
                                       CHORD_TYPE_Q2_K, CHORD_TYPE_Q3_K, CHORD_TYPE_Q4_K, CHORD_TYPE_Q5_K,
                                       CHORD_TYPE_Q6_K};
    const int64_t n_in = 2048, n_out = 5632;
    cpu_pool *pool = cpu_pool_new(n_threads);
    cpu_matmul_ctx *mm = cpu_matmul_ctx_new();
    const cpu_kernels *k = cpu_kernels_pick(cpu_isa_detect(), cpu_exact_requested());
    if (!pool || !mm) {
        fprintf(stderr, "chord: could not start threads\n");
        return 1;
    }
    int nt = cpu_pool_size(pool);
    float *x = malloc(sizeof(float) * n_in), *y = malloc(sizeof(float) * n_out);
    float *rows = malloc(sizeof(float) * n_in * nt);
    for (int64_t i = 0; i < n_in; i++) x[i] = (float)((i * 7919) % 1000) / 1000.0f - 0.5f;
    printf("fused vs naive matvec, %lld x %lld, %s, %d thread%s (GB/s of weights; best of 5)\n",
           (long long)n_out, (long long)n_in, cpu_isa_name(k->isa), nt, nt == 1 ? "" : "s");
    printf("| type | MiB | fused GB/s | naive GB/s | speedup |\n| --- | ---: | ---: | ---: | ---: |\n");
    for (size_t ti = 0; ti < sizeof TYPES / sizeof TYPES[0]; ti++) {
        chord_type t = TYPES[ti];
        size_t bytes = chord_row_size(t, n_in) * (size_t)n_out;
        uint8_t *data = malloc(bytes);
        /* random bytes, then sane scales: half/bf16 fields must not be inf/NaN */
        unsigned r = 1;
        for (size_t i = 0; i < bytes; i++) data[i] = (uint8_t)((r = r * 1103515245u + 12345u) >> 16);
        const chord_type_traits *tr = chord_type_get(t);
        float *tmp = malloc(sizeof(float) * n_in);
        if (t == CHORD_TYPE_F32 || t == CHORD_TYPE_F16 || t == CHORD_TYPE_BF16) {
            for (int64_t o = 0; o < n_out; o++) {
                for (int64_t i = 0; i < n_in; i++) tmp[i] = (float)(((o + i) * 31) % 97) / 97.0f - 0.5f;
                tr->from_float(tmp, data + (size_t)o * chord_row_size(t, n_in), n_in);
            }
        } else {
            /* keep the bit patterns but make every half in the block finite */
            for (size_t i = 0; i + 1 < bytes; i += 2)
                if ((data[i + 1] & 0x7c) == 0x7c) data[i + 1] &= 0x3b;
        }
        free(tmp);
        chord_weight w = {.type = t, .n_in = n_in, .n_out = n_out, .host = data, .nbytes = bytes};
        const chord_weight *ws[1] = {&w};
        float *ys[1] = {y};
        double best_f = 1e9, best_n = 1e9;
        for (int rep = 0; rep < 6; rep++) {
            double t0 = now();
            cpu_matmul(pool, k, mm, 1, ys, ws, x, 1, NULL);
            double t1 = now();
            naive_job nj = {&w, x, y, rows};
            cpu_pool_run(pool, naive_fn, &nj);
            double t2 = now();
            if (rep) { /* the first pass pages the matrix in */
                if (t1 - t0 < best_f) best_f = t1 - t0;
                if (t2 - t1 < best_n) best_n = t2 - t1;
            }
        }
        printf("| %s | %.1f | %.1f | %.1f | %.1fx |\n", chord_type_name(t), bytes / 1048576.0,
               bytes / best_f / 1e9, bytes / best_n / 1e9, best_n / best_f);
        fflush(stdout);
        free(data);
    }
    free(x);
    free(y);
    free(rows);
    cpu_matmul_ctx_free(mm);
    cpu_pool_free(pool);
    return 0;
}
