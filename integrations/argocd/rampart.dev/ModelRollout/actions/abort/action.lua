-- Abort: canary weight 0 at once, then roll back (the controller reads rampart.dev/abort).
if obj.metadata.annotations == nil then
  obj.metadata.annotations = {}
end
obj.metadata.annotations["rampart.dev/abort"] = os.date("!%Y-%m-%dT%XZ")
return obj
