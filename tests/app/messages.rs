//! The shopper is told what happened: after logging in, out and registering,
//! after a session ended from another device or by timing out (each its own
//! words, announced as a status and in the title), and on the way through
//! checkout when it needs a login first.

use fred::prelude::KeysInterface;
use reqwest::StatusCode;

use crate::support::api::{DEMO_PASSWORD, DEMO_USER};
use crate::support::app::{Backend, TestApp};
use crate::support::browser::{Browser, Page};

const ELSEWHERE: &str = "You were signed out on this browser from another device.";
const TIMED_OUT: &str =
    "You were signed out after 30 minutes without activity; your cart is saved.";
const LOGGED_OUT: &str = "You have logged out. Your cart is saved for your next login.";

/// The page's `<title>`.
fn title(page: &Page) -> &str {
    let start = page.body.find("<title>").expect("a title") + "<title>".len();
    let end = page.body[start..].find("</title>").unwrap() + start;
    &page.body[start..end]
}

/// The text inside the page's `role="status"` region, if it has one.
fn status_region(page: &Page) -> Option<&str> {
    let start = page.body.find("<div role=\"status\">")?;
    let end = page.body[start..].find("</div>")? + start;
    Some(&page.body[start..end])
}

fn removes_cookie(page: &Page, name: &str) -> bool {
    page.set_cookies()
        .iter()
        .any(|c| c.starts_with(&format!("{name}=")) && c.contains("Max-Age=0"))
}

#[tokio::test]
async fn logging_out_says_so_once_and_leaves_no_session_behind() {
    let app = TestApp::spawn(Backend::Redis).await;
    let shopper = app.browser();
    shopper.log_in(DEMO_USER, DEMO_PASSWORD).await;
    shopper.get("/").await;
    let sid = shopper.sid().unwrap();

    let logout = shopper.log_out().await;
    logout.assert_redirect("/");
    assert!(removes_cookie(&logout, "sid"), "{:?}", logout.set_cookies());
    let home = shopper.get("/").await;
    assert_eq!(home.logged_in_as(), None);
    assert!(
        status_region(&home).unwrap().contains(LOGGED_OUT),
        "{}",
        home.body
    );
    assert!(
        title(&home).starts_with("Logged out · "),
        "{}",
        title(&home)
    );
    // Shown once: the page that showed it removes its cookie.
    assert!(removes_cookie(&home, "notice"), "{:?}", home.set_cookies());
    let again = shopper.get("/").await;
    assert!(!again.body.contains(LOGGED_OUT));
    assert!(!title(&again).starts_with("Logged out"));
    // The message needed no session: none is live, the old one is a tombstone.
    assert_eq!(shopper.sid(), None);
    assert!(!app.session_is_live(&sid).await);
    let live_sessions = app
        .redis_keys()
        .await
        .into_iter()
        .filter(|k| !k.contains(':'))
        .count();
    assert!(live_sessions <= 1, "only the ended session's tombstone");
}

#[tokio::test]
async fn a_plain_login_and_a_registration_each_greet_the_shopper() {
    let app = TestApp::spawn(Backend::Redis).await;
    let returning = app.browser();
    returning
        .log_in(DEMO_USER, DEMO_PASSWORD)
        .await
        .assert_redirect("/");
    let home = returning.get("/").await;
    assert!(
        status_region(&home)
            .unwrap()
            .contains("Welcome back, demo.</"),
        "{}",
        home.body
    );

    let newcomer = app.browser();
    newcomer
        .register("new_leaf", "a long password")
        .await
        .assert_redirect("/");
    let home = newcomer.get("/").await;
    assert!(status_region(&home)
        .unwrap()
        .contains("Welcome, new_leaf! Your account is ready."));
}

#[tokio::test]
async fn a_session_revoked_from_another_device_says_so_once() {
    let app = TestApp::spawn(Backend::Redis).await;
    let laptop = app.browser();
    let phone = app.browser();
    laptop.log_in(DEMO_USER, DEMO_PASSWORD).await;
    phone.log_in(DEMO_USER, DEMO_PASSWORD).await;
    phone.add_to_cart("1", "2").await;
    phone.get("/").await;
    let phone_sid = phone.sid().unwrap();

    laptop
        .post("/account/sessions/revoke-others", &[])
        .await
        .assert_redirect("/account/sessions");

    let cart = phone.get("/cart").await;
    assert_eq!(cart.status, StatusCode::OK);
    assert_eq!(cart.logged_in_as(), None);
    let status = status_region(&cart).expect("a status message");
    assert!(status.contains(ELSEWHERE), "{status}");
    assert!(!status.contains("without activity"));
    assert!(status.contains("href=\"/login?next=/cart\""), "{status}");
    assert!(
        title(&cart).starts_with("Signed out · "),
        "{}",
        title(&cart)
    );
    // Told once: the ended session's cookie goes with that page.
    assert!(removes_cookie(&cart, "sid"), "{:?}", cart.set_cookies());
    assert!(!app.session_is_live(&phone_sid).await);
    let later = phone.get("/cart").await;
    assert!(status_region(&later).is_none(), "{}", later.body);
    // The cart is the user's, kept for the next login.
    phone.log_in(DEMO_USER, DEMO_PASSWORD).await;
    assert_eq!(phone.get("/cart").await.cart_badge(), 2);
}

#[tokio::test]
async fn a_password_changed_on_another_device_says_signed_out_elsewhere() {
    let app = TestApp::spawn(Backend::Redis).await;
    let laptop = app.browser();
    let phone = app.browser();
    laptop.register("mover", "first password").await;
    phone.log_in("mover", "first password").await;
    phone.get("/").await;
    laptop
        .post(
            "/account/password",
            &[
                ("current_password", "first password"),
                ("new_password", "second password"),
                ("new_password_confirm", "second password"),
            ],
        )
        .await
        .assert_redirect("/account");
    let home = phone.get("/").await;
    assert_eq!(home.logged_in_as(), None);
    assert!(
        status_region(&home).unwrap().contains(ELSEWHERE),
        "{}",
        home.body
    );
    assert!(!phone.get("/").await.body.contains(ELSEWHERE));
    // The laptop, where the change was made, is not told it was signed out.
    let account = laptop.get("/account").await;
    assert_eq!(account.logged_in_as().as_deref(), Some("mover"));
    assert!(!account.body.contains(ELSEWHERE));
}

#[tokio::test]
async fn a_session_that_timed_out_says_so_and_the_cart_is_saved() {
    let app = TestApp::spawn(Backend::Redis).await;
    let shopper = app.browser();
    shopper.log_in(DEMO_USER, DEMO_PASSWORD).await;
    shopper.add_to_cart("3", "1").await;
    shopper.get("/").await;
    // What the idle timeout does: Redis forgets the key.
    let sid = shopper.sid().unwrap();
    let _: () = app.redis().unwrap().del(&sid).await.unwrap();

    let home = shopper.get("/products/blue-teapot").await;
    assert_eq!(home.logged_in_as(), None);
    let status = status_region(&home).expect("a status message");
    assert!(status.contains(TIMED_OUT), "{status}");
    assert!(!status.contains(ELSEWHERE));
    assert!(title(&home).starts_with("Signed out · "));
    assert!(removes_cookie(&home, "sid"));
    assert!(!shopper.get("/").await.body.contains(TIMED_OUT));
    shopper.log_in(DEMO_USER, DEMO_PASSWORD).await;
    assert_eq!(shopper.get("/").await.cart_badge(), 1, "the cart was saved");

    // A visitor who never had a session is told nothing.
    let stranger = app.browser();
    let page = stranger.get("/").await;
    assert!(status_region(&page).is_none());
}

#[tokio::test]
async fn the_checkout_detour_through_registration_comes_back_to_checkout_with_the_cart() {
    let app = TestApp::spawn(Backend::Redis).await;
    let shopper = app.browser();
    shopper.add_to_cart("1", "2").await;
    shopper
        .get("/checkout")
        .await
        .assert_redirect("/login?next=/checkout");

    let login = shopper.get("/login?next=/checkout").await;
    login.assert_contains("Please log in or create an account to check out.");
    login.assert_contains("href=\"/register?next=/checkout\"");
    login.assert_contains("name=\"next\" value=\"/checkout\"");

    let register = shopper.get("/register?next=/checkout").await;
    register.assert_contains("Please log in or create an account to check out.");
    register.assert_contains("name=\"next\" value=\"/checkout\"");
    register.assert_contains("href=\"/login?next=/checkout\"");
    // A refused form keeps the way too.
    let refused = shopper
        .post(
            "/register",
            &[
                ("username", "newcomer"),
                ("password", "a long password"),
                ("password_confirm", "another password"),
                ("next", "/checkout"),
            ],
        )
        .await;
    refused.assert_contains("name=\"next\" value=\"/checkout\"");

    shopper
        .post(
            "/register",
            &[
                ("username", "newcomer"),
                ("password", "a long password"),
                ("password_confirm", "a long password"),
                ("next", "/checkout"),
            ],
        )
        .await
        .assert_redirect("/checkout");
    let checkout = shopper.get("/checkout").await;
    assert_eq!(checkout.status, StatusCode::OK);
    assert_eq!(checkout.logged_in_as().as_deref(), Some("newcomer"));
    checkout.assert_contains("Welcome, newcomer! Your account is ready.");
    checkout.assert_contains("Blue Teapot");
    assert_eq!(checkout.cart_badge(), 2);

    // Registration keeps the open-redirect protection of login.
    let other = app.browser();
    other
        .post(
            "/register",
            &[
                ("username", "wanderer"),
                ("password", "a long password"),
                ("password_confirm", "a long password"),
                ("next", "//evil.example/"),
            ],
        )
        .await
        .assert_redirect("/");
}

#[tokio::test]
async fn the_headers_log_in_comes_back_to_the_page_it_was_on() {
    let app = TestApp::spawn(Backend::Memory).await;
    let visitor = app.browser();
    let product = visitor.get("/products/blue-teapot").await;
    product.assert_contains("href=\"/login?next=/products/blue-teapot\"");
    product.assert_contains("href=\"/register?next=/products/blue-teapot\"");
    let search = visitor.get("/?q=tea&category=teaware").await;
    search.assert_contains("href=\"/login?next=/%3Fq%3Dtea%26category%3Dteaware\"");
    // Home and the login page itself need no way back.
    visitor.get("/").await.assert_contains("href=\"/login\"");
    visitor
        .post(
            "/login",
            &[
                ("username", DEMO_USER),
                ("password", DEMO_PASSWORD),
                ("next", "/?q=tea&category=teaware"),
            ],
        )
        .await
        .assert_redirect("/?q=tea&category=teaware");
    // A login page not reached from checkout gives no reason.
    let plain = Browser::new(&app.address)
        .get("/login?next=%2Fproducts%2Fblue-teapot")
        .await;
    assert!(!plain.body.contains("to check out"));
}

#[tokio::test]
async fn an_add_from_the_catalog_comes_back_to_its_card() {
    let app = TestApp::spawn(Backend::Memory).await;
    let visitor = app.browser();
    let catalog = visitor.get("/?category=teaware").await;
    catalog.assert_contains("<li class=\"product-card\" id=\"blue-teapot\">");
    catalog.assert_contains("name=\"back\" value=\"/?category=teaware#blue-teapot\"");
    assert!(!catalog.body.contains("In your cart:"));
    // A search's way back, escaped once for the page and repeated on each card:
    // its `&` as an entity, the search percent-encoded, each card's own anchor.
    let search = visitor.get("/?category=teaware&q=Blue%20pot").await;
    search
        .assert_contains("name=\"back\" value=\"/?category=teaware&#38;q=Blue%20pot#blue-teapot\"");
    visitor
        .post(
            "/cart/add",
            &[
                ("product_id", "1"),
                ("back", "/?category=teaware#blue-teapot"),
            ],
        )
        .await
        .assert_redirect("/?category=teaware#blue-teapot");
    // The card says what the cart now holds, where the shopper is looking.
    let again = visitor.get("/?category=teaware").await;
    again.assert_contains("In your cart: 1 <a href=\"/cart\">View cart");
    // The fragment does not open a way to another site.
    visitor
        .post(
            "/cart/add",
            &[("product_id", "1"), ("back", "//evil.example/#x")],
        )
        .await
        .assert_redirect("/");
}

#[tokio::test]
async fn a_refused_cart_form_leads_back_to_the_cart_and_a_missing_file_is_not_cached() {
    let app = TestApp::spawn(Backend::Memory).await;
    let shopper = app.browser();
    shopper.add_to_cart("1", "1").await;
    let refused = shopper
        .post("/cart/update", &[("product_id", "1"), ("quantity", "lots")])
        .await;
    assert_eq!(refused.status, StatusCode::BAD_REQUEST);
    refused.assert_contains("Quantity must be a whole number");
    refused.assert_contains("<a href=\"/cart\">Back to your cart</a>");
    assert_eq!(
        shopper.get("/cart").await.cart_badge(),
        1,
        "nothing changed"
    );

    let missing = shopper.get("/static/no-such-file.css").await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
    let cache = missing.headers["cache-control"].to_str().unwrap();
    assert!(!cache.contains("max-age"), "{cache}");
}
