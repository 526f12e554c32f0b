# Airflow image with the project's pinned dependencies (same pins as the demo and the tests).
FROM apache/airflow:3.3.2-python3.11
COPY --chown=airflow:root requirements.txt /requirements.txt
RUN pip install --no-cache-dir -r /requirements.txt
