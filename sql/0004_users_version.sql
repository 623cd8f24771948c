-- A version per user, the source of its ETag (`"v<version>"`, see
-- src/http/users.rs). Every update and the soft delete bump it in the same
-- statement that checks it, so a request whose If-Match names a version it
-- read changes nothing when another request got there first (412).
-- A column with a constant default is added without rewriting rows
-- (PostgreSQL 11+), so this is quick on a large table.
ALTER TABLE users ADD COLUMN version bigint NOT NULL DEFAULT 1;
