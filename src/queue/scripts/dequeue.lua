-- dequeue: KEYS + the call key; ARGV now, n, lease_ms, token_base, orders,
-- promote_limit. `orders` holds 3 digits (priority indexes) per slot, or 3
-- digits used for every slot. Promotes due delayed/retry tasks, then leases
-- up to n tasks, each marked unstarted until the worker confirms (started.lua).
-- Returns 7 fields per task: id, token, attempt, priority, timeout_ms,
-- max_retries, data. The call key (`token_base`, chosen by the caller)
-- remembers what this call leased and until when, for a lease length, so a
-- repeat after a lost reply returns the same leases instead of leasing more.
local K_CALL = KEYS[18]
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
  for i, id in ipairs(ids) do
    if metas[i] and datas[i] then
      local m = unpack_meta(metas[i])
      if m.state == 'active' and m.token == token_base .. ':' .. i then
        emit(out, id, m, datas[i])
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

-- With one priority left every remaining slot takes from it, whatever its
-- order says: one LPOP with a count (Redis 6.2+; one LPOP per slot before).
local function pop_rest(ids, slot)
  local p = 1
  while skip[p] do
    p = p + 1
  end
  local want = n - slot
  local got = redis.pcall('LPOP', K_LISTS[p], want)
  if type(got) == 'table' and got.err then
    for _ = 1, want do
      local one = redis.call('LPOP', K_LISTS[p])
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

local ids = {}
local slot = 0
while slot < n and live > 0 do
  if live == 1 then
    pop_rest(ids, slot)
    break
  end
  local off = 0
  if #orders > 3 then
    off = slot * 3
  end
  local got = nil
  for j = 1, 3 do
    local p = tonumber(string.sub(orders, off + j, off + j)) + 1
    if not skip[p] then
      got = redis.call('LPOP', K_LISTS[p])
      if got then
        break
      end
      skip[p] = true
      live = live - 1
    end
  end
  if not got then
    break
  end
  ids[#ids + 1] = got
  slot = slot + 1
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
local deadline = now + lease_ms
for i, id in ipairs(ids) do
  -- A list entry without a record (deleted by hand) is dropped, not leased.
  if metas[i] and datas[i] then
    local m = unpack_meta(metas[i])
    m.state = 'active'
    m.attempt = m.attempt + 1
    m.token = token_base .. ':' .. i
    m.started = now
    m.updated = now
    hset[#hset + 1] = id
    hset[#hset + 1] = pack_meta(m)
    zadd[#zadd + 1] = deadline
    zadd[#zadd + 1] = id
    started[#started + 1] = id
    emit(out, id, m, datas[i])
  end
end
if #hset > 0 then
  redis.call('HSET', K_META, unpack(hset))
  redis.call('ZADD', K_LEASE, unpack(zadd))
  redis.call('SADD', K_UNSTARTED, unpack(started))
  redis.call('SET', K_CALL, cmsgpack.pack({ deadline, ids }), 'PX', lease_ms)
end
return out
