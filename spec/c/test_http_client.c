/*
 * test_http_client.c - tests for core/http_client.c: first the pure
 * helpers, then real calls against a libevent HTTP server that runs on
 * 127.0.0.1 (port 0) in the same process and the same event loop.
 *
 * The streaming tests fetch bodies of up to 10 MB that the server
 * writes piece by piece (on_stream), each byte a function of its offset
 * (pattern_at), so that the client can check every byte in order.
 *
 * No framework: each test is a function, CHECK() records a failure and
 * goes on.  Every test also fails if something reached the log that it
 * did not expect.  The last line printed is "N passed, N failed", and
 * the exit status is non-zero if any test failed.
 */
#include "http_client.h"
#include "log.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <curl/curl.h>
#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>

/* Wed, 21 Oct 2015 07:28:00 GMT */
#define DATE_EPOCH 1445412480LL
#define DATE_TEXT  "Wed, 21 Oct 2015 07:28:00 GMT"

/* Longest any single test may run the loop before it gives up. */
#define WAIT_MS 5000L

/* The same for streams, which move megabytes or wait out idle time
 * (curl averages speed over up to 5 seconds). */
#define STREAM_WAIT_MS 20000L

#define TEN_MB ((size_t)10 * 1024 * 1024)

/* How much the streaming server writes before it waits for the socket
 * to drain. */
#define SERVER_STEP 65536

static int tests_passed;
static int tests_failed;
static int current_failed;
static const char *current_name;

/* Log lines go to a temporary file (see capture_log) so that tests can
 * check nothing unexpected was logged; messages of this file go to the
 * real stderr. */
static FILE *real_stderr;
static FILE *log_file;

#define CHECK(cond) check((cond), #cond, __LINE__)

static void
check(int ok, const char *what, int line)
{
    if (!ok) {
        current_failed = 1;
        fprintf(real_stderr, "FAIL %s (line %d): %s\n", current_name, line,
                what);
    }
}

/* ------------------------------------------------------------------ */
/* Fixture: loop, server, client                                       */
/* ------------------------------------------------------------------ */

struct fixture {
    struct event_base *base;
    struct evhttp *http;
    int port;    /* the evhttp server */
    int hang_fd; /* listens, never accepts: nothing answers */
    int hang_port;
    int closed_port;          /* nothing listens there */
    struct event *raw_accept; /* the canned-bytes server (see on_raw_*) */
    int raw_fd;
    int raw_port;
    const char *raw_response; /* what it sends; RAW_RESPONSE by default */
    int raw_hold;             /* keep the connection open after sending */
    int held_fd;              /* that connection, closed after the test */
    struct ab_http_client *client;
    int completed;  /* callbacks run in this test */
    int flaky_left; /* /flaky answers 503 this many more times */
    int flaky_hits;
    int limited_left; /* /limited answers 429 this many more times */
    int limited_hits;
    const char *retry_after; /* Retry-After sent with the 429 */
    int peer_ports[4];       /* client ports seen by /peer */
    int npeer;
};

static struct fixture fx;

/* What a callback saw, copied out of the response. */
struct outcome {
    int done;
    int status;
    char error[96];
    int timed_out;
    int attempts;
    double elapsed_ms;
    char body[256];
    size_t body_len;
    size_t nheaders;
    char names[16][32];
    char values[16][64];
};

static void
copy_str(char *dst, size_t size, const char *src)
{
    snprintf(dst, size, "%s", src != NULL ? src : "");
}

/* Copies all of `res` but the body into `out`. */
static void
copy_outcome(const struct ab_http_response *res, struct outcome *out)
{
    out->status = res->status;
    copy_str(out->error, sizeof(out->error), res->error);
    out->timed_out = res->timed_out;
    out->attempts = res->attempts;
    out->elapsed_ms = res->elapsed_ms;
    out->body_len = res->body_len;
    out->nheaders = res->nheaders;
    for (size_t i = 0; i < res->nheaders && i < 16; i++) {
        copy_str(out->names[i], sizeof(out->names[i]), res->headers[i].name);
        copy_str(out->values[i], sizeof(out->values[i]), res->headers[i].value);
    }
}

/* Called by the client when a call completes; `arg` is an outcome. */
static void
on_done(const struct ab_http_response *res, void *arg)
{
    struct outcome *out = arg;

    out->done++;
    copy_outcome(res, out);
    if (res->body_len < sizeof(out->body)) {
        memcpy(out->body, res->body, res->body_len + 1);
    }
    fx.completed++;
}

/* The value of response header `name`, "" if absent. */
static const char *
header_of(const struct outcome *out, const char *name)
{
    for (size_t i = 0; i < out->nheaders && i < 16; i++) {
        if (strcmp(out->names[i], name) == 0) {
            return out->values[i];
        }
    }
    return "";
}

static size_t
header_count(const struct outcome *out, const char *name)
{
    size_t n = 0;

    for (size_t i = 0; i < out->nheaders && i < 16; i++) {
        n += strcmp(out->names[i], name) == 0;
    }
    return n;
}

static void
on_deadline(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    *(int *)arg = 1;
}

/* Runs the loop while *value < target, for at most max_ms.  Returns 0
 * if the target was reached. */
static int
run_until(const int *value, int target, long max_ms)
{
    int expired = 0;
    struct timeval tv = {max_ms / 1000, (max_ms % 1000) * 1000};
    struct event *deadline = evtimer_new(fx.base, on_deadline, &expired);

    evtimer_add(deadline, &tv);
    while (*value < target && !expired) {
        event_base_loop(fx.base, EVLOOP_ONCE);
    }
    event_free(deadline);
    return *value >= target ? 0 : -1;
}

/* Runs the loop for `ms` milliseconds. */
static void
run_for(long ms)
{
    int never = 0;

    run_until(&never, 1, ms);
}

/* A request for `path` on the test server, other fields zero.  The URL
 * lives in one of a few static buffers, so that a test can hold a
 * handful of requests at once. */
static struct ab_http_request
request_for(const char *method, const char *path, int port)
{
    static char urls[8][128];
    static int next;
    char *url = urls[next++ % 8];
    struct ab_http_request req;

    memset(&req, 0, sizeof(req));
    snprintf(url, sizeof(urls[0]), "http://127.0.0.1:%d%s", port, path);
    req.method = method;
    req.url = url;
    return req;
}

static struct ab_http_call *
start_get(const char *path, struct outcome *out)
{
    struct ab_http_request req = request_for("GET", path, fx.port);

    return ab_http_start(fx.client, &req, on_done, out);
}

/* ------------------------------------------------------------------ */
/* Server handlers                                                     */
/* ------------------------------------------------------------------ */

static void
reply(struct evhttp_request *req, int code, const char *body)
{
    struct evbuffer *buf = evbuffer_new();

    evbuffer_add(buf, body, strlen(body));
    evhttp_send_reply(req, code, code == 200 ? "OK" : "Oops", buf);
    evbuffer_free(buf);
}

static struct evkeyvalq *
out_headers(struct evhttp_request *req)
{
    return evhttp_request_get_output_headers(req);
}

/* GET /ok: 200 "hello", with a header that needs trimming. */
static void
on_ok(struct evhttp_request *req, void *arg)
{
    (void)arg;
    evhttp_add_header(out_headers(req), "X-Test", "   spaced value  ");
    reply(req, 200, "hello");
}

/* GET /flaky: 503 while flaky_left > 0, then 200 "recovered"; every
 * answer says which hit it was in X-Attempt. */
static void
on_flaky(struct evhttp_request *req, void *arg)
{
    char hit[16];

    (void)arg;
    snprintf(hit, sizeof(hit), "%d", ++fx.flaky_hits);
    evhttp_add_header(out_headers(req), "X-Attempt", hit);
    if (fx.flaky_left > 0) {
        fx.flaky_left--;
        reply(req, 503, "busy");
        return;
    }
    reply(req, 200, "recovered");
}

/* GET /limited: 429 with Retry-After while limited_left > 0, then 200. */
static void
on_limited(struct evhttp_request *req, void *arg)
{
    (void)arg;
    fx.limited_hits++;
    if (fx.limited_left > 0) {
        fx.limited_left--;
        evhttp_add_header(out_headers(req), "Retry-After", fx.retry_after);
        reply(req, 429, "slow down");
        return;
    }
    reply(req, 200, "finally");
}

/* GET /big: 4096 bytes with a Content-Length. */
static void
on_big(struct evhttp_request *req, void *arg)
{
    char body[4097];

    (void)arg;
    memset(body, 'x', 4096);
    body[4096] = '\0';
    reply(req, 200, body);
}

/* GET /bigchunked: 4096 bytes in chunks, length not known up front. */
static void
on_big_chunked(struct evhttp_request *req, void *arg)
{
    char chunk[1024];
    struct evbuffer *buf = evbuffer_new();

    (void)arg;
    memset(chunk, 'y', sizeof(chunk));
    evhttp_send_reply_start(req, 200, "OK");
    for (int i = 0; i < 4; i++) {
        evbuffer_add(buf, chunk, sizeof(chunk));
        evhttp_send_reply_chunk(req, buf);
    }
    evhttp_send_reply_end(req);
    evbuffer_free(buf);
}

static const char *
method_name(struct evhttp_request *req)
{
    switch (evhttp_request_get_command(req)) {
    case EVHTTP_REQ_GET:
        return "GET";
    case EVHTTP_REQ_POST:
        return "POST";
    case EVHTTP_REQ_PUT:
        return "PUT";
    case EVHTTP_REQ_DELETE:
        return "DELETE";
    default:
        return "OTHER";
    }
}

/* /echo: "METHOD:content-type-or-dash:body", X-Req echoed in X-Echo,
 * and whether X-Empty came with an empty value in X-Empty-Seen. */
static void
on_echo(struct evhttp_request *req, void *arg)
{
    struct evkeyvalq *in = evhttp_request_get_input_headers(req);
    const char *ct = evhttp_find_header(in, "Content-Type");
    const char *xreq = evhttp_find_header(in, "X-Req");
    const char *empty = evhttp_find_header(in, "X-Empty");
    struct evbuffer *body = evbuffer_new();

    (void)arg;
    evbuffer_add_printf(body, "%s:%s:", method_name(req), ct ? ct : "-");
    evbuffer_add_buffer(body, evhttp_request_get_input_buffer(req));
    evhttp_add_header(out_headers(req), "X-Echo", xreq ? xreq : "-");
    evhttp_add_header(out_headers(req), "X-Empty-Seen",
                      empty == NULL    ? "absent"
                      : *empty == '\0' ? "empty"
                                       : "full");
    evhttp_send_reply(req, 200, "OK", body);
    evbuffer_free(body);
}

/* GET /peer: records the client's port, to see connections reused. */
static void
on_peer(struct evhttp_request *req, void *arg)
{
    char *addr = NULL;
    ev_uint16_t port = 0;

    (void)arg;
    evhttp_connection_get_peer(evhttp_request_get_connection(req), &addr,
                               &port);
    if (fx.npeer < 4) {
        fx.peer_ports[fx.npeer++] = port;
    }
    reply(req, 200, "peer");
}

/* GET /missing: 404 with a reason header and a short body. */
static void
on_missing(struct evhttp_request *req, void *arg)
{
    (void)arg;
    evhttp_add_header(out_headers(req), "X-Why", "no such thing");
    reply(req, 404, "not here");
}

/* GET /nocontent: 204, no body. */
static void
on_nocontent(struct evhttp_request *req, void *arg)
{
    (void)arg;
    evhttp_send_reply(req, 204, "No Content", NULL);
}

/* Byte `i` of every /stream body: varies with the offset, and not with
 * a short period, so that a lost, doubled or moved piece shows. */
static unsigned char
pattern_at(size_t i)
{
    return (unsigned char)((i * 131u) ^ (i >> 9) ^ (i >> 17));
}

/* FNV-1a over `n` bytes, continuing from `h`. */
static uint64_t
fnv1a(uint64_t h, const unsigned char *p, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        h = (h ^ p[i]) * 1099511628211ULL;
    }
    return h;
}

#define FNV_START 14695981039346656037ULL

/* One /stream answer in progress.  Freed once sent, or by
 * on_stream_closed if the client goes away first. */
struct server_stream {
    struct evhttp_request *req;
    size_t total; /* body bytes to send */
    size_t sent;
    size_t piece; /* HTTP chunk size; 0: Content-Length, no chunks */
};

static void on_stream_sent(struct evhttp_connection *evcon, void *arg);

/* Called by libevent when a /stream connection closes before the
 * answer was sent: evhttp left the request to us. */
static void
on_stream_closed(struct evhttp_connection *evcon, void *arg)
{
    struct server_stream *st = arg;

    (void)evcon;
    if (evhttp_request_get_connection(st->req) == NULL) {
        evhttp_send_reply_end(st->req); /* frees an orphaned request */
    }
    free(st);
}

/* Queues the next SERVER_STEP bytes (or ends the answer), to be
 * called back once they left. */
static void
stream_step(struct server_stream *st)
{
    struct evhttp_connection *evcon = evhttp_request_get_connection(st->req);
    size_t end = st->sent + SERVER_STEP;
    struct evbuffer *buf = evbuffer_new();
    unsigned char piece[SERVER_STEP];

    if (st->sent == st->total) {
        evhttp_connection_set_closecb(evcon, NULL, NULL);
        evhttp_send_reply_end(st->req);
        evbuffer_free(buf);
        free(st);
        return;
    }
    end = end < st->total ? end : st->total;
    for (size_t i = st->sent; i < end; i++) {
        piece[i - st->sent] = pattern_at(i);
    }
    for (size_t at = 0; at < end - st->sent; at += st->piece) {
        size_t n = end - st->sent - at;

        n = st->piece > 0 && st->piece < n ? st->piece : n;
        evbuffer_add(buf, piece + at, n);
        if (at + n < end - st->sent) {
            evhttp_send_reply_chunk(st->req, buf);
        }
        if (st->piece == 0) {
            break;
        }
    }
    st->sent = end;
    evhttp_send_reply_chunk_with_cb(st->req, buf, on_stream_sent, st);
    evbuffer_free(buf);
}

/* Called by libevent once the last step has left the server. */
static void
on_stream_sent(struct evhttp_connection *evcon, void *arg)
{
    (void)evcon;
    stream_step(arg);
}

/* The value of query parameter `name` of `req` as a number, or `dflt`. */
static size_t
query_number(struct evhttp_request *req, const char *name, size_t dflt)
{
    const char *query =
        evhttp_uri_get_query(evhttp_request_get_evhttp_uri(req));
    struct evkeyvalq params;
    const char *value;
    size_t n = dflt;

    if (query == NULL || evhttp_parse_query_str(query, &params) < 0) {
        return dflt;
    }
    value = evhttp_find_header(&params, name);
    if (value != NULL) {
        n = (size_t)strtoull(value, NULL, 10);
    }
    evhttp_clear_headers(&params);
    return n;
}

/* GET /stream?bytes=N[&piece=M]: N pattern bytes, written SERVER_STEP
 * at a time as the socket drains; with a Content-Length, or in HTTP
 * chunks of M bytes if `piece` is given. */
static void
on_stream(struct evhttp_request *req, void *arg)
{
    struct server_stream *st = calloc(1, sizeof(*st));
    char length[32];

    (void)arg;
    st->req = req;
    st->total = query_number(req, "bytes", 0);
    st->piece = query_number(req, "piece", 0);
    if (st->piece == 0) {
        snprintf(length, sizeof(length), "%zu", st->total);
        evhttp_add_header(out_headers(req), "Content-Length", length);
    }
    evhttp_add_header(out_headers(req), "X-Stream", "yes");
    evhttp_connection_set_closecb(evhttp_request_get_connection(req),
                                  on_stream_closed, st);
    evhttp_send_reply_start(req, 200, "OK");
    stream_step(st);
}

/* What the raw server sends: an informational response with headers
 * of its own, then the real one, with a folded (obs-fold) header. */
#define RAW_RESPONSE                                                           \
    "HTTP/1.1 103 Early Hints\r\nLink: </a.css>\r\nX-Early: 1\r\n\r\n"         \
    "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nX-Final: yes\r\n"                 \
    "X-Fold: one\r\n  two\r\nConnection: close\r\n\r\nok"

/* A raw answer that promises 100000 bytes, sends a few, then stalls
 * (the raw server holds the connection open; see raw_hold). */
#define STALL_RESPONSE                                                         \
    "HTTP/1.1 200 OK\r\nContent-Length: 100000\r\nX-Stall: yes\r\n\r\n"        \
    "first bytes, then silence"

/* Called by libevent once a raw connection has sent its request (one
 * read is enough for a small GET on loopback): answers, then closes or,
 * if raw_hold is set, keeps the connection in held_fd. */
static void
on_raw_request(evutil_socket_t fd, short what, void *arg)
{
    char buf[4096];
    ssize_t n = read(fd, buf, sizeof(buf));

    (void)what;
    (void)arg;
    if (n > 0) {
        n = write(fd, fx.raw_response, strlen(fx.raw_response));
    }
    if (!fx.raw_hold) {
        close(fd);
        return;
    }
    if (fx.held_fd >= 0) {
        close(fx.held_fd);
    }
    fx.held_fd = fd;
}

/* Called by libevent when the raw server has a connection to accept. */
static void
on_raw_accept(evutil_socket_t fd, short what, void *arg)
{
    int conn = accept(fd, NULL, NULL);

    (void)what;
    (void)arg;
    if (conn >= 0) {
        event_base_once(fx.base, conn, EV_READ, on_raw_request, NULL, NULL);
    }
}

/* ------------------------------------------------------------------ */
/* Setup and teardown                                                  */
/* ------------------------------------------------------------------ */

static int
port_of(int fd)
{
    struct sockaddr_in sin;
    socklen_t len = sizeof(sin);

    if (getsockname(fd, (struct sockaddr *)&sin, &len) < 0) {
        return -1;
    }
    return ntohs(sin.sin_port);
}

/* A TCP socket bound to 127.0.0.1 on a free port, listening if asked. */
static int
bound_socket(int listening)
{
    struct sockaddr_in sin;
    int fd = socket(AF_INET, SOCK_STREAM, 0);

    memset(&sin, 0, sizeof(sin));
    sin.sin_family = AF_INET;
    sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (fd < 0 || bind(fd, (struct sockaddr *)&sin, sizeof(sin)) < 0 ||
        (listening && listen(fd, 64) < 0)) {
        return -1;
    }
    return fd;
}

static int
server_start(void)
{
    struct evhttp_bound_socket *bound;
    int closed_fd;

    fx.http = evhttp_new(fx.base);
    bound = evhttp_bind_socket_with_handle(fx.http, "127.0.0.1", 0);
    if (bound == NULL) {
        return -1;
    }
    fx.port = port_of(evhttp_bound_socket_get_fd(bound));
    evhttp_set_cb(fx.http, "/ok", on_ok, NULL);
    evhttp_set_cb(fx.http, "/flaky", on_flaky, NULL);
    evhttp_set_cb(fx.http, "/limited", on_limited, NULL);
    evhttp_set_cb(fx.http, "/big", on_big, NULL);
    evhttp_set_cb(fx.http, "/bigchunked", on_big_chunked, NULL);
    evhttp_set_cb(fx.http, "/echo", on_echo, NULL);
    evhttp_set_cb(fx.http, "/peer", on_peer, NULL);
    evhttp_set_cb(fx.http, "/missing", on_missing, NULL);
    evhttp_set_cb(fx.http, "/nocontent", on_nocontent, NULL);
    evhttp_set_cb(fx.http, "/stream", on_stream, NULL);
    fx.hang_fd = bound_socket(1);
    fx.hang_port = port_of(fx.hang_fd);
    fx.raw_fd = bound_socket(1);
    fx.raw_port = port_of(fx.raw_fd);
    fx.raw_accept = event_new(fx.base, fx.raw_fd, EV_READ | EV_PERSIST,
                              on_raw_accept, NULL);
    event_add(fx.raw_accept, NULL);
    closed_fd = bound_socket(0);
    fx.closed_port = port_of(closed_fd);
    close(closed_fd);
    return fx.port > 0 && fx.hang_port > 0 && fx.raw_port > 0 &&
                   fx.closed_port > 0
               ? 0
               : -1;
}

/* Per test: a fresh client and fresh server counters. */
static void
fixture_reset(void)
{
    fx.client = ab_http_client_new(fx.base);
    fx.completed = 0;
    fx.flaky_left = fx.flaky_hits = 0;
    fx.limited_left = fx.limited_hits = 0;
    fx.retry_after = "1";
    fx.npeer = 0;
    fx.raw_response = RAW_RESPONSE;
    fx.raw_hold = 0;
    fx.held_fd = -1;
}

/* Per test, after the client is gone: what the servers still hold. */
static void
fixture_clean(void)
{
    if (fx.held_fd >= 0) {
        close(fx.held_fd);
        fx.held_fd = -1;
    }
}

static long
log_size(void)
{
    fflush(log_file);
    return ftell(log_file);
}

/* Sends log lines to a temporary file.  stderr the stream is swapped,
 * not file descriptor 2, so sanitizer reports still reach the
 * terminal. */
static int
capture_log(void)
{
    log_file = tmpfile();
    if (log_file == NULL) {
        return -1;
    }
    real_stderr = stderr;
    stderr = log_file;
    return 0;
}

/* Copies the captured log from `from` on to the real stderr. */
static void
dump_log(long from)
{
    char line[512];

    fflush(log_file);
    fseek(log_file, from, SEEK_SET);
    while (fgets(line, sizeof(line), log_file) != NULL) {
        fprintf(real_stderr, "  log: %s", line);
    }
    fseek(log_file, 0, SEEK_END);
}

/* ------------------------------------------------------------------ */
/* Pure helpers                                                        */
/* ------------------------------------------------------------------ */

static void
test_should_retry_on_no_answer_429_and_5xx(void)
{
    CHECK(ab_http_should_retry(0) == 1);
    CHECK(ab_http_should_retry(429) == 1);
    CHECK(ab_http_should_retry(500) == 1);
    CHECK(ab_http_should_retry(503) == 1);
    CHECK(ab_http_should_retry(599) == 1);
    CHECK(ab_http_should_retry(200) == 0);
    CHECK(ab_http_should_retry(302) == 0);
    CHECK(ab_http_should_retry(404) == 0);
    CHECK(ab_http_should_retry(499) == 0);
}

static void
test_backoff_doubles_and_caps(void)
{
    CHECK(ab_http_backoff_ms(2, 0.0) == 100);
    CHECK(ab_http_backoff_ms(3, 0.0) == 200);
    CHECK(ab_http_backoff_ms(4, 0.0) == 400);
    CHECK(ab_http_backoff_ms(6, 0.0) == 1600);
    CHECK(ab_http_backoff_ms(7, 0.0) == 2000);
    CHECK(ab_http_backoff_ms(1000, 0.0) == 2000);
    CHECK(ab_http_backoff_ms(1, 0.0) == 100);
}

static void
test_backoff_adds_up_to_a_quarter_of_jitter(void)
{
    CHECK(ab_http_backoff_ms(2, 0.5) == 112);
    CHECK(ab_http_backoff_ms(2, 0.999) == 124);
    CHECK(ab_http_backoff_ms(7, 0.5) == 2250);
    CHECK(ab_http_backoff_ms(7, 0.9999) <= 2500);
    CHECK(ab_http_backoff_ms(3, -1.0) == 200);
    CHECK(ab_http_backoff_ms(3, 7.0) == 250);
}

static void
test_retry_after_reads_delta_seconds(void)
{
    CHECK(ab_http_retry_after_ms("5", 0) == 5000);
    CHECK(ab_http_retry_after_ms(" 7 ", 0) == 7000);
    CHECK(ab_http_retry_after_ms("0", 0) == 0);
    CHECK(ab_http_retry_after_ms("120", 0) == 60000);
    CHECK(ab_http_retry_after_ms("99999999999999999999999", 0) == 60000);
}

static void
test_retry_after_rejects_garbage(void)
{
    CHECK(ab_http_retry_after_ms(NULL, 0) == -1);
    CHECK(ab_http_retry_after_ms("", 0) == -1);
    CHECK(ab_http_retry_after_ms("  ", 0) == -1);
    CHECK(ab_http_retry_after_ms("-1", 0) == -1);
    CHECK(ab_http_retry_after_ms("+3", 0) == -1);
    CHECK(ab_http_retry_after_ms("1.5", 0) == -1);
    CHECK(ab_http_retry_after_ms("5s", 0) == -1);
    CHECK(ab_http_retry_after_ms("soon", 0) == -1);
}

static void
test_retry_after_reads_imf_fixdate(void)
{
    long long t = DATE_EPOCH;

    CHECK(ab_http_retry_after_ms(DATE_TEXT, t - 30) == 30000);
    CHECK(ab_http_retry_after_ms(DATE_TEXT, t) == 0);
    CHECK(ab_http_retry_after_ms(DATE_TEXT, t + 10) == 0);
    CHECK(ab_http_retry_after_ms(DATE_TEXT, t - 3600) == 60000);
    CHECK(ab_http_retry_after_ms("Thu, 01 Jan 1970 00:00:10 GMT", 0) == 10000);
    CHECK(ab_http_retry_after_ms("Tue, 01 Mar 2016 00:00:00 GMT",
                                 1456790400LL - 2) == 2000);
}

static void
test_retry_after_rejects_bad_dates(void)
{
    long long t = DATE_EPOCH - 30;

    CHECK(ab_http_retry_after_ms("Wed, 32 Oct 2015 07:28:00 GMT", t) == -1);
    CHECK(ab_http_retry_after_ms("Wed, 21 Foo 2015 07:28:00 GMT", t) == -1);
    CHECK(ab_http_retry_after_ms("Xyz, 21 Oct 2015 07:28:00 GMT", t) == -1);
    CHECK(ab_http_retry_after_ms("Wed, 21 Oct 2015 24:28:00 GMT", t) == -1);
    CHECK(ab_http_retry_after_ms("Wed, 21 Oct 2015 07:28:00 UTC", t) == -1);
    CHECK(ab_http_retry_after_ms("Wed, 21 Oct 2015 07:28 GMT", t) == -1);
    CHECK(ab_http_retry_after_ms("Wednesday, 21-Oct-15 07:28:00 GMT", t) == -1);
}

/* ------------------------------------------------------------------ */
/* Calls against the server                                            */
/* ------------------------------------------------------------------ */

static void
test_get_returns_status_body_and_trimmed_headers(void)
{
    struct outcome out = {0};

    CHECK(start_get("/ok", &out) != NULL);
    CHECK(ab_http_inflight(fx.client) == 1);
    CHECK(run_until(&fx.completed, 1, WAIT_MS) == 0);
    CHECK(out.done == 1);
    CHECK(out.status == 200);
    CHECK(out.error[0] == '\0');
    CHECK(out.body_len == 5 && strcmp(out.body, "hello") == 0);
    CHECK(strcmp(header_of(&out, "x-test"), "spaced value") == 0);
    CHECK(strcmp(header_of(&out, "content-length"), "5") == 0);
    CHECK(out.attempts == 1);
    CHECK(out.timed_out == 0);
    CHECK(ab_http_inflight(fx.client) == 0);
}

static void
test_callback_never_runs_inside_start(void)
{
    struct outcome out = {0};

    CHECK(start_get("/ok", &out) != NULL);
    CHECK(out.done == 0);
    CHECK(run_until(&fx.completed, 1, WAIT_MS) == 0);
    CHECK(out.done == 1);
}

static void
test_post_sends_body_and_headers_as_given(void)
{
    struct ab_http_header hdrs[] = {{"X-Req", "abc"}, {"X-Empty", ""}};
    struct ab_http_request req = request_for("POST", "/echo", fx.port);
    struct outcome out = {0};

    req.headers = hdrs;
    req.nheaders = 2;
    req.body = "a\0b";
    req.body_len = 3;
    CHECK(ab_http_start(fx.client, &req, on_done, &out) != NULL);
    CHECK(run_until(&fx.completed, 1, WAIT_MS) == 0);
    CHECK(out.status == 200);
    CHECK(out.body_len == 10 && memcmp(out.body, "POST:-:a\0b", 11) == 0);
    CHECK(strcmp(header_of(&out, "x-echo"), "abc") == 0);
    CHECK(strcmp(header_of(&out, "x-empty-seen"), "empty") == 0);
}

static void
test_put_uses_the_given_method(void)
{
    struct ab_http_header hdrs[] = {{"Content-Type", "text/plain"}};
    struct ab_http_request req = request_for("PUT", "/echo", fx.port);
    struct outcome out = {0};

    req.headers = hdrs;
    req.nheaders = 1;
    req.body = "data";
    req.body_len = 4;
    CHECK(ab_http_start(fx.client, &req, on_done, &out) != NULL);
    CHECK(run_until(&fx.completed, 1, WAIT_MS) == 0);
    CHECK(out.status == 200);
    CHECK(strcmp(out.body, "PUT:text/plain:data") == 0);
}

static void
test_expect_continue_keeps_only_final_headers(void)
{
    struct ab_http_header hdrs[] = {{"Expect", "100-continue"}};
    struct ab_http_request req = request_for("POST", "/echo", fx.port);
    struct outcome out = {0};

    req.headers = hdrs;
    req.nheaders = 1;
    req.body = "payload";
    req.body_len = 7;
    CHECK(ab_http_start(fx.client, &req, on_done, &out) != NULL);
    CHECK(run_until(&fx.completed, 1, WAIT_MS) == 0);
    CHECK(out.status == 200);
    CHECK(strcmp(out.body, "POST:-:payload") == 0);
    CHECK(header_count(&out, "x-echo") == 1);
}

static void
test_only_the_last_responses_headers_are_kept(void)
{
    struct ab_http_request req = request_for("GET", "/", fx.raw_port);
    struct outcome out = {0};

    CHECK(ab_http_start(fx.client, &req, on_done, &out) != NULL);
    CHECK(run_until(&fx.completed, 1, WAIT_MS) == 0);
    CHECK(out.status == 200);
    CHECK(strcmp(out.body, "ok") == 0);
    CHECK(strcmp(header_of(&out, "x-final"), "yes") == 0);
    CHECK(strcmp(header_of(&out, "x-fold"), "one two") == 0);
    CHECK(header_count(&out, "x-early") == 0);
    CHECK(header_count(&out, "link") == 0);
}

static void
test_retries_503_until_200(void)
{
    struct ab_http_request req = request_for("GET", "/flaky", fx.port);
    struct outcome out = {0};

    fx.flaky_left = 2;
    req.retry = 1;
    req.max_attempts = 3;
    CHECK(ab_http_start(fx.client, &req, on_done, &out) != NULL);
    CHECK(run_until(&fx.completed, 1, WAIT_MS) == 0);
    CHECK(out.status == 200);
    CHECK(out.attempts == 3);
    CHECK(strcmp(out.body, "recovered") == 0);
    CHECK(header_count(&out, "x-attempt") == 1);
    CHECK(strcmp(header_of(&out, "x-attempt"), "3") == 0);
    CHECK(out.elapsed_ms >= 300.0);
}

static void
test_gives_up_after_max_attempts(void)
{
    struct ab_http_request req = request_for("GET", "/flaky", fx.port);
    struct outcome out = {0};

    fx.flaky_left = 5;
    req.retry = 1;
    req.max_attempts = 2;
    CHECK(ab_http_start(fx.client, &req, on_done, &out) != NULL);
    CHECK(run_until(&fx.completed, 1, WAIT_MS) == 0);
    CHECK(out.status == 503);
    CHECK(out.attempts == 2);
    CHECK(strcmp(out.body, "busy") == 0);
}

static void
test_no_retry_unless_asked(void)
{
    struct ab_http_request req = request_for("GET", "/flaky", fx.port);
    struct outcome out = {0};

    fx.flaky_left = 1;
    req.max_attempts = 3;
    CHECK(ab_http_start(fx.client, &req, on_done, &out) != NULL);
    CHECK(run_until(&fx.completed, 1, WAIT_MS) == 0);
    CHECK(out.status == 503);
    CHECK(out.attempts == 1);
}

static void
test_429_waits_for_retry_after(void)
{
    struct ab_http_request req = request_for("GET", "/limited", fx.port);
    struct outcome out = {0};

    fx.limited_left = 1;
    req.retry = 1;
    req.max_attempts = 2;
    CHECK(ab_http_start(fx.client, &req, on_done, &out) != NULL);
    CHECK(run_until(&fx.completed, 1, WAIT_MS) == 0);
    CHECK(out.status == 200);
    CHECK(out.attempts == 2);
    CHECK(out.elapsed_ms >= 990.0);
    CHECK(out.elapsed_ms < 3000.0);
}

static void
test_429_past_the_budget_completes_at_once(void)
{
    struct ab_http_request req = request_for("GET", "/limited", fx.port);
    struct outcome out = {0};

    fx.limited_left = 1;
    fx.retry_after = "120";
    req.retry = 1;
    req.max_attempts = 2;
    CHECK(ab_http_start(fx.client, &req, on_done, &out) != NULL);
    CHECK(run_until(&fx.completed, 1, WAIT_MS) == 0);
    CHECK(out.status == 429);
    CHECK(out.attempts == 1);
    CHECK(strcmp(header_of(&out, "retry-after"), "120") == 0);
    CHECK(out.elapsed_ms < 1000.0);
}

static void
test_timeout_reports_timeout(void)
{
    struct ab_http_request req = request_for("GET", "/", fx.hang_port);
    struct outcome out = {0};

    req.timeout_ms = 200;
    CHECK(ab_http_start(fx.client, &req, on_done, &out) != NULL);
    CHECK(run_until(&fx.completed, 1, WAIT_MS) == 0);
    CHECK(out.status == 0);
    CHECK(strcmp(out.error, "timeout") == 0);
    CHECK(out.timed_out == 1);
    CHECK(out.attempts == 1);
    CHECK(out.elapsed_ms >= 190.0 && out.elapsed_ms < 2000.0);
}

static void
test_timeout_is_per_attempt_and_retried(void)
{
    struct ab_http_request req = request_for("GET", "/", fx.hang_port);
    struct outcome out = {0};

    req.timeout_ms = 150;
    req.retry = 1;
    req.max_attempts = 2;
    CHECK(ab_http_start(fx.client, &req, on_done, &out) != NULL);
    CHECK(run_until(&fx.completed, 1, WAIT_MS) == 0);
    CHECK(strcmp(out.error, "timeout") == 0);
    CHECK(out.timed_out == 1);
    CHECK(out.attempts == 2);
    CHECK(out.elapsed_ms >= 390.0);
}

static void
test_refused_connection_reports_connect_and_backs_off(void)
{
    struct ab_http_request req = request_for("GET", "/", fx.closed_port);
    struct outcome out = {0};

    req.retry = 1;
    req.max_attempts = 3;
    CHECK(ab_http_start(fx.client, &req, on_done, &out) != NULL);
    CHECK(run_until(&fx.completed, 1, WAIT_MS) == 0);
    CHECK(out.status == 0);
    CHECK(strcmp(out.error, "connect") == 0);
    CHECK(out.timed_out == 0);
    CHECK(out.attempts == 3);
    CHECK(out.elapsed_ms >= 300.0);
}

static void
expect_too_large(const char *path)
{
    struct ab_http_request req = request_for("GET", path, fx.port);
    struct outcome out = {0};

    req.max_response_bytes = 1000;
    req.retry = 1;
    req.max_attempts = 3;
    CHECK(ab_http_start(fx.client, &req, on_done, &out) != NULL);
    CHECK(run_until(&fx.completed, 1, WAIT_MS) == 0);
    CHECK(out.status == 0);
    CHECK(strcmp(out.error, "too_large") == 0);
    CHECK(out.attempts == 1);
    CHECK(out.body_len == 0);
}

static void
test_body_over_the_cap_is_too_large(void)
{
    expect_too_large("/big");
}

static void
test_chunked_body_over_the_cap_is_too_large(void)
{
    expect_too_large("/bigchunked");
}

static void
test_cancel_before_the_loop_runs(void)
{
    struct outcome cancelled = {0}, other = {0};
    struct ab_http_call *call = start_get("/ok", &cancelled);

    CHECK(call != NULL);
    ab_http_cancel(call);
    CHECK(ab_http_inflight(fx.client) == 0);
    CHECK(start_get("/ok", &other) != NULL);
    CHECK(run_until(&fx.completed, 1, WAIT_MS) == 0);
    run_for(50);
    CHECK(other.done == 1);
    CHECK(cancelled.done == 0);
}

static void
test_cancel_while_waiting_for_an_answer(void)
{
    struct ab_http_request req = request_for("GET", "/", fx.hang_port);
    struct outcome out = {0};
    struct ab_http_call *call;

    req.timeout_ms = 300;
    call = ab_http_start(fx.client, &req, on_done, &out);
    CHECK(call != NULL);
    run_for(100);
    ab_http_cancel(call);
    run_for(400);
    CHECK(out.done == 0);
    CHECK(ab_http_inflight(fx.client) == 0);
}

static void
test_cancel_during_the_retry_wait(void)
{
    struct ab_http_request req = request_for("GET", "/limited", fx.port);
    struct outcome out = {0};
    struct ab_http_call *call;

    fx.limited_left = 1;
    req.retry = 1;
    req.max_attempts = 2;
    call = ab_http_start(fx.client, &req, on_done, &out);
    CHECK(run_until(&fx.limited_hits, 1, WAIT_MS) == 0);
    run_for(100);
    ab_http_cancel(call);
    CHECK(ab_http_inflight(fx.client) == 0);
    run_for(50);
    CHECK(out.done == 0);
    CHECK(fx.limited_hits == 1);
}

static void
test_ten_concurrent_gets_all_complete(void)
{
    struct outcome out[10];
    int ok = 0;

    memset(out, 0, sizeof(out));
    for (int i = 0; i < 10; i++) {
        CHECK(start_get("/ok", &out[i]) != NULL);
    }
    CHECK(ab_http_inflight(fx.client) == 10);
    CHECK(run_until(&fx.completed, 10, WAIT_MS) == 0);
    for (int i = 0; i < 10; i++) {
        ok += out[i].done == 1 && out[i].status == 200;
    }
    CHECK(ok == 10);
    CHECK(ab_http_inflight(fx.client) == 0);
}

static void
test_sequential_calls_reuse_the_connection(void)
{
    struct outcome a = {0}, b = {0};

    CHECK(start_get("/peer", &a) != NULL);
    CHECK(run_until(&fx.completed, 1, WAIT_MS) == 0);
    CHECK(start_get("/peer", &b) != NULL);
    CHECK(run_until(&fx.completed, 2, WAIT_MS) == 0);
    CHECK(fx.npeer == 2);
    CHECK(fx.peer_ports[0] == fx.peer_ports[1]);
}

/* State for the re-entrancy test: call A's callback cancels B and
 * starts C. */
struct reentry {
    struct outcome a, b, c;
    struct ab_http_call *b_call;
    struct ab_http_call *c_call;
};

static struct reentry re;

static void
on_done_a(const struct ab_http_response *res, void *arg)
{
    on_done(res, arg);
    ab_http_cancel(re.b_call);
    re.c_call = start_get("/ok", &re.c);
}

static void
test_callback_may_cancel_and_start_calls(void)
{
    struct ab_http_request slow = request_for("GET", "/", fx.hang_port);
    struct ab_http_request fast = request_for("GET", "/ok", fx.port);

    memset(&re, 0, sizeof(re));
    slow.timeout_ms = 2000;
    re.b_call = ab_http_start(fx.client, &slow, on_done, &re.b);
    CHECK(ab_http_start(fx.client, &fast, on_done_a, &re.a) != NULL);
    CHECK(run_until(&fx.completed, 2, WAIT_MS) == 0);
    CHECK(re.c_call != NULL);
    CHECK(re.a.done == 1 && re.c.done == 1 && re.c.status == 200);
    CHECK(re.b.done == 0);
    CHECK(ab_http_inflight(fx.client) == 0);
}

static void
test_client_free_cancels_calls_in_flight(void)
{
    struct ab_http_request slow = request_for("GET", "/", fx.hang_port);
    struct ab_http_request limited = request_for("GET", "/limited", fx.port);
    struct outcome out[3];

    memset(out, 0, sizeof(out));
    fx.limited_left = 1;
    limited.retry = 1;
    limited.max_attempts = 2;
    CHECK(ab_http_start(fx.client, &slow, on_done, &out[0]) != NULL);
    CHECK(ab_http_start(fx.client, &limited, on_done, &out[1]) != NULL);
    CHECK(start_get("/ok", &out[2]) != NULL);
    CHECK(run_until(&fx.completed, 1, WAIT_MS) == 0);
    run_for(100);
    ab_http_client_free(fx.client);
    fx.client = NULL;
    run_for(100);
    CHECK(out[0].done == 0 && out[1].done == 0 && out[2].done == 1);
}

static void
on_done_free_client(const struct ab_http_response *res, void *arg)
{
    on_done(res, arg);
    ab_http_client_free(fx.client);
    fx.client = NULL;
}

/* Every call frees the client when done: the first to complete does,
 * which must cancel the rest, so exactly one callback runs. */
static void
test_callback_may_free_the_client(void)
{
    struct outcome out[4];

    memset(out, 0, sizeof(out));
    for (int i = 0; i < 4; i++) {
        struct ab_http_request req = request_for("GET", "/ok", fx.port);

        CHECK(ab_http_start(fx.client, &req, on_done_free_client, &out[i]) !=
              NULL);
    }
    CHECK(run_until(&fx.completed, 1, WAIT_MS) == 0);
    run_for(100);
    CHECK(fx.completed == 1);
    CHECK(fx.client == NULL);
}

static void
test_start_refuses_bad_requests(void)
{
    struct ab_http_header crlf[] = {{"X-A", "x\r\nEvil: 1"}};
    struct ab_http_header spaced[] = {{"X A", "x"}};
    struct ab_http_request req = request_for("GET", "/ok", fx.port);
    struct outcome out = {0};

    req.url = "ftp://127.0.0.1/";
    CHECK(ab_http_start(fx.client, &req, on_done, &out) == NULL);
    req.url = "not a url";
    CHECK(ab_http_start(fx.client, &req, on_done, &out) == NULL);
    req.url = NULL;
    CHECK(ab_http_start(fx.client, &req, on_done, &out) == NULL);
    req = request_for("GE T", "/ok", fx.port);
    CHECK(ab_http_start(fx.client, &req, on_done, &out) == NULL);
    req = request_for("GET", "/ok", fx.port);
    req.headers = crlf;
    req.nheaders = 1;
    CHECK(ab_http_start(fx.client, &req, on_done, &out) == NULL);
    req.headers = spaced;
    CHECK(ab_http_start(fx.client, &req, on_done, &out) == NULL);
    CHECK(ab_http_inflight(fx.client) == 0);
    run_for(20);
    CHECK(out.done == 0);
}

/* ------------------------------------------------------------------ */
/* Streams                                                             */
/* ------------------------------------------------------------------ */

/* What a stream's callbacks saw, and how they answer.  `arg` of every
 * stream callback below. */
struct sink {
    /* how to answer */
    int headers_rc;      /* on_headers returns this */
    size_t abort_at;     /* on_data returns -1 on this call (1-based) */
    size_t pause_every;  /* on_data returns 1 on every Nth call */
    size_t max_pauses;   /* but not more often than this; 0: no limit */
    long pause_ms;       /* then the timer fires after this long */
    int cancel;          /* the timer cancels instead of resuming */
    int abort_in_resume; /* on_data returns -1 if inside resume */
    int check_pattern;   /* bytes must be pattern_at(offset) */
    /* what was seen */
    int headers;
    struct outcome at_headers; /* the response on_headers saw */
    size_t calls;              /* on_data calls */
    size_t bytes;
    size_t largest;
    uint64_t sum;
    int wrong_byte; /* a byte was not the pattern */
    int early_data; /* on_data before on_headers */
    int data_when_paused;
    int late_callback; /* any callback after on_done or cancel */
    size_t pauses;
    int resuming; /* inside ab_http_resume() */
    size_t calls_in_resume;
    int done_in_resume;
    int cancelled;
    double aborted_ms;  /* when on_data returned -1 */
    double done_ms;     /* when on_done ran */
    char body[256];     /* the first bytes, unless check_pattern */
    struct outcome out; /* what on_done saw */
    /* machinery */
    int paused;
    struct ab_http_call *call;
    struct event *timer;
};

static double
mono_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1000.0 + (double)ts.tv_nsec / 1e6;
}

/* Called by the client with the final status and headers. */
static int
on_sink_headers(const struct ab_http_response *res, void *arg)
{
    struct sink *k = arg;

    k->headers++;
    k->late_callback |= k->out.done || k->cancelled;
    copy_outcome(res, &k->at_headers);
    return k->headers_rc;
}

/* Records `len` bytes at `data`: checks them against the pattern, or
 * keeps the first ones in k->body. */
static void
sink_take(struct sink *k, const char *data, size_t len)
{
    const unsigned char *p = (const unsigned char *)data;

    for (size_t i = 0; k->check_pattern && i < len; i++) {
        k->wrong_byte |= p[i] != pattern_at(k->bytes + i);
    }
    if (!k->check_pattern && k->bytes + len < sizeof(k->body)) {
        memcpy(k->body + k->bytes, data, len);
    }
    k->sum = fnv1a(k->sum, p, len);
    k->bytes += len;
    k->largest = len > k->largest ? len : k->largest;
}

/* Called by the client with body bytes, or from inside ab_http_resume
 * with bytes that waited. */
static int
on_sink_data(const char *data, size_t len, void *arg)
{
    struct sink *k = arg;
    struct timeval tv = {k->pause_ms / 1000, (k->pause_ms % 1000) * 1000};

    k->calls++;
    k->calls_in_resume += k->resuming;
    k->early_data |= k->headers == 0;
    k->data_when_paused |= k->paused;
    k->late_callback |= k->out.done || k->cancelled;
    if (k->calls == k->abort_at || (k->resuming && k->abort_in_resume)) {
        k->aborted_ms = mono_ms();
        return -1;
    }
    sink_take(k, data, len);
    if (k->pause_every == 0 || k->calls % k->pause_every != 0 ||
        (k->max_pauses > 0 && k->pauses == k->max_pauses)) {
        return 0;
    }
    k->paused = 1;
    k->pauses++;
    evtimer_add(k->timer, &tv);
    return 1;
}

/* Called by the client when the stream ends. */
static void
on_sink_done(const struct ab_http_response *res, void *arg)
{
    struct sink *k = arg;

    k->late_callback |= k->out.done || k->cancelled;
    k->done_in_resume |= k->resuming;
    k->done_ms = mono_ms();
    k->out.done++;
    copy_outcome(res, &k->out);
    fx.completed++;
}

/* Called by libevent pause_ms after on_data paused: resumes the stream,
 * or cancels it. */
static void
on_sink_timer(evutil_socket_t fd, short what, void *arg)
{
    struct sink *k = arg;

    (void)fd;
    (void)what;
    k->paused = 0;
    if (k->cancel) {
        k->cancelled = 1;
        ab_http_cancel(k->call);
        return;
    }
    k->resuming = 1;
    ab_http_resume(k->call);
    k->resuming = 0;
}

static void
sink_init(struct sink *k)
{
    memset(k, 0, sizeof(*k));
    k->sum = FNV_START;
    k->timer = evtimer_new(fx.base, on_sink_timer, k);
}

static void
sink_free(struct sink *k)
{
    event_free(k->timer);
}

static const struct ab_http_stream sink_cbs = {on_sink_headers, on_sink_data,
                                               on_sink_done};

/* Starts a stream of `req` into `k`. */
static struct ab_http_call *
start_sink(struct ab_http_request *req, struct sink *k)
{
    k->call = ab_http_start_stream(fx.client, req, &sink_cbs, k);
    return k->call;
}

/* A request for `bytes` pattern bytes from /stream, in HTTP chunks of
 * `piece` bytes (0: with a Content-Length). */
static struct ab_http_request
stream_request(size_t bytes, size_t piece)
{
    char path[96];

    snprintf(path, sizeof(path), "/stream?bytes=%zu&piece=%zu", bytes, piece);
    return request_for("GET", path, fx.port);
}

/* The checksum of the first `n` pattern bytes. */
static uint64_t
pattern_sum(size_t n)
{
    unsigned char block[4096];
    uint64_t h = FNV_START;

    for (size_t at = 0; at < n; at += sizeof(block)) {
        size_t len = n - at < sizeof(block) ? n - at : sizeof(block);

        for (size_t i = 0; i < len; i++) {
            block[i] = pattern_at(at + i);
        }
        h = fnv1a(h, block, len);
    }
    return h;
}

static void
test_stream_relays_10_mb_in_small_pieces(void)
{
    struct ab_http_request req = stream_request(TEN_MB, 0);
    struct sink k;

    sink_init(&k);
    k.check_pattern = 1;
    CHECK(start_sink(&req, &k) != NULL);
    CHECK(k.headers == 0 && k.calls == 0);
    CHECK(run_until(&fx.completed, 1, STREAM_WAIT_MS) == 0);
    CHECK(k.headers == 1 && k.early_data == 0);
    CHECK(k.at_headers.status == 200);
    CHECK(k.at_headers.body_len == 0);
    CHECK(strcmp(header_of(&k.at_headers, "content-length"), "10485760") == 0);
    CHECK(strcmp(header_of(&k.at_headers, "x-stream"), "yes") == 0);
    CHECK(k.bytes == TEN_MB && k.wrong_byte == 0);
    CHECK(k.sum == pattern_sum(TEN_MB));
    CHECK(k.calls > 100);
    CHECK(k.largest <= 256 * 1024);
    CHECK(k.out.done == 1 && k.out.status == 200 && k.out.error[0] == '\0');
    CHECK(k.out.body_len == TEN_MB);
    CHECK(k.out.attempts == 1);
    CHECK(k.late_callback == 0);
    CHECK(ab_http_inflight(fx.client) == 0);
    sink_free(&k);
}

/* Small HTTP chunks make curl hold several pieces over a pause, which
 * it passes on from inside ab_http_resume(). */
static void
test_stream_pauses_and_resumes_without_loss(void)
{
    size_t total = 1024 * 1024;
    struct ab_http_request req = stream_request(total, 1000);
    struct sink k;

    sink_init(&k);
    k.check_pattern = 1;
    k.pause_every = 4;
    k.pause_ms = 10;
    CHECK(start_sink(&req, &k) != NULL);
    CHECK(run_until(&fx.completed, 1, STREAM_WAIT_MS) == 0);
    CHECK(k.out.done == 1 && k.out.status == 200 && k.out.error[0] == '\0');
    CHECK(k.bytes == total && k.wrong_byte == 0);
    CHECK(k.sum == pattern_sum(total));
    CHECK(k.out.body_len == total);
    CHECK(k.pauses >= 10);
    CHECK(k.calls_in_resume > 0);
    CHECK(k.data_when_paused == 0);
    CHECK(k.late_callback == 0);
    sink_free(&k);
}

static void
test_stream_long_pause_is_not_a_timeout(void)
{
    size_t total = 256 * 1024;
    struct ab_http_request req = stream_request(total, 0);
    struct sink k;

    sink_init(&k);
    k.check_pattern = 1;
    k.pause_every = 2;
    k.max_pauses = 1;
    k.pause_ms = 1600;
    req.timeout_ms = 200;
    CHECK(start_sink(&req, &k) != NULL);
    CHECK(run_until(&fx.completed, 1, STREAM_WAIT_MS) == 0);
    CHECK(k.pauses == 1);
    CHECK(k.out.status == 200 && k.out.error[0] == '\0');
    CHECK(k.bytes == total && k.wrong_byte == 0);
    CHECK(k.out.elapsed_ms >= 1500.0);
    sink_free(&k);
}

static void
test_stream_abort_from_on_data_reports_cancelled(void)
{
    struct ab_http_request req = stream_request(4 * 1024 * 1024, 0);
    struct sink k;
    size_t bytes_before;

    sink_init(&k);
    k.check_pattern = 1;
    k.abort_at = 3;
    req.retry = 1;
    req.max_attempts = 3;
    CHECK(start_sink(&req, &k) != NULL);
    CHECK(run_until(&fx.completed, 1, STREAM_WAIT_MS) == 0);
    bytes_before = k.bytes;
    run_for(50);
    CHECK(k.out.done == 1);
    CHECK(strcmp(k.out.error, "cancelled") == 0);
    CHECK(k.out.status == 200);
    CHECK(k.out.attempts == 1);
    CHECK(k.calls == 3 && k.bytes == bytes_before);
    CHECK(k.out.body_len == k.bytes);
    CHECK(k.late_callback == 0);
    CHECK(ab_http_inflight(fx.client) == 0);
    sink_free(&k);
}

static void
test_stream_abort_from_on_headers_reports_cancelled(void)
{
    struct ab_http_request req = stream_request(1024 * 1024, 0);
    struct sink k;

    sink_init(&k);
    k.headers_rc = -1;
    CHECK(start_sink(&req, &k) != NULL);
    CHECK(run_until(&fx.completed, 1, STREAM_WAIT_MS) == 0);
    run_for(50);
    CHECK(k.headers == 1 && k.calls == 0);
    CHECK(k.out.done == 1 && strcmp(k.out.error, "cancelled") == 0);
    CHECK(k.out.body_len == 0);
    sink_free(&k);
}

/* on_data aborts when called from inside ab_http_resume(): on_done
 * comes from the loop, on its next turn (curl would not end the stream
 * by itself at once). */
static void
test_stream_abort_inside_resume_ends_on_a_later_turn(void)
{
    struct ab_http_request req = stream_request(1024 * 1024, 1000);
    struct sink k;

    sink_init(&k);
    k.check_pattern = 1;
    k.pause_every = 4;
    k.pause_ms = 10;
    k.abort_in_resume = 1;
    CHECK(start_sink(&req, &k) != NULL);
    CHECK(run_until(&fx.completed, 1, STREAM_WAIT_MS) == 0);
    run_for(50);
    CHECK(k.calls_in_resume == 1);
    CHECK(k.done_in_resume == 0);
    CHECK(k.done_ms - k.aborted_ms < 100.0);
    CHECK(k.out.done == 1 && strcmp(k.out.error, "cancelled") == 0);
    CHECK(k.out.body_len == k.bytes && k.wrong_byte == 0);
    CHECK(k.late_callback == 0);
    CHECK(ab_http_inflight(fx.client) == 0);
    sink_free(&k);
}

static void
test_stream_on_headers_sees_a_404(void)
{
    struct ab_http_request req = request_for("GET", "/missing", fx.port);
    struct sink k;

    sink_init(&k);
    req.retry = 1;
    req.max_attempts = 3;
    CHECK(start_sink(&req, &k) != NULL);
    CHECK(run_until(&fx.completed, 1, STREAM_WAIT_MS) == 0);
    CHECK(k.headers == 1);
    CHECK(k.at_headers.status == 404);
    CHECK(k.at_headers.error[0] == '\0');
    CHECK(strcmp(header_of(&k.at_headers, "x-why"), "no such thing") == 0);
    CHECK(strcmp(k.body, "not here") == 0);
    CHECK(k.out.status == 404 && k.out.error[0] == '\0');
    CHECK(k.out.body_len == 8 && k.out.attempts == 1);
    sink_free(&k);
}

static void
test_stream_retries_503_before_headers(void)
{
    struct ab_http_request req = request_for("GET", "/flaky", fx.port);
    struct sink k;

    sink_init(&k);
    fx.flaky_left = 1;
    req.retry = 1;
    req.max_attempts = 3;
    CHECK(start_sink(&req, &k) != NULL);
    CHECK(run_until(&fx.completed, 1, STREAM_WAIT_MS) == 0);
    CHECK(fx.flaky_hits == 2);
    CHECK(k.headers == 1);
    CHECK(k.at_headers.status == 200);
    CHECK(strcmp(header_of(&k.at_headers, "x-attempt"), "2") == 0);
    CHECK(strcmp(k.body, "recovered") == 0);
    CHECK(k.out.status == 200 && k.out.attempts == 2);
    CHECK(k.out.body_len == 9);
    sink_free(&k);
}

/* Out of attempts, the 503 itself is relayed like any answer. */
static void
test_stream_relays_the_last_503(void)
{
    struct ab_http_request req = request_for("GET", "/flaky", fx.port);
    struct sink k;

    sink_init(&k);
    fx.flaky_left = 5;
    req.retry = 1;
    req.max_attempts = 2;
    CHECK(start_sink(&req, &k) != NULL);
    CHECK(run_until(&fx.completed, 1, STREAM_WAIT_MS) == 0);
    CHECK(k.headers == 1 && k.at_headers.status == 503);
    CHECK(strcmp(k.body, "busy") == 0);
    CHECK(k.out.status == 503 && k.out.attempts == 2);
    sink_free(&k);
}

static void
test_stream_without_a_body_gets_headers_then_done(void)
{
    struct ab_http_request head = request_for("HEAD", "/ok", fx.port);
    struct ab_http_request none = request_for("GET", "/nocontent", fx.port);
    struct sink a, b;

    sink_init(&a);
    sink_init(&b);
    CHECK(start_sink(&head, &a) != NULL);
    CHECK(start_sink(&none, &b) != NULL);
    CHECK(run_until(&fx.completed, 2, STREAM_WAIT_MS) == 0);
    CHECK(a.headers == 1 && a.at_headers.status == 200 && a.calls == 0);
    CHECK(strcmp(header_of(&a.at_headers, "x-test"), "spaced value") == 0);
    CHECK(a.out.status == 200 && a.out.body_len == 0);
    CHECK(b.headers == 1 && b.at_headers.status == 204 && b.calls == 0);
    CHECK(b.out.status == 204 && b.out.body_len == 0);
    CHECK(a.late_callback == 0 && b.late_callback == 0);
    sink_free(&a);
    sink_free(&b);
}

/* Only the final answer's headers are shown, after a 103. */
static void
test_stream_skips_informational_answers(void)
{
    struct ab_http_request req = request_for("GET", "/", fx.raw_port);
    struct sink k;

    sink_init(&k);
    CHECK(start_sink(&req, &k) != NULL);
    CHECK(run_until(&fx.completed, 1, STREAM_WAIT_MS) == 0);
    CHECK(k.headers == 1 && k.at_headers.status == 200);
    CHECK(strcmp(header_of(&k.at_headers, "x-final"), "yes") == 0);
    CHECK(header_count(&k.at_headers, "x-early") == 0);
    CHECK(strcmp(k.body, "ok") == 0);
    sink_free(&k);
}

/* The answer starts, then stalls: the stream times out after the bytes
 * that came, and is not retried once on_headers ran. */
static void
test_stream_stalled_after_headers_times_out(void)
{
    struct ab_http_request req = request_for("GET", "/", fx.raw_port);
    struct sink k;

    sink_init(&k);
    fx.raw_response = STALL_RESPONSE;
    fx.raw_hold = 1;
    req.timeout_ms = 500;
    req.retry = 1;
    req.max_attempts = 3;
    CHECK(start_sink(&req, &k) != NULL);
    CHECK(run_until(&fx.completed, 1, STREAM_WAIT_MS) == 0);
    CHECK(k.headers == 1 && k.at_headers.status == 200);
    CHECK(strcmp(k.body, "first bytes, then silence") == 0);
    CHECK(strcmp(k.out.error, "timeout") == 0);
    CHECK(k.out.timed_out == 1);
    CHECK(k.out.status == 200);
    CHECK(k.out.body_len == 25);
    CHECK(k.out.attempts == 1);
    CHECK(k.out.elapsed_ms >= 900.0);
    sink_free(&k);
}

static void
test_stream_without_an_answer_times_out(void)
{
    struct ab_http_request req = request_for("GET", "/", fx.hang_port);
    struct sink k;

    sink_init(&k);
    req.timeout_ms = 300;
    CHECK(start_sink(&req, &k) != NULL);
    CHECK(run_until(&fx.completed, 1, STREAM_WAIT_MS) == 0);
    CHECK(k.headers == 0 && k.calls == 0);
    CHECK(k.out.status == 0 && strcmp(k.out.error, "timeout") == 0);
    CHECK(k.out.timed_out == 1);
    CHECK(k.out.elapsed_ms >= 900.0);
    sink_free(&k);
}

static void
test_stream_over_a_set_cap_is_too_large(void)
{
    struct ab_http_request req = stream_request(1024 * 1024, 1000);
    struct sink k;

    sink_init(&k);
    k.check_pattern = 1;
    req.max_response_bytes = 100000;
    CHECK(start_sink(&req, &k) != NULL);
    CHECK(run_until(&fx.completed, 1, STREAM_WAIT_MS) == 0);
    CHECK(k.headers == 1);
    CHECK(strcmp(k.out.error, "too_large") == 0);
    CHECK(k.bytes > 0 && k.bytes <= 100000);
    CHECK(k.out.body_len == k.bytes);
    sink_free(&k);
}

/* Paused in the middle of 10 MB, then cancelled from a timer: no
 * callback follows, and nothing is left in flight. */
static void
test_stream_cancel_from_a_timer_ends_it_silently(void)
{
    struct ab_http_request req = stream_request(TEN_MB, 0);
    struct sink k;
    size_t calls;

    sink_init(&k);
    k.pause_every = 3;
    k.pause_ms = 20;
    k.cancel = 1;
    CHECK(start_sink(&req, &k) != NULL);
    CHECK(run_until(&k.cancelled, 1, STREAM_WAIT_MS) == 0);
    calls = k.calls;
    CHECK(ab_http_inflight(fx.client) == 0);
    run_for(200);
    CHECK(k.calls == calls && calls == 3);
    CHECK(k.out.done == 0 && k.late_callback == 0);
    sink_free(&k);
}

static void
test_stream_start_refuses_missing_callbacks(void)
{
    struct ab_http_stream no_data = {on_sink_headers, NULL, on_sink_done};
    struct ab_http_request req = request_for("GET", "/ok", fx.port);
    struct sink k;

    sink_init(&k);
    CHECK(ab_http_start_stream(fx.client, &req, &no_data, &k) == NULL);
    CHECK(ab_http_start_stream(fx.client, &req, NULL, &k) == NULL);
    CHECK(ab_http_inflight(fx.client) == 0);
    run_for(20);
    CHECK(k.headers == 0 && k.out.done == 0);
    sink_free(&k);
}

/* ------------------------------------------------------------------ */
/* Runner                                                              */
/* ------------------------------------------------------------------ */

struct test {
    const char *name;
    void (*fn)(void);
    int logs; /* expected to write to the log */
};

#define TEST(fn, logs)                                                         \
    {                                                                          \
#fn, fn, logs                                                          \
    }

static const struct test tests[] = {
    TEST(test_should_retry_on_no_answer_429_and_5xx, 0),
    TEST(test_backoff_doubles_and_caps, 0),
    TEST(test_backoff_adds_up_to_a_quarter_of_jitter, 0),
    TEST(test_retry_after_reads_delta_seconds, 0),
    TEST(test_retry_after_rejects_garbage, 0),
    TEST(test_retry_after_reads_imf_fixdate, 0),
    TEST(test_retry_after_rejects_bad_dates, 0),
    TEST(test_get_returns_status_body_and_trimmed_headers, 0),
    TEST(test_callback_never_runs_inside_start, 0),
    TEST(test_post_sends_body_and_headers_as_given, 0),
    TEST(test_put_uses_the_given_method, 0),
    TEST(test_expect_continue_keeps_only_final_headers, 0),
    TEST(test_only_the_last_responses_headers_are_kept, 0),
    TEST(test_retries_503_until_200, 0),
    TEST(test_gives_up_after_max_attempts, 0),
    TEST(test_no_retry_unless_asked, 0),
    TEST(test_429_waits_for_retry_after, 0),
    TEST(test_429_past_the_budget_completes_at_once, 0),
    TEST(test_timeout_reports_timeout, 0),
    TEST(test_timeout_is_per_attempt_and_retried, 0),
    TEST(test_refused_connection_reports_connect_and_backs_off, 0),
    TEST(test_body_over_the_cap_is_too_large, 0),
    TEST(test_chunked_body_over_the_cap_is_too_large, 0),
    TEST(test_cancel_before_the_loop_runs, 0),
    TEST(test_cancel_while_waiting_for_an_answer, 0),
    TEST(test_cancel_during_the_retry_wait, 0),
    TEST(test_ten_concurrent_gets_all_complete, 0),
    TEST(test_sequential_calls_reuse_the_connection, 0),
    TEST(test_callback_may_cancel_and_start_calls, 0),
    TEST(test_client_free_cancels_calls_in_flight, 0),
    TEST(test_callback_may_free_the_client, 0),
    TEST(test_start_refuses_bad_requests, 1),
    TEST(test_stream_relays_10_mb_in_small_pieces, 0),
    TEST(test_stream_pauses_and_resumes_without_loss, 0),
    TEST(test_stream_long_pause_is_not_a_timeout, 0),
    TEST(test_stream_abort_from_on_data_reports_cancelled, 0),
    TEST(test_stream_abort_from_on_headers_reports_cancelled, 0),
    TEST(test_stream_abort_inside_resume_ends_on_a_later_turn, 0),
    TEST(test_stream_on_headers_sees_a_404, 0),
    TEST(test_stream_retries_503_before_headers, 0),
    TEST(test_stream_relays_the_last_503, 0),
    TEST(test_stream_without_a_body_gets_headers_then_done, 0),
    TEST(test_stream_skips_informational_answers, 0),
    TEST(test_stream_stalled_after_headers_times_out, 0),
    TEST(test_stream_without_an_answer_times_out, 0),
    TEST(test_stream_over_a_set_cap_is_too_large, 0),
    TEST(test_stream_cancel_from_a_timer_ends_it_silently, 0),
    TEST(test_stream_start_refuses_missing_callbacks, 1),
};

static void
run_test(const struct test *t)
{
    long before = log_size();

    current_name = t->name;
    current_failed = 0;
    fixture_reset();
    t->fn();
    ab_http_client_free(fx.client);
    fx.client = NULL;
    fixture_clean();
    if (t->logs ? log_size() == before : log_size() != before) {
        check(0, t->logs ? "expected a log line" : "nothing logged", 0);
    }
    if (current_failed) {
        dump_log(before);
    }
    current_failed ? tests_failed++ : tests_passed++;
}

int
main(void)
{
    signal(SIGPIPE, SIG_IGN);
    alarm(120); /* last resort: no run may hang */
    if (capture_log() < 0 || curl_global_init(CURL_GLOBAL_DEFAULT) != 0) {
        return 2;
    }
    fx.base = event_base_new();
    if (fx.base == NULL || server_start() < 0) {
        fprintf(real_stderr, "failed to start the test server\n");
        return 2;
    }
    for (size_t i = 0; i < sizeof(tests) / sizeof(tests[0]); i++) {
        run_test(&tests[i]);
    }
    evhttp_free(fx.http);
    close(fx.hang_fd);
    event_free(fx.raw_accept);
    close(fx.raw_fd);
    event_base_free(fx.base);
    libevent_global_shutdown();
    curl_global_cleanup();
    stderr = real_stderr;
    fclose(log_file);
    printf("%d passed, %d failed\n", tests_passed, tests_failed);
    return tests_failed > 0 ? 1 : 0;
}
