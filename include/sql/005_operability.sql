-- Operability (issue 8): what a run was asked to do, what its load really wrote, and the note
-- shown in Airflow's run list.

-- The trigger form's params as validated by prepare_run (week, dry_run, reingest_files,
-- accept_files, settle_seconds); '{}' for a scheduled run with the defaults.
ALTER TABLE etl.runs ADD COLUMN params jsonb NOT NULL DEFAULT '{}';
COMMENT ON COLUMN etl.runs.params IS 'trigger-form params as validated by prepare_run';

-- rows_loaded counted every validated row handed to the load, including rows the warehouse
-- already had from a newer export. Three honest counters instead:
ALTER TABLE etl.runs ADD COLUMN rows_written bigint NOT NULL DEFAULT 0;
ALTER TABLE etl.runs ADD COLUMN rows_superseded bigint NOT NULL DEFAULT 0;
ALTER TABLE etl.runs ADD COLUMN rows_skipped bigint NOT NULL DEFAULT 0;
ALTER TABLE etl.runs RENAME COLUMN rows_loaded TO rows_validated;
COMMENT ON COLUMN etl.runs.rows_validated IS 'good rows of the run''s files handed to the load';
COMMENT ON COLUMN etl.runs.rows_written IS 'rows inserted or updated in the warehouse tables by the load';
COMMENT ON COLUMN etl.runs.rows_superseded IS 'warehouse rows this run replaced with a newer export of the same document / key';
COMMENT ON COLUMN etl.runs.rows_skipped IS 'good rows not written: the warehouse (or a newer file of the same run) already has a newer export of the same document / key';

-- The one-line French summary set as the Airflow run note ("Semaine du … : …").
ALTER TABLE etl.runs ADD COLUMN note text;

ALTER TABLE etl.file_manifest ADD COLUMN rows_skipped bigint;
COMMENT ON COLUMN etl.file_manifest.rows_loaded IS 'rows of this file written to the warehouse';
COMMENT ON COLUMN etl.file_manifest.rows_skipped IS 'good rows of this file not written: a newer export of the same document / key was there';

-- A file let through despite the quality gate, and by what (param of run X, or a .accept marker).
ALTER TABLE etl.file_manifest ADD COLUMN accepted_by text;
COMMENT ON COLUMN etl.file_manifest.accepted_by IS 'why the quality gate was not applied: "param accept_files of run …" or "marker <file>.accept"';
