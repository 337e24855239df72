/*
 * audit.h - the audit log: one JSON line per passthrough call, written
 * by a thread of its own so that a slow disk or a slow reader of stdout
 * never blocks the event loop.
 */
#ifndef AB_AUDIT_H
#define AB_AUDIT_H

#include <stddef.h>

/* Opens the log: "" for none, "-" for stdout, else a file opened for
 * appending (created 0600).  Returns 0, or -1 with the reason in `err`.
 * Called once at start-up. */
int ab_audit_open(const char *where, char *err, size_t errlen);

/* Queues one line (a newline is added).  Never blocks: past 64 MiB
 * queued the line is dropped and counted.  Called from the loop. */
void ab_audit_write(const char *line, size_t len);

/* Lines dropped because the queue was full. */
unsigned long ab_audit_dropped(void);

/* Writes what is queued, stops the thread, closes the file. */
void ab_audit_close(void);

#endif
