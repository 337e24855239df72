/*
 * cors.h - cross-origin rules of the API listener.
 *
 * An explicit allow-list of origins ("*" only when configured), the
 * request headers a browser may send, and the Private Network Access
 * preflight that Chrome sends before a public page may call a local
 * broker.  A disallowed origin gets no CORS header at all.
 */
#ifndef AB_CORS_H
#define AB_CORS_H

struct evkeyvalq;

struct ab_cors {
    char **origins; /* borrowed from the config, NULL-terminated */
    char **headers; /* borrowed: extra allowed headers */
    int any_origin; /* "*" is in the list */
};

/* Methods a browser may use on the API. */
#define AB_CORS_METHODS "GET, POST, PUT, PATCH, DELETE, OPTIONS"

/* Sets `cors` up over the config's lists; they must outlive it. */
void ab_cors_init(struct ab_cors *cors, char **origins, char **headers);

/* Non-zero if `origin` (may be NULL) may call the API. */
int ab_cors_origin_allowed(const struct ab_cors *cors, const char *origin);

/* Non-zero if the request header `name` (any case) may be sent. */
int ab_cors_header_allowed(const struct ab_cors *cors, const char *name);

/*
 * Answers a preflight: adds the response headers to `out` and returns
 * the status to send (204 when the origin is allowed, 403 otherwise, in
 * which case nothing is added but Vary).  `req_headers` is the value of
 * Access-Control-Request-Headers (may be NULL); `private_network` is
 * non-zero if Access-Control-Request-Private-Network was "true".
 */
int ab_cors_preflight(const struct ab_cors *cors, const char *origin,
                      const char *req_headers, int private_network,
                      struct evkeyvalq *out);

/* Adds the headers of an actual (non-preflight) response to `out`. */
void ab_cors_response(const struct ab_cors *cors, const char *origin,
                      struct evkeyvalq *out);

#endif
