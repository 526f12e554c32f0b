"""``python -m winecrm.airflow migrate-warehouse``: apply the warehouse's SQL migrations on the
database of the Airflow connection ``crm_warehouse`` (docker compose's airflow-init runs it at
every deployment), then its roles and grants (``include/sql/grants.sql``)."""

from __future__ import annotations

import argparse
import sys


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m winecrm.airflow", description=__doc__)
    parser.add_argument("command", choices=["migrate-warehouse"])
    parser.parse_args(argv)
    from winecrm.airflow.connections import warehouse_connection
    from winecrm.core.migrations import apply_migrations

    with warehouse_connection("migrate") as conn:
        applied = apply_migrations(conn, grants=True)
    print(f"Warehouse migrations applied: {', '.join(applied) or 'none (up to date)'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
