-- The command line: start-up errors, `check`, version, reload.
local h = require "harness"

-- Runs the binary to completion; returns its exit code and output.
local function run(args, env)
  local p = io.popen(string.format("cd %s && env -u PICA_SECRET_KEY %s "
    .. "timeout 20 %s %s 2>&1; echo \"rc=$?\"", h.q(h.ROOT), env or "",
    h.q(h.BIN), args))
  local out = p:read("a")
  p:close()
  return tonumber(out:match("rc=(%d+)%s*$")), out
end

describe("authkit-broker", function()
  teardown(function() h.stop_all() end)

  it("prints its version", function()
    local rc, out = run("--version")
    assert.equal(0, rc)
    assert.matches("^authkit%-broker %d+%.%d+%.%d+", out)
  end)

  it("refuses to start without a Pica secret outside --dev", function()
    local rc, out = run("--listen 127.0.0.1:0 --admin-listen 127.0.0.1:0")
    assert.equal(2, rc)
    assert.matches("set PICA_SECRET_KEY", out)
  end)

  it("says which plugins directory it cannot read", function()
    local rc, out = run("--plugins /nonexistent/plugins", "PICA_SECRET_KEY=x")
    assert.equal(2, rc)
    assert.matches("cannot read the plugins directory '/nonexistent", out)
  end)

  it("says which port is in use", function()
    local sandbox = h.sandbox()
    local rc, out = run("--listen " .. sandbox.address
                        .. " --admin-listen 127.0.0.1:0",
                        "PICA_SECRET_KEY=sk_test_1_x")
    assert.equal(2, rc)
    assert.matches("cannot listen on " .. sandbox.address:gsub("%.", "%%."),
                   out)
  end)

  it("names a bad config value", function()
    local dir = h.tmpdir()
    h.write(dir .. "/c.lua", "return {request_timeout_ms = 'soon'}")
    local rc, out = run("--config " .. dir .. "/c.lua",
                        "PICA_SECRET_KEY=x")
    assert.equal(2, rc)
    assert.matches("request_timeout_ms must be a whole number", out)
  end)

  it("names an unknown flag", function()
    local rc, out = run("--listn 127.0.0.1:0")
    assert.equal(2, rc)
    assert.matches("unknown flag '%-%-listn'", out)
  end)

  describe("check", function()
    it("passes the shipped plugins when a JWT secret is set", function()
      local rc, out = run("check --plugins plugins",
                          "AUTHKIT_JWT_SECRET=0123456789abcdef0123456789ab")
      assert.equal(0, rc, out)
    end)

    it("fails the shipped plugins with no way to identify anyone",
       function()
      local rc, out = run("check --plugins plugins")
      assert.equal(1, rc)
      assert.matches("10%-identity%.lua: selftest failed", out)
    end)

    it("names the file and line of a syntax error", function()
      local dir = h.plugins({["10-a.lua"] = "return {}",
                             ["20-b.lua"] = "return {\n  x = = 1 }"})
      local rc, out = run("check --plugins " .. dir)
      assert.equal(1, rc)
      assert.matches("20%-b%.lua:2:", out)
    end)

    it("fails a plugin whose selftest returns nil, err", function()
      local dir = h.plugins({["10-a.lua"] =
        "return {selftest = function() return nil, 'no database' end}"})
      local rc, out = run("check --plugins " .. dir)
      assert.equal(1, rc)
      assert.matches("10%-a%.lua: selftest failed: no database", out)
    end)
  end)

  describe("reload on SIGHUP", function()
    it("swaps in new plugins and keeps the old ones on failure",
       function()
      local sandbox = h.sandbox()
      local dir = h.default_plugins()
      local broker = h.broker({pica = sandbox, plugins = dir})
      local function count()
        return #h.request("POST", broker.url .. "/api/authkit/token",
          {headers = {["x-user-id"] = "a"}}).json.rows
      end
      assert.equal(247, count())
      h.write(dir .. "/30-one.lua", "return {filter_integrations = "
              .. "function(r) return {r[1]} end}")
      os.execute("kill -HUP " .. broker.pid)
      assert.truthy(h.wait_for(function() return count() == 1 end, 5))
      h.write(dir .. "/40-broken.lua", "return {")
      os.execute("kill -HUP " .. broker.pid)
      assert.truthy(h.wait_for(function()
        return h.read(broker.log):find("keeps serving", 1, true)
      end, 5))
      assert.equal(1, count())
    end)
  end)
end)
