/* The traits table and IEEE half / bfloat16 conversions. */
#include "types.h"

#include "quantize.h"

#include <ctype.h>
#include <string.h>

#define ROW(id, nm, bs, ts, tf, ff) [id] = {nm, bs, ts, tf, ff}

static const chord_type_traits TRAITS[CHORD_TYPE_COUNT] = {
    ROW(CHORD_TYPE_F32, "F32", 1, 4, dequant_row_f32_ref, quant_row_f32_ref),
    ROW(CHORD_TYPE_F16, "F16", 1, 2, dequant_row_f16_ref, quant_row_f16_ref),
    ROW(CHORD_TYPE_BF16, "BF16", 1, 2, dequant_row_bf16_ref, quant_row_bf16_ref),
    ROW(CHORD_TYPE_Q4_0, "Q4_0", QK4_0, sizeof(block_q4_0), dequant_row_q4_0_ref,
        quantize_row_q4_0),
    ROW(CHORD_TYPE_Q4_1, "Q4_1", QK4_1, sizeof(block_q4_1), dequant_row_q4_1_ref,
        quantize_row_q4_1),
    ROW(CHORD_TYPE_Q5_0, "Q5_0", QK5_0, sizeof(block_q5_0), dequant_row_q5_0_ref,
        quantize_row_q5_0),
    ROW(CHORD_TYPE_Q5_1, "Q5_1", QK5_1, sizeof(block_q5_1), dequant_row_q5_1_ref,
        quantize_row_q5_1),
    ROW(CHORD_TYPE_Q8_0, "Q8_0", QK8_0, sizeof(block_q8_0), dequant_row_q8_0_ref,
        quant_row_q8_0_ref),
    ROW(CHORD_TYPE_Q8_1, "Q8_1", QK8_1, sizeof(block_q8_1), dequant_row_q8_1_ref,
        quant_row_q8_1_ref),
    ROW(CHORD_TYPE_Q2_K, "Q2_K", QK_K, sizeof(block_q2_K), dequant_row_q2_K_ref,
        quantize_row_q2_K),
    ROW(CHORD_TYPE_Q3_K, "Q3_K", QK_K, sizeof(block_q3_K), dequant_row_q3_K_ref,
        quantize_row_q3_K),
    ROW(CHORD_TYPE_Q4_K, "Q4_K", QK_K, sizeof(block_q4_K), dequant_row_q4_K_ref,
        quantize_row_q4_K),
    ROW(CHORD_TYPE_Q5_K, "Q5_K", QK_K, sizeof(block_q5_K), dequant_row_q5_K_ref,
        quantize_row_q5_K),
    ROW(CHORD_TYPE_Q6_K, "Q6_K", QK_K, sizeof(block_q6_K), dequant_row_q6_K_ref,
        quantize_row_q6_K),
    ROW(CHORD_TYPE_Q8_K, "Q8_K", QK_K, sizeof(block_q8_K), dequant_row_q8_K_ref,
        quant_row_q8_K_ref),
    /* Known to GGUF, not computed by chord: sizes let the parser validate the file and
     * the loader name the type in its error. */
    ROW(CHORD_TYPE_IQ2_XXS, "IQ2_XXS", QK_K, 66, NULL, NULL),
    ROW(CHORD_TYPE_IQ2_XS, "IQ2_XS", QK_K, 74, NULL, NULL),
    ROW(CHORD_TYPE_IQ3_XXS, "IQ3_XXS", QK_K, 98, NULL, NULL),
    ROW(CHORD_TYPE_IQ1_S, "IQ1_S", QK_K, 50, NULL, NULL),
    ROW(CHORD_TYPE_IQ4_NL, "IQ4_NL", 32, 18, NULL, NULL),
    ROW(CHORD_TYPE_IQ3_S, "IQ3_S", QK_K, 110, NULL, NULL),
    ROW(CHORD_TYPE_IQ2_S, "IQ2_S", QK_K, 82, NULL, NULL),
    ROW(CHORD_TYPE_IQ4_XS, "IQ4_XS", QK_K, 136, NULL, NULL),
    ROW(CHORD_TYPE_I8, "I8", 1, 1, NULL, NULL),
    ROW(CHORD_TYPE_I16, "I16", 1, 2, NULL, NULL),
    ROW(CHORD_TYPE_I32, "I32", 1, 4, NULL, NULL),
    ROW(CHORD_TYPE_I64, "I64", 1, 8, NULL, NULL),
    ROW(CHORD_TYPE_F64, "F64", 1, 8, NULL, NULL),
    ROW(CHORD_TYPE_IQ1_M, "IQ1_M", QK_K, 56, NULL, NULL),
    ROW(CHORD_TYPE_TQ1_0, "TQ1_0", QK_K, 54, NULL, NULL),
    ROW(CHORD_TYPE_TQ2_0, "TQ2_0", QK_K, 66, NULL, NULL),
};

const chord_type_traits *chord_type_get(uint32_t id) {
    if (id >= CHORD_TYPE_COUNT || !TRAITS[id].name) return NULL;
    return &TRAITS[id];
}

const char *chord_type_name(uint32_t id) {
    const chord_type_traits *t = chord_type_get(id);
    return t ? t->name : "unknown";
}

int chord_type_from_name(const char *name) {
    for (int i = 0; i < CHORD_TYPE_COUNT; i++) {
        const char *n = TRAITS[i].name;
        if (!n) continue;
        size_t k = 0;
        while (n[k] && name[k] && toupper((unsigned char)name[k]) == n[k]) k++;
        if (!n[k] && !name[k]) return i;
    }
    return -1;
}

size_t chord_row_size(chord_type t, int64_t n) {
    const chord_type_traits *tr = chord_type_get((uint32_t)t);
    if (!tr || n < 0 || n % tr->block_size) return 0;
    return (size_t)(n / tr->block_size) * tr->type_size;
}

static inline uint32_t f2u(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    return u;
}
static inline float u2f(uint32_t u) {
    float f;
    memcpy(&f, &u, 4);
    return f;
}

float chord_half_to_float(chord_half h) {
    uint32_t sign = (uint32_t)(h & 0x8000) << 16;
    uint32_t exp = (h >> 10) & 0x1f;
    uint32_t mant = h & 0x3ff;
    if (exp == 0) {
        /* zero or subnormal: mant * 2^-24, exact in float */
        float v = (float)mant * 5.9604644775390625e-8f;
        return sign ? -v : v;
    }
    if (exp == 31) return u2f(sign | 0x7f800000u | (mant << 13));
    return u2f(sign | ((exp + 112) << 23) | (mant << 13));
}

chord_half chord_float_to_half(float f) {
    uint32_t u = f2u(f);
    uint32_t sign = (u >> 16) & 0x8000;
    uint32_t au = u & 0x7fffffffu;
    if (au >= 0x7f800000u) return (chord_half)(sign | 0x7c00 | (au > 0x7f800000u ? 0x200 : 0));
    if (au >= 0x477ff000u) return (chord_half)(sign | 0x7c00); /* rounds to inf */
    if (au < 0x38800000u) {
        /* subnormal half: round-to-nearest-even of au * 2^24 */
        float v = u2f(au) * 16777216.0f;
        uint32_t q = (uint32_t)v;
        float rem = v - (float)q;
        if (rem > 0.5f || (rem == 0.5f && (q & 1))) q++;
        return (chord_half)(sign | q);
    }
    uint32_t exp = (au >> 23) - 112;
    uint32_t mant = au & 0x7fffff;
    uint32_t h = (exp << 10) | (mant >> 13);
    uint32_t rest = mant & 0x1fff;
    if (rest > 0x1000 || (rest == 0x1000 && (h & 1))) h++;
    return (chord_half)(sign | h);
}

float chord_bf16_to_float(chord_bf16 h) { return u2f((uint32_t)h << 16); }

chord_bf16 chord_float_to_bf16(float f) {
    uint32_t u = f2u(f);
    if ((u & 0x7fffffffu) > 0x7f800000u) return (chord_bf16)((u >> 16) | 64); /* quiet NaN */
    u += 0x7fff + ((u >> 16) & 1);
    return (chord_bf16)(u >> 16);
}
