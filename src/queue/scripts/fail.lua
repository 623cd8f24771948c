-- fail: ARGV now, id, token, error, permanent (0/1), then the policy (see
-- `policy` in common.lua). Returns the retry time in ms, -1 when the task
-- moved to dead, -2 when the token is stale. A repeat for a lease this
-- already failed answers as the first call did.
local now = clock(ARGV[1])
local id = ARGV[2]
local token = ARGV[3]
local m = load(id)
if m and m.state == 'active' and m.token == token then
  m.fin = token
  m.fin_op = 'f'
  local bo = policy(6)
  return fail_task(id, m, now, ARGV[4], ARGV[5] == '1', bo, bo.r)
end
if m and m.fin == token and m.fin_op == 'f' and m.fin_at then
  return m.fin_at
end
return -2
