#!/bin/bash
# First start of the PostgreSQL container: a separate database and owner for the CRM warehouse.
set -euo pipefail
psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname "$POSTGRES_DB" <<-SQL
  CREATE ROLE winecrm LOGIN PASSWORD '${WINECRM_DB_PASSWORD}';
  CREATE DATABASE winecrm OWNER winecrm;
SQL
