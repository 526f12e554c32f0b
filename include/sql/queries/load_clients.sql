-- Upsert staged customers into etl.clients: the latest export wins; a column the export did
-- not carry (NULL in staging because absent from the header) keeps its previous value.

-- step: upsert
-- Returns how many rows were inserted and how many existing rows were replaced (superseded).
WITH upserted AS (
INSERT INTO etl.clients AS c (client_code, nom, prenom, email, email_valid, telephone, adresse,
                              code_postal, ville, pays, opt_out, file_id, source_row, loaded_run, updated_at)
SELECT DISTINCT ON (client_code)
       client_code, nom, prenom, email, email_valid, telephone, adresse, code_postal, ville, pays,
       opt_out, file_id, source_row, %(run_id)s, now()
FROM stg_clients
ORDER BY client_code, export_date DESC, file_id DESC, source_row DESC
ON CONFLICT (client_code) DO UPDATE SET
    nom = COALESCE(EXCLUDED.nom, c.nom),
    prenom = COALESCE(EXCLUDED.prenom, c.prenom),
    email = EXCLUDED.email,
    email_valid = EXCLUDED.email_valid,
    telephone = COALESCE(EXCLUDED.telephone, c.telephone),
    adresse = COALESCE(EXCLUDED.adresse, c.adresse),
    code_postal = COALESCE(EXCLUDED.code_postal, c.code_postal),
    ville = COALESCE(EXCLUDED.ville, c.ville),
    pays = COALESCE(EXCLUDED.pays, c.pays),
    opt_out = COALESCE(EXCLUDED.opt_out, c.opt_out),
    file_id = EXCLUDED.file_id,
    source_row = EXCLUDED.source_row,
    loaded_run = EXCLUDED.loaded_run,
    updated_at = now()
-- Never let an older export overwrite a newer one; between two exports of the same date the
-- later-registered file wins, so the result does not depend on the order runs load them in.
WHERE EXISTS (SELECT 1 FROM etl.file_manifest old_m, etl.file_manifest new_m
              WHERE old_m.file_id = c.file_id AND new_m.file_id = EXCLUDED.file_id
                AND (old_m.export_date, old_m.file_id) <= (new_m.export_date, new_m.file_id))
RETURNING (xmax = 0) AS inserted
)
SELECT count(*) FILTER (WHERE inserted) AS inserted, count(*) FILTER (WHERE NOT inserted) AS replaced
FROM upserted;
