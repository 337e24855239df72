--- * /api/passthrough/{path}: call a third-party API through Pica's
-- passthrough with one of the caller's connections.
--
-- The caller names the connection with `x-connection-key`, or with
-- `x-connection-platform` when it has exactly one for that platform.
-- The connection must be the caller's (lookup_connection) and every
-- authorize_passthrough hook must allow the call; only then does
-- anything reach Pica.  The answer is streamed to the client as it
-- arrives; one audit line is written per call.
local core = require "broker.core"
local json = require "broker.json"
local errors = require "broker.errors"
local hooks = require "broker.hooks"
local pica = require "broker.pica"
local connections = require "broker.connections"

local M = {}

M.METHODS = {GET = true, POST = true, PUT = true, PATCH = true,
             DELETE = true}

-- Request headers forwarded to the third party.  Never the caller's
-- cookies, credentials or identity headers.
local FORWARD = {
  ["content-type"] = true, accept = true, ["accept-language"] = true,
  ["if-match"] = true, ["if-none-match"] = true,
  ["if-modified-since"] = true, ["if-unmodified-since"] = true,
}

local state = {prefix = "/api/passthrough", pica_url = "", timeout = 30000,
               generation = 0}

function M.configure(config, generation)
  state.prefix = config.route_prefix .. "/passthrough"
  state.pica_url = config.pica_url
  state.timeout = config.upstream_timeout_ms
  state.generation = generation
end

-- The third-party path: the raw (still encoded) path after the prefix.
local function third_party_path(req)
  local path = req.raw_path:sub(#state.prefix + 1)
  if path == "" or path == "/" or path:find("^//") or path:find("%.%.")
     or path:find("[%c ]") then
    errors.raise(400, "bad_request", "the passthrough path must be the "
                 .. "third party's own path, like /crm/v3/objects")
  end
  return path
end

-- The connection the caller names; raises 400, 403 or 404.
local function named_connection(req, who)
  local key = req.headers["x-connection-key"]
  if key then
    return connections.owned(key, who)
  end
  local platform = req.headers["x-connection-platform"]
  if not platform then
    errors.raise(400, "bad_request", "name the connection with an "
                 .. "x-connection-key or x-connection-platform header")
  end
  local found
  for _, conn in ipairs(connections.own_list(who)) do
    if conn.platform == platform then
      if found then
        errors.raise(409, "ambiguous_connection", "several connections "
                     .. "for this platform: name one with x-connection-key")
      end
      found = conn
    end
  end
  if not found then
    errors.raise(404, "not_found", "no connection for this platform")
  end
  return found
end

-- Every authorize_passthrough hook must say true.  `false, reason`
-- refuses with 403; `false, reason, retry_after_s` with 429.
local function authorize(who, conn, req)
  hooks.each("authorize_passthrough", function(res)
    if res[2] == true then
      return
    end
    local reason = type(res[3]) == "string" and res[3]:match("^[%w_ %-]+$")
                   and res[3] or "refused by policy"
    local retry = tonumber(res[4])
    if retry then
      errors.raise(429, "rate_limited", reason,
                   {["Retry-After"] = tostring(math.max(1,
                                                        math.ceil(retry)))})
    end
    errors.raise(403, "forbidden", reason)
  end, who, conn, req)
end

local function forwarded_headers(req, conn)
  local out = {[pica.header("connection-key")] = conn.connection_key}
  for name, value in pairs(req.headers) do
    if FORWARD[name] then
      out[name] = value
    end
  end
  local action = req.headers[pica.header("action-id")]
                 or req.headers["x-pica-action-id"]
  if action then
    out[pica.header("action-id")] = action
  end
  return out
end

--- A connection key with its id cut short, for logs:
-- "test::gmail::default::1a2b…9f3e|alice".
function M.redact_key(key)
  return (key:gsub("(::default::)(%x%x%x%x)%x+(%x%x%x%x)", "%1%2…%3"))
end

--- The path with query values left out: "/a/b?limit=&q=".
function M.redact_query(path, raw_query)
  if raw_query == "" then
    return path
  end
  local names = {}
  for name in (raw_query .. "&"):gmatch("([^&=]*)=?[^&]*&") do
    if name ~= "" then
      names[#names + 1] = name .. "="
    end
  end
  return path .. "?" .. table.concat(names, "&")
end

local function audit(req, who, conn, path, res)
  core.audit(json.encode({
    time = string.format("%.3f", core.now()), request_id = req.id,
    identity = who.identity, identity_type = who.identity_type,
    platform = conn.platform,
    connection_key = M.redact_key(conn.connection_key),
    method = req.method, path = M.redact_query(path, req.raw_query),
    status = res.status, error = res.error, bytes = res.bytes,
    latency_ms = math.floor(res.elapsed_ms * 1000 + 0.5) / 1000,
    generation = state.generation,
  }))
end

--- The route handler; `ctx` holds who, identity and identity_type.
function M.handle(req, ctx)
  if not M.METHODS[req.method] then
    errors.raise(405, "method_not_allowed", "passthrough takes GET, POST, "
                 .. "PUT, PATCH and DELETE",
                 {Allow = "DELETE, GET, PATCH, POST, PUT"})
  end
  local path = third_party_path(req)
  local conn = named_connection(req, ctx.who)
  authorize(ctx.who, conn, req)
  local res = core.proxy({
    method = req.method, body = req.body, pica = true,
    url = state.pica_url .. "/v1/passthrough" .. path
          .. (req.raw_query ~= "" and "?" .. req.raw_query or ""),
    headers = forwarded_headers(req, conn), timeout_ms = state.timeout,
  })
  core.metric_upstream("/v1/passthrough", res.status, res.elapsed_ms)
  audit(req, ctx.who, conn, path, res)
  if not res.started then
    pica.raise(res.error == "timeout" and {kind = "timeout"}
               or {kind = "unavailable", detail = res.error},
               "call the passthrough")
  end
  return 0    -- the answer went out as it streamed
end

return M
