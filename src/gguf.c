/* GGUF v2/v3 parser. Reads a byte span, validates every field before it is used, and
 * builds: the kv and tensor tables, hash indexes for lookup by name, and per-element
 * offset tables for top-level string arrays (O(1) gguf_arr_str on 150k-entry vocabs).
 *
 * Layout (little-endian):
 *   "GGUF" u32 version, u64 n_tensors, u64 n_kv
 *   n_kv x { str key, u32 type, value }      str = u64 len + bytes
 *       array value = u32 elem type, u64 count, elements (an element that is itself
 *       an array carries its own type + count header)
 *   n_tensors x { str name, u32 n_dims, n_dims x u64 ne, u32 type, u64 offset }
 *   padding to general.alignment (u32, default 32), then the data section. */
#include "gguf.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "error.h"
#include "quant/types.h"

#define GGUF_MAGIC "GGUF"
#define GGUF_DEFAULT_ALIGNMENT 32u
#define GGUF_MAX_DEPTH 8     /* a top-level array is depth 1 */
#define KV_MIN_BYTES 13u     /* u64 key length + u32 type + a 1-byte value */
#define TENSOR_MIN_BYTES 32u /* u64 name length + u32 n_dims + one u64 ne + u32 + u64 */
#define NAME_SHOW 64         /* bytes of a key / tensor name quoted in messages */
#define STR_SHOW 60          /* bytes of a string value shown by gguf_value_format */

typedef struct gguf_hash {
    uint64_t *slots; /* index + 1; 0 = empty */
    uint64_t mask;   /* capacity - 1 (a power of two) */
    uint64_t count;
} gguf_hash;

struct gguf_file {
    const uint8_t *base;
    size_t size;
    uint32_t version;
    uint64_t alignment;
    uint64_t data_offset;
    /* The arrays grow as records are parsed (a corrupt count allocates nothing up front);
     * after a successful parse n_kv/n_tensors entries are filled. */
    uint64_t n_kv, kv_len, kv_cap;
    gguf_kv *kv;
    uint64_t n_tensors, tensor_len, tensor_cap;
    gguf_tensor *tensors;
    uint64_t *info_at; /* parse time only: file offset of each tensor info */
    gguf_hash kv_hash;
    gguf_hash tensor_hash;
};

/* ------------------------------------------------------------ byte helpers */

static inline uint16_t le16(const uint8_t *p) {
    return (uint16_t)(p[0] | (p[1] << 8));
}
static inline uint32_t le32(const uint8_t *p) {
    return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) |
           ((uint32_t)p[3] << 24);
}
static inline uint64_t le64(const uint8_t *p) {
    return (uint64_t)le32(p) | ((uint64_t)le32(p + 4) << 32);
}

static size_t scalar_size(uint32_t t) {
    switch (t) {
    case GGUF_U8:
    case GGUF_I8:
    case GGUF_BOOL: return 1;
    case GGUF_U16:
    case GGUF_I16: return 2;
    case GGUF_U32:
    case GGUF_I32:
    case GGUF_F32: return 4;
    case GGUF_U64:
    case GGUF_I64:
    case GGUF_F64: return 8;
    default: return 0;
    }
}

static bool vtype_valid(uint32_t t) {
    return t <= GGUF_F64;
}

const char *gguf_vtype_name(uint32_t t) {
    static const char *const names[] = {"u8",   "i8",     "u16",   "i16", "u32", "i32", "f32",
                                        "bool", "string", "array", "u64", "i64", "f64"};
    return vtype_valid(t) ? names[t] : "unknown";
}

/* Copies up to NAME_SHOW bytes of s into dst (size >= NAME_SHOW + 4) for messages,
 * replacing control bytes with '?'. */
static void show_name(char *dst, const uint8_t *s, uint64_t len) {
    size_t n = len > NAME_SHOW ? NAME_SHOW : (size_t)len, k = 0;
    for (size_t i = 0; i < n; i++)
        dst[k++] = (s[i] < 0x20 || s[i] == 0x7f) ? '?' : (char)s[i];
    if (len > NAME_SHOW) {
        memcpy(dst + k, "...", 3);
        k += 3;
    }
    dst[k] = 0;
}

static uint64_t hash_bytes(const void *p, uint64_t n) {
    const uint8_t *s = p;
    uint64_t h = 1469598103934665603ull;
    for (uint64_t i = 0; i < n; i++) {
        h ^= s[i];
        h *= 1099511628211ull;
    }
    return h ^ (h >> 29);
}

static bool str_eq_bytes(gguf_str s, const char *p, size_t n) {
    return s.len == n && (n == 0 || memcmp(s.ptr, p, n) == 0);
}

bool gguf_str_eq(gguf_str s, const char *cstr) {
    if (!cstr) return false;
    return str_eq_bytes(s, cstr, strlen(cstr));
}

typedef gguf_str (*name_fn)(const gguf_file *, uint64_t);

/* Keeps the load factor <= 1/2; false when out of memory. */
static bool hash_reserve(gguf_hash *h, uint64_t n, name_fn name_of, const gguf_file *f) {
    uint64_t cap = h->slots ? h->mask + 1 : 0;
    if (cap && 2 * n <= cap) return true;
    uint64_t ncap = cap ? cap : 16;
    while (ncap < 2 * n)
        ncap *= 2;
    if (ncap > SIZE_MAX / sizeof(uint64_t)) return false;
    uint64_t *slots = calloc((size_t)ncap, sizeof(uint64_t));
    if (!slots) return false;
    for (uint64_t k = 0; k < cap; k++) {
        uint64_t s = h->slots[k];
        if (!s) continue;
        gguf_str nm = name_of(f, s - 1);
        uint64_t i = hash_bytes(nm.ptr, nm.len) & (ncap - 1);
        while (slots[i])
            i = (i + 1) & (ncap - 1);
        slots[i] = s;
    }
    free(h->slots);
    h->slots = slots;
    h->mask = ncap - 1;
    return true;
}

/* Returns the index of the existing entry with this name, or inserts idx and returns
 * UINT64_MAX. `name_of` maps an index to its name. The table has room (hash_reserve). */
static uint64_t hash_insert(gguf_hash *h, gguf_str name, uint64_t idx, name_fn name_of,
                            const gguf_file *f) {
    uint64_t i = hash_bytes(name.ptr, name.len) & h->mask;
    for (;; i = (i + 1) & h->mask) {
        uint64_t s = h->slots[i];
        if (!s) {
            h->slots[i] = idx + 1;
            h->count++;
            return UINT64_MAX;
        }
        gguf_str other = name_of(f, s - 1);
        if (other.len == name.len && (name.len == 0 || !memcmp(other.ptr, name.ptr, name.len)))
            return s - 1;
    }
}

static uint64_t hash_find(const gguf_hash *h, const char *name, name_fn name_of,
                          const gguf_file *f) {
    if (!h->slots || !name) return UINT64_MAX;
    size_t n = strlen(name);
    uint64_t i = hash_bytes(name, n) & h->mask;
    for (;; i = (i + 1) & h->mask) {
        uint64_t s = h->slots[i];
        if (!s) return UINT64_MAX;
        if (str_eq_bytes(name_of(f, s - 1), name, n)) return s - 1;
    }
}

static gguf_str kv_name(const gguf_file *f, uint64_t i) {
    return f->kv[i].key;
}
static gguf_str tensor_name(const gguf_file *f, uint64_t i) {
    return f->tensors[i].name;
}

/* Makes room for entry `len` of an array of `elem`-byte entries (capacity *cap, at most
 * `max` entries ever), zeroing new entries. False when out of memory. */
static bool grow(void **arr, uint64_t *cap, uint64_t len, uint64_t max, size_t elem) {
    if (len < *cap) return true;
    uint64_t ncap = *cap ? *cap * 2 : 16;
    if (ncap > max) ncap = max;
    if (ncap <= len || ncap > SIZE_MAX / elem) return false;
    void *p = realloc(*arr, (size_t)ncap * elem);
    if (!p) return false;
    memset((char *)p + (size_t)*cap * elem, 0, (size_t)(ncap - *cap) * elem);
    *arr = p;
    *cap = ncap;
    return true;
}

/* ------------------------------------------------------------------ reader */

typedef struct reader {
    const uint8_t *b;
    uint64_t size;
    uint64_t pos;
    chord_error *err;
    char where[160]; /* "kv 3 ('general.name')": prefixes every message */
} reader;

static uint64_t left(const reader *r) {
    return r->size - r->pos;
}

/* Fails unless n more bytes are available; `what` names the field. */
static chord_status need(reader *r, uint64_t n, const char *what) {
    if (n <= left(r)) return CHORD_OK;
    return chord_fail_at(r->err, CHORD_E_FORMAT, (int64_t)r->pos,
                         "%s: %s (%" PRIu64 " bytes at offset %" PRIu64
                         ") extends past end of file (size %" PRIu64 ")",
                         r->where, what, n, r->pos, r->size);
}

static chord_status rd_u32(reader *r, uint32_t *v, const char *what) {
    chord_status st = need(r, 4, what);
    if (st) return st;
    *v = le32(r->b + r->pos);
    r->pos += 4;
    return CHORD_OK;
}

static chord_status rd_u64(reader *r, uint64_t *v, const char *what) {
    chord_status st = need(r, 8, what);
    if (st) return st;
    *v = le64(r->b + r->pos);
    r->pos += 8;
    return CHORD_OK;
}

/* A gguf string: u64 length + bytes, the bytes checked against the file. */
static chord_status rd_str(reader *r, gguf_str *s, const char *what) {
    uint64_t at = r->pos, len;
    char lbl[64];
    snprintf(lbl, sizeof lbl, "%s length", what);
    chord_status st = rd_u64(r, &len, lbl);
    if (st) return st;
    if (len > left(r))
        return chord_fail_at(r->err, CHORD_E_FORMAT, (int64_t)at,
                             "%s: %s length %" PRIu64 " at offset %" PRIu64
                             " exceeds the %" PRIu64 " bytes left in the file (size %" PRIu64
                             ")",
                             r->where, what, len, at, left(r), r->size);
    s->ptr = (const char *)(r->b + r->pos);
    s->len = len;
    r->pos += len;
    return CHORD_OK;
}

/* Validates the elements of an array whose type/count header has been read: `elem`
 * elements of `count`, starting at r->pos. `depth` is this array's nesting level.
 * When `index` is not NULL and the elements are strings, *index gets a malloc'd table
 * of element offsets relative to the first element. */
static chord_status rd_array_elems(reader *r, uint32_t elem, uint64_t count, uint64_t hdr_at,
                                   int depth, uint64_t **index) {
    if (!vtype_valid(elem))
        return chord_fail_at(r->err, CHORD_E_FORMAT, (int64_t)hdr_at,
                             "%s: array element type id %" PRIu32 " at offset %" PRIu64
                             " is not a known value type",
                             r->where, elem, hdr_at);
    size_t es = scalar_size(elem);
    uint64_t min_elem = es ? es : (elem == GGUF_STRING ? 8 : 12);
    if (count > left(r) / min_elem)
        return chord_fail_at(r->err, CHORD_E_FORMAT, (int64_t)hdr_at + 4,
                             "%s: array count %" PRIu64 " of %s elements at offset %" PRIu64
                             " does not fit in the %" PRIu64 " bytes left in the file",
                             r->where, count, gguf_vtype_name(elem), hdr_at + 4, left(r));
    uint64_t start = r->pos;
    if (es) {
        if (elem == GGUF_BOOL) {
            for (uint64_t i = 0; i < count; i++)
                if (r->b[start + i] > 1)
                    return chord_fail_at(r->err, CHORD_E_FORMAT, (int64_t)(start + i),
                                         "%s: array element %" PRIu64
                                         ": bool value %u at offset %" PRIu64
                                         " is neither 0 nor 1",
                                         r->where, i, r->b[start + i], start + i);
        }
        r->pos += count * es;
        return CHORD_OK;
    }
    if (elem == GGUF_STRING) {
        uint64_t *idx = NULL;
        if (index && count) {
            if (count > SIZE_MAX / sizeof(uint64_t) ||
                !(idx = malloc((size_t)count * sizeof(uint64_t))))
                return chord_fail(r->err, CHORD_E_NOMEM,
                                  "%s: can not allocate the index of %" PRIu64 " strings",
                                  r->where, count);
        }
        for (uint64_t i = 0; i < count; i++) {
            uint64_t at = r->pos;
            if (left(r) < 8 || le64(r->b + at) > left(r) - 8) {
                free(idx);
                if (left(r) < 8)
                    return chord_fail_at(r->err, CHORD_E_FORMAT, (int64_t)at,
                                         "%s: array element %" PRIu64
                                         ": string length at offset %" PRIu64
                                         " extends past end of file (size %" PRIu64 ")",
                                         r->where, i, at, r->size);
                return chord_fail_at(r->err, CHORD_E_FORMAT, (int64_t)at,
                                     "%s: array element %" PRIu64 ": string length %" PRIu64
                                     " at offset %" PRIu64 " exceeds the %" PRIu64
                                     " bytes left in the file (size %" PRIu64 ")",
                                     r->where, i, le64(r->b + at), at, left(r) - 8, r->size);
            }
            if (idx) idx[i] = at - start;
            r->pos = at + 8 + le64(r->b + at);
        }
        if (index) *index = idx;
        return CHORD_OK;
    }
    /* elem == GGUF_ARRAY: each element has its own type + count header */
    if (depth + 1 > GGUF_MAX_DEPTH)
        return chord_fail_at(r->err, CHORD_E_FORMAT, (int64_t)hdr_at,
                             "%s: arrays nested deeper than %d levels at offset %" PRIu64,
                             r->where, GGUF_MAX_DEPTH, hdr_at);
    for (uint64_t i = 0; i < count; i++) {
        uint64_t at = r->pos;
        uint32_t t;
        uint64_t n;
        chord_status st = rd_u32(r, &t, "nested array element type");
        if (!st) st = rd_u64(r, &n, "nested array count");
        if (!st) st = rd_array_elems(r, t, n, at, depth + 1, NULL);
        if (st) return st;
    }
    return CHORD_OK;
}

/* ------------------------------------------------------------------- parse */

static chord_status parse_kvs(gguf_file *f, reader *r) {
    for (uint64_t i = 0; i < f->n_kv; i++) {
        if (!grow((void **)&f->kv, &f->kv_cap, i, f->n_kv, sizeof *f->kv) ||
            !hash_reserve(&f->kv_hash, i + 1, kv_name, f))
            return chord_fail(r->err, CHORD_E_NOMEM, "out of memory at kv %" PRIu64, i);
        f->kv_len = i + 1;
        gguf_kv *kv = &f->kv[i];
        uint64_t key_at = r->pos;
        snprintf(r->where, sizeof r->where, "kv %" PRIu64, i);
        chord_status st = rd_str(r, &kv->key, "key");
        if (st) return st;
        char name[NAME_SHOW + 4];
        show_name(name, (const uint8_t *)kv->key.ptr, kv->key.len);
        snprintf(r->where, sizeof r->where, "kv %" PRIu64 " ('%s')", i, name);

        uint64_t type_at = r->pos;
        uint32_t type;
        if ((st = rd_u32(r, &type, "value type"))) return st;
        if (!vtype_valid(type))
            return chord_fail_at(r->err, CHORD_E_FORMAT, (int64_t)type_at,
                                 "%s: value type id %" PRIu32 " at offset %" PRIu64
                                 " is not a known value type",
                                 r->where, type, type_at);
        kv->value.type = type;
        if (type == GGUF_ARRAY) {
            uint64_t hdr_at = r->pos;
            if ((st = rd_u32(r, &kv->value.arr_type, "array element type"))) return st;
            if ((st = rd_u64(r, &kv->value.arr_n, "array count"))) return st;
            kv->value.data = r->b + r->pos;
            kv->value.offset = r->pos;
            uint64_t *index = NULL;
            st = rd_array_elems(r, kv->value.arr_type, kv->value.arr_n, hdr_at, 1, &index);
            kv->value.str_index_ = index;
            if (st) return st;
        } else {
            kv->value.data = r->b + r->pos;
            kv->value.offset = r->pos;
            if (type == GGUF_STRING) {
                gguf_str s;
                if ((st = rd_str(r, &s, "string value"))) return st;
            } else {
                size_t es = scalar_size(type);
                char what[32];
                snprintf(what, sizeof what, "%s value", gguf_vtype_name(type));
                if ((st = need(r, es, what))) return st;
                if (type == GGUF_BOOL && r->b[r->pos] > 1)
                    return chord_fail_at(r->err, CHORD_E_FORMAT, (int64_t)r->pos,
                                         "%s: bool value %u at offset %" PRIu64
                                         " is neither 0 nor 1",
                                         r->where, r->b[r->pos], r->pos);
                r->pos += es;
            }
        }
        uint64_t prev = hash_insert(&f->kv_hash, kv->key, i, kv_name, f);
        if (prev != UINT64_MAX)
            return chord_fail_at(r->err, CHORD_E_FORMAT, (int64_t)key_at,
                                 "%s: duplicate key at offset %" PRIu64
                                 " (also defined by kv %" PRIu64 ")",
                                 r->where, key_at, prev);
    }
    return CHORD_OK;
}

static chord_status parse_alignment(gguf_file *f, reader *r) {
    f->alignment = GGUF_DEFAULT_ALIGNMENT;
    const gguf_kv *kv = gguf_find_kv(f, "general.alignment");
    if (!kv) return CHORD_OK;
    if (kv->value.type != GGUF_U32)
        return chord_fail_at(r->err, CHORD_E_FORMAT, (int64_t)kv->value.offset,
                             "general.alignment: must be of type u32, not %s (value at "
                             "offset %" PRIu64 ")",
                             gguf_vtype_name(kv->value.type), kv->value.offset);
    uint32_t a = le32(kv->value.data);
    if (a == 0 || (a & (a - 1)))
        return chord_fail_at(r->err, CHORD_E_FORMAT, (int64_t)kv->value.offset,
                             "general.alignment: %" PRIu32 " at offset %" PRIu64
                             " is not a nonzero power of two",
                             a, kv->value.offset);
    f->alignment = a;
    return CHORD_OK;
}

static chord_status parse_tensor_infos(gguf_file *f, reader *r) {
    for (uint64_t i = 0; i < f->n_tensors; i++) {
        uint64_t cap = f->tensor_cap;
        if (!grow((void **)&f->tensors, &f->tensor_cap, i, f->n_tensors, sizeof *f->tensors) ||
            !grow((void **)&f->info_at, &cap, i, f->n_tensors, sizeof *f->info_at) ||
            !hash_reserve(&f->tensor_hash, i + 1, tensor_name, f))
            return chord_fail(r->err, CHORD_E_NOMEM, "out of memory at tensor %" PRIu64, i);
        f->tensor_len = i + 1;
        gguf_tensor *t = &f->tensors[i];
        uint64_t *info_at = f->info_at;
        info_at[i] = r->pos;
        snprintf(r->where, sizeof r->where, "tensor %" PRIu64, i);
        chord_status st = rd_str(r, &t->name, "name");
        if (st) return st;
        char name[NAME_SHOW + 4];
        show_name(name, (const uint8_t *)t->name.ptr, t->name.len);
        snprintf(r->where, sizeof r->where, "tensor %" PRIu64 " ('%s')", i, name);

        uint64_t at = r->pos;
        if ((st = rd_u32(r, &t->n_dims, "n_dims"))) return st;
        if (t->n_dims < 1 || t->n_dims > GGUF_MAX_DIMS)
            return chord_fail_at(r->err, CHORD_E_FORMAT, (int64_t)at,
                                 "%s: n_dims %" PRIu32 " at offset %" PRIu64
                                 " is outside 1..%d",
                                 r->where, t->n_dims, at, GGUF_MAX_DIMS);
        int64_t nelem = 1;
        uint64_t ne0_at = r->pos;
        for (int d = 0; d < GGUF_MAX_DIMS; d++)
            t->ne[d] = 1;
        for (uint32_t d = 0; d < t->n_dims; d++) {
            at = r->pos;
            uint64_t ne;
            char what[16];
            snprintf(what, sizeof what, "ne[%" PRIu32 "]", d);
            if ((st = rd_u64(r, &ne, what))) return st;
            if (ne == 0 || ne > (uint64_t)INT64_MAX)
                return chord_fail_at(r->err, CHORD_E_FORMAT, (int64_t)at,
                                     "%s: ne[%" PRIu32 "] = %" PRId64 " at offset %" PRIu64
                                     " is not positive",
                                     r->where, d, (int64_t)ne, at);
            if ((int64_t)ne > INT64_MAX / nelem)
                return chord_fail_at(r->err, CHORD_E_FORMAT, (int64_t)at,
                                     "%s: ne[%" PRIu32 "] = %" PRIu64 " at offset %" PRIu64
                                     ": the element count overflows int64",
                                     r->where, d, ne, at);
            t->ne[d] = (int64_t)ne;
            nelem *= (int64_t)ne;
        }

        at = r->pos;
        if ((st = rd_u32(r, &t->type, "type"))) return st;
        const chord_type_traits *tr = chord_type_get(t->type);
        if (!tr)
            return chord_fail_at(r->err, CHORD_E_UNSUPPORTED, (int64_t)at,
                                 "tensor '%s' has unknown type id %" PRIu32 " (tensor %" PRIu64
                                 ", type at offset %" PRIu64 ")",
                                 name, t->type, i, at);
        if (t->ne[0] % tr->block_size)
            return chord_fail_at(r->err, CHORD_E_FORMAT, (int64_t)ne0_at,
                                 "%s: ne[0] = %" PRId64 " at offset %" PRIu64
                                 " is not a multiple of the block size %" PRId64 " of type %s",
                                 r->where, t->ne[0], ne0_at, tr->block_size, tr->name);
        uint64_t row = (uint64_t)(t->ne[0] / tr->block_size) * (uint64_t)tr->type_size;
        uint64_t rows = (uint64_t)(nelem / t->ne[0]);
        if (row > UINT64_MAX / rows || row * rows > (uint64_t)INT64_MAX)
            return chord_fail_at(r->err, CHORD_E_FORMAT, (int64_t)ne0_at,
                                 "%s: byte size (%" PRIu64 " rows of %" PRIu64
                                 " bytes, shape at offset %" PRIu64 ") overflows int64",
                                 r->where, rows, row, ne0_at);
        t->nbytes = row * rows;

        at = r->pos;
        if ((st = rd_u64(r, &t->offset, "data offset"))) return st;
        if (t->offset % f->alignment)
            return chord_fail_at(r->err, CHORD_E_FORMAT, (int64_t)at,
                                 "%s: data offset %" PRIu64 " at offset %" PRIu64
                                 " is not a multiple of the alignment %" PRIu64,
                                 r->where, t->offset, at, f->alignment);

        uint64_t prev = hash_insert(&f->tensor_hash, t->name, i, tensor_name, f);
        if (prev != UINT64_MAX)
            return chord_fail_at(r->err, CHORD_E_FORMAT, (int64_t)info_at[i],
                                 "%s: duplicate tensor name at offset %" PRIu64
                                 " (also used by tensor %" PRIu64 ")",
                                 r->where, info_at[i], prev);
    }
    return CHORD_OK;
}

typedef struct span {
    uint64_t start, end, idx;
} span;

static int span_cmp(const void *a, const void *b) {
    const span *x = a, *y = b;
    if (x->start != y->start) return x->start < y->start ? -1 : 1;
    return x->idx < y->idx ? -1 : x->idx > y->idx;
}

static chord_status check_data(gguf_file *f, reader *r) {
    const uint64_t *info_at = f->info_at;
    uint64_t a = f->alignment, pos = r->pos;
    uint64_t pad = (a - pos % a) % a;
    f->data_offset = pos + pad; /* pos <= size < 2^64 - 2^32: no overflow */
    if (f->n_tensors == 0) return CHORD_OK;
    if (f->data_offset > r->size)
        return chord_fail_at(r->err, CHORD_E_FORMAT, (int64_t)pos,
                             "data section: starts at offset %" PRIu64
                             " (tensor infos end at %" PRIu64 ", alignment %" PRIu64
                             "), past end of file (size %" PRIu64 ")",
                             f->data_offset, pos, a, r->size);
    uint64_t room = r->size - f->data_offset;
    span *sp = malloc((size_t)f->n_tensors * sizeof *sp);
    if (!sp) return chord_fail(r->err, CHORD_E_NOMEM, "can not allocate tensor spans");
    for (uint64_t i = 0; i < f->n_tensors; i++) {
        gguf_tensor *t = &f->tensors[i];
        char name[NAME_SHOW + 4];
        if (t->offset > room || t->nbytes > room - t->offset) {
            show_name(name, (const uint8_t *)t->name.ptr, t->name.len);
            free(sp);
            if (t->offset > room)
                return chord_fail_at(r->err, CHORD_E_FORMAT, (int64_t)info_at[i],
                                     "tensor %" PRIu64 " ('%s'): data offset %" PRIu64
                                     " (+%" PRIu64 " bytes) extends past end of file "
                                     "(size %" PRIu64 ", data section at %" PRIu64 ")",
                                     i, name, t->offset, t->nbytes, r->size, f->data_offset);
            return chord_fail_at(r->err, CHORD_E_FORMAT, (int64_t)info_at[i],
                                 "tensor %" PRIu64 " ('%s'): data [%" PRIu64 ", %" PRIu64
                                 ") extends past end of file (size %" PRIu64 ")",
                                 i, name, f->data_offset + t->offset,
                                 f->data_offset + t->offset + t->nbytes, r->size);
        }
        sp[i].start = t->offset;
        sp[i].end = t->offset + t->nbytes;
        sp[i].idx = i;
        t->data = r->b + f->data_offset + t->offset;
    }
    qsort(sp, (size_t)f->n_tensors, sizeof *sp, span_cmp);
    for (uint64_t k = 1; k < f->n_tensors; k++) {
        if (sp[k].start >= sp[k - 1].end) continue;
        const gguf_tensor *x = &f->tensors[sp[k - 1].idx], *y = &f->tensors[sp[k].idx];
        char nx[NAME_SHOW + 4], ny[NAME_SHOW + 4];
        show_name(nx, (const uint8_t *)x->name.ptr, x->name.len);
        show_name(ny, (const uint8_t *)y->name.ptr, y->name.len);
        uint64_t d = f->data_offset;
        chord_status st = chord_fail_at(
            r->err, CHORD_E_FORMAT, (int64_t)info_at[sp[k].idx],
            "tensor %" PRIu64 " ('%s'): data [%" PRIu64 ", %" PRIu64
            ") overlaps tensor %" PRIu64 " ('%s') data [%" PRIu64 ", %" PRIu64 ")",
            sp[k].idx, ny, d + sp[k].start, d + sp[k].end, sp[k - 1].idx, nx,
            d + sp[k - 1].start, d + sp[k - 1].end);
        free(sp);
        return st;
    }
    free(sp);
    return CHORD_OK;
}

static chord_status parse_header(gguf_file *f, reader *r) {
    snprintf(r->where, sizeof r->where, "header");
    if (r->size < 4)
        return chord_fail_at(r->err, CHORD_E_FORMAT, 0,
                             "header: file of %" PRIu64 " bytes is too small for the magic",
                             r->size);
    if (memcmp(r->b, GGUF_MAGIC, 4) != 0) {
        char m[8];
        show_name(m, r->b, 4);
        return chord_fail_at(r->err, CHORD_E_FORMAT, 0,
                             "header: bad magic '%s' (0x%08" PRIx32 ") at offset 0, expected "
                             "'GGUF': not a GGUF file",
                             m, le32(r->b));
    }
    r->pos = 4;
    chord_status st = rd_u32(r, &f->version, "version");
    if (st) return st;
    uint32_t v = f->version;
    if (v != 2 && v != 3) {
        uint32_t sw = (v >> 24) | ((v >> 8) & 0xff00) | ((v << 8) & 0xff0000) | (v << 24);
        if (sw >= 1 && sw <= 3)
            return chord_fail_at(r->err, CHORD_E_UNSUPPORTED, 4,
                                 "header: version field 0x%08" PRIx32
                                 " at offset 4 is a big-endian GGUF v%" PRIu32
                                 " file; chord reads little-endian files only",
                                 v, sw);
        return chord_fail_at(r->err, CHORD_E_UNSUPPORTED, 4,
                             "header: GGUF version %" PRIu32
                             " at offset 4 is not supported (chord reads versions 2 and 3)",
                             v);
    }
    uint64_t nt_at = r->pos;
    if ((st = rd_u64(r, &f->n_tensors, "n_tensors"))) return st;
    if ((st = rd_u64(r, &f->n_kv, "n_kv"))) return st;
    uint64_t rest = left(r);
    if (f->n_kv > rest / KV_MIN_BYTES)
        return chord_fail_at(r->err, CHORD_E_FORMAT, (int64_t)nt_at + 8,
                             "header: n_kv %" PRIu64 " at offset %" PRIu64
                             " can not fit in the %" PRIu64 " bytes left in the file",
                             f->n_kv, nt_at + 8, rest);
    if (f->n_tensors > (rest - f->n_kv * KV_MIN_BYTES) / TENSOR_MIN_BYTES)
        return chord_fail_at(r->err, CHORD_E_FORMAT, (int64_t)nt_at,
                             "header: n_tensors %" PRIu64 " at offset %" PRIu64
                             " can not fit in the %" PRIu64 " bytes left in the file",
                             f->n_tensors, nt_at, rest);
    return CHORD_OK;
}

chord_status gguf_parse(const void *data, size_t size, gguf_file **out, chord_error *err) {
    if (!out) return chord_fail(err, CHORD_E_INVALID_ARG, "gguf_parse: out is NULL");
    *out = NULL;
    if (!data && size) return chord_fail(err, CHORD_E_INVALID_ARG, "gguf_parse: data is NULL");
    if ((uint64_t)size > UINT64_MAX / 2)
        return chord_fail(err, CHORD_E_INVALID_ARG, "gguf_parse: size too large");

    gguf_file *f = calloc(1, sizeof *f);
    if (!f) return chord_fail(err, CHORD_E_NOMEM, "gguf_parse: out of memory");
    f->base = data;
    f->size = size;
    reader r = {.b = data, .size = size, .pos = 0, .err = err};

    chord_status st = parse_header(f, &r);
    if (!st) st = parse_kvs(f, &r);
    if (!st) st = parse_alignment(f, &r);
    if (!st) st = parse_tensor_infos(f, &r);
    if (!st) st = check_data(f, &r);
    free(f->info_at);
    f->info_at = NULL;
    if (st) {
        gguf_free(f);
        return st;
    }
    *out = f;
    return CHORD_OK;
}

void gguf_free(gguf_file *f) {
    if (!f) return;
    for (uint64_t i = 0; i < f->kv_len; i++)
        free((void *)f->kv[i].value.str_index_);
    free(f->kv);
    free(f->info_at);
    free(f->tensors);
    free(f->kv_hash.slots);
    free(f->tensor_hash.slots);
    free(f);
}

/* --------------------------------------------------------------- accessors */

uint32_t gguf_version(const gguf_file *f) {
    return f->version;
}
uint64_t gguf_alignment(const gguf_file *f) {
    return f->alignment;
}
uint64_t gguf_data_offset(const gguf_file *f) {
    return f->data_offset;
}
size_t gguf_size(const gguf_file *f) {
    return f->size;
}
uint64_t gguf_n_kv(const gguf_file *f) {
    return f->n_kv;
}
uint64_t gguf_n_tensors(const gguf_file *f) {
    return f->n_tensors;
}

const gguf_kv *gguf_kv_at(const gguf_file *f, uint64_t i) {
    return i < f->n_kv ? &f->kv[i] : NULL;
}

const gguf_tensor *gguf_tensor_at(const gguf_file *f, uint64_t i) {
    return i < f->n_tensors ? &f->tensors[i] : NULL;
}

const gguf_kv *gguf_find_kv(const gguf_file *f, const char *key) {
    uint64_t i = hash_find(&f->kv_hash, key, kv_name, f);
    return i == UINT64_MAX ? NULL : &f->kv[i];
}

const gguf_tensor *gguf_find_tensor(const gguf_file *f, const char *name) {
    uint64_t i = hash_find(&f->tensor_hash, name, tensor_name, f);
    return i == UINT64_MAX ? NULL : &f->tensors[i];
}

/* An integer scalar at p: sets *u (unsigned types) or *s (signed); returns 1 for
 * unsigned, -1 for signed, 0 for a non-integer type. */
static int read_int(uint32_t type, const uint8_t *p, uint64_t *u, int64_t *s) {
    switch (type) {
    case GGUF_U8: *u = p[0]; return 1;
    case GGUF_U16: *u = le16(p); return 1;
    case GGUF_U32: *u = le32(p); return 1;
    case GGUF_U64: *u = le64(p); return 1;
    case GGUF_I8: *s = (int8_t)p[0]; return -1;
    case GGUF_I16: *s = (int16_t)le16(p); return -1;
    case GGUF_I32: *s = (int32_t)le32(p); return -1;
    case GGUF_I64: *s = (int64_t)le64(p); return -1;
    default: return 0;
    }
}

static double read_float(uint32_t type, const uint8_t *p) {
    if (type == GGUF_F32) {
        uint32_t b = le32(p);
        float x;
        memcpy(&x, &b, 4);
        return x;
    }
    uint64_t b = le64(p);
    double x;
    memcpy(&x, &b, 8);
    return x;
}

bool gguf_get_u64(const gguf_file *f, const char *key, uint64_t *out) {
    const gguf_kv *kv = gguf_find_kv(f, key);
    if (!kv) return false;
    uint64_t u = 0;
    int64_t s = 0;
    int k = read_int(kv->value.type, kv->value.data, &u, &s);
    if (k == 0 || (k < 0 && s < 0)) return false;
    *out = k > 0 ? u : (uint64_t)s;
    return true;
}

bool gguf_get_i64(const gguf_file *f, const char *key, int64_t *out) {
    const gguf_kv *kv = gguf_find_kv(f, key);
    if (!kv) return false;
    uint64_t u = 0;
    int64_t s = 0;
    int k = read_int(kv->value.type, kv->value.data, &u, &s);
    if (k == 0 || (k > 0 && u > (uint64_t)INT64_MAX)) return false;
    *out = k > 0 ? (int64_t)u : s;
    return true;
}

bool gguf_get_f64(const gguf_file *f, const char *key, double *out) {
    const gguf_kv *kv = gguf_find_kv(f, key);
    if (!kv || (kv->value.type != GGUF_F32 && kv->value.type != GGUF_F64)) return false;
    *out = read_float(kv->value.type, kv->value.data);
    return true;
}

bool gguf_get_bool(const gguf_file *f, const char *key, bool *out) {
    const gguf_kv *kv = gguf_find_kv(f, key);
    if (!kv || kv->value.type != GGUF_BOOL) return false;
    *out = kv->value.data[0] != 0;
    return true;
}

bool gguf_get_str(const gguf_file *f, const char *key, gguf_str *out) {
    const gguf_kv *kv = gguf_find_kv(f, key);
    if (!kv || kv->value.type != GGUF_STRING) return false;
    out->len = le64(kv->value.data);
    out->ptr = (const char *)kv->value.data + 8;
    return true;
}

bool gguf_get_arr(const gguf_file *f, const char *key, gguf_value *out) {
    const gguf_kv *kv = gguf_find_kv(f, key);
    if (!kv || kv->value.type != GGUF_ARRAY) return false;
    *out = kv->value;
    return true;
}

gguf_str gguf_arr_str(const gguf_value *arr, uint64_t i) {
    gguf_str s = {NULL, 0};
    if (arr->type != GGUF_ARRAY || arr->arr_type != GGUF_STRING) return s;
    CHORD_ASSERT(i < arr->arr_n);
    const uint8_t *p;
    if (arr->str_index_) {
        p = arr->data + arr->str_index_[i];
    } else {
        p = arr->data;
        for (uint64_t k = 0; k < i; k++)
            p += 8 + le64(p);
    }
    s.len = le64(p);
    s.ptr = (const char *)p + 8;
    return s;
}

double gguf_arr_f64(const gguf_value *arr, uint64_t i) {
    if (arr->type != GGUF_ARRAY) return 0;
    size_t es = scalar_size(arr->arr_type);
    if (!es) return 0;
    CHORD_ASSERT(i < arr->arr_n);
    const uint8_t *p = arr->data + i * es;
    if (arr->arr_type == GGUF_F32 || arr->arr_type == GGUF_F64)
        return read_float(arr->arr_type, p);
    if (arr->arr_type == GGUF_BOOL) return p[0] ? 1.0 : 0.0;
    uint64_t u = 0;
    int64_t s = 0;
    return read_int(arr->arr_type, p, &u, &s) > 0 ? (double)u : (double)s;
}

int64_t gguf_arr_i64(const gguf_value *arr, uint64_t i) {
    if (arr->type != GGUF_ARRAY) return 0;
    size_t es = scalar_size(arr->arr_type);
    if (!es || arr->arr_type == GGUF_F32 || arr->arr_type == GGUF_F64) return 0;
    CHORD_ASSERT(i < arr->arr_n);
    const uint8_t *p = arr->data + i * es;
    if (arr->arr_type == GGUF_BOOL) return p[0] ? 1 : 0;
    uint64_t u = 0;
    int64_t s = 0;
    if (read_int(arr->arr_type, p, &u, &s) > 0)
        return u > (uint64_t)INT64_MAX ? INT64_MAX : (int64_t)u;
    return s;
}

/* -------------------------------------------------------------- formatting */

typedef struct sbuf {
    char *buf;
    size_t size, len; /* len: bytes written, always < size when size > 0 */
} sbuf;

static void sb_put(sbuf *b, const char *s, size_t n) {
    if (!b->size) return;
    size_t room = b->size - 1 - b->len;
    if (n > room) n = room;
    memcpy(b->buf + b->len, s, n);
    b->len += n;
    b->buf[b->len] = 0;
}

static void sb_cstr(sbuf *b, const char *s) {
    sb_put(b, s, strlen(s));
}

static void sb_printf(sbuf *b, const char *fmt, ...) CHORD_PRINTF(2, 3);
static void sb_printf(sbuf *b, const char *fmt, ...) {
    char tmp[96];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(tmp, sizeof tmp, fmt, ap);
    va_end(ap);
    if (n > 0) sb_put(b, tmp, (size_t)n < sizeof tmp ? (size_t)n : sizeof tmp - 1);
}

static bool sb_full(const sbuf *b) {
    return !b->size || b->len + 1 >= b->size;
}

static void fmt_string(sbuf *b, const uint8_t *s, uint64_t len) {
    uint64_t n = len;
    if (n > STR_SHOW) {
        n = STR_SHOW;
        while (n > 0 && (s[n] & 0xc0) == 0x80)
            n--; /* do not cut a UTF-8 sequence */
    }
    sb_put(b, "\"", 1);
    for (uint64_t i = 0; i < n; i++) {
        uint8_t c = s[i];
        switch (c) {
        case '"': sb_put(b, "\\\"", 2); break;
        case '\\': sb_put(b, "\\\\", 2); break;
        case '\n': sb_put(b, "\\n", 2); break;
        case '\r': sb_put(b, "\\r", 2); break;
        case '\t': sb_put(b, "\\t", 2); break;
        default:
            if (c < 0x20 || c == 0x7f)
                sb_printf(b, "\\x%02x", c);
            else
                sb_put(b, (const char *)&c, 1);
        }
    }
    sb_put(b, "\"", 1);
    if (n < len) sb_printf(b, "... (%" PRIu64 " bytes)", len);
}

static void fmt_scalar(sbuf *b, uint32_t type, const uint8_t *p) {
    uint64_t u = 0;
    int64_t s = 0;
    switch (type) {
    case GGUF_BOOL: sb_cstr(b, p[0] ? "true" : "false"); return;
    case GGUF_F32:
    case GGUF_F64: sb_printf(b, "%g", read_float(type, p)); return;
    default:
        if (read_int(type, p, &u, &s) > 0)
            sb_printf(b, "%" PRIu64, u);
        else
            sb_printf(b, "%" PRId64, s);
    }
}

/* End of one validated element of type t at p (an ARRAY element starts at its own
 * type/count header). */
static const uint8_t *elem_end(uint32_t t, const uint8_t *p) {
    size_t es = scalar_size(t);
    if (es) return p + es;
    if (t == GGUF_STRING) return p + 8 + le64(p);
    uint32_t et = le32(p);
    uint64_t n = le64(p + 4);
    p += 12;
    es = scalar_size(et);
    if (es) return p + n * es;
    for (uint64_t i = 0; i < n; i++)
        p = elem_end(et, p);
    return p;
}

static void fmt_array(sbuf *b, uint32_t et, uint64_t n, const uint8_t *p, int max_items,
                      int depth) {
    sb_put(b, "[", 1);
    if (!vtype_valid(et) || depth > GGUF_MAX_DEPTH) {
        sb_printf(b, "<invalid element type %" PRIu32 ">]", et);
        return;
    }
    uint64_t shown = max_items > 0 ? ((uint64_t)max_items < n ? (uint64_t)max_items : n) : 0;
    for (uint64_t i = 0; i < shown && !sb_full(b); i++) {
        if (i) sb_put(b, ", ", 2);
        if (et == GGUF_STRING) {
            fmt_string(b, p + 8, le64(p));
        } else if (et == GGUF_ARRAY) {
            fmt_array(b, le32(p), le64(p + 4), p + 12, max_items, depth + 1);
        } else {
            fmt_scalar(b, et, p);
        }
        if (i + 1 < shown) p = elem_end(et, p);
    }
    if (shown < n) sb_printf(b, "%s... (%" PRIu64 " items)", shown ? ", " : "", n);
    sb_put(b, "]", 1);
}

void gguf_value_format(const gguf_value *v, char *buf, size_t size, int max_items) {
    sbuf b = {buf, size, 0};
    if (!buf || !size) return;
    buf[0] = 0;
    if (!v || !v->data) {
        sb_cstr(&b, "<none>");
        return;
    }
    switch (v->type) {
    case GGUF_STRING: fmt_string(&b, v->data + 8, le64(v->data)); break;
    case GGUF_ARRAY: fmt_array(&b, v->arr_type, v->arr_n, v->data, max_items, 1); break;
    default:
        if (vtype_valid(v->type))
            fmt_scalar(&b, v->type, v->data);
        else
            sb_printf(&b, "<invalid type %" PRIu32 ">", v->type);
    }
}
