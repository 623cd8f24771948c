-- started: KEYS + the call key; ARGV token_base. The worker confirms it is
-- about to run the tasks one dequeue call leased to it. Returns per leased
-- position 1 (confirmed: an expiry now counts as an attempt) or 0 (no
-- longer this call's lease: do not run it). Repeating it changes nothing.
local K_CALL = KEYS[18]
local base = ARGV[1]
local prev = redis.call('GET', K_CALL)
if not prev then
  return {}
end
local ids = cmsgpack.unpack(prev)
local metas = redis.call('HMGET', K_META, unpack(ids))
local out = {}
local ok = {}
for i, id in ipairs(ids) do
  out[i] = 0
  if metas[i] then
    local m = unpack_meta(metas[i])
    if m.state == 'active' and m.token == base .. ':' .. i then
      out[i] = 1
      ok[#ok + 1] = id
    end
  end
end
if #ok > 0 then
  redis.call('SREM', K_UNSTARTED, unpack(ok))
end
return out
