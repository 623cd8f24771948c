-- get: ARGV id. Returns {record as JSON, data} (false when missing).
local m = load(ARGV[1])
local raw = false
if m then
  raw = cjson.encode(m)
end
return { raw, redis.call('HGET', K_DATA, ARGV[1]) }
