-- 30-plan-allowlist.lua: which integrations an identity may connect,
-- by plan.  Free accounts get Gmail and Slack; "pro" gets everything.
--
-- The plan comes from the caller's token (a `plan` claim, read by the
-- shipped identity plugin into who.claims); change `plan_of` to ask
-- your own API or database instead.

local FREE = {gmail = true, slack = true}

local function plan_of(who)
  return who.claims and who.claims.plan or "free"
end

-- Token rows name the integration in `title`, connector rows in
-- `platform`/`name`.
local function slug(row)
  local s = row.platform or row.title or row.name or ""
  return (s:lower():gsub("[^%w]", ""))
end

return {
  filter_integrations = function(rows, who, req)
    if plan_of(who) == "pro" then
      return rows
    end
    local out = {}
    for _, row in ipairs(rows) do
      if FREE[slug(row)] then
        out[#out + 1] = row
      end
    end
    return out
  end,

  selftest = function()
    local rows = {{title = "Gmail"}, {title = "HubSpot"}}
    local kept = #rows
    for _, row in ipairs(rows) do
      if not FREE[slug(row)] then
        kept = kept - 1
      end
    end
    assert(kept == 1, "the free plan should keep Gmail only here")
  end,
}
