--- HTTP errors: raised anywhere in a route, answered in one place.
--
-- `errors.raise(404, "not_found", "no such connection")` stops the
-- route; app.lua turns the error into
-- `{"error": {"code": "not_found", "message": "no such connection"}}`.
local json = require "broker.json"

local M = {}

local HttpError = {}
HttpError.__index = HttpError
HttpError.__tostring = function(e)
  return string.format("HTTP %d %s: %s", e.status, e.code, e.message)
end

--- Returns an error object for `status` (headers optional).
function M.new(status, code, message, headers)
  return setmetatable({status = status, code = code, message = message,
                       headers = headers}, HttpError)
end

--- Raises an HTTP error; it does not return.
function M.raise(status, code, message, headers)
  error(M.new(status, code, message, headers), 0)
end

--- True if `e` is an HTTP error object.
function M.is(e)
  return getmetatable(e) == HttpError
end

--- Returns status, headers, body for the error `e`.
function M.response(e)
  local headers = {}
  for k, v in pairs(e.headers or {}) do
    headers[k] = v
  end
  return e.status, headers, json.encode({
    error = {code = e.code, message = e.message}})
end

return M
