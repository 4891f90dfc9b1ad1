-- Orders: what a shopper bought, with the price of each line at order time.
-- Portable SQL (SQLite and Postgres): INTEGER cents, unix seconds, no SQLite-only syntax.

CREATE TABLE orders (
    id              INTEGER PRIMARY KEY,
    user_id         INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    -- The checkout form's one-time submission id: a retried or doubled POST of the
    -- same form finds this row instead of writing a second order.
    idempotency_key TEXT    NOT NULL UNIQUE,
    status          TEXT    NOT NULL DEFAULT 'placed',
    name            TEXT    NOT NULL,
    address         TEXT    NOT NULL,
    city            TEXT    NOT NULL,
    postcode        TEXT    NOT NULL,
    country         TEXT    NOT NULL,
    item_count      INTEGER NOT NULL CHECK (item_count > 0),
    total_cents     INTEGER NOT NULL CHECK (total_cents > 0),
    created_at      INTEGER NOT NULL
);

CREATE INDEX orders_by_user ON orders (user_id, created_at, id);

CREATE TABLE order_lines (
    order_id         INTEGER NOT NULL REFERENCES orders (id) ON DELETE CASCADE,
    product_id       INTEGER NOT NULL,
    -- Copied from the catalog at order time: the order keeps saying what was bought.
    product_name     TEXT    NOT NULL,
    product_slug     TEXT    NOT NULL,
    image            TEXT    NOT NULL,
    unit_price_cents INTEGER NOT NULL CHECK (unit_price_cents > 0),
    quantity         INTEGER NOT NULL CHECK (quantity > 0),
    PRIMARY KEY (order_id, product_id)
);
