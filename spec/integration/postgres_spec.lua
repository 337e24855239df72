-- The PostgreSQL connection store (plugins/50-store-postgres.lua on
-- core/pg.c) against throwaway servers: the store rules, two brokers
-- sharing one database, and the database restarting under the broker.
local h = require "harness"
local pg = require "postgres"
local cjson = require "cjson.safe"

if not pg.available() then
  describe("postgres store", function()
    pending("PostgreSQL is not installed (scripts/deps.sh installs it)")
  end)
  return
end

local api = require "api"
local as, connect, post = api.as, api.connect, api.post
local list, delete = api.list, api.delete

-- Rows of `key` in the database, straight from psql.
local function rows_of(db, key, dbname)
  return tonumber(pg.psql(db, "SELECT count(*) FROM user_connections "
                          .. "WHERE connection_key = " .. pg.literal(key),
                          dbname))
end

-- A broker that stores in the database at `url`.
local function pg_broker(sandbox, url)
  return h.broker({pica = sandbox, config = {
    store = "postgres", postgres_url = url, postgres_pool_size = 2,
    data_dir = h.tmpdir()}})
end

-- The shell command that posts the record in `file` as `who` and
-- prints the status.
local function post_cmd(broker, who, file)
  return "curl -s -o /dev/null -w '%{http_code}\\n' -X POST "
    .. "-H " .. h.q("x-user-id: " .. who) .. " "
    .. "-H 'content-type: application/json' --data-binary @"
    .. h.q(file) .. " " .. h.q(broker.url .. "/api/connections")
end

-- Runs shell commands at once; returns their printed statuses, sorted.
local function all_at_once(cmds)
  local p = io.popen("(" .. table.concat(cmds, " & ") .. " & wait)")
  local codes = {}
  for line in p:lines() do
    codes[#codes + 1] = tonumber(line)
  end
  p:close()
  table.sort(codes)
  return codes
end

-- Error log lines other than the store being unreachable.
local function unexpected_errors(proc)
  local out = {}
  for _, line in ipairs(h.errors(proc)) do
    if not line:find("pg: unavailable", 1, true) then
      out[#out + 1] = line
    end
  end
  return out
end

-- Seconds on the wall clock, with a fraction.
local function now()
  local p = io.popen("date +%s.%N")
  local t = tonumber(p:read("l"))
  p:close()
  return t
end

describe("postgres store", function()
  local db, sandbox, broker, data_dir

  setup(function()
    db = pg.start()
    sandbox = h.sandbox()
    data_dir = h.tmpdir()
    broker = h.broker({pica = sandbox, config = {
      store = "postgres", postgres_url = db.url, postgres_pool_size = 2,
      data_dir = data_dir}})
  end)

  teardown(function()
    h.stop_all()
    pg.destroy(db)
  end)

  after_each(function()
    assert.same({}, h.errors(broker))
  end)

  it("stores the widget's record once Pica confirms it (201)", function()
    local record = connect(sandbox, "alice")
    local res = post(broker, "alice", record)
    assert.equal(201, res.status)
    assert.equal(record.key, res.json.connection.connection_key)
    local rows = list(broker, "alice")
    assert.equal(1, #rows)
    assert.equal("gmail", rows[1].platform)
    assert.equal("operational", rows[1].state)
    assert.equal(record._id, rows[1].id)
    assert.equal(1, rows_of(db, record.key))
  end)

  it("keeps the rows in postgres, not in the SQLite file", function()
    local record = connect(sandbox, "bob")
    assert.equal(201, post(broker, "bob", record).status)
    assert.is_nil(h.read(data_dir .. "/connections.db"))
  end)

  it("stores the same key twice as one row (200 the second time)",
     function()
    local record = connect(sandbox, "dave")
    assert.equal(201, post(broker, "dave", record).status)
    assert.equal(200, post(broker, "dave", record).status)
    assert.equal(1, #list(broker, "dave"))
    assert.equal(1, rows_of(db, record.key))
  end)

  it("refreshes state when the key is stored again", function()
    local record = connect(sandbox, "erin")
    assert.equal(201, post(broker, "erin", record).status)
    h.json("PATCH", sandbox.url .. "/sandbox/connections/" .. record._id,
           {state = "failed"})
    assert.equal(200, post(broker, "erin", record).status)
    assert.equal("failed", list(broker, "erin")[1].state)
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

  it("refuses another identity's key with 403 and stores nothing",
     function()
    local record = connect(sandbox, "ivan")
    assert.equal(403, post(broker, "mallory", record).status)
    assert.equal(0, rows_of(db, record.key))
  end)

  it("deletes a connection; a second delete is 404", function()
    local record = connect(sandbox, "judy")
    post(broker, "judy", record)
    assert.equal(200, delete(broker, "judy", record.key).status)
    assert.same({}, list(broker, "judy"))
    assert.equal(0, rows_of(db, record.key))
    assert.equal(404, delete(broker, "judy", record.key).status)
  end)

  it("refuses to delete another identity's connection with 403",
     function()
    local record = connect(sandbox, "kate")
    post(broker, "kate", record)
    assert.equal(403, delete(broker, "mallory", record.key).status)
    assert.equal(1, rows_of(db, record.key))
  end)

  -- The C tests of core/pg.c need a server: this one.
  local test_pg = h.BIN:gsub("[^/]+$", "test_pg")
  if os.execute("test -x " .. h.q(test_pg)) then
    it("passes the C tests of core/pg.c (test_pg)", function()
      local p = io.popen(string.format("AB_PG_TEST_URL=%s %s 2>&1; "
        .. "echo \"rc=$?\"", h.q(db.url), h.q(test_pg)))
      local out = p:read("a")
      p:close()
      assert.truthy(out:find("[1-9]%d* passed, 0 failed\nrc=0\n$"), out)
    end)
  else
    pending("the C tests of core/pg.c: no test_pg next to " .. h.BIN)
  end

  it("stores one row for concurrent posts of one key", function()
    local record = connect(sandbox, "liam")
    local file = h.tmpdir() .. "/body"
    h.write(file, cjson.encode(record))
    local cmd = post_cmd(broker, "liam", file)
    assert.same({200, 200, 200, 201}, all_at_once({cmd, cmd, cmd, cmd}))
    assert.equal(1, rows_of(db, record.key))
  end)
end)

describe("postgres store shared by two brokers", function()
  local db, url, sandbox, one, two

  setup(function()
    db = pg.start()
    url = pg.create_database(db, "shared")
    sandbox = h.sandbox()
    one = pg_broker(sandbox, url)
    two = pg_broker(sandbox, url)
  end)

  teardown(function()
    h.stop_all()
    pg.destroy(db)
  end)

  after_each(function()
    assert.same({}, h.errors(one))
    assert.same({}, h.errors(two))
  end)

  it("creates the table once when both brokers start storing at once",
     function()
    local record = connect(sandbox, "mia")
    local file = h.tmpdir() .. "/body"
    h.write(file, cjson.encode(record))
    assert.same({200, 201}, all_at_once({post_cmd(one, "mia", file),
                                         post_cmd(two, "mia", file)}))
    assert.equal(1, rows_of(db, record.key, "shared"))
  end)

  it("lists through one broker what the other stored", function()
    local record = connect(sandbox, "noah")
    assert.equal(201, post(one, "noah", record).status)
    local rows = list(two, "noah")
    assert.equal(1, #rows)
    assert.equal(record.key, rows[1].connection_key)
  end)

  it("deletes through one broker what the other stored", function()
    local record = connect(sandbox, "olga")
    assert.equal(201, post(one, "olga", record).status)
    assert.equal(200, delete(two, "olga", record.key).status)
    assert.same({}, list(one, "olga"))
  end)

  it("keeps one row per key when both brokers store them at once",
     function()
    local file = h.tmpdir() .. "/body"
    for i = 1, 5 do
      local record = connect(sandbox, "pat" .. i)
      h.write(file, cjson.encode(record))
      local codes = all_at_once({post_cmd(one, "pat" .. i, file),
                                 post_cmd(two, "pat" .. i, file)})
      assert.same({200, 201}, codes)
      assert.equal(1, rows_of(db, record.key, "shared"))
    end
  end)
end)

describe("postgres store when the database restarts", function()
  local db, sandbox, broker

  setup(function()
    db = pg.start()
    sandbox = h.sandbox()
    broker = pg_broker(sandbox, db.url)
  end)

  teardown(function()
    h.stop_all()
    pg.destroy(db)
  end)

  after_each(function()
    assert.same({}, unexpected_errors(broker))
  end)

  it("answers 503 store_unavailable at once while it is down, then "
     .. "stores again without duplicates", function()
    local before = connect(sandbox, "quinn", "gmail")
    local during = connect(sandbox, "quinn", "slack")
    assert.equal(201, post(broker, "quinn", before).status)
    pg.stop(db)

    local t0 = now()
    local res = post(broker, "quinn", during)
    assert.equal(503, res.status)
    assert.equal("store_unavailable", res.json.error.code)
    assert.is_nil(res.body:find("pg:", 1, true))
    res = h.request("GET", broker.url .. "/api/connections",
                    {headers = as("quinn")})
    assert.equal(503, res.status)
    assert.equal("store_unavailable", res.json.error.code)
    assert.is_true(now() - t0 < 5)
    assert.is_true(h.alive(broker))

    pg.resume(db)
    assert.equal(201, post(broker, "quinn", during).status)
    assert.equal(200, post(broker, "quinn", before).status)
    assert.equal(2, #list(broker, "quinn"))
    assert.equal(1, rows_of(db, before.key))
    assert.equal(1, rows_of(db, during.key))
  end)

  it("answers 503 for a store cut off by the shutdown, and stores it "
     .. "once afterwards", function()
    local record = connect(sandbox, "rosa")
    assert.equal(201, post(broker, "rosa", record).status)

    -- Another session locks the row, so the broker's upsert waits on
    -- the server when the server goes down.  The shutdown is immediate:
    -- a fast one may end the lock holder first and let the upsert
    -- finish.
    local dir = h.tmpdir()
    os.execute(string.format("%s/psql -X -q -h 127.0.0.1 -p %d -U postgres "
      .. "-c %s >/dev/null 2>&1 &", h.q(db.bin), db.port, h.q(
      "BEGIN; SELECT 1 FROM user_connections WHERE connection_key = "
      .. pg.literal(record.key) .. " FOR UPDATE; SELECT pg_sleep(60)")))
    assert.truthy(h.wait_for(function()
      return pg.psql(db, "SELECT count(*) FROM pg_stat_activity WHERE "
                     .. "query LIKE '%pg_sleep%' AND state = 'active' "
                     .. "AND pid <> pg_backend_pid()") == "1"
    end, 10))
    h.write(dir .. "/body", cjson.encode(record))
    os.execute(string.format("curl -s -o %s -w '%%{http_code}' -X POST "
      .. "-H 'x-user-id: rosa' -H 'content-type: application/json' "
      .. "--data-binary @%s %s >%s 2>/dev/null &", h.q(dir .. "/answer"),
      h.q(dir .. "/body"), h.q(broker.url .. "/api/connections"),
      h.q(dir .. "/status")))
    assert.truthy(h.wait_for(function()
      return pg.psql(db, "SELECT count(*) FROM pg_locks WHERE NOT granted")
             ~= "0"
    end, 10))

    pg.stop(db, "immediate")
    local status = h.wait_for(function()
      return tonumber(h.read(dir .. "/status") or "")
    end, 10)
    assert.equal(503, status)
    local answer = cjson.decode(h.read(dir .. "/answer"))
    assert.equal("store_unavailable", answer.error.code)

    pg.resume(db)
    assert.equal(200, post(broker, "rosa", record).status)
    assert.equal(1, rows_of(db, record.key))
    assert.equal(1, #list(broker, "rosa"))
  end)
end)
