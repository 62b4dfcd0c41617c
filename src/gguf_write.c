/* Streaming GGUF v3 writer: metadata and tensor infos are kept in memory (they are
 * small), tensor data streams straight to the file.
 *
 * Layout written:
 *   "GGUF" u32 version=3, u64 n_tensors, u64 n_kv
 *   n_kv x { u64 len, key bytes, u32 type, value }
 *   n_tensors x { u64 len, name bytes, u32 n_dims, n_dims x u64 ne, u32 type, u64 offset }
 *   zero padding to the alignment, then each tensor's data at its offset (offsets are
 *   multiples of the alignment, relative to the start of the data section). */
#include "gguf_write.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "error.h"
#include "quant/types.h"

#define DEFAULT_ALIGNMENT 32

typedef struct wkv {
    char *key;
    uint32_t type;
    uint8_t *blob; /* the encoded value (for arrays: elem type, count, elements) */
    size_t len;
} wkv;

typedef struct wtensor {
    char name[GGUF_WRITE_MAX_NAME + 1];
    uint32_t n_dims;
    int64_t ne[GGUF_MAX_DIMS];
    uint32_t type;
    uint64_t size;
    uint64_t offset;
} wtensor;

struct gguf_writer {
    wkv *kv;
    uint64_t n_kv, cap_kv;
    wtensor *t;
    uint64_t n_t, cap_t;
    /* output state */
    FILE *f;
    char *path;
    uint64_t alignment;
    uint64_t cur;        /* tensor being written */
    uint64_t cur_done;   /* its bytes written so far */
    uint64_t pos;        /* bytes written to the file */
    uint64_t data_start; /* file offset of the data section */
    bool finished;
    bool failed;
};

/* ----------------------------------------------------------- byte buffers */

typedef struct buf {
    uint8_t *p;
    size_t len, cap;
    bool oom;
} buf;

static void buf_put(buf *b, const void *data, size_t n) {
    if (b->oom) return;
    if (b->len + n > b->cap) {
        size_t cap = b->cap ? b->cap : 64;
        while (cap < b->len + n)
            cap *= 2;
        uint8_t *q = realloc(b->p, cap);
        if (!q) {
            b->oom = true;
            return;
        }
        b->p = q;
        b->cap = cap;
    }
    if (n) memcpy(b->p + b->len, data, n);
    b->len += n;
}

static void buf_u32(buf *b, uint32_t v) {
    uint8_t x[4] = {(uint8_t)v, (uint8_t)(v >> 8), (uint8_t)(v >> 16), (uint8_t)(v >> 24)};
    buf_put(b, x, 4);
}

static void buf_u64(buf *b, uint64_t v) {
    uint8_t x[8];
    for (int i = 0; i < 8; i++)
        x[i] = (uint8_t)(v >> (8 * i));
    buf_put(b, x, 8);
}

static void buf_str(buf *b, const char *s, uint64_t len) {
    buf_u64(b, len);
    buf_put(b, s, (size_t)len);
}

static uint64_t rd64(const uint8_t *p) {
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--)
        v = v << 8 | p[i];
    return v;
}

static uint32_t rd32(const uint8_t *p) {
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
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

/* ------------------------------------------------------------- lifecycle */

chord_status gguf_writer_new(gguf_writer **out, chord_error *err) {
    *out = calloc(1, sizeof **out);
    if (!*out) return chord_fail(err, CHORD_E_NOMEM, "gguf writer: out of memory");
    return CHORD_OK;
}

void gguf_writer_free(gguf_writer *w) {
    if (!w) return;
    if (w->f) {
        fclose(w->f);
        if (!w->finished && w->path) remove(w->path);
    }
    for (uint64_t i = 0; i < w->n_kv; i++) {
        free(w->kv[i].key);
        free(w->kv[i].blob);
    }
    free(w->kv);
    free(w->t);
    free(w->path);
    free(w);
}

/* ------------------------------------------------------------- metadata */

static int64_t find_kv(const gguf_writer *w, const char *key, size_t klen) {
    for (uint64_t i = 0; i < w->n_kv; i++)
        if (strlen(w->kv[i].key) == klen && !memcmp(w->kv[i].key, key, klen)) return (int64_t)i;
    return -1;
}

/* Takes ownership of b's bytes. */
static chord_status put_kv(gguf_writer *w, const char *key, size_t klen, uint32_t type, buf *b,
                           chord_error *err) {
    if (b->oom) {
        free(b->p);
        return chord_fail(err, CHORD_E_NOMEM, "gguf writer: out of memory for key '%.*s'",
                          (int)klen, key);
    }
    if (w->f) {
        free(b->p);
        return chord_fail(err, CHORD_E_INVALID_ARG,
                          "gguf writer: key '%.*s' set after the header was written", (int)klen,
                          key);
    }
    if (klen == 0) {
        free(b->p);
        return chord_fail(err, CHORD_E_INVALID_ARG, "gguf writer: empty key");
    }
    int64_t i = find_kv(w, key, klen);
    if (i >= 0) {
        free(w->kv[i].blob);
        w->kv[i].type = type;
        w->kv[i].blob = b->p;
        w->kv[i].len = b->len;
        return CHORD_OK;
    }
    if (w->n_kv == w->cap_kv) {
        uint64_t cap = w->cap_kv ? 2 * w->cap_kv : 32;
        wkv *q = realloc(w->kv, (size_t)cap * sizeof *q);
        if (!q) {
            free(b->p);
            return chord_fail(err, CHORD_E_NOMEM, "gguf writer: out of memory");
        }
        w->kv = q;
        w->cap_kv = cap;
    }
    char *k = malloc(klen + 1);
    if (!k) {
        free(b->p);
        return chord_fail(err, CHORD_E_NOMEM, "gguf writer: out of memory");
    }
    memcpy(k, key, klen);
    k[klen] = 0;
    w->kv[w->n_kv++] = (wkv){k, type, b->p, b->len};
    return CHORD_OK;
}

chord_status gguf_writer_set_scalar(gguf_writer *w, const char *key, gguf_vtype t,
                                    const void *val, chord_error *err) {
    size_t es = scalar_size(t);
    if (!es)
        return chord_fail(err, CHORD_E_INVALID_ARG,
                          "gguf writer: '%s': %s is not a scalar type", key,
                          gguf_vtype_name(t));
    if (t == GGUF_BOOL && *(const uint8_t *)val > 1)
        return chord_fail(err, CHORD_E_INVALID_ARG, "gguf writer: '%s': bool must be 0 or 1",
                          key);
    buf b = {0};
    buf_put(&b, val, es);
    return put_kv(w, key, strlen(key), t, &b, err);
}

chord_status gguf_writer_set_u32(gguf_writer *w, const char *key, uint32_t v,
                                 chord_error *err) {
    return gguf_writer_set_scalar(w, key, GGUF_U32, &v, err);
}
chord_status gguf_writer_set_i32(gguf_writer *w, const char *key, int32_t v, chord_error *err) {
    return gguf_writer_set_scalar(w, key, GGUF_I32, &v, err);
}
chord_status gguf_writer_set_u64(gguf_writer *w, const char *key, uint64_t v,
                                 chord_error *err) {
    return gguf_writer_set_scalar(w, key, GGUF_U64, &v, err);
}
chord_status gguf_writer_set_f32(gguf_writer *w, const char *key, float v, chord_error *err) {
    return gguf_writer_set_scalar(w, key, GGUF_F32, &v, err);
}
chord_status gguf_writer_set_bool(gguf_writer *w, const char *key, bool v, chord_error *err) {
    uint8_t u = v ? 1 : 0;
    return gguf_writer_set_scalar(w, key, GGUF_BOOL, &u, err);
}

chord_status gguf_writer_set_strn(gguf_writer *w, const char *key, const char *s, uint64_t len,
                                  chord_error *err) {
    buf b = {0};
    buf_str(&b, s, len);
    return put_kv(w, key, strlen(key), GGUF_STRING, &b, err);
}

chord_status gguf_writer_set_str(gguf_writer *w, const char *key, const char *s,
                                 chord_error *err) {
    return gguf_writer_set_strn(w, key, s, strlen(s), err);
}

chord_status gguf_writer_set_arr(gguf_writer *w, const char *key, gguf_vtype elem,
                                 const void *data, uint64_t n, chord_error *err) {
    size_t es = scalar_size(elem);
    if (!es)
        return chord_fail(err, CHORD_E_INVALID_ARG,
                          "gguf writer: '%s': use gguf_writer_set_str_arr for %s elements", key,
                          gguf_vtype_name(elem));
    if (n > SIZE_MAX / es)
        return chord_fail(err, CHORD_E_INVALID_ARG, "gguf writer: '%s': array too long", key);
    buf b = {0};
    buf_u32(&b, elem);
    buf_u64(&b, n);
    buf_put(&b, data, (size_t)n * es);
    return put_kv(w, key, strlen(key), GGUF_ARRAY, &b, err);
}

chord_status gguf_writer_set_str_arr(gguf_writer *w, const char *key, const char *const *strs,
                                     uint64_t n, chord_error *err) {
    buf b = {0};
    buf_u32(&b, GGUF_STRING);
    buf_u64(&b, n);
    for (uint64_t i = 0; i < n; i++)
        buf_str(&b, strs[i], strlen(strs[i]));
    return put_kv(w, key, strlen(key), GGUF_ARRAY, &b, err);
}

/* Bytes of `n` elements of type t starting at p (a validated file: no bounds checks). */
static uint64_t elems_size(uint32_t t, uint64_t n, const uint8_t *p) {
    size_t es = scalar_size(t);
    if (es) return n * es;
    const uint8_t *q = p;
    for (uint64_t i = 0; i < n; i++) {
        if (t == GGUF_STRING) {
            q += 8 + rd64(q);
        } else { /* nested array */
            const uint32_t et = rd32(q);
            const uint64_t en = rd64(q + 4);
            q += 12;
            q += elems_size(et, en, q);
        }
    }
    return (uint64_t)(q - p);
}

chord_status gguf_writer_copy_kv(gguf_writer *w, const gguf_kv *kv, chord_error *err) {
    buf b = {0};
    const gguf_value *v = &kv->value;
    if (v->type == GGUF_ARRAY) {
        buf_u32(&b, v->arr_type);
        buf_u64(&b, v->arr_n);
        uint64_t n = elems_size(v->arr_type, v->arr_n, v->data);
        buf_put(&b, v->data, (size_t)n);
    } else if (v->type == GGUF_STRING) {
        buf_put(&b, v->data, (size_t)(8 + rd64(v->data)));
    } else {
        size_t es = scalar_size(v->type);
        if (!es)
            return chord_fail(err, CHORD_E_INVALID_ARG,
                              "gguf writer: '%.*s': bad value type %u", (int)kv->key.len,
                              kv->key.ptr, v->type);
        buf_put(&b, v->data, es);
    }
    return put_kv(w, kv->key.ptr, (size_t)kv->key.len, v->type, &b, err);
}

chord_status gguf_writer_copy_kvs(gguf_writer *w, const gguf_file *src, const char *prefix,
                                  chord_error *err) {
    const size_t pl = prefix ? strlen(prefix) : 0;
    for (uint64_t i = 0; i < gguf_n_kv(src); i++) {
        const gguf_kv *kv = gguf_kv_at(src, i);
        if (pl && (kv->key.len < pl || memcmp(kv->key.ptr, prefix, pl))) continue;
        chord_status st = gguf_writer_copy_kv(w, kv, err);
        if (st) return st;
    }
    return CHORD_OK;
}

bool gguf_writer_remove_kv(gguf_writer *w, const char *key) {
    int64_t i = find_kv(w, key, strlen(key));
    if (i < 0 || w->f) return false;
    free(w->kv[i].key);
    free(w->kv[i].blob);
    memmove(&w->kv[i], &w->kv[i + 1], (size_t)(w->n_kv - (uint64_t)i - 1) * sizeof *w->kv);
    w->n_kv--;
    return true;
}

uint64_t gguf_writer_n_kv(const gguf_writer *w) {
    return w->n_kv;
}

/* --------------------------------------------------------------- tensors */

chord_status gguf_writer_add_tensor(gguf_writer *w, const char *name, uint32_t n_dims,
                                    const int64_t *ne, uint32_t type, chord_error *err) {
    if (w->f)
        return chord_fail(err, CHORD_E_INVALID_ARG,
                          "gguf writer: tensor '%s' added after the header was written", name);
    const size_t nl = strlen(name);
    if (nl == 0 || nl > GGUF_WRITE_MAX_NAME)
        return chord_fail(err, CHORD_E_INVALID_ARG,
                          "gguf writer: tensor name '%s' must be 1..%d bytes", name,
                          GGUF_WRITE_MAX_NAME);
    const chord_type_traits *tr = chord_type_get(type);
    if (!tr)
        return chord_fail(err, CHORD_E_INVALID_ARG, "gguf writer: tensor '%s': unknown type %u",
                          name, type);
    if (n_dims < 1 || n_dims > GGUF_MAX_DIMS)
        return chord_fail(err, CHORD_E_INVALID_ARG,
                          "gguf writer: tensor '%s': %u dimensions (1..%d allowed)", name,
                          n_dims, GGUF_MAX_DIMS);
    uint64_t nrows = 1;
    for (uint32_t d = 0; d < n_dims; d++) {
        if (ne[d] <= 0)
            return chord_fail(err, CHORD_E_INVALID_ARG,
                              "gguf writer: tensor '%s': dimension %u is %" PRId64, name, d,
                              ne[d]);
        if (d > 0) {
            if (nrows > UINT64_MAX / (uint64_t)ne[d])
                return chord_fail(err, CHORD_E_INVALID_ARG,
                                  "gguf writer: tensor '%s' too large", name);
            nrows *= (uint64_t)ne[d];
        }
    }
    const size_t rs = chord_row_size((chord_type)type, ne[0]);
    if (rs == 0)
        return chord_fail(err, CHORD_E_INVALID_ARG,
                          "gguf writer: tensor '%s': row length %" PRId64
                          " is not a multiple of %s's block size %" PRId64,
                          name, ne[0], tr->name, tr->block_size);
    if (nrows > UINT64_MAX / 2 / rs)
        return chord_fail(err, CHORD_E_INVALID_ARG, "gguf writer: tensor '%s' too large", name);
    for (uint64_t i = 0; i < w->n_t; i++)
        if (!strcmp(w->t[i].name, name))
            return chord_fail(err, CHORD_E_INVALID_ARG, "gguf writer: duplicate tensor '%s'",
                              name);
    if (w->n_t == w->cap_t) {
        uint64_t cap = w->cap_t ? 2 * w->cap_t : 64;
        wtensor *q = realloc(w->t, (size_t)cap * sizeof *q);
        if (!q) return chord_fail(err, CHORD_E_NOMEM, "gguf writer: out of memory");
        w->t = q;
        w->cap_t = cap;
    }
    wtensor *t = &w->t[w->n_t++];
    memset(t, 0, sizeof *t);
    memcpy(t->name, name, nl + 1);
    t->n_dims = n_dims;
    for (uint32_t d = 0; d < GGUF_MAX_DIMS; d++)
        t->ne[d] = d < n_dims ? ne[d] : 1;
    t->type = type;
    t->size = nrows * rs;
    return CHORD_OK;
}

uint64_t gguf_writer_n_tensors(const gguf_writer *w) {
    return w->n_t;
}

uint64_t gguf_writer_tensor_size(const gguf_writer *w, uint64_t i) {
    return i < w->n_t ? w->t[i].size : 0;
}

/* ---------------------------------------------------------------- output */

static chord_status io_fail(gguf_writer *w, chord_error *err, const char *what) {
    w->failed = true;
    return chord_fail(err, CHORD_E_IO, "%s: %s: %s", w->path ? w->path : "gguf writer", what,
                      errno ? strerror(errno) : "write error");
}

static chord_status put(gguf_writer *w, const void *p, size_t n, chord_error *err) {
    errno = 0;
    if (n && fwrite(p, 1, n, w->f) != n) return io_fail(w, err, "write failed");
    w->pos += n;
    return CHORD_OK;
}

static chord_status pad_to(gguf_writer *w, uint64_t to, chord_error *err) {
    static const uint8_t zeros[256] = {0};
    while (w->pos < to) {
        uint64_t n = to - w->pos;
        chord_status st = put(w, zeros, (size_t)(n < sizeof zeros ? n : sizeof zeros), err);
        if (st) return st;
    }
    return CHORD_OK;
}

chord_status gguf_writer_begin(gguf_writer *w, const char *path, chord_error *err) {
    if (w->f || w->finished)
        return chord_fail(err, CHORD_E_INVALID_ARG, "gguf writer: begin called twice");
    w->alignment = DEFAULT_ALIGNMENT;
    int64_t ai = find_kv(w, "general.alignment", strlen("general.alignment"));
    if (ai >= 0) {
        const wkv *kv = &w->kv[ai];
        uint32_t a = kv->type == GGUF_U32 && kv->len == 4 ? rd32(kv->blob) : 0;
        if (a == 0 || (a & (a - 1)))
            return chord_fail(err, CHORD_E_INVALID_ARG,
                              "gguf writer: general.alignment must be a u32 power of two");
        w->alignment = a;
    }
    uint64_t off = 0;
    for (uint64_t i = 0; i < w->n_t; i++) {
        w->t[i].offset = off;
        off += (w->t[i].size + w->alignment - 1) / w->alignment * w->alignment;
    }
    free(w->path);
    w->path = malloc(strlen(path) + 1);
    if (!w->path) return chord_fail(err, CHORD_E_NOMEM, "gguf writer: out of memory");
    strcpy(w->path, path);

    buf b = {0};
    buf_put(&b, "GGUF", 4);
    buf_u32(&b, 3);
    buf_u64(&b, w->n_t);
    buf_u64(&b, w->n_kv);
    for (uint64_t i = 0; i < w->n_kv; i++) {
        buf_str(&b, w->kv[i].key, strlen(w->kv[i].key));
        buf_u32(&b, w->kv[i].type);
        buf_put(&b, w->kv[i].blob, w->kv[i].len);
    }
    for (uint64_t i = 0; i < w->n_t; i++) {
        const wtensor *t = &w->t[i];
        buf_str(&b, t->name, strlen(t->name));
        buf_u32(&b, t->n_dims);
        for (uint32_t d = 0; d < t->n_dims; d++)
            buf_u64(&b, (uint64_t)t->ne[d]);
        buf_u32(&b, t->type);
        buf_u64(&b, t->offset);
    }
    if (b.oom) {
        free(b.p);
        return chord_fail(err, CHORD_E_NOMEM, "gguf writer: out of memory for the header");
    }
    errno = 0;
    w->f = fopen(path, "wb");
    if (!w->f) {
        free(b.p);
        return chord_fail(err, CHORD_E_IO, "%s: can not create: %s", path,
                          errno ? strerror(errno) : "error");
    }
    setvbuf(w->f, NULL, _IOFBF, 1 << 20);
    w->pos = 0;
    chord_status st = put(w, b.p, b.len, err);
    free(b.p);
    if (!st) st = pad_to(w, (w->pos + w->alignment - 1) / w->alignment * w->alignment, err);
    w->data_start = w->pos;
    w->cur = 0;
    w->cur_done = 0;
    return st;
}

chord_status gguf_writer_write(gguf_writer *w, const void *data, size_t n, chord_error *err) {
    if (!w->f || w->finished || w->failed)
        return chord_fail(err, CHORD_E_INVALID_ARG, "gguf writer: write outside begin/finish");
    const uint8_t *p = data;
    while (n) {
        if (w->cur >= w->n_t)
            return chord_fail(err, CHORD_E_INVALID_ARG,
                              "gguf writer: %zu bytes more than the declared tensors hold", n);
        wtensor *t = &w->t[w->cur];
        if (w->cur_done == 0) {
            chord_status st = pad_to(w, w->data_start + t->offset, err);
            if (st) return st;
        }
        uint64_t left = t->size - w->cur_done;
        size_t k = n < left ? n : (size_t)left;
        chord_status st = put(w, p, k, err);
        if (st) return st;
        p += k;
        n -= k;
        w->cur_done += k;
        if (w->cur_done == t->size) {
            w->cur++;
            w->cur_done = 0;
        }
    }
    return CHORD_OK;
}

chord_status gguf_writer_finish(gguf_writer *w, uint64_t *file_size, chord_error *err) {
    if (!w->f || w->finished)
        return chord_fail(err, CHORD_E_INVALID_ARG, "gguf writer: finish without begin");
    if (w->failed) return chord_fail(err, CHORD_E_IO, "%s: an earlier write failed", w->path);
    if (w->cur < w->n_t)
        return chord_fail(err, CHORD_E_INVALID_ARG,
                          "gguf writer: tensor '%s' got %" PRIu64 " of its %" PRIu64 " bytes",
                          w->t[w->cur].name, w->cur_done, w->t[w->cur].size);
    errno = 0;
    if (fflush(w->f) != 0) return io_fail(w, err, "flush failed");
    FILE *f = w->f;
    w->f = NULL;
    errno = 0;
    if (fclose(f) != 0) {
        remove(w->path);
        return io_fail(w, err, "close failed");
    }
    w->finished = true;
    if (file_size) *file_size = w->pos;
    return CHORD_OK;
}
