#include <stdio.h>
#include <math.h>
#include <float.h>
#include "testutil.h"

#include <stdlib.h>

int test_failures = 0;
int test_checks = 0;

int test_summary(const char *name) {
    printf("%s: %d checks, %d failed\n", name, test_checks, test_failures);
    return test_failures ? 1 : 0;
}

void *test_read_file(const char *path, size_t *size) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *buf = malloc((size_t)n + 1);
    if (buf && fread(buf, 1, (size_t)n, f) != (size_t)n) {
        free(buf);
        buf = NULL;
    }
    fclose(f);
    if (buf) {
        buf[n] = 0;
        if (size) *size = (size_t)n;
    }
    return buf;
}

const char *test_shared(const char *rel) {
    static char buf[4096];
    const char *base = getenv("CHORD_SHARED");
#ifdef CHORD_SHARED_DIR
    if (!base) base = CHORD_SHARED_DIR;
#endif
    if (!base) base = "../shared";
    snprintf(buf, sizeof buf, "%s/%s", base, rel);
    return buf;
}

uint64_t test_rand_u64(uint64_t *s) {
    uint64_t x = *s += 0x9e3779b97f4a7c15ull;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
    return x ^ (x >> 31);
}

float test_rand_sym(uint64_t *s) {
    return (float)((double)(test_rand_u64(s) >> 11) / 9007199254740992.0 * 2.0 - 1.0);
}

typedef struct ranked {
    float v;
    int32_t id;
} ranked;

static float rank_value(float v) {
    return isnan(v) || v == -INFINITY ? -INFINITY : (v > FLT_MAX ? FLT_MAX : v);
}

static int ranked_cmp(const void *a, const void *b) {
    const ranked *x = a, *y = b;
    const float u = rank_value(x->v), w = rank_value(y->v);
    if (u != w) return u > w ? -1 : 1;
    return (x->id > y->id) - (x->id < y->id);
}

void test_rank_logits(const float *v, int32_t *ids, int n) {
    ranked *r = malloc((size_t)n * sizeof *r);
    if (!r) {
        fprintf(stderr, "test_rank_logits: out of memory\n");
        exit(1);
    }
    for (int i = 0; i < n; i++)
        r[i].v = v[i], r[i].id = i;
    qsort(r, (size_t)n, sizeof *r, ranked_cmp);
    for (int i = 0; i < n; i++)
        ids[i] = r[i].id;
    free(r);
}
