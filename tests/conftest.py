"""Test setup: real PostgreSQL (embedded by default, CRM_TEST_DATABASE_URL to use another server),
one fresh database per test cloned from a migrated template, and private RAW/work/docs folders.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import tempfile
import threading
import uuid
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

import psycopg
import pytest
from psycopg import sql
from psycopg.conninfo import make_conninfo

# Before anything reads settings: keep every bit of local state out of the working tree.
_SESSION_DIR = Path(tempfile.mkdtemp(prefix="winecrm-tests-"))
os.environ["CRM_DATA_DIR"] = str(_SESSION_DIR / "data")
# Airflow: a private home (SQLite metadata) and this project's DAGs; dev connections come from
# AIRFLOW_CONN_* variables set by the tests that need them.
_ROOT = Path(__file__).resolve().parents[1]
os.environ["AIRFLOW_HOME"] = str(_SESSION_DIR / "airflow")
os.environ["AIRFLOW__CORE__DAGS_FOLDER"] = str(_ROOT / "dags")
os.environ["AIRFLOW__CORE__PLUGINS_FOLDER"] = str(_ROOT / "plugins")
os.environ["AIRFLOW__CORE__LOAD_EXAMPLES"] = "False"
os.environ.setdefault("GX_ANALYTICS_ENABLED", "False")
os.environ.pop("CRM_DATABASE_URL", None)
os.environ["CRM_ALLOW_EMBEDDED_DB"] = "1"  # the tests are one of the places it is asked for
os.environ.pop("AIRFLOW_CONN_CRM_WAREHOUSE", None)

from winecrm.core import db  # noqa: E402
from winecrm.core.migrations import apply_migrations  # noqa: E402

MONDAY_RUN = dt.datetime(2026, 11, 16, 5, 0, tzinfo=dt.timezone.utc)  # 06:00 Paris


@pytest.fixture(scope="session")
def session_dir() -> Path:
    return _SESSION_DIR


@pytest.fixture(scope="session")
def pg_admin_url(session_dir: Path) -> str:
    url = os.environ.get("CRM_TEST_DATABASE_URL")
    if url:
        return url
    url = db.embedded_server_url(data_dir=session_dir / "embedded", db_name="postgres")
    # The session's own throw-away server: no flush to disk at each commit and database copy (a
    # crash would lose the session's databases, which die with it anyway). Tests that stop a
    # server (test_restart) start their own, with the default settings.
    with psycopg.connect(url, autocommit=True) as conn:
        for setting in ("fsync", "synchronous_commit", "full_page_writes"):
            conn.execute(sql.SQL("ALTER SYSTEM SET {} = off").format(sql.Identifier(setting)))
        conn.execute("SELECT pg_reload_conf()")
    return url


def _with_db(url: str, name: str) -> str:
    return make_conninfo(url, dbname=name)


@pytest.fixture(scope="session")
def template_db(pg_admin_url: str):
    name = f"winecrm_tpl_{os.getpid()}"
    with psycopg.connect(pg_admin_url, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    with psycopg.connect(_with_db(pg_admin_url, name)) as conn:
        apply_migrations(conn)
    yield name
    with psycopg.connect(pg_admin_url, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


@pytest.fixture
def warehouse_template(template_db: str) -> str:
    """The database each test's warehouse is cloned from: the migrated, empty template. A module
    whose tests start from a prepared estate overrides it (see ``prepared``)."""
    return template_db


def template_for(**states):
    """A module's ``warehouse_template``: a test asking for the fixture named ``name`` gets a clone
    of ``states[name]`` (a ``(key, build)`` pair for ``prepared``), built once per session; the
    module's other tests the empty template. In the module: ``warehouse_template = template_for(
    first_run=FIRST_RUN)``."""

    @pytest.fixture
    def warehouse_template(request, template_db):
        for name, state in states.items():
            if name in request.fixturenames:
                return request.getfixturevalue("prepared")(*state).database
        return template_db

    return warehouse_template


@pytest.fixture
def warehouse_url(pg_admin_url: str, warehouse_template: str, monkeypatch) -> str:
    """A fresh, migrated warehouse database for one test; CRM_DATABASE_URL points at it."""
    with cloned_database(pg_admin_url, warehouse_template) as url:
        monkeypatch.setenv("CRM_DATABASE_URL", url)
        yield url


@pytest.fixture
def conn(warehouse_url: str):
    with psycopg.connect(warehouse_url) as connection:
        yield connection


@pytest.fixture
def crm_dirs(tmp_path: Path, monkeypatch) -> dict[str, Path]:
    """Private RAW / work / Data Docs folders; files count as complete at once."""
    dirs = {"raw": tmp_path / "raw", "work": tmp_path / "work", "docs": tmp_path / "quality"}
    dirs["raw"].mkdir()
    monkeypatch.setenv("CRM_RAW_DIR", str(dirs["raw"]))
    monkeypatch.setenv("CRM_WORK_URL", str(dirs["work"]))
    monkeypatch.setenv("CRM_DOCS_DIR", str(dirs["docs"]))
    monkeypatch.setenv("CRM_OUTBOX_DIR", str(tmp_path / "outbox"))
    monkeypatch.setenv("CRM_REPORTS_DIR", str(tmp_path / "reports"))
    monkeypatch.setenv("CRM_FILE_SETTLE_SECONDS", "0")
    _crm_dirs_config(tmp_path, monkeypatch)
    return dirs


def _crm_dirs_config(folder: Path, monkeypatch) -> Path:
    # Tests use a handful of rows, so one bad row is a large share: relax the gate by default. And
    # they deliver the exports they test: only the sales export is required of a week (a run still
    # fails when its week's sales export was not loaded).
    return use_config(folder, monkeypatch, quality_gate={"max_bad_row_share": 0.5},
                      exports={"required_datasets": ["ventes_lignes"], "weekly_datasets": ["ventes_lignes"]})


CRM_DIR_VARS = {"raw": "CRM_RAW_DIR", "work": "CRM_WORK_URL", "docs": "CRM_DOCS_DIR", "outbox": "CRM_OUTBOX_DIR",
                "reports": "CRM_REPORTS_DIR"}


class Prepared:
    """A warehouse and its folders as a build left them (the sample estate run through some
    stages), made once per session for tests that each start from that state.

    A test gets its own copy of both: its warehouse database is cloned from ``database`` (set
    ``warehouse_template`` to it) and ``restore`` copies the folders back, from a pristine copy,
    to the very paths the build used, so every path the warehouse recorded (outbox files, reports,
    Data Docs) is the test's copy. ``value`` is what the build returned."""

    def __init__(self, database: str, folder: Path, config: Path, value):
        self.database, self.folder, self.config, self.value = database, folder, config, value

    @property
    def live(self) -> Path:
        return self.folder / "live"

    def restore(self, crm_dirs: dict, monkeypatch) -> dict:
        """The prepared folders, fresh, in use for this test; ``crm_dirs`` is pointed at them."""
        import shutil

        shutil.rmtree(self.live, ignore_errors=True)
        shutil.copytree(self.folder / "pristine", self.live, symlinks=True)
        for key, var in CRM_DIR_VARS.items():
            monkeypatch.setenv(var, str(self.live / key))
        monkeypatch.setenv("CRM_PIPELINE_CONFIG", str(self.config))
        crm_dirs.update({key: self.live / key for key in ("raw", "work", "docs")})
        return crm_dirs


@pytest.fixture(scope="session")
def prepared(pg_admin_url: str, template_db: str, session_dir: Path):
    """``prepared(key, build)``: the Prepared state ``build(conn, dirs)`` leaves, built on the first
    call for ``key`` in a database and folders of its own, with the settings ``crm_dirs`` gives a
    test (same private folders, same relaxed quality gate, files complete at once)."""
    import shutil

    built: dict = {}

    def get(key, build) -> Prepared:
        if key in built:
            return built[key]
        name = f"winecrm_pre_{len(built)}_{os.getpid()}"
        folder = session_dir / "prepared" / name
        live = folder / "live"
        with psycopg.connect(pg_admin_url, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
            conn.execute(sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(sql.Identifier(name),
                                                                           sql.Identifier(template_db)))
        url = _with_db(pg_admin_url, name)
        dirs = {key_: live / key_ for key_ in CRM_DIR_VARS}
        dirs["raw"].mkdir(parents=True)  # the others are made by whatever writes there, as for crm_dirs
        with pytest.MonkeyPatch.context() as mp:
            mp.setenv("CRM_DATABASE_URL", url)
            for key_, var in CRM_DIR_VARS.items():
                mp.setenv(var, str(dirs[key_]))
            mp.setenv("CRM_FILE_SETTLE_SECONDS", "0")
            config = _crm_dirs_config(folder, mp)
            with psycopg.connect(url) as conn:
                value = build(conn, dirs)
                conn.commit()
        shutil.copytree(live, folder / "pristine", symlinks=True)
        built[key] = Prepared(name, folder, config, value)
        return built[key]

    yield get
    with psycopg.connect(pg_admin_url, autocommit=True) as conn:
        for state in built.values():
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(state.database)))


def scored_sample_estate(conn, dirs) -> None:
    """A 300-customer sample estate (2 years) through the stages before the campaign's, as run_1
    of MONDAY_RUN's week: scored and recommended."""
    from winecrm import pipeline
    from winecrm_tools.samples import sampledata

    sampledata.write_sample_exports(dirs["raw"], n_customers=300, years=2.0)
    window = pipeline.week_window("run_1", MONDAY_RUN)
    pipeline.prepare(conn, window)
    for stage in pipeline.stages_until(pipeline.run_recommend):
        stage(conn, window.run_id)


SCORED_SAMPLE_ESTATE = (("sample", 300, 2.0, "run_1 until recommend"), scored_sample_estate)


def weekly_run_sample_estate(conn, dirs) -> dict:
    """A 300-customer sample estate (1.2 years) after one whole weekly run, run_1 of MONDAY_RUN's
    week: loaded, scored, recommended, its dry-run campaign in the outbox, its report written."""
    from winecrm import pipeline
    from winecrm_tools.samples import sampledata

    sampledata.write_sample_exports(dirs["raw"], n_customers=300, years=1.2)
    summary = pipeline.run_all(conn, pipeline.week_window("run_1", MONDAY_RUN))
    assert summary["status"] == "success"
    return summary


WEEKLY_RUN_SAMPLE_ESTATE = (("sample", 300, 1.2, "run_1 run_all"), weekly_run_sample_estate)


@contextlib.contextmanager
def cloned_database(pg_admin_url: str, template: str):
    """A new database copied from ``template`` (CREATE DATABASE ... TEMPLATE), dropped afterwards."""
    name = f"winecrm_t_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(pg_admin_url, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(sql.Identifier(name), sql.Identifier(template)))
    try:
        yield _with_db(pg_admin_url, name)
    finally:
        with psycopg.connect(pg_admin_url, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


@contextlib.contextmanager
def alert_receiver():
    """A real HTTP endpoint for failure webhooks: yields (url, received), each POST as
    {"path": ..., "json": ...}."""
    received: list[dict] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802
            body = self.rfile.read(int(self.headers["Content-Length"]))
            received.append({"path": self.path, "json": json.loads(body)})
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = HTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_port}/hooks/crm", received
    finally:
        server.shutdown()


def relaxed_gate_config(folder: Path, name: str = "pipeline.yaml", **sections) -> Path:
    """The shipped pipeline.yaml with the quality gate at 50 %, for runs of the small sample
    estate in a separate process (300 customers make weekly files of ~70 lines, where the 8
    planted bad rows are more than 5 %); ``sections`` override more keys."""
    import yaml

    from winecrm.core import settings

    config = yaml.safe_load((settings.CONFIG_DIR / "pipeline.yaml").read_text(encoding="utf-8"))
    config["quality_gate"]["max_bad_row_share"] = 0.5
    for section, values in sections.items():
        config[section].update(values)
    path = folder / name
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    return path


def use_config(tmp_path: Path, monkeypatch, **sections) -> Path:
    """Point CRM_PIPELINE_CONFIG at a copy of the shipped YAML with some sections replaced."""
    import yaml
    from winecrm.core import settings

    config = yaml.safe_load((settings.CONFIG_DIR / "pipeline.yaml").read_text(encoding="utf-8"))
    for key, value in sections.items():
        config[key] = {**config.get(key, {}), **value}
    path = tmp_path / f"pipeline-{uuid.uuid4().hex[:6]}.yaml"
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    monkeypatch.setenv("CRM_PIPELINE_CONFIG", str(path))
    return path


SALES_HEADER = ("client_code;date_livraison;produit_label;qty_line;pu_ht;mt_ht;mt_ttc;marge;"
                "document_type;document_no;article;email;code_postal;ville")


def sales_line(client="C1", date="02/11/2026", label="Riesling 2022", qty="6", pu="9,5833", mt="57,50",
               ttc="69,00", marge="24,15", doc_type="VENTE", doc_no="F1", article="RIES-22",
               email="jean@example.fr", cp="67000", ville="Strasbourg") -> str:
    return ";".join([client, date, label, qty, pu, mt, ttc, marge, doc_type, doc_no, article, email, cp, ville])


def write_export(raw: Path, dataset: str, name: str, lines: list[str], encoding: str = "utf-8",
                 header: str | None = None) -> Path:
    path = raw / "isavigne" / dataset / name
    path.parent.mkdir(parents=True, exist_ok=True)
    text = "\r\n".join([header or SALES_HEADER, *lines]) + "\r\n"
    path.write_bytes(text.encode(encoding))
    return path


@contextlib.contextmanager
def airflow_api_server(env: dict, log_path: Path, commands=(["db", "migrate"], ["dags", "reserialize"])):
    """``airflow api-server`` on a free loopback port, after ``commands`` (metadata and DAGs
    ready), yielding its base URL once it answers; stopped afterwards."""
    import socket
    import subprocess
    import sys
    import time

    import requests

    airflow = str(Path(sys.executable).with_name("airflow"))
    for command in commands:
        done = subprocess.run([airflow, *command], env=env, capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr[-2000:]
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    log = open(log_path, "w")
    server = subprocess.Popen([airflow, "api-server", "--port", str(port), "--host", "127.0.0.1"], env=env,
                              stdout=log, stderr=subprocess.STDOUT)
    base_url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 120
    while time.time() < deadline:
        try:
            if requests.get(f"{base_url}/api/v2/version", timeout=2).status_code in (200, 401, 403):
                break
        except requests.ConnectionError:
            time.sleep(1)
    else:
        server.kill()
        log.close()
        pytest.fail("api-server did not start: " + log_path.read_text()[-3000:])
    try:
        yield base_url
    finally:
        server.terminate()
        server.wait(timeout=30)
        log.close()


def sqlalchemy_url(conninfo: str) -> str:
    """An Airflow metadata database's SQLAlchemy URL (the embedded server listens on a Unix socket)."""
    from psycopg.conninfo import conninfo_to_dict

    parts = conninfo_to_dict(conninfo)
    host = parts.get("host", "127.0.0.1")
    user = parts.get("user", "postgres")
    if host.startswith("/"):
        return f"postgresql+psycopg2://{user}@/{parts['dbname']}?host={host}&port={parts.get('port', 5432)}"
    return f"postgresql+psycopg2://{user}@{host}:{parts.get('port', 5432)}/{parts['dbname']}"
