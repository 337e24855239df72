-- The token endpoint against the sandbox Pica, over real HTTP.
local h = require "harness"

local ORIGIN = "https://authkit.picaos.com"

local function token(broker, query, headers)
  local hdrs = {["x-user-id"] = "alice"}
  for k, v in pairs(headers or {}) do
    hdrs[k] = v
  end
  return h.request("POST", broker.url .. "/api/authkit/token"
                   .. (query or ""), {headers = hdrs})
end

describe("POST /api/authkit/token", function()
  local sandbox, broker

  setup(function()
    sandbox = h.sandbox()
    broker = h.broker({pica = sandbox})
  end)

  teardown(function()
    h.stop_all()
  end)

  after_each(function()
    assert.same({}, h.errors(broker))
  end)

  it("merges every page like the SDK's create()", function()
    local res = token(broker)
    assert.equal(200, res.status)
    local body = res.json
    assert.equal(247, #body.rows)
    assert.equal(247, body.total)
    assert.equal(1, body.page)
    assert.equal(1, body.pages)
    assert.equal(false, body.isWhiteLabel)
    assert.is_number(body.requestId)
    assert.equal("Gmail", body.rows[1].title)
    assert.same({}, body.rows[1].tags)
    assert.truthy(res.body:find('"tags":[]', 1, true))
  end)

  it("keeps Pica's row order across pages", function()
    local body = token(broker).json
    for i = 2, #body.rows do
      assert.is_true(body.rows[i].id > body.rows[i - 1].id)
    end
  end)

  it("asks every page at once and the flags not at all once warm",
     function()
    token(broker)                     -- warm: flags and page count
    h.reset_stats(sandbox)
    assert.equal(200, token(broker).status)
    local stats = h.stats(sandbox)
    assert.equal(3, stats.requests["/v1/authkit"])
    assert.is_nil(stats.requests["/v1/users/flags"])
    assert.equal(3, stats.total)
  end)

  it("relays one page when page and limit are given", function()
    local res = token(broker, "?page=2&limit=5")
    assert.equal(200, res.status)
    assert.equal(5, #res.json.rows)
    assert.equal(2, res.json.page)
    assert.equal(50, res.json.pages)
    assert.equal(247, res.json.total)
    assert.equal(false, res.json.isWhiteLabel)
  end)

  it("answers 400 for a page or limit that is not a whole number",
     function()
    for _, q in ipairs({"?page=0", "?page=x", "?limit=0", "?limit=1001",
                        "?page=1.5", "?limit=-3"}) do
      local res = token(broker, q)
      assert.equal(400, res.status, q)
      assert.equal("bad_request", res.json.error.code)
    end
  end)

  it("answers 401 without an identity", function()
    local res = h.request("POST", broker.url .. "/api/authkit/token")
    assert.equal(401, res.status)
    assert.equal("unauthenticated", res.json.error.code)
  end)

  it("answers 405 with Allow for another method", function()
    local res = h.request("GET", broker.url .. "/api/authkit/token",
                          {headers = {["x-user-id"] = "alice"}})
    assert.equal(405, res.status)
    assert.equal("POST", res.headers["allow"])
    assert.equal("method_not_allowed", res.json.error.code)
  end)

  it("answers 404 in JSON for an unknown route", function()
    local res = h.request("GET", broker.url .. "/nope")
    assert.equal(404, res.status)
    assert.equal("not_found", res.json.error.code)
  end)

  it("answers 400 for a JSON body that is not JSON", function()
    local res = h.request("POST", broker.url .. "/api/authkit/token", {
      headers = {["x-user-id"] = "alice",
                 ["content-type"] = "application/json"},
      body = "{not json"})
    assert.equal(400, res.status)
    assert.equal("bad_json", res.json.error.code)
  end)

  it("answers 413 for a body over the limit and keeps serving",
     function()
    local res = h.request("POST", broker.url .. "/api/authkit/token", {
      headers = {["x-user-id"] = "alice"},
      body = string.rep("x", 2 * 1024 * 1024)})
    assert.equal(413, res.status)
    assert.equal(200, token(broker).status)
  end)

  it("answers 400 to malformed HTTP and keeps serving", function()
    local port = broker.address:match(":(%d+)$")
    local p = io.popen("bash -c 'exec 3<>/dev/tcp/127.0.0.1/" .. port
      .. "; printf \"BLAH\\x01 / HTTP/9\\r\\n\\r\\n\" >&3; "
      .. "timeout 5 head -c 12 <&3'")
    local out = p:read("a")
    p:close()
    assert.equal("HTTP/1.1 400", out)
    assert.equal(200, token(broker).status)
  end)

  it("puts a request id on every answer", function()
    local a, b = token(broker), token(broker)
    assert.matches("^%x+$", a.headers["x-request-id"])
    assert.not_equal(a.headers["x-request-id"], b.headers["x-request-id"])
  end)

  describe("CORS", function()
    local function preflight(origin, headers, pna)
      local hdrs = {Origin = origin,
                    ["Access-Control-Request-Method"] = "POST",
                    ["Access-Control-Request-Headers"] = headers}
      if pna then
        hdrs["Access-Control-Request-Private-Network"] = "true"
      end
      return h.request("OPTIONS", broker.url .. "/api/authkit/token",
                       {headers = hdrs})
    end

    it("allows the AuthKit iframe's preflight for x-user-id", function()
      local res = preflight(ORIGIN, "x-user-id, content-type")
      assert.equal(204, res.status)
      assert.equal(ORIGIN, res.headers["access-control-allow-origin"])
      assert.equal("x-user-id, content-type",
                   res.headers["access-control-allow-headers"])
      assert.matches("POST", res.headers["access-control-allow-methods"])
      assert.matches("Origin", res.headers["vary"])
    end)

    it("answers the Private Network Access preflight", function()
      local res = preflight(ORIGIN, "x-user-id", true)
      assert.equal("true",
                   res.headers["access-control-allow-private-network"])
    end)

    it("leaves out request headers that are not allowed", function()
      local res = preflight(ORIGIN, "x-user-id, x-evil")
      assert.equal("x-user-id",
                   res.headers["access-control-allow-headers"])
    end)

    it("gives another origin no CORS headers", function()
      local res = preflight("https://evil.example", "x-user-id", true)
      assert.equal(403, res.status)
      for name in pairs(res.headers) do
        assert.is_nil(name:match("^access%-control%-allow"), name)
      end
    end)

    it("adds CORS headers to the answer for an allowed origin",
       function()
      local res = token(broker, nil, {Origin = ORIGIN})
      assert.equal(ORIGIN, res.headers["access-control-allow-origin"])
      assert.equal("Origin", res.headers["vary"])
    end)

    it("adds none for another origin", function()
      local res = token(broker, nil, {Origin = "https://evil.example"})
      assert.equal(200, res.status)
      assert.is_nil(res.headers["access-control-allow-origin"])
      assert.equal("Origin", res.headers["vary"])
    end)
  end)
end)

describe("token endpoint with an allow-all CORS config", function()
  teardown(function() h.stop_all() end)

  it("answers * without credentials", function()
    local sandbox = h.sandbox()
    local broker = h.broker({pica = sandbox,
                             config = {cors_origins = {"*"}}})
    local res = h.request("OPTIONS", broker.url .. "/api/authkit/token", {
      headers = {Origin = "https://app.example",
                 ["Access-Control-Request-Method"] = "POST"}})
    assert.equal(204, res.status)
    assert.equal("*", res.headers["access-control-allow-origin"])
    assert.is_nil(res.headers["access-control-allow-credentials"])
  end)
end)
