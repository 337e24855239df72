-- 60-forward-http.lua: forwards every new connection (and every
-- deletion) to your application's own HTTP API, next to the default
-- store.  Copy it into the plugins directory and set:
--
--   FORWARD_URL      where to POST, e.g. http://127.0.0.1:3000/authkit
--   FORWARD_SECRET   the HMAC-SHA256 key your API checks
--
-- Each event is a POST of JSON
--   {"event": "connection.created" | "connection.deleted",
--    "connection": {...}, "id": <outbox id>}
-- with the header `x-authkit-signature: sha256=<hex HMAC of the body>`.
-- Your API should answer 2xx once it has stored the event, and treat a
-- repeated `id` as already done (an event may arrive twice, never zero
-- times).
--
-- Nothing is lost: the event is written to an outbox (a SQLite file in
-- the data directory) before the broker answers the widget, and a
-- background job delivers it, retrying with exponential back-off (1 s
-- doubling to 5 min) while your API is down or answers an error.

local SCHEMA = [[
CREATE TABLE IF NOT EXISTS outbox (
  id       INTEGER PRIMARY KEY AUTOINCREMENT,
  body     TEXT NOT NULL,
  attempts INTEGER NOT NULL DEFAULT 0,
  next_at  REAL NOT NULL
);
]]

local BATCH = 50            -- events sent per round
local MAX_DELAY_S = 300

local db

local function outbox()
  if db == nil then
    db = assert(broker.sqlite.open("forward-outbox.db"))
    assert(db:exec(SCHEMA))
  end
  return db
end

local function hex(s)
  return (s:gsub(".", function(c) return string.format("%02x", c:byte()) end))
end

-- Writes one event to the outbox; delivery happens in the background.
local function enqueue(event, conn)
  local n, err = outbox():run("INSERT INTO outbox (body, next_at) "
    .. "VALUES (?, ?)", broker.json.encode({event = event,
    connection = conn}), broker.now())
  if not n then
    return nil, "failed to write the outbox: " .. err
  end
  return true
end

-- Sends one outbox row; true when the application took it.
local function deliver(row)
  local event = broker.json.decode(row.body)
  event.id = row.id
  local body = broker.json.encode(event)
  local secret = broker.env("FORWARD_SECRET") or ""
  local res, err = broker.http.request({
    method = "POST", url = broker.env("FORWARD_URL"), body = body,
    timeout_ms = 5000, retry = false,
    headers = {["content-type"] = "application/json",
               ["x-authkit-signature"] = "sha256="
                 .. hex(broker.crypto.hmac_sha256(secret, body))},
  })
  if res and res.status >= 200 and res.status < 300 then
    return true
  end
  broker.log.warn("failed to forward outbox event %d: %s", row.id,
                  res and ("status " .. res.status) or err)
  return false
end

-- Delivers the due events in order; reschedules the ones that fail.
local function drain()
  local d = outbox()
  local rows = assert(d:query("SELECT id, body, attempts FROM outbox "
    .. "WHERE next_at <= ? ORDER BY id LIMIT ?", broker.now(), BATCH))
  for _, row in ipairs(rows) do
    if deliver(row) then
      assert(d:run("DELETE FROM outbox WHERE id = ?", row.id))
    else
      local delay = math.min(2 ^ row.attempts, MAX_DELAY_S)
      assert(d:run("UPDATE outbox SET attempts = attempts + 1, "
        .. "next_at = ? WHERE id = ?", broker.now() + delay, row.id))
      return      -- the application is down: try the rest later
    end
  end
end

broker.every(1, drain)

return {
  init = function()
    outbox()
  end,

  on_success = function(conn, who)
    return enqueue("connection.created", conn)
  end,

  delete_connection = function(key, who)
    return enqueue("connection.deleted", {connection_key = key,
      identity = who.identity, identity_type = who.identity_type})
  end,

  selftest = function()
    if not broker.env("FORWARD_URL") then
      return nil, "FORWARD_URL is not set"
    end
    return true
  end,
}
