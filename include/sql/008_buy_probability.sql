-- 008: a calibrated chance to buy (issue 9, point 4), stored beside the lead score (which keeps
-- the estate's formula). Per customer and as of a date: the probability of ordering within the
-- next horizon_days and the revenue it is worth, fitted on the estate's own history
-- (winecrm/crm/propensity.py). Rerunning a date replaces its rows.

CREATE TABLE crm.buy_probabilities (
    as_of_date          date NOT NULL,
    client_code         text NOT NULL,
    horizon_days        integer NOT NULL CHECK (horizon_days > 0),
    probability         numeric(6, 5) NOT NULL CHECK (probability BETWEEN 0 AND 1),
    expected_revenue_ht numeric(12, 2) NOT NULL,     -- probability x usual spend in a horizon with an order
    method              text NOT NULL CHECK (method IN ('logistic', 'prior')),
    computed_run        text NOT NULL,
    PRIMARY KEY (as_of_date, client_code)
);
COMMENT ON TABLE crm.buy_probabilities IS 'chance that the customer orders in (as_of_date, as_of_date + horizon_days], fitted on sales dated <= as_of_date only; crm.buy_probability_models says how';
COMMENT ON COLUMN crm.buy_probabilities.expected_revenue_ht IS 'probability x the customer''s mean net spend (EUR HT) in the past horizon-long windows in which they ordered';
COMMENT ON COLUMN crm.buy_probabilities.method IS 'logistic: the model fitted on past cutoffs; prior: too little history, the buy rate of the customer''s recency x frequency group (or a configured default)';

-- One row per date: what the probabilities of that date were fitted on, for explainability.
CREATE TABLE crm.buy_probability_models (
    as_of_date          date PRIMARY KEY,
    horizon_days        integer NOT NULL,
    method              text NOT NULL CHECK (method IN ('logistic', 'prior')),
    training_cutoffs    date[] NOT NULL,             -- newest first; each one's outcome window ended by as_of_date
    examples            integer NOT NULL,            -- customer x cutoff pairs
    buyers              integer NOT NULL,            -- examples that ordered in their window
    features            text[],                      -- the model's inputs (logistic only)
    model               jsonb NOT NULL,              -- coefficients per feature unit + calibration, or the prior's rates
    customers           integer NOT NULL,
    mean_probability    numeric(6, 5),
    expected_buyers     numeric(12, 1),              -- sum of the probabilities
    expected_revenue_ht numeric(14, 2),
    computed_run        text NOT NULL,
    computed_at         timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE crm.buy_probability_models IS 'how each date''s buy probabilities were obtained: training cutoffs, examples, buyers, coefficients';
