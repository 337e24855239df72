/*
 * http_client.h - outbound HTTP on libcurl's multi interface, driven by
 * the broker's libevent loop (socket and timer callbacks; no threads, no
 * polling).  Connections are reused through the multi handle's cache.
 *
 * A call is retried, with exponential back-off, on connection failures,
 * timeouts, 5xx and 429 (honouring Retry-After), up to `max_attempts`
 * attempts in all, and only if `retry` is set for it.
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
    size_t max_response_bytes; /* 0 means 16 MiB */
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

/* Stops a call in flight; its callback will not be called.  The handle
 * is invalid afterwards.  Must not be called from the call's own
 * callback (the handle is already gone then). */
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
