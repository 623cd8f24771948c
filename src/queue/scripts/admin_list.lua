-- admin_list: ARGV state, priority index ('' = all), cursor a, cursor b, limit.
-- One page of the tasks in one state, read from that state's own index so the
-- cost is the page's, not the queue's:
-- - pending: the priority lists (FIFO), cursor {priority index, offset};
--   without a priority filter the lists follow each other, critical first.
-- - the others: their zset (sched, retry, lease, done, dead), cursor
--   {score, id} of the last entry returned; the next page starts after that
--   id's rank, or, if it has left the set, at the first entry with a higher
--   score (ZCOUNT, O(log N)). With a priority filter the page's entries are
--   filtered, so it may hold fewer than `limit` tasks.
-- Returns {next a, next b ('' '' = no more), total, then per task: id, record
-- as JSON}. An index entry without a record is skipped.
local state = ARGV[1]
local prio = ARGV[2]
local ca = ARGV[3]
local cb = ARGV[4]
local limit = tonumber(ARGV[5])

local out = { '', '', 0 }
local ids = {}

if state == 'pending' then
  local first, last = 1, 3
  if prio ~= '' then
    first = tonumber(prio) + 1
    last = first
  end
  local p, off = first, 0
  if ca ~= '' then
    p = tonumber(ca) + 1
    off = tonumber(cb)
  end
  local total = 0
  for q = first, last do
    total = total + redis.call('LLEN', K_LISTS[q])
  end
  out[3] = total
  while p <= last and #ids < limit do
    local want = limit - #ids
    local got = redis.call('LRANGE', K_LISTS[p], off, off + want - 1)
    for _, id in ipairs(got) do
      ids[#ids + 1] = id
    end
    if #got == want then
      off = off + #got
      -- Something may follow, in this list or a later one.
      if off < redis.call('LLEN', K_LISTS[p]) then
        out[1], out[2] = tostring(p - 1), tostring(off)
      else
        for q = p + 1, last do
          if redis.call('LLEN', K_LISTS[q]) > 0 then
            out[1], out[2] = tostring(q - 1), '0'
            break
          end
        end
      end
      break
    end
    p = p + 1
    off = 0
  end
else
  local zsets = { scheduled = K_SCHED, retry = K_RETRY, active = K_LEASE, completed = K_DONE, dead = K_DEAD }
  local z = zsets[state]
  if not z then
    return redis.error_reply('unknown state ' .. state)
  end
  out[3] = redis.call('ZCARD', z)
  local start = 0
  if ca ~= '' then
    local score = redis.call('ZSCORE', z, cb)
    local rank = redis.call('ZRANK', z, cb)
    if score and rank and tonumber(score) == tonumber(ca) then
      start = rank + 1
    else
      start = redis.call('ZCOUNT', z, '-inf', '(' .. ca)
      -- Entries at exactly that score sort by id: skip those up to the cursor's.
      local same = redis.call('ZRANGEBYSCORE', z, ca, ca, 'LIMIT', 0, limit)
      for _, id in ipairs(same) do
        if id < cb then
          start = start + 1
        end
      end
    end
  end
  local got = redis.call('ZRANGE', z, start, start + limit - 1, 'WITHSCORES')
  local n = #got / 2
  for i = 1, n do
    ids[i] = got[2 * i - 1]
  end
  if n == limit and start + n < out[3] then
    out[1], out[2] = got[2 * n], got[2 * n - 1]
  end
end

if #ids == 0 then
  return out
end
local records = load_many(ids)
for i, id in ipairs(ids) do
  if records[i] then
    local m = records[i]
    if state ~= 'pending' and prio ~= '' and m.priority ~= tonumber(prio) then
      m = nil
    end
    if m then
      out[#out + 1] = id
      out[#out + 1] = cjson.encode(m)
    end
  end
end
return out
