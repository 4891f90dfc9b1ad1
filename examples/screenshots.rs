//! Writes the README's screenshots into docs/img/ (or `SCREENSHOT_DIR`): the
//! catalog, a product, login, a filled cart, the session inspector, a search,
//! checkout, an order and the orders list, each at
//! 1280 and 375 CSS pixels. `scripts/screenshots` runs it.
//!
//! It reuses the browser tests' harness: the app in-process with its own
//! redis-server, headless Chromium through chromedriver.

// The tests' support (tests/support/), the parts this program uses.
#[path = "../tests/support"]
#[allow(dead_code)]
mod support {
    pub mod api;
    pub mod app;
    pub mod browser;
    pub mod chrome;
    pub mod postgres;
    pub mod process;
    pub mod redis;
}

use std::path::PathBuf;

use support::api::{DEMO_PASSWORD, DEMO_USER};
use support::app::TestApp;
use support::chrome::{Chrome, ChromeDriver, Options};
use support::redis::RedisServer;

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let out = std::env::var_os("SCREENSHOT_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("docs/img"));
    std::fs::create_dir_all(&out).unwrap();
    let app = TestApp::spawn_sharing(
        Some(std::sync::Arc::new(RedisServer::start().await)),
        std::sync::Arc::new(tempfile::tempdir().unwrap()),
        "replica-1",
        |_| {},
    )
    .await;
    let driver = ChromeDriver::start().await;
    let chrome = Chrome::open(&driver, &app.address, Options::default()).await;
    let shoot = |name: &'static str| {
        let chrome = &chrome;
        let out = out.clone();
        async move {
            for (width, max_height) in [(1280, 1200), (375, 1400)] {
                chrome.set_width(width).await;
                let path = out.join(format!("{name}-{width}.png"));
                chrome.screenshot_page(&path, max_height).await;
                println!("wrote {}", path.display());
            }
            chrome.set_width(1280).await;
        }
    };

    chrome.visit("/").await;
    shoot("catalog").await;
    chrome.visit("/products/blue-teapot").await;
    shoot("product").await;
    chrome.visit("/login").await;
    shoot("login").await;

    chrome.visit("/").await;
    chrome
        .click_button(".product-grid", "Add to cart: Blue Teapot")
        .await;
    chrome.visit("/products/loose-leaf-sencha").await;
    chrome.fill("#quantity", "2").await;
    chrome.click_button(".product-detail", "Add to cart").await;
    chrome.visit("/login").await;
    chrome.fill("#username", DEMO_USER).await;
    chrome.fill("#password", DEMO_PASSWORD).await;
    chrome.click_button("form[action='/login']", "Log in").await;
    chrome.visit("/cart").await;
    shoot("cart").await;
    chrome.visit("/session").await;
    shoot("session").await;

    chrome.visit("/?q=tea&category=teaware").await;
    shoot("search").await;
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
    shoot("checkout").await;
    chrome
        .click_button(".checkout-form form", "Place order ($63.60)")
        .await;
    shoot("order").await;
    chrome.visit("/orders").await;
    shoot("orders").await;
    chrome.close().await;
}
