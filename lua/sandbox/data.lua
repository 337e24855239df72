-- The sandbox's generated integration catalogue: the same list feeds
-- POST /v1/authkit (integration rows), GET /v1/available-connectors
-- (connector rows) and the connections created through /sandbox.
--
--   local data = require "sandbox.data"
--   local cat = data.catalogue(247)     --> list of integrations
--   cat.by_platform.gmail               --> one integration, or nil
--   data.authkit_row(cat[1], "test")    --> row table, ready to encode
--   data.connector_row(cat[1])          --> row table, ready to encode
--
-- Everything here is deterministic: the n-th integration is the same on
-- every run, whatever the catalogue's size.

local broker = require "broker"

local M = {}

-- Display name, platform slug, category, whether it connects with OAuth.
local KNOWN = {
  { "Gmail", "gmail", "Communication", true },
  { "Slack", "slack", "Communication", true },
  { "HubSpot", "hubspot", "CRM", true },
  { "Salesforce", "salesforce", "CRM", true },
  { "Google Calendar", "google-calendar", "Productivity", true },
  { "Google Drive", "google-drive", "File Storage", true },
  { "Google Sheets", "google-sheets", "Productivity", true },
  { "Notion", "notion", "Productivity", true },
  { "Stripe", "stripe", "Payments", false },
  { "Shopify", "shopify", "E-commerce", true },
  { "GitHub", "github", "Developer Tools", true },
  { "Linear", "linear", "Project Management", true },
  { "Jira", "jira", "Project Management", true },
  { "Asana", "asana", "Project Management", true },
  { "Airtable", "airtable", "Database", true },
  { "Zendesk", "zendesk", "Customer Support", true },
  { "Intercom", "intercom", "Customer Support", true },
  { "Mailchimp", "mailchimp", "Marketing", true },
  { "SendGrid", "sendgrid", "Communication", false },
  { "Twilio", "twilio", "Communication", false },
  { "Zoom", "zoom", "Communication", true },
  { "Dropbox", "dropbox", "File Storage", true },
  { "QuickBooks", "quickbooks", "Accounting", true },
  { "Xero", "xero", "Accounting", true },
  { "Pipedrive", "pipedrive", "CRM", true },
  { "ActiveCampaign", "active-campaign", "Marketing", false },
  { "Microsoft Teams", "microsoft-teams", "Communication", true },
  { "Outlook", "outlook", "Communication", true },
  { "Resend", "resend", "Communication", false },
  { "ElevenLabs", "elevenlabs", "AI", false },
}

-- Categories handed out in turn to the generated integrations.
local CATEGORIES = {
  "AI", "CRM", "Communication", "Marketing", "Productivity",
  "Developer Tools", "Accounting", "E-commerce",
}

local FIRST_ID = 41566          -- integration i gets id FIRST_ID + i
local FIRST_DEF_ID = 30         -- and connection definition 30 + i
local DAY_MS = 86400000
local EPOCH_MS = 1735689600000  -- 2025-01-01T00:00:00Z, for activatedAt

local IMAGE_BASE = "https://assets.picaos.com/connectors/"

-- Returns the name, platform, category and OAuth flag of integration i.
local function identify(i)
  local known = KNOWN[i]
  if known then
    return known[1], known[2], known[3], known[4]
  end
  return "Integration " .. i, "integration-" .. i,
    CATEGORIES[(i - 1) % #CATEGORIES + 1], i % 2 == 0
end

-- Returns integration i (1-based) as a plain descriptor table.
local function integration(i)
  local name, platform, category, oauth = identify(i)
  return {
    index = i,
    id = FIRST_ID + i,
    def_id = FIRST_DEF_ID + i,
    name = name,
    platform = platform,
    category = category,
    oauth = oauth,
    image = IMAGE_BASE .. platform .. ".svg",
    description = "Connect " .. name .. " accounts through Pica.",
    tools = 5 + (i * 37) % 120,
    activated_ms = EPOCH_MS + i * DAY_MS,
  }
end

-- Returns a list of `n` integrations, with `by_platform` mapping each
-- platform slug to its integration. The caller owns the result.
function M.catalogue(n)
  if math.type(n) ~= "integer" or n < 0 then
    error("sandbox.data: integrations must be an integer >= 0", 2)
  end
  local list = { by_platform = {} }
  for i = 1, n do
    local it = integration(i)
    list[i] = it
    list.by_platform[it.platform] = it
  end
  return list
end

-- Returns the POST /v1/authkit row of integration `it` in environment
-- `env` ("test" or "live").
function M.authkit_row(it, env)
  local null = broker.json.null
  return {
    id = it.id,
    connectionDefId = it.def_id,
    type = "api",
    title = it.name,
    image = it.image,
    environment = env,
    tags = broker.json.array({}),
    active = true,
    activatedAt = it.activated_ms,
    createdAt = it.activated_ms,
    secretId = null,
    clientSecretDisplay = null,
    clientIdDisplay = null,
    scopes = null,
    guide = null,
  }
end

-- Returns the connector key that Pica gives platform `platform`.
function M.connector_key(platform)
  return "api::" .. platform .. "::v1"
end

-- Returns the GET /v1/available-connectors row of integration `it`.
function M.connector_row(it)
  return {
    id = it.def_id,
    name = it.name,
    key = M.connector_key(it.platform),
    platform = it.platform,
    platformVersion = "v1",
    status = "generally_available",
    description = it.description,
    category = it.category,
    image = it.image,
    tags = broker.json.array({ it.category:lower() }),
    oauth = it.oauth,
    tools = it.tools,
    version = "1.0.0",
    active = true,
  }
end

return M
