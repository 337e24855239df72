/*
 * workers.c - the supervisor of worker processes.
 */
#include "workers.h"

#include <errno.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <event2/util.h>

#include "log.h"

#define MAX_WORKERS 64

static volatile sig_atomic_t got_stop, got_hup, got_child;

static void
on_signal(int sig)
{
    if (sig == SIGCHLD) {
        got_child = 1;
    } else if (sig == SIGHUP) {
        got_hup = 1;
    } else {
        got_stop = 1;
    }
}

struct worker {
    pid_t pid;
    time_t started;
};

static struct {
    struct worker w[MAX_WORKERS];
    int n;
    int (*run)(void *arg, int index);
    void *arg;
    sigset_t old_mask;
} sup;

/* Parses "ADDR:PORT" like the server does, for the reservation. */
static int
parse(const char *listen, struct sockaddr_storage *ss, int *len)
{
    const char *colon = strrchr(listen, ':');
    char buf[128];
    long port;

    if (colon == NULL ||
        snprintf(buf, sizeof(buf), "%.*s:1", (int)(colon - listen), listen) >=
            (int)sizeof(buf) ||
        evutil_parse_sockaddr_port(buf, (struct sockaddr *)ss, len) != 0) {
        return -1;
    }
    port = strtol(colon + 1, NULL, 10);
    if (ss->ss_family == AF_INET6) {
        ((struct sockaddr_in6 *)ss)->sin6_port = htons((uint16_t)port);
    } else {
        ((struct sockaddr_in *)ss)->sin_port = htons((uint16_t)port);
    }
    return 0;
}

int
ab_workers_reserve(const char *listen, char *out, size_t size, char *err,
                   size_t errlen)
{
    struct sockaddr_storage ss;
    socklen_t slen;
    int len = sizeof(ss), one = 1, fd;
    const char *colon = strrchr(listen, ':');

    if (parse(listen, &ss, &len) != 0) {
        snprintf(err, errlen, "'%s' is not an ADDR:PORT address", listen);
        return -1;
    }
    fd = socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0 ||
        setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) != 0 ||
        bind(fd, (struct sockaddr *)&ss, (socklen_t)len) != 0) {
        snprintf(err, errlen,
                 "cannot listen on %s: %s (is another "
                 "process using the port?)",
                 listen, strerror(errno));
        if (fd >= 0) {
            close(fd);
        }
        return -1;
    }
    slen = sizeof(ss);
    getsockname(fd, (struct sockaddr *)&ss, &slen);
    snprintf(out, size, "%.*s:%d", (int)(colon - listen), listen,
             ntohs(ss.ss_family == AF_INET6
                       ? ((struct sockaddr_in6 *)&ss)->sin6_port
                       : ((struct sockaddr_in *)&ss)->sin_port));
    return fd;
}

/* Forks worker `i`; the child runs and exits, the parent records it. */
static void
spawn(int i)
{
    pid_t pid = fork();

    if (pid == 0) {
        sigprocmask(SIG_SETMASK, &sup.old_mask, NULL);
        signal(SIGCHLD, SIG_DFL);
        signal(SIGHUP, SIG_DFL);
        signal(SIGTERM, SIG_DFL);
        signal(SIGINT, SIG_DFL);
        _exit(sup.run(sup.arg, i));
    }
    if (pid < 0) {
        AB_ERROR("workers", NULL, "failed to start worker %d: %s", i,
                 strerror(errno));
        return;
    }
    sup.w[i].pid = pid;
    sup.w[i].started = time(NULL);
}

static void
signal_all(int sig)
{
    for (int i = 0; i < sup.n; i++) {
        if (sup.w[i].pid > 0) {
            kill(sup.w[i].pid, sig);
        }
    }
}

/* Reaps dead workers; restarts them unless stopping.  Returns how many
 * are still running. */
static int
reap(int restart)
{
    int status, alive = 0;
    pid_t pid;

    while ((pid = waitpid(-1, &status, WNOHANG)) > 0) {
        for (int i = 0; i < sup.n; i++) {
            if (sup.w[i].pid != pid) {
                continue;
            }
            sup.w[i].pid = 0;
            if (restart) {
                AB_WARN("workers", NULL,
                        "worker %d (pid %d) died (status "
                        "%d); starting it again",
                        i, (int)pid, status);
                if (time(NULL) - sup.w[i].started < 1) {
                    sleep(1); /* a worker that dies at once: slow down */
                }
                spawn(i);
            }
        }
    }
    for (int i = 0; i < sup.n; i++) {
        alive += sup.w[i].pid > 0;
    }
    return alive;
}

static void
install_handlers(void)
{
    struct sigaction sa;
    sigset_t block;

    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGCHLD, &sa, NULL);
    sigaction(SIGHUP, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    sigemptyset(&block);
    sigaddset(&block, SIGCHLD);
    sigaddset(&block, SIGHUP);
    sigaddset(&block, SIGTERM);
    sigaddset(&block, SIGINT);
    sigprocmask(SIG_BLOCK, &block, &sup.old_mask);
}

int
ab_workers_run(int n, int (*run)(void *arg, int index), void *arg)
{
    sigset_t wait_mask;

    sup.n = n > MAX_WORKERS ? MAX_WORKERS : n;
    sup.run = run;
    sup.arg = arg;
    install_handlers();
    for (int i = 0; i < sup.n; i++) {
        spawn(i);
    }
    AB_INFO("workers", NULL, "supervising %d workers", sup.n);
    sigemptyset(&wait_mask);
    while (!got_stop) {
        sigsuspend(&wait_mask);
        if (got_hup) {
            got_hup = 0;
            signal_all(SIGHUP);
        }
        if (got_child) {
            got_child = 0;
            reap(!got_stop);
        }
    }
    AB_INFO("workers", NULL, "stopping the workers");
    signal_all(SIGTERM);
    while (reap(0) > 0) {
        sigsuspend(&wait_mask);
    }
    return 0;
}
