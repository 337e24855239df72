-- Responses of the sandbox, as the `status, headers, body` triple that
-- `sandbox.app.handle` returns. Every function answers a fresh headers
-- table, which the host may change.
--
--   local reply = require "sandbox.reply"
--   return reply.json(200, value)
--   return reply.pica_error(400, "limit must be a positive integer")
--   return reply.plain_error(404)

local broker = require "broker"

local M = {}

local JSON = "application/json"

-- The open-source Pica server's error kinds, by status: type, code, key
-- and the default message. The hosted format is unknown (pica-api.md), so
-- this table is the one place to change.
local ERRORS = {
  [400] = { "BadRequest", 2000, "err::application::bad_request",
    "Bad request" },
  [401] = { "Unauthorized", 1001, "err::auth::unauthorized",
    "Unauthorized" },
  [403] = { "Forbidden", 1002, "err::auth::forbidden", "Forbidden" },
  [404] = { "NotFound", 2005, "err::application::not_found",
    "Value not found" },
  [409] = { "Conflict", 2001, "err::application::conflict", "Conflict" },
  [429] = { "TooManyRequests", 2008,
    "err::application::too_many_requests", "Too many requests" },
  [500] = { "InternalServerError", 1000, "err::internal::unknown",
    "Internal server error" },
  [502] = { "BadGateway", 1003, "err::internal::bad_gateway",
    "Bad gateway" },
  [503] = { "ServiceUnavailable", 1004,
    "err::internal::service_unavailable", "Service unavailable" },
}

local OTHER_ERROR = { "Error", 1000, "err::internal::unknown", "Error" }

-- The open-source server's answers for routing failures.
local ROUTE_ERRORS = {
  [404] = "Not found",
  [405] = "Method not allowed",
}

-- Answers `status` with `value` encoded as JSON.
function M.json(status, value)
  return status, { ["content-type"] = JSON }, broker.json.encode(value)
end

-- Answers `status` with `body`, a string that is already JSON.
function M.encoded(status, body)
  return status, { ["content-type"] = JSON }, body
end

-- Answers `status` with an empty body and no headers.
function M.empty(status)
  return status, {}, ""
end

-- Returns the body table of a Pica error of `status`; `message` replaces
-- the default text when given.
function M.pica_error_body(status, message)
  local kind = ERRORS[status] or OTHER_ERROR
  return {
    type = kind[1],
    code = kind[2],
    status = status,
    key = kind[3],
    message = message or kind[4],
    meta = broker.json.null,
  }
end

-- Answers a Pica error of `status` (see ERRORS).
function M.pica_error(status, message)
  return M.json(status, M.pica_error_body(status, message))
end

-- Answers the open-source server's plain error shape,
-- `{"type":"error","error":"..."}`: routing failures and the /sandbox
-- extension's own errors.
function M.plain_error(status, message)
  return M.json(status, {
    type = "error",
    error = message or ROUTE_ERRORS[status] or "Error",
  })
end

return M
