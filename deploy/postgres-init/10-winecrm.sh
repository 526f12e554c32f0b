#!/bin/bash
# First start of the PostgreSQL container (empty data volume only): a separate database and owner
# for the CRM warehouse. The password comes from WINECRM_DB_PASSWORD (.env); changing it in .env
# later does not change the role: use ALTER ROLE winecrm PASSWORD '...' as well.
# The webhook receiver gets its own login, winecrm_receiver, in the group crm_receiver: the
# warehouse migrations (run by winecrm) grant that group what the receiver needs and nothing more.
set -euo pipefail
: "${WINECRM_DB_PASSWORD:?set WINECRM_DB_PASSWORD in .env}"
: "${CRM_RECEIVER_DB_PASSWORD:?set CRM_RECEIVER_DB_PASSWORD in .env}"
# The passwords go through psql variables (:'pw' quotes it as an SQL literal), not through the
# shell into the SQL text.
psql -v ON_ERROR_STOP=1 -v pw="$WINECRM_DB_PASSWORD" -v rpw="$CRM_RECEIVER_DB_PASSWORD" \
     --username "$POSTGRES_USER" --dbname "$POSTGRES_DB" <<-'SQL'
  CREATE ROLE winecrm LOGIN PASSWORD :'pw';
  CREATE DATABASE winecrm OWNER winecrm;
  CREATE ROLE crm_receiver NOLOGIN;
  CREATE ROLE winecrm_receiver LOGIN PASSWORD :'rpw' IN ROLE crm_receiver;
SQL
