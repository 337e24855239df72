/*
 * main.c - the authkit-broker command: serve, sandbox, check.
 */
#include <curl/curl.h>
#include <errno.h>
#include <event2/event.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "audit.h"
#include "cli.h"
#include "config.h"
#include "generations.h"
#include "http_client.h"
#include "log.h"
#include "lua_host.h"
#include "request.h"
#include "server.h"
#include "workers.h"

/* How long a stopping broker waits for requests in flight. */
#define DRAIN_MS 10000

/* The secret the embedded sandbox accepts under --dev. */
#define DEV_SECRET "sk_test_1_dev-sandbox-only"

struct broker {
    struct ab_config cfg;
    struct event_base *base;
    struct ab_http_client *http;
    struct ab_host host;
    struct ab_server *api, *admin, *sandbox;
    struct event *sig_term, *sig_int, *sig_hup, *drain;
    char *secret;
    struct ab_generations gens; /* of the API server */
    unsigned long sandbox_generations;
    double drain_started;
};

static int
fatal(const char *fmt, const char *a, const char *b)
{
    fprintf(stderr, "authkit-broker: ");
    fprintf(stderr, fmt, a, b);
    fputc('\n', stderr);
    return 2;
}

static const char *
lua_dir(void)
{
    const char *d = getenv("AUTHKIT_BROKER_LUA_DIR");

    return d && *d ? d : AB_LUA_DIR;
}

/* Reads the Pica secret from PICA_SECRET_KEY or the secret file. */
static char *
read_secret(const struct ab_config *cfg)
{
    char buf[512];
    const char *env = getenv("PICA_SECRET_KEY");
    FILE *f;
    size_t n;

    if (cfg->secret_file[0] == '\0') {
        return env && *env ? strdup(env) : NULL;
    }
    f = fopen(cfg->secret_file, "r");
    if (f == NULL) {
        return NULL;
    }
    n = fread(buf, 1, sizeof(buf) - 1, f);
    fclose(f);
    while (n > 0 &&
           (buf[n - 1] == '\n' || buf[n - 1] == '\r' || buf[n - 1] == ' ')) {
        n--;
    }
    buf[n] = '\0';
    return n ? strdup(buf) : NULL;
}

/* Called by libevent every 50 ms while stopping: exits once nothing is
 * in flight or the drain time is over. */
static void
on_drain_tick(evutil_socket_t fd, short what, void *arg)
{
    struct broker *b = arg;
    size_t inflight = (b->api ? b->api->inflight : 0) +
                      (b->sandbox ? b->sandbox->inflight : 0);

    if (inflight == 0 || ab_now_ms() - b->drain_started > DRAIN_MS) {
        if (inflight) {
            AB_WARN("main", NULL, "stopping with %zu requests unfinished",
                    inflight);
        }
        event_base_loopexit(b->base, NULL);
    }
}

/* Called by libevent on SIGTERM or SIGINT: stop accepting, finish what
 * is in flight, exit. */
static void
on_stop_signal(evutil_socket_t sig, short what, void *arg)
{
    struct broker *b = arg;
    struct timeval tick = {0, 50000};

    if (b->drain) {
        return;
    }
    AB_INFO("main", NULL, "stopping on signal %d", (int)sig);
    if (b->api) {
        ab_server_stop_accepting(b->api);
    }
    if (b->admin) {
        ab_server_stop_accepting(b->admin);
    }
    b->drain_started = ab_now_ms();
    b->drain = event_new(b->base, -1, EV_PERSIST, on_drain_tick, b);
    event_add(b->drain, &tick);
}

/* Called by libevent on SIGHUP. */
static void
on_hup(evutil_socket_t sig, short what, void *arg)
{
    struct broker *b = arg;
    char err[2048];

    if (b->api) {
        ab_generations_reload(&b->gens, err, sizeof(err));
    }
}

static int
setup_signals(struct broker *b)
{
    signal(SIGPIPE, SIG_IGN);
    b->sig_term = evsignal_new(b->base, SIGTERM, on_stop_signal, b);
    b->sig_int = evsignal_new(b->base, SIGINT, on_stop_signal, b);
    b->sig_hup = evsignal_new(b->base, SIGHUP, on_hup, b);
    if (!b->sig_term || !b->sig_int || !b->sig_hup) {
        return -1;
    }
    evsignal_add(b->sig_term, NULL);
    evsignal_add(b->sig_int, NULL);
    evsignal_add(b->sig_hup, NULL);
    return 0;
}

static int
open_loop(struct broker *b)
{
    enum ab_log_level level;

    if (ab_log_parse_level(b->cfg.log_level, &level) != 0) {
        return fatal("log_level must be debug, info, warn or error, not "
                     "'%s'%s",
                     b->cfg.log_level, "");
    }
    ab_log_threshold = level;
    curl_global_init(CURL_GLOBAL_DEFAULT);
    b->base = event_base_new();
    b->http = b->base ? ab_http_client_new(b->base) : NULL;
    if (b->http == NULL || setup_signals(b) != 0) {
        return fatal("failed to set up the event loop%s%s", "", "");
    }
    b->host.base = b->base;
    b->host.http = b->http;
    b->host.cfg = &b->cfg;
    b->host.lua_dir = lua_dir();
    return 0;
}

/* Starts a listener running generation `module` (NULL: admin). */
static struct ab_server *
start_server(struct broker *b, enum ab_server_kind kind, const char *listen,
             const char *module)
{
    char err[1024];
    struct ab_server *s = ab_server_new(kind, b->base, &b->cfg, listen,
                                        b->cfg.workers > 1, err, sizeof(err));

    if (s == NULL) {
        fatal("%s%s", err, "");
        return NULL;
    }
    if (module) {
        s->gen = ab_generation_load(&b->host, module, ++b->sandbox_generations,
                                    err, sizeof(err));
        if (s->gen == NULL) {
            fatal("failed to load %s: %s", module, err);
            ab_server_free(s);
            return NULL;
        }
    }
    return s;
}

/* The API server with its first plugin generation (watched for
 * changes), and the admin server that reports on it. */
static int
start_api(struct broker *b)
{
    char err[2048];

    b->api = start_server(b, AB_SERVER_API, b->cfg.listen, NULL);
    if (b->api == NULL) {
        return -1;
    }
    if (ab_generations_start(&b->gens, &b->host, b->api, 1, err, sizeof(err)) !=
        0) {
        fatal("failed to load the plugins: %s%s", err, "");
        return -1;
    }
    b->admin = start_server(b, AB_SERVER_ADMIN, b->cfg.admin_listen, NULL);
    if (b->admin == NULL) {
        return -1;
    }
    b->admin->generations = &b->gens;
    return 0;
}

/* Adds `origin` to cfg->cors_origins.  0, or -1 with `err`. */
static int
allow_origin(struct ab_config *cfg, const char *origin, char *err,
             size_t errlen)
{
    size_t len = strlen(origin) + 1;
    char *joined;
    int rc;

    for (char **o = cfg->cors_origins; o && *o; o++) {
        len += strlen(*o) + 1;
    }
    joined = malloc(len);
    if (joined == NULL) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    joined[0] = '\0';
    for (char **o = cfg->cors_origins; o && *o; o++) {
        strcat(joined, *o);
        strcat(joined, ",");
    }
    strcat(joined, origin);
    rc = ab_config_set(cfg, ab_config_option("cors_origins"), joined, err,
                       errlen);
    free(joined);
    return rc;
}

/* --dev: the sandbox Pica inside this process, on a free loopback port. */
static int
start_dev_sandbox(struct broker *b)
{
    char url[128], err[256];

    b->sandbox =
        start_server(b, AB_SERVER_SANDBOX, "127.0.0.1:0", "sandbox.app");
    if (b->sandbox == NULL) {
        return -1;
    }
    snprintf(url, sizeof(url), "http://%s", b->sandbox->address);
    ab_config_set(&b->cfg, ab_config_option("pica_url"), url, err, sizeof(err));
    /* The sandbox's widget page (origin `url`) calls the token endpoint
     * from the browser: allow its origin beside the configured ones. */
    if (allow_origin(&b->cfg, url, err, sizeof(err)) != 0) {
        fatal("%s%s", err, "");
        return -1;
    }
    if (b->secret == NULL) {
        b->secret = strdup(DEV_SECRET);
    }
    return 0;
}

static void
announce(const struct broker *b)
{
    if (b->cfg.dev) {
        AB_WARN("main", NULL,
                "DEVELOPMENT MODE: embedded sandbox Pica, "
                "x-user-id header trusted as identity; never use --dev in "
                "production");
        AB_INFO("main", NULL, "sandbox Pica on http://%s", b->sandbox->address);
    }
    AB_INFO("main", NULL,
            "listening on http://%s (api, token endpoint "
            "%s/authkit/token)",
            b->api->address, b->cfg.route_prefix);
    AB_INFO("main", NULL, "listening on http://%s (admin)", b->admin->address);
    if (b->cfg.dev) {
        AB_INFO("main", NULL, "demo page: open http://%s/ in a browser",
                b->api->address);
    }
}

static int
check_plugins_dir(const char *dir)
{
    struct stat st;

    if (stat(dir, &st) != 0 || !S_ISDIR(st.st_mode) ||
        access(dir, R_OK | X_OK) != 0) {
        return fatal("cannot read the plugins directory '%s' (%s); pass "
                     "--plugins DIR",
                     dir, strerror(errno ? errno : ENOTDIR));
    }
    return 0;
}

static void cleanup(struct broker *b);

/* Checks what every serving process needs before any starts. */
static int
serve_checks(struct broker *b)
{
    if (check_plugins_dir(b->cfg.plugins) != 0) {
        return 2;
    }
    b->secret = read_secret(&b->cfg);
    if (b->secret == NULL && !b->cfg.dev) {
        return fatal("no Pica secret key: set PICA_SECRET_KEY (or "
                     "secret_file in the config), or use --dev to try the "
                     "broker without a Pica account%s%s",
                     "", "");
    }
    if (b->cfg.dev && b->cfg.workers > 1) {
        return fatal("--dev runs in one process: leave out --workers%s%s", "",
                     "");
    }
    return 0;
}

/* One serving process: its loop, listeners and plugin generations.
 * Returns the exit status. */
static int
serve_one(struct broker *b)
{
    char err[512];

    if (open_loop(b) != 0 || (b->cfg.dev && start_dev_sandbox(b) != 0)) {
        return 2;
    }
    b->host.secret = b->secret;
    b->host.pica_url = b->cfg.pica_url;
    if (ab_audit_open(b->cfg.audit_log, err, sizeof(err)) != 0) {
        return fatal("%s%s", err, "");
    }
    if (start_api(b) != 0) {
        return 2;
    }
    announce(b);
    event_base_dispatch(b->base);
    return 0;
}

/* Called in each forked worker. */
static int
run_worker(void *arg, int index)
{
    struct broker *b = arg;
    int rc = serve_one(b);

    cleanup(b);
    return rc;
}

/* Pins the listen addresses to real ports for the workers to share. */
static int
reserve_ports(struct broker *b)
{
    char addr[128], err[512];
    const char *names[] = {"listen", "admin_listen"};
    char *values[] = {b->cfg.listen, b->cfg.admin_listen};

    for (int i = 0; i < 2; i++) {
        if (ab_workers_reserve(values[i], addr, sizeof(addr), err,
                               sizeof(err)) < 0) {
            return fatal("%s%s", err, "");
        }
        ab_config_set(&b->cfg, ab_config_option(names[i]), addr, err,
                      sizeof(err));
    }
    return 0;
}

static int
serve(struct broker *b)
{
    int rc = serve_checks(b);

    if (rc != 0) {
        return rc;
    }
    if (b->cfg.workers <= 1) {
        return serve_one(b);
    }
    if (reserve_ports(b) != 0) {
        return 2;
    }
    return ab_workers_run((int)b->cfg.workers, run_worker, b);
}

static int
sandbox(struct broker *b)
{
    if (open_loop(b) != 0) {
        return 2;
    }
    b->sandbox =
        start_server(b, AB_SERVER_SANDBOX, b->cfg.listen, "sandbox.app");
    if (b->sandbox == NULL) {
        return 2;
    }
    AB_INFO("main", NULL,
            "sandbox Pica listening on http://%s (%ld "
            "integrations, latency %ld ms, fail rate %g)",
            b->sandbox->address, b->cfg.integrations, b->cfg.latency_ms,
            b->cfg.fail_rate);
    event_base_dispatch(b->base);
    return 0;
}

/* `check`: loads the plugins as a new generation would, selftests
 * included, and says what failed. */
static int
check(struct broker *b)
{
    char err[4096];
    struct ab_generation *gen;

    if (check_plugins_dir(b->cfg.plugins) != 0 || open_loop(b) != 0) {
        return 2;
    }
    b->host.pica_url = b->cfg.pica_url;
    gen = ab_generation_load(&b->host, "broker.app", 1, err, sizeof(err));
    if (gen == NULL) {
        fprintf(stderr, "FAIL %s\n", err);
        return 1;
    }
    printf("ok: the plugins in %s load and pass their selftests\n",
           b->cfg.plugins);
    ab_generation_release(gen);
    return 0;
}

static void
cleanup(struct broker *b)
{
    ab_generations_stop(&b->gens);
    ab_audit_close();
    ab_server_free(b->api);
    ab_server_free(b->admin);
    ab_server_free(b->sandbox);
    if (b->http) {
        ab_http_client_free(b->http);
    }
    if (b->drain) {
        event_free(b->drain);
    }
    if (b->sig_term) {
        event_free(b->sig_term);
        event_free(b->sig_int);
        event_free(b->sig_hup);
    }
    if (b->base) {
        event_base_free(b->base);
        curl_global_cleanup();
    }
    free(b->secret);
    ab_config_free(&b->cfg);
}

int
main(int argc, char **argv)
{
    struct broker b;
    enum ab_command cmd;
    char err[1024];
    int rc;

    memset(&b, 0, sizeof(b));
    if (ab_cli_parse(argc, argv, &cmd, &b.cfg, err, sizeof(err)) != 0) {
        ab_config_free(&b.cfg);
        return fatal("%s%s", err, "");
    }
    switch (cmd) {
    case AB_CMD_HELP:
        ab_cli_usage(stdout);
        rc = 0;
        break;
    case AB_CMD_VERSION:
        printf("authkit-broker %s\n", AB_VERSION);
        rc = 0;
        break;
    case AB_CMD_SANDBOX:
        rc = sandbox(&b);
        break;
    case AB_CMD_CHECK:
        rc = check(&b);
        break;
    default:
        rc = serve(&b);
        break;
    }
    cleanup(&b);
    return rc;
}
