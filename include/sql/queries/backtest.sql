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
       (f.client_code IS NOT NULL) AS bought
FROM crm.rfm_scores r
JOIN crm.lead_scores l ON l.as_of_date = r.as_of_date AND l.client_code = r.client_code
LEFT JOIN future_buyers f ON f.client_code = r.client_code
WHERE r.as_of_date = %(cutoff)s;

-- step: items
-- What could be recommended at the cutoff (stock of the past is unknown): articles sold in the
-- availability window before it, with how many customers bought each there.
CREATE TEMP TABLE bt_items AS
SELECT v.article, coalesce(max(p.produit), v.article) AS produit, max(p.famille_crm) AS famille_crm,
       count(DISTINCT v.client_code) AS buyers
FROM etl.ventes_lignes v
LEFT JOIN etl.produits p ON p.article = v.article
WHERE v.document_type = ANY(%(sale_types)s) AND v.date_livraison > %(cutoff)s::date - %(availability_days)s
  AND v.date_livraison <= %(cutoff)s
GROUP BY v.article;

-- step: history
-- What each customer bought up to the cutoff.
CREATE TEMP TABLE bt_history AS
SELECT v.client_code, v.article, count(DISTINCT v.document_no) AS orders, max(v.date_livraison) AS last_bought
FROM etl.ventes_lignes v
WHERE v.document_type = ANY(%(sale_types)s) AND v.date_livraison <= %(cutoff)s
GROUP BY v.client_code, v.article;

-- step: index_history
CREATE INDEX ON bt_history (client_code, article);

-- step: index_targets
CREATE INDEX ON bt_targets (client_code);

-- step: relevant
-- What known customers bought in the horizon among the available articles: a rebuy when they
-- had bought it before, a cross-sell target when never.
CREATE TEMP TABLE bt_relevant AS
SELECT DISTINCT CASE WHEN h.client_code IS NULL THEN 'cross_sell' ELSE 'rebuy' END AS task,
       v.client_code, v.article
FROM etl.ventes_lignes v
JOIN bt_targets t ON t.client_code = v.client_code
JOIN bt_items i ON i.article = v.article
LEFT JOIN bt_history h ON h.client_code = v.client_code AND h.article = v.article
WHERE v.document_type = ANY(%(sale_types)s) AND v.date_livraison > %(cutoff)s AND v.date_livraison <= %(horizon_end)s;

-- step: evaluated
-- The customers each task is judged on: those with at least one relevant article.
CREATE TEMP TABLE bt_evaluated AS
SELECT task, client_code, count(*) AS relevant FROM bt_relevant GROUP BY task, client_code;

-- step: analyze_targets
-- Temp tables get no statistics unless asked: without them the joins below go nested-loop.
ANALYZE bt_targets;
-- step: analyze_items
ANALYZE bt_items;
-- step: analyze_history
ANALYZE bt_history;
-- step: analyze_relevant
ANALYZE bt_relevant;
-- step: analyze_evaluated
ANALYZE bt_evaluated;

-- step: rankings
CREATE TEMP TABLE bt_rankings (task text, method text, client_code text, article text, rank int);

-- step: rebuy_baselines
-- The customer's own available articles ranked three ways: personal most-frequent (most orders
-- first, ties: most recently bought), most popular, random.
INSERT INTO bt_rankings
SELECT 'rebuy', m.method, r.client_code, r.article, m.rank
FROM (
    SELECT h.client_code, h.article,
           row_number() OVER (PARTITION BY h.client_code ORDER BY h.orders DESC, h.last_bought DESC, h.article) AS frequent,
           row_number() OVER (PARTITION BY h.client_code ORDER BY i.buyers DESC, h.article) AS popular,
           row_number() OVER (PARTITION BY h.client_code
                              ORDER BY hashtextextended(h.client_code || '|' || h.article || '|' || %(cutoff)s::text, 2)) AS random
    FROM bt_history h
    JOIN bt_evaluated e ON e.task = 'rebuy' AND e.client_code = h.client_code
    JOIN bt_items i ON i.article = h.article
) r
CROSS JOIN LATERAL (VALUES ('personal most-frequent', r.frequent), ('most popular', r.popular),
                           ('random', r.random)) AS m (method, rank)
WHERE m.rank <= %(k)s;

-- step: cross_sell_cooccurrence_jaccard
-- baseline: never-bought articles by summed Jaccard co-occurrence with everything bought
INSERT INTO bt_rankings
SELECT 'cross_sell', 'co-occurrence Jaccard', client_code, article, rank
FROM (
    SELECT s.client_code, s.article, row_number() OVER (PARTITION BY s.client_code ORDER BY s.score DESC, s.article) AS rank
    FROM (
        -- materialised first: the anti-join below is always estimated at one row, and any join
        -- planned after it turns into a nested loop over millions of pairs
        WITH scored AS MATERIALIZED (
            SELECT h.client_code, a.item_b AS article, sum(a.jaccard) AS score
            FROM bt_history h
            JOIN bt_evaluated e ON e.task = 'cross_sell' AND e.client_code = h.client_code
            JOIN crm.product_affinity a ON a.as_of_date = %(cutoff)s AND a.level = 'article' AND a.item_a = h.article
            JOIN bt_items i ON i.article = a.item_b
            GROUP BY h.client_code, a.item_b
        )
        SELECT p.client_code, p.article, p.score
        FROM scored p
        WHERE NOT EXISTS (SELECT 1 FROM bt_history x WHERE x.client_code = p.client_code AND x.article = p.article)
    ) s
) r
WHERE rank <= %(k)s;

-- step: cross_sell_most_popular
INSERT INTO bt_rankings
SELECT 'cross_sell', 'most popular', e.client_code, p.article, p.rank
FROM bt_evaluated e
CROSS JOIN LATERAL (
    SELECT i.article, row_number() OVER (ORDER BY i.buyers DESC, i.article) AS rank
    FROM bt_items i
    WHERE NOT EXISTS (SELECT 1 FROM bt_history x WHERE x.client_code = e.client_code AND x.article = i.article)
    ORDER BY i.buyers DESC, i.article
    LIMIT %(k)s
) p
WHERE e.task = 'cross_sell';

-- step: cross_sell_random
INSERT INTO bt_rankings
SELECT 'cross_sell', 'random', e.client_code, p.article, p.rank
FROM bt_evaluated e
CROSS JOIN LATERAL (
    SELECT i.article, row_number() OVER (ORDER BY hashtextextended(e.client_code || '|' || i.article || '|' || %(cutoff)s::text, 3)) AS rank
    FROM bt_items i
    WHERE NOT EXISTS (SELECT 1 FROM bt_history x WHERE x.client_code = e.client_code AND x.article = i.article)
    ORDER BY 2
    LIMIT %(k)s
) p
WHERE e.task = 'cross_sell';

-- step: metrics
-- Per evaluated customer and method: relevant articles in the top k, and how many were relevant
-- (a customer a method has nothing for is a miss). Aggregated in winecrm/backtest.py.
WITH methods AS (SELECT DISTINCT task, method FROM bt_rankings),
hits AS (
    SELECT k.task, k.method, k.client_code, count(r.article) AS hits
    FROM bt_rankings k
    LEFT JOIN bt_relevant r ON r.task = k.task AND r.client_code = k.client_code AND r.article = k.article
    WHERE k.rank <= %(k)s
    GROUP BY k.task, k.method, k.client_code
)
SELECT m.task, m.method, e.client_code, coalesce(h.hits, 0) AS hits, e.relevant
FROM methods m
JOIN bt_evaluated e ON e.task = m.task
LEFT JOIN hits h ON h.task = m.task AND h.method = m.method AND h.client_code = e.client_code
ORDER BY m.task, m.method, e.client_code;
