/* Kernel benchmark: for each weight type and ISA, the decode matvec (2048 x 5632 by
 * default, through cpu_matmul: activation quantization and threading included) in GB/s
 * of weights, with 1 and nT (--threads) threads, from DRAM ("cold": the matrices
 * rotate through a buffer larger than the L3) and from cache ("hot": one matrix again
 * and again); a "naive" matvec (dequantize each row with the reference dequantizer,
 * then a float dot) for comparison; and prefill (gemm, --tokens rows at once) in
 * GFLOP/s. Every number is the best of a few runs: the machine may be shared.
 *
 *   tool_kernel_bench [--types Q4_K,Q8_0] [--isa avx512] [--rows 2048] [--cols 5632]
 *                     [--tokens 512] [--mb 768] [--threads 2] [--time 0.3]
 */
#define _GNU_SOURCE
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cpu/kernels.h"
#include "cpu/matmul.h"
#include "cpu/threadpool.h"

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

static uint64_t rng(uint64_t *s) {
    uint64_t x = *s += 0x9e3779b97f4a7c15ull;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
    return x ^ (x >> 31);
}
static float frand(uint64_t *s) {
    return (float)((double)(rng(s) >> 40) / 16777216.0 * 2 - 1);
}

static const chord_type TYPES[] = {
    CHORD_TYPE_F32,  CHORD_TYPE_F16,  CHORD_TYPE_BF16, CHORD_TYPE_Q4_0, CHORD_TYPE_Q4_1,
    CHORD_TYPE_Q5_0, CHORD_TYPE_Q5_1, CHORD_TYPE_Q8_0, CHORD_TYPE_Q2_K, CHORD_TYPE_Q3_K,
    CHORD_TYPE_Q4_K, CHORD_TYPE_Q5_K, CHORD_TYPE_Q6_K,
};

/* Fill `bytes` of weights of type t: random quants, small sane scales. */
static void fill(chord_type t, uint8_t *p, size_t bytes, uint64_t *s) {
    const chord_type_traits *tr = chord_type_get(t);
    if (t == CHORD_TYPE_F32) {
        for (size_t i = 0; i + 4 <= bytes; i += 4) {
            float v = frand(s);
            memcpy(p + i, &v, 4);
        }
        return;
    }
    if (t == CHORD_TYPE_F16 || t == CHORD_TYPE_BF16) {
        for (size_t i = 0; i + 2 <= bytes; i += 2) {
            float v = frand(s);
            uint16_t h = t == CHORD_TYPE_F16 ? chord_float_to_half(v) : chord_float_to_bf16(v);
            memcpy(p + i, &h, 2);
        }
        return;
    }
    for (size_t i = 0; i + 8 <= bytes; i += 8) {
        uint64_t r = rng(s);
        memcpy(p + i, &r, 8);
    }
    /* offsets of the half scales in each block */
    int off[2] = {-1, -1};
    switch (t) {
    case CHORD_TYPE_Q4_0:
    case CHORD_TYPE_Q5_0:
    case CHORD_TYPE_Q8_0: off[0] = 0; break;
    case CHORD_TYPE_Q4_1:
    case CHORD_TYPE_Q5_1:
        off[0] = 0;
        off[1] = 2;
        break;
    case CHORD_TYPE_Q2_K:
        off[0] = 80;
        off[1] = 82;
        break;
    case CHORD_TYPE_Q3_K: off[0] = 108; break;
    case CHORD_TYPE_Q4_K:
    case CHORD_TYPE_Q5_K:
        off[0] = 0;
        off[1] = 2;
        break;
    case CHORD_TYPE_Q6_K: off[0] = 208; break;
    default: break;
    }
    const uint16_t h = chord_float_to_half(0.01f);
    for (size_t b = 0; b + tr->type_size <= bytes; b += tr->type_size)
        for (int i = 0; i < 2; i++)
            if (off[i] >= 0) memcpy(p + b + off[i], &h, 2);
}

typedef struct {
    const chord_weight *w;
    const float *x;
    float *y;
    float *tmp; /* per thread n_in floats */
} naive_job;

static void naive_matvec(const chord_weight *w, const float *x, float *y, float *tmp) {
    const chord_type_traits *tr = chord_type_get(w->type);
    const size_t rs = chord_row_size(w->type, w->n_in);
    for (int64_t o = 0; o < w->n_out; o++) {
        tr->to_float((const uint8_t *)w->host + o * rs, tmp, w->n_in);
        float s = 0;
        for (int64_t i = 0; i < w->n_in; i++)
            s += tmp[i] * x[i];
        y[o] = s;
    }
}

typedef struct {
    const uint8_t *buf;
    size_t bytes;
    uint64_t sums[64];
} bw_job;
static void bw_fn(void *arg, int ith, int nth) {
    bw_job *j = arg;
    const size_t per = j->bytes / (size_t)nth / 64 * 64;
    const uint64_t *p = (const uint64_t *)(j->buf + per * (size_t)ith);
    uint64_t s0 = 0, s1 = 0, s2 = 0, s3 = 0;
    for (size_t i = 0; i < per / 8; i += 8) { /* one cache line per step, prefetched */
        __builtin_prefetch((const char *)(p + i) + 4096);
        s0 += p[i] + p[i + 4];
        s1 += p[i + 1] + p[i + 5];
        s2 += p[i + 2] + p[i + 6];
        s3 += p[i + 3] + p[i + 7];
    }
    j->sums[ith] = s0 + s1 + s2 + s3;
}

int main(int argc, char **argv) {
    const char *types_arg = NULL, *isa_arg = NULL;
    int rows = 2048, cols = 5632, tokens = 512, mb = 768, max_threads = 2;
    double tmin = 0.3;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--types") && v)
            types_arg = argv[++i];
        else if (!strcmp(a, "--isa") && v)
            isa_arg = argv[++i];
        else if (!strcmp(a, "--rows") && v)
            rows = atoi(argv[++i]);
        else if (!strcmp(a, "--cols") && v)
            cols = atoi(argv[++i]);
        else if (!strcmp(a, "--tokens") && v)
            tokens = atoi(argv[++i]);
        else if (!strcmp(a, "--mb") && v)
            mb = atoi(argv[++i]);
        else if (!strcmp(a, "--threads") && v)
            max_threads = atoi(argv[++i]);
        else if (!strcmp(a, "--time") && v)
            tmin = atof(argv[++i]);
        else {
            fprintf(stderr,
                    "usage: %s [--types Q4_K,..] [--isa avx512] [--rows N] [--cols N] "
                    "[--tokens N] [--mb N] [--threads N] [--time S]\n",
                    argv[0]);
            return 2;
        }
    }
    const size_t buf_bytes = (size_t)mb << 20;
    uint8_t *buf = aligned_alloc(4096, buf_bytes);
    float *x = aligned_alloc(64, sizeof(float) * (size_t)cols * tokens);
    float *y = aligned_alloc(64, sizeof(float) * (size_t)rows * tokens);
    float *tmp = aligned_alloc(64, sizeof(float) * (size_t)cols);
    if (!buf || !x || !y || !tmp) {
        fprintf(stderr, "out of memory\n");
        return 1;
    }
    uint64_t seed = 1;
    for (size_t i = 0; i < (size_t)cols * tokens; i++)
        x[i] = frand(&seed);
    memset(buf, 1, buf_bytes);

    cpu_pool *pools[9] = {0};
    for (int t = 1; t <= max_threads && t <= 8; t++)
        pools[t] = cpu_pool_new(t);
    cpu_matmul_ctx *ctx = cpu_matmul_ctx_new();

    /* raw read bandwidth */
    printf("memory read bandwidth (%d MiB buffer):", mb);
    for (int t = 1; t <= max_threads && t <= 8; t++) {
        bw_job j = {.buf = buf, .bytes = buf_bytes};
        double best = 1e30;
        for (int r = 0; r < 5; r++) {
            double t0 = now();
            cpu_pool_run(pools[t], bw_fn, &j);
            double dt = now() - t0;
            if (dt < best) best = dt;
        }
        printf("  %dT %.1f GB/s", t, (double)buf_bytes / best / 1e9);
    }
    printf("\n");
    printf("matvec %d x %d (GB/s of weights, best of runs; cold = from DRAM, hot = cached), "
           "prefill %d tokens (GFLOP/s)\n",
           rows, cols, tokens);
    printf("%-5s %-7s %7s %8s %8s %8s %8s %9s %9s %9s\n", "type", "isa", "MiB", "cold 1T",
           "cold nT", "hot 1T", "hot nT", "naive 1T", "gemm 1T", "gemm nT");

    const cpu_isa best_isa = cpu_isa_detect();
    for (size_t ti = 0; ti < sizeof TYPES / sizeof TYPES[0]; ti++) {
        const chord_type t = TYPES[ti];
        if (types_arg) {
            const char *p = types_arg, *nm = chord_type_name(t);
            int found = 0;
            while (*p) {
                size_t l = strcspn(p, ",");
                if (l == strlen(nm) && !strncasecmp(p, nm, l)) found = 1;
                p += l + (p[l] == ',');
            }
            if (!found) continue;
        }
        const size_t mat_bytes = chord_row_size(t, cols) * (size_t)rows;
        const int n_mats = (int)(buf_bytes / mat_bytes) < 1 ? 1 : (int)(buf_bytes / mat_bytes);
        if (mat_bytes > buf_bytes) {
            fprintf(stderr, "%s: matrix larger than --mb\n", chord_type_name(t));
            continue;
        }
        fill(t, buf, mat_bytes * (size_t)n_mats, &seed);
        chord_weight w = {
            .name = "bench", .type = t, .n_in = cols, .n_out = rows, .nbytes = mat_bytes};
        double naive = 0;
        {
            int reps = 0;
            double t0 = now(), bestdt = 1e30;
            while (reps < 3 || now() - t0 < tmin) {
                w.host = buf + (size_t)(reps % n_mats) * mat_bytes;
                double t1 = now();
                naive_matvec(&w, x, y, tmp);
                double dt = now() - t1;
                if (dt < bestdt) bestdt = dt;
                reps++;
                if (reps > 20) break;
            }
            naive = (double)mat_bytes / bestdt / 1e9;
        }
        for (int isa = 0; isa <= (int)best_isa; isa++) {
            if (isa_arg && strcasecmp(isa_arg, cpu_isa_name((cpu_isa)isa))) continue;
            const cpu_kernels *k = cpu_kernels_get((cpu_isa)isa);
            double res[4] = {0, 0, 0, 0}; /* cold 1T, cold nT, hot 1T, hot nT */
            for (int mode = 0; mode < 4; mode++) {
                const int nt = mode == 0 || mode == 2 ? 1 : max_threads;
                const int hot = mode >= 2;
                if (!pools[nt]) continue;
                const chord_weight *wp[1] = {&w};
                float *ys[1] = {y};
                chord_error err;
                /* runs of ~tmin: a run = passes over n_mats matrices (cold) or 1 (hot);
                 * keep the best run (other engineers share the machine) */
                double bestrate = 0;
                for (int run = 0; run < 3; run++) {
                    int reps = 0;
                    double t0 = now();
                    do {
                        w.host = buf + (size_t)(hot ? 0 : reps % n_mats) * mat_bytes;
                        cpu_matmul(pools[nt], k, ctx, 1, ys, wp, x, 1, &err);
                        reps++;
                    } while (now() - t0 < tmin / 3 ||
                             (!hot && reps < n_mats && now() - t0 < tmin));
                    const double rate = (double)mat_bytes * reps / (now() - t0) / 1e9;
                    if (rate > bestrate) bestrate = rate;
                }
                res[mode] = bestrate;
            }
            /* prefill */
            double gf[2] = {0, 0};
            for (int m = 0; m < 2; m++) {
                const int nt = m == 0 ? 1 : max_threads;
                if (!pools[nt]) continue;
                int ntok = isa == CPU_ISA_SCALAR ? (tokens < 8 ? tokens : 8) : tokens;
                const chord_weight *wp[1] = {&w};
                float *ys[1] = {y};
                chord_error err;
                w.host = buf;
                double bestdt = 1e30;
                for (int r = 0; r < 3; r++) {
                    double t0 = now();
                    cpu_matmul(pools[nt], k, ctx, 1, ys, wp, x, ntok, &err);
                    double dt = now() - t0;
                    if (dt < bestdt) bestdt = dt;
                    if (dt > 2.0) break;
                }
                gf[m] = 2.0 * rows * (double)cols * ntok / bestdt / 1e9;
            }
            printf("%-5s %-7s %7.1f %8.1f %8.1f %8.1f %8.1f %9.2f %9.1f %9.1f\n",
                   chord_type_name(t), cpu_isa_name((cpu_isa)isa), mat_bytes / 1048576.0,
                   res[0], res[1], res[2], res[3], naive, gf[0], gf[1]);
            fflush(stdout);
        }
    }
    cpu_matmul_ctx_free(ctx);
    for (int t = 0; t <= 8; t++)
        cpu_pool_free(pools[t]);
    free(buf);
    free(x);
    free(y);
    free(tmp);
    return 0;
}
