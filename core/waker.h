/*
 * waker.h - "broker.waker": lets a request's coroutine wait until
 * another request wakes it, so that many requests can share one
 * outbound call (single-flight) without polling:
 *
 *   local w = waker.new()          -- publish w where the waker finds it
 *   local value = waker.wait(w)    -- yields until waker.wake(w, value)
 *
 * wake() never runs the waiter inside the waking coroutine: the waiter
 * resumes on the next turn of the event loop.  A wake that comes before
 * the wait makes the wait return at once.
 */
#ifndef AB_WAKER_H
#define AB_WAKER_H

struct lua_State;

/* Pushes the module table (+1).  Called by the Lua host's preload. */
int ab_luaopen_waker(struct lua_State *L);

#endif
