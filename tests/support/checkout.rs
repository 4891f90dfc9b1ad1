//! The checkout form, as a shopper's browser sees and sends it.

use reqwest::StatusCode;

use super::browser::{Browser, Page};

/// The shipping fields of a good checkout form.
pub const ADDRESS: [(&str, &str); 6] = [
    ("name", "Ada Lovelace"),
    ("email", "ada@example.com"),
    ("address", "12 St James's Square"),
    ("city", "London"),
    ("postcode", "SW1Y 4JH"),
    ("country", "GB"),
];

/// The value of a hidden field of the page's checkout form.
pub fn hidden(page: &Page, name: &str) -> String {
    page.form_value("/checkout", name)
}

/// The checkout form as the page rendered it: its submission id, its cart, and
/// the shopper's latest order when it was shown.
pub struct CheckoutForm {
    pub submission: String,
    pub cart: String,
    pub last_order: String,
}

impl CheckoutForm {
    pub async fn open(shopper: &Browser) -> CheckoutForm {
        let page = shopper.get("/checkout").await;
        assert_eq!(page.status, StatusCode::OK, "{}", page.body);
        CheckoutForm {
            submission: hidden(&page, "submission"),
            cart: hidden(&page, "cart"),
            last_order: hidden(&page, "last_order"),
        }
    }

    /// The form's fields: the address, with `changes` applied (an empty value
    /// removes the field).
    pub fn fields<'a>(&'a self, changes: &[(&'a str, &'a str)]) -> Vec<(&'a str, &'a str)> {
        let mut fields: Vec<(&str, &str)> = ADDRESS.to_vec();
        fields.push(("submission", &self.submission));
        fields.push(("cart", &self.cart));
        fields.push(("last_order", &self.last_order));
        for (name, value) in changes {
            fields.retain(|(n, _)| n != name);
            if !value.is_empty() {
                fields.push((name, value));
            }
        }
        fields
    }

    pub async fn submit(&self, shopper: &Browser) -> Page {
        shopper.post("/checkout", &self.fields(&[])).await
    }
}
