-- Specs of the default identity plugins (plugins/10-identity.lua and
-- plugins/20-identity-type.lua), loaded as the host loads them: in a
-- restricted environment whose only way out is a fake `broker` module.
--
-- cd /work/main && busted --lpath='lua/?.lua;spec/?.lua;spec/support/?.lua' \
--     spec/unit/identity_spec.lua

local cjson = require "cjson.safe"
local sha256 = require "sha256"
local base64url = require "base64url"
local fake_crypto = require "fake_crypto"

local IDENTITY_PLUGIN = "plugins/10-identity.lua"
local TYPE_PLUGIN = "plugins/20-identity-type.lua"

local NOW = 1700000000
local SECRET = "a-test-secret-of-at-least-32-bytes!!"
local HS256 = '{"alg":"HS256","typ":"JWT"}'
local ALPHABET =
  "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"

------------------------------------------------------------------------
-- Helpers

-- A fake host: `state` is what a spec changes (env, config, clock) and
-- reads (logs); the `broker` table is what the plugin sees.
local function new_host()
  local state = {
    env = { AUTHKIT_JWT_SECRET = SECRET },
    config = { allow_header_identity = false, dev = false },
    now = NOW,
    logs = {},
  }
  local function logger(level)
    return function(msg)
      state.logs[#state.logs + 1] = { level = level, msg = msg }
    end
  end
  local broker = {
    env = function(name) return state.env[name] end,
    config = setmetatable({}, {
      __index = state.config,
      __newindex = function() error("broker.config is read-only", 2) end,
    }),
    now = function() return state.now end,
    json = { decode = cjson.decode, encode = cjson.encode,
         null = cjson.null },
    log = { debug = logger("debug"), info = logger("info"),
        warn = logger("warn"), error = logger("error") },
  }
  fake_crypto.install(broker)
  return broker, state
end

-- The globals a plugin may use, and nothing else.
local function sandbox(broker, with_global)
  local env = {
    string = string, table = table, math = math, utf8 = utf8,
    pairs = pairs, ipairs = ipairs, type = type, tostring = tostring,
    tonumber = tonumber, select = select, pcall = pcall, error = error,
    assert = assert, next = next, setmetatable = setmetatable,
    getmetatable = getmetatable, rawget = rawget, rawequal = rawequal,
    os = { time = os.time, clock = os.clock },
    require = function(name)
      if name ~= "broker" then
        error("module '" .. tostring(name) .. "' not allowed", 2)
      end
      return broker
    end,
  }
  if with_global ~= false then
    env.broker = broker
  end
  return env
end

local function load_plugin(path, broker, with_global)
  local chunk = assert(loadfile(path, "t", sandbox(broker, with_global)))
  return chunk()
end

local function b64(text)
  return base64url.encode(text)
end

-- An HS256 token of `claims` (a table, or JSON text) signed with `secret`.
local function make_token(claims, secret, header)
  local payload = type(claims) == "string" and claims
    or assert(cjson.encode(claims))
  return fake_crypto.sign_jwt(secret or SECRET, header or HS256, payload)
end

-- Claims of a valid token, with `extra` merged over them.
local function claims_with(extra)
  local claims = { sub = "user-42", exp = NOW + 3600, iat = NOW - 10 }
  for k, v in pairs(extra or {}) do
    claims[k] = v
  end
  return claims
end

local function request(headers)
  return {
    method = "POST", path = "/api/authkit/token", query = {},
    headers = headers or {}, body = "", remote_addr = "127.0.0.1",
  }
end

local function bearer(token)
  return request({ authorization = "Bearer " .. token })
end

-- Asserts that `fn` raises an error whose text contains `text`.
local function assert_raises(text, fn)
  local ok, err = pcall(fn)
  assert.is_false(ok)
  assert.is_truthy(tostring(err):find(text, 1, true))
end

------------------------------------------------------------------------

describe("spec/support crypto helpers", function()
  it("compute HMAC-SHA256 of RFC 4231 test case 2", function()
    local mac = sha256.hmac("Jefe", "what do ya want for nothing?")
    assert.equal("5bdcc146bf60754e6a042426089575c7"
      .. "5a003f089d2739839dec58b964ec3843", sha256.hex(mac))
  end)

  it("compute HMAC-SHA256 of RFC 4231 test case 6 (long key)", function()
    local mac = sha256.hmac(string.rep("\xaa", 131),
      "Test Using Larger Than Block-Size Key - Hash Key First")
    assert.equal("60e431591ee0b67f0d8a26aacbf5b77f"
      .. "8e0bc6213728c5140546040f0ee37f54", sha256.hex(mac))
  end)

  it("compute SHA-256 of FIPS 180-2 vector 'abc'", function()
    assert.equal("ba7816bf8f01cfea414140de5dae2223"
      .. "b00361a396177a9cb410ff61f20015ad",
      sha256.hex(sha256.digest("abc")))
  end)

  it("round-trip base64url without padding", function()
    for _, raw in ipairs({ "", "f", "fo", "foo", "foob", "\255\254" }) do
      local text = base64url.encode(raw)
      assert.is_nil(text:find("[=+/]"))
      assert.equal(raw, base64url.decode(text))
    end
    assert.equal("Zm9vYg", base64url.encode("foob"))
  end)

  it("refuse base64url with bad characters or length", function()
    assert.is_nil(base64url.decode("Zm9v*g"))
    assert.is_nil(base64url.decode("Zm9vY"))
  end)
end)

describe("plugins/10-identity.lua", function()
  local broker, state, plugin

  before_each(function()
    broker, state = new_host()
    plugin = load_plugin(IDENTITY_PLUGIN, broker)
  end)

  local function resolve(req)
    return plugin.resolve_identity(req)
  end

  local function assert_denied(reason, req)
    local who, got = resolve(req)
    assert.is_nil(who)
    assert.equal(reason, got)
  end

  describe("loading", function()
    it("loads with broker reachable only through require", function()
      local p = load_plugin(IDENTITY_PLUGIN, broker, false)
      local who = p.resolve_identity(bearer(make_token(claims_with())))
      assert.equal("user-42", who.id)
    end)

    it("raises for a request that is not a table", function()
      assert_raises("resolve_identity: req must be a table",
        function() resolve(nil) end)
    end)
  end)

  describe("bearer token", function()
    after_each(function()
      assert.same({}, state.logs) -- resolving never logs
    end)

    it("resolves who from a valid HS256 token", function()
      local who, reason = resolve(bearer(make_token(claims_with())))
      assert.is_nil(reason)
      assert.equal("user-42", who.id)
      assert.equal("jwt", who.source)
      assert.is_nil(who.identity_type)
      assert.equal(NOW + 3600, who.claims.exp)
    end)

    it("accepts the scheme name in any case", function()
      local token = make_token(claims_with())
      local who = resolve(request({ authorization = "bEaReR " .. token }))
      assert.equal("user-42", who.id)
    end)

    it("takes the identity type from the identity_type claim", function()
      local token = make_token(claims_with({ identity_type = "team" }))
      assert.equal("team", resolve(bearer(token)).identity_type)
    end)

    it("takes the identity type from the configured claim", function()
      state.env.AUTHKIT_JWT_TYPE_CLAIM = "https://x.example/kind"
      local token = make_token(claims_with({
        ["https://x.example/kind"] = "organization",
        identity_type = "team",
      }))
      assert.equal("organization", resolve(bearer(token)).identity_type)
    end)

    it("treats a null identity type as none", function()
      local token = make_token('{"sub":"u","exp":' .. (NOW + 60)
        .. ',"identity_type":null}')
      local who = resolve(bearer(token))
      assert.equal("u", who.id)
      assert.is_nil(who.identity_type)
    end)

    it("refuses an identity type outside the four", function()
      local token = make_token(claims_with({ identity_type = "admin" }))
      assert_denied("bad_identity_type", bearer(token))
    end)

    it("ignores an Authorization header of another scheme", function()
      assert_denied("missing_credentials",
        request({ authorization = "Basic dXNlcjpwYXNz" }))
    end)

    it("refuses a Bearer header without a token", function()
      assert_denied("bad_token", request({ authorization = "Bearer" }))
      assert_denied("bad_token", request({ authorization = "Bearer " }))
    end)

    it("refuses a Bearer header with two tokens", function()
      local token = make_token(claims_with())
      assert_denied("bad_token", bearer(token .. " " .. token))
    end)

    it("refuses a repeated Authorization header", function()
      local token = make_token(claims_with())
      local auth = { "Bearer " .. token, "Bearer " .. token }
      assert_denied("ambiguous_credentials",
        request({ authorization = auth }))
    end)

    it("refuses a bad bearer token even with a good cookie", function()
      local good = make_token(claims_with())
      local req = request({
        authorization = "Bearer " .. make_token(claims_with(), "x"),
        cookie = "authkit_session=" .. good,
      })
      assert_denied("bad_signature", req)
    end)
  end)

  describe("token times", function()
    it("refuses an expired token", function()
      local token = make_token(claims_with({ exp = NOW - 31 }))
      assert_denied("expired", bearer(token))
    end)

    it("accepts a token expired within the 30 s leeway", function()
      local token = make_token(claims_with({ exp = NOW - 29 }))
      assert.equal("user-42", resolve(bearer(token)).id)
    end)

    it("refuses a token without exp", function()
      local token = make_token({ sub = "user-42" })
      assert_denied("bad_token", bearer(token))
    end)

    it("refuses a non-numeric exp", function()
      local token = make_token(claims_with({ exp = "99999999999" }))
      assert_denied("bad_token", bearer(token))
    end)

    it("refuses an infinite or NaN exp", function()
      assert_denied("bad_token",
        bearer(make_token('{"sub":"u","exp":1e999}')))
      assert_denied("bad_token",
        bearer(make_token('{"sub":"u","exp":NaN}')))
    end)

    it("refuses a token whose nbf is in the future", function()
      local token = make_token(claims_with({ nbf = NOW + 31 }))
      assert_denied("not_yet_valid", bearer(token))
    end)

    it("accepts an nbf within the 30 s leeway", function()
      local token = make_token(claims_with({ nbf = NOW + 29 }))
      assert.equal("user-42", resolve(bearer(token)).id)
    end)

    it("refuses a token issued in the future", function()
      local token = make_token(claims_with({ iat = NOW + 120 }))
      assert_denied("not_yet_valid", bearer(token))
    end)

    it("refuses a non-numeric nbf", function()
      local token = make_token(claims_with({ nbf = "soon" }))
      assert_denied("bad_token", bearer(token))
    end)

    it("follows the host clock", function()
      local token = make_token(claims_with())
      state.now = NOW + 3600 + 31
      assert_denied("expired", bearer(token))
    end)
  end)

  describe("token signature and algorithm", function()
    it("refuses a token signed with another secret", function()
      local token = make_token(claims_with(), "another-secret")
      assert_denied("bad_signature", bearer(token))
    end)

    it("refuses a token whose payload was changed", function()
      local token = make_token(claims_with())
      local h, _, s = token:match("^(.-)%.(.-)%.(.*)$")
      local forged = b64(cjson.encode(claims_with({ sub = "admin" })))
      assert_denied("bad_signature",
        bearer(h .. "." .. forged .. "." .. s))
    end)

    it("refuses another spelling of the right signature", function()
      -- 43 characters carry 258 bits: the last one's low 2 are spare.
      local token = make_token(claims_with())
      local last = ALPHABET:find(token:sub(-1), 1, true)
      local other = ((last - 1) ~ 1) + 1
      local respelt = token:sub(1, -2) .. ALPHABET:sub(other, other)
      assert.equal(base64url.decode(token:match("[^.]*$")),
        base64url.decode(respelt:match("[^.]*$")))
      assert_denied("bad_signature", bearer(respelt))
    end)

    it("refuses an HS256 token with an empty signature", function()
      local token = make_token(claims_with())
      assert_denied("bad_signature", bearer(token:match("^(.*%.)")))
    end)

    it("refuses alg none without a signature", function()
      local token = b64('{"alg":"none","typ":"JWT"}') .. "."
        .. b64(cjson.encode(claims_with())) .. "."
      assert_denied("wrong_algorithm", bearer(token))
    end)

    it("refuses alg none even when correctly MACed", function()
      local token = make_token(claims_with(), SECRET, '{"alg":"none"}')
      assert_denied("wrong_algorithm", bearer(token))
    end)

    it("refuses HS512, RS256 and a lower-case hs256", function()
      for _, alg in ipairs({ "HS512", "RS256", "ES256", "hs256" }) do
        local header = '{"alg":"' .. alg .. '","typ":"JWT"}'
        local token = make_token(claims_with(), SECRET, header)
        assert_denied("wrong_algorithm", bearer(token))
      end
    end)

    it("refuses a header without alg", function()
      local token = make_token(claims_with(), SECRET, '{"typ":"JWT"}')
      assert_denied("wrong_algorithm", bearer(token))
    end)

    it("refuses a header with crit", function()
      local header = '{"alg":"HS256","crit":["exp"],"exp":1}'
      local token = make_token(claims_with(), SECRET, header)
      assert_denied("bad_token", bearer(token))
    end)
  end)

  describe("malformed tokens", function()
    it("refuses a token of two parts", function()
      local token = make_token(claims_with())
      assert_denied("bad_token", bearer(token:match("^(.*)%.")))
    end)

    it("refuses a token of four parts", function()
      local token = make_token(claims_with())
      assert_denied("bad_token", bearer(token .. ".x"))
    end)

    it("refuses padded or standard base64", function()
      local token = make_token(claims_with())
      local h, rest = token:match("^(.-)(%..*)$")
      assert_denied("bad_token", bearer(h .. "==" .. rest))
      assert_denied("bad_token", bearer(h:sub(1, -2) .. "+" .. rest))
    end)

    it("refuses a header of impossible base64url length", function()
      local token = make_token(claims_with())
      local rest = token:match("^.-(%..*)$")
      assert_denied("bad_token", bearer("abcde" .. rest))
    end)

    it("refuses a header that is not JSON", function()
      local token = make_token(claims_with(), SECRET, "not json")
      assert_denied("bad_token", bearer(token))
    end)

    it("refuses a signed payload that is not JSON", function()
      assert_denied("bad_token", bearer(make_token("{sub: user-42")))
    end)

    it("refuses a signed payload that is not an object", function()
      assert_denied("bad_token", bearer(make_token('"user-42"')))
      assert_denied("bad_token", bearer(make_token("null")))
    end)

    it("refuses a token over 8 KiB", function()
      local token = make_token(claims_with({
        pad = string.rep("x", 8192),
      }))
      assert_denied("bad_token", bearer(token))
    end)
  end)

  describe("subject", function()
    it("refuses a token without sub", function()
      local token = make_token({ exp = NOW + 60 })
      assert_denied("missing_subject", bearer(token))
    end)

    it("refuses an empty or non-string sub", function()
      assert_denied("bad_subject",
        bearer(make_token(claims_with({ sub = "" }))))
      assert_denied("bad_subject",
        bearer(make_token(claims_with({ sub = 42 }))))
    end)

    it("accepts a sub of 256 bytes and refuses 257", function()
      local ok = make_token(claims_with({ sub = string.rep("a", 256) }))
      assert.equal(256, #resolve(bearer(ok)).id)
      local long = make_token(claims_with({ sub = string.rep("a", 257) }))
      assert_denied("bad_subject", bearer(long))
    end)

    it("refuses a sub with control characters", function()
      for _, sub in ipairs({ "a\nb", "a\0b", "a\127", "a\u{85}b" }) do
        local token = make_token(claims_with({ sub = sub }))
        assert_denied("bad_subject", bearer(token))
      end
    end)

    it("refuses a sub that is not UTF-8", function()
      local token = make_token('{"sub":"\255\254","exp":'
        .. (NOW + 60) .. "}")
      assert_denied("bad_subject", bearer(token))
    end)

    it("accepts a non-ASCII sub", function()
      local token = make_token(claims_with({ sub = "zoë@exemple.fr" }))
      assert.equal("zoë@exemple.fr", resolve(bearer(token)).id)
    end)
  end)

  describe("issuer and audience", function()
    it("ignores iss and aud when the environment sets none", function()
      local token = make_token(claims_with({ iss = "x", aud = "y" }))
      assert.equal("user-42", resolve(bearer(token)).id)
    end)

    it("accepts the configured issuer", function()
      state.env.AUTHKIT_JWT_ISSUER = "https://auth.example"
      local token = make_token(claims_with({
        iss = "https://auth.example",
      }))
      assert.equal("user-42", resolve(bearer(token)).id)
    end)

    it("refuses another or a missing issuer", function()
      state.env.AUTHKIT_JWT_ISSUER = "https://auth.example"
      local token = make_token(claims_with({ iss = "https://evil" }))
      assert_denied("wrong_issuer", bearer(token))
      assert_denied("wrong_issuer", bearer(make_token(claims_with())))
    end)

    it("accepts the audience as a string or in an array", function()
      state.env.AUTHKIT_JWT_AUDIENCE = "broker"
      local one = make_token(claims_with({ aud = "broker" }))
      local many = make_token(claims_with({ aud = { "web", "broker" } }))
      assert.equal("user-42", resolve(bearer(one)).id)
      assert.equal("user-42", resolve(bearer(many)).id)
    end)

    it("refuses another or a missing audience", function()
      state.env.AUTHKIT_JWT_AUDIENCE = "broker"
      local other = make_token(claims_with({ aud = "web" }))
      local others = make_token(claims_with({ aud = { "web" } }))
      assert_denied("wrong_audience", bearer(other))
      assert_denied("wrong_audience", bearer(others))
      assert_denied("wrong_audience", bearer(make_token(claims_with())))
    end)
  end)

  describe("session cookie", function()
    after_each(function()
      assert.same({}, state.logs)
    end)

    local function cookie(header)
      return request({ cookie = header })
    end

    it("finds the session among other cookies", function()
      local token = make_token(claims_with())
      local who = resolve(cookie("theme=dark; authkit_session="
        .. token .. ";csrf=abc=="))
      assert.equal("user-42", who.id)
      assert.equal("cookie", who.source)
    end)

    it("accepts a quoted value and loose blanks", function()
      local token = make_token(claims_with())
      local who = resolve(cookie('a=1 ;  authkit_session = "'
        .. token .. '" ; b'))
      assert.equal("user-42", who.id)
    end)

    it("uses the cookie named by AUTHKIT_SESSION_COOKIE", function()
      state.env.AUTHKIT_SESSION_COOKIE = "sid"
      local token = make_token(claims_with())
      assert.equal("user-42",
        resolve(cookie("authkit_session=x; sid=" .. token)).id)
    end)

    it("ignores cookies whose names only contain the name", function()
      local token = make_token(claims_with())
      assert_denied("missing_credentials",
        cookie("my_authkit_session=" .. token
          .. "; authkit_session_old=" .. token))
    end)

    it("takes the first of two cookies of the same name", function()
      local good = make_token(claims_with({ sub = "first" }))
      local other = make_token(claims_with({ sub = "second" }))
      local who = resolve(cookie("authkit_session=" .. good
        .. "; authkit_session=" .. other))
      assert.equal("first", who.id)
    end)

    it("reads cookies sent in several headers", function()
      local token = make_token(claims_with())
      local req = request({
        cookie = { "a=1", "authkit_session=" .. token },
      })
      assert.equal("user-42", resolve(req).id)
    end)

    it("refuses an expired session", function()
      local token = make_token(claims_with({ exp = NOW - 3600 }))
      assert_denied("expired", cookie("authkit_session=" .. token))
    end)

    it("treats an emptied session cookie as absent", function()
      assert_denied("missing_credentials",
        cookie("authkit_session=; a=1"))
    end)

    it("skips pairs without '='", function()
      local token = make_token(claims_with())
      assert.equal("user-42",
        resolve(cookie("junk;;=; authkit_session=" .. token)).id)
    end)
  end)

  describe("x-user-id header", function()
    local function header_req(id)
      return request({ ["x-user-id"] = id })
    end

    it("is ignored unless allow_header_identity is set", function()
      assert_denied("missing_credentials", header_req("alice"))
    end)

    it("is ignored when allow_header_identity is merely truthy", function()
      state.config.allow_header_identity = "yes"
      assert_denied("missing_credentials", header_req("alice"))
    end)

    it("gives the identity when allowed", function()
      state.config.allow_header_identity = true
      local who = resolve(header_req("alice"))
      assert.same({ id = "alice", claims = {}, source = "header" }, who)
    end)

    it("comes after a bearer token", function()
      state.config.allow_header_identity = true
      local req = bearer(make_token(claims_with()))
      req.headers["x-user-id"] = "alice"
      assert.equal("jwt", resolve(req).source)
    end)

    it("works without a secret", function()
      state.env.AUTHKIT_JWT_SECRET = nil
      state.config.allow_header_identity = true
      assert.equal("alice", resolve(header_req("alice")).id)
    end)

    it("refuses control characters", function()
      state.config.allow_header_identity = true
      assert_denied("bad_identity", header_req("alice\r\nx: y"))
      assert_denied("bad_identity", header_req("alice\tbob"))
    end)

    it("refuses an empty or a too long id", function()
      state.config.allow_header_identity = true
      assert_denied("bad_identity", header_req(""))
      assert_denied("bad_identity", header_req(string.rep("a", 257)))
    end)

    it("refuses a repeated header", function()
      state.config.allow_header_identity = true
      assert_denied("ambiguous_credentials",
        header_req({ "alice", "bob" }))
    end)
  end)

  describe("without a secret", function()
    before_each(function()
      state.env.AUTHKIT_JWT_SECRET = nil
    end)

    it("skips bearer tokens", function()
      assert_denied("missing_credentials",
        bearer(make_token(claims_with())))
    end)

    it("skips session cookies", function()
      local token = make_token(claims_with())
      assert_denied("missing_credentials",
        request({ cookie = "authkit_session=" .. token }))
    end)

    it("takes an empty secret as none", function()
      state.env.AUTHKIT_JWT_SECRET = ""
      assert_denied("missing_credentials",
        bearer(make_token(claims_with(), "")))
    end)
  end)

  it("denies a request with no credential", function()
    assert_denied("missing_credentials", request({}))
    assert_denied("missing_credentials", { method = "GET", path = "/" })
  end)

  describe("selftest", function()
    it("passes when the secret is set", function()
      assert.is_true(plugin.selftest())
    end)

    it("passes with header identity and no secret", function()
      state.env.AUTHKIT_JWT_SECRET = nil
      state.config.allow_header_identity = true
      assert.is_true(plugin.selftest())
    end)

    it("fails when no request could ever be allowed", function()
      state.env.AUTHKIT_JWT_SECRET = nil
      local ok, err = plugin.selftest()
      assert.is_nil(ok)
      assert.equal("AUTHKIT_JWT_SECRET is not set and header identity "
        .. "is off: every request will be denied", err)
    end)

    it("takes an empty secret as unset", function()
      state.env.AUTHKIT_JWT_SECRET = ""
      assert.is_nil((plugin.selftest()))
    end)
  end)

  describe("init", function()
    it("logs nothing for a production set-up", function()
      plugin.init()
      assert.same({}, state.logs)
    end)

    it("warns loudly when header identity is allowed", function()
      state.config.allow_header_identity = true
      plugin.init()
      assert.equal(1, #state.logs)
      assert.equal("warn", state.logs[1].level)
      assert.matches("HEADER IDENTITY IS ON", state.logs[1].msg)
      assert.matches("x-user-id", state.logs[1].msg, 1, true)
    end)

    it("warns about a short secret without logging it", function()
      state.env.AUTHKIT_JWT_SECRET = "short-secret"
      plugin.init()
      assert.equal(1, #state.logs)
      assert.equal("warn", state.logs[1].level)
      assert.is_nil(state.logs[1].msg:find("short-secret", 1, true))
    end)
  end)
end)

describe("plugins/20-identity-type.lua", function()
  local plugin

  before_each(function()
    plugin = load_plugin(TYPE_PLUGIN, (new_host()))
  end)

  it("answers the id and the type that identity found", function()
    local who = { id = "acme", identity_type = "organization" }
    local id, kind = plugin.map_identity_type(who, {})
    assert.equal("acme", id)
    assert.equal("organization", kind)
  end)

  it("defaults the type to user", function()
    local id, kind = plugin.map_identity_type({ id = "alice" }, {})
    assert.equal("alice", id)
    assert.equal("user", kind)
  end)

  it("raises when who is not a table", function()
    assert_raises("map_identity_type: who must be a table",
      function() plugin.map_identity_type(nil, {}) end)
  end)
end)
