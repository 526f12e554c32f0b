"""Which delivered values are personal data, and how they are masked in logs and alerts.

The one list of personal columns (canonical names of the iSaVigne contract and of the warehouse).
Task logs, quarantine reasons, file rejection reasons and failure alerts never quote these
values: they name the file, line, column and rule instead, so the estate's engineer still finds
the row, while the value itself stays only in ``etl.quarantine.raw_values`` (covered by the
retention and by the erasure). Kept free of heavy imports so ETL code and the privacy package can
both use it.
"""

from __future__ import annotations

import hashlib
import re

# Names, contact details, addresses, birth dates: what identifies or reaches a person.
PERSONAL_COLUMNS: frozenset[str] = frozenset((
    "nom", "prenom", "civilite", "email", "telephone", "mobile", "portable", "adresse", "adresse2",
    "complement_adresse", "code_postal", "ville", "pays", "date_naissance", "societe",
))

MASK = "[masked]"

# An e-mail address (also malformed ones such as 'jean@@example'), and a phone number: French
# (0X XX XX XX XX, +33 …) or international, with spaces, dots or dashes.
_EMAIL = re.compile(r"[^\s'\"<>,;:()\[\]]+@[^\s'\"<>,;:()\[\]]*")
_PHONE = re.compile(r"(?<![\w/.-])(?:\+|00)?\d(?:[ .-]?\d){8,13}(?![\w/-])")


def is_personal(column: str | None) -> bool:
    """True for a column whose values identify or reach a person."""
    return column is not None and column.lower() in PERSONAL_COLUMNS


def shown(column: str | None, value: object) -> object:
    """The value as a log line or an alert may show it: masked for a personal column."""
    return MASK if is_personal(column) and value not in (None, "") else value


def scrub(text: str) -> str:
    """``text`` with anything that looks like an e-mail address or a phone number masked: the last
    guard on messages that leave the warehouse (failure alerts, task failure texts)."""
    if not text:
        return text
    return _PHONE.sub(MASK, _EMAIL.sub(MASK, text))


# An erased person's address is kept only as this marker (crm.suppressions, crm.erasures, the
# events, the runs' work files): ``'erased:' || sha256(lower(btrim(address)))``.
ERASED_PREFIX = "erased:"


def normalise_address(address: str) -> str:
    """The address as the warehouse compares it: ``lower(btrim(address))``."""
    return address.strip(" ").lower()


def erased_marker(address: str) -> str:
    """``'erased:' || encode(sha256(convert_to(lower(btrim(address)), 'UTF8')), 'hex')`` in Python.

    Identical to the SQL for every ASCII address; for non-ASCII letters PostgreSQL's lower()
    follows the database's locale, so the erasure itself always writes the marker computed by
    the database (the one crm.email_blocked_reason compares with)."""
    return ERASED_PREFIX + hashlib.sha256(normalise_address(address).encode("utf-8")).hexdigest()
