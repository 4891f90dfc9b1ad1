-- Product categories for the catalog filter. The slug is stored; the names people
-- read are in src/catalog/mod.rs (CATEGORIES).

ALTER TABLE products ADD COLUMN category TEXT NOT NULL DEFAULT 'accessories';

UPDATE products SET category = 'teaware'
    WHERE slug IN ('blue-teapot', 'cast-iron-kettle', 'porcelain-cup-set', 'glass-infuser', 'ceramic-milk-jug');
UPDATE products SET category = 'tea'
    WHERE slug IN ('loose-leaf-sencha', 'earl-grey-tin', 'honey-jar');
UPDATE products SET category = 'accessories'
    WHERE slug IN ('bamboo-whisk', 'linen-tea-towel', 'knitted-tea-cosy', 'oak-serving-tray');
