#include "gen_opts.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "args.h"

void gen_opts_usage(FILE *f, const char *cmd) {
    fprintf(f,
            "usage: chord %s -m MODEL [options]\n\n"
            "  -m, --model FILE        GGUF model to run\n"
            "  -p, --prompt TEXT       prompt%s\n"
            "  -f, --file FILE         read the prompt from FILE\n"
            "  -n, --n-predict N       tokens to generate (-1 = until end of text; default %s)\n"
            "  -c, --ctx-size N        context size in tokens (default: model's, at most 4096)\n"
            "  -t, --threads N         CPU threads (default: physical cores)\n"
            "  -b, --batch-size N      prompt tokens per forward chunk (default 512)\n"
            "  -ngl, --n-gpu-layers N  layers on the GPU (default: all that fit; 0 = CPU only)\n"
            "  --temp X                temperature (default 0.8; 0 = greedy)\n"
            "  --top-k N               keep the N most likely tokens (default 40; 0 = off)\n"
            "  --top-p X               nucleus sampling (default 0.95; 1 = off)\n"
            "  --min-p X               drop tokens below X * p(best) (default 0.05; 0 = off)\n"
            "  --repeat-penalty X      penalise recent tokens (default 1.0 = off)\n"
            "  --repeat-last-n N       tokens the penalty looks back over (default 64)\n"
            "  -s, --seed N            sampling seed (default: random, printed)\n"
            "  --stop TEXT             stop when TEXT is generated (repeatable, up to 8)\n"
            "  --system TEXT           system prompt (chat template)\n"
            "  --chat-template T       chatml, llama2, llama3, zephyr, mistral, gemma, or a Jinja\n"
            "                          template; default: the model's own\n"
            "  --raw                   use the prompt as is (no chat template)\n"
            "  --no-parse-special      treat control-token text in the prompt as plain text\n"
            "  --verbose               print backend and template details\n"
            "  -h, --help              this text\n",
            cmd, strcmp(cmd, "chat") ? " (with the model's chat template unless --raw)"
                                     : " (first user message; then read from stdin)",
            strcmp(cmd, "chat") ? "256" : "-1");
}

bool gen_opts_parse(gen_opts *o, int argc, char **argv, bool *help) {
    memset(o, 0, sizeof *o);
    o->n_predict = -2; /* command default */
    o->n_gpu_layers = -1;
    o->sp = chord_sampler_default_params();
    *help = false;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = NULL;
#define VAL() \
    if (!(v = arg_value(argc, argv, &i))) return false
#define IS(x) (!strcmp(a, x))
        if (IS("-h") || IS("--help")) {
            *help = true;
            return true;
        } else if (IS("-m") || IS("--model")) {
            VAL();
            o->model = v;
        } else if (IS("-p") || IS("--prompt")) {
            VAL();
            free(o->prompt);
            o->prompt = strdup(v);
        } else if (IS("-f") || IS("--file")) {
            VAL();
            free(o->prompt);
            if (!(o->prompt = read_text_file(v, NULL))) return false;
        } else if (IS("-n") || IS("--n-predict")) {
            VAL();
            if (!arg_int(a, v, -1, 1 << 24, &o->n_predict)) return false;
        } else if (IS("-c") || IS("--ctx-size")) {
            VAL();
            if (!arg_int(a, v, 0, 1 << 22, &o->n_ctx)) return false;
        } else if (IS("-t") || IS("--threads")) {
            VAL();
            if (!arg_int(a, v, 0, 1024, &o->n_threads)) return false;
        } else if (IS("-b") || IS("--batch-size")) {
            VAL();
            if (!arg_int(a, v, 1, 1 << 16, &o->n_batch)) return false;
        } else if (IS("-ngl") || IS("--n-gpu-layers") || IS("--gpu-layers")) {
            VAL();
            if (!arg_int(a, v, -1, 100000, &o->n_gpu_layers)) return false;
        } else if (IS("--temp")) {
            VAL();
            if (!arg_float(a, v, 0, 100, &o->sp.temperature)) return false;
        } else if (IS("--top-k")) {
            VAL();
            if (!arg_int(a, v, 0, 1 << 24, &o->sp.top_k)) return false;
        } else if (IS("--top-p")) {
            VAL();
            if (!arg_float(a, v, 0, 1, &o->sp.top_p)) return false;
        } else if (IS("--min-p")) {
            VAL();
            if (!arg_float(a, v, 0, 1, &o->sp.min_p)) return false;
        } else if (IS("--repeat-penalty")) {
            VAL();
            if (!arg_float(a, v, 0.01, 100, &o->sp.repeat_penalty)) return false;
        } else if (IS("--repeat-last-n")) {
            VAL();
            if (!arg_int(a, v, 0, 1 << 20, &o->sp.repeat_last_n)) return false;
        } else if (IS("-s") || IS("--seed")) {
            VAL();
            unsigned long long s;
            if (!arg_u64(a, v, &s)) return false;
            o->sp.seed = s;
        } else if (IS("--stop")) {
            VAL();
            if (o->n_stop == 8) {
                fprintf(stderr, "chord: at most 8 --stop strings\n");
                return false;
            }
            o->stop[o->n_stop++] = v;
        } else if (IS("--system")) {
            VAL();
            o->system = v;
        } else if (IS("--chat-template")) {
            VAL();
            o->chat_template = v;
        } else if (IS("--raw")) {
            o->raw = true;
        } else if (IS("--no-parse-special")) {
            o->no_special = true;
        } else if (IS("--verbose")) {
            o->verbose = true;
        } else {
            fprintf(stderr, "chord: unknown option '%s' (see --help)\n", a);
            return false;
        }
#undef VAL
#undef IS
    }
    if (!o->model) {
        fprintf(stderr, "chord: no model given (-m MODEL.gguf)\n");
        return false;
    }
    return true;
}

void gen_opts_free(gen_opts *o) { free(o->prompt); }

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

bool gen_setup(const gen_opts *o, chord_model **m, chord_context **ctx, chord_sampler **s,
               double *load_seconds) {
    double t0 = now();
    *m = load_model_cli(o->model, o->n_gpu_layers, false);
    *ctx = NULL;
    *s = NULL;
    if (!*m) return false;
    chord_error err = {0};
    chord_context_params cp = chord_context_default_params();
    cp.n_ctx = o->n_ctx;
    cp.n_threads = o->n_threads;
    cp.n_batch = o->n_batch;
    if (chord_context_new(*m, &cp, ctx, &err) != CHORD_OK ||
        chord_sampler_new(&o->sp, s, &err) != CHORD_OK) {
        fprintf(stderr, "chord: %s\n", err.message);
        return false;
    }
    *load_seconds = now() - t0;
    if (o->verbose)
        fprintf(stderr, "chord: %s on %s, context %d\n", chord_model_name(*m), chord_model_backend(*m),
                chord_context_n_ctx(*ctx));
    if (o->sp.seed == CHORD_SEED_RANDOM && o->sp.temperature > 0)
        fprintf(stderr, "chord: seed %llu\n", (unsigned long long)chord_sampler_seed(*s));
    return true;
}

void gen_print_stats(const chord_gen_stats *st, double load_seconds) {
    fprintf(stderr, "\nchord: load %.2f s | prompt %d tokens, %.1f tok/s | generation %d tokens, %.1f tok/s\n",
            load_seconds, st->n_prompt, st->prompt_seconds > 0 ? st->n_prompt / st->prompt_seconds : 0,
            st->n_gen, st->gen_seconds > 0 ? st->n_gen / st->gen_seconds : 0);
}

bool gen_print_text(const char *text, size_t len, void *user) {
    fwrite(text, 1, len, stdout);
    fflush(stdout);
    return true;
}
