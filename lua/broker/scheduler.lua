--- Background work: functions that run every N seconds.
--
-- The C core runs the app's tick once a second in a coroutine of its
-- own (never more than one at a time), so a job may wait on I/O like a
-- hook does.  Jobs run one after the other; a job that fails is logged
-- and runs again at its next time.
local core = require "broker.core"

local M = {}

local jobs = {}

local function now()
  return core.monotonic_ms() / 1000
end

--- Runs `fn()` every `seconds` (at least 1), first after `seconds`.
function M.every(seconds, name, fn)
  if type(seconds) ~= "number" or seconds < 1 or type(fn) ~= "function"
     or type(name) ~= "string" then
    error("every(seconds >= 1, name, function) expected", 2)
  end
  jobs[#jobs + 1] = {every = seconds, name = name, fn = fn,
                     next = now() + seconds}
end

--- Forgets every job (a new generation starts with none).
function M.reset()
  jobs = {}
end

--- Runs the jobs that are due; called from the tick.
function M.run_due()
  for _, job in ipairs(jobs) do
    if now() >= job.next then
      core.hook_begin()
      local ok, err = pcall(job.fn)
      core.hook_end()
      if not ok then
        core.log("error", "scheduler", "job " .. job.name .. " failed: "
                 .. tostring(err))
      end
      job.next = now() + job.every
    end
  end
end

return M
