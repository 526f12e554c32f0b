-- 001: ETL foundation — manifest, quarantine, run records and the four warehouse tables.
-- Applied once by winecrm.core.migrations (tracked in etl.schema_migrations).

CREATE SCHEMA IF NOT EXISTS etl;
CREATE SCHEMA IF NOT EXISTS crm;

-- One row per DAG run (or CLI run): what came in, what went where, how long it took.
CREATE TABLE etl.runs (
    run_id            text PRIMARY KEY,              -- Airflow run_id (or a CLI-made id)
    logical_date      timestamptz NOT NULL,
    week_start        date NOT NULL,                 -- Monday of the sales week the run covers
    week_end          date NOT NULL,                 -- Sunday of that week
    status            text NOT NULL DEFAULT 'running'
                      CHECK (status IN ('running', 'success', 'failed')),
    started_at        timestamptz NOT NULL DEFAULT now(),
    finished_at       timestamptz,
    files_seen        integer NOT NULL DEFAULT 0,    -- complete files found in RAW
    files_new         integer NOT NULL DEFAULT 0,    -- of which not ingested before
    files_duplicate   integer NOT NULL DEFAULT 0,    -- same content already ingested under another name
    files_quarantined integer NOT NULL DEFAULT 0,    -- whole-file rejections
    rows_read         bigint NOT NULL DEFAULT 0,
    rows_loaded       bigint NOT NULL DEFAULT 0,
    rows_quarantined  bigint NOT NULL DEFAULT 0,
    stage_seconds     jsonb NOT NULL DEFAULT '{}',   -- {"ingest": 3.1, "validate": 1.2, "load": 2.0}
    details           jsonb NOT NULL DEFAULT '{}',   -- per-dataset counters, warnings, Data Docs path
    error             text
);

-- Every distinct file content ever seen, by SHA-256: the same bytes are never ingested twice.
CREATE TABLE etl.file_manifest (
    file_id           bigserial PRIMARY KEY,
    sha256            char(64) NOT NULL UNIQUE,
    dataset           text NOT NULL CHECK (dataset IN ('ventes_lignes', 'clients', 'produits', 'stock')),
    file_path         text NOT NULL,                 -- path relative to CRM_RAW_DIR, first delivery
    size_bytes        bigint NOT NULL,
    file_mtime        timestamptz NOT NULL,
    export_date       date,                          -- date found in the file name, else mtime date
    status            text NOT NULL DEFAULT 'registered'
                      CHECK (status IN ('registered', 'ingested', 'validated', 'loaded', 'quarantined')),
    status_reason     text,                          -- why a file was quarantined
    run_id            text NOT NULL,                 -- run that owns (or last owned) the file
    file_format       text,                          -- csv | xlsx
    encoding          text,
    delimiter         text,
    sheet_name        text,
    header_mapping    jsonb,                         -- {"source header": "canonical column"}
    extra_columns     text[],                        -- source columns outside the contract (ignored)
    rows_read         bigint,
    rows_good         bigint,
    rows_quarantined  bigint,
    rows_loaded       bigint,
    warnings          jsonb NOT NULL DEFAULT '[]',
    registered_at     timestamptz NOT NULL DEFAULT now(),
    loaded_at         timestamptz
);

-- Every path ever delivered, pointing at its content: a copy under another name is visible here.
CREATE TABLE etl.file_deliveries (
    file_path         text PRIMARY KEY,              -- relative to CRM_RAW_DIR
    size_bytes        bigint NOT NULL,
    file_mtime        timestamptz NOT NULL,
    sha256            char(64) NOT NULL,
    first_seen_run    text NOT NULL,
    first_seen_at     timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX file_deliveries_sha256 ON etl.file_deliveries (sha256);

-- Rejected input: one row per bad row (row_no set) or per bad file (row_no NULL).
CREATE TABLE etl.quarantine (
    quarantine_id     bigserial PRIMARY KEY,
    file_id           bigint NOT NULL REFERENCES etl.file_manifest (file_id),
    run_id            text NOT NULL,
    dataset           text NOT NULL,
    file_path         text NOT NULL,
    row_no            bigint,                        -- line number in the file (header = 1) / sheet row
    column_name       text,                          -- first failing column (canonical name)
    expectations      text[] NOT NULL,               -- failing Great Expectations names (or file-level check)
    reason            text NOT NULL,                 -- human-readable, French-free: for the data engineer
    raw_values        jsonb,                         -- the row as read, canonical column -> raw text
    quarantined_at    timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX quarantine_file ON etl.quarantine (file_id);
CREATE INDEX quarantine_run ON etl.quarantine (run_id);

-- Sales lines. A document (document_type, document_no) is replaced as a whole when a later
-- export carries it again, so overlapping re-deliveries never double-count, and two lines of
-- one document stay two rows even when identical in every business column but their line.
CREATE TABLE etl.ventes_lignes (
    document_type     text NOT NULL,                 -- VENTE, FACTURE, BL, AVOIR (credit note)
    document_no       text NOT NULL,
    client_code       text NOT NULL,
    date_livraison    date NOT NULL,
    produit_label     text,
    article           text NOT NULL,
    qty_line          numeric(12, 3) NOT NULL,       -- signed: credit notes are negative
    pu_ht             numeric(12, 4),                -- unit price excl. VAT (always >= 0)
    mt_ht             numeric(14, 2) NOT NULL,       -- line amount excl. VAT, signed
    mt_ttc            numeric(14, 2),                -- line amount incl. VAT, signed
    marge             numeric(14, 2),                -- margin, signed
    email             text,                          -- lower-cased, trimmed
    email_valid       boolean,
    code_postal       text,
    ville             text,
    -- No FOREIGN KEY on file_id here: its per-row check cost ~40 % of the bulk COPY (bench);
    -- the loader only writes file ids it has just read from etl.file_manifest.
    file_id           bigint NOT NULL,               -- etl.file_manifest.file_id
    source_row        bigint NOT NULL,               -- line number in that file (header = 1)
    loaded_run        text NOT NULL,
    loaded_at         timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (document_type, document_no, source_row)
);

CREATE TABLE etl.clients (
    client_code       text PRIMARY KEY,
    nom               text,
    prenom            text,
    email             text,
    email_valid       boolean,
    telephone         text,
    adresse           text,
    code_postal       text,
    ville             text,
    pays              text,
    opt_out           boolean,                       -- optional consent column; NULL = not exported
    file_id           bigint NOT NULL REFERENCES etl.file_manifest (file_id),
    source_row        bigint NOT NULL,
    loaded_run        text NOT NULL,
    updated_at        timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE etl.produits (
    article           text PRIMARY KEY,              -- the SKU used in sales lines
    produit           text,
    millesime         integer,
    famille_crm       text,
    sous_famille      text,
    macro_categorie   text,
    prix_ttc          numeric(12, 2),
    price_band        text,
    premium_tier      text,
    cepage            text,
    couleur           text,
    file_id           bigint NOT NULL REFERENCES etl.file_manifest (file_id),
    source_row        bigint NOT NULL,
    loaded_run        text NOT NULL,
    updated_at        timestamptz NOT NULL DEFAULT now()
);

-- Current stock per article, vintage and warehouse (the latest snapshot wins).
CREATE TABLE etl.stock (
    article           text NOT NULL,
    millesime         integer NOT NULL DEFAULT 0,    -- 0 = non-vintage
    entrepot          text NOT NULL,
    quantite          numeric(12, 3) NOT NULL,
    unite             text,
    snapshot_date     date NOT NULL,                 -- export date of the file it came from
    file_id           bigint NOT NULL REFERENCES etl.file_manifest (file_id),
    source_row        bigint NOT NULL,
    loaded_run        text NOT NULL,
    updated_at        timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (article, millesime, entrepot)
);
