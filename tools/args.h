/* Command-line helpers shared by the sub-commands: strict number parsing, loading. */
#ifndef CHORD_TOOLS_ARGS_H
#define CHORD_TOOLS_ARGS_H

#include <stdbool.h>

#include "chord.h"

/* Parses val as an integer in [lo, hi]; prints "chord: FLAG: ..." and returns false
 * when it is not one. */
bool arg_int(const char *flag, const char *val, long lo, long hi, int *out);
bool arg_float(const char *flag, const char *val, double lo, double hi, float *out);
bool arg_u64(const char *flag, const char *val, unsigned long long *out);
/* The value after argv[*i] (advancing *i), or NULL with a message when missing. */
const char *arg_value(int argc, char **argv, int *i);
/* Reads a whole file (NUL-terminated); NULL with a message on failure. */
char *read_text_file(const char *path, size_t *len);

/* Loads a model, printing the reader's error and any GPU notice to stderr, with a
 * progress bar when stderr is a terminal. NULL on failure. */
chord_model *load_model_cli(const char *path, int n_gpu_layers, bool quiet);

#endif
