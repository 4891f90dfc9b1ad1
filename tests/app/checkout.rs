//! Checkout and orders on a real redis-server and a real SQLite file: one order per
//! checkout form, whatever the requests do (double clicks, retries, two replicas at
//! once, a crash between "order written" and "cart emptied"), the cart the shopper
//! confirmed or nothing, and bad input that writes nothing.

use reqwest::StatusCode;

use crate::support::api::{user_cart, DEMO_PASSWORD, DEMO_USER};
use crate::support::app::{Backend, Database, TestApp};
use crate::support::browser::{Browser, Page};
use crate::support::checkout::{hidden, CheckoutForm, ADDRESS};

const PASSWORD: &str = "long enough pw";

/// A registered, logged-in shopper with 2 × Blue Teapot ($34.00) and
/// 3 × Bamboo Whisk ($12.50) in the cart.
async fn shopper_with_a_cart(app: &TestApp, name: &str) -> Browser {
    let shopper = app.browser();
    shopper.register(name, PASSWORD).await.assert_redirect("/");
    shopper.add_to_cart("1", "2").await;
    shopper.add_to_cart("4", "3").await;
    shopper
}

/// The order id a redirect points at.
fn order_id(page: &Page) -> i64 {
    assert_eq!(page.status, StatusCode::SEE_OTHER, "{page:#?}");
    page.location()
        .and_then(|l| l.strip_prefix("/orders/"))
        .and_then(|id| id.parse().ok())
        .unwrap_or_else(|| panic!("not a redirect to an order: {:?}", page.location()))
}

async fn cart_of(app: &TestApp, shopper: &Browser) -> Vec<(String, u32)> {
    let _ = app;
    shopper.get("/cart").await.cart_lines()
}

fn cart(expected: &[(&str, u32)]) -> Vec<(String, u32)> {
    expected.iter().map(|(n, q)| (n.to_string(), *q)).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn checkout_and_orders_need_a_login() {
    let app = TestApp::spawn(Backend::Redis).await;
    let visitor = app.browser();
    visitor.add_to_cart("1", "1").await;
    visitor
        .get("/checkout")
        .await
        .assert_redirect("/login?next=/checkout");
    visitor
        .post("/checkout", &ADDRESS)
        .await
        .assert_redirect("/login?next=/checkout");
    visitor
        .get("/orders")
        .await
        .assert_redirect("/login?next=/orders");
    visitor
        .get("/orders/1")
        .await
        .assert_redirect("/login?next=/orders/1");
    // The cart page leads to checkout, and the anonymous cart follows the login.
    visitor
        .get("/cart")
        .await
        .assert_contains("href=\"/checkout\"");
    visitor
        .post(
            "/login",
            &[
                ("username", DEMO_USER),
                ("password", DEMO_PASSWORD),
                ("next", "/checkout"),
            ],
        )
        .await
        .assert_redirect("/checkout");
    let checkout = visitor.get("/checkout").await;
    checkout.assert_contains("Blue Teapot");
    checkout.assert_contains("Place order ($34.00)");
    assert_eq!(
        app.order_count().await,
        0,
        "showing the page writes nothing"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn placing_an_order_writes_it_once_and_empties_the_cart() {
    let app = TestApp::spawn(Backend::Redis).await;
    let shopper = shopper_with_a_cart(&app, "ada").await;
    let form = CheckoutForm::open(&shopper).await;
    assert_eq!(form.cart, "1x2@3400-4x3@1250");

    let placed = form.submit(&shopper).await;
    let id = order_id(&placed);
    let page = shopper.get(&format!("/orders/{id}")).await;
    assert_eq!(page.status, StatusCode::OK);
    page.assert_contains(&format!("Thank you! Your order #{id} is placed."));
    page.assert_contains("Blue Teapot");
    page.assert_contains("$68.00"); // 2 × $34.00
    page.assert_contains("$37.50"); // 3 × $12.50
    page.assert_contains("5 items, order total: <strong>$105.50</strong>");
    page.assert_contains("12 St James&#39;s Square");
    page.assert_contains("United Kingdom");
    assert_eq!(page.cart_badge(), 0);

    // The database holds what the shopper saw, priced at order time.
    let uid = app.user_id("ada").await;
    let (user, status, total, items, key): (i64, String, i64, i64, String) = sqlx::query_as(
        "SELECT user_id, status, total_cents, item_count, idempotency_key FROM orders WHERE id = $1",
    )
    .bind(id)
    .fetch_one(&app.state.db)
    .await
    .unwrap();
    assert_eq!(
        (user, status.as_str(), total, items, key.as_str()),
        (uid, "placed", 10_550, 5, form.submission.as_str())
    );
    let lines: Vec<(i64, String, i64, i64)> = sqlx::query_as(
        "SELECT product_id, product_name, unit_price_cents, quantity FROM order_lines \
         WHERE order_id = $1 ORDER BY product_id",
    )
    .bind(id)
    .fetch_all(&app.state.db)
    .await
    .unwrap();
    assert_eq!(
        lines,
        vec![
            (1, "Blue Teapot".to_owned(), 3400, 2),
            (4, "Bamboo Whisk".to_owned(), 1250, 3)
        ]
    );
    // The cart is gone from Redis.
    let cart_key = user_cart(uid);
    assert!(
        !app.redis_exists(&cart_key).await,
        "{cart_key} still exists"
    );

    // The same form again (a double click, a reload of the POST): the same order.
    let again = form.submit(&shopper).await;
    assert_eq!(order_id(&again), id);
    shopper
        .get(&format!("/orders/{id}"))
        .await
        .assert_contains(&format!("Already placed: this is your order #{id}."));
    assert_eq!(app.order_count().await, 1);

    // The list shows it; a second order comes first.
    shopper.add_to_cart("6", "1").await;
    let second = order_id(&CheckoutForm::open(&shopper).await.submit(&shopper).await);
    let list = shopper.get("/orders").await;
    assert_eq!(list.status, StatusCode::OK);
    let newest = list.body.find(&format!("Order #{second}")).unwrap();
    let oldest = list.body.find(&format!("Order #{id}")).unwrap();
    assert!(newest < oldest, "newest first:\n{}", list.body);
    list.assert_contains("$105.50");
    list.assert_contains("$9.50");
    // The next checkout is filled in with the last address.
    shopper.add_to_cart("2", "1").await;
    shopper
        .get("/checkout")
        .await
        .assert_contains("value=\"Ada Lovelace\"");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_concurrent_submissions_through_two_replicas_make_one_order() {
    let app = TestApp::spawn(Backend::Redis).await;
    let other = app.sibling("replica-two").await;
    let shopper = shopper_with_a_cart(&app, "grace").await;
    let form = CheckoutForm::open(&shopper).await;
    let fields: Vec<(String, String)> = form
        .fields(&[])
        .into_iter()
        .map(|(n, v)| (n.to_owned(), v.to_owned()))
        .collect();

    // The same form, posted ten times at once, alternately to each replica.
    let attempts = (0..10).map(|i| {
        let browser = if i % 2 == 0 {
            shopper.clone()
        } else {
            shopper.at(&other.address)
        };
        let fields = fields.clone();
        tokio::spawn(async move {
            let fields: Vec<(&str, &str)> = fields
                .iter()
                .map(|(n, v)| (n.as_str(), v.as_str()))
                .collect();
            browser.post("/checkout", &fields).await
        })
    });
    let answers = futures::future::join_all(attempts).await;

    let ids: std::collections::BTreeSet<i64> = answers
        .iter()
        .map(|answer| order_id(answer.as_ref().unwrap()))
        .collect();
    assert_eq!(ids.len(), 1, "every answer leads to the one order: {ids:?}");
    let served_by: std::collections::BTreeSet<&str> = answers
        .iter()
        .map(|a| a.as_ref().unwrap().served_by())
        .collect();
    assert_eq!(served_by.len(), 2, "both replicas answered: {served_by:?}");
    assert_eq!(app.order_count().await, 1);
    let lines: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM order_lines")
        .fetch_one(&app.state.db)
        .await
        .unwrap();
    assert_eq!(lines, 2);
    assert!(cart_of(&app, &shopper).await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cart_changed_after_the_checkout_page_is_refused_and_shown() {
    let app = TestApp::spawn(Backend::Redis).await;
    let shopper = shopper_with_a_cart(&app, "linus").await;
    let form = CheckoutForm::open(&shopper).await;

    // Another tab adds a kettle after the checkout page was shown.
    let other_tab = shopper.clone();
    other_tab.add_to_cart("2", "1").await;

    let refused = form.submit(&shopper).await;
    assert_eq!(refused.status, StatusCode::CONFLICT);
    refused.assert_contains("Your cart changed after this checkout page was shown");
    refused.assert_contains("Nothing was ordered");
    refused.assert_contains("Cast Iron Kettle");
    refused.assert_contains("Place order ($194.50)");
    // The new page confirms the new cart; the typed address is kept.
    assert_eq!(hidden(&refused, "cart"), "1x2@3400-2x1@8900-4x3@1250");
    refused.assert_contains("value=\"Ada Lovelace\"");
    assert_eq!(app.order_count().await, 0);
    assert_eq!(
        cart_of(&app, &shopper).await,
        cart(&[
            ("Blue Teapot", 2),
            ("Cast Iron Kettle", 1),
            ("Bamboo Whisk", 3)
        ])
    );

    // A quantity change is a change too.
    let form = CheckoutForm::open(&shopper).await;
    shopper
        .post("/cart/update", &[("product_id", "1"), ("quantity", "1")])
        .await;
    assert_eq!(form.submit(&shopper).await.status, StatusCode::CONFLICT);
    assert_eq!(app.order_count().await, 0);

    // Confirming the new cart orders it.
    let form = CheckoutForm::open(&shopper).await;
    let id = order_id(&form.submit(&shopper).await);
    let total: i64 = sqlx::query_scalar("SELECT total_cents FROM orders WHERE id = $1")
        .bind(id)
        .fetch_one(&app.state.db)
        .await
        .unwrap();
    assert_eq!(total, 3400 + 8900 + 3 * 1250);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_users_order_is_a_404_like_an_unknown_one() {
    let app = TestApp::spawn(Backend::Redis).await;
    let owner = shopper_with_a_cart(&app, "owner").await;
    let id = order_id(&CheckoutForm::open(&owner).await.submit(&owner).await);

    let stranger = app.browser();
    stranger.register("stranger", PASSWORD).await;
    for path in [
        format!("/orders/{id}"),
        "/orders/999999".to_owned(),
        "/orders/abc".to_owned(),
        "/orders/-1".to_owned(),
    ] {
        let page = stranger.get(&path).await;
        assert_eq!(page.status, StatusCode::NOT_FOUND, "{path}");
        page.assert_contains("There is no page at this address.");
        assert!(
            !page.body.contains("Ada Lovelace"),
            "{path} leaked the order"
        );
    }
    let list = stranger.get("/orders").await;
    list.assert_contains("You have not placed an order yet.");
    assert!(!list.body.contains(&format!("Order #{id}")));

    // A stranger replaying the owner's submission id gets no order of theirs.
    let form = {
        stranger.add_to_cart("3", "1").await;
        let mut form = CheckoutForm::open(&stranger).await;
        form.submission = sqlx::query_scalar("SELECT idempotency_key FROM orders WHERE id = $1")
            .bind(id)
            .fetch_one(&app.state.db)
            .await
            .unwrap();
        form
    };
    let refused = form.submit(&stranger).await;
    assert_eq!(refused.status, StatusCode::BAD_REQUEST);
    refused.assert_contains("could not be confirmed");
    assert_ne!(hidden(&refused, "submission"), form.submission);
    assert_eq!(app.order_count().await, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retry_after_a_crash_between_order_and_cart_finishes_the_job() {
    let app = TestApp::spawn(Backend::Redis).await;
    let shopper = shopper_with_a_cart(&app, "crashy").await;
    let form = CheckoutForm::open(&shopper).await;

    // The first attempt committed the order and died before emptying the cart.
    let uid = app.user_id("crashy").await;
    let id: i64 = sqlx::query_scalar(
        "INSERT INTO orders (user_id, idempotency_key, name, address, city, postcode, country, \
                             item_count, total_cents, created_at) \
         VALUES ($1, $2, 'Ada Lovelace', '12 St James''s Square', 'London', 'SW1Y 4JH', 'GB', \
                 5, 10550, 1700000000) RETURNING id",
    )
    .bind(uid)
    .bind(&form.submission)
    .fetch_one(&app.state.db)
    .await
    .unwrap();
    for (product, name, price, quantity) in
        [(1, "Blue Teapot", 3400, 2), (4, "Bamboo Whisk", 1250, 3)]
    {
        sqlx::query(
            "INSERT INTO order_lines (order_id, product_id, product_name, product_slug, image, \
                                      unit_price_cents, quantity) \
             VALUES ($1, $2, $3, 'x', 'x.svg', $4, $5)",
        )
        .bind(id)
        .bind(product)
        .bind(name)
        .bind(price)
        .bind(quantity)
        .execute(&app.state.db)
        .await
        .unwrap();
    }
    assert_eq!(
        cart_of(&app, &shopper).await.len(),
        2,
        "the cart is still full"
    );

    // The browser retries the same form: it is sent to that order, the cart is emptied.
    assert_eq!(order_id(&form.submit(&shopper).await), id);
    assert!(cart_of(&app, &shopper).await.is_empty());
    // And the emptied cart cannot be ordered a second time by another retry.
    assert_eq!(order_id(&form.submit(&shopper).await), id);
    assert_eq!(app.order_count().await, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_checkout_input_shows_the_form_again_and_writes_nothing() {
    let app = TestApp::spawn(Backend::Redis).await;
    let shopper = shopper_with_a_cart(&app, "typo").await;
    let form = CheckoutForm::open(&shopper).await;
    let long_address = "x".repeat(201);
    // (what, the fields sent, the message expected)
    type Case<'a> = (&'a str, Vec<(&'a str, &'a str)>, &'a str);
    let cases: Vec<Case> = vec![
        (
            "missing name",
            form.fields(&[("name", "")]),
            "Please enter your name.",
        ),
        (
            "blank city",
            form.fields(&[("city", "   ")]),
            "Please enter the town or city.",
        ),
        (
            "oversized address",
            form.fields(&[("address", &long_address)]),
            "Please shorten the street address to 200 characters at most.",
        ),
        (
            "odd postcode",
            form.fields(&[("postcode", "<b>1</b>")]),
            "Postcodes may use only letters, digits, spaces and hyphens.",
        ),
        (
            "unknown country",
            form.fields(&[("country", "XX")]),
            "Please choose a country from the list",
        ),
        (
            "country by name",
            form.fields(&[("country", "Germany")]),
            "Please choose a country from the list",
        ),
        (
            "missing country",
            form.fields(&[("country", "")]),
            "Please choose a country.",
        ),
        (
            "control characters",
            form.fields(&[("name", "Ada\u{7}")]),
            "control characters",
        ),
        (
            "missing submission id",
            form.fields(&[("submission", "")]),
            "could not be confirmed",
        ),
        (
            "forged submission id",
            form.fields(&[("submission", "../../x")]),
            "could not be confirmed",
        ),
        (
            "missing cart",
            form.fields(&[("cart", "")]),
            "Your cart changed",
        ),
    ];
    for (case, fields, message) in &cases {
        let page = shopper.post("/checkout", fields).await;
        assert!(page.status.is_client_error(), "{case}: {}", page.status);
        page.assert_contains(message);
        page.assert_contains("<form method=\"post\" action=\"/checkout\"");
        assert_eq!(app.order_count().await, 0, "{case} wrote an order");
    }
    // Every error at once: one message each, the typed values kept (escaped).
    let page = shopper
        .post(
            "/checkout",
            &form.fields(&[
                ("name", "<script>x</script>"),
                ("city", ""),
                ("country", "ZZ"),
            ]),
        )
        .await;
    page.assert_contains("Please enter the town or city.");
    page.assert_contains("Please choose a country from the list");
    page.assert_contains("value=\"&#60;script&#62;x&#60;/script&#62;\"");
    assert!(
        !page.body.contains("<script>x"),
        "typed text must be escaped"
    );

    // Bytes that are not UTF-8, sent raw.
    let raw = shopper
        .request(reqwest::Method::POST, "/checkout")
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!(
            "name=Ad%FF%FEa&address=1+Tea+St&city=Leeds&postcode=LS1&country=GB&submission={}&cart={}\
             &last_order={}",
            form.submission, form.cart, form.last_order
        ))
        .send()
        .await
        .unwrap();
    let page = Browser::read(raw).await;
    assert_eq!(page.status, StatusCode::BAD_REQUEST);
    page.assert_contains("could not be read");
    // A body over the size limit is refused whole.
    let huge = "y".repeat(20 * 1024);
    let page = shopper
        .post("/checkout", &form.fields(&[("address", &huge)]))
        .await;
    assert_eq!(page.status, StatusCode::PAYLOAD_TOO_LARGE);

    // Nothing was written: no order, the cart as it was. The same form, corrected, works.
    assert_eq!(app.order_count().await, 0);
    assert_eq!(
        cart_of(&app, &shopper).await,
        cart(&[("Blue Teapot", 2), ("Bamboo Whisk", 3)])
    );
    let placed = order_id(&form.submit(&shopper).await).to_string();

    // An empty cart: the page says so, and a post orders nothing.
    let page = shopper.get("/checkout").await;
    page.assert_contains("Your cart is empty.");
    let empty = shopper
        .post(
            "/checkout",
            &form.fields(&[
                ("submission", &"e".repeat(32)),
                ("cart", ""),
                ("last_order", &placed),
            ]),
        )
        .await;
    assert_eq!(empty.status, StatusCode::BAD_REQUEST);
    empty.assert_contains("Your cart is empty: there is nothing to order.");
    assert_eq!(app.order_count().await, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn checkout_asks_for_email_phone_a_second_line_and_the_region_and_the_order_shows_them() {
    let app = TestApp::spawn(Backend::Redis).await;
    let shopper = shopper_with_a_cart(&app, "grace").await;
    let form = CheckoutForm::open(&shopper).await;
    let page = shopper.get("/checkout").await;
    // Single-line inputs name their line; countries are listed by name.
    assert!(!page.body.contains("street-address"));
    page.assert_contains("autocomplete=\"address-line1\"");
    page.assert_contains("autocomplete=\"address-line2\"");
    page.assert_contains("type=\"email\" autocomplete=\"email\"");
    let at = |name: &str| page.body.find(&format!(">{name}</option>")).unwrap();
    assert!(at("Australia") < at("Austria"));
    assert!(at("Canada") < at("Switzerland"));
    assert!(at("Switzerland") < at("United Kingdom"));

    // One message per field, the typed values kept, nothing written.
    let wrong = shopper
        .post(
            "/checkout",
            &form.fields(&[
                ("email", "grace at navy"),
                ("phone", "call me"),
                ("country", "US"),
                ("address2", "Building 7"),
            ]),
        )
        .await;
    assert_eq!(wrong.status, StatusCode::BAD_REQUEST);
    wrong.assert_contains(
        "id=\"email-error\">Please enter your email address like name@example.com",
    );
    wrong.assert_contains("id=\"phone-error\">Phone numbers may use only digits");
    wrong.assert_contains(
        "id=\"region-error\">Please choose the state: addresses in United States need one.",
    );
    wrong.assert_contains("value=\"grace at navy\"");
    wrong.assert_contains("value=\"Building 7\"");
    let missing = shopper
        .post("/checkout", &form.fields(&[("email", "")]))
        .await;
    missing.assert_contains("Please enter your email address.");
    assert_eq!(app.order_count().await, 0);

    let placed = shopper
        .post(
            "/checkout",
            &form.fields(&[
                ("name", "Grace Hopper"),
                ("email", "grace@example.com"),
                ("phone", "+1 212 555 0100"),
                ("address", "1 Navy Yard"),
                ("address2", "Building 7"),
                ("city", "Brooklyn"),
                ("region", "US-NY"),
                ("postcode", "11205"),
                ("country", "US"),
            ]),
        )
        .await;
    let id = order_id(&placed);
    let order = shopper.get(&format!("/orders/{id}")).await;
    order.assert_contains("Building 7<br>");
    order.assert_contains("Brooklyn, <abbr title=\"New York\">NY</abbr> 11205");
    order.assert_contains("Receipt to <strong>grace@example.com</strong>");
    order.assert_contains("Phone +1 212 555 0100");
    // One way to write a moment: in words, the exact time on hover.
    order.assert_contains("Placed <time datetime=\"20");
    order.assert_contains("UTC\">just now</time>");
    // The next checkout starts from this address, email and all.
    shopper.add_to_cart("1", "1").await;
    let next = shopper.get("/checkout").await;
    next.assert_contains("value=\"grace@example.com\"");
    next.assert_contains("<option value=\"US-NY\" selected>New York</option>");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_order_from_before_the_new_fields_still_shows() {
    let app = TestApp::spawn(Backend::Redis).await;
    let shopper = shopper_with_a_cart(&app, "early").await;
    let uid = app.user_id("early").await;
    // Written the way orders were before email, phone, line 2 and region.
    let id: i64 = sqlx::query_scalar(
        "INSERT INTO orders (user_id, idempotency_key, name, address, city, postcode, country, \
                             item_count, total_cents, created_at) \
         VALUES ($1, 'early-order-key-0123456789', 'Ada Lovelace', '12 St James''s Square', \
                 'London', 'SW1Y 4JH', 'GB', 1, 3400, 1700000000) RETURNING id",
    )
    .bind(uid)
    .fetch_one(&app.state.db)
    .await
    .unwrap();
    let page = shopper.get(&format!("/orders/{id}")).await;
    assert_eq!(page.status, StatusCode::OK);
    page.assert_contains("12 St James&#39;s Square<br>");
    page.assert_contains("London SW1Y 4JH<br>");
    assert!(!page.body.contains("Receipt to"));
    assert!(!page.body.contains("<abbr"));
    page.assert_contains(
        "<time datetime=\"2023-11-14T22:13:20Z\" title=\"14 November 2023, 22:13 UTC\">on 14 November 2023</time>",
    );
    // Its address fills the next form; the email is asked for.
    let form = shopper.get("/checkout").await;
    form.assert_contains("value=\"London\"");
    form.assert_contains("id=\"email\" name=\"email\" type=\"email\" autocomplete=\"email\" maxlength=\"254\" value=\"\"");
}

/// Two checkout pages of one cart (two tabs, each with its own one-time id),
/// submitted at the same moment to two replicas: one order, and the other page
/// is told the cart was already ordered. Ten rounds, each with a new cart; then
/// the second page sent after the first.
pub async fn two_pages_of_one_cart_make_one_order(database: Database) {
    let app = TestApp::spawn_on(Backend::Redis, database).await;
    let other = app.sibling("replica-two").await;
    let shopper = app.browser();
    shopper
        .register("two-tabs", PASSWORD)
        .await
        .assert_redirect("/");
    for round in 1..=10 {
        shopper.add_to_cart("1", "2").await;
        let (first, second) = (
            CheckoutForm::open(&shopper).await,
            CheckoutForm::open(&shopper).await,
        );
        assert_ne!(first.submission, second.submission);
        let barrier = std::sync::Arc::new(tokio::sync::Barrier::new(2));
        let send = |form: CheckoutForm, browser: Browser| {
            let barrier = barrier.clone();
            tokio::spawn(async move {
                barrier.wait().await;
                form.submit(&browser).await
            })
        };
        let a = send(first, shopper.clone());
        let b = send(second, shopper.at(&other.address));
        let pages = [a.await.unwrap(), b.await.unwrap()];
        assert_eq!(
            app.order_count().await,
            round,
            "{database:?}, round {round}: {pages:#?}"
        );
        let placed: Vec<&Page> = pages
            .iter()
            .filter(|p| p.status == StatusCode::SEE_OTHER)
            .collect();
        let refused: Vec<&Page> = pages
            .iter()
            .filter(|p| p.status == StatusCode::CONFLICT)
            .collect();
        assert_eq!((placed.len(), refused.len()), (1, 1), "{pages:#?}");
        let id = order_id(placed[0]);
        refused[0].assert_contains(&format!(
            "This cart was already ordered from another checkout page: it is order #{id}"
        ));
        assert!(cart_of(&app, &shopper).await.is_empty());
    }

    // One after the other: the second page finds the order, whatever the cart holds.
    shopper.add_to_cart("4", "1").await;
    let (first, second) = (
        CheckoutForm::open(&shopper).await,
        CheckoutForm::open(&shopper).await,
    );
    let id = order_id(&first.submit(&shopper).await);
    let late = second.submit(&shopper.at(&other.address)).await;
    assert_eq!(late.status, StatusCode::CONFLICT, "{late:#?}");
    late.assert_contains(&format!("it is order #{id}"));
    assert_eq!(app.order_count().await, 11);
    // A page shown after that order is a new cart: it orders.
    shopper.add_to_cart("4", "1").await;
    order_id(&CheckoutForm::open(&shopper).await.submit(&shopper).await);
    assert_eq!(app.order_count().await, 12);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_checkout_pages_of_one_cart_make_one_order_on_sqlite() {
    two_pages_of_one_cart_make_one_order(Database::Sqlite).await;
}
