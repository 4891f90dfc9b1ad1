//! Liveness and readiness, for nginx, docker-compose and the scripts.

use axum::extract::State;
use axum::http::StatusCode;
use fred::prelude::ClientLike;

use crate::redis_topology;
use crate::state::AppState;

/// Single server, Sentinel or Cluster, from `REDIS_URL`.
pub fn redis_mode(state: &AppState) -> redis_topology::Mode {
    redis_topology::Mode::of_url(state.config.redis_url.as_deref().unwrap_or_default())
}

/// The process is up. Touches nothing, so a Redis outage does not get replicas restarted.
pub async fn healthz() -> &'static str {
    "ok\n"
}

/// Ready to serve logged-in users: Redis and the database both answer. The body
/// names the Redis server(s) in use (after a Sentinel failover: the new primary)
/// and the database backend (`sqlite: ok` or `postgres: ok`).
pub async fn readyz(State(state): State<AppState>) -> (StatusCode, String) {
    let redis = match &state.redis {
        Some(pool) => pool
            .ping::<String>(None)
            .await
            .map(|_| format!("ok, {}", redis_topology::describe(pool, redis_mode(&state))))
            .map_err(|e| e.to_string()),
        None => Ok("in-memory".to_owned()),
    };
    let backend = crate::db::Backend::of(&state.db).name();
    let database = sqlx::query("SELECT 1")
        .execute(&state.db)
        .await
        .map(|_| "ok".to_owned())
        .map_err(|e| e.to_string());
    let body = format!(
        "redis: {}\n{backend}: {}\n",
        redis.as_ref().unwrap_or_else(|e| e),
        database.as_ref().unwrap_or_else(|e| e)
    );
    let status = if redis.is_ok() && database.is_ok() {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, body)
}
