/*
 * cli.h - the command line: a subcommand and its flags, on top of the
 * settings of config.h.
 */
#ifndef AB_CLI_H
#define AB_CLI_H

#include <stdio.h>

#include "config.h"

enum ab_command {
    AB_CMD_SERVE,
    AB_CMD_SANDBOX,
    AB_CMD_CHECK,
    AB_CMD_VERSION,
    AB_CMD_HELP
};

/*
 * Parses argv into a command and a filled config: defaults, then the
 * --config file, then the flags.  Returns 0, or -1 with a one-line
 * reason in `err`.  `cfg` must be freed with ab_config_free either way.
 */
int ab_cli_parse(int argc, char **argv, enum ab_command *cmd,
                 struct ab_config *cfg, char *err, size_t errlen);

/* Prints the usage text. */
void ab_cli_usage(FILE *out);

#endif
