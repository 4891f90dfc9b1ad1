//! The application: built once at start (the database, and Redis or the
//! in-memory stand-ins — the one place that chooses), then served until a signal.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use fred::prelude::ClientLike;
use tokio::net::TcpListener;

use crate::auth::{throttle::Limits, LoginThrottle};
use crate::cart::CartStore;
use crate::catalog::Catalog;
use crate::config::Config;
use crate::session::{Lifetimes, SessionIndex, SessionStore};
use crate::state::AppState;

/// A built application: bound to its port, ready to serve.
pub struct Application {
    listener: TcpListener,
    router: crate::router::App,
    state: AppState,
    /// `METRICS_ADDR`'s listener and its router (`/metrics` only).
    metrics: Option<(TcpListener, axum::Router)>,
}

impl Application {
    /// Connects to SQLite (migrating it) and Redis (or sets up the in-memory
    /// stores), and binds the listener.
    pub async fn build(config: Config) -> anyhow::Result<Self> {
        let config = Arc::new(config);
        let replica: Arc<str> = config.replica().into();

        let db = crate::db::connect(&config.database_url).await?;
        crate::db::migrate(&db).await?;
        if config.demo_user {
            crate::auth::users::ensure_demo_user(&db).await?;
        }
        let catalog = Arc::new(Catalog::load(&db).await.context("loading the catalog")?);
        crate::assets::init();
        crate::auth::password::warm_up();

        let lifetimes = Lifetimes {
            idle: config.session_idle_timeout,
            remember: config.remember_me(),
            max: config.session_max_lifetime,
            remember_max: config.remember_me_max_lifetime,
            anonymous: config.anon_cart_ttl,
            anonymous_trial: config.anon_trial(),
        };
        let limits = Limits {
            per_user: config.login_max_failures_per_user,
            per_client: config.login_max_failures_per_client,
            per_user_total: config.login_max_failures_per_user_total,
            window: config.login_throttle_window,
            // A login's reads and its password check, each bounded: the Redis ones
            // by REDIS_TIMEOUT, the check by the hashing queue (a few seconds).
            lease: config.redis_timeout * 3 + std::time::Duration::from_secs(5),
            register_per_client: config.register_max_per_client,
            register_window: config.register_throttle_window,
            anon_carts_per_client: config.anon_carts_per_client,
            anon_cart_window: config.anon_cart_window,
        };

        let longest_login = config.longest_login();
        let (redis, sessions, carts, throttle, index) = match &config.redis_url {
            Some(url) => {
                let redis = crate::redis::Redis::connect(url, config.redis_timeout).await?;
                let pool = redis.pool().clone();
                crate::redis::refuse_evicting(&pool, config.allow_evicting_redis).await?;
                match crate::redis::checks::clock_skew(&pool).await {
                    Ok(skew)
                        if skew.abs() > crate::redis::checks::CLOCK_SKEW_LIMIT.as_secs_f64() =>
                    {
                        tracing::warn!(
                            clock = %crate::redis::checks::describe_skew(skew),
                            "this host's clock differs from Redis's: dates shown and logged are off"
                        )
                    }
                    Ok(_) => {}
                    Err(err) => tracing::warn!(error = %err, "could not read Redis's clock"),
                }
                let mode = crate::redis::topology::Mode::of_url(url);
                tracing::info!(
                    replica = %replica,
                    redis = %redact(url),
                    connected = %crate::redis::topology::describe(&pool, mode),
                    "sessions and carts are kept in Redis"
                );
                let durability = crate::redis::Durability::replicas(
                    url,
                    crate::redis::durability::replicas_for(url, config.redis_wait_replicas),
                    config.redis_wait_timeout,
                    config.redis_timeout,
                )
                .await?;
                tracing::info!(
                    confirmed_by = %durability.describe(),
                    "cart and session writes are acknowledged once confirmed"
                );
                let index = SessionIndex::redis(redis.clone(), longest_login);
                (
                    Some(pool.clone()),
                    SessionStore::redis(redis.clone(), lifetimes.clone(), index.clone())
                        .confirmed_by(durability.clone()),
                    CartStore::redis(redis.clone(), config.cart_ttl, config.anon_cart_ttl)
                        .with_trial(config.anon_trial())
                        .confirmed_by(durability),
                    LoginThrottle::redis(redis, limits),
                    index,
                )
            }
            None => {
                tracing::warn!(
                    replica = %replica,
                    "REDIS_URL is not set: sessions and carts are kept in this process's memory \
                     (lost on restart, not shared between replicas). \
                     Set REDIS_URL=redis://127.0.0.1:6379 to keep them in Redis."
                );
                // The epochs, shared by the session index and the cart store, as
                // both read the same keys in Redis.
                let epochs = crate::redis::memory::MemoryCounters::default();
                let index = SessionIndex::memory(longest_login, epochs.clone());
                (
                    None,
                    SessionStore::memory(lifetimes.clone(), index.clone()),
                    CartStore::memory(config.cart_ttl, config.anon_cart_ttl, epochs)
                        .with_trial(config.anon_trial()),
                    LoginThrottle::memory(limits),
                    index,
                )
            }
        };

        let state = AppState::new(crate::state::Shared {
            config: config.clone(),
            db,
            redis,
            carts,
            throttle,
            hashing: crate::auth::queue::HashingLine::new(),
            index,
            sessions: sessions.clone(),
            catalog,
            lifetimes,
            replica,
            user_hints: Arc::default(),
            draining: Arc::default(),
        });
        let router = crate::router::build(state.clone(), sessions);
        let address = SocketAddr::new(config.bind, config.port);
        let listener = TcpListener::bind(address)
            .await
            .with_context(|| format!("binding {address}"))?;
        let metrics = match config.metrics_addr {
            Some(address) => {
                let handle = crate::telemetry::metrics::install(&state.replica);
                let listener = TcpListener::bind(address)
                    .await
                    .with_context(|| format!("binding METRICS_ADDR {address}"))?;
                let router = crate::web::metrics::router(handle, state.redis.clone());
                Some((listener, router))
            }
            None => None,
        };
        Ok(Application {
            listener,
            router,
            state,
            metrics,
        })
    }

    pub fn port(&self) -> u16 {
        self.listener
            .local_addr()
            .map(|a| a.port())
            .unwrap_or_default()
    }

    /// The port `/metrics` is served on, when `METRICS_ADDR` is set.
    pub fn metrics_port(&self) -> Option<u16> {
        let (listener, _) = self.metrics.as_ref()?;
        listener.local_addr().ok().map(|a| a.port())
    }

    pub fn state(&self) -> &AppState {
        &self.state
    }

    /// Serves until `shutdown` completes, then stops accepting, lets in-flight
    /// requests finish (bounded by the request timeout) and closes the pools.
    pub async fn run_until(
        self,
        shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        let Application {
            listener,
            router,
            state,
            metrics,
        } = self;
        let address = listener.local_addr()?;
        tracing::info!(replica = %state.replica, "listening on http://{address}");
        // Metrics answer until the process ends, through the drain too.
        let metrics = metrics.map(|(listener, router)| {
            if let Ok(address) = listener.local_addr() {
                tracing::info!("metrics on http://{address}/metrics");
            }
            tokio::spawn(async move {
                let upkeep = crate::telemetry::metrics::upkeep();
                let serve = async {
                    if let Err(err) = axum::serve(listener, router).await {
                        tracing::error!(error = %err, "the metrics listener failed");
                    }
                };
                tokio::join!(upkeep, serve);
            })
        });
        let service =
            axum::ServiceExt::<axum::extract::Request>::into_make_service_with_connect_info::<
                crate::shutdown::Peer,
            >(router);
        let drain_limit = state.config.request_timeout + Duration::from_secs(1);
        let limits = crate::shutdown::ConnectionLimits {
            header_read: state.config.header_read_timeout,
            idle: state.config.idle_timeout,
        };
        // See shutdown.rs: drain, then stop accepting, then let connections finish.
        let (accepting_tx, accepting_rx) = tokio::sync::watch::channel(false);
        let (listener, settled) =
            crate::shutdown::DrainingListener::new(listener, accepting_rx, limits)?;
        let (stopping_tx, stopping_rx) = tokio::sync::oneshot::channel::<()>();
        let draining = state.draining.clone();
        let drain_window = state.config.shutdown_drain;
        let server = axum::serve(listener, service).with_graceful_shutdown(async move {
            shutdown.await;
            tracing::info!(?drain_window, "shutting down: draining connections");
            draining.store(true, std::sync::atomic::Ordering::Release);
            tokio::time::sleep(drain_window).await;
            tracing::info!("shutting down: finishing in-flight requests");
            let _ = accepting_tx.send(true);
            settled.wait(crate::shutdown::SETTLE_LIMIT).await;
            let _ = stopping_tx.send(());
        });
        let mut server = std::pin::pin!(std::future::IntoFuture::into_future(server));
        tokio::select! {
            result = &mut server => result?,
            () = async {
                let _ = stopping_rx.await;
                tokio::time::sleep(drain_limit).await;
            } => tracing::warn!("in-flight requests did not finish in time; stopping anyway"),
        }
        if let Some(metrics) = metrics {
            metrics.abort();
        }
        state.db.close().await;
        if let Some(redis) = &state.redis {
            let _ = redis.quit().await;
        }
        tracing::info!("stopped");
        Ok(())
    }

    /// Serves until SIGTERM or Ctrl-C.
    pub async fn run_until_stopped(self) -> anyhow::Result<()> {
        self.run_until(shutdown_signal()).await
    }
}

use crate::db::redact;

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = terminate => {},
    }
}
