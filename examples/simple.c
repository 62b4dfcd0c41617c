/* The smallest complete use of chord's C API: load a model, chat-format a question,
 * stream the answer. Uses only the public header.
 *
 *   simple MODEL.gguf "your question"
 */
#include <stdio.h>
#include <stdlib.h>

#include "chord.h"

static bool print_text(const char *text, size_t len, void *user) {
    (void)user;
    fwrite(text, 1, len, stdout);
    fflush(stdout);
    return true; /* keep going */
}

int main(int argc, char **argv) {
    if (argc < 3) {
        fprintf(stderr, "usage: %s MODEL.gguf PROMPT\n", argv[0]);
        return 1;
    }
    chord_error err = {0};
    chord_model *model = NULL;
    chord_context *ctx = NULL;
    chord_sampler *sampler = NULL;
    char *prompt = NULL;
    int rc = 1;

    chord_model_params mp = chord_model_default_params();
    if (chord_model_load(argv[1], &mp, &model, &err) != CHORD_OK) goto fail;
    if (chord_model_backend_notice(model)) fprintf(stderr, "%s\n", chord_model_backend_notice(model));

    chord_context_params cp = chord_context_default_params();
    cp.n_ctx = 2048;
    if (chord_context_new(model, &cp, &ctx, &err) != CHORD_OK) goto fail;

    chord_sampler_params sp = chord_sampler_default_params();
    sp.temperature = 0; /* greedy: the same answer every time */
    if (chord_sampler_new(&sp, &sampler, &err) != CHORD_OK) goto fail;

    chord_chat_message msg = {"user", argv[2]};
    if (chord_chat_apply_template(model, NULL, &msg, 1, true, &prompt, &err) != CHORD_OK) goto fail;

    chord_gen_params gp = {.max_tokens = 128, .parse_special = true};
    chord_gen_stats stats;
    if (chord_generate(ctx, sampler, prompt, &gp, print_text, NULL, &stats, &err) != CHORD_OK)
        goto fail;
    printf("\n[%d tokens, %.1f tok/s]\n", stats.n_gen,
           stats.gen_seconds > 0 ? stats.n_gen / stats.gen_seconds : 0.0);
    rc = 0;
    goto done;
fail:
    fprintf(stderr, "error: %s (%s)\n", err.message, chord_status_str(err.code));
done:
    free(prompt);
    chord_sampler_free(sampler);
    chord_context_free(ctx);
    chord_model_free(model);
    return rc;
}
