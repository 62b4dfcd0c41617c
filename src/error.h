/* Filling chord_error from anywhere in the library. */
#ifndef CHORD_ERROR_H
#define CHORD_ERROR_H

#include "chord.h"

#if defined(__GNUC__)
#define CHORD_PRINTF(a, b) __attribute__((format(printf, a, b)))
#else
#define CHORD_PRINTF(a, b)
#endif

/* Sets err (if not NULL) and returns code, so callers can `return chord_fail(...)`. */
chord_status chord_fail(chord_error *err, chord_status code, const char *fmt, ...)
    CHORD_PRINTF(3, 4);
/* Same, with the byte offset in the file where the problem was found. */
chord_status chord_fail_at(chord_error *err, chord_status code, int64_t offset,
                           const char *fmt, ...) CHORD_PRINTF(4, 5);

/* Programmer errors (never bad input): always on, prints file:line and aborts. */
#define CHORD_ASSERT(x)                                                               \
    do {                                                                              \
        if (!(x)) chord_assert_fail(__FILE__, __LINE__, #x);                          \
    } while (0)
_Noreturn void chord_assert_fail(const char *file, int line, const char *expr);

#endif
