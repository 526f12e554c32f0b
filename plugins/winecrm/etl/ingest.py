"""Ingest: find complete exports in RAW, register them by SHA-256, read them into work files.

RAW is never modified, and nothing outside it is read: symbolic links are not followed. A file
is taken only once it is complete (a ``<name>.done`` / ``.ok`` marker next to it, or unchanged
for ``files.settle_seconds``). The same bytes under any name are ingested once: later copies are
recorded in ``etl.file_deliveries`` as duplicates. Each ingested file becomes Parquet parts in
the run's work folder (``winecrm.core.storage``), all values still text.

A file belongs to the run that registered it. Another run takes it over only when that run is
no longer running — finished, failed, or silent for longer than ``timeouts.run_hours`` (a
crashed worker) — never from a live run, and every status change names its run, so two runs
cannot both process one file.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import os
import re
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import psycopg

from winecrm.core import settings, storage
from winecrm.core.storage import run_work_dir
from winecrm.etl.contract import DATASETS
from winecrm.etl.readers import EncodingRetry, FileRejected, detect_format, iter_chunks, no_follow

log = logging.getLogger(__name__)

MARKER_SUFFIXES = (".done", ".ok")
ACCEPT_SUFFIX = ".accept"  # <file>.accept: let this file through the quality gate (see validate)
IGNORED_SUFFIXES = (*MARKER_SUFFIXES, ACCEPT_SUFFIX, ".tmp", ".part", ".crdownload", ".partial")
_DATE_IN_NAME = re.compile(r"(20\d{2})[-_]?([01]\d)[-_]?([0-3]\d)")
_FR_DATE_IN_NAME = re.compile(r"([0-3]\d)[-_.]([01]\d)[-_.](20\d{2})")


@dataclass
class RawFile:
    dataset: str
    path: Path
    relative: str
    size: int
    mtime: float
    complete: bool
    why_incomplete: str | None = None

    @property
    def export_date(self) -> dt.date:
        return export_date_of(self.path.name, self.mtime)

    @property
    def date_in_name(self) -> dt.date | None:
        return date_in_name(self.path.name)


def export_date_of(name: str, mtime: float) -> dt.date:
    """The date an export is for: the last date in its name (…_2023-09-04_2026-10-18.csv ->
    2026-10-18; also 20261116 and 16-11-2026), else its modification date."""
    return date_in_name(name) or dt.datetime.fromtimestamp(mtime).date()


def date_in_name(name: str) -> dt.date | None:
    """The last date written in a file name, if any."""
    found: list[tuple[int, dt.date]] = []
    for pattern, order in ((_DATE_IN_NAME, (0, 1, 2)), (_FR_DATE_IN_NAME, (2, 1, 0))):
        for match in pattern.finditer(name):
            parts = match.groups()
            try:
                found.append((match.start(), dt.date(int(parts[order[0]]), int(parts[order[1]]), int(parts[order[2]]))))
            except ValueError:
                continue
    return max(found)[1] if found else None


def settle_seconds(override: float | None = None) -> float:
    if override is not None:  # the run's trigger-form value
        return float(override)
    env = os.environ.get("CRM_FILE_SETTLE_SECONDS")
    if env is not None:
        return float(env)
    return float(settings.pipeline_config().files.settle_seconds)


def _walk(folder: Path) -> list[Path]:
    """Regular files under ``folder``, recursively, never following a symbolic link (a link in RAW
    could point anywhere on the worker: /etc, another estate's exports, a secrets mount)."""
    found = []
    for root, dirs, files in os.walk(folder, followlinks=False):
        dirs[:] = sorted(d for d in dirs if not os.path.islink(os.path.join(root, d)))
        for name in files:
            path = Path(root) / name
            if path.is_symlink():
                log.warning("Ignored %s: a symbolic link (RAW files must be real files)", path)
                continue
            found.append(path)
    return sorted(found)


def discover(raw_dir: Path, now: float | None = None, settle: float | None = None) -> list[RawFile]:
    """Every candidate export under ``raw_dir/isavigne/<dataset>/`` (recursively), oldest first."""
    now = time.time() if now is None else now
    settle = settle_seconds(settle)
    found: list[RawFile] = []
    base = raw_dir / "isavigne"
    for dataset in DATASETS:
        folder = base / dataset
        if not folder.is_dir() or folder.is_symlink() or base.is_symlink():
            continue
        for path in _walk(folder):
            name = path.name
            if name.startswith((".", "~$")) or name.lower().endswith(IGNORED_SUFFIXES):
                continue
            stat = path.stat()
            has_marker = any(path.with_name(name + s).exists() for s in MARKER_SUFFIXES)
            age = now - stat.st_mtime
            complete = has_marker or settle <= 0 or age >= settle
            found.append(RawFile(
                dataset=dataset, path=path, relative=str(path.relative_to(raw_dir)), size=stat.st_size,
                mtime=stat.st_mtime, complete=complete,
                why_incomplete=None if complete else
                f"modified {age:.0f}s ago (< {settle:.0f}s settle time, no .done marker): still being copied?",
            ))
    found.sort(key=lambda f: (f.export_date, f.mtime, f.path.name))
    return found


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb", opener=no_follow) as fh:
        for block in iter(lambda: fh.read(1024 * 1024), b""):
            digest.update(block)
    return digest.hexdigest()


@dataclass
class IngestReport:
    files_seen: int = 0
    files_new: int = 0
    files_duplicate: int = 0
    files_quarantined: int = 0
    files_waiting: list[str] = field(default_factory=list)
    waiting_export_dates: dict[str, str] = field(default_factory=dict)  # relative path -> export date
    files_owned_elsewhere: list[str] = field(default_factory=list)
    files_taken_again: list[str] = field(default_factory=list)  # re-ingest / accept asked by the run
    files_known: int = 0  # processed by an earlier run, left alone
    files_later: list[str] = field(default_factory=list)  # dated after the run's week: left for their week
    duplicates: list[str] = field(default_factory=list)  # "copy.csv = original.csv"
    rejected: list[str] = field(default_factory=list)
    rows_read: int = 0
    file_ids: list[int] = field(default_factory=list)

    def as_dict(self) -> dict:
        return self.__dict__.copy()


def _utc(ts: float) -> dt.datetime:
    return dt.datetime.fromtimestamp(ts, tz=dt.timezone.utc)


def quarantine_file(conn: psycopg.Connection, file_id: int, run_id: str, raw: RawFile, rejection: FileRejected) -> None:
    with conn.transaction():
        conn.execute("DELETE FROM etl.quarantine WHERE file_id = %s", (file_id,))
        conn.execute(
            """INSERT INTO etl.quarantine (file_id, run_id, dataset, file_path, row_no, column_name,
                                           expectations, reason, raw_values)
               VALUES (%s, %s, %s, %s, NULL, %s, %s, %s, NULL)""",
            (file_id, run_id, raw.dataset, raw.relative, rejection.column, [rejection.check], rejection.reason),
        )
        set_status(conn, file_id, run_id, "status = 'quarantined', status_reason = %s, rows_read = 0, "
                   "rows_good = 0, rows_quarantined = 0, rows_loaded = 0", (rejection.reason,))


LIVE_OWNER = """
    SELECT 1 FROM etl.runs r
    WHERE r.run_id = %(owner)s AND r.status = 'running'
      AND r.attempt = (SELECT max(attempt) FROM etl.runs WHERE run_id = %(owner)s)
      AND r.heartbeat_at > now() - %(stale_hours)s * interval '1 hour'"""


def owner_is_live(conn: psycopg.Connection, owner: str) -> bool:
    """Whether the run owning a file is still running: its current attempt is 'running' and gave
    a sign of life within ``timeouts.run_hours`` (Airflow has failed it by then in any case)."""
    stale_hours = settings.pipeline_config().timeouts.run_hours
    return conn.execute(LIVE_OWNER, {"owner": owner, "stale_hours": stale_hours}).fetchone() is not None


def accepted_by_marker(raw_dir: Path, relative: str) -> bool:
    """``<file>.accept`` next to the file, at least as recent as it: a file re-delivered under the
    same name after the marker (new content) is judged by the quality gate again."""
    marker, target = raw_dir / (relative + ACCEPT_SUFFIX), raw_dir / relative
    try:
        return not marker.is_symlink() and marker.stat().st_mtime >= target.stat().st_mtime
    except OSError:
        return False


def _claim(conn: psycopg.Connection, run_id: str, raw: RawFile, report: IngestReport,
           take_again: frozenset[str] = frozenset(), accepted: frozenset[str] = frozenset()) -> int | None:
    """Register the file's content; return its file_id if this run must ingest it.

    A file already processed is taken again only when the run's params ask for it
    (``reingest_files``), or when the quality gate rejected it and it is now accepted (param
    ``accept_files`` or a ``<file>.accept`` marker)."""
    known = conn.execute(
        "SELECT sha256 FROM etl.file_deliveries WHERE file_path = %s AND size_bytes = %s AND file_mtime = %s",
        (raw.relative, raw.size, _utc(raw.mtime)),
    ).fetchone()
    digest = known[0] if known else sha256_of(raw.path)
    with conn.transaction():
        conn.execute(
            """INSERT INTO etl.file_deliveries (file_path, size_bytes, file_mtime, sha256, first_seen_run)
               VALUES (%s, %s, %s, %s, %s)
               ON CONFLICT (file_path) DO UPDATE SET size_bytes = EXCLUDED.size_bytes,
                   file_mtime = EXCLUDED.file_mtime, sha256 = EXCLUDED.sha256""",
            (raw.relative, raw.size, _utc(raw.mtime), digest, run_id),
        )
        row = conn.execute(
            "SELECT file_id, status, file_path, run_id FROM etl.file_manifest WHERE sha256 = %s FOR UPDATE",
            (digest,),
        ).fetchone()
        if row is None:
            file_id = conn.execute(
                """INSERT INTO etl.file_manifest (sha256, dataset, file_path, size_bytes, file_mtime,
                                                  export_date, run_id)
                   VALUES (%s, %s, %s, %s, %s, %s, %s) RETURNING file_id""",
                (digest, raw.dataset, raw.relative, raw.size, _utc(raw.mtime), raw.export_date, run_id),
            ).fetchone()[0]
            report.files_new += 1
            return file_id
        file_id, status, first_path, owner = row
        if first_path != raw.relative:
            report.files_duplicate += 1
            report.duplicates.append(f"{raw.relative} = {first_path} (same SHA-256, not ingested again)")
            log.info("%s: same content as %s, not ingested again", raw.relative, first_path)
        if status in ("loaded", "quarantined", "rejected"):
            asked = raw.relative in take_again or (status == "rejected" and raw.relative in accepted)
            if not (asked and first_path == raw.relative):
                report.files_known += first_path == raw.relative
                return None
            report.files_taken_again.append(f"{raw.relative} (was {status})")
            conn.execute("UPDATE etl.file_manifest SET run_id = %s, status = 'registered', status_reason = NULL "
                         "WHERE file_id = %s", (run_id, file_id))
            return file_id
        if first_path != raw.relative and owner == run_id:
            return None  # this run already has the content under its first name
        if owner != run_id and owner_is_live(conn, owner):
            report.files_owned_elsewhere.append(f"{first_path}: being processed by run {owner}")
            return None
        # Registered by a run that is no longer running (or by this run, before a retry): take it over.
        conn.execute("UPDATE etl.file_manifest SET run_id = %s, status = 'registered' WHERE file_id = %s",
                     (run_id, file_id))
        return file_id


class FileTakenOver(RuntimeError):
    """The file's manifest row no longer belongs to this run: another run took it over."""


def set_status(conn: psycopg.Connection, file_id: int, run_id: str, sql_set: str, params: tuple = ()) -> None:
    """``UPDATE etl.file_manifest SET <sql_set>`` for a file this run owns, or FileTakenOver."""
    cursor = conn.execute(f"UPDATE etl.file_manifest SET {sql_set} WHERE file_id = %s AND run_id = %s",
                          (*params, file_id, run_id))
    if cursor.rowcount != 1:
        raise FileTakenOver(f"file {file_id} is no longer owned by run {run_id}: another run took it over")


def _write_parts(raw: RawFile, fmt, header_row: int, target, chunk_rows: int) -> int:
    storage.remove_tree(target)
    storage.make_dirs(target)
    dataset = DATASETS[raw.dataset]
    rows = 0
    # Each part is written by a thread while the next is parsed (Arrow's writer releases the
    # GIL); one write at most in flight, so memory holds one chunk more.
    with ThreadPoolExecutor(1, thread_name_prefix="write-part") as writer:
        writing = None
        for index, chunk in enumerate(iter_chunks(raw.path, dataset, fmt, header_row, chunk_rows)):
            if writing is not None:
                writing.result()
            writing = writer.submit(storage.write_parquet, chunk, target / f"part-{index:05d}.parquet")
            rows += len(chunk)
        if writing is not None:
            writing.result()
    return rows


def ingest_file(conn: psycopg.Connection, run_id: str, file_id: int, raw: RawFile, chunk_rows: int) -> int:
    """Read one claimed file into work parts; returns rows read (0 if the file was quarantined)."""
    target = run_work_dir(run_id) / f"file-{file_id}"
    dataset = DATASETS[raw.dataset]
    before = raw.path.stat()
    try:
        fmt, header_row = detect_format(raw.path, dataset)
        try:
            rows = _write_parts(raw, fmt, header_row, target, chunk_rows)
        except EncodingRetry:
            fmt.encoding = "cp1252"
            fmt.warnings.append("bytes invalid in UTF-8 after the first MBs; whole file read as Windows-1252")
            rows = _write_parts(raw, fmt, header_row, target, chunk_rows)
        if rows == 0:
            raise FileRejected(f"{raw.path.name}: header only, no data rows", check="no_data_rows")
    except FileRejected as rejection:
        log.warning("Quarantined file %s: %s", raw.relative, rejection.reason)
        quarantine_file(conn, file_id, run_id, raw, rejection)
        return 0
    after = raw.path.stat()
    if (after.st_size, after.st_mtime) != (before.st_size, before.st_mtime):
        # Still being written: forget it; the complete file (new SHA-256) is taken next time.
        storage.remove_tree(target)
        with conn.transaction():
            conn.execute("DELETE FROM etl.file_manifest WHERE file_id = %s AND run_id = %s", (file_id, run_id))
            conn.execute("DELETE FROM etl.file_deliveries WHERE file_path = %s", (raw.relative,))
        raise FileChangedDuringRead(f"{raw.relative} changed while being read; it will be taken on the next run")
    set_status(conn, file_id, run_id,
               """status = 'ingested', file_format = %s, encoding = %s, delimiter = %s, sheet_name = %s,
                  header_mapping = %s, extra_columns = %s, rows_read = %s, warnings = %s""",
               (fmt.file_format, fmt.encoding, fmt.delimiter, fmt.sheet_name,
                json.dumps(fmt.mapping.source_names, ensure_ascii=False), fmt.mapping.extra_columns, rows,
                json.dumps(fmt.warnings, ensure_ascii=False)))
    conn.commit()
    log.info("%s: %d rows read (%s, %s%s%s)%s", raw.relative, rows, fmt.file_format.upper(), fmt.encoding,
             f", delimiter {fmt.delimiter!r}" if fmt.delimiter else "", f", sheet {fmt.sheet_name!r}" if fmt.sheet_name else "",
             "".join(f"; {w}" for w in fmt.warnings))
    return rows


class FileChangedDuringRead(RuntimeError):
    pass


def ingest(conn: psycopg.Connection, run_id: str, raw_dir: Path | None = None, *,
           chunk_rows: int | None = None, settle: float | None = None,
           reingest_files: list[str] = (), accept_files: list[str] = (),
           until: dt.date | None = None) -> IngestReport:
    """Register and read the new complete files of RAW, but none whose name dates it after
    ``until`` (a run takes the exports of its week and the earlier ones it needs, never a later
    week's: a backfill of October does not take the file dropped for this week). A file with no
    date in its name is taken by the first run that sees it, as is a file named in the trigger
    form (``reingest_files``, ``accept_files``) whatever its date."""
    raw_dir = raw_dir or settings.paths().raw_dir
    chunk_rows = chunk_rows or settings.pipeline_config().files.chunk_rows
    report = IngestReport()
    claimed: list[tuple[int, RawFile]] = []
    found = discover(raw_dir, settle=settle)
    take_again = frozenset(reingest_files)
    accepted = frozenset(accept_files) | {f.relative for f in found if accepted_by_marker(raw_dir, f.relative)}
    for raw in found:
        report.files_seen += 1
        named = raw.relative in take_again or raw.relative in accept_files
        # dated by its name only: a modification time says when a file was copied, not which week it is
        if until is not None and (raw.date_in_name or until) > until and not named:
            report.files_later.append(f"{raw.relative} (dated {raw.export_date:%d/%m/%Y})")
            continue
        if not raw.complete:
            log.warning("%s: not taken yet, %s", raw.relative, raw.why_incomplete)
            report.files_waiting.append(f"{raw.relative}: {raw.why_incomplete}")
            report.waiting_export_dates[raw.relative] = raw.export_date.isoformat()
            continue
        file_id = _claim(conn, run_id, raw, report, take_again, accepted)
        conn.commit()
        if file_id is not None:
            claimed.append((file_id, raw))
    for file_id, raw in claimed:
        try:
            rows = ingest_file(conn, run_id, file_id, raw, chunk_rows)
        except FileChangedDuringRead as exc:
            report.files_waiting.append(str(exc))
            report.waiting_export_dates[raw.relative] = raw.export_date.isoformat()
            continue
        if rows:
            report.rows_read += rows
            report.file_ids.append(file_id)
        else:
            report.files_quarantined += 1
            reason = conn.execute("SELECT status_reason FROM etl.file_manifest WHERE file_id = %s",
                                  (file_id,)).fetchone()[0]
            report.rejected.append(reason)
    conn.commit()
    return report
