/*
 * pg.c - "broker.pg": PostgreSQL pools for Lua hooks, on libpq's
 * asynchronous API and the broker's libevent loop (see pg.h).
 *
 * Three kinds of objects:
 *   a pool (a Lua userdata) holds its connections and the FIFO queue of
 *     queries waiting for one;
 *   a connection (malloc'd, owned by its pool) runs one query at a time
 *     and is driven by events on its socket: connecting, idle (watching
 *     for the server closing it) or busy;
 *   a query (malloc'd, owned by its pool until it is answered) holds
 *     its SQL and parameters as text, then its result.
 *
 * Nothing resumes a coroutine from inside Lua: a query submitted from
 * Lua only queues and "kicks" its pool (an event made active), and an
 * answered query makes its own `done` event active.  Every resume thus
 * runs from its own event callback and is the last thing that callback
 * does, since the resumed request may end and close the whole state.
 *
 * Each pending query holds a registry reference to the pool or
 * transaction it came from, so neither is collected while the event
 * loop still points at it; __gc therefore runs with no query waiting on
 * a request, except when the state closes, and then no request is left.
 */
#include "pg.h"

#include <event2/event.h>
#include <float.h>
#include <lauxlib.h>
#include <libpq-fe.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>

#include "lua_host.h"
#include "request.h"

/* Registry names of the metatables, also their __name. */
#define POOL_MT "broker.pg.pool"
#define TX_MT   "broker.pg.tx"

/* Type OIDs of the built-in types we convert (catalog/pg_type.dat). */
#define OID_BOOL    16
#define OID_INT8    20
#define OID_INT2    21
#define OID_INT4    23
#define OID_FLOAT4  700
#define OID_FLOAT8  701
#define OID_NUMERIC 1700

/* Most parameters one statement may take (the protocol's limit). */
#define MAX_PARAMS 65535

/* A macro's value as a string literal. */
#define TEXT_OF(x)  TEXT_OF_(x)
#define TEXT_OF_(x) #x

/* After a failed connect, how long a pool with other connections open
 * waits before opening another (those serve the queue meanwhile). */
#define RETRY_MS 1000

/* Room for the text of a number or boolean parameter. */
#define NUMBER_TEXT 32

/* Its address keys the event base in the registry. */
static const char base_key;

/* What a query answers: rows, a count, or (transaction steps) true. */
enum mode { MODE_ROWS, MODE_COUNT, MODE_BEGIN, MODE_COMMIT, MODE_ROLLBACK };

enum query_state { Q_WAITING, Q_RUNNING, Q_DONE };

enum conn_state { C_CONNECTING, C_IDLE, C_BUSY };

/* What goes between "pg: " and the message. */
enum kind { KIND_PLAIN, KIND_UNAVAILABLE, KIND_CONSTRAINT };

static const char *const kind_prefix[] = {"", "unavailable: ", "constraint: "};

/* The steps of pool:transaction, its continuation contexts. */
enum { STEP_BEGIN = 1, STEP_BODY, STEP_END };

struct pg_pool;
struct pg_conn;
struct pg_tx;

/* One statement from Lua: queued, running, or answered and waiting for
 * its request to resume. */
struct pg_query {
    struct pg_pool *pool;
    struct ab_request *req; /* NULL once the request has ended */
    struct pg_tx *tx;       /* the transaction it belongs to, or NULL */
    struct pg_conn *pinned; /* must run on this connection, or NULL */
    struct pg_conn *conn;   /* the connection running it */
    enum mode mode;
    enum query_state state;
    int retried; /* requeued once after a send on a dead connection */
    int ref;     /* registry reference to the pool or transaction */
    struct event *done;
    PGresult *result;
    int failed;
    int unavailable;
    char err[512];
    int nparams;
    const char *sql;
    const char **values;
    Oid *types;
    TAILQ_ENTRY(pg_query) link; /* the pool's queue */
    TAILQ_ENTRY(pg_query) all;  /* every query of the pool */
    /* the arrays and the text of sql and values follow */
};

/* One connection to the server, in one of the states of conn_state. */
struct pg_conn {
    struct pg_pool *pool;
    PGconn *pg;
    struct event *ev;    /* the socket, armed for what the state needs */
    struct event *timer; /* connect deadline, or drain deadline */
    enum conn_state state;
    int flushing; /* libpq still holds output to send */
    int doomed;   /* close once the running query ends */
    struct pg_query *query;
    struct pg_tx *tx; /* the transaction pinning it, or NULL */
    TAILQ_ENTRY(pg_conn) link;
};

/* The body of a pool userdata. */
struct pg_pool {
    struct event_base *base;
    lua_State *L; /* the main state */
    char *conninfo;
    int size;
    int max_waiting;
    int nconns;
    int nwaiting; /* queued queries that take any connection */
    int closed;
    double retry_at; /* monotonic ms: no new connection before */
    struct event *kick;
    TAILQ_HEAD(, pg_conn) conns;
    TAILQ_HEAD(, pg_query) waiting;
    TAILQ_HEAD(, pg_query) queries;
};

/* The body of a tx userdata; its user value is the pool. */
struct pg_tx {
    struct pg_pool *pool;
    struct ab_request *req;
    struct pg_conn *conn; /* pinned from BEGIN to COMMIT or ROLLBACK */
    int busy;             /* a statement of it is pending */
    int over;
    int nres;     /* fn's results, kept on the stack during COMMIT */
    int rollback; /* the end step is a rollback */
};

static void pool_kick(struct pg_pool *pool);
static void conn_drop(struct pg_conn *conn, const char *reason);

/* ------------------------------------------------------------------ */
/* Queries                                                             */
/* ------------------------------------------------------------------ */

/* Marks q failed with "pg: <kind><msg>", msg cut at its first line
 * break; the first failure wins. */
static void
query_fail(struct pg_query *q, enum kind kind, const char *msg)
{
    int n = (int)strcspn(msg, "\r\n");

    if (q->failed) {
        return;
    }
    q->failed = 1;
    q->unavailable = kind == KIND_UNAVAILABLE;
    snprintf(q->err, sizeof(q->err), "pg: %s%.*s", kind_prefix[kind], n, msg);
}

/* Frees q and what it holds, without touching Lua (the state may be
 * closing). */
static void
query_discard(struct pg_query *q)
{
    TAILQ_REMOVE(&q->pool->queries, q, all);
    if (q->tx) {
        q->tx->busy = 0;
    }
    if (q->done) {
        event_free(q->done);
    }
    PQclear(q->result);
    free(q);
}

/* Frees q and drops its reference to the pool or transaction. */
static void
query_free(struct pg_query *q)
{
    lua_State *L = q->pool->L;
    int ref = q->ref;

    query_discard(q);
    luaL_unref(L, LUA_REGISTRYINDEX, ref);
}

/* q is answered: wakes its request from the loop, or frees it if the
 * request has ended. */
static void
query_finish(struct pg_query *q)
{
    q->state = Q_DONE;
    q->conn = NULL;
    if (q->req) {
        event_active(q->done, EV_TIMEOUT, 0);
    } else {
        query_free(q);
    }
}

static void
waiting_add(struct pg_pool *pool, struct pg_query *q, int at_head)
{
    q->state = Q_WAITING;
    if (at_head) {
        TAILQ_INSERT_HEAD(&pool->waiting, q, link);
    } else {
        TAILQ_INSERT_TAIL(&pool->waiting, q, link);
    }
    pool->nwaiting += q->pinned == NULL;
}

static void
waiting_remove(struct pg_pool *pool, struct pg_query *q)
{
    TAILQ_REMOVE(&pool->waiting, q, link);
    pool->nwaiting -= q->pinned == NULL;
}

/* Answers every queued query that `pinned_to` selects (NULL: those
 * that take any connection) with err. */
static void
fail_waiting(struct pg_pool *pool, struct pg_conn *pinned_to, const char *err)
{
    struct pg_query *q, *next;

    for (q = TAILQ_FIRST(&pool->waiting); q != NULL; q = next) {
        next = TAILQ_NEXT(q, link);
        if (q->pinned == pinned_to) {
            waiting_remove(pool, q);
            query_fail(q, KIND_UNAVAILABLE, err);
            query_finish(q);
        }
    }
}

/* ------------------------------------------------------------------ */
/* Results                                                             */
/* ------------------------------------------------------------------ */

/* Which kind of failure SQLSTATE `state` (may be NULL) is. */
static enum kind
error_kind(const char *state)
{
    static const char *const down[] = {"08000", "08001", "08003",
                                       "08004", "08006", "57P01",
                                       "57P02", "57P03", NULL};

    if (state == NULL) {
        return KIND_PLAIN;
    }
    if (strncmp(state, "23", 2) == 0) {
        return KIND_CONSTRAINT;
    }
    for (int i = 0; down[i]; i++) {
        if (strcmp(state, down[i]) == 0) {
            return KIND_UNAVAILABLE;
        }
    }
    return KIND_PLAIN;
}

/* Fails q with the error of res: the server's primary message only (its
 * DETAIL may quote values), and for a data exception (SQLSTATE class
 * 22: 'invalid input syntax for type integer: "x"') only what comes
 * before the value it quotes. */
static void
fail_from_result(struct pg_query *q, PGconn *pg, const PGresult *res)
{
    const char *msg = PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY);
    const char *state = PQresultErrorField(res, PG_DIAG_SQLSTATE);
    char cut[256];

    if (PQstatus(pg) != CONNECTION_OK) {
        query_fail(q, KIND_UNAVAILABLE, PQerrorMessage(pg));
    } else if (msg == NULL) {
        query_fail(q, KIND_PLAIN, PQresultErrorMessage(res));
    } else if (state && strncmp(state, "22", 2) == 0 && strstr(msg, ": ")) {
        snprintf(cut, sizeof(cut), "%.*s", (int)(strstr(msg, ": ") - msg), msg);
        query_fail(q, KIND_PLAIN, cut);
    } else {
        query_fail(q, error_kind(state), msg);
    }
}

/* Pushes a float column's text as a number (stack: +1). */
static void
push_float(lua_State *L, const char *v)
{
    if (strcmp(v, "Infinity") == 0) {
        lua_pushnumber(L, HUGE_VAL);
    } else if (strcmp(v, "-Infinity") == 0) {
        lua_pushnumber(L, -HUGE_VAL);
    } else if (strcmp(v, "NaN") == 0) {
        lua_pushnumber(L, (lua_Number)NAN);
    } else if (lua_stringtonumber(L, v) != 0) { /* n */
        lua_Number d = lua_tonumber(L, -1);

        lua_pop(L, 1);        /* */
        lua_pushnumber(L, d); /* d */
    } else {
        lua_pushstring(L, v);
    }
}

/* Significant digits of a decimal text: from the first non-zero digit
 * to the last. */
static int
significant_digits(const char *v)
{
    int n = 0, pending = 0;

    for (; *v; v++) {
        if (*v < '0' || *v > '9') {
            continue;
        }
        if (*v != '0') {
            n += pending + 1;
            pending = 0;
        } else if (n > 0) {
            pending++;
        }
    }
    return n;
}

/* Pushes a numeric column's text as a number if a Lua number holds it
 * exactly: an integer, or at most DBL_DIG significant digits in the
 * range of normal doubles.  Returns 1 if it pushed (stack: +1), else 0
 * (NaN, infinities and the rest stay strings). */
static int
push_numeric(lua_State *L, const char *v)
{
    lua_Number d;

    if (strchr(v, '.') == NULL && lua_stringtonumber(L, v) != 0) { /* n */
        if (lua_isinteger(L, -1)) {
            return 1;
        }
        lua_pop(L, 1); /* */
    }
    if (significant_digits(v) > DBL_DIG || lua_stringtonumber(L, v) == 0) {
        return 0;
    }
    d = lua_tonumber(L, -1);
    lua_pop(L, 1); /* */
    if (!isfinite(d) || (d != 0 && fabs(d) < DBL_MIN)) {
        return 0;
    }
    lua_pushnumber(L, d); /* d */
    return 1;
}

/* Pushes the value of row r, column c (stack: +1); never NULL. */
static void
push_value(lua_State *L, const PGresult *res, int r, int c)
{
    const char *v = PQgetvalue(res, r, c);

    switch (PQftype(res, c)) {
    case OID_INT2:
    case OID_INT4:
    case OID_INT8:
        if (lua_stringtonumber(L, v) != 0) {
            return;
        }
        break;
    case OID_FLOAT4:
    case OID_FLOAT8:
        push_float(L, v);
        return;
    case OID_NUMERIC:
        if (push_numeric(L, v)) {
            return;
        }
        break;
    case OID_BOOL:
        lua_pushboolean(L, v[0] == 't');
        return;
    default:
        break;
    }
    lua_pushlstring(L, v, (size_t)PQgetlength(res, r, c));
}

/* Pushes the rows of res as an array of tables (stack: +1). */
static void
push_rows(lua_State *L, const PGresult *res)
{
    int nrows = PQntuples(res), ncols = PQnfields(res);
    int names = lua_gettop(L) + 2;

    luaL_checkstack(L, ncols + 4, "too many columns");
    lua_createtable(L, nrows, 0); /* rows */
    for (int c = 0; c < ncols; c++) {
        lua_pushstring(L, PQfname(res, c)); /* rows names... */
    }
    for (int r = 0; r < nrows; r++) {
        lua_createtable(L, 0, ncols); /* rows names... row */
        for (int c = 0; c < ncols; c++) {
            if (!PQgetisnull(res, r, c)) {
                lua_pushvalue(L, names + c); /* ... row name */
                push_value(L, res, r, c);    /* ... row name value */
                lua_rawset(L, -3);           /* ... row */
            }
        }
        lua_rawseti(L, names - 1, r + 1); /* rows names... */
    }
    lua_settop(L, names - 1); /* rows */
}

/* Pushes what the query (light userdata at index 1) answers: rows, a
 * count, true, or nil and the error.  Called by on_query_done under
 * lua_pcall, so that running out of memory is an error. */
static int
push_outcome(lua_State *L)
{
    struct pg_query *q = lua_touserdata(L, 1);

    if (q->failed) {
        lua_pushnil(L);            /* q nil */
        lua_pushstring(L, q->err); /* q nil err */
        return 2;
    }
    switch (q->mode) {
    case MODE_ROWS:
        push_rows(L, q->result); /* q rows */
        break;
    case MODE_COUNT:
        lua_pushinteger(L, strtoll(PQcmdTuples(q->result), NULL, 10));
        break;
    default:
        lua_pushboolean(L, 1); /* q true */
        break;
    }
    return 1;
}

/* Called by libevent (made active by query_finish) when q is answered
 * and its request still waits: resumes the request with the outcome.
 * The resume comes last; the state may be closed when it returns. */
static void
on_query_done(evutil_socket_t fd, short what, void *arg)
{
    struct pg_query *q = arg;
    struct ab_request *req = q->req;
    lua_State *L = q->pool->L;
    int top = lua_gettop(L), nres;

    lua_pushcfunction(L, push_outcome);              /* f */
    lua_pushlightuserdata(L, q);                     /* f q */
    if (lua_pcall(L, 1, LUA_MULTRET, 0) != LUA_OK) { /* err */
        lua_pushnil(L);                              /* err nil */
        lua_insert(L, -2);                           /* nil err */
    }
    nres = lua_gettop(L) - top;
    lua_xmove(L, req->co, nres); /* co: ... outcome */
    query_free(q);
    ab_host_resume(req, nres);
}

/* ------------------------------------------------------------------ */
/* Connections                                                         */
/* ------------------------------------------------------------------ */

/* libpq's notice receiver: notices (and warnings) are dropped, since
 * nothing here logs. */
static void
on_notice(void *arg, const PGresult *res)
{
    (void)arg;
    (void)res;
}

static void on_socket(evutil_socket_t fd, short what, void *arg);

/* Waits for `what` on the connection's socket (which libpq may have
 * changed while connecting); returns 0, or -1 on out of memory or if
 * there is no socket. */
static int
conn_watch(struct pg_conn *conn, short what)
{
    int fd = PQsocket(conn->pg);

    if (conn->ev &&
        (event_get_fd(conn->ev) != fd || event_get_events(conn->ev) != what)) {
        event_free(conn->ev);
        conn->ev = NULL;
    }
    if (fd < 0) {
        return -1;
    }
    if (conn->ev == NULL) {
        conn->ev = event_new(conn->pool->base, fd, what, on_socket, conn);
    }
    return conn->ev ? event_add(conn->ev, NULL) : -1;
}

/* Arms the connection's deadline, `ms` from now. */
static void
conn_deadline(struct pg_conn *conn, long ms)
{
    struct timeval tv = {ms / 1000, (ms % 1000) * 1000};

    evtimer_add(conn->timer, &tv);
}

/* Closes the connection and frees it; the caller has unlinked it. */
static void
conn_free(struct pg_conn *conn)
{
    if (conn->ev) {
        event_free(conn->ev);
    }
    if (conn->timer) {
        event_free(conn->timer);
    }
    PQfinish(conn->pg);
    free(conn);
}

/* Non-zero if some connection of the pool is open (not connecting). */
static int
pool_has_open(const struct pg_pool *pool)
{
    const struct pg_conn *conn;

    TAILQ_FOREACH(conn, &pool->conns, link)
    {
        if (conn->state != C_CONNECTING) {
            return 1;
        }
    }
    return 0;
}

/* Drops a connection that failed or is done with: answers its query
 * and the queries pinned to it with "pg: unavailable: <reason>", and,
 * if it was still connecting and no other connection is open, every
 * queued query (the server is down: nobody would serve them). */
static void
conn_drop(struct pg_conn *conn, const char *reason)
{
    struct pg_pool *pool = conn->pool;
    struct pg_query *q = conn->query;
    char why[256];

    snprintf(why, sizeof(why), "%s", reason);
    if (conn->state == C_CONNECTING) {
        pool->retry_at = ab_now_ms() + RETRY_MS;
    }
    TAILQ_REMOVE(&pool->conns, conn, link);
    pool->nconns--;
    if (conn->tx) {
        conn->tx->conn = NULL;
        conn->tx = NULL;
    }
    fail_waiting(pool, conn, why);
    if (conn->state == C_CONNECTING && !pool_has_open(pool)) {
        fail_waiting(pool, NULL, why);
    }
    conn_free(conn);
    if (q) {
        query_fail(q, KIND_UNAVAILABLE, why);
        query_finish(q);
    }
    pool_kick(pool);
}

/* The connection is up: makes it non-blocking and idle. */
static void
conn_ready(struct pg_conn *conn)
{
    evtimer_del(conn->timer);
    conn->state = C_IDLE;
    if (PQsetnonblocking(conn->pg, 1) != 0 || conn_watch(conn, EV_READ)) {
        conn_drop(conn, "failed to set the connection up");
        return;
    }
    pool_kick(conn->pool);
}

/* One step of PQconnectPoll, on a socket event while connecting. */
static void
conn_connect_step(struct pg_conn *conn)
{
    int rc = 0;

    switch (PQconnectPoll(conn->pg)) {
    case PGRES_POLLING_READING:
        rc = conn_watch(conn, EV_READ);
        break;
    case PGRES_POLLING_WRITING:
        rc = conn_watch(conn, EV_WRITE);
        break;
    case PGRES_POLLING_OK:
        conn_ready(conn);
        return;
    default:
        conn_drop(conn, PQerrorMessage(conn->pg));
        return;
    }
    if (rc != 0) {
        conn_drop(conn, "failed to watch the connection's socket");
    }
}

/* Input on an idle connection: the server closing it (shutdown,
 * restart), or a notice.  Drops the connection if it broke. */
static void
conn_idle_input(struct pg_conn *conn)
{
    PGnotify *note;

    if (PQconsumeInput(conn->pg) == 0 || PQstatus(conn->pg) != CONNECTION_OK) {
        conn_drop(conn, PQerrorMessage(conn->pg));
        return;
    }
    while ((note = PQnotifies(conn->pg)) != NULL) {
        PQfreemem(note);
    }
    if (conn_watch(conn, EV_READ) != 0) {
        conn_drop(conn, "failed to watch the connection's socket");
    }
}

/* Takes one result of the running query.  Returns 0, or -1 if the
 * connection was dropped (COPY, which this module does not speak). */
static int
conn_collect(struct pg_conn *conn, PGresult *res)
{
    struct pg_query *q = conn->query;

    switch (PQresultStatus(res)) {
    case PGRES_COMMAND_OK:
    case PGRES_TUPLES_OK:
        if (q->mode == MODE_COMMIT &&
            strcmp(PQcmdStatus(res), "ROLLBACK") == 0) {
            query_fail(q, KIND_PLAIN,
                       "transaction rolled back: a statement "
                       "in it failed");
        }
        if (q->result == NULL && !q->failed) {
            q->result = res;
            return 0;
        }
        break;
    case PGRES_EMPTY_QUERY:
        query_fail(q, KIND_PLAIN, "no SQL statement");
        break;
    case PGRES_COPY_IN:
    case PGRES_COPY_OUT:
    case PGRES_COPY_BOTH:
        PQclear(res);
        query_fail(q, KIND_PLAIN, "COPY is not supported");
        conn_drop(conn, "COPY is not supported");
        return -1;
    default:
        fail_from_result(q, conn->pg, res);
        break;
    }
    PQclear(res);
    return 0;
}

/* After a BEGIN, COMMIT or ROLLBACK: pins the connection to its
 * transaction, or lets it go. */
static void
settle_tx(struct pg_conn *conn, struct pg_query *q)
{
    if (q->mode == MODE_BEGIN && !q->failed && q->req && q->tx) {
        conn->tx = q->tx;
        q->tx->conn = conn;
    } else if (q->mode == MODE_COMMIT || q->mode == MODE_ROLLBACK) {
        if (conn->tx) {
            conn->tx->conn = NULL;
            conn->tx = NULL;
        }
    }
}

/* Non-zero if the connection must close after q: it broke, or holds a
 * transaction nobody will finish (its request ended, or a statement of
 * pool:query left one open). */
static int
must_close(struct pg_conn *conn, const struct pg_query *q)
{
    PGTransactionStatusType ts = PQtransactionStatus(conn->pg);

    if (conn->doomed || q->unavailable || PQstatus(conn->pg) != CONNECTION_OK) {
        return 1;
    }
    if (conn->tx == NULL) {
        return ts != PQTRANS_IDLE;
    }
    return q->req == NULL;
}

/* The running query has all its results: the connection goes back to
 * the pool (or closes), then the query is answered. */
static void
conn_query_done(struct pg_conn *conn)
{
    struct pg_pool *pool = conn->pool;
    struct pg_query *q = conn->query;

    conn->query = NULL;
    conn->state = C_IDLE;
    evtimer_del(conn->timer);
    settle_tx(conn, q);
    if (must_close(conn, q)) {
        conn_drop(conn, "the connection was closed");
    } else if (conn_watch(conn, EV_READ) != 0) {
        conn_drop(conn, "failed to watch the connection's socket");
    }
    query_finish(q);
    pool_kick(pool);
}

/* A socket event while busy: sends what is left, reads what came, and
 * takes results until the query is done or libpq needs more input. */
static void
conn_io(struct pg_conn *conn)
{
    PGresult *res;
    int rc;

    if (PQconsumeInput(conn->pg) == 0) {
        conn_drop(conn, PQerrorMessage(conn->pg));
        return;
    }
    if (conn->flushing) {
        if ((rc = PQflush(conn->pg)) < 0) {
            conn_drop(conn, PQerrorMessage(conn->pg));
            return;
        }
        conn->flushing = rc == 1;
    }
    while (!PQisBusy(conn->pg)) {
        if ((res = PQgetResult(conn->pg)) == NULL) {
            conn_query_done(conn);
            return;
        }
        if (conn_collect(conn, res) != 0) {
            return;
        }
    }
    if (conn_watch(conn, EV_READ | (conn->flushing ? EV_WRITE : 0)) != 0) {
        conn_drop(conn, "failed to watch the connection's socket");
    }
}

/* Called by libevent on a connection's socket. */
static void
on_socket(evutil_socket_t fd, short what, void *arg)
{
    struct pg_conn *conn = arg;

    switch (conn->state) {
    case C_CONNECTING:
        conn_connect_step(conn);
        break;
    case C_IDLE:
        conn_idle_input(conn);
        break;
    case C_BUSY:
        conn_io(conn);
        break;
    }
}

/* Called by libevent at a connection's deadline: connecting took too
 * long, or a query nobody waits for any more still runs. */
static void
on_timer(evutil_socket_t fd, short what, void *arg)
{
    struct pg_conn *conn = arg;

    if (conn->state == C_CONNECTING) {
        conn_drop(conn, "timed out connecting to the server");
    } else {
        conn_drop(conn, "gave up on a query whose request ended");
    }
}

/* Starts opening a connection.  Returns 0, or -1 if it failed at once
 * (and was dropped, answering the queue if nothing else is open). */
static int
conn_open(struct pg_pool *pool)
{
    struct pg_conn *conn = calloc(1, sizeof(*conn));

    if (conn == NULL) {
        fail_waiting(pool, NULL, "out of memory");
        return -1;
    }
    conn->pool = pool;
    conn->state = C_CONNECTING;
    TAILQ_INSERT_TAIL(&pool->conns, conn, link);
    pool->nconns++;
    conn->pg = PQconnectStart(pool->conninfo);
    conn->timer = evtimer_new(pool->base, on_timer, conn);
    if (conn->pg == NULL || conn->timer == NULL) {
        conn_drop(conn, "out of memory");
        return -1;
    }
    if (PQstatus(conn->pg) == CONNECTION_BAD) {
        conn_drop(conn, PQerrorMessage(conn->pg));
        return -1;
    }
    PQsetNoticeReceiver(conn->pg, on_notice, NULL);
    conn_deadline(conn, AB_PG_CONNECT_TIMEOUT_MS);

    /* libpq: before the first PQconnectPoll, wait as if it had said
     * PGRES_POLLING_WRITING. */
    if (conn_watch(conn, EV_WRITE) != 0) {
        conn_drop(conn, "failed to watch the connection's socket");
        return -1;
    }
    return 0;
}

/* PQsendQueryParams refused q.  If the connection is fine, answers q
 * with libpq's reason and returns 0.  Else drops the connection and
 * returns -1, after queueing q again at the head (once, and not for a
 * transaction: nothing was sent) or answering it. */
static int
send_failed(struct pg_conn *conn, struct pg_query *q)
{
    struct pg_pool *pool = conn->pool;
    char why[256];

    if (PQstatus(conn->pg) == CONNECTION_OK) {
        query_fail(q, KIND_PLAIN, PQerrorMessage(conn->pg));
        query_finish(q);
        return 0;
    }
    snprintf(why, sizeof(why), "%s", PQerrorMessage(conn->pg));
    conn_drop(conn, why);
    if (q->pinned == NULL && !q->retried) {
        q->retried = 1;
        waiting_add(pool, q, 1);
    } else {
        query_fail(q, KIND_UNAVAILABLE, why);
        query_finish(q);
    }
    return -1;
}

/* Sends q on the idle connection.  Returns 0, or -1 if the connection
 * was dropped. */
static int
conn_start(struct pg_conn *conn, struct pg_query *q)
{
    int rc;

    if (!PQsendQueryParams(conn->pg, q->sql, q->nparams, q->types, q->values,
                           NULL, NULL, 0)) {
        return send_failed(conn, q);
    }
    conn->state = C_BUSY;
    conn->query = q;
    q->conn = conn;
    q->state = Q_RUNNING;
    if ((rc = PQflush(conn->pg)) < 0) {
        conn_drop(conn, PQerrorMessage(conn->pg));
        return -1;
    }
    conn->flushing = rc == 1;
    if (conn_watch(conn, EV_READ | (conn->flushing ? EV_WRITE : 0)) != 0) {
        conn_drop(conn, "failed to watch the connection's socket");
        return -1;
    }
    return 0;
}

/* ------------------------------------------------------------------ */
/* The pool                                                            */
/* ------------------------------------------------------------------ */

/* The connection q may start on now, or NULL. */
static struct pg_conn *
pick_conn(struct pg_pool *pool, const struct pg_query *q)
{
    struct pg_conn *conn;

    if (q->pinned) {
        return q->pinned->state == C_IDLE ? q->pinned : NULL;
    }
    TAILQ_FOREACH(conn, &pool->conns, link)
    {
        if (conn->state == C_IDLE && conn->tx == NULL) {
            return conn;
        }
    }
    return NULL;
}

/* Opens connections for `unserved` queued queries, counting those
 * already connecting, up to the pool's size.  Soon after a failed
 * connect, opens none while other connections are open: they serve the
 * queue, and the server may be refusing more clients.  With none open,
 * it always tries, so that a query answers at once while the server is
 * down. */
static void
open_conns(struct pg_pool *pool, int unserved)
{
    struct pg_conn *conn;
    int connecting = 0;

    if (ab_now_ms() < pool->retry_at && pool_has_open(pool)) {
        return;
    }
    TAILQ_FOREACH(conn, &pool->conns, link)
    {
        connecting += conn->state == C_CONNECTING;
    }
    while (connecting < unserved && pool->nconns < pool->size) {
        if (conn_open(pool) != 0) {
            return;
        }
        connecting++;
    }
}

/* Starts queued queries, oldest first, on the connections they may
 * use, and opens connections for the rest. */
static void
pool_dispatch(struct pg_pool *pool)
{
    struct pg_query *q, *next;
    int unserved = 0;

    for (q = TAILQ_FIRST(&pool->waiting); q != NULL; q = next) {
        struct pg_conn *conn = pick_conn(pool, q);

        next = TAILQ_NEXT(q, link);
        if (conn == NULL) {
            unserved += q->pinned == NULL;
            continue;
        }
        waiting_remove(pool, q);
        if (conn_start(conn, q) != 0) {
            return; /* a connection was dropped, which kicks again */
        }
    }
    open_conns(pool, unserved);
}

/* Called by libevent when the pool was kicked. */
static void
on_kick(evutil_socket_t fd, short what, void *arg)
{
    pool_dispatch(arg);
}

/* Has the loop look at the pool's queue soon (never from inside). */
static void
pool_kick(struct pg_pool *pool)
{
    event_active(pool->kick, EV_TIMEOUT, 0);
}

/* Closes every connection and frees every query, without touching
 * Lua: __gc, also while the state closes. */
static void
pool_close(struct pg_pool *pool)
{
    struct pg_conn *conn;
    struct pg_query *q;

    pool->closed = 1;
    while ((conn = TAILQ_FIRST(&pool->conns)) != NULL) {
        TAILQ_REMOVE(&pool->conns, conn, link);
        if (conn->tx) {
            conn->tx->conn = NULL;
        }
        conn_free(conn);
    }

    /* A query still waiting on a request cannot be: it keeps the pool
     * alive, and the state closes only once every request has ended.
     * Unpark it all the same, so that the request's end frees
     * nothing twice. */
    while ((q = TAILQ_FIRST(&pool->queries)) != NULL) {
        if (q->req) {
            ab_host_park(q->req, NULL, NULL);
        }
        query_discard(q);
    }
    TAILQ_INIT(&pool->waiting);
    pool->nwaiting = 0;
    if (pool->kick) {
        event_free(pool->kick);
        pool->kick = NULL;
    }
    free(pool->conninfo);
    pool->conninfo = NULL;
}

/* ------------------------------------------------------------------ */
/* Submitting from Lua                                                 */
/* ------------------------------------------------------------------ */

/* Returns the open pool at stack index idx; raises if it is closed. */
static struct pg_pool *
check_pool(lua_State *L, int idx)
{
    struct pg_pool *pool = luaL_checkudata(L, idx, POOL_MT);

    if (pool->closed) {
        luaL_error(L, "pool is closed");
    }
    return pool;
}

/* Returns the bytes the text of the value at idx takes (with its NUL);
 * raises if it cannot be bound. */
static size_t
param_size(lua_State *L, int idx)
{
    size_t len;
    const char *s;

    switch (lua_type(L, idx)) {
    case LUA_TNIL:
        return 0;
    case LUA_TBOOLEAN:
    case LUA_TNUMBER:
        return NUMBER_TEXT;
    case LUA_TSTRING:
        s = lua_tolstring(L, idx, &len);
        luaL_argcheck(L, strlen(s) == len, idx,
                      "cannot bind a string holding a NUL byte");
        return len + 1;
    default:
        return luaL_argerror(
            L, idx,
            lua_pushfstring(L, "cannot bind a %s", luaL_typename(L, idx)));
    }
}

/* Writes the text of the number at idx into buf; sets its type. */
static void
number_text(lua_State *L, int idx, char *buf, Oid *type)
{
    lua_Number d;

    if (lua_isinteger(L, idx)) {
        *type = OID_INT8;
        snprintf(buf, NUMBER_TEXT, LUA_INTEGER_FMT, lua_tointeger(L, idx));
        return;
    }
    *type = OID_FLOAT8;
    d = lua_tonumber(L, idx);
    if (isnan(d)) {
        snprintf(buf, NUMBER_TEXT, "NaN");
    } else if (isinf(d)) {
        snprintf(buf, NUMBER_TEXT, "%sInfinity", d < 0 ? "-" : "");
    } else {
        snprintf(buf, NUMBER_TEXT, "%.17g", d);
    }
}

/* Fills parameter i of q from the value at idx; `text` is its room.
 * Returns the bytes used. */
static size_t
bind_one(lua_State *L, struct pg_query *q, int i, int idx, char *text)
{
    size_t len;
    const char *s;

    q->types[i] = 0;
    q->values[i] = text;
    switch (lua_type(L, idx)) {
    case LUA_TNIL:
        q->values[i] = NULL;
        return 0;
    case LUA_TBOOLEAN:
        q->types[i] = OID_BOOL;
        snprintf(text, NUMBER_TEXT, "%s", lua_toboolean(L, idx) ? "t" : "f");
        return NUMBER_TEXT;
    case LUA_TNUMBER:
        number_text(L, idx, text, &q->types[i]);
        return NUMBER_TEXT;
    default:
        s = lua_tolstring(L, idx, &len);
        memcpy(text, s, len + 1);
        return len + 1;
    }
}

/*
 * Builds a query of `sql` with the arguments from stack index `first`
 * on (none if first is 0), holding a reference to the value at ref_idx.
 * Raises on a value that cannot be bound, before allocating anything.
 * The pool owns the query.
 */
static struct pg_query *
query_new(lua_State *L, struct pg_pool *pool, enum mode mode, const char *sql,
          size_t sql_len, int first, int ref_idx)
{
    int n = first ? lua_gettop(L) - first + 1 : 0;
    size_t size = sql_len + 1;
    struct pg_query *q;
    char *text;
    int ref;

    luaL_argcheck(L, strlen(sql) == sql_len, 2, "SQL text holding a NUL byte");
    if (n > MAX_PARAMS) {
        luaL_error(L, "a statement takes at most %d parameters", MAX_PARAMS);
    }
    for (int i = 0; i < n; i++) {
        size += param_size(L, first + i);
    }
    size += (size_t)n * (sizeof(char *) + sizeof(Oid));

    lua_pushvalue(L, ref_idx);            /* ... obj */
    ref = luaL_ref(L, LUA_REGISTRYINDEX); /* ... */
    q = calloc(1, sizeof(*q) + size);
    if (q == NULL ||
        (q->done = event_new(pool->base, -1, 0, on_query_done, q)) == NULL) {
        free(q);
        luaL_unref(L, LUA_REGISTRYINDEX, ref);
        luaL_error(L, "not enough memory");
    }
    q->pool = pool;
    q->mode = mode;
    q->ref = ref;
    q->nparams = n;
    q->values = (const char **)(q + 1);
    q->types = (Oid *)(q->values + n);
    text = (char *)(q->types + n);
    for (int i = 0; i < n; i++) {
        text += bind_one(L, q, i, first + i, text);
    }
    memcpy(text, sql, sql_len + 1);
    q->sql = text;
    TAILQ_INSERT_TAIL(&pool->queries, q, all);
    return q;
}

/* Called by the Lua host when the request of a parked query ends
 * (client gone, deadline): a queued query is dropped, a running one is
 * left to finish and its result thrown away (see pg.h), an answered one
 * is freed unread. */
static void
on_cancel(void *arg)
{
    struct pg_query *q = arg;

    q->req = NULL;
    switch (q->state) {
    case Q_WAITING:
        waiting_remove(q->pool, q);
        query_free(q);
        break;
    case Q_RUNNING:
        conn_deadline(q->conn, AB_PG_DRAIN_TIMEOUT_MS);
        break;
    case Q_DONE:
        query_free(q);
        break;
    }
}

static int tx_continue(lua_State *L, int status, lua_KContext step);

/* Queues q for the request and yields (continuing at `step` of a
 * transaction, if not 0).  If the queue is full, answers nil, err at
 * once instead. */
static int
submit(lua_State *L, struct ab_request *req, struct pg_query *q,
       lua_KContext step)
{
    struct pg_pool *pool = q->pool;

    if (q->pinned == NULL && pool->nwaiting >= pool->max_waiting) {
        query_free(q);
        lua_pushnil(L);                                  /* ... nil */
        lua_pushliteral(L, "pg: busy: pool queue full"); /* ... nil err */
        return step ? tx_continue(L, LUA_OK, step) : 2;
    }
    if (q->tx) {
        q->tx->busy = 1;
    }
    q->req = req;
    waiting_add(pool, q, 0);
    pool_kick(pool);
    ab_host_park(req, on_cancel, q);
    if (step) {
        return lua_yieldk(L, 0, step, tx_continue);
    }
    return lua_yield(L, 0);
}

/* pool:query and pool:run */
static int
pool_statement(lua_State *L, enum mode mode)
{
    struct pg_pool *pool = check_pool(L, 1);
    struct ab_request *req = ab_host_check_request(L);
    size_t len;
    const char *sql = luaL_checklstring(L, 2, &len);

    return submit(L, req, query_new(L, pool, mode, sql, len, 3, 1), 0);
}

/* pool:query(sql, ...) -> rows | nil, err */
static int
l_query(lua_State *L)
{
    return pool_statement(L, MODE_ROWS);
}

/* pool:run(sql, ...) -> count | nil, err */
static int
l_run(lua_State *L)
{
    return pool_statement(L, MODE_COUNT);
}

/* ------------------------------------------------------------------ */
/* Transactions                                                        */
/* ------------------------------------------------------------------ */

static const char lost_msg[] = "pg: unavailable: the connection was lost "
                               "during the transaction";

/* Returns the tx at stack index 1, open and the current request's;
 * raises otherwise. */
static struct pg_tx *
check_tx(lua_State *L, struct ab_request *req)
{
    struct pg_tx *tx = luaL_checkudata(L, 1, TX_MT);

    if (tx->over) {
        luaL_error(L, "transaction is over");
    }
    if (tx->req != req) {
        luaL_error(L, "transaction belongs to another request");
    }
    if (tx->busy) {
        luaL_error(L, "transaction is running a statement");
    }
    return tx;
}

/* tx:query and tx:run: one statement on the transaction's connection. */
static int
tx_statement(lua_State *L, enum mode mode)
{
    struct ab_request *req = ab_host_check_request(L);
    struct pg_tx *tx = check_tx(L, req);
    size_t len;
    const char *sql = luaL_checklstring(L, 2, &len);
    struct pg_query *q;

    if (tx->conn == NULL) {
        lua_pushnil(L);              /* ... nil */
        lua_pushstring(L, lost_msg); /* ... nil err */
        return 2;
    }
    q = query_new(L, tx->pool, mode, sql, len, 3, 1);
    q->tx = tx;
    q->pinned = tx->conn;
    return submit(L, req, q, 0);
}

/* tx:query(sql, ...) -> rows | nil, err */
static int
l_tx_query(lua_State *L)
{
    return tx_statement(L, MODE_ROWS);
}

/* tx:run(sql, ...) -> count | nil, err */
static int
l_tx_run(lua_State *L)
{
    return tx_statement(L, MODE_COUNT);
}

/* Sends COMMIT or ROLLBACK and yields to STEP_END.  Stack: pool fn tx
 * and fn's results (commit) or the error (rollback). */
static int
tx_send_end(lua_State *L, struct pg_tx *tx, int rollback)
{
    struct ab_request *req = ab_host_check_request(L);
    const char *sql = rollback ? "ROLLBACK" : "COMMIT";
    struct pg_query *q;

    tx->rollback = rollback;
    if (tx->conn == NULL) {
        lua_pushnil(L);              /* ... nil */
        lua_pushstring(L, lost_msg); /* ... nil err */
        return tx_continue(L, LUA_OK, STEP_END);
    }
    q = query_new(L, tx->pool, rollback ? MODE_ROLLBACK : MODE_COMMIT, sql,
                  strlen(sql), 0, 3);
    q->tx = tx;
    q->pinned = tx->conn;
    return submit(L, req, q, STEP_END);
}

/* fn returned or raised (status): commits, or rolls back keeping the
 * error.  Stack: pool fn tx res... | pool fn tx err. */
static int
tx_end(lua_State *L, struct pg_tx *tx, int status)
{
    int nres = lua_gettop(L) - 3;

    if (status != LUA_OK && status != LUA_YIELD) {
        luaL_tolstring(L, 4, NULL); /* pool fn tx err msg */
        lua_replace(L, 4);          /* pool fn tx msg */
        return tx_send_end(L, tx, 1);
    }
    if (nres >= 2 && lua_isnil(L, 4) && !lua_isnil(L, 5)) {
        lua_settop(L, 5);  /* pool fn tx nil err */
        lua_replace(L, 4); /* pool fn tx err */
        return tx_send_end(L, tx, 1);
    }
    tx->nres = nres;
    return tx_send_end(L, tx, 0);
}

/* BEGIN answered: calls fn(tx) if it worked.  Stack: pool fn tx true |
 * pool fn tx nil err. */
static int
tx_body(lua_State *L, struct pg_tx *tx)
{
    int status;

    if (!lua_toboolean(L, 4)) {
        tx->over = 1;
        return 2; /* nil err */
    }
    lua_settop(L, 3);    /* pool fn tx */
    lua_pushvalue(L, 2); /* pool fn tx fn */
    lua_pushvalue(L, 3); /* pool fn tx fn tx */
    status = lua_pcallk(L, 1, LUA_MULTRET, 0, STEP_BODY, tx_continue);
    return tx_end(L, tx, status); /* pool fn tx res... | err */
}

/* COMMIT or ROLLBACK answered: returns fn's results, or nil and the
 * error.  Stack: pool fn tx err|res... then true | nil err. */
static int
tx_finish(lua_State *L, struct pg_tx *tx)
{
    tx->over = 1;
    if (tx->rollback) {
        lua_pushnil(L);      /* ... nil */
        lua_pushvalue(L, 4); /* ... nil err */
        return 2;
    }
    if (!lua_toboolean(L, 4 + tx->nres)) {
        return 2; /* ... nil err */
    }
    lua_settop(L, 3 + tx->nres); /* pool fn tx res... */
    if (tx->nres == 0) {
        lua_pushboolean(L, 1); /* pool fn tx true */
        return 1;
    }
    return tx->nres;
}

/* The continuation of pool:transaction, at each step: called by Lua
 * when the coroutine resumes (or by us when a step answers at once). */
static int
tx_continue(lua_State *L, int status, lua_KContext step)
{
    struct pg_tx *tx = luaL_checkudata(L, 3, TX_MT);

    switch (step) {
    case STEP_BEGIN:
        return tx_body(L, tx);
    case STEP_BODY:
        return tx_end(L, tx, status);
    default:
        return tx_finish(L, tx);
    }
}

/* pool:transaction(fn) -> fn's results | nil, err */
static int
l_transaction(lua_State *L)
{
    struct pg_pool *pool = check_pool(L, 1);
    struct ab_request *req = ab_host_check_request(L);
    struct pg_tx *tx;
    struct pg_query *q;

    luaL_checktype(L, 2, LUA_TFUNCTION);
    lua_settop(L, 2);                          /* pool fn */
    tx = lua_newuserdatauv(L, sizeof(*tx), 1); /* pool fn tx */
    memset(tx, 0, sizeof(*tx));
    luaL_setmetatable(L, TX_MT);
    lua_pushvalue(L, 1);        /* pool fn tx pool */
    lua_setiuservalue(L, 3, 1); /* pool fn tx */
    tx->pool = pool;
    tx->req = req;
    q = query_new(L, pool, MODE_BEGIN, "BEGIN", 5, 0, 3);
    q->tx = tx;
    return submit(L, req, q, STEP_BEGIN);
}

/* __gc of a tx, called by Lua: a transaction still pinning its
 * connection was abandoned (its request's coroutine was dropped), so
 * the connection closes and the server rolls it back. */
static int
tx_gc(lua_State *L)
{
    struct pg_tx *tx = luaL_checkudata(L, 1, TX_MT);
    struct pg_conn *conn = tx->conn;

    if (conn == NULL) {
        return 0;
    }
    tx->conn = NULL;
    conn->tx = NULL;
    if (conn->state == C_IDLE) {
        conn_drop(conn, "transaction abandoned");
    } else {
        conn->doomed = 1;
    }
    return 0;
}

/* ------------------------------------------------------------------ */
/* Opening                                                             */
/* ------------------------------------------------------------------ */

/* __gc of a pool, called by Lua when it is collected or its state
 * closes. */
static int
pool_gc(lua_State *L)
{
    struct pg_pool *pool = luaL_checkudata(L, 1, POOL_MT);

    if (!pool->closed) {
        pool_close(pool);
    }
    return 0;
}

/* Raises unless libpq can parse conninfo (without repeating it: it may
 * hold a password). */
static void
check_conninfo(lua_State *L, const char *conninfo)
{
    char *err = NULL;
    PQconninfoOption *opts = PQconninfoParse(conninfo, &err);

    PQfreemem(err);
    if (opts == NULL) {
        luaL_argerror(L, 1, "not a libpq connection string or URI");
    }
    PQconninfoFree(opts);
}

/* The event base of the state; raises if none was set. */
static struct event_base *
check_base(lua_State *L)
{
    struct event_base *base;

    lua_rawgetp(L, LUA_REGISTRYINDEX, &base_key); /* ... base */
    base = lua_touserdata(L, -1);
    lua_pop(L, 1); /* ... */
    if (base == NULL) {
        luaL_error(L, "broker.pg has no event loop");
    }
    return base;
}

/* pg.pool(conninfo, size [, max_waiting]) -> pool */
static int
l_pool(lua_State *L)
{
    const char *conninfo = luaL_checkstring(L, 1);
    lua_Integer size = luaL_checkinteger(L, 2);
    lua_Integer max_waiting = luaL_optinteger(L, 3, AB_PG_MAX_QUEUE);
    struct event_base *base = check_base(L);
    struct pg_pool *pool;

    luaL_argcheck(L, size >= 1 && size <= AB_PG_MAX_POOL, 2,
                  "1 to " TEXT_OF(AB_PG_MAX_POOL) " connections");
    luaL_argcheck(L, max_waiting >= 0 && max_waiting <= 1000000, 3,
                  "0 to 1000000 waiting callers");
    check_conninfo(L, conninfo);
    lua_settop(L, 1);
    pool = lua_newuserdatauv(L, sizeof(*pool), 0); /* conninfo pool */
    memset(pool, 0, sizeof(*pool));
    TAILQ_INIT(&pool->conns);
    TAILQ_INIT(&pool->waiting);
    TAILQ_INIT(&pool->queries);
    luaL_setmetatable(L, POOL_MT); /* from here __gc frees what is set */
    pool->base = base;
    pool->size = (int)size;
    pool->max_waiting = (int)max_waiting;
    lua_rawgeti(L, LUA_REGISTRYINDEX, LUA_RIDX_MAINTHREAD); /* ... pool L */
    pool->L = lua_tothread(L, -1);
    lua_pop(L, 1); /* conninfo pool */
    pool->conninfo = strdup(conninfo);
    pool->kick = event_new(base, -1, 0, on_kick, pool);
    if (pool->conninfo == NULL || pool->kick == NULL) {
        return luaL_error(L, "not enough memory");
    }
    return 1;
}

void
ab_pg_set_base(lua_State *L, struct event_base *base)
{
    lua_pushlightuserdata(L, base);               /* base */
    lua_rawsetp(L, LUA_REGISTRYINDEX, &base_key); /* */
}

static const luaL_Reg pool_methods[] = {
    {"query", l_query},
    {"run", l_run},
    {"transaction", l_transaction},
    {NULL, NULL},
};

static const luaL_Reg tx_methods[] = {
    {"query", l_tx_query},
    {"run", l_tx_run},
    {NULL, NULL},
};

static const luaL_Reg module_funcs[] = {
    {"pool", l_pool},
    {NULL, NULL},
};

/* Creates metatable `name` with __gc and the methods as __index. */
static void
new_class(lua_State *L, const char *name, lua_CFunction gc,
          const luaL_Reg *methods)
{
    if (luaL_newmetatable(L, name)) { /* mt */
        lua_pushcfunction(L, gc);     /* mt gc */
        lua_setfield(L, -2, "__gc");  /* mt */
        lua_newtable(L);              /* mt methods */
        luaL_setfuncs(L, methods, 0);
        lua_setfield(L, -2, "__index"); /* mt */
    }
    lua_pop(L, 1); /* */
}

int
ab_luaopen_pg(lua_State *L)
{
    new_class(L, POOL_MT, pool_gc, pool_methods);
    new_class(L, TX_MT, tx_gc, tx_methods);
    luaL_newlib(L, module_funcs); /* M */
    return 1;
}
