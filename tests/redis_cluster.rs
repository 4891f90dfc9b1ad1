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
use std::time::{Duration, Instant};

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

/// One primary of a 3 + 3 cluster killed while shoppers browse and add: only the
/// shoppers whose session or cart lives on it notice (the shop's 503 or read-only
/// page, each at once), the others are served as if nothing happened; once the
/// cluster has promoted the replica, every shopper is served again with the
/// session and the cart from before.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_primary_failing_over_holds_up_only_the_shoppers_on_its_slots() {
    const SHOPPERS: usize = 12;
    let mut cluster = RedisCluster::start_with(1).await;
    let dir = Arc::new(tempfile::tempdir().unwrap());
    let url = cluster.url();
    let app = TestApp::spawn_full(
        None,
        dir.clone(),
        sqlite_url(dir.path()),
        "replica-a",
        move |c| {
            c.redis_url = Some(url);
        },
    )
    .await;
    let mut shoppers = Vec::new();
    for i in 0..SHOPPERS {
        let browser = app.browser();
        let name = format!("slot-shopper-{i}");
        browser
            .register(&name, "a long enough password")
            .await
            .assert_redirect("/");
        browser.add_to_cart("1", "1").await.assert_redirect("/cart");
        let user_id = app.user_id(&name).await;
        shoppers.push((name, browser, user_id));
    }

    // The primary that holds the first shopper's session is the one to fail.
    let primaries = cluster.primaries().await;
    assert_eq!(primaries.len(), 3);
    let holds = |port: u16, key: String| async move {
        support::ha::cli(port, &["EXISTS", &key]).await.trim() == "1"
    };
    let first_sid = shoppers[0].1.sid().unwrap();
    let mut victim = primaries[0];
    for &p in &primaries {
        if holds(cluster.nodes[p].port, first_sid.clone()).await {
            victim = p;
        }
    }
    let victim_port = cluster.nodes[victim].port;
    let mut on_victim = Vec::new();
    for (_, browser, user_id) in &shoppers {
        let session = holds(victim_port, browser.sid().unwrap()).await;
        let cart = holds(victim_port, format!("cart:{{u{user_id}}}")).await;
        on_victim.push(session || cart);
    }
    assert!(on_victim[0]);
    assert!(
        on_victim.iter().any(|on| !on),
        "some shopper must live elsewhere: {on_victim:?}"
    );

    // Only what is written from now on may be lost with the primary.
    support::ha::replicated(victim_port).await;
    cluster.nodes[victim].kill();
    let killed = Instant::now();
    let mut added = [1u32; SHOPPERS];
    let mut refused_while_failing = [0u32; SHOPPERS];
    let mut recovered = false;
    while killed.elapsed() < Duration::from_secs(15) {
        let mut all_served = true;
        for (i, (name, browser, _)) in shoppers.iter().enumerate() {
            let started = Instant::now();
            let page = browser.get("/").await;
            let add = browser.add_to_cart("2", "1").await;
            let took = started.elapsed();
            let served = page.logged_in_as().as_deref() == Some(name.as_str())
                && add.status == StatusCode::SEE_OTHER;
            // Acknowledged as added (not "a line holds at most 99": a long failover
            // brings a line to its cap, and a capped add stores nothing more).
            if add.status == StatusCode::SEE_OTHER
                && add
                    .set_cookies()
                    .iter()
                    .any(|c| c.starts_with("notice=added-"))
            {
                added[i] += 1;
            }
            if on_victim[i] {
                // The shop's own pages, and at once: nothing waits for the dead node.
                assert_eq!(page.status, StatusCode::OK, "{name}: {page:?}");
                assert!(
                    page.logged_in_as().as_deref() == Some(name.as_str())
                        || page.body.contains("temporarily unavailable"),
                    "{name}: {page:?}"
                );
                assert!(
                    matches!(
                        add.status,
                        StatusCode::SEE_OTHER | StatusCode::SERVICE_UNAVAILABLE
                    ),
                    "{name}: {add:?}"
                );
                assert!(took < Duration::from_millis(1500), "{name}: took {took:?}");
                refused_while_failing[i] += u32::from(!served);
            } else {
                assert!(
                    served,
                    "{name} lives on healthy primaries and must not notice: {page:?} {add:?}"
                );
            }
            all_served &= served;
        }
        if all_served && killed.elapsed() > Duration::from_secs(1) {
            recovered = true;
            break;
        }
    }
    assert!(recovered, "every shopper served again after the failover");
    let failover = killed.elapsed();
    for (i, (name, browser, _)) in shoppers.iter().enumerate() {
        let cart = browser.get("/cart").await;
        assert_eq!(cart.logged_in_as().as_deref(), Some(name.as_str()));
        let units: u32 = cart.cart_lines().iter().map(|(_, q)| q).sum();
        assert!(
            units >= added[i],
            "{name}: {units} units stored, {} acknowledged",
            added[i]
        );
    }
    let affected = on_victim.iter().filter(|on| **on).count();
    assert!(
        refused_while_failing.iter().sum::<u32>() > 0,
        "the failed primary's shoppers were refused while it was down"
    );
    println!(
        "cluster failover: {affected} of {SHOPPERS} shoppers have their session or cart on \
         the failed primary ({} refused requests until it was replaced, {failover:?}); \
         the other {} were never refused",
        refused_while_failing.iter().sum::<u32>(),
        SHOPPERS - affected
    );
}
