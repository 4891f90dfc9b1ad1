//! Liveness and readiness, for nginx, docker-compose and the scripts.

use std::sync::atomic::Ordering;

use axum::extract::State;
use axum::http::StatusCode;
use fred::prelude::ClientLike;

use crate::redis::checks;
use crate::redis::topology;
use crate::state::AppState;
use crate::web::client_ip::FromThisHost;

/// Single server, Sentinel or Cluster, from `REDIS_URL`.
pub fn redis_mode(state: &AppState) -> topology::Mode {
    topology::Mode::of_url(state.config.redis_url.as_deref().unwrap_or_default())
}

/// The process is up. Touches nothing, so a Redis outage does not get replicas restarted.
pub async fn healthz() -> &'static str {
    "ok\n"
}

/// Ready to serve logged-in users: Redis answers, does not evict and is not full,
/// the database answers, and the replica is not shutting down. To a request made
/// on this host directly (or with `HEALTH_DETAIL`), the body names the Redis
/// server(s) in use (after a Sentinel failover: the new primary), its memory and
/// the database backend (`sqlite: ok` or `postgres: ok`); to anyone else it is
/// only `ready` or `not ready`: those are the infrastructure's secrets.
pub async fn readyz(
    State(state): State<AppState>,
    FromThisHost(from_this_host): FromThisHost,
) -> (StatusCode, String) {
    let (status, detail) = readiness(&state).await;
    if from_this_host || state.config.health_detail {
        return (status, detail);
    }
    let word = if status == StatusCode::OK {
        "ready\n"
    } else {
        "not ready\n"
    };
    (status, word.to_owned())
}

async fn readiness(state: &AppState) -> (StatusCode, String) {
    let redis = match &state.redis {
        Some(pool) => redis_readiness(pool, state.config.allow_evicting_redis)
            .await
            .map(|facts| format!("{facts}, {}", topology::describe(pool, redis_mode(state)))),
        None => Ok("in-memory".to_owned()),
    };
    let backend = crate::db::Backend::of(&state.db).name();
    let database = sqlx::query("SELECT 1")
        .execute(&state.db)
        .await
        .map(|_| "ok".to_owned())
        .map_err(|e| e.to_string());
    let draining = state.draining.load(Ordering::Acquire);
    let mut body = format!(
        "redis: {}\n{backend}: {}\n",
        redis.as_ref().unwrap_or_else(|e| e),
        database.as_ref().unwrap_or_else(|e| e)
    );
    if let Some(pool) = &state.redis {
        if let Ok(skew) = checks::clock_skew(pool).await {
            body.push_str(&format!("clock: {}\n", checks::describe_skew(skew)));
        }
    }
    if draining {
        body.push_str("shutting down: draining connections\n");
    }
    let status = if redis.is_ok() && database.is_ok() && !draining {
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
    let facts = checks::read(pool).await.map_err(|e| e.to_string())?;
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
