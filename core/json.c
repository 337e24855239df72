/*
 * json.c - strict JSON decoding into Lua values and encoding back.
 *
 * The decoder is a recursive-descent parser.  It relies on every Lua
 * string ending in a NUL byte, which no JSON token accepts, so its hot
 * loops stop at the end of the input without testing for it and only
 * then ask whether they stopped at the end or at a bad byte.
 *
 * The encoder writes into a growable buffer held by a userdata at a
 * fixed stack slot.  A luaL_Buffer would have to stay at the top of the
 * stack, which table traversal with lua_next cannot allow; this buffer
 * lets the traversal use the stack above it freely.
 */
#include "json.h"

#include <lauxlib.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Registry name of the array metatable, also its __name. */
#define ARRAY_MT "json.array"

/* Upvalue of decode, encode and array: the array metatable. */
#define UV_ARRAY_MT lua_upvalueindex(1)

/* Free stack slots made sure of at each nesting level: the container,
 * a key, a value, and what luaL_Buffer or a number conversion push. */
#define STACK_SLACK 8

/* First size of the encoder's buffer. */
#define ENCODE_BUFFER_START 1024

#if defined(__GNUC__)
#define NOINLINE __attribute__((noinline))
#else
#define NOINLINE
#endif

#define ROW(x) x, x, x, x, x, x, x, x, x, x, x, x, x, x, x, x

/* Bytes that end a run of plain string bytes, both ways: control
 * characters (NUL among them, so the end of the input too), '"', '\'. */
static const unsigned char special[256] = {
    ROW(1),
    ROW(1),
    ['"'] = 1,
    ['\\'] = 1,
};

/* Decoding: the byte a one-letter escape stands for, or 0. */
static const char unescape[256] = {
    ['"'] = '"',  ['\\'] = '\\', ['/'] = '/',  ['b'] = '\b',
    ['f'] = '\f', ['n'] = '\n',  ['r'] = '\r', ['t'] = '\t',
};

/* Encoding: the letter of a special byte's short escape, or 0. */
static const char short_escape[256] = {
    ['"'] = '"',  ['\\'] = '\\', ['\b'] = 'b', ['\f'] = 'f',
    ['\n'] = 'n', ['\r'] = 'r',  ['\t'] = 't',
};

static const char hex_digits[] = "0123456789abcdef";

/* Returns the first special byte at or after p: the hot loop of both
 * directions.  Stops at the NUL that ends every Lua string. */
static inline const char *
skip_plain(const char *p)
{
    while (!special[(unsigned char)*p]) {
        p++;
    }
    return p;
}

/* ------------------------------------------------------------------ */
/* Decoding                                                            */
/* ------------------------------------------------------------------ */

struct parser {
    lua_State *L;
    const char *start; /* the input; Lua ends it with a NUL */
    const char *end;   /* start + length: that NUL */
    const char *p;     /* next byte to read */
    int depth;         /* containers open around p */
    int max_depth;
    const char *err;    /* what went wrong (static text), or NULL */
    const char *err_at; /* where */
};

static int parse_value(struct parser *ps);

/* Records the first error; every parse step returns its -1. */
static int
fail(struct parser *ps, const char *at, const char *what)
{
    ps->err = what;
    ps->err_at = at;
    return -1;
}

/* fail() for the steps that return a pointer: always NULL. */
static const char *
fail_null(struct parser *ps, const char *at, const char *what)
{
    fail(ps, at, what);
    return NULL;
}

/* Moves past JSON whitespace; stops at the NUL that ends the input.
 * Compact JSON has none, so the first test usually ends it. */
static inline void
skip_ws(struct parser *ps)
{
    const char *p = ps->p;

    if ((unsigned char)*p > ' ') {
        return;
    }
    while (*p == ' ' || *p == '\n' || *p == '\r' || *p == '\t') {
        p++;
    }
    ps->p = p;
}

/* Value of four hex digits at p, or -1.  Stops at the final NUL. */
static int
hex4(const char *p)
{
    int v = 0, i;

    for (i = 0; i < 4; i++) {
        unsigned char c = (unsigned char)p[i];

        if (c >= '0' && c <= '9') {
            v = v * 16 + (c - '0');
        } else if ((c | 0x20) >= 'a' && (c | 0x20) <= 'f') {
            v = v * 16 + ((c | 0x20) - 'a' + 10);
        } else {
            return -1;
        }
    }
    return v;
}

/* Adds code point cp (at most 0x10FFFF) to b as UTF-8. */
static void
add_utf8(luaL_Buffer *b, unsigned cp)
{
    char u[4];
    size_t n;

    if (cp < 0x80) {
        u[0] = (char)cp;
        n = 1;
    } else if (cp < 0x800) {
        u[0] = (char)(0xC0 | cp >> 6);
        u[1] = (char)(0x80 | (cp & 0x3F));
        n = 2;
    } else if (cp < 0x10000) {
        u[0] = (char)(0xE0 | cp >> 12);
        u[1] = (char)(0x80 | (cp >> 6 & 0x3F));
        u[2] = (char)(0x80 | (cp & 0x3F));
        n = 3;
    } else {
        u[0] = (char)(0xF0 | cp >> 18);
        u[1] = (char)(0x80 | (cp >> 12 & 0x3F));
        u[2] = (char)(0x80 | (cp >> 6 & 0x3F));
        u[3] = (char)(0x80 | (cp & 0x3F));
        n = 4;
    }
    luaL_addlstring(b, u, n); /* buf */
}

/* Decodes the \u escape (four hex digits) at p into b; a surrogate
 * pair takes two.  Returns the byte after it, or NULL after fail(). */
static const char *
add_unicode(struct parser *ps, luaL_Buffer *b, const char *p)
{
    int cp = hex4(p + 2), lo;

    if (cp < 0) {
        return fail_null(ps, p, "invalid \\u escape");
    }
    if (cp >= 0xD800 && cp <= 0xDFFF) {
        /* p[2..5] are hex digits, so p[6] is at most the final NUL,
         * and p[7] is read only when p[6] is not */
        if (cp >= 0xDC00 || p[6] != '\\' || p[7] != 'u' ||
            (lo = hex4(p + 8)) < 0xDC00 || lo > 0xDFFF) {
            return fail_null(ps, p, "lone UTF-16 surrogate in \\u escape");
        }
        add_utf8(b, 0x10000 + ((unsigned)(cp - 0xD800) << 10) +
                        (unsigned)(lo - 0xDC00));
        return p + 12;
    }
    add_utf8(b, (unsigned)cp);
    return p + 6;
}

/* Decodes the escape at p (a backslash) into b.  Returns the byte
 * after it, or NULL after fail(). */
static const char *
add_escape(struct parser *ps, luaL_Buffer *b, const char *p)
{
    char c = unescape[(unsigned char)p[1]];

    if (c != 0) {
        luaL_addchar(b, c); /* buf */
        return p + 2;
    }
    if (p[1] == 'u') {
        return add_unicode(ps, b, p);
    }
    return fail_null(ps, p, "invalid escape in string");
}

/* The error for a string run that stopped at p, neither at '"' nor at
 * a backslash. */
static int
fail_in_string(struct parser *ps, const char *p)
{
    if (p == ps->end) {
        return fail(ps, ps->p, "unterminated string");
    }
    return fail(ps, p, "control character in string");
}

/* Slow path of parse_string, for a string with escapes: `run` is its
 * first byte and p the first special one.  Pushes the string (+1), or
 * returns -1 with a buffer left on the stack for the caller's settop.
 * Kept out of line so that the recursive parser's frames stay small. */
static NOINLINE int
parse_escaped(struct parser *ps, const char *run, const char *p)
{
    luaL_Buffer b;

    luaL_buffinit(ps->L, &b); /* buf */
    for (;;) {
        luaL_addlstring(&b, run, (size_t)(p - run)); /* buf */
        if (*p == '"') {
            break;
        }
        if (*p != '\\') {
            return fail_in_string(ps, p);
        }
        p = add_escape(ps, &b, p);
        if (p == NULL) {
            return -1;
        }
        run = p;
        p = skip_plain(p);
    }
    luaL_pushresult(&b); /* s */
    ps->p = p + 1;
    return 0;
}

/* Parses the string at ps->p (a '"'); pushes it (+1). */
static int
parse_string(struct parser *ps)
{
    const char *run = ps->p + 1, *p = skip_plain(run);

    if (*p != '"') {
        return parse_escaped(ps, run, p);
    }
    lua_pushlstring(ps->L, run, (size_t)(p - run)); /* s */
    ps->p = p + 1;
    return 0;
}

/* Skips the digits at p; returns the first byte that is not one. */
static const char *
skip_digits(const char *p)
{
    while (*p >= '0' && *p <= '9') {
        p++;
    }
    return p;
}

/* Checks the syntax of the number at ps->p.  Returns the byte after
 * it and sets *is_float when it has a fraction or an exponent; NULL
 * after fail(). */
static const char *
scan_number(struct parser *ps, int *is_float)
{
    const char *p = ps->p + (*ps->p == '-');

    if (*p == '0') {
        p++;
    } else if (*p >= '1' && *p <= '9') {
        p = skip_digits(p + 1);
    } else {
        return fail_null(ps, p, "invalid number");
    }
    if (*p >= '0' && *p <= '9') {
        return fail_null(ps, p - 1, "leading zero in number");
    }
    *is_float = (*p == '.' || *p == 'e' || *p == 'E');
    if (*p == '.') {
        if (p[1] < '0' || p[1] > '9') {
            return fail_null(ps, p, "invalid number fraction");
        }
        p = skip_digits(p + 1);
    }
    if (*p == 'e' || *p == 'E') {
        p += (p[1] == '+' || p[1] == '-') ? 2 : 1;
        if (*p < '0' || *p > '9') {
            return fail_null(ps, p, "invalid number exponent");
        }
        p = skip_digits(p);
    }
    return p;
}

/* Converts the integer literal [s, e) if it fits a lua_Integer.
 * Returns 1 and sets *out, or 0. */
static int
to_integer(const char *s, const char *e, lua_Integer *out)
{
    int neg = (*s == '-');
    lua_Unsigned v = 0, limit = (lua_Unsigned)LUA_MAXINTEGER + neg;

    s += neg;
    if (e - s > 19) {
        return 0;
    }
    for (; s < e; s++) {
        lua_Unsigned d = (lua_Unsigned)(*s - '0');

        if (v > (limit - d) / 10) {
            return 0;
        }
        v = v * 10 + d;
    }
    *out = neg ? (lua_Integer)(0u - v) : (lua_Integer)v;
    return 1;
}

/* Pushes the float literal [s, e), whose syntax is checked (+1).
 * strtod reads the C locale's decimal point; under another locale the
 * literal goes through lua_stringtonumber, which adapts it. */
static int
push_float(struct parser *ps, const char *s, const char *e)
{
    char *stop;
    double d = strtod(s, &stop);

    if (stop != e) {
        lua_pushlstring(ps->L, s, (size_t)(e - s)); /* lit */
        if (lua_stringtonumber(ps->L, lua_tostring(ps->L, -1)) == 0) {
            return fail(ps, s, "invalid number");
        } /* lit num */
        d = lua_tonumber(ps->L, -1);
        lua_pop(ps->L, 2); /* */
    }
    if (isinf(d)) {
        return fail(ps, s, "number out of range");
    }
    lua_pushnumber(ps->L, d); /* num */
    return 0;
}

/* Parses the number at ps->p; pushes it (+1), an integer when it has
 * no fraction or exponent and fits, else a float. */
static int
parse_number(struct parser *ps)
{
    const char *s = ps->p, *e;
    int is_float;
    lua_Integer i;

    e = scan_number(ps, &is_float);
    if (e == NULL) {
        return -1;
    }
    ps->p = e;
    if (!is_float && to_integer(s, e, &i)) {
        lua_pushinteger(ps->L, i); /* int */
        return 0;
    }
    return push_float(ps, s, e);
}

/* Parses the literal `word` (true, false or null) at ps->p and pushes
 * its value (+1). */
static int
parse_literal(struct parser *ps, const char *word, size_t len)
{
    /* strncmp stops at the NUL that ends the input */
    if (strncmp(ps->p, word, len) != 0) {
        return fail(ps, ps->p, "invalid literal");
    }
    ps->p += len;
    if (word[0] == 'n') {
        lua_pushlightuserdata(ps->L, NULL); /* null */
    } else {
        lua_pushboolean(ps->L, word[0] == 't'); /* bool */
    }
    return 0;
}

/* Opens a container: one level deeper, and room on the Lua stack. */
static int
enter(struct parser *ps)
{
    if (++ps->depth > ps->max_depth) {
        return fail(ps, ps->p, "nesting too deep");
    }
    if (!lua_checkstack(ps->L, STACK_SLACK)) {
        return fail(ps, ps->p, "nesting too deep for the Lua stack");
    }
    ps->p++;
    return 0;
}

/* Parses the array at ps->p (a '['); pushes a table with the array
 * metatable (+1). */
static int
parse_array(struct parser *ps)
{
    lua_State *L = ps->L;
    lua_Integer n = 0;

    if (enter(ps) < 0) {
        return -1;
    }
    lua_newtable(L);               /* arr */
    lua_pushvalue(L, UV_ARRAY_MT); /* arr mt */
    lua_setmetatable(L, -2);       /* arr */
    skip_ws(ps);
    if (*ps->p != ']') {
        for (;;) {
            if (parse_value(ps) < 0) {
                return -1;
            }                        /* arr v */
            lua_rawseti(L, -2, ++n); /* arr */
            skip_ws(ps);
            if (*ps->p != ',') {
                break;
            }
            ps->p++;
        }
        if (*ps->p != ']') {
            return fail(ps, ps->p, "expected ',' or ']'");
        }
    }
    ps->p++;
    ps->depth--;
    return 0;
}

/* Parses one `"key": value` member into the table on top; ps->p is at
 * the key's opening quote after any whitespace. */
static int
parse_member(struct parser *ps)
{
    if (*ps->p != '"') {
        return fail(ps, ps->p, "expected a string key");
    }
    if (parse_string(ps) < 0) {
        return -1;
    } /* obj k */
    skip_ws(ps);
    if (*ps->p != ':') {
        return fail(ps, ps->p, "expected ':'");
    }
    ps->p++;
    if (parse_value(ps) < 0) {
        return -1;
    }                      /* obj k v */
    lua_rawset(ps->L, -3); /* obj */
    return 0;
}

/* Parses the object at ps->p (a '{'); pushes a plain table (+1).  The
 * last of duplicate keys wins. */
static int
parse_object(struct parser *ps)
{
    if (enter(ps) < 0) {
        return -1;
    }
    lua_newtable(ps->L); /* obj */
    skip_ws(ps);
    if (*ps->p != '}') {
        for (;;) {
            if (parse_member(ps) < 0) {
                return -1;
            }
            skip_ws(ps);
            if (*ps->p != ',') {
                break;
            }
            ps->p++;
            skip_ws(ps);
        }
        if (*ps->p != '}') {
            return fail(ps, ps->p, "expected ',' or '}'");
        }
    }
    ps->p++;
    ps->depth--;
    return 0;
}

/* Parses any value after optional whitespace; pushes it (+1). */
static int
parse_value(struct parser *ps)
{
    skip_ws(ps);
    switch (*ps->p) {
    case '"':
        return parse_string(ps);
    case '{':
        return parse_object(ps);
    case '[':
        return parse_array(ps);
    case 't':
        return parse_literal(ps, "true", 4);
    case 'f':
        return parse_literal(ps, "false", 5);
    case 'n':
        return parse_literal(ps, "null", 4);
    default:
        break;
    }
    if (*ps->p == '-' || (*ps->p >= '0' && *ps->p <= '9')) {
        return parse_number(ps);
    }
    if (ps->p == ps->end) {
        return fail(ps, ps->p, "unexpected end of input");
    }
    return fail(ps, ps->p, "expected a value");
}

/* ------------------------------------------------------------------ */
/* Validating without building: skip_value                             */
/* ------------------------------------------------------------------ */

static int skip_value(struct parser *ps);

/* Skips the string at ps->p; a string with escapes takes the slow path
 * of the decoder so that escapes are checked the same way. */
static int
skip_string(struct parser *ps)
{
    const char *run = ps->p + 1, *p = skip_plain(run);

    if (*p != '"') {
        int top = lua_gettop(ps->L);
        int rc = parse_escaped(ps, run, p);

        lua_settop(ps->L, top);
        return rc;
    }
    ps->p = p + 1;
    return 0;
}

/* Skips one element of a container: a value, or for an object
 * (`close` is '}') a "key": value member. */
static int
skip_element(struct parser *ps, char close)
{
    if (close == '}') {
        skip_ws(ps);
        if (*ps->p != '"' || skip_string(ps) < 0) {
            return fail(ps, ps->p, "expected a string key");
        }
        skip_ws(ps);
        if (*ps->p != ':') {
            return fail(ps, ps->p, "expected ':'");
        }
        ps->p++;
    }
    return skip_value(ps);
}

/* Skips the array or object at ps->p (`close` is ']' or '}'). */
static int
skip_container(struct parser *ps, char close)
{
    if (enter(ps) < 0) {
        return -1;
    }
    skip_ws(ps);
    if (*ps->p != close) {
        for (;;) {
            if (skip_element(ps, close) < 0) {
                return -1;
            }
            skip_ws(ps);
            if (*ps->p != ',') {
                break;
            }
            ps->p++;
        }
    }
    if (*ps->p != close) {
        return fail(ps, ps->p,
                    close == ']' ? "expected ',' or ']'"
                                 : "expected ',' or '}'");
    }
    ps->p++;
    ps->depth--;
    return 0;
}

/* Checks the number at ps->p as the decoder would, without pushing. */
static int
skip_number(struct parser *ps)
{
    int is_float;
    const char *e = scan_number(ps, &is_float);

    if (e == NULL) {
        return -1;
    }
    if (is_float && isinf(strtod(ps->p, NULL))) {
        return fail(ps, ps->p, "number out of range");
    }
    ps->p = e;
    return 0;
}

/* Checks the value at ps->p (after optional whitespace) exactly as
 * parse_value would, but builds nothing. */
static int
skip_value(struct parser *ps)
{
    static const char *const words[] = {"true", "false", "null"};

    skip_ws(ps);
    switch (*ps->p) {
    case '"':
        return skip_string(ps);
    case '{':
        return skip_container(ps, '}');
    case '[':
        return skip_container(ps, ']');
    case 't':
    case 'f':
    case 'n': {
        const char *w = words[*ps->p == 't' ? 0 : *ps->p == 'f' ? 1 : 2];
        if (strncmp(ps->p, w, strlen(w)) != 0) {
            return fail(ps, ps->p, "invalid literal");
        }
        ps->p += strlen(w);
        return 0;
    }
    default:
        break;
    }
    if (*ps->p == '-' || (*ps->p >= '0' && *ps->p <= '9')) {
        return skip_number(ps);
    }
    return fail(ps, ps->p,
                ps->p == ps->end ? "unexpected end of input"
                                 : "expected a value");
}

/* Parses one member into the array on top of the stack as the key
 * and the raw text of its value; `n` counts the array's items. */
static int
parse_raw_member(struct parser *ps, lua_Integer *n)
{
    const char *v;

    skip_ws(ps);
    if (*ps->p != '"' || parse_string(ps) < 0) {
        return fail(ps, ps->p, "expected a string key");
    }                             /* arr k */
    lua_rawseti(ps->L, -2, ++*n); /* arr */
    skip_ws(ps);
    if (*ps->p != ':') {
        return fail(ps, ps->p, "expected ':'");
    }
    ps->p++;
    skip_ws(ps);
    v = ps->p;
    if (skip_value(ps) < 0) {
        return -1;
    }
    lua_pushlstring(ps->L, v, (size_t)(ps->p - v)); /* arr raw */
    lua_rawseti(ps->L, -2, ++*n);                   /* arr */
    return 0;
}

/* Parses the object that is the whole input into the array on top of
 * the stack as key, raw value text, key, raw value text, ... */
static int
parse_members(struct parser *ps)
{
    lua_Integer n = 0;

    skip_ws(ps);
    if (*ps->p != '{') {
        return fail(ps, ps->p, "expected an object");
    }
    if (enter(ps) < 0) { /* the object counts as one level, as in decode */
        return -1;
    }
    skip_ws(ps);
    if (*ps->p != '}') {
        for (;;) {
            if (parse_raw_member(ps, &n) < 0) {
                return -1;
            }
            skip_ws(ps);
            if (*ps->p != ',') {
                break;
            }
            ps->p++;
        }
    }
    if (*ps->p != '}') {
        return fail(ps, ps->p, "expected ',' or '}'");
    }
    ps->p++;
    skip_ws(ps);
    return ps->p == ps->end
               ? 0
               : fail(ps, ps->p, "unexpected data after the value");
}

/* members(s [, max_depth]) -> {k1, raw1, k2, raw2, ...} | nil, err:
 * the members of a JSON object in order, each value as its own JSON
 * text, checked as decode() checks it but not built.  Lets the broker
 * relay large answers without building Lua values for them.  Called
 * from Lua. */
static int
json_members(lua_State *L)
{
    struct parser ps;
    size_t len;

    luaL_checktype(L, 1, LUA_TSTRING);
    memset(&ps, 0, sizeof(ps));
    ps.max_depth = (int)luaL_optinteger(L, 2, AB_JSON_DECODE_DEPTH);
    luaL_argcheck(
        L, ps.max_depth >= 0 && ps.max_depth <= AB_JSON_DECODE_DEPTH_LIMIT, 2,
        "depth out of range");
    lua_settop(L, 1); /* s */
    ps.L = L;
    ps.start = ps.p = lua_tolstring(L, 1, &len);
    ps.end = ps.start + len;
    lua_newtable(L); /* s arr */
    if (parse_members(&ps) == 0) {
        return 1;
    }
    lua_settop(L, 1); /* s */
    lua_pushnil(L);   /* s nil */
    lua_pushfstring(L, "%s at offset %I", ps.err,
                    (lua_Integer)(ps.err_at - ps.start)); /* s nil err */
    return 2;
}

/* decode(s [, max_depth]) -> value | nil, err.  Called from Lua. */
static int
json_decode(lua_State *L)
{
    struct parser ps;
    size_t len;
    lua_Integer depth;

    luaL_checktype(L, 1, LUA_TSTRING);
    depth = luaL_optinteger(L, 2, AB_JSON_DECODE_DEPTH);
    luaL_argcheck(L, depth >= 0 && depth <= AB_JSON_DECODE_DEPTH_LIMIT, 2,
                  "depth out of range");
    lua_settop(L, 1); /* s */
    memset(&ps, 0, sizeof(ps));
    ps.L = L;
    ps.start = ps.p = lua_tolstring(L, 1, &len);
    ps.end = ps.start + len;
    ps.max_depth = (int)depth;

    if (parse_value(&ps) == 0) { /* s v */
        skip_ws(&ps);
        if (ps.p == ps.end) {
            return 1;
        }
        fail(&ps, ps.p, "unexpected data after the value");
    }
    lua_settop(L, 1); /* s */
    lua_pushnil(L);   /* s nil */
    lua_pushfstring(L, "%s at offset %I", ps.err,
                    (lua_Integer)(ps.err_at - ps.start)); /* s nil err */
    return 2;
}

/* ------------------------------------------------------------------ */
/* Encoding                                                            */
/* ------------------------------------------------------------------ */

struct encoder {
    lua_State *L;
    int slot;  /* stack index of the userdata that holds buf */
    char *buf; /* owned by that userdata */
    size_t len;
    size_t cap;
    int depth; /* tables open */
};

static void encode_value(struct encoder *en, int idx);

/* Makes room for `need` more bytes: a buffer twice as large (or more)
 * replaces the old one in its stack slot, which the GC then frees. */
static NOINLINE void
grow(struct encoder *en, size_t need)
{
    size_t cap = en->cap;
    char *buf;

    if (need > (size_t)-1 / 4 - en->len) {
        luaL_error(en->L, "cannot encode: output too large");
    }
    while (cap - en->len < need) {
        cap *= 2;
    }
    buf = lua_newuserdatauv(en->L, cap, 0); /* ... buf' */
    memcpy(buf, en->buf, en->len);
    lua_replace(en->L, en->slot); /* ... */
    en->buf = buf;
    en->cap = cap;
}

/* Returns where the next n bytes go; the caller adds n to en->len. */
static inline char *
reserve(struct encoder *en, size_t n)
{
    if (en->cap - en->len < n) {
        grow(en, n);
    }
    return en->buf + en->len;
}

/* Appends n bytes; the two below are the whole way output grows. */
static inline void
add(struct encoder *en, const char *s, size_t n)
{
    memcpy(reserve(en, n), s, n);
    en->len += n;
}

static inline void
add_char(struct encoder *en, char c)
{
    *reserve(en, 1) = c;
    en->len++;
}

/* Adds the escape of special byte c: \" \\ \b \f \n \r \t or \u00XX. */
static void
add_escaped_byte(struct encoder *en, unsigned char c)
{
    char *o = reserve(en, 6);

    o[0] = '\\';
    if (short_escape[c] != 0) {
        o[1] = short_escape[c];
        en->len += 2;
        return;
    }
    memcpy(o + 1, "u00", 3);
    o[4] = hex_digits[c >> 4];
    o[5] = hex_digits[c & 15];
    en->len += 6;
}

/* Adds s (a Lua string: s[len] is NUL) as a quoted JSON string.  Other
 * bytes, invalid UTF-8 among them, pass through. */
static void
add_string(struct encoder *en, const char *s, size_t len)
{
    const char *end = s + len, *run;

    add_char(en, '"');
    for (;;) {
        run = s;
        s = skip_plain(s);
        add(en, run, (size_t)(s - run));
        if (s == end) {
            break;
        }
        add_escaped_byte(en, (unsigned char)*s++);
    }
    add_char(en, '"');
}

/* Appends v in decimal, exactly. */
static void
add_integer(struct encoder *en, lua_Integer v)
{
    char tmp[24], *p = tmp + sizeof(tmp);
    lua_Unsigned u = v < 0 ? 0u - (lua_Unsigned)v : (lua_Unsigned)v;

    do {
        *--p = (char)('0' + u % 10);
        u /= 10;
    } while (u != 0);
    if (v < 0) {
        *--p = '-';
    }
    add(en, p, (size_t)(tmp + sizeof(tmp) - p));
}

/* Rewrites the %g text s (n bytes) in place: the locale's decimal point
 * becomes '.', and ".0" follows a float that reads like an integer, so
 * that it decodes to a float again.  Returns the new length. */
static int
fix_float_text(char *s, int n)
{
    int i, o = 0, integral = 1;

    for (i = 0; i < n; i++) {
        char c = s[i];

        if ((c >= '0' && c <= '9') || c == '-' || c == '+') {
            s[o++] = c;
        } else if (c == 'e') {
            s[o++] = c;
            integral = 0;
        } else if (o > 0 && s[o - 1] != '.') {
            s[o++] = '.';
            integral = 0;
        }
    }
    if (integral) {
        s[o++] = '.';
        s[o++] = '0';
    }
    return o;
}

/* Adds a finite float as the shortest %g text (15 to 17 digits) that
 * reads back as the same double. */
static void
add_float(struct encoder *en, lua_Number d)
{
    char tmp[48];
    int n = 0, prec;

    if (isnan(d) || isinf(d)) {
        luaL_error(en->L, "cannot encode NaN or infinity");
    }
    for (prec = 15; prec <= 17; prec++) {
        n = snprintf(tmp, sizeof(tmp) - 2, "%.*g", prec, (double)d);
        if (strtod(tmp, NULL) == d) {
            break;
        }
    }
    add(en, tmp, (size_t)fix_float_text(tmp, n));
}

/* Non-zero if the table at idx has the array metatable. */
static int
has_array_mt(lua_State *L, int idx)
{
    int yes;

    if (!lua_getmetatable(L, idx)) {
        return 0;
    } /* mt */
    yes = lua_rawequal(L, -1, UV_ARRAY_MT);
    lua_pop(L, 1); /* */
    return yes;
}

/* Adds elements 1..n of the table at idx as a JSON array; nil (a
 * hole) is null. */
static void
encode_array(struct encoder *en, int idx, lua_Integer n)
{
    lua_State *L = en->L;
    lua_Integer i;

    add_char(en, '[');
    for (i = 1; i <= n; i++) {
        if (i > 1) {
            add_char(en, ',');
        }
        lua_rawgeti(L, idx, i); /* v */
        encode_value(en, lua_gettop(L));
        lua_pop(L, 1); /* */
    }
    add_char(en, ']');
}

/* Raises for the key on top, which an object or array cannot have. */
static void
bad_key(lua_State *L)
{
    int t = lua_type(L, -1);

    if (t == LUA_TSTRING || t == LUA_TNUMBER) {
        luaL_error(L, "cannot encode a table with mixed keys");
    }
    luaL_error(L, "cannot encode a table key of type %s", luaL_typename(L, -1));
}

/* Returns n if the keys of the table at idx are exactly 1..n; raises
 * otherwise. */
static lua_Integer
count_array(struct encoder *en, int idx)
{
    lua_State *L = en->L;
    lua_Integer n = 0, max = 0, k;

    lua_pushnil(L);            /* nil */
    while (lua_next(L, idx)) { /* k v */
        lua_pop(L, 1);         /* k */
        if (!lua_isinteger(L, -1)) {
            bad_key(L);
        }
        k = lua_tointeger(L, -1);
        if (k < 1) {
            luaL_error(L, "cannot encode a table with mixed keys");
        }
        max = k > max ? k : max;
        n++;
    } /* */
    if (max != n) {
        luaL_error(L, "cannot encode a sparse array "
                      "(json.array() would encode its holes as null)");
    }
    return n;
}

/* Adds the table at idx as a JSON object; its first key and value are
 * on top of the stack (k v), and lua_next goes on from there. */
static void
encode_object(struct encoder *en, int idx)
{
    lua_State *L = en->L;
    const char *key;
    size_t len;
    int first = 1;

    add_char(en, '{');
    do { /* k v */
        if (lua_type(L, -2) != LUA_TSTRING) {
            lua_pop(L, 1); /* k */
            bad_key(L);
        }
        if (!first) {
            add_char(en, ',');
        }
        first = 0;
        key = lua_tolstring(L, -2, &len);
        add_string(en, key, len);
        add_char(en, ':');
        encode_value(en, lua_gettop(L));
        lua_pop(L, 1);          /* k */
    } while (lua_next(L, idx)); /* k v | */
    add_char(en, '}');
}

/* Adds a table without the array metatable: {} when empty, an array
 * when its keys are 1..n, else an object with string keys. */
static void
encode_plain_table(struct encoder *en, int idx)
{
    lua_State *L = en->L;

    lua_pushnil(L);          /* nil */
    if (!lua_next(L, idx)) { /* k v | */
        add(en, "{}", 2);
        return;
    }
    if (lua_type(L, -2) == LUA_TSTRING) {
        encode_object(en, idx);
        return;
    }
    lua_pop(L, 2); /* */
    encode_array(en, idx, count_array(en, idx));
}

/* Adds the table at idx as an array or an object; raises past
 * AB_JSON_ENCODE_DEPTH levels, which is also how a cycle ends. */
static void
encode_table(struct encoder *en, int idx)
{
    if (++en->depth > AB_JSON_ENCODE_DEPTH) {
        luaL_error(en->L,
                   "cannot encode tables nested deeper than %d "
                   "(is there a cycle?)",
                   AB_JSON_ENCODE_DEPTH);
    }
    luaL_checkstack(en->L, STACK_SLACK, "json nesting");
    if (has_array_mt(en->L, idx)) {
        encode_array(en, idx, (lua_Integer)lua_rawlen(en->L, idx));
    } else {
        encode_plain_table(en, idx);
    }
    en->depth--;
}

/* Adds the value at stack index idx (positive); raises on a value JSON
 * cannot hold.  nil, which only a hole or encode(nil) gives, is null. */
static void
encode_value(struct encoder *en, int idx)
{
    lua_State *L = en->L;
    const char *s;
    size_t len;

    switch (lua_type(L, idx)) {
    case LUA_TSTRING:
        s = lua_tolstring(L, idx, &len);
        add_string(en, s, len);
        return;
    case LUA_TNUMBER:
        if (lua_isinteger(L, idx)) {
            add_integer(en, lua_tointeger(L, idx));
        } else {
            add_float(en, lua_tonumber(L, idx));
        }
        return;
    case LUA_TBOOLEAN:
        add(en, lua_toboolean(L, idx) ? "true" : "false",
            lua_toboolean(L, idx) ? 4 : 5);
        return;
    case LUA_TTABLE:
        encode_table(en, idx);
        return;
    case LUA_TNIL:
        add(en, "null", 4);
        return;
    default:
        break;
    }
    if (lua_islightuserdata(L, idx) && lua_touserdata(L, idx) == NULL) {
        add(en, "null", 4);
        return;
    }
    luaL_error(L, "cannot encode a value of type %s", luaL_typename(L, idx));
}

/* encode(v) -> string.  Called from Lua; raises on values JSON cannot
 * hold. */
static int
json_encode(lua_State *L)
{
    struct encoder en;

    luaL_checkany(L, 1);
    lua_settop(L, 1); /* v */
    en.L = L;
    en.slot = 2;
    en.len = 0;
    en.cap = ENCODE_BUFFER_START;
    en.depth = 0;
    en.buf = lua_newuserdatauv(L, en.cap, 0); /* v buf */
    encode_value(&en, 1);
    lua_pushlstring(L, en.buf, en.len); /* v buf s */
    return 1;
}

/* array([t]) -> t with the array metatable.  Called from Lua. */
static int
json_array(lua_State *L)
{
    if (lua_isnoneornil(L, 1)) {
        lua_settop(L, 0); /* */
        lua_newtable(L);  /* t */
    } else {
        luaL_checktype(L, 1, LUA_TTABLE);
        lua_settop(L, 1); /* t */
    }
    lua_pushvalue(L, UV_ARRAY_MT); /* t mt */
    lua_setmetatable(L, 1);        /* t */
    return 1;
}

/* Pushes the module table (+1); see json.h.  Called by the Lua host. */
int
ab_luaopen_json(lua_State *L)
{
    static const luaL_Reg funcs[] = {
        {"decode", json_decode},
        {"encode", json_encode},
        {"array", json_array},
        {"members", json_members},
        {NULL, NULL},
    };

    lua_createtable(L, 0, 5);        /* M */
    luaL_newmetatable(L, ARRAY_MT);  /* M mt */
    lua_pushvalue(L, -1);            /* M mt mt */
    lua_setfield(L, -3, "array_mt"); /* M mt */
    luaL_setfuncs(L, funcs, 1);      /* M */
    lua_pushlightuserdata(L, NULL);  /* M null */
    lua_setfield(L, -2, "null");     /* M */
    return 1;
}
