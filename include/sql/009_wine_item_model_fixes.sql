-- 009: the item model as real catalogues write it (issue 9, after 007).
--   * one cuvée however its articles are written: « Riesling », « RIESLING 6 bouteilles »,
--     « Riesling x6 », « Riesling (6 btl) » and « Carton de 6 x 75 cl Riesling » share the key
--     `riesling`; the articles step (score_customers.sql) names each key once;
--   * « Demi-Sec » is a taste, not a half bottle; the catalogue's `contenance` is read on its own
--     before the label; only 150 cl (magnum) and 37.5 cl (demi-bouteille) are named by size, other
--     volumes are written out (a 3 L bag-in-box is not a jéroboam);
--   * French: names that start with their own article (« Les Princes Abbés ») get no other one,
--     colours are pluralised word by word (« les vins blancs secs »), « notre nouveau millésime »
--     only for the newest vintage in stock, a missing offer code or discount is left unsaid;
--   * recommendations say where the customer stands in their scenario by chance to buy.

-- Lower case without French accents (either case), for matching words in labels.
CREATE OR REPLACE FUNCTION crm.fold(t text) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$
    SELECT translate(lower(t), 'àâäáéèêëîïíôöóùûüúçœæÀÂÄÁÉÈÊËÎÏÍÔÖÓÙÛÜÚÇŒÆ',
                     'aaaaeeeeiiiooouuuucoaaaaaeeeeiiiooouuuucoa')
$$;

-- How many units one article holds: « Carton 6 », « Caisse de 12 », « 6 x 75 cl », « x6 »,
-- « 6 bouteilles », « (6 btl) » -> 6; else 1.
CREATE OR REPLACE FUNCTION crm.wine_pack(spec text) RETURNS integer
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$
    SELECT coalesce(
        (regexp_match(f, '(?:carton|caisse|coffret|colis|pack|lot)\s*(?:de\s*)?(\d{1,2})(?!\d|[.,]\d|\s*(?:cl|ml|l)\M)'))[1]::int,
        (regexp_match(f, '\m(\d{1,2})\s*[x×*]\s*(?:\d|bouteille|btl|magnum|demi)'))[1]::int,
        (regexp_match(f, '(?:^|[\s(])[x×]\s*(\d{1,2})(?!\d|[.,]\d|\s*(?:cl|ml|l)\M)'))[1]::int,
        (regexp_match(f, '\m(\d{1,2})\s*(?:bouteilles|btls?|bts|magnums|demi-bouteilles|fillettes|cols)\M'))[1]::int,
        1)
    FROM (SELECT crm.fold(spec) AS f) s
$$;

-- Volume of one unit in centilitres when the text says it: a named format, a volume (« 150 cl »,
-- « 1,5 L », « 50cl »), or a bare number (a `contenance` column: « 75 », « 0,75 »); else NULL.
CREATE FUNCTION crm.wine_volume_cl(spec text) RETURNS numeric
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$
    SELECT CASE
        WHEN f ~ '\mmagnums?\M' THEN 150
        WHEN f ~ '\mjeroboams?\M' THEN 300
        WHEN f ~ '\mrehoboams?\M' THEN 450
        WHEN f ~ '\mmathusalems?\M' THEN 600
        -- « demi-bouteille », « demi », « fillette »; never « demi-sec » or « demi-doux »
        WHEN f ~ '\m(demi-bouteilles?|demi bouteilles?|fillettes?)\M'
          OR f ~ '\mdemis?\M(?![\s-]*(secs?|doux|douces?)\M)' THEN 37.5
        WHEN v.cl BETWEEN 18 AND 1800 THEN v.cl
        WHEN b.n > 0 AND b.n < 10 THEN b.n * 100      -- litres
        WHEN b.n BETWEEN 18 AND 1800 THEN b.n          -- centilitres
    END
    FROM (SELECT crm.fold(spec) AS f) s
    CROSS JOIN LATERAL (SELECT (SELECT replace(m[1], ',', '.')::numeric
                                       * CASE m[2] WHEN 'ml' THEN 0.1 WHEN 'cl' THEN 1 ELSE 100 END
                                FROM regexp_match(f, '(\d+(?:[.,]\d+)?)\s*(cl|ml|l|litres?)\M') AS m) AS cl) v
    CROSS JOIN LATERAL (SELECT (SELECT replace(m[1], ',', '.')::numeric
                                FROM regexp_match(f, '^\s*(\d+(?:[.,]\d+)?)\s*$') AS m) AS n) b
$$;

-- Volume of one unit of an article: what its text says, else an article code ending in -MAG,
-- else a 75 cl bottle.
CREATE OR REPLACE FUNCTION crm.wine_unit_cl(spec text, article text) RETURNS numeric
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$ SELECT coalesce(crm.wine_volume_cl(spec), CASE WHEN article ~* '-MAG$' THEN 150 END, 75) $$;

-- The format in French when it is not a plain 75 cl bottle: « magnum », « demi-bouteille »,
-- « bouteille de 50 cl », « format 3 L », « carton de 6 », « carton de 6 magnums »; NULL for a bottle.
CREATE OR REPLACE FUNCTION crm.wine_format_fr(pack integer, unit_cl numeric) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$
    SELECT CASE WHEN pack > 1 THEN 'carton de ' || pack
                    || CASE unit_cl WHEN 75 THEN '' WHEN 150 THEN ' magnums' WHEN 37.5 THEN ' demi-bouteilles'
                                    ELSE ' × ' || u.volume END
                WHEN unit_cl = 75 THEN NULL
                WHEN unit_cl = 150 THEN 'magnum'
                WHEN unit_cl = 37.5 THEN 'demi-bouteille'
                WHEN unit_cl < 100 THEN 'bouteille de ' || u.volume
                ELSE 'format ' || u.volume END
    FROM (SELECT CASE WHEN unit_cl < 100 THEN trim_scale(unit_cl) || ' cl'
                      ELSE replace(trim_scale(unit_cl / 100)::text, '.', ',') || ' L' END AS volume) u
$$;

-- An article's pack and unit volume as the articles step reads them: the catalogue's
-- `contenance` first, on its own, then the label (and the code) for what it does not say.
CREATE FUNCTION crm.article_pack(contenance text, label text) RETURNS integer
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$ SELECT CASE WHEN crm.wine_pack(contenance) > 1 THEN crm.wine_pack(contenance) ELSE crm.wine_pack(label) END $$;

CREATE FUNCTION crm.article_unit_cl(contenance text, label text, article text) RETURNS numeric
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$ SELECT coalesce(crm.wine_volume_cl(contenance), crm.wine_unit_cl(label, article)) $$;

-- A name without its format and packing words (vintages are kept: « Cuvée 1904 » is a name).
CREATE FUNCTION crm.wine_strip_format(name text) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$
    SELECT btrim(regexp_replace(regexp_replace(regexp_replace(regexp_replace(regexp_replace(regexp_replace(
        regexp_replace(name,
        '\m\d+([.,]\d+)?\s*(cl|ml|l|litres?)\M', ' ', 'gi'),
        '(carton|caisse|coffret|colis|pack|lot)\s*(de\s*)?\d{1,2}(\s*(bouteilles?|btls?|magnums?))?', ' ', 'gi'),
        '\m\d{1,2}\s*[x×*]\s*', ' ', 'gi'),
        '(^|\s|\()[x×]\s*\d{1,2}(?!\d)', ' ', 'gi'),
        '\m\d{1,2}\s*(bouteilles?|btls?|bts|magnums?|demi-bouteilles?|fillettes?|cols?)\M', ' ', 'gi'),
        '\m(magnums?|j[ée]roboams?|r[ée]hoboams?|mathusalems?|demi-bouteilles?|demi bouteilles?|fillettes?|bouteilles?|btls?|bib|bag-in-box)\M|(^|\s)[x×](\s|$)|\(\s*\)',
        ' ', 'gi'),
        '\s+', ' ', 'g'), ' -,/()')
$$;

-- A label without its vintage and format words: « Crémant d'Alsace Brut Magnum » -> « Crémant d'Alsace Brut ».
CREATE OR REPLACE FUNCTION crm.wine_label_cuvee(label text) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$ SELECT nullif(crm.wine_strip_format(regexp_replace(label, '\m(19|20)\d\d\M', ' ', 'g')), '') $$;

-- What makes two cuvée names the same wine: case, accents, punctuation and format words aside.
CREATE FUNCTION crm.wine_cuvee_key(name text) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$ SELECT nullif(btrim(regexp_replace(crm.fold(crm.wine_strip_format(name)), '[^a-z0-9]+', ' ', 'g')), '') $$;

-- A name that starts with its own article (« Le Clos », « La Colline », « Les Princes Abbés »,
-- « L'Ancienne ») takes no other article or possessive.
CREATE FUNCTION crm.has_article(name text) RETURNS boolean
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$ SELECT crm.fold(name) ~ '^(le|la|les)\s|^l[''’]' $$;

-- « le Riesling », « l'Edelzwicker », « la Cuvée Marguerite », « Les Princes Abbés ».
CREATE OR REPLACE FUNCTION crm.le_vin(name text) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$
    SELECT CASE WHEN crm.has_article(name) THEN name
                WHEN name ~ '^[AEIOUYÀÂÄÆÉÈÊËÎÏÔÖŒÙÛÜaeiouyàâäæéèêëîïôöœùûü]' THEN 'l''' || name
                WHEN crm.fold(name) ~ '^cuvee\M' THEN 'la ' || name
                ELSE 'le ' || name END
$$;

-- « notre Riesling », « votre Riesling »; a name with its own article stays as it is.
CREATE FUNCTION crm.possessive(word text, name text) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$ SELECT CASE WHEN crm.has_article(name) THEN name ELSE word || ' ' || name END $$;

-- « votre Riesling préféré », « votre Cuvée Marguerite préférée » (a name with its own article:
-- « Les Princes Abbés, votre vin préféré »).
CREATE FUNCTION crm.votre_prefere(cuvee text) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$
    SELECT CASE WHEN crm.has_article(cuvee) THEN cuvee || ', votre vin préféré'
                WHEN crm.fold(cuvee) ~ '^cuvee\M' THEN 'votre ' || cuvee || ' préférée'
                ELSE 'votre ' || cuvee || ' préféré' END
$$;

-- « rosé » -> « rosés », « Blanc Sec » -> « blancs secs »: every word of three letters or more.
CREATE FUNCTION crm.plural_fr(words text) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$
    SELECT string_agg(CASE WHEN char_length(w) >= 3 AND w !~ '[sxz]$' THEN w || 's' ELSE w END, ' ' ORDER BY i)
    FROM regexp_split_to_table(btrim(lower(words)), '\s+') WITH ORDINALITY AS t(w, i)
$$;

-- The one French reason generator of every scenario (recommend.sql calls it for the kept rows).
--   rank:           the wine's place in the email: the offer and « préféré » are said once, at rank 1.
--   newest_vintage: the newest vintage of the cuvée in stock: « nouveau millésime » only for it.
--   shown:          the article as the customer reads it: its label, plus the vintage and the
--                   format when the label does not already say them.
DROP FUNCTION crm.reason_fr(text, integer, text, text, integer, text, bigint, integer, text, text, text, numeric, text);
CREATE FUNCTION crm.reason_fr(scenario text, rank integer, produit text, cuvee text, millesime integer, format_fr text,
                              orders bigint, last_vintage integer, newest_vintage integer, source_cuvee text,
                              taste text, taste_kind text, discount_pct numeric, offer_code text) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$
    SELECT CASE scenario
        WHEN 'rebuy' THEN
            CASE WHEN last_vintage IS NOT NULL AND millesime > last_vintage AND millesime >= coalesce(newest_vintage, millesime)
                 THEN 'Vous avez apprécié ' || crm.possessive('notre', cuvee) || ' ' || last_vintage || ' : découvrez '
                      || crm.le_vin(s.shown) || ', notre nouveau millésime.'
                 ELSE 'Vous avez apprécié ' || crm.possessive('notre', cuvee)
                      || ' (' || orders || CASE WHEN orders > 1 THEN ' commandes' ELSE ' commande' END || ') : '
                      || CASE WHEN s.shown = cuvee AND NOT crm.has_article(cuvee)
                              THEN CASE WHEN s.feminine THEN 'elle' ELSE 'il' END
                              ELSE crm.le_vin(s.shown) END
                      || ' vous attend à la cave.' END
        WHEN 'winback' THEN
            CASE WHEN rank > 1 THEN
                     CASE WHEN offer_code IS NULL THEN 'Retrouvez aussi ' || crm.le_vin(s.shown) || '.'
                          ELSE 'Le code ' || offer_code || ' vaut aussi pour ' || crm.le_vin(s.shown)
                               || coalesce(' (-' || trim_scale(discount_pct) || ' %)', '') || '.' END
            ELSE 'Vous nous manquez ! '
                 || CASE WHEN discount_pct IS NULL OR offer_code IS NULL THEN 'Retrouvez '
                         ELSE 'Profitez de -' || trim_scale(discount_pct) || ' % sur ' END
                 || CASE WHEN crm.has_article(cuvee) THEN s.shown || ', votre vin préféré,'
                         WHEN s.shown = cuvee THEN crm.votre_prefere(cuvee)
                         -- « votre Riesling préféré (millésime 2023) », « … (2023 Magnum) »
                         WHEN left(s.shown, length(cuvee) + 1) = cuvee || ' '
                             THEN crm.votre_prefere(cuvee) || ' ('
                                  || CASE WHEN substr(s.shown, length(cuvee) + 2) ~ '^\d{4}$' THEN 'millésime ' ELSE '' END
                                  || substr(s.shown, length(cuvee) + 2) || ')'
                         ELSE crm.le_vin(s.shown) || ', ' || crm.votre_prefere(cuvee) || ',' END
                 || CASE WHEN discount_pct IS NULL OR offer_code IS NULL THEN ' à la cave.'
                         ELSE ' avec le code ' || offer_code || '.' END END
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
        END
    FROM (SELECT produit
                 || CASE WHEN millesime IS NOT NULL AND position(millesime::text IN produit) = 0
                         THEN ' ' || millesime ELSE '' END
                 -- the format, unless the label already says one (one pattern: this runs per row)
                 || CASE WHEN format_fr IS NOT NULL AND crm.fold(produit) !~ (
                             '(magnum|jeroboam|rehoboam|mathusalem|carton|caisse|coffret|colis|fillette|bouteilles'
                             || '|demi-bouteille|demi bouteille|\mbtls?\M|\mbib\M|bag-in-box|\d\s*(cl|ml|l|litres?)\M'
                             || '|\d\s*[x×*]\s*\d|(^|[\s(])[x×]\s*\d|^\s*\d+([.,]\d+)?\s*$'
                             || '|\mdemis?\M(?![\s-]*(secs?|doux|douces?)\M))')
                         THEN ' en ' || format_fr ELSE '' END AS shown,
                 crm.fold(cuvee) ~ '^cuvee\M' AS feminine) s
$$;

-- The customer's place in their scenario by chance to buy (1 = the likeliest buyer): the order
-- a campaign takes them in.
ALTER TABLE crm.recommendations ADD COLUMN scenario_rank integer;
COMMENT ON COLUMN crm.recommendations.scenario_rank IS 'the customer''s place among the customers of the same scenario and date, by buy_probability (1 = likeliest to buy); the same on each of their rows';
