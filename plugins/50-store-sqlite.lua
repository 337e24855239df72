-- 50-store-sqlite.lua: the default connection store, one SQLite file
-- (data_dir/connections.db) in WAL mode.
--
-- Storing is an upsert on the connection key inside one transaction, so
-- the same connection reported twice is one row, and a crash between
-- Pica's answer and the write leaves no half row.  Rows hold what Pica
-- said about the connection; `id` is Pica's id for it.
--
-- Replace this file to store connections elsewhere: a store plugin
-- implements on_success, list_connections, delete_connection and
-- lookup_connection (see README, "Writing a store plugin").

if broker.config.store == "postgres" then
  return {}
end

local SCHEMA = [[
CREATE TABLE IF NOT EXISTS user_connections (
  id             TEXT NOT NULL,
  identity       TEXT NOT NULL,
  identity_type  TEXT NOT NULL,
  platform       TEXT NOT NULL,
  connection_key TEXT NOT NULL UNIQUE,
  environment    TEXT NOT NULL,
  state          TEXT NOT NULL,
  created_at     TEXT NOT NULL,
  updated_at     TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS user_connections_owner
  ON user_connections (identity, identity_type);
]]

local COLUMNS = "id, identity, identity_type, platform, connection_key, "
  .. "environment, state, created_at, updated_at"

local db

local function now()
  local t = broker.now()
  return os.date("!%Y-%m-%dT%H:%M:%S", math.floor(t))
    .. string.format(".%03dZ", math.floor(t * 1000) % 1000)
end

local function open()
  if db == nil then
    db = assert(broker.sqlite.open("connections.db"))
    assert(db:exec(SCHEMA))
  end
  return db
end

-- Inserts `conn`, or refreshes the row of its key; returns "created"
-- or "updated".
local function upsert(d, conn)
  local t = now()
  local n, err = d:run("INSERT INTO user_connections (" .. COLUMNS
    .. ") VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) "
    .. "ON CONFLICT (connection_key) DO NOTHING", conn.id, conn.identity,
    conn.identity_type, conn.platform, conn.connection_key,
    conn.environment, conn.state, t, t)
  if not n then
    return nil, err
  end
  if n == 1 then
    return "created"
  end
  n, err = d:run("UPDATE user_connections SET id = ?, state = ?, "
    .. "updated_at = ? WHERE connection_key = ?", conn.id, conn.state, t,
    conn.connection_key)
  return n and "updated", err
end

return {
  init = function()
    open()
  end,

  on_success = function(conn, who)
    local what, err = open():transaction(function(d)
      return upsert(d, conn)
    end)
    if not what then
      return nil, "failed to store connection: " .. tostring(err)
    end
    return true, what
  end,

  list_connections = function(who)
    local rows, err = open():query("SELECT " .. COLUMNS
      .. " FROM user_connections WHERE identity = ? AND identity_type = ?"
      .. " ORDER BY created_at, connection_key", who.identity,
      who.identity_type)
    if not rows then
      error("failed to list connections: " .. err)
    end
    return rows
  end,

  lookup_connection = function(key)
    local rows, err = open():query("SELECT " .. COLUMNS
      .. " FROM user_connections WHERE connection_key = ?", key)
    if not rows then
      error("failed to look up connection: " .. err)
    end
    return rows[1]
  end,

  delete_connection = function(key, who)
    local n, err = open():run("DELETE FROM user_connections WHERE "
      .. "connection_key = ? AND identity = ? AND identity_type = ?", key,
      who.identity, who.identity_type)
    if not n then
      return nil, "failed to delete connection: " .. err
    end
    return true
  end,

  selftest = function()
    local rows, err = open():query("SELECT count(*) AS n FROM "
      .. "user_connections")
    if not rows then
      return nil, "the connection store cannot be read: " .. err
    end
    return true
  end,
}
