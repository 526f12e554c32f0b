-- Upsert staged products into etl.produits (one row per article; the latest export wins).

-- step: upsert
-- Returns how many rows were inserted and how many existing rows were replaced (superseded).
WITH upserted AS (
INSERT INTO etl.produits AS p (article, produit, millesime, famille_crm, sous_famille, macro_categorie,
                               prix_ttc, price_band, premium_tier, cepage, couleur,
                               cuvee, contenance, file_id, source_row, loaded_run, updated_at)
SELECT DISTINCT ON (article)
       article, produit, millesime, famille_crm, sous_famille, macro_categorie, prix_ttc, price_band,
       premium_tier, cepage, couleur, cuvee, contenance, file_id, source_row, %(run_id)s, now()
FROM stg_produits
ORDER BY article, export_date DESC, file_id DESC, source_row DESC
ON CONFLICT (article) DO UPDATE SET
    produit = EXCLUDED.produit,
    millesime = EXCLUDED.millesime,
    famille_crm = EXCLUDED.famille_crm,
    sous_famille = COALESCE(EXCLUDED.sous_famille, p.sous_famille),
    macro_categorie = COALESCE(EXCLUDED.macro_categorie, p.macro_categorie),
    prix_ttc = EXCLUDED.prix_ttc,
    price_band = COALESCE(EXCLUDED.price_band, p.price_band),
    premium_tier = COALESCE(EXCLUDED.premium_tier, p.premium_tier),
    cepage = COALESCE(EXCLUDED.cepage, p.cepage),
    couleur = COALESCE(EXCLUDED.couleur, p.couleur),
    cuvee = COALESCE(EXCLUDED.cuvee, p.cuvee),
    contenance = COALESCE(EXCLUDED.contenance, p.contenance),
    file_id = EXCLUDED.file_id,
    source_row = EXCLUDED.source_row,
    loaded_run = EXCLUDED.loaded_run,
    updated_at = now()
-- Never let an older export overwrite a newer one; between two exports of the same date the
-- later-registered file wins, so the result does not depend on the order runs load them in.
WHERE EXISTS (SELECT 1 FROM etl.file_manifest old_m, etl.file_manifest new_m
              WHERE old_m.file_id = p.file_id AND new_m.file_id = EXCLUDED.file_id
                AND (old_m.export_date, old_m.file_id) <= (new_m.export_date, new_m.file_id))
RETURNING (xmax = 0) AS inserted
)
SELECT count(*) FILTER (WHERE inserted) AS inserted, count(*) FILTER (WHERE NOT inserted) AS replaced
FROM upserted;
