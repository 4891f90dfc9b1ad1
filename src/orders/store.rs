//! The orders tables. Every query is portable SQL with `$N` placeholders, so the
//! same text runs on SQLite and Postgres.

use crate::db::{Backend, Db};
use crate::error::{AppError, LookAt};

use super::{PricedLine, Shipping};
use crate::catalog::Money;

/// One order as its page shows it.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Order {
    pub id: i64,
    pub user_id: i64,
    pub status: String,
    pub name: String,
    pub email: String,
    pub phone: String,
    pub address: String,
    pub address2: String,
    pub city: String,
    pub region: String,
    pub postcode: String,
    pub country: String,
    pub item_count: i64,
    pub total_cents: i64,
    pub created_at: i64,
}

impl Order {
    pub fn total(&self) -> Money {
        Money(self.total_cents)
    }
    pub fn country_name(&self) -> &str {
        super::country_name(&self.country)
    }
    /// The region as the address line shows it (`CA` of `US-CA`); empty for none.
    pub fn region_short(&self) -> &str {
        self.region.split_once('-').map_or("", |(_, short)| short)
    }
    pub fn shipping(&self) -> Shipping {
        Shipping {
            name: self.name.clone(),
            email: self.email.clone(),
            phone: self.phone.clone(),
            address: self.address.clone(),
            address2: self.address2.clone(),
            city: self.city.clone(),
            region: self.region.clone(),
            postcode: self.postcode.clone(),
            country: self.country.clone(),
        }
    }
}

/// One line of an order, priced when the order was placed.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct OrderLine {
    pub product_id: i64,
    pub product_name: String,
    pub product_slug: String,
    pub image: String,
    pub unit_price_cents: i64,
    pub quantity: i64,
}

impl OrderLine {
    pub fn unit_price(&self) -> Money {
        Money(self.unit_price_cents)
    }
    pub fn total(&self) -> Money {
        Money(self.unit_price_cents * self.quantity)
    }
}

/// A row of the orders list.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct OrderSummary {
    pub id: i64,
    pub item_count: i64,
    pub total_cents: i64,
    pub created_at: i64,
}

impl OrderSummary {
    pub fn total(&self) -> Money {
        Money(self.total_cents)
    }
}

/// What happened to an attempt to write an order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Placed {
    /// A new order, with this id.
    New(i64),
    /// An order with this idempotency key, or with this cart key (another checkout
    /// page of the same cart), already exists: nothing was written.
    AlreadyExists,
}

const ORDER_COLUMNS: &str = "id, user_id, status, name, email, phone, address, address2, city, \
                             region, postcode, country, item_count, total_cents, created_at";

/// The keys that make an order happen once: the checkout form's one-time id, and
/// the cart it was placed from ([`cart_key`]).
#[derive(Debug, Clone, Copy)]
pub struct OrderKeys<'a> {
    pub idempotency_key: &'a str,
    pub cart_key: &'a str,
}

/// The cart key of a checkout page shown to `user_id` when their latest order was
/// `last_order` (0: none): every page of one cart has the same, and an order
/// placed from it gives the next page another.
pub fn cart_key(user_id: i64, last_order: i64) -> String {
    format!("u{user_id}:after:{last_order}")
}

/// Writes the order and its lines in one transaction. A second order with the same
/// key (a retry, a double click, the same form on another replica at the same
/// moment) or from the same cart (another checkout page of it, another tab) is
/// refused by a UNIQUE index, whichever transaction comes second.
pub async fn place(
    db: &Db,
    user_id: i64,
    keys: OrderKeys<'_>,
    shipping: &Shipping,
    lines: &[PricedLine],
    now: i64,
) -> Result<Placed, AppError> {
    let mut connection = db.acquire().await?;
    let result = place_on(
        &mut connection,
        Backend::of(db),
        (user_id, keys),
        shipping,
        lines,
        now,
    )
    .await;
    if result.is_err() {
        crate::db::discard(connection).await;
    }
    result
}

async fn place_on(
    connection: &mut sqlx::AnyConnection,
    backend: Backend,
    (user_id, keys): (i64, OrderKeys<'_>),
    shipping: &Shipping,
    lines: &[PricedLine],
    now: i64,
) -> Result<Placed, AppError> {
    use sqlx::Connection;
    let item_count: i64 = lines.iter().map(|l| i64::from(l.quantity)).sum();
    let total_cents = super::total(lines).0;
    let mut tx = connection.begin().await?;
    let inserted = sqlx::query_scalar::<_, i64>(
        "INSERT INTO orders (user_id, idempotency_key, cart_key, status, name, email, phone, \
                             address, address2, city, region, postcode, country, item_count, \
                             total_cents, created_at) \
         VALUES ($1, $2, $3, 'placed', $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15) \
         RETURNING id",
    )
    .bind(user_id)
    .bind(keys.idempotency_key)
    .bind(keys.cart_key)
    .bind(&shipping.name)
    .bind(&shipping.email)
    .bind(&shipping.phone)
    .bind(&shipping.address)
    .bind(&shipping.address2)
    .bind(&shipping.city)
    .bind(&shipping.region)
    .bind(&shipping.postcode)
    .bind(&shipping.country)
    .bind(item_count)
    .bind(total_cents)
    .bind(now)
    .fetch_one(&mut *tx)
    .await;
    let order_id = match inserted {
        Ok(id) => id,
        // Dropping `tx` rolls back (on Postgres the failed statement aborted it anyway).
        Err(sqlx::Error::Database(e)) if e.is_unique_violation() => {
            return Ok(Placed::AlreadyExists)
        }
        Err(e) => return Err(e.into()),
    };
    for line in lines {
        sqlx::query(
            "INSERT INTO order_lines (order_id, product_id, product_name, product_slug, image, \
                                      unit_price_cents, quantity) \
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(order_id)
        .bind(line.product.id)
        .bind(&line.product.name)
        .bind(&line.product.slug)
        .bind(&line.product.image)
        .bind(line.product.price_cents)
        .bind(i64::from(line.quantity))
        .execute(&mut *tx)
        .await?;
    }
    match tx.commit().await {
        Ok(()) => Ok(Placed::New(order_id)),
        // The COMMIT was sent to Postgres and the connection failed before its
        // answer came: the order may exist. Never "nothing was changed". (SQLite
        // runs in this process: a failed commit there is rolled back.)
        Err(e) if backend == Backend::Postgres && crate::db::is_unavailable(&e) => {
            Err(AppError::OutcomeUnknown(LookAt::Orders, e.into()))
        }
        Err(e) => Err(e.into()),
    }
}

/// The order written for a submission id, whoever placed it.
pub async fn find_by_key(db: &Db, idempotency_key: &str) -> sqlx::Result<Option<Order>> {
    sqlx::query_as(&format!(
        "SELECT {ORDER_COLUMNS} FROM orders WHERE idempotency_key = $1"
    ))
    .bind(idempotency_key)
    .fetch_optional(db)
    .await
}

/// An order that makes a checkout form's answer: its own, or its cart's.
#[derive(Debug)]
pub enum Existing {
    /// This form was placed before (a double click, a retry).
    ThisForm(Order),
    /// Another checkout page of the same cart was placed.
    ThisCart(Order),
}

/// The order these keys already have, if any. The cart is looked up first: an
/// order found by it that is this form's own (a twin request committed it a
/// moment ago) is then found by the form's key too, and is this form's answer.
pub async fn existing(db: &Db, keys: OrderKeys<'_>) -> sqlx::Result<Option<Existing>> {
    let by_cart = find_by_cart_key(db, keys.cart_key).await?;
    if let Some(order) = find_by_key(db, keys.idempotency_key).await? {
        return Ok(Some(Existing::ThisForm(order)));
    }
    Ok(by_cart.map(Existing::ThisCart))
}

/// The order placed from a cart ([`cart_key`]), by whichever checkout page.
async fn find_by_cart_key(db: &Db, cart_key: &str) -> sqlx::Result<Option<Order>> {
    sqlx::query_as(&format!(
        "SELECT {ORDER_COLUMNS} FROM orders WHERE cart_key = $1"
    ))
    .bind(cart_key)
    .fetch_optional(db)
    .await
}

/// The id of the user's latest order, 0 when there is none.
pub async fn last_order_id(db: &Db, user_id: i64) -> sqlx::Result<i64> {
    let last: Option<i64> = sqlx::query_scalar("SELECT MAX(id) FROM orders WHERE user_id = $1")
        .bind(user_id)
        .fetch_one(db)
        .await?;
    Ok(last.unwrap_or(0))
}

/// One order of this user; another user's order is `None`, like an unknown id.
pub async fn find_for_user(db: &Db, user_id: i64, order_id: i64) -> sqlx::Result<Option<Order>> {
    sqlx::query_as(&format!(
        "SELECT {ORDER_COLUMNS} FROM orders WHERE id = $1 AND user_id = $2"
    ))
    .bind(order_id)
    .bind(user_id)
    .fetch_optional(db)
    .await
}

pub async fn lines(db: &Db, order_id: i64) -> sqlx::Result<Vec<OrderLine>> {
    sqlx::query_as(
        "SELECT product_id, product_name, product_slug, image, unit_price_cents, quantity \
         FROM order_lines WHERE order_id = $1 ORDER BY product_id",
    )
    .bind(order_id)
    .fetch_all(db)
    .await
}

/// Most orders the list shows.
pub const LIST_LIMIT: i64 = 100;

/// The user's orders, newest first.
pub async fn list_for_user(db: &Db, user_id: i64) -> sqlx::Result<Vec<OrderSummary>> {
    sqlx::query_as(
        "SELECT id, item_count, total_cents, created_at FROM orders \
         WHERE user_id = $1 ORDER BY created_at DESC, id DESC LIMIT $2",
    )
    .bind(user_id)
    .bind(LIST_LIMIT)
    .fetch_all(db)
    .await
}

/// The address of the user's latest order, to fill in the next checkout form.
pub async fn latest_shipping(db: &Db, user_id: i64) -> sqlx::Result<Option<Shipping>> {
    let order: Option<Order> = sqlx::query_as(&format!(
        "SELECT {ORDER_COLUMNS} FROM orders WHERE user_id = $1 \
         ORDER BY created_at DESC, id DESC LIMIT 1"
    ))
    .bind(user_id)
    .fetch_optional(db)
    .await?;
    Ok(order.map(|o| o.shipping()))
}
