-- Customer scoring as of %(as_of)s, from the sales known up to that date. Parameters come from
-- include/config/scoring.yaml (see winecrm/scoring.py). Rerunning a date replaces its rows.

-- The lines' fingerprints first: the chance to buy, read and fitted in a thread beside the steps
-- below, takes the unchanged customers' sales from the previous scoring by them (sales_cache.py).

-- step: drop_360_worktables
DROP TABLE IF EXISTS pg_temp.scoring_basis, pg_temp.scoring_fingerprints, pg_temp.scoring_reference,
                     pg_temp.scoring_recompute;

-- step: line_fingerprints
-- One pass over the lines the 360 counts; a changed, added, removed or moved line changes the sum.
-- Each line's hash chains its columns' hashes, each the seed of the next (every column is NOT
-- NULL): 0.14 of the 0.28 s that hashing the line as a record took on a million lines.
CREATE TEMP TABLE scoring_fingerprints ON COMMIT DROP AS
SELECT client_code,
       sum(hash_numeric_extended(mt_ht, hash_numeric_extended(qty_line, hashtextextended(article,
           hashint4extended(date_livraison - DATE '2000-01-01', hashtextextended(document_no,
           hashtextextended(document_type, 0)))))))
           AS fingerprint
FROM etl.ventes_lignes
WHERE date_livraison <= %(as_of)s AND document_type = ANY(%(counted_types)s)
GROUP BY client_code;

-- step: forget_previous
DELETE FROM crm.lead_scores WHERE as_of_date = %(as_of)s;
-- step: forget_previous_rfm
DELETE FROM crm.rfm_scores WHERE as_of_date = %(as_of)s;
-- step: forget_previous_360
DELETE FROM crm.customer_360 WHERE as_of_date = %(as_of)s;

-- step: forget_articles
-- The item model (migration 007): every article of the catalogue, the sales and the stock, with
-- its cuvée, vintage and format, from the current catalogue.
DELETE FROM crm.articles;

-- step: articles
INSERT INTO crm.articles (article, produit, cuvee, cuvee_from, millesime, pack, unit_cl, bottles, format_fr,
                          taste, taste_kind, in_catalogue, computed_run)
WITH known AS (
    SELECT coalesce(p.article, s.article, k.article) AS article, p.article IS NOT NULL AS in_catalogue,
           coalesce(p.produit, s.label, p.article, s.article, k.article) AS produit,
           p.cuvee, p.famille_crm, p.contenance, p.cepage, p.couleur,
           coalesce(nullif(p.millesime, 0), nullif(k.millesime, 0),
                    (regexp_match(coalesce(p.produit, s.label), '\m((?:19|20)\d\d)\M'))[1]::int) AS millesime
    FROM etl.produits p
    FULL JOIN (SELECT article, max(produit_label) AS label FROM etl.ventes_lignes GROUP BY article) s
           ON s.article = p.article
    FULL JOIN (SELECT article, max(millesime) AS millesime FROM etl.stock GROUP BY article) k
           ON k.article = coalesce(p.article, s.article)
),
parsed AS (
    -- the catalogue's `contenance` first, on its own; the label for what it does not say
    SELECT k.*, crm.article_pack(k.contenance, k.produit) AS pack,
           crm.article_unit_cl(k.contenance, k.produit, k.article) AS unit_cl,
           CASE WHEN k.cepage ~* '(assemblage|blend|m[ée]lange|cuv[ée]e)' THEN NULL ELSE nullif(btrim(k.cepage), '') END AS grape,
           crm.wine_cuvee(k.cuvee, k.famille_crm, k.produit, k.article) AS named,
           CASE WHEN nullif(btrim(k.cuvee), '') IS NOT NULL THEN 'cuvee'
                WHEN nullif(btrim(k.famille_crm), '') IS NOT NULL THEN 'famille_crm'
                WHEN crm.wine_label_cuvee(k.produit) IS NOT NULL AND k.produit IS DISTINCT FROM k.article THEN 'label'
                ELSE 'article' END AS cuvee_from
    FROM known k
),
keyed AS (
    -- one cuvée however its articles write it (« Riesling », « RIESLING 6 bouteilles »):
    -- names with the same key (crm.wine_cuvee_key) are one wine, named as the most deliberate
    -- source writes it (cuvee column, then famille_crm, then labels), then as most articles do
    SELECT p.*, coalesce(crm.wine_cuvee_key(p.named), p.named) AS cuvee_key,
           count(*) OVER (PARTITION BY p.named) AS written_so
    FROM parsed p
)
SELECT article, produit,
       first_value(named) OVER (PARTITION BY cuvee_key
                                ORDER BY array_position(ARRAY['cuvee', 'famille_crm', 'label', 'article'], cuvee_from),
                                         written_so DESC, named),
       cuvee_from, millesime, pack, unit_cl, round(pack * unit_cl / 75, 2), crm.wine_format_fr(pack, unit_cl),
       coalesce(grape, nullif(btrim(couleur), '')),
       CASE WHEN grape IS NOT NULL THEN 'grape' WHEN nullif(btrim(couleur), '') IS NOT NULL THEN 'colour' END,
       in_catalogue, %(run_id)s
FROM keyed;

-- step: analyze_articles
ANALYZE crm.articles;

-- The 360 is incremental (migration 018): a customer whose counted lines up to the date are the
-- ones a scoring with the same basis read keeps that scoring's row (contact columns refreshed);
-- the others are computed from their lines. Any scoring date will do as the reference, earlier
-- or later: equal fingerprints over lines <= as_of mean the same lines.

-- step: basis_360
-- What every 360 row reads besides the customer's own lines: each article's family, grape,
-- colour, bottles and cuvée, the revenue parameters, and this file's own text (a changed query
-- recomputes everyone).
CREATE TEMP TABLE scoring_basis ON COMMIT DROP AS
SELECT md5(concat_ws(E'\n', %(queries_version)s::text, %(sale_types)s::text, %(counted_types)s::text,
                     (SELECT string_agg(concat_ws('|', a.article, a.bottles, a.cuvee, p.famille_crm, p.cepage, p.couleur),
                                        E'\n' ORDER BY a.article)
                      FROM crm.articles a LEFT JOIN etl.produits p ON p.article = a.article))) AS basis;

-- step: reference_360
-- The latest scoring computed on the same basis (none: every customer is computed).
CREATE TEMP TABLE scoring_reference ON COMMIT DROP AS
SELECT b.as_of_date
FROM crm.customer_360_basis b
JOIN scoring_basis s ON s.basis = b.basis
WHERE b.as_of_date <> %(as_of)s
ORDER BY b.computed_at DESC, b.as_of_date DESC
LIMIT 1;

-- step: recompute_360
CREATE TEMP TABLE scoring_recompute ON COMMIT DROP AS
SELECT f.client_code
FROM scoring_fingerprints f
WHERE NOT EXISTS (SELECT 1 FROM crm.customer_360 p JOIN scoring_reference r ON r.as_of_date = p.as_of_date
                  WHERE p.client_code = f.client_code AND p.lines_fingerprint = f.fingerprint);

-- step: carry_360
-- Unchanged customers: the reference's facts, today's address, consent and suppression.
INSERT INTO crm.customer_360 (
    as_of_date, client_code, first_purchase, last_purchase, orders, bottles, revenue_ht, avg_basket_ht,
    favourite_family, favourite_grape, favourite_colour, families_bought, typical_days_between_orders,
    email, email_valid, opted_out, suppressed, lines_fingerprint, cuvees, grapes, computed_run)
SELECT %(as_of)s, p.client_code, p.first_purchase, p.last_purchase, p.orders, p.bottles, p.revenue_ht,
       p.avg_basket_ht, p.favourite_family, p.favourite_grape, p.favourite_colour, p.families_bought,
       p.typical_days_between_orders,
       c.email, c.email_valid, coalesce(c.opt_out, false), (s.email IS NOT NULL), p.lines_fingerprint,
       p.cuvees, p.grapes, %(run_id)s
FROM crm.customer_360 p
JOIN scoring_reference r ON r.as_of_date = p.as_of_date
JOIN scoring_fingerprints f ON f.client_code = p.client_code AND f.fingerprint = p.lines_fingerprint
LEFT JOIN etl.clients c ON c.client_code = p.client_code
LEFT JOIN crm.suppressions s ON s.email = c.email
WHERE NOT EXISTS (SELECT 1 FROM crm.erased_clients e WHERE e.client_code = p.client_code);

-- step: customer_360
INSERT INTO crm.customer_360 (
    as_of_date, client_code, first_purchase, last_purchase, orders, bottles, revenue_ht, avg_basket_ht,
    favourite_family, favourite_grape, favourite_colour, families_bought, typical_days_between_orders,
    email, email_valid, opted_out, suppressed, lines_fingerprint, cuvees, grapes, computed_run)
WITH lines AS (
    SELECT v.client_code, v.document_type, v.document_no, v.date_livraison, v.mt_ht,
           p.famille_crm, p.cepage, p.couleur, coalesce(a.cuvee, v.article) AS cuvee,
           -- 75 cl equivalents (crm.articles): a magnum is 2, a case of N bottles is N
           v.qty_line * coalesce(a.bottles, 1) AS bottles
    FROM etl.ventes_lignes v
    LEFT JOIN etl.produits p ON p.article = v.article
    LEFT JOIN crm.articles a ON a.article = v.article
    -- only sales and credit notes count (pipeline.yaml, revenue): a delivery note (BL) and the
    -- invoice of the same sale must not both add to revenue and orders
    WHERE v.date_livraison <= %(as_of)s AND v.document_type = ANY(%(counted_types)s)
      AND v.client_code IN (SELECT client_code FROM scoring_recompute)
),
orders AS (
    SELECT client_code, document_no, min(date_livraison) AS order_date
    FROM lines
    WHERE document_type = ANY(%(sale_types)s)
    GROUP BY client_code, document_no
),
order_gaps AS (
    SELECT client_code, percentile_cont(0.5) WITHIN GROUP (ORDER BY gap) AS median_gap
    FROM (
        SELECT client_code, order_date - lag(order_date) OVER (PARTITION BY client_code ORDER BY order_date) AS gap
        FROM (SELECT DISTINCT client_code, order_date FROM orders) d
    ) g
    WHERE gap IS NOT NULL
    GROUP BY client_code
),
totals AS (
    SELECT l.client_code,
           min(l.date_livraison) FILTER (WHERE l.document_type = ANY(%(sale_types)s)) AS first_purchase,
           max(l.date_livraison) FILTER (WHERE l.document_type = ANY(%(sale_types)s)) AS last_purchase,
           sum(l.bottles) AS bottles,
           sum(l.mt_ht) AS revenue_ht,
           count(DISTINCT l.famille_crm) AS families_bought,
           -- the basket the co-purchase counts pair (sales only, as the orders)
           array_agg(DISTINCT l.cuvee) FILTER (WHERE l.document_type = ANY(%(sale_types)s)) AS cuvees,
           array_agg(DISTINCT l.cepage) FILTER (WHERE l.document_type = ANY(%(sale_types)s)
                                                AND l.cepage IS NOT NULL) AS grapes
    FROM lines l
    GROUP BY l.client_code
),
order_counts AS (
    SELECT client_code, count(*) AS orders FROM orders GROUP BY client_code
),
favourite AS (
    SELECT DISTINCT ON (client_code, dimension) client_code, dimension, value
    FROM (
        SELECT client_code, 'family' AS dimension, famille_crm AS value, sum(mt_ht) AS revenue FROM lines
        WHERE famille_crm IS NOT NULL GROUP BY 1, 2, 3
        UNION ALL
        SELECT client_code, 'grape', cepage, sum(mt_ht) FROM lines WHERE cepage IS NOT NULL GROUP BY 1, 2, 3
        UNION ALL
        SELECT client_code, 'colour', couleur, sum(mt_ht) FROM lines WHERE couleur IS NOT NULL GROUP BY 1, 2, 3
    ) r
    ORDER BY client_code, dimension, revenue DESC, value
)
SELECT %(as_of)s, t.client_code, t.first_purchase, t.last_purchase, coalesce(o.orders, 0),
       round(t.bottles, 2), round(t.revenue_ht, 2),
       round(t.revenue_ht / nullif(o.orders, 0), 2),
       ff.value, fg.value, fc.value, t.families_bought, round(g.median_gap::numeric, 1),
       c.email, c.email_valid, coalesce(c.opt_out, false),
       (s.email IS NOT NULL), f.fingerprint, coalesce(t.cuvees, '{}'), coalesce(t.grapes, '{}'), %(run_id)s
FROM totals t
JOIN scoring_fingerprints f ON f.client_code = t.client_code
LEFT JOIN order_counts o ON o.client_code = t.client_code
LEFT JOIN order_gaps g ON g.client_code = t.client_code
LEFT JOIN favourite ff ON ff.client_code = t.client_code AND ff.dimension = 'family'
LEFT JOIN favourite fg ON fg.client_code = t.client_code AND fg.dimension = 'grape'
LEFT JOIN favourite fc ON fc.client_code = t.client_code AND fc.dimension = 'colour'
LEFT JOIN etl.clients c ON c.client_code = t.client_code
LEFT JOIN crm.suppressions s ON s.email = c.email
-- a customer erased on request (GDPR, crm.erasures) is not profiled again: no 360, hence no RFM,
-- lead score, chance to buy or recommendation; their sales lines still count in revenue
-- (anonymously) and in the co-purchase counts below, which name no customer
WHERE NOT EXISTS (SELECT 1 FROM crm.erased_clients e WHERE e.client_code = t.client_code);

-- step: record_basis_360
INSERT INTO crm.customer_360_basis (as_of_date, basis, computed_run)
SELECT %(as_of)s, basis, %(run_id)s FROM scoring_basis
ON CONFLICT (as_of_date) DO UPDATE SET basis = EXCLUDED.basis, computed_run = EXCLUDED.computed_run,
                                       computed_at = now();

-- step: analyze_360
-- Fresh statistics: the next steps (and the recommendations) join on what was just written
-- (the date's and the customers' columns; migration 020).
SELECT crm.analyze_new_date('crm.customer_360', ARRAY['as_of_date', 'client_code']);

-- step: rfm
-- Quartile scores use percent_rank, so tied customers (e.g. every one-order customer) share a
-- score and the lowest group always scores 1. With method = fixed, the boundaries apply.
INSERT INTO crm.rfm_scores (as_of_date, client_code, recency_days, frequency, monetary,
                            r_score, f_score, m_score, rfm_score, segment, computed_run)
WITH base AS (
    SELECT client_code, (%(as_of)s::date - last_purchase) AS recency_days, orders AS frequency,
           revenue_ht AS monetary
    FROM crm.customer_360 c
    WHERE as_of_date = %(as_of)s AND orders > 0
      AND NOT EXISTS (SELECT 1 FROM crm.erased_clients e WHERE e.client_code = c.client_code)
),
scored AS (
    SELECT b.*,
           CASE WHEN %(method)s = 'fixed' THEN
                    CASE WHEN recency_days <= %(r_days_4)s THEN 4 WHEN recency_days <= %(r_days_3)s THEN 3
                         WHEN recency_days <= %(r_days_2)s THEN 2 ELSE 1 END
                ELSE least(4, 1 + floor(4 * percent_rank() OVER (ORDER BY recency_days DESC)))::int END AS r_score,
           CASE WHEN %(method)s = 'fixed' THEN
                    CASE WHEN frequency >= %(f_orders_4)s THEN 4 WHEN frequency >= %(f_orders_3)s THEN 3
                         WHEN frequency >= %(f_orders_2)s THEN 2 ELSE 1 END
                ELSE least(4, 1 + floor(4 * percent_rank() OVER (ORDER BY frequency)))::int END AS f_score,
           CASE WHEN %(method)s = 'fixed' THEN
                    CASE WHEN monetary >= %(m_revenue_4)s THEN 4 WHEN monetary >= %(m_revenue_3)s THEN 3
                         WHEN monetary >= %(m_revenue_2)s THEN 2 ELSE 1 END
                ELSE least(4, 1 + floor(4 * percent_rank() OVER (ORDER BY monetary)))::int END AS m_score
    FROM base b
)
SELECT %(as_of)s, client_code, recency_days, frequency, monetary, r_score, f_score, m_score,
       round((r_score + f_score + m_score) / 3.0, 2),
       CASE WHEN recency_days > %(churn_days)s THEN 'Churn'
            WHEN round((r_score + f_score + m_score) / 3.0, 2) >= %(vip_min)s THEN 'VIP'
            WHEN round((r_score + f_score + m_score) / 3.0, 2) >= %(standard_min)s THEN 'Standard'
            ELSE 'At Risk' END,
       %(run_id)s
FROM scored;

-- step: analyze_rfm
SELECT crm.analyze_new_date('crm.rfm_scores', ARRAY['as_of_date', 'client_code']);

-- step: lead_scores
-- Engagement: the automation rules' score changes (crm.score_changes, from Brevo webhooks and
-- behaviour events) up to the as-of date, added up and capped; a backfill sees only the changes
-- of its own past.
INSERT INTO crm.lead_scores (as_of_date, client_code, base_points, rfm_points, engagement_points,
                             engagement_events, purchase_points, recency_penalty, raw_score, score, computed_run)
WITH engagement AS (
    SELECT client_code, count(*) AS events, sum(delta) AS points
    FROM crm.score_changes
    WHERE changed_at < (%(as_of)s::date + 1)::timestamp AT TIME ZONE 'Europe/Paris'
    GROUP BY client_code
), parts AS (
    SELECT r.client_code,
           %(base)s::int AS base_points,
           least(%(rfm_cap)s, %(per_rfm_point)s * r.rfm_score) AS rfm_points,
           coalesce(e.events, 0) AS engagement_events,
           least(%(engagement_cap)s, coalesce(e.points, 0)) AS engagement_points,
           least(%(purchase_cap)s, %(per_purchase)s * r.frequency) AS purchase_points,
           CASE WHEN r.recency_days <= 30 THEN 0 WHEN r.recency_days <= 90 THEN -5
                WHEN r.recency_days <= 180 THEN -15 ELSE -30 END AS recency_penalty
    FROM crm.rfm_scores r
    LEFT JOIN engagement e USING (client_code)
    WHERE r.as_of_date = %(as_of)s
      AND NOT EXISTS (SELECT 1 FROM crm.erased_clients x WHERE x.client_code = r.client_code)
)
SELECT %(as_of)s, client_code, base_points, rfm_points, engagement_points, engagement_events,
       purchase_points, recency_penalty,
       base_points + rfm_points + engagement_points + purchase_points + recency_penalty,
       greatest(0, least(100, base_points + rfm_points + engagement_points + purchase_points + recency_penalty)),
       %(run_id)s
FROM parts;

-- The co-purchase counts (migration 019) follow the changed customers as the 360 does: the
-- reference date's counts, minus the baskets of its 360 rows not carried over, plus the baskets
-- computed today; with no usable reference, the sum of every basket. An erasure deletes a
-- customer's rows of every date, so a reference is used only while it has all the rows its
-- counts summed.

-- step: drop_affinity_worktables
DROP TABLE IF EXISTS pg_temp.affinity_reference, pg_temp.affinity_erased;

-- step: affinity_reference
CREATE TEMP TABLE affinity_reference ON COMMIT DROP AS
SELECT r.as_of_date
FROM scoring_reference r
JOIN crm.customer_360_basis b ON b.as_of_date = r.as_of_date
WHERE b.affinity_customers = (SELECT count(*) FROM crm.customer_360 p WHERE p.as_of_date = r.as_of_date);

-- step: forget_previous_affinity_counts
DELETE FROM crm.affinity_counts WHERE as_of_date = %(as_of)s;

-- step: affinity_counts
INSERT INTO crm.affinity_counts (as_of_date, level, item_a, item_b, customers)
WITH baskets AS (
    SELECT d.cuvees, d.grapes, 1 AS sign
    FROM crm.customer_360 d
    WHERE d.as_of_date = %(as_of)s
      AND (d.client_code IN (SELECT client_code FROM scoring_recompute)
           OR NOT EXISTS (SELECT 1 FROM affinity_reference))
    UNION ALL
    SELECT p.cuvees, p.grapes, -1
    FROM crm.customer_360 p
    JOIN affinity_reference r ON r.as_of_date = p.as_of_date
    WHERE p.client_code IN (SELECT client_code FROM scoring_recompute)
       OR NOT EXISTS (SELECT 1 FROM crm.customer_360 d WHERE d.as_of_date = %(as_of)s AND d.client_code = p.client_code)
),
counts AS (
    -- every ordered pair of a basket, and each item with itself (its buyers)
    SELECT 'cuvee' AS level, a AS item_a, b AS item_b, sign AS customers FROM baskets, unnest(cuvees) a, unnest(cuvees) b
    UNION ALL
    SELECT 'grape', a, b, sign FROM baskets, unnest(grapes) a, unnest(grapes) b
    UNION ALL
    SELECT c.level, c.item_a, c.item_b, c.customers
    FROM crm.affinity_counts c JOIN affinity_reference r ON r.as_of_date = c.as_of_date
)
SELECT %(as_of)s, level, item_a, item_b, sum(customers)
FROM counts
GROUP BY level, item_a, item_b
HAVING sum(customers) <> 0;

-- step: record_affinity_basis
UPDATE crm.customer_360_basis
SET affinity_customers = (SELECT count(*) FROM crm.customer_360 WHERE as_of_date = %(as_of)s)
WHERE as_of_date = %(as_of)s;

-- step: affinity_erased
-- Erased customers have no 360 row; their lines still count, named nowhere.
CREATE TEMP TABLE affinity_erased ON COMMIT DROP AS
SELECT array_agg(DISTINCT coalesce(a.cuvee, v.article)) AS cuvees,
       coalesce(array_agg(DISTINCT p.cepage) FILTER (WHERE p.cepage IS NOT NULL), '{}') AS grapes
FROM etl.ventes_lignes v
LEFT JOIN etl.produits p ON p.article = v.article
LEFT JOIN crm.articles a ON a.article = v.article
WHERE v.date_livraison <= %(as_of)s AND v.document_type = ANY(%(sale_types)s)
  AND v.client_code IN (SELECT client_code FROM crm.erased_clients)
GROUP BY v.client_code;

-- step: forget_previous_affinity
DELETE FROM crm.product_affinity WHERE as_of_date = %(as_of)s;

-- step: product_affinity
INSERT INTO crm.product_affinity (as_of_date, level, item_a, item_b, customers_a, customers_b, customers_both,
                                  support, confidence, jaccard, computed_run)
WITH counts AS (
    SELECT level, item_a, item_b, sum(customers) AS customers
    FROM (
        SELECT level, item_a, item_b, customers FROM crm.affinity_counts WHERE as_of_date = %(as_of)s
        UNION ALL
        SELECT 'cuvee', a, b, 1 FROM affinity_erased, unnest(cuvees) a, unnest(cuvees) b
        UNION ALL
        SELECT 'grape', a, b, 1 FROM affinity_erased, unnest(grapes) a, unnest(grapes) b
    ) c
    GROUP BY level, item_a, item_b
),
item_customers AS (
    SELECT level, item_a AS item, customers FROM counts WHERE item_a = item_b
),
buyers AS (
    -- customers with at least one sale up to the date
    SELECT (SELECT count(*) FROM crm.customer_360 WHERE as_of_date = %(as_of)s AND cardinality(cuvees) > 0)
           + (SELECT count(*) FROM affinity_erased) AS n
),
pairs AS (
    SELECT level, item_a, item_b, customers AS both_customers
    FROM counts
    WHERE item_a <> item_b AND customers >= %(min_pair_customers)s
)
SELECT %(as_of)s, p.level, p.item_a, p.item_b, ca.customers, cb.customers, p.both_customers,
       round(p.both_customers::numeric / buyers.n, 6),
       round(p.both_customers::numeric / ca.customers, 6),
       round(p.both_customers::numeric / (ca.customers + cb.customers - p.both_customers), 6),
       %(run_id)s
FROM pairs p
CROSS JOIN buyers
JOIN item_customers ca ON ca.level = p.level AND ca.item = p.item_a
JOIN item_customers cb ON cb.level = p.level AND cb.item = p.item_b;

-- step: analyze_affinity
ANALYZE crm.product_affinity;

