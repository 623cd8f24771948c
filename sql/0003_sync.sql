-- Sync tasks: the records pulled from the upstream source (SYNC_SOURCE_URL),
-- and one row per sync task recording its progress.
--
-- Both tables are keyed by natural keys, so a task that runs again (delivery
-- is at-least-once) overwrites instead of duplicating. No foreign keys:
-- sync_records.task_id names the run that last wrote a record, by id only.

-- One row per sync task (task_id is the queue's task id). A page of records
-- and the run's progress are committed in one transaction, so `pages`, `rows`
-- and `next_cursor` always describe exactly what is in sync_records; a task
-- that runs again resumes from `next_cursor`.
CREATE TABLE sync_runs (
    task_id     uuid        PRIMARY KEY,
    sync_type   text        NOT NULL,
    start_date  date        NOT NULL,
    end_date    date        NOT NULL,
    batch_size  integer     NOT NULL,
    state       text        NOT NULL DEFAULT 'running'
        CONSTRAINT sync_runs_state_check CHECK (state IN ('running', 'completed', 'failed')),
    -- The upstream's cursor for the next page; NULL before the first page.
    next_cursor text        NULL,
    pages       integer     NOT NULL DEFAULT 0,
    rows        bigint      NOT NULL DEFAULT 0,
    -- Attempts that worked on this run (the first one included).
    attempts    integer     NOT NULL DEFAULT 1,
    error       text        NULL,
    started_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now(),
    finished_at timestamptz NULL
);

-- Records as the upstream last described them, one per (sync_type, external_id).
CREATE TABLE sync_records (
    sync_type         text        NOT NULL,
    external_id       text        NOT NULL,
    data              jsonb       NOT NULL,
    -- The upstream's `updated_at`: an older version never overwrites a newer one.
    source_updated_at timestamptz NOT NULL,
    task_id           uuid        NOT NULL,
    synced_at         timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (sync_type, external_id)
);

-- "What did this run write": the relation to sync_runs, queried explicitly.
CREATE INDEX sync_records_task_id_idx ON sync_records (task_id);
