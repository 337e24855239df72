/*
 * watcher.c - the plugin directory's inotify watch and its debounce.
 *
 * One inotify instance per watcher, non-blocking, read from a libevent
 * event; each counted event re-arms a one-shot timer, whose expiry
 * calls the host's callback.
 */
#include "watcher.h"

#include <errno.h>
#include <event2/event.h>
#include <stdlib.h>
#include <string.h>
#include <sys/inotify.h>
#include <sys/time.h>
#include <unistd.h>

#include "log.h"

#define WATCH_MASK                                                             \
    (IN_CREATE | IN_DELETE | IN_MODIFY | IN_CLOSE_WRITE | IN_MOVED_TO |        \
     IN_MOVED_FROM | IN_ATTRIB | IN_DELETE_SELF | IN_MOVE_SELF | IN_ONLYDIR)

struct ab_watcher {
    int fd;                 /* the inotify instance */
    int wd;                 /* the directory's watch; -1 once lost */
    struct event *readable; /* fd has events to read */
    struct event *debounce; /* one-shot, re-armed by each event */
    struct timeval delay;   /* the debounce */
    void (*on_change)(void *arg);
    void *arg;
    char *dir; /* owned copy, for log lines */
};

/* Non-zero if a file called `name` is a plugin: "*.lua" but not a dot
 * file (".x.lua.swp", ".#x.lua"); "x.lua~" and "x.lua.swp" fail the
 * suffix test already. */
static int
plugin_name(const char *name)
{
    size_t len = strlen(name);

    return name[0] != '.' && len > 4 && strcmp(name + len - 4, ".lua") == 0;
}

/* Called when the directory itself was deleted, moved away or
 * unmounted: warns once and drops the watch.  Returns 1 the first time
 * (the host must hear of it), 0 after. */
static int
lose_directory(struct ab_watcher *w, const char *how)
{
    if (w->wd < 0) {
        return 0;
    }
    AB_WARN("watcher", NULL,
            "failed to keep watching %s: the directory was %s; plugin "
            "changes are no longer noticed",
            w->dir, how);

    /* For a move the watch would follow the directory elsewhere; for a
     * deletion the kernel drops it already and this fails harmlessly. */
    inotify_rm_watch(w->fd, w->wd);
    w->wd = -1;
    return 1;
}

/* Non-zero if `ev` is a change the host must hear of. */
static int
counts(struct ab_watcher *w, const struct inotify_event *ev)
{
    if (ev->mask & IN_Q_OVERFLOW) {
        return w->wd >= 0; /* events were lost: assume one mattered */
    }
    if (ev->wd != w->wd) {
        return 0; /* left over from a watch already dropped */
    }
    if (ev->mask & IN_DELETE_SELF) {
        return lose_directory(w, "deleted");
    }
    if (ev->mask & IN_MOVE_SELF) {
        return lose_directory(w, "moved");
    }
    if (ev->mask & (IN_UNMOUNT | IN_IGNORED)) {
        return lose_directory(w, "unmounted");
    }
    if (ev->len == 0 || (ev->mask & IN_ISDIR)) {
        return 0;
    }
    return plugin_name(ev->name);
}

/* Walks the events read into `buf`; non-zero if one of them counts. */
static int
scan_events(struct ab_watcher *w, const char *buf, size_t len)
{
    size_t off = 0;
    int changed = 0;

    while (off + sizeof(struct inotify_event) <= len) {
        const struct inotify_event *ev =
            (const struct inotify_event *)(const void *)(buf + off);

        changed |= counts(w, ev);
        off += sizeof(*ev) + ev->len;
    }
    return changed;
}

/* Called by libevent when the inotify fd is readable: drains it and
 * re-arms the debounce if anything counted. */
static void
on_readable(evutil_socket_t fd, short what, void *arg)
{
    struct ab_watcher *w = arg;
    char buf[4096] __attribute__((aligned(__alignof__(struct inotify_event))));
    int changed = 0;
    ssize_t n;

    (void)what;
    for (;;) {
        n = read(fd, buf, sizeof(buf));
        if (n > 0) {
            changed |= scan_events(w, buf, (size_t)n);
        } else if (n < 0 && errno == EINTR) {
            continue;
        } else {
            break;
        }
    }
    if (n < 0 && errno != EAGAIN) {
        /* Reading again would fail the same way at every turn. */
        AB_WARN("watcher", NULL, "failed to read events of %s: %s", w->dir,
                strerror(errno));
        event_del(w->readable);
    }
    if (changed) {
        event_add(w->debounce, &w->delay);
    }
}

/* Called by libevent once the directory has been quiet for the
 * debounce: tells the host, which may free the watcher. */
static void
on_debounce(evutil_socket_t fd, short what, void *arg)
{
    struct ab_watcher *w = arg;

    (void)fd;
    (void)what;
    w->on_change(w->arg);
}

/* Opens the inotify instance and watches the directory; 0 or -1
 * (logged). */
static int
open_watch(struct ab_watcher *w)
{
    const char *hint = "";

    w->fd = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
    if (w->fd >= 0) {
        w->wd = inotify_add_watch(w->fd, w->dir, WATCH_MASK);
    }
    if (w->fd >= 0 && w->wd >= 0) {
        return 0;
    }
    if (errno == ENOSPC || errno == EMFILE) {
        hint = " (raise fs.inotify.max_user_watches or "
               "fs.inotify.max_user_instances)";
    }
    AB_WARN("watcher", NULL, "failed to watch %s: %s%s", w->dir,
            strerror(errno), hint);
    return -1;
}

/* Creates the read event and the debounce timer on `base`; 0 or -1
 * (logged). */
static int
add_events(struct ab_watcher *w, struct event_base *base)
{
    w->readable = event_new(base, w->fd, EV_READ | EV_PERSIST, on_readable, w);
    w->debounce = evtimer_new(base, on_debounce, w);
    if (w->readable == NULL || w->debounce == NULL ||
        event_add(w->readable, NULL) != 0) {
        AB_WARN("watcher", NULL, "failed to watch %s: %s", w->dir,
                "cannot add events to the loop");
        return -1;
    }
    return 0;
}

struct ab_watcher *
ab_watcher_new(struct event_base *base, const char *dir, long debounce_ms,
               void (*on_change)(void *arg), void *arg)
{
    struct ab_watcher *w;

    if (base == NULL || dir == NULL || on_change == NULL || debounce_ms < 0) {
        AB_WARN("watcher", NULL, "failed to watch %s: %s", dir ? dir : "(null)",
                "bad arguments");
        return NULL;
    }
    w = calloc(1, sizeof(*w));
    if (w == NULL || (w->dir = strdup(dir)) == NULL) {
        AB_WARN("watcher", NULL, "failed to watch %s: %s", dir,
                "out of memory");
        free(w);
        return NULL;
    }
    w->fd = -1;
    w->wd = -1;
    w->on_change = on_change;
    w->arg = arg;
    w->delay.tv_sec = debounce_ms / 1000;
    w->delay.tv_usec = (debounce_ms % 1000) * 1000;
    if (open_watch(w) != 0 || add_events(w, base) != 0) {
        ab_watcher_free(w);
        return NULL;
    }
    return w;
}

void
ab_watcher_free(struct ab_watcher *w)
{
    if (w == NULL) {
        return;
    }
    if (w->readable) {
        event_free(w->readable);
    }
    if (w->debounce) {
        event_free(w->debounce);
    }
    if (w->fd >= 0) {
        close(w->fd); /* drops the watch with the instance */
    }
    free(w->dir);
    free(w);
}
