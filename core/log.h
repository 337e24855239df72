/*
 * log.h - the broker's one logging facility.
 *
 * Every line goes to stderr as
 *   2026-12-03T13:01:16.123Z level=info module=http req=7f3a... msg="..."
 * The level is checked before anything is formatted, so a disabled
 * debug line costs one comparison.  Secrets must never be passed here.
 */
#ifndef AB_LOG_H
#define AB_LOG_H

enum ab_log_level { AB_LOG_DEBUG, AB_LOG_INFO, AB_LOG_WARN, AB_LOG_ERROR };

extern enum ab_log_level ab_log_threshold;

/* Parses "debug", "info", "warn" or "error"; returns 0, or -1 if unknown. */
int ab_log_parse_level(const char *name, enum ab_log_level *out);

/*
 * Writes one line.  `module` names the part of the broker ("http",
 * "pica", "lua", ...); `req_id` is the request id or NULL outside a
 * request.  Use the AB_LOG macro rather than calling this directly.
 */
void ab_log_write(enum ab_log_level level, const char *module,
                  const char *req_id, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

#define AB_LOG(level, module, req_id, ...)                                     \
    do {                                                                       \
        if ((level) >= ab_log_threshold) {                                     \
            ab_log_write((level), (module), (req_id), __VA_ARGS__);            \
        }                                                                      \
    } while (0)

#define AB_DEBUG(mod, rid, ...) AB_LOG(AB_LOG_DEBUG, mod, rid, __VA_ARGS__)
#define AB_INFO(mod, rid, ...)  AB_LOG(AB_LOG_INFO, mod, rid, __VA_ARGS__)
#define AB_WARN(mod, rid, ...)  AB_LOG(AB_LOG_WARN, mod, rid, __VA_ARGS__)
#define AB_ERROR(mod, rid, ...) AB_LOG(AB_LOG_ERROR, mod, rid, __VA_ARGS__)

#endif
