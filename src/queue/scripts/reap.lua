-- reap: ARGV now, guard_ms, limit, then the policy (see `policy` in
-- common.lua). An expired lease whose handler was confirmed started counts
-- as a failed attempt (retry or dead); one never started (the dequeue reply
-- was lost, or the worker died before starting it) goes back to the head of
-- its priority uncharged. Returns the number reaped, or -1 if another
-- reaper ran within guard_ms.
local now = clock(ARGV[1])
if not take_guard('reap', now, tonumber(ARGV[2])) then
  return -1
end
local bo = policy(4)
local ids = redis.call('ZRANGEBYSCORE', K_LEASE, '-inf', now, 'LIMIT', 0, tonumber(ARGV[3]))
local woken = 0
for i, id in ipairs(ids) do
  local m = load(id)
  if not m then
    redis.call('ZREM', K_LEASE, id)
    redis.call('SREM', K_UNSTARTED, id)
    redis.call('HDEL', K_ACTIVE, id)
  elseif redis.call('SREM', K_UNSTARTED, id) == 1 then
    redis.call('ZREM', K_LEASE, id)
    m.state = 'pending'
    m.token = nil
    m.attempt = m.attempt - 1
    m.updated = now
    save(id, m)
    redis.call('LPUSH', K_LISTS[m.priority + 1], id)
    redis.call('HINCRBY', K_COUNTERS, 'unstarted', 1)
    woken = woken + 1
  else
    -- The reaper, not a lease holder, ends this attempt: a late repeat of an
    -- earlier lease's fail must not be answered with this outcome.
    m.fin = nil
    m.fin_op = nil
    -- Spread the jitter of one batch with the golden-ratio sequence.
    local ri = (bo.r + i * 0.6180339887) % 1
    fail_task(id, m, now, 'lease expired', false, bo, ri)
  end
end
if woken > 0 then
  redis.call('LPUSH', K_WAKE, '1')
end
return #ids
