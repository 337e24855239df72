-- SHA-256 (FIPS 180-4) and HMAC-SHA256 (RFC 2104) in pure Lua 5.4, for
-- specs only: it signs test tokens and stands in for the host's crypto.
-- Slow and not constant-time; never load it in the broker itself.
--
--   local sha256 = require "sha256"
--   sha256.digest(data)          --> raw 32-byte digest
--   sha256.hmac(key, data)       --> raw 32-byte MAC
--   sha256.hex(raw)              --> lower-case hex of any string

local M = {}

local MASK = 0xffffffff

local K = {
  0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5,
  0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
  0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3,
  0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
  0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc,
  0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
  0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7,
  0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
  0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13,
  0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
  0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3,
  0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
  0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5,
  0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
  0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208,
  0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2,
}

local H0 = {
  0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a,
  0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19,
}

local function rotr(x, n)
  return ((x >> n) | (x << (32 - n))) & MASK
end

-- The 64-word message schedule of the block at `offset` in `msg`.
local function schedule(msg, offset)
  local w = { string.unpack(">" .. string.rep("I4", 16), msg, offset) }
  w[17] = nil -- drop the position that unpack returns last
  for i = 17, 64 do
    local a, b = w[i - 15], w[i - 2]
    local s0 = rotr(a, 7) ~ rotr(a, 18) ~ (a >> 3)
    local s1 = rotr(b, 17) ~ rotr(b, 19) ~ (b >> 10)
    w[i] = (w[i - 16] + s0 + w[i - 7] + s1) & MASK
  end
  return w
end

-- Mix one 64-byte block into the state `h` (eight words, updated in place).
local function compress(h, msg, offset)
  local w = schedule(msg, offset)
  local a, b, c, d, e, f, g, hh = table.unpack(h, 1, 8)

  for i = 1, 64 do
    local s1 = rotr(e, 6) ~ rotr(e, 11) ~ rotr(e, 25)
    local ch = (e & f) ~ (~e & g)
    local t1 = (hh + s1 + ch + K[i] + w[i]) & MASK
    local s0 = rotr(a, 2) ~ rotr(a, 13) ~ rotr(a, 22)
    local maj = (a & b) ~ (a & c) ~ (b & c)
    local t2 = (s0 + maj) & MASK
    hh, g, f, e = g, f, e, (d + t1) & MASK
    d, c, b, a = c, b, a, (t1 + t2) & MASK
  end

  local out = { a, b, c, d, e, f, g, hh }
  for i = 1, 8 do
    h[i] = (h[i] + out[i]) & MASK
  end
end

-- The message followed by its padding: 0x80, zeros, 64-bit bit length.
local function pad(data)
  local zeros = (55 - #data) % 64
  return data .. "\x80" .. string.rep("\0", zeros)
    .. string.pack(">I8", #data * 8)
end

-- Returns the raw 32-byte SHA-256 digest of `data`.
function M.digest(data)
  if type(data) ~= "string" then
    error("sha256.digest: data must be a string", 2)
  end
  local msg = pad(data)
  local h = table.move(H0, 1, 8, 1, {})
  for offset = 1, #msg, 64 do
    compress(h, msg, offset)
  end
  return string.pack(">" .. string.rep("I4", 8), table.unpack(h, 1, 8))
end

local function xor_with(key, byte)
  return (key:gsub(".", function(c)
    return string.char(c:byte() ~ byte)
  end))
end

-- Returns the raw 32-byte HMAC-SHA256 of `data` under `key`.
function M.hmac(key, data)
  if type(key) ~= "string" or type(data) ~= "string" then
    error("sha256.hmac: key and data must be strings", 2)
  end
  if #key > 64 then
    key = M.digest(key)
  end
  key = key .. string.rep("\0", 64 - #key)
  local inner = M.digest(xor_with(key, 0x36) .. data)
  return M.digest(xor_with(key, 0x5c) .. inner)
end

-- Returns `raw` as lower-case hexadecimal.
function M.hex(raw)
  return (raw:gsub(".", function(c)
    return string.format("%02x", c:byte())
  end))
end

return M
