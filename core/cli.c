/*
 * cli.c - subcommands and flags.
 */
#include "cli.h"

#include <string.h>

/* Which flags each subcommand takes, by option name. */
static const char *const serve_flags[] = {
    "listen", "admin_listen", "plugins", "pica_url", "workers", "dev", NULL};
static const char *const sandbox_flags[] = {"listen", "latency_ms",
                                            "integrations", "fail_rate", NULL};
static const char *const check_flags[] = {"plugins", NULL};

static const char *const *
flags_of(enum ab_command cmd)
{
    switch (cmd) {
    case AB_CMD_SERVE:
        return serve_flags;
    case AB_CMD_SANDBOX:
        return sandbox_flags;
    case AB_CMD_CHECK:
        return check_flags;
    default:
        return NULL;
    }
}

/* Turns "--pica-url" into "pica_url" in `out`; -1 if not a long flag. */
static int
flag_to_name(const char *arg, char *out, size_t size)
{
    size_t i;

    if (strncmp(arg, "--", 2) != 0 || arg[2] == '\0') {
        return -1;
    }
    for (i = 0; arg[i + 2] != '\0' && arg[i + 2] != '=' && i + 1 < size; i++) {
        out[i] = arg[i + 2] == '-' ? '_' : arg[i + 2];
    }
    out[i] = '\0';
    return 0;
}

static const struct ab_option *
find_flag(enum ab_command cmd, const char *name)
{
    const char *const *names = flags_of(cmd);

    for (; names && *names; names++) {
        if (strcmp(*names, name) == 0) {
            return ab_config_option(name);
        }
    }
    return NULL;
}

static enum ab_command
parse_command(int argc, char **argv, int *first)
{
    *first = 2;
    if (argc > 1 && strcmp(argv[1], "serve") == 0) {
        return AB_CMD_SERVE;
    }
    if (argc > 1 && strcmp(argv[1], "sandbox") == 0) {
        return AB_CMD_SANDBOX;
    }
    if (argc > 1 && strcmp(argv[1], "check") == 0) {
        return AB_CMD_CHECK;
    }
    *first = 1;
    return AB_CMD_SERVE;
}

/* Finds --config FILE (or --config=FILE) and loads it. */
static int
load_config_flag(int argc, char **argv, int first, struct ab_config *cfg,
                 char *err, size_t errlen)
{
    for (int i = first; i < argc; i++) {
        const char *path = NULL;
        if (strcmp(argv[i], "--config") == 0 && i + 1 < argc) {
            path = argv[i + 1];
        } else if (strncmp(argv[i], "--config=", 9) == 0) {
            path = argv[i] + 9;
        }
        if (path) {
            return ab_config_load_file(cfg, path, err, errlen);
        }
    }
    return 0;
}

/* Applies argv[*i] (and maybe its value in argv[*i + 1]) to `cfg`. */
static int
apply_flag(enum ab_command cmd, int argc, char **argv, int *i,
           struct ab_config *cfg, char *err, size_t errlen)
{
    char name[64];
    const char *arg = argv[*i], *eq = strchr(arg, '='), *value;
    const struct ab_option *opt;

    if (flag_to_name(arg, name, sizeof(name)) != 0) {
        snprintf(err, errlen, "unexpected argument '%s' (see --help)", arg);
        return -1;
    }
    if (strcmp(name, "config") == 0 && cmd != AB_CMD_SANDBOX) {
        *i += eq ? 0 : 1;
        return 0;
    }
    opt = find_flag(cmd, name);
    if (opt == NULL) {
        snprintf(err, errlen, "unknown flag '%.*s' (see --help)",
                 (int)(eq ? eq - arg : (long)strlen(arg)), arg);
        return -1;
    }
    if (eq) {
        value = eq + 1;
    } else if (opt->type == AB_OPT_BOOL) {
        value = "true";
    } else if (*i + 1 < argc) {
        value = argv[++*i];
    } else {
        snprintf(err, errlen, "flag '%s' needs a value", arg);
        return -1;
    }
    return ab_config_set(cfg, opt, value, err, errlen);
}

int
ab_cli_parse(int argc, char **argv, enum ab_command *cmd, struct ab_config *cfg,
             char *err, size_t errlen)
{
    int first;

    if (ab_config_defaults(cfg) != 0) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            *cmd = AB_CMD_HELP;
            return 0;
        }
        if (strcmp(argv[i], "--version") == 0) {
            *cmd = AB_CMD_VERSION;
            return 0;
        }
    }
    *cmd = parse_command(argc, argv, &first);
    if (*cmd == AB_CMD_SANDBOX) {
        ab_config_set(cfg, ab_config_option("listen"), "127.0.0.1:8090", err,
                      errlen);
    }
    if (*cmd != AB_CMD_SANDBOX &&
        load_config_flag(argc, argv, first, cfg, err, errlen) != 0) {
        return -1;
    }
    for (int i = first; i < argc; i++) {
        if (apply_flag(*cmd, argc, argv, &i, cfg, err, errlen) != 0) {
            return -1;
        }
    }
    return ab_config_validate(cfg, err, errlen);
}

void
ab_cli_usage(FILE *out)
{
    fputs("usage:\n"
          "  authkit-broker [serve] [--config FILE] [--listen ADDR:PORT]\n"
          "                 [--plugins DIR] [--pica-url URL] [--workers N]\n"
          "                 [--admin-listen ADDR:PORT] [--dev]\n"
          "  authkit-broker sandbox [--listen ADDR:PORT] [--latency-ms N]\n"
          "                 [--integrations N] [--fail-rate P]\n"
          "  authkit-broker check [--config FILE] [--plugins DIR]\n"
          "  authkit-broker --version | --help\n"
          "\n"
          "The Pica secret key comes from PICA_SECRET_KEY or the config's\n"
          "secret_file, never from a flag.  Settings of a --config file:\n",
          out);
    for (const struct ab_option *o = ab_options; o->name; o++) {
        fprintf(out, "  %-22s %s (default \"%s\")\n", o->name, o->help, o->def);
    }
}
