-- The sandbox's test-only routes under /sandbox, outside /v1 so they can
-- never be taken for Pica's. They need no secret. Handlers take the
-- request context of sandbox.app (see sandbox.pica) and answer
-- `status, headers, body`; errors use the plain `{"type":"error"}` shape.
--
--   POST   /sandbox/connections        create a connection, as if the
--                                      user had finished the widget
--   DELETE /sandbox/connections        empty the vault
--   PATCH  /sandbox/connections/{id}   change a connection's state
--   GET | POST | DELETE /sandbox/faults   list, queue, drop faults
--   GET | DELETE /sandbox/stats        /v1 request counts, reset them

local broker = require "broker"
local params = require "sandbox.params"
local reply = require "sandbox.reply"
local vault = require "sandbox.vault"

local M = {}

local ENVIRONMENTS = { test = true, live = true }

local MAX_COUNT = 1000000000
local MAX_RETRY_AFTER = 86400
local MAX_DELAY_MS = 3600000

local CONNECTION_FIELDS = {
  { "platform", params.string },
  { "identity", params.string },
  { "identityType", params.enum, vault.IDENTITY_TYPES, "user" },
  { "state", params.enum, vault.STATES, "operational" },
  { "environment", params.enum, ENVIRONMENTS, "test" },
  { "tags", params.strings },
  { "active", params.boolean, true },
  { "name", params.string },
}

local FAULT_FIELDS = {
  { "path_prefix", params.string },
  { "status", params.int, nil, 0, 599 },
  { "count", params.int, 1, 1, MAX_COUNT },
  { "retry_after", params.int, nil, 0, MAX_RETRY_AFTER },
  { "delay_ms", params.int, 0, 0, MAX_DELAY_MS },
}

-- Returns the fields of the JSON object body of `ctx` read by `spec` (see
-- params.fields), or nil, err.
local function read_body(ctx, spec)
  local obj, err = params.json_object(ctx.body)
  if not obj then
    return nil, err
  end
  return params.fields(obj, spec)
end

-- Returns the vault.create spec of a POST /sandbox/connections body, or
-- nil, err.
local function connection_spec(state, ctx)
  local f, err = read_body(ctx, CONNECTION_FIELDS)
  if not f then
    return nil, err
  elseif not f.platform then
    return nil, "platform is required"
  end
  local it = state.catalogue.by_platform[f.platform]
  if not it then
    return nil, "unknown platform: " .. f.platform
  end
  return {
    integration = it,
    environment = f.environment,
    identity = f.identity ~= "" and f.identity or nil,
    identity_type = f.identityType,
    state = f.state,
    tags = f.tags,
    active = f.active,
    name = f.name,
    now_ms = vault.now_ms(),
  }
end

-- POST /sandbox/connections: 201 with the LINK_SUCCESS record.
function M.create_connection(ctx)
  local spec, err = connection_spec(ctx.state, ctx)
  if not spec then
    return reply.plain_error(400, err)
  end
  local conn = ctx.state.vault:create(spec)
  return reply.json(201, vault.record(conn))
end

-- DELETE /sandbox/connections: forgets every connection.
function M.clear_connections(ctx)
  ctx.state.vault:clear()
  return reply.empty(200)
end

-- PATCH /sandbox/connections/{id} with `{"state": "failed"}`.
function M.patch_connection(ctx)
  local conn = ctx.state.vault:get(ctx.arg)
  if not conn then
    return reply.plain_error(404)
  end
  local f, err = read_body(ctx, { { "state", params.enum, vault.STATES } })
  if f and not f.state then
    err = "state is required"
  end
  if err then
    return reply.plain_error(400, err)
  end

  conn.state = f.state
  vault.touch(conn, vault.now_ms())
  return reply.json(200, vault.record(conn))
end

-- Returns the fault of a POST /sandbox/faults body, or nil, err.
local function fault_spec(ctx)
  local f, err = read_body(ctx, FAULT_FIELDS)
  if not f then
    return nil, err
  elseif not f.path_prefix or f.path_prefix:sub(1, 1) ~= "/" then
    return nil, "path_prefix must be a path starting with /"
  elseif not f.status or (f.status ~= 0 and f.status < 100) then
    return nil, "status must be 0 or from 100 to 599"
  end
  return f
end

-- POST /sandbox/faults: 201 with the queued fault.
function M.add_fault(ctx)
  local fault, err = fault_spec(ctx)
  if not fault then
    return reply.plain_error(400, err)
  end
  ctx.state.faults:add(fault)
  return reply.json(201, fault)
end

-- GET /sandbox/faults: `{"faults": [...]}`, oldest first.
function M.list_faults(ctx)
  local list = ctx.state.faults:pending()
  return reply.json(200, { faults = broker.json.array(list) })
end

-- DELETE /sandbox/faults.
function M.clear_faults(ctx)
  ctx.state.faults:clear()
  return reply.empty(200)
end

-- GET /sandbox/stats: `{"requests": {path: n}, "total": n}`.
function M.stats(ctx)
  return reply.json(200, ctx.state.stats:snapshot())
end

-- DELETE /sandbox/stats.
function M.reset_stats(ctx)
  ctx.state.stats:reset()
  return reply.empty(200)
end

return M
