//! Metrics in Prometheus's text format (`metrics` and its Prometheus exporter),
//! served by each replica on `METRICS_ADDR` only — an address of its own that the
//! internet cannot reach; nginx never proxies it. Off by default: without
//! `METRICS_ADDR` no recorder is installed and every update below does nothing.
//!
//! What is measured, all names prefixed `storefront_`:
//! - `http_requests_total`, `http_request_duration_seconds` by route template,
//!   method and status; `http_requests_in_flight` (`web::metrics`);
//! - `redis_command_duration_seconds` and `redis_errors_total` by kind (session,
//!   cart, throttle, index): one sample per store call, which may be one command or
//!   a script; `degraded` (1 while this replica is not connected to Redis, read at
//!   each scrape);
//! - `logins_total` by outcome (ok, wrong, throttled), `registrations_total`,
//!   `cart_writes_total` by kind (add, update), `orders_placed_total`,
//!   `replays_caught_total` by form, `sessions_revoked_total`;
//! - `build_info` with the version and the replica's name (also a label on every
//!   metric: `replica`).

use std::collections::HashMap;
use std::future::Future;
use std::sync::{OnceLock, RwLock};
use std::time::{Duration, Instant};

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

static RECORDER: OnceLock<PrometheusHandle> = OnceLock::new();

/// Latency buckets, in seconds: a page served from memory takes well under a
/// millisecond; a login (argon2) tens of milliseconds; Redis's timeout is a second.
const BUCKETS: [f64; 14] = [
    0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0,
];

/// Installs the process-wide recorder (once: a second call, as a second app in
/// the same test process makes, gets the first one's) and returns its handle.
pub fn install(replica: &str) -> PrometheusHandle {
    RECORDER
        .get_or_init(|| {
            let builder = PrometheusBuilder::new()
                .add_global_label("replica", replica)
                .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), &BUCKETS)
                .expect("the buckets are not empty");
            let recorder = builder.build_recorder();
            let handle = recorder.handle();
            // Fails only if another recorder is installed; this module is the only
            // one that installs one, once.
            let _ = ::metrics::set_global_recorder(recorder);
            describe();
            handle
        })
        .clone()
}

/// Whether metrics are being recorded (`METRICS_ADDR` is set in this process).
pub fn enabled() -> bool {
    RECORDER.get().is_some()
}

fn describe() {
    use ::metrics::{describe_counter, describe_gauge, describe_histogram, Unit};
    describe_counter!(
        "storefront_http_requests_total",
        "HTTP requests answered, by route template, method and status"
    );
    describe_histogram!(
        "storefront_http_request_duration_seconds",
        Unit::Seconds,
        "Time to answer an HTTP request, by route template, method and status"
    );
    describe_gauge!(
        "storefront_http_requests_in_flight",
        "HTTP requests being answered now"
    );
    describe_histogram!(
        "storefront_redis_command_duration_seconds",
        Unit::Seconds,
        "Time of a store call to Redis (a command or a script), by kind"
    );
    describe_counter!(
        "storefront_redis_errors_total",
        "Store calls to Redis that failed (not connected, refused, timed out), by kind"
    );
    describe_gauge!(
        "storefront_degraded",
        "1 while this replica is not connected to Redis (pages are drawn read-only)"
    );
    describe_counter!("storefront_logins_total", "Login attempts, by outcome");
    describe_counter!("storefront_registrations_total", "Accounts registered");
    describe_counter!(
        "storefront_cart_writes_total",
        "Cart changes applied, by kind"
    );
    describe_counter!("storefront_orders_placed_total", "Orders placed");
    describe_counter!(
        "storefront_replays_caught_total",
        "Forms sent again whose first sending was applied, answered without applying them twice"
    );
    describe_counter!(
        "storefront_sessions_revoked_total",
        "Sessions ended from the account's session list (this one, or the others)"
    );
    describe_gauge!("storefront_build_info", "Version of the running binary");
}

/// What a Redis call was for.
#[derive(Clone, Copy, Debug)]
pub enum RedisKind {
    Session,
    Cart,
    Throttle,
    Index,
}

impl RedisKind {
    fn as_str(self) -> &'static str {
        match self {
            RedisKind::Session => "session",
            RedisKind::Cart => "cart",
            RedisKind::Throttle => "throttle",
            RedisKind::Index => "index",
        }
    }
}

/// Times a call to Redis and counts its failure (metrics off: just the call).
pub async fn redis_call<T, E>(
    kind: RedisKind,
    call: impl Future<Output = Result<T, E>>,
) -> Result<T, E> {
    if !enabled() {
        return call.await;
    }
    let start = Instant::now();
    let result = call.await;
    let kind = kind.as_str();
    ::metrics::histogram!("storefront_redis_command_duration_seconds", "kind" => kind)
        .record(start.elapsed());
    if result.is_err() {
        ::metrics::counter!("storefront_redis_errors_total", "kind" => kind).increment(1);
    }
    result
}

/// How a login attempt ended.
#[derive(Clone, Copy, Debug)]
pub enum Login {
    Ok,
    Wrong,
    Throttled,
}

pub fn login(outcome: Login) {
    let outcome = match outcome {
        Login::Ok => "ok",
        Login::Wrong => "wrong",
        Login::Throttled => "throttled",
    };
    ::metrics::counter!("storefront_logins_total", "outcome" => outcome).increment(1);
}

pub fn registered() {
    ::metrics::counter!("storefront_registrations_total").increment(1);
}

/// A cart change applied: `add` or `update`.
pub fn cart_write(kind: &'static str) {
    ::metrics::counter!("storefront_cart_writes_total", "kind" => kind).increment(1);
}

pub fn order_placed() {
    ::metrics::counter!("storefront_orders_placed_total").increment(1);
}

/// A form sent again (a double click, a retry) that was recognised and not
/// applied twice: `add`, `update`, `login`, `register`, `checkout`, ...
pub fn replay_caught(form: &'static str) {
    ::metrics::counter!("storefront_replays_caught_total", "form" => form).increment(1);
}

pub fn sessions_revoked(count: usize) {
    ::metrics::counter!("storefront_sessions_revoked_total").increment(count as u64);
}

/// One answered HTTP request. The two series' handles are looked up in the
/// registry once per route, method and status, then kept here: a request costs
/// a read lock and two atomic updates, not two label sets built and hashed.
pub fn http_request(route: &str, method: &'static str, status: u16, elapsed: Duration) {
    type Handles = (::metrics::Counter, ::metrics::Histogram);
    type ByRoute = HashMap<Box<str>, HashMap<(&'static str, u16), Handles>>;
    static HANDLES: OnceLock<RwLock<ByRoute>> = OnceLock::new();
    let handles = HANDLES.get_or_init(RwLock::default);
    let record = |(counter, histogram): &Handles| {
        counter.increment(1);
        histogram.record(elapsed);
    };
    if let Some(found) = handles
        .read()
        .expect("metrics handles lock")
        .get(route)
        .and_then(|by_route| by_route.get(&(method, status)))
    {
        record(found);
        return;
    }
    let mut handles = handles.write().expect("metrics handles lock");
    let found = handles
        .entry(route.into())
        .or_default()
        .entry((method, status))
        .or_insert_with(|| {
            use ::metrics::Label;
            let status = match status_str(status) {
                Some(s) => Label::from_static_parts("status", s),
                None => Label::new("status", status.to_string()),
            };
            let labels = vec![
                Label::new("route", route.to_owned()),
                Label::from_static_parts("method", method),
                status,
            ];
            (
                ::metrics::counter!("storefront_http_requests_total", labels.clone()),
                ::metrics::histogram!("storefront_http_request_duration_seconds", labels),
            )
        });
    record(found);
}

/// The statuses the shop answers with, as static labels.
fn status_str(status: u16) -> Option<&'static str> {
    Some(match status {
        200 => "200",
        303 => "303",
        304 => "304",
        400 => "400",
        401 => "401",
        403 => "403",
        404 => "404",
        405 => "405",
        409 => "409",
        413 => "413",
        415 => "415",
        429 => "429",
        500 => "500",
        503 => "503",
        _ => return None,
    })
}

/// Counts a request in flight until dropped (answered, or abandoned by the client).
pub struct InFlight(());

/// The in-flight gauge's handle, looked up once (not twice per request). Only
/// requests of an app with metrics on count themselves, after `install`.
fn in_flight() -> &'static ::metrics::Gauge {
    static GAUGE: OnceLock<::metrics::Gauge> = OnceLock::new();
    GAUGE.get_or_init(|| ::metrics::gauge!("storefront_http_requests_in_flight"))
}

impl InFlight {
    pub fn enter() -> InFlight {
        in_flight().increment(1.0);
        InFlight(())
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        in_flight().decrement(1.0);
    }
}

/// Folds the latency samples recorded since the last time into the histograms,
/// every five seconds, for as long as the app runs: until a scrape does it, each
/// sample is kept, so without this a replica nobody scrapes would grow without end.
pub async fn upkeep() {
    let Some(handle) = RECORDER.get() else {
        return;
    };
    let mut every = tokio::time::interval(Duration::from_secs(5));
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        every.tick().await;
        handle.run_upkeep();
    }
}

/// The exposition, as Prometheus scrapes it. `degraded`: whether this replica is
/// disconnected from Redis right now (`None`: no Redis, in-memory mode).
pub fn render(handle: &PrometheusHandle, degraded: Option<bool>) -> String {
    ::metrics::gauge!("storefront_build_info", "version" => env!("CARGO_PKG_VERSION")).set(1.0);
    if let Some(degraded) = degraded {
        ::metrics::gauge!("storefront_degraded").set(if degraded { 1.0 } else { 0.0 });
    }
    handle.render()
}
