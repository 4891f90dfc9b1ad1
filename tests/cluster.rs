//! The demo itself, with real processes: a redis-server, three replicas of the
//! built binary sharing one SQLite file, and nginx in front, rendered from the
//! same template docker-compose and scripts/cluster use. Each test builds its
//! own cluster on free loopback ports (see `support::cluster`).

// The shared test support (tests/support/), the parts this suite uses; an
// `allow(dead_code)` marks a module it uses only some of.
mod support {
    #[allow(dead_code)]
    pub mod api;
    #[allow(dead_code)]
    pub mod browser;
    pub mod cluster;
    pub mod process;
    #[allow(dead_code)]
    pub mod redis;
}

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use fred::prelude::HashesInterface;
use reqwest::{Method, StatusCode};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use support::api::{DEMO_PASSWORD, DEMO_USER};
use support::browser::Browser;
use support::cluster::{fetch, footer_replica, plain_client, session_row, Cluster};
use support::process::{send_signal, wait_until};

const PAGES: [&str; 4] = ["/session", "/cart", "/", "/products/blue-teapot"];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn login_and_cart_follow_the_user_from_replica_to_replica() {
    let cluster = Cluster::start().await;
    let user = cluster.browser();
    let login = user.log_in(DEMO_USER, DEMO_PASSWORD).await;
    login.assert_redirect("/");
    let created_by = login.served_by().to_owned();
    user.add_to_cart("1", "2").await.assert_redirect("/cart");
    user.add_to_cart("3", "1").await.assert_redirect("/cart");
    let cart = user.get("/cart").await.cart_lines();
    assert_eq!(
        cart,
        vec![("Blue Teapot".into(), 2), ("Porcelain Cup Set".into(), 1)]
    );

    let mut served = HashSet::new();
    let mut inspector_served = HashSet::new();
    for i in 0..20 {
        // Four pages in turn over three replicas: each page meets each replica.
        let path = PAGES[i % PAGES.len()];
        let page = user.get(path).await;
        assert_eq!(page.status, StatusCode::OK, "GET {path}: {page:?}");
        let replica = page.served_by().to_owned();
        assert_eq!(footer_replica(&page).as_deref(), Some(replica.as_str()));
        assert_eq!(
            page.logged_in_as().as_deref(),
            Some(DEMO_USER),
            "GET {path} on {replica}"
        );
        assert_eq!(page.cart_badge(), 3, "GET {path} on {replica}");
        match path {
            "/cart" => assert_eq!(page.cart_lines(), cart, "the cart on {replica}"),
            "/session" => {
                assert_eq!(session_row(&page, "Served now by"), Some(replica.clone()));
                assert_eq!(session_row(&page, "Created by"), Some(created_by.clone()));
                inspector_served.insert(replica.clone());
            }
            _ => {}
        }
        served.insert(replica);
    }
    let all: HashSet<String> = cluster.replica_names().into_iter().collect();
    assert_eq!(served, all, "round robin over every replica");
    assert!(
        inspector_served.len() >= 2,
        "/session was served by {inspector_served:?} only"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_replica_costs_the_user_nothing() {
    let mut cluster = Cluster::start().await;
    let user = cluster.browser();
    user.log_in(DEMO_USER, DEMO_PASSWORD)
        .await
        .assert_redirect("/");
    user.add_to_cart("2", "1").await.assert_redirect("/cart");

    let victim = "replica-2";
    let status = cluster.replicas[1].kill().await;
    assert!(!status.success(), "kill -9 ends the process: {status}");

    // Right after the kill: every GET succeeds (nginx passes the ones that meet
    // the dead replica on to the next), and the user is still logged in.
    let mut failures = Vec::new();
    let mut served = HashSet::new();
    for i in 0..30 {
        let path = PAGES[i % PAGES.len()];
        match fetch(user.request(Method::GET, path)).await {
            Ok(page)
                if page.status == StatusCode::OK
                    && page.logged_in_as().as_deref() == Some(DEMO_USER)
                    && page.cart_badge() == 1 =>
            {
                served.insert(page.served_by().to_owned());
            }
            Ok(page) => failures.push(format!(
                "GET {path}: {} from {:?}",
                page.status,
                page.served_by()
            )),
            Err(e) => failures.push(format!("GET {path}: {e}")),
        }
    }
    assert!(
        failures.is_empty(),
        "{failures:#?}\n{}",
        cluster.diagnostics()
    );
    assert!(!served.contains(victim), "served by {served:?}");
    assert_eq!(served.len(), 2, "both survivors serve: {served:?}");

    // Once its 2 s `fail_timeout` is over, nginx tries the dead replica again.
    // A POST that meets it was refused at connect, so never sent: nginx passes
    // it on safely. Keep adding until nginx's log shows that happened.
    let victim_port = cluster.replica(victim).port;
    let refused_post = format!(
        "request: \"POST /cart/add HTTP/1.1\", upstream: \"http://127.0.0.1:{victim_port}/cart/add\""
    );
    let mut adds = 1;
    let start = Instant::now();
    while !cluster.nginx_error_log().contains(&refused_post) {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "no POST met {victim}\n{}",
            cluster.diagnostics()
        );
        user.add_to_cart("2", "1").await.assert_redirect("/cart");
        adds += 1;
        // Pacing (the line's cap is 99), not synchronisation.
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let cart = user.get("/cart").await;
    assert_eq!(cart.cart_lines(), vec![("Cast Iron Kettle".into(), adds)]);
}

/// What one client loop saw.
#[derive(Debug, Default)]
struct Traffic {
    requests: u32,
    failures: Vec<String>,
    served_by: HashSet<String>,
    /// Successful adds per product id.
    added: HashMap<u32, u32>,
}

/// Bounds for the client loops, whatever happens to the test.
const LOOP_LIMIT: Duration = Duration::from_secs(120);

/// GETs pages in turn until told to stop; every page must come back 200, logged in.
async fn keep_browsing(user: Browser, stop: Arc<AtomicBool>) -> Traffic {
    let mut traffic = Traffic::default();
    let start = Instant::now();
    while !stop.load(Ordering::SeqCst) && start.elapsed() < LOOP_LIMIT {
        let path = PAGES[traffic.requests as usize % PAGES.len()];
        traffic.requests += 1;
        match fetch(user.request(Method::GET, path)).await {
            Ok(page)
                if page.status == StatusCode::OK
                    && page.logged_in_as().as_deref() == Some(DEMO_USER) =>
            {
                traffic.served_by.insert(page.served_by().to_owned());
            }
            Ok(page) => traffic.failures.push(format!(
                "GET {path}: {} from {:?}, logged in as {:?}",
                page.status,
                page.served_by(),
                page.logged_in_as()
            )),
            Err(e) => traffic.failures.push(format!("GET {path}: {e}")),
        }
        // Pacing, not synchronisation: leave the two cores some room.
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    traffic
}

/// Adds one of the 12 products at a time until told to stop (at most 90 of each,
/// below the cart's cap of 99 per line, so every successful add must count).
async fn keep_adding(user: Browser, stop: Arc<AtomicBool>) -> Traffic {
    let mut traffic = Traffic::default();
    let start = Instant::now();
    while !stop.load(Ordering::SeqCst) && start.elapsed() < LOOP_LIMIT && traffic.requests < 12 * 90
    {
        let product = 1 + traffic.requests % 12;
        traffic.requests += 1;
        let id = product.to_string();
        let form = [("product_id", id.as_str()), ("quantity", "1")];
        match fetch(user.request(Method::POST, "/cart/add").form(&form)).await {
            Ok(page)
                if page.status == StatusCode::SEE_OTHER && page.location() == Some("/cart") =>
            {
                *traffic.added.entry(product).or_default() += 1;
                traffic.served_by.insert(page.served_by().to_owned());
            }
            Ok(page) => traffic.failures.push(format!(
                "POST /cart/add {product}: {} from {:?}",
                page.status,
                page.served_by()
            )),
            Err(e) => traffic
                .failures
                .push(format!("POST /cart/add {product}: {e}")),
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    traffic
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn rolling_restarts_with_keep_alive_lose_no_request_and_no_cart_addition() {
    let mut cluster = Cluster::start().await;
    let user = cluster.browser();
    user.log_in(DEMO_USER, DEMO_PASSWORD)
        .await
        .assert_redirect("/");

    let stop = Arc::new(AtomicBool::new(false));
    let browsing = tokio::spawn(keep_browsing(user.clone(), stop.clone()));
    let adding = tokio::spawn(keep_adding(user.clone(), stop.clone()));

    // Two full rolls (six restarts), over nginx's kept-alive upstream connections.
    let restarts = 2 * cluster.replicas.len();
    for i in (0..cluster.replicas.len()).cycle().take(restarts) {
        let replica = &mut cluster.replicas[i];
        // Graceful: stop accepting, finish what is in flight, exit 0.
        let status = replica.terminate().await;
        assert!(status.success(), "{} exited with {status}", replica.name);
        replica.spawn();
        replica.wait_ready().await;
        let name = replica.name.clone();
        cluster.wait_until_nginx_routes_to(&name).await;
    }
    stop.store(true, Ordering::SeqCst);
    let browsing = browsing.await.unwrap();
    let adding = adding.await.unwrap();

    let failures: Vec<&String> = browsing.failures.iter().chain(&adding.failures).collect();
    assert!(
        failures.is_empty(),
        "{} of {} requests failed: {failures:#?}\n{}",
        failures.len(),
        browsing.requests + adding.requests,
        cluster.diagnostics()
    );
    assert!(
        browsing.requests >= 20 && adding.requests >= 20,
        "{browsing:?} {adding:?}"
    );
    println!(
        "{restarts} restarts: {} GETs and {} POSTs, 0 failed",
        browsing.requests, adding.requests
    );
    // nginx never met a kept-alive connection that the replica closed under it.
    // (A reset of a connection accepted at the very moment a listener closes is
    // the kernel race shutdown.rs describes: nginx retries a GET that meets it; it
    // is counted here, and the assertion above holds the line for every request.)
    let errors = cluster.nginx_error_log();
    assert!(!errors.contains("prematurely closed"), "{errors}");
    println!(
        "connections reset at a listener's close: {}",
        errors.matches("reset by peer").count()
    );
    // Connections still queued in the kernel when a listener closed, served rather
    // than reset (shutdown.rs): how often the close met one.
    let queued: u64 = cluster
        .replicas
        .iter()
        .flat_map(|replica| replica.log_lines())
        .filter(|line| line["fields"]["message"] == "no longer accepting connections")
        .filter_map(|line| line["fields"]["queued"].as_u64())
        .sum();
    println!("connections taken from the queue as a listener closed: {queued}");

    // Every successful add is in the cart, and nothing else is.
    let redis = cluster.redis.client().await;
    let cart: HashMap<String, u32> = redis.hgetall("cart:{u1}").await.unwrap();
    let cart: HashMap<u32, u32> = cart
        .into_iter()
        .map(|(product, quantity)| (product.parse().unwrap(), quantity))
        .collect();
    assert_eq!(cart, adding.added, "cart in Redis vs successful adds");
    let page = user.get("/cart").await;
    assert_eq!(page.logged_in_as().as_deref(), Some(DEMO_USER));
    let total: u32 = adding.added.values().sum();
    assert_eq!(page.cart_lines().iter().map(|(_, q)| q).sum::<u32>(), total);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_lets_the_request_in_flight_finish_then_exits_0() {
    let mut cluster = Cluster::start().await;
    let user = cluster.browser();
    user.log_in(DEMO_USER, DEMO_PASSWORD)
        .await
        .assert_redirect("/");
    let sid = user.sid().expect("a session cookie");
    let port = cluster.replicas[0].port;

    // A POST straight to replica-1 that is inside the handler: hyper answers
    // "100 Continue" only when the handler starts reading the form.
    let body = "product_id=4&quantity=3";
    let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    let head = format!(
        "POST /cart/add HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nCookie: sid={sid}\r\n\
         Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\
         Expect: 100-continue\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    let interim = read_head(&mut stream).await;
    assert!(interim.starts_with("HTTP/1.1 100"), "{interim}");

    // SIGTERM while that request waits for its body.
    send_signal(cluster.replicas[0].pid(), "TERM");

    // The drain window (SHUTDOWN_DRAIN, 3 s): /readyz fails at once, so nginx
    // stops choosing this replica, but pages are still served, each on a
    // connection closed after its response so nginx retires it cleanly.
    let draining =
        move || async move { head_of(port, "/readyz").await.starts_with("HTTP/1.1 503") };
    wait_until(
        "replica-1 to fail /readyz",
        Duration::from_secs(2),
        draining,
    )
    .await;
    let page = head_of(port, "/").await;
    assert!(page.starts_with("HTTP/1.1 200"), "{page}");
    assert!(
        page.to_ascii_lowercase()
            .contains("\r\nconnection: close\r\n"),
        "{page}"
    );

    let refused = move || async move {
        tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_err()
    };
    wait_until(
        "replica-1 to stop accepting",
        Duration::from_secs(10),
        refused,
    )
    .await;
    assert!(cluster.replicas[0].is_running(), "still draining");

    // The request still completes...
    stream.write_all(body.as_bytes()).await.unwrap();
    let mut response = String::new();
    tokio::time::timeout(
        Duration::from_secs(10),
        stream.read_to_string(&mut response),
    )
    .await
    .expect("the response comes")
    .unwrap();
    assert!(response.starts_with("HTTP/1.1 303"), "{response}");
    assert!(
        response.to_ascii_lowercase().contains("location: /cart"),
        "{response}"
    );

    // ... and then the process exits 0.
    let status = cluster.replicas[0].wait_exit().await;
    assert!(status.success(), "exit status {status}");
    let log = cluster.replicas[0].log_text();
    assert!(log.contains("shutting down"), "{log}");
    assert!(log.contains("\"stopped\""), "{log}");

    let cart = user.get("/cart").await;
    assert_eq!(cart.logged_in_as().as_deref(), Some(DEMO_USER));
    assert_eq!(cart.cart_lines(), vec![("Bamboo Whisk".into(), 3)]);
}

/// Reads a response head (up to the blank line) from a raw connection.
/// The response head of a keep-alive `GET path` sent straight to a replica.
async fn head_of(port: u16, path: &str) -> String {
    let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    let request = format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    read_head(&mut stream).await
}

async fn read_head(stream: &mut tokio::net::TcpStream) -> String {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        let n = tokio::time::timeout(Duration::from_secs(10), stream.read(&mut byte))
            .await
            .expect("the server answers")
            .unwrap();
        assert_eq!(
            n,
            1,
            "connection closed after {:?}",
            String::from_utf8_lossy(&head)
        );
        head.push(byte[0]);
    }
    String::from_utf8(head).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_and_carts_survive_a_redis_restart() {
    let cluster = Cluster::start_with_aof().await;
    let user = cluster.browser();
    user.log_in(DEMO_USER, DEMO_PASSWORD)
        .await
        .assert_redirect("/");
    user.add_to_cart("5", "2").await.assert_redirect("/cart");
    user.add_to_cart("6", "1").await.assert_redirect("/cart");
    let before = user.get("/cart").await.cart_lines();
    let sid = user.sid();

    // Killed and started again on the same port and data directory; the replicas
    // are not touched and must reconnect by themselves.
    cluster.redis.restart().await;
    cluster.wait_until_every_replica_is_ready(5).await;

    let mut served = HashSet::new();
    for _ in 0..6 {
        let page = user.get("/cart").await;
        assert_eq!(page.status, StatusCode::OK, "{page:?}");
        assert_eq!(page.logged_in_as().as_deref(), Some(DEMO_USER));
        assert_eq!(page.cart_lines(), before, "on {}", page.served_by());
        served.insert(page.served_by().to_owned());
    }
    assert_eq!(served.len(), 3, "every replica reconnected: {served:?}");
    assert_eq!(user.sid(), sid, "the same session");

    user.add_to_cart("5", "1").await.assert_redirect("/cart");
    let after = user.get("/cart").await.cart_lines();
    assert_eq!(
        after,
        vec![("Loose Leaf Sencha".into(), 3), ("Earl Grey Tin".into(), 1)]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn twenty_people_register_at_once_through_two_replicas() {
    let cluster = Cluster::start().await;
    let first = cluster.replica("replica-1").url();
    let second = cluster.replica("replica-2").url();

    let people: Vec<(String, Browser)> = (0..20)
        .map(|i| {
            let base = if i % 2 == 0 { &first } else { &second };
            (format!("racer-{i:02}"), Browser::new(base))
        })
        .collect();
    let registrations = people.iter().map(|(name, browser)| async move {
        fetch(browser.request(Method::POST, "/register").form(&[
            ("username", name.as_str()),
            ("password", "correct-horse-battery"),
            ("password_confirm", "correct-horse-battery"),
        ]))
        .await
    });
    let results = futures::future::join_all(registrations).await;
    for ((name, _), result) in people.iter().zip(&results) {
        let page = result.as_ref().unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(page.status, StatusCode::SEE_OTHER, "{name}: {}", page.body);
        assert_eq!(page.location(), Some("/"), "{name}");
    }

    for replica in &cluster.replicas {
        let log = replica.log_text().to_ascii_lowercase();
        assert!(
            !log.contains("database is locked"),
            "{}:\n{log}",
            replica.name
        );
        assert!(
            !log.contains("\"level\":\"error\""),
            "{}:\n{log}",
            replica.name
        );
    }

    let db = sqlx::SqlitePool::connect(&format!(
        "sqlite://{}?mode=ro",
        cluster.database_path().display()
    ))
    .await
    .unwrap();
    let names: Vec<String> = sqlx::query_scalar(
        "SELECT username FROM users WHERE username LIKE 'racer-%' ORDER BY username",
    )
    .fetch_all(&db)
    .await
    .unwrap();
    let expected: Vec<String> = people.iter().map(|(name, _)| name.clone()).collect();
    assert_eq!(names, expected);
    db.close().await;

    // Each new account is logged in, on whichever replica nginx picks.
    for (name, browser) in &people {
        let page = browser.at(&cluster.url).get("/").await;
        assert_eq!(page.logged_in_as().as_deref(), Some(name.as_str()));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_request_id_goes_from_nginx_into_the_replicas_log() {
    let cluster = Cluster::start().await;
    let user = cluster.browser();

    let login = fetch(
        user.request(Method::POST, "/login")
            .header("X-Request-Id", "test-123")
            .form(&[("username", DEMO_USER), ("password", DEMO_PASSWORD)]),
    )
    .await
    .unwrap();
    login.assert_redirect("/");
    assert_eq!(login.headers["x-request-id"], "test-123");
    let replica = cluster.replica(login.served_by());

    // Every line logged while serving it (here the handler's "logged in")
    // carries the request span's fields, the request id among them.
    let logged = replica.log_lines().into_iter().any(|line| {
        line["spans"].as_array().is_some_and(|spans| {
            spans
                .iter()
                .any(|span| span["request_id"] == "test-123" && span["path"] == "/login")
        })
    });
    assert!(
        logged,
        "no line with request_id test-123:\n{}",
        replica.log_text()
    );
    for other in cluster.replicas.iter().filter(|r| r.name != replica.name) {
        assert!(!other.log_text().contains("test-123"), "{}", other.name);
    }

    // Without one, or with a malformed one, nginx makes its own (32 hex digits).
    for sent in [None, Some("bad id with spaces")] {
        let mut request = user.request(Method::GET, "/healthz");
        if let Some(id) = sent {
            request = request.header("X-Request-Id", id);
        }
        let page = fetch(request).await.unwrap();
        let id = page.headers["x-request-id"].to_str().unwrap();
        assert_eq!(id.len(), 32, "{id}");
        assert!(id.bytes().all(|b| b.is_ascii_hexdigit()), "{id}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forged_forwarded_for_through_nginx_buys_no_extra_guesses() {
    let cluster = Cluster::start().await;
    // Each guess claims another address; nginx overwrites the claim with the
    // address it saw, so all of them count against this client: 5 are checked.
    let mut statuses = Vec::new();
    for i in 0..8 {
        let page = fetch(
            cluster
                .browser()
                .request(Method::POST, "/login")
                .header("X-Forwarded-For", format!("203.0.113.{i}"))
                .form(&[("username", DEMO_USER), ("password", "wrong password")]),
        )
        .await
        .unwrap();
        statuses.push(page.status);
    }
    let checked = statuses
        .iter()
        .filter(|s| **s == StatusCode::UNAUTHORIZED)
        .count();
    assert_eq!(checked, 5, "{statuses:?}");
    assert!(
        statuses[5..]
            .iter()
            .all(|s| *s == StatusCode::TOO_MANY_REQUESTS),
        "{statuses:?}"
    );
    // The replicas saw the client's real address, never a forged one.
    let keys = cluster.redis.cli(&["KEYS", "throttle:login:*"]);
    assert!(!keys.contains("203.0.113."), "{keys}");
    assert!(
        keys.lines()
            .any(|k| k.trim() == "throttle:login:{user:demo}:from:127.0.0.1"),
        "{keys}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_owners_login_gets_through_a_flood_of_allowed_guesses_within_two_seconds() {
    let cluster = Cluster::start().await;
    let replica = cluster.replica("replica-1").url();
    // A sustained flood from 10 networks, 5 senders each, every guess within the
    // throttle's limits (a spray: a new username each time), sent to one replica
    // directly through its trusted address. A guess told "try again in a moment"
    // is sent again at once; a network stops when the throttle has counted its 20
    // failures (200 checks in all, the most 10 networks may cost per window).
    let checked = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let refused_at_once = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let flood: Vec<_> = (0..50)
        .map(|worker| {
            let replica = replica.clone();
            let (checked, refused_at_once) = (checked.clone(), refused_at_once.clone());
            tokio::spawn(async move {
                let browser = Browser::new(&replica);
                let deadline = Instant::now() + Duration::from_secs(60);
                for guess in 0.. {
                    let request = browser
                        .request(Method::POST, "/login")
                        .header("X-Forwarded-For", format!("203.0.113.{}", worker % 10))
                        .form(&[
                            ("username", format!("sprayed{worker}x{guess}").as_str()),
                            ("password", "a guess"),
                        ]);
                    let page = fetch(request).await.unwrap();
                    match page.status {
                        StatusCode::UNAUTHORIZED => {
                            checked.fetch_add(1, Ordering::SeqCst);
                        }
                        StatusCode::TOO_MANY_REQUESTS
                            if page.body.contains("checking many passwords") =>
                        {
                            refused_at_once.fetch_add(1, Ordering::SeqCst);
                        }
                        // The network's failures are all counted: this sender is done.
                        StatusCode::TOO_MANY_REQUESTS
                            if page.body.contains("Too many failed logins") =>
                        {
                            break
                        }
                        // Anything else ("being checked at this moment", a 503 of
                        // a loaded machine): sent again, as an attacker would.
                        _ => {}
                    }
                    if Instant::now() > deadline {
                        break;
                    }
                }
            })
        })
        .collect();
    // Once every flooding network had guesses checked (the line is theirs)...
    wait_until("twenty guesses checked", Duration::from_secs(30), || {
        let checked = checked.load(Ordering::SeqCst);
        async move { checked >= 20 }
    })
    .await;
    // ...the owner logs in three times in a row, from another network.
    let owner = Browser::new(&replica);
    let mut waited = Vec::new();
    for _ in 0..3 {
        let started = Instant::now();
        let page = fetch(
            owner
                .request(Method::POST, "/login")
                .header("X-Forwarded-For", "198.51.100.7")
                .form(&[("username", DEMO_USER), ("password", DEMO_PASSWORD)]),
        )
        .await
        .unwrap();
        let took = started.elapsed();
        assert_eq!(page.status, StatusCode::SEE_OTHER, "after {took:?}");
        waited.push(took);
        owner.log_out().await;
    }
    let during = checked.load(Ordering::SeqCst);
    for task in flood {
        task.await.unwrap();
    }
    let (checked, refused) = (
        checked.load(Ordering::SeqCst),
        refused_at_once.load(Ordering::SeqCst),
    );
    eprintln!(
        "owner's logins took {waited:?}, with {during} of the flood's {checked} guesses \
         checked; {refused} guesses were refused at once and sent again"
    );
    assert!(
        waited.iter().all(|took| *took < Duration::from_secs(2)),
        "{waited:?}"
    );
    assert!(
        checked > during,
        "the flood was over before the owner's logins"
    );
    assert!(
        checked >= 150,
        "most of the 200 allowed guesses were checked: {checked}"
    );
    assert!(refused > 0, "the line was never full");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readyz_through_nginx_says_ready_and_nothing_more() {
    let cluster = Cluster::start().await;
    let page = fetch(cluster.browser().request(Method::GET, "/readyz"))
        .await
        .unwrap();
    assert_eq!(
        (page.status, page.body.as_str()),
        (StatusCode::OK, "ready\n")
    );
    // The replica itself, asked on its host, still tells the operator everything.
    let direct =
        fetch(plain_client().get(format!("{}/readyz", cluster.replica("replica-1").url())))
            .await
            .unwrap();
    assert!(
        direct
            .body
            .contains(&format!("127.0.0.1:{}", cluster.redis.port)),
        "{}",
        direct.body
    );
}

/// A request with a W3C `traceparent` through nginx: its trace id is in nginx's
/// access log (with the replica it went to) and on that replica's log lines.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_request_is_followed_by_its_trace_id_from_nginx_into_the_replicas_plain_log() {
    let cluster = Cluster::start_with_pretty_logs().await;
    let user = cluster.browser();
    let trace = "4bf92f3577b34da6a3ce929d0e0e4736";
    let traceparent = format!("00-{trace}-00f067aa0ba902b7-01");

    let page = fetch(
        user.request(Method::GET, "/session")
            .header("traceparent", &traceparent),
    )
    .await
    .unwrap();
    assert_eq!(page.status, StatusCode::OK);
    let replica = cluster.replica(page.served_by());
    // The session inspector shows the trace it served.
    assert_eq!(
        session_row(&page, "Trace id of this request").as_deref(),
        Some(trace)
    );

    // nginx logs the traceparent it forwarded, with the replica's address...
    let cluster = &cluster;
    let upstream = &format!("upstream=127.0.0.1:{} ", replica.port);
    let forwarded = &format!("traceparent={traceparent} ");
    wait_until(
        "nginx's access log line",
        Duration::from_secs(5),
        move || async move {
            cluster
                .nginx_access_log()
                .lines()
                .any(|line| line.contains(forwarded) && line.contains(upstream))
        },
    )
    .await;
    // ...and the replica that served it logs the trace id on the request's lines,
    // in plain text: its log is a file, so no colour codes that would hide
    // `trace_id=…` from grep.
    let needle = &format!("trace_id={trace}");
    wait_until(
        "the replica's request line",
        Duration::from_secs(5),
        move || async move {
            replica
                .log_text()
                .lines()
                .any(|line| line.contains(needle) && line.contains("finished processing request"))
        },
    )
    .await;
    let log = replica.log_text();
    assert!(!log.contains('\x1b'), "colour codes in a log file:\n{log}");
    assert!(log.contains("INFO"), "{log}");
    for other in cluster.replicas.iter().filter(|r| r.name != replica.name) {
        assert!(!other.log_text().contains(trace), "{}", other.name);
    }

    // Without a traceparent (or with a malformed one), nginx starts the trace
    // with its own request id, and its last 16 digits as the parent span.
    for sent in [None, Some("00-not-a-trace")] {
        let mut request = user.request(Method::GET, "/session");
        if let Some(value) = sent {
            request = request.header("traceparent", value);
        }
        let page = fetch(request).await.unwrap();
        let request_id = page.headers["x-request-id"].to_str().unwrap().to_owned();
        assert_eq!(
            session_row(&page, "Trace id of this request").as_deref(),
            Some(request_id.as_str())
        );
        let started = &format!("traceparent=00-{request_id}-{}-01 ", &request_id[16..]);
        wait_until(
            "nginx's access log line",
            Duration::from_secs(5),
            move || async move { cluster.nginx_access_log().contains(started) },
        )
        .await;
    }
}
