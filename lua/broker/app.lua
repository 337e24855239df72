--- The broker's request pipeline: routes, identity, errors.
--
-- The C core calls `init(config)` once per generation and
-- `handle(req)` in a fresh coroutine for every API request.  Every
-- error a route raises is answered here, in one place.
local core = require "broker.core"
local broker = require "broker"
local connections = require "broker.connections"
local connectors = require "broker.connectors"
local demo = require "broker.demo"
local errors = require "broker.errors"
local json = require "broker.json"
local hooks = require "broker.hooks"
local identity = require "broker.identity"
local pica = require "broker.pica"
local passthrough = require "broker.passthrough"
local plugins = require "broker.plugins"
local scheduler = require "broker.scheduler"
local token = require "broker.token"

local M = {}

local routes = {}

-- Wraps a handler so that it runs after the caller is identified.
local function identified(handler)
  return function(req, params)
    local who, id, itype = identity.resolve(req)
    connections.seen(who)
    return handler(req, {who = who, identity = id, identity_type = itype,
                         params = params})
  end
end

-- Adds a route; method "*" takes any method (the handler checks).
local function add_route(method, path, name, handler, max_body)
  routes[#routes + 1] = {method = method, pattern = "^" .. path .. "$",
                         name = name, handler = handler,
                         max_body = max_body}
end

local function build_routes(config)
  routes = {}
  local prefix = config.route_prefix:gsub("%p", "%%%0") -- literal
  add_route("POST", prefix .. "/authkit/token", "token",
            identified(token.handle))
  add_route("GET", prefix .. "/connectors", "connectors",
            identified(connectors.handle))
  add_route("POST", prefix .. "/connections/sync", "connections_sync",
            identified(connections.sync))
  add_route("POST", prefix .. "/connections", "connections_create",
            identified(connections.create))
  add_route("GET", prefix .. "/connections", "connections_list",
            identified(connections.list))
  add_route("DELETE", prefix .. "/connections/(.+)", "connections_delete",
            identified(connections.delete))
  add_route("*", prefix .. "/passthrough/.*", "passthrough",
            identified(passthrough.handle),
            config.passthrough_max_body_bytes)
end

-- Finds the route of `req`; raises 404 or 405 (with Allow) if none.
local function match(req)
  local allowed = {}
  for _, r in ipairs(routes) do
    local caps = {req.path:match(r.pattern)}
    if #caps > 0 then
      if r.method == req.method or r.method == "*" then
        return r, caps
      end
      allowed[#allowed + 1] = r.method
    end
  end
  if #allowed > 0 then
    table.sort(allowed)
    errors.raise(405, "method_not_allowed", "this route does not take "
                 .. req.method, {Allow = table.concat(allowed, ", ")})
  end
  errors.raise(404, "not_found", "no such route")
end

-- Message handler: HTTP errors pass; anything else is logged with its
-- traceback and becomes a generic 500.
local function on_error(e)
  if errors.is(e) then
    return e
  end
  core.log("error", "pipeline", "failed to handle the request: "
           .. debug.traceback(tostring(e), 2))
  return errors.new(500, "internal", "internal error")
end

local max_body = 1048576

local function route(req)
  local r, caps = match(req)
  core.set_route(r.name)
  if #req.body > (r.max_body or max_body) then
    errors.raise(413, "body_too_large", "the request body is larger than "
                 .. (r.max_body or max_body) .. " bytes")
  end
  return r.handler(req, caps)
end

--- Called by the C core for each request; returns status, headers, body.
-- The core's background tick comes as `{method = "TICK", internal =
-- true}`, which no HTTP request can produce.
function M.handle(req)
  if req.internal then
    scheduler.run_due()
    return 200
  end
  local res = table.pack(xpcall(route, on_error, req))
  if res[1] then
    return table.unpack(res, 2, res.n)
  end
  return errors.response(res[2])
end

local loaded = {}

--- The generation's files and their SHA-256, as JSON (for the admin
-- endpoint /admin/plugins).  Called by the C core after init.
function M.describe()
  local files = json.array({})
  for i, p in ipairs(loaded) do
    files[i] = {name = p.name, sha256 = p.sha256}
  end
  return json.encode(files)
end

--- Called by the C core once per generation.
function M.init(config)
  getmetatable("").__metatable = false
  for k, v in pairs(config) do
    broker.config[k] = v
  end
  max_body = config.max_body_bytes
  pica.configure(config)
  token.configure(config)
  connections.configure(config)
  connectors.configure(config)
  passthrough.configure(config, config.generation)
  broker.pica = {call = pica.call, call_all = pica.call_all}
  local api = plugins.readonly(broker)
  loaded = plugins.load(config.plugins, api)
  hooks.set_plugins(loaded)
  build_routes(config)
  demo.register(add_route, config)
end

return M
