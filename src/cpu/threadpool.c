/* Persistent worker threads. A job is published by bumping `gen`; workers spin on it
 * for a short while (so back-to-back matmuls start in well under a microsecond), then
 * sleep on a condition variable. `sleepers` (seq_cst, Dekker style with `gen`) tells
 * the caller whether a broadcast is needed. */
#define _GNU_SOURCE
#include "cpu/threadpool.h"

#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define CPU_RELAX() _mm_pause()
#else
#define CPU_RELAX() ((void)0)
#endif

/* how long an idle worker spins before sleeping */
#define SPIN_NS 200000

struct cpu_pool {
    int n;
    pthread_t *threads;
    cpu_pool_fn fn;
    void *arg;
    atomic_uint gen;
    atomic_int pending;
    atomic_int sleepers;
    atomic_int stop;
    pthread_mutex_t mu;
    pthread_cond_t cv;
};

typedef struct {
    cpu_pool *p;
    int ith;
} worker_arg;

static int64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* Waits until gen != seen (or stop); returns the new gen. */
static unsigned wait_job(cpu_pool *p, unsigned seen) {
    const int64_t t0 = now_ns();
    for (int i = 0;; i++) {
        unsigned g = atomic_load_explicit(&p->gen, memory_order_acquire);
        if (g != seen || atomic_load_explicit(&p->stop, memory_order_acquire)) return g;
        CPU_RELAX();
        if ((i & 63) == 63 && now_ns() - t0 > SPIN_NS) break;
    }
    pthread_mutex_lock(&p->mu);
    atomic_fetch_add(&p->sleepers, 1);
    unsigned g;
    while ((g = atomic_load(&p->gen)) == seen && !atomic_load(&p->stop))
        pthread_cond_wait(&p->cv, &p->mu);
    atomic_fetch_sub(&p->sleepers, 1);
    pthread_mutex_unlock(&p->mu);
    return g;
}

static void *worker_main(void *v) {
    worker_arg wa = *(worker_arg *)v;
    free(v);
    cpu_pool *p = wa.p;
    unsigned seen = 0;
    for (;;) {
        seen = wait_job(p, seen);
        if (atomic_load_explicit(&p->stop, memory_order_acquire)) break;
        p->fn(p->arg, wa.ith, p->n);
        atomic_fetch_sub_explicit(&p->pending, 1, memory_order_acq_rel);
    }
    return NULL;
}

cpu_pool *cpu_pool_new(int n_threads) {
    if (n_threads <= 0) n_threads = cpu_physical_cores();
    if (n_threads < 1) n_threads = 1;
    cpu_pool *p = calloc(1, sizeof *p);
    if (!p) return NULL;
    p->n = n_threads;
    atomic_init(&p->gen, 0);
    atomic_init(&p->pending, 0);
    atomic_init(&p->sleepers, 0);
    atomic_init(&p->stop, 0);
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->cv, NULL);
    if (n_threads > 1) {
        p->threads = calloc((size_t)n_threads, sizeof *p->threads);
        if (!p->threads) goto fail;
        for (int i = 1; i < n_threads; i++) {
            worker_arg *wa = malloc(sizeof *wa);
            if (!wa) goto fail_started;
            wa->p = p;
            wa->ith = i;
            if (pthread_create(&p->threads[i], NULL, worker_main, wa) != 0) {
                free(wa);
                goto fail_started;
            }
            continue;
        fail_started:
            p->n = i; /* threads 1..i-1 exist */
            cpu_pool_free(p);
            return NULL;
        }
    }
    return p;
fail:
    pthread_mutex_destroy(&p->mu);
    pthread_cond_destroy(&p->cv);
    free(p);
    return NULL;
}

void cpu_pool_free(cpu_pool *p) {
    if (!p) return;
    atomic_store(&p->stop, 1);
    pthread_mutex_lock(&p->mu);
    pthread_cond_broadcast(&p->cv);
    pthread_mutex_unlock(&p->mu);
    for (int i = 1; i < p->n; i++)
        pthread_join(p->threads[i], NULL);
    pthread_mutex_destroy(&p->mu);
    pthread_cond_destroy(&p->cv);
    free(p->threads);
    free(p);
}

int cpu_pool_size(const cpu_pool *p) {
    return p ? p->n : 1;
}

void cpu_pool_run(cpu_pool *p, cpu_pool_fn fn, void *arg) {
    if (!p || p->n == 1) {
        fn(arg, 0, 1);
        return;
    }
    p->fn = fn;
    p->arg = arg;
    atomic_store_explicit(&p->pending, p->n - 1, memory_order_relaxed);
    atomic_fetch_add(&p->gen, 1); /* seq_cst: publishes fn/arg/pending */
    if (atomic_load(&p->sleepers) > 0) {
        pthread_mutex_lock(&p->mu);
        pthread_cond_broadcast(&p->cv);
        pthread_mutex_unlock(&p->mu);
    }
    fn(arg, 0, p->n);
    for (int i = 0; atomic_load_explicit(&p->pending, memory_order_acquire) > 0; i++) {
        CPU_RELAX();
        if (i > 4096) sched_yield(); /* a worker was descheduled: let it run */
    }
}

/* ------------------------------------------------------------ topology */

static int read_int(const char *path, int *v) {
    FILE *f = fopen(path, "r");
    if (!f) return 0;
    int ok = fscanf(f, "%d", v) == 1;
    fclose(f);
    return ok;
}

int cpu_physical_cores(void) {
    long n_online = sysconf(_SC_NPROCESSORS_ONLN);
    if (n_online < 1) n_online = 1;
    long n_conf = sysconf(_SC_NPROCESSORS_CONF);
    if (n_conf < n_online) n_conf = n_online;
    int usable = (int)n_online;
#ifdef __linux__
    cpu_set_t set;
    CPU_ZERO(&set);
    int have_aff = sched_getaffinity(0, sizeof set, &set) == 0;
    if (have_aff && CPU_COUNT(&set) > 0) usable = CPU_COUNT(&set);
    /* unique (package, core) pairs among the CPUs we may run on */
    int cores = 0;
    long *seen = calloc((size_t)n_conf, sizeof *seen);
    if (seen) {
        for (long c = 0; c < n_conf && c < CPU_SETSIZE; c++) {
            if (have_aff && !CPU_ISSET((int)c, &set)) continue;
            char path[128];
            int core, pkg = 0;
            snprintf(path, sizeof path, "/sys/devices/system/cpu/cpu%ld/topology/core_id", c);
            if (!read_int(path, &core)) continue;
            snprintf(path, sizeof path,
                     "/sys/devices/system/cpu/cpu%ld/topology/physical_package_id", c);
            read_int(path, &pkg);
            const long key = (long)pkg * 65536 + core;
            int dup = 0;
            for (int j = 0; j < cores; j++)
                dup |= seen[j] == key;
            if (!dup) seen[cores++] = key;
        }
        free(seen);
    }
    if (cores > 0 && cores < usable) return cores;
#endif
    return usable;
}
