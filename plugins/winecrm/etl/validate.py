"""Validate: type the text values, run the dataset's Great Expectations suite, split rows.

For every chunk of an ingested file a validation frame is built (``winecrm.etl.parsing``); the
dataset's rules (``winecrm.etl.rules``) run on it through Great Expectations with the COMPLETE
result format (``winecrm.etl.gx_context``); each failing row becomes a quarantine row naming the
file, line, first failing column, the failing expectations and the raw values. Rows that only
fail ``warning`` rules (e.g. a malformed email) are loaded with a flag. Good rows are written as
typed Parquet parts for the load stage.

The quality gate is judged per file: a file with too large a share of bad rows is rejected as a
whole (``etl.file_manifest.status = 'rejected'``) and kept out of the load; the run's other files
go on, and no later run takes the rejected file again.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import psycopg

from winecrm.core import settings, storage
from winecrm.core.storage import run_work_dir
from winecrm.etl.contract import DATASETS, Dataset
from winecrm.etl.gx_context import Validator
from winecrm.etl.ingest import set_status
from winecrm.etl.parsing import DUPLICATE_COLUMN, SeenLines, build_frame
from winecrm.etl.readers import MALFORMED_COLUMN, RAW_LINE_COLUMN, ROW_COLUMN
from winecrm.etl.rules import Rule

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


def _explain(rule: Rule, raw_value: object, dup: object) -> str:
    value = "" if raw_value is None or (not isinstance(raw_value, (list, dict)) and pd.isna(raw_value)) else raw_value
    if value == "" and "{value" in rule.explain:
        return "missing value"
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
        explained_columns = {r.column for r, _ in rules if "NotBeNull" not in type(r.expectation).__name__}
        for rule, _ in rules:
            source_column = rule.column if rule.column not in (None, "*") else None
            if "NotBeNull" in type(rule.expectation).__name__ and source_column in explained_columns \
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


def gate_verdict(verdict: FileVerdict, file_path: str, limit: float) -> str | None:
    """Why the file is rejected by the quality gate, or None when it passes."""
    share = verdict.quarantined / verdict.rows if verdict.rows else 0.0
    if share <= limit:
        return None
    top = sorted(verdict.reasons.items(), key=lambda kv: -kv[1])[:5]
    return (f"{file_path} rejected: {verdict.quarantined} of {verdict.rows} rows bad ({share:.1%} > "
            f"{limit:.1%}, quality_gate); main reasons: " + ", ".join(f"{k} ({v})" for k, v in top))


def validate(conn: psycopg.Connection, run_id: str) -> dict:
    """Validate every file this run ingested; returns per-dataset counters and the files the
    quality gate rejected (``{"datasets": {...}, "rejected_files": [...]}``)."""
    pipeline_cfg = settings.pipeline_config()
    cfg = pipeline_cfg.validation
    credit_types = frozenset(pipeline_cfg.revenue.credit_note_types)
    paths = settings.paths()
    files = conn.execute(
        """SELECT file_id, dataset, file_path, export_date FROM etl.file_manifest
           WHERE run_id = %s AND status IN ('ingested', 'validated') ORDER BY file_id""",
        (run_id,),
    ).fetchall()
    summary: dict[str, dict] = {}
    rejected: list[str] = []
    if not files:
        return {"datasets": summary, "rejected_files": rejected}
    validator = Validator(paths.docs_dir, run_id)
    work = run_work_dir(run_id)
    for file_id, dataset_name, file_path, export_date in files:
        dataset = DATASETS[dataset_name]
        verdict = FileVerdict(file_id, dataset_name)
        folder = work / f"file-{file_id}"
        parts = storage.sorted_glob(folder, "part-*.parquet")
        if not parts:
            raise RuntimeError(f"Work files of {file_path} are missing in {folder}; re-run the ingest task")
        for old in storage.sorted_glob(folder, "good-*.parquet"):
            old.unlink()
        with conn.transaction():
            conn.execute("DELETE FROM etl.quarantine WHERE file_id = %s", (file_id,))
            seen_lines = SeenLines()
            for index, part in enumerate(parts):
                chunk = build_frame(dataset, storage.read_parquet(part), seen_lines, credit_types)
                outcomes = validator.run(dataset, chunk, export_date, cfg, f"file{file_id}_{Path(file_path).stem}_part{index}")
                good, bad = split_chunk(dataset, chunk, outcomes, verdict, file_path, file_id, run_id)
                copy_quarantine(conn, bad)
                storage.write_parquet(_good_columns(dataset, good, credit_types), folder / f"good-{index:05d}.parquet")
            rejection = gate_verdict(verdict, file_path, pipeline_cfg.quality_gate.limit(dataset_name))
            warnings = json.dumps([f"{k}: {v} rows" for k, v in verdict.warnings.items()])
            if rejection:
                log.warning("%s", rejection)
                rejected.append(rejection)
                set_status(conn, file_id, run_id, "status = 'rejected', status_reason = %s, rows_good = %s, "
                           "rows_quarantined = %s, warnings = warnings || %s::jsonb",
                           (rejection, verdict.good, verdict.quarantined, warnings))
            else:
                set_status(conn, file_id, run_id, "status = 'validated', rows_good = %s, rows_quarantined = %s, "
                           "warnings = warnings || %s::jsonb", (verdict.good, verdict.quarantined, warnings))
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
    from winecrm.etl.datadocs import make_offline

    make_offline(paths.data_docs_site)
    return {"datasets": summary, "rejected_files": rejected}


__all__ = ["validate", "build_frame", "Validator", "gate_verdict"]
