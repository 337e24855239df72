/*
 * config.c - the option table, defaults, flags and the Lua config file.
 */
#include "config.h"

#include <errno.h>
#include <lauxlib.h>
#include <lua.h>
#include <lualib.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define OFF(field) offsetof(struct ab_config, field)
#define NOLIM      0, 0

const struct ab_option ab_options[] = {
    {"listen", AB_OPT_STR, OFF(listen), "127.0.0.1:8080", NOLIM, 1,
     "address and port of the API listener"},
    {"admin_listen", AB_OPT_STR, OFF(admin_listen), "127.0.0.1:8081", NOLIM, 1,
     "address and port of the admin listener"},
    {"plugins", AB_OPT_STR, OFF(plugins), "plugins", NOLIM, 1,
     "directory of hook scripts"},
    {"pica_url", AB_OPT_STR, OFF(pica_url), "https://api.picaos.com", NOLIM, 1,
     "base URL of the Pica API"},
    {"workers", AB_OPT_INT, OFF(workers), "1", 1, 64, 1, "worker processes"},
    {"dev", AB_OPT_BOOL, OFF(dev), "false", NOLIM, 1,
     "embedded sandbox Pica and header identity: never in production"},
    {"latency_ms", AB_OPT_INT, OFF(latency_ms), "0", 0, 600000, 1,
     "sandbox: delay of every Pica answer"},
    {"integrations", AB_OPT_INT, OFF(integrations), "247", 0, 100000, 1,
     "sandbox: number of integrations"},
    {"fail_rate", AB_OPT_DOUBLE, OFF(fail_rate), "0", 0, 1, 1,
     "sandbox: fraction of Pica calls answered 500"},
    {"pica_header_prefix", AB_OPT_STR, OFF(pica_header_prefix), "x-pica", NOLIM,
     0, "prefix of Pica's headers (x-one for the renamed API)"},
    {"route_prefix", AB_OPT_STR, OFF(route_prefix), "/api", NOLIM, 0,
     "path prefix of the API routes"},
    {"log_level", AB_OPT_STR, OFF(log_level), "info", NOLIM, 0,
     "debug, info, warn or error"},
    {"secret_file", AB_OPT_STR, OFF(secret_file), "", NOLIM, 0,
     "file holding the Pica secret key (else PICA_SECRET_KEY)"},
    {"audit_log", AB_OPT_STR, OFF(audit_log), "", NOLIM, 0,
     "passthrough audit log: a file, \"-\" for stdout, \"\" for none"},
    {"passthrough_max_body_bytes", AB_OPT_INT, OFF(passthrough_max_body_bytes),
     "10485760", 0, 1073741824, 0,
     "largest request body a passthrough call may forward"},
    {"data_dir", AB_OPT_STR, OFF(data_dir), "data", NOLIM, 0,
     "directory for the stores' files"},
    {"store", AB_OPT_STR, OFF(store), "sqlite", NOLIM, 0,
     "where connections are stored: sqlite or postgres"},
    {"postgres_url", AB_OPT_STR, OFF(postgres_url), "", NOLIM, 0,
     "libpq connection string or URI of the postgres store"},
    {"postgres_pool_size", AB_OPT_INT, OFF(postgres_pool_size), "4", 1, 100, 0,
     "connections to postgres per worker and generation"},
    {"cors_origins", AB_OPT_LIST, OFF(cors_origins),
     "https://authkit.picaos.com", NOLIM, 0,
     "origins allowed to call the API from a browser; \"*\" for any"},
    {"cors_headers", AB_OPT_LIST, OFF(cors_headers), "", NOLIM, 0,
     "request headers allowed beyond x-user-id, authorization and "
     "content-type"},
    {"allow_header_identity", AB_OPT_BOOL, OFF(allow_header_identity), "false",
     NOLIM, 0, "trust the x-user-id header (on under --dev)"},
    {"max_body_bytes", AB_OPT_INT, OFF(max_body_bytes), "1048576", 1024,
     1073741824, 0, "largest request body"},
    {"max_header_bytes", AB_OPT_INT, OFF(max_header_bytes), "16384", 1024,
     1048576, 0, "largest request head"},
    {"request_timeout_ms", AB_OPT_INT, OFF(request_timeout_ms), "15000", 10,
     3600000, 0, "deadline of a request, waiting on I/O included"},
    {"upstream_timeout_ms", AB_OPT_INT, OFF(upstream_timeout_ms), "10000", 10,
     3600000, 0, "deadline of one try of an outbound call"},
    {"upstream_attempts", AB_OPT_INT, OFF(upstream_attempts), "3", 1, 10, 0,
     "tries of a retryable outbound call"},
    {"flags_ttl_s", AB_OPT_INT, OFF(flags_ttl_s), "300", 0, 86400, 0,
     "how long Pica's user flags are cached"},
    {"connectors_ttl_s", AB_OPT_INT, OFF(connectors_ttl_s), "300", 0, 86400, 0,
     "how long the list of connectors is cached"},
    {"pages_ttl_s", AB_OPT_INT, OFF(pages_ttl_s), "300", 0, 86400, 0,
     "how long the integration page count is remembered"},
    {"sync_interval_s", AB_OPT_INT, OFF(sync_interval_s), "0", 0, 86400, 0,
     "seconds between background syncs of active identities; 0: off"},
    {"sync_window_s", AB_OPT_INT, OFF(sync_window_s), "3600", 1, 604800, 0,
     "how long an identity counts as active for the background sync"},
    {"lua_memory_mb", AB_OPT_INT, OFF(lua_memory_mb), "256", 8, 65536, 0,
     "memory cap of one Lua state"},
    {"instruction_budget", AB_OPT_INT, OFF(instruction_budget), "10000000",
     10000, 1e12, 0, "Lua instructions one hook call may run"},
    {NULL, AB_OPT_STR, 0, NULL, NOLIM, 0, NULL},
};

const struct ab_option *
ab_config_option(const char *name)
{
    for (const struct ab_option *o = ab_options; o->name; o++) {
        if (strcmp(o->name, name) == 0) {
            return o;
        }
    }
    return NULL;
}

static void
free_list(char **list)
{
    if (list == NULL) {
        return;
    }
    for (char **p = list; *p; p++) {
        free(*p);
    }
    free(list);
}

/* Splits a comma-separated value into a NULL-terminated array of
 * trimmed, non-empty strings.  Caller frees with free_list. */
static char **
split_list(const char *value)
{
    size_t n = 1;
    char **list;
    char *copy, *tok, *save = NULL;

    for (const char *p = value; *p; p++) {
        n += *p == ',';
    }
    list = calloc(n + 1, sizeof(*list));
    copy = strdup(value);
    if (list == NULL || copy == NULL) {
        free(list);
        free(copy);
        return NULL;
    }
    n = 0;
    for (tok = strtok_r(copy, ",", &save); tok;
         tok = strtok_r(NULL, ",", &save)) {
        while (*tok == ' ') {
            tok++;
        }
        size_t len = strlen(tok);
        while (len > 0 && tok[len - 1] == ' ') {
            tok[--len] = '\0';
        }
        if (len > 0) {
            list[n++] = strdup(tok);
        }
    }
    free(copy);
    return list;
}

static int
parse_number(const char *value, double *out)
{
    char *end;

    errno = 0;
    *out = strtod(value, &end);
    return (errno != 0 || end == value || *end != '\0' || isnan(*out)) ? -1 : 0;
}

static int
parse_bool(const char *value, int *out)
{
    if (strcmp(value, "true") == 0 || strcmp(value, "1") == 0 ||
        strcmp(value, "yes") == 0 || strcmp(value, "on") == 0) {
        *out = 1;
    } else if (strcmp(value, "false") == 0 || strcmp(value, "0") == 0 ||
               strcmp(value, "no") == 0 || strcmp(value, "off") == 0) {
        *out = 0;
    } else {
        return -1;
    }
    return 0;
}

/* Stores a number into an INT or DOUBLE field after a range check. */
static int
set_number(struct ab_config *cfg, const struct ab_option *opt,
           const char *value, char *err, size_t errlen)
{
    double d;
    char *field = (char *)cfg + opt->offset;

    if (parse_number(value, &d) != 0 ||
        (opt->type == AB_OPT_INT && d != floor(d))) {
        snprintf(err, errlen, "%s must be a%s number, not '%s'", opt->name,
                 opt->type == AB_OPT_INT ? " whole" : "", value);
        return -1;
    }
    if (opt->min != opt->max && (d < opt->min || d > opt->max)) {
        snprintf(err, errlen, "%s must be between %g and %g, not %s", opt->name,
                 opt->min, opt->max, value);
        return -1;
    }
    if (opt->type == AB_OPT_DOUBLE) {
        *(double *)field = d;
    } else {
        *(long *)field = (long)d;
    }
    return 0;
}

int
ab_config_set(struct ab_config *cfg, const struct ab_option *opt,
              const char *value, char *err, size_t errlen)
{
    char *field = (char *)cfg + opt->offset;

    switch (opt->type) {
    case AB_OPT_STR: {
        char *copy = strdup(value);
        if (copy == NULL) {
            snprintf(err, errlen, "out of memory");
            return -1;
        }
        free(*(char **)field);
        *(char **)field = copy;
        return 0;
    }
    case AB_OPT_LIST: {
        char **list = split_list(value);
        if (list == NULL) {
            snprintf(err, errlen, "out of memory");
            return -1;
        }
        free_list(*(char ***)field);
        *(char ***)field = list;
        return 0;
    }
    case AB_OPT_BOOL:
        if (parse_bool(value, (int *)field) != 0) {
            snprintf(err, errlen, "%s must be true or false, not '%s'",
                     opt->name, value);
            return -1;
        }
        return 0;
    default:
        return set_number(cfg, opt, value, err, errlen);
    }
}

int
ab_config_defaults(struct ab_config *cfg)
{
    char err[256];

    memset(cfg, 0, sizeof(*cfg));
    for (const struct ab_option *o = ab_options; o->name; o++) {
        if (ab_config_set(cfg, o, o->def, err, sizeof(err)) != 0) {
            return -1;
        }
    }
    return 0;
}

void
ab_config_free(struct ab_config *cfg)
{
    for (const struct ab_option *o = ab_options; o->name; o++) {
        char *field = (char *)cfg + o->offset;
        if (o->type == AB_OPT_STR) {
            free(*(char **)field);
        } else if (o->type == AB_OPT_LIST) {
            free_list(*(char ***)field);
        }
    }
    memset(cfg, 0, sizeof(*cfg));
}

/* Turns the Lua array at the top of the stack into "a,b,c" in `buf`. */
static int
join_array(lua_State *L, const char *name, char *buf, size_t size, char *err,
           size_t errlen)
{
    size_t used = 0;
    lua_Integer n = luaL_len(L, -1);

    buf[0] = '\0';
    for (lua_Integer i = 1; i <= n; i++) {
        lua_rawgeti(L, -1, i); /* ... array item */
        const char *s = lua_tostring(L, -1);
        if (lua_type(L, -1) != LUA_TSTRING || strchr(s, ',') ||
            used + strlen(s) + 2 > size) {
            snprintf(err, errlen, "%s must be a list of strings", name);
            lua_pop(L, 1);
            return -1;
        }
        used += (size_t)snprintf(buf + used, size - used, "%s%s",
                                 i > 1 ? "," : "", s);
        lua_pop(L, 1); /* ... array */
    }
    return 0;
}

/* Applies the key/value pair at stack index -2/-1 to `cfg`. */
static int
apply_pair(lua_State *L, struct ab_config *cfg, char *err, size_t errlen)
{
    char buf[8192];
    const struct ab_option *opt;
    const char *key;

    if (lua_type(L, -2) != LUA_TSTRING) {
        snprintf(err, errlen, "config keys must be option names");
        return -1;
    }
    key = lua_tostring(L, -2);
    opt = ab_config_option(key);
    if (opt == NULL) {
        snprintf(err, errlen, "unknown setting '%s'", key);
        return -1;
    }
    switch (lua_type(L, -1)) {
    case LUA_TBOOLEAN:
        snprintf(buf, sizeof(buf), "%s",
                 lua_toboolean(L, -1) ? "true" : "false");
        break;
    case LUA_TNUMBER:
    case LUA_TSTRING:
        snprintf(buf, sizeof(buf), "%s", lua_tostring(L, -1));
        break;
    case LUA_TTABLE:
        if (opt->type != AB_OPT_LIST ||
            join_array(L, key, buf, sizeof(buf), err, errlen) != 0) {
            if (opt->type != AB_OPT_LIST) {
                snprintf(err, errlen, "%s must not be a table", key);
            }
            return -1;
        }
        break;
    default:
        snprintf(err, errlen, "%s has a value of the wrong type", key);
        return -1;
    }
    if (opt->type == AB_OPT_BOOL && lua_type(L, -1) != LUA_TBOOLEAN) {
        snprintf(err, errlen, "%s must be true or false", key);
        return -1;
    }
    return ab_config_set(cfg, opt, buf, err, errlen);
}

int
ab_config_load_file(struct ab_config *cfg, const char *path, char *err,
                    size_t errlen)
{
    lua_State *L = luaL_newstate();
    int rc = -1;

    if (L == NULL) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    luaL_openlibs(L);
    if (luaL_loadfilex(L, path, "t") != LUA_OK || /* chunk */
        lua_pcall(L, 0, 1, 0) != LUA_OK) {        /* result */
        snprintf(err, errlen, "%s", lua_tostring(L, -1));
        goto out;
    }
    if (!lua_istable(L, -1)) {
        snprintf(err, errlen, "%s must return a table of settings", path);
        goto out;
    }
    lua_pushnil(L);                /* table nil */
    while (lua_next(L, -2) != 0) { /* table key value */
        if (apply_pair(L, cfg, err, errlen) != 0) {
            goto out;
        }
        lua_pop(L, 1); /* table key */
    }
    rc = 0;
out:
    lua_close(L);
    return rc;
}

int
ab_config_validate(const struct ab_config *cfg, char *err, size_t errlen)
{
    size_t plen = strlen(cfg->pica_url);

    if (strncmp(cfg->pica_url, "http://", 7) != 0 &&
        strncmp(cfg->pica_url, "https://", 8) != 0) {
        snprintf(err, errlen,
                 "pica_url must start with http:// or "
                 "https://, not '%s'",
                 cfg->pica_url);
        return -1;
    }
    if (plen > 0 && cfg->pica_url[plen - 1] == '/') {
        snprintf(err, errlen, "pica_url must not end with '/'");
        return -1;
    }
    if (strcmp(cfg->store, "sqlite") != 0 &&
        strcmp(cfg->store, "postgres") != 0) {
        snprintf(err, errlen, "store must be sqlite or postgres, not '%s'",
                 cfg->store);
        return -1;
    }
    if (strcmp(cfg->store, "postgres") == 0 && cfg->postgres_url[0] == '\0') {
        snprintf(err, errlen, "store \"postgres\" needs postgres_url");
        return -1;
    }
    if (cfg->route_prefix[0] != '/' ||
        cfg->route_prefix[strlen(cfg->route_prefix) - 1] == '/') {
        snprintf(err, errlen,
                 "route_prefix must start with '/' and not "
                 "end with one, like \"/api\"");
        return -1;
    }
    return 0;
}
