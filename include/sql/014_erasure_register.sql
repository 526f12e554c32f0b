-- 014: the register of GDPR erasures (winecrm/privacy/). An erasure keeps the client code on
-- the sales lines (revenue stays, anonymously) and only a hash of the address in
-- crm.suppressions; without a record of WHO was erased, the next weekly scoring profiled the
-- client code again (customer 360, RFM, lead score, chance to buy, recommendations) and the next
-- ERP export brought the person back. This register is that record: the scoring, the
-- recommendations, the campaign audience, the events DAG and the load skip or re-anonymise
-- what it names. It holds no address: client codes and 'erased:<sha256>' markers only.

CREATE TABLE crm.erasures (
    erasure_id        bigserial PRIMARY KEY,
    erased_at         timestamptz NOT NULL DEFAULT now(),
    source            text NOT NULL,                 -- privacy_erase | load:<run_id> (a new client code an export gave an erased address) | suppressions (before 014)
    client_codes      text[] NOT NULL DEFAULT '{}',  -- the customer records erased
    markers           text[] NOT NULL DEFAULT '{}'   -- 'erased:' || sha256(lower(btrim(address))) of each address
);
CREATE INDEX erasures_client_codes ON crm.erasures USING gin (client_codes);
CREATE INDEX erasures_markers ON crm.erasures USING gin (markers);
COMMENT ON TABLE crm.erasures IS 'GDPR erasures (python -m winecrm.privacy erase), kept as proof and as the guard: scoring, recommendations, campaigns and events skip these client codes; the load re-anonymises them (and any record an export brings back with one of these address markers)';
COMMENT ON COLUMN crm.erasures.markers IS 'erased:<sha256 of the lower-cased, trimmed address>, as in crm.suppressions: the address itself is not kept';

-- One row per erased client code, what the SQL paths join with.
CREATE VIEW crm.erased_clients AS
SELECT DISTINCT ON (c.client_code) c.client_code, e.erased_at, e.erasure_id
FROM crm.erasures e CROSS JOIN LATERAL unnest(e.client_codes) AS c(client_code)
ORDER BY c.client_code, e.erased_at;
COMMENT ON VIEW crm.erased_clients IS 'every erased client code (first erasure): skipped by scoring, recommendations, campaigns and events';

-- Erasures done before this register: their address markers are in crm.suppressions (their
-- client codes were not recorded anywhere; the load still matches them by address).
INSERT INTO crm.erasures (source, erased_at, markers)
SELECT 'suppressions (before 014)', min(created_at), array_agg(email ORDER BY email)
FROM crm.suppressions WHERE reason = 'erased' AND email LIKE 'erased:%'
HAVING count(*) > 0;
