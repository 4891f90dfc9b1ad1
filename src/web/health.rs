//! Liveness and readiness, for nginx, docker-compose and the scripts.

use axum::extract::State;
use axum::http::StatusCode;
use fred::prelude::ClientLike;

use crate::state::AppState;

/// The process is up. Touches nothing, so a Redis outage does not get replicas restarted.
pub async fn healthz() -> &'static str {
    "ok\n"
}

/// Ready to serve logged-in users: Redis and SQLite both answer.
pub async fn readyz(State(state): State<AppState>) -> (StatusCode, String) {
    let redis = match &state.redis {
        Some(pool) => pool
            .ping::<String>(None)
            .await
            .map(|_| "ok".to_owned())
            .map_err(|e| e.to_string()),
        None => Ok("in-memory".to_owned()),
    };
    let sqlite = sqlx::query_scalar::<_, i64>("SELECT 1")
        .fetch_one(&state.db)
        .await
        .map(|_| "ok".to_owned())
        .map_err(|e| e.to_string());
    let body = format!(
        "redis: {}\nsqlite: {}\n",
        redis.as_ref().unwrap_or_else(|e| e),
        sqlite.as_ref().unwrap_or_else(|e| e)
    );
    let status = if redis.is_ok() && sqlite.is_ok() {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, body)
}
