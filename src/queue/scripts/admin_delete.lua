-- admin_delete: ARGV id. Removes a pending task: its list entry (LREM, a
-- scan of that priority's list), record, payload and unique key. Returns
-- {1, ''}, {0, ''} when there is no such task, {-1, state} when it is not
-- pending.
local id = ARGV[1]
local m = load(id)
if not m then
  return { 0, '' }
end
if m.state ~= 'pending' then
  return { -1, m.state }
end
redis.call('LREM', K_LISTS[m.priority + 1], 1, id)
release_unique(id, m)
delete_tasks({ id })
return { 1, '' }
