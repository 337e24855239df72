/*
 * generations.h - the life of the API server's plugin generations:
 * building a new one on a change (inotify, SIGHUP, POST /admin/reload),
 * swapping it in only if it loads and passes its selftests, and keeping
 * the history the admin endpoints and metrics show.
 */
#ifndef AB_GENERATIONS_H
#define AB_GENERATIONS_H

#include <stddef.h>

struct ab_host;
struct ab_server;
struct ab_watcher;

struct ab_generations {
    struct ab_host *host;       /* borrowed */
    struct ab_server *api;      /* borrowed; its gen is the live one */
    struct ab_watcher *watcher; /* owned; NULL if not watching */
    unsigned long last_number;  /* of the newest generation built */
    unsigned long reloads_ok;
    unsigned long reloads_failed;
    double last_failure_at; /* seconds since the epoch, or 0 */
    char last_error[2048];  /* file:line: message of that failure */
};

/*
 * Builds the first generation for `api` (NULL with the reason in `err`
 * on failure) and, when `watch` is set, starts watching the plugins
 * directory.  Returns 0 or -1.
 */
int ab_generations_start(struct ab_generations *g, struct ab_host *host,
                         struct ab_server *api, int watch, char *err,
                         size_t errlen);

/*
 * Builds a new generation and makes it live if it loads; the old one
 * serves on if not, and goes on serving the requests that started on
 * it either way.  Returns 0, or -1 with the reason (file and line) in
 * `err`.  Called on SIGHUP, POST /admin/reload and file changes.
 */
int ab_generations_reload(struct ab_generations *g, char *err, size_t errlen);

/* Stops watching. */
void ab_generations_stop(struct ab_generations *g);

#endif
