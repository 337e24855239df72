/*
 * generations.c - reloading the plugins without dropping a request.
 */
#include "generations.h"

#include <stdio.h>
#include <string.h>
#include <sys/time.h>

#include "config.h"
#include "log.h"
#include "lua_host.h"
#include "metrics.h"
#include "server.h"
#include "watcher.h"

/* Wait after the last change in the plugins directory before a reload,
 * so that an editor's write-and-rename is one change. */
#define DEBOUNCE_MS 30

static double
epoch_now(void)
{
    struct timeval tv;

    gettimeofday(&tv, NULL);
    return (double)tv.tv_sec + (double)tv.tv_usec / 1e6;
}

/* Records a failed reload for /admin/plugins and /metrics. */
static void
note_failure(struct ab_generations *g, const char *err)
{
    g->reloads_failed++;
    g->last_failure_at = epoch_now();
    snprintf(g->last_error, sizeof(g->last_error), "%s", err);
    ab_metrics_reload(0);
}

int
ab_generations_reload(struct ab_generations *g, char *err, size_t errlen)
{
    struct ab_generation *gen = ab_generation_load(
        g->host, "broker.app", g->last_number + 1, err, errlen);

    g->last_number++;
    if (gen == NULL) {
        note_failure(g, err);
        AB_ERROR("reload", NULL,
                 "failed to load generation %lu, generation %lu keeps "
                 "serving: %s",
                 g->last_number, g->api->gen->number, err);
        return -1;
    }

    /* Requests running on the old generation hold their own reference;
     * it is freed when the last of them ends. */
    ab_generation_release(g->api->gen);
    g->api->gen = gen;
    g->reloads_ok++;
    ab_metrics_reload(1);
    ab_metrics_set_generation(gen->number, gen->loaded_at);
    AB_INFO("reload", NULL, "generation %lu is live", gen->number);
    return 0;
}

/* Called by the watcher once the plugins directory settled. */
static void
on_plugins_changed(void *arg)
{
    char err[2048];

    ab_generations_reload(arg, err, sizeof(err));
}

int
ab_generations_start(struct ab_generations *g, struct ab_host *host,
                     struct ab_server *api, int watch, char *err, size_t errlen)
{
    memset(g, 0, sizeof(*g));
    g->host = host;
    g->api = api;
    g->last_number = 1;
    api->gen = ab_generation_load(host, "broker.app", 1, err, errlen);
    if (api->gen == NULL) {
        return -1;
    }
    ab_metrics_set_generation(1, api->gen->loaded_at);
    if (watch) {
        /* Without inotify the broker still reloads on SIGHUP and POST
         * /admin/reload; the watcher logs why it could not start. */
        g->watcher = ab_watcher_new(host->base, host->cfg->plugins, DEBOUNCE_MS,
                                    on_plugins_changed, g);
    }
    return 0;
}

void
ab_generations_stop(struct ab_generations *g)
{
    if (g->watcher) {
        ab_watcher_free(g->watcher);
        g->watcher = NULL;
    }
}
