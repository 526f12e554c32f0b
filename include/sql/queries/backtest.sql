-- Temporal backtest of one cutoff (winecrm/backtest.py). Scores and affinities as of %(cutoff)s
-- come from the production scoring (score_customers.sql) run just before; this file builds what
-- customers really did in (cutoff, horizon_end], the baselines' rankings, and the metrics.
-- Temp tables live for the session; the backtest drops them before the next cutoff.

-- step: targets
-- Every customer known at the cutoff, their scores, and whether they bought in the horizon.
CREATE TEMP TABLE bt_targets AS
WITH future_buyers AS (
    SELECT DISTINCT client_code FROM etl.ventes_lignes
    WHERE document_type = ANY(%(sale_types)s) AND date_livraison > %(cutoff)s AND date_livraison <= %(horizon_end)s
)
SELECT r.client_code, r.segment, r.rfm_score::float8 AS rfm_score, l.score::float8 AS lead_score,
       l.raw_score::float8 AS lead_raw_score,
       -- baseline: the classic RFM quintile sum (3-15)
       (ntile(5) OVER (ORDER BY r.recency_days DESC, r.client_code)
        + ntile(5) OVER (ORDER BY r.frequency, r.client_code)
        + ntile(5) OVER (ORDER BY r.monetary, r.client_code))::float8 AS rfm_quintile_sum,
       -- baseline: random (also breaks ties when the top 20 %% is cut)
       hashtextextended(r.client_code || '|' || %(cutoff)s::text, 1)::float8 AS random,
       -- ours: the calibrated chance to buy in the horizon (crm.buy_probabilities, fitted by the
       -- scoring on sales up to the cutoff only)
       b.probability::float8 AS buy_probability,
       (f.client_code IS NOT NULL) AS bought
FROM crm.rfm_scores r
JOIN crm.lead_scores l ON l.as_of_date = r.as_of_date AND l.client_code = r.client_code
LEFT JOIN crm.buy_probabilities b ON b.as_of_date = r.as_of_date AND b.client_code = r.client_code
LEFT JOIN future_buyers f ON f.client_code = r.client_code
WHERE r.as_of_date = %(cutoff)s;

-- step: items
-- What could be recommended at the cutoff (stock of the past is unknown): articles sold in the
-- availability window before it, with how many customers bought each there.
CREATE TEMP TABLE bt_items AS
SELECT v.article, coalesce(max(a.cuvee), v.article) AS cuvee, count(DISTINCT v.client_code) AS buyers
FROM etl.ventes_lignes v
LEFT JOIN crm.articles a ON a.article = v.article
WHERE v.document_type = ANY(%(sale_types)s) AND v.date_livraison > %(cutoff)s::date - %(availability_days)s
  AND v.date_livraison <= %(cutoff)s
GROUP BY v.article;

-- step: available
-- The same at both levels the recommendations are judged on: articles, and cuvées (the wine,
-- whatever its vintage or format; docs/item-model.md).
CREATE TEMP TABLE bt_available AS
SELECT 'article' AS level, article AS item, buyers FROM bt_items WHERE 'article' = ANY(%(levels)s)
UNION ALL
SELECT 'cuvee', i.cuvee, count(DISTINCT v.client_code)
FROM bt_items i
JOIN etl.ventes_lignes v ON v.article = i.article
WHERE v.document_type = ANY(%(sale_types)s) AND v.date_livraison > %(cutoff)s::date - %(availability_days)s
  AND v.date_livraison <= %(cutoff)s
GROUP BY i.cuvee;

-- step: history
-- What each customer bought up to the cutoff, per article and per cuvée.
CREATE TEMP TABLE bt_history AS
SELECT l.level, v.client_code, l.item, count(DISTINCT v.document_no) AS orders, max(v.date_livraison) AS last_bought
FROM etl.ventes_lignes v
LEFT JOIN crm.articles a ON a.article = v.article
CROSS JOIN LATERAL (VALUES ('article', v.article), ('cuvee', coalesce(a.cuvee, v.article))) AS l (level, item)
WHERE v.document_type = ANY(%(sale_types)s) AND v.date_livraison <= %(cutoff)s AND l.level = ANY(%(levels)s)
GROUP BY l.level, v.client_code, l.item;

-- step: index_history
CREATE INDEX ON bt_history (level, client_code, item);

-- step: trading_down
-- What the business rules never let cross-sell offer (recommend.sql, no trading down): the
-- entry-level cuvées of a family (grape and colour) whose premium wine the customer bought before
-- the cutoff. The cross-sell baselines skip them too: every method ranks the same allowed wines.
CREATE TEMP TABLE bt_trading_down AS
WITH tiers AS (
    SELECT a.cuvee,
           max(a.taste) FILTER (WHERE a.taste_kind = 'grape') || '|' || coalesce(crm.fold(max(btrim(p.couleur))), '')
               AS family,
           coalesce(bool_or(crm.fold(a.cuvee) ~ %(premium_pattern)s OR p.premium_tier = ANY(%(premium_tiers)s::text[])),
                    false) AS premium
    FROM crm.articles a
    LEFT JOIN etl.produits p ON p.article = a.article
    GROUP BY a.cuvee
),
premium_families AS (
    SELECT DISTINCT h.client_code, t.family
    FROM bt_history h JOIN tiers t ON t.cuvee = h.item AND t.premium
    WHERE h.level = 'cuvee' AND t.family IS NOT NULL
)
SELECT DISTINCT l.level, f.client_code, l.item
FROM premium_families f
JOIN tiers t ON t.family = f.family AND NOT t.premium
JOIN bt_items i ON i.cuvee = t.cuvee
CROSS JOIN LATERAL (VALUES ('article', i.article), ('cuvee', i.cuvee)) AS l (level, item)
WHERE %(no_trading_down)s AND l.level = ANY(%(levels)s);

-- step: index_trading_down
CREATE INDEX ON bt_trading_down (level, client_code, item);

-- step: index_targets
CREATE INDEX ON bt_targets (client_code);

-- step: analyze_targets
-- Temp tables get no statistics unless asked: without them the joins below go nested-loop.
ANALYZE bt_targets;
-- step: analyze_items
ANALYZE bt_items;
-- step: analyze_available
ANALYZE bt_available;
-- step: analyze_history
ANALYZE bt_history;

-- step: relevant
-- What known customers bought in the horizon among the available items, per level: a rebuy when
-- they had bought it before, a cross-sell target when never. At the cuvée level a new vintage or
-- format of a wine they know is a rebuy, never a discovery.
CREATE TEMP TABLE bt_relevant AS
SELECT DISTINCT l.level, CASE WHEN h.client_code IS NULL THEN 'cross_sell' ELSE 'rebuy' END AS task,
       v.client_code, l.item
FROM etl.ventes_lignes v
JOIN bt_targets t ON t.client_code = v.client_code
JOIN bt_items i ON i.article = v.article
CROSS JOIN LATERAL (VALUES ('article', i.article), ('cuvee', i.cuvee)) AS l (level, item)
LEFT JOIN bt_history h ON h.level = l.level AND h.client_code = v.client_code AND h.item = l.item
WHERE v.document_type = ANY(%(sale_types)s) AND v.date_livraison > %(cutoff)s AND v.date_livraison <= %(horizon_end)s
  AND l.level = ANY(%(levels)s);

-- step: evaluated
-- The customers each task is judged on, per level: those with at least one relevant item.
CREATE TEMP TABLE bt_evaluated AS
SELECT level, task, client_code, count(*) AS relevant FROM bt_relevant GROUP BY level, task, client_code;

-- step: analyze_relevant
ANALYZE bt_relevant;
-- step: analyze_evaluated
ANALYZE bt_evaluated;

-- step: rankings
CREATE TEMP TABLE bt_rankings (level text, task text, method text, client_code text, item text, rank int);

-- step: rebuy_baselines
-- The customer's own available items ranked three ways: personal most-frequent (most orders
-- first, ties: most recently bought), most popular, random.
INSERT INTO bt_rankings
SELECT r.level, 'rebuy', m.method, r.client_code, r.item, m.rank
FROM (
    SELECT h.level, h.client_code, h.item,
           row_number() OVER (PARTITION BY h.level, h.client_code ORDER BY h.orders DESC, h.last_bought DESC, h.item) AS frequent,
           row_number() OVER (PARTITION BY h.level, h.client_code ORDER BY i.buyers DESC, h.item) AS popular,
           row_number() OVER (PARTITION BY h.level, h.client_code
                              ORDER BY hashtextextended(h.client_code || '|' || h.item || '|' || %(cutoff)s::text, 2)) AS random
    FROM bt_history h
    JOIN bt_evaluated e ON e.level = h.level AND e.task = 'rebuy' AND e.client_code = h.client_code
    JOIN bt_available i ON i.level = h.level AND i.item = h.item
) r
CROSS JOIN LATERAL (VALUES ('personal most-frequent', r.frequent), ('most popular', r.popular),
                           ('random', r.random)) AS m (method, rank)
WHERE m.rank <= %(k)s;

-- step: affinity
-- Co-purchase Jaccard for the baseline: cuvées from the production scoring of the cutoff, articles
-- (the comparison level, which production no longer ranks) built here the same way.
CREATE TEMP TABLE bt_affinity AS
SELECT level, item_a, item_b, jaccard FROM crm.product_affinity WHERE as_of_date = %(cutoff)s AND level = 'cuvee'
UNION ALL
SELECT 'article', a.item, b.item,
       count(*)::numeric / (max(ca.customers) + max(cb.customers) - count(*))
FROM bt_history a
JOIN bt_history b ON b.level = 'article' AND b.client_code = a.client_code AND b.item <> a.item
JOIN (SELECT item, count(*) AS customers FROM bt_history WHERE level = 'article' GROUP BY item) ca ON ca.item = a.item
JOIN (SELECT item, count(*) AS customers FROM bt_history WHERE level = 'article' GROUP BY item) cb ON cb.item = b.item
WHERE a.level = 'article'
GROUP BY a.item, b.item
HAVING count(*) >= %(min_pair_customers)s;

-- step: index_affinity
CREATE INDEX ON bt_affinity (level, item_a);

-- step: analyze_affinity
ANALYZE bt_affinity;

-- step: cross_sell_cooccurrence_jaccard
-- baseline: never-bought items by summed Jaccard co-occurrence with everything bought
INSERT INTO bt_rankings
SELECT level, 'cross_sell', 'co-occurrence Jaccard', client_code, item, rank
FROM (
    SELECT s.level, s.client_code, s.item,
           row_number() OVER (PARTITION BY s.level, s.client_code ORDER BY s.score DESC, s.item) AS rank
    FROM (
        -- materialised first: the anti-join below is always estimated at one row, and any join
        -- planned after it turns into a nested loop over millions of pairs
        WITH scored AS MATERIALIZED (
            SELECT h.level, h.client_code, a.item_b AS item, sum(a.jaccard) AS score
            FROM bt_history h
            JOIN bt_evaluated e ON e.level = h.level AND e.task = 'cross_sell' AND e.client_code = h.client_code
            JOIN bt_affinity a ON a.level = h.level AND a.item_a = h.item
            JOIN bt_available i ON i.level = h.level AND i.item = a.item_b
            GROUP BY h.level, h.client_code, a.item_b
        )
        SELECT p.level, p.client_code, p.item, p.score
        FROM scored p
        WHERE NOT EXISTS (SELECT 1 FROM bt_history x
                          WHERE x.level = p.level AND x.client_code = p.client_code AND x.item = p.item)
          AND NOT EXISTS (SELECT 1 FROM bt_trading_down d
                          WHERE d.level = p.level AND d.client_code = p.client_code AND d.item = p.item)
    ) s
) r
WHERE rank <= %(k)s;

-- step: cross_sell_most_popular
INSERT INTO bt_rankings
SELECT e.level, 'cross_sell', 'most popular', e.client_code, p.item, p.rank
FROM bt_evaluated e
CROSS JOIN LATERAL (
    SELECT i.item, row_number() OVER (ORDER BY i.buyers DESC, i.item) AS rank
    FROM bt_available i
    WHERE i.level = e.level
      AND NOT EXISTS (SELECT 1 FROM bt_history x WHERE x.level = e.level AND x.client_code = e.client_code AND x.item = i.item)
      AND NOT EXISTS (SELECT 1 FROM bt_trading_down d
                      WHERE d.level = e.level AND d.client_code = e.client_code AND d.item = i.item)
    ORDER BY i.buyers DESC, i.item
    LIMIT %(k)s
) p
WHERE e.task = 'cross_sell';

-- step: cross_sell_random
INSERT INTO bt_rankings
SELECT e.level, 'cross_sell', 'random', e.client_code, p.item, p.rank
FROM bt_evaluated e
CROSS JOIN LATERAL (
    SELECT i.item, row_number() OVER (ORDER BY hashtextextended(e.client_code || '|' || i.item || '|' || %(cutoff)s::text, 3)) AS rank
    FROM bt_available i
    WHERE i.level = e.level
      AND NOT EXISTS (SELECT 1 FROM bt_history x WHERE x.level = e.level AND x.client_code = e.client_code AND x.item = i.item)
      AND NOT EXISTS (SELECT 1 FROM bt_trading_down d
                      WHERE d.level = e.level AND d.client_code = e.client_code AND d.item = i.item)
    ORDER BY 2
    LIMIT %(k)s
) p
WHERE e.task = 'cross_sell';

-- step: metrics
-- Per level, evaluated customer and method: relevant items in the top k, and how many were
-- relevant (a customer a method has nothing for is a miss). Aggregated in winecrm/backtest.py.
WITH methods AS (SELECT DISTINCT level, task, method FROM bt_rankings),
hits AS (
    SELECT k.level, k.task, k.method, k.client_code, count(r.item) AS hits
    FROM bt_rankings k
    LEFT JOIN bt_relevant r ON r.level = k.level AND r.task = k.task AND r.client_code = k.client_code AND r.item = k.item
    WHERE k.rank <= %(k)s
    GROUP BY k.level, k.task, k.method, k.client_code
)
SELECT m.level, m.task, m.method, e.client_code, coalesce(h.hits, 0) AS hits, e.relevant
FROM methods m
JOIN bt_evaluated e ON e.level = m.level AND e.task = m.task
LEFT JOIN hits h ON h.level = m.level AND h.task = m.task AND h.method = m.method AND h.client_code = e.client_code
ORDER BY m.level, m.task, m.method, e.client_code;
