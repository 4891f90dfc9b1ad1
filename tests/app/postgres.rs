//! What differs between the databases must not show: the same races, constraint
//! errors and outages give the same pages on SQLite and on Postgres. (The shop's
//! behavioural tests in tests/app/shop.rs also run on Postgres.)

use std::time::{Duration, Instant};

use reqwest::StatusCode;

use crate::support::api::{DEMO_PASSWORD, DEMO_USER};
use crate::support::app::{Backend, Database, TestApp};
use crate::support::postgres::PostgresServer;
use crate::support::process::wait_until;
use crate::support::redis::RedisServer;

/// Eight registrations of one name at once, through two replicas sharing the
/// database: one account, one welcome, seven "taken" pages.
async fn a_username_race_has_one_winner(database: Database) {
    let first = TestApp::spawn_on(Backend::Redis, database).await;
    let second = first.sibling("second-replica").await;
    let attempts = (0..8).map(|i| {
        let app = if i % 2 == 0 { &first } else { &second };
        let browser = app.browser();
        async move {
            // Differently cased: the uniqueness is case-insensitive on both.
            let name = if i % 2 == 0 { "Racer" } else { "racer" };
            browser.register(name, "a long enough password").await
        }
    });
    let pages = futures::future::join_all(attempts).await;
    let won = pages
        .iter()
        .filter(|p| p.status == StatusCode::SEE_OTHER)
        .count();
    assert_eq!(won, 1, "{database:?}: {pages:#?}");
    for page in pages.iter().filter(|p| p.status != StatusCode::SEE_OTHER) {
        assert_eq!(page.status, StatusCode::CONFLICT, "{database:?}: {page:?}");
        page.assert_contains("That username is taken. Please choose another.");
    }
    assert!(first.user_exists("racer").await);
    let racers: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM users WHERE username = $1")
        .bind("racer")
        .fetch_one(&first.state.db)
        .await
        .unwrap();
    assert_eq!(racers, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_username_race_has_one_winner_on_sqlite() {
    a_username_race_has_one_winner(Database::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_username_race_has_one_winner_on_postgres() {
    a_username_race_has_one_winner(Database::Postgres).await;
}

/// The schema holds on both: a second row with the same name (in another case)
/// is refused by the database itself, as a unique violation the app recognises.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn both_schemas_refuse_the_same_rows() {
    for database in [Database::Sqlite, Database::Postgres] {
        let app = TestApp::spawn_on(Backend::Memory, database).await;
        let insert = |name: &'static str| {
            sqlx::query("INSERT INTO users (username, password_hash) VALUES ($1, 'x')")
                .bind(name)
                .execute(&app.state.db)
        };
        insert("twin").await.unwrap();
        let err = insert("twin").await.unwrap_err();
        let sqlx::Error::Database(e) = &err else {
            panic!("{database:?}: {err}")
        };
        assert!(e.is_unique_violation(), "{database:?}: {e}");
        // A price must be positive.
        let err = sqlx::query("UPDATE products SET price_cents = 0 WHERE id = 1")
            .execute(&app.state.db)
            .await
            .unwrap_err();
        let sqlx::Error::Database(e) = &err else {
            panic!("{database:?}: {err}")
        };
        assert!(e.is_check_violation(), "{database:?}: {e}");
        // Ids, times and money come back as i64 on both.
        let (id, created_at): (i64, i64) =
            sqlx::query_as("SELECT id, created_at FROM users WHERE username = $1")
                .bind("twin")
                .fetch_one(&app.state.db)
                .await
                .unwrap();
        assert!(id > 0);
        assert!(created_at > 1_700_000_000, "unix seconds: {created_at}");
        let ready = app.browser().get("/readyz").await;
        let name = match database {
            Database::Sqlite => "sqlite: ok",
            Database::Postgres => "postgres: ok",
        };
        assert!(ready.body.contains(name), "{}", ready.body);
    }
}

/// Postgres goes away (like a crash: every connection drops) and comes back. The
/// catalog keeps working (it is in memory); what needs the database answers the
/// shop's 503 page within the pool's wait; the app reconnects by itself.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_postgres_outage_is_a_503_page_and_the_app_recovers_alone() {
    let postgres = PostgresServer::start().await;
    let redis = std::sync::Arc::new(RedisServer::start().await);
    let dir = std::sync::Arc::new(tempfile::tempdir().unwrap());
    let app = TestApp::spawn_full(
        Some(redis),
        dir,
        postgres.url("postgres"),
        "test-replica",
        |_| {},
    )
    .await;
    let user = app.browser();
    user.log_in(DEMO_USER, DEMO_PASSWORD)
        .await
        .assert_redirect("/");
    user.add_to_cart("1", "2").await;

    postgres.stop().await;

    assert_eq!(app.browser().get("/").await.status, StatusCode::OK);
    assert_eq!(
        user.get("/cart").await.status,
        StatusCode::OK,
        "a logged-in cart needs Redis only"
    );
    let ready = app.browser().get("/readyz").await;
    assert_eq!(ready.status, StatusCode::SERVICE_UNAVAILABLE, "{ready:?}");
    assert!(ready.body.contains("redis: ok"), "{}", ready.body);
    for register in [true, false] {
        let started = Instant::now();
        let page = if register {
            app.browser()
                .register("newcomer", "a long enough password")
                .await
        } else {
            app.browser().log_in(DEMO_USER, DEMO_PASSWORD).await
        };
        assert_eq!(page.status, StatusCode::SERVICE_UNAVAILABLE, "{page:?}");
        assert!(
            started.elapsed() < Duration::from_secs(4),
            "{:?}",
            started.elapsed()
        );
        assert_eq!(page.headers["retry-after"], "5");
        page.assert_contains("Served by <strong>test-replica</strong>");
        page.assert_contains("database is unavailable right now, so nothing was changed");
    }

    postgres.resume().await;
    let back = Instant::now();
    wait_until("recovery", Duration::from_secs(10), || {
        let app = &app;
        async move { app.browser().get("/readyz").await.status == StatusCode::OK }
    })
    .await;
    println!("recovered {:?} after Postgres came back", back.elapsed());
    app.browser()
        .register("newcomer", "a long enough password")
        .await
        .assert_redirect("/");
    let cart = user.get("/cart").await;
    assert_eq!(cart.logged_in_as().as_deref(), Some("demo"));
    assert_eq!(cart.cart_lines(), vec![("Blue Teapot".into(), 2)]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_checkout_pages_of_one_cart_make_one_order_on_postgres() {
    crate::checkout::two_pages_of_one_cart_make_one_order(Database::Postgres).await;
}
