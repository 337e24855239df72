/*
 * proxy.c - streaming an upstream answer to the request's client.
 *
 * The request's coroutine is parked for the whole call.  When the
 * upstream's headers arrive the answer starts (status, relayed headers,
 * chunked body); each body chunk is handed to evhttp; when more than
 * HIGH_WATER bytes wait for the client, the upstream is paused until
 * the client has read them.  At the end the coroutine resumes with what
 * happened, for the audit log.
 */
#include "proxy.h"

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/http.h>
#include <lauxlib.h>
#include <lua.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "http_client.h"
#include "log.h"
#include "lua_bindings.h"
#include "lua_host.h"
#include "request.h"

/* Bytes waiting for the client past which the upstream is paused. */
#define HIGH_WATER (1 << 20)

/* The prefix of the third party's headers in Pica's answer. */
#define RELAYED "x-pica-passthrough-"

struct proxy {
    struct ab_request *req;
    struct ab_http_call *call; /* NULL once done */
    struct event *finish;      /* resumes the coroutine from the loop */
    int started;
    int paused;
    int status;
    size_t bytes;
    double elapsed_ms;
    char error[64];
};

static struct evbuffer *
client_output(struct ab_request *req)
{
    struct evhttp_connection *c = evhttp_request_get_connection(req->evreq);

    return bufferevent_get_output(evhttp_connection_get_bufferevent(c));
}

/* Copies the relayed headers and the content type to the answer. */
static void
relay_headers(const struct ab_http_response *res, struct evkeyvalq *out)
{
    const char *ctype = NULL, *relayed_ctype = NULL;

    for (size_t i = 0; i < res->nheaders; i++) {
        const char *name = res->headers[i].name;
        if (strncmp(name, RELAYED, sizeof(RELAYED) - 1) == 0) {
            evhttp_add_header(out, name, res->headers[i].value);
            if (strcmp(name + sizeof(RELAYED) - 1, "content-type") == 0) {
                relayed_ctype = res->headers[i].value;
            }
        } else if (strcmp(name, "content-type") == 0) {
            ctype = res->headers[i].value;
        }
    }

    /* Pica sends every body as octet-stream and the third party's own
     * type renamed: give the client the real one back. */
    if (relayed_ctype || ctype) {
        evhttp_add_header(out, "Content-Type",
                          relayed_ctype ? relayed_ctype : ctype);
    }
}

/* Called by the HTTP client when the upstream's headers are in:
 * starts the answer.  The request's deadline stops here; the stream
 * has its own idle timeout. */
static int
on_headers(const struct ab_http_response *res, void *arg)
{
    struct proxy *p = arg;
    struct ab_request *req = p->req;
    struct evkeyvalq *out;

    if (req->evreq == NULL) {
        return -1;
    }
    out = evhttp_request_get_output_headers(req->evreq);
    relay_headers(res, out);
    evhttp_add_header(out, "X-Request-Id", req->id);
    event_del(req->deadline);
    p->status = res->status;
    p->started = 1;
    req->streamed = 1;
    req->stream_status = res->status;
    evhttp_send_reply_start(req->evreq, res->status, NULL);
    return 0;
}

/* Called by evhttp when the client has taken everything queued. */
static void
on_drained(struct evhttp_connection *conn, void *arg)
{
    struct proxy *p = arg;

    if (p->paused && p->call) {
        p->paused = 0;
        ab_http_resume(p->call);
    }
}

/* Called by the HTTP client with body bytes: queues them for the
 * client; pauses the upstream while too much waits. */
static int
on_data(const char *data, size_t len, void *arg)
{
    struct proxy *p = arg;
    struct evbuffer *chunk;

    if (p->req->evreq == NULL || (chunk = evbuffer_new()) == NULL) {
        return -1;
    }
    evbuffer_add(chunk, data, len);
    evhttp_send_reply_chunk_with_cb(p->req->evreq, chunk, on_drained, p);
    evbuffer_free(chunk);
    if (evbuffer_get_length(client_output(p->req)) > HIGH_WATER) {
        p->paused = 1;
        return 1;
    }
    return 0;
}

/* Pushes the outcome table for the coroutine; under lua_pcall. */
static int
push_outcome(lua_State *L)
{
    struct proxy *p = lua_touserdata(L, 1);

    lua_createtable(L, 0, 5);                  /* t */
    lua_pushboolean(L, p->started);            /* t b */
    lua_setfield(L, -2, "started");            /* t */
    lua_pushinteger(L, p->status);             /* t n */
    lua_setfield(L, -2, "status");             /* t */
    lua_pushinteger(L, (lua_Integer)p->bytes); /* t n */
    lua_setfield(L, -2, "bytes");              /* t */
    lua_pushnumber(L, p->elapsed_ms);          /* t n */
    lua_setfield(L, -2, "elapsed_ms");         /* t */
    if (p->error[0]) {
        lua_pushstring(L, p->error);  /* t s */
        lua_setfield(L, -2, "error"); /* t */
    }
    return 1;
}

static void
proxy_free(struct proxy *p)
{
    if (p->call) {
        ab_http_cancel(p->call);
    }
    event_free(p->finish);
    p->req->on_client_gone = NULL;
    free(p);
}

/* Called by libevent after the call ended (or the client left): ends
 * the answer and resumes the coroutine with the outcome. */
static void
on_finish(evutil_socket_t fd, short what, void *arg)
{
    struct proxy *p = arg;
    struct ab_request *req = p->req;
    lua_State *L = req->gen->L;

    if (p->started && req->evreq) {
        evhttp_send_reply_end(req->evreq);
    }
    lua_pushcfunction(L, push_outcome);    /* f */
    lua_pushlightuserdata(L, p);           /* f p */
    if (lua_pcall(L, 1, 1, 0) != LUA_OK) { /* t | err */
        lua_pop(L, 1);
        lua_pushnil(L);
    }
    lua_xmove(L, req->co, 1); /* co: t */
    proxy_free(p);
    ab_host_resume(req, 1);
}

/* Called by the HTTP client once the call is over. */
static void
on_done(const struct ab_http_response *res, void *arg)
{
    struct proxy *p = arg;

    p->call = NULL;
    p->bytes = res->body_len;
    p->elapsed_ms = res->elapsed_ms;
    if (!p->started) {
        p->status = res->status;
    }
    if (res->error) {
        snprintf(p->error, sizeof(p->error), "%s", res->error);
    }
    event_active(p->finish, EV_TIMEOUT, 0);
}

/* The client left mid-call: stop the upstream, then let the coroutine
 * finish (it writes the audit line) before the request is freed. */
static int
on_client_gone(struct ab_request *req)
{
    struct proxy *p = req->park_arg;

    if (p->call) {
        ab_http_cancel(p->call);
        p->call = NULL;
    }
    snprintf(p->error, sizeof(p->error), "client_closed");
    event_active(p->finish, EV_TIMEOUT, 0);
    return 1;
}

/* The request ends another way (deadline before the answer started). */
static void
on_cancel(void *arg)
{
    proxy_free(arg);
}

int
ab_proxy_lua(lua_State *L)
{
    static const struct ab_http_stream cbs = {on_headers, on_data, on_done};
    struct ab_http_header hdrs[MAX_OUT_HEADERS + 1];
    struct ab_request *req = ab_host_current(L);
    struct ab_http_request r;
    char secret_name[64];
    struct proxy *p;

    if (req == NULL || req->evreq == NULL) {
        return luaL_error(L, "proxy needs a client request's coroutine");
    }
    ab_lua_parse_call(L, 1, &r, hdrs, secret_name, sizeof(secret_name));
    r.max_response_bytes = 0;
    p = calloc(1, sizeof(*p));
    if (p == NULL || (p->finish = event_new(ab_host_generation(L)->host->base,
                                            -1, 0, on_finish, p)) == NULL) {
        free(p);
        return luaL_error(L, "out of memory");
    }
    p->req = req;
    p->call =
        ab_http_start_stream(ab_host_generation(L)->host->http, &r, &cbs, p);
    if (p->call == NULL) {
        event_free(p->finish);
        free(p);
        return luaL_error(L, "failed to start the passthrough call");
    }
    ab_host_park(req, on_cancel, p);
    req->on_client_gone = on_client_gone;
    return lua_yield(L, 0);
}
