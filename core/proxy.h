/*
 * proxy.h - core.proxy(call): relays an outbound call's answer to the
 * request's client as it arrives (status, the relayed headers, the body
 * in chunks), never holding it whole, with back-pressure: when the
 * client reads slower than the upstream sends, the upstream is paused.
 */
#ifndef AB_PROXY_H
#define AB_PROXY_H

struct lua_State;

/*
 * core.proxy{method, url, headers, body, timeout_ms, pica}: yields until
 * the call is over, then returns {started, status, bytes, elapsed_ms,
 * error}.  `started` says whether the answer went out to the client;
 * when it did not (no answer from upstream), the caller answers an
 * error itself.  Registered into "broker.core" by lua_bindings.c.
 */
int ab_proxy_lua(struct lua_State *L);

#endif
