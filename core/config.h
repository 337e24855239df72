/*
 * config.h - every setting of the broker, from defaults, a Lua config
 * file and command-line flags, in that order of precedence (flags win).
 *
 * One table of option descriptors drives the defaults, the config file,
 * the flags and the copy handed to the Lua runtime, so a new setting is
 * one line in config.c.
 */
#ifndef AB_CONFIG_H
#define AB_CONFIG_H

#include <stddef.h>

struct ab_config {
    char *listen;
    char *admin_listen;
    char *plugins;
    char *pica_url;
    char *pica_header_prefix;
    char *route_prefix;
    char *log_level;
    char *secret_file;
    char *data_dir;
    char *store;
    char *postgres_url;
    char *audit_log;
    char **cors_origins; /* NULL-terminated */
    char **cors_headers; /* extra allowed request headers */
    long workers;
    int dev;
    int allow_header_identity;
    long max_body_bytes;
    long passthrough_max_body_bytes;
    long max_header_bytes;
    long request_timeout_ms;
    long upstream_timeout_ms;
    long upstream_attempts;
    long flags_ttl_s;
    long pages_ttl_s;
    long connectors_ttl_s;
    long sync_interval_s;
    long sync_window_s;
    long lua_memory_mb;
    long instruction_budget;
    long postgres_pool_size;
    /* sandbox */
    long latency_ms;
    long integrations;
    double fail_rate;
};

enum ab_opt_type {
    AB_OPT_STR,
    AB_OPT_LIST,
    AB_OPT_INT,
    AB_OPT_BOOL,
    AB_OPT_DOUBLE
};

/* Describes one setting.  `flag` is non-zero when it may be given on
 * the command line (as --name with '_' written '-'). */
struct ab_option {
    const char *name;
    enum ab_opt_type type;
    size_t offset;
    const char *def;
    double min, max;
    int flag;
    const char *help;
};

extern const struct ab_option ab_options[];

/* Fills `cfg` with the defaults.  Returns 0, or -1 on out of memory. */
int ab_config_defaults(struct ab_config *cfg);

/* Frees every string the config owns. */
void ab_config_free(struct ab_config *cfg);

/* Looks an option up by its name ("pica_url"); NULL if unknown. */
const struct ab_option *ab_config_option(const char *name);

/*
 * Sets one option from text (a flag's value).  Returns 0, or -1 with a
 * one-line explanation in `err` (which the caller provides).
 */
int ab_config_set(struct ab_config *cfg, const struct ab_option *opt,
                  const char *value, char *err, size_t errlen);

/*
 * Loads a Lua config file that returns a table keyed by option names.
 * Unknown keys and values of the wrong type are errors.  Returns 0, or
 * -1 with the reason in `err`.
 */
int ab_config_load_file(struct ab_config *cfg, const char *path, char *err,
                        size_t errlen);

/* Checks settings that depend on each other; 0 or -1 with `err`. */
int ab_config_validate(const struct ab_config *cfg, char *err, size_t errlen);

#endif
