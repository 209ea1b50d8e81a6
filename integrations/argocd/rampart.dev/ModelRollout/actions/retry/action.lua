-- Retry: start a finished rollout again from the first step. A new value each time (the controller acts once per
-- distinct value); earlier abort and promote requests are cleared, as `rampart retry` does.
if obj.metadata.annotations == nil then
  obj.metadata.annotations = {}
end
obj.metadata.annotations["rampart.dev/retry"] = os.date("!%Y-%m-%dT%XZ")
obj.metadata.annotations["rampart.dev/abort"] = nil
obj.metadata.annotations["rampart.dev/promote"] = nil
return obj
