/* Loading a vocabulary from tokenizer.ggml.* metadata, and lookups. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "error.h"
#include "tok_internal.h"
#include "unicode.h"

#define KEY(x) "tokenizer.ggml." x

static inline uint32_t text_hash(const char *s, size_t n) {
    uint32_t h = 2166136261u; /* FNV-1a */
    for (size_t i = 0; i < n; i++)
        h = (h ^ (unsigned char)s[i]) * 16777619u;
    return h;
}

int32_t tok_find(const tok_vocab *v, const char *text, size_t len) {
    if (!v || (!text && len)) return -1;
    if (!text) text = "";
    for (uint32_t i = text_hash(text, len) & v->hash_mask;; i = (i + 1) & v->hash_mask) {
        int32_t id = v->hash[i];
        if (id < 0) return -1;
        size_t n;
        const char *t = tok_text_at(v, id, &n);
        if (n == len && memcmp(t, text, len) == 0) return id;
    }
}

static uint32_t pow2_at_least(uint64_t n) {
    uint32_t p = 16;
    while (p < n)
        p *= 2;
    return p;
}

static chord_status fmt_err(chord_error *err, const gguf_file *g, const char *key,
                            const char *what) {
    const gguf_kv *kv = gguf_find_kv(g, key);
    return chord_fail_at(err, CHORD_E_FORMAT, kv ? (int64_t)kv->value.offset : -1, "%s %s", key,
                         what);
}

/* An optional bool key: absent -> def; present but not a bool -> error. */
static chord_status get_bool(const gguf_file *g, const char *key, bool def, bool *out,
                             chord_error *err) {
    *out = def;
    if (!gguf_find_kv(g, key)) return CHORD_OK;
    if (!gguf_get_bool(g, key, out)) return fmt_err(err, g, key, "is not a bool");
    return CHORD_OK;
}

/* An optional token id: absent or negative -> -1; present but not an integer or out of
 * range -> error (or -1 when lenient). */
static chord_status get_id(const gguf_file *g, const char *key, int32_t n, bool lenient,
                           int32_t *out, chord_error *err) {
    *out = -1;
    if (!gguf_find_kv(g, key)) return CHORD_OK;
    int64_t x;
    if (!gguf_get_i64(g, key, &x)) {
        uint64_t u;
        if (!gguf_get_u64(g, key, &u)) return fmt_err(err, g, key, "is not an integer");
        x = u > (uint64_t)INT64_MAX ? INT64_MAX : (int64_t)u;
    }
    if (x < 0 || (x >= n && lenient) || x == 0xFFFFFFFFll) return CHORD_OK;
    if (x >= n) {
        const gguf_kv *kv = gguf_find_kv(g, key);
        return chord_fail_at(err, CHORD_E_FORMAT, (int64_t)kv->value.offset,
                             "%s = %lld is out of range (%d tokens)", key, (long long)x, n);
    }
    *out = (int32_t)x;
    return CHORD_OK;
}

static bool is_integer_type(uint32_t t) {
    return t == GGUF_U8 || t == GGUF_I8 || t == GGUF_U16 || t == GGUF_I16 || t == GGUF_U32 ||
           t == GGUF_I32 || t == GGUF_U64 || t == GGUF_I64;
}

typedef struct pre_name {
    const char *name;
    tok_pre pre;
} pre_name;

static const pre_name PRE_NAMES[] = {
    {"default", TOK_PRE_GPT2},
    {"gpt-2", TOK_PRE_GPT2},
    {"gpt2", TOK_PRE_GPT2},
    {"llama-bpe", TOK_PRE_LLAMA3},
    {"llama3", TOK_PRE_LLAMA3},
    {"qwen2", TOK_PRE_QWEN2},
    {"deepseek-r1-qwen", TOK_PRE_QWEN2},
    {"smollm", TOK_PRE_DIGITS_GPT2},
    {"starcoder", TOK_PRE_DIGITS_GPT2},
    {"refact", TOK_PRE_DIGITS_GPT2},
};

/* Control tokens with these spellings end a generation. */
static const char *const EOG_TEXTS[] = {
    "<|im_end|>", "<|eot_id|>",      "<|eom_id|>", "<end_of_turn>", "<|end|>",  "<|endoftext|>",
    "</s>",       "<|end_of_text|>", "<EOT>",      "<|return|>",    "<|call|>",
};

/* Parses "<0xNN>"; -1 if it is not that. */
static int parse_byte_token(const char *t, size_t n) {
    if (n != 6 || memcmp(t, "<0x", 3) != 0 || t[5] != '>') return -1;
    int v = 0;
    for (int i = 3; i < 5; i++) {
        char c = t[i];
        int d = c >= '0' && c <= '9'   ? c - '0'
                : c >= 'A' && c <= 'F' ? c - 'A' + 10
                : c >= 'a' && c <= 'f' ? c - 'a' + 10
                                       : -1;
        if (d < 0) return -1;
        v = v * 16 + d;
    }
    return v;
}

/* Writes the decoded bytes of token id to dst (NULL: just measure); returns the length.
 * Never longer than the token text (U+2581 -> 1 byte, U+0100.. -> 1 byte), except the
 * unknown token which becomes the 3-byte U+2585. */
static size_t make_piece(const tok_vocab *v, int32_t id, char *dst) {
    size_t n;
    const char *t = tok_text_at(v, id, &n);
    switch (v->types[id]) {
    case TOK_TYPE_CONTROL:
    case TOK_TYPE_UNUSED: return 0;
    case TOK_TYPE_UNKNOWN:
        if (dst) memcpy(dst, "\xE2\x96\x85", 3);
        return 3;
    case TOK_TYPE_BYTE: {
        int b = parse_byte_token(t, n);
        if (b >= 0) {
            if (dst) dst[0] = (char)b;
            return 1;
        }
        break;
    }
    default: break;
    }
    size_t o = 0;
    if (v->model == TOK_MODEL_BPE && v->types[id] == TOK_TYPE_USER_DEFINED) {
        if (dst) memcpy(dst, t, n);
        return n;
    }
    for (size_t i = 0; i < n;) {
        uint32_t cp;
        size_t k = uni_utf8_decode((const unsigned char *)t + i, n - i, &cp);
        int byte = -1;
        if (v->model == TOK_MODEL_SPM)
            byte = cp == 0x2581 ? ' ' : -1;
        else if (cp != UNI_INVALID)
            byte = tok_cp_to_byte(cp);
        if (byte >= 0) {
            if (dst) dst[o] = (char)byte;
            o++;
        } else {
            if (dst) memcpy(dst + o, t + i, k);
            o += k;
        }
        i += k;
    }
    return o;
}

void tok_free(tok_vocab *v) {
    if (!v) return;
    free(v->text);
    free(v->text_off);
    free(v->scores);
    free(v->types);
    free(v->piece);
    free(v->piece_off);
    free(v->eog);
    free(v->hash);
    free(v->merges);
    free(v->special);
    free(v);
}

typedef struct special_key {
    uint32_t first; /* first byte */
    uint32_t len;
    int32_t id;
} special_key;

static int cmp_special(const void *a, const void *b) {
    const special_key *x = a, *y = b;
    if (x->first != y->first) return x->first < y->first ? -1 : 1;
    if (x->len != y->len) return x->len > y->len ? -1 : 1; /* longest first */
    return x->id < y->id ? -1 : x->id > y->id;
}

static chord_status load_merges(tok_vocab *v, const gguf_file *g, chord_error *err) {
    gguf_value arr;
    if (!gguf_get_arr(g, KEY("merges"), &arr))
        return chord_fail(err, CHORD_E_FORMAT, "%s is missing (needed by gpt2 tokenizers)",
                          KEY("merges"));
    if (arr.arr_type != GGUF_STRING)
        return chord_fail_at(err, CHORD_E_FORMAT, (int64_t)arr.offset,
                             "%s is an array of %s, not of strings", KEY("merges"),
                             gguf_vtype_name(arr.arr_type));
    if (arr.arr_n > INT32_MAX)
        return chord_fail_at(err, CHORD_E_FORMAT, (int64_t)arr.offset,
                             "%s has too many entries", KEY("merges"));
    v->merge_mask = pow2_at_least(arr.arr_n * 2 + 1) - 1;
    v->merges = malloc(((size_t)v->merge_mask + 1) * sizeof *v->merges);
    char *buf = NULL;
    size_t buf_cap = 0;
    if (!v->merges) return chord_fail(err, CHORD_E_NOMEM, "out of memory loading merges");
    for (size_t i = 0; i <= v->merge_mask; i++)
        v->merges[i].left = -1;
    for (uint64_t i = 0; i < arr.arr_n; i++) {
        gguf_str s = gguf_arr_str(&arr, i);
        /* "left right": split at the first space after the first byte. */
        const char *sp = s.len > 1 ? memchr(s.ptr + 1, ' ', s.len - 1) : NULL;
        if (!sp) {
            free(buf);
            return chord_fail_at(err, CHORD_E_FORMAT, (int64_t)arr.offset,
                                 "%s[%llu] = \"%.*s\" is not two tokens separated by a space",
                                 KEY("merges"), (unsigned long long)i,
                                 (int)(s.len > 64 ? 64 : s.len), s.ptr);
        }
        size_t ln = (size_t)(sp - s.ptr), rn = s.len - ln - 1;
        int32_t a = tok_find(v, s.ptr, ln), b = tok_find(v, sp + 1, rn);
        if (a < 0 || b < 0) continue; /* a pair of non-tokens can never apply */
        if (ln + rn > buf_cap) {
            buf_cap = (ln + rn) * 2;
            char *nb = realloc(buf, buf_cap);
            if (!nb) {
                free(buf);
                return chord_fail(err, CHORD_E_NOMEM, "out of memory loading merges");
            }
            buf = nb;
        }
        memcpy(buf, s.ptr, ln);
        memcpy(buf + ln, sp + 1, rn);
        int32_t r = tok_find(v, buf, ln + rn);
        if (r < 0) continue; /* the merged text is not a token: skip the rule */
        tok_merge_insert(v->merges, v->merge_mask, a, b, (int32_t)i, r);
    }
    free(buf);
    return CHORD_OK;
}

chord_status tok_load(const gguf_file *g, tok_vocab **out, chord_error *err) {
    *out = NULL;
    gguf_str model;
    if (!gguf_find_kv(g, KEY("model")))
        return chord_fail(err, CHORD_E_FORMAT, "%s is missing", KEY("model"));
    if (!gguf_get_str(g, KEY("model"), &model))
        return fmt_err(err, g, KEY("model"), "is not a string");
    tok_model kind;
    if (gguf_str_eq(model, "llama"))
        kind = TOK_MODEL_SPM;
    else if (gguf_str_eq(model, "gpt2"))
        kind = TOK_MODEL_BPE;
    else
        return chord_fail(err, CHORD_E_UNSUPPORTED,
                          "tokenizer model '%.*s' is not supported (only 'llama' and 'gpt2')",
                          (int)(model.len > 64 ? 64 : model.len), model.ptr);

    gguf_value toks;
    if (!gguf_get_arr(g, KEY("tokens"), &toks)) {
        if (gguf_find_kv(g, KEY("tokens")))
            return fmt_err(err, g, KEY("tokens"), "is not an array");
        return chord_fail(err, CHORD_E_FORMAT, "%s is missing", KEY("tokens"));
    }
    if (toks.arr_type != GGUF_STRING)
        return chord_fail_at(err, CHORD_E_FORMAT, (int64_t)toks.offset,
                             "%s is an array of %s, not of strings", KEY("tokens"),
                             gguf_vtype_name(toks.arr_type));
    if (toks.arr_n == 0 || toks.arr_n >= INT32_MAX / 2)
        return chord_fail_at(err, CHORD_E_FORMAT, (int64_t)toks.offset, "%s has %llu entries",
                             KEY("tokens"), (unsigned long long)toks.arr_n);
    int32_t n = (int32_t)toks.arr_n;

    gguf_value scores = {0}, types = {0};
    bool has_scores = gguf_get_arr(g, KEY("scores"), &scores);
    if (!has_scores && gguf_find_kv(g, KEY("scores")))
        return fmt_err(err, g, KEY("scores"), "is not an array");
    if (has_scores) {
        if (scores.arr_type != GGUF_F32 && scores.arr_type != GGUF_F64)
            return chord_fail_at(err, CHORD_E_FORMAT, (int64_t)scores.offset,
                                 "%s is an array of %s, not of floats", KEY("scores"),
                                 gguf_vtype_name(scores.arr_type));
        if (scores.arr_n != toks.arr_n)
            return chord_fail_at(err, CHORD_E_FORMAT, (int64_t)scores.offset,
                                 "%s has %llu entries but there are %d tokens", KEY("scores"),
                                 (unsigned long long)scores.arr_n, n);
    } else if (kind == TOK_MODEL_SPM) {
        return chord_fail(err, CHORD_E_FORMAT, "%s is missing (needed by llama tokenizers)",
                          KEY("scores"));
    }
    bool has_types = gguf_get_arr(g, KEY("token_type"), &types);
    if (!has_types && gguf_find_kv(g, KEY("token_type")))
        return fmt_err(err, g, KEY("token_type"), "is not an array");
    if (has_types) {
        if (!is_integer_type(types.arr_type))
            return chord_fail_at(err, CHORD_E_FORMAT, (int64_t)types.offset,
                                 "%s is an array of %s, not of integers", KEY("token_type"),
                                 gguf_vtype_name(types.arr_type));
        if (types.arr_n != toks.arr_n)
            return chord_fail_at(err, CHORD_E_FORMAT, (int64_t)types.offset,
                                 "%s has %llu entries but there are %d tokens",
                                 KEY("token_type"), (unsigned long long)types.arr_n, n);
    }

    tok_vocab *v = calloc(1, sizeof *v);
    if (!v) return chord_fail(err, CHORD_E_NOMEM, "out of memory loading the vocabulary");
    chord_status st = CHORD_OK;
    v->model = kind;
    v->n = n;
    v->pre = TOK_PRE_NONE;

    /* Token texts, copied. */
    uint64_t total = 0;
    for (int32_t i = 0; i < n; i++)
        total += gguf_arr_str(&toks, (uint64_t)i).len;
    if (total >= UINT32_MAX / 2) {
        st = chord_fail_at(err, CHORD_E_FORMAT, (int64_t)toks.offset, "%s is too large",
                           KEY("tokens"));
        goto fail;
    }
    v->text = malloc(total ? total : 1);
    v->text_off = malloc(((size_t)n + 1) * sizeof *v->text_off);
    v->scores = calloc((size_t)n, sizeof *v->scores);
    v->types = malloc((size_t)n);
    v->eog = calloc((size_t)n, 1);
    v->hash_mask = pow2_at_least((uint64_t)n * 2) - 1;
    v->hash = malloc(((size_t)v->hash_mask + 1) * sizeof *v->hash);
    if (!v->text || !v->text_off || !v->scores || !v->types || !v->eog || !v->hash) goto nomem;
    uint32_t off = 0;
    for (int32_t i = 0; i < n; i++) {
        gguf_str s = gguf_arr_str(&toks, (uint64_t)i);
        v->text_off[i] = off;
        if (s.len) memcpy(v->text + off, s.ptr, s.len);
        off += (uint32_t)s.len;
        v->scores[i] = has_scores ? (float)gguf_arr_f64(&scores, (uint64_t)i) : 0.0f;
        int64_t t = has_types ? gguf_arr_i64(&types, (uint64_t)i) : TOK_TYPE_NORMAL;
        if (t < 0 || t > TOK_TYPE_BYTE) {
            st = chord_fail_at(err, CHORD_E_FORMAT, (int64_t)types.offset,
                               "%s[%d] = %lld is not a token type (0..6)", KEY("token_type"), i,
                               (long long)t);
            goto fail;
        }
        v->types[i] = (uint8_t)(t == TOK_TYPE_UNDEFINED ? TOK_TYPE_NORMAL : t);
        /* Without token types, SPM byte tokens are known by their spelling. */
        if (!has_types && kind == TOK_MODEL_SPM && parse_byte_token(s.ptr, s.len) >= 0)
            v->types[i] = TOK_TYPE_BYTE;
    }
    v->text_off[n] = off;
    for (uint32_t i = 0; i <= v->hash_mask; i++)
        v->hash[i] = -1;
    for (int32_t id = 0; id < n; id++) {
        size_t len;
        const char *t = tok_text_at(v, id, &len);
        for (uint32_t i = text_hash(t, len) & v->hash_mask;; i = (i + 1) & v->hash_mask) {
            int32_t o = v->hash[i];
            if (o < 0) {
                v->hash[i] = id;
                break;
            }
            size_t ol;
            const char *ot = tok_text_at(v, o, &ol);
            if (ol == len && memcmp(ot, t, len) == 0) break; /* duplicate: first id wins */
        }
    }

    /* Special ids and flags. */
    struct {
        const char *key;
        int32_t *dst;
        bool lenient;
    } ids[] = {
        {KEY("bos_token_id"), &v->bos, false},     {KEY("eos_token_id"), &v->eos, false},
        {KEY("unknown_token_id"), &v->unk, false}, {KEY("eot_token_id"), &v->eot, false},
        {KEY("eom_token_id"), &v->eom, false},     {KEY("padding_token_id"), &v->pad, true},
    };
    for (size_t i = 0; i < sizeof ids / sizeof ids[0]; i++)
        if ((st = get_id(g, ids[i].key, n, ids[i].lenient, ids[i].dst, err))) goto fail;
    if ((st = get_bool(g, KEY("add_bos_token"), kind == TOK_MODEL_SPM, &v->add_bos, err)) ||
        (st = get_bool(g, KEY("add_eos_token"), false, &v->add_eos, err)) ||
        (st = get_bool(g, KEY("add_space_prefix"), kind == TOK_MODEL_SPM, &v->add_space_prefix,
                       err)))
        goto fail;
    if (kind == TOK_MODEL_BPE) v->add_space_prefix = false; /* not implemented for BPE */
    if (v->unk < 0 && kind == TOK_MODEL_SPM) {
        /* SentencePiece vocabularies always have one; find it by type. */
        for (int32_t i = 0; i < n && v->unk < 0; i++)
            if (v->types[i] == TOK_TYPE_UNKNOWN) v->unk = i;
    }

    /* Pre-tokenizer. */
    gguf_str pre = {"", 0};
    if (gguf_find_kv(g, KEY("pre")) && !gguf_get_str(g, KEY("pre"), &pre)) {
        st = fmt_err(err, g, KEY("pre"), "is not a string");
        goto fail;
    }
    snprintf(v->pre_name, sizeof v->pre_name, "%.*s", (int)(pre.len > 63 ? 63 : pre.len),
             pre.ptr);
    if (kind == TOK_MODEL_BPE) {
        if (pre.len == 0) {
            v->pre = TOK_PRE_GPT2;
        } else {
            for (size_t i = 0; i < sizeof PRE_NAMES / sizeof PRE_NAMES[0]; i++)
                if (gguf_str_eq(pre, PRE_NAMES[i].name)) v->pre = PRE_NAMES[i].pre;
            if (v->pre == TOK_PRE_NONE) {
                st = chord_fail(err, CHORD_E_UNSUPPORTED,
                                "pre-tokenizer '%.*s' (%s) is not supported",
                                (int)(pre.len > 64 ? 64 : pre.len), pre.ptr, KEY("pre"));
                goto fail;
            }
        }
        v->ignore_merges = v->pre == TOK_PRE_LLAMA3;
    }
    for (uint32_t c = 0; c < 128; c++)
        v->ascii_flags[c] = uni_flags(c);

    /* Byte tokens. */
    for (int b = 0; b < 256; b++) {
        if (kind == TOK_MODEL_SPM) {
            char name[8];
            snprintf(name, sizeof name, "<0x%02X>", b);
            v->byte_tok[b] = tok_find(v, name, 6);
        } else {
            v->byte_char_len[b] =
                (uint8_t)uni_utf8_encode(tok_byte_to_cp((unsigned)b), v->byte_char[b]);
            v->byte_tok[b] = tok_find(v, v->byte_char[b], v->byte_char_len[b]);
        }
    }
    if (kind == TOK_MODEL_BPE && (st = load_merges(v, g, err))) goto fail;

    /* Decoded pieces. */
    uint64_t ptotal = 0;
    for (int32_t i = 0; i < n; i++)
        ptotal += make_piece(v, i, NULL);
    v->piece = malloc(ptotal ? ptotal : 1);
    v->piece_off = malloc(((size_t)n + 1) * sizeof *v->piece_off);
    if (!v->piece || !v->piece_off) goto nomem;
    uint32_t po = 0;
    for (int32_t i = 0; i < n; i++) {
        v->piece_off[i] = po;
        po += (uint32_t)make_piece(v, i, v->piece + po);
    }
    v->piece_off[n] = po;

    /* End of generation. */
    int32_t eog_ids[] = {v->eos, v->eot, v->eom};
    for (size_t i = 0; i < 3; i++)
        if (eog_ids[i] >= 0) v->eog[eog_ids[i]] = 1;
    for (size_t i = 0; i < sizeof EOG_TEXTS / sizeof EOG_TEXTS[0]; i++) {
        int32_t id = tok_find(v, EOG_TEXTS[i], strlen(EOG_TEXTS[i]));
        if (id >= 0 &&
            (v->types[id] == TOK_TYPE_CONTROL || v->types[id] == TOK_TYPE_USER_DEFINED))
            v->eog[id] = 1;
    }

    /* Tokens matched before tokenization: control, unknown and user-defined ones. */
    size_t ns = 0;
    for (int32_t i = 0; i < n; i++) {
        uint8_t t = v->types[i];
        if ((t == TOK_TYPE_CONTROL || t == TOK_TYPE_USER_DEFINED || t == TOK_TYPE_UNKNOWN) &&
            v->text_off[i + 1] > v->text_off[i])
            ns++;
    }
    special_key *keys = malloc((ns ? ns : 1) * sizeof *keys);
    v->special = malloc((ns ? ns : 1) * sizeof *v->special);
    if (!keys || !v->special) {
        free(keys);
        goto nomem;
    }
    ns = 0;
    for (int32_t i = 0; i < n; i++) {
        uint8_t t = v->types[i];
        uint32_t len = v->text_off[i + 1] - v->text_off[i];
        if ((t == TOK_TYPE_CONTROL || t == TOK_TYPE_USER_DEFINED || t == TOK_TYPE_UNKNOWN) &&
            len > 0)
            keys[ns++] = (special_key){(unsigned char)v->text[v->text_off[i]], len, i};
    }
    qsort(keys, ns, sizeof *keys, cmp_special);
    memset(v->special_start, 0, sizeof v->special_start);
    for (size_t i = 0; i < ns; i++) {
        v->special[i] = keys[i].id;
        v->special_start[keys[i].first + 1]++;
    }
    for (int b = 0; b < 256; b++)
        v->special_start[b + 1] += v->special_start[b];
    free(keys);

    *out = v;
    return CHORD_OK;
nomem:
    st = chord_fail(err, CHORD_E_NOMEM, "out of memory loading the vocabulary");
fail:
    tok_free(v);
    return st;
}

/* ------------------------------------------------------------------ accessors */

tok_model tok_get_model(const tok_vocab *v) {
    return v->model;
}
const char *tok_pre_name(const tok_vocab *v) {
    return v->pre_name;
}
int tok_n_vocab(const tok_vocab *v) {
    return v ? v->n : 0;
}
int32_t tok_bos(const tok_vocab *v) {
    return v->bos;
}
int32_t tok_eos(const tok_vocab *v) {
    return v->eos;
}
int32_t tok_eot(const tok_vocab *v) {
    return v->eot;
}
int32_t tok_unk(const tok_vocab *v) {
    return v->unk;
}
int32_t tok_pad(const tok_vocab *v) {
    return v->pad;
}
bool tok_add_bos(const tok_vocab *v) {
    return v->add_bos;
}
bool tok_add_eos(const tok_vocab *v) {
    return v->add_eos;
}

bool tok_is_eog(const tok_vocab *v, int32_t id) {
    return v && id >= 0 && id < v->n && v->eog[id];
}

bool tok_is_control(const tok_vocab *v, int32_t id) {
    return v && id >= 0 && id < v->n && v->types[id] == TOK_TYPE_CONTROL;
}

tok_type tok_get_type(const tok_vocab *v, int32_t id) {
    return v && id >= 0 && id < v->n ? (tok_type)v->types[id] : TOK_TYPE_UNDEFINED;
}

float tok_score(const tok_vocab *v, int32_t id) {
    return v && id >= 0 && id < v->n ? v->scores[id] : 0.0f;
}

const char *tok_text(const tok_vocab *v, int32_t id, size_t *len) {
    if (!v || id < 0 || id >= v->n) {
        if (len) *len = 0;
        return NULL;
    }
    size_t n;
    const char *t = tok_text_at(v, id, &n);
    if (len) *len = n;
    return t;
}

const char *tok_piece_ref(const tok_vocab *v, int32_t id, size_t *len) {
    if (!v || id < 0 || id >= v->n) {
        if (len) *len = 0;
        return NULL;
    }
    if (len) *len = v->piece_off[id + 1] - v->piece_off[id];
    return v->piece + v->piece_off[id];
}

int tok_piece(const tok_vocab *v, int32_t id, char *buf, int size) {
    size_t n;
    const char *p = tok_piece_ref(v, id, &n);
    if (!p) return -1;
    if (size >= 0 && n <= (size_t)size && n) memcpy(buf, p, n);
    return (int)n;
}
