-- 10-identity.lua: the default identity plugin.
--
-- resolve_identity(req) finds who is calling, trying in this order:
--
--   1. `Authorization: Bearer <JWT>`;
--   2. the session cookie (env AUTHKIT_SESSION_COOKIE, default
--      "authkit_session") holding the same kind of JWT;
--   3. the `x-user-id` header, only when broker.config.allow_header_identity
--      is true (`--dev`, or the config says so). Never in production.
--
-- The first credential present decides: a bad bearer token is refused even
-- if a good cookie came with it. Tokens are HS256 JWTs signed with env
-- AUTHKIT_JWT_SECRET (when unset, sources 1 and 2 are skipped). `exp` is
-- required; `nbf` and `iat` are checked when present; clocks may differ by
-- 30 s. When set, env AUTHKIT_JWT_ISSUER must equal `iss` and env
-- AUTHKIT_JWT_AUDIENCE must be (or be in) `aud`. The identity is `sub`; the
-- claim named by env AUTHKIT_JWT_TYPE_CLAIM (default "identity_type") may
-- give the Pica identity type.
--
-- Answers a `who` table {id, identity_type (or nil), claims, source} with
-- source "jwt", "cookie" or "header", or nil and one of these reasons:
-- missing_credentials, ambiguous_credentials, bad_token, wrong_algorithm,
-- bad_signature, expired, not_yet_valid, wrong_issuer, wrong_audience,
-- missing_subject, bad_subject, bad_identity_type, bad_identity.

local broker = broker or require "broker"

local LEEWAY = 30            -- seconds of clock skew allowed
local MAX_TOKEN_BYTES = 8192 -- longer bearer or cookie tokens are refused
local MAX_ID_BYTES = 256

local DEFAULT_COOKIE = "authkit_session"
local DEFAULT_TYPE_CLAIM = "identity_type"

local IDENTITY_TYPES = {
  user = true, team = true, organization = true, project = true,
}

local M = {}

-- An environment variable, with the empty string taken as unset.
local function env(name)
  local value = broker.env(name)
  if value == "" then
    return nil
  end
  return value
end

local function header_identity_allowed()
  local config = broker.config
  return config ~= nil and config.allow_header_identity == true
end

-- A request header as one string; nil when absent, false when it was sent
-- more than once (the host hands repeats over as an array).
local function single_header(req, name)
  local value = (req.headers or {})[name]
  if type(value) == "table" then
    if #value ~= 1 then
      return false
    end
    value = value[1]
  end
  if type(value) ~= "string" then
    return nil
  end
  return value
end

------------------------------------------------------------------------
-- Identifiers

-- True when `id` is a usable identity: a non-empty UTF-8 string of at most
-- MAX_ID_BYTES bytes with no C0, DEL or C1 control character.
local function valid_id(id)
  if type(id) ~= "string" or #id == 0 or #id > MAX_ID_BYTES then
    return false
  end
  if id:find("[\0-\31\127]") or not utf8.len(id) then
    return false
  end
  for _, code in utf8.codes(id) do
    if code >= 0x80 and code <= 0x9f then
      return false
    end
  end
  return true
end

------------------------------------------------------------------------
-- JWT (RFC 7519, HS256 only, as RFC 8725 advises)

-- True for a finite number; NaN fails both comparisons.
local function finite(x)
  return math.type(x) ~= nil and x > -math.huge and x < math.huge
end

local function absent_or_finite(x)
  return x == nil or finite(x)
end

-- Decodes one base64url segment holding a JSON object; nil if it is not.
local function decode_segment(segment)
  local text = broker.base64url.decode(segment)
  if type(text) ~= "string" then
    return nil
  end
  local ok, value = pcall(broker.json.decode, text)
  if not ok or type(value) ~= "table" then
    return nil
  end
  return value
end

-- Splits a compact JWS into its three base64url segments. The signature
-- may be empty so that an unsigned token is refused for its algorithm.
local function split_token(token)
  if #token > MAX_TOKEN_BYTES then
    return nil
  end
  return token:match("^([%w_-]+)%.([%w_-]+)%.([%w_-]*)$")
end

-- Checks the header: HS256, and no extension the verifier must understand.
local function check_header(header)
  if header.alg ~= "HS256" then
    return nil, "wrong_algorithm"
  end
  if header.crit ~= nil then
    return nil, "bad_token"
  end
  return true
end

-- Compares the signature with the HMAC of `signed`, in constant time, on
-- the encoded form so that no other spelling of the same bytes passes.
local function check_signature(secret, signed, signature)
  local mac = broker.crypto.hmac_sha256(secret, signed)
  local expected = broker.base64url.encode(mac)
  if not broker.crypto.equals(expected, signature) then
    return nil, "bad_signature"
  end
  return true
end

-- Checks exp (required), nbf and iat against the current time.
local function check_times(claims, now)
  local exp, nbf, iat = claims.exp, claims.nbf, claims.iat
  if not finite(exp) or not absent_or_finite(nbf)
    or not absent_or_finite(iat) then
    return nil, "bad_token"
  end

  if now - LEEWAY >= exp then
    return nil, "expired"
  end
  if (nbf and nbf > now + LEEWAY) or (iat and iat > now + LEEWAY) then
    return nil, "not_yet_valid"
  end
  return true
end

local function has_audience(aud, wanted)
  if type(aud) == "string" then
    return aud == wanted
  end
  if type(aud) ~= "table" then
    return false
  end
  for _, value in ipairs(aud) do
    if value == wanted then
      return true
    end
  end
  return false
end

-- Checks iss and aud when the environment asks for them.
local function check_issuer_audience(claims)
  local issuer = env("AUTHKIT_JWT_ISSUER")
  if issuer and claims.iss ~= issuer then
    return nil, "wrong_issuer"
  end
  local audience = env("AUTHKIT_JWT_AUDIENCE")
  if audience and not has_audience(claims.aud, audience) then
    return nil, "wrong_audience"
  end
  return true
end

-- Builds the `who` table from verified claims.
local function who_from_claims(claims, source)
  local sub = claims.sub
  if sub == nil then
    return nil, "missing_subject"
  end
  if not valid_id(sub) then
    return nil, "bad_subject"
  end

  local type_claim = env("AUTHKIT_JWT_TYPE_CLAIM") or DEFAULT_TYPE_CLAIM
  local identity_type = claims[type_claim]
  if identity_type == broker.json.null then
    identity_type = nil -- JSON null: no type given
  end
  if identity_type ~= nil and not IDENTITY_TYPES[identity_type] then
    return nil, "bad_identity_type"
  end

  return {
    id = sub,
    identity_type = identity_type,
    claims = claims,
    source = source,
  }
end

-- Verifies `token` and returns its claims, or nil and a reason. The order
-- matters: nothing in the payload is read before the signature holds.
local function verify_token(token, secret)
  local h64, p64, s64 = split_token(token)
  if not h64 then
    return nil, "bad_token"
  end
  local header = decode_segment(h64)
  if not header then
    return nil, "bad_token"
  end

  local ok, reason = check_header(header)
  if ok then
    ok, reason = check_signature(secret, h64 .. "." .. p64, s64)
  end
  if not ok then
    return nil, reason
  end

  local claims = decode_segment(p64)
  if not claims then
    return nil, "bad_token"
  end
  ok, reason = check_times(claims, broker.now())
  if ok then
    ok, reason = check_issuer_audience(claims)
  end
  if not ok then
    return nil, reason
  end
  return claims
end

local function who_from_token(token, secret, source)
  local claims, reason = verify_token(token, secret)
  if not claims then
    return nil, reason
  end
  return who_from_claims(claims, source)
end

------------------------------------------------------------------------
-- Sources. Each returns who, or nil and a reason, or nothing when the
-- request does not carry its kind of credential.

local function from_bearer(req, secret)
  local value = single_header(req, "authorization")
  if value == false then
    return nil, "ambiguous_credentials"
  end
  if not value then
    return
  end
  local scheme, rest = value:match("^%s*(%S+)%s*(.-)%s*$")
  if not scheme or scheme:lower() ~= "bearer" then
    return -- another scheme: not ours
  end
  return who_from_token(rest, secret, "jwt") -- "" is a bad_token too
end

-- The value of cookie `name` in a Cookie header (RFC 6265 section 5.4):
-- pairs split on ";", blanks trimmed, optional double quotes removed. The
-- first pair with that name wins; browsers send the most specific first.
local function find_cookie(header, name)
  for pair in header:gmatch("[^;]+") do
    local key, value = pair:match("^%s*([^=]-)%s*=%s*(.-)%s*$")
    if key == name then
      return (value:gsub('^"(.*)"$', "%1"))
    end
  end
  return nil
end

-- Cookie headers, joined: HTTP/2 clients may send one per cookie.
local function cookie_header(req)
  local value = (req.headers or {}).cookie
  if type(value) == "table" then
    return table.concat(value, "; ")
  end
  if type(value) ~= "string" then
    return nil
  end
  return value
end

local function from_cookie(req, secret)
  local header = cookie_header(req)
  if not header then
    return
  end
  local name = env("AUTHKIT_SESSION_COOKIE") or DEFAULT_COOKIE
  local token = find_cookie(header, name)
  if not token or token == "" then
    return -- absent, or emptied by a log-out
  end
  return who_from_token(token, secret, "cookie")
end

local function from_header(req)
  local id = single_header(req, "x-user-id")
  if id == false then
    return nil, "ambiguous_credentials"
  end
  if not id then
    return
  end
  if not valid_id(id) then
    return nil, "bad_identity"
  end
  return { id = id, claims = {}, source = "header" }
end

------------------------------------------------------------------------
-- Hooks

-- Called by the host for every /api request; see the top of this file.
function M.resolve_identity(req)
  if type(req) ~= "table" then
    error("resolve_identity: req must be a table", 2)
  end
  local secret = env("AUTHKIT_JWT_SECRET")

  if secret then
    local who, reason = from_bearer(req, secret)
    if who or reason then
      return who, reason
    end
    who, reason = from_cookie(req, secret)
    if who or reason then
      return who, reason
    end
  end

  if header_identity_allowed() then
    local who, reason = from_header(req)
    if who or reason then
      return who, reason
    end
  end
  return nil, "missing_credentials"
end

-- Called by the host when the generation loads.
function M.init()
  if header_identity_allowed() then
    broker.log.warn("10-identity: HEADER IDENTITY IS ON: any client can "
      .. "be any user by sending an x-user-id header. Development "
      .. "only: never expose this broker to untrusted clients.")
  end
  local secret = env("AUTHKIT_JWT_SECRET")
  if secret and #secret < 32 then
    broker.log.warn("10-identity: AUTHKIT_JWT_SECRET is shorter than "
      .. "32 bytes: HS256 tokens signed with it can be brute-forced")
  end
end

-- Called before a generation goes live: refuses a set-up that can only
-- deny every request.
function M.selftest()
  if not env("AUTHKIT_JWT_SECRET") and not header_identity_allowed() then
    return nil, "AUTHKIT_JWT_SECRET is not set and header identity is "
      .. "off: every request will be denied"
  end
  return true
end

return M
