"""The project's one Airflow plugin: the weekly run's pages inside the Airflow UI.

- "Data Docs" in the navigation: the Great Expectations Data Docs of the quality checks.
- "Run summary" on each DAG run: what the run's attempts did (files, rows, quarantine reasons,
  timings, errors, consent changes of the clients export), from ``etl.runs``.

Airflow mounts plugin apps without authenticating them, so every route here checks the caller
itself: the Airflow UI's session cookie or an ``Authorization: Bearer`` token from Airflow's
``/auth/token``, authorised for the DAG's runs by Airflow's auth manager. A signed-out browser is sent to
Airflow's login page (and back); other anonymous requests get 401. The domain package is imported only inside the routes (plugins/.airflowignore keeps the
plugin manager out of plugins/winecrm).
"""

from __future__ import annotations

import html
import logging
from pathlib import Path

from airflow.listeners import hookimpl
from airflow.plugins_manager import AirflowPlugin
from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.responses import FileResponse, HTMLResponse, RedirectResponse

log = logging.getLogger(__name__)
DAG_ID = "crm_weekly"
URL_PREFIX = "/winecrm"


async def caller_may_read_runs(request: Request) -> None:
    """Airflow's own checks, imported when a request comes (not when every component loads the
    plugin): the bearer token or the UI's session cookie identifies the user (401 when absent or
    invalid), then the auth manager decides whether they may read the DAG's runs (403)."""
    from airflow.api_fastapi.auth.managers.models.resource_details import DagAccessEntity
    from airflow.api_fastapi.core_api.security import bearer_scheme, get_user, requires_access_dag

    credentials = await bearer_scheme(request)
    try:
        user = await get_user(request, None, credentials)
    except HTTPException as exc:
        if exc.status_code == 401 and credentials is None and _wants_html(request):
            # a signed-out browser (a link from the run page, a bookmark): the login page, then back here
            from airflow.api_fastapi.app import get_auth_manager

            login = get_auth_manager().get_url_login(next_url=str(request.url))
            raise HTTPException(303, "Sign in to Airflow first", headers={"Location": login}) from None
        raise
    requires_access_dag("GET", DagAccessEntity.RUN, param_dag_id=DAG_ID)(request, user)


def _wants_html(request: Request) -> bool:
    accept = request.headers.get("accept", "")
    return request.method == "GET" and "text/html" in accept


app = FastAPI(title="winecrm", description="Weekly run pages for the Airflow UI (authenticated)",
              dependencies=[Depends(caller_may_read_runs)])


def _page(title: str, body: str) -> HTMLResponse:
    return HTMLResponse(
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>"
        f"<title>{html.escape(title)}</title><style>"
        "body{font-family:system-ui,sans-serif;margin:1.5rem;color:#222}table{border-collapse:collapse;margin:.5rem 0}"
        "td,th{border:1px solid #ccc;padding:.3rem .6rem;text-align:left;vertical-align:top;overflow-wrap:anywhere}"
        "th{background:#f4f4f4}.failed{color:#b00020}.success{color:#1b7f3b}"
        "pre{white-space:pre-wrap;margin:0;background:#fafafa;border:1px solid #eee;padding:.5rem}"
        f"</style></head><body>{body}</body></html>")


@app.get("/runs/{run_id}", response_class=HTMLResponse)
def run_summary(run_id: str) -> HTMLResponse:
    from winecrm.airflow.connections import warehouse_connection

    with warehouse_connection("ui") as conn:
        attempts = conn.execute(
            """SELECT attempt, status, week_start, week_end, started_at, finished_at, files_seen, files_new,
                      files_duplicate, files_quarantined, rows_read, rows_written, rows_superseded, rows_skipped,
                      rows_quarantined, stage_seconds, error, note, params, details
               FROM etl.runs WHERE run_id = %s ORDER BY attempt DESC""", (run_id,)).fetchall()
        from winecrm import pipeline

        reasons = pipeline.quarantine_reasons(conn, run_id)
        files = pipeline.run_files(conn, run_id)
    if not attempts:
        raise HTTPException(404, f"No weekly run {run_id!r} in the warehouse (etl.runs)")
    from winecrm.core.weeks import Week, paris

    e = html.escape
    first = attempts[0]
    body = [f"<h2>Weekly run {e(run_id)}</h2>",
            f"<p><b>{e(first[17] or Week(first[2], first[3]).label_fr())}</b></p>",
            f"<p>Sales week {first[2]:%d/%m/%Y} – {first[3]:%d/%m/%Y}; times in Paris time. "
            f"<a href='../data-docs/index.html'>Data Docs</a></p>",
            "<h3>Attempts</h3><table><tr><th>#</th><th>status</th><th>started</th><th>finished</th><th>files "
            "seen / new / duplicate / unreadable</th><th>rows read / written / older rows replaced / skipped "
            "(older) / quarantined</th><th>seconds per stage</th><th>params</th></tr>"]
    errors = []
    for a in attempts:
        stages = ", ".join(f"{k} {v:.1f}" for k, v in (a[15] or {}).items())
        params = ", ".join(f"{k}={v}" for k, v in (a[18] or {}).items() if v not in (None, [], ""))
        body.append(f"<tr><td>{a[0]}</td><td class='{e(a[1])}'>{e(a[1])}</td><td>{e(paris(a[4]))}</td>"
                    f"<td>{e(paris(a[5])) if a[5] else ''}</td>"
                    f"<td>{a[6]} / {a[7]} / {a[8]} / {a[9]}</td><td>{a[10]} / {a[11]} / {a[12]} / {a[13]} / {a[14]}</td>"
                    f"<td>{e(stages)}</td><td>{e(params) or 'defaults'}</td></tr>")
        if a[16]:
            errors.append(f"<h4>Attempt {a[0]}</h4><pre>{e(a[16])}</pre>")
    body.append("</table>")
    # files and quarantine as the run left them, when a later run has taken some of its files over
    at_finish = next(((a[19] or {}).get("at_finish") for a in attempts if (a[19] or {}).get("at_finish")), None)
    if at_finish:
        now_here = {f[0] for f in files}
        files = files + [[*f[:7], f"{f[7] or ''} (taken over by a later run since)".lstrip()]
                         for f in at_finish["files"] if f[0] not in now_here]
        if not reasons:
            reasons = at_finish["quarantine"]
    if errors:
        body.append("<h3>Errors</h3>" + "".join(errors))
    consent = _consent_changes(attempts)
    if consent:
        body.append(consent)
    body.append("<h3>Files</h3><table><tr><th>file</th><th>dataset</th><th>status</th><th>rows read</th>"
                "<th>written</th><th>skipped (older)</th><th>quarantined</th><th>reason</th></tr>")
    for f in files:
        body.append("<tr>" + "".join(f"<td>{e('' if v is None else str(v))}</td>" for v in f) + "</tr>")
    body.append("</table><h3>Quarantine reasons</h3><table><tr><th>dataset</th><th>file</th><th>column</th>"
                "<th>checks</th><th>rows</th><th>example</th></tr>")
    for r in reasons:
        body.append("<tr>" + "".join(f"<td>{e(str(v))}</td>" for v in r) + "</tr>")
    body.append("</table>")
    return _page(f"winecrm run {run_id}", "".join(body))


def _consent_changes(attempts) -> str:
    """The consent changes the run's clients load recorded (crm.consent_log, proof of consent):
    the French line of the note, then per export file. Empty when there were none."""
    from winecrm.pipeline import consent_note

    details = next((a[19] for a in attempts if ((a[19] or {}).get("load") or {}).get("clients")), None) or {}
    line = consent_note(details)
    if not line:
        return ""
    e = html.escape
    rows = "".join(f"<tr><td>{e(path)}</td><td>{n['opt_out']}</td><td>{n['opt_in']}</td></tr>"
                   for path, n in sorted(details["load"]["clients"]["consent"].get("files", {}).items()))
    return (f"<h3>Consent changes</h3><p>{e(line)}</p><table><tr><th>export file</th><th>opt-outs</th>"
            f"<th>opt-ins</th></tr>{rows}</table><p>History per customer: crm.consent_log (source erp_export).</p>")


@app.get("/reports/{run_id}")
def weekly_report(run_id: str):
    """The weekly report (HTML, self-contained) of a run's week; ``?format=json`` its summary."""
    from winecrm.airflow.connections import warehouse_connection

    with warehouse_connection("ui") as conn:
        row = conn.execute("SELECT details -> 'report' FROM etl.runs WHERE run_id = %s ORDER BY attempt DESC LIMIT 1",
                           (run_id,)).fetchone()
    report = row[0] if row else None
    if not report:
        raise HTTPException(404, f"No weekly report for run {run_id!r} yet (the report task writes it)")
    from winecrm.core import settings

    root = settings.paths().reports_dir.resolve()
    target = Path(report["html"]).resolve()
    if not target.is_relative_to(root) or not target.is_file():
        raise HTTPException(404, "The report file is gone (CRM_REPORTS_DIR moved or purged)")
    return FileResponse(target, media_type="text/html")


@app.get("/previews/{campaign_id}/{scenario}")
def campaign_preview(campaign_id: str, scenario: str):
    """A rendered e-mail of a campaign's scenario, as the approval request links it."""
    from winecrm.campaigns.render import previews_dir
    from winecrm.core import settings

    root = settings.paths().reports_dir.resolve()
    target = (previews_dir(campaign_id) / f"{scenario}.html").resolve()
    if not target.is_relative_to(root) or not target.is_file():
        raise HTTPException(404, f"No preview of {scenario!r} for campaign {campaign_id!r}")
    return FileResponse(target, media_type="text/html")


@app.get("/data-docs/")
def data_docs_root():
    return RedirectResponse("index.html")


@app.get("/data-docs/{path:path}")
def data_docs(path: str):
    from winecrm.core import settings

    site = settings.paths().data_docs_site.resolve()
    target = (site / path).resolve()
    if not target.is_relative_to(site) or not target.is_file():
        raise HTTPException(404, "No such Data Docs page (has a run validated anything yet?)")
    return FileResponse(target)


RUNNING_SUFFIX = " : en cours"
# Airflow's reasons for a failed run, when no task said more (e.g. prepare_run refused the form).
FAILURE_REASONS_FR = {
    "task_failure": "une tâche a échoué avant d'ouvrir le run (voir son journal)",
    "timed_out": "durée maximale du run dépassée (timeouts.run_hours)",
}


class RunNotes:
    """Airflow listener: the run list shows which week a run covers and what it did, as the
    run's note. The tasks hand the text over as an XCom (``run_note``: « Semaine du … : en
    cours », then the outcome from ``finish_run`` or the failure callback); the component that
    changes the run's state (scheduler, API server, ``airflow dags test``) writes it as the note.
    A note a person wrote is left alone."""

    KEY = "run_note"
    DAG_IDS = (DAG_ID, "crm_events")

    def _set(self, dag_run, fallback: str | None = None, finished: bool = False) -> None:
        if getattr(dag_run, "dag_id", None) not in self.DAG_IDS:
            return
        try:
            from sqlalchemy.orm import object_session

            from airflow import settings as airflow_settings

            # The caller's session and transaction: the scheduler holds row locks on the run (a
            # note written through another connection would wait for them) and forbids commits
            # while it schedules (prohibit_commit: even a SAVEPOINT release through the session
            # counts as one). So the note is written on the caller's connection inside a plain
            # SQL savepoint, and the caller commits it with its own work; a failure undoes only
            # the note. Only a caller with no transaction open gets a commit from here.
            session = object_session(dag_run)
            own_transaction = False
            if session is None:
                session = airflow_settings.Session()
                own_transaction = not session.in_transaction()
            connection = session.connection()
            connection.exec_driver_sql("SAVEPOINT winecrm_run_note")
            try:
                self._write(connection, dag_run.id, fallback, finished)
                connection.exec_driver_sql("RELEASE SAVEPOINT winecrm_run_note")
            except Exception:
                connection.exec_driver_sql("ROLLBACK TO SAVEPOINT winecrm_run_note")
                if own_transaction:
                    session.rollback()
                raise
            if own_transaction:
                session.commit()
        except Exception:  # a note must never break scheduling
            log.exception("winecrm: could not set the run note")

    def _write(self, connection, dag_run_id: int, fallback: str | None, finished: bool) -> None:
        """Core SQL on the caller's connection (no ORM flush of the caller's pending objects)."""
        from sqlalchemy import insert, select, update

        from airflow.models.dagrun import DagRunNote
        from airflow.models.xcom import XComModel

        notes, xcoms = DagRunNote.__table__, XComModel.__table__
        note = connection.execute(select(notes.c.user_id, notes.c.content)
                                  .where(notes.c.dag_run_id == dag_run_id)).first()
        if note is not None and note.user_id is not None:
            return  # a note a person wrote stays
        value = connection.execute(select(xcoms.c.value).where(xcoms.c.dag_run_id == dag_run_id,
                                                               xcoms.c.key == self.KEY)
                                   .order_by(xcoms.c.timestamp.desc()).limit(1)).scalar()
        text = XComModel.deserialize_value(_Row(value)) if value is not None else fallback
        if finished and fallback and (not isinstance(text, str) or text.endswith(RUNNING_SUFFIX)):
            text = fallback  # failed before any task could say how (timeout, marked failed)
        if not isinstance(text, str) or not text:
            return
        text = text[:1000]
        if note is None:
            connection.execute(insert(notes).values(dag_run_id=dag_run_id, content=text, user_id=None))
        elif note.content != text:
            connection.execute(update(notes).where(notes.c.dag_run_id == dag_run_id).values(content=text))

    def _week_label(self, dag_run) -> str | None:
        """« Semaine du 09/11 au 15/11/2026 » for crm_weekly; « Événements » for crm_events."""
        if dag_run.dag_id != DAG_ID:
            return "Événements"
        try:
            import datetime as dt

            from winecrm.core.weeks import Week

            week = (dag_run.conf or {}).get("week")
            if week:
                return Week.containing(dt.date.fromisoformat(str(week)[:10])).label_fr()
            return Week.before(dag_run.logical_date or dag_run.run_after).label_fr()
        except Exception:
            return None

    @hookimpl
    def on_dag_run_running(self, dag_run, msg):
        label = self._week_label(dag_run) if dag_run.dag_id == DAG_ID else None
        self._set(dag_run, f"{label}{RUNNING_SUFFIX}" if label else None)

    def _close_marked_run(self, dag_run, msg: str | None, failed: bool) -> str | None:
        """A run marked failed (or success) in the UI runs no callback of ours: close its record
        in etl.runs here (the API server has the warehouse connection, the plugin's pages use it)
        and tell on-call. Runs failed by a task or a timeout are closed by the callbacks."""
        if dag_run.dag_id != DAG_ID or "manually" not in (msg or ""):
            return None
        try:
            from winecrm import pipeline
            from winecrm.airflow.connections import warehouse_connection

            with warehouse_connection("marked-in-ui") as conn:
                row = conn.execute("SELECT status FROM etl.runs WHERE run_id = %s ORDER BY attempt DESC LIMIT 1",
                                   (dag_run.run_id,)).fetchone()
                if row is None or row[0] != "running":
                    return None
                summary = pipeline.finish(conn, dag_run.run_id, error=f"run: {msg}" if failed else None)
        except Exception:
            log.exception("winecrm: could not close the run record of %s", dag_run.run_id)
            return None
        if failed:
            from winecrm.airflow.callbacks import EmailAlert, WebhookAlert

            context = {"dag_run": dag_run, "reason": msg, "ti": None, "exception": None}
            for notifier in (WebhookAlert(), EmailAlert()):
                try:
                    notifier(context) if isinstance(notifier, EmailAlert) else notifier.notify(context)
                except Exception:
                    log.exception("winecrm: alert not sent")
        return summary.get("note")

    @hookimpl
    def on_dag_run_success(self, dag_run, msg):
        note = self._close_marked_run(dag_run, msg, failed=False)
        if note:
            note = f"{note} — marqué réussi à la main dans l'interface ({msg})"
        self._set(dag_run, note, finished=note is not None)

    @hookimpl
    def on_dag_run_failed(self, dag_run, msg):
        note = self._close_marked_run(dag_run, msg, failed=True)
        label = self._week_label(dag_run)
        why = FAILURE_REASONS_FR.get(msg or "", msg or FAILURE_REASONS_FR["task_failure"])
        fallback = note or (f"{label} : ÉCHEC — {why}" if label else None)
        self._set(dag_run, fallback, finished=True)


class _Row:
    """What XComModel.deserialize_value expects: an object with a ``value``."""

    def __init__(self, value):
        self.value = value


class WineCrmPlugin(AirflowPlugin):
    name = "winecrm"
    listeners = [RunNotes()]
    fastapi_apps = [{"app": app, "url_prefix": URL_PREFIX, "name": "winecrm weekly run pages"}]
    external_views = [
        {"name": "Data Docs", "href": "winecrm/data-docs/index.html", "destination": "nav",
         "category": "browse", "url_route": "winecrm-data-docs"},
        {"name": "Run summary", "href": "winecrm/runs/{RUN_ID}", "destination": "dag_run",
         "url_route": "winecrm-run-summary"},
        {"name": "Rapport hebdo", "href": "winecrm/reports/{RUN_ID}", "destination": "dag_run",
         "url_route": "winecrm-weekly-report"},
    ]


__all__ = ["WineCrmPlugin", "app"]
