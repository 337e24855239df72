-- 45-rate-limit.lua: at most LIMIT passthrough calls per identity per
-- WINDOW seconds, counted in the worker's cache.  Past it the broker
-- answers 429 with Retry-After.
--
-- The count is per worker process: with N workers an identity may make
-- up to N * LIMIT calls per window.  For one limit across brokers keep
-- the counter in a shared store (Redis, PostgreSQL) instead.

local LIMIT = tonumber(broker.env("PASSTHROUGH_LIMIT") or "") or 60
local WINDOW = tonumber(broker.env("PASSTHROUGH_WINDOW_S") or "") or 60

return {
  authorize_passthrough = function(who, conn, req)
    local now = broker.now()
    local window = math.floor(now / WINDOW)
    local key = "rate:" .. who.identity_type .. ":" .. who.identity
                .. ":" .. window
    local used = (broker.cache.get(key) or 0) + 1
    broker.cache.set(key, used, WINDOW)
    if used > LIMIT then
      return false, "rate_limited", (window + 1) * WINDOW - now
    end
    return true
  end,
}
