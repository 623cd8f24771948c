//! The test clock: time that moves only when a test says so. What would otherwise read the
//! real clock takes an optional [`FakeClock`] — the queue's scripts (`QueueConfig::fake_clock`,
//! instead of Redis `TIME`) and the token verifier (`TokenVerifier::with_fake_clock`, instead
//! of the system clock for token expiry) — so tests advance time instead of sleeping through
//! it. Without one, the default, real time is used.

use std::{
    sync::{
        Arc,
        atomic::{AtomicI64, Ordering},
    },
    time::Duration,
};

use chrono::{DateTime, Utc};

/// Milliseconds since the Unix epoch, shared by every clone.
#[derive(Debug, Clone)]
pub struct FakeClock(Arc<AtomicI64>);

impl FakeClock {
    pub fn new(start_ms: i64) -> Self {
        FakeClock(Arc::new(AtomicI64::new(start_ms)))
    }

    /// Starting at the real time now.
    pub fn starting_now() -> Self {
        Self::new(Utc::now().timestamp_millis())
    }

    pub fn advance(&self, by: Duration) {
        self.0.fetch_add(i64::try_from(by.as_millis()).unwrap_or(i64::MAX), Ordering::SeqCst);
    }

    pub fn set(&self, ms: i64) {
        self.0.store(ms, Ordering::SeqCst);
    }

    pub fn now_ms(&self) -> i64 {
        self.0.load(Ordering::SeqCst)
    }

    /// The clock's time as a UTC timestamp (the epoch itself if out of chrono's range).
    pub fn now_utc(&self) -> DateTime<Utc> {
        DateTime::from_timestamp_millis(self.now_ms()).unwrap_or_default()
    }
}
