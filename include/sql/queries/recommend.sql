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
CREATE TEMP TABLE rec_in_stock ON COMMIT DROP AS
SELECT s.article, coalesce(p.produit, s.article) AS produit, p.famille_crm
FROM etl.stock s
LEFT JOIN etl.produits p ON p.article = s.article
GROUP BY s.article, p.produit, p.famille_crm
HAVING sum(s.quantite) > 0;

-- step: analyze_in_stock
ANALYZE rec_in_stock;

-- step: history
-- What each eligible customer bought, per article, as of the date.
CREATE TEMP TABLE rec_history ON COMMIT DROP AS
SELECT v.client_code, v.article, count(DISTINCT v.document_no) AS orders_with_article,
       max(v.date_livraison) AS last_bought
FROM etl.ventes_lignes v
JOIN rec_customers c ON c.client_code = v.client_code AND c.excluded_because IS NULL
WHERE v.date_livraison <= %(as_of)s AND v.document_type <> 'AVOIR'
GROUP BY v.client_code, v.article;

-- step: index_history
CREATE INDEX ON rec_history (client_code, article);

-- step: analyze_history
ANALYZE rec_history;

-- step: neighbours
-- Item-to-item neighbours for cross-sell: the most similar in-stock articles of each article
-- (Jaccard), capped per article as in any item-kNN recommender.
CREATE TEMP TABLE rec_neighbours ON COMMIT DROP AS
SELECT item_a, item_b, jaccard
FROM (
    SELECT a.item_a, a.item_b, a.jaccard,
           row_number() OVER (PARTITION BY a.item_a ORDER BY a.jaccard DESC, a.item_b) AS k
    FROM crm.product_affinity a
    JOIN rec_in_stock s ON s.article = a.item_b
    WHERE a.as_of_date = %(as_of)s AND a.level = 'article'
) n
WHERE k <= %(neighbours_per_article)s;

-- step: cross_sell_pairs
-- (customer, never-bought article, bought article it resembles, similarity)
CREATE TEMP TABLE rec_cross_sell ON COMMIT DROP AS
SELECT h.client_code, n.item_b AS article, h.article AS source_article, n.jaccard
FROM rec_history h
JOIN rec_customers c ON c.client_code = h.client_code AND c.scenario = 'cross_sell'
JOIN rec_neighbours n ON n.item_a = h.article
LEFT JOIN rec_history already ON already.client_code = h.client_code AND already.article = n.item_b
WHERE already.client_code IS NULL;

-- step: index_cross_sell
CREATE INDEX ON rec_cross_sell (client_code, article, jaccard DESC, source_article);

-- step: analyze_cross_sell
ANALYZE rec_cross_sell;

-- step: candidates
CREATE TEMP TABLE rec_candidates ON COMMIT DROP AS
-- rebuy and win-back: the customer's own articles, by how often they came back to them, boosted
-- when the usual time between their orders has passed since they last took it.
SELECT h.client_code, h.article, s.produit,
       h.orders_with_article * (1 + least(1.0, (%(as_of)s::date - h.last_bought)
                                       / greatest(coalesce(c.typical_days_between_orders, 90), 30)::numeric)) AS score,
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
-- cross-sell: never-bought articles by summed similarity with what the customer bought (the
-- reason, naming the most similar bought article, is written for the kept ones only).
SELECT t.client_code, t.article, s.produit, t.score, NULL, NULL
FROM (
    SELECT client_code, article, sum(jaccard) AS score
    FROM rec_cross_sell
    GROUP BY client_code, article
) t
JOIN rec_in_stock s ON s.article = t.article;

-- step: recommendations
INSERT INTO crm.recommendations (as_of_date, client_code, rank, scenario, segment, article, produit, score,
                                 reason_fr, offer_code, is_control, computed_run)
SELECT %(as_of)s, r.client_code, r.rank, c.scenario, c.segment, r.article, r.produit, round(r.score, 4),
       coalesce(r.reason_fr, 'Parce que vous avez aimé le ' || coalesce(ps.produit, src.source_article)
                             || ', nous pensons que le ' || r.produit || ' vous plaira.'),
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
    ORDER BY x.jaccard DESC, x.source_article
    LIMIT 1
) src ON true
LEFT JOIN etl.produits ps ON ps.article = src.source_article
WHERE r.rank <= %(max_products)s;

-- step: exclusions
INSERT INTO crm.recommendation_exclusions (as_of_date, client_code, segment, scenario, reason, computed_run)
SELECT %(as_of)s, c.client_code, c.segment, c.scenario, coalesce(c.excluded_because, 'no_candidate'), %(run_id)s
FROM rec_customers c
WHERE c.excluded_because IS NOT NULL
   OR NOT EXISTS (SELECT 1 FROM crm.recommendations r WHERE r.as_of_date = %(as_of)s AND r.client_code = c.client_code);
