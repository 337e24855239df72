/*
 * pg.h - "broker.pg", a PostgreSQL client for the broker's Lua states,
 * on libpq's asynchronous API and the broker's event loop.
 *
 * A query parks the calling request's coroutine and the event loop
 * resumes it with the answer, so a slow database never blocks other
 * requests.  Every query, run and transaction must therefore come from
 * a request's own coroutine (a hook, or a broker.every job); anywhere
 * else (plugin load, init, selftest, a coroutine a hook made) it raises.
 *
 * A pool holds up to `size` connections to one server, opened when a
 * query needs one and kept for the next.  A connection runs one query
 * at a time; callers that find every connection busy wait in a FIFO
 * queue.  A connection that breaks (the server restarted) is dropped,
 * and the next query opens a new one.  Connecting gives up after
 * AB_PG_CONNECT_TIMEOUT_MS, and while no connection can be made every
 * waiting caller is answered at once, so a query never hangs on a
 * server that is down.
 *
 * Connecting resolves host names with a blocking call (libpq does it in
 * PQconnectStart): give an IP address (hostaddr=, or a literal in the
 * URI) or a name /etc/hosts knows, like localhost.
 *
 * A request that ends while its query runs (client gone, deadline)
 * does not cancel the query: PQcancel would block the loop on a new
 * connection.  The query runs to its end and its result is read and
 * thrown away, then the connection serves the next caller; if that
 * takes more than AB_PG_DRAIN_TIMEOUT_MS the connection is closed
 * instead.  A transaction whose request ended before it sent COMMIT is
 * never committed: its connection is closed once idle, which makes the
 * server roll it back.
 *
 * Errors: runtime failures return nil and a string starting with
 * "pg: ".  Then come
 *   "unavailable: <reason>" when the server cannot be reached, the
 *       connection broke, or the server is starting or shutting down
 *       (SQLSTATE 08000, 08001, 08003, 08004, 08006, 57P01-57P03);
 *       whether a statement that was in flight ran is then unknown;
 *   "busy: pool queue full" when the pool's queue is full;
 *   "constraint: <message>" for SQLSTATE class 23 (a unique violation,
 *       say);
 * and otherwise the server's primary message.  Messages never hold the
 * server's DETAIL line (which may quote values), and the message of a
 * data exception (SQLSTATE class 22) stops before the value it quotes,
 * so no bound value reaches an error.  Mistakes of the caller raise.
 * Nothing here logs.
 */
#ifndef AB_PG_H
#define AB_PG_H

#include <lua.h>

struct event_base;

/* How long opening a connection may take. */
#define AB_PG_CONNECT_TIMEOUT_MS 2000

/* How long a query whose request ended may take to finish before its
 * connection is closed. */
#define AB_PG_DRAIN_TIMEOUT_MS 30000

/* Largest pool, and the default bound of its queue. */
#define AB_PG_MAX_POOL  100
#define AB_PG_MAX_QUEUE 256

/*
 * Pushes a new module table (stack: +1) with one field:
 *
 *   pool(conninfo, size [, max_waiting]) -> pool
 *       A pool of at most `size` (1 to AB_PG_MAX_POOL) connections to
 *       the server libpq's `conninfo` names (keywords or a URI).  At
 *       most `max_waiting` callers (default AB_PG_MAX_QUEUE) wait for a
 *       connection.  Connects to nothing yet.  Raises if conninfo does
 *       not parse or a number is out of range.
 *
 * A pool is a userdata ("broker.pg.pool"); when it is collected or its
 * state closed, its connections are closed.
 *
 *   pool:query(sql, ...) -> rows | nil, err
 *       Runs one statement with the arguments bound to $1, $2, ... in
 *       text format, never spliced into the SQL: an integer as bigint, a
 *       float as double precision, a boolean as boolean, a string as a
 *       value of the type the server infers, nil as NULL.  rows is a
 *       sequence of tables, column name to value: smallint, integer and
 *       bigint as integers; real and double precision as floats;
 *       numeric as an integer or float when that holds its exact value
 *       (else as the string); boolean as a boolean; NULL leaves its
 *       column out; everything else is the server's text.
 *   pool:run(sql, ...) -> count | nil, err
 *       Runs one statement bound like query() and returns the rows it
 *       affected (libpq's PQcmdTuples; 0 for a statement without one).
 *   pool:transaction(fn) -> fn's results | nil, err
 *       Takes a connection, sends BEGIN, and calls fn(tx): tx:query and
 *       tx:run work as above on that one connection.  Commits and
 *       returns fn's results (true if none), or rolls back and returns
 *       nil, err if fn raises (err is then the error as a string) or
 *       returns nil and a non-nil err.  fn may wait on I/O.  A
 *       statement that fails inside fn leaves the transaction failed:
 *       the commit then answers nil, "pg: transaction rolled back: ...".
 *       Calling pool:query inside fn takes a second connection, which
 *       never comes if the pool has one; tx methods raise once the
 *       transaction is over.
 *
 * Statements take exactly one command; the whole result is read into
 * memory before it is turned into Lua values.  COPY is refused (the
 * connection is closed).
 *
 * Suitable for luaL_requiref or package.preload.  Called by the Lua host
 * when it builds a state; everything it creates belongs to the state.
 */
int ab_luaopen_pg(lua_State *L);

/*
 * Sets the event loop the pools of state L run on; pool() raises until
 * it is set.  Keeps the pointer in L's registry; the loop stays the
 * caller's and must outlive the state.  Called by the Lua host for each
 * state it builds.
 */
void ab_pg_set_base(lua_State *L, struct event_base *base);

#endif
