--- The `broker` module: everything a hook may ask of the host.
--
-- Hooks get this table read-only.  Functions that wait on the network
-- (`broker.http.request`, `broker.pica.call`, `broker.sleep`) yield the
-- request's coroutine and never block the event loop, so they may only
-- be called while a request runs, not at load time or in `selftest`.
local core = require "broker.core"
local json = require "broker.json"
local cache = require "broker.cache"
local scheduler = require "broker.scheduler"

local broker = {version = core.version, json = json}

local IDEMPOTENT = {GET = true, HEAD = true, PUT = true, DELETE = true,
                    OPTIONS = true}

-- The file name of the hook that logs, for the module field.
local function caller_module()
  local info = debug.getinfo(3, "S")
  local src = info and info.short_src or "lua"
  return (src:match("([^/]+)%.lua$") or src)
end

broker.log = {}
for _, level in ipairs({"debug", "info", "warn", "error"}) do
  broker.log[level] = function(fmt, ...)
    local msg = select("#", ...) > 0 and string.format(fmt, ...)
                or tostring(fmt)
    core.log(level, caller_module(), msg)
  end
end

local function check_call(opts, level)
  if type(opts) ~= "table" or type(opts.url) ~= "string" then
    error("an HTTP call needs a table with a url", level + 1)
  end
  local call = {}
  for k, v in pairs(opts) do
    call[k] = v
  end
  call.method = (call.method or "GET"):upper()
  if call.json ~= nil then
    call.body = json.encode(call.json)
    call.json = nil
    call.headers = call.headers or {}
    call.headers["content-type"] = call.headers["content-type"]
                                   or "application/json"
  end
  if call.retry == nil then
    call.retry = IDEMPOTENT[call.method] or false
  end
  call.pica = nil     -- only broker.pica may attach the secret
  return call
end

local function result(res)
  core.metric_upstream("http", res.status, res.elapsed_ms)
  if res.error then
    return nil, res.error
  end
  return res
end

broker.http = {}

--- Makes one outbound call: `{method, url, headers, body | json,
-- timeout_ms, retry, max_attempts}`.  Returns `{status, headers, body}`
-- or `nil, err` when no answer came ("timeout", "connect", ...).
function broker.http.request(opts)
  return result(core.http({check_call(opts, 2)})[1])
end

--- Makes several calls at once; returns an array of `{res, err}` pairs
-- in the same order.
function broker.http.request_all(list)
  local calls = {}
  for i, opts in ipairs(list) do
    calls[i] = check_call(opts, 2)
  end
  local out = {}
  for i, res in ipairs(core.http(calls)) do
    out[i] = {result(res)}
  end
  return out
end

--- Runs `fn()` every `seconds` (at least 1) in the background, where
-- it may wait on I/O like a hook.  Call it when the plugin loads.
function broker.every(seconds, fn)
  scheduler.every(seconds, caller_module(), fn)
end

broker.sleep = core.sleep
broker.now = core.now
broker.env = core.env

broker.crypto = {
  hmac_sha256 = core.hmac_sha256,
  sha256 = core.sha256,
  equals = core.equals,
  random_bytes = core.random_bytes,
}
broker.base64url = {encode = core.b64url_encode,
                    decode = core.b64url_decode}

local shared = cache.new(10000)
broker.cache = {
  get = function(key) return shared:get(key) end,
  set = function(key, value, ttl) return shared:set(key, value, ttl) end,
  delete = function(key) return shared:delete(key) end,
}

-- SQLite files in the data directory (see core/sqlite.h); the calls
-- block the loop on the local disk only, never on the network.
broker.sqlite = {open = require("broker.sqlite").open}

-- PostgreSQL pools (see core/pg.h); queries yield like broker.http.
broker.pg = {pool = require("broker.pg").pool}

broker.config = {}

return broker
