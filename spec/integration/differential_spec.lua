-- The broker's token answer against the official @picahq/authkit-token
-- SDK's create(), both talking to the same sandbox Pica.
local h = require "harness"
local cjson = require "cjson.safe"

local SDK_DIR = h.ROOT .. "/spec/differential"

local function sdk_create(sandbox, identity, itype)
  local p = io.popen(string.format("cd %s && node sdk-token.js --base-url "
    .. "%s --secret sk_test_1_spec --identity %s --identity-type %s "
    .. "2>/dev/null", h.q(SDK_DIR), h.q(sandbox.url), h.q(identity),
    h.q(itype)))
  local out = p:read("a")
  p:close()
  return assert(cjson.decode(out), "the SDK printed: " .. out)
end

-- The fields create() answers, requestId aside (it differs per call).
local function comparable(answer)
  local copy = {}
  for k, v in pairs(answer) do
    copy[k] = v
  end
  assert.is_number(copy.requestId)
  copy.requestId = nil
  return copy
end

local function check_same(sandbox_flags)
  local sandbox = h.sandbox(sandbox_flags)
  local broker = h.broker({pica = sandbox})
  local ours = h.request("POST", broker.url .. "/api/authkit/token",
                         {headers = {["x-user-id"] = "alice"}})
  assert.equal(200, ours.status)
  local theirs = sdk_create(sandbox, "alice", "user")
  assert.same(comparable(theirs), comparable(ours.json))
  return ours.json, theirs
end

describe("the token answer equals the official SDK's", function()
  setup(function()
    local f = io.open(SDK_DIR .. "/node_modules/@picahq/authkit-token/"
                      .. "package.json")
    assert(f, "run `npm ci --prefix spec/differential` first")
    f:close()
  end)

  teardown(function() h.stop_all() end)

  it("with 247 integrations (three pages merged)", function()
    local ours = check_same()
    assert.equal(247, #ours.rows)
  end)

  it("with 60 integrations (one page, relayed as Pica sent it)", function()
    local ours = check_same("--integrations 60")
    assert.equal(60, #ours.rows)
  end)

  it("with no integrations at all", function()
    local ours = check_same("--integrations 0")
    assert.equal(0, #ours.rows)
  end)
end)
