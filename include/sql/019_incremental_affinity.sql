-- 019: the weekly co-purchase counts follow the changed customers (issue 22), as the 360 does (018).
-- Each 360 row keeps the cuvées and grapes the customer bought up to its date; each scoring date
-- keeps its co-purchase counts before the product_affinity threshold (item pairs, and each item on
-- the diagonal), summed over that date's 360 rows. A later scoring takes them, removes the rows it
-- does not carry over and adds the ones it computes, instead of pairing a million lines again.
-- Erased customers (no 360 row) still count: their share is added from their lines each time.

ALTER TABLE crm.customer_360 ADD COLUMN cuvees text[], ADD COLUMN grapes text[];
COMMENT ON COLUMN crm.customer_360.cuvees IS
    'distinct cuvées (crm.articles.cuvee, else the article) of the customer''s sales up to as_of_date, sorted: the co-purchase counts'' basket';
COMMENT ON COLUMN crm.customer_360.grapes IS
    'distinct grapes of the customer''s sales up to as_of_date, sorted';

CREATE TABLE crm.affinity_counts (
    as_of_date date NOT NULL,
    level      text NOT NULL,
    item_a     text NOT NULL,
    item_b     text NOT NULL,      -- item_b = item_a: the customers who bought the item
    customers  integer NOT NULL,
    PRIMARY KEY (as_of_date, level, item_a, item_b)
);
COMMENT ON TABLE crm.affinity_counts IS
    'per scoring date, the customers of that date''s 360 rows who bought both items (unthresholded; no customer named): the next scoring''s starting point';

-- how many 360 rows the date's counts sum (NULL: none kept); a later scoring uses them only while
-- the date still has exactly that many rows (an erasure deletes a customer's rows of every date)
ALTER TABLE crm.customer_360_basis ADD COLUMN affinity_customers integer;

-- rows written before this migration have no baskets: the next scoring computes every customer
DELETE FROM crm.customer_360_basis;
