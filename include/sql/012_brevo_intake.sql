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

-- The receiver's role and its grants: include/sql/grants.sql (applied after this migration, and
-- again at every deployment, so a role created later gets them).
