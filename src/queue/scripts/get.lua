-- get: ARGV id. Returns {meta as JSON, data} (false when missing).
local raw = redis.call('HGET', K_META, ARGV[1])
if raw then
  raw = cjson.encode(unpack_meta(raw))
end
return { raw, redis.call('HGET', K_DATA, ARGV[1]) }
