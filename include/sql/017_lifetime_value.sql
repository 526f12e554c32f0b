-- 017: the chance to buy for small and young estates, and what each customer may spend next
-- (issue 21). A history too short or too small for the logistic model now gets the BG/NBD
-- model of repeat buying (winecrm/crm/lifetime.py), fitted on the estate's own customers:
-- never a fixed default rate. Beside the probability: each customer's expected net spend over
-- the next 12 months with its 80 % interval (BG/NBD + Gamma-Gamma, simulated from each
-- customer's posterior), and for the date as a whole an interval on the expected buyers.

ALTER TABLE crm.buy_probabilities DROP CONSTRAINT buy_probabilities_method_check;
ALTER TABLE crm.buy_probabilities ADD CONSTRAINT buy_probabilities_method_check
    CHECK (method IN ('logistic', 'bgnbd', 'prior'));
ALTER TABLE crm.buy_probabilities
    ADD COLUMN p_alive numeric(6, 5) CHECK (p_alive BETWEEN 0 AND 1),
    ADD COLUMN spend_12m_ht numeric(12, 2),
    ADD COLUMN spend_12m_low_ht numeric(12, 2),
    ADD COLUMN spend_12m_high_ht numeric(12, 2),
    ADD CONSTRAINT buy_probabilities_spend_interval CHECK (spend_12m_low_ht <= spend_12m_high_ht);
COMMENT ON COLUMN crm.buy_probabilities.method IS 'logistic: the model fitted on past cutoffs; bgnbd: too little history for it (fewer than min_training_cutoffs cutoffs, examples or buyers), the BG/NBD chance blended with the mean chance of the customer''s RFM quintile-sum group; prior: rows written before migration 017';
COMMENT ON COLUMN crm.buy_probabilities.p_alive IS 'BG/NBD: the chance the customer still buys from the estate at all';
COMMENT ON COLUMN crm.buy_probabilities.spend_12m_ht IS 'expected net spend (EUR HT) over the 12 months after as_of_date (BG/NBD + Gamma-Gamma)';
COMMENT ON COLUMN crm.buy_probabilities.spend_12m_low_ht IS 'lower end of the 80 % interval of that spend (0 when a year without an order is likely enough)';
COMMENT ON COLUMN crm.buy_probabilities.spend_12m_high_ht IS 'upper end of the 80 % interval of that spend';

ALTER TABLE crm.buy_probability_models DROP CONSTRAINT buy_probability_models_method_check;
ALTER TABLE crm.buy_probability_models ADD CONSTRAINT buy_probability_models_method_check
    CHECK (method IN ('logistic', 'bgnbd', 'prior'));
ALTER TABLE crm.buy_probability_models
    ADD COLUMN expected_buyers_low numeric(12, 1),
    ADD COLUMN expected_buyers_high numeric(12, 1),
    ADD COLUMN spend_12m_ht numeric(14, 2),
    ADD COLUMN spend_12m_low_ht numeric(14, 2),
    ADD COLUMN spend_12m_high_ht numeric(14, 2),
    ADD COLUMN lifetime_model jsonb;
COMMENT ON COLUMN crm.buy_probability_models.expected_buyers_low IS 'lower end of the 80 % interval of the number of buyers in the horizon: customers'' own chance and, on small estates, the model''s (refits on resampled customers)';
COMMENT ON COLUMN crm.buy_probability_models.spend_12m_ht IS 'the customers'' expected net spend over the next 12 months, summed (EUR HT)';
COMMENT ON COLUMN crm.buy_probability_models.spend_12m_low_ht IS 'lower end of the 80 % interval of the estate''s total (simulated jointly)';
COMMENT ON COLUMN crm.buy_probability_models.lifetime_model IS 'BG/NBD (r, alpha, a, b; weeks) and Gamma-Gamma (p, q, gamma) parameters';
