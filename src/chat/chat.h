/* Chat templates: choosing between the model's template, a caller's template and the
 * built-in ones, then rendering with the Jinja interpreter. */
#ifndef CHORD_CHAT_H
#define CHORD_CHAT_H

#include "chat/jinja.h"

typedef struct chat_builtin {
    const char *name;
    const char *tmpl;
} chat_builtin;

/* chatml, llama2, llama3, zephyr, mistral, gemma */
extern const chat_builtin CHAT_BUILTINS[];
extern const size_t CHAT_N_BUILTINS;

/* The built-in template called name (case-insensitive), or NULL. */
const char *chat_builtin_template(const char *name);

/* Renders msgs with:
 * - override, when not NULL: a Jinja template if it contains "{%" or "{{", else the name
 *   of a built-in template (unknown name: CHORD_E_INVALID_ARG listing the names);
 * - else the model's template, when not NULL and not empty;
 * - else ChatML.
 * *out is malloc'd; the caller frees it. */
chord_status chat_render(const char *model_tmpl, const char *override,
                         const jinja_message *msgs, size_t n, const jinja_vars *vars,
                         char **out, chord_error *err);

#endif
