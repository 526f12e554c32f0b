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

-- step: in_stock
CREATE TEMP TABLE rec_in_stock ON COMMIT DROP AS
SELECT s.article, coalesce(p.produit, s.article) AS produit, p.famille_crm
FROM etl.stock s
LEFT JOIN etl.produits p ON p.article = s.article
GROUP BY s.article, p.produit, p.famille_crm
HAVING sum(s.quantite) > 0;

-- step: history
-- What each eligible customer bought, per article, as of the date.
CREATE TEMP TABLE rec_history ON COMMIT DROP AS
SELECT v.client_code, v.article, count(DISTINCT v.document_no) AS orders_with_article,
       max(v.date_livraison) AS last_bought
FROM etl.ventes_lignes v
JOIN rec_customers c ON c.client_code = v.client_code AND c.excluded_because IS NULL
WHERE v.date_livraison <= %(as_of)s AND v.document_type <> 'AVOIR'
GROUP BY v.client_code, v.article;

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
-- cross-sell: articles never bought, by the summed Jaccard similarity with what the customer
-- bought; the reason names the bought article closest to the suggestion.
SELECT client_code, article, produit, score, reason_fr, NULL
FROM (
    SELECT h.client_code, a.item_b AS article, s.produit,
           sum(a.jaccard) AS score,
           'Parce que vous avez aimé le ' || (array_agg(coalesce(pa.produit, h.article) ORDER BY a.jaccard DESC, h.article))[1]
               || ', nous pensons que le ' || s.produit || ' vous plaira.' AS reason_fr
    FROM rec_history h
    JOIN rec_customers c ON c.client_code = h.client_code AND c.scenario = 'cross_sell'
    JOIN crm.product_affinity a ON a.as_of_date = %(as_of)s AND a.level = 'article' AND a.item_a = h.article
    JOIN rec_in_stock s ON s.article = a.item_b
    LEFT JOIN etl.produits pa ON pa.article = h.article
    WHERE NOT EXISTS (SELECT 1 FROM rec_history b WHERE b.client_code = h.client_code AND b.article = a.item_b)
    GROUP BY h.client_code, a.item_b, s.produit
) x;

-- step: recommendations
INSERT INTO crm.recommendations (as_of_date, client_code, rank, scenario, segment, article, produit, score,
                                 reason_fr, offer_code, is_control, computed_run)
SELECT %(as_of)s, r.client_code, r.rank, c.scenario, c.segment, r.article, r.produit, round(r.score, 4),
       r.reason_fr, r.offer_code,
       -- control group: a fixed pseudo-random draw from (customer, week), the same on every rerun
       ((hashtextextended(r.client_code || '|' || %(as_of)s::text, 0) %% 10000 + 10000) %% 10000)
           < %(control_share)s * 10000,
       %(run_id)s
FROM (
    SELECT cand.*, row_number() OVER (PARTITION BY client_code ORDER BY score DESC, article) AS rank
    FROM rec_candidates cand
) r
JOIN rec_customers c ON c.client_code = r.client_code
WHERE r.rank <= %(max_products)s;

-- step: exclusions
INSERT INTO crm.recommendation_exclusions (as_of_date, client_code, segment, scenario, reason, computed_run)
SELECT %(as_of)s, c.client_code, c.segment, c.scenario, coalesce(c.excluded_because, 'no_candidate'), %(run_id)s
FROM rec_customers c
WHERE c.excluded_because IS NOT NULL
   OR NOT EXISTS (SELECT 1 FROM crm.recommendations r WHERE r.as_of_date = %(as_of)s AND r.client_code = c.client_code);
