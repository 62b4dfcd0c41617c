/* `chord COMMAND ...`: dispatches to the sub-commands in tools/cmd_*.c. */
#include <stdio.h>
#include <string.h>

#include "commands.h"

/* Each sub-command adds its declaration and one table row here. */
int cmd_info(int argc, char **argv);
int cmd_logits(int argc, char **argv);
int cmd_run(int argc, char **argv);
int cmd_chat(int argc, char **argv);
int cmd_tokenize(int argc, char **argv);
int cmd_quantize(int argc, char **argv);
int cmd_genmodel(int argc, char **argv);
int cmd_bench(int argc, char **argv);

static const chord_command COMMANDS[] = {
    {"info", cmd_info, "show what a GGUF file holds"},
    {"run", cmd_run, "generate text from a prompt"},
    {"chat", cmd_chat, "interactive multi-turn chat"},
    {"tokenize", cmd_tokenize, "text to token ids"},
    {"logits", cmd_logits, "evaluate token ids, write float32 logits"},
    {"quantize", cmd_quantize, "convert a model's weights to another type (Q4_K_M, ...)"},
    {"genmodel", cmd_genmodel, "write a random-weight llama model at a real shape"},
    {"bench", cmd_bench, "llama-bench style speed table; --kernels for kernel GB/s"},
    {NULL, NULL, NULL},
};

static void usage(FILE *f) {
    fprintf(f, "usage: chord COMMAND [options]   (chord COMMAND --help for details)\n\n"
               "commands:\n");
    for (const chord_command *c = COMMANDS; c->name; c++)
        fprintf(f, "  %-10s %s\n", c->name, c->summary);
}

int main(int argc, char **argv) {
    if (argc < 2) {
        usage(stderr);
        return 1;
    }
    if (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h") || !strcmp(argv[1], "help")) {
        usage(stdout);
        return 0;
    }
    for (const chord_command *c = COMMANDS; c->name; c++)
        if (!strcmp(argv[1], c->name)) return c->run(argc - 1, argv + 1);
    fprintf(stderr, "chord: unknown command '%s'\n", argv[1]);
    usage(stderr);
    return 1;
}
