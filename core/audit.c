/*
 * audit.c - a queue of lines and the thread that writes them.
 *
 * The loop appends to `pending` under the mutex and signals; the writer
 * thread swaps `pending` for an empty buffer and writes the full one
 * outside the lock, so neither side waits on the other's I/O.
 */
#include "audit.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "log.h"

#define MAX_QUEUED ((size_t)64 << 20)

struct buffer {
    char *data;
    size_t len, cap;
};

static struct {
    int fd;
    int running;
    int stopping;
    pthread_t thread;
    pthread_mutex_t lock;
    pthread_cond_t wake;
    struct buffer pending;
    unsigned long dropped;
} audit = {
    -1,           0, 0, 0, PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER,
    {NULL, 0, 0}, 0};

/* Appends to `b`, growing it; -1 on out of memory. */
static int
append(struct buffer *b, const char *s, size_t len)
{
    if (b->len + len > b->cap) {
        size_t cap = b->cap ? b->cap : 4096;
        char *p;

        while (cap < b->len + len) {
            cap *= 2;
        }
        p = realloc(b->data, cap);
        if (p == NULL) {
            return -1;
        }
        b->data = p;
        b->cap = cap;
    }
    memcpy(b->data + b->len, s, len);
    b->len += len;
    return 0;
}

/* Writes all of `b` to the log, retrying short writes. */
static void
write_all(const struct buffer *b)
{
    size_t off = 0;

    while (off < b->len) {
        ssize_t n = write(audit.fd, b->data + off, b->len - off);
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n <= 0) {
            AB_WARN("audit", NULL, "failed to write the audit log: %s",
                    strerror(errno));
            return;
        }
        off += (size_t)n;
    }
}

/* The writer thread: waits for lines, writes them, until stopped. */
static void *
writer(void *arg)
{
    struct buffer mine = {NULL, 0, 0};

    pthread_mutex_lock(&audit.lock);
    for (;;) {
        while (audit.pending.len == 0 && !audit.stopping) {
            pthread_cond_wait(&audit.wake, &audit.lock);
        }
        if (audit.pending.len == 0 && audit.stopping) {
            break;
        }
        struct buffer full = audit.pending;
        audit.pending = mine;
        pthread_mutex_unlock(&audit.lock);
        write_all(&full);
        full.len = 0;
        mine = full;
        pthread_mutex_lock(&audit.lock);
    }
    pthread_mutex_unlock(&audit.lock);
    free(mine.data);
    return NULL;
}

int
ab_audit_open(const char *where, char *err, size_t errlen)
{
    if (where[0] == '\0') {
        return 0;
    }
    audit.fd =
        strcmp(where, "-") == 0
            ? STDOUT_FILENO
            : open(where, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0600);
    if (audit.fd < 0) {
        snprintf(err, errlen, "cannot open the audit log %s: %s", where,
                 strerror(errno));
        return -1;
    }
    if (pthread_create(&audit.thread, NULL, writer, NULL) != 0) {
        snprintf(err, errlen, "cannot start the audit log writer");
        return -1;
    }
    audit.running = 1;
    return 0;
}

void
ab_audit_write(const char *line, size_t len)
{
    if (!audit.running) {
        return;
    }
    pthread_mutex_lock(&audit.lock);
    if (audit.pending.len + len + 1 > MAX_QUEUED ||
        append(&audit.pending, line, len) != 0 ||
        append(&audit.pending, "\n", 1) != 0) {
        audit.dropped++;
    }
    pthread_cond_signal(&audit.wake);
    pthread_mutex_unlock(&audit.lock);
}

unsigned long
ab_audit_dropped(void)
{
    return audit.dropped;
}

void
ab_audit_close(void)
{
    if (!audit.running) {
        return;
    }
    pthread_mutex_lock(&audit.lock);
    audit.stopping = 1;
    pthread_cond_signal(&audit.wake);
    pthread_mutex_unlock(&audit.lock);
    pthread_join(audit.thread, NULL);
    if (audit.fd != STDOUT_FILENO) {
        close(audit.fd);
    }
    free(audit.pending.data);
    audit.pending = (struct buffer){NULL, 0, 0};
    audit.running = 0;
}
