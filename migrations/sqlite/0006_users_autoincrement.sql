-- User ids are never handed out twice. Without AUTOINCREMENT SQLite gives a new
-- row max(id) + 1, so deleting the newest account let the next registration take
-- its id, and anything still keyed by that number (a session, a cart in Redis)
-- would have pointed at a stranger. AUTOINCREMENT keeps the highest id ever used
-- in sqlite_sequence and always goes past it.
--
-- SQLite cannot add AUTOINCREMENT to a table: the table is rebuilt. A migration
-- runs inside a transaction, where foreign keys cannot be switched off, and
-- dropping `users` with them on would delete every order (ON DELETE CASCADE).
-- So the tables that point at `users` are rebuilt with it, children first out
-- and parents first in: nothing references the old `users` when it is dropped,
-- and each RENAME points the new children at the renamed parent.

CREATE TABLE users_new (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    -- Stored lower-cased; NOCASE makes the uniqueness case-insensitive even so.
    username      TEXT    NOT NULL UNIQUE COLLATE NOCASE,
    password_hash TEXT    NOT NULL,
    created_at    INTEGER NOT NULL DEFAULT (unixepoch()),
    submission    TEXT
);
INSERT INTO users_new (id, username, password_hash, created_at, submission)
    SELECT id, username, password_hash, created_at, submission FROM users;

CREATE TABLE orders_new (
    id              INTEGER PRIMARY KEY,
    user_id         INTEGER NOT NULL REFERENCES users_new (id) ON DELETE CASCADE,
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
INSERT INTO orders_new SELECT id, user_id, idempotency_key, status, name, address, city,
    postcode, country, item_count, total_cents, created_at FROM orders;

CREATE TABLE order_lines_new (
    order_id         INTEGER NOT NULL REFERENCES orders_new (id) ON DELETE CASCADE,
    product_id       INTEGER NOT NULL,
    product_name     TEXT    NOT NULL,
    product_slug     TEXT    NOT NULL,
    image            TEXT    NOT NULL,
    unit_price_cents INTEGER NOT NULL CHECK (unit_price_cents > 0),
    quantity         INTEGER NOT NULL CHECK (quantity > 0),
    PRIMARY KEY (order_id, product_id)
);
INSERT INTO order_lines_new SELECT order_id, product_id, product_name, product_slug, image,
    unit_price_cents, quantity FROM order_lines;

DROP TABLE order_lines;
DROP TABLE orders;
DROP TABLE users;
ALTER TABLE users_new RENAME TO users;
ALTER TABLE orders_new RENAME TO orders;
ALTER TABLE order_lines_new RENAME TO order_lines;

CREATE UNIQUE INDEX users_submission ON users (submission);
CREATE INDEX orders_by_user ON orders (user_id, created_at, id);
