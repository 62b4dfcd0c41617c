/* Measures this machine's memory read bandwidth, the ceiling of decode speed. */
#ifndef CHORD_TOOLS_MEMBW_H
#define CHORD_TOOLS_MEMBW_H

/* GB/s (1e9 bytes) reading a buffer much larger than the caches with n_threads
 * threads; best of a few passes. 0 on failure. */
double membw_read_gbps(int n_threads);

#endif
