-- 011: what customers do after an e-mail (issue 11). Brevo webhooks and behaviour events land in
-- the queue crm.webhook_events (committed before the sender gets its 2xx); the crm_events DAG
-- maps them to triggers, evaluates the automation rules (include/config/automation_rules.yaml)
-- and applies their actions through crm.automation_actions, exactly once per (event, rule,
-- action). winecrm/events/ holds the code.

CREATE TABLE crm.webhook_events (
    event_id          bigserial PRIMARY KEY,
    source            text NOT NULL CHECK (source IN ('brevo', 'behavior', 'internal')),
    event             text NOT NULL,                 -- Brevo's event name, the behaviour action, or lead_score_high
    email             text,                          -- lower-cased, as received
    client_code       text,                          -- as received (behaviour) or linked by the DAG
    message_id        text,                          -- Brevo's message-id
    custom            text,                          -- X-Mailin-custom echoed by Brevo: 'campaign|batch key'
    link              text,                          -- click: the URL
    occurred_at       timestamptz,                   -- the sender's time of the event (ts_epoch / ts_event / ts)
    payload           jsonb NOT NULL,                -- the event as received (stored as data, never interpreted as markup)
    dedupe_key        text NOT NULL,                 -- sha256 of message-id, event, time and link (Brevo has no event id)
    received_at       timestamptz NOT NULL DEFAULT now(),
    -- set by the crm_events DAG
    status            text NOT NULL DEFAULT 'queued' CHECK (status IN ('queued', 'done', 'failed', 'parked')),
    trig              text,                          -- the trigger it maps to (email_opened, purchase, ...); NULL: none
    repeat_of         bigint,                        -- an earlier event of the same message/trigger (second open): no rule fires again
    campaign_id       text,                          -- our send it answers, when known
    send_id           bigint,
    amount            numeric(12, 2),                -- purchase: metadata.amount
    unknown_customer  boolean,                       -- no customer has this address / code: kept and reported
    attempts          integer NOT NULL DEFAULT 0,
    next_attempt_at   timestamptz NOT NULL DEFAULT now(),
    error             text,
    processed_at      timestamptz
);
CREATE UNIQUE INDEX webhook_events_once ON crm.webhook_events (dedupe_key);
CREATE INDEX webhook_events_todo ON crm.webhook_events (event_id) WHERE status IN ('queued', 'failed');
CREATE INDEX webhook_events_client ON crm.webhook_events (client_code, trig);
CREATE INDEX webhook_events_campaign ON crm.webhook_events (campaign_id, event) WHERE campaign_id IS NOT NULL;
CREATE INDEX webhook_events_message ON crm.webhook_events (message_id, event_id) WHERE message_id IS NOT NULL;
CREATE INDEX webhook_events_email ON crm.webhook_events (email, event_id);
COMMENT ON TABLE crm.webhook_events IS 'the event queue: every Brevo webhook and behaviour event acknowledged with a 2xx, once each (dedupe_key), and what the crm_events DAG made of it';

CREATE INDEX email_sends_message ON crm.email_sends (brevo_message_id) WHERE brevo_message_id IS NOT NULL;
CREATE INDEX email_sends_batch ON crm.email_sends (campaign_id, batch_key) WHERE batch_key IS NOT NULL;
CREATE INDEX email_sends_address ON crm.email_sends (lower(email));
CREATE INDEX clients_address ON etl.clients (lower(btrim(email)));

-- Every action a rule decided, with its due time: the exactly-once ledger of the rule engine.
CREATE TABLE crm.automation_actions (
    action_id         bigserial PRIMARY KEY,
    event_id          bigint NOT NULL REFERENCES crm.webhook_events ON DELETE CASCADE,
    rule_id           text NOT NULL,
    action_index      smallint NOT NULL,             -- position in the rule's action list
    action_type       text NOT NULL,                 -- update_score, add_tag, create_task, schedule_call, pause_campaign,
                                                     -- suppress, send_email, send_sms, trigger_webhook
    params            jsonb NOT NULL,
    priority          smallint NOT NULL,
    client_code       text,
    email             text,
    due_at            timestamptz NOT NULL,          -- event time + the action's delay (SMS: moved to the next allowed time)
    status            text NOT NULL DEFAULT 'pending'
                      CHECK (status IN ('pending', 'running', 'done', 'skipped', 'failed', 'parked', 'unknown')),
    attempts          integer NOT NULL DEFAULT 0,
    error             text,
    result            jsonb,                         -- what it did: the send row, the task, the SMS reference...
    created_at        timestamptz NOT NULL DEFAULT now(),
    done_at           timestamptz,
    UNIQUE (event_id, rule_id, action_index)
);
CREATE INDEX automation_actions_due ON crm.automation_actions (due_at) WHERE status IN ('pending', 'failed', 'running');
CREATE INDEX automation_actions_client ON crm.automation_actions (client_code);
COMMENT ON TABLE crm.automation_actions IS 'one row per (event, rule, action): when it is due, whether it ran, what it did; status unknown = an SMS or webhook whose answer was lost (never repeated)';

CREATE TABLE crm.score_changes (
    change_id         bigserial PRIMARY KEY,
    client_code       text NOT NULL,
    delta             integer NOT NULL,
    reason            text NOT NULL,                 -- 'rule email_clicked_engaged: click (hebdo-2026-11-15)'
    rule_id           text,
    event_id          bigint,
    action_id         bigint UNIQUE REFERENCES crm.automation_actions ON DELETE CASCADE,
    changed_at        timestamptz NOT NULL           -- the event's time: the weekly score counts changes up to its date
);
CREATE INDEX score_changes_client ON crm.score_changes (client_code, changed_at);
COMMENT ON TABLE crm.score_changes IS 'the lead score''s engagement ledger: every change a rule made, with its reason; the weekly lead score adds them up (capped) as engagement points';

CREATE TABLE crm.customer_tags (
    client_code       text NOT NULL,
    tag               text NOT NULL,
    rule_id           text,
    event_id          bigint,
    tagged_at         timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (client_code, tag)
);
COMMENT ON TABLE crm.customer_tags IS 'tags rules put on customers (engaged, invalid_email, unsubscribed...): rule conditions and the sales team read them';

CREATE TABLE crm.tasks (
    task_id           bigserial PRIMARY KEY,
    kind              text NOT NULL CHECK (kind IN ('task', 'call')),
    client_code       text,
    title             text NOT NULL,                 -- French: what the sales team sees
    due_at            timestamptz NOT NULL,
    status            text NOT NULL DEFAULT 'open' CHECK (status IN ('open', 'done', 'cancelled')),
    rule_id           text,
    event_id          bigint,
    action_id         bigint UNIQUE REFERENCES crm.automation_actions ON DELETE CASCADE,
    created_at        timestamptz NOT NULL DEFAULT now(),
    closed_at         timestamptz
);
CREATE INDEX tasks_open ON crm.tasks (due_at) WHERE status = 'open';
COMMENT ON TABLE crm.tasks IS 'follow-up tasks and calls for the sales team, created by rules; close them with status done';

CREATE TABLE crm.campaign_pauses (
    client_code       text PRIMARY KEY,
    paused_until      timestamptz NOT NULL,
    reason            text NOT NULL,
    rule_id           text,
    event_id          bigint,
    paused_at         timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE crm.campaign_pauses IS 'customers no campaign e-mails until paused_until (rule action pause_campaign)';

-- Consent as the events changed it: who, what, from where, when.
CREATE TABLE crm.consent_log (
    consent_id        bigserial PRIMARY KEY,
    email             text,
    client_code       text,
    change            text NOT NULL,                 -- suppressed:<reason> | paused
    source            text NOT NULL,                 -- brevo_webhook:unsubscribed, unsubscribe_link, rule:<id>, ...
    event_id          bigint,
    changed_at        timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX consent_log_email ON crm.consent_log (email);
COMMENT ON TABLE crm.consent_log IS 'every consent change recorded from events and links, with its source and time';

-- The lead score now: the latest weekly score with its engagement points replaced by the rules'
-- score changes so far (capped like the weekly score): what lead_score_high and the rule
-- conditions on score read between two weekly runs.
CREATE FUNCTION crm.current_lead_score(client text, engagement_cap numeric DEFAULT 20)
RETURNS numeric
LANGUAGE sql STABLE PARALLEL SAFE
AS $$
    SELECT round(greatest(0, least(100, ls.raw_score - ls.engagement_points
                                        + least(engagement_cap, coalesce((SELECT sum(sc.delta) FROM crm.score_changes sc
                                                                          WHERE sc.client_code = client), 0))))::numeric, 1)
    FROM crm.lead_scores ls WHERE ls.client_code = client
    ORDER BY ls.as_of_date DESC LIMIT 1
$$;

-- lead_score_high fires when a customer's score crosses the threshold upwards, not every run.
CREATE TABLE crm.lead_score_state (
    client_code       text PRIMARY KEY,
    score             integer NOT NULL,
    above             boolean NOT NULL,
    changed_at        timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE crm.lead_score_state IS 'the last score the events DAG saw per customer, so lead_score_high fires once per upward crossing';

ALTER TABLE crm.suppressions DROP CONSTRAINT IF EXISTS suppressions_reason_check;
ALTER TABLE crm.suppressions ADD CONSTRAINT suppressions_reason_check
    CHECK (reason IN ('unsubscribed', 'hard_bounce', 'spam', 'erased', 'invalid_email', 'blocked', 'manual'));

-- Sending checks: an erased person is kept only as 'erased:<sha256 of the address>'; a paused
-- customer gets no campaign e-mail; automation e-mails (thank-you, VIP offer) neither count in nor
-- wait for the weekly silence window.
CREATE OR REPLACE FUNCTION crm.email_blocked_reason(client text, address text, silence_days integer, campaign text)
RETURNS text
LANGUAGE sql STABLE PARALLEL SAFE
AS $$
    SELECT CASE
        WHEN address IS NULL OR address !~ '^[^@\s]+@[^@\s]+\.[^@\s]+$' THEN 'invalid_email'
        WHEN EXISTS (SELECT 1 FROM crm.suppressions s
                     WHERE s.email IN (lower(btrim(address)),
                                       'erased:' || encode(sha256(convert_to(lower(btrim(address)), 'UTF8')), 'hex')))
             THEN 'suppressed'
        WHEN EXISTS (SELECT 1 FROM etl.clients c WHERE c.client_code = client AND c.opt_out IS TRUE) THEN 'opted_out'
        WHEN EXISTS (SELECT 1 FROM etl.clients c WHERE c.client_code = client AND c.email_valid IS FALSE) THEN 'invalid_email'
        WHEN EXISTS (SELECT 1 FROM crm.campaign_pauses p WHERE p.client_code = client AND p.paused_until > now())
             AND NOT EXISTS (SELECT 1 FROM crm.campaigns k WHERE k.campaign_id = campaign AND k.kind = 'automation')
             THEN 'paused'
        WHEN EXISTS (SELECT 1 FROM crm.email_sends e
                     LEFT JOIN crm.campaigns k ON k.campaign_id = e.campaign_id
                     WHERE e.client_code = client AND e.status = 'sent' AND k.kind IS DISTINCT FROM 'test'
                       AND k.kind IS DISTINCT FROM 'automation'
                       AND e.campaign_id IS DISTINCT FROM campaign
                       AND e.sent_at > now() - make_interval(days => silence_days))
             AND NOT EXISTS (SELECT 1 FROM crm.campaigns k WHERE k.campaign_id = campaign AND k.kind = 'automation')
             THEN 'silence_window'
    END
$$;

-- What the sales team has to do, with the customer's name and contact (for a person to query).
CREATE VIEW crm.open_tasks AS
SELECT t.task_id, t.kind, t.due_at, t.title, t.client_code, c.prenom, c.nom, c.telephone, c.email,
       t.rule_id, t.created_at
FROM crm.tasks t LEFT JOIN etl.clients c USING (client_code)
WHERE t.status = 'open'
ORDER BY t.due_at;
COMMENT ON VIEW crm.open_tasks IS 'open follow-up tasks and calls, soonest first, with the customer''s name and phone';

COMMENT ON COLUMN crm.lead_scores.engagement_points IS 'the automation rules'' score changes up to the as-of date (crm.score_changes), summed and capped (scoring.yaml lead_score.engagement_cap)';
COMMENT ON COLUMN crm.lead_scores.engagement_events IS 'how many score changes the rules made up to the as-of date';
