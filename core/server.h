/*
 * server.h - the HTTP listeners (evhttp): the API, the admin endpoints
 * and the sandbox Pica, with limits, request ids, CORS and JSON errors.
 */
#ifndef AB_SERVER_H
#define AB_SERVER_H

#include <stddef.h>

#include "cors.h"

struct event_base;
struct evhttp;
struct evconnlistener;
struct evhttp_bound_socket;
struct event;
struct ab_config;
struct ab_generation;
struct ab_generations;

enum ab_server_kind {
    AB_SERVER_API,    /* the broker's routes, CORS, Lua pipeline */
    AB_SERVER_ADMIN,  /* health and status, answered in C */
    AB_SERVER_SANDBOX /* the fake Pica, a Lua app without CORS */
};

struct ab_server {
    enum ab_server_kind kind;
    struct evhttp *http;
    struct evconnlistener *listener;
    struct evhttp_bound_socket *bound;  /* NULL once closed */
    struct ab_generation *gen;          /* current generation; NULL for admin */
    struct ab_generations *generations; /* admin: what it reports on */
    struct event_base *base;
    struct event *tick; /* api: runs the app's tick every second */
    int job_running;    /* a tick is still running */
    const struct ab_config *cfg;
    struct ab_cors cors;
    size_t inflight;
    unsigned long served;
    char address[80]; /* "127.0.0.1:8080", port resolved */
};

/*
 * Listens on `listen` ("ADDR:PORT"; port 0 picks a free one).  With
 * `reuseport` the socket sets SO_REUSEPORT so workers can share it.
 * Returns the server, or NULL with a one-line reason in `err`.
 */
struct ab_server *ab_server_new(enum ab_server_kind kind,
                                struct event_base *base,
                                const struct ab_config *cfg, const char *listen,
                                int reuseport, char *err, size_t errlen);

/* Stops accepting connections; requests in flight go on. */
void ab_server_stop_accepting(struct ab_server *server);

/* Frees the server, its connections and its generation reference. */
void ab_server_free(struct ab_server *server);

#endif
