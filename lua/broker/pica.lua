--- The Pica API client: URLs, the JSON body, answers and their errors.
--
-- The secret key never passes through Lua: calls are marked `pica` and
-- the C core attaches the key, and only to the configured pica_url.
-- Everything that depends on an undocumented detail of the hosted API
-- (error format, page size) is one constant or function here.
local core = require "broker.core"
local json = require "broker.json"
local errors = require "broker.errors"

local M = {}

local base_url = "https://api.picaos.com"
local header_prefix = "x-pica"

--- Points the client at `config.pica_url`.
function M.configure(config)
  base_url = config.pica_url
  header_prefix = config.pica_header_prefix
end

--- Percent-encodes `s` for a query string.
function M.urlencode(s)
  return (tostring(s):gsub("[^%w%-%._~]", function(c)
    return string.format("%%%02X", c:byte())
  end))
end

--- Builds "a=1&b=2" from a table, in key order so URLs are stable.
function M.query_string(q)
  if type(q) == "string" then
    return q
  end
  local keys = {}
  for k in pairs(q or {}) do
    keys[#keys + 1] = k
  end
  table.sort(keys)
  for i, k in ipairs(keys) do
    keys[i] = M.urlencode(k) .. "=" .. M.urlencode(q[k])
  end
  return table.concat(keys, "&")
end

local function to_call(c)
  local qs = M.query_string(c.query)
  local headers = {["content-type"] = "application/json",
                   accept = "application/json"}
  for k, v in pairs(c.headers or {}) do
    headers[k] = v
  end
  local body = c.body
  if type(body) == "table" then
    body = json.encode(body)
  end
  local method = c.method or "GET"
  return {method = method, url = base_url .. c.path
          .. (qs ~= "" and "?" .. qs or ""), headers = headers, body = body,
          retry = c.retry == nil and method ~= "POST" or c.retry,
          pica = true, timeout_ms = c.timeout_ms}
end

-- Turns one raw response into `{ok = true, value, status, headers}` or
-- `{ok = false, err = {kind, status, body, retry_after}}`.  With `raw`
-- a 2xx answer is not decoded: `body` holds its text.
local function outcome(res, raw)
  if res.error then
    local kind = res.error == "timeout" and "timeout" or "unavailable"
    return {ok = false, err = {kind = kind, detail = res.error}}
  end
  if res.status < 200 or res.status > 299 then
    return {ok = false, err = {kind = "status", status = res.status,
            body = res.body, retry_after = res.headers["retry-after"]}}
  end
  if res.body == "" or raw then
    return {ok = true, status = res.status, headers = res.headers,
            body = res.body}
  end
  local value, err = json.decode(res.body)
  if value == nil then
    return {ok = false, err = {kind = "bad_response", detail = err,
                               status = res.status}}
  end
  return {ok = true, value = value, status = res.status,
          headers = res.headers}
end

--- The endpoint a path belongs to, for metrics: ids and third-party
-- paths collapsed ("/v1/vault/connections/{id}", "/v1/passthrough").
function M.endpoint(path)
  if path:find("^/v1/passthrough/") then
    return "/v1/passthrough"
  end
  return (path:gsub("^(/v1/vault/connections)/.+$", "%1/{id}"))
end

--- Makes several Pica calls at once.  Each call is `{method, path,
-- query, body (string or table), retry, raw}`; returns an array of
-- outcomes (see `outcome` above) in the same order.
function M.call_all(calls)
  local requests = {}
  for i, c in ipairs(calls) do
    requests[i] = to_call(c)
  end
  local out = {}
  for i, res in ipairs(core.http(requests)) do
    core.metric_upstream(M.endpoint(calls[i].path), res.status,
                         res.elapsed_ms)
    out[i] = outcome(res, calls[i].raw)
  end
  return out
end

--- Makes one Pica call; returns the decoded answer, or `nil, err`.
function M.call(c)
  local o = M.call_all({c})[1]
  if o.ok then
    return o.value, nil, o
  end
  return nil, o.err
end

local function snippet(body)
  body = tostring(body or ""):sub(1, 200)
  return (body:gsub("[%c]", " "))
end

--- Raises the HTTP error that a failed Pica call `err` becomes.
function M.raise(err, what)
  what = what or "call Pica"
  if err.kind == "timeout" then
    core.log("warn", "pica", "failed to " .. what .. ": timed out")
    errors.raise(504, "upstream_timeout", "Pica did not answer in time")
  elseif err.kind == "unavailable" then
    core.log("warn", "pica", "failed to " .. what .. ": " ..
             tostring(err.detail))
    errors.raise(502, "upstream_unavailable", "Pica could not be reached")
  elseif err.kind == "bad_response" then
    core.log("warn", "pica", "failed to " .. what ..
             ": the answer is not JSON: " .. tostring(err.detail))
    errors.raise(502, "upstream_bad_response",
                 "Pica's answer was not understood")
  end
  local status = err.status
  if status == 401 or status == 403 then
    core.log("error", "pica", string.format("failed to %s: Pica refused "
      .. "the secret key (%d); check PICA_SECRET_KEY", what, status))
    errors.raise(502, "upstream_auth",
                 "the broker's Pica credentials were refused")
  end
  core.log("warn", "pica", string.format("failed to %s: Pica answered %d: "
           .. "%s", what, status, snippet(err.body)))
  if status == 429 then
    local ra = tonumber(err.retry_after)
    errors.raise(429, "upstream_rate_limited",
                 "Pica is limiting requests; retry later",
                 {["Retry-After"] = tostring(math.floor(ra or 1))})
  end
  errors.raise(502, "upstream_error", "Pica answered " .. status)
end

--- The name of a Pica header ("secret" -> "x-pica-secret").
function M.header(name)
  return header_prefix .. "-" .. name
end

return M
