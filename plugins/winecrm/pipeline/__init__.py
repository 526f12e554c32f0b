"""The weekly run, shared by the DAG, the demo, the CLI and the benchmarks: its record
(``runs``), whether the week's exports are there (``readiness``), its stages (``stages``) and
what people read about it (``notes``).

Each stage takes a psycopg connection and the run id, holds the warehouse's writer lock while it
writes (one writer per warehouse, whatever started the work), records what it did in its
attempt's row of ``etl.runs`` and is safe to repeat: a retry or a rerun of the same logical
date changes nothing more. The names below are the package's face: callers use ``pipeline.X``.
"""

from winecrm.pipeline.notes import consent_note, incomplete_documents_fr, run_note
from winecrm.pipeline.readiness import (ExportsMissing, ExportsRejected, check_exports, exports_status,
                                        wait_deadline)
from winecrm.pipeline.runs import (DATASET_LABELS, FILE_COLUMNS, QUARANTINE_COLUMNS, FilesRejected, RunWindow,
                                   WeekNotLoaded, current_window, finish, finish_checked, heartbeat, in_window,
                                   prepare, quarantine_reasons, resolve_raw_files, run_files, run_summary,
                                   week_not_loaded, week_window, writer)
from winecrm.pipeline.stages import (STAGES, FilesStillArriving, LiveWithoutBrevo, campaign_mode, live_refusal,
                                     rendered_campaign, run_all, run_data_docs, run_ingest, run_load, run_purge, run_recommend,
                                     run_render, run_report, run_score, run_send, run_validate, stages_until)

__all__ = [
    "consent_note", "incomplete_documents_fr", "run_note",
    "ExportsMissing", "ExportsRejected", "check_exports", "exports_status", "wait_deadline",
    "DATASET_LABELS", "FILE_COLUMNS", "QUARANTINE_COLUMNS", "FilesRejected", "RunWindow", "WeekNotLoaded",
    "current_window", "finish", "finish_checked", "heartbeat", "in_window", "prepare", "quarantine_reasons",
    "resolve_raw_files", "run_files", "run_summary", "week_not_loaded", "week_window", "writer",
    "STAGES", "FilesStillArriving", "LiveWithoutBrevo", "campaign_mode", "live_refusal", "rendered_campaign",
    "run_all", "run_data_docs", "run_ingest", "run_load", "run_purge", "run_recommend", "run_render", "run_report", "run_score",
    "run_send", "run_validate", "stages_until",
]
