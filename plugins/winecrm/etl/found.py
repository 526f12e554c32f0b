"""What validate found in each chunk, kept in the run's work folder until the ``data_docs`` task
has Great Expectations store it and render its Data Docs pages (``winecrm.etl.gx_context``).

Validate never imports GX: it checks the chunks (``winecrm.etl.checks``), quarantines, applies
the quality gate and writes one ``found-NNNNN.json`` beside each chunk's parts — the suites'
settings, the run name and time the pages are filed under (so validate already knows each
file's page for its logs and the gate's message), the batch fingerprint and what each rule found.
GX (~2.5 s to import) and the pages then cost the ``data_docs`` task, which runs beside the load.

The unexpected values kept here are the checked frame's own (the first 200 per rule, GX's cap),
with their types (a date stays a date, a missing value stays the kind of missing it was), so the
stored results and the pages are those GX's engine writes (``tests/winecrm/etl/test_checks.py``).
Some are personal (a malformed e-mail address): the erasure blanks them here as in the Parquet
parts (``winecrm.privacy.work_files.blank_found``).
"""

from __future__ import annotations

import datetime as dt
import json
import math
import re
from dataclasses import dataclass

from winecrm.core import storage

PATTERN = "found-*.json"
SUITE_PREFIX = "isavigne_"
DATASOURCE = "isavigne"  # the pandas data source the suites' batches come from


def run_name_of(run_id: str, batch_label: str) -> str:
    """The validation's run name: a folder and a link in Data Docs, so URL- and path-safe."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", f"{run_id}__{batch_label}")


def run_time_folder(run_time: dt.datetime) -> str:
    """The folder GX files a run's pages under (its RunIdentifier's time, UTC)."""
    return run_time.astimezone(dt.timezone.utc).strftime("%Y%m%dT%H%M%S.%fZ")


def page_of(dataset: str, run_name: str, run_time: dt.datetime) -> str:
    """A chunk's Data Docs page (the quarantining suite's), relative to the site."""
    return (f"validations/{SUITE_PREFIX}{dataset}/{run_name}/{run_time_folder(run_time)}/"
            f"{DATASOURCE}-{dataset}.html")


# -- the values, with their types -------------------------------------------------------------

def _encode(value):
    import numpy as np
    import pandas as pd

    if value is None:
        return None
    if value is pd.NA:
        return {"na": 1}
    if value is pd.NaT:
        return {"nat": 1}
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, bool) or isinstance(value, str):
        return value
    if isinstance(value, int):
        return {"int": str(value)}  # JSON numbers would turn 3 and 3.0 alike
    if isinstance(value, float):
        return {"float": repr(value)} if math.isfinite(value) else {"float": str(value)}
    if isinstance(value, pd.Timestamp):
        return {"ts": value.isoformat()}
    if isinstance(value, dt.datetime):
        return {"datetime": value.isoformat()}
    if isinstance(value, dt.date):
        return {"date": value.isoformat()}
    raise TypeError(f"no record of a {type(value).__name__} value")


def _decode(value):
    import pandas as pd

    if not isinstance(value, dict):
        return value
    (kind, text), = value.items()
    return {"na": lambda: pd.NA, "nat": lambda: pd.NaT, "int": lambda: int(text), "float": lambda: float(text),
            "ts": lambda: pd.Timestamp(text), "datetime": lambda: dt.datetime.fromisoformat(text),
            "date": lambda: dt.date.fromisoformat(text)}[kind]()


# -- the files --------------------------------------------------------------------------------

@dataclass(frozen=True)
class Found:
    dataset: str
    export_date: dt.date
    settings: dict  # ValidationConfig, as validate used it
    run_name: str
    run_time: dt.datetime
    fingerprint: str
    metrics: list[dict]  # per rule, in the rules' order (winecrm.etl.checks.evaluate)


def save(folder, index: int, found: Found) -> None:
    """Write the chunk's record; raises TypeError (before writing anything) for a value whose type
    it cannot keep (validate then has GX record the chunk at once)."""
    metrics = []
    for measured in found.metrics:
        measured = dict(measured)
        if "unexpected_list" in measured:
            measured["unexpected_list"] = [_encode(v) for v in measured["unexpected_list"]]
            measured["unexpected_index_list"] = [int(i) for i in measured["unexpected_index_list"]]
        if "observed_value" in measured:
            measured["observed_value"] = int(measured["observed_value"])
        metrics.append(measured)
    record = {"dataset": found.dataset, "export_date": found.export_date.isoformat(), "settings": found.settings,
              "run_name": found.run_name, "run_time": found.run_time.isoformat(),
              "fingerprint": found.fingerprint, "metrics": metrics}
    _write(folder / f"found-{index:05d}.json", record)


def _write(path, record: dict) -> None:
    text = json.dumps(record, ensure_ascii=False, default=str)
    if storage.is_local(path):
        import os

        local = str(getattr(path, "path", path))
        with open(local + ".writing", "w", encoding="utf-8") as fh:
            fh.write(text)
        os.replace(local + ".writing", local)  # a reader never sees half of one
    else:
        path.write_text(text, encoding="utf-8")


def _read(path) -> dict:
    return json.loads(path.read_text(encoding="utf-8"))


def files(run_dir) -> list:
    """The run's records, file after file, chunk after chunk."""
    return sorted(storage.sorted_glob(run_dir, f"file-*/{PATTERN}"), key=lambda p: (p.parent.name, p.name))


def clear(folder) -> None:
    for path in storage.sorted_glob(folder, PATTERN):
        path.unlink()


def load(path) -> Found:
    record = _read(path)
    metrics = []
    for measured in record["metrics"]:
        if "unexpected_list" in measured:
            measured["unexpected_list"] = [_decode(v) for v in measured["unexpected_list"]]
        metrics.append(measured)
    return Found(record["dataset"], dt.date.fromisoformat(record["export_date"]), record["settings"],
                 record["run_name"], dt.datetime.fromisoformat(record["run_time"]), record["fingerprint"], metrics)


def every_run_files() -> list:
    """Every run's records still in the work folders (the erasure reads them all)."""
    return sorted(storage.sorted_glob(storage.work_root(), f"**/{PATTERN}"), key=str)


def blank_values(path, blanked, *, dry_run: bool = False) -> int:
    """The record's unexpected values for which ``blanked(line, value)`` is true become missing
    (the erasure: ``winecrm.privacy.work_files.blank_found``); returns how many."""
    record = _read(path)
    n = 0
    for measured in record["metrics"]:
        values = measured.get("unexpected_list") or []
        lines = measured.get("unexpected_index_list") or []
        for i, value in enumerate(values):  # the values are the first of the failing lines, in order
            if value is not None and blanked(lines[i] if i < len(lines) else None, value):
                values[i] = None
                n += 1
    if n and not dry_run:
        _write(path, record)
    return n
