/* Quantized block layouts, byte-compatible with GGUF / ggml.
 * Each struct is one block; `d`/`dmin` are IEEE half (stored as uint16_t). */
#ifndef CHORD_QUANT_BLOCKS_H
#define CHORD_QUANT_BLOCKS_H

#include <assert.h>
#include <stdint.h>

typedef uint16_t chord_half; /* IEEE 754 binary16 bits */
typedef uint16_t chord_bf16; /* bfloat16 bits */

#define QK4_0 32
#define QK4_1 32
#define QK5_0 32
#define QK5_1 32
#define QK8_0 32
#define QK8_1 32
#define QK_K 256
#define K_SCALE_SIZE 12

/* 4.5 bpw: x = d * (q - 8) */
typedef struct {
    chord_half d;
    uint8_t qs[QK4_0 / 2]; /* low nibbles: elements 0..15, high: 16..31 */
} block_q4_0;
static_assert(sizeof(block_q4_0) == 18, "block_q4_0 size");

/* 5.0 bpw: x = d * q + m */
typedef struct {
    chord_half d;
    chord_half m;
    uint8_t qs[QK4_1 / 2];
} block_q4_1;
static_assert(sizeof(block_q4_1) == 20, "block_q4_1 size");

/* 5.5 bpw: x = d * (q - 16), 5th bit of element j in bit j of qh */
typedef struct {
    chord_half d;
    uint8_t qh[4];
    uint8_t qs[QK5_0 / 2];
} block_q5_0;
static_assert(sizeof(block_q5_0) == 22, "block_q5_0 size");

/* 6.0 bpw: x = d * q + m */
typedef struct {
    chord_half d;
    chord_half m;
    uint8_t qh[4];
    uint8_t qs[QK5_1 / 2];
} block_q5_1;
static_assert(sizeof(block_q5_1) == 24, "block_q5_1 size");

/* 8.5 bpw: x = d * q */
typedef struct {
    chord_half d;
    int8_t qs[QK8_0];
} block_q8_0;
static_assert(sizeof(block_q8_0) == 34, "block_q8_0 size");

/* 9.0 bpw activation type: s = d * sum(qs) */
typedef struct {
    chord_half d;
    chord_half s;
    int8_t qs[QK8_1];
} block_q8_1;
static_assert(sizeof(block_q8_1) == 36, "block_q8_1 size");

/* 2.625 bpw: 16 sub-blocks of 16; scales: low nibble scale, high nibble min */
typedef struct {
    uint8_t scales[QK_K / 16];
    uint8_t qs[QK_K / 4];
    chord_half d;
    chord_half dmin;
} block_q2_K;
static_assert(sizeof(block_q2_K) == 84, "block_q2_K size");

/* 3.4375 bpw: 16 sub-blocks of 16, 6-bit scales packed in 12 bytes */
typedef struct {
    uint8_t hmask[QK_K / 8];
    uint8_t qs[QK_K / 4];
    uint8_t scales[12];
    chord_half d;
} block_q3_K;
static_assert(sizeof(block_q3_K) == 110, "block_q3_K size");

/* 4.5 bpw: 8 sub-blocks of 32, 6-bit scales and mins packed in 12 bytes */
typedef struct {
    chord_half d;
    chord_half dmin;
    uint8_t scales[K_SCALE_SIZE];
    uint8_t qs[QK_K / 2];
} block_q4_K;
static_assert(sizeof(block_q4_K) == 144, "block_q4_K size");

/* 5.5 bpw */
typedef struct {
    chord_half d;
    chord_half dmin;
    uint8_t scales[K_SCALE_SIZE];
    uint8_t qh[QK_K / 8];
    uint8_t qs[QK_K / 2];
} block_q5_K;
static_assert(sizeof(block_q5_K) == 176, "block_q5_K size");

/* 6.5625 bpw: 16 sub-blocks of 16 with int8 scales */
typedef struct {
    uint8_t ql[QK_K / 2];
    uint8_t qh[QK_K / 4];
    int8_t scales[QK_K / 16];
    chord_half d;
} block_q6_K;
static_assert(sizeof(block_q6_K) == 210, "block_q6_K size");

/* 9.125 bpw activation type for K-quant dot products; bsums[i] = sum of qs[16i..16i+15] */
typedef struct {
    float d;
    int8_t qs[QK_K];
    int16_t bsums[QK_K / 16];
} block_q8_K;
static_assert(sizeof(block_q8_K) == 292, "block_q8_K size");

#endif
