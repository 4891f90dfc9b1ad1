//! The cart: its types, where it is stored (`store`, with its Lua scripts in
//! `redis` and the dev stand-in in `memory`), and its pages and forms (`pages`).

mod memory;
pub mod pages;
mod redis;
mod store;

use std::sync::Arc;

pub use store::CartStore;

use crate::catalog::{Catalog, Product};
pub use crate::domain::{Quantity, MAX_QUANTITY};
use crate::error::AppError;

/// Whose cart: a logged-in user's (kept across logouts and devices) or an anonymous visitor's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CartOwner {
    User(i64),
    Anonymous(String),
}

impl CartOwner {
    /// `prefix{tag}suffix`: every key of this cart carries its hash tag (one Redis
    /// Cluster slot per cart), built in one allocation.
    fn key(&self, prefix: &str, suffix: &str) -> String {
        match self {
            CartOwner::User(id) => crate::redis::user_key(prefix, *id, suffix),
            CartOwner::Anonymous(id) => crate::redis::slot_key(prefix, 'a', id, suffix),
        }
    }

    pub fn redis_key(&self) -> String {
        self.key("cart:", "")
    }

    /// Submission ids already applied to this cart.
    fn submissions_key(&self) -> String {
        self.key("subs:", "")
    }

    /// Set on an anonymous cart once the login merge has taken it.
    fn retired_key(&self) -> String {
        self.key("cart:", ":retired")
    }

    fn moving_key(&self) -> String {
        self.key("cart:", ":moving")
    }

    fn merged_key(&self) -> String {
        self.key("cart:", ":merged")
    }
}

/// The result of adding to a cart.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Added {
    Applied {
        /// The line's quantity now.
        quantity: u32,
        /// True when the add would have gone over [`MAX_QUANTITY`] and was capped.
        capped: bool,
    },
    /// This submission id was applied before: nothing changed.
    AlreadyApplied,
    /// The anonymous cart was merged into a user's cart meanwhile (the visitor
    /// logged in on another tab or replica): nothing changed.
    CartRetired,
}

/// The result of changing a line's quantity.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Updated {
    Set,
    Removed,
    /// The line was not in the cart (removed meanwhile, in another tab): nothing changed.
    NotInCart,
    AlreadyApplied,
    CartRetired,
}

/// What emptying the cart after an order did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cleared {
    /// The cart held exactly the ordered lines: it is empty now.
    Emptied,
    /// The cart changed while the order was being placed: it was kept as it is.
    Kept,
    /// Done before for this order (a replay of its form): the cart was not touched.
    AlreadyDone,
}

/// A cart change sent with an [`EpochGuard`]: done (with the change's own answer),
/// or refused because the session is older than its user's credential epoch —
/// nothing changed, and the current epoch is given to settle the session with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Guarded<T> {
    Done(T),
    Stale(i64),
}

/// A logged-in session's claim to write to its user's cart: the write's own script
/// checks the user's credential epoch (same hash slot as the cart), so a cart
/// change costs no separate epoch read, and a password change or "sign out
/// everywhere" cannot slip in between the check and the write.
#[derive(Debug, Clone)]
pub struct EpochGuard {
    /// The user's epoch key (`session::index::epoch_key`).
    pub key: String,
    /// The epoch the session was created in: the write is refused if the user's is higher.
    pub session_epoch: i64,
}

/// One line of a cart: product id and quantity, in product id order.
pub type Lines = Vec<(i64, u32)>;

/// A product id from a form that names a product in the catalog.
pub fn product_from_form<'c>(
    catalog: &'c Catalog,
    raw: Option<&str>,
) -> Result<&'c Arc<Product>, AppError> {
    let raw = raw.map(str::trim).filter(|s| !s.is_empty());
    let raw = raw.ok_or_else(|| AppError::bad_request("No product was chosen."))?;
    raw.parse::<i64>()
        .ok()
        .and_then(|id| catalog.get(id))
        .ok_or_else(|| AppError::bad_request("That product does not exist."))
}
