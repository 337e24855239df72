/*
 * test_json.c - tests for core/json.c, the JSON codec for Lua.
 *
 * Each test runs Lua chunks in a fresh state that has the standard
 * libraries, the module as global `json`, and the helpers of PRELUDE.
 * JSON texts sit in Lua long strings ([[...]]), so the only escapes in
 * them are C's: \" for a quote and \\ for a backslash.
 *
 * No framework: CHECK() records a failure and goes on.  The last line
 * printed is "N passed, N failed", and the exit status is non-zero if
 * any test failed.
 */
#include "json.h"

#include <lauxlib.h>
#include <lua.h>
#include <lualib.h>
#include <stdio.h>
#include <string.h>

static int tests_passed;
static int tests_failed;
static int current_failed;
static const char *current_name;

/* The state of the running test; the runner owns it. */
static lua_State *L;

#define CHECK(cond) check((cond), #cond, __LINE__)

static void
check(int ok, const char *what, int line)
{
    if (!ok) {
        current_failed = 1;
        fprintf(stderr, "FAIL %s (line %d): %s\n", current_name, line, what);
    }
}

/* Helpers every chunk may use:
 *   eq(got, want, what)        raises unless got == want
 *   same(a, b)                 deep equality: number subtypes, array_mt
 *   round_trip(text [, want])  decode, encode, compare; returns the value
 *   decode_error(text, msg [, depth])  decode fails with msg (plain)
 *   encode_error(v, msg)       encode raises an error containing msg */
static const char PRELUDE[] =
    "function eq(got, want, what)\n"
    "  if got ~= want then\n"
    "    error(string.format('%s: got %q, want %q', what or 'value',\n"
    "                        tostring(got), tostring(want)), 2)\n"
    "  end\n"
    "end\n"
    "function same(a, b)\n"
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
    "function round_trip(text, want)\n"
    "  local v, err = json.decode(text)\n"
    "  if err then error('decode ' .. text .. ': ' .. err, 2) end\n"
    "  eq(json.encode(v), want or text, 'encode(decode(' .. text .. '))')\n"
    "  return v\n"
    "end\n"
    "function decode_error(text, msg, depth)\n"
    "  local v, err = json.decode(text, depth)\n"
    "  if v ~= nil or type(err) ~= 'string' then\n"
    "    error(string.format('%q decoded', text), 2)\n"
    "  end\n"
    "  if not err:find(msg, 1, true) then\n"
    "    error(string.format('%q: error %q lacks %q', text, err, msg), 2)\n"
    "  end\n"
    "  if not err:find(' at offset %d+$') then\n"
    "    error(string.format('%q: error %q has no offset', text, err), 2)\n"
    "  end\n"
    "end\n"
    "function encode_error(v, msg)\n"
    "  local ok, err = pcall(json.encode, v)\n"
    "  if ok then error('encoded as ' .. err, 2) end\n"
    "  if not tostring(err):find(msg, 1, true) then\n"
    "    error(string.format('error %q lacks %q', tostring(err), msg), 2)\n"
    "  end\n"
    "end\n";

/* Runs chunk src in L; returns 1 if it ran without error, else prints
 * the error and returns 0.  Leaves the stack as it found it. */
static int
run(const char *src)
{
    int ok = luaL_loadbuffer(L, src, strlen(src), current_name) == LUA_OK &&
             lua_pcall(L, 0, 0, 0) == LUA_OK; /* | err */

    if (!ok) {
        fprintf(stderr, "  %s: %s\n", current_name, lua_tostring(L, -1));
        lua_pop(L, 1); /* */
    }
    return ok;
}

/* ------------------------------------------------------------------ */
/* Round trips                                                         */
/* ------------------------------------------------------------------ */

static void
test_empty_array_round_trips(void)
{
    CHECK(run("local v = round_trip '[]'\n"
              "eq(getmetatable(v), json.array_mt, 'metatable')\n"
              "eq(next(v), nil, 'no elements')\n"));
    CHECK(run("round_trip(' [ ] ', '[]')"));
}

static void
test_empty_object_round_trips(void)
{
    CHECK(run("local v = round_trip '{}'\n"
              "eq(getmetatable(v), nil, 'metatable')\n"));
    CHECK(run("round_trip(' {\\n} ', '{}')"));
}

static void
test_nested_document_keeps_its_empty_arrays(void)
{
    CHECK(run("local text = [[{\"tags\":[],\"a\":{\"b\":[1,2,{}]}}]]\n"
              "local v = json.decode(text)\n"
              "local out = json.encode(v)\n"
              "assert(out == text or\n"
              "       out == [[{\"a\":{\"b\":[1,2,{}]},\"tags\":[]}]], out)\n"
              "assert(same(json.decode(out), v))\n"
              "eq(getmetatable(v.tags), json.array_mt, 'tags')\n"
              "eq(getmetatable(v.a.b[3]), nil, 'inner object')\n"));
}

static void
test_nested_arrays_round_trip(void)
{
    CHECK(run("round_trip '[[1,[2,[3,[]]]],[],[[]]]'"));
    CHECK(run("round_trip '[1,\"a\",true,false,null,[null]]'"));
}

static void
test_pretty_input_round_trips_compact(void)
{
    CHECK(run("round_trip(' \\t\\r\\n[ 1 , { \"a\" : [ ] } ]\\n',\n"
              "           '[1,{\"a\":[]}]')"));
}

/* ------------------------------------------------------------------ */
/* members: an object's members as raw JSON text                       */
/* ------------------------------------------------------------------ */

static void
test_members_keep_order_and_raw_text(void)
{
    CHECK(run("local m = assert(json.members([==[ {\"rows\": [ {\"a\":[]}"
              " ] , \"total\":1.50, \"n\":null,\"s\":\"\\u00e9\"} ]==]))\n"
              "eq(#m, 8, 'count')\n"
              "eq(m[1], 'rows') eq(m[2], '[ {\"a\":[]} ]')\n"
              "eq(m[3], 'total') eq(m[4], '1.50')\n"
              "eq(m[5], 'n') eq(m[6], 'null')\n"
              "eq(m[7], 's') eq(m[8], [==[\"\\u00e9\"]==])\n"));
    CHECK(run("eq(#assert(json.members('{}')), 0, 'empty')"));
}

static void
test_members_reject_what_decode_rejects(void)
{
    static const char *const bad[] = {"[1]",
                                      "{\"a\":[1,]}",
                                      "{\"a\":01}",
                                      "{\"a\":1e999}",
                                      "{\"a\":\"\\ud800\"}",
                                      "{\"a\":tru}",
                                      "{\"a\":1} x",
                                      "{\"a\" 1}",
                                      "{a:1}",
                                      "{\"a\":[[[[1]]]]}",
                                      NULL};
    char src[256];

    for (int i = 0; bad[i]; i++) {
        snprintf(src, sizeof(src),
                 "local v, err = json.members([==[%s]==], 3)\n"
                 "assert(v == nil and err:find('at offset'), 'accepted: '"
                 " .. [==[%s]==])",
                 bad[i], bad[i]);
        CHECK(run(src));
    }
}

static void
test_large_document_round_trips(void)
{
    CHECK(run("local doc = json.array()\n"
              "for i = 1, 250 do\n"
              "  doc[i] = { id = i, name = 'n' .. i, score = i / 7,\n"
              "             tags = json.array { 'x', 'y\\n' },\n"
              "             meta = { ok = i % 2 == 0, none = json.null } }\n"
              "end\n"
              "local text = json.encode(doc)\n"
              "assert(#text > 20000, #text)\n"
              "assert(same(json.decode(text), doc))\n"));
}

/* ------------------------------------------------------------------ */
/* Numbers                                                             */
/* ------------------------------------------------------------------ */

static void
test_integer_literal_decodes_to_integer(void)
{
    CHECK(run("local v = round_trip '1'\n"
              "eq(math.type(v), 'integer', 'type')\n"
              "eq(math.type(json.decode '-42'), 'integer', '-42')\n"));
}

static void
test_fraction_decodes_to_float(void)
{
    CHECK(run("local v = round_trip '1.5'\n"
              "eq(math.type(v), 'float', 'type')\n"
              "eq(v, 1.5, 'value')\n"));
}

static void
test_minus_zero_decodes_to_integer_zero(void)
{
    CHECK(run("local v = round_trip('-0', '0')\n"
              "eq(math.type(v), 'integer', 'type')\n"
              "eq(v, 0, 'value')\n"
              "local f = round_trip '-0.0'\n"
              "eq(1 / f, -math.huge, 'sign of -0.0')\n"));
}

static void
test_exponent_decodes_to_float(void)
{
    CHECK(run("local v = round_trip('1e3', '1000.0')\n"
              "eq(math.type(v), 'float', 'type')\n"
              "eq(v, 1000, 'value')\n"
              "eq(json.decode '2E-2', 0.02, '2E-2')\n"
              "eq(json.decode '2e+2', 200.0, '2e+2')\n"));
}

static void
test_integer_beyond_2_53_stays_exact(void)
{
    CHECK(run("local v = round_trip '9007199254740993'\n"
              "eq(math.type(v), 'integer', 'type')\n"
              "eq(v, 9007199254740993, 'value')\n"));
}

static void
test_integer_limits_and_overflow(void)
{
    CHECK(run("eq(json.decode '9223372036854775807', math.maxinteger)\n"
              "eq(json.decode '-9223372036854775808', math.mininteger)\n"
              "eq(json.encode(math.mininteger), '-9223372036854775808')\n"
              "local v = json.decode '9223372036854775808'\n"
              "eq(math.type(v), 'float', 'type')\n"
              "eq(v, 2^63, 'value')\n"
              "v = json.decode '-9223372036854775809'\n"
              "eq(math.type(v), 'float', 'negative type')\n"));
}

static void
test_huge_integer_literal_becomes_float(void)
{
    CHECK(run("local v = json.decode '123456789012345678901234567890'\n"
              "eq(math.type(v), 'float', 'type')\n"
              "eq(v, 1.2345678901234568e+29, 'value')\n"
              "eq(json.encode(v), '1.2345678901234568e+29', 'text')\n"));
}

static void
test_floats_read_back_equal(void)
{
    CHECK(run("for _, x in ipairs { 0.1, 1 / 3, 0.1 + 0.2, 1e300, 5e-324,\n"
              "                     -2.5e-8, 2^53, 2^63, 1e22, 123.456 } do\n"
              "  local back = json.decode(json.encode(x))\n"
              "  eq(math.type(back), 'float', 'type of ' .. x)\n"
              "  eq(back, x, 'value')\n"
              "end\n"
              "eq(json.encode(0.1), '0.1', '0.1')\n"
              "eq(json.encode(3.0), '3.0', '3.0')\n"
              "eq(json.encode(-1.5), '-1.5', '-1.5')\n"));
}

static void
test_out_of_range_number_is_an_error(void)
{
    CHECK(run("decode_error('1e400', 'number out of range at offset 0')\n"
              "decode_error('[-1e999]', 'number out of range at offset 1')\n"
              "eq(json.decode '1e-400', 0.0, 'underflow')\n"));
}

/* ------------------------------------------------------------------ */
/* Strings                                                             */
/* ------------------------------------------------------------------ */

static void
test_string_escapes_decode(void)
{
    CHECK(run("eq(json.decode [[\"a\\\"b\\\\c\\/d\\b\\f\\n\\r\\t\"]],\n"
              "   'a\"b\\\\c/d\\b\\f\\n\\r\\t')\n"
              "eq(json.decode [[\"\\u0041\\u00e9\\u20AC\"]],\n"
              "   'A\\u{e9}\\u{20ac}')\n"
              "eq(json.decode [[\"x\\u0000y\"]], 'x\\0y', 'NUL')\n"));
}

static void
test_surrogate_pair_decodes_to_utf8(void)
{
    CHECK(run("eq(json.decode [[\"\\ud83d\\ude00\"]], '\\xF0\\x9F\\x98\\x80')\n"
              "eq(json.decode [[\"a\\uD83D\\uDE00b\"]], 'a\\u{1F600}b')\n"
              "eq(json.decode [[\"\\udbff\\udfff\"]], '\\u{10FFFF}')\n"));
}

static void
test_strings_encode_with_minimal_escapes(void)
{
    CHECK(run("eq(json.encode 'a\"b\\\\c/d', [[\"a\\\"b\\\\c/d\"]])\n"
              "eq(json.encode '\\b\\f\\n\\r\\t', [[\"\\b\\f\\n\\r\\t\"]])\n"
              "eq(json.encode '\\0\\1\\31\\127',\n"
              "   [[\"\\u0000\\u0001\\u001f]] .. '\\127\"')\n"
              "eq(json.encode '\\u{1F600}\\u{2028}',\n"
              "   '\"\\u{1F600}\\u{2028}\"')\n"));
}

static void
test_invalid_utf8_passes_through(void)
{
    CHECK(run("local s = '\"\\xff\\xc3(\\xed\\xa0\\x80\"'\n"
              "eq(json.decode(s), '\\xff\\xc3(\\xed\\xa0\\x80', 'decode')\n"
              "eq(json.encode(json.decode(s)), s, 'encode')\n"));
}

static void
test_long_strings_round_trip(void)
{
    CHECK(run("local s = string.rep('abc\\n\\\"', 10000)\n"
              "eq(json.decode(json.encode(s)), s)\n"
              "local plain = string.rep('x', 100000)\n"
              "eq(json.encode(plain), '\"' .. plain .. '\"')\n"));
}

/* ------------------------------------------------------------------ */
/* Objects, null and arrays                                            */
/* ------------------------------------------------------------------ */

static void
test_duplicate_key_last_wins(void)
{
    CHECK(run("local v = json.decode [[{\"a\":1,\"a\":2,\"b\":{},\"b\":3}]]\n"
              "eq(v.a, 2, 'a')\n"
              "eq(v.b, 3, 'b')\n"));
}

static void
test_null_round_trips(void)
{
    CHECK(run("eq(json.decode 'null', json.null, 'top')\n"
              "eq(json.encode(json.null), 'null', 'encode')\n"
              "local v = round_trip '[null,1]'\n"
              "eq(v[1], json.null, 'element')\n"
              "round_trip [[{\"a\":null}]]\n"
              "eq(type(json.null), 'userdata', 'type')\n"));
}

static void
test_array_holes_encode_as_null(void)
{
    CHECK(run("eq(json.encode(json.array { 1, nil, 3 }), '[1,null,3]')\n"
              "local t = json.array()\n"
              "t[1] = 'a'\n"
              "eq(json.encode(t), '[\"a\"]')\n"));
}

static void
test_plain_sequence_encodes_as_array(void)
{
    CHECK(run("eq(json.encode { 1, 2, 3 }, '[1,2,3]')\n"
              "eq(json.encode { [2] = 'b', [1] = 'a' }, '[\"a\",\"b\"]')\n"
              "eq(json.encode { { {} } }, '[[{}]]')\n"));
}

static void
test_array_sets_and_returns_the_metatable(void)
{
    CHECK(run("local t = {}\n"
              "eq(json.array(t), t, 'same table')\n"
              "eq(getmetatable(t), json.array_mt, 'metatable')\n"
              "eq(getmetatable(json.array()), json.array_mt, 'new')\n"
              "eq(json.array_mt.__name, 'json.array', '__name')\n"
              "eq(json.encode(json.array()), '[]', 'empty')\n"
              "assert(not pcall(json.array, 5))\n"));
}

static void
test_modules_of_one_state_share_array_mt(void)
{
    lua_State *S = L;

    ab_luaopen_json(S);        /* M */
    lua_setglobal(S, "json2"); /* */
    CHECK(run("eq(json2.array_mt, json.array_mt)\n"
              "eq(json2.encode(json.decode '[]'), '[]')\n"));
}

/* ------------------------------------------------------------------ */
/* Decode errors                                                       */
/* ------------------------------------------------------------------ */

static void
test_trailing_comma_is_an_error(void)
{
    CHECK(run("decode_error('[1,]', 'expected a value at offset 3')\n"
              "decode_error('{\"a\":1,}', 'expected a string key at "
              "offset 7')\n"
              "decode_error('[,]', 'expected a value at offset 1')\n"));
}

static void
test_leading_zero_is_an_error(void)
{
    CHECK(run("decode_error('01', 'leading zero in number at offset 0')\n"
              "decode_error('[-012]', 'leading zero in number at offset 2')\n"
              "eq(json.decode '0', 0)\n"
              "eq(json.decode '0.5', 0.5)\n"));
}

static void
test_malformed_numbers_are_errors(void)
{
    CHECK(run("decode_error('-', 'invalid number at offset 1')\n"
              "decode_error('1.', 'invalid number fraction at offset 1')\n"
              "decode_error('.5', 'expected a value at offset 0')\n"
              "decode_error('1e', 'invalid number exponent at offset 2')\n"
              "decode_error('1e+', 'invalid number exponent at offset 3')\n"
              "decode_error('+1', 'expected a value')\n"
              "decode_error('0x10', 'unexpected data after the value')\n"
              "decode_error('NaN', 'expected a value')\n"
              "decode_error('Infinity', 'expected a value')\n"
              "decode_error('-Infinity', 'invalid number')\n"));
}

static void
test_unterminated_string_is_an_error(void)
{
    CHECK(run("decode_error('\"abc', 'unterminated string at offset 0')\n"
              "decode_error('[\"a\\\\\"]', 'unterminated string at offset 1')\n"
              "decode_error('\"\\\\', 'invalid escape')\n"));
}

static void
test_control_character_in_string_is_an_error(void)
{
    CHECK(run("decode_error('\"a\\nb\"', 'control character in string at "
              "offset 2')\n"
              "decode_error('\"a\\0b\"', 'control character in string at "
              "offset 2')\n"
              "decode_error('\"a\\\\qb\"', 'invalid escape in string at "
              "offset 2')\n"));
}

static void
test_lone_surrogate_is_an_error(void)
{
    CHECK(run("decode_error([[\"\\ud83d\"]], 'lone UTF-16 surrogate')\n"
              "decode_error([[\"\\ude00\\ud83d\"]], 'surrogate in \\\\u "
              "escape at offset 1')\n"
              "decode_error([[\"\\ude00\\ude00\"]], 'lone UTF-16')\n"
              "decode_error([[\"\\ud83dx\\ude00\"]], 'lone UTF-16')\n"
              "decode_error([[\"\\ud83d\\u0041\"]], 'lone UTF-16')\n"
              "decode_error([[\"\\ud83d\\u\"]], 'lone UTF-16')\n"
              "decode_error([[\"\\u12\"]], 'invalid \\\\u escape')\n"
              "decode_error([[\"\\u12G4\"]], 'invalid \\\\u escape')\n"));
}

static void
test_depth_33_is_an_error_by_default(void)
{
    CHECK(run("local function nest(n)\n"
              "  return string.rep('[', n) .. string.rep(']', n)\n"
              "end\n"
              "assert(json.decode(nest(32)))\n"
              "decode_error(nest(33), 'nesting too deep at offset 32')\n"
              "decode_error(string.rep('{\"a\":', 33) .. '1' ..\n"
              "             string.rep('}', 33), 'nesting too deep')\n"));
}

static void
test_max_depth_argument_changes_the_limit(void)
{
    CHECK(run("local function nest(n)\n"
              "  return string.rep('[', n) .. string.rep(']', n)\n"
              "end\n"
              "decode_error('[[1]]', 'nesting too deep', 1)\n"
              "decode_error('[]', 'nesting too deep', 0)\n"
              "eq(json.decode('1', 0), 1, 'scalar at depth 0')\n"
              "local v = assert(json.decode(nest(1000), 1000))\n"
              "for _ = 1, 999 do v = v[1] end\n"
              "eq(getmetatable(v), json.array_mt, 'innermost')\n"
              "assert(not pcall(json.decode, '[]', 1001))\n"
              "assert(not pcall(json.decode, '[]', -1))\n"));
}

static void
test_garbage_after_value_is_an_error(void)
{
    CHECK(run("decode_error('[] x', 'unexpected data after the value at "
              "offset 3')\n"
              "decode_error('1 2', 'unexpected data after the value')\n"
              "decode_error('{}}', 'unexpected data after the value')\n"
              "decode_error('truex', 'unexpected data after the value')\n"
              "decode_error('null\\0', 'unexpected data after the value')\n"));
}

static void
test_empty_input_is_an_error(void)
{
    CHECK(run("decode_error('', 'unexpected end of input at offset 0')\n"
              "decode_error(' \\n\\t', 'unexpected end of input at offset "
              "3')\n"
              "decode_error('[1,', 'unexpected end of input at offset 3')\n"
              "decode_error('{\"a\"', \"expected ':' at offset 4\")\n"
              "decode_error('[1', \"expected ',' or ']' at offset 2\")\n"
              "decode_error('{\"a\":1',\n"
              "             \"expected ',' or '}' at offset 6\")\n"));
}

static void
test_non_json_syntax_is_an_error(void)
{
    CHECK(run("decode_error('[1] // c', 'unexpected data after the value')\n"
              "decode_error('/* c */ 1', 'expected a value at offset 0')\n"
              "decode_error(\"'a'\", 'expected a value')\n"
              "decode_error('{a:1}', 'expected a string key at offset 1')\n"
              "decode_error('{1:1}', 'expected a string key')\n"
              "decode_error('[tru]', 'invalid literal at offset 1')\n"
              "decode_error('nul', 'invalid literal')\n"
              "decode_error('\\xef\\xbb\\xbf1', 'expected a value')\n"
              "decode_error('\\v1', 'expected a value')\n"));
}

static void
test_decode_raises_only_on_a_non_string(void)
{
    CHECK(run("assert(not pcall(json.decode, 1))\n"
              "assert(not pcall(json.decode, nil))\n"
              "assert(not pcall(json.decode, {}))\n"
              "assert(not pcall(json.decode, '1', 'x'))\n"
              "local ok, v, err = pcall(json.decode, '[')\n"
              "assert(ok and v == nil and err)\n"));
}

/* ------------------------------------------------------------------ */
/* Encode errors                                                       */
/* ------------------------------------------------------------------ */

static void
test_encode_rejects_functions_and_userdata(void)
{
    CHECK(run("encode_error(print, 'cannot encode a value of type function')\n"
              "encode_error({ f = print }, 'type function')\n"
              "encode_error(io.stdout, 'cannot encode a value of type "
              "userdata')\n"
              "encode_error(coroutine.create(print), 'type thread')\n"));
}

static void
test_encode_rejects_nan_and_infinity(void)
{
    CHECK(run("encode_error(0 / 0, 'cannot encode NaN or infinity')\n"
              "encode_error(math.huge, 'NaN or infinity')\n"
              "encode_error({ -math.huge }, 'NaN or infinity')\n"));
}

static void
test_encode_rejects_mixed_keys(void)
{
    CHECK(run("encode_error({ 1, 2, x = 3 }, 'cannot encode a table with "
              "mixed keys')\n"
              "encode_error({ x = 3, [1] = 1 }, 'mixed keys')\n"
              "encode_error({ [0] = 'a' }, 'mixed keys')\n"
              "encode_error({ [1.5] = 'a' }, 'mixed keys')\n"
              "encode_error({ [true] = 1 }, 'cannot encode a table key of "
              "type boolean')\n"
              "encode_error({ a = 1, [{}] = 1 }, 'key of type table')\n"
              "encode_error({ 1, nil, 3 }, 'cannot encode a sparse "
              "array')\n"));
}

static void
test_encode_rejects_cycles_and_deep_nesting(void)
{
    CHECK(run("local t = {}\n"
              "t.self = t\n"
              "encode_error(t, 'nested deeper than 64')\n"
              "local a = json.array()\n"
              "a[1] = a\n"
              "encode_error(a, 'is there a cycle?')\n"
              "local deep = {}\n"
              "for _ = 1, 63 do deep = { deep } end\n"
              "eq(#json.encode(deep), 64 * 2, '64 levels')\n"
              "encode_error({ deep }, 'nested deeper than 64')\n"));
}

static void
test_encode_writes_scalars(void)
{
    CHECK(run("eq(json.encode(true), 'true')\n"
              "eq(json.encode(false), 'false')\n"
              "eq(json.encode(nil), 'null')\n"
              "eq(json.encode(-7), '-7')\n"
              "eq(json.encode { a = { b = false } },\n"
              "   [[{\"a\":{\"b\":false}}]])\n"
              "assert(not pcall(json.encode))\n"));
}

/* ------------------------------------------------------------------ */
/* Runner                                                              */
/* ------------------------------------------------------------------ */

struct test {
    const char *name;
    void (*fn)(void);
};

#define TEST(fn)                                                               \
    {                                                                          \
#fn, fn                                                                \
    }

static const struct test tests[] = {
    TEST(test_empty_array_round_trips),
    TEST(test_empty_object_round_trips),
    TEST(test_nested_document_keeps_its_empty_arrays),
    TEST(test_nested_arrays_round_trip),
    TEST(test_pretty_input_round_trips_compact),
    TEST(test_large_document_round_trips),
    TEST(test_members_keep_order_and_raw_text),
    TEST(test_members_reject_what_decode_rejects),
    TEST(test_integer_literal_decodes_to_integer),
    TEST(test_fraction_decodes_to_float),
    TEST(test_minus_zero_decodes_to_integer_zero),
    TEST(test_exponent_decodes_to_float),
    TEST(test_integer_beyond_2_53_stays_exact),
    TEST(test_integer_limits_and_overflow),
    TEST(test_huge_integer_literal_becomes_float),
    TEST(test_floats_read_back_equal),
    TEST(test_out_of_range_number_is_an_error),
    TEST(test_string_escapes_decode),
    TEST(test_surrogate_pair_decodes_to_utf8),
    TEST(test_strings_encode_with_minimal_escapes),
    TEST(test_invalid_utf8_passes_through),
    TEST(test_long_strings_round_trip),
    TEST(test_duplicate_key_last_wins),
    TEST(test_null_round_trips),
    TEST(test_array_holes_encode_as_null),
    TEST(test_plain_sequence_encodes_as_array),
    TEST(test_array_sets_and_returns_the_metatable),
    TEST(test_modules_of_one_state_share_array_mt),
    TEST(test_trailing_comma_is_an_error),
    TEST(test_leading_zero_is_an_error),
    TEST(test_malformed_numbers_are_errors),
    TEST(test_unterminated_string_is_an_error),
    TEST(test_control_character_in_string_is_an_error),
    TEST(test_lone_surrogate_is_an_error),
    TEST(test_depth_33_is_an_error_by_default),
    TEST(test_max_depth_argument_changes_the_limit),
    TEST(test_garbage_after_value_is_an_error),
    TEST(test_empty_input_is_an_error),
    TEST(test_non_json_syntax_is_an_error),
    TEST(test_decode_raises_only_on_a_non_string),
    TEST(test_encode_rejects_functions_and_userdata),
    TEST(test_encode_rejects_nan_and_infinity),
    TEST(test_encode_rejects_mixed_keys),
    TEST(test_encode_rejects_cycles_and_deep_nesting),
    TEST(test_encode_writes_scalars),
};

/* A fresh state with the standard libraries, `json` and PRELUDE; the
 * caller closes it.  NULL if the state cannot be set up. */
static lua_State *
new_state(void)
{
    lua_State *S = luaL_newstate();

    if (S == NULL) {
        return NULL;
    }
    luaL_openlibs(S);
    ab_luaopen_json(S);                        /* M */
    lua_setglobal(S, "json");                  /* */
    if (luaL_dostring(S, PRELUDE) != LUA_OK) { /* | err */
        fprintf(stderr, "prelude: %s\n", lua_tostring(S, -1));
        lua_close(S);
        return NULL;
    }
    return S;
}

int
main(void)
{
    size_t i;

    for (i = 0; i < sizeof(tests) / sizeof(tests[0]); i++) {
        current_name = tests[i].name;
        current_failed = 0;
        L = new_state();
        if (L == NULL) {
            current_failed = 1;
        } else {
            tests[i].fn();
            CHECK(lua_gettop(L) == 0);
            lua_close(L);
        }
        if (current_failed) {
            tests_failed++;
        } else {
            tests_passed++;
        }
    }
    printf("%d passed, %d failed\n", tests_passed, tests_failed);
    return tests_failed == 0 ? 0 : 1;
}
