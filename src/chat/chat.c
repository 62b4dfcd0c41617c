/* Chat templates: picks the template and renders it. */
#include <stdio.h>
#include <string.h>

#include "chat/chat.h"
#include "error.h"

static bool same_name(const char *a, const char *b) {
    for (; *a && *b; a++, b++) {
        char x = *a >= 'A' && *a <= 'Z' ? (char)(*a + 32) : *a;
        if (x != *b) return false;
    }
    return *a == *b;
}

const char *chat_builtin_template(const char *name) {
    if (!name) return NULL;
    for (size_t i = 0; i < CHAT_N_BUILTINS; i++)
        if (same_name(name, CHAT_BUILTINS[i].name)) return CHAT_BUILTINS[i].tmpl;
    return NULL;
}

chord_status chat_render(const char *model_tmpl, const char *override,
                         const jinja_message *msgs, size_t n, const jinja_vars *vars,
                         char **out, chord_error *err) {
    if (out) *out = NULL;
    if (!out || (!msgs && n))
        return chord_fail(err, CHORD_E_INVALID_ARG, "chat_render: NULL argument");
    const char *tmpl;
    if (override) {
        if (strstr(override, "{%") || strstr(override, "{{")) {
            tmpl = override;
        } else if (!(tmpl = chat_builtin_template(override))) {
            char names[128] = "";
            for (size_t i = 0; i < CHAT_N_BUILTINS; i++) {
                size_t l = strlen(names);
                snprintf(names + l, sizeof names - l, "%s%s", i ? ", " : "",
                         CHAT_BUILTINS[i].name);
            }
            return chord_fail(err, CHORD_E_INVALID_ARG,
                              "unknown chat template '%.64s' (built-in templates: %s; or pass "
                              "Jinja template text)",
                              override, names);
        }
    } else if (model_tmpl && model_tmpl[0]) {
        tmpl = model_tmpl;
    } else {
        tmpl = chat_builtin_template("chatml");
    }
    return jinja_render(tmpl, msgs, n, vars, out, err);
}
