--- JSON for the broker and its hooks, over the core's codec
-- (core/json.c): strict RFC 8259, arrays keep their `array_mt` so that
-- `[]` stays `[]` through a decode and an encode (lua-cjson 2.1.0, the
-- one Debian ships, turns it into `{}`), and nesting is limited so a
-- hostile body cannot exhaust the C stack.
local codec = require "broker.jsonc"

local M = {}

local MAX_DEPTH = 32

M.null = codec.null
M.array_mt = codec.array_mt
M.array = codec.array
M.encode = codec.encode

--- Returns the members of the JSON object `s` as a flat array
-- `{key1, raw1, key2, raw2, ...}` where each raw is the member's own
-- JSON text, checked but not built; or `nil, err`.
function M.members(s)
  return codec.members(s, MAX_DEPTH)
end

--- Returns the value of JSON text `s`, or `nil, err`.
function M.decode(s)
  if type(s) ~= "string" then
    return nil, "expected a JSON string, got " .. type(s)
  end
  return codec.decode(s, MAX_DEPTH)
end

return M
