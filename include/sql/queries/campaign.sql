-- E-mail campaigns (winecrm/campaigns/): who gets an e-mail, and who must not, checked at render
-- time and again at send time (an unsubscribe can arrive in between).

-- step: recipients
-- Every recommended customer of the week with what the e-mail needs, and the first reason they
-- must not get one (NULL = send). Read by render.py.
SELECT r.client_code, r.scenario, r.is_control, r.scenario_rank, r.buy_probability,
       nullif(btrim(c.prenom), '') AS prenom, nullif(btrim(c.nom), '') AS nom, lower(btrim(c.email)) AS email,
       CASE WHEN r.is_control THEN 'control_group'
            ELSE crm.email_blocked_reason(r.client_code, c.email, %(silence_days)s, %(campaign_id)s) END AS skip_reason,
       jsonb_agg(jsonb_build_object(
           'rank', r.rank, 'article', r.article, 'produit', r.produit, 'cuvee', r.cuvee, 'millesime', r.millesime,
           'format_fr', a.format_fr, 'prix_ttc', p.prix_ttc, 'reason', r.reason_fr, 'offer_code', r.offer_code,
           -- the win-back offer's terms (migration 016): discount, scope, last day, excluded formats, tone
           'offer_discount_pct', r.offer_discount_pct, 'offer_scope', r.offer_scope,
           'offer_ends_on', r.offer_ends_on, 'offer_excludes', r.offer_excludes, 'winback_tone', r.winback_tone)
           ORDER BY r.rank) AS products
FROM crm.recommendations r
LEFT JOIN etl.clients c ON c.client_code = r.client_code
LEFT JOIN crm.articles a ON a.article = r.article
LEFT JOIN etl.produits p ON p.article = r.article
WHERE r.as_of_date = %(as_of)s
  -- erased on request (GDPR, crm.erasures): not in any audience, whatever an older run left
  AND NOT EXISTS (SELECT 1 FROM crm.erased_clients e WHERE e.client_code = r.client_code)
GROUP BY r.client_code, r.scenario, r.is_control, r.scenario_rank, r.buy_probability, c.prenom, c.nom, c.email
ORDER BY r.scenario, r.scenario_rank, r.client_code;
