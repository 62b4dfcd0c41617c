/* Internals shared by the tokenizer files. */
#ifndef CHORD_TOK_INTERNAL_H
#define CHORD_TOK_INTERNAL_H

#include "tokenizer.h"

typedef enum tok_pre {
    TOK_PRE_NONE = 0,   /* SPM */
    TOK_PRE_GPT2,       /* GPT-2 regex */
    TOK_PRE_LLAMA3,     /* Llama 3 regex (numbers in groups of up to 3) */
    TOK_PRE_QWEN2,      /* Llama 3 regex with single digits */
    TOK_PRE_DIGITS_GPT2 /* every \p{N} isolated, then the GPT-2 regex (SmolLM, StarCoder) */
} tok_pre;

/* (left id, right id) -> merge rank and the merged token. */
typedef struct tok_merge {
    int32_t left, right; /* left = -1: empty slot */
    int32_t rank, result;
} tok_merge;

/* Growable int32 vector used while encoding. */
typedef struct tok_ivec {
    int32_t *v;
    size_t n, cap;
} tok_ivec;

struct tok_vocab {
    tok_model model;
    tok_pre pre;
    char pre_name[64];
    int32_t n;

    char *text;          /* all token texts, back to back */
    uint32_t *text_off;  /* [n + 1] */
    float *scores;       /* [n] (0 when the file has none) */
    uint8_t *types;      /* [n] tok_type */
    char *piece;         /* decoded bytes of every token, back to back */
    uint32_t *piece_off; /* [n + 1] */
    uint8_t *eog;        /* [n] */

    int32_t *hash; /* open addressing over token texts: id or -1 */
    uint32_t hash_mask;

    tok_merge *merges; /* open addressing, BPE only */
    uint32_t merge_mask;

    int32_t byte_tok[256];  /* SPM: <0xNN>; BPE: the byte's byte-level character; -1 */
    char byte_char[256][2]; /* BPE: UTF-8 of the byte-level character of each byte */
    uint8_t byte_char_len[256];
    uint8_t ascii_flags[128]; /* uni_flags of ASCII, cached */

    int32_t bos, eos, unk, pad, eot, eom;
    bool add_bos, add_eos, add_space_prefix, ignore_merges;

    /* Tokens matched in the text before tokenization, longest first, grouped by their
     * first byte: ids in special[special_start[b] .. special_start[b + 1]). */
    int32_t *special;
    uint32_t special_start[257];
};

static inline const char *tok_text_at(const tok_vocab *v, int32_t id, size_t *len) {
    *len = v->text_off[id + 1] - v->text_off[id];
    return v->text + v->text_off[id];
}

bool tok_ivec_push(tok_ivec *a, int32_t x);

/* The merge table (BPE): lookup (NULL if the pair is not listed) and insertion (false
 * if the pair is already there). */
const tok_merge *tok_merge_find(const tok_vocab *v, int32_t a, int32_t b);
bool tok_merge_insert(tok_merge *tab, uint32_t mask, int32_t a, int32_t b, int32_t rank,
                      int32_t result);

/* Encoders for one fragment of raw text (no special tokens inside). */
chord_status tok_spm_encode(const tok_vocab *v, const char *text, size_t len, bool add_prefix,
                            tok_ivec *out, chord_error *err);
chord_status tok_bpe_encode(const tok_vocab *v, const char *text, size_t len, tok_ivec *out,
                            chord_error *err);

/* Pre-tokenizer over decoded text: cp/fl/off hold the n code points (UNI_INVALID for
 * stray bytes), their flags, and their byte offsets (off[n] = the text length). Calls
 * fn(user, start, end) with the byte span of each piece, in order; returns false as soon
 * as fn does. */
typedef bool (*tok_piece_fn)(void *user, size_t start, size_t end);
bool tok_pretokenize_cps(tok_pre pre, const uint32_t *cp, const uint8_t *fl,
                         const uint32_t *off, size_t n, tok_piece_fn fn, void *user);

/* GPT-2 bytes_to_unicode: the code point standing for byte b, and back (-1: none). */
uint32_t tok_byte_to_cp(unsigned b);
int tok_cp_to_byte(uint32_t cp);

#endif
