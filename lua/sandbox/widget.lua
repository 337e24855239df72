-- The sandbox's stand-in for the hosted AuthKit widget (the iframe that
-- `@picahq/authkit` opens at `baseUrl?data=<base64 JSON>`, pica-api.md
-- "The token endpoint" and "The widget's messages to the page"). Point
-- the package's `baseUrl` at `http://SANDBOX/widget`.
--
--   GET  /widget               the page (lua/sandbox/widget/index.html)
--   GET  /widget/{asset}       its script and style sheet
--   POST /widget/connections   `{"requestId": n, "integrationId": id}`
--                              (a row's `id` in the token answer; or
--                              `"platform": "gmail"`, for curl): connects,
--                              as the widget's user would by finishing
--                              OAuth; 201 with the LINK_SUCCESS record
--
-- The page calls the token endpoint it is given, which calls
-- POST /v1/authkit with the identity; `M.remember` wraps that handler
-- and keeps which identity each answered `requestId` was for. The page
-- hands the `requestId` of its token answer back to /widget/connections,
-- so the connection is made for the identity the customer's backend
-- vouched for, never for one the browser names.
--
-- Handlers take the request context of sandbox.app (see sandbox.pica)
-- and answer `status, headers, body`.

local broker = require "broker"
local params = require "sandbox.params"
local reply = require "sandbox.reply"
local vault = require "sandbox.vault"

local M = {}

local SESSION_TTL_S = 3600  -- how long a requestId may be used to connect
local MAX_SESSIONS = 4096   -- requestIds remembered, oldest dropped first
local MAX_NAME = 200        -- longest connection name taken

-- The page's files, served from lua/sandbox/widget/, by request name.
local ASSETS = {
  ["widget.js"] = "text/javascript; charset=utf-8",
  ["widget.css"] = "text/css; charset=utf-8",
}
local PAGE = "index.html"

-- The page loads nothing from elsewhere: only the token endpoint (any
-- origin) is fetched, and images are the sandbox's own or inline.
local PAGE_HEADERS = {
  ["content-type"] = "text/html; charset=utf-8",
  ["content-security-policy"] = "default-src 'none'; script-src 'self'; "
    .. "style-src 'self'; img-src 'self' data:; connect-src *; "
    .. "base-uri 'none'; form-action 'none'",
  ["cache-control"] = "no-store",
  ["x-content-type-options"] = "nosniff",
  ["referrer-policy"] = "no-referrer",
}

-- Returns the directory holding the page's files.
local function asset_dir()
  local here = package.searchpath("sandbox.widget", package.path)
  if not here then
    return nil
  end
  return (here:gsub("%.lua$", ""))
end

-- Returns the text of asset `name`, or nil.
local function read_asset(name)
  local dir = asset_dir()
  local f = dir and io.open(dir .. "/" .. name, "rb")
  if not f then
    return nil
  end
  local text = f:read("a")
  f:close()
  return text
end

-- Returns a fresh copy of `t`.
local function copy(t)
  local out = {}
  for k, v in pairs(t) do
    out[k] = v
  end
  return out
end

-- Returns the sessions table of the sandbox state, made on first use
-- (sandbox.app's init makes a fresh state, so a re-init forgets them).
local function sessions(state)
  local s = state.widget_sessions
  if not s then
    s = { by_id = {}, order = {}, first = 1, last = 0 }
    state.widget_sessions = s
  end
  return s
end

-- Remembers that `request_id` answered `identity` in `env`.
local function remember(state, request_id, session)
  local s = sessions(state)
  s.by_id[request_id] = session
  s.last = s.last + 1
  s.order[s.last] = request_id
  while s.last - s.first + 1 > MAX_SESSIONS do
    s.by_id[s.order[s.first]] = nil
    s.order[s.first] = nil
    s.first = s.first + 1
  end
end

--- Wraps the POST /v1/authkit handler: after each answered page, the
-- requestId it carries is remembered with the identity of the body.
function M.remember(handler)
  return function(ctx)
    local before = ctx.state.request_id
    local status, headers, body = handler(ctx)
    local request_id = ctx.state.request_id
    if status == 200 and request_id ~= before then
      local obj = params.json_object(ctx.body) or {}
      local identity = params.string(obj, "identity")
      remember(ctx.state, request_id, {
        identity = identity ~= "" and identity or nil,
        identity_type = params.enum(obj, "identityType",
          vault.IDENTITY_TYPES, "user") or "user",
        environment = ctx.env,
        at = broker.now(),
      })
    end
    return status, headers, body
  end
end

-- GET /widget (and /widget/): the page.
function M.page(ctx)
  local html = read_asset(PAGE)
  if not html then
    return reply.plain_error(404, "the widget's files are missing")
  end
  return 200, copy(PAGE_HEADERS), html
end

-- GET /widget/{asset}: the page's script and style sheet.
function M.asset(ctx)
  local kind = ASSETS[ctx.arg]
  local text = kind and read_asset(ctx.arg)
  if not text then
    return reply.plain_error(404)
  end
  return 200, {
    ["content-type"] = kind,
    ["cache-control"] = "no-cache",
    ["x-content-type-options"] = "nosniff",
  }, text
end

-- Returns the fields of a POST /widget/connections body, or nil, err.
local function connect_fields(ctx)
  local obj, err = params.json_object(ctx.body)
  if not obj then
    return nil, err
  end
  local f
  f, err = params.fields(obj, {
    { "requestId", params.int, nil, 0, math.maxinteger },
    { "integrationId", params.int, nil, 0, math.maxinteger },
    { "platform", params.string },
    { "name", params.string },
  })
  if not f then
    return nil, err
  elseif not f.requestId then
    return nil, "requestId is required (the token answer's requestId)"
  elseif not f.integrationId == not f.platform then
    return nil, "give integrationId (a row's id) or platform"
  elseif f.name and #f.name > MAX_NAME then
    return nil, "name is longer than " .. MAX_NAME .. " bytes"
  end
  return f
end

-- Returns the integration of the catalogue that `f` names, or nil.
local function find_integration(catalogue, f)
  if f.platform then
    return catalogue.by_platform[f.platform]
  end
  for _, it in ipairs(catalogue) do
    if it.id == f.integrationId then
      return it
    end
  end
  return nil
end

-- POST /widget/connections: connects `platform` for the identity that
-- the token answer `requestId` was made for; 201 with the LINK_SUCCESS
-- record. 404 for an unknown or expired requestId.
function M.connect(ctx)
  local f, err = connect_fields(ctx)
  if not f then
    return reply.plain_error(400, err)
  end
  local session = sessions(ctx.state).by_id[f.requestId]
  if not session or broker.now() - session.at > SESSION_TTL_S then
    return reply.plain_error(404, "unknown or expired requestId: open "
      .. "the widget again")
  end
  local it = find_integration(ctx.state.catalogue, f)
  if not it then
    return reply.plain_error(400, "unknown integration")
  end
  local name = f.name and f.name:match("^%s*(.-)%s*$")
  local conn = ctx.state.vault:create({
    integration = it,
    environment = session.environment,
    identity = session.identity,
    identity_type = session.identity_type,
    name = name ~= "" and name or nil,
    now_ms = vault.now_ms(),
  })
  return reply.json(201, vault.record(conn))
end

return M
