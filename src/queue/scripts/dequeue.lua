-- dequeue: KEYS + the call key; ARGV now, n, lease_ms, token_base, orders,
-- promote_limit. `orders` holds 3 digits (priority indexes) per slot, or 3
-- digits used for every slot. Promotes due delayed/retry tasks, then leases
-- up to n tasks, each marked unstarted until the worker confirms (started.lua).
-- Returns 4 fields per task (see `emit`). A lease is written as the task's
-- K_ACTIVE overlay; the record's base is not rewritten. The call key (`token_base`, chosen by the caller)
-- remembers what this call leased and until when, for a lease length, so a
-- repeat after a lost reply returns the same leases instead of leasing more.
local K_CALL = KEYS[20]
local now = clock(ARGV[1])
local n = tonumber(ARGV[2])
local lease_ms = tonumber(ARGV[3])
local token_base = ARGV[4]
local orders = ARGV[5]
local limit = tonumber(ARGV[6])

local prev = redis.call('GET', K_CALL)
if prev then
  local _, ids = call_record(prev)
  local out = {}
  local metas = redis.call('HMGET', K_META, unpack(ids))
  local datas = redis.call('HMGET', K_DATA, unpack(ids))
  local actives = redis.call('HMGET', K_ACTIVE, unpack(ids))
  for i, id in ipairs(ids) do
    if metas[i] and datas[i] and actives[i] then
      local token = token_base .. ':' .. i
      if string.sub(actives[i], 1, #token + 1) == token .. '|' then
        emit(out, id, token, metas[i], datas[i])
      end
    end
  end
  return out
end

local function promote(zkey)
  local ids = redis.call('ZRANGEBYSCORE', zkey, '-inf', now, 'LIMIT', 0, limit)
  if #ids == 0 then
    return
  end
  redis.call('ZREM', zkey, unpack(ids))
  for _, id in ipairs(ids) do
    local m = load(id)
    if m then
      m.state = 'pending'
      m.run_at = nil
      m.updated = now
      save(id, m)
      redis.call('RPUSH', K_LISTS[m.priority + 1], id)
    end
  end
end
promote(K_SCHED)
promote(K_RETRY)

-- A paused or drained priority is skipped for the rest of the call.
local skip = {}
local live = 0
for p = 1, 3 do
  if redis.call('SISMEMBER', K_PAUSED, PRIO_NAMES[p]) == 1 then
    skip[p] = true
  else
    live = live + 1
  end
end

-- Up to `want` ids from the head of a list: one LPOP with a count (Redis
-- 6.2+; one LPOP per id before it).
local function pop(key, want, ids)
  local got = redis.pcall('LPOP', key, want)
  if type(got) == 'table' and got.err then
    for _ = 1, want do
      local one = redis.call('LPOP', key)
      if not one then
        return
      end
      ids[#ids + 1] = one
    end
    return
  end
  if got then
    for _, id in ipairs(got) do
      ids[#ids + 1] = id
    end
  end
end

-- Each remaining slot wants the first priority of its order that is not
-- skipped; each priority's wants are popped at once (a call per priority, not
-- per slot). A list that falls short is empty: it is skipped and the
-- remaining slots choose again, by the orders of the slots from the first
-- unfilled one on (not exactly those that fell short). Orders are
-- independent weighted draws, so a slot's next choice after a skipped
-- priority is distributed as a fresh slot's first choice: the shares are
-- those of slot-by-slot choosing, strict mode's exactly, and the batch is
-- grouped by priority. At most four rounds.
local ids = {}
while #ids < n and live > 0 do
  local want = { 0, 0, 0 }
  for slot = #ids, n - 1 do
    local off = 0
    if #orders > 3 then
      off = slot * 3
    end
    for j = 1, 3 do
      local p = string.byte(orders, off + j) - 47
      if not skip[p] then
        want[p] = want[p] + 1
        break
      end
    end
  end
  local short = false
  for p = 1, 3 do
    if want[p] > 0 then
      local before = #ids
      pop(K_LISTS[p], want[p], ids)
      if #ids - before < want[p] then
        skip[p] = true
        live = live - 1
        short = true
      end
    end
  end
  if not short then
    break
  end
end

local out = {}
if #ids == 0 then
  return out
end
local metas = redis.call('HMGET', K_META, unpack(ids))
local datas = redis.call('HMGET', K_DATA, unpack(ids))
local hset = {}
local zadd = {}
local started = {}
-- Converted once: a Lua number becomes a string at every use.
local deadline = tostring(now + lease_ms)
local since = '|' .. tostring(now)
for i, id in ipairs(ids) do
  -- A list entry without a record (deleted by hand) is dropped, not leased.
  if metas[i] and datas[i] then
    local token = token_base .. ':' .. i
    hset[#hset + 1] = id
    hset[#hset + 1] = token .. since
    zadd[#zadd + 1] = deadline
    zadd[#zadd + 1] = id
    started[#started + 1] = id
    emit(out, id, token, metas[i], datas[i])
  end
end
if #hset > 0 then
  redis.call('HSET', K_ACTIVE, unpack(hset))
  redis.call('ZADD', K_LEASE, unpack(zadd))
  redis.call('SADD', K_UNSTARTED, unpack(started))
  redis.call('SET', K_CALL, cmsgpack.pack({ now + lease_ms, ids }), 'PX', lease_ms)
end
return out
