"""Erase one person (GDPR art. 17) from the warehouse, the platform's files and Brevo — and keep
them erased whatever runs afterwards.

Why it works this way:

- **One catalogue, checked against the warehouse.** Where personal data lives, how the person's
  rows are found and what happens to them is declared once, in ``winecrm.privacy.catalogue``
  (also what an access export reads). The warehouse keeps growing (events, tags, tasks, consent
  log...): before changing anything the erasure compares the catalogue with
  ``information_schema`` and refuses, naming the table, when an ``etl``/``crm`` table or column
  that looks personal (client code, e-mail, phone, name, address, postcode, town, jsonb...) is not
  in it. After the policies it replaces the address and the full name wherever still written in
  free text (run details, quarantine reasons, notes) and finally scans every text/jsonb column of
  every table for the addresses, the full name and the phone numbers, and the derived tables for
  the client codes: if anything is left, nothing is committed and the error names the table and
  the column.
- **Policies** (``catalogue.Policy``). ``etl.clients`` is anonymised, not deleted: the client
  code stays so that the sales lines (revenue history) still join; its personal columns become
  NULL, ``opt_out`` true, ``email_valid`` false. ``etl.ventes_lignes`` keeps its rows (revenue,
  anonymously) without address, postcode and town. ``etl.quarantine`` rows holding the address
  or the client code in ``raw_values`` are deleted. ``crm.email_sends`` keeps its rows — the
  ledger proves what was sent and keeps the exactly-once guarantee of a rerun (unique on campaign +
  client code) — but loses the address, subject, bodies, products, token, message id, error and
  outbox path; a row not yet sent is marked ``skipped`` / ``erased``. The derived per-customer
  tables (scores, 360, recommendations, events, tags, tasks, actions, consent log...) lose the
  matching rows, children before parents.
- **Never again.** ``crm.suppressions`` loses the plain address and gets
  ``'erased:' || sha256(lower(btrim(address)))`` instead (``erased_marker``), which
  ``crm.email_blocked_reason`` checks (migration 011): the address is not kept, yet never
  e-mailed again. The consent history (``crm.consent_log``) loses the person's rows and ends with
  one opt-out per client code (source ``privacy_erase``, no address). ``crm.erasures`` (migration 014) records the client codes and those markers:
  the weekly scoring, the recommendations, the campaign audience and the events DAG skip these
  client codes (their sales still count in revenue, anonymously), and ``reapply_erasures`` —
  called by the load inside each dataset's transaction, before its commit — anonymises again a
  record an ERP export brings back, by client code (a re-export, maybe with a new address) or by
  address marker (a new client code with the old address, then recorded as erased too).
- **All or nothing, alone.** One transaction under the warehouse writer lock AND the events
  processor lock (``crm_events`` writes tags, actions and consent rows under its own lock: it
  must not add rows about the person while they are erased). Files are removed, and the dry-run
  SMS outbox (one JSON line per SMS) rewritten without the person's lines (temp file + rename),
  just before the commit (a failure there rolls the database back: a rerun finds everything
  again); the Brevo contact is deleted after the commit by the caller
  (``delete_brevo_contacts``): it cannot be rolled back, and a rerun with the same address finds
  nothing in the warehouse but still asks Brevo.
- **Nothing personal in the output** beyond what the operator typed: the summary gives the
  client codes (the ERP needs them to drop the person from its exports), tables, counts and
  file paths. The log line gives counts only.

RAW exports are immutable by design and are not rewritten (see ``report.RAW_NOTE``).

The parts, one module each: ``schema`` (the warehouse's tables as the erasure sees them),
``identity`` (who the person is), ``matching`` (finding them in free text), ``policies`` (the
catalogue's policies on their rows), ``files`` (outbox, reports, work files, SMS outbox),
``brevo_contacts``, ``register`` (keeping them erased at each load) and ``report`` (what was
done, as the operator reads it). This module runs them in order and checks the result.
"""

from __future__ import annotations

import logging

import psycopg
from psycopg import sql

from winecrm.core import db, settings
from winecrm.core.personal import erased_marker  # noqa: F401 (the erasure's API: the marker of an address)
from winecrm.crm import sales_cache
from winecrm.privacy import ErasureError, catalogue, work_files
from winecrm.privacy.catalogue import Policy
from winecrm.privacy.files import _rebuild_data_docs, _rewrite_atomically, _under, find_files, sms_outbox_rewrites
from winecrm.privacy.identity import DEFAULT_MAX_RECORDS, _person_details, identify
from winecrm.privacy.matching import _address_params, _names_regex, _text_hit
from winecrm.privacy.policies import (ERASED_MARKER_SQL, SUPPRESSION_SOURCE, _apply_policies, _redact_everywhere,
                                      _register)
from winecrm.privacy.report import ErasureReport, _counts
from winecrm.privacy.schema import REGISTER, SUPPRESSIONS, Table, catalog

log = logging.getLogger("winecrm.privacy")


def verify_absent(conn: psycopg.Connection, tables: dict[str, Table], needles: list[str],
                  names: list[str] = ()) -> list[tuple[str, str, int]]:
    """(table, column, rows) for every column of every etl/crm table that can hold text (text,
    json, arrays, tsvector...) and still holds one of ``needles`` (addresses, phone numbers:
    substrings, case-insensitive) or of ``names`` (full names, as whole words)."""
    left = []
    names = list(names)
    if not needles and not names:
        return left
    params = {**_address_params([n.lower() for n in needles]), "names_re": _names_regex(names) if names else None}
    for name, table in sorted(tables.items()):
        columns = table.verifiable_columns
        if not columns:
            continue
        counts = conn.execute(sql.SQL("SELECT {} FROM {}").format(
            sql.SQL(", ").join(sql.SQL("count(*) FILTER (WHERE {})").format(
                _text_hit(sql.Identifier(c.name), len(needles), bool(names))) for c in columns), table.ident),
            params).fetchone()
        left += [(name, c.name, n) for c, n in zip(columns, counts) if n]
    return left


def codes_left(conn: psycopg.Connection, tables: dict[str, Table], codes: list[str]) -> list[tuple[str, str, int]]:
    """(table, how, rows) for every derived table (policy delete) still holding one of the client
    codes, in its client code column or under a "client_code" key of its jsonb."""
    left = []
    if not codes:
        return left
    for entry in catalogue.CATALOGUE:
        if entry.policy not in (Policy.DELETE_DERIVED, Policy.DELETE_RAW) or entry.table not in tables:
            continue
        condition = catalogue.match(entry, by_email=False)
        if condition is None:
            continue
        if entry.keep:
            condition = sql.SQL("{} AND NOT ({})").format(condition, sql.SQL(entry.keep))
        n = conn.execute(sql.SQL("SELECT count(*) FROM {} WHERE {}").format(entry.ident, condition),
                         {"codes": codes, "addrs": []}).fetchone()[0]
        if n:
            left.append((entry.table, "client_code", n))
    return left


def check_catalogue(tables: dict[str, Table]) -> None:
    """Refuse (nothing changed yet) when the warehouse has personal-looking tables or columns the
    catalogue does not describe, or the catalogue names columns the warehouse does not have."""
    gaps, gone = catalogue.uncatalogued(tables), catalogue.missing(tables)
    if gaps:
        raise ErasureError(
            f"refused, nothing was changed: {'; '.join(gaps)} may hold personal data and "
            "winecrm/privacy/catalogue.py does not say how to erase it. Add its entry (how the person's rows "
            "are found, which columns are personal, which policy), then run again.")
    if gone:
        raise ErasureError(f"refused, nothing was changed: winecrm/privacy/catalogue.py names {', '.join(gone)}, "
                           "which the warehouse does not have (migrations not applied, or a renamed column)")


def erase(conn: psycopg.Connection, emails: list[str] = (), client_codes: list[str] = (), *, dry_run: bool = False,
          max_records: int = DEFAULT_MAX_RECORDS, with_files: bool = True) -> ErasureReport:
    """Erase the person known by ``emails`` and/or ``client_codes`` from the warehouse and the
    platform's files, in one transaction under the writer lock and the events processor lock
    (``dry_run``: report what would go, then roll back and leave every file). Brevo is the
    caller's next step (``delete_brevo_contacts`` with ``report.person.addresses``), after this
    commit."""
    from winecrm.events.processing import processor_lock

    emails, client_codes = list(emails), list(client_codes)
    bad = [e for e in emails if "@" not in e]
    if bad or not (emails or client_codes):
        raise ErasureError(f"an e-mail address is needed, got {bad[0]!r}" if bad else "give --email or --client")
    wait = settings.pipeline_config().warehouse.writer_wait_minutes * 60
    with db.warehouse_writer(conn, "privacy:erase"), processor_lock(conn, wait_seconds=wait), \
            db.data_docs_lock(conn, "privacy:erase"):  # no Data Docs page written while the person's are removed
        tables = catalog(conn)
        check_catalogue(tables)
        person = identify(conn, tables, emails, client_codes, max_records=max_records)
        _person_details(conn, tables, person)
        report = ErasureReport(person=person, dry_run=dry_run)
        params = person.params
        tokens, ledger_paths, action_ids = _apply_policies(conn, tables, params, report)

        if SUPPRESSIONS in tables and person.addresses:
            report.suppressions_removed = conn.execute(
                "DELETE FROM crm.suppressions WHERE lower(btrim(email)) = ANY(%s::text[])",
                (person.addresses,)).rowcount
            marker = sql.SQL(ERASED_MARKER_SQL).format(sql.SQL("a"))
            report.already_erased = [a for (a,) in conn.execute(
                sql.SQL("SELECT a FROM unnest(%s::text[]) a WHERE {} IN (SELECT email FROM crm.suppressions)").format(
                    marker), (person.addresses,))]

        _redact_everywhere(conn, tables, person.addresses, report, names=person.names)
        left = verify_absent(conn, tables, person.addresses + person.phones, names=person.names)
        left += codes_left(conn, tables, person.client_codes)
        if left:
            conn.rollback()
            where = "; ".join(f"{t}.{c} ({n} row{'s' if n > 1 else ''})" for t, c, n in left)
            raise ErasureError(f"the person's address, name, phone number or client code is still in {where} after "
                               "the erasure: nothing was changed (rolled back). That table needs a policy in "
                               "winecrm/privacy/catalogue.py.")
        if with_files:
            report.files = find_files(person, tokens, ledger_paths)
            sms_rewrites = sms_outbox_rewrites(person, action_ids)
            report.sms_lines = {path: removed for path, (removed, _) in sms_rewrites.items()}
            report.sms_files_emptied = [path for path, (_, kept) in sms_rewrites.items() if not kept]
            phones = work_files.phone_digits(person.phones)
            report.work_parts = work_files.blank_person(person.client_codes, person.addresses, phones, dry_run=True)
            # and what validate found, waiting for the data_docs task
            report.work_parts.update(work_files.blank_found(person.client_codes, person.addresses, phones,
                                                            dry_run=True))
        else:
            sms_rewrites = {}
        report.tables = {n: o for n, o in report.tables.items() if o.total}

        if report.found and SUPPRESSIONS in tables and person.addresses:
            marker = sql.SQL(ERASED_MARKER_SQL).format(sql.SQL("a"))
            report.markers_added = conn.execute(sql.SQL(
                "INSERT INTO crm.suppressions (email, reason, source) SELECT {}, 'erased', %s "
                "FROM unnest(%s::text[]) a ON CONFLICT (email) DO NOTHING").format(marker),
                (SUPPRESSION_SOURCE, person.addresses)).rowcount
        if report.found and REGISTER in tables:
            report.register_rows = _register(conn, SUPPRESSION_SOURCE, person.client_codes, person.addresses)
        if report.found and "crm.consent_log" in tables and "channel" in tables["crm.consent_log"].columns:
            from winecrm.privacy.consent import record_consent_change

            for code in person.client_codes:  # the proof of consent ends with the erasure's opt-out
                record_consent_change(conn, client_code=code, email=None, change="opt_out", source=SUPPRESSION_SOURCE,
                                      channel="all", detail="erasure on request (GDPR art. 17), see crm.erasures")
                report.consent_rows += 1
        if dry_run or not report.found:
            conn.rollback()
            return report
        removed_docs = False
        for done, path in enumerate(report.files):
            try:  # before the commit: if this fails, the rollback leaves a rerun everything to find
                path.unlink(missing_ok=True)
            except OSError as exc:
                raise ErasureError(f"cannot remove {path} ({exc.strerror}); the warehouse was left unchanged "
                                   f"({done} file(s) already removed): fix the permissions and run again") from exc
            removed_docs = removed_docs or _under(path, settings.paths().docs_dir / "gx")
        for path, (_, kept) in sms_rewrites.items():
            try:
                _rewrite_atomically(path, kept)
            except OSError as exc:
                raise ErasureError(f"cannot rewrite {path} ({exc.strerror}); the warehouse was left unchanged: fix "
                                   "the permissions and run again") from exc
        # the chance to buy's kept sales rows (client codes and amounts, as the warehouse keeps
        # them): a cache, the next scoring reads every line
        report.caches_removed = int(sales_cache.forget())
        if report.work_parts:  # before the commit too: a rerun finds whatever is left
            # the found values first: the parts still show whose lines they are
            work_files.blank_found(person.client_codes, person.addresses, phones)
            work_files.blank_person(person.client_codes, person.addresses, phones)
        conn.commit()
        if removed_docs:
            report.data_docs_rebuilt = _rebuild_data_docs()
    log.info("privacy erase: %d customer record(s), %d address(es); %s; suppressions: %d plain removed, %d erased "
             "marker(s) added; %d file(s) removed; %d SMS outbox line(s) removed; %d work file row(s) blanked",
             len(person.client_codes), len(person.addresses),
             ", ".join(f"{n}: {_counts(o)}" for n, o in sorted(report.tables.items())) or "no rows",
             report.suppressions_removed, report.markers_added, len(report.files), sum(report.sms_lines.values()),
             sum(report.work_parts.values()))
    return report


# --------------------------------------------------------------------------------------------
# the dry-run SMS outbox: one JSON line per SMS, many people per file
