/*
 * server.c - evhttp listeners, routing between C and Lua, CORS, admin.
 */
#include "server.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <event2/listener.h>
#include <event2/util.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "admin.h"
#include "config.h"
#include "log.h"
#include "lua_host.h"
#include "request.h"

#define ALL_METHODS                                                            \
    (EVHTTP_REQ_GET | EVHTTP_REQ_POST | EVHTTP_REQ_HEAD | EVHTTP_REQ_PUT |     \
     EVHTTP_REQ_DELETE | EVHTTP_REQ_OPTIONS | EVHTTP_REQ_TRACE |               \
     EVHTTP_REQ_CONNECT | EVHTTP_REQ_PATCH)

/* Answers an OPTIONS preflight; returns non-zero if `req` was one. */
static int
handle_preflight(struct ab_server *server, struct ab_request *req)
{
    struct evhttp_request *evreq = req->evreq;
    struct evkeyvalq *in = evhttp_request_get_input_headers(evreq);
    struct evkeyvalq *out = evhttp_request_get_output_headers(evreq);
    const char *origin = evhttp_find_header(in, "Origin");
    const char *pna;
    int status;

    if (evhttp_request_get_command(evreq) != EVHTTP_REQ_OPTIONS ||
        evhttp_find_header(in, "Access-Control-Request-Method") == NULL) {
        return 0;
    }
    snprintf(req->route, sizeof(req->route), "preflight");
    pna = evhttp_find_header(in, "Access-Control-Request-Private-Network");
    status = ab_cors_preflight(
        &server->cors, origin,
        evhttp_find_header(in, "Access-Control-Request-Headers"),
        pna && strcasecmp(pna, "true") == 0, out);
    if (status == 403) {
        ab_request_send_error(req, 403, "origin_not_allowed",
                              "this origin may not call the API");
    } else {
        evhttp_add_header(out, "Content-Length", "0");
        ab_request_send(req, status, NULL, 0);
    }
    return 1;
}

/* Called by evhttp for every request on every listener. */
static void
on_request(struct evhttp_request *evreq, void *arg)
{
    struct ab_server *server = arg;
    struct ab_request *req = ab_request_new(server, evreq);
    const char *path;

    if (req == NULL) {
        evhttp_send_reply(evreq, 503, "Service Unavailable", NULL);
        return;
    }
    path = evhttp_uri_get_path(evhttp_request_get_evhttp_uri(evreq));
    if (server->kind == AB_SERVER_SANDBOX) {
        snprintf(req->route, sizeof(req->route), "sandbox");
    }
    if (server->kind == AB_SERVER_ADMIN) {
        ab_admin_handle(server, req, path ? path : "/");
        return;
    }
    if (server->kind == AB_SERVER_API) {
        struct evkeyvalq *in = evhttp_request_get_input_headers(evreq);
        if (handle_preflight(server, req)) {
            return;
        }
        ab_cors_response(&server->cors, evhttp_find_header(in, "Origin"),
                         evhttp_request_get_output_headers(evreq));
    }
    if (server->gen == NULL) {
        ab_request_send_error(req, 503, "not_ready",
                              "no plugin generation is live");
        return;
    }
    ab_host_dispatch(server->gen, req);
}

/* Parses "ADDR:PORT" where PORT may be 0 (libevent's parser refuses
 * port 0, so it parses the address with port 1 and sets the port). */
static int
parse_address(const char *listen, struct sockaddr_storage *ss, int *len)
{
    const char *colon = strrchr(listen, ':');
    char *end, buf[128];
    long port;

    if (colon == NULL || colon[1] == '\0') {
        return -1;
    }
    port = strtol(colon + 1, &end, 10);
    if (*end != '\0' || port < 0 || port > 65535 ||
        snprintf(buf, sizeof(buf), "%.*s:1", (int)(colon - listen), listen) >=
            (int)sizeof(buf) ||
        evutil_parse_sockaddr_port(buf, (struct sockaddr *)ss, len) != 0) {
        return -1;
    }
    if (ss->ss_family == AF_INET6) {
        ((struct sockaddr_in6 *)ss)->sin6_port = htons((uint16_t)port);
    } else {
        ((struct sockaddr_in *)ss)->sin_port = htons((uint16_t)port);
    }
    return 0;
}

/* Called by libevent every second on the API server: runs the app's
 * tick (background work of plugins) unless the last one still runs. */
static void
on_tick(evutil_socket_t fd, short what, void *arg)
{
    struct ab_server *server = arg;
    struct ab_request *job;

    if (server->gen == NULL || server->job_running) {
        return;
    }
    job = ab_request_new_job(server);
    if (job != NULL) {
        ab_host_dispatch(server->gen, job);
    }
}

/* Starts the tick of an API server; 0 or -1. */
static int
start_tick(struct ab_server *s)
{
    struct timeval second = {1, 0};

    s->tick = event_new(s->base, -1, EV_PERSIST, on_tick, s);
    return s->tick ? event_add(s->tick, &second) : -1;
}

/* Opens the listening socket for `listen` ("ADDR:PORT"). */
static struct evconnlistener *
open_listener(struct event_base *base, const char *listen, int reuseport,
              char *err, size_t errlen)
{
    struct sockaddr_storage ss;
    int sslen = sizeof(ss);
    unsigned flags =
        LEV_OPT_REUSEABLE | LEV_OPT_CLOSE_ON_FREE | LEV_OPT_CLOSE_ON_EXEC;
    struct evconnlistener *l;

    if (parse_address(listen, &ss, &sslen) != 0) {
        snprintf(err, errlen,
                 "'%s' is not an ADDR:PORT address (like "
                 "127.0.0.1:8080 or [::1]:8080)",
                 listen);
        return NULL;
    }
    if (reuseport) {
        flags |= LEV_OPT_REUSEABLE_PORT;
    }
    l = evconnlistener_new_bind(base, NULL, NULL, flags, 1024,
                                (struct sockaddr *)&ss, sslen);
    if (l == NULL) {
        snprintf(err, errlen,
                 "cannot listen on %s: %s (is another "
                 "process using the port?)",
                 listen, evutil_socket_error_to_string(EVUTIL_SOCKET_ERROR()));
    }
    return l;
}

/* Writes the address the listener really got ("127.0.0.1:41234"). */
static void
describe_address(struct evconnlistener *l, char *out, size_t size)
{
    struct sockaddr_storage ss;
    socklen_t len = sizeof(ss);
    char host[INET6_ADDRSTRLEN] = "?";
    int port = 0;

    getsockname(evconnlistener_get_fd(l), (struct sockaddr *)&ss, &len);
    if (ss.ss_family == AF_INET6) {
        struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&ss;
        inet_ntop(AF_INET6, &s6->sin6_addr, host, sizeof(host));
        port = ntohs(s6->sin6_port);
        snprintf(out, size, "[%s]:%d", host, port);
        return;
    }
    inet_ntop(AF_INET, &((struct sockaddr_in *)&ss)->sin_addr, host,
              sizeof(host));
    port = ntohs(((struct sockaddr_in *)&ss)->sin_port);
    snprintf(out, size, "%s:%d", host, port);
}

static void
apply_limits(struct evhttp *http, const struct ab_config *cfg)
{
    evhttp_set_allowed_methods(http, ALL_METHODS);
    evhttp_set_max_headers_size(http, cfg->max_header_bytes);
    /* Passthrough calls may send larger bodies than the other routes;
     * those are held to max_body_bytes by the pipeline. */
    evhttp_set_max_body_size(http, cfg->max_body_bytes >
                                           cfg->passthrough_max_body_bytes
                                       ? cfg->max_body_bytes
                                       : cfg->passthrough_max_body_bytes);
    /* Idle and slow-client timeout of a connection, in whole seconds. */
    evhttp_set_timeout(http, (int)(cfg->request_timeout_ms / 1000) + 5);
}

struct ab_server *
ab_server_new(enum ab_server_kind kind, struct event_base *base,
              const struct ab_config *cfg, const char *listen, int reuseport,
              char *err, size_t errlen)
{
    struct ab_server *s = calloc(1, sizeof(*s));
    int one = 1;

    if (s == NULL || (s->http = evhttp_new(base)) == NULL) {
        snprintf(err, errlen, "out of memory");
        free(s);
        return NULL;
    }
    s->kind = kind;
    s->cfg = cfg;
    s->base = base;
    ab_cors_init(&s->cors, cfg->cors_origins, cfg->cors_headers);
    apply_limits(s->http, cfg);
    evhttp_set_gencb(s->http, on_request, s);
    s->listener = open_listener(base, listen, reuseport, err, errlen);
    if (s->listener == NULL ||
        (s->bound = evhttp_bind_listener(s->http, s->listener)) == NULL) {
        if (s->listener) {
            evconnlistener_free(s->listener);
        }
        evhttp_free(s->http);
        free(s);
        return NULL;
    }
    /* Accepted sockets inherit this: answers go out without waiting
     * for the client's delayed ACK (Nagle's algorithm). */
    setsockopt(evconnlistener_get_fd(s->listener), IPPROTO_TCP, TCP_NODELAY,
               &one, sizeof(one));
    describe_address(s->listener, s->address, sizeof(s->address));
    if (kind == AB_SERVER_API && start_tick(s) != 0) {
        snprintf(err, errlen, "out of memory");
        ab_server_free(s);
        return NULL;
    }
    return s;
}

void
ab_server_stop_accepting(struct ab_server *server)
{
    /* Close the socket rather than stop accepting: with SO_REUSEPORT the
     * kernel would go on queueing connections for this worker that it
     * will never accept.  Closed, they go to the other workers. */
    if (server->bound) {
        evhttp_del_accept_socket(server->http, server->bound);
        server->bound = NULL;
        server->listener = NULL;
    }
    if (server->tick) {
        event_del(server->tick);
    }
}

void
ab_server_free(struct ab_server *server)
{
    if (server == NULL) {
        return;
    }
    if (server->tick) {
        event_free(server->tick);
    }
    evhttp_free(server->http); /* frees the bound listener too */
    if (server->gen) {
        ab_generation_release(server->gen);
    }
    free(server);
}
