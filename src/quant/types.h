/* Weight types: GGUF type ids, the traits table, and scalar reference (de)quantizers. */
#ifndef CHORD_QUANT_TYPES_H
#define CHORD_QUANT_TYPES_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "blocks.h"

/* Numeric values are the GGUF on-disk type ids. */
typedef enum chord_type {
    CHORD_TYPE_F32 = 0,
    CHORD_TYPE_F16 = 1,
    CHORD_TYPE_Q4_0 = 2,
    CHORD_TYPE_Q4_1 = 3,
    CHORD_TYPE_Q5_0 = 6,
    CHORD_TYPE_Q5_1 = 7,
    CHORD_TYPE_Q8_0 = 8,
    CHORD_TYPE_Q8_1 = 9,
    CHORD_TYPE_Q2_K = 10,
    CHORD_TYPE_Q3_K = 11,
    CHORD_TYPE_Q4_K = 12,
    CHORD_TYPE_Q5_K = 13,
    CHORD_TYPE_Q6_K = 14,
    CHORD_TYPE_Q8_K = 15,
    CHORD_TYPE_IQ2_XXS = 16,
    CHORD_TYPE_IQ2_XS = 17,
    CHORD_TYPE_IQ3_XXS = 18,
    CHORD_TYPE_IQ1_S = 19,
    CHORD_TYPE_IQ4_NL = 20,
    CHORD_TYPE_IQ3_S = 21,
    CHORD_TYPE_IQ2_S = 22,
    CHORD_TYPE_IQ4_XS = 23,
    CHORD_TYPE_I8 = 24,
    CHORD_TYPE_I16 = 25,
    CHORD_TYPE_I32 = 26,
    CHORD_TYPE_I64 = 27,
    CHORD_TYPE_F64 = 28,
    CHORD_TYPE_IQ1_M = 29,
    CHORD_TYPE_BF16 = 30,
    CHORD_TYPE_TQ1_0 = 34,
    CHORD_TYPE_TQ2_0 = 35,
    CHORD_TYPE_COUNT = 36,
} chord_type;

/* Scalar reference converters; `k` is a multiple of the block size. */
typedef void (*chord_to_float_fn)(const void *src, float *dst, int64_t k);
typedef void (*chord_from_float_fn)(const float *src, void *dst, int64_t k);

typedef struct chord_type_traits {
    const char *name;     /* "Q4_K"; NULL for ids GGUF does not define */
    int64_t block_size;   /* elements per block */
    size_t type_size;     /* bytes per block */
    chord_to_float_fn to_float;     /* NULL: chord can not compute with this type */
    chord_from_float_fn from_float; /* NULL: chord can not produce this type */
} chord_type_traits;

/* NULL for an id outside the table or one GGUF does not define. */
const chord_type_traits *chord_type_get(uint32_t type_id);
const char *chord_type_name(uint32_t type_id); /* "unknown" when not defined */
/* Parses "Q4_K" (case-insensitive); returns -1 when no such name. */
int chord_type_from_name(const char *name);
/* Bytes of one row of n elements; 0 if n is not a multiple of the block size. */
size_t chord_row_size(chord_type t, int64_t n);

/* IEEE half / bfloat16 conversion, exact (round-to-nearest-even for float->half). */
float chord_half_to_float(chord_half h);
chord_half chord_float_to_half(float f);
float chord_bf16_to_float(chord_bf16 h);
chord_bf16 chord_float_to_bf16(float f);

/* ---- scalar reference dequantizers (ground truth), k multiple of block size ---- */
void dequant_row_f32_ref(const void *x, float *y, int64_t k);
void dequant_row_f16_ref(const void *x, float *y, int64_t k);
void dequant_row_bf16_ref(const void *x, float *y, int64_t k);
void dequant_row_q4_0_ref(const void *x, float *y, int64_t k);
void dequant_row_q4_1_ref(const void *x, float *y, int64_t k);
void dequant_row_q5_0_ref(const void *x, float *y, int64_t k);
void dequant_row_q5_1_ref(const void *x, float *y, int64_t k);
void dequant_row_q8_0_ref(const void *x, float *y, int64_t k);
void dequant_row_q8_1_ref(const void *x, float *y, int64_t k);
void dequant_row_q2_K_ref(const void *x, float *y, int64_t k);
void dequant_row_q3_K_ref(const void *x, float *y, int64_t k);
void dequant_row_q4_K_ref(const void *x, float *y, int64_t k);
void dequant_row_q5_K_ref(const void *x, float *y, int64_t k);
void dequant_row_q6_K_ref(const void *x, float *y, int64_t k);
void dequant_row_q8_K_ref(const void *x, float *y, int64_t k);

/* ---- scalar reference quantizers ---- */
void quant_row_f32_ref(const float *x, void *y, int64_t k);
void quant_row_f16_ref(const float *x, void *y, int64_t k);
void quant_row_bf16_ref(const float *x, void *y, int64_t k);
void quant_row_q8_0_ref(const float *x, void *y, int64_t k);
void quant_row_q8_1_ref(const float *x, void *y, int64_t k);
void quant_row_q8_K_ref(const float *x, void *y, int64_t k);

#endif
