--- A throwaway PostgreSQL server for the integration specs.
--
--   local pg = require "postgres"
--   if pg.available() then
--     local db = pg.start()          -- initdb, then postgres on a free port
--     db.url                         -- postgresql://postgres@127.0.0.1:N/...
--     pg.create_database(db, "two")  -- returns its URL
--     pg.psql(db, "SELECT 1")        -- the output, unaligned, no headers
--     pg.stop(db); pg.resume(db)     -- shut down; start again
--     pg.destroy(db)                 -- stop it and remove its files
--   end
--
-- initdb and postgres refuse to run as root, so as root every server
-- command runs as the `postgres` user (runuser); the data directory
-- lives in a temporary directory that user owns.  The server listens on
-- 127.0.0.1 only, its socket in that directory, with trust auth and
-- fsync off.  Waits poll with a deadline (harness.wait_for).
local h = require "harness"

local M = {}

local q = h.q

-- Runs a shell command; true if it exited 0.
local function sh(cmd)
  return os.execute(cmd) == true
end

-- The first line a shell command prints, or nil.
local function line_of(cmd)
  local p = io.popen(cmd)
  local s = p:read("l")
  p:close()
  return s
end

--- The directory of the server binaries: $PG_BINDIR, else the newest
-- /usr/lib/postgresql/*/bin holding initdb.  nil if there is none.
function M.bindir()
  local dir = os.getenv("PG_BINDIR") or line_of(
    "ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1")
  if dir and dir ~= "" and sh("test -x " .. q(dir .. "/initdb")) then
    return dir
  end
  return nil
end

local function is_root()
  return line_of("id -u") == "0"
end

--- True if a throwaway server can be started here.
function M.available()
  return M.bindir() ~= nil
         and (not is_root() or sh("id -u postgres >/dev/null 2>&1"))
end

-- `cmd` prefixed to run as the owner of the server's files.
local function as_owner(cmd)
  if is_root() then
    return "runuser -u postgres -- " .. cmd
  end
  return cmd
end

-- True if something listens on 127.0.0.1:port.
local function port_in_use(port)
  return sh(string.format("bash -c 'exec 3<>/dev/tcp/127.0.0.1/%d' "
                          .. ">/dev/null 2>&1", port))
end

local function free_port()
  for _ = 1, 50 do
    local port = math.random(20000, 59999)
    if not port_in_use(port) then
      return port
    end
  end
  error("no free port found for PostgreSQL")
end

local function ready(db)
  return sh(string.format("%s/pg_isready -q -h 127.0.0.1 -p %d -t 1",
                          q(db.bin), db.port))
end

-- Starts postgres on db.port; true once it accepts connections, false
-- if it stopped or never became ready.
local function launch(db)
  local cmd = as_owner(string.format(
    "%s/postgres -D %s -p %d -k %s -c listen_addresses=127.0.0.1 "
    .. "-c fsync=off -c full_page_writes=off", q(db.bin), q(db.data),
    db.port, q(db.dir)))
  local seen = #(h.read(db.log) or "")
  sh(string.format("%s >>%s 2>&1 &", cmd, q(db.log)))
  return h.wait_for(function()
    return ready(db)
           or (h.read(db.log) or ""):find("could not bind", seen + 1, true)
  end, 30) and ready(db)
end

--- Creates a cluster in a fresh temporary directory and starts it on a
-- free port; raises with the server's log if it does not come up.
function M.start()
  local bin = assert(M.bindir(), "PostgreSQL is not installed")
  local dir = line_of("mktemp -d /tmp/authkit-pg.XXXXXX")
  local db = {bin = bin, dir = dir, data = dir .. "/data",
              log = dir .. "/server.log"}
  if is_root() then
    assert(sh("chown postgres: " .. q(dir)))
  end
  if not sh(as_owner(string.format(
      "%s/initdb -D %s -U postgres -A trust -E UTF8 --no-locale -N "
      .. ">%s 2>&1", q(bin), q(db.data), q(dir .. "/initdb.log")))) then
    local log = h.read(dir .. "/initdb.log") or ""
    sh("rm -rf " .. q(dir))
    error("initdb failed: " .. log)
  end
  for _ = 1, 5 do
    db.port = free_port()
    if launch(db) then
      db.url = M.url(db, "postgres")
      return db
    end
    M.stop(db)
  end
  local log = h.read(db.log) or ""
  M.destroy(db)
  error("PostgreSQL did not start: " .. log)
end

--- The URL of database `name` on the server.
function M.url(db, name)
  return string.format("postgresql://postgres@127.0.0.1:%d/%s", db.port,
                       name)
end

--- Runs `sql` with psql; returns its output (unaligned, tuples only,
-- without the final newline), or raises with psql's message.
function M.psql(db, sql, dbname)
  local p = io.popen(string.format(
    "%s/psql -X -q -t -A -v ON_ERROR_STOP=1 -h 127.0.0.1 -p %d "
    .. "-U postgres -d %s -c %s 2>&1; echo \"rc=$?\"", q(db.bin), db.port,
    q(dbname or "postgres"), q(sql)))
  local out = p:read("a")
  p:close()
  local body, rc = out:match("^(.-)\n?rc=(%d+)\n$")
  if rc ~= "0" then
    error("psql failed: " .. out, 2)
  end
  return body
end

--- Creates database `name`; returns its URL.
function M.create_database(db, name)
  M.psql(db, "CREATE DATABASE " .. name)
  return M.url(db, name)
end

--- Quotes `s` as an SQL string literal.
function M.literal(s)
  return "'" .. tostring(s):gsub("'", "''") .. "'"
end

--- Stops the server and waits for it to be gone.  `mode` is "fast"
-- (the default: sessions are told and cut, running statements may still
-- finish) or "immediate" (every process quits at once, as in a crash).
function M.stop(db, mode)
  sh(as_owner(string.format("%s/pg_ctl stop -D %s -m %s -w -t 30 "
                            .. ">/dev/null 2>&1", q(db.bin), q(db.data),
                            mode or "fast")))
end

--- Starts the stopped server again, on the same port and data.
function M.resume(db)
  assert(launch(db), "PostgreSQL did not start again: "
         .. (h.read(db.log) or ""))
end

--- Stops the server and removes its files.
function M.destroy(db)
  if db then
    M.stop(db)
    sh("rm -rf " .. q(db.dir))
  end
end

return M
