/* One function per `chord` sub-command, each in tools/cmd_NAME.c.
 * argv[0] is the sub-command name. Returns the process exit status. */
#ifndef CHORD_TOOLS_COMMANDS_H
#define CHORD_TOOLS_COMMANDS_H

typedef struct chord_command {
    const char *name;
    int (*run)(int argc, char **argv);
    const char *summary;
} chord_command;

#endif
