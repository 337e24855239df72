--- A per-worker cache with a time to live, for hooks and the runtime.
--
-- Values live in this Lua state only: each worker and each plugin
-- generation has its own.  Expired entries are dropped when read and
-- swept when the cache grows past its size.
local core = require "broker.core"

local M = {}
M.__index = M

--- Creates a cache holding at most `max_items` entries.
function M.new(max_items)
  return setmetatable({items = {}, count = 0, max = max_items or 10000}, M)
end

local function now()
  return core.monotonic_ms() / 1000
end

--- Returns the value stored under `key`, or nil if absent or expired.
function M:get(key)
  local item = self.items[key]
  if item == nil then
    return nil
  end
  if item.expires <= now() then
    self.items[key] = nil
    self.count = self.count - 1
    return nil
  end
  return item.value
end

function M:sweep()
  local t = now()
  for k, item in pairs(self.items) do
    if item.expires <= t then
      self.items[k] = nil
      self.count = self.count - 1
    end
  end
  if self.count >= self.max then
    self.items, self.count = {}, 0
  end
end

--- Stores `value` under `key` for `ttl` seconds (nil `value` deletes).
function M:set(key, value, ttl)
  if type(ttl) ~= "number" or ttl < 0 then
    error("cache ttl must be a number of seconds", 2)
  end
  local old = self.items[key]
  if value == nil then
    if old then
      self.items[key] = nil
      self.count = self.count - 1
    end
    return
  end
  if old == nil then
    if self.count >= self.max then
      self:sweep()
    end
    self.count = self.count + 1
  end
  self.items[key] = {value = value, expires = now() + ttl}
end

--- Deletes `key`.
function M:delete(key)
  self:set(key, nil, 0)
end

return M
