-- A fake of the Pica API (shared/pica-api.md) for tests, demos and
-- benchmarks, served by `authkit-broker sandbox`. The C host loads it
-- once and calls, per HTTP request and inside the request's coroutine:
--
--   local app = require "sandbox.app"
--   app.init{ latency_ms = 0, integrations = 247, fail_rate = 0,
--             secret = nil }
--   local status, headers, body = app.handle(req)
--
-- Routes: the /v1 endpoints of pica-api.md (sandbox.pica and
-- sandbox.passthrough) and the test-only /sandbox ones (sandbox.admin).
-- Every /v1 request is counted, may be delayed or failed by the config and
-- by queued faults, and then needs `x-pica-secret`.

local broker = require "broker"
local admin = require "sandbox.admin"
local control = require "sandbox.control"
local data = require "sandbox.data"
local passthrough = require "sandbox.passthrough"
local pica = require "sandbox.pica"
local reply = require "sandbox.reply"
local vault = require "sandbox.vault"
local widget = require "sandbox.widget"

local M = { _VERSION = "0.1.0" }

local DEFAULTS = { latency_ms = 0, integrations = 247, fail_rate = 0 }

local FIRST_REQUEST_ID = 110000  -- requestIds count up from here

local UNKNOWN_V1 = "/v1/{unknown}"  -- stats name of unrouted /v1 paths

local EMPTY = {}

local pt = passthrough.handle

-- The routing table: a path pattern (its capture becomes ctx.arg), the
-- name counted in /sandbox/stats, and the handler of each method.
local ROUTES = {
  { "^/v1/authkit$", "/v1/authkit",
    { POST = widget.remember(pica.authkit) } },
  { "^/v1/users/flags$", "/v1/users/flags", { GET = pica.flags } },
  { "^/v1/available%-connectors$", "/v1/available-connectors",
    { GET = pica.connectors } },
  { "^/v1/vault/connections$", "/v1/vault/connections",
    { GET = pica.vault_list } },
  { "^/v1/vault/connections/([^/]+)$", "/v1/vault/connections/{id}",
    { GET = pica.vault_get, PATCH = pica.vault_patch,
      DELETE = pica.vault_delete } },
  { "^/v1/passthrough(/.*)$", "/v1/passthrough",
    { GET = pt, POST = pt, PUT = pt, PATCH = pt, DELETE = pt } },
  { "^/sandbox/connections$", "/sandbox/connections",
    { POST = admin.create_connection,
      DELETE = admin.clear_connections } },
  { "^/sandbox/connections/([^/]+)$", "/sandbox/connections/{id}",
    { PATCH = admin.patch_connection } },
  { "^/widget/?$", "/widget", { GET = widget.page } },
  { "^/widget/connections$", "/widget/connections",
    { POST = widget.connect } },
  { "^/widget/([^/]+)$", "/widget/{asset}", { GET = widget.asset } },
  { "^/sandbox/faults$", "/sandbox/faults",
    { GET = admin.list_faults, POST = admin.add_fault,
      DELETE = admin.clear_faults } },
  { "^/sandbox/stats$", "/sandbox/stats",
    { GET = admin.stats, DELETE = admin.reset_stats } },
}

-- The sandbox's state, made by init: config, catalogue (sandbox.data),
-- vault, faults and stats (sandbox.control), the last requestId, and the
-- encoded authkit rows and pages (sandbox.pica).
local state

-- Returns `config` with defaults filled in, or nil, err.
local function check_config(config)
  if type(config) ~= "table" then
    return nil, "config must be a table"
  end
  local cfg = {}
  for name, default in pairs(DEFAULTS) do
    cfg[name] = config[name] or default
  end
  cfg.integrations = math.tointeger(cfg.integrations)
  cfg.secret = config.secret
  if type(cfg.latency_ms) ~= "number" or cfg.latency_ms < 0 then
    return nil, "latency_ms must be a number >= 0"
  elseif not cfg.integrations or cfg.integrations < 0 then
    return nil, "integrations must be an integer >= 0"
  elseif type(cfg.fail_rate) ~= "number" or cfg.fail_rate < 0
      or cfg.fail_rate > 1 then
    return nil, "fail_rate must be a number from 0 to 1"
  elseif cfg.secret ~= nil and type(cfg.secret) ~= "string" then
    return nil, "secret must be a string or nil"
  end
  return cfg
end

-- Sets the sandbox up afresh: an empty vault, no faults, zero counts.
-- Called once by the host before any request; tests call it again to
-- start over. Raises on a bad config.
function M.init(config)
  local cfg, err = check_config(config or {})
  if not cfg then
    error("sandbox.app.init: " .. err, 2)
  end
  state = {
    config = cfg,
    catalogue = data.catalogue(cfg.integrations),
    vault = vault.new(),
    faults = control.faults(),
    stats = control.stats(),
    request_id = FIRST_REQUEST_ID,
    authkit_rows = {},
    authkit_pages = {},
    authkit_page_count = 0,
  }
end

-- Returns the route matching `path` and its capture, or nil.
local function match(path)
  for _, route in ipairs(ROUTES) do
    local arg = path:match(route[1])
    if arg then
      -- A pattern without a capture answers the whole path.
      return route, arg ~= path and arg or nil
    end
  end
  return nil
end

-- Returns the allowed methods of `route` as an Allow header value.
local function allowed(route)
  local names = {}
  for method in pairs(route[3]) do
    names[#names + 1] = method
  end
  table.sort(names)
  return table.concat(names, ", ")
end

-- Returns the handler of `method` on `route`; or nil and the 404 or 405
-- answer (status, headers, body) when there is none.
local function find_handler(route, method)
  if not route then
    return nil, reply.plain_error(404)
  end
  local handler = route[3][method]
  if handler then
    return handler
  end
  local status, headers, body = reply.plain_error(405)
  headers.allow = allowed(route)
  return nil, status, headers, body
end

-- Answers the request in `ctx` with the handler of its route, or 404/405.
local function dispatch(route, ctx)
  local handler, status, headers, body = find_handler(route, ctx.req.method)
  if not handler then
    return status, headers, body
  end
  return handler(ctx)
end

-- Returns the environment ("test" or "live") that `secret` opens, or nil.
local function authenticate(config, secret)
  if type(secret) ~= "string" then
    return nil
  elseif config.secret then
    if secret ~= config.secret then
      return nil
    end
  elseif not (secret:find("^sk_test_") or secret:find("^sk_live_")) then
    return nil
  end
  return secret:find("^sk_live_") and "live" or "test"
end

-- Answers the status of an injected fault, with its Retry-After.
local function fault_reply(fault)
  local status, headers, body
  if fault.status >= 400 then
    status, headers, body = reply.pica_error(fault.status)
  else
    status, headers, body = reply.empty(fault.status)
  end
  if fault.retry_after then
    headers["retry-after"] = tostring(fault.retry_after)
  end
  return status, headers, body
end

-- Spends the fault queued for the path of `ctx`, if any, and waits the
-- configured latency (on /v1) plus the fault's delay. Returns the fault's
-- answer when it has a status, nothing otherwise.
local function delay_and_fault(ctx, v1)
  local fault = ctx.state.faults:take(ctx.req.path)
  local delay = v1 and ctx.state.config.latency_ms or 0
  if fault then
    delay = delay + fault.delay_ms
  end
  if delay > 0 then
    broker.sleep(delay)
  end
  if fault and fault.status ~= 0 then
    return fault_reply(fault)
  end
end

-- Answers a /v1 request after the faults: the configured random 500s,
-- routing, then the secret.
local function serve_v1(route, ctx)
  local rate = ctx.state.config.fail_rate
  if rate > 0 and math.random() < rate then
    return reply.pica_error(500)
  end
  local handler, status, headers, body = find_handler(route, ctx.req.method)
  if not handler then
    return status, headers, body
  end
  ctx.env = authenticate(ctx.state.config, ctx.headers["x-pica-secret"])
  if not ctx.env then
    return reply.pica_error(401)
  end
  return handler(ctx)
end

-- Returns true when `path` is `prefix` or under it.
local function under(path, prefix)
  return path == prefix or path:sub(1, #prefix + 1) == prefix .. "/"
end

-- Answers one HTTP request (see the host contract at the top of the file).
-- Runs in the request's own coroutine and yields only in broker.sleep.
function M.handle(req)
  if not state then
    error("sandbox.app.handle: init() was not called", 2)
  end
  local route, arg = match(req.path)
  local ctx = {
    req = req, state = state, arg = arg,
    query = req.query or EMPTY, headers = req.headers or EMPTY,
    body = req.body or "",
  }
  if under(req.path, "/sandbox") then
    return dispatch(route, ctx)
  end

  local v1 = under(req.path, "/v1")
  if not v1 then
    local status, headers, body = delay_and_fault(ctx, false)
    if status then
      return status, headers, body
    end
    return dispatch(route, ctx)
  end
  state.stats:count(route and route[2] or UNKNOWN_V1)
  state.stats:enter()
  local ok, status, headers, body = pcall(function()
    local s, h, b = delay_and_fault(ctx, true)
    if s then
      return s, h, b
    end
    return serve_v1(route, ctx)
  end)
  state.stats:leave()
  if not ok then
    error(status, 0)
  end
  return status, headers, body
end

return M
