-- Stand-ins for the host's `broker.crypto` and `broker.base64url`, built on
-- the pure-Lua helpers beside this file. For specs only.
--
--   local fake_crypto = require "fake_crypto"
--   fake_crypto.install(fake_broker)  -- sets .crypto and .base64url
--   fake_crypto.sign_jwt(secret, header_json, payload_json) --> token

local sha256 = require "sha256"
local base64url = require "base64url"

local M = {}

-- Like the host: true when `a` and `b` are equal strings, reading every
-- byte of the shorter whatever the answer.
local function equals(a, b)
  if type(a) ~= "string" or type(b) ~= "string" then
    error("crypto.equals: expected two strings", 2)
  end
  local diff = #a ~ #b
  for i = 1, math.min(#a, #b) do
    diff = diff | (a:byte(i) ~ b:byte(i))
  end
  return diff == 0
end

M.crypto = {
  hmac_sha256 = sha256.hmac,
  equals = equals,
}

M.base64url = {
  encode = base64url.encode,
  decode = base64url.decode,
}

-- Adds `crypto` and `base64url` to the fake broker table `broker`, which
-- the caller owns; returns it.
function M.install(broker)
  if type(broker) ~= "table" then
    error("fake_crypto.install: expected a table", 2)
  end
  broker.crypto = M.crypto
  broker.base64url = M.base64url
  return broker
end

-- Returns an HS256 JWT of the given header and payload JSON texts, signed
-- with `secret`.
function M.sign_jwt(secret, header_json, payload_json)
  local input = base64url.encode(header_json) .. "."
    .. base64url.encode(payload_json)
  return input .. "." .. base64url.encode(sha256.hmac(secret, input))
end

return M
