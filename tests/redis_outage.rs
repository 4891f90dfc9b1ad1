//! When Redis goes away: anonymous visitors still browse; pages that need the
//! session answer a 503 page quickly; the app recovers by itself when Redis returns.

mod common;

use common::*;
use reqwest::StatusCode;
use std::time::{Duration, Instant};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_outage_is_a_quick_503_page_and_the_app_recovers_alone() {
    let redis = std::sync::Arc::new(RedisServer::start_with(true).await);
    let db = std::sync::Arc::new(tempfile::tempdir().unwrap());
    let app = TestApp::spawn_sharing(Some(redis.clone()), db, "test-replica", |_| {}).await;
    let user = app.browser();
    user.log_in(DEMO_USER, DEMO_PASSWORD)
        .await
        .assert_redirect("/");
    user.add_to_cart("1", "2").await;

    redis.stop();

    let anonymous = app.browser().get("/").await;
    assert_eq!(
        anonymous.status,
        StatusCode::OK,
        "the catalog does not need Redis"
    );
    // Readiness says so (nginx and compose health checks use it); liveness does not.
    let ready = app.browser().get("/readyz").await;
    assert_eq!(ready.status, StatusCode::SERVICE_UNAVAILABLE, "{ready:?}");
    assert!(ready.body.contains("sqlite: ok"), "{}", ready.body);
    assert_eq!(app.browser().get("/healthz").await.status, StatusCode::OK);

    for path in ["/cart", "/", "/session"] {
        let started = Instant::now();
        let page = user.get(path).await;
        let took = started.elapsed();
        assert_eq!(
            page.status,
            StatusCode::SERVICE_UNAVAILABLE,
            "{path}: {page:?}"
        );
        assert!(took < Duration::from_secs(2), "{path} took {took:?}");
        assert_eq!(page.headers["retry-after"], "5");
        page.assert_contains("The session store is unavailable right now.");
        page.assert_contains("Served by <strong>test-replica</strong>");
    }
    let started = Instant::now();
    let add = user.add_to_cart("1", "1").await;
    assert_eq!(add.status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(started.elapsed() < Duration::from_secs(2));

    // Redis comes back (with its data: AOF): within 5 seconds, all is well again.
    redis.restart().await;
    let back = Instant::now();
    wait_until("recovery", Duration::from_secs(5), || {
        let user = user.clone();
        async move { user.get("/cart").await.status == StatusCode::OK }
    })
    .await;
    assert_eq!(app.browser().get("/readyz").await.status, StatusCode::OK);
    let cart = user.get("/cart").await;
    assert_eq!(cart.logged_in_as().as_deref(), Some("demo"));
    assert_eq!(cart.cart_lines(), vec![("Blue Teapot".into(), 2)]);
    println!("recovered in {:?}", back.elapsed());
}
