//! When Redis goes away: anonymous visitors still browse; logged-in visitors read
//! pages in a degraded, read-only mode at once; writes answer a 503 page quickly;
//! the app recovers by itself when Redis returns. (tests/faults.rs does the same
//! through nginx and three replica processes, with Redis stopped and paused.)

use reqwest::StatusCode;
use std::time::{Duration, Instant};

use crate::support::api::{DEMO_PASSWORD, DEMO_USER};
use crate::support::app::TestApp;
use crate::support::process::wait_until;
use crate::support::redis::RedisServer;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_outage_degrades_reads_refuses_writes_and_the_app_recovers_alone() {
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

    for path in [
        "/cart",
        "/",
        "/session",
        "/products/blue-teapot",
        "/login",
        "/nowhere",
    ] {
        let started = Instant::now();
        let page = user.get(path).await;
        let took = started.elapsed();
        let expected = if path == "/nowhere" {
            StatusCode::NOT_FOUND
        } else {
            StatusCode::OK
        };
        assert_eq!(page.status, expected, "{path}: {page:?}");
        // Not connected: no waiting for a command timeout.
        assert!(took < Duration::from_millis(500), "{path} took {took:?}");
        page.assert_contains("Your cart and account are temporarily unavailable");
        page.assert_contains("Served by <strong>test-replica</strong>");
        page.assert_contains("href=\"/login\"");
        assert_eq!(page.logged_in_as(), None);
    }
    let started = Instant::now();
    let add = user.add_to_cart("1", "1").await;
    assert_eq!(add.status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(started.elapsed() < Duration::from_secs(2));
    assert_eq!(add.headers["retry-after"], "5");
    add.assert_contains("nothing was changed");
    for form in [
        vec![("username", "demo"), ("password", "demo-pass-123")],
        vec![("product_id", "1"), ("quantity", "0")],
    ] {
        let path = if form.len() == 2 && form[0].0 == "username" {
            "/login"
        } else {
            "/cart/update"
        };
        let page = user.post(path, &form).await;
        assert_eq!(
            page.status,
            StatusCode::SERVICE_UNAVAILABLE,
            "{path}: {page:?}"
        );
        assert!(page.headers.contains_key("retry-after"));
    }

    // Pages that exist only for a known user cannot tell who this is: a 503 page
    // in the layout, not a login form a logged-in user could not use either.
    for path in [
        "/account",
        "/account/sessions",
        "/account/password",
        "/orders",
        "/checkout",
    ] {
        let page = user.get(path).await;
        assert_eq!(
            page.status,
            StatusCode::SERVICE_UNAVAILABLE,
            "{path}: {page:?}"
        );
        assert!(page.headers.contains_key("retry-after"), "{path}");
        page.assert_contains("The session store is unavailable right now");
        page.assert_contains("Served by <strong>test-replica</strong>");
    }
    // Register and logout are writes like any other: refused, nothing changed.
    let register = app
        .browser()
        .post(
            "/register",
            &[
                ("username", "outage_newcomer"),
                ("password", "long enough pw"),
                ("password_confirm", "long enough pw"),
            ],
        )
        .await;
    assert_eq!(
        register.status,
        StatusCode::SERVICE_UNAVAILABLE,
        "{register:?}"
    );
    register.assert_contains("nothing was changed");
    let logout = user.post("/logout", &[]).await;
    assert_eq!(logout.status, StatusCode::SERVICE_UNAVAILABLE, "{logout:?}");
    logout.assert_contains("nothing was changed");
    let revoke = user.post("/account/sessions/revoke-others", &[]).await;
    assert_eq!(revoke.status, StatusCode::SERVICE_UNAVAILABLE, "{revoke:?}");
    revoke.assert_contains("nothing was changed");

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
    // The refused registration created no account.
    let newcomer = app
        .browser()
        .log_in("outage_newcomer", "long enough pw")
        .await;
    assert_eq!(newcomer.status, StatusCode::UNAUTHORIZED, "{newcomer:?}");
    println!("recovered in {:?}", back.elapsed());
}
