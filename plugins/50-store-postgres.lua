-- 50-store-postgres.lua: the connection store in PostgreSQL, for
-- several brokers sharing one database.  Chosen by the config:
--
--   store = "postgres",
--   postgres_url = "postgresql://broker@127.0.0.1/authkit",
--   postgres_pool_size = 4,
--
-- and otherwise it returns no hooks at all (the SQLite store serves).
--
-- The table, columns and rules are those of 50-store-sqlite.lua.
-- Storing is one INSERT ... ON CONFLICT statement, so brokers racing
-- on one key leave one row and exactly one of them says "created".
-- The first request that needs the table creates it (init and selftest
-- run outside any request, where broker.pg cannot wait), under an
-- advisory lock so that brokers starting together do not collide.
--
-- When the database cannot be reached, a hook raises the "pg:
-- unavailable: ..." error unchanged (no position prefix); the broker
-- answers it with 503 store_unavailable.

local config = broker.config
if config.store ~= "postgres" then
  return {}
end

local SCHEMA = {
  [[
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
)]],
  [[
CREATE INDEX IF NOT EXISTS user_connections_owner
  ON user_connections (identity, identity_type)]],
}

-- The advisory lock held while the schema is created ("akbr").
local SCHEMA_LOCK = 0x616b6272

local COLUMNS = "id, identity, identity_type, platform, connection_key, "
  .. "environment, state, created_at, updated_at"

local UPSERT = "INSERT INTO user_connections (" .. COLUMNS .. ") "
  .. "VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) "
  .. "ON CONFLICT (connection_key) DO UPDATE SET id = EXCLUDED.id, "
  .. "state = EXCLUDED.state, updated_at = EXCLUDED.updated_at "
  .. "RETURNING (xmax = 0) AS created"

local pool
local schema_ready = false

local function now()
  local t = broker.now()
  return os.date("!%Y-%m-%dT%H:%M:%S", math.floor(t))
    .. string.format(".%03dZ", math.floor(t * 1000) % 1000)
end

-- Raises err unchanged if it says the database cannot be reached.
local function raise_if_unavailable(err)
  if type(err) == "string" and err:find("^pg: unavailable") then
    error(err, 0)
  end
end

local function create_schema(tx)
  local ok, err = tx:query("SELECT pg_advisory_xact_lock($1)", SCHEMA_LOCK)
  if not ok then
    return nil, err
  end
  for _, sql in ipairs(SCHEMA) do
    ok, err = tx:run(sql)
    if not ok then
      return nil, err
    end
  end
  return true
end

-- pool:query or pool:run (`method`) once the table exists: their
-- results, or nil, err.  Raises when the database is unreachable.
local function call(method, sql, ...)
  if not schema_ready then
    local ok, err = pool:transaction(create_schema)
    if not ok then
      raise_if_unavailable(err)
      return nil, "cannot create the table: " .. err
    end
    schema_ready = true
  end
  local res, err = pool[method](pool, sql, ...)
  if res == nil then
    raise_if_unavailable(err)
  end
  return res, err
end

return {
  init = function()
    pool = broker.pg.pool(config.postgres_url, config.postgres_pool_size)
  end,

  on_success = function(conn, who)
    local t = now()
    local rows, err = call("query", UPSERT, conn.id, conn.identity,
      conn.identity_type, conn.platform, conn.connection_key,
      conn.environment, conn.state, t, t)
    if not rows then
      return nil, "failed to store connection: " .. err
    end
    return true, rows[1].created and "created" or "updated"
  end,

  list_connections = function(who)
    local rows, err = call("query", "SELECT " .. COLUMNS
      .. " FROM user_connections WHERE identity = $1 AND identity_type = $2"
      .. " ORDER BY created_at, connection_key", who.identity,
      who.identity_type)
    if not rows then
      error("failed to list connections: " .. err)
    end
    return rows
  end,

  lookup_connection = function(key)
    local rows, err = call("query", "SELECT " .. COLUMNS
      .. " FROM user_connections WHERE connection_key = $1", key)
    if not rows then
      error("failed to look up connection: " .. err)
    end
    return rows[1]
  end,

  delete_connection = function(key, who)
    local n, err = call("run", "DELETE FROM user_connections WHERE "
      .. "connection_key = $1 AND identity = $2 AND identity_type = $3",
      key, who.identity, who.identity_type)
    if not n then
      return nil, "failed to delete connection: " .. err
    end
    return true
  end,

  -- The database cannot be asked here (no request runs); init has
  -- already checked that postgres_url parses.
  selftest = function()
    if config.postgres_url == nil or config.postgres_url == "" then
      return nil, "store is \"postgres\" but postgres_url is not set"
    end
    return true
  end,
}
