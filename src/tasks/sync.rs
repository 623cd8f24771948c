//! Sync tasks: page through the upstream at `SYNC_SOURCE_URL` and upsert what it returns into
//! `sync_records`, committing each page together with the run's progress in `sync_runs`, so a
//! task that runs again (crash, lost lease, retry) resumes after the last committed page.
//!
//! # The paging protocol
//! `GET {SYNC_SOURCE_URL}/records?type=<sync_type>&start=<YYYY-MM-DD>&end=<YYYY-MM-DD>&limit=<batch_size>[&cursor=<c>]`
//! answers `200` with
//! `{"records": [{"id": "…", "updated_at": "<RFC 3339>", "data": <any JSON>}, …], "next_cursor": "…" | null}`.
//! The first request has no `cursor`; each next one sends the previous `next_cursor` verbatim
//! (it is opaque); `null` (or absent) ends the run. A page holds at most `limit` records, may
//! be empty, and may repeat an id (the newest `updated_at` wins). Records are keyed by
//! (`type`, `id`); a stored record is only replaced by one whose `updated_at` is at least as new.
//! `5xx`, `408`, `429`, timeouts and connection errors are retried (with the queue's backoff,
//! resuming at the failed page); any other status, or a body that is not such a page, fails the
//! task permanently. A cursor must stay valid until the run finishes, or at least for the
//! queue's retry window.
//!
//! Failures name "the upstream sync source" and the status it answered, never its URL or its
//! body, nor database errors: those go to the log (see [`Failure`]).

use std::time::Duration;

use anyhow::Context;
use chrono::{DateTime, NaiveDate, Utc};
use reqwest::{StatusCode, Url};
use serde::{Deserialize, Serialize};
use serde_json::json;
use uuid::Uuid;

use crate::db::{
    Pool, StoreError,
    sync::{NewSyncRun, RunState, SyncRecord, SyncRun, sync_page_commit, sync_run_begin, sync_run_fail},
};

use super::Failure;

/// Largest page body accepted: 1000 records of a few KB each fit with room to spare, and a
/// misbehaving upstream cannot make a worker buffer without bound.
const MAX_PAGE_BYTES: usize = 32 * 1024 * 1024;

/// The contract's bounds on `batch_size`.
const BATCH_SIZE: std::ops::RangeInclusive<i64> = 1..=1000;

fn default_batch_size() -> i64 {
    100
}

/// A sync task's payload, as the HTTP layer enqueues it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SyncPayload {
    pub sync_type: String,
    pub start_date: NaiveDate,
    pub end_date: NaiveDate,
    #[serde(default = "default_batch_size")]
    pub batch_size: i64,
}

/// One page of the protocol above.
#[derive(Debug, Deserialize)]
struct Page {
    records: Vec<WireRecord>,
    #[serde(default)]
    next_cursor: Option<String>,
}

#[derive(Debug, Deserialize)]
struct WireRecord {
    id: String,
    updated_at: DateTime<Utc>,
    data: serde_json::Value,
}

/// The configured upstream.
struct Source {
    records: Url,
    /// `records` without credentials, for messages and logs.
    shown: String,
    http: reqwest::Client,
}

/// Runs sync tasks. One per worker process; cheap to share.
pub struct Syncer {
    pg: Pool,
    source: Option<Source>,
}

impl Syncer {
    /// `source_url` is the protocol's base URL (`None`: every sync task fails permanently,
    /// saying so); `timeout` bounds each request.
    pub fn new(pg: Pool, source_url: Option<&str>, timeout: Duration) -> anyhow::Result<Syncer> {
        let source = match source_url {
            None => None,
            Some(base) => {
                let base = Url::parse(base).context("SYNC_SOURCE_URL is not a URL")?;
                anyhow::ensure!(
                    matches!(base.scheme(), "http" | "https"),
                    "SYNC_SOURCE_URL must be an http:// or https:// URL"
                );
                let mut records = base.clone();
                let path = format!("{}/records", base.path().trim_end_matches('/'));
                records.set_path(&path);
                records.set_query(None);
                let mut shown = records.clone();
                // Both only fail for URLs that cannot have credentials, which is fine to ignore.
                let _ = shown.set_username("");
                let _ = shown.set_password(None);
                let http = reqwest::Client::builder()
                    .timeout(timeout)
                    .connect_timeout(timeout)
                    .user_agent(concat!("spec-server/", env!("CARGO_PKG_VERSION")))
                    .build()
                    .context("building the HTTP client for SYNC_SOURCE_URL")?;
                Some(Source { records, shown: shown.to_string(), http })
            }
        };
        Ok(Syncer { pg, source })
    }

    /// Runs (or resumes) task `task_id`'s sync to completion. The result, stored with the
    /// completed task, counts the run's pages and records.
    pub async fn run(&self, task_id: Uuid, p: SyncPayload) -> Result<Option<String>, Failure> {
        let Some(source) = &self.source else {
            return Err(Failure::permanent_plain(
                "SYNC_SOURCE_URL is not configured: this service has no upstream to sync from",
            ));
        };
        let batch_size = validate(&p)?;
        let new = NewSyncRun {
            task_id,
            sync_type: p.sync_type.clone(),
            start_date: p.start_date,
            end_date: p.end_date,
            batch_size,
        };
        let run = sync_run_begin(&self.pg, &new).await.map_err(|e| store_error("start the sync run", &e))?;
        match self.pages(source, &p, run).await {
            Ok(run) => Ok(Some(json!({ "pages": run.pages, "rows": run.rows }).to_string())),
            Err(e) => {
                // Best effort: the queue keeps the error either way.
                if let Err(se) = sync_run_fail(&self.pg, task_id, &e.message).await {
                    tracing::warn!(task = %task_id, error = %se, "cannot record the sync run's failure");
                }
                Err(e)
            }
        }
    }

    /// Fetches and commits pages from the run's cursor until the upstream says there are no more.
    async fn pages(&self, source: &Source, p: &SyncPayload, mut run: SyncRun) -> Result<SyncRun, Failure> {
        while run.state != RunState::Completed {
            let page = source.fetch(p, run.next_cursor.as_deref(), run.batch_size).await?;
            if page.next_cursor.is_some() && page.next_cursor == run.next_cursor {
                return Err(Failure::permanent(
                    "the upstream sync source returned the cursor it was given as next_cursor; the run would never end",
                    format!("{} repeated cursor {:?}", source.shown, page.next_cursor),
                ));
            }
            let records = page
                .records
                .into_iter()
                .map(|r| {
                    if r.id.is_empty() {
                        return Err(Failure::permanent(
                            "the upstream sync source returned a record with an empty id",
                            format!("{} returned a record with an empty id", source.shown),
                        ));
                    }
                    Ok(SyncRecord { external_id: r.id, updated_at: r.updated_at, data: r.data })
                })
                .collect::<Result<Vec<_>, _>>()?;
            let committed = sync_page_commit(&self.pg, run.task_id, run.pages, &records, page.next_cursor.as_deref())
                .await
                .map_err(|e| store_error("store the sync page", &e))?;
            run = committed.ok_or_else(|| {
                // Only another attempt of this same task moves its run: ours lost its lease.
                Failure::retry(
                    "another attempt of this task stored the same page first",
                    "the page fence did not match: this attempt lost its lease",
                )
            })?;
        }
        Ok(run)
    }
}

impl SyncPayload {
    /// What is wrong with the payload beyond what the contract's schema
    /// says, as (field, message); empty when it can run. The HTTP layer
    /// answers these as a 400, the worker as a permanent failure (the queue
    /// may be fed by other producers).
    pub fn problems(&self) -> Vec<(&'static str, String)> {
        let mut out = Vec::new();
        if self.sync_type.is_empty() {
            out.push(("sync_type", "must not be empty".to_owned()));
        }
        if self.end_date < self.start_date {
            out.push(("end_date", "must not be before start_date".to_owned()));
        }
        if !BATCH_SIZE.contains(&self.batch_size) {
            out.push(("batch_size", format!("{} is outside 1..=1000", self.batch_size)));
        }
        out
    }
}

/// The batch size, once [`SyncPayload::problems`] finds nothing.
fn validate(p: &SyncPayload) -> Result<i32, Failure> {
    if let Some((field, message)) = p.problems().into_iter().next() {
        return Err(Failure::permanent_plain(format!("{field} {message}")));
    }
    i32::try_from(p.batch_size).map_err(|_| Failure::permanent_plain("batch_size out of range"))
}

/// Database trouble is worth retrying: an outage ends, a missing migration gets applied.
fn store_error(what: &str, e: &StoreError) -> Failure {
    Failure::retry(format!("could not {what} (temporary)"), format!("{what}: {}", crate::error_chain(e)))
}

impl Source {
    async fn fetch(&self, p: &SyncPayload, cursor: Option<&str>, limit: i32) -> Result<Page, Failure> {
        let (start, end, limit) = (p.start_date.to_string(), p.end_date.to_string(), limit.to_string());
        let mut query = vec![("type", p.sync_type.as_str()), ("start", &start), ("end", &end), ("limit", &limit)];
        if let Some(cursor) = cursor {
            query.push(("cursor", cursor));
        }
        let shown = &self.shown;
        let mut response = self
            .http
            .get(self.records.clone())
            .query(&query)
            .send()
            .await
            // without_url: the URL may hold credentials; `shown` does not.
            .map_err(|e| {
                Failure::retry(
                    "could not reach the upstream sync source (temporary)",
                    format!("GET {shown} failed: {}", crate::error_chain(&e.without_url())),
                )
            })?;
        let status = response.status();
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(|e| {
            Failure::retry(
                "the upstream sync source's answer broke off (temporary)",
                format!("reading the answer of GET {shown}: {}", crate::error_chain(&e.without_url())),
            )
        })? {
            if body.len() + chunk.len() > MAX_PAGE_BYTES {
                return Err(Failure::permanent(
                    format!("the upstream sync source answered more than {MAX_PAGE_BYTES} bytes (permanent)"),
                    format!("GET {shown} answered more than {MAX_PAGE_BYTES} bytes"),
                ));
            }
            body.extend_from_slice(&chunk);
        }
        if !status.is_success() {
            let snippet: String = String::from_utf8_lossy(&body).chars().take(200).collect();
            let detail = format!("GET {shown} answered {status}: {snippet}");
            let code = status.as_u16();
            let transient = status.is_server_error()
                || status == StatusCode::REQUEST_TIMEOUT
                || status == StatusCode::TOO_MANY_REQUESTS;
            return Err(if transient {
                Failure::retry(format!("the upstream sync source answered {code} (temporary)"), detail)
            } else {
                Failure::permanent(format!("the upstream sync source answered {code} (permanent)"), detail)
            });
        }
        serde_json::from_slice(&body).map_err(|e| {
            Failure::permanent(
                "the upstream sync source answered something that is not a records page (permanent)",
                format!("GET {shown} answered something that is not a records page: {e}"),
            )
        })
    }
}
