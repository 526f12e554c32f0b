-- 015: proof of consent (GDPR art. 7(1), CNIL). crm.consent_log becomes the history of every
-- opt-in and opt-out of every customer: when, for which channel, and from where — the ERP export
-- (file and run), an unsubscribe link, a Brevo webhook, a rule, an erasure. Rows are appended,
-- never edited (winecrm/privacy/consent.py writes and reads them). Existing writers (the events
-- DAG, the receiver's unsubscribe page with its column grants) keep inserting the columns they
-- did: the new ones have defaults or stay NULL.

ALTER TABLE crm.consent_log
    ADD COLUMN channel text NOT NULL DEFAULT 'email',
    ADD COLUMN source_file text,
    ADD COLUMN run_id text,
    ADD COLUMN detail text;
ALTER TABLE crm.consent_log ADD CONSTRAINT consent_log_channel_check CHECK (channel IN ('email', 'sms', 'all'));
ALTER TABLE crm.consent_log ADD CONSTRAINT consent_log_change_check
    CHECK (change IN ('opt_in', 'opt_out', 'paused') OR change LIKE 'suppressed:_%');
CREATE INDEX consent_log_client ON crm.consent_log (client_code, changed_at);

COMMENT ON TABLE crm.consent_log IS 'the consent history (append-only): every opt-in, opt-out, suppression and pause of a customer or address, with its channel, source, file/run and time';
COMMENT ON COLUMN crm.consent_log.change IS 'opt_in | opt_out (the ERP export''s consent column, an erasure) | suppressed:<reason> (unsubscribe, bounce, complaint...) | paused (a rule paused campaigns)';
COMMENT ON COLUMN crm.consent_log.source IS 'erp_export | unsubscribe_link | brevo_webhook:<event> | brevo_campaign_webhook:<event> | rule:<id> | privacy_erase | ...';
COMMENT ON COLUMN crm.consent_log.channel IS 'what the consent covers: email, sms, or all (the ERP''s opt-out column stops e-mails and SMS alike)';
COMMENT ON COLUMN crm.consent_log.source_file IS 'erp_export: the export file (path in RAW) that stated it';
COMMENT ON COLUMN crm.consent_log.run_id IS 'the weekly run that loaded it (erp_export), or the run/operation that recorded it';
COMMENT ON COLUMN crm.consent_log.detail IS 'free context, never personal data (e.g. the line of the export)';
COMMENT ON COLUMN crm.consent_log.changed_at IS 'when the warehouse recorded the change (erp_export: the load of the file)';

-- Append-only: what was recorded is never rewritten. Only the person's identifiers may change,
-- so an erasure can pseudonymise a row it keeps (an erasure may also delete the person's rows).
CREATE FUNCTION crm.consent_log_append_only() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF (NEW.consent_id, NEW.change, NEW.source, NEW.event_id, NEW.changed_at, NEW.channel, NEW.source_file, NEW.run_id)
       IS DISTINCT FROM
       (OLD.consent_id, OLD.change, OLD.source, OLD.event_id, OLD.changed_at, OLD.channel, OLD.source_file, OLD.run_id)
    THEN
        RAISE EXCEPTION 'crm.consent_log is a history: record a new change instead of editing consent_id %',
            OLD.consent_id USING ERRCODE = 'raise_exception';
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER consent_log_append_only BEFORE UPDATE ON crm.consent_log
    FOR EACH ROW EXECUTE FUNCTION crm.consent_log_append_only();

-- The history starts with what the warehouse knows now: each customer's consent as the export
-- that last set it stated it (later exports record a row when the value flips). A customer an
-- erasure anonymised (no name, no address, opt_out forced) is left out: the ERP never said it.
INSERT INTO crm.consent_log (email, client_code, change, source, channel, source_file, run_id, detail, changed_at)
SELECT NULL, c.client_code, CASE WHEN c.opt_out THEN 'opt_out' ELSE 'opt_in' END, 'erp_export', 'all',
       m.file_path, c.loaded_run, 'state found when the history began (migration 015)',
       coalesce(m.loaded_at, c.updated_at)
FROM etl.clients c JOIN etl.file_manifest m USING (file_id)
WHERE c.opt_out IS NOT NULL
  AND NOT (c.opt_out AND c.email IS NULL AND c.nom IS NULL AND c.prenom IS NULL AND c.email_valid IS FALSE)
ORDER BY c.client_code;
