//! Queue tests against private redis-server instances (never the system one).

mod bench;
mod cluster;
mod core;
mod server;
mod worker;
