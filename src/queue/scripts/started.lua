-- started: KEYS + the call key; ARGV token_base. The worker confirms it is
-- about to run the tasks one dequeue call leased to it. Returns per leased
-- position 1 (confirmed: an expiry now counts as an attempt) or 0 (no
-- longer this call's lease: do not run it). Repeating it changes nothing.
-- A task is still this call's lease while its lease score is the deadline
-- the call set: every end of a lease (ack, fail, requeue, reap) removes the
-- score, and a later lease of the task ends later. So no record is read.
local K_CALL = KEYS[20]
local base = ARGV[1]
local prev = redis.call('GET', K_CALL)
if not prev then
  return {}
end
local deadline, ids = call_record(prev)
local out = {}
local ok = {}
if deadline then
  local scores = lease_scores(ids)
  for i, id in ipairs(ids) do
    out[i] = 0
    if scores[i] and tonumber(scores[i]) == deadline then
      out[i] = 1
      ok[#ok + 1] = id
    end
  end
else
  -- A call key from before the deadline was kept in it: check the records.
  local records = load_many(ids)
  for i, id in ipairs(ids) do
    out[i] = 0
    local m = records[i]
    if m then
      if m.state == 'active' and m.token == base .. ':' .. i then
        out[i] = 1
        ok[#ok + 1] = id
      end
    end
  end
end
if #ok > 0 then
  redis.call('SREM', K_UNSTARTED, unpack(ok))
end
return out
