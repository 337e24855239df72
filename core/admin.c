/*
 * admin.c - health, readiness, metrics and plugin generations.
 */
#include "admin.h"

#include <event2/buffer.h>
#include <event2/http.h>
#include <stdio.h>
#include <string.h>

#include "generations.h"
#include "lua_host.h"
#include "metrics.h"
#include "request.h"
#include "server.h"

static int
is_get(const struct ab_request *req)
{
    enum evhttp_cmd_type m = evhttp_request_get_command(req->evreq);

    return m == EVHTTP_REQ_GET || m == EVHTTP_REQ_HEAD;
}

static void
send_text(struct ab_request *req, int status, const char *type,
          struct evbuffer *buf)
{
    evhttp_add_header(evhttp_request_get_output_headers(req->evreq),
                      "Content-Type", type);
    ab_request_send(req, status, (const char *)evbuffer_pullup(buf, -1),
                    evbuffer_get_length(buf));
}

static void
readyz(struct ab_server *api, struct ab_request *req)
{
    char body[128];
    int n;

    if (api->gen == NULL) {
        ab_request_send_error(req, 503, "not_ready",
                              "no plugin generation is live");
        return;
    }
    n = snprintf(body, sizeof(body),
                 "{\"status\":\"ready\",\"generation\":%lu,"
                 "\"inflight\":%zu}",
                 api->gen->number, api->inflight);
    ab_request_send(req, 200, body, (size_t)n);
}

/* GET /metrics: the Prometheus text, with the gauges read now. */
static void
metrics(struct ab_server *api, struct ab_request *req)
{
    struct evbuffer *buf = evbuffer_new();

    ab_metrics_set_gauge("authkit_inflight_requests",
                         "API requests being answered.", (double)api->inflight);
    ab_metrics_set_gauge("authkit_lua_memory_bytes",
                         "Memory of the live generation's Lua state.",
                         api->gen ? (double)api->gen->mem_used : 0);
    if (buf == NULL || ab_metrics_render(buf) != 0) {
        if (buf) {
            evbuffer_free(buf);
        }
        ab_request_send_error(req, 500, "internal", "internal error");
        return;
    }
    send_text(req, 200, "text/plain; version=0.0.4; charset=utf-8", buf);
    evbuffer_free(buf);
}

/* Appends `"name":"<escaped s>"` to `buf`. */
static void
add_string(struct evbuffer *buf, const char *name, const char *s)
{
    char esc[4096];

    ab_json_escape(s, esc, sizeof(esc));
    evbuffer_add_printf(buf, "\"%s\":\"%s\"", name, esc);
}

/* GET /admin/plugins: the live generation, its files, the reloads. */
static void
plugins(struct ab_generations *g, struct ab_request *req)
{
    struct ab_generation *gen = g->api->gen;
    struct evbuffer *buf = evbuffer_new();

    if (buf == NULL || gen == NULL) {
        if (buf) {
            evbuffer_free(buf);
        }
        ab_request_send_error(req, 503, "not_ready", "no generation");
        return;
    }
    evbuffer_add_printf(buf,
                        "{\"generation\":%lu,\"live_since\":%.3f,"
                        "\"lua_memory_bytes\":%zu,\"files\":%s,"
                        "\"reloads\":{\"ok\":%lu,\"failed\":%lu},"
                        "\"last_failure\":",
                        gen->number, gen->loaded_at, gen->mem_used,
                        gen->files_json ? gen->files_json : "[]", g->reloads_ok,
                        g->reloads_failed);
    if (g->last_failure_at == 0) {
        evbuffer_add_printf(buf, "null}");
    } else {
        evbuffer_add_printf(buf, "{\"at\":%.3f,", g->last_failure_at);
        add_string(buf, "error", g->last_error);
        evbuffer_add_printf(buf, "}}");
    }
    send_text(req, 200, "application/json", buf);
    evbuffer_free(buf);
}

/* POST /admin/reload: builds a new generation now.  The error names a
 * file and line: the admin listener is the operator's, not a client's. */
static void
reload(struct ab_generations *g, struct ab_request *req)
{
    char err[2048], body[64];
    int n;

    if (ab_generations_reload(g, err, sizeof(err)) != 0) {
        ab_request_send_error(req, 422, "reload_failed", err);
        return;
    }
    n = snprintf(body, sizeof(body), "{\"generation\":%lu}",
                 g->api->gen->number);
    ab_request_send(req, 200, body, (size_t)n);
}

void
ab_admin_handle(struct ab_server *server, struct ab_request *req,
                const char *path)
{
    struct ab_generations *g = server->generations;
    int get = is_get(req);

    snprintf(req->route, sizeof(req->route), "admin");
    if (get && strcmp(path, "/healthz") == 0) {
        ab_request_send(req, 200, "{\"status\":\"ok\"}", 15);
    } else if (get && strcmp(path, "/readyz") == 0) {
        readyz(g->api, req);
    } else if (get && strcmp(path, "/metrics") == 0) {
        metrics(g->api, req);
    } else if (get && strcmp(path, "/admin/plugins") == 0) {
        plugins(g, req);
    } else if (strcmp(path, "/admin/reload") == 0 &&
               evhttp_request_get_command(req->evreq) == EVHTTP_REQ_POST) {
        reload(g, req);
    } else {
        ab_request_send_error(req, 404, "not_found", "no such route");
    }
}
