/*
 * fuzz_json.c - libFuzzer harness for core/json.c.
 *
 * For each input: decode must return a value or nil plus an error that
 * ends in "at offset N"; a decoded value must encode, and that text
 * must decode to an equal value (numbers keep their subtype, arrays
 * their metatable).  The input is also decoded with max_depth 1000 to
 * exercise deep nesting.  members() must accept exactly the inputs
 * that decode to an object, and each raw member must decode to that
 * member's value (unless a later duplicate key replaced it).  Any
 * failure aborts.
 *
 *   clang -std=c11 -D_GNU_SOURCE -g -O1 -fsanitize=fuzzer,address,undefined \
 *       -Icore $(pkg-config --cflags lua5.4) core/json.c spec/c/fuzz_json.c \
 *       $(pkg-config --libs lua5.4) -lm -o /tmp/fuzz_json
 *   /tmp/fuzz_json -max_total_time=120 CORPUS_DIR
 */
#include "json.h"

#include <lauxlib.h>
#include <lua.h>
#include <lualib.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Takes the module, returns the check run on each input. */
static const char CHECKER[] =
    "local json = ...\n"
    "local function same(a, b)\n"
    "  if type(a) ~= type(b) then return false end\n"
    "  if type(a) == 'number' then\n"
    "    return math.type(a) == math.type(b) and a == b\n"
    "  end\n"
    "  if type(a) ~= 'table' then return a == b end\n"
    "  if getmetatable(a) ~= getmetatable(b) then return false end\n"
    "  for k, v in pairs(a) do\n"
    "    if not same(v, b[k]) then return false end\n"
    "  end\n"
    "  for k in pairs(b) do\n"
    "    if a[k] == nil then return false end\n"
    "  end\n"
    "  return true\n"
    "end\n"
    "return function(s)\n"
    "  local v, err = json.decode(s)\n"
    "  if err ~= nil then\n"
    "    assert(v == nil and err:find(' at offset %d+$'), err)\n"
    "  else\n"
    "    local text = json.encode(v)\n"
    "    local back, err2 = json.decode(text)\n"
    "    assert(err2 == nil and same(v, back), text)\n"
    "  end\n"
    "  local m, merr = json.members(s)\n"
    "  local is_object = v ~= nil and type(v) == 'table'\n"
    "    and getmetatable(v) == nil\n"
    "  assert((m ~= nil) == is_object, merr or 'members accepted')\n"
    "  local seen = {}\n"
    "  for i = m and #m or 0, 2, -2 do\n"
    "    local mv, e3 = json.decode(m[i])\n"
    "    assert(e3 == nil, e3)\n"
    "    if not seen[m[i - 1]] then\n"
    "      assert(same(mv, v[m[i - 1]]), m[i])\n"
    "    end\n"
    "    seen[m[i - 1]] = true\n"
    "  end\n"
    "  v, err = json.decode(s, 1000)\n"
    "  assert(err == nil or (v == nil and err:find(' at offset %d+$')), err)\n"
    "end\n";

/* The state and the checker (in the registry) live for the whole run. */
static lua_State *L;
static int checker_ref;

static void
setup(void)
{
    L = luaL_newstate();
    luaL_openlibs(L);
    if (luaL_loadstring(L, CHECKER) != LUA_OK) { /* chunk */
        fprintf(stderr, "%s\n", lua_tostring(L, -1));
        abort();
    }
    ab_luaopen_json(L);                           /* chunk M */
    lua_call(L, 1, 1);                            /* check */
    checker_ref = luaL_ref(L, LUA_REGISTRYINDEX); /* */
}

/* Called by libFuzzer for each input; the data stays libFuzzer's. */
int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (L == NULL) {
        setup();
    }
    lua_rawgeti(L, LUA_REGISTRYINDEX, checker_ref); /* check */
    lua_pushlstring(L, (const char *)data, size);   /* check s */
    if (lua_pcall(L, 1, 0, 0) != LUA_OK) {          /* | err */
        fprintf(stderr, "check failed: %s\n", lua_tostring(L, -1));
        abort();
    }
    return 0;
}
