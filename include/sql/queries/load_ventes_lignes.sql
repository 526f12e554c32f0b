-- Sales lines: a document (document_type, document_no) is the unit of replacement.
-- Before this runs, stg_documents holds one row per (document, file) delivered in this run.
-- After it, accepted_documents holds the documents whose lines this run writes; the lines
-- themselves are then COPYed straight into etl.ventes_lignes (see winecrm/load.py).

-- step: latest_delivery_in_run
-- The same document in several files of this run: the newest export wins (export date, then the
-- later-registered file), the same order skip_older_exports applies across runs, so the
-- warehouse ends the same whichever run loads which file first.
CREATE TEMP TABLE accepted_documents ON COMMIT DROP AS
SELECT DISTINCT ON (s.document_type, s.document_no) s.document_type, s.document_no, s.file_id, m.export_date
FROM stg_documents s
JOIN etl.file_manifest m ON m.file_id = s.file_id
ORDER BY s.document_type, s.document_no, m.export_date DESC, s.file_id DESC;

-- step: skip_older_exports
-- Never let an older export overwrite a document already loaded from a newer one.
DELETE FROM accepted_documents a
WHERE EXISTS (
    SELECT 1
    FROM etl.ventes_lignes v
    JOIN etl.file_manifest m ON m.file_id = v.file_id
    WHERE v.document_type = a.document_type
      AND v.document_no = a.document_no
      AND (m.export_date, m.file_id) > (a.export_date, a.file_id));

-- step: replace_documents
DELETE FROM etl.ventes_lignes v
USING accepted_documents a
WHERE v.document_type = a.document_type
  AND v.document_no = a.document_no;

-- step: not_written
-- (document, file) pairs whose lines must not be written: superseded in the run or by a newer export.
SELECT s.document_type, s.document_no, s.file_id
FROM stg_documents s
LEFT JOIN accepted_documents a
       ON a.document_type = s.document_type AND a.document_no = s.document_no AND a.file_id = s.file_id
WHERE a.file_id IS NULL;
