-- 002: customer scoring as of a date — customer 360, RFM + segment, lead score (with components).
-- Every table keeps one row per customer per as_of_date: a backfill for an old week adds or
-- replaces that week's rows and leaves the others alone.

-- Addresses that must never be emailed (unsubscribed, hard bounce, spam complaint, erased).
CREATE TABLE crm.suppressions (
    email             text PRIMARY KEY,              -- lower-cased
    reason            text NOT NULL CHECK (reason IN ('unsubscribed', 'hard_bounce', 'spam', 'erased',
                                                      'invalid_email', 'manual')),
    source            text NOT NULL,                 -- 'brevo_webhook', 'isavigne_opt_out', 'manual', ...
    created_at        timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE crm.customer_360 (
    as_of_date        date NOT NULL,
    client_code       text NOT NULL,
    first_purchase    date,
    last_purchase     date,
    orders            integer NOT NULL,              -- distinct sales documents (credit notes excluded)
    bottles           numeric(14, 2) NOT NULL,       -- 75 cl equivalents, net of credit notes
    revenue_ht        numeric(14, 2) NOT NULL,       -- net of credit notes
    avg_basket_ht     numeric(14, 2),                -- revenue_ht / orders
    favourite_family  text,                          -- most revenue, ties by name
    favourite_grape   text,
    favourite_colour  text,
    families_bought   integer NOT NULL,              -- diversity: distinct families bought
    typical_days_between_orders numeric(10, 1),      -- median gap between consecutive orders
    email             text,
    email_valid       boolean,
    opted_out         boolean NOT NULL,
    suppressed        boolean NOT NULL,              -- in crm.suppressions
    computed_run      text NOT NULL,
    computed_at       timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (as_of_date, client_code)
);

CREATE TABLE crm.rfm_scores (
    as_of_date        date NOT NULL,
    client_code       text NOT NULL,
    recency_days      integer NOT NULL,              -- as_of_date - last purchase
    frequency         integer NOT NULL,              -- orders
    monetary          numeric(14, 2) NOT NULL,       -- revenue_ht
    r_score           smallint NOT NULL CHECK (r_score BETWEEN 1 AND 4),
    f_score           smallint NOT NULL CHECK (f_score BETWEEN 1 AND 4),
    m_score           smallint NOT NULL CHECK (m_score BETWEEN 1 AND 4),
    rfm_score         numeric(4, 2) NOT NULL,        -- mean of the three, 1–4
    segment           text NOT NULL CHECK (segment IN ('VIP', 'Standard', 'At Risk', 'Churn')),
    computed_run      text NOT NULL,
    PRIMARY KEY (as_of_date, client_code)
);
CREATE INDEX rfm_scores_segment ON crm.rfm_scores (as_of_date, segment);

-- Lead score 0–100 with every component, so a person can see why a customer has their score.
CREATE TABLE crm.lead_scores (
    as_of_date        date NOT NULL,
    client_code       text NOT NULL,
    base_points       smallint NOT NULL,
    rfm_points        numeric(5, 1) NOT NULL,        -- +10 per RFM point, max +40
    engagement_points smallint NOT NULL,             -- +2 per engagement event, max +20
    engagement_events integer NOT NULL,
    purchase_points   smallint NOT NULL,             -- +5 per purchase, max +25
    recency_penalty   smallint NOT NULL,             -- 0 / -5 / -15 / -30
    raw_score         numeric(6, 1) NOT NULL,        -- before clamping
    score             numeric(5, 1) NOT NULL CHECK (score BETWEEN 0 AND 100),
    computed_run      text NOT NULL,
    PRIMARY KEY (as_of_date, client_code)
);

-- Co-purchase between items, at customer level (bought both, ever, as of the date): for a
-- winery single baskets are sparse, so articles, families and grapes are all kept. Both
-- directions are stored because confidence is not symmetric. Ranking uses Jaccard, never raw
-- lift (lift favours rare items).
CREATE TABLE crm.product_affinity (
    as_of_date        date NOT NULL,
    level             text NOT NULL CHECK (level IN ('article', 'family', 'grape')),
    item_a            text NOT NULL,
    item_b            text NOT NULL,
    customers_a       integer NOT NULL,              -- customers who bought item_a
    customers_b       integer NOT NULL,
    customers_both    integer NOT NULL,
    support           numeric(8, 6) NOT NULL,        -- customers_both / customers with any purchase
    confidence        numeric(8, 6) NOT NULL,        -- P(b | a) = customers_both / customers_a
    jaccard           numeric(8, 6) NOT NULL,        -- customers_both / (customers_a + customers_b - customers_both)
    computed_run      text NOT NULL,
    PRIMARY KEY (as_of_date, level, item_a, item_b)
);
CREATE INDEX product_affinity_rank ON crm.product_affinity (as_of_date, level, item_a, jaccard DESC);
