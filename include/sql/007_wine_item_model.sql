-- 007: the wine-aware item model (issue 9). A cuvée is the wine ("Riesling Grand Cru
-- Schlossberg"); an article is a cuvée in one vintage and one format (bottle, magnum, case of N).
-- Recommendations pick cuvées and then the best article of each; the backtest judges cuvées.
--
-- Where the cuvée comes from, first found wins (README, "The item model"):
--   1. the catalogue's `cuvee` column, when the export has one;
--   2. its `famille_crm` (what iSaVigne exports calls the wine today);
--   3. the product label without its vintage and format ("Riesling 2023 Carton 6" -> "Riesling");
--   4. the article code itself (each article its own cuvée: Instacart, CDNOW).
-- The format comes from the catalogue's `contenance` column, else from the label.

ALTER TABLE etl.produits ADD COLUMN cuvee text, ADD COLUMN contenance text;

-- Lower case without French accents, for matching words in labels.
CREATE FUNCTION crm.fold(t text) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$ SELECT translate(lower(t), 'àâäáéèêëîïíôöóùûüúçœæ', 'aaaaeeeeiiiooouuuucoa') $$;

-- How many units one article holds: "Carton 6", "Caisse de 12", "6 x 75 cl" -> 6; else 1.
CREATE FUNCTION crm.wine_pack(spec text) RETURNS integer
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$
    SELECT coalesce(
        (regexp_match(crm.fold(spec), '(?:carton|caisse|coffret|colis|pack|lot)\s*(?:de\s*)?(\d{1,2})(?!\d|\s*(?:cl|ml|l)\M)'))[1]::int,
        (regexp_match(crm.fold(spec), '\m(\d{1,2})\s*[x×]\s*(?:\d|bouteille|btl|magnum|demi)'))[1]::int,
        1)
$$;

-- Volume of one unit in centilitres: named formats, then a volume written in the label
-- ("150 cl", "1,5 L", "50cl"), then an article code ending in -MAG; else a 75 cl bottle.
CREATE FUNCTION crm.wine_unit_cl(spec text, article text) RETURNS numeric
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$
    SELECT CASE
        WHEN crm.fold(spec) ~ '\mmagnums?\M' THEN 150
        WHEN crm.fold(spec) ~ '\mjeroboams?\M' THEN 300
        WHEN crm.fold(spec) ~ '\mrehoboams?\M' THEN 450
        WHEN crm.fold(spec) ~ '\mmathusalems?\M' THEN 600
        WHEN crm.fold(spec) ~ '\m(demi-bouteilles?|demi bouteilles?|demis?|fillettes?)\M' THEN 37.5
        WHEN v.cl BETWEEN 18 AND 1800 THEN v.cl
        WHEN article ~* '-MAG$' THEN 150
        ELSE 75 END
    FROM (SELECT (SELECT replace(m[1], ',', '.')::numeric * CASE m[2] WHEN 'ml' THEN 0.1 WHEN 'cl' THEN 1 ELSE 100 END
                  FROM regexp_match(crm.fold(spec), '(\d+(?:[.,]\d+)?)\s*(cl|ml|l|litres?)\M') AS m) AS cl) v
$$;

-- The format in French when it is not a plain 75 cl bottle: « magnum », « carton de 6 »,
-- « carton de 6 magnums », « bouteille de 50 cl »; NULL for a bottle.
CREATE FUNCTION crm.wine_format_fr(pack integer, unit_cl numeric) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$
    SELECT CASE WHEN pack > 1 THEN 'carton de ' || pack || CASE WHEN unit_cl = 75 THEN '' ELSE ' ' || u.plural END
                WHEN unit_cl <> 75 THEN u.singular END
    FROM (SELECT CASE unit_cl WHEN 150 THEN 'magnum' WHEN 300 THEN 'jéroboam' WHEN 450 THEN 'réhoboam'
                              WHEN 600 THEN 'mathusalem' WHEN 37.5 THEN 'demi-bouteille'
                              ELSE 'bouteille de ' || trim_scale(unit_cl) || ' cl' END AS singular,
                 CASE unit_cl WHEN 150 THEN 'magnums' WHEN 300 THEN 'jéroboams' WHEN 450 THEN 'réhoboams'
                              WHEN 600 THEN 'mathusalems' WHEN 37.5 THEN 'demi-bouteilles'
                              WHEN 75 THEN 'bouteilles'
                              ELSE 'bouteilles de ' || trim_scale(unit_cl) || ' cl' END AS plural) u
$$;

-- A label without its vintage and format words: "Crémant d'Alsace Brut Magnum" -> "Crémant d'Alsace Brut".
CREATE FUNCTION crm.wine_label_cuvee(label text) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$
    SELECT nullif(btrim(regexp_replace(regexp_replace(regexp_replace(regexp_replace(regexp_replace(label,
        '\m(19|20)\d\d\M', ' ', 'g'),
        '(carton|caisse|coffret|colis|pack|lot)\s*(de\s*)?\d{1,2}(\s*(bouteilles?|btl|magnums?))?', ' ', 'gi'),
        '\m\d{1,2}\s*[x×]\s*', ' ', 'gi'),
        '(\m\d+([.,]\d+)?\s*(cl|ml|l|litres?)\M)|\m(magnums?|j[ée]roboams?|r[ée]hoboams?|mathusalems?|demi-bouteilles?|demi bouteilles?|fillettes?|bouteilles?|btl)\M', ' ', 'gi'),
        '\s+', ' ', 'g'), ' -,/()'), '')
$$;

CREATE FUNCTION crm.wine_cuvee(cuvee text, famille_crm text, label text, article text) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$ SELECT coalesce(nullif(btrim(cuvee), ''), nullif(btrim(famille_crm), ''), crm.wine_label_cuvee(label), article) $$;

-- Every article the warehouse knows (catalogue, sales, stock) as the item model sees it.
-- Rebuilt by each scoring run (score_customers.sql, step `articles`) from the current catalogue.
CREATE TABLE crm.articles (
    article           text PRIMARY KEY,
    produit           text NOT NULL,                 -- the label as the estate writes it
    cuvee             text NOT NULL,
    cuvee_from        text NOT NULL CHECK (cuvee_from IN ('cuvee', 'famille_crm', 'label', 'article')),
    millesime         integer,                       -- NULL: non-vintage
    pack              integer NOT NULL,              -- units in one article (case of N)
    unit_cl           numeric(6, 1) NOT NULL,        -- volume of one unit
    bottles           numeric(8, 2) NOT NULL,        -- 75 cl equivalents
    format_fr         text,                          -- NULL for a 75 cl bottle
    taste             text,                          -- grape, else colour: the taste profile's unit
    taste_kind        text CHECK (taste_kind IN ('grape', 'colour')),
    in_catalogue      boolean NOT NULL,
    computed_run      text NOT NULL
);
CREATE INDEX articles_cuvee ON crm.articles (cuvee);

-- What a recommendation names: the cuvée, the vintage proposed, the cuvée it came from.
ALTER TABLE crm.recommendations ADD COLUMN cuvee text, ADD COLUMN millesime integer, ADD COLUMN source_cuvee text,
    -- the customer's chance to buy in the horizon (crm.buy_probabilities, migration 008): what
    -- orders customers within a scenario and how many buyers a campaign can expect
    ADD COLUMN buy_probability numeric(6, 5);

-- « le Riesling », « l'Edelzwicker », and « la Cuvée Marguerite »: a name that starts with
-- « Cuvée » is feminine (replaces 006's version).
CREATE OR REPLACE FUNCTION crm.le_vin(name text) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$
    SELECT CASE WHEN name ~ '^[AEIOUYÀÂÄÆÉÈÊËÎÏÔÖŒÙÛÜaeiouyàâäæéèêëîïôöœùûü]' THEN 'l''' || name
                WHEN crm.fold(name) ~ '^cuvee\M' THEN 'la ' || name
                ELSE 'le ' || name END
$$;

-- The one French reason generator of every scenario (recommend.sql calls it for the kept rows).
--   rank:  the wine's place in the email: the offer and « préféré » are said once, at rank 1.
--   shown: the article as the customer reads it: its label, plus the vintage and the format
--          when the label does not already say them.
CREATE FUNCTION crm.reason_fr(scenario text, rank integer, produit text, cuvee text, millesime integer, format_fr text,
                              orders bigint, last_vintage integer, source_cuvee text, taste text,
                              taste_kind text, discount_pct numeric, offer_code text) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$
    SELECT CASE scenario
        WHEN 'rebuy' THEN
            CASE WHEN last_vintage IS NOT NULL AND millesime > last_vintage
                 THEN 'Vous avez apprécié notre ' || cuvee || ' ' || last_vintage || ' : découvrez '
                      || crm.le_vin(s.shown) || ', notre nouveau millésime.'
                 ELSE 'Vous avez apprécié notre ' || cuvee
                      || ' (' || orders || CASE WHEN orders > 1 THEN ' commandes' ELSE ' commande' END || ') : '
                      || CASE WHEN s.shown = cuvee THEN CASE WHEN s.feminine THEN 'elle' ELSE 'il' END
                              ELSE crm.le_vin(s.shown) END
                      || ' vous attend à la cave.' END
        WHEN 'winback' THEN
            CASE WHEN rank > 1 THEN 'Le code ' || offer_code || ' vaut aussi pour ' || crm.le_vin(s.shown)
                                    || ' (-' || trim_scale(discount_pct) || ' %).'
            ELSE 'Vous nous manquez ! Profitez de -' || trim_scale(discount_pct) || ' % sur '
            || CASE WHEN s.shown = cuvee THEN 'votre ' || cuvee || s.favourite
                    -- « votre Riesling préféré (millésime 2023) », « … (2023 Magnum) »
                    WHEN left(s.shown, length(cuvee) + 1) = cuvee || ' '
                        THEN 'votre ' || cuvee || s.favourite || ' ('
                             || CASE WHEN substr(s.shown, length(cuvee) + 2) ~ '^\d{4}$' THEN 'millésime ' ELSE '' END
                             || substr(s.shown, length(cuvee) + 2) || ')'
                    ELSE crm.le_vin(s.shown) || ', votre ' || cuvee || s.favourite || ',' END
            || ' avec le code ' || offer_code || '.' END
        ELSE  -- cross_sell: a cuvée the customer has never bought
            CASE WHEN source_cuvee IS NOT NULL AND source_cuvee <> cuvee
                     THEN 'Parce que vous avez aimé notre ' || source_cuvee || ', nous pensons que '
                          || crm.le_vin(s.shown) || ' vous plaira.'
                 WHEN taste_kind = 'grape'
                     THEN 'Vous aimez ' || crm.le_vin(taste) || ' : découvrez notre ' || s.shown || '.'
                 WHEN taste_kind = 'colour'
                     THEN 'Vous aimez les vins ' || lower(taste) || CASE WHEN taste ~ '[sx]$' THEN '' ELSE 's' END
                          || ' : découvrez notre ' || s.shown || '.'
                 ELSE 'Une découverte pour vous : notre ' || s.shown || '.' END
        END
    FROM (SELECT produit
                 || CASE WHEN millesime IS NOT NULL AND position(millesime::text IN produit) = 0
                         THEN ' ' || millesime ELSE '' END
                 || CASE WHEN format_fr IS NOT NULL
                          AND crm.fold(produit) !~ '(magnum|jeroboam|rehoboam|mathusalem|carton|caisse|coffret|colis|demi|fillette|\d\s*(cl|ml|l)\M)'
                         THEN ' en ' || format_fr ELSE '' END AS shown,
                 crm.fold(cuvee) ~ '^cuvee\M' AS feminine,
                 CASE WHEN crm.fold(cuvee) ~ '^cuvee\M' THEN ' préférée' ELSE ' préféré' END AS favourite) s
$$;

-- Co-purchase between cuvées (what cross-sell and the cuvée-level backtest use). The `family`
-- level is no longer computed: with the cuvée defaulting to famille_crm it said the same thing.
ALTER TABLE crm.product_affinity DROP CONSTRAINT product_affinity_level_check,
    ADD CONSTRAINT product_affinity_level_check CHECK (level IN ('article', 'cuvee', 'family', 'grape'));
COMMENT ON TABLE crm.product_affinity IS 'co-purchase between items (article, cuvee, grape) at customer level as of a date; support, confidence P(b|a) and Jaccard are stored; cross-sell ranks cuvées with recommendations.cross_sell_similarity (scoring.yaml), never raw lift';
