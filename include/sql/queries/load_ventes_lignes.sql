-- Sales lines: a document (document_type, document_no) is the unit of replacement.
-- Before this runs, stg_documents holds one row per (document, file) delivered in this run.
-- After it, accepted_documents holds the documents whose lines this run writes; the lines
-- themselves are then COPYed straight into etl.ventes_lignes (see winecrm/etl/load.py).
--
-- A document delivered with lines in quarantine is incomplete: its good lines alone are not
-- the document. Such a version never replaces a version the warehouse already has (the
-- previous valid version stays until a complete one arrives), unless a person accepted the
-- file (etl.file_manifest.accepted_by): then it replaces it, and incomplete_written keeps
-- what the old version held so the load can say what the replacement removed.

-- step: incomplete_documents
-- Documents of the run's files (%(file_ids)s) with lines in quarantine, from the quarantined
-- rows' own document key (validation stores it typed: trimmed, document_type upper-cased, as
-- the good lines have it). A line quarantined only as an exact duplicate of another line of
-- the file does not count: the line it repeats is among the good ones. Small (bad rows only):
-- the one extra join the load makes against etl.quarantine.
CREATE TEMP TABLE incomplete_documents ON COMMIT DROP AS
SELECT q.raw_values ->> 'document_type' AS document_type, q.raw_values ->> 'document_no' AS document_no,
       q.file_id, count(*) AS quarantined_lines, (m.accepted_by IS NOT NULL) AS accepted
FROM etl.quarantine q
JOIN etl.file_manifest m ON m.file_id = q.file_id
WHERE q.file_id = ANY(%(file_ids)s)
  AND q.row_no IS NOT NULL
  AND q.raw_values ->> 'document_type' IS NOT NULL
  AND q.raw_values ->> 'document_no' IS NOT NULL
  AND q.expectations <> ARRAY['expect_column_values_to_be_null(_duplicate_of_row)']
GROUP BY 1, 2, 3, 5;

-- step: latest_delivery_in_run
-- The same document in several files of this run: the newest complete (or accepted) export
-- wins (export date, then the later-registered file), the same order skip_older_exports
-- applies across runs, so the warehouse ends the same whichever run loads which file first;
-- a newer incomplete export only wins when the run has no complete one.
CREATE TEMP TABLE accepted_documents ON COMMIT DROP AS
SELECT DISTINCT ON (s.document_type, s.document_no) s.document_type, s.document_no, s.file_id, m.export_date,
       i.quarantined_lines, coalesce(i.accepted, false) AS accepted_file
FROM stg_documents s
JOIN etl.file_manifest m ON m.file_id = s.file_id
LEFT JOIN incomplete_documents i
       ON i.document_type = s.document_type AND i.document_no = s.document_no AND i.file_id = s.file_id
ORDER BY s.document_type, s.document_no, (i.file_id IS NOT NULL AND NOT i.accepted), m.export_date DESC,
         s.file_id DESC;

-- step: latest_delivery_in_run_one_file
-- latest_delivery_in_run when the run's documents come in one file: each is there once, so
-- there is nothing to choose — the same rows without sorting every document of the run.
CREATE TEMP TABLE accepted_documents ON COMMIT DROP AS
SELECT s.document_type, s.document_no, s.file_id, m.export_date,
       i.quarantined_lines, coalesce(i.accepted, false) AS accepted_file
FROM stg_documents s
JOIN etl.file_manifest m ON m.file_id = s.file_id
LEFT JOIN incomplete_documents i
       ON i.document_type = s.document_type AND i.document_no = s.document_no AND i.file_id = s.file_id;

-- step: newer_export_known
-- Whether skip_older_exports can find anything: a sales file other than the run's exported after
-- the run's oldest file (export date, then file id), or of unknown date. Usually none (each
-- week's export is the newest), and the manifest is small: the join of every delivered document
-- with the warehouse's lines is then skipped.
SELECT EXISTS (
    SELECT 1 FROM etl.file_manifest m
    WHERE m.dataset = 'ventes_lignes' AND m.file_id <> ALL(%(file_ids)s)
      AND (m.export_date IS NULL OR (m.export_date, m.file_id) > (%(oldest_date)s::date, %(oldest_file)s::bigint)));

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

-- step: held_back
-- Incomplete versions (file not accepted) kept out, so their document keeps its previous
-- version. First those the run does not write anyway, because it writes an older complete
-- version of the run or the warehouse has the document: an incomplete version that is the
-- newest delivery of its document in the run and in the warehouse.
CREATE TEMP TABLE held_back_documents ON COMMIT DROP AS
WITH newest_in_run AS (
    SELECT DISTINCT ON (s.document_type, s.document_no) s.document_type, s.document_no, s.file_id, m.export_date
    FROM stg_documents s
    JOIN (SELECT DISTINCT document_type, document_no FROM incomplete_documents WHERE NOT accepted) i
      ON i.document_type = s.document_type AND i.document_no = s.document_no
    JOIN etl.file_manifest m ON m.file_id = s.file_id
    ORDER BY s.document_type, s.document_no, m.export_date DESC, s.file_id DESC
)
SELECT n.document_type, n.document_no, n.file_id, i.quarantined_lines
FROM newest_in_run n
JOIN incomplete_documents i
  ON i.document_type = n.document_type AND i.document_no = n.document_no AND i.file_id = n.file_id AND NOT i.accepted
LEFT JOIN accepted_documents a  -- at most one row per document: the version this run writes
       ON a.document_type = n.document_type AND a.document_no = n.document_no
WHERE a.file_id IS DISTINCT FROM n.file_id
  AND NOT EXISTS (SELECT 1 FROM etl.ventes_lignes v JOIN etl.file_manifest m ON m.file_id = v.file_id
                  WHERE v.document_type = n.document_type AND v.document_no = n.document_no
                    AND (m.export_date, m.file_id) > (n.export_date, n.file_id))
  AND (a.file_id IS NOT NULL
       OR EXISTS (SELECT 1 FROM etl.ventes_lignes v
                  WHERE v.document_type = n.document_type AND v.document_no = n.document_no))
UNION ALL
-- Then incomplete versions the run would write (no complete one in the run) over a version
-- the warehouse has.
SELECT a.document_type, a.document_no, a.file_id, a.quarantined_lines
FROM accepted_documents a
WHERE a.quarantined_lines IS NOT NULL AND NOT a.accepted_file
  AND EXISTS (SELECT 1 FROM etl.ventes_lignes v
              WHERE v.document_type = a.document_type AND v.document_no = a.document_no);

-- step: hold_back_incomplete
DELETE FROM accepted_documents a
USING held_back_documents h
WHERE a.document_type = h.document_type AND a.document_no = h.document_no AND a.file_id = h.file_id;

-- step: incomplete_written
-- The incomplete versions this run writes, with what the warehouse held of their document
-- before: nothing (a new document), or, for an accepted file, the version it replaces.
CREATE TEMP TABLE incomplete_written ON COMMIT DROP AS
SELECT a.document_type, a.document_no, a.file_id, a.quarantined_lines, a.accepted_file,
       count(v.document_no) AS old_lines, sum(v.mt_ht) AS old_mt_ht, sum(v.mt_ttc) AS old_mt_ttc
FROM accepted_documents a
LEFT JOIN etl.ventes_lignes v ON v.document_type = a.document_type AND v.document_no = a.document_no
WHERE a.quarantined_lines IS NOT NULL
GROUP BY 1, 2, 3, 4, 5;

-- step: replaced_share
-- Before a bulk load: roughly which share of the warehouse's lines the accepted documents
-- replace, on a sample of the table's pages (load.py sizes it; both ways give the same table,
-- only their cost differs, so an estimate is enough to choose).
SELECT count(*) AS lines, count(a.document_no) AS replaced
FROM etl.ventes_lignes v TABLESAMPLE SYSTEM (%(percent)s) REPEATABLE (0)
LEFT JOIN accepted_documents a ON a.document_type = v.document_type AND a.document_no = v.document_no;

-- step: lines_before
SELECT count(*) FROM etl.ventes_lignes;

-- step: keep_unreplaced
-- replace_documents when the run replaces most of the table (a whole history re-exported):
-- the few lines it does not replace are set aside, the table emptied and they are put back
-- (load.py). Deleting every line instead marks each one dead, and the COPY and the key's
-- rebuild that follow then wade through twice the table.
CREATE TEMP TABLE kept_lines ON COMMIT DROP AS
SELECT v.* FROM etl.ventes_lignes v
WHERE NOT EXISTS (SELECT 1 FROM accepted_documents a
                  WHERE a.document_type = v.document_type AND a.document_no = v.document_no);

-- step: empty_sales_lines
-- Transactional: a failed load rolls it back. Readers wait for the commit (the key is rebuilt
-- under the same lock); a REPEATABLE READ reader must lock the table before its first query
-- (privacy/access.py does).
TRUNCATE etl.ventes_lignes;

-- step: restore_kept
INSERT INTO etl.ventes_lignes SELECT * FROM kept_lines;

-- step: replace_documents
DELETE FROM etl.ventes_lignes v
USING accepted_documents a
WHERE v.document_type = a.document_type
  AND v.document_no = a.document_no;

-- step: not_written
-- (document, file) pairs whose lines must not be written: superseded in the run or by a newer
-- export, or held back (incomplete, a previous version kept).
SELECT s.document_type, s.document_no, s.file_id, (h.file_id IS NOT NULL) AS held_back
FROM stg_documents s
LEFT JOIN accepted_documents a
       ON a.document_type = s.document_type AND a.document_no = s.document_no AND a.file_id = s.file_id
LEFT JOIN held_back_documents h
       ON h.document_type = s.document_type AND h.document_no = s.document_no AND h.file_id = s.file_id
WHERE a.file_id IS NULL;

-- step: incomplete_first_load
-- First load of a single file (no arbitration): every incomplete document is new.
CREATE TEMP TABLE incomplete_written ON COMMIT DROP AS
SELECT document_type, document_no, file_id, quarantined_lines, accepted AS accepted_file,
       0::bigint AS old_lines, NULL::numeric AS old_mt_ht, NULL::numeric AS old_mt_ttc
FROM incomplete_documents;

-- step: incomplete_outcome
-- After the COPY: per file, the incomplete documents written, new ones apart from those that
-- replaced a version (accepted files), with their lines before and after.
SELECT w.file_id, w.old_lines > 0 AS replaced, count(*) AS documents, sum(w.quarantined_lines) AS quarantined_lines,
       sum(w.old_lines) AS old_lines, sum(n.lines) AS new_lines,
       coalesce(sum(w.old_mt_ht), 0) - coalesce(sum(n.mt_ht), 0) AS mt_ht_removed,
       coalesce(sum(w.old_mt_ttc), 0) - coalesce(sum(n.mt_ttc), 0) AS mt_ttc_removed
FROM incomplete_written w
CROSS JOIN LATERAL (
    SELECT count(*) AS lines, sum(v.mt_ht) AS mt_ht, sum(v.mt_ttc) AS mt_ttc
    FROM etl.ventes_lignes v
    WHERE v.document_type = w.document_type AND v.document_no = w.document_no) n
WHERE n.lines > 0
GROUP BY 1, 2
ORDER BY 1, 2;
