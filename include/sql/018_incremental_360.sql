-- 018: the weekly customer 360 recomputes only the customers whose lines changed (issue 22).
-- A week adds a few thousand sales lines to a history of a million; the other customers' 360
-- rows are the same as at the previous scoring. Each row keeps a fingerprint of the lines it was
-- computed from, and each scoring date the basis every row shared (the catalogue facts the 360
-- reads, the revenue parameters, the query's own text). A later scoring with the same basis
-- carries a customer's row over when their fingerprint is unchanged, and recomputes the others.

ALTER TABLE crm.customer_360 ADD COLUMN lines_fingerprint numeric;
COMMENT ON COLUMN crm.customer_360.lines_fingerprint IS
    'sum of the 64-bit hashes of the customer''s counted sales lines dated <= as_of_date (type, number, date, article, quantity, amount): equal sums, same lines';

CREATE TABLE crm.customer_360_basis (
    as_of_date   date PRIMARY KEY,
    basis        text NOT NULL,     -- md5 of what every row of the date read besides the customer's own lines
    computed_run text NOT NULL,
    computed_at  timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE crm.customer_360_basis IS
    'per scoring date, what its customer 360 rows were computed against besides each customer''s lines: a later date with the same basis may carry unchanged customers'' rows over';
