/* The attention batch kernels (cpu_kernels.attn_batch) against a straightforward scalar
 * attention of one query at a time, with backend_cpu.c's per-query arithmetic: bit for
 * bit, for odd head sizes, partial batches and keys lengths that differ per query. */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "cpu/kernels.h"
#include "testutil.h"

static float rh(float x) {
    return chord_half_to_float(chord_float_to_half(x));
}

/* one query, as backend_cpu.c's attn_fn */
static void ref_query(const float *q, int len, const chord_half *k, size_t ldk,
                      const chord_half *vt, size_t ldv, int hd, float scale, float *out) {
    float *qr = malloc(sizeof(float) * (size_t)hd);
    float *sc = malloc(sizeof(float) * (size_t)(len + 16));
    for (int i = 0; i < hd; i++)
        qr[i] = rh(q[i]);
    float mx = -INFINITY;
    for (int p = 0; p < len; p++) {
        cpu_vec_dot_f16_scalar(hd, &sc[p], k + (size_t)p * ldk, qr);
        sc[p] *= scale;
        if (sc[p] > mx) mx = sc[p];
    }
    const int len16 = (len + 15) & ~15;
    for (int p = 0; p < len; p++)
        sc[p] -= mx;
    for (int p = len; p < len16; p++)
        sc[p] = -INFINITY;
    cpu_exp_scalar(len16, sc, sc);
    double sum = 0;
    for (int p = 0; p < len16; p += 16) {
        float a[8], b[4];
        for (int i = 0; i < 8; i++)
            a[i] = sc[p + i] + sc[p + i + 8];
        for (int i = 0; i < 4; i++)
            b[i] = a[i] + a[i + 4];
        sum += (b[0] + b[2]) + (b[1] + b[3]);
    }
    const float inv = (float)(1.0 / sum);
    for (int p = 0; p < len; p++)
        sc[p] = rh(sc[p] * inv);
    for (int i = 0; i < hd; i++)
        cpu_vec_dot_f16_scalar(len, &out[i], vt + (size_t)i * ldv, sc);
    free(qr);
    free(sc);
}

static void test_case(const cpu_kernels *k, int hd, int nq, int len0, int step, uint64_t *s) {
    const int n_ctx = len0 + step * nq + 40;
    const size_t ldk = (size_t)hd + 3, ldv = (size_t)n_ctx + 5;
    chord_half *kc = malloc(sizeof(chord_half) * ldk * (size_t)n_ctx);
    chord_half *vt = malloc(sizeof(chord_half) * ldv * (size_t)hd);
    float *q = malloc(sizeof(float) * 16 * (size_t)hd);
    float *o = malloc(sizeof(float) * 16 * (size_t)hd), *r = malloc(sizeof(float) * (size_t)hd);
    float *scratch = malloc(sizeof(float) * (CPU_ATTN_SCRATCH(hd, n_ctx) + 1));
    for (size_t i = 0; i < ldk * (size_t)n_ctx; i++)
        kc[i] = chord_float_to_half(test_rand_sym(s) * 2.0f);
    for (size_t i = 0; i < ldv * (size_t)hd; i++)
        vt[i] = chord_float_to_half(test_rand_sym(s));
    for (int i = 0; i < 16 * hd; i++)
        q[i] = test_rand_sym(s) * (i % 7 == 0 ? 8.0f : 2.0f);
    cpu_attn_batch b;
    memset(&b, 0, sizeof b);
    b.nq = nq;
    b.hd = hd;
    b.k = kc;
    b.vt = vt;
    b.ldk = ldk;
    b.ldv = ldv;
    b.scale = 1.0f / sqrtf((float)hd);
    b.exp = k->exp;
    b.scratch = scratch + 1; /* not aligned */
    for (int j = 0; j < nq; j++) {
        b.q[j] = q + (size_t)j * hd;
        b.out[j] = o + (size_t)j * hd;
        b.len[j] = len0 + step * j;
    }
    k->attn_batch(&b);
    int bad = 0;
    for (int j = 0; j < nq; j++) {
        ref_query(b.q[j], b.len[j], kc, ldk, vt, ldv, hd, b.scale, r);
        bad += memcmp(r, b.out[j], sizeof(float) * (size_t)hd) != 0;
    }
    CHECK(bad == 0, "%s hd=%d nq=%d len0=%d step=%d: %d queries differ", cpu_isa_name(k->isa),
          hd, nq, len0, step, bad);
    free(kc);
    free(vt);
    free(q);
    free(o);
    free(r);
    free(scratch);
}

int main(void) {
    uint64_t seed = 777;
    const cpu_isa best = cpu_isa_detect();
    int tested = 0;
    for (int isa = CPU_ISA_SCALAR; isa <= (int)best; isa++) {
        const cpu_kernels *k = cpu_kernels_get((cpu_isa)isa);
        if (!k->attn_batch) continue;
        tested++;
        static const int HD[] = {64, 8, 40, 80, 128, 17};
        static const int NQ[] = {16, 1, 4, 9};
        static const int LEN[] = {1, 15, 16, 33, 300};
        for (size_t h = 0; h < sizeof HD / sizeof HD[0]; h++)
            for (size_t n = 0; n < sizeof NQ / sizeof NQ[0]; n++)
                for (size_t l = 0; l < sizeof LEN / sizeof LEN[0]; l++) {
                    test_case(k, HD[h], NQ[n], LEN[l], 0, &seed);
                    test_case(k, HD[h], NQ[n], LEN[l], 1, &seed);
                }
    }
    if (!tested) printf("no ISA here has an attention batch kernel\n");
    return test_summary("test_attn");
}
