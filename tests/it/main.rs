//! The integration tests, one binary so the service links once: the service
//! over real PostgreSQL and Redis (`service`), the real binary checked
//! against the contract (`contract`), worker crashes and Redis restarts
//! (`worker_crash`), and the ignored failure drill behind `cargo xtask
//! chaos` (`chaos`).

mod chaos;
mod contract;
mod service;
mod worker_crash;
