-- A stand-in for the host module `broker` that the C binary gives Lua
-- code, for specs only: json (backed by lua-cjson), sleep, now and log.
--
--   local fake_broker = require "fake_broker"
--   local broker = fake_broker.install{ now = 1752940769.5 }
--   -- package.loaded.broker is now `broker`; require the code under test
--   broker.sleeps    --> every ms passed to broker.sleep, in order
--   broker.logs      --> every {level = "warn", msg = "..."} logged
--   broker.set_now(t); broker.reset()
--   fake_broker.uninstall()
--
-- sleep never yields (specs call handlers outside coroutines); it moves
-- the fake clock forward instead, and calls `broker.on_sleep(ms)` when a
-- spec sets one.

local cjson = require "cjson"

local M = {}

local DEFAULT_NOW = 1752940769.702  -- 2025-07-19T15:59:29.702Z

-- Tables marked with this metatable encode as JSON arrays, even empty.
local ARRAY_MT = { __name = "fake_broker.array" }

-- The metatable of json.empty_array, which must stay empty.
local EMPTY_MT = {
  __name = "fake_broker.empty_array",
  __newindex = function()
    error("json.empty_array is read-only", 2)
  end,
}

local MAX_DEPTH = 1000

local json = {
  null = cjson.null,
  empty_array = setmetatable({}, EMPTY_MT),
}

-- Marks `t` as a JSON array and returns it.
function json.array(t)
  if type(t) ~= "table" then
    error("json.array: expected a table", 2)
  end
  return setmetatable(t, ARRAY_MT)
end

-- Returns true when `t` encodes as an array: marked, or a non-empty
-- sequence with no other keys (like cjson).
local function is_array(t)
  local mt = getmetatable(t)
  if mt == ARRAY_MT or mt == EMPTY_MT then
    return true
  end
  local n = #t
  if n == 0 then
    return false
  end
  local count = 0
  for k in pairs(t) do
    if math.type(k) ~= "integer" or k < 1 or k > n then
      return false
    end
    count = count + 1
  end
  return count == n
end

local encode_value

-- Appends the JSON of table `t` to `out`.
local function encode_table(t, out, depth)
  if is_array(t) then
    out[#out + 1] = "["
    for i = 1, #t do
      if i > 1 then
        out[#out + 1] = ","
      end
      encode_value(t[i], out, depth)
    end
    out[#out + 1] = "]"
    return
  end
  out[#out + 1] = "{"
  local first = true
  for k, v in pairs(t) do
    if type(k) ~= "string" and type(k) ~= "number" then
      error("json.encode: cannot encode a " .. type(k) .. " key", 0)
    end
    out[#out + 1] = (first and "" or ",") .. cjson.encode(tostring(k))
      .. ":"
    first = false
    encode_value(v, out, depth)
  end
  out[#out + 1] = "}"
end

-- Appends the JSON of `v` to `out`.
function encode_value(v, out, depth)
  local kind = type(v)
  if depth > MAX_DEPTH then
    error("json.encode: nested too deep", 0)
  elseif kind == "table" then
    encode_table(v, out, depth + 1)
  elseif math.type(v) == "integer" then
    out[#out + 1] = string.format("%d", v)
  elseif kind == "string" or kind == "number" or kind == "boolean"
      or v == cjson.null then
    out[#out + 1] = cjson.encode(v)
  else
    error("json.encode: cannot encode a " .. kind, 0)
  end
end

-- Returns `v` as JSON text. Raises on what JSON cannot hold.
function json.encode(v)
  local out = {}
  encode_value(v, out, 0)
  return table.concat(out)
end

-- Returns the value of JSON text `s`, or nil, err.
function json.decode(s)
  if type(s) ~= "string" then
    error("json.decode: expected a string", 2)
  end
  local ok, value = pcall(cjson.decode, s)
  if not ok then
    return nil, tostring(value)
  end
  return value
end

M.json = json

-- Returns a new fake broker table; `opts.now` sets the clock (seconds).
function M.new(opts)
  opts = opts or {}
  local broker = { json = json, sleeps = {}, logs = {} }
  local clock = opts.now or DEFAULT_NOW

  function broker.now()
    return clock
  end

  function broker.set_now(t)
    clock = t
  end

  function broker.sleep(ms)
    if type(ms) ~= "number" or ms < 0 then
      error("broker.sleep: expected milliseconds >= 0", 2)
    end
    broker.sleeps[#broker.sleeps + 1] = ms
    clock = clock + ms / 1000
    if broker.on_sleep then
      broker.on_sleep(ms)
    end
  end

  -- Forgets the recorded sleeps and logs, and resets the clock.
  function broker.reset()
    broker.sleeps, broker.logs = {}, {}
    clock = opts.now or DEFAULT_NOW
  end

  broker.log = {}
  for _, level in ipairs({ "debug", "info", "warn", "error" }) do
    broker.log[level] = function(msg)
      broker.logs[#broker.logs + 1] = { level = level, msg = msg }
    end
  end
  return broker
end

-- Makes a new fake broker (see new), sets it as package.loaded.broker and
-- returns it. Modules that already required `broker` keep the old one.
function M.install(opts)
  local broker = M.new(opts)
  package.loaded.broker = broker
  return broker
end

-- Removes the fake from package.loaded.
function M.uninstall()
  package.loaded.broker = nil
end

return M
