"""The French words of the campaign e-mails (FRENCH-COPY.md): how a wine is named, why it is
proposed, and the typography of everything the customer reads.

A wine is named from its structured fields (cuvée, vintage, pack and unit volume), never from the
ERP label; a reason says only what the customer's purchases show; each full name appears once
per e-mail (the card of the wine), the reasons say « ce vin ». Numbers, prices, dates and spacing
are written by ``winecrm.core.french``.
"""

from __future__ import annotations

import re
import unicodedata
from decimal import Decimal

# What makes a wine a premium one at an Alsace estate, read in its cuvée name.
PREMIUM_WORDS = ("grand cru", "vendanges tardives", "selection de grains nobles", "lieu-dit", "lieu dit",
                 "fut de chene", "futs de chene")


def fold(text: str) -> str:
    """Lower case without accents, for comparing names."""
    return "".join(c for c in unicodedata.normalize("NFKD", text.lower()) if not unicodedata.combining(c))


# --- naming a wine ----------------------------------------------------------------------------

def has_article(name: str) -> bool:
    return bool(re.match(r"(le|la|les)\s|l['’]", fold(name)))


def feminine(name: str) -> bool:
    return fold(name).startswith("cuvee")


def le(name: str) -> str:
    """« le Riesling », « l'Edelzwicker », « la Cuvée Marguerite », « Les Princes Abbés »."""
    if has_article(name):
        return name
    if re.match(r"[aeiouyh]", fold(name)):
        return "l'" + name
    return ("la " if feminine(name) else "le ") + name


def notre(name: str) -> str:
    """« notre Riesling »; a name with its own article stays as it is."""
    return name if has_article(name) else "notre " + name


def wine_name(cuvee: str, millesime: int | None) -> str:
    """The full name of a wine: « Riesling 2023 », « Crémant d'Alsace Brut » (non-vintage)."""
    return f"{cuvee} {millesime}" if millesime and str(millesime) not in cuvee else cuvee


def _volume(unit_cl) -> str:
    cl = Decimal(str(unit_cl)).normalize()
    if cl < 100:
        return f"{cl:f}".replace(".", ",") + " cl"
    return f"{(cl / 100).normalize():f}".replace(".", ",") + " L"


def format_words(pack: int | None, unit_cl) -> str | None:
    """How the format reads after the name: « en magnum », « le carton de 6 bouteilles »,
    « en demi-bouteille », « en bouteille de 50 cl »; None for a 75 cl bottle."""
    pack = int(pack or 1)
    cl = Decimal(str(unit_cl)) if unit_cl is not None else Decimal(75)
    if pack > 1:
        unit = {Decimal(75): "bouteilles", Decimal(150): "magnums", Decimal("37.5"): "demi-bouteilles"}.get(
            cl, f"bouteilles de {_volume(cl)}")
        return f"le carton de {pack} {unit}"
    if cl == 75:
        return None
    if cl == 150:
        return "en magnum"
    if cl == Decimal("37.5"):
        return "en demi-bouteille"
    return f"en bouteille de {_volume(cl)}" if cl < 100 else f"en format {_volume(cl)}"


def is_premium(cuvee: str, markers=PREMIUM_WORDS) -> bool:
    name = fold(cuvee)
    return any(fold(word) in name for word in markers)


def names_grape(cuvee: str, grape: str | None) -> bool:
    """The cuvée's name says the grape (« Riesling Grand Cru » says Riesling; a Crémant made of
    Pinot Blanc does not)."""
    return bool(grape) and re.search(rf"(?<!\w){re.escape(fold(grape))}(?!\w)", fold(cuvee)) is not None


def plural_colour(colour: str) -> str:
    """« blanc » -> « les vins blancs », « effervescent » -> « les vins effervescents »."""
    words = [w if len(w) < 3 or w.endswith(("s", "x", "z")) else w + "s" for w in colour.lower().split()]
    return "les vins " + " ".join(words)


# --- what the customer bought, what the e-mail proposes ----------------------------------------

def grape_buyer(purchases: dict[str, dict], grape: str | None) -> bool:
    """The customer bought a wine named after the grape (a Crémant or a blend does not count)."""
    return bool(grape) and any(names_grape(cuvee, grape) for cuvee in purchases)


def step_down(wine: dict, purchases: dict[str, dict], markers=PREMIUM_WORDS) -> bool:
    """An entry-level wine of a grape whose premium wine (Grand Cru, Vendanges Tardives, lieu-dit,
    fût de chêne…) the customer buys: not something to propose as a next step."""
    grape = wine.get("taste") if wine.get("taste_kind") == "grape" else None
    if not grape or is_premium(wine["cuvee"], markers) or not names_grape(wine["cuvee"], grape):
        return False
    return any(is_premium(cuvee, markers) and names_grape(cuvee, grape) for cuvee in purchases)


def _first_unused(phrases: list[str], used: set[str]) -> str:
    """The first phrase not yet said in this e-mail (the last one if all were): no line twice."""
    phrase = next((p for p in phrases if p not in used), phrases[-1])
    used.add(phrase)
    return phrase


def reasons(scenario: str, wines: list[dict], purchases: dict[str, dict]) -> list[str]:
    """Why each wine is in the e-mail, in the customer's words: only what their purchases show, a
    full name at most once (the wine itself is « ce vin »: its card names it), no counts, no
    « découvrir » for a wine they know, no offer code (the offer is said once, apart), no line
    said twice."""
    said: set[str] = set()   # grapes, colours and cuvées already named
    used: set[str] = set()   # sentences already written
    tastes = {bought.get("taste") for bought in purchases.values()} - {None}  # grapes and colours they buy
    out = []
    for i, wine in enumerate(wines):
        cuvee = wine["cuvee"]
        bought = purchases.get(cuvee)
        if scenario == "cross_sell" and not bought:
            source = wine.get("source_cuvee")
            # the wine's grape (else colour), when the customer's own wines share it
            grape = wine.get("taste") if wine.get("taste_kind") == "grape" and wine.get("taste") in tastes else None
            colour = wine.get("taste") if wine.get("taste_kind") == "colour" and wine.get("taste") in tastes else None
            if source and source != cuvee and source in purchases and source not in said:
                said.add(source)
                out.append(_first_unused([f"Vous avez aimé {notre(source)} : ce vin devrait vous plaire."], used))
            elif grape and grape not in said and grape_buyer(purchases, grape):
                said.add(grape)
                out.append(_first_unused([f"Vous aimez {le(grape)} : voici une autre facette de ce cépage."], used))
            elif grape and grape not in said:
                # a taste read in a Crémant or a blend: a suggestion, not a fact about them
                said.add(grape)
                out.append(_first_unused([f"Si vous appréciez {le(grape)}, ce vin devrait vous plaire."], used))
            elif colour and colour not in said:
                said.add(colour)
                out.append(_first_unused([f"Si vous appréciez {plural_colour(colour)}, ce vin devrait vous plaire."], used))
            else:
                out.append(_first_unused(["Dans le même esprit, un autre vin à découvrir.",
                                          "Une autre idée, dans la même veine.",
                                          "Un vin que nous aimerions vous faire connaître."], used))
            continue
        # rebuy, win-back (and any wine the customer already knows): their own wine
        last = (bought or {}).get("last_vintage")
        vintage, newest = wine.get("millesime"), wine.get("newest_vintage")
        if last and vintage and vintage > last:
            newer = "le nouveau millésime" if newest is None or vintage >= newest else "un millésime plus récent"
            out.append(_first_unused([f"Vous aviez choisi le {last} : voici {newer}.",
                                      f"Vous aviez pris le {last} ; voici {newer}.",
                                      f"Après le {last}, voici {newer}."], used))
        elif i == 0:
            out.append(_first_unused(["Un vin que vous connaissez bien, disponible à la cave."], used))
        else:
            out.append(_first_unused(["Vous l'avez également apprécié.", "Lui aussi compte parmi vos choix.",
                                      "Un autre de vos vins, disponible à la cave."], used))
    return out
