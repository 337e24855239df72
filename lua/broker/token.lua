--- POST /api/authkit/token: the integrations an identity may connect.
--
-- Without `page` in the query it answers what the official SDK's
-- create() answers (every page merged), but faster: Pica's flags are
-- cached, and once the page count is known every page is asked at once,
-- so a warm call is one round trip.  With `?page=&limit=` it relays that
-- one page.  Rows dropped by filter_integrations are taken off `total`.
local json = require "broker.json"
local errors = require "broker.errors"
local hooks = require "broker.hooks"
local pica = require "broker.pica"
local cache = require "broker.cache"

local M = {}

local SDK_LIMIT = 100       -- the page size the official SDK asks for
local MAX_LIMIT = 1000      -- Pica documents no maximum; ours
local MAX_PAGES = 100       -- a Pica answer claiming more is refused
local FLAGS_RETRY_S = 10    -- after a failed flags call, ask again in

local state = {cache = cache.new(64), flags_ttl = 300, pages_ttl = 300}

--- Takes the cache lifetimes from the config.
function M.configure(config)
  state.flags_ttl = config.flags_ttl_s
  state.pages_ttl = config.pages_ttl_s
  state.cache = cache.new(64)
end

local function whole(s, lo, hi)
  local n = tonumber(s)
  if n and n == math.floor(n) and n >= lo and n <= hi then
    return math.tointeger(n)
  end
end

-- The page and limit asked for, or nil for the merged answer.
local function paging(query)
  if query.page == nil and query.limit == nil then
    return nil
  end
  local page = whole(query.page or "1", 1, 100000)
  local limit = whole(query.limit or tostring(SDK_LIMIT), 1, MAX_LIMIT)
  if not page or not limit then
    errors.raise(400, "bad_request", "page must be a whole number from 1 "
                 .. "and limit one from 1 to " .. MAX_LIMIT)
  end
  return page, limit
end

local function page_call(body, page, limit)
  return {method = "POST", path = "/v1/authkit", body = body, retry = true,
          query = {limit = limit, page = page}}
end

-- Checks the shape of an answered page; raises a 502 if it is off.
local function expect_page(o)
  if not o.ok then
    pica.raise(o.err, "list AuthKit integrations")
  end
  local v = o.value
  local pages = type(v) == "table" and math.tointeger(v.pages)
  if not pages or type(v.rows) ~= "table" or pages < 0 then
    pica.raise({kind = "bad_response",
                detail = "no rows and pages in the /v1/authkit answer"})
  end
  v.pages = pages
  return v
end

-- Asks the pages in `list` (plus the flags when not cached) at once;
-- returns the flag and a table of answered pages keyed by number.
local function fetch(body, list, limit, with_flags)
  local calls = {}
  if with_flags then
    calls[1] = {method = "GET", path = "/v1/users/flags"}
  end
  for _, p in ipairs(list) do
    calls[#calls + 1] = page_call(body, p, limit)
  end
  local out = pica.call_all(calls)
  local pages, first = {}, with_flags and 2 or 1
  for i, p in ipairs(list) do
    pages[p] = expect_page(out[first + i - 1])
  end
  return with_flags and out[1] or nil, pages
end

-- The white-label flag from a flags outcome, cached; false on failure
-- as the SDK does.
local function remember_flags(o)
  local ok = o.ok and type(o.value) == "table"
  local flag = ok and o.value.authkitWhitelist == true
  state.cache:set("flags", flag, ok and state.flags_ttl or FLAGS_RETRY_S)
  return flag
end

local function range(from, to)
  local t = {}
  for i = from, to do
    t[#t + 1] = i
  end
  return t
end

-- Every page of the identity's list, fetched in at most two rounds.
local function all_pages(body)
  local flag = state.cache:get("flags")
  local known = state.cache:get("pages") or 1
  local flags_o, pages = fetch(body, range(1, math.max(known, 1)),
                               SDK_LIMIT, flag == nil)
  if flags_o then
    flag = remember_flags(flags_o)
  end
  local count = pages[1].pages
  if count > MAX_PAGES then
    pica.raise({kind = "bad_response", detail = "Pica says there are "
                .. count .. " pages; more than " .. MAX_PAGES})
  end
  if count > known then
    local _, more = fetch(body, range(known + 1, count), SDK_LIMIT, false)
    for p, v in pairs(more) do
      pages[p] = v
    end
  end
  state.cache:set("pages", math.max(count, 1), state.pages_ttl)
  return flag, pages, count
end

-- Runs the rows through filter_integrations; returns rows, dropped.
local function filter(rows, who, req)
  if not hooks.has("filter_integrations") then
    return rows, 0
  end
  local before = #rows
  rows = hooks.filter("filter_integrations", "table", rows, who, req)
  return json.array(rows), before - #rows
end

local function merged(ctx, body)
  local flag, pages, count = all_pages(body)
  local first = pages[1]
  if count <= 1 then
    first.isWhiteLabel = flag
    return first
  end
  local rows = json.array({})
  for p = 1, count do
    for _, row in ipairs(pages[p].rows) do
      rows[#rows + 1] = row
    end
  end
  return {rows = rows, page = 1, pages = 1, total = first.total,
          requestId = pages[count].requestId, isWhiteLabel = flag}
end

local function one_page(body, page, limit)
  local flag = state.cache:get("flags")
  local flags_o, pages = fetch(body, {page}, limit, flag == nil)
  if flags_o then
    flag = remember_flags(flags_o)
  end
  local v = pages[page]
  v.isWhiteLabel = flag
  return v
end

-- Rejects a body that says it is JSON but is not.
local function check_body(req)
  local ctype = req.headers["content-type"] or ""
  if req.body ~= "" and ctype:find("json", 1, true) then
    local _, err = json.decode(req.body)
    if err then
      errors.raise(400, "bad_json", "the request body is not valid JSON")
    end
  end
end

--- The route handler; `ctx` holds who, identity and identity_type.
function M.handle(req, ctx)
  check_body(req)
  local page, limit = paging(req.query)
  local body = json.encode({identity = ctx.identity,
                            identityType = ctx.identity_type})
  local answer = page and one_page(body, page, limit)
                 or merged(ctx, body)
  local rows, dropped = filter(answer.rows, ctx.who, req)
  answer.rows = rows
  if dropped ~= 0 and type(answer.total) == "number" then
    answer.total = math.max(answer.total - dropped, #rows)
  end
  return 200, {}, json.encode(answer)
end

return M
