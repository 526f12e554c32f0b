"""Load: bulk COPY of validated rows into a staging table, then set-based SQL into the warehouse.

Each dataset is loaded in its own transaction: either every validated file of the dataset is in
the warehouse (and marked ``loaded`` in the manifest) or none is; the datasets of a run commit
one after the other (products, customers, stock, then sales). Whoever was erased (GDPR) and
comes back with an export is anonymised again inside that transaction, before its commit
(``winecrm.privacy.register.reapply_erasures``). The SQL lives in
``include/sql/queries``. Only the run that owns a file marks it loaded; the caller holds the
warehouse's writer lock, so no other load runs meanwhile. The customers' load also appends the
consent changes its export states to the consent history (``winecrm.privacy.consent``), in the
same transaction.
"""

from __future__ import annotations

import json
import logging
import time

import pandas as pd
import psycopg

from winecrm.core import storage
from winecrm.core.queries import named_steps
from winecrm.core.storage import run_work_dir
from winecrm.etl.contract import DATASETS, VENTES_LIGNES, warehouse_columns
from winecrm.etl.ingest import set_status
from winecrm.etl.readers import ROW_COLUMN

log = logging.getLogger(__name__)

# Staging column types, in COPY order (from the contract). file_id / source_row / export_date are added to each.
STAGING_COLUMNS: dict[str, list[tuple[str, str]]] = {name: warehouse_columns(ds) for name, ds in DATASETS.items()}
TRAILER = [("file_id", "bigint"), ("source_row", "bigint"), ("export_date", "date")]
LOAD_ORDER = ("produits", "clients", "stock", "ventes_lignes")


def _staging_frame(dataset_name: str, good: pd.DataFrame, file_id: int, export_date) -> pd.DataFrame:
    out = pd.DataFrame(index=good.index)
    for column, kind in STAGING_COLUMNS[dataset_name]:
        if column not in good:
            out[column] = pd.Series(None, index=good.index, dtype="string")
            continue
        values = good[column]
        if kind == "date":
            values = pd.to_datetime(values).dt.normalize()
        elif kind == "integer":
            values = pd.to_numeric(values, errors="coerce").astype("Int64")
        elif kind == "boolean":
            values = values.astype("boolean")
        out[column] = values
    out["file_id"] = file_id
    out["source_row"] = good[ROW_COLUMN].astype("int64")
    out["export_date"] = pd.Timestamp(str(export_date))
    return out


def _csv_payload(frame: pd.DataFrame) -> tuple[int, memoryview]:
    """A frame as CSV written by Arrow (several times faster than DataFrame.to_csv).

    Arrow quotes every string and leaves nulls unquoted-empty, which is exactly how COPY's CSV
    format tells NULL from an empty string. Timestamps become plain dates.
    """
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.csv as pacsv

    table = pa.Table.from_pandas(frame, preserve_index=False)
    for index, field in enumerate(table.schema):
        if pa.types.is_timestamp(field.type):
            table = table.set_column(index, field.name, pc.cast(table.column(index), pa.date32()))
    sink = pa.BufferOutputStream()
    pacsv.write_csv(table, sink, pacsv.WriteOptions(include_header=False, quoting_style="needed"))
    return len(frame), memoryview(sink.getvalue())


def copy_frames(conn: psycopg.Connection, table: str, frames) -> int:
    """One COPY of many frames; the next frame is read and serialised in a helper thread while
    the server ingests the current one (Arrow and Parquet release the GIL), so on two cores the
    client's work hides behind the server's. Returns the rows sent."""
    from concurrent.futures import ThreadPoolExecutor

    iterator = iter(frames)
    first = next(iterator, None)
    if first is None:
        return 0
    columns = ", ".join(first.columns)
    sent = 0
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="copy-prep") as pool:

        def prepare_next():
            frame = next(iterator, None)
            return None if frame is None else _csv_payload(frame)

        pending = pool.submit(_csv_payload, first)
        with conn.cursor().copy(f"COPY {table} ({columns}) FROM STDIN (FORMAT csv)") as copy:
            while pending is not None:
                result = pending.result()
                if result is None:
                    break
                pending = pool.submit(prepare_next)
                rows, payload = result
                for start in range(0, len(payload), 8 * 1024 * 1024):
                    copy.write(payload[start:start + 8 * 1024 * 1024])
                sent += rows
    return sent


def copy_frame(conn: psycopg.Connection, table: str, frame: pd.DataFrame) -> None:
    copy_frames(conn, table, [frame])


def load_dataset(conn: psycopg.Connection, run_id: str, dataset_name: str,
                 files: list[tuple[int, str, object]]) -> dict:
    """COPY every validated part of ``files`` into staging and apply the dataset's SQL."""
    started = time.perf_counter()
    table = f"stg_{dataset_name}"
    columns = STAGING_COLUMNS[dataset_name] + TRAILER
    work = run_work_dir(run_id)
    staged = 0
    per_file: dict[int, int] = {}
    with conn.transaction():
        conn.execute(f"DROP TABLE IF EXISTS {table}")
        conn.execute(f"CREATE TEMP TABLE {table} ({', '.join(f'{n} {t}' for n, t in columns)}) ON COMMIT DROP")
        for file_id, _, export_date in files:
            for part in good_parts(work, file_id):
                good = read_part(part)
                if good.empty:
                    continue
                copy_frame(conn, table, _staging_frame(dataset_name, good, file_id, export_date))
                staged += len(good)
                per_file[file_id] = per_file.get(file_id, 0) + len(good)
        copy_seconds = time.perf_counter() - started
        conn.execute(f"ANALYZE {table}")
        step_counts = {}
        inserted = replaced = 0
        for label, sql in named_steps(f"load_{dataset_name}"):
            cursor = conn.execute(sql, {"run_id": run_id}) if "%(run_id)s" in sql else conn.execute(sql)
            if label == "upsert":
                inserted, replaced = cursor.fetchone()
                step_counts[label] = inserted + replaced
            else:
                step_counts[label] = cursor.rowcount
        step_counts["erased_again"] = _erased_again(conn, run_id, dataset_name)
        consent = _record_consent_changes(conn, run_id, dataset_name)
        # Which file's rows ended in the table (the newest export of each key wins).
        written_per_file = dict(conn.execute(
            f"SELECT file_id, count(*) FROM etl.{dataset_name} WHERE loaded_run = %s AND file_id = ANY(%s) GROUP BY 1",
            (run_id, [f for f, _, _ in files])).fetchall())
        for file_id, _, _ in files:
            written = written_per_file.get(file_id, 0)
            set_status(conn, file_id, run_id,
                       "status = 'loaded', rows_loaded = %s, rows_skipped = %s, loaded_at = now()",
                       (written, per_file.get(file_id, 0) - written))
    return {"rows_staged": staged, "rows_written": inserted + replaced, "rows_superseded": replaced,
            "rows_skipped": staged - inserted - replaced, "per_file": _per_file_counts(files, per_file, written_per_file),
            "steps": step_counts, "copy_seconds": round(copy_seconds, 3),
            "seconds": round(time.perf_counter() - started, 3), **consent}


def _record_consent_changes(conn: psycopg.Connection, run_id: str, dataset_name: str) -> dict:
    """Customers: the consent history (proof of consent) gets the opt-ins and opt-outs this export
    changed, in the same transaction as the upsert. Returns ``{"consent": counts}`` or ``{}``."""
    if dataset_name != "clients":
        return {}
    from winecrm.privacy.consent import record_export_changes

    return {"consent": record_export_changes(conn, run_id)}


def _erased_again(conn: psycopg.Connection, run_id: str, dataset_name: str) -> int:
    """People erased (GDPR) whom this export brings back, anonymised again inside the dataset's
    transaction, before its commit: no other connection ever sees their details again."""
    from winecrm.privacy.register import reapply_erasures

    return reapply_erasures(conn, run_id=run_id, datasets=[dataset_name])


def _per_file_counts(files, good: dict[int, int], written: dict[int, int]) -> dict[str, dict]:
    return {path: {"good": good.get(file_id, 0), "written": written.get(file_id, 0),
                   "skipped": good.get(file_id, 0) - written.get(file_id, 0)} for file_id, path, _ in files}


SALES_LINE_COLUMNS = [name for name, _ in warehouse_columns(VENTES_LIGNES)] + ["file_id", "source_row", "loaded_run"]


def read_part(part, columns: list[str] | None = None) -> pd.DataFrame:
    return storage.read_parquet(part, columns)


def good_parts(work, file_id: int) -> list:
    return storage.sorted_glob(work / f"file-{file_id}", "good-*.parquet")


def _document_key(frame: pd.DataFrame) -> pd.Series:
    return frame["document_type"].astype("string") + "\x1f" + frame["document_no"].astype("string")


BULK_MIN_LINES = 100_000  # below this, maintaining the key row by row is cheap enough
BULK_SHARE_OF_TABLE = 0.25  # ...and only when the load adds at least this share of the table
# A bulk load replacing at least this share of the table's lines empties it and puts the others
# back (keep_unreplaced) rather than deleting line by line (bench: 1M re-delivered, replace +
# COPY 6.4 s -> 4.0 s on local PostgreSQL 15)
REWRITE_SHARE_OF_TABLE = 0.5


def per_part_rows(parts: list) -> int:
    return sum(storage.parquet_rows(part) for part in parts)


def bulk_rebuild_worthwhile(lines: int, table_rows: float) -> bool:
    return lines >= BULK_MIN_LINES and lines >= BULK_SHARE_OF_TABLE * max(table_rows, 0.0)


def statistics_stale(rows_changed: int, table_rows: float) -> bool:
    """PostgreSQL's own autovacuum rule (50 rows + 10 % of the table, its defaults): past it the
    planner's statistics no longer describe the table."""
    return rows_changed >= 50 + 0.1 * max(table_rows, 0.0)


def estimated_rows(conn: psycopg.Connection, table: str) -> float:
    """The planner's row estimate (-1 before the first ANALYZE counts as empty)."""
    return float(conn.execute("SELECT reltuples FROM pg_class WHERE oid = %s::regclass", (table,)).fetchone()[0])


ARBITRATION_STEPS = ("latest_delivery_in_run", "skip_older_exports", "held_back", "hold_back_incomplete",
                     "incomplete_written", "replace_documents", "not_written")


def _run_step(conn: psycopg.Connection, steps: dict[str, str], label: str, step_counts: dict, timings: dict,
              params: dict | None = None, *, counted_as: str | None = None) -> psycopg.Cursor:
    """Run one step of the SQL file, its row count and time kept under ``counted_as`` (a variant
    of a step counts as the step) or its own label."""
    step_started = time.perf_counter()
    cursor = conn.execute(steps[label], params) if params else conn.execute(steps[label])
    step_counts[counted_as or label] = cursor.rowcount
    timings[counted_as or label] = time.perf_counter() - step_started
    return cursor


def _older_exports_possible(conn: psycopg.Connection, files: list[tuple[int, str, object]], steps: dict[str, str],
                            timings: dict) -> bool:
    """Whether another sales file is newer than the run's oldest (else skip_older_exports, the
    join of every delivered document with the warehouse, cannot remove anything)."""
    if any(export_date is None for _, _, export_date in files):
        return True
    started = time.perf_counter()
    oldest_date, oldest_file = min((export_date, file_id) for file_id, _, export_date in files)
    found = conn.execute(steps["newer_export_known"], {"file_ids": [file_id for file_id, _, _ in files],
                                                       "oldest_date": oldest_date,
                                                       "oldest_file": oldest_file}).fetchone()[0]
    timings["newer_export_known"] = time.perf_counter() - started
    return found


REPLACED_SAMPLE_LINES = 20_000  # lines sampled to estimate the share a bulk load replaces


def _replace_documents(conn: psycopg.Connection, steps: dict[str, str], step_counts: dict, timings: dict,
                       bulk: bool, rows_before: float) -> bool:
    """Remove the old lines of the documents this run writes. Returns True when the table was
    emptied and the lines of other documents set aside in ``kept_lines``, to be put back."""
    if bulk:
        started = time.perf_counter()
        percent = min(100.0, max(0.1, 100.0 * REPLACED_SAMPLE_LINES / max(rows_before, 1.0)))
        lines, replaced = conn.execute(steps["replaced_share"], {"percent": percent}).fetchone()
        if lines < REPLACED_SAMPLE_LINES / 10:  # too few pages drawn (a small or unanalysed table): count all
            lines, replaced = conn.execute(steps["replaced_share"], {"percent": 100.0}).fetchone()
        timings["replaced_share"] = time.perf_counter() - started
        if lines and replaced >= REWRITE_SHARE_OF_TABLE * lines:
            lines_before = _run_step(conn, steps, "lines_before", step_counts, timings).fetchone()[0]
            kept = _run_step(conn, steps, "keep_unreplaced", step_counts, timings).rowcount
            _run_step(conn, steps, "empty_sales_lines", step_counts, timings)
            step_counts["replace_documents"] = lines_before - kept
            return True
    _run_step(conn, steps, "replace_documents", step_counts, timings)
    return False


def _arbitrate_documents(conn: psycopg.Connection, files: list[tuple[int, str, object]], parts: dict[int, list],
                         steps: dict[str, str], step_counts: dict, timings: dict,
                         bulk: bool, rows_before: float) -> tuple[dict[int, set[str]], dict[int, set[str]], bool]:
    """Stage the run's document keys and let ``load_ventes_lignes.sql`` decide which documents
    this run writes (deleting their old lines). Returns, per file, the documents NOT to write,
    and among them those held back (incomplete, their previous version kept); and whether the
    lines of the other documents wait in ``kept_lines`` to be put back (``_replace_documents``)."""
    started = time.perf_counter()
    skipped: dict[int, set[str]] = {}
    held: dict[int, set[str]] = {}
    for table in ("stg_documents", "accepted_documents", "held_back_documents", "incomplete_written"):
        conn.execute(f"DROP TABLE IF EXISTS {table}")
    conn.execute("CREATE TEMP TABLE stg_documents (document_type text, document_no text, file_id bigint, "
                 "export_date date) ON COMMIT DROP")

    def document_frames():
        # One frame per file (two key columns only), so each (document, file) pair is staged once.
        for file_id, _, export_date in files:
            if not parts[file_id]:
                continue
            docs = pd.concat([read_part(part, ["document_type", "document_no"])
                              for part in parts[file_id]], ignore_index=True).drop_duplicates()
            docs["file_id"] = file_id
            docs["export_date"] = pd.Timestamp(str(export_date))
            yield docs

    staged_pairs = copy_frames(conn, "stg_documents", document_frames())
    conn.execute("ANALYZE stg_documents")
    timings["stage_documents"] = time.perf_counter() - started
    one_file = sum(1 for file_id, _, _ in files if parts[file_id]) == 1
    older_possible = _older_exports_possible(conn, files, steps, timings)
    # The usual week: one file, newer than any before, every document complete. Each staged
    # document is then written: the staging table becomes the accepted one as it is (not copied),
    # and nothing is held back or skipped.
    plain = one_file and not older_possible and step_counts.get("incomplete_documents") == 0
    kept_aside = False
    for label in ARBITRATION_STEPS:
        if plain and label in ("latest_delivery_in_run", "held_back", "hold_back_incomplete"):
            if label == "latest_delivery_in_run":
                conn.execute("ALTER TABLE stg_documents RENAME TO accepted_documents")
                conn.execute("ALTER TABLE accepted_documents ADD COLUMN quarantined_lines bigint, "
                             "ADD COLUMN accepted_file boolean NOT NULL DEFAULT false")
            step_counts[label] = staged_pairs if label == "latest_delivery_in_run" else 0
            continue
        if plain and label == "incomplete_written":  # none: its (empty) table as the first load makes it
            _run_step(conn, steps, "incomplete_first_load", step_counts, timings, counted_as=label)
            continue
        if label == "latest_delivery_in_run":
            # One file: each document is there once, nothing to choose (no sort of them all).
            _run_step(conn, steps, "latest_delivery_in_run_one_file" if one_file else label, step_counts, timings,
                      counted_as=label)
            conn.execute("ANALYZE accepted_documents")  # the joins that follow need its size
            continue
        if label == "skip_older_exports" and not older_possible:
            step_counts[label] = 0
            continue
        if label == "replace_documents":
            kept_aside = _replace_documents(conn, steps, step_counts, timings, bulk, rows_before)
            continue
        if label == "not_written" and step_counts["skip_older_exports"] == 0 \
                and step_counts["hold_back_incomplete"] == 0 \
                and step_counts["latest_delivery_in_run"] == staged_pairs:
            step_counts[label] = 0  # every staged (document, file) pair was accepted
            continue
        cursor = _run_step(conn, steps, label, step_counts, timings)
        if label == "not_written":
            for doc_type, doc_no, file_id, held_back in cursor.fetchall():
                key = f"{doc_type}\x1f{doc_no}"
                skipped.setdefault(file_id, set()).add(key)
                if held_back:
                    held.setdefault(file_id, set()).add(key)
    if not plain:
        conn.execute("ANALYZE accepted_documents")
    return skipped, held, kept_aside


def _incomplete_report(conn: psycopg.Connection, steps: dict[str, str], files: list[tuple[int, str, object]],
                       held_lines: dict[int, int], step_counts: dict, timings: dict) -> tuple[dict, dict[int, str]]:
    """What became of the documents delivered with lines in quarantine (after the COPY):
    held back (their previous version kept), loaded as new documents, or — accepted files —
    replacing a previous version, with what that version had more. Also, per file, a sentence
    for the manifest's warnings."""
    paths = {file_id: path for file_id, path, _ in files}
    held_docs: dict[int, int] = {}
    held_quarantined = 0
    if step_counts.get("held_back"):
        for file_id, documents, quarantined in conn.execute(
                "SELECT file_id, count(*), sum(quarantined_lines) FROM held_back_documents GROUP BY 1"):
            held_docs[file_id] = documents
            held_quarantined += int(quarantined)
    report = {
        "held_back": {"documents": sum(held_docs.values()), "good_lines": sum(held_lines.values()),
                      "quarantined_lines": held_quarantined},
        "loaded_new": {"documents": 0, "good_lines": 0, "quarantined_lines": 0},
        "accepted_replaced": {"documents": 0, "quarantined_lines": 0, "old_lines": 0, "new_lines": 0,
                              "lines_removed": 0, "mt_ht_removed": 0.0, "mt_ttc_removed": 0.0, "files": []},
    }
    warnings: dict[int, list[str]] = {}
    for file_id, documents in held_docs.items():
        warnings.setdefault(file_id, []).append(
            f"load: {documents} document(s) with lines in quarantine kept in their previous version; "
            f"{held_lines.get(file_id, 0)} good line(s) of this file not written")
    rows = _run_step(conn, steps, "incomplete_outcome", step_counts, timings).fetchall()
    replaced = report["accepted_replaced"]
    for file_id, was_replaced, documents, quarantined, old_lines, new_lines, ht_removed, ttc_removed in rows:
        if not was_replaced:
            new = report["loaded_new"]
            new["documents"] += documents
            new["good_lines"] += int(new_lines)
            new["quarantined_lines"] += int(quarantined)
            continue
        replaced["documents"] += documents
        replaced["quarantined_lines"] += int(quarantined)
        replaced["old_lines"] += int(old_lines)
        replaced["new_lines"] += int(new_lines)
        replaced["mt_ht_removed"] += float(ht_removed)
        replaced["mt_ttc_removed"] += float(ttc_removed)
        replaced["files"].append(paths[file_id])
        warnings.setdefault(file_id, []).append(
            f"load: accepted with lines in quarantine: {documents} document(s) replaced by their good lines, "
            f"{int(old_lines) - int(new_lines)} line(s) and {float(ht_removed):.2f} EUR excl. VAT fewer than "
            "the previous version")
    replaced["lines_removed"] = replaced["old_lines"] - replaced["new_lines"]
    replaced["mt_ht_removed"] = round(replaced["mt_ht_removed"], 2)
    replaced["mt_ttc_removed"] = round(replaced["mt_ttc_removed"], 2)
    return report, {file_id: "; ".join(texts) for file_id, texts in warnings.items()}


def load_sales_lines(conn: psycopg.Connection, run_id: str, files: list[tuple[int, str, object]]) -> dict:
    """Sales lines, replaced document by document, in one transaction.

    Only the document keys go through a staging table (one row per document and file); the
    SQL in ``load_ventes_lignes.sql`` decides which documents this run writes and deletes their
    old lines; then the lines are COPYed straight into ``etl.ventes_lignes``. Staging every
    line first and INSERT…SELECT-ing them would write each row twice: measured 0.28× the speed
    of a plain COPY, against ~0.7× for this (bench/RESULTS.md).

    A document delivered with lines in quarantine does not replace the version the warehouse
    has (its good lines are held back) unless its file was accepted by a person; what became
    of such documents is in the report's ``incomplete_documents``.
    """
    started = time.perf_counter()
    work = run_work_dir(run_id)
    parts = {file_id: good_parts(work, file_id) for file_id, _, _ in files}
    steps = dict(named_steps("load_ventes_lignes"))
    per_file: dict[int, int] = {}
    written_per_file: dict[int, int] = {}
    held_per_file: dict[int, int] = {}
    step_counts: dict[str, int] = {}
    with conn.transaction():
        # Sorting / hashing a few hundred thousand document keys spills to disk at the default 4 MB.
        conn.execute("SET LOCAL work_mem = '256MB'")
        skipped: dict[int, set[str]] = {}
        held: dict[int, set[str]] = {}
        timings: dict[str, float] = {}
        conn.execute("DROP TABLE IF EXISTS incomplete_documents")
        _run_step(conn, steps, "incomplete_documents", step_counts, timings,
                  {"file_ids": [file_id for file_id, _, _ in files]})
        first_load = conn.execute("SELECT NOT EXISTS (SELECT 1 FROM etl.ventes_lignes)").fetchone()[0]
        lines_to_write = sum(per_part_rows(parts[file_id]) for file_id, _, _ in files)
        rows_before = estimated_rows(conn, "etl.ventes_lignes")
        rebuild_key = bulk_rebuild_worthwhile(lines_to_write, rows_before)
        kept_aside = False
        if first_load and len(files) == 1:
            # Fast path for the initial history load: an empty table and a single file leave no
            # document to replace and none to arbitrate between files.
            step_counts["document_steps_skipped"] = 1
            conn.execute("DROP TABLE IF EXISTS incomplete_written")
            _run_step(conn, steps, "incomplete_first_load", step_counts, timings)
        else:
            skipped, held, kept_aside = _arbitrate_documents(conn, files, parts, steps, step_counts, timings,
                                                             bulk=rebuild_key, rows_before=rows_before)
        copy_started = time.perf_counter()

        def line_frames():
            for file_id, _, _ in files:
                for part in parts[file_id]:
                    good = read_part(part)
                    if good.empty:
                        continue
                    per_file[file_id] = per_file.get(file_id, 0) + len(good)
                    if file_id in skipped:
                        keys = _document_key(good)
                        if file_id in held:
                            held_per_file[file_id] = held_per_file.get(file_id, 0) + int(keys.isin(held[file_id]).sum())
                        good = good[~keys.isin(skipped[file_id])]
                    written_per_file[file_id] = written_per_file.get(file_id, 0) + len(good)
                    frame = _staging_frame("ventes_lignes", good, file_id, "2000-01-01")
                    frame["loaded_run"] = run_id
                    yield frame[SALES_LINE_COLUMNS]

        if rebuild_key:
            # A bulk load (first load, big backfill): building the primary key once after the COPY
            # costs a fraction of maintaining it row by row (bench: 2.3 s vs 3.6–4.2 s per 1M
            # lines). The constraint is back before commit; readers wait for this transaction.
            conn.execute("SET LOCAL maintenance_work_mem = '512MB'")
            conn.execute("ALTER TABLE etl.ventes_lignes DROP CONSTRAINT ventes_lignes_pkey")
        if kept_aside:
            _run_step(conn, steps, "restore_kept", step_counts, timings)
        written = copy_frames(conn, "etl.ventes_lignes", line_frames())
        if rebuild_key:
            key_started = time.perf_counter()
            conn.execute("ALTER TABLE etl.ventes_lignes ADD CONSTRAINT ventes_lignes_pkey "
                         "PRIMARY KEY (document_type, document_no, source_row)")
            timings["primary_key"] = time.perf_counter() - key_started
        step_counts["primary_key_rebuilt"] = int(rebuild_key)
        step_counts["lines_written"] = written
        timings["copy_lines"] = time.perf_counter() - copy_started
        incomplete, warnings = _incomplete_report(conn, steps, files, held_per_file, step_counts, timings)
        step_counts["erased_again"] = _erased_again(conn, run_id, "ventes_lignes")
        if statistics_stale(written + step_counts.get("replace_documents", 0), rows_before):
            # Scoring runs right after this load: with the planner's statistics of an empty (or much
            # smaller) table its affinity self-join took 74 s instead of 3 s on 1M lines, and
            # autovacuum would analyse only later. ANALYZE samples a fixed number of rows (0.5 s).
            analyse_started = time.perf_counter()
            conn.execute("ANALYZE etl.ventes_lignes")
            timings["analyze"] = time.perf_counter() - analyse_started
        step_counts["analyzed"] = int("analyze" in timings)
        for file_id, _, _ in files:
            written_here = written_per_file.get(file_id, 0)
            skipped_here = per_file.get(file_id, 0) - written_here - held_per_file.get(file_id, 0)
            set_status(conn, file_id, run_id,
                       "status = 'loaded', rows_loaded = %s, rows_skipped = %s, loaded_at = now(), "
                       "warnings = warnings || %s::jsonb",
                       (written_here, skipped_here, json.dumps([warnings[file_id]] if file_id in warnings else [])))
    staged = sum(per_file.values())
    held_lines = sum(held_per_file.values())
    per_file_counts = _per_file_counts(files, per_file, written_per_file)
    for file_id, path, _ in files:
        per_file_counts[path]["held_back"] = held_per_file.get(file_id, 0)
        per_file_counts[path]["skipped"] -= held_per_file.get(file_id, 0)
    return {"rows_staged": staged, "rows_written": written,
            "rows_superseded": step_counts.get("replace_documents", 0), "rows_skipped": staged - written - held_lines,
            "rows_held_back": held_lines, "incomplete_documents": incomplete,
            "per_file": per_file_counts, "steps": step_counts,
            "step_seconds": {k: round(v, 3) for k, v in timings.items()},
            "seconds": round(time.perf_counter() - started, 3)}


def load(conn: psycopg.Connection, run_id: str) -> dict:
    files = conn.execute(
        """SELECT dataset, file_id, file_path, export_date FROM etl.file_manifest
           WHERE run_id = %s AND status = 'validated' ORDER BY file_id""",
        (run_id,),
    ).fetchall()
    by_dataset: dict[str, list] = {}
    for dataset_name, file_id, file_path, export_date in files:
        by_dataset.setdefault(dataset_name, []).append((file_id, file_path, export_date))
    report = {}
    for dataset_name in LOAD_ORDER:
        if dataset_name == "ventes_lignes" and dataset_name in by_dataset:
            report[dataset_name] = load_sales_lines(conn, run_id, by_dataset[dataset_name])
        elif dataset_name in by_dataset:
            report[dataset_name] = load_dataset(conn, run_id, dataset_name, by_dataset[dataset_name])
    conn.commit()
    return report
