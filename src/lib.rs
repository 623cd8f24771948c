//! The hand-written half of the service: handlers implementing the traits
//! generated from `spec/openapi.yaml`, the PostgreSQL store, the Redis queue.

pub mod auth;
pub mod config;
pub mod db;
pub mod devsvc;
pub mod http;
pub mod listener;
pub mod queue;
pub mod server;
pub mod tasks;
pub mod worker;
