//! The shop, end to end on one replica: each test starts its own world (a real
//! redis-server, a fresh SQLite file, the real app) and acts as a user would.
//! Tests inside `on_both_backends!` run twice: with Redis and with the in-memory
//! dev store. Where they look at Redis itself, they do so only on the Redis run.

use reqwest::StatusCode;

use crate::on_both_backends;
use crate::support::api::{CATEGORIES, DEMO_PASSWORD, DEMO_USER};
use crate::support::app::{Backend, TestApp};
use crate::support::browser::Page;

on_both_backends! {
    async fn anonymous_browsing_creates_no_session(app) {
        let visitor = app.browser();
        let catalog = visitor.get("/").await;
        assert_eq!(catalog.status, StatusCode::OK);
        assert_eq!(catalog.body.matches("class=\"product-card\"").count(), 12);
        catalog.assert_contains("Blue Teapot");
        catalog.assert_contains("$34.00");
        catalog.assert_contains("Log in");
        assert_eq!(catalog.cart_badge(), 0);
        assert_eq!(catalog.served_by(), "test-replica");
        catalog.assert_contains("Served by <strong>test-replica</strong>");

        let product = visitor.get("/products/blue-teapot").await;
        assert_eq!(product.status, StatusCode::OK);
        product.assert_contains("name=\"quantity\"");
        let inspector = visitor.get("/session").await;
        inspector.assert_contains("This browser has no session");

        for page in [&catalog, &product, &inspector] {
            assert!(page.set_cookies().is_empty(), "no cookie for anonymous browsing: {:?}", page.set_cookies());
        }
        assert_eq!(visitor.sid(), None);
        assert!(app.redis_keys().await.is_empty(), "Redis must stay empty: {:?}", app.redis_keys().await);
    }

    async fn the_session_cookie_has_safe_flags(app) {
        let visitor = app.browser();
        let added = visitor.add_to_cart("1", "1").await;
        let cookies = added.set_cookies();
        let sid = cookies.iter().find(|c| c.starts_with("sid=")).expect("sid cookie set");
        assert!(sid.contains("HttpOnly"), "{sid}");
        assert!(sid.contains("SameSite=Lax"), "{sid}");
        assert!(sid.contains("Path=/"), "{sid}");
        assert!(!sid.contains("Secure"), "not Secure unless COOKIE_SECURE=true: {sid}");
    }

    async fn an_anonymous_visitor_fills_and_edits_a_cart(app) {
        let visitor = app.browser();
        // From the catalog: no quantity field, one unit.
        visitor.add_to_cart("1", "1").await;
        let from_catalog = visitor.post("/cart/add", &[("product_id", "1")]).await;
        from_catalog.assert_redirect("/cart");
        // From a product page, with a quantity.
        visitor.add_to_cart("4", "3").await.assert_redirect("/cart");

        let cart = visitor.get("/cart").await;
        assert_eq!(cart.cart_lines(), vec![("Blue Teapot".into(), 2), ("Bamboo Whisk".into(), 3)]);
        cart.assert_contains("$68.00"); // 2 × $34.00
        cart.assert_contains("$37.50"); // 3 × $12.50
        cart.assert_contains("Order total: <strong>$105.50</strong>");
        cart.assert_contains("Added 3 × Bamboo Whisk to your cart.");
        assert_eq!(cart.cart_badge(), 5);
        // The flash is shown once.
        let again = visitor.get("/cart").await;
        assert!(!again.body.contains("Added 3 × Bamboo Whisk"), "flash shown twice");

        visitor.post("/cart/update", &[("product_id", "1"), ("quantity", "5")]).await.assert_redirect("/cart");
        visitor.get("/cart").await.assert_contains("Blue Teapot now: 5.");
        visitor.post("/cart/update", &[("product_id", "4"), ("quantity", "0")]).await.assert_redirect("/cart");
        let cart = visitor.get("/cart").await;
        assert_eq!(cart.cart_lines(), vec![("Blue Teapot".into(), 5)]);
        cart.assert_contains("Removed Bamboo Whisk from your cart.");
        cart.assert_contains("Order total: <strong>$170.00</strong>");
        // The same line again, gone already: said so, and nothing changes.
        visitor.post("/cart/update", &[("product_id", "4"), ("quantity", "2")]).await.assert_redirect("/cart");
        let cart = visitor.get("/cart").await;
        cart.assert_contains("Bamboo Whisk was no longer in your cart.");
        assert_eq!(cart.cart_lines(), vec![("Blue Teapot".into(), 5)]);

        if app.redis().is_some() {
            let keys = app.redis_keys().await;
            let cart_key = keys.iter().find(|k| k.starts_with("cart:{a")).expect("anonymous cart hash");
            assert_eq!(app.redis_hash(cart_key).await, [("1".to_owned(), 5)].into());
            let ttl = app.redis_ttl(cart_key).await;
            assert!((7 * 86_400 - 60..=7 * 86_400).contains(&ttl), "anonymous cart TTL is 7 days: {ttl}");
            // The session holds only the cart's id; there is one session key.
            let sid = visitor.sid().unwrap();
            assert!(keys.contains(&sid), "session key {sid} in {keys:?}");
            // And the new-cart budget's counter for this address.
            assert!(keys.contains(&"throttle:anon:{client:127.0.0.1}".to_owned()), "{keys:?}");
            assert_eq!(keys.len(), 3, "{keys:?}");
        }
    }

    async fn adds_cap_at_99_with_a_message(app) {
        let visitor = app.browser();
        visitor.add_to_cart("2", "60").await;
        visitor.add_to_cart("2", "60").await;
        let cart = visitor.get("/cart").await;
        assert_eq!(cart.cart_lines(), vec![("Cast Iron Kettle".into(), 99)]);
        cart.assert_contains("A cart line holds at most 99: you now have 99 × Cast Iron Kettle in your cart.");
    }

    async fn bad_cart_input_gets_a_clear_400_and_changes_nothing(app) {
        let visitor = app.browser();
        for (form, message) in [
            (vec![("product_id", "1"), ("quantity", "abc")], "Quantity must be a whole number from 1 to 99."),
            (vec![("product_id", "1"), ("quantity", "100")], "Quantity must be a whole number from 1 to 99."),
            (vec![("product_id", "1"), ("quantity", "0")], "Quantity must be a whole number from 1 to 99."),
            (vec![("product_id", "999"), ("quantity", "1")], "That product does not exist."),
            (vec![("product_id", "teapot"), ("quantity", "1")], "That product does not exist."),
            (vec![("quantity", "1")], "No product was chosen."),
        ] {
            let page = visitor.post("/cart/add", &form).await;
            assert_eq!(page.status, StatusCode::BAD_REQUEST, "{form:?}");
            page.assert_contains(message);
            page.assert_contains("Served by <strong>test-replica</strong>");
            assert!(page.set_cookies().is_empty(), "bad input creates no session");
        }
        let update = visitor.post("/cart/update", &[("product_id", "1")]).await;
        assert_eq!(update.status, StatusCode::BAD_REQUEST);
        update.assert_contains("Please enter a quantity.");
        assert!(app.redis_keys().await.is_empty());
        assert_eq!(visitor.sid(), None);
    }

    async fn unknown_pages_are_404_pages_in_the_layout(app) {
        let visitor = app.browser();
        for path in ["/products/no-such-thing", "/nowhere"] {
            let page = visitor.get(path).await;
            assert_eq!(page.status, StatusCode::NOT_FOUND);
            assert!(page.headers["content-type"].to_str().unwrap().starts_with("text/html"));
            page.assert_contains("There is no page at this address.");
            page.assert_contains("Served by <strong>test-replica</strong>");
        }
    }

    async fn registering_logs_in_and_validates_every_field(app) {
        let visitor = app.browser();
        let before = app.user_count().await;
        for (username, password, confirm, message) in [
            ("ab", "long enough pw", "long enough pw", "Usernames are 3 to 32 characters long."),
            ("émile", "long enough pw", "long enough pw", "Usernames may use only letters a–z, digits, _ and -."),
            ("shopper", "short", "short", "Passwords are at least 8 characters long."),
            ("shopper", "long enough pw", "different pw!!", "The two passwords do not match."),
        ] {
            let page = visitor
                .post("/register", &[("username", username), ("password", password), ("password_confirm", confirm)])
                .await;
            assert_eq!(page.status, StatusCode::BAD_REQUEST, "{username}/{password}");
            page.assert_contains(message);
        }
        assert_eq!(app.user_count().await, before);
        assert_eq!(visitor.sid(), None);

        let page = visitor.register("Shopper_1", "long enough pw").await;
        page.assert_redirect("/");
        assert!(app.user_exists("shopper_1").await);
        let home = visitor.get("/").await;
        assert_eq!(home.logged_in_as().as_deref(), Some("shopper_1"));
        home.assert_contains("Welcome, shopper_1!");

        // Usernames are unique whatever their case.
        let other = app.browser();
        let taken = other.register("SHOPPER_1", "another password").await;
        assert_eq!(taken.status, StatusCode::CONFLICT);
        taken.assert_contains("That username is taken.");
        assert_eq!(app.user_count().await, before + 1);
    }

    async fn wrong_username_and_wrong_password_get_the_same_answer(app) {
        let visitor = app.browser();
        let wrong_user = visitor.log_in("nobody-here", DEMO_PASSWORD).await;
        let wrong_password = visitor.log_in(DEMO_USER, "not the password").await;
        for page in [&wrong_user, &wrong_password] {
            assert_eq!(page.status, StatusCode::UNAUTHORIZED);
            page.assert_contains("Wrong username or password.");
            assert!(page.logged_in_as().is_none());
        }
        // Each form gets a fresh one-time submission id; everything else must match.
        let strip = |p: &Page| {
            let body = p.body.replace("nobody-here", DEMO_USER);
            let marker = "name=\"submission\" value=\"";
            match body.find(marker) {
                Some(at) => {
                    let start = at + marker.len();
                    let end = start + body[start..].find('"').unwrap();
                    format!("{}{}", &body[..start], &body[end..])
                }
                None => body,
            }
        };
        assert_eq!(strip(&wrong_user), strip(&wrong_password), "the two failures must look alike");
    }

    async fn login_merges_the_anonymous_cart_and_logout_keeps_the_users_cart(app) {
        // The demo user already has a cart from an earlier visit on another device.
        let laptop = app.browser();
        laptop.log_in(DEMO_USER, DEMO_PASSWORD).await.assert_redirect("/");
        laptop.get("/").await.assert_contains("Welcome back, demo.</");
        laptop.add_to_cart("1", "98").await;
        laptop.add_to_cart("3", "1").await;
        laptop.log_out().await.assert_redirect("/");

        // Anonymous on the phone, then logs in.
        let phone = app.browser();
        phone.add_to_cart("1", "2").await;
        phone.add_to_cart("5", "4").await;
        let anonymous_sid = phone.sid().unwrap();
        let page = phone.post("/login", &[("username", "DEMO"), ("password", DEMO_PASSWORD), ("next", "/cart")]).await;
        page.assert_redirect("/cart");
        let cart = phone.get("/cart").await;
        assert_eq!(cart.logged_in_as().as_deref(), Some("demo"));
        // The login says what became of this visit's cart: 2 + 4 units.
        cart.assert_contains("Welcome back, demo. 6 items from this visit were added to your cart.");
        // 98 + 2 caps at 99; the others add.
        assert_eq!(
            cart.cart_lines(),
            vec![("Blue Teapot".into(), 99), ("Porcelain Cup Set".into(), 1), ("Loose Leaf Sencha".into(), 4)]
        );
        let logged_in_sid = phone.sid().unwrap();
        assert_ne!(anonymous_sid, logged_in_sid, "login must issue a new session id");
        if app.redis().is_some() {
            let keys = app.redis_keys().await;
            // Gone, leaving only its retirement marker (refuses late adds for a while).
            assert!(
                keys.iter().filter(|k| k.starts_with("cart:{a")).all(|k| k.ends_with(":retired")),
                "anonymous cart gone: {keys:?}"
            );
            assert!(!app.session_is_live(&anonymous_sid).await, "old session id gone");
            assert_eq!(app.redis_hash("cart:{u1}").await, [("1".into(), 99), ("3".into(), 1), ("5".into(), 4)].into());
            let ttl = app.redis_ttl("cart:{u1}").await;
            assert!((30 * 86_400 - 60..=30 * 86_400).contains(&ttl), "user cart TTL is 30 days: {ttl}");
        }

        // Logout deletes the session and the cookie, and keeps the cart.
        let logout = phone.log_out().await;
        logout.assert_redirect("/");
        let removal = logout.set_cookies().into_iter().find(|c| c.starts_with("sid=")).expect("cookie removed");
        assert!(removal.contains("Max-Age=0"), "{removal}");
        assert_eq!(phone.sid(), None);
        if app.redis().is_some() {
            assert!(!app.session_is_live(&logged_in_sid).await, "session ended in Redis");
            assert!(app.redis_exists("cart:{u1}").await, "the user's cart stays");
        }
        // Replaying the old cookie gets an anonymous page.
        let replay = app.browser();
        replay.set_sid(&logged_in_sid);
        let home = replay.get("/").await;
        assert_eq!(home.logged_in_as(), None);
        assert_eq!(home.cart_badge(), 0);

        // A fresh client logs in and finds the same cart.
        let tablet = app.browser();
        tablet.log_in(DEMO_USER, DEMO_PASSWORD).await.assert_redirect("/");
        let cart = tablet.get("/cart").await;
        assert_eq!(cart.cart_lines().len(), 3);
        assert_eq!(cart.cart_badge(), 104);
    }

    async fn remember_me_decides_the_cookie_and_the_lifetime(app) {
        let brief = app.browser();
        let page = brief.log_in(DEMO_USER, DEMO_PASSWORD).await;
        let cookie = page.set_cookies().into_iter().find(|c| c.starts_with("sid=")).unwrap();
        assert!(!cookie.contains("Max-Age") && !cookie.contains("Expires"), "browser-session cookie: {cookie}");

        let long = app.browser();
        let page = long.post("/login", &[("username", DEMO_USER), ("password", DEMO_PASSWORD), ("remember", "on")]).await;
        let cookie = page.set_cookies().into_iter().find(|c| c.starts_with("sid=")).unwrap();
        assert!(cookie.contains("Max-Age=2592000"), "30-day cookie: {cookie}");
        // Cart changes do not save the session (their messages ride in their own
        // cookie); a later write that does keeps the persistent cookie.
        long.add_to_cart("1", "1").await;
        let updated = long.post("/cart/update", &[("product_id", "1"), ("quantity", "2")]).await;
        assert!(updated.set_cookies().iter().all(|c| !c.starts_with("sid=")), "no session write");
        let saved = long.post("/account/sessions/revoke-others", &[]).await;
        let cookie = saved.set_cookies().into_iter().find(|c| c.starts_with("sid=")).unwrap();
        assert!(cookie.contains("Max-Age=2592000"), "still 30 days: {cookie}");

        if app.redis().is_some() {
            let brief_ttl = app.redis_ttl(&brief.sid().unwrap()).await;
            assert!((1_700..=1_800).contains(&brief_ttl), "idle timeout 30 min: {brief_ttl}");
            let long_ttl = app.redis_ttl(&long.sid().unwrap()).await;
            assert!((30 * 86_400 - 60..=30 * 86_400).contains(&long_ttl), "30 days: {long_ttl}");
        }
    }

    async fn the_session_inspector_shows_what_the_server_holds(app) {
        let visitor = app.browser();
        visitor.add_to_cart("1", "1").await;
        let anonymous = visitor.get("/session").await;
        anonymous.assert_contains("anonymous");
        anonymous.assert_contains("cart:{a");
        anonymous.assert_contains("Created by</th><td><code>test-replica");

        visitor.post("/login", &[("username", DEMO_USER), ("password", DEMO_PASSWORD), ("remember", "on")]).await;
        let page = visitor.get("/session").await;
        let sid = visitor.sid().unwrap();
        page.assert_contains(&format!("{}…", &sid[..8]));
        assert!(!page.body.contains(&sid), "the full session id is never shown");
        page.assert_contains("demo (id 1)");
        page.assert_contains("on: persistent cookie");
        page.assert_contains("cart:{u1}");
        page.assert_contains("Served now by</th><td><code>test-replica");
        // Only sessions in Redis can be served by any replica.
        if app.redis().is_some() {
            page.assert_contains("which is why any replica can serve you");
        } else {
            assert!(!page.body.contains("any replica can serve you"), "{}", page.body);
            page.assert_contains("only this replica knows it");
        }
        // Sent without a traceparent, the request's id is its trace id.
        let request_id = page.headers["x-request-id"].to_str().unwrap();
        page.assert_contains(&format!("Trace id of this request</th><td><code>{request_id}<"));
        if app.redis().is_some() {
            let marker = "Redis key TTL</th><td><code>";
            let start = page.body.find(marker).expect("TTL row") + marker.len();
            let ttl: i64 = page.body[start..].split(' ').next().unwrap().parse().unwrap();
            assert!((30 * 86_400 - 60..=30 * 86_400).contains(&ttl), "remember-me TTL: {ttl}");
        }
    }

    async fn a_made_up_or_garbage_cookie_is_no_session(app) {
        for cookie in ["garbage", "AAAAAAAAAAAAAAAAAAAAAA", "%%%", ""] {
            let visitor = app.browser();
            visitor.set_sid(cookie);
            let page = visitor.get("/").await;
            assert_eq!(page.status, StatusCode::OK, "{cookie:?}");
            assert_eq!(page.logged_in_as(), None);
            let added = visitor.add_to_cart("1", "1").await;
            added.assert_redirect("/cart");
            assert_eq!(visitor.get("/cart").await.cart_lines(), vec![("Blue Teapot".into(), 1)]);
        }
    }

    async fn a_logout_racing_a_cart_add_never_fails_or_resurrects(app) {
        for _ in 0..20 {
            let visitor = app.browser();
            visitor.log_in(DEMO_USER, DEMO_PASSWORD).await.assert_redirect("/");
            let sid = visitor.sid().unwrap();
            let (logout, add) = tokio::join!(visitor.log_out(), visitor.add_to_cart("2", "1"));
            assert!(!logout.status.is_server_error(), "{logout:?}");
            assert!(!add.status.is_server_error(), "{add:?}");
            if app.redis().is_some() {
                assert!(!app.session_is_live(&sid).await, "logged-out session must not come back");
            }
            let replay = app.browser();
            replay.set_sid(&sid);
            assert_eq!(replay.get("/").await.logged_in_as(), None);
        }
    }

    async fn reading_pages_within_the_keep_alive_interval_writes_nothing(app) {
        // Sliding itself is tested with a short timeout in `short_idle_timeout`
        // below; here: a reader within the interval causes no session write at all.
        let reader = app.browser();
        reader.log_in(DEMO_USER, DEMO_PASSWORD).await;
        // The first page shows (and so removes) the login's welcome message.
        reader.get("/").await.assert_contains("Welcome back, demo.");
        if app.redis().is_some() {
            let sets_before = app.redis_calls("set").await;
            for _ in 0..10 {
                assert_eq!(reader.get("/").await.logged_in_as().as_deref(), Some("demo"));
            }
            assert_eq!(app.redis_calls("set").await, sets_before, "read-only pages must not write the session");
        }
    }
}

/// With a 3-second idle timeout (keep-alive every second): a reader stays logged
/// in well past 3 seconds, and 4 idle seconds log them out.
mod short_idle_timeout {
    use super::*;
    use std::time::Duration;

    async fn check(backend: Backend) {
        let app =
            TestApp::spawn_with(backend, |c| c.session_idle_timeout = Duration::from_secs(3)).await;
        let reader = app.browser();
        reader
            .log_in(DEMO_USER, DEMO_PASSWORD)
            .await
            .assert_redirect("/");
        let start = std::time::Instant::now();
        while start.elapsed() < Duration::from_secs(5) {
            let page = reader.get("/").await;
            assert_eq!(
                page.logged_in_as().as_deref(),
                Some("demo"),
                "active reader logged out"
            );
            // The time passing is what is tested here, not a wait for readiness.
            tokio::time::sleep(Duration::from_millis(400)).await;
        }
        if app.redis().is_some() {
            let ttl = app.redis_ttl(&reader.sid().unwrap()).await;
            assert!((1..=3).contains(&ttl), "deadline slid: {ttl}");
        }
        tokio::time::sleep(Duration::from_secs(4)).await;
        assert_eq!(
            reader.get("/").await.logged_in_as(),
            None,
            "idle session must end"
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn with_redis() {
        check(Backend::Redis).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn in_memory() {
        check(Backend::Memory).await;
    }
}

/// Product names shown on a catalog page, in order.
fn product_names(page: &Page) -> Vec<String> {
    page.body
        .split("<h2><a href=\"/products/")
        .skip(1)
        .map(|card| {
            let start = card.find("\">").unwrap() + 2;
            let end = card.find("</a>").unwrap();
            card[start..end].to_owned()
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_catalog_is_searched_and_filtered_by_category() {
    let app = TestApp::spawn(Backend::Redis).await;
    let visitor = app.browser();

    // Categories: each product in one, the filter shows only its products.
    let teaware = visitor.get("/?category=teaware").await;
    assert_eq!(teaware.status, StatusCode::OK);
    assert_eq!(
        product_names(&teaware),
        [
            "Blue Teapot",
            "Cast Iron Kettle",
            "Porcelain Cup Set",
            "Glass Infuser Mug",
            "Ceramic Milk Jug"
        ]
    );
    teaware.assert_contains("<h1>Teaware</h1>");
    teaware.assert_contains("href=\"/?category=teaware\" aria-current=\"page\"");
    let mut all = Vec::new();
    for (category, _) in CATEGORIES {
        all.extend(product_names(
            &visitor.get(&format!("/?category={category}")).await,
        ));
    }
    all.sort();
    let mut every = product_names(&visitor.get("/").await);
    assert_eq!(every.len(), 12);
    every.sort();
    assert_eq!(all, every, "every product is in exactly one category");

    // Search: every word, any case, in name, description or category.
    let found = visitor.get("/?q=TEAPOT").await;
    assert_eq!(
        product_names(&found),
        ["Blue Teapot", "Ceramic Milk Jug", "Oak Serving Tray"]
    );
    found.assert_contains("3 products found for “TEAPOT”");
    found.assert_contains("value=\"TEAPOT\"");
    assert_eq!(
        product_names(&visitor.get("/?q=blue+teapot").await),
        ["Blue Teapot", "Ceramic Milk Jug"]
    );
    // Search within a category; the links keep the search.
    let both = visitor.get("/?q=tea&category=accessories").await;
    assert!(product_names(&both).contains(&"Knitted Tea Cosy".to_owned()));
    assert!(!product_names(&both).contains(&"Blue Teapot".to_owned()));
    both.assert_contains("href=\"/?category=teaware&#38;q=tea\"");
    both.assert_contains("<input type=\"hidden\" name=\"category\" value=\"accessories\">");
    // The category links mark the category shown, with a search (rendered per
    // page) and without (rendered once per category).
    both.assert_contains(
        "<li><a href=\"/?category=accessories&#38;q=tea\" aria-current=\"page\">Accessories</a></li>",
    );
    both.assert_contains("<li><a href=\"/?q=tea\">All</a></li>");
    teaware.assert_contains("<li><a href=\"/\">All</a></li>");
    let every = visitor.get("/").await;
    every.assert_contains("<li><a href=\"/\" aria-current=\"page\">All</a></li>");
    every.assert_contains("<li><a href=\"/?category=teaware\">Teaware</a></li>");

    // Nothing found: a clear empty state, no grid.
    let none = visitor.get("/?q=%3Cscript%3Ealert(1)%3C%2Fscript%3E").await;
    assert_eq!(none.status, StatusCode::OK);
    none.assert_contains("No products match “&#60;script&#62;alert(1)&#60;/script&#62;”");
    assert!(
        !none.body.contains("<script>alert"),
        "the search is escaped"
    );
    assert!(!none.body.contains("product-grid"));

    // Odd input: an unknown category, a long or undecodable search, repeated keys.
    let unknown = visitor.get("/?category=weapons").await;
    assert_eq!(unknown.status, StatusCode::OK);
    unknown.assert_contains("There is no such category");
    assert_eq!(product_names(&unknown).len(), 12);
    let long = visitor.get(&format!("/?q={}", "a".repeat(5000))).await;
    assert_eq!(long.status, StatusCode::OK);
    assert!(
        !long.body.contains(&"a".repeat(101)),
        "the search is cut to 100 characters"
    );
    assert_eq!(visitor.get("/?q=%FF%FE").await.status, StatusCode::OK);
    assert_eq!(visitor.get("/?q=a&q=b").await.status, StatusCode::OK);

    // Searching is reading: no cookie, nothing in Redis.
    assert_eq!(visitor.sid(), None);
    assert!(app.redis_keys().await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn static_files_have_fingerprinted_immutable_urls() {
    let app = TestApp::spawn(Backend::Memory).await;
    let visitor = app.browser();
    let page = visitor.get("/").await;
    let start = page
        .body
        .find("href=\"/static/style.")
        .expect("hashed stylesheet")
        + 6;
    let end = page.body[start..].find('"').unwrap() + start;
    let css_url = &page.body[start..end];
    assert!(
        css_url.ends_with(".css") && css_url.len() > "/static/style.css".len(),
        "{css_url}"
    );

    let css = visitor.get(css_url).await;
    assert_eq!(css.status, StatusCode::OK);
    assert_eq!(
        css.headers["cache-control"],
        "public, max-age=31536000, immutable"
    );
    assert_eq!(css.headers["content-type"], "text/css");
    let plain = visitor.get("/static/style.css").await;
    assert_eq!(plain.body, css.body, "the hashed name serves the same file");
    assert_eq!(plain.headers["cache-control"], "public, max-age=604800");
    // Product images too; a made-up hash is a 404.
    assert!(page.body.contains("src=\"/static/products/blue-teapot."));
    let wrong = visitor.get("/static/style.0000000000000000.css").await;
    assert_eq!(wrong.status, StatusCode::NOT_FOUND);
    // A missing file's 404 page is not kept by caches for a week.
    assert_eq!(wrong.headers["cache-control"], "no-store");
    // Each answer has an ETag; asking again with it gets a 304 and no body.
    let etag = css.headers["etag"].clone();
    let again = visitor
        .request(reqwest::Method::GET, css_url)
        .header("if-none-match", etag)
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), StatusCode::NOT_MODIFIED);
    assert!(again.bytes().await.unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pages_say_where_you_are_and_what_they_are() {
    let app = TestApp::spawn_with(Backend::Memory, |config| config.remember_me_days = 14).await;
    let visitor = app.browser();
    let catalog = visitor.get("/").await;
    catalog.assert_contains("<a class=\"skip-link\" href=\"#main\">Skip to content</a>");
    catalog.assert_contains("<a href=\"/\" aria-current=\"page\">Catalog</a>");
    catalog.assert_contains("<meta name=\"description\" content=\"Teapots, cups, tea");
    let login = visitor.get("/login").await;
    login.assert_contains("Remember me for 14 days");
    login.assert_contains("<a href=\"/login\" aria-current=\"page\">Log in</a>");
    assert!(!login.body.contains("<a href=\"/\" aria-current"));
    let product = visitor.get("/products/blue-teapot").await;
    product.assert_contains("<meta name=\"description\" content=\"A glazed stoneware teapot");
    let cart = visitor.get("/cart").await;
    cart.assert_contains("aria-current=\"page\">Cart");
    // A filled cart: thumbnails, a way back and a way on.
    visitor.add_to_cart("1", "1").await;
    let cart = visitor.get("/cart").await;
    cart.assert_contains("class=\"thumb\" src=\"/static/products/blue-teapot.");
    cart.assert_contains("<a href=\"/\">Continue shopping</a>");
    cart.assert_contains("<a class=\"button-link\" href=\"/checkout\">Checkout</a>");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pages_and_stylesheets_are_compressed_for_browsers_that_accept_it() {
    let app = TestApp::spawn(Backend::Memory).await;
    let visitor = app.browser();
    for path in ["/", "/static/style.css", "/products/blue-teapot"] {
        let gzip = get_accepting(&visitor, path, "gzip").await;
        assert_eq!(gzip.status(), StatusCode::OK, "{path}");
        assert_eq!(gzip.headers()["content-encoding"], "gzip", "{path}");
        assert!(gzip.headers()["vary"]
            .to_str()
            .unwrap()
            .to_ascii_lowercase()
            .contains("accept-encoding"));
        let br = get_accepting(&visitor, path, "br").await;
        // Static files come in brotli too; pages only in gzip (web/compress.rs).
        let page = !path.starts_with("/static/");
        assert_eq!(
            br.headers().get("content-encoding").is_some(),
            !page,
            "{path}"
        );
        // Without Accept-Encoding: plain.
        let plain = visitor.get(path).await;
        assert!(!plain.headers.contains_key("content-encoding"), "{path}");
    }
}

/// A gzipped page is joined from pieces compressed once and cached, with the
/// one-time ids sent as they are between them: each answer, for a visitor and
/// for a logged-in user, the second and third time too, is the page itself.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gzipped_pages_from_cached_pieces_are_the_pages_themselves() {
    let app = TestApp::spawn(Backend::Memory).await;
    let visitor = app.browser();
    let member = app.browser();
    member.log_in(DEMO_USER, DEMO_PASSWORD).await;
    member.add_to_cart("2", "3").await;
    // The add's message is shown once, on this page.
    member.get("/").await;
    for browser in [&visitor, &member] {
        for path in [
            "/",
            "/products/blue-teapot",
            "/cart",
            "/login",
            "/no-such-page",
        ] {
            for _ in 0..3 {
                let plain = browser.get(path).await;
                let gzip = get_accepting(browser, path, "gzip, deflate, br, zstd").await;
                assert_eq!(gzip.status(), plain.status, "{path}");
                assert_eq!(gzip.headers()["content-encoding"], "gzip", "{path}");
                let packed = gzip.bytes().await.unwrap();
                let mut unpacked = String::new();
                std::io::Read::read_to_string(
                    &mut flate2::read::GzDecoder::new(&packed[..]),
                    &mut unpacked,
                )
                .expect("a valid gzip stream");
                assert_eq!(without_ids(&unpacked), without_ids(&plain.body), "{path}");
                assert!(
                    packed.len() * 2 < unpacked.len(),
                    "{path}: {} bytes",
                    packed.len()
                );
            }
        }
    }
}

/// `GET path` with this `Accept-Encoding`, the body as it came.
async fn get_accepting(
    browser: &crate::support::browser::Browser,
    path: &str,
    encodings: &str,
) -> reqwest::Response {
    browser
        .request(reqwest::Method::GET, path)
        .header("accept-encoding", encodings)
        .send()
        .await
        .unwrap()
}

/// The page with its one-time ids (32 hex digits) blanked out.
fn without_ids(page: &str) -> String {
    let hex = |b: &u8| b.is_ascii_digit() || (b'a'..=b'f').contains(b);
    let bytes = page.as_bytes();
    let mut out = String::with_capacity(page.len());
    let mut at = 0;
    while at < bytes.len() {
        let run = bytes[at..].iter().take_while(|b| hex(b)).count();
        if run == 32 {
            out.push_str("<id>");
            at += run;
        } else {
            let next = at + run.max(1);
            let next = (next..=bytes.len())
                .find(|&i| page.is_char_boundary(i))
                .unwrap();
            out.push_str(&page[at..next]);
            at = next;
        }
    }
    out
}
