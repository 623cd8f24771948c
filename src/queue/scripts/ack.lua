-- ack: ARGV now, retention_ms, n, then per task 4 fields: id, token, result
-- ('' = none, otherwise '=' followed by the result), unique key ('' = none;
-- released only if this task still holds it). Returns per task 1
-- (completed, also when this lease already completed it: a repeat after a
-- lost reply) or 0 (stale token: the lease was lost, nothing changed).
-- The payload goes at once; the record stays for the retention, completed by
-- its K_FIN overlay (see `overlay` in common.lua) rather than rewritten. Each
-- call also removes up to twice as many expired completed tasks as it
-- completes, so cleanup keeps pace with any completion rate.
local now = clock(ARGV[1])
local retention = tonumber(ARGV[2])
local n = tonumber(ARGV[3])
local ids = {}
for i = 0, n - 1 do
  ids[i + 1] = ARGV[4 + i * 4]
end
local actives = redis.call('HMGET', K_ACTIVE, unpack(ids))
local finished = '|' .. tostring(now) .. '|'
local expires = tostring(now + retention)
local out = {}
local fin = {}
local zrem = {}
local zadd = {}
local gone = {}
local seen = {}
-- Completes `id`: `overlay` is its `fin` entry, or nil when the record was
-- saved whole (a lease of the earlier layout).
local function complete(id, overlay)
  zrem[#zrem + 1] = id
  if retention > 0 then
    if overlay then
      fin[#fin + 1] = id
      fin[#fin + 1] = overlay
    end
    zadd[#zadd + 1] = expires
    zadd[#zadd + 1] = id
  else
    gone[#gone + 1] = id
  end
end
for i = 1, n do
  local id = ids[i]
  local token = ARGV[4 + (i - 1) * 4 + 1]
  local res = ARGV[4 + (i - 1) * 4 + 2]
  local unique = ARGV[4 + (i - 1) * 4 + 3]
  local a = actives[i]
  if seen[id] == token then
    out[i] = 1
  elseif a and not seen[id] and string.sub(a, 1, #token + 1) == token .. '|' then
    seen[id] = token
    local started = string.sub(a, #token + 2)
    if unique ~= '' then
      release_unique(id, { unique = unique })
    end
    complete(id, token .. '|' .. started .. finished .. res)
    out[i] = 1
  elseif a then
    -- Leased again since (this lease expired): stale.
    out[i] = 0
  else
    -- No lease: this one completed it already (a repeat), or it ended
    -- otherwise (stale).
    local f = redis.call('HGET', K_FIN, id)
    if f and string.sub(f, 1, #token + 1) == token .. '|' then
      out[i] = 1
    else
      out[i] = 0
      -- A lease an earlier version wrote into the record itself.
      local m = load(id)
      if m and not seen[id] and m.state == 'active' and m.token == token then
        seen[id] = token
        release_unique(id, m)
        m.state = 'completed'
        m.token = nil
        m.fin = token
        m.fin_op = 'a'
        m.updated = now
        m.finished = now
        if res ~= '' then
          m.result = string.sub(res, 2)
        end
        -- Saved even without retention: the batch's deletes below remove it.
        save(id, m)
        complete(id, nil)
        out[i] = 1
      elseif m and m.fin == token and m.fin_op == 'a' then
        out[i] = 1
      end
    end
  end
end
if #zrem > 0 then
  redis.call('HDEL', K_ACTIVE, unpack(zrem))
  redis.call('ZREM', K_LEASE, unpack(zrem))
  redis.call('SREM', K_UNSTARTED, unpack(zrem))
  redis.call('HINCRBY', K_COUNTERS, 'completed', #zrem)
  redis.call('HDEL', K_DATA, unpack(zrem))
end
if #fin > 0 then
  redis.call('HSET', K_FIN, unpack(fin))
end
if #zadd > 0 then
  redis.call('ZADD', K_DONE, unpack(zadd))
end
delete_tasks(gone)
if #zrem > 0 then
  local expired = redis.call('ZRANGEBYSCORE', K_DONE, '-inf', now, 'LIMIT', 0, 2 * #zrem)
  if #expired > 0 then
    redis.call('ZREM', K_DONE, unpack(expired))
    delete_tasks(expired)
  end
end
return out
