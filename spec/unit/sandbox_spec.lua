-- Unit specs of the Pica sandbox (lua/sandbox), calling app.handle
-- directly with a fake host module. Run from the repository root:
--
--   busted --lpath='lua/?.lua;lua/?/init.lua' spec/unit/sandbox_spec.lua

package.path = "spec/support/?.lua;" .. package.path

local cjson = require "cjson"
local fake_broker = require "fake_broker"

local TEST_KEY = "sk_test_1_c2FuZGJveA"
local LIVE_KEY = "sk_live_1_c2FuZGJveA"

local UNAUTHORIZED = {
  type = "Unauthorized", code = 1001, status = 401,
  key = "err::auth::unauthorized", message = "Unauthorized",
  meta = cjson.null,
}

describe("sandbox", function()
  local broker, app

  setup(function()
    broker = fake_broker.install()
    for name in pairs(package.loaded) do
      if name:find("^sandbox%.") then
        package.loaded[name] = nil
      end
    end
    app = require "sandbox.app"
  end)

  teardown(function()
    fake_broker.uninstall()
  end)

  before_each(function()
    broker.reset()
    app.init({})
  end)

  after_each(function()
    for _, entry in ipairs(broker.logs) do
      assert.not_equal("error", entry.level, entry.msg)
    end
  end)

  -- Returns the raw query text of the table `query`, keys sorted.
  local function raw_query(query)
    local names, parts = {}, {}
    for name in pairs(query) do
      names[#names + 1] = name
    end
    table.sort(names)
    for _, name in ipairs(names) do
      parts[#parts + 1] = name .. "=" .. query[name]
    end
    return table.concat(parts, "&")
  end

  -- Calls app.handle; `opts` may hold query (table), body (string or
  -- table, encoded), secret (false: none), headers (extra ones).
  -- Returns status, headers, raw body.
  local function raw(method, path, opts)
    opts = opts or {}
    local headers = { ["content-type"] = "application/json" }
    if opts.secret ~= false then
      headers["x-pica-secret"] = opts.secret or TEST_KEY
    end
    for name, value in pairs(opts.headers or {}) do
      headers[name] = value
    end
    local body = opts.body or ""
    if type(body) == "table" then
      body = cjson.encode(body)
    end
    return app.handle({
      id = "req-1", method = method, path = path,
      raw_query = raw_query(opts.query or {}),
      query = opts.query or {}, headers = headers, body = body,
      remote_addr = "127.0.0.1",
    })
  end

  -- Like raw, but returns status, decoded JSON body (nil if empty),
  -- headers.
  local function call(method, path, opts)
    local status, headers, body = raw(method, path, opts)
    assert.is_string(body)
    local value = body ~= "" and cjson.decode(body) or nil
    return status, value, headers
  end

  -- Creates a connection through the sandbox; returns its record.
  local function connect(fields)
    local status, record = call("POST", "/sandbox/connections",
      { secret = false, body = fields })
    assert.equal(201, status)
    return record
  end

  describe("init", function()
    it("raises on a bad config", function()
      assert.has_error(function()
        app.init({ fail_rate = 2 })
      end, "sandbox.app.init: fail_rate must be a number from 0 to 1")
    end)

    it("raises on a non-integer integration count", function()
      assert.has_error(function()
        app.init({ integrations = 2.5 })
      end)
    end)
  end)

  describe("authentication", function()
    it("answers 401 without x-pica-secret", function()
      local status, body = call("GET", "/v1/users/flags",
        { secret = false })
      assert.equal(401, status)
      assert.same(UNAUTHORIZED, body)
    end)

    it("answers 401 to a secret that is not sk_test_ or sk_live_",
      function()
        local status = call("GET", "/v1/users/flags",
          { secret = "pk_test_1_abc" })
        assert.equal(401, status)
      end)

    it("accepts sk_test_ and sk_live_ secrets", function()
      assert.equal(200, (call("GET", "/v1/users/flags")))
      assert.equal(200, (call("GET", "/v1/users/flags",
        { secret = LIVE_KEY })))
    end)

    it("accepts only config.secret when it is set", function()
      app.init({ secret = "s3cret" })
      assert.equal(401, (call("GET", "/v1/users/flags")))
      assert.equal(200, (call("GET", "/v1/users/flags",
        { secret = "s3cret" })))
    end)

    it("takes the environment from the key's prefix", function()
      local _, body = call("POST", "/v1/authkit",
        { secret = LIVE_KEY })
      assert.equal("live", body.rows[1].environment)
      _, body = call("POST", "/v1/authkit")
      assert.equal("test", body.rows[1].environment)
    end)
  end)

  describe("GET /v1/users/flags", function()
    it("answers the fixed flags", function()
      local status, headers, body = raw("GET", "/v1/users/flags")
      assert.equal(200, status)
      assert.equal("application/json", headers["content-type"])
      assert.matches('"accessList":%[%]', body)
      assert.same({ accessList = {}, authkitWhitelist = false,
        earlyAccess = {}, completedQuickstart = true },
        cjson.decode(body))
    end)
  end)

  describe("POST /v1/authkit", function()
    it("pages 247 integrations by 100", function()
      local pages = {}
      for page = 1, 3 do
        local status, body = call("POST", "/v1/authkit",
          { query = { limit = "100", page = tostring(page) } })
        assert.equal(200, status)
        assert.equal(247, body.total)
        assert.equal(3, body.pages)
        assert.equal(page, body.page)
        pages[page] = #body.rows
      end
      assert.same({ 100, 100, 47 }, pages)
    end)

    it("asks 100 rows when limit is absent", function()
      local _, body = call("POST", "/v1/authkit")
      assert.equal(100, #body.rows)
      assert.equal(1, body.page)
    end)

    it("answers empty rows past the last page", function()
      local status, _, text = raw("POST", "/v1/authkit",
        { query = { page = "4" } })
      assert.equal(200, status)
      local body = cjson.decode(text)
      assert.matches('"rows":%[%]', text)
      assert.equal(247, body.total)
      assert.equal(4, body.page)
    end)

    it("caps limit at 1000", function()
      app.init({ integrations = 1500 })
      local _, body = call("POST", "/v1/authkit",
        { query = { limit = "5000" } })
      assert.equal(1000, #body.rows)
      assert.equal(2, body.pages)
    end)

    it("rejects a garbage, zero or negative limit with 400", function()
      for _, limit in ipairs({ "abc", "0", "-5", "", "10x" }) do
        local status, body = call("POST", "/v1/authkit",
          { query = { limit = limit } })
        assert.equal(400, status, limit)
        assert.equal("BadRequest", body.type)
      end
    end)

    it("rejects page 0 with 400", function()
      local status = call("POST", "/v1/authkit",
        { query = { page = "0" } })
      assert.equal(400, status)
    end)

    it("answers a requestId that differs on every call", function()
      local _, a = call("POST", "/v1/authkit")
      local _, b = call("POST", "/v1/authkit")
      assert.is_number(a.requestId)
      assert.not_equal(a.requestId, b.requestId)
    end)

    it("answers the same rows on every call", function()
      local _, a = call("POST", "/v1/authkit",
        { query = { page = "2" } })
      local _, b = call("POST", "/v1/authkit",
        { query = { page = "2" } })
      assert.same(a.rows, b.rows)
    end)

    it("gives rows the documented fields", function()
      local _, body = call("POST", "/v1/authkit",
        { body = { identity = "u1", identityType = "user" } })
      local row = body.rows[1]
      assert.equal("Gmail", row.title)
      assert.is_number(row.id)
      assert.is_number(row.connectionDefId)
      assert.equal("api", row.type)
      assert.matches("^https://.+%.svg$", row.image)
      assert.equal("test", row.environment)
      assert.same({}, row.tags)
      assert.is_true(row.active)
      assert.is_nil(row.token)
    end)

    it("names integrations past the known ones by number", function()
      local _, body = call("POST", "/v1/authkit")
      assert.equal("Integration 31", body.rows[31].title)
    end)

    it("gives every row its own id", function()
      local _, body = call("POST", "/v1/authkit",
        { query = { limit = "1000" } })
      local seen = {}
      for _, row in ipairs(body.rows) do
        assert.is_nil(seen[row.id])
        seen[row.id] = true
      end
    end)

    it("serves config.integrations rows", function()
      app.init({ integrations = 3 })
      local _, body = call("POST", "/v1/authkit")
      assert.equal(3, body.total)
      assert.equal(1, body.pages)
    end)

    it("rejects an unknown identityType with 400", function()
      local status, body = call("POST", "/v1/authkit",
        { body = { identity = "u1", identityType = "robot" } })
      assert.equal(400, status)
      assert.matches("identityType", body.message)
    end)

    it("rejects a body that is not JSON with 400", function()
      local status = call("POST", "/v1/authkit", { body = "{nope" })
      assert.equal(400, status)
    end)

    it("answers 405 to GET", function()
      local status, body, headers = call("GET", "/v1/authkit")
      assert.equal(405, status)
      assert.same({ type = "error", error = "Method not allowed" },
        body)
      assert.equal("POST", headers.allow)
    end)
  end)

  describe("GET /v1/available-connectors", function()
    it("pages 20 connectors by default", function()
      local status, body = call("GET", "/v1/available-connectors",
        { query = { authkit = "true" } })
      assert.equal(200, status)
      assert.equal(20, #body.rows)
      assert.equal(247, body.total)
      assert.equal(13, body.pages)
      assert.equal(1, body.page)
    end)

    it("gives rows the documented fields", function()
      local _, body = call("GET", "/v1/available-connectors",
        { query = { platform = "gmail" } })
      local row = body.rows[1]
      assert.equal(1, #body.rows)
      assert.equal("Gmail", row.name)
      assert.equal("api::gmail::v1", row.key)
      assert.equal("v1", row.platformVersion)
      assert.equal("generally_available", row.status)
      assert.equal("Communication", row.category)
      assert.same({ "communication" }, row.tags)
      assert.is_true(row.oauth)
      assert.is_number(row.tools)
      assert.equal("1.0.0", row.version)
      assert.is_true(row.active)
    end)

    it("uses the integration's connectionDefId as id", function()
      local _, ints = call("POST", "/v1/authkit")
      local _, body = call("GET", "/v1/available-connectors",
        { query = { key = "api::gmail::v1" } })
      assert.equal(ints.rows[1].connectionDefId, body.rows[1].id)
    end)

    it("filters by name, ignoring case", function()
      local _, body = call("GET", "/v1/available-connectors",
        { query = { name = "hubspot" } })
      assert.equal(1, #body.rows)
      assert.equal("hubspot", body.rows[1].platform)
    end)

    it("filters by category", function()
      local _, body = call("GET", "/v1/available-connectors",
        { query = { category = "CRM", limit = "100" } })
      assert.is_true(#body.rows > 3)
      for _, row in ipairs(body.rows) do
        assert.equal("CRM", row.category)
      end
    end)

    it("rejects an authkit that is not a boolean with 400", function()
      local status = call("GET", "/v1/available-connectors",
        { query = { authkit = "yes" } })
      assert.equal(400, status)
    end)
  end)

  describe("POST /sandbox/connections", function()
    it("answers 201 with a LINK_SUCCESS record", function()
      local record = connect({ platform = "gmail", identity = "u1",
        identityType = "user" })
      for _, field in ipairs({ "_id", "platformVersion",
        "connectionDefinitionId", "key", "environment",
        "platform", "secretsServiceId", "identity",
        "identityType", "settings", "throughput", "createdAt",
        "updatedAt", "updated", "version", "lastModifiedBy",
        "deleted", "tags", "active", "deprecated" }) do
        assert.is_not_nil(record[field], field)
      end
      assert.equal("test", record.environment)
      assert.equal("gmail", record.platform)
      assert.equal("u1", record.identity)
      assert.equal("operational", record.state)
      assert.equal(1752940769702, record.createdAt)
    end)

    it("makes keys in Pica's format", function()
      local record = connect({ platform = "slack",
        identity = "team a:b" })
      assert.matches("^test::slack::default::%x+|team%-a%-b$",
        record.key)
      local hex = record.key:match("::(%x+)|")
      assert.equal(32, #hex)
    end)

    it("uses the hex id as identity when none is given", function()
      local record = connect({ platform = "gmail" })
      local hex = record.key:match("^test::gmail::default::(%x+)$")
      assert.equal(32, #hex)
      assert.equal(hex, record.identity)
    end)

    it("creates in live when the body says so", function()
      local record = connect({ platform = "gmail",
        environment = "live" })
      assert.equal("live", record.environment)
      assert.matches("^live::", record.key)
    end)

    it("rejects an unknown platform with 400", function()
      local status, body = call("POST", "/sandbox/connections",
        { secret = false, body = { platform = "nope" } })
      assert.equal(400, status)
      assert.equal("error", body.type)
    end)

    it("rejects an unknown state with 400", function()
      local status = call("POST", "/sandbox/connections",
        { secret = false,
          body = { platform = "gmail", state = "sad" } })
      assert.equal(400, status)
    end)
  end)

  describe("PATCH /sandbox/connections/{id}", function()
    it("changes the connection's state", function()
      local record = connect({ platform = "gmail", identity = "u1" })
      local status, changed = call("PATCH",
        "/sandbox/connections/" .. record._id,
        { secret = false, body = { state = "failed" } })
      assert.equal(200, status)
      assert.equal("failed", changed.state)
      local _, row = call("GET",
        "/v1/vault/connections/" .. record._id)
      assert.equal("failed", row.state)
    end)

    it("answers 404 to an unknown id", function()
      local status = call("PATCH", "/sandbox/connections/nope",
        { secret = false, body = { state = "failed" } })
      assert.equal(404, status)
    end)
  end)

  describe("GET /v1/vault/connections", function()
    it("lists connections as documented rows", function()
      local record = connect({ platform = "resend", identity = "u1" })
      local status, body = call("GET", "/v1/vault/connections")
      assert.equal(200, status)
      assert.equal(1, body.total)
      assert.equal(1, body.pages)
      local row = body.rows[1]
      assert.equal(record._id, row.id)
      assert.equal(record.key, row.key)
      assert.equal("api", row.type)
      assert.equal("resend", row.platform)
      assert.equal("user", row.identityType)
      assert.equal("operational", row.state)
      assert.equal("2025-07-19T15:59:29.702000Z", row.createdAt)
    end)

    it("filters by identity and platform", function()
      connect({ platform = "gmail", identity = "u1" })
      connect({ platform = "slack", identity = "u1" })
      connect({ platform = "gmail", identity = "u2" })
      local _, body = call("GET", "/v1/vault/connections",
        { query = { identity = "u1", platform = "gmail" } })
      assert.equal(1, body.total)
    end)

    it("filters by a comma-separated list of keys", function()
      local a = connect({ platform = "gmail" })
      connect({ platform = "gmail" })
      local c = connect({ platform = "gmail" })
      local _, body = call("GET", "/v1/vault/connections",
        { query = { key = a.key .. "," .. c.key } })
      assert.equal(2, body.total)
    end)

    it("lists only active connections by default", function()
      connect({ platform = "gmail", active = false })
      local _, body = call("GET", "/v1/vault/connections")
      assert.equal(0, body.total)
      _, body = call("GET", "/v1/vault/connections",
        { query = { active = "false" } })
      assert.equal(1, body.total)
    end)

    it("lists only the secret's environment", function()
      connect({ platform = "gmail", environment = "live" })
      local _, body = call("GET", "/v1/vault/connections")
      assert.equal(0, body.total)
      _, body = call("GET", "/v1/vault/connections",
        { secret = LIVE_KEY })
      assert.equal(1, body.total)
    end)

    it("pages by 20 by default", function()
      for _ = 1, 25 do
        connect({ platform = "gmail" })
      end
      local _, body = call("GET", "/v1/vault/connections",
        { query = { page = "2" } })
      assert.equal(5, #body.rows)
      assert.equal(25, body.total)
      assert.equal(2, body.pages)
    end)
  end)

  describe("/v1/vault/connections/{id}", function()
    it("answers 404 to an unknown id", function()
      local status, body = call("GET", "/v1/vault/connections/nope")
      assert.equal(404, status)
      assert.equal("NotFound", body.type)
      assert.equal(2005, body.code)
    end)

    it("answers 404 to another environment's connection", function()
      local record = connect({ platform = "gmail" })
      local status = call("GET",
        "/v1/vault/connections/" .. record._id,
        { secret = LIVE_KEY })
      assert.equal(404, status)
    end)

    it("deletes with 200 and an empty body, then answers 404",
      function()
        local record = connect({ platform = "gmail" })
        local path = "/v1/vault/connections/" .. record._id
        local status, _, body = raw("DELETE", path)
        assert.equal(200, status)
        assert.equal("", body)
        assert.equal(404, (raw("DELETE", path)))
        assert.equal(404, (raw("GET", path)))
      end)

    it("updates tags with PATCH", function()
      local record = connect({ platform = "gmail" })
      local path = "/v1/vault/connections/" .. record._id
      local status, row = call("PATCH", path,
        { body = { tags = { "a", "b" } } })
      assert.equal(200, status)
      assert.same({ "a", "b" }, row.tags)
      local _, again = call("GET", path)
      assert.same({ "a", "b" }, again.tags)
    end)

    it("rejects tags that are not strings with 400", function()
      local record = connect({ platform = "gmail" })
      local status = call("PATCH",
        "/v1/vault/connections/" .. record._id,
        { body = { tags = { 1, 2 } } })
      assert.equal(400, status)
    end)
  end)

  describe("/v1/passthrough", function()
    local record

    before_each(function()
      record = connect({ platform = "hubspot", identity = "u1" })
    end)

    it("answers 400 without x-pica-connection-key", function()
      local status = call("GET", "/v1/passthrough/crm/v3/objects")
      assert.equal(400, status)
    end)

    it("answers 404 to an unknown key", function()
      local status = call("GET", "/v1/passthrough/crm/v3/objects",
        { headers = { ["x-pica-connection-key"] = "test::x" } })
      assert.equal(404, status)
    end)

    it("answers 404 to a key of the other environment", function()
      local status = call("GET", "/v1/passthrough/crm/v3/objects",
        { secret = LIVE_KEY,
          headers = { ["x-pica-connection-key"] = record.key } })
      assert.equal(404, status)
    end)

    it("echoes the request it would forward", function()
      local status, body, headers = call("POST",
        "/v1/passthrough/crm/v3/objects/contacts/search", {
          query = { a = "1" },
          body = "{\"q\":1}",
          headers = { ["x-pica-connection-key"] = record.key,
                ["x-custom"] = "yes" },
        })
      assert.equal(200, status)
      assert.equal("application/octet-stream",
        headers["content-type"])
      assert.equal("application/json",
        headers["x-pica-passthrough-content-type"])
      assert.same({
        method = "POST",
        path = "/crm/v3/objects/contacts/search",
        query = "a=1",
        body = "{\"q\":1}",
        headers = { ["content-type"] = "application/json",
              ["x-custom"] = "yes" },
        connectionKey = record.key,
        platform = "hubspot",
      }, body)
    end)

    it("answers the status asked by sandbox_status", function()
      local status = call("PUT", "/v1/passthrough/x", {
        query = { sandbox_status = "429" },
        headers = { ["x-pica-connection-key"] = record.key },
      })
      assert.equal(429, status)
    end)

    it("answers sandbox_bytes bytes", function()
      local status, _, body = raw("GET", "/v1/passthrough/x", {
        query = { sandbox_bytes = "100000" },
        headers = { ["x-pica-connection-key"] = record.key },
      })
      assert.equal(200, status)
      assert.equal(100000, #body)
    end)

    it("caps sandbox_bytes at 64 MiB", function()
      local _, _, body = raw("GET", "/v1/passthrough/x", {
        query = { sandbox_bytes = "999999999999" },
        headers = { ["x-pica-connection-key"] = record.key },
      })
      assert.equal(64 * 1024 * 1024, #body)
    end)

    it("answers 405 to HEAD", function()
      local status = call("HEAD", "/v1/passthrough/x", {
        headers = { ["x-pica-connection-key"] = record.key },
      })
      assert.equal(405, status)
    end)
  end)

  describe("faults", function()
    it("answers the fault's status count times", function()
      local status = call("POST", "/sandbox/faults", {
        secret = false,
        body = { path_prefix = "/v1/authkit", status = 503,
             count = 2, retry_after = 1 },
      })
      assert.equal(201, status)
      for _ = 1, 2 do
        local s, body, headers = call("POST", "/v1/authkit")
        assert.equal(503, s)
        assert.equal("1", headers["retry-after"])
        assert.equal("ServiceUnavailable", body.type)
      end
      assert.equal(200, (call("POST", "/v1/authkit")))
    end)

    it("leaves other paths alone", function()
      call("POST", "/sandbox/faults", { secret = false,
        body = { path_prefix = "/v1/authkit", status = 500 } })
      assert.equal(200, (call("GET", "/v1/users/flags")))
      assert.equal(500, (call("POST", "/v1/authkit")))
    end)

    it("delays a normal answer when status is 0", function()
      call("POST", "/sandbox/faults", { secret = false,
        body = { path_prefix = "/v1/users", status = 0,
             delay_ms = 1500 } })
      assert.equal(200, (call("GET", "/v1/users/flags")))
      assert.same({ 1500 }, broker.sleeps)
      assert.equal(200, (call("GET", "/v1/users/flags")))
      assert.same({ 1500 }, broker.sleeps)
    end)

    it("forgets every fault on DELETE", function()
      call("POST", "/sandbox/faults", { secret = false,
        body = { path_prefix = "/v1/", status = 503, count = 5 } })
      assert.equal(200, (raw("DELETE", "/sandbox/faults")))
      assert.equal(200, (call("GET", "/v1/users/flags")))
    end)

    it("rejects a fault without path_prefix with 400", function()
      local status = call("POST", "/sandbox/faults",
        { secret = false, body = { status = 503 } })
      assert.equal(400, status)
    end)
  end)

  describe("stats", function()
    it("counts /v1 requests by path, ids collapsed", function()
      local record = connect({ platform = "gmail" })
      call("POST", "/v1/authkit")
      call("POST", "/v1/authkit", { secret = false })
      call("GET", "/v1/vault/connections/" .. record._id)
      call("GET", "/v1/passthrough/a/b",
        { headers = { ["x-pica-connection-key"] = record.key } })
      local _, stats = call("GET", "/sandbox/stats")
      assert.same({
        requests = {
          ["/v1/authkit"] = 2,
          ["/v1/vault/connections/{id}"] = 1,
          ["/v1/passthrough"] = 1,
        },
        total = 4,
        max_inflight = 1,
      }, stats)
    end)

    it("resets on DELETE", function()
      call("GET", "/v1/users/flags")
      assert.equal(200, (raw("DELETE", "/sandbox/stats")))
      local _, stats = call("GET", "/sandbox/stats")
      assert.same({ requests = {}, total = 0, max_inflight = 0 },
        stats)
    end)
  end)

  describe("config", function()
    it("delays every /v1 answer by latency_ms", function()
      app.init({ latency_ms = 25 })
      call("GET", "/v1/users/flags")
      call("POST", "/v1/authkit")
      call("GET", "/sandbox/stats")
      assert.same({ 25, 25 }, broker.sleeps)
    end)

    it("fails /v1 calls at fail_rate", function()
      app.init({ fail_rate = 1 })
      local status, body = call("GET", "/v1/users/flags")
      assert.equal(500, status)
      assert.equal("InternalServerError", body.type)
      assert.equal(200, (call("GET", "/sandbox/stats")))
    end)
  end)

  describe("routing", function()
    it("answers 404 to an unknown route", function()
      local status, body = call("GET", "/v2/nothing")
      assert.equal(404, status)
      assert.same({ type = "error", error = "Not found" }, body)
    end)

    it("answers 404 to an unknown /v1 route", function()
      local status = call("GET", "/v1/nothing")
      assert.equal(404, status)
    end)

    it("answers 405 with Allow to a wrong method", function()
      local status, _, headers = call("PUT", "/sandbox/stats")
      assert.equal(405, status)
      assert.equal("DELETE, GET", headers.allow)
    end)
  end)
end)
