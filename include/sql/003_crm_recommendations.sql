-- 003: recommendations as of a date, the customers left out (with the reason), and the email
-- log the silence window reads (filled by the sending step of a later issue).

CREATE TABLE crm.email_sends (
    send_id           bigserial PRIMARY KEY,
    client_code       text NOT NULL,
    email             text NOT NULL,
    scenario          text,
    as_of_date        date,                          -- the recommendation week the email came from
    status            text NOT NULL DEFAULT 'sent',  -- sent | dry_run | failed
    sent_at           timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX email_sends_client ON crm.email_sends (client_code, sent_at);

CREATE TABLE crm.recommendations (
    as_of_date        date NOT NULL,
    client_code       text NOT NULL,
    rank              smallint NOT NULL CHECK (rank BETWEEN 1 AND 10),
    scenario          text NOT NULL CHECK (scenario IN ('cross_sell', 'rebuy', 'winback')),
    segment           text NOT NULL,
    article           text NOT NULL,
    produit           text,
    score             numeric(10, 4) NOT NULL,       -- comparable within a scenario only
    reason_fr         text NOT NULL,                 -- shown to the customer and to the estate
    offer_code        text,                          -- win-back only
    is_control        boolean NOT NULL,              -- held out: recorded, never emailed
    computed_run      text NOT NULL,
    PRIMARY KEY (as_of_date, client_code, rank)
);

CREATE TABLE crm.recommendation_exclusions (
    as_of_date        date NOT NULL,
    client_code       text NOT NULL,
    segment           text NOT NULL,
    scenario          text NOT NULL,
    reason            text NOT NULL CHECK (reason IN ('invalid_email', 'suppressed', 'opted_out', 'silence_window',
                                                      'winback_min_revenue', 'no_candidate')),
    computed_run      text NOT NULL,
    PRIMARY KEY (as_of_date, client_code)
);
