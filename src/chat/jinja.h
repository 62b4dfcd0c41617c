/* A Jinja2 subset, enough for the chat templates models ship in tokenizer_config.json.
 *
 * Rendering follows Hugging Face transformers: trim_blocks and lstrip_blocks on, a single
 * trailing newline of the template dropped, loop controls ({% break %}, {% continue %})
 * enabled, `raise_exception(msg)` and `strftime_now(fmt)` available, and `tojson` as
 * transformers defines it (ensure_ascii off, keys unsorted, optional indent).
 *
 * Supported: text, {{ }}, {% %}, {# #}, whitespace control (- and +), {% raw %};
 * statements for (loop.*, `if` filter, else, tuple targets), if/elif/else, set (also
 * `ns.attr = ...`, tuple targets and {% set x %}...{% endset %}), macro (positional,
 * keyword and default arguments), filter blocks, with, break/continue, generation;
 * the expression language with Python semantics for the value types none, bool, int
 * (64-bit), float, str (UTF-8, indexed by code point), list, tuple, dict, namespace;
 * the filters, tests, methods and globals listed in jinja_builtins.c.
 *
 * Deliberate differences from Jinja2: an undefined value stays undefined through
 * attribute/item access (Jinja2 raises there); calling an unknown method raises.
 * Integers are 64-bit (overflow is an error). Case mapping (upper, lower, title,
 * capitalize) covers ASCII, Latin-1, Latin Extended-A, Greek and Cyrillic.
 *
 * Errors (syntax, unknown filter or test, type errors, raise_exception, limits) are
 * CHORD_E_TEMPLATE with "line L, column C: ..." in the message. A template cannot run
 * away: loop iterations, nesting depth, memory and output size are bounded (below).
 */
#ifndef CHORD_JINJA_H
#define CHORD_JINJA_H

#include <stdbool.h>
#include <stddef.h>

#include "chord.h"

typedef struct jinja_message {
    const char *role;    /* NULL renders as none */
    const char *content; /* NULL renders as none */
} jinja_message;

typedef struct jinja_vars {
    const char *bos_token; /* NULL: undefined */
    const char *eos_token; /* NULL: undefined */
    bool add_generation_prompt;
} jinja_vars;

/* Limits on one render. */
#define JINJA_MAX_OUTPUT ((size_t)16 << 20)  /* bytes of rendered text */
#define JINJA_MAX_MEMORY ((size_t)256 << 20) /* bytes of interpreter memory */
#define JINJA_MAX_STEPS 5000000              /* loop iterations + macro calls */
#define JINJA_MAX_DEPTH 128 /* nesting of expressions, blocks, calls: ~48 KiB of stack */

/* Renders tmpl with the variables messages (a list of {role, content} dicts),
 * bos_token, eos_token and add_generation_prompt. *out is malloc'd (NUL-terminated);
 * on failure *out is NULL. */
chord_status jinja_render(const char *tmpl, const jinja_message *msgs, size_t n_msgs,
                          const jinja_vars *vars, char **out, chord_error *err);

#endif
