-- 40-read-only.lua: passthrough calls to some platforms may only read.
-- A POST, PUT, PATCH or DELETE to one of them is refused with 403.

local READ_ONLY = {gmail = true, hubspot = true}

return {
  authorize_passthrough = function(who, conn, req)
    if READ_ONLY[conn.platform] and req.method ~= "GET" then
      return false, "read_only_platform"
    end
    return true
  end,
}
