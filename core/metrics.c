/*
 * metrics.c - process-wide metrics in the Prometheus text format 0.0.4.
 *
 * A labelled family is a metric name, its label names and an array of
 * series found by linear search (a hash of the label values is compared
 * before the strings).  The array doubles when a new label set appears
 * and never shrinks, so recording into a known series allocates nothing.
 * Series are rendered in the order they first appeared.
 */
#include "metrics.h"

#include <event2/buffer.h>
#include <float.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"

#define NBUCKETS       13  /* finite bucket bounds; +Inf is the count */
#define GAUGE_NAME_MAX 64  /* bytes, with the NUL */
#define GAUGE_HELP_MAX 160 /* bytes, with the NUL */
#define ESCAPED_MAX    (2 * AB_METRICS_LABEL_MAX + 1)
#define LABELS_MAX     (2 * (16 + ESCAPED_MAX + 4))

static const double bucket_bounds[NBUCKETS] = {
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10};
static const char *const bucket_names[NBUCKETS] = {
    "0.001", "0.0025", "0.005", "0.01", "0.025", "0.05", "0.1",
    "0.25",  "0.5",    "1",     "2.5",  "5",     "10"};

enum family_kind { COUNTER, HISTOGRAM };

/* One label set of a family and what was recorded under it. */
struct series {
    char label[2][AB_METRICS_LABEL_MAX + 1]; /* second is "" if unused */
    uint32_t hash;
    uint64_t count;             /* counter value, or observations */
    double sum;                 /* histogram: seconds observed */
    uint64_t buckets[NBUCKETS]; /* histogram: per bucket, not cumulative */
};

struct family {
    const char *name;
    const char *help;
    enum family_kind kind;
    const char *label_names[2]; /* second is NULL for one label */
    struct series *series;
    size_t len;
    size_t cap;
    int overflow_warned;
};

enum {
    REQUESTS,
    REQUEST_SECONDS,
    UPSTREAM,
    UPSTREAM_SECONDS,
    HOOK_ERRORS,
    NFAMILIES
};

static struct family families[NFAMILIES] = {
    [REQUESTS] = {.name = "authkit_requests_total",
                  .help = "HTTP requests answered, by route and status.",
                  .kind = COUNTER,
                  .label_names = {"route", "status"}},
    [REQUEST_SECONDS] = {.name = "authkit_request_duration_seconds",
                         .help = "Time from a request's arrival to its "
                                 "answer.",
                         .kind = HISTOGRAM,
                         .label_names = {"route", NULL}},
    [UPSTREAM] = {.name = "authkit_upstream_requests_total",
                  .help = "Outbound calls finished, by endpoint and status "
                          "(\"error\" when no answer arrived).",
                  .kind = COUNTER,
                  .label_names = {"endpoint", "status"}},
    [UPSTREAM_SECONDS] = {.name = "authkit_upstream_duration_seconds",
                          .help = "Time outbound calls took, by endpoint.",
                          .kind = HISTOGRAM,
                          .label_names = {"endpoint", NULL}},
    [HOOK_ERRORS] = {.name = "authkit_hook_errors_total",
                     .help = "Errors raised by Lua hooks, by hook.",
                     .kind = COUNTER,
                     .label_names = {"hook", NULL}},
};

/* A free gauge set by name through ab_metrics_set_gauge(). */
struct gauge {
    char name[GAUGE_NAME_MAX];
    char help[GAUGE_HELP_MAX];
    double value;
};

static struct gauge gauges[AB_METRICS_MAX_GAUGES];
static size_t ngauges;
static int gauge_warned;

static uint64_t reloads_ok;
static uint64_t reloads_failed;
static int generation_set;
static unsigned long generation;
static double generation_live_since;

/* Copies at most `max` bytes of `in` (NULL reads as "") into `out`,
 * which holds max + 1; a UTF-8 sequence is never cut in two. */
static void
copy_cut(char *out, const char *in, size_t max)
{
    size_t n;

    if (in == NULL) {
        in = "";
    }
    n = strnlen(in, max + 1);
    if (n > max) {
        /* in[n] is the first byte dropped: back off a continuation. */
        n = max;
        while (n > 0 && ((unsigned char)in[n] & 0xc0) == 0x80) {
            n--;
        }
    }
    memcpy(out, in, n);
    out[n] = '\0';
}

/* FNV-1a over a NUL-terminated string, continuing from `h`. */
static uint32_t
hash_str(uint32_t h, const char *s)
{
    for (; *s != '\0'; s++) {
        h = (h ^ (unsigned char)*s) * 16777619u;
    }
    return (h ^ 0xffu) * 16777619u; /* a separator between values */
}

/* Fills `key` with the stored form of the label values `a` and `b`. */
static void
make_key(struct series *key, const char *a, const char *b)
{
    copy_cut(key->label[0], a, AB_METRICS_LABEL_MAX);
    copy_cut(key->label[1], b, AB_METRICS_LABEL_MAX);
    key->hash = hash_str(hash_str(2166136261u, key->label[0]), key->label[1]);
}

/* The series of `f` with the label values of `key`, or NULL. */
static struct series *
find_series(struct family *f, const struct series *key)
{
    for (size_t i = 0; i < f->len; i++) {
        struct series *s = &f->series[i];

        if (s->hash == key->hash && strcmp(s->label[0], key->label[0]) == 0 &&
            strcmp(s->label[1], key->label[1]) == 0) {
            return s;
        }
    }
    return NULL;
}

/* Appends a zeroed series with the labels of `key`; NULL on out of
 * memory.  Room for the overflow series is kept past the cap. */
static struct series *
add_series(struct family *f, const struct series *key)
{
    struct series *s;

    if (f->len == f->cap) {
        size_t cap = f->cap ? f->cap * 2 : 8;

        if (cap > AB_METRICS_MAX_SERIES + 1) {
            cap = AB_METRICS_MAX_SERIES + 1;
        }
        s = realloc(f->series, cap * sizeof(*s));
        if (s == NULL) {
            AB_WARN("metrics", NULL, "failed to add a series to %s: %s",
                    f->name, "out of memory");
            return NULL;
        }
        f->series = s;
        f->cap = cap;
    }
    s = &f->series[f->len++];
    memset(s, 0, sizeof(*s));
    memcpy(s->label, key->label, sizeof(s->label));
    s->hash = key->hash;
    return s;
}

/* The series of `f` for the values `a` and `b` (NULL for a family with
 * one label), created if new; the overflow series once `f` is full.
 * NULL only on out of memory. */
static struct series *
series_for(struct family *f, const char *a, const char *b)
{
    struct series key;
    struct series *s;

    make_key(&key, a, b);
    s = find_series(f, &key);
    if (s != NULL) {
        return s;
    }
    if (f->len >= AB_METRICS_MAX_SERIES) {
        if (!f->overflow_warned) {
            AB_WARN("metrics", NULL,
                    "%s has %d series; new label values are counted "
                    "as \"other\" (first was \"%s\")",
                    f->name, AB_METRICS_MAX_SERIES, key.label[0]);
            f->overflow_warned = 1;
        }
        make_key(&key, "other", f->label_names[1] ? "other" : NULL);
        s = find_series(f, &key);
        if (s != NULL) {
            return s;
        }
    }
    return add_series(f, &key);
}

/* Records one observation of `ms` milliseconds in a histogram series;
 * a negative or non-finite duration counts as 0. */
static void
observe(struct series *s, double ms)
{
    double sec = ms / 1000.0;

    if (!(sec >= 0.0 && sec <= DBL_MAX)) {
        sec = 0.0;
    }
    for (int i = 0; i < NBUCKETS; i++) {
        if (sec <= bucket_bounds[i]) {
            s->buckets[i]++;
            break;
        }
    }
    s->count++;
    s->sum += sec;
}

/* Counts one event in `counter` and observes `ms` in `histogram`. */
static void
count_and_observe(int counter, int histogram, const char *label,
                  const char *status, double ms)
{
    struct series *s = series_for(&families[counter], label, status);

    if (s != NULL) {
        s->count++;
    }
    s = series_for(&families[histogram], label, NULL);
    if (s != NULL) {
        observe(s, ms);
    }
}

void
ab_metrics_request(const char *route, int status, double ms)
{
    char code[16];

    snprintf(code, sizeof(code), "%d", status);
    count_and_observe(REQUESTS, REQUEST_SECONDS, route, code, ms);
}

void
ab_metrics_upstream(const char *endpoint, int status, double ms)
{
    char code[16];

    if (status == 0) {
        snprintf(code, sizeof(code), "error");
    } else {
        snprintf(code, sizeof(code), "%d", status);
    }
    count_and_observe(UPSTREAM, UPSTREAM_SECONDS, endpoint, code, ms);
}

void
ab_metrics_hook_error(const char *hook)
{
    struct series *s = series_for(&families[HOOK_ERRORS], hook, NULL);

    if (s != NULL) {
        s->count++;
    }
}

void
ab_metrics_reload(int ok)
{
    if (ok) {
        reloads_ok++;
    } else {
        reloads_failed++;
    }
}

void
ab_metrics_set_generation(unsigned long n, double live_since_epoch_s)
{
    generation_set = 1;
    generation = n;
    generation_live_since = live_since_epoch_s;
}

/* Non-zero if `name` matches [a-zA-Z_:][a-zA-Z0-9_:]* and fits. */
static int
valid_name(const char *name)
{
    size_t n = name ? strnlen(name, GAUGE_NAME_MAX) : 0;

    if (n == 0 || n == GAUGE_NAME_MAX || (name[0] >= '0' && name[0] <= '9')) {
        return 0;
    }
    return strspn(name, "abcdefghijklmnopqrstuvwxyz"
                        "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
                        "0123456789_:") == n;
}

/* Non-zero if `name` is, or would clash with, a built-in family. */
static int
reserved_name(const char *name)
{
    static const char *const fixed[] = {
        "authkit_reloads_total", "authkit_plugin_generation",
        "authkit_plugin_generation_live_since_seconds"};
    static const char *const suffixes[] = {"", "_bucket", "_sum", "_count"};

    for (size_t i = 0; i < sizeof(fixed) / sizeof(fixed[0]); i++) {
        if (strcmp(name, fixed[i]) == 0) {
            return 1;
        }
    }
    for (int i = 0; i < NFAMILIES; i++) {
        size_t len = strlen(families[i].name);

        for (int j = 0; j < 4; j++) {
            if (strncmp(name, families[i].name, len) == 0 &&
                strcmp(name + len, suffixes[j]) == 0) {
                return 1;
            }
        }
    }
    return 0;
}

/* The gauge called `name`, added with `help` if new; NULL (with one
 * warning per process) if the name cannot be used. */
static struct gauge *
gauge_for(const char *name, const char *help)
{
    struct gauge *g;

    for (size_t i = 0; i < ngauges; i++) {
        if (strcmp(gauges[i].name, name) == 0) {
            return &gauges[i];
        }
    }
    if (!valid_name(name) || reserved_name(name) ||
        ngauges == AB_METRICS_MAX_GAUGES) {
        if (!gauge_warned) {
            AB_WARN("metrics", NULL,
                    "failed to add gauge \"%.80s\": bad or built-in name, "
                    "or %d gauges already",
                    name ? name : "(null)", AB_METRICS_MAX_GAUGES);
            gauge_warned = 1;
        }
        return NULL;
    }
    g = &gauges[ngauges++];
    copy_cut(g->name, name, GAUGE_NAME_MAX - 1);
    copy_cut(g->help, help, GAUGE_HELP_MAX - 1);
    return g;
}

void
ab_metrics_set_gauge(const char *name, const char *help, double v)
{
    struct gauge *g;

    if (name == NULL) {
        name = "";
    }
    g = gauge_for(name, help);
    if (g != NULL) {
        g->value = v;
    }
}

void
ab_metrics_reset(void)
{
    for (int i = 0; i < NFAMILIES; i++) {
        free(families[i].series);
        families[i].series = NULL;
        families[i].len = 0;
        families[i].cap = 0;
        families[i].overflow_warned = 0;
    }
    memset(gauges, 0, sizeof(gauges));
    ngauges = 0;
    gauge_warned = 0;
    reloads_ok = 0;
    reloads_failed = 0;
    generation_set = 0;
    generation = 0;
    generation_live_since = 0.0;
}

/* Appends one formatted line to `b`; 0 or -1. */
static int add_line(struct evbuffer *b, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static int
add_line(struct evbuffer *b, const char *fmt, ...)
{
    va_list ap;
    int n;

    va_start(ap, fmt);
    n = evbuffer_add_vprintf(b, fmt, ap);
    va_end(ap);
    return n < 0 ? -1 : 0;
}

/* Writes `v` as the format reads floats: +Inf, -Inf, NaN, or the
 * shorter of %.15g and %.17g that reads back as the same number. */
static void
format_value(double v, char *out, size_t size)
{
    if (v != v) {
        snprintf(out, size, "NaN");
    } else if (v > DBL_MAX) {
        snprintf(out, size, "+Inf");
    } else if (v < -DBL_MAX) {
        snprintf(out, size, "-Inf");
    } else {
        snprintf(out, size, "%.15g", v);
        if (strtod(out, NULL) != v) {
            snprintf(out, size, "%.17g", v);
        }
    }
}

/* Copies `in` to `out` (`size` bytes) with backslash and newline
 * escaped, and the double quote too if `quote`: a label value when set,
 * a # HELP text when not.  `size` of twice the input plus one fits all.
 */
static void
escape(const char *in, char *out, size_t size, int quote)
{
    size_t o = 0;

    for (; *in != '\0' && o + 3 <= size; in++) {
        if (*in == '\\' || (quote && *in == '"')) {
            out[o++] = '\\';
            out[o++] = *in;
        } else if (*in == '\n') {
            out[o++] = '\\';
            out[o++] = 'n';
        } else {
            out[o++] = *in;
        }
    }
    out[o] = '\0';
}

/* Appends the # HELP and # TYPE lines of a family. */
static int
render_header(struct evbuffer *b, const char *name, const char *help,
              const char *type)
{
    char text[2 * GAUGE_HELP_MAX];

    escape(help, text, sizeof(text), 0);
    return add_line(b, "# HELP %s %s\n# TYPE %s %s\n", name, text, name, type);
}

/* Writes `route="x",status="200"` (no braces) for a series of `f`. */
static void
format_labels(const struct family *f, const struct series *s, char *out,
              size_t size)
{
    char a[ESCAPED_MAX], b[ESCAPED_MAX];

    escape(s->label[0], a, sizeof(a), 1);
    if (f->label_names[1] == NULL) {
        snprintf(out, size, "%s=\"%s\"", f->label_names[0], a);
        return;
    }
    escape(s->label[1], b, sizeof(b), 1);
    snprintf(out, size, "%s=\"%s\",%s=\"%s\"", f->label_names[0], a,
             f->label_names[1], b);
}

/* Appends the _bucket lines (cumulative), _sum and _count of `s`. */
static int
render_histogram(struct evbuffer *b, const struct family *f,
                 const struct series *s, const char *labels)
{
    uint64_t below = 0;
    char sum[32];
    int rc = 0;

    for (int i = 0; i < NBUCKETS; i++) {
        below += s->buckets[i];
        rc |= add_line(b, "%s_bucket{%s,le=\"%s\"} %" PRIu64 "\n", f->name,
                       labels, bucket_names[i], below);
    }
    rc |= add_line(b, "%s_bucket{%s,le=\"+Inf\"} %" PRIu64 "\n", f->name,
                   labels, s->count);
    format_value(s->sum, sum, sizeof(sum));
    rc |= add_line(b, "%s_sum{%s} %s\n", f->name, labels, sum);
    rc |= add_line(b, "%s_count{%s} %" PRIu64 "\n", f->name, labels, s->count);
    return rc;
}

/* Appends a labelled family: its header, then every series. */
static int
render_family(struct evbuffer *b, const struct family *f)
{
    char labels[LABELS_MAX];
    int rc;

    rc = render_header(b, f->name, f->help,
                       f->kind == COUNTER ? "counter" : "histogram");
    for (size_t i = 0; i < f->len && rc == 0; i++) {
        const struct series *s = &f->series[i];

        format_labels(f, s, labels, sizeof(labels));
        if (f->kind == COUNTER) {
            rc = add_line(b, "%s{%s} %" PRIu64 "\n", f->name, labels, s->count);
        } else {
            rc = render_histogram(b, f, s, labels);
        }
    }
    return rc;
}

/* Appends the reload counter and the generation gauges; the gauges
 * have a sample only once a generation went live. */
static int
render_lifecycle(struct evbuffer *b)
{
    const char *gen = "authkit_plugin_generation";
    const char *since = "authkit_plugin_generation_live_since_seconds";
    char when[32];
    int rc;

    rc = render_header(b, "authkit_reloads_total", "Plugin reloads, by result.",
                       "counter");
    rc |= add_line(b,
                   "authkit_reloads_total{result=\"ok\"} %" PRIu64 "\n"
                   "authkit_reloads_total{result=\"failed\"} %" PRIu64 "\n",
                   reloads_ok, reloads_failed);
    rc |=
        render_header(b, gen, "Number of the live plugin generation.", "gauge");
    if (generation_set) {
        rc |= add_line(b, "%s %lu\n", gen, generation);
    }
    rc |= render_header(
        b, since, "Unix time at which the live plugin generation went live.",
        "gauge");
    if (generation_set) {
        format_value(generation_live_since, when, sizeof(when));
        rc |= add_line(b, "%s %s\n", since, when);
    }
    return rc;
}

/* Appends the free gauges, in the order they were first set. */
static int
render_gauges(struct evbuffer *b)
{
    char value[32];
    int rc = 0;

    for (size_t i = 0; i < ngauges && rc == 0; i++) {
        format_value(gauges[i].value, value, sizeof(value));
        rc = render_header(b, gauges[i].name, gauges[i].help, "gauge");
        rc |= add_line(b, "%s %s\n", gauges[i].name, value);
    }
    return rc;
}

int
ab_metrics_render(struct evbuffer *out)
{
    struct evbuffer *b = evbuffer_new();
    int rc = 0;

    if (b == NULL) {
        return -1;
    }

    /* Rendered aside first, so that a failure leaves `out` untouched. */
    for (int i = 0; i < NFAMILIES && rc == 0; i++) {
        rc = render_family(b, &families[i]);
    }
    if (rc == 0) {
        rc = render_lifecycle(b);
    }
    if (rc == 0) {
        rc = render_gauges(b);
    }
    if (rc == 0) {
        rc = evbuffer_add_buffer(out, b);
    }
    evbuffer_free(b);
    return rc == 0 ? 0 : -1;
}
