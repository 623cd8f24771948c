-- Users of the API (the original service's `tb_user`).
--
-- Soft delete: deleting a user sets deleted_at and keeps the row. The unique
-- indexes below cover only rows that are not deleted, so a deleted user frees
-- its username and email for a new registration (the original blocked them).
-- Emails are unique case-insensitively (lower(email)); usernames as given.
-- No foreign keys anywhere in this schema: relations are kept by id columns.

CREATE TABLE users (
    id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    username      varchar(50)  NOT NULL,
    email         varchar(100) NOT NULL,
    password_hash text         NOT NULL,
    status        text         NOT NULL DEFAULT 'active'
        CONSTRAINT users_status_check CHECK (status IN ('active', 'inactive', 'suspended')),
    created_at    timestamptz  NOT NULL DEFAULT now(),
    updated_at    timestamptz  NOT NULL DEFAULT now(),
    last_login_at timestamptz  NULL,
    deleted_at    timestamptz  NULL
);

-- The store maps violations of these two to a 409 by their names: rename them
-- only together with conflict_field() in src/db/mod.rs.
CREATE UNIQUE INDEX users_username_key ON users (username) WHERE deleted_at IS NULL;
CREATE UNIQUE INDEX users_email_key ON users (lower(email)) WHERE deleted_at IS NULL;

-- The original's status index; it also serves queries that include deleted rows.
CREATE INDEX users_status_idx ON users (status);

-- Listing: newest first, ties by id, deleted rows excluded, optionally by status.
-- Both serve the page (LIMIT/OFFSET in index order) and the total (index-only count).
CREATE INDEX users_list_idx ON users (created_at DESC, id DESC) WHERE deleted_at IS NULL;
CREATE INDEX users_status_list_idx ON users (status, created_at DESC, id DESC) WHERE deleted_at IS NULL;
