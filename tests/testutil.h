/* Tiny test harness: CHECK records failures; tests return test_summary(). */
#ifndef CHORD_TESTUTIL_H
#define CHORD_TESTUTIL_H
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

extern int test_failures;
extern int test_checks;

#define CHECK(cond, ...)                                                              \
    do {                                                                              \
        test_checks++;                                                                \
        if (!(cond)) {                                                                \
            test_failures++;                                                          \
            fprintf(stderr, "FAIL %s:%d: %s: ", __FILE__, __LINE__, #cond);           \
            fprintf(stderr, __VA_ARGS__);                                             \
            fprintf(stderr, "\n");                                                    \
        }                                                                             \
    } while (0)

/* Prints "N checks, N failed" and returns the process exit status. */
int test_summary(const char *name);
/* Reads a whole file; NULL on failure. *size gets the length. Caller frees. */
void *test_read_file(const char *path, size_t *size);
/* Path under ../shared: returns a static buffer. */
const char *test_shared(const char *rel);

/* splitmix64: deterministic random bits from a caller-held state */
uint64_t test_rand_u64(uint64_t *s);
/* uniform in [-1, 1) */
float test_rand_sym(uint64_t *s);

/* ids[0..n) get 0..n-1 ordered as the GPU's topk and the sampler rank logits v: value
 * descending (+inf as FLT_MAX, -0 as +0), then id ascending, NaN and -inf last. */
void test_rank_logits(const float *v, int32_t *ids, int n);

#endif
