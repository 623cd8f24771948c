-- Shared prelude, prepended to every queue script (see scripts.rs).
-- Every key is passed in KEYS, in the order of `Keys::all`, and all share one
-- hash tag, so the scripts run unchanged on Redis Cluster. Time is Redis TIME
-- (see `clock`), so every caller shares one clock whatever its host's says.
-- Every script is safe to repeat after a lost reply: a repeat has the effect
-- of one call (enqueue by task id, dequeue by call token, the rest by lease
-- token, see `m.fin`).
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
-- Ids leased by a dequeue whose handler has not been confirmed started:
-- if such a lease expires, no handler ran, so no attempt is charged.
local K_UNSTARTED = KEYS[17]
-- The hot path's overlays on a record (see `overlay`): a lease and a
-- completion are written here as short strings instead of unpacking and
-- repacking the MessagePack record, which cost Redis more than every command
-- of a dequeue and an ack together.
local K_ACTIVE = KEYS[18]
local K_FIN = KEYS[19]

local PRIO_NAMES = { 'critical', 'default', 'low' }

-- Records are stored as MessagePack: packing and unpacking is cheaper than
-- JSON on the hot path; `get` converts a record to JSON for the client.
local pack_meta = cmsgpack.pack
local unpack_meta = cmsgpack.unpack

-- ARGV[1] of a timed script: '' in production (Redis TIME), or a test's
-- fake time in ms.
local function clock(arg)
  if arg and arg ~= '' then
    return tonumber(arg)
  end
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

-- A dequeue call's record (its call key): the lease deadline it set and the
-- ids it leased, in lease-token order. Written as the bare id list before
-- the deadline was kept, which lives at most one lease length.
local function call_record(raw)
  local r = cmsgpack.unpack(raw)
  if type(r[1]) == 'number' then
    return r[1], r[2]
  end
  return nil, r
end

-- Each id's lease score (its deadline) or false: ZMSCORE (Redis 6.2+), or
-- one ZSCORE per id before it.
local function lease_scores(ids)
  local scores = redis.pcall('ZMSCORE', K_LEASE, unpack(ids))
  if type(scores) == 'table' and scores.err then
    scores = {}
    for i, id in ipairs(ids) do
      scores[i] = redis.call('ZSCORE', K_LEASE, id)
    end
  end
  return scores
end

-- A record is its MessagePack base (K_META) plus at most one overlay. While
-- leased, K_ACTIVE holds 'token|started ms' and the base still
-- reads as it was before the lease (pending, the previous attempt's count);
-- once acknowledged, K_FIN holds 'token|started ms|finished ms|result' ('' or
-- '=' then the result) and the base is left as it was. `save` folds an
-- overlay into the base and removes it, so only the hot path (dequeue, ack)
-- writes overlays and every other script sees whole records through `load`.
local function overlay(m, active, fin)
  if active then
    local token, started = string.match(active, '^([^|]*)|(.*)$')
    m.state = 'active'
    m.token = token
    m.attempt = m.attempt + 1
    m.started = tonumber(started)
    m.updated = m.started
    m.run_at = nil
  elseif fin then
    local token, started, finished, res = string.match(fin, '^([^|]*)|([^|]*)|([^|]*)|(.*)$')
    m.state = 'completed'
    m.token = nil
    m.fin = token
    m.fin_op = 'a'
    m.attempt = m.attempt + 1
    m.started = tonumber(started)
    m.updated = tonumber(finished)
    m.finished = m.updated
    m.run_at = nil
    if res ~= '' then
      m.result = string.sub(res, 2)
    end
  end
  return m
end

local function load(id)
  local raw = redis.call('HGET', K_META, id)
  if not raw then
    return nil
  end
  return overlay(unpack_meta(raw), redis.call('HGET', K_ACTIVE, id), redis.call('HGET', K_FIN, id))
end

-- Whole records of `ids` (false where missing), overlays applied.
local function load_many(ids)
  local metas = redis.call('HMGET', K_META, unpack(ids))
  local actives = redis.call('HMGET', K_ACTIVE, unpack(ids))
  local fins = redis.call('HMGET', K_FIN, unpack(ids))
  local out = {}
  for i = 1, #ids do
    out[i] = metas[i] and overlay(unpack_meta(metas[i]), actives[i], fins[i])
  end
  return out
end

local function save(id, m)
  redis.call('HSET', K_META, id, pack_meta(m))
  redis.call('HDEL', K_ACTIVE, id)
  redis.call('HDEL', K_FIN, id)
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
    redis.call('HDEL', K_ACTIVE, unpack(ids))
    redis.call('HDEL', K_FIN, unpack(ids))
  end
end

-- The fields a dequeue returns per leased task: the record's base as stored
-- (MessagePack, read by the worker: unpacking it here cost more than the
-- dequeue's commands) and the task data.
local function emit(out, id, token, meta, data)
  local o = #out
  out[o + 1] = id
  out[o + 2] = token
  out[o + 3] = meta
  out[o + 4] = data
end

-- Removes dead tasks, keeping the byte count of the dead set true.
local function remove_dead(ids)
  if #ids == 0 then
    return
  end
  local bytes = 0
  for _, id in ipairs(ids) do
    bytes = bytes + redis.call('HSTRLEN', K_META, id) + redis.call('HSTRLEN', K_DATA, id)
  end
  redis.call('ZREM', K_DEAD, unpack(ids))
  redis.call('HINCRBY', K_COUNTERS, 'dead_bytes', -bytes)
  delete_tasks(ids)
end

-- Oldest first, until the dead set is within both bounds. A few per death
-- is enough to keep pace, since each death adds one.
local function trim_dead(max_count, max_bytes)
  for _ = 1, 8 do
    local n = redis.call('ZCARD', K_DEAD)
    local bytes = tonumber(redis.call('HGET', K_COUNTERS, 'dead_bytes') or '0')
    if n == 0 or (n <= max_count and bytes <= max_bytes) then
      return
    end
    remove_dead(redis.call('ZRANGE', K_DEAD, 0, 0))
  end
end

local function to_dead(id, m, now, limits)
  m.state = 'dead'
  m.token = nil
  m.run_at = nil
  m.updated = now
  m.finished = now
  release_unique(id, m)
  redis.call('ZADD', K_DEAD, now, id)
  redis.call('HINCRBY', K_COUNTERS, 'dead', 1)
  save(id, m)
  local bytes = redis.call('HSTRLEN', K_META, id) + redis.call('HSTRLEN', K_DATA, id)
  redis.call('HINCRBY', K_COUNTERS, 'dead_bytes', bytes)
  trim_dead(limits.dead_max, limits.dead_bytes)
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

-- The retry policy and dead-set bounds, from ARGV[i..i+6]: base_ms, factor,
-- cap_ms, jitter, random in [0,1), dead_max, dead_max_bytes.
local function policy(i)
  return {
    base = tonumber(ARGV[i]),
    factor = tonumber(ARGV[i + 1]),
    cap = tonumber(ARGV[i + 2]),
    jitter = tonumber(ARGV[i + 3]),
    r = tonumber(ARGV[i + 4]),
    dead_max = tonumber(ARGV[i + 5]),
    dead_bytes = tonumber(ARGV[i + 6]),
  }
end

-- Attempt `m.attempt` of an active task failed: schedule a retry (keeping the
-- priority, which lives in the record) or move it to dead. Returns the retry
-- time in ms, or -1 when the task is dead; kept in `m.fin_at` so a repeated
-- `fail` of the same lease answers the same.
local function fail_task(id, m, now, err, permanent, bo, r)
  redis.call('ZREM', K_LEASE, id)
  redis.call('SREM', K_UNSTARTED, id)
  m.last_error = err
  local h = m.history or {}
  h[#h + 1] = { attempt = m.attempt, error = err, at = now }
  m.history = h
  redis.call('HINCRBY', K_COUNTERS, 'failed', 1)
  if permanent or m.attempt > m.max_retries then
    m.fin_at = -1
    to_dead(id, m, now, bo)
    return -1
  end
  local at = now + backoff_ms(m.attempt, bo.base, bo.factor, bo.cap, bo.jitter, r)
  m.state = 'retry'
  m.token = nil
  m.run_at = at
  m.updated = now
  m.fin_at = at
  redis.call('ZADD', K_RETRY, at, id)
  save(id, m)
  return at
end

-- Runs the body only if the named guard has lapsed (in Redis time), so a
-- step called by every worker does its work once per interval.
local function take_guard(name, now, interval)
  local until_ms = tonumber(redis.call('HGET', K_GUARDS, name) or '0')
  if until_ms > now then
    return false
  end
  redis.call('HSET', K_GUARDS, name, now + interval)
  return true
end
