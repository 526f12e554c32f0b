"""The one-server deployment: docker-compose.yaml, docker-compose.celery.yaml, Dockerfile, .env.example.

Static checks of the files (YAML, Dockerfile text), a run of airflow-init's script against stub
`airflow`/`python`/`chown` commands, and `docker compose config` on both variants when the docker
CLI and its compose plugin are installed (no daemon needed).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import stat
import subprocess
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
BASE = "docker-compose.yaml"
CELERY = "docker-compose.celery.yaml"

# Secrets compose must refuse to run without (`${VAR:?message}`), with the file that needs them.
SECRETS = {
    "AIRFLOW_DB_PASSWORD": BASE,
    "WINECRM_DB_PASSWORD": BASE,
    "AIRFLOW_FERNET_KEY": BASE,
    "AIRFLOW_JWT_SECRET": BASE,
    "AIRFLOW_ADMIN_PASSWORD": BASE,
    "CRM_WEBHOOK_BREVO_TOKEN": BASE,
    "CRM_WEBHOOK_SHOP_TOKEN": BASE,
    "CRM_RECEIVER_DB_PASSWORD": BASE,
    "FLOWER_BASIC_AUTH": CELERY,
}
DUMMY_SECRETS = {name: f"dummy-{name.lower().replace('_', '-')}" for name in SECRETS}
DUMMY_SECRETS["FLOWER_BASIC_AUTH"] = "flower:dummy-password"

# `${VAR...}` as compose interpolates it; `$${...}` is an escaped `$` left to the container's shell.
INTERPOLATION = re.compile(r"(?<!\$)\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-?])([^}]*))?\}")


def _strings(node):
    """Every string value of a parsed compose file (comments are not part of it)."""
    if isinstance(node, str):
        yield node
    elif isinstance(node, dict):
        for value in node.values():
            yield from _strings(value)
    elif isinstance(node, list):
        for value in node:
            yield from _strings(value)


def _interpolations(name: str):
    """(variable, operator, message) of every `${...}` compose interpolates in the file."""
    return [m for value in _strings(_compose(name)) for m in INTERPOLATION.findall(value)]


def _text(name: str) -> str:
    return (ROOT / name).read_text(encoding="utf-8")


def _compose(name: str = BASE):
    return yaml.safe_load(_text(name))


WEBHOOKS = "crm-webhooks"  # the project's image, but the webhook receiver: no Airflow runs in it


def _airflow_services(compose) -> list[str]:
    """Services that run Airflow from the project's image."""
    image = compose["x-airflow-common"]["image"]
    return [name for name, svc in compose["services"].items() if svc.get("image") == image and name != WEBHOOKS]


def _init_script() -> str:
    init = _compose()["services"]["airflow-init"]
    assert init["entrypoint"] == "/bin/bash" and init["command"][0] == "-c"
    return init["command"][1]


# --- The services -------------------------------------------------------------------------------

def test_services_of_an_airflow_3_deployment():
    services = _compose()["services"]
    assert {"postgres", "airflow-init", "airflow-apiserver", "airflow-scheduler", "airflow-dag-processor",
            "airflow-triggerer"} <= set(services)
    assert services["postgres"]["image"].startswith("postgres:16")
    assert "healthcheck" in services["postgres"]
    for name in ("airflow-apiserver", "airflow-scheduler", "airflow-dag-processor", "airflow-triggerer"):
        assert services[name]["depends_on"]["airflow-init"]["condition"] == "service_completed_successfully"
        assert services[name]["depends_on"]["postgres"]["condition"] == "service_healthy"
        assert "healthcheck" in services[name]
    env = services["airflow-scheduler"]["environment"]
    assert env["AIRFLOW__CORE__AUTH_MANAGER"].endswith("fab_auth_manager.FabAuthManager")
    assert "apache-airflow-providers-fab" in _text("requirements/runtime.txt").split()


def test_two_databases_and_the_warehouse_connection():
    compose = _compose()
    env = compose["services"]["airflow-scheduler"]["environment"]
    assert env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"].endswith("@postgres/airflow")
    assert env["AIRFLOW_CONN_CRM_WAREHOUSE"].startswith("postgresql://winecrm:")
    assert env["AIRFLOW_CONN_CRM_WAREHOUSE"].endswith("@postgres:5432/winecrm")
    init = (ROOT / "deploy" / "postgres-init" / "10-winecrm.sh").read_text()
    assert "CREATE DATABASE winecrm" in init
    assert "set -euo pipefail" in init
    # The password reaches SQL as a quoted psql variable, not pasted into the SQL text by the shell.
    assert "PASSWORD :'pw'" in init and "'${WINECRM_DB_PASSWORD}'" not in init
    mounts = compose["services"]["postgres"]["volumes"]
    assert "./deploy/postgres-init:/docker-entrypoint-initdb.d:ro" in mounts
    assert compose["services"]["postgres"]["environment"]["WINECRM_DB_PASSWORD"].startswith(
        "${WINECRM_DB_PASSWORD:?")


def test_project_folders_and_raw_exports_are_mounted():
    compose = _compose()
    for name in _airflow_services(compose):
        volumes = compose["services"][name]["volumes"]
        targets = {re.search(r":(/opt/airflow/[^:]+)(?::ro)?$", v).group(1): v for v in volumes}
        for folder in ("/opt/airflow/dags", "/opt/airflow/plugins", "/opt/airflow/include",
                       "/opt/airflow/data", "/opt/airflow/logs"):
            assert folder in targets, (name, folder)
        assert targets["/opt/airflow/raw"].endswith(":ro"), "RAW must stay immutable"
        assert targets["/opt/airflow/data"].startswith("winecrm-data:")
        env = compose["services"][name]["environment"]
        assert env["CRM_RAW_DIR"] == "/opt/airflow/raw"
        assert env["CRM_DATA_DIR"] == "/opt/airflow/data"
        assert env["CRM_WORK_URL"] == "/opt/airflow/data/work"
        assert compose["services"][name]["user"] == (
            "0:0" if name == "airflow-init" else "${AIRFLOW_UID:-50000}:0")


def test_no_embedded_database_in_a_deployment():
    for name in (BASE, CELERY, ".env.example", "Dockerfile"):
        assert "CRM_ALLOW_EMBEDDED_DB" not in _text(name), name


def test_no_secret_is_committed():
    for name in (BASE, CELERY, ".env.example"):
        text = _text(name)
        assert "api-key" not in text.lower()
        assert "xkeysib-" not in text
    assert (ROOT / ".env.example").exists() and ".env" in (ROOT / ".gitignore").read_text().split()


# --- Fault 1: the data volume is writable by the tasks --------------------------------------------

def test_init_creates_the_data_folders_and_hands_them_to_the_airflow_user():
    compose = _compose()
    init = compose["services"]["airflow-init"]
    assert init["user"] == "0:0", "only root can chown the freshly created volumes"
    assert init["environment"]["AIRFLOW_UID"] == "${AIRFLOW_UID:-50000}"
    script = _init_script()
    mkdir = re.search(r"mkdir [^\n]*", script).group(0)
    chown = re.search(r'chown "\$\$\{AIRFLOW_UID\}:0" [^\n]*', script).group(0)
    for folder in ("/opt/airflow/logs", "/opt/airflow/data/work", "/opt/airflow/data/quality"):
        assert folder in mkdir.split() and folder in chown.split(), folder
    assert "/opt/airflow/data" in chown.split()
    # Both folders are on named volumes, created by Docker as root: what init must fix.
    assert {"winecrm-data", "airflow-logs"} <= set(compose["volumes"])


# --- Fault 2: airflow-init fails loudly and prepares everything the DAGs need ----------------------

def test_init_fails_loudly():
    script = _init_script()
    assert script.lstrip().startswith("set -euo pipefail")
    assert "|| true" not in script and "|| :" not in script
    assert "airflow db migrate &&" not in script


def test_init_creates_the_pool_and_migrates_the_warehouse():
    lines = [line.strip() for line in _init_script().splitlines()]
    pool = 'airflow pools set crm_warehouse 1 "One writer per warehouse: ingest, validate, load, score, recommend"'
    order = ["airflow db migrate", pool, "python -m winecrm.airflow migrate-warehouse"]
    for line in order:
        assert line in lines, line
    assert [lines.index(line) for line in order] == sorted(lines.index(line) for line in order)
    env = _compose()["services"]["airflow-init"]["environment"]
    assert "PYTHONPATH" not in env, "winecrm is installed in the image (editable)"


_STUB = """#!/bin/bash
echo "{name} $*" >> "$CALLS"
if [[ -n "${{FAIL:-}}" && "{name} $*" == "$FAIL"* ]]; then echo "{name}: simulated failure" >&2; exit 3; fi
if [[ "{name} $1 $2" == "airflow users list" ]]; then printf '%s\\n' "$USERS_LIST"; fi
exit 0
"""
_NO_USERS = "No data found"
_ADMIN_EXISTS = ("id  username  email                  first_name  last_name  roles\n"
                 "1   admin     admin@example.invalid  Admin       CRM        [Admin]")
_OTHER_USER = "id username email first_name last_name roles\n2 bob admin@example.invalid Bob B [Viewer]"


def _run_init(tmp_path: Path, users: str = _NO_USERS, fail: str = ""):
    """Run airflow-init's script as the container would, with /opt/airflow moved into tmp_path
    and `airflow`, `python` and `chown` replaced by stubs that record their arguments."""
    if shutil.which("bash") is None:
        pytest.skip("bash is not installed")
    home = tmp_path / "opt-airflow"
    stubs = tmp_path / "stubs"
    stubs.mkdir(parents=True)
    for name in ("airflow", "python", "chown"):
        stub = stubs / name
        stub.write_text(_STUB.format(name=name))
        stub.chmod(stub.stat().st_mode | stat.S_IXUSR)
    calls = tmp_path / "calls.log"
    calls.touch()
    script = _init_script().replace("$$", "$").replace("/opt/airflow", str(home))
    env = {
        "PATH": f"{stubs}{os.pathsep}{os.environ.get('PATH', '/usr/bin:/bin')}",
        "CALLS": str(calls), "FAIL": fail, "USERS_LIST": users,
        "AIRFLOW_UID": "4242", "_AIRFLOW_WWW_USER_USERNAME": "admin", "_AIRFLOW_WWW_USER_PASSWORD": "pw",
    }
    proc = subprocess.run(["bash", "-c", script], env=env, capture_output=True, text=True, timeout=60)
    return proc, calls.read_text().splitlines(), home


def test_init_script_runs_every_step_in_order(tmp_path):
    proc, calls, home = _run_init(tmp_path)
    assert proc.returncode == 0, proc.stderr
    for folder in ("logs", "data/work", "data/quality"):
        assert (home / folder).is_dir()
    assert calls[0].startswith("chown 4242:0 ") and f"{home}/data/work" in calls[0].split()
    steps = [c for c in calls if not c.startswith("chown ")]
    assert steps == [
        "airflow db migrate",
        "airflow users list --output plain",
        "airflow users create --role Admin --username admin --password pw --firstname Admin "
        "--lastname CRM --email admin@example.invalid",
        "airflow pools set crm_warehouse 1 One writer per warehouse: ingest, validate, load, score, recommend",
        "python -m winecrm.airflow migrate-warehouse",
    ]


def test_init_script_creates_the_admin_only_when_missing(tmp_path):
    proc, calls, _ = _run_init(tmp_path / "exists", users=_ADMIN_EXISTS)
    assert proc.returncode == 0, proc.stderr
    assert not any(c.startswith("airflow users create") for c in calls)
    assert "python -m winecrm.airflow migrate-warehouse" in calls
    # Another user whose e-mail merely contains "admin" is not the admin user.
    proc, calls, _ = _run_init(tmp_path / "other", users=_OTHER_USER)
    assert proc.returncode == 0, proc.stderr
    assert any(c.startswith("airflow users create") for c in calls)


@pytest.mark.parametrize("fail", [
    "airflow db migrate",
    "airflow users list",
    "airflow users create",
    "airflow pools set",
    "python -m winecrm.airflow migrate-warehouse",
])
def test_init_script_stops_at_the_first_failure(tmp_path, fail):
    proc, calls, _ = _run_init(tmp_path, fail=fail)
    assert proc.returncode != 0, f"a failing `{fail}` was masked"
    assert "simulated failure" in proc.stderr
    failed_at = next(i for i, c in enumerate(calls) if c.startswith(fail))
    assert not [c for c in calls[failed_at + 1:] if not c.startswith("chown ")], calls


# --- Fault 3: the image ---------------------------------------------------------------------------

def _dockerfile() -> tuple[str, list[str]]:
    text = _text("Dockerfile")
    logical = re.sub(r"\\\n", " ", text)
    return text, [line.strip() for line in logical.splitlines() if line.strip() and not line.strip().startswith("#")]


def test_dockerfile_builds_on_airflow_with_the_runtime_requirements_under_constraints():
    _, lines = _dockerfile()
    from_index = next(i for i, line in enumerate(lines) if line.startswith("FROM "))
    args = dict(re.fullmatch(r"ARG (\w+)=(\S+)", line).groups() for line in lines[:from_index])
    image = re.sub(r"\$\{(\w+)\}", lambda m: args[m.group(1)], lines[from_index].split()[1])
    assert image == "apache/airflow:3.3.2-python3.11"
    assert args["AIRFLOW_VERSION"] == "3.3.2"
    install = next(line for line in lines if "-r /opt/airflow/requirements/runtime.txt" in line)
    assert '"apache-airflow==${AIRFLOW_VERSION}"' in install
    assert ('--constraint "https://raw.githubusercontent.com/apache/airflow/'
            'constraints-${AIRFLOW_VERSION}/constraints-${PYTHON_VERSION}.txt"') in install
    assert "ARG AIRFLOW_VERSION" in lines[from_index + 1:], "ARG must be redeclared after FROM"
    assert "COPY --chown=airflow:root requirements/runtime.txt /opt/airflow/requirements/runtime.txt" in lines


def test_dockerfile_installs_winecrm_editable_and_no_development_packages():
    text, lines = _dockerfile()
    assert "COPY --chown=airflow:root pyproject.toml /opt/airflow/pyproject.toml" in lines
    assert "COPY --chown=airflow:root plugins/winecrm /opt/airflow/plugins/winecrm" in lines
    assert any("pip install --no-cache-dir --no-deps --editable /opt/airflow" in line for line in lines)
    copied = [line.split()[-2] for line in lines if line.startswith("COPY")]
    assert "requirements.txt" not in copied and "requirements/dev.txt" not in copied
    for dev in ("pytest", "pgserver", "psycopg2", "dev.txt", " requirements.txt"):
        assert dev not in "\n".join(lines), dev
    runtime = [line.split("#")[0].strip() for line in _text("requirements/runtime.txt").splitlines()]
    names = {re.split(r"[\[=<>~! ]", line)[0].lower() for line in runtime if line}
    assert not names & {"pytest", "pytest-timeout", "pgserver", "psutil"}, "development packages in the image"


# --- Fault 4: the Celery variant switches the executor itself ------------------------------------

def test_local_executor_by_default_and_no_idle_celery_workers():
    compose = _compose()
    for name in _airflow_services(compose):
        assert compose["services"][name]["environment"]["AIRFLOW__CORE__EXECUTOR"] == "LocalExecutor"
    assert not {"redis", "airflow-worker", "flower"} & set(compose["services"])
    for name in (BASE, CELERY, ".env.example"):
        assert "AIRFLOW_EXECUTOR" not in _text(name), "the executor is not a second variable to remember"
    for name in (BASE, CELERY):
        assert not any("profiles" in svc for svc in _compose(name)["services"].values())
    assert "--profile celery" not in _text(BASE) + _text(".env.example")


def test_celery_variant_switches_every_airflow_service_and_adds_its_services():
    base, celery = _compose(), _compose(CELERY)
    services = celery["services"]
    for name in _airflow_services(base):
        env = services[name]["environment"]
        assert env["AIRFLOW__CORE__EXECUTOR"] == "CeleryExecutor", name
    for name in ("airflow-worker", "flower"):
        svc = services[name]
        assert svc["extends"] == {"file": BASE, "service": "airflow-scheduler"}
        assert svc["environment"]["AIRFLOW__CORE__EXECUTOR"] == "CeleryExecutor"
        assert svc["depends_on"]["redis"]["condition"] == "service_healthy"
        assert svc["depends_on"]["airflow-init"]["condition"] == "service_completed_successfully"
        assert "healthcheck" in svc
    assert services["airflow-worker"]["command"] == "celery worker"
    assert services["flower"]["command"] == "celery flower"
    assert services["redis"]["image"].startswith("redis:") and "ports" not in services["redis"]
    env = services["airflow-worker"]["environment"]
    assert env["AIRFLOW__CELERY__BROKER_URL"] == "redis://redis:6379/0"
    assert env["AIRFLOW__CELERY__RESULT_BACKEND"].startswith("db+postgresql://airflow:${AIRFLOW_DB_PASSWORD:?")
    assert env["AIRFLOW__CELERY__RESULT_BACKEND"].endswith("@postgres/airflow")
    assert re.fullmatch(r"\$\{AIRFLOW_WORKER_CONCURRENCY:-([1-9][0-9]?)\}", env["AIRFLOW__CELERY__WORKER_CONCURRENCY"])
    assert services["airflow-scheduler"]["depends_on"]["redis"]["condition"] == "service_healthy"


# --- Fault 5: no insecure default ----------------------------------------------------------------

def test_every_secret_is_required_with_a_message():
    seen = {name: [] for name in SECRETS}
    for file in (BASE, CELERY):
        for var, op, message in _interpolations(file):
            if var in SECRETS:
                seen[var].append(file)
                assert op == ":?", f"{file}: ${{{var}}} must be ${{{var}:?...}}, not {op or 'bare'}"
                assert ".env" in message and var in message, f"{file}: ${{{var}:?{message}}}"
            elif re.search(r"PASSWORD|SECRET|FERNET|TOKEN|AUTH|KEY", var):
                pytest.fail(f"{file}: secret-like variable {var} is not in the required list")
    for var, file in SECRETS.items():
        assert file in seen[var], f"{var} is not used in {file}"
    env = _compose()["x-airflow-common"]["environment"]
    assert env["AIRFLOW__CORE__FERNET_KEY"].startswith("${AIRFLOW_FERNET_KEY:?")
    assert env["AIRFLOW__API_AUTH__JWT_SECRET"].startswith("${AIRFLOW_JWT_SECRET:?")
    assert _compose()["services"]["airflow-init"]["environment"]["_AIRFLOW_WWW_USER_PASSWORD"].startswith(
        "${AIRFLOW_ADMIN_PASSWORD:?")
    flower = _compose(CELERY)["services"]["flower"]["environment"]
    assert flower["AIRFLOW__CELERY__FLOWER_BASIC_AUTH"].startswith("${FLOWER_BASIC_AUTH:?")
    for text in (_text(BASE), _text(CELERY)):
        assert "change-me" not in text and ":-airflow}" not in text


def test_published_ports_are_bound_to_localhost_by_default():
    published = 0
    for file in (BASE, CELERY):
        for name, svc in _compose(file)["services"].items():
            for port in svc.get("ports", []):
                published += 1
                assert re.match(r"^\$\{[A-Z_]+_BIND:-127\.0\.0\.1\}:", str(port)), f"{file}: {name}: {port}"
    assert published == 3, "API server, webhook receiver and Flower only"


def test_the_webhook_receiver_is_its_own_service_with_a_token_per_source_and_its_own_login():
    compose = _compose()
    webhooks = compose["services"][WEBHOOKS]
    assert webhooks["image"] == compose["x-airflow-common"]["image"]
    assert webhooks["command"][:4] == ["python", "-m", "winecrm.events", "serve"]
    for source in ("BREVO", "SHOP"):
        assert webhooks["environment"][f"CRM_WEBHOOK_{source}_TOKEN"].startswith(f"${{CRM_WEBHOOK_{source}_TOKEN:?")
    assert "CRM_WEBHOOK_TOKEN" not in webhooks["environment"]
    # the receiver never gets the warehouse owner's credentials: its own login, in crm_receiver
    assert webhooks["environment"]["CRM_RECEIVER_DATABASE_URL"].startswith("postgresql://winecrm_receiver:")
    assert "@postgres:5432/winecrm" in webhooks["environment"]["CRM_RECEIVER_DATABASE_URL"]
    assert not any("WINECRM_DB_PASSWORD" in str(v) for v in webhooks["environment"].values())
    init = (ROOT / "deploy" / "postgres-init" / "10-winecrm.sh").read_text()
    assert "CREATE ROLE winecrm_receiver LOGIN PASSWORD :'rpw' IN ROLE crm_receiver" in init
    assert "CRM_RECEIVER_DB_PASSWORD" in compose["services"]["postgres"]["environment"]
    assert "CRM_ALLOW_EMBEDDED_DB" not in webhooks["environment"]
    assert webhooks["depends_on"]["airflow-init"]["condition"] == "service_completed_successfully"
    assert "/webhook/health" in " ".join(webhooks["healthcheck"]["test"])


def _env_example() -> dict[str, str]:
    found = {}
    for line in _text(".env.example").splitlines():
        match = re.match(r"^#?\s*([A-Z][A-Z0-9_]*)=(.*)$", line)
        if match:
            found[match.group(1)] = match.group(2).strip()
    return found


def test_env_example_lists_every_variable_and_has_no_working_secret():
    example = _env_example()
    used = set()
    for file in (BASE, CELERY):
        used |= {var for var, _, _ in _interpolations(file)}
        for svc in _compose(file)["services"].values():
            env = svc.get("environment") or {}
            used |= {var for var, value in env.items() if value is None}  # passed through from .env
    missing = used - set(example)
    assert not missing, f"not in .env.example: {sorted(missing)}"
    for var in SECRETS:
        assert example[var] == "", f"{var} must be empty in .env.example (no working default)"
    text = _text(".env.example")
    assert 'python -c "from cryptography.fernet import Fernet; print(Fernet.generate_key().decode())"' in text
    assert "openssl rand -hex 32" in text
    assert example["AIRFLOW_BIND"] == "127.0.0.1"
    assert example["COMPOSE_FILE"] == f"{BASE}:{CELERY}"


# --- Both variants through `docker compose config` -------------------------------------------------

def _docker_compose():
    docker = shutil.which("docker")
    if docker is None:
        pytest.skip("docker CLI not installed: `docker compose config` not checked")
    probe = subprocess.run([docker, "compose", "version"], capture_output=True, text=True, timeout=60)
    if probe.returncode != 0:
        pytest.skip("docker compose plugin not installed (`docker compose version` failed: "
                    f"{(probe.stderr or probe.stdout).strip()[:200]})")
    return docker


def _config(docker, files, secrets, tmp_path, *args, env_file=None):
    """`docker compose config` with only the given secrets set: the caller's environment is
    scrubbed of them and of COMPOSE_*, and an empty env file replaces any local .env."""
    if env_file is None:
        env_file = tmp_path / "empty.env"
        env_file.write_text("")
    env = {k: v for k, v in os.environ.items()
           if k not in SECRETS and not k.startswith("COMPOSE_") and k not in _env_example()}
    env.update(secrets)
    command = [docker, "compose", "--project-directory", str(ROOT), "--env-file", str(env_file)]
    for file in files:
        command += ["-f", str(ROOT / file)]
    return subprocess.run(command + ["config", *args], env=env, capture_output=True, text=True, timeout=120)


VARIANTS = {
    "local": ([BASE], {k: v for k, v in DUMMY_SECRETS.items() if SECRETS[k] == BASE}),
    "celery": ([BASE, CELERY], DUMMY_SECRETS),
}


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_docker_compose_config_is_valid_with_the_required_variables(variant, tmp_path):
    docker = _docker_compose()
    files, secrets = VARIANTS[variant]
    quiet = _config(docker, files, secrets, tmp_path, "--quiet")
    assert quiet.returncode == 0, quiet.stderr
    resolved = _config(docker, files, secrets, tmp_path, "--format", "json")
    assert resolved.returncode == 0, resolved.stderr
    services = json.loads(resolved.stdout)["services"]
    executor = "CeleryExecutor" if variant == "celery" else "LocalExecutor"
    airflow = [n for n, s in services.items() if s.get("image") == "winecrm-airflow:3.3.2" and n != WEBHOOKS]
    assert len(airflow) == (7 if variant == "celery" else 5)
    for name in airflow:
        assert services[name]["environment"]["AIRFLOW__CORE__EXECUTOR"] == executor, name
        assert "CRM_ALLOW_EMBEDDED_DB" not in services[name]["environment"]
    for name, svc in services.items():
        for port in svc.get("ports", []):
            assert port["host_ip"] == "127.0.0.1", (name, port)
    if variant == "celery":
        worker = services["airflow-worker"]
        assert worker["command"] == ["celery", "worker"]
        assert worker["user"] == "50000:0"
        assert {v["target"] for v in worker["volumes"]} >= {"/opt/airflow/data", "/opt/airflow/raw"}
        assert services["flower"]["environment"]["AIRFLOW__CELERY__FLOWER_BASIC_AUTH"] == "flower:dummy-password"


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_docker_compose_config_refuses_a_missing_secret(variant, tmp_path):
    docker = _docker_compose()
    files, secrets = VARIANTS[variant]
    for missing in secrets:
        partial = {k: v for k, v in secrets.items() if k != missing}
        proc = _config(docker, files, partial, tmp_path, "--quiet")
        assert proc.returncode != 0, f"{variant}: config passed without {missing}"
        assert missing in proc.stderr and ".env" in proc.stderr, proc.stderr
        # An empty value is refused too (`:?`, not `?`).
        proc = _config(docker, files, {**partial, missing: ""}, tmp_path, "--quiet")
        assert proc.returncode != 0 and missing in proc.stderr, proc.stderr


def test_docker_compose_config_refuses_the_unedited_env_example(tmp_path):
    docker = _docker_compose()
    proc = _config(docker, [BASE], {}, tmp_path, "--quiet", env_file=ROOT / ".env.example")
    assert proc.returncode != 0, ".env.example must not be a working configuration"
    assert any(var in proc.stderr for var in SECRETS), proc.stderr


def test_the_image_leaves_out_the_development_tools():
    """The demo, the backtest and the sample estate (tools/, a distribution of their own) are
    neither in the domain package nor copied into the image; the Dockerfile copies only the
    package and its metadata, and the plugins/ folder compose mounts holds production code only."""
    ignored = {line.strip().rstrip("/") for line in _text(".dockerignore").splitlines()
               if line.strip() and not line.startswith("#")}
    assert {"tools", "tests"} <= ignored
    assert not {"demo", "evaluation", "samples"} & {p.name for p in (ROOT / "plugins" / "winecrm").iterdir()}
    assert 'include = ["winecrm*"]' in _text("pyproject.toml") and 'where = ["plugins"]' in _text("pyproject.toml")
    copies = [line.split()[-2] for line in _text("Dockerfile").splitlines() if line.startswith("COPY")]
    assert all(src.startswith(("requirements/", "pyproject.toml", "plugins/winecrm")) for src in copies), copies
