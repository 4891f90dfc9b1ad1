-- Users and products live in SQLite; sessions and carts live in Redis.

CREATE TABLE users (
    id            INTEGER PRIMARY KEY,
    -- Stored lower-cased; NOCASE makes the uniqueness case-insensitive even so.
    username      TEXT    NOT NULL UNIQUE COLLATE NOCASE,
    password_hash TEXT    NOT NULL,
    created_at    INTEGER NOT NULL DEFAULT (unixepoch())
);

CREATE TABLE products (
    id          INTEGER PRIMARY KEY,
    slug        TEXT    NOT NULL UNIQUE,
    name        TEXT    NOT NULL,
    description TEXT    NOT NULL,
    price_cents INTEGER NOT NULL CHECK (price_cents > 0),
    -- File name under static/products/.
    image       TEXT    NOT NULL
);
