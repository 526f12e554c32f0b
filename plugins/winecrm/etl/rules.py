"""The validation rules of each dataset, as Great Expectations expectations with a severity
(reject the row, or only flag it) and the sentence that explains a failure to a person.

An expectation is written here as GX's type name and keyword arguments — what its suite stores —
so the chunks can be checked (``winecrm.etl.checks``) in processes that never import GX;
``winecrm.etl.gx_context`` makes the GX objects of the suites from them."""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass

from winecrm.core.settings import ValidationConfig
from winecrm.etl.contract import Dataset
from winecrm.etl.parsing import UNPARSED_SUFFIX, DATE_RE, DECIMAL_RE, DUPLICATE_COLUMN, EMAIL_RE, FALSE_WORDS, INT_RE, TRUE_WORDS
from winecrm.etl.readers import MALFORMED_COLUMN


def _yyyymmdd(day: dt.date) -> int:
    return day.year * 10000 + day.month * 100 + day.day


@dataclass
class Rule:
    check: tuple[str, dict] | None  # (GX expectation type, its kwargs), e.g. ("expect_column_to_exist", {...})
    column: str | None  # canonical column it is about (for the quarantine row)
    warning: bool = False  # warnings flag rows, they do not quarantine them
    presence: bool = False  # "a value is required": said only when no other rule explains the column
    explain: str = ""  # sentence template; {value} is the raw value

    @property
    def kind(self) -> str:
        return self.check[0]

    @property
    def kwargs(self) -> dict:
        return self.check[1]

    @property
    def meta(self) -> dict:
        return {"severity": "warning" if self.warning else "reject", "column": self.column}

    @property
    def label(self) -> str:
        """How the quarantine and the counters name it: ``type(column)``."""
        column = self.kwargs.get("column")
        return f"{self.kind}({column})" if column else self.kind


class _Expectations:
    """``E.ExpectColumnValuesToBeNull(column=...)`` -> ("expect_column_values_to_be_null", {...})"""

    def __getattr__(self, class_name: str):
        kind = re.sub(r"(?<!^)(?=[A-Z])", "_", class_name).lower()
        return lambda **kwargs: (kind, kwargs)


E = _Expectations()


def rules_for(dataset: Dataset, export_date: dt.date, cfg: ValidationConfig) -> list[Rule]:
    rules: list[Rule] = [
        Rule(E.ExpectTableRowCountToBeBetween(min_value=1), None, explain="no data rows"),
        Rule(E.ExpectColumnValuesToBeNull(column=MALFORMED_COLUMN), "*", explain="{value}"),
    ]
    for column in dataset.required_columns:
        rules.append(Rule(E.ExpectColumnToExist(column=column), column, explain="column missing"))
    for column in dataset.columns:
        name = column.name
        if column.kind == "decimal":
            rules.append(Rule(E.ExpectColumnValuesToMatchRegex(column=f"{name}_text", regex=DECIMAL_RE), name,
                              explain="{value!r} is not a number"))
        elif column.kind == "int":
            rules.append(Rule(E.ExpectColumnValuesToMatchRegex(column=f"{name}_text", regex=INT_RE), name,
                              explain="{value!r} is not a year"))
        elif column.kind == "date":
            rules.append(Rule(E.ExpectColumnValuesToMatchRegex(column=f"{name}_text", regex=DATE_RE), name,
                              explain="{value!r} is not a dd/mm/yyyy date"))
        elif column.kind == "email":
            rules.append(Rule(E.ExpectColumnValuesToMatchRegex(column=name, regex=EMAIL_RE), name, warning=True,
                              explain="{value!r} is not a valid email address"))
        elif column.kind == "bool":
            rules.append(Rule(E.ExpectColumnValuesToBeInSet(column=f"{name}_text",
                                                            value_set=sorted(TRUE_WORDS | FALSE_WORDS | {w.upper() for w in TRUE_WORDS | FALSE_WORDS} | {w.title() for w in TRUE_WORDS | FALSE_WORDS})),
                              name, warning=True, explain="{value!r} is not yes/no; left unknown"))
        if column.not_null and column.kind == "text":
            rules.append(Rule(E.ExpectColumnValuesToNotBeNull(column=name), name, presence=True,
                              explain="missing value"))
        elif column.not_null:
            # On the delivered text of the values that could not be typed, so Data Docs show
            # '31/02/2026' rather than NaT.
            rules.append(Rule(E.ExpectColumnValuesToBeNull(column=f"{name}{UNPARSED_SUFFIX}"), name, presence=True,
                              explain="{value!r} is not a valid " + column.kind))
    if dataset.name == "ventes_lignes":
        rules += [
            Rule(E.ExpectColumnValuesToBeInSet(column="document_type", value_set=list(cfg.document_types)),
                 "document_type", explain="unknown document type {value!r}"),
            Rule(E.ExpectColumnValuesToBeBetween(column="qty_line", min_value=0, max_value=cfg.max_qty_line,
                                                 strict_min=True),
                 "qty_line", explain="quantity {value!r} out of range (0, " + str(cfg.max_qty_line) + "] on a sale"),
            Rule(E.ExpectColumnValuesToBeBetween(column="pu_ht", min_value=0, max_value=cfg.max_unit_price_ht),
                 "pu_ht", explain="unit price {value!r} out of range"),
            Rule(E.ExpectColumnValuesToBeBetween(column="mt_ht", min_value=-cfg.max_line_amount_ht,
                                                 max_value=cfg.max_line_amount_ht),
                 "mt_ht", explain="amount {value!r} out of range"),
            Rule(E.ExpectColumnValuesToBeBetween(
                column="date_livraison_yyyymmdd", min_value=_yyyymmdd(cfg.min_sale_date),
                max_value=_yyyymmdd(export_date + dt.timedelta(days=cfg.max_days_after_export))),
                "date_livraison", explain="date {value!r} outside the plausible range"),
            Rule(E.ExpectColumnValuesToBeNull(column=DUPLICATE_COLUMN), "*",
                 explain="exact duplicate of line {dup} of the same file"),
        ]
    elif dataset.name == "produits":
        rules += [
            Rule(E.ExpectColumnValuesToBeBetween(column="millesime", min_value=1900, max_value=2100), "millesime",
                 explain="vintage {value!r} out of range"),
            Rule(E.ExpectColumnValuesToBeBetween(column="prix_ttc", min_value=0, max_value=cfg.max_unit_price_ht * 1.2),
                 "prix_ttc", explain="price {value!r} out of range"),
        ]
    elif dataset.name == "stock":
        rules += [
            Rule(E.ExpectColumnValuesToBeBetween(column="quantite", min_value=0, max_value=cfg.max_stock_quantity),
                 "quantite", explain="stock quantity {value!r} out of range"),
            Rule(E.ExpectColumnValuesToBeBetween(column="millesime", min_value=1900, max_value=2100), "millesime",
                 explain="vintage {value!r} out of range"),
        ]
    if dataset.natural_key:
        rules.append(Rule(E.ExpectColumnValuesToBeNull(column=DUPLICATE_COLUMN), dataset.natural_key[0],
                          explain="same " + "/".join(dataset.natural_key) + " as line {dup}, which supersedes it"))
    return rules


