//! The `sync_runs` and `sync_records` store: the progress of each sync task and the records it
//! pulled. A page of records and the run's progress are committed together, so a task that runs
//! again resumes exactly after the last committed page and never counts a record twice.

use std::{collections::HashMap, time::Instant};

use chrono::{DateTime, NaiveDate, Utc};
use tokio_postgres::Row;
use uuid::Uuid;

use super::{Pool, SLOW_QUERY, StoreError, conn, execute, query_opt};

/// Where a run is; a CHECK constraint in `sql/0003_sync.sql` holds the same list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunState {
    Running,
    Completed,
    /// The last attempt failed; the next attempt of the same task resumes it.
    Failed,
}

impl RunState {
    pub fn as_str(self) -> &'static str {
        match self {
            RunState::Running => "running",
            RunState::Completed => "completed",
            RunState::Failed => "failed",
        }
    }

    fn parse(s: &str) -> Result<Self, StoreError> {
        match s {
            "running" => Ok(RunState::Running),
            "completed" => Ok(RunState::Completed),
            "failed" => Ok(RunState::Failed),
            other => Err(StoreError::internal(format!("sync_runs.state {other:?} is not a known state"))),
        }
    }
}

/// One sync task's run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncRun {
    pub task_id: Uuid,
    pub sync_type: String,
    pub start_date: NaiveDate,
    pub end_date: NaiveDate,
    pub batch_size: i32,
    pub state: RunState,
    /// The upstream's cursor for the next page; `None` before the first page and once done.
    pub next_cursor: Option<String>,
    /// Pages committed so far.
    pub pages: i32,
    /// Records received in those pages.
    pub rows: i64,
    /// Attempts that worked on this run.
    pub attempts: i32,
    pub error: Option<String>,
    pub started_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
}

/// The columns [`SyncRun::from_row`] reads, in its order.
macro_rules! run_columns {
    () => {
        "task_id, sync_type, start_date, end_date, batch_size, state, next_cursor, pages, rows, attempts, error, \
         started_at, updated_at, finished_at"
    };
}

impl SyncRun {
    fn from_row(row: &Row) -> Result<Self, StoreError> {
        Ok(Self {
            task_id: row.try_get(0)?,
            sync_type: row.try_get(1)?,
            start_date: row.try_get(2)?,
            end_date: row.try_get(3)?,
            batch_size: row.try_get(4)?,
            state: RunState::parse(row.try_get(5)?)?,
            next_cursor: row.try_get(6)?,
            pages: row.try_get(7)?,
            rows: row.try_get(8)?,
            attempts: row.try_get(9)?,
            error: row.try_get(10)?,
            started_at: row.try_get(11)?,
            updated_at: row.try_get(12)?,
            finished_at: row.try_get(13)?,
        })
    }
}

/// What a sync task asks for; the run's identity is `task_id`.
#[derive(Debug, Clone)]
pub struct NewSyncRun {
    pub task_id: Uuid,
    pub sync_type: String,
    pub start_date: NaiveDate,
    pub end_date: NaiveDate,
    pub batch_size: i32,
}

/// One record as the upstream sent it.
#[derive(Debug, Clone, PartialEq)]
pub struct SyncRecord {
    pub external_id: String,
    pub updated_at: DateTime<Utc>,
    pub data: serde_json::Value,
}

/// A stored record.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredRecord {
    pub sync_type: String,
    pub external_id: String,
    pub data: serde_json::Value,
    pub source_updated_at: DateTime<Utc>,
    /// The run that last wrote it.
    pub task_id: Uuid,
}

/// Starts the run of `new.task_id`, or resumes it: a run left `running` (its worker died) or
/// `failed` goes back to `running` with its cursor, pages and rows kept and `attempts` + 1. A
/// completed run is returned unchanged, so the caller can answer without fetching again.
pub async fn sync_run_begin(pool: &Pool, new: &NewSyncRun) -> Result<SyncRun, StoreError> {
    let client = conn(pool).await?;
    let resumed = query_opt(
        &client,
        "sync.run_begin",
        concat!(
            "INSERT INTO sync_runs (task_id, sync_type, start_date, end_date, batch_size)
             VALUES ($1, $2, $3, $4, $5)
             ON CONFLICT (task_id) DO UPDATE
             SET state = 'running', error = NULL, finished_at = NULL, attempts = sync_runs.attempts + 1,
                 updated_at = now()
             WHERE sync_runs.state <> 'completed'
             RETURNING ",
            run_columns!()
        ),
        &[&new.task_id, &new.sync_type, &new.start_date, &new.end_date, &new.batch_size],
    )
    .await?;
    match resumed {
        Some(row) => SyncRun::from_row(&row),
        // The WHERE above skipped it: it is completed.
        None => sync_run_get(pool, new.task_id)
            .await?
            .ok_or_else(|| StoreError::internal(format!("sync run {} vanished while being resumed", new.task_id))),
    }
}

/// Commits one page: upserts `records` and advances the run past it, in one transaction.
/// `next_cursor` `None` means this was the last page, which completes the run.
///
/// `pages_before` fences concurrent attempts of the same task (possible after a lost lease):
/// the page is committed only if the run still has exactly that many pages, otherwise nothing is
/// written and `None` is returned. Within a page, the newest version of a repeated id wins; an
/// already stored record is only replaced by one at least as new (by the upstream's
/// `updated_at`), so an overlapping older sync cannot undo a newer one.
pub async fn sync_page_commit(
    pool: &Pool,
    task_id: Uuid,
    pages_before: i32,
    records: &[SyncRecord],
    next_cursor: Option<&str>,
) -> Result<Option<SyncRun>, StoreError> {
    let (ids, data, updated) = dedup(records);
    let rows = i64::try_from(records.len()).map_err(|_| StoreError::internal("page too large"))?;
    let started = Instant::now();
    let mut client = conn(pool).await?;
    let tx = client.transaction().await?;
    // The run row first: its row lock serializes concurrent attempts, and the fence decides.
    let advance = tx
        .prepare_cached(concat!(
            "UPDATE sync_runs
             SET pages = pages + 1, rows = rows + $3, next_cursor = $4,
                 state = CASE WHEN $4::text IS NULL THEN 'completed' ELSE 'running' END,
                 finished_at = CASE WHEN $4::text IS NULL THEN now() END,
                 error = NULL, updated_at = now()
             WHERE task_id = $1 AND pages = $2 AND state <> 'completed'
             RETURNING ",
            run_columns!()
        ))
        .await?;
    let Some(row) = tx.query_opt(&advance, &[&task_id, &pages_before, &rows, &next_cursor]).await? else {
        tx.rollback().await?;
        return Ok(None);
    };
    let run = SyncRun::from_row(&row)?;
    if !ids.is_empty() {
        let upsert = tx
            .prepare_cached(
                "INSERT INTO sync_records (sync_type, external_id, data, source_updated_at, task_id)
                 SELECT $1::text, r.external_id, r.data, r.updated_at, $2::uuid
                 FROM UNNEST($3::text[], $4::jsonb[], $5::timestamptz[]) AS r (external_id, data, updated_at)
                 ON CONFLICT (sync_type, external_id) DO UPDATE
                 SET data = EXCLUDED.data, source_updated_at = EXCLUDED.source_updated_at,
                     task_id = EXCLUDED.task_id, synced_at = now()
                 WHERE sync_records.source_updated_at <= EXCLUDED.source_updated_at",
            )
            .await?;
        tx.execute(&upsert, &[&run.sync_type, &task_id, &ids, &data, &updated]).await?;
    }
    tx.commit().await?;
    let elapsed = started.elapsed();
    if elapsed >= SLOW_QUERY {
        let elapsed_ms = u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX);
        tracing::warn!(query = "sync.page_commit", elapsed_ms, records = ids.len(), "slow query");
    }
    Ok(Some(run))
}

/// One entry per external id, the newest (by `updated_at`, then position) winning: a single
/// `INSERT … ON CONFLICT DO UPDATE` may not touch the same row twice.
///
/// Sorted by id: the upsert locks rows in the order it is given them, so two overlapping runs
/// writing the same records in different orders could each hold a row the other waits for
/// (a deadlock, 40P01). In one global order, the later one simply waits.
fn dedup(records: &[SyncRecord]) -> (Vec<&str>, Vec<&serde_json::Value>, Vec<DateTime<Utc>>) {
    let mut index: HashMap<&str, usize> = HashMap::with_capacity(records.len());
    let mut kept: Vec<&SyncRecord> = Vec::with_capacity(records.len());
    for r in records {
        match index.get(r.external_id.as_str()) {
            Some(&i) if kept[i].updated_at > r.updated_at => {}
            Some(&i) => kept[i] = r,
            None => {
                index.insert(&r.external_id, kept.len());
                kept.push(r);
            }
        }
    }
    kept.sort_unstable_by(|a, b| a.external_id.cmp(&b.external_id));
    (
        kept.iter().map(|r| r.external_id.as_str()).collect(),
        kept.iter().map(|r| &r.data).collect(),
        kept.iter().map(|r| r.updated_at).collect(),
    )
}

/// Marks an unfinished run failed with `error` (the task's attempt failed); the next attempt
/// resumes it. A completed run is left alone.
pub async fn sync_run_fail(pool: &Pool, task_id: Uuid, error: &str) -> Result<(), StoreError> {
    let client = conn(pool).await?;
    execute(
        &client,
        "sync.run_fail",
        "UPDATE sync_runs SET state = 'failed', error = $2, finished_at = now(), updated_at = now()
         WHERE task_id = $1 AND state <> 'completed'",
        &[&task_id, &error],
    )
    .await?;
    Ok(())
}

/// The run of a sync task, if it started.
pub async fn sync_run_get(pool: &Pool, task_id: Uuid) -> Result<Option<SyncRun>, StoreError> {
    let client = conn(pool).await?;
    let row = query_opt(
        &client,
        "sync.run_get",
        concat!("SELECT ", run_columns!(), " FROM sync_runs WHERE task_id = $1"),
        &[&task_id],
    )
    .await?;
    row.as_ref().map(SyncRun::from_row).transpose()
}

/// One stored record.
pub async fn sync_record_get(
    pool: &Pool,
    sync_type: &str,
    external_id: &str,
) -> Result<Option<StoredRecord>, StoreError> {
    let client = conn(pool).await?;
    let row = query_opt(
        &client,
        "sync.record_get",
        "SELECT sync_type, external_id, data, source_updated_at, task_id
         FROM sync_records WHERE sync_type = $1 AND external_id = $2",
        &[&sync_type, &external_id],
    )
    .await?;
    row.map(|row| {
        Ok(StoredRecord {
            sync_type: row.try_get(0)?,
            external_id: row.try_get(1)?,
            data: row.try_get(2)?,
            source_updated_at: row.try_get(3)?,
            task_id: row.try_get(4)?,
        })
    })
    .transpose()
}

/// How many records of `sync_type` are stored.
pub async fn sync_records_count(pool: &Pool, sync_type: &str) -> Result<i64, StoreError> {
    let client = conn(pool).await?;
    let row = query_opt(
        &client,
        "sync.records_count",
        "SELECT count(*) FROM sync_records WHERE sync_type = $1",
        &[&sync_type],
    )
    .await?
    .ok_or_else(|| StoreError::internal("count(*) returned no row"))?;
    Ok(row.try_get(0)?)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a failed unwrap is a failed test
mod tests {
    use super::*;
    use crate::devsvc::test_database;

    fn new_run(sync_type: &str) -> NewSyncRun {
        NewSyncRun {
            task_id: Uuid::new_v4(),
            sync_type: sync_type.to_owned(),
            start_date: NaiveDate::from_ymd_opt(2025, 11, 1).unwrap(),
            end_date: NaiveDate::from_ymd_opt(2025, 11, 12).unwrap(),
            batch_size: 2,
        }
    }

    fn record(id: &str, at: &str, v: i64) -> SyncRecord {
        SyncRecord { external_id: id.to_owned(), updated_at: at.parse().unwrap(), data: serde_json::json!({ "v": v }) }
    }

    #[tokio::test]
    async fn pages_commit_with_progress_and_complete_the_run() {
        let db = test_database().await.unwrap();
        let pool = db.pool();
        let new = new_run("sim_status");
        let run = sync_run_begin(pool, &new).await.unwrap();
        assert_eq!((run.state, run.pages, run.rows, run.attempts), (RunState::Running, 0, 0, 1));

        let page = [record("a", "2025-11-01T00:00:00Z", 1), record("b", "2025-11-01T00:00:00Z", 1)];
        let run = sync_page_commit(pool, new.task_id, 0, &page, Some("c2")).await.unwrap().unwrap();
        assert_eq!((run.state, run.pages, run.rows, run.next_cursor.as_deref()), (RunState::Running, 1, 2, Some("c2")));

        // A stale attempt that still thinks the run has 0 pages writes nothing.
        let stale = [record("z", "2025-11-01T00:00:00Z", 9)];
        assert!(sync_page_commit(pool, new.task_id, 0, &stale, None).await.unwrap().is_none());
        assert!(sync_record_get(pool, "sim_status", "z").await.unwrap().is_none());

        let last = [record("c", "2025-11-02T00:00:00Z", 1)];
        let run = sync_page_commit(pool, new.task_id, 1, &last, None).await.unwrap().unwrap();
        assert_eq!((run.state, run.pages, run.rows, run.next_cursor.as_deref()), (RunState::Completed, 2, 3, None));
        assert!(run.finished_at.is_some());
        assert_eq!(sync_records_count(pool, "sim_status").await.unwrap(), 3);

        // Beginning a completed run again changes nothing.
        let again = sync_run_begin(pool, &new).await.unwrap();
        assert_eq!(again, run);
    }

    #[tokio::test]
    async fn a_failed_run_resumes_from_its_cursor() {
        let db = test_database().await.unwrap();
        let pool = db.pool();
        let new = new_run("flow_usage");
        sync_run_begin(pool, &new).await.unwrap();
        sync_page_commit(pool, new.task_id, 0, &[record("a", "2025-11-01T00:00:00Z", 1)], Some("next"))
            .await
            .unwrap()
            .unwrap();
        sync_run_fail(pool, new.task_id, "upstream answered 503").await.unwrap();
        let failed = sync_run_get(pool, new.task_id).await.unwrap().unwrap();
        assert_eq!((failed.state, failed.error.as_deref()), (RunState::Failed, Some("upstream answered 503")));

        let resumed = sync_run_begin(pool, &new).await.unwrap();
        assert_eq!(resumed.state, RunState::Running);
        assert_eq!((resumed.pages, resumed.rows, resumed.attempts), (1, 1, 2));
        assert_eq!(resumed.next_cursor.as_deref(), Some("next"));
        assert_eq!(resumed.error, None);
    }

    #[tokio::test]
    async fn upserts_keep_the_newest_version_of_a_record() {
        let db = test_database().await.unwrap();
        let pool = db.pool();
        let first = new_run("real_name");
        sync_run_begin(pool, &first).await.unwrap();
        // Within one page a repeated id is allowed; its newest version wins.
        let page = [
            record("a", "2025-11-02T00:00:00Z", 2),
            record("a", "2025-11-01T00:00:00Z", 1),
            record("b", "2025-11-01T00:00:00Z", 1),
        ];
        sync_page_commit(pool, first.task_id, 0, &page, None).await.unwrap().unwrap();
        assert_eq!(sync_record_get(pool, "real_name", "a").await.unwrap().unwrap().data["v"], 2);

        // Another run: an older version is ignored, a newer one replaces and is attributed to it.
        let second = new_run("real_name");
        sync_run_begin(pool, &second).await.unwrap();
        let page = [record("a", "2025-10-01T00:00:00Z", 0), record("b", "2025-11-03T00:00:00Z", 3)];
        sync_page_commit(pool, second.task_id, 0, &page, None).await.unwrap().unwrap();
        let a = sync_record_get(pool, "real_name", "a").await.unwrap().unwrap();
        let b = sync_record_get(pool, "real_name", "b").await.unwrap().unwrap();
        assert_eq!((a.data["v"].as_i64(), a.task_id), (Some(2), first.task_id));
        assert_eq!((b.data["v"].as_i64(), b.task_id), (Some(3), second.task_id));
        assert_eq!(sync_records_count(pool, "real_name").await.unwrap(), 2);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn overlapping_runs_writing_the_same_records_in_opposite_orders_do_not_deadlock() {
        let db = test_database().await.unwrap();
        let pool = db.pool();
        let old = "2025-10-01T00:00:00Z";
        let ids: Vec<String> = (0..21).map(|i| format!("k{i:02}")).collect();
        let setup = new_run("overlap");
        sync_run_begin(pool, &setup).await.unwrap();
        let existing: Vec<SyncRecord> = ids.iter().map(|id| record(id, old, 0)).collect();
        sync_page_commit(pool, setup.task_id, 0, &existing, None).await.unwrap().unwrap();

        // A third session holds the middle record, so both runs stop there: one holding the
        // records before it, the other (writing backwards) those after it. Whoever gets the
        // middle one next needs the other's records: unless both lock in the same order.
        let middle = &ids[ids.len() / 2];
        let mut blocker = db.connect().await.unwrap();
        let tx = blocker.transaction().await.unwrap();
        tx.execute("SELECT 1 FROM sync_records WHERE sync_type = 'overlap' AND external_id = $1 FOR UPDATE", &[middle])
            .await
            .unwrap();

        let forward: Vec<SyncRecord> = ids.iter().map(|id| record(id, "2025-11-01T00:00:00Z", 1)).collect();
        let backward: Vec<SyncRecord> = forward.iter().rev().cloned().collect();
        let (a, b) = (new_run("overlap"), new_run("overlap"));
        sync_run_begin(pool, &a).await.unwrap();
        sync_run_begin(pool, &b).await.unwrap();
        let (pa, pb) = (pool.clone(), pool.clone());
        let run_a = tokio::spawn(async move { sync_page_commit(&pa, a.task_id, 0, &forward, None).await });
        let run_b = tokio::spawn(async move { sync_page_commit(&pb, b.task_id, 0, &backward, None).await });

        // Both are waiting on a row lock before the blocker lets go.
        let watcher = db.connect().await.unwrap();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        loop {
            let waiting: i64 = watcher
                .query_one(
                    "SELECT count(*) FROM pg_stat_activity
                     WHERE datname = current_database() AND wait_event_type = 'Lock'",
                    &[],
                )
                .await
                .unwrap()
                .get(0);
            if waiting == 2 {
                break;
            }
            assert!(std::time::Instant::now() < deadline, "{waiting} sessions waiting on a lock");
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        tx.commit().await.unwrap();

        let (ra, rb) = (run_a.await.unwrap(), run_b.await.unwrap());
        assert!(ra.as_ref().is_ok_and(Option::is_some), "{ra:?}");
        assert!(rb.as_ref().is_ok_and(Option::is_some), "{rb:?}");
        assert_eq!(sync_records_count(pool, "overlap").await.unwrap(), 21);
    }
}
