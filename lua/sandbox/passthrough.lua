-- The sandbox's fake of Pica's passthrough, `* /v1/passthrough/{path}`:
-- instead of calling a third party it echoes what it would have sent.
-- Two query parameters steer it for tests:
--
--   sandbox_status=NNN   answer that status (100..599) instead of 200
--   sandbox_bytes=N      answer a body of exactly N bytes (at most 64 MiB)
--
-- The handler takes the request context of sandbox.app (see sandbox.pica)
-- with `arg` = the third-party path, and answers `status, headers, body`.

local broker = require "broker"
local params = require "sandbox.params"
local reply = require "sandbox.reply"

local M = {}

local MAX_BYTES = 64 * 1024 * 1024

-- Request headers a proxy does not forward as they are.
local HOP_BY_HOP = {
  connection = true,
  ["content-length"] = true,
  host = true,
  ["keep-alive"] = true,
  te = true,
  ["transfer-encoding"] = true,
  upgrade = true,
}

-- The last filler body built, kept because benchmarks ask the same size
-- over and over.
local filler_size, filler_text = nil, nil

-- Returns a body of `n` bytes: a JSON string when n >= 2, blanks below.
local function filler(n)
  if n ~= filler_size then
    if n >= 2 then
      filler_text = '"' .. string.rep("a", n - 2) .. '"'
    else
      filler_text = string.rep(" ", n)
    end
    filler_size = n
  end
  return filler_text
end

-- Returns the headers the passthrough would forward: all but Pica's own
-- and the hop-by-hop ones.
local function forwarded(headers)
  local out = {}
  for name, value in pairs(headers) do
    if not name:find("^x%-pica%-") and not HOP_BY_HOP[name] then
      out[name] = value
    end
  end
  return out
end

-- Returns the answer's status and body size (nil: the echo), read from
-- the sandbox_* query parameters; or nil, err.
local function steering(query)
  local status, err = params.query_int(query, "sandbox_status", 200)
  if not status then
    return nil, err
  elseif status < 100 or status > 599 then
    return nil, "sandbox_status must be from 100 to 599"
  end
  local bytes
  bytes, err = params.query_int(query, "sandbox_bytes", nil, MAX_BYTES, 0)
  if err then
    return nil, err
  end
  return status, bytes
end

-- Returns the JSON echo of what the passthrough would send to `conn`.
local function echo(ctx, conn)
  return broker.json.encode({
    method = ctx.req.method,
    path = ctx.arg,
    query = ctx.req.raw_query or "",
    body = ctx.body,
    headers = forwarded(ctx.headers),
    connectionKey = conn.key,
    platform = conn.platform,
  })
end

-- Returns the answer's headers: the third party's renamed
-- `x-pica-passthrough-*`, the body itself as octet-stream.
local function answer_headers(ctx)
  return {
    ["content-type"] = "application/octet-stream",
    ["x-pica-passthrough-content-type"] = "application/json",
    ["x-pica-passthrough-date"] =
      os.date("!%a, %d %b %Y %H:%M:%S GMT", math.floor(broker.now())),
    ["x-pica-passthrough-x-request-id"] = tostring(ctx.req.id),
  }
end

-- * /v1/passthrough/{path}.
function M.handle(ctx)
  local key = ctx.headers["x-pica-connection-key"]
  if key == nil or key == "" then
    return reply.pica_error(400, "x-pica-connection-key is required")
  end
  local conn = ctx.state.vault:find_key(key)
  if not conn or conn.environment ~= ctx.env then
    return reply.pica_error(404, "Connection not found")
  end
  local status, bytes = steering(ctx.query)
  if not status then
    return reply.pica_error(400, bytes)
  end

  local body = bytes and filler(bytes) or echo(ctx, conn)
  return status, answer_headers(ctx), body
end

return M
