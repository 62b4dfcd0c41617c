/* A persistent thread pool for the CPU kernels: workers are created once and wait for
 * jobs, spinning briefly and then sleeping, so an idle pool costs no CPU. */
#ifndef CHORD_CPU_THREADPOOL_H
#define CHORD_CPU_THREADPOOL_H

typedef struct cpu_pool cpu_pool;

/* n_threads counts the calling thread (which runs share 0); <= 0: physical cores.
 * Returns NULL when threads or memory can not be had. */
cpu_pool *cpu_pool_new(int n_threads);
void cpu_pool_free(cpu_pool *p); /* NULL ok */
int cpu_pool_size(const cpu_pool *p);

/* Runs fn(arg, ith, nth) for ith = 0..nth-1 (nth = cpu_pool_size), ith 0 on the
 * calling thread; returns when all are done. One caller at a time per pool.
 * fn may wait for the other shares (every share runs concurrently). */
typedef void (*cpu_pool_fn)(void *arg, int ith, int nth);
void cpu_pool_run(cpu_pool *p, cpu_pool_fn fn, void *arg);

/* Physical cores usable by this process (topology from /sys, capped by the affinity
 * mask; falls back to the online CPU count). */
int cpu_physical_cores(void);

#endif
