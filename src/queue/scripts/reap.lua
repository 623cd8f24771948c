-- reap: ARGV now, guard_ms, limit, backoff base_ms, factor, cap_ms, jitter,
-- random in [0,1). Expired leases count as a failed attempt (retry or dead).
-- Returns the number reaped, or -1 if another reaper ran within guard_ms.
local now = tonumber(ARGV[1])
if not take_guard('reap', now, tonumber(ARGV[2])) then
  return -1
end
local bo = {
  base = tonumber(ARGV[4]),
  factor = tonumber(ARGV[5]),
  cap = tonumber(ARGV[6]),
  jitter = tonumber(ARGV[7]),
}
local r = tonumber(ARGV[8])
local ids = redis.call('ZRANGEBYSCORE', K_LEASE, '-inf', now, 'LIMIT', 0, tonumber(ARGV[3]))
for i, id in ipairs(ids) do
  local m = load(id)
  if m then
    -- Spread the jitter of one batch with the golden-ratio sequence.
    local ri = (r + i * 0.6180339887) % 1
    fail_task(id, m, now, 'lease expired', false, bo, ri)
  else
    redis.call('ZREM', K_LEASE, id)
  end
end
return #ids
