/*
 * lua_host.h - the Lua side of the broker: generations (a Lua state with
 * the runtime and the plugins loaded), one coroutine per request, and
 * the resumption of that coroutine when its I/O completes.
 */
#ifndef AB_LUA_HOST_H
#define AB_LUA_HOST_H

#include <stddef.h>

struct event_base;
struct lua_State;
struct ab_config;
struct ab_http_client;
struct ab_request;

/* What every generation of a process shares.  Borrowed by them all. */
struct ab_host {
    struct event_base *base;
    struct ab_http_client *http;
    const struct ab_config *cfg;
    const char *secret;   /* Pica secret key, or NULL */
    const char *pica_url; /* where the secret may be sent */
    const char *lua_dir;
};

/* A Lua state running one app ("broker.app" or "sandbox.app"). */
struct ab_generation {
    struct lua_State *L;
    struct ab_host *host;
    int handle_ref; /* the app's handle(req) function */
    int refs;       /* requests on it, +1 while current */
    unsigned long number;
    double loaded_at; /* seconds since the epoch */
    size_t mem_used;
    size_t mem_limit;
    char *files_json; /* the app's describe(): [{name, sha256}] or NULL */
};

/*
 * Builds a generation: a fresh state, the broker runtime, `module`
 * required and its init(config) called (which loads the plugins and runs
 * their selftests).  Returns it with one reference, or NULL with a
 * message naming file and line in `err`.
 */
struct ab_generation *ab_generation_load(struct ab_host *host,
                                         const char *module,
                                         unsigned long number, char *err,
                                         size_t errlen);

/* Takes and drops a reference; the last drop closes the state. */
void ab_generation_retain(struct ab_generation *gen);
void ab_generation_release(struct ab_generation *gen);

/*
 * Runs `req` through the generation's handle(req) in a new coroutine.
 * The request is answered (and freed) when the coroutine finishes,
 * fails, or the request ends some other way.
 */
void ab_host_dispatch(struct ab_generation *gen, struct ab_request *req);

/*
 * Parks the request's coroutine on some I/O: `cancel(arg)` is called if
 * the request ends (client gone, deadline) before the I/O completes.
 * The C function that parks returns lua_yield(L, 0) right after.
 */
void ab_host_park(struct ab_request *req, void (*cancel)(void *arg), void *arg);

/*
 * Resumes a parked coroutine with the `nargs` values already pushed on
 * its stack (req->co); unparks it first.  Called from the event loop
 * when the I/O completes, never from inside Lua.
 */
void ab_host_resume(struct ab_request *req, int nargs);

/* Drops the coroutine and cancels what it is parked on (the request is
 * ending). */
void ab_host_release(struct ab_request *req);

/* Registers the C half of the `broker` module as "broker.core". */
int ab_luaopen_core(struct lua_State *L);

/* The generation whose Lua state `L` (any of its threads) belongs to. */
struct ab_generation *ab_host_generation(struct lua_State *L);

/* The request whose coroutine `L` is; raises a Lua error if `L` is not
 * a request's own coroutine (broker I/O cannot wait anywhere else). */
struct ab_request *ab_host_check_request(struct lua_State *L);

/* The request whose coroutine `L` is, or NULL. */
struct ab_request *ab_host_current(struct lua_State *L);

#endif
