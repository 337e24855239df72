-- Acting for a user: the passthrough proxy, policies, the audit log and
-- the connectors list, against the sandbox Pica.
local h = require "harness"
local cjson = require "cjson.safe"

local SECRET = {["x-pica-secret"] = "sk_test_1_spec"}

local function connect(sandbox, broker, who, platform)
  local res = h.json("POST", sandbox.url .. "/sandbox/connections",
    {platform = platform or "gmail", identity = who, identityType = "user"})
  assert(res.status == 201, res.body)
  local stored = h.json("POST", broker.url .. "/api/connections", res.json,
                        {["x-user-id"] = who})
  assert(stored.status == 201, stored.body)
  return res.json
end

local function call(broker, who, method, path, headers, body)
  local hdrs = {["x-user-id"] = who}
  for k, v in pairs(headers or {}) do
    hdrs[k] = v
  end
  return h.request(method, broker.url .. "/api/passthrough" .. path,
                   {headers = hdrs, body = body})
end

local function passthrough_calls(sandbox)
  return h.stats(sandbox).requests["/v1/passthrough"] or 0
end

local function rss_kb(proc)
  local status = h.read("/proc/" .. proc.pid .. "/status") or ""
  return tonumber(status:match("VmRSS:%s+(%d+)"))
end

local function audit_lines(path)
  local out = {}
  for line in (h.read(path) or ""):gmatch("[^\n]+") do
    out[#out + 1] = cjson.decode(line)
  end
  return out
end

describe("passthrough", function()
  local sandbox, broker, audit, gmail

  setup(function()
    sandbox = h.sandbox()
    audit = h.tmpdir() .. "/audit.log"
    broker = h.broker({pica = sandbox, config = {
      audit_log = audit, passthrough_max_body_bytes = 4096,
      upstream_timeout_ms = 500}})
    gmail = connect(sandbox, broker, "alice", "gmail")
  end)

  teardown(function() h.stop_all() end)

  before_each(function()
    h.request("DELETE", sandbox.url .. "/sandbox/faults")
    h.reset_stats(sandbox)
  end)

  it("forwards the caller's call with its body, query and action id",
     function()
    local res = call(broker, "alice", "POST", "/gmail/v1/messages?q=a%20b"
      .. "&limit=5", {["x-connection-key"] = gmail.key,
      ["content-type"] = "application/json", ["x-pica-action-id"] = "act1",
      cookie = "session=secret"}, '{"to":"bob"}')
    assert.equal(200, res.status)
    assert.equal("application/json", res.headers["content-type"])
    local echo = res.json
    assert.equal("POST", echo.method)
    assert.equal("/gmail/v1/messages", echo.path)
    assert.equal("q=a%20b&limit=5", echo.query)
    assert.equal('{"to":"bob"}', echo.body)
    assert.equal(gmail.key, echo.connectionKey)
    assert.is_nil(echo.headers.cookie)
    assert.is_nil(echo.headers["x-user-id"])
    assert.truthy(res.headers["x-pica-passthrough-content-type"])
  end)

  it("finds the connection by platform when there is one", function()
    local res = call(broker, "alice", "GET", "/x",
                     {["x-connection-platform"] = "gmail"})
    assert.equal(200, res.status)
    assert.equal(gmail.key, res.json.connectionKey)
  end)

  it("refuses another identity's key without calling Pica", function()
    local res = call(broker, "mallory", "GET", "/x",
                     {["x-connection-key"] = gmail.key})
    assert.equal(403, res.status)
    assert.equal(0, passthrough_calls(sandbox))
  end)

  it("answers 404 for an unknown key and 400 without a connection",
     function()
    assert.equal(404, call(broker, "alice", "GET", "/x",
      {["x-connection-key"] = "test::gmail::default::00|alice"}).status)
    assert.equal(400, call(broker, "alice", "GET", "/x").status)
    assert.equal(0, passthrough_calls(sandbox))
  end)

  it("refuses a body over the limit with 413", function()
    local res = call(broker, "alice", "POST", "/x",
                     {["x-connection-key"] = gmail.key},
                     string.rep("x", 5000))
    assert.equal(413, res.status)
    assert.equal(0, passthrough_calls(sandbox))
  end)

  it("relays the third party's status and body", function()
    local res = call(broker, "alice", "GET", "/x?sandbox_status=404",
                     {["x-connection-key"] = gmail.key})
    assert.equal(404, res.status)
  end)

  it("relays a 502 from Pica", function()
    h.fault(sandbox, {path_prefix = "/v1/passthrough", status = 502,
                      count = 1})
    local res = call(broker, "alice", "GET", "/x",
                     {["x-connection-key"] = gmail.key})
    assert.equal(502, res.status)
  end)

  it("answers 504 when Pica does not answer in time", function()
    h.fault(sandbox, {path_prefix = "/v1/passthrough", status = 0,
                      delay_ms = 3000, count = 1})
    local res = call(broker, "alice", "GET", "/x",
                     {["x-connection-key"] = gmail.key})
    assert.equal(504, res.status)
    assert.equal("upstream_timeout", res.json.error.code)
  end)

  it("streams a 10 MB answer without holding it", function()
    local before = rss_kb(broker)
    local dir = h.tmpdir()
    local p = io.popen(string.format("curl -s --limit-rate 4M -o %s/body "
      .. "-w '%%{http_code} %%{size_download}' -H 'x-user-id: alice' "
      .. "-H 'x-connection-key: %s' '%s/api/passthrough/big?"
      .. "sandbox_bytes=10485760' & echo $!", dir, gmail.key, broker.url))
    local peak = before
    local out = ""
    h.wait_for(function()
      peak = math.max(peak, rss_kb(broker) or 0)
      local size = #(h.read(dir .. "/body") or "")
      return size >= 10485760
    end, 20)
    out = p:read("a")
    p:close()
    assert.equal(10485760, #(h.read(dir .. "/body") or ""))
    -- AddressSanitizer keeps freed memory in quarantine: RSS means
    -- nothing there, so only a plain build checks it.
    if os.getenv("AUTHKIT_BROKER_SANITIZED") ~= "ON" then
      assert.is_true(peak - before < 6 * 1024,
                     "resident memory grew by " .. (peak - before) .. " kB")
    end
  end)

  it("survives a client hanging up mid-stream and logs it", function()
    local rc = os.execute(string.format("curl -s --limit-rate 100k "
      .. "--max-time 2 -o /dev/null -H 'x-user-id: alice' -H "
      .. "'x-connection-key: %s' '%s/api/passthrough/hangup?"
      .. "sandbox_bytes=10485760'", gmail.key, broker.url))
    assert.is_not_true(rc)
    local line
    assert.truthy(h.wait_for(function()
      for _, l in ipairs(audit_lines(audit)) do
        if l.path and l.path:find("^/hangup") then
          line = l
          return true
        end
      end
    end, 30), "no audit line for the call the client left")
    assert.truthy(line.error, "the call the client left logged no error")
    assert.is_true(line.bytes < 10485760)
    assert.equal(200, call(broker, "alice", "GET", "/x",
                           {["x-connection-key"] = gmail.key}).status)
  end)

  it("writes one audit line per call, without secrets or query values",
     function()
    call(broker, "alice", "GET", "/audited/path?token=s3cret",
         {["x-connection-key"] = gmail.key})
    local line
    assert.truthy(h.wait_for(function()
      for _, l in ipairs(audit_lines(audit)) do
        if l.path and l.path:find("^/audited/path") then
          line = l
          return true
        end
      end
    end, 5))
    assert.equal("/audited/path?token=", line.path)
    assert.equal("alice", line.identity)
    assert.equal("gmail", line.platform)
    assert.equal("GET", line.method)
    assert.equal(200, line.status)
    assert.is_number(line.latency_ms)
    assert.equal(1, line.generation)
    assert.is_nil(line.connection_key:find(gmail.key:match("::(%x+)|"),
                                           1, true))
    assert.is_nil(h.read(audit):find("s3cret", 1, true))
  end)
end)

describe("passthrough policies", function()
  teardown(function() h.stop_all() end)

  local function broker_with(sandbox, files, env)
    local extra = {}
    for _, name in ipairs(files) do
      extra[name] = h.read(h.ROOT .. "/examples/policies/" .. name)
    end
    return h.broker({pica = sandbox, env = env,
                     plugins = h.default_plugins(extra)})
  end

  it("refuses writes to a read-only platform with 403", function()
    local sandbox = h.sandbox()
    local broker = broker_with(sandbox, {"40-read-only.lua"})
    local conn = connect(sandbox, broker, "alice", "gmail")
    local key = {["x-connection-key"] = conn.key}
    assert.equal(200, call(broker, "alice", "GET", "/x", key).status)
    local res = call(broker, "alice", "POST", "/x", key, "{}")
    assert.equal(403, res.status)
    assert.equal("read_only_platform", res.json.error.message)
  end)

  it("limits calls per identity with 429 and Retry-After", function()
    local sandbox = h.sandbox()
    local broker = broker_with(sandbox, {"45-rate-limit.lua"},
      {PASSTHROUGH_LIMIT = "2", PASSTHROUGH_WINDOW_S = "60"})
    local conn = connect(sandbox, broker, "alice", "gmail")
    local key = {["x-connection-key"] = conn.key}
    assert.equal(200, call(broker, "alice", "GET", "/x", key).status)
    assert.equal(200, call(broker, "alice", "GET", "/x", key).status)
    local res = call(broker, "alice", "GET", "/x", key)
    assert.equal(429, res.status)
    assert.truthy(tonumber(res.headers["retry-after"]))
  end)

  it("narrows the integrations by plan", function()
    local sandbox = h.sandbox()
    local broker = broker_with(sandbox, {"30-plan-allowlist.lua"})
    local res = h.request("POST", broker.url .. "/api/authkit/token",
                          {headers = {["x-user-id"] = "alice"}})
    local titles = {}
    for _, row in ipairs(res.json.rows) do
      titles[#titles + 1] = row.title
    end
    table.sort(titles)
    assert.same({"Gmail", "Slack"}, titles)
    assert.equal(2, res.json.total)
  end)
end)

describe("GET /api/connectors", function()
  teardown(function() h.stop_all() end)

  it("asks Pica once for many concurrent misses, then serves the cache",
     function()
    local sandbox = h.sandbox("--latency-ms 300")
    local broker = h.broker({pica = sandbox})
    local cmd = "curl -s -o /dev/null -w '%{http_code}\\n' -H "
      .. "'x-user-id: alice' " .. broker.url .. "/api/connectors"
    local p = io.popen("for i in $(seq 1 30); do " .. cmd
                       .. " & done; wait")
    local codes = p:read("a")
    p:close()
    local n = 0
    for code in codes:gmatch("%d+") do
      assert.equal("200", code)
      n = n + 1
    end
    assert.equal(30, n)
    assert.equal(3, h.stats(sandbox).requests["/v1/available-connectors"])
    local res = h.request("GET", broker.url .. "/api/connectors?category=AI",
                          {headers = {["x-user-id"] = "alice"}})
    assert.equal(200, res.status)
    assert.is_true(#res.json.rows > 0)
    for _, row in ipairs(res.json.rows) do
      assert.equal("AI", row.category)
    end
    assert.equal(3, h.stats(sandbox).requests["/v1/available-connectors"])
  end)
end)
