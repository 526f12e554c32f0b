"""Task logs of the demo's ``airflow dags test`` runs, written where the UI's log view reads them.

``airflow dags test`` runs each task in its own process and prints the task's log on the
console: no log file is written, so the log view of those runs says "Log file not found on
worker". The demo keeps each run's console output; this module cuts it at the
``[DAG TEST] starting task_id=…`` / ``[DAG TEST] end task task_id=…`` lines and writes each
task's part as the JSON lines a worker writes, at the path Airflow's file task handler renders
for that task instance (the run's log template, its try number) — so the UI finds it as it
finds a scheduled run's log.

    python -m winecrm_tools.demo.task_logs CONSOLE_OUTPUT_FILE [--offset N]   # with the Airflow environment

Lines of the in-process execution API (``airflow.api_fastapi…``) and of ``dags test`` itself
are left out: a worker's log does not hold them either.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path

# structlog's console renderer: "2026-12-03T07:47:18.953754Z [info     ] event [logger] key=value …"
LINE = re.compile(r"^(?P<ts>\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d+)?Z) \[(?P<level>[a-z]+)\s*\] (?P<rest>.*)$")
LOGGER = re.compile(r"\s\[(?P<logger>[A-Za-z_][\w.]*)\](?=\s\w+=|$)")
START = re.compile(r"\[DAG TEST\] starting task_id=(?P<task>\S+) map_index=(?P<map>-?\d+)")
END = re.compile(r"\[DAG TEST\] end task task_id=(?P<task>\S+) map_index=(?P<map>-?\d+)")
RUN_ID = re.compile(r"\[DAG TEST\] running task <TaskInstance: (?P<dag>[\w.-]+)\.(?P<task>\S+) (?P<run>\S+) ")
NOT_THE_TASKS = ("airflow.api_fastapi", "airflow.sdk.definitions.dag")


@dataclass
class TaskLog:
    dag_id: str
    run_id: str
    task_id: str
    map_index: int
    entries: list[dict] = field(default_factory=list)


def parse_line(line: str) -> dict | None:
    """One console line as a structured log entry, or None for a continuation line (traceback)."""
    match = LINE.match(line)
    if match is None:
        return None
    rest = match["rest"]
    entry = {"timestamp": match["ts"].replace("Z", "+00:00"), "level": match["level"]}
    found = LOGGER.search(rest)
    if found:
        entry["event"] = rest[:found.start()].rstrip()
        entry["logger"] = found["logger"]
        extra = rest[found.end():].strip()
        for key, value in re.findall(r"(\w+)=(\S+)", extra):
            if key not in ("loc", "correlation_id", "ti_id"):
                entry.setdefault(key, value)
    else:
        entry["event"] = rest.rstrip()
    return entry


def split_tasks(output: str) -> list[TaskLog]:
    """Each task's log in a ``dags test`` console output, in the order the tasks ran."""
    logs: list[TaskLog] = []
    current: TaskLog | None = None
    last: dict | None = None
    groups = 0  # "::group::" lines open: an "::endgroup::" whose "::group::" was not printed is left out
    for line in output.splitlines():
        if (start := START.search(line)) and LINE.match(line):
            current = TaskLog("", "", start["task"], int(start["map"]))
            last, groups = None, 0
            continue
        if current is None:
            continue
        if (run := RUN_ID.search(line)) and LINE.match(line):
            current.dag_id, current.run_id = run["dag"], run["run"]
            continue
        if END.search(line) and LINE.match(line):
            if current.run_id:
                logs.append(current)
            current, last = None, None
            continue
        entry = parse_line(line)
        if entry is None:
            if last is not None and line.strip():
                last["event"] += "\n" + line  # a traceback or a message on several lines
            continue
        if entry.get("logger", "").startswith(NOT_THE_TASKS):
            last = None
            continue
        if entry["event"].startswith("::group::"):
            groups += 1
        elif entry["event"] == "::endgroup::":
            if not groups:
                continue
            groups -= 1
        current.entries.append(entry)
        last = entry
    return logs


def write_task_logs(output: str) -> list[Path]:
    """Write every task log of ``output`` under Airflow's base log folder; returns the files.

    Needs the Airflow environment of the runs (AIRFLOW_HOME, metadata database): the path comes
    from Airflow's own file task handler, so a changed ``log_filename_template`` is followed."""
    from airflow.configuration import conf
    from airflow.models.taskinstance import TaskInstance
    from airflow.utils.log.file_task_handler import FileTaskHandler
    from airflow.utils.session import create_session
    from sqlalchemy import select

    base = Path(conf.get("logging", "base_log_folder"))
    handler = FileTaskHandler(base_log_folder=str(base))
    written = []
    with create_session() as session:
        for task_log in split_tasks(output):
            ti = session.scalar(select(TaskInstance).where(
                TaskInstance.dag_id == task_log.dag_id, TaskInstance.run_id == task_log.run_id,
                TaskInstance.task_id == task_log.task_id, TaskInstance.map_index == task_log.map_index))
            if ti is None or not ti.try_number:
                continue
            path = base / handler._render_filename(ti, ti.try_number, session=session)
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text("".join(json.dumps(e, ensure_ascii=False) + "\n" for e in task_log.entries),
                            encoding="utf-8")
            written.append(path)
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("output", type=Path, help="console output of one or more `airflow dags test` runs")
    parser.add_argument("--offset", type=int, default=0, help="read the file from this byte on (one run of several)")
    args = parser.parse_args(argv)
    with open(args.output, "rb") as fh:
        fh.seek(args.offset)
        written = write_task_logs(fh.read().decode("utf-8", errors="replace"))
    print(f"{len(written)} task log(s) written")
    return 0


if __name__ == "__main__":
    sys.exit(main())
