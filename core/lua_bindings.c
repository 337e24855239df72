/*
 * lua_bindings.c - "broker.core", the C half of the `broker` module:
 * outbound HTTP and sleeping (both yield the request's coroutine), time,
 * environment, crypto, logging and directory listing.
 *
 * Only the broker's own runtime (lua/) requires this module; plugins see
 * the `broker` table that lua/broker/init.lua builds on top of it.
 */
#include <dirent.h>
#include <event2/event.h>
#include <lauxlib.h>
#include <lua.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>

#include "audit.h"
#include "config.h"
#include "crypto.h"
#include "http_client.h"
#include "log.h"
#include "lua_bindings.h"
#include "lua_host.h"
#include "metrics.h"
#include "proxy.h"
#include "request.h"

/* Headers a hook may set at most on one outbound call. */

struct ab_wait;

/* One outbound call of a wait, the argument of its done callback. */
struct wait_slot {
    struct ab_wait *wait;
    int index;
    struct ab_http_call *call; /* NULL once done */
};

/* What a parked coroutine waits on: a batch of calls, or a timer. */
struct ab_wait {
    struct ab_request *req;
    lua_State *L; /* the generation's main state */
    int results_ref;
    int remaining;
    int n;
    struct wait_slot *slots;
    struct event *timer;
};

/* Cancels and frees a wait; the park callback of the request when it
 * ends early, and the end of every wait. */
static void
wait_cancel(void *arg)
{
    struct ab_wait *wait = arg;

    for (int i = 0; i < wait->n; i++) {
        if (wait->slots[i].call) {
            ab_http_cancel(wait->slots[i].call);
        }
    }
    if (wait->timer) {
        event_free(wait->timer);
    }
    luaL_unref(wait->L, LUA_REGISTRYINDEX, wait->results_ref);
    free(wait->slots);
    free(wait);
}

/* Detaches the finished wait and resumes its coroutine with the results
 * table (or nothing, for a timer). */
static void
complete(struct ab_wait *wait, int with_results)
{
    struct ab_request *req = wait->req;

    if (with_results) {
        lua_rawgeti(req->co, LUA_REGISTRYINDEX, wait->results_ref);
    }
    wait_cancel(wait);
    ab_host_resume(req, with_results);
}

/* Pushes the response as a table; runs under lua_pcall. */
static int
push_response(lua_State *L)
{
    const struct ab_http_response *res = lua_touserdata(L, 1);

    lua_createtable(L, 0, 7); /* res */
    if (res->error) {
        lua_pushstring(L, res->error);
        lua_setfield(L, -2, "error");
    }
    lua_pushinteger(L, res->status);
    lua_setfield(L, -2, "status");
    lua_pushlstring(L, res->body ? res->body : "", res->body_len);
    lua_setfield(L, -2, "body");
    lua_pushinteger(L, res->attempts);
    lua_setfield(L, -2, "attempts");
    lua_pushnumber(L, res->elapsed_ms);
    lua_setfield(L, -2, "elapsed_ms");
    lua_pushboolean(L, res->timed_out);
    lua_setfield(L, -2, "timed_out");
    lua_createtable(L, 0, (int)res->nheaders); /* res headers */
    for (size_t i = 0; i < res->nheaders; i++) {
        lua_pushstring(L, res->headers[i].value);
        lua_setfield(L, -2, res->headers[i].name);
    }
    lua_setfield(L, -2, "headers"); /* res */
    return 1;
}

/* Called by the HTTP client when one call of a batch is done. */
static void
on_call_done(const struct ab_http_response *res, void *arg)
{
    struct wait_slot *slot = arg;
    struct ab_wait *wait = slot->wait;
    lua_State *L = wait->L;

    slot->call = NULL;
    lua_rawgeti(L, LUA_REGISTRYINDEX, wait->results_ref); /* results */
    lua_pushcfunction(L, push_response);
    lua_pushlightuserdata(L, (void *)res);
    if (lua_pcall(L, 1, 1, 0) != LUA_OK) { /* results err */
        lua_pop(L, 1);
        lua_createtable(L, 0, 1);
        lua_pushliteral(L, "out of memory");
        lua_setfield(L, -2, "error");
    }
    lua_rawseti(L, -2, slot->index + 1); /* results */
    lua_pop(L, 1);
    if (--wait->remaining == 0) {
        complete(wait, 1);
    }
}

static struct ab_wait *
wait_new(lua_State *L, struct ab_request *req, int n)
{
    struct ab_wait *wait = calloc(1, sizeof(*wait));

    if (wait == NULL ||
        (wait->slots = calloc((size_t)n + 1, sizeof(*wait->slots))) == NULL) {
        free(wait);
        luaL_error(L, "out of memory");
    }
    wait->req = req;
    wait->L = ab_host_generation(L)->L;
    wait->n = n;
    wait->results_ref = LUA_NOREF;
    return wait;
}

/* Fills `hdrs` from the table at `idx`; returns how many. */
static size_t
read_headers(lua_State *L, int idx, struct ab_http_header *hdrs, size_t max)
{
    size_t n = 0;

    if (lua_isnoneornil(L, idx)) {
        return 0;
    }
    luaL_checktype(L, idx, LUA_TTABLE);
    lua_pushnil(L);
    while (lua_next(L, idx) != 0) {
        if (n == max || lua_type(L, -2) != LUA_TSTRING ||
            lua_type(L, -1) != LUA_TSTRING) {
            luaL_error(L, "headers must be at most %d string pairs",
                       MAX_OUT_HEADERS);
        }
        hdrs[n].name = lua_tostring(L, -2);
        hdrs[n].value = lua_tostring(L, -1);
        if (strpbrk(hdrs[n].name, "\r\n:") || strpbrk(hdrs[n].value, "\r\n")) {
            luaL_error(L, "header '%s' holds a line break", hdrs[n].name);
        }
        n++;
        lua_pop(L, 1); /* the key stays for lua_next */
    }
    return n;
}

/* Non-zero if `url` is the Pica base URL or below it. */
static int
is_pica_url(const struct ab_host *host, const char *url)
{
    size_t n = strlen(host->pica_url);

    return host->pica_url[0] && strncmp(url, host->pica_url, n) == 0 &&
           (url[n] == '\0' || url[n] == '/' || url[n] == '?');
}

static long
opt_integer(lua_State *L, int idx, const char *name, long def)
{
    long v;

    lua_getfield(L, idx, name);
    v = lua_isnil(L, -1) ? def : (long)luaL_checkinteger(L, -1);
    lua_pop(L, 1);
    return v;
}

/* Reads the call table at stack index `idx` into `r` (raising on a
 * malformed one).  Strings stay owned by the table on the stack. */
void
ab_lua_parse_call(lua_State *L, int idx, struct ab_http_request *r,
                  struct ab_http_header *hdrs, char *secret_name, size_t size)
{
    struct ab_generation *gen = ab_host_generation(L);
    const struct ab_config *cfg = gen->host->cfg;

    luaL_argcheck(L, lua_istable(L, idx), 1, "an array of call tables");
    memset(r, 0, sizeof(*r));
    lua_getfield(L, idx, "url");
    r->url = luaL_checkstring(L, -1);
    lua_getfield(L, idx, "method");
    r->method = luaL_optstring(L, -1, "GET");
    lua_getfield(L, idx, "body");
    r->body = luaL_optlstring(L, -1, NULL, &r->body_len);
    lua_getfield(L, idx, "headers");
    r->headers = hdrs;
    r->nheaders = read_headers(L, lua_gettop(L), hdrs, MAX_OUT_HEADERS);
    lua_getfield(L, idx, "retry");
    r->retry = lua_toboolean(L, -1);
    r->timeout_ms = opt_integer(L, idx, "timeout_ms", cfg->upstream_timeout_ms);
    r->max_attempts =
        (int)opt_integer(L, idx, "max_attempts", cfg->upstream_attempts);
    r->max_response_bytes =
        (size_t)opt_integer(L, idx, "max_response_bytes", 0);

    /* The secret goes only to Pica, and never through a hook's hands. */
    lua_getfield(L, idx, "pica");
    if (lua_toboolean(L, -1)) {
        if (!is_pica_url(gen->host, r->url) || gen->host->secret == NULL) {
            luaL_error(L, "pica calls must go to the configured pica_url");
        }
        snprintf(secret_name, size, "%s-secret", cfg->pica_header_prefix);
        hdrs[r->nheaders].name = secret_name;
        hdrs[r->nheaders++].value = gen->host->secret;
    }
}

/* Starts call `i` of the array at stack index 1; 0, or -1 if the client
 * refused it. */
static int
start_call(lua_State *L, int i, struct wait_slot *slot)
{
    struct ab_http_header hdrs[MAX_OUT_HEADERS + 1];
    struct ab_http_request r;
    char secret_name[64];
    int top = lua_gettop(L);

    lua_rawgeti(L, 1, i + 1); /* ... call */
    ab_lua_parse_call(L, top + 1, &r, hdrs, secret_name, sizeof(secret_name));
    slot->call = ab_http_start(ab_host_generation(L)->host->http, &r,
                               on_call_done, slot);
    lua_settop(L, top);
    return slot->call ? 0 : -1;
}

/* Raises unless every call of the array at stack index 1 is well
 * formed, so that a batch starts whole or not at all. */
static void
check_calls(lua_State *L, int n)
{
    struct ab_http_header hdrs[MAX_OUT_HEADERS + 1];
    struct ab_http_request r;
    char secret_name[64];
    int top = lua_gettop(L);

    for (int i = 0; i < n; i++) {
        lua_rawgeti(L, 1, i + 1);
        ab_lua_parse_call(L, top + 1, &r, hdrs, secret_name,
                          sizeof(secret_name));
        lua_settop(L, top);
    }
}

/* core.http(calls): starts every call of the array and yields; the
 * coroutine resumes with an array of response tables in the same
 * order. */
static int
l_http(lua_State *L)
{
    struct ab_request *req = ab_host_check_request(L);
    struct ab_wait *wait;
    int n;

    luaL_checktype(L, 1, LUA_TTABLE);
    n = (int)luaL_len(L, 1);
    luaL_argcheck(L, n >= 1 && n <= 1000, 1, "1 to 1000 calls");
    check_calls(L, n);
    wait = wait_new(L, req, n);
    lua_createtable(L, n, 0);                           /* ... results */
    wait->results_ref = luaL_ref(L, LUA_REGISTRYINDEX); /* ... */
    for (int i = 0; i < n; i++) {
        wait->slots[i].wait = wait;
        wait->slots[i].index = i;
        if (start_call(L, i, &wait->slots[i]) != 0) {
            wait_cancel(wait);
            return luaL_error(L, "failed to start outbound call %d", i + 1);
        }
        wait->remaining++;
    }
    ab_host_park(req, wait_cancel, wait);
    return lua_yield(L, 0);
}

/* Called by libevent when a sleep is over. */
static void
on_sleep_done(evutil_socket_t fd, short what, void *arg)
{
    complete(arg, 0);
}

/* core.sleep(ms): yields for `ms` milliseconds without blocking. */
static int
l_sleep(lua_State *L)
{
    struct ab_request *req = ab_host_check_request(L);
    lua_Integer ms = luaL_checkinteger(L, 1);
    struct ab_wait *wait;
    struct timeval tv;

    luaL_argcheck(L, ms >= 0 && ms <= 3600000, 1, "0 to 3600000 ms");
    wait = wait_new(L, req, 0);
    wait->timer =
        evtimer_new(ab_host_generation(L)->host->base, on_sleep_done, wait);
    if (wait->timer == NULL) {
        wait_cancel(wait);
        return luaL_error(L, "out of memory");
    }
    ab_host_park(req, wait_cancel, wait);
    tv.tv_sec = (long)(ms / 1000);
    tv.tv_usec = (long)(ms % 1000) * 1000;
    evtimer_add(wait->timer, &tv);
    return lua_yield(L, 0);
}

/* core.now(): seconds since the epoch, as a float. */
static int
l_now(lua_State *L)
{
    struct timeval tv;

    gettimeofday(&tv, NULL);
    lua_pushnumber(L, (double)tv.tv_sec + (double)tv.tv_usec / 1e6);
    return 1;
}

/* core.monotonic_ms(): milliseconds on a monotonic clock. */
static int
l_monotonic_ms(lua_State *L)
{
    lua_pushnumber(L, ab_now_ms());
    return 1;
}

/* core.env(name): an environment variable, never the Pica secret. */
static int
l_env(lua_State *L)
{
    const char *name = luaL_checkstring(L, 1);
    const char *v;

    if (strcmp(name, "PICA_SECRET_KEY") == 0) {
        return luaL_error(L, "PICA_SECRET_KEY is not readable by hooks");
    }
    v = getenv(name);
    if (v == NULL) {
        lua_pushnil(L);
    } else {
        lua_pushstring(L, v);
    }
    return 1;
}

/* core.log(level, module, message): one log line for the request. */
static int
l_log(lua_State *L)
{
    static const char *const levels[] = {"debug", "info", "warn", "error",
                                         NULL};
    int level = luaL_checkoption(L, 1, NULL, levels);
    const char *module = luaL_checkstring(L, 2);
    const char *msg = luaL_checkstring(L, 3);
    struct ab_request *req = ab_host_current(L);

    if (req && req->identity) {
        AB_LOG((enum ab_log_level)level, module, req->id, "%s identity=%s", msg,
               req->identity);
    } else {
        AB_LOG((enum ab_log_level)level, module, req ? req->id : NULL, "%s",
               msg);
    }
    return 0;
}

/* core.set_identity(id): names the caller in this request's log lines. */
static int
l_set_identity(lua_State *L)
{
    struct ab_request *req = ab_host_check_request(L);
    const char *id = luaL_checkstring(L, 1);
    char *copy = strdup(id);

    if (copy == NULL) {
        return luaL_error(L, "out of memory");
    }
    free(req->identity);
    req->identity = copy;
    return 0;
}

/* core.set_route(name): names the matched route for logs and metrics. */
static int
l_set_route(lua_State *L)
{
    struct ab_request *req = ab_host_check_request(L);

    snprintf(req->route, sizeof(req->route), "%s", luaL_checkstring(L, 1));
    return 0;
}

/* core.audit(line): queues one line for the audit log. */
static int
l_audit(lua_State *L)
{
    size_t len;
    const char *line = luaL_checklstring(L, 1, &len);

    ab_audit_write(line, len);
    return 0;
}

/* core.hook_begin(): a plugin's hook starts; its instructions count
 * against instruction_budget from zero. */
static int
l_hook_begin(lua_State *L)
{
    struct ab_request *req = ab_host_current(L);

    if (req) {
        req->instructions = 0;
        req->in_hook = 1;
    }
    return 0;
}

/* core.hook_end(): the hook returned (or failed). */
static int
l_hook_end(lua_State *L)
{
    struct ab_request *req = ab_host_current(L);

    if (req) {
        req->in_hook = 0;
    }
    return 0;
}

/* core.metric_upstream(endpoint, status, ms): one finished outbound
 * call, for /metrics (status 0: no answer). */
static int
l_metric_upstream(lua_State *L)
{
    ab_metrics_upstream(luaL_checkstring(L, 1), (int)luaL_checkinteger(L, 2),
                        luaL_checknumber(L, 3));
    return 0;
}

/* core.metric_hook_error(hook): a hook failed, for /metrics. */
static int
l_metric_hook_error(lua_State *L)
{
    ab_metrics_hook_error(luaL_checkstring(L, 1));
    return 0;
}

static int
l_hmac_sha256(lua_State *L)
{
    size_t klen, dlen;
    const char *key = luaL_checklstring(L, 1, &klen);
    const char *data = luaL_checklstring(L, 2, &dlen);
    unsigned char out[AB_SHA256_LEN];

    if (ab_hmac_sha256(key, klen, data, dlen, out) != 0) {
        return luaL_error(L, "failed to compute HMAC-SHA256");
    }
    lua_pushlstring(L, (const char *)out, sizeof(out));
    return 1;
}

static int
l_sha256(lua_State *L)
{
    size_t len;
    const char *data = luaL_checklstring(L, 1, &len);
    unsigned char out[AB_SHA256_LEN];

    if (ab_sha256(data, len, out) != 0) {
        return luaL_error(L, "failed to compute SHA-256");
    }
    lua_pushlstring(L, (const char *)out, sizeof(out));
    return 1;
}

static int
l_equals(lua_State *L)
{
    size_t alen, blen;
    const char *a = luaL_checklstring(L, 1, &alen);
    const char *b = luaL_checklstring(L, 2, &blen);

    lua_pushboolean(L, ab_ct_equal(a, alen, b, blen));
    return 1;
}

static int
l_b64url_encode(lua_State *L)
{
    size_t len;
    const char *s = luaL_checklstring(L, 1, &len);
    luaL_Buffer b;
    char *out = luaL_buffinitsize(L, &b, ab_base64url_encoded_len(len) + 1);

    luaL_pushresultsize(
        &b, ab_base64url_encode((const unsigned char *)s, len, out));
    return 1;
}

static int
l_b64url_decode(lua_State *L)
{
    size_t len, olen;
    const char *s = luaL_checklstring(L, 1, &len);
    luaL_Buffer b;
    unsigned char *out =
        (unsigned char *)luaL_buffinitsize(L, &b, len * 3 / 4 + 3);

    if (ab_base64url_decode(s, len, out, &olen) != 0) {
        lua_pushnil(L);
        lua_pushliteral(L, "invalid base64url");
        return 2;
    }
    luaL_pushresultsize(&b, olen);
    return 1;
}

static int
l_random_bytes(lua_State *L)
{
    lua_Integer n = luaL_checkinteger(L, 1);
    unsigned char buf[256];

    luaL_argcheck(L, n > 0 && n <= (lua_Integer)sizeof(buf), 1,
                  "1 to 256 bytes");
    if (ab_random_bytes(buf, (size_t)n) != 0) {
        return luaL_error(L, "failed to get random bytes");
    }
    lua_pushlstring(L, (const char *)buf, (size_t)n);
    return 1;
}

/* core.list_dir(path): the names of the regular entries, sorted, or
 * nil and the reason. */
static int
l_list_dir(lua_State *L)
{
    const char *path = luaL_checkstring(L, 1);
    DIR *d = opendir(path);
    struct dirent *e;
    int n = 0;

    if (d == NULL) {
        luaL_pushfail(L);
        lua_pushfstring(L, "cannot open directory %s", path);
        return 2;
    }
    lua_newtable(L); /* names */
    while ((e = readdir(d)) != NULL) {
        if (e->d_name[0] != '.') {
            lua_pushstring(L, e->d_name);
            lua_rawseti(L, -2, ++n);
        }
    }
    closedir(d);
    lua_getglobal(L, "table");   /* names table */
    lua_getfield(L, -1, "sort"); /* names table sort */
    lua_pushvalue(L, -3);        /* ... sort names */
    lua_call(L, 1, 0);           /* names table */
    lua_pop(L, 1);               /* names */
    return 1;
}

int
ab_luaopen_core(lua_State *L)
{
    static const luaL_Reg funcs[] = {
        {"http", l_http},
        {"sleep", l_sleep},
        {"now", l_now},
        {"monotonic_ms", l_monotonic_ms},
        {"env", l_env},
        {"log", l_log},
        {"set_identity", l_set_identity},
        {"set_route", l_set_route},
        {"audit", l_audit},
        {"proxy", ab_proxy_lua},
        {"hook_begin", l_hook_begin},
        {"hook_end", l_hook_end},
        {"metric_upstream", l_metric_upstream},
        {"metric_hook_error", l_metric_hook_error},
        {"hmac_sha256", l_hmac_sha256},
        {"sha256", l_sha256},
        {"equals", l_equals},
        {"b64url_encode", l_b64url_encode},
        {"b64url_decode", l_b64url_decode},
        {"random_bytes", l_random_bytes},
        {"list_dir", l_list_dir},
        {NULL, NULL},
    };

    luaL_newlib(L, funcs);
    lua_pushstring(L, AB_VERSION);
    lua_setfield(L, -2, "version");
    return 1;
}
