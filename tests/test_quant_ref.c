/* Scalar reference (de)quantizers: half/bf16 conversion, quantizer round trips, and
 * dequantization of hand-built blocks of every type.
 *
 * The crafted-block tests pack per-element values with packers written here from the
 * per-element description of each layout (where does element i's bits go), which is a
 * different derivation from the loop structure in src/quant/ref.c. */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "quant/types.h"
#include "testutil.h"

static uint32_t f2u(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    return u;
}
static float u2f(uint32_t u) {
    float f;
    memcpy(&f, &u, 4);
    return f;
}

/* xorshift64*: deterministic, local state */
static uint64_t rng_next(uint64_t *s) {
    *s ^= *s >> 12;
    *s ^= *s << 25;
    *s ^= *s >> 27;
    return *s * 2685821657736338717ull;
}
static int rng_int(uint64_t *s, int n) {
    return (int)(rng_next(s) >> 33) % n;
}
static float rng_uniform(uint64_t *s) { /* [-1, 1) */
    return (float)((double)(rng_next(s) >> 11) / 9007199254740992.0 * 2.0 - 1.0);
}

/* ------------------------------------------------------------------- half */

/* Independent decoding of a half: (-1)^s * 2^(e-15) * (1 + m/1024), subnormals
 * 2^-14 * m/1024. */
static double half_value(uint16_t h) {
    int s = h >> 15, e = (h >> 10) & 31, m = h & 1023;
    double v = e == 0 ? ldexp(m, -24) : ldexp(1024 + m, e - 25);
    return s ? -v : v;
}

static void test_half(void) {
    int bad_rt = 0, bad_val = 0;
    for (uint32_t h = 0; h < 65536; h++) {
        int e = (h >> 10) & 31, m = h & 1023;
        float f = chord_half_to_float((chord_half)h);
        if (e == 31) {
            if (m == 0) {
                if (!(isinf(f) && (signbit(f) != 0) == (h >> 15))) bad_val++;
            } else if (!isnan(f)) {
                bad_val++;
            }
            if (m != 0) continue; /* NaN: no round trip requirement */
        } else if ((double)f != half_value((uint16_t)h) || (signbit(f) != 0) != (h >> 15)) {
            bad_val++;
        }
        if (chord_float_to_half(f) != h) bad_rt++;
    }
    CHECK(bad_val == 0, "%d halves decode to the wrong float", bad_val);
    CHECK(bad_rt == 0, "%d halves do not round-trip", bad_rt);

    /* known values */
    CHECK(chord_half_to_float(0x3C00) == 1.0f, "1.0");
    CHECK(chord_half_to_float(0xC000) == -2.0f, "-2.0");
    CHECK(chord_half_to_float(0x7BFF) == 65504.0f, "max half");
    CHECK(chord_half_to_float(0x0001) == ldexpf(1.0f, -24), "min subnormal");
    CHECK(chord_half_to_float(0x0400) == ldexpf(1.0f, -14), "min normal");
    CHECK(chord_half_to_float(0x3555) == 0.333251953125f, "1/3");

    /* float -> half rounding: ties to even */
    struct {
        float f;
        uint16_t h;
    } cases[] = {
        {1.0f + ldexpf(1, -11), 0x3C00},                  /* tie, even is down */
        {1.0f + 3 * ldexpf(1, -11), 0x3C02},              /* tie, even is up */
        {1.0f + ldexpf(1, -11) + ldexpf(1, -20), 0x3C01}, /* just above tie */
        {1.0f + ldexpf(1, -11) - ldexpf(1, -23), 0x3C00}, /* just below tie */
        {-(1.0f + 3 * ldexpf(1, -11)), 0xBC02},
        {65504.0f, 0x7BFF},
        {65519.0f, 0x7BFF}, /* below the tie */
        {65520.0f, 0x7C00}, /* tie -> 65536 = inf */
        {1e10f, 0x7C00},
        {-1e10f, 0xFC00},
        {ldexpf(1, -25), 0x0000}, /* tie between 0 and min */
        {ldexpf(1, -25) * 1.0001f, 0x0001},
        {3 * ldexpf(1, -25), 0x0002}, /* tie 1/2 -> 2 */
        {5 * ldexpf(1, -25), 0x0002}, /* tie 2/3 -> 2 */
        {ldexpf(1, -30), 0x0000},
        {-ldexpf(1, -30), 0x8000},
        {ldexpf(1023, -24) + ldexpf(1, -25), 0x0400}, /* subnormal rounds to normal */
        {0.1f, 0x2E66},
        {-0.0f, 0x8000},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        uint16_t got = chord_float_to_half(cases[i].f);
        CHECK(got == cases[i].h, "float_to_half(%.9g) = 0x%04x, want 0x%04x",
              (double)cases[i].f, got, cases[i].h);
    }
    uint16_t hn = chord_float_to_half(NAN);
    CHECK((hn & 0x7C00) == 0x7C00 && (hn & 0x3FF) != 0, "NaN -> half NaN (0x%04x)", hn);
    CHECK(chord_float_to_half(INFINITY) == 0x7C00, "inf");

    /* every float between two adjacent halves rounds to the nearer (sampled) */
    uint64_t s = 12345;
    int bad = 0;
    for (int i = 0; i < 200000; i++) {
        float f = u2f((uint32_t)rng_next(&s)); /* random bits */
        if (isnan(f) || fabsf(f) >= 65520.0f) continue;
        uint16_t h = chord_float_to_half(f);
        double v = half_value(h), err = fabs((double)f - v);
        /* neighbours of h (same sign) must not be closer */
        uint16_t up = (uint16_t)(h + 1), dn = (uint16_t)(h - 1);
        if ((h & 0x7FFF) != 0x7BFF && fabs((double)f - half_value(up)) < err) bad++;
        if ((h & 0x7FFF) != 0 && fabs((double)f - half_value(dn)) < err) bad++;
    }
    CHECK(bad == 0, "%d random floats not rounded to the nearest half", bad);
}

/* ------------------------------------------------------------------- bf16 */

static void test_bf16(void) {
    int bad = 0;
    for (uint32_t h = 0; h < 65536; h++) {
        float f = chord_bf16_to_float((chord_bf16)h);
        if (f2u(f) != h << 16) bad++;
        if (isnan(f)) continue;
        if (chord_float_to_bf16(f) != h) bad++;
    }
    CHECK(bad == 0, "%d bf16 values do not round-trip", bad);
    CHECK(chord_float_to_bf16(u2f(0x3F808000)) == 0x3F80, "tie to even (down)");
    CHECK(chord_float_to_bf16(u2f(0x3F818000)) == 0x3F82, "tie to even (up)");
    CHECK(chord_float_to_bf16(u2f(0x3F808001)) == 0x3F81, "above tie");
    CHECK(chord_float_to_bf16(u2f(0x3F807FFF)) == 0x3F80, "below tie");
    chord_bf16 bn = chord_float_to_bf16(u2f(0x7F800001));
    CHECK((bn & 0x7F80) == 0x7F80 && (bn & 0x7F) != 0, "signalling NaN stays NaN: 0x%04x", bn);
    CHECK(chord_float_to_bf16(INFINITY) == 0x7F80, "inf");

    /* row functions agree with the scalar helpers */
    float x[64], y[64];
    chord_bf16 b[64];
    chord_half h[64];
    uint64_t s = 7;
    for (int i = 0; i < 64; i++)
        x[i] = rng_uniform(&s) * 100.0f;
    quant_row_bf16_ref(x, b, 64);
    dequant_row_bf16_ref(b, y, 64);
    int bad_row = 0;
    for (int i = 0; i < 64; i++)
        if (b[i] != chord_float_to_bf16(x[i]) || y[i] != chord_bf16_to_float(b[i])) bad_row++;
    quant_row_f16_ref(x, h, 64);
    dequant_row_f16_ref(h, y, 64);
    for (int i = 0; i < 64; i++)
        if (h[i] != chord_float_to_half(x[i]) || y[i] != chord_half_to_float(h[i])) bad_row++;
    quant_row_f32_ref(x, y, 64);
    float z[64];
    dequant_row_f32_ref(y, z, 64);
    CHECK(memcmp(x, z, sizeof x) == 0, "f32 row copy");
    CHECK(bad_row == 0, "%d row conversions disagree with the scalar helpers", bad_row);
}

/* ------------------------------------------------------ quantizer round trips */

#define NROW 4096 /* elements per test row (16 Q8_K blocks, 128 Q8_0 blocks) */

static void fill_random(float *x, int n, uint64_t *s, int pattern) {
    for (int i = 0; i < n; i++) {
        float v = rng_uniform(s);
        switch (pattern) {
        case 0: x[i] = v; break;
        case 1: x[i] = v * 1000.0f; break;
        case 2: x[i] = v * 1e-3f; break;
        case 3: x[i] = (i % 37 == 0) ? v * 50.0f : v; break;   /* outliers */
        default: x[i] = v > 0 ? v * v : -v * v * 0.01f; break; /* skewed */
        }
    }
}

static void test_q8_0_q8_1(void) {
    static float x[NROW], y[NROW];
    static block_q8_0 b0[NROW / QK8_0];
    static block_q8_1 b1[NROW / QK8_1];
    uint64_t s = 99;
    int bad0 = 0, bad1 = 0, bad_s = 0, bad_q = 0;
    for (int pat = 0; pat < 5; pat++) {
        fill_random(x, NROW, &s, pat);
        for (int i = 0; i < 32; i++)
            x[5 * 32 + i] = 0.0f; /* an all-zero block */
        quant_row_q8_0_ref(x, b0, NROW);
        dequant_row_q8_0_ref(b0, y, NROW);
        for (int ib = 0; ib < NROW / QK8_0; ib++) {
            float amax = 0;
            for (int j = 0; j < 32; j++)
                amax = fmaxf(amax, fabsf(x[ib * 32 + j]));
            float d = amax / 127.0f, dh = chord_half_to_float(b0[ib].d);
            /* |x - q*d| <= d/2 from rounding; storing d as half adds 127*|d - dh| */
            float tol = d / 2 * 1.0001f + 127.0f * fabsf(d - dh);
            for (int j = 0; j < 32; j++) {
                int q = b0[ib].qs[j];
                if (fabsf(x[ib * 32 + j] - y[ib * 32 + j]) > tol) bad0++;
                if (q < -127 || q > 127) bad_q++;
                if (y[ib * 32 + j] != (float)q * dh) bad0++;
            }
        }
        quant_row_q8_1_ref(x, b1, NROW);
        dequant_row_q8_1_ref(b1, y, NROW);
        for (int ib = 0; ib < NROW / QK8_1; ib++) {
            float amax = 0;
            for (int j = 0; j < 32; j++)
                amax = fmaxf(amax, fabsf(x[ib * 32 + j]));
            float d = amax / 127.0f, dh = chord_half_to_float(b1[ib].d);
            float tol = d / 2 * 1.0001f + 127.0f * fabsf(d - dh);
            int sum = 0;
            for (int j = 0; j < 32; j++) {
                if (fabsf(x[ib * 32 + j] - y[ib * 32 + j]) > tol) bad1++;
                sum += b1[ib].qs[j];
                /* q8_1 and q8_0 quantize identically */
                if (b1[ib].qs[j] != b0[ib].qs[j]) bad1++;
            }
            if (b1[ib].d != b0[ib].d) bad1++;
            if (b1[ib].s != chord_float_to_half((float)sum * d)) bad_s++;
        }
    }
    CHECK(bad0 == 0, "q8_0: %d elements out of bound", bad0);
    CHECK(bad1 == 0, "q8_1: %d elements out of bound / differ from q8_0", bad1);
    CHECK(bad_s == 0, "q8_1: %d blocks with s != d * sum(q)", bad_s);
    CHECK(bad_q == 0, "q8_0: %d quants outside -127..127", bad_q);

    /* exact cases: x = j - 16 in one block, amax 16 -> d = 16/127, q = round(x*127/16) */
    float e[32];
    block_q8_0 eb;
    for (int j = 0; j < 32; j++)
        e[j] = (float)(j - 16);
    quant_row_q8_0_ref(e, &eb, 32);
    CHECK(eb.qs[0] == -127 && eb.qs[16] == 0 && eb.qs[31] == 119, "q8_0 known quants: %d %d %d",
          eb.qs[0], eb.qs[16], eb.qs[31]);
    CHECK(eb.d == chord_float_to_half(16.0f / 127.0f), "q8_0 known d");
    /* round half away from zero: x = +-0.5 * d exactly */
    for (int j = 0; j < 32; j++)
        e[j] = 0.0f;
    e[0] = 127.0f; /* d = 1 */
    e[1] = 2.5f;
    e[2] = -2.5f;
    e[3] = 3.5f;
    quant_row_q8_0_ref(e, &eb, 32);
    CHECK(eb.qs[1] == 3 && eb.qs[2] == -3 && eb.qs[3] == 4, "q8_0 rounds half away: %d %d %d",
          eb.qs[1], eb.qs[2], eb.qs[3]);
}

static void test_q8_K(void) {
    static float x[NROW], y[NROW];
    static block_q8_K b[NROW / QK_K];
    uint64_t s = 4242;
    int bad = 0, bad_sum = 0, bad_d = 0;
    for (int pat = 0; pat < 5; pat++) {
        fill_random(x, NROW, &s, pat);
        for (int i = 0; i < QK_K; i++)
            x[3 * QK_K + i] = 0.0f; /* an all-zero block */
        quant_row_q8_K_ref(x, b, NROW);
        dequant_row_q8_K_ref(b, y, NROW);
        for (int ib = 0; ib < NROW / QK_K; ib++) {
            float amax = 0;
            for (int j = 0; j < QK_K; j++)
                amax = fmaxf(amax, fabsf(x[ib * QK_K + j]));
            float d = fabsf(b[ib].d);
            if (fabsf(d - amax / 127.0f) > amax / 127.0f * 1e-6f) bad_d++;
            for (int j = 0; j < QK_K; j++) {
                if (fabsf(x[ib * QK_K + j] - y[ib * QK_K + j]) > d / 2 * 1.0001f) bad++;
                if (y[ib * QK_K + j] != b[ib].d * (float)b[ib].qs[j]) bad++;
            }
            for (int g = 0; g < QK_K / 16; g++) {
                int sum = 0;
                for (int l = 0; l < 16; l++)
                    sum += b[ib].qs[16 * g + l];
                if (b[ib].bsums[g] != sum) bad_sum++;
            }
        }
        CHECK(b[3].d == 0.0f, "q8_K zero block d = %g", (double)b[3].d);
    }
    CHECK(bad == 0, "q8_K: %d elements out of bound", bad);
    CHECK(bad_sum == 0, "q8_K: %d wrong bsums", bad_sum);
    CHECK(bad_d == 0, "q8_K: %d blocks with |d| != amax/127", bad_d);

    /* the extreme value maps to -127 (ggml's sign convention): d has the opposite sign */
    for (int j = 0; j < QK_K; j++)
        x[j] = (float)(j % 64) * 0.25f; /* max 15.75 */
    quant_row_q8_K_ref(x, b, QK_K);
    CHECK(b[0].qs[63] == -127 && b[0].d < 0, "q8_K max -> -127 (q=%d d=%g)", b[0].qs[63],
          (double)b[0].d);
    int s0 = 0;
    for (int l = 0; l < 16; l++)
        s0 += b[0].qs[l];
    CHECK(b[0].bsums[0] == s0 && s0 < 0, "q8_K bsums[0] = %d, want %d", b[0].bsums[0], s0);
    /* ties in |x|: the first one sets the sign; the other side reaches +127 */
    for (int j = 0; j < QK_K; j++)
        x[j] = 0.0f;
    x[0] = -1.0f;
    x[1] = 1.0f;
    x[2] = 0.5f / 127.0f; /* rounds to 0 or +-1: only |q| <= 1 matters */
    quant_row_q8_K_ref(x, b, QK_K);
    CHECK(b[0].qs[0] == -127 && b[0].qs[1] == 127 && b[0].d == 1.0f / 127.0f,
          "q8_K symmetric: %d %d d=%g", b[0].qs[0], b[0].qs[1], (double)b[0].d);
    CHECK(b[0].bsums[0] == b[0].qs[2], "q8_K bsums with cancelling values: %d", b[0].bsums[0]);
}

/* --------------------------------------------------------- crafted blocks */

/* Packers: element i of a block gets value q[i] (unsigned, before any offset). */

static void pack_q4_32(uint8_t qs[16], const int *q) {
    memset(qs, 0, 16);
    for (int i = 0; i < 32; i++)
        qs[i % 16] |= (uint8_t)((q[i] & 15) << (i < 16 ? 0 : 4));
}
static void pack_q5_32(uint8_t qh[4], uint8_t qs[16], const int *q) {
    pack_q4_32(qs, q);
    memset(qh, 0, 4);
    for (int i = 0; i < 32; i++)
        if (q[i] & 16) qh[i / 8] |= (uint8_t)(1u << (i % 8));
}
/* 2-bit: element i = 128*h + 32*g + l -> bits 2g of qs[32h + l] */
static void pack_2bit(uint8_t qs[64], const int *q) {
    memset(qs, 0, 64);
    for (int i = 0; i < 256; i++) {
        int h = i / 128, g = (i % 128) / 32, l = i % 32;
        qs[32 * h + l] |= (uint8_t)((q[i] & 3) << (2 * g));
    }
}
/* Q4_K/Q5_K 4-bit: element i = 64*c + r -> qs[32c + r%32], low nibble if r < 32 */
static void pack_k4(uint8_t qs[128], const int *q) {
    memset(qs, 0, 128);
    for (int i = 0; i < 256; i++) {
        int c = i / 64, r = i % 64;
        qs[32 * c + r % 32] |= (uint8_t)((q[i] & 15) << (r < 32 ? 0 : 4));
    }
}
/* 6-bit scale and min of sub-block j (0..7) into 12 bytes:
 * bytes 0-3: sc[0-3] | top 2 bits of sc[4-7]; bytes 4-7: mn[0-3] | top 2 of mn[4-7];
 * bytes 8-11: low 4 of sc[4-7] | low 4 of mn[4-7] << 4. */
static void pack_k4_scales(uint8_t out[12], const int sc[8], const int mn[8]) {
    memset(out, 0, 12);
    for (int j = 0; j < 4; j++) {
        out[j] = (uint8_t)(sc[j] | (sc[j + 4] >> 4) << 6);
        out[j + 4] = (uint8_t)(mn[j] | (mn[j + 4] >> 4) << 6);
        out[j + 8] = (uint8_t)((sc[j + 4] & 15) | (mn[j + 4] & 15) << 4);
    }
}
/* Q3_K: biased 6-bit scale s (0..63) of sub-block i: low 4 bits -> nibble i/8 of byte
 * i%8, top 2 bits -> bits 2*(i/4) of byte 8 + i%4 */
static void pack_q3_scales(uint8_t out[12], const int s[16]) {
    memset(out, 0, 12);
    for (int i = 0; i < 16; i++) {
        out[i % 8] |= (uint8_t)((s[i] & 15) << (4 * (i / 8)));
        out[8 + i % 4] |= (uint8_t)((s[i] >> 4) << (2 * (i / 4)));
    }
}

static int compare(const char *what, const float *got, const float *want, int n) {
    int bad = 0;
    for (int i = 0; i < n; i++) {
        if (f2u(got[i]) != f2u(want[i])) {
            if (bad < 3)
                fprintf(stderr, "  %s[%d] = %.9g, want %.9g\n", what, i, (double)got[i],
                        (double)want[i]);
            bad++;
        }
    }
    CHECK(bad == 0, "%s: %d of %d elements differ", what, bad, n);
    return bad;
}

/* Constant blocks whose outputs are worked out by hand. */
static void test_constant_blocks(void) {
    float y[256], want[256];

    /* Q4_0, all nibbles 3, d = 2: 2 * (3 - 8) = -10 */
    block_q4_0 a;
    a.d = chord_float_to_half(2.0f);
    memset(a.qs, 0x33, sizeof a.qs);
    dequant_row_q4_0_ref(&a, y, 32);
    for (int i = 0; i < 32; i++)
        want[i] = -10.0f;
    compare("q4_0 const", y, want, 32);

    /* Q4_1, nibbles 3, d = 2, m = -1: 2*3 - 1 = 5 */
    block_q4_1 b;
    b.d = chord_float_to_half(2.0f);
    b.m = chord_float_to_half(-1.0f);
    memset(b.qs, 0x33, sizeof b.qs);
    dequant_row_q4_1_ref(&b, y, 32);
    for (int i = 0; i < 32; i++)
        want[i] = 5.0f;
    compare("q4_1 const", y, want, 32);

    /* Q5_0, nibbles 3, qh all ones -> q = 19, d = 0.5: 0.5 * 3 = 1.5 */
    block_q5_0 c;
    c.d = chord_float_to_half(0.5f);
    memset(c.qh, 0xFF, 4);
    memset(c.qs, 0x33, sizeof c.qs);
    dequant_row_q5_0_ref(&c, y, 32);
    for (int i = 0; i < 32; i++)
        want[i] = 1.5f;
    compare("q5_0 const", y, want, 32);
    /* only element 20's high bit set: others 0.5 * (3 - 16) = -6.5 */
    memset(c.qh, 0, 4);
    c.qh[2] = 0x10;
    dequant_row_q5_0_ref(&c, y, 32);
    for (int i = 0; i < 32; i++)
        want[i] = i == 20 ? 1.5f : -6.5f;
    compare("q5_0 one bit", y, want, 32);

    /* Q5_1, nibbles 0xF with high bit -> 31, d = 1, m = 0.25: 31.25 */
    block_q5_1 e;
    e.d = chord_float_to_half(1.0f);
    e.m = chord_float_to_half(0.25f);
    memset(e.qh, 0xFF, 4);
    memset(e.qs, 0xFF, sizeof e.qs);
    dequant_row_q5_1_ref(&e, y, 32);
    for (int i = 0; i < 32; i++)
        want[i] = 31.25f;
    compare("q5_1 const", y, want, 32);

    /* Q8_0: q = j - 16, d = 0.5 */
    block_q8_0 f;
    f.d = chord_float_to_half(0.5f);
    for (int j = 0; j < 32; j++)
        f.qs[j] = (int8_t)(j - 16);
    dequant_row_q8_0_ref(&f, y, 32);
    for (int j = 0; j < 32; j++)
        want[j] = 0.5f * (float)(j - 16);
    compare("q8_0 const", y, want, 32);

    /* Q8_1: same, s ignored */
    block_q8_1 g;
    g.d = chord_float_to_half(0.25f);
    g.s = chord_float_to_half(123.0f);
    for (int j = 0; j < 32; j++)
        g.qs[j] = (int8_t)(127 - 8 * j);
    dequant_row_q8_1_ref(&g, y, 32);
    for (int j = 0; j < 32; j++)
        want[j] = 0.25f * (float)(127 - 8 * j);
    compare("q8_1 const", y, want, 32);

    /* Q2_K: all q = 3 (0xFF bytes), scales 0x12 (sc 2, min 1), d = 1.5, dmin = 0.5:
     * 1.5*2*3 - 0.5*1 = 8.5 */
    block_q2_K h;
    memset(h.qs, 0xFF, sizeof h.qs);
    memset(h.scales, 0x12, sizeof h.scales);
    h.d = chord_float_to_half(1.5f);
    h.dmin = chord_float_to_half(0.5f);
    dequant_row_q2_K_ref(&h, y, 256);
    for (int i = 0; i < 256; i++)
        want[i] = 8.5f;
    compare("q2_K const", y, want, 256);

    /* Q3_K: qs all 0x55 (every 2-bit q = 1), hmask 0 (subtract 4): q = -3;
     * scales all 34 (34 - 32 = 2), d = 1: 2 * -3 = -6. With hmask all ones: 2. */
    block_q3_K k3;
    memset(k3.qs, 0x55, sizeof k3.qs);
    memset(k3.hmask, 0, sizeof k3.hmask);
    /* 34 = 0b100010: low nibble 2 -> bytes 0..7 = 0x22; top bits 2 -> bytes 8..11 = 0xAA */
    memset(k3.scales, 0x22, 8);
    memset(k3.scales + 8, 0xAA, 4);
    k3.d = chord_float_to_half(1.0f);
    dequant_row_q3_K_ref(&k3, y, 256);
    for (int i = 0; i < 256; i++)
        want[i] = -6.0f;
    compare("q3_K const", y, want, 256);
    memset(k3.hmask, 0xFF, sizeof k3.hmask);
    dequant_row_q3_K_ref(&k3, y, 256);
    for (int i = 0; i < 256; i++)
        want[i] = 2.0f;
    compare("q3_K const hmask", y, want, 256);
    /* scale byte 0 -> all 6 bits 0 for sub-blocks 0 and 8 (then scale = -32) */
    memset(k3.scales, 0x00, 12);
    dequant_row_q3_K_ref(&k3, y, 256);
    for (int i = 0; i < 256; i++)
        want[i] = -32.0f; /* -32 * 1 */
    compare("q3_K min scale", y, want, 256);

    /* Q4_K: nibbles 3, all sc = 2 and mn = 1 (j<4 bytes = 2 / 1, bytes 8..11 = 0x12),
     * d = 2, dmin = 1: 2*2*3 - 1*1 = 11 */
    block_q4_K q4;
    q4.d = chord_float_to_half(2.0f);
    q4.dmin = chord_float_to_half(1.0f);
    memset(q4.scales, 2, 4);
    memset(q4.scales + 4, 1, 4);
    memset(q4.scales + 8, 0x12, 4);
    memset(q4.qs, 0x33, sizeof q4.qs);
    dequant_row_q4_K_ref(&q4, y, 256);
    for (int i = 0; i < 256; i++)
        want[i] = 11.0f;
    compare("q4_K const", y, want, 256);

    /* Q5_K: same with qh all ones: q = 19: 2*2*19 - 1 = 75 */
    block_q5_K q5;
    q5.d = q4.d;
    q5.dmin = q4.dmin;
    memcpy(q5.scales, q4.scales, 12);
    memset(q5.qs, 0x33, sizeof q5.qs);
    memset(q5.qh, 0xFF, sizeof q5.qh);
    dequant_row_q5_K_ref(&q5, y, 256);
    for (int i = 0; i < 256; i++)
        want[i] = 75.0f;
    compare("q5_K const", y, want, 256);

    /* Q6_K: ql nibbles 3, qh 0 -> q = 3 - 32 = -29; scales 2, d = 0.5: -29 */
    block_q6_K q6;
    memset(q6.ql, 0x33, sizeof q6.ql);
    memset(q6.qh, 0, sizeof q6.qh);
    memset(q6.scales, 2, sizeof q6.scales);
    q6.d = chord_float_to_half(0.5f);
    dequant_row_q6_K_ref(&q6, y, 256);
    for (int i = 0; i < 256; i++)
        want[i] = -29.0f;
    compare("q6_K const", y, want, 256);
    /* qh all 0xFF: q = 3 | 48 = 51 - 32 = 19; negative scale -3: 0.5*-3*19 = -28.5 */
    memset(q6.qh, 0xFF, sizeof q6.qh);
    memset(q6.scales, 0xFD, sizeof q6.scales);
    dequant_row_q6_K_ref(&q6, y, 256);
    for (int i = 0; i < 256; i++)
        want[i] = -28.5f;
    compare("q6_K const neg", y, want, 256);

    /* Q8_K: d = -0.125, q = i - 128 (clamped to int8) */
    block_q8_K q8;
    q8.d = -0.125f;
    for (int i = 0; i < 256; i++)
        q8.qs[i] = (int8_t)(i - 128);
    memset(q8.bsums, 0, sizeof q8.bsums);
    dequant_row_q8_K_ref(&q8, y, 256);
    for (int i = 0; i < 256; i++)
        want[i] = -0.125f * (float)(i - 128);
    compare("q8_K const", y, want, 256);
}

/* Random blocks: every element its own value, packed by the packers above, expected
 * output from the per-element formula. Three blocks per row, so block strides count. */
static void test_random_blocks(void) {
    enum { NB = 3, N32 = 32 * NB, N256 = 256 * NB };
    uint64_t s = 2024;
    float y[N256], want[N256];
    int q[N256];

    for (int rep = 0; rep < 20; rep++) {
        /* Q4_0 / Q4_1 */
        block_q4_0 a[NB];
        block_q4_1 b[NB];
        for (int i = 0; i < N32; i++)
            q[i] = rng_int(&s, 16);
        for (int ib = 0; ib < NB; ib++) {
            float d = rng_uniform(&s) * 3.0f, m = rng_uniform(&s);
            a[ib].d = b[ib].d = chord_float_to_half(d);
            b[ib].m = chord_float_to_half(m);
            pack_q4_32(a[ib].qs, q + 32 * ib);
            pack_q4_32(b[ib].qs, q + 32 * ib);
        }
        dequant_row_q4_0_ref(a, y, N32);
        for (int i = 0; i < N32; i++)
            want[i] = chord_half_to_float(a[i / 32].d) * (float)(q[i] - 8);
        compare("q4_0 random", y, want, N32);
        dequant_row_q4_1_ref(b, y, N32);
        for (int i = 0; i < N32; i++) {
            volatile float p = chord_half_to_float(b[i / 32].d) * (float)q[i];
            want[i] = p + chord_half_to_float(b[i / 32].m);
        }
        compare("q4_1 random", y, want, N32);

        /* Q5_0 / Q5_1 */
        block_q5_0 c[NB];
        block_q5_1 e[NB];
        for (int i = 0; i < N32; i++)
            q[i] = rng_int(&s, 32);
        for (int ib = 0; ib < NB; ib++) {
            c[ib].d = e[ib].d = chord_float_to_half(rng_uniform(&s));
            e[ib].m = chord_float_to_half(rng_uniform(&s) * 4.0f);
            pack_q5_32(c[ib].qh, c[ib].qs, q + 32 * ib);
            pack_q5_32(e[ib].qh, e[ib].qs, q + 32 * ib);
        }
        dequant_row_q5_0_ref(c, y, N32);
        for (int i = 0; i < N32; i++)
            want[i] = chord_half_to_float(c[i / 32].d) * (float)(q[i] - 16);
        compare("q5_0 random", y, want, N32);
        dequant_row_q5_1_ref(e, y, N32);
        for (int i = 0; i < N32; i++) {
            volatile float p = chord_half_to_float(e[i / 32].d) * (float)q[i];
            want[i] = p + chord_half_to_float(e[i / 32].m);
        }
        compare("q5_1 random", y, want, N32);

        /* Q2_K */
        block_q2_K k2[NB];
        int sc[16 * NB], mn[16 * NB];
        for (int i = 0; i < N256; i++)
            q[i] = rng_int(&s, 4);
        for (int ib = 0; ib < NB; ib++) {
            k2[ib].d = chord_float_to_half(rng_uniform(&s));
            k2[ib].dmin = chord_float_to_half(rng_uniform(&s));
            for (int j = 0; j < 16; j++) {
                sc[16 * ib + j] = rng_int(&s, 16);
                mn[16 * ib + j] = rng_int(&s, 16);
                k2[ib].scales[j] = (uint8_t)(sc[16 * ib + j] | mn[16 * ib + j] << 4);
            }
            pack_2bit(k2[ib].qs, q + 256 * ib);
        }
        dequant_row_q2_K_ref(k2, y, N256);
        for (int i = 0; i < N256; i++) {
            const block_q2_K *bk = &k2[i / 256];
            volatile float dl = chord_half_to_float(bk->d) * (float)sc[i / 16];
            volatile float ml = chord_half_to_float(bk->dmin) * (float)mn[i / 16];
            volatile float p = dl * (float)q[i];
            want[i] = p - ml;
        }
        compare("q2_K random", y, want, N256);

        /* Q3_K: q in -4..3 = low2 - 4 * (1 - hbit) */
        block_q3_K k3[NB];
        int s3[16 * NB];
        for (int i = 0; i < N256; i++)
            q[i] = rng_int(&s, 8) - 4;
        for (int ib = 0; ib < NB; ib++) {
            k3[ib].d = chord_float_to_half(rng_uniform(&s));
            for (int j = 0; j < 16; j++)
                s3[16 * ib + j] = rng_int(&s, 64);
            pack_q3_scales(k3[ib].scales, s3 + 16 * ib);
            int low[256];
            memset(k3[ib].hmask, 0, 32);
            for (int i = 0; i < 256; i++) {
                int v = q[256 * ib + i];
                int hbit = v >= 0; /* hbit set: no -4 */
                low[i] = hbit ? v : v + 4;
                int h = i / 128, g = (i % 128) / 32, l = i % 32;
                if (hbit) k3[ib].hmask[l] |= (uint8_t)(1u << (4 * h + g));
            }
            pack_2bit(k3[ib].qs, low);
        }
        dequant_row_q3_K_ref(k3, y, N256);
        for (int i = 0; i < N256; i++) {
            volatile float dl = chord_half_to_float(k3[i / 256].d) * (float)(s3[i / 16] - 32);
            want[i] = dl * (float)q[i];
        }
        compare("q3_K random", y, want, N256);

        /* Q4_K / Q5_K */
        block_q4_K k4[NB];
        block_q5_K k5[NB];
        int sc8[8 * NB], mn8[8 * NB];
        for (int i = 0; i < N256; i++)
            q[i] = rng_int(&s, 32);
        for (int ib = 0; ib < NB; ib++) {
            k4[ib].d = k5[ib].d = chord_float_to_half(rng_uniform(&s) * 0.1f);
            k4[ib].dmin = k5[ib].dmin = chord_float_to_half(rng_uniform(&s) * 0.1f);
            for (int j = 0; j < 8; j++) {
                sc8[8 * ib + j] = rng_int(&s, 64);
                mn8[8 * ib + j] = rng_int(&s, 64);
            }
            pack_k4_scales(k4[ib].scales, sc8 + 8 * ib, mn8 + 8 * ib);
            memcpy(k5[ib].scales, k4[ib].scales, 12);
            pack_k4(k4[ib].qs, q + 256 * ib);
            pack_k4(k5[ib].qs, q + 256 * ib);
            /* 5th bit of element i (sub-block j = i/32, l = i%32) -> bit j of qh[l] */
            memset(k5[ib].qh, 0, 32);
            for (int i = 0; i < 256; i++)
                if (q[256 * ib + i] & 16) k5[ib].qh[i % 32] |= (uint8_t)(1u << (i / 32));
        }
        dequant_row_q4_K_ref(k4, y, N256);
        for (int i = 0; i < N256; i++) {
            volatile float dl = chord_half_to_float(k4[i / 256].d) * (float)sc8[i / 32];
            volatile float ml = chord_half_to_float(k4[i / 256].dmin) * (float)mn8[i / 32];
            volatile float p = dl * (float)(q[i] & 15);
            want[i] = p - ml;
        }
        compare("q4_K random", y, want, N256);
        dequant_row_q5_K_ref(k5, y, N256);
        for (int i = 0; i < N256; i++) {
            volatile float dl = chord_half_to_float(k5[i / 256].d) * (float)sc8[i / 32];
            volatile float ml = chord_half_to_float(k5[i / 256].dmin) * (float)mn8[i / 32];
            volatile float p = dl * (float)q[i];
            want[i] = p - ml;
        }
        compare("q5_K random", y, want, N256);

        /* Q6_K: q in 0..63, element i = 128h + 32g + l */
        block_q6_K k6[NB];
        for (int i = 0; i < N256; i++)
            q[i] = rng_int(&s, 64);
        for (int ib = 0; ib < NB; ib++) {
            k6[ib].d = chord_float_to_half(rng_uniform(&s) * 0.01f);
            for (int j = 0; j < 16; j++)
                k6[ib].scales[j] = (int8_t)(rng_int(&s, 256) - 128);
            memset(k6[ib].ql, 0, 128);
            memset(k6[ib].qh, 0, 64);
            for (int i = 0; i < 256; i++) {
                int v = q[256 * ib + i];
                int h = i / 128, g = (i % 128) / 32, l = i % 32;
                k6[ib].ql[64 * h + l + 32 * (g & 1)] |= (uint8_t)((v & 15) << (g < 2 ? 0 : 4));
                k6[ib].qh[32 * h + l] |= (uint8_t)((v >> 4) << (2 * g));
            }
        }
        dequant_row_q6_K_ref(k6, y, N256);
        for (int i = 0; i < N256; i++) {
            volatile float dl =
                chord_half_to_float(k6[i / 256].d) * (float)k6[i / 256].scales[(i % 256) / 16];
            want[i] = dl * (float)(q[i] - 32);
        }
        compare("q6_K random", y, want, N256);
    }
}

/* The traits table points at these functions. */
static void test_traits(void) {
    static const struct {
        uint32_t id;
        chord_to_float_fn f;
    } t[] = {
        {CHORD_TYPE_F32, dequant_row_f32_ref},   {CHORD_TYPE_F16, dequant_row_f16_ref},
        {CHORD_TYPE_BF16, dequant_row_bf16_ref}, {CHORD_TYPE_Q4_0, dequant_row_q4_0_ref},
        {CHORD_TYPE_Q4_1, dequant_row_q4_1_ref}, {CHORD_TYPE_Q5_0, dequant_row_q5_0_ref},
        {CHORD_TYPE_Q5_1, dequant_row_q5_1_ref}, {CHORD_TYPE_Q8_0, dequant_row_q8_0_ref},
        {CHORD_TYPE_Q8_1, dequant_row_q8_1_ref}, {CHORD_TYPE_Q2_K, dequant_row_q2_K_ref},
        {CHORD_TYPE_Q3_K, dequant_row_q3_K_ref}, {CHORD_TYPE_Q4_K, dequant_row_q4_K_ref},
        {CHORD_TYPE_Q5_K, dequant_row_q5_K_ref}, {CHORD_TYPE_Q6_K, dequant_row_q6_K_ref},
        {CHORD_TYPE_Q8_K, dequant_row_q8_K_ref},
    };
    for (size_t i = 0; i < sizeof t / sizeof t[0]; i++) {
        const chord_type_traits *tr = chord_type_get(t[i].id);
        CHECK(tr && tr->to_float == t[i].f, "traits[%u].to_float", t[i].id);
    }
}

int main(void) {
    test_half();
    test_bf16();
    test_q8_0_q8_1();
    test_q8_K();
    test_constant_blocks();
    test_random_blocks();
    test_traits();
    return test_summary("test_quant_ref");
}
