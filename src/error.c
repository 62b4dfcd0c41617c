#include "error.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

static chord_status fill(chord_error *err, chord_status code, int64_t offset, const char *fmt,
                         va_list ap) {
    if (err) {
        err->code = code;
        err->offset = offset;
        vsnprintf(err->message, sizeof err->message, fmt, ap);
    }
    return code;
}

chord_status chord_fail(chord_error *err, chord_status code, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fill(err, code, -1, fmt, ap);
    va_end(ap);
    return code;
}

chord_status chord_fail_at(chord_error *err, chord_status code, int64_t offset,
                           const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fill(err, code, offset, fmt, ap);
    va_end(ap);
    return code;
}

void chord_assert_fail(const char *file, int line, const char *expr) {
    fprintf(stderr, "chord: internal error at %s:%d: %s\n", file, line, expr);
    abort();
}

const char *chord_status_str(chord_status s) {
    switch (s) {
    case CHORD_OK: return "ok";
    case CHORD_E_INVALID_ARG: return "invalid argument";
    case CHORD_E_IO: return "i/o error";
    case CHORD_E_FORMAT: return "corrupt or malformed file";
    case CHORD_E_UNSUPPORTED: return "unsupported";
    case CHORD_E_NOMEM: return "out of memory";
    case CHORD_E_CONTEXT_FULL: return "context full";
    case CHORD_E_BACKEND: return "backend failure";
    case CHORD_E_TEMPLATE: return "chat template error";
    }
    return "unknown status";
}
