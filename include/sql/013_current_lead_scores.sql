-- 013: the current lead score of many customers at once (issue 18's backlog benchmark: computed
-- per event, crm.current_lead_score read the latest weekly score through the primary key
-- (as_of_date, client_code), which does not lead with the customer: a scan per event). The
-- single-customer function now reads the set version: one formula.

CREATE FUNCTION crm.current_lead_scores(clients text[], engagement_cap numeric DEFAULT 20)
RETURNS TABLE (client_code text, score numeric)
LANGUAGE sql STABLE PARALLEL SAFE
AS $$
    WITH who AS (SELECT DISTINCT c AS client_code FROM unnest(clients) AS u(c) WHERE c IS NOT NULL),
    latest AS (
        SELECT DISTINCT ON (ls.client_code) ls.client_code, ls.raw_score, ls.engagement_points
        FROM crm.lead_scores ls JOIN who USING (client_code)
        ORDER BY ls.client_code, ls.as_of_date DESC),
    changes AS (
        SELECT sc.client_code, sum(sc.delta) AS points
        FROM crm.score_changes sc JOIN who USING (client_code) GROUP BY 1)
    SELECT l.client_code,
           round(greatest(0, least(100, l.raw_score - l.engagement_points
                                        + least(engagement_cap, coalesce(c.points, 0))))::numeric, 1)
    FROM latest l LEFT JOIN changes c USING (client_code)
$$;
COMMENT ON FUNCTION crm.current_lead_scores(text[], numeric) IS 'the lead score now of each customer given: the latest weekly score with its engagement points replaced by the rules'' score changes so far (capped like the weekly score)';

CREATE OR REPLACE FUNCTION crm.current_lead_score(client text, engagement_cap numeric DEFAULT 20)
RETURNS numeric
LANGUAGE sql STABLE PARALLEL SAFE
AS $$
    SELECT s.score FROM crm.current_lead_scores(ARRAY[client], engagement_cap) s
$$;

CREATE INDEX lead_scores_client ON crm.lead_scores (client_code, as_of_date DESC);
CREATE INDEX rfm_scores_client ON crm.rfm_scores (client_code, as_of_date DESC);
