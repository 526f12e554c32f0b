#!/bin/bash
# First start of the PostgreSQL container (empty data volume only): a separate database and owner
# for the CRM warehouse. The password comes from WINECRM_DB_PASSWORD (.env); changing it in .env
# later does not change the role: use ALTER ROLE winecrm PASSWORD '...' as well.
set -euo pipefail
: "${WINECRM_DB_PASSWORD:?set WINECRM_DB_PASSWORD in .env}"
# The password goes through a psql variable (:'pw' quotes it as an SQL literal), not through the
# shell into the SQL text.
psql -v ON_ERROR_STOP=1 -v pw="$WINECRM_DB_PASSWORD" --username "$POSTGRES_USER" --dbname "$POSTGRES_DB" <<-'SQL'
  CREATE ROLE winecrm LOGIN PASSWORD :'pw';
  CREATE DATABASE winecrm OWNER winecrm;
SQL
