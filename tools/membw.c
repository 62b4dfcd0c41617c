#include "membw.h"

#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

typedef struct {
    const uint64_t *p;
    size_t n;
    uint64_t sum;
} slice;

/* Eight independent accumulators keep enough loads in flight; the compiler
 * vectorises the loop. The sum is kept so the reads cannot be optimised away. */
static void *read_slice(void *arg) {
    slice *s = arg;
    uint64_t a[8] = {0};
    for (size_t i = 0; i + 8 <= s->n; i += 8)
        for (int k = 0; k < 8; k++) a[k] += s->p[i + k];
    s->sum = a[0] + a[1] + a[2] + a[3] + a[4] + a[5] + a[6] + a[7];
    return NULL;
}

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

double membw_read_gbps(int n_threads) {
    if (n_threads < 1) n_threads = 1;
    if (n_threads > 256) n_threads = 256;
    const size_t bytes = (size_t)1 << 30, n = bytes / sizeof(uint64_t);
    uint64_t *buf = NULL;
    if (posix_memalign((void **)&buf, 64, bytes)) return 0;
    memset(buf, 1, bytes);
    slice sl[256];
    pthread_t th[256];
    double best = 0;
    for (int pass = 0; pass < 4; pass++) {
        double t0 = now();
        for (int t = 0; t < n_threads; t++) {
            sl[t] = (slice){buf + n / n_threads * t, n / n_threads, 0};
            if (t) pthread_create(&th[t], NULL, read_slice, &sl[t]);
        }
        read_slice(&sl[0]);
        for (int t = 1; t < n_threads; t++) pthread_join(th[t], NULL);
        double dt = now() - t0;
        volatile uint64_t sink = sl[0].sum;
        (void)sink;
        double gbps = (double)bytes / dt / 1e9;
        if (gbps > best) best = gbps;
    }
    free(buf);
    return best;
}
