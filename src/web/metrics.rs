//! The HTTP side of the metrics (`telemetry::metrics`): each request counted and
//! timed by its route template, and the `/metrics` page Prometheus scrapes, served
//! on `METRICS_ADDR` by a router of its own, never on the shop's port.

use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};
use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::http::header;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use fred::prelude::{ClientLike, Pool};
use metrics_exporter_prometheus::PrometheusHandle;

use crate::telemetry::metrics;

/// Where the router notes the route template that matched (`/products/{slug}`),
/// for the request's metrics: a label with one value per route, never one per path.
#[derive(Clone, Default)]
struct RouteSlot(Arc<OnceLock<MatchedPath>>);

/// Counts and times every request (outermost, so the time is the whole answer).
/// Only in the stack when metrics are on.
pub async fn record_request(mut request: Request, next: Next) -> Response {
    let start = Instant::now();
    let _in_flight = metrics::InFlight::enter();
    let slot = RouteSlot::default();
    request.extensions_mut().insert(slot.clone());
    let method = method_label(request.method());
    let is_static = request.uri().path().starts_with("/static/");
    let response = next.run(request).await;
    let route = match slot.0.get() {
        Some(path) => path.as_str(),
        None if is_static => "/static/{file}",
        // The fallback: not found, or refused before routing.
        None => "other",
    };
    metrics::http_request(route, method, response.status().as_u16(), start.elapsed());
    response
}

/// The method as a label: the standard ones by name, anything else as one value.
fn method_label(method: &axum::http::Method) -> &'static str {
    use axum::http::Method;
    match *method {
        Method::GET => "GET",
        Method::HEAD => "HEAD",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::PATCH => "PATCH",
        Method::OPTIONS => "OPTIONS",
        _ => "other",
    }
}

/// Notes the matched route in the request's [`RouteSlot`]: a `route_layer` around
/// each route, a plain service (no future of its own).
#[derive(Clone, Copy)]
pub struct NoteRoute;

impl<S> tower::Layer<S> for NoteRoute {
    type Service = NoteRouteService<S>;
    fn layer(&self, inner: S) -> Self::Service {
        NoteRouteService(inner)
    }
}

#[derive(Clone)]
pub struct NoteRouteService<S>(S);

impl<S, B> tower::Service<axum::http::Request<B>> for NoteRouteService<S>
where
    S: tower::Service<axum::http::Request<B>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.0.poll_ready(cx)
    }

    fn call(&mut self, request: axum::http::Request<B>) -> S::Future {
        let extensions = request.extensions();
        if let (Some(slot), Some(path)) = (
            extensions.get::<RouteSlot>(),
            extensions.get::<MatchedPath>(),
        ) {
            let _ = slot.0.set(path.clone());
        }
        self.0.call(request)
    }
}

#[derive(Clone)]
struct Exposition {
    handle: PrometheusHandle,
    redis: Option<Pool>,
}

/// The metrics listener's whole router: `GET /metrics`, nothing else.
pub fn router(handle: PrometheusHandle, redis: Option<Pool>) -> Router {
    Router::new()
        .route("/metrics", get(exposition))
        .with_state(Exposition { handle, redis })
}

async fn exposition(State(state): State<Exposition>) -> Response {
    // Degraded: some connection of the pool is down, as a page would find it.
    let degraded = state
        .redis
        .as_ref()
        .map(|pool| pool.clients().iter().any(|c| !c.is_connected()));
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        metrics::render(&state.handle, degraded),
    )
        .into_response()
}
