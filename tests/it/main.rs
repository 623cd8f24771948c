//! The integration tests, one binary so the service links once: the queue admin API and
//! its dashboard in headless Chromium (`admin`, `admin_browser`), the service
//! over real PostgreSQL and Redis (`service`), the real binary checked
//! against the contract (`contract`), the binary on a Redis Cluster (`cluster`), read replicas over a streaming standby
//! (`replicas`), the whole scaled deployment under load and failures (`scale`), worker crashes and Redis restarts
//! (`worker_crash`), `/metrics` of `serve` and `worker` (`metrics`), one trace across server
//! and worker exported to an in-test OTLP collector (`traces`), and the
//! ignored failure drill behind `cargo xtask chaos` (`chaos`). `support`
//! starts the `spec-server` binary for them.

mod admin;
mod admin_browser;
mod chaos;
mod cluster;
mod contract;
mod metrics;
mod replicas;
mod scale;
mod service;
mod support;
mod traces;
mod worker_crash;
