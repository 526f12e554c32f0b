-- 012: Brevo as it really posts (issue 18). Both webhook families are stored (transactional:
-- our e-mails and the shop's; marketing: campaigns the estate sends from Brevo itself), an event
-- the receiver cannot read is stored as received and parked, and the receiver writes through a
-- role that can do nothing else.

ALTER TABLE crm.webhook_events
    ADD COLUMN family          text CHECK (family IN ('transactional', 'marketing')),
    ADD COLUMN brevo_campaign  text,
    ADD COLUMN message_key     text,
    ADD COLUMN intake_problem  text;
COMMENT ON COLUMN crm.webhook_events.event IS 'canonical event name (Brevo: hard_bounce for hardBounce, unsubscribed for the marketing unsubscribe...; the spelling received stays in payload), the behaviour action, or lead_score_high';
COMMENT ON COLUMN crm.webhook_events.family IS 'Brevo webhook family: transactional (our e-mails, the shop''s mails) or marketing (campaigns sent from Brevo itself, contact events)';
COMMENT ON COLUMN crm.webhook_events.brevo_campaign IS 'marketing family: Brevo''s camp_id';
COMMENT ON COLUMN crm.webhook_events.message_key IS 'the e-mail the event is about: Brevo''s message-id, or camp:<camp_id>|<address> for a Brevo campaign (a second open of it is a repeat)';
COMMENT ON COLUMN crm.webhook_events.intake_problem IS 'why the receiver could not read the event (unknown name, unusable address, wrong type...): stored as received, parked by crm_events for a person';
COMMENT ON COLUMN crm.webhook_events.link IS 'click: the URL (transactional link, marketing URL)';
COMMENT ON COLUMN crm.webhook_events.occurred_at IS 'the sender''s time of the event (ts_epoch in seconds or milliseconds, ts_event, ts, date); NULL when none is a sane time: the time received counts';
UPDATE crm.webhook_events SET message_key = message_id, family = 'transactional' WHERE source = 'brevo';
CREATE INDEX webhook_events_message_key ON crm.webhook_events (message_key, event_id) WHERE message_key IS NOT NULL;

-- The receiver's role: insert events, record an unsubscribe from a link, nothing else (it is the
-- one process the internet reaches). Created when the migrating user may create roles; the
-- receiver takes it with SET ROLE (or logs in as a member of it, see the README).
DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'crm_receiver') THEN
        BEGIN
            CREATE ROLE crm_receiver NOLOGIN;
        EXCEPTION WHEN insufficient_privilege OR duplicate_object THEN
            RAISE NOTICE 'role crm_receiver not created here (%): create it as in the README', SQLERRM;
        END;
    END IF;
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'crm_receiver') THEN
        EXECUTE 'GRANT USAGE ON SCHEMA crm TO crm_receiver';
        EXECUTE 'GRANT INSERT (source, event, email, client_code, message_id, custom, link, occurred_at, payload,
                               dedupe_key, family, brevo_campaign, message_key, intake_problem)
                 ON crm.webhook_events TO crm_receiver';
        EXECUTE 'GRANT SELECT (dedupe_key) ON crm.webhook_events TO crm_receiver';   -- ON CONFLICT, RETURNING
        EXECUTE 'GRANT USAGE ON SEQUENCE crm.webhook_events_event_id_seq TO crm_receiver';
        EXECUTE 'GRANT SELECT (unsubscribe_token, email, client_code, campaign_id) ON crm.email_sends TO crm_receiver';
        EXECUTE 'GRANT SELECT (campaign_id, kind) ON crm.campaigns TO crm_receiver';
        EXECUTE 'GRANT INSERT (email, reason, source) ON crm.suppressions TO crm_receiver';
        EXECUTE 'GRANT SELECT (email) ON crm.suppressions TO crm_receiver';
        EXECUTE 'GRANT INSERT (email, client_code, change, source) ON crm.consent_log TO crm_receiver';
        EXECUTE 'GRANT USAGE ON SEQUENCE crm.consent_log_consent_id_seq TO crm_receiver';
        BEGIN
            EXECUTE 'GRANT crm_receiver TO ' || quote_ident(current_user);  -- so the owner's URL may SET ROLE
        EXCEPTION WHEN insufficient_privilege OR invalid_grant_operation THEN
            RAISE NOTICE 'crm_receiver not granted to %: give the receiver a login in that role', current_user;
        END;
    END IF;
END $$;
