/* Unicode helpers for the tokenizers: general category classes, White_Space, UTF-8. */
#ifndef CHORD_TOK_UNICODE_H
#define CHORD_TOK_UNICODE_H

#include <stddef.h>
#include <stdint.h>

/* Flags of a code point: its general category class, plus the White_Space property. */
enum {
    UNI_L = 0x01,     /* letter */
    UNI_N = 0x02,     /* number */
    UNI_P = 0x04,     /* punctuation */
    UNI_S = 0x08,     /* symbol */
    UNI_M = 0x10,     /* mark */
    UNI_Z = 0x20,     /* separator */
    UNI_C = 0x40,     /* other (control, format, unassigned, surrogate, private use) */
    UNI_SPACE = 0x80, /* White_Space (what \s matches) */
};

/* Generated tables (unicode_tables.c): range i covers [start[i], start[i+1]). */
extern const size_t uni_n_ranges;
extern const uint32_t uni_range_start[];
extern const uint8_t uni_range_flags[];

/* Marker for a byte that is not part of a valid UTF-8 sequence. */
#define UNI_INVALID 0xFFFFFFFFu

/* Flags of a code point (UNI_INVALID and out-of-range values: UNI_C). */
uint8_t uni_flags(uint32_t cp);

/* Decodes one UTF-8 character at s[0..n) (n > 0). Returns its length (1..4) and sets
 * *cp; for a byte that does not start a valid, complete sequence returns 1 and sets
 * *cp = UNI_INVALID. Rejects overlong forms, surrogates and values over U+10FFFF. */
size_t uni_utf8_decode(const unsigned char *s, size_t n, uint32_t *cp);

/* Encodes cp (<= U+10FFFF) into out (4 bytes room); returns the length. */
size_t uni_utf8_encode(uint32_t cp, char *out);

#endif
