"""Keeping erased people erased: each load anonymises again a record an ERP export brings back
(by client code, or by the marker of an erased address), inside its own transaction."""

from __future__ import annotations

import logging

import psycopg
from psycopg import sql

from winecrm.core.personal import ERASED_PREFIX
from winecrm.privacy import catalogue
from winecrm.privacy.catalogue import Policy
from winecrm.privacy.identity import Person
from winecrm.privacy.policies import ERASED_MARKER_SQL, _anonymise, _apply_policies, _register
from winecrm.privacy.report import ErasureReport, _counts
from winecrm.privacy.schema import Table, catalog

log = logging.getLogger("winecrm.privacy")

def _marker_of(email: sql.Composable) -> sql.Composable:
    """The erased marker of an address column — or the column itself when it already holds one:
    the ingest writes the marker in place of an erased person's address in the run's work files
    (``work_files.blank_erased``), so a new client code with their address is still recognised."""
    return sql.SQL("CASE WHEN starts_with({}, {}) THEN {} ELSE {} END").format(
        email, sql.Literal(ERASED_PREFIX), email, sql.SQL(ERASED_MARKER_SQL).format(email))


def erased_keys(conn: psycopg.Connection) -> tuple[list[str], list[str]]:
    """(client codes, address markers) of everyone erased: crm.erasures, plus the erased markers
    of crm.suppressions (erasures made before the register)."""
    has_register = conn.execute("SELECT to_regclass('crm.erasures') IS NOT NULL").fetchone()[0]
    codes = [c for (c,) in conn.execute("SELECT client_code FROM crm.erased_clients ORDER BY 1")] if has_register else []
    markers = [m for (m,) in conn.execute(
        "SELECT email FROM crm.suppressions WHERE reason = 'erased' AND email LIKE 'erased:%'"
        + (" UNION SELECT unnest(markers) FROM crm.erasures" if has_register else ""))]
    return codes, sorted(markers)


def reapply_erasures(conn: psycopg.Connection, *, run_id: str | None = None,
                     datasets: list[str] | None = None) -> int:
    """Anonymise again whoever an ERP export brought back after an erasure; returns the rows changed.

    Called by the load inside each dataset's transaction, after its upserts and before its
    commit (``datasets``: the one being loaded; ``run_id``: only the rows that run loaded or
    quarantined), so no other connection ever sees the person's columns again; it does not commit.

    A row of ``etl.clients`` / ``etl.ventes_lignes`` (the catalogue's anonymise/blank entries) is
    the erased person's when its client code is in ``crm.erasures`` — the ERP may re-export the
    same code with a new address — or when its address hashes to an erased marker — a new client
    code with the old address: that code is then recorded in ``crm.erasures`` too and everything
    derived about it goes (scores, events... as the erasure does). Such rows get the erasure's
    policy (personal columns NULL, opt_out true, email_valid false); quarantined rows of the run
    holding such an address or client code keep their place in the run's accounting but lose their
    raw values (as retention does).
    """
    codes, markers = erased_keys(conn)
    if not codes and not markers:
        return 0
    tables = catalog(conn)
    scope = [e for e in catalogue.CATALOGUE
             if e.schema == "etl" and e.policy in (Policy.ANONYMISE_MASTER, Policy.BLANK_PERSONAL)
             and e.table in tables and (datasets is None or e.name in datasets)]
    params = {"codes": codes, "markers": markers, "run_id": run_id}
    changed = 0
    by_marker = sql.SQL("({} IS NOT NULL AND {} = ANY(%(markers)s::text[]))")
    # a new client code with an erased address: recorded as erased, and erased
    new_codes: set[str] = set()
    new_markers: set[str] = set()
    for entry in scope:
        if not (entry.client_code and entry.email):
            continue
        email = sql.Identifier(entry.email)
        marker = _marker_of(email)
        only_run = (sql.SQL(" AND loaded_run = %(run_id)s")
                    if run_id is not None and "loaded_run" in tables[entry.table].columns else sql.SQL(""))
        for code, found in conn.execute(sql.SQL(
                "SELECT DISTINCT {}, {} FROM {} WHERE {} AND {} <> ALL(%(codes)s::text[]){}").format(
                sql.Identifier(entry.client_code), marker, entry.ident, by_marker.format(email, marker),
                sql.Identifier(entry.client_code), only_run), params):
            new_codes.add(code)
            new_markers.add(found)
    if new_codes:
        _register(conn, f"load:{run_id}" if run_id else "reapply_erasures", sorted(new_codes),
                  markers=sorted(new_markers))
        derived = ErasureReport(person=Person([], []), dry_run=False)
        _apply_policies(conn, tables, {"codes": sorted(new_codes), "addrs": []}, derived,
                        skip=(Policy.DELETE_RAW,))
        changed += sum(o.total for o in derived.tables.values())
        log.warning("Erasure re-applied: %d new client code(s) came with the address of a person erased earlier; "
                    "recorded in crm.erasures and erased (%s)", len(new_codes),
                    ", ".join(f"{n}: {_counts(o)}" for n, o in sorted(derived.tables.items())) or "nothing derived yet")
        codes = sorted(set(codes) | new_codes)
        params["codes"] = codes
    for entry in scope:
        table = tables[entry.table]
        parts = []
        if entry.client_code:
            parts.append(sql.SQL("{} = ANY(%(codes)s::text[])").format(sql.Identifier(entry.client_code)))
        if entry.email:
            email = sql.Identifier(entry.email)
            parts.append(by_marker.format(email, _marker_of(email)))
        match = sql.SQL("({})").format(sql.SQL(" OR ").join(parts))
        if run_id is not None and "loaded_run" in table.columns:
            match = sql.SQL("{} AND loaded_run = %(run_id)s").format(match)
        columns = [c for c in entry.personal if c in table.columns and table.columns[c].nullable]
        rows = _anonymise(conn, table, columns, match, params)
        if rows:
            log.info("Erasure re-applied: %d row(s) of %s brought back by an export anonymised again", rows,
                     entry.table)
        changed += rows
    changed += _reapply_to_quarantine(conn, tables, params, run_id, datasets)
    return changed


def reapply_erasures_to_quarantine(conn: psycopg.Connection, *, run_id: str) -> int:
    """The quarantine part of ``reapply_erasures`` for one run, after validation: rows rejected
    from an export (a file refused by the quality gate is never loaded) lose the raw values of
    an erased person. Does not commit."""
    codes, markers = erased_keys(conn)
    if not codes and not markers:
        return 0
    return _reapply_to_quarantine(conn, catalog(conn), {"codes": codes, "markers": markers, "run_id": run_id},
                                  run_id, None)


def _reapply_to_quarantine(conn: psycopg.Connection, tables: dict[str, Table], params: dict, run_id: str | None,
                           datasets: list[str] | None) -> int:
    changed = 0
    quarantine = tables.get("etl.quarantine")
    if quarantine is not None and {"raw_values", "reason", "dataset"} <= set(quarantine.columns):
        marker = _marker_of(sql.SQL("(v #>> '{}')"))
        only = sql.SQL("")
        if run_id is not None:
            only = sql.SQL("{} AND run_id = %(run_id)s").format(only)
        if datasets is not None:
            only = sql.SQL("{} AND dataset = ANY(%(datasets)s::text[])").format(only)
        rows = conn.execute(sql.SQL(
            """UPDATE etl.quarantine
               SET raw_values = NULL,
                   reason = file_path || coalesce(' line ' || row_no, '') || ': '
                            || coalesce(column_name || ': ', '') || array_to_string(expectations, ', ')
                            || ' (details erased: GDPR erasure)'
               WHERE raw_values IS NOT NULL{}
                 AND (btrim(raw_values ->> 'client_code') = ANY(%(codes)s::text[])
                      OR EXISTS (SELECT 1 FROM jsonb_path_query(raw_values, 'strict $.**') v
                                 WHERE jsonb_typeof(v) = 'string'
                                   AND (strpos(v #>> '{{}}', '@') > 0 OR starts_with(v #>> '{{}}', 'erased:'))
                                   AND {} = ANY(%(markers)s::text[])))""").format(only, marker),
            {**params, "datasets": list(datasets or [])}).rowcount
        if rows:
            log.info("Erasure re-applied: %d quarantined row(s) lost their raw values", rows)
        changed += rows
    return changed


# --------------------------------------------------------------------------------------------
# the summary a person reads
