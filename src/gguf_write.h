/* A streaming GGUF v3 writer.
 *
 * Usage: gguf_writer_new; set metadata (gguf_writer_set_* / gguf_writer_copy_*) and
 * declare every tensor (gguf_writer_add_tensor) in file order; gguf_writer_begin(path)
 * writes the header, metadata and tensor infos; then gguf_writer_write appends the
 * tensors' bytes in the declared order (in pieces of any size; padding between tensors
 * is inserted automatically); gguf_writer_finish checks that every byte came and closes
 * the file. gguf_writer_free on an unfinished writer closes and removes the partial
 * file. Values are written little-endian (scalar arrays are copied from host memory,
 * which must be little-endian, as on every platform chord runs on). */
#ifndef CHORD_GGUF_WRITE_H
#define CHORD_GGUF_WRITE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "chord.h"
#include "gguf.h"

#define GGUF_WRITE_MAX_NAME 63 /* tensor name bytes (ggml's limit, without the NUL) */

typedef struct gguf_writer gguf_writer;

chord_status gguf_writer_new(gguf_writer **out, chord_error *err);
void gguf_writer_free(gguf_writer *w);

/* ---- metadata: setting a key that exists replaces its value in place ---- */

/* A scalar of type t (U8..F64 except STRING/ARRAY) read from *val. */
chord_status gguf_writer_set_scalar(gguf_writer *w, const char *key, gguf_vtype t,
                                    const void *val, chord_error *err);
chord_status gguf_writer_set_u32(gguf_writer *w, const char *key, uint32_t v, chord_error *err);
chord_status gguf_writer_set_i32(gguf_writer *w, const char *key, int32_t v, chord_error *err);
chord_status gguf_writer_set_u64(gguf_writer *w, const char *key, uint64_t v, chord_error *err);
chord_status gguf_writer_set_f32(gguf_writer *w, const char *key, float v, chord_error *err);
chord_status gguf_writer_set_bool(gguf_writer *w, const char *key, bool v, chord_error *err);
chord_status gguf_writer_set_str(gguf_writer *w, const char *key, const char *s,
                                 chord_error *err);
chord_status gguf_writer_set_strn(gguf_writer *w, const char *key, const char *s, uint64_t len,
                                  chord_error *err);
/* An array of n scalars of type elem, elements read from data (packed, host order). */
chord_status gguf_writer_set_arr(gguf_writer *w, const char *key, gguf_vtype elem,
                                 const void *data, uint64_t n, chord_error *err);
/* An array of n NUL-terminated strings. */
chord_status gguf_writer_set_str_arr(gguf_writer *w, const char *key, const char *const *strs,
                                     uint64_t n, chord_error *err);
/* Copies one key and value (any type, nested arrays included) of a parsed file. */
chord_status gguf_writer_copy_kv(gguf_writer *w, const gguf_kv *kv, chord_error *err);
/* Copies every kv of src whose key starts with prefix (NULL or "": all of them). */
chord_status gguf_writer_copy_kvs(gguf_writer *w, const gguf_file *src, const char *prefix,
                                  chord_error *err);
/* Removes a key; false when it was not set. */
bool gguf_writer_remove_kv(gguf_writer *w, const char *key);
uint64_t gguf_writer_n_kv(const gguf_writer *w);

/* ---- tensors ---- */

/* Declares the next tensor: n_dims 1..4, ne[0] the row length (a multiple of the type's
 * block size). Names must be unique and at most GGUF_WRITE_MAX_NAME bytes. */
chord_status gguf_writer_add_tensor(gguf_writer *w, const char *name, uint32_t n_dims,
                                    const int64_t *ne, uint32_t type, chord_error *err);
uint64_t gguf_writer_n_tensors(const gguf_writer *w);
/* Bytes of tensor i's data (as declared). */
uint64_t gguf_writer_tensor_size(const gguf_writer *w, uint64_t i);

/* ---- output ---- */

/* Creates `path` and writes everything before the data section. The alignment is
 * general.alignment when set (a u32 power of two), else 32. */
chord_status gguf_writer_begin(gguf_writer *w, const char *path, chord_error *err);
/* Appends n bytes of tensor data (continuing the current tensor, then the next ones). */
chord_status gguf_writer_write(gguf_writer *w, const void *data, size_t n, chord_error *err);
/* Checks that all tensor data was written, flushes and closes. Total file size out. */
chord_status gguf_writer_finish(gguf_writer *w, uint64_t *file_size, chord_error *err);

#endif
