-- 004: one record per run attempt, files rejected by the quality gate, revenue document types.

-- A rerun or a cleared run is a new attempt of the same run id: earlier attempts keep their
-- counters and details (the audit of what each attempt did).
ALTER TABLE etl.runs ADD COLUMN attempt integer NOT NULL DEFAULT 1;
ALTER TABLE etl.runs ADD COLUMN heartbeat_at timestamptz NOT NULL DEFAULT now();
ALTER TABLE etl.runs DROP CONSTRAINT runs_pkey;
ALTER TABLE etl.runs ADD PRIMARY KEY (run_id, attempt);
COMMENT ON COLUMN etl.runs.attempt IS '1 for the first attempt of a run id, +1 for each rerun (clear, retry of prepare_run, CLI rerun)';
COMMENT ON COLUMN etl.runs.heartbeat_at IS 'last sign of life (each stage, each sensor look): a running attempt silent for longer than timeouts.run_hours is dead, and its files can be taken over';

-- A file whose bad-row share is above the quality gate is rejected as a whole and stays so:
-- later runs do not take it again (the file's rows stay in etl.quarantine).
ALTER TABLE etl.file_manifest DROP CONSTRAINT file_manifest_status_check;
ALTER TABLE etl.file_manifest ADD CONSTRAINT file_manifest_status_check
    CHECK (status IN ('registered', 'ingested', 'validated', 'loaded', 'quarantined', 'rejected'));
COMMENT ON COLUMN etl.file_manifest.status IS 'registered -> ingested -> validated -> loaded; quarantined = unreadable file; rejected = too many bad rows (quality gate)';
COMMENT ON COLUMN etl.file_manifest.run_id IS 'run that owns (or last owned) the file; another run takes it over only once that run is no longer running';

CREATE INDEX file_manifest_run ON etl.file_manifest (run_id, status);

-- (002's comment on crm.product_affinity predates the backtest: the ranking uses the similarity
-- chosen in scoring.yaml, recommendations.cross_sell_similarity — confidence by default.)
COMMENT ON TABLE crm.product_affinity IS 'co-purchase between items (article, family, grape) at customer level as of a date; support, confidence P(b|a) and Jaccard are stored; cross-sell ranks with recommendations.cross_sell_similarity (scoring.yaml), never raw lift';
