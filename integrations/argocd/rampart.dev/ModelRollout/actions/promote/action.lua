-- Promote: skip the remaining steps and promote the candidate (the controller reads rampart.dev/promote).
if obj.metadata.annotations == nil then
  obj.metadata.annotations = {}
end
obj.metadata.annotations["rampart.dev/promote"] = os.date("!%Y-%m-%dT%XZ")
return obj
