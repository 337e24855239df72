/*
 * waker.c - one coroutine waiting for another, on the event loop.
 */
#include "waker.h"

#include <event2/event.h>
#include <lauxlib.h>
#include <lua.h>
#include <stdlib.h>

#include "lua_host.h"
#include "request.h"

#define WAKER_MT "broker.waker"

struct parked;

/* The userdata a waiter publishes and a waker wakes. */
struct waker {
    lua_State *main;       /* the generation's main state */
    struct parked *parked; /* the request waiting on it, or NULL */
    int woken;
    int value_ref; /* the value wake() gave, in the registry */
};

/* A request parked on a waker; the waker is anchored meanwhile. */
struct parked {
    struct ab_request *req;
    struct waker *w;
    int w_ref;
    struct event *ev;
};

/* Frees a parked wait (the waker stays, unanchored). */
static void
unpark(struct parked *p)
{
    p->w->parked = NULL;
    event_free(p->ev);
    luaL_unref(p->w->main, LUA_REGISTRYINDEX, p->w_ref);
    free(p);
}

/* The request ended before its wake: ab_host_release calls this. */
static void
on_cancel(void *arg)
{
    unpark(arg);
}

/* Called by libevent on the loop turn after wake(): resumes the
 * waiter with the value. */
static void
on_wake(evutil_socket_t fd, short what, void *arg)
{
    struct parked *p = arg;
    struct ab_request *req = p->req;

    lua_rawgeti(req->co, LUA_REGISTRYINDEX, p->w->value_ref); /* v */
    unpark(p);
    ab_host_resume(req, 1);
}

static struct waker *
check_waker(lua_State *L, int idx)
{
    return luaL_checkudata(L, idx, WAKER_MT);
}

/* waker.new() -> w.  Called from Lua. */
static int
l_new(lua_State *L)
{
    struct waker *w = lua_newuserdatauv(L, sizeof(*w), 0); /* w */

    w->main = ab_host_generation(L)->L;
    w->parked = NULL;
    w->woken = 0;
    w->value_ref = LUA_NOREF;
    luaL_setmetatable(L, WAKER_MT);
    return 1;
}

/* waker.wait(w) -> value: yields until wake(w, value).  Called from a
 * request's own coroutine. */
static int
l_wait(lua_State *L)
{
    struct waker *w = check_waker(L, 1);
    struct ab_request *req = ab_host_current(L);
    struct parked *p;

    if (req == NULL) {
        return luaL_error(L, "waker.wait needs a request's coroutine");
    }
    if (w->parked) {
        return luaL_error(L, "a waker takes one waiter");
    }
    if (w->woken) {
        lua_rawgeti(L, LUA_REGISTRYINDEX, w->value_ref); /* w v */
        return 1;
    }
    p = calloc(1, sizeof(*p));
    if (p == NULL || (p->ev = event_new(ab_host_generation(L)->host->base, -1,
                                        0, on_wake, p)) == NULL) {
        free(p);
        return luaL_error(L, "out of memory");
    }
    p->req = req;
    p->w = w;
    lua_pushvalue(L, 1);                       /* w w */
    p->w_ref = luaL_ref(L, LUA_REGISTRYINDEX); /* w */
    w->parked = p;
    ab_host_park(req, on_cancel, p);
    return lua_yield(L, 0);
}

/* waker.wake(w, value): the waiter (now or later) gets `value`. */
static int
l_wake(lua_State *L)
{
    struct waker *w = check_waker(L, 1);

    if (w->woken) {
        return luaL_error(L, "this waker was already woken");
    }
    lua_settop(L, 2);                              /* w v */
    w->value_ref = luaL_ref(L, LUA_REGISTRYINDEX); /* w */
    w->woken = 1;
    if (w->parked) {
        event_active(w->parked->ev, EV_TIMEOUT, 0);
    }
    return 0;
}

/* __gc: drops the value.  A waker with a waiter is anchored, so it is
 * never collected while parked. */
static int
l_gc(lua_State *L)
{
    struct waker *w = check_waker(L, 1);

    luaL_unref(L, LUA_REGISTRYINDEX, w->value_ref);
    w->value_ref = LUA_NOREF;
    return 0;
}

int
ab_luaopen_waker(lua_State *L)
{
    static const luaL_Reg funcs[] = {
        {"new", l_new},
        {"wait", l_wait},
        {"wake", l_wake},
        {NULL, NULL},
    };

    luaL_newmetatable(L, WAKER_MT); /* mt */
    lua_pushcfunction(L, l_gc);     /* mt gc */
    lua_setfield(L, -2, "__gc");    /* mt */
    lua_pop(L, 1);                  /* */
    luaL_newlib(L, funcs);          /* M */
    return 1;
}
