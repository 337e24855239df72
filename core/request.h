/*
 * request.h - one HTTP request in flight, from its arrival to its reply
 * (or to the client going away or its deadline passing).
 *
 * The request owns the coroutine its Lua pipeline runs in and the one
 * I/O wait that coroutine may be parked on.  Whatever ends the request
 * first (reply, client gone, deadline) frees it and everything it owns.
 */
#ifndef AB_REQUEST_H
#define AB_REQUEST_H

#include <event2/http.h>
#include <stddef.h>

struct evhttp_request;
struct event;
struct lua_State;
struct ab_server;
struct ab_generation;

struct ab_request {
    char id[20];
    struct evhttp_request *evreq; /* NULL once the client is gone */
    struct ab_server *server;
    struct ab_generation *gen; /* a reference is held while set */
    struct lua_State *co;      /* the pipeline's coroutine */
    int co_ref;                /* anchors `co` in the registry */
    /* What `co` is parked on: cancel(arg) undoes it if the request ends
     * first.  cancel is NULL while the coroutine is not parked. */
    void (*park_cancel)(void *arg);
    void *park_arg;
    struct event *deadline;
    double started_ms; /* monotonic */
    long instructions; /* Lua instructions of this hook call */
    int in_hook;       /* a plugin hook is running */
    int over_budget;
    int streamed;      /* the answer went out as a stream already */
    int stream_status; /* the status it went out with */
    /* Called when the client goes away, if set: returns 1 if it takes
     * over ending the request (evreq is gone either way). */
    int (*on_client_gone)(struct ab_request *req);
    int job;        /* a background tick, no client */
    char *identity; /* for log lines, once known */
    char route[48]; /* for the access log and metrics */
};

/* Creates the request for `evreq`, arms its deadline and watches the
 * client's connection.  Returns NULL on out of memory (the caller then
 * answers 503 itself). */
struct ab_request *ab_request_new(struct ab_server *server,
                                  struct evhttp_request *evreq);

/* Creates a background job request (no client): the Lua app's tick.
 * Only one runs at a time per server. */
struct ab_request *ab_request_new_job(struct ab_server *server);

/*
 * Sends `status` with `body` (copied; may be NULL) and the headers
 * already added to the output, then frees the request.  Adds
 * X-Request-Id, and Content-Type application/json unless one is set.
 */
void ab_request_send(struct ab_request *req, int status, const char *body,
                     size_t len);
/* (For a job, sending only frees the request.) */

/* Sends {"error": {"code": code, "message": message}} with `status`,
 * then frees the request.  Both strings are ours, never a script's. */
void ab_request_send_error(struct ab_request *req, int status, const char *code,
                           const char *message);

/* Frees the request without a reply (the client is gone). */
void ab_request_free(struct ab_request *req);

/* Writes `s` into `out` (of `size` bytes, NUL-terminated, cut short if
 * it does not fit) as the content of a JSON string, without quotes.
 * Returns the length written. */
size_t ab_json_escape(const char *s, char *out, size_t size);

/* "GET", "POST", ... for an evhttp method. */
const char *ab_method_name(enum evhttp_cmd_type cmd);

/* Milliseconds on a monotonic clock. */
double ab_now_ms(void);

#endif
