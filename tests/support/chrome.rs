//! Debian's Chromium, headless, driven through chromedriver with WebDriver
//! (fantoccini). One chromedriver process per test, one fresh profile per window.

use std::collections::BTreeSet;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use fantoccini::elements::Element;
use fantoccini::error::CmdError;
use fantoccini::{Client, ClientBuilder, Locator};
use hyper_util::client::legacy::connect::HttpConnector;
use serde_json::{json, Value};

use super::process::{free_port, wait_until};

/// How long one page may take to load before the test fails.
const PAGE_LIMIT: Duration = Duration::from_secs(20);

/// The flags this machine needs (see the project's machine notes): no sandbox as
/// root, no GPU, and no background connections to Google's hosts, which a closed
/// network refuses many times a second.
const CHROMIUM_FLAGS: &[&str] = &[
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--disable-extensions",
    "--hide-scrollbars",
    "--lang=en-US",
];

/// A chromedriver on a free loopback port, with every Chromium it starts, killed when dropped.
pub struct ChromeDriver {
    child: Child,
    pub url: String,
}

impl ChromeDriver {
    pub async fn start() -> ChromeDriver {
        let port = free_port();
        let child = Command::new("chromedriver")
            .arg(format!("--port={port}"))
            .arg("--allowed-ips=127.0.0.1")
            // Its own process group: dropping it kills chromedriver and its browsers together,
            // even when a test panics before closing its windows.
            .process_group(0)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver must be installed (scripts/test installs chromium-driver)");
        let url = format!("http://127.0.0.1:{port}");
        let driver = ChromeDriver { child, url };
        let status = format!("{}/status", driver.url);
        let http = reqwest::Client::new();
        wait_until("chromedriver", Duration::from_secs(20), || {
            let (http, status) = (http.clone(), status.clone());
            async move {
                match http.get(&status).send().await {
                    Ok(response) => response
                        .text()
                        .await
                        .ok()
                        .and_then(|body| serde_json::from_str::<Value>(&body).ok())
                        .is_some_and(|body| body["value"]["ready"] == json!(true)),
                    Err(_) => false,
                }
            }
        })
        .await;
        driver
    }
}

impl Drop for ChromeDriver {
    fn drop(&mut self) {
        // The process group we made at spawn: chromedriver and the browsers it started.
        let _ = Command::new("kill")
            .args(["-KILL", "--", &format!("-{}", self.child.id())])
            .status();
        let _ = self.child.wait();
    }
}

/// How a browser window starts.
#[derive(Debug, Clone, Copy)]
pub struct Options {
    pub javascript: bool,
    /// Viewport width in CSS pixels.
    pub width: u32,
    /// The browser's default font size in pixels (a reader's setting; 16 by default).
    pub font_size: u32,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            javascript: true,
            width: 1280,
            font_size: 16,
        }
    }
}

/// One browser with its own fresh profile (so its own cookies), on one site.
pub struct Chrome {
    pub client: Client,
    base: String,
    /// Replica names read from the footer of every page this browser loaded.
    replicas: Mutex<BTreeSet<String>>,
    _profile: tempfile::TempDir,
}

impl Chrome {
    pub async fn open(driver: &ChromeDriver, base: &str, options: Options) -> Chrome {
        let profile = tempfile::tempdir().unwrap();
        let mut args: Vec<String> = CHROMIUM_FLAGS.iter().map(|s| s.to_string()).collect();
        args.push(format!("--user-data-dir={}", profile.path().display()));
        args.push(format!("--window-size={},900", options.width.max(500)));
        let mut chrome_options = json!({ "binary": chromium_binary(), "args": args });
        let mut prefs = json!({ "webkit.webprefs.default_font_size": options.font_size });
        if !options.javascript {
            // The content setting a user changes in chrome://settings/content/javascript.
            prefs["profile.managed_default_content_settings.javascript"] = json!(2);
        }
        chrome_options["prefs"] = prefs;
        let mut capabilities = serde_json::Map::new();
        capabilities.insert("browserName".into(), json!("chrome"));
        capabilities.insert("goog:chromeOptions".into(), chrome_options);
        let client = ClientBuilder::new(HttpConnector::new())
            .capabilities(capabilities)
            .connect(&driver.url)
            .await
            .expect("a Chromium session from chromedriver");
        let chrome = Chrome {
            client,
            base: base.trim_end_matches('/').to_owned(),
            replicas: Mutex::default(),
            _profile: profile,
        };
        chrome.set_width(options.width).await;
        chrome
    }

    pub async fn close(self) {
        let _ = self.client.close().await;
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// Opens `path` on the site, as typing it in the address bar would.
    pub async fn visit(&self, path: &str) {
        let url = self.url(path);
        self.client
            .goto(&url)
            .await
            .unwrap_or_else(|e| panic!("loading {url}: {e}"));
        self.page_loaded().await;
    }

    /// Opens any URL (not only the site's).
    pub async fn goto_raw(&self, url: &str) {
        self.client.goto(url).await.unwrap();
    }

    /// The browser's Back button.
    pub async fn back(&self) {
        let old = self.html().await;
        self.client.back().await.unwrap();
        self.wait_for_new_page(old).await;
    }

    pub async fn path(&self) -> String {
        self.client.current_url().await.unwrap().path().to_owned()
    }

    pub async fn find(&self, css: &str) -> Element {
        match self.client.find(Locator::Css(css)).await {
            Ok(element) => element,
            Err(e) => panic!("no {css:?} on {}: {e}", self.describe().await),
        }
    }

    pub async fn find_all(&self, css: &str) -> Vec<Element> {
        self.client.find_all(Locator::Css(css)).await.unwrap()
    }

    /// Types into a field, replacing what was there.
    pub async fn fill(&self, css: &str, value: &str) {
        let field = self.find(css).await;
        field.clear().await.unwrap();
        field.send_keys(value).await.unwrap();
    }

    /// Clicks something that loads a new page (a link, a form's button) and waits for it.
    pub async fn click(&self, css: &str) {
        let target = self.find(css).await;
        let old = self.html().await;
        target
            .click()
            .await
            .unwrap_or_else(|e| panic!("clicking {css:?}: {e}"));
        self.wait_for_new_page(old).await;
    }

    /// Clicks the button whose visible text is `label` (inside `scope`, a CSS selector).
    pub async fn click_button(&self, scope: &str, label: &str) {
        let xpath = format!(
            "//*[self::button or self::a][normalize-space(.)={}]",
            xpath_literal(label)
        );
        let container = self.find(scope).await;
        let button = container
            .find(Locator::XPath(&format!(".{xpath}")))
            .await
            .unwrap_or_else(|e| panic!("no button {label:?} in {scope:?}: {e}"));
        let old = self.html().await;
        button.click().await.unwrap();
        self.wait_for_new_page(old).await;
    }

    async fn html(&self) -> Element {
        self.client.find(Locator::Css("html")).await.unwrap()
    }

    /// Waits until the old document is gone and the new one has loaded.
    async fn wait_for_new_page(&self, old: Element) {
        let start = Instant::now();
        loop {
            match old.tag_name().await {
                Err(e) if e.is_stale_element_reference() || e.is_no_such_element() => break,
                _ => {}
            }
            assert!(
                start.elapsed() < PAGE_LIMIT,
                "no new page after {PAGE_LIMIT:?}; still on {}",
                self.describe().await
            );
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        self.page_loaded().await;
    }

    /// After each page: wait for it to be complete and note which replica served it.
    async fn page_loaded(&self) {
        let start = Instant::now();
        while self.ready_state().await.as_deref() != Some("complete") {
            assert!(start.elapsed() < PAGE_LIMIT, "page never completed loading");
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        if let Some(replica) = self.served_by().await {
            self.replicas.lock().unwrap().insert(replica);
        }
    }

    async fn ready_state(&self) -> Option<String> {
        match self
            .client
            .execute("return document.readyState", vec![])
            .await
        {
            Ok(Value::String(state)) => Some(state),
            _ => None,
        }
    }

    async fn describe(&self) -> String {
        let url = self
            .client
            .current_url()
            .await
            .map(|u| u.to_string())
            .unwrap_or_default();
        let text = self.body_text().await;
        format!("{url}\n---\n{text}\n---")
    }

    pub async fn text(&self, css: &str) -> String {
        self.find(css).await.text().await.unwrap()
    }

    /// The page's visible text.
    pub async fn body_text(&self) -> String {
        match self.client.find(Locator::Css("body")).await {
            Ok(body) => body.text().await.unwrap_or_default(),
            Err(_) => String::new(),
        }
    }

    pub async fn assert_text(&self, text: &str) {
        let body = self.body_text().await;
        assert!(
            body.contains(text),
            "expected {text:?} on {}",
            self.describe().await
        );
    }

    /// The page as the server sent it, as the browser holds it.
    pub async fn source(&self) -> String {
        self.client.source().await.unwrap()
    }

    /// The replica named in the footer (`Served by <strong>NAME</strong>`).
    pub async fn served_by(&self) -> Option<String> {
        self.text_if_present(".served-by strong").await
    }

    /// The text of the first element matching `css`, if there is one.
    async fn text_if_present(&self, css: &str) -> Option<String> {
        let element = self.client.find(Locator::Css(css)).await.ok()?;
        element.text().await.ok()
    }

    pub fn replicas_seen(&self) -> BTreeSet<String> {
        self.replicas.lock().unwrap().clone()
    }

    /// Who the header says is logged in.
    pub async fn logged_in_as(&self) -> Option<String> {
        self.text_if_present(".site-header .user strong").await
    }

    /// The number in the header's cart badge.
    pub async fn cart_badge(&self) -> u32 {
        self.text(".cart-badge .count")
            .await
            .trim()
            .parse()
            .unwrap()
    }

    /// The cart page's lines as (product name, quantity shown in its field).
    pub async fn cart_lines(&self) -> Vec<(String, u32)> {
        let mut lines = Vec::new();
        for row in self.find_all(".cart-table tbody tr").await {
            let name = row
                .find(Locator::Css("td a"))
                .await
                .unwrap()
                .text()
                .await
                .unwrap();
            let quantity = row
                .find(Locator::Css("input[name=quantity][type=number]"))
                .await
                .unwrap()
                .prop("value")
                .await
                .unwrap()
                .unwrap_or_default();
            lines.push((name, quantity.parse().unwrap()));
        }
        lines
    }

    /// Makes the viewport `width` CSS pixels wide (the window is resized to fit).
    pub async fn set_width(&self, width: u32) {
        self.set_viewport(width, 900).await;
    }

    /// Makes the viewport exactly `width` × `height` CSS pixels.
    pub async fn set_viewport(&self, width: u32, height: u32) {
        // Headless Chromium's window is taller than its viewport (it draws no
        // toolbar, but keeps the room for one); measure the difference and add it.
        self.client
            .set_window_rect(0, 0, width, height)
            .await
            .unwrap();
        let inner = self.viewport().await;
        if inner.1 != height {
            let extra = height.saturating_sub(inner.1);
            self.client
                .set_window_rect(0, 0, width, height + extra)
                .await
                .unwrap();
        }
        let (w, _) = self.viewport().await;
        assert_eq!(w, width, "viewport width");
    }

    async fn viewport(&self) -> (u32, u32) {
        let size = self
            .client
            .execute("return [window.innerWidth, window.innerHeight]", vec![])
            .await
            .unwrap();
        (
            size[0].as_u64().unwrap() as u32,
            size[1].as_u64().unwrap() as u32,
        )
    }

    /// How wide the page is, and how wide the viewport: a wider page scrolls sideways.
    pub async fn scroll_width(&self) -> (u64, u64) {
        let size = self
            .client
            .execute(
                "return [document.documentElement.scrollWidth, window.innerWidth]",
                vec![],
            )
            .await
            .unwrap();
        (size[0].as_u64().unwrap(), size[1].as_u64().unwrap())
    }

    /// A PNG of the whole page (up to `max_height` pixels tall) at the current width.
    #[allow(dead_code)] // examples/screenshots.rs uses it; the tests do not
    pub async fn screenshot_page(&self, path: &Path, max_height: u32) {
        let (width, _) = self.viewport().await;
        let height = self
            .client
            .execute("return document.documentElement.scrollHeight", vec![])
            .await
            .unwrap()
            .as_u64()
            .unwrap() as u32;
        self.set_viewport(width, height.min(max_height)).await;
        let png = self.client.screenshot().await.unwrap();
        std::fs::write(path, png).unwrap();
        self.set_width(width).await;
    }

    pub async fn execute(&self, script: &str) -> Result<Value, CmdError> {
        self.client.execute(script, vec![]).await
    }
}

fn chromium_binary() -> String {
    std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".to_owned())
}

/// A string as an XPath literal (XPath 1.0 has no escapes).
fn xpath_literal(s: &str) -> String {
    if !s.contains('"') {
        format!("\"{s}\"")
    } else if !s.contains('\'') {
        format!("'{s}'")
    } else {
        let parts: Vec<String> = s.split('"').map(|p| format!("\"{p}\"")).collect();
        format!("concat({})", parts.join(", '\"', "))
    }
}
