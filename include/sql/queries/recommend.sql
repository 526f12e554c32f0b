-- Recommendations as of %(as_of)s, from crm.customer_360 / crm.rfm_scores / crm.product_affinity
-- of the same date and the item model crm.articles (run score_customers.sql first): cuvées are
-- chosen, then the best article of each. Rules: include/config/scoring.yaml.

-- step: forget_previous
DELETE FROM crm.recommendations WHERE as_of_date = %(as_of)s;
-- step: forget_previous_exclusions
DELETE FROM crm.recommendation_exclusions WHERE as_of_date = %(as_of)s;

-- step: customers
-- Every scored customer, its scenario, and the first guard-rail it fails (NULL = eligible).
CREATE TEMP TABLE rec_customers ON COMMIT DROP AS
SELECT r.client_code, r.segment, c.revenue_ht, c.orders, c.typical_days_between_orders, bp.probability AS buy_probability,
       CASE r.segment WHEN 'VIP' THEN %(scenario_vip)s WHEN 'Standard' THEN %(scenario_standard)s
                      WHEN 'At Risk' THEN %(scenario_at_risk)s ELSE %(scenario_churn)s END AS scenario,
       CASE WHEN c.email IS NULL OR c.email_valid IS NOT TRUE THEN 'invalid_email'
            WHEN c.suppressed THEN 'suppressed'
            WHEN c.opted_out THEN 'opted_out'
            WHEN EXISTS (SELECT 1 FROM crm.email_sends s
                         LEFT JOIN crm.campaigns k ON k.campaign_id = s.campaign_id
                         WHERE s.client_code = r.client_code AND s.status = 'sent' AND k.kind IS DISTINCT FROM 'test'
                           AND s.sent_at::date > %(as_of)s::date - %(silence_days)s
                           AND s.sent_at::date <= %(as_of)s) THEN 'silence_window'
            WHEN r.segment = 'Churn' AND c.revenue_ht < %(winback_min_revenue)s THEN 'winback_min_revenue'
       END AS excluded_because
FROM crm.rfm_scores r
JOIN crm.customer_360 c ON c.as_of_date = r.as_of_date AND c.client_code = r.client_code
LEFT JOIN crm.buy_probabilities bp ON bp.as_of_date = r.as_of_date AND bp.client_code = r.client_code
WHERE r.as_of_date = %(as_of)s
  -- erased on request (GDPR): never recommended, not even listed as excluded
  AND NOT EXISTS (SELECT 1 FROM crm.erased_clients e WHERE e.client_code = r.client_code);

-- step: analyze_customers
ANALYZE rec_customers;

-- step: available
-- What can be proposed: articles in stock (the backtest builds its own rec_available).
CREATE TEMP TABLE rec_available ON COMMIT DROP AS
SELECT article FROM etl.stock GROUP BY article HAVING sum(quantite) > 0;

-- The ranking steps below (in_stock .. candidates) read only rec_customers, rec_available and
-- the warehouse: the backtest (winecrm_tools/evaluation/backtest.py) builds the first two itself and
-- runs these same steps.

-- step: in_stock
-- The available articles as the item model sees them (crm.articles, built by the scoring), with
-- how many customers bought each article and its cuvée in the year before the date, the newest
-- vintage in stock, how many vintages are, and the newest the estate has made (sold out or not).
CREATE TEMP TABLE rec_in_stock ON COMMIT DROP AS
WITH recent AS (
    SELECT v.client_code, v.article, coalesce(a.cuvee, v.article) AS cuvee
    FROM etl.ventes_lignes v
    LEFT JOIN crm.articles a ON a.article = v.article
    WHERE v.document_type = ANY(%(sale_types)s) AND v.date_livraison > %(as_of)s::date - 365
      AND v.date_livraison <= %(as_of)s
),
article_buyers AS (SELECT article, count(DISTINCT client_code) AS buyers FROM recent GROUP BY article),
cuvee_buyers AS (SELECT cuvee, count(DISTINCT client_code) AS buyers FROM recent GROUP BY cuvee)
SELECT s.article, coalesce(a.produit, s.article) AS produit, coalesce(a.cuvee, s.article) AS cuvee,
       a.millesime, coalesce(a.bottles, 1) AS bottles, a.format_fr, a.taste, a.taste_kind,
       coalesce(ab.buyers, 0) AS buyers, coalesce(cb.buyers, 0) AS cuvee_buyers,
       max(a.millesime) OVER (PARTITION BY coalesce(a.cuvee, s.article)) AS newest_vintage,
       v.vintages_in_stock, k.newest_known,
       -- the format as win-back exclusions name it (recommendations.winback_offer_excludes)
       CASE WHEN a.pack > 1 THEN 'carton' WHEN a.unit_cl = 150 THEN 'magnum' WHEN a.unit_cl > 150 THEN 'grand_format'
            WHEN a.unit_cl < 75 THEN 'petit_format' END AS format_kind
FROM (SELECT DISTINCT article FROM rec_available) s
LEFT JOIN crm.articles a ON a.article = s.article
LEFT JOIN (SELECT cuvee, max(millesime) AS newest_known FROM crm.articles GROUP BY cuvee) k ON k.cuvee = a.cuvee
LEFT JOIN (SELECT i.cuvee, count(DISTINCT i.millesime) AS vintages_in_stock
           FROM (SELECT DISTINCT article FROM rec_available) r JOIN crm.articles i ON i.article = r.article
           GROUP BY i.cuvee) v ON v.cuvee = a.cuvee
LEFT JOIN article_buyers ab ON ab.article = s.article
LEFT JOIN cuvee_buyers cb ON cb.cuvee = coalesce(a.cuvee, s.article);

-- step: analyze_in_stock
ANALYZE rec_in_stock;

-- step: tiers
-- Each cuvée's family (grape and colour: « Riesling|blanc ») and whether it is the premium wine of
-- it (recommendations.premium_markers in its name, or premium_catalogue_tiers in the catalogue's
-- premium_tier): a premium buyer is not offered the entry-level wine of the same family.
CREATE TEMP TABLE rec_tiers ON COMMIT DROP AS
SELECT a.cuvee,
       max(a.taste) FILTER (WHERE a.taste_kind = 'grape') || '|' || coalesce(crm.fold(max(btrim(p.couleur))), '') AS family,
       coalesce(bool_or(crm.fold(a.cuvee) ~ %(premium_pattern)s OR p.premium_tier = ANY(%(premium_tiers)s::text[])), false)
           AS premium
FROM crm.articles a
LEFT JOIN etl.produits p ON p.article = a.article
GROUP BY a.cuvee;

-- step: analyze_tiers
ANALYZE rec_tiers;

-- step: lines
-- What each eligible customer bought as of the date, line by line, with the item model's view.
CREATE TEMP TABLE rec_lines ON COMMIT DROP AS
SELECT v.client_code, v.document_no, v.date_livraison AS bought, coalesce(a.cuvee, v.article) AS cuvee,
       a.millesime, coalesce(a.bottles, 1) AS bottles, a.taste, a.taste_kind,
       -- above a floor, an order's weight halves every `recency_half_life_cycles` of the customer's
       -- own order cycles (median days between their orders): a weekly shopper's habits move in
       -- weeks, a once-a-year wine buyer's in years
       %(recency_half_life_cycles)s * greatest(coalesce(c.typical_days_between_orders, 365), 7)::float8 AS half_life_days
FROM etl.ventes_lignes v
JOIN rec_customers c ON c.client_code = v.client_code AND c.excluded_because IS NULL
LEFT JOIN crm.articles a ON a.article = v.article
WHERE v.date_livraison <= %(as_of)s AND v.document_type = ANY(%(sale_types)s);

-- step: history
-- Per customer and cuvée: orders with it, when last, a recency-weighted count, and the habits
-- the article is chosen by: the format they usually take, how old the vintages they buy are
-- (years between the vintage and the purchase), the last vintage they took.
CREATE TEMP TABLE rec_history ON COMMIT DROP AS
WITH orders AS (
    SELECT client_code, cuvee, document_no, min(bought) AS bought, min(half_life_days) AS half_life_days
    FROM rec_lines GROUP BY client_code, cuvee, document_no
),
weighted AS (
    SELECT client_code, cuvee, count(*) AS orders_with_cuvee, max(bought) AS last_bought,
           sum(%(recency_floor)s + (1 - %(recency_floor)s) * exp(-ln(2) * (%(as_of)s::date - bought) / half_life_days))
               AS weight
    FROM orders GROUP BY client_code, cuvee
),
habits AS (
    SELECT client_code, cuvee, mode() WITHIN GROUP (ORDER BY bottles) AS usual_bottles,
           percentile_disc(0.5) WITHIN GROUP (ORDER BY extract(year FROM bought)::int - millesime) AS usual_age,
           (array_agg(millesime ORDER BY bought DESC, millesime DESC) FILTER (WHERE millesime IS NOT NULL))[1]
               AS last_vintage
    FROM rec_lines GROUP BY client_code, cuvee
)
SELECT w.*, h.usual_bottles, h.usual_age, h.last_vintage
FROM weighted w JOIN habits h USING (client_code, cuvee);

-- step: index_history
CREATE INDEX ON rec_history (client_code, cuvee);

-- step: analyze_history
ANALYZE rec_history;

-- step: habits
-- Each customer's habits over all their wines: what cross-sell chooses a new cuvée's article by.
CREATE TEMP TABLE rec_habits ON COMMIT DROP AS
SELECT client_code, mode() WITHIN GROUP (ORDER BY bottles) AS usual_bottles,
       percentile_disc(0.5) WITHIN GROUP (ORDER BY extract(year FROM bought)::int - millesime) AS usual_age
FROM rec_lines GROUP BY client_code;

-- step: analyze_habits
ANALYZE rec_habits;

-- step: taste
-- Taste profile of the cross-sell customers: each grape's (else colour's) share of their
-- recency-weighted orders.
CREATE TEMP TABLE rec_taste ON COMMIT DROP AS
SELECT h.client_code, t.taste, t.taste_kind,
       sum(h.weight) / sum(sum(h.weight)) OVER (PARTITION BY h.client_code) AS share
FROM rec_history h
JOIN rec_customers c ON c.client_code = h.client_code AND c.scenario = 'cross_sell'
JOIN (SELECT DISTINCT ON (cuvee) cuvee, taste, taste_kind FROM crm.articles WHERE taste IS NOT NULL
      ORDER BY cuvee, taste_kind = 'grape' DESC, taste) t ON t.cuvee = h.cuvee
GROUP BY h.client_code, t.taste, t.taste_kind;

-- step: analyze_taste
ANALYZE rec_taste;

-- step: stocked_cuvees
-- The cuvées that can be proposed, with their taste unit and popularity.
CREATE TEMP TABLE rec_cuvees ON COMMIT DROP AS
SELECT DISTINCT ON (cuvee) cuvee, taste, taste_kind, cuvee_buyers AS buyers
-- (a cuvée's taste unit: its grape when any article has one, as in rec_taste)
FROM rec_in_stock ORDER BY cuvee, (taste IS NULL), taste_kind = 'grape' DESC, taste;

-- step: analyze_cuvees
ANALYZE rec_cuvees;

-- step: neighbours
-- Cuvée-to-cuvée neighbours for cross-sell: the most similar stocked cuvées of each cuvée, capped
-- as in any item-kNN recommender. Similarity (scoring.yaml): cosine (both / sqrt(a * b)),
-- jaccard, or confidence (both / a).
CREATE TEMP TABLE rec_neighbours ON COMMIT DROP AS
SELECT item_a, item_b, similarity
FROM (
    SELECT a.item_a, a.item_b, n.similarity,
           row_number() OVER (PARTITION BY a.item_a ORDER BY n.similarity DESC, a.item_b) AS k
    FROM crm.product_affinity a
    JOIN rec_cuvees s ON s.cuvee = a.item_b
    CROSS JOIN LATERAL (SELECT CASE %(similarity)s
        WHEN 'jaccard' THEN a.jaccard::float8
        WHEN 'confidence' THEN a.confidence::float8
        ELSE a.customers_both / sqrt(a.customers_a::float8 * a.customers_b) END AS similarity) n
    WHERE a.as_of_date = %(as_of)s AND a.level = 'cuvee'
) n
WHERE k <= %(neighbours_per_article)s;

-- step: cross_sell_pairs
-- (customer, never-bought cuvée, bought cuvée it resembles, similarity x that cuvée's weight).
-- Another vintage or format of a cuvée the customer knows is never a discovery.
CREATE TEMP TABLE rec_cross_sell ON COMMIT DROP AS
SELECT h.client_code, n.item_b AS cuvee, h.cuvee AS source_cuvee, n.similarity * h.weight AS strength
FROM rec_history h
JOIN rec_customers c ON c.client_code = h.client_code AND c.scenario = 'cross_sell'
JOIN rec_neighbours n ON n.item_a = h.cuvee
LEFT JOIN rec_history already ON already.client_code = h.client_code AND already.cuvee = n.item_b
WHERE already.client_code IS NULL;

-- step: index_cross_sell
CREATE INDEX ON rec_cross_sell (client_code, cuvee, strength DESC, source_cuvee);

-- step: analyze_cross_sell
ANALYZE rec_cross_sell;

-- step: candidates
-- The best max_products cuvées per customer, then the best article of each for that customer:
-- in stock, the newest vintage (an older one only when the newer are sold out, and the reason
-- then says so), then the format they usually take, then the most bought. The vintage comes
-- first: a magnum of a vintage the estate has moved on from is not what a merchant offers a
-- magnum buyer when the current one exists in bottles. Win-back avoids the formats its offer
-- excludes when the cuvée is in stock in another.
CREATE TEMP TABLE rec_candidates ON COMMIT DROP AS
WITH cuvee_scores AS (
    -- rebuy and win-back: the customer's own cuvées by recency-weighted order count, optionally
    -- boosted when their usual time between orders has passed since they last took it
    SELECT h.client_code, h.cuvee,
           h.weight * (1 + %(due_boost)s * least(1.0, (%(as_of)s::date - h.last_bought)
                           / greatest(coalesce(c.typical_days_between_orders, 90), 30)::float8)) AS score,
           NULL::text AS source_cuvee, h.orders_with_cuvee, h.last_vintage, h.usual_bottles, h.usual_age,
           -- a win-back offer is made (and its excluded formats avoided) unless the customer has been
           -- gone longer than winback_soft_after_days
           c.scenario = 'winback' AND %(as_of)s::date - (SELECT max(l.last_bought) FROM rec_history l
                                                         WHERE l.client_code = h.client_code)
               <= %(winback_soft_after_days)s AS offer_made
    FROM rec_history h
    JOIN rec_customers c ON c.client_code = h.client_code
    WHERE c.scenario IN ('rebuy', 'winback')
      AND h.last_bought <= %(as_of)s::date - %(recent_purchase_days)s
      AND EXISTS (SELECT 1 FROM rec_cuvees s WHERE s.cuvee = h.cuvee)
    UNION ALL
    -- cross-sell: never-bought cuvées, blending (a) their similarity with what the customer
    -- bought (normalised to 0-1 per customer) and (b) the taste profile: the customer's share of
    -- orders in the cuvée's grape (else colour) x the cuvée's popularity there
    SELECT b.client_code, b.cuvee,
           (1 - %(taste_weight)s) * coalesce(b.knn / nullif(max(b.knn) OVER (PARTITION BY b.client_code), 0), 0)
               + %(taste_weight)s * coalesce(t.share
                 * s.buyers / nullif(max(s.buyers) OVER (PARTITION BY b.client_code, s.taste), 0)::float8, 0),
           NULL, NULL, NULL, hb.usual_bottles, hb.usual_age, false
    FROM (
        SELECT client_code, cuvee, sum(knn) AS knn
        FROM (
            SELECT client_code, cuvee, strength AS knn FROM rec_cross_sell
            UNION ALL
            -- taste-level candidates: the stocked cuvées of the customer's grapes, even when
            -- a cuvée is too new or too rare to have co-purchase neighbours
            SELECT t.client_code, s.cuvee, 0
            FROM rec_taste t
            JOIN rec_cuvees s ON s.taste = t.taste
            WHERE %(taste_weight)s > 0
              AND NOT EXISTS (SELECT 1 FROM rec_history h WHERE h.client_code = t.client_code AND h.cuvee = s.cuvee)
        ) u
        GROUP BY client_code, cuvee
    ) b
    JOIN rec_cuvees s ON s.cuvee = b.cuvee
    LEFT JOIN rec_taste t ON t.client_code = b.client_code AND t.taste = s.taste
    LEFT JOIN rec_habits hb ON hb.client_code = b.client_code
    LEFT JOIN rec_tiers tr ON tr.cuvee = b.cuvee
    -- no trading down: a customer who bought the premium wine of a family (a Grand Cru, a Pinot
    -- Noir Fût de Chêne) is not offered the entry-level wine of that family
    WHERE NOT (%(no_trading_down)s AND NOT coalesce(tr.premium, true) AND EXISTS (
        SELECT 1 FROM rec_history h JOIN rec_tiers tp ON tp.cuvee = h.cuvee AND tp.premium
        WHERE h.client_code = b.client_code AND tp.family = tr.family))
),
kept AS (
    SELECT *, row_number() OVER (PARTITION BY client_code ORDER BY score DESC, cuvee) AS rank
    FROM cuvee_scores
)
SELECT k.client_code, k.rank, k.cuvee, k.score, k.orders_with_cuvee, k.last_vintage,
       best.article, best.produit, best.millesime, best.newest_vintage, best.format_fr, best.taste, best.taste_kind,
       best.newest_known, best.vintages_in_stock
FROM kept k
CROSS JOIN LATERAL (
    SELECT i.article, i.produit, i.millesime, i.newest_vintage, i.format_fr, i.taste, i.taste_kind,
           i.newest_known, i.vintages_in_stock
    FROM rec_in_stock i
    WHERE i.cuvee = k.cuvee
    ORDER BY coalesce(k.offer_made AND i.format_kind = ANY(%(winback_excluded_formats)s::text[]), false),
             i.millesime DESC NULLS LAST,
             (i.bottles = k.usual_bottles) DESC NULLS LAST,
             i.buyers DESC, i.article
    LIMIT 1
) best
WHERE k.rank <= %(max_products)s;

-- step: analyze_candidates
ANALYZE rec_candidates;

-- step: recommendations
-- Cross-sell names the bought cuvée the wine most resembles, else the customer's taste for its
-- grape; a cuvée already named for a better-ranked wine is not named again (the taste, else a
-- plain « découverte »), so an email does not repeat « parce que vous avez aimé » the same wine.
INSERT INTO crm.recommendations (as_of_date, client_code, rank, scenario, segment, article, produit, cuvee,
                                 millesime, source_cuvee, score, reason_fr, offer_code, is_control, buy_probability,
                                 scenario_rank, computed_run, offer_discount_pct, offer_scope, offer_ends_on,
                                 offer_excludes, winback_tone)
SELECT %(as_of)s, n.client_code, n.rank, n.scenario, n.segment, n.article, n.produit, n.cuvee, n.millesime,
       n.source_cuvee, round(n.score::numeric, 4),
       crm.reason_fr(n.scenario, n.rank::int, n.produit, n.cuvee, n.millesime, n.format_fr, n.orders_with_cuvee,
                     n.last_vintage, n.newest_vintage,
                     CASE WHEN n.same_source_before = 0 THEN n.source_cuvee END,
                     n.taste, n.taste_kind, %(winback_discount_pct)s, %(winback_offer_code)s,
                     n.newest_known, n.vintages_in_stock::int, %(winback_offer_scope)s,
                     %(as_of)s::date + %(winback_offer_valid_days)s, %(winback_offer_excludes)s, n.soft),
       CASE WHEN n.has_offer THEN %(winback_offer_code)s END,
       -- control group: a fixed pseudo-random draw from (customer, week), the same on every rerun
       ((hashtextextended(n.client_code || '|' || %(as_of)s::text, 0) %% 10000 + 10000) %% 10000)
           < %(control_share)s * 10000,
       n.buy_probability,
       -- customers of a scenario, likeliest buyers first (each customer's rows share their place)
       dense_rank() OVER (PARTITION BY n.scenario ORDER BY n.buy_probability DESC NULLS LAST, n.client_code),
       %(run_id)s,
       CASE WHEN n.has_offer THEN %(winback_discount_pct)s END,
       CASE WHEN n.has_offer THEN %(winback_offer_scope)s END,
       CASE WHEN n.has_offer THEN %(as_of)s::date + %(winback_offer_valid_days)s END,
       CASE WHEN n.has_offer THEN %(winback_offer_excludes)s END,
       CASE WHEN n.scenario = 'winback' THEN CASE WHEN n.soft THEN 'soft' ELSE 'offer' END END
FROM (
    SELECT r.*, c.scenario, c.segment, c.buy_probability, src.source_cuvee, tt.taste AS taste, tt.taste_kind AS taste_kind,
           -- gone longer than winback_soft_after_days: a quiet word, no code, no discount
           coalesce(c.scenario = 'winback' AND %(as_of)s::date - lb.last_bought > %(winback_soft_after_days)s, false)
               AS soft,
           coalesce(c.scenario = 'winback' AND %(as_of)s::date - lb.last_bought <= %(winback_soft_after_days)s
                    AND %(winback_offer_code)s::text IS NOT NULL AND %(winback_discount_pct)s::numeric IS NOT NULL, false)
               AS has_offer,
           count(src.source_cuvee) OVER (PARTITION BY r.client_code, src.source_cuvee ORDER BY r.rank) - 1
               AS same_source_before
    FROM (SELECT client_code, rank, cuvee, score, orders_with_cuvee, last_vintage, article, produit, millesime,
                 newest_vintage, format_fr, taste AS article_taste, newest_known, vintages_in_stock
          FROM rec_candidates) r
    JOIN rec_customers c ON c.client_code = r.client_code
    -- the customer's last purchase (as the scoring sees sales), for the win-back tone
    LEFT JOIN LATERAL (SELECT max(l.last_bought) AS last_bought FROM rec_history l
                       WHERE l.client_code = r.client_code) lb ON true
    LEFT JOIN LATERAL (
        SELECT x.source_cuvee FROM rec_cross_sell x
        WHERE c.scenario = 'cross_sell' AND x.client_code = r.client_code AND x.cuvee = r.cuvee
        ORDER BY x.strength DESC, x.source_cuvee
        LIMIT 1
    ) src ON true
    LEFT JOIN rec_taste tt ON c.scenario = 'cross_sell' AND tt.client_code = r.client_code AND tt.taste = r.article_taste
) n;

-- step: exclusions
INSERT INTO crm.recommendation_exclusions (as_of_date, client_code, segment, scenario, reason, computed_run)
SELECT %(as_of)s, c.client_code, c.segment, c.scenario, coalesce(c.excluded_because, 'no_candidate'), %(run_id)s
FROM rec_customers c
WHERE c.excluded_because IS NOT NULL
   OR NOT EXISTS (SELECT 1 FROM crm.recommendations r WHERE r.as_of_date = %(as_of)s AND r.client_code = c.client_code);
