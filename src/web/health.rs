//! Liveness and readiness, for nginx, docker-compose and the scripts.

use std::sync::atomic::Ordering;

use axum::extract::State;
use axum::http::StatusCode;
use fred::prelude::ClientLike;

use crate::redis_checks;
use crate::state::AppState;

/// The process is up. Touches nothing, so a Redis outage does not get replicas restarted.
pub async fn healthz() -> &'static str {
    "ok\n"
}

/// Ready to serve logged-in users: Redis answers, does not evict and is not full,
/// the database answers, and the replica is not shutting down.
pub async fn readyz(State(state): State<AppState>) -> (StatusCode, String) {
    let redis = match &state.redis {
        Some(pool) => redis_readiness(pool, state.config.allow_evicting_redis).await,
        None => Ok("in-memory".to_owned()),
    };
    let sqlite = sqlx::query_scalar::<_, i64>("SELECT 1")
        .fetch_one(&state.db)
        .await
        .map(|_| "ok".to_owned())
        .map_err(|e| e.to_string());
    let draining = state.draining.load(Ordering::Acquire);
    let mut body = format!(
        "redis: {}\nsqlite: {}\n",
        redis.as_ref().unwrap_or_else(|e| e),
        sqlite.as_ref().unwrap_or_else(|e| e)
    );
    if draining {
        body.push_str("shutting down: draining connections\n");
    }
    let status = if redis.is_ok() && sqlite.is_ok() && !draining {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, body)
}

async fn redis_readiness(
    pool: &fred::prelude::Pool,
    allow_evicting: bool,
) -> Result<String, String> {
    pool.ping::<String>(None).await.map_err(|e| e.to_string())?;
    let facts = redis_checks::read(pool).await.map_err(|e| e.to_string())?;
    let policy = facts.policy.as_deref().unwrap_or("unknown");
    let memory = if facts.max_memory > 0 {
        format!("{} of {} bytes used", facts.used_memory, facts.max_memory)
    } else {
        format!("{} bytes used, no limit", facts.used_memory)
    };
    if facts.full() {
        return Err(format!(
            "full ({memory}): writes are refused (maxmemory-policy {policy})"
        ));
    }
    if facts.evicts() && !allow_evicting {
        return Err(format!(
            "evicting (maxmemory-policy {policy}): sessions and carts may vanish"
        ));
    }
    Ok(format!("ok (maxmemory-policy {policy}, {memory})"))
}
