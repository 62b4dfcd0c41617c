/* mmap (POSIX) or read-into-memory (Emscripten) of a whole file. */
#if !defined(_POSIX_C_SOURCE) || _POSIX_C_SOURCE < 200809L
#undef _POSIX_C_SOURCE
#define _POSIX_C_SOURCE 200809L
#endif

#include "mapfile.h"

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "error.h"

enum { MAP_KIND_NONE = 0, MAP_KIND_MMAP = 1, MAP_KIND_MALLOC = 2 };

#ifndef __EMSCRIPTEN__

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#ifndef O_CLOEXEC
#define O_CLOEXEC 0
#endif

chord_status chord_map_file(const char *path, chord_mapping *m, chord_error *err) {
    if (!m) return chord_fail(err, CHORD_E_INVALID_ARG, "chord_map_file: mapping is NULL");
    memset(m, 0, sizeof *m);
    if (!path) return chord_fail(err, CHORD_E_INVALID_ARG, "chord_map_file: path is NULL");

    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        int e = errno;
        return chord_fail(err, CHORD_E_IO, "%s: can not open: %s", path, strerror(e));
    }
    struct stat st;
    if (fstat(fd, &st) != 0) {
        int e = errno;
        close(fd);
        return chord_fail(err, CHORD_E_IO, "%s: can not stat: %s", path, strerror(e));
    }
    if (S_ISDIR(st.st_mode)) {
        close(fd);
        return chord_fail(err, CHORD_E_IO, "%s: is a directory, not a file", path);
    }
    if (!S_ISREG(st.st_mode)) {
        close(fd);
        return chord_fail(err, CHORD_E_IO, "%s: not a regular file", path);
    }
    if (st.st_size == 0) {
        close(fd);
        return chord_fail_at(err, CHORD_E_FORMAT, 0, "%s: file is empty", path);
    }
    if (st.st_size < 0 || (uintmax_t)st.st_size > (uintmax_t)SIZE_MAX) {
        close(fd);
        return chord_fail(err, CHORD_E_IO, "%s: file too large to map (%jd bytes)", path,
                          (intmax_t)st.st_size);
    }
    size_t size = (size_t)st.st_size;
    void *p = mmap(NULL, size, PROT_READ, MAP_PRIVATE, fd, 0);
    int e = errno;
    close(fd); /* the mapping keeps the file referenced */
    if (p == MAP_FAILED)
        return chord_fail(err, CHORD_E_IO, "%s: can not map %zu bytes: %s", path, size,
                          strerror(e));
    m->data = p;
    m->size = size;
    m->priv_ = p;
    m->kind_ = MAP_KIND_MMAP;
    return CHORD_OK;
}

#else /* __EMSCRIPTEN__: no real mmap, read the bytes */

chord_status chord_map_file(const char *path, chord_mapping *m, chord_error *err) {
    if (!m) return chord_fail(err, CHORD_E_INVALID_ARG, "chord_map_file: mapping is NULL");
    memset(m, 0, sizeof *m);
    if (!path) return chord_fail(err, CHORD_E_INVALID_ARG, "chord_map_file: path is NULL");
    FILE *f = fopen(path, "rb");
    if (!f) {
        int e = errno;
        return chord_fail(err, CHORD_E_IO, "%s: can not open: %s", path, strerror(e));
    }
    long n = -1;
    if (fseek(f, 0, SEEK_END) == 0) n = ftell(f);
    if (n < 0 || fseek(f, 0, SEEK_SET) != 0) {
        int e = errno;
        fclose(f);
        return chord_fail(err, CHORD_E_IO, "%s: can not determine size (directory?): %s", path,
                          strerror(e));
    }
    if (n == 0) {
        fclose(f);
        return chord_fail_at(err, CHORD_E_FORMAT, 0, "%s: file is empty", path);
    }
    void *buf = malloc((size_t)n);
    if (!buf) {
        fclose(f);
        return chord_fail(err, CHORD_E_NOMEM, "%s: can not allocate %ld bytes", path, n);
    }
    size_t got = fread(buf, 1, (size_t)n, f);
    int e = errno;
    fclose(f);
    if (got != (size_t)n) {
        free(buf);
        return chord_fail(err, CHORD_E_IO, "%s: short read (%zu of %ld bytes): %s", path, got,
                          n, strerror(e));
    }
    m->data = buf;
    m->size = (size_t)n;
    m->priv_ = buf;
    m->kind_ = MAP_KIND_MALLOC;
    return CHORD_OK;
}

#endif

void chord_unmap(chord_mapping *m) {
    if (!m) return;
#ifndef __EMSCRIPTEN__
    if (m->kind_ == MAP_KIND_MMAP && m->priv_) munmap(m->priv_, m->size);
#endif
    if (m->kind_ == MAP_KIND_MALLOC) free(m->priv_);
    memset(m, 0, sizeof *m);
}
