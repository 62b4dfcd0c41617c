/* GGUF v2/v3 parser over a byte span (no I/O). Everything is validated at parse time;
 * afterwards every pointer it hands out lies inside the span. Strings are not
 * NUL-terminated: they point into the span, with a length. */
#ifndef CHORD_GGUF_H
#define CHORD_GGUF_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "chord.h"

typedef enum gguf_vtype {
    GGUF_U8 = 0,
    GGUF_I8 = 1,
    GGUF_U16 = 2,
    GGUF_I16 = 3,
    GGUF_U32 = 4,
    GGUF_I32 = 5,
    GGUF_F32 = 6,
    GGUF_BOOL = 7,
    GGUF_STRING = 8,
    GGUF_ARRAY = 9,
    GGUF_U64 = 10,
    GGUF_I64 = 11,
    GGUF_F64 = 12,
} gguf_vtype;

typedef struct gguf_str {
    const char *ptr;
    uint64_t len;
} gguf_str;

/* A value as it lies in the file. For arrays, `arr_type`/`arr_n` describe the
 * elements; `data` points at the first element (for nested arrays, at the first
 * element's own type/count header). */
typedef struct gguf_value {
    uint32_t type;
    uint32_t arr_type; /* arrays only */
    uint64_t arr_n;    /* arrays only */
    const uint8_t *data;
    uint64_t offset; /* byte offset of `data` in the file */
    /* Parser-internal: for a top-level array of strings, the offset of each element
     * relative to `data`, which makes gguf_arr_str O(1). NULL (e.g. a value built by
     * hand, or an array nested in an array): gguf_arr_str scans, O(i). */
    const uint64_t *str_index_;
} gguf_value;

typedef struct gguf_kv {
    gguf_str key;
    gguf_value value;
} gguf_kv;

#define GGUF_MAX_DIMS 4

typedef struct gguf_tensor {
    gguf_str name;
    uint32_t n_dims;
    int64_t ne[GGUF_MAX_DIMS]; /* ne[0] is the contiguous (row) dimension; unused = 1 */
    uint32_t type;             /* chord_type id */
    uint64_t offset;           /* relative to the data section */
    const void *data;          /* inside the span, aligned to the file's alignment */
    uint64_t nbytes;
} gguf_tensor;

typedef struct gguf_file gguf_file;

/* Parses and validates; on failure returns CHORD_E_FORMAT (or CHORD_E_UNSUPPORTED for
 * an unknown version / tensor type id, CHORD_E_NOMEM) with a message naming the field
 * and err->offset the byte offset. `data` must stay alive while the gguf_file is used. */
chord_status gguf_parse(const void *data, size_t size, gguf_file **out, chord_error *err);
void gguf_free(gguf_file *f);

uint32_t gguf_version(const gguf_file *f);
uint64_t gguf_alignment(const gguf_file *f);
uint64_t gguf_data_offset(const gguf_file *f); /* start of the tensor data section */
size_t gguf_size(const gguf_file *f);

uint64_t gguf_n_kv(const gguf_file *f);
const gguf_kv *gguf_kv_at(const gguf_file *f, uint64_t i);
const gguf_kv *gguf_find_kv(const gguf_file *f, const char *key); /* NULL if absent */

uint64_t gguf_n_tensors(const gguf_file *f);
const gguf_tensor *gguf_tensor_at(const gguf_file *f, uint64_t i);
const gguf_tensor *gguf_find_tensor(const gguf_file *f, const char *name);

bool gguf_str_eq(gguf_str s, const char *cstr);
const char *gguf_vtype_name(uint32_t type);

/* Typed getters. Integers convert between widths when the value fits; floats accept
 * F32/F64. Return false if the key is absent or the value has an unusable type. */
bool gguf_get_u64(const gguf_file *f, const char *key, uint64_t *out);
bool gguf_get_i64(const gguf_file *f, const char *key, int64_t *out);
bool gguf_get_f64(const gguf_file *f, const char *key, double *out);
bool gguf_get_bool(const gguf_file *f, const char *key, bool *out);
bool gguf_get_str(const gguf_file *f, const char *key, gguf_str *out);
/* An array (any element type); false if absent or not an array. */
bool gguf_get_arr(const gguf_file *f, const char *key, gguf_value *out);

/* Element access for a validated array value (flat arrays of scalars or strings).
 * i must be < arr_n (asserted). An element type the accessor can not convert gives
 * {NULL, 0} / 0. gguf_arr_i64 saturates U64 elements above INT64_MAX. */
gguf_str gguf_arr_str(const gguf_value *arr, uint64_t i); /* arr_type STRING; O(1) */
double gguf_arr_f64(const gguf_value *arr, uint64_t i);   /* numeric element types */
int64_t gguf_arr_i64(const gguf_value *arr, uint64_t i);  /* integer element types */

/* Renders a value as text for `chord info` (arrays abbreviated after max_items). */
void gguf_value_format(const gguf_value *v, char *buf, size_t size, int max_items);

#endif
