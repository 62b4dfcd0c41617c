/* Read-only views of whole files: mmap where the platform has it, else (WASM) the
 * bytes read into a malloc'd buffer. */
#ifndef CHORD_MAPFILE_H
#define CHORD_MAPFILE_H

#include <stddef.h>

#include "chord.h"

typedef struct chord_mapping {
    const void *data; /* the file's bytes (read-only); NULL when not mapped */
    size_t size;      /* the file's length in bytes */
    void *priv_;      /* internal: what to release */
    int kind_;        /* internal: 0 nothing, 1 mmap, 2 malloc */
} chord_mapping;

/* Maps `path` read-only. On failure *m is zeroed and err names the path and the reason:
 * CHORD_E_IO (can not open / stat / map, a directory or other non-regular file) or
 * CHORD_E_FORMAT for an empty file ("file is empty"). */
chord_status chord_map_file(const char *path, chord_mapping *m, chord_error *err);
/* Releases the mapping and zeroes *m. Safe on a zeroed struct and twice in a row. */
void chord_unmap(chord_mapping *m);

#endif
