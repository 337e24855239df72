--- GET /api/connectors: the integrations enabled for AuthKit, from
-- Pica's /v1/available-connectors (every page), cached per worker.
--
-- A miss is single-flight: while one request fetches, the others that
-- miss wait for its answer instead of each asking Pica.  The rows go
-- through filter_integrations like the token endpoint's, and may be
-- narrowed with ?category=.
local core = require "broker.core"
local json = require "broker.json"
local errors = require "broker.errors"
local hooks = require "broker.hooks"
local pica = require "broker.pica"
local cache = require "broker.cache"
local waker = require "broker.waker"

local M = {}

local PAGE = 100
local MAX_PAGES = 50

local state = {cache = cache.new(4), ttl = 300, waiting = nil}

--- Takes the cache lifetime from the config.
function M.configure(config)
  state.cache = cache.new(4)
  state.ttl = config.connectors_ttl_s
  state.waiting = nil
end

local function page_call(p)
  return {method = "GET", path = "/v1/available-connectors",
          query = {authkit = "true", limit = PAGE, page = p}}
end

local function rows_of(o)
  if not o.ok then
    pica.raise(o.err, "list connectors")
  end
  local rows = type(o.value) == "table" and o.value.rows
  if type(rows) ~= "table" then
    pica.raise({kind = "bad_response", detail = "no rows"},
               "list connectors")
  end
  return rows
end

-- Every page of Pica's connectors, in order.
local function fetch()
  local first = pica.call_all({page_call(1)})[1]
  local all = json.array({})
  for _, row in ipairs(rows_of(first)) do
    all[#all + 1] = row
  end
  local pages = math.tointeger(first.value.pages) or 1
  local calls = {}
  for p = 2, math.min(pages, MAX_PAGES) do
    calls[#calls + 1] = page_call(p)
  end
  for _, o in ipairs(#calls > 0 and pica.call_all(calls) or {}) do
    for _, row in ipairs(rows_of(o)) do
      all[#all + 1] = row
    end
  end
  return all
end

-- The cached list, or the one a fetch in flight brings, or a new fetch.
local function connectors()
  local rows = state.cache:get("all")
  if rows then
    return rows
  end
  if state.waiting then
    local w = waker.new()
    state.waiting[#state.waiting + 1] = w
    local res = waker.wait(w)
    if not res.ok then
      error(res.err, 0)
    end
    return res.rows
  end
  state.waiting = {}
  local ok, res = pcall(fetch)
  local waiting = state.waiting
  state.waiting = nil
  for _, w in ipairs(waiting) do
    waker.wake(w, ok and {ok = true, rows = res} or {ok = false, err = res})
  end
  if not ok then
    error(res, 0)
  end
  state.cache:set("all", res, state.ttl)
  return res
end

--- The route handler; `ctx` holds who, identity and identity_type.
function M.handle(req, ctx)
  local category = req.query.category
  if category ~= nil and (#category == 0 or #category > 100) then
    errors.raise(400, "bad_request", "category must be 1 to 100 bytes")
  end
  local rows = json.array({})
  for _, row in ipairs(connectors()) do
    if category == nil or (type(row.category) == "string"
        and row.category:lower() == category:lower()) then
      rows[#rows + 1] = row
    end
  end
  if hooks.has("filter_integrations") then
    rows = hooks.filter("filter_integrations", "table", rows, ctx.who, req)
  end
  core.log("debug", "connectors", #rows .. " connectors answered")
  return 200, {}, json.encode({rows = json.array(rows), total = #rows})
end

return M
