-- The shipped identity plugin in the real broker: JWT bearer tokens and
-- session cookies verified by the host's HMAC, x-user-id only in dev.
local h = require "harness"
local fake_crypto = require "fake_crypto"

local SECRET = "spec-secret-0123456789abcdef0123"

local function jwt(claims)
  local payload = string.format('{"sub":"%s","exp":%d%s}', claims.sub,
                                claims.exp or os.time() + 600,
                                claims.extra or "")
  return fake_crypto.sign_jwt(SECRET, '{"alg":"HS256","typ":"JWT"}',
                              payload)
end

describe("identity in the real broker", function()
  local sandbox, broker

  setup(function()
    sandbox = h.sandbox()
    broker = h.broker({pica = sandbox,
                       config = {allow_header_identity = false},
                       env = {AUTHKIT_JWT_SECRET = SECRET}})
  end)

  teardown(function() h.stop_all() end)

  local function token(headers)
    return h.request("POST", broker.url .. "/api/authkit/token?limit=1",
                     {headers = headers})
  end

  it("accepts a valid HS256 bearer token", function()
    local res = token({Authorization = "Bearer " .. jwt({sub = "u-42"})})
    assert.equal(200, res.status)
    assert.truthy(h.read(broker.log):find("identity=u-42", 1, true))
  end)

  it("accepts the same token in the session cookie", function()
    local res = token({Cookie = "theme=dark; authkit_session="
                       .. jwt({sub = "u-43"}) .. "; other=1"})
    assert.equal(200, res.status)
  end)

  it("refuses an expired token with 401 expired", function()
    local res = token({Authorization = "Bearer "
                       .. jwt({sub = "u", exp = os.time() - 3600})})
    assert.equal(401, res.status)
    assert.matches("expired", res.json.error.message)
  end)

  it("refuses a token signed with another secret", function()
    local good = jwt({sub = "u"})
    local forged = good:sub(1, -4) .. (good:sub(-3) == "AAA" and "BBB"
                                       or "AAA")
    assert.equal(401, token({Authorization = "Bearer " .. forged}).status)
  end)

  it("ignores x-user-id when header identity is off", function()
    assert.equal(401, token({["x-user-id"] = "mallory"}).status)
  end)

  it("sends the identity type claim to Pica", function()
    local res = token({Authorization = "Bearer " .. jwt({sub = "t-1",
                       extra = ',"identity_type":"team"'})})
    assert.equal(200, res.status)
  end)
end)
