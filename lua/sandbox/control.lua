-- The sandbox's test controls: injected faults and per-path request
-- counts, both driven through the /sandbox routes.
--
--   local control = require "sandbox.control"
--   local faults = control.faults()
--   faults:add{ path_prefix = "/v1/authkit", status = 503, count = 2 }
--   local f = faults:take("/v1/authkit")   --> the fault, or nil
--   local stats = control.stats()
--   stats:count("/v1/authkit"); stats:snapshot() --> {requests=..,total=..}

local M = {}

local Faults = {}
Faults.__index = Faults

local Stats = {}
Stats.__index = Stats

-- Returns an empty fault list.
function M.faults()
  return setmetatable({ list = {} }, Faults)
end

-- Queues `fault`, a table with `path_prefix`, `status`, `count`,
-- `delay_ms` and optionally `retry_after`; the list takes it.
function Faults:add(fault)
  self.list[#self.list + 1] = fault
end

-- Returns the oldest fault whose prefix starts `path`, spending one of its
-- `count`; nil when none applies.
function Faults:take(path)
  for i, fault in ipairs(self.list) do
    local prefix = fault.path_prefix
    if path:sub(1, #prefix) == prefix then
      fault.count = fault.count - 1
      if fault.count <= 0 then
        table.remove(self.list, i)
      end
      return fault
    end
  end
  return nil
end

-- Returns the pending faults, oldest first, as a new list.
function Faults:pending()
  return table.move(self.list, 1, #self.list, 1, {})
end

-- Drops every pending fault.
function Faults:clear()
  self.list = {}
end

-- Returns zeroed request counts.
function M.stats()
  return setmetatable({ requests = {}, total = 0, inflight = 0,
              max_inflight = 0 }, Stats)
end

-- Counts one request to `name`, a path with its ids collapsed.
function Stats:count(name)
  self.requests[name] = (self.requests[name] or 0) + 1
  self.total = self.total + 1
end

-- Marks a /v1 request as being answered (tests read how many Pica calls
-- the broker had in flight at once from `max_inflight`).
function Stats:enter()
  self.inflight = self.inflight + 1
  if self.inflight > self.max_inflight then
    self.max_inflight = self.inflight
  end
end

function Stats:leave()
  self.inflight = self.inflight - 1
end

-- Returns `{requests = {name = n, ...}, total = n, max_inflight = n}`,
-- a copy.
function Stats:snapshot()
  local copy = {}
  for name, n in pairs(self.requests) do
    copy[name] = n
  end
  return { requests = copy, total = self.total,
       max_inflight = self.max_inflight }
end

-- Sets every count back to zero.
function Stats:reset()
  self.requests = {}
  self.total = 0
  self.max_inflight = self.inflight
end

return M
