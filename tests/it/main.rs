//! The integration tests, one binary so the service links once: the service
//! over real PostgreSQL and Redis (`service`), the real binary checked
//! against the contract (`contract`), read replicas over a streaming standby
//! (`replicas`), worker crashes and Redis restarts (`worker_crash`), `/metrics`
//! of `serve` and `worker` (`metrics`), and the ignored failure drill behind
//! `cargo xtask chaos` (`chaos`). `support` starts the `spec-server` binary
//! for them.

mod chaos;
mod contract;
mod metrics;
mod replicas;
mod service;
mod support;
mod worker_crash;
