"""Validate: type the text values, run the dataset's Great Expectations suite, split rows.

For every chunk of an ingested file a validation frame is built (``winecrm.etl.parsing``); the
dataset's rules (``winecrm.etl.rules``, Great Expectations expectations) are evaluated on it
(``winecrm.etl.checks``); each failing row becomes a quarantine row naming the file, line, first
failing column, the failing expectations and the raw values. Rows that only fail ``warning``
rules (e.g. a malformed email) are loaded with a flag. Good rows are written as typed Parquet
parts for the load stage, and what each rule found as a record beside them
(``winecrm.etl.found``): the ``data_docs`` task, beside the load, has Great Expectations store
those results (COMPLETE result format) and render the Data Docs, so this task never imports GX —
unless a suite holds an expectation ``winecrm.etl.checks`` does not know, whose chunks GX's own
engine checks, stores and renders here. The chunks are checked in two processes (``PartChecker``).

The quality gate is judged per file: a file whose bad rows are both too large a share of it and
at least a minimum count (one or two bad rows of a small file never fail the week) is rejected as a
whole (``etl.file_manifest.status = 'rejected'``) and kept out of the load; the run's other files
go on, and no later run takes the rejected file again.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import psycopg

from winecrm.core import personal, settings, storage
from winecrm.core.storage import run_work_dir
from winecrm.etl import found
from winecrm.etl.contract import DATASETS, Dataset
from winecrm.etl.gx_context import Validator
from winecrm.etl.ingest import accepted_by_marker, set_status
from winecrm.etl.parsing import DUPLICATE_COLUMN, SeenLines, build_frame, by_line_number
from winecrm.etl.readers import MALFORMED_COLUMN, RAW_LINE_COLUMN, ROW_COLUMN
from winecrm.etl import checks
from winecrm.etl.rules import Rule, rules_for

log = logging.getLogger(__name__)


@dataclass
class FileVerdict:
    file_id: int
    dataset: str
    rows: int = 0
    good: int = 0
    quarantined: int = 0
    warnings: dict[str, int] = field(default_factory=dict)
    reasons: dict[str, int] = field(default_factory=dict)

    def add(self, other: "FileVerdict") -> None:
        self.rows += other.rows
        self.good += other.good
        self.quarantined += other.quarantined
        for mine, theirs in ((self.warnings, other.warnings), (self.reasons, other.reasons)):
            for key, count in theirs.items():
                mine[key] = mine.get(key, 0) + count


@dataclass(frozen=True)
class FileTask:
    """What checking any chunk of one file needs to know."""
    dataset: Dataset
    file_path: str
    file_id: int
    run_id: str
    export_date: object
    cfg: object  # ValidationConfig
    credit_types: frozenset[str]
    folder: Path
    run_time: dt.datetime  # the validate call's: its Data Docs pages are filed under it


@dataclass(frozen=True)
class PartJob:
    index: int
    part: Path
    duplicate_of: pd.Series | None  # sales: the earlier identical line of each row, else <NA>


@dataclass
class CheckedPart:
    job: PartJob
    verdict: FileVerdict | None = None
    quarantine_rows: list[tuple] = field(default_factory=list)
    metrics: list[dict] | None = None  # what each rule found (winecrm.etl.checks), for GX to record;
    # None when GX's engine checked the chunk (and recorded it)
    fingerprint: str = ""  # the checked frame's batch fingerprint, as GX computes it
    needs_engine: bool = False  # a rule winecrm.etl.checks does not know: GX's engine checks the chunk


def part_jobs(task: FileTask, parts: list[Path]):
    """The file's chunks in order, each with the earlier copy of its sales lines that repeat one
    (whichever chunk holds the first copy: worked out chunk after chunk)."""
    seen_lines = SeenLines()
    for index, part in enumerate(parts):
        duplicate_of = None
        if task.dataset.name == "ventes_lignes":
            duplicate_of = seen_lines.first_rows(task.dataset, by_line_number(storage.read_parquet(part)))
        yield PartJob(index, part, duplicate_of)


def batch_label(task: FileTask, job: PartJob) -> str:
    return f"file{task.file_id}_{Path(task.file_path).stem}_part{job.index}"


def check_part(task: FileTask, job: PartJob, validator: Validator | None = None) -> CheckedPart:
    """Type one chunk, evaluate its dataset's expectations on it (``winecrm.etl.checks``: no GX),
    write its good rows (``good-NNNNN.parquet``) and return its quarantine rows and what each rule
    found. A chunk with a rule that module does not know (or every chunk, ``DIRECT`` off) goes
    through GX's engine when ``validator`` is given (it then also stores and renders the results),
    else comes back marked ``needs_engine``, untouched."""
    dataset = task.dataset
    chunk = build_frame(dataset, storage.read_parquet(job.part), credit_note_types=task.credit_types,
                        duplicate_of=job.duplicate_of)
    rules = rules_for(dataset, task.export_date, task.cfg)
    view = checks.checked_columns(chunk, rules)
    metrics = checks.check_chunk(rules, view) if DIRECT else None
    if metrics is not None:
        outcomes = checks.outcomes(rules, metrics)
    elif validator is None:
        return CheckedPart(job, needs_engine=True)
    else:
        outcomes = validator.run(dataset, chunk, task.export_date, task.cfg, batch_label(task, job), task.run_time)
    verdict = FileVerdict(task.file_id, dataset.name)
    good, bad = split_chunk(dataset, chunk, outcomes, verdict, task.file_path, task.file_id, task.run_id)
    storage.write_parquet(_good_columns(dataset, good, task.credit_types), task.folder / f"good-{job.index:05d}.parquet")
    return CheckedPart(job, verdict, bad, metrics, checks.fingerprint(view) if metrics is not None else "")


DIRECT = True  # False: every chunk through GX's engine (the reference tests compare the direct path with)


IN_FLIGHT = 4  # checked chunks the checking process may have sent ahead of this one's recording


class _Shares:
    """Which chunk each side takes, the chunks numbered across the call's files. The checking
    process works out every chunk's duplicates in order and checks the chunk itself unless this
    process, idle (every result before it handled), took it first: it then sends the chunk to be
    checked here. Results and chunks come back in order either way."""

    def __init__(self, context):
        self.lock = context.Lock()
        self.checker_at = context.Value("q", -1, lock=False)  # the chunk the checking process started
        self.taken_here = context.Value("q", -1, lock=False)  # the chunk this process took

    def checker_takes(self, chunk: int) -> bool:
        with self.lock:
            if self.taken_here.value == chunk:
                return False
            self.checker_at.value = chunk
            return True

    def take_here(self, chunk: int) -> None:
        with self.lock:
            if self.checker_at.value < chunk:
                self.taken_here.value = chunk


def _check_files(results, room, shares: _Shares, files: list[tuple[FileTask, list[Path]]]) -> None:
    """The checking process: every chunk of every file, in order, its result (or, when the parent
    took it, the chunk itself) queued as it is ready. A queue's own thread writes them to the
    parent, so checking goes on while the parent is busy (quarantining); ``room`` keeps at most
    IN_FLIGHT of them waiting there."""
    try:
        chunk = 0
        for task, parts in files:
            for job in part_jobs(task, parts):
                message = ("part", check_part(task, job)) if shares.checker_takes(chunk) else ("job", job)
                room.acquire()
                results.put(message)
                chunk += 1
    except BaseException:
        import traceback

        results.put(("error", traceback.format_exc()))
    finally:
        results.close()
        results.join_thread()


class PartChecker:
    """Checks the chunks of a validate call's files in two processes (``validation.workers`` > 1,
    not in a daemonic process): one forked at the start checks them in order, and this one, once
    it has handled every result so far (quarantine rows, the records for Data Docs), checks the
    next chunk the other has not started (``_Shares``); the results come in chunk order either
    way. With one worker, or GX's engine needed, everything runs here, chunk after chunk. A chunk
    failing there fails the call, as it would here."""

    def __init__(self, files: list[tuple[FileTask, list[Path]]], workers: int):
        import multiprocessing

        self.files = files
        self.forked = DIRECT and workers > 1 and (os.cpu_count() or 1) > 1 and bool(files)
        if self.forked and multiprocessing.current_process().daemon:
            # A Celery worker's task runs in a daemonic process, which may not start another.
            log.info("Chunks checked in this process only: it is a daemonic process (a Celery worker's task), "
                     "which cannot start the checking process.")
            self.forked = False
        self._results = self._room = self._shares = self._process = None
        self._chunk = 0  # chunks received, across the files

    def __enter__(self):
        if self.forked:
            import multiprocessing

            context = multiprocessing.get_context("fork")
            self._results, self._room, self._shares = context.Queue(), context.BoundedSemaphore(IN_FLIGHT), _Shares(context)
            self._process = context.Process(target=_check_files, daemon=True, name="winecrm-validate-chunks",
                                            args=(self._results, self._room, self._shares, self.files))
            self._process.start()
        return self

    def __exit__(self, *exc):
        if self._process is not None:
            self._process.join(timeout=0 if exc[0] else 30)
            if self._process.is_alive():  # the call failed here: the chunks left are not needed
                self._process.terminate()
                self._process.join()
            self._results.close()

    def check(self, task: FileTask, parts: list[Path]):
        """The chunks of one file (the next in ``files``), checked, in order."""
        if not self.forked:
            for job in part_jobs(task, parts):
                yield check_part(task, job)
            return
        import queue

        for _ in parts:
            if self._results.empty():
                self._shares.take_here(self._chunk)
            while True:
                try:
                    kind, payload = self._results.get(timeout=5)
                    break
                except queue.Empty:
                    if not self._process.is_alive():
                        raise RuntimeError(f"the process checking {task.file_path} ended unexpectedly "
                                           f"(exit code {self._process.exitcode})") from None
            if kind == "error":
                raise RuntimeError(f"checking {task.file_path} failed:\n{payload}")
            self._room.release()
            self._chunk += 1
            yield check_part(task, payload) if kind == "job" else payload


def _explain(rule: Rule, raw_value: object, dup: object) -> str:
    """The sentence for one failure. A personal column's value (winecrm.core.personal) is masked:
    the reason goes to task logs, the gate's message and alerts; the value stays in raw_values."""
    value = "" if raw_value is None or (not isinstance(raw_value, (list, dict)) and pd.isna(raw_value)) else raw_value
    if value == "" and "{value" in rule.explain:
        return "missing value"
    value = personal.shown(rule.column, value)
    try:
        return rule.explain.format(value=value, dup=dup)
    except (KeyError, IndexError, ValueError):
        return rule.explain


def split_chunk(dataset: Dataset, chunk: pd.DataFrame, outcomes, verdict: FileVerdict,
                file_path: str, file_id: int, run_id: str) -> tuple[pd.DataFrame, list[tuple]]:
    frame_index = chunk.index
    failures: dict[object, list[tuple[Rule, str]]] = {}
    warned = pd.Series(False, index=frame_index)
    for rule, type_name, success, indexes, exception in outcomes:
        if exception and exception.get("raised_exception"):
            raise RuntimeError(f"Great Expectations could not evaluate {type_name} on {file_path}: "
                               f"{exception.get('exception_message')}")
        if success or not indexes:
            if not success and rule.column is None:  # table-level (row count)
                raise RuntimeError(f"{file_path}: {rule.explain}")
            continue
        if rule.warning:
            verdict.warnings[type_name] = verdict.warnings.get(type_name, 0) + len(indexes)
            if rule.column == "email":
                warned.loc[indexes] = True
            continue
        for index in indexes:
            failures.setdefault(index, []).append((rule, type_name))
    quarantine_rows = []
    bad_index = list(failures)
    raw_frame = chunk.loc[bad_index] if bad_index else chunk.iloc[0:0]
    for index, rules in failures.items():
        row = raw_frame.loc[index]
        first_rule = rules[0][0]
        column = first_rule.column if first_rule.column != "*" else None
        raw_values = _raw_values(dataset, row)
        reasons = []
        explained_columns = {r.column for r, _ in rules if not r.presence}
        for rule, _ in rules:
            source_column = rule.column if rule.column not in (None, "*") else None
            if rule.presence and source_column in explained_columns \
                    and raw_values.get(source_column) not in (None, ""):
                continue  # the parse/format rule on the same column already says why
            raw_value = raw_values.get(source_column) if source_column else row.get(MALFORMED_COLUMN)
            dup = row.get(DUPLICATE_COLUMN)
            prefix = f"{source_column}: " if source_column else ""
            reasons.append(prefix + _explain(rule, raw_value, dup))
        reason = f"{file_path} line {int(row[ROW_COLUMN])}: " + "; ".join(dict.fromkeys(reasons))
        expectations = list(dict.fromkeys(label for _, label in rules))
        for key in expectations:
            verdict.reasons[key] = verdict.reasons.get(key, 0) + 1
        quarantine_rows.append((file_id, run_id, dataset.name, file_path, int(row[ROW_COLUMN]), column,
                                expectations, reason, json.dumps(raw_values, ensure_ascii=False, default=str)))
    good = chunk.drop(index=bad_index)
    if "email" in good:
        valid = pd.Series(~warned.loc[good.index].to_numpy(), index=good.index, dtype="boolean")
        good = good.assign(email_valid=valid.mask(good["email"].isna()))
    verdict.rows += len(chunk)
    verdict.good += len(good)
    verdict.quarantined += len(quarantine_rows)
    return good, quarantine_rows


def _raw_values(dataset: Dataset, row: pd.Series) -> dict:
    raw_line = row.get(RAW_LINE_COLUMN) if RAW_LINE_COLUMN in row else None
    values = {}
    for column in dataset.columns:
        for candidate in (f"{column.name}_text", column.name):
            if candidate in row.index:
                value = row[candidate]
                values[column.name] = None if pd.isna(value) else (value.isoformat() if hasattr(value, "isoformat") else value)
                break
    if isinstance(raw_line, str):
        values["_fields"] = json.loads(raw_line)
    return values


def _good_columns(dataset: Dataset, good: pd.DataFrame, credit_note_types: frozenset[str]) -> pd.DataFrame:
    keep = [c.name for c in dataset.columns if c.name in good] + [ROW_COLUMN]
    if "email_valid" in good:
        keep.append("email_valid")
    out = good[keep].copy()
    if dataset.name == "ventes_lignes":
        credit = out["document_type"].isin(credit_note_types)
        for name in ("qty_line", "mt_ht", "mt_ttc", "marge"):
            if name in out:
                out[name] = out[name].where(~credit, -out[name])
    return out


def copy_quarantine(conn: psycopg.Connection, rows: list[tuple]) -> None:
    if not rows:
        return
    with conn.cursor().copy(
        "COPY etl.quarantine (file_id, run_id, dataset, file_path, row_no, column_name, expectations, reason, "
        "raw_values) FROM STDIN"
    ) as copy:
        for row in rows:
            copy.write_row(row)


EXAMPLES_IN_MESSAGE = 5


def gate_verdict(verdict: FileVerdict, file_path: str, limit: float, examples: list[str] = (),
                 docs_link: str = "", min_bad_rows: int = 1) -> str | None:
    """Why the file is rejected by the quality gate, or None when it passes: the file, the
    share, a few bad rows with their delivered values, the Data Docs page and the way out.
    A file is rejected only when its bad rows are both more than ``limit`` of its rows and at
    least ``min_bad_rows``: a bad row or two of a small file never fail the week."""
    share = verdict.quarantined / verdict.rows if verdict.rows else 0.0
    if share <= limit or verdict.quarantined < min_bad_rows:
        return None
    lines = [f"{file_path} rejected by the quality gate: {verdict.quarantined} of {verdict.rows} rows bad "
             f"({share:.1%} > {limit:.1%}, quality_gate.max_bad_row_share, and {verdict.quarantined} >= "
             f"{min_bad_rows}, quality_gate.min_bad_rows_to_reject); nothing of it was loaded. Examples:"]
    lines += [f"  - {example}" for example in examples[:EXAMPLES_IN_MESSAGE]]
    if docs_link:
        lines.append(f"  Data Docs of this file: {docs_link}")
    lines.append(f"  Way out: fix the export and drop the corrected file into RAW (new content = new file), or, if "
                 f"these rows are what the estate delivers, let the file through: trigger crm_weekly with "
                 f"'accept_files' = {file_path} (or create {file_path}.accept next to it in RAW; the next run "
                 f"takes it) — its good rows load, the bad ones stay in etl.quarantine.")
    return "\n".join(lines)


def _log_file(file_path: str, verdict: FileVerdict, examples: list[str], docs: str, accepted_by: str | None) -> None:
    share = verdict.quarantined / verdict.rows if verdict.rows else 0.0
    flagged = ", ".join(f"{n} {name}" for name, n in verdict.warnings.items())
    log.info("%s: %d rows → %d good, %d quarantined (%.1f %%)%s%s", file_path, verdict.rows, verdict.good,
             verdict.quarantined, 100 * share, f"; flagged but loaded: {flagged}" if flagged else "",
             f"; quality gate not applied ({accepted_by})" if accepted_by else "")
    for example in examples[:EXAMPLES_IN_MESSAGE]:
        log.info("    %s", example)
    if verdict.quarantined > len(examples[:EXAMPLES_IN_MESSAGE]):
        log.info("    … %d more in etl.quarantine", verdict.quarantined - len(examples[:EXAMPLES_IN_MESSAGE]))
    log.info("    Data Docs: %s", docs)


def validate(conn: psycopg.Connection, run_id: str, accept_files: list[str] = ()) -> dict:
    """Validate every file this run ingested; returns per-dataset counters and the files the
    quality gate rejected (``{"datasets": {...}, "rejected_files": [...]}``).

    Files in ``accept_files`` (the run's param) or with a ``<file>.accept`` marker in RAW are
    not judged by the gate: their bad rows are quarantined, their good rows load."""
    pipeline_cfg = settings.pipeline_config()
    files = conn.execute(
        """SELECT file_id, dataset, file_path, export_date FROM etl.file_manifest
           WHERE run_id = %s AND status IN ('ingested', 'validated') ORDER BY file_id""",
        (run_id,),
    ).fetchall()
    if not files:
        log.info("No new file to validate.")
        return {"datasets": {}, "rejected_files": [], "pages": {}}
    cfg = pipeline_cfg.validation
    credit_types = frozenset(pipeline_cfg.revenue.credit_note_types)
    run_time = dt.datetime.now(dt.timezone.utc)
    work = run_work_dir(run_id)
    tasks = []
    for file_id, dataset_name, file_path, export_date in files:
        folder = work / f"file-{file_id}"
        parts = storage.sorted_glob(folder, "part-*.parquet")
        if not parts:
            raise RuntimeError(f"Work files of {file_path} are missing in {folder}; re-run the ingest task")
        for old in storage.sorted_glob(folder, "good-*.parquet"):
            old.unlink()
        found.clear(folder)
        tasks.append((FileTask(DATASETS[dataset_name], file_path, file_id, run_id, export_date, cfg, credit_types,
                               folder, run_time), parts))
    with PartChecker(tasks, cfg.workers) as checker:
        return _validate_files(conn, run_id, tasks, checker, accept_files, pipeline_cfg)


class _Engine:
    """Great Expectations' own validator, imported only for a chunk that needs it (an expectation
    ``winecrm.etl.checks`` does not know): it then checks, stores and renders that chunk here,
    holding the Data Docs lock (``winecrm.core.db.data_docs_lock``) until the call ends."""

    def __init__(self, conn: psycopg.Connection, run_id: str):
        self.conn, self.run_id = conn, run_id
        self.validator: Validator | None = None
        self._lock = None

    def __call__(self) -> Validator:
        if self.validator is None:
            from winecrm.core.db import data_docs_lock

            self._lock = data_docs_lock(self.conn, f"{self.run_id}:validate")
            self._lock.__enter__()
            self.validator = Validator(settings.paths().docs_dir, self.run_id)
        return self.validator

    def close(self) -> None:
        """The index of the pages written here (the data_docs task writes the others')."""
        if self.validator is None:
            return
        from winecrm.etl.datadocs import make_offline

        try:
            self.validator.build_index()
            make_offline(settings.paths().data_docs_site)
        finally:
            self._lock.__exit__(None, None, None)


def _validate_files(conn: psycopg.Connection, run_id: str, tasks: list[tuple[FileTask, list[Path]]],
                    checker: PartChecker, accept_files: list[str], pipeline_cfg) -> dict:
    engine = _Engine(conn, run_id)
    try:
        return _judge_files(conn, run_id, tasks, checker, engine, accept_files, pipeline_cfg)
    finally:
        engine.close()


def _judge_files(conn: psycopg.Connection, run_id: str, tasks: list[tuple[FileTask, list[Path]]],
                 checker: PartChecker, engine: _Engine, accept_files: list[str], pipeline_cfg) -> dict:
    paths = settings.paths()
    summary: dict[str, dict] = {}
    rejected: list[str] = []
    pages: dict[str, str] = {}
    for task, parts in tasks:
        dataset, dataset_name, file_id, file_path = task.dataset, task.dataset.name, task.file_id, task.file_path
        verdict = FileVerdict(file_id, dataset_name)
        examples: list[str] = []
        run_names: list[str] = []
        accepted_by = (f"param accept_files of run {run_id}" if file_path in accept_files
                       else f"marker {file_path}.accept" if accepted_by_marker(paths.raw_dir, file_path) else None)
        with conn.transaction():
            conn.execute("DELETE FROM etl.quarantine WHERE file_id = %s", (file_id,))
            for checked in checker.check(task, parts):
                run_name = found.run_name_of(run_id, batch_label(task, checked.job))
                if checked.needs_engine:  # checked, stored and rendered by GX's engine
                    checked = check_part(task, checked.job, engine())
                else:
                    try:  # stored and rendered by the data_docs task
                        found.save(task.folder, checked.job.index, found.Found(
                            dataset_name, task.export_date, task.cfg.model_dump(mode="json"), run_name,
                            task.run_time, checked.fingerprint, checked.metrics))
                    except TypeError:  # a value the record cannot keep with its type: GX records it now
                        engine().record(dataset, task.export_date, task.cfg, checked.metrics, checked.fingerprint,
                                        run_name, task.run_time)
                run_names.append(run_name)
                verdict.add(checked.verdict)
                bad = checked.quarantine_rows
                examples += [row[7].removeprefix(f"{file_path} ") for row in bad[:EXAMPLES_IN_MESSAGE - len(examples)]]
                copy_quarantine(conn, bad)
            docs = paths.data_docs_link(found.page_of(dataset_name, run_names[0], task.run_time))
            pages[file_path] = docs
            gate = pipeline_cfg.quality_gate
            rejection = None if accepted_by else gate_verdict(verdict, file_path, gate.limit(dataset_name), examples,
                                                              docs, gate.min_bad_rows(dataset_name))
            warnings = json.dumps([f"{k}: {v} rows" for k, v in verdict.warnings.items()])
            _log_file(file_path, verdict, examples, docs, accepted_by)
            if rejection:
                log.warning("%s", rejection)
                rejected.append(rejection)
                set_status(conn, file_id, run_id, "status = 'rejected', status_reason = %s, rows_good = %s, "
                           "rows_quarantined = %s, warnings = warnings || %s::jsonb, accepted_by = NULL",
                           (rejection, verdict.good, verdict.quarantined, warnings))
            else:
                set_status(conn, file_id, run_id, "status = 'validated', rows_good = %s, rows_quarantined = %s, "
                           "warnings = warnings || %s::jsonb, accepted_by = %s",
                           (verdict.good, verdict.quarantined, warnings, accepted_by))
        stats = summary.setdefault(dataset_name, {"rows": 0, "good": 0, "quarantined": 0, "warnings": {},
                                                  "reasons": {}, "rejected_files": 0})
        stats["rows"] += verdict.rows
        stats["good"] += verdict.good
        stats["quarantined"] += verdict.quarantined
        stats["rejected_files"] += bool(rejection)
        for key, value in verdict.warnings.items():
            stats["warnings"][key] = stats["warnings"].get(key, 0) + value
        for key, value in verdict.reasons.items():
            stats["reasons"][key] = stats["reasons"].get(key, 0) + value
    for stats in summary.values():
        stats["bad_share"] = round(stats["quarantined"] / stats["rows"], 6) if stats["rows"] else 0.0
    log.info("Data Docs (written by the data_docs task, beside the load): %s", paths.data_docs_link())
    return {"datasets": summary, "rejected_files": rejected, "pages": pages}


__all__ = ["validate", "build_frame", "Validator", "gate_verdict"]
