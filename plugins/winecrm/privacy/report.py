"""What an erasure did, per table and file, and the summary the operator reads (client codes,
counts and paths; nothing else personal)."""

from __future__ import annotations

import textwrap
from dataclasses import dataclass, field
from pathlib import Path

from winecrm.campaigns.brevo import DELETE_BY_HAND
from winecrm.core import settings
from winecrm.privacy.files import _under, file_roots
from winecrm.privacy.identity import Person
from winecrm.privacy.schema import REDACTED

RAW_NOTE = ("RAW exports are immutable and were not rewritten: the ERP (iSaVigne) must drop or anonymise "
            "these client codes in its next exports; until then each weekly load anonymises them again inside "
            "its own transaction (crm.erasures names them; the erased marker stays in crm.suppressions, so they "
            "are never e-mailed, and scoring skips them). Old RAW files go with the RAW retention.")


@dataclass
class TableOutcome:
    deleted: int = 0
    anonymised: int = 0
    redacted: int = 0       # rows where the address was replaced by [erased] in free text

    @property
    def total(self) -> int:
        return self.deleted + self.anonymised + self.redacted


@dataclass
class ErasureReport:
    person: Person
    dry_run: bool
    tables: dict[str, TableOutcome] = field(default_factory=dict)
    suppressions_removed: int = 0
    markers_added: int = 0
    already_erased: list[str] = field(default_factory=list)     # addresses whose marker was there before
    files: list[Path] = field(default_factory=list)
    sms_lines: dict[Path, int] = field(default_factory=dict)   # SMS outbox file -> lines about the person removed
    sms_files_emptied: list[Path] = field(default_factory=list)  # ...of which held only the person (removed)
    work_parts: dict[str, int] = field(default_factory=dict)  # run work file -> rows whose personal values go
    caches_removed: int = 0                                     # chance to buy's kept sales rows removed
    register_rows: int = 0                                      # rows added to crm.erasures
    consent_rows: int = 0                                       # final opt-outs appended to crm.consent_log
    data_docs_rebuilt: bool | None = None                       # None: no Data Docs page removed
    brevo: dict[str, str] = field(default_factory=dict)  # address -> deleted | not_found | not_allowed | no_connection | error
    brevo_error: str | None = None

    @property
    def needs_a_person(self) -> bool:
        """Brevo failed, or holds a contact only a person can delete there."""
        return bool(self.brevo_error) or "not_allowed" in self.brevo.values()

    @property
    def found(self) -> bool:
        """Did the warehouse or the files hold anything about the person?"""
        return bool(sum(t.total for t in self.tables.values()) or self.suppressions_removed or self.files
                    or self.sms_lines or self.work_parts)

    def outcome(self, table: str) -> TableOutcome:
        return self.tables.setdefault(table, TableOutcome())


def _counts(outcome: TableOutcome, would: bool = False) -> str:
    verb = "would be " if would else ""
    parts = []
    if outcome.deleted:
        parts.append(f"{outcome.deleted} {verb}deleted")
    if outcome.anonymised:
        parts.append(f"{outcome.anonymised} {verb}anonymised")
    if outcome.redacted:
        parts.append(f"{outcome.redacted} {verb}redacted (address replaced by {REDACTED})")
    return ", ".join(parts)


BREVO_WORDS = {"deleted": "contact deleted", "not_found": "no contact (nothing to delete)",
               "no_connection": "NOT deleted: no Brevo connection (BREVO_API_KEY is not set)",
               "error": "NOT deleted: Brevo error (see below)",
               "not_allowed": "NOT deleted: Brevo does not let the API delete this contact (405: a contact registered "
                              f"with Brevo): {DELETE_BY_HAND}"}


def format_summary(report: ErasureReport) -> str:
    """What was (or, in a dry run, would be) erased. Addresses appear only as typed; an address
    found from a client code is shown only where a person must finish the job by hand (Brevo)."""
    person = report.person
    would = report.dry_run
    lines = []
    typed = person.typed_addresses + person.typed_codes
    lines.append(f"{'DRY RUN — nothing changed. ' if would else ''}Erasure of {', '.join(typed)}")
    if person.unknown_codes:
        lines.append(f"  unknown client code(s): {', '.join(person.unknown_codes)}")
    if not report.found:
        if report.already_erased or (person.typed_codes and not person.unknown_codes):
            lines.append("  Nothing left to erase: the warehouse and the files hold nothing more about this person "
                         "(already erased).")
        else:
            lines.append("  Nothing found: no customer, e-mail, event or file holds this address or client code; "
                         "nothing was erased (check the spelling).")
    else:
        found_addresses = len(person.addresses) - len([a for a in person.typed_addresses if a in person.addresses])
        lines.append(f"  customer records: {', '.join(person.client_codes) or 'none'}; addresses: "
                     f"{len(person.addresses)} ({found_addresses} found from the records)")
        width = max([len(n) for n in report.tables] + [len("crm.suppressions")])
        verb = "would be " if would else ""
        for name, outcome in sorted(report.tables.items()):
            lines.append(f"  {name:<{width}}  {_counts(outcome, would)}")
        lines.append(f"  {'crm.suppressions':<{width}}  {report.suppressions_removed} plain address row(s) "
                     f"{verb}removed, {report.markers_added} erased marker(s) {verb}added"
                     + (" (the marker was already there)" if report.already_erased and not report.markers_added else ""))
        if report.register_rows:
            lines.append(f"  {'crm.erasures':<{width}}  erasure {verb}recorded (client codes and address hashes: "
                         "scoring, campaigns and events skip them; each load anonymises them again)")
        if report.consent_rows:
            lines.append(f"  {'crm.consent_log':<{width}}  {report.consent_rows} final opt-out(s) {verb}recorded "
                         "(source privacy_erase, client code only)")
        roots = file_roots()
        lines.append(f"  files {verb}removed: {len(report.files)}")
        for path in report.files:
            root = next((r for r in roots if _under(path, r)), None)
            lines.append(f"    {path.relative_to(root) if root else path}"
                         + ("  (Data Docs page: rebuilt on the next run)" if _under(path, settings.paths().docs_dir)
                            else ""))
        for path, removed in sorted(report.sms_lines.items()):
            root = next((r for r in roots if _under(path, r)), None)
            lines.append(f"  SMS outbox {path.relative_to(root) if root else path}: {removed} line(s) about the person "
                         f"{verb}removed" + (f" (the file {verb}removed: it held only them)"
                                             if path in report.sms_files_emptied else ""))
        if report.work_parts:
            lines.append(f"  run work files: {sum(report.work_parts.values())} row(s) in {len(report.work_parts)} "
                         f"file(s) {verb}left without their personal values (names, contact details, raw line)")
        if report.data_docs_rebuilt is False:
            lines.append("  Data Docs index not rebuilt now: the next run rebuilds it.")
    if report.brevo:
        for i, address in enumerate(person.addresses):
            status = report.brevo.get(address)
            if status is None:
                continue
            shown = address if address in person.typed_addresses else f"address #{i + 1} (found from the records)"
            if status in ("no_connection", "error", "not_allowed") and address not in person.typed_addresses:
                shown = f"{address} (found from the records; delete this contact in Brevo by hand or rerun with --email)"
            lines.append(f"  Brevo: {shown}: {BREVO_WORDS[status]}")
    elif would:
        lines.append("  Brevo: contact(s) would be deleted after the commit")
    if report.brevo_error:
        lines.append(f"  Brevo error: {report.brevo_error}")
        lines.append("  The warehouse part is done. Run the same command again to delete the Brevo contact(s), "
                     "adding --email for any address shown above as found from the records (the erasure is "
                     "idempotent: a second run finds nothing more in the warehouse and asks Brevo again).")
    if report.found:
        lines.append(textwrap.fill(RAW_NOTE, width=100, initial_indent="  Note: ", subsequent_indent="        "))
    return "\n".join(lines)
