"""The project's one Airflow plugin: the weekly run's pages inside the Airflow UI.

- "Data Docs" in the navigation: the Great Expectations Data Docs of the quality checks.
- "Run summary" on each DAG run: what the run's attempts did (files, rows, quarantine reasons,
  timings, errors), from ``etl.runs``.

Airflow mounts plugin apps without authenticating them, so every route here checks the caller
itself: the Airflow UI's session cookie or an ``Authorization: Bearer`` token from Airflow's
``/auth/token``, authorised for the DAG's runs by Airflow's auth manager. Anonymous requests get
401. The domain package is imported only inside the routes (plugins/.airflowignore keeps the
plugin manager out of plugins/winecrm).
"""

from __future__ import annotations

import html

from airflow.plugins_manager import AirflowPlugin
from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.responses import FileResponse, HTMLResponse, RedirectResponse

DAG_ID = "crm_weekly"
URL_PREFIX = "/winecrm"


async def caller_may_read_runs(request: Request) -> None:
    """Airflow's own checks, imported when a request comes (not when every component loads the
    plugin): the bearer token or the UI's session cookie identifies the user (401 when absent or
    invalid), then the auth manager decides whether they may read the DAG's runs (403)."""
    from airflow.api_fastapi.auth.managers.models.resource_details import DagAccessEntity
    from airflow.api_fastapi.core_api.security import bearer_scheme, get_user, requires_access_dag

    credentials = await bearer_scheme(request)
    user = await get_user(request, None, credentials)
    requires_access_dag("GET", DagAccessEntity.RUN, param_dag_id=DAG_ID)(request, user)


app = FastAPI(title="winecrm", description="Weekly run pages for the Airflow UI (authenticated)",
              dependencies=[Depends(caller_may_read_runs)])


def _page(title: str, body: str) -> HTMLResponse:
    return HTMLResponse(
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>"
        f"<title>{html.escape(title)}</title><style>"
        "body{font-family:system-ui,sans-serif;margin:1.5rem;color:#222}table{border-collapse:collapse;margin:.5rem 0}"
        "td,th{border:1px solid #ccc;padding:.3rem .6rem;text-align:left;vertical-align:top;overflow-wrap:anywhere}"
        "th{background:#f4f4f4}.failed{color:#b00020}.success{color:#1b7f3b}pre{white-space:pre-wrap;margin:0}"
        f"</style></head><body>{body}</body></html>")


@app.get("/runs/{run_id}", response_class=HTMLResponse)
def run_summary(run_id: str) -> HTMLResponse:
    from winecrm.airflow.connections import warehouse_connection

    with warehouse_connection("ui") as conn:
        attempts = conn.execute(
            """SELECT attempt, status, week_start, week_end, started_at, finished_at, files_seen, files_new,
                      files_duplicate, files_quarantined, rows_read, rows_loaded, rows_quarantined,
                      stage_seconds, error
               FROM etl.runs WHERE run_id = %s ORDER BY attempt DESC""", (run_id,)).fetchall()
        reasons = conn.execute(
            """SELECT dataset, file_path,
                      coalesce(column_name, CASE WHEN row_no IS NULL THEN '(whole file)' ELSE '(row)' END),
                      array_to_string(expectations, ', '),
                      count(*), min(reason)
               FROM etl.quarantine WHERE run_id = %s GROUP BY 1, 2, 3, 4 ORDER BY 5 DESC LIMIT 50""",
            (run_id,)).fetchall()
        files = conn.execute(
            """SELECT file_path, dataset, status, coalesce(rows_read, 0), coalesce(rows_loaded, 0),
                      coalesce(rows_quarantined, 0), status_reason
               FROM etl.file_manifest WHERE run_id = %s ORDER BY file_id""", (run_id,)).fetchall()
    if not attempts:
        raise HTTPException(404, f"No weekly run {run_id!r} in the warehouse (etl.runs)")
    e = html.escape
    first = attempts[0]
    body = [f"<h2>Weekly run {e(run_id)}</h2>",
            f"<p>Sales week {first[2]:%d/%m/%Y} – {first[3]:%d/%m/%Y}. "
            f"<a href='../data-docs/index.html'>Data Docs</a></p>",
            "<h3>Attempts</h3><table><tr><th>#</th><th>status</th><th>started</th><th>finished</th><th>files "
            "seen / new / duplicate / rejected</th><th>rows read / loaded / quarantined</th><th>seconds per stage</th>"
            "<th>error</th></tr>"]
    for a in attempts:
        stages = ", ".join(f"{k} {v:.1f}" for k, v in (a[13] or {}).items())
        body.append(f"<tr><td>{a[0]}</td><td class='{e(a[1])}'>{e(a[1])}</td><td>{a[4]:%d/%m %H:%M}</td>"
                    f"<td>{'' if a[5] is None else f'{a[5]:%d/%m %H:%M}'}</td>"
                    f"<td>{a[6]} / {a[7]} / {a[8]} / {a[9]}</td><td>{a[10]} / {a[11]} / {a[12]}</td>"
                    f"<td>{e(stages)}</td><td><pre>{e(a[14] or '')}</pre></td></tr>")
    body.append("</table><h3>Files</h3><table><tr><th>file</th><th>dataset</th><th>status</th><th>rows read</th>"
                "<th>loaded</th><th>quarantined</th><th>reason</th></tr>")
    for f in files:
        body.append("<tr>" + "".join(f"<td>{e('' if v is None else str(v))}</td>" for v in f) + "</tr>")
    body.append("</table><h3>Quarantine reasons</h3><table><tr><th>dataset</th><th>file</th><th>column</th>"
                "<th>checks</th><th>rows</th><th>example</th></tr>")
    for r in reasons:
        body.append("<tr>" + "".join(f"<td>{e(str(v))}</td>" for v in r) + "</tr>")
    body.append("</table>")
    return _page(f"winecrm run {run_id}", "".join(body))


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


class WineCrmPlugin(AirflowPlugin):
    name = "winecrm"
    fastapi_apps = [{"app": app, "url_prefix": URL_PREFIX, "name": "winecrm weekly run pages"}]
    external_views = [
        {"name": "Data Docs", "href": "winecrm/data-docs/index.html", "destination": "nav",
         "category": "browse", "url_route": "winecrm-data-docs"},
        {"name": "Run summary", "href": "winecrm/runs/{RUN_ID}", "destination": "dag_run",
         "url_route": "winecrm-run-summary"},
    ]


__all__ = ["WineCrmPlugin", "app"]
