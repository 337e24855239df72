-- The sandbox's fakes of Pica's /v1 endpoints (pica-api.md), except the
-- passthrough (sandbox.passthrough). Each handler takes the request
-- context that sandbox.app builds, after it has checked the secret:
--
--   ctx = { req = req, query = {...}, body = "...", headers = {...},
--           env = "test" or "live", arg = path capture or nil,
--           state = the sandbox state (see sandbox.app) }
--
-- and answers `status, headers, body`.

local broker = require "broker"
local data = require "sandbox.data"
local params = require "sandbox.params"
local reply = require "sandbox.reply"
local vault = require "sandbox.vault"

local M = {}

local AUTHKIT_LIMIT = 100   -- the SDK always asks this many
local LIST_LIMIT = 20       -- other lists' documented default
local MAX_LIMIT = 1000      -- [guess]: Pica documents no maximum
local PAGE_CACHE_MAX = 512  -- encoded pages kept before starting over

local AUTHKIT_BODY =
  '{"rows":%s,"total":%d,"pages":%d,"page":%d,"requestId":%d}'

-- Returns the `limit` and `page` query parameters, or nil, err.
local function paging(query, default_limit)
  local limit, err = params.query_int(query, "limit", default_limit,
    MAX_LIMIT)
  if not limit then
    return nil, err
  end
  local page
  page, err = params.query_int(query, "page", 1)
  if not page then
    return nil, err
  end
  return limit, page
end

-- Answers page `page` of `items`, each turned into a row by `to_row`, as
-- `{rows, total, pages, page}`.
local function list_answer(items, to_row, limit, page)
  local first, last, pages = params.page_range(#items, limit, page)
  local rows = {}
  for i = first, last do
    rows[#rows + 1] = to_row(items[i])
  end
  return reply.json(200, {
    rows = broker.json.array(rows),
    total = #items,
    pages = pages,
    page = page,
  })
end

-- GET /v1/users/flags.
function M.flags(ctx)
  return reply.json(200, {
    accessList = broker.json.array({}),
    authkitWhitelist = false,
    earlyAccess = broker.json.array({}),
    completedQuickstart = true,
  })
end

-- Returns true when `body` is a valid POST /v1/authkit body, or nil, err.
local function check_authkit_body(body)
  local obj, err = params.json_object(body)
  if not obj then
    return nil, err
  end
  local _
  _, err = params.string(obj, "identity")
  if err then
    return nil, err
  end
  _, err = params.enum(obj, "identityType", vault.IDENTITY_TYPES)
  if err then
    return nil, err
  end
  return true
end

-- Returns the JSON text of every integration row in `env`, encoded once.
local function encoded_rows(state, env)
  local rows = state.authkit_rows[env]
  if not rows then
    rows = {}
    for i, it in ipairs(state.catalogue) do
      rows[i] = broker.json.encode(data.authkit_row(it, env))
    end
    state.authkit_rows[env] = rows
  end
  return rows
end

-- Returns the JSON array of integration rows first..last in `env`,
-- remembered for the next call.
local function page_rows(state, env, first, last)
  if last < first then
    return "[]"
  end
  local id = env .. ":" .. first .. ":" .. last
  local text = state.authkit_pages[id]
  if not text then
    if state.authkit_page_count >= PAGE_CACHE_MAX then
      state.authkit_pages, state.authkit_page_count = {}, 0
    end
    local rows = encoded_rows(state, env)
    text = "[" .. table.concat(rows, ",", first, last) .. "]"
    state.authkit_pages[id] = text
    state.authkit_page_count = state.authkit_page_count + 1
  end
  return text
end

-- POST /v1/authkit?limit=L&page=P: the integrations enabled for AuthKit.
function M.authkit(ctx)
  local ok, err = check_authkit_body(ctx.body)
  if not ok then
    return reply.pica_error(400, err)
  end
  local limit, page = paging(ctx.query, AUTHKIT_LIMIT)
  if not limit then
    return reply.pica_error(400, page)
  end

  local state = ctx.state
  local total = #state.catalogue
  local first, last, pages = params.page_range(total, limit, page)
  state.request_id = state.request_id + 1
  return reply.encoded(200, string.format(AUTHKIT_BODY,
    page_rows(state, ctx.env, first, last), total, pages, page,
    state.request_id))
end

-- Returns a predicate choosing integrations by the query of
-- GET /v1/available-connectors, or nil, err.
local function connector_filter(query)
  local _, err = params.query_bool(query, "authkit", false)
  if err then
    return nil, err
  end
  -- Every generated integration is enabled for AuthKit, so `authkit`
  -- selects them all.
  local platform, key = query.platform, query.key
  local name = query.name and query.name:lower()
  local category = query.category and query.category:lower()
  return function(it)
    return (platform == nil or it.platform == platform)
      and (key == nil or data.connector_key(it.platform) == key)
      and (name == nil or it.name:lower() == name)
      and (category == nil or it.category:lower() == category)
  end
end

-- GET /v1/available-connectors.
function M.connectors(ctx)
  local pred, err = connector_filter(ctx.query)
  if not pred then
    return reply.pica_error(400, err)
  end
  local limit, page = paging(ctx.query, LIST_LIMIT)
  if not limit then
    return reply.pica_error(400, page)
  end
  local items = {}
  for _, it in ipairs(ctx.state.catalogue) do
    if pred(it) then
      items[#items + 1] = it
    end
  end
  return list_answer(items, data.connector_row, limit, page)
end

-- Returns true when `conn` carries every tag in the set `tags` (or nil).
local function has_tags(conn, tags)
  if tags == nil then
    return true
  end
  local have = {}
  for _, tag in ipairs(conn.tags) do
    have[tag] = true
  end
  for tag in pairs(tags) do
    if not have[tag] then
      return false
    end
  end
  return true
end

-- Returns a predicate choosing the connections that the query of
-- GET /v1/vault/connections asks for, in environment `env`; or nil, err.
local function vault_filter(query, env)
  local active, err = params.query_bool(query, "active", true)
  if err then
    return nil, err
  end
  local keys = params.query_set(query, "key")
  local tags = params.query_set(query, "tags")
  local identity, identity_type = query.identity, query.identityType
  local platform = query.platform
  return function(conn)
    return conn.environment == env and conn.active == active
      and (identity == nil or conn.identity == identity)
      and (identity_type == nil or conn.identity_type == identity_type)
      and (platform == nil or conn.platform == platform)
      and (keys == nil or keys[conn.key] == true)
      and has_tags(conn, tags)
  end
end

-- GET /v1/vault/connections.
function M.vault_list(ctx)
  local pred, err = vault_filter(ctx.query, ctx.env)
  if not pred then
    return reply.pica_error(400, err)
  end
  local limit, page = paging(ctx.query, LIST_LIMIT)
  if not limit then
    return reply.pica_error(400, page)
  end
  return list_answer(ctx.state.vault:select(pred), vault.row, limit, page)
end

-- Returns the connection named by the path, when it is in the secret's
-- environment; nil otherwise.
local function own_connection(ctx)
  local conn = ctx.state.vault:get(ctx.arg)
  if conn and conn.environment == ctx.env then
    return conn
  end
  return nil
end

-- GET /v1/vault/connections/{id}.
function M.vault_get(ctx)
  local conn = own_connection(ctx)
  if not conn then
    return reply.pica_error(404)
  end
  return reply.json(200, vault.row(conn))
end

-- PATCH /v1/vault/connections/{id} with `{"tags": [...]}`.
function M.vault_patch(ctx)
  local conn = own_connection(ctx)
  if not conn then
    return reply.pica_error(404)
  end
  local obj, err = params.json_object(ctx.body)
  local tags
  if obj then
    tags, err = params.strings(obj, "tags")
  end
  if err then
    return reply.pica_error(400, err)
  end

  if tags then
    conn.tags = broker.json.array(tags)
    vault.touch(conn, vault.now_ms())
  end
  return reply.json(200, vault.row(conn))
end

-- DELETE /v1/vault/connections/{id}: 200 with an empty body.
function M.vault_delete(ctx)
  local conn = own_connection(ctx)
  if not conn then
    return reply.pica_error(404)
  end
  ctx.state.vault:delete(conn.id)
  return reply.empty(200)
end

return M
