-- Upsert staged stock levels into etl.stock (per article, vintage, warehouse; newest snapshot wins).

-- step: upsert
-- Returns how many rows were inserted and how many existing rows were replaced (superseded).
WITH upserted AS (
INSERT INTO etl.stock AS s (article, millesime, entrepot, quantite, unite, snapshot_date,
                            file_id, source_row, loaded_run, updated_at)
SELECT DISTINCT ON (article, COALESCE(millesime, 0), entrepot)
       article, COALESCE(millesime, 0), entrepot, quantite, unite, export_date,
       file_id, source_row, %(run_id)s, now()
FROM stg_stock
ORDER BY article, COALESCE(millesime, 0), entrepot, export_date DESC, file_id DESC, source_row DESC
ON CONFLICT (article, millesime, entrepot) DO UPDATE SET
    quantite = EXCLUDED.quantite,
    unite = COALESCE(EXCLUDED.unite, s.unite),
    snapshot_date = EXCLUDED.snapshot_date,
    file_id = EXCLUDED.file_id,
    source_row = EXCLUDED.source_row,
    loaded_run = EXCLUDED.loaded_run,
    updated_at = now()
WHERE (s.snapshot_date, s.file_id) <= (EXCLUDED.snapshot_date, EXCLUDED.file_id)
RETURNING (xmax = 0) AS inserted
)
SELECT count(*) FILTER (WHERE inserted) AS inserted, count(*) FILTER (WHERE NOT inserted) AS replaced
FROM upserted;
