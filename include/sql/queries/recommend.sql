-- Recommendations as of %(as_of)s, from crm.customer_360 / crm.rfm_scores / crm.product_affinity
-- of the same date (run score_customers.sql first). Rules: include/config/scoring.yaml.

-- step: forget_previous
DELETE FROM crm.recommendations WHERE as_of_date = %(as_of)s;
-- step: forget_previous_exclusions
DELETE FROM crm.recommendation_exclusions WHERE as_of_date = %(as_of)s;

-- step: customers
-- Every scored customer, its scenario, and the first guard-rail it fails (NULL = eligible).
CREATE TEMP TABLE rec_customers ON COMMIT DROP AS
SELECT r.client_code, r.segment, c.revenue_ht, c.orders, c.typical_days_between_orders,
       CASE r.segment WHEN 'VIP' THEN %(scenario_vip)s WHEN 'Standard' THEN %(scenario_standard)s
                      WHEN 'At Risk' THEN %(scenario_at_risk)s ELSE %(scenario_churn)s END AS scenario,
       CASE WHEN c.email IS NULL OR c.email_valid IS NOT TRUE THEN 'invalid_email'
            WHEN c.suppressed THEN 'suppressed'
            WHEN c.opted_out THEN 'opted_out'
            WHEN EXISTS (SELECT 1 FROM crm.email_sends s
                         WHERE s.client_code = r.client_code AND s.status = 'sent'
                           AND s.sent_at::date > %(as_of)s::date - %(silence_days)s
                           AND s.sent_at::date <= %(as_of)s) THEN 'silence_window'
            WHEN r.segment = 'Churn' AND c.revenue_ht < %(winback_min_revenue)s THEN 'winback_min_revenue'
       END AS excluded_because
FROM crm.rfm_scores r
JOIN crm.customer_360 c ON c.as_of_date = r.as_of_date AND c.client_code = r.client_code
WHERE r.as_of_date = %(as_of)s;

-- step: analyze_customers
ANALYZE rec_customers;

-- step: in_stock
-- What can be proposed: articles in stock, with how many customers bought each in the year
-- before the date (popularity inside a family, for the taste-profile part of cross-sell).
CREATE TEMP TABLE rec_in_stock ON COMMIT DROP AS
WITH buyers AS (
    SELECT article, count(DISTINCT client_code) AS buyers
    FROM etl.ventes_lignes
    WHERE document_type = ANY(%(sale_types)s) AND date_livraison > %(as_of)s::date - 365 AND date_livraison <= %(as_of)s
    GROUP BY article
)
SELECT s.article, coalesce(p.produit, s.article) AS produit, p.famille_crm, coalesce(b.buyers, 0) AS buyers
FROM etl.stock s
LEFT JOIN etl.produits p ON p.article = s.article
LEFT JOIN buyers b ON b.article = s.article
GROUP BY s.article, p.produit, p.famille_crm, b.buyers
HAVING sum(s.quantite) > 0;

-- The ranking steps below (history .. candidates) read only rec_customers and rec_in_stock:
-- the backtest (winecrm/backtest.py) builds those two itself and runs these same steps.

-- step: analyze_in_stock
ANALYZE rec_in_stock;

-- step: history
-- What each eligible customer bought, per article, as of the date: how many orders, when last,
-- and a recency-weighted count. Above a floor, an order's weight halves every
-- `recency_half_life_cycles` of the customer's own order cycles (median days between their
-- orders): a weekly shopper's habits move in weeks, a once-a-year wine buyer's in years.
CREATE TEMP TABLE rec_history ON COMMIT DROP AS
SELECT o.client_code, o.article, count(*) AS orders_with_article, max(o.bought) AS last_bought,
       sum(%(recency_floor)s + (1 - %(recency_floor)s) * exp(-ln(2) * (%(as_of)s::date - o.bought) / o.half_life_days))
           AS weight
FROM (
    SELECT v.client_code, v.article, v.document_no, min(v.date_livraison) AS bought,
           %(recency_half_life_cycles)s
               * greatest(coalesce(min(c.typical_days_between_orders), 365), 7)::float8 AS half_life_days
    FROM etl.ventes_lignes v
    JOIN rec_customers c ON c.client_code = v.client_code AND c.excluded_because IS NULL
    WHERE v.date_livraison <= %(as_of)s AND v.document_type = ANY(%(sale_types)s)
    GROUP BY v.client_code, v.article, v.document_no
) o
GROUP BY o.client_code, o.article;

-- step: index_history
CREATE INDEX ON rec_history (client_code, article);

-- step: analyze_history
ANALYZE rec_history;

-- step: taste
-- Taste profile of the cross-sell customers: each family's share of their (recency-weighted) orders.
CREATE TEMP TABLE rec_taste ON COMMIT DROP AS
SELECT h.client_code, p.famille_crm, sum(h.weight) / sum(sum(h.weight)) OVER (PARTITION BY h.client_code) AS share
FROM rec_history h
JOIN rec_customers c ON c.client_code = h.client_code AND c.scenario = 'cross_sell'
JOIN etl.produits p ON p.article = h.article
WHERE p.famille_crm IS NOT NULL
GROUP BY h.client_code, p.famille_crm;

-- step: neighbours
-- Item-to-item neighbours for cross-sell: the most similar in-stock articles of each article,
-- capped per article as in any item-kNN recommender. Similarity (scoring.yaml): cosine
-- (both / sqrt(a * b)), jaccard, or confidence (both / a).
CREATE TEMP TABLE rec_neighbours ON COMMIT DROP AS
SELECT item_a, item_b, similarity
FROM (
    SELECT a.item_a, a.item_b, n.similarity,
           row_number() OVER (PARTITION BY a.item_a ORDER BY n.similarity DESC, a.item_b) AS k
    FROM crm.product_affinity a
    JOIN rec_in_stock s ON s.article = a.item_b
    CROSS JOIN LATERAL (SELECT CASE %(similarity)s
        WHEN 'jaccard' THEN a.jaccard::float8
        WHEN 'confidence' THEN a.confidence::float8
        ELSE a.customers_both / sqrt(a.customers_a::float8 * a.customers_b) END AS similarity) n
    WHERE a.as_of_date = %(as_of)s AND a.level = 'article'
) n
WHERE k <= %(neighbours_per_article)s;

-- step: cross_sell_pairs
-- (customer, never-bought article, bought article it resembles, similarity x that article's weight)
CREATE TEMP TABLE rec_cross_sell ON COMMIT DROP AS
SELECT h.client_code, n.item_b AS article, h.article AS source_article, n.similarity * h.weight AS strength
FROM rec_history h
JOIN rec_customers c ON c.client_code = h.client_code AND c.scenario = 'cross_sell'
JOIN rec_neighbours n ON n.item_a = h.article
LEFT JOIN rec_history already ON already.client_code = h.client_code AND already.article = n.item_b
WHERE already.client_code IS NULL;

-- step: index_cross_sell
CREATE INDEX ON rec_cross_sell (client_code, article, strength DESC, source_article);

-- step: analyze_cross_sell
ANALYZE rec_cross_sell;

-- step: candidates
CREATE TEMP TABLE rec_candidates ON COMMIT DROP AS
-- rebuy and win-back: the customer's own articles by recency-weighted order count, optionally
-- boosted when their usual time between orders has passed since they last took it.
SELECT h.client_code, h.article, s.produit,
       h.weight * (1 + %(due_boost)s * least(1.0, (%(as_of)s::date - h.last_bought)
                       / greatest(coalesce(c.typical_days_between_orders, 90), 30)::float8)) AS score,
       CASE c.scenario
           WHEN 'winback' THEN 'Vous nous manquez ! Profitez de -' || %(winback_discount_pct)s || ' %% sur votre '
                               || s.produit || ' préféré avec le code ' || %(winback_offer_code)s || '.'
           ELSE 'Vous avez apprécié notre ' || s.produit || ' (' || h.orders_with_article
                || CASE WHEN h.orders_with_article > 1 THEN ' commandes' ELSE ' commande' END
                || ') : il vous attend à la cave.'
       END AS reason_fr,
       CASE WHEN c.scenario = 'winback' THEN %(winback_offer_code)s END AS offer_code
FROM rec_history h
JOIN rec_customers c ON c.client_code = h.client_code
JOIN rec_in_stock s ON s.article = h.article
WHERE c.scenario IN ('rebuy', 'winback')
  AND h.last_bought <= %(as_of)s::date - %(recent_purchase_days)s
UNION ALL
-- cross-sell: never-bought articles, blending (a) their similarity with what the customer bought
-- (normalised to 0-1 per customer) and (b) the taste profile: the customer's share of orders in
-- the article's family x the article's popularity inside that family. The reason is written
-- for the kept ones only (naming the most similar bought article, else the family).
SELECT b.client_code, b.article, s.produit,
       (1 - %(taste_weight)s) * coalesce(b.knn / nullif(max(b.knn) OVER (PARTITION BY b.client_code), 0), 0)
           + %(taste_weight)s * coalesce(t.share
             * s.buyers / nullif(max(s.buyers) OVER (PARTITION BY b.client_code, s.famille_crm), 0)::float8, 0),
       NULL, NULL
FROM (
    SELECT client_code, article, sum(knn) AS knn
    FROM (
        SELECT client_code, article, strength AS knn FROM rec_cross_sell
        UNION ALL
        -- family-level candidates: what customers of the same families buy, even when single
        -- articles are too sparse to have neighbours
        SELECT t.client_code, s.article, 0
        FROM rec_taste t
        JOIN rec_in_stock s ON s.famille_crm = t.famille_crm
        WHERE %(taste_weight)s > 0
          AND NOT EXISTS (SELECT 1 FROM rec_history h WHERE h.client_code = t.client_code AND h.article = s.article)
    ) u
    GROUP BY client_code, article
) b
JOIN rec_in_stock s ON s.article = b.article
LEFT JOIN rec_taste t ON t.client_code = b.client_code AND t.famille_crm = s.famille_crm;

-- step: recommendations
INSERT INTO crm.recommendations (as_of_date, client_code, rank, scenario, segment, article, produit, score,
                                 reason_fr, offer_code, is_control, computed_run)
SELECT %(as_of)s, r.client_code, r.rank, c.scenario, c.segment, r.article, r.produit, round(r.score::numeric, 4),
       coalesce(r.reason_fr,
                CASE WHEN src.source_article IS NOT NULL
                     THEN 'Parce que vous avez aimé ' || crm.le_vin(coalesce(ps.produit, src.source_article))
                          || ', nous pensons que ' || crm.le_vin(r.produit) || ' vous plaira.'
                     ELSE 'Vous aimez ' || crm.le_vin(pr.famille_crm) || ' : découvrez notre ' || r.produit || '.' END),
       r.offer_code,
       -- control group: a fixed pseudo-random draw from (customer, week), the same on every rerun
       ((hashtextextended(r.client_code || '|' || %(as_of)s::text, 0) %% 10000 + 10000) %% 10000)
           < %(control_share)s * 10000,
       %(run_id)s
FROM (
    SELECT cand.*, row_number() OVER (PARTITION BY client_code ORDER BY score DESC, article) AS rank
    FROM rec_candidates cand
) r
JOIN rec_customers c ON c.client_code = r.client_code
LEFT JOIN LATERAL (
    SELECT x.source_article FROM rec_cross_sell x
    WHERE r.reason_fr IS NULL AND x.client_code = r.client_code AND x.article = r.article
    ORDER BY x.strength DESC, x.source_article
    LIMIT 1
) src ON true
LEFT JOIN etl.produits ps ON ps.article = src.source_article
LEFT JOIN etl.produits pr ON pr.article = r.article
WHERE r.rank <= %(max_products)s;

-- step: exclusions
INSERT INTO crm.recommendation_exclusions (as_of_date, client_code, segment, scenario, reason, computed_run)
SELECT %(as_of)s, c.client_code, c.segment, c.scenario, coalesce(c.excluded_because, 'no_candidate'), %(run_id)s
FROM rec_customers c
WHERE c.excluded_because IS NOT NULL
   OR NOT EXISTS (SELECT 1 FROM crm.recommendations r WHERE r.as_of_date = %(as_of)s AND r.client_code = c.client_code);
