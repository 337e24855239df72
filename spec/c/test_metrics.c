/*
 * test_metrics.c - unit tests of core/metrics.c: the rendered text,
 * line by line, for counters, histograms, gauges, escaping, the label
 * cut and the cardinality cap.
 *
 * No framework: CHECK() records a failure and goes on; the last line is
 * "N passed, N failed" and the exit status is non-zero on any failure.
 */
#include <event2/buffer.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "log.h"
#include "metrics.h"

static int passed, failed;

#define CHECK(cond)                                                            \
    do {                                                                       \
        if (cond) {                                                            \
            passed++;                                                          \
        } else {                                                               \
            failed++;                                                          \
            fprintf(stderr, "%s:%d: CHECK(%s) failed\n", __FILE__, __LINE__,   \
                    #cond);                                                    \
        }                                                                      \
    } while (0)

static char rendered[1 << 20];
static char captured[16384];
static FILE *capture_file;
static int saved_stderr = -1;

/* Renders every metric into `rendered`; returns it. */
static const char *
render(void)
{
    struct evbuffer *b = evbuffer_new();
    size_t len;

    rendered[0] = '\0';
    if (b == NULL || ab_metrics_render(b) != 0) {
        evbuffer_free(b);
        return rendered;
    }
    len = evbuffer_get_length(b);
    if (len >= sizeof(rendered)) {
        len = sizeof(rendered) - 1;
    }
    evbuffer_remove(b, rendered, len);
    rendered[len] = '\0';
    evbuffer_free(b);
    return rendered;
}

/* Position of `line` as a whole line of `text`, or NULL. */
static const char *
find_line(const char *text, const char *line)
{
    size_t len = strlen(line);

    for (const char *p = text; (p = strstr(p, line)) != NULL; p++) {
        if ((p == text || p[-1] == '\n') && p[len] == '\n') {
            return p;
        }
    }
    return NULL;
}

static int
has_line(const char *text, const char *line)
{
    return find_line(text, line) != NULL;
}

/* Number of lines of `text` starting with `prefix`. */
static int
count_lines(const char *text, const char *prefix)
{
    size_t len = strlen(prefix);
    const char *p = text;
    int n = 0;

    while (*p != '\0') {
        const char *nl = strchr(p, '\n');

        n += strncmp(p, prefix, len) == 0;
        if (nl == NULL) {
            break;
        }
        p = nl + 1;
    }
    return n;
}

/* Non-zero if every line is a comment or "name[{labels}] value" with a
 * number for a value, and the text ends with a newline. */
static int
well_formed(const char *text)
{
    char line[1024];

    for (const char *p = text; *p != '\0';) {
        const char *nl = strchr(p, '\n');
        const char *sp;
        char *end;

        if (nl == NULL || (size_t)(nl - p) >= sizeof(line)) {
            return 0;
        }
        memcpy(line, p, (size_t)(nl - p));
        line[nl - p] = '\0';
        p = nl + 1;
        if (strncmp(line, "# HELP ", 7) == 0 ||
            strncmp(line, "# TYPE ", 7) == 0) {
            continue;
        }
        sp = strrchr(line, ' ');
        if (sp == NULL || sp == line) {
            return 0;
        }
        strtod(sp + 1, &end);
        if (*end != '\0' || end == sp + 1) {
            return 0;
        }
    }
    return 1;
}

/* Sends stderr (the log) to a temporary file until capture_end(). */
static void
capture_begin(void)
{
    fflush(stderr);
    capture_file = tmpfile();
    saved_stderr = dup(2);
    if (capture_file != NULL && saved_stderr >= 0) {
        dup2(fileno(capture_file), 2);
    }
}

/* Restores stderr; returns what was logged meanwhile. */
static const char *
capture_end(void)
{
    size_t n = 0;

    fflush(stderr);
    if (saved_stderr >= 0) {
        dup2(saved_stderr, 2);
        close(saved_stderr);
        saved_stderr = -1;
    }
    if (capture_file != NULL) {
        rewind(capture_file);
        n = fread(captured, 1, sizeof(captured) - 1, capture_file);
        fclose(capture_file);
        capture_file = NULL;
    }
    captured[n] = '\0';
    return captured;
}

static void
test_empty_families_have_help_and_type(void)
{
    const char *t;

    ab_metrics_reset();
    t = render();
    CHECK(well_formed(t));
    CHECK(has_line(t, "# HELP authkit_requests_total HTTP requests answered, "
                      "by route and status."));
    CHECK(has_line(t, "# TYPE authkit_requests_total counter"));
    CHECK(has_line(t, "# TYPE authkit_request_duration_seconds histogram"));
    CHECK(has_line(t, "# TYPE authkit_upstream_requests_total counter"));
    CHECK(has_line(t, "# TYPE authkit_upstream_duration_seconds histogram"));
    CHECK(has_line(t, "# TYPE authkit_hook_errors_total counter"));
    CHECK(has_line(t, "# TYPE authkit_plugin_generation gauge"));
    CHECK(has_line(t, "authkit_reloads_total{result=\"ok\"} 0"));
    CHECK(has_line(t, "authkit_reloads_total{result=\"failed\"} 0"));
    CHECK(count_lines(t, "authkit_requests_total{") == 0);
    CHECK(count_lines(t, "authkit_plugin_generation ") == 0);
}

static void
test_request_counts_by_route_and_status(void)
{
    const char *t;

    ab_metrics_reset();
    ab_metrics_request("connect", 200, 12.0);
    ab_metrics_request("connect", 200, 3.0);
    ab_metrics_request("connect", 500, 3.0);
    ab_metrics_request("token", 200, 1.0);
    t = render();
    CHECK(well_formed(t));
    CHECK(has_line(
        t, "authkit_requests_total{route=\"connect\",status=\"200\"} 2"));
    CHECK(has_line(
        t, "authkit_requests_total{route=\"connect\",status=\"500\"} 1"));
    CHECK(has_line(t,
                   "authkit_requests_total{route=\"token\",status=\"200\"} 1"));
    CHECK(count_lines(t, "authkit_requests_total{") == 3);
    CHECK(has_line(t, "authkit_request_duration_seconds_count"
                      "{route=\"connect\"} 3"));
    CHECK(count_lines(t, "# TYPE authkit_requests_total ") == 1);
}

/* The value of the sample `name` (with its labels), or -1 if absent. */
static double
sample(const char *text, const char *name)
{
    char want[256];
    const char *p;

    snprintf(want, sizeof(want), "\n%s ", name);
    p = strstr(text, want);
    return p ? strtod(p + strlen(want), NULL) : -1.0;
}

static void
test_histogram_buckets_are_cumulative(void)
{
    static const char *const le[] = {
        "0.001", "0.0025", "0.005", "0.01", "0.025", "0.05", "0.1",
        "0.25",  "0.5",    "1",     "2.5",  "5",     "10",   "+Inf"};
    static const int want[] = {2, 2, 2, 3, 3, 3, 3, 3, 4, 4, 4, 4, 4, 5};
    const char *t, *prev = NULL;
    char line[256];
    double sum;

    ab_metrics_reset();
    ab_metrics_request("r", 200, 0.5);
    ab_metrics_request("r", 200, 1.0); /* exactly on the 0.001 bound */
    ab_metrics_request("r", 200, 7.0);
    ab_metrics_request("r", 200, 300.0);
    ab_metrics_request("r", 200, 20000.0);
    t = render();
    for (int i = 0; i < 14; i++) {
        const char *at;

        snprintf(line, sizeof(line),
                 "authkit_request_duration_seconds_bucket"
                 "{route=\"r\",le=\"%s\"} %d",
                 le[i], want[i]);
        at = find_line(t, line);
        CHECK(at != NULL);
        CHECK(at == NULL || prev == NULL || at > prev); /* in order */
        prev = at ? at : prev;
    }
    CHECK(has_line(t, "authkit_request_duration_seconds_count"
                      "{route=\"r\"} 5"));
    sum = sample(t, "authkit_request_duration_seconds_sum{route=\"r\"}");
    CHECK(sum > 20.30849 && sum < 20.30851);
}

static void
test_upstream_status_zero_is_error(void)
{
    const char *t;

    ab_metrics_reset();
    ab_metrics_upstream("/v1/authkit", 0, 100.0);
    ab_metrics_upstream("/v1/authkit", 201, 40.0);
    t = render();
    CHECK(well_formed(t));
    CHECK(has_line(t, "authkit_upstream_requests_total"
                      "{endpoint=\"/v1/authkit\",status=\"error\"} 1"));
    CHECK(has_line(t, "authkit_upstream_requests_total"
                      "{endpoint=\"/v1/authkit\",status=\"201\"} 1"));
    CHECK(has_line(t, "authkit_upstream_duration_seconds_bucket"
                      "{endpoint=\"/v1/authkit\",le=\"0.05\"} 1"));
    CHECK(has_line(t, "authkit_upstream_duration_seconds_bucket"
                      "{endpoint=\"/v1/authkit\",le=\"0.1\"} 2"));
}

static void
test_label_values_are_escaped(void)
{
    const char *t;

    ab_metrics_reset();
    ab_metrics_hook_error("a\\b\"c\nd");
    t = render();
    CHECK(well_formed(t));
    CHECK(has_line(t, "authkit_hook_errors_total{hook=\"a\\\\b\\\"c\\nd\"} 1"));
}

static void
test_label_values_are_cut_at_64_bytes(void)
{
    char long_value[101], utf8[70], line[256];
    const char *t;

    memset(long_value, 'x', 100);
    long_value[100] = '\0';
    memset(utf8, 'y', 63);
    memcpy(utf8 + 63, "\xc3\xa9z", 4); /* e-acute across byte 64 */

    ab_metrics_reset();
    ab_metrics_hook_error(long_value);
    ab_metrics_hook_error(long_value); /* same series once cut */
    ab_metrics_hook_error(utf8);
    t = render();
    snprintf(line, sizeof(line), "authkit_hook_errors_total{hook=\"%.64s\"} 2",
             long_value);
    CHECK(has_line(t, line));
    snprintf(line, sizeof(line), "authkit_hook_errors_total{hook=\"%.63s\"} 1",
             utf8);
    CHECK(has_line(t, line));
}

static void
test_cardinality_cap_counts_into_other(void)
{
    char name[32];
    const char *t, *log;

    ab_metrics_reset();
    capture_begin();
    for (int i = 0; i < 600; i++) {
        snprintf(name, sizeof(name), "hook-%d", i);
        ab_metrics_hook_error(name);
        snprintf(name, sizeof(name), "route-%d", i);
        ab_metrics_request(name, 200, 1.0);
    }
    ab_metrics_hook_error("hook-0"); /* a known series still counts */
    log = capture_end();
    t = render();
    CHECK(well_formed(t));
    CHECK(count_lines(t, "authkit_hook_errors_total{") == 513);
    CHECK(has_line(t, "authkit_hook_errors_total{hook=\"hook-511\"} 1"));
    CHECK(!has_line(t, "authkit_hook_errors_total{hook=\"hook-512\"} 1"));
    CHECK(has_line(t, "authkit_hook_errors_total{hook=\"other\"} 88"));
    CHECK(has_line(t, "authkit_hook_errors_total{hook=\"hook-0\"} 2"));
    CHECK(has_line(t, "authkit_requests_total"
                      "{route=\"other\",status=\"other\"} 88"));
    CHECK(has_line(t, "authkit_request_duration_seconds_count"
                      "{route=\"other\"} 88"));
    /* One warning per family that overflowed: hooks, requests, and
     * request durations. */
    CHECK(count_lines(log, "") == 3);
    CHECK(strstr(log, "level=warn module=metrics") != NULL);
    CHECK(strstr(log, "authkit_hook_errors_total has 512 series") != NULL);
}

static void
test_reloads_and_generation(void)
{
    const char *t;

    ab_metrics_reset();
    ab_metrics_reload(1);
    ab_metrics_reload(1);
    ab_metrics_reload(0);
    ab_metrics_set_generation(7, 1764768000.5);
    t = render();
    CHECK(well_formed(t));
    CHECK(has_line(t, "authkit_reloads_total{result=\"ok\"} 2"));
    CHECK(has_line(t, "authkit_reloads_total{result=\"failed\"} 1"));
    CHECK(has_line(t, "authkit_plugin_generation 7"));
    CHECK(has_line(
        t, "authkit_plugin_generation_live_since_seconds 1764768000.5"));
}

static void
test_free_gauges_by_name(void)
{
    char name[32];
    const char *t, *log;

    ab_metrics_reset();
    ab_metrics_set_gauge("authkit_inflight_requests", "Requests in flight.", 3);
    ab_metrics_set_gauge("authkit_inflight_requests", "Ignored help.", 5);
    ab_metrics_set_gauge("authkit_lua_memory_bytes", "Lua heap.", 1048576);
    capture_begin();
    ab_metrics_set_gauge("bad name", "x", 1);
    ab_metrics_set_gauge("authkit_requests_total", "x", 1);
    for (int i = 0; i < 20; i++) {
        snprintf(name, sizeof(name), "g_%d", i);
        ab_metrics_set_gauge(name, "A gauge.", i);
    }
    log = capture_end();
    t = render();
    CHECK(well_formed(t));
    CHECK(has_line(t, "# HELP authkit_inflight_requests Requests in flight."));
    CHECK(has_line(t, "# TYPE authkit_inflight_requests gauge"));
    CHECK(has_line(t, "authkit_inflight_requests 5"));
    CHECK(count_lines(t, "authkit_inflight_requests ") == 1);
    CHECK(has_line(t, "authkit_lua_memory_bytes 1048576"));
    CHECK(count_lines(t, "# TYPE authkit_requests_total ") == 1);
    CHECK(count_lines(t, "bad name") == 0);
    CHECK(has_line(t, "g_13 13"));
    CHECK(!has_line(t, "g_14 14")); /* 16 names in all */
    CHECK(count_lines(log, "") == 1);
}

static void
test_render_appends_and_reset_forgets(void)
{
    struct evbuffer *b = evbuffer_new();
    char head[8] = {0};

    ab_metrics_reset();
    ab_metrics_hook_error("h");
    evbuffer_add(b, "x\n", 2);
    CHECK(ab_metrics_render(b) == 0);
    evbuffer_copyout(b, head, 7);
    CHECK(strcmp(head, "x\n# HEL") == 0);
    evbuffer_free(b);
    ab_metrics_reset();
    CHECK(count_lines(render(), "authkit_hook_errors_total{") == 0);
}

int
main(void)
{
    test_empty_families_have_help_and_type();
    test_request_counts_by_route_and_status();
    test_histogram_buckets_are_cumulative();
    test_upstream_status_zero_is_error();
    test_label_values_are_escaped();
    test_label_values_are_cut_at_64_bytes();
    test_cardinality_cap_counts_into_other();
    test_reloads_and_generation();
    test_free_gauges_by_name();
    test_render_appends_and_reset_forgets();
    ab_metrics_reset();
    printf("%d passed, %d failed\n", passed, failed);
    return failed ? 1 : 0;
}
