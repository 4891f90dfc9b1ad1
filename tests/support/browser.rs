//! HTTP clients as a shopper's browser: each with its own cookie jar, never
//! following redirects, and the pages they get back, read whole.

use std::sync::Arc;
use std::time::Duration;

use reqwest::cookie::{CookieStore, Jar};
use reqwest::header::HeaderMap;
use reqwest::StatusCode;

/// A client with its own cookie jar that does not follow redirects.
#[derive(Clone)]
pub struct Browser {
    pub base: String,
    pub jar: Arc<Jar>,
    client: reqwest::Client,
}

/// A response, read whole.
#[derive(Debug)]
pub struct Page {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: String,
}

impl Page {
    pub fn location(&self) -> Option<&str> {
        self.headers.get("location").and_then(|v| v.to_str().ok())
    }

    pub fn set_cookies(&self) -> Vec<String> {
        self.headers
            .get_all("set-cookie")
            .iter()
            .map(|v| v.to_str().unwrap().to_owned())
            .collect()
    }

    pub fn served_by(&self) -> &str {
        self.headers
            .get("x-served-by")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    }

    /// The cart badge's number in the header.
    pub fn cart_badge(&self) -> u32 {
        let start = self
            .body
            .find("class=\"count\">")
            .expect("cart badge on the page")
            + "class=\"count\">".len();
        let end = self.body[start..].find('<').unwrap() + start;
        self.body[start..end].parse().unwrap()
    }

    /// The logged-in user's name from the header, if any.
    pub fn logged_in_as(&self) -> Option<String> {
        let start = self.body.find("Logged in as <strong>")? + "Logged in as <strong>".len();
        let end = self.body[start..].find('<')? + start;
        Some(self.body[start..end].to_owned())
    }

    pub fn assert_redirect(&self, to: &str) {
        assert_eq!(
            self.status,
            StatusCode::SEE_OTHER,
            "expected a redirect to {to}, got {self:#?}"
        );
        assert_eq!(self.location(), Some(to));
    }

    pub fn assert_contains(&self, text: &str) {
        assert!(
            self.body.contains(text),
            "expected {text:?} in the page:\n{}",
            self.body
        );
    }

    /// The value of the field `name` in the page's form that posts to `action`
    /// (the header's logout form has a `submission` field too).
    pub fn form_value(&self, action: &str, name: &str) -> String {
        let form = self
            .body
            .find(&format!("action=\"{action}\""))
            .unwrap_or_else(|| panic!("no form for {action} in the page:\n{}", self.body));
        let body = &self.body[form..];
        let marker = format!("name=\"{name}\" value=\"");
        let start = body
            .find(&marker)
            .unwrap_or_else(|| panic!("no field {name} in the form:\n{}", self.body))
            + marker.len();
        let end = body[start..].find('"').unwrap() + start;
        body[start..end].to_owned()
    }

    /// Cart lines as (product name, quantity), from the cart page.
    pub fn cart_lines(&self) -> Vec<(String, u32)> {
        let mut lines = Vec::new();
        for row in self.body.split("<tr>").skip(2) {
            let link = row.find("<a href=\"/products/").unwrap();
            let name_start = row[link..].find("\">").unwrap() + link + 2;
            let name_end = row[name_start..].find("</a>").unwrap() + name_start;
            let qty_marker = "name=\"quantity\" type=\"number\"";
            let q = row.find(qty_marker).unwrap();
            let value_start = row[q..].find("value=\"").unwrap() + q + 7;
            let value_end = row[value_start..].find('"').unwrap() + value_start;
            lines.push((
                row[name_start..name_end].to_owned(),
                row[value_start..value_end].parse().unwrap(),
            ));
        }
        lines
    }
}

impl Browser {
    pub fn new(base: &str) -> Self {
        let jar = Arc::new(Jar::default());
        let client = reqwest::Client::builder()
            .cookie_provider(jar.clone())
            .redirect(reqwest::redirect::Policy::none())
            .timeout(Duration::from_secs(30))
            .build()
            .unwrap();
        Browser {
            base: base.to_owned(),
            jar,
            client,
        }
    }

    /// The same cookie jar, pointed at another address (another replica).
    pub fn at(&self, base: &str) -> Self {
        Browser {
            base: base.to_owned(),
            jar: self.jar.clone(),
            client: self.client.clone(),
        }
    }

    pub async fn read(response: reqwest::Response) -> Page {
        let status = response.status();
        let headers = response.headers().clone();
        let body = response.text().await.unwrap();
        Page {
            status,
            headers,
            body,
        }
    }

    pub async fn get(&self, path: &str) -> Page {
        Self::read(
            self.client
                .get(format!("{}{path}", self.base))
                .send()
                .await
                .unwrap(),
        )
        .await
    }

    pub async fn post(&self, path: &str, form: &[(&str, &str)]) -> Page {
        Self::read(
            self.client
                .post(format!("{}{path}", self.base))
                .form(form)
                .send()
                .await
                .unwrap(),
        )
        .await
    }

    pub fn request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        self.client.request(method, format!("{}{path}", self.base))
    }

    /// The `sid` cookie's value, if the jar has one.
    pub fn sid(&self) -> Option<String> {
        let url = self.base.parse().unwrap();
        let header = self.jar.cookies(&url)?;
        header
            .to_str()
            .unwrap()
            .split("; ")
            .find_map(|c| c.strip_prefix("sid="))
            .map(str::to_owned)
    }

    /// Puts a `sid` cookie in the jar, as a browser replaying an old cookie would.
    pub fn set_sid(&self, value: &str) {
        let url = self.base.parse().unwrap();
        self.jar
            .add_cookie_str(&format!("sid={value}; Path=/"), &url);
    }

    pub async fn add_to_cart(&self, product_id: &str, quantity: &str) -> Page {
        self.post(
            "/cart/add",
            &[("product_id", product_id), ("quantity", quantity)],
        )
        .await
    }

    pub async fn log_in(&self, username: &str, password: &str) -> Page {
        self.post("/login", &[("username", username), ("password", password)])
            .await
    }

    pub async fn register(&self, username: &str, password: &str) -> Page {
        self.post(
            "/register",
            &[
                ("username", username),
                ("password", password),
                ("password_confirm", password),
            ],
        )
        .await
    }

    pub async fn log_out(&self) -> Page {
        self.post("/logout", &[]).await
    }
}
