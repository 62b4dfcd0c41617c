/* Tokenizers built from GGUF metadata (tokenizer.ggml.*).
 *
 * - "llama": SentencePiece-style BPE over scores (llama.cpp's SPM algorithm), with byte
 *   fallback tokens <0xNN>.
 * - "gpt2": byte-level BPE with merge ranks; the pre-tokenizer is chosen by
 *   tokenizer.ggml.pre (default/gpt-2, llama-bpe/llama3, qwen2, smollm, ...).
 *
 * A tok_vocab copies everything it needs: the gguf_file may be freed after tok_load.
 * It is immutable after loading, so one vocab may be used from several threads. */
#ifndef CHORD_TOKENIZER_H
#define CHORD_TOKENIZER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "chord.h"
#include "gguf.h"

typedef struct tok_vocab tok_vocab;

typedef enum tok_type {
    TOK_TYPE_UNDEFINED = 0,
    TOK_TYPE_NORMAL = 1,
    TOK_TYPE_UNKNOWN = 2,
    TOK_TYPE_CONTROL = 3,
    TOK_TYPE_USER_DEFINED = 4,
    TOK_TYPE_UNUSED = 5,
    TOK_TYPE_BYTE = 6,
} tok_type;

typedef enum tok_model {
    TOK_MODEL_SPM = 1, /* tokenizer.ggml.model = "llama" */
    TOK_MODEL_BPE = 2, /* tokenizer.ggml.model = "gpt2" */
} tok_model;

/* Reads the tokenizer.ggml.* keys. Errors: CHORD_E_FORMAT for missing/ill-typed/
 * inconsistent metadata, CHORD_E_UNSUPPORTED for an unknown model or pre-tokenizer
 * (the message names it), CHORD_E_NOMEM. */
chord_status tok_load(const gguf_file *g, tok_vocab **out, chord_error *err);
void tok_free(tok_vocab *v); /* NULL ok */

tok_model tok_get_model(const tok_vocab *v);
/* The pre-tokenizer name as given by tokenizer.ggml.pre ("" when absent). */
const char *tok_pre_name(const tok_vocab *v);
int tok_n_vocab(const tok_vocab *v);
int32_t tok_bos(const tok_vocab *v); /* -1 if none */
int32_t tok_eos(const tok_vocab *v); /* -1 if none */
int32_t tok_eot(const tok_vocab *v); /* -1 if none */
int32_t tok_unk(const tok_vocab *v); /* -1 if none */
int32_t tok_pad(const tok_vocab *v); /* -1 if none */
/* tokenizer.ggml.add_bos_token; default true for llama (SPM), false for gpt2. */
bool tok_add_bos(const tok_vocab *v);
/* tokenizer.ggml.add_eos_token; default false. tok_encode never appends EOS itself. */
bool tok_add_eos(const tok_vocab *v);
/* End of generation: the eos/eot/eom ids from the metadata, plus control (or
 * user-defined) tokens spelled <|im_end|>, <|eot_id|>, <|eom_id|>, <end_of_turn>,
 * <|end|>, <|endoftext|>, </s>, <|end_of_text|>, <EOT>, <|return|>, <|call|>. */
bool tok_is_eog(const tok_vocab *v, int32_t id);
bool tok_is_control(const tok_vocab *v, int32_t id);
tok_type tok_get_type(const tok_vocab *v, int32_t id); /* TOK_TYPE_UNDEFINED if invalid */
float tok_score(const tok_vocab *v, int32_t id);       /* 0 if none/invalid */

/* The raw vocabulary string (not NUL-terminated); NULL for an invalid id. */
const char *tok_text(const tok_vocab *v, int32_t id, size_t *len);
/* Exact vocabulary lookup; -1 if absent. */
int32_t tok_find(const tok_vocab *v, const char *text, size_t len);

/* Encodes text[0..len) (any bytes; invalid UTF-8 is kept byte for byte through byte
 * fallback / byte-level tokens). add_bos: prepend the BOS token if the vocab has one
 * (callers usually pass `want && tok_add_bos(v)`). parse_special: text spelled like a
 * control token (or the unknown token) becomes that token. User-defined tokens are
 * always matched, as in llama.cpp and Hugging Face tokenizers. Among candidates at one
 * position the longest wins; the leftmost position wins.
 * *ids is malloc'd (never NULL on success, even when *n_ids == 0); the caller frees. */
chord_status tok_encode(const tok_vocab *v, const char *text, size_t len, bool add_bos,
                        bool parse_special, int32_t **ids, size_t *n_ids, chord_error *err);

/* Bytes the token decodes to (may be a partial UTF-8 sequence): SPM "▁" -> " ",
 * <0xNN> -> that byte, byte-level BPE text -> bytes; control and unused tokens -> "";
 * user-defined tokens -> their text; the unknown token -> U+2585 "▅" (as llama.cpp).
 * Returns the length; writes only when it is <= size; -1 for an invalid id. */
int tok_piece(const tok_vocab *v, int32_t id, char *buf, int size);
/* The same bytes, pointing into the vocab (valid until tok_free); NULL if invalid. */
const char *tok_piece_ref(const tok_vocab *v, int32_t id, size_t *len);

/* Decodes a whole sequence (raw bytes, not validated as UTF-8). For SPM vocabs with
 * add_space_prefix, drops one leading space from the first non-empty piece when it
 * starts the output (the one tok_encode inserted). *out is malloc'd and NUL-terminated;
 * *out_len excludes the NUL. Invalid ids -> CHORD_E_INVALID_ARG. */
chord_status tok_decode(const tok_vocab *v, const int32_t *ids, size_t n, char **out,
                        size_t *out_len, chord_error *err);

/* UTF-8 safe streaming: feed token pieces, get only complete characters out.
 * Initialise with `tok_stream s = {0};`. Bytes that cannot start or continue a valid
 * character are replaced by U+FFFD once it is certain they cannot be completed
 * (one U+FFFD per maximal invalid subpart). */
typedef struct tok_stream {
    unsigned char pend[8];
    int n;
} tok_stream;

/* Output room that always suffices for tok_stream_push of n bytes / tok_stream_flush. */
#define TOK_STREAM_OUT_MAX(n) (3 * (size_t)(n) + 16)

/* Returns the number of bytes written to out. Writes at most cap bytes: with
 * cap >= TOK_STREAM_OUT_MAX(n) nothing is ever dropped; otherwise complete characters
 * that do not fit are dropped. */
size_t tok_stream_push(tok_stream *s, const char *bytes, size_t n, char *out, size_t cap);
/* Emits U+FFFD for a pending incomplete character (if any) and resets the stream. */
size_t tok_stream_flush(tok_stream *s, char *out, size_t cap);

#endif
