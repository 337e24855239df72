/*
 * test_pg.c - tests for core/pg.c, "broker.pg", against a real server.
 *
 * The server is the one AB_PG_TEST_URL names (a libpq connection string
 * or URI of a scratch database: the tests create and drop a table
 * test_pg_items there).  Without it, or if the server does not answer,
 * every test is skipped with a message and the last line is still
 * "0 passed, 0 failed".  spec/integration/postgres_spec.lua runs this
 * binary against its throwaway server.
 *
 * Queries only work from a request's coroutine, so each test runs Lua
 * chunks as background jobs of a fake server, through the real Lua host
 * (ab_host_dispatch) and event loop.  Each test gets a fresh state with
 * the standard libraries, the module as global `pg`, `core` (for
 * core.sleep), the global `url` and the helpers of PRELUDE.
 *
 * No framework: CHECK() records a failure and goes on.  The last line
 * printed is "N passed, N failed", and the exit status is non-zero if
 * any test failed.
 */
#include "pg.h"

#include <arpa/inet.h>
#include <event2/event.h>
#include <lauxlib.h>
#include <libpq-fe.h>
#include <lua.h>
#include <lualib.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "config.h"
#include "log.h"
#include "lua_host.h"
#include "request.h"
#include "server.h"

static int tests_passed;
static int tests_failed;
static int current_failed;
static const char *current_name;

/* The connection string of the scratch database. */
static const char *url;

/* The fake host, server and generation the jobs run in; the runner
 * owns them.  L is fx.gen.L. */
static struct {
    struct event_base *base;
    struct event *tick;
    struct ab_config cfg;
    struct ab_host host;
    struct ab_server server;
    struct ab_generation gen;
} fx;
static lua_State *L;

#define CHECK(cond) check((cond), #cond, __LINE__)

static void
check(int ok, const char *what, int line)
{
    if (!ok) {
        current_failed = 1;
        fprintf(stderr, "FAIL %s (line %d): %s\n", current_name, line, what);
    }
}

/* Helpers every chunk may use:
 *   eq(got, want, what)       raises unless got == want (and same type)
 *   raises(msg, f, ...)       f(...) raises an error containing msg
 *   fails(prefix, v, err)     v is nil and err starts with prefix
 *   job(body)                 the handle function of a job running body,
 *                             which counts it in `finished` and keeps
 *                             its error in `failures`
 *   ms()                      milliseconds on a monotonic clock */
static const char PRELUDE[] =
    "function eq(got, want, what)\n"
    "  if got ~= want or math.type(got) ~= math.type(want) then\n"
    "    error(string.format('%s: got %s (%s), want %s (%s)',\n"
    "                        what or 'value', tostring(got),\n"
    "                        math.type(got) or type(got), tostring(want),\n"
    "                        math.type(want) or type(want)), 2)\n"
    "  end\n"
    "end\n"
    "function raises(msg, f, ...)\n"
    "  local ok, err = pcall(f, ...)\n"
    "  if ok then error('did not raise', 2) end\n"
    "  if not tostring(err):find(msg, 1, true) then\n"
    "    error(string.format('error %q lacks %q', tostring(err), msg), 2)\n"
    "  end\n"
    "end\n"
    "function fails(prefix, v, err)\n"
    "  if v ~= nil or type(err) ~= 'string' then\n"
    "    error('did not fail: ' .. tostring(v), 2)\n"
    "  end\n"
    "  if err:sub(1, #prefix) ~= prefix then\n"
    "    error(string.format('error %q lacks prefix %q', err, prefix), 2)\n"
    "  end\n"
    "end\n"
    "finished, failures = 0, {}\n"
    "function job(body)\n"
    "  return function(req)\n"
    "    local ok, err = xpcall(body, debug.traceback, req)\n"
    "    if not ok then failures[#failures + 1] = err end\n"
    "    finished = finished + 1\n"
    "    return 200\n"
    "  end\n"
    "end\n"
    "function ms() return core.monotonic_ms() end\n";

/* Allocator of the test states: plain realloc. */
static void *
on_alloc(void *ud, void *ptr, size_t osize, size_t nsize)
{
    (void)ud;
    (void)osize;
    if (nsize == 0) {
        free(ptr);
        return NULL;
    }
    return realloc(ptr, nsize);
}

/* Called by libevent every 50 ms, so that the loop wakes up to look at
 * the test's progress even when nothing else is pending. */
static void
on_tick(evutil_socket_t fd, short what, void *arg)
{
}

/* Prints Lua's error at the top of the stack and pops it. */
static void
print_error(void)
{
    fprintf(stderr, "  %s: %s\n", current_name, lua_tostring(L, -1));
    lua_pop(L, 1); /* */
}

/* Runs chunk src on the main state (outside any request); 1 if it ran
 * without error. */
static int
run_main(const char *src)
{
    if (luaL_dostring(L, src) != LUA_OK) { /* err */
        print_error();
        return 0;
    }
    return 1;
}

/* Starts the Lua function body `src` as a job, a request's coroutine,
 * whose deadline is `timeout_ms` away.  1 if it started. */
static int
start_job(const char *src, long timeout_ms)
{
    char chunk[8192];
    struct ab_request *req;

    snprintf(chunk, sizeof(chunk), "return job(function(req)\n%s\nend)", src);
    if (luaL_dostring(L, chunk) != LUA_OK) { /* err */
        print_error();
        return 0;
    }
    luaL_unref(L, LUA_REGISTRYINDEX, fx.gen.handle_ref);
    fx.gen.handle_ref = luaL_ref(L, LUA_REGISTRYINDEX); /* */
    fx.cfg.request_timeout_ms = timeout_ms;
    req = ab_request_new_job(&fx.server);
    if (req == NULL) {
        return 0;
    }
    ab_host_dispatch(&fx.gen, req);
    fx.server.job_running = 0; /* the jobs of a test may overlap */
    return 1;
}

/* The integer global `name`. */
static lua_Integer
global_int(const char *name)
{
    lua_Integer n;

    lua_getglobal(L, name); /* n */
    n = lua_tointeger(L, -1);
    lua_pop(L, 1); /* */
    return n;
}

/* Runs the loop until `n` jobs have finished or `limit_ms` passed;
 * returns 1 if they finished without failures (printing those). */
static int
wait_jobs(lua_Integer n, double limit_ms)
{
    double until = ab_now_ms() + limit_ms;
    lua_Integer nfail;

    while (global_int("finished") < n && ab_now_ms() < until) {
        event_base_loop(fx.base, EVLOOP_ONCE);
    }
    lua_getglobal(L, "failures"); /* failures */
    nfail = luaL_len(L, -1);
    for (lua_Integer i = 1; i <= nfail; i++) {
        lua_rawgeti(L, -1, i); /* failures err */
        print_error();         /* failures */
    }
    lua_pop(L, 1); /* */
    if (global_int("finished") < n) {
        fprintf(stderr, "  %s: %lld of %lld jobs finished\n", current_name,
                (long long)global_int("finished"), (long long)n);
    }
    return global_int("finished") >= n && nfail == 0;
}

/* Runs one job to its end; 1 if it passed. */
static int
job(const char *src)
{
    lua_Integer before = global_int("finished");

    return start_job(src, 10000) && wait_jobs(before + 1, 12000);
}

/* A fresh generation state with the module, the helpers and a pool
 * `db` of two connections; NULL on failure. */
static lua_State *
new_state(void)
{
    memset(&fx.gen, 0, sizeof(fx.gen));
    fx.gen.host = &fx.host;
    fx.gen.refs = 1;
    fx.gen.handle_ref = LUA_NOREF;
    fx.gen.L = L = lua_newstate(on_alloc, &fx.gen);
    if (L == NULL) {
        return NULL;
    }
    *(struct ab_request **)lua_getextraspace(L) = NULL;
    luaL_openlibs(L);
    luaL_requiref(L, "pg", ab_luaopen_pg, 1);     /* pg */
    luaL_requiref(L, "core", ab_luaopen_core, 1); /* pg core */
    lua_pop(L, 2);                                /* */
    lua_pushstring(L, url);                       /* url */
    lua_setglobal(L, "url");                      /* */
    ab_pg_set_base(L, fx.base);
    if (!run_main(PRELUDE) || !run_main("db = pg.pool(url, 2)")) {
        lua_close(L);
        return NULL;
    }
    return L;
}

/* ------------------------------------------------------------------ */
/* Values                                                              */
/* ------------------------------------------------------------------ */

static void
test_columns_become_lua_values_by_type(void)
{
    CHECK(job("local r = assert(db:query([[SELECT 1::int2 AS a,\n"
              "  2::int4 AS b, 9007199254740993::int8 AS c, 1.5::float8 AS d,\n"
              "  2::float4 AS e, 'Infinity'::float8 AS f, true AS g,\n"
              "  false AS h, NULL::text AS i, 'x y'::text AS j,\n"
              "  '2024-01-02'::date AS k, '{1,2}'::int[] AS l]]))\n"
              "eq(#r, 1)\n"
              "r = r[1]\n"
              "eq(r.a, 1) eq(r.b, 2) eq(r.c, 9007199254740993)\n"
              "eq(r.d, 1.5) eq(r.e, 2.0) eq(r.f, math.huge)\n"
              "eq(r.g, true) eq(r.h, false) eq(r.i, nil)\n"
              "eq(r.j, 'x y') eq(r.k, '2024-01-02') eq(r.l, '{1,2}')\n"));
}

static void
test_numeric_is_a_number_only_when_exact(void)
{
    CHECK(job("local r = assert(db:query([[SELECT 42::numeric AS a,\n"
              "  1.10::numeric AS b, -0.000123::numeric AS c,\n"
              "  12345678901234567890::numeric AS d,\n"
              "  0.12345678901234567::numeric AS e,\n"
              "  'NaN'::numeric AS f, 1e300::numeric * 1e300 AS g]]))[1]\n"
              "eq(r.a, 42) eq(r.b, 1.1) eq(r.c, -0.000123)\n"
              "eq(r.d, '12345678901234567890')\n"
              "eq(r.e, '0.12345678901234567') eq(r.f, 'NaN')\n"
              "eq(type(r.g), 'string')\n"));
}

static void
test_parameters_are_bound_by_type(void)
{
    CHECK(job("local evil = \"x'); DROP TABLE nothing; --\"\n"
              "local r = assert(db:query([[SELECT $1 AS i, $2 AS f,\n"
              "  $3 AS b, $4::text AS s, $5::text IS NULL AS n,\n"
              "  $6 + 1 AS sum, $7::text AS e]], 7, 0.25, true, 'h\\u{e9}',\n"
              "  nil, math.maxinteger - 1, evil))[1]\n"
              "eq(r.i, 7) eq(r.f, 0.25) eq(r.b, true) eq(r.s, 'h\\u{e9}')\n"
              "eq(r.n, true) eq(r.sum, math.maxinteger) eq(r.e, evil)\n"
              "r = assert(db:query('SELECT $1::float8 AS x', 1/0))[1]\n"
              "eq(r.x, math.huge)\n"));
}

static void
test_unbindable_values_raise(void)
{
    CHECK(job("raises('cannot bind a table', db.query, db, 'SELECT $1', {})\n"
              "raises('cannot bind a function', db.run, db, 'SELECT $1',\n"
              "       print)\n"
              "raises('NUL byte', db.query, db, 'SELECT $1', 'a\\0b')\n"
              "raises('NUL byte', db.query, db, 'SELECT 1\\0')\n"
              "raises('string expected', db.query, db)\n"));
}

/* ------------------------------------------------------------------ */
/* Statements and errors                                               */
/* ------------------------------------------------------------------ */

static void
test_run_returns_affected_rows(void)
{
    CHECK(job("assert(db:run('DROP TABLE IF EXISTS test_pg_items'))\n"
              "eq(db:run([[CREATE TABLE test_pg_items (k text PRIMARY KEY,\n"
              "  v int)]]), 0)\n"
              "eq(db:run([[INSERT INTO test_pg_items VALUES ($1, 1),\n"
              "  ($2, 2), ($3, 3)]], 'a', 'b', 'c'), 3)\n"
              "eq(db:run('UPDATE test_pg_items SET v = v + 1 WHERE v > $1',\n"
              "  1), 2)\n"
              "eq(db:run('SELECT 1'), 1)\n"
              "eq(#db:query('SELECT * FROM test_pg_items WHERE v = 0'), 0)\n"));
}

static void
test_errors_name_their_kind(void)
{
    CHECK(job("fails('pg: syntax error', db:query('SELEC 1'))\n"
              "fails('pg: relation \"nowhere\" does not exist',\n"
              "      db:query('SELECT * FROM nowhere'))\n"
              "fails('pg: no SQL statement', db:query(''))\n"
              "local v, err = db:query('SELECT $1::int', 'secret')\n"
              "fails('pg: invalid input syntax for type integer', v, err)\n"
              "assert(not err:find('secret'), 'no bound value')\n"
              "v, err = db:run('INSERT INTO test_pg_items VALUES ($1, 1)',\n"
              "  'a')\n"
              "fails('pg: constraint: duplicate key', v, err)\n"
              "assert(not err:find('(k)=(a)', 1, true), 'no DETAIL')\n"
              "fails('pg: ', db:query('SELECT 1; SELECT 2'))\n"
              "eq(db:query('SELECT 3 AS x')[1].x, 3)\n"));
}

static void
test_misuse_raises(void)
{
    CHECK(run_main(
        "raises('connection string', pg.pool, 'x=', 1)\n"
        "raises('1 to 100', pg.pool, url, 0)\n"
        "raises('1 to 100', pg.pool, url, 101)\n"
        "raises('number expected', pg.pool, url)\n"
        "raises(\"request's own coroutine\", db.query, db, 'SELECT 1')\n"
        "raises(\"request's own coroutine\", db.transaction, db,\n"
        "       function() end)\n"));
    CHECK(job("local co = coroutine.wrap(function()\n"
              "  return db:query('SELECT 1') end)\n"
              "raises(\"request's own coroutine\", co)\n"
              "raises('function expected', db.transaction, db, 1)\n"));
}

/* ------------------------------------------------------------------ */
/* Transactions                                                        */
/* ------------------------------------------------------------------ */

static void
test_transaction_commits_and_returns_results(void)
{
    CHECK(job("local a, b = db:transaction(function(tx)\n"
              "  eq(tx:run('INSERT INTO test_pg_items VALUES ($1, 10)',\n"
              "     'tx1'), 1)\n"
              "  eq(tx:query('SELECT v FROM test_pg_items WHERE k = $1',\n"
              "     'tx1')[1].v, 10)\n"
              "  return 'done', 2\n"
              "end)\n"
              "eq(a, 'done') eq(b, 2)\n"
              "eq(db:transaction(function() end), true)\n"
              "eq(#db:query([[SELECT 1 FROM test_pg_items\n"
              "  WHERE k = 'tx1']]), 1)\n"));
}

static void
test_transaction_rolls_back_on_raise_or_nil_err(void)
{
    CHECK(job("fails('[string', db:transaction(function(tx)\n"
              "  assert(tx:run([[INSERT INTO test_pg_items\n"
              "    VALUES ('tx2', 1)]]))\n"
              "  error('boom')\n"
              "end))\n"
              "local v, err = db:transaction(function(tx)\n"
              "  assert(tx:run([[INSERT INTO test_pg_items\n"
              "    VALUES ('tx3', 1)]]))\n"
              "  return nil, 'nope'\n"
              "end)\n"
              "eq(v, nil) eq(err, 'nope')\n"
              "eq(#db:query([[SELECT 1 FROM test_pg_items\n"
              "  WHERE k IN ('tx2', 'tx3')]]), 0)\n"));
}

static void
test_failed_statement_makes_commit_fail(void)
{
    CHECK(job("local saved\n"
              "fails('pg: transaction rolled back', db:transaction(\n"
              "  function(tx)\n"
              "    saved = tx\n"
              "    assert(tx:run([[INSERT INTO test_pg_items\n"
              "      VALUES ('tx4', 1)]]))\n"
              "    fails('pg: constraint: ', tx:run([[INSERT INTO\n"
              "      test_pg_items VALUES ('tx4', 2)]]))\n"
              "    return true\n"
              "  end))\n"
              "raises('transaction is over', saved.query, saved, 'SELECT 1')\n"
              "eq(#db:query([[SELECT 1 FROM test_pg_items\n"
              "  WHERE k = 'tx4']]), 0)\n"));
}

static void
test_transaction_holds_one_connection(void)
{
    CHECK(job("db:transaction(function(tx)\n"
              "  local a = tx:query('SELECT pg_backend_pid() AS p')[1].p\n"
              "  core.sleep(20)\n"
              "  eq(tx:query('SELECT pg_backend_pid() AS p')[1].p, a)\n"
              "  eq(tx:query([[SELECT txid_current_if_assigned() IS NULL\n"
              "     AS x]])[1].x, true)\n"
              "  local other = db:query('SELECT pg_backend_pid() AS p')[1].p\n"
              "  assert(other ~= a, 'the pool used the pinned connection')\n"
              "end)\n"));
}

/* ------------------------------------------------------------------ */
/* The pool                                                            */
/* ------------------------------------------------------------------ */

static void
test_waiting_callers_are_served_in_order(void)
{
    const char *src = "assert(one:query('SELECT pg_sleep(0.05)'))\n"
                      "order[#order + 1] = req.id\n";

    CHECK(run_main("one, order = pg.pool(url, 1), {}"));
    CHECK(start_job(src, 10000) && start_job(src, 10000) &&
          start_job(src, 10000));
    CHECK(wait_jobs(3, 5000));
    CHECK(run_main("eq(#order, 3)\n"
                   "assert(order[1] < order[2] and order[2] < order[3])\n"));
}

static void
test_full_queue_answers_busy(void)
{
    const char *src = "local v, err = tiny:query('SELECT pg_sleep(0.1)')\n"
                      "if v then ok = ok + 1 else\n"
                      "  eq(err, 'pg: busy: pool queue full') busy = busy + 1\n"
                      "end\n";

    CHECK(run_main("tiny, ok, busy = pg.pool(url, 1, 1), 0, 0"));
    CHECK(start_job(src, 10000) && start_job(src, 10000) &&
          start_job(src, 10000));
    CHECK(wait_jobs(3, 5000));
    CHECK(run_main("eq(ok, 1) eq(busy, 2)"));
}

static void
test_ended_request_drains_its_query(void)
{
    CHECK(run_main("one = pg.pool(url, 1)"));
    CHECK(job("pid = one:query('SELECT pg_backend_pid() AS p')[1].p"));

    /* The deadline ends the request while its query sleeps. */
    CHECK(start_job("one:query('SELECT pg_sleep(0.4), 1 AS stale')\n"
                    "error('not cancelled')",
                    100));
    CHECK(job("local r = assert(one:query([[SELECT pg_backend_pid() AS p,\n"
              "  2 AS fresh]]))[1]\n"
              "eq(r.fresh, 2) eq(r.stale, nil)\n"
              "eq(r.p, pid, 'the connection was reused')\n"));
}

static void
test_ended_request_leaves_the_queue(void)
{
    CHECK(run_main("one = pg.pool(url, 1)"));
    CHECK(start_job("one:query('SELECT pg_sleep(0.3)')", 10000));
    CHECK(start_job("one:run([[INSERT INTO test_pg_items\n"
                    "  VALUES ('queued', 1)]])",
                    100));
    CHECK(wait_jobs(1, 5000));
    CHECK(job("eq(#one:query([[SELECT 1 FROM test_pg_items\n"
              "  WHERE k = 'queued']]), 0)"));
}

static void
test_abandoned_transaction_is_rolled_back(void)
{
    CHECK(run_main("one = pg.pool(url, 1)"));
    CHECK(start_job("one:transaction(function(tx)\n"
                    "  assert(tx:run([[INSERT INTO test_pg_items\n"
                    "    VALUES ('abandoned', 1)]]))\n"
                    "  tx:query('SELECT pg_sleep(0.3)')\n"
                    "end)\n",
                    100));
    CHECK(job("eq(#one:query([[SELECT 1 FROM test_pg_items\n"
              "  WHERE k = 'abandoned']]), 0)"));
}

/* A listening socket that never answers: returns its port, or -1. */
static int
silent_server(int *fd)
{
    struct sockaddr_in sa = {.sin_family = AF_INET};
    socklen_t len = sizeof(sa);

    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    *fd = socket(AF_INET, SOCK_STREAM, 0);
    if (*fd < 0 || bind(*fd, (struct sockaddr *)&sa, sizeof(sa)) != 0 ||
        listen(*fd, 8) != 0 ||
        getsockname(*fd, (struct sockaddr *)&sa, &len) != 0) {
        return -1;
    }
    return ntohs(sa.sin_port);
}

static void
test_unreachable_server_answers_unavailable_promptly(void)
{
    char src[512];
    int fd = -1, port = silent_server(&fd);

    CHECK(port > 0);
    snprintf(src, sizeof(src),
             "local refused = pg.pool('host=127.0.0.1 port=1', 2)\n"
             "local silent = pg.pool('host=127.0.0.1 port=%d', 2)\n"
             "local t = ms()\n"
             "fails('pg: unavailable: ', refused:query('SELECT 1'))\n"
             "fails('pg: unavailable: ', refused:run('SELECT 1'))\n"
             "fails('pg: unavailable: ', refused:transaction(print))\n"
             "assert(ms() - t < 1000, 'refused slowly')\n"
             "t = ms()\n"
             "fails('pg: unavailable: timed out', silent:query('SELECT 1'))\n"
             "t = ms() - t\n"
             "assert(t > 1500 and t < 3000, 'timed out after ' .. t)\n",
             port);
    CHECK(job(src));
    close(fd);
}

static void
test_broken_idle_connection_is_replaced(void)
{
    CHECK(run_main("one = pg.pool(url, 1)"));
    CHECK(job("local a = one:query('SELECT pg_backend_pid() AS p')[1].p\n"
              "eq(db:query('SELECT pg_terminate_backend($1::int) AS x',\n"
              "  a)[1].x, true)\n"
              "core.sleep(100)\n"
              "local b = assert(one:query('SELECT pg_backend_pid() AS p'))\n"
              "assert(b[1].p ~= a, 'a new connection')\n"));
}

static void
test_connection_lost_inside_transaction_fails_it(void)
{
    CHECK(run_main("one = pg.pool(url, 1)"));
    CHECK(job("fails('pg: unavailable: ', one:transaction(function(tx)\n"
              "  local a = tx:query('SELECT pg_backend_pid() AS p')[1].p\n"
              "  db:query('SELECT pg_terminate_backend($1::int)', a)\n"
              "  core.sleep(100)\n"
              "  return tx:query('SELECT 1')\n"
              "end))\n"
              "eq(one:query('SELECT 5 AS x')[1].x, 5)\n"));
}

static void
test_collected_pool_closes_its_connections(void)
{
    CHECK(job("local p = pg.pool(url, 2)\n"
              "assert(p:run(\"SET application_name = 'gc_test'\"))\n"
              "local q = [[SELECT count(*) AS n FROM pg_stat_activity\n"
              "  WHERE application_name = 'gc_test']]\n"
              "eq(db:query(q)[1].n, 1)\n"
              "p = nil\n"
              "collectgarbage() collectgarbage()\n"
              "local t = ms()\n"
              "while db:query(q)[1].n > 0 and ms() - t < 2000 do\n"
              "  core.sleep(20)\n"
              "end\n"
              "eq(db:query(q)[1].n, 0)\n"));
}

static void
test_cleanup(void)
{
    CHECK(job("assert(db:run('DROP TABLE test_pg_items'))"));
}

static const struct {
    const char *name;
    void (*fn)(void);
} tests[] = {
#define T(f)                                                                   \
    {                                                                          \
#f, f                                                                  \
    }
    T(test_columns_become_lua_values_by_type),
    T(test_numeric_is_a_number_only_when_exact),
    T(test_parameters_are_bound_by_type),
    T(test_unbindable_values_raise),
    T(test_run_returns_affected_rows),
    T(test_errors_name_their_kind),
    T(test_misuse_raises),
    T(test_transaction_commits_and_returns_results),
    T(test_transaction_rolls_back_on_raise_or_nil_err),
    T(test_failed_statement_makes_commit_fail),
    T(test_transaction_holds_one_connection),
    T(test_waiting_callers_are_served_in_order),
    T(test_full_queue_answers_busy),
    T(test_ended_request_drains_its_query),
    T(test_ended_request_leaves_the_queue),
    T(test_abandoned_transaction_is_rolled_back),
    T(test_unreachable_server_answers_unavailable_promptly),
    T(test_broken_idle_connection_is_replaced),
    T(test_connection_lost_inside_transaction_fails_it),
    T(test_collected_pool_closes_its_connections),
    T(test_cleanup),
#undef T
};

/* Runs the loop until every request of the test has ended (each holds
 * a reference to the generation), so that the state can close; 1 if
 * they did within limit_ms. */
static int
requests_end(double limit_ms)
{
    double until = ab_now_ms() + limit_ms;

    while (fx.gen.refs > 1 && ab_now_ms() < until) {
        event_base_loop(fx.base, EVLOOP_ONCE);
    }
    return fx.gen.refs == 1;
}

/* Non-zero if the scratch server answers (a blocking check, before
 * any test runs). */
static int
server_reachable(void)
{
    PGconn *c;
    int ok;

    if (url == NULL || url[0] == '\0') {
        printf("skipped: set AB_PG_TEST_URL to a scratch database's "
               "connection string to run these tests\n");
        return 0;
    }
    c = PQconnectdb(url);
    ok = PQstatus(c) == CONNECTION_OK;
    if (!ok) {
        printf("skipped: no PostgreSQL server answers at AB_PG_TEST_URL: "
               "%s",
               PQerrorMessage(c));
    }
    PQfinish(c);
    return ok;
}

/* Sets up the loop, the config, the fake host and server. */
static int
setup(void)
{
    struct timeval every = {0, 50000};

    ab_log_threshold = AB_LOG_ERROR;
    fx.base = event_base_new();
    if (fx.base == NULL || ab_config_defaults(&fx.cfg) != 0) {
        return -1;
    }
    fx.tick = event_new(fx.base, -1, EV_PERSIST, on_tick, NULL);
    event_add(fx.tick, &every);
    fx.host.base = fx.base;
    fx.host.cfg = &fx.cfg;
    fx.host.pica_url = "";
    fx.server.kind = AB_SERVER_API;
    fx.server.base = fx.base;
    fx.server.cfg = &fx.cfg;
    return 0;
}

int
main(void)
{
    url = getenv("AB_PG_TEST_URL");
    if (!server_reachable()) {
        printf("0 passed, 0 failed\n");
        return 0;
    }
    if (setup() != 0) {
        fprintf(stderr, "failed to set the event loop up\n");
        return 1;
    }
    for (size_t i = 0; i < sizeof(tests) / sizeof(tests[0]); i++) {
        current_name = tests[i].name;
        current_failed = 0;
        if (new_state() == NULL) {
            current_failed = 1;
        } else {
            tests[i].fn();
            CHECK(lua_gettop(L) == 0);
            CHECK(requests_end(15000));
            if (fx.gen.refs == 1) {
                lua_close(L); /* else leaked: a request still uses it */
            }
        }
        tests_failed += current_failed;
        tests_passed += !current_failed;
    }
    event_free(fx.tick);
    event_base_free(fx.base);
    ab_config_free(&fx.cfg);
    printf("%d passed, %d failed\n", tests_passed, tests_failed);
    return tests_failed == 0 ? 0 : 1;
}
