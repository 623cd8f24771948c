//! How long until a new task runs: the backlog ahead of it over the recent
//! completion rate, sampled from the queue's counters.

use std::{
    sync::Mutex,
    time::{Duration, Instant},
};

use super::{Backlog, Priority};

/// Completed-task rate, sampled from [`Backlog::total_completed`] at each call.
#[derive(Debug, Default)]
pub struct Throughput {
    last: Mutex<Option<(Instant, u64, f64)>>,
}

impl Throughput {
    /// Updates the rate (tasks/s, smoothed) from a new counter reading.
    pub fn observe(&self, total_completed: u64) -> f64 {
        let now = Instant::now();
        let Ok(mut last) = self.last.lock() else { return 0.0 };
        let rate = match *last {
            Some((t, n, rate)) => {
                let dt = now.duration_since(t).as_secs_f64();
                if dt < 0.5 {
                    // Too close to the last sample to say anything new.
                    return rate;
                }
                let fresh = total_completed.saturating_sub(n) as f64 / dt;
                if rate == 0.0 { fresh } else { 0.7 * rate + 0.3 * fresh }
            }
            None => 0.0,
        };
        *last = Some((now, total_completed, rate));
        rate
    }
}

/// When a task just enqueued with priority `p` should start.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Wait {
    Now,
    /// No completion rate measured yet: only the backlog is known.
    Behind {
        ahead: u64,
    },
    About(Duration),
}

/// The wait of the newest task of priority `p` (itself counted in `backlog`):
/// the same and higher priorities' backlog (weighted mode also serves lower
/// ones, so this is an upper bound) plus the running tasks, at `rate`.
pub fn wait(backlog: &Backlog, p: Priority, rate: f64) -> Wait {
    let pending: u64 = backlog.pending[..=p.index()].iter().sum();
    let ahead = (pending + backlog.active).saturating_sub(1);
    if ahead == 0 {
        Wait::Now
    } else if rate <= 0.0 {
        Wait::Behind { ahead }
    } else {
        Wait::About(Duration::from_secs_f64((ahead as f64 / rate).ceil().max(1.0)))
    }
}
