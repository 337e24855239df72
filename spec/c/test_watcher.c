/*
 * test_watcher.c - tests of core/watcher.c against a real directory:
 * each kind of change is reported exactly once after the debounce,
 * names that are not plugins are not reported, and the directory going
 * away is reported once without a crash.
 *
 * Every wait runs the event loop with a deadline, so no test can hang.
 * No framework: CHECK() records a failure and goes on; the last line is
 * "N passed, N failed" and the exit status is non-zero on any failure.
 */
#include <event2/event.h>
#include <dirent.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "log.h"
#include "watcher.h"

#define DEBOUNCE_MS 150
#define WAIT_MS     3000              /* longest wait for a callback */
#define QUIET_MS    (2 * DEBOUNCE_MS) /* no second callback within */
#define BURST       20
#define BURST_GAP   15 /* ms between writes: the burst outlasts the debounce */

static int passed, failed;
static FILE *report; /* the real stderr, while fd 2 may be captured */

#define CHECK(cond)                                                            \
    do {                                                                       \
        if (cond) {                                                            \
            passed++;                                                          \
        } else {                                                               \
            failed++;                                                          \
            fprintf(report, "%s:%d: CHECK(%s) failed\n", __FILE__, __LINE__,   \
                    #cond);                                                    \
        }                                                                      \
    } while (0)

/* What the callback saw, and the loop the test runs. */
struct probe {
    struct event_base *base;
    struct event *deadline;
    int calls;
    double last_call_ms;
    struct ab_watcher *free_me; /* the callback frees it, if set */
};

/* A burst of writes driven by a timer on the test's loop. */
struct burst {
    struct event *tick;
    const char *path;
    int written;
    double done_ms;
};

static char dir[512]; /* the temporary directory */
static char captured[16384];
static FILE *capture_file;
static int saved_stderr = -1;

static double
now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
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

/* Checks that the log holds `warnings` lines, each a watcher warning;
 * shows the log if not. */
static void
check_log(const char *log, int warnings)
{
    int lines = 0, ours = 0;

    for (const char *p = log; (p = strchr(p, '\n')) != NULL; p++) {
        lines++;
    }
    for (const char *p = log; (p = strstr(p, "level=warn module=watcher"));
         p++) {
        ours++;
    }
    CHECK(lines == warnings && ours == warnings);
    if (lines != warnings || ours != warnings) {
        fprintf(report, "log was:\n%s", log);
    }
}

/* Called by the watcher: counts, frees the watcher if asked to, and
 * stops the loop so the test can look. */
static void
on_change(void *arg)
{
    struct probe *p = arg;

    p->calls++;
    p->last_call_ms = now_ms();
    if (p->free_me != NULL) {
        ab_watcher_free(p->free_me);
        p->free_me = NULL;
    }
    event_base_loopbreak(p->base);
}

/* Called by libevent when a wait's deadline passes. */
static void
on_deadline(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    event_base_loopbreak(arg);
}

/* Runs the loop until `p` has seen `calls` callbacks or `ms` passed. */
static void
run(struct probe *p, int calls, long ms)
{
    double end = now_ms() + (double)ms;

    while (p->calls < calls && now_ms() < end) {
        long left = (long)(end - now_ms()) + 1;
        struct timeval tv = {left / 1000, (left % 1000) * 1000};

        evtimer_add(p->deadline, &tv);
        event_base_dispatch(p->base);
        evtimer_del(p->deadline);
    }
}

/* Runs the loop and checks that exactly one callback came, not sooner
 * than the debounce after `acted_ms` (the last change). */
static void
expect_one_change(struct probe *p, double acted_ms)
{
    p->calls = 0;
    run(p, 1, WAIT_MS);
    CHECK(p->calls == 1);
    /* libevent's coarse clock may fire a few ms early. */
    CHECK(p->calls == 0 || p->last_call_ms - acted_ms >= DEBOUNCE_MS - 10);
    run(p, 2, QUIET_MS);
    CHECK(p->calls == 1);
}

/* Runs the loop long enough for a change to be reported; checks none
 * was. */
static void
expect_no_change(struct probe *p)
{
    p->calls = 0;
    run(p, 1, DEBOUNCE_MS + QUIET_MS);
    CHECK(p->calls == 0);
}

static void
path_of(char *out, const char *name)
{
    snprintf(out, PATH_MAX, "%s/%s", dir, name);
}

/* Writes `text` to the file `name` of the test directory. */
static void
write_file(const char *name, const char *text)
{
    char path[PATH_MAX];
    int fd;

    path_of(path, name);
    fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    CHECK(fd >= 0);
    if (fd >= 0) {
        CHECK(write(fd, text, strlen(text)) == (ssize_t)strlen(text));
        close(fd);
    }
}

static void
rename_file(const char *from, const char *to)
{
    char a[PATH_MAX], b[PATH_MAX];

    path_of(a, from);
    path_of(b, to);
    CHECK(rename(a, b) == 0);
}

static void
remove_file(const char *name)
{
    char path[PATH_MAX];

    path_of(path, name);
    CHECK(remove(path) == 0);
}

/* Removes the flat directory `path` and what it holds. */
static void
remove_tree(const char *path)
{
    char entry[PATH_MAX];
    struct dirent *de;
    DIR *d = opendir(path);

    if (d == NULL) {
        return;
    }
    while ((de = readdir(d)) != NULL) {
        if (strcmp(de->d_name, ".") != 0 && strcmp(de->d_name, "..") != 0) {
            snprintf(entry, sizeof(entry), "%s/%s", path, de->d_name);
            remove(entry);
        }
    }
    closedir(d);
    rmdir(path);
}

static struct ab_watcher *
watch(struct probe *p)
{
    return ab_watcher_new(p->base, dir, DEBOUNCE_MS, on_change, p);
}

static void
test_new_fails_without_a_directory(struct probe *p)
{
    char file[PATH_MAX];
    const char *log;

    path_of(file, "plain.txt");
    write_file("plain.txt", "x");
    capture_begin();
    CHECK(ab_watcher_new(p->base, "/nonexistent/plugins", DEBOUNCE_MS,
                         on_change, p) == NULL);
    CHECK(ab_watcher_new(p->base, file, DEBOUNCE_MS, on_change, p) == NULL);
    log = capture_end();
    check_log(log, 2);
    CHECK(strstr(log, "failed to watch /nonexistent/plugins") != NULL);
    remove_file("plain.txt");
}

static void
test_write_is_one_change(struct probe *p)
{
    write_file("10-a.lua", "return {}\n");
    expect_one_change(p, now_ms());
}

static void
test_write_then_rename_is_one_change(struct probe *p)
{
    /* An editor's safe save: a new file, renamed over the old one. */
    write_file("10-a.lua.new", "return {name = 'a'}\n");
    write_file("20-b.lua", "return {}\n");
    rename_file("20-b.lua", "10-a.lua");
    expect_one_change(p, now_ms());
    rename_file("10-a.lua.new", "10-a.lua");
    expect_one_change(p, now_ms());
}

static void
test_delete_is_one_change(struct probe *p)
{
    remove_file("10-a.lua");
    expect_one_change(p, now_ms());
}

/* Called by libevent every BURST_GAP ms: one more write of the burst. */
static void
on_burst_tick(evutil_socket_t fd, short what, void *arg)
{
    struct burst *b = arg;
    int out;

    (void)fd;
    (void)what;
    out = open(b->path, O_WRONLY | O_CREAT | O_APPEND, 0644);
    if (out >= 0) {
        CHECK(write(out, "--\n", 3) == 3);
        close(out);
    }
    if (++b->written == BURST) {
        b->done_ms = now_ms();
        event_del(b->tick);
    }
}

static void
test_burst_of_writes_is_one_change(struct probe *p)
{
    struct timeval gap = {0, BURST_GAP * 1000};
    char path[PATH_MAX];
    struct burst b = {0};

    path_of(path, "30-c.lua");
    b.path = path;
    b.tick = event_new(p->base, -1, EV_PERSIST, on_burst_tick, &b);
    event_add(b.tick, &gap);

    /* The callback must not come before the burst is over. */
    p->calls = 0;
    run(p, 1, BURST * BURST_GAP + WAIT_MS);
    CHECK(p->calls == 1);
    CHECK(b.written == BURST);
    CHECK(p->last_call_ms - b.done_ms >= DEBOUNCE_MS - 10);
    run(p, 2, QUIET_MS);
    CHECK(p->calls == 1);
    event_free(b.tick);
}

static void
test_other_names_are_ignored(struct probe *p)
{
    char sub[PATH_MAX];

    write_file(".30-c.lua.swp", "swap");
    write_file(".hidden.lua", "return {}\n");
    write_file("30-c.lua~", "backup");
    write_file("notes.txt", "notes");
    write_file("4913", ""); /* vim's probe for a writable directory */
    path_of(sub, "sub.lua");
    CHECK(mkdir(sub, 0755) == 0);
    CHECK(rmdir(sub) == 0);
    rename_file(".hidden.lua", ".hidden2.lua");
    remove_file(".30-c.lua.swp");
    remove_file(".hidden2.lua");
    remove_file("30-c.lua~");
    remove_file("notes.txt");
    remove_file("4913");
    expect_no_change(p);
}

static void
test_moved_directory_is_one_change(struct probe *p, struct ab_watcher *w)
{
    char moved[sizeof(dir) + 8];
    const char *log;

    snprintf(moved, sizeof(moved), "%s.moved", dir);
    capture_begin();
    CHECK(rename(dir, moved) == 0);
    p->free_me = w; /* as a host may: free the watcher in its callback */
    expect_one_change(p, now_ms());
    CHECK(p->free_me == NULL);
    ab_watcher_free(p->free_me); /* only if no callback came */
    p->free_me = NULL;
    log = capture_end();
    check_log(log, 1);
    CHECK(strstr(log, "the directory was moved") != NULL);
    CHECK(rename(moved, dir) == 0);
}

static void
test_deleted_directory_is_one_change(struct probe *p)
{
    struct ab_watcher *w = watch(p);
    const char *log;

    CHECK(w != NULL);
    capture_begin();
    remove_tree(dir);
    expect_one_change(p, now_ms());
    log = capture_end();
    check_log(log, 1);
    CHECK(strstr(log, "the directory was deleted") != NULL);

    /* The directory coming back is not noticed, and nothing breaks. */
    CHECK(mkdir(dir, 0700) == 0);
    write_file("10-a.lua", "return {}\n");
    expect_no_change(p);
    ab_watcher_free(w);
}

static int
setup(struct probe *p)
{
    const char *tmp = getenv("TMPDIR");

    snprintf(dir, sizeof(dir), "%s/ab-watcher-XXXXXX", tmp ? tmp : "/tmp");
    p->base = event_base_new();
    p->deadline = p->base ? evtimer_new(p->base, on_deadline, p->base) : NULL;
    return p->deadline != NULL && mkdtemp(dir) != NULL ? 0 : -1;
}

int
main(void)
{
    struct probe p = {0};
    struct ab_watcher *w;
    const char *log;

    report = fdopen(dup(2), "w");
    if (report == NULL || setup(&p) != 0) {
        printf("0 passed, 1 failed\n");
        return 1;
    }
    setvbuf(report, NULL, _IONBF, 0);

    test_new_fails_without_a_directory(&p);
    capture_begin();
    w = watch(&p);
    CHECK(w != NULL);
    if (w != NULL) {
        test_write_is_one_change(&p);
        test_write_then_rename_is_one_change(&p);
        test_delete_is_one_change(&p);
        test_burst_of_writes_is_one_change(&p);
        test_other_names_are_ignored(&p);
    }
    log = capture_end();
    check_log(log, 0); /* nothing logged while all went well */
    if (w != NULL) {
        test_moved_directory_is_one_change(&p, w);
    }
    test_deleted_directory_is_one_change(&p);

    remove_tree(dir);
    strcat(dir, ".moved"); /* left only if a test failed half-way */
    remove_tree(dir);
    event_free(p.deadline);
    event_base_free(p.base);
    printf("%d passed, %d failed\n", passed, failed);
    fclose(report);
    return failed ? 1 : 0;
}
