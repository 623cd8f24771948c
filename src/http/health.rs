//! `GET /health`: PostgreSQL and Redis checked concurrently, each under its
//! own timeout and on connections of its own (not the request pools, which
//! a load can exhaust), so a hung dependency still gets an answer in time.
//! Like every handler it runs no SQL and no Redis command itself: the checks
//! are `db::ping` and `queue::ping`, handed the health pools. Read replicas are reported as
//! the lag checker last found them (no query here): one lagging or down sends reads to the
//! primary, so it does not make the service unhealthy.

use super::App;
use api_server::{
    DependencyState, HealthApi, HealthCheck200Response, HealthCheck503Response, HealthCheckResponse, HealthDegraded,
    HealthOk, ReplicaHealth, ReplicaState, rt::Problem,
};

use crate::db::replicas::ReplicaStatus;

impl App {
    async fn postgres_up(&self) -> Result<(), String> {
        let check = async { crate::db::ping(&self.health_pg).await.map_err(|e| crate::error_chain(&e)) };
        match tokio::time::timeout(self.health_timeout, check).await {
            Ok(r) => r,
            Err(_) => Err(format!("no answer within {:?}", self.health_timeout)),
        }
    }

    async fn redis_up(&self) -> Result<(), String> {
        let check = async { crate::queue::ping(&self.health_redis).await.map_err(|e| crate::error_chain(&e)) };
        match tokio::time::timeout(self.health_timeout, check).await {
            Ok(r) => r,
            Err(_) => Err(format!("no answer within {:?}", self.health_timeout)),
        }
    }
}

fn ms(d: std::time::Duration) -> Option<i64> {
    Some(i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// Each replica as the last lag check found it; absent (not an empty list) without replicas.
fn replicas(app: &App) -> Option<Vec<ReplicaHealth>> {
    let reports = app.db.replica_health();
    if reports.is_empty() {
        return None;
    }
    let health = reports
        .into_iter()
        .map(|r| {
            let (state, lag_ms) = match r.status {
                ReplicaStatus::Up { lag } => (ReplicaState::Up, ms(lag)),
                ReplicaStatus::Lagging { lag } => (ReplicaState::Lagging, ms(lag)),
                ReplicaStatus::Down { .. } => (ReplicaState::Down, None),
            };
            ReplicaHealth { name: r.name, state, lag_ms }
        })
        .collect();
    Some(health)
}

fn state(r: &Result<(), String>) -> DependencyState {
    if r.is_ok() { DependencyState::Up } else { DependencyState::Down }
}

impl HealthApi for App {
    async fn health_check(&self) -> Result<HealthCheckResponse, Problem> {
        let (pg, redis) = tokio::join!(self.postgres_up(), self.redis_up());
        if pg.is_ok() && redis.is_ok() {
            return Ok(HealthCheckResponse::Ok(HealthCheck200Response {
                status: Some(HealthOk::Ok),
                postgres: Some(DependencyState::Up),
                redis: Some(DependencyState::Up),
                replicas: replicas(self),
            }));
        }
        let mut errors = Vec::new();
        if let Err(e) = &pg {
            tracing::warn!(error = %e, "health: PostgreSQL down");
            errors.push("数据库连接失败 (PostgreSQL)");
        }
        if let Err(e) = &redis {
            tracing::warn!(error = %e, "health: Redis down");
            errors.push("Redis 连接失败");
        }
        let status = if pg.is_err() && redis.is_err() { HealthDegraded::Unavailable } else { HealthDegraded::Degraded };
        Ok(HealthCheckResponse::ServiceUnavailable(HealthCheck503Response {
            status: Some(status),
            postgres: Some(state(&pg)),
            redis: Some(state(&redis)),
            replicas: replicas(self),
            error: Some(errors.join("; ")),
        }))
    }
}
