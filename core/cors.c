/*
 * cors.c - the CORS and Private Network Access answers.
 */
#include "cors.h"

#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

/* Headers every deployment needs: the widget's custom identity header,
 * bearer tokens and JSON bodies. */
static const char *const default_headers[] = {
    "x-user-id",        "authorization",    "content-type",
    "x-connection-key", "x-pica-action-id", NULL};

void
ab_cors_init(struct ab_cors *cors, char **origins, char **headers)
{
    cors->origins = origins;
    cors->headers = headers;
    cors->any_origin = 0;
    for (char **o = origins; o && *o; o++) {
        if (strcmp(*o, "*") == 0) {
            cors->any_origin = 1;
        }
    }
}

int
ab_cors_origin_allowed(const struct ab_cors *cors, const char *origin)
{
    if (origin == NULL || origin[0] == '\0') {
        return 0;
    }
    if (cors->any_origin) {
        return 1;
    }
    for (char **o = cors->origins; o && *o; o++) {
        if (strcasecmp(*o, origin) == 0) {
            return 1;
        }
    }
    return 0;
}

int
ab_cors_header_allowed(const struct ab_cors *cors, const char *name)
{
    for (const char *const *h = default_headers; *h; h++) {
        if (strcasecmp(*h, name) == 0) {
            return 1;
        }
    }
    for (char **h = cors->headers; h && *h; h++) {
        if (strcasecmp(*h, name) == 0) {
            return 1;
        }
    }
    return 0;
}

/* Writes into `out` the comma-separated subset of `requested` that is
 * allowed, lower-cased. */
static void
allowed_subset(const struct ab_cors *cors, const char *requested, char *out,
               size_t size)
{
    char name[128];
    size_t used = 0;

    out[0] = '\0';
    while (requested && *requested) {
        size_t n = strcspn(requested, ",");
        const char *p = requested;
        size_t len = n;

        while (len > 0 && (*p == ' ' || *p == '\t')) {
            p++, len--;
        }
        while (len > 0 && (p[len - 1] == ' ' || p[len - 1] == '\t')) {
            len--;
        }
        if (len > 0 && len < sizeof(name)) {
            for (size_t i = 0; i < len; i++) {
                name[i] = (char)(p[i] >= 'A' && p[i] <= 'Z' ? p[i] + 32 : p[i]);
            }
            name[len] = '\0';
            if (ab_cors_header_allowed(cors, name) && used + len + 3 < size) {
                used += (size_t)snprintf(out + used, size - used, "%s%s",
                                         used ? ", " : "", name);
            }
        }
        requested += n + (requested[n] == ',');
    }
}

/* The Access-Control-Allow-Origin value: the origin itself, or "*" when
 * any origin is allowed (then without credentials, as browsers demand). */
static void
add_origin(const struct ab_cors *cors, const char *origin,
           struct evkeyvalq *out)
{
    if (cors->any_origin) {
        evhttp_add_header(out, "Access-Control-Allow-Origin", "*");
        return;
    }
    evhttp_add_header(out, "Access-Control-Allow-Origin", origin);
    evhttp_add_header(out, "Access-Control-Allow-Credentials", "true");
}

int
ab_cors_preflight(const struct ab_cors *cors, const char *origin,
                  const char *req_headers, int private_network,
                  struct evkeyvalq *out)
{
    char allowed[1024];

    evhttp_add_header(out, "Vary",
                      "Origin, Access-Control-Request-Method, "
                      "Access-Control-Request-Headers");
    if (!ab_cors_origin_allowed(cors, origin)) {
        return 403;
    }
    add_origin(cors, origin, out);
    evhttp_add_header(out, "Access-Control-Allow-Methods", AB_CORS_METHODS);
    allowed_subset(cors, req_headers, allowed, sizeof(allowed));
    if (allowed[0] != '\0') {
        evhttp_add_header(out, "Access-Control-Allow-Headers", allowed);
    }
    if (private_network) {
        evhttp_add_header(out, "Access-Control-Allow-Private-Network", "true");
    }
    evhttp_add_header(out, "Access-Control-Max-Age", "600");
    return 204;
}

void
ab_cors_response(const struct ab_cors *cors, const char *origin,
                 struct evkeyvalq *out)
{
    evhttp_add_header(out, "Vary", "Origin");
    if (!ab_cors_origin_allowed(cors, origin)) {
        return;
    }
    add_origin(cors, origin, out);
    evhttp_add_header(out, "Access-Control-Expose-Headers",
                      "X-Request-Id, Retry-After");
}
