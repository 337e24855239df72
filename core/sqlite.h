/*
 * sqlite.h - "broker.sqlite", a small SQLite binding for the broker's
 * Lua states.
 *
 * Databases are files in one data directory per Lua state, named by a
 * plain file name.  Every connection runs in WAL mode with
 * synchronous=NORMAL, foreign keys on and a 2 s busy timeout, so that
 * the worker processes of one broker can share a file.
 *
 * Errors: runtime failures return nil and a string.  The string starts
 * with "sqlite: ", then "constraint: " for a constraint violation (a
 * UNIQUE conflict, say) or "busy: " when the file stayed locked past the
 * timeout, then SQLite's own message.  Mistakes of the caller raise: a
 * bad name, a value that cannot be bound, a wrong parameter count, a
 * method called on a closed database.  Nothing here logs, and no error
 * holds a bound value.
 *
 * Why our own binding and not Debian's lua-sql-sqlite3 (LuaSQL): hooks
 * run in a sandbox that loads no C modules, so the host must hand them
 * the database anyway; LuaSQL opens any path, where this opens only
 * plain names in the data directory; LuaSQL has no bound parameters
 * (SQL would be built by string splicing) and no statement cache; and
 * transaction(fn) here refuses to yield, which is what guarantees that
 * a request's write is all or nothing even though requests interleave
 * on one event loop.  The calls block the loop on the local disk only
 * (WAL, synchronous=NORMAL), never on the network.
 */
#ifndef AB_SQLITE_H
#define AB_SQLITE_H

#include <lua.h>

/* Prepared statements each database keeps, by SQL text. */
#define AB_SQLITE_STMT_CACHE 32

/* How long a statement waits for another process's lock. */
#define AB_SQLITE_BUSY_TIMEOUT_MS 2000

/*
 * Pushes a new module table (stack: +1) with one field:
 *
 *   open(name) -> db | nil, err
 *       Opens or creates <data dir>/<name>, creating the data directory
 *       (mode 0700, one level) if it is missing.  Raises unless name
 *       matches [A-Za-z0-9][A-Za-z0-9._-]* without "..", and if it ends
 *       in "-wal", "-shm" or "-journal" (SQLite's own side files).
 *       Fails if the state has no data directory, or if the file cannot
 *       use WAL mode.
 *
 * A db is a userdata ("broker.sqlite.db"), closed when collected or
 * when a <close> variable holding it goes out of scope:
 *
 *   db:exec(sql) -> true | nil, err
 *       Runs one or more statements that take no parameters.
 *   db:query(sql, ...) -> rows | nil, err
 *       Runs one statement with the arguments bound to its parameters
 *       in order (an integer as an integer, a float as a real, a string
 *       as text, a boolean as 0 or 1, nil as NULL; the count must match
 *       the statement's).  rows is a sequence of tables, column name to
 *       value: integers, floats and strings (text or blob); a NULL
 *       leaves its column out.
 *   db:run(sql, ...) -> changes, last_insert_rowid | nil, err
 *       Runs one statement that changes data, bound like query(), and
 *       drops any rows it returns.  changes counts the rows it wrote
 *       (an upsert counts 1, DO NOTHING 0; a read-only statement 0).
 *   db:transaction(fn) -> fn's results | nil, err
 *       Calls fn(db) between BEGIN IMMEDIATE and COMMIT; returns true if
 *       fn returned nothing.  Rolls back and returns nil, err if fn
 *       raises (err is then the error as a string) or returns nil and a
 *       non-nil err.  fn runs under lua_pcall and so cannot yield: a
 *       transaction cannot wait on network I/O (broker.http, sleeps),
 *       which fails as "attempt to yield across a C-call boundary".
 *       Transactions do not nest (raises).
 *   db:close() -> true
 *       Finalizes the cached statements and closes the file; closing a
 *       closed db does nothing.  Every other method raises "database is
 *       closed" afterwards.
 *
 * query() and run() keep up to AB_SQLITE_STMT_CACHE prepared statements
 * per db, keyed by SQL text, and reuse the least recently used slot.
 * Both take exactly one statement (raises otherwise).
 *
 * Suitable for luaL_requiref or package.preload.  Called by the Lua host
 * when it builds a state; everything it creates belongs to the state.
 */
int ab_luaopen_sqlite(lua_State *L);

/*
 * Sets the directory that open() of state L works in (NULL: none, and
 * open() fails).  Keeps a copy in L's registry; dir stays the caller's.
 * Called by the Lua host for each state it builds.
 */
void ab_sqlite_set_data_dir(lua_State *L, const char *dir);

#endif
