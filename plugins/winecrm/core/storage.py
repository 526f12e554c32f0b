"""Where a run's intermediate work files live: a storage URL, not an assumption about disks.

``CRM_WORK_URL`` is a local path by default (``$CRM_DATA_DIR/work``) and may be any fsspec URL
(``s3://bucket/winecrm/work``, ``gs://…``, ``abfs://…``) so that tasks of one run can run on
different workers. Paths are universal_pathlib ``UPath`` objects — the same API as Airflow's
``ObjectStoragePath``, which the Airflow glue passes in when the URL needs an Airflow
connection (``CRM_WORK_CONN_ID``) for its credentials.
"""

from __future__ import annotations

import hashlib
import re
import shutil
from collections.abc import Callable
from pathlib import Path

from upath import UPath

from winecrm.core import settings

# The Airflow glue may install a factory building ObjectStoragePath (credentials from a connection).
_root_factory: Callable[[str], UPath] | None = None


def use_root_factory(factory: Callable[[str], UPath] | None) -> None:
    global _root_factory
    _root_factory = factory


def work_root() -> UPath:
    url = settings.paths().work_url
    return _root_factory(url) if _root_factory else UPath(url)


def is_local(path) -> bool:
    return getattr(path, "protocol", "") in ("", "file", "local") or isinstance(path, Path)


def run_work_dir(run_id: str) -> UPath:
    """The run's folder of work files (one per run id; safe as a path and an object key)."""
    safe = re.sub(r"[^A-Za-z0-9_.-]+", "_", run_id)[:80]
    return work_root() / f"{safe}-{hashlib.sha1(run_id.encode()).hexdigest()[:8]}"


def remove_tree(path) -> None:
    """Delete a folder of work files and everything under it (missing is fine)."""
    if is_local(path):
        shutil.rmtree(str(getattr(path, "path", path)), ignore_errors=True)
        return
    try:
        path.fs.rm(path.path, recursive=True)
    except FileNotFoundError:
        pass


def make_dirs(path) -> None:
    if is_local(path):
        Path(str(getattr(path, "path", path))).mkdir(parents=True, exist_ok=True)
    else:
        path.mkdir(parents=True, exist_ok=True)


def sorted_glob(folder, pattern: str) -> list:
    try:
        return sorted(folder.glob(pattern), key=lambda p: p.name)
    except FileNotFoundError:
        return []


def _local_path(path) -> str | None:
    return str(getattr(path, "path", path)) if is_local(path) else None


def write_parquet(frame, path) -> None:
    """A work file: by path on a local disk (Arrow's own file I/O), else through the storage URL."""
    local = _local_path(path)
    if local is not None:
        frame.to_parquet(local, index=False)
        return
    with path.open("wb") as fh:
        frame.to_parquet(fh, index=False)


def read_parquet(path, columns: list[str] | None = None):
    import pandas as pd

    local = _local_path(path)
    if local is not None:
        return pd.read_parquet(local, columns=columns)
    with path.open("rb") as fh:
        return pd.read_parquet(fh, columns=columns)


def parquet_rows(path) -> int:
    import pyarrow.parquet as pq

    local = _local_path(path)
    if local is not None:
        return pq.ParquetFile(local).metadata.num_rows
    with path.open("rb") as fh:
        return pq.ParquetFile(fh).metadata.num_rows
