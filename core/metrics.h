/*
 * metrics.h - the process's counters, histograms and gauges, rendered in
 * the Prometheus text exposition format (version 0.0.4) for /metrics.
 *
 * Everything lives in process-wide tables owned by metrics.c: callers
 * pass borrowed strings, which are copied when a series is first seen
 * (a NULL label value is taken as "").
 * A label value is cut to AB_METRICS_LABEL_MAX bytes (on a UTF-8
 * boundary).  Each labelled family holds at most AB_METRICS_MAX_SERIES
 * series; a new label set past that is counted in the family's overflow
 * series, whose every label value is "other", and one warning is logged
 * per family.  Recording into an existing series allocates nothing.
 *
 * One event loop per process and no threads: nothing here is locked.
 */
#ifndef AB_METRICS_H
#define AB_METRICS_H

struct evbuffer;

#define AB_METRICS_LABEL_MAX  64  /* bytes kept of a label value */
#define AB_METRICS_MAX_SERIES 512 /* per family, besides "other" */
#define AB_METRICS_MAX_GAUGES 16  /* free gauges by name */

/* Called by the request path once per answered request: counts
 * authkit_requests_total{route,status} and observes `ms` milliseconds
 * in authkit_request_duration_seconds{route}. */
void ab_metrics_request(const char *route, int status, double ms);

/* Called once per finished outbound call: counts
 * authkit_upstream_requests_total{endpoint,status}, where status 0 (no
 * answer arrived) is rendered "error", and observes `ms` milliseconds in
 * authkit_upstream_duration_seconds{endpoint}.  `endpoint` should be a
 * template ("/v1/authkit"), never a URL with ids in it. */
void ab_metrics_upstream(const char *endpoint, int status, double ms);

/* Called when a Lua hook raises: counts authkit_hook_errors_total{hook}. */
void ab_metrics_hook_error(const char *hook);

/* Called after each plugin reload: counts authkit_reloads_total with
 * result="ok" if `ok` is non-zero, result="failed" otherwise. */
void ab_metrics_reload(int ok);

/* Called when a generation goes live: sets authkit_plugin_generation to
 * `n` and authkit_plugin_generation_live_since_seconds to the Unix time
 * it went live. */
void ab_metrics_set_generation(unsigned long n, double live_since_epoch_s);

/*
 * Sets the free gauge `name` (a Prometheus metric name such as
 * "authkit_inflight_requests") to `v`; `help` is its # HELP text, taken
 * the first time the name is seen.  Both are copied.  A name that is
 * invalid, too long (over 63 bytes), taken by a built-in family, or past
 * the AB_METRICS_MAX_GAUGES names already set is ignored with a warning.
 */
void ab_metrics_set_gauge(const char *name, const char *help, double v);

/* Called by the /metrics handler: appends every family, with # HELP and
 * # TYPE lines, to `out`.  Returns 0, or -1 (out of memory) with `out`
 * left as it was. */
int ab_metrics_render(struct evbuffer *out);

/* Forgets every series and gauge and frees their memory (tests). */
void ab_metrics_reset(void);

#endif
