"""The iSaVigne export contract: datasets, canonical columns, accepted header spellings.

Headers are matched after normalisation (case, accents, spaces, punctuation removed), so
``Date Livraison``, ``DATE_LIVRAISON`` and ``date livraison`` all map to ``date_livraison``.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass


@dataclass(frozen=True)
class Column:
    name: str
    kind: str = "text"  # text | int | decimal | date | email | bool
    required: bool = True  # the column must be present in the file header
    not_null: bool = False  # each row must carry a value
    aliases: tuple[str, ...] = ()


@dataclass(frozen=True)
class Dataset:
    name: str
    columns: tuple[Column, ...]
    natural_key: tuple[str, ...] = ()  # unique within one file; later rows supersede earlier ones
    description: str = ""

    @property
    def column_names(self) -> list[str]:
        return [c.name for c in self.columns]

    @property
    def required_columns(self) -> list[str]:
        return [c.name for c in self.columns if c.required]

    def column(self, name: str) -> Column:
        return next(c for c in self.columns if c.name == name)


VENTES_LIGNES = Dataset(
    name="ventes_lignes",
    description="Sales lines (one row per document line; AVOIR = credit note).",
    columns=(
        Column("client_code", not_null=True, aliases=("code client", "client", "num client")),
        Column("date_livraison", "date", not_null=True, aliases=("date", "date de livraison", "date document")),
        Column("produit_label", aliases=("produit", "libelle", "designation", "libelle produit")),
        Column("qty_line", "decimal", not_null=True, aliases=("quantite", "qte", "qty")),
        Column("pu_ht", "decimal", aliases=("prix unitaire ht", "pu")),
        Column("mt_ht", "decimal", not_null=True, aliases=("montant ht", "total ht")),
        Column("mt_ttc", "decimal", aliases=("montant ttc", "total ttc")),
        Column("marge", "decimal", required=False),
        Column("document_type", not_null=True, aliases=("type document", "type doc", "type")),
        Column("document_no", not_null=True, aliases=("numero document", "no document", "num document", "n document",
                                                  "n doc", "no piece", "n piece", "numero piece", "document")),
        Column("article", not_null=True, aliases=("code article", "ref article", "reference")),
        Column("email", "email", required=False, aliases=("e-mail", "mail", "courriel")),
        Column("code_postal", required=False, aliases=("cp", "code postal")),
        Column("ville", required=False, aliases=("commune",)),
    ),
)

CLIENTS = Dataset(
    name="clients",
    description="Customer master data.",
    natural_key=("client_code",),
    columns=(
        Column("client_code", not_null=True, aliases=("code client", "client", "num client")),
        Column("nom", aliases=("nom client",)),
        Column("prenom", aliases=("prenom client",)),
        Column("email", "email", aliases=("e-mail", "mail", "courriel")),
        Column("telephone", required=False, aliases=("tel", "telephone portable", "portable", "mobile")),
        Column("adresse", required=False, aliases=("adresse 1", "rue")),
        Column("code_postal", required=False, aliases=("cp",)),
        Column("ville", required=False, aliases=("commune",)),
        Column("pays", required=False),
        Column("opt_out", "bool", required=False,
               aliases=("optout", "desabonne", "refus email", "refus mailing", "refus newsletter",
                        "blacklist email")),
    ),
)

PRODUITS = Dataset(
    name="produits",
    description="Product catalogue (one row per article / SKU).",
    natural_key=("article",),
    columns=(
        Column("produit", aliases=("libelle", "designation", "produit label")),
        Column("article", not_null=True, aliases=("code article", "ref article", "reference")),
        Column("millesime", "int", aliases=("annee", "vintage")),
        Column("famille_crm", aliases=("famille",)),
        Column("sous_famille", required=False),
        Column("macro_categorie", required=False, aliases=("categorie",)),
        Column("prix_ttc", "decimal", aliases=("prix", "prix de vente ttc")),
        Column("price_band", required=False, aliases=("tranche prix",)),
        Column("premium_tier", required=False, aliases=("gamme",)),
        Column("cepage", required=False, aliases=("cepages",)),
        Column("couleur", required=False),
        # The item model (docs/item-model.md): the wine an article is a vintage/format of,
        # and its format; without them the cuvée is famille_crm and the format is read from the label.
        Column("cuvee", required=False, aliases=("nom du vin", "vin")),
        Column("contenance", required=False, aliases=("format", "volume", "conditionnement")),
    ),
)

STOCK = Dataset(
    name="stock",
    description="Stock snapshot per article, vintage and warehouse.",
    natural_key=("article", "millesime", "entrepot"),
    columns=(
        Column("article", not_null=True, aliases=("code article", "ref article", "reference")),
        Column("millesime", "int", aliases=("annee", "vintage")),
        Column("entrepot", not_null=True, aliases=("depot", "magasin", "site")),
        Column("quantite", "decimal", not_null=True, aliases=("qte", "stock", "quantite stock")),
        Column("unite", required=False, aliases=("unite de stock", "conditionnement")),
    ),
)

DATASETS: dict[str, Dataset] = {d.name: d for d in (VENTES_LIGNES, CLIENTS, PRODUITS, STOCK)}

# How each kind of column is stored in the warehouse (staging tables and etl.* columns).
SQL_TYPES = {"text": "text", "email": "text", "decimal": "numeric", "int": "integer", "date": "date",
             "bool": "boolean"}


def warehouse_columns(dataset: Dataset) -> list[tuple[str, str]]:
    """The dataset's columns as the warehouse stores them, in order: (name, SQL type). An email
    column is followed by its ``email_valid`` flag. The single source of the column lists used by
    the loader, the sample data and the backtest; a test holds the DDL in include/sql to it."""
    columns: list[tuple[str, str]] = []
    for column in dataset.columns:
        columns.append((column.name, SQL_TYPES[column.kind]))
        if column.kind == "email":
            columns.append(("email_valid", "boolean"))
    return columns


def normalise_header(text: object) -> str:
    """'  Date de Livraison ' -> 'date de livraison'; accents, case and punctuation removed."""
    if text is None:
        return ""
    value = unicodedata.normalize("NFKD", str(text))
    value = "".join(ch for ch in value if not unicodedata.combining(ch))
    value = value.replace("\ufeff", "").lower()
    value = re.sub(r"[^a-z0-9]+", " ", value)
    return value.strip()


def _lookup(dataset: Dataset) -> dict[str, str]:
    table: dict[str, str] = {}
    for column in dataset.columns:
        for spelling in (column.name, *column.aliases):
            table.setdefault(normalise_header(spelling), column.name)
    return table


@dataclass
class HeaderMapping:
    mapping: dict[int, str]  # source column position -> canonical column
    source_names: dict[str, str]  # source header -> canonical column (for the manifest)
    missing_required: list[str]
    extra_columns: list[str]
    duplicated: list[str]  # canonical columns that two source headers both claim


def map_headers(dataset: Dataset, headers: list[object]) -> HeaderMapping:
    lookup = _lookup(dataset)
    mapping: dict[int, str] = {}
    source_names: dict[str, str] = {}
    extra: list[str] = []
    duplicated: list[str] = []
    for position, header in enumerate(headers):
        canonical = lookup.get(normalise_header(header))
        if canonical is None:
            if str(header or "").strip():
                extra.append(str(header).strip())
            continue
        if canonical in mapping.values():
            duplicated.append(canonical)
            continue
        mapping[position] = canonical
        source_names[str(header).strip()] = canonical
    present = set(mapping.values())
    missing = [c for c in dataset.required_columns if c not in present]
    return HeaderMapping(mapping, source_names, missing, extra, duplicated)


def header_score(dataset: Dataset, headers: list[object]) -> int:
    """How many contract columns a header row names (to pick a sheet or a delimiter)."""
    lookup = _lookup(dataset)
    return len({lookup[n] for n in (normalise_header(h) for h in headers) if n in lookup})
