//! The hand-written half of the service: handlers implementing the traits
//! generated from `spec/openapi.yaml`, the PostgreSQL store, the Redis queue.

pub mod auth;
pub mod clock;
pub mod config;
pub mod db;
pub mod devsvc;
pub mod http;
pub mod listener;
pub mod logwriter;
pub mod metrics;
pub mod pubsub;
pub mod queue;
pub mod redis_pool;
pub mod server;
pub mod tasks;
pub mod telemetry;
pub mod worker;

/// `outer: inner: innermost`: an error and its causes, the one way this
/// service writes an error chain into a log (many libraries' `Display` stop at
/// the top level).
pub fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(inner) = cur {
        s.push_str(": ");
        s.push_str(&inner.to_string());
        cur = inner.source();
    }
    s
}

/// A random (version 4) UUID from the thread's CSPRNG (`rand::rng()`: ChaCha seeded from the
/// OS) instead of `Uuid::new_v4`'s system call for every id: request ids and task ids are made
/// on every request, and task ids must stay unguessable.
pub fn new_uuid() -> uuid::Uuid {
    uuid::Builder::from_random_bytes(rand::random()).into_uuid()
}
