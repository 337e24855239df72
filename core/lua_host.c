/*
 * lua_host.c - generations and the coroutine of each request.
 *
 * A generation is one Lua state with the broker's runtime (lua/) and an
 * app loaded.  Each request runs app.handle(req) in a coroutine of that
 * state; host functions that do I/O park the coroutine on a wait and
 * yield, and the event loop resumes it when the I/O completes.
 */
#include "lua_host.h"

#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <lauxlib.h>
#include <lua.h>
#include <lualib.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>
#include <sys/time.h>

#include "config.h"
#include "json.h"
#include "pg.h"
#include "sqlite.h"
#include "waker.h"
#include "log.h"
#include "request.h"
#include "server.h"

/* The count hook runs every this many instructions. */
#define HOOK_EVERY 1000

/* The request whose pipeline is running right now (one loop, one
 * thread: at most one coroutine runs at a time). */
static struct ab_request *running;

/* Allocator of every generation: realloc under a per-state cap. */
static void *
on_alloc(void *ud, void *ptr, size_t osize, size_t nsize)
{
    struct ab_generation *gen = ud;
    void *p;

    if (ptr == NULL) {
        osize = 0;
    }
    if (nsize == 0) {
        free(ptr);
        gen->mem_used -= osize;
        return NULL;
    }
    if (nsize > osize && gen->mem_used + (nsize - osize) > gen->mem_limit) {
        return NULL;
    }
    p = realloc(ptr, nsize);
    if (p != NULL) {
        gen->mem_used = gen->mem_used - osize + nsize;
    }
    return p;
}

struct ab_generation *
ab_host_generation(lua_State *L)
{
    void *ud;

    lua_getallocf(L, &ud);
    return ud;
}

struct ab_request *
ab_host_check_request(lua_State *L)
{
    struct ab_request *req = ab_host_current(L);

    if (req == NULL) {
        luaL_error(L, "broker I/O can only be called from a request's "
                      "own coroutine, not from one a hook created");
    }
    return req;
}

struct ab_request *
ab_host_current(lua_State *L)
{
    return *(struct ab_request **)lua_getextraspace(L);
}

/* Pushes the config as a table keyed by option names. */
static void
push_config(lua_State *L, const struct ab_config *cfg)
{
    lua_newtable(L); /* cfg */
    for (const struct ab_option *o = ab_options; o->name; o++) {
        const char *field = (const char *)cfg + o->offset;
        switch (o->type) {
        case AB_OPT_STR:
            lua_pushstring(L, *(char *const *)field);
            break;
        case AB_OPT_LIST: {
            char *const *list = *(char *const *const *)field;
            lua_newtable(L); /* cfg list */
            for (int i = 0; list && list[i]; i++) {
                lua_pushstring(L, list[i]);
                lua_rawseti(L, -2, i + 1);
            }
            break;
        }
        case AB_OPT_INT:
            lua_pushinteger(L, *(const long *)field);
            break;
        case AB_OPT_BOOL:
            lua_pushboolean(L, *(const int *)field);
            break;
        case AB_OPT_DOUBLE:
            lua_pushnumber(L, *(const double *)field);
            break;
        }
        lua_setfield(L, -2, o->name); /* cfg */
    }
    lua_pushboolean(L, cfg->dev || cfg->allow_header_identity);
    lua_setfield(L, -2, "allow_header_identity");
}

/* Points package.path at the runtime directory and preloads the core. */
static void
prepare_state(lua_State *L, const char *lua_dir)
{
    luaL_openlibs(L);
    lua_getglobal(L, "package"); /* package */
    lua_pushfstring(L, "%s/?.lua;%s/?/init.lua", lua_dir, lua_dir);
    lua_setfield(L, -2, "path");
    lua_getfield(L, -1, "preload"); /* package preload */
    lua_pushcfunction(L, ab_luaopen_core);
    lua_setfield(L, -2, "broker.core");
    lua_pushcfunction(L, ab_luaopen_json);
    lua_setfield(L, -2, "broker.jsonc");
    lua_pushcfunction(L, ab_luaopen_sqlite);
    lua_setfield(L, -2, "broker.sqlite");
    lua_pushcfunction(L, ab_luaopen_pg);
    lua_setfield(L, -2, "broker.pg");
    lua_pushcfunction(L, ab_luaopen_waker);
    lua_setfield(L, -2, "broker.waker");
    lua_pop(L, 2); /* */
}

/* Requires `module`, calls its init(config) and anchors its handle.
 * Runs under lua_pcall (pushed as a C function). */
static int
load_app(lua_State *L)
{
    struct ab_generation *gen = lua_touserdata(L, 1);
    const char *module = lua_tostring(L, 2);

    lua_getglobal(L, "require");
    lua_pushstring(L, module);
    lua_call(L, 1, 1); /* gen mod app */
    if (!lua_istable(L, -1)) {
        return luaL_error(L, "%s did not return a table", module);
    }
    lua_getfield(L, -1, "init");                  /* ... app init */
    push_config(L, gen->host->cfg);               /* ... init cfg */
    lua_pushinteger(L, (lua_Integer)gen->number); /* ... init cfg n */
    lua_setfield(L, -2, "generation");            /* ... init cfg */
    lua_call(L, 1, 0);                            /* ... app */
    lua_getfield(L, -1, "handle");                /* ... app handle */
    if (!lua_isfunction(L, -1)) {
        return luaL_error(L, "%s has no handle function", module);
    }
    gen->handle_ref = luaL_ref(L, LUA_REGISTRYINDEX); /* ... app */
    lua_getfield(L, -1, "describe");                  /* ... app f */
    if (lua_isfunction(L, -1)) {
        lua_call(L, 0, 1); /* ... app json */
        gen->files_json = strdup(luaL_checkstring(L, -1));
    }
    return 0;
}

struct ab_generation *
ab_generation_load(struct ab_host *host, const char *module,
                   unsigned long number, char *err, size_t errlen)
{
    struct ab_generation *gen = calloc(1, sizeof(*gen));
    struct timeval tv;

    if (gen == NULL) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    gen->host = host;
    gen->refs = 1;
    gen->number = number;
    gen->mem_limit = (size_t)host->cfg->lua_memory_mb << 20;
    gettimeofday(&tv, NULL);
    gen->loaded_at = (double)tv.tv_sec + (double)tv.tv_usec / 1e6;
    gen->L = lua_newstate(on_alloc, gen);
    if (gen->L == NULL) {
        snprintf(err, errlen, "out of memory");
        free(gen);
        return NULL;
    }
    /* No request owns the main thread; new threads copy this. */
    *(struct ab_request **)lua_getextraspace(gen->L) = NULL;
    prepare_state(gen->L, host->lua_dir);
    ab_sqlite_set_data_dir(gen->L, host->cfg->data_dir);
    ab_pg_set_base(gen->L, host->base);
    lua_pushcfunction(gen->L, load_app);        /* f */
    lua_pushlightuserdata(gen->L, gen);         /* f gen */
    lua_pushstring(gen->L, module);             /* f gen module */
    if (lua_pcall(gen->L, 2, 0, 0) != LUA_OK) { /* err */
        snprintf(err, errlen, "%s", lua_tostring(gen->L, -1));
        lua_close(gen->L);
        free(gen->files_json);
        free(gen);
        return NULL;
    }
    return gen;
}

void
ab_generation_retain(struct ab_generation *gen)
{
    gen->refs++;
}

void
ab_generation_release(struct ab_generation *gen)
{
    if (--gen->refs > 0) {
        return;
    }
    lua_close(gen->L);
    free(gen->files_json);
    free(gen);
}

/* Runs every HOOK_EVERY instructions of a request's coroutine; while a
 * hook runs (between core.hook_begin and core.hook_end) it counts them,
 * and stops the request once the hook has spent its budget. */
static void
on_count(lua_State *L, lua_Debug *ar)
{
    struct ab_request *req = running;

    if (req == NULL || !req->in_hook) {
        return;
    }
    req->instructions += HOOK_EVERY;
    if (req->instructions <= req->server->cfg->instruction_budget) {
        return;
    }
    req->over_budget = 1;
    if (L == req->co && lua_isyieldable(L)) {
        lua_yield(L, 0); /* cannot be caught by a pcall in a hook */
    } else {
        luaL_error(L, "instruction budget exceeded");
    }
}

/* Adds the headers table at `idx` of the coroutine to the answer.
 * Returns 0, or -1 if a name or value is not a clean string. */
static int
add_headers(lua_State *co, int idx, struct evkeyvalq *out)
{
    int rc = 0;

    if (lua_isnil(co, idx)) {
        return 0;
    }
    if (!lua_istable(co, idx)) {
        return -1;
    }
    lua_pushnil(co);                 /* ... nil */
    while (lua_next(co, idx) != 0) { /* ... name value */
        const char *name = lua_tostring(co, -2);
        const char *value = lua_tostring(co, -1);
        if (lua_type(co, -2) != LUA_TSTRING || value == NULL ||
            strpbrk(name, "\r\n:") || strpbrk(value, "\r\n")) {
            rc = -1;
        } else {
            evhttp_remove_header(out, name);
            evhttp_add_header(out, name, value);
        }
        lua_pop(co, 1); /* ... name */
    }
    return rc;
}

/* The pipeline returned status, headers, body: answer with them. */
static void
finish(struct ab_request *req, int nres)
{
    lua_State *co = req->co;
    int base = lua_gettop(co) - nres;
    lua_Integer status = lua_tointeger(co, base + 1);
    size_t len = 0;
    const char *body = NULL;

    if (req->job || req->streamed || req->evreq == NULL) {
        ab_request_send(req, 200, NULL, 0); /* nobody to answer */
        return;
    }
    if (nres < 1 || status < 100 || status > 599 ||
        add_headers(co, base + 2,
                    evhttp_request_get_output_headers(req->evreq)) != 0) {
        AB_ERROR("lua", req->id,
                 "failed to answer: the pipeline returned "
                 "no valid status and headers");
        ab_request_send_error(req, 500, "internal", "internal error");
        return;
    }
    if (nres >= 3 && lua_type(co, base + 3) == LUA_TSTRING) {
        body = lua_tolstring(co, base + 3, &len);
    }
    ab_request_send(req, (int)status, body, len);
}

/* Handles a coroutine that stopped with an error. */
static void
fail(struct ab_request *req)
{
    lua_State *L = req->gen->L;

    luaL_traceback(L, req->co, lua_tostring(req->co, -1), 0);
    AB_ERROR("lua", req->id, "failed to run the pipeline: %s",
             lua_tostring(L, -1));
    lua_pop(L, 1);
    ab_request_send_error(req, 500, "internal", "internal error");
}

/* Resumes (or starts) the coroutine and acts on how it stopped. */
static void
run(struct ab_request *req, int nargs)
{
    int nres = 0, rc;

    running = req;
    rc = lua_resume(req->co, NULL, nargs, &nres);
    running = NULL;
    if (req->over_budget) {
        AB_ERROR("lua", req->id,
                 "failed to run the pipeline: a hook ran more "
                 "than %ld Lua instructions",
                 req->server->cfg->instruction_budget);
        ab_request_send_error(req, 500, "internal", "internal error");
    } else if (rc == LUA_YIELD && req->park_cancel != NULL) {
        lua_pop(req->co, nres); /* parked */
    } else if (rc == LUA_YIELD) {
        AB_ERROR("lua", req->id,
                 "failed to run the pipeline: a hook "
                 "yielded outside broker I/O");
        ab_request_send_error(req, 500, "internal", "internal error");
    } else if (rc != LUA_OK) {
        fail(req);
    } else {
        finish(req, nres);
    }
}

void
ab_host_park(struct ab_request *req, void (*cancel)(void *arg), void *arg)
{
    req->park_cancel = cancel;
    req->park_arg = arg;
}

void
ab_host_resume(struct ab_request *req, int nargs)
{
    req->park_cancel = NULL;
    req->park_arg = NULL;
    run(req, nargs);
}

/* Sets t[name] = s for a string of `len` bytes. */
static void
set_field(lua_State *L, const char *name, const char *s, size_t len)
{
    lua_pushlstring(L, s, len);
    lua_setfield(L, -2, name);
}

/* Pushes the decoded query as a table (first value of a name wins). */
static void
push_query(lua_State *L, const char *raw)
{
    struct evkeyvalq q;
    struct evkeyval *kv;

    lua_newtable(L); /* query */
    if (raw == NULL || evhttp_parse_query_str(raw, &q) != 0) {
        return;
    }
    TAILQ_FOREACH(kv, &q, next)
    {
        lua_getfield(L, -1, kv->key); /* query old */
        if (lua_isnil(L, -1)) {
            lua_pushstring(L, kv->value); /* query nil v */
            lua_setfield(L, -3, kv->key);
        }
        lua_pop(L, 1); /* query */
    }
    evhttp_clear_headers(&q);
}

/* Pushes the headers, names lower-cased, repeats joined with ", ". */
static void
push_headers(lua_State *L, struct evkeyvalq *in)
{
    struct evkeyval *kv;
    char name[256];

    lua_newtable(L); /* headers */
    TAILQ_FOREACH(kv, in, next)
    {
        size_t i;
        for (i = 0; kv->key[i] && i + 1 < sizeof(name); i++) {
            char c = kv->key[i];
            name[i] = (char)(c >= 'A' && c <= 'Z' ? c + 32 : c);
        }
        name[i] = '\0';
        lua_getfield(L, -1, name); /* headers old */
        if (lua_isnil(L, -1)) {
            lua_pushstring(L, kv->value);
        } else {
            lua_pushfstring(L, "%s%s%s", lua_tostring(L, -1),
                            strcmp(name, "cookie") ? ", " : "; ", kv->value);
        }
        lua_setfield(L, -3, name); /* headers old */
        lua_pop(L, 1);             /* headers */
    }
}

/* Pushes the request table; -1 if the path does not decode cleanly. */
static int
push_request(lua_State *L, struct ab_request *req)
{
    struct evhttp_request *ev = req->evreq;
    const struct evhttp_uri *uri = evhttp_request_get_evhttp_uri(ev);
    const char *raw_path = evhttp_uri_get_path(uri);
    const char *raw_query = evhttp_uri_get_query(uri);
    struct evbuffer *body = evhttp_request_get_input_buffer(ev);
    size_t plen = 0, blen = evbuffer_get_length(body);
    char *path = evhttp_uridecode(raw_path ? raw_path : "/", 0, &plen);
    char *addr;
    ev_uint16_t port;

    if (path == NULL || strlen(path) != plen) {
        free(path);
        return -1;
    }
    lua_createtable(L, 0, 9); /* req */
    set_field(L, "id", req->id, strlen(req->id));
    lua_pushstring(L, ab_method_name(evhttp_request_get_command(ev)));
    lua_setfield(L, -2, "method");
    set_field(L, "path", path, plen);
    free(path);
    lua_pushstring(L, raw_path ? raw_path : "/");
    lua_setfield(L, -2, "raw_path");
    lua_pushstring(L, raw_query ? raw_query : "");
    lua_setfield(L, -2, "raw_query");
    push_query(L, raw_query);
    lua_setfield(L, -2, "query");
    push_headers(L, evhttp_request_get_input_headers(ev));
    lua_setfield(L, -2, "headers");
    set_field(L, "body", (const char *)evbuffer_pullup(body, -1), blen);
    evhttp_connection_get_peer(evhttp_request_get_connection(ev), &addr, &port);
    lua_pushstring(L, addr);
    lua_setfield(L, -2, "remote_addr");
    return 0;
}

/* Pushes the table of a background job: {id, method = "TICK",
 * internal = true}, which no HTTP request can produce. */
static void
push_job(lua_State *L, struct ab_request *req)
{
    lua_createtable(L, 0, 4);        /* req */
    lua_pushstring(L, req->id);      /* req id */
    lua_setfield(L, -2, "id");       /* req */
    lua_pushliteral(L, "TICK");      /* req m */
    lua_setfield(L, -2, "method");   /* req */
    lua_pushboolean(L, 1);           /* req true */
    lua_setfield(L, -2, "internal"); /* req */
}

/* Builds the request table under lua_pcall, so that running out of
 * Lua memory is an error and not a panic. */
static int
protected_push_request(lua_State *L)
{
    struct ab_request *req = lua_touserdata(L, 1);

    if (req->job) {
        push_job(L, req);
    } else if (push_request(L, req) != 0) {
        lua_pushnil(L);
    }
    return 1;
}

void
ab_host_dispatch(struct ab_generation *gen, struct ab_request *req)
{
    lua_State *L = gen->L, *co;

    lua_pushcfunction(L, protected_push_request); /* f */
    lua_pushlightuserdata(L, req);                /* f req */
    if (lua_pcall(L, 1, 1, 0) != LUA_OK || lua_isnil(L, -1)) {
        lua_pop(L, 1);
        ab_request_send_error(req, 400, "bad_request",
                              "the request path is not valid");
        return;
    }
    co = lua_newthread(L);                        /* reqt co */
    req->co_ref = luaL_ref(L, LUA_REGISTRYINDEX); /* reqt */
    req->co = co;
    req->gen = gen;
    ab_generation_retain(gen);
    *(struct ab_request **)lua_getextraspace(co) = req;
    lua_sethook(co, on_count, LUA_MASKCOUNT, HOOK_EVERY);
    lua_rawgeti(co, LUA_REGISTRYINDEX, gen->handle_ref); /* co: handle */
    lua_xmove(L, co, 1);                                 /* co: handle reqt */
    run(req, 1);
}

void
ab_host_release(struct ab_request *req)
{
    if (req->park_cancel) {
        void (*cancel)(void *) = req->park_cancel;

        req->park_cancel = NULL;
        cancel(req->park_arg);
    }
    if (req->co) {
        *(struct ab_request **)lua_getextraspace(req->co) = NULL;
        luaL_unref(req->gen->L, LUA_REGISTRYINDEX, req->co_ref);
        req->co = NULL;
        req->co_ref = -1;
    }
    if (req->gen) {
        ab_generation_release(req->gen);
        req->gen = NULL;
    }
}
