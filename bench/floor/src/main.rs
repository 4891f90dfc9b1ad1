//! The floor of `scripts/bench --peers`: what axum + fred cost for a
//! logged-in page when the page is free. Each request makes exactly one Redis
//! round trip, pipelined: `GET <session id>` (from the `sid` cookie) and
//! `HGETALL <cart key>`, as the shop's logged-in page reads them; the body is a
//! fixed byte string (the shop's own rendered page, from `FLOOR_BODY_FILE`, so
//! both send the same bytes). `POST /cart/add` pipelines `GET <session id>` and
//! `HINCRBY <cart key> <product> <qty>`, `POST /cart/update` with quantity 0
//! `HDEL`s, and both answer 303 to `/`, like the shop.
//!
//! Settings (environment): PORT, REDIS_URL, FLOOR_CART_KEY, FLOOR_BODY_FILE, and
//! FLOOR_SEQUENTIAL (the add's two commands one after the other, not pipelined).
//! Loopback only; a missing session key answers 303 to /login like the shop.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use fred::prelude::*;

struct Floor {
    redis: Client,
    cart_key: String,
    body: Bytes,
    /// FLOOR_SEQUENTIAL set: an add waits for the session's `GET` before it sends
    /// its `HINCRBY` (two round trips in a row, as the shop's add), instead of
    /// pipelining both: what the second round trip costs.
    sequential: bool,
}

type Shared = State<Arc<Floor>>;

fn session_id(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().strip_prefix("sid="))
        .map(str::to_owned)
        .next()
}

fn redirect(to: &'static str) -> Response {
    (
        StatusCode::SEE_OTHER,
        [(header::LOCATION, HeaderValue::from_static(to))],
    )
        .into_response()
}

fn unavailable(err: Error) -> Response {
    (StatusCode::SERVICE_UNAVAILABLE, format!("redis: {err}\n")).into_response()
}

async fn page(State(floor): Shared, headers: HeaderMap) -> Response {
    let Some(sid) = session_id(&headers) else {
        return redirect("/login");
    };
    let pipeline = floor.redis.pipeline();
    let queued: Result<(), Error> = async {
        pipeline.get::<(), _>(&sid).await?;
        pipeline.hgetall::<(), _>(&floor.cart_key).await
    }
    .await;
    if let Err(err) = queued {
        return unavailable(err);
    }
    match pipeline.all::<(Value, Value)>().await {
        Ok((Value::Null, _)) => redirect("/login"),
        Ok(_) => (
            [(
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/html; charset=utf-8"),
            )],
            floor.body.clone(),
        )
            .into_response(),
        Err(err) => unavailable(err),
    }
}

/// `product_id=N&quantity=Q` from a form body.
fn form_numbers(body: &str) -> (Option<u32>, Option<i64>) {
    let (mut product, mut quantity) = (None, None);
    for pair in body.split('&') {
        match pair.split_once('=') {
            Some(("product_id", v)) => product = v.parse().ok(),
            Some(("quantity", v)) => quantity = v.parse().ok(),
            _ => {}
        }
    }
    (product, quantity)
}

async fn change(floor: &Floor, headers: &HeaderMap, body: &str, add: bool) -> Response {
    let Some(sid) = session_id(headers) else {
        return redirect("/login");
    };
    let (Some(product), quantity) = form_numbers(body) else {
        return (StatusCode::BAD_REQUEST, "product_id?\n").into_response();
    };
    let quantity = quantity.unwrap_or(1);
    if add && floor.sequential {
        // As the shop must: the session read first, the cart written after.
        match floor.redis.get::<Value, _>(&sid).await {
            Ok(Value::Null) => return redirect("/login"),
            Err(err) => return unavailable(err),
            Ok(_) => {}
        }
        let added: Result<Value, Error> = floor
            .redis
            .hincrby(&floor.cart_key, product.to_string(), quantity)
            .await;
        return match added {
            Ok(_) => redirect("/"),
            Err(err) => unavailable(err),
        };
    }
    let pipeline = floor.redis.pipeline();
    let queued: Result<(), Error> = async {
        pipeline.get::<(), _>(&sid).await?;
        if add {
            pipeline
                .hincrby::<(), _, _>(&floor.cart_key, product.to_string(), quantity)
                .await
        } else if quantity <= 0 {
            pipeline
                .hdel::<(), _, _>(&floor.cart_key, product.to_string())
                .await
        } else {
            pipeline
                .hset::<(), _, _>(&floor.cart_key, (product.to_string(), quantity))
                .await
        }
    }
    .await;
    if let Err(err) = queued {
        return unavailable(err);
    }
    match pipeline.all::<(Value, Value)>().await {
        Ok((Value::Null, _)) => redirect("/login"),
        Ok(_) => redirect("/"),
        Err(err) => unavailable(err),
    }
}

async fn cart_add(State(floor): Shared, headers: HeaderMap, body: String) -> Response {
    change(&floor, &headers, &body, true).await
}

async fn cart_update(State(floor): Shared, headers: HeaderMap, body: String) -> Response {
    change(&floor, &headers, &body, false).await
}

async fn ready() -> &'static str {
    "ready\n"
}

fn setting(name: &str, default: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| default.to_owned())
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let port: u16 = setting("PORT", "8090").parse()?;
    let config = Config::from_url(&setting("REDIS_URL", "redis://127.0.0.1:6379/0"))?;
    let redis = Builder::from_config(config)
        .with_connection_config(|c| {
            c.tcp = TcpConfig {
                nodelay: Some(true),
                ..Default::default()
            }
        })
        .build()?;
    redis.init().await?;
    let body = match std::env::var("FLOOR_BODY_FILE") {
        Ok(path) => std::fs::read(&path).map_err(|e| format!("{path}: {e}"))?,
        Err(_) => b"<!doctype html><title>floor</title><p>floor\n".to_vec(),
    };
    let floor = Arc::new(Floor {
        redis,
        cart_key: setting("FLOOR_CART_KEY", "cart:user:1"),
        sequential: std::env::var_os("FLOOR_SEQUENTIAL").is_some(),
        body: Bytes::from(body),
    });
    let app = Router::new()
        .route("/", get(page))
        .route("/cart", get(page))
        .route("/cart/add", post(cart_add))
        .route("/cart/update", post(cart_update))
        .route("/readyz", get(ready))
        .with_state(floor);
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
    axum::serve(listener, app).await?;
    Ok(())
}
