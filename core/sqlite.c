/*
 * sqlite.c - "broker.sqlite": SQLite databases for Lua hooks.
 *
 * A db userdata holds the connection and its statement cache.  Every
 * statement taken from the cache is reset and its bindings cleared
 * before the method returns, also when a Lua error unwinds through it:
 * the steps that build Lua values run under lua_pcall so that a memory
 * error cannot leave a statement holding a read transaction open.
 */
#include "sqlite.h"

#include <errno.h>
#include <lauxlib.h>
#include <limits.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

/* Registry name of the db metatable, also its __name. */
#define DB_MT "broker.sqlite.db"

#define OPEN_FLAGS                                                             \
    (SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX)

/* Characters of a database name; the first must be alphanumeric. */
#define ALNUM                                                                  \
    "ABCDEFGHIJKLMNOPQRSTUVWXYZ"                                               \
    "abcdefghijklmnopqrstuvwxyz"                                               \
    "0123456789"
#define NAME_CHARS ALNUM "._-"

/* One prepared statement of the cache. */
struct cached_stmt {
    char *sql; /* malloc'd copy of the key */
    size_t len;
    sqlite3_stmt *stmt; /* NULL: the slot is free */
    unsigned long used; /* db clock at the last use */
};

/* The body of a db userdata. */
struct db {
    sqlite3 *handle; /* NULL once closed */
    unsigned long clock;
    struct cached_stmt cache[AB_SQLITE_STMT_CACHE];
};

/* Its address keys the data directory in the registry. */
static const char data_dir_key;

/* What goes between "sqlite: " and SQLite's message for code rc. */
static const char *
error_kind(int rc)
{
    switch (rc & 0xff) {
    case SQLITE_CONSTRAINT:
        return "constraint: ";
    case SQLITE_BUSY:
        return "busy: ";
    default:
        return "";
    }
}

/* Pushes nil and the message for SQLite code rc (stack: +2); returns 2.
 * The message is the connection's latest, so call this before anything
 * else touches the connection. */
static int
push_error(lua_State *L, sqlite3 *handle, int rc)
{
    lua_pushnil(L); /* nil */
    lua_pushfstring(L, "sqlite: %s%s", error_kind(rc),
                    handle ? sqlite3_errmsg(handle) : sqlite3_errstr(rc));
    return 2; /* nil err */
}

/* Returns the open db at stack index 1; raises if it is closed. */
static struct db *
check_db(lua_State *L)
{
    struct db *db = luaL_checkudata(L, 1, DB_MT);

    if (db->handle == NULL) {
        luaL_error(L, "database is closed");
    }
    return db;
}

/* ------------------------------------------------------------------ */
/* Statement cache                                                     */
/* ------------------------------------------------------------------ */

/* Empties a slot, finalizing its statement. */
static void
slot_clear(struct cached_stmt *slot)
{
    sqlite3_finalize(slot->stmt);
    free(slot->sql);
    memset(slot, 0, sizeof(*slot));
}

/* Finalizes every cached statement (before the connection closes). */
static void
cache_clear(struct db *db)
{
    for (int i = 0; i < AB_SQLITE_STMT_CACHE; i++) {
        slot_clear(&db->cache[i]);
    }
}

/* The slot holding sql, or NULL. */
static struct cached_stmt *
cache_find(struct db *db, const char *sql, size_t len)
{
    for (int i = 0; i < AB_SQLITE_STMT_CACHE; i++) {
        struct cached_stmt *slot = &db->cache[i];

        if (slot->stmt && slot->len == len &&
            memcmp(slot->sql, sql, len) == 0) {
            return slot;
        }
    }
    return NULL;
}

/* A free slot: an empty one, else the least recently used, emptied. */
static struct cached_stmt *
cache_victim(struct db *db)
{
    struct cached_stmt *victim = &db->cache[0];

    for (int i = 0; i < AB_SQLITE_STMT_CACHE; i++) {
        struct cached_stmt *slot = &db->cache[i];

        if (slot->stmt == NULL) {
            return slot;
        }
        if (slot->used < victim->used) {
            victim = slot;
        }
    }
    slot_clear(victim);
    return victim;
}

/* Returns the first byte of sql[0..len) that is not a blank, a ';' or
 * part of a comment: sql + len if there is none. */
static const char *
skip_blanks(const char *p, const char *end)
{
    while (p < end) {
        if (*p != '\0' && strchr(" \t\r\n\f\v;", *p)) {
            p++;
        } else if (end - p >= 2 && p[0] == '-' && p[1] == '-') {
            p = memchr(p, '\n', (size_t)(end - p));
            p = p ? p + 1 : end;
        } else if (end - p >= 2 && p[0] == '/' && p[1] == '*') {
            p = memmem(p + 2, (size_t)(end - p - 2), "*/", 2);
            p = p ? p + 2 : end;
        } else {
            break;
        }
    }
    return p;
}

/* Prepares the one statement of sql into *out; returns an SQLite code.
 * Raises if sql holds no statement, several, or a NUL byte. */
static int
prepare_one(lua_State *L, sqlite3 *handle, const char *sql, size_t len,
            sqlite3_stmt **out)
{
    const char *tail;
    int rc;

    luaL_argcheck(L, len < INT_MAX && strlen(sql) == len, 2,
                  "SQL text too long or holding a NUL byte");
    rc = sqlite3_prepare_v3(handle, sql, (int)len + 1,
                            SQLITE_PREPARE_PERSISTENT, out, &tail);
    if (rc != SQLITE_OK) {
        return rc;
    }
    if (*out == NULL) {
        return luaL_argerror(L, 2, "no SQL statement");
    }
    if (skip_blanks(tail, sql + len) != sql + len) {
        sqlite3_finalize(*out);
        return luaL_argerror(L, 2, "one statement only (exec runs several)");
    }
    return SQLITE_OK;
}

/* Sets *out to the cached statement for the SQL text at stack index 2,
 * preparing and caching it on a miss; returns an SQLite code.  The db
 * owns the statement. */
static int
acquire(lua_State *L, struct db *db, sqlite3_stmt **out)
{
    size_t len;
    const char *sql = luaL_checklstring(L, 2, &len);
    struct cached_stmt *slot = cache_find(db, sql, len);
    sqlite3_stmt *stmt;
    int rc;

    if (slot == NULL) {
        rc = prepare_one(L, db->handle, sql, len, &stmt);
        if (rc != SQLITE_OK) {
            return rc;
        }
        slot = cache_victim(db);
        if ((slot->sql = malloc(len + 1)) == NULL) {
            sqlite3_finalize(stmt);
            return luaL_error(L, "not enough memory");
        }
        memcpy(slot->sql, sql, len + 1);
        slot->len = len;
        slot->stmt = stmt;
    }
    slot->used = ++db->clock;
    *out = slot->stmt;
    return SQLITE_OK;
}

/* Hands a statement back to the cache: reset, no bindings.  A reset
 * repeats the statement's error as the connection's message, so
 * push_error may follow. */
static void
release(sqlite3_stmt *stmt)
{
    sqlite3_reset(stmt);
    sqlite3_clear_bindings(stmt);
}

/* ------------------------------------------------------------------ */
/* Parameters and rows                                                 */
/* ------------------------------------------------------------------ */

/* Raises unless every argument from stack index 3 on can be bound. */
static void
check_params(lua_State *L)
{
    int top = lua_gettop(L);

    for (int i = 3; i <= top; i++) {
        switch (lua_type(L, i)) {
        case LUA_TNIL:
        case LUA_TBOOLEAN:
        case LUA_TNUMBER:
        case LUA_TSTRING:
            break;
        default:
            luaL_argerror(
                L, i,
                lua_pushfstring(L, "cannot bind a %s", luaL_typename(L, i)));
        }
    }
}

/* Binds the value at stack index idx to parameter i of stmt. */
static int
bind_one(lua_State *L, sqlite3_stmt *stmt, int i, int idx)
{
    const char *s;
    size_t len;

    switch (lua_type(L, idx)) {
    case LUA_TNUMBER:
        if (lua_isinteger(L, idx)) {
            return sqlite3_bind_int64(stmt, i, lua_tointeger(L, idx));
        }
        return sqlite3_bind_double(stmt, i, lua_tonumber(L, idx));
    case LUA_TSTRING:
        s = lua_tolstring(L, idx, &len);
        return sqlite3_bind_text64(stmt, i, s, len, SQLITE_TRANSIENT,
                                   SQLITE_UTF8);
    case LUA_TBOOLEAN:
        return sqlite3_bind_int(stmt, i, lua_toboolean(L, idx));
    default:
        return sqlite3_bind_null(stmt, i);
    }
}

/* Binds the arguments from stack index 3 on, checked by check_params;
 * returns an SQLite code.  Raises if their count is not the
 * statement's, before binding anything. */
static int
bind_params(lua_State *L, sqlite3_stmt *stmt)
{
    int n = lua_gettop(L) - 2;
    int want = sqlite3_bind_parameter_count(stmt);
    int rc = SQLITE_OK;

    if (n != want) {
        return luaL_error(L, "statement takes %d parameters, got %d", want, n);
    }
    for (int i = 1; i <= n && rc == SQLITE_OK; i++) {
        rc = bind_one(L, stmt, i, i + 2);
    }
    return rc;
}

/* The start of query() and run(): raises on misuse, else sets *out to
 * the bound statement and returns an SQLite code.  If the code is not
 * SQLITE_OK the statement is already released. */
static int
start(lua_State *L, struct db *db, sqlite3_stmt **out)
{
    int rc;

    check_params(L);
    rc = acquire(L, db, out);
    if (rc != SQLITE_OK) {
        return rc;
    }
    rc = bind_params(L, *out);
    if (rc != SQLITE_OK) {
        release(*out);
    }
    return rc;
}

/* Pushes column c of the current row (stack: +1); never NULL. */
static void
push_column(lua_State *L, sqlite3_stmt *stmt, int c)
{
    const void *p;

    switch (sqlite3_column_type(stmt, c)) {
    case SQLITE_INTEGER:
        lua_pushinteger(L, sqlite3_column_int64(stmt, c));
        return;
    case SQLITE_FLOAT:
        lua_pushnumber(L, sqlite3_column_double(stmt, c));
        return;
    case SQLITE_TEXT:
        p = sqlite3_column_text(stmt, c);
        break;
    default:
        p = sqlite3_column_blob(stmt, c);
        break;
    }
    if (p == NULL && sqlite3_column_bytes(stmt, c) > 0) {
        luaL_error(L, "not enough memory");
    }
    lua_pushlstring(L, p ? p : "", (size_t)sqlite3_column_bytes(stmt, c));
}

/* Pushes the current row as a table (stack: +1); the ncol column names
 * are on the stack from index names on. */
static void
push_row(lua_State *L, sqlite3_stmt *stmt, int ncol, int names)
{
    lua_createtable(L, 0, ncol); /* row */
    for (int c = 0; c < ncol; c++) {
        if (sqlite3_column_type(stmt, c) != SQLITE_NULL) {
            lua_pushvalue(L, names + c); /* row name */
            push_column(L, stmt, c);     /* row name value */
            lua_rawset(L, -3);           /* row */
        }
    }
}

/* Steps the statement (light userdata at index 1) to its end and
 * returns the array of rows and the last step's code.  Called by
 * l_query under lua_pcall, which then releases the statement. */
static int
collect_rows(lua_State *L)
{
    sqlite3_stmt *stmt = lua_touserdata(L, 1);
    lua_Integer n = 0;
    int rc, ncol;

    lua_newtable(L); /* stmt rows */

    /* The first step may re-prepare the statement, so the columns are
     * known only after it. */
    rc = sqlite3_step(stmt);
    ncol = sqlite3_column_count(stmt);
    luaL_checkstack(L, ncol + 4, "too many columns");
    for (int c = 0; c < ncol; c++) {
        const char *name = sqlite3_column_name(stmt, c);

        if (name == NULL) {
            return luaL_error(L, "not enough memory");
        }
        lua_pushstring(L, name); /* stmt rows names... */
    }

    while (rc == SQLITE_ROW) {
        push_row(L, stmt, ncol, 3); /* stmt rows names... row */
        lua_rawseti(L, 2, ++n);     /* stmt rows names... */
        rc = sqlite3_step(stmt);
    }
    lua_settop(L, 2);       /* stmt rows */
    lua_pushinteger(L, rc); /* stmt rows rc */
    return 2;
}

/* ------------------------------------------------------------------ */
/* Methods                                                             */
/* ------------------------------------------------------------------ */

/* db:exec(sql) -> true | nil, err */
static int
l_exec(lua_State *L)
{
    struct db *db = check_db(L);
    const char *sql = luaL_checkstring(L, 2);
    int rc;

    if (lua_gettop(L) > 2) {
        return luaL_error(L, "exec takes no parameters (use run or query)");
    }
    rc = sqlite3_exec(db->handle, sql, NULL, NULL, NULL);
    if (rc != SQLITE_OK) {
        return push_error(L, db->handle, rc);
    }
    lua_pushboolean(L, 1); /* ... true */
    return 1;
}

/* db:query(sql, ...) -> rows | nil, err */
static int
l_query(lua_State *L)
{
    struct db *db = check_db(L);
    sqlite3_stmt *stmt;
    int rc, status;

    rc = start(L, db, &stmt);
    if (rc != SQLITE_OK) {
        return push_error(L, db->handle, rc);
    }
    lua_pushcfunction(L, collect_rows); /* ... f */
    lua_pushlightuserdata(L, stmt);     /* ... f stmt */
    status = lua_pcall(L, 1, 2, 0);     /* ... rows rc | err */
    release(stmt);
    if (status != LUA_OK) {
        return lua_error(L);
    }
    rc = (int)lua_tointeger(L, -1);
    if (rc != SQLITE_DONE) {
        return push_error(L, db->handle, rc);
    }
    lua_pop(L, 1); /* ... rows */
    return 1;
}

/* db:run(sql, ...) -> changes, last_insert_rowid | nil, err */
static int
l_run(lua_State *L)
{
    struct db *db = check_db(L);
    sqlite3_stmt *stmt;
    sqlite3_int64 changes;
    int rc;

    rc = start(L, db, &stmt);
    if (rc != SQLITE_OK) {
        return push_error(L, db->handle, rc);
    }
    do {
        rc = sqlite3_step(stmt); /* RETURNING rows are dropped */
    } while (rc == SQLITE_ROW);
    release(stmt);
    if (rc != SQLITE_DONE) {
        return push_error(L, db->handle, rc);
    }

    /* sqlite3_changes64 still counts the last statement that wrote. */
    changes = sqlite3_stmt_readonly(stmt) ? 0 : sqlite3_changes64(db->handle);
    lua_pushinteger(L, changes);                               /* ... n */
    lua_pushinteger(L, sqlite3_last_insert_rowid(db->handle)); /* n id */
    return 2;
}

/* Rolls back the open transaction, if SQLite has not already. */
static void
rollback(sqlite3 *handle)
{
    if (!sqlite3_get_autocommit(handle)) {
        sqlite3_exec(handle, "ROLLBACK", NULL, NULL, NULL);
    }
}

/* Commits; on failure rolls back and pushes nil, err (returns 2). */
static int
commit(lua_State *L, sqlite3 *handle)
{
    char msg[256];
    int rc = sqlite3_exec(handle, "COMMIT", NULL, NULL, NULL);

    if (rc == SQLITE_OK) {
        return 0;
    }

    /* The rollback replaces the message, and pushing it may raise. */
    snprintf(msg, sizeof(msg), "sqlite: %s%s", error_kind(rc),
             sqlite3_errmsg(handle));
    rollback(handle);
    lua_pushnil(L);         /* ... nil */
    lua_pushstring(L, msg); /* ... nil err */
    return 2;
}

/* db:transaction(fn) -> fn's results | nil, err */
static int
l_transaction(lua_State *L)
{
    struct db *db = check_db(L);
    int rc, status, nres;

    luaL_checktype(L, 2, LUA_TFUNCTION);
    if (!sqlite3_get_autocommit(db->handle)) {
        return luaL_error(L, "a transaction is already open");
    }
    rc = sqlite3_exec(db->handle, "BEGIN IMMEDIATE", NULL, NULL, NULL);
    if (rc != SQLITE_OK) {
        return push_error(L, db->handle, rc);
    }

    /* No continuation: a yield inside fn is an error, caught here. */
    lua_settop(L, 2);                         /* db fn */
    lua_pushvalue(L, 2);                      /* db fn fn */
    lua_pushvalue(L, 1);                      /* db fn fn db */
    status = lua_pcall(L, 1, LUA_MULTRET, 0); /* db fn res... | err */
    if (db->handle == NULL) {
        return luaL_error(L, "database is closed"); /* fn closed it */
    }
    if (status != LUA_OK) {
        rollback(db->handle);
        lua_pushnil(L);             /* db fn err nil */
        luaL_tolstring(L, 3, NULL); /* db fn err nil msg */
        return 2;
    }

    /* fn's own failure: nil, err. */
    nres = lua_gettop(L) - 2;
    if (nres >= 2 && lua_isnil(L, 3) && !lua_isnil(L, 4)) {
        rollback(db->handle);
        lua_settop(L, 4); /* db fn nil err */
        return 2;
    }
    if (commit(L, db->handle) != 0) {
        return 2; /* ... nil err */
    }
    if (nres == 0) {
        lua_pushboolean(L, 1); /* db fn true */
        return 1;
    }
    return nres;
}

/* Closes the connection after finalizing its statements; a closed db
 * stays closed. */
static void
db_close(struct db *db)
{
    cache_clear(db);
    if (db->handle) {
        sqlite3_close_v2(db->handle);
        db->handle = NULL;
    }
}

/* db:close() -> true */
static int
l_close(lua_State *L)
{
    db_close(luaL_checkudata(L, 1, DB_MT));
    lua_pushboolean(L, 1); /* db true */
    return 1;
}

/* __gc and __close (which also gets the error, if any): called by Lua
 * when the db is collected or its <close> variable goes out of scope. */
static int
on_release(lua_State *L)
{
    db_close(luaL_checkudata(L, 1, DB_MT));
    return 0;
}

/* ------------------------------------------------------------------ */
/* Opening                                                             */
/* ------------------------------------------------------------------ */

/* Non-zero if name ends in suffix. */
static int
ends_with(const char *name, size_t len, const char *suffix)
{
    size_t n = strlen(suffix);

    return len >= n && memcmp(name + len - n, suffix, n) == 0;
}

/* Returns the database name at stack index 1; raises if it is bad. */
static const char *
check_name(lua_State *L)
{
    size_t len;
    const char *name = luaL_checklstring(L, 1, &len);
    int ok = name[0] != '\0' && strchr(ALNUM, name[0]) != NULL &&
             strspn(name, NAME_CHARS) == len && strstr(name, "..") == NULL;

    luaL_argcheck(L, ok, 1,
                  "letters, digits, '.', '_' and '-', starting with a "
                  "letter or digit, without '..'");
    luaL_argcheck(L,
                  !ends_with(name, len, "-wal") &&
                      !ends_with(name, len, "-shm") &&
                      !ends_with(name, len, "-journal"),
                  1, "the name of an SQLite side file");
    return name;
}

/* sqlite3_exec callback: copies the first column into buf. */
static int
on_pragma_row(void *buf, int ncol, char **values, char **names)
{
    (void)names;
    if (ncol > 0 && values[0]) {
        snprintf(buf, 16, "%s", values[0]);
    }
    return 0;
}

/* Sets the connection up for sharing between processes; returns 0, or
 * pushes nil, err and returns 2. */
static int
configure(lua_State *L, sqlite3 *handle)
{
    char mode[16] = "";
    int rc;

    sqlite3_busy_timeout(handle, AB_SQLITE_BUSY_TIMEOUT_MS);
    rc = sqlite3_exec(handle, "PRAGMA journal_mode=WAL", on_pragma_row, mode,
                      NULL);
    if (rc == SQLITE_OK && strcmp(mode, "wal") != 0) {
        lua_pushnil(L); /* ... nil */
        lua_pushfstring(L, "sqlite: journal_mode is '%s', not wal", mode);
        return 2;
    }
    if (rc == SQLITE_OK) {
        rc = sqlite3_exec(handle,
                          "PRAGMA synchronous=NORMAL;"
                          "PRAGMA foreign_keys=ON",
                          NULL, NULL, NULL);
    }
    return rc == SQLITE_OK ? 0 : push_error(L, handle, rc);
}

/* Creates the data directory (one level) unless it exists; returns 0,
 * or pushes nil, err and returns 2. */
static int
make_data_dir(lua_State *L, const char *dir)
{
    if (mkdir(dir, 0700) == 0 || errno == EEXIST) {
        return 0;
    }
    lua_pushnil(L); /* ... nil */
    lua_pushfstring(L, "sqlite: cannot create data directory %s: %s", dir,
                    strerror(errno));
    return 2;
}

/* Pushes a new, closed db userdata with its metatable (stack: +1). */
static struct db *
new_db(lua_State *L)
{
    struct db *db = lua_newuserdatauv(L, sizeof(*db), 0); /* db */

    memset(db, 0, sizeof(*db));
    luaL_setmetatable(L, DB_MT);
    return db;
}

/* open(name) -> db | nil, err */
static int
l_open(lua_State *L)
{
    const char *name = check_name(L);
    const char *dir, *path;
    struct db *db;
    int rc, nerr;

    lua_settop(L, 1);
    lua_rawgetp(L, LUA_REGISTRYINDEX, &data_dir_key); /* name dir */
    dir = lua_tostring(L, 2);
    if (dir == NULL) {
        lua_pushnil(L);                                      /* ... nil */
        lua_pushliteral(L, "sqlite: no data directory set"); /* nil err */
        return 2;
    }
    if ((nerr = make_data_dir(L, dir)) != 0) {
        return nerr;
    }
    path = lua_pushfstring(L, "%s/%s", dir, name); /* name dir path */
    db = new_db(L);                                /* name dir path db */

    /* On failure the handle is closed here, or by __gc if pushing the
     * error raises. */
    rc = sqlite3_open_v2(path, &db->handle, OPEN_FLAGS, NULL);
    nerr = rc == SQLITE_OK ? configure(L, db->handle)
                           : push_error(L, db->handle, rc);
    if (nerr != 0) {
        db_close(db);
        return nerr; /* ... db nil err */
    }
    return 1;
}

void
ab_sqlite_set_data_dir(lua_State *L, const char *dir)
{
    lua_pushstring(L, dir);                           /* dir | nil */
    lua_rawsetp(L, LUA_REGISTRYINDEX, &data_dir_key); /* */
}

static const luaL_Reg db_methods[] = {
    {"exec", l_exec},   {"query", l_query},
    {"run", l_run},     {"transaction", l_transaction},
    {"close", l_close}, {NULL, NULL},
};

static const luaL_Reg db_meta[] = {
    {"__gc", on_release},
    {"__close", on_release},
    {NULL, NULL},
};

static const luaL_Reg module_funcs[] = {
    {"open", l_open},
    {NULL, NULL},
};

int
ab_luaopen_sqlite(lua_State *L)
{
    if (luaL_newmetatable(L, DB_MT)) { /* mt */
        luaL_setfuncs(L, db_meta, 0);
        luaL_newlib(L, db_methods);     /* mt methods */
        lua_setfield(L, -2, "__index"); /* mt */
    }
    lua_pop(L, 1);                /* */
    luaL_newlib(L, module_funcs); /* M */
    return 1;
}
