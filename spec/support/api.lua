--- Calls of the broker's connection API and the sandbox's test routes,
-- shared by the specs (each acts as the identity it is given, through
-- the x-user-id header that the specs' brokers trust).
local h = require "harness"

local M = {}

function M.as(who)
  return {["x-user-id"] = who}
end

--- A vault connection in the sandbox, as if `who` had finished OAuth;
-- returns the widget's LINK_SUCCESS record.
function M.connect(sandbox, who, platform, extra)
  local body = {platform = platform or "gmail", identity = who,
                identityType = "user"}
  for k, v in pairs(extra or {}) do
    body[k] = v
  end
  local res = h.json("POST", sandbox.url .. "/sandbox/connections", body)
  assert(res.status == 201, res.body)
  return res.json
end

--- POST /api/connections as `who`.
function M.post(broker, who, body)
  return h.json("POST", broker.url .. "/api/connections", body, M.as(who))
end

--- GET /api/connections as `who`; the array of rows.
function M.list(broker, who)
  local res = h.request("GET", broker.url .. "/api/connections",
                        {headers = M.as(who)})
  assert(res.status == 200, res.body)
  return res.json.connections
end

--- DELETE /api/connections/{key} as `who`.
function M.delete(broker, who, key)
  return h.request("DELETE", broker.url .. "/api/connections/"
                   .. key:gsub("|", "%%7C"), {headers = M.as(who)})
end

return M
