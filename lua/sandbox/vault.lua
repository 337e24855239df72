-- The sandbox's in-memory vault of connections, and the two shapes Pica
-- shows them in: the vault row of GET /v1/vault/connections and the
-- widget's LINK_SUCCESS record.
--
--   local vault = require "sandbox.vault"
--   local v = vault.new()
--   local conn = v:create{ integration = it, environment = "test",
--                          identity = "u1", now_ms = 1752940769702 }
--   v:get(conn.id), v:find_key(conn.key), v:delete(conn.id)
--   vault.row(conn), vault.record(conn)   --> tables, ready to encode

local broker = require "broker"

local M = {}

local mt = { __index = M }

-- The connection states Pica documents.
M.STATES = {
  operational = true,
  degraded = true,
  failed = true,
  unknown = true,
}

M.IDENTITY_TYPES = {
  user = true,
  team = true,
  organization = true,
  project = true,
}

local VERSION = "1.0.0"

-- Returns `n` (at most 32) random lower-case hex digits.
local function random_hex(n)
  local text = string.format("%016x%016x", math.random(0), math.random(0))
  return text:sub(1, n)
end

-- Returns a random version 4 UUID.
local function uuid()
  local r = math.random
  return string.format("%08x-%04x-4%03x-%04x-%012x",
    r(0, 0xffffffff), r(0, 0xffff), r(0, 0xfff),
    r(0, 0x3fff) | 0x8000, r(0, 0xffffffffffff))
end

-- Returns `ms` (milliseconds since the epoch) as an RFC 3339 UTC time with
-- microseconds, like Pica's `createdAt`.
local function iso_time(ms)
  return os.date("!%Y-%m-%dT%H:%M:%S", ms // 1000)
    .. string.format(".%06dZ", ms % 1000 * 1000)
end

-- Returns the connection key Pica makes (pica-api.md, "Connection keys"):
-- `{env}::{platform}::default::{hex}`, then `|{identity}` with spaces and
-- colons turned into '-' when an identity is given.
function M.make_key(env, platform, id_hex, identity)
  local key = env .. "::" .. platform .. "::default::" .. id_hex
  if identity then
    key = key .. "|" .. (identity:gsub("[ :]", "-"))
  end
  return key
end

-- Returns an empty vault.
function M.new()
  return setmetatable({ list = {}, by_id = {}, by_key = {} }, mt)
end

-- Stores a new connection and returns it. `spec` holds `integration` (from
-- sandbox.data), `environment`, `now_ms` and optionally `identity`,
-- `identity_type`, `state`, `tags` (a list the vault takes), `active`,
-- `name`.
function M:create(spec)
  local id_hex = random_hex(32)
  local it = spec.integration
  local conn = {
    id = uuid(),
    key = M.make_key(spec.environment, it.platform, id_hex,
      spec.identity),
    integration = it,
    platform = it.platform,
    environment = spec.environment,
    identity = spec.identity or id_hex,
    identity_type = spec.identity_type or "user",
    state = spec.state or "operational",
    tags = broker.json.array(spec.tags or {}),
    active = spec.active ~= false,
    name = spec.name,
    secrets_id = random_hex(24),
    created_ms = spec.now_ms,
    updated_ms = spec.now_ms,
    updated = false,
  }
  self.list[#self.list + 1] = conn
  self.by_id[conn.id] = conn
  self.by_key[conn.key] = conn
  return conn
end

-- Returns the connection of id `id`, or nil.
function M:get(id)
  return self.by_id[id]
end

-- Returns the connection of key `key`, or nil.
function M:find_key(key)
  return self.by_key[key]
end

-- Removes the connection of id `id`; returns it, or nil when absent.
function M:delete(id)
  local conn = self.by_id[id]
  if not conn then
    return nil
  end
  for i, c in ipairs(self.list) do
    if c == conn then
      table.remove(self.list, i)
      break
    end
  end
  self.by_id[id] = nil
  self.by_key[conn.key] = nil
  return conn
end

-- Removes every connection; returns how many there were.
function M:clear()
  local n = #self.list
  self.list, self.by_id, self.by_key = {}, {}, {}
  return n
end

-- Returns, in creation order, the connections for which `pred(conn)` is
-- true.
function M:select(pred)
  local out = {}
  for _, conn in ipairs(self.list) do
    if pred(conn) then
      out[#out + 1] = conn
    end
  end
  return out
end

-- Returns the host's clock in whole milliseconds since the epoch.
function M.now_ms()
  return math.floor(broker.now() * 1000)
end

-- Marks `conn` changed at `now_ms`.
function M.touch(conn, now_ms)
  conn.updated_ms = now_ms
  conn.updated = true
end

-- Returns `conn` as a row of GET /v1/vault/connections.
function M.row(conn)
  return {
    id = conn.id,
    platformVersion = VERSION,
    name = conn.name or broker.json.null,
    type = "api",
    key = conn.key,
    environment = conn.environment,
    platform = conn.platform,
    identity = conn.identity,
    identityType = conn.identity_type,
    description = conn.integration.description,
    state = conn.state,
    tags = conn.tags,
    version = VERSION,
    active = conn.active,
    createdAt = iso_time(conn.created_ms),
  }
end

-- Returns `conn` as the widget's LINK_SUCCESS connection record, plus the
-- `state` that the guide's own example reads.
function M.record(conn)
  local it = conn.integration
  return {
    _id = conn.id,
    platformVersion = VERSION,
    connectionDefinitionId = "conn_def::" .. it.def_id,
    name = conn.name or broker.json.null,
    key = conn.key,
    environment = conn.environment,
    platform = conn.platform,
    secretsServiceId = conn.secrets_id,
    identity = conn.identity,
    identityType = conn.identity_type,
    settings = {
      parseWebhookBody = false,
      showSecret = false,
      allowCustomEvents = false,
      oauth = it.oauth,
    },
    throughput = { key = conn.id, limit = 100 },
    createdAt = conn.created_ms,
    updatedAt = conn.updated_ms,
    updated = conn.updated,
    version = VERSION,
    lastModifiedBy = "system",
    deleted = false,
    tags = conn.tags,
    active = conn.active,
    deprecated = false,
    state = conn.state,
  }
end

return M
