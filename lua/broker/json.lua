--- JSON for the broker and its hooks, over lua-cjson.
--
-- Decoding never raises: it returns `nil, err`.  Empty JSON arrays stay
-- arrays when encoded again, and nesting is limited so a hostile body
-- cannot exhaust the C stack.
local cjson = require "cjson"

local M = {}

local codec = cjson.new()
codec.decode_max_depth(32)
codec.encode_max_depth(64)
codec.encode_sparse_array(true, 1, 1)
codec.decode_invalid_numbers(false)

M.null = codec.null
M.array_mt = {__name = "json.array"}

--- Returns the value of JSON text `s`, or `nil, err`.
function M.decode(s)
  if type(s) ~= "string" then
    return nil, "expected a JSON string, got " .. type(s)
  end
  local ok, v = pcall(codec.decode, s)
  if not ok then
    return nil, (tostring(v):gsub("^.-:%d+: ", ""))
  end
  return v
end

--- Returns the JSON text of `v`; raises on values JSON cannot hold.
function M.encode(v)
  return codec.encode(v)
end

--- Marks table `t` as an array, so that it encodes as `[]` when empty.
function M.array(t)
  return setmetatable(t or {}, codec.array_mt)
end

M.empty_array = M.array({})

return M
