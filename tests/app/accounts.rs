//! Accounts: the sessions page, revoking sessions, password change and account
//! deletion, on two in-process replicas sharing one real redis-server and one
//! SQLite file; the one-time submission ids of login, logout and registration;
//! the `__Host-` cookie; and what a logged-in page view costs in Redis.

use fred::prelude::{ClientLike, KeysInterface, SortedSetsInterface};
use reqwest::{Method, StatusCode};

use crate::support::api::{
    session_index, user_cart, Config, DEMO_PASSWORD, DEMO_USER, MAX_SESSIONS_PER_USER,
};
use crate::support::app::{Backend, TestApp};
use crate::support::browser::{Browser, Page};
use crate::support::redis::RedisServer;

const FIREFOX_LINUX: &str =
    "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0";
const CHROME_WINDOWS: &str = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36";
const SAFARI_MAC: &str = "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/18.1 Safari/605.1.15";

const USER: &str = "traveller";
const PASSWORD: &str = "first password";
const NEW_PASSWORD: &str = "second password";

/// A form's fields.
type Form<'a> = Vec<(&'a str, &'a str)>;

/// Changes USER's password from PASSWORD to NEW_PASSWORD, and expects it done.
trait ChangePassword {
    async fn change_password_to_the_new_one(&self);
}

impl ChangePassword for Browser {
    async fn change_password_to_the_new_one(&self) {
        self.post(
            "/account/password",
            &[
                ("current_password", PASSWORD),
                ("new_password", NEW_PASSWORD),
                ("new_password_confirm", NEW_PASSWORD),
            ],
        )
        .await
        .assert_redirect("/account");
    }
}

/// Logs `browser` in with a User-Agent of its own.
async fn log_in_as(browser: &Browser, agent: &str, password: &str, remember: bool) -> Page {
    let mut form = vec![("username", USER), ("password", password)];
    if remember {
        form.push(("remember", "on"));
    }
    let request = browser
        .request(Method::POST, "/login")
        .header("user-agent", agent)
        .form(&form);
    Browser::read(request.send().await.unwrap()).await
}

/// One card of the sessions page.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Card {
    agent: String,
    address: String,
    replica: String,
    remember: String,
    current: bool,
    handle: String,
}

fn between<'a>(text: &'a str, start: &str, end: &str) -> &'a str {
    let from = text
        .find(start)
        .unwrap_or_else(|| panic!("{start:?} in {text}"))
        + start.len();
    let to = text[from..].find(end).unwrap() + from;
    &text[from..to]
}

fn cards(page: &Page) -> Vec<Card> {
    assert_eq!(page.status, StatusCode::OK, "{page:#?}");
    page.body
        .split("<li class=\"session-card")
        .skip(1)
        .map(|card| {
            let heading = between(card, "<h2>", "</h2>");
            Card {
                agent: heading.split(" <span").next().unwrap().to_owned(),
                address: between(card, "<dt>Address</dt><dd>", "</dd>").to_owned(),
                replica: between(card, "<dt>Created by</dt><dd>", "</dd>").to_owned(),
                remember: between(card, "<dt>Remember me</dt><dd>", "</dd>").to_owned(),
                current: heading.contains("This session"),
                handle: between(card, "name=\"session\" value=\"", "\"").to_owned(),
            }
        })
        .collect()
}

fn handle_of<'a>(cards: &'a [Card], agent: &str) -> &'a str {
    &cards
        .iter()
        .find(|c| c.agent == agent)
        .unwrap_or_else(|| panic!("{agent} in {cards:?}"))
        .handle
}

/// Takes a session out of its user's index, as if it had been created on a
/// replica while the index was being rewritten: then only the credential epoch
/// can end it.
async fn drop_from_index(app: &TestApp, user_id: i64, sid: &str) {
    let removed: i64 = app
        .redis()
        .unwrap()
        .zrem(session_index(user_id), sid)
        .await
        .unwrap();
    assert_eq!(removed, 1, "the session was in the index");
}

/// Logged in on both replicas, or anonymous on both.
async fn logged_in_everywhere(browser: &Browser, a: &TestApp, b: &TestApp) -> Option<String> {
    let on_a = browser.at(&a.address).get("/").await.logged_in_as();
    let on_b = browser.at(&b.address).get("/").await.logged_in_as();
    assert_eq!(on_a, on_b, "both replicas agree");
    on_a
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_sessions_listed_revoked_and_ended_by_password_change_and_deletion() {
    let a = TestApp::spawn(Backend::Redis).await;
    let b = a.sibling("replica-b").await;
    a.browser()
        .register(USER, PASSWORD)
        .await
        .assert_redirect("/");
    // (the registering browser's session is ended at once, to start from none)
    let id = a.user_id(USER).await;
    for member in a
        .redis()
        .unwrap()
        .zrange::<Vec<String>, _, _, _>(session_index(id), 0, -1, None, false, None, false)
        .await
        .unwrap()
    {
        let _: i64 = a.redis().unwrap().del(&member).await.unwrap();
    }

    // Three clients, two replicas.
    let laptop = Browser::new(&a.address);
    let desktop = Browser::new(&b.address);
    let mac = Browser::new(&a.address);
    log_in_as(&laptop, FIREFOX_LINUX, PASSWORD, false)
        .await
        .assert_redirect("/");
    log_in_as(&desktop, CHROME_WINDOWS, PASSWORD, false)
        .await
        .assert_redirect("/");
    log_in_as(&mac, SAFARI_MAC, PASSWORD, true)
        .await
        .assert_redirect("/");

    let listed = cards(&laptop.at(&b.address).get("/account/sessions").await);
    let summary: Vec<_> = listed
        .iter()
        .map(|c| {
            (
                c.agent.as_str(),
                c.address.as_str(),
                c.replica.as_str(),
                c.remember.as_str(),
                c.current,
            )
        })
        .collect();
    assert_eq!(
        summary,
        vec![
            ("Firefox on Linux", "127.0.0.1", "test-replica", "no", true),
            ("Chrome on Windows", "127.0.0.1", "replica-b", "no", false),
            ("Safari on macOS", "127.0.0.1", "test-replica", "yes", false),
        ]
    );
    // Handles are opaque: no session id on the page.
    let page = laptop.get("/account/sessions").await;
    for sid in [
        laptop.sid().unwrap(),
        desktop.sid().unwrap(),
        mac.sid().unwrap(),
    ] {
        assert!(!page.body.contains(&sid), "a session id is on the page");
    }
    page.assert_contains("Signed in");
    page.assert_contains("Last active");

    // Revoke one: that client is anonymous on both replicas.
    laptop
        .post(
            "/account/sessions/revoke",
            &[("session", handle_of(&listed, "Chrome on Windows"))],
        )
        .await
        .assert_redirect("/account/sessions");
    assert_eq!(logged_in_everywhere(&desktop, &a, &b).await, None);
    assert_eq!(
        logged_in_everywhere(&mac, &a, &b).await.as_deref(),
        Some(USER)
    );
    assert_eq!(cards(&laptop.get("/account/sessions").await).len(), 2);

    // Revoke the others: only this one is left.
    log_in_as(&desktop, CHROME_WINDOWS, PASSWORD, false)
        .await
        .assert_redirect("/");
    laptop
        .at(&b.address)
        .post("/account/sessions/revoke-others", &[])
        .await
        .assert_redirect("/account/sessions");
    assert_eq!(logged_in_everywhere(&desktop, &a, &b).await, None);
    assert_eq!(logged_in_everywhere(&mac, &a, &b).await, None);
    assert_eq!(
        logged_in_everywhere(&laptop, &a, &b).await.as_deref(),
        Some(USER)
    );
    let left = cards(&laptop.get("/account/sessions").await);
    assert_eq!(left.len(), 1);
    assert!(left[0].current);

    // Password change: the others end (one of them missing from the index, as if a
    // write had been lost: the epoch still ends it), this one gets a new id and works.
    log_in_as(&desktop, CHROME_WINDOWS, PASSWORD, false)
        .await
        .assert_redirect("/");
    log_in_as(&mac, SAFARI_MAC, PASSWORD, true)
        .await
        .assert_redirect("/");
    drop_from_index(&a, id, &mac.sid().unwrap()).await;
    let before = laptop.sid().unwrap();
    let changed = laptop
        .at(&b.address)
        .post(
            "/account/password",
            &[
                ("current_password", PASSWORD),
                ("new_password", NEW_PASSWORD),
                ("new_password_confirm", NEW_PASSWORD),
            ],
        )
        .await;
    changed.assert_redirect("/account");
    let after = laptop.sid().unwrap();
    assert_ne!(before, after, "a new session id");
    assert!(!a.session_is_live(&before).await);
    let account = laptop.get("/account").await;
    account.assert_contains("Your password was changed.");
    assert_eq!(
        logged_in_everywhere(&laptop, &a, &b).await.as_deref(),
        Some(USER)
    );
    assert_eq!(logged_in_everywhere(&desktop, &a, &b).await, None);
    assert_eq!(logged_in_everywhere(&mac, &a, &b).await, None);
    let stranger = a.browser();
    assert_eq!(
        log_in_as(&stranger, FIREFOX_LINUX, PASSWORD, false)
            .await
            .status,
        StatusCode::UNAUTHORIZED
    );
    log_in_as(&desktop, CHROME_WINDOWS, NEW_PASSWORD, false)
        .await
        .assert_redirect("/");
    assert_eq!(cards(&laptop.get("/account/sessions").await).len(), 2);

    // Deletion: every session anonymous, the cart and the index gone.
    desktop.add_to_cart("1", "2").await;
    let cart_key = user_cart(id);
    assert!(a.redis_exists(&cart_key).await);
    laptop
        .post("/account/delete", &[("password", NEW_PASSWORD)])
        .await
        .assert_redirect("/");
    let home = laptop.get("/").await;
    home.assert_contains("Your account, its cart and all its sessions were deleted.");
    assert_eq!(logged_in_everywhere(&laptop, &a, &b).await, None);
    assert_eq!(logged_in_everywhere(&desktop, &a, &b).await, None);
    assert!(!a.redis_exists(&cart_key).await, "cart key gone");
    assert!(!a.redis_exists(&session_index(id)).await, "index gone");
    assert!(!a.user_exists(USER).await);
    let sessions: Vec<String> = a
        .redis_keys()
        .await
        .into_iter()
        .filter(|k| !k.contains(':'))
        .collect();
    for sid in sessions {
        let record: Vec<u8> = a.redis().unwrap().get(&sid).await.unwrap();
        assert!(
            !String::from_utf8_lossy(&record).contains(USER),
            "a session of the deleted user is left"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_created_on_another_replica_during_a_password_change_does_not_survive_it() {
    // All from one address: the throttle must not be what stops the racing logins.
    let a = TestApp::spawn_with(Backend::Redis, |c| c.login_max_failures_per_user = 100).await;
    let b = a.sibling("replica-b").await;
    a.browser().register(USER, PASSWORD).await;
    let owner = a.browser();
    owner.log_in(USER, PASSWORD).await.assert_redirect("/");
    // Logins with the old password race the change, on the other replica.
    let racers: Vec<_> = (0..8)
        .map(|_| {
            let browser = b.browser();
            tokio::spawn(async move {
                let page = browser.log_in(USER, PASSWORD).await;
                (browser, page.status)
            })
        })
        .collect();
    owner.change_password_to_the_new_one().await;
    for racer in racers {
        let (browser, _) = racer.await.unwrap();
        assert_eq!(
            logged_in_everywhere(&browser, &a, &b).await,
            None,
            "a login with the old password outlived the change"
        );
    }
    assert_eq!(owner.get("/").await.logged_in_as().as_deref(), Some(USER));
}

#[tokio::test]
async fn another_users_handle_and_bad_input_are_refused_and_change_nothing() {
    let app = TestApp::spawn(Backend::Redis).await;
    let alice = app.browser();
    let bob = app.browser();
    alice
        .register("alice", "alice password")
        .await
        .assert_redirect("/");
    bob.register("bob", "bob password 1")
        .await
        .assert_redirect("/");
    let alice_handle = cards(&alice.get("/account/sessions").await)[0]
        .handle
        .clone();
    let before = app.redis_keys().await;

    let refused = bob
        .post("/account/sessions/revoke", &[("session", &alice_handle)])
        .await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN);
    refused.assert_contains("That session is not one of your active sessions");
    refused.assert_contains("Served by <strong>test-replica</strong>");
    let unknown = bob
        .post(
            "/account/sessions/revoke",
            &[("session", "0123456789abcdef")],
        )
        .await;
    assert_eq!(unknown.status, StatusCode::FORBIDDEN);
    let missing = bob.post("/account/sessions/revoke", &[]).await;
    assert_eq!(missing.status, StatusCode::BAD_REQUEST);
    missing.assert_contains("No session was chosen.");
    assert_eq!(
        alice.get("/").await.logged_in_as().as_deref(),
        Some("alice")
    );

    let long = "p".repeat(129);
    let cases: Vec<(Form, StatusCode, &str)> = vec![
        (
            vec![],
            StatusCode::BAD_REQUEST,
            "Please fill in your current password and the new one twice.",
        ),
        (
            vec![
                ("current_password", "bob password 1"),
                ("new_password", "short"),
                ("new_password_confirm", "short"),
            ],
            StatusCode::BAD_REQUEST,
            "Passwords are at least 8 characters long.",
        ),
        (
            vec![
                ("current_password", "bob password 1"),
                ("new_password", &long),
                ("new_password_confirm", &long),
            ],
            StatusCode::BAD_REQUEST,
            "Passwords are at most 128 bytes long.",
        ),
        (
            vec![
                ("current_password", &long),
                ("new_password", "long enough"),
                ("new_password_confirm", "long enough"),
            ],
            StatusCode::BAD_REQUEST,
            "Passwords are at most 128 bytes long.",
        ),
        (
            vec![
                ("current_password", "bob password 1"),
                ("new_password", "long enough"),
                ("new_password_confirm", "long enougH"),
            ],
            StatusCode::BAD_REQUEST,
            "The two new passwords do not match.",
        ),
        (
            vec![
                ("current_password", "not my password"),
                ("new_password", "long enough"),
                ("new_password_confirm", "long enough"),
            ],
            StatusCode::UNAUTHORIZED,
            "Your current password is not right. Nothing was changed.",
        ),
    ];
    for (form, status, message) in cases {
        let page = bob.post("/account/password", &form).await;
        assert_eq!(page.status, status, "{form:?}");
        page.assert_contains(message);
        page.assert_contains("Change your password");
    }
    for (form, status, message) in [
        (
            vec![],
            StatusCode::BAD_REQUEST,
            "Please enter your password to delete your account.",
        ),
        (
            vec![("password", long.as_str())],
            StatusCode::BAD_REQUEST,
            "Passwords are at most 128 bytes long.",
        ),
        (
            vec![("password", "not my password")],
            StatusCode::UNAUTHORIZED,
            "That password is not right. Your account was not deleted.",
        ),
    ] {
        let page = bob.post("/account/delete", &form).await;
        assert_eq!(page.status, status, "{form:?}");
        page.assert_contains(message);
    }
    assert!(app.user_exists("bob").await);
    assert_eq!(bob.get("/").await.logged_in_as().as_deref(), Some("bob"));
    bob.log_out().await;
    app.browser()
        .log_in("bob", "bob password 1")
        .await
        .assert_redirect("/");
    // Only throttle counters and the new login's session and index entry changed.
    let after = app.redis_keys().await;
    for key in &before {
        if !key.starts_with("throttle:") && key != &bob.sid().unwrap_or_default() {
            assert!(after.contains(key) || !key.contains(':'), "{key} vanished");
        }
    }

    // Anonymous visitors are sent to log in, and come back.
    let anonymous = app.browser();
    for path in ["/account", "/account/sessions", "/account/password"] {
        anonymous
            .get(path)
            .await
            .assert_redirect(&format!("/login?next={path}"));
    }
    anonymous
        .post("/account/delete", &[("password", "x")])
        .await
        .assert_redirect("/login?next=/account");
}

#[tokio::test]
async fn replayed_login_logout_and_registration_forms_change_nothing() {
    let app = TestApp::spawn(Backend::Redis).await;
    let visitor = app.browser();
    let form_id = "0f0e0d0c0b0a09080706050403020100";
    let register = [
        ("username", USER),
        ("password", PASSWORD),
        ("password_confirm", PASSWORD),
        ("submission", form_id),
    ];
    visitor
        .post("/register", &register)
        .await
        .assert_redirect("/");
    // The response was lost; the browser sends the same form again (without the cookie).
    let retry = app.browser().post("/register", &register).await;
    assert_eq!(retry.status, StatusCode::OK);
    retry.assert_contains(
        "Your account exists: it was created when you first sent this form. Please log in.",
    );
    retry.assert_contains("value=\"traveller\"");
    assert_eq!(app.user_count().await, 2, "demo and one new account");
    // Another form with the same name is still "taken".
    let other = app
        .browser()
        .post(
            "/register",
            &[
                ("username", USER),
                ("password", PASSWORD),
                ("password_confirm", PASSWORD),
                ("submission", "ffeeddccbbaa99887766554433221100"),
            ],
        )
        .await;
    assert_eq!(other.status, StatusCode::CONFLICT);

    // A login form sent twice (double click): one session, not two.
    let id = app.user_id(USER).await;
    let index = session_index(id);
    let count = |app: &TestApp| {
        let redis = app.redis().unwrap().clone();
        let index = index.clone();
        async move { redis.zcard::<i64, _>(&index).await.unwrap() }
    };
    assert_eq!(count(&app).await, 1);
    let laptop = app.browser();
    let login = [
        ("username", USER),
        ("password", PASSWORD),
        ("submission", "1111222233334444aaaabbbbccccdddd"),
    ];
    laptop.post("/login", &login).await.assert_redirect("/");
    assert_eq!(count(&app).await, 2);
    let again = app.browser();
    again.post("/login", &login).await.assert_redirect("/");
    assert_eq!(
        count(&app).await,
        2,
        "the replay replaced the first try's session"
    );
    assert_eq!(laptop.get("/").await.logged_in_as(), None);
    assert_eq!(again.get("/").await.logged_in_as().as_deref(), Some(USER));

    // Logout: its id is the session's handle. A replay after the logout, or an old
    // logout form sent from a newer session, changes nothing.
    let home = again.get("/").await;
    let handle = between(&home.body, "name=\"submission\" value=\"", "\"").to_owned();
    again
        .post("/logout", &[("submission", &handle)])
        .await
        .assert_redirect("/");
    assert_eq!(again.get("/").await.logged_in_as(), None);
    again.log_in(USER, PASSWORD).await.assert_redirect("/");
    again
        .post("/logout", &[("submission", &handle)])
        .await
        .assert_redirect("/");
    let still = again.get("/").await;
    assert_eq!(still.logged_in_as().as_deref(), Some(USER));
    // It says what is true: still logged in, nothing changed (never "you were
    // already logged out" to someone who is logged in).
    still.assert_contains(&format!(
        "That logout form was from an earlier login, so nothing was changed: you are \
         still logged in as {USER}."
    ));
    assert!(!still.body.contains("You were already logged out."));
    // Without the field (curl, scripts), logout works as before.
    again.log_out().await.assert_redirect("/");
    assert_eq!(again.get("/").await.logged_in_as(), None);
}

#[tokio::test]
async fn a_registration_whose_session_cannot_be_saved_says_the_account_exists() {
    let app = TestApp::spawn(Backend::Redis).await;
    let redis = app.redis().unwrap();
    // Redis refuses SET (the session write) but still runs the throttle's script.
    let _: () = redis
        .custom(fred::cmd!("ACL"), vec!["SETUSER", "default", "-set"])
        .await
        .unwrap();
    let form = [
        ("username", USER),
        ("password", PASSWORD),
        ("password_confirm", PASSWORD),
        ("submission", "abcdefabcdefabcdefabcdefabcdef12"),
    ];
    let browser = app.browser();
    let page = browser.post("/register", &form).await;
    assert_eq!(page.status, StatusCode::SERVICE_UNAVAILABLE);
    page.assert_contains(
        "Your account was created, but you could not be logged in just now. Please log in.",
    );
    page.assert_contains("action=\"/login\"");
    assert!(app.user_exists(USER).await);
    assert_eq!(browser.sid(), None);
    // The retry of the same form says so too, not "taken".
    let retry = browser.post("/register", &form).await;
    retry.assert_contains("Your account exists");
    let _: () = redis
        .custom(fred::cmd!("ACL"), vec!["SETUSER", "default", "+set"])
        .await
        .unwrap();
    browser.log_in(USER, PASSWORD).await.assert_redirect("/");
}

#[tokio::test]
async fn the_secure_cookie_is_host_prefixed_and_logout_removes_it() {
    let app = TestApp::spawn_with(Backend::Redis, |c| c.cookie_secure = true).await;
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let login = client
        .post(format!("{}/login", app.address))
        .form(&[("username", DEMO_USER), ("password", DEMO_PASSWORD)])
        .send()
        .await
        .unwrap();
    let set = login.headers()["set-cookie"].to_str().unwrap().to_owned();
    assert!(set.starts_with("__Host-sid="), "{set}");
    assert!(
        set.contains("Secure") && set.contains("Path=/") && !set.contains("Domain"),
        "{set}"
    );
    let cookie = set.split(';').next().unwrap().to_owned();
    let page = Browser::read(
        client
            .get(format!("{}/", app.address))
            .header("cookie", &cookie)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(page.logged_in_as().as_deref(), Some(DEMO_USER));
    let logout = client
        .post(format!("{}/logout", app.address))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap();
    // The logout also sets its `notice` cookie (the next page's message).
    let removal = logout
        .headers()
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .find(|c| c.starts_with("__Host-sid="))
        .expect("the session cookie removed");
    for part in ["Max-Age=0", "Secure", "Path=/"] {
        assert!(removal.contains(part), "{part} missing: {removal}");
    }
}

/// The commands clients sent to `server` while `work` ran, by name, from MONITOR;
/// the calls scripts make inside Redis (marked `lua`) are left out.
async fn commands_sent<F: std::future::Future>(server: &RedisServer, work: F) -> Vec<String> {
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
    let mut monitor = tokio::net::TcpStream::connect(("127.0.0.1", server.port))
        .await
        .unwrap();
    monitor.write_all(b"MONITOR\r\n").await.unwrap();
    let mut lines = BufReader::new(monitor).lines();
    assert_eq!(lines.next_line().await.unwrap().as_deref(), Some("+OK"));
    work.await;
    let marker = format!("end-of-work-{}", std::process::id());
    server.cli(&["ECHO", &marker]);
    let mut sent = Vec::new();
    let read = async {
        while let Some(line) = lines.next_line().await.unwrap() {
            if line.contains(&marker) {
                break;
            }
            if line.contains(" lua]") {
                continue;
            }
            // +1700000000.123456 [0 127.0.0.1:5678] "EVALSHA" "…" …
            if let Some(name) = line.split('"').nth(1) {
                sent.push(name.to_uppercase());
            }
        }
    };
    tokio::time::timeout(std::time::Duration::from_secs(10), read)
        .await
        .expect("MONITOR saw the marker");
    sent
}

/// The demo user logged in, with one line in the cart and no flash pending.
async fn demo_with_one_line(app: &TestApp) -> Browser {
    let user = app.browser();
    user.log_in(DEMO_USER, DEMO_PASSWORD)
        .await
        .assert_redirect("/");
    user.add_to_cart("1", "1").await.assert_redirect("/cart");
    user.get("/cart").await; // shows (and so removes) the flash
    user
}

#[tokio::test]
async fn a_logged_in_page_view_sends_two_redis_commands() {
    let app = TestApp::spawn(Backend::Redis).await;
    let user = demo_with_one_line(&app).await;
    let server = app.redis_server.clone().unwrap();
    let mut sent = commands_sent(&server, async {
        let page = user.get("/").await;
        assert_eq!(page.logged_in_as().as_deref(), Some(DEMO_USER));
        assert_eq!(page.cart_badge(), 1);
    })
    .await;
    // Sent together (one round trip of waiting): GET <session>, and EVALSHA of
    // the script that reads the cart and the credential epoch (same hash slot).
    sent.sort();
    assert_eq!(sent, ["EVALSHA", "GET"]);
}

#[tokio::test]
async fn a_logged_in_cart_add_sends_two_redis_commands() {
    let app = TestApp::spawn(Backend::Redis).await;
    let user = demo_with_one_line(&app).await;
    let server = app.redis_server.clone().unwrap();
    let sent = commands_sent(&server, async {
        user.add_to_cart("2", "1").await.assert_redirect("/cart");
    })
    .await;
    // GET <session>; EVALSHA: the user's credential epoch checked, the line added
    // (one script, one hash slot). The message rides in the notice cookie, so the
    // session is not written, nor by the page that shows the message.
    assert_eq!(sent, ["GET", "EVALSHA"]);
    let sent = commands_sent(&server, async {
        let page = user.get("/cart").await;
        assert_eq!(page.cart_lines().len(), 2);
        page.assert_contains("Added 1 ×");
    })
    .await;
    assert_eq!(sent.len(), 2, "{sent:?}");
    // Shown once.
    let page = user.get("/cart").await;
    assert!(!page.body.contains("Added 1 ×"));

    // An update is the same: its message rides in the notice cookie too. (The
    // first update loads its script into Redis: measured on the second.)
    user.post("/cart/update", &[("product_id", "2"), ("quantity", "3")])
        .await
        .assert_redirect("/cart");
    let sent = commands_sent(&server, async {
        user.post("/cart/update", &[("product_id", "2"), ("quantity", "0")])
            .await
            .assert_redirect("/cart");
    })
    .await;
    assert_eq!(sent, ["GET", "EVALSHA"]);
    let page = user.get("/cart").await;
    assert_eq!(page.cart_lines().len(), 1);
    page.assert_contains("Removed ");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cart_change_from_a_session_a_password_change_ended_does_not_touch_the_users_cart() {
    let app = TestApp::spawn(Backend::Redis).await;
    let (laptop, desktop) = (app.browser(), app.browser());
    laptop.register(USER, PASSWORD).await.assert_redirect("/");
    desktop.log_in(USER, PASSWORD).await.assert_redirect("/");
    desktop.add_to_cart("1", "2").await.assert_redirect("/cart");
    let id = app.user_id(USER).await;
    let cart_key = user_cart(id);
    // As if the desktop's session had been created on another replica while the
    // password changed: missing from the index, so only the epoch can end it.
    drop_from_index(&app, id, &desktop.sid().unwrap()).await;
    laptop.change_password_to_the_new_one().await;

    // The desktop's session is from before the change: the epoch check inside the
    // cart scripts sends its update and its add where an anonymous visitor's would
    // go, never into the user's cart.
    desktop
        .post("/cart/update", &[("product_id", "1"), ("quantity", "5")])
        .await
        .assert_redirect("/cart");
    assert_eq!(app.redis_hash(&cart_key).await.get("1"), Some(&2));
    desktop.add_to_cart("3", "1").await.assert_redirect("/cart");
    assert_eq!(
        app.redis_hash(&cart_key).await,
        [("1".to_owned(), 2)].into(),
        "the user's cart is unchanged"
    );
    let page = desktop.get("/cart").await;
    assert_eq!(page.logged_in_as(), None);
    assert_eq!(page.cart_lines().len(), 1, "an anonymous cart with the add");
    assert_eq!(laptop.get("/").await.cart_badge(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_index_is_capped_and_a_login_over_the_cap_ends_the_oldest_session() {
    let app = TestApp::spawn(Backend::Redis).await;
    let cap = MAX_SESSIONS_PER_USER;
    let first = app.browser();
    first
        .log_in(DEMO_USER, DEMO_PASSWORD)
        .await
        .assert_redirect("/");
    let mut last = None;
    for _ in 0..cap {
        let browser = app.browser();
        browser
            .log_in(DEMO_USER, DEMO_PASSWORD)
            .await
            .assert_redirect("/");
        last = Some(browser);
    }
    let indexed: i64 = app.redis().unwrap().zcard("sessions:{u1}").await.unwrap();
    assert_eq!(indexed, cap as i64);
    assert_eq!(
        first.get("/").await.logged_in_as(),
        None,
        "the oldest ended"
    );
    let newest = last.unwrap();
    assert_eq!(
        newest.get("/").await.logged_in_as().as_deref(),
        Some(DEMO_USER)
    );
    assert_eq!(cards(&newest.get("/account/sessions").await).len(), cap);
}

/// A replica reads a returning visitor's session and cart in one round trip, on
/// the guess that the session is still the user's it was last time; when the
/// session has ended meanwhile, the cart read ahead is discarded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cart_read_ahead_for_a_session_that_ended_is_discarded() {
    let app = TestApp::spawn(Backend::Redis).await;
    let user = app.browser();
    user.log_in(DEMO_USER, DEMO_PASSWORD)
        .await
        .assert_redirect("/");
    user.add_to_cart("1", "3").await.assert_redirect("/cart");
    // The first view teaches the replica whose session this is; the second reads
    // the session and the cart together, and both show the same.
    for _ in 0..2 {
        let page = user.get("/").await;
        assert_eq!(page.logged_in_as().as_deref(), Some(DEMO_USER));
        assert_eq!(page.cart_badge(), 3);
    }
    let sid = user.sid().unwrap();
    user.log_out().await.assert_redirect("/");

    // The old cookie: the guess says "demo", the session says "ended".
    let replay = app.browser();
    replay.set_sid(&sid);
    let page = replay.get("/").await;
    assert_eq!(page.logged_in_as(), None);
    assert_eq!(page.cart_badge(), 0, "demo's cart must not be shown");
}

/// Re-entering the current password (to change it, or to delete the account) is
/// a login attempt: wrong guesses count against the login throttle, shared by
/// both forms, so a stolen session cannot be used to guess the password.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_current_passwords_are_throttled_like_logins() {
    let app = TestApp::spawn(Backend::Redis).await;
    let browser = app.browser();
    browser.register(USER, PASSWORD).await.assert_redirect("/");
    let limit = Config::defaults().login_max_failures_per_user;
    let change = |guess: &'static str| {
        let browser = browser.clone();
        async move {
            browser
                .post(
                    "/account/password",
                    &[
                        ("current_password", guess),
                        ("new_password", NEW_PASSWORD),
                        ("new_password_confirm", NEW_PASSWORD),
                    ],
                )
                .await
        }
    };
    for _ in 1..limit {
        let page = change("a wrong guess").await;
        assert_eq!(page.status, StatusCode::UNAUTHORIZED, "{page:?}");
        page.assert_contains("Your current password is not right. Nothing was changed.");
    }
    // The last allowed guess goes to the delete form: the same counter.
    let delete = browser
        .post("/account/delete", &[("password", "another wrong guess")])
        .await;
    assert_eq!(delete.status, StatusCode::UNAUTHORIZED, "{delete:?}");
    // Now even the right password is refused on either form, and nothing changed.
    let page = change(PASSWORD).await;
    assert_eq!(page.status, StatusCode::TOO_MANY_REQUESTS, "{page:?}");
    assert!(page.headers.contains_key("retry-after"));
    let delete = browser
        .post("/account/delete", &[("password", PASSWORD)])
        .await;
    assert_eq!(delete.status, StatusCode::TOO_MANY_REQUESTS, "{delete:?}");
    assert_eq!(browser.get("/").await.logged_in_as().as_deref(), Some(USER));
    let old = app.browser().log_in(USER, PASSWORD).await;
    assert_eq!(
        old.status,
        StatusCode::TOO_MANY_REQUESTS,
        "a login counts the same"
    );
}

#[tokio::test]
async fn a_logout_form_from_any_page_of_this_login_ends_it() {
    let app = TestApp::spawn(Backend::Redis).await;
    let owner = app.browser();
    owner.register(USER, PASSWORD).await.assert_redirect("/");
    // A page shown before the password change, which gives this session a new id.
    let old_page = owner.get("/account").await;
    let handle = old_page.form_value("/logout", "submission");
    owner.change_password_to_the_new_one().await;
    let sid = owner.sid().unwrap();
    // Its logout form is this login's: it logs out.
    owner
        .post("/logout", &[("submission", &handle)])
        .await
        .assert_redirect("/");
    let home = owner.get("/").await;
    assert_eq!(home.logged_in_as(), None);
    assert!(!app.session_is_live(&sid).await, "the session ended");
    // Sent again, the session it belonged to has ended: it says so.
    owner
        .post("/logout", &[("submission", &handle)])
        .await
        .assert_redirect("/");
    owner
        .get("/")
        .await
        .assert_contains("You were already logged out.");
}
