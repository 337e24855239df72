/*
 * test_sqlite.c - tests for core/sqlite.c, "broker.sqlite".
 *
 * Each test runs Lua chunks in a fresh state that has the standard
 * libraries, the module as global `sqlite`, the helpers of PRELUDE and
 * a data directory inside one temporary directory (made with mkdtemp
 * and removed at the end).  Database files stay between tests, so each
 * test uses names of its own.
 *
 * No framework: CHECK() records a failure and goes on.  The last line
 * printed is "N passed, N failed", and the exit status is non-zero if
 * any test failed.
 */
#include "sqlite.h"

#include <dirent.h>
#include <errno.h>
#include <ftw.h>
#include <lauxlib.h>
#include <lua.h>
#include <lualib.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

static int tests_passed;
static int tests_failed;
static int current_failed;
static const char *current_name;

/* The state of the running test; the runner owns it. */
static lua_State *L;

/* The temporary directory, and the data directory inside it. */
static char tmp_dir[] = "/tmp/test_sqlite.XXXXXX";
static char data_dir[64];

/* Bytes the states hold, and the most they may hold (0: no limit). */
static size_t mem_used;
static size_t mem_limit;

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
 *   eq(got, want, what)       raises unless got == want
 *   raises(msg, f, ...)       f(...) raises an error containing msg
 *   fails(prefix, v, err)     v is nil and err starts with prefix
 *   count(db, table)          the number of rows of table */
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
    "function count(db, t)\n"
    "  return assert(db:query('SELECT count(*) AS n FROM ' .. t))[1].n\n"
    "end\n";

/* Runs chunk src in L; returns 1 if it ran without error, else prints
 * the error and returns 0.  Leaves the stack as it found it. */
static int
run(const char *src)
{
    int ok = luaL_loadbuffer(L, src, strlen(src), current_name) == LUA_OK &&
             lua_pcall(L, 0, 0, 0) == LUA_OK; /* | err */

    if (!ok) {
        fprintf(stderr, "  %s: %s\n", current_name, lua_tostring(L, -1));
        lua_pop(L, 1); /* */
    }
    return ok;
}

/* The number of file descriptors this process has open, or -1. */
static int
open_fds(void)
{
    DIR *d = opendir("/proc/self/fd");
    int n = 0;

    if (d == NULL) {
        return -1;
    }
    while (readdir(d) != NULL) {
        n++;
    }
    closedir(d);
    return n;
}

/* ------------------------------------------------------------------ */
/* Opening                                                             */
/* ------------------------------------------------------------------ */

static lua_State *new_state(void);

static void
test_open_creates_the_data_dir_and_the_file(void)
{
    char dir[96], file[128];
    struct stat st;

    snprintf(dir, sizeof(dir), "%s/fresh", tmp_dir);
    snprintf(file, sizeof(file), "%s/new.db", dir);
    CHECK(stat(dir, &st) != 0);
    ab_sqlite_set_data_dir(L, dir);
    CHECK(run("local db = assert(sqlite.open('new.db'))\n"
              "eq(tostring(db):match('^broker.sqlite.db: '), "
              "'broker.sqlite.db: ')\n"
              "assert(db:close())\n"));
    CHECK(stat(dir, &st) == 0 && S_ISDIR(st.st_mode) &&
          (st.st_mode & 0777) == 0700);
    CHECK(stat(file, &st) == 0 && S_ISREG(st.st_mode));
}

static void
test_connection_uses_wal_normal_sync_and_foreign_keys(void)
{
    CHECK(run("local db = assert(sqlite.open('pragma.db'))\n"
              "eq(db:query('PRAGMA journal_mode')[1].journal_mode, 'wal')\n"
              "eq(db:query('PRAGMA synchronous')[1].synchronous, 1)\n"
              "eq(db:query('PRAGMA foreign_keys')[1].foreign_keys, 1)\n"
              "db:close()\n"));
}

static void
test_bad_names_raise(void)
{
    CHECK(run("for _, name in ipairs { '../x', 'a/b', '', '.hidden', 'a..b',\n"
              "    '-x', '_x', 'a b', 'a\\0b', 'x.db-wal', 'x-shm',\n"
              "    'x-journal', '/etc/passwd', 'x\\n' } do\n"
              "  raises('bad argument #1 to', sqlite.open, name)\n"
              "end\n"
              "raises('string expected', sqlite.open)\n"
              "raises('string expected', sqlite.open, {})\n"));
}

static void
test_good_names_open(void)
{
    CHECK(run("for _, name in ipairs { 'a', 'A.b-c_d', '0x.sqlite3',\n"
              "                        'wal', 'a.wal' } do\n"
              "  assert(sqlite.open(name)):close()\n"
              "end\n"));
}

static void
test_open_without_data_dir_fails(void)
{
    ab_sqlite_set_data_dir(L, NULL);
    CHECK(run("fails('sqlite: no data directory', sqlite.open('x.db'))"));
}

static void
test_open_of_a_non_database_fails(void)
{
    char path[128];
    FILE *f;

    snprintf(path, sizeof(path), "%s/adir", data_dir);
    CHECK(mkdir(data_dir, 0700) == 0 || errno == EEXIST);
    CHECK(mkdir(path, 0700) == 0);
    snprintf(path, sizeof(path), "%s/text.db", data_dir);
    CHECK((f = fopen(path, "w")) != NULL &&
          fputs("not a database, but long enough to have a header\n", f) >= 0 &&
          fclose(f) == 0);
    CHECK(run("fails('sqlite: ', sqlite.open('adir'))\n"
              "fails('sqlite: file is not a database',\n"
              "      sqlite.open('text.db'))\n"));
}

static void
test_open_in_unwritable_place_fails(void)
{
    ab_sqlite_set_data_dir(L, "/proc/no/such/dir");
    CHECK(run("fails('sqlite: cannot create data directory',\n"
              "      sqlite.open('x.db'))"));
}

/* ------------------------------------------------------------------ */
/* Values and parameters                                               */
/* ------------------------------------------------------------------ */

static void
test_every_type_round_trips(void)
{
    CHECK(
        run("local db = assert(sqlite.open('types.db'))\n"
            "assert(db:exec('CREATE TABLE t(id INTEGER PRIMARY KEY,'\n"
            "               .. ' i, f, s, b, n)'))\n"
            "assert(db:run('INSERT INTO t(i, f, s, b, n)'\n"
            "              .. ' VALUES (?, ?, ?, ?, ?)',\n"
            "              math.maxinteger, 0.5, 'h\\u{e9}\\0x', true, nil))\n"
            "assert(db:run('INSERT INTO t(i, f, s, b, n)'\n"
            "              .. ' VALUES (?, ?, ?, ?, x\\'00ff\\')',\n"
            "              math.mininteger, 2^63, '', false))\n"
            "local rows = assert(db:query('SELECT * FROM t ORDER BY id'))\n"
            "eq(#rows, 2, 'rows')\n"
            "local r = rows[1]\n"
            "eq(r.id, 1, 'id') eq(r.i, math.maxinteger, 'i')\n"
            "eq(r.f, 0.5, 'f') eq(r.s, 'h\\u{e9}\\0x', 's')\n"
            "eq(r.b, 1, 'true') eq(r.n, nil, 'NULL')\n"
            "r = rows[2]\n"
            "eq(r.i, math.mininteger, 'min') eq(r.f, 2^63, 'float')\n"
            "eq(r.s, '', 'empty') eq(r.b, 0, 'false')\n"
            "eq(r.n, '\\0\\xff', 'blob')\n"
            "eq(db:query('SELECT typeof(s) AS t FROM t')[1].t, 'text')\n"
            "eq(next(db:query('SELECT NULL AS a')[1]), nil, 'no keys')\n"
            "eq(#db:query('SELECT * FROM t WHERE id = ?', 99), 0)\n"
            "db:close()\n"));
}

static void
test_parameters_are_bound_not_spliced(void)
{
    CHECK(run("local db = assert(sqlite.open('inject.db'))\n"
              "assert(db:exec('CREATE TABLE t(v TEXT)'))\n"
              "local evil = \"x'); DROP TABLE t; --\"\n"
              "eq(assert(db:run('INSERT INTO t VALUES (?)', evil)), 1)\n"
              "eq(db:query('SELECT v FROM t')[1].v, evil, 'stored')\n"
              "eq(#db:query('SELECT v FROM t WHERE v = ?', evil), 1)\n"
              "eq(count(db, 't'), 1, 'table still there')\n"
              "db:close()\n"));
}

static void
test_unbindable_values_raise_and_leave_the_db_usable(void)
{
    CHECK(run("local db = assert(sqlite.open('bind.db'))\n"
              "raises('cannot bind a table', db.query, db, 'SELECT ?', {})\n"
              "raises('bad argument #3', db.run, db, 'SELECT ?', print)\n"
              "raises('cannot bind a userdata', db.query, db,\n"
              "       'SELECT ?, ?', 1, io.stdout)\n"
              "eq(db:query('SELECT ? AS v', 7)[1].v, 7, 'usable')\n"
              "db:close()\n"));
}

static void
test_parameter_count_must_match(void)
{
    CHECK(run("local db = assert(sqlite.open('count.db'))\n"
              "raises('takes 2 parameters, got 1', db.query, db,\n"
              "       'SELECT ?, ?', 1)\n"
              "raises('takes 0 parameters, got 1', db.run, db,\n"
              "       'SELECT 1', 1)\n"
              "eq(db:query('SELECT ? AS a, ? AS b', 1, nil)[1].a, 1)\n"
              "raises('exec takes no parameters', db.exec, db, 'SELECT 1', 1)\n"
              "db:close()\n"));
}

static void
test_query_and_run_take_one_statement(void)
{
    CHECK(run("local db = assert(sqlite.open('one.db'))\n"
              "raises('one statement only', db.query, db,\n"
              "       'SELECT 1; SELECT 2')\n"
              "raises('one statement only', db.run, db,\n"
              "       'CREATE TABLE a(x); CREATE TABLE b(x)')\n"
              "raises('no SQL statement', db.query, db, ' -- nothing')\n"
              "eq(#db:query('SELECT 1 AS x; -- fine\\n /* also */ ;'), 1)\n"
              "assert(db:exec('CREATE TABLE a(x); CREATE TABLE b(x);'))\n"
              "eq(count(db, 'a') + count(db, 'b'), 0)\n"
              "db:close()\n"));
}

static void
test_sql_errors_are_nil_err(void)
{
    CHECK(
        run("local db = assert(sqlite.open('err.db'))\n"
            "fails('sqlite: near \"SELEKT\": syntax error',\n"
            "      db:query('SELEKT 1'))\n"
            "fails('sqlite: no such table: nope', db:run('DELETE FROM nope'))\n"
            "fails('sqlite: ', db:exec('CREATE TABLE'))\n"
            "db:close()\n"));
}

/* ------------------------------------------------------------------ */
/* Changes and constraints                                             */
/* ------------------------------------------------------------------ */

static void
test_run_returns_changes_and_rowid(void)
{
    CHECK(run("local db = assert(sqlite.open('run.db'))\n"
              "assert(db:exec('CREATE TABLE t(id INTEGER PRIMARY KEY, v)'))\n"
              "local n, id = db:run('INSERT INTO t(v) VALUES (?)', 'a')\n"
              "eq(n, 1, 'changes') eq(id, 1, 'rowid')\n"
              "n, id = db:run('INSERT INTO t(v) VALUES (?), (?)', 'b', 'c')\n"
              "eq(n, 2, 'changes') eq(id, 3, 'rowid')\n"
              "eq(db:run('UPDATE t SET v = ? WHERE id > 1', 'z'), 2)\n"
              "eq(db:run('DELETE FROM t WHERE v = ?', 'none'), 0)\n"
              "eq(db:run('SELECT v FROM t'), 0, 'read-only')\n"
              "eq(db:run('INSERT INTO t(v) VALUES (?) RETURNING id', 'd'), 1)\n"
              "db:close()\n"));
}

static void
test_unique_conflict_is_a_constraint_error(void)
{
    CHECK(run("local db = assert(sqlite.open('unique.db'))\n"
              "assert(db:exec('CREATE TABLE t(key TEXT UNIQUE, v)'))\n"
              "assert(db:run('INSERT INTO t VALUES (?, ?)', 'k', 1))\n"
              "local n, err = db:run('INSERT INTO t VALUES (?, ?)', 'k', 2)\n"
              "fails('sqlite: constraint: ', n, err)\n"
              "eq(err, 'sqlite: constraint: UNIQUE constraint failed: t.key')\n"
              "n, err = db:run('INSERT INTO t VALUES (?, ?)', 'k', 2)\n"
              "eq(err, 'sqlite: constraint: UNIQUE constraint failed: t.key',\n"
              "   'from the cached statement')\n"
              "assert(db:exec('CREATE TABLE c(k REFERENCES t(key))'))\n"
              "fails('sqlite: constraint: FOREIGN KEY',\n"
              "      db:run('INSERT INTO c VALUES (?)', 'nope'))\n"
              "fails('sqlite: constraint: NOT NULL',\n"
              "      db:exec('CREATE TABLE nn(x NOT NULL);'\n"
              "              .. 'INSERT INTO nn VALUES (NULL)'))\n"
              "db:close()\n"));
}

static void
test_upsert_reports_one_change(void)
{
    CHECK(run("local db = assert(sqlite.open('upsert.db'))\n"
              "assert(db:exec('CREATE TABLE kv(key TEXT PRIMARY KEY, v)'))\n"
              "local sql = 'INSERT INTO kv VALUES (?, ?) ON CONFLICT(key)'\n"
              "  .. ' DO UPDATE SET v = excluded.v'\n"
              "eq(db:run(sql, 'a', 1), 1, 'insert')\n"
              "eq(db:run(sql, 'a', 2), 1, 'update')\n"
              "eq(db:query('SELECT v FROM kv WHERE key = ?', 'a')[1].v, 2)\n"
              "eq(count(db, 'kv'), 1, 'one row')\n"
              "db:close()\n"));
}

static void
test_other_handle_locked_past_timeout_is_busy(void)
{
    CHECK(run("local a = assert(sqlite.open('busy.db'))\n"
              "local b = assert(sqlite.open('busy.db'))\n"
              "assert(a:exec('CREATE TABLE t(x)'))\n"
              "assert(a:exec('BEGIN IMMEDIATE'))\n"
              "fails('sqlite: busy: ', b:run('INSERT INTO t VALUES (1)'))\n"
              "fails('sqlite: busy: ', b:transaction(function() end))\n"
              "assert(a:exec('COMMIT'))\n"
              "assert(b:run('INSERT INTO t VALUES (1)'))\n"
              "a:close() b:close()\n"));
}

/* ------------------------------------------------------------------ */
/* Transactions                                                        */
/* ------------------------------------------------------------------ */

static void
test_transaction_commits_and_returns_results(void)
{
    CHECK(run("local db = assert(sqlite.open('tx.db'))\n"
              "assert(db:exec('CREATE TABLE t(x)'))\n"
              "local a, b, c = db:transaction(function(d)\n"
              "  eq(d, db, 'argument')\n"
              "  assert(d:run('INSERT INTO t VALUES (1)'))\n"
              "  assert(d:run('INSERT INTO t VALUES (2)'))\n"
              "  return 'ok', nil, 3\n"
              "end)\n"
              "eq(a, 'ok') eq(b, nil) eq(c, 3)\n"
              "eq(db:transaction(function() end), true, 'no results')\n"
              "local other = assert(sqlite.open('tx.db'))\n"
              "eq(count(other, 't'), 2, 'committed')\n"
              "other:close() db:close()\n"));
}

static void
test_transaction_rolls_back_when_fn_raises(void)
{
    CHECK(run("local db = assert(sqlite.open('txraise.db'))\n"
              "assert(db:exec('CREATE TABLE t(x)'))\n"
              "local v, err = db:transaction(function(d)\n"
              "  assert(d:run('INSERT INTO t VALUES (1)'))\n"
              "  error('boom')\n"
              "end)\n"
              "eq(v, nil) assert(err:find('boom$'), err)\n"
              "v, err = db:transaction(function() error({}) end)\n"
              "eq(v, nil) assert(err:find('^table: '), err)\n"
              "eq(count(db, 't'), 0, 'rolled back')\n"
              "assert(db:transaction(function(d)\n"
              "  return d:run('INSERT INTO t VALUES (1)')\n"
              "end))\n"
              "eq(count(db, 't'), 1, 'usable after')\n"
              "db:close()\n"));
}

static void
test_transaction_rolls_back_when_fn_returns_nil_err(void)
{
    CHECK(
        run("local db = assert(sqlite.open('txnil.db'))\n"
            "assert(db:exec('CREATE TABLE t(x UNIQUE)'))\n"
            "local v, err = db:transaction(function(d)\n"
            "  assert(d:run('INSERT INTO t VALUES (1)'))\n"
            "  return d:run('INSERT INTO t VALUES (1)')\n"
            "end)\n"
            "fails('sqlite: constraint: UNIQUE', v, err)\n"
            "eq(count(db, 't'), 0, 'rolled back')\n"
            "local e = {}\n"
            "v, err = db:transaction(function(d)\n"
            "  assert(d:run('INSERT INTO t VALUES (2)'))\n"
            "  return nil, e\n"
            "end)\n"
            "eq(v, nil) eq(err, e, 'err as returned')\n"
            "eq(count(db, 't'), 0, 'rolled back again')\n"
            "eq(db:transaction(function() return nil end), nil, 'plain nil')\n"
            "db:close()\n"));
}

static void
test_yield_inside_transaction_fails_and_rolls_back(void)
{
    CHECK(run("local db = assert(sqlite.open('txyield.db'))\n"
              "assert(db:exec('CREATE TABLE t(x)'))\n"
              "local co = coroutine.create(function()\n"
              "  return db:transaction(function(d)\n"
              "    assert(d:run('INSERT INTO t VALUES (1)'))\n"
              "    coroutine.yield('inside')\n"
              "    return 'finished'\n"
              "  end)\n"
              "end)\n"
              "local ok, v, err = coroutine.resume(co)\n"
              "eq(ok, true, 'resume') eq(v, nil, 'result')\n"
              "assert(err:find('attempt to yield across a C-call boundary',\n"
              "                1, true), err)\n"
              "eq(coroutine.status(co), 'dead', 'status')\n"
              "eq(count(db, 't'), 0, 'rolled back')\n"
              "assert(db:transaction(function(d)\n"
              "  return d:run('INSERT INTO t VALUES (2)')\n"
              "end))\n"
              "eq(count(db, 't'), 1, 'usable after')\n"
              "db:close()\n"));
}

static void
test_transactions_do_not_nest(void)
{
    CHECK(run("local db = assert(sqlite.open('txnest.db'))\n"
              "local v, err = db:transaction(function(d)\n"
              "  return d:transaction(function() end)\n"
              "end)\n"
              "eq(v, nil) assert(err:find('already open'), err)\n"
              "eq(db:transaction(function() return 1 end), 1, 'usable')\n"
              "db:close()\n"));
}

static void
test_closing_inside_transaction_raises(void)
{
    CHECK(run("local db = assert(sqlite.open('txclose.db'))\n"
              "assert(db:exec('CREATE TABLE t(x)'))\n"
              "raises('database is closed', db.transaction, db,\n"
              "       function(d)\n"
              "         d:run('INSERT INTO t VALUES (1)')\n"
              "         d:close()\n"
              "       end)\n"
              "db = assert(sqlite.open('txclose.db'))\n"
              "eq(count(db, 't'), 0, 'rolled back')\n"
              "db:close()\n"));
}

/* ------------------------------------------------------------------ */
/* Lifetime                                                            */
/* ------------------------------------------------------------------ */

static void
test_closed_db_raises(void)
{
    CHECK(run("local db = assert(sqlite.open('closed.db'))\n"
              "eq(db:close(), true, 'close')\n"
              "eq(db:close(), true, 'close again')\n"
              "raises('database is closed', db.exec, db, 'SELECT 1')\n"
              "raises('database is closed', db.query, db, 'SELECT 1')\n"
              "raises('database is closed', db.run, db, 'SELECT 1')\n"
              "raises('database is closed', db.transaction, db, print)\n"
              "raises('broker.sqlite.db expected', db.query, {}, 'x')\n"));
}

static void
test_close_variable_closes_the_db(void)
{
    CHECK(
        run("local outer\n"
            "do\n"
            "  local db <close> = assert(sqlite.open('tbc.db'))\n"
            "  outer = db\n"
            "end\n"
            "raises('database is closed', outer.query, outer, 'SELECT 1')\n"));
}

static void
test_data_survives_closing_and_reopening(void)
{
    CHECK(run("local db = assert(sqlite.open('keep.db'))\n"
              "assert(db:exec('CREATE TABLE t(k, v)'))\n"
              "assert(db:run('INSERT INTO t VALUES (?, ?)', 'a', 1.25))\n"
              "db:close()\n"
              "db = assert(sqlite.open('keep.db'))\n"
              "local r = db:query('SELECT * FROM t')\n"
              "eq(#r, 1) eq(r[1].k, 'a') eq(r[1].v, 1.25)\n"
              "db:close()\n"));

    /* And in another state, as another worker would see it. */
    lua_State *first = L;

    L = new_state();
    CHECK(L != NULL && run("local db = assert(sqlite.open('keep.db'))\n"
                           "eq(db:query('SELECT v FROM t')[1].v, 1.25)\n"
                           "db:close()\n"));
    if (L != NULL) {
        lua_close(L);
    }
    L = first;
}

static void
test_statement_cache_works_past_its_size(void)
{
    CHECK(run("local db = assert(sqlite.open('cache.db'))\n"
              "assert(db:exec('CREATE TABLE t(x)'))\n"
              "for round = 1, 3 do\n"
              "  for i = 1, 100 do\n"
              "    local sql = 'SELECT ? + ' .. i .. ' AS v'\n"
              "    eq(db:query(sql, round)[1].v, round + i, sql)\n"
              "    if i % 7 == 0 then\n"
              "      eq(db:query('SELECT ? AS hot', i)[1].hot, i, 'hot')\n"
              "    end\n"
              "  end\n"
              "end\n"
              "for i = 1, 40 do\n"
              "  assert(db:run('INSERT INTO t VALUES (?) -- ' .. i, i))\n"
              "end\n"
              "eq(count(db, 't'), 40)\n"
              "db:close()\n"));
}

static void
test_cached_statement_follows_schema_changes(void)
{
    CHECK(run("local db = assert(sqlite.open('schema.db'))\n"
              "assert(db:exec('CREATE TABLE s(a); INSERT INTO s VALUES (1)'))\n"
              "eq(db:query('SELECT * FROM s')[1].a, 1)\n"
              "assert(db:exec('ALTER TABLE s ADD COLUMN b DEFAULT 2'))\n"
              "local r = db:query('SELECT * FROM s')[1]\n"
              "eq(r.a, 1) eq(r.b, 2, 'new column')\n"
              "assert(db:exec('DROP TABLE s'))\n"
              "fails('sqlite: no such table: s', db:query('SELECT * FROM s'))\n"
              "db:close()\n"));
}

static void
test_unclosed_dbs_are_closed_by_gc(void)
{
    int before = open_fds();

    CHECK(run("for i = 1, 50 do\n"
              "  local db = assert(sqlite.open('gc' .. i % 5 .. '.db'))\n"
              "  assert(db:exec('CREATE TABLE IF NOT EXISTS t(x)'))\n"
              "  assert(db:run('INSERT INTO t VALUES (?)', i))\n"
              "  eq(#db:query('SELECT x FROM t'), i // 5 + (i % 5 > 0 and 1"
              " or 0))\n"
              "end\n"
              "collectgarbage() collectgarbage()\n"));
    CHECK(before > 0 && open_fds() == before);
}

static void
test_memory_error_in_query_releases_the_statement(void)
{
    CHECK(run("local db = assert(sqlite.open('mem.db'))\n"
              "assert(db:exec('CREATE TABLE big(s)'))\n"
              "assert(db:transaction(function(d)\n"
              "  for i = 1, 2000 do\n"
              "    assert(d:run('INSERT INTO big VALUES (?)',\n"
              "                 string.rep('x', 1000) .. i))\n"
              "  end\n"
              "end))\n"
              "collectgarbage()\n"
              "set_mem_limit(200000)\n"
              "local ok, err = pcall(db.query, db, 'SELECT s FROM big')\n"
              "set_mem_limit(nil)\n"
              "eq(ok, false, 'pcall') eq(err, 'not enough memory')\n"
              "assert(db:exec('DROP TABLE big'))\n"
              "db:close()\n"));
}

#define TEST(fn)                                                               \
    {                                                                          \
#fn, fn                                                                \
    }

static const struct {
    const char *name;
    void (*fn)(void);
} tests[] = {
    TEST(test_open_creates_the_data_dir_and_the_file),
    TEST(test_connection_uses_wal_normal_sync_and_foreign_keys),
    TEST(test_bad_names_raise),
    TEST(test_good_names_open),
    TEST(test_open_without_data_dir_fails),
    TEST(test_open_of_a_non_database_fails),
    TEST(test_open_in_unwritable_place_fails),
    TEST(test_every_type_round_trips),
    TEST(test_parameters_are_bound_not_spliced),
    TEST(test_unbindable_values_raise_and_leave_the_db_usable),
    TEST(test_parameter_count_must_match),
    TEST(test_query_and_run_take_one_statement),
    TEST(test_sql_errors_are_nil_err),
    TEST(test_run_returns_changes_and_rowid),
    TEST(test_unique_conflict_is_a_constraint_error),
    TEST(test_upsert_reports_one_change),
    TEST(test_other_handle_locked_past_timeout_is_busy),
    TEST(test_transaction_commits_and_returns_results),
    TEST(test_transaction_rolls_back_when_fn_raises),
    TEST(test_transaction_rolls_back_when_fn_returns_nil_err),
    TEST(test_yield_inside_transaction_fails_and_rolls_back),
    TEST(test_transactions_do_not_nest),
    TEST(test_closing_inside_transaction_raises),
    TEST(test_closed_db_raises),
    TEST(test_close_variable_closes_the_db),
    TEST(test_data_survives_closing_and_reopening),
    TEST(test_statement_cache_works_past_its_size),
    TEST(test_cached_statement_follows_schema_changes),
    TEST(test_unclosed_dbs_are_closed_by_gc),
    TEST(test_memory_error_in_query_releases_the_statement),
};

/* The states' allocator: counts bytes and fails past mem_limit. */
static void *
alloc(void *ud, void *ptr, size_t osize, size_t nsize)
{
    size_t old = ptr ? osize : 0;
    void *p;

    (void)ud;
    if (nsize == 0) {
        free(ptr);
        mem_used -= old;
        return NULL;
    }
    if (mem_limit && nsize > old && mem_used + (nsize - old) > mem_limit) {
        return NULL;
    }
    if ((p = realloc(ptr, nsize)) != NULL) {
        mem_used = mem_used - old + nsize;
    }
    return p;
}

/* set_mem_limit(n): allocations fail once the states hold n bytes more
 * than now; set_mem_limit(nil) lifts the limit. */
static int
l_set_mem_limit(lua_State *S)
{
    mem_limit =
        lua_isnil(S, 1) ? 0 : mem_used + (size_t)luaL_checkinteger(S, 1);
    return 0;
}

/* A fresh state with the standard libraries, `sqlite`, set_mem_limit,
 * PRELUDE and the data directory; the caller closes it.  NULL if the
 * state cannot be set up. */
static lua_State *
new_state(void)
{
    lua_State *S = lua_newstate(alloc, NULL);

    if (S == NULL) {
        return NULL;
    }
    luaL_openlibs(S);
    ab_luaopen_sqlite(S);       /* M */
    lua_setglobal(S, "sqlite"); /* */
    lua_register(S, "set_mem_limit", l_set_mem_limit);
    ab_sqlite_set_data_dir(S, data_dir);
    if (luaL_dostring(S, PRELUDE) != LUA_OK) { /* | err */
        fprintf(stderr, "prelude: %s\n", lua_tostring(S, -1));
        lua_close(S);
        return NULL;
    }
    return S;
}

/* nftw callback: removes one entry of the temporary directory. */
static int
on_remove(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(path);
}

int
main(void)
{
    size_t i;

    if (mkdtemp(tmp_dir) == NULL) {
        perror("mkdtemp");
        return 1;
    }
    snprintf(data_dir, sizeof(data_dir), "%s/data", tmp_dir);
    for (i = 0; i < sizeof(tests) / sizeof(tests[0]); i++) {
        current_name = tests[i].name;
        current_failed = 0;
        L = new_state();
        if (L == NULL) {
            current_failed = 1;
        } else {
            tests[i].fn();
            CHECK(lua_gettop(L) == 0);
            lua_close(L);
        }
        if (current_failed) {
            tests_failed++;
        } else {
            tests_passed++;
        }
    }
    if (nftw(tmp_dir, on_remove, 16, FTW_DEPTH | FTW_PHYS) != 0) {
        perror("removing the temporary directory");
    }
    printf("%d passed, %d failed\n", tests_passed, tests_failed);
    return tests_failed == 0 ? 0 : 1;
}
