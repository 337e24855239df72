-- --workers N: N processes on one port under a supervisor.
local h = require "harness"

local function children(proc)
  local p = io.popen("pgrep -P " .. proc.pid)
  local pids = {}
  for line in p:lines() do
    pids[#pids + 1] = tonumber(line)
  end
  p:close()
  return pids
end

local function token(broker)
  return h.request("POST", broker.url .. "/api/authkit/token?limit=1",
                   {headers = {["x-user-id"] = "alice"}})
end

describe("worker processes", function()
  local sandbox, broker

  before_each(function()
    sandbox = h.sandbox()
    broker = h.broker({pica = sandbox, flags = "--workers 2",
      plugins = h.default_plugins({["30-slow.lua"] = [[
        return {filter_integrations = function(rows, who, req)
          if req.query.slow then
            broker.log.info("slow request started")
            broker.sleep(1500)
          end
          return rows
        end}]]})})
  end)

  after_each(function() h.stop_all() end)

  it("serves from two processes on one port", function()
    assert.truthy(h.wait_for(function() return #children(broker) == 2 end))
    for _ = 1, 6 do
      assert.equal(200, token(broker).status)
    end
  end)

  it("starts a worker again when one dies", function()
    assert.truthy(h.wait_for(function() return #children(broker) == 2 end))
    local victim = children(broker)[1]
    os.execute("kill -KILL " .. victim)
    assert.truthy(h.wait_for(function()
      local now = children(broker)
      return #now == 2 and now[1] ~= victim and now[2] ~= victim
    end, 10))
    for _ = 1, 4 do
      assert.equal(200, token(broker).status)
    end
  end)

  it("finishes requests in flight on SIGTERM, then exits", function()
    assert.truthy(h.wait_for(function() return #children(broker) == 2 end))
    local dir = h.tmpdir()
    os.execute(string.format("curl -s -o /dev/null -w '%%{http_code}' -X "
      .. "POST -H 'x-user-id: alice' '%s/api/authkit/token?limit=1&slow=1'"
      .. " > %s/code &", broker.url, dir))
    assert.truthy(h.wait_for(function()
      return h.read(broker.log):find("slow request started", 1, true)
    end))
    os.execute("kill -TERM " .. broker.pid)
    assert.truthy(h.wait_for(function() return not h.alive(broker) end, 10))
    assert.equal("200", h.read(dir .. "/code"))
    assert.same({}, children(broker))
  end)

  it("reloads the plugins in every worker on SIGHUP", function()
    assert.truthy(h.wait_for(function() return #children(broker) == 2 end))
    os.execute("kill -HUP " .. broker.pid)
    assert.truthy(h.wait_for(function()
      local _, n = h.read(broker.log):gsub("generation 2 is live", "")
      return n == 2
    end, 10))
  end)
end)
