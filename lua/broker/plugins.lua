--- Loading the plugins directory into a generation.
--
-- Each `.lua` file (in name order) runs in its own environment: the
-- safe part of the standard library, copied so that no plugin can change
-- another's, and a read-only `broker`.  A file must return a table of
-- hooks.  `init()` runs at load; `selftest()` must pass (not raise, not
-- return `nil, err`) for the generation to go live.
local core = require "broker.core"

local M = {}

M.HOOKS = {
  resolve_identity = true, map_identity_type = true,
  filter_integrations = true, on_success = true, list_connections = true,
  delete_connection = true, lookup_connection = true,
  authorize_passthrough = true, selftest = true, init = true,
}

local SAFE_GLOBALS = {
  "assert", "error", "ipairs", "next", "pairs", "pcall", "select",
  "tonumber", "tostring", "type", "xpcall", "rawequal", "rawget",
  "rawlen", "rawset", "setmetatable", "getmetatable", "_VERSION",
}
local SAFE_LIBS = {"string", "table", "math", "utf8", "coroutine"}

local function copy(t)
  local c = {}
  for k, v in pairs(t) do
    c[k] = v
  end
  return c
end

--- Returns a read-only view of `t` (and of the tables inside it).
function M.readonly(t)
  local cache = {}
  return setmetatable({}, {
    __index = function(_, k)
      local v = t[k]
      -- Metatables (array_mt) are handed out as they are.
      if type(v) == "table" and getmetatable(v) == nil
         and rawget(v, "__name") == nil then
        cache[k] = cache[k] or M.readonly(v)
        return cache[k]
      end
      return v
    end,
    __newindex = function(_, k)
      error("the broker module is read-only (tried to set '"
            .. tostring(k) .. "')", 2)
    end,
    __pairs = function() return next, t, nil end,
    __len = function() return #t end,
    __metatable = false,
  })
end

--- A fresh environment for one plugin file.
function M.environment(api)
  local env = {}
  for _, name in ipairs(SAFE_GLOBALS) do
    env[name] = _G[name]
  end
  for _, name in ipairs(SAFE_LIBS) do
    env[name] = copy(_G[name])
  end
  env.os = {time = os.time, clock = os.clock, date = os.date,
            difftime = os.difftime}
  env.broker = api
  env.require = function(name)
    if name == "broker" then
      return api
    end
    error("plugins may only require \"broker\", not \"" .. tostring(name)
          .. "\"", 2)
  end
  env._G = env
  return env
end

local function hex(s)
  return (s:gsub(".", function(c) return string.format("%02x", c:byte()) end))
end

-- Reads a plugin file whole; raises with the reason.
local function read(path)
  local f, err = io.open(path, "rb")
  if not f then
    error(err, 0)
  end
  local text = f:read("a")
  f:close()
  return text
end

local function load_file(dir, name, api)
  local path = dir .. "/" .. name
  local text = read(path)
  local chunk, err = load(text, "@" .. path, "t", M.environment(api))
  if not chunk then
    error(err, 0)
  end
  local ok, plugin = pcall(chunk)
  if not ok then
    error(tostring(plugin), 0)
  end
  if type(plugin) ~= "table" then
    error(path .. ": must return a table of hooks, not "
          .. type(plugin), 0)
  end
  for k, v in pairs(plugin) do
    if M.HOOKS[k] and type(v) ~= "function" then
      error(path .. ": hook '" .. tostring(k) .. "' is not a function", 0)
    elseif not M.HOOKS[k] then
      core.log("warn", "plugins", path .. ": ignoring unknown field '"
               .. tostring(k) .. "'")
    end
  end
  return {name = name, path = path, hooks = plugin,
          sha256 = hex(core.sha256(text))}
end

-- Runs `fn` of plugin `p` (init or selftest) and raises on failure.
local function run_check(p, what)
  local fn = p.hooks[what]
  if not fn then
    return
  end
  local ok, res, err = pcall(fn)
  if not ok then
    error(p.path .. ": " .. what .. " failed: " .. tostring(res), 0)
  end
  if what == "selftest" and res == nil and err ~= nil then
    error(p.path .. ": selftest failed: " .. tostring(err), 0)
  end
end

--- Loads every plugin of `dir`; returns the list, or raises with the
-- file and line of the first failure.
function M.load(dir, api)
  local names, err = core.list_dir(dir)
  if not names then
    error(err, 0)
  end
  local list = {}
  for _, name in ipairs(names) do
    if name:match("%.lua$") then
      list[#list + 1] = load_file(dir, name, api)
    end
  end
  for _, p in ipairs(list) do
    run_check(p, "init")
  end
  for _, p in ipairs(list) do
    run_check(p, "selftest")
  end
  return list
end

return M
