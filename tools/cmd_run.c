/* chord run: one prompt in, streamed text out. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gen_opts.h"

int cmd_run(int argc, char **argv) {
    gen_opts o;
    bool help;
    if (!gen_opts_parse(&o, argc, argv, &help)) {
        gen_opts_free(&o);
        return 1;
    }
    if (help) {
        gen_opts_usage(stdout, "run");
        gen_opts_free(&o);
        return 0;
    }
    if (!o.prompt) {
        fprintf(stderr, "chord: no prompt given (-p TEXT or -f FILE)\n");
        gen_opts_free(&o);
        return 1;
    }
    if (o.n_predict == -2) o.n_predict = 256;
    chord_model *m;
    chord_context *ctx;
    chord_sampler *s;
    double load_s = 0;
    int rc = 1;
    char *text = NULL;
    if (!gen_setup(&o, &m, &ctx, &s, &load_s)) goto done;
    chord_error err = {0};
    const char *prompt = o.prompt;
    bool has_template = chord_model_meta(m, "tokenizer.chat_template", NULL, 0) >= 0;
    if (!o.raw && (has_template || o.chat_template)) {
        chord_chat_message msgs[2];
        size_t n = 0;
        if (o.system) msgs[n++] = (chord_chat_message){"system", o.system};
        msgs[n++] = (chord_chat_message){"user", o.prompt};
        if (chord_chat_apply_template(m, o.chat_template, msgs, n, true, &text, &err) != CHORD_OK) {
            fprintf(stderr, "chord: %s\n", err.message);
            goto done;
        }
        if (o.verbose) fprintf(stderr, "chord: formatted prompt:\n%s\n", text);
        prompt = text;
    }
    chord_gen_params gp = {.max_tokens = o.n_predict, .stop = o.stop, .n_stop = o.n_stop,
                           .parse_special = !o.no_special};
    chord_gen_stats st = {0};
    if (chord_generate(ctx, s, prompt, &gp, gen_print_text, NULL, &st, &err) != CHORD_OK) {
        fprintf(stderr, "\nchord: %s\n", err.message);
        goto done;
    }
    printf("\n");
    if (st.hit_ctx) fprintf(stderr, "chord: stopped: the context (%d tokens) is full\n", chord_context_n_ctx(ctx));
    gen_print_stats(&st, load_s);
    rc = 0;
done:
    free(text);
    chord_sampler_free(s);
    chord_context_free(ctx);
    chord_model_free(m);
    gen_opts_free(&o);
    return rc;
}
