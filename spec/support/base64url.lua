-- Base64url (RFC 4648 section 5) in pure Lua, for specs only: it builds
-- test tokens and stands in for the host's `broker.base64url`.
--
--   local b64 = require "base64url"
--   b64.encode(raw)   --> unpadded base64url text
--   b64.decode(text)  --> raw string, or nil, err (padding optional)

local M = {}

local ALPHABET =
  "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"

local VALUE = {}
for i = 1, #ALPHABET do
  VALUE[ALPHABET:byte(i)] = i - 1
end

-- Returns `raw` encoded, without `=` padding.
function M.encode(raw)
  if type(raw) ~= "string" then
    error("base64url.encode: expected a string", 2)
  end
  local out = {}
  for i = 1, #raw, 3 do
    local a, b, c = raw:byte(i, i + 2)
    local n = (a << 16) | ((b or 0) << 8) | (c or 0)
    local chars = (c and 4) or (b and 3) or 2
    for j = 1, chars do
      local v = (n >> (18 - 6 * (j - 1))) & 63
      out[#out + 1] = ALPHABET:sub(v + 1, v + 1)
    end
  end
  return table.concat(out)
end

-- Decodes one group of 2 to 4 characters starting at `i`; nil on a bad one.
local function decode_group(text, i)
  local n, count = 0, 0
  for j = i, math.min(i + 3, #text) do
    local v = VALUE[text:byte(j)]
    if not v then
      return nil
    end
    n = (n << 6) | v
    count = count + 1
  end
  n = n << (6 * (4 - count))
  local bytes = string.pack(">I3", n)
  return bytes:sub(1, count - 1)
end

-- Returns the raw bytes of `text`, or nil and a reason.
function M.decode(text)
  if type(text) ~= "string" then
    error("base64url.decode: expected a string", 2)
  end
  text = text:gsub("=+$", "")
  if #text % 4 == 1 then
    return nil, "bad base64url length"
  end
  local out = {}
  for i = 1, #text, 4 do
    local group = decode_group(text, i)
    if not group then
      return nil, "bad base64url character"
    end
    out[#out + 1] = group
  end
  return table.concat(out)
end

return M
