-- fail: ARGV now, id, token, error, permanent (0/1), backoff base_ms,
-- factor, cap_ms, jitter, random in [0,1). Returns the retry time in ms,
-- -1 when the task moved to dead, -2 when the token is stale.
local now = tonumber(ARGV[1])
local id = ARGV[2]
local m = load(id)
if not m or m.state ~= 'active' or m.token ~= ARGV[3] then
  return -2
end
local bo = {
  base = tonumber(ARGV[6]),
  factor = tonumber(ARGV[7]),
  cap = tonumber(ARGV[8]),
  jitter = tonumber(ARGV[9]),
}
return fail_task(id, m, now, ARGV[4], ARGV[5] == '1', bo, tonumber(ARGV[10]))
