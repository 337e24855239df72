/*
 * request.c - the life of one request: id, deadline, client watch, reply.
 */
#include "request.h"

#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/http.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "config.h"
#include "crypto.h"
#include "log.h"
#include "lua_host.h"
#include "metrics.h"
#include "server.h"

double
ab_now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

const char *
ab_method_name(enum evhttp_cmd_type cmd)
{
    switch (cmd) {
    case EVHTTP_REQ_GET:
        return "GET";
    case EVHTTP_REQ_POST:
        return "POST";
    case EVHTTP_REQ_HEAD:
        return "HEAD";
    case EVHTTP_REQ_PUT:
        return "PUT";
    case EVHTTP_REQ_DELETE:
        return "DELETE";
    case EVHTTP_REQ_OPTIONS:
        return "OPTIONS";
    case EVHTTP_REQ_TRACE:
        return "TRACE";
    case EVHTTP_REQ_CONNECT:
        return "CONNECT";
    case EVHTTP_REQ_PATCH:
        return "PATCH";
    default:
        return "UNKNOWN";
    }
}

/* A process-wide random prefix and a counter: unique, cheap ids. */
static void
make_id(char *out, size_t size)
{
    static unsigned prefix;
    static unsigned long counter;
    unsigned char rnd[4];

    if (prefix == 0) {
        if (ab_random_bytes(rnd, sizeof(rnd)) != 0) {
            memset(rnd, 0x5a, sizeof(rnd));
        }
        memcpy(&prefix, rnd, sizeof(prefix));
        prefix |= 1;
    }
    snprintf(out, size, "%08x%08lx", prefix, ++counter & 0xffffffffUL);
}

/* Called by libevent when the request's deadline passes. */
static void
on_deadline(evutil_socket_t fd, short what, void *arg)
{
    struct ab_request *req = arg;

    AB_WARN("http", req->id, "request exceeded its deadline of %ld ms",
            req->server->cfg->request_timeout_ms);
    ab_request_send_error(req, 504, "deadline_exceeded",
                          "the request took too long");
}

/* Called by libevent when the client's connection closes before we
 * answered.  A request libevent has detached from the dying connection
 * (the client hung up) is ours to free; one still attached (the server
 * is being freed) libevent frees itself right after. */
static void
on_client_close(struct evhttp_connection *conn, void *arg)
{
    struct ab_request *req = arg;

    AB_INFO("http", req->id, "client went away before the answer");
    if (evhttp_request_get_connection(req->evreq) == NULL) {
        evhttp_request_free(req->evreq);
    }
    req->evreq = NULL;
    if (req->on_client_gone == NULL || req->on_client_gone(req) != 1) {
        ab_request_free(req);
    }
}

/* Allocates a request with its id and armed deadline; NULL on out of
 * memory. */
static struct ab_request *
request_alloc(struct ab_server *server)
{
    struct ab_request *req = calloc(1, sizeof(*req));
    long ms = server->cfg->request_timeout_ms;
    struct timeval tv = {ms / 1000, (ms % 1000) * 1000};

    if (req == NULL) {
        return NULL;
    }
    req->deadline = evtimer_new(server->base, on_deadline, req);
    if (req->deadline == NULL) {
        free(req);
        return NULL;
    }
    make_id(req->id, sizeof(req->id));
    req->server = server;
    req->started_ms = ab_now_ms();
    req->co_ref = -1;
    snprintf(req->route, sizeof(req->route), "unmatched");
    evtimer_add(req->deadline, &tv);
    return req;
}

struct ab_request *
ab_request_new(struct ab_server *server, struct evhttp_request *evreq)
{
    struct ab_request *req = request_alloc(server);

    if (req == NULL) {
        return NULL;
    }
    req->evreq = evreq;
    evhttp_connection_set_closecb(evhttp_request_get_connection(evreq),
                                  on_client_close, req);
    server->inflight++;
    return req;
}

struct ab_request *
ab_request_new_job(struct ab_server *server)
{
    struct ab_request *req = request_alloc(server);

    if (req == NULL) {
        return NULL;
    }
    req->job = 1;
    snprintf(req->route, sizeof(req->route), "tick");
    server->job_running = 1;
    return req;
}

void
ab_request_free(struct ab_request *req)
{
    if (req->evreq) {
        evhttp_connection_set_closecb(evhttp_request_get_connection(req->evreq),
                                      NULL, NULL);
    }
    ab_host_release(req);
    event_free(req->deadline);
    if (req->job) {
        req->server->job_running = 0;
    } else {
        req->server->inflight--;
    }
    free(req->identity);
    free(req);
}

/* One access-log line per answered request. */
static void
log_access(const struct ab_request *req, int status)
{
    const char *uri = evhttp_request_get_uri(req->evreq);
    const char *q = strchr(uri, '?');
    int len = q ? (int)(q - uri) : (int)strlen(uri);

    AB_INFO("access", req->id, "%s %.*s %d %.1fms%s%s",
            ab_method_name(evhttp_request_get_command(req->evreq)),
            len > 200 ? 200 : len, uri, status, ab_now_ms() - req->started_ms,
            req->identity ? " identity=" : "",
            req->identity ? req->identity : "");
}

void
ab_request_send(struct ab_request *req, int status, const char *body,
                size_t len)
{
    struct evhttp_request *evreq = req->evreq;
    struct evkeyvalq *out;
    struct evbuffer *buf;

    if (req->streamed) {
        /* Answered as a stream already: log what went out. */
        status = req->stream_status;
        if (evreq) {
            log_access(req, status);
        }
        ab_metrics_request(req->route, status, ab_now_ms() - req->started_ms);
        ab_request_free(req);
        return;
    }
    if (evreq == NULL) {
        ab_request_free(req); /* nobody to answer */
        return;
    }
    out = evhttp_request_get_output_headers(evreq);
    evhttp_add_header(out, "X-Request-Id", req->id);
    if (evhttp_find_header(out, "Content-Type") == NULL) {
        evhttp_add_header(out, "Content-Type", "application/json");
    }
    log_access(req, status);
    ab_metrics_request(req->route, status, ab_now_ms() - req->started_ms);
    req->server->served++;

    /* Copy the body before the request (and the Lua string the body
     * may point into) is freed. */
    buf = evbuffer_new();
    if (buf && body && len > 0) {
        evbuffer_add(buf, body, len);
    }
    ab_request_free(req); /* detaches the close callback first */
    evhttp_send_reply(evreq, status, NULL, buf);
    if (buf) {
        evbuffer_free(buf);
    }
}

size_t
ab_json_escape(const char *s, char *out, size_t size)
{
    size_t o = 0;

    for (; *s && o + 7 < size; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\') {
            out[o++] = '\\';
            out[o++] = (char)c;
        } else if (c < 0x20) {
            o += (size_t)snprintf(out + o, size - o, "\\u%04x", c);
        } else {
            out[o++] = (char)c;
        }
    }
    out[o] = '\0';
    return o;
}

void
ab_request_send_error(struct ab_request *req, int status, const char *code,
                      const char *message)
{
    char esc[512], body[768];
    int n;

    ab_json_escape(message, esc, sizeof(esc));
    n = snprintf(body, sizeof(body),
                 "{\"error\":{\"code\":\"%s\",\"message\":\"%s\"}}", code, esc);
    ab_request_send(req, status, body, (size_t)n);
}
