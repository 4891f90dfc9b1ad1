-- Checkout asks for more of what a real shop needs: an email address for the
-- receipt, an optional phone number, a second address line, and the region
-- (state, province or territory) in the countries whose addresses name one.
-- Orders placed before have none of these: they stay empty strings, and the
-- order page shows only what an order has.

ALTER TABLE orders ADD COLUMN email    TEXT NOT NULL DEFAULT '';
ALTER TABLE orders ADD COLUMN phone    TEXT NOT NULL DEFAULT '';
ALTER TABLE orders ADD COLUMN address2 TEXT NOT NULL DEFAULT '';
ALTER TABLE orders ADD COLUMN region   TEXT NOT NULL DEFAULT '';
