/* C-callable extras of the CUDA backend for tests and benchmarks (not used by the
 * library itself). Only declared when chord is built with CUDA. */
#ifndef CHORD_CUDA_API_H
#define CHORD_CUDA_API_H

#ifdef __cplusplus
extern "C" {
#endif

#include "backend.h"

#ifdef CHORD_HAVE_CUDA
/* Times ops->matmul with one weight per call for each of the n_w weights (pass several
 * copies so the data exceeds the L2 cache), n tokens, x / y device buffers sized for the
 * largest weight. The calls are captured once in a CUDA graph and replayed `reps`
 * times, each replay timed with events; *us_per_call is the median per matmul.
 * kernel_only (n = 1): the activations are quantized once before, and only the matvec
 * kernels are timed. */
chord_status cuda_bench_matmul(chord_backend *be, const chord_weight *const *ws, int n_w,
                               const float *x, float *y, int n, int kernel_only, int reps,
                               double *us_per_call, chord_error *err);

/* Turns programmatic dependent launch of the decode kernels on or off (default: on for
 * compute capability 9.0 and newer, unless CHORD_CUDA_PDL=0); returns the old setting. */
int cuda_set_pdl(chord_backend *be, int on);

/* Decode steps (forward.c's step_begin / step_end): 0 = ops launched as issued, 1 = each
 * step recorded once as a CUDA graph (per set of buffers) and replayed (default; the
 * environment variable CHORD_CUDA_GRAPHS=0 / 2 chooses at creation), 2 = recorded and
 * fused as for a graph but launched directly. Returns the old mode. */
int cuda_set_graphs(chord_backend *be, int mode);
/* Graphs held now; *fails (may be NULL) gets the number of failed captures. */
int cuda_graph_count(chord_backend *be, int *fails);
/* L2 prefetcher of captured steps (prefetch.cu): its warps that ended, and in *stalled
 * those that gave up waiting for a matvec that never reported. */
int cuda_pf_stats(chord_backend *be, int *stalled);

/* Recorded steps: matvecs quantize their own input (1; CHORD_CUDA_FUSE=2 at creation) or
 * separate fused norm/swiglu + quantize kernels do (0, default: faster). Drops the graphs
 * held. Returns the old setting. */
int cuda_set_fuse(chord_backend *be, int on);
/* Decode tuning knobs (drop the graphs held; return the old value, -1 for an unknown
 * knob): "persist" blocks per SM of the input-quantizing matvecs (CHORD_CUDA_PERSIST,
 * default 2; 0: a block per row tile), "pairs" one decode matvec launch for two weight
 * types, e.g. Q4_K q/k with a Q6_K v (1, default; CHORD_CUDA_PAIRS=0: off), "fast" a
 * context's next one-token step replays its last graph without the ops being issued and
 * recorded again (1, default; CHORD_CUDA_FAST=0: off), "waves" more rows per warp for a
 * decode matvec whose blocks would not all be resident at once (1, default;
 * CHORD_CUDA_WAVES=0: off), "q4ksplit" those Q4_K chunk matvecs split each row's rounds
 * over two warps, two rows per warp (1, default; CHORD_CUDA_Q4KSPLIT=0: off), "q4krows"
 * rows per warp of those Q4_K chunk matvecs when not split (1-3, default 3), "early"
 * CUDA_EARLY_* bits, "attnquant" decode attention quantizes its output (0 never, 1 per 32
 * (default), 2 also per 256 over clusters). */
int cuda_tune(chord_backend *be, const char *knob, int value);
/* Timing trace of the decode kernels (drops the graphs held; 1 if on). cuda_trace_step
 * replays the latest step graph once and gives per kernel its kind (n rmsnorm+quantize,
 * q quantize, s swiglu+quantize, a attention, m matvec) and first block start, release
 * from the previous kernel, end, last block start and a mark inside the kernel (-1: none),
 * in us from the first start (t5: 5 per kernel). */
int cuda_set_trace(chord_backend *be, int on);
int cuda_trace_step(chord_backend *be, char *kinds, double *t5, int max);
/* Drops the step graphs held (e.g. after cuda_set_pdl, so that they are recorded again). */
void cuda_graphs_drop(chord_backend *be);
/* GPU time per replay of the most recently used step graph, reps replays back to back. */
chord_status cuda_graph_bench(chord_backend *be, int reps, double *us, chord_error *err);

/* Read bandwidth of streaming `bytes` into the SMs and dropping them (bench_stream.cu):
 * mode 0 plain 16-byte loads (bps blocks of `threads` per SM), 1 a ring of `stages` (2, 4,
 * 8) shared-memory stages of stage_kib KiB filled by every thread's cp.async, 2 the same
 * filled by cp.async.bulk (sm_90). Best GB/s of 5 runs. */
chord_status cuda_bench_stream(chord_backend *be, int mode, int bps, int threads, int stage_kib,
                               int stages, size_t bytes, double *gb_per_s, chord_error *err);
/* us per grid-wide barrier (atomic arrival, spin on a generation word) of bps resident
 * blocks of `threads` per SM, best of 3 runs of iters barriers (bench_stream.cu). */
chord_status cuda_bench_barrier(chord_backend *be, int bps, int threads, int iters, double *us,
                                chord_error *err);
/* Device-to-device copy of `bytes`: median GB/s counting bytes read plus written. */
chord_status cuda_bench_copy(chord_backend *be, size_t bytes, double *gb_per_s,
                             chord_error *err);

/* Times ops->attention for n tokens at positions pos0.. (graph replay, median us). */
chord_status cuda_bench_attention(chord_backend *be, float *out, const float *q, const float *k,
                                  const float *v, chord_kv *kv, int n, int pos0,
                                  const chord_attn_shape *s, int reps, double *us,
                                  chord_error *err);
#endif

#ifdef __cplusplus
}
#endif
#endif
