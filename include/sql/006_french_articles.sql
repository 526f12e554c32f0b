-- French before a wine's name (issue 9, correct French in the reasons): « le Riesling »,
-- « l'Edelzwicker », « l'Auxerrois ». Wine names are masculine (le vin); a vowel elides the
-- article. An initial h is left alone: h aspiré and h muet cannot be told apart from the spelling.
CREATE FUNCTION crm.le_vin(name text) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$
    SELECT CASE WHEN name ~ '^[AEIOUYÀÂÄÆÉÈÊËÎÏÔÖŒÙÛÜaeiouyàâäæéèêëîïôöœùûü]' THEN 'l''' || name
                ELSE 'le ' || name END
$$;
COMMENT ON FUNCTION crm.le_vin(text) IS 'the wine name with its French article: le Riesling, l''Edelzwicker';
