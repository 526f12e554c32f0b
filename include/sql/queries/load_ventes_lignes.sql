-- Load staged sales lines (stg_ventes_lignes, filled by COPY) into etl.ventes_lignes.
-- A document is the unit of replacement: the newest export that carries it wins, so an
-- overlapping re-delivery replaces its lines instead of adding them again.

-- step: keep_latest_delivery_in_run
-- The same document in several files of this run: keep the lines of the latest file only.
DELETE FROM stg_ventes_lignes s
USING (
    SELECT document_type, document_no, max(file_id) AS file_id
    FROM stg_ventes_lignes
    GROUP BY document_type, document_no
    HAVING count(DISTINCT file_id) > 1
) latest
WHERE s.document_type = latest.document_type
  AND s.document_no = latest.document_no
  AND s.file_id < latest.file_id;

-- step: skip_older_exports
-- Never let an older export overwrite a document already loaded from a newer one.
DELETE FROM stg_ventes_lignes s
USING etl.ventes_lignes v
JOIN etl.file_manifest m ON m.file_id = v.file_id
WHERE v.document_type = s.document_type
  AND v.document_no = s.document_no
  AND v.line_seq = 1
  AND m.export_date > s.export_date;

-- step: replace_documents
DELETE FROM etl.ventes_lignes v
USING (SELECT DISTINCT document_type, document_no FROM stg_ventes_lignes) d
WHERE v.document_type = d.document_type
  AND v.document_no = d.document_no;

-- step: insert_lines
INSERT INTO etl.ventes_lignes (
    document_type, document_no, line_seq, client_code, date_livraison, produit_label, article,
    qty_line, pu_ht, mt_ht, mt_ttc, marge, email, email_valid, code_postal, ville,
    file_id, source_row, loaded_run)
SELECT document_type, document_no,
       row_number() OVER (PARTITION BY document_type, document_no ORDER BY file_id, source_row),
       client_code, date_livraison, produit_label, article,
       qty_line, pu_ht, mt_ht, mt_ttc, marge, email, email_valid, code_postal, ville,
       file_id, source_row, %(run_id)s
FROM stg_ventes_lignes;
