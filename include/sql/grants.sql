-- Roles and grants, idempotent: applied after every migration run that changed the schema and at
-- every deployment (python -m winecrm.airflow migrate-warehouse), so a role created after the
-- schema (an upgraded server) still gets its grants. Not a numbered migration: it may change.
--
-- The receiver's role (crm_receiver): insert events, record an unsubscribe from a link, nothing
-- else (it is the one process the internet reaches). Created when the migrating user may create
-- roles; the receiver takes it with SET ROLE (or logs in as a member of it, see docs/deployment.md).
DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'crm_receiver') THEN
        BEGIN
            CREATE ROLE crm_receiver NOLOGIN;
        EXCEPTION WHEN insufficient_privilege OR duplicate_object THEN
            RAISE NOTICE 'role crm_receiver not created here (%): create it as in docs/deployment.md', SQLERRM;
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
