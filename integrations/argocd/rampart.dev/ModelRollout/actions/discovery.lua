-- Argo CD resource actions for a ModelRollout: promote, abort and retry write the same annotations as `rampart
-- promote|abort|retry`; each is offered only in the phases where the controller acts on it.
local actions = {}
local phase = "Pending"
if obj.status ~= nil and obj.status.phase ~= nil then
  phase = obj.status.phase
end
local ended = phase == "Succeeded" or phase == "RolledBack" or phase == "Failed"

actions["promote"] = { ["disabled"] = ended or phase == "RollingBack" or phase == "Promoting" or phase == "Baking" }
actions["abort"] = { ["disabled"] = ended or phase == "RollingBack" }
actions["retry"] = { ["disabled"] = not ended }
return actions
