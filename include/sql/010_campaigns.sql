-- 010: e-mail campaigns (issue 10). A campaign is one week's recommendations turned into e-mails
-- (or a test send); crm.email_sends is its ledger: one row per (campaign, customer), rendered
-- once, then sent, simulated, skipped or failed — never twice (winecrm/campaigns/).

CREATE TABLE crm.campaigns (
    campaign_id       text PRIMARY KEY,              -- 'hebdo-2026-11-15' (the week's Sunday), 'test-…'
    kind              text NOT NULL CHECK (kind IN ('weekly', 'test', 'automation')),
    as_of_date        date,                          -- the recommendations it was rendered from
    mode              text NOT NULL CHECK (mode IN ('dry_run', 'live', 'test')),
    test_address      text,                          -- mode 'test': every e-mail goes to this address
    status            text NOT NULL DEFAULT 'rendered'
                      CHECK (status IN ('rendered', 'approved', 'rejected', 'sending', 'done')),
    decided_by        text,                          -- who approved or rejected (live mode)
    decided_at        timestamptz,
    decision_note     text,
    created_run       text,
    created_at        timestamptz NOT NULL DEFAULT now(),
    updated_at        timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE crm.campaigns IS 'one row per campaign: the week (or test) it sends, its mode, and the person''s decision in live mode';

-- The ledger. A row written without a status is still a sent e-mail (as before: e.g. one sent
-- by another tool, recorded for the silence window); campaign rows always say theirs.
ALTER TABLE crm.email_sends
    ALTER COLUMN sent_at DROP NOT NULL,
    ALTER COLUMN sent_at DROP DEFAULT,
    ALTER COLUMN email DROP NOT NULL,                -- a skipped customer may have no address
    ADD COLUMN campaign_id      text REFERENCES crm.campaigns,
    ADD COLUMN idempotency_key  uuid,                -- derived from campaign + customer: the same on every rerun
    ADD COLUMN template         text,                -- rebuy | cross_sell | winback | thank_you | vip_offer
    ADD COLUMN subject          text,
    ADD COLUMN html             text,
    ADD COLUMN text_body        text,
    ADD COLUMN products         jsonb,               -- what the e-mail proposes: article, label, vintage, price, reason
    ADD COLUMN skip_reason      text,                -- why a customer got no e-mail (control, suppressed, opted_out, …)
    ADD COLUMN attempts         integer NOT NULL DEFAULT 0,
    ADD COLUMN batch_key        uuid,                -- the Brevo call the e-mail left in (its idempotencyKey)
    ADD COLUMN brevo_message_id text,
    ADD COLUMN error            text,
    ADD COLUMN outbox_path      text,                -- dry-run / test: the .eml written instead
    ADD COLUMN unsubscribe_token text,               -- random, in the e-mail's one-click unsubscribe link
    ADD COLUMN rendered_at      timestamptz,
    ADD COLUMN sending_at       timestamptz,         -- when the request left (its outcome is unknown until answered)
    ADD COLUMN updated_at       timestamptz NOT NULL DEFAULT now(),
    ADD CONSTRAINT email_sends_status_check
        CHECK (status IN ('rendered', 'sending', 'sent', 'failed', 'simulated', 'skipped', 'dry_run'));
CREATE UNIQUE INDEX email_sends_once ON crm.email_sends (campaign_id, client_code) WHERE campaign_id IS NOT NULL;
CREATE UNIQUE INDEX email_sends_key ON crm.email_sends (idempotency_key) WHERE idempotency_key IS NOT NULL;
CREATE UNIQUE INDEX email_sends_unsubscribe ON crm.email_sends (unsubscribe_token) WHERE unsubscribe_token IS NOT NULL;
CREATE INDEX email_sends_open ON crm.email_sends (campaign_id, status) WHERE status IN ('rendered', 'sending');
COMMENT ON TABLE crm.email_sends IS 'the send ledger: one row per (campaign, customer); status rendered -> sending -> sent | failed | simulated, or skipped with skip_reason; sent_at is when Brevo accepted it';
COMMENT ON COLUMN crm.email_sends.status IS 'rendered: ready; sending: the request left, outcome not yet known; sent: accepted by Brevo; simulated: written to the outbox (dry-run/test); skipped: never to be sent (skip_reason); failed: refused (error)';

-- Why a customer must not get an e-mail now (NULL: they may), checked when a campaign is
-- rendered and again just before each send: an address that is missing, invalid or suppressed
-- (unsubscribed, hard bounce, spam complaint, erased), a customer who opted out, or one emailed
-- by another campaign within the silence window (test sends to an internal address do not count).
CREATE FUNCTION crm.email_blocked_reason(client text, address text, silence_days integer, campaign text)
RETURNS text
LANGUAGE sql STABLE PARALLEL SAFE
AS $$
    SELECT CASE
        WHEN address IS NULL OR address !~ '^[^@\s]+@[^@\s]+\.[^@\s]+$' THEN 'invalid_email'
        WHEN EXISTS (SELECT 1 FROM crm.suppressions s WHERE s.email = lower(btrim(address))) THEN 'suppressed'
        WHEN EXISTS (SELECT 1 FROM etl.clients c WHERE c.client_code = client AND c.opt_out IS TRUE) THEN 'opted_out'
        WHEN EXISTS (SELECT 1 FROM etl.clients c WHERE c.client_code = client AND c.email_valid IS FALSE) THEN 'invalid_email'
        WHEN EXISTS (SELECT 1 FROM crm.email_sends e
                     LEFT JOIN crm.campaigns k ON k.campaign_id = e.campaign_id
                     WHERE e.client_code = client AND e.status = 'sent' AND k.kind IS DISTINCT FROM 'test'
                       AND e.campaign_id IS DISTINCT FROM campaign
                       AND e.sent_at > now() - make_interval(days => silence_days)) THEN 'silence_window'
    END
$$;
