//! Redis Cluster: three primaries made with `redis-cli --cluster create`, two app
//! instances with `REDIS_URL=redis-cluster://…`. Every script and multi-key command
//! must touch one hash slot (CROSSSLOT would be a 503 here): the whole journey, the
//! login merge, the throttle and concurrent adds all work, with keys on all three.

// The shared test support (tests/support/), the parts this suite uses; an
// `allow(dead_code)` marks a module it uses only some of.
mod support {
    #[allow(dead_code)]
    pub mod api;
    #[allow(dead_code)]
    pub mod app;
    #[allow(dead_code)]
    pub mod browser;
    #[allow(dead_code)]
    pub mod ha;
    #[allow(dead_code)]
    pub mod impair;
    #[allow(dead_code)]
    pub mod postgres;
    pub mod process;
    pub mod races;
    #[allow(dead_code)]
    pub mod redis;
}

use std::sync::Arc;

use reqwest::StatusCode;

use support::api::{DEMO_PASSWORD, DEMO_USER};
use support::app::{sqlite_url, TestApp};
use support::browser::Browser;
use support::ha::RedisCluster;
use support::races::{in_batches, race_adds_against_login};

async fn two_instances(cluster: &RedisCluster) -> (TestApp, TestApp) {
    let dir = Arc::new(tempfile::tempdir().unwrap());
    let database_url = sqlite_url(dir.path());
    let url = cluster.url();
    let first = TestApp::spawn_full(None, dir.clone(), database_url.clone(), "replica-a", {
        let url = url.clone();
        move |c| {
            c.redis_url = Some(url);
            // The login-race test registers a few dozen accounts from one address.
            c.register_max_per_client = 1000;
        }
    })
    .await;
    // After the first: it has migrated the database.
    let second = TestApp::spawn_full(None, dir, database_url, "replica-b", move |c| {
        c.redis_url = Some(url)
    })
    .await;
    (first, second)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_whole_journey_works_on_a_redis_cluster() {
    let cluster = RedisCluster::start().await;
    let (first, second) = two_instances(&cluster).await;
    let ready = first.browser().get("/readyz").await;
    assert_eq!(ready.status, StatusCode::OK, "{}", ready.body);
    assert!(ready.body.contains("3 cluster primaries"), "{}", ready.body);

    // Browse and add, anonymously.
    let visitor = first.browser();
    let catalog = visitor.get("/").await;
    assert_eq!(catalog.status, StatusCode::OK);
    assert_eq!(catalog.body.matches("class=\"product-card\"").count(), 12);
    visitor.add_to_cart("1", "2").await.assert_redirect("/cart");
    visitor.add_to_cart("4", "1").await.assert_redirect("/cart");

    // Register (the anonymous cart comes along), then log out.
    visitor
        .register("cluster-shopper", "a long enough password")
        .await
        .assert_redirect("/");
    let cart = visitor.get("/cart").await;
    assert_eq!(cart.logged_in_as().as_deref(), Some("cluster-shopper"));
    assert_eq!(
        cart.cart_lines(),
        vec![("Blue Teapot".into(), 2), ("Bamboo Whisk".into(), 1)]
    );
    visitor.log_out().await.assert_redirect("/");

    // Anonymous again, on the other instance: a new cart, merged at login.
    let on_second = visitor.at(&second.address);
    on_second
        .add_to_cart("6", "3")
        .await
        .assert_redirect("/cart");
    on_second
        .log_in("cluster-shopper", "a long enough password")
        .await
        .assert_redirect("/");
    let merged = on_second.get("/cart").await;
    assert_eq!(merged.logged_in_as().as_deref(), Some("cluster-shopper"));
    assert_eq!(
        merged.cart_lines().iter().map(|(_, q)| q).sum::<u32>(),
        6,
        "{:?}",
        merged.cart_lines()
    );

    // Log in elsewhere (another browser, the first instance): the same cart.
    let elsewhere = first.browser();
    elsewhere
        .log_in("cluster-shopper", "a long enough password")
        .await
        .assert_redirect("/");
    assert_eq!(
        elsewhere.get("/cart").await.cart_lines(),
        merged.cart_lines()
    );
    // Wrong passwords are counted (the throttle's keys) and answered as usual.
    let wrong = first
        .browser()
        .log_in("cluster-shopper", "not the password")
        .await;
    assert_eq!(wrong.status, StatusCode::UNAUTHORIZED, "{wrong:?}");
    let inspector = elsewhere.get("/session").await;
    inspector.assert_contains("3 cluster primaries");

    // More shoppers, so that keys land on every primary.
    for i in 0..12 {
        let shopper = if i % 2 == 0 {
            first.browser()
        } else {
            second.browser()
        };
        shopper
            .add_to_cart(&(1 + i % 12).to_string(), "1")
            .await
            .assert_redirect("/cart");
    }
    let per_node = cluster.keys_per_node().await;
    for (node, keys) in cluster.nodes.iter().zip(&per_node) {
        assert!(
            !keys.is_empty(),
            "no keys on {}: {per_node:?}",
            node.address()
        );
    }
    println!(
        "keys per primary: {:?}",
        per_node.iter().map(Vec::len).collect::<Vec<_>>()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_adds_on_a_cluster_lose_nothing_and_cap_exactly() {
    let cluster = RedisCluster::start().await;
    let (first, second) = two_instances(&cluster).await;
    let user = first.browser();
    user.log_in(DEMO_USER, DEMO_PASSWORD)
        .await
        .assert_redirect("/");
    let on_second = user.at(&second.address);
    let browsers = [&user, &on_second];
    let adds = |count: usize| {
        futures::future::join_all((0..count).map(|i| {
            let browser = browsers[i % 2].clone();
            async move { browser.add_to_cart("1", "1").await }
        }))
    };
    for page in adds(60).await {
        page.assert_redirect("/cart");
    }
    assert_eq!(
        user.get("/cart").await.cart_lines(),
        vec![("Blue Teapot".into(), 60)],
        "every add counted"
    );
    for page in adds(100).await {
        page.assert_redirect("/cart");
    }
    for browser in browsers {
        let cart = browser.get("/cart").await;
        assert_eq!(cart.logged_in_as().as_deref(), Some("demo"));
        assert_eq!(cart.cart_lines(), vec![("Blue Teapot".into(), 99)]);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn adds_racing_their_own_login_are_never_lost_on_a_cluster() {
    let cluster = RedisCluster::start().await;
    let (first, second) = two_instances(&cluster).await;
    let visitors = 20;
    for i in 0..visitors {
        let browser = first.browser();
        browser
            .register(&format!("cluster-racer{i}"), "racing-pass-123")
            .await
            .assert_redirect("/");
        browser.log_out().await;
    }
    let races = (0..visitors).map(|i| {
        let visitor = first.browser();
        let other = second.address.clone();
        async move {
            let name = format!("cluster-racer{i}");
            let (acknowledged, refused) =
                race_adds_against_login(visitor, &other, &name, "racing-pass-123").await;
            (i, acknowledged, refused)
        }
    });
    let mut all_refused = 0;
    for (i, acknowledged, refused) in in_batches(races).await {
        let later = Browser::new(&second.address);
        later
            .log_in(&format!("cluster-racer{i}"), "racing-pass-123")
            .await
            .assert_redirect("/");
        let stored: u32 = later
            .get("/cart")
            .await
            .cart_lines()
            .into_iter()
            .map(|(_, quantity)| quantity)
            .sum();
        assert_eq!(
            stored,
            1 + acknowledged,
            "cluster-racer{i} ({refused} refused)"
        );
        all_refused += refused;
    }
    // The anonymous carts and the users' carts are spread over the three primaries.
    let per_node = cluster.keys_per_node().await;
    assert!(
        per_node
            .iter()
            .all(|keys| keys.iter().any(|k| k.starts_with("cart:"))),
        "{per_node:?}"
    );
    assert!(all_refused > 0, "the race never happened");
}
