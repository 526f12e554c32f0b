"""Validate: type the text values, run one Great Expectations suite per dataset, split rows.

For every chunk of an ingested file a validation frame is built: ``<col>_text`` holds the
trimmed text as delivered, ``<col>`` the typed value. The dataset's GX suite runs on it with
the COMPLETE result format; each failing row index is turned into a quarantine row naming
the file, line, first failing column, the failing expectations and the raw values. Rows that
only fail ``warning`` expectations (e.g. a malformed email) are loaded with a flag.
Good rows are written as typed Parquet parts for the load stage.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import psycopg

from winecrm.core import settings
from winecrm.etl.contract import CREDIT_NOTE_TYPES, DATASETS, Dataset
from winecrm.etl.ingest import run_work_dir
from winecrm.etl.readers import MALFORMED_COLUMN, RAW_LINE_COLUMN, ROW_COLUMN

log = logging.getLogger(__name__)

# Non-capturing groups only: pandas warns on capture groups in str.contains.
EMAIL_RE = r"^[a-z0-9][a-z0-9._%+'-]*@[a-z0-9-]+(?:\.[a-z0-9-]+)*\.[a-z]{2,}$"
DECIMAL_RE = r"^[-+]?(?:\d{1,3}(?:[ \u00a0\u202f.]\d{3})+|\d+)?(?:[.,]\d+)?$"
INT_RE = r"^\d{1,4}$"
DATE_RE = r"^(?:\d{1,2}/\d{1,2}/\d{4}|\d{4}-\d{2}-\d{2}(?: \d{2}:\d{2}(?::\d{2})?)?)$"
TRUE_WORDS = {"oui", "o", "yes", "y", "true", "vrai", "1", "x"}
FALSE_WORDS = {"non", "n", "no", "false", "faux", "0"}
DUPLICATE_COLUMN = "_duplicate_of_row"  # earlier identical line (sales) / later row with same key


class QualityGateError(RuntimeError):
    """Too many bad rows: the run must stop before loading. Not worth retrying."""


# ---------------------------------------------------------------------------------------------
# typing


def _strip(series: pd.Series) -> pd.Series:
    # Arrow-backed strings: .str methods run as vectorised Arrow kernels, not per-value Python.
    text = series.astype("string[pyarrow]").str.strip()
    return text.mask(text == "")


def _fix_mojibake(series: pd.Series) -> pd.Series:
    """'CrÃ©mant' -> 'Crémant' where a UTF-8 label went through a Windows-1252 round trip."""
    suspicious = series.str.contains("Ã|Â", regex=True, na=False)
    if not suspicious.any():
        return series

    def repair(text: str) -> str:
        try:
            return text.encode("cp1252").decode("utf-8")
        except (UnicodeEncodeError, UnicodeDecodeError):
            return text

    fixed = series.copy()
    fixed[suspicious] = series[suspicious].map(repair)
    return fixed


def parse_decimal(text: pd.Series) -> pd.Series:
    cleaned = text.str.replace(r"[ \u00a0\u202f]", "", regex=True)
    has_comma = cleaned.str.contains(",", regex=False, na=False)
    cleaned = cleaned.where(~has_comma, cleaned.str.replace(".", "", regex=False).str.replace(",", ".", regex=False))
    return pd.to_numeric(cleaned, errors="coerce").astype("float64")


def parse_date(text: pd.Series) -> pd.Series:
    french = pd.to_datetime(text, format="%d/%m/%Y", errors="coerce")
    missing = french.isna() & text.notna()
    if missing.any():
        iso = pd.to_datetime(text[missing].str.slice(0, 10), format="%Y-%m-%d", errors="coerce")
        french = french.where(~missing, iso)
    return french


def parse_bool(text: pd.Series) -> pd.Series:
    lowered = text.str.lower()
    return pd.Series(np.where(lowered.isin(TRUE_WORDS), True, np.where(lowered.isin(FALSE_WORDS), False, None)),
                     index=text.index, dtype="object")


class SeenLines:
    """Exact-duplicate detection across all chunks of one file, in bounded memory: one 64-bit
    hash and one line number per distinct line (16 bytes), not the lines themselves."""

    def __init__(self):
        self.first_row = pd.Series(dtype="int64", index=pd.Index([], dtype="uint64"))  # line hash -> first line

    def first_rows(self, dataset: Dataset, chunk: pd.DataFrame) -> pd.Series:
        """For each row of ``chunk``: the line number of an earlier identical line, else <NA>."""
        business = [c for c in dataset.column_names if c in chunk.columns]
        hashes = pd.util.hash_pandas_object(chunk[business], index=False).to_numpy()
        rows = chunk[ROW_COLUMN].to_numpy(dtype="int64")
        well_formed = chunk[MALFORMED_COLUMN].isna().to_numpy()
        frame = pd.DataFrame({"h": hashes, "row": rows})[well_formed]
        first_here = frame.groupby("h", sort=False)["row"].transform("first")
        earlier = frame["h"].map(self.first_row)  # from previous chunks
        first = earlier.fillna(first_here).astype("int64")
        result = pd.Series(pd.NA, index=chunk.index, dtype="Int64")
        is_repeat = (first != frame["row"]).to_numpy()
        result.iloc[np.flatnonzero(well_formed)[is_repeat]] = first.to_numpy()[is_repeat]
        new = frame.drop_duplicates("h")
        new = new[~new["h"].isin(self.first_row.index)]
        self.first_row = pd.concat([self.first_row, pd.Series(new["row"].to_numpy(), index=new["h"].to_numpy())])
        return result


def build_frame(dataset: Dataset, chunk: pd.DataFrame, seen_lines: SeenLines | None = None) -> pd.DataFrame:
    """Raw text chunk -> validation frame (typed ``<col>`` + delivered ``<col>_text``)."""
    # Indexed by line number, so GX's unexpected_index_list (and the "Index" column of the
    # Data Docs) are the file's own line numbers.
    chunk = chunk.set_index(pd.Index(chunk[ROW_COLUMN].astype("int64").to_numpy()), drop=False)
    out = pd.DataFrame(index=chunk.index)
    out[ROW_COLUMN] = chunk[ROW_COLUMN].astype("int64")
    out[MALFORMED_COLUMN] = chunk[MALFORMED_COLUMN]
    out[RAW_LINE_COLUMN] = chunk[RAW_LINE_COLUMN]
    for column in dataset.columns:
        if column.name not in chunk.columns:
            continue
        text = _strip(chunk[column.name])
        if column.kind == "text":
            out[column.name] = _fix_mojibake(text)
        elif column.kind == "email":
            out[f"{column.name}_text"] = text
            out[column.name] = text.str.lower()
        elif column.kind == "decimal":
            out[f"{column.name}_text"] = text
            out[column.name] = parse_decimal(text)
        elif column.kind == "int":
            out[f"{column.name}_text"] = text.str.replace(r"\.0$", "", regex=True)
            out[column.name] = pd.to_numeric(out[f"{column.name}_text"], errors="coerce")
            if column.name == "millesime":  # 0 (or 0000) is how non-vintage wines are often exported
                out[column.name] = out[column.name].mask(out[column.name] == 0)
        elif column.kind == "date":
            out[f"{column.name}_text"] = text
            out[column.name] = parse_date(text)
            # yyyymmdd as an integer: range checks stay vectorised (GX compares datetimes row by row)
            # and read naturally in Data Docs.
            out[f"{column.name}_yyyymmdd"] = (out[column.name].dt.year * 10000 + out[column.name].dt.month * 100
                                              + out[column.name].dt.day).astype("Int64")
        elif column.kind == "bool":
            out[f"{column.name}_text"] = text
            out[column.name] = parse_bool(text)
    if dataset.name == "ventes_lignes":
        out["document_type"] = out["document_type"].str.upper()
        credit = out["document_type"].isin(CREDIT_NOTE_TYPES)
        # Credit notes are checked on magnitudes; the sign is applied at load time.
        for name in ("qty_line", "mt_ht", "mt_ttc", "marge"):
            if name in out:
                out[name] = out[name].where(~credit, out[name].abs())
        out[DUPLICATE_COLUMN] = (seen_lines or SeenLines()).first_rows(dataset, chunk)
    elif dataset.natural_key:
        key = list(dataset.natural_key)
        present = [k for k in key if k in out]
        superseded = out.duplicated(subset=present, keep="last") & out[present[0]].notna()
        last_row = out.groupby(present, dropna=False, sort=False)[ROW_COLUMN].transform("last")
        out[DUPLICATE_COLUMN] = last_row.where(superseded).astype("Int64")
    return out


# ---------------------------------------------------------------------------------------------
# expectations


def _yyyymmdd(day: dt.date) -> int:
    return day.year * 10000 + day.month * 100 + day.day


@dataclass
class Rule:
    expectation: object  # a gx.expectations.* instance
    column: str | None  # canonical column it is about (for the quarantine row)
    warning: bool = False  # warnings flag rows, they do not quarantine them
    explain: str = ""  # sentence template; {value} is the raw value


def _rules(dataset: Dataset, export_date: dt.date, cfg: dict) -> list[Rule]:
    import great_expectations as gx

    E = gx.expectations
    rules: list[Rule] = [
        Rule(E.ExpectTableRowCountToBeBetween(min_value=1), None, explain="no data rows"),
        Rule(E.ExpectColumnValuesToBeNull(column=MALFORMED_COLUMN), "*", explain="{value}"),
    ]
    for column in dataset.required_columns:
        rules.append(Rule(E.ExpectColumnToExist(column=column), column, explain="column missing"))
    for column in dataset.columns:
        name = column.name
        if column.kind == "decimal":
            rules.append(Rule(E.ExpectColumnValuesToMatchRegex(column=f"{name}_text", regex=DECIMAL_RE), name,
                              explain="{value!r} is not a number"))
        elif column.kind == "int":
            rules.append(Rule(E.ExpectColumnValuesToMatchRegex(column=f"{name}_text", regex=INT_RE), name,
                              explain="{value!r} is not a year"))
        elif column.kind == "date":
            rules.append(Rule(E.ExpectColumnValuesToMatchRegex(column=f"{name}_text", regex=DATE_RE), name,
                              explain="{value!r} is not a dd/mm/yyyy date"))
        elif column.kind == "email":
            rules.append(Rule(E.ExpectColumnValuesToMatchRegex(column=name, regex=EMAIL_RE), name, warning=True,
                              explain="{value!r} is not a valid email address"))
        elif column.kind == "bool":
            rules.append(Rule(E.ExpectColumnValuesToBeInSet(column=f"{name}_text",
                                                            value_set=sorted(TRUE_WORDS | FALSE_WORDS | {w.upper() for w in TRUE_WORDS | FALSE_WORDS} | {w.title() for w in TRUE_WORDS | FALSE_WORDS})),
                              name, warning=True, explain="{value!r} is not yes/no; left unknown"))
        if column.not_null:
            rules.append(Rule(E.ExpectColumnValuesToNotBeNull(column=name), name,
                              explain="missing value" if column.kind == "text" else "{value!r} is not a valid " + column.kind))
    if dataset.name == "ventes_lignes":
        rules += [
            Rule(E.ExpectColumnValuesToBeInSet(column="document_type", value_set=list(cfg["document_types"])),
                 "document_type", explain="unknown document type {value!r}"),
            Rule(E.ExpectColumnValuesToBeBetween(column="qty_line", min_value=0, max_value=cfg["max_qty_line"],
                                                 strict_min=True),
                 "qty_line", explain="quantity {value!r} out of range (0, " + str(cfg["max_qty_line"]) + "] on a sale"),
            Rule(E.ExpectColumnValuesToBeBetween(column="pu_ht", min_value=0, max_value=cfg["max_unit_price_ht"]),
                 "pu_ht", explain="unit price {value!r} out of range"),
            Rule(E.ExpectColumnValuesToBeBetween(column="mt_ht", min_value=-cfg["max_line_amount_ht"],
                                                 max_value=cfg["max_line_amount_ht"]),
                 "mt_ht", explain="amount {value!r} out of range"),
            Rule(E.ExpectColumnValuesToBeBetween(
                column="date_livraison_yyyymmdd", min_value=_yyyymmdd(dt.date.fromisoformat(str(cfg["min_sale_date"]))),
                max_value=_yyyymmdd(export_date + dt.timedelta(days=cfg["max_days_after_export"]))),
                "date_livraison", explain="date {value!r} outside the plausible range"),
            Rule(E.ExpectColumnValuesToBeNull(column=DUPLICATE_COLUMN), "*",
                 explain="exact duplicate of line {dup} of the same file"),
        ]
    elif dataset.name == "produits":
        rules += [
            Rule(E.ExpectColumnValuesToBeBetween(column="millesime", min_value=1900, max_value=2100), "millesime",
                 explain="vintage {value!r} out of range"),
            Rule(E.ExpectColumnValuesToBeBetween(column="prix_ttc", min_value=0, max_value=cfg["max_unit_price_ht"] * 1.2),
                 "prix_ttc", explain="price {value!r} out of range"),
        ]
    elif dataset.name == "stock":
        rules += [
            Rule(E.ExpectColumnValuesToBeBetween(column="quantite", min_value=0, max_value=cfg["max_stock_quantity"]),
                 "quantite", explain="stock quantity {value!r} out of range"),
            Rule(E.ExpectColumnValuesToBeBetween(column="millesime", min_value=1900, max_value=2100), "millesime",
                 explain="vintage {value!r} out of range"),
        ]
    if dataset.natural_key:
        rules.append(Rule(E.ExpectColumnValuesToBeNull(column=DUPLICATE_COLUMN), dataset.natural_key[0],
                          explain="same " + "/".join(dataset.natural_key) + " as line {dup}, which supersedes it"))
    for rule in rules:
        rule.expectation.meta = {"severity": "warning" if rule.warning else "reject", "column": rule.column}
    return rules


# ---------------------------------------------------------------------------------------------
# Great Expectations context (file-based, so Data Docs accumulate across runs)


def _silence_gx() -> None:
    for name in ("great_expectations", "great_expectations.core", "great_expectations.data_context"):
        logging.getLogger(name).setLevel(logging.WARNING)


class Validator:
    """One GX file context per validate call; suites are (re)declared from code each time."""

    def __init__(self, docs_dir: Path, run_name: str):
        import great_expectations as gx

        _silence_gx()
        docs_dir.mkdir(parents=True, exist_ok=True)
        self.gx = gx
        self.context = gx.get_context(mode="file", project_root_dir=str(docs_dir))
        try:
            self.context.variables.progress_bars = {"globally": False, "metric_calculations": False}
            self.context.variables.save_config()
        except Exception:  # older/newer GX without the setting: bars are cosmetic
            pass
        self.source = self.context.data_sources.add_or_update_pandas("isavigne")
        self.run_name = run_name
        self._checkpoints: dict[tuple[str, dt.date], tuple[object, list[Rule]]] = {}

    def _checkpoint(self, dataset: Dataset, export_date: dt.date, cfg: dict):
        key = (dataset.name, export_date)
        if key in self._checkpoints:
            return self._checkpoints[key]
        gx = self.gx
        try:
            asset = self.source.get_asset(dataset.name)
        except LookupError:
            asset = self.source.add_dataframe_asset(name=dataset.name)
        try:
            batch = asset.get_batch_definition("chunk")
        except (KeyError, LookupError, ValueError):
            batch = asset.add_batch_definition_whole_dataframe("chunk")
        rules = _rules(dataset, export_date, cfg)
        suite = gx.ExpectationSuite(name=f"isavigne_{dataset.name}", expectations=[r.expectation for r in rules])
        suite = self.context.suites.add_or_update(suite)
        # add_or_update returns expectations with ids; keep our Rule objects aligned by order.
        for rule, expectation in zip(rules, suite.expectations):
            rule.expectation = expectation
        definition = self.context.validation_definitions.add_or_update(
            gx.ValidationDefinition(name=f"isavigne_{dataset.name}", data=batch, suite=suite))
        checkpoint = self.context.checkpoints.add_or_update(gx.Checkpoint(
            name=f"isavigne_{dataset.name}", validation_definitions=[definition],
            actions=[gx.checkpoint.UpdateDataDocsAction(name="update_data_docs")],
            result_format={"result_format": "COMPLETE"}))
        self._checkpoints[key] = (checkpoint, rules)
        return checkpoint, rules

    def run(self, dataset: Dataset, frame: pd.DataFrame, export_date: dt.date, cfg: dict, batch_label: str):
        from great_expectations.core.run_identifier import RunIdentifier

        checkpoint, rules = self._checkpoint(dataset, export_date, cfg)
        # The run name becomes a folder and a link in Data Docs: keep it URL- and path-safe.
        run_name = re.sub(r"[^A-Za-z0-9_.-]+", "_", f"{self.run_name}__{batch_label}")
        result = checkpoint.run(batch_parameters={"dataframe": frame}, run_id=RunIdentifier(run_name=run_name))
        validation = next(iter(result.run_results.values()))
        by_id = {r.expectation.id: r for r in rules}
        outcomes = []
        for expectation_result in validation.results:
            config = expectation_result.expectation_config
            rule = by_id.get(config.id)
            if rule is None:
                continue
            indexes = expectation_result.result.get("unexpected_index_list") or []
            if isinstance(indexes, list) and indexes and isinstance(indexes[0], dict):
                indexes = [next(iter(i.values())) for i in indexes]
            column = config.kwargs.get("column")
            label = f"{config.type}({column})" if column else config.type
            outcomes.append((rule, label, bool(expectation_result.success), indexes,
                             expectation_result.exception_info))
        return outcomes


# ---------------------------------------------------------------------------------------------
# split


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


def _good_columns(dataset: Dataset, good: pd.DataFrame) -> pd.DataFrame:
    keep = [c.name for c in dataset.columns if c.name in good] + [ROW_COLUMN]
    if "email_valid" in good:
        keep.append("email_valid")
    out = good[keep].copy()
    if dataset.name == "ventes_lignes":
        credit = out["document_type"].isin(CREDIT_NOTE_TYPES)
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


def validate(conn: psycopg.Connection, run_id: str) -> dict:
    """Validate every file this run ingested; returns per-dataset counters. Raises QualityGateError."""
    cfg = {**_defaults(), **settings.pipeline_config().get("validation", {})}
    paths = settings.paths()
    files = conn.execute(
        """SELECT file_id, dataset, file_path, export_date FROM etl.file_manifest
           WHERE run_id = %s AND status IN ('ingested', 'validated') ORDER BY file_id""",
        (run_id,),
    ).fetchall()
    summary: dict[str, dict] = {}
    if not files:
        return summary
    validator = Validator(paths.docs_dir, run_id)
    work = run_work_dir(run_id)
    for file_id, dataset_name, file_path, export_date in files:
        dataset = DATASETS[dataset_name]
        verdict = FileVerdict(file_id, dataset_name)
        folder = work / f"file-{file_id}"
        parts = sorted(folder.glob("part-*.parquet"))
        if not parts:
            raise RuntimeError(f"Work files of {file_path} are missing in {folder}; re-run the ingest task")
        for old in folder.glob("good-*.parquet"):
            old.unlink()
        with conn.transaction():
            conn.execute("DELETE FROM etl.quarantine WHERE file_id = %s", (file_id,))
            seen_lines = SeenLines()
            for index, part in enumerate(parts):
                chunk = build_frame(dataset, pd.read_parquet(part), seen_lines)
                outcomes = validator.run(dataset, chunk, export_date, cfg, f"file{file_id}_{Path(file_path).stem}_part{index}")
                good, bad = split_chunk(dataset, chunk, outcomes, verdict, file_path, file_id, run_id)
                copy_quarantine(conn, bad)
                _good_columns(dataset, good).to_parquet(folder / f"good-{index:05d}.parquet", index=False)
            conn.execute(
                """UPDATE etl.file_manifest SET status = 'validated', rows_good = %s, rows_quarantined = %s,
                       warnings = warnings || %s::jsonb WHERE file_id = %s""",
                (verdict.good, verdict.quarantined,
                 json.dumps([f"{k}: {v} rows" for k, v in verdict.warnings.items()]), file_id),
            )
        stats = summary.setdefault(dataset_name, {"rows": 0, "good": 0, "quarantined": 0, "warnings": {}, "reasons": {}})
        stats["rows"] += verdict.rows
        stats["good"] += verdict.good
        stats["quarantined"] += verdict.quarantined
        for key, value in verdict.warnings.items():
            stats["warnings"][key] = stats["warnings"].get(key, 0) + value
        for key, value in verdict.reasons.items():
            stats["reasons"][key] = stats["reasons"].get(key, 0) + value
    from winecrm.etl.datadocs import make_offline

    make_offline(paths.data_docs_index.parent)
    check_quality_gate(summary)
    return summary


def check_quality_gate(summary: dict) -> None:
    gate = settings.pipeline_config().get("quality_gate", {})
    default = float(gate.get("max_bad_row_share", 0.05))
    failures = []
    for dataset_name, stats in summary.items():
        limit = float((gate.get("per_dataset") or {}).get(dataset_name, default))
        share = stats["quarantined"] / stats["rows"] if stats["rows"] else 0.0
        stats["bad_share"] = round(share, 6)
        if share > limit:
            top = sorted(stats["reasons"].items(), key=lambda kv: -kv[1])[:5]
            failures.append(f"{dataset_name}: {stats['quarantined']} of {stats['rows']} rows bad "
                            f"({share:.1%} > {limit:.1%}); main reasons: "
                            + ", ".join(f"{k} ({v})" for k, v in top))
    if failures:
        raise QualityGateError("Quality gate failed — nothing was loaded. " + " | ".join(failures)
                               + ". Details in etl.quarantine; raise quality_gate.max_bad_row_share "
                               "in include/config/pipeline.yaml only if these rows are really expected.")


def _defaults() -> dict:
    return {
        "document_types": ["VENTE", "FACTURE", "BL", "AVOIR"],
        "max_qty_line": 5000,
        "max_unit_price_ht": 5000,
        "max_line_amount_ht": 250000,
        "min_sale_date": "2000-01-01",
        "max_days_after_export": 7,
        "max_stock_quantity": 10_000_000,
    }


__all__ = ["validate", "QualityGateError", "build_frame", "Validator"]
