-- Storing, listing, deleting and syncing connections, against the
-- sandbox Pica, with the default SQLite store.
local h = require "harness"
local cjson = require "cjson.safe"

local api = require "api"
local as, connect, post = api.as, api.connect, api.post
local list, delete = api.list, api.delete

describe("connections", function()
  local sandbox, broker

  setup(function()
    sandbox = h.sandbox()
    broker = h.broker({pica = sandbox})
  end)

  teardown(function() h.stop_all() end)

  after_each(function()
    assert.same({}, h.errors(broker))
  end)

  it("stores the widget's record once Pica confirms it (201)", function()
    local record = connect(sandbox, "alice")
    local res = post(broker, "alice", record)
    assert.equal(201, res.status)
    assert.equal(record.key, res.json.connection.connection_key)
    assert.equal("alice", res.json.connection.identity)
    local rows = list(broker, "alice")
    assert.equal(1, #rows)
    assert.equal("gmail", rows[1].platform)
    assert.equal("operational", rows[1].state)
    assert.equal(record._id, rows[1].id)
  end)

  it("accepts the guide's shape too", function()
    local record = connect(sandbox, "bob", "slack")
    local res = post(broker, "bob", {connection_key = record.key,
      platform = "slack", environment = "test", state = "operational"})
    assert.equal(201, res.status)
  end)

  it("takes the fields from Pica, not from the browser", function()
    local record = connect(sandbox, "carol", "hubspot")
    record.platform = "evil"
    record.state = "lies"
    assert.equal(201, post(broker, "carol", record).status)
    local row = list(broker, "carol")[1]
    assert.equal("hubspot", row.platform)
    assert.equal("operational", row.state)
  end)

  it("stores the same key twice as one row (200 the second time)",
     function()
    local record = connect(sandbox, "dave")
    assert.equal(201, post(broker, "dave", record).status)
    assert.equal(200, post(broker, "dave", record).status)
    assert.equal(1, #list(broker, "dave"))
  end)

  it("refuses another identity's key with 403 and stores nothing",
     function()
    local record = connect(sandbox, "erin")
    local res = post(broker, "mallory", record)
    assert.equal(403, res.status)
    assert.equal("forbidden", res.json.error.code)
    assert.same({}, list(broker, "mallory"))
    assert.same({}, list(broker, "erin"))
  end)

  it("refuses a key Pica does not know with 422", function()
    local res = post(broker, "frank", {key = "test::gmail::default::"
                     .. string.rep("0", 32) .. "|frank"})
    assert.equal(422, res.status)
    assert.equal("unknown_connection", res.json.error.code)
  end)

  it("refuses a body without a well-formed key with 400", function()
    for _, body in ipairs({{}, {key = "nope"}, {key = 42},
                           {key = "ftp::x::default::y"}}) do
      local res = post(broker, "frank", body)
      assert.equal(400, res.status, cjson.encode(body))
    end
    local res = h.request("POST", broker.url .. "/api/connections", {
      headers = as("frank"), body = "{not json"})
    assert.equal(400, res.status)
    assert.equal("bad_json", res.json.error.code)
  end)

  it("lists only the caller's connections", function()
    local a = connect(sandbox, "gina")
    local b = connect(sandbox, "hank")
    post(broker, "gina", a)
    post(broker, "hank", b)
    local rows = list(broker, "gina")
    assert.equal(1, #rows)
    assert.equal(a.key, rows[1].connection_key)
  end)

  it("stores one row for two concurrent posts of one key", function()
    local record = connect(sandbox, "ivan")
    local dir = h.tmpdir()
    h.write(dir .. "/body", cjson.encode(record))
    local cmd = "curl -s -o /dev/null -w '%{http_code}\\n' -X POST "
      .. "-H 'x-user-id: ivan' -H 'content-type: application/json' "
      .. "--data-binary @" .. dir .. "/body " .. broker.url
      .. "/api/connections"
    local p = io.popen("(" .. cmd .. " & " .. cmd .. " & wait)")
    local codes = {}
    for line in p:lines() do
      codes[#codes + 1] = tonumber(line)
    end
    p:close()
    table.sort(codes)
    assert.same({200, 201}, codes)
    assert.equal(1, #list(broker, "ivan"))
  end)

  describe("DELETE", function()
    it("deletes at Pica and in the store; a second delete is 404",
       function()
      local record = connect(sandbox, "judy")
      post(broker, "judy", record)
      local res = delete(broker, "judy", record.key)
      assert.equal(200, res.status)
      assert.same({}, list(broker, "judy"))
      local vault = h.request("GET", sandbox.url .. "/v1/vault/connections/"
        .. record._id, {headers = {["x-pica-secret"] = "sk_test_1_spec"}})
      assert.equal(404, vault.status)
      assert.equal(404, delete(broker, "judy", record.key).status)
    end)

    it("refuses another identity's connection with 403", function()
      local record = connect(sandbox, "kate")
      post(broker, "kate", record)
      assert.equal(403, delete(broker, "mallory", record.key).status)
      assert.equal(1, #list(broker, "kate"))
    end)
  end)

  describe("sync", function()
    it("adds what was never reported, removes what Pica no longer has,"
       .. " and refreshes state", function()
      local kept = connect(sandbox, "liam", "gmail")
      local gone = connect(sandbox, "liam", "slack")
      post(broker, "liam", kept)
      post(broker, "liam", gone)
      local unreported = connect(sandbox, "liam", "hubspot")
      h.request("DELETE", sandbox.url .. "/v1/vault/connections/"
        .. gone._id, {headers = {["x-pica-secret"] = "sk_test_1_spec"}})
      h.json("PATCH", sandbox.url .. "/sandbox/connections/" .. kept._id,
             {state = "failed"})
      local res = h.request("POST", broker.url .. "/api/connections/sync",
                            {headers = as("liam")})
      assert.equal(200, res.status)
      assert.equal(1, res.json.added)
      assert.equal(1, res.json.removed)
      assert.equal(1, res.json.updated)
      local by_key = {}
      for _, row in ipairs(list(broker, "liam")) do
        by_key[row.connection_key] = row
      end
      assert.equal("failed", by_key[kept.key].state)
      assert.truthy(by_key[unreported.key])
      assert.is_nil(by_key[gone.key])
    end)
  end)
end)

describe("connections when things fail", function()
  teardown(function() h.stop_all() end)

  it("answers 502 and stores nothing when Pica is down", function()
    local sandbox = h.sandbox()
    local record = connect(sandbox, "mia")
    local broker = h.broker({pica = sandbox,
                             config = {upstream_attempts = 1}})
    h.fault(sandbox, {path_prefix = "/v1/vault", status = 503, count = 5})
    local res = post(broker, "mia", record)
    assert.equal(502, res.status)
    h.request("DELETE", sandbox.url .. "/sandbox/faults")
    assert.same({}, list(broker, "mia"))
  end)

  it("answers 500 and logs the error when the store fails", function()
    local sandbox = h.sandbox()
    local record = connect(sandbox, "noah")
    local broker = h.broker({pica = sandbox,
      plugins = h.default_plugins({["40-broken-store.lua"] = [[
        return {on_success = function() return nil, "disk on fire" end}
      ]]})})
    local res = post(broker, "noah", record)
    assert.equal(500, res.status)
    assert.is_nil(res.body:find("disk", 1, true))
    assert.truthy(h.read(broker.log):find("disk on fire", 1, true))
  end)

  it("keeps stored connections across a restart", function()
    local sandbox = h.sandbox()
    local record = connect(sandbox, "olga")
    local data = h.tmpdir()
    local broker = h.broker({pica = sandbox, config = {data_dir = data}})
    assert.equal(201, post(broker, "olga", record).status)
    h.stop(broker)
    broker = h.broker({pica = sandbox, config = {data_dir = data}})
    assert.equal(1, #list(broker, "olga"))
  end)

  it("syncs active identities in the background when configured",
     function()
    local sandbox = h.sandbox()
    local broker = h.broker({pica = sandbox,
                             config = {sync_interval_s = 1}})
    assert.same({}, list(broker, "pat"))
    local record = connect(sandbox, "pat")
    assert.truthy(h.wait_for(function()
      local rows = list(broker, "pat")
      return rows[1] and rows[1].connection_key == record.key
    end, 10))
  end)
end)
