"""A person's requests (GDPR): see what we hold (art. 15/20), or erase it (art. 17).

    python -m winecrm.privacy export --email jean.dupont@example.fr          # JSON + a French letter
    python -m winecrm.privacy export --client C004217 --out /tmp/acces
    python -m winecrm.privacy erase --email jean.dupont@example.fr
    python -m winecrm.privacy erase --client C004217 --client C009911      # two ERP records, one person
    python -m winecrm.privacy erase --email jean.dupont@example.fr --dry-run  # what would go; nothing changes

``export`` writes acces-<client code>-<date>.json (every row held, for portability) and .txt
(the letter to send, in French) under the reports folder (reports/acces/, or --out): send them,
then delete them. It asks Brevo for the contact's details when BREVO_API_KEY is set.

``erase``: every record of the person is found (an address leads to its client codes and back), then
erased in one transaction, as winecrm/privacy/catalogue.py says for each table: customer row
anonymised, sales lines kept without address, derived CRM rows deleted, send ledger cleared,
the address replaced by a hash in crm.suppressions so they are never e-mailed again, and the
erasure recorded in crm.erasures (client codes and address hashes) so that the weekly scoring,
the campaigns and the events skip them and each load anonymises them again. The outbox e-mails
and report pages about them are removed and their lines dropped from the dry-run SMS outbox.
It waits for a running weekly stage or crm_events run, and refuses (changing nothing) while the
warehouse has a table or column that may hold personal data and is not in the catalogue.
The Brevo contact is deleted after the commit, with BREVO_API_KEY (and BREVO_API_URL for a
sandbox or a mock); without it the summary says the contact was not deleted. The warehouse is
CRM_DATABASE_URL.

Exit status: 0 done (or nothing found), 1 refused or failed (nothing changed), 2 the warehouse
part is done but Brevo failed (run the same command again) or refused to let the API delete a
contact (405: the summary says where a person deletes it in Brevo).
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m winecrm.privacy", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    erase_cmd = sub.add_parser("erase", help="erase one person everywhere we hold them (GDPR)", description=__doc__,
                               formatter_class=argparse.RawDescriptionHelpFormatter)
    erase_cmd.add_argument("--email", action="append", default=[], metavar="ADDRESS",
                           help="the person's e-mail address (repeatable)")
    erase_cmd.add_argument("--client", action="append", default=[], metavar="CODE",
                           help="the person's client code in the ERP (repeatable)")
    erase_cmd.add_argument("--dry-run", action="store_true", help="report what would be erased; change nothing")
    erase_cmd.add_argument("--max-records", type=int, default=None, metavar="N",
                           help="refuse when more customer records than this are linked (default 10): a shared "
                                "address would erase people who did not ask")
    export_cmd = sub.add_parser("export", help="write everything we hold about one person (GDPR access request)",
                                description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    export_cmd.add_argument("--email", action="append", default=[], metavar="ADDRESS",
                            help="the person's e-mail address (repeatable)")
    export_cmd.add_argument("--client", action="append", default=[], metavar="CODE",
                            help="the person's client code in the ERP (repeatable)")
    export_cmd.add_argument("--out", type=Path, default=None, metavar="DIR",
                            help="where the two files go (default: the reports folder's acces/)")
    args = parser.parse_args(argv)
    if not args.email and not args.client:
        parser.error(f"{args.command}: give --email ADDRESS or --client CODE")
    bad = [e for e in args.email if "@" not in e]
    if bad:
        parser.error(f"--email {bad[0]!r}: not an e-mail address")
    logging.basicConfig(level=logging.INFO, format="%(message)s")

    if args.command == "export":
        return _export(args)
    from winecrm.privacy import brevo_contacts, erase, identity, report as erasure_report

    max_records = args.max_records if args.max_records is not None else identity.DEFAULT_MAX_RECORDS
    report = _in_warehouse("Erasure", "(nothing was changed)", lambda conn: erase.erase(
        conn, args.email, args.client, dry_run=args.dry_run, max_records=max_records))
    if report is None:
        return 1
    if not args.dry_run:
        brevo_contacts.delete_brevo_contacts(report, brevo_contacts.brevo_client_from_env())
    print(erasure_report.format_summary(report))
    return 2 if report.needs_a_person else 0


def _export(args) -> int:
    from winecrm.privacy import access, brevo_contacts

    export = _in_warehouse("Export", "", lambda conn: access.collect(
        conn, args.email, args.client, brevo=brevo_contacts.brevo_client_from_env()))
    if export is None:
        return 1
    data, letter = access.write(export, args.out)
    tables = [t for t, rows in export.tables.items() if rows]
    held = (f"{sum(len(export.tables[t]) for t in tables)} row(s) in {len(tables)} table(s), "
            f"{len(export.consent)} consent change(s), {len(export.files)} file(s)") if export.found else "nothing held"
    print(f"Access request for {', '.join(export.person.typed_addresses + export.person.typed_codes)}: {held}"
          f"\n  {letter}  (the letter to send, in French)\n  {data}  (every row, JSON)\n"
          "These files hold personal data: send them to the person, then delete them.")
    return 0


def _in_warehouse(what: str, unchanged: str, work):
    """``work(conn)`` on the migrated warehouse; None (the reason printed) when it could not run."""
    import psycopg

    from winecrm.core import db
    from winecrm.core.migrations import apply_migrations
    from winecrm.privacy import ErasureError

    try:
        with db.connect(application_name="winecrm-privacy") as conn:
            apply_migrations(conn)
            return work(conn)
    except (ErasureError, db.WarehouseBusy, db.WarehouseNotConfigured) as exc:
        print(f"{what} not done: {exc}", file=sys.stderr)
    except psycopg.Error as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        print(f"{what} not done, the warehouse refused it{' ' + unchanged if unchanged else ''}: "
              f"{exc.__class__.__name__}: {first}", file=sys.stderr)
    return None


if __name__ == "__main__":
    sys.exit(main())
