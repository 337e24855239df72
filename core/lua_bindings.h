/*
 * lua_bindings.h - what the modules of "broker.core" share.
 */
#ifndef AB_LUA_BINDINGS_H
#define AB_LUA_BINDINGS_H

#include <stddef.h>

#include "http_client.h"

struct lua_State;

/* Headers a hook may set at most on one outbound call. */
#define MAX_OUT_HEADERS 64

/*
 * Reads the call table at stack index `idx` ({method, url, headers,
 * body, timeout_ms, retry, max_attempts, max_response_bytes, pica})
 * into `r`, raising on a malformed one.  `hdrs` needs MAX_OUT_HEADERS
 * + 1 entries; with `pica` set the secret header is added (only for
 * the configured pica_url), its name written into `secret_name`.
 * Strings stay owned by the table on the stack.
 */
void ab_lua_parse_call(struct lua_State *L, int idx, struct ab_http_request *r,
                       struct ab_http_header *hdrs, char *secret_name,
                       size_t size);

#endif
