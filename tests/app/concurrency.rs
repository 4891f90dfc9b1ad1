//! Carts under concurrency: many adds at once, from one user, through two app
//! instances that share one Redis, as two replicas behind a load balancer would.

use crate::support::api::{DEMO_PASSWORD, DEMO_USER};
use crate::support::app::{Backend, TestApp};
use crate::support::browser::Browser;

/// `count` adds of one Blue Teapot at once, spread over `browsers` in turn.
async fn add_one_teapot_concurrently(count: usize, browsers: &[&Browser]) {
    let adds = (0..count).map(|i| {
        let browser = browsers[i % browsers.len()].clone();
        async move { browser.add_to_cart("1", "1").await }
    });
    for page in futures::future::join_all(adds).await {
        page.assert_redirect("/cart");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_hundred_concurrent_adds_across_two_instances_lose_nothing() {
    let first = TestApp::spawn(Backend::Redis).await;
    let second = first.sibling("second-replica").await;
    let user = first.browser();
    user.log_in(DEMO_USER, DEMO_PASSWORD)
        .await
        .assert_redirect("/");
    let on_second = user.at(&second.address);

    // 60 adds of one Blue Teapot, half through each instance, all at once.
    add_one_teapot_concurrently(60, &[&user, &on_second]).await;
    assert_eq!(
        first.redis_hash("cart:{u1}").await["1"],
        60,
        "every add counted"
    );

    // 100 more at once: the line stops at the cap, exactly.
    add_one_teapot_concurrently(100, &[&user, &on_second]).await;
    assert_eq!(first.redis_hash("cart:{u1}").await["1"], 99);

    // Both instances see the same cart and the same login.
    for browser in [&user, &on_second] {
        let cart = browser.get("/cart").await;
        assert_eq!(cart.logged_in_as().as_deref(), Some("demo"));
        assert_eq!(cart.cart_lines(), vec![("Blue Teapot".into(), 99)]);
    }
    let served: std::collections::HashSet<String> = [
        user.get("/").await.served_by().to_owned(),
        on_second.get("/").await.served_by().to_owned(),
    ]
    .into();
    assert_eq!(served.len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_adds_of_different_products_all_land_in_memory_too() {
    let app = TestApp::spawn(Backend::Memory).await;
    let user = app.browser();
    user.log_in(DEMO_USER, DEMO_PASSWORD)
        .await
        .assert_redirect("/");
    let adds = (0..100).map(|i| {
        let browser = user.clone();
        let product = (1 + i % 4).to_string();
        async move { browser.add_to_cart(&product, "1").await }
    });
    for page in futures::future::join_all(adds).await {
        page.assert_redirect("/cart");
    }
    let cart = user.get("/cart").await;
    assert_eq!(cart.cart_lines().iter().map(|(_, q)| q).sum::<u32>(), 100);
    assert_eq!(cart.cart_badge(), 100);
}
