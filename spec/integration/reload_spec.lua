-- Hot reload: new plugins go live on a file change, a failing
-- generation never replaces the live one, and no request fails or
-- straddles two generations while the plugins are rewritten.
local h = require "harness"

-- A plugin stamping each answer with its version, once when the caller
-- is identified and once when the rows are filtered: a request that ran
-- on two generations would carry two versions.
local function versioned(v)
  return string.format([[
local V = %d
return {
  resolve_identity = function(req)
    return {id = req.headers["x-user-id"] or "anon", v = V}
  end,
  filter_integrations = function(rows, who)
    return {{title = who.v .. "/" .. V}}
  end,
}]], v)
end

-- Writes a file the way editors do: a temporary file, then a rename.
local function save(dir, name, text)
  h.write(dir .. "/." .. name .. ".tmp", text)
  os.rename(dir .. "/." .. name .. ".tmp", dir .. "/" .. name)
end

local function status(broker)
  return h.request("GET", broker.admin_url .. "/admin/plugins").json
end

local function generation(broker)
  return status(broker).generation
end

local function token(broker)
  return h.request("POST", broker.url .. "/api/authkit/token",
                   {headers = {["x-user-id"] = "alice"}})
end

describe("hot reload", function()
  local sandbox, broker, dir

  before_each(function()
    sandbox = h.sandbox()
    dir = h.plugins({["10-version.lua"] = versioned(1)})
    broker = h.broker({pica = sandbox, plugins = dir})
  end)

  after_each(function() h.stop_all() end)

  it("puts a changed file live", function()
    assert.equal("1/1", token(broker).json.rows[1].title)
    save(dir, "10-version.lua", versioned(2))
    assert.truthy(h.wait_for(function()
      return token(broker).json.rows[1].title == "2/2"
    end, 5))
    assert.equal(2, generation(broker))
  end)

  it("keeps the live generation on a syntax error and says where",
     function()
    save(dir, "20-bad.lua", "return {\n  oops = = 1 }")
    assert.truthy(h.wait_for(function()
      return status(broker).reloads.failed >= 1
    end, 5))
    local s = status(broker)
    assert.equal(1, s.generation)
    assert.matches("20%-bad%.lua:2:", s.last_failure.error)
    assert.equal(200, token(broker).status)
    local metrics = h.request("GET", broker.admin_url .. "/metrics").body
    assert.matches('authkit_reloads_total{result="failed"} 1', metrics,
                   1, true)
  end)

  it("keeps the live generation when a selftest fails", function()
    save(dir, "20-test.lua", "return {selftest = function() "
         .. "return nil, 'the database is unreachable' end}")
    assert.truthy(h.wait_for(function()
      return status(broker).reloads.failed >= 1
    end, 5))
    assert.matches("20%-test%.lua: selftest failed: the database is "
                   .. "unreachable", status(broker).last_failure.error)
    assert.equal("1/1", token(broker).json.rows[1].title)
  end)

  it("drops a deleted file's hooks", function()
    save(dir, "30-none.lua", "return {filter_integrations = function() "
         .. "return {} end}")
    assert.truthy(h.wait_for(function()
      return #token(broker).json.rows == 0
    end, 5))
    os.remove(dir .. "/30-none.lua")
    assert.truthy(h.wait_for(function()
      return #token(broker).json.rows == 1
    end, 5))
  end)

  it("lists the files with their hashes", function()
    local files = status(broker).files
    assert.equal(1, #files)
    assert.equal("10-version.lua", files[1].name)
    assert.matches("^%x+$", files[1].sha256)
    assert.equal(64, #files[1].sha256)
  end)

  it("reloads on POST /admin/reload and reports a failure as 422",
     function()
    local res = h.request("POST", broker.admin_url .. "/admin/reload")
    assert.equal(200, res.status)
    assert.equal(2, res.json.generation)
    h.write(dir .. "/20-bad.lua", "return 42")
    res = h.request("POST", broker.admin_url .. "/admin/reload")
    assert.equal(422, res.status)
    assert.matches("must return a table", res.json.error.message)
  end)

  it("fails no request while the plugins are rewritten many times",
     function()
    local out = h.tmpdir()
    local loop = string.format([[
for i in $(seq 1 3000); do
  [ -f %s/stop ] && break
  curl -s -w '\n%%{http_code}\n' -X POST -H 'x-user-id: alice' \
    %s/api/authkit/token
done > %s/results 2>&1; touch %s/done]], out, broker.url, out, out)
    os.execute("bash -c " .. h.q(loop) .. " &")
    for v = 2, 21 do
      save(dir, "10-version.lua", versioned(v))
      assert.truthy(h.wait_for(function()
        return generation(broker) >= v
      end, 5), "version " .. v .. " never went live")
    end
    h.write(out .. "/stop", "")
    assert.truthy(h.wait_for(function()
      return h.read(out .. "/done")
    end, 20))
    local text = h.read(out .. "/results")
    local answers, versions = 0, {}
    for body, code in text:gmatch("([^\n]*)\n(%d+)\n") do
      answers = answers + 1
      assert.equal("200", code, body)
      local a, b = body:match('"title":"(%d+)/(%d+)"')
      assert.equal(a, b, body)
      versions[a] = true
    end
    assert.is_true(answers > 20)
    local distinct = 0
    for _ in pairs(versions) do
      distinct = distinct + 1
    end
    assert.is_true(distinct > 2)
    assert.same({}, h.errors(broker))
  end)
end)
