/*
 * watcher.h - notices changes to the plugin directory (inotify) and
 * reports them once they settle.
 *
 * Only names ending in ".lua" count, except those starting with '.'
 * (editor swap and temporary files); the directory itself being deleted
 * or moved away counts too.  Every counted event re-arms a debounce
 * timer, and the callback runs once when it expires: an editor's
 * write-then-rename, or a burst of saves, is one change.
 *
 * If the directory is deleted or moved, a warning is logged, the
 * callback runs once more (the host's reload then fails and says so)
 * and the watcher goes quiet: it does not follow the directory to its
 * new place nor notice one created again under the old name.  The host
 * frees the watcher and makes a new one to watch again.
 */
#ifndef AB_WATCHER_H
#define AB_WATCHER_H

struct event_base;
struct ab_watcher;

/*
 * Starts watching `dir` (copied) on `base`, which must outlive the
 * watcher.  `on_change(arg)` is called from the event loop
 * `debounce_ms` milliseconds after the last counted event; it may free
 * the watcher.  Returns the watcher, or NULL (reason logged) if `dir`
 * is not a directory that can be watched.  Caller frees with
 * ab_watcher_free().
 */
struct ab_watcher *ab_watcher_new(struct event_base *base, const char *dir,
                                  long debounce_ms,
                                  void (*on_change)(void *arg), void *arg);

/* Stops watching and frees `w` (NULL is ignored); a pending callback
 * is dropped. */
void ab_watcher_free(struct ab_watcher *w);

#endif
