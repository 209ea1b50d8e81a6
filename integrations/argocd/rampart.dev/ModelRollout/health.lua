-- Argo CD health for rampart.dev ModelRollout. Argo CD runs this with gopher-lua and no string library, so it uses
-- only base Lua. Order: a spec the controller has not seen yet is Progressing; an ended rollout is Healthy
-- (promoted) or Degraded (rolled back, failed); a pause is Suspended; otherwise the kstatus conditions (Stalled,
-- Ready) decide, and anything still moving is Progressing.
local hs = { status = "Progressing", message = "Waiting for the Rampart controller" }

local function condition(status, kind)
  if status.conditions == nil then
    return nil
  end
  for _, c in ipairs(status.conditions) do
    if c.type == kind then
      return c
    end
  end
  return nil
end

local function weight(status)
  local text = "canary weight " .. tostring(status.canaryWeight or 0) .. "%"
  local steps = 0
  if obj.spec ~= nil and obj.spec.steps ~= nil then
    steps = #obj.spec.steps
  end
  if status.currentStep ~= nil and status.currentStep < steps then
    text = text .. ", step " .. tostring(status.currentStep + 1) .. " of " .. tostring(steps)
  end
  return text
end

if obj.status == nil then
  return hs
end
local status = obj.status
local generation = obj.metadata.generation
if generation ~= nil and (status.observedGeneration == nil or status.observedGeneration < generation) then
  hs.message = "Waiting for the controller to observe generation " .. tostring(generation)
  return hs
end

local phase = status.phase or "Pending"
local message = status.message or phase

if phase == "Succeeded" then
  hs.status = "Healthy"
  hs.message = message
  return hs
end
if phase == "RolledBack" or phase == "Failed" then
  hs.status = "Degraded"
  hs.message = phase .. ": " .. message
  return hs
end

-- A pause waits for a person on purpose (Rampart also reports it as Stalled): Suspended, not Degraded.
if phase == "Paused" then
  hs.status = "Suspended"
  hs.message = "Paused (" .. weight(status) .. "): " .. message
  return hs
end

local stalled = condition(status, "Stalled")
if stalled ~= nil and stalled.status == "True" then
  hs.status = "Degraded"
  hs.message = "Stalled: " .. (stalled.message or stalled.reason or message)
  return hs
end

local ready = condition(status, "Ready")
if ready ~= nil and ready.status == "True" and phase ~= "RollingBack" then
  hs.status = "Healthy"
  hs.message = ready.message or message
  return hs
end

hs.status = "Progressing"
hs.message = phase .. " (" .. weight(status) .. "): " .. message
return hs
