/* Elementwise kernels (exp, SwiGLU): every ISA gives the scalar reference's bits, on
 * random data, odd lengths and the special values; the reference is within 2.5 ulp of e^x. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cpu/kernels.h"
#include "testutil.h"

static uint64_t rng = 0x9e3779b97f4a7c15u;
static float uniform(float lo, float hi) {
    rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
    return lo + (hi - lo) * (float)((rng >> 40) * 0x1p-24);
}

static int same_bits(float a, float b) {
    if (isnan(a) && isnan(b)) return 1;
    return memcmp(&a, &b, sizeof a) == 0;
}

/* distance in representable floats (same sign, finite) */
static double ulps(float got, double want) {
    float w = (float)want;
    float next = nextafterf(w, INFINITY) - w;
    return fabs((double)got - want) / (double)next;
}

static const float SPECIAL[] = {0.0f,
                                -0.0f,
                                1.0f,
                                -1.0f,
                                88.7f,
                                88.72284f,
                                89.0f,
                                -87.3f,
                                -87.34f,
                                -103.9f,
                                -104.0f,
                                -150.0f,
                                133.0f,
                                -133.0f,
                                192.0f * 0.6931472f,
                                -193.0f * 0.6931472f,
                                1e30f,
                                -1e30f,
                                INFINITY,
                                -INFINITY,
                                NAN,
                                1e-30f,
                                -1e-30f,
                                0.34657359f};
#define N_SPECIAL (int)(sizeof SPECIAL / sizeof SPECIAL[0])

static void fill(float *x, int n, int pattern) {
    for (int i = 0; i < n; i++) {
        switch (pattern) {
        case 0: x[i] = uniform(-1.0f, 1.0f); break;
        case 1: x[i] = uniform(-110.0f, 100.0f); break;
        case 2: x[i] = uniform(-12.0f, 0.0f); break; /* softmax scores - max */
        default: x[i] = SPECIAL[i % N_SPECIAL]; break;
        }
    }
}

static void test_isa(cpu_isa isa) {
    const cpu_kernels *ref = cpu_kernels_get(CPU_ISA_SCALAR), *k = cpu_kernels_get(isa);
    enum { MAXN = 1027 };
    static float x[MAXN], u[MAXN], want[MAXN], got[MAXN];
    const int sizes[] = {1, 7, 8, 15, 16, 17, 31, 33, 64, 67, MAXN};
    int bad = 0;
    for (int pattern = 0; pattern < 4; pattern++) {
        for (size_t si = 0; si < sizeof sizes / sizeof sizes[0]; si++) {
            const int n = sizes[si];
            fill(x, n, pattern);
            fill(u, n, 0);
            ref->exp(n, want, x);
            k->exp(n, got, x);
            for (int i = 0; i < n; i++)
                bad += !same_bits(got[i], want[i]);
            memcpy(got, x, sizeof(float) * (size_t)n); /* in place */
            k->exp(n, got, got);
            for (int i = 0; i < n; i++)
                bad += !same_bits(got[i], want[i]);
            ref->swiglu(n, want, x, u);
            k->swiglu(n, got, x, u);
            for (int i = 0; i < n; i++)
                bad += !same_bits(got[i], want[i]);
        }
    }
    CHECK(bad == 0, "%s: %d results differ from the scalar reference", cpu_isa_name(isa), bad);
}

static void test_reference(void) {
    const cpu_kernels *ref = cpu_kernels_get(CPU_ISA_SCALAR);
    double worst = 0;
    enum { N = 200000 };
    float *x = malloc(N * sizeof(float)), *y = malloc(N * sizeof(float));
    for (int i = 0; i < N; i++)
        x[i] = -87.0f + 175.0f * (float)i / N;
    ref->exp(N, y, x);
    for (int i = 0; i < N; i++) {
        double e = ulps(y[i], exp((double)x[i]));
        if (e > worst) worst = e;
    }
    printf("exp reference: worst error %.2f ulp on [-87, 88]\n", worst);
    CHECK(worst < 2.5, "exp error %.2f ulp", worst);
    float s[8] = {0.0f, -0.0f, INFINITY, -INFINITY, NAN, 100.0f, -120.0f, 1.0f};
    ref->exp(8, y, s);
    CHECK(y[0] == 1.0f && y[1] == 1.0f, "e^0 = 1");
    CHECK(isinf(y[2]) && y[2] > 0, "e^inf = inf");
    CHECK(y[3] == 0.0f, "e^-inf = 0");
    CHECK(isnan(y[4]), "e^NaN = NaN");
    CHECK(isinf(y[5]), "e^100 overflows");
    CHECK(y[6] == 0.0f || y[6] < 1e-45f, "e^-120 underflows");
    CHECK(fabsf(y[7] - 2.7182817f) <= 2.4e-7f, "e^1");
    float g[3] = {0.0f, 20.0f, -20.0f}, one[3] = {1, 1, 1};
    ref->swiglu(3, y, g, one);
    CHECK(y[0] == 0.0f && fabsf(y[1] - 20.0f) < 1e-5f && fabsf(y[2]) < 1e-7f, "silu values");
    free(x);
    free(y);
}

int main(void) {
    test_reference();
    const cpu_isa best = cpu_isa_detect();
    for (int isa = CPU_ISA_SCALAR + 1; isa <= (int)best; isa++)
        test_isa((cpu_isa)isa);
    if (best == CPU_ISA_SCALAR) printf("only the scalar ISA on this CPU\n");
    return test_summary("test_activ");
}
