-- One order per cart. Every checkout page carries, besides its own one-time id,
-- the shopper's latest order when the page was shown: two pages of the same cart
-- (two tabs) carry the same one. The order stores that as its cart key
-- ('u<user id>:after:<latest order id or 0>'), UNIQUE: whichever of two such pages
-- commits second is refused by the index, on any replica, at any moment, and is
-- told the cart was already ordered. Orders from before this migration have none
-- (NULL, which UNIQUE allows any number of).
ALTER TABLE orders ADD COLUMN cart_key TEXT;
CREATE UNIQUE INDEX orders_once_per_cart ON orders (cart_key);
