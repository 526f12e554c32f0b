-- 016: offers a merchant would sign.
--   * a win-back offer has one scope (the whole next order, or the wines named), an end date and
--     its exclusions (formats), stored beside the recommendation for the e-mail to show; a
--     customer gone for years gets a softer word and no discount (recommendations.winback_* in
--     scoring.yaml);
--   * the vintage proposed is the newest in stock; when a newer one is sold out, the reason says
--     that this is the newest (or the last) vintage left in the cellar;
--   * reasons follow the estate's French typography (no-break spaces before « : ; ! ? % € »),
--     never show an order count, and « découvrir » only a wine new to the customer.

ALTER TABLE crm.recommendations
    ADD COLUMN offer_discount_pct numeric(5, 2),
    ADD COLUMN offer_scope        text CHECK (offer_scope IN ('order', 'wines')),
    ADD COLUMN offer_ends_on      date,
    ADD COLUMN offer_excludes     text,
    ADD COLUMN winback_tone       text CHECK (winback_tone IN ('offer', 'soft'));
COMMENT ON COLUMN crm.recommendations.offer_discount_pct IS 'win-back: the discount (%) offer_code gives; NULL without an offer';
COMMENT ON COLUMN crm.recommendations.offer_scope IS 'win-back: what the offer covers: order (the whole next order) or wines (the wines named in the e-mail); NULL without an offer';
COMMENT ON COLUMN crm.recommendations.offer_ends_on IS 'win-back: the last day the offer code is valid (as_of_date + recommendations.winback_offer_valid_days); NULL without an offer';
COMMENT ON COLUMN crm.recommendations.offer_excludes IS 'win-back: the formats the offer does not cover, in French (« magnums et cartons »); NULL: none';
COMMENT ON COLUMN crm.recommendations.winback_tone IS 'win-back: offer (a code and its terms) or soft (gone longer than recommendations.winback_soft_after_days: no code, no discount); NULL for other scenarios';

-- French typography of a sentence: a no-break space before « : » and between a number and « % »
-- or « € », a narrow no-break space before « ; ! ? » (FRENCH-COPY.md).
CREATE FUNCTION crm.typo_fr(t text) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$
    SELECT regexp_replace(regexp_replace(regexp_replace(t,
        ' :', U&'\00A0:', 'g'),
        ' ([;!?])', U&'\202F' || '\1', 'g'),
        '(\d) ([%€])', '\1' || U&'\00A0' || '\2', 'g')
$$;

-- A date in running French text: « 1er décembre 2026 », « 31 décembre 2026 ».
CREATE FUNCTION crm.date_fr(d date) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$
    SELECT CASE extract(day FROM d)::int WHEN 1 THEN '1er' ELSE extract(day FROM d)::int::text END || ' '
           || (ARRAY['janvier', 'février', 'mars', 'avril', 'mai', 'juin', 'juillet', 'août', 'septembre',
                     'octobre', 'novembre', 'décembre'])[extract(month FROM d)::int] || ' ' || extract(year FROM d)::int
$$;

-- The one French reason generator of every scenario (recommend.sql calls it for the kept rows).
--   rank:              the wine's place in the email: the offer and « préféré » are said once, at rank 1.
--   newest_vintage:    the newest vintage of the cuvée in stock: « nouveau millésime » only for it.
--   newest_known:      the newest vintage of the cuvée the estate has made (sold out or not): a
--                      wine older than it says it is the newest (or the last) one left in the cellar.
--   vintages_in_stock: how many vintages of the cuvée are in stock (1: « le dernier »).
--   offer_scope:       order (the whole next order) or wines (the wines named); offer_ends_on the
--                      offer's last day; offer_excludes the formats it leaves out (« magnums et cartons »).
--   soft:              win-back to a customer gone for years: no code, no discount, a quiet word.
--   shown:             the article as the customer reads it: its label, plus the vintage and the
--                      format when the label does not already say them.
DROP FUNCTION crm.reason_fr(text, integer, text, text, integer, text, bigint, integer, integer, text, text, text,
                            numeric, text);
CREATE FUNCTION crm.reason_fr(scenario text, rank integer, produit text, cuvee text, millesime integer, format_fr text,
                              orders bigint, last_vintage integer, newest_vintage integer, source_cuvee text,
                              taste text, taste_kind text, discount_pct numeric, offer_code text,
                              newest_known integer DEFAULT NULL, vintages_in_stock integer DEFAULT NULL,
                              offer_scope text DEFAULT 'wines', offer_ends_on date DEFAULT NULL,
                              offer_excludes text DEFAULT NULL, soft boolean DEFAULT false) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$
    SELECT crm.typo_fr(CASE scenario
        WHEN 'rebuy' THEN
            'Vous avez apprécié ' || crm.possessive('notre', cuvee)
            || CASE WHEN last_vintage IS NOT NULL AND millesime > last_vintage
                         AND millesime >= greatest(newest_vintage, newest_known, millesime)
                    THEN ' ' || last_vintage || ' : ' || crm.le_vin(s.shown) || ', notre nouveau millésime,'
                    ELSE ' : ' || CASE WHEN s.shown = cuvee AND NOT crm.has_article(cuvee)
                                       THEN CASE WHEN s.feminine THEN 'elle' ELSE 'il' END
                                       ELSE crm.le_vin(s.shown) END END
            || ' vous attend à la cave.' || s.vintage_note
        WHEN 'winback' THEN
            CASE WHEN rank > 1 THEN
                     CASE WHEN NOT s.offer OR offer_scope = 'order' THEN 'Retrouvez aussi ' || crm.le_vin(s.shown) || '.'
                          ELSE 'Le code ' || offer_code || ' vaut aussi pour ' || crm.le_vin(s.shown)
                               || ' (-' || trim_scale(discount_pct) || ' %).' END
                 WHEN NOT s.offer THEN s.favourite || ' vous attend toujours à la cave.'
                 WHEN offer_scope = 'order' THEN
                     s.favourite || ' vous attend à la cave : avec le code ' || offer_code || ', profitez de -'
                     || trim_scale(discount_pct) || ' % sur toute votre prochaine commande' || s.terms || '.'
                 ELSE 'Profitez de -' || trim_scale(discount_pct) || ' % sur ' || s.favourite_in
                      || ' avec le code ' || offer_code || s.terms || '.' END
            || CASE WHEN rank = 1 THEN s.vintage_note ELSE '' END
        ELSE  -- cross_sell: a cuvée the customer has never bought
            -- (cuvée names are canonical in crm.articles: one name per wine, compared as they are)
            CASE WHEN source_cuvee IS NOT NULL AND source_cuvee <> cuvee
                     THEN 'Parce que vous avez aimé ' || crm.possessive('notre', source_cuvee) || ', nous pensons que '
                          || crm.le_vin(s.shown) || ' vous plaira.'
                 WHEN taste_kind = 'grape' AND taste IS NOT NULL
                     THEN 'Vous aimez ' || crm.le_vin(taste) || ' : découvrez ' || crm.possessive('notre', s.shown) || '.'
                 WHEN taste_kind = 'colour' AND taste IS NOT NULL
                     THEN 'Vous aimez les vins ' || crm.plural_fr(taste)
                          || ' : découvrez ' || crm.possessive('notre', s.shown) || '.'
                 ELSE 'Une découverte pour vous : ' || crm.possessive('notre', s.shown) || '.' END
            || s.vintage_note
        END)
    FROM (SELECT s0.*,
                 upper(left(s0.favourite_in, 1)) || substr(s0.favourite_in, 2) AS favourite,
                 -- the offer's terms: « (hors magnums et cartons), jusqu'au 31 décembre 2026 »
                 coalesce(' (hors ' || nullif(offer_excludes, '') || ')', '')
                 || coalesce(', jusqu''au ' || crm.date_fr(offer_ends_on), '') AS terms
          FROM (SELECT shown,
                 crm.fold(cuvee) ~ '^cuvee\M' AS feminine,
                 NOT coalesce(soft, false) AND offer_code IS NOT NULL AND discount_pct IS NOT NULL AS offer,
                 -- « votre Riesling préféré (millésime 2023) », « … (2023 Magnum) »
                 CASE WHEN crm.has_article(cuvee) THEN shown || ', votre vin préféré,'
                      WHEN shown = cuvee THEN crm.votre_prefere(cuvee)
                      WHEN left(shown, length(cuvee) + 1) = cuvee || ' '
                          THEN crm.votre_prefere(cuvee) || ' ('
                               || CASE WHEN substr(shown, length(cuvee) + 2) ~ '^\d{4}$' THEN 'millésime ' ELSE '' END
                               || substr(shown, length(cuvee) + 2) || ')'
                      ELSE crm.le_vin(shown) || ', ' || crm.votre_prefere(cuvee) || ',' END AS favourite_in,
                 -- an older vintage than the estate's newest is proposed only when that one is sold out: say so
                 CASE WHEN millesime IS NOT NULL AND newest_known > millesime
                      THEN ' Le millésime ' || millesime || ' est '
                           || CASE WHEN vintages_in_stock = 1 THEN 'le dernier' ELSE 'le plus récent' END
                           || ' qu''il nous reste en cave.'
                      ELSE '' END AS vintage_note
                FROM (SELECT produit
                         || CASE WHEN millesime IS NOT NULL AND position(millesime::text IN produit) = 0
                                 THEN ' ' || millesime ELSE '' END
                         -- the format, unless the label already says one (one pattern: this runs per row)
                         || CASE WHEN format_fr IS NOT NULL AND crm.fold(produit) !~ (
                                     '(magnum|jeroboam|rehoboam|mathusalem|carton|caisse|coffret|colis|fillette|bouteilles'
                                     || '|demi-bouteille|demi bouteille|\mbtls?\M|\mbib\M|bag-in-box|\d\s*(cl|ml|l|litres?)\M'
                                     || '|\d\s*[x×*]\s*\d|(^|[\s(])[x×]\s*\d|^\s*\d+([.,]\d+)?\s*$'
                                     || '|\mdemis?\M(?![\s-]*(secs?|doux|douces?)\M))')
                                 THEN ' en ' || format_fr ELSE '' END AS shown) s00) s0) s
$$;
