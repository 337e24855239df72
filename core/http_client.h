/*
 * http_client.h - outbound HTTP on libcurl's multi interface, driven by
 * the broker's libevent loop (socket and timer callbacks; no threads, no
 * polling).  Connections are reused through the multi handle's cache.
 *
 * A call is retried, with exponential back-off, on connection failures,
 * timeouts, 5xx and 429 (honouring Retry-After), up to `max_attempts`
 * attempts in all, and only if `retry` is set for it.
 *
 * A call either buffers the whole answer for its done callback
 * (ab_http_start) or streams the body to the caller as it arrives
 * (ab_http_start_stream), for relaying answers of any size.
 */
#ifndef AB_HTTP_CLIENT_H
#define AB_HTTP_CLIENT_H

#include <stddef.h>

struct event_base;
struct ab_http_client;
struct ab_http_call;

/* One request header, "Name: value" form is built by the client. */
struct ab_http_header {
    const char *name;
    const char *value;
};

/* What to send.  Every pointer is borrowed for the duration of
 * ab_http_start() only: the client copies what it keeps. */
struct ab_http_request {
    const char *method; /* "GET", "POST", ... */
    const char *url;    /* absolute http(s) URL */
    const struct ab_http_header *headers;
    size_t nheaders;
    const char *body; /* may be NULL */
    size_t body_len;
    long timeout_ms;           /* per attempt; 0 means 10000 */
    int max_attempts;          /* 1 means no retry; 0 means 1 */
    int retry;                 /* non-zero: retry as described above */
    size_t max_response_bytes; /* 0 means 16 MiB (streams: see below) */
};

/* What came back.  Owned by the client; valid only during the callback. */
struct ab_http_response {
    int status;        /* HTTP status, or 0 if none arrived */
    const char *error; /* NULL, or why no status arrived:
                                        "timeout", "connect", "too_large",
                                        "cancelled" or curl's message */
    int timed_out;     /* non-zero if the last try timed out */
    const char *body;  /* NUL-terminated; may hold NULs */
    size_t body_len;
    const struct ab_http_header *headers; /* names lower-cased */
    size_t nheaders;
    int attempts;      /* how many tries were made */
    double elapsed_ms; /* from start to completion */
};

/* Called exactly once per started call, from the event loop, unless the
 * call was cancelled with ab_http_cancel(). */
typedef void (*ab_http_done_cb)(const struct ab_http_response *res, void *arg);

/* Creates a client on `base`.  Returns NULL on failure (logged). */
struct ab_http_client *ab_http_client_new(struct event_base *base);

/* Cancels every call in flight without calling their callbacks, then
 * frees the client. */
void ab_http_client_free(struct ab_http_client *client);

/*
 * Starts a call.  Returns a handle for ab_http_cancel(), or NULL if the
 * call could not be started (bad URL, out of memory); in that case `cb`
 * is never called.  The callback is never called from inside this
 * function: at the earliest on the next turn of the loop.
 */
struct ab_http_call *ab_http_start(struct ab_http_client *client,
                                   const struct ab_http_request *req,
                                   ab_http_done_cb cb, void *arg);

/*
 * Streaming.  The callbacks of one streamed call, all called from the
 * event loop with the `arg` given to ab_http_start_stream():
 *
 *   on_headers, once, when the final answer's status and headers are
 *   in (res->body is "" and res->body_len 0; names are lower-cased;
 *   `res` and what it points to are borrowed until the callback
 *   returns); never if no answer came.  Returns 0 to go on, or -1 to
 *   abort the call.  May be NULL.  A response without a body (HEAD,
 *   204, 304) gets on_headers, then on_done.
 *
 *   on_data, for the body bytes in order as they arrive, each byte
 *   exactly once, never before on_headers; `data` is borrowed until the
 *   callback returns.  Returns 0 to go on, 1 to pause (the bytes just
 *   passed were taken; no more come, nor on_done, and the socket is
 *   not read, until ab_http_resume()), or -1 to abort the call.  Must
 *   not be NULL.
 *
 *   on_done, once at the end, unless the call was cancelled with
 *   ab_http_cancel(): res->status, error, timed_out, attempts and
 *   elapsed_ms as in buffered mode, res->headers those on_headers saw,
 *   res->body "" and res->body_len the number of bytes on_data took.
 *   After on_headers, a non-NULL error means the body was cut short
 *   ("timeout", "too_large", "cancelled" if a callback returned -1, or
 *   curl's message) and res->status still holds the status on_headers
 *   saw; before it, status is 0 as in buffered mode.  May be NULL.
 *
 * A stream is retried as in buffered mode (no answer, 5xx, 429), but
 * only while on_headers has not run: a retryable answer is dropped
 * unseen, body included, and the request sent again; once on_headers
 * ran, never.
 *
 * `max_response_bytes` caps the body and headers if non-zero (over it,
 * the call ends with "too_large"); 0 means no cap on the body (headers
 * are still capped at 16 MiB).
 *
 * `timeout_ms` (0 means 10000) bounds connecting; after that, the call
 * ends with "timeout" once less than one byte a second came for
 * ceil(timeout_ms / 1000) seconds, which bounds both the wait for the
 * answer and stalls in the body, with no limit on the whole transfer.
 * curl averages the speed over up to the last 5 seconds, so a stall
 * right after a burst of data is noticed up to 5 seconds late.  A
 * paused stream never times out.
 *
 * on_headers and on_data run inside curl, which refuses re-entry: they
 * must not start, cancel or free calls, nor free the client (to stop
 * their own call, they return -1).  They may call ab_http_resume().
 * on_done runs outside curl and may do all of that.
 */
struct ab_http_stream {
    int (*on_headers)(const struct ab_http_response *res, void *arg);
    int (*on_data)(const char *data, size_t len, void *arg);
    ab_http_done_cb on_done;
};

/*
 * Starts a streamed call; `req` is borrowed as for ab_http_start() and
 * `cbs` is copied.  Returns a handle for ab_http_resume() and
 * ab_http_cancel(), or NULL if the call could not be started (bad URL,
 * out of memory, no on_data); then no callback is ever called.  No
 * callback runs inside this function.
 */
struct ab_http_call *ab_http_start_stream(struct ab_http_client *client,
                                          const struct ab_http_request *req,
                                          const struct ab_http_stream *cbs,
                                          void *arg);

/*
 * Lets a stream that on_data paused go on; does nothing if it is not
 * paused (from inside its own on_data, say: the pause starts when
 * on_data returns 1).  on_data may be called from inside this function,
 * with bytes that were waiting; it may pause again there.  on_headers
 * and on_done never are: if on_data aborts from here, on_done follows
 * on a later turn of the loop.  Safe from any callback, including
 * on_data of other streams, but not once the call's on_done has run.
 */
void ab_http_resume(struct ab_http_call *call);

/* Stops a call in flight, buffered or streamed; none of its callbacks
 * will be called again.  The handle is invalid afterwards.  Must not be
 * called from any of the call's own callbacks: the handle is already
 * gone in on_done, and a stream callback returns -1 instead. */
void ab_http_cancel(struct ab_http_call *call);

/* Number of calls in flight (for metrics and tests). */
size_t ab_http_inflight(const struct ab_http_client *client);

/*
 * Pure helpers, exposed for unit tests.
 *
 * ab_http_retry_after_ms: parses a Retry-After value (delta-seconds or
 * an HTTP-date, relative to `now`); returns milliseconds, or -1 if the
 * value is not understood.  Capped at 60000.
 *
 * ab_http_backoff_ms: the wait before attempt `attempt` (2 for the first
 * retry): 100 ms doubled per attempt, capped at 2000 ms, with up to 25%
 * jitter taken from `jitter01` in [0, 1).
 *
 * ab_http_should_retry: non-zero if a try that ended with `status`
 * (0 = no answer) should be tried again.
 */
long ab_http_retry_after_ms(const char *value, long long now_epoch_s);
long ab_http_backoff_ms(int attempt, double jitter01);
int ab_http_should_retry(int status);

#endif
