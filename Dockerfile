# The deployed image: Airflow's own image plus the runtime dependencies (requirements/runtime.txt)
# and the domain package `winecrm`. Development and test tools (requirements.txt,
# requirements/dev.txt: pytest, pgserver, ...) never go in.
#
#   docker compose build        (or: docker build -t winecrm-airflow:3.3.2 .)
ARG AIRFLOW_VERSION=3.3.2
ARG AIRFLOW_PYTHON_VERSION=3.11
FROM apache/airflow:${AIRFLOW_VERSION}-python${AIRFLOW_PYTHON_VERSION}
ARG AIRFLOW_VERSION

USER airflow

# apache-airflow is named with its exact version so pip can neither upgrade nor downgrade it, and
# Airflow's published constraints for this Airflow and this Python pin every package Airflow and
# its providers depend on (the Python version is read from the image's interpreter, so the
# constraints always match it).
COPY --chown=airflow:root requirements/runtime.txt /opt/airflow/requirements/runtime.txt
RUN PYTHON_VERSION="$(python -c 'import sys; print("%d.%d" % sys.version_info[:2])')" \
 && pip install --no-cache-dir \
      "apache-airflow==${AIRFLOW_VERSION}" \
      -r /opt/airflow/requirements/runtime.txt \
      --constraint "https://raw.githubusercontent.com/apache/airflow/constraints-${AIRFLOW_VERSION}/constraints-${PYTHON_VERSION}.txt"

# The domain package, installed in editable mode: it points at /opt/airflow/plugins/winecrm, so
# `python -m winecrm...` works in every container and the plugins/ folder that docker-compose.yaml
# bind-mounts there at run time is the code that runs. Dependencies come from the step above.
COPY --chown=airflow:root pyproject.toml /opt/airflow/pyproject.toml
COPY --chown=airflow:root plugins/winecrm /opt/airflow/plugins/winecrm
RUN pip install --no-cache-dir --no-deps --editable /opt/airflow \
 && python -c "import winecrm"
