/*
 * http_client.c - outbound HTTP on libcurl's multi interface, driven by
 * the broker's libevent loop.
 *
 * curl says which sockets to watch (on_curl_socket) and when it wants to
 * be woken up (on_curl_timer); libevent says when a socket is ready
 * (on_socket_ready) or that time is up (on_timeout), and both hand the
 * news to curl_multi_socket_action().  Finished transfers are then
 * collected (collect_done) and either tried again after a timer
 * (on_retry_timer) or delivered to the caller's callback (complete).
 *
 * A streamed call keeps no body: on_stream_headers_end and
 * on_curl_stream_body hand headers and bytes to the caller as curl
 * reads them, and ab_http_resume unpauses what on_data paused.
 *
 * The caller sets up the process: main() calls curl_global_init() once
 * before the first ab_http_client_new() and curl_global_cleanup() at
 * exit, and ignores SIGPIPE (CURLOPT_NOSIGNAL leaves that to us).
 */
#include "http_client.h"
#include "log.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <curl/curl.h>
#include <event2/event.h>
#include <event2/util.h>

#define MODULE "http-client"

#define DEFAULT_TIMEOUT_MS   10000L
#define DEFAULT_MAX_RESPONSE ((size_t)16 * 1024 * 1024)
#define RETRY_AFTER_CAP_MS   60000L
#define BACKOFF_FIRST_MS     100L
#define BACKOFF_CAP_MS       2000L

/* A call never waits for a Retry-After that would end past this many
 * milliseconds after it started; it completes with the answer instead. */
#define RETRY_BUDGET_MS 60000.0

/* Delta-seconds past a day are all the same to us (the cap is lower). */
#define RETRY_AFTER_SATURATE_S 86400LL

/* A growable byte buffer, NUL-terminated once allocated. */
struct buf {
    char *data;
    size_t len;
    size_t cap;
};

/* Response headers of the current try.  Each name and its value share
 * one allocation that starts at `name`. */
struct header_list {
    struct ab_http_header *items;
    size_t len;
    size_t cap;
};

struct ab_http_client {
    struct event_base *base;
    CURLM *multi;
    struct event *timer;        /* curl's one timeout */
    struct ab_http_call *calls; /* in flight, doubly linked */
    size_t inflight;
    int dispatching; /* inside collect_done() */
    int closing;     /* freed from a callback: destroy later */
};

/* What a streamed call knows beyond a buffered one.  All but `cbs` and
 * `end_soon` describe the current try. */
struct stream_state {
    struct ab_http_stream cbs;
    struct event *end_soon; /* completes a stream after a failed resume */
    CURLcode end_rc;        /* what that resume failed with */
    long retry_wait;        /* >= 0: answer dropped, retry after this */
    int headers_sent;       /* on_headers has run */
    int aborted;            /* a callback returned -1 */
    int paused;             /* on_data returned 1; not yet resumed */
    size_t delivered;       /* body bytes on_data took */
    size_t redelivered;     /* bytes curl hands back that on_data had */
};

struct ab_http_call {
    struct ab_http_client *client;
    struct ab_http_call *prev;
    struct ab_http_call *next;
    CURL *easy;
    struct curl_slist *req_headers; /* kept alive for curl */
    struct event *retry_timer;      /* the wait between tries */
    ab_http_done_cb cb;
    void *arg;
    int retry;
    int max_attempts;
    size_t max_bytes;        /* body cap; 0 = none (streams only) */
    size_t max_header_bytes; /* header cap */
    int in_multi;            /* easy is added to the multi handle */
    int too_large;           /* this try went over a cap */
    size_t header_bytes;     /* header bytes read in this try */
    struct buf body;         /* buffered calls only */
    struct header_list headers;
    struct ab_http_response res; /* outcome of the latest try */
    double started_ms;
    struct stream_state *stream; /* NULL for a buffered call */
};

/* ------------------------------------------------------------------ */
/* Small helpers                                                       */
/* ------------------------------------------------------------------ */

static double
now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1000.0 + (double)ts.tv_nsec / 1e6;
}

static int
is_blank(char c)
{
    return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

static int
is_digit(char c)
{
    return c >= '0' && c <= '9';
}

static char
ascii_lower(char c)
{
    return (c >= 'A' && c <= 'Z') ? (char)(c - 'A' + 'a') : c;
}

/* Narrows [*p, *p + *n) to its content without surrounding blanks. */
static void
trim_span(const char **p, size_t *n)
{
    while (*n > 0 && is_blank((*p)[0])) {
        (*p)++;
        (*n)--;
    }
    while (*n > 0 && is_blank((*p)[*n - 1])) {
        (*n)--;
    }
}

/* RFC 9110 token characters, as in methods and header names. */
static int
is_token(const char *s)
{
    static const char extra[] = "!#$%&'*+-.^_`|~";

    if (s == NULL || *s == '\0') {
        return 0;
    }
    for (; *s != '\0'; s++) {
        unsigned char c = (unsigned char)*s;
        int alpha = (c | 0x20) >= 'a' && (c | 0x20) <= 'z';

        if (!alpha && !is_digit(*s) && strchr(extra, *s) == NULL) {
            return 0;
        }
    }
    return 1;
}

/* A random number in [0, 1) for back-off jitter. */
static double
jitter01(void)
{
    uint32_t r;

    evutil_secure_rng_get_bytes(&r, sizeof(r));
    return (double)r / 4294967296.0;
}

/* ------------------------------------------------------------------ */
/* Pure helpers (exported for tests)                                   */
/* ------------------------------------------------------------------ */

/* See http_client.h.  0 means no answer arrived at all. */
int
ab_http_should_retry(int status)
{
    return status == 0 || status == 429 || status >= 500;
}

/* See http_client.h.  Attempts below 2 are treated as 2. */
long
ab_http_backoff_ms(int attempt, double jitter)
{
    long wait = BACKOFF_FIRST_MS;

    for (int i = 2; i < attempt && wait < BACKOFF_CAP_MS; i++) {
        wait *= 2;
    }
    if (wait > BACKOFF_CAP_MS) {
        wait = BACKOFF_CAP_MS;
    }
    if (!(jitter > 0.0)) {
        jitter = 0.0; /* also NaN */
    } else if (jitter > 1.0) {
        jitter = 1.0;
    }
    return wait + (long)((double)wait * 0.25 * jitter);
}

/* Parses delta-seconds (digits only).  Returns seconds, saturated, or
 * -1 if `s` is not a number. */
static long long
parse_delta_seconds(const char *s, size_t n)
{
    long long v = 0;

    if (n == 0) {
        return -1;
    }
    for (size_t i = 0; i < n; i++) {
        if (!is_digit(s[i])) {
            return -1;
        }
        if (v <= RETRY_AFTER_SATURATE_S) {
            v = v * 10 + (s[i] - '0');
        }
    }
    return v;
}

/* Days from 1970-01-01 to the given proleptic Gregorian date. */
static long long
days_from_civil(long long y, int m, int d)
{
    long long era, yoe, doy, doe;

    y -= m <= 2;
    era = (y >= 0 ? y : y - 399) / 400;
    yoe = y - era * 400;
    doy = (153 * (m > 2 ? m - 3 : m + 9) + 2) / 5 + d - 1;
    doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + doe - 719468;
}

/* Index of the three-letter name at `s` in `names` (each 3 letters,
 * back to back), or -1. */
static int
name_index(const char *s, const char *names)
{
    for (int i = 0; names[i * 3] != '\0'; i++) {
        if (strncmp(s, names + i * 3, 3) == 0) {
            return i;
        }
    }
    return -1;
}

static int
two_digits(const char *s)
{
    return (s[0] - '0') * 10 + (s[1] - '0');
}

/* Whether `c` fits one position of the IMF-fixdate shape below: 'a'
 * stands for a letter, 'd' for a digit, anything else for itself. */
static int
fits_shape(char shape, char c)
{
    if (shape == 'd') {
        return is_digit(c);
    }
    if (shape == 'a') {
        return (c | 0x20) >= 'a' && (c | 0x20) <= 'z';
    }
    return c == shape;
}

/* Checks that `s` has the shape of an IMF-fixdate. */
static int
has_imf_shape(const char *s, size_t n)
{
    static const char shape[] = "aaa, dd aaa dddd dd:dd:dd GMT";

    if (n != sizeof(shape) - 1) {
        return 0;
    }
    for (size_t i = 0; i < n; i++) {
        if (!fits_shape(shape[i], s[i])) {
            return 0;
        }
    }
    return 1;
}

/* Parses an IMF-fixdate ("Sun, 06 Nov 1994 08:49:37 GMT") into seconds
 * since the epoch.  The obsolete RFC 850 and asctime forms are not
 * accepted.  Returns 0, or -1 if `s` is not such a date. */
static int
parse_imf_fixdate(const char *s, size_t n, long long *out)
{
    int wday, mon, day, hh, mm, ss;
    long long year;

    if (!has_imf_shape(s, n)) {
        return -1;
    }
    wday = name_index(s, "MonTueWedThuFriSatSun");
    mon = name_index(s + 8, "JanFebMarAprMayJunJulAugSepOctNovDec");
    day = two_digits(s + 5);
    year = two_digits(s + 12) * 100 + two_digits(s + 14);
    hh = two_digits(s + 17);
    mm = two_digits(s + 20);
    ss = two_digits(s + 23);
    if (wday < 0 || mon < 0 || day < 1 || day > 31 || hh > 23 || mm > 59 ||
        ss > 60) {
        return -1;
    }
    *out =
        days_from_civil(year, mon + 1, day) * 86400 + hh * 3600 + mm * 60 + ss;
    return 0;
}

/* The wait a Retry-After value asks for, in milliseconds and not
 * capped, or -1 if it is not understood.  A date in the past means no
 * wait. */
static long long
retry_after_raw_ms(const char *value, long long now_epoch_s)
{
    const char *s = value;
    size_t n;
    long long secs, at;

    if (value == NULL) {
        return -1;
    }
    n = strlen(s);
    trim_span(&s, &n);
    if (n > 0 && is_digit(s[0])) {
        secs = parse_delta_seconds(s, n);
    } else if (parse_imf_fixdate(s, n, &at) == 0) {
        secs = at > now_epoch_s ? at - now_epoch_s : 0;
    } else {
        return -1;
    }
    if (secs > RETRY_AFTER_SATURATE_S) {
        secs = RETRY_AFTER_SATURATE_S;
    }
    return secs < 0 ? -1 : secs * 1000;
}

/* See http_client.h. */
long
ab_http_retry_after_ms(const char *value, long long now_epoch_s)
{
    long long ms = retry_after_raw_ms(value, now_epoch_s);

    if (ms < 0) {
        return -1;
    }
    return ms > RETRY_AFTER_CAP_MS ? RETRY_AFTER_CAP_MS : (long)ms;
}

/* ------------------------------------------------------------------ */
/* Response body and headers                                           */
/* ------------------------------------------------------------------ */

/* Appends `n` bytes, keeping the buffer NUL-terminated.  Returns 0, or
 * -1 when out of memory. */
static int
buf_append(struct buf *b, const char *p, size_t n)
{
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 1024;
        char *data;

        while (cap < b->len + n + 1) {
            cap *= 2;
        }
        data = realloc(b->data, cap);
        if (data == NULL) {
            return -1;
        }
        b->data = data;
        b->cap = cap;
    }
    memcpy(b->data + b->len, p, n);
    b->len += n;
    b->data[b->len] = '\0';
    return 0;
}

/* Empties the buffer but keeps its memory for the next try. */
static void
buf_reset(struct buf *b)
{
    b->len = 0;
    if (b->data != NULL) {
        b->data[0] = '\0';
    }
}

static void
headers_clear(struct header_list *h)
{
    for (size_t i = 0; i < h->len; i++) {
        free((char *)h->items[i].name);
    }
    h->len = 0;
}

static void
headers_free(struct header_list *h)
{
    headers_clear(h);
    free(h->items);
    h->items = NULL;
    h->cap = 0;
}

/* Adds one header, lower-casing the name.  Returns 0, or -1. */
static int
headers_push(struct header_list *h, const char *name, size_t nlen,
             const char *value, size_t vlen)
{
    char *block;

    if (h->len == h->cap) {
        size_t cap = h->cap ? h->cap * 2 : 16;
        struct ab_http_header *items = realloc(h->items, cap * sizeof(*items));

        if (items == NULL) {
            return -1;
        }
        h->items = items;
        h->cap = cap;
    }
    block = malloc(nlen + vlen + 2);
    if (block == NULL) {
        return -1;
    }
    for (size_t i = 0; i < nlen; i++) {
        block[i] = ascii_lower(name[i]);
    }
    block[nlen] = '\0';
    memcpy(block + nlen + 1, value, vlen);
    block[nlen + 1 + vlen] = '\0';
    h->items[h->len].name = block;
    h->items[h->len].value = block + nlen + 1;
    h->len++;
    return 0;
}

/* Appends a folded continuation line to the last header's value, one
 * space standing for the fold (RFC 9112, section 5.2).  Returns 0/-1. */
static int
headers_fold(struct header_list *h, const char *p, size_t n)
{
    struct ab_http_header *last;
    size_t nlen, vlen;
    char *block, *pos;

    trim_span(&p, &n);
    if (h->len == 0 || n == 0) {
        return 0;
    }
    last = &h->items[h->len - 1];
    nlen = strlen(last->name);
    vlen = strlen(last->value);
    block = realloc((char *)last->name, nlen + vlen + n + 3);
    if (block == NULL) {
        return -1;
    }
    pos = block + nlen + 1 + vlen;
    if (vlen > 0) {
        *pos++ = ' ';
    }
    memcpy(pos, p, n);
    pos[n] = '\0';
    last->name = block;
    last->value = block + nlen + 1;
    return 0;
}

/* Parses one "Name: value" line; lines without a name are ignored. */
static int
headers_add_line(struct header_list *h, const char *p, size_t n)
{
    const char *colon = memchr(p, ':', n);
    const char *name = p, *value;
    size_t nlen, vlen;

    if (colon == NULL) {
        return 0;
    }
    nlen = (size_t)(colon - p);
    value = colon + 1;
    vlen = n - nlen - 1;
    trim_span(&name, &nlen);
    trim_span(&value, &vlen);
    if (nlen == 0) {
        return 0;
    }
    return headers_push(h, name, nlen, value, vlen);
}

/* The first value of header `name` (lower case), or NULL. */
static const char *
headers_find(const struct header_list *h, const char *name)
{
    for (size_t i = 0; i < h->len; i++) {
        if (strcmp(h->items[i].name, name) == 0) {
            return h->items[i].value;
        }
    }
    return NULL;
}

/* Called by curl with a piece of the response body.  Returning anything
 * but `size * n` makes curl abort the transfer (CURLE_WRITE_ERROR). */
static size_t
on_curl_body(char *p, size_t size, size_t n, void *arg)
{
    struct ab_http_call *call = arg;
    size_t len = size * n;

    if (len > call->max_bytes - call->body.len) {
        call->too_large = 1;
        return 0;
    }
    if (buf_append(&call->body, p, len) < 0) {
        return 0;
    }
    return len;
}

/* ------------------------------------------------------------------ */
/* Streamed responses                                                  */
/* ------------------------------------------------------------------ */

static long retry_wait_ms(struct ab_http_call *call, CURLcode rc);

/* Whether a header line is the empty one that ends a block. */
static int
is_end_of_block(const char *p, size_t len)
{
    return (len == 2 && p[0] == '\r' && p[1] == '\n') ||
           (len == 1 && p[0] == '\n');
}

/* Whether the current try of a stream is past its final headers: they
 * went to on_headers, or the answer is being dropped for a retry. */
static int
stream_past_headers(const struct stream_state *st)
{
    return st->headers_sent || st->retry_wait >= 0;
}

/* Calls on_headers with the status and headers of the current try; the
 * response and the headers are borrowed by the callback.  Runs once per
 * call: no retry follows.  Returns 0, or -1 if the caller aborted. */
static int
deliver_headers(struct ab_http_call *call)
{
    struct stream_state *st = call->stream;
    struct ab_http_response *res = &call->res;
    long status = 0;

    curl_easy_getinfo(call->easy, CURLINFO_RESPONSE_CODE, &status);
    st->headers_sent = 1;
    res->status = (int)status;
    res->body = "";
    res->body_len = 0;
    res->headers = call->headers.items;
    res->nheaders = call->headers.len;
    res->elapsed_ms = now_ms() - call->started_ms;
    if (st->cbs.on_headers != NULL && st->cbs.on_headers(res, call->arg) != 0) {
        st->aborted = 1;
        return -1;
    }
    return 0;
}

/* Called by on_curl_header() at the empty line ending a header block
 * of a stream.  An informational answer (1xx) or a proxy's answer to
 * CONNECT (no status yet) is skipped.  A final answer that will be
 * retried is dropped unseen; any other goes to on_headers.  Returns 0,
 * or -1 to make curl abort. */
static int
on_stream_headers_end(struct ab_http_call *call)
{
    long status = 0;

    curl_easy_getinfo(call->easy, CURLINFO_RESPONSE_CODE, &status);
    if (status < 200) {
        return 0;
    }
    call->res.status = (int)status;
    call->stream->retry_wait = retry_wait_ms(call, CURLE_OK);
    if (call->stream->retry_wait >= 0) {
        return 0;
    }
    return deliver_headers(call);
}

/* Hands `n` new bytes at `p` to on_data; `whole` is the size of the
 * piece curl passed, `p` included.  Returns what the write callback
 * returns: `whole`, 0 to abort, or CURL_WRITEFUNC_PAUSE.  On a pause,
 * curl keeps the whole piece and passes it again after the resume, so
 * it is remembered as already delivered. */
static size_t
hand_over(struct ab_http_call *call, const char *p, size_t n, size_t whole)
{
    struct stream_state *st = call->stream;
    int rc;

    if (call->max_bytes > 0 && n > call->max_bytes - st->delivered) {
        call->too_large = 1;
        return 0;
    }
    rc = st->cbs.on_data(p, n, call->arg);
    if (rc != 0 && rc != 1) {
        st->aborted = 1;
        return 0;
    }
    st->delivered += n;
    if (rc == 0) {
        return whole;
    }
    st->paused = 1;
    st->redelivered = whole;
    return CURL_WRITEFUNC_PAUSE;
}

/* Called by curl with a piece of a stream's body, from inside
 * curl_multi_socket_action() or, for bytes held over a pause, from
 * curl_easy_pause() in ab_http_resume().  The piece is curl's, valid
 * only during the call.  Bytes of an answer dropped for a retry are
 * discarded; bytes curl passes again after a pause are skipped. */
static size_t
on_curl_stream_body(char *p, size_t size, size_t n, void *arg)
{
    struct ab_http_call *call = arg;
    struct stream_state *st = call->stream;
    size_t len = size * n;
    size_t seen;

    if (!st->headers_sent && st->retry_wait >= 0) {
        return len;
    }
    if (st->aborted || (!st->headers_sent && deliver_headers(call) < 0)) {
        return 0;
    }
    seen = st->redelivered < len ? st->redelivered : len;
    st->redelivered -= seen;
    if (seen == len) {
        return len;
    }
    return hand_over(call, p + seen, len - seen, len);
}

/* ------------------------------------------------------------------ */
/* Header lines, both modes                                            */
/* ------------------------------------------------------------------ */

/* Called by curl with one raw response header line, CRLF included, for
 * every response it reads.  A status line starts a new block, so only
 * the last response's headers (after a 100 Continue, say) are kept.
 * Header bytes count against max_header_bytes.  A stream hands its
 * final block to on_headers and keeps no trailers. */
static size_t
on_curl_header(char *p, size_t size, size_t n, void *arg)
{
    struct ab_http_call *call = arg;
    size_t len = size * n;
    int rc = 0;

    if (call->stream != NULL && stream_past_headers(call->stream)) {
        return len;
    }
    call->header_bytes += len;
    if (call->header_bytes > call->max_header_bytes) {
        call->too_large = 1;
        return 0;
    }
    if (len >= 5 && strncmp(p, "HTTP/", 5) == 0) {
        headers_clear(&call->headers);
    } else if (len > 0 && (p[0] == ' ' || p[0] == '\t')) {
        rc = headers_fold(&call->headers, p, len);
    } else if (call->stream != NULL && is_end_of_block(p, len)) {
        rc = on_stream_headers_end(call);
    } else {
        rc = headers_add_line(&call->headers, p, len);
    }
    return rc == 0 ? len : 0;
}

/* ------------------------------------------------------------------ */
/* Setting up a call                                                   */
/* ------------------------------------------------------------------ */

static int
header_value_ok(const char *v)
{
    return v != NULL && strpbrk(v, "\r\n") == NULL;
}

/* Whether the caller's headers include `name` (any case). */
static int
has_header(const struct ab_http_request *req, const char *name)
{
    for (size_t i = 0; i < req->nheaders; i++) {
        if (strcasecmp(req->headers[i].name, name) == 0) {
            return 1;
        }
    }
    return 0;
}

/* Whether `url` parses as an absolute http or https URL. */
static int
url_is_http(const char *url)
{
    CURLU *u = curl_url();
    char *scheme = NULL;
    int ok = 0;

    if (u != NULL && url != NULL &&
        curl_url_set(u, CURLUPART_URL, url, 0) == CURLUE_OK &&
        curl_url_get(u, CURLUPART_SCHEME, &scheme, 0) == CURLUE_OK) {
        ok =
            strcasecmp(scheme, "http") == 0 || strcasecmp(scheme, "https") == 0;
    }
    curl_free(scheme);
    curl_url_cleanup(u);
    return ok;
}

/* Returns NULL if `req` can be sent, else why not.  Never quotes the
 * URL or header values: they may carry credentials. */
static const char *
check_request(const struct ab_http_request *req)
{
    if (req == NULL || !url_is_http(req->url)) {
        return "not an http(s) URL";
    }
    if (req->method != NULL && !is_token(req->method)) {
        return "bad method";
    }
    if (req->body == NULL && req->body_len > 0) {
        return "body_len without a body";
    }
    if (req->nheaders > 0 && req->headers == NULL) {
        return "nheaders without headers";
    }
    for (size_t i = 0; i < req->nheaders; i++) {
        if (!is_token(req->headers[i].name) ||
            !header_value_ok(req->headers[i].value)) {
            return "bad header name or value";
        }
    }
    return NULL;
}

static int
slist_add(struct curl_slist **list, const char *line)
{
    struct curl_slist *l = curl_slist_append(*list, line);

    if (l == NULL) {
        return -1;
    }
    *list = l;
    return 0;
}

/* Adds "Name: value" to `list`; an empty value is written "Name;",
 * which is how curl is told to send a header with no value. */
static int
slist_add_header(struct curl_slist **list, const struct ab_http_header *h)
{
    size_t size = strlen(h->name) + strlen(h->value) + 3;
    char *line = malloc(size);
    int rc;

    if (line == NULL) {
        return -1;
    }
    if (h->value[0] == '\0') {
        snprintf(line, size, "%s;", h->name);
    } else {
        snprintf(line, size, "%s: %s", h->name, h->value);
    }
    rc = slist_add(list, line);
    free(line);
    return rc;
}

/* Builds the request header list.  curl would otherwise add a form
 * Content-Type to bodies and "Expect: 100-continue" to large ones; the
 * caller's headers go out as given and nothing else is invented. */
static int
build_header_list(struct ab_http_call *call, const struct ab_http_request *req)
{
    for (size_t i = 0; i < req->nheaders; i++) {
        if (slist_add_header(&call->req_headers, &req->headers[i]) < 0) {
            return -1;
        }
    }
    if (!has_header(req, "Content-Type") &&
        slist_add(&call->req_headers, "Content-Type:") < 0) {
        return -1;
    }
    if (!has_header(req, "Expect") &&
        slist_add(&call->req_headers, "Expect:") < 0) {
        return -1;
    }
    return 0;
}

/* Per-try time limits.  A buffered call has `timeout_ms` for all of
 * it.  A stream has it to connect, and then must not fall below one
 * byte a second for as many whole seconds, however long it runs. */
static int
set_timeouts(CURL *easy, long timeout_ms, int streaming)
{
    long idle_s = (timeout_ms + 999) / 1000;
    int bad = 0;

    if (!streaming) {
        bad |=
            curl_easy_setopt(easy, CURLOPT_TIMEOUT_MS, timeout_ms) != CURLE_OK;
        return bad ? -1 : 0;
    }
    bad |= curl_easy_setopt(easy, CURLOPT_TIMEOUT_MS, 0L) != CURLE_OK;
    bad |= curl_easy_setopt(easy, CURLOPT_CONNECTTIMEOUT_MS, timeout_ms) !=
           CURLE_OK;
    bad |= curl_easy_setopt(easy, CURLOPT_LOW_SPEED_LIMIT, 1L) != CURLE_OK;
    bad |= curl_easy_setopt(easy, CURLOPT_LOW_SPEED_TIME, idle_s) != CURLE_OK;
    return bad ? -1 : 0;
}

/* Options that do not depend on the request's method or body.  A
 * `max_bytes` of 0 sets no limit. */
static int
set_transport_options(CURL *easy, size_t max_bytes)
{
    curl_off_t max_file =
        max_bytes > (size_t)INT64_MAX ? 0 : (curl_off_t)max_bytes;
    int bad = 0;

    bad |= curl_easy_setopt(easy, CURLOPT_NOSIGNAL, 1L) != CURLE_OK;
    bad |= curl_easy_setopt(easy, CURLOPT_TCP_NODELAY, 1L) != CURLE_OK;
    bad |= curl_easy_setopt(easy, CURLOPT_FOLLOWLOCATION, 0L) != CURLE_OK;
    bad |=
        curl_easy_setopt(easy, CURLOPT_MAXFILESIZE_LARGE, max_file) != CURLE_OK;
#if LIBCURL_VERSION_NUM >= 0x075500
    bad |=
        curl_easy_setopt(easy, CURLOPT_PROTOCOLS_STR, "http,https") != CURLE_OK;
#else
    bad |=
        curl_easy_setopt(easy, CURLOPT_PROTOCOLS,
                         (long)(CURLPROTO_HTTP | CURLPROTO_HTTPS)) != CURLE_OK;
#endif
    return bad ? -1 : 0;
}

/* Points curl's callbacks and private pointer at `call`. */
static int
set_callback_options(struct ab_http_call *call)
{
    CURL *easy = call->easy;
    curl_write_callback body =
        call->stream != NULL ? on_curl_stream_body : on_curl_body;
    int bad = 0;

    bad |= curl_easy_setopt(easy, CURLOPT_PRIVATE, (void *)call) != CURLE_OK;
    bad |= curl_easy_setopt(easy, CURLOPT_WRITEFUNCTION, body) != CURLE_OK;
    bad |= curl_easy_setopt(easy, CURLOPT_WRITEDATA, (void *)call) != CURLE_OK;
    bad |= curl_easy_setopt(easy, CURLOPT_HEADERFUNCTION, on_curl_header) !=
           CURLE_OK;
    bad |= curl_easy_setopt(easy, CURLOPT_HEADERDATA, (void *)call) != CURLE_OK;
    return bad ? -1 : 0;
}

/* Whether a request with `method` carries a body even if none is
 * given (an empty one, so that a Content-Length goes out). */
static int
method_wants_body(const char *method)
{
    return strcmp(method, "POST") == 0 || strcmp(method, "PUT") == 0 ||
           strcmp(method, "PATCH") == 0;
}

/* Sets the method and the body; curl keeps its own copy of the body,
 * so it survives between tries. */
static int
set_method_and_body(CURL *easy, const struct ab_http_request *req)
{
    const char *method = req->method != NULL ? req->method : "GET";
    int body = req->body != NULL || method_wants_body(method);
    int bad = 0;

    if (body && strcmp(method, "HEAD") != 0) {
        bad |= curl_easy_setopt(easy, CURLOPT_POSTFIELDSIZE_LARGE,
                                (curl_off_t)req->body_len) != CURLE_OK;
        bad |= curl_easy_setopt(easy, CURLOPT_COPYPOSTFIELDS,
                                req->body != NULL ? req->body : "") != CURLE_OK;
    }
    if (strcmp(method, "HEAD") == 0) {
        bad |= curl_easy_setopt(easy, CURLOPT_NOBODY, 1L) != CURLE_OK;
    } else if (strcmp(method, "GET") == 0 && !body) {
        bad |= curl_easy_setopt(easy, CURLOPT_HTTPGET, 1L) != CURLE_OK;
    } else if (!(strcmp(method, "POST") == 0 && body)) {
        bad |=
            curl_easy_setopt(easy, CURLOPT_CUSTOMREQUEST, method) != CURLE_OK;
    }
    return bad ? -1 : 0;
}

/* Creates the easy handle of `call` and sets every option. */
static int
setup_easy(struct ab_http_call *call, const struct ab_http_request *req)
{
    long timeout = req->timeout_ms > 0 ? req->timeout_ms : DEFAULT_TIMEOUT_MS;

    call->easy = curl_easy_init();
    if (call->easy == NULL || build_header_list(call, req) < 0) {
        return -1;
    }
    if (set_transport_options(call->easy, call->max_bytes) < 0 ||
        set_timeouts(call->easy, timeout, call->stream != NULL) < 0 ||
        set_callback_options(call) < 0 ||
        set_method_and_body(call->easy, req) < 0) {
        return -1;
    }
    if (curl_easy_setopt(call->easy, CURLOPT_URL, req->url) != CURLE_OK ||
        curl_easy_setopt(call->easy, CURLOPT_HTTPHEADER, call->req_headers) !=
            CURLE_OK) {
        return -1;
    }
    return 0;
}

/* ------------------------------------------------------------------ */
/* Call lifecycle                                                      */
/* ------------------------------------------------------------------ */

static void
link_call(struct ab_http_client *client, struct ab_http_call *call)
{
    call->prev = NULL;
    call->next = client->calls;
    if (client->calls != NULL) {
        client->calls->prev = call;
    }
    client->calls = call;
    client->inflight++;
}

static void
unlink_call(struct ab_http_call *call)
{
    struct ab_http_client *client = call->client;

    if (call->prev != NULL) {
        call->prev->next = call->next;
    } else {
        client->calls = call->next;
    }
    if (call->next != NULL) {
        call->next->prev = call->prev;
    }
    call->prev = call->next = NULL;
    client->inflight--;
}

/* Frees a call that is not (or no longer) linked to its client, taking
 * its easy handle out of the multi handle first.  Accepts NULL. */
static void
call_free(struct ab_http_call *call)
{
    if (call == NULL) {
        return;
    }
    if (call->in_multi) {
        curl_multi_remove_handle(call->client->multi, call->easy);
    }
    if (call->easy != NULL) {
        curl_easy_cleanup(call->easy);
    }
    curl_slist_free_all(call->req_headers);
    if (call->retry_timer != NULL) {
        event_free(call->retry_timer);
    }
    if (call->stream != NULL && call->stream->end_soon != NULL) {
        event_free(call->stream->end_soon);
    }
    free(call->stream);
    free(call->body.data);
    headers_free(&call->headers);
    free(call);
}

/* Forgets what the previous try of a stream did.  A retry only ever
 * follows a try whose headers were not handed over. */
static void
reset_stream(struct stream_state *st)
{
    st->retry_wait = -1;
    st->headers_sent = 0;
    st->aborted = 0;
    st->paused = 0;
    st->delivered = 0;
    st->redelivered = 0;
}

/* Forgets what the previous try collected. */
static void
reset_outcome(struct ab_http_call *call)
{
    buf_reset(&call->body);
    headers_clear(&call->headers);
    call->too_large = 0;
    call->header_bytes = 0;
    call->res.status = 0;
    call->res.error = NULL;
    call->res.timed_out = 0;
    if (call->stream != NULL) {
        reset_stream(call->stream);
    }
}

/* Starts one try by handing the easy handle to the multi handle; curl
 * arms its timer and the transfer begins from the loop.  Returns 0, or
 * -1 with res.error set. */
static int
start_attempt(struct ab_http_call *call)
{
    CURLMcode mc;

    reset_outcome(call);
    mc = curl_multi_add_handle(call->client->multi, call->easy);
    if (mc != CURLM_OK) {
        call->res.error = curl_multi_strerror(mc);
        return -1;
    }
    call->in_multi = 1;
    call->res.attempts++;
    return 0;
}

/* Called by complete() for a stream: an answer that reached no
 * callback yet (its retry could not be scheduled) still goes to
 * on_headers first; the body is what on_data took. */
static void
finish_stream_response(struct ab_http_call *call)
{
    struct stream_state *st = call->stream;

    if (call->res.status != 0 && !st->headers_sent && !st->aborted &&
        deliver_headers(call) < 0) {
        call->res.error = "cancelled";
    }
    call->res.body = "";
    call->res.body_len = st->delivered;
}

/* Hands the outcome to the caller, then frees the call.  The call is
 * unlinked first, so the callback no longer sees it in flight. */
static void
complete(struct ab_http_call *call)
{
    struct ab_http_response *res = &call->res;

    unlink_call(call);
    if (call->stream != NULL) {
        finish_stream_response(call);
    } else {
        res->body = call->body.data != NULL ? call->body.data : "";
        res->body_len = call->body.len;
    }
    res->headers = call->headers.items;
    res->nheaders = call->headers.len;
    res->elapsed_ms = now_ms() - call->started_ms;
    if (call->cb != NULL) {
        call->cb(res, call->arg);
    }
    call_free(call);
}

/* The `error` text for a try that ended with `rc`. */
static const char *
error_name(CURLcode rc, int too_large)
{
    if (too_large || rc == CURLE_FILESIZE_EXCEEDED) {
        return "too_large";
    }
    switch (rc) {
    case CURLE_OPERATION_TIMEDOUT:
        return "timeout";
    case CURLE_COULDNT_CONNECT:
    case CURLE_COULDNT_RESOLVE_HOST:
    case CURLE_SEND_ERROR:
    case CURLE_RECV_ERROR:
    case CURLE_GOT_NOTHING:
        return "connect";
    default:
        return curl_easy_strerror(rc);
    }
}

/* Whether `rc` means no answer came back (as opposed to a bad one). */
static int
is_no_answer(CURLcode rc, int too_large)
{
    const char *name = error_name(rc, too_large);

    return strcmp(name, "timeout") == 0 || strcmp(name, "connect") == 0;
}

/* Records status or error of the try that ended with `rc`.  A failed
 * try keeps no partial body or headers, except a stream whose headers
 * went out: it keeps the status on_headers saw.  A stream a callback
 * aborted reports "cancelled". */
static void
record_outcome(struct ab_http_call *call, CURLcode rc)
{
    struct stream_state *st = call->stream;
    long status = 0;

    call->res.timed_out = rc == CURLE_OPERATION_TIMEDOUT;
    if (rc == CURLE_OK) {
        curl_easy_getinfo(call->easy, CURLINFO_RESPONSE_CODE, &status);
        call->res.status = (int)status;
        call->res.error = NULL;
        return;
    }
    call->res.error = error_name(rc, call->too_large);
    if (st != NULL && st->aborted) {
        call->res.error = "cancelled";
    }
    if (st != NULL && st->headers_sent) {
        return;
    }
    call->res.status = 0;
    buf_reset(&call->body);
    headers_clear(&call->headers);
}

/* How long to wait before trying `call` again, or -1 to complete it
 * now.  Retry-After, when understood, wins over back-off; a wait that
 * would overrun the call's budget means completing with this answer. */
static long
retry_wait_ms(struct ab_http_call *call, CURLcode rc)
{
    const char *value;
    long long wait;

    if (!call->retry || call->res.attempts >= call->max_attempts) {
        return -1;
    }
    if (rc != CURLE_OK && !is_no_answer(rc, call->too_large)) {
        return -1;
    }
    if (!ab_http_should_retry(call->res.status)) {
        return -1;
    }
    value = headers_find(&call->headers, "retry-after");
    wait = retry_after_raw_ms(value, (long long)time(NULL));
    if (wait < 0) {
        return ab_http_backoff_ms(call->res.attempts + 1, jitter01());
    }
    if (now_ms() - call->started_ms + (double)wait > RETRY_BUDGET_MS) {
        return -1;
    }
    return (long)wait;
}

/* retry_wait_ms() for a stream: never once on_headers ran or a
 * callback aborted; for an answer dropped at its headers, the wait
 * chosen then. */
static long
stream_retry_wait_ms(struct ab_http_call *call, CURLcode rc)
{
    struct stream_state *st = call->stream;

    if (st->headers_sent || st->aborted) {
        return -1;
    }
    if (st->retry_wait >= 0) {
        return st->retry_wait;
    }
    return rc == CURLE_OK ? -1 : retry_wait_ms(call, rc);
}

/* Called by libevent when the wait before another try is over. */
static void
on_retry_timer(evutil_socket_t fd, short what, void *arg)
{
    struct ab_http_call *call = arg;

    (void)fd;
    (void)what;
    if (start_attempt(call) < 0) {
        AB_WARN(MODULE, NULL, "failed to retry HTTP call: %s", call->res.error);
        complete(call);
    }
}

/* Arms the retry timer of `call`.  Returns 0, or -1. */
static int
schedule_retry(struct ab_http_call *call, long wait_ms)
{
    struct timeval tv;

    if (call->retry_timer == NULL) {
        call->retry_timer =
            evtimer_new(call->client->base, on_retry_timer, call);
        if (call->retry_timer == NULL) {
            return -1;
        }
    }
    tv.tv_sec = wait_ms / 1000;
    tv.tv_usec = (wait_ms % 1000) * 1000;
    return evtimer_add(call->retry_timer, &tv);
}

/* Called by collect_done() when a try of `call` ended with `rc`: takes
 * the easy handle out of the multi handle (it is re-added for another
 * try) and either schedules that try or completes the call. */
static void
finish_attempt(struct ab_http_call *call, CURLcode rc)
{
    long wait;

    curl_multi_remove_handle(call->client->multi, call->easy);
    call->in_multi = 0;
    record_outcome(call, rc);
    if (call->stream != NULL) {
        wait = stream_retry_wait_ms(call, rc);
    } else {
        wait = retry_wait_ms(call, rc);
    }
    if (wait >= 0 && schedule_retry(call, wait) == 0) {
        return;
    }
    complete(call);
}

/* Called by libevent on the turn after ab_http_resume() failed (on_data
 * aborted, or curl did): takes the stream out of curl, where it would
 * hang, and completes it.  Not run if the call ended before. */
static void
on_end_soon(evutil_socket_t fd, short what, void *arg)
{
    struct ab_http_call *call = arg;

    (void)fd;
    (void)what;
    if (call->in_multi) {
        curl_multi_remove_handle(call->client->multi, call->easy);
        call->in_multi = 0;
    }
    record_outcome(call, call->stream->end_rc);
    complete(call);
}

/* ------------------------------------------------------------------ */
/* Event loop glue                                                     */
/* ------------------------------------------------------------------ */

static void
client_destroy(struct ab_http_client *client)
{
    if (client->multi != NULL) {
        curl_multi_cleanup(client->multi);
    }
    if (client->timer != NULL) {
        event_free(client->timer);
    }
    free(client);
}

/* Called after each curl_multi_socket_action(): finishes every
 * transfer curl reports done.  One message is read at a time and no
 * pointer into it is kept across finish_attempt(), because a done
 * callback may start calls or cancel others (which drops their
 * messages) or even free the client (destroyed here, once back). */
static void
collect_done(struct ab_http_client *client)
{
    CURLMsg *msg;
    int left;

    client->dispatching = 1;
    while (!client->closing &&
           (msg = curl_multi_info_read(client->multi, &left)) != NULL) {
        CURL *easy = msg->easy_handle;
        CURLcode rc = msg->data.result;
        char *priv = NULL;

        if (msg->msg != CURLMSG_DONE) {
            continue;
        }
        curl_easy_getinfo(easy, CURLINFO_PRIVATE, &priv);
        finish_attempt((struct ab_http_call *)(void *)priv, rc);
    }
    client->dispatching = 0;
    if (client->closing) {
        client_destroy(client);
    }
}

/* Lets curl act on socket `s` (or on its timeout), then collects what
 * finished.  `client` may be gone when this returns. */
static void
drive(struct ab_http_client *client, curl_socket_t s, int flags)
{
    int running;
    CURLMcode mc = curl_multi_socket_action(client->multi, s, flags, &running);

    if (mc != CURLM_OK) {
        AB_WARN(MODULE, NULL, "failed to drive transfers: %s",
                curl_multi_strerror(mc));
    }
    collect_done(client);
}

/* Called by libevent when a socket curl watches is ready. */
static void
on_socket_ready(evutil_socket_t fd, short what, void *arg)
{
    int flags = 0;

    if (what & EV_READ) {
        flags |= CURL_CSELECT_IN;
    }
    if (what & EV_WRITE) {
        flags |= CURL_CSELECT_OUT;
    }
    drive(arg, fd, flags);
}

/* Called by libevent when curl's timeout expires. */
static void
on_timeout(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    drive(arg, CURL_SOCKET_TIMEOUT, 0);
}

/* Called by curl (from curl_multi_* calls) with how long until it wants
 * on_timeout(), or -1 for never.  Must not call back into curl. */
static int
on_curl_timer(CURLM *multi, long timeout_ms, void *userp)
{
    struct ab_http_client *client = userp;
    struct timeval tv;

    (void)multi;
    if (timeout_ms < 0) {
        return evtimer_del(client->timer);
    }
    tv.tv_sec = timeout_ms / 1000;
    tv.tv_usec = (timeout_ms % 1000) * 1000;
    return evtimer_add(client->timer, &tv);
}

/* Makes `ev` (NULL the first time) watch `s` for `what`, creating it
 * and handing it to curl with curl_multi_assign() when new. */
static int
watch_socket(struct ab_http_client *client, curl_socket_t s, int what,
             struct event *ev)
{
    short flags = EV_PERSIST;

    flags |= (what & CURL_POLL_IN) ? EV_READ : 0;
    flags |= (what & CURL_POLL_OUT) ? EV_WRITE : 0;
    if (ev == NULL) {
        ev = event_new(client->base, s, flags, on_socket_ready, client);
        if (ev == NULL) {
            return -1;
        }
        if (curl_multi_assign(client->multi, s, ev) != CURLM_OK) {
            event_free(ev);
            return -1;
        }
    } else {
        event_del(ev);
        event_assign(ev, client->base, s, flags, on_socket_ready, client);
    }
    return (flags & (EV_READ | EV_WRITE)) ? event_add(ev, NULL) : 0;
}

/* Called by curl (from curl_multi_* calls) to say what to watch on
 * socket `s`.  `socketp` is the event assigned to `s` earlier, or NULL
 * the first time; it is ours, and freed on CURL_POLL_REMOVE. */
static int
on_curl_socket(CURL *easy, curl_socket_t s, int what, void *userp,
               void *socketp)
{
    struct event *ev = socketp;

    (void)easy;
    if (what == CURL_POLL_REMOVE) {
        if (ev != NULL) {
            event_free(ev);
        }
        return 0;
    }
    if (watch_socket(userp, s, what, ev) < 0) {
        AB_WARN(MODULE, NULL, "failed to watch socket: out of memory");
        return -1;
    }
    return 0;
}

/* ------------------------------------------------------------------ */
/* Public API                                                          */
/* ------------------------------------------------------------------ */

/* Idle connections kept open for reuse, across all hosts. */
#define AB_HTTP_IDLE_CONNECTIONS 256

/* Connects curl's socket and timer callbacks to `client`. */
static int
set_multi_options(struct ab_http_client *client)
{
    CURLM *multi = client->multi;
    int bad = 0;

    bad |= curl_multi_setopt(multi, CURLMOPT_SOCKETFUNCTION, on_curl_socket) !=
           CURLM_OK;
    bad |= curl_multi_setopt(multi, CURLMOPT_SOCKETDATA, (void *)client) !=
           CURLM_OK;
    bad |= curl_multi_setopt(multi, CURLMOPT_TIMERFUNCTION, on_curl_timer) !=
           CURLM_OK;
    bad |= curl_multi_setopt(multi, CURLMOPT_TIMERDATA, (void *)client) !=
           CURLM_OK;

    /* Keep idle connections to Pica for reuse: curl's default cache
     * (4 per transfer in flight) shrinks when load dips and then every
     * burst opens new connections. */
    bad |= curl_multi_setopt(multi, CURLMOPT_MAXCONNECTS,
                             (long)AB_HTTP_IDLE_CONNECTIONS) != CURLM_OK;
    return bad ? -1 : 0;
}

/* See http_client.h.  Needs curl_global_init() done by the caller; the
 * caller frees the client with ab_http_client_free(). */
struct ab_http_client *
ab_http_client_new(struct event_base *base)
{
    struct ab_http_client *client = calloc(1, sizeof(*client));

    if (client == NULL) {
        goto fail;
    }
    client->base = base;
    client->multi = curl_multi_init();
    client->timer = evtimer_new(base, on_timeout, client);
    if (client->multi == NULL || client->timer == NULL ||
        set_multi_options(client) < 0) {
        goto fail;
    }
    return client;

fail:
    AB_WARN(MODULE, NULL, "failed to create HTTP client: out of memory");
    if (client != NULL) {
        client_destroy(client);
    }
    return NULL;
}

/* See http_client.h.  Safe from inside a done callback: the client is
 * then destroyed once that callback returns. */
void
ab_http_client_free(struct ab_http_client *client)
{
    if (client == NULL) {
        return;
    }
    while (client->calls != NULL) {
        ab_http_cancel(client->calls);
    }
    if (client->dispatching) {
        client->closing = 1;
        return;
    }
    client_destroy(client);
}

/* Allocates a call for `req` with defaults applied; not yet linked. */
static struct ab_http_call *
call_new(struct ab_http_client *client, const struct ab_http_request *req,
         ab_http_done_cb cb, void *arg)
{
    struct ab_http_call *call = calloc(1, sizeof(*call));

    if (call == NULL) {
        return NULL;
    }
    call->client = client;
    call->cb = cb;
    call->arg = arg;
    call->retry = req->retry;
    call->max_attempts = req->max_attempts > 0 ? req->max_attempts : 1;
    call->max_header_bytes = req->max_response_bytes > 0
                                 ? req->max_response_bytes
                                 : DEFAULT_MAX_RESPONSE;
    call->max_bytes = call->max_header_bytes;
    return call;
}

/* Makes `call` a stream with a copy of `cbs`.  Its body is capped only
 * if the request asks.  Returns 0, or -1 when out of memory. */
static int
make_stream(struct ab_http_call *call, const struct ab_http_request *req,
            const struct ab_http_stream *cbs)
{
    struct stream_state *st = calloc(1, sizeof(*st));

    if (st == NULL) {
        return -1;
    }
    call->stream = st;
    st->cbs = *cbs;
    st->retry_wait = -1;
    st->end_soon = event_new(call->client->base, -1, 0, on_end_soon, call);
    call->max_bytes = req->max_response_bytes;
    return st->end_soon != NULL ? 0 : -1;
}

/* Starts a buffered call, or a stream if `cbs` is not NULL (then `cb`
 * is its on_done).  A refusal is logged without the URL or headers. */
static struct ab_http_call *
start_call(struct ab_http_client *client, const struct ab_http_request *req,
           const struct ab_http_stream *cbs, ab_http_done_cb cb, void *arg)
{
    struct ab_http_call *call = NULL;
    const char *why = check_request(req);

    if (why == NULL && cbs != NULL && cbs->on_data == NULL) {
        why = "no on_data callback";
    }
    if (why != NULL) {
        goto fail;
    }
    why = "out of memory";
    call = call_new(client, req, cb, arg);
    if (call == NULL || (cbs != NULL && make_stream(call, req, cbs) < 0) ||
        setup_easy(call, req) < 0) {
        goto fail;
    }
    call->started_ms = now_ms();
    if (start_attempt(call) < 0) {
        why = call->res.error;
        goto fail;
    }
    link_call(client, call);
    return call;

fail:
    AB_WARN(MODULE, NULL, "failed to start HTTP call: %s", why);
    call_free(call);
    return NULL;
}

/* See http_client.h.  A NULL method means GET.  The returned call is
 * owned by the client: it is freed after its callback or by
 * ab_http_cancel(). */
struct ab_http_call *
ab_http_start(struct ab_http_client *client, const struct ab_http_request *req,
              ab_http_done_cb cb, void *arg)
{
    return start_call(client, req, NULL, cb, arg);
}

/* See http_client.h.  Ownership as for ab_http_start(); `cbs` is
 * copied, so it may live on the caller's stack. */
struct ab_http_call *
ab_http_start_stream(struct ab_http_client *client,
                     const struct ab_http_request *req,
                     const struct ab_http_stream *cbs, void *arg)
{
    static const struct ab_http_stream none;

    if (cbs == NULL) {
        cbs = &none;
    }
    return start_call(client, req, cbs, cbs->on_done, arg);
}

/* See http_client.h.  curl passes held bytes to on_curl_stream_body()
 * from inside curl_easy_pause().  If that fails, the stream cannot go
 * on in curl; it is completed from the loop (on_end_soon), so that
 * on_done never runs inside this function. */
void
ab_http_resume(struct ab_http_call *call)
{
    struct stream_state *st;
    CURLcode rc;

    if (call == NULL || call->stream == NULL || !call->stream->paused) {
        return;
    }
    st = call->stream;
    st->paused = 0;
    rc = curl_easy_pause(call->easy, CURLPAUSE_CONT);
    if (rc == CURLE_OK && !st->aborted && !call->too_large) {
        return;
    }
    st->end_rc = rc != CURLE_OK ? rc : CURLE_WRITE_ERROR;
    event_active(st->end_soon, EV_TIMEOUT, 1);
}

/* See http_client.h.  Frees the call; its callback is never called. */
void
ab_http_cancel(struct ab_http_call *call)
{
    if (call == NULL) {
        return;
    }
    unlink_call(call);
    call_free(call);
}

/* See http_client.h. */
size_t
ab_http_inflight(const struct ab_http_client *client)
{
    return client->inflight;
}
