//! Hardening, point by point (SECURITY.md maps each threat to its test here):
//! cross-site requests, login throttling, timing, headers, redirects after login,
//! session lifetime, failed session saves, and a matrix of bad input.

use std::time::{Duration, Instant};

use fred::prelude::{ClientLike, KeysInterface};
use reqwest::{Method, StatusCode};

use crate::support::api::{DEMO_PASSWORD, DEMO_USER};
use crate::support::app::{Backend, TestApp};
use crate::support::browser::{Browser, Page};

/// A form's fields.
type Form<'a> = Vec<(&'a str, &'a str)>;

/// Everything in Redis, as (key, type, contents), to prove that nothing changed.
async fn redis_snapshot(app: &TestApp) -> Vec<(String, String)> {
    let mut all = Vec::new();
    for key in app.redis_keys().await {
        let redis = app.redis().unwrap();
        let kind: String = redis
            .next()
            .custom(fred::cmd!("TYPE"), vec![key.clone()])
            .await
            .unwrap();
        let value = match kind.as_str() {
            "hash" => format!("{:?}", {
                let mut h: Vec<_> = app.redis_hash(&key).await.into_iter().collect();
                h.sort();
                h
            }),
            "string" => format!("{:?}", redis.get::<Vec<u8>, _>(&key).await.unwrap()),
            other => other.to_owned(),
        };
        all.push((key, value));
    }
    all
}

// ---------------------------------------------------------------- 1. CSRF

#[tokio::test]
async fn cross_site_posts_are_refused_and_same_site_ones_pass() {
    let app = TestApp::spawn(Backend::Redis).await;
    let visitor = app.browser();
    let host = app.address.trim_start_matches("http://").to_owned();
    let form = [("product_id", "1"), ("quantity", "1")];

    let refused: [(&str, String); 5] = [
        ("sec-fetch-site", "cross-site".into()),
        ("sec-fetch-site", "same-site".into()),
        ("origin", "http://evil.example".into()),
        ("origin", "null".into()),
        // The same host over the other scheme is another origin.
        ("origin", format!("https://{host}")),
    ];
    for (header, value) in refused {
        let response = visitor
            .request(Method::POST, "/cart/add")
            .header(header, &value)
            .form(&form)
            .send()
            .await
            .unwrap();
        let page = Browser::read(response).await;
        assert_eq!(page.status, StatusCode::FORBIDDEN, "{header}: {value}");
        page.assert_contains("This form was sent from another site, so it was refused.");
    }
    assert!(
        app.redis_keys().await.is_empty(),
        "a refused request changes nothing"
    );

    // Sec-Fetch-Site wins over Origin; an Origin matching the host passes; no header at all passes.
    let passes: [Vec<(&str, String)>; 4] = [
        vec![("sec-fetch-site", "same-origin".into())],
        vec![
            ("sec-fetch-site", "none".into()),
            ("origin", "http://evil.example".into()),
        ],
        vec![("origin", format!("http://{host}"))],
        vec![],
    ];
    for headers in passes {
        let mut request = visitor.request(Method::POST, "/cart/add").form(&form);
        for (name, value) in &headers {
            request = request.header(*name, value);
        }
        let page = Browser::read(request.send().await.unwrap()).await;
        assert_eq!(page.status, StatusCode::SEE_OTHER, "{headers:?}");
    }
    assert_eq!(
        visitor.get("/cart").await.cart_lines(),
        vec![("Blue Teapot".into(), 4)]
    );

    // A cross-site logout is refused too.
    visitor.log_in(DEMO_USER, DEMO_PASSWORD).await;
    let response = visitor
        .request(Method::POST, "/logout")
        .header("sec-fetch-site", "cross-site")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    assert_eq!(
        visitor.get("/").await.logged_in_as().as_deref(),
        Some("demo")
    );
}

#[tokio::test]
async fn https_sites_send_hsts_and_check_the_origins_scheme() {
    let plain = TestApp::spawn(Backend::Memory).await;
    let page = plain.browser().get("/").await;
    assert!(!page.headers.contains_key("strict-transport-security"));

    let secure = TestApp::spawn_with(Backend::Memory, |c| c.cookie_secure = true).await;
    let page = secure.browser().get("/").await;
    assert_eq!(
        page.headers["strict-transport-security"],
        "max-age=31536000"
    );
    // Served over HTTPS, an http:// Origin of the same host is cross-site.
    let host = secure.address.trim_start_matches("http://").to_owned();
    for (origin, expected) in [
        (format!("http://{host}"), StatusCode::FORBIDDEN),
        (format!("https://{host}"), StatusCode::SEE_OTHER),
    ] {
        let request = secure
            .browser()
            .request(Method::POST, "/cart/add")
            .header("origin", &origin)
            .form(&[("product_id", "1"), ("quantity", "1")]);
        let page = Browser::read(request.send().await.unwrap()).await;
        assert_eq!(page.status, expected, "{origin}");
    }
}

// ---------------------------------------------------------------- 2. Throttling

#[tokio::test]
async fn five_failures_for_a_username_lock_it_for_the_window_on_every_replica() {
    let app = TestApp::spawn(Backend::Redis).await;
    let other_replica = app.sibling("other-replica").await;
    let attacker = app.browser();
    for _ in 0..5 {
        assert_eq!(
            attacker.log_in(DEMO_USER, "wrong password").await.status,
            StatusCode::UNAUTHORIZED
        );
    }
    // The sixth try, even with the right password and through another replica, waits.
    let blocked = attacker
        .at(&other_replica.address)
        .log_in(DEMO_USER, DEMO_PASSWORD)
        .await;
    assert_eq!(blocked.status, StatusCode::TOO_MANY_REQUESTS);
    let retry_after: u64 = blocked.headers["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(
        (850..=900).contains(&retry_after),
        "about 15 minutes: {retry_after}"
    );
    blocked.assert_contains("Too many failed logins. Please try again in 15 minutes.");
    assert_eq!(blocked.logged_in_as(), None);
    let ttl = app
        .redis_ttl("throttle:login:{user:demo}:from:127.0.0.1")
        .await;
    assert!((850..=900).contains(&ttl), "{ttl}");
    // Other accounts are not locked.
    assert_eq!(
        app.browser()
            .register("someone", "long enough pw")
            .await
            .status,
        StatusCode::SEE_OTHER
    );
}

#[tokio::test]
async fn a_successful_login_clears_the_username_counter() {
    let app = TestApp::spawn(Backend::Redis).await;
    let user = app.browser();
    for _ in 0..4 {
        user.log_in(DEMO_USER, "wrong password").await;
    }
    let count = |key: &'static str| {
        let redis = app.redis().unwrap().clone();
        async move {
            let count: Option<i64> = redis.get(key).await.unwrap();
            count.unwrap_or(0)
        }
    };
    assert_eq!(count("throttle:login:{user:demo}").await, 4);
    assert_eq!(count("throttle:login:{client:127.0.0.1}").await, 4);
    user.log_in(DEMO_USER, DEMO_PASSWORD)
        .await
        .assert_redirect("/");
    assert!(
        !app.redis_exists("throttle:login:{user:demo}:from:127.0.0.1")
            .await
    );
    // The success gives its own attempt back (counted before the password was
    // checked) on the other two counters; the 4 failures stay counted there.
    assert_eq!(count("throttle:login:{user:demo}").await, 4);
    assert_eq!(count("throttle:login:{client:127.0.0.1}").await, 4);
    user.log_out().await;
    for _ in 0..4 {
        user.log_in(DEMO_USER, "wrong password").await;
    }
    user.log_in(DEMO_USER, DEMO_PASSWORD)
        .await
        .assert_redirect("/");
}

#[tokio::test]
async fn twenty_failures_from_one_client_lock_that_client_only_behind_a_trusted_proxy() {
    let app = TestApp::spawn_with(Backend::Redis, |c| {
        c.trusted_proxies = vec!["127.0.0.1".parse().unwrap()]
    })
    .await;
    let browser = app.browser();
    let attempt = |client: &'static str, username: String, password: &'static str| {
        let browser = browser.clone();
        async move {
            let request = browser
                .request(Method::POST, "/login")
                .header("x-forwarded-for", client)
                .form(&[("username", username.as_str()), ("password", password)]);
            Browser::read(request.send().await.unwrap()).await
        }
    };
    for i in 0..20 {
        let page = attempt("203.0.113.7", format!("guess{i}"), "wrong password").await;
        assert_eq!(page.status, StatusCode::UNAUTHORIZED);
    }
    let blocked = attempt("203.0.113.7", "demo".into(), DEMO_PASSWORD).await;
    assert_eq!(blocked.status, StatusCode::TOO_MANY_REQUESTS);
    assert!(
        app.redis_exists("throttle:login:{client:203.0.113.7}")
            .await
    );
    // Another client behind the same proxy is not affected.
    let other = attempt("198.51.100.4", "demo".into(), DEMO_PASSWORD).await;
    assert_eq!(other.status, StatusCode::SEE_OTHER);
}

#[tokio::test]
async fn forwarded_for_from_an_untrusted_peer_is_ignored() {
    let app = TestApp::spawn(Backend::Redis).await; // no trusted proxies
    let browser = app.browser();
    let request = browser
        .request(Method::POST, "/login")
        .header("x-forwarded-for", "203.0.113.99")
        .form(&[("username", "demo"), ("password", "wrong password")]);
    Browser::read(request.send().await.unwrap()).await;
    assert!(
        app.redis_exists("throttle:login:{client:127.0.0.1}").await,
        "{:?}",
        app.redis_keys().await
    );
    assert!(
        !app.redis_exists("throttle:login:{client:203.0.113.99}")
            .await
    );
}

#[tokio::test]
async fn a_request_id_is_taken_from_trusted_proxies_only() {
    let direct = TestApp::spawn(Backend::Memory).await; // no trusted proxies
    let proxied = TestApp::spawn_with(Backend::Memory, |c| {
        c.trusted_proxies = vec!["127.0.0.1".parse().unwrap()]
    })
    .await;
    let id_for = |app: &TestApp| {
        let browser = app.browser();
        async move {
            let response = browser
                .request(Method::GET, "/healthz")
                .header("x-request-id", "chosen-by-the-client")
                .send()
                .await
                .unwrap();
            response.headers()["x-request-id"]
                .to_str()
                .unwrap()
                .to_owned()
        }
    };
    let own = id_for(&direct).await;
    assert_ne!(own, "chosen-by-the-client");
    assert_eq!(own.len(), 32, "the replica's own id: {own}");
    assert_eq!(id_for(&proxied).await, "chosen-by-the-client");
}

#[tokio::test]
async fn health_detail_and_redis_addresses_are_for_this_host_only() {
    let app = TestApp::spawn(Backend::Redis).await;
    let redis_address = format!("127.0.0.1:{}", app.redis_server.as_ref().unwrap().port);
    let readyz = |forwarded: Option<&'static str>| {
        let browser = app.browser();
        async move {
            let mut request = browser.request(Method::GET, "/readyz");
            if let Some(client) = forwarded {
                request = request.header("x-forwarded-for", client);
            }
            Browser::read(request.send().await.unwrap()).await
        }
    };
    // Asked on this host directly: the detail.
    let local = readyz(None).await;
    assert_eq!(local.status, StatusCode::OK);
    assert!(local.body.contains(&redis_address), "{}", local.body);
    assert!(local.body.contains("sqlite: ok"), "{}", local.body);
    // Passed on by a proxy (nginx always sets X-Forwarded-For): ready, nothing more.
    let remote = readyz(Some("203.0.113.7")).await;
    assert_eq!(
        (remote.status, remote.body.as_str()),
        (StatusCode::OK, "ready\n")
    );

    // The session inspector names the Redis node on this host only.
    let visitor = app.browser();
    visitor.add_to_cart("1", "1").await;
    let request = visitor
        .request(Method::GET, "/session")
        .header("x-forwarded-for", "203.0.113.7");
    let anonymous = Browser::read(request.send().await.unwrap()).await;
    anonymous.assert_contains("anonymous");
    assert!(
        !anonymous.body.contains(&redis_address),
        "{}",
        anonymous.body
    );
    assert!(!anonymous.body.contains("Redis node"));
    visitor
        .get("/session")
        .await
        .assert_contains(&redis_address);

    // HEALTH_DETAIL shows the detail to everyone.
    let open = TestApp::spawn_with(Backend::Redis, |c| c.health_detail = true).await;
    let request = open
        .browser()
        .request(Method::GET, "/readyz")
        .header("x-forwarded-for", "203.0.113.7");
    let page = Browser::read(request.send().await.unwrap()).await;
    assert!(page.body.contains("redis: ok"), "{}", page.body);
}

/// `n` simultaneous login POSTs for `username`; returns the statuses, in order of `passwords`.
async fn simultaneous_logins(
    app: &TestApp,
    username: &str,
    passwords: &[String],
) -> Vec<StatusCode> {
    let barrier = std::sync::Arc::new(tokio::sync::Barrier::new(passwords.len()));
    let tasks: Vec<_> = passwords
        .iter()
        .map(|password| {
            let browser = app.browser();
            let barrier = barrier.clone();
            let (username, password) = (username.to_owned(), password.clone());
            tokio::spawn(async move {
                barrier.wait().await;
                browser.log_in(&username, &password).await.status
            })
        })
        .collect();
    let mut statuses = Vec::new();
    for task in tasks {
        statuses.push(task.await.unwrap());
    }
    statuses
}

fn count(statuses: &[StatusCode], status: StatusCode) -> usize {
    statuses.iter().filter(|s| **s == status).count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn simultaneous_guesses_never_verify_more_passwords_than_the_limit_allows() {
    // The address limit is raised so that the username's limit (5) is what is tested.
    let app = TestApp::spawn_with(Backend::Redis, |c| {
        c.login_max_failures_per_client = 10_000;
    })
    .await;
    for _ in 0..4 {
        assert_eq!(
            app.browser()
                .log_in(DEMO_USER, "wrong password")
                .await
                .status,
            StatusCode::UNAUTHORIZED
        );
    }
    // One attempt left; 60 simultaneous guesses: one is checked while the others
    // wait for its verdict; it fails, and the 59 are refused unchecked.
    let wrong: Vec<String> = (0..60).map(|i| format!("wrong guess {i}")).collect();
    let statuses = simultaneous_logins(&app, DEMO_USER, &wrong).await;
    assert_eq!(
        count(&statuses, StatusCode::UNAUTHORIZED),
        1,
        "{statuses:?}"
    );
    assert_eq!(count(&statuses, StatusCode::TOO_MANY_REQUESTS), 59);
    let counted: i64 = app
        .redis()
        .unwrap()
        .get("throttle:login:{user:demo}:from:127.0.0.1")
        .await
        .unwrap();
    assert_eq!(counted, 5, "only checked passwords count as failures");

    // At the limit: 60 simultaneous attempts with the right password among them: none logged in.
    let mut with_right = wrong.clone();
    with_right[30] = DEMO_PASSWORD.to_owned();
    let statuses = simultaneous_logins(&app, DEMO_USER, &with_right).await;
    assert_eq!(
        count(&statuses, StatusCode::TOO_MANY_REQUESTS),
        60,
        "{statuses:?}"
    );
    let owner = app.browser();
    let refused = owner.log_in(DEMO_USER, DEMO_PASSWORD).await;
    assert_eq!(refused.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(owner.get("/").await.logged_in_as(), None);

    // The race for the last attempt, on a fresh account: one attempt left, 59 wrong
    // and the right password at once: the last attempt goes to one of them.
    app.browser().register("racer", "racer password").await;
    for _ in 0..4 {
        app.browser().log_in("racer", "wrong password").await;
    }
    let mut race = wrong[..59].to_vec();
    race.push("racer password".to_owned());
    let statuses = simultaneous_logins(&app, "racer", &race).await;
    let (refused, wrong_checked, logged_in) = (
        count(&statuses, StatusCode::TOO_MANY_REQUESTS),
        count(&statuses, StatusCode::UNAUTHORIZED),
        count(&statuses, StatusCode::SEE_OTHER),
    );
    assert_eq!(refused + wrong_checked + logged_in, 60, "{statuses:?}");
    if logged_in == 0 {
        // The last attempt went to a wrong guess: it alone was checked.
        assert_eq!((wrong_checked, refused), (1, 59), "{statuses:?}");
    } else {
        // The right password took the last attempt. A success clears this address's
        // counter for the name (the owner proved themselves here), so guesses still
        // in flight get a new budget of 5, never more.
        assert!(wrong_checked <= 5, "{statuses:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_simultaneous_right_logins_from_one_address_all_get_in() {
    for backend in [Backend::Redis, Backend::Memory] {
        let app = TestApp::spawn(backend).await;
        // Ten browsers of the owner's, each with a cart of its own.
        let mut browsers = Vec::new();
        for _ in 0..10 {
            let browser = app.browser();
            browser.add_to_cart("2", "1").await;
            browsers.push(browser);
        }
        let barrier = std::sync::Arc::new(tokio::sync::Barrier::new(browsers.len()));
        let tasks: Vec<_> = browsers
            .iter()
            .cloned()
            .map(|browser| {
                let barrier = barrier.clone();
                tokio::spawn(async move {
                    barrier.wait().await;
                    browser.log_in(DEMO_USER, DEMO_PASSWORD).await.status
                })
            })
            .collect();
        let mut statuses = Vec::new();
        for task in tasks {
            statuses.push(task.await.unwrap());
        }
        assert_eq!(
            count(&statuses, StatusCode::SEE_OTHER),
            10,
            "{backend:?}: {statuses:?}"
        );
        // Every visit's cart went into the account's.
        let lines = browsers[0].get("/cart").await.cart_lines();
        assert_eq!(lines.len(), 1, "{backend:?}: {lines:?}");
        assert_eq!(lines[0].1, 10, "{backend:?}: {lines:?}");
    }
}

#[tokio::test]
async fn a_login_form_sent_again_after_a_wrong_password_is_not_checked_again() {
    for backend in [Backend::Redis, Backend::Memory] {
        let app = TestApp::spawn(backend).await;
        let visitor = app.browser();
        let form = visitor
            .get("/login")
            .await
            .form_value("/login", "submission");
        let send = |password: &'static str| {
            let (visitor, form) = (visitor.clone(), form.clone());
            async move {
                visitor
                    .post(
                        "/login",
                        &[
                            ("username", DEMO_USER),
                            ("password", password),
                            ("submission", &form),
                        ],
                    )
                    .await
            }
        };
        let first = send("wrong password").await;
        assert_eq!(first.status, StatusCode::UNAUTHORIZED, "{backend:?}");
        // Reusing the spent form's id buys no check, not even of the right password.
        for _ in 0..10 {
            let again = send(DEMO_PASSWORD).await;
            assert_eq!(again.status, StatusCode::CONFLICT, "{backend:?}");
            again.assert_contains("This form was already sent with a wrong password");
            assert_eq!(again.logged_in_as(), None);
            // The page it shows carries a new form.
            assert_ne!(again.form_value("/login", "submission"), form);
        }
        if backend == Backend::Redis {
            let failures: i64 = app
                .redis()
                .unwrap()
                .get("throttle:login:{user:demo}:from:127.0.0.1")
                .await
                .unwrap();
            assert_eq!(failures, 1, "one checked password, one failure");
        }
        // A new form is checked.
        let fresh = visitor
            .get("/login")
            .await
            .form_value("/login", "submission");
        visitor
            .post(
                "/login",
                &[
                    ("username", DEMO_USER),
                    ("password", DEMO_PASSWORD),
                    ("submission", &fresh),
                ],
            )
            .await
            .assert_redirect("/");
    }
}

#[tokio::test]
async fn failures_from_one_address_do_not_lock_the_owner_out_from_another() {
    let app = TestApp::spawn_with(Backend::Redis, |c| {
        c.trusted_proxies = vec!["127.0.0.1".parse().unwrap()];
        c.login_max_failures_per_user_total = 12;
    })
    .await;
    let from = |client: &'static str, password: &'static str| {
        let browser = app.browser();
        async move {
            let request = browser
                .request(Method::POST, "/login")
                .header("x-forwarded-for", client)
                .form(&[("username", DEMO_USER), ("password", password)]);
            Browser::read(request.send().await.unwrap()).await.status
        }
    };
    // 50 guesses from one address: 5 are checked, the rest wait.
    let mut statuses = Vec::new();
    for _ in 0..50 {
        statuses.push(from("203.0.113.7", "wrong password").await);
    }
    assert_eq!(count(&statuses, StatusCode::UNAUTHORIZED), 5);
    assert_eq!(count(&statuses, StatusCode::TOO_MANY_REQUESTS), 45);
    assert_eq!(
        from("203.0.113.7", DEMO_PASSWORD).await,
        StatusCode::TOO_MANY_REQUESTS
    );
    // Only the 5 checked attempts reached the username's ceiling.
    let total: i64 = app
        .redis()
        .unwrap()
        .get("throttle:login:{user:demo}")
        .await
        .unwrap();
    assert_eq!(total, 5);
    // The owner, from home, logs in.
    assert_eq!(
        from("198.51.100.4", DEMO_PASSWORD).await,
        StatusCode::SEE_OTHER
    );

    // The ceiling (12 here): a second guessing address takes it to 10, a third to 12,
    // and then every address waits: the documented price of stopping distributed guessing.
    for _ in 0..5 {
        assert_eq!(
            from("203.0.113.8", "wrong password").await,
            StatusCode::UNAUTHORIZED
        );
    }
    assert_eq!(
        from("203.0.113.9", "wrong password").await,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        from("203.0.113.9", "wrong password").await,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        from("198.51.100.4", DEMO_PASSWORD).await,
        StatusCode::TOO_MANY_REQUESTS
    );
}

/// A replica on the IPv6 loopback behind a proxy there: every request claims
/// (through the trusted proxy) an address of the documentation prefix.
async fn ipv6_app(adjust: impl FnOnce(&mut crate::support::api::Config)) -> TestApp {
    TestApp::spawn_with(Backend::Redis, |c| {
        c.bind = "::1".parse().unwrap();
        c.trusted_proxies = vec!["::1".parse().unwrap()];
        adjust(c);
    })
    .await
}

async fn post_from(app: &TestApp, client: &str, path: &str, form: &[(&str, &str)]) -> StatusCode {
    let request = app
        .browser()
        .request(Method::POST, path)
        .header("x-forwarded-for", client)
        .form(form);
    Browser::read(request.send().await.unwrap()).await.status
}

#[tokio::test]
async fn one_ipv6_host_is_one_client_its_64() {
    let app = ipv6_app(|_| {}).await;
    // 20 addresses of one /64, 6 guesses each: 5 checked in all, not 100.
    let mut statuses = Vec::new();
    for host in 1..=20 {
        let client = format!("2001:db8:1:2::{host:x}");
        for _ in 0..6 {
            let form = [("username", DEMO_USER), ("password", "wrong password")];
            statuses.push(post_from(&app, &client, "/login", &form).await);
        }
    }
    assert_eq!(
        count(&statuses, StatusCode::UNAUTHORIZED),
        5,
        "{statuses:?}"
    );
    assert_eq!(count(&statuses, StatusCode::TOO_MANY_REQUESTS), 115);
    // So the owner, on another network, is not locked out.
    let owner = [("username", DEMO_USER), ("password", DEMO_PASSWORD)];
    assert_eq!(
        post_from(&app, "2001:db8:9:9::1", "/login", &owner).await,
        StatusCode::SEE_OTHER
    );
    // An IPv4-mapped address is its IPv4 address.
    for _ in 0..5 {
        let form = [("username", DEMO_USER), ("password", "wrong password")];
        post_from(&app, "::ffff:198.51.100.4", "/login", &form).await;
    }
    assert_eq!(
        post_from(&app, "198.51.100.4", "/login", &owner).await,
        StatusCode::TOO_MANY_REQUESTS
    );
}

#[tokio::test]
async fn one_ipv6_64_cannot_spray_usernames_or_registrations() {
    let app = ipv6_app(|c| c.register_max_per_client = 3).await;
    // 60 names, each from another address of the /64: 20 checked (the address limit).
    let mut statuses = Vec::new();
    for i in 0..60 {
        let (client, name) = (format!("2001:db8:1:2::{:x}", 100 + i), format!("name{i}"));
        let form = [("username", name.as_str()), ("password", "wrong password")];
        statuses.push(post_from(&app, &client, "/login", &form).await);
    }
    assert_eq!(
        count(&statuses, StatusCode::UNAUTHORIZED),
        20,
        "{statuses:?}"
    );
    assert_eq!(count(&statuses, StatusCode::TOO_MANY_REQUESTS), 40);
    // Registrations: 3 per /64, whichever of its addresses they come from.
    let mut statuses = Vec::new();
    for i in 0..5 {
        let (client, name) = (
            format!("2001:db8:1:2::{:x}", 200 + i),
            format!("newcomer{i}"),
        );
        let form = [
            ("username", name.as_str()),
            ("password", "long enough pw"),
            ("password_confirm", "long enough pw"),
        ];
        statuses.push(post_from(&app, &client, "/register", &form).await);
    }
    assert_eq!(
        statuses,
        [
            StatusCode::SEE_OTHER,
            StatusCode::SEE_OTHER,
            StatusCode::SEE_OTHER,
            StatusCode::TOO_MANY_REQUESTS,
            StatusCode::TOO_MANY_REQUESTS
        ]
    );
    assert!(
        app.redis_exists("throttle:register:{client:2001:db8:1:2::/64}")
            .await
    );
}

#[tokio::test]
async fn registrations_are_throttled_per_client_address() {
    let app = TestApp::spawn_with(Backend::Redis, |c| {
        c.trusted_proxies = vec!["127.0.0.1".parse().unwrap()];
        c.register_max_per_client = 3;
    })
    .await;
    let register = |client: &'static str, name: &'static str| {
        let browser = app.browser();
        async move {
            let request = browser
                .request(Method::POST, "/register")
                .header("x-forwarded-for", client)
                .form(&[
                    ("username", name),
                    ("password", "long enough pw"),
                    ("password_confirm", "long enough pw"),
                ]);
            Browser::read(request.send().await.unwrap()).await
        }
    };
    assert_eq!(
        register("203.0.113.7", "first").await.status,
        StatusCode::SEE_OTHER
    );
    // Probing names counts too: "taken" answers are what enumeration needs.
    assert_eq!(
        register("203.0.113.7", "demo").await.status,
        StatusCode::CONFLICT
    );
    assert_eq!(
        register("203.0.113.7", "second").await.status,
        StatusCode::SEE_OTHER
    );
    let refused = register("203.0.113.7", "third").await;
    assert_eq!(refused.status, StatusCode::TOO_MANY_REQUESTS);
    refused.assert_contains("Too many registrations from your address.");
    assert!(refused.headers.contains_key("retry-after"));
    assert!(!app.user_exists("third").await);
    assert_eq!(
        register("198.51.100.4", "third").await.status,
        StatusCode::SEE_OTHER
    );
}

// ---------------------------------------------------------------- 3. Timing

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_user_costs_the_same_as_a_wrong_password() {
    let app = TestApp::spawn_with(Backend::Redis, |c| {
        c.login_max_failures_per_user = 1_000;
        c.login_max_failures_per_client = 1_000;
    })
    .await;
    let browser = app.browser();
    // Paired samples, taken back to back, so that load from anything else running
    // on the machine hits both sides of each pair alike; then the median ratio.
    let mut ratios = Vec::new();
    for i in 0..11 {
        let started = Instant::now();
        browser
            .log_in(&format!("nobody{i}"), "wrong password")
            .await;
        let unknown = started.elapsed().as_secs_f64();
        let started = Instant::now();
        browser.log_in(DEMO_USER, "wrong password").await;
        let known = started.elapsed().as_secs_f64();
        ratios.push(unknown / known);
    }
    ratios.sort_by(f64::total_cmp);
    let ratio = ratios[ratios.len() / 2];
    assert!(
        (0.5..=2.0).contains(&ratio),
        "unknown/known login time ratio {ratio:.2} ({ratios:.2?})"
    );
}

// ---------------------------------------------------------------- 4. Headers

#[tokio::test]
async fn every_page_carries_the_security_headers() {
    let app = TestApp::spawn(Backend::Redis).await;
    let browser = app.browser();
    browser.log_in(DEMO_USER, DEMO_PASSWORD).await;
    for path in [
        "/",
        "/products/blue-teapot",
        "/cart",
        "/login",
        "/register",
        "/session",
        "/nowhere",
    ] {
        let page = browser.get(path).await;
        let header = |name: &str| {
            page.headers
                .get(name)
                .map(|v| v.to_str().unwrap().to_owned())
                .unwrap_or_default()
        };
        let csp = header("content-security-policy");
        assert!(csp.contains("default-src 'self'"), "{path}: {csp}");
        assert!(csp.contains("frame-ancestors 'none'"), "{path}: {csp}");
        assert!(!csp.contains("unsafe-inline"), "{path}: {csp}");
        assert_eq!(header("x-content-type-options"), "nosniff", "{path}");
        assert_eq!(header("referrer-policy"), "same-origin", "{path}");
        assert_eq!(header("x-frame-options"), "DENY", "{path}");
        assert!(
            !page.body.contains("<script"),
            "{path}: no script at all, inline or not"
        );
        assert!(!page.body.contains(" style=\""), "{path}: no inline styles");
        // The 404 page too: its header shows who is logged in.
        assert_eq!(
            header("cache-control"),
            "no-store",
            "{path}: pages show session data"
        );
    }
    let css = browser.get("/static/style.css").await;
    assert_eq!(css.status, StatusCode::OK);
    assert!(css.headers["cache-control"]
        .to_str()
        .unwrap()
        .contains("max-age=604800"));
    assert_eq!(css.headers["x-content-type-options"], "nosniff");
    // The health checks too: the headers wrap every response, not only pages.
    let health = browser.get("/healthz").await;
    assert_eq!(health.status, StatusCode::OK);
    assert_eq!(health.headers["x-frame-options"], "DENY");
    assert!(health.headers.contains_key("content-security-policy"));
}

// ---------------------------------------------------------------- 5. next

#[tokio::test]
async fn login_redirects_only_to_local_paths() {
    let app = TestApp::spawn(Backend::Memory).await;
    for (next, expected) in [
        ("/cart", "/cart"),
        ("/products/blue-teapot", "/products/blue-teapot"),
        ("//evil.example", "/"),
        ("/\\evil.example", "/"),
        ("http://evil.example/", "/"),
        ("/%2F%2Fevil.example", "/"),
        ("%2F%2Fevil.example", "/"),
        ("/%5Cevil.example", "/"),
        ("https:evil.example", "/"),
    ] {
        let browser = app.browser();
        let page = browser
            .post(
                "/login",
                &[
                    ("username", DEMO_USER),
                    ("password", DEMO_PASSWORD),
                    ("next", next),
                ],
            )
            .await;
        page.assert_redirect(expected);
    }
    // The login page carries a safe `next` into its form, escaped.
    let form = app.browser().get("/login?next=%2Fcart").await;
    form.assert_contains("name=\"next\" value=\"/cart\"");
    let evil = app.browser().get("/login?next=%2F%2Fevil.example").await;
    evil.assert_contains("name=\"next\" value=\"/\"");
    // A query it cannot read is no reason to refuse the form: back to the home page.
    for query in ["next=/cart&next=/orders", "next=/cart&next="] {
        let odd = app.browser().get(&format!("/login?{query}")).await;
        assert_eq!(odd.status, reqwest::StatusCode::OK, "{query}: {odd:?}");
        odd.assert_contains("name=\"next\" value=\"/\"");
    }
}

// ---------------------------------------------------------------- 6. Failed saves

#[tokio::test]
async fn a_session_that_cannot_be_saved_is_a_503_page_not_an_empty_500() {
    let app = TestApp::spawn(Backend::Redis).await;
    let visitor = app.browser();
    // Redis answers, but refuses SET (as a full or read-only Redis would).
    let redis = app.redis().unwrap();
    let _: () = redis
        .next()
        .custom(fred::cmd!("ACL"), vec!["SETUSER", "default", "-set"])
        .await
        .unwrap();
    let page = visitor.add_to_cart("1", "1").await;
    assert_eq!(page.status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(page.headers["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/html"));
    assert_eq!(page.headers["retry-after"], "5");
    page.assert_contains("The session store is unavailable right now, so nothing was changed.");
    page.assert_contains("Served by <strong>test-replica</strong>");
    let _: () = redis
        .next()
        .custom(fred::cmd!("ACL"), vec!["SETUSER", "default", "+set"])
        .await
        .unwrap();
}

// ---------------------------------------------------------------- 7. Lifetime

async fn absolute_lifetime_ends_an_active_session(remember: bool) {
    let app = TestApp::spawn_with(Backend::Redis, |c| {
        c.session_idle_timeout = Duration::from_secs(60);
        c.session_max_lifetime = Duration::from_secs(3);
        c.remember_me_max_lifetime = Duration::from_secs(3);
    })
    .await;
    let user = app.browser();
    let mut form = vec![("username", DEMO_USER), ("password", DEMO_PASSWORD)];
    if remember {
        form.push(("remember", "on"));
    }
    user.post("/login", &form).await.assert_redirect("/");
    let ttl = app.redis_ttl(&user.sid().unwrap()).await;
    assert!(
        (1..=3).contains(&ttl),
        "capped by the absolute lifetime: {ttl}"
    );
    let started = Instant::now();
    let mut logged_out_after = None;
    while started.elapsed() < Duration::from_secs(6) {
        if user.get("/").await.logged_in_as().is_none() {
            logged_out_after = Some(started.elapsed());
            break;
        }
        // Keep being active; time passing is what is tested.
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let after = logged_out_after.expect("an active session still ends at its absolute lifetime");
    assert!(
        after >= Duration::from_secs(2),
        "not before the lifetime: {after:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_absolute_lifetime_ends_even_an_active_session() {
    absolute_lifetime_ends_an_active_session(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_remember_me_lifetime_ends_even_an_active_session() {
    absolute_lifetime_ends_an_active_session(true).await;
}

// ---------------------------------------------------------------- 8. Bad input

#[tokio::test]
async fn bad_quantities_and_products_are_400s_that_change_nothing() {
    let app = TestApp::spawn(Backend::Redis).await;
    let user = app.browser();
    user.log_in(DEMO_USER, DEMO_PASSWORD).await;
    user.add_to_cart("1", "2").await;
    let before = redis_snapshot(&app).await;
    let quantity_message = "Quantity must be a whole number from 1 to 99.";
    let cases: Vec<(&str, Form, &str)> = vec![
        (
            "/cart/add",
            vec![("product_id", "1"), ("quantity", "abc")],
            quantity_message,
        ),
        (
            "/cart/add",
            vec![("product_id", "1"), ("quantity", "-1")],
            quantity_message,
        ),
        (
            "/cart/add",
            vec![("product_id", "1"), ("quantity", "0")],
            quantity_message,
        ),
        (
            "/cart/add",
            vec![("product_id", "1"), ("quantity", "100")],
            quantity_message,
        ),
        (
            "/cart/add",
            vec![("product_id", "1"), ("quantity", "9223372036854775808")],
            quantity_message,
        ),
        (
            "/cart/add",
            vec![("product_id", "1"), ("quantity", "1e3")],
            quantity_message,
        ),
        (
            "/cart/add",
            vec![("product_id", "1"), ("quantity", "")],
            "Please enter a quantity.",
        ),
        (
            "/cart/add",
            vec![("product_id", "13"), ("quantity", "1")],
            "That product does not exist.",
        ),
        (
            "/cart/add",
            vec![("product_id", "-1"), ("quantity", "1")],
            "That product does not exist.",
        ),
        (
            "/cart/add",
            vec![("product_id", "1; DROP TABLE"), ("quantity", "1")],
            "That product does not exist.",
        ),
        (
            "/cart/add",
            vec![("product_id", "99999999999999999999"), ("quantity", "1")],
            "That product does not exist.",
        ),
        (
            "/cart/add",
            vec![("quantity", "1")],
            "No product was chosen.",
        ),
        (
            "/cart/update",
            vec![("product_id", "1"), ("quantity", "-1")],
            "Quantity must be a whole number from 0 to 99.",
        ),
        (
            "/cart/update",
            vec![("product_id", "1"), ("quantity", "100")],
            "Quantity must be a whole number from 0 to 99.",
        ),
        (
            "/cart/update",
            vec![("product_id", "1")],
            "Please enter a quantity.",
        ),
        (
            "/cart/update",
            vec![("product_id", "x"), ("quantity", "1")],
            "That product does not exist.",
        ),
    ];
    for (path, form, message) in cases {
        let page = user.post(path, &form).await;
        assert_eq!(page.status, StatusCode::BAD_REQUEST, "{path} {form:?}");
        page.assert_contains(message);
        page.assert_contains("Served by <strong>test-replica</strong>");
    }
    assert_eq!(
        redis_snapshot(&app).await,
        before,
        "nothing changed in Redis"
    );
}

#[tokio::test]
async fn bad_registrations_and_logins_change_nothing() {
    let app = TestApp::spawn(Backend::Redis).await;
    let browser = app.browser();
    let users_before = app.user_count().await;
    let long_name = "a".repeat(10 * 1024);
    let long_password = "p".repeat(129);
    let cases: Vec<(Form, StatusCode, &str)> = vec![
        (
            vec![
                ("username", "zoë"),
                ("password", "long enough pw"),
                ("password_confirm", "long enough pw"),
            ],
            StatusCode::BAD_REQUEST,
            "Usernames may use only letters a–z, digits, _ and -.",
        ),
        (
            vec![
                ("username", "用户名"),
                ("password", "long enough pw"),
                ("password_confirm", "long enough pw"),
            ],
            StatusCode::BAD_REQUEST,
            "Usernames may use only letters a–z, digits, _ and -.",
        ),
        (
            vec![
                ("username", &long_name),
                ("password", "long enough pw"),
                ("password_confirm", "long enough pw"),
            ],
            StatusCode::BAD_REQUEST,
            "Usernames are 3 to 32 characters long.",
        ),
        (
            vec![
                ("username", "valid_name"),
                ("password", &long_password),
                ("password_confirm", &long_password),
            ],
            StatusCode::BAD_REQUEST,
            "Passwords are at most 128 bytes long.",
        ),
        (
            vec![("username", "valid_name"), ("password", "long enough pw")],
            StatusCode::BAD_REQUEST,
            "The two passwords do not match.",
        ),
        (
            vec![
                ("password", "long enough pw"),
                ("password_confirm", "long enough pw"),
            ],
            StatusCode::BAD_REQUEST,
            "Please choose a username.",
        ),
    ];
    for (form, status, message) in cases {
        let page = browser.post("/register", &form).await;
        assert_eq!(page.status, status);
        page.assert_contains(message);
        assert!(
            !page.body.contains(&long_name),
            "the 10 KB name is not echoed whole"
        );
    }
    // Logins: unicode and huge names are just failed logins; an over-long password is refused outright.
    for name in ["zoë", long_name.as_str()] {
        let page = browser.log_in(name, "long enough pw").await;
        assert_eq!(page.status, StatusCode::UNAUTHORIZED);
        page.assert_contains("Wrong username or password.");
    }
    // The typed name comes back in the form, escaped.
    let page = browser
        .log_in("\"><script>alert(1)</script>", "long enough pw")
        .await;
    assert_eq!(page.status, StatusCode::UNAUTHORIZED);
    page.assert_contains("value=\"&#34;&#62;&#60;script&#62;alert(1)&#60;/script&#62;\"");
    assert!(!page.body.contains("<script>alert(1)"), "{}", page.body);
    let page = browser.log_in(DEMO_USER, &long_password).await;
    assert_eq!(page.status, StatusCode::BAD_REQUEST);
    page.assert_contains("Passwords are at most 128 bytes long.");
    let page = browser.post("/login", &[("username", DEMO_USER)]).await;
    assert_eq!(page.status, StatusCode::BAD_REQUEST);
    page.assert_contains("Please enter your username and password.");

    assert_eq!(app.user_count().await, users_before, "no user created");
    assert_eq!(browser.sid(), None, "no session created");
    assert!(
        app.redis_keys()
            .await
            .iter()
            .all(|k| k.starts_with("throttle:login:")),
        "only failure counters: {:?}",
        app.redis_keys().await
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_over_long_password_is_refused_before_any_hashing() {
    let app = TestApp::spawn_with(Backend::Redis, |c| {
        c.login_max_failures_per_user = 1_000;
        c.login_max_failures_per_client = 1_000;
    })
    .await;
    let browser = app.browser();
    let long_password = "p".repeat(129);
    let mut ratios = Vec::new();
    for _ in 0..9 {
        let started = Instant::now();
        assert_eq!(
            browser.log_in(DEMO_USER, &long_password).await.status,
            StatusCode::BAD_REQUEST
        );
        let refused = started.elapsed().as_secs_f64();
        let started = Instant::now();
        assert_eq!(
            browser.log_in(DEMO_USER, "wrong password").await.status,
            StatusCode::UNAUTHORIZED
        );
        ratios.push(refused / started.elapsed().as_secs_f64());
    }
    ratios.sort_by(f64::total_cmp);
    let ratio = ratios[ratios.len() / 2];
    assert!(
        ratio < 0.5,
        "refusing must cost far less than hashing: ratio {ratio:.2} ({ratios:.2?})"
    );
}

#[tokio::test]
async fn wrong_content_type_is_415_and_oversized_body_is_413() {
    let app = TestApp::spawn(Backend::Redis).await;
    let browser = app.browser();
    let json = browser
        .request(Method::POST, "/cart/add")
        .header("content-type", "application/json")
        .body(r#"{"product_id":1,"quantity":1}"#)
        .send()
        .await
        .unwrap();
    let page = Browser::read(json).await;
    assert_eq!(page.status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    page.assert_contains("Forms must be sent as application/x-www-form-urlencoded.");

    let huge = format!("product_id=1&quantity=1&padding={}", "x".repeat(17 * 1024));
    let big = browser
        .request(Method::POST, "/cart/add")
        .header("content-type", "application/x-www-form-urlencoded")
        .body(huge.clone())
        .send()
        .await
        .unwrap();
    let page = Browser::read(big).await;
    assert_eq!(page.status, StatusCode::PAYLOAD_TOO_LARGE);
    page.assert_contains("The form sent was too large (16 KiB at most).");

    // The same without a Content-Length (chunked): still 413.
    let stream = futures::stream::iter(vec![Ok::<_, std::io::Error>(huge.into_bytes())]);
    let chunked = browser
        .request(Method::POST, "/register")
        .header("content-type", "application/x-www-form-urlencoded")
        .body(reqwest::Body::wrap_stream(stream))
        .send()
        .await
        .unwrap();
    assert_eq!(chunked.status(), StatusCode::PAYLOAD_TOO_LARGE);
    assert!(app.redis_keys().await.is_empty());
}

#[tokio::test]
async fn a_deleted_sessions_id_is_no_session() {
    let app = TestApp::spawn(Backend::Redis).await;
    let user = app.browser();
    user.log_in(DEMO_USER, DEMO_PASSWORD).await;
    let sid = user.sid().unwrap();
    // Deleted behind the app's back (expiry, an admin, another replica's logout).
    let _: () = app.redis().unwrap().del(&sid).await.unwrap();
    let page = user.get("/cart").await;
    assert_eq!(page.status, StatusCode::OK);
    assert_eq!(page.logged_in_as(), None);
    let removal = page
        .set_cookies()
        .into_iter()
        .find(|c| c.starts_with("sid="))
        .expect("stale cookie removed");
    assert!(removal.contains("Max-Age=0"), "{removal}");
    assert!(!app.session_is_live(&sid).await, "not brought back");
    // A truncated id is no session either.
    let truncated = app.browser();
    truncated.set_sid(&sid[..10]);
    assert_eq!(truncated.get("/").await.status, StatusCode::OK);
}

/// A bad setting stops the binary with clap's usage error (exit 2) naming it,
/// before anything starts: never a panic later, never a silent wrap-around.
/// Durations are bounded (zero and overflowing values included), and
/// `TOKIO_WORKER_THREADS` is read by the shop, not left to tokio (which panics).
#[test]
fn bad_settings_are_usage_errors_at_start_not_panics() {
    let data = tempfile::tempdir().unwrap();
    let database_url = format!("sqlite://{}/db.sqlite?mode=rwc", data.path().display());
    let cases = [
        ("TOKIO_WORKER_THREADS", "abc", "--worker-threads"),
        ("TOKIO_WORKER_THREADS", "0", "--worker-threads"),
        ("TOKIO_WORKER_THREADS", "", "--worker-threads"),
        ("CART_TTL", "0", "--cart-ttl"),
        ("ANON_CART_TTL", "3000000d", "--anon-cart-ttl"),
        ("ANON_TRIAL_TTL", "0", "--anon-trial-ttl"),
        (
            "LOGIN_THROTTLE_WINDOW",
            "106751991167301d",
            "--login-throttle-window",
        ),
        (
            "REQUEST_TIMEOUT",
            "18446744073709551615",
            "--request-timeout",
        ),
        ("REMEMBER_ME_DAYS", "4000000", "--remember-me-days"),
    ];
    for (name, bad, flag) in cases {
        for command in [&["serve"][..], &[][..]] {
            let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_storefront"))
                .args(command)
                .env(name, bad)
                .env("DATABASE_URL", &database_url)
                .env("PORT", "0")
                .env_remove("REDIS_URL")
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap();
            // A value let through would start a server that never exits: fail, not hang.
            let deadline = Instant::now() + Duration::from_secs(10);
            while child.try_wait().unwrap().is_none() {
                if Instant::now() > deadline {
                    child.kill().unwrap();
                    panic!("{name}={bad:?} {command:?}: the binary started instead of refusing");
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let run = child.wait_with_output().unwrap();
            let stderr = String::from_utf8_lossy(&run.stderr);
            let case = format!("{name}={bad:?} {command:?}: {stderr}");
            assert_eq!(run.status.code(), Some(2), "{case}");
            assert!(
                stderr.contains(&format!("invalid value '{bad}' for '{flag}")),
                "{case}"
            );
            assert!(!stderr.contains("panicked"), "{case}");
        }
    }
}

/// `DEMO_USER=false` keeps the public demo account (`demo` / `demo-pass-123`) out
/// of a real deployment's database: `storefront migrate` (compose's one-shot
/// step) honours it as `serve` does; left at its default, both create it.
#[tokio::test]
async fn migrate_creates_the_demo_account_only_when_asked() {
    let data = tempfile::tempdir().unwrap();
    for (setting, expected) in [("false", 0), ("true", 1)] {
        let database_url = format!(
            "sqlite://{}/{setting}.sqlite?mode=rwc",
            data.path().display()
        );
        let run = std::process::Command::new(env!("CARGO_BIN_EXE_storefront"))
            .args(["migrate", "--database-url", &database_url])
            .env("DEMO_USER", setting)
            .output()
            .unwrap();
        assert!(run.status.success(), "{run:?}");
        let db = sqlx::SqlitePool::connect(&database_url).await.unwrap();
        let demo: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM users WHERE username = 'demo'")
            .fetch_one(&db)
            .await
            .unwrap();
        assert_eq!(demo, expected, "DEMO_USER={setting}");
        db.close().await;
    }
}

/// Redis's `used_memory`, in bytes.
fn redis_used_memory(app: &TestApp) -> i64 {
    let info = app.redis_server.as_ref().unwrap().cli(&["INFO", "memory"]);
    info.lines()
        .find_map(|line| line.strip_prefix("used_memory:"))
        .and_then(|n| n.trim().parse().ok())
        .expect("used_memory in INFO")
}

/// An add to the cart from a new browser (no cookie), from `client`.
async fn new_visitor_adds(app: &TestApp, client: &str) -> Page {
    let request = app
        .browser()
        .request(Method::POST, "/cart/add")
        .header("x-forwarded-for", client)
        .form(&[("product_id", "1"), ("quantity", "1")]);
    Browser::read(request.send().await.unwrap()).await
}

/// The Redis keys made since `before` was read, the throttle's own counters aside:
/// what visitors left behind.
async fn keys_made_since(app: &TestApp, before: &[String]) -> Vec<String> {
    app.redis_keys()
        .await
        .into_iter()
        .filter(|k| !before.contains(k) && !k.starts_with("throttle:"))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_new_carts_from_one_network_cannot_fill_redis() {
    let app = TestApp::spawn_with(Backend::Redis, |c| {
        c.trusted_proxies = vec!["127.0.0.1".parse().unwrap()];
        c.anon_carts_per_client = 50;
    })
    .await;
    // A shopper with a cart and a logged-in member, before the flood.
    let shopper = app.browser();
    shopper.add_to_cart("2", "1").await;
    let member = app.browser();
    member.log_in(DEMO_USER, DEMO_PASSWORD).await;

    // What one anonymous visitor with a one-line cart costs Redis: its session
    // and its cart, by MEMORY USAGE (used_memory moves with buffers too).
    let redis = app.redis_server.as_ref().unwrap();
    let keys_before = app.redis_keys().await;
    for _ in 0..40 {
        new_visitor_adds(&app, "198.51.100.9")
            .await
            .assert_redirect("/cart");
    }
    let new_keys = keys_made_since(&app, &keys_before).await;
    assert_eq!(
        new_keys.len(),
        80,
        "a session and a cart each: {new_keys:?}"
    );
    let bytes: i64 = new_keys
        .iter()
        .map(|key| redis.cli(&["MEMORY", "USAGE", key]).parse::<i64>().unwrap())
        .sum();
    let per_visitor = bytes / 40;
    eprintln!("one anonymous visitor (session + one-line cart): {per_visitor} bytes");
    assert!((100..5_000).contains(&per_visitor), "{per_visitor}");
    // None of them came back: they go within the hour (`ANON_TRIAL_TTL`).
    for key in &new_keys {
        let ttl = pttl(&app, key);
        assert!((1..=HOUR_MS).contains(&ttl), "{key}: {ttl}");
    }

    // Redis may grow 1 MB more; 2,000 new carts from one network would need more.
    let cap = redis_used_memory(&app) + 1024 * 1024;
    redis.cli(&["CONFIG", "SET", "maxmemory", &cap.to_string()]);
    let (mut created, mut refused) = (0, 0);
    for _ in 0..2000 {
        let page = new_visitor_adds(&app, "203.0.113.7").await;
        match page.status {
            StatusCode::SEE_OTHER => created += 1,
            StatusCode::TOO_MANY_REQUESTS => {
                page.assert_contains("Too many new carts were started from your network");
                refused += 1
            }
            other => panic!("{other}: {}", page.body),
        }
    }
    assert_eq!((created, refused), (50, 1950));
    // Redis is not full: the shopper and the member still change their carts.
    assert_eq!(
        shopper.add_to_cart("2", "1").await.status,
        StatusCode::SEE_OTHER
    );
    assert_eq!(
        member.add_to_cart("3", "1").await.status,
        StatusCode::SEE_OTHER
    );
    assert_eq!(app.browser().get("/readyz").await.status, StatusCode::OK);
}

// ------------------------------------------- Anonymous state on trial until intent

const HOUR_MS: i64 = 3_600_000;
const WEEK_MS: i64 = 7 * 86_400_000;

/// The `sid` cookie's Max-Age in a response, if it sets one.
fn sid_max_age(page: &Page) -> Option<u64> {
    page.set_cookies()
        .iter()
        .find(|c| c.starts_with("sid="))?
        .split("; ")
        .find_map(|part| part.strip_prefix("Max-Age="))?
        .parse()
        .ok()
}

/// A key's remaining lifetime in milliseconds, as Redis itself says (`PTTL`).
fn pttl(app: &TestApp, key: &str) -> i64 {
    let redis = app.redis_server.as_ref().unwrap();
    redis.cli(&["PTTL", key]).parse().unwrap()
}

/// The one anonymous cart in Redis.
async fn anonymous_cart_key(app: &TestApp) -> String {
    let keys = app.redis_keys().await;
    let carts: Vec<&String> = keys
        .iter()
        .filter(|k| k.starts_with("cart:{a") && k.ends_with('}'))
        .collect();
    assert_eq!(carts.len(), 1, "one anonymous cart in {keys:?}");
    carts[0].clone()
}

/// How many times Redis ran each command (INFO commandstats), INFO itself left out.
fn command_counts(app: &TestApp) -> std::collections::BTreeMap<String, u64> {
    let redis = app.redis_server.as_ref().unwrap();
    redis
        .cli(&["INFO", "commandstats"])
        .lines()
        .filter_map(|line| {
            let (name, rest) = line.strip_prefix("cmdstat_")?.split_once(":calls=")?;
            let calls = rest.split(',').next()?.parse().ok()?;
            (name != "info").then(|| (name.to_owned(), calls))
        })
        .collect()
}

/// The commands whose counts differ between two [`command_counts`], with how many more.
fn spent(
    before: &std::collections::BTreeMap<String, u64>,
    after: &std::collections::BTreeMap<String, u64>,
) -> Vec<(String, u64)> {
    after
        .iter()
        .filter_map(|(name, calls)| {
            let more = calls - before.get(name).unwrap_or(&0);
            (more > 0).then(|| (name.clone(), more))
        })
        .collect()
}

#[tokio::test]
async fn a_new_visitors_session_and_cart_are_kept_an_hour_until_it_comes_back() {
    for backend in [Backend::Redis, Backend::Memory] {
        let app = TestApp::spawn(backend).await;
        let on_redis = backend == Backend::Redis;
        let visitor = app.browser();
        // A cookie-less add: the session and the cart are on trial.
        let added = visitor
            .post(
                "/cart/add",
                &[
                    ("product_id", "1"),
                    ("quantity", "2"),
                    ("submission", "trial-1"),
                ],
            )
            .await;
        added.assert_redirect("/cart");
        assert_eq!(sid_max_age(&added), Some(3600), "{backend:?}");
        let sid = visitor.sid().unwrap();
        if on_redis {
            let cart = anonymous_cart_key(&app).await;
            let subs = cart.replacen("cart:", "subs:", 1);
            for key in [&sid, &cart, &subs] {
                let ttl = pttl(&app, key);
                assert!((HOUR_MS - 60_000..=HOUR_MS).contains(&ttl), "{key}: {ttl}");
            }
        }

        // The browser follows the redirect with its cookie: both get the full
        // anonymous lifetime, the cookie too.
        let before = on_redis.then(|| command_counts(&app));
        let cart_page = visitor.get("/cart").await;
        assert_eq!(cart_page.status, StatusCode::OK, "{backend:?}");
        cart_page.assert_contains("Added 2 × Blue Teapot to your cart.");
        assert_eq!(sid_max_age(&cart_page), Some(7 * 86_400), "{backend:?}");
        assert_eq!(visitor.sid().unwrap(), sid, "the same session");
        if let Some(before) = before {
            // What ending the trial cost: a page view's reads, the session save
            // the flash needs anyway, and one command on the cart's slot (its two
            // EXPIREs). Commands run by scripts count too; a script's first run
            // on this server is sent twice (NOSCRIPT, then loaded).
            let ending = spent(&before, &command_counts(&app));
            let calls = |name: &str| {
                ending
                    .iter()
                    .find(|(n, _)| n == name)
                    .map_or(0, |(_, calls)| *calls)
            };
            assert_eq!(calls("evalsha") - calls("script|load"), 2, "{ending:?}");
            assert_eq!(calls("expire"), 2, "{ending:?}");
            let cart = anonymous_cart_key(&app).await;
            let subs = cart.replacen("cart:", "subs:", 1);
            for key in [&sid, &cart] {
                let ttl = pttl(&app, key);
                assert!((WEEK_MS - 60_000..=WEEK_MS).contains(&ttl), "{key}: {ttl}");
            }
            let ttl = pttl(&app, &subs);
            assert!((86_340_000..=86_400_000).contains(&ttl), "{subs}: {ttl}");

            // From now on a page view costs what it always did: two reads.
            let before = command_counts(&app);
            let again = visitor.get("/cart").await;
            assert_eq!(again.cart_lines(), vec![("Blue Teapot".into(), 2)]);
            assert_eq!(sid_max_age(&again), None, "no cookie to send again");
            let after = command_counts(&app);
            assert_eq!(
                spent(&before, &after),
                vec![("get".to_owned(), 1), ("hgetall".to_owned(), 1)]
            );
        } else {
            assert_eq!(
                visitor.get("/cart").await.cart_lines(),
                vec![("Blue Teapot".into(), 2)]
            );
        }
    }
}

/// A session id no server made, in the cookie's form (22 characters of URL-safe
/// base64, the last one's spare bits zero).
fn made_up_sid(n: u32) -> String {
    format!("madeUpSessionId{n:06}A")
}

#[tokio::test]
async fn a_client_that_never_comes_back_leaves_only_short_lived_state() {
    let app = TestApp::spawn_with(Backend::Redis, |c| {
        c.trusted_proxies = vec!["127.0.0.1".parse().unwrap()];
        c.anon_carts_per_client = 5;
    })
    .await;
    let keys_before = app.redis_keys().await;
    // Eight new carts, half of them with a made-up cookie: a cookie that names no
    // session is no session, so the budget counts them all.
    let mut statuses = Vec::new();
    for n in 0..8 {
        let mut request = app
            .browser()
            .request(Method::POST, "/cart/add")
            .header("x-forwarded-for", "192.0.2.44")
            .form(&[
                ("product_id", "1"),
                ("quantity", "1"),
                ("submission", &format!("flood-{n}")),
            ]);
        if n % 2 == 1 {
            request = request.header("cookie", format!("sid={}", made_up_sid(n)));
        }
        statuses.push(request.send().await.unwrap().status());
    }
    assert_eq!(count(&statuses, StatusCode::SEE_OTHER), 5, "{statuses:?}");
    assert_eq!(
        count(&statuses, StatusCode::TOO_MANY_REQUESTS),
        3,
        "{statuses:?}"
    );
    // Every key the flood left behind (sessions, carts, submission ids) goes
    // within the hour.
    let left = keys_made_since(&app, &keys_before).await;
    assert_eq!(
        left.len(),
        15,
        "a session, a cart and its ids, five times: {left:?}"
    );
    let redis = app.redis_server.as_ref().unwrap();
    let mut bytes = 0;
    for key in &left {
        let ttl = pttl(&app, key);
        assert!((1..=HOUR_MS).contains(&ttl), "{key}: {ttl}");
        bytes += redis.cli(&["MEMORY", "USAGE", key]).parse::<i64>().unwrap();
    }
    eprintln!(
        "one flooding visitor (session, one-line cart, one submission id): {} bytes",
        bytes / 5
    );
}

#[tokio::test]
async fn a_visitor_on_trial_who_logs_in_gets_the_cart_merged() {
    let app = TestApp::spawn(Backend::Redis).await;
    let visitor = app.browser();
    // The add's redirect is not followed: the login is the visitor's return.
    visitor.add_to_cart("4", "3").await.assert_redirect("/cart");
    let trial_sid = visitor.sid().unwrap();
    assert!(pttl(&app, &trial_sid) <= HOUR_MS);
    visitor
        .log_in(DEMO_USER, DEMO_PASSWORD)
        .await
        .assert_redirect("/");
    let cart = visitor.get("/cart").await;
    assert_eq!(cart.logged_in_as().as_deref(), Some(DEMO_USER));
    assert_eq!(cart.cart_lines(), vec![("Bamboo Whisk".into(), 3)]);
    // The user's cart and session have the user's lifetimes.
    let user_cart = format!("cart:{{u{}}}", app.user_id(DEMO_USER).await);
    let ttl = pttl(&app, &user_cart);
    assert!(ttl > 29 * 86_400_000, "{user_cart}: {ttl}");
    let sid = visitor.sid().unwrap();
    assert_ne!(sid, trial_sid);
    let ttl = pttl(&app, &sid);
    assert!(
        (HOUR_MS / 2 - 60_000..=HOUR_MS / 2).contains(&ttl),
        "the idle timeout: {ttl}"
    );
}

#[tokio::test]
async fn a_failed_end_of_trial_keeps_the_page_and_is_tried_again() {
    let app = TestApp::spawn(Backend::Redis).await;
    let redis = app.redis_server.as_ref().unwrap();
    let visitor = app.browser();
    visitor.add_to_cart("1", "1").await.assert_redirect("/cart");
    let sid = visitor.sid().unwrap();
    let cart = anonymous_cart_key(&app).await;
    // Carts (`cart:…`) may be read but not written; every other key as before.
    redis.cli(&[
        "ACL",
        "SETUSER",
        "default",
        "resetkeys",
        "~[^c]*",
        "~c[^a]*",
        "~ca[^r]*",
        "~car[^t]*",
        "~cart[^:]*",
        "%R~cart:*",
    ]);
    let page = visitor.get("/cart").await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    page.assert_contains("Added 1 × Blue Teapot to your cart.");
    // Still on trial: the session (not saved with a longer cookie) and the cart.
    assert!(
        matches!(sid_max_age(&page), None | Some(3600)),
        "{:?}",
        sid_max_age(&page)
    );
    for key in [&sid, &cart] {
        let ttl = pttl(&app, key);
        assert!((1..=HOUR_MS).contains(&ttl), "{key}: {ttl}");
    }
    redis.cli(&["ACL", "SETUSER", "default", "allkeys"]);
    // The next request tries again, and succeeds.
    let page = visitor.get("/").await;
    assert_eq!(page.status, StatusCode::OK);
    assert_eq!(sid_max_age(&page), Some(7 * 86_400));
    for key in [&sid, &cart] {
        let ttl = pttl(&app, key);
        assert!((WEEK_MS - 60_000..=WEEK_MS).contains(&ttl), "{key}: {ttl}");
    }
}
