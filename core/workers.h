/*
 * workers.h - several worker processes on one port (SO_REUSEPORT), each
 * with its own event loop, Lua states and watcher, like nginx workers,
 * under a supervisor that restarts a worker that dies and stops them
 * all cleanly on SIGTERM.
 */
#ifndef AB_WORKERS_H
#define AB_WORKERS_H

#include <stddef.h>

/*
 * Reserves `listen` ("ADDR:PORT", port 0 for a free one) for the
 * workers: binds a socket with SO_REUSEPORT but does not listen on it,
 * so the port stays ours while workers come and go.  Writes the
 * address with its real port to `out`.  Returns the socket, or -1 with
 * the reason in `err`.
 */
int ab_workers_reserve(const char *listen, char *out, size_t size, char *err,
                       size_t errlen);

/*
 * Forks `n` workers running run(arg, index) (its return value is the
 * worker's exit status) and supervises them until SIGTERM or SIGINT,
 * which it passes on and then waits for every worker to finish its
 * requests.  SIGHUP is passed on too (each worker reloads its plugins).
 * A worker that dies is started again, at most once a second.  Returns
 * the supervisor's exit status.
 */
int ab_workers_run(int n, int (*run)(void *arg, int index), void *arg);

#endif
