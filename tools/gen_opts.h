/* Flags shared by `chord run` and `chord chat`, spelled as llama.cpp users type them. */
#ifndef CHORD_TOOLS_GEN_OPTS_H
#define CHORD_TOOLS_GEN_OPTS_H

#include <stdbool.h>
#include <stdio.h>

#include "chord.h"

typedef struct gen_opts {
    const char *model;
    char *prompt;          /* -p, or the contents of -f (owned) */
    const char *system;    /* --system */
    const char *chat_template; /* --chat-template NAME|JINJA */
    int n_predict;         /* -n; -1 = until end of generation */
    int n_ctx;             /* -c; 0 = model default (capped at 4096) */
    int n_threads;         /* -t; 0 = physical cores */
    int n_batch;           /* -b */
    int n_gpu_layers;      /* -ngl; -1 = all that fit */
    bool raw;              /* --raw: no chat template */
    bool no_special;       /* --no-parse-special */
    bool verbose;          /* --verbose */
    const char *stop[8];   /* --stop (repeatable) */
    int n_stop;
    chord_sampler_params sp;
} gen_opts;

/* Fills o from argv[1..]; prints a message and returns false on a bad flag. *help is
 * set for -h/--help. */
bool gen_opts_parse(gen_opts *o, int argc, char **argv, bool *help);
void gen_opts_usage(FILE *f, const char *cmd);
void gen_opts_free(gen_opts *o);

/* Loads the model and creates context + sampler per the options; prints errors. */
bool gen_setup(const gen_opts *o, chord_model **m, chord_context **ctx, chord_sampler **s,
               double *load_seconds);
/* "prompt eval: N tokens, X tok/s | generation: ..." on stderr. */
void gen_print_stats(const chord_gen_stats *st, double load_seconds);
/* Streams text to stdout. */
bool gen_print_text(const char *text, size_t len, void *user);

#endif
