-- What the e-mails' French copy is written from (winecrm/campaigns/copy_fr.py, read by render.py):
-- the structured facts of each recommended wine and of each recipient's purchases, never the
-- ERP label nor crm.recommendations.reason_fr (the estate's own summary of a recommendation).

-- step: wines
-- One row per recommendation of the date: the wine's cuvée, vintage, pack and unit volume, its
-- grape (else colour), the newest vintage of its cuvée in stock, and the whole recommendation
-- row as JSON (columns added later, such as an offer's end date, are read from it when present).
SELECT r.client_code, r.rank, r.cuvee, r.millesime, r.source_cuvee, r.offer_code,
       a.pack, a.unit_cl, a.taste, a.taste_kind,
       (SELECT max(o.millesime) FROM crm.articles o
        WHERE o.cuvee = r.cuvee AND EXISTS (SELECT 1 FROM etl.stock s WHERE s.article = o.article
                                            GROUP BY s.article HAVING sum(s.quantite) > 0)) AS newest_vintage,
       to_jsonb(r) AS recommendation
FROM crm.recommendations r
LEFT JOIN crm.articles a ON a.article = r.article
WHERE r.as_of_date = %(as_of)s AND NOT r.is_control;

-- step: purchases
-- Per recipient of the date and cuvée bought up to the date: the cuvée's grape (else colour) and
-- the last vintage they took of it.
SELECT v.client_code, coalesce(a.cuvee, v.article) AS cuvee, min(a.taste) AS taste, min(a.taste_kind) AS taste_kind,
       (array_agg(a.millesime ORDER BY v.date_livraison DESC, a.millesime DESC)
            FILTER (WHERE a.millesime IS NOT NULL))[1] AS last_vintage
FROM etl.ventes_lignes v
LEFT JOIN crm.articles a ON a.article = v.article
WHERE v.client_code IN (SELECT client_code FROM crm.recommendations WHERE as_of_date = %(as_of)s AND NOT is_control)
  AND v.date_livraison <= %(as_of)s AND v.document_type = ANY(%(sale_types)s)
GROUP BY 1, 2;
