"""Deterministic, realistic iSaVigne sample exports for an Alsace wine estate.

Used by ``make demo``, the tests and the benchmarks. The same seed gives the same bytes.
The exports carry the messiness of real ones: cp1252 / UTF-8-BOM encodings, ``;`` delimiter,
decimal commas, ``dd/mm/yyyy`` dates, stray spaces, mixed-case and invalid emails, mojibake
labels, credit notes (AVOIR), an overlapping re-delivered week and a copy under another name.
With ``inject_bad_rows`` a known set of bad rows is planted; ``SampleExports.bad_rows`` lists
them (file, row, column, why) so a run can be checked to quarantine exactly those.

CLI::

    python -m winecrm_tools.samples.sampledata --raw-dir RAW                       # the demo estate
    python -m winecrm_tools.samples.sampledata --sales-file F.csv --lines 1000000  # one big sales export
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import io
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from winecrm.etl.contract import VENTES_LIGNES

DEFAULT_AS_OF = dt.date(2026, 11, 16)  # a Monday: the export date of the newest weekly files

# code, family, grape, colour, base price TTC (75 cl), popularity weight, vintages offered
_FAMILIES = [
    ("RIES", "Riesling", "Riesling", "blanc", 11.5, 1.6, (2019, 2021, 2022, 2023)),
    ("RIESGC", "Riesling Grand Cru Schlossberg", "Riesling", "blanc", 24.0, 0.7, (2017, 2019, 2020, 2021)),
    ("RIESLD", "Riesling Lieu-dit Muehlforst", "Riesling", "blanc", 16.0, 0.5, (2020, 2022)),
    ("GEWU", "Gewurztraminer", "Gewurztraminer", "blanc", 13.5, 1.3, (2020, 2022, 2023)),
    ("GEWUGC", "Gewurztraminer Grand Cru Kirchberg", "Gewurztraminer", "blanc", 26.0, 0.4, (2018, 2020)),
    ("GEWUVT", "Gewurztraminer Vendanges Tardives", "Gewurztraminer", "blanc", 32.0, 0.3, (2015, 2018)),
    ("PGRI", "Pinot Gris", "Pinot Gris", "blanc", 12.5, 1.2, (2021, 2022, 2023)),
    ("PGRIGC", "Pinot Gris Grand Cru Osterberg", "Pinot Gris", "blanc", 25.0, 0.3, (2019, 2020)),
    ("PGRISGN", "Pinot Gris Sélection de Grains Nobles", "Pinot Gris", "blanc", 45.0, 0.15, (2017,)),
    ("PBLA", "Pinot Blanc", "Pinot Blanc", "blanc", 8.9, 1.0, (2022, 2023)),
    ("SYLV", "Sylvaner", "Sylvaner", "blanc", 7.9, 0.6, (2022, 2023)),
    ("MUSC", "Muscat", "Muscat", "blanc", 11.0, 0.5, (2022, 2023)),
    ("PNOI", "Pinot Noir", "Pinot Noir", "rouge", 14.5, 1.0, (2020, 2021, 2022)),
    ("PNOIFUT", "Pinot Noir Fût de Chêne", "Pinot Noir", "rouge", 21.0, 0.4, (2019, 2020)),
    ("CREBRUT", "Crémant d'Alsace Brut", "Pinot Blanc", "effervescent", 10.2, 1.5, (0,)),
    ("CREROSE", "Crémant d'Alsace Rosé", "Pinot Noir", "effervescent", 12.0, 0.8, (0,)),
    ("CREXBRUT", "Crémant d'Alsace Extra Brut", "Chardonnay", "effervescent", 13.0, 0.5, (0,)),
    ("CREBDN", "Crémant d'Alsace Blanc de Noirs", "Pinot Noir", "effervescent", 15.5, 0.3, (2020,)),
    ("EDEL", "Edelzwicker", "Assemblage", "blanc", 6.5, 0.7, (2023,)),
]
GRAPE_EXPLORATION = 0.3  # share of a customer's other lines spent on their favourite grape
_FORMATS = [("", 1, 1.0), ("Magnum", 2, 2.3), ("Carton 6", 6, 5.6)]  # suffix, bottles, price factor

_PRENOMS = ["Jean", "Marie", "Pierre", "Anne", "Michel", "Sophie", "Luc", "Claire", "Paul", "Julie",
            "François", "Hélène", "Jérôme", "Céline", "René", "Élodie", "Thierry", "Nathalie",
            "Bernard", "Isabelle", "Antoine", "Camille", "Frédéric", "Aurélie", "Joël", "Maëlle"]
_NOMS = ["Muller", "Schmitt", "Meyer", "Weber", "Klein", "Wagner", "Fischer", "Martin", "Bernard",
         "Dupont", "Keller", "Hoffmann", "Roth", "Schneider", "Lévy", "Zimmermann", "Koenig",
         "Durand", "Lefèvre", "Moreau", "Kuntz", "Bauer", "Ehrhart", "Hugel", "Gérard"]
_VILLES = [("67000", "Strasbourg"), ("68000", "Colmar"), ("68100", "Mulhouse"), ("67600", "Sélestat"),
           ("68340", "Riquewihr"), ("75011", "Paris"), ("69003", "Lyon"), ("54000", "Nancy"),
           ("57000", "Metz"), ("67120", "Molsheim"), ("13008", "Marseille"), ("33000", "Bordeaux"),
           ("68150", "Ribeauvillé"), ("67140", "Barr"), ("44000", "Nantes")]
_DOMAINS = ["gmail.com", "orange.fr", "free.fr", "laposte.net", "wanadoo.fr", "yahoo.fr", "sfr.fr"]

SALES_COLUMNS = VENTES_LIGNES.column_names  # the export's columns, as the contract names them
VAT = 1.20


def _ascii(text: str) -> str:
    import unicodedata

    return "".join(c for c in unicodedata.normalize("NFKD", text) if not unicodedata.combining(c))


def build_catalogue() -> pd.DataFrame:
    """~60 products: families x vintages x formats (magnums and cases for the popular ones)."""
    rows = []
    for fam_idx, (code, family, grape, colour, price, weight, vintages) in enumerate(_FAMILIES):
        for vintage in vintages:
            formats = _FORMATS if weight >= 0.8 and vintage == max(vintages) else _FORMATS[:1]
            for suffix, bottles, factor in formats:
                article = f"{code}{'-' + str(vintage)[2:] if vintage else ''}{'-' + suffix[:3].upper() if suffix else ''}"
                label = family + (f" {vintage}" if vintage else "") + (f" {suffix}" if suffix else "")
                prix_ttc = round(price * factor * (1 + 0.04 * max(0, 2023 - vintage) if vintage else 1), 2)
                rows.append(dict(
                    produit=label, article=article, millesime=vintage or None, famille_crm=family,
                    sous_famille={"blanc": "Blancs", "rouge": "Rouges", "effervescent": "Effervescents"}[colour],
                    macro_categorie="Prestige" if price >= 20 else ("Apéritif" if colour == "effervescent" else "Tradition"),
                    prix_ttc=prix_ttc,
                    price_band="<10" if prix_ttc < 10 else "10-20" if prix_ttc < 20 else "20-40" if prix_ttc < 40 else "40+",
                    premium_tier="Premium" if price >= 20 else "Standard",
                    cepage=grape, couleur=colour, bottles=bottles,
                    weight=weight / (1 + 1.5 * (bottles > 1)) / len(vintages), family_idx=fam_idx,
                ))
    return pd.DataFrame(rows)


def build_customers(n: int, rng: np.random.Generator) -> pd.DataFrame:
    codes = [f"C{i:06d}" for i in range(1, n + 1)]
    prenom = rng.choice(_PRENOMS, n)
    nom = rng.choice(_NOMS, n)
    ville_idx = rng.integers(0, len(_VILLES), n)
    domain = rng.choice(_DOMAINS, n)
    emails = [f"{_ascii(p).lower()}.{_ascii(s).lower().replace(' ', '')}{i % 97}@{d}"
              for i, (p, s, d) in enumerate(zip(prenom, nom, domain))]
    emails = np.array(emails, dtype=object)
    # Real exports: some missing, some broken, some with capitals or surrounding spaces.
    r = rng.random(n)
    emails[r < 0.03] = ""
    broken = (r >= 0.03) & (r < 0.05)
    emails[broken] = [e.replace("@", " at ") if i % 2 else e.split("@")[0] + "@" for i, e in enumerate(emails[broken])]
    shout = (r >= 0.05) & (r < 0.15)
    emails[shout] = [e.title() for e in emails[shout]]
    spaced = (r >= 0.15) & (r < 0.20)
    emails[spaced] = [f" {e} " for e in emails[spaced]]
    return pd.DataFrame({
        "client_code": codes, "nom": nom, "prenom": prenom, "email": emails,
        "telephone": [f"06{rng.integers(10_000_000, 99_999_999)}" for _ in range(n)],
        "adresse": [f"{rng.integers(1, 120)} rue {rng.choice(['des Vignes', 'du Château', 'Principale', 'de la Gare', 'Saint-Nicolas'])}" for _ in range(n)],
        "code_postal": [_VILLES[i][0] for i in ville_idx],
        "ville": [_VILLES[i][1] for i in ville_idx],
        "pays": "France",
        "opt_out": np.where(rng.random(n) < 0.04, "oui", "non"),
        # behaviour (not exported): purchase rate, taste, activity window
        "rate": rng.gamma(0.9, 1.0, n),  # orders per year, heavy-tailed like real direct sales
        "fav_family": rng.integers(0, len(_FAMILIES), n),
        "loyalty": rng.beta(4, 2, n),  # share of lines in the favourite family
        "churn_hazard": rng.uniform(0.05, 0.45, n),  # per-year chance to stop buying
    })


def generate_sales(customers: pd.DataFrame, catalogue: pd.DataFrame, start: dt.date, end: dt.date,
                   target_lines: int, rng: np.random.Generator, first_doc_no: int = 1) -> pd.DataFrame:
    """Typed sales lines (one frame). Orders follow per-customer Poisson processes with churn."""
    n = len(customers)
    days = (end - start).days + 1
    join = rng.integers(0, max(1, int(days * 0.7)), n)
    # Churn time after join: exponential with the customer's hazard.
    life = (rng.exponential(1.0, n) / customers["churn_hazard"].to_numpy() * 365.25).astype(int)
    active_days = np.clip(np.minimum(days - join, life), 1, None)
    mean_lines = 2.3
    rate = customers["rate"].to_numpy()
    expected = rate * active_days / 365.25
    scale = (target_lines / mean_lines) / max(expected.sum(), 1e-9)
    n_orders = rng.poisson(expected * scale)
    cust_idx = np.repeat(np.arange(n), n_orders)
    offset = (rng.random(cust_idx.size) * active_days[cust_idx]).astype(int) + join[cust_idx]
    # Seasonality: shift a share of orders into November-December, as wine sales do.
    order_dates = pd.to_datetime(start) + pd.to_timedelta(offset, unit="D")
    order_dates = order_dates.to_numpy()
    order_no = np.argsort(np.argsort(order_dates, kind="stable"), kind="stable") + first_doc_no
    lines_per_order = 1 + rng.poisson(mean_lines - 1, cust_idx.size)
    total = int(lines_per_order.sum())
    # scale may leave us off target by Poisson noise: trim or accept
    line_order = np.repeat(np.arange(cust_idx.size), lines_per_order)
    line_cust = cust_idx[line_order]
    fam_pref = customers["fav_family"].to_numpy()[line_cust]
    loyal = rng.random(total) < customers["loyalty"].to_numpy()[line_cust]
    weights = catalogue["weight"].to_numpy()
    fam_of_product = catalogue["family_idx"].to_numpy()
    global_pick = rng.choice(len(catalogue), total, p=weights / weights.sum())
    # Loyal lines: a product of the favourite family, popularity-weighted within it.
    by_family = {f: np.flatnonzero(fam_of_product == f) for f in np.unique(fam_of_product)}
    product = global_pick.copy()
    for fam, members in by_family.items():
        mask = loyal & (fam_pref == fam)
        if mask.any():
            w = weights[members] / weights[members].sum()
            product[mask] = rng.choice(members, int(mask.sum()), p=w)
    # Taste beyond the favourite cuvée: a share of the other lines explores the wines of the same
    # grape (a Riesling lover tries the Grand Cru), popularity-weighted. A separate stream, so
    # the rest of the estate is drawn as before.
    taste_rng = np.random.default_rng(int(rng.integers(0, 2**31)))
    grape_of_family = np.array([f[2] for f in _FAMILIES])
    grape_of_product = grape_of_family[fam_of_product]
    line_grape = grape_of_family[fam_pref]
    exploring = ~loyal & (taste_rng.random(total) < GRAPE_EXPLORATION)
    for grape in np.unique(grape_of_family):
        mask = exploring & (line_grape == grape)
        members = np.flatnonzero(grape_of_product == grape)
        if mask.any():
            w = weights[members] / weights[members].sum()
            product[mask] = taste_rng.choice(members, int(mask.sum()), p=w)
    # An order lists each product once (iSaVigne merges repeated articles into one line).
    repeat = pd.DataFrame({"o": line_order, "p": product}).duplicated().to_numpy()
    keep = ~repeat
    line_order, line_cust, product = line_order[keep], line_cust[keep], product[keep]
    total = int(keep.sum())
    qty = rng.choice([1, 2, 3, 6, 12], total, p=[0.35, 0.2, 0.1, 0.3, 0.05]).astype(float)
    cat = catalogue.iloc[product]
    pu_ttc = cat["prix_ttc"].to_numpy()
    pu_ht = np.round(pu_ttc / VAT, 4)
    mt_ht = np.round(qty * pu_ht, 2)
    frame = pd.DataFrame({
        "client_code": customers["client_code"].to_numpy()[line_cust],
        "date_livraison": order_dates[line_order],
        "produit_label": cat["produit"].to_numpy(),
        "qty_line": qty,
        "pu_ht": pu_ht,
        "mt_ht": mt_ht,
        "mt_ttc": np.round(mt_ht * VAT, 2),
        "marge": np.round(mt_ht * 0.42, 2),
        "document_type": "VENTE",
        "document_no": np.char.add("F", np.char.zfill(order_no[line_order].astype(str), 8)),
        "article": cat["article"].to_numpy(),
        "email": customers["email"].to_numpy()[line_cust],
        "code_postal": customers["code_postal"].to_numpy()[line_cust],
        "ville": customers["ville"].to_numpy()[line_cust],
    })
    # Credit notes: ~1.5 % of orders get one line partly returned a few days later.
    n_credit = int(cust_idx.size * 0.015)
    if n_credit:
        first_line = np.flatnonzero(np.r_[True, line_order[1:] != line_order[:-1]])
        picked = rng.choice(first_line, n_credit, replace=False)
        credit = frame.iloc[picked].copy()
        credit["qty_line"] = np.maximum(1, np.floor(credit["qty_line"].to_numpy() / 2))
        credit["mt_ht"] = np.round(credit["qty_line"] * credit["pu_ht"], 2)
        credit["mt_ttc"] = np.round(credit["mt_ht"] * VAT, 2)
        credit["marge"] = np.round(credit["mt_ht"] * 0.42, 2)
        credit["document_type"] = "AVOIR"
        credit["document_no"] = np.char.add("A", np.char.zfill(order_no[line_order[picked]].astype(str), 8))
        credit["date_livraison"] = credit["date_livraison"] + pd.to_timedelta(rng.integers(2, 20, n_credit), unit="D")
        frame = pd.concat([frame, credit], ignore_index=True)
    frame = frame[frame["date_livraison"] <= pd.Timestamp(end)]
    return frame.sort_values(["date_livraison", "document_no"], kind="stable").reset_index(drop=True)


def _fr_decimal(values: pd.Series, digits: int) -> pd.Series:
    text = values.map(lambda v: f"{v:.{digits}f}") if len(values) < 1000 else \
        pd.Series(np.char.mod(f"%.{digits}f", values.to_numpy(dtype=float)), index=values.index)
    return text.str.replace(".", ",", regex=False)


def format_sales(frame: pd.DataFrame) -> pd.DataFrame:
    """Typed sales lines -> the strings iSaVigne writes (French conventions)."""
    out = frame.copy()
    out["date_livraison"] = pd.to_datetime(out["date_livraison"]).dt.strftime("%d/%m/%Y")
    out["qty_line"] = _fr_decimal(out["qty_line"], 0)
    for col, digits in (("pu_ht", 4), ("mt_ht", 2), ("mt_ttc", 2), ("marge", 2)):
        out[col] = _fr_decimal(out[col], digits)
    return out[SALES_COLUMNS]


def _mojibake(text: str) -> str:
    """What a UTF-8 label looks like after a cp1252 round trip ('Crémant' -> 'CrÃ©mant')."""
    try:
        return text.encode("utf-8").decode("cp1252")
    except UnicodeDecodeError:
        return text


def _make_xlsx_reproducible(path: Path, when: dt.date) -> None:
    """openpyxl stamps the save time into docProps/core.xml and every zip entry: pin both so
    the same seed gives the same bytes (the manifest keys files by SHA-256)."""
    import re
    import zipfile

    stamp = f"{when:%Y-%m-%d}T04:00:00Z"
    with zipfile.ZipFile(path) as source:
        entries = [(info.filename, source.read(info.filename)) for info in source.infolist()]
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as target:
        for name, data in entries:
            if name == "docProps/core.xml":
                data = re.sub(rb"(<dcterms:(?:created|modified)[^>]*>)[^<]*", rb"\g<1>" + stamp.encode(), data)
            info = zipfile.ZipInfo(name, date_time=(when.year, when.month, when.day, 4, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            target.writestr(info, data)


def write_csv(path: Path, frame: pd.DataFrame, encoding: str, delimiter: str = ";") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    buffer = io.StringIO()
    frame.to_csv(buffer, sep=delimiter, index=False, lineterminator="\r\n", quoting=csv.QUOTE_MINIMAL)
    path.write_bytes(buffer.getvalue().encode(encoding, errors="replace"))


@dataclass
class BadRow:
    dataset: str
    file_name: str
    row_no: int  # line number in the file (header = 1)
    column: str
    why: str


@dataclass
class SampleExports:
    raw_dir: Path
    as_of: dt.date
    files: list[Path] = field(default_factory=list)
    bad_rows: list[BadRow] = field(default_factory=list)
    sales_lines_total: int = 0  # distinct good sales lines once everything is loaded
    customers: int = 0
    products: int = 0


def _plant_bad_sales_rows(text_frame: pd.DataFrame, file_name: str, rng: np.random.Generator) -> tuple[pd.DataFrame, list[BadRow]]:
    """Corrupt a few rows the way hand-edited exports get corrupted; return the truth."""
    frame = text_frame.copy()
    bad: list[BadRow] = []
    picks = rng.choice(len(frame), 7, replace=False)
    defects = [
        ("date_livraison", "31/02/2026", "impossible date"),
        ("qty_line", "deux", "quantity is not a number"),
        ("qty_line", "-3", "negative quantity on a sale"),
        ("qty_line", "99999", "absurd quantity"),
        ("document_type", "DEVIS", "unknown document type"),
        ("client_code", "", "missing customer code"),
        ("mt_ht", "12,5,0", "amount is not a number"),
    ]
    for row, (column, value, why) in zip(picks, defects):
        frame.iat[row, frame.columns.get_loc(column)] = value
        bad.append(BadRow("ventes_lignes", file_name, int(row) + 2, column, why))
    # An exact duplicate of a line, appended at the end: the copy is the bad one.
    frame = pd.concat([frame, frame.iloc[[int(rng.integers(0, len(frame)))]]], ignore_index=True)
    bad.append(BadRow("ventes_lignes", file_name, len(frame) + 1, "*", "exact duplicate line"))
    # A label with a spreadsheet formula: loaded, but stored as inert text.
    frame.iat[int(rng.integers(0, len(frame) - 1)), frame.columns.get_loc("produit_label")] = '=HYPERLINK("http://x.invalid","Riesling")'
    return frame, bad


def write_sample_exports(raw_dir: Path, *, as_of: dt.date = DEFAULT_AS_OF, n_customers: int = 2000,
                         years: float = 3.2, lines_per_customer_year: float = 12.0, seed: int = 42,
                         weekly_files: int = 4, inject_bad_rows: bool = True) -> SampleExports:
    """Write the demo estate's exports under ``raw_dir/isavigne/<dataset>/``."""
    rng = np.random.default_rng(seed)
    base = Path(raw_dir) / "isavigne"
    result = SampleExports(raw_dir=Path(raw_dir), as_of=as_of)
    catalogue = build_catalogue()
    customers = build_customers(n_customers, rng)
    end = as_of - dt.timedelta(days=1)  # Sunday before the export Monday
    start = end - dt.timedelta(days=int(years * 365.25))
    target = int(n_customers * years * lines_per_customer_year)
    sales = generate_sales(customers, catalogue, start, end, target, rng)
    texts = format_sales(sales)
    texts["produit_label"] = texts["produit_label"].str.replace("Crémant", _mojibake("Crémant"), regex=False) \
        .where(rng.random(len(texts)) < 0.1, texts["produit_label"])  # some labels mangled upstream
    texts["client_code"] = texts["client_code"].where(rng.random(len(texts)) > 0.05, " " + texts["client_code"] + " ")
    dates = pd.to_datetime(sales["date_livraison"]).dt.date
    history_end = as_of - dt.timedelta(days=7 * weekly_files)

    def sales_file(name: str, mask: np.ndarray, encoding: str, plant: bool = False) -> None:
        frame = texts[mask].reset_index(drop=True)
        if plant:
            frame, bad = _plant_bad_sales_rows(frame, name, rng)
            result.bad_rows.extend(bad)
        path = base / "ventes_lignes" / name
        write_csv(path, frame, encoding)
        result.files.append(path)

    sales_file(f"ventes_lignes_historique_{start:%Y-%m-%d}_{history_end - dt.timedelta(days=1):%Y-%m-%d}.csv",
               (dates < history_end).to_numpy(), "cp1252")
    for k in range(weekly_files, 0, -1):
        monday = as_of - dt.timedelta(days=7 * k)
        week = ((dates >= monday) & (dates < monday + dt.timedelta(days=7))).to_numpy()
        export_date = monday + dt.timedelta(days=7)
        encoding = "utf-8-sig" if k % 2 else "cp1252"
        sales_file(f"ventes_lignes_{export_date:%Y-%m-%d}.csv", week, encoding, plant=inject_bad_rows and k == 1)
    # The estate re-exported the last two weeks (overlap with files already delivered).
    overlap_start = as_of - dt.timedelta(days=14)
    sales_file(f"ventes_lignes_{as_of:%Y-%m-%d}_reexport_2_semaines.csv",
               (dates >= overlap_start).to_numpy(), "cp1252")
    # And dropped the same weekly file again under another name.
    original = base / "ventes_lignes" / f"ventes_lignes_{as_of:%Y-%m-%d}.csv"
    copy = original.with_name(f"ventes_lignes_{as_of:%Y-%m-%d} (copie).csv")
    copy.write_bytes(original.read_bytes())
    result.files.append(copy)
    copy_late = True  # dropped an hour after the original (see the utime loop below)

    # The first snapshots of the customer file, the catalogue and the stock, delivered with the
    # history: a run of any week after it (a backfill) has reference data at or before its week.
    first_client_cols = ["client_code", "nom", "prenom", "email", "telephone", "adresse", "code_postal", "ville",
                         "pays", "opt_out"]
    first_clients = customers[first_client_cols].rename(columns={"opt_out": "refus_email"})
    first_clients_path = base / "clients" / f"clients_{history_end:%Y-%m-%d}.csv"
    write_csv(first_clients_path, first_clients, "cp1252")
    first_products_path = base / "produits" / f"produits_{history_end:%Y-%m-%d}.csv"
    write_csv(first_products_path, catalogue[["produit", "article", "millesime", "famille_crm", "sous_famille",
                                              "macro_categorie", "prix_ttc", "price_band", "premium_tier", "cepage",
                                              "couleur"]].astype("string").fillna(""), "utf-8-sig")
    first_stock_path = base / "stock" / f"stock_{history_end:%Y-%m-%d}.csv"
    write_csv(first_stock_path, pd.DataFrame([
        {"article": p["article"], "millesime": "" if pd.isna(p["millesime"]) else int(p["millesime"]),
         "entrepot": "Cave Ribeauvillé", "quantite": "120", "unite": "bouteille"} for _, p in catalogue.iterrows()]),
        "utf-8-sig")
    result.files += [first_clients_path, first_products_path, first_stock_path]

    # Customers, cp1252, with one row missing its code.
    client_cols = ["client_code", "nom", "prenom", "email", "telephone", "adresse", "code_postal", "ville", "pays", "opt_out"]
    clients = customers[client_cols].copy()
    clients = clients.rename(columns={"opt_out": "refus_email"})
    clients_name = f"clients_{as_of:%Y-%m-%d}.csv"
    if inject_bad_rows:
        row = int(rng.integers(0, len(clients)))
        clients.iat[row, 0] = ""
        result.bad_rows.append(BadRow("clients", clients_name, row + 2, "client_code", "missing customer code"))
    write_csv(base / "clients" / clients_name, clients, "cp1252")
    result.files.append(base / "clients" / clients_name)

    # Products as XLSX with a second sheet of notes (the contract sheet must be found).
    produits = catalogue[["produit", "article", "millesime", "famille_crm", "sous_famille", "macro_categorie",
                          "prix_ttc", "price_band", "premium_tier", "cepage", "couleur"]].copy()
    produits_path = base / "produits" / f"produits_{as_of:%Y-%m-%d}.xlsx"
    produits_path.parent.mkdir(parents=True, exist_ok=True)
    with pd.ExcelWriter(produits_path, engine="openpyxl") as writer:
        pd.DataFrame({"Note": ["Export iSaVigne - catalogue", f"Généré le {as_of:%d/%m/%Y}"]}).to_excel(writer, sheet_name="Infos", index=False)
        produits.rename(columns={"produit": "Produit", "article": "Code article", "millesime": "Millésime"}).to_excel(
            writer, sheet_name="Produits", index=False)
    _make_xlsx_reproducible(produits_path, as_of)
    result.files.append(produits_path)

    # Stock, UTF-8 with BOM, two warehouses, some items out of stock.
    stock_rows = []
    for _, p in catalogue.iterrows():
        for entrepot in ("Cave Ribeauvillé", "Dépôt Colmar"):
            qty = 0 if rng.random() < 0.1 else int(rng.integers(6, 900))
            stock_rows.append({"article": p["article"], "millesime": "" if pd.isna(p["millesime"]) else int(p["millesime"]),
                               "entrepot": entrepot, "quantite": str(qty), "unite": "bouteille"})
    stock_path = base / "stock" / f"stock_{as_of:%Y-%m-%d}.csv"
    write_csv(stock_path, pd.DataFrame(stock_rows), "utf-8-sig")
    result.files.append(stock_path)

    # Files carry the modification time of their export (Monday 05:00 Paris), like a real drop.
    from winecrm.etl.ingest import export_date_of

    for path in result.files:
        day = export_date_of(path.name, path.stat().st_mtime)
        stamp = dt.datetime.combine(day, dt.time(4, 0), tzinfo=dt.timezone.utc).timestamp()
        if copy_late and path == copy:
            stamp += 3600
        os.utime(path, (stamp, stamp))
    result.sales_lines_total = int(len(sales))
    result.customers = n_customers
    result.products = len(catalogue)
    return result


def write_sales_file(path: Path, n_lines: int, *, n_customers: int | None = None, seed: int = 7,
                     chunk_lines: int = 500_000, encoding: str = "cp1252",
                     end: dt.date = DEFAULT_AS_OF - dt.timedelta(days=1), years: float = 3.2,
                     first_doc_no: int = 1) -> int:
    """One big sales export of about ``n_lines`` lines, written in chunks (bounded memory)."""
    rng = np.random.default_rng(seed)
    catalogue = build_catalogue()
    n_customers = n_customers or max(2000, n_lines // 20)
    customers = build_customers(n_customers, rng)
    start = end - dt.timedelta(days=int(years * 365.25))
    path.parent.mkdir(parents=True, exist_ok=True)
    written = 0
    n_chunks = max(1, -(-n_lines // chunk_lines))
    per_chunk_customers = np.array_split(np.arange(n_customers), n_chunks)
    doc_base = first_doc_no
    with open(path, "wb") as fh:
        for i, idx in enumerate(per_chunk_customers):
            target = n_lines // n_chunks + (n_lines % n_chunks if i == n_chunks - 1 else 0)
            # Churn and the end-date cut remove ~20 % of generated lines: ask for more, keep target.
            sales = generate_sales(customers.iloc[idx].reset_index(drop=True), catalogue, start, end,
                                   int(target * 1.35), rng, first_doc_no=doc_base).head(target)
            doc_base += 10_000_000
            buffer = io.StringIO()
            format_sales(sales).to_csv(buffer, sep=";", index=False, header=(i == 0), lineterminator="\r\n")
            fh.write(buffer.getvalue().encode(encoding, errors="replace"))
            written += len(sales)
    return written


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--raw-dir", type=Path, help="write the demo estate's exports here")
    parser.add_argument("--sales-file", type=Path, help="write one big sales export here")
    parser.add_argument("--lines", type=int, default=1_000_000)
    parser.add_argument("--customers", type=int, default=None)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--as-of", default=DEFAULT_AS_OF.isoformat(),
                        help="the Monday of the last export, YYYY-MM-DD, or 'latest': the Monday after the latest "
                             "complete week, the only week a live run sends (default %(default)s)")
    args = parser.parse_args(argv)
    if args.as_of == "latest":
        from winecrm.core.weeks import Week, estate_zone

        as_of = Week.before(dt.datetime.now(estate_zone())).end + dt.timedelta(days=1)
    else:
        as_of = dt.date.fromisoformat(args.as_of)
    if args.raw_dir:
        out = write_sample_exports(args.raw_dir, seed=args.seed, n_customers=args.customers or 2000, as_of=as_of)
        print(f"{len(out.files)} files, {out.sales_lines_total} sales lines, {len(out.bad_rows)} planted bad rows")
    if args.sales_file:
        n = write_sales_file(args.sales_file, args.lines, n_customers=args.customers, seed=args.seed)
        print(f"{n} sales lines -> {args.sales_file}")


if __name__ == "__main__":
    main()
