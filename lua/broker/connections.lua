--- The connection routes: store what the widget reports (after Pica
-- confirms it), list, delete, and reconcile with Pica's vault.
--
-- The browser is untrusted: a reported connection is stored only when
-- Pica knows its key and says it belongs to the caller's identity, and
-- the stored fields come from Pica's answer, never from the browser.
-- Where connections live is up to the store hooks (the default plugin
-- keeps them in SQLite).
local core = require "broker.core"
local json = require "broker.json"
local errors = require "broker.errors"
local hooks = require "broker.hooks"
local pica = require "broker.pica"
local scheduler = require "broker.scheduler"

local M = {}

local MAX_KEY_BYTES = 1024
local VAULT_PAGE = 100      -- vault rows asked per page when syncing
local MAX_VAULT_PAGES = 50

-- Identities seen lately, for the background sync: "type\0id" -> time.
local recent = {count = 0, at = {}}
local sync = {window = 3600, max = 10000}

--- Notes that `who` made a request (the background sync keeps the
-- connections of recently active identities fresh).
function M.seen(who)
  local k = who.identity_type .. "\0" .. who.identity
  if recent.at[k] == nil then
    if recent.count >= sync.max then
      return
    end
    recent.count = recent.count + 1
  end
  recent.at[k] = core.monotonic_ms() / 1000
end

-- Reconciles every identity seen within the window; forgets the rest.
local function sync_recent()
  local now = core.monotonic_ms() / 1000
  for k, t in pairs(recent.at) do
    if now - t > sync.window then
      recent.at[k] = nil
      recent.count = recent.count - 1
    else
      local itype, id = k:match("^(%a+)%z(.*)$")
      local ok, err = pcall(M.reconcile, {id = id, identity = id,
                                          identity_type = itype})
      if not ok then
        core.log("warn", "connections", "failed to sync an identity in "
                 .. "the background: " .. tostring(errors.is(err)
                 and err.message or err))
      end
    end
  end
end

--- Takes the background sync settings from the config.
function M.configure(config)
  recent = {count = 0, at = {}}
  sync.window = config.sync_window_s
  if config.sync_interval_s > 0 then
    scheduler.every(config.sync_interval_s, "connection sync",
                    sync_recent)
  end
end

--- True if `key` looks like a Pica connection key:
-- `{live|test}::{platform}::default::{hex}[|{identity}]`.
function M.valid_key(key)
  if type(key) ~= "string" or #key == 0 or #key > MAX_KEY_BYTES
     or key:find("[%c,]") then
    return false
  end
  local env, platform, rest = key:match("^(%a+)::([^:]+)::(.+)$")
  return (env == "live" or env == "test") and platform ~= nil
         and rest:find("::", 1, true) ~= nil
end

-- The stored shape of a vault row.
local function from_vault(row)
  return {
    id = row.id, identity = row.identity,
    identity_type = row.identityType, platform = row.platform,
    connection_key = row.key, environment = row.environment,
    state = type(row.state) == "string" and row.state or "unknown",
  }
end

local function owned_by(conn, who)
  return conn.identity == who.identity
         and conn.identity_type == who.identity_type
end

local function require_store(name)
  if not hooks.has(name) then
    errors.raise(501, "not_implemented",
                 "no plugin stores connections (" .. name .. ")")
  end
end

-- The connection key the widget's record or the guide's body names.
local function reported_key(req)
  local body, err = json.decode(req.body)
  if body == nil then
    errors.raise(400, "bad_json", "the body must be JSON: " .. err)
  end
  if type(body) ~= "table" or getmetatable(body) == json.array_mt then
    errors.raise(400, "bad_request", "the body must be a JSON object")
  end
  local key = body.key or body.connection_key
  if not M.valid_key(key) then
    errors.raise(400, "bad_request", "key (or connection_key) is missing "
                 .. "or is not a Pica connection key")
  end
  return key
end

-- Pica's vault row for `key`, or nil if Pica does not know it.
local function vault_row(key)
  local answer, err = pica.call({method = "GET",
    path = "/v1/vault/connections", query = {key = key, limit = 1}})
  if not answer then
    pica.raise(err, "look a connection up")
  end
  local rows = type(answer) == "table" and answer.rows
  if type(rows) ~= "table" then
    pica.raise({kind = "bad_response", detail = "no rows in the vault "
                .. "answer"}, "look a connection up")
  end
  for _, row in ipairs(rows) do
    if type(row) == "table" and row.key == key then
      return row
    end
  end
end

-- Stores `conn` through every on_success hook; true if one created it.
local function store(conn, who)
  local created = false
  hooks.each("on_success", function(res)
    created = created or res[3] == "created"
  end, conn, who)
  return created
end

--- POST /connections: store a connection the widget reported.
function M.create(req, ctx)
  require_store("on_success")
  local key = reported_key(req)
  local row = vault_row(key)
  if row == nil then
    errors.raise(422, "unknown_connection",
                 "Pica does not know this connection key")
  end
  local conn = from_vault(row)
  if not owned_by(conn, ctx.who) then
    core.log("warn", "connections", "refused to store a connection of "
             .. "another identity")
    errors.raise(403, "forbidden", "this connection belongs to another "
                 .. "identity")
  end
  local created = store(conn, ctx.who)
  return created and 201 or 200, {}, json.encode({connection = conn})
end

-- The caller's stored connections, checked to be an array.
local function stored(who)
  local p, list = hooks.first("list_connections", nil, who)
  if p and type(list) ~= "table" then
    core.log("error", "connections", "hook list_connections of " .. p.name
             .. " returned a " .. type(list) .. ", not a table")
    errors.raise(500, "internal", "internal error")
  end
  return list or {}
end

--- The caller's stored connections, even if a store hook forgot to
-- filter by identity.
function M.own_list(who)
  local out = json.array({})
  for _, conn in ipairs(stored(who)) do
    if owned_by(conn, who) then
      out[#out + 1] = conn
    end
  end
  return out
end

--- GET /connections: the caller's stored connections.
function M.list(req, ctx)
  require_store("list_connections")
  return 200, {}, json.encode({connections = M.own_list(ctx.who)})
end

-- The stored connection `key` if it is the caller's; raises 404 or 403.
function M.owned(key, who)
  require_store("lookup_connection")
  local _, conn = hooks.first("lookup_connection", nil, key)
  if type(conn) ~= "table" then
    errors.raise(404, "not_found", "no such connection")
  end
  if not owned_by(conn, who) then
    core.log("warn", "connections", "refused a connection of another "
             .. "identity")
    errors.raise(403, "forbidden", "this connection belongs to another "
                 .. "identity")
  end
  return conn
end

-- Deletes a vault connection at Pica; a 404 there means already gone.
local function delete_at_pica(id)
  local _, err = pica.call({method = "DELETE",
    path = "/v1/vault/connections/" .. pica.urlencode(id)})
  if err and not (err.kind == "status" and err.status == 404) then
    pica.raise(err, "delete a connection")
  end
end

--- DELETE /connections/{key}: delete the caller's connection at Pica
-- and in the store.
function M.delete(req, ctx)
  require_store("delete_connection")
  local key = ctx.params[1]
  local conn = M.owned(key, ctx.who)
  if type(conn.id) == "string" and conn.id ~= "" then
    delete_at_pica(conn.id)
  end
  hooks.each("delete_connection", nil, key, ctx.who)
  return 200, {}, json.encode({deleted = key})
end

-- Every vault row of the caller's identity, all pages.
local function vault_rows(who)
  local function page_call(p)
    return {method = "GET", path = "/v1/vault/connections",
            query = {identity = who.identity, limit = VAULT_PAGE, page = p,
                     identityType = who.identity_type}}
  end
  local first, err = pica.call(page_call(1))
  if not first then
    pica.raise(err, "list the vault")
  end
  local rows, pages = {}, math.tointeger(first.pages) or 1
  local calls = {}
  for p = 2, math.min(pages, MAX_VAULT_PAGES) do
    calls[#calls + 1] = page_call(p)
  end
  local answers = {{ok = true, value = first}}
  for _, o in ipairs(#calls > 0 and pica.call_all(calls) or {}) do
    if not o.ok then
      pica.raise(o.err, "list the vault")
    end
    answers[#answers + 1] = o
  end
  for _, o in ipairs(answers) do
    for _, row in ipairs(type(o.value) == "table" and o.value.rows or {}) do
      rows[#rows + 1] = row
    end
  end
  return rows
end

--- Reconciles the caller's stored connections with Pica's vault: adds
-- the ones never reported, removes the ones Pica no longer has, and
-- refreshes `state`.  Returns the counts.
function M.reconcile(who)
  local by_key, counts = {}, {added = 0, removed = 0, updated = 0}
  for _, conn in ipairs(stored(who)) do
    by_key[conn.connection_key] = conn
  end
  for _, row in ipairs(vault_rows(who)) do
    local conn = from_vault(row)
    local old = by_key[conn.connection_key]
    if owned_by(conn, who) and (old == nil or old.state ~= conn.state) then
      store(conn, who)
      local what = old and "updated" or "added"
      counts[what] = counts[what] + 1
    end
    by_key[conn.connection_key] = nil
  end
  for key in pairs(by_key) do
    hooks.each("delete_connection", nil, key, who)
    counts.removed = counts.removed + 1
  end
  return counts
end

--- POST /connections/sync: reconcile and answer the counts and list.
function M.sync(req, ctx)
  require_store("list_connections")
  require_store("on_success")
  require_store("delete_connection")
  local counts = M.reconcile(ctx.who)
  counts.connections = M.own_list(ctx.who)
  return 200, {}, json.encode(counts)
end

return M
