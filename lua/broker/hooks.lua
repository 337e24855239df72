--- Calling hooks: the rules of who answers, and what a failure becomes.
--
-- "First answer wins" hooks stop at the first plugin that returns a
-- non-nil value; filters run through every plugin in turn; notifications
-- run in every plugin.  A hook that raises is logged with its file and
-- line and becomes a generic error for the client.
local core = require "broker.core"
local errors = require "broker.errors"

local M = {}

local plugins = {}

--- Sets the plugin list the hooks are taken from.
function M.set_plugins(list)
  plugins = list
end

--- True if any plugin has hook `name`.
function M.has(name)
  for _, p in ipairs(plugins) do
    if p.hooks[name] then
      return true
    end
  end
  return false
end

-- Logs a failed hook; the error text already names file and line.
local function report(p, name, err)
  core.metric_hook_error(name)
  core.log("error", "hooks", string.format("hook %s of %s failed: %s",
           name, p.name, tostring(err)))
end

local STORE_UNAVAILABLE = errors.new(503, "store_unavailable",
                                     "the connection store is unavailable")

-- Calls one hook; returns its results packed, or raises `failure`.
local function call(p, name, failure, ...)
  core.hook_begin()
  local res = table.pack(pcall(p.hooks[name], ...))
  core.hook_end()
  if not res[1] then
    if errors.is(res[2]) then
      error(res[2], 0)
    end
    if type(res[2]) == "string" and res[2]:find("^pg: unavailable") then
      core.log("warn", "hooks", string.format("hook %s of %s failed: %s",
               name, p.name, res[2]))
      error(STORE_UNAVAILABLE, 0)
    end
    report(p, name, res[2])
    error(failure, 0)
  end
  return res
end

local INTERNAL = errors.new(500, "internal", "internal error")

--- The first non-nil answer of hook `name`: returns `plugin, ...`, or
-- `nil, reason` where reason is the last `nil, reason` a plugin gave.
-- `failure` is the error to raise when a hook fails (500 by default).
function M.first(name, failure, ...)
  local reason
  for _, p in ipairs(plugins) do
    if p.hooks[name] then
      local res = call(p, name, failure or INTERNAL, ...)
      if res[2] ~= nil then
        return p, table.unpack(res, 2, res.n)
      end
      reason = reason or res[3]
    end
  end
  return nil, reason
end

--- Runs `value` through hook `name` of every plugin in turn; each must
-- return a value of type `kind`.
function M.filter(name, kind, value, ...)
  for _, p in ipairs(plugins) do
    if p.hooks[name] then
      local res = call(p, name, INTERNAL, value, ...)
      if type(res[2]) ~= kind then
        report(p, name, "returned a " .. type(res[2]) .. ", not a "
               .. kind)
        error(INTERNAL, 0)
      end
      value = res[2]
    end
  end
  return value
end

--- Calls hook `name` of every plugin; raises on the first that fails or
-- returns `nil, err`.  `on_result` (may be nil) gets each plugin's
-- packed results: `{true, value, ...}`.
function M.each(name, on_result, ...)
  for _, p in ipairs(plugins) do
    if p.hooks[name] then
      local res = call(p, name, INTERNAL, ...)
      if res[2] == nil and res[3] ~= nil then
        report(p, name, res[3])
        error(INTERNAL, 0)
      end
      if on_result then
        on_result(res)
      end
    end
  end
end

return M
