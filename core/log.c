/*
 * log.c - one line per event on stderr, in logfmt.
 */
#include "log.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>

enum ab_log_level ab_log_threshold = AB_LOG_INFO;

static const char *const level_names[] = {"debug", "info", "warn", "error"};

int
ab_log_parse_level(const char *name, enum ab_log_level *out)
{
    for (int i = 0; i < 4; i++) {
        if (strcmp(name, level_names[i]) == 0) {
            *out = (enum ab_log_level)i;
            return 0;
        }
    }
    return -1;
}

/* Copies `msg` into `out` with quotes, backslashes and control bytes
 * escaped, so that one event is always one line. */
static void
escape_message(const char *msg, char *out, size_t size)
{
    size_t o = 0;

    for (const unsigned char *p = (const unsigned char *)msg;
         *p != '\0' && o + 5 < size; p++) {
        if (*p == '"' || *p == '\\') {
            out[o++] = '\\';
            out[o++] = (char)*p;
        } else if (*p == '\n') {
            out[o++] = '\\';
            out[o++] = 'n';
        } else if (*p < 0x20 || *p == 0x7f) {
            o += (size_t)snprintf(out + o, size - o, "\\x%02x", *p);
        } else {
            out[o++] = (char)*p;
        }
    }
    out[o] = '\0';
}

void
ab_log_write(enum ab_log_level level, const char *module, const char *req_id,
             const char *fmt, ...)
{
    char msg[2048];
    char escaped[4096];
    char stamp[32];
    struct timeval tv;
    struct tm tm;
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    escape_message(msg, escaped, sizeof(escaped));

    gettimeofday(&tv, NULL);
    gmtime_r(&tv.tv_sec, &tm);
    strftime(stamp, sizeof(stamp), "%Y-%m-%dT%H:%M:%S", &tm);

    fprintf(stderr, "%s.%03dZ level=%s module=%s%s%s msg=\"%s\"\n", stamp,
            (int)(tv.tv_usec / 1000), level_names[level], module,
            req_id ? " req=" : "", req_id ? req_id : "", escaped);
}
