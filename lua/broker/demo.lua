--- The demo page, served under --dev only: the files of examples/demo,
-- the real @picahq/authkit file from its node_modules, and a config.json
-- telling the page where the broker's API and the sandbox's widget are.
--
--   GET /                    302 to /demo/
--   GET /demo                302 to /demo/
--   GET /demo/config.json    {"api_base", "token_url", "widget_url", ...}
--   GET /demo/{file}         a file of the demo directory ("" and "x/"
--                            mean index.html)
--
-- app.lua registers these with `demo.register(add_route, config)`; it
-- adds nothing unless `config.dev` is on.  The directory is
-- `config.demo_dir`, or else examples/demo beside the lua directory
-- (the source tree's layout).
local core = require "broker.core"
local errors = require "broker.errors"
local json = require "broker.json"

local M = {}

local MAX_FILE_BYTES = 8 * 1024 * 1024

-- Content types by file extension; other files are not served.
local TYPES = {
  html = "text/html; charset=utf-8",
  js = "text/javascript; charset=utf-8",
  mjs = "text/javascript; charset=utf-8",
  css = "text/css; charset=utf-8",
  json = "application/json",
  map = "application/json",
  svg = "image/svg+xml",
  png = "image/png",
  ico = "image/x-icon",
  txt = "text/plain; charset=utf-8",
  md = "text/markdown; charset=utf-8",
}

-- The one part of node_modules that is served: the package's own build.
local PACKAGE_DIST = "node_modules/@picahq/authkit/dist/"
local UMD_FILE = PACKAGE_DIST .. "index.umd.js"

-- The widget page's path on the sandbox.
local WIDGET_PATH = "/widget"

local COMMON_HEADERS = {
  ["cache-control"] = "no-cache",
  ["x-content-type-options"] = "nosniff",
}

-- Returns `t` plus the common headers, as a fresh table.
local function with_common(t)
  local out = {}
  for k, v in pairs(COMMON_HEADERS) do
    out[k] = v
  end
  for k, v in pairs(t) do
    out[k] = v
  end
  return out
end

-- Returns the examples/demo directory beside the lua directory.
local function default_dir()
  local here = package.searchpath("broker.demo", package.path)
  if not here then
    return nil
  end
  -- .../lua/broker/demo.lua -> .../examples/demo
  local root = here:match("^(.*)/[^/]+/[^/]+/[^/]+$")
  return root and root .. "/examples/demo"
end

--- Returns the relative file path that the URL path tail `tail` names,
-- or nil when it is not a plain path inside the directory: no "..",
-- no absolute path, no NUL or control byte, no backslash, no hidden
-- file, no node_modules beyond the package's dist.  Percent escapes are
-- decoded first, so "%2e%2e" is ".." too.
function M.safe_path(tail)
  if type(tail) ~= "string" or #tail > 512 then
    return nil
  end
  local bad = false
  local path = tail:gsub("%%(%x%x)", function(h)
    return string.char(tonumber(h, 16))
  end)
  if path:find("%%") then
    bad = true                     -- a '%' not followed by two hex digits
  end
  if path == "" or path:sub(-1) == "/" then
    path = path .. "index.html"
  end
  if bad or path:sub(1, 1) == "/" or path:find("[%c\\]") then
    return nil
  end
  if path:find("//", 1, true) then
    return nil
  end
  for part in path:gmatch("[^/]+") do
    if part:sub(1, 1) == "." then  -- "..", ".", .git, .env, ...
      return nil
    end
  end
  if path:find("^node_modules/") and path:sub(1, #PACKAGE_DIST)
      ~= PACKAGE_DIST then
    return nil
  end
  return path
end

--- Returns the content type of `path` by its extension, or nil.
function M.content_type(path)
  local ext = path:match("%.([%w]+)$")
  return ext and TYPES[ext:lower()]
end

-- Returns the whole file at `full`, or nil (absent, a directory, or
-- larger than MAX_FILE_BYTES).
local function read_file(full)
  local f = io.open(full, "rb")
  if not f then
    return nil
  end
  local size = f:seek("end")
  if not size or size > MAX_FILE_BYTES then
    f:close()
    return nil
  end
  f:seek("set")
  local text = f:read("a")
  f:close()
  return text
end

local function exists(full)
  local f = io.open(full, "rb")
  if f then
    f:close()
  end
  return f ~= nil
end

local function not_found()
  errors.raise(404, "not_found", "no such file in the demo")
end

-- 302 to /demo/, keeping the query (?user=bob, ?broker=...).
local function redirect(req)
  local q = req.raw_query
  local to = "/demo/" .. ((q and q ~= "") and "?" .. q or "")
  if to:find("[%c]") then
    to = "/demo/"
  end
  return 302, with_common({location = to,
                           ["content-type"] = "text/plain; charset=utf-8"}),
         "see /demo/\n"
end

-- The scheme and authority the browser used to reach the broker, from
-- the Host header when it is a plain host[:port]; else the listener's.
local function own_origin(req, config)
  local host = req.headers and req.headers.host
  if type(host) ~= "string" or not host:match("^[%w%.%-%[%]:]+$") then
    host = config.listen
  end
  return "http://" .. host
end

--- Registers the demo's routes through `add_route(method, pattern,
-- name, handler)` (app.lua's; `pattern` is anchored there) when
-- `config.dev` is on.  Returns true when it registered them.
function M.register(add_route, config)
  if not config.dev then
    return false
  end
  local dir = config.demo_dir
  if type(dir) ~= "string" or dir == "" then
    dir = default_dir()
  end
  dir = dir and dir:gsub("/+$", "")
  if not dir or not exists(dir .. "/index.html") then
    core.log("warn", "demo", "no demo page: " .. tostring(dir)
             .. "/index.html is missing (set demo_dir)")
  elseif not exists(dir .. "/" .. UMD_FILE) then
    core.log("warn", "demo", "the demo page needs @picahq/authkit: run "
             .. "`npm ci --prefix " .. dir .. "`")
  end
  local prefix = config.route_prefix or "/api"
  local widget_url = (config.pica_url or ""):gsub("/+$", "")
                     .. WIDGET_PATH

  add_route("GET", "/", "demo", redirect)
  add_route("GET", "/demo", "demo", redirect)
  add_route("GET", "/demo/config%.json", "demo", function(req)
    local api_base = own_origin(req, config) .. prefix
    return 200, with_common({["content-type"] = "application/json"}),
           json.encode({
             api_base = api_base,
             token_url = api_base .. "/authkit/token",
             widget_url = widget_url,
             identity_header = "x-user-id",
             users = json.array({"alice", "bob"}),
           })
  end)
  add_route("GET", "/demo/(.*)", "demo", function(req, caps)
    local path = dir and M.safe_path(caps[1])
    local kind = path and M.content_type(path)
    local text = kind and read_file(dir .. "/" .. path)
    if not text then
      not_found()
    end
    return 200, with_common({["content-type"] = kind}), text
  end)
  return true
end

return M
