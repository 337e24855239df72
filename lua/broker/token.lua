--- POST /api/authkit/token: the integrations an identity may connect.
--
-- Without `page` in the query it answers what the official SDK's
-- create() answers (every page merged), but faster: Pica's flags are
-- cached, and once the page count is known every page is asked at once,
-- so a warm call is one round trip.  With `?page=&limit=` it relays that
-- one page.  Rows dropped by filter_integrations are taken off `total`.
--
-- Pica's pages are relayed as the JSON text they came in (checked, not
-- rebuilt): only when a plugin filters the rows are they decoded.
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

local function bad_page(detail)
  pica.raise({kind = "bad_response", detail = detail},
             "list AuthKit integrations")
end

-- A page as Pica sent it: `keys` in order, `raw[key]` the JSON text of
-- each member, and `pages` as a number.  Raises a 502 if it is off.
local function expect_page(o)
  if not o.ok then
    pica.raise(o.err, "list AuthKit integrations")
  end
  local m, err = json.members(o.body or "")
  if not m then
    bad_page(err)
  end
  local page = {keys = {}, raw = {}}
  for i = 1, #m, 2 do
    if page.raw[m[i]] == nil then
      page.keys[#page.keys + 1] = m[i]
    end
    page.raw[m[i]] = m[i + 1]
  end
  page.pages = whole(page.raw.pages, 0, math.maxinteger)
  if not page.pages or not (page.raw.rows or ""):find("^%[") then
    bad_page("no rows and pages in the /v1/authkit answer")
  end
  return page
end

-- Asks the pages in `list` (plus the flags when not cached) at once;
-- returns the flags outcome (or nil) and the pages keyed by number.
local function fetch(body, list, limit, with_flags)
  local calls = {}
  if with_flags then
    calls[1] = {method = "GET", path = "/v1/users/flags"}
  end
  for _, p in ipairs(list) do
    calls[#calls + 1] = {method = "POST", path = "/v1/authkit", raw = true,
                         body = body, retry = true,
                         query = {limit = limit, page = p}}
  end
  local out = pica.call_all(calls)
  local pages, first = {}, with_flags and 2 or 1
  for i, p in ipairs(list) do
    pages[p] = expect_page(out[first + i - 1])
  end
  return with_flags and out[1] or nil, pages
end

-- The white-label flag, cached; false when Pica's flags cannot be had,
-- as the SDK does.
local function white_label(flags_outcome)
  local flag = state.cache:get("flags")
  if flags_outcome then
    local o = flags_outcome
    local ok = o.ok and type(o.value) == "table"
    flag = ok and o.value.authkitWhitelist == true
    state.cache:set("flags", flag, ok and state.flags_ttl or FLAGS_RETRY_S)
  end
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
  local known = state.cache:get("pages") or 1
  local flags_o, pages = fetch(body, range(1, known), SDK_LIMIT,
                               state.cache:get("flags") == nil)
  local count = pages[1].pages
  if count > MAX_PAGES then
    bad_page("Pica says there are " .. count .. " pages; more than "
             .. MAX_PAGES)
  end
  if count > known then
    local _, more = fetch(body, range(known + 1, count), SDK_LIMIT, false)
    for p, v in pairs(more) do
      pages[p] = v
    end
  end
  state.cache:set("pages", math.max(count, 1), state.pages_ttl)
  return white_label(flags_o), pages, math.max(count, 1)
end

-- The rows of pages 1..count as one JSON array text, and how many rows
-- filter_integrations dropped.  Decodes only when a plugin filters.
local function rows_of(pages, count, ctx, req)
  if not hooks.has("filter_integrations") then
    local parts = {}
    for p = 1, count do
      -- members() gives the array's exact text: "[" ... "]"
      local text = pages[p].raw.rows
      if not text:find("^%[%s*%]$") then
        parts[#parts + 1] = text:sub(2, -2)
      end
    end
    return "[" .. table.concat(parts, ",") .. "]", 0
  end
  local rows = json.array({})
  for p = 1, count do
    local list = json.decode(pages[p].raw.rows)
    for _, row in ipairs(list or {}) do
      rows[#rows + 1] = row
    end
  end
  local before = #rows
  rows = hooks.filter("filter_integrations", "table", rows, ctx.who, req)
  return json.encode(json.array(rows)), before - #rows, #rows
end

-- Pica's total less the rows a plugin dropped (never below what is
-- returned), as JSON text.
local function total_of(raw_total, dropped, kept)
  local total = tonumber(raw_total)
  if dropped == 0 or not total then
    return raw_total
  end
  return string.format("%d", math.max(total - dropped, kept))
end

-- Rebuilds a page object with some members replaced or added.
local function relay(page, replace)
  local out = {}
  for _, k in ipairs(page.keys) do
    if replace[k] == nil then
      out[#out + 1] = json.encode(k) .. ":" .. page.raw[k]
    end
  end
  for _, k in ipairs({"rows", "total", "isWhiteLabel"}) do
    if replace[k] ~= nil then
      out[#out + 1] = json.encode(k) .. ":" .. replace[k]
    end
  end
  return "{" .. table.concat(out, ",") .. "}"
end

-- The SDK's answer: one page as Pica sent it, or every page merged.
local function merged(ctx, req, body)
  local flag, pages, count = all_pages(body)
  local rows, dropped, kept = rows_of(pages, count, ctx, req)
  local first = pages[1]
  local total = total_of(first.raw.total or "null", dropped, kept)
  if count <= 1 then
    return relay(first, {rows = rows, total = total,
                         isWhiteLabel = tostring(flag)})
  end
  return string.format('{"rows":%s,"page":1,"pages":1,"total":%s,'
                       .. '"requestId":%s,"isWhiteLabel":%s}', rows, total,
                       pages[count].raw.requestId or "null", tostring(flag))
end

local function one_page(ctx, req, body, page, limit)
  local flags_o, pages = fetch(body, {page}, limit,
                               state.cache:get("flags") == nil)
  local flag = white_label(flags_o)
  local v = pages[page]
  local rows, dropped, kept = rows_of({v}, 1, ctx, req)
  return relay(v, {rows = rows, isWhiteLabel = tostring(flag),
                   total = total_of(v.raw.total or "null", dropped, kept)})
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
  if page then
    return 200, {}, one_page(ctx, req, body, page, limit)
  end
  return 200, {}, merged(ctx, req, body)
end

return M
