-- What the token endpoint answers when Pica or a hook misbehaves.
local h = require "harness"

local function token(broker, headers)
  return h.request("POST", broker.url .. "/api/authkit/token",
                   {headers = headers or {["x-user-id"] = "alice"}})
end

local function log_has(proc, text)
  return h.read(proc.log):find(text, 1, true) ~= nil
end

describe("when Pica fails", function()
  local sandbox, broker

  setup(function()
    sandbox = h.sandbox()
    broker = h.broker({pica = sandbox, config = {
      upstream_timeout_ms = 300, upstream_attempts = 3}})
  end)

  teardown(function() h.stop_all() end)

  before_each(function()
    h.request("DELETE", sandbox.url .. "/sandbox/faults")
    h.reset_stats(sandbox)
  end)

  it("retries a 503 and answers 200", function()
    h.fault(sandbox, {path_prefix = "/v1/authkit", status = 503,
                      count = 1})
    assert.equal(200, token(broker).status)
    assert.equal(4, h.stats(sandbox).requests["/v1/authkit"])
  end)

  it("honours Retry-After on a 429, then answers 200", function()
    h.fault(sandbox, {path_prefix = "/v1/authkit", status = 429,
                      count = 1, retry_after = 1})
    local t0 = os.time()
    assert.equal(200, token(broker).status)
    assert.is_true(os.time() - t0 >= 1)
  end)

  it("answers 502 when Pica keeps failing", function()
    h.fault(sandbox, {path_prefix = "/v1/authkit", status = 500,
                      count = 9})
    local res = token(broker)
    assert.equal(502, res.status)
    assert.equal("upstream_error", res.json.error.code)
  end)

  it("answers 429 with Retry-After when Pica keeps limiting", function()
    h.fault(sandbox, {path_prefix = "/v1/authkit", status = 429,
                      count = 9, retry_after = 0})
    local res = token(broker)
    assert.equal(429, res.status)
    assert.equal("upstream_rate_limited", res.json.error.code)
    assert.truthy(res.headers["retry-after"])
  end)

  it("answers 504 when Pica does not answer in time", function()
    h.fault(sandbox, {path_prefix = "/v1/authkit", status = 0,
                      delay_ms = 2000, count = 9})
    local res = token(broker)
    assert.equal(504, res.status)
    assert.equal("upstream_timeout", res.json.error.code)
  end)

  it("keeps serving after all of these", function()
    assert.equal(200, token(broker).status)
    assert.same({}, h.errors(broker))
  end)
end)

describe("when Pica is unreachable or refuses the key", function()
  teardown(function() h.stop_all() end)

  it("answers 502 upstream_unavailable with no Pica", function()
    local broker = h.broker({config = {upstream_attempts = 1}})
    local res = token(broker)
    assert.equal(502, res.status)
    assert.equal("upstream_unavailable", res.json.error.code)
  end)

  it("answers 502 upstream_auth and logs why for a bad key", function()
    local sandbox = h.sandbox()
    local broker = h.broker({pica = sandbox, secret = "not-a-key"})
    local res = token(broker)
    assert.equal(502, res.status)
    assert.equal("upstream_auth", res.json.error.code)
    assert.is_true(log_has(broker, "check PICA_SECRET_KEY"))
    assert.is_false(log_has(broker, "not-a-key"))
  end)
end)

describe("Pica calls in flight", function()
  teardown(function() h.stop_all() end)

  it("asks all three pages at the same time once warm", function()
    local sandbox = h.sandbox("--latency-ms 150")
    local broker = h.broker({pica = sandbox})
    assert.equal(200, token(broker).status)
    h.reset_stats(sandbox)
    assert.equal(200, token(broker).status)
    local stats = h.stats(sandbox)
    assert.equal(3, stats.total)
    assert.equal(3, stats.max_inflight)
  end)
end)

describe("when a hook misbehaves", function()
  local sandbox

  setup(function() sandbox = h.sandbox() end)
  teardown(function() h.stop_all() end)

  local function broker_with(files, config)
    return h.broker({pica = sandbox, config = config,
                     plugins = h.default_plugins(files)})
  end

  it("filter_integrations narrows the rows and total", function()
    local broker = broker_with({["30-plan.lua"] = [[
      return {filter_integrations = function(rows, who)
        local out = {}
        for _, r in ipairs(rows) do
          if r.title == "Gmail" or r.title == "Slack" then
            out[#out + 1] = r
          end
        end
        return out
      end}]]})
    local res = token(broker)
    assert.equal(200, res.status)
    assert.equal(2, #res.json.rows)
    assert.equal(2, res.json.total)
  end)

  it("a failing identity hook denies with 401", function()
    local broker = h.broker({pica = sandbox, plugins = h.plugins({
      ["10-id.lua"] = "return {resolve_identity = function() "
                      .. "error('secret detail') end}"})})
    local res = token(broker)
    assert.equal(401, res.status)
    assert.is_nil(res.body:find("secret detail", 1, true))
    assert.is_true(log_has(broker, "10-id.lua:1: secret detail"))
  end)

  it("a failing filter answers a generic 500 and logs file:line",
     function()
    local broker = broker_with({["30-bad.lua"] = "return {\n"
      .. "filter_integrations = function() error('oops in filter') end}"})
    local res = token(broker)
    assert.equal(500, res.status)
    assert.equal("internal", res.json.error.code)
    assert.is_nil(res.body:find("oops", 1, true))
    assert.is_true(log_has(broker, "30-bad.lua:2: oops in filter"))
  end)

  it("an identity type outside the four is a 500 with a clear log line",
     function()
    local broker = broker_with({["15-type.lua"] = "return {"
      .. "map_identity_type = function(who) return who.id, 'galaxy' end}"})
    local res = token(broker)
    assert.equal(500, res.status)
    assert.is_true(log_has(broker, "returned identity type 'galaxy'"))
  end)

  it("a hook returning the wrong type is a 500", function()
    local broker = broker_with({["30-bad.lua"] = "return {"
      .. "filter_integrations = function() return 'rows' end}"})
    assert.equal(500, token(broker).status)
    assert.is_true(log_has(broker, "returned a string, not a table"))
  end)

  it("an endless loop fails its request and the broker goes on",
     function()
    local broker = broker_with({["30-loop.lua"] = "return {"
      .. "filter_integrations = function(r) while true do pcall(error) end"
      .. " end}"}, {instruction_budget = 1000000})
    assert.equal(500, token(broker).status)
    assert.is_true(log_has(broker, "more than 1000000 Lua instructions"))
    assert.is_true(h.alive(broker))
    assert.equal(200, h.request("GET", broker.admin_url .. "/healthz")
                        .status)
  end)

  it("a memory bomb fails its request and the broker goes on", function()
    local broker = broker_with({["30-bomb.lua"] = "return {"
      .. "filter_integrations = function(r) local t = {} "
      .. "for i = 1, 1e9 do t[i] = ('x'):rep(64) .. i end end}"},
      {lua_memory_mb = 32})
    assert.equal(500, token(broker).status)
    assert.is_true(log_has(broker, "not enough memory"))
    assert.is_true(h.alive(broker))
  end)

  it("a hook waiting past the request deadline gets a 504", function()
    local broker = broker_with({["30-slow.lua"] = "return {"
      .. "filter_integrations = function(r) broker.sleep(5000) return r"
      .. " end}"}, {request_timeout_ms = 300})
    local res = token(broker)
    assert.equal(504, res.status)
    assert.equal("deadline_exceeded", res.json.error.code)
    assert.equal(200, h.request("GET", broker.admin_url .. "/healthz")
                        .status)
  end)

  it("a hook cannot read the Pica secret or load C code", function()
    local broker = broker_with({["05-probe.lua"] = [[
      local found = {}
      local ok = pcall(broker.env, "PICA_SECRET_KEY")
      found[#found + 1] = ok and "env" or nil
      found[#found + 1] = io and "io" or nil
      found[#found + 1] = debug and "debug" or nil
      found[#found + 1] = os.execute and "os.execute" or nil
      found[#found + 1] = package and "package" or nil
      found[#found + 1] = load and "load" or nil
      found[#found + 1] = pcall(require, "cjson") and "require" or nil
      found[#found + 1] = pcall(function() broker.http = 1 end)
                          and "write" or nil
      return {filter_integrations = function(rows)
        if #found > 0 then error("sandbox leak: "
          .. table.concat(found, ",")) end
        return rows
      end}]]})
    assert.equal(200, token(broker).status)
  end)
end)
