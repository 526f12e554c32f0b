"""Wine CRM domain package: iSaVigne exports -> PostgreSQL warehouse -> scoring -> emails.

Pure Python plus a thin database layer; importable and testable without an Airflow scheduler.
Only ``winecrm.airflow.glue`` knows about Airflow.
"""

__version__ = "0.1.0"
