-- 20-identity-type.lua: the default identity-type plugin.
--
-- map_identity_type(who, req) answers the identity and identity type sent
-- to Pica: the caller's id, and the type that resolve_identity found (a
-- token claim, see 10-identity.lua) or "user" when it found none.

local M = {}

-- Called by the host after resolve_identity, with its `who` table.
function M.map_identity_type(who, req) -- luacheck: no unused args
  if type(who) ~= "table" then
    error("map_identity_type: who must be a table", 2)
  end
  return who.id, who.identity_type or "user"
end

return M
