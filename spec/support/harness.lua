--- Integration-spec harness: runs the real binary on loopback ports and
-- talks real HTTP to it (through the curl command line).
--
--   local h = require "harness"
--   local sandbox = h.sandbox()                -- authkit-broker sandbox
--   local broker = h.broker{pica = sandbox, plugins = dir}
--   local res = h.request("POST", broker.url .. "/api/authkit/token",
--                         {headers = {["x-user-id"] = "alice"}})
--   res.status, res.headers["vary"], res.json
--   h.stop(broker); h.stop(sandbox)
--
-- Servers listen on port 0; the harness reads the port the server logged.
-- Every wait polls with a deadline, and every process is stopped and its
-- files removed by h.stop (h.stop_all in an after_each).
local cjson = require "cjson.safe"

local M = {}

M.BIN = os.getenv("AUTHKIT_BROKER_BIN") or "build/authkit-broker"
M.ROOT = os.getenv("AUTHKIT_BROKER_ROOT") or "."

local running = {}

--- Quotes `s` for the shell.
function M.q(s)
  return "'" .. tostring(s):gsub("'", "'\\''") .. "'"
end

local function read(path)
  local f = io.open(path, "rb")
  if not f then
    return nil
  end
  local s = f:read("a")
  f:close()
  return s
end
M.read = read

local function write(path, s)
  local f = assert(io.open(path, "wb"))
  f:write(s)
  f:close()
end
M.write = write

--- A fresh temporary directory, removed by h.stop_all.
function M.tmpdir()
  local p = io.popen("mktemp -d /tmp/authkit-spec.XXXXXX")
  local dir = p:read("l")
  p:close()
  running[#running + 1] = {dir = dir}
  return dir
end

--- Waits (polling every 20 ms) until `fn()` is truthy or `timeout_s`
-- passes; returns fn's value or nil.
function M.wait_for(fn, timeout_s)
  local deadline = os.time() + (timeout_s or 5) + 1
  local clock0 = os.clock()
  repeat
    local v = fn()
    if v then
      return v
    end
    os.execute("sleep 0.02")
  until os.time() > deadline or os.clock() - clock0 > 60
  return nil
end

local function env_prefix(env)
  local parts = {}
  for k, v in pairs(env or {}) do
    parts[#parts + 1] = k .. "=" .. M.q(v)
  end
  return table.concat(parts, " ")
end

-- Starts the binary with `args`; waits for the log line matching
-- `ready` (a Lua pattern capturing "host:port").
local function spawn(args, env, ready)
  local dir = M.tmpdir()
  local log = dir .. "/server.log"
  local cmd = string.format("cd %s && env %s %s %s >%s 2>&1 & echo $!",
                            M.q(M.ROOT), env_prefix(env), M.q(M.BIN), args,
                            M.q(log))
  local p = io.popen(cmd)
  local pid = p:read("l")
  p:close()
  local proc = {pid = pid, log = log, dir = dir}
  running[#running + 1] = proc
  proc.address = M.wait_for(function()
    return (read(log) or ""):match(ready)
  end, 10)
  if not proc.address then
    error("server did not start: " .. (read(log) or "(no log)"), 2)
  end
  proc.url = "http://" .. proc.address
  return proc
end

--- Starts `authkit-broker sandbox` with extra flags.
function M.sandbox(flags)
  return spawn("sandbox --listen 127.0.0.1:0 " .. (flags or ""), {},
               "sandbox Pica listening on http://([%d%.]+:%d+)")
end

--- Writes a plugins directory from {["10-x.lua"] = "source", ...}.
function M.plugins(files)
  local dir = M.tmpdir()
  for name, src in pairs(files) do
    write(dir .. "/" .. name, src)
  end
  return dir
end

--- Copies the shipped default plugins into a fresh directory, plus
-- the extra files given.
function M.default_plugins(extra)
  local dir = M.plugins(extra or {})
  os.execute("cp " .. M.q(M.ROOT) .. "/plugins/*.lua " .. M.q(dir))
  return dir
end

--- Starts the broker against the sandbox `opts.pica` with the plugins
-- in `opts.plugins` (default: the shipped ones, header identity on)
-- and extra config settings in `opts.config`.
function M.broker(opts)
  opts = opts or {}
  local dir = M.tmpdir()
  local config = {allow_header_identity = true, log_level = "info",
                  data_dir = dir .. "/data"}
  for k, v in pairs(opts.config or {}) do
    config[k] = v
  end
  local lines = {"return {"}
  for k, v in pairs(config) do
    local val = type(v) == "string" and string.format("%q", v)
                or type(v) == "table" and "{" .. table.concat((function()
                  local t = {}
                  for i, x in ipairs(v) do t[i] = string.format("%q", x) end
                  return t
                end)(), ",") .. "}" or tostring(v)
    lines[#lines + 1] = "  " .. k .. " = " .. val .. ","
  end
  lines[#lines + 1] = "}"
  write(dir .. "/config.lua", table.concat(lines, "\n"))
  local args = string.format(
    "--config %s --listen 127.0.0.1:0 --admin-listen 127.0.0.1:0 "
    .. "--plugins %s --pica-url %s %s", M.q(dir .. "/config.lua"),
    M.q(opts.plugins or M.default_plugins()),
    M.q(opts.pica and opts.pica.url or "http://127.0.0.1:9"),
    opts.flags or "")
  local env = {PICA_SECRET_KEY = opts.secret or "sk_test_1_spec"}
  for k, v in pairs(opts.env or {}) do
    env[k] = v
  end
  local proc = spawn(args, env,
                     "listening on http://([%d%.]+:%d+) %(api")
  proc.admin_url = "http://" .. assert(read(proc.log):match(
    "listening on http://([%d%.]+:%d+) %(admin"))
  return proc
end

--- Sends one request; returns {status, headers (lower-case), body, json}.
-- opts: headers, body, timeout (seconds).
function M.request(method, url, opts)
  opts = opts or {}
  local dir = M.tmpdir()
  local args = {"curl", "-s", "-S", "-o", M.q(dir .. "/body"), "-D",
                M.q(dir .. "/head"), "-w", "'%{http_code}'", "-X",
                M.q(method), "--max-time", tostring(opts.timeout or 20)}
  for k, v in pairs(opts.headers or {}) do
    args[#args + 1] = "-H " .. M.q(k .. ": " .. v)
  end
  if opts.body then
    write(dir .. "/req", opts.body)
    args[#args + 1] = "--data-binary @" .. M.q(dir .. "/req")
  end
  args[#args + 1] = M.q(url)
  local p = io.popen(table.concat(args, " ") .. " 2>/dev/null")
  local code = p:read("a")
  p:close()
  local res = {status = tonumber(code), headers = {},
               body = read(dir .. "/body") or ""}
  for line in (read(dir .. "/head") or ""):gmatch("[^\r\n]+") do
    local k, v = line:match("^([^:]+):%s*(.*)$")
    if k then
      res.headers[k:lower()] = v
    end
  end
  res.json = cjson.decode(res.body)
  os.execute("rm -rf " .. M.q(dir))
  return res
end

--- JSON shorthand: sends `body` (a table) as JSON.
function M.json(method, url, body, headers)
  local h = {["content-type"] = "application/json"}
  for k, v in pairs(headers or {}) do
    h[k] = v
  end
  return M.request(method, url, {headers = h, body = cjson.encode(body)})
end

--- The sandbox's request counters: {requests = {...}, total, ...}.
function M.stats(sandbox)
  return M.request("GET", sandbox.url .. "/sandbox/stats").json
end

function M.reset_stats(sandbox)
  M.request("DELETE", sandbox.url .. "/sandbox/stats")
end

--- Queues a fault in the sandbox (see lua/sandbox/control.lua).
function M.fault(sandbox, fault)
  local res = M.json("POST", sandbox.url .. "/sandbox/faults", fault)
  assert(res.status == 201, "fault not accepted: " .. res.body)
end

--- Log lines at level error (tests assert none appear unexpectedly).
function M.errors(proc)
  local out = {}
  for line in (read(proc.log) or ""):gmatch("[^\n]+") do
    if line:find("level=error", 1, true) then
      out[#out + 1] = line
    end
  end
  return out
end

--- True if the process is still alive.
function M.alive(proc)
  return os.execute("kill -0 " .. proc.pid .. " 2>/dev/null") == true
end

--- Stops a server (SIGTERM, then SIGKILL after 5 s); returns its log.
function M.stop(proc)
  if proc.pid and M.alive(proc) then
    os.execute("kill -TERM " .. proc.pid .. " 2>/dev/null")
    if not M.wait_for(function() return not M.alive(proc) end, 5) then
      os.execute("kill -KILL " .. proc.pid .. " 2>/dev/null")
    end
  end
  return read(proc.log) or ""
end

local SANITIZER = {"AddressSanitizer", "LeakSanitizer", "runtime error:"}

-- The first sanitizer report in a stopped server's log, if any.
local function sanitizer_report(log)
  local first
  for _, mark in ipairs(SANITIZER) do
    local at = log:find(mark, 1, true)
    if at and (first == nil or at < first) then
      first = at
    end
  end
  return first and log:sub(math.max(1, first - 200), first + 4000)
end

--- Stops every process and removes every directory the harness made;
-- raises if a server's log holds a sanitizer report.
function M.stop_all()
  local report
  for i = #running, 1, -1 do
    local r = running[i]
    if r.pid then
      report = report or sanitizer_report(M.stop(r))
    end
    if r.dir then
      os.execute("rm -rf " .. M.q(r.dir))
    end
    running[i] = nil
  end
  if report then
    error("sanitizer report from a server:\n" .. report, 2)
  end
end

return M
