-- admin_cancel: ARGV now, id, call token, then the policy (see `policy` in common.lua).
-- Ends an active task's lease and moves it to dead ("cancelled by an
-- administrator"), counted as a failed attempt and a death. The lease token
-- is cleared, so the worker's extend, ack and fail are refused as stale
-- (fencing): its heartbeat notices and cancels the handler. Returns
-- {1, 'dead'}, {0, ''} when there is no such task, {-1, state} when it is not
-- active. A repeat of the call (same token, after a lost reply) answers as
-- the first.
local now = clock(ARGV[1])
local id = ARGV[2]
local token = ARGV[3]
local m = load(id)
if not m then
  return { 0, '' }
end
if m.fin == token and m.fin_op == 'C' then
  return { 1, 'dead' }
end
if m.state ~= 'active' then
  return { -1, m.state }
end
-- Not the lease holder's outcome: a late repeat of its fail must not be
-- answered with this one (as in reap); set before the record is saved, so
-- the dead set's byte count sees its final size.
m.fin = token
m.fin_op = 'C'
local bo = policy(4)
fail_task(id, m, now, 'cancelled by an administrator', true, bo, bo.r)
return { 1, 'dead' }
