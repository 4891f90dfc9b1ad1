//! Races between a visitor's cart adds and their own login or logout, on two
//! replicas: the adds go on with the old cookie while the login or logout runs.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use reqwest::StatusCode;

use super::browser::Browser;

/// Adds one Blue Teapot at a time with `racer` until two adds after `done` turned
/// true (paced, at most 60: below the cart's cap of 99 a line). Returns the adds
/// acknowledged (303) and refused (409, "nothing was changed"); anything else fails.
pub async fn add_until_just_after(racer: &Browser, done: &AtomicBool) -> (u32, u32) {
    let (mut acknowledged, mut refused, mut after) = (0u32, 0u32, 0u32);
    for _ in 0..60 {
        if after == 2 {
            break;
        }
        if done.load(Ordering::SeqCst) {
            after += 1;
        }
        tokio::time::sleep(Duration::from_millis(3)).await;
        let page = racer.add_to_cart("1", "1").await;
        match page.status {
            StatusCode::SEE_OTHER => acknowledged += 1,
            StatusCode::CONFLICT => {
                page.assert_contains("nothing was changed");
                refused += 1;
            }
            other => panic!("an add racing the visitor's own login or logout: {other} {page:?}"),
        }
    }
    (acknowledged, refused)
}

/// One visitor with an anonymous cart (one Blue Teapot, added on `visitor`'s
/// replica) logs in as `name` while the same cookie, in another client on
/// `other_replica`, keeps adding. Returns the adds acknowledged and refused.
pub async fn race_adds_against_login(
    visitor: Browser,
    other_replica: &str,
    name: &str,
    password: &str,
) -> (u32, u32) {
    let racer = Browser::new(other_replica);
    visitor.add_to_cart("1", "1").await.assert_redirect("/cart");
    racer.set_sid(&visitor.sid().unwrap());
    let logged_in = AtomicBool::new(false);
    let login = async {
        let page = visitor.log_in(name, password).await;
        logged_in.store(true, Ordering::SeqCst);
        page
    };
    let (login, counts) = tokio::join!(login, add_until_just_after(&racer, &logged_in));
    login.assert_redirect("/");
    counts
}

/// Runs the races five at a time: logins verify passwords on one core, and a
/// request queued behind twenty argon2 runs would meet the request timeout.
pub async fn in_batches<F: std::future::Future>(races: impl Iterator<Item = F>) -> Vec<F::Output> {
    let mut races = races.peekable();
    let mut outcomes = Vec::new();
    while races.peek().is_some() {
        let batch: Vec<F> = races.by_ref().take(5).collect();
        outcomes.extend(futures::future::join_all(batch).await);
    }
    outcomes
}
