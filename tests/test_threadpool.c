/* cpu_pool: every share runs exactly once per job, the caller is share 0, jobs after
 * the workers went to sleep still run, shares run concurrently (a barrier inside a job
 * completes), free(NULL) and a pool of one. */
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cpu/threadpool.h"
#include "testutil.h"

typedef struct {
    atomic_int calls[16];
    atomic_int total;
    atomic_int nth_seen;
    atomic_int barrier;
    int caller_share;
} job;

static void count_fn(void *arg, int ith, int nth) {
    job *j = arg;
    if (ith >= 0 && ith < 16) atomic_fetch_add(&j->calls[ith], 1);
    atomic_fetch_add(&j->total, 1);
    atomic_store(&j->nth_seen, nth);
}

static void barrier_fn(void *arg, int ith, int nth) {
    job *j = arg;
    atomic_fetch_add(&j->barrier, 1);
    while (atomic_load(&j->barrier) < nth) {
    }
    atomic_fetch_add(&j->calls[ith], 1);
}

static _Thread_local int tls_marker;
static void caller_fn(void *arg, int ith, int nth) {
    job *j = arg;
    (void)nth;
    if (ith == 0) j->caller_share = tls_marker == 42;
}

static void sleep_ms(int ms) {
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

static void run_checks(int n) {
    cpu_pool *p = cpu_pool_new(n);
    CHECK(p != NULL, "pool of %d", n);
    if (!p) return;
    CHECK(cpu_pool_size(p) == n, "size %d", cpu_pool_size(p));
    for (int rep = 0; rep < 2000; rep++) {
        job j;
        memset(&j, 0, sizeof j);
        cpu_pool_run(p, count_fn, &j);
        int ok = atomic_load(&j.total) == n && atomic_load(&j.nth_seen) == n;
        for (int i = 0; i < n; i++)
            ok &= atomic_load(&j.calls[i]) == 1;
        if (!ok) {
            CHECK(ok, "pool %d rep %d: shares ran wrong (total %d)", n, rep,
                  atomic_load(&j.total));
            break;
        }
        if (rep % 500 == 0) sleep_ms(5); /* let the workers fall asleep */
    }
    {
        job j;
        memset(&j, 0, sizeof j);
        cpu_pool_run(p, barrier_fn, &j);
        int ok = 1;
        for (int i = 0; i < n; i++)
            ok &= atomic_load(&j.calls[i]) == 1;
        CHECK(ok, "pool %d: barrier job", n);
    }
    {
        job j;
        memset(&j, 0, sizeof j);
        tls_marker = 42;
        cpu_pool_run(p, caller_fn, &j);
        CHECK(j.caller_share == 1, "pool %d: share 0 runs on the caller", n);
    }
    cpu_pool_free(p);
}

int main(void) {
    cpu_pool_free(NULL);
    CHECK(cpu_pool_size(NULL) == 1, "size of NULL pool");
    const int cores = cpu_physical_cores();
    printf("physical cores: %d\n", cores);
    CHECK(cores >= 1 && cores <= 4096, "cpu_physical_cores = %d", cores);
    run_checks(1);
    run_checks(2);
    run_checks(5); /* more threads than cores */
    cpu_pool *p = cpu_pool_new(0);
    CHECK(p && cpu_pool_size(p) == cores, "default size = physical cores");
    cpu_pool_free(p);
    return test_summary("test_threadpool");
}
