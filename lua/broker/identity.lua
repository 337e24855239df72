--- Who is calling: the identity hooks and the checks on what they say.
local core = require "broker.core"
local errors = require "broker.errors"
local hooks = require "broker.hooks"

local M = {}

M.TYPES = {user = true, team = true, organization = true, project = true}

-- An id Pica and the logs can take: 1 to 256 bytes, no control bytes.
local function valid_id(id)
  return type(id) == "string" and #id > 0 and #id <= 256
         and not id:find("[%c]")
end

local DENY = errors.new(401, "unauthenticated",
                        "no valid identity for this request")

-- Turns a hook's `nil, reason` into a 401 that names a short reason.
local function deny(reason)
  local r = type(reason) == "string" and reason:match("^[%w_]+$")
            and #reason <= 64 and reason
  if r then
    errors.raise(401, "unauthenticated",
                 "no valid identity for this request (" .. r .. ")")
  end
  error(DENY, 0)
end

local function bad_hook(name, why)
  core.log("error", "identity", "hook " .. name .. " " .. why)
  errors.raise(500, "internal", "internal error")
end

--- Resolves the caller of `req`.  Returns `who, identity, type`, or
-- raises 401 (no identity, or an identity hook failed) or 500.
function M.resolve(req)
  local p, who, reason = hooks.first("resolve_identity", DENY, req)
  if p == nil then
    deny(who)
  end
  if type(who) ~= "table" or not valid_id(who.id) then
    bad_hook("resolve_identity of " .. p.name, "returned no valid who.id "
             .. "(a string of 1 to 256 bytes without control characters)")
  end
  core.set_identity(who.id)

  local q, identity, itype = hooks.first("map_identity_type", nil, who,
                                         req)
  if q == nil then
    identity, itype = who.id, "user"
  end
  if not valid_id(identity) then
    bad_hook("map_identity_type of " .. q.name, "returned no valid identity")
  end
  if not M.TYPES[itype] then
    bad_hook("map_identity_type of " .. (q and q.name or "?"),
             "returned identity type '" .. tostring(itype) .. "'; it must "
             .. "be one of user, team, organization, project")
  end
  -- Store and policy hooks get what was sent to Pica with `who`.
  who.identity, who.identity_type = identity, itype
  return who, identity, itype
end

return M
