-- Shared prelude, prepended to every queue script (see scripts.rs).
-- Every key is passed in KEYS, in the order of `Keys::all`, and all share one
-- hash tag, so the scripts run unchanged on Redis Cluster. Time is ARGV-supplied
-- (`now` in ms from the caller's Clock), never read from the server.
local K_LISTS = { KEYS[1], KEYS[2], KEYS[3] }
local K_SCHED = KEYS[4]
local K_RETRY = KEYS[5]
local K_LEASE = KEYS[6]
local K_META = KEYS[7]
local K_DATA = KEYS[8]
local K_DONE = KEYS[9]
local K_DEAD = KEYS[10]
local K_UNIQ = KEYS[11]
local K_UNIQEXP = KEYS[12]
local K_PAUSED = KEYS[13]
local K_WAKE = KEYS[14]
local K_GUARDS = KEYS[15]
local K_COUNTERS = KEYS[16]

local PRIO_NAMES = { 'critical', 'default', 'low' }

-- Records are stored as MessagePack: packing and unpacking is cheaper than
-- JSON on the hot path; `get` converts a record to JSON for the client.
local pack_meta = cmsgpack.pack
local unpack_meta = cmsgpack.unpack

local function load(id)
  local raw = redis.call('HGET', K_META, id)
  if not raw then
    return nil
  end
  return unpack_meta(raw)
end

local function save(id, m)
  redis.call('HSET', K_META, id, pack_meta(m))
end

-- The lock is only released by the task holding it, so a newer holder
-- (after the TTL let someone else in) keeps its lock.
local function release_unique(id, m)
  if m.unique then
    if redis.call('HGET', K_UNIQ, m.unique) == id then
      redis.call('HDEL', K_UNIQ, m.unique)
      redis.call('ZREM', K_UNIQEXP, m.unique)
    end
  end
end

local function delete_tasks(ids)
  if #ids > 0 then
    redis.call('HDEL', K_META, unpack(ids))
    redis.call('HDEL', K_DATA, unpack(ids))
  end
end

local function to_dead(id, m, now)
  m.state = 'dead'
  m.token = nil
  m.run_at = nil
  m.updated = now
  m.finished = now
  release_unique(id, m)
  redis.call('ZADD', K_DEAD, now, id)
  redis.call('HINCRBY', K_COUNTERS, 'dead', 1)
  save(id, m)
end

local function backoff_ms(attempt, base, factor, cap, jitter, r)
  local d = base * (factor ^ (attempt - 1))
  if d > cap then
    d = cap
  end
  if jitter > 0 then
    d = d + d * jitter * (2 * r - 1)
  end
  if d < 0 then
    d = 0
  end
  return math.floor(d)
end

-- Attempt `m.attempt` of an active task failed: schedule a retry (keeping the
-- priority, which lives in the record) or move it to dead. Returns the retry
-- time in ms, or -1 when the task is dead.
local function fail_task(id, m, now, err, permanent, bo, r)
  redis.call('ZREM', K_LEASE, id)
  m.last_error = err
  local h = m.history or {}
  h[#h + 1] = { attempt = m.attempt, error = err, at = now }
  m.history = h
  redis.call('HINCRBY', K_COUNTERS, 'failed', 1)
  if permanent or m.attempt > m.max_retries then
    to_dead(id, m, now)
    return -1
  end
  local at = now + backoff_ms(m.attempt, bo.base, bo.factor, bo.cap, bo.jitter, r)
  m.state = 'retry'
  m.token = nil
  m.run_at = at
  m.updated = now
  redis.call('ZADD', K_RETRY, at, id)
  save(id, m)
  return at
end

-- Runs the body only if the named guard has lapsed (in caller time), so a
-- step called by every worker does its work once per interval.
local function take_guard(name, now, interval)
  local until_ms = tonumber(redis.call('HGET', K_GUARDS, name) or '0')
  if until_ms > now then
    return false
  end
  redis.call('HSET', K_GUARDS, name, now + interval)
  return true
end
