//! The shop in a real browser: Debian's headless Chromium, driven through
//! chromedriver (WebDriver) by fantoccini.
//!
//! - One journey (anonymous cart → register → merged cart → log out → Back →
//!   log in from a fresh browser profile), run against one in-process app, through
//!   nginx over three replica processes, and with JavaScript turned off.
//! - Every page passes axe-core (no violation at all), has no `<script>`, and
//!   does not scroll sideways at 320, 375 and 1280 CSS pixels (320 also with a
//!   24 px default font); every page passes the Nu Html Checker.
//!
//! Needs chromium, chromium-driver, redis-server, nginx and tests/axe/node_modules:
//! scripts/test installs them when missing.

// The shared test support (tests/support/), the parts this suite uses; an
// `allow(dead_code)` marks a module it uses only some of.
mod support {
    #[allow(dead_code)]
    pub mod api;
    #[allow(dead_code)]
    pub mod app;
    pub mod axe;
    #[allow(dead_code)]
    pub mod browser;
    pub mod chrome;
    // The three-replica cluster of tests/cluster.rs.
    #[allow(dead_code)]
    pub mod cluster;
    #[allow(dead_code)]
    pub mod postgres;
    pub mod process;
    #[allow(dead_code)]
    pub mod redis;
}

use std::collections::BTreeSet;

use support::api::{DEMO_PASSWORD, DEMO_USER};
use support::app::{Backend, TestApp};
use support::axe;
use support::chrome::{Chrome, ChromeDriver, Options};
use support::cluster::Cluster;

const SHOPPER: &str = "tea_lover";
const SHOPPER_PASSWORD: &str = "correct horse 42";

fn lines(expected: &[(&str, u32)]) -> Vec<(String, u32)> {
    expected.iter().map(|(n, q)| (n.to_string(), *q)).collect()
}

/// The visitor's story, in a browser as a person would click through it.
/// Returns the replica names read from the footer of every page seen.
async fn shop_journey(driver: &ChromeDriver, site: &str, options: Options) -> BTreeSet<String> {
    // A visitor fills a cart without an account.
    let laptop = Chrome::open(driver, site, options).await;
    laptop.visit("/").await;
    assert_eq!(laptop.logged_in_as().await, None);
    assert_eq!(laptop.cart_badge().await, 0);
    // An add comes back to the page it was made on, with a message and the badge.
    laptop
        .click_button(".product-grid", "Add to cart: Blue Teapot")
        .await;
    assert_eq!(laptop.path().await, "/");
    laptop
        .assert_text("Added 1 × Blue Teapot to your cart. View cart")
        .await;
    assert_eq!(laptop.cart_badge().await, 1);

    laptop.visit("/products/bamboo-whisk").await;
    laptop.fill("#quantity", "3").await;
    laptop.click_button(".product-detail", "Add to cart").await;
    assert_eq!(laptop.path().await, "/products/bamboo-whisk");
    laptop
        .assert_text("Added 3 × Bamboo Whisk to your cart.")
        .await;
    laptop.click(".flash a[href='/cart']").await;
    assert_eq!(
        laptop.cart_lines().await,
        lines(&[("Blue Teapot", 1), ("Bamboo Whisk", 3)])
    );
    laptop.fill("#qty-1", "2").await;
    laptop
        .click_button(".cart-table", "Update Blue Teapot")
        .await;
    laptop.assert_text("Blue Teapot now: 2.").await;
    assert_eq!(laptop.cart_badge().await, 5);

    // Registering logs the visitor in; the anonymous cart becomes their cart.
    // From the cart page: the header's Register comes back to it.
    laptop.click(".site-nav a[href^='/register']").await;
    laptop.fill("#username", SHOPPER).await;
    laptop.fill("#password", SHOPPER_PASSWORD).await;
    laptop.fill("#password_confirm", SHOPPER_PASSWORD).await;
    laptop
        .click_button("form[action='/register']", "Create account")
        .await;
    assert_eq!(laptop.path().await, "/cart");
    laptop
        .assert_text(&format!("Welcome, {SHOPPER}! Your account is ready."))
        .await;
    assert_eq!(laptop.logged_in_as().await.as_deref(), Some(SHOPPER));
    laptop.click(".cart-badge").await;
    let merged = lines(&[("Blue Teapot", 2), ("Bamboo Whisk", 3)]);
    assert_eq!(laptop.cart_lines().await, merged);

    // Logging out ends the session; Back must not show the private cart again.
    // Pages are sent with `Cache-Control: no-store`, so Chromium fetches /cart anew
    // (no HTTP cache, no back/forward cache) and gets the anonymous, empty cart.
    laptop.click_button(".site-header", "Log out").await;
    assert_eq!(laptop.path().await, "/");
    assert_eq!(laptop.logged_in_as().await, None);
    assert_eq!(laptop.cart_badge().await, 0);
    laptop.back().await;
    assert_eq!(laptop.path().await, "/cart");
    assert_eq!(
        laptop.logged_in_as().await,
        None,
        "Back after logout showed the logged-in page"
    );
    laptop.assert_text("Your cart is empty.").await;
    assert!(laptop.cart_lines().await.is_empty());

    // Another browser with a fresh profile (no cookies): log in, the cart is there.
    let phone = Chrome::open(
        driver,
        site,
        Options {
            width: 375,
            ..options
        },
    )
    .await;
    phone.visit("/").await;
    phone.click(".site-nav a[href='/login']").await;
    phone.fill("#username", SHOPPER).await;
    phone.fill("#password", SHOPPER_PASSWORD).await;
    phone.click_button("form[action='/login']", "Log in").await;
    assert_eq!(phone.path().await, "/");
    assert_eq!(phone.logged_in_as().await.as_deref(), Some(SHOPPER));
    assert_eq!(phone.cart_badge().await, 5);
    phone.click(".cart-badge").await;
    assert_eq!(phone.cart_lines().await, merged);
    phone
        .click_button(".cart-table", "Remove Bamboo Whisk")
        .await;
    phone
        .assert_text("Removed Bamboo Whisk from your cart.")
        .await;
    assert_eq!(phone.cart_lines().await, lines(&[("Blue Teapot", 2)]));

    let mut replicas = laptop.replicas_seen();
    replicas.extend(phone.replicas_seen());
    laptop.close().await;
    phone.close().await;
    replicas
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cart_survives_registration_logout_and_a_new_browser() {
    let app = TestApp::spawn(Backend::Redis).await;
    let driver = ChromeDriver::start().await;

    let replicas = shop_journey(&driver, &app.address, Options::default()).await;

    assert_eq!(replicas, BTreeSet::from(["test-replica".to_owned()]));
    // What the browser saw is what Redis holds: the user's cart hash, no anonymous
    // cart left behind, and one session (the phone's; the laptop's was deleted at logout).
    let user_id = app.user_id(SHOPPER).await;
    let cart_key = format!("cart:{{u{user_id}}}");
    assert_eq!(
        app.redis_hash(&cart_key).await,
        [("1".to_owned(), 2)].into()
    );
    // The anonymous cart's hash is gone (its `:retired` marker stays for a while,
    // so a late add to it is refused rather than lost).
    let keys = app.redis_keys().await;
    assert!(
        !keys
            .iter()
            .any(|k| k.starts_with("cart:{a") && k.ends_with('}')),
        "{keys:?}"
    );
    // Ended sessions are one-minute tombstones; one session is alive.
    let mut live = Vec::new();
    for key in keys.iter().filter(|k| !k.contains(':')) {
        if app.redis_ttl(key).await > 60 {
            live.push(key);
        }
    }
    assert_eq!(live.len(), 1, "one live session: {keys:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_journey_through_nginx_over_three_replicas() {
    let cluster = Cluster::start().await;
    let driver = ChromeDriver::start().await;

    let replicas = shop_journey(&driver, &cluster.url, Options::default()).await;

    // Every page named its replica in the footer; round robin spread them, and
    // the session and cart followed the visitor from one replica to the next.
    let known: BTreeSet<String> = cluster.replica_names().into_iter().collect();
    assert!(replicas.is_subset(&known), "{replicas:?} not in {known:?}");
    assert!(
        replicas.len() > 1,
        "every page came from one replica: {replicas:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_journey_works_with_javascript_disabled() {
    let app = TestApp::spawn(Backend::Redis).await;
    let driver = ChromeDriver::start().await;
    let no_js = Options {
        javascript: false,
        ..Options::default()
    };

    // First make sure the browser really runs no page script.
    let probe = Chrome::open(&driver, &app.address, no_js).await;
    probe
        .goto_raw("data:text/html,<title>off</title><script>document.title='on'</script>")
        .await;
    assert_eq!(
        probe.client.title().await.unwrap(),
        "off",
        "JavaScript is on"
    );
    probe.close().await;

    shop_journey(&driver, &app.address, no_js).await;
}

/// A page to check, reached by the steps before it.
async fn check_page(chrome: &Chrome, name: &str, failures: &mut Vec<String>) {
    let source = chrome.source().await;
    if source.to_ascii_lowercase().contains("<script") {
        failures.push(format!("{name}: has a <script> element"));
    }
    for width in [1280, 375] {
        chrome.set_width(width).await;
        let (page_width, viewport) = chrome.scroll_width().await;
        if page_width > viewport {
            failures.push(format!(
                "{name} at {width}px: scrolls sideways ({page_width}px wide)"
            ));
        }
        // Not one violation, whatever its impact.
        for violation in axe::violations(chrome).await {
            failures.push(format!("{name} at {width}px: {violation}"));
        }
    }
    chrome.set_width(1280).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_page_is_accessible_script_free_and_fits_375_and_1280() {
    let app = TestApp::spawn(Backend::Redis).await;
    let driver = ChromeDriver::start().await;
    let chrome = Chrome::open(&driver, &app.address, Options::default()).await;
    let mut failures = Vec::new();

    chrome.visit("/").await;
    check_page(&chrome, "catalog", &mut failures).await;
    chrome.visit("/products/blue-teapot").await;
    check_page(&chrome, "product", &mut failures).await;
    chrome.visit("/cart").await;
    chrome.assert_text("Your cart is empty.").await;
    check_page(&chrome, "cart (empty)", &mut failures).await;
    chrome.visit("/login").await;
    check_page(&chrome, "login", &mut failures).await;
    chrome.fill("#username", DEMO_USER).await;
    chrome.fill("#password", "not the password").await;
    chrome.click_button("form[action='/login']", "Log in").await;
    chrome.assert_text("Wrong username or password.").await;
    check_page(&chrome, "login with an error", &mut failures).await;
    chrome.visit("/register").await;
    check_page(&chrome, "register", &mut failures).await;
    chrome.fill("#username", "shopper").await;
    chrome.fill("#password", "long enough pw").await;
    chrome.fill("#password_confirm", "different pw!!").await;
    chrome
        .click_button("form[action='/register']", "Create account")
        .await;
    chrome.assert_text("The two passwords do not match.").await;
    check_page(&chrome, "register with an error", &mut failures).await;
    chrome.visit("/session").await;
    chrome.assert_text("This browser has no session").await;
    check_page(&chrome, "session inspector (anonymous)", &mut failures).await;
    chrome.visit("/nowhere").await;
    chrome
        .assert_text("There is no page at this address.")
        .await;
    check_page(&chrome, "404 page", &mut failures).await;

    chrome.visit("/").await;
    chrome
        .click_button(".product-grid", "Add to cart: Cast Iron Kettle")
        .await;
    chrome.visit("/products/earl-grey-tin").await;
    chrome.click_button(".product-detail", "Add to cart").await;
    check_page(&chrome, "product (with a message)", &mut failures).await;
    chrome.click(".flash a[href='/cart']").await;
    assert_eq!(chrome.cart_lines().await.len(), 2);
    check_page(&chrome, "cart (filled)", &mut failures).await;
    chrome.visit("/login").await;
    chrome.fill("#username", DEMO_USER).await;
    chrome.fill("#password", DEMO_PASSWORD).await;
    chrome.click_button("form[action='/login']", "Log in").await;
    assert_eq!(chrome.logged_in_as().await.as_deref(), Some(DEMO_USER));
    check_page(&chrome, "catalog (logged in)", &mut failures).await;
    chrome.visit("/session").await;
    chrome.assert_text("Remember me").await;
    check_page(&chrome, "session inspector (logged in)", &mut failures).await;
    chrome.visit("/account/sessions").await;
    chrome.assert_text("This session").await;
    check_page(&chrome, "account sessions", &mut failures).await;
    chrome.visit("/account/password").await;
    check_page(&chrome, "account password", &mut failures).await;
    chrome.fill("#current_password", "not the password").await;
    chrome.fill("#new_password", "a new password").await;
    chrome.fill("#new_password_confirm", "a new password").await;
    chrome
        .click_button("form[action='/account/password']", "Change password")
        .await;
    chrome
        .assert_text("Your current password is not right. Nothing was changed.")
        .await;
    check_page(&chrome, "account password with an error", &mut failures).await;

    chrome.close().await;
    assert!(
        failures.is_empty(),
        "{} problem(s):\n  {}",
        failures.len(),
        failures.join("\n  ")
    );
}

// ---------------------------------------------------------------- checkout

/// Browse → search → filter → add from the catalog → checkout (log in on the way)
/// → order page → orders list, in a real browser through nginx and three replicas.
/// Written so that it does not depend on where an add redirects to.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shopper_searches_adds_checks_out_and_finds_the_order_through_nginx() {
    let cluster = Cluster::start().await;
    let driver = ChromeDriver::start().await;
    let shopper = Chrome::open(&driver, &cluster.url, Options::default()).await;

    // Browse and search.
    shopper.visit("/").await;
    shopper.fill("#q", "tea").await;
    shopper.click_button(".search-form", "Search").await;
    shopper.assert_text("found for “tea”").await;
    assert!(shopper.source().await.contains("Earl Grey Tin"));
    shopper
        .click(".category-filter a[href='/?category=teaware&q=tea']")
        .await;
    shopper.assert_text("in Teaware").await;
    assert!(!shopper.source().await.contains("Earl Grey Tin"));
    shopper.fill("#q", "no such thing").await;
    shopper.click_button(".search-form", "Search").await;
    shopper
        .assert_text("No products match “no such thing”")
        .await;

    // Add from the (searched) catalog: the shopper stays on the search results.
    shopper.visit("/?q=teapot").await;
    shopper
        .click_button(".product-grid", "Add to cart: Blue Teapot")
        .await;
    assert_eq!(shopper.path().await, "/");
    shopper.assert_text("found for “teapot”").await;
    shopper.assert_text("Added 1 × Blue Teapot").await;
    assert_eq!(shopper.cart_badge().await, 1);
    shopper.visit("/products/bamboo-whisk").await;
    shopper.fill("#quantity", "2").await;
    shopper.click_button(".product-detail", "Add to cart").await;
    assert_eq!(shopper.cart_badge().await, 3);

    // The cart leads to checkout, which asks to log in first and comes back.
    shopper.visit("/cart").await;
    shopper.click_button(".cart-actions", "Checkout").await;
    assert_eq!(shopper.path().await, "/login");
    shopper.fill("#username", DEMO_USER).await;
    shopper.fill("#password", DEMO_PASSWORD).await;
    shopper
        .click_button("form[action='/login']", "Log in")
        .await;
    assert_eq!(shopper.path().await, "/checkout");
    shopper.assert_text("3 items, order total: $59.00").await;
    // A US address needs its state; the form says so next to the field.
    shopper.fill("#name", "Grace Hopper").await;
    shopper.fill("#email", "grace@example.com").await;
    shopper.fill("#phone", "+1 212 555 0100").await;
    shopper.fill("#address", "1 Navy Yard").await;
    shopper.fill("#address2", "Building 7").await;
    shopper.fill("#city", "Brooklyn").await;
    shopper.fill("#postcode", "11205").await;
    shopper
        .find("#country option[value='US']")
        .await
        .click()
        .await
        .unwrap();
    shopper
        .click_button(".checkout-form", "Place order ($59.00)")
        .await;
    assert_eq!(shopper.path().await, "/checkout");
    assert_eq!(
        shopper.text("#region-error").await,
        "Please choose the state: addresses in United States need one."
    );
    shopper
        .find("#region option[value='US-NY']")
        .await
        .click()
        .await
        .unwrap();
    shopper
        .click_button(".checkout-form", "Place order ($59.00)")
        .await;

    // The order page, then the list.
    let path = shopper.path().await;
    let id = path
        .strip_prefix("/orders/")
        .unwrap_or_else(|| panic!("not an order page: {path}"));
    shopper
        .assert_text(&format!("Thank you! Your order #{id} is placed."))
        .await;
    shopper.assert_text("Shipping to").await;
    let address = shopper.text(".address-card").await;
    for part in [
        "Grace Hopper",
        "1 Navy Yard",
        "Building 7",
        "Brooklyn, NY 11205",
        "United States",
        "Receipt to grace@example.com",
        "Phone +1 212 555 0100",
    ] {
        assert!(address.contains(part), "{part:?} missing: {address}");
    }
    assert_eq!(shopper.cart_badge().await, 0);
    shopper.click(".site-nav a[href='/orders']").await;
    assert_eq!(shopper.path().await, "/orders");
    shopper.assert_text(&format!("Order #{id}")).await;
    shopper.assert_text("$59.00").await;

    let replicas = shopper.replicas_seen();
    assert!(
        replicas.len() > 1,
        "one replica served everything: {replicas:?}"
    );
    shopper.close().await;
}

/// The pages of checkout and search pass axe-core at 375 and 1280 px, fit the
/// width and have no script; the skip link shows when it has the focus.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn checkout_and_search_pages_are_accessible_and_the_skip_link_shows() {
    let app = TestApp::spawn(Backend::Redis).await;
    let driver = ChromeDriver::start().await;
    let chrome = Chrome::open(&driver, &app.address, Options::default()).await;
    let mut failures = Vec::new();

    // The skip link: off screen until focused, then on screen and readable.
    chrome.visit("/").await;
    let hidden = skip_link_box(&chrome).await;
    assert!(
        hidden.1 + hidden.3 <= 0.0,
        "visible before focus: {hidden:?}"
    );
    chrome
        .execute("document.querySelector('.skip-link').focus()")
        .await
        .unwrap();
    let shown = skip_link_box(&chrome).await;
    assert!(
        shown.1 >= 0.0 && shown.2 > 40.0 && shown.3 > 20.0,
        "the focused skip link is not on screen: {shown:?}"
    );

    chrome.visit("/?q=tea").await;
    check_page(&chrome, "catalog (search results)", &mut failures).await;
    chrome.visit("/?category=teaware").await;
    check_page(&chrome, "catalog (a category)", &mut failures).await;
    chrome.visit("/?q=no+such+thing").await;
    chrome.assert_text("No products match").await;
    check_page(&chrome, "catalog (nothing found)", &mut failures).await;

    chrome.visit("/login").await;
    chrome.fill("#username", DEMO_USER).await;
    chrome.fill("#password", DEMO_PASSWORD).await;
    chrome.click_button("form[action='/login']", "Log in").await;
    chrome.visit("/orders").await;
    chrome
        .assert_text("You have not placed an order yet.")
        .await;
    check_page(&chrome, "orders (none yet)", &mut failures).await;
    chrome.visit("/checkout").await;
    chrome.assert_text("Your cart is empty.").await;
    check_page(&chrome, "checkout (empty cart)", &mut failures).await;

    chrome.visit("/").await;
    chrome
        .click_button(".product-grid", "Add to cart: Cast Iron Kettle")
        .await;
    chrome.visit("/cart").await;
    check_page(&chrome, "cart (thumbnails, checkout link)", &mut failures).await;
    chrome.visit("/checkout").await;
    check_page(&chrome, "checkout", &mut failures).await;
    // Submitted empty (the browser's own checks skipped), the form shows its messages.
    chrome
        .execute("document.querySelector('.checkout-form form').noValidate = true")
        .await
        .unwrap();
    chrome
        .click_button(".checkout-form", "Place order ($89.00)")
        .await;
    chrome.assert_text("Please enter your name.").await;
    check_page(&chrome, "checkout with errors", &mut failures).await;
    chrome.fill("#name", "Ada Lovelace").await;
    chrome.fill("#email", "ada@example.com").await;
    chrome.fill("#address", "12 St James's Square").await;
    chrome.fill("#city", "London").await;
    chrome.fill("#postcode", "SW1Y 4JH").await;
    chrome
        .find("#country option[value='GB']")
        .await
        .click()
        .await
        .unwrap();
    chrome
        .click_button(".checkout-form", "Place order ($89.00)")
        .await;
    chrome.assert_text("is placed.").await;
    check_page(&chrome, "order", &mut failures).await;
    chrome.visit("/orders").await;
    check_page(&chrome, "orders", &mut failures).await;

    chrome.close().await;
    assert!(
        failures.is_empty(),
        "{} problem(s):\n  {}",
        failures.len(),
        failures.join("\n  ")
    );
}

/// The skip link's box in the viewport: (x, y, width, height).
async fn skip_link_box(chrome: &Chrome) -> (f64, f64, f64, f64) {
    let rect = chrome
        .execute(
            "const r = document.querySelector('.skip-link').getBoundingClientRect(); \
             return [r.x, r.y, r.width, r.height];",
        )
        .await
        .unwrap();
    let n = |i: usize| rect[i].as_f64().unwrap();
    (n(0), n(1), n(2), n(3))
}

/// The text of the page's status region (where messages are announced).
async fn status_text(chrome: &Chrome) -> String {
    chrome.text("main [role='status']").await
}

async fn title(chrome: &Chrome) -> String {
    chrome.client.title().await.unwrap()
}

async fn log_in_from_the_header(chrome: &Chrome, user: &str, password: &str) {
    chrome.click(".site-nav a[href^='/login']").await;
    chrome.fill("#username", user).await;
    chrome.fill("#password", password).await;
    chrome.click_button("form[action='/login']", "Log in").await;
}

/// Every change of who the shopper is, or of what the cart holds, is told on the
/// next page: in its status region (read out by screen readers) and, for the
/// sign-outs, first in the title.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_shopper_is_told_about_every_login_logout_and_sign_out() {
    let app = TestApp::spawn(Backend::Redis).await;
    let driver = ChromeDriver::start().await;
    let laptop = Chrome::open(&driver, &app.address, Options::default()).await;
    let mut failures = Vec::new();

    // A login that merges this visit's cart says so, in numbers, and comes back
    // to the page the header's "Log in" was clicked on.
    laptop.visit("/products/blue-teapot").await;
    laptop.fill("#quantity", "2").await;
    laptop.click_button(".product-detail", "Add to cart").await;
    log_in_from_the_header(&laptop, DEMO_USER, DEMO_PASSWORD).await;
    assert_eq!(laptop.path().await, "/products/blue-teapot");
    assert!(
        status_text(&laptop)
            .await
            .contains("Welcome back, demo. 2 items from this visit were added to your cart."),
        "{}",
        laptop.body_text().await
    );

    // Logging out.
    laptop.click_button(".site-header", "Log out").await;
    assert_eq!(laptop.logged_in_as().await, None);
    assert!(status_text(&laptop)
        .await
        .contains("You have logged out. Your cart is saved for your next login."));
    assert!(title(&laptop).await.starts_with("Logged out · "));
    check_page(&laptop, "catalog after logging out", &mut failures).await;
    laptop.visit("/").await;
    assert!(!laptop.body_text().await.contains("You have logged out"));

    // A plain login (nothing to merge).
    log_in_from_the_header(&laptop, DEMO_USER, DEMO_PASSWORD).await;
    assert_eq!(status_text(&laptop).await, "Welcome back, demo.");

    // Signed out from another device.
    let phone = Chrome::open(
        &driver,
        &app.address,
        Options {
            width: 375,
            ..Options::default()
        },
    )
    .await;
    phone.visit("/").await;
    log_in_from_the_header(&phone, DEMO_USER, DEMO_PASSWORD).await;
    phone.visit("/account/sessions").await;
    phone
        .click_button("main", "Sign out all other sessions")
        .await;
    laptop.visit("/cart").await;
    assert_eq!(laptop.logged_in_as().await, None);
    let told = status_text(&laptop).await;
    assert!(
        told.contains("You were signed out on this browser from another device."),
        "{told}"
    );
    assert!(title(&laptop).await.starts_with("Signed out · "));
    check_page(&laptop, "cart after a sign-out elsewhere", &mut failures).await;
    laptop.visit("/cart").await;
    assert!(!laptop
        .body_text()
        .await
        .contains("signed out on this browser"));

    // Signed out by the idle timeout: Redis forgot the session.
    log_in_from_the_header(&laptop, DEMO_USER, DEMO_PASSWORD).await;
    assert_eq!(laptop.logged_in_as().await.as_deref(), Some(DEMO_USER));
    let sid = laptop
        .client
        .get_named_cookie("sid")
        .await
        .unwrap()
        .value()
        .to_owned();
    let _: i64 = fred::prelude::KeysInterface::del(app.redis().unwrap(), &sid)
        .await
        .unwrap();
    laptop.visit("/").await;
    assert_eq!(laptop.logged_in_as().await, None);
    assert!(status_text(&laptop)
        .await
        .contains("You were signed out after 30 minutes without activity; your cart is saved."));
    assert!(title(&laptop).await.starts_with("Signed out · "));
    // Its "Log in" link comes back here, with the cart.
    laptop.click("main [role='status'] a").await;
    laptop.fill("#username", DEMO_USER).await;
    laptop.fill("#password", DEMO_PASSWORD).await;
    laptop.click_button("form[action='/login']", "Log in").await;
    assert_eq!(laptop.path().await, "/");
    assert!(laptop.cart_badge().await >= 2);

    laptop.close().await;
    phone.close().await;
    assert!(
        failures.is_empty(),
        "{} problem(s):\n  {}",
        failures.len(),
        failures.join("\n  ")
    );
}

/// Checkout while logged out: the login page says why, "Create an account" keeps
/// the way, and the new customer lands on checkout with the cart they filled.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_checkout_detour_through_registration_ends_on_checkout_with_the_cart() {
    let app = TestApp::spawn(Backend::Redis).await;
    let driver = ChromeDriver::start().await;
    let shopper = Chrome::open(&driver, &app.address, Options::default()).await;

    shopper.visit("/").await;
    shopper
        .click_button(".product-grid", "Add to cart: Blue Teapot")
        .await;
    shopper.click(".cart-badge").await;
    shopper.click(".cart-actions a[href='/checkout']").await;
    assert_eq!(shopper.path().await, "/login");
    shopper
        .assert_text("Please log in or create an account to check out.")
        .await;
    let mut failures = Vec::new();
    check_page(&shopper, "login, on the way to checkout", &mut failures).await;
    shopper.click("main a[href^='/register']").await;
    assert_eq!(shopper.path().await, "/register");
    check_page(&shopper, "register, on the way to checkout", &mut failures).await;
    shopper
        .assert_text("Please log in or create an account to check out.")
        .await;
    shopper.fill("#username", SHOPPER).await;
    shopper.fill("#password", SHOPPER_PASSWORD).await;
    shopper.fill("#password_confirm", SHOPPER_PASSWORD).await;
    shopper
        .click_button("form[action='/register']", "Create account")
        .await;
    assert_eq!(shopper.path().await, "/checkout");
    assert_eq!(shopper.logged_in_as().await.as_deref(), Some(SHOPPER));
    assert!(status_text(&shopper)
        .await
        .contains(&format!("Welcome, {SHOPPER}! Your account is ready.")));
    shopper.assert_text("Blue Teapot").await;
    assert_eq!(shopper.cart_badge().await, 1);
    shopper.close().await;
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// An add from far down the catalog comes back to its card, not to the top of
/// the page, on a phone, without JavaScript.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_add_from_the_catalog_comes_back_to_its_card_without_javascript() {
    let app = TestApp::spawn(Backend::Redis).await;
    let driver = ChromeDriver::start().await;
    let phone = Chrome::open(
        &driver,
        &app.address,
        Options {
            width: 375,
            javascript: false,
            ..Options::default()
        },
    )
    .await;
    phone.visit("/").await;
    let cards = phone.find_all(".product-card").await;
    let last = cards.last().unwrap();
    let slug = last.attr("id").await.unwrap().unwrap();
    let name = phone.text(&format!("#{slug} h2")).await;
    phone
        .click_button(&format!("#{slug}"), &format!("Add to cart: {name}"))
        .await;
    let url = phone.client.current_url().await.unwrap();
    assert_eq!(url.fragment(), Some(slug.as_str()));
    let scrolled = phone.execute("return window.scrollY").await.unwrap();
    assert!(
        scrolled.as_f64().unwrap() > 500.0,
        "the page came back at the top: {scrolled}"
    );
    assert!(phone
        .text(&format!("#{slug}"))
        .await
        .contains("In your cart: 1"));
    phone.close().await;
}

/// A browser shows intent at once: it follows the add's redirect with its new
/// cookie, so its session and cart leave the hour-long trial a cookie-less add
/// starts with and get the full anonymous lifetime (7 days) at the first click.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_real_browsers_first_add_gets_the_full_anonymous_lifetime() {
    let app = TestApp::spawn(Backend::Redis).await;
    let driver = ChromeDriver::start().await;
    let chrome = Chrome::open(&driver, &app.address, Options::default()).await;
    chrome.visit("/").await;
    chrome
        .click_button(".product-grid", "Add to cart: Blue Teapot")
        .await;
    assert_eq!(chrome.cart_badge().await, 1);
    let keys = app.redis_keys().await;
    let session = keys.iter().filter(|k| !k.contains(':')).collect::<Vec<_>>();
    let cart = keys
        .iter()
        .filter(|k| k.starts_with("cart:{a") && k.ends_with('}'))
        .collect::<Vec<_>>();
    assert_eq!((session.len(), cart.len()), (1, 1), "{keys:?}");
    for key in [session[0], cart[0]] {
        let ttl = app.redis_ttl(key).await;
        assert!(
            (7 * 86_400 - 60..=7 * 86_400).contains(&ttl),
            "{key}: {ttl} s"
        );
    }
    chrome.close().await;
}

/// How many rows the header's items take (items whose tops are within a few
/// pixels share a row).
async fn header_rows(chrome: &Chrome) -> usize {
    let tops = chrome
        .execute(
            "return [...document.querySelectorAll('.site-header > a, .site-nav > *')] \
             .map(e => Math.round(e.getBoundingClientRect().top));",
        )
        .await
        .unwrap();
    let mut tops: Vec<i64> = tops
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_i64().unwrap())
        .collect();
    tops.sort_unstable();
    tops.dedup_by(|a, b| (*a - *b).abs() < 12);
    tops.len()
}

/// What does not fit at `width`: the page scrolling sideways, or a table cut
/// inside its scrolling box.
async fn overflow_at(chrome: &Chrome, name: &str, width: u32, failures: &mut Vec<String>) {
    chrome.set_width(width).await;
    let (page_width, viewport) = chrome.scroll_width().await;
    if page_width > viewport {
        // The innermost elements that stick out, to say where to look.
        let culprits = chrome
            .execute(
                "const out = e => e.getBoundingClientRect().right > window.innerWidth + 1; \
                 return [...document.querySelectorAll('body *')] \
                 .filter(e => out(e) && ![...e.children].some(out)).slice(0, 4) \
                 .map(e => e.tagName.toLowerCase() + (e.className ? '.' + e.className : '') \
                   + (e.id ? '#' + e.id : '') + ' ' + (e.textContent || '').trim().slice(0, 30));",
            )
            .await
            .unwrap();
        failures.push(format!(
            "{name} at {width}px: scrolls sideways ({page_width}px wide): {culprits}"
        ));
    }
    let cut = chrome
        .execute(
            "return [...document.querySelectorAll('.table-wrap')] \
             .filter(w => w.scrollWidth > w.clientWidth + 1).length;",
        )
        .await
        .unwrap();
    if cut.as_u64() != Some(0) {
        failures.push(format!(
            "{name} at {width}px: a table is wider than its box"
        ));
    }
}

/// At 320 CSS pixels, and with a reader's 24 px default font, no page scrolls
/// sideways or cuts a table; on a 375 px phone the header takes two rows at most.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pages_fit_320_px_and_a_24_px_font_and_the_phone_header_takes_two_rows() {
    let app = TestApp::spawn(Backend::Redis).await;
    let driver = ChromeDriver::start().await;
    let mut failures = Vec::new();
    for font_size in [16, 24] {
        let chrome = Chrome::open(
            &driver,
            &app.address,
            Options {
                font_size,
                ..Options::default()
            },
        )
        .await;
        let label = |page: &str| format!("{page} ({font_size}px font)");
        for path in ["/", "/products/blue-teapot", "/login", "/register", "/cart"] {
            chrome.visit(path).await;
            overflow_at(&chrome, &label(path), 320, &mut failures).await;
        }
        chrome.visit("/login").await;
        chrome.fill("#username", DEMO_USER).await;
        chrome.fill("#password", DEMO_PASSWORD).await;
        chrome.click_button("form[action='/login']", "Log in").await;
        if font_size == 16 {
            chrome.set_width(375).await;
            let rows = header_rows(&chrome).await;
            if rows > 2 {
                failures.push(format!("logged-in header at 375px: {rows} rows"));
            }
        }
        chrome.visit("/products/loose-leaf-sencha").await;
        chrome.fill("#quantity", "12").await;
        chrome.click_button(".product-detail", "Add to cart").await;
        chrome.visit("/products/cast-iron-kettle").await;
        chrome.click_button(".product-detail", "Add to cart").await;
        for path in [
            "/cart",
            "/checkout",
            "/account",
            "/account/sessions",
            "/account/password",
            "/session",
            "/orders",
        ] {
            chrome.visit(path).await;
            overflow_at(&chrome, &label(path), 320, &mut failures).await;
        }
        chrome.visit("/checkout").await;
        chrome.fill("#name", "Ada Lovelace").await;
        chrome.fill("#email", "ada@example.com").await;
        chrome.fill("#address", "12 St James's Square").await;
        chrome.fill("#city", "London").await;
        chrome.fill("#postcode", "SW1Y 4JH").await;
        chrome
            .find("#country option[value='GB']")
            .await
            .click()
            .await
            .unwrap();
        chrome
            .find(".checkout-form button[type=submit]")
            .await
            .click()
            .await
            .unwrap();
        chrome.assert_text("is placed.").await;
        overflow_at(&chrome, &label("an order"), 320, &mut failures).await;
        chrome.visit("/orders").await;
        overflow_at(&chrome, &label("/orders (one order)"), 320, &mut failures).await;
        chrome.close().await;
    }
    assert!(
        failures.is_empty(),
        "{} problem(s):\n  {}",
        failures.len(),
        failures.join("\n  ")
    );
}

/// Every page, as the server sends it, passes the Nu Html Checker (vnu.jar,
/// offline) without an error: anonymous pages, a filled cart, checkout with its
/// messages, an order, the account pages, the session inspector, the 404 page.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_page_passes_the_nu_html_checker() {
    use support::browser::Browser;
    let checker = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tools/vnu/node_modules/vnu-jar/build/dist/vnu.jar");
    assert!(
        checker.exists(),
        "{} missing: run `(cd tools/vnu && npm ci)` (scripts/test does)",
        checker.display()
    );
    let app = TestApp::spawn(Backend::Redis).await;
    let pages = tempfile::tempdir().unwrap();
    let shopper = Browser::new(&app.address);
    let mut saved = 0;
    let mut save = |name: &str, body: &str| {
        std::fs::write(pages.path().join(format!("{name}.html")), body).unwrap();
        saved += 1;
    };
    for (name, path) in [
        ("catalog", "/"),
        ("search", "/?q=tea&category=teaware"),
        ("product", "/products/blue-teapot"),
        ("login-for-checkout", "/login?next=/checkout"),
        ("register-for-checkout", "/register?next=/checkout"),
        ("cart-empty", "/cart"),
        ("session-anonymous", "/session"),
        ("not-found", "/nowhere"),
    ] {
        save(name, &shopper.get(path).await.body);
    }
    shopper.add_to_cart("1", "2").await;
    save("cart", &shopper.get("/cart").await.body);
    shopper
        .post(
            "/login",
            &[("username", DEMO_USER), ("password", DEMO_PASSWORD)],
        )
        .await;
    save("catalog-welcome", &shopper.get("/").await.body);
    let checkout = shopper.get("/checkout").await;
    save("checkout", &checkout.body);
    let hidden = |name: &str| {
        let marker = format!("name=\"{name}\" value=\"");
        let form = checkout.body.find("action=\"/checkout\"").unwrap();
        let start = checkout.body[form..].find(&marker).unwrap() + form + marker.len();
        let end = checkout.body[start..].find('"').unwrap() + start;
        checkout.body[start..end].to_owned()
    };
    let (submission, cart, last_order) =
        (hidden("submission"), hidden("cart"), hidden("last_order"));
    let refused = shopper
        .post(
            "/checkout",
            &[
                ("submission", &submission),
                ("cart", &cart),
                ("last_order", &last_order),
                ("country", "US"),
            ],
        )
        .await;
    save("checkout-errors", &refused.body);
    let placed = shopper
        .post(
            "/checkout",
            &[
                ("submission", &submission),
                ("cart", &cart),
                ("last_order", &last_order),
                ("name", "Grace Hopper"),
                ("email", "grace@example.com"),
                ("phone", "+1 212 555 0100"),
                ("address", "1 Navy Yard"),
                ("address2", "Building 7"),
                ("city", "Brooklyn"),
                ("region", "US-NY"),
                ("postcode", "11205"),
                ("country", "US"),
            ],
        )
        .await;
    let order = placed.location().expect("the order's page").to_owned();
    for (name, path) in [
        ("order", order.as_str()),
        ("orders", "/orders"),
        ("account", "/account"),
        ("sessions", "/account/sessions"),
        ("password", "/account/password"),
        ("session", "/session"),
    ] {
        save(name, &shopper.get(path).await.body);
    }
    shopper.log_out().await;
    save("logged-out", &shopper.get("/").await.body);

    let files: Vec<_> = std::fs::read_dir(pages.path())
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .collect();
    assert_eq!(files.len(), saved);
    let checked = std::process::Command::new("java")
        .arg("-jar")
        .arg(&checker)
        .args(["--errors-only", "--format", "text"])
        .args(&files)
        .output()
        .expect("java runs the Nu checker");
    assert!(
        checked.status.success(),
        "the Nu checker found errors:\n{}",
        String::from_utf8_lossy(&checked.stderr)
    );
}
