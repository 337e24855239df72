-- Reading what a request sends the sandbox: query parameters, JSON bodies
-- and their fields, and list paging. Each reader answers the value (nil
-- when absent and there is no default), or nil and a message fit for a
-- 400 answer.
--
--   local limit, err = params.query_int(query, "limit", 100, 1000)
--   local body, err = params.json_object(req.body)
--   local state, err = params.enum(body, "state", STATES, "operational")

local broker = require "broker"

local M = {}

-- Beyond this a number in a query is taken as this: it is past any page.
local HUGE = 1000000000000

-- Returns query parameter `name` as an integer of at least `min` (1 when
-- nil), `default` when absent, clamped to `max` when given.
function M.query_int(query, name, default, max, min)
  local text = query[name]
  if text == nil then
    return default
  end
  min = min or 1
  local err = string.format("%s must be an integer of at least %d",
    name, min)
  if not text:match("^%d+$") then
    return nil, err
  end
  local n = math.tointeger(tonumber(text)) or HUGE
  if n < min then
    return nil, err
  end
  if max and n > max then
    return max
  end
  return n
end

-- Returns query parameter `name` as a boolean, `default` when absent.
function M.query_bool(query, name, default)
  local text = query[name]
  if text == nil then
    return default
  elseif text == "true" then
    return true
  elseif text == "false" then
    return false
  end
  return nil, name .. " must be true or false"
end

-- Returns the comma-separated list in query parameter `name` as a set
-- (value -> true), or nil when absent. Blanks around items are dropped.
function M.query_set(query, name)
  local text = query[name]
  if text == nil then
    return nil
  end
  local set = {}
  for item in text:gmatch("[^,]+") do
    item = item:match("^%s*(.-)%s*$")
    if item ~= "" then
      set[item] = true
    end
  end
  return set
end

-- Returns `body` decoded as a JSON object; an empty body is `{}`.
function M.json_object(body)
  if body == nil or body == "" then
    return {}
  end
  local value = broker.json.decode(body)
  if type(value) ~= "table" or value[1] ~= nil then
    return nil, "body must be a JSON object"
  end
  return value
end

-- Returns field `name` of `obj`, treating JSON null as absent.
local function field(obj, name)
  local value = obj[name]
  if value == broker.json.null then
    return nil
  end
  return value
end

-- Returns string field `name`, `default` when absent.
function M.string(obj, name, default)
  local value = field(obj, name)
  if value == nil then
    return default
  elseif type(value) ~= "string" then
    return nil, name .. " must be a string"
  end
  return value
end

-- Returns string field `name` when it is a key of the set `allowed`,
-- `default` when absent.
function M.enum(obj, name, allowed, default)
  local value, err = M.string(obj, name, default)
  if err or value == nil then
    return value, err
  end
  if not allowed[value] then
    local names = {}
    for k in pairs(allowed) do
      names[#names + 1] = k
    end
    table.sort(names)
    return nil, name .. " must be one of " .. table.concat(names, ", ")
  end
  return value
end

-- Returns boolean field `name`, `default` when absent.
function M.boolean(obj, name, default)
  local value = field(obj, name)
  if value == nil then
    return default
  elseif type(value) ~= "boolean" then
    return nil, name .. " must be true or false"
  end
  return value
end

-- Returns integer field `name` within min..max, `default` when absent.
function M.int(obj, name, default, min, max)
  local value = field(obj, name)
  if value == nil then
    return default
  end
  local n = math.type(value) and math.tointeger(value)
  if not n or n < min or n > max then
    return nil, string.format("%s must be an integer from %d to %d",
      name, min, max)
  end
  return n
end

-- Returns field `name` as a new list of strings, `default` when absent.
function M.strings(obj, name, default)
  local value = field(obj, name)
  if value == nil then
    return default
  end
  local err = name .. " must be an array of strings"
  if type(value) ~= "table" or next(value) ~= nil and value[1] == nil then
    return nil, err
  end
  local list = {}
  for i, item in ipairs(value) do
    if type(item) ~= "string" then
      return nil, err
    end
    list[i] = item
  end
  return list
end

-- Reads several fields of `obj` at once. `spec` lists, per field, its
-- name, one of the readers above and up to three more arguments for it:
-- `{ {"state", params.enum, STATES, "operational"}, ... }`. Returns a new
-- table of the values by name, or nil, err at the first bad field.
function M.fields(obj, spec)
  local out = {}
  for _, f in ipairs(spec) do
    local value, err = f[2](obj, f[1], table.unpack(f, 3, 5))
    if err then
      return nil, err
    end
    out[f[1]] = value
  end
  return out
end

-- Returns the index range first..last of page `page` of `limit` items in
-- a list of `total`, and the number of pages. Past the end, last < first.
function M.page_range(total, limit, page)
  local pages = (total + limit - 1) // limit
  local first = (page - 1) * limit + 1
  local last = math.min(total, page * limit)
  return first, last, pages
end

return M
