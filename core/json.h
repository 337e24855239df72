/*
 * json.h - a strict RFC 8259 JSON codec for Lua 5.4.
 *
 * Arrays decode to tables with the module's array_mt metatable, so that
 * an empty array `[]` encodes as `[]` again; JSON null is the light
 * userdata NULL, the same value as cjson.null.
 */
#ifndef AB_JSON_H
#define AB_JSON_H

#include <lua.h>

/* Default and largest nesting depth for decode(s [, max_depth]). */
#define AB_JSON_DECODE_DEPTH       32
#define AB_JSON_DECODE_DEPTH_LIMIT 1000

/* Deepest nesting encode() follows before it gives up (a cycle). */
#define AB_JSON_ENCODE_DEPTH 64

/*
 * Pushes a new module table (stack: +1) with these fields:
 *
 *   decode(s [, max_depth]) -> value | nil, err
 *       Never raises for bad input: err says what is wrong and where,
 *       as "... at offset N" with N the 0-based byte offset in s.
 *       Raises if s is not a string or max_depth is out of range.
 *   encode(v) -> string
 *       Raises on values JSON cannot hold (functions, userdata other
 *       than null, NaN and infinities, tables with mixed or non-string
 *       keys, nesting over AB_JSON_ENCODE_DEPTH, which includes cycles).
 *   array(t) -> t
 *       Sets array_mt on t (a new table when t is nil) and returns it.
 *   array_mt
 *       The metatable of arrays ({ __name = "json.array" }); shared by
 *       every module table of a state through the registry.
 *   null
 *       The JSON null sentinel.
 *
 * Suitable for luaL_requiref.  Called by the Lua host when it builds a
 * generation's runtime; everything it creates belongs to the state.
 */
int ab_luaopen_json(lua_State *L);

#endif
